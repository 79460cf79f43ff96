//! The audit log in the team state: [`EtcdAudit`], an
//! [`AuditStore`](crate::audit::AuditStore) under `PREFIX/audit/`.
//!
//! Each entry is one key `PREFIX/audit/<UTC time to the nanosecond>-<random>`
//! created in a transaction that succeeds only if the key does not exist
//! (create_revision == 0): entries are only ever added, never overwritten.
//! Keys sort by time, so a range over the prefix reads the log oldest first.
//! Appending takes no lock: plans log too, and they never lock.

use super::etcd::{Compare, Kv, Op};
use super::{Shared, StateOptions};
use crate::audit::{AuditError, AuditStore, Entry};
use std::path::Path;
use std::sync::Arc;

/// The audit log of a team state.
pub struct EtcdAudit {
    kv: Arc<Kv>,
    prefix: String,
}

impl EtcdAudit {
    pub fn new(shared: &Shared) -> Self {
        EtcdAudit {
            kv: shared.kv.clone(),
            prefix: shared.url.key("audit/"),
        }
    }
}

fn etcd_error(action: &'static str, prefix: &str, e: impl std::fmt::Display) -> AuditError {
    AuditError::Io {
        action,
        path: format!("etcd {prefix}"),
        source: std::io::Error::other(e.to_string()),
    }
}

impl AuditStore for EtcdAudit {
    fn append(&self, e: &Entry) -> Result<(), AuditError> {
        let value = serde_json::to_vec(e)
            .map_err(|err| etcd_error("encode an entry for", &self.prefix, err))?;
        let fmt = time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:9]Z"
        );
        for _ in 0..3 {
            let now = time::OffsetDateTime::now_utc()
                .format(&fmt)
                .unwrap_or_default();
            let key = format!("{}{now}-{:08x}", self.prefix, rand::random::<u32>());
            let (ok, _) = self
                .kv
                .txn(
                    &[Compare::Absent(key.clone())],
                    &[Op::Put {
                        key,
                        value: value.clone(),
                        lease: None,
                    }],
                    &[],
                )
                .map_err(|err| etcd_error("append to", &self.prefix, err))?;
            if ok {
                return Ok(());
            }
        }
        Err(etcd_error(
            "append to",
            &self.prefix,
            "three new keys already existed",
        ))
    }

    fn entries(&self) -> Result<Vec<Entry>, AuditError> {
        let list = self
            .kv
            .list(&self.prefix)
            .map_err(|err| etcd_error("read", &self.prefix, err))?;
        list.iter()
            .enumerate()
            .map(|(i, kv)| {
                serde_json::from_slice(&kv.value).map_err(|err| AuditError::Damaged {
                    path: format!("etcd {}", kv.key),
                    line: i + 1,
                    message: err.to_string(),
                })
            })
            .collect()
    }
}

/// The store a command appends to with `--state`.
pub fn store(opts: &StateOptions, state_dir: &Path) -> Option<Box<dyn AuditStore>> {
    match Shared::connect(opts, state_dir) {
        Ok(s) => Some(Box::new(EtcdAudit::new(&s))),
        Err(e) => {
            eprintln!("warning: {e}; this command is not in the audit log");
            None
        }
    }
}

/// `cairn state log [--json]` with `--state`: the team's audit log.
pub fn log(
    opts: &StateOptions,
    state_dir: &Path,
    json: bool,
) -> Result<crate::error::Success, crate::error::Error> {
    let shared = Shared::connect(opts, state_dir)?;
    let entries = EtcdAudit::new(&shared).entries()?;
    if json {
        println!("{}", crate::audit::to_json(&entries)?);
    } else if entries.is_empty() {
        println!("No entries in the team state {}.", opts.url);
    } else {
        print!("{}", crate::audit::table(&entries));
    }
    Ok(crate::error::Success::Done)
}
