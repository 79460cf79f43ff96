//! Backups: `fetch` against a real sshd (copy, skip when the hash matches,
//! mode, a file changed while copied refused, links refused on both ends),
//! then `etcd-backup` on a lab: clusters made by `etcd-hetzner-apt` (etcd
//! 3.4, Debian's packages) and by `etcd-binary-yaml` (3.5), each filled with
//! over 20 MB of keys; the snapshot is in the workspace, restore-tested, its
//! run's journal under 1 MB, taken on a follower; a second run with keep=1
//! leaves one backup; nothing is left on the member's host.

mod common;

use common::{cairn, cairn_kill, lab, sshd, text};

use cairn::action::ActionKind;
use cairn::bundle::Bundle;
use cairn::host::{Host, HostKeys};
use cairn::primitives::remote::fetch::FetchWork;
use cairn::primitives::remote::{Fetch, FetchArgs};
use cairn::ssh::Pool;
use cairn::step::{Ctx, Step, Validating};
use cairn::workspace::Workspace;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn ctx(ws: &Path) -> Ctx {
    let workspace = Workspace::new(ws);
    Ctx {
        ssh: Pool::new(workspace.known_hosts()),
        workspace,
        http: reqwest::Client::new(),
        bundle: Arc::new(Bundle::default()),
        env: BTreeMap::new(),
    }
}

fn fetch(host: &Host, src: &Path, dest: &str, mode: Option<&str>) -> Fetch {
    Fetch {
        host: host.clone(),
        args: FetchArgs {
            src: src.display().to_string(),
            dest: dest.into(),
            mode: mode.map(Into::into),
        },
    }
}

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Files in `dir` (names), sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_copies_skips_and_refuses() {
    if lab::skip() {
        return;
    }
    let sshd = sshd::Sshd::start();
    let host = sshd.host();
    let ws = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    let ctx = ctx(ws.path());
    let src = remote.path().join("snap.db");
    // 3 MB of varied bytes: more than one chunk of the stream
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).unwrap();

    // 1. copied, mode kept, hash reported
    let step = fetch(&host, &src, "backups/c1/snap.db", None);
    let p = step.prepare(&ctx).await.unwrap();
    assert_eq!(p.actions[0].kind, ActionKind::Create, "{:?}", p.actions);
    assert!(
        p.actions[0].to_string().contains(&format!(
            "fetch local-sshd:{} → backups/c1/snap.db",
            src.display()
        )),
        "{}",
        p.actions[0]
    );
    let out = step.apply(&ctx, p.work.unwrap()).await.unwrap();
    let dest = ws.path().join("backups/c1/snap.db");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(out.sha256, sha(&data));
    assert_eq!(out.size, data.len() as u64);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&dest), 0o640);
    assert_eq!(
        mode(&ws.path().join("backups")),
        0o700,
        "backups are private"
    );
    assert_eq!(names_in(&ws.path().join("backups/c1")), ["snap.db"]);

    // 2. the same hash: a no-op; another mode alone: a chmod
    let p = step.prepare(&ctx).await.unwrap();
    assert!(p.work.is_none());
    assert_eq!(p.actions[0].kind, ActionKind::Noop);
    assert!(p.actions[0]
        .to_string()
        .contains("already fetched (sha256 matches)"));
    let step600 = fetch(&host, &src, "backups/c1/snap.db", Some("0600"));
    let p = step600.prepare(&ctx).await.unwrap();
    assert_eq!(p.actions[0].kind, ActionKind::Change);
    assert!(matches!(p.work, Some(FetchWork::Chmod { .. })));
    step600.apply(&ctx, p.work.unwrap()).await.unwrap();
    assert_eq!(mode(&dest), 0o600);

    // 3. the file changes between the facts and the copy: refused, the
    //    local copy untouched, no temporary file left behind
    std::fs::write(&src, b"version 2").unwrap();
    let p = step600.prepare(&ctx).await.unwrap();
    let work = p.work.expect("differs: work");
    std::fs::write(&src, b"version 3, written while the copy was planned").unwrap();
    let err = step600.apply(&ctx, work).await.unwrap_err().to_string();
    assert!(err.contains("sha256 differs"), "{err}");
    assert!(
        err.contains(&format!("expected {}", sha(b"version 2"))),
        "{err}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data, "the old copy stays");
    assert_eq!(names_in(&ws.path().join("backups/c1")), ["snap.db"]);

    // 4. a link at the source is refused, never followed
    let link = remote.path().join("link.db");
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    let err = match fetch(&host, &link, "backups/c1/l.db", None)
        .prepare(&ctx)
        .await
    {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a link was accepted"),
    };
    assert!(err.contains("is a symbolic link (to /etc/shadow)"), "{err}");
    assert!(!ws.path().join("backups/c1/l.db").exists());

    // 5. a link in the workspace (folder or file) is refused, as is a path
    //    outside the workspace's backups/ and files/
    std::os::unix::fs::symlink(remote.path(), ws.path().join("backups/elsewhere")).unwrap();
    for (dest, why) in [
        ("backups/elsewhere/x.db", "is a symbolic link"),
        ("../x.db", "goes up with `..`"),
        ("pki/x.key", "is not a file in the workspace's"),
    ] {
        let s = fetch(&host, &src, dest, None);
        let err = match s.validate() {
            Err(e) => e.to_string(),
            Ok(()) => match s.prepare(&ctx).await {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{dest} was accepted"),
            },
        };
        assert!(err.contains(why), "{dest}: {err}");
    }
    assert_eq!(names_in(remote.path()), ["link.db", "snap.db"]);
}

// ---- etcd-backup on a lab ---------------------------------------------------

fn run_ok(ws: &Path, args: &[&str]) -> String {
    let o = cairn(ws, args);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(0), "cairn {}:\n{t}", args.join(" "));
    t
}

/// The shell line that writes `mb` MB of incompressible keys through etcdctl
/// on a member (`ctl` is etcdctl with its TLS flags).
fn fill(ctl: &str, mb: u32) -> String {
    format!(
        "set -e; head -c 75000 /dev/urandom | base64 -w0 > /tmp/v; \
         i=0; while [ $i -lt {n} ]; do {ctl} put /fill/$i < /tmp/v > /dev/null; i=$((i+1)); done; \
         rm -f /tmp/v",
        n = mb * 10
    )
}

/// The run folder of the newest run in workspace `ws`.
fn newest_run(ws: &Path) -> PathBuf {
    let runs = ws.join(".cairn/runs");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    all.sort();
    all.pop().expect("a run")
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// What one backup run must have left: its file and record, restore-tested,
/// from a follower, a small journal, nothing on the host. Returns the file name.
fn check_backup(ws: &Path, cluster: &str, out: &str, leader: &str, min_keys: i64) -> String {
    let dir = ws.join(".cairn/backups").join(cluster);
    let names = names_in(&dir);
    let newest = names
        .iter()
        .filter(|n| n.ends_with(".db"))
        .max()
        .unwrap_or_else(|| panic!("no backup in {}: {names:?}\n{out}", dir.display()))
        .clone();
    let db = std::fs::read(dir.join(&newest)).unwrap();
    assert!(db.len() >= 20 << 20, "{newest}: {} bytes", db.len());
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{newest}.json"))).unwrap())
            .unwrap();
    assert_eq!(record["restore_tested"], true, "{record}");
    assert_eq!(record["sha256"], sha(&db), "{record}");
    assert_eq!(record["size"], db.len() as i64, "{record}");
    let keys = record["keys"].as_i64().unwrap();
    assert!(keys >= min_keys, "{record}");
    assert_eq!(record["restored_keys"], record["keys"], "{record}");
    assert_eq!(record["restored_kv_hash"], record["kv_hash"], "{record}");
    assert_ne!(record["member"], leader, "taken on the leader: {record}");
    assert!(
        out.contains(&format!(
            "restore-tested on {}: {keys} keys and hashkv {} at revision {} match the live member",
            record["host"].as_str().unwrap(),
            record["kv_hash"],
            record["revision"]
        )),
        "{out}"
    );
    let journal = dir_size(&newest_run(ws));
    assert!(journal < 1 << 20, "the run's journal is {journal} bytes");
    eprintln!(
        "backup {newest}: {} bytes, {keys} keys, journal {journal} bytes",
        db.len()
    );
    newest
}

/// etcdctl on a member, with the member's own certificate.
struct Member<'a> {
    l: &'a lab::LabHandle,
    address: String,
    ctl: String,
}

impl Member<'_> {
    fn sh(&self, cmd: &str) -> String {
        let o = self.l.ssh_to(&self.address, &self.l.key, cmd);
        assert!(
            o.status.success(),
            "on {}: {cmd}: {}",
            self.address,
            text(&o)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    /// The name of the member that leads.
    fn leader(&self) -> String {
        let status = self.sh(&format!("{} endpoint status --cluster -w json", self.ctl));
        let list = self.sh(&format!("{} member list -w json", self.ctl));
        let s: serde_json::Value = serde_json::from_str(&status).unwrap();
        let m: serde_json::Value = serde_json::from_str(&list).unwrap();
        let leader = &s[0]["Status"]["leader"];
        m["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| &x["ID"] == leader)
            .and_then(|x| x["name"].as_str())
            .unwrap_or_else(|| panic!("no leader in {status} / {list}"))
            .to_string()
    }
}

/// Nothing of the backups left on `node`'s host: no snapshot, no scratch dir,
/// no temporary etcd.
fn assert_clean(l: &lab::LabHandle, address: &str) {
    let o = l.ssh_to(
        address,
        &l.key,
        "ls -A /var/lib/cairn/backups 2>/dev/null; ls -d /var/tmp/cairn-restore.* 2>/dev/null; \
         pgrep -af 'name cairn-restore-tes[t]'; true",
    );
    assert_eq!(text(&o).trim(), "", "left on {address}");
}

#[test]
fn backups_of_etcd_34_and_35_clusters_are_restore_tested() {
    if lab::skip() {
        return;
    }
    let l = lab::lab();
    let started = std::time::Instant::now();

    // ---- etcd 3.5: etcd-binary-yaml on the lab's nodes --------------------
    let ws35 = tempfile::tempdir().unwrap();
    let w = ws35.path();
    run_ok(w, &["run", "etcd-binary-yaml", "--lab", &l.name]);
    let n1 = l.node("node-1");
    let m = Member {
        l,
        address: n1.address.clone(),
        ctl: "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/etcd-ca.crt \
              --cert=/etc/etcd/pki/node-1.crt --key=/etc/etcd/pki/node-1.key"
            .into(),
    };
    m.sh(&fill(&m.ctl, 22));
    let leader = m.leader();
    // the plan names the member the run snapshots: the first follower
    let follower = if leader == "node-1" {
        "node-2"
    } else {
        "node-1"
    };
    // the plan: snapshot, fetch, record; nothing written
    let plan = cairn(w, &["plan", "etcd-backup", "--lab", &l.name]);
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    let fetch_line = format!(
        "+ create fetch {follower}:(known after create: {follower}: etcd snapshot path) → backups/etcd-cluster-1/"
    );
    for expect in [
        "+ create etcd snapshot of member node-",
        "into /var/lib/cairn/backups/, restore-tested on 127.0.0.1:52379 (etcd 3.5.30, through https://127.0.0.1:2379 with /etc/etcd/pki/node-",
        fetch_line.as_str(),
        "+ create file <workspace>/backups/etcd-cluster-1/",
    ] {
        assert!(p.contains(expect), "plan lacks `{expect}`:\n{p}");
    }
    assert!(!w.join(".cairn/backups").exists(), "the plan wrote backups");
    let first = run_ok(w, &["run", "etcd-backup", "--lab", &l.name]);
    let one = check_backup(w, "etcd-cluster-1", &first, &leader, 210);
    assert!(first.contains(&format!("from {follower}")), "{first}");
    for n in &l.nodes {
        assert_clean(l, &n.address);
    }
    // keep=1: the new backup alone is left
    let second = run_ok(
        w,
        &["run", "etcd-backup", "--lab", &l.name, "--var", "keep=1"],
    );
    let two = check_backup(w, "etcd-cluster-1", &second, &leader, 210);
    assert_ne!(one, two);
    assert_eq!(
        names_in(&w.join(".cairn/backups/etcd-cluster-1")),
        [two.clone(), format!("{two}.json")]
    );
    assert!(
        second.contains(&format!(
            "- delete file {}",
            w.join(".cairn/backups/etcd-cluster-1").join(&one).display()
        )),
        "{second}"
    );
    // killed between steps and inside them, resumed: one more restore-tested
    // backup each time, none left on the hosts (a snapshot taken by a step
    // killed before it was journaled is replaced by the resumed run's). (Steps: 1-3 etcd_member, 4
    // etcd_cluster, 5 etcd_snapshot, 6 fetch, 7 record, 8 rm on the host;
    // applied (steps with work; the read-only ones are not): 1 etcd_snapshot,
    // 2 fetch, 3 record, 4 rm.)
    let mut last = two;
    for kill in ["applied:1", "done:5", "applied:2", "done:7", "applied:4"] {
        let killed = cairn_kill(
            w,
            &["run", "etcd-backup", "--lab", &l.name, "--var", "keep=1"],
            Some(kill),
        );
        assert_eq!(killed.status.code(), None, "{kill}: {}", text(&killed));
        let resumed = run_ok(w, &["resume"]);
        let now = check_backup(w, "etcd-cluster-1", &resumed, &leader, 210);
        assert_ne!(now, last, "{kill}: no new backup");
        assert_eq!(
            names_in(&w.join(".cairn/backups/etcd-cluster-1")),
            [now.clone(), format!("{now}.json")],
            "{kill}"
        );
        for n in &l.nodes {
            assert_clean(l, &n.address);
        }
        last = now;
    }
    // a member down: skipped, the next follower is snapshotted
    l.ssh_ok(follower, "systemctl stop etcd");
    let other = ["node-1", "node-2", "node-3"]
        .into_iter()
        .find(|n| *n != follower && *n != leader)
        .unwrap();
    let down = run_ok(
        w,
        &["run", "etcd-backup", "--lab", &l.name, "--var", "keep=1"],
    );
    l.ssh_ok(follower, "systemctl start etcd");
    check_backup(w, "etcd-cluster-1", &down, &leader, 210);
    assert!(down.contains(&format!("from {other}")), "{down}");
    eprintln!("etcd 3.5 backups: {:.0?}", started.elapsed());

    // ---- etcd 3.4: etcd-hetzner-apt on the lab's cloud emulation ----------
    let ws34 = tempfile::tempdir().unwrap();
    let w = ws34.path();
    // (the distribution's 3.4.23, not the runbook's default 3.5.30)
    run_ok(
        w,
        &[
            "run",
            "etcd-hetzner-apt",
            "--lab",
            &l.name,
            "--var",
            "etcd_version=distro",
        ],
    );
    let servers = hetzner_hosts(l);
    let inventory = w.join("hosts.toml");
    #[derive(serde::Serialize)]
    struct Inventory<'a> {
        hosts: &'a [Host],
    }
    std::fs::write(
        &inventory,
        toml::to_string(&Inventory { hosts: &servers }).unwrap(),
    )
    .unwrap();
    let m = Member {
        l,
        address: servers[0].address.clone(),
        ctl: "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/ca.crt \
              --cert=/etc/etcd/server.crt --key=/etc/etcd/server.key"
            .into(),
    };
    assert!(
        m.sh("etcd --version").contains("3.4."),
        "Debian's etcd is 3.4"
    );
    m.sh(&fill(&m.ctl, 22));
    let leader = m.leader();
    let inv = inventory.display().to_string();
    let args = [
        "run",
        "etcd-backup",
        "--inventory",
        &inv,
        "--var",
        "cluster=cluster-1",
    ];
    let out = run_ok(w, &args);
    let one = check_backup(w, "cluster-1", &out, &leader, 210);
    let record = std::fs::read_to_string(
        w.join(".cairn/backups/cluster-1")
            .join(format!("{one}.json")),
    )
    .unwrap();
    assert!(
        record.contains("\"tool\": \"etcdctl\""),
        "3.4 has no etcdutl: {record}"
    );
    for s in &servers {
        assert_clean(l, &s.address);
    }
    let out = run_ok(w, &[&args[..], &["--var", "keep=1"]].concat());
    let two = check_backup(w, "cluster-1", &out, &leader, 210);
    assert_eq!(
        names_in(&w.join(".cairn/backups/cluster-1")),
        [two.clone(), format!("{two}.json")]
    );
    eprintln!("etcd 3.4 and 3.5 backups: {:.0?}", started.elapsed());
}

/// The servers `etcd-hetzner-apt` made, as inventory hosts (the lab's key,
/// host keys pinned in the workspace as the runbook pinned them).
fn hetzner_hosts(l: &lab::LabHandle) -> Vec<Host> {
    let out = Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Authorization: Bearer {}", l.var("HCLOUD_TOKEN")))
        .arg(format!(
            "{}/servers?label_selector=cluster%3Dcluster-1&per_page=50",
            l.var("HCLOUD_ENDPOINT")
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut hosts: Vec<Host> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let mut h = Host::new(
                s["name"].as_str().unwrap(),
                s["public_net"]["ipv4"]["ip"].as_str().unwrap(),
            );
            h.key = Some(l.key.clone());
            h.host_keys = HostKeys::Workspace;
            h
        })
        .collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(hosts.len(), 3, "{v}");
    hosts
}
