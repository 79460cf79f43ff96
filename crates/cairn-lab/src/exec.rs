//! Running host tools (ip, mount, debootstrap, ssh-keygen, ...) with errors
//! that name the command line and carry its stderr.

use super::error::{LabError, Result};
use std::process::{Command, Output, Stdio};

/// The command line of `cmd`, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; fails unless it exits 0. Returns its stdout.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: describe(cmd),
            detail: failure_detail(&out),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` to completion and returns its output whatever the exit status;
/// fails only when it cannot be started.
pub fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            command: describe(cmd),
            detail: format!("cannot start: {e}"),
        })
}

/// "exit status N: <stderr>" for a failed command.
pub fn failure_detail(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr.trim();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail = if stderr.is_empty() {
        stdout.trim()
    } else {
        stderr
    };
    let tail: String = if tail.len() > 2000 {
        format!("...{}", &tail[tail.len() - 2000..])
    } else {
        tail.to_string()
    };
    format!("{}: {}", out.status, tail)
}

/// Shorthand for `Command::new(program).args(args)`.
pub fn cmd<I, S>(program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut c = Command::new(program);
    c.args(args);
    c
}
