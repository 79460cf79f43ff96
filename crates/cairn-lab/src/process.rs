//! Processes the lab starts and stops: detached launches whose pid is
//! recorded, liveness by /proc, signals, and waiting with a deadline.

use super::error::{LabError, Result};
use super::exec;
use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

pub use cairn::labs::{alive, cmdline, verified};

/// Starts `argv` in a new session, detached from the caller (re-parented to
/// init so it outlives `cairn lab up`), with stdin from /dev/null and output
/// appended to `log`. `prelude` is shell code run first in the process that
/// then execs `argv` (e.g. joining cgroups), so the returned pid is `argv[0]`'s.
pub fn spawn_detached<S: AsRef<OsStr>>(prelude: &str, argv: &[S], log: &Path) -> Result<u32> {
    let mut c = exec::cmd(
        "sh",
        [
            "-c",
            r#"log="$1"; shift; setsid "$@" </dev/null >>"$log" 2>&1 & echo $!"#,
            "sh",
        ],
    );
    c.arg(log)
        .arg("sh")
        .arg("-c")
        .arg(format!("{prelude}\nexec \"$@\""))
        .arg("sh")
        .args(argv);
    let out = exec::run(&mut c)?;
    out.trim().parse::<u32>().map_err(|_| LabError::Command {
        command: exec::describe(&c),
        detail: format!("expected a pid, got {out:?}"),
    })
}

/// Direct children of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let p = t.path().join("children");
        if let Ok(text) = std::fs::read_to_string(p) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|x| x.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// All live pids whose command line satisfies `pred`.
pub fn find(pred: impl Fn(&str) -> bool) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(cl) = cmdline(pid) {
            if pred(&cl) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// Sends `sig` to `pid`; a process that is already gone is fine.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a plain pid and signal number.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// systemd's "halt" signal (SIGRTMIN+3).
pub fn sig_halt() -> i32 {
    libc::SIGRTMIN() + 3
}

/// Waits until none of `pids` is alive; false when `timeout` passed first.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
