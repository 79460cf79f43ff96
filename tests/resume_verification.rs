//! Resume never replays verification: a run of etcd-binary-yaml killed after
//! its last check passed (before it could record the end), then etcd stopped
//! on node-2, then `cairn resume`: the checks run again against the hosts and
//! the resume fails naming node-2, while every step that changed something
//! is replayed from the journal, not redone.

mod common;

use common::{cairn, cairn_kill, lab, text};

use cairn::journal::{Journal, Record};
use std::path::{Path, PathBuf};
use std::process::Output;

const RUNBOOK: &str = "etcd-binary-yaml";

/// The journal of the run whose output is `out` (`Run ID: ...`).
fn journal_path(ws: &Path, out: &Output) -> PathBuf {
    let t = text(out);
    let id = t
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split(':').next())
        .unwrap_or_else(|| panic!("no run id in:\n{t}"));
    ws.join(".cairn/runs").join(id).join("journal.jsonl")
}

fn done_kinds(j: &Journal) -> Vec<String> {
    j.records
        .iter()
        .filter_map(|r| match r {
            Record::Done { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn resume_checks_the_hosts_again() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("resume-verify"), 3);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let run = ["run", RUNBOOK, "--lab", l.name.as_str()];

    let first = cairn(w, &run);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // A rerun's steps (the first run has more: it restarts, reloads units).
    let rerun = cairn(w, &run);
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    let steps = done_kinds(&Journal::read(&journal_path(w, &rerun)).unwrap());
    assert!(steps.iter().any(|k| k == "etcd_health"), "{steps:?}");

    // A rerun killed right after its last step is journaled done: every
    // check passed, the end was never recorded.
    let last = format!("done:{}", steps.len());
    let killed = cairn_kill(w, &run, Some(&last));
    assert_eq!(killed.status.code(), None, "not killed:\n{}", text(&killed));
    let jpath = journal_path(w, &killed);
    let before = Journal::read(&jpath).unwrap();
    assert_eq!(before.status(), None, "a killed run has no end record");
    assert_eq!(done_kinds(&before).len(), steps.len());

    l.ssh_ok("node-2", "systemctl stop etcd");
    let resumed = cairn(w, &["resume"]);
    let r = text(&resumed);
    assert_eq!(resumed.status.code(), Some(1), "resume must fail:\n{r}");
    let failed: Vec<String> = r
        .lines()
        .filter(|l| l.contains("failed"))
        .map(String::from)
        .collect();
    assert!(
        failed.iter().any(|l| l.contains("node-2")),
        "the failure must name node-2:\n{r}"
    );
    assert!(!r.contains("members, verified"), "{r}");

    // The checks ran again (journaled done again or failed); nothing that
    // changed something was redone.
    let after = Journal::read(&jpath).unwrap();
    let health_runs = after
        .records
        .iter()
        .filter(|r| matches!(r, Record::Done { kind, .. } | Record::Fail { kind, .. } if kind == "etcd_health"))
        .count();
    assert_eq!(
        health_runs, 2,
        "etcd_health must be executed again on resume"
    );
    let mut changed = std::collections::BTreeMap::new();
    for r in &after.records {
        if let Record::Done { key, actions, .. } = r {
            if actions.iter().any(|a| a.kind.is_change()) {
                *changed.entry(key.clone()).or_insert(0) += 1;
            }
        }
    }
    for (key, n) in changed {
        assert_eq!(n, 1, "step {key} changed something {n} times");
    }
    l.ssh_ok("node-2", "systemctl start etcd");
}
