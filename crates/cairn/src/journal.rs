//! The append-only run journal: one JSON record per line, each line prefixed by
//! a checksum so a truncated or corrupted journal is refused instead of trusted.
//!
//! A step that changed something counts as done only once its `done` record is
//! written and synced; a no-op's record reaches the disk with the next synced
//! record (a lost one only means the step is looked at again on resume).
//!
//! A record that could not be written whole (a full disk, a crash mid-write)
//! is a *torn tail*: the last line, without its newline. Nothing after it was
//! ever written, so it is cut off — by the writer as soon as the write fails,
//! else when the journal is next opened for writing — and the run continues
//! from the last whole record (that step is simply done again). A damaged line
//! anywhere else, or a whole last line whose checksum does not match, is
//! corruption: refused, never trusted.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::action::Action;

/// How a run ended (absent: it did not end — killed or still running).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Interrupted,
}

/// The header of a run: what ran, with which inputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    pub id: String,
    /// Runbook name and version from its manifest.
    pub runbook: String,
    pub version: String,
    /// Where it came from: `builtin:NAME` or a folder path.
    pub source: String,
    /// Digest of every file of the runbook (and the stdlib it may import).
    pub content_hash: String,
    /// Parameter values; secret ones are recorded as `null` and must be given again.
    pub params: BTreeMap<String, serde_json::Value>,
    /// The inventory or lab the run used, if any.
    #[serde(default)]
    pub inventory: Option<PathBuf>,
    #[serde(default)]
    pub lab: Option<String>,
    /// `--limit` as given (canonical), if the run had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// The hosts the limit selected when the run started.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limit_hosts: Vec<String>,
    pub started_at: String,
    pub cairn_version: String,
}

/// A runbook's version and content digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunbookVersion {
    pub version: String,
    pub content_hash: String,
}

/// One journal record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Record {
    Run(RunHeader),
    /// A step began (apply only).
    Start {
        key: String,
        kind: String,
        target: String,
        args: String,
    },
    /// A step finished; its output is replayed on resume.
    Done {
        key: String,
        kind: String,
        target: String,
        args: String,
        output: serde_json::Value,
        actions: Vec<Action>,
        ms: u64,
    },
    /// A step failed.
    Fail {
        key: String,
        kind: String,
        target: String,
        error: String,
    },
    /// A resume continued this run.
    Resume {
        at: String,
        forced: bool,
        /// The runbook version and content digest the resume ran with, when
        /// `--force` resumed with a changed runbook (the header keeps the
        /// original's); parameter values never change on resume.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runbook: Option<RunbookVersion>,
    },
    /// The run ended.
    End {
        status: RunStatus,
        at: String,
        /// Why it did not succeed, as shown to the user (redacted).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Why a journal could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal {path} is corrupted at line {line}: {problem}; refusing to resume from it (nothing was changed; the file is left as it is for inspection)")]
    Corrupt {
        path: PathBuf,
        line: usize,
        problem: String,
    },
    #[error("journal {path} is empty or has no run header")]
    NoHeader { path: PathBuf },
}

fn checksum(json: &str) -> String {
    hex::encode(&Sha256::digest(json.as_bytes())[..4])
}

/// Somewhere else every record must reach before it counts as written (the
/// team state in etcd, see [`crate::state`]). A record the sink refuses is not
/// written locally either, and the append fails with the sink's error.
pub trait RecordSink: Send {
    /// Store record number `seq` (0 is the header) whose journal line is `line`.
    fn store(&mut self, seq: u64, line: &str, record: &Record) -> std::io::Result<()>;
}

/// Appends records to a journal file.
pub struct JournalWriter {
    file: File,
    path: PathBuf,
    cut_off: u64,
    /// Number of the next record (whole records so far).
    seq: u64,
    sink: Option<Box<dyn RecordSink>>,
}

/// The length of `bytes` up to and including its last newline: the whole records.
fn whole_len(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i as u64 + 1)
        .unwrap_or(0)
}

impl JournalWriter {
    /// Create a journal or open one to append to. A torn tail (see the module
    /// documentation) is cut off first; [`JournalWriter::cut_off`] says how
    /// many bytes that removed.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let mut w = JournalWriter {
            file,
            path: path.to_path_buf(),
            cut_off: 0,
            seq: 0,
            sink: None,
        };
        let len = w.file.metadata()?.len();
        let bytes = std::fs::read(path)?;
        let whole = whole_len(&bytes);
        w.seq = bytes[..whole as usize]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        if whole < len {
            w.file.set_len(whole)?;
            w.file.sync_data()?;
            w.cut_off = len - whole;
        }
        Ok(w)
    }

    /// Send every record to `sink` before writing it here.
    pub fn with_sink(mut self, sink: Box<dyn RecordSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Bytes of a torn last record that `open` cut off (0: none).
    pub fn cut_off(&self) -> u64 {
        self.cut_off
    }

    /// Append a record in one write; `durable` syncs it to disk before returning.
    /// A record that cannot be written whole (a full disk) is cut off again
    /// before the error is returned, so the journal still ends with a whole record.
    pub fn append(&mut self, record: &Record, durable: bool) -> std::io::Result<()> {
        let json = serde_json::to_string(record).map_err(std::io::Error::other)?;
        let line = format!("{} {json}\n", checksum(&json));
        if let Some(sink) = &mut self.sink {
            sink.store(self.seq, &line, record)?;
        }
        let before = self.file.metadata()?.len();
        if let Err(e) = self.file.write_all(line.as_bytes()) {
            // Shrinking a file needs no space; if even that fails, the next
            // `open` cuts the torn record off.
            let _ = self.file.set_len(before);
            return Err(e);
        }
        self.seq += 1;
        if durable {
            self.file.sync_data()?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A journal read back.
#[derive(Clone, Debug)]
pub struct Journal {
    pub header: RunHeader,
    /// The whole records.
    pub records: Vec<Record>,
    /// A torn last record, not counted: its line number and length in bytes.
    /// It is cut off when the journal is next opened for writing.
    pub torn: Option<(usize, usize)>,
}

impl Journal {
    /// Read and verify every line.
    pub fn read(path: &Path) -> Result<Journal, JournalError> {
        let text = std::fs::read_to_string(path).map_err(|source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let corrupt = |line: usize, problem: String| JournalError::Corrupt {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let whole = whole_len(text.as_bytes()) as usize;
        let torn =
            (whole < text.len()).then(|| (text[..whole].lines().count() + 1, text.len() - whole));
        let mut records = Vec::new();
        for (i, line) in text[..whole].lines().enumerate() {
            let (sum, json) = line
                .split_once(' ')
                .ok_or_else(|| corrupt(i + 1, "no checksum".into()))?;
            if checksum(json) != sum {
                return Err(corrupt(i + 1, "checksum mismatch".into()));
            }
            let record: Record =
                serde_json::from_str(json).map_err(|e| corrupt(i + 1, e.to_string()))?;
            records.push(record);
        }
        let header = match records.first() {
            Some(Record::Run(h)) => h.clone(),
            _ => {
                return Err(JournalError::NoHeader {
                    path: path.to_path_buf(),
                })
            }
        };
        Ok(Journal {
            header,
            records,
            torn,
        })
    }

    /// How the run ended, if it did (the last `end` after the last resume).
    /// A run whose last record is torn failed: it could not write its journal.
    pub fn status(&self) -> Option<RunStatus> {
        let mut status = None;
        for r in &self.records {
            match r {
                Record::End { status: s, .. } => status = Some(*s),
                Record::Resume { .. } => status = None,
                _ => {}
            }
        }
        match status {
            None if self.torn.is_some() => Some(RunStatus::Failed),
            s => s,
        }
    }

    /// The runbook version and content digest the run last ran with: the
    /// header's, or those of the last forced resume with a changed runbook.
    pub fn runbook(&self) -> RunbookVersion {
        let mut v = RunbookVersion {
            version: self.header.version.clone(),
            content_hash: self.header.content_hash.clone(),
        };
        for r in &self.records {
            if let Record::Resume {
                runbook: Some(now), ..
            } = r
            {
                v = now.clone();
            }
        }
        v
    }

    /// Done steps by key (the last record wins).
    pub fn done_steps(&self) -> BTreeMap<String, DoneStep> {
        let mut done = BTreeMap::new();
        for r in &self.records {
            if let Record::Done {
                key,
                args,
                output,
                kind,
                target,
                ..
            } = r
            {
                done.insert(
                    key.clone(),
                    DoneStep {
                        args: args.clone(),
                        output: output.clone(),
                        kind: kind.clone(),
                        target: target.clone(),
                    },
                );
            }
        }
        done
    }

    /// How many times each key was recorded done (a resume runs checks and
    /// reads again, see [`Journal::changed_counts`]).
    pub fn done_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.records {
            if let Record::Done { key, .. } = r {
                *counts.entry(key.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// How many times each key was recorded done with a change (a resume
    /// must never redo one).
    pub fn changed_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in &self.records {
            if let Record::Done { key, actions, .. } = r {
                if actions.iter().any(|a| a.kind.is_change()) {
                    *counts.entry(key.clone()).or_insert(0) += 1;
                }
            }
        }
        counts
    }
}

/// A step recorded as done.
#[derive(Clone, Debug)]
pub struct DoneStep {
    pub args: String,
    pub output: serde_json::Value,
    pub kind: String,
    pub target: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> RunHeader {
        RunHeader {
            id: "r1".into(),
            runbook: "x".into(),
            version: "1.0.0".into(),
            source: "builtin:x".into(),
            content_hash: "abc".into(),
            params: BTreeMap::new(),
            inventory: None,
            lab: None,
            limit: None,
            limit_hosts: Vec::new(),
            started_at: "now".into(),
            cairn_version: "0".into(),
        }
    }

    #[test]
    fn round_trip_and_corruption_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut w = JournalWriter::open(&path).unwrap();
        w.append(&Record::Run(header()), true).unwrap();
        w.append(
            &Record::Done {
                key: "main.rhai:1:1#0".into(),
                kind: "file".into(),
                target: "n1".into(),
                args: "h".into(),
                output: serde_json::json!({"changed": true}),
                actions: vec![],
                ms: 3,
            },
            true,
        )
        .unwrap();
        let j = Journal::read(&path).unwrap();
        assert_eq!(j.header, header());
        assert_eq!(j.done_steps().len(), 1);
        assert_eq!(j.status(), None);

        // flip one byte inside the second record
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 5] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let err = Journal::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("corrupted at line 2: checksum mismatch"),
            "{err}"
        );
        // (a whole last line with a bad checksum: corruption, not a torn write)
    }

    #[test]
    fn a_torn_last_record_is_not_counted_and_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let mut w = JournalWriter::open(&path).unwrap();
        w.append(&Record::Run(header()), true).unwrap();
        drop(w);
        let whole = std::fs::read(&path).unwrap();
        // half of a second record, as a full disk leaves it
        let mut torn = whole.clone();
        torn.extend_from_slice(b"1a2b3c4d {\"t\":\"done\",\"key\":\"m");
        std::fs::write(&path, &torn).unwrap();
        let j = Journal::read(&path).unwrap();
        assert_eq!(j.records.len(), 1);
        assert_eq!(j.torn, Some((2, torn.len() - whole.len())));
        assert_eq!(j.status(), Some(RunStatus::Failed));
        // reading changed nothing; opening to write cuts the torn record off
        assert_eq!(std::fs::read(&path).unwrap(), torn);
        let w = JournalWriter::open(&path).unwrap();
        assert_eq!(w.cut_off(), (torn.len() - whole.len()) as u64);
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        assert_eq!(Journal::read(&path).unwrap().torn, None);
    }
}
