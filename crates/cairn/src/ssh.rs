//! One multiplexed ssh connection per host, opened on first use, host keys checked.
//!
//! The pool starts one `ssh -M` master per host (the system `ssh` client, so the
//! user's agent and configuration work as they do on the command line) and runs
//! every command over its control socket with openssh's native mux client: about
//! 3 ms per command instead of ~200 ms for a fresh `ssh`. Connections open
//! concurrently across hosts; two tasks asking for the same host share one
//! connect. Control sockets live in a short private folder under `/tmp`
//! (`/tmp/cairn-ssh-<pid>-XXXXXX/`), removed when the pool is dropped.
//!
//! **At most N masters** ([`Pool::with_max_masters`]; a run's default is twice
//! its `on()` cap, see `CAIRN_SSH_MAX_MASTERS`): when a new host needs a master
//! and N are open, the pool closes the least recently used one that has no
//! command or forward in flight, and the host it served reconnects on its next
//! command (the same path as a master found gone). Only a master no other
//! cairn process uses is ever closed: a shared one ([`Pool::shared`]) that
//! another process also uses is only dropped from this pool (see
//! [`Pool::close_master`]).
//!
//! Host keys: a [`HostKeys::Workspace`] host is pinned in the workspace's
//! `known_hosts` on first contact and refused afterwards if its key changes
//! ([`StepError::HostKeyChanged`]); a [`HostKeys::User`] host is checked against
//! the user's own ssh configuration and known_hosts, untouched by cairn.
//!
//! Nothing given on stdin is ever logged or put into an error.

use crate::error::StepError;
use crate::host::{Host, HostKeys};
use openssh::{ForwardType, Session, Socket, Stdio};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, OnceCell};

/// Output of a remote command. A non-zero `code` is data, not an error.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, rhai::CustomType,
)]
#[rhai_type(name = "CommandResult")]
pub struct CommandOutput {
    #[rhai_type(skip)]
    pub code: i32,
    #[rhai_type(readonly)]
    pub stdout: String,
    #[rhai_type(readonly)]
    pub stderr: String,
}

/// How long connecting to a host may take before it counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Exit code of coreutils `timeout` when the command ran out of time.
const TIMEOUT_EXIT: i32 = 124;

pub use crate::cmd::quote;
pub use crate::host_lock::{HOST_LOCK, HOST_LOCK_DIR};

/// How long a command waits for the host lock ([`crate::host_lock`]): the
/// longest a command of cairn's own may run (apt installs, unpacking, downloads).
pub const LOCK_WAIT: Duration = Duration::from_secs(900);

/// How long one attempt waits for the host lock before cairn says it waits.
const LOCK_SLICE: Duration = Duration::from_secs(10);

/// The shell line that runs `inner` (a complete command line), holding the
/// host lock when `lock` names its folder (see [`crate::host_lock::wrap`]).
///
/// Exit status 127 ("command not found") comes back as exit 0 plus `marker`
/// on a last stderr line: openssh's mux client would otherwise report it as
/// an error of its own and drop the connection. [`Pool::exec_with`] turns the
/// marker back into 127.
fn locked(inner: &str, lock: Option<(&str, Duration, &str)>, marker: &str) -> String {
    let run = format!(
        "{inner} 9>&-; c=$?; \
         if [ $c -eq 127 ]; then printf '\\n%s\\n' '{marker}' >&2; exit 0; fi; exit $c"
    );
    match lock {
        Some((dir, wait, holder)) => crate::host_lock::wrap(&run, dir, wait, holder),
        None => run,
    }
}

/// The program a command line starts, for the lock holder's description
/// (never an assignment, which could hold a value).
fn program_of(command: &str) -> String {
    let word = command.split_whitespace().next().unwrap_or("");
    if word.is_empty()
        || word.len() > 40
        || !word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        "(script)".into()
    } else {
        word.into()
    }
}

/// Shorten `text` for an error message, keeping its end (where the cause usually is).
pub fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

/// Shorten a command line for an error message, keeping its start.
fn brief(command: &str) -> String {
    const MAX: usize = 200;
    let command = command.trim();
    if command.len() <= MAX {
        return command.to_string();
    }
    let mut end = MAX;
    while !command.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &command[..end])
}

/// What identifies one connection: two `Host`s that agree on these share it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Endpoint {
    user: String,
    address: String,
    port: u16,
    key: Option<PathBuf>,
    /// Pinned in the workspace (else the user's known_hosts).
    pinned: bool,
}

impl Endpoint {
    fn of(host: &Host) -> Self {
        Endpoint {
            user: host.user.clone(),
            address: host.address.clone(),
            port: host.port,
            key: host.key.clone(),
            pinned: host.host_keys == HostKeys::Workspace,
        }
    }
}

/// One master connection. Dropping a private one asks its master to exit; a
/// shared one (see [`Pool::shared`]) stays up for the next cairn process.
struct Conn {
    session: Session,
    /// The host lock's folder is ready (see [`crate::host_lock`]); else
    /// commands run unlocked (a non-root user, a host without `flock`).
    locking: bool,
    /// Local forwards this process asked a shared master for, closed again by
    /// [`Pool::close_all`] so reruns do not pile them up on the master.
    opened: Mutex<Vec<(u16, String, u16)>>,
    /// Commands in flight over it (each an [`InUse`]).
    commands: AtomicUsize,
    /// Forwards in use over it (each a [`ForwardHold`]).
    forwards: AtomicUsize,
    /// When its last command or forward ended: the least recently used idle
    /// master is closed first.
    last_used: Mutex<Instant>,
    /// A shared master's name in the shared folder, and its `NAME.use` file,
    /// locked shared while this process uses the master, so another process
    /// knows it must not close it.
    shared: Option<(String, Mutex<Option<UseLock>>)>,
}

/// This process's shared lock on a shared master's `NAME.use`, unlocked
/// when dropped (see [`release`]).
struct UseLock(std::fs::File);

impl Drop for UseLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Conn {
    fn new(session: Session) -> Self {
        Conn {
            session,
            locking: false,
            opened: Mutex::new(Vec::new()),
            commands: AtomicUsize::new(0),
            forwards: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
            shared: None,
        }
    }

    fn counter(&self, forward: bool) -> &AtomicUsize {
        if forward {
            &self.forwards
        } else {
            &self.commands
        }
    }

    fn idle(&self) -> bool {
        self.commands.load(Ordering::SeqCst) == 0 && self.forwards.load(Ordering::SeqCst) == 0
    }

    /// Close the local forwards this process opened on this master (a
    /// shared master stays up for other processes; its forwards were ours).
    async fn close_forwards(&self) {
        let opened = std::mem::take(&mut *self.opened.lock().unwrap_or_else(|e| e.into_inner()));
        for (port, rhost, rport) in opened {
            let _ = self
                .session
                .close_port_forward(
                    ForwardType::Local,
                    Socket::new("127.0.0.1", port),
                    Socket::new(&rhost, rport),
                )
                .await;
        }
    }

    fn last_used(&self) -> Instant {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection in use by a command or a forward: counted while alive, so
/// the pool never closes its master meanwhile; dropping it wakes the tasks
/// waiting for an idle master.
struct InUse {
    conn: Arc<Conn>,
    idle: Arc<Notify>,
    forward: bool,
}

impl InUse {
    /// Count a new use of `conn` (`counted`: the count was already taken).
    fn new(conn: Arc<Conn>, idle: Arc<Notify>, forward: bool, counted: bool) -> Self {
        if !counted {
            conn.counter(forward).fetch_add(1, Ordering::SeqCst);
        }
        InUse {
            conn,
            idle,
            forward,
        }
    }
}

impl std::ops::Deref for InUse {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        *self
            .conn
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.conn
            .counter(self.forward)
            .fetch_sub(1, Ordering::SeqCst);
        self.idle.notify_waiters();
    }
}

/// Keeps a forward's master open while alive (see [`Pool::forward_held`]).
pub struct ForwardHold(#[allow(dead_code)] InUse);

impl std::fmt::Debug for ForwardHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForwardHold")
    }
}

/// How long a shared master waits for the next command before it exits.
pub const SHARED_PERSIST: Duration = Duration::from_secs(120);

type Slot = Arc<OnceCell<Arc<Conn>>>;

/// A forwarded local port, keyed by connection and remote address.
type Forwards = HashMap<(Endpoint, String), Arc<OnceCell<SocketAddr>>>;

/// Why running a command failed: before it started (safe to retry on a fresh
/// connection) or after (the command may have run).
enum RunError {
    NotStarted(openssh::Error),
    Failed(StepError),
}

/// The connection pool. Cheap to share by reference across tasks and threads.
pub struct Pool {
    // Declared before `dir`: connections shut down before their folder goes.
    conns: Mutex<HashMap<Endpoint, Slot>>,
    forwards: Mutex<Forwards>,
    dir: std::sync::OnceLock<tempfile::TempDir>,
    known_hosts: PathBuf,
    connect_timeout: Duration,
    lock_wait: Duration,
    /// The host lock's folder on every host.
    lock_dir: String,
    /// Masters shared across cairn processes: their folder and idle lifetime.
    shared: Option<(PathBuf, Duration)>,
    /// Stands for exit status 127 on stderr (see [`locked`]); random, so no
    /// command's output can fake it.
    exit_127: String,
    /// `--limit`: hosts outside it are never connected to.
    limit: Option<std::sync::Arc<crate::limit::Limit>>,
    /// At most this many masters at once (`None`: one per host, no cap).
    max_masters: Option<usize>,
    /// Woken whenever a command or forward ends or a master goes away.
    idle: Arc<Notify>,
    /// Masters dropped from `conns` as broken ([`Pool::forget`]) whose
    /// process may still run: they count against the cap until closed.
    retired: Mutex<Vec<Arc<Conn>>>,
    /// Set by [`Pool::close_all`]: no master is opened after it.
    closed: std::sync::atomic::AtomicBool,
    /// Fault injection for cairn's own tests (`CAIRN_FAULT_SSH_LOST`).
    fault: SshFault,
}

/// Fault injection for cairn's own tests of the cap on masters:
/// `CAIRN_FAULT_SSH_LOST=N` makes the N-th command run through
/// [`Pool::exec`] find its master unresponsive, as a live master on a
/// loaded machine can be: the command is not started there, and that
/// master's `ssh -O check` counts as failed from then on, while its process
/// keeps running. (What a pool must then do: end that master before a
/// replacement counts.)
///
/// `CAIRN_FAULT_SSH_FORK_HOLD=SECS`: whenever this process takes its shared
/// lock on a shared master's `NAME.use`, a child process (`sleep SECS`) gets
/// a copy of that descriptor, as any child being started at that moment has
/// until it execs (a short while, longer on a loaded machine): the lock must
/// not outlive this process's own use of the master.
///
/// Both are compiled only with the `fault-hooks` feature, as
/// `CAIRN_FAULT_KILL` is.
#[derive(Default)]
struct SshFault {
    lost_at: Option<usize>,
    hold_secs: Option<u64>,
    commands: AtomicUsize,
    unresponsive: Mutex<Vec<PathBuf>>,
}

impl SshFault {
    /// Without the `fault-hooks` feature (any build but the tests'), nothing
    /// is read and no fault is ever armed.
    #[cfg(not(feature = "fault-hooks"))]
    fn from_env() -> Self {
        SshFault::default()
    }
    #[cfg(feature = "fault-hooks")]
    fn from_env() -> Self {
        SshFault {
            lost_at: std::env::var("CAIRN_FAULT_SSH_LOST")
                .ok()
                .and_then(|n| n.trim().parse().ok()),
            hold_secs: std::env::var("CAIRN_FAULT_SSH_FORK_HOLD")
                .ok()
                .and_then(|n| n.trim().parse().ok()),
            ..SshFault::default()
        }
    }

    /// Count a command over the master on `socket`; whether it is the one
    /// that finds its master unresponsive.
    fn lost(&self, socket: &Path) -> bool {
        let Some(at) = self.lost_at else {
            return false;
        };
        let n = self.commands.fetch_add(1, Ordering::SeqCst) + 1;
        if n == at {
            tracing::debug!(target: "cairn::ssh::master", socket = %socket.display(), "fault: master unresponsive");
            self.unresponsive
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(socket.to_path_buf());
        }
        n == at
    }

    /// Give a child process a copy of `file` for a while (see above).
    fn hold_copy(&self, file: &std::fs::File) {
        let (Some(secs), Ok(copy)) = (self.hold_secs, file.try_clone()) else {
            return;
        };
        if let Ok(mut child) = std::process::Command::new("sleep")
            .arg(secs.to_string())
            .stdin(copy)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            std::thread::spawn(move || child.wait());
        }
    }

    fn unresponsive(&self, socket: &Path) -> bool {
        self.lost_at.is_some()
            && self
                .unresponsive
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|s| s == socket)
    }
}

impl Pool {
    /// A pool pinning [`HostKeys::Workspace`] hosts in `known_hosts`.
    pub fn new(known_hosts: PathBuf) -> Self {
        Pool {
            conns: Mutex::new(HashMap::new()),
            forwards: Mutex::new(HashMap::new()),
            dir: std::sync::OnceLock::new(),
            known_hosts,
            connect_timeout: CONNECT_TIMEOUT,
            lock_wait: LOCK_WAIT,
            lock_dir: HOST_LOCK_DIR.into(),
            shared: None,
            exit_127: format!("cairn: exit status 127 ({:016x})", rand::random::<u64>()),
            limit: None,
            max_masters: None,
            idle: Arc::new(Notify::new()),
            retired: Mutex::new(Vec::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            fault: SshFault::from_env(),
        }
    }

    /// A pool whose masters outlive the process (`ControlPersist`) and are
    /// reused by the next cairn run on the same hosts, like ansible's: a rerun
    /// or a plan right after a run skips the ssh handshakes (~0.3 s per host
    /// on a busy 2-core machine). Masters live in `dir` (created 0700; it must
    /// be the user's own, not writable by others), one per host, user, port,
    /// identity and known_hosts file, so host keys stay checked per
    /// workspace; each exits after `persist` without commands. A master found
    /// dead is replaced.
    pub fn shared(known_hosts: PathBuf, dir: PathBuf, persist: Duration) -> Self {
        let mut pool = Pool::new(known_hosts);
        pool.shared = Some((dir, persist));
        pool
    }

    /// The folder for shared masters: `$XDG_RUNTIME_DIR/cairn-ssh`, else
    /// `/tmp/cairn-ssh-<uid>`; `None` when it cannot be made private to this
    /// user (then each process keeps its own masters).
    pub fn shared_dir() -> Option<PathBuf> {
        let uid = unsafe { libc::geteuid() };
        let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            Some(d) => PathBuf::from(d).join("cairn-ssh"),
            None => PathBuf::from(format!("/tmp/cairn-ssh-{uid}")),
        };
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
        // Unix socket paths are limited to ~108 bytes; names below are 16.
        (is_private_dir(&dir, uid) && dir.as_os_str().len() < 80).then_some(dir)
    }

    /// The same pool with another connect timeout (tests, slow links).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The same pool with another wait for [`HOST_LOCK`] (tests).
    pub fn with_lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// The same pool with the host lock in another root-only folder (tests:
    /// `dir` must be absolute, in a folder only root may write to).
    pub fn with_lock_dir(mut self, dir: &str) -> Self {
        self.lock_dir = dir.into();
        self
    }

    /// The same pool refusing to connect to hosts outside `limit` (`--limit`).
    pub fn with_limit(mut self, limit: Option<std::sync::Arc<crate::limit::Limit>>) -> Self {
        self.limit = limit;
        self
    }

    /// The same pool keeping at most `max` masters open at once (`None`: no
    /// cap; at least 1). See [`Pool::lease`] for which one is closed.
    pub fn with_max_masters(mut self, max: Option<usize>) -> Self {
        self.max_masters = max.map(|n| n.max(1));
        self
    }

    /// The cap on masters open at once (`None`: no cap).
    pub fn max_masters(&self) -> Option<usize> {
        self.max_masters
    }

    /// The workspace known_hosts file this pool pins host keys in.
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    /// Run `command` (a shell command line) on `host`, feeding `stdin` if given.
    /// A non-zero exit is not an error here; transport failures are.
    pub async fn exec(
        &self,
        host: &Host,
        command: &str,
        stdin: Option<&[u8]>,
    ) -> Result<CommandOutput, StepError> {
        self.exec_with(host, command, stdin, None).await
    }

    /// [`Pool::exec`] with a deadline: the command is killed on the host after
    /// `timeout` (by coreutils `timeout`) and [`StepError::Timeout`] returned.
    pub async fn exec_with(
        &self,
        host: &Host,
        command: &str,
        stdin: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, StepError> {
        let inner = match timeout {
            Some(t) => format!(
                "timeout -k 5 {} sh -c {}",
                t.as_secs().max(1),
                quote(command)
            ),
            // A subshell of the login shell, as the command would run unlocked.
            None => format!("(\n{command}\n)"),
        };
        let holder = crate::host_lock::holder(&program_of(command));
        let started = std::time::Instant::now();
        let mut out = loop {
            // Wait for the lock in slices, to say who holds it while waiting.
            let left = self.lock_wait.saturating_sub(started.elapsed());
            let slice = left.min(LOCK_SLICE).max(Duration::from_secs(1));
            let attempt = self.attempt(host, command, &inner, stdin, slice, &holder);
            let out = match timeout {
                // The remote `timeout` kills the command; this is the backstop
                // for a connection that stops answering altogether.
                Some(t) => tokio::time::timeout(t + slice + Duration::from_secs(15), attempt)
                    .await
                    .map_err(|_| timed_out(host, command, t))??,
                None => attempt.await?,
            };
            let Some(who) = (out.code == crate::host_lock::BUSY_EXIT)
                .then(|| crate::host_lock::busy_holder(&out.stderr))
                .flatten()
            else {
                break out;
            };
            let waited = started.elapsed().as_secs();
            if started.elapsed() + Duration::from_millis(500) >= self.lock_wait {
                return Err(StepError::Other(format!(
                    "{} is busy: the cairn host lock {}/{} there was held for {waited}s by {who} \
                     (a command of a killed run still running, or another cairn run); \
                     `{}` was not started",
                    host.name,
                    self.lock_dir,
                    crate::host_lock::LOCK_FILE,
                    brief(command)
                )));
            }
            eprintln!(
                "{}: waiting for the cairn host lock, held by {who}; waited {waited}s of {}s",
                host.name,
                self.lock_wait.as_secs()
            );
        };
        if out.code == 0 {
            if let Some(stderr) = out.stderr.strip_suffix(&format!("\n{}\n", self.exit_127)) {
                out.stderr = stderr.to_string();
                out.code = 127;
            }
        }
        if let Some(t) = timeout {
            if out.code == TIMEOUT_EXIT {
                return Err(timed_out(host, command, t));
            }
        }
        Ok(out)
    }

    /// Run `command` on `host` and hand its stdout to `sink` in chunks as it
    /// arrives, never holding it whole in memory nor putting it into a
    /// [`CommandOutput`] (what `fetch` copies files with). Returns the exit code
    /// and stderr (`stdout` is empty). Runs outside the host lock (a read);
    /// killed on the host after `timeout`. A `sink` error stops the copy and
    /// is returned as an I/O error on `what`.
    pub async fn stream(
        &self,
        host: &Host,
        command: &str,
        timeout: Duration,
        what: &Path,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<CommandOutput, StepError> {
        use tokio::io::AsyncReadExt;
        let line = format!(
            "timeout -k 5 {} sh -c {}",
            timeout.as_secs().max(1),
            quote(command)
        );
        let mut conn = self.lease(host, false).await?;
        let mut retried = false;
        let mut child = loop {
            let mut cmd = conn.session.raw_command(&line);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            match cmd.spawn().await {
                Ok(child) => break child,
                Err(openssh::Error::Disconnected | openssh::Error::SshMux(_))
                    if !retried && conn.session.check().await.is_err() =>
                {
                    // The master is gone: the command never started; reconnect once.
                    self.forget(host, &conn.conn);
                    drop(conn);
                    conn = self.lease(host, false).await?;
                    retried = true;
                }
                Err(openssh::Error::Disconnected | openssh::Error::SshMux(_)) if retried => {
                    return Err(StepError::Transport {
                        host: host.name.clone(),
                        command: brief(command),
                        message: "the connection is gone".into(),
                    });
                }
                Err(e) => return Err(transport(host, command, &e)),
            }
        };
        let mut out = child.stdout().take();
        let mut err = child.stderr().take();
        let copy = async {
            let Some(out) = out.as_mut() else {
                return Ok(());
            };
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = out.read(&mut buf).await.map_err(|e| (false, e))?;
                if n == 0 {
                    return Ok(());
                }
                sink(&buf[..n]).map_err(|e| (true, e))?;
            }
        };
        let errors = async {
            let mut text = Vec::new();
            if let Some(err) = err.as_mut() {
                let _ = err.read_to_end(&mut text).await;
            }
            text
        };
        let backstop = timeout + Duration::from_secs(15);
        let (copied, stderr) =
            match tokio::time::timeout(backstop, async { tokio::join!(copy, errors) }).await {
                Ok(both) => both,
                Err(_) => return Err(timed_out(host, command, timeout)),
            };
        if let Err((local, e)) = copied {
            drop(out);
            let _ = child.disconnect().await;
            return Err(if local {
                StepError::io("writing", what, e)
            } else {
                StepError::Transport {
                    host: host.name.clone(),
                    command: brief(command),
                    message: format!("reading its output: {e}"),
                }
            });
        }
        drop(out);
        drop(err);
        let status = child.wait().await.map_err(|e| {
            self.forget(host, &conn.conn);
            lost(host, command, &e)
        })?;
        let code = status.code().unwrap_or(-1);
        if code == TIMEOUT_EXIT {
            return Err(timed_out(host, command, timeout));
        }
        Ok(CommandOutput {
            code,
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// One try at running `inner` for `command` under the host lock (waiting
    /// `wait` for it), reconnecting once if the connection was found gone.
    async fn attempt(
        &self,
        host: &Host,
        command: &str,
        inner: &str,
        stdin: Option<&[u8]>,
        wait: Duration,
        holder: &str,
    ) -> Result<CommandOutput, StepError> {
        let line = |conn: &Conn| {
            let lock = conn
                .locking
                .then_some((self.lock_dir.as_str(), wait, holder));
            locked(inner, lock, &self.exit_127)
        };
        let conn = self.lease(host, false).await?;
        let first = if self.fault.lost(conn.session.control_socket()) {
            Err(RunError::NotStarted(openssh::Error::Disconnected))
        } else {
            run_on(&conn, host, command, &line(&conn), stdin).await
        };
        match first {
            Ok(out) => Ok(out),
            Err(RunError::NotStarted(e)) => {
                // The master is gone (host rebooted, connection dropped, or
                // closed by the cap on masters): the command never started,
                // so reconnect and try once more.
                self.forget(host, &conn.conn);
                drop(conn);
                let conn = self.lease(host, false).await?;
                match run_on(&conn, host, command, &line(&conn), stdin).await {
                    Ok(out) => Ok(out),
                    Err(RunError::NotStarted(_)) => Err(transport(host, command, &e)),
                    Err(RunError::Failed(e)) => {
                        self.forget(host, &conn.conn);
                        Err(e)
                    }
                }
            }
            Err(RunError::Failed(e)) => {
                self.forget(host, &conn.conn);
                Err(e)
            }
        }
    }

    /// A local TCP port on 127.0.0.1 forwarded over `host`'s connection to
    /// `remote` (`"127.0.0.1:2379"`, as seen from the host). Cached per host
    /// and remote address for the life of the connection. Holds nothing: in a
    /// pool with a cap on masters ([`Pool::with_max_masters`]) an idle master
    /// may be closed, its forwards with it; [`Pool::forward_held`] keeps it.
    pub async fn forward(&self, host: &Host, remote: &str) -> Result<SocketAddr, StepError> {
        Ok(self.forward_held(host, remote).await?.0)
    }

    /// [`Pool::forward`], and a hold that keeps the master (and so the
    /// forward) open until it is dropped.
    pub async fn forward_held(
        &self,
        host: &Host,
        remote: &str,
    ) -> Result<(SocketAddr, ForwardHold), StepError> {
        let (rhost, rport) = remote
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                StepError::invalid("remote", format!("`{remote}` is not a host:port address"))
            })?;
        let mut conn = self.lease(host, true).await?;
        if conn.session.check().await.is_err() {
            // The master went away (idle or dropped), and its forwards with it.
            self.forget(host, &conn.conn);
            drop(conn);
            conn = self.lease(host, true).await?;
        }
        let key = (Endpoint::of(host), remote.to_string());
        let cell = {
            let mut forwards = self.forwards.lock().unwrap_or_else(|e| e.into_inner());
            forwards.entry(key).or_default().clone()
        };
        let addr = cell
            .get_or_try_init(|| async {
                let mut last = String::new();
                // Pick a free port, then ask the master to listen on it; another
                // process may take the port in between, so try a few.
                for _ in 0..5 {
                    let local = std::net::TcpListener::bind("127.0.0.1:0")
                        .and_then(|l| l.local_addr())
                        .map_err(|e| StepError::io("binding a local port", "127.0.0.1:0", e))?;
                    match conn
                        .session
                        .request_port_forward(
                            ForwardType::Local,
                            Socket::new("127.0.0.1", local.port()),
                            Socket::new(rhost, rport),
                        )
                        .await
                    {
                        Ok(()) => {
                            conn.opened.lock().unwrap_or_else(|e| e.into_inner()).push((
                                local.port(),
                                rhost.to_string(),
                                rport,
                            ));
                            return Ok(local);
                        }
                        Err(e) => last = error_chain(&e),
                    }
                }
                Err(StepError::Transport {
                    host: host.name.clone(),
                    command: format!("forward a local port to {remote}"),
                    message: last,
                })
            })
            .await?;
        Ok((*addr, ForwardHold(conn)))
    }

    /// Close every connection (their forwards go with them).
    pub async fn close_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // Broken masters this pool dropped: ended, not kept for the next run.
        let retired = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()));
        for conn in retired {
            self.close_master(&conn).await;
        }
        let conns: Vec<Slot> = {
            let mut map = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            map.drain().map(|(_, slot)| slot).collect()
        };
        self.forwards
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if self.shared.is_some() {
            // Shared masters stay up; only this process's forwards go.
            for slot in conns {
                if let Some(conn) = slot.get() {
                    conn.close_forwards().await;
                }
            }
            return;
        }
        for slot in conns {
            if let Some(conn) = Arc::try_unwrap(slot)
                .ok()
                .and_then(OnceCell::into_inner)
                .and_then(|c| Arc::try_unwrap(c).ok())
            {
                let _ = conn.session.close().await;
            }
            // Still in use elsewhere: the last user's drop shuts the master down.
        }
    }

    /// The connection to `host`, opened if needed (once, however many ask),
    /// in use until the returned value is dropped (`forward`: by a forward,
    /// else by a command).
    ///
    /// With a cap of N masters, a host without one when N are open gets one
    /// in place of the least recently used master that is idle (no command
    /// and no forward in flight); that master is closed ([`Pool::close_master`])
    /// and its host reconnects on its next command. If none is idle:
    /// - while a command is in flight (or a master is being opened), wait
    ///   for a master to become idle. This cannot deadlock: a command holds
    ///   exactly one master and never asks for another while it runs (the
    ///   retry after a lost master drops its hold first), and it ends within
    ///   its timeout or the host lock's wait, so the wait ends; the `on()` cap
    ///   bounds how many branches wait at once, and the default cap of twice
    ///   it leaves every running branch room for a second master (an etcd
    ///   client's forward, a nested `on`).
    /// - if only forwards hold the masters, open one more than the cap: a
    ///   forward is held for a whole step, by a task that may itself be the
    ///   one asking (an etcd client forwarding through several members), so
    ///   waiting for it could deadlock. The extra master is the first closed
    ///   when it is idle.
    async fn lease(&self, host: &Host, forward: bool) -> Result<InUse, StepError> {
        if let Some(limit) = self.limit.as_ref().filter(|l| !l.contains(&host.name)) {
            return Err(StepError::Other(limit.outside(&host.name)));
        }
        let endpoint = Endpoint::of(host);
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return Err(StepError::Other(format!(
                    "{}: the run's ssh connections are closed",
                    host.name
                )));
            }
            // Registered before looking, so an end in between is not missed.
            let idle = self.idle.notified();
            let mut evicted = None;
            let mut retired_out = None;
            // `None`: every master is busy, wait for one to be idle.
            let slot: Option<Slot> = {
                let mut map = self.conns.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(slot) = map.get(&endpoint) {
                    if let Some(conn) = slot.get() {
                        return Ok(InUse::new(conn.clone(), self.idle.clone(), forward, false));
                    }
                    Some(slot.clone())
                } else {
                    // Lock order: `conns`, then `retired`.
                    let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
                    let full = self
                        .max_masters
                        .is_some_and(|cap| map.len() + retired.len() >= cap);
                    // A broken master no one uses any more goes first.
                    if full {
                        if let Some(i) = retired.iter().position(|c| c.idle()) {
                            retired_out = Some(retired.swap_remove(i));
                        }
                    }
                    let lru = map
                        .iter()
                        .filter(|_| full && retired_out.is_none())
                        .filter_map(|(e, s)| s.get().filter(|c| c.idle()).map(|c| (e, c)))
                        .min_by_key(|(_, c)| c.last_used())
                        .map(|(e, _)| e.clone());
                    if let Some(e) = lru {
                        evicted = map.remove_entry(&e);
                    }
                    // a command in flight (or a master being opened) ends
                    let busy = map.values().any(|s| {
                        s.get()
                            .is_none_or(|c| c.commands.load(Ordering::SeqCst) > 0)
                    }) || retired
                        .iter()
                        .any(|c| c.commands.load(Ordering::SeqCst) > 0);
                    drop(retired);
                    if full && evicted.is_none() && retired_out.is_none() && busy {
                        tracing::debug!(
                            host = %host.name,
                            "every ssh master is busy: waiting for one to be idle"
                        );
                        None
                    } else {
                        let slot = Slot::default();
                        map.insert(endpoint.clone(), slot.clone());
                        Some(slot)
                    }
                }
            };
            let Some(slot) = slot else {
                idle.await;
                continue;
            };
            // The new slot counts from now on; the master it replaces is
            // ended (and waited for) before this one starts.
            if let Some(old) = retired_out {
                tracing::debug!(target: "cairn::ssh::master", host = %host.name, "ssh master cap reached: closing a broken master dropped earlier");
                self.close_master(&old).await;
            }
            if let Some((e, old)) = evicted {
                self.forwards
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|(f, _), _| *f != e);
                if let Some(conn) = old.get() {
                    tracing::debug!(host = %host.name, "ssh master cap reached: closing the least recently used idle master ({}@{})", e.user, e.address);
                    self.close_master(conn).await;
                }
            }
            // Removes the slot if this task's try leaves it unopened.
            let opening = Opening {
                pool: self,
                endpoint: &endpoint,
                slot: &slot,
                tried: std::sync::atomic::AtomicBool::new(false),
            };
            let mut mine = false;
            let opened = slot
                .get_or_try_init(|| async {
                    if !self.holds(&endpoint, &slot) {
                        return Err(None); // closed meanwhile: look again
                    }
                    opening.tried.store(true, Ordering::SeqCst);
                    let mut conn = self.connect(host).await.map_err(Some)?;
                    if self.closed.load(Ordering::SeqCst) {
                        // `close_all` ran meanwhile (a `connect()` still opening at the end).
                        self.close_master(&Arc::new(conn)).await;
                        return Err(Some(StepError::Other(format!(
                            "{}: the run's ssh connections are closed",
                            host.name
                        ))));
                    }
                    conn.locking = self.prepare_lock(&conn, host).await.map_err(Some)?;
                    conn.counter(forward).fetch_add(1, Ordering::SeqCst);
                    mine = true;
                    Ok::<_, Option<StepError>>(Arc::new(conn))
                })
                .await;
            match opened {
                Ok(conn) if mine => {
                    return Ok(InUse::new(conn.clone(), self.idle.clone(), forward, true))
                }
                Ok(_) | Err(None) => continue,
                Err(Some(e)) => return Err(e),
            }
        }
    }

    /// Open `host`'s connection now, if the pool has room for it under its
    /// cap without closing another (else do nothing: the host connects at
    /// its first command, as always). Errors are dropped here: the host's
    /// first command connects again and reports them. For `connect(hosts)`,
    /// which runs this in the background while the script goes on.
    pub async fn open_early(&self, host: &Host) {
        let room = {
            let map = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            !map.contains_key(&Endpoint::of(host))
                && self.max_masters.is_none_or(|cap| map.len() < cap)
        };
        if room {
            if let Err(e) = self.lease(host, false).await {
                tracing::debug!(host = %host.name, "opening the connection early: {e}");
            }
        }
    }

    /// How many masters the pool counts (open or being opened).
    fn count(&self) -> usize {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether `slot` is still `endpoint`'s in the pool.
    fn holds(&self, endpoint: &Endpoint, slot: &Slot) -> bool {
        let map = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        map.get(endpoint).is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// Close an evicted master (idle, already out of the pool). A private
    /// one is asked to exit. A shared one ([`Pool::shared`]) only if no other
    /// cairn process uses it: every process using a shared master holds a
    /// shared lock on its `NAME.use` file; under the endpoint's `NAME.lock`
    /// (which a process takes to reuse or start that master), this process
    /// drops its own lock and tries an exclusive one without waiting. Got
    /// it: nobody else uses the master, so it exits. Not: it stays for the
    /// other process, and this process only forgets it (and closes the
    /// forwards it opened there).
    async fn close_master(&self, conn: &Arc<Conn>) {
        let socket = conn.session.control_socket().to_path_buf();
        if let (Some((dir, _)), Some((name, use_file))) = (&self.shared, &conn.shared) {
            let lock_path = dir.join(format!("{name}.lock"));
            let use_path = dir.join(format!("{name}.use"));
            let ours = use_file.lock().unwrap_or_else(|e| e.into_inner()).take();
            let decided = tokio::task::spawn_blocking(move || {
                let lock = crate::private_file::open_append(&lock_path).ok()?;
                lock.lock().ok()?;
                // Unlocked (`UseLock`), not only closed: a child process being started
                // meanwhile (any `ssh` this process spawns) holds a copy of
                // every descriptor until it execs, and a copy keeps the
                // lock; the probe below would then take this process's own
                // lock for another process's, and the master would stay up
                // outside the pool's count.
                drop(ours);
                let probe = crate::private_file::open_append(&use_path).ok()?;
                let alone = probe.try_lock().is_ok();
                // (the same for the exclusive lock: another process's
                // shared lock must not fail on a copy of it)
                release(Some(probe));
                Some((lock, alone))
            })
            .await
            .ok()
            .flatten();
            tracing::debug!(target: "cairn::ssh::master", socket = %socket.display(), decided = ?decided.as_ref().map(|d| d.1), "closing shared");
            match decided {
                Some((lock, true)) => {
                    exit_master(&socket).await;
                    let _ = std::fs::remove_file(&socket);
                    release(Some(lock));
                }
                other => {
                    release(other.map(|(lock, _)| lock));
                    conn.close_forwards().await;
                }
            }
            return;
        }
        exit_master(&socket).await;
    }

    /// Make the host lock's folder safe on a new connection (see
    /// [`crate::host_lock::setup_script`]); whether commands can lock.
    async fn prepare_lock(&self, conn: &Conn, host: &Host) -> Result<bool, StepError> {
        let script = crate::host_lock::setup_script(&self.lock_dir);
        let what = format!("prepare the host lock {}", self.lock_dir);
        let out = match run_on(conn, host, &what, &script, None).await {
            Ok(out) => out,
            Err(RunError::NotStarted(e)) => return Err(transport(host, &what, &e)),
            Err(RunError::Failed(e)) => return Err(e),
        };
        match out.stdout.trim() {
            "locking" => {
                for line in out.stderr.lines().filter(|l| l.starts_with("cairn: ")) {
                    tracing::warn!(host = %host.name, "{line}");
                    eprintln!("warning: {}: {line} (repaired)", host.name);
                }
                Ok(true)
            }
            "unlocked" => Ok(false),
            _ => Err(StepError::Command {
                host: host.name.clone(),
                command: what,
                code: out.code,
                stderr: tail(&out.stderr, 1000),
            }),
        }
    }

    /// Drop a broken connection so the next command reconnects. Its master
    /// is kept among the retired ones, counted against the cap, until a new
    /// master needs its place or the pool closes ([`Pool::close_all`]).
    fn forget(&self, host: &Host, conn: &Arc<Conn>) {
        let endpoint = Endpoint::of(host);
        let mut map = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let same = map
            .get(&endpoint)
            .and_then(|slot| slot.get())
            .is_some_and(|c| Arc::ptr_eq(c, conn));
        if same {
            map.remove(&endpoint);
            // Its process may still run: it counts until closed (`lease`).
            self.retired
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn.clone());
            let count = map.len();
            drop(map);
            tracing::debug!(target: "cairn::ssh::master", socket = %conn.session.control_socket().display(), masters = count, "forgotten");
            self.forwards
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(e, _), _| *e != endpoint);
            self.idle.notify_waiters();
        }
    }

    fn control_dir(&self) -> Result<&Path, StepError> {
        if let Some(dir) = self.dir.get() {
            return Ok(dir.path());
        }
        // Short on purpose: unix socket paths are limited to ~108 bytes.
        let dir = tempfile::Builder::new()
            .prefix(&format!("cairn-ssh-{}-", std::process::id()))
            .tempdir_in("/tmp")
            .map_err(|e| StepError::io("creating ssh control folder in", "/tmp", e))?;
        let _ = self.dir.set(dir);
        Ok(self
            .dir
            .get()
            .map(|d| d.path())
            .unwrap_or(Path::new("/tmp")))
    }

    async fn connect(&self, host: &Host) -> Result<Conn, StepError> {
        let fail = |message: String| StepError::Connect {
            host: host.name.clone(),
            address: format!("{}:{}", host.address, host.port),
            message,
        };
        if host.address.is_empty()
            || host.address.starts_with('-')
            || host.address.contains(char::is_whitespace)
        {
            return Err(fail(format!("`{}` is not a host address", host.address)));
        }
        if let Some(key) = &host.key {
            check_identity(key).map_err(fail)?;
        }
        if let Some((dir, persist)) = &self.shared {
            return self.connect_shared(host, dir, *persist, &fail).await;
        }
        let dir = tempfile::Builder::new()
            .prefix("c")
            .tempdir_in(self.control_dir()?)
            .map_err(|e| StepError::io("creating ssh control folder", "/tmp", e))?;
        let log = dir.path().join("log");
        // A master left behind (cairn killed before closing it) exits after
        // 10 idle minutes; an idle one cairn still wants is reopened.
        self.start_master(host, &dir.path().join("master"), &log, 600, &fail)
            .await?;
        Ok(Conn::new(Session::new_native_mux(dir)))
    }

    /// Reuse the live shared master of `host`'s endpoint, or start one.
    async fn connect_shared(
        &self,
        host: &Host,
        dir: &Path,
        persist: Duration,
        fail: &impl Fn(String) -> StepError,
    ) -> Result<Conn, StepError> {
        let name = self.master_name(host);
        let socket = dir.join(&name);
        // One cairn process at a time decides about this endpoint's master.
        let lock_path = dir.join(format!("{name}.lock"));
        let lock = crate::private_file::open_append(&lock_path)
            .map_err(|e| StepError::io("opening", &lock_path, e))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| fail(format!("waiting for the ssh master lock: {e}")))?
            .map_err(|e| StepError::io("locking", &lock_path, e))?;
        // Held (shared) while this process uses the master; see `close_master`.
        let use_path = dir.join(format!("{name}.use"));
        let in_use = crate::private_file::open_append(&use_path)
            .map_err(|e| StepError::io("opening", &use_path, e))?;
        // Never blocks: an exclusive lock is only taken under `lock`.
        in_use
            .try_lock_shared()
            .map_err(|e| StepError::io("locking", &use_path, std::io::Error::other(e)))?;
        self.fault.hold_copy(&in_use);
        let conn = |session| Conn {
            shared: Some((name.clone(), Mutex::new(Some(UseLock(in_use))))),
            ..Conn::new(session)
        };
        if socket.exists() {
            let session = Session::resume_mux(socket.clone().into_boxed_path(), None);
            if !self.fault.unresponsive(&socket) && session.check().await.is_ok() {
                release(Some(lock));
                tracing::debug!(target: "cairn::ssh::master", socket = %socket.display(), masters = self.count(), "reused");
                return Ok(conn(session));
            }
            // Its master exited (idle, or its host went away): replace it.
            tracing::debug!(target: "cairn::ssh::master", socket = %socket.display(), masters = self.count(), "check failed: replacing");
            // Its master may still run (alive but not answering, e.g. on a
            // loaded machine): end it before its replacement starts, or it
            // would run on outside the pool's count.
            exit_master(&socket).await;
            let _ = std::fs::remove_file(&socket);
        }
        let log = tempfile::Builder::new()
            .prefix(&format!("{name}.log"))
            .tempfile_in(dir)
            .map_err(|e| StepError::io("creating an ssh log in", dir, e))?;
        self.start_master(host, &socket, log.path(), persist.as_secs().max(1), fail)
            .await?;
        release(Some(lock));
        Ok(conn(Session::resume_mux(socket.into_boxed_path(), None)))
    }

    /// The shared master's socket name for `host`: a digest of everything
    /// that makes two connections different, host-key checking included.
    fn master_name(&self, host: &Host) -> String {
        use sha2::{Digest, Sha256};
        let e = Endpoint::of(host);
        let id = format!(
            "{}\0{}\0{}\0{}\0{}\0{}",
            e.user,
            e.address,
            e.port,
            e.key.as_deref().unwrap_or(Path::new("")).display(),
            e.pinned,
            self.known_hosts.display()
        );
        let digest = Sha256::digest(id.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Start an `ssh -M` master for `host` listening on `socket`.
    async fn start_master(
        &self,
        host: &Host,
        socket: &Path,
        log: &Path,
        persist_secs: u64,
        fail: &impl Fn(String) -> StepError,
    ) -> Result<(), StepError> {
        let mut ssh = tokio::process::Command::new("ssh");
        ssh.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .arg("-E")
            .arg(log)
            .arg("-S")
            .arg(socket)
            .args(["-M", "-f", "-N"])
            .arg("-o")
            .arg(format!("ControlPersist={persist_secs}"))
            .args(["-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!(
                "ConnectTimeout={}",
                self.connect_timeout.as_secs().max(1)
            ))
            .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"])
            .arg("-p")
            .arg(host.port.to_string())
            .arg("-l")
            .arg(&host.user);
        if let Some(key) = &host.key {
            ssh.args(["-o", "IdentitiesOnly=yes", "-i"]).arg(key);
        }
        if host.host_keys == HostKeys::Workspace {
            if let Some(parent) = self.known_hosts.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StepError::io("creating", parent, e))?;
            }
            let mut file = std::ffi::OsString::from("UserKnownHostsFile=");
            file.push(&self.known_hosts);
            ssh.arg("-o").arg(file).args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=accept-new",
                // readable, so an operator can find and remove a rebuilt host's line
                "-o",
                "HashKnownHosts=no",
            ]);
        }
        ssh.arg("--").arg(&host.address);

        // ssh's ConnectTimeout covers the TCP connect and the banner; this covers
        // a server that stalls later in the handshake.
        let limit = self.connect_timeout + Duration::from_secs(5);
        let status = match tokio::time::timeout(limit, ssh.status()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(fail(format!("cannot run the ssh client: {e}"))),
            Err(_) => {
                // The client is killed; a master it forked off just then is not.
                exit_master(socket).await;
                return Err(fail(format!("no ssh session within {}s", limit.as_secs())));
            }
        };
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        if !status.success() {
            return Err(self.connect_error(host, &log_text, fail));
        }
        tracing::debug!(target: "cairn::ssh::master", socket = %socket.display(), masters = self.count(), "started");
        Ok(())
    }

    fn connect_error(
        &self,
        host: &Host,
        log: &str,
        fail: impl Fn(String) -> StepError,
    ) -> StepError {
        if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || (host.host_keys == HostKeys::Workspace
                && log.contains("Host key verification failed"))
        {
            let known_hosts = offending_file(log).unwrap_or_else(|| match host.host_keys {
                HostKeys::Workspace => self.known_hosts.clone(),
                HostKeys::User => PathBuf::from("~/.ssh/known_hosts"),
            });
            return StepError::HostKeyChanged {
                host: host.name.clone(),
                address: format!("{}:{}", host.address, host.port),
                known_hosts,
            };
        }
        let lines: Vec<&str> = log
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
            .collect();
        let mut message = tail(&lines.join("\n"), 600);
        if message.is_empty() {
            message = "ssh exited without saying why".into();
        }
        if host.host_keys == HostKeys::User && log.contains("Host key verification failed") {
            message.push_str(
                " (the host's key is not in your known_hosts: connect once with ssh to check and add it)",
            );
        }
        fail(message)
    }
}

/// A master's slot being opened: if this task tried to open it and left it
/// unopened (the connect failed or was cancelled), it leaves the pool, so it
/// neither counts against the cap nor makes anyone wait for it.
struct Opening<'a> {
    pool: &'a Pool,
    endpoint: &'a Endpoint,
    slot: &'a Slot,
    tried: std::sync::atomic::AtomicBool,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        if self.slot.initialized() || !self.tried.load(Ordering::SeqCst) {
            return;
        }
        let mut map = self.pool.conns.lock().unwrap_or_else(|e| e.into_inner());
        if map
            .get(self.endpoint)
            .is_some_and(|s| Arc::ptr_eq(s, self.slot))
        {
            map.remove(self.endpoint);
        }
        drop(map);
        self.pool.idle.notify_waiters();
    }
}

/// Ask the master listening on `socket` to exit (`ssh -O exit`) and wait
/// until its process is gone, so a master opened next never runs beside it.
/// The master's process is found from `/proc` (an `ssh -M` of this user
/// with `-S socket` in its arguments), not asked for its pid: a master too
/// slow to answer on a loaded machine, or not answering at all, is ended
/// too. Each `ssh -O` client gets 10 s; a master still there after its exit
/// request is ended by SIGTERM, then SIGKILL, each waited for up to 10 s.
/// Whether no master on `socket` is left.
async fn exit_master(socket: &Path) -> bool {
    let before = master_pids(socket);
    let mut ssh = tokio::process::Command::new("ssh");
    ssh.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .arg("-S")
        .arg(socket)
        .args(["-O", "exit", "--", "cairn-master"]);
    let exited = tokio::time::timeout(Duration::from_secs(10), ssh.status()).await;
    tracing::debug!(target: "cairn::ssh::master", socket = %socket.display(), pids = ?before, exit = ?exited.as_ref().map(|r| r.as_ref().map(|s| s.code()).ok()), "exit asked");
    for signal in [None, Some(libc::SIGTERM), Some(libc::SIGKILL)] {
        // pids found before the request, or since (a master forking into
        // the background shows under its child's pid)
        let mut pids = before.clone();
        pids.extend(master_pids(socket));
        pids.sort_unstable();
        pids.dedup();
        if let Some(sig) = signal {
            for pid in &pids {
                // SAFETY: a signal to an `ssh -M` process of this user
                // serving `socket`, found in /proc a moment ago.
                unsafe {
                    libc::kill(*pid, sig);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // a poll bounded by `deadline`: the master is not our child, so
        // there is no exit status to wait for
        let alive = |pids: &[i32]| {
            pids.iter()
                .any(|p| Path::new(&format!("/proc/{p}")).exists())
        };
        while alive(&pids) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if !alive(&pids) && master_pids(socket).is_empty() {
            tracing::debug!(target: "cairn::ssh::master", socket = %socket.display(), pids = ?pids, ?signal, "exited");
            return true;
        }
    }
    tracing::warn!("ssh master {} did not exit", socket.display());
    false
}

/// The processes of this user running an `ssh` master (`-M`) on `socket`.
fn master_pids(socket: &Path) -> Vec<i32> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let uid = unsafe { libc::geteuid() };
    let want = socket.as_os_str().as_bytes();
    let mut pids = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if !p.metadata().is_ok_and(|m| m.uid() == uid) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_ssh = args
            .first()
            .is_some_and(|a| *a == b"ssh" || a.ends_with(b"/ssh"));
        if is_ssh
            && args.contains(&&b"-M"[..])
            && args.windows(2).any(|w| w[0] == b"-S" && w[1] == want)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Unlock a lock file, then close it. Closing alone is not enough: a child
/// process being started at that moment holds a copy of the descriptor
/// until it execs, and the lock lasts as long as any copy.
fn release(file: Option<std::fs::File>) {
    if let Some(file) = file {
        let _ = file.unlock();
    }
}

/// Where ssh says the mismatching key is pinned (`Offending ... key in FILE:LINE`).
fn offending_file(log: &str) -> Option<PathBuf> {
    let line = log
        .lines()
        .find(|l| l.contains("Offending") && l.contains(" key in "))?;
    let rest = line.split(" key in ").nth(1)?.trim();
    let file = rest.rsplit_once(':').map(|(f, _)| f).unwrap_or(rest);
    Some(PathBuf::from(file))
}

/// An identity file must be readable by us and by no one else.
fn check_identity(key: &Path) -> Result<(), String> {
    let meta =
        std::fs::metadata(key).map_err(|e| format!("identity file {}: {e}", key.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "identity file {} is readable by others (mode {mode:04o}); ssh refuses it: run `chmod 600 {}`",
            key.display(),
            key.display()
        ));
    }
    std::fs::File::open(key).map_err(|e| format!("identity file {}: {e}", key.display()))?;
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// A real folder (not a symlink) owned by `uid` that no one else may enter:
/// its sockets log in to hosts as their user, so no one else may reach them.
fn is_private_dir(dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0)
}

fn transport(host: &Host, command: &str, e: &openssh::Error) -> StepError {
    StepError::Transport {
        host: host.name.clone(),
        command: brief(command),
        message: error_chain(e),
    }
}

/// The connection broke while `command` ran: the host may have run it, in
/// part or in full, so the caller must not count it as not started.
fn lost(host: &Host, command: &str, e: &openssh::Error) -> StepError {
    StepError::Transport {
        host: host.name.clone(),
        command: brief(command),
        message: format!(
            "{}: the connection was lost while the command ran (host down, network \
             cut or its sshd gone), so it may have run there, in part or in full",
            error_chain(e)
        ),
    }
}

fn timed_out(host: &Host, command: &str, t: Duration) -> StepError {
    StepError::Timeout {
        what: format!("`{}` on {}", brief(command), host.name),
        seconds: t.as_secs(),
    }
}

/// Run `line` over `conn`; `command` is what errors call it.
async fn run_on(
    conn: &Conn,
    host: &Host,
    command: &str,
    line: &str,
    stdin: Option<&[u8]>,
) -> Result<CommandOutput, RunError> {
    let mut cmd = conn.session.raw_command(line);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = match cmd.spawn().await {
        Ok(child) => child,
        Err(e @ (openssh::Error::Disconnected | openssh::Error::SshMux(_))) => {
            return Err(RunError::NotStarted(e))
        }
        Err(e) => return Err(RunError::Failed(transport(host, command, &e))),
    };
    let writer = child.stdin().take();
    let feed = async move {
        if let (Some(mut w), Some(data)) = (writer, stdin) {
            w.write_all(data).await?;
            w.shutdown().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let (fed, output) = tokio::join!(feed, child.wait_with_output());
    let output = output.map_err(|e| RunError::Failed(lost(host, command, &e)))?;
    // A command that exits before reading its input fails here (broken pipe);
    // the input itself is never part of the message. One that never got the
    // host lock never read it: that is no failure.
    let busy = output.status.code() == Some(crate::host_lock::BUSY_EXIT);
    if let (Err(e), false) = (fed, busy) {
        return Err(RunError::Failed(StepError::Transport {
            host: host.name.clone(),
            command: brief(command),
            message: format!(
                "could not send input (exit code {}): {e}",
                output.status.code().unwrap_or(-1)
            ),
        }));
    }
    Ok(CommandOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offending_known_hosts_file_is_found() {
        let log = "@@@@\nOffending ED25519 key in /w/known_hosts:3\n  remove with:\n";
        assert_eq!(offending_file(log), Some(PathBuf::from("/w/known_hosts")));
        assert_eq!(offending_file("nothing"), None);
    }

    #[test]
    fn shared_masters_live_only_in_a_private_folder() {
        use std::os::unix::fs::PermissionsExt;
        let uid = unsafe { libc::geteuid() };
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("m");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(is_private_dir(&dir, uid));
        assert!(!is_private_dir(&dir, uid + 1), "someone else's folder");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!is_private_dir(&dir, uid), "others may enter it");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!is_private_dir(&link, uid), "a symlink");
        assert!(!is_private_dir(&base.path().join("absent"), uid));
    }

    #[test]
    fn tails_keep_the_end() {
        assert_eq!(tail("abcdef", 3), "...def");
        assert_eq!(tail(" ab ", 3), "ab");
    }
}
