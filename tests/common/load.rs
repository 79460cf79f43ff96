//! A continuous client load for lab tests of day-2 work (rotations, upgrades,
//! membership changes): writes and reads through every endpoint in turn at a
//! fixed rate, from a background thread, each request on a new TLS connection
//! with the PEM files read again (so rotated certificates and files are used
//! by the next request), every failure
//! counted with when and where it happened.
//!
//! ```ignore
//! #[path = "common/load.rs"] mod load;
//! let running = load::Load::start(load::Target { endpoints, ca, cert, key }, 20);
//! // ... the work under test ...
//! let report = running.stop();
//! assert_eq!(report.failed, 0, "{report}");
//! report.check_data(&target);
//! ```
//!
//! Writes put `/cairn-load/<seq>` = `<seq>`; a read asks for the last
//! acknowledged key and fails unless it holds its value. Requests are started
//! on the tick whether or not earlier ones have answered, so a stalled
//! endpoint shows as failures (10 s timeout), not as a lower rate.
//!
//! Every failure keeps its endpoint, when it was sent, how long it took and
//! its [`FailureKind`] (refused connection, TLS, timeout, an etcd error, ...),
//! so a test's message can say what failed where and when
//! ([`LoadReport::failures_between`], [`LoadReport::kinds`]).

#![allow(dead_code)]

use cairn::error::StepError;
use cairn::primitives::etcd::{EtcdClient, Identity};
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The key prefix the load writes under.
pub const PREFIX: &str = "/cairn-load/";

/// Where and as whom the load talks to etcd.
#[derive(Clone, Debug)]
pub struct Target {
    /// Client URLs, `https://10.x.y.z:2379`.
    pub endpoints: Vec<String>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Target {
    /// A client for the target, reading the PEM files now (so files
    /// replaced by a rotation are used from the next request on).
    pub fn try_client(&self) -> Result<EtcdClient, String> {
        let read =
            |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        EtcdClient::new(
            &self.endpoints,
            &read(&self.ca)?,
            Some(Identity::new(read(&self.cert)?, read(&self.key)?)),
        )
        .map_err(|e| e.to_string())
    }

    /// [`Target::try_client`], panicking on error.
    pub fn client(&self) -> EtcdClient {
        self.try_client().expect("a client for the load target")
    }
}

/// Why a request failed, coarsely (a stopped member refuses connections; a
/// member that listens but does not serve yet answers with an etcd error or
/// not at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// TCP connection refused: nothing listens (etcd stopped or not started).
    Refused,
    /// The connection was reset or closed before an answer.
    Reset,
    /// The TLS handshake failed (an alert, a certificate not trusted).
    Tls,
    /// No answer within the connect or request timeout.
    Timeout,
    /// Another failure to connect or to read the answer.
    Connect,
    /// etcd answered with an error (`etcdserver: leader changed`, no leader, ...).
    Etcd,
    /// A read answered, without the value last acknowledged.
    WrongValue,
    /// The load's own certificate files could not be read.
    Files,
}

impl FailureKind {
    /// The kind of a client error.
    pub fn of(e: &StepError) -> FailureKind {
        match e {
            StepError::Api { .. } => FailureKind::Etcd,
            StepError::Connect { message, .. } => {
                let m = message.to_ascii_lowercase();
                if m.contains("connection refused") {
                    FailureKind::Refused
                } else if m.contains("timed out") || m.contains("timeout") {
                    FailureKind::Timeout
                } else if m.contains("tls")
                    || m.contains("certificate")
                    || m.contains("handshake")
                    || m.contains("alert")
                {
                    FailureKind::Tls
                } else if m.contains("reset")
                    || m.contains("closed")
                    || m.contains("broken pipe")
                    || m.contains("eof")
                {
                    FailureKind::Reset
                } else {
                    FailureKind::Connect
                }
            }
            _ => FailureKind::Connect,
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Refused => "refused",
            FailureKind::Reset => "reset",
            FailureKind::Tls => "tls",
            FailureKind::Timeout => "timeout",
            FailureKind::Connect => "connect",
            FailureKind::Etcd => "etcd-error",
            FailureKind::WrongValue => "wrong-value",
            FailureKind::Files => "files",
        })
    }
}

/// One failed request.
#[derive(Clone, Debug)]
pub struct Failure {
    /// When it was sent, since the load started.
    pub at: Duration,
    /// How long it took to fail.
    pub took: Duration,
    pub endpoint: String,
    /// `put` or `get`.
    pub op: &'static str,
    pub kind: FailureKind,
    pub error: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2}s (+{:.2}s) {} {} {}: {}",
            self.at.as_secs_f64(),
            self.took.as_secs_f64(),
            self.op,
            self.endpoint,
            self.kind,
            self.error
        )
    }
}

/// What a load did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub sent: u64,
    pub failed: u64,
    /// Per endpoint: (sent, failed).
    pub per_endpoint: BTreeMap<String, (u64, u64)>,
    /// The first 2,000 failures.
    pub failures: Vec<Failure>,
    /// Every failure counted by kind.
    pub by_kind: BTreeMap<FailureKind, u64>,
    /// When each answered request was sent (since the load started), and
    /// through which endpoint: whether an endpoint served inside a window.
    pub answered: Vec<(Duration, String)>,
    /// Sequence numbers of acknowledged writes.
    pub acked: Vec<u64>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl LoadReport {
    /// The first few failures' messages (for assertion messages).
    pub fn first_errors(&self) -> Vec<String> {
        self.failures
            .iter()
            .take(10)
            .map(|f| f.to_string())
            .collect()
    }

    /// The failures of requests sent from `from` to `to` (seconds since the
    /// load started, inclusive) or still under way then, one line each.
    pub fn failures_between(&self, from: f64, to: f64) -> Vec<String> {
        self.failures
            .iter()
            .filter(|f| f.at.as_secs_f64() <= to && (f.at + f.took).as_secs_f64() >= from)
            .map(|f| f.to_string())
            .collect()
    }

    /// The requests through `endpoint` sent from `from` to `to` (seconds
    /// since the load started) that were answered: when, as `17.34s`.
    pub fn answered_between(&self, endpoint: &str, from: f64, to: f64) -> Vec<String> {
        self.answered
            .iter()
            .filter(|(at, ep)| ep == endpoint && (from..=to).contains(&at.as_secs_f64()))
            .map(|(at, _)| format!("{:.2}s", at.as_secs_f64()))
            .collect()
    }

    /// Failures per kind, as `refused 12, etcd-error 1`.
    pub fn kinds(&self) -> String {
        let parts: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// Requests per second over the whole run.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(0.001)
    }

    /// Reads back every acknowledged write (through the target's first
    /// answering endpoint) and panics naming any that is missing or wrong.
    pub fn check_data(&self, target: &Target) {
        let rt = runtime();
        let stored: BTreeMap<String, String> = rt
            .block_on(target.client().get_prefix(PREFIX))
            .expect("reading the load's keys back")
            .into_iter()
            .collect();
        let mut bad = Vec::new();
        for seq in &self.acked {
            let key = key_of(*seq);
            match stored.get(&key) {
                Some(v) if *v == seq.to_string() => {}
                Some(v) => bad.push(format!("{key} = {v:?}")),
                None => bad.push(format!("{key} missing")),
            }
        }
        assert!(
            bad.is_empty(),
            "{} of {} acknowledged writes lost or wrong: {}",
            bad.len(),
            self.acked.len(),
            bad.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
        );
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests in {:.1}s ({:.1}/s), {} failed",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.failed
        )?;
        if self.failed > 0 {
            write!(f, " ({})", self.kinds())?;
        }
        for (ep, (s, x)) in &self.per_endpoint {
            write!(f, "; {ep}: {s} sent, {x} failed")?;
        }
        for e in self.first_errors() {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

fn key_of(seq: u64) -> String {
    format!("{PREFIX}{seq:010}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the load")
}

#[derive(Default)]
struct Shared {
    report: Mutex<LoadReport>,
    /// The newest acknowledged write, 0 for none yet.
    last_acked: AtomicU64,
}

impl Shared {
    /// Counts a request sent at `at` that just ended (`started` is the
    /// load's start), with its failure's kind and text if it failed.
    fn record(
        &self,
        endpoint: &str,
        op: &'static str,
        started: Instant,
        at: Duration,
        result: Result<(), (FailureKind, String)>,
    ) {
        let took = started.elapsed().saturating_sub(at);
        let mut r = self.report.lock().unwrap();
        r.sent += 1;
        let e = r.per_endpoint.entry(endpoint.to_string()).or_default();
        e.0 += 1;
        if result.is_err() {
            e.1 += 1;
        }
        if result.is_ok() {
            r.answered.push((at, endpoint.to_string()));
        }
        if let Err((kind, error)) = result {
            r.failed += 1;
            *r.by_kind.entry(kind).or_default() += 1;
            if r.failures.len() < 2000 {
                r.failures.push(Failure {
                    at,
                    took,
                    endpoint: endpoint.to_string(),
                    op,
                    kind,
                    error,
                });
            }
        }
    }
}

/// A running load; `stop()` ends it.
pub struct Load {
    started: Instant,
    /// The same moment on the wall clock (hosts' logs use it).
    started_wall: std::time::SystemTime,
    stop: Arc<AtomicBool>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<LoadReport>>,
}

impl Load {
    /// Starts `per_second` requests per second (alternating writes and
    /// reads, endpoints in turn). Panics if the target's files cannot be read.
    pub fn start(target: Target, per_second: u32) -> Load {
        assert!(per_second > 0, "a load needs a rate");
        assert!(!target.endpoints.is_empty(), "a load needs endpoints");
        target.client(); // the files are readable now
        let target = Arc::new(target);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let shared = Arc::new(Shared::default());
        let mine = shared.clone();
        let started = Instant::now();
        let started_wall = std::time::SystemTime::now();
        let thread = std::thread::spawn(move || {
            let rt = runtime();
            rt.block_on(async move {
                let mut tick =
                    tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut tasks = Vec::new();
                let mut n: u64 = 0;
                while !flag.load(Ordering::SeqCst) {
                    tick.tick().await;
                    n += 1;
                    let endpoint = target.endpoints[(n as usize) % target.endpoints.len()].clone();
                    let (target, shared) = (target.clone(), shared.clone());
                    let write = n % 2 == 1 || shared.last_acked.load(Ordering::SeqCst) == 0;
                    tasks.push(tokio::spawn(async move {
                        let at = started.elapsed();
                        let client = match target.try_client() {
                            Ok(c) => c,
                            Err(e) => {
                                let op = if write { "put" } else { "get" };
                                let failed = Err((FailureKind::Files, e));
                                return shared.record(&endpoint, op, started, at, failed);
                            }
                        };
                        if write {
                            let result = client
                                .put_at(&endpoint, &key_of(n), &n.to_string())
                                .await
                                .map_err(|e| (FailureKind::of(&e), e.to_string()));
                            if result.is_ok() {
                                shared.report.lock().unwrap().acked.push(n);
                                shared.last_acked.fetch_max(n, Ordering::SeqCst);
                            }
                            shared.record(&endpoint, "put", started, at, result);
                        } else {
                            let seq = shared.last_acked.load(Ordering::SeqCst);
                            let result = match client.get_at(&endpoint, &key_of(seq)).await {
                                Ok(Some(v)) if v == seq.to_string() => Ok(()),
                                Ok(Some(v)) => Err((
                                    FailureKind::WrongValue,
                                    format!("{} holds {v:?}", key_of(seq)),
                                )),
                                Ok(None) => Err((
                                    FailureKind::WrongValue,
                                    format!("{} missing", key_of(seq)),
                                )),
                                Err(e) => Err((FailureKind::of(&e), e.to_string())),
                            };
                            shared.record(&endpoint, "get", started, at, result);
                        }
                    }));
                    tasks.retain(|t| !t.is_finished());
                }
                for t in tasks {
                    let _ = t.await;
                }
                let mut report = std::mem::take(&mut *shared.report.lock().unwrap());
                report.elapsed = started.elapsed();
                report.acked.sort_unstable();
                report
            })
        });
        Load {
            started,
            started_wall,
            stop,
            shared: mine,
            thread: Some(thread),
        }
    }

    /// Time since the load started: the clock of [`Failure::at`], for a
    /// test's timeline of what it did meanwhile.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The wall-clock time (seconds since the Unix epoch) the load started:
    /// subtract it from a host log's time to put it on the load's clock.
    pub fn started_unix(&self) -> f64 {
        self.started_wall
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default()
    }

    /// (sent, failed) so far: answered requests only.
    pub fn progress(&self) -> (u64, u64) {
        let r = self.shared.report.lock().unwrap();
        (r.sent, r.failed)
    }

    /// Waits (polling, up to `timeout`) until `done(sent, failed)` holds;
    /// panics with the progress when it does not.
    pub fn wait_for(&self, timeout: Duration, what: &str, done: impl Fn(u64, u64) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let (sent, failed) = self.progress();
            if done(sent, failed) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "load: {what} not reached in {timeout:?} ({sent} sent, {failed} failed)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Requests sent so far are waited for; returns the report.
    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("stopped once")
            .join()
            .expect("the load thread")
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
