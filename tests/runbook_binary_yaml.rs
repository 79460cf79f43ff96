//! etcd-binary-yaml end to end on labs (tutorial 004): etcd, etcdctl and
//! etcdutl 3.5.30 from the lab's release mirror, checked against its
//! SHA256SUMS; /etc/etcd/etcd.conf YAML; the runbook's own verification must
//! pass. Then: a rerun changes nothing and keeps data and the running
//! processes; an even-sized inventory is refused and changes nothing; a run
//! killed mid-way resumes to the same healthy end. The tutorial's six hosts
//! plan offline.

mod common;

use common::{cairn, cairn_env, lab, text};

use std::path::Path;
use std::process::Output;

const RUNBOOK: &str = "etcd-binary-yaml";

/// The lines of a run's output that are not no-ops, for failure messages.
fn changes(o: &Output) -> String {
    text(o)
        .lines()
        .filter(|l| !l.contains("= ok"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// etcdctl on a member over its loopback client URL, with its own certificate.
fn etcdctl(l: &lab::LabHandle, node: &str, args: &str) -> String {
    l.ssh_ok(
        node,
        &format!(
            "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/etcd-ca.crt \
             --cert=/etc/etcd/pki/{node}.crt --key=/etc/etcd/pki/{node}.key {args}"
        ),
    )
    .trim()
    .to_string()
}

/// An inventory of `hosts` written to `path`.
fn write_inventory(path: &Path, hosts: &[cairn::host::Host]) {
    #[derive(serde::Serialize)]
    struct Inventory<'a> {
        hosts: &'a [cairn::host::Host],
    }
    std::fs::write(path, toml::to_string(&Inventory { hosts }).unwrap()).unwrap();
}

/// Nothing of etcd on `node`: no binaries, release, configuration, user or data.
fn assert_untouched(l: &lab::LabHandle, node: &str) {
    let out = l.ssh_ok(
        node,
        "for p in /usr/local/bin/etcd /usr/local/bin/etcdctl /opt/etcd /etc/etcd /var/lib/etcd \
         /etc/systemd/system/etcd.service; do test -e $p && echo \"$p exists\"; done; \
         id etcd >/dev/null 2>&1 && echo 'user etcd exists'; true",
    );
    assert_eq!(out.trim(), "", "{node} was changed");
}

fn main_pid(l: &lab::LabHandle, node: &str) -> String {
    l.ssh_ok(node, "systemctl show -p MainPID --value etcd")
        .trim()
        .to_string()
}

#[test]
fn plan_run_verify_rerun() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("byaml"), 3);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let mirror = l.var("CAIRN_RELEASE_MIRROR").to_string();
    let run_args = ["run", RUNBOOK, "--lab", l.name.as_str()];
    let plan_args = ["plan", RUNBOOK, "--lab", l.name.as_str()];
    let full_plan_args = [&plan_args[..], &["--show-unchanged"]].concat();

    // 1. plan on a fresh lab: every action listed, nothing changed anywhere
    let plan = cairn(w, &full_plan_args);
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    for expect in [
        format!("= ok read `curl -fsSL -- {mirror}/etcd-io/etcd/releases/download/v3.5.30/SHA256SUMS`"),
        format!("+ create file /opt/etcd/etcd-v3.5.30-linux-amd64.tar.gz (0644) (from {mirror}/etcd-io/etcd/releases/download/v3.5.30/etcd-v3.5.30-linux-amd64.tar.gz)"),
        "+ create unpack /opt/etcd/etcd-v3.5.30-linux-amd64.tar.gz into /opt/etcd/etcd-v3.5.30-linux-amd64".into(),
        "> run `install -v -m 0755 -o root -g root -- /opt/etcd/etcd-v3.5.30-linux-amd64/etcd".into(),
        "> run `useradd --system".into(),
        "+ create dir /var/lib/etcd (0700 etcd:etcd)".into(),
        "+ create CA certificate etcd-cluster-1-etcd-ca".into(),
        "(CN=etcd-ca; CA; p256;".into(),
        "+ create certificate etcd-cluster-1-apiserver-etcd-client".into(),
        "(CN=kube-apiserver-etcd-client; usage client; p256;".into(),
        "+ create file /etc/etcd/pki/node-2.key (0600 etcd:etcd)".into(),
        "+ create file /etc/etcd/etcd.conf (0644 root:root)".into(),
        "+listen-metrics-urls: \"http://".into(),
        "+ExecStart=/usr/local/bin/etcd --config-file /etc/etcd/etcd.conf".into(),
        "> run systemctl daemon-reload".into(),
        "> run restart unit etcd".into(),
        "? verify etcd members are node-1, node-2, node-3".into(),
        format!("? verify etcd https://{}:2379 via node-3 status", l.node("node-3").address),
        "refuses a client without a certificate".into(),
    ] {
        assert!(p.contains(&expect), "plan lacks `{expect}`:\n{p}");
    }
    let n2 = l.node("node-2");
    assert!(
        p.contains(&format!(
            "+ create certificate etcd-cluster-1-node-2 (pki/etcd-cluster-1-node-2.crt, key pki/etcd-cluster-1-node-2.key) \
             (CN=node-2; DNS node-2 {}; IP {} 127.0.0.1; usage server,client; p256;",
            n2.fqdn, n2.address
        )),
        "{p}"
    );
    assert!(
        p.contains(&format!(
            "+advertise-client-urls: \"https://{}:2379\"\n",
            n2.address
        )),
        "only the node's own address is advertised:\n{p}"
    );
    assert!(!w.join(".cairn").exists(), "plan wrote the workspace");
    for n in ["node-1", "node-2", "node-3"] {
        assert_untouched(&l, n);
    }

    // 2. run: a verified cluster
    let run = cairn(w, &run_args);
    let r = text(&run);
    assert_eq!(run.status.code(), Some(0), "{r}");
    assert!(
        r.contains("etcd cluster etcd-cluster-1: 3 members, verified"),
        "{r}"
    );
    assert_eq!(
        r.matches(", leader\n").count(),
        1,
        "exactly one leader:\n{r}"
    );

    // as the tutorial checks it, on the nodes themselves
    let members = etcdctl(&l, "node-2", "member list");
    assert_eq!(members.lines().count(), 3, "{members}");
    for node in &l.nodes {
        let line = format!(
            "started, {n}, https://{a}:2380, https://{a}:2379, false",
            n = node.name,
            a = node.address
        );
        assert!(
            members.lines().any(|m| m.ends_with(&line)),
            "no `{line}` (127.0.0.1 must not be advertised):\n{members}"
        );
        let health = l.ssh_ok(
            "node-1",
            &format!("curl -fsS http://{}:2381/health", node.address),
        );
        assert!(
            health.contains(r#""health":"true""#),
            "{}: {health}",
            node.name
        );
    }
    let status = etcdctl(&l, "node-1", "endpoint status --cluster -w json");
    assert_eq!(status.matches("\"leader\":").count(), 3, "{status}");
    assert!(status.contains("\"version\":\"3.5.30\""), "{status}");
    let on_node = l.ssh_ok(
        "node-3",
        "stat -c '%n %a %U' /usr/local/bin/etcd /usr/local/bin/etcdctl /usr/local/bin/etcdutl /var/lib/etcd \
         /etc/etcd/pki/node-3.key; ps -o user= -C etcd; etcdutl version | head -1",
    );
    assert_eq!(
        on_node.trim(),
        "/usr/local/bin/etcd 755 root\n/usr/local/bin/etcdctl 755 root\n/usr/local/bin/etcdutl 755 root\n\
         /var/lib/etcd 700 etcd\n/etc/etcd/pki/node-3.key 600 etcd\netcd\netcdutl version: 3.5.30"
    );

    // the kube-apiserver's client certificate is left in the workspace
    let client = cairn::primitives::pki::inspect(
        "pki/etcd-cluster-1-apiserver-etcd-client.crt",
        &w.join(".cairn"),
    )
    .unwrap();
    assert_eq!(client.cn, "kube-apiserver-etcd-client");
    assert_eq!(client.usages, vec!["client".to_string()]);
    assert_eq!(client.key, "p256");
    assert!(w
        .join(".cairn/pki/etcd-cluster-1-apiserver-etcd-client.key")
        .exists());

    // 3. data written before a rerun survives it; the rerun changes nothing
    // and restarts nothing
    etcdctl(&l, "node-1", "put precious data-before-rerun");
    let pids: Vec<String> = l.nodes.iter().map(|n| main_pid(&l, &n.name)).collect();
    let plan = cairn(w, &plan_args);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan after run must be empty:\n{}",
        changes(&plan)
    );
    let rerun = cairn(w, &run_args);
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
    let after: Vec<String> = l.nodes.iter().map(|n| main_pid(&l, &n.name)).collect();
    assert_eq!(pids, after, "a rerun restarted etcd");
}

#[test]
fn even_size_refused_then_killed_run_resumes() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("byaml-kill"), 3);

    // 1. two hosts: refused with the quorum explanation, nothing changed
    let ws = tempfile::tempdir().unwrap();
    let two = ws.path().join("two.toml");
    write_inventory(&two, &l.hosts()[..2]);
    let two = two.to_str().unwrap();
    for verb in ["plan", "run"] {
        let out = cairn(
            ws.path(),
            &[verb, RUNBOOK, "--lab", &l.name, "--inventory", two],
        );
        let o = text(&out);
        assert_eq!(out.status.code(), Some(1), "{verb}: {o}");
        assert!(
            o.contains("a cluster of 2 members is refused: quorum is 2, so it tolerates only 0 failed member(s), the same as 1 members"),
            "{verb}: {o}"
        );
        // no step at all: no action line (`+ create ...`, `> run ...`, `= ok ...`)
        let acted = [
            "+ create ",
            "~ change ",
            "- delete ",
            "> run ",
            "= ok ",
            "? verify ",
        ];
        assert!(
            !o.lines().any(|l| acted.iter().any(|a| l.contains(a))),
            "{verb} took steps: {o}"
        );
    }
    assert!(
        !ws.path().join(".cairn/pki").exists(),
        "refused run made certificates"
    );
    for n in ["node-1", "node-2", "node-3"] {
        assert_untouched(&l, n);
    }

    // 2. three hosts, killed mid-way (inside a step, not journaled), resumed
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let killed = cairn_env(
        w,
        &["run", RUNBOOK, "--lab", &l.name],
        &[("CAIRN_FAULT_KILL", "applied:20")],
    );
    assert_eq!(
        killed.status.code(),
        None,
        "must die by SIGKILL: {}",
        text(&killed)
    );
    let resumed = cairn(w, &["resume"]);
    let r = text(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{r}");
    assert!(
        r.contains("etcd cluster etcd-cluster-1: 3 members, verified"),
        "{r}"
    );
    let members = etcdctl(&l, "node-3", "member list");
    assert_eq!(members.lines().count(), 3, "{members}");
    assert_eq!(members.matches(", started, ").count(), 3, "{members}");

    // and the resumed cluster is the runbook's end state: a rerun changes nothing
    let rerun = cairn(w, &["run", RUNBOOK, "--lab", &l.name]);
    assert_eq!(rerun.status.code(), Some(0), "{}", changes(&rerun));
    assert!(
        text(&rerun).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&rerun)
    );
}

#[test]
fn offline_plan_of_the_tutorials_six_hosts() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let six: Vec<cairn::host::Host> = [
        "10.103.1.101",
        "10.103.1.102",
        "10.103.1.103",
        "10.103.1.201",
        "10.103.1.202",
        "10.103.1.203",
    ]
    .iter()
    .enumerate()
    .map(|(i, ip)| {
        let mut h = cairn::host::Host::new(format!("k8s1etcd{}", i + 1), *ip);
        h.fqdn = Some(format!("k8s1etcd{}.kloud.lan", i + 1));
        h
    })
    .collect();
    write_inventory(&w.join("hosts.toml"), &six);

    // six is even: refused, with the way to build it anyway
    let refused = cairn(
        w,
        &["plan", RUNBOOK, "--offline", "--inventory", "hosts.toml"],
    );
    let o = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{o}");
    assert!(
        o.contains("a cluster of 6 members is refused: quorum is 4"),
        "{o}"
    );
    assert!(
        o.contains("--var allow_even_size=true builds it anyway"),
        "{o}"
    );

    let plan = cairn(
        w,
        &[
            "plan",
            RUNBOOK,
            "--offline",
            "--inventory",
            "hosts.toml",
            "--var",
            "allow_even_size=true",
            "--show-unchanged",
        ],
    );
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    assert!(p.contains("warning: 6 members (allow_even_size)"), "{p}");
    assert!(p.contains("from https://github.com/etcd-io/etcd/releases/download/v3.5.30/etcd-v3.5.30-linux-amd64.tar.gz"), "{p}");
    let initial = "+initial-cluster: \"k8s1etcd1=https://10.103.1.101:2380,k8s1etcd2=https://10.103.1.102:2380,\
                   k8s1etcd3=https://10.103.1.103:2380,k8s1etcd4=https://10.103.1.201:2380,\
                   k8s1etcd5=https://10.103.1.202:2380,k8s1etcd6=https://10.103.1.203:2380\"";
    assert_eq!(p.matches(initial).count(), 6, "{p}");
    for h in &six {
        assert!(
            p.contains(&format!("\n{}:\n", h.name)),
            "no actions for {}:\n{p}",
            h.name
        );
        assert!(
            p.contains(&format!(
                "(CN={n}; DNS {n} {n}.kloud.lan; IP {a} 127.0.0.1; usage server,client; p256;",
                n = h.name,
                a = h.address
            )),
            "{p}"
        );
    }
    assert!(p.contains("? verify etcd members are k8s1etcd1, k8s1etcd2, k8s1etcd3, k8s1etcd4, k8s1etcd5, k8s1etcd6"), "{p}");
    assert!(
        !w.join(".cairn").exists(),
        "an offline plan wrote the workspace"
    );
}

#[test]
fn defaults_to_3_5_30_and_refuses_unsafe_versions_unless_allowed() {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    // `cairn show` of every runbook that installs release binaries names 3.5.30.
    for (runbook, line) in [
        (RUNBOOK, "v3.5.30"),
        ("etcd-debian-binary", "3.5.30"),
        ("etcd-do-discovery", "3.5.30"),
        ("etcd-static-pods", "v3.5.30"),
    ] {
        let show = cairn(w, &["show", runbook]);
        let s = text(&show);
        assert_eq!(show.status.code(), Some(0), "{s}");
        assert!(s.contains(line), "{runbook}: {s}");
        assert!(!s.contains("3.5.1 "), "{runbook}: {s}");
        assert!(s.contains("allow_unsafe_version"), "{runbook}: {s}");
    }

    let three: Vec<cairn::host::Host> = ["10.103.1.101", "10.103.1.102", "10.103.1.103"]
        .iter()
        .enumerate()
        .map(|(i, ip)| cairn::host::Host::new(format!("etcd{}", i + 1), *ip))
        .collect();
    write_inventory(&w.join("hosts.toml"), &three);
    let plan = |vars: &[&str]| {
        let mut args = vec!["plan", RUNBOOK, "--offline", "--inventory", "hosts.toml"];
        for v in vars {
            args.extend(["--var", v]);
        }
        cairn(w, &args)
    };

    let default = plan(&[]);
    let d = text(&default);
    assert_eq!(default.status.code(), Some(2), "{d}");
    assert!(d.contains("from https://github.com/etcd-io/etcd/releases/download/v3.5.30/etcd-v3.5.30-linux-amd64.tar.gz"), "{d}");

    let refused = plan(&["version=v3.5.1"]);
    let r = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{r}");
    assert!(r.contains("etcd 3.5.1 is refused: 3.5.0-3.5.2 can become inconsistent after a crash (etcd-io/etcd#13766); use 3.5.4 or newer"), "{r}");
    assert!(r.contains("--var allow_unsafe_version=true"), "{r}");
    assert!(
        !r.contains("+ create"),
        "a refused version planned changes: {r}"
    );

    let allowed = plan(&["version=v3.5.1", "allow_unsafe_version=true"]);
    let a = text(&allowed);
    assert_eq!(allowed.status.code(), Some(2), "{a}");
    assert!(
        a.contains("warning: etcd 3.5.1 is unfit for production"),
        "{a}"
    );
    assert!(a.contains("from https://github.com/etcd-io/etcd/releases/download/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz"), "{a}");
}
