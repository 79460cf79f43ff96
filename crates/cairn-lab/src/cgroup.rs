//! Per-node cgroups. Without a host systemd, systemd-nspawn puts a container's
//! tree under the caller's cgroup, so nodes started from one process would
//! share `/payload/system.slice/*` and stop each other's services (see
//! FACTS.md, "cgroup trap"). Each node therefore gets its own cgroup,
//! `cairn-<lab>/<node>`, in the cgroup2 hierarchy and in the v1 `name=systemd`
//! hierarchy (whichever exist); the launching shell joins them before it execs
//! systemd-nspawn. Where a v1 memory controller exists, the node also gets a
//! memory cgroup below the caller's, used to report its memory use.

use super::error::{LabError, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A cgroup hierarchy mounted on this machine.
#[derive(Clone, Debug)]
struct Mount {
    path: PathBuf,
    fstype: String,
    options: String,
}

fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 4 && (f[2] == "cgroup" || f[2] == "cgroup2")).then(|| Mount {
                path: PathBuf::from(f[1]),
                fstype: f[2].to_string(),
                options: f[3].to_string(),
            })
        })
        .collect()
}

/// Roots of the hierarchies systemd-nspawn places containers in: every
/// cgroup2 mount and the v1 `name=systemd` mount.
pub fn hierarchies() -> Vec<PathBuf> {
    mounts()
        .into_iter()
        .filter(|m| m.fstype == "cgroup2" || m.options.split(',').any(|o| o == "name=systemd"))
        .map(|m| m.path)
        .collect()
}

/// The caller's own cgroup in the v1 memory hierarchy, if there is one.
fn own_memory_cgroup() -> Option<PathBuf> {
    let m = mounts()
        .into_iter()
        .find(|m| m.fstype == "cgroup" && m.options.split(',').any(|o| o == "memory"))?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls
            .split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    })?;
    Some(m.path.join(rel.trim_start_matches('/')))
}

/// The lab's cgroup directories: required ones (hierarchies where nspawn
/// places containers) and, if available, a memory cgroup below the caller's.
pub fn lab_dirs(cgroup_name: &str) -> (Vec<PathBuf>, Option<PathBuf>) {
    let required = hierarchies()
        .into_iter()
        .map(|h| h.join(cgroup_name))
        .collect();
    let memory = own_memory_cgroup().map(|m| m.join(cgroup_name));
    (required, memory)
}

/// Creates node `node`'s cgroups under the lab's directories; returns the
/// directories the launching shell must join. The memory cgroup is best
/// effort (it only serves measurements).
pub fn create_node(
    required: &[PathBuf],
    memory: Option<&Path>,
    node: &str,
) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for lab_dir in required {
        let d = lab_dir.join(node);
        std::fs::create_dir_all(&d).map_err(LabError::io("create cgroup", &d))?;
        dirs.push(d);
    }
    if let Some(m) = memory {
        let d = m.join(node);
        if std::fs::create_dir_all(&d).is_ok() {
            dirs.push(d);
        }
    }
    Ok(dirs)
}

/// Shell lines that move the running shell into `dirs`.
pub fn join_prelude(dirs: &[PathBuf]) -> String {
    dirs.iter()
        .map(|d| format!("echo $$ > '{}/cgroup.procs' || exit 125\n", d.display()))
        .collect()
}

/// Pids in `dir` and all cgroups below it.
pub fn procs(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(procs(&e.path()));
            }
        }
    }
    out
}

/// Removes the cgroup `dir` and everything below it (children first). A
/// cgroup whose last process just exited can stay busy for a moment; retries
/// until `timeout`.
pub fn remove_tree(dir: &Path, timeout: Duration) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    loop {
        match remove_once(dir) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(LabError::io("remove cgroup", dir)(e));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn remove_once(dir: &Path) -> std::io::Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_once(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Memory charged to the cgroup `dir` in bytes (v1 `memory.usage_in_bytes`
/// or v2 `memory.current`), if it has a memory controller.
pub fn memory_usage(dir: &Path) -> Option<u64> {
    ["memory.usage_in_bytes", "memory.current"]
        .iter()
        .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
        .and_then(|s| s.trim().parse().ok())
}
