//! A lab shared by the tests of one test binary: started once (on first use)
//! with the real `cairn` binary, named `t-<binary>-<pid>`, and torn down when
//! the test process exits (an `atexit` hook, which also runs when tests
//! fail). Labs of test processes that died without tearing down (killed,
//! Ctrl-C) are swept at the next start: their name ends in a dead pid.
//!
//! Use it from a test file with `#[path = "common/lab.rs"] mod lab;` and call
//! `lab::lab()`. Needs root and the lab's prerequisites (`.ci/lab-prereqs.sh`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// Number of nodes of the shared lab.
pub const NODES: u32 = 3;

/// A node of the lab.
#[derive(Clone, Debug)]
pub struct LabNode {
    pub name: String,
    pub address: String,
    pub fqdn: String,
}

/// The running lab and its files.
#[derive(Debug)]
pub struct LabHandle {
    pub name: String,
    pub inventory: PathBuf,
    pub env_file: PathBuf,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub nodes: Vec<LabNode>,
    /// The env file's entries (mirrors, cloud endpoints, tokens).
    pub env: BTreeMap<String, String>,
}

/// The `cairn` binary under test.
pub fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

/// Runs `cairn lab ARGS`, panicking with its output when it fails.
pub fn cairn_lab(args: &[&str]) -> Output {
    let out = cairn()
        .arg("lab")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cairn runs");
    assert!(
        out.status.success(),
        "cairn lab {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A lab name unique to this test process: `t-<tag>-<pid>`.
pub fn unique_name(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(12)
        .collect();
    format!("t-{}-{}", tag.trim_matches('-'), std::process::id())
}

/// This test binary's name without cargo's hash suffix.
fn binary_tag() -> String {
    let exe = std::env::current_exe().expect("current exe");
    let stem = exe
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("test")
        .to_string();
    match stem.rsplit_once('-') {
        Some((base, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            base.into()
        }
        _ => stem,
    }
}

/// Labs named `t-...-<pid>` whose pid is no longer running are torn down.
pub fn sweep_stale_labs() {
    let Ok(rd) = std::fs::read_dir("/var/lib/cairn/labs") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("t-")
            .and_then(|rest| rest.rsplit_once('-'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("lab fixture: tearing down stale lab {name} (pid {pid} is gone)");
            let _ = cairn()
                .args(["lab", "down", "--name", &name])
                .stdin(Stdio::null())
                .status();
        }
    }
}

/// Names of labs this process started and must tear down at exit.
static OWNED: Mutex<Vec<String>> = Mutex::new(Vec::new());

extern "C" fn teardown_at_exit() {
    let names = match OWNED.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(p) => std::mem::take(&mut *p.into_inner()),
    };
    for name in names {
        let out = cairn()
            .args(["lab", "down", "--name", &name])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "lab fixture: `cairn lab down --name {name}` failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("lab fixture: cannot run cairn lab down --name {name}: {e}"),
        }
    }
}

/// Registers `name` for teardown at process exit (installing the hook once).
pub fn own(name: &str) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe {
            libc::atexit(teardown_at_exit);
        }
    });
    OWNED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(name.to_string());
}

/// Forgets `name` (a test tore it down itself).
pub fn disown(name: &str) {
    OWNED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|n| n != name);
}

/// Brings up lab `name` with `nodes` nodes (owned: torn down at exit).
pub fn start(name: &str, nodes: u32) -> LabHandle {
    own(name);
    cairn_lab(&["up", "--nodes", &nodes.to_string(), "--name", name]);
    LabHandle::open(name)
}

/// The shared lab of this test binary (started on first use).
pub fn lab() -> &'static LabHandle {
    static LAB: OnceLock<LabHandle> = OnceLock::new();
    LAB.get_or_init(|| {
        sweep_stale_labs();
        start(&unique_name(&binary_tag()), NODES)
    })
}

#[derive(serde::Deserialize)]
struct Inventory {
    hosts: Vec<cairn::host::Host>,
}

/// Parses an env file of `KEY=VALUE` lines.
pub fn read_env(path: &Path) -> BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl LabHandle {
    /// Reads the files of the up lab `name`.
    pub fn open(name: &str) -> LabHandle {
        let dir = PathBuf::from("/var/lib/cairn/labs").join(name);
        let inventory = dir.join("inventory.toml");
        let env_file = dir.join("env");
        let text = std::fs::read_to_string(&inventory)
            .unwrap_or_else(|e| panic!("read {}: {e}", inventory.display()));
        let inv: Inventory = toml::from_str(&text).expect("lab inventory parses as cairn hosts");
        let env = read_env(&env_file);
        LabHandle {
            name: name.into(),
            key: PathBuf::from(&env["CAIRN_LAB_SSH_KEY"]),
            known_hosts: PathBuf::from(&env["CAIRN_LAB_KNOWN_HOSTS"]),
            nodes: inv
                .hosts
                .iter()
                .map(|h| LabNode {
                    name: h.name.clone(),
                    address: h.address.clone(),
                    fqdn: h.fqdn.clone().unwrap_or_default(),
                })
                .collect(),
            inventory,
            env_file,
            env,
        }
    }

    /// The inventory's hosts.
    pub fn hosts(&self) -> Vec<cairn::host::Host> {
        let text = std::fs::read_to_string(&self.inventory).expect("inventory");
        toml::from_str::<Inventory>(&text)
            .expect("inventory parses")
            .hosts
    }

    /// The value of env file entry `key`.
    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("env file has no {key}"))
    }

    /// Node `name`.
    pub fn node(&self, name: &str) -> &LabNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("lab {} has no node {name}", self.name))
    }

    /// Runs `cmd` (a shell command line) on node `node` as root over ssh.
    pub fn ssh(&self, node: &str, cmd: &str) -> Output {
        self.ssh_to(&self.node(node).address, &self.key, cmd)
    }

    /// Runs `cmd` on `address` with private key `key` (host key checked
    /// against the lab's known_hosts).
    pub fn ssh_to(&self, address: &str, key: &Path, cmd: &str) -> Output {
        Command::new("ssh")
            .arg("-i")
            .arg(key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"])
            .arg(format!("root@{address}"))
            .arg(cmd)
            .stdin(Stdio::null())
            .output()
            .expect("ssh runs")
    }

    /// Like [`LabHandle::ssh`], panicking unless the command succeeds; returns stdout.
    pub fn ssh_ok(&self, node: &str, cmd: &str) -> String {
        let out = self.ssh(node, cmd);
        assert!(
            out.status.success(),
            "on {node}: `{cmd}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
