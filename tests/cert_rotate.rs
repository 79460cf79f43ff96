//! etcd-cert-rotate on a lab, under client load.
//!
//! Leaf rotation on clusters built by etcd-binary-yaml and etcd-debian-binary
//! with 40-day certificates (`rotate_below_days=60` makes them due): while a
//! client writes and reads through every endpoint (25 requests/s, each on a
//! new TLS connection, so every request is a handshake that reads the
//! member's certificate files), the rotation must fail no request, the serials
//! served on 2379 and 2380 must become the workspace's new certificates while
//! etcd's process id stays the same, every acknowledged write must read back,
//! and a rerun right after must rotate nothing. A rotation killed inside a
//! step (`CAIRN_FAULT_KILL=applied:N`) resumes to the same verified end.

mod common;

use common::{cairn, cairn_kill, lab, load, text};

use base64::Engine as _;
use cairn::cmd::quote;
use cairn::primitives::pki::parse_pem;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn cairn_ok(ws: &Path, args: &[&str]) -> String {
    let out = cairn(ws, args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "cairn {args:?}:\n{}",
        text(&out)
    );
    text(&out)
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// What the load saw.
#[derive(Debug, Default)]
struct LoadReport {
    sent: u64,
    failed: u64,
    first_errors: Vec<String>,
    /// Sequence numbers whose write was acknowledged.
    acked: Vec<u64>,
}

/// A client load: every 1/rate seconds a request on a new TLS connection,
/// alternately a write of `/cairn-load/<seq>` through the next endpoint and a
/// read of an acknowledged key (its value checked) through the next one.
struct Load {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    thread: std::thread::JoinHandle<LoadReport>,
}

/// A client certificate and CA, read once (the workspace files may be
/// replaced by the rotation while the load runs: it keeps the old ones).
#[derive(Clone)]
struct Tls {
    ca: String,
    cert: String,
    key: String,
}

impl Tls {
    fn read(pki: &Path, ca: &str, client: &str) -> Tls {
        let r = |n: String| std::fs::read_to_string(pki.join(&n)).unwrap();
        Tls {
            ca: r(format!("{ca}.crt")),
            cert: r(format!("{client}.crt")),
            key: r(format!("{client}.key")),
        }
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca.as_bytes()).unwrap()])
            .identity(
                reqwest::Identity::from_pem(format!("{}{}", self.cert, self.key).as_bytes())
                    .unwrap(),
            )
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }
}

async fn put(c: &reqwest::Client, ep: &str, key: &str, value: &str) -> Result<(), String> {
    let body = serde_json::json!({ "key": B64.encode(key), "value": B64.encode(value) });
    let r = c
        .post(format!("{ep}/v3/kv/put"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("put {key} via {ep}: {e:?}"))?;
    if !r.status().is_success() {
        return Err(format!("put {key} via {ep}: HTTP {}", r.status()));
    }
    Ok(())
}

async fn get(c: &reqwest::Client, ep: &str, key: &str) -> Result<Option<String>, String> {
    let body = serde_json::json!({ "key": B64.encode(key) });
    let r = c
        .post(format!("{ep}/v3/kv/range"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("get {key} via {ep}: {e:?}"))?;
    if !r.status().is_success() {
        return Err(format!("get {key} via {ep}: HTTP {}", r.status()));
    }
    let v: serde_json::Value = r.json().await.map_err(|e| format!("get {key}: {e}"))?;
    Ok(v["kvs"][0]["value"]
        .as_str()
        .map(|s| String::from_utf8(B64.decode(s).unwrap()).unwrap()))
}

impl Load {
    fn start(endpoints: Vec<String>, tls: Tls, per_second: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let shared = report.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = tls.client();
                let report = shared;
                let seq = Arc::new(AtomicU64::new(0));
                let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
                let mut tasks = Vec::new();
                let mut n: usize = 0;
                while !flag.load(Ordering::SeqCst) {
                    tick.tick().await;
                    let ep = endpoints[n % endpoints.len()].clone();
                    let (c, report, seq) = (client.clone(), report.clone(), seq.clone());
                    let write = n.is_multiple_of(2);
                    n += 1;
                    tasks.push(tokio::spawn(async move {
                        let result = if write {
                            let s = seq.fetch_add(1, Ordering::SeqCst);
                            put(&c, &ep, &format!("/cairn-load/{s}"), &s.to_string())
                                .await
                                .map(|()| Some(s))
                        } else {
                            let pick = {
                                let r = report.lock().unwrap();
                                r.acked.last().copied()
                            };
                            match pick {
                                None => Ok(None),
                                Some(s) => match get(&c, &ep, &format!("/cairn-load/{s}")).await {
                                    Ok(Some(v)) if v == s.to_string() => Ok(None),
                                    Ok(v) => Err(format!("read /cairn-load/{s} via {ep}: {v:?}")),
                                    Err(e) => Err(e),
                                },
                            }
                        };
                        let mut r = report.lock().unwrap();
                        r.sent += 1;
                        match result {
                            Ok(Some(s)) => r.acked.push(s),
                            Ok(None) => {}
                            Err(e) => {
                                r.failed += 1;
                                if r.first_errors.len() < 5 {
                                    r.first_errors.push(e);
                                }
                            }
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
                let mut r = report.lock().unwrap();
                std::mem::take(&mut *r)
            })
        });
        Load {
            stop,
            report,
            thread,
        }
    }

    /// Waits (polling, at most 30 s) until `more` requests beyond the ones
    /// answered so far have been answered: the load runs for that long.
    fn run_for(&self, more: u64) {
        let target = self.report.lock().unwrap().sent + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.report.lock().unwrap().sent < target {
            assert!(
                Instant::now() < deadline,
                "the load answered no {more} requests in 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// Every acknowledged write reads back with its value.
fn check_data(endpoints: &[String], tls: &Tls, acked: &[u64]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = tls.client();
    rt.block_on(async {
        for (i, s) in acked.iter().enumerate() {
            let ep = &endpoints[i % endpoints.len()];
            let v = get(&c, ep, &format!("/cairn-load/{s}")).await.unwrap();
            assert_eq!(v, Some(s.to_string()), "/cairn-load/{s} via {ep}");
        }
    });
}

/// A member as the test reaches it.
#[derive(Clone, Debug)]
struct Node {
    /// Inventory host name.
    host: String,
    /// etcd member name.
    member: String,
    /// Where ssh reaches it.
    ssh: String,
    /// The address etcd listens on.
    etcd: String,
}

fn on(l: &lab::LabHandle, n: &Node, cmd: &str) -> String {
    let out = l.ssh_to(&n.ssh, &l.key, cmd);
    assert!(
        out.status.success(),
        "on {}: `{cmd}`: {}",
        n.host,
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The serial etcd serves on `etcd:port` of `n`, asked on the node.
fn served_serial(l: &lab::LabHandle, n: &Node, port: u16) -> String {
    let probe = format!(
        "openssl s_client -connect {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        quote(&format!("{}:{port}", n.etcd))
    );
    let out = on(l, n, &probe);
    out.trim()
        .strip_prefix("serial=")
        .unwrap_or_else(|| panic!("{}:{port} serves no certificate: {out}", n.host))
        .to_lowercase()
}

fn etcd_pid(l: &lab::LabHandle, n: &Node) -> String {
    let pid = on(l, n, "systemctl show -p MainPID --value etcd")
        .trim()
        .to_string();
    assert_ne!(pid, "0", "etcd is not running on {}", n.host);
    pid
}

/// Serial (lowercase hex) of a workspace certificate.
fn serial_of(pki: &Path, name: &str) -> String {
    let pem = std::fs::read_to_string(pki.join(format!("{name}.crt"))).unwrap();
    parse_pem(&pem).unwrap().info.serial.to_lowercase()
}

/// Per node: (pid, serial on 2379, serial on 2380).
fn observe(l: &lab::LabHandle, nodes: &[Node]) -> Vec<(String, String, String)> {
    nodes
        .iter()
        .map(|n| {
            (
                etcd_pid(l, n),
                served_serial(l, n, 2379),
                served_serial(l, n, 2380),
            )
        })
        .collect()
}

/// Per node: `sha256sum` of every etcd key file (`*.key` under /etc/etcd and
/// /etc/ssl/etcd), to tell a renewal on the same key from a new key.
fn key_hashes(l: &lab::LabHandle, nodes: &[Node]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| {
            let sums = on(
                l,
                n,
                "find /etc/etcd /etc/ssl/etcd -name '*.key' -exec sha256sum {} + 2>/dev/null | sort; true",
            );
            assert!(sums.contains(".key"), "{}: no key files found", n.host);
            sums
        })
        .collect()
}

/// `ssh -L` forwards from this machine to each member's 127.0.0.1:2379 (the
/// emulated cloud's private network is not reached from here); killed on drop.
struct Tunnels {
    children: Vec<std::process::Child>,
    endpoints: Vec<String>,
}

impl Tunnels {
    fn open(l: &lab::LabHandle, nodes: &[Node]) -> Tunnels {
        let mut t = Tunnels {
            children: Vec::new(),
            endpoints: Vec::new(),
        };
        for n in nodes {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("ssh")
                .arg("-i")
                .arg(&l.key)
                .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
                .args([
                    "-o",
                    "StrictHostKeyChecking=yes",
                    "-o",
                    "ExitOnForwardFailure=yes",
                ])
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", l.known_hosts.display()))
                .args(["-N", "-L", &format!("127.0.0.1:{port}:127.0.0.1:2379")])
                .arg(format!("root@{}", n.ssh))
                .stdin(std::process::Stdio::null())
                .spawn()
                .unwrap();
            t.children.push(child);
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "no tunnel to {}", n.host);
                std::thread::sleep(Duration::from_millis(100));
            }
            t.endpoints.push(format!("https://127.0.0.1:{port}"));
        }
        t
    }
}

impl Drop for Tunnels {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Stop etcd and remove what a runbook installed, so another layout can be
/// built on the same nodes.
fn wipe(l: &lab::LabHandle, nodes: &[Node]) {
    for n in nodes {
        on(
            l,
            n,
            "systemctl stop etcd; systemctl disable etcd 2>/dev/null; \
             rm -rf /var/lib/etcd /opt/etcd /etc/etcd /etc/ssl/etcd \
             /etc/systemd/system/etcd.service /etc/cairn; systemctl daemon-reload",
        );
    }
}

struct Layout {
    runbook: &'static str,
    build_args: &'static [&'static str],
    /// Inventory group of the members (`lab`, or `cloud` for servers).
    group: &'static str,
    ca: &'static str,
    operator: &'static str,
    /// Workspace certificates of a member's (server, peer) certificates.
    node_certs: fn(&str) -> (String, String),
    /// Whether the node's key is made on the node (no workspace key).
    node_keys: bool,
    /// `CAIRN_FAULT_KILL` points of rotations killed and resumed: the first
    /// only, unless `CAIRN_ROTATE_KILL_POINTS=full` (see [`kill_points`]).
    kill_points: &'static [&'static str],
    /// Whether to rotate once more with `new_keys=true` at the end.
    new_keys: bool,
}

/// The members of `group` (their member name is the first label of the fqdn).
fn members(l: &lab::LabHandle, group: &str) -> Vec<Node> {
    let mut v: Vec<Node> = l
        .hosts()
        .into_iter()
        .filter(|h| h.groups.iter().any(|g| g == group))
        .map(|h| Node {
            member: h
                .fqdn
                .clone()
                .unwrap_or_else(|| h.name.clone())
                .split('.')
                .next()
                .unwrap()
                .to_string(),
            etcd: h
                .private_address
                .clone()
                .unwrap_or_else(|| h.address.clone()),
            ssh: h.address.clone(),
            host: h.name.clone(),
        })
        .collect();
    v.sort_by(|a, b| a.member.cmp(&b.member));
    v
}

/// The load's endpoints, and the tunnels they need.
fn endpoints(
    l: &lab::LabHandle,
    layout: &Layout,
    nodes: &[Node],
) -> (Vec<String>, Option<Tunnels>) {
    if layout.group == "lab" {
        let e = nodes
            .iter()
            .map(|n| format!("https://{}:2379", n.etcd))
            .collect();
        (e, None)
    } else {
        let t = Tunnels::open(l, nodes);
        (t.endpoints.clone(), Some(t))
    }
}

/// The kill points a run samples: the first of each layout (CI's time
/// budget), or all with `CAIRN_ROTATE_KILL_POINTS=full`, as kill_resume's
/// `CAIRN_KILL_POINTS=full`.
fn kill_points(all: &'static [&'static str]) -> &'static [&'static str] {
    match std::env::var("CAIRN_ROTATE_KILL_POINTS").as_deref() {
        Ok("full") => all,
        Ok("") | Err(_) => &all[..all.len().min(1)],
        Ok(other) => panic!("CAIRN_ROTATE_KILL_POINTS={other}: expected `full` or unset"),
    }
}

fn leaf_rotation(l: &lab::LabHandle, layout: &Layout) {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let pki: PathBuf = w.join(".cairn/pki");
    let mut build = vec!["run", layout.runbook, "--lab", l.name.as_str()];
    build.extend_from_slice(layout.build_args);
    cairn_ok(w, &build);
    let nodes = members(l, layout.group);
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let before = observe(l, &nodes);
    let tls = Tls::read(&pki, layout.ca, layout.operator);
    let by = format!("built_by={}", layout.runbook);
    let group = format!("group={}", layout.group);
    let (eps, _tunnels) = endpoints(l, layout, &nodes);

    // 1. the plan names every file and command, the rotation runs under load
    let plan = cairn(
        w,
        &[
            "plan",
            "etcd-cert-rotate",
            "--lab",
            l.name.as_str(),
            "--var",
            &by,
            "--var",
            &group,
            "--var",
            "rotate_below_days=60",
        ],
    );
    let plan = {
        // exit 2: changes planned
        assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
        text(&plan)
    };
    for n in &nodes {
        assert!(
            plan.contains(&format!("{}: ", n.host)),
            "{n:?} not in plan:\n{plan}"
        );
    }
    // renewed on their keys: a certificate for each member's public key, the
    // certificate file replaced by cairn's safe write, no key staged or swapped
    assert!(
        plan.matches("for a given public key").count() >= 3,
        "{plan}"
    );
    assert!(!plan.contains(".cairn-new"), "{plan}");
    assert!(!plan.contains("perl -e 'rename("), "{plan}");
    let keys_before = key_hashes(l, &nodes);
    let load = Load::start(eps.clone(), tls.clone(), 25);
    load.run_for(25); // about 1 s of load before the rotation
    let t = Instant::now();
    let out = cairn_ok(
        w,
        &[
            "run",
            "etcd-cert-rotate",
            "--lab",
            l.name.as_str(),
            "--var",
            &by,
            "--var",
            &group,
            "--var",
            "rotate_below_days=60",
        ],
    );
    let took = t.elapsed();
    load.run_for(25); // and about 1 s after it
    let report = load.stop();
    check_data(&eps, &tls, &report.acked);
    eprintln!(
        "FIGURES {} leaf rotation: {:.1}s, {} requests sent, {} failed",
        layout.runbook,
        took.as_secs_f64(),
        report.sent,
        report.failed
    );
    assert!(
        report.sent as f64 >= 20.0 * (took.as_secs_f64() + 2.0) * 0.9,
        "{report:?}"
    );
    assert_eq!(report.failed, 0, "failed requests: {report:?}\n{out}");
    let after = observe(l, &nodes);
    assert_eq!(
        key_hashes(l, &nodes),
        keys_before,
        "renewal changed a key file"
    );
    for (i, n) in nodes.iter().enumerate() {
        let (pid0, c0, p0) = &before[i];
        let (pid1, c1, p1) = &after[i];
        let h = &n.host;
        assert_eq!(pid0, pid1, "{h}: etcd restarted");
        assert_ne!(c0, c1, "{h}: 2379 still serves {c0}");
        assert_ne!(p0, p1, "{h}: 2380 still serves {p0}");
        let (server, peer) = (layout.node_certs)(&n.member);
        assert_eq!(
            c1,
            &serial_of(&pki, &server),
            "{h}: 2379 serves not {server}"
        );
        assert_eq!(p1, &serial_of(&pki, &peer), "{h}: 2380 serves not {peer}");
        assert!(
            out.contains(&format!("{h}: server")),
            "{h} not reported:\n{out}"
        );
        if !layout.node_keys {
            assert!(pki.join(format!("{server}.key")).exists());
        }
    }
    assert_ne!(
        parse_pem(&tls.cert).unwrap().info.serial.to_lowercase(),
        serial_of(&pki, layout.operator),
        "the operator's client certificate was not re-issued"
    );

    // 2. a rerun right after rotates nothing; the building runbook keeps it all
    let rerun = [
        "run",
        "etcd-cert-rotate",
        "--lab",
        l.name.as_str(),
        "--var",
        &by,
        "--var",
        &group,
        "--var",
        "rotate_below_days=60",
    ];
    let again = cairn_ok(w, &rerun);
    assert!(again.contains("nothing to rotate"), "{again}");
    assert!(again.contains("0 created, 0 changed"), "{again}");
    let mut plan = vec!["plan", layout.runbook, "--lab", l.name.as_str()];
    plan.extend_from_slice(layout.build_args);
    let rebuilt = cairn_ok(w, &plan);
    assert!(rebuilt.contains("No changes."), "{rebuilt}");
    assert_eq!(observe(l, &nodes), after);

    // 3. killed inside a step and resumed: the same verified end, under load
    let mut previous = after;
    for (i, kill) in kill_points(layout.kill_points).iter().enumerate() {
        // every certificate is due again: below 400 + 100 i days (they have 365, then 500, ...)
        let below = format!("rotate_below_days={}", 400 + 100 * i);
        let days = format!("days={}", 500 + 100 * i);
        let load = Load::start(eps.clone(), tls.clone(), 25);
        let t = Instant::now();
        let args = [
            "run",
            "etcd-cert-rotate",
            "--lab",
            l.name.as_str(),
            "--var",
            &by,
            "--var",
            &group,
            "--var",
            &below,
            "--var",
            &days,
        ];
        let killed = cairn_kill(w, &args, Some(kill));
        assert_eq!(
            killed.status.code(),
            None,
            "not killed at {kill}:\n{}",
            text(&killed)
        );
        let resumed = cairn_ok(w, &["resume"]);
        let took = t.elapsed();
        let report = load.stop();
        check_data(&eps, &tls, &report.acked);
        eprintln!(
            "FIGURES {} leaf rotation killed at {kill} and resumed: {:.1}s, {} requests sent, {} failed",
            layout.runbook,
            took.as_secs_f64(),
            report.sent,
            report.failed
        );
        assert_eq!(report.failed, 0, "failed requests: {report:?}\n{resumed}");
        let now = observe(l, &nodes);
        for (j, n) in nodes.iter().enumerate() {
            let h = &n.host;
            let (server, peer) = (layout.node_certs)(&n.member);
            assert_eq!(now[j].0, previous[j].0, "{h}: etcd restarted ({kill})");
            assert_ne!(now[j].1, previous[j].1, "{h}: not rotated ({kill})");
            assert_eq!(now[j].1, serial_of(&pki, &server), "{h}: 2379 after {kill}");
            assert_eq!(now[j].2, serial_of(&pki, &peer), "{h}: 2380 after {kill}");
            let left = on(
                l,
                n,
                "find /etc/etcd /etc/ssl/etcd -name '*.cairn-new*' 2>/dev/null; true",
            );
            assert_eq!(left.trim(), "", "{h}: staged files left after {kill}");
        }
        let again = cairn_ok(w, &args);
        assert!(again.contains("nothing to rotate"), "{again}");
        previous = now;
    }

    // 4. `new_keys=true`: new keys too (two renames per pair; handshakes that
    // fall between them fail, so failed requests are reported, not required 0)
    if !layout.new_keys {
        return;
    }
    let keys_before = key_hashes(l, &nodes);
    let load = Load::start(eps.clone(), tls.clone(), 25);
    let t = Instant::now();
    let out = cairn_ok(
        w,
        &[
            "run",
            "etcd-cert-rotate",
            "--lab",
            l.name.as_str(),
            "--var",
            &by,
            "--var",
            &group,
            "--var",
            "rotate_below_days=900",
            "--var",
            "days=1000",
            "--var",
            "new_keys=true",
        ],
    );
    let took = t.elapsed();
    let report = load.stop();
    check_data(&eps, &tls, &report.acked);
    eprintln!(
        "FIGURES {} leaf rotation with new keys: {:.1}s, {} requests sent, {} failed",
        layout.runbook,
        took.as_secs_f64(),
        report.sent,
        report.failed
    );
    let keys_after = key_hashes(l, &nodes);
    let now = observe(l, &nodes);
    for (j, n) in nodes.iter().enumerate() {
        let h = &n.host;
        let (server, _) = (layout.node_certs)(&n.member);
        assert_ne!(keys_after[j], keys_before[j], "{h}: keys unchanged");
        assert_eq!(now[j].0, previous[j].0, "{h}: etcd restarted (new keys)");
        assert_eq!(now[j].1, serial_of(&pki, &server), "{h}: 2379 (new keys)");
        assert!(out.contains(&format!("{h}: server")), "{out}");
    }
    assert!(out.contains(", new): serial"), "{out}");
}

/// `openssl ARGS` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

/// On the etcd-binary-yaml cluster of the last workspace: node-1's
/// certificate re-issued (365 days, same key) with only `DNS:node-1`, in the
/// workspace and on the node. A rotation with the default threshold rotates
/// node-1 alone (its SANs miss the advertised URLs), adding its address.
fn san_correction(l: &lab::LabHandle) {
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    // the cluster is there: a fresh workspace adopts it with its own CA
    cairn_ok(
        w,
        &[
            "run",
            "etcd-binary-yaml",
            "--lab",
            l.name.as_str(),
            "--var",
            "adopt=true",
        ],
    );
    let pki = w.join(".cairn/pki");
    let ext = "subjectAltName=DNS:node-1\nextendedKeyUsage=serverAuth,clientAuth\n\
               keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n";
    std::fs::write(pki.join("nosan.ext"), ext).unwrap();
    openssl(
        &pki,
        &[
            "req",
            "-new",
            "-key",
            "etcd-cluster-1-node-1.key",
            "-subj",
            "/CN=node-1",
            "-out",
            "nosan.csr",
        ],
    );
    openssl(
        &pki,
        &[
            "x509",
            "-req",
            "-in",
            "nosan.csr",
            "-CA",
            "etcd-cluster-1-etcd-ca.crt",
            "-CAkey",
            "etcd-cluster-1-etcd-ca.key",
            "-days",
            "365",
            "-set_serial",
            "0x5a0001",
            "-extfile",
            "nosan.ext",
            "-out",
            "etcd-cluster-1-node-1.crt",
        ],
    );
    let pem = std::fs::read_to_string(pki.join("etcd-cluster-1-node-1.crt")).unwrap();
    let node = members(l, "lab")
        .into_iter()
        .find(|n| n.member == "node-1")
        .unwrap();
    on(
        l,
        &node,
        &format!(
            "printf %s {} | base64 -d > /etc/etcd/pki/node-1.crt.t && mv /etc/etcd/pki/node-1.crt.t /etc/etcd/pki/node-1.crt",
            quote(&B64.encode(&pem))
        ),
    );
    let pid = etcd_pid(l, &node);
    assert_eq!(served_serial(l, &node, 2379), "5a0001");

    let out = cairn_ok(
        w,
        &[
            "run",
            "etcd-cert-rotate",
            "--lab",
            l.name.as_str(),
            "--var",
            "group=lab",
        ],
    );
    assert!(out.contains("node-1: server+peer"), "{out}");
    assert!(!out.contains("node-2: server+peer"), "{out}");
    assert!(!out.contains("node-3: server+peer"), "{out}");
    let sans = on(
        l,
        &node,
        &format!(
            "openssl s_client -connect {} </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName",
            quote(&format!("{}:2380", node.etcd))
        ),
    );
    assert!(
        sans.contains(&format!("IP Address:{}", node.etcd)),
        "{sans}"
    );
    assert_ne!(served_serial(l, &node, 2379), "5a0001");
    assert_eq!(etcd_pid(l, &node), pid, "node-1 restarted");
}

/// The lab's `lab` nodes are shared by the tests of this binary: one at a time.
static LAB_NODES: Mutex<()> = Mutex::new(());

#[test]
fn leaf_rotation_without_restart_under_load() {
    if lab::skip() {
        return;
    }
    let _nodes = LAB_NODES.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let l = lab::lab();
    // the CA rotation test may have run first on these nodes
    wipe(l, &members(l, "lab"));

    leaf_rotation(
        l,
        &Layout {
            runbook: "etcd-binary-yaml",
            build_args: &["--var", "cert_days=40"],
            group: "lab",
            ca: "etcd-cluster-1-etcd-ca",
            operator: "etcd-cluster-1-operator",
            node_certs: |n| (format!("etcd-cluster-1-{n}"), format!("etcd-cluster-1-{n}")),
            node_keys: false,
            kill_points: &["applied:3", "applied:6"],
            new_keys: false,
        },
    );
    eprintln!("FIGURES etcd-binary-yaml done at {:?}", started.elapsed());
    san_correction(l);

    wipe(l, &members(l, "lab"));
    leaf_rotation(
        l,
        &Layout {
            runbook: "etcd-debian-binary",
            build_args: &["--var", "cert_days=40"],
            group: "lab",
            ca: "etcd-cluster-ca",
            operator: "etcd-cluster-operator",
            node_certs: |n| (format!("etcd-cluster-{n}"), format!("etcd-cluster-{n}")),
            node_keys: true,
            kill_points: &["applied:4"],
            new_keys: true,
        },
    );
    eprintln!("FIGURES etcd-debian-binary done at {:?}", started.elapsed());

    // the emulated Hetzner servers: their own nodes, group `cloud`
    leaf_rotation(
        l,
        &Layout {
            runbook: "etcd-hetzner-apt",
            build_args: &["--var", "cert_days=40"],
            group: "cloud",
            ca: "cluster-1-etcd-ca",
            operator: "cluster-1-operator",
            node_certs: |n| {
                (
                    format!("cluster-1-{n}-etcd-server"),
                    format!("cluster-1-{n}-etcd-peer"),
                )
            },
            node_keys: false,
            kill_points: &["applied:7"],
            new_keys: false,
        },
    );
    eprintln!("FIGURES etcd-hetzner-apt done at {:?}", started.elapsed());
    remove_cloud_servers(l);
}

/// Deletes the emulated Hetzner servers (the tutorial's cleanup runbook), so
/// a later test of this binary on the lab's own nodes sees only those: the
/// lab's inventory lists the servers too, and `hosts()` would include them.
fn remove_cloud_servers(l: &lab::LabHandle) {
    if members(l, "cloud").is_empty() {
        return;
    }
    let ws = tempfile::tempdir().unwrap();
    cairn_ok(
        ws.path(),
        &["run", "etcd-hetzner-apt-cleanup", "--lab", l.name.as_str()],
    );
    let left: Vec<String> = members(l, "cloud").into_iter().map(|n| n.host).collect();
    assert!(
        left.is_empty(),
        "cloud servers left after cleanup: {left:?}"
    );
}

/// Writes `content` to `path` by a rename, so a reader (the load, which reads
/// its files on every request) sees the old file or the new one.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The certificates (PEM blocks) in `pem`.
fn pem_count(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

/// etcd's stops, starts and elections on `n` since `since` (Unix seconds),
/// from its systemd journal, each on the load's clock:
/// `12.34s node-1: Started etcd.service`.
fn etcd_log(l: &lab::LabHandle, n: &Node, since: f64) -> Vec<(f64, String)> {
    const SHOWN: [&str; 9] = [
        "Stopping etcd",
        "Stopped etcd",
        "Started etcd",
        "ready to serve client requests",
        "serving client traffic securely",
        "elected leader",
        "became leader",
        "lost leader",
        "rejected connection",
    ];
    let out = on(
        l,
        n,
        &format!(
            "journalctl -u etcd -o short-unix --no-pager --since @{}",
            since as u64
        ),
    );
    out.lines()
        .filter(|line| SHOWN.iter().any(|s| line.contains(s)))
        .filter_map(|line| {
            let (ts, rest) = line.split_once(' ')?;
            let at = ts.parse::<f64>().ok()? - since;
            let msg = rest.split_once(": ").map_or(rest, |(_, m)| m);
            let msg: String = msg.chars().take(200).collect();
            Some((at, format!("{at:.2}s {}: {msg}", n.host)))
        })
        .collect()
}

/// The last `n` records of the newest run's journal in workspace `w`, one
/// line each (`start systemctl node-1 node-1/main.rhai:...`): what a kill
/// interrupted.
fn journal_tail(w: &Path, n: usize) -> Vec<String> {
    let runs = w.join(".cairn/runs");
    let newest = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .expect("a run");
    let text = std::fs::read_to_string(newest.path().join("journal.jsonl")).unwrap();
    let lines: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let rec: serde_json::Value = serde_json::from_str(line.split_once(' ')?.1).ok()?;
            let field = |k: &str| rec[k].as_str().unwrap_or_default().to_string();
            Some(format!(
                "{} {} {} {}",
                field("t"),
                field("kind"),
                field("target"),
                field("key")
            ))
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// One CA rotation phase under the running load: killed at `kill`, resumed.
/// Returns its wall time; prints when it was killed and resumed on the load's
/// clock.
fn ca_phase(l: &lab::LabHandle, w: &Path, load: &load::Load, phase: &str, kill: &str) -> Duration {
    let args = [
        "run",
        "etcd-cert-rotate",
        "--lab",
        l.name.as_str(),
        "--var",
        "group=lab",
        "--var",
        &format!("ca_phase={phase}"),
    ];
    let t = Instant::now();
    let from = load.elapsed().as_secs_f64();
    let killed = cairn_kill(w, &args, Some(kill));
    let killed_at = load.elapsed().as_secs_f64();
    let at_kill = journal_tail(w, 6);
    assert_eq!(
        killed.status.code(),
        None,
        "{phase}: not killed at {kill}:\n{}",
        text(&killed)
    );
    let resumed = cairn_ok(w, &["resume"]);
    let took = t.elapsed();
    eprintln!(
        "--- {phase}: run {from:.2}s, killed at {kill} {killed_at:.2}s, resumed until {:.2}s:\n{}\n--- journal at the kill:\n  {}\n--- resumed:\n{resumed}",
        load.elapsed().as_secs_f64(),
        text(&killed),
        at_kill.join("\n  ")
    );
    // a rerun of the phase finds it done: nothing restarted, nothing changed
    let again = cairn_ok(w, &args);
    assert!(
        again.contains("0 created, 0 changed"),
        "{phase} rerun:\n{again}"
    );
    took
}

/// CA rotation of the etcd-binary-yaml cluster under load, each phase killed
/// once and resumed: the load switches to the new CA's client certificate
/// before phase 3. Failed requests are allowed only on the member being
/// restarted (at most one endpoint failing in any second: quorum kept); at
/// the end only the new CA is trusted and every acknowledged write reads back.
#[test]
fn ca_rotation_under_load() {
    if lab::skip() {
        return;
    }
    let _nodes = LAB_NODES.lock().unwrap_or_else(|e| e.into_inner());
    let l = lab::lab();
    // the leaf test may have run first, with servers of its own
    remove_cloud_servers(l);
    let nodes = members(l, "lab");
    wipe(l, &nodes);
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let pki = w.join(".cairn/pki");
    cairn_ok(w, &["run", "etcd-binary-yaml", "--lab", l.name.as_str()]);
    let pids: Vec<String> = nodes.iter().map(|n| etcd_pid(l, n)).collect();
    let before = observe(l, &nodes);

    // the load's files: CA(s) it trusts, and its client certificate + key in one file
    let files = tempfile::tempdir().unwrap();
    let (ca, client) = (files.path().join("ca.pem"), files.path().join("client.pem"));
    let read = |n: &str| std::fs::read_to_string(pki.join(n)).unwrap();
    let old_client = format!(
        "{}{}",
        read("etcd-cluster-1-operator.crt"),
        read("etcd-cluster-1-operator.key")
    );
    replace(&ca, &read("etcd-cluster-1-etcd-ca.crt"));
    replace(&client, &old_client);
    let target = load::Target {
        endpoints: nodes
            .iter()
            .map(|n| format!("https://{}:2379", n.etcd))
            .collect(),
        ca: ca.clone(),
        cert: client.clone(),
        key: client.clone(),
    };

    // the plan of phase 1 shows every file and every restart
    let plan = cairn(
        w,
        &[
            "plan",
            "etcd-cert-rotate",
            "--lab",
            l.name.as_str(),
            "--var",
            "group=lab",
            "--var",
            "ca_phase=bundle",
        ],
    );
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let plan = text(&plan);
    eprintln!("--- plan of ca_phase=bundle:\n{plan}");
    assert!(
        plan.matches("/etc/etcd/pki/etcd-ca.crt").count() >= 3,
        "{plan}"
    );
    assert!(plan.matches("restart").count() >= 3, "{plan}");
    // the plan knows who leads (etcd_cluster answers in plans): the leader's
    // turn comes last, after leadership moves to a member restarted before
    assert!(
        plan.contains("etcd leadership to ") && plan.contains(" leads now)"),
        "{plan}"
    );

    let running = load::Load::start(target.clone(), 25);
    // killed right after the first member's restart, before it is journaled
    let bundle_from = running.elapsed().as_secs_f64();
    let t1 = ca_phase(l, w, &running, "bundle", "applied:7");
    let bundle_to = running.elapsed().as_secs_f64();
    for (i, n) in nodes.iter().enumerate() {
        let trusted = on(l, n, "cat /etc/etcd/pki/etcd-ca.crt");
        assert_eq!(pem_count(&trusted), 2, "{}: {trusted}", n.host);
        assert_ne!(etcd_pid(l, n), pids[i], "{}: etcd not restarted", n.host);
    }
    // servers still serve the old CA's certificates; from phase 2 on, the new one's
    replace(
        &ca,
        &std::fs::read_to_string(w.join(".cairn/files/etcd-cluster-1-ca-bundle.crt")).unwrap(),
    );
    let pids: Vec<String> = nodes.iter().map(|n| etcd_pid(l, n)).collect();

    let t2 = ca_phase(l, w, &running, "leaves", "applied:4");
    let after_leaves = observe(l, &nodes);
    for (i, n) in nodes.iter().enumerate() {
        let (pid, c, p) = &after_leaves[i];
        assert_eq!(pid, &pids[i], "{}: etcd restarted in phase leaves", n.host);
        assert_ne!(
            c, &before[i].1,
            "{}: 2379 still serves the old certificate",
            n.host
        );
        let serial = serial_of(&pki, &format!("etcd-cluster-1-{}", n.member));
        assert_eq!((c, p), (&serial, &serial), "{}", n.host);
    }
    let new_ca = "etcd-cluster-1-etcd-ca-next";
    for name in [
        "etcd-cluster-1-operator",
        "etcd-cluster-1-apiserver-etcd-client",
    ] {
        let pem = read(&format!("{name}.crt"));
        let issuer = parse_pem(&pem).unwrap().info.issuer;
        assert!(issuer.contains(new_ca), "{name} issued by {issuer}");
    }
    // the load's client certificate from the new CA before the old one is dropped
    replace(
        &client,
        &format!(
            "{}{}",
            read("etcd-cluster-1-operator.crt"),
            read("etcd-cluster-1-operator.key")
        ),
    );

    // killed right after the first member's restart, before it is journaled
    let drop_from = running.elapsed().as_secs_f64();
    let t3 = ca_phase(l, w, &running, "drop", "applied:3");
    let drop_to = running.elapsed().as_secs_f64();
    // when each member stopped, started and served again, on the load's clock
    let mut log: Vec<(f64, String)> = nodes
        .iter()
        .flat_map(|n| etcd_log(l, n, running.started_unix()))
        .collect();
    log.sort_by(|a, b| a.0.total_cmp(&b.0));
    // every member's etcd started exactly once per restarting phase: the
    // resume finds the member the killed run restarted already running with
    // the new trusted CA (started after the file was written) and does not
    // restart it again
    for (phase, from, to) in [
        ("bundle", bundle_from, bundle_to),
        ("drop", drop_from, drop_to),
    ] {
        for n in &nodes {
            let starts = log
                .iter()
                .filter(|(at, line)| {
                    (from..to).contains(at) && line.contains(&format!(" {}: Started etcd", n.host))
                })
                .count();
            assert_eq!(
                starts,
                1,
                "{}: etcd started {starts} times in phase {phase} ({from:.2}-{to:.2}s): {:?}",
                n.host,
                log.iter()
                    .filter(|(at, _)| (from..to).contains(at))
                    .map(|(_, line)| line)
                    .filter(|line| line.contains("etcd.service"))
                    .collect::<Vec<_>>()
            );
        }
    }
    let log: Vec<String> = log.into_iter().map(|(_, line)| line).collect();
    let report = running.stop();
    report.check_data(&target);
    for (i, n) in nodes.iter().enumerate() {
        let trusted = on(l, n, "cat /etc/etcd/pki/etcd-ca.crt");
        assert_eq!(pem_count(&trusted), 1, "{}: {trusted}", n.host);
        assert_ne!(
            etcd_pid(l, n),
            pids[i],
            "{}: not restarted in phase drop",
            n.host
        );
    }
    // a client with the old CA's certificate is refused by every member
    let old = load::Target {
        cert: files.path().join("old.pem"),
        key: files.path().join("old.pem"),
        ..target.clone()
    };
    replace(&old.cert, &old_client);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = old.client();
    for ep in &target.endpoints {
        let refused = rt.block_on(c.expect_refused(ep));
        assert!(
            refused.is_ok(),
            "{ep} accepted the old CA's client: {refused:?}"
        );
    }

    // the building runbook, run again, would put the old CA back: the hosts'
    // owner record names the new CA, so it is refused before any change
    let again = cairn(w, &["plan", "etcd-binary-yaml", "--lab", l.name.as_str()]);
    let again = (again.status.code(), text(&again));
    assert_eq!(again.0, Some(1), "{}", again.1);
    assert!(
        again.1.contains("etcd-cert-rotate) with CA")
            && again.1.contains("(CN=etcd-cluster-1-etcd-ca-next)")
            && again.1.contains("nothing was changed"),
        "{}",
        again.1
    );

    // one member down at a time: each endpoint's failed requests grouped into
    // outages, from a failure to the last failure before that endpoint
    // answered again (by send time); no two endpoints' outages overlap. A
    // request answered in between splits them: the endpoint served then (a
    // leadership move fails requests in flight on a member that is up, and
    // merging that failure into the member's restart a second earlier made
    // the outage cover the next member's restart).
    let mut events: Vec<(f64, &str, bool)> = report
        .failures
        .iter()
        .map(|f| (f.at.as_secs_f64(), f.endpoint.as_str(), false))
        .chain(
            report
                .answered
                .iter()
                .map(|(at, ep)| (at.as_secs_f64(), ep.as_str(), true)),
        )
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut outages: Vec<(String, f64, f64)> = Vec::new();
    let mut open: std::collections::BTreeMap<&str, usize> = Default::default();
    for (at, ep, answered) in events {
        if answered {
            open.remove(ep);
        } else if let Some(i) = open.get(ep) {
            outages[*i].2 = at;
        } else {
            open.insert(ep, outages.len());
            outages.push((ep.to_string(), at, at));
        }
    }
    for f in &report.failures {
        eprintln!("load failure: {f}");
    }
    eprintln!(
        "FIGURES etcd-binary-yaml CA rotation: bundle {:.1}s, leaves {:.1}s, drop {:.1}s (each killed once and resumed); {} requests sent ({:.1}/s), {} failed; per endpoint (sent, failed): {:?}",
        t1.as_secs_f64(),
        t2.as_secs_f64(),
        t3.as_secs_f64(),
        report.sent,
        report.rate(),
        report.failed,
        report.per_endpoint
    );
    eprintln!("FIGURES CA rotation outages (endpoint, from s, to s): {outages:?}");
    eprintln!("FIGURES CA rotation failures by kind: {}", report.kinds());
    eprintln!(
        "etcd on the members (load's clock):\n  {}",
        log.join("\n  ")
    );
    // one outage per member restart (3 members, 2 rolling restarts; a member
    // restarted just before a kill is not restarted again on resume, checked
    // above), plus requests in flight on at most two members at each of the
    // two leadership moves
    assert!(outages.len() <= 10, "{outages:?}");
    for a in &outages {
        for b in &outages {
            assert!(
                a.0 == b.0 || a.2 < b.1 || b.2 < a.1,
                "{} and {} failed at once ({:.2}-{:.2}s, {:.2}-{:.2}s); failures ({}) in those outages:\n  {}\nanswered meanwhile: {} at {:?}; {} at {:?}\netcd on the members (load's clock):\n  {}",
                a.0,
                b.0,
                a.1,
                a.2,
                b.1,
                b.2,
                report.kinds(),
                report
                    .failures_between(a.1.min(b.1), a.2.max(b.2))
                    .join("\n  "),
                a.0,
                report.answered_between(&a.0, a.1, a.2),
                b.0,
                report.answered_between(&b.0, b.1, b.2),
                log.join("\n  ")
            );
        }
    }
    assert!(report.rate() >= 20.0, "{:.1} requests/s", report.rate());
    // How many requests fail depends on how long a member takes to restart
    // (about 1 s on an idle machine, 3 s or more on a loaded one), so no
    // ratio is held. What must hold is the goal, checked above: the
    // failures group into outages of one member at a time that never overlap
    // (so the cluster never lost quorum), at most one per restart.
}
