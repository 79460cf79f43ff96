//! etcd-upgrade end to end on the lab: rolling upgrades 3.4.23 -> 3.5.30 of a
//! 3-member release-binary cluster (etcd-debian-binary with the 3.4.23
//! release) and of an apt cluster (etcd-hetzner-apt, Debian's 3.4.23 package
//! to the lab's newer package). Throughout, a sampler on a node asks every
//! member's `/version` and writes `/cairn-sample/N` through each endpoint in
//! turn (the apt cluster's private addresses are reachable from the nodes
//! only): never more than one member down, each member down once (its turn),
//! every acknowledged write intact, failed writes reported. The binary
//! cluster also carries `tests/common/load.rs`'s load from the test process
//! (failures per endpoint reported, acknowledged writes read back), and its
//! leader must stop last, after leadership moved to an upgraded member. At
//! the end every member runs 3.5.30, the cluster version is 3.5, data written
//! on 3.4 is intact and a rerun changes nothing. A path that skips a minor
//! version (3.4 -> 3.6) is refused in preflight with nothing changed; the apt
//! upgrade is killed mid-way (right after the second member stopped) and
//! resumes to the same end.

mod common;

use common::{lab, load, text};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The scenarios share the lab; one at a time keeps the sampler's timing honest.
static SERIAL: Mutex<()> = Mutex::new(());

/// `cairn ARGS` in `ws` on lab `l` (see `common::cairn_on_lab`).
fn cairn(ws: &Path, l: &lab::LabHandle, args: &[&str], env: &[(&str, &str)]) -> Output {
    common::cairn_on_lab(ws, &l.name, args, env)
}

fn vars(list: &[String]) -> Vec<&str> {
    list.iter().flat_map(|v| ["--var", v.as_str()]).collect()
}

/// The lines of a run's output that are not no-ops, for failure messages.
fn changes(o: &Output) -> String {
    text(o)
        .lines()
        .filter(|l| !l.contains("= ok"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A cluster under test: its nodes (lab names), client URLs as the nodes
/// reach them, and a member's own TLS files on the nodes.
struct Cluster<'a> {
    lab: &'a lab::LabHandle,
    nodes: Vec<String>,
    endpoints: Vec<String>,
    ca: &'static str,
    cert: &'static str,
    key: &'static str,
}

impl Cluster<'_> {
    /// `etcdctl ARGS` on node `node` against its own member.
    fn etcdctl(&self, node: &str, args: &str) -> String {
        let i = self.nodes.iter().position(|n| n == node).unwrap();
        self.lab
            .ssh_ok(
                node,
                &format!(
                    "ETCDCTL_API=3 etcdctl --endpoints={} --cacert={} --cert={} --key={} {args}",
                    self.endpoints[i], self.ca, self.cert, self.key
                ),
            )
            .trim()
            .to_string()
    }

    /// Every member's `/version` as the first node sees it.
    fn versions(&self) -> Vec<serde_json::Value> {
        self.endpoints
            .iter()
            .map(|e| {
                let out = self.lab.ssh_ok(
                    &self.nodes[0],
                    &format!(
                        "curl -fsS --cacert {} --cert {} --key {} {e}/version",
                        self.ca, self.cert, self.key
                    ),
                );
                serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out}: {e}"))
            })
            .collect()
    }

    /// The node whose member leads (`etcdctl endpoint status`: IS LEADER).
    fn leader(&self) -> String {
        let leaders: Vec<&String> = self
            .nodes
            .iter()
            .filter(|n| {
                let row = self.etcdctl(n, "endpoint status");
                row.split(", ").nth(4) == Some("true")
            })
            .collect();
        assert_eq!(leaders.len(), 1, "leaders: {leaders:?}");
        leaders[0].clone()
    }

    /// The etcd main PIDs, per node.
    fn pids(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| {
                self.lab
                    .ssh_ok(n, "systemctl show -p MainPID --value etcd")
                    .trim()
                    .to_string()
            })
            .collect()
    }

    /// Start sampling from the first node: every member's `/version`, then
    /// one write `/cairn-sample/N` = N through the next endpoint in turn, about
    /// five times a second. Each line: up/down bits, endpoint, N, ok|fail.
    fn sampler(&self) -> Sampler {
        let script = r#"ca=$1; crt=$2; key=$3; shift 3; n=0; echo start; while :; do l=;
for u in "$@"; do if curl -fsS --max-time 1 --cacert "$ca" --cert "$crt" --key "$key" "$u/version" >/dev/null 2>&1;
then l=${l}1; else l=${l}0; fi; done;
n=$((n+1)); i=$(( (n-1) % $# + 1 )); eval u=\${$i};
k=$(printf "/cairn-sample/%s" $n | base64 -w0); v=$(printf %s $n | base64 -w0);
if curl -fsS --max-time 2 --cacert "$ca" --cert "$crt" --key "$key" -X POST -d "{\"key\":\"$k\",\"value\":\"$v\"}" "$u/v3/kv/put" >/dev/null 2>&1;
then r=ok; else r=fail; fi; echo "$l $i $n $r"; sleep 0.1; done"#;
        let mut args = vec![
            "sh".to_string(),
            "-c".into(),
            format!("'{script}'"),
            "sh".into(),
            self.ca.into(),
            self.cert.into(),
            self.key.into(),
        ];
        args.extend(self.endpoints.iter().cloned());
        let node = self.lab.node(&self.nodes[0]);
        let mut child = Command::new("ssh")
            .arg("-i")
            .arg(&self.lab.key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.lab.known_hosts.display()
            ))
            .args(["-o", "LogLevel=ERROR"])
            .arg(format!("root@{}", node.address))
            .arg(args.join(" "))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                seen.lock().unwrap().push(line);
            }
        });
        // wait (with a deadline) for the first sample: the sampler is running
        let deadline = Instant::now() + std::time::Duration::from_secs(20);
        while lines.lock().unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "the sampler did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Sampler {
            child,
            reader,
            lines,
        }
    }
}

struct Sampler {
    child: Child,
    reader: std::thread::JoinHandle<()>,
    lines: Arc<Mutex<Vec<String>>>,
}

/// What the sampler saw: samples, the most members down at once, how many
/// samples saw each member down, and the writes (acknowledged sequence
/// numbers; failed writes per endpoint, and those through a member the same
/// sample saw up).
#[derive(Debug)]
struct Availability {
    samples: usize,
    max_down: usize,
    down_per_member: Vec<usize>,
    acked: Vec<u64>,
    failed_per_endpoint: Vec<usize>,
    failed_while_up: usize,
}

impl Sampler {
    fn stop(mut self) -> Availability {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.reader.join().unwrap();
        let lines = self.lines.lock().unwrap().clone();
        let samples: Vec<Vec<&str>> = lines
            .iter()
            .filter(|l| *l != "start")
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .filter(|f| f.len() == 4)
            .collect();
        let n = samples.first().map(|s| s[0].len()).unwrap_or(0);
        let mut down_per_member = vec![0; n];
        let mut failed_per_endpoint = vec![0; n];
        let (mut max_down, mut failed_while_up) = (0, 0);
        let mut acked = Vec::new();
        for s in &samples {
            let bits: Vec<char> = s[0].chars().collect();
            max_down = max_down.max(bits.iter().filter(|c| **c == '0').count());
            for (i, c) in bits.iter().enumerate() {
                if *c == '0' && i < n {
                    down_per_member[i] += 1;
                }
            }
            let endpoint: usize = s[1].parse::<usize>().unwrap() - 1;
            match s[3] {
                "ok" => acked.push(s[2].parse().unwrap()),
                _ => {
                    failed_per_endpoint[endpoint] += 1;
                    if bits.get(endpoint) == Some(&'1') {
                        failed_while_up += 1;
                    }
                }
            }
        }
        Availability {
            samples: samples.len(),
            max_down,
            down_per_member,
            acked,
            failed_per_endpoint,
            failed_while_up,
        }
    }
}

/// Every write the sampler saw acknowledged reads back with its value; the
/// failed writes are reported, and those through a member the same sample
/// saw up (a leader change, not a stopped member) are at most a few.
fn assert_acked_writes_intact(c: &Cluster, seen: &Availability) {
    eprintln!(
        "writes: {} acknowledged, failed per endpoint {:?} ({} through a member seen up)",
        seen.acked.len(),
        seen.failed_per_endpoint,
        seen.failed_while_up
    );
    assert!(
        seen.failed_while_up <= 5,
        "writes failed through members that were up: {seen:?}"
    );
    let dump = c.etcdctl(&c.nodes[0], "get --prefix /cairn-sample/");
    let lines: Vec<&str> = dump.lines().collect();
    let stored: std::collections::BTreeMap<&str, &str> = lines
        .chunks(2)
        .filter(|kv| kv.len() == 2)
        .map(|kv| (kv[0], kv[1]))
        .collect();
    assert!(
        !seen.acked.is_empty(),
        "no write was acknowledged: {seen:?}"
    );
    for n in &seen.acked {
        let k = format!("/cairn-sample/{n}");
        assert_eq!(
            stored.get(k.as_str()).copied(),
            Some(n.to_string().as_str()),
            "acknowledged write {k} lost"
        );
    }
}

/// The restore-tested backups the upgrade left in the workspace `ws`:
/// their records (`backups/etcd-upgrade/*.db.json`), each next to its file.
fn backups(ws: &Path) -> Vec<serde_json::Value> {
    let dir = ws.join(".cairn/backups/etcd-upgrade");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let rec: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            assert!(
                p.with_extension("").is_file(),
                "{} without its snapshot",
                p.display()
            );
            out.push(rec);
        }
    }
    out
}

/// The etcd-upgrade arguments for a cluster whose operator certificate is
/// `pki/PREFIX-operator.*` and CA `pki/CA.crt`.
fn upgrade_vars(ca: &str, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        format!("ca=pki/{ca}.crt"),
        format!("cert=pki/{prefix}-operator.crt"),
        format!("cert_key=pki/{prefix}-operator.key"),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Asserts the end state of an upgrade to 3.5.30: every member's server
/// 3.5.30 and cluster version 3.5.0, the installed etcd too, `key` intact.
fn assert_upgraded(c: &Cluster, key: &str, value: &str) {
    for v in c.versions() {
        assert_eq!(v["etcdserver"], "3.5.30", "{v}");
        assert_eq!(v["etcdcluster"], "3.5.0", "{v}");
    }
    for n in &c.nodes {
        let installed = c.lab.ssh_ok(n, "etcd --version | head -1");
        assert!(
            installed.contains("etcd Version: 3.5.30"),
            "{n}: {installed}"
        );
        assert_eq!(
            c.lab
                .ssh_ok(
                    n,
                    "test -e /etc/cairn/etcd-upgrade-in-progress && echo left || echo gone"
                )
                .trim(),
            "gone",
            "{n}: the in-progress marker is left"
        );
    }
    let last = c.nodes.last().unwrap();
    assert_eq!(
        c.etcdctl(last, &format!("get {key} --print-value-only")),
        value
    );
}

#[test]
fn binary_cluster_refused_skip_then_rolling_upgrade() {
    if lab::skip() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = lab::lab();
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();

    // A 3.4.23 cluster of release binaries (tutorial 003's layout).
    let t = Instant::now();
    let built = cairn(
        w,
        l,
        &["run", "etcd-debian-binary", "--var", "etcd_version=3.4.23"],
        &[],
    );
    assert_eq!(built.status.code(), Some(0), "{}", text(&built));
    eprintln!("3.4.23 binary cluster built in {:?}", t.elapsed());
    let c = Cluster {
        lab: l,
        nodes: l.nodes.iter().map(|n| n.name.clone()).collect(),
        endpoints: l
            .nodes
            .iter()
            .map(|n| format!("https://{}:2379", n.address))
            .collect(),
        ca: "/etc/ssl/etcd/ca.crt",
        cert: "/etc/ssl/etcd/etcd.crt",
        key: "/etc/ssl/etcd/etcd.key",
    };
    for v in c.versions() {
        assert_eq!(v["etcdserver"], "3.4.23", "{v}");
    }
    c.etcdctl("node-1", "put precious written-on-3.4");
    let before = c.pids();

    // 3.4 -> 3.6 skips a minor version: refused in preflight, nothing changed.
    let t = Instant::now();
    let skip = upgrade_vars(
        "etcd-cluster-ca",
        "etcd-cluster",
        &["group=lab", "version=3.6.0"],
    );
    let refused = cairn(
        w,
        l,
        &[&["run", "etcd-upgrade"][..], &vars(&skip)].concat(),
        &[],
    );
    let r = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{r}");
    assert!(
        r.contains("upgrade refused for node-1: 3.4.23 -> 3.6.0 skips 1 minor version(s): etcd supports upgrades one minor version at a time; upgrade to 3.5.x first; nothing was changed"),
        "{r}"
    );
    assert_eq!(c.pids(), before, "a refused upgrade restarted etcd");
    for n in &c.nodes {
        assert_eq!(
            l.ssh_ok(n, "ls /opt/etcd-upgrade /etc/cairn/etcd-upgrade-in-progress 2>/dev/null; etcd --version | head -1").trim(),
            "etcd Version: 3.4.23",
            "{n} changed"
        );
    }
    eprintln!("refused in {:?}", t.elapsed());

    // A release whose checksum does not match fails before any member stops:
    // the error says what is upgraded, what is not, and how to go on or back.
    let bad = upgrade_vars(
        "etcd-cluster-ca",
        "etcd-cluster",
        &["group=lab", &format!("sha256={}", "0".repeat(64))],
    );
    let failed = cairn(
        w,
        l,
        &[&["run", "etcd-upgrade"][..], &vars(&bad)].concat(),
        &[],
    );
    let f = text(&failed);
    assert_eq!(failed.status.code(), Some(1), "{f}");
    for expect in [
        "to 3.5.30 failed: ",
        "upgraded so far: []; not yet: [",
        "To continue: fix the cause, then \"cairn resume\" (or run etcd-upgrade again with --var version=3.5.30).",
        "To go back: run etcd-upgrade with --var version=<the old version> --var allow_downgrade=true",
    ] {
        assert!(f.contains(expect), "lacks `{expect}`:\n{f}");
    }
    assert_eq!(c.pids(), before, "a failed download restarted etcd");
    for v in c.versions() {
        assert_eq!(v["etcdserver"], "3.4.23", "{v}");
    }

    // The rolling upgrade, sampled.
    let go = upgrade_vars("etcd-cluster-ca", "etcd-cluster", &["group=lab"]);
    let plan = cairn(
        w,
        l,
        &[&["plan", "etcd-upgrade"][..], &vars(&go)].concat(),
        &[],
    );
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    for n in &c.nodes {
        assert!(p.contains(&format!("{n}:")), "{p}");
    }

    // A client load through every endpoint from here (tests/common/load.rs),
    // with the operator certificate, and the sampler on node-1.
    let pki = w.join(".cairn/pki");
    let target = || load::Target {
        endpoints: c.endpoints.clone(),
        ca: pki.join("etcd-cluster-ca.crt"),
        cert: pki.join("etcd-cluster-operator.crt"),
        key: pki.join("etcd-cluster-operator.key"),
    };
    let running = load::Load::start(target(), 20);
    running.wait_for(
        std::time::Duration::from_secs(20),
        "first writes",
        |sent, _| sent >= 10,
    );
    let leader = c.leader();
    let sampler = c.sampler();
    let t = Instant::now();
    let up = cairn(
        w,
        l,
        &[&["run", "etcd-upgrade"][..], &vars(&go)].concat(),
        &[],
    );
    let took = t.elapsed();
    let seen = sampler.stop();
    let report = running.stop();
    let u = text(&up);
    assert_eq!(up.status.code(), Some(0), "{u}");
    eprintln!("upgraded in {took:?}; availability {seen:?}");
    eprintln!(
        "load: {} sent, {} failed, per endpoint (sent, failed) {:?}; first errors {:?}",
        report.sent,
        report.failed,
        report.per_endpoint,
        report.first_errors()
    );
    assert!(report.acked.len() > 20, "{report}");
    // A stopped member refuses connections; anything else failed while the
    // cluster was up on that endpoint (a leader change): at most a few.
    let other: Vec<String> = report
        .failures
        .iter()
        .filter(|f| !f.error.contains("Connection refused"))
        .map(|f| format!("{:?} {} {}: {}", f.at, f.op, f.endpoint, f.error))
        .collect();
    eprintln!("load failures other than a stopped member's: {other:?}");
    assert!(other.len() <= 5, "{other:?}");
    report.check_data(&target());
    assert!(
        u.contains("etcd cluster upgraded to 3.5.30: 3 members, cluster version 3.5.0"),
        "{u}"
    );
    // followers first, the leader last, after leadership moved to an upgraded member
    let stops: Vec<&str> = u
        .lines()
        .filter(|l| l.contains("~ change stop unit etcd.service"))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(stops.len(), 3, "{u}");
    assert_eq!(stops[2], leader, "the leader must stop last: {u}");
    assert!(
        u.contains(&format!("~ change etcd leadership to {}", stops[1])),
        "{u}"
    );
    assert!(seen.samples > 10, "{seen:?}");
    assert_eq!(seen.max_down, 1, "{seen:?}");
    assert!(
        seen.down_per_member.iter().all(|d| *d > 0),
        "every member must have been seen down once: {seen:?}"
    );
    assert_upgraded(&c, "precious", "written-on-3.4");
    assert_acked_writes_intact(&c, &seen);
    // the backup taken first: from a follower, on 3.4.23, restore-tested
    let taken = backups(w);
    // (one by the run that failed on the checksum, one by this run)
    assert_eq!(taken.len(), 2, "{taken:?}");
    for b in &taken {
        assert_eq!(b["restore_tested"], true, "{taken:?}");
        assert_eq!(b["version"], "3.4.23", "{taken:?}");
        assert_ne!(b["host"], leader.as_str(), "{taken:?}");
    }

    // A rerun finds every member on 3.5.30: nothing changes, nothing restarts.
    let pids = c.pids();
    let rerun = cairn(
        w,
        l,
        &[&["run", "etcd-upgrade"][..], &vars(&go)].concat(),
        &[],
    );
    assert_eq!(rerun.status.code(), Some(0), "{}", changes(&rerun));
    assert!(
        text(&rerun).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&rerun)
    );
    assert_eq!(c.pids(), pids, "a rerun restarted etcd");
    assert_eq!(backups(w).len(), 2, "a rerun took another backup");
}

/// Where the kill lands in the apt upgrade: right after the second member's
/// unit was stopped, before that is journaled (the 23rd applied step: 4
/// preflight checks; the backup's snapshot, fetch, record and removal; the
/// first member's apt source, apt-get update, status, marker, stop, install,
/// 3 checks and the marker's removal; then the second member's apt source,
/// apt-get update, status, marker and stop).
const KILL_AT: &str = "applied:23";

#[test]
fn apt_cluster_upgrade_killed_midway_resumes() {
    if lab::skip() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = lab::lab();
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();

    // A 3.4.23 cluster from Debian's packages on emulated Hetzner servers (tutorial 000).
    let t = Instant::now();
    let built = cairn(
        w,
        l,
        &[
            "run",
            "etcd-hetzner-apt",
            "--var",
            "nodes=ap-1,ap-2,ap-3",
            // (the distribution's 3.4.23, not the runbook's default 3.5.30)
            "--var",
            "etcd_version=distro",
        ],
        &[],
    );
    assert_eq!(built.status.code(), Some(0), "{}", text(&built));
    eprintln!("3.4.23 apt cluster built in {:?}", t.elapsed());
    let now = lab::LabHandle::open(&l.name);
    let hosts = now.hosts();
    let private = |n: &str| {
        let h = hosts.iter().find(|h| h.name == n).unwrap();
        h.private_address
            .clone()
            .unwrap_or_else(|| h.address.clone())
    };
    let nodes: Vec<String> = ["ap-1", "ap-2", "ap-3"].map(String::from).to_vec();
    let c = Cluster {
        lab: &now,
        endpoints: nodes
            .iter()
            .map(|n| format!("https://{}:2379", private(n)))
            .collect(),
        nodes,
        ca: "/etc/etcd/ca.crt",
        cert: "/etc/etcd/server.crt",
        key: "/etc/etcd/server.key",
    };
    for v in c.versions() {
        assert_eq!(v["etcdserver"], "3.4.23", "{v}");
    }
    c.etcdctl("ap-1", "put precious written-on-3.4");

    let go = upgrade_vars(
        "cluster-1-etcd-ca",
        "cluster-1",
        &["group=cloud", "apt_options=trusted=yes"],
    );
    let args = [&["run", "etcd-upgrade"][..], &vars(&go)].concat();
    let sampler = c.sampler();
    let t = Instant::now();
    let killed = cairn(w, l, &args, &[("CAIRN_FAULT_KILL", KILL_AT)]);
    assert_eq!(
        killed.status.code(),
        None,
        "must die by SIGKILL: {}",
        text(&killed)
    );
    let on_new: Vec<bool> = c
        .nodes
        .iter()
        .map(|n| now.ssh_ok(n, "etcd --version | head -1").contains("3.5.30"))
        .collect();
    eprintln!(
        "killed at {KILL_AT} after {:?}; on 3.5.30: {on_new:?}",
        t.elapsed()
    );
    assert!(
        on_new.iter().any(|b| *b) && !on_new.iter().all(|b| *b),
        "the kill must land mid-way: {on_new:?}\n{}",
        text(&killed)
    );
    let resumed = cairn(w, l, &["resume"], &[]);
    let took = t.elapsed();
    let seen = sampler.stop();
    let r = text(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{r}");
    eprintln!("killed and resumed in {took:?}; availability {seen:?}");
    assert!(
        r.contains("etcd cluster upgraded to 3.5.30: 3 members, cluster version 3.5.0"),
        "{r}"
    );
    assert!(seen.samples > 10, "{seen:?}");
    assert_eq!(seen.max_down, 1, "{seen:?}");
    assert!(
        seen.down_per_member.iter().all(|d| *d > 0),
        "every member must have been seen down once: {seen:?}"
    );
    assert_upgraded(&c, "precious", "written-on-3.4");
    assert_acked_writes_intact(&c, &seen);
    let taken = backups(w);
    assert!(
        !taken.is_empty()
            && taken
                .iter()
                .all(|b| b["restore_tested"] == true && b["version"] == "3.4.23"),
        "{taken:?}"
    );
    for n in &c.nodes {
        let pkg = now.ssh_ok(n, "dpkg-query -W -f '${Version}' etcd-server");
        assert!(pkg.starts_with("3.5.30-"), "{n}: etcd-server {pkg}");
    }

    // The resumed cluster is the runbook's end state: a new run changes nothing.
    let pids = c.pids();
    let rerun = cairn(w, l, &args, &[]);
    assert_eq!(rerun.status.code(), Some(0), "{}", changes(&rerun));
    assert!(
        text(&rerun).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&rerun)
    );
    assert_eq!(c.pids(), pids, "a rerun restarted etcd");
}

/// Tutorial 004's layout (etcd-binary-yaml: release binaries, a YAML
/// config file), 3.5.16 -> 3.5.30, on a lab of its own, under the load of
/// tests/common/load.rs through every endpoint and the sampler's member
/// availability: one member down at a time, the leader last, data intact.
#[test]
fn yaml_cluster_patch_upgrade_under_load() {
    if lab::skip() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let l = lab::start(&lab::unique_name("upg-yaml"), 3);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();

    let t = Instant::now();
    let built = cairn(
        w,
        &l,
        &["run", "etcd-binary-yaml", "--var", "version=v3.5.16"],
        &[],
    );
    assert_eq!(built.status.code(), Some(0), "{}", text(&built));
    eprintln!("3.5.16 yaml cluster built in {:?}", t.elapsed());
    let c = Cluster {
        lab: &l,
        nodes: l.nodes.iter().map(|n| n.name.clone()).collect(),
        endpoints: l
            .nodes
            .iter()
            .map(|n| format!("https://{}:2379", n.address))
            .collect(),
        // node-1's own files: the sampler and etcdctl run on node-1 only
        ca: "/etc/etcd/pki/etcd-ca.crt",
        cert: "/etc/etcd/pki/node-1.crt",
        key: "/etc/etcd/pki/node-1.key",
    };
    for v in c.versions() {
        assert_eq!(v["etcdserver"], "3.5.16", "{v}");
    }
    c.etcdctl("node-1", "put precious written-on-3.5.16");
    let pki = w.join(".cairn/pki");
    let target = load::Target {
        endpoints: c.endpoints.clone(),
        ca: pki.join("etcd-cluster-1-etcd-ca.crt"),
        cert: pki.join("etcd-cluster-1-operator.crt"),
        key: pki.join("etcd-cluster-1-operator.key"),
    };

    let go = upgrade_vars(
        "etcd-cluster-1-etcd-ca",
        "etcd-cluster-1",
        &["version=3.5.30"],
    );
    let args = [&["run", "etcd-upgrade"][..], &vars(&go)].concat();
    let running = load::Load::start(target.clone(), 20);
    running.wait_for(std::time::Duration::from_secs(20), "20 requests", |s, _| {
        s >= 20
    });
    let sampler = c.sampler();
    let t = Instant::now();
    let upgraded = cairn(w, &l, &args, &[]);
    let took = t.elapsed();
    let seen = sampler.stop();
    let report = running.stop();
    let out = text(&upgraded);
    assert_eq!(upgraded.status.code(), Some(0), "{out}");
    eprintln!(
        "FIGURES yaml 3.5.16 -> 3.5.30: upgrade {took:?}; load {report}; availability {seen:?}"
    );
    assert!(
        out.contains("etcd cluster upgraded to 3.5.30: 3 members, cluster version 3.5.0"),
        "{out}"
    );
    assert!(seen.samples > 10, "{seen:?}");
    assert_eq!(seen.max_down, 1, "two members down at once: {seen:?}");
    assert!(
        seen.down_per_member.iter().all(|d| *d > 0),
        "every member must have been seen down once: {seen:?}"
    );
    // failed requests: only through a member while it was stopped (refused
    // connections), or while leadership moved (a handful)
    let refused = report
        .failures
        .iter()
        .filter(|f| f.error.contains("Connection refused"))
        .count() as u64;
    assert!(
        report.failed - refused <= 5,
        "failures other than a stopped member's refused connections: {report}"
    );
    report.check_data(&target);
    assert_acked_writes_intact(&c, &seen);
    for v in c.versions() {
        assert_eq!(v["etcdserver"], "3.5.30", "{v}");
        assert_eq!(v["etcdcluster"], "3.5.0", "{v}");
    }
    for n in &c.nodes {
        let installed = l.ssh_ok(n, "etcd --version | head -1");
        assert!(
            installed.contains("etcd Version: 3.5.30"),
            "{n}: {installed}"
        );
    }
    assert_eq!(
        c.etcdctl("node-1", "get precious --print-value-only"),
        "written-on-3.5.16"
    );
    let taken = backups(w);
    assert!(
        taken.len() == 1 && taken[0]["restore_tested"] == true && taken[0]["version"] == "3.5.16",
        "{taken:?}"
    );

    // the end state is the runbook's: a rerun changes nothing
    let pids = c.pids();
    let rerun = cairn(w, &l, &args, &[]);
    assert_eq!(rerun.status.code(), Some(0), "{}", changes(&rerun));
    assert!(
        text(&rerun).contains(" 0 created, 0 changed, 0 deleted, 0 ran"),
        "{}",
        changes(&rerun)
    );
    assert_eq!(c.pids(), pids, "a rerun restarted etcd");
    lab::cairn_lab(&["down", "--name", &l.name]);
    lab::disown(&l.name);
}
