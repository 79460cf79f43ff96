//! Loading runbooks: shipped ones embedded in the binary, or a folder on disk.

use crate::bundle::Bundle;
use crate::manifest::{Manifest, ManifestError};
use include_dir::{include_dir, Dir};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

static RUNBOOKS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../../runbooks");
static STDLIB: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../../stdlib");

/// A loaded runbook.
#[derive(Clone, Debug)]
pub struct Runbook {
    pub manifest: Manifest,
    pub bundle: Arc<Bundle>,
    /// `main.rhai`.
    pub script: String,
    /// `builtin:NAME` or the folder's path, as recorded in the journal.
    pub source: String,
    /// How the runbook's files are named in messages: `runbooks/NAME` or the path given.
    pub label: String,
}

/// Why a runbook could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no runbook `{0}`: not a shipped runbook (see `cairn list`) and no such folder")]
    NotFound(String),
    #[error("{path}: {message}")]
    Folder { path: String, message: String },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl Runbook {
    /// Load `spec`: a folder path (contains `/` or exists) or a shipped runbook's name.
    pub fn load(spec: &str) -> Result<Runbook, LoadError> {
        if let Some(name) = spec.strip_prefix("builtin:") {
            return Self::builtin(name);
        }
        let path = Path::new(spec);
        if path.is_dir() {
            return Self::folder(path);
        }
        if spec.contains('/') {
            return Err(LoadError::Folder {
                path: spec.into(),
                message: "no such folder".into(),
            });
        }
        Self::builtin(spec)
    }

    /// A shipped runbook.
    pub fn builtin(name: &str) -> Result<Runbook, LoadError> {
        let dir = RUNBOOKS
            .get_dir(name)
            .ok_or_else(|| LoadError::NotFound(name.into()))?;
        let mut files = BTreeMap::new();
        collect_embedded(dir, dir.path(), &mut files);
        Self::from_files(format!("runbooks/{name}"), format!("builtin:{name}"), files)
    }

    /// A runbook folder on disk.
    pub fn folder(path: &Path) -> Result<Runbook, LoadError> {
        let mut files = BTreeMap::new();
        collect_disk(path, path, &mut files).map_err(|e| LoadError::Folder {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let label = path.display().to_string().trim_end_matches('/').to_string();
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Self::from_files(label, abs.display().to_string(), files)
    }

    fn from_files(
        label: String,
        source: String,
        files: BTreeMap<PathBuf, Vec<u8>>,
    ) -> Result<Runbook, LoadError> {
        let text = |name: &str| -> Result<String, LoadError> {
            let bytes = files
                .get(Path::new(name))
                .ok_or_else(|| LoadError::Folder {
                    path: label.clone(),
                    message: format!("no {name} in the runbook folder"),
                })?;
            String::from_utf8(bytes.clone()).map_err(|_| LoadError::Folder {
                path: format!("{label}/{name}"),
                message: "not UTF-8 text".into(),
            })
        };
        let manifest = Manifest::parse(&format!("{label}/runbook.toml"), &text("runbook.toml")?)?;
        let script = text("main.rhai")?;
        Ok(Runbook {
            manifest,
            bundle: Arc::new(Bundle::new(label.clone(), files)),
            script,
            source,
            label,
        })
    }

    /// The name Rhai gives `main.rhai` in positions and errors.
    pub fn script_name(&self) -> String {
        format!("{}/main.rhai", self.label)
    }

    /// A digest of every file of the runbook and of the stdlib it can import:
    /// resume refuses a run whose runbook changed since.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        for (path, bytes) in self.bundle.files() {
            h.update(path.display().to_string().as_bytes());
            h.update([0]);
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        for (name, text) in stdlib_modules() {
            h.update(name.as_bytes());
            h.update([0]);
            h.update((text.len() as u64).to_le_bytes());
            h.update(text.as_bytes());
        }
        hex::encode(&h.finalize()[..16])
    }
}

fn collect_embedded(dir: &Dir<'_>, root: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for f in dir.files() {
        let rel = f
            .path()
            .strip_prefix(root)
            .unwrap_or(f.path())
            .to_path_buf();
        out.insert(rel, f.contents().to_vec());
    }
    for d in dir.dirs() {
        collect_embedded(d, root, out);
    }
}

fn collect_disk(
    dir: &Path,
    root: &Path,
    out: &mut BTreeMap<PathBuf, Vec<u8>>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            collect_disk(&path, root, out)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
            out.insert(rel, std::fs::read(&path)?);
        }
    }
    Ok(())
}

/// Shipped runbooks: (name, manifest), sorted by name.
pub fn builtins() -> Vec<Result<Runbook, LoadError>> {
    let mut names: Vec<&str> = RUNBOOKS
        .dirs()
        .filter_map(|d| d.path().file_name()?.to_str())
        .collect();
    names.sort();
    names.into_iter().map(Runbook::builtin).collect()
}

/// Stdlib modules: (`stdlib/NAME.rhai`, text), sorted.
pub fn stdlib_modules() -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = STDLIB
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "rhai"))
        .filter_map(|f| Some((format!("stdlib/{}", f.path().display()), f.contents_utf8()?)))
        .collect();
    out.sort();
    out
}

/// The text of stdlib module `name` (`etcd` for `import "etcd"`).
pub fn stdlib_module(name: &str) -> Option<&'static str> {
    STDLIB.get_file(format!("{name}.rhai"))?.contents_utf8()
}
