//! The lab's cloud emulations against the providers' own clients, on a lab
//! of this binary (no static nodes: every host here is made through an
//! API): Debian's `hcloud` CLI runs tutorial 000's provisioning commands
//! verbatim (`tests/conformance/tutorial-000.zsh`); hcloud-python and pydo
//! run checks written from the providers' references
//! (`tests/conformance/*.py`); and a server and two droplets with one name
//! are three hosts, none of which a delete of another takes away.
//!
//! The clients come from `tests/conformance/setup.sh` (run by `.ci/run`):
//! the test fails, naming it, when one is missing; it never skips.

mod common;

use common::{lab, text};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The venv `tests/conformance/setup.sh` makes (override:
/// `CAIRN_CONFORMANCE_PYTHON`).
const PYTHON: &str = "/var/cache/cairn/conformance/venv/bin/python";

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance")
}

fn python() -> PathBuf {
    let p = std::env::var_os("CAIRN_CONFORMANCE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PYTHON.into());
    assert!(
        p.exists(),
        "{} is missing: the official clients are not installed; run `bash tests/conformance/setup.sh`",
        p.display()
    );
    p
}

/// This binary's lab: no static nodes.
fn the_lab() -> &'static lab::LabHandle {
    static LAB: OnceLock<lab::LabHandle> = OnceLock::new();
    LAB.get_or_init(|| {
        lab::sweep_stale_labs();
        lab::start(&lab::unique_name("conform"), 0)
    })
}

/// `cmd` with the lab's env file (endpoints, tokens, key paths) and nothing
/// else of this process's cloud settings.
fn with_lab_env(mut cmd: Command, l: &lab::LabHandle) -> Command {
    for var in [
        "HCLOUD_TOKEN",
        "HCLOUD_ENDPOINT",
        "HCLOUD_CONFIG",
        "HCLOUD_CONTEXT",
        "DIGITALOCEAN_ACCESS_TOKEN",
        "DIGITALOCEAN_ENDPOINT",
        "DIGITALOCEAN_API_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(&l.env).stdin(Stdio::null());
    cmd
}

/// Runs a conformance script with the venv's python; panics with its output
/// unless it succeeds; returns its output.
fn run_python(script: &str, extra: &[(&str, &str)]) -> String {
    let l = the_lab();
    let mut cmd = with_lab_env(Command::new(python()), l);
    cmd.arg(conformance_dir().join(script))
        .envs(extra.iter().copied());
    let out = cmd.output().expect("python runs");
    let all = text(&out);
    eprintln!("{script}:\n{all}");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{all}",
        out.status
    );
    all
}

#[test]
fn hcloud_python_follows_the_reference() {
    if lab::skip() {
        return;
    }
    let out = run_python("hcloud_python.py", &[("CONFORMANCE_PREFIX", "py")]);
    for check in [
        "ok catalog:",
        "ok errors:",
        "ok network with a subnet",
        "ok servers created by names and by ids",
        "ok listing:",
        "ok actions:",
        "ok power on, delete:",
    ] {
        assert!(out.contains(check), "no `{check}` in:\n{out}");
    }
}

#[test]
fn pydo_follows_the_reference() {
    if lab::skip() {
        return;
    }
    let out = run_python("pydo_check.py", &[("CONFORMANCE_TAG", "conf-do")]);
    for check in [
        "ok errors:",
        "ok ssh key created",
        "ok two droplets with one name",
        "ok listing:",
        "ok delete by id, then by tag (204): gone from listings at once",
    ] {
        assert!(out.contains(check), "no `{check}` in:\n{out}");
    }
}

#[test]
fn objects_with_one_name_are_different_hosts() {
    if lab::skip() {
        return;
    }
    let out = run_python("names.py", &[]);
    for check in [
        "ok a server and two droplets named twin: three hosts",
        "ok deleting one droplet left the other droplet's and the server's hosts",
        "ok deleting the server left the droplet's host",
    ] {
        assert!(out.contains(check), "no `{check}` in:\n{out}");
    }
}

#[test]
fn hcloud_cli_runs_tutorial_000_verbatim() {
    if lab::skip() {
        return;
    }
    let l = the_lab();
    assert!(
        Command::new("hcloud")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty()),
        "the hcloud CLI is missing: run `bash tests/conformance/setup.sh`"
    );
    let home = tempfile::tempdir().unwrap();
    let ssh = home.path().join(".ssh");
    std::fs::create_dir_all(&ssh).unwrap();
    let keygen = Command::new("ssh-keygen")
        .args([
            "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "tutorial", "-f",
        ])
        .arg(ssh.join("id_rsa"))
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen));

    let mut cmd = with_lab_env(Command::new("zsh"), l);
    cmd.arg(conformance_dir().join("tutorial-000.zsh"))
        .env("HOME", home.path());
    let out = cmd
        .output()
        .expect("zsh runs (tests/conformance/setup.sh installs it)");
    let all = text(&out);
    eprintln!("{all}");
    assert!(
        out.status.success(),
        "the tutorial's commands failed ({}):\n{all}",
        out.status
    );

    // network, subnet (its action waited for), key, three servers
    for line in ["Network ", "Subnet added to network ", "SSH key "] {
        let found = all
            .lines()
            .any(|l| l.starts_with(line) && !l.contains("error"));
        assert!(found, "no `{line}...` in:\n{all}");
    }
    let created = all
        .lines()
        .filter(|l| l.starts_with("Server ") && l.ends_with(" created"))
        .count();
    assert_eq!(created, 3, "servers created:\n{all}");
    // Each member: private address from the subnet, public address, and
    // ssh reaches the node that calls itself by the server's name.
    let mut externals = Vec::new();
    for (i, node) in ["node-1", "node-2", "node-3"].iter().enumerate() {
        let prefix = format!("member {node} 10.1.1.{} ", i + 2);
        let line = all
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}...` in:\n{all}"));
        let external = line.rsplit(' ').next().unwrap().to_string();
        assert!(external.starts_with("10.200."), "{line}");
        externals.push(external);
        assert!(
            all.contains(&format!("ssh {node} {node}\n")),
            "no ssh to {node} in:\n{all}"
        );
    }
    externals.sort();
    externals.dedup();
    assert_eq!(externals.len(), 3, "{externals:?}");
    assert!(
        all.contains(
            "node-1=https://10.1.1.2:2380,node-2=https://10.1.1.3:2380,node-3=https://10.1.1.4:2380\n"
        ),
        "no initial cluster in:\n{all}"
    );
    // sorted by name, descending
    assert!(
        all.contains("== sorted\nnode-3\nnode-2\nnode-1\n== cleanup"),
        "no sorted list in:\n{all}"
    );
    // deleted: nothing left
    let left = all
        .split("== left\n")
        .nth(1)
        .and_then(|s| s.split("== done").next())
        .unwrap_or("?");
    assert_eq!(left.trim(), "", "servers left after the deletes:\n{all}");
}
