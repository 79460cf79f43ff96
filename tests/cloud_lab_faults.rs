//! The cloud emulations end to end on a lab, through the real daemon and the
//! real `cairn` binary:
//!
//! - DigitalOcean: tutorial 002's three droplets tagged `etcd`, found by tag,
//!   `hostname` run on each over ssh; a rerun creates nothing; the cleanup
//!   runbook (delete by tag) leaves no droplet and no node.
//! - Faults: with two 429s (`Retry-After` and reset headers), a 503 and a
//!   create whose answer is dropped after the server made the server/droplet
//!   (injected at `/_cairn/faults`), a run still succeeds with exactly three
//!   servers; the fault counters prove each fault was injected.
//! - A wrong API token fails the run with the provider's 401 message, a
//!   missing one with cairn's own; nothing is created either way.

mod common;

use common::{lab, text, Cairn};

use serde_json::{json, Value};
use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const DO_NAMES: [&str; 3] = ["etcd-1", "etcd-2", "etcd-3"];
const HETZNER_NAMES: [&str; 3] = ["node-1", "node-2", "node-3"];

fn runbook(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/runbooks")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn cairn(ws: &Path, args: &[&str]) -> Command {
    Cairn::new(ws).args(args).command()
}

/// `cairn run RUNBOOK --lab LAB` in `ws`.
fn run_on_lab(ws: &Path, lab: &str, rb: &str) -> Output {
    cairn(ws, &["run", &runbook(rb), "--lab", lab])
        .output()
        .expect("cairn runs")
}

/// One request to the lab daemon's cloud port: status and JSON answer
/// (`Null` when empty).
fn http(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = reqwest::Client::new()
            .request(method.clone(), url)
            .bearer_auth(token)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("answer body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {url}: not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, value)
    })
}

/// `GET url` that must answer 200.
fn get_ok(url: &str, token: &str) -> Value {
    let (status, v) = http("GET", url, token, None);
    assert_eq!(status, 200, "GET {url}: {v}");
    v
}

/// The two providers as the tests drive them.
#[derive(Clone, Copy, Debug)]
enum Provider {
    Hetzner,
    DigitalOcean,
}

impl Provider {
    fn endpoint_var(self) -> &'static str {
        match self {
            Provider::Hetzner => "HCLOUD_ENDPOINT",
            Provider::DigitalOcean => "DIGITALOCEAN_ENDPOINT",
        }
    }
    fn token_var(self) -> &'static str {
        match self {
            Provider::Hetzner => "HCLOUD_TOKEN",
            Provider::DigitalOcean => "DIGITALOCEAN_ACCESS_TOKEN",
        }
    }
    fn fixture(self) -> &'static str {
        match self {
            Provider::Hetzner => "cloud-hetzner",
            Provider::DigitalOcean => "cloud-do",
        }
    }
    fn names(self) -> [&'static str; 3] {
        match self {
            Provider::Hetzner => HETZNER_NAMES,
            Provider::DigitalOcean => DO_NAMES,
        }
    }
    /// `METHOD /path` of the create of a server or droplet.
    fn create_line(self) -> &'static str {
        match self {
            Provider::Hetzner => "POST /v1/servers",
            Provider::DigitalOcean => "POST /v2/droplets",
        }
    }
    /// The error line of a run with a wrong token: its start (the first
    /// step, the request) and its end (the provider's 401 answer).
    fn unauthorized(self) -> (&'static str, &'static str) {
        match self {
            Provider::Hetzner => (
                "error: hcloud_ssh_key on hetzner failed: hetzner GET /v1/ssh_keys",
                ": 401 unauthorized: unable to authenticate",
            ),
            Provider::DigitalOcean => (
                "error: do_ssh_key on digitalocean failed: digitalocean GET /v2/account/keys/",
                ": 401 Unauthorized: Unable to authenticate you.",
            ),
        }
    }
}

/// A lab's cloud API as the tests see it (endpoints and tokens from its env file).
struct Cloud<'a> {
    lab: &'a lab::LabHandle,
}

impl Cloud<'_> {
    fn endpoint(&self, p: Provider) -> &str {
        self.lab.var(p.endpoint_var())
    }
    fn token(&self, p: Provider) -> &str {
        self.lab.var(p.token_var())
    }
    fn faults_url(&self) -> String {
        let v1 = self.endpoint(Provider::Hetzner);
        format!("{}/_cairn/faults", v1.trim_end_matches("/v1"))
    }
    /// Current fault settings and counts.
    fn faults(&self) -> Value {
        get_ok(&self.faults_url(), self.token(Provider::Hetzner))["faults"].take()
    }
    /// Replaces the fault settings (the counts are kept).
    fn set_faults(&self, faults: Value) {
        let (status, v) = http(
            "POST",
            &self.faults_url(),
            self.token(Provider::DigitalOcean),
            Some(faults),
        );
        assert_eq!(status, 200, "POST /_cairn/faults: {v}");
    }
    fn clear_faults(&self) {
        let (status, v) = http(
            "DELETE",
            &self.faults_url(),
            self.token(Provider::Hetzner),
            None,
        );
        assert_eq!(status, 204, "DELETE /_cairn/faults: {v}");
    }
    /// Names of the servers (Hetzner: all; DigitalOcean: tagged `etcd`) as
    /// the emulation lists them, sorted.
    fn machines(&self, p: Provider) -> Vec<String> {
        let (url, key) = match p {
            Provider::Hetzner => (format!("{}/servers", self.endpoint(p)), "servers"),
            Provider::DigitalOcean => (
                format!("{}/droplets?tag_name=etcd", self.endpoint(p)),
                "droplets",
            ),
        };
        let v = get_ok(&url, self.token(p));
        let mut names: Vec<String> = v[key]
            .as_array()
            .unwrap_or_else(|| panic!("GET {url}: no `{key}` in {v}"))
            .iter()
            .map(|s| s["name"].as_str().expect("name").to_string())
            .collect();
        names.sort();
        names
    }
    /// Ssh keys the provider knows.
    fn ssh_keys(&self, p: Provider) -> usize {
        let (url, key) = match p {
            Provider::Hetzner => (format!("{}/ssh_keys", self.endpoint(p)), "ssh_keys"),
            Provider::DigitalOcean => (format!("{}/account/keys", self.endpoint(p)), "ssh_keys"),
        };
        get_ok(&url, self.token(p))[key]
            .as_array()
            .map_or(0, Vec::len)
    }
}

fn owned(names: [&str; 3]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// Names of the lab's nodes (from its inventory).
fn node_names(l: &lab::LabHandle) -> Vec<String> {
    let mut names: Vec<String> = l.hosts().into_iter().map(|h| h.name).collect();
    names.sort();
    names
}

#[test]
fn digitalocean_droplets_by_tag_run_rerun_and_cleanup() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("do"), 0);
    let cloud = Cloud { lab: &l };
    let p = Provider::DigitalOcean;
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();

    let started = Instant::now();
    let run = run_on_lab(w, &l.name, "cloud-do");
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    eprintln!(
        "first run ({:.1}s):\n{out}",
        started.elapsed().as_secs_f64()
    );
    for (i, name) in DO_NAMES.iter().enumerate() {
        // `hostname` ran on the droplet itself (the script asserts it too);
        // nyc3's default VPC is 10.111.0.0/20, addresses from .2 upwards
        let line = out
            .lines()
            .find(|line| line.starts_with(&format!("ran on {name} ")))
            .unwrap_or_else(|| panic!("no `ran on {name}` in:\n{out}"));
        assert!(
            line.ends_with(&format!(" private 10.111.0.{}: {name}", i + 2)),
            "{line}"
        );
    }
    assert_eq!(cloud.machines(p), owned(DO_NAMES));
    assert_eq!(node_names(&l), owned(DO_NAMES));
    let status = text(&lab::cairn_lab(&["status", "--name", &l.name]));
    for name in DO_NAMES {
        assert!(
            status
                .lines()
                .any(|s| s.trim_start().starts_with(&format!("{name} "))
                    && s.contains(" cloud")
                    && !s.contains(" stopped ")
                    && !s.contains(" unreachable ")),
            "{name} is not an up cloud node:\n{status}"
        );
    }

    let rerun = run_on_lab(w, &l.name, "cloud-do");
    let out = text(&rerun);
    assert!(rerun.status.success(), "{out}");
    assert!(out.contains(": 0 created, 0 changed, 0 deleted,"), "{out}");
    for name in DO_NAMES {
        assert!(
            out.contains(&format!(
                "= ok droplet {name} (exists with the same spec, active)"
            )),
            "{out}"
        );
    }
    assert_eq!(cloud.machines(p), owned(DO_NAMES), "a rerun made droplets");
    assert_eq!(node_names(&l), owned(DO_NAMES), "a rerun made nodes");

    let clean = run_on_lab(w, &l.name, "cloud-do-cleanup");
    let out = text(&clean);
    assert!(clean.status.success(), "{out}");
    assert!(out.contains("removed 3 droplets tagged etcd"), "{out}");
    assert!(cloud.machines(p).is_empty(), "{:?}", cloud.machines(p));
    assert!(node_names(&l).is_empty(), "{:?}", node_names(&l));
    let status = text(&lab::cairn_lab(&["status", "--name", &l.name]));
    assert!(!status.contains("etcd-"), "nodes left:\n{status}");

    let again = run_on_lab(w, &l.name, "cloud-do-cleanup");
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    assert!(out.contains("removed 0 droplets tagged etcd"), "{out}");
}

/// Runs the provider's fixture on a fresh lab while injecting, on the
/// creates of servers/droplets: two 429s (`Retry-After: 2` and reset
/// headers), then a 503, then a create whose answer is dropped after it took
/// effect. The fault settings hold one status at a time, so the 503 and the
/// drop are set while cairn waits out the second 429's `Retry-After`.
fn survives_faults(p: Provider, tag: &str) {
    let l = lab::start(&lab::unique_name(tag), 0);
    let cloud = Cloud { lab: &l };
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let only = p.create_line();

    cloud.clear_faults();
    cloud.set_faults(json!({ "fail_next": 2, "status": 429, "retry_after": 2, "only": only }));
    let f = cloud.faults();
    assert_eq!(
        (f["fail_next"].as_u64(), f["failed"].as_u64()),
        (Some(2), Some(0)),
        "{f}"
    );

    let log = w.join("run.log");
    let started = Instant::now();
    let log_file = File::create(&log).unwrap();
    let mut child = cairn(w, &["run", &runbook(p.fixture()), "--lab", &l.name])
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("cairn runs");
    // (failed = 1 seen, failed = 2 seen)
    let (mut first, mut second): (Option<Instant>, Option<Instant>) = (None, None);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the run did not end in 300 s:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if second.is_none() {
            let failed = cloud.faults()["failed"].as_u64().unwrap_or(0);
            if failed >= 1 && first.is_none() {
                first = Some(Instant::now());
            }
            if failed >= 2 {
                second = Some(Instant::now());
                cloud.set_faults(json!({
                    "fail_next": 1, "status": 503, "drop_after_effect": 1, "only": only,
                }));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = started.elapsed().as_secs_f64();
    let out = std::fs::read_to_string(&log).unwrap();
    eprintln!("{p:?} run under faults ({secs:.1}s):\n{out}");
    let faults = cloud.faults();
    cloud.clear_faults();

    assert!(status.success(), "{status}:\n{out}");
    let (first, second) = (
        first.expect("no 429 was injected"),
        second.expect("no second 429 was injected"),
    );
    // the second attempt waited out the first 429's Retry-After (2 s; the
    // test polls every 20 ms)
    assert!(
        second - first >= Duration::from_millis(1800),
        "retried {:?} after a 429 with Retry-After: 2",
        second - first
    );
    // every fault was injected: 2 x 429 + 1 x 503 failed, one answer dropped
    assert_eq!(faults["failed"], json!(3), "{faults}");
    assert_eq!(faults["dropped"], json!(1), "{faults}");
    assert_eq!(faults["fail_next"], json!(0), "{faults}");
    assert_eq!(faults["drop_after_effect"], json!(0), "{faults}");

    // exactly three, each once: the lost create was adopted, not repeated
    assert_eq!(cloud.machines(p), owned(p.names()), "{out}");
    assert_eq!(node_names(&l), owned(p.names()), "{out}");
    for name in p.names() {
        assert!(
            out.contains(&format!("ran on {name} ")),
            "no `ran on {name}` in:\n{out}"
        );
    }
}

#[test]
fn hetzner_run_survives_rate_limits_unavailability_and_a_lost_answer() {
    if lab::skip() {
        return;
    }
    survives_faults(Provider::Hetzner, "fault-hz");
}

#[test]
fn digitalocean_run_survives_rate_limits_unavailability_and_a_lost_answer() {
    if lab::skip() {
        return;
    }
    survives_faults(Provider::DigitalOcean, "fault-do");
}

/// The `error: ...` line of a failed run's output.
fn error_line(out: &str) -> &str {
    out.lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line in:\n{out}"))
}

/// `cairn run` of the provider's fixture without `--lab`: the lab's env file
/// as environment, with the provider's token replaced by `token` (or removed).
fn run_with_token(l: &lab::LabHandle, ws: &Path, p: Provider, token: Option<&str>) -> Output {
    let mut c = cairn(ws, &["run", &runbook(p.fixture())]);
    for (k, v) in &l.env {
        if k != p.token_var() {
            c.env(k, v);
        }
    }
    if let Some(t) = token {
        c.env(p.token_var(), t);
    }
    c.output().expect("cairn runs")
}

#[test]
fn a_wrong_or_missing_token_fails_and_creates_nothing() {
    if lab::skip() {
        return;
    }
    let l = lab::start(&lab::unique_name("token"), 0);
    let cloud = Cloud { lab: &l };
    let wrong = "wrong-token-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    for p in [Provider::Hetzner, Provider::DigitalOcean] {
        let ws = tempfile::tempdir().unwrap();
        let run = run_with_token(&l, ws.path(), p, Some(wrong));
        let out = text(&run);
        eprintln!("{p:?} with a wrong token:\n{out}");
        assert_eq!(run.status.code(), Some(1), "{p:?} wrong token:\n{out}");
        let error = error_line(&out);
        let (start, end) = p.unauthorized();
        assert!(
            error.starts_with(start) && error.ends_with(end),
            "{p:?} wrong token: want `{start}...{end}`, got:\n{out}"
        );
        assert!(!out.contains(wrong), "{p:?}: the token is printed:\n{out}");

        let ws = tempfile::tempdir().unwrap();
        let run = run_with_token(&l, ws.path(), p, None);
        let out = text(&run);
        eprintln!("{p:?} without a token:\n{out}");
        assert_eq!(run.status.code(), Some(1), "{p:?} no token:\n{out}");
        let missing = format!("set {} or pass `token_file`", p.token_var());
        assert!(
            error_line(&out).contains(&missing),
            "{p:?} no token:\n{out}"
        );

        assert!(
            cloud.machines(p).is_empty(),
            "{p:?}: {:?}",
            cloud.machines(p)
        );
        assert_eq!(cloud.ssh_keys(p), 0, "{p:?}: an ssh key was created");
    }
    let (_, networks) = http(
        "GET",
        &format!("{}/networks", cloud.endpoint(Provider::Hetzner)),
        cloud.token(Provider::Hetzner),
        None,
    );
    assert_eq!(networks["networks"], json!([]), "{networks}");
    assert!(node_names(&l).is_empty(), "{:?}", node_names(&l));
}
