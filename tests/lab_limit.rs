//! `--limit` on a 3-node lab (real sshd and systemd): a limited run writes
//! its file only on the limited host and opens no ssh connection to the
//! others (each node's sshd log counts the logins); the journal's steps name
//! only the limited host; a fact of a host outside the limit is an error
//! naming it, with no login there; a resume with another limit, or none, is
//! refused before anything runs; the same limit finishes the run; unknown
//! names are refused.

mod common;

use common::{lab, text};
use std::path::Path;
use std::process::Output;

const MARKER: &str = "/root/cairn-limit-marker";

/// `cairn ARGS` in workspace `ws` (the harness's scrubbed environment); ssh
/// masters are not shared with later runs (so no connection outlives a run).
fn cairn(ws: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    common::Cairn::new(ws)
        .args(args)
        .env("CAIRN_SSH_PERSIST", "0")
        .envs(env.iter().copied())
        .output()
}

/// Successful ssh logins on `node` so far (this one included: sshd logs it
/// before the command runs).
fn logins(l: &lab::LabHandle, node: &str) -> usize {
    l.ssh_ok(
        node,
        "journalctl --no-pager -o cat | grep -c 'Accepted publickey' || true",
    )
    .trim()
    .parse()
    .unwrap()
}

/// Which nodes have the marker file, and what it says.
fn markers(l: &lab::LabHandle) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for n in ["node-1", "node-2", "node-3"] {
        let out = l.ssh(n, &format!("cat {MARKER}"));
        if out.status.success() {
            found.push((n.to_string(), String::from_utf8_lossy(&out.stdout).into()));
        }
    }
    found
}

const SCRIPT: &str = r#"
let nodes = hosts();
on(nodes, |h| {
    file(h, #{ path: "/root/cairn-limit-marker", content: `${h.name} of ${nodes.len()}`, mode: "0644" });
});
if env("LIMIT_TEST_FAIL") == "1" { fail("stopped by LIMIT_TEST_FAIL"); }
if env("LIMIT_TEST_PEEK") == "1" { let name = fact(nodes[2], "hostname"); }
"#;

#[test]
fn a_limited_run_touches_only_its_hosts_and_resumes_only_with_its_limit() {
    if lab::skip() {
        return;
    }
    let l = lab::lab();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::create_dir_all(ws.join("rb")).unwrap();
    std::fs::write(
        ws.join("rb/runbook.toml"),
        "name = \"lab-limit\"\nversion = \"1.0.0\"\ndescription = \"a marker file per host\"\n",
    )
    .unwrap();
    std::fs::write(ws.join("rb/main.rhai"), SCRIPT).unwrap();
    for n in ["node-1", "node-2", "node-3"] {
        l.ssh_ok(n, &format!("rm -f {MARKER}"));
    }
    let before = [logins(l, "node-1"), logins(l, "node-3")];

    // unknown names: refused before anything runs, listing what there is
    let out = cairn(
        ws,
        &["run", "rb", "--lab", &l.name, "--limit", "node-2,node-4"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "error: --limit names a host or group not in the inventory: node-4; its hosts: \
             node-1, node-2, node-3"
        ),
        "{}",
        text(&out)
    );

    // a run limited to node-2, stopped after its on(...)
    let run = cairn(
        ws,
        &["run", "rb", "--lab", &l.name, "--limit", "node-2"],
        &[("LIMIT_TEST_FAIL", "1")],
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run).contains("stopped by LIMIT_TEST_FAIL"),
        "{}",
        text(&run)
    );
    // hosts() still listed all 3; only node-2 got the file
    assert_eq!(
        markers(l),
        [("node-2".to_string(), "node-2 of 3".to_string())]
    );
    // no login on node-1 or node-3 but the counting ones (2 each)
    assert_eq!(
        [logins(l, "node-1"), logins(l, "node-3")],
        [before[0] + 2, before[1] + 2],
        "cairn logged in to a host outside the limit"
    );
    let id = std::fs::read_dir(ws.join(".cairn/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let journal =
        cairn::journal::Journal::read(&ws.join(".cairn/runs").join(&id).join("journal.jsonl"))
            .unwrap();
    assert_eq!(journal.header.limit.as_deref(), Some("node-2"));
    let targets: std::collections::BTreeSet<String> = journal
        .records
        .iter()
        .filter_map(|r| match r {
            cairn::journal::Record::Done { target, .. } => Some(target.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(targets.into_iter().collect::<Vec<_>>(), ["node-2"]);

    // resume with another limit, or none: refused, nothing written
    let records = journal.records.len();
    for extra in [
        vec![],
        vec!["--limit", "node-1"],
        vec!["--limit", "node-1,node-2"],
    ] {
        let mut args = vec!["resume", id.as_str()];
        args.extend(extra.iter().copied());
        let out = cairn(ws, &args, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains(&format!(
                "error: cannot resume run {id}: it started with --limit node-2 and this resume has"
            )),
            "{}",
            text(&out)
        );
        let now =
            cairn::journal::Journal::read(&ws.join(".cairn/runs").join(&id).join("journal.jsonl"))
                .unwrap();
        assert_eq!(now.records.len(), records, "a refused resume wrote");
    }
    assert_eq!(
        markers(l),
        [("node-2".to_string(), "node-2 of 3".to_string())]
    );

    // the same limit finishes it
    let out = cairn(ws, &["resume", &id, "--limit", "node-2"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let show = cairn(ws, &["runs", "show", &id], &[]);
    assert!(
        text(&show).contains("  limit node-2 (node-2)\n"),
        "{}",
        text(&show)
    );

    // a fact of a host outside the limit: an error naming it, no login there
    let before3 = logins(l, "node-3");
    let out = cairn(
        ws,
        &["run", "rb", "--lab", &l.name, "--limit", "node-2"],
        &[("LIMIT_TEST_PEEK", "1")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("`fact` on node-3 refused: node-3 is outside --limit node-2"),
        "{}",
        text(&out)
    );
    assert_eq!(logins(l, "node-3"), before3 + 1);
    assert_eq!(
        markers(l),
        [("node-2".to_string(), "node-2 of 3".to_string())]
    );
}
