//! The integration-test harness, shared by every test binary
//! (`mod common;` at the top of a test file):
//!
//! - [`Cairn`]: the one way to run the `cairn` binary under test, from a
//!   scrubbed environment (see [`KEPT_ENV`]) with an explicit state folder
//!   inside the test's own temporary workspace;
//! - [`text`]: a finished command's stdout and stderr as one string;
//! - [`golden`]: whole outputs compared with files under `tests/golden/`;
//! - [`lab`]: the lab of a test binary and the test tiers (`CAIRN_LAB_TESTS`);
//! - [`load`], [`sshd`]: client load on etcd, a real OpenSSH server.

#![allow(dead_code)]

pub mod golden;
pub mod lab;
pub mod load;
pub mod sshd;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The `cairn` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cairn");

/// The only variables a `cairn` child keeps from the test's environment;
/// everything else (every `CAIRN_*`, cloud tokens and endpoints,
/// `SSH_AUTH_SOCK`, `XDG_RUNTIME_DIR`, ...) is cleared, so a developer's
/// settings never reach a test. A test sets what it needs with
/// [`Cairn::env`].
pub const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "RUST_BACKTRACE",
];

/// The state folder every workspace command gets (`CAIRN_STATE_DIR`),
/// relative to the workspace the command runs in: the test's temporary
/// folder, never the developer's.
pub const STATE_DIR: &str = ".cairn";

/// A `cairn` command under test, built from a scrubbed environment.
pub struct Cairn {
    cmd: Command,
    /// Killed (SIGKILL) after this many seconds, by `timeout(1)`.
    patience: Option<u32>,
}

impl Cairn {
    /// `cairn` run in workspace `ws` (its working directory, a temporary
    /// folder of the test) with `CAIRN_STATE_DIR=.cairn` (inside `ws`),
    /// `NO_COLOR=1`, stdin from /dev/null and only [`KEPT_ENV`] inherited.
    pub fn new(ws: &Path) -> Cairn {
        let mut c = Cairn::detached();
        c.cmd.current_dir(ws).env("CAIRN_STATE_DIR", STATE_DIR);
        c
    }

    /// `cairn` for a command that uses no workspace (`lab`, `functions`,
    /// `list`): the same scrubbed environment, the test's working directory
    /// and no state folder.
    pub fn detached() -> Cairn {
        let mut cmd = Command::new(BIN);
        cmd.env_clear();
        for k in KEPT_ENV {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.env("NO_COLOR", "1").stdin(Stdio::null());
        Cairn {
            cmd,
            patience: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Cairn {
        self.cmd.arg(a);
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Cairn
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Sets one environment variable for this command.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Cairn {
        self.cmd.env(k, v);
        self
    }

    /// Sets environment variables for this command.
    pub fn envs<I, K, V>(mut self, vars: I) -> Cairn
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.cmd.envs(vars);
        self
    }

    /// Arms the test-only kill point `CAIRN_FAULT_KILL=spec` (none: unset).
    pub fn kill(self, spec: Option<&str>) -> Cairn {
        match spec {
            Some(k) => self.env("CAIRN_FAULT_KILL", k),
            None => self,
        }
    }

    /// Kills it (SIGKILL, by `timeout -s KILL`) after `secs` seconds.
    pub fn patience(mut self, secs: u32) -> Cairn {
        self.patience = Some(secs);
        self
    }

    /// Runs it to the end and returns its output.
    pub fn output(self) -> Output {
        self.command().output().expect("the cairn binary runs")
    }

    /// The command to run (to spawn it with pipes of the test's choice).
    pub fn command(self) -> Command {
        let Some(secs) = self.patience else {
            return self.cmd;
        };
        let mut t = Command::new("timeout");
        t.args(["-s", "KILL", &secs.to_string()])
            .arg(self.cmd.get_program())
            .args(self.cmd.get_args())
            .env_clear()
            .stdin(Stdio::null());
        for (k, v) in self.cmd.get_envs() {
            if let Some(v) = v {
                t.env(k, v);
            }
        }
        if let Some(dir) = self.cmd.get_current_dir() {
            t.current_dir(dir);
        }
        t
    }
}

/// `cairn ARGS` in workspace `ws` (see [`Cairn::new`]).
pub fn cairn<S: AsRef<OsStr>>(ws: &Path, args: &[S]) -> Output {
    Cairn::new(ws).args(args).output()
}

/// `cairn ARGS` in `ws` with the variables `env` set.
pub fn cairn_env<S: AsRef<OsStr>>(ws: &Path, args: &[S], env: &[(&str, &str)]) -> Output {
    Cairn::new(ws).args(args).envs(env.iter().copied()).output()
}

/// `cairn ARGS` in `ws`, killed at kill point `kill` (if any).
pub fn cairn_kill<S: AsRef<OsStr>>(ws: &Path, args: &[S], kill: Option<&str>) -> Output {
    Cairn::new(ws).args(args).kill(kill).output()
}

/// `cairn ARGS --lab LAB` in `ws` with `env` set; `cairn resume ...` gets
/// no `--lab` (a resumed run keeps its inputs).
pub fn cairn_on_lab(ws: &Path, lab: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Cairn::new(ws).args(args);
    if args.first() != Some(&"resume") {
        c = c.args(["--lab", lab]);
    }
    c.envs(env.iter().copied()).output()
}

/// A finished command's stdout followed by its stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
