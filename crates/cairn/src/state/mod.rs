//! Team state in etcd: `--state etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
//!
//! What the local workspace holds (run journals, pinned host keys, the PKI,
//! fetched files) is kept under `PREFIX` in an etcd the team already runs, so
//! several people and CI runners can run, resume and inspect the same runs
//! from different machines. Without `--state` the local folder stays the
//! state, as before.
//!
//! # Design: a private cache workspace, written through to etcd
//!
//! The engine keeps working on a local [`Workspace`] — the primitives read
//! keys from `pki/`, ssh pins hosts in `known_hosts`, the executor appends to
//! `runs/<id>/journal.jsonl` — and none of it changes. With `--state`, that
//! workspace is a private cache (0700) under the local `--state-dir`:
//! `.cairn/shared/<hash of endpoints and prefix>/`. It is filled from etcd
//! after the lock is taken (etcd wins over whatever the cache held) and
//! written back as it changes:
//!
//! * every journal record goes to etcd **before** it is written locally, in
//!   one transaction that succeeds only if the record's key does not exist yet
//!   *and* the lock key still holds this runner's lock ([`sync::EtcdJournal`]):
//!   a step counts as recorded only once etcd has it, two writers can never
//!   both record a step, and a runner whose lock was lost cannot record one;
//! * `pki/`, `known_hosts` and `files/` are pushed when they changed, before
//!   each step's `done`/`fail` record and at the end of the run (so the CA key
//!   a step created is in etcd before that step counts as done).
//!
//! This keeps one code path for the engine (local and shared runs journal the
//! same way) and makes the etcd writes few and ordered: a step is a record.
//! The alternative, a storage trait under every primitive, would put network
//! calls into every file read of every primitive and make plans depend on it.
//!
//! Keys under `PREFIX`: `lock`, `runs/<id>/header`, `runs/<id>/journal/<seq,
//! 8 digits>` (each the journal line, checksum included), `pki/<file>`,
//! `known_hosts`, `files/<path>`, `audit/<...>`.
//!
//! # Client: etcd's JSON gateway
//!
//! cairn talks to etcd through its v3 JSON gateway with the client it already
//! has ([`crate::primitives::etcd::client::EtcdClient`], reqwest + rustls with
//! client certificates) rather than a gRPC crate such as `etcd-client`: that
//! would need `protoc`/tonic at build time, while the gateway is etcd's stable,
//! documented v3 API (kv, txn, lease) and the project already speaks it.
//!
//! # Lock
//!
//! See [`lock`]: `PREFIX/lock`, created in a transaction and tied to a lease
//! with a short TTL kept alive while a run or resume runs. A killed holder's
//! lock lapses within the TTL; nothing can go stale.

pub mod audit;
pub mod etcd;
pub mod lock;
pub mod runs;
pub mod sync;

use crate::primitives::etcd::{EtcdClient, Identity};
use crate::workspace::Workspace;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default TTL of the lock's lease, in seconds.
pub const DEFAULT_LOCK_TTL: u64 = 10;

/// `--state` and its TLS options, as given (paths are read by [`Shared::connect`]).
#[derive(Clone, Debug, Default)]
pub struct StateOptions {
    /// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`
    pub url: String,
    /// `--state-cacert`: CA of the state etcd's server certificates (PEM).
    pub cacert: Option<PathBuf>,
    /// `--state-cert`: client certificate (PEM).
    pub cert: Option<PathBuf>,
    /// `--state-key`: its private key (PEM).
    pub key: Option<PathBuf>,
    /// `--state-lock-ttl`: seconds.
    pub lock_ttl: u64,
}

/// A `--state` URL taken apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateUrl {
    /// `https://HOST:PORT`, one per endpoint.
    pub endpoints: Vec<String>,
    /// The key prefix, without leading or trailing `/`.
    pub prefix: String,
}

/// A bad `--state` (or one of its options).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid {option} `{value}`: {why}")]
    Invalid {
        option: &'static str,
        value: String,
        why: String,
    },
    #[error("{0}")]
    Etcd(String),
}

fn invalid(option: &'static str, value: &str, why: impl Into<String>) -> StateError {
    StateError::Invalid {
        option,
        value: value.into(),
        why: why.into(),
    }
}

impl StateUrl {
    /// Parse `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (port 2379 if left out).
    pub fn parse(url: &str) -> Result<StateUrl, StateError> {
        let bad = |why: &str| invalid("--state", url, why);
        let rest = url
            .strip_prefix("etcd://")
            .ok_or_else(|| bad("expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX"))?;
        let (hosts, prefix) = rest.split_once('/').ok_or_else(|| {
            bad("has no /PREFIX after the endpoints (e.g. etcd://10.0.0.1:2379/cairn)")
        })?;
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(bad("has an empty PREFIX; name one, e.g. /cairn"));
        }
        if prefix.starts_with('/')
            || prefix
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(bad("PREFIX has an empty, `.` or `..` part"));
        }
        if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("PREFIX has whitespace or control characters"));
        }
        if hosts.is_empty() {
            return Err(bad("names no endpoint"));
        }
        let mut endpoints = Vec::new();
        for h in hosts.split(',') {
            if h.is_empty() {
                return Err(bad("has an empty endpoint between commas"));
            }
            let (host, port) = match h.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
                    let port: u16 = port.parse().map_err(|_| {
                        bad(&format!(
                            "endpoint `{h}` has port `{port}`, not a number 1-65535"
                        ))
                    })?;
                    if port == 0 {
                        return Err(bad(&format!("endpoint `{h}` has port 0")));
                    }
                    (host, port)
                }
                _ => (h, 2379),
            };
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if bare.is_empty() {
                return Err(bad(&format!("endpoint `{h}` has no host")));
            }
            if bare.contains(['/', '@', '?', '#']) {
                return Err(bad(&format!("endpoint `{h}` is not HOST:PORT")));
            }
            let host = if bare.contains(':') {
                format!("[{bare}]")
            } else {
                bare.to_string()
            };
            endpoints.push(format!("https://{host}:{port}"));
        }
        Ok(StateUrl {
            endpoints,
            prefix: prefix.to_string(),
        })
    }

    /// The cache folder name for this state: a digest of endpoints and prefix.
    pub fn cache_name(&self) -> String {
        let mut h = Sha256::new();
        for e in &self.endpoints {
            h.update(e.as_bytes());
            h.update(b",");
        }
        h.update(b"/");
        h.update(self.prefix.as_bytes());
        hex::encode(&h.finalize()[..8])
    }

    /// `PREFIX/rest`.
    pub fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }
}

/// A connection to the team state: where it is, the client, and the local
/// cache workspace.
pub struct Shared {
    pub url: StateUrl,
    pub kv: Arc<etcd::Kv>,
    /// The private cache under the local `--state-dir`.
    pub cache: Workspace,
    pub lock_ttl: u64,
}

fn read_pem(option: &'static str, path: &Path) -> Result<String, StateError> {
    std::fs::read_to_string(path).map_err(|e| {
        invalid(
            option,
            &path.display().to_string(),
            format!("cannot read it: {e}"),
        )
    })
}

impl Shared {
    /// Check the options and build a client; nothing is contacted yet.
    pub fn connect(opts: &StateOptions, state_dir: &Path) -> Result<Shared, StateError> {
        let url = StateUrl::parse(&opts.url)?;
        let cacert = opts.cacert.as_ref().ok_or_else(|| {
            invalid(
                "--state",
                &opts.url,
                "needs --state-cacert (or CAIRN_STATE_CACERT): the CA of the state etcd's certificates",
            )
        })?;
        let ca = read_pem("--state-cacert", cacert)?;
        let identity = match (&opts.cert, &opts.key) {
            (Some(c), Some(k)) => Some(Identity::new(
                read_pem("--state-cert", c)?,
                read_pem("--state-key", k)?,
            )),
            (None, None) => None,
            (Some(c), None) => {
                return Err(invalid(
                    "--state-cert",
                    &c.display().to_string(),
                    "needs --state-key (or CAIRN_STATE_KEY_FILE) with its private key",
                ))
            }
            (None, Some(k)) => {
                return Err(invalid(
                    "--state-key",
                    &k.display().to_string(),
                    "needs --state-cert (or CAIRN_STATE_CERT) with its certificate",
                ))
            }
        };
        if opts.lock_ttl < 2 {
            return Err(invalid(
                "--state-lock-ttl",
                &opts.lock_ttl.to_string(),
                "must be at least 2 seconds (etcd's minimum lease TTL)",
            ));
        }
        let client = EtcdClient::new(&url.endpoints, &ca, identity)
            .map_err(|e| invalid("--state", &opts.url, e.to_string()))?;
        let abs = std::path::absolute(state_dir).unwrap_or(state_dir.to_path_buf());
        let cache = Workspace::new(abs.join("shared").join(url.cache_name()));
        Ok(Shared {
            kv: Arc::new(etcd::Kv::new(client, &opts.url)?),
            url,
            cache,
            lock_ttl: opts.lock_ttl,
        })
    }

    /// Create the cache folder (and `shared/`) private, as the workspace is.
    pub fn ensure_cache(&self) -> Result<(), String> {
        use std::os::unix::fs::DirBuilderExt;
        let parent = self.cache.root().parent().unwrap_or(self.cache.root());
        for dir in [parent.parent().unwrap_or(parent), parent, self.cache.root()] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            crate::workspace::check_private_dir(dir)
                .map_err(|e| format!("unsafe workspace: {e}"))?;
        }
        Ok(())
    }
}

impl sync::Vault for crate::seal::TeamKey {
    fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        Ok(crate::seal::TeamKey::seal(self, name, plain))
    }
    fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        crate::seal::TeamKey::open(self, name, sealed).map_err(|e| e.to_string())
    }
}

/// The team key from `CAIRN_STATE_KEY`, if set (see [`sync::Vault`]).
pub fn vault_from_env() -> Result<Option<Arc<dyn sync::Vault>>, String> {
    crate::seal::TeamKey::from_env()
        .map(|k| k.map(|k| Arc::new(k) as Arc<dyn sync::Vault>))
        .map_err(|e| e.to_string())
}

/// `cairn state unlock LOCK_ID`.
pub fn unlock_command(
    opts: &StateOptions,
    state_dir: &Path,
    lock_id: &str,
) -> Result<crate::error::Success, crate::error::Error> {
    let s = Shared::connect(opts, state_dir)?;
    let info = lock::unlock(&s.kv, &s.url.key("lock"), lock_id)?;
    println!("Unlocked the team state {}: removed {info}.", opts.url);
    println!("warning: {}", lock::UNLOCK_RISK);
    Ok(crate::error::Success::Done)
}

/// Start a run or resume on the team state: take its lock (naming
/// `runbook` and `run_id`), fill the cache, and keep `secrets` out of etcd.
pub fn begin(
    shared: &Arc<Shared>,
    command: &str,
    runbook: &str,
    run_id: &str,
    secrets: &crate::secrets::Secrets,
) -> Result<Arc<sync::Session>, StateError> {
    let vault = vault_from_env().map_err(StateError::Etcd)?;
    let info = lock::LockInfo::me(command, runbook, run_id, shared.lock_ttl);
    let session = sync::Session::begin(shared.clone(), info, vault).map_err(StateError::Etcd)?;
    session.set_secrets(secrets.clone());
    Ok(session)
}

/// Before a plan on the team state: say if a run holds its lock, and fill
/// the cache from etcd (plans take no lock and write nothing there).
pub fn plan_view(shared: &Arc<Shared>) -> Result<(), StateError> {
    let fail = StateError::Etcd;
    if let Some(holder) =
        lock::current(&shared.kv, &shared.url.key("lock")).map_err(|e| fail(e.to_string()))?
    {
        eprintln!(
            "note: a run holds the team state's lock ({holder}); this plan shows the targets as \
             they are now, while that run changes them"
        );
    }
    shared.ensure_cache().map_err(fail)?;
    let vault = vault_from_env().map_err(fail)?;
    sync::pull(shared, &shared.cache, vault.as_deref(), true).map_err(fail)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_urls_are_parsed_and_bad_ones_name_the_option() {
        let u =
            StateUrl::parse("etcd://10.0.0.1:2379,h2:32379,[fd00::1]:2379/team/cairn/").unwrap();
        assert_eq!(
            u.endpoints,
            [
                "https://10.0.0.1:2379",
                "https://h2:32379",
                "https://[fd00::1]:2379"
            ]
        );
        assert_eq!(u.prefix, "team/cairn");
        assert_eq!(u.key("lock"), "team/cairn/lock");
        assert_eq!(
            StateUrl::parse("etcd://h/p").unwrap().endpoints,
            ["https://h:2379"]
        );
        let err = |s: &str| StateUrl::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("https://h:2379/p"),
            "invalid --state `https://h:2379/p`: expected etcd://HOST:PORT[,HOST:PORT...]/PREFIX"
        );
        assert!(err("etcd://h:2379").contains("has no /PREFIX"));
        assert!(err("etcd://h:2379/").contains("empty PREFIX"));
        assert!(err("etcd://h:x/p").contains("endpoint `h:x` has port `x`"));
        assert!(err("etcd://h:1,,h:2/p").contains("empty endpoint"));
        assert!(err("etcd:///p").contains("names no endpoint"));
        assert!(err("etcd://h/a/../b").contains("`..`"));
    }
}
