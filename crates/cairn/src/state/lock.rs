//! The team lock: `PREFIX/lock`, one writer for the whole shared state.
//!
//! A run or resume creates the key in a transaction that succeeds only if it
//! does not exist (create_revision == 0), attached to a lease with a short TTL
//! (default 10 s, `--state-lock-ttl`) that a background thread keeps alive
//! every TTL/3. The value says who holds it ([`LockInfo`]). A killed holder
//! stops renewing, so its lock lapses within the TTL: there are no stale
//! locks. If renewing fails for a whole TTL the lease may have lapsed: the
//! holder marks the lock lost and its next journal record is refused (the
//! record's transaction also checks that the lock key still holds this
//! runner's value, so a lapsed or force-unlocked runner can never record a
//! step, whatever its clock says).
//!
//! Plans do not take the lock; they say when a run holds it.
//! `cairn state unlock LOCK_ID` deletes the lock if LOCK_ID is the current
//! holder's, revoking its lease ([`unlock`]).

use super::etcd::{Compare, Entry, Kv, Op};
use super::StateError;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Who holds the lock, as stored in its value (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random, names this holding for `cairn state unlock`.
    pub id: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    /// `run` or `resume`.
    pub command: String,
    pub runbook: String,
    pub run_id: String,
    /// RFC 3339, UTC.
    pub started: String,
    /// The lease TTL in seconds.
    pub ttl: u64,
}

impl std::fmt::Display for LockInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "lock {} held by {}@{} pid {} (`cairn {}` of runbook {}, run {}), started {}",
            self.id,
            self.user,
            self.host,
            self.pid,
            self.command,
            self.runbook,
            self.run_id,
            self.started
        )
    }
}

/// The user's name: `$USER`, else the passwd entry of this uid, else `uid N`.
fn user_name() -> String {
    if let Ok(u) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        if !u.is_empty() {
            return u;
        }
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

impl LockInfo {
    /// This process, about to `command` (`run`/`resume`) `runbook`'s run `run_id`.
    pub fn me(command: &str, runbook: &str, run_id: &str, ttl: u64) -> LockInfo {
        LockInfo {
            id: format!("{:016x}", rand::random::<u64>()),
            user: user_name(),
            host: host_name(),
            pid: std::process::id(),
            command: command.into(),
            runbook: runbook.into(),
            run_id: run_id.into(),
            started: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            ttl,
        }
    }
}

/// The lock as it is now, with how long its lease has left.
#[derive(Clone, Debug)]
pub struct Current {
    pub info: Option<LockInfo>,
    /// The raw value (when it is not a [`LockInfo`]).
    pub raw: String,
    pub lease: String,
    /// Seconds until the lease lapses if its holder stopped renewing it.
    pub lapses_in: Option<i64>,
}

impl std::fmt::Display for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.info {
            Some(i) => write!(f, "{i}")?,
            None => write!(f, "a lock with value `{}`", self.raw)?,
        }
        if self.lease == "0" {
            return write!(
                f,
                "; it is tied to no lease and never lapses (`cairn state unlock` removes it)"
            );
        }
        match self.lapses_in {
            Some(s) => write!(
                f,
                "; if that process died, its lease lapses in {s} s at the latest"
            ),
            None => write!(f, "; its lease has lapsed, the lock is going away"),
        }
    }
}

/// Read the lock key (`None`: nobody holds it).
pub fn current(kv: &Kv, key: &str) -> Result<Option<Current>, StateError> {
    let Some(e) = kv.get(key)? else {
        return Ok(None);
    };
    Ok(Some(describe(kv, &e)))
}

fn describe(kv: &Kv, e: &Entry) -> Current {
    let lapses_in = if e.lease == "0" {
        None
    } else {
        kv.time_to_live(&e.lease)
            .map_err(|err| tracing::warn!("cannot ask how long lease {} has left: {err}", e.lease))
            .ok()
            .flatten()
    };
    Current {
        info: serde_json::from_slice(&e.value).ok(),
        raw: String::from_utf8_lossy(&e.value).into_owned(),
        lease: e.lease.clone(),
        lapses_in,
    }
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the team state {state} is locked: {holder}. Wait for that run to end, \
         or, if it is gone, for its lease to lapse; `cairn state unlock LOCK_ID` forces it \
         (see its warning)"
    )]
    Held { state: String, holder: Box<Current> },
    #[error("{0}")]
    State(#[from] StateError),
}

struct Renewal {
    stop: Mutex<bool>,
    wake: Condvar,
    /// When the lease was last renewed (or granted).
    last_ok: Mutex<Instant>,
    lost: AtomicBool,
}

/// The lock, held until dropped (then its lease is revoked, deleting it).
pub struct HeldLock {
    kv: Arc<Kv>,
    key: String,
    info: Mutex<(LockInfo, Vec<u8>)>,
    lease: String,
    ttl: Duration,
    renewal: Arc<Renewal>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HeldLock {
    /// Take the lock at `key` for `info`, or say who holds it.
    pub fn acquire(kv: Arc<Kv>, key: &str, state: &str, info: LockInfo) -> Result<Self, LockError> {
        let ttl = info.ttl;
        let value = serde_json::to_vec(&info).map_err(|e| StateError::Etcd(e.to_string()))?;
        let lease = kv.grant(ttl)?;
        let granted = Instant::now();
        let (ok, read) = kv.txn(
            &[Compare::Absent(key.into())],
            &[Op::Put {
                key: key.into(),
                value: value.clone(),
                lease: Some(lease.clone()),
            }],
            &[Op::Get(key.into())],
        )?;
        if !ok {
            let _ = kv.revoke(&lease);
            let holder = match read.first() {
                Some(e) => describe(&kv, e),
                // gone between the compare and the read: say so
                None => Current {
                    info: None,
                    raw: "(released just now)".into(),
                    lease: "0".into(),
                    lapses_in: None,
                },
            };
            return Err(LockError::Held {
                state: state.into(),
                holder: Box::new(holder),
            });
        }
        let renewal = Arc::new(Renewal {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            last_ok: Mutex::new(granted),
            lost: AtomicBool::new(false),
        });
        let thread = {
            let (kv, lease, renewal) = (kv.clone(), lease.clone(), renewal.clone());
            let ttl = Duration::from_secs(ttl);
            std::thread::spawn(move || keep_alive(&kv, &lease, ttl, &renewal))
        };
        Ok(HeldLock {
            kv,
            key: key.into(),
            info: Mutex::new((info, value)),
            lease,
            ttl: Duration::from_secs(ttl),
            renewal,
            thread: Some(thread),
        })
    }

    /// Who holds it (this process).
    pub fn info(&self) -> LockInfo {
        self.info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The comparison every write under this lock carries: the lock key still
    /// holds this runner's value. Errors when the lock is known to be lost.
    pub fn guard(&self) -> Result<Compare, StateError> {
        let last_ok = *self
            .renewal
            .last_ok
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if self.renewal.lost.load(Ordering::SeqCst) || last_ok.elapsed() >= self.ttl {
            self.renewal.lost.store(true, Ordering::SeqCst);
            return Err(StateError::Etcd(format!(
                "lost the team lock {} (its lease could not be renewed for {} s, so it may have \
                 lapsed and another runner may hold it now); this run stops before recording \
                 anything more: check `cairn runs`, then `cairn resume` it",
                self.info().id,
                self.ttl.as_secs()
            )));
        }
        let value = self
            .info
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone();
        Ok(Compare::Value(self.key.clone(), value))
    }

    /// Change the runbook and run id the lock names (a resume learns them
    /// after it took the lock), keeping the lease.
    pub fn relabel(&self, runbook: &str, run_id: &str) -> Result<(), StateError> {
        let guard = self.guard()?;
        let mut held = self.info.lock().unwrap_or_else(|e| e.into_inner());
        let mut info = held.0.clone();
        info.runbook = runbook.into();
        info.run_id = run_id.into();
        let value = serde_json::to_vec(&info).map_err(|e| StateError::Etcd(e.to_string()))?;
        let (ok, _) = self.kv.txn(
            &[guard],
            &[Op::Put {
                key: self.key.clone(),
                value: value.clone(),
                lease: Some(self.lease.clone()),
            }],
            &[],
        )?;
        if !ok {
            return Err(StateError::Etcd(format!(
                "the team lock {} is no longer ours (force-unlocked or lapsed)",
                info.id
            )));
        }
        *held = (info, value);
        Ok(())
    }
}

fn keep_alive(kv: &Kv, lease: &str, ttl: Duration, r: &Renewal) {
    let every = ttl / 3;
    loop {
        {
            let stop = r.stop.lock().unwrap_or_else(|e| e.into_inner());
            let (stop, _) = r
                .wake
                .wait_timeout_while(stop, every, |s| !*s)
                .unwrap_or_else(|e| e.into_inner());
            if *stop {
                return;
            }
        }
        match kv.keepalive(lease) {
            Ok(left) if left > 0 => {
                *r.last_ok.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            }
            // 0: the lease is gone (revoked by an unlock, or lapsed)
            Ok(_) => r.lost.store(true, Ordering::SeqCst),
            Err(e) => {
                tracing::warn!("renewing the team lock's lease failed: {e}");
            }
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        *self.renewal.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.renewal.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Deletes the lock key with the lease (a no-op if it lapsed).
        let _ = self.kv.revoke(&self.lease);
    }
}

/// `cairn state unlock LOCK_ID`: delete the lock if `lock_id` is its current
/// holder's, revoking that lease. Returns the holder removed.
pub fn unlock(kv: &Kv, key: &str, lock_id: &str) -> Result<LockInfo, StateError> {
    let Some(e) = kv.get(key)? else {
        return Err(StateError::Etcd(format!(
            "nobody holds the team lock ({key} does not exist); nothing to unlock"
        )));
    };
    let now = describe(kv, &e);
    let info = match &now.info {
        Some(i) if i.id == lock_id => i.clone(),
        _ => {
            return Err(StateError::Etcd(format!(
                "`{lock_id}` is not the current lock: {now}. Nothing was changed; \
                 unlock only the lock id shown there"
            )))
        }
    };
    let (ok, _) = kv.txn(
        &[Compare::Value(key.into(), e.value.clone())],
        &[Op::Delete(key.into())],
        &[],
    )?;
    if !ok {
        return Err(StateError::Etcd(
            "the lock changed while unlocking it; nothing was changed (run `cairn state unlock` \
             again with the lock id it names now)"
                .into(),
        ));
    }
    if e.lease != "0" {
        let _ = kv.revoke(&e.lease);
    }
    Ok(info)
}

/// What forcing the lock risks, printed by `cairn state unlock`.
pub const UNLOCK_RISK: &str = "If that process still runs, two runners may now work on the same \
clusters at once: the next one to take the lock starts while the old one may still be inside a \
step. The old runner cannot record anything more (each journal record checks that it still holds \
the lock), so its next step's record is refused and it stops; but the step it was in may have \
changed hosts without being recorded, and a resume does it again. Unlock only when the holder is \
known to be dead or stopped.";
