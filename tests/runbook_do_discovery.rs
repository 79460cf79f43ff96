//! etcd-do-discovery end to end on a lab with no static nodes: the droplets
//! the runbook creates through the lab's DigitalOcean emulation become the
//! nodes. Checked: a plan on the fresh lab lists every action and creates
//! nothing; a run ends verified, each droplet having discovered its peers
//! through the API itself (read-only token 0600 root, DNS names, the same
//! file the operator would write); the discovery at boot rewrites the same
//! file and etcd comes back; a rerun (also finding the droplets by tag
//! instead of creating them) changes nothing and keeps data; the operator
//! mode on a second tag; a node-mode run on a third tag killed mid-way
//! resumes to a verified cluster; the cleanup leaves no droplet.

mod common;

use common::{cairn_on_lab, lab, text};

use std::path::Path;
use std::process::Output;
use std::time::Instant;

const RUNBOOK: &str = "etcd-do-discovery";
const NAMES: [&str; 3] = ["etcd-server-0", "etcd-server-1", "etcd-server-2"];

/// The lines of a run's output that are not `= ok` (what it did, and errors).
fn changes(o: &Output) -> String {
    text(o)
        .lines()
        .filter(|l| !l.contains("= ok") && !l.starts_with("      "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `cmd` on lab node `node` (static or cloud-made) and returns stdout.
fn ssh_ok(l: &lab::LabHandle, node: &str, cmd: &str) -> String {
    let out = lab::cairn_lab(&["ssh", "--name", &l.name, node, "--", cmd]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Names of the lab's nodes (from its inventory), sorted.
fn node_names(l: &lab::LabHandle) -> Vec<String> {
    let mut names: Vec<String> = l.hosts().into_iter().map(|h| h.name).collect();
    names.sort();
    names
}

/// etcdctl (v3) on a droplet with the client certificate the runbook put
/// there (the tutorial's check, in v3 terms).
fn etcdctl(l: &lab::LabHandle, node: &str, args: &str) -> String {
    ssh_ok(
        l,
        node,
        &format!(
            "etcdctl --cacert=/etc/etcd/ca.pem --cert=/etc/etcd/client.pem --key=/etc/etcd/client-key.pem \
             --endpoints=https://{node}.{}.lab:2379 {args}",
            l.name
        ),
    )
    .trim()
    .to_string()
}

/// The member list has exactly `names` (as NAME.DOMAIN), started, with DNS peer URLs.
fn assert_members(l: &lab::LabHandle, via: &str, names: &[&str]) {
    let members = etcdctl(l, via, "member list");
    assert_eq!(members.lines().count(), names.len(), "{members}");
    for n in names {
        let fqdn = format!("{n}.{}.lab", l.name);
        let line = format!("started, {fqdn}, https://{fqdn}:2380, https://{fqdn}:2379");
        assert!(members.contains(&line), "no `{line}` in:\n{members}");
    }
}

/// Files under `dir` (recursively) whose content contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(needle) {
            found.push(path);
        }
    }
    found
}

fn sha(l: &lab::LabHandle, node: &str, path: &str) -> String {
    ssh_ok(l, node, &format!("sha256sum {path}"))
}

#[test]
fn plan_run_rediscover_rerun_operator_kill_resume_cleanup() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("dodisc"), 0);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let domain = format!("{}.lab", l.name);

    // 1. plan on a fresh lab: every action listed, nothing created anywhere
    let t = Instant::now();
    let plan = cairn_on_lab(w, &l.name, &["plan", RUNBOOK, "--show-unchanged"], &[]);
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    for expect in [
        "+ create ssh key etcd",
        "+ create droplet etcd-server-0 (s-1vcpu-2gb, debian-12-x64, fra1) tags etcd",
        "+ create droplet etcd-server-2 (s-1vcpu-2gb, debian-12-x64, fra1) tags etcd",
        "+ create CA certificate etcd-cluster-1-ca",
        "(CN=etcd server;",
        "(CN=etcd peer;",
        "(CN=etcd client;",
        "+ create file /etc/etcd/server-key.pem (0600 root:root)",
        "+ create file /var/cache/etcd/etcd-v3.5.30-linux-amd64.tar.gz",
        "+ create unpack /var/cache/etcd/etcd-v3.5.30-linux-amd64.tar.gz into /usr/local/bin",
        "+ create file /etc/etcd/do-token (0600 root:root)",
        "(content hidden)",
        &format!("+DISCOVERY_DOMAIN=\"{domain}\""),
        "+DIGITALOCEAN_ENDPOINT=\"http://",
        "+ create file /etc/etcd/prepare_cluster.sh (0755 root:root)",
        "+ip=$(ip -4 -o addr show dev \"$DISCOVERY_INTERFACE\"",
        "+ create file /etc/systemd/system/etcd-discovery.service",
        "+Requires=etcd-discovery.service",
        "+EnvironmentFile=/etc/etcd/etcd-members",
        "> run restart unit etcd-discovery",
        "> run restart unit etcd",
        &format!("? verify etcd members are etcd-server-0.{domain}, etcd-server-1.{domain}, etcd-server-2.{domain}"),
        "refuses a client with certificate verify-stranger-client",
    ] {
        assert!(p.contains(expect), "plan lacks `{expect}`:\n{p}");
    }
    assert!(
        !p.contains(l.var("DIGITALOCEAN_ACCESS_TOKEN")),
        "the token in a plan"
    );
    assert!(!w.join(".cairn").exists(), "plan wrote the workspace");
    assert!(node_names(&l).is_empty(), "plan created droplets");
    eprintln!("plan: {:.1}s", t.elapsed().as_secs_f64());

    // 2. run: droplets, discovery on each, a verified cluster
    let t = Instant::now();
    let run = cairn_on_lab(w, &l.name, &["run", RUNBOOK], &[]);
    let r = text(&run);
    assert_eq!(run.status.code(), Some(0), "{}", changes(&run));
    assert!(
        r.contains(
            "etcd cluster etcd-cluster-1 (droplets tagged etcd, node discovery): 3 members, verified"
        ),
        "{r}"
    );
    assert!(
        !r.contains(l.var("DIGITALOCEAN_ACCESS_TOKEN")),
        "the token in a run's output"
    );
    eprintln!("run: {:.1}s", t.elapsed().as_secs_f64());
    let leaked = files_containing(&w.join(".cairn"), l.var("DIGITALOCEAN_ACCESS_TOKEN"));
    assert!(leaked.is_empty(), "the token in the workspace: {leaked:?}");
    assert_eq!(node_names(&l), NAMES);
    assert_members(&l, "etcd-server-1", &NAMES);
    let health = etcdctl(&l, "etcd-server-0", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");
    let initial_cluster = NAMES
        .iter()
        .map(|n| format!("{n}.{domain}=https://{n}.{domain}:2380"))
        .collect::<Vec<_>>()
        .join(",");
    for n in NAMES {
        // every droplet's name resolves on every droplet, short and fully qualified
        ssh_ok(
            &l,
            n,
            &format!(
                "getent hosts {0} {0}.{domain} {1}.{domain} {2}.{domain}",
                n, NAMES[0], NAMES[2]
            ),
        );
        let token = ssh_ok(&l, n, "stat -c '%a %U:%G' /etc/etcd/do-token");
        assert_eq!(token.trim(), "600 root:root", "{n}");
        let members = ssh_ok(&l, n, "cat /etc/etcd/etcd-members");
        let ip = l
            .hosts()
            .into_iter()
            .find(|h| h.name == n)
            .map(|h| h.address)
            .unwrap();
        for want in [
            format!("ETCD_INITIAL_CLUSTER=\"{initial_cluster}\"\n"),
            format!("ETCD_NAME=\"{n}.{domain}\"\n"),
            format!("ETCD_LISTEN_PEER_URLS=\"https://{ip}:2380\"\n"),
            "ETCD_INITIAL_CLUSTER_TOKEN=\"etcd-cluster-1\"\n".to_string(),
        ] {
            assert!(members.contains(&want), "{n}: no `{want}` in:\n{members}");
        }
        let units = ssh_ok(
            &l,
            n,
            "systemctl is-enabled etcd-discovery etcd; systemctl is-active etcd-discovery etcd; \
             journalctl -u etcd-discovery --no-pager -o cat | grep -c '^etcd members (droplets tagged etcd): '",
        );
        assert_eq!(units, "enabled\nenabled\nactive\nactive\n1\n", "{n}");
        let version = ssh_ok(&l, n, "/usr/local/bin/etcd --version");
        assert!(version.contains("etcd Version: 3.5.30"), "{n}: {version}");
        let cn = ssh_ok(
            &l,
            n,
            "openssl x509 -in /etc/etcd/server.pem -noout -subject -ext subjectAltName",
        );
        assert!(cn.contains("CN = etcd server"), "{n}: {cn}");
        assert!(cn.contains(&format!("DNS:*.{domain}")), "{n}: {cn}");
    }

    // 3. rediscovery at boot: the discovery unit runs again and writes the
    //    same file; with the file gone, starting etcd (as at boot) runs the
    //    discovery first and etcd rejoins
    let before = sha(&l, "etcd-server-0", "/etc/etcd/etcd-members");
    ssh_ok(&l, "etcd-server-0", "systemctl restart etcd-discovery");
    assert_eq!(sha(&l, "etcd-server-0", "/etc/etcd/etcd-members"), before);
    let before = sha(&l, "etcd-server-1", "/etc/etcd/etcd-members");
    ssh_ok(
        &l,
        "etcd-server-1",
        "systemctl stop etcd etcd-discovery && rm /etc/etcd/etcd-members && systemctl start etcd",
    );
    assert_eq!(sha(&l, "etcd-server-1", "/etc/etcd/etcd-members"), before);
    let active = ssh_ok(
        &l,
        "etcd-server-1",
        "systemctl is-active etcd-discovery etcd",
    );
    assert_eq!(active, "active\nactive\n");
    let health = etcdctl(&l, "etcd-server-1", "endpoint health --cluster");
    assert_eq!(health.matches("is healthy").count(), 3, "{health}");

    // 4. data written before a rerun survives it; the rerun changes nothing,
    //    also when the droplets are found by their tag instead of created
    etcdctl(&l, "etcd-server-0", "put precious data-before-rerun");
    let plan = cairn_on_lab(w, &l.name, &["plan", RUNBOOK], &[]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan after run must be empty:\n{}",
        changes(&plan)
    );
    for vars in [&[][..], &["--var", "create_droplets=false"][..]] {
        let t = Instant::now();
        let args = [&["run", RUNBOOK][..], vars].concat();
        let rerun = cairn_on_lab(w, &l.name, &args, &[]);
        assert_eq!(rerun.status.code(), Some(0), "{}", changes(&rerun));
        assert!(
            text(&rerun).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
            "{vars:?}: {}",
            changes(&rerun)
        );
        eprintln!("rerun {vars:?}: {:.1}s", t.elapsed().as_secs_f64());
    }
    assert_eq!(
        etcdctl(&l, "etcd-server-2", "get precious --print-value-only"),
        "data-before-rerun"
    );

    // 5. the operator discovers (second tag, second cluster): the same file,
    //    written by cairn, a copy in the workspace, no token on the droplets
    let ops = ["ops-0", "ops-1", "ops-2"];
    let op_vars = [
        "--var",
        "discovery=operator",
        "--var",
        "tag=etcd-ops",
        "--var",
        "droplets=ops-0,ops-1,ops-2",
        "--var",
        "cluster=etcd-cluster-2",
    ];
    let t = Instant::now();
    let op = cairn_on_lab(w, &l.name, &[&["run", RUNBOOK][..], &op_vars].concat(), &[]);
    assert_eq!(op.status.code(), Some(0), "{}", changes(&op));
    assert!(
        text(&op).contains(
            "etcd cluster etcd-cluster-2 (droplets tagged etcd-ops, operator discovery): 3 members, verified"
        ),
        "{}",
        text(&op)
    );
    eprintln!("operator run: {:.1}s", t.elapsed().as_secs_f64());
    assert_members(&l, "ops-2", &ops);
    for n in ops {
        let on_node = ssh_ok(&l, n, "cat /etc/etcd/etcd-members");
        let copy =
            std::fs::read_to_string(w.join(format!(".cairn/files/etcd-members/etcd-ops/{n}")))
                .unwrap();
        assert_eq!(on_node, copy, "{n}");
        assert!(
            on_node.contains(&format!("ETCD_NAME=\"{n}.{domain}\"\n")),
            "{on_node}"
        );
        let absent = ssh_ok(
            &l,
            n,
            "test ! -e /etc/etcd/do-token && test ! -e /etc/systemd/system/etcd-discovery.service && echo none",
        );
        assert_eq!(absent, "none\n", "{n}");
    }
    let again = cairn_on_lab(w, &l.name, &[&["run", RUNBOOK][..], &op_vars].concat(), &[]);
    assert!(
        text(&again).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&again)
    );
    // the first cluster did not notice
    assert_members(&l, "etcd-server-2", &NAMES);

    // 6. a node-mode run on a third tag, killed mid-way (droplets made,
    //    discovery half installed), resumes to a verified cluster
    let ws3 = tempfile::tempdir().unwrap();
    let w3 = ws3.path();
    let k_vars = [
        "--var",
        "tag=etcd-k",
        "--var",
        "droplets=k-0,k-1,k-2",
        "--var",
        "cluster=etcd-cluster-3",
    ];
    let killed = cairn_on_lab(
        w3,
        &l.name,
        &[&["run", RUNBOOK][..], &k_vars].concat(),
        &[("CAIRN_FAULT_KILL", "applied:40")],
    );
    assert_eq!(
        killed.status.code(),
        None,
        "must die by SIGKILL: {}",
        text(&killed)
    );
    let t = Instant::now();
    let resumed = cairn_on_lab(w3, &l.name, &["resume"], &[]);
    assert_eq!(resumed.status.code(), Some(0), "{}", changes(&resumed));
    assert!(
        text(&resumed).contains(
            "etcd cluster etcd-cluster-3 (droplets tagged etcd-k, node discovery): 3 members, verified"
        ),
        "{}",
        text(&resumed)
    );
    eprintln!("resume: {:.1}s", t.elapsed().as_secs_f64());
    assert_members(&l, "k-0", &["k-0", "k-1", "k-2"]);
    let again = cairn_on_lab(w3, &l.name, &[&["run", RUNBOOK][..], &k_vars].concat(), &[]);
    assert!(
        text(&again).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&again)
    );

    // 7. cleanup, by tag: no droplet and no node left
    for tag in ["etcd", "etcd-ops", "etcd-k"] {
        let clean = cairn_on_lab(
            w,
            &l.name,
            &[
                "run",
                "etcd-do-discovery-cleanup",
                "--var",
                &format!("tag={tag}"),
            ],
            &[],
        );
        assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
        assert!(
            text(&clean).contains(&format!("removed 3 droplets tagged {tag}")),
            "{}",
            text(&clean)
        );
    }
    assert!(node_names(&l).is_empty(), "{:?}", node_names(&l));
    let plan = cairn_on_lab(w, &l.name, &["plan", "etcd-do-discovery-cleanup"], &[]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
}
