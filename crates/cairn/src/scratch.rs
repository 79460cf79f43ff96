//! Scratch folders: `$TMPDIR/cairn-plan-PID-RANDOM`, where a pass of the
//! script keeps what must not touch the workspace (a plan's copy of the
//! pinned host keys).
//!
//! A scratch folder is private (0700, created new, never an existing one) and
//! removed on every way out: when dropped (normal end, errors, panics), by
//! [`remove_own`] before a forced exit (a second Ctrl-C, SIGTERM or SIGHUP),
//! and — for a process that was killed outright — by the next cairn that
//! makes one, which sweeps folders whose PID is no longer running.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

const PREFIX: &str = "cairn-plan-";

/// A scratch folder, removed when dropped.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Sweep stale folders of dead processes, then make a new one.
    pub fn new() -> std::io::Result<Scratch> {
        let tmp = std::env::temp_dir();
        sweep_stale(&tmp);
        loop {
            let path = tmp.join(format!(
                "{PREFIX}{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Scratch { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The PID a scratch folder's name carries, if it is one.
fn pid_of(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, random) = rest.split_once('-')?;
    (random.len() == 8 && random.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| pid.parse().ok())
        .flatten()
}

fn running(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove this process's scratch folders (before a forced exit).
pub fn remove_own() {
    remove_where(&std::env::temp_dir(), |pid| {
        pid == std::process::id() as i32
    });
}

/// Remove scratch folders in `tmp` left by processes that are gone. Only
/// folders owned by this user are touched (`remove_dir_all` does not follow
/// symbolic links).
pub fn sweep_stale(tmp: &Path) {
    remove_where(tmp, |pid| pid > 0 && !running(pid));
}

fn remove_where(tmp: &Path, pick: impl Fn(i32) -> bool) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(pid_of) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_dir() && meta.uid() == me && pick(pid) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_parsed_strictly() {
        assert_eq!(pid_of("cairn-plan-123-0000abcd"), Some(123));
        assert_eq!(pid_of("cairn-plan-123-abc"), None);
        assert_eq!(pid_of("cairn-plan-x-0000abcd"), None);
        assert_eq!(pid_of("other-123-0000abcd"), None);
    }

    #[test]
    fn stale_folders_of_dead_processes_are_swept_and_live_ones_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = tmp.path().join(format!("{PREFIX}{dead}-0000abcd"));
        let live = tmp
            .path()
            .join(format!("{PREFIX}{}-0000abcd", std::process::id()));
        let other = tmp.path().join("cairn-plan-notes");
        for d in [&stale, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(stale.join("known_hosts"), "x").unwrap();
        sweep_stale(tmp.path());
        assert!(!stale.exists());
        assert!(live.exists() && other.exists());
    }
}
