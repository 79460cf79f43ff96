//! Saved plans are contracts, on a lab with etcd-binary-yaml:
//! - a plan saved before an input changed (an inventory field that changes a
//!   member's SANs) is refused by `cairn run --plan` before any host changes;
//! - a plan saved after it is applied, and every action the run performs is
//!   one the approved plan shows as a change, run or possible change (a
//!   re-issued certificate's upload and the restart that follows included);
//! - an approved plan that does not contain an action the run comes to (here:
//!   a possible change edited out of the file) stops the run right before
//!   that action, naming it, with nothing of it applied on that host.

mod common;

use common::{cairn, lab, text};

use cairn::journal::{Journal, Record};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

const RUNBOOK: &str = "etcd-binary-yaml";

fn run_ids(ws: &Path) -> Vec<String> {
    match std::fs::read_dir(ws.join(".cairn/runs")) {
        Err(_) => vec![],
        Ok(rd) => {
            let mut ids: Vec<String> = rd
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            ids.sort();
            ids
        }
    }
}

fn journal_of(ws: &Path, out: &Output) -> Journal {
    let t = text(out);
    let id = t
        .lines()
        .find_map(|l| l.strip_prefix("Run ")?.split(':').next())
        .unwrap_or_else(|| panic!("no run id in:\n{t}"));
    Journal::read(&ws.join(".cairn/runs").join(id).join("journal.jsonl")).unwrap()
}

/// A file's sha256 and status on a node.
fn state(l: &lab::LabHandle, node: &str, paths: &[&str]) -> String {
    l.ssh_ok(
        node,
        &format!(
            "sha256sum {p}; stat -c '%n %a %U %G %Y' {p}; systemctl show -p MainPID --value etcd",
            p = paths.join(" ")
        ),
    )
}

/// The lab's inventory with node-1's fqdn changed (its certificate's SANs).
fn renamed_inventory(l: &lab::LabHandle, ws: &Path, fqdn: &str) -> PathBuf {
    let inv = std::fs::read_to_string(&l.inventory).unwrap();
    let changed: String = inv
        .lines()
        .map(|line| {
            if line.starts_with("fqdn = \"node-1.") {
                format!("fqdn = \"{fqdn}\"\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    assert_ne!(changed, inv);
    let path = ws.join(format!("{fqdn}.toml"));
    std::fs::write(&path, changed).unwrap();
    path
}

/// Every change the run journaled is a change in the approved plan's step
/// of the same key and target.
fn unapproved(plan: &Value, j: &Journal) -> Vec<String> {
    let mut out = Vec::new();
    for r in &j.records {
        let Record::Done {
            key,
            target,
            actions,
            ..
        } = r
        else {
            continue;
        };
        for a in actions.iter().filter(|a| a.kind.is_change()) {
            let ok = plan["steps"].as_array().unwrap().iter().any(|s| {
                s["key"] == key.as_str()
                    && s["target"] == target.as_str()
                    && s["actions"].as_array().unwrap().iter().any(|p| {
                        matches!(
                            p["kind"].as_str(),
                            Some("create" | "change" | "delete" | "run")
                        )
                    })
            });
            if !ok {
                out.push(format!("{key} on {target}: {a}"));
            }
        }
    }
    out
}

#[test]
fn saved_plans_are_applied_exactly_or_refused() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("saved-plan"), 3);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let lab_args = ["--lab", l.name.as_str()];
    let first = cairn(w, &[&["run", RUNBOOK][..], &lab_args].concat());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let files = [
        "/etc/etcd/pki/node-1.crt",
        "/etc/etcd/pki/node-1.key",
        "/etc/etcd/etcd.conf",
    ];

    // 1. A plan made before an input changed is refused before any host changes.
    let stale = w.join("stale.json");
    let p = cairn(
        w,
        &[
            &["plan", RUNBOOK, "-o", stale.to_str().unwrap()][..],
            &lab_args,
        ]
        .concat(),
    );
    assert_eq!(p.status.code(), Some(0), "{}", text(&p));
    let inv = renamed_inventory(&l, w, "etcd-a.lab");
    let inv_args = ["--inventory", inv.to_str().unwrap()];
    let before = state(&l, "node-1", &files);
    let runs_before = run_ids(w);
    let refused = cairn(
        w,
        &[
            &["run", RUNBOOK, "--plan", stale.to_str().unwrap()][..],
            &lab_args,
            &inv_args,
        ]
        .concat(),
    );
    let t = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{t}");
    assert!(t.contains("refusing to apply the saved plan"), "{t}");
    assert!(
        t.contains("`gen_cert` on local"),
        "the drifted step must be named:\n{t}"
    );
    assert_eq!(state(&l, "node-1", &files), before, "a host changed");
    assert_eq!(run_ids(w), runs_before, "a run was started");

    // 2. The plan made now is applied; the run does only what it approved.
    let fresh = w.join("fresh.json");
    let p = cairn(
        w,
        &[
            &["plan", RUNBOOK, "-o", fresh.to_str().unwrap()][..],
            &lab_args,
            &inv_args,
        ]
        .concat(),
    );
    assert_eq!(p.status.code(), Some(2), "{}", text(&p));
    let approved: Value = serde_json::from_str(&std::fs::read_to_string(&fresh).unwrap()).unwrap();
    let applied = cairn(
        w,
        &[
            &["run", RUNBOOK, "--plan", fresh.to_str().unwrap()][..],
            &lab_args,
            &inv_args,
        ]
        .concat(),
    );
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    let j = journal_of(w, &applied);
    let not_approved = unapproved(&approved, &j);
    assert!(
        not_approved.is_empty(),
        "the run made changes the approved plan does not show:\n{not_approved:#?}\nplan:\n{}",
        text(&p)
    );

    // 3. An approved plan with a possible change edited out: the run stops
    //    right before that step, names it, and leaves node-1 as it was.
    let inv2 = renamed_inventory(&l, w, "etcd-b.lab");
    let inv2_args = ["--inventory", inv2.to_str().unwrap()];
    let edited = w.join("edited.json");
    let p = cairn(
        w,
        &[
            &["plan", RUNBOOK, "-o", edited.to_str().unwrap()][..],
            &lab_args,
            &inv2_args,
        ]
        .concat(),
    );
    assert_eq!(p.status.code(), Some(2), "{}", text(&p));
    let mut plan: Value = serde_json::from_str(&std::fs::read_to_string(&edited).unwrap()).unwrap();
    let step = plan["steps"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| {
            s["kind"] == "upload"
                && s["target"] == "node-1"
                && s["intent"] == true
                && s["actions"][0]["what"]
                    .as_str()
                    .is_some_and(|w| w.contains("/etc/etcd/pki/node-1.crt"))
        })
        .expect("the upload of node-1's re-issued certificate is a possible change");
    let key = step["key"].as_str().unwrap().to_string();
    step["actions"][0]["kind"] = "noop".into();
    std::fs::write(&edited, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
    let before = state(&l, "node-1", &files);
    let stopped = cairn(
        w,
        &[
            &["run", RUNBOOK, "--plan", edited.to_str().unwrap()][..],
            &lab_args,
            &inv2_args,
        ]
        .concat(),
    );
    let t = text(&stopped);
    assert_eq!(stopped.status.code(), Some(1), "{t}");
    assert!(
        t.contains(&format!(
            "`upload` on node-1 ({key}) would ~ change file /etc/etcd/pki/node-1.crt"
        )),
        "{t}"
    );
    assert!(
        t.contains("which the approved plan does not contain"),
        "{t}"
    );
    assert_eq!(
        state(&l, "node-1", &files),
        before,
        "node-1 changed after the unapproved action was refused"
    );
}
