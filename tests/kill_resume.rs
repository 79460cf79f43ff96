//! Kill cairn at many points of etcd-hetzner-apt on a lab — between steps and
//! inside them (`CAIRN_FAULT_KILL=applied:N` dies right after a step's work is
//! done but before it is journaled) — and resume: every resumed run must end
//! with a verified cluster, exactly three servers, no journaled step executed
//! twice, and data written before the kill intact where the cluster existed.
//!
//! CI samples a few points; `CAIRN_KILL_POINTS=full` tries the full set, and
//! `CAIRN_KILL_POINTS=applied:5,done:9` any list.

mod common;

use common::{cairn, cairn_kill, lab, text};

use std::path::Path;
use std::process::Command;

fn points() -> Vec<String> {
    let spec = std::env::var("CAIRN_KILL_POINTS").unwrap_or_default();
    let list: Vec<String> = match spec.as_str() {
        "" => [
            "applied:2",
            "applied:9",
            "done:17",
            "applied:24",
            "applied:41",
        ]
        .map(String::from)
        .to_vec(),
        "full" => (1..=12)
            .flat_map(|i| [format!("applied:{}", i * 4 - 2), format!("done:{}", i * 4)])
            .collect(),
        list => list.split(',').map(String::from).collect(),
    };
    list
}

fn api(l: &lab::LabHandle, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Authorization: Bearer {}", l.var("HCLOUD_TOKEN")))
        .arg(format!("{}{path}", l.var("HCLOUD_ENDPOINT")))
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {path}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn server_names(l: &lab::LabHandle, cluster: &str) -> Vec<String> {
    let v = api(
        l,
        &format!("/servers?label_selector=cluster%3D{cluster}%2Cetcd%3Dtrue&per_page=50"),
    );
    let mut names: Vec<String> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn cluster_vars(i: usize) -> Vec<String> {
    let c = format!("k{i}");
    vec![
        format!("cluster={c}"),
        format!("network=net-{c}"),
        format!("ip_range=10.{}.0.0/16", 20 + i),
        format!("subnet=10.{}.1.0/24", 20 + i),
        format!("nodes={c}-1,{c}-2,{c}-3"),
    ]
}

fn with_vars<'a>(base: &[&'a str], vars: &'a [String], lab: &'a str) -> Vec<&'a str> {
    let mut out = base.to_vec();
    for v in vars {
        out.push("--var");
        out.push(v);
    }
    out.push("--lab");
    out.push(lab);
    out
}

/// No step was journaled done twice in any run of the workspace.
fn assert_no_step_twice(ws: &Path) {
    for run in std::fs::read_dir(ws.join(".cairn/runs")).unwrap() {
        let path = run.unwrap().path().join("journal.jsonl");
        let j = cairn::journal::Journal::read(&path).unwrap();
        for (key, n) in j.changed_counts() {
            assert_eq!(n, 1, "{}: step {key} done {n} times", path.display());
        }
    }
}

fn etcdctl(l: &lab::LabHandle, node: &str, args: &str) -> String {
    let v = api(l, &format!("/servers?name={node}"));
    let ip = v["servers"][0]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let out = l.ssh_to(
        &ip,
        &l.key,
        &format!(
            "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/ca.crt \
             --cert=/etc/etcd/server.crt --key=/etc/etcd/server.key {args}"
        ),
    );
    assert!(
        out.status.success(),
        "etcdctl {args} on {node}: {}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn killed_runs_resume_to_a_verified_cluster() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("kill"), 0);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let points = points();
    let mut converged = 0;

    // Fresh clusters, killed at each point, resumed.
    for (i, point) in points.iter().enumerate() {
        let vars = cluster_vars(i);
        let killed = cairn_kill(
            w,
            &with_vars(&["run", "etcd-hetzner-apt"], &vars, &l.name),
            Some(point),
        );
        assert_eq!(
            killed.status.code(),
            None,
            "{point}: not killed:\n{}",
            text(&killed)
        );
        let resumed = cairn(w, &["resume"]);
        let r = text(&resumed);
        assert_eq!(
            resumed.status.code(),
            Some(0),
            "{point}: resume failed:\n{r}"
        );
        assert!(
            r.contains(&format!("etcd cluster k{i}: 3 members, verified")),
            "{point}:\n{r}"
        );
        let c = format!("k{i}");
        assert_eq!(
            server_names(&l, &c),
            vec![format!("{c}-1"), format!("{c}-2"), format!("{c}-3")],
            "{point}: duplicate or missing servers"
        );
        assert_no_step_twice(w);
        converged += 1;
        // free the nodes for the next point
        let clean = cairn(
            w,
            &with_vars(
                &["run", "etcd-hetzner-apt-cleanup"],
                &[format!("cluster={c}"), format!("network=net-{c}")],
                &l.name,
            ),
        );
        assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
        assert!(server_names(&l, &c).is_empty());
    }
    eprintln!(
        "fresh clusters: {converged}/{} kill points converged",
        points.len()
    );

    // An existing cluster with data, rerun and killed: resume keeps the data.
    let vars = cluster_vars(99);
    let first = cairn(w, &with_vars(&["run", "etcd-hetzner-apt"], &vars, &l.name));
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    etcdctl(&l, "k99-1", "put precious kept");
    for point in ["applied:1", "done:20", "done:40"] {
        let killed = cairn_kill(
            w,
            &with_vars(&["run", "etcd-hetzner-apt"], &vars, &l.name),
            Some(point),
        );
        // a rerun has few steps with work: a kill point may not be reached
        if killed.status.code().is_none() {
            let resumed = cairn(w, &["resume"]);
            assert_eq!(
                resumed.status.code(),
                Some(0),
                "{point}: {}",
                text(&resumed)
            );
        } else {
            assert_eq!(killed.status.code(), Some(0), "{point}: {}", text(&killed));
        }
        assert_eq!(
            etcdctl(&l, "k99-2", "get precious --print-value-only"),
            "kept",
            "{point}"
        );
        assert_eq!(server_names(&l, "k99"), vec!["k99-1", "k99-2", "k99-3"]);
    }
    assert_no_step_twice(w);
}
