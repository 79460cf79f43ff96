//! Secrets and trust, on a lab with the shipped runbooks:
//!
//! - tokens and secret parameters (the lab's Hetzner and DigitalOcean
//!   tokens, a recognisable `SECRET-CANARY-...` read token) appear in no byte
//!   cairn writes or prints: the workspace, journals, saved and `--json`
//!   plans, stdout and stderr with `-v` logs; no private key PEM lies outside
//!   `.cairn/pki/*.key`;
//! - key files are 0600 in `.cairn/pki` and on the nodes;
//! - plans of the shipped runbooks never upload a CA key (etcd-static-pods
//!   copies it to the first host by design, to no other);
//! - plan purity: `cairn plan` against a half-applied run (killed by
//!   `CAIRN_FAULT_KILL`) leaves every node's /etc, /var/lib, /opt and
//!   /usr/local, the workspace and the lab's clouds (servers, networks,
//!   keys, droplets) identical — for each of the five shipped cluster
//!   runbooks and for etcd-hetzner-apt-cleanup killed mid-deletion.

mod common;

use common::{cairn, cairn_env, lab, text};

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every file under `root` (relative path, mode, bytes), folders included
/// with empty content.
fn snapshot(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (u32, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode();
            if meta.is_dir() {
                out.insert(rel, (mode, Vec::new()));
                walk(root, &p, out);
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, (mode, target.display().to_string().into_bytes()));
            } else {
                out.insert(rel, (mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Runs `cmd` on lab node `node` (static or cloud-made) and returns stdout.
fn ssh_ok(l: &lab::LabHandle, node: &str, cmd: &str) -> String {
    let out = lab::cairn_lab(&["ssh", "--name", &l.name, node, "--", cmd]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The tests of this file take turns: a server one creates rewrites every
/// node's /etc/hosts, which the purity test must not see as the plan's doing.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lab's inventory restricted to its static nodes (cloud-made servers
/// join the lab's inventory as other tests create them).
fn static_inventory(l: &lab::LabHandle, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(&l.inventory).unwrap();
    let names: Vec<String> = l
        .nodes
        .iter()
        .map(|n| format!("name = \"{}\"\n", n.name))
        .collect();
    let kept: Vec<&str> = text
        .split("[[hosts]]\n")
        .skip(1)
        .filter(|h| names.iter().any(|n| h.starts_with(n.as_str())))
        .collect();
    assert_eq!(kept.len(), l.nodes.len(), "{text}");
    let path = dir.join("static-hosts.toml");
    std::fs::write(&path, format!("[[hosts]]\n{}", kept.join("[[hosts]]\n"))).unwrap();
    path
}

/// A value nobody else would print: `SECRET-CANARY-` and 24 hex digits.
fn canary() -> String {
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("random bytes");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("SECRET-CANARY-{hex}")
}

/// What cairn printed, by label, and checks over it.
#[derive(Default)]
struct Printed(Vec<(String, Vec<u8>)>);

impl Printed {
    fn keep(&mut self, label: &str, out: &Output) {
        self.0
            .push((format!("{label} (stdout)"), out.stdout.clone()));
        self.0
            .push((format!("{label} (stderr)"), out.stderr.clone()));
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Where `secrets` or private key PEM appear among what cairn printed and
/// the files of workspace `ws` (keys in `.cairn/pki/*.key` are where they belong).
fn leaks(ws: &Path, printed: &Printed, secrets: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let files = snapshot(ws);
    let mut places: Vec<(String, &[u8])> = printed
        .0
        .iter()
        .map(|(l, b)| (l.clone(), b.as_slice()))
        .collect();
    places.extend(
        files
            .iter()
            .map(|(p, (_, b))| (format!("file {p}"), b.as_slice())),
    );
    for (place, bytes) in &places {
        for s in secrets {
            if contains(bytes, s) {
                found.push(format!("{s} in {place}"));
            }
        }
        let is_key_file = place.starts_with("file .cairn/pki/") && place.ends_with(".key");
        if contains(bytes, "PRIVATE KEY") && !is_key_file {
            found.push(format!("a private key PEM in {place}"));
        }
    }
    found
}

/// Names of `.cairn/pki` key files whose mode is not 0600.
fn loose_local_keys(ws: &Path) -> Vec<String> {
    let pki = ws.join(".cairn/pki");
    let mut loose = Vec::new();
    let mut n = 0;
    for e in std::fs::read_dir(&pki).expect("a pki folder") {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "key") {
            n += 1;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            if mode != 0o600 {
                loose.push(format!("{} is {mode:o}", p.display()));
            }
        }
    }
    assert!(n > 0, "no key in {}", pki.display());
    loose
}

fn ok(out: &Output, what: &str, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{what}:\n{}", text(out));
}

fn with_vars<'a>(args: &[&'a str], vars: &'a [String]) -> Vec<&'a str> {
    let mut out = args.to_vec();
    for v in vars {
        out.push("--var");
        out.push(v);
    }
    out
}

#[test]
fn secrets_never_reach_what_cairn_writes_or_prints_and_keys_are_0600() {
    if lab::skip() {
        return;
    }
    let _turn = serial();
    let l = lab::lab();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path();
    let hz_token = l.var("HCLOUD_TOKEN").to_string();
    let do_token = l.var("DIGITALOCEAN_ACCESS_TOKEN").to_string();
    let canary = canary();
    let mut printed = Printed::default();

    // etcd-hetzner-apt: the lab's token is a secret from the lab's env
    let hz: Vec<String> = [
        "cluster=sec",
        "network=net-sec",
        "ip_range=10.3.0.0/16",
        "subnet=10.3.1.0/24",
        "nodes=sec-1,sec-2,sec-3",
        "ssh_key_name=ssh-key-sec",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let lab = ["--lab", l.name.as_str()];
    let a = with_vars(
        &[&["plan", "etcd-hetzner-apt", "--json"][..], &lab].concat(),
        &hz,
    );
    let out = cairn(ws, &a);
    ok(&out, "hetzner plan --json", 2);
    printed.keep("hetzner plan --json", &out);
    let a = with_vars(
        &[&["-v", "run", "etcd-hetzner-apt"][..], &lab].concat(),
        &hz,
    );
    let out = cairn(ws, &a);
    ok(&out, "hetzner run -v", 0);
    printed.keep("hetzner run -v", &out);
    let a = with_vars(
        &[
            &["-v", "plan", "etcd-hetzner-apt", "-o", "hz-plan.json"][..],
            &lab,
        ]
        .concat(),
        &hz,
    );
    let out = cairn(ws, &a);
    ok(&out, "hetzner plan -v -o", 0);
    printed.keep("hetzner plan -v -o", &out);

    // etcd-do-discovery: a secret parameter from DIGITALOCEAN_READ_TOKEN,
    // written to the nodes. Plans with a canary (the nodes would be refused
    // by the API with it), the run with the lab's token.
    let dov: Vec<String> = [
        format!("domain={}.lab", l.name),
        "tag=etcd-sec".into(),
        "droplets=dsec-0,dsec-1,dsec-2".into(),
        "cluster=etcd-sec".into(),
        "ssh_key_name=etcd-sec".into(),
    ]
    .to_vec();
    for (label, extra) in [
        ("do plan --json", &["--json"][..]),
        ("do plan -v", &["-v"][..]),
    ] {
        let a = with_vars(
            &[&["plan", "etcd-do-discovery"][..], extra, &lab].concat(),
            &dov,
        );
        let out = cairn_env(ws, &a, &[("DIGITALOCEAN_READ_TOKEN", &canary)]);
        ok(&out, label, 2);
        printed.keep(label, &out);
    }
    let a = with_vars(
        &[&["-v", "run", "etcd-do-discovery"][..], &lab].concat(),
        &dov,
    );
    let out = cairn_env(ws, &a, &[("DIGITALOCEAN_READ_TOKEN", &do_token)]);
    ok(&out, "do run -v", 0);
    printed.keep("do run -v", &out);
    let out = cairn(ws, &["runs"]);
    printed.keep("runs", &out);

    // -vv trace logs of a plan too
    let a = with_vars(
        &[&["-vv", "plan", "etcd-hetzner-apt"][..], &lab].concat(),
        &hz,
    );
    let out = cairn(ws, &a);
    ok(&out, "hetzner plan -vv", 0);
    printed.keep("hetzner plan -vv", &out);

    // the search sees what it looks for: keys are where they belong
    let files = snapshot(ws);
    assert!(files
        .iter()
        .any(|(p, (_, b))| p.starts_with(".cairn/pki/") && contains(b, "PRIVATE KEY")));
    let found = leaks(ws, &printed, &[&hz_token, &do_token, &canary]);
    eprintln!(
        "secrets: searched {} outputs and {} workspace files: {} leaks",
        printed.0.len(),
        snapshot(ws).len(),
        found.len()
    );
    assert!(found.is_empty(), "leaks:\n{}", found.join("\n"));

    // the read token is on the nodes, in files only root reads
    let holders = ssh_ok(
        l,
        "dsec-0",
        &format!("grep -rlF -- '{do_token}' /etc | xargs -r stat -c '%a %U %n'"),
    );
    assert!(
        !holders.trim().is_empty(),
        "no node file holds the read token"
    );
    for line in holders.lines() {
        assert!(line.starts_with("600 root "), "{line}");
    }

    // key files: 0600 on the operator's machine and on the nodes
    let loose = loose_local_keys(ws);
    assert!(loose.is_empty(), "{loose:?}");
    for node in ["sec-1", "sec-2", "sec-3"] {
        let modes = ssh_ok(l, node, "stat -c '%a %U %n' /etc/etcd/*.key");
        assert_eq!(modes.lines().count(), 2, "{node}: {modes}");
        for line in modes.lines() {
            assert!(line.starts_with("600 "), "{node}: {line}");
        }
    }
    for node in ["dsec-0", "dsec-1", "dsec-2"] {
        let modes = ssh_ok(l, node, "stat -c '%a %U %n' /etc/etcd/*key*");
        assert!(modes.lines().count() >= 2, "{node}: {modes}");
        for line in modes.lines() {
            assert!(line.starts_with("600 "), "{node}: {line}");
        }
    }
}

/// CA key files (`pki/NAME.key`) a plan's gen_ca steps make.
fn ca_keys(plan: &serde_json::Value) -> Vec<String> {
    let mut keys = Vec::new();
    for step in plan["steps"].as_array().unwrap() {
        if step["kind"] != "gen_ca" {
            continue;
        }
        for a in step["actions"].as_array().unwrap() {
            let what = a["what"].as_str().unwrap_or_default();
            if let Some(rest) = what.split(", key pki/").nth(1) {
                keys.push(rest.trim_end_matches(')').to_string());
            }
        }
    }
    keys
}

#[test]
fn plans_of_shipped_runbooks_never_upload_a_ca_key() {
    if lab::skip() {
        return;
    }
    let _turn = serial();
    let l = lab::lab();
    let lab = ["--lab", l.name.as_str()];
    let domain = format!("domain={}.lab", l.name);
    let runbooks: [(&str, Vec<&str>); 5] = [
        (
            "etcd-hetzner-apt",
            vec![
                "--var",
                "cluster=cak",
                "--var",
                "network=net-cak",
                "--var",
                "ssh_key_name=key-cak",
                "--var",
                "nodes=cak-1,cak-2,cak-3",
            ],
        ),
        (
            "etcd-do-discovery",
            vec![
                "--var",
                &domain,
                "--var",
                "tag=etcd-cak",
                "--var",
                "droplets=dcak-0,dcak-1,dcak-2",
            ],
        ),
        ("etcd-binary-yaml", vec![]),
        ("etcd-debian-binary", vec![]),
        ("etcd-static-pods", vec!["--var", "kubelet=lab-standin"]),
    ];
    let mut checked = 0;
    let inv_dir = tempfile::tempdir().unwrap();
    let inventory = static_inventory(l, inv_dir.path());
    let inventory = inventory.to_str().unwrap();
    for (rb, vars) in &runbooks {
        let tmp = tempfile::tempdir().unwrap();
        let mut args = [&["plan", rb, "--json"][..], &lab, vars].concat();
        if !rb.contains("hetzner") && !rb.contains("-do-") {
            // the static nodes may be claimed by another test's workspace
            // (a half-applied run of the purity tests): this plan is about
            // what gets uploaded, so it takes them over (a plan changes nothing)
            args.extend(["--inventory", inventory, "--var", "adopt=true"]);
        }
        let out = cairn(tmp.path(), &args);
        ok(&out, rb, 2);
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let keys = ca_keys(&plan);
        assert!(!keys.is_empty(), "{rb}: no CA in the plan");
        let names: Vec<String> = keys
            .iter()
            .map(|k| k.rsplit('/').next().unwrap().to_string())
            .collect();
        let mut uploads = Vec::new();
        for step in plan["steps"].as_array().unwrap() {
            for a in step["actions"].as_array().unwrap() {
                let target = a["target"].as_str().unwrap_or_default();
                if ["local", "hetzner", "digitalocean"].contains(&target) {
                    continue;
                }
                checked += 1;
                let what = a["what"].as_str().unwrap_or_default();
                let reason = a["reason"].as_str().unwrap_or_default();
                let dest = what
                    .strip_prefix("file ")
                    .and_then(|w| w.split(' ').next())
                    .unwrap_or_default();
                let dest_name = dest.rsplit('/').next().unwrap_or_default();
                let from_ca_key = reason.starts_with("from ")
                    && keys.iter().any(|k| reason.ends_with(&format!("/{k}")));
                let named_ca_key = !dest.is_empty()
                    && (names.iter().any(|n| n == dest_name)
                        || ["ca.key", "ca-key.pem"].contains(&dest_name));
                if from_ca_key || named_ca_key {
                    uploads.push((target.to_string(), format!("{what} {reason}")));
                }
            }
        }
        if *rb == "etcd-static-pods" {
            // kubeadm's layout: the CA key on the first host only
            let targets: Vec<&str> = uploads.iter().map(|(t, _)| t.as_str()).collect();
            assert_eq!(targets, vec![l.nodes[0].name.as_str()], "{rb}: {uploads:?}");
            assert!(
                uploads[0].1.contains("/etc/kubernetes/pki/etcd/ca.key"),
                "{uploads:?}"
            );
        } else {
            assert!(uploads.is_empty(), "{rb} uploads a CA key: {uploads:?}");
        }
    }
    eprintln!(
        "CA keys: {} remote actions of {} plans checked",
        checked,
        runbooks.len()
    );
}

/// Every file under /etc, /var/lib, /opt and /usr/local of a node: type,
/// mode, owner, size, link target, and the sha256 of regular files.
const STATE: &str =
    "find /etc /var/lib /opt /usr/local -xdev -printf '%p %y %m %u:%g %s %l\\n' | sort; \
     find /etc /var/lib /opt /usr/local -xdev -type f -print0 | sort -z | xargs -0 sha256sum";

/// Waits until a command a killed run left running on `node` (an apt
/// install, say) has finished: every cairn command holds the node's cairn
/// lock while it runs, so taking that lock waits for it.
fn settle(l: &lab::LabHandle, node: &str) {
    let cmd = format!("flock -w 300 {} true", cairn::ssh::HOST_LOCK);
    let out = lab::cairn_lab(&["ssh", "--name", &l.name, node, "--", &cmd]);
    assert!(
        out.status.success(),
        "{node}: the killed run's command still held the cairn lock after 300 s: {}",
        text(&out)
    );
}

/// What the lab's cloud emulations hold: every Hetzner server, network and
/// ssh key and every DigitalOcean droplet and account key, by id and name.
fn cloud_state(l: &lab::LabHandle) -> Vec<String> {
    cloud_items(l)
        .into_iter()
        .map(|(entry, _status)| entry)
        .collect()
}

/// Servers and droplets the emulations are still creating, starting,
/// stopping or deleting (a killed run's requests go on without it).
fn cloud_in_transition(l: &lab::LabHandle) -> Vec<String> {
    let settled = ["running", "off", "active", "", "null"];
    cloud_items(l)
        .into_iter()
        .filter(|(_, status)| !settled.contains(&status.as_str()))
        .map(|(entry, status)| format!("{entry} {status}"))
        .collect()
}

/// Waits until no server or droplet is in transition (at most 120 s).
fn quiet_cloud(l: &lab::LabHandle) {
    let t = Instant::now();
    while !cloud_in_transition(l).is_empty() && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(300));
    }
    let busy = cloud_in_transition(l);
    assert!(busy.is_empty(), "still in transition after 120 s: {busy:?}");
}

/// [`cloud_state`]'s entries with each item's status (empty for networks
/// and keys), sorted.
fn cloud_items(l: &lab::LabHandle) -> Vec<(String, String)> {
    let hetzner = (l.var("HCLOUD_ENDPOINT"), l.var("HCLOUD_TOKEN"));
    let ocean = (
        l.var("DIGITALOCEAN_ENDPOINT"),
        l.var("DIGITALOCEAN_ACCESS_TOKEN"),
    );
    let mut state = Vec::new();
    for ((endpoint, token), cloud, path, key) in [
        (hetzner, "hetzner", "servers?per_page=50", "servers"),
        (hetzner, "hetzner", "networks?per_page=50", "networks"),
        (hetzner, "hetzner", "ssh_keys?per_page=50", "ssh_keys"),
        (ocean, "digitalocean", "droplets?per_page=200", "droplets"),
        (
            ocean,
            "digitalocean",
            "account/keys?per_page=200",
            "ssh_keys",
        ),
    ] {
        let out = Command::new("curl")
            .args(["-sf", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{endpoint}/{path}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {path}: {}", text(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let items = v[key].as_array().unwrap_or_else(|| panic!("{path}: {v}"));
        for item in items {
            let status = item["status"].as_str().unwrap_or_default().to_string();
            let entry = format!("{cloud} {key} {} {}", item["id"], item["name"]);
            state.push((entry, status));
        }
    }
    state.sort();
    state
}

/// Runs `runbook` with `args` until `CAIRN_FAULT_KILL=kill` kills it, then
/// plans it three ways (plain, `--json`, `-v`): every one of `nodes`' /etc,
/// /var/lib, /opt and /usr/local, the workspace and what the lab's clouds
/// hold must stay byte-identical.
fn plan_of_half_applied_run_is_pure(
    l: &lab::LabHandle,
    runbook: &str,
    args: &[String],
    nodes: &[String],
    kill: &str,
) {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path();
    let a: Vec<&str> = [
        &["run", runbook][..],
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ]
    .concat();
    let killed = cairn_env(ws, &a, &[("CAIRN_FAULT_KILL", kill)]);
    assert_eq!(
        killed.status.code(),
        None,
        "{runbook} must die: {}",
        text(&killed)
    );
    quiet_cloud(l);
    // (a killed cleanup may have deleted some)
    let nodes: Vec<String> = nodes.iter().filter(|n| is_node(l, n)).cloned().collect();
    for n in &nodes {
        settle(l, n);
    }
    // half applied: what the nodes have of etcd so far
    let done: Vec<String> = nodes
        .iter()
        .map(|n| {
            ssh_ok(
                l,
                n,
                "ls -d /etc/etcd/* /usr/local/bin/etcd* /var/lib/etcd/* 2>/dev/null | wc -l",
            )
        })
        .map(|s| s.trim().to_string())
        .collect();
    eprintln!("{runbook} killed at {kill}; etcd files per node: {done:?}");

    let state = |n: &str| ssh_ok(l, n, STATE);
    let differ = |a: &str, b: &str| -> Vec<String> {
        a.lines()
            .filter(|x| !b.lines().any(|y| y == *x))
            .chain(b.lines().filter(|x| !a.lines().any(|y| y == *x)))
            .map(String::from)
            .collect()
    };
    // what changes on a node by itself (without cairn) in a few seconds
    let first: Vec<String> = nodes.iter().map(|n| state(n)).collect();
    std::thread::sleep(Duration::from_secs(5));
    let before_nodes: Vec<String> = nodes.iter().map(|n| state(n)).collect();
    for (n, (a, b)) in nodes.iter().zip(first.iter().zip(&before_nodes)) {
        eprintln!("{n}: changed by itself in 5 s: {:?}", differ(a, b));
    }
    // files a running process holds open (a package's etcd writing its
    // database): their content and size are its own business, their
    // presence, type, mode and owner still count
    let live: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| ssh_ok(l, n, LIVE).lines().map(String::from).collect())
        .collect();
    let before_ws = snapshot(ws);
    let before_cloud = cloud_state(l);
    for extra in [&[][..], &["--json"][..], &["-v"][..]] {
        let mut a: Vec<&str> = vec!["plan", runbook];
        a.extend(extra);
        a.extend(args.iter().map(String::as_str));
        let plan = cairn(ws, &a);
        ok(
            &plan,
            &format!("{runbook}: plan {extra:?} of the half-applied run"),
            2,
        );
    }
    let mut before_ws = before_ws;
    let mut after_ws = snapshot(ws);
    assert_eq!(
        before_cloud,
        cloud_state(l),
        "{runbook}: plan changed a cloud"
    );
    // the audit log (issue 16) is the one thing a plan adds: one `plan` entry
    // per plan, appended, nothing else in it changed
    const LOG: &str = ".cairn/audit.log";
    let was = before_ws.remove(LOG).map(|(_, b)| b).unwrap_or_default();
    let (mode, now) = after_ws
        .remove(LOG)
        .expect("the plans wrote no audit entry");
    assert_eq!(mode & 0o777, 0o600, "{runbook}: audit log mode");
    let added = now
        .strip_prefix(was.as_slice())
        .unwrap_or_else(|| panic!("{runbook}: the audit log was rewritten, not appended"));
    let entries: Vec<serde_json::Value> = String::from_utf8_lossy(added)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 3, "{runbook}: {entries:?}");
    for e in &entries {
        assert_eq!(e["command"], "plan", "{runbook}: {e}");
        assert_eq!(e["result"], "changes", "{runbook}: {e}");
    }
    assert!(
        before_ws == after_ws,
        "{runbook}: plan changed the workspace: {:?}",
        after_ws
            .iter()
            .filter(|(k, v)| before_ws.get(*k) != Some(v))
            .map(|(k, _)| k)
            .chain(before_ws.keys().filter(|k| !after_ws.contains_key(*k)))
            .collect::<Vec<_>>()
    );
    // Files a node changed by itself during the idle window are not the
    // plan's doing either; every other byte, mode and owner must be identical.
    for (((n, before), idle), live) in nodes.iter().zip(&before_nodes).zip(&first).zip(&live) {
        let noisy: Vec<String> = differ(idle, before)
            .iter()
            .map(|l| path_of(l).to_string())
            .collect();
        let after = state(n);
        let changed: Vec<String> = differ(&steady(before, live), &steady(&after, live))
            .into_iter()
            .filter(|l| !noisy.iter().any(|p| p == path_of(l)))
            .collect();
        assert!(
            changed.is_empty(),
            "{runbook}: {n}: plan changed {changed:?}"
        );
        eprintln!(
            "{n}: {} entries unchanged ({} held open by a process)",
            before.lines().count(),
            live.len()
        );
    }
}

/// Whether lab node `name` (still) exists.
fn is_node(l: &lab::LabHandle, name: &str) -> bool {
    lab::cairn()
        .args(["lab", "ssh", "--name", &l.name, name, "--", "true"])
        .stdin(Stdio::null())
        .output()
        .expect("cairn lab ssh runs")
        .status
        .success()
}

/// The regular files under the compared trees some process on the node
/// holds open.
const LIVE: &str = "for f in /proc/[0-9]*/fd/*; do readlink \"$f\"; done 2>/dev/null \
     | grep -E '^/(etc|var/lib|opt|usr/local)/' | sort -u";

/// The path a [`STATE`] line describes: `sha256sum` lines end with it,
/// `find` lines start with it.
fn path_of(line: &str) -> &str {
    match line.split_once("  ") {
        Some((hash, path)) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            path
        }
        _ => line.split(' ').next().unwrap_or_default(),
    }
}

/// `state` without the content (hash lines) and size of the `live` files.
fn steady(state: &str, live: &[String]) -> String {
    let mut out = String::new();
    for line in state.lines() {
        let path = path_of(line);
        if live.iter().any(|p| p == path) {
            if line.starts_with(path) {
                // `find`: path type mode owner size [link]; drop the size
                let fields: Vec<&str> = line.split(' ').collect();
                let kept: Vec<&str> = fields
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 4)
                    .map(|(_, f)| *f)
                    .collect();
                out.push_str(&kept.join(" "));
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn plan_of_a_half_applied_hetzner_apt_run_changes_nothing() {
    if lab::skip() {
        return;
    }
    let _turn = serial();
    let l = lab::lab();
    let mut args = strings(&["--lab", &l.name]);
    for v in [
        "cluster=pur",
        "network=net-pur",
        "ip_range=10.4.0.0/16",
        "subnet=10.4.1.0/24",
        "nodes=pur-1,pur-2,pur-3",
        "ssh_key_name=ssh-key-pur",
    ] {
        args.extend(strings(&["--var", v]));
    }
    let nodes = strings(&["pur-1", "pur-2", "pur-3"]);
    plan_of_half_applied_run_is_pure(l, "etcd-hetzner-apt", &args, &nodes, "applied:24");
}

#[test]
fn plan_of_a_half_applied_binary_yaml_run_changes_nothing() {
    if lab::skip() {
        return;
    }
    let _turn = serial();
    let l = lab::lab();
    let inv_dir = tempfile::tempdir().unwrap();
    let inventory = static_inventory(l, inv_dir.path());
    let args = strings(&["--lab", &l.name, "--inventory", inventory.to_str().unwrap()]);
    let nodes: Vec<String> = l.nodes.iter().map(|n| n.name.clone()).collect();
    plan_of_half_applied_run_is_pure(l, "etcd-binary-yaml", &args, &nodes, "applied:20");
}

/// A fresh lab of three static nodes for one runbook's purity test (the
/// shared lab's static nodes hold etcd-binary-yaml's half-applied run), and
/// its nodes' names.
fn own_lab(tag: &str) -> (lab::LabHandle, Vec<String>) {
    let l = lab::start(&lab::unique_name(tag), 3);
    let nodes = l.nodes.iter().map(|n| n.name.clone()).collect();
    (l, nodes)
}

/// Tears down a lab of [`own_lab`] once its test passed (a failed test
/// leaves it for inspection until the process exits).
fn drop_lab(l: lab::LabHandle) {
    lab::cairn_lab(&["down", "--name", &l.name]);
    lab::disown(&l.name);
}

/// CI samples the half-applied plans: the runbooks that share this binary's
/// lab (hetzner-apt, binary-yaml, do-discovery, the cleanup) always run; the
/// two that need a lab of their own (debian-binary, static-pods) run with
/// `CAIRN_PURITY_RUNBOOKS=full`, as kill_resume's `CAIRN_KILL_POINTS=full`.
fn sampled_out(test: &str) -> bool {
    if std::env::var("CAIRN_PURITY_RUNBOOKS").as_deref() == Ok("full") {
        return false;
    }
    eprintln!("sampled out: {test} (CAIRN_PURITY_RUNBOOKS=full runs it)");
    true
}

#[test]
fn plan_of_a_half_applied_debian_binary_run_changes_nothing() {
    if lab::skip() || sampled_out("plan_of_a_half_applied_debian_binary_run_changes_nothing") {
        return;
    }
    let _turn = serial();
    let (l, nodes) = own_lab("pur-dbin");
    let args = strings(&["--lab", &l.name]);
    plan_of_half_applied_run_is_pure(&l, "etcd-debian-binary", &args, &nodes, "applied:20");
    drop_lab(l);
}

#[test]
fn plan_of_a_half_applied_static_pods_run_changes_nothing() {
    if lab::skip() || sampled_out("plan_of_a_half_applied_static_pods_run_changes_nothing") {
        return;
    }
    let _turn = serial();
    let (l, nodes) = own_lab("pur-pods");
    let args = strings(&["--lab", &l.name, "--var", "kubelet=lab-standin"]);
    plan_of_half_applied_run_is_pure(&l, "etcd-static-pods", &args, &nodes, "applied:40");
    drop_lab(l);
}

/// Killed with the discovery's files on the droplets but its restart still
/// to come: the plan must not compare the members file the discovery has
/// not written yet.
#[test]
fn plan_of_a_half_applied_do_discovery_run_changes_nothing() {
    if lab::skip() {
        return;
    }
    let _turn = serial();
    let l = lab::lab();
    let mut args = strings(&["--lab", &l.name]);
    for v in [
        format!("domain={}.lab", l.name),
        "tag=etcd-pur".into(),
        "droplets=dpur-0,dpur-1,dpur-2".into(),
        "cluster=etcd-pur".into(),
        "ssh_key_name=etcd-pur".into(),
    ] {
        args.extend(["--var".to_string(), v]);
    }
    let nodes = strings(&["dpur-0", "dpur-1", "dpur-2"]);
    plan_of_half_applied_run_is_pure(l, "etcd-do-discovery", &args, &nodes, "applied:50");
}

/// etcd-hetzner-apt-cleanup killed inside its first deletion (servers go
/// first, concurrently; the network and the key after; deletions already
/// sent finish in the emulation without cairn): a plan of the rest deletes
/// nothing — what the kill left (the network, any server not yet deleted)
/// is all still there, surviving nodes unchanged — and a run then removes it.
#[test]
fn plan_of_a_half_applied_hetzner_cleanup_changes_nothing() {
    if lab::skip() {
        return;
    }
    let _turn = serial();
    let l = lab::lab();
    let vars = ["cluster=cln", "network=net-cln", "ssh_key_name=ssh-key-cln"];
    let mut args = strings(&["--lab", &l.name]);
    for v in vars {
        args.extend(strings(&["--var", v]));
    }
    // the cluster to clean up
    let tmp = tempfile::tempdir().unwrap();
    let mut setup = args.clone();
    for v in [
        "ip_range=10.5.0.0/16",
        "subnet=10.5.1.0/24",
        "nodes=cln-1,cln-2,cln-3",
    ] {
        setup.extend(strings(&["--var", v]));
    }
    let a: Vec<&str> = [&["run", "etcd-hetzner-apt"][..], &to_strs(&setup)].concat();
    ok(&cairn(tmp.path(), &a), "etcd-hetzner-apt run", 0);
    let mine = |state: &[String]| -> Vec<String> {
        state
            .iter()
            .filter(|e| e.contains("cln"))
            .cloned()
            .collect()
    };
    // (the key is the lab's, already in the account under another name:
    // reused, so the cleanup's key deletion is a no-op)
    let servers = |state: &[String]| {
        state
            .iter()
            .filter(|e| e.starts_with("hetzner servers "))
            .count()
    };
    let made = mine(&cloud_state(l));
    assert_eq!(servers(&made), 3, "{made:?}");
    assert!(
        made.iter()
            .any(|e| e.starts_with("hetzner networks ") && e.ends_with("\"net-cln\"")),
        "{made:?}"
    );

    let nodes = strings(&["cln-1", "cln-2", "cln-3"]);
    plan_of_half_applied_run_is_pure(l, "etcd-hetzner-apt-cleanup", &args, &nodes, "applied:1");
    let left = mine(&cloud_state(l));
    assert!(
        servers(&left) < 3 && left.iter().any(|e| e.starts_with("hetzner networks ")),
        "killed after a server's deletion, before the network's: {left:?}"
    );
    // and the rest is cleaned up by a run
    let a: Vec<&str> = [&["run", "etcd-hetzner-apt-cleanup"][..], &to_strs(&args)].concat();
    ok(&cairn(tmp.path(), &a), "cleanup run", 0);
    quiet_cloud(l);
    assert_eq!(mine(&cloud_state(l)), Vec::<String>::new());
}

fn to_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}
