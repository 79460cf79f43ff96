//! The workspace's key store: `<workspace>/pki/<name>.crt` (0644) and
//! `<name>.key` (0600) in a 0700 folder.
//!
//! Keys are written to a temporary file created with mode 0600 from the start
//! and renamed into place, so a key is never readable by others, not even for
//! a moment, and a crash never leaves half a key behind.

use crate::error::StepError;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the pki folder.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private keys.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates (public).
pub const CERT_MODE: u32 = 0o644;

/// Check a certificate name: `[a-zA-Z0-9._-]+`, not `.` or `..`.
pub fn check_name(field: &str, name: &str) -> Result<(), StepError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StepError::invalid(
            field,
            format!(
                "`{name}` is not a valid name (letters, digits, `.`, `_`, `-`; no path separators)"
            ),
        ))
    }
}

/// A private key as found on disk.
pub struct KeyFile {
    pub pem: String,
    /// Permission bits (`0o600`).
    pub mode: u32,
}

/// The pki folder of a workspace.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Store { dir: dir.into() }
    }

    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<name>.crt`
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    /// `<dir>/<name>.key`
    pub fn key_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// The certificate PEM of `name`, or `None` if there is none.
    pub fn read_cert(&self, name: &str) -> Result<Option<String>, StepError> {
        let path = self.cert_path(name);
        match fs::read_to_string(&path) {
            Ok(pem) => Ok(Some(pem)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StepError::io("reading certificate", path, e)),
        }
    }

    /// The private key of `name` with its mode, or `None` if there is none.
    pub fn read_key(&self, name: &str) -> Result<Option<KeyFile>, StepError> {
        let path = self.key_path(name);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StepError::io("reading key", path, e)),
        };
        let mode = file
            .metadata()
            .map_err(|e| StepError::io("reading key", &path, e))?
            .mode()
            & 0o7777;
        let pem =
            std::io::read_to_string(file).map_err(|e| StepError::io("reading key", &path, e))?;
        Ok(Some(KeyFile { pem, mode }))
    }

    /// Create the folder with mode 0700, or check an existing one: a real
    /// folder of this user with mode 0700 (a symlink or a wider mode is
    /// refused with the fix to apply, never changed: see
    /// [`crate::workspace::check_private_dir`]).
    pub fn ensure_dir(&self) -> Result<(), StepError> {
        let unsafe_dir = |e: crate::workspace::UnsafeDir| StepError::Other(e.to_string());
        crate::workspace::check_private_dir(&self.dir).map_err(unsafe_dir)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)
            .map_err(|e| StepError::io("creating folder", &self.dir, e))?;
        crate::workspace::check_private_dir(&self.dir).map_err(unsafe_dir)
    }

    /// Write the private key of `name` (mode 0600 from creation on).
    pub fn write_key(&self, name: &str, pem: &str) -> Result<PathBuf, StepError> {
        let path = self.key_path(name);
        self.write_atomic(&path, pem.as_bytes(), KEY_MODE)?;
        Ok(path)
    }

    /// Write the certificate of `name` (mode 0644).
    pub fn write_cert(&self, name: &str, pem: &str) -> Result<PathBuf, StepError> {
        let path = self.cert_path(name);
        self.write_atomic(&path, pem.as_bytes(), CERT_MODE)?;
        Ok(path)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<(), StepError> {
        self.ensure_dir()?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self
            .dir
            .join(format!(".{file_name}.{:016x}.tmp", rand::random::<u64>()));
        let write = || -> std::io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)?;
            // the umask may have narrowed a public file's mode; secrets are never widened
            file.set_permissions(fs::Permissions::from_mode(mode))?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            StepError::io("writing", path, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["ca", "etcd-ca", "node_1.peer", "a.b-c"] {
            check_name("name", good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\\y", "ä"] {
            let err = check_name("name", bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid `name`: `"), "{bad}: {err}");
        }
    }

    #[test]
    fn modes_of_dir_key_and_cert() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::new(tmp.path().join("ws/pki"));
        store.write_key("k", "secret").unwrap();
        store.write_cert("k", "public").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(store.dir()), 0o700);
        assert_eq!(mode(&store.key_path("k")), 0o600);
        assert_eq!(mode(&store.cert_path("k")), 0o644);
        assert_eq!(store.read_key("k").unwrap().unwrap().pem, "secret");
        // no temporary files are left behind
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        // a folder made too open by someone else is refused, not silently changed
        fs::set_permissions(store.dir(), fs::Permissions::from_mode(0o755)).unwrap();
        let err = store.write_key("k", "again").unwrap_err().to_string();
        assert!(err.contains("has mode 0755"), "{err}");
        assert!(err.contains("chmod 0700"), "{err}");
        assert_eq!(mode(store.dir()), 0o755);
        assert_eq!(store.read_key("k").unwrap().unwrap().pem, "secret");

        // a symlinked folder: refused, and its target's mode is left alone
        let shared = tmp.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o755)).unwrap();
        let linked = Store::new(tmp.path().join("ws2/pki"));
        fs::create_dir(tmp.path().join("ws2")).unwrap();
        std::os::unix::fs::symlink(&shared, linked.dir()).unwrap();
        let err = linked.write_key("k", "secret").unwrap_err().to_string();
        assert!(err.contains("is a symlink"), "{err}");
        assert_eq!(mode(&shared), 0o755);
        assert!(
            fs::read_dir(&shared).unwrap().next().is_none(),
            "nothing written through the link"
        );
    }
}
