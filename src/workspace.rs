//! The workspace: cairn's state on the operator's machine (`.cairn/` by default).

use std::path::{Path, PathBuf};

/// Paths of the workspace. Nothing here touches the disk until asked.
#[derive(Clone, Debug)]
pub struct Workspace {
    root: PathBuf,
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
}
