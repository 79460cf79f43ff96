//! The workspace: cairn's state on the operator's machine (`.cairn/` by default).
//!
//! The workspace holds the CA's private key: the workspace folder and its
//! `pki/` must be real folders (never symlinks) owned by the user running
//! cairn, with no access for anyone else (0700). cairn checks this before it
//! reads or writes them and refuses otherwise, saying how to fix it; it never
//! changes the mode of a folder it did not just create (a symlinked `pki/`
//! would have it change the mode of whatever the link points at).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Mode of the workspace's private folders.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Paths of the workspace. Nothing here touches the disk until asked.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
}

/// A private folder of the workspace that is not safe to keep keys in.
#[derive(Debug, thiserror::Error)]
pub enum UnsafeDir {
    #[error("{path} is a symlink (to {target}); cairn keeps private keys there and refuses to follow a link. Make it a real folder: `rm {path} && mkdir -m 0700 {path}` (then copy in the files you need from {target})")]
    Symlink { path: String, target: String },
    #[error("{path} is not a folder; move it away and let cairn create the folder")]
    NotDir { path: String },
    #[error("{path} belongs to uid {owner}, not to you (uid {me}); cairn keeps private keys there. Use a workspace of your own (--state-dir), or `chown {me} {path}` if it is yours")]
    Owner { path: String, owner: u32, me: u32 },
    #[error("{path} has mode {mode:04o}: others can read or enter it, and cairn keeps private keys there. Fix it with `chmod 0700 {path}` (and check who read it)")]
    Mode { path: String, mode: u32 },
    #[error("cannot inspect {path}: {message}")]
    Io { path: String, message: String },
}

/// Check that `path`, if it exists, is a real folder owned by this user with
/// mode 0700. Nothing is followed or changed.
pub fn check_private_dir(path: &Path) -> Result<(), UnsafeDir> {
    let shown = path.display().to_string();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(UnsafeDir::Io {
                path: shown,
                message: e.to_string(),
            })
        }
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        return Err(UnsafeDir::Symlink {
            path: shown,
            target,
        });
    }
    if !meta.is_dir() {
        return Err(UnsafeDir::NotDir { path: shown });
    }
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(UnsafeDir::Owner {
            path: shown,
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(UnsafeDir::Mode { path: shown, mode });
    }
    Ok(())
}

impl Workspace {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Workspace { root: root.into() }
    }
    /// The workspace folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Where generated keys and certificates live (keys 0600).
    pub fn pki_dir(&self) -> PathBuf {
        self.root.join("pki")
    }
    /// Host keys pinned on first contact.
    pub fn known_hosts(&self) -> PathBuf {
        self.root.join("known_hosts")
    }
    /// One folder per run, each with its journal.
    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }
    /// The workspace lock (see [`crate::lock`]).
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }
    /// Files a runbook fetched or produced for the operator (e.g. discovered member lists).
    pub fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }
    /// Check the private folders (the workspace and its `pki/`) that exist:
    /// real folders, owned by this user, mode 0700 (see [`check_private_dir`]).
    pub fn check_private_dirs(&self) -> Result<(), UnsafeDir> {
        check_private_dir(&self.root)?;
        check_private_dir(&self.pki_dir())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn symlinks_and_wide_modes_are_refused_with_the_fix_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::new(tmp.path().join(".cairn"));
        ws.check_private_dirs().unwrap(); // nothing yet: fine

        std::fs::create_dir(ws.root()).unwrap();
        std::fs::set_permissions(ws.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
        ws.check_private_dirs().unwrap();

        // a pki/ that is a link to a shared folder
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(&shared, ws.pki_dir()).unwrap();
        let err = ws.check_private_dirs().unwrap_err().to_string();
        let pki = ws.pki_dir().display().to_string();
        assert!(
            err.starts_with(&format!("{pki} is a symlink (to {})", shared.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!("`rm {pki} && mkdir -m 0700 {pki}`")),
            "{err}"
        );
        let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "the link's target is left alone");

        // a real pki/ that others can read
        std::fs::remove_file(ws.pki_dir()).unwrap();
        std::fs::create_dir(ws.pki_dir()).unwrap();
        std::fs::set_permissions(ws.pki_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = ws.check_private_dirs().unwrap_err().to_string();
        assert_eq!(
            err,
            format!("{pki} has mode 0755: others can read or enter it, and cairn keeps private keys there. Fix it with `chmod 0700 {pki}` (and check who read it)")
        );
        let mode = std::fs::metadata(ws.pki_dir())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755, "reported, not silently changed");

        // the workspace itself
        std::fs::set_permissions(ws.pki_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(ws.root(), std::fs::Permissions::from_mode(0o750)).unwrap();
        let err = ws.check_private_dirs().unwrap_err().to_string();
        assert!(err.contains("has mode 0750"), "{err}");
        std::fs::set_permissions(ws.root(), std::fs::Permissions::from_mode(0o700)).unwrap();
        ws.check_private_dirs().unwrap();

        // a file where the folder should be
        std::fs::remove_dir(ws.pki_dir()).unwrap();
        std::fs::write(ws.pki_dir(), "x").unwrap();
        let err = ws.check_private_dirs().unwrap_err().to_string();
        assert!(err.contains("is not a folder"), "{err}");
    }
}
