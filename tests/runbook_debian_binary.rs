//! etcd-debian-binary end to end on a lab: three static Debian nodes get the
//! etcd release binaries from the lab's release mirror (checksum from its
//! SHA256SUMS), a key and CSR made on each node and signed by the operator's
//! CA, the tutorial's options.env and unit, and flannel's network config in
//! the v2 keyspace; the runbook's own verification (health, members, a write
//! read back, strangers refused, the flannel key read back) must pass. Then: a
//! rerun changes nothing and keeps data; on a second lab, a run killed mid-way
//! resumes to the same healthy end.

mod common;

use common::{cairn_on_lab, lab, text};

use std::path::Path;
use std::process::Output;

const RUNBOOK: &str = "etcd-debian-binary";
const FLANNEL: &str = r#"{"Network":"10.2.0.0/16","Backend":{"Type":"vxlan"},"SubnetLen":24}"#;

/// The lines of a run's output that are not `= ok` (what it did, and errors).
fn changes(o: &Output) -> String {
    text(o)
        .lines()
        .filter(|l| !l.contains("= ok") && !l.starts_with("      "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// etcdctl (v3) on a member over https, with the member's own certificate (as
/// the tutorial's check does).
fn etcdctl(l: &lab::LabHandle, node: &str, args: &str) -> String {
    let ip = &l.node(node).address;
    l.ssh_ok(
        node,
        &format!(
            "ETCDCTL_API=3 etcdctl --endpoints=https://{ip}:2379 --cacert=/etc/ssl/etcd/ca.crt \
             --cert=/etc/ssl/etcd/etcd.crt --key=/etc/ssl/etcd/etcd.key {args}"
        ),
    )
    .trim()
    .to_string()
}

/// The flannel config as the v2 API serves it on `node` (a quorum read).
fn flannel_config(l: &lab::LabHandle, node: &str) -> String {
    let out = l.ssh_ok(
        node,
        "curl -fsS 'http://127.0.0.1:2379/v2/keys/coreos.com/network/config?quorum=true'",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["node"]["value"].as_str().unwrap_or_default().to_string()
}

/// A member list as etcdctl prints it has exactly the lab's nodes, started,
/// with their peer URLs.
fn assert_members(l: &lab::LabHandle) {
    let members = etcdctl(l, "node-2", "member list");
    assert_eq!(members.lines().count(), 3, "{members}");
    for n in &l.nodes {
        let line = format!("started, {}, https://{}:2380,", n.name, n.address);
        assert!(members.contains(&line), "no `{line}` in:\n{members}");
    }
}

#[test]
fn plan_run_rerun_kill_resume() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("dbin"), 3);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();

    // 1. plan on a fresh lab: every action listed, nothing changed anywhere
    let plan = cairn_on_lab(w, &l.name, &["plan", RUNBOOK, "--show-unchanged"], &[]);
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    for expect in [
        "read `curl -fsSL -- http://",
        "> run `useradd --system --user-group --home-dir /var/lib/etcd",
        "+ create dir /etc/ssl/etcd (0750 root:etcd)",
        "+ create file /etc/ssl/etcd/openssl.cnf",
        "+subjectAltName = IP:",
        "> run `sh -c 'umask 077 && rm -f -- \"$1.new\" && openssl genrsa -out",
        "sh /etc/ssl/etcd/etcd.key 2048`",
        "> run `openssl req -new -key /etc/ssl/etcd/etcd.key -subj /CN=node-1",
        "+ create CA certificate etcd-cluster-ca",
        "+ create certificate etcd-cluster-node-3 from CSR",
        "+ create file /etc/ssl/etcd/ca.crt",
        "+ create file /etc/ssl/etcd/etcd.crt",
        "+ create file /var/cache/etcd/etcd-v3.5.30-linux-amd64.tar.gz",
        "> run unpack /var/cache/etcd/etcd-v3.5.30-linux-amd64.tar.gz into /usr/local/bin",
        "+ create dir /opt/etcd/wal (0700 etcd:etcd)",
        "+ETCD_HEARTBEAT_INTERVAL=800",
        "+ETCD_ENABLE_V2=true",
        "+Type=notify",
        "+LimitNOFILE=40000",
        "> run systemctl daemon-reload",
        "> run restart unit etcd",
        "? verify etcd members are node-1, node-2, node-3",
        "refuses a client with certificate verify-stranger-client",
        "> run `curl -fsS -X PUT http://127.0.0.1:2379/v2/keys/coreos.com/network/config",
    ] {
        assert!(p.contains(expect), "plan lacks `{expect}`:\n{p}");
    }
    assert!(!w.join(".cairn").exists(), "plan wrote the workspace");
    for n in ["node-1", "node-2", "node-3"] {
        let untouched = l.ssh(
            n,
            "! id etcd && test ! -e /etc/ssl/etcd && test ! -e /usr/local/bin/etcd \
             && test ! -e /var/cache/etcd && test ! -e /etc/systemd/system/etcd.service",
        );
        assert!(
            untouched.status.success(),
            "plan changed {n}: {}",
            text(&untouched)
        );
    }

    // 2. run: a verified cluster, flannel's config readable through the v2 API
    let run = cairn_on_lab(w, &l.name, &["run", RUNBOOK], &[]);
    let r = text(&run);
    assert_eq!(run.status.code(), Some(0), "{}", changes(&run));
    assert!(
        r.contains("etcd cluster etcd-cluster: 3 members, verified"),
        "{r}"
    );
    assert!(r.contains(&format!("(v2): {FLANNEL}")), "{r}");
    assert_members(&l);
    let health = etcdctl(&l, "node-1", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    for n in ["node-1", "node-3"] {
        assert_eq!(flannel_config(&l, n), FLANNEL, "flannel config through {n}");
    }
    // the keys were made on the nodes and never left them; the certificates
    // chain to the CA; the binaries are the pinned release
    for n in ["node-1", "node-2", "node-3"] {
        let key = l.ssh_ok(n, "stat -c '%a %U:%G' /etc/ssl/etcd/etcd.key");
        assert_eq!(key.trim(), "600 etcd:etcd", "{n}");
        let chain = l.ssh_ok(n, "grep -c 'BEGIN CERTIFICATE' /etc/ssl/etcd/etcd.crt");
        assert_eq!(
            chain.trim(),
            "2",
            "{n}: etcd.crt is the certificate and the CA"
        );
        l.ssh_ok(
            n,
            "openssl verify -CAfile /etc/ssl/etcd/ca.crt /etc/ssl/etcd/etcd.crt \
             && openssl x509 -in /etc/ssl/etcd/etcd.crt -noout -modulus | cmp - <(openssl rsa -in /etc/ssl/etcd/etcd.key -noout -modulus)",
        );
        let version = l.ssh_ok(n, "/usr/local/bin/etcd --version");
        assert!(version.contains("etcd Version: 3.5.30"), "{n}: {version}");
        let unit = l.ssh_ok(
            n,
            "systemctl show -p Type,User,LimitNOFILE,ActiveState etcd",
        );
        for want in [
            "Type=notify",
            "User=etcd",
            "LimitNOFILE=40000",
            "ActiveState=active",
        ] {
            assert!(unit.contains(want), "{n}: {unit}");
        }
        let dirs = l.ssh_ok(n, "stat -c '%n %a %U' /opt/etcd/data /opt/etcd/wal");
        assert_eq!(
            dirs, "/opt/etcd/data 700 etcd\n/opt/etcd/wal 700 etcd\n",
            "{n}"
        );
    }
    let pki: Vec<String> = std::fs::read_dir(w.join(".cairn/pki"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        pki.contains(&"etcd-cluster-node-1.crt".to_string()),
        "{pki:?}"
    );
    assert!(
        !pki.iter()
            .any(|f| f.starts_with("etcd-cluster-node-") && f.ends_with(".key")),
        "a node key in the workspace: {pki:?}"
    );

    // 3. data written before a rerun survives it; the rerun changes nothing
    etcdctl(&l, "node-1", "put precious data-before-rerun");
    let plan = cairn_on_lab(w, &l.name, &["plan", RUNBOOK], &[]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan after run must be empty:\n{}",
        changes(&plan)
    );
    let rerun = cairn_on_lab(w, &l.name, &["run", RUNBOOK], &[]);
    assert_eq!(rerun.status.code(), Some(0), "{}", changes(&rerun));
    assert!(
        text(&rerun).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&rerun)
    );
    assert_eq!(
        etcdctl(&l, "node-3", "get precious --print-value-only"),
        "data-before-rerun"
    );
    assert_eq!(flannel_config(&l, "node-2"), FLANNEL);

    // 4. on a second lab, a run killed mid-way (keys made, binaries on some
    //    nodes, no etcd started yet) resumes to the same verified end
    let l2 = lab::start(&lab::unique_name("dbin-kill"), 3);
    let ws2 = tempfile::tempdir().unwrap();
    let w2 = ws2.path();
    let killed = cairn_on_lab(
        w2,
        &l2.name,
        &["run", RUNBOOK],
        &[("CAIRN_FAULT_KILL", "applied:20")],
    );
    assert_eq!(
        killed.status.code(),
        None,
        "must die by SIGKILL: {}",
        text(&killed)
    );
    let resumed = cairn_on_lab(w2, &l2.name, &["resume"], &[]);
    assert_eq!(resumed.status.code(), Some(0), "{}", changes(&resumed));
    let rs = text(&resumed);
    assert!(
        rs.contains("etcd cluster etcd-cluster: 3 members, verified"),
        "{rs}"
    );
    assert!(rs.contains(&format!("(v2): {FLANNEL}")), "{rs}");
    assert_members(&l2);
    assert_eq!(flannel_config(&l2, "node-3"), FLANNEL);
    let again = cairn_on_lab(w2, &l2.name, &["run", RUNBOOK], &[]);
    assert_eq!(again.status.code(), Some(0), "{}", changes(&again));
    assert!(
        text(&again).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&again)
    );
}

/// Issue 12, defects 1 and 5, on the runbook that gives the etcd account
/// folders of its own: links the etcd account plants (or planted under the
/// old layout, where `/etc/ssl/etcd` was etcd's) are never followed by a
/// rerun as root, and no output or journal shows what they point to.
#[test]
fn links_planted_by_the_etcd_account_are_never_followed() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("dbin-links"), 1);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let one = ["--var", "nodes=1"];
    let run = cairn_on_lab(w, &l.name, &["run", RUNBOOK, one[0], one[1]], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", changes(&run));
    let n = "node-1";
    let as_etcd = |cmd: &str| l.ssh(n, &format!("runuser -u etcd -- sh -c '{cmd}'"));

    // The key's folder is root's now: etcd cannot plant anything in it.
    assert_eq!(
        l.ssh_ok(n, "stat -c '%U:%G %a' /etc/ssl/etcd").trim(),
        "root:etcd 750"
    );
    let planted = as_etcd("ln -s /etc/shadow /etc/ssl/etcd/etcd.csr");
    assert!(
        !planted.status.success(),
        "etcd planted a link in /etc/ssl/etcd"
    );

    // Root's secret, root's folder, and the old layout (etcd's ssl folder)
    // with links in it.
    l.ssh_ok(
        n,
        "printf 'CAIRN-SECRET-CANARY\\n' > /etc/cairn-secret && chmod 600 /etc/cairn-secret \
         && mkdir -m 755 /etc/cairn-victim && chown etcd:etcd /etc/ssl/etcd",
    );
    for cmd in [
        "rm -f /etc/ssl/etcd/openssl.cnf && ln -s /etc/cairn-secret /etc/ssl/etcd/openssl.cnf",
        "rm -f /etc/ssl/etcd/etcd.key && ln -s /etc/cairn-victim/key /etc/ssl/etcd/etcd.key",
        "ln -s /etc/cairn-victim/new-key /etc/ssl/etcd/etcd.key.new",
    ] {
        let out = as_etcd(cmd);
        assert!(out.status.success(), "{cmd}: {}", text(&out));
    }
    let victims =
        "stat -c '%n %U:%G %a' /etc/cairn-secret /etc/cairn-victim && ls -A /etc/cairn-victim";
    let before = l.ssh_ok(n, victims);
    assert_eq!(before.lines().count(), 2, "{before}");

    // The plan says each link is replaced and reads none of them; the run
    // replaces them and makes the folder root's again.
    let plan = cairn_on_lab(w, &l.name, &["plan", RUNBOOK, one[0], one[1]], &[]);
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    assert!(
        p.contains("replace symlink → /etc/cairn-secret"),
        "the plan does not say the link is replaced:\n{p}"
    );
    let rerun = cairn_on_lab(w, &l.name, &["run", RUNBOOK, one[0], one[1]], &[]);
    let r = text(&rerun);
    assert_eq!(rerun.status.code(), Some(0), "{}", changes(&rerun));
    assert_eq!(
        l.ssh_ok(n, victims),
        before,
        "a root file or folder was changed through a link"
    );
    assert_eq!(
        l.ssh_ok(n, "cat /etc/cairn-secret"),
        "CAIRN-SECRET-CANARY\n"
    );
    assert_eq!(
        l.ssh_ok(
            n,
            "stat -c '%n %F %U:%G %a' /etc/ssl/etcd /etc/ssl/etcd/openssl.cnf /etc/ssl/etcd/etcd.key"
        ),
        "/etc/ssl/etcd directory root:etcd 750\n\
         /etc/ssl/etcd/openssl.cnf regular file root:root 644\n\
         /etc/ssl/etcd/etcd.key regular file etcd:etcd 600\n"
    );

    // etcd's own folder: the data dir swapped for a link to a root folder.
    // Plan and run refuse it, naming it; the folder it points to is untouched.
    let out =
        as_etcd("mv /opt/etcd/data /opt/etcd/data.moved && ln -s /etc/cairn-victim /opt/etcd/data");
    assert!(out.status.success(), "{}", text(&out));
    let refused = "/opt/etcd/data on node-1 is a symlink (owner etcd) to /etc/cairn-victim";
    let plan2 = cairn_on_lab(w, &l.name, &["plan", RUNBOOK, one[0], one[1]], &[]);
    let p2 = text(&plan2);
    assert_eq!(plan2.status.code(), Some(1), "{p2}");
    assert!(p2.contains(refused), "{p2}");
    let rerun2 = cairn_on_lab(w, &l.name, &["run", RUNBOOK, one[0], one[1]], &[]);
    let r2 = text(&rerun2);
    assert_eq!(rerun2.status.code(), Some(1), "{r2}");
    assert!(r2.contains(refused), "{r2}");
    assert_eq!(
        l.ssh_ok(n, victims),
        before,
        "a root folder was changed through a link"
    );

    // No output and no journal holds the secret.
    let mut journals = String::new();
    for e in walk(&w.join(".cairn")) {
        journals.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap()));
    }
    for (what, t) in [
        ("plan", &p),
        ("run", &r),
        ("plan", &p2),
        ("run", &r2),
        ("workspace", &journals),
    ] {
        assert!(
            !t.contains("CAIRN-SECRET-CANARY"),
            "{what} shows the secret"
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
