//! A lab shared by the tests of one test binary: started once (on first use)
//! with the real `cairn` binary, named `t-<binary>-<pid>`, and torn down when
//! the test process exits (an `atexit` hook, which also runs when tests
//! fail). Labs of test processes that died without tearing down (killed,
//! Ctrl-C) are swept at the next start: their name ends in a dead pid.
//!
//! Use it from a test file with `mod common; use common::lab;`: a lab test
//! starts with `if lab::skip() { return; }` and then calls `lab::lab()`.
//! Needs root and the lab's prerequisites (`.ci/lab-prereqs.sh`).
//!
//! # Test tiers
//!
//! Whether tests that need root (the lab, a real sshd) run is decided once
//! per test process from `CAIRN_LAB_TESTS`:
//!
//! - `all`: they run; a missing prerequisite (not root, no lab image, a
//!   missing tool) fails each of them with what is missing and how to get it;
//! - `off`: each of them is skipped, printing one line that says so and why;
//!   the process prints a summary line with their number when it exits;
//! - unset: `all` when running as root with the lab image present, else
//!   `off` (saying which of the two is missing).
//!
//! The lines go straight to stderr (libtest does not capture them), so a
//! skip is always visible in `cargo test`'s output. CI sets
//! `CAIRN_LAB_TESTS=all` (`.ci/test`) and can never skip silently.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The environment variable that chooses the tier.
pub const TIER_VAR: &str = "CAIRN_LAB_TESTS";

/// What this test process does with tests that need root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tier {
    /// They run (`CAIRN_LAB_TESTS=all`, or unset on a lab machine).
    All,
    /// They are skipped, for this reason.
    Off(String),
}

/// Whether this process runs as root.
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the lab's base image (`cairn lab image`) is built.
fn image_present() -> bool {
    cairn_lab::image::rootfs_ready(&cairn_lab::paths::image_paths())
}

/// The tier of this process, decided on first use.
pub fn tier() -> &'static Tier {
    static TIER: OnceLock<Tier> = OnceLock::new();
    TIER.get_or_init(|| {
        let value = std::env::var(TIER_VAR).unwrap_or_default();
        match value.as_str() {
            "all" | "1" => Tier::All,
            "off" | "0" => Tier::Off(format!("{TIER_VAR}={value}")),
            "" if !is_root() => Tier::Off(format!(
                "{TIER_VAR} is unset and this is not root (uid {}); \
                 as root, with the lab image (.ci/lab-prereqs.sh), they run",
                // SAFETY: geteuid has no preconditions.
                unsafe { libc::geteuid() }
            )),
            "" if !image_present() => Tier::Off(format!(
                "{TIER_VAR} is unset and the lab image is missing ({}): \
                 .ci/lab-prereqs.sh builds it",
                cairn_lab::paths::IMAGE_CACHE
            )),
            "" => Tier::All,
            other => panic!("{TIER_VAR}={other}: expected `all` or `off` (or unset)"),
        }
    })
}

/// Tests this process skipped.
static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// Writes `line` to stderr, past libtest's output capture.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

extern "C" fn summary_at_exit() {
    let n = SKIPPED.load(Ordering::SeqCst);
    if let (Tier::Off(why), true) = (tier(), n > 0) {
        say(&format!(
            "lab tier: {n} test(s) of {} skipped ({why}); CAIRN_LAB_TESTS=all runs them",
            binary_tag()
        ));
    }
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_string()
}

/// What a test needs beyond an unprivileged user.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// A lab: root, the lab's tools and its base image.
    Lab,
    /// Root only (a real sshd on 127.0.0.1, a real etcd as root).
    Root,
}

/// Why this machine cannot give `need`, with how to get it.
fn missing(need: Need) -> Option<String> {
    if !is_root() {
        return Some(format!(
            "root privileges (this is uid {}): run the tests as root, or {TIER_VAR}=off to skip them",
            // SAFETY: geteuid has no preconditions.
            unsafe { libc::geteuid() }
        ));
    }
    if let Need::Lab = need {
        if let Err(e) = cairn_lab::prereq::check(false) {
            return Some(format!(
                "{e}: .ci/lab-prereqs.sh installs what the lab needs"
            ));
        }
        if !image_present() {
            return Some(format!(
                "the lab image ({}): .ci/lab-prereqs.sh (or `cairn lab image`) builds it",
                cairn_lab::paths::IMAGE_CACHE
            ));
        }
    }
    None
}

/// Whether the calling test must be skipped because it needs `need` and the
/// tier is off (printing the skip line); in tier `all` a missing
/// prerequisite fails the test, naming it.
pub fn skip_unless(need: Need) -> bool {
    match tier() {
        Tier::All => {
            if let Some(what) = missing(need) {
                panic!("{TIER_VAR}=all, but this test needs {what}");
            }
            false
        }
        Tier::Off(why) => {
            static HOOK: OnceLock<()> = OnceLock::new();
            HOOK.get_or_init(|| {
                // SAFETY: registering a plain extern "C" fn with no captured state.
                unsafe {
                    libc::atexit(summary_at_exit);
                }
            });
            SKIPPED.fetch_add(1, Ordering::SeqCst);
            say(&format!(
                "lab tier: skipped {} (needs {}; {why})",
                test_name(),
                match need {
                    Need::Lab => "the lab",
                    Need::Root => "root",
                }
            ));
            true
        }
    }
}

/// `skip_unless(Need::Lab)`: the guard at the top of every lab test.
pub fn skip() -> bool {
    skip_unless(Need::Lab)
}

/// Panics unless the tier lets lab tests run: a lab test forgot its guard.
pub fn assert_tier_on() {
    if let Tier::Off(why) = tier() {
        panic!(
            "{} starts a lab although lab tests are off ({why}): \
             it needs `if lab::skip() {{ return; }}` at its start",
            test_name()
        );
    }
}

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

/// The `cairn` binary under test, for `cairn lab ...` (scrubbed
/// environment, no workspace).
pub fn cairn() -> Command {
    super::Cairn::detached().command()
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
    assert_tier_on();
    own(name);
    cairn_lab(&["up", "--nodes", &nodes.to_string(), "--name", name]);
    LabHandle::open(name)
}

/// The shared lab of this test binary (started on first use).
pub fn lab() -> &'static LabHandle {
    static LAB: OnceLock<LabHandle> = OnceLock::new();
    assert_tier_on();
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
