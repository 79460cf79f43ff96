//! Filling the cache workspace from etcd and writing it back (see the
//! [module documentation](super) for the design).
//!
//! A [`Session`] is one run or resume on the team state: it holds the lock,
//! filled the cache after taking it, pushes `pki/`, `known_hosts` and
//! `files/` when they changed, and gives the journal its [`EtcdJournal`].
//!
//! Files that hold a private key (`PRIVATE KEY`) or a secret parameter's
//! value are sealed with the team key before they go to etcd, and opened
//! when they come back ([`Vault`]); no other value needs the key.

use super::etcd::{Compare, Entry, Op};
use super::lock::{HeldLock, LockInfo};
use super::{Shared, StateError};
use crate::journal::{Record, RecordSink};
use crate::secrets::Secrets;
use crate::workspace::Workspace;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Seals secret files for etcd and opens them again (the team key).
pub trait Vault: Send + Sync {
    /// Seal `plain`, bound to `name` (its path: a value moved to another
    /// key does not open).
    fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, String>;
    fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, String>;
}

/// What a sealed value starts with in etcd.
pub const SEALED: &[u8] = b"cairn-sealed:";

/// The message when a sealed value is met (or must be made) without a key.
pub fn key_missing(what: &str) -> String {
    format!(
        "the team state holds {what}, sealed with the team key, and CAIRN_STATE_KEY is not set: \
         set it to the team's key (a new team makes one with `cairn state keygen`; never store \
         it in the state)"
    )
}

/// A journal append refused by the team state: shown as it is.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(Refused(msg.into()))
}

type Hashes = BTreeMap<String, [u8; 32]>;

fn digest(mode: u32, bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((mode & 0o777).to_be_bytes());
    h.update(bytes);
    h.finalize().into()
}

/// The relative path of a stored key under `prefix/`, if it is a safe one.
fn safe_rel(rel: &str) -> Option<&str> {
    let ok = !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..");
    ok.then_some(rel)
}

/// A stored file: its mode on a first line (`0644`), then the content
/// (plain, or [`SEALED`] and the sealed content).
fn stored(mode: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = format!("{:04o}\n", mode & 0o777).into_bytes();
    v.extend_from_slice(payload);
    v
}

/// The mode and payload of a stored file.
fn unstored<'a>(rel: &str, value: &'a [u8]) -> Result<(u32, &'a [u8]), String> {
    let bad = || format!("`{rel}` of the team state is not a stored file (no mode line)");
    let nl = value.iter().position(|b| *b == b'\n').ok_or_else(bad)?;
    let mode = std::str::from_utf8(&value[..nl])
        .ok()
        .and_then(|m| u32::from_str_radix(m, 8).ok())
        .filter(|m| *m <= 0o777)
        .ok_or_else(bad)?;
    Ok((mode, &value[nl + 1..]))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write_file(path, bytes, 0o600)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("cairn-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_data())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn remove_path(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// Every regular file under `dir`, relative to `base`.
fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            walk(base, &p, out);
        } else if t.is_file() && !p.to_string_lossy().ends_with(".cairn-tmp") {
            if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_path_buf());
            }
        }
    }
}

/// The files pushed to etcd, relative to the workspace: `pki/...`,
/// `known_hosts`, `files/...` (journals go record by record).
fn pushed_files(ws: &Workspace) -> Vec<String> {
    let mut out = Vec::new();
    walk(ws.root(), &ws.pki_dir(), &mut out);
    walk(ws.root(), &ws.files_dir(), &mut out);
    if ws.known_hosts().is_file() {
        out.push(PathBuf::from("known_hosts"));
    }
    out.into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// Fill `cache` from the state: its runs always, and with `files` also
/// `pki/`, `known_hosts` and `files/` (sealed ones opened with `vault`).
/// What the cache held there before is replaced. Returns the digests of the
/// files written (what etcd holds), for [`Session::push`].
pub fn pull(
    shared: &Shared,
    cache: &Workspace,
    vault: Option<&dyn Vault>,
    files: bool,
) -> Result<Hashes, String> {
    let kv = &shared.kv;
    let err = |e: StateError| e.to_string();
    // runs: the journal records, in order, one file per run
    let runs_prefix = shared.url.key("runs/");
    let mut journals: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    for e in kv.list(&runs_prefix).map_err(err)? {
        let rel = &e.key[runs_prefix.len()..];
        if let Some((id, seq)) = rel.split_once("/journal/") {
            if safe_rel(id).is_some() && !id.contains('/') {
                journals
                    .entry(id.to_string())
                    .or_default()
                    .push((seq.to_string(), e.value));
            }
        }
    }
    remove_path(&cache.runs_dir());
    for (id, mut records) in journals {
        records.sort();
        let text: Vec<u8> = records.into_iter().flat_map(|(_, v)| v).collect();
        write_private(&cache.runs_dir().join(&id).join("journal.jsonl"), &text)?;
    }
    let mut hashes = Hashes::new();
    if !files {
        return Ok(hashes);
    }
    let mut entries: Vec<Entry> = Vec::new();
    for p in ["pki/", "files/"] {
        entries.extend(kv.list(&shared.url.key(p)).map_err(err)?);
    }
    entries.extend(kv.get(&shared.url.key("known_hosts")).map_err(err)?);
    remove_path(&cache.pki_dir());
    remove_path(&cache.files_dir());
    remove_path(&cache.known_hosts());
    let root = format!("{}/", shared.url.prefix);
    for e in entries {
        let Some(rel) = e.key.strip_prefix(&root).and_then(safe_rel) else {
            return Err(format!(
                "the team state has a key `{}` that is not a safe path; refusing to write it",
                e.key
            ));
        };
        let (mode, payload) = unstored(rel, &e.value)?;
        let plain = match payload.strip_prefix(SEALED) {
            Some(sealed) => {
                let v = vault.ok_or_else(|| key_missing(&format!("`{rel}`")))?;
                v.open(rel, sealed)
                    .map_err(|why| format!("cannot open `{rel}` of the team state: {why}"))?
            }
            None => payload.to_vec(),
        };
        hashes.insert(rel.to_string(), digest(mode, &plain));
        let path = cache.root().join(rel);
        write_file(&path, &plain, mode)?;
        // the umask must not narrow what the file had
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    }
    Ok(hashes)
}

/// A run or resume on the team state: the lock, and what etcd holds.
pub struct Session {
    pub shared: Arc<Shared>,
    pub lock: HeldLock,
    vault: Option<Arc<dyn Vault>>,
    /// What etcd holds of the pushed files (digests of the plain content).
    synced: Mutex<Hashes>,
    secrets: Mutex<Secrets>,
}

impl Session {
    /// Take the lock for `info`, then fill the cache from etcd.
    pub fn begin(
        shared: Arc<Shared>,
        info: LockInfo,
        vault: Option<Arc<dyn Vault>>,
    ) -> Result<Arc<Session>, String> {
        shared.ensure_cache()?;
        let lock = HeldLock::acquire(
            shared.kv.clone(),
            &shared.url.key("lock"),
            &shared_name(&shared),
            info,
        )
        .map_err(|e| e.to_string())?;
        let synced = pull(&shared, &shared.cache, vault.as_deref(), true)?;
        Ok(Arc::new(Session {
            shared,
            lock,
            vault,
            synced: Mutex::new(synced),
            secrets: Mutex::new(Secrets::default()),
        }))
    }

    /// The values a file must not carry in plain text to etcd.
    pub fn set_secrets(&self, secrets: Secrets) {
        *self.secrets.lock().unwrap_or_else(|e| e.into_inner()) = secrets;
    }

    /// Private keys, owner-only files and files that hold a secret value.
    fn must_seal(&self, mode: u32, plain: &[u8]) -> bool {
        if mode & 0o077 == 0 || plain.windows(11).any(|w| w == b"PRIVATE KEY") {
            return true;
        }
        let text = String::from_utf8_lossy(plain);
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        secrets.redact(&text) != text
    }

    /// Push what changed in `pki/`, `known_hosts` and `files/` since etcd
    /// last had it, under the lock.
    pub fn push(&self) -> Result<(), String> {
        let ws = &self.shared.cache;
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        let mut ops = Vec::new();
        let mut now = Hashes::new();
        for rel in pushed_files(ws) {
            let path = ws.root().join(&rel);
            let (Ok(plain), Ok(meta)) = (std::fs::read(&path), std::fs::metadata(&path)) else {
                continue;
            };
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            let d = digest(mode, &plain);
            now.insert(rel.clone(), d);
            if synced.get(&rel) == Some(&d) {
                continue;
            }
            let payload = if self.must_seal(mode, &plain) {
                let vault = self
                    .vault
                    .as_ref()
                    .ok_or_else(|| key_missing(&format!("`{rel}` (a private key or secret)")))?;
                let mut v = SEALED.to_vec();
                v.extend(
                    vault
                        .seal(&rel, &plain)
                        .map_err(|e| format!("cannot seal `{rel}`: {e}"))?,
                );
                v
            } else {
                plain
            };
            ops.push(Op::Put {
                key: self.shared.url.key(&rel),
                value: stored(mode, &payload),
                lease: None,
            });
        }
        for rel in synced.keys() {
            if !now.contains_key(rel) {
                ops.push(Op::Delete(self.shared.url.key(rel)));
            }
        }
        for chunk in ops.chunks(64) {
            let guard = self.lock.guard().map_err(|e| e.to_string())?;
            let (ok, _) = self
                .shared
                .kv
                .txn(&[guard], chunk, &[])
                .map_err(|e| e.to_string())?;
            if !ok {
                return Err(lock_lost(&self.shared, &self.lock.info()));
            }
        }
        *synced = now;
        Ok(())
    }

    /// The journal sink of run `run_id`.
    pub fn journal(self: &Arc<Self>, run_id: &str) -> Box<dyn RecordSink> {
        Box::new(EtcdJournal {
            session: self.clone(),
            run_id: run_id.into(),
        })
    }
}

fn shared_name(shared: &Shared) -> String {
    format!(
        "etcd://{}/{}",
        shared
            .url
            .endpoints
            .iter()
            .map(|e| e.trim_start_matches("https://"))
            .collect::<Vec<_>>()
            .join(","),
        shared.url.prefix
    )
}

fn lock_lost(shared: &Shared, me: &LockInfo) -> String {
    let now = super::lock::current(&shared.kv, &shared.url.key("lock"))
        .ok()
        .flatten()
        .map(|c| format!("it is now {c}"))
        .unwrap_or_else(|| "nobody holds it now".into());
    format!(
        "refused by the team state: this runner's lock {} is gone (force-unlocked, or its lease \
         lapsed); {now}. This run stops without recording anything more; when no other runner \
         works on it, `cairn resume` continues it",
        me.id
    )
}

/// Sends each journal record to etcd in a compare-and-swap transaction
/// before it is written locally (see [`RecordSink`]).
pub struct EtcdJournal {
    session: Arc<Session>,
    run_id: String,
}

impl RecordSink for EtcdJournal {
    fn store(&mut self, seq: u64, line: &str, record: &Record) -> std::io::Result<()> {
        let s = &self.session;
        if matches!(
            record,
            Record::Done { .. } | Record::Fail { .. } | Record::End { .. }
        ) {
            s.push().map_err(refused)?;
        }
        let guard = s.lock.guard().map_err(|e| refused(e.to_string()))?;
        let url = &s.shared.url;
        let key = url.key(&format!("runs/{}/journal/{seq:08}", self.run_id));
        let mut ops = vec![Op::Put {
            key: key.clone(),
            value: line.as_bytes().to_vec(),
            lease: None,
        }];
        if let Record::Run(h) = record {
            ops.push(Op::Put {
                key: url.key(&format!("runs/{}/header", self.run_id)),
                value: serde_json::to_vec(h).map_err(std::io::Error::other)?,
                lease: None,
            });
        }
        let (ok, read) = s
            .shared
            .kv
            .txn(
                &[Compare::Absent(key.clone()), guard],
                &ops,
                &[Op::Get(key)],
            )
            .map_err(|e| refused(e.to_string()))?;
        if ok {
            return Ok(());
        }
        if !read.is_empty() {
            return Err(refused(format!(
                "refused by the team state: record {seq} of run {} is already there (another \
                 runner recorded it); this run stops without recording it twice",
                self.run_id
            )));
        }
        Err(refused(lock_lost(&s.shared, &s.lock.info())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_relative_paths_are_written() {
        assert_eq!(safe_rel("pki/ca.pem"), Some("pki/ca.pem"));
        assert_eq!(safe_rel("files/a/b"), Some("files/a/b"));
        for bad in ["", "/etc/passwd", "pki/../../x", "pki//x", "./pki"] {
            assert_eq!(safe_rel(bad), None, "{bad}");
        }
    }
}
