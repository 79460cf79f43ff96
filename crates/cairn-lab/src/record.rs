//! The lab's record on disk (`lab.json`): its subnet, tokens, daemon pid and
//! nodes. Every change happens under the lab's lock ([`LabLock`]).

use super::error::{LabError, Result};
use super::naming;
use super::paths::{paths, STATE_ROOT};
pub use cairn::labs::lab_names;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// What the lab knows about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LabRecord {
    /// The lab's name.
    pub name: String,
    /// Subnet index `k` of `10.200.k.0/24`.
    pub subnet: u8,
    /// Pid of the lab daemon (`cairn lab serve`), when started.
    #[serde(default)]
    pub daemon_pid: Option<u32>,
    /// Bearer token of the Hetzner Cloud emulation.
    pub hcloud_token: String,
    /// Bearer token of the DigitalOcean emulation.
    pub digitalocean_token: String,
    /// Next node index to hand out (indices are never reused while the lab is up).
    pub next_index: u32,
    /// Nodes by name.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeRecord>,
    /// Private networks by id.
    #[serde(default)]
    pub private_networks: BTreeMap<String, PrivateNetwork>,
    /// Next private network index.
    #[serde(default)]
    pub next_network_index: u32,
    /// The lab's cgroup directories (one per hierarchy), removed by `down`.
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    /// The lab's v1 memory cgroup, if one could be made.
    #[serde(default)]
    pub memory_cgroup: Option<PathBuf>,
}

/// Who asked for a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// `cairn lab up --nodes N` (named `node-<i>`).
    Up,
    /// A cloud emulation (`LabState::add_node`).
    Cloud,
}

/// One node of the lab.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    /// Index: decides the public address and the host veth name.
    pub index: u32,
    /// Public address on the lab bridge.
    pub address: String,
    pub origin: Origin,
    /// Pid of its systemd-nspawn, once launched.
    #[serde(default)]
    pub pid: Option<u32>,
    /// Extra public keys accepted for root (besides the lab key).
    #[serde(default)]
    pub authorized_keys: Vec<String>,
    /// Attachments to private networks.
    #[serde(default)]
    pub private: Vec<PrivateAttachment>,
    /// Its host key line (`ssh-ed25519 AAAA...`), once generated.
    #[serde(default)]
    pub host_key: Option<String>,
    /// The name it calls itself and is resolved by, when not `name` (cloud
    /// nodes: the server's or droplet's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Powered off (`cairn lab node poweroff`): no processes and no network,
    /// its disk kept for `poweron`. `up` leaves such a node off.
    #[serde(default)]
    pub powered_off: bool,
}

/// A node's address on a private network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateAttachment {
    /// Id of the network (chosen by the caller, e.g. a cloud network id).
    pub network: String,
    /// The network's range, e.g. `10.1.0.0/16`.
    pub cidr: String,
    /// The node's address in it, e.g. `10.1.1.2`.
    pub address: String,
}

/// A private network: a bridge inside the lab's helper namespace.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PrivateNetwork {
    pub index: u32,
    pub cidr: String,
}

impl NodeRecord {
    /// The name the node calls itself: its hostname, else its name.
    pub fn hostname(&self) -> &str {
        self.hostname.as_deref().unwrap_or(&self.name)
    }
}

impl LabRecord {
    /// The name the inventory and `cairn lab ssh` give node `n`: its hostname
    /// when no other node has the same one (and no other node is named so),
    /// else its own name, which is unique.
    pub fn host_name_of(&self, n: &NodeRecord) -> String {
        let h = n.hostname();
        let shared = self
            .nodes
            .values()
            .any(|o| o.name != n.name && (o.hostname() == h || o.name == h));
        if shared {
            n.name.clone()
        } else {
            h.to_string()
        }
    }

    /// The node `name` refers to: a node's name, or a host name
    /// ([`LabRecord::host_name_of`]).
    pub fn find_node(&self, name: &str) -> Option<&NodeRecord> {
        self.nodes
            .get(name)
            .or_else(|| self.nodes.values().find(|n| self.host_name_of(n) == name))
    }

    /// The lab's bridge address.
    pub fn gateway(&self) -> String {
        naming::gateway(self.subnet)
    }

    /// Reads the record of lab `name`, if it exists.
    pub fn load(name: &str) -> Result<Option<LabRecord>> {
        let p = paths(name).record;
        match std::fs::read_to_string(&p) {
            Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                LabError::lab(name, format!("record {} is corrupt: {e}", p.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::io("read", &p)(e)),
        }
    }

    /// Writes the record atomically.
    pub fn save(&self) -> Result<()> {
        let p = paths(&self.name).record;
        let text = serde_json::to_string_pretty(self).expect("record serializes");
        write_atomic(&p, text.as_bytes(), 0o600)
    }
}

/// Writes `contents` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(LabError::io("create", &tmp))?;
    f.write_all(contents).map_err(LabError::io("write", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(LabError::io("rename into place", path))
}

/// An exclusive flock(2) on a file, released on drop.
pub struct LabLock {
    _file: File,
}

impl LabLock {
    /// Blocks until the lock on `path` is held (creating the file).
    pub fn acquire(path: &Path) -> Result<LabLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(LabError::io("create directory", dir))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(LabError::io("open lock", path))?;
        loop {
            // SAFETY: flock on a valid, owned file descriptor.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(LabLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(LabError::io("lock", path)(err));
            }
        }
    }

    /// The lock of lab `name`.
    pub fn lab(name: &str) -> Result<LabLock> {
        LabLock::acquire(&paths(name).lock)
    }

    /// The machine-wide lock taken while a new lab picks its subnet.
    pub fn allocation() -> Result<LabLock> {
        LabLock::acquire(&Path::new(STATE_ROOT).join(".allocate.lock"))
    }
}

/// Subnet indices used by other labs' records.
pub fn used_subnets() -> Vec<u8> {
    lab_names()
        .iter()
        .filter_map(|n| LabRecord::load(n).ok().flatten())
        .map(|r| r.subnet)
        .collect()
}
