//! Files only this account reads and writes (lock files, the audit log),
//! opened so that a symlink planted where one belongs is never followed.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Open `path` for appending, creating it with mode 0600 if missing; refuses
/// (`ELOOP`) when `path` is a symlink.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::open_append;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_0600_and_never_writes_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("audit.jsonl");
        open_append(&own).unwrap().write_all(b"a\n").unwrap();
        let mode = std::fs::metadata(&own).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "kept\n").unwrap();
        let planted = dir.path().join("x.lock");
        std::os::unix::fs::symlink(&target, &planted).unwrap();
        let err = open_append(&planted).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept\n");
    }
}
