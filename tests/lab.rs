//! `cairn lab` end to end: real nodes (systemd-nspawn + sshd), the apt and
//! release mirrors, service restarts across nodes, cloud-added nodes with
//! private networks, and a teardown that leaves nothing behind.
//! Needs root and the lab prerequisites (`.ci/lab-prereqs.sh`).

mod common;

use common::lab;

use cairn_lab::naming::LabNames;
use cairn_lab::{LabState, NodeSpec, PrivateAttachment};
use std::path::Path;
use std::process::Command;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn nodes_answer_ssh_with_systemd_running_and_resolve_each_other() {
    if lab::skip() {
        return;
    }
    let lab = lab::lab();
    assert_eq!(lab.nodes.len(), 3, "inventory lists 3 nodes");
    let domain = lab.var("CAIRN_LAB_DOMAIN").to_string();
    assert_eq!(domain, format!("{}.lab", lab.name));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&lab.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "lab key {} mode", lab.key.display());
    let mode = std::fs::metadata(&lab.env_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "env file mode");
    // (Other tests add and remove cloud nodes concurrently; look at ours.)
    let ours: Vec<_> = lab
        .hosts()
        .into_iter()
        .filter(|h| h.name.starts_with("node-"))
        .collect();
    assert_eq!(ours.len(), 3);
    for h in ours {
        assert_eq!(h.user, "root");
        assert_eq!(h.host_keys, cairn::host::HostKeys::Workspace);
        assert_eq!(h.key.as_deref(), Some(lab.key.as_path()));
        assert!(h.groups.contains(&"lab".to_string()));
    }
    let names = LabNames::new(&lab.name);
    for n in &lab.nodes {
        let state = lab.ssh_ok(&n.name, "systemctl is-system-running || true");
        assert!(
            matches!(state.trim(), "running" | "degraded"),
            "{}: systemd is {state:?}",
            n.name
        );
        assert_eq!(lab.ssh_ok(&n.name, "hostname").trim(), n.name);
        assert_eq!(n.fqdn, format!("{}.{domain}", n.name));
        assert_eq!(lab.ssh_ok(&n.name, "hostname -f").trim(), n.fqdn);
        assert!(lab
            .ssh_ok(&n.name, "getent ahostsv4 localhost")
            .starts_with("127.0.0.1"));
        for other in &lab.nodes {
            for name in [&other.name, &other.fqdn] {
                let line = lab.ssh_ok(&n.name, &format!("getent hosts {name}"));
                assert!(
                    line.starts_with(&format!("{} ", other.address)),
                    "{} resolves {name} as {line:?}, want {}",
                    n.name,
                    other.address
                );
            }
        }
        // Only the lab mirror is an apt source, and there is no default route.
        let sources = lab.ssh_ok(
            &n.name,
            "cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep '^deb' || true",
        );
        // (the newer repository, which the apt upgrade test adds on node-3
        // while this test may run, is the lab mirror's too)
        let mirror = lab.var("CAIRN_APT_MIRROR");
        let base = format!("deb [trusted=yes] {mirror} ./");
        let root = mirror.trim_end_matches("/debian");
        let lines: Vec<&str> = sources.lines().map(str::trim).collect();
        assert!(lines.contains(&base.as_str()), "{}: {sources}", n.name);
        for line in &lines {
            assert!(
                line.starts_with(&format!("deb [trusted=yes] {root}/")),
                "{}: an apt source outside the lab mirror: {line}",
                n.name
            );
        }
        assert!(
            !lab.ssh_ok(&n.name, "ip route").contains("default"),
            "{} has a default route",
            n.name
        );
        // The node's systemd lives in its own cgroup (the cgroup trap of FACTS.md).
        let any_payload = cairn_lab::cgroup::hierarchies().iter().all(|h| {
            h.join(names.cgroup())
                .join(&n.name)
                .join("payload")
                .is_dir()
        });
        assert!(any_payload, "{} has no payload cgroup of its own", n.name);
    }
    // Nodes reach the mirror but no other service of the host: a listener on
    // all addresses, which the host itself reaches through the gateway, is
    // closed to them on the gateway and on the host's other addresses.
    let gw = lab
        .var("CAIRN_RELEASE_MIRROR")
        .trim_start_matches("http://")
        .split(':')
        .next()
        .unwrap()
        .to_string();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(
        std::net::TcpStream::connect((gw.as_str(), port)).is_ok(),
        "the host cannot reach its own listener on {gw}:{port}"
    );
    // The host's own addresses outside the lab (never anything off-machine).
    let addrs = text(
        &Command::new("ip")
            .args(["-4", "-o", "addr", "show", "scope", "global"])
            .output()
            .unwrap()
            .stdout,
    );
    let outside: Vec<String> = addrs
        .lines()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "inet").nth(1))
        .filter_map(|a| a.split('/').next())
        .filter(|a| !a.starts_with("10.200."))
        .map(String::from)
        .collect();
    let mut script = format!(
        "curl -fsS -m 5 -o /dev/null {m}/healthz && echo mirror-ok; \
         timeout 3 bash -c '</dev/tcp/{gw}/{port}' 2>/dev/null && echo reached-host-port; ",
        m = lab.var("CAIRN_RELEASE_MIRROR"),
    );
    for a in &outside {
        script.push_str(&format!(
            "timeout 3 bash -c '</dev/tcp/{a}/{port}' 2>/dev/null && echo reached-outside-{a}; "
        ));
    }
    script.push_str("true");
    let probe = lab.ssh("node-1", &script);
    let out = text(&probe.stdout);
    assert!(
        out.contains("mirror-ok"),
        "node-1 cannot reach the mirror: {out} {}",
        text(&probe.stderr)
    );
    assert!(
        !out.contains("reached-host-port"),
        "node-1 reached a host service on {gw}:{port}: {out}"
    );
    assert!(
        !out.contains("reached-outside"),
        "node-1 reached an address outside the lab ({outside:?}): {out}"
    );
    drop(listener);
}

#[test]
fn apt_installs_etcd_from_the_lab_mirror() {
    if lab::skip() {
        return;
    }
    let lab = lab::lab();
    let out = lab.ssh_ok(
        "node-1",
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >/dev/null && etcdctl version && systemctl is-active etcd",
    );
    assert!(
        out.contains("etcdctl version: 3.4.23"),
        "etcdctl says {out}"
    );
    assert!(out.trim_end().ends_with("active"), "etcd unit: {out}");
    // The container runtime packages are served too.
    let policy = lab.ssh_ok("node-1", "apt-cache policy containerd runc");
    assert!(
        policy.contains(lab.var("CAIRN_APT_MIRROR")),
        "containerd/runc not in the mirror: {policy}"
    );
}

#[test]
fn apt_upgrades_etcd_from_the_newer_repository() {
    if lab::skip() {
        return;
    }
    let lab = lab::lab();
    let before = lab.ssh_ok(
        "node-3",
        "apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server etcd-client >/dev/null \
         && etcd --version && etcdctl put k v >/dev/null && apt-cache policy etcd-server",
    );
    assert!(
        before.contains("etcd Version: 3.4.23"),
        "installed: {before}"
    );
    assert!(
        !before.contains("3.5.30"),
        "the default repository offers the newer package: {before}"
    );
    let newer = lab.var("CAIRN_APT_MIRROR_NEWER");
    let after = lab.ssh_ok(
        "node-3",
        &format!(
            "echo 'deb [trusted=yes] {newer} ./' > /etc/apt/sources.list.d/newer.list && apt-get update -q >/dev/null \
             && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold etcd-server etcd-client >/dev/null \
             && etcd --version && etcdctl version && systemctl is-active etcd && etcdctl get --print-value-only k"
        ),
    );
    assert!(after.contains("etcd Version: 3.5.30"), "upgraded: {after}");
    assert!(
        after.contains("etcdctl version: 3.5.30"),
        "upgraded: {after}"
    );
    assert!(
        after.trim_end().ends_with("active\nv"),
        "etcd after the upgrade (unit state, then the value written before): {after}"
    );
}

#[test]
fn release_mirror_tarballs_verify_and_etcd_runs() {
    if lab::skip() {
        return;
    }
    let lab = lab::lab();
    let base = lab.var("CAIRN_RELEASE_MIRROR");
    for (version, bins) in [
        ("3.5.1", "etcd etcdctl etcdutl"),
        ("3.4.23", "etcd etcdctl"),
        ("3.5.16", "etcd etcdctl etcdutl"),
        ("3.5.30", "etcd etcdctl etcdutl"),
    ] {
        let dir = format!("{base}/etcd-io/etcd/releases/download/v{version}");
        let tar = format!("etcd-v{version}-linux-amd64");
        let out = lab.ssh_ok(
            "node-2",
            &format!(
                "set -e; d=$(mktemp -d); cd $d; curl -fsSO {dir}/{tar}.tar.gz; curl -fsSO {dir}/SHA256SUMS; \
                 sha256sum -c SHA256SUMS; tar xzf {tar}.tar.gz; ls {tar}; {tar}/etcd --version; \
                 for b in {bins}; do test -x {tar}/$b; done; rm -rf $d"
            ),
        );
        assert!(
            out.contains(&format!("{tar}.tar.gz: OK")),
            "checksum of {version}: {out}"
        );
        assert!(
            out.contains(&format!("etcd Version: {version}")),
            "etcd --version of {version}: {out}"
        );
    }
    // A corrupted download is caught by the same check (the test can fail).
    let bad = lab.ssh(
        "node-2",
        &format!(
            "set -e; d=$(mktemp -d); cd $d; curl -fsSO {base}/etcd-io/etcd/releases/download/v3.5.1/SHA256SUMS; \
             echo garbage > etcd-v3.5.1-linux-amd64.tar.gz; sha256sum -c SHA256SUMS"
        ),
    );
    assert!(
        !bad.status.success(),
        "a corrupt tarball passed sha256sum -c"
    );
}

#[test]
fn stop_start_cycles_across_nodes_never_fail() {
    if lab::skip() {
        return;
    }
    let lab = lab::lab();
    let unit =
        "[Unit]\nDescription=cairn lab cycle test\n[Service]\nExecStart=/bin/sleep infinity\n";
    for n in &lab.nodes {
        lab.ssh_ok(
            &n.name,
            &format!("printf '{unit}' > /etc/systemd/system/cairn-cycle.service && systemctl daemon-reload && systemctl start cairn-cycle"),
        );
    }
    // 48 cycles: 16 per node, all three nodes concurrently (the cgroup trap
    // made concurrent stops on one node break starts on another).
    let failures: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = lab
            .nodes
            .iter()
            .map(|n| {
                s.spawn(move || {
                    let mut f = Vec::new();
                    for i in 0..16 {
                        let out = lab.ssh(
                            &n.name,
                            "systemctl stop cairn-cycle && systemctl start cairn-cycle && systemctl is-active cairn-cycle",
                        );
                        if !out.status.success() || text(&out.stdout).trim() != "active" {
                            f.push(format!("{} cycle {i}: {} {}", n.name, text(&out.stdout), text(&out.stderr)));
                        }
                    }
                    f
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        failures.is_empty(),
        "{} of 48 cycles failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for n in &lab.nodes {
        let restarts = lab.ssh_ok(
            &n.name,
            "journalctl -u cairn-cycle --no-pager | grep -c 'Started cairn-cycle' || true",
        );
        assert!(
            restarts.trim().parse::<u32>().unwrap_or(0) >= 17,
            "{}: {restarts}",
            n.name
        );
        let failed = lab.ssh_ok(
            &n.name,
            "journalctl --no-pager | grep -c 'status=219/CGROUP' || true",
        );
        assert_eq!(
            failed.trim(),
            "0",
            "{}: cgroup failures in the journal",
            n.name
        );
    }
}

fn keygen(path: &Path) -> String {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

#[test]
fn cloud_nodes_join_with_keys_private_network_and_names() {
    if lab::skip() {
        return;
    }
    let lab = lab::lab();
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("id_ed25519");
    let pubkey = keygen(&key);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = LabState::new(&lab.name).unwrap();
    let private = |addr: &str| PrivateAttachment {
        network: "net-1".into(),
        cidr: "10.1.0.0/16".into(),
        address: addr.into(),
    };
    let (a, b) = rt.block_on(async {
        let a = state
            .add_node(NodeSpec {
                name: "cloud-a".into(),
                authorized_keys: vec![pubkey.clone()],
                private_networks: vec![private("10.1.1.2")],
                ..Default::default()
            })
            .await
            .expect("add cloud-a");
        let b = state
            .add_node(NodeSpec {
                name: "cloud-b".into(),
                authorized_keys: vec![pubkey.clone()],
                private_networks: vec![private("10.1.1.3")],
                ..Default::default()
            })
            .await
            .expect("add cloud-b");
        (a, b)
    });
    assert_eq!(a.fqdn, format!("cloud-a.{}.lab", lab.name));
    assert_eq!(
        a.private,
        vec![("net-1".to_string(), "10.1.1.2".to_string())]
    );
    // The key given at create time is accepted.
    let out = lab.ssh_to(&a.address, &key, "hostname");
    assert!(
        out.status.success(),
        "ssh with the create-time key: {}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout).trim(), "cloud-a");
    // ... and not on a node created without it.
    let out = lab.ssh_to(&lab.node("node-1").address, &key, "true");
    assert!(
        !out.status.success(),
        "node-1 accepted a key it was not given"
    );
    // Every node resolves the new nodes.
    for n in ["node-1", "node-3"] {
        let line = lab.ssh_ok(n, &format!("getent hosts {}", b.fqdn));
        assert!(
            line.starts_with(&format!("{} ", b.address)),
            "{n} resolves {}: {line:?}",
            b.fqdn
        );
    }
    // The private network connects cloud-a and cloud-b, and only them.
    let out = lab.ssh_to(
        &a.address,
        &key,
        "ip -4 -o addr show dev eth1; timeout 3 bash -c '</dev/tcp/10.1.1.3/22' && echo reached",
    );
    assert!(
        text(&out.stdout).contains("10.1.1.2/16"),
        "cloud-a eth1: {}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stdout).contains("reached"),
        "cloud-a cannot reach cloud-b privately: {}",
        text(&out.stderr)
    );
    let out = lab.ssh(
        "node-1",
        "timeout 3 bash -c '</dev/tcp/10.1.1.3/22' && echo reached || echo unreachable",
    );
    assert!(
        text(&out.stdout).contains("unreachable"),
        "node-1 reached the private network"
    );
    // The private bridge is not in the host's namespace.
    let host_addrs = text(
        &Command::new("ip")
            .args(["-o", "addr"])
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        !host_addrs.contains("10.1."),
        "private range visible on the host: {host_addrs}"
    );
    // The inventory lists them in group cloud.
    assert!(lab
        .hosts()
        .iter()
        .any(|h| h.name == "cloud-b" && h.groups == ["cloud"]));

    rt.block_on(async {
        state.remove_node("cloud-a").await.expect("remove cloud-a");
        state.remove_node("cloud-b").await.expect("remove cloud-b");
    });
    let hosts = lab.ssh_ok("node-1", "cat /etc/hosts");
    assert!(
        !hosts.contains("cloud-a"),
        "cloud-a still in node-1's /etc/hosts:\n{hosts}"
    );
    let names = LabNames::new(&lab.name);
    assert!(!Path::new("/run/netns")
        .join(names.node_netns("cloud-a"))
        .exists());
    assert!(lab.hosts().iter().all(|h| !h.name.starts_with("cloud-")));
}

/// Everything of lab `name` found by looking at the machine directly.
fn traces(name: &str) -> Vec<String> {
    let names = LabNames::new(name);
    let mut out = Vec::new();
    let netns = text(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    );
    out.extend(
        netns
            .lines()
            .filter(|l| l.contains(&format!("cairn-{name}-")))
            .map(|l| format!("netns {l}")),
    );
    let links = text(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    );
    out.extend(
        links
            .lines()
            .filter(|l| l.contains(&names.bridge()) || l.contains(&names.veth_prefix()))
            .map(|l| format!("link {l}")),
    );
    let cg = text(
        &Command::new("find")
            .args(["/sys/fs/cgroup", "-type", "d", "-name", &names.cgroup()])
            .output()
            .unwrap()
            .stdout,
    );
    out.extend(cg.lines().map(|l| format!("cgroup {l}")));
    let ps = text(
        &Command::new("ps")
            .args(["-eo", "pid=,stat=,args="])
            .output()
            .unwrap()
            .stdout,
    );
    let dir = format!("/var/lib/cairn/labs/{name}/");
    out.extend(
        ps.lines()
            .filter(|l| l.contains(&dir) || l.ends_with(&format!("lab serve --name {name}")))
            .map(|l| format!("process {l}")),
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    out.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&dir))
            .map(|l| format!("mount {l}")),
    );
    if Path::new(&dir).exists() {
        out.push(format!("directory {dir}"));
    }
    out
}

#[test]
fn up_is_idempotent_and_down_leaves_nothing() {
    if lab::skip() {
        return;
    }
    let name = lab::unique_name("down");
    lab::own(&name);
    let first = lab::start(&name, 2);
    let t = traces(&name);
    for what in ["netns", "link", "cgroup", "process", "mount"] {
        assert!(
            t.iter().any(|x| x.starts_with(what)),
            "no {what} found while up: {t:#?}"
        );
    }
    let nspawns = t.iter().filter(|x| x.contains("systemd-nspawn")).count();
    assert_eq!(nspawns, 2, "{t:#?}");
    // A second up changes nothing.
    lab::cairn_lab(&["up", "--nodes", "2", "--name", &name]);
    let second = lab::LabHandle::open(&name);
    let addrs = |h: &lab::LabHandle| {
        h.nodes
            .iter()
            .map(|n| n.address.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(addrs(&first), addrs(&second));
    assert_eq!(
        traces(&name)
            .iter()
            .filter(|x| x.contains("systemd-nspawn"))
            .count(),
        2,
        "second up started more nodes"
    );
    // Status works and shows the nodes running.
    let status = text(&lab::cairn_lab(&["status", "--name", &name]).stdout);
    let ready = status
        .lines()
        .filter(|l| {
            l.starts_with("  node-") && (l.contains(" running ") || l.contains(" degraded "))
        })
        .count();
    assert_eq!(ready, 2, "{status}");

    lab::cairn_lab(&["down", "--name", &name]);
    lab::disown(&name);
    // Zombies of the halted nspawn processes are reaped by init; only live
    // processes count (a zombie's args are empty, so `ps` shows no path).
    let left = traces(&name);
    assert!(left.is_empty(), "left behind after down: {left:#?}");
    // Down again is fine.
    lab::cairn_lab(&["down", "--name", &name]);
    let status = text(&lab::cairn_lab(&["status", "--name", &name]).stdout);
    assert_eq!(status.trim(), format!("lab {name} is down"));
}
