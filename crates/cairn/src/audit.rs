//! The audit log: who ran what, when, and how it ended.
//!
//! Every `cairn run`, `cairn plan` and `cairn resume` appends exactly one
//! [`Entry`] when it ends — succeeded, failed, refused or interrupted — through
//! one function of [`crate::launch`]. An entry holds who (user, machine, pid),
//! when, the command, the runbook and its version, the run id, the digest of
//! the saved plan it showed or applied, and the result with its exit code. It
//! never holds a parameter value (a `--var` may be a secret).
//!
//! The store is an [`AuditStore`]; [`LocalAudit`] keeps JSON lines in
//! `<workspace>/audit.log` (created 0600, each entry one `write` with
//! `O_APPEND`, so entries of concurrent commands never interleave).
//!
//! A command whose workspace does not exist (a first `cairn plan`), or is not
//! safe to write (see [`crate::workspace::check_private_dir`]), records
//! nothing locally: it changed nothing, and creating a workspace only to log
//! would break the rule that plans leave no trace. [`store_for`] decides
//! this; it is the one place to choose another store.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The command an entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Run,
    Plan,
    Resume,
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Command::Run => "run",
            Command::Plan => "plan",
            Command::Resume => "resume",
        })
    }
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Succeeded; for a plan: nothing to change.
    Ok,
    /// A plan with changes pending (exit 2).
    Changes,
    /// Started and failed (a step or the script failed).
    Failed,
    /// Stopped before anything ran: bad inputs, a lock held, a saved plan
    /// that no longer applies, a resume that is not allowed.
    Refused,
    /// Stopped by a signal (Ctrl-C, SIGTERM, SIGHUP).
    Interrupted,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Ok => "ok",
            Outcome::Changes => "changes",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Interrupted => "interrupted",
        })
    }
}

/// One command, as the audit log records it. Never holds a parameter value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When it ended, RFC 3339 UTC.
    pub time: String,
    /// The user who ran it (login name, else `uid N`).
    pub user: String,
    /// The machine it ran on (host name).
    pub host: String,
    pub pid: u32,
    pub command: Command,
    /// The runbook's name (as given on the command line when it could not be
    /// loaded).
    pub runbook: String,
    /// The runbook's version (empty when it could not be loaded).
    pub version: String,
    /// The run, for `run` and `resume` once it has an id.
    pub run_id: Option<String>,
    /// SHA-256 (hex) of the saved plan the command showed (`plan`) or applied
    /// (`run --plan FILE`): the file's bytes, so `sha256sum FILE` matches.
    /// See [`crate::launch::plan_digest`]. `None` for a run without a saved
    /// plan, a resume, or a plan that failed.
    pub plan_digest: Option<String>,
    pub result: Outcome,
    pub exit_code: i32,
}

impl Entry {
    /// An entry for `command` by this user, on this machine, in this process,
    /// now; the caller fills in the rest.
    pub fn now(command: Command, runbook: &str, result: Outcome, exit_code: i32) -> Entry {
        Entry {
            time: time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            user: user_name(),
            host: host_name(),
            pid: std::process::id(),
            command,
            runbook: runbook.to_string(),
            version: String::new(),
            run_id: None,
            plan_digest: None,
            result,
            exit_code,
        }
    }
}

/// The login name of this process's effective user, else `$USER`, else `uid N`.
fn user_name() -> String {
    // SAFETY: geteuid has no preconditions; getpwuid_r writes only into the
    // buffers given, and the name is copied out before they are dropped.
    unsafe {
        let uid = libc::geteuid();
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out);
        if rc == 0 && !out.is_null() && !pw.pw_name.is_null() {
            let name = std::ffi::CStr::from_ptr(pw.pw_name).to_string_lossy();
            if !name.is_empty() {
                return name.into_owned();
            }
        }
        std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| format!("uid {uid}"))
    }
}

/// This machine's host name.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Why the audit log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot {action} audit log {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("audit log {path} line {line} is damaged: {message}")]
    Damaged {
        path: String,
        line: usize,
        message: String,
    },
}

/// Where audit entries go.
pub trait AuditStore {
    /// Append one entry.
    fn append(&self, e: &Entry) -> Result<(), AuditError>;
    /// Every entry, oldest first; a damaged entry is an error naming it.
    fn entries(&self) -> Result<Vec<Entry>, AuditError>;
}

/// The audit log of a local workspace: `<workspace>/audit.log`, one JSON
/// object a line.
#[derive(Clone, Debug)]
pub struct LocalAudit {
    path: PathBuf,
}

impl LocalAudit {
    /// The log of the workspace at `state_dir` (nothing is touched yet).
    pub fn new(state_dir: &Path) -> Self {
        LocalAudit {
            path: state_dir.join("audit.log"),
        }
    }
    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditStore for LocalAudit {
    fn append(&self, e: &Entry) -> Result<(), AuditError> {
        let io = |action, source| AuditError::Io {
            action,
            path: self.path.display().to_string(),
            source,
        };
        let mut line = serde_json::to_vec(e).map_err(|e| io("encode an entry for", e.into()))?;
        line.push(b'\n');
        let mut file = crate::private_file::open_append(&self.path).map_err(|e| io("open", e))?;
        // One write: with O_APPEND the kernel places it whole at the end.
        let n = file.write(&line).map_err(|e| io("append to", e))?;
        if n != line.len() {
            return Err(io(
                "append to",
                std::io::Error::other(format!("wrote {n} of {} bytes", line.len())),
            ));
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<Entry>, AuditError> {
        let path = self.path.display().to_string();
        let text = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(AuditError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        let mut out = Vec::new();
        let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            if i == last && line.is_empty() {
                break;
            }
            let damaged = |message: String| AuditError::Damaged {
                path: path.clone(),
                line: i + 1,
                message,
            };
            if i == last {
                return Err(damaged(
                    "it was cut off (no end of line; a full disk?)".into(),
                ));
            }
            let entry = serde_json::from_slice(line).map_err(|e| damaged(e.to_string()))?;
            out.push(entry);
        }
        Ok(out)
    }
}

/// The store a command of the workspace at `state_dir` appends to: its
/// [`LocalAudit`], or `None` when the workspace does not exist or is not safe
/// to write (then nothing is recorded; see the module's documentation).
pub fn store_for(state_dir: &Path) -> Option<Box<dyn AuditStore>> {
    if !state_dir.is_dir() || crate::workspace::check_private_dir(state_dir).is_err() {
        return None;
    }
    Some(Box::new(LocalAudit::new(state_dir)))
}

/// The first 12 hex digits of a digest, for tables.
fn short(d: &str) -> &str {
    d.get(..12).unwrap_or(d)
}

/// The entries as a table, oldest first.
pub fn table(entries: &[Entry]) -> String {
    let header = [
        "TIME",
        "USER@HOST",
        "COMMAND",
        "RUNBOOK@VERSION",
        "RUN",
        "PLAN",
        "RESULT",
    ];
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            [
                e.time.clone(),
                format!("{}@{}", e.user, e.host),
                e.command.to_string(),
                if e.runbook.is_empty() {
                    "-".into()
                } else if e.version.is_empty() {
                    e.runbook.clone()
                } else {
                    format!("{}@{}", e.runbook, e.version)
                },
                e.run_id.clone().unwrap_or_else(|| "-".into()),
                e.plan_digest
                    .as_deref()
                    .map(short)
                    .unwrap_or("-")
                    .to_string(),
                format!("{} (exit {})", e.result, e.exit_code),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
    out
}

/// `cairn state log [--json]`: the workspace's audit log, oldest first.
pub fn log(state_dir: &Path, json: bool) -> Result<crate::error::Success, crate::error::Error> {
    let store = LocalAudit::new(state_dir);
    let entries = store.entries()?;
    if json {
        println!("{}", to_json(&entries)?);
    } else if entries.is_empty() {
        println!("No entries in {}.", store.path().display());
    } else {
        print!("{}", table(&entries));
    }
    Ok(crate::error::Success::Done)
}

/// The entries as `cairn state log --json` prints them.
pub fn to_json(entries: &[Entry]) -> Result<String, crate::error::Error> {
    serde_json::to_string_pretty(entries).map_err(|source| crate::error::Error::Encode {
        what: "the audit log",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry(command: Command, result: Outcome, code: i32) -> Entry {
        let mut e = Entry::now(command, "steps", result, code);
        e.version = "1.0.0".into();
        e
    }

    #[test]
    fn append_and_read_back_in_order_0600() {
        let d = tempfile::tempdir().unwrap();
        let store = LocalAudit::new(d.path());
        assert_eq!(store.entries().unwrap(), []);
        let a = entry(Command::Plan, Outcome::Changes, 2);
        let mut b = entry(Command::Run, Outcome::Failed, 1);
        b.run_id = Some("20261201-200000-abcd".into());
        store.append(&a).unwrap();
        store.append(&b).unwrap();
        assert_eq!(store.entries().unwrap(), [a, b]);
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_damaged_line_is_reported_with_its_number() {
        let d = tempfile::tempdir().unwrap();
        let store = LocalAudit::new(d.path());
        store.append(&entry(Command::Plan, Outcome::Ok, 0)).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(store.path())
            .unwrap();
        f.write_all(b"{not json}\n").unwrap();
        store.append(&entry(Command::Run, Outcome::Ok, 0)).unwrap();
        let e = store.entries().unwrap_err();
        let path = store.path().display();
        assert!(
            e.to_string()
                .starts_with(&format!("audit log {path} line 2 is damaged: ")),
            "{e}"
        );
        // a cut-off last line too
        std::fs::write(store.path(), b"{\"time\":").unwrap();
        let e = store.entries().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "audit log {path} line 1 is damaged: it was cut off (no end of line; a full disk?)"
            )
        );
    }

    #[test]
    fn no_store_for_a_missing_or_unsafe_workspace() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        assert!(store_for(&ws).is_none());
        assert!(!ws.exists(), "nothing created");
        std::fs::create_dir(&ws).unwrap();
        std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(store_for(&ws).is_none());
        std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(store_for(&ws).is_some());
    }

    #[test]
    fn table_lines_up_and_shortens_digests() {
        let mut a = entry(Command::Plan, Outcome::Changes, 2);
        a.time = "2026-12-01T20:00:00Z".into();
        a.user = "ann".into();
        a.host = "box".into();
        a.plan_digest = Some("0123456789abcdef0123".into());
        let mut b = entry(Command::Run, Outcome::Failed, 1);
        b.time = "2026-12-01T20:01:00Z".into();
        b.user = "bob".into();
        b.host = "ci-runner-7".into();
        b.run_id = Some("20261201-200100-abcd".into());
        assert_eq!(
            table(&[a, b]),
            "TIME                  USER@HOST        COMMAND  RUNBOOK@VERSION  RUN                   PLAN          RESULT\n\
             2026-12-01T20:00:00Z  ann@box          plan     steps@1.0.0      -                     0123456789ab  changes (exit 2)\n\
             2026-12-01T20:01:00Z  bob@ci-runner-7  run      steps@1.0.0      20261201-200100-abcd  -             failed (exit 1)\n"
        );
    }

    #[test]
    fn who_is_filled_in() {
        let e = Entry::now(Command::Run, "x", Outcome::Ok, 0);
        assert!(!e.user.is_empty() && !e.host.is_empty());
        assert_eq!(e.pid, std::process::id());
        assert!(e.time.ends_with('Z'), "{}", e.time);
        time::OffsetDateTime::parse(&e.time, &time::format_description::well_known::Rfc3339)
            .unwrap();
    }
}
