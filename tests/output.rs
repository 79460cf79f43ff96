//! What users see, on a lab's real hosts, through the real binary:
//!
//! - golden plans (exact expected text under `tests/golden/`): one with
//!   changes and one with none, sections in inventory order whatever order
//!   the parallel branches finish in, `print()` lines inside their host's
//!   section, commands never cut; `--show-unchanged` and `-v` list every line;
//! - a failed run's `cairn runs show last`, golden too, the failed step and
//!   its error at the top;
//! - progress lines for slow steps when output is not a terminal;
//! - the shipped example `examples/parallel-hosts` prints each host's kernel;
//! - `cairn new` suggests the plan command for the lab that is up.
//!
//! Golden files hold the output with its volatile parts masked (see
//! `common::golden::mask` and `tests/golden/README.md`); `CAIRN_BLESS=1` rewrites them
//! from the actual output instead of comparing (review the diff).

mod common;

use common::{cairn, golden, lab};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[derive(serde::Serialize)]
struct Inventory {
    hosts: Vec<cairn::host::Host>,
}

/// A workspace with an inventory of the lab's static nodes in the order
/// `names`, in `ws/site/hosts.toml`, with `key = "id"`: the lab's key copied
/// next to it (found only if `key` is read relative to the inventory file).
fn workspace(l: &lab::LabHandle, names: &[&str]) -> tempfile::TempDir {
    let ws = tempfile::tempdir().unwrap();
    let site = ws.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::copy(&l.key, site.join("id")).unwrap();
    std::fs::set_permissions(site.join("id"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let all = l.hosts();
    let hosts = names
        .iter()
        .map(|n| {
            let mut h = all.iter().find(|h| h.name == *n).unwrap().clone();
            h.key = Some(PathBuf::from("id"));
            h
        })
        .collect();
    std::fs::write(
        site.join("hosts.toml"),
        toml::to_string(&Inventory { hosts }).unwrap(),
    )
    .unwrap();
    ws
}

fn book(ws: &Path, name: &str, script: &str) {
    let dir = ws.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("runbook.toml"),
        format!("name = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"Golden output.\"\n"),
    )
    .unwrap();
    std::fs::write(dir.join("main.rhai"), script).unwrap();
}

/// The tests of this file take turns on the lab's nodes.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const GOLDEN: &str = r#"// Plans of this runbook are compared with tests/golden/plan-*.txt.
print("golden plan");
let ca = gen_ca(#{ name: "golden-ca", cn: "golden-ca", key: "p256", days: 3650 });
on(hosts(), |h| {
    dir(h, #{ path: "/root/golden" });
    file(h, #{ path: "/root/golden/motd", content: `managed by cairn on ${h.name}` + "\nline two\n", mode: "0644" });
    run(h, "echo 'a command this long was cut at 120 characters in plans before, which hid the file it writes' > /root/golden/long-command-output",
        #{ creates: "/root/golden/long-command-output" });
    let seen = fact(h, "cat /root/golden/motd", #{ allow_fail: true });
    print(`${h.name} checked (motd read: ${seen.ok})`);
    if h.name == "node-1" { warn("node-1 has no second disk"); }
});
"#;

#[test]
fn golden_plans_with_and_without_changes() {
    if lab::skip() {
        return;
    }
    let _serial = serial();
    let l = lab::lab();
    for n in ["node-1", "node-2", "node-3"] {
        l.ssh_ok(n, "rm -rf /root/golden");
    }
    // inventory order node-3, node-1, node-2: not name order, not completion order
    let ws = workspace(l, &["node-3", "node-1", "node-2"]);
    let w = ws.path();
    book(w, "golden", GOLDEN);
    let inv = ["--inventory", "site/hosts.toml"];

    let plan = cairn(w, &[&["plan", "golden"][..], &inv].concat());
    assert_eq!(plan.status.code(), Some(2), "{}", all(&plan));
    golden::check("plan-changes.txt", &golden::mask(&stdout(&plan), w));

    let run = cairn(w, &[&["run", "golden"][..], &inv].concat());
    assert_eq!(run.status.code(), Some(0), "{}", all(&run));
    let r = stdout(&run);
    // print() lines of a run come after its header, under their host
    let header = r.find("Run ").unwrap();
    for n in ["node-1", "node-2", "node-3"] {
        let at = r
            .find(&format!("{n:<14} | {n} checked (motd read: true)\n"))
            .unwrap_or_else(|| panic!("no print line of {n}:\n{r}"));
        assert!(at > header, "{r}");
    }
    assert!(r.contains("\ngolden plan\n"), "{r}");
    // the full command, in the run output and on the host
    assert!(
        r.contains("> run `echo 'a command this long was cut at 120 characters in plans before, which hid the file it writes' > /root/golden/long-command-output`"),
        "{r}"
    );
    assert_eq!(
        l.ssh_ok("node-2", "cat /root/golden/long-command-output"),
        "a command this long was cut at 120 characters in plans before, which hid the file it writes\n"
    );

    let plan = cairn(w, &[&["plan", "golden"][..], &inv].concat());
    assert_eq!(plan.status.code(), Some(0), "{}", all(&plan));
    let text = stdout(&plan);
    golden::check("plan-no-change.txt", &golden::mask(&text, w));
    assert!(!text.contains("= ok"), "{text}");

    // --show-unchanged and -v list every action of the plan (as often as it occurs)
    let json = cairn(w, &[&["plan", "golden", "--json"][..], &inv].concat());
    let saved: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let mut lines = Vec::new();
    for s in saved["steps"].as_array().unwrap() {
        for a in s["actions"].as_array().unwrap() {
            let a: cairn::action::Action = serde_json::from_value(a.clone()).unwrap();
            lines.push(format!("  {a}\n"));
        }
    }
    assert_eq!(lines.len(), 13, "{lines:?}");
    for flag in ["--show-unchanged", "-v"] {
        let full = cairn(w, &[&["plan", "golden", flag][..], &inv].concat());
        assert_eq!(full.status.code(), Some(0), "{}", all(&full));
        let t = stdout(&full);
        for line in &lines {
            let times = lines.iter().filter(|l| *l == line).count();
            assert_eq!(
                t.matches(line.as_str()).count(),
                times,
                "{flag}: {line}\n{t}"
            );
        }
        assert!(t.contains("  = ok run `echo 'a command this long was cut at 120 characters in plans before, which hid the file it writes' > /root/golden/long-command-output` (/root/golden/long-command-output exists)\n"), "{t}");
        assert!(t.ends_with("No changes.\nPlan: 0 to create, 0 to change, 0 to delete, 0 to run, 13 unchanged, 0 to verify.\n\
             1 warning:\n  node-1: node-1 has no second disk\n"), "{t}");
    }
}

#[test]
fn golden_runs_show_of_a_failed_run() {
    if lab::skip() {
        return;
    }
    let _serial = serial();
    let l = lab::lab();
    for n in ["node-1", "node-2"] {
        l.ssh_ok(n, "rm -rf /root/golden-fail");
    }
    let ws = workspace(l, &["node-1", "node-2"]);
    let w = ws.path();
    book(
        w,
        "golden-fail",
        r#"// One host after the other, so the journal's order is fixed.
for h in hosts() {
    file(h, #{ path: "/root/golden-fail/ok", content: "ok\n" });
    if h.name == "node-2" {
        run(h, "echo 'disk /dev/vdb is not there' >&2; test -b /dev/vdb && mkfs.ext4 /dev/vdb > /root/golden-fail/mkfs.log");
    }
}
"#,
    );
    let run = cairn(w, &["run", "golden-fail", "--inventory", "site/hosts.toml"]);
    assert_eq!(run.status.code(), Some(1), "{}", all(&run));
    let show = cairn(w, &["runs", "show", "last"]);
    assert_eq!(show.status.code(), Some(0), "{}", all(&show));
    golden::check("runs-show-failed.txt", &golden::mask(&stdout(&show), w));

    // the list: a readable start time, marked UTC, to the second
    let runs = cairn(w, &["runs"]);
    let t = golden::mask(&stdout(&runs), w);
    let rows: Vec<Vec<&str>> = t.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [
            vec!["RUN", "STATUS", "RUNBOOK", "STEPS", "STARTED"],
            vec!["RUN_ID", "failed", "golden-fail", "0.1.0", "2", "TIME"]
        ],
        "{t}"
    );
    // `last` is an error, not a guess, in a workspace without runs
    let empty = tempfile::tempdir().unwrap();
    let none = cairn(empty.path(), &["runs", "show", "last"]);
    assert_eq!(none.status.code(), Some(1));
    assert_eq!(stderr(&none), "error: no runs in .cairn/runs\n");
}

#[test]
fn slow_steps_get_progress_lines_when_output_is_not_a_terminal() {
    if lab::skip() {
        return;
    }
    let _serial = serial();
    let l = lab::lab();
    let ws = workspace(l, &["node-1", "node-2"]);
    let w = ws.path();
    // the subject is a slow remote command, not a sleep in this test
    book(
        w,
        "slow",
        r#"let h = hosts()[1];
let seen = fact(h, "sleep 7; echo slept", #{ timeout: 60 });
print(seen.stdout);
"#,
    );
    let inv = ["--inventory", "site/hosts.toml"];
    let run = cairn(w, &[&["run", "slow"][..], &inv].concat());
    assert_eq!(run.status.code(), Some(0), "{}", all(&run));
    let r = stdout(&run);
    let progress = r
        .find("… still running: fact on node-2 (5 s)\n")
        .unwrap_or_else(|| panic!("no progress line:\n{r}"));
    let done = r
        .find("node-2         = ok read `sleep 7; echo slept`")
        .unwrap();
    assert!(progress < done, "{r}");
    assert_eq!(r.matches("still running").count(), 1, "{r}");

    // a plan's progress goes to stderr: the plan text itself stays the same
    let plan = cairn(w, &[&["plan", "slow"][..], &inv].concat());
    assert_eq!(plan.status.code(), Some(0), "{}", all(&plan));
    assert!(
        stderr(&plan).contains("… still running: fact on node-2 (5 s)\n"),
        "{}",
        all(&plan)
    );
    assert_eq!(
        stdout(&plan),
        "Plan for slow 0.1.0\n\nlocal:\n  | slept\nnode-2: 1 unchanged\n\nNo changes.\n\
         Plan: 0 to create, 0 to change, 0 to delete, 0 to run, 1 unchanged, 0 to verify.\n"
    );
}

#[test]
fn example_parallel_hosts_prints_each_kernel() {
    if lab::skip() {
        return;
    }
    let _serial = serial();
    let l = lab::lab();
    let ws = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/parallel-hosts");
    let example = example.to_str().unwrap();
    let run = cairn(ws.path(), &["run", example, "--lab", &l.name]);
    assert_eq!(run.status.code(), Some(0), "{}", all(&run));
    let r = stdout(&run);
    for n in &l.nodes {
        // a real line break at the end of /etc/motd, not a backslash and an n
        assert_eq!(
            l.ssh_ok(&n.name, "cat /etc/motd"),
            format!("managed by cairn ({})\n", n.name)
        );
        let kernel = l.ssh_ok(&n.name, "uname -r");
        let kernel = kernel.trim();
        assert!(!kernel.is_empty());
        assert!(
            r.contains(&format!("\n{}: kernel {kernel}\n", n.name)),
            "{}: kernel {kernel}:\n{r}",
            n.name
        );
    }
    // the plan prints them too (uname is a fact), inside the plan, after its header
    let plan = cairn(ws.path(), &["plan", example, "--lab", &l.name]);
    assert_eq!(plan.status.code(), Some(0), "{}", all(&plan));
    let p = stdout(&plan);
    assert!(
        p.starts_with("Plan for example-parallel-hosts 0.1.0\n"),
        "{p}"
    );
    let kernel = l.ssh_ok("node-1", "uname -r");
    assert!(
        p.contains(&format!("local:\n  | node-1: kernel {}\n", kernel.trim())),
        "{p}"
    );
}

#[test]
fn new_suggests_the_plan_command_for_the_lab_that_is_up() {
    if lab::skip() {
        return;
    }
    let l = lab::lab();
    let d = tempfile::tempdir().unwrap();
    let o = cairn(d.path(), &["new", "my-book"]);
    assert_eq!(o.status.code(), Some(0), "{}", all(&o));
    let t = stdout(&o);
    // other labs may be up on this machine too: ours must be among them
    assert!(
        t.contains(&format!("cairn plan my-book --lab {}\n", l.name)),
        "{t}"
    );
    // and the suggestion works as printed
    let plan = cairn(d.path(), &["plan", "my-book", "--lab", &l.name]);
    assert_eq!(plan.status.code(), Some(2), "{}", all(&plan));
}
