//! Errors of steps, as data. The executor attaches the runbook position and the
//! step; `crate::report` renders them in one place.

use std::path::PathBuf;

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
