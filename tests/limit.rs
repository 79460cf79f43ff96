//! `--limit NAMES|GROUPS` through the real binary, offline: the inventory's
//! hosts point at a closed port on 127.0.0.1, so any connection cairn tried
//! would fail with a transport error instead of the limit's own error, and
//! the work a branch does is a local file named after its host.

mod common;

use common::text;
use std::path::{Path, PathBuf};
use std::process::Output;

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        let d = Dir {
            tmp: tempfile::tempdir().unwrap(),
        };
        d.write("hosts.toml", INVENTORY);
        d
    }
    fn path(&self) -> &Path {
        self.tmp.path()
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    fn runbook(&self, script: &str) {
        self.write("rb/runbook.toml", MANIFEST);
        self.write("rb/main.rhai", script);
    }
    fn cairn(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        common::Cairn::new(self.path())
            .args(args)
            .env("CAIRN_SSH_PERSIST", "0")
            .envs(env.iter().copied())
            .output()
    }
    /// `cairn run rb --inventory hosts.toml` plus `extra`.
    fn run(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        let mut args = vec!["run", "rb", "--inventory", "hosts.toml"];
        args.extend_from_slice(extra);
        self.cairn(&args, env)
    }
    /// Names of the files the runbook wrote under `.cairn/files/touched`.
    fn touched(&self) -> Vec<String> {
        let dir = self.path().join(".cairn/files/touched");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
    fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.path().join(".cairn/runs"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
    fn journal(&self, id: &str) -> cairn::journal::Journal {
        cairn::journal::Journal::read(
            &self
                .path()
                .join(".cairn/runs")
                .join(id)
                .join("journal.jsonl"),
        )
        .unwrap()
    }
}

/// Port 1 on 127.0.0.1: nothing listens, a connection is refused at once.
const INVENTORY: &str = r#"
[[hosts]]
name = "node-1"
address = "127.0.0.1"
port = 1
groups = ["etcd"]

[[hosts]]
name = "node-2"
address = "127.0.0.1"
port = 1
groups = ["etcd"]

[[hosts]]
name = "node-3"
address = "127.0.0.1"
port = 1
groups = ["etcd", "backup"]
"#;

const MANIFEST: &str = r#"
name = "limited"
version = "1.0.0"
description = "a local file per host"
"#;

/// Every host's branch writes `touched/NAME`; the whole inventory goes into
/// `all-hosts` (what `hosts()` gives under a limit).
const TOUCH: &str = r#"
let nodes = hosts();
let names = "";
for h in nodes { names += `${h.name} `; }
local_file(#{ path: "all-hosts", content: names });
on(nodes, |h| { local_file(#{ path: `touched/${h.name}`, content: h.name }); });
if env("LIMIT_TEST_FAIL") == "1" { fail("stopped by LIMIT_TEST_FAIL"); }
"#;

#[test]
fn only_hosts_inside_the_limit_run_their_branch_and_hosts_still_lists_all() {
    let d = Dir::new();
    d.runbook(TOUCH);
    let out = d.run(&["--limit", "backup,node-1"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(
            "Limited to --limit backup,node-1: 2 of 3 hosts (node-1, node-3); \
             other hosts are not touched."
        ),
        "{}",
        text(&out)
    );
    assert_eq!(d.touched(), ["node-1", "node-3"]);
    let all = std::fs::read_to_string(d.path().join(".cairn/files/all-hosts")).unwrap();
    assert_eq!(all, "node-1 node-2 node-3 ");
    // the journal: the limit in the header, steps only in the limited hosts' scopes
    let id = d.run_ids().pop().unwrap();
    let j = d.journal(&id);
    assert_eq!(j.header.limit.as_deref(), Some("backup,node-1"));
    assert_eq!(j.header.limit_hosts, ["node-1", "node-3"]);
    let scopes: std::collections::BTreeSet<String> = j
        .done_steps()
        .keys()
        .filter_map(|k| k.split_once('/').map(|(s, _)| s.to_string()))
        .filter(|s| s.starts_with("node-"))
        .collect();
    assert_eq!(scopes.into_iter().collect::<Vec<_>>(), ["node-1", "node-3"]);
    let show = d.cairn(&["runs", "show", &id], &[]);
    assert!(
        text(&show).contains("  limit backup,node-1 (node-1, node-3)\n"),
        "{}",
        text(&show)
    );
}

#[test]
fn in_limit_tells_hosts_inside_the_limit() {
    let d = Dir::new();
    d.runbook(
        r#"
let inside = "";
for h in hosts() { if in_limit(h) { inside += `${h.name} `; } }
local_file(#{ path: "touched/inside", content: inside });
"#,
    );
    let out = d.run(&["--limit", "node-3,node-2"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let inside = std::fs::read_to_string(d.path().join(".cairn/files/touched/inside")).unwrap();
    assert_eq!(inside, "node-2 node-3 ");
}

#[test]
fn a_group_limit_with_serial_batches_counts_only_its_hosts() {
    let d = Dir::new();
    d.runbook(
        r#"on(hosts(), #{ serial: "50%" }, |h| { local_file(#{ path: `touched/${h.name}`, content: h.name }); });"#,
    );
    d.write(
        "hosts.toml",
        &format!("{INVENTORY}\n[[hosts]]\nname = \"lb\"\naddress = \"127.0.0.1\"\nport = 1\n"),
    );
    let out = d.run(&["--limit", "etcd"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // 50% of the 3 hosts inside the limit: batches of 2 (of 4 hosts: 2 as well,
    // but then lb would be in the second batch)
    assert!(
        text(&out).contains("on: batch 2 of 2 (node-3)"),
        "{}",
        text(&out)
    );
    assert_eq!(d.touched(), ["node-1", "node-2", "node-3"]);
}

#[test]
fn a_fact_of_a_host_outside_the_limit_is_an_error_naming_host_and_limit() {
    let d = Dir::new();
    d.runbook(
        r#"
let nodes = hosts();
on(nodes, |h| { local_file(#{ path: `touched/${h.name}`, content: h.name }); });
let v = fact(nodes[1], "cat /etc/hostname");
local_file(#{ path: "after", content: v.stdout });
"#,
    );
    for cmd in ["run", "plan"] {
        let out = d.cairn(
            &[cmd, "rb", "--inventory", "hosts.toml", "--limit", "node-1"],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains(
                "`fact` on node-2 refused: node-2 is outside --limit node-1 (it selects node-1): \
                 a limited run neither connects to nor reads from other hosts; add node-2 to \
                 --limit if the runbook needs it"
            ),
            "{cmd}: {}",
            text(&out)
        );
    }
    assert!(!d.path().join(".cairn/files/after").exists());
    assert_eq!(d.touched(), ["node-1"]);
}

#[test]
fn using_the_result_of_a_skipped_branch_is_an_error_naming_host_and_limit() {
    for (script, what) in [
        (r#"if r[1] == "node-2" { print("gu" + "essed"); }"#, "=="),
        (r#"if "node-2" != r[1] { print("gu" + "essed"); }"#, "!="),
        (r#"if r[1] == () { print("gu" + "essed"); }"#, "== ()"),
    ] {
        let d = Dir::new();
        d.runbook(&format!(
            "let r = on(hosts(), |h| h.name);\nprint(`first: ${{r[0]}}`);\n{script}\n"
        ));
        let out = d.cairn(
            &[
                "plan",
                "rb",
                "--inventory",
                "hosts.toml",
                "--limit",
                "node-1",
            ],
            &[],
        );
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
        assert!(
            text(&out).contains(
                "node-2 is outside --limit node-1: on(...) did not run its branch, so it has \
                 no value here"
            ),
            "{what}: {}",
            text(&out)
        );
        assert!(!text(&out).contains("guessed"), "{what}: {}", text(&out));
    }
    // printed, it says what it is; a property of it is Rhai's own error,
    // naming what the value is
    let d = Dir::new();
    d.runbook("let r = on(hosts(), |h| h.name);\nprint(`second: ${r[1]}`);\n");
    let out = d.cairn(
        &[
            "plan",
            "rb",
            "--inventory",
            "hosts.toml",
            "--limit",
            "node-1",
        ],
        &[],
    );
    assert!(
        text(&out).contains("second: (node-2 is outside --limit node-1: its branch did not run)"),
        "{}",
        text(&out)
    );
    let d = Dir::new();
    d.runbook("let r = on(hosts(), |h| #{ out: h.name });\nprint(r[2].out);\n");
    let out = d.cairn(
        &[
            "plan",
            "rb",
            "--inventory",
            "hosts.toml",
            "--limit",
            "node-1",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("a host outside --limit (its branch did not run)"),
        "{}",
        text(&out)
    );
}

#[test]
fn unknown_names_and_empty_limits_are_refused_before_anything_runs() {
    let d = Dir::new();
    d.runbook(TOUCH);
    let out = d.run(&["--limit", "node-1,node-9,web"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --limit names hosts or groups not in the inventory: node-9, web; its hosts: \
         node-1, node-2, node-3; its groups: backup, etcd (inventory hosts.toml)\n"
    );
    let out = d.cairn(
        &["plan", "rb", "--inventory", "hosts.toml", "--limit", " , "],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: --limit ` , ` names no host or group (give host names and group names, \
         comma-separated) (inventory hosts.toml)\n"
    );
    let out = d.cairn(&["run", "rb", "--limit", "node-1"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("its hosts: none; its groups: none (no --inventory or --lab given)"),
        "{}",
        text(&out)
    );
    assert!(d.run_ids().is_empty(), "a refused limit started a run");
    assert!(d.touched().is_empty());
}

#[test]
fn plan_says_the_limit_is_in_effect_and_plans_only_its_hosts() {
    let d = Dir::new();
    d.runbook(TOUCH);
    let out = d.cairn(
        &[
            "plan",
            "rb",
            "--inventory",
            "hosts.toml",
            "--limit",
            "node-2",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(
            "Plan for limited 1.0.0\n\nLimited to --limit node-2: 1 of 3 hosts (node-2); \
             other hosts are not touched.\n"
        ),
        "{t}"
    );
    assert!(t.contains("touched/node-2"), "{t}");
    assert!(
        !t.contains("touched/node-1") && !t.contains("touched/node-3"),
        "{t}"
    );
    // a saved plan keeps its limit: applying it with another one is refused
    let saved = d.cairn(
        &[
            "plan",
            "rb",
            "--inventory",
            "hosts.toml",
            "--limit",
            "node-2",
            "-o",
            "p.json",
        ],
        &[],
    );
    assert_eq!(saved.status.code(), Some(2), "{}", text(&saved));
    let out = d.run(&["--plan", "p.json"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("it was made with --limit node-2 and this run has no --limit"),
        "{}",
        text(&out)
    );
    assert!(d.touched().is_empty());
}

#[test]
fn resume_with_another_limit_or_none_is_refused_and_the_same_one_finishes() {
    let d = Dir::new();
    d.runbook(TOUCH);
    let fail = [("LIMIT_TEST_FAIL", "1")];
    let out = d.run(&["--limit", "node-1,node-3"], &fail);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let id = d.run_ids().pop().unwrap();
    let records = d.journal(&id).records.len();
    for (args, now) in [
        (vec![], "no --limit"),
        (vec!["--limit", "node-2"], "--limit node-2"),
        (vec!["--limit", "etcd"], "--limit etcd"),
    ] {
        let mut full = vec!["resume", id.as_str()];
        full.extend(args.iter().copied());
        let out = d.cairn(&full, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let again = format!("`cairn resume {id} --limit node-1,node-3`");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "error: cannot resume run {id}: it started with --limit node-1,node-3 and this \
                 resume has {now}; a resume touches the hosts the run started with: {again} \
                 (for other hosts start a new run)\n"
            )
        );
        assert_eq!(
            d.journal(&id).records.len(),
            records,
            "a refused resume wrote to the journal"
        );
    }
    assert_eq!(d.touched(), ["node-1", "node-3"]);
    // the same limit, names in another order: resumes and finishes
    let out = d.cairn(&["resume", &id, "--limit", "node-3,node-1"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(d.touched(), ["node-1", "node-3"]);

    // a run without a limit cannot be resumed with one
    let before = d.run_ids();
    let out = d.run(&[], &fail);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let id = d
        .run_ids()
        .into_iter()
        .find(|i| !before.contains(i))
        .unwrap();
    let out = d.cairn(&["resume", &id, "--limit", "node-2"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "cannot resume run {id}: it started with no --limit and this resume has --limit \
             node-2; a resume touches the hosts the run started with: `cairn resume {id}` \
             without --limit"
        )),
        "{}",
        text(&out)
    );
    assert_eq!(d.touched(), ["node-1", "node-2", "node-3"]);
}

#[test]
fn resume_is_refused_when_the_inventory_changed_what_the_limit_selects() {
    let d = Dir::new();
    d.runbook(TOUCH);
    let out = d.run(&["--limit", "backup"], &[("LIMIT_TEST_FAIL", "1")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let id = d.run_ids().pop().unwrap();
    d.write(
        "hosts.toml",
        &INVENTORY.replace(
            "groups = [\"etcd\"]\n\n[[hosts]]\nname = \"node-3\"",
            "groups = [\"etcd\", \"backup\"]\n\n[[hosts]]\nname = \"node-3\"",
        ),
    );
    let out = d.cairn(&["resume", &id, "--limit", "backup"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "--limit backup selected node-3 when the run started and selects node-2, node-3 now"
        ),
        "{}",
        text(&out)
    );
    assert_eq!(d.touched(), ["node-3"]);
}

#[test]
fn a_shipped_bootstrap_runbook_stops_at_its_claim_of_every_member() {
    let d = Dir::new();
    let out = d.cairn(
        &[
            "plan",
            "etcd-debian-binary",
            "--inventory",
            "hosts.toml",
            "--limit",
            "node-1",
            "--offline",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "error: `claim_hosts` on node-1,node-2,node-3 refused: node-2 is outside --limit \
             node-1 (it selects node-1)"
        ),
        "{}",
        text(&out)
    );
}
