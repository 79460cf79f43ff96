//! Plan soundness on the lab: for every shipped cluster runbook, a matrix of
//! scenarios (fresh; converged; half-applied by a kill; a parameter that
//! re-issues certificates; a parameter that only changes a configuration
//! file; a drifted file on one node; a stopped member; a changed field that
//! changes SANs; ...). Each is planned (`cairn plan --json`) and then run.
//! Every action the run performs (its journal's `done` records) must appear
//! in the plan for the same step key and target as a change, a run or a
//! possible change, and the plan must count at least as many changes as the
//! run makes. One lab per runbook; state between scenarios is built by
//! running, never by recreating the lab. Each test prints its matrix and
//! every violation.

mod common;

use common::{lab, text, Cairn};

use cairn::journal::{Journal, Record};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;

/// One runbook's matrix on its own lab and workspace.
struct Matrix {
    runbook: &'static str,
    lab: lab::LabHandle,
    ws: tempfile::TempDir,
    /// `--var` values of the current state (scenarios change them).
    vars: BTreeMap<String, String>,
    inventory: Option<PathBuf>,
    /// Scenario name and its violations.
    rows: Vec<(String, usize, usize, Vec<String>)>,
}

impl Matrix {
    fn new(runbook: &'static str, tag: &str, nodes: u32, vars: &[(&str, &str)]) -> Self {
        Matrix {
            runbook,
            lab: lab::start(&lab::unique_name(tag), nodes),
            ws: tempfile::tempdir().unwrap(),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            inventory: None,
            rows: Vec::new(),
        }
    }

    fn cairn(&self, verb: &str, extra: &[&str], kill: Option<&str>) -> Output {
        let mut cmd = Cairn::new(self.ws.path())
            .args([verb, self.runbook, "--lab", &self.lab.name])
            .args(extra)
            .kill(kill);
        for (k, v) in &self.vars {
            cmd = cmd.arg("--var").arg(format!("{k}={v}"));
        }
        if let Some(inv) = &self.inventory {
            cmd = cmd.arg("--inventory").arg(inv);
        }
        cmd.output()
    }

    fn set(&mut self, key: &str, value: &str) {
        self.vars.insert(key.into(), value.into());
    }

    /// Runs `cmd` on a node (static or cloud-made).
    fn ssh(&self, node: &str, cmd: &str) {
        lab::cairn_lab(&["ssh", "--name", &self.lab.name, node, "--", cmd]);
    }

    /// The lab's inventory with `edit` applied, used from now on.
    fn edit_inventory(&mut self, edit: impl Fn(&str) -> String) {
        let now = match &self.inventory {
            Some(p) => std::fs::read_to_string(p).unwrap(),
            None => std::fs::read_to_string(&self.lab.inventory).unwrap(),
        };
        let path = self.ws.path().join("inventory.toml");
        let changed = edit(&now);
        assert_ne!(changed, now, "the inventory edit changed nothing");
        std::fs::write(&path, changed).unwrap();
        self.inventory = Some(path);
    }

    /// Deletes the workspace's certificates and keys whose name contains `part`.
    fn delete_pki(&self, part: &str) {
        let dir = self.ws.path().join(".cairn/pki");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().unwrap().to_string_lossy().contains(part) {
                std::fs::remove_file(&p).unwrap();
                n += 1;
            }
        }
        assert!(n > 0, "no pki file in {} contains {part}", dir.display());
    }

    /// A run killed at `point` (`applied:N`): leaves the targets half-applied.
    fn kill(&self, point: &str) {
        let out = self.cairn("run", &[], Some(point));
        assert_eq!(
            out.status.code(),
            None,
            "{}: not killed at {point}:\n{}",
            self.runbook,
            text(&out)
        );
    }

    /// Plan, then run; compare what the run did with what the plan said.
    fn scenario(&mut self, name: &str) {
        let plan = self.cairn("plan", &["--json"], None);
        assert!(
            matches!(plan.status.code(), Some(0 | 2)),
            "{} / {name}: plan failed:\n{}",
            self.runbook,
            text(&plan)
        );
        let plan: Value = serde_json::from_slice(&plan.stdout).unwrap();
        let run = self.cairn("run", &[], None);
        let out = text(&run);
        assert_eq!(
            run.status.code(),
            Some(0),
            "{} / {name}: run failed:\n{out}",
            self.runbook
        );
        let id = out
            .lines()
            .find_map(|l| l.strip_prefix("Run ")?.split(':').next())
            .unwrap_or_else(|| panic!("no run id in:\n{out}"));
        let journal = Journal::read(
            &self
                .ws
                .path()
                .join(".cairn/runs")
                .join(id)
                .join("journal.jsonl"),
        )
        .unwrap();
        let (planned, ran, violations) = compare(&plan, &journal);
        eprintln!(
            "{} / {name}: plan {planned} changes, run {ran} changes, {} violations",
            self.runbook,
            violations.len()
        );
        for v in &violations {
            eprintln!("  violation: {v}");
        }
        self.rows.push((name.into(), planned, ran, violations));
    }

    /// Print the matrix; fail on any violation or on fewer than 8 scenarios.
    fn finish(self) {
        let total: usize = self.rows.iter().map(|r| r.3.len()).sum();
        eprintln!(
            "plan soundness {}: {} scenarios, {total} violations",
            self.runbook,
            self.rows.len()
        );
        for (name, planned, ran, v) in &self.rows {
            eprintln!(
                "  {name:<48} plan {planned:>3} ≥ run {ran:>3}  violations {}",
                v.len()
            );
        }
        assert!(
            self.rows.len() >= 8,
            "{}: only {} scenarios",
            self.runbook,
            self.rows.len()
        );
        let all: Vec<&String> = self.rows.iter().flat_map(|r| &r.3).collect();
        assert!(
            all.is_empty(),
            "{}: {total} violations:\n{all:#?}",
            self.runbook
        );
    }
}

/// Planned changes, run changes, and every action of the run the plan does
/// not cover (same step key and target, planned as a change, run or possible
/// change), plus a count violation when the plan counts fewer changes.
fn compare(plan: &Value, journal: &Journal) -> (usize, usize, Vec<String>) {
    let steps: BTreeMap<&str, &Value> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap(), s))
        .collect();
    let is_change = |kind: &str| matches!(kind, "create" | "change" | "delete" | "run");
    let summary = &plan["summary"];
    let planned = ["create", "change", "delete", "run"]
        .iter()
        .map(|k| summary[k].as_u64().unwrap() as usize)
        .sum();
    let mut ran = 0;
    let mut violations = Vec::new();
    for r in &journal.records {
        let Record::Done {
            key,
            kind,
            target,
            actions,
            ..
        } = r
        else {
            continue;
        };
        for a in actions.iter().filter(|a| a.kind.is_change()) {
            ran += 1;
            let covered = steps.get(key.as_str()).is_some_and(|s| {
                s["target"] == target.as_str()
                    && s["actions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| is_change(p["kind"].as_str().unwrap_or("")))
            });
            if !covered {
                let shown = match steps.get(key.as_str()) {
                    None => "no such step".to_string(),
                    Some(s) => s["actions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| format!("{} {}", p["kind"], p["what"]))
                        .collect::<Vec<_>>()
                        .join("; "),
                };
                violations.push(format!(
                    "`{kind}` on {target} ({key}) did `{a}`; the plan said: {shown}"
                ));
            }
        }
    }
    if planned < ran {
        violations.push(format!(
            "the plan counts {planned} changes, the run made {ran}"
        ));
    }
    (planned, ran, violations)
}

fn inventory_fqdn(node: &str, to: &str) -> impl Fn(&str) -> String {
    let node = node.to_string();
    let to = to.to_string();
    move |inv: &str| {
        inv.lines()
            .map(|l| {
                if l.starts_with("fqdn = ") && l.contains(&format!("\"{node}.")) {
                    format!("fqdn = \"{to}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }
}

#[test]
fn binary_yaml() {
    if lab::skip() {
        return;
    }
    let mut m = Matrix::new("etcd-binary-yaml", "ps-byaml", 3, &[]);
    m.scenario("fresh");
    m.scenario("converged");
    m.set("token", "changed-token-1");
    m.scenario("parameter changes only etcd.conf (token)");
    m.ssh("node-2", "echo '# drift' >> /etc/etcd/etcd.conf");
    m.scenario("drifted etcd.conf on node-2");
    m.ssh("node-3", "systemctl stop etcd");
    m.scenario("stopped member node-3");
    m.edit_inventory(inventory_fqdn("node-1", "etcd-a.lab"));
    m.scenario("inventory fqdn changes node-1's SANs");
    // a new CA for hosts that recorded the old one as their owner
    m.set("adopt", "true");
    m.set("cluster", "renamed-1");
    m.scenario("parameter re-issues every cert (cluster)");
    m.set("cluster", "renamed-2");
    m.kill("applied:8");
    m.scenario("half-applied by a kill (applied:8)");
    m.finish();
}

#[test]
fn debian_binary() {
    if lab::skip() {
        return;
    }
    let mut m = Matrix::new("etcd-debian-binary", "ps-dbin", 3, &[]);
    m.scenario("fresh");
    m.scenario("converged");
    m.set("heartbeat_interval", "700");
    m.scenario("parameter changes only options.env (heartbeat)");
    m.ssh("node-2", "echo '# drift' >> /etc/etcd/options.env");
    m.scenario("drifted options.env on node-2");
    m.ssh("node-3", "systemctl stop etcd");
    m.scenario("stopped member node-3");
    m.edit_inventory(inventory_fqdn("node-1", "etcd-a.lab"));
    m.scenario("inventory fqdn changes node-1's SANs");
    // a new CA for hosts that recorded the old one as their owner
    m.set("adopt", "true");
    m.set("cluster", "renamed-1");
    m.scenario("parameter re-issues every cert (cluster)");
    m.set("cluster", "renamed-2");
    m.kill("applied:8");
    m.scenario("half-applied by a kill (applied:8)");
    m.finish();
}

#[test]
fn static_pods() {
    if lab::skip() {
        return;
    }
    let mut m = Matrix::new(
        "etcd-static-pods",
        "ps-spods",
        3,
        &[("kubelet", "lab-standin")],
    );
    m.scenario("fresh");
    m.scenario("converged");
    m.set("image_registry", "registry.example.org");
    m.scenario("parameter changes only the manifest (image_registry)");
    m.ssh(
        "node-2",
        "echo '# drift' >> /etc/kubernetes/manifests/etcd.yaml",
    );
    m.scenario("drifted manifest on node-2");
    m.ssh("node-3", "systemctl stop etcd-static-pod");
    m.scenario("stopped member node-3");
    m.delete_pki("node-1");
    m.scenario("node-1's certificates deleted from the workspace");
    // a new CA for hosts that recorded the old one as their owner
    m.set("adopt", "true");
    m.set("cluster", "renamed-1");
    m.scenario("parameter re-issues every cert (cluster)");
    m.set("cluster", "renamed-2");
    m.kill("applied:8");
    m.scenario("half-applied by a kill (applied:8)");
    m.finish();
}

#[test]
fn hetzner_apt() {
    if lab::skip() {
        return;
    }
    let mut m = Matrix::new("etcd-hetzner-apt", "ps-hapt", 0, &[]);
    m.scenario("fresh");
    m.scenario("converged");
    m.ssh("node-2", "echo '# drift' >> /etc/default/etcd");
    m.scenario("drifted /etc/default/etcd on node-2");
    m.ssh("node-3", "systemctl stop etcd");
    m.scenario("stopped member node-3");
    m.delete_pki("node-1");
    m.scenario("node-1's certificates deleted from the workspace");
    m.ssh("node-1", "rm /etc/etcd/peer.crt");
    m.scenario("a certificate removed on node-1");
    // a new CA for hosts that recorded the old one as their owner
    m.set("adopt", "true");
    m.set("key", "p256");
    m.scenario("parameter re-issues every cert (key)");
    m.set("key", "rsa2048");
    m.kill("applied:6");
    m.scenario("half-applied by a kill (applied:6)");
    m.finish();
}

#[test]
fn do_discovery() {
    if lab::skip() {
        return;
    }
    let mut m = Matrix::new("etcd-do-discovery", "ps-dodisc", 0, &[]);
    m.scenario("fresh");
    m.scenario("converged");
    m.ssh("etcd-server-1", "echo '# drift' >> /etc/etcd/discovery.env");
    m.scenario("drifted discovery.env on etcd-server-1");
    m.ssh("etcd-server-2", "systemctl stop etcd");
    m.scenario("stopped member etcd-server-2");
    m.delete_pki("-server");
    m.scenario("the server certificate deleted from the workspace");
    m.ssh("etcd-server-0", "rm /etc/etcd/peer.pem");
    m.scenario("a certificate removed on etcd-server-0");
    // a new CA for hosts that recorded the old one as their owner
    m.set("adopt", "true");
    m.set("cluster", "renamed-1");
    m.scenario("parameter re-issues every cert (cluster)");
    m.set("cluster", "renamed-2");
    m.kill("applied:6");
    m.scenario("half-applied by a kill (applied:6)");
    m.finish();
}
