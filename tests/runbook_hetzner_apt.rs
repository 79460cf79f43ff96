//! etcd-hetzner-apt end to end on a lab: the Hetzner emulation boots real
//! nodes, apt installs etcd 3.5.30 (the default `etcd_version`, pinned, from
//! the lab's newer repository) and the runbook's own verification (health,
//! members, a write read back, strangers refused) must pass. Then: a rerun
//! changes nothing and keeps data; a version the hosts' sources lack fails
//! before anything is installed, naming the ways out; a run killed mid-way
//! resumes to the same healthy end with no duplicate servers; the cleanup
//! runbook removes everything. The package never starts its one-member etcd
//! (a policy-rc.d holds it while apt installs, removed after), so a fresh
//! host has no data dir to replace; a host where etcd was installed by hand
//! (the package's member running) still gets its data dir replaced, cairn's
//! policy-rc.d left by a cut-off install is removed, an admin's is kept.

mod common;

use common::{cairn_on_lab, lab, text};

use std::process::{Command, Output};

/// Servers in the emulation with both labels, via the API as any client sees it.
fn servers(l: &lab::LabHandle, cluster: &str) -> Vec<String> {
    let url = format!(
        "{}/servers?label_selector=cluster%3D{cluster}%2Cetcd%3Dtrue&per_page=50",
        l.var("HCLOUD_ENDPOINT")
    );
    let out = Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Authorization: Bearer {}", l.var("HCLOUD_TOKEN")))
        .arg(&url)
        .output()
        .unwrap();
    assert!(out.status.success(), "GET {url}: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<String> = v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

/// `cmd` on server `node` (by its public address, with the lab's key).
fn on_server(l: &lab::LabHandle, node: &str, cmd: &str) -> Output {
    l.ssh_to(&server_address(l, node), &l.key, cmd)
}

/// etcdctl on a member, with its own server certificate (as the tutorial does).
fn etcdctl(l: &lab::LabHandle, node: &str, args: &str) -> String {
    let out = l.ssh_to(
        &server_address(l, node),
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

fn server_address(l: &lab::LabHandle, node: &str) -> String {
    let out = Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Authorization: Bearer {}", l.var("HCLOUD_TOKEN")))
        .arg(format!("{}/servers?name={node}", l.var("HCLOUD_ENDPOINT")))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["servers"][0]["public_net"]["ipv4"]["ip"]
        .as_str()
        .unwrap_or_else(|| panic!("no server {node}: {v}"))
        .to_string()
}

fn vars(extra: &[String]) -> Vec<&str> {
    let mut out = Vec::new();
    for v in extra {
        out.push("--var");
        out.push(v.as_str());
    }
    out
}

#[test]
fn plan_run_rerun_kill_resume_cleanup() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("hapt"), 0);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();

    // 0. the default etcd is a safe, current 3.5 release
    let show = common::cairn(w, &["show", "etcd-hetzner-apt"]);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show));
    assert!(
        text(&show).contains("etcd_version (string; default \"3.5.30\")"),
        "{}",
        text(&show)
    );

    // 1. plan on a fresh lab: everything to create, nothing changed anywhere
    let plan = cairn_on_lab(
        w,
        &l.name,
        &["plan", "etcd-hetzner-apt", "--show-unchanged"],
        &[],
    );
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let p = text(&plan);
    for expect in [
        "+ create network network-1",
        "+ create server node-1",
        "+ create CA certificate cluster-1-etcd-ca",
        "/etc/default/etcd",
        "+ create file /etc/apt/sources.list.d/cairn-etcd.list",
        "+ create apt package etcd-server (3.5.30, its package version read after apt-get update",
        "? verify",
    ] {
        assert!(p.contains(expect), "plan lacks `{expect}`:\n{p}");
    }
    assert!(servers(&l, "cluster-1").is_empty(), "plan created servers");
    assert!(!w.join(".cairn").exists(), "plan wrote the workspace");

    // 2. run: verified cluster
    let run = cairn_on_lab(w, &l.name, &["run", "etcd-hetzner-apt"], &[]);
    let r = text(&run);
    assert_eq!(run.status.code(), Some(0), "{r}");
    assert!(
        r.contains("etcd cluster cluster-1: 3 members, verified"),
        "{r}"
    );
    assert!(
        !r.contains("- delete etcd data dir"),
        "the package started its one-member etcd at install:\n{r}"
    );
    assert_eq!(servers(&l, "cluster-1"), vec!["node-1", "node-2", "node-3"]);
    for n in ["node-1", "node-2", "node-3"] {
        let left = on_server(
            &l,
            n,
            "test ! -e /usr/sbin/policy-rc.d && test ! -e /var/lib/etcd/default.pristine-replaced-by-cairn",
        );
        assert_eq!(
            left.status.code(),
            Some(0),
            "{n}: a policy-rc.d left, or a pristine data dir replaced: {}",
            text(&left)
        );
    }
    for n in ["node-1", "node-3"] {
        let v = on_server(&l, n, "etcd --version; dpkg-query -W etcd-server");
        assert!(
            text(&v).contains("etcd Version: 3.5.30\n")
                && text(&v).contains("etcd-server\t3.5.30-"),
            "{n}: {}",
            text(&v)
        );
    }
    let members = etcdctl(&l, "node-2", "member list");
    assert_eq!(members.lines().count(), 3, "{members}");
    for n in ["node-1", "node-2", "node-3"] {
        assert!(
            members.contains(&format!("started, {n}, https://10.1.1.")),
            "{members}"
        );
    }

    // 3. data written before a rerun survives it; the rerun changes nothing
    etcdctl(&l, "node-1", "put precious data-before-rerun");
    let plan = cairn_on_lab(w, &l.name, &["plan", "etcd-hetzner-apt"], &[]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan after run must be empty:\n{}",
        text(&plan)
    );
    let rerun = cairn_on_lab(w, &l.name, &["run", "etcd-hetzner-apt"], &[]);
    let rr = text(&rerun);
    assert_eq!(
        rerun.status.code(),
        Some(0),
        "{}",
        rr.lines()
            .filter(|l| !l.contains("= ok"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        text(&rerun).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        text(&rerun)
    );
    assert_eq!(
        etcdctl(&l, "node-3", "get precious --print-value-only"),
        "data-before-rerun"
    );

    // 4. a second cluster, killed mid-way (after its servers exist), resumes
    let c2: Vec<String> = [
        "cluster=c2",
        "network=net-2",
        "ip_range=10.2.0.0/16",
        "subnet=10.2.1.0/24",
        "nodes=c2-1,c2-2,c2-3",
        "ssh_key_name=ssh-key-2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut args = vec!["run", "etcd-hetzner-apt"];
    args.extend(vars(&c2));

    // 4a. its servers' sources lack the version asked for: each host fails
    // before installing anything, naming what apt offers and the ways out
    let mut missing = args.clone();
    missing.extend(["--var", "etcd_version=3.5.16"]);
    let refused = cairn_on_lab(w, &l.name, &missing, &[]);
    let t = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{t}");
    for n in ["c2-1", "c2-2", "c2-3"] {
        let expect = format!(
            "{n}: the apt sources offer no etcd-server, etcd-client 3.5.16 \
             (apt-cache madison lists: etcd-server 3.5.30-"
        );
        assert!(t.contains(&expect), "no `{expect}` in:\n{t}");
    }
    for expect in [
        "nothing was installed: give --var apt_repository=URL",
        "or --var etcd_version=distro for what the host's own sources offer",
    ] {
        assert!(t.contains(expect), "no `{expect}` in:\n{t}");
    }
    let left = on_server(&l, "c2-2", "command -v etcd etcdctl; dpkg -l | grep etcd");
    assert_eq!(
        left.status.code(),
        Some(1),
        "etcd was installed on c2-2: {}",
        text(&left)
    );
    assert_eq!(text(&left), "", "etcd was installed on c2-2");

    // 4b. by hand before the run: etcd installed on c2-1 the tutorial's way
    // (the package's one-member etcd running), cairn's policy-rc.d left on
    // c2-2 by an install that was cut off, an admin's own on c2-3 (allows all)
    let by_hand = on_server(
        &l,
        "c2-1",
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >/dev/null \
         && systemctl is-active etcd && test -d /var/lib/etcd/default/member",
    );
    assert_eq!(by_hand.status.code(), Some(0), "{}", text(&by_hand));
    let mark = "# cairn: no service starts while apt installs (removed when it ends)";
    let leftover = on_server(
        &l,
        "c2-2",
        &format!("printf '#!/bin/sh\\n{mark}\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d"),
    );
    assert_eq!(leftover.status.code(), Some(0), "{}", text(&leftover));
    let admins = "#!/bin/sh\n# the admins own policy: every start allowed\nexit 0\n";
    let own = on_server(
        &l,
        "c2-3",
        &format!(
            "printf '{}' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d",
            admins.replace('\n', "\\n")
        ),
    );
    assert_eq!(own.status.code(), Some(0), "{}", text(&own));

    let killed = cairn_on_lab(w, &l.name, &args, &[("CAIRN_FAULT_KILL", "applied:9")]);
    assert_eq!(
        killed.status.code(),
        None,
        "must die by SIGKILL: {}",
        text(&killed)
    );
    let resumed = cairn_on_lab(w, &l.name, &["resume"], &[]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("etcd cluster c2: 3 members, verified"),
        "{}",
        text(&resumed)
    );
    assert_eq!(
        servers(&l, "c2"),
        vec!["c2-1", "c2-2", "c2-3"],
        "duplicates or missing servers"
    );
    // the hand-installed member's pristine data dir was moved aside (only
    // there and on c2-3, whose admin's policy let the package start etcd)
    let replaced: Vec<&str> = ["c2-1", "c2-2", "c2-3"]
        .into_iter()
        .filter(|n| {
            let d = "/var/lib/etcd/default.pristine-replaced-by-cairn";
            on_server(&l, n, &format!("test -d {d}")).status.code() == Some(0)
        })
        .collect();
    assert_eq!(replaced, ["c2-1", "c2-3"]);
    let gone = on_server(&l, "c2-2", "test ! -e /usr/sbin/policy-rc.d");
    assert_eq!(
        gone.status.code(),
        Some(0),
        "cairn's leftover policy-rc.d is still on c2-2"
    );
    let kept = on_server(&l, "c2-3", "cat /usr/sbin/policy-rc.d");
    assert_eq!(
        String::from_utf8_lossy(&kept.stdout),
        admins,
        "the admin's policy-rc.d changed"
    );

    // 5. cleanup removes both clusters' servers, networks and keys
    for (cluster, net, key) in [
        ("cluster-1", "network-1", "ssh-key-1"),
        ("c2", "net-2", "ssh-key-2"),
    ] {
        let c = cairn_on_lab(
            w,
            &l.name,
            &[
                "run",
                "etcd-hetzner-apt-cleanup",
                "--var",
                &format!("cluster={cluster}"),
                "--var",
                &format!("network={net}"),
                "--var",
                &format!("ssh_key_name={key}"),
            ],
            &[],
        );
        assert_eq!(c.status.code(), Some(0), "{}", text(&c));
        assert!(servers(&l, cluster).is_empty());
    }
}
