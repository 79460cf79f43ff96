//! The Hetzner emulation end to end on a lab: a runbook creates tutorial
//! 000's network, ssh key and three labelled servers (real lab nodes), lists
//! them by both labels and runs a command on each over ssh; a rerun creates
//! nothing; the cleanup runbook leaves none.

mod common;

use common::{lab, text, Cairn};

use std::path::{Path, PathBuf};
use std::process::Output;

fn runbook(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runbooks")
        .join(name)
}

fn cairn(ws: &Path, lab: &str, args: &[&str]) -> Output {
    Cairn::new(ws).args(args).args(["--lab", lab]).output()
}

#[test]
fn hetzner_runbook_creates_servers_reruns_clean_and_cleans_up() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("cloud"), 0);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let rb = runbook("cloud-hetzner");
    let rb = rb.to_str().unwrap();

    let run = cairn(w, &l.name, &["run", rb]);
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    eprintln!("{out}");
    for (i, name) in ["node-1", "node-2", "node-3"].iter().enumerate() {
        // the command ran on the node itself: its hostname, its private address
        let line = format!("ran on {name} 10.1.1.{}: {name}\n1", i + 2);
        assert!(out.contains(&line), "missing `{line}` in:\n{out}");
    }
    let servers: Vec<String> = l.hosts().into_iter().map(|h| h.name).collect();
    for name in ["node-1", "node-2", "node-3"] {
        assert!(servers.contains(&name.to_string()), "{servers:?}");
    }

    let rerun = cairn(w, &l.name, &["plan", rb]);
    let plan = text(&rerun);
    assert!(!plan.contains("+ create"), "a rerun would create:\n{plan}");
    let rerun = cairn(w, &l.name, &["run", rb]);
    assert!(rerun.status.success(), "{}", text(&rerun));
    assert_eq!(l.hosts().len(), 3, "a rerun made nodes");

    let clean = cairn(
        w,
        &l.name,
        &["run", runbook("cloud-hetzner-cleanup").to_str().unwrap()],
    );
    assert!(clean.status.success(), "{}", text(&clean));
    assert!(l.hosts().is_empty(), "{:?}", l.hosts());
    let again = cairn(
        w,
        &l.name,
        &["run", runbook("cloud-hetzner-cleanup").to_str().unwrap()],
    );
    assert!(again.status.success(), "{}", text(&again));
}
