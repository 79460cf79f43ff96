//! Disaster recovery on a lab of five nodes: etcd-binary-yaml on node-1..3,
//! keys written, etcd-backup, more keys written; node-2 and node-3 powered off
//! (quorum lost); etcd-restore onto node-1, node-4 and node-5 from the backup:
//! the keys from before the backup are there, those written after it are not,
//! the cluster has a new ID, the run reports the revisions lost; a rerun
//! changes nothing. Then the same backup is restored again (a new `attempt`)
//! with runs killed (CAIRN_FAULT_KILL) at four points, each resumed to the
//! verified end.

mod common;

use common::{cairn, cairn_kill, lab, text};

use std::path::Path;
use std::time::Instant;

fn ok(ws: &Path, args: &[&str]) -> String {
    let o = cairn(ws, args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "cairn {}:\n{t}", args.join(" "));
    t
}

/// etcdctl on `node` through its loopback endpoint with its own certificate.
fn ctl(node: &str, args: &str) -> String {
    format!(
        "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/etcd-ca.crt \
         --cert=/etc/etcd/pki/{node}.crt --key=/etc/etcd/pki/{node}.key {args}"
    )
}

/// (cluster ID, revision) as `node`'s member reports them.
fn status(l: &lab::LabHandle, node: &str) -> (u64, i64) {
    let out = l.ssh_ok(node, &ctl(node, "endpoint status -w json"));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let h = &v[0]["Status"]["header"];
    (
        h["cluster_id"].as_u64().unwrap_or_else(|| panic!("{out}")),
        h["revision"].as_i64().unwrap_or_else(|| panic!("{out}")),
    )
}

/// How many keys under `prefix` `node` reads.
fn count(l: &lab::LabHandle, node: &str, prefix: &str) -> usize {
    l.ssh_ok(
        node,
        &ctl(node, &format!("get --prefix --keys-only {prefix}")),
    )
    .lines()
    .filter(|x| !x.is_empty())
    .count()
}

/// Member names as `node` sees them, sorted.
fn member_names(l: &lab::LabHandle, node: &str) -> Vec<String> {
    let out = l.ssh_ok(node, &ctl(node, "member list -w json"));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut names: Vec<String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

/// The restored cluster as it must be: node-1, node-4, node-5, the keys from
/// before the backup, none from after it, a cluster ID other than `old_id`.
fn check_restored(l: &lab::LabHandle, old_id: u64, what: &str) -> u64 {
    for n in ["node-1", "node-4", "node-5"] {
        assert_eq!(
            member_names(l, n),
            ["node-1", "node-4", "node-5"],
            "{what}: {n}"
        );
        assert_eq!(count(l, n, "/before/"), 20, "{what}: {n}");
        assert_eq!(count(l, n, "/after/"), 0, "{what}: {n}");
    }
    let (id, _) = status(l, "node-4");
    assert_ne!(id, old_id, "{what}: the old cluster ID");
    id
}

#[test]
fn restore_after_quorum_loss() {
    if lab::skip() {
        return;
    }
    let t0 = Instant::now();
    let l = lab::start(&lab::unique_name("restore"), 5);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let name = l.name.as_str();

    #[derive(serde::Serialize)]
    struct Inventory<'a> {
        hosts: &'a [cairn::host::Host],
    }
    let all = l.hosts();
    let write_inv = |file: &str, hosts: &[cairn::host::Host]| {
        let p = w.join(file);
        std::fs::write(&p, toml::to_string(&Inventory { hosts }).unwrap()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let old = write_inv("old.toml", &all[..3]);
    let new = write_inv(
        "new.toml",
        &[all[0].clone(), all[3].clone(), all[4].clone()],
    );
    ok(
        w,
        &[
            "run",
            "etcd-binary-yaml",
            "--lab",
            name,
            "--inventory",
            &old,
        ],
    );
    let built = t0.elapsed();
    l.ssh_ok(
        "node-1",
        &format!(
            "for i in $(seq 1 20); do {} > /dev/null; done",
            ctl("node-1", "put /before/$i v$i")
        ),
    );
    ok(
        w,
        &["run", "etcd-backup", "--lab", name, "--inventory", &old],
    );
    l.ssh_ok(
        "node-1",
        &format!(
            "for i in $(seq 1 15); do {} > /dev/null; done",
            ctl("node-1", "put /after/$i v$i")
        ),
    );
    let (old_id, old_rev) = status(&l, "node-1");
    let dir = w.join(".cairn/backups/etcd-cluster-1");
    let db = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".db"))
        .expect("a backup");
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{db}.json"))).unwrap()).unwrap();
    let backup_rev = record["revision"].as_i64().unwrap();
    assert!(old_rev >= backup_rev + 15, "{old_rev} vs {backup_rev}");

    // ---- quorum lost: node-2 and node-3 gone -------------------------------
    lab::cairn_lab(&["node", "poweroff", "node-2", "--name", name]);
    lab::cairn_lab(&["node", "poweroff", "node-3", "--name", name]);
    let lost_at = Instant::now();

    // ---- another layout on a host: refused, nothing changed -------------------
    let args = [
        "run",
        "etcd-restore",
        "--lab",
        name,
        "--inventory",
        &new,
        "--var",
        "check_key=/before/7",
    ];
    l.ssh_ok(
        "node-4",
        "printf '#!/bin/sh\\necho etcd Version: 3.5.30\\n' > /usr/bin/etcd && chmod 755 /usr/bin/etcd && \
         printf '[Service]\\nExecStart=/usr/bin/etcd --data-dir /srv/etcd\\n' \
         > /etc/systemd/system/etcd.service && systemctl daemon-reload",
    );
    let refused = cairn(w, &args);
    let r = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{r}");
    assert!(
        r.contains("etcd on node-4 is not laid out as etcd-binary-yaml builds it")
            && r.contains("etcd-restore restores only etcd-binary-yaml clusters"),
        "{r}"
    );
    l.ssh_ok(
        "node-1",
        "test ! -e /var/lib/etcd-before-restore && test -d /var/lib/etcd/member",
    );
    l.ssh_ok(
        "node-4",
        "rm /usr/bin/etcd /etc/systemd/system/etcd.service && systemctl daemon-reload",
    );

    // ---- restored onto node-1, node-4, node-5 -------------------------------
    let out = ok(w, &args);
    let restore_time = lost_at.elapsed();
    let new_id = check_restored(&l, old_id, "restored");
    for expect in [
        format!("restored from backups/etcd-cluster-1/{db}"),
        format!("revision {backup_rev}, {} keys", record["keys"]),
        format!("new cluster ID {new_id:x}"),
        format!(
            "lost: {} revisions (the old cluster was at revision {old_rev} on node-1, the backup at {backup_rev})",
            old_rev - backup_rev
        ),
    ] {
        assert!(out.contains(&expect), "the run lacks `{expect}`:\n{out}");
    }
    // node-1's old data is kept aside, never deleted
    let aside = l.ssh_ok("node-1", "ls /var/lib/etcd-before-restore");
    assert_eq!(aside.lines().count(), 1, "{aside}");

    // ---- a rerun changes nothing ---------------------------------------------
    let plan = cairn(w, &[&["plan"], &args[1..]].concat());
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(0), "{p}");
    assert!(p.contains("No changes."), "{p}");
    ok(w, &args);
    assert_eq!(status(&l, "node-4").0, new_id, "the rerun restored again");
    assert_eq!(
        l.ssh_ok("node-1", "ls /var/lib/etcd-before-restore")
            .lines()
            .count(),
        1
    );
    // the runbook's own read-back: a key written after the backup is missing
    let missing = cairn(w, &[&args[..6], &["--var", "check_key=/after/3"]].concat());
    let m = text(&missing);
    assert_eq!(missing.status.code(), Some(1), "{m}");
    assert!(
        m.contains("verification failed: key /after/3 is not in the restored cluster"),
        "{m}"
    );
    assert_eq!(
        status(&l, "node-4").0,
        new_id,
        "a failed check restored again"
    );
    let first_done = t0.elapsed();

    // ---- restored again (new attempts), killed and resumed --------------------
    let mut last_id = new_id;
    for (attempt, point) in [
        ("2", "applied:2"),
        ("3", "applied:4"),
        ("4", "applied:6"),
        ("5", "applied:8"),
    ] {
        let var = format!("attempt={attempt}");
        let mut a = [&args[..], &["--var", &var]].concat();
        // the last one as for Kubernetes: revisions bumped, compacted
        if attempt == "5" {
            a.extend(["--var", "bump_revision=1000"]);
        }
        let killed = cairn_kill(w, &a, Some(point));
        let k = text(&killed);
        assert_eq!(killed.status.code(), None, "not killed at {point}:\n{k}");
        let id = k
            .lines()
            .find_map(|x| x.strip_prefix("Run ")?.split_once(": ").map(|(id, _)| id))
            .unwrap_or_else(|| panic!("no run id in:\n{k}"))
            .to_string();
        let r = ok(w, &["resume", &id]);
        assert!(r.contains("new cluster ID"), "{point}: {r}");
        let id = check_restored(&l, old_id, point);
        if attempt == "5" {
            let (_, rev) = status(&l, "node-4");
            assert!(
                rev > backup_rev + 1000,
                "{point}: revision {rev} not bumped"
            );
        }
        assert_ne!(id, last_id, "{point}: not restored again");
        last_id = id;
        let token = format!("etcd-restore-{}-{attempt}", db.trim_end_matches(".db"));
        assert!(
            r.contains(&format!("initial-cluster-token {token}")),
            "{point}: {r}"
        );
    }
    let total = t0.elapsed();
    println!(
        "FIGURES restore: lab+build {built:.0?}, quorum loss to verified restore {restore_time:.0?}, \
         first restore and rerun done at {first_done:.0?}, 4 killed+resumed restores, total {total:.0?}; \
         backup revision {backup_rev}, old cluster revision {old_rev}, lost {} revisions",
        old_rev - backup_rev
    );
}
