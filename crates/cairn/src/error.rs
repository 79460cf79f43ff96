//! Errors as data, end to end. A primitive fails with a [`StepError`]; the
//! executor raises it into Rhai as a typed [`StepFailure`] (with the step's key
//! and target), Rhai adds the runbook position, and the command ends with one
//! [`Error`]. [`crate::diagnostic::render`] renders it (the one `error: `
//! prefix) and [`Error::exit_code`] picks the process exit code; `main.rs` is
//! the only place that exits with it. The table of exit codes is [`exit`]
//! (documented in docs/exit-codes.md).

use std::path::PathBuf;
use std::sync::Arc;

/// What went wrong inside a primitive. Never holds a secret value.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// An argument value is invalid (after deserialization succeeded).
    #[error("invalid `{field}`: {message}")]
    Invalid { field: String, message: String },
    /// Could not connect to a host.
    #[error("cannot connect to {host} ({address}): {message}")]
    Connect {
        host: String,
        address: String,
        message: String,
    },
    /// The host presented a key different from the one pinned for it.
    #[error("host key of {host} ({address}) changed since it was pinned in {known_hosts}; refusing to connect (if the host was rebuilt, remove its line from that file)")]
    HostKeyChanged {
        host: String,
        address: String,
        known_hosts: PathBuf,
    },
    /// A remote command exited non-zero (and that was not allowed).
    #[error("command on {host} exited with {code}: {command}\n{stderr}")]
    Command {
        host: String,
        command: String,
        code: i32,
        stderr: String,
    },
    /// The ssh transport failed mid-command.
    #[error("ssh to {host} failed during `{command}`: {message}")]
    Transport {
        host: String,
        command: String,
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A template failed to render.
    #[error("template {name} line {line}: {message}")]
    Template {
        name: String,
        line: usize,
        message: String,
    },
    /// An HTTP API answered with an error.
    #[error("{service} {method} {path}: {status} {code}: {message}")]
    Api {
        service: String,
        method: String,
        path: String,
        status: u16,
        code: String,
        message: String,
    },
    /// A fact on a host could not be read or understood: the file (and line)
    /// and what is wrong with it.
    #[error("{host}: {place}: {message}")]
    Fact {
        host: String,
        place: String,
        message: String,
    },
    /// A check of the result failed (verification steps).
    #[error("verification failed: {0}")]
    Verify(String),
    /// A step timed out.
    #[error("timed out after {seconds}s: {what}")]
    Timeout { what: String, seconds: u64 },
    /// The run was interrupted (Ctrl-C) before this step started.
    #[error("interrupted")]
    Interrupted,
    /// An input the step reads does not exist yet because an earlier step of
    /// this run makes it (a certificate not generated yet). Plans fall back to
    /// the step's intent; a run treats it as an error.
    #[error("{what} does not exist (yet): an earlier step should have made it")]
    Pending { what: String },
    /// The apt sources of a host offer a package at no version with the
    /// upstream version asked for (`apt-cache madison`); nothing was installed.
    #[error("{host}: the apt sources offer no {package} {version} (apt-cache madison lists: {offered}); nothing was installed{hint}")]
    AptVersionMissing {
        host: String,
        package: String,
        version: String,
        /// What madison listed for the package, or `none`.
        offered: String,
        /// The caller's advice, with its leading separator (`. give ...`), or empty.
        hint: String,
    },
    /// Anything else, with a message that names what and where.
    #[error("{0}")]
    Other(String),
}

impl StepError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StepError::Io {
            action,
            path: path.into(),
            source,
        }
    }
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StepError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The exit codes cairn ends with: the one table, read by [`Error::exit_code`]
/// and [`Success::exit_code`] only (docs/exit-codes.md lists it for users).
pub mod exit {
    /// Success; for plans: nothing to change.
    pub const OK: i32 = 0;
    /// An error (every [`super::Error`] but those below).
    pub const ERROR: i32 = 1;
    /// A plan with changes pending.
    pub const CHANGES: i32 = 2;
    /// `cairn lab`: tools the lab needs are missing.
    pub const LAB_PREREQ: i32 = 3;
    /// A run stopped by Ctrl-C, SIGTERM or SIGHUP.
    pub const INTERRUPTED: i32 = 130;
}

/// How a command that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Success {
    /// It did what was asked; a plan: nothing would change.
    Done,
    /// A plan with changes pending.
    Changes,
}

impl Success {
    /// The process exit code (see [`exit`]).
    pub fn exit_code(self) -> i32 {
        match self {
            Success::Done => exit::OK,
            Success::Changes => exit::CHANGES,
        }
    }
}

/// The exit code of a command's result.
pub fn exit_code(result: &Result<Success, Error>) -> i32 {
    match result {
        Ok(s) => s.exit_code(),
        Err(e) => e.exit_code(),
    }
}

/// A step's failure as it travels through Rhai: the executor raises it as
/// `EvalAltResult::ErrorRuntime(Dynamic::from(StepFailure), pos)`, Rhai fills
/// in the runbook position, and [`crate::diagnostic`] downcasts it. Cheap to
/// clone; a runbook that catches it (`catch (e)`) sees its text.
#[derive(Clone, Debug)]
pub struct StepFailure {
    /// The step's key in the run (`path/to/main.rhai:12:5#host`).
    pub key: String,
    /// The primitive (`file`, `etcd_member`, ...).
    pub kind: String,
    /// What it ran on: a host name, `local`, a cloud.
    pub target: String,
    /// What went wrong.
    pub error: Arc<StepError>,
    /// `error`'s text with every known secret masked: what is shown.
    pub shown: String,
}

impl StepFailure {
    /// A failure of step `key` (`kind` on `target`); `redact` masks secrets in
    /// the text shown.
    pub fn new(
        key: &str,
        kind: &str,
        target: &str,
        error: StepError,
        redact: impl Fn(&str) -> String,
    ) -> Self {
        let shown = redact(&error.to_string());
        StepFailure {
            key: key.into(),
            kind: kind.into(),
            target: target.into(),
            error: Arc::new(error),
            shown,
        }
    }
}

impl std::fmt::Display for StepFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {} failed: {}", self.kind, self.target, self.shown)
    }
}

/// One host's failed branch of an `on()`: the host, its error's message and,
/// when a step raised it, the step's typed failure.
#[derive(Clone, Debug)]
pub struct BranchFailure {
    /// The host's name.
    pub host: String,
    /// The branch's error, without position.
    pub message: String,
    /// The step's failure, when a step raised it.
    pub step: Option<StepFailure>,
}

impl BranchFailure {
    /// Whether its message already says which host failed: a step that ran on
    /// the branch's host shows as `KIND on HOST failed: ...`. Anything else (a
    /// runbook's `fail`, a step on `local` or a cloud, a nested `on()`) is
    /// shown after `on HOST: `.
    pub fn names_its_host(&self) -> bool {
        self.step.as_ref().is_some_and(|s| s.target == self.host)
    }
}

/// An `on()` that failed, as it travels through Rhai (raised at the first
/// failed host's failing call, like [`StepFailure`]): what is shown, every
/// failed host with its typed error, and a failed gate's step. A runbook that
/// catches it (`catch (e)`) sees its text; `type_of(e)` is `"OnFailure"`.
#[derive(Clone, Debug)]
pub struct OnFailure {
    /// The whole message: one host (`on n1: ...`), several (`2 of 3 hosts
    /// failed:` and a line per host), a batch, or a gate.
    pub shown: String,
    /// The failed hosts in the order given to `on()` (empty for a gate).
    pub hosts: Vec<BranchFailure>,
    /// A gate's failure, when a step in the gate raised it.
    pub gate: Option<StepFailure>,
}

impl OnFailure {
    /// The first step failure it carries: the first failed host's, or the gate's.
    pub fn step(&self) -> Option<&StepFailure> {
        self.hosts
            .iter()
            .find_map(|h| h.step.as_ref())
            .or(self.gate.as_ref())
    }
}

impl std::fmt::Display for OnFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Where in a runbook's scripts an error happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The script as the user knows it (`etcd-binary-yaml/main.rhai`).
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Located {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A runbook script's error: a step's failure (typed), a runbook's own
/// `fail(...)`/`throw`, a syntax error, or Rhai's own, with its position.
#[derive(Clone, Debug)]
pub struct ScriptError {
    /// The innermost message, without position.
    pub message: String,
    /// Where it happened (`None` when Rhai knew no position).
    pub at: Option<Located>,
    /// The step's failure, when a step raised it (for a failed `on()`, the
    /// first failed host's).
    pub step: Option<StepFailure>,
    /// Each failed host of a failed `on()`, with its typed error.
    pub hosts: Vec<BranchFailure>,
    /// Rendered: the message, `  --> file:line:col`, the source line with a
    /// caret, and the calls that led there (no `error: ` prefix).
    pub shown: String,
}

impl ScriptError {
    /// This error with `redact` applied to everything it shows.
    pub fn redacted(mut self, redact: impl Fn(&str) -> String) -> Self {
        self.message = redact(&self.message);
        self.shown = redact(&self.shown);
        self
    }
}

impl std::fmt::Display for ScriptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Why `cairn run --plan FILE` refuses a saved plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanRefusal {
    /// Made with `--offline`: it holds no facts.
    Offline,
    /// The runbook is another one, or changed (`name version hash` each).
    RunbookChanged { plan: String, now: String },
    /// Made with another `--limit` (each: `--limit X` or `no --limit`).
    Limit { plan: String, now: String },
    /// The parameter values differ.
    Params,
    /// The targets changed: one line per step that differs now.
    Drifted(Vec<String>),
}

impl std::fmt::Display for PlanRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanRefusal::Offline => f.write_str("it is an offline plan, made without facts"),
            PlanRefusal::RunbookChanged { plan, now } => {
                write!(f, "the runbook changed since (plan: {plan}, now: {now})")
            }
            PlanRefusal::Limit { plan, now } => {
                write!(f, "it was made with {plan} and this run has {now}")
            }
            PlanRefusal::Params => f.write_str("the parameter values differ from the plan's"),
            PlanRefusal::Drifted(drifts) => write!(
                f,
                "the targets changed since it was made:\n  {}",
                drifts.join("\n  ")
            ),
        }
    }
}

/// Every error a cairn command ends with. Rendered once by
/// [`crate::diagnostic::render`]; [`Error::exit_code`] picks the exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runbook script stopped with an error (a plan, a check, or a saved
    /// plan's fresh plan).
    #[error("{0}")]
    Script(Box<ScriptError>),
    /// A run failed: its script's error, then how to go on.
    #[error("{error}Run {id} failed after {secs:.1}s; fix the cause, then `cairn resume {id}`.")]
    RunFailed {
        id: String,
        secs: f64,
        error: Box<ScriptError>,
    },
    /// A run stopped by a signal between steps.
    #[error("{error}Run {id} interrupted after {secs:.1}s; continue it with `cairn resume {id}`.")]
    Interrupted {
        id: String,
        secs: f64,
        error: Box<ScriptError>,
    },
    /// A runbook could not be found or loaded.
    #[error(transparent)]
    Load(#[from] crate::runbook::LoadError),
    /// A bad manifest or parameter value.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    /// A journal could not be read.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// A lab operation failed (`cairn lab`). The lab is its own crate
    /// (`cairn-lab`), so its error travels boxed; `kind` is what the exit
    /// code needs to know of it.
    #[error("{error}")]
    Lab {
        kind: LabFailure,
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The workspace lock is held or cannot be taken.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// The team state (`--state`) refused or failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The team state's lock is held.
    #[error(transparent)]
    TeamLock(#[from] crate::state::lock::LockError),
    /// The audit log could not be read.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The workspace (or a folder in it) is not private.
    #[error("unsafe workspace: {0}")]
    Workspace(#[from] crate::workspace::UnsafeDir),
    /// `cairn run --plan FILE`: the saved plan does not fit this run.
    #[error("refusing to apply the saved plan {}: {why}\nMake a new plan with `cairn plan ... -o {}` and review it.", path.display(), path.display())]
    PlanRefused { path: PathBuf, why: PlanRefusal },
    /// `cairn run --plan FILE`: FILE is not a saved plan.
    #[error("{} is not a saved cairn plan: {message}", path.display())]
    NotAPlan { path: PathBuf, message: String },
    /// `cairn resume` (or `runs show`) cannot go on with run `id`: `message`
    /// says why and what to do.
    #[error("{message}")]
    Resume { id: Option<String>, message: String },
    /// An input the user gave is not acceptable: `what` names it (a flag, a
    /// variable, a file), `message` says what is wrong and where.
    #[error("{message}")]
    Input { what: String, message: String },
    /// An inventory file is not acceptable (at `line`, when known).
    #[error("inventory {}: {}{message}", path.display(), line.map(|l| format!("line {l}: ")).unwrap_or_default())]
    Inventory {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A template of a runbook does not compile.
    #[error("template {name} line {line}: {message}")]
    Template {
        name: String,
        line: usize,
        message: String,
    },
    /// A local file or folder could not be read, written or created.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something of this process could not be set up (the async runtime,
    /// signal handlers).
    #[error("cannot {what}: {source}")]
    System {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A value could not be encoded as JSON.
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A run's journal could not take its header: nothing ran.
    #[error("cannot write journal {}: {source}; nothing was run (free space there and run again)", path.display())]
    JournalHeader {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A run's journal could not take another record: the run stopped.
    #[error("cannot write journal {}: {source}\nThe run stopped. A record that could not be written whole was cut off, so the journal ends with its last whole record: free space there, then `cairn resume {id}` continues from it.", path.display())]
    JournalFull {
        path: PathBuf,
        id: String,
        #[source]
        source: std::io::Error,
    },
    /// The team state refused a journal write (its lock was lost).
    #[error("{}", refused_text(why, *nothing_run, stopped.as_deref()))]
    StateRefused {
        why: String,
        /// Refused before the run started.
        nothing_run: bool,
        /// The run it stopped, refused at its end.
        stopped: Option<String>,
    },
    /// A run ended with `error`, and its end could not be journaled (`cause`).
    #[error("{error}\n{cause}")]
    Unrecorded {
        error: Box<Error>,
        cause: Box<Error>,
    },
    /// Several errors, each shown (a listing that checks every item).
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Several(Vec<Error>),
}

/// What kind of lab failure an [`Error::Lab`] is, as far as the exit code
/// cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabFailure {
    /// Tools the lab needs are missing (exit code [`exit::LAB_PREREQ`]).
    Prereq,
    /// Any other lab failure.
    Other,
}

fn refused_text(why: &str, nothing_run: bool, stopped: Option<&str>) -> String {
    match (nothing_run, stopped) {
        (true, _) => format!("{why}; nothing was run"),
        (false, Some(id)) => format!("run {id} stopped: {why}"),
        (false, None) => why.to_string(),
    }
}

impl Error {
    /// The process exit code for this error (see [`exit`]); the only place
    /// an error's exit code is chosen.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted { .. } => exit::INTERRUPTED,
            Error::Lab {
                kind: LabFailure::Prereq,
                ..
            } => exit::LAB_PREREQ,
            Error::Unrecorded { error, .. } => error.exit_code(),
            Error::Several(errors) => errors
                .iter()
                .map(Error::exit_code)
                .max()
                .unwrap_or(exit::ERROR),
            _ => exit::ERROR,
        }
    }

    /// An [`Error::Io`] for `action` on `path`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    /// An [`Error::Input`].
    pub fn input(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Input {
            what: what.into(),
            message: message.into(),
        }
    }

    /// An [`Error::Resume`] about run `id`.
    pub fn resume(id: Option<&str>, message: impl Into<String>) -> Self {
        Error::Resume {
            id: id.map(String::from),
            message: message.into(),
        }
    }

    /// The script error inside, if this is one.
    pub fn script(&self) -> Option<&ScriptError> {
        match self {
            Error::Script(e) => Some(e),
            Error::RunFailed { error, .. } | Error::Interrupted { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<ScriptError> for Error {
    fn from(e: ScriptError) -> Self {
        Error::Script(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_class_has_its_exit_code() {
        let script = || {
            Box::new(ScriptError {
                message: "m".into(),
                at: None,
                step: None,
                hosts: Vec::new(),
                shown: "m\n".into(),
            })
        };
        let lab = |kind| Error::Lab {
            kind,
            error: "missing prerequisites: debootstrap".into(),
        };
        let table: Vec<(Error, i32)> = vec![
            (Error::Script(script()), 1),
            (
                Error::RunFailed {
                    id: "r".into(),
                    secs: 1.0,
                    error: script(),
                },
                1,
            ),
            (
                Error::Interrupted {
                    id: "r".into(),
                    secs: 1.0,
                    error: script(),
                },
                130,
            ),
            (lab(LabFailure::Prereq), 3),
            (lab(LabFailure::Other), 1),
            (Error::input("--limit", "bad"), 1),
            (
                Error::Unrecorded {
                    error: Box::new(Error::Interrupted {
                        id: "r".into(),
                        secs: 1.0,
                        error: script(),
                    }),
                    cause: Box::new(Error::input("x", "y")),
                },
                130,
            ),
        ];
        for (e, code) in table {
            assert_eq!(e.exit_code(), code, "{e:?}");
        }
        assert_eq!(Success::Done.exit_code(), 0);
        assert_eq!(Success::Changes.exit_code(), 2);
    }
}
