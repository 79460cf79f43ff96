//! `cairn lab`: throwaway clusters of real Linux hosts on this machine, to
//! try runbooks before they touch real servers and to test cairn itself.
//!
//! A lab `LAB` is a bridge `10.200.k.0/24` on the host with nodes on it. Each
//! node is a Debian 12 root (an overlay of a cached debootstrap image) booted
//! by systemd under `systemd-nspawn` in its own network namespace, with sshd
//! accepting the lab's ed25519 key, and named `<node>.<LAB>.lab` in every
//! node's `/etc/hosts`. A lab daemon on the bridge address serves an apt
//! mirror, a GitHub-like etcd release mirror, and cloud API emulations.
//! See `crates/cairn-lab/README.md` for the layout, commands and figures.

pub mod cgroup;
pub mod cli;
pub mod cloud;
pub mod daemon;
pub mod error;
pub mod exec;
pub mod firewall;
pub mod hosts;
pub mod image;
pub mod inventory;
pub mod lifecycle;
pub mod limits;
pub mod mirror;
pub mod naming;
pub mod net;
pub mod node;
pub mod prereq;
pub mod process;
pub mod record;
pub mod ssh;
pub mod state;
pub mod state_etcd;

/// Where labs keep their files: the layout lives in the core crate
/// ([`cairn::labs`]), which reads it for `--lab NAME`.
pub use cairn::labs as paths;
pub use error::{LabError, Result};
pub use paths::{image_paths, paths, ImagePaths, LabPaths};
pub use state::{LabState, NodeInfo, NodeSpec, PrivateAttachment};

/// Name of the lab commands use when `--name` is not given.
pub const DEFAULT_LAB: &str = "cairn";

/// The cloud emulation routes the lab daemon serves (see [`cloud::routes`]).
pub fn cloud_routes(state: std::sync::Arc<LabState>) -> axum::Router {
    cloud::routes(state)
}
