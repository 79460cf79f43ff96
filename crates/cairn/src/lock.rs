//! The workspace lock: one writer per workspace.
//!
//! `cairn run` and `cairn resume` hold an exclusive `flock` on `.cairn/lock`
//! while they run, so two of them never write one workspace (its CA, its
//! journals, its pinned host keys) at the same time. The lock file holds who
//! has it — pid, command line (values of `--var` left out) and start time —
//! for the error the second process prints. The kernel drops a `flock` when
//! its holder dies, so a lock left by a killed process is simply taken over,
//! and the new holder rewrites the file. The file itself stays: removing a
//! lock file lets two processes hold locks on two different files.
//!
//! Plans do not take the lock; they only ask whether a run holds it and say so.

use crate::workspace::Workspace;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

/// Who holds (or last held) the lock, as written in the lock file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// The command line, with the values of `--var NAME=VALUE` left out.
    pub command: String,
    /// RFC 3339, UTC.
    pub started: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.pid == 0 {
            return write!(f, "another cairn process (it has not written its name yet)");
        }
        write!(
            f,
            "pid {} (`{}`), started {}",
            self.pid, self.command, self.started
        )
    }
}

impl Holder {
    /// This process.
    fn me() -> Self {
        Holder {
            pid: std::process::id(),
            command: command_line(std::env::args()),
            started: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }
    }

    fn to_text(&self) -> String {
        format!(
            "pid={}\ncommand={}\nstarted={}\n",
            self.pid,
            self.command.replace('\n', " "),
            self.started
        )
    }

    fn parse(text: &str) -> Self {
        let mut h = Holder::default();
        for line in text.lines() {
            match line.split_once('=') {
                Some(("pid", v)) => h.pid = v.trim().parse().unwrap_or(0),
                Some(("command", v)) => h.command = v.to_string(),
                Some(("started", v)) => h.started = v.to_string(),
                _ => {}
            }
        }
        h
    }
}

/// The command line to show another process: `--var NAME=VALUE` becomes
/// `--var NAME=...` (a value may be a secret).
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut after_var = false;
    for (i, a) in args.into_iter().enumerate() {
        let shown = if i == 0 {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or(a)
        } else if after_var {
            hide_value(&a)
        } else if let Some(v) = a.strip_prefix("--var=") {
            format!("--var={}", hide_value(v))
        } else {
            a
        };
        after_var = i > 0 && shown == "--var";
        out.push(shown);
    }
    out.join(" ")
}

fn hide_value(var: &str) -> String {
    match var.split_once('=') {
        Some((name, _)) => format!("{name}=..."),
        None => "...".into(),
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another cairn is writing to the workspace {ws}: {holder}; \
         wait for it to end (or stop it), then try again"
    )]
    Held { ws: String, holder: Holder },
    #[error("cannot lock the workspace {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The exclusive lock, held until dropped (or the process ends).
pub struct WorkspaceLock {
    _file: File,
}

fn flock(file: &File, op: libc::c_int) -> std::io::Result<()> {
    // SAFETY: flock on a descriptor this `File` owns.
    if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn read_holder(file: &mut File) -> Holder {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    Holder::parse(&text)
}

impl WorkspaceLock {
    /// Take the lock of `ws` (which must exist) or name who has it.
    pub fn acquire(ws: &Workspace) -> Result<WorkspaceLock, LockError> {
        let path = ws.lock_file();
        let io = |source| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
                return Err(LockError::Held {
                    ws: ws.root().display().to_string(),
                    holder: read_holder(&mut file),
                })
            }
            Err(e) => return Err(io(e)),
        }
        // Ours now (perhaps taken over from a dead process): say who we are.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(Holder::me().to_text().as_bytes())
            .map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(WorkspaceLock { _file: file })
    }
}

/// Who holds the lock of `ws` right now, if anyone. Changes nothing: a
/// workspace without a lock file is simply not locked.
pub fn holder(ws: &Workspace) -> Option<Holder> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(ws.lock_file())
        .ok()?;
    match flock(&file, libc::LOCK_SH | libc::LOCK_NB) {
        Ok(()) => {
            let _ = flock(&file, libc::LOCK_UN);
            None
        }
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Some(read_holder(&mut file)),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_values_are_left_out_of_the_command_line() {
        let args = [
            "/usr/bin/cairn",
            "run",
            "rb",
            "--var",
            "token=s3cret",
            "--var=x=1",
            "--lab",
        ]
        .map(String::from);
        assert_eq!(
            command_line(args),
            "cairn run rb --var token=... --var=x=... --lab"
        );
    }

    #[test]
    fn a_second_lock_names_the_first_and_a_dropped_one_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::new(dir.path());
        assert_eq!(holder(&ws), None);
        let first = WorkspaceLock::acquire(&ws).unwrap();
        let held = holder(&ws).expect("held");
        assert_eq!(held.pid, std::process::id());
        // flock locks belong to open file descriptions: a second open conflicts
        // even in the same process, as a second cairn would.
        match WorkspaceLock::acquire(&ws) {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, held),
            other => panic!("want Held, got {:?}", other.err()),
        }
        drop(first);
        // Other tests of this process spawn commands: a child forked while
        // the lock was open holds a copy of its descriptor until its exec
        // closes it (O_CLOEXEC), so the lock may outlive the drop briefly.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while holder(&ws).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "the dropped lock is still held after 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let _again = WorkspaceLock::acquire(&ws).unwrap();
    }
}
