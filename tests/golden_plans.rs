//! Golden offline plans: `cairn plan RUNBOOK --offline` of every shipped
//! runbook (`runbooks/`), with the inputs each needs, compared byte for byte
//! with `tests/golden/plans/RUNBOOK.txt`. Offline, no lab, no root: this is
//! how a plain `cargo test` sees every runbook's whole plan.
//!
//! A golden file starts with the command line and its exit code, then the
//! command's stdout and stderr. Only the temporary workspace's path is
//! masked (`$WS`), with times and run ids (see `common::golden::mask`);
//! an offline plan prints none of them today. `CAIRN_BLESS=1 cargo test
//! --test golden_plans` rewrites the files; review `git diff tests/golden/`.

mod common;

use common::{golden, text, Cairn};
use std::path::Path;

/// Hosts of the offline inventories: name, address, FQDN.
const HOSTS: [(&str, &str, &str); 4] = [
    ("node-1", "192.0.2.11", "node-1.etcd.test"),
    ("node-2", "192.0.2.12", "node-2.etcd.test"),
    ("node-3", "192.0.2.13", "node-3.etcd.test"),
    ("node-4", "192.0.2.14", "node-4.etcd.test"),
];

/// Fake cloud tokens: set so that runbooks that need one can plan; a plan
/// must never print them.
const FAKE_TOKENS: [(&str, &str); 3] = [
    ("DIGITALOCEAN_ACCESS_TOKEN", "golden-fake-do-access-token"),
    ("DIGITALOCEAN_READ_TOKEN", "golden-fake-do-read-token"),
    ("HCLOUD_TOKEN", "golden-fake-hcloud-token"),
];

/// Writes `hosts.toml` (node-1..3) and `hosts4.toml` (node-1..4) into `ws`.
fn write_inventories(ws: &Path) {
    let entry = |(name, address, fqdn): &(&str, &str, &str)| {
        format!("[[hosts]]\nname = \"{name}\"\naddress = \"{address}\"\nfqdn = \"{fqdn}\"\n\n")
    };
    let three: String = HOSTS[..3].iter().map(entry).collect();
    let four: String = HOSTS.iter().map(entry).collect();
    std::fs::write(ws.join("hosts.toml"), three).unwrap();
    std::fs::write(ws.join("hosts4.toml"), four).unwrap();
}

/// Plans `runbook` offline in a fresh workspace with `args` after
/// `--offline` (and `env` set), compares with its golden file, and returns
/// the plan's text.
fn golden_plan(runbook: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let ws = tempfile::tempdir().unwrap();
    write_inventories(ws.path());
    let mut argv = vec!["plan", runbook, "--offline"];
    argv.extend(args);
    let out = Cairn::new(ws.path())
        .args(&argv)
        .envs(env.iter().copied())
        .output();
    let body = text(&out);
    for (var, value) in FAKE_TOKENS {
        assert!(!body.contains(value), "the plan printed {var}:\n{body}");
    }
    let code = out
        .status
        .code()
        .map_or_else(|| format!("{}", out.status), |c| c.to_string());
    let actual = format!(
        "$ cairn {}\n# exit {code}\n{}",
        argv.join(" "),
        golden::mask(&body, ws.path())
    );
    golden::check(&format!("plans/{runbook}.txt"), &actual);
    assert!(
        !ws.path().join(common::STATE_DIR).exists(),
        "an offline plan of {runbook} wrote the workspace's state folder"
    );
    body
}

/// The runbooks that have a test below (keep in step with `runbooks/`).
const COVERED: &[&str] = &[
    "etcd-backup",
    "etcd-binary-yaml",
    "etcd-cert-audit",
    "etcd-cert-rotate",
    "etcd-debian-binary",
    "etcd-do-discovery",
    "etcd-do-discovery-cleanup",
    "etcd-hetzner-apt",
    "etcd-hetzner-apt-cleanup",
    "etcd-maintain",
    "etcd-member-add",
    "etcd-member-remove",
    "etcd-member-replace",
    "etcd-restore",
    "etcd-static-pods",
    "etcd-upgrade",
];

#[test]
fn every_shipped_runbook_has_a_golden_offline_plan() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut shipped: Vec<String> = std::fs::read_dir(root.join("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("runbook.toml").exists())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    shipped.sort();
    assert_eq!(
        shipped, COVERED,
        "every shipped runbook needs a golden offline plan in tests/golden_plans.rs"
    );
    for rb in COVERED {
        let file = golden::path(&format!("plans/{rb}.txt"));
        assert!(
            file.exists() || golden::blessing(),
            "{} is missing",
            file.display()
        );
    }
}

#[test]
fn etcd_backup() {
    golden_plan("etcd-backup", &["--inventory", "hosts.toml"], &[]);
}

#[test]
fn etcd_binary_yaml() {
    golden_plan("etcd-binary-yaml", &["--inventory", "hosts.toml"], &[]);
}

#[test]
fn etcd_cert_audit() {
    golden_plan("etcd-cert-audit", &["--inventory", "hosts.toml"], &[]);
}

#[test]
fn etcd_cert_rotate() {
    golden_plan("etcd-cert-rotate", &["--inventory", "hosts.toml"], &[]);
}

#[test]
fn etcd_debian_binary() {
    golden_plan("etcd-debian-binary", &["--inventory", "hosts.toml"], &[]);
}

#[test]
fn etcd_do_discovery() {
    // the droplets come from the (emulated) cloud: no inventory
    golden_plan(
        "etcd-do-discovery",
        &["--var", "domain=etcd.test"],
        &FAKE_TOKENS,
    );
}

#[test]
fn etcd_do_discovery_cleanup() {
    golden_plan("etcd-do-discovery-cleanup", &[], &FAKE_TOKENS);
}

#[test]
fn etcd_hetzner_apt() {
    golden_plan("etcd-hetzner-apt", &[], &FAKE_TOKENS);
}

#[test]
fn etcd_hetzner_apt_cleanup() {
    golden_plan("etcd-hetzner-apt-cleanup", &[], &FAKE_TOKENS);
}

#[test]
fn etcd_maintain() {
    golden_plan("etcd-maintain", &["--inventory", "hosts.toml"], &[]);
}

#[test]
fn etcd_member_add() {
    golden_plan(
        "etcd-member-add",
        &[
            "--inventory",
            "hosts4.toml",
            "--var",
            "member=node-4",
            "--var",
            "step_toward_odd=true",
        ],
        &[],
    );
}

#[test]
fn etcd_member_remove() {
    golden_plan(
        "etcd-member-remove",
        &["--inventory", "hosts.toml", "--var", "member=node-3"],
        &[],
    );
}

#[test]
fn etcd_member_replace() {
    golden_plan(
        "etcd-member-replace",
        &[
            "--inventory",
            "hosts4.toml",
            "--var",
            "dead=node-2",
            "--var",
            "member=node-4",
        ],
        &[],
    );
}

#[test]
fn etcd_restore() {
    // An offline plan reads no workspace files (`local_files` is a fact):
    // it cannot see a backup, so etcd-restore refuses. The golden file pins
    // that refusal until offline plans can read the local workspace.
    golden_plan(
        "etcd-restore",
        &[
            "--inventory",
            "hosts.toml",
            "--var",
            "backup=20261201T101500Z-node-2.db",
        ],
        &[],
    );
}

#[test]
fn etcd_static_pods() {
    golden_plan("etcd-static-pods", &["--inventory", "hosts.toml"], &[]);
}

#[test]
fn etcd_upgrade() {
    golden_plan(
        "etcd-upgrade",
        &[
            "--inventory",
            "hosts.toml",
            "--var",
            "version=3.5.30",
            "--var",
            "ca=pki/etcd-cluster-1-etcd-ca.crt",
            "--var",
            "cert=pki/etcd-cluster-1-operator.crt",
            "--var",
            "cert_key=pki/etcd-cluster-1-operator.key",
        ],
        &[],
    );
}
