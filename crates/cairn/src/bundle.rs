//! A runbook's files in memory: from the binary (shipped runbooks) or a folder.

use crate::error::StepError;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// The files of one runbook folder, keyed by relative path.
#[derive(Clone, Debug, Default)]
pub struct Bundle {
    /// Where it came from, for messages (`runbooks/etcd-hetzner-apt` or a path).
    pub origin: String,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl Bundle {
    pub fn new(origin: impl Into<String>, files: BTreeMap<PathBuf, Vec<u8>>) -> Self {
        Bundle {
            origin: origin.into(),
            files,
        }
    }

    /// Check that `rel` is a plain relative path inside the bundle.
    pub fn check_path(rel: &str) -> Result<PathBuf, StepError> {
        let path = Path::new(rel);
        let ok = !rel.is_empty()
            && path
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if ok {
            Ok(path
                .components()
                .filter(|c| !matches!(c, Component::CurDir))
                .collect())
        } else {
            Err(StepError::invalid(
                "path",
                format!("`{rel}` escapes the runbook folder (only relative paths inside it are allowed)"),
            ))
        }
    }

    /// Read a file of the runbook by relative path.
    pub fn read(&self, rel: &str) -> Result<&[u8], StepError> {
        let path = Self::check_path(rel)?;
        self.files.get(&path).map(Vec::as_slice).ok_or_else(|| {
            StepError::invalid(
                "path",
                format!("no file `{rel}` in runbook {}", self.origin),
            )
        })
    }

    /// All files, for hashing and listing.
    pub fn files(&self) -> &BTreeMap<PathBuf, Vec<u8>> {
        &self.files
    }
}
