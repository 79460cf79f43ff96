//! The adversarial corpus: hostile inputs and a hostile service account
//! against every shipped runbook, on one lab.
//!
//! Each case tries one attack and must end either refused with a clear error
//! (exit 1, naming what was wrong) or done safely; and, checked on every
//! node and on this machine at the end: no marker file of its payload
//! (`touch /tmp/pwned-PID-N`) exists, no root-owned file under /etc,
//! /usr/local or /opt changed outside the runbook's own paths, and the
//! content of a root-only canary file (what a planted symlink points at)
//! appears in no output and no workspace file (journals, plans).
//!
//! Order, cheapest first: plans with hostile host names, parameters,
//! environment values, URLs and template values for every shipped runbook
//! (plans change nothing: every node's /etc, /usr/local and /opt must be
//! byte-identical afterwards); the lock attacks of a local non-root user;
//! a symlinked or readable local workspace; then one converged
//! etcd-debian-binary cluster (the runbook whose folders
//! belong to the `etcd` account) reused for symlinks planted by `etcd` at
//! every path the runbook writes or chowns, planned and rerun as root; last,
//! a second workspace on the same hosts (refused, then adopted).
//!
//! Prints "N cases tried, N safe" and fails unless every case is safe.

mod common;

use common::{lab, text, Cairn};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Output;

/// How long one cairn command may take before it counts as hanging.
const PATIENCE_SECS: u32 = 240;
/// A plan must not wait on a lock a non-root user holds for longer than this.
const LOCK_PATIENCE_SECS: u32 = 60;

/// `cairn ARGS` in `ws` (the harness's environment, plus `env`), killed
/// after `patience` seconds (exit 137).
fn cairn_within(ws: &Path, args: &[String], env: &[(String, String)], patience: u32) -> Output {
    Cairn::new(ws)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .patience(patience)
        .output()
}

fn cairn(ws: &Path, args: &[String], env: &[(String, String)]) -> Output {
    cairn_within(ws, args, env, PATIENCE_SECS)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Random hex, for canaries.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every path under /etc, /usr/local and /opt of a node: type, owner, mode,
/// link target and (files) sha256.
type Snapshot = BTreeMap<String, String>;

fn snapshot(l: &lab::LabHandle, node: &str) -> Snapshot {
    let out = l.ssh_ok(
        node,
        "find /etc /usr/local /opt -xdev -printf '%p\\t%y %U:%G %m %l\\n' 2>/dev/null; \
         find /etc /usr/local /opt -xdev -type f -print0 2>/dev/null | xargs -0 -r sha256sum",
    );
    let mut snap = Snapshot::new();
    for line in out.lines() {
        if let Some((path, meta)) = line.split_once('\t') {
            snap.entry(path.to_string())
                .or_default()
                .insert_str(0, meta);
        } else if let Some((hash, path)) = line.split_once("  ") {
            snap.entry(path.to_string())
                .or_default()
                .push_str(&format!(" sha256:{hash}"));
        }
    }
    snap
}

fn snapshots(l: &lab::LabHandle) -> Vec<Snapshot> {
    std::thread::scope(|s| {
        let handles: Vec<_> = l
            .nodes
            .iter()
            .map(|n| s.spawn(move || snapshot(l, &n.name)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Paths that differ between two snapshots of the nodes, outside `own`
/// (the runbook's own paths, as prefixes).
fn changed_outside(
    l: &lab::LabHandle,
    before: &[Snapshot],
    after: &[Snapshot],
    own: &[&str],
) -> Vec<String> {
    let mut changed = Vec::new();
    for ((node, b), a) in l.nodes.iter().zip(before).zip(after) {
        let paths: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
        for p in paths {
            if own
                .iter()
                .any(|o| p == o.trim_end_matches('/') || p.starts_with(o))
            {
                continue;
            }
            if b.get(p) != a.get(p) {
                changed.push(format!(
                    "{}:{p} ({} -> {})",
                    node.name,
                    b.get(p).map(String::as_str).unwrap_or("absent"),
                    a.get(p).map(String::as_str).unwrap_or("absent")
                ));
            }
        }
    }
    changed
}

/// One case's outcome: `Ok(how it was safe)` or `Err(what went wrong)`.
type Verdict = Result<String, String>;

struct Case {
    id: usize,
    name: String,
    verdict: Verdict,
}

/// The corpus run: the lab, its workspaces, every case tried.
struct Corpus<'a> {
    l: &'a lab::LabHandle,
    tag: String,
    canary: String,
    cases: Vec<Case>,
    /// What cairn printed, kept to search for the canary at the end.
    printed: Vec<(usize, String)>,
}

impl<'a> Corpus<'a> {
    fn new(l: &'a lab::LabHandle) -> Self {
        Corpus {
            l,
            tag: format!("pwned-{}", std::process::id()),
            canary: format!("CANARY-{}", random_hex(12)),
            cases: Vec::new(),
            printed: Vec::new(),
        }
    }

    /// The id the next case gets.
    fn next_id(&self) -> usize {
        self.cases.len() + 1
    }

    /// The marker file the next case's payloads create if they run.
    fn marker(&self) -> String {
        format!("/tmp/{}-{}", self.tag, self.next_id())
    }

    fn record(&mut self, name: &str, verdict: Verdict) {
        let id = self.next_id();
        match &verdict {
            Ok(how) => eprintln!("case {id:>2} safe   {name}: {how}"),
            Err(why) => eprintln!("case {id:>2} UNSAFE {name}: {why}"),
        }
        self.cases.push(Case {
            id,
            name: name.into(),
            verdict,
        });
    }

    /// Judge a cairn command: refused (exit 1) naming one of `names`, or done
    /// (exit 0 or 2); never hung, never printing the canary.
    fn judge(&mut self, out: &Output, names: &[&str]) -> Verdict {
        let t = text(out);
        self.printed.push((self.next_id(), t.clone()));
        if t.contains(&self.canary) {
            return Err("the canary's content is in cairn's output".into());
        }
        match out.status.code() {
            Some(0) | Some(2) => Ok(format!("done (exit {})", out.status.code().unwrap())),
            Some(1) => {
                let first = t
                    .lines()
                    .find(|l| l.contains("error") || l.contains("failed") || l.contains("invalid"))
                    .unwrap_or("")
                    .trim()
                    .chars()
                    .take(160)
                    .collect::<String>();
                if names.iter().any(|n| t.contains(n)) {
                    Ok(format!("refused: {first}"))
                } else {
                    Err(format!(
                        "exit 1 without naming any of {names:?}: {}",
                        lab_tail(&t)
                    ))
                }
            }
            Some(137) | Some(124) | None => Err(format!(
                "did not finish (killed after its time): {}",
                lab_tail(&t)
            )),
            Some(c) => Err(format!("exit {c}: {}", lab_tail(&t))),
        }
    }

    /// A plan of `runbook` with `args` (after `plan RUNBOOK`) and `env`.
    fn plan(
        &mut self,
        ws: &Path,
        name: &str,
        runbook: &str,
        args: &[String],
        env: &[(String, String)],
        names: &[&str],
    ) -> Output {
        let mut all = strings(&["plan", runbook]);
        all.extend(args.iter().cloned());
        let out = cairn(ws, &all, env);
        let verdict = self.judge(&out, names);
        self.record(name, verdict);
        out
    }

    /// Marker files of this corpus on every node and on this machine: ids.
    fn markers_found(&self) -> BTreeMap<usize, Vec<String>> {
        let mut found: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let prefix = format!("{}-", self.tag);
        let mut note = |place: &str, name: &str| {
            if let Some(id) = name
                .strip_prefix(&prefix)
                .and_then(|n| n.trim().parse().ok())
            {
                found.entry(id).or_default().push(place.to_string());
            }
        };
        for n in &self.l.nodes {
            let out = self.l.ssh_ok(&n.name, "ls -1 /tmp");
            for f in out.lines() {
                note(&n.name, f);
            }
        }
        for e in std::fs::read_dir("/tmp").unwrap().flatten() {
            note("this machine", &e.file_name().to_string_lossy());
        }
        found
    }

    /// Mark cases whose markers exist as unsafe, and cases whose output or
    /// workspace holds the canary.
    fn settle(&mut self, workspaces: &[&Path]) {
        let found = self.markers_found();
        for case in &mut self.cases {
            if let Some(places) = found.get(&case.id) {
                case.verdict = Err(format!(
                    "its payload ran: /tmp/{}-{} exists on {}",
                    self.tag,
                    case.id,
                    places.join(", ")
                ));
            }
        }
        for ws in workspaces {
            for (path, bytes) in files_under(ws) {
                if String::from_utf8_lossy(&bytes).contains(&self.canary) {
                    self.cases.push(Case {
                        id: self.cases.len() + 1,
                        name: format!("workspace file {path} holds no canary"),
                        verdict: Err("the canary's content is in it".into()),
                    });
                }
            }
        }
    }
}

fn lab_tail(t: &str) -> String {
    let lines: Vec<&str> = t.lines().collect();
    lines[lines.len().saturating_sub(6)..].join(" | ")
}

fn files_under(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                walk(&p, out);
            } else if meta.is_file() {
                out.push((
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out
}

/// (runbook, parameter, value with `{M}` for the marker, other vars, names a refusal may use)
type ParamCase = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<&'static str>,
);

#[derive(serde::Serialize)]
struct Inventory {
    hosts: Vec<cairn::host::Host>,
}

/// An inventory file in `dir` holding `hosts`.
fn inventory(dir: &Path, file: &str, hosts: Vec<cairn::host::Host>) -> String {
    let path = dir.join(file);
    std::fs::write(&path, toml::to_string(&Inventory { hosts }).unwrap()).unwrap();
    path.display().to_string()
}

fn var(k: &str, v: &str) -> [String; 2] {
    ["--var".into(), format!("{k}={v}")]
}

fn with(mut base: Vec<String>, extra: &[[String; 2]]) -> Vec<String> {
    for e in extra {
        base.extend(e.iter().cloned());
    }
    base
}

/// The runbook-owned paths of etcd-debian-binary on a node.
const DEBIAN_BINARY_PATHS: &[&str] = &[
    "/etc/ssl/etcd/",
    "/opt/etcd/",
    "/etc/etcd/",
    "/etc/cairn/",
    "/etc/systemd/system/etcd.service",
    "/etc/systemd/system/multi-user.target.wants/etcd.service",
    "/usr/local/bin/",
];

#[test]
fn hostile_inputs_and_a_hostile_service_account_change_nothing_they_should_not() {
    if lab::skip() {
        return;
    }
    let l = lab::lab();
    let mut c = Corpus::new(l);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ws_plans = dir.join("plans");
    std::fs::create_dir(&ws_plans).unwrap();
    let lab_args = strings(&["--lab", &l.name]);
    let static_hosts = l.hosts();
    let first = static_hosts[0].clone();

    // ---- 1. Plans with hostile inputs: nothing may change on any node ----
    let before = snapshots(l);

    // hostile inventories: one host (a 1-member cluster) with one hostile field
    type Edit = fn(&mut cairn::host::Host, &str);
    let host_cases: [(&str, &str, Edit, &[&str]); 7] = [
        (
            "host name with `;`",
            "etcd-debian-binary",
            |h, m| h.name = format!("n1;touch {m};:"),
            &["name", "n1;touch"],
        ),
        (
            "host name with `$(...)`",
            "etcd-debian-binary",
            |h, m| h.name = format!("$(touch {m})"),
            &["name", "$(touch"],
        ),
        (
            "host name with a line break",
            "etcd-debian-binary",
            |h, m| h.name = format!("n1\ntouch {m}"),
            &["name", "line break"],
        ),
        (
            "host name escaping a folder",
            "etcd-debian-binary",
            |h, _| h.name = "../../../etc/cron.d/pwn".into(),
            &["name", "../"],
        ),
        (
            "host fqdn with `;` (openssl.cnf, SANs)",
            "etcd-debian-binary",
            |h, m| h.fqdn = Some(format!("n1.lab;touch {m}")),
            &["fqdn", "dns", "DNS", "n1.lab;touch"],
        ),
        (
            "host address as an ssh option",
            "etcd-binary-yaml",
            |h, m| h.address = format!("-oProxyCommand=touch {m}"),
            &["address", "ProxyCommand"],
        ),
        (
            "host private address with `;`",
            "etcd-binary-yaml",
            |h, m| h.private_address = Some(format!("10.9.9.9;touch {m}")),
            &["address", "10.9.9.9;touch", "`ips`"],
        ),
    ];
    for (what, runbook, edit, names) in host_cases {
        let mut h = first.clone();
        edit(&mut h, &c.marker());
        let inv = inventory(dir, &format!("inv-{}.toml", c.next_id()), vec![h]);
        let mut args = strings(&["--inventory", &inv]);
        args.extend(lab_args.iter().cloned());
        if runbook == "etcd-debian-binary" {
            args.extend(var("nodes", "1"));
        }
        c.plan(
            &ws_plans,
            &format!("inventory: {what} ({runbook})"),
            runbook,
            &args,
            &[],
            names,
        );
    }

    // hostile parameters, URLs and template values, every shipped runbook
    let lab_domain = format!("{}.lab", l.name);
    // (runbook, param, value with {M} for the marker, extra vars, names the refusal may use)
    let param_cases: Vec<ParamCase> = vec![
        (
            "etcd-binary-yaml",
            "version",
            "v3.5.1;touch {M};:",
            vec![],
            vec!["version"],
        ),
        (
            "etcd-binary-yaml",
            "version",
            "v3.5.$(touch {M})",
            vec![],
            vec!["version"],
        ),
        (
            "etcd-binary-yaml",
            "release_mirror",
            "http://127.0.0.1:9/$(touch {M})",
            vec![],
            vec!["release_mirror"],
        ),
        (
            "etcd-binary-yaml",
            "sha256",
            "abc;touch {M}",
            vec![],
            vec!["sha256"],
        ),
        (
            "etcd-binary-yaml",
            "cluster",
            "c1;touch {M}",
            vec![],
            vec!["cluster", "name"],
        ),
        (
            "etcd-binary-yaml",
            "arch",
            "amd64;touch {M}",
            vec![],
            vec!["arch"],
        ),
        (
            "etcd-debian-binary",
            "ssl_dir",
            "/etc/ssl/etcd;touch {M};:",
            vec![],
            vec!["ssl_dir", "path"],
        ),
        (
            "etcd-debian-binary",
            "etcd_dir",
            "/opt/etcd$(touch {M})",
            vec![],
            vec!["etcd_dir", "path"],
        ),
        (
            "etcd-debian-binary",
            "etcd_dir",
            "/opt/etcd\nETCD_ENABLE_PPROF=true\n#{M}",
            vec![],
            vec!["etcd_dir", "path", "line break"],
        ),
        (
            "etcd-debian-binary",
            "etcd_version",
            "3.5.1;touch {M};:",
            vec![],
            vec!["etcd_version", "version"],
        ),
        (
            "etcd-debian-binary",
            "release_mirror",
            "http://127.0.0.1:9/'$(touch {M})'",
            vec![],
            vec!["release_mirror"],
        ),
        (
            "etcd-debian-binary",
            "sha256",
            "$(touch {M})",
            vec![],
            vec!["sha256"],
        ),
        (
            "etcd-debian-binary",
            "cluster",
            "etcd\nETCD_ENABLE_PPROF=true",
            vec![],
            vec!["cluster", "name", "line break"],
        ),
        (
            "etcd-debian-binary",
            "flannel_key",
            "/x';touch {M};'",
            vec![],
            vec!["flannel_key"],
        ),
        (
            "etcd-debian-binary",
            "flannel_key",
            "/x$(touch {M})",
            vec![],
            vec!["flannel_key"],
        ),
        (
            "etcd-debian-binary",
            "flannel_backend",
            "vxlan\"}';touch {M};'",
            vec![],
            vec!["flannel_backend"],
        ),
        (
            "etcd-static-pods",
            "etcd_version",
            "v3.5.1;touch {M};:",
            vec![("kubelet", "lab-standin")],
            vec!["etcd_version", "version"],
        ),
        (
            "etcd-static-pods",
            "image_registry",
            "reg\"\nenable-pprof: true #{M}",
            vec![("kubelet", "lab-standin")],
            vec!["image_registry"],
        ),
        (
            "etcd-static-pods",
            "release_mirror",
            "http://127.0.0.1:9/$(touch {M})",
            vec![("kubelet", "lab-standin")],
            vec!["release_mirror"],
        ),
        (
            "etcd-static-pods",
            "sha256",
            ";touch {M}",
            vec![("kubelet", "lab-standin")],
            vec!["sha256"],
        ),
        (
            "etcd-static-pods",
            "kubernetes_apt_repo",
            "https://127.0.0.1:9/$(touch {M})",
            vec![("kubelet", "real")],
            vec!["kubernetes_apt_repo"],
        ),
        (
            "etcd-static-pods",
            "packages",
            "containerd,kubelet;touch {M}",
            vec![("kubelet", "real")],
            vec!["packages"],
        ),
        (
            "etcd-hetzner-apt",
            "nodes",
            "n1;touch {M},n2,n3",
            vec![("cluster", "adv"), ("network", "net-adv")],
            vec!["nodes", "name"],
        ),
        (
            "etcd-hetzner-apt",
            "packages",
            "etcd-server;touch {M}",
            vec![
                ("cluster", "adv"),
                ("network", "net-adv"),
                ("nodes", "adv-1"),
            ],
            vec!["packages"],
        ),
        (
            "etcd-hetzner-apt",
            "cluster",
            "c\"\nETCD_ENABLE_PPROF=\"true",
            vec![("network", "net-adv"), ("nodes", "adv-1")],
            vec!["cluster", "name", "line break", "label"],
        ),
        (
            "etcd-hetzner-apt",
            "ssh_public_key",
            "/nonexistent;touch {M}",
            vec![
                ("cluster", "adv"),
                ("network", "net-adv"),
                ("nodes", "adv-1"),
            ],
            vec!["ssh_public_key", "public_key", "nonexistent"],
        ),
        (
            "etcd-do-discovery",
            "tag",
            "etcd;touch {M}",
            vec![("domain", "LABDOMAIN"), ("droplets", "dadv-0")],
            vec!["tag"],
        ),
        (
            "etcd-do-discovery",
            "domain",
            "lab$(touch {M})",
            vec![("droplets", "dadv-0")],
            vec!["domain", "dns"],
        ),
        (
            "etcd-do-discovery",
            "interface",
            "eth0\ntouch {M}",
            vec![("domain", "LABDOMAIN"), ("droplets", "dadv-0")],
            vec!["interface", "line break"],
        ),
        (
            "etcd-do-discovery",
            "api_endpoint",
            "http://127.0.0.1:9/\"$(touch {M})",
            vec![("domain", "LABDOMAIN"), ("droplets", "dadv-0")],
            vec!["api_endpoint"],
        ),
        (
            "etcd-do-discovery",
            "droplets",
            "dadv-0;touch {M}",
            vec![("domain", "LABDOMAIN")],
            vec!["droplets", "name"],
        ),
        (
            "etcd-hetzner-apt-cleanup",
            "cluster",
            "x;touch {M}",
            vec![],
            vec!["cluster", "label"],
        ),
        (
            "etcd-do-discovery-cleanup",
            "tag",
            "x;touch {M}",
            vec![],
            vec!["tag"],
        ),
    ];
    for (runbook, param, value, extra, names) in &param_cases {
        let value = value.replace("{M}", &c.marker());
        let mut args = lab_args.clone();
        if matches!(
            *runbook,
            "etcd-binary-yaml" | "etcd-debian-binary" | "etcd-static-pods"
        ) {
            args.extend(strings(&["--inventory", l.inventory.to_str().unwrap()]));
        }
        args.extend(var(param, &value));
        for (k, v) in extra {
            args.extend(var(k, &v.replace("LABDOMAIN", &lab_domain)));
        }
        let shown: String = value.replace('\n', "\\n");
        c.plan(
            &ws_plans,
            &format!("param {param}={shown} ({runbook})"),
            runbook,
            &args,
            &[],
            names,
        );
    }

    // hostile environment values (without --lab, whose env file would win)
    let mirror = l.var("CAIRN_RELEASE_MIRROR").to_string();
    let key_env = [(
        "CAIRN_LAB_SSH_KEY".to_string(),
        l.var("CAIRN_LAB_SSH_KEY").to_string(),
    )];
    for runbook in ["etcd-binary-yaml", "etcd-debian-binary", "etcd-static-pods"] {
        let value = format!("{mirror}/$(touch {})", c.marker());
        let mut env = key_env.to_vec();
        env.push(("CAIRN_RELEASE_MIRROR".into(), value));
        let mut args = strings(&["--inventory", l.inventory.to_str().unwrap()]);
        if runbook == "etcd-static-pods" {
            args = with(args, &[var("kubelet", "lab-standin")]);
        }
        c.plan(
            &ws_plans,
            &format!("env CAIRN_RELEASE_MIRROR with $(...) ({runbook})"),
            runbook,
            &args,
            &env,
            &["CAIRN_RELEASE_MIRROR", "release_mirror"],
        );
    }

    // defect 3: a token with a quote and line breaks must not add keys to the YAML config
    let token = "o3ZB\"\nenable-pprof: true\nenable-v2: true\nx: \"";
    let mut args = lab_args.clone();
    args.extend(strings(&["--inventory", l.inventory.to_str().unwrap()]));
    args.extend(var("token", token));
    let out = cairn(
        &ws_plans,
        &[strings(&["plan", "etcd-binary-yaml"]), args].concat(),
        &[],
    );
    let mut verdict = c.judge(&out, &["token"]);
    let t = text(&out);
    let injected: Vec<&str> = t
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("+enable-pprof") || l.starts_with("+enable-v2"))
        .collect();
    if !injected.is_empty() {
        verdict = Err(format!("the YAML config would get {injected:?}"));
    } else if out.status.code() == Some(2)
        && !t.contains("+initial-cluster-token: \"o3ZB\\\"\\nenable-pprof")
    {
        verdict = Err(format!(
            "no escaped token line in the planned config: {}",
            lab_tail(&t)
        ));
    }
    c.record(
        "template: YAML token with a quote and line breaks (etcd-binary-yaml)",
        verdict,
    );

    let after = snapshots(l);
    let changed = changed_outside(l, &before, &after, &[]);
    c.record(
        "plans changed no file under /etc, /usr/local, /opt on any node",
        if changed.is_empty() {
            Ok("identical".into())
        } else {
            Err(changed.join("; "))
        },
    );

    // ---- 2. The host lock, attacked by a local non-root user ----
    let node = &l.nodes[0].name;
    let debian_plan = {
        let mut a = strings(&[
            "plan",
            "etcd-debian-binary",
            "--inventory",
            l.inventory.to_str().unwrap(),
        ]);
        a.extend(lab_args.iter().cloned());
        a
    };
    // a symlink in /run/lock where the lock would be, pointing at /etc/nologin
    l.ssh_ok(node, "rm -f /run/lock/cairn.lock /etc/nologin && setpriv --reuid=65534 --regid=65534 --clear-groups ln -s /etc/nologin /run/lock/cairn.lock");
    let out = cairn(&ws_plans, &debian_plan, &[]);
    let mut verdict = c.judge(&out, &["lock"]);
    if l.ssh(node, "test -e /etc/nologin").status.success() {
        verdict = Err("the plan created /etc/nologin through the planted lock symlink".into());
    }
    c.record(
        "lock: nobody's symlink /run/lock/cairn.lock -> /etc/nologin (plan)",
        verdict,
    );
    l.ssh_ok(node, "rm -f /run/lock/cairn.lock /etc/nologin");

    // a non-root user holding the lock file: no silent 900 s wait
    let holder = l.ssh_ok(
        node,
        "rm -f /run/lock/cairn.lock; setpriv --reuid=65534 --regid=65534 --clear-groups \
         sh -c 'flock /run/lock/cairn.lock sleep 600 </dev/null >/dev/null 2>&1 & echo $!'",
    );
    let holder = holder.trim().to_string();
    // it holds the lock once a non-blocking attempt fails
    l.ssh_ok(
        node,
        "for i in $(seq 100); do flock -n -E 99 /run/lock/cairn.lock true; [ $? = 99 ] && exit 0; sleep 0.1; done; exit 1",
    );
    let out = cairn_within(&ws_plans, &debian_plan, &[], LOCK_PATIENCE_SECS);
    let verdict = c.judge(&out, &["lock", "held", "waiting"]);
    c.record(
        "lock: nobody holds /run/lock/cairn.lock (plan finishes or says who holds it)",
        verdict,
    );
    l.ssh_ok(
        node,
        &format!("pkill -P {holder}; kill {holder}; rm -f /run/lock/cairn.lock; true"),
    );

    // the lock itself is out of a non-root user's reach
    let exists = l.ssh(node, "test -d /run/cairn").status.success();
    let tried = l.ssh(
        node,
        "setpriv --reuid=65534 --regid=65534 --clear-groups flock -n /run/cairn/lock true",
    );
    c.record(
        "lock: nobody takes the host lock in /run/cairn",
        if !exists {
            Err("no /run/cairn on the node after a plan".into())
        } else if tried.status.success() {
            Err("a non-root user took the host lock".into())
        } else {
            Ok(format!(
                "out of reach: {}",
                String::from_utf8_lossy(&tried.stderr).trim()
            ))
        },
    );

    // ---- 3. The local workspace: a symlinked pki/, a readable .cairn/ ----
    let ws_link = dir.join("linked");
    let shared = dir.join("shared-pki");
    std::fs::create_dir_all(ws_link.join(".cairn")).unwrap();
    std::fs::create_dir(&shared).unwrap();
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    };
    let set_mode = |p: &Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    set_mode(&ws_link.join(".cairn"), 0o700);
    set_mode(&shared, 0o755);
    std::os::unix::fs::symlink(&shared, ws_link.join(".cairn/pki")).unwrap();
    let mut run_yaml = strings(&[
        "run",
        "etcd-binary-yaml",
        "--inventory",
        l.inventory.to_str().unwrap(),
    ]);
    run_yaml.extend(lab_args.iter().cloned());
    let out = cairn(&ws_link, &run_yaml, &[]);
    let mut verdict = c.judge(&out, &["is a symlink"]);
    if out.status.code() != Some(1) {
        verdict = Err(format!(
            "a run with a symlinked pki/ was not refused: {}",
            lab_tail(&text(&out))
        ));
    } else if mode(&shared) != 0o755 || std::fs::read_dir(&shared).unwrap().next().is_some() {
        verdict = Err(format!(
            "the linked folder was changed: mode {:o}",
            mode(&shared)
        ));
    } else if !text(&out).contains("mkdir -m 0700") {
        verdict = Err(format!(
            "the refusal does not say how to fix it: {}",
            lab_tail(&text(&out))
        ));
    }
    c.record(
        "workspace: .cairn/pki is a symlink to a shared folder (run)",
        verdict,
    );
    std::fs::remove_file(ws_link.join(".cairn/pki")).unwrap();
    set_mode(&ws_link.join(".cairn"), 0o755);
    let mut plan_yaml = run_yaml.clone();
    plan_yaml[0] = "plan".into();
    let out = cairn(&ws_link, &plan_yaml, &[]);
    let mut verdict = c.judge(&out, &["chmod 0700"]);
    if out.status.code() != Some(1) || mode(&ws_link.join(".cairn")) != 0o755 {
        verdict = Err(format!(
            "a plan with a 0755 .cairn/ was not refused, or the mode changed: {}",
            lab_tail(&text(&out))
        ));
    }
    c.record(
        "workspace: .cairn is 0755 (plan refused with the chmod to apply)",
        verdict,
    );

    // ---- 4. A converged cluster, then symlinks planted by the etcd account ----
    let ws_a = dir.join("a");
    std::fs::create_dir(&ws_a).unwrap();
    let mut run_a = strings(&[
        "run",
        "etcd-debian-binary",
        "--inventory",
        l.inventory.to_str().unwrap(),
    ]);
    run_a.extend(lab_args.iter().cloned());
    let mut plan_a = run_a.clone();
    plan_a[0] = "plan".into();
    let out = cairn(&ws_a, &run_a, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "the converging run: {}",
        text(&out)
    );

    // canaries: a root-only file and folder the links point at
    let canary = c.canary.clone();
    for n in &l.nodes {
        l.ssh_ok(
            &n.name,
            &format!(
                "umask 077; printf '%s\\n' '{canary}' > /etc/cairn-canary; mkdir -p /etc/cairn-canary-dir; \
                 printf '%s\\n' '{canary}' > /etc/cairn-canary-dir/secret"
            ),
        );
    }
    // (path, how etcd plants it) — each runs as the etcd account
    let plants: [(&str, &str); 9] = [
        (
            "/etc/ssl/etcd/openssl.cnf",
            "ln -sfn /etc/cairn-canary /etc/ssl/etcd/openssl.cnf",
        ),
        (
            "/etc/ssl/etcd/etcd.csr",
            "ln -sfn /etc/cairn-canary /etc/ssl/etcd/etcd.csr",
        ),
        (
            "/etc/ssl/etcd/ca.crt",
            "ln -sfn /etc/cairn-canary /etc/ssl/etcd/ca.crt",
        ),
        (
            "/etc/ssl/etcd/etcd.key.new (key removed)",
            "rm -f /etc/ssl/etcd/etcd.key && ln -sfn /etc/cairn-canary /etc/ssl/etcd/etcd.key.new",
        ),
        (
            "/etc/ssl/etcd/etcd.crt",
            "ln -sfn /etc/cairn-canary /etc/ssl/etcd/etcd.crt",
        ),
        (
            "/opt/etcd/data",
            "mv /opt/etcd/data /opt/etcd/data.real && ln -sfn /etc/cairn-canary-dir /opt/etcd/data",
        ),
        (
            "/opt/etcd/wal",
            "mv /opt/etcd/wal /opt/etcd/wal.real && ln -sfn /etc/cairn-canary-dir /opt/etcd/wal",
        ),
        (
            "/etc/ssl/etcd/etcd.key",
            "ln -sfn /etc/cairn-canary /etc/ssl/etcd/etcd.key",
        ),
        (
            "/etc/ssl/etcd/openssl.cnf -> /etc/shadow",
            "ln -sfn /etc/shadow /etc/ssl/etcd/openssl.cnf",
        ),
    ];
    let shadow_root = l
        .ssh_ok(&l.nodes[0].name, "grep '^root:' /etc/shadow")
        .trim()
        .to_string();
    // on the current layout the etcd account cannot plant anything in the ssl folder
    let tried = l.ssh(
        &l.nodes[0].name,
        "setpriv --reuid=etcd --regid=etcd --init-groups ln -s /etc/cairn-canary /etc/ssl/etcd/planted",
    );
    c.record(
        "etcd's link into /etc/ssl/etcd (the runbook's folder for the member's key)",
        if tried.status.success() {
            Err("the etcd account can write into /etc/ssl/etcd".into())
        } else {
            Ok(format!(
                "the folder is root's: {}",
                String::from_utf8_lossy(&tried.stderr).trim()
            ))
        },
    );
    for round in plants.chunks(l.nodes.len()) {
        let before = snapshots(l);
        let mut planted = Vec::new();
        for (n, (path, how)) in l.nodes.iter().zip(round) {
            // the ssl folder is root's now; a node set up by the runbook's
            // earlier version had it owned by etcd, who planted links then
            if path.starts_with("/etc/ssl/etcd/") {
                l.ssh_ok(&n.name, "chown etcd:etcd /etc/ssl/etcd");
            }
            l.ssh_ok(
                &n.name,
                &format!("setpriv --reuid=etcd --regid=etcd --init-groups sh -c '{how}'"),
            );
            planted.push(format!("{}:{path}", n.name));
        }
        let out = cairn(&ws_a, &plan_a, &[]);
        let mut verdict = c.judge(&out, &["symlink", "link"]);
        if !shadow_root.is_empty() && text(&out).contains(&shadow_root) {
            verdict = Err("/etc/shadow's root line is in the plan".into());
        }
        c.record(
            &format!("plan with etcd's links at {}", planted.join(", ")),
            verdict,
        );
        let out = cairn(&ws_a, &run_a, &[]);
        let run_text = text(&out);
        let after = snapshots(l);
        let changed = changed_outside(l, &before, &after, DEBIAN_BINARY_PATHS);
        for (n, (path, _)) in l.nodes.iter().zip(round) {
            // this node's failures (`node-1 ✗ step failed ...`), if any
            let failed: Vec<&str> = run_text
                .lines()
                .filter(|x| x.trim_start().starts_with(&format!("{} ✗", n.name)))
                .collect();
            let judged = c.judge(&out, &["symlink", "link"]);
            let mut verdict = if run_text.contains(&c.canary) || out.status.code() != Some(1) {
                judged
            } else if failed.is_empty() {
                Ok("done (another host failed)".into())
            } else if failed
                .iter()
                .any(|x| x.contains("symlink") || x.contains("link"))
            {
                Ok(format!("refused: {}", failed[0].trim()))
            } else {
                Err(format!(
                    "failed without naming the link: {}",
                    failed.join(" | ")
                ))
            };
            let here: Vec<&String> = changed
                .iter()
                .filter(|p| p.starts_with(&format!("{}:", n.name)))
                .collect();
            if !here.is_empty() {
                verdict = Err(format!("root-owned files changed: {here:?}"));
            }
            if !shadow_root.is_empty() && run_text.contains(&shadow_root) {
                verdict = Err("/etc/shadow's root line is in the run's output".into());
            }
            c.record(
                &format!("run as root over etcd's link at {}:{path}", n.name),
                verdict,
            );
        }
        // repair what the attacker did, for the next round
        for n in &l.nodes {
            l.ssh_ok(
                &n.name,
                "cd /opt/etcd && for d in data wal; do if [ -d $d.real ]; then rm -rf $d && mv $d.real $d; fi; done; \
                 for f in /etc/ssl/etcd/*; do [ -L \"$f\" ] && rm -f \"$f\"; done; rm -f /etc/ssl/etcd/etcd.key.new; \
                 chown root:etcd /etc/ssl/etcd; true",
            );
        }
        let out = cairn(&ws_a, &run_a, &[]);
        assert_eq!(out.status.code(), Some(0), "repair run: {}", text(&out));
    }

    // ---- 5. A second workspace on the same hosts (defect 7) ----
    let ws_b = dir.join("b");
    std::fs::create_dir(&ws_b).unwrap();
    let mut run_b = run_a.clone();
    let mut plan_b = plan_a.clone();
    let before = snapshots(l);
    let out = cairn(&ws_b, &plan_b, &[]);
    let mut verdict = c.judge(&out, &["/etc/cairn/owner.json"]);
    if out.status.code() != Some(1) {
        verdict = Err(format!(
            "a plan from another workspace was not refused: {}",
            lab_tail(&text(&out))
        ));
    }
    c.record(
        "second workspace: plan refused, naming the owner record",
        verdict,
    );
    let out = cairn(&ws_b, &run_b, &[]);
    let mut verdict = c.judge(&out, &["/etc/cairn/owner.json"]);
    let changed = changed_outside(
        l,
        &before,
        &snapshots(l),
        &["/opt/etcd/data/", "/opt/etcd/wal/"],
    );
    if out.status.code() != Some(1) {
        verdict = Err(format!(
            "a run from another workspace was not refused: {}",
            lab_tail(&text(&out))
        ));
    } else if !changed.is_empty() {
        verdict = Err(format!("the refused run changed {changed:?}"));
    }
    c.record(
        "second workspace: run refused before changing anything",
        verdict,
    );
    plan_b.extend(var("adopt", "true"));
    run_b.extend(var("adopt", "true"));
    let out = cairn(&ws_b, &plan_b, &[]);
    let mut verdict = c.judge(&out, &["owner"]);
    if out.status.code() != Some(2) || !text(&out).contains("adopt") {
        verdict = Err(format!("adopt was not planned: {}", lab_tail(&text(&out))));
    }
    c.record(
        "second workspace: plan with adopt=true proceeds and says it adopts",
        verdict,
    );
    let out = cairn(&ws_b, &run_b, &[]);
    let mut verdict = c.judge(&out, &[]);
    if out.status.code() != Some(0) {
        verdict = Err(format!(
            "the adopting run failed: {}",
            lab_tail(&text(&out))
        ));
    }
    c.record(
        "second workspace: run with adopt=true takes the cluster over, verified",
        verdict,
    );
    let out = cairn(&ws_a, &plan_a, &[]);
    let mut verdict = c.judge(&out, &["/etc/cairn/owner.json"]);
    if out.status.code() != Some(1) {
        verdict = Err(format!(
            "the first workspace's plan was not refused after the takeover: {}",
            lab_tail(&text(&out))
        ));
    }
    c.record("first workspace after the takeover: refused", verdict);

    // ---- Markers and canaries, then the count ----
    c.settle(&[&ws_plans, &ws_a, &ws_b]);
    let safe = c.cases.iter().filter(|k| k.verdict.is_ok()).count();
    let unsafe_cases: Vec<String> = c
        .cases
        .iter()
        .filter_map(|k| {
            k.verdict
                .as_ref()
                .err()
                .map(|why| format!("case {} {}: {why}", k.id, k.name))
        })
        .collect();
    println!("{} cases tried, {safe} safe", c.cases.len());
    eprintln!("{} cases tried, {safe} safe", c.cases.len());
    assert!(c.cases.len() >= 40, "only {} cases", c.cases.len());
    assert!(
        unsafe_cases.is_empty(),
        "unsafe:\n{}",
        unsafe_cases.join("\n")
    );
}
