//! The host lock: every cairn command holds it on its host while it runs.
//!
//! A run killed mid-command leaves that command running on the host; the next
//! run's commands (its facts included) wait for it here instead of racing it.
//!
//! The lock lives in a folder only root may enter ([`HOST_LOCK_DIR`], 0700),
//! so no other account can hold it (and stall every cairn command) or plant a
//! link there that a root `open` would follow. The folder is made once per
//! connection, safely: a symlink or a file where it should be is removed (the
//! link itself, never what it points to), a folder with another owner or mode
//! is given back to root with 0700, and so is the lock file inside.
//!
//! Whoever holds the lock writes who it is into the lock file (the remote
//! shell's pid, the cairn process and machine, the program and the start
//! time), so a command that waits can say what it waits for.

use crate::cmd::quote;
use std::time::Duration;

/// The root-only folder of the lock.
pub const HOST_LOCK_DIR: &str = "/run/cairn";

/// The lock file's name inside its folder.
pub const LOCK_FILE: &str = "lock";

/// The lock file in the default folder.
pub const HOST_LOCK: &str = "/run/cairn/lock";

/// Exit code and last stderr line of a command that did not get the lock in time.
pub const BUSY_EXIT: i32 = 251;
pub const BUSY_MARK: &str = "cairn: host lock busy";

/// Exit code of the setup when the folder cannot be made safe.
const SETUP_FAILED: i32 = 250;

/// The script that makes `dir` a safe lock folder. It prints `locking` when
/// the lock can be used, or `unlocked` when it cannot be (not root: only root
/// may create the folder; no `flock`), and the repairs it made on stderr.
/// `dir` must be an absolute path whose parent only root may write to (as `/run`).
pub fn setup_script(dir: &str) -> String {
    format!(
        "d={d}\n\
         if [ \"$(id -u)\" != 0 ] || ! command -v flock >/dev/null 2>&1; then echo unlocked; exit 0; fi\n\
         if [ -L \"$d\" ] || {{ [ -e \"$d\" ] && [ ! -d \"$d\" ]; }}; then\n\
         \x20 echo \"cairn: removed $(ls -ld -- \"$d\" 2>&1) where the lock folder belongs\" >&2\n\
         \x20 rm -f -- \"$d\" || exit {SETUP_FAILED}\n\
         fi\n\
         if [ ! -d \"$d\" ]; then mkdir -m 0700 -- \"$d\" || exit {SETUP_FAILED}; fi\n\
         if [ -L \"$d\" ] || [ ! -d \"$d\" ]; then echo \"cairn: $d changed while it was made\" >&2; exit {SETUP_FAILED}; fi\n\
         s=$(stat -c %u:%g:%a -- \"$d\")\n\
         if [ \"$s\" != 0:0:700 ]; then\n\
         \x20 echo \"cairn: $d was $s, made root:root 0700\" >&2\n\
         \x20 chown -h 0:0 -- \"$d\" && chmod 0700 -- \"$d\" || exit {SETUP_FAILED}\n\
         fi\n\
         l=\"$d/{LOCK_FILE}\"\n\
         if [ -L \"$l\" ] || {{ [ -e \"$l\" ] && [ ! -f \"$l\" ]; }}; then\n\
         \x20 echo \"cairn: removed $(ls -ld -- \"$l\" 2>&1) where the lock file belongs\" >&2\n\
         \x20 rm -rf -- \"$l\" || exit {SETUP_FAILED}\n\
         fi\n\
         (umask 077; : >> \"$l\") || exit {SETUP_FAILED}\n\
         if [ -L \"$l\" ] || [ \"$(stat -c %u:%g:%a -- \"$l\")\" != 0:0:600 ]; then\n\
         \x20 chown -h 0:0 -- \"$l\" && chmod 0600 -- \"$l\" || exit {SETUP_FAILED}\n\
         fi\n\
         echo locking\n",
        d = quote(dir)
    )
}

/// Who takes the lock, written into the lock file: the remote shell's pid is
/// added on the host.
pub fn holder(program: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    let now = time::OffsetDateTime::now_utc();
    let since = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    format!(
        "command `{program}` of cairn pid {} on {host}, since {since} ({} s)",
        std::process::id(),
        now.unix_timestamp()
    )
}

/// The shell line that runs `inner` (a complete command line) holding the
/// lock in `dir` for at most `wait`. The lock's descriptor is closed for
/// `inner`, so a daemon it starts does not keep holding it. When the lock
/// stays busy, the line prints the holder and then [`BUSY_MARK`] on stderr
/// and exits [`BUSY_EXIT`], `inner` not started.
pub fn wrap(inner: &str, dir: &str, wait: Duration, holder: &str) -> String {
    let l = quote(&format!("{dir}/{LOCK_FILE}"));
    format!(
        "{{ command exec 9>>{l}; }} 2>/dev/null || {{ echo 'cairn: cannot open the host lock {dir}/{LOCK_FILE}' >&2; exit {SETUP_FAILED}; }}; \
         flock -w {w} 9 || {{ cat -- {l} >&2; echo '{BUSY_MARK}' >&2; exit {BUSY_EXIT}; }}; \
         printf 'pid %s: %s\\n' \"$$\" {h} > {l}; \
         {inner}",
        w = wait.as_secs().max(1),
        h = quote(holder)
    )
}

/// The holder named in the stderr of a command that found the lock busy.
pub fn busy_holder(stderr: &str) -> Option<String> {
    let rest = stderr.trim_end().strip_suffix(BUSY_MARK)?;
    let who = rest.trim().lines().last().unwrap_or("").trim();
    Some(if who.is_empty() {
        "a holder that left no name".into()
    } else {
        who.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_back_from_a_busy_answer() {
        let err =
            format!("pid 77: command `cat` of cairn pid 1 on a, since x (1 s)\n{BUSY_MARK}\n");
        assert_eq!(
            busy_holder(&err).as_deref(),
            Some("pid 77: command `cat` of cairn pid 1 on a, since x (1 s)")
        );
        assert_eq!(
            busy_holder(&format!("{BUSY_MARK}\n")).as_deref(),
            Some("a holder that left no name")
        );
        assert_eq!(busy_holder("other\n"), None);
    }

    #[test]
    fn the_holder_names_program_process_and_time() {
        let h = holder("systemctl");
        assert!(h.starts_with("command `systemctl` of cairn pid "), "{h}");
        assert!(h.contains(&std::process::id().to_string()), "{h}");
    }
}
