//! Bad input, each checked for its exact error and for nothing changed.
//!
//! Every folder under `tests/bad_input/` is one case:
//!
//! - `ws/`: the workspace's files (a runbook in `ws/rb/`, inventories, vars
//!   files, keys), copied into a fresh temporary folder;
//! - `modes` (optional): `PATH MODE` lines applied after copying (git keeps
//!   no modes but the executable bit);
//! - `args`: the command line, one argument per line, run in the workspace;
//! - `env` (optional): `KEY=VALUE` lines set for the command;
//! - `stderr`: the exact error cairn must print (exit code 1), and `stdout`
//!   what it prints on stdout (absent: nothing). Run ids, run times and the
//!   workspace's path read `RUN_ID`, `T` and `$WS` there.
//!
//! The workspace is compared byte for byte (and mode for mode) before and
//! after. A `run` that fails at run time leaves only its journal (and the
//! workspace lock file, `.cairn/lock`), which must record no step as done
//! and end `failed`; the same command as a `plan`
//! must fail with the same error and leave the workspace untouched.
//! The one exception: a `run` or `plan` in an existing workspace appends one
//! entry to `.cairn/audit.log` (see `cairn::audit`), and nothing else.
//! `CAIRN_BLESS=1` writes `stdout`/`stderr` files from the actual output
//! instead of comparing (review the diff before committing).
//!
//! Cases that need state made by cairn itself (a journal to corrupt) and
//! the fuzzing of the manifest, vars and inventory parsers are tests below.

mod common;

use common::{cairn, cairn_env, lab, text};

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input")
}

/// A file tree as data: relative path to (mode, content or link target);
/// folders have an empty content and the folder bit in the mode.
type Tree = BTreeMap<String, (u32, Vec<u8>)>;

fn snapshot(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let mode = meta.permissions().mode();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, (mode, target.display().to_string().into_bytes()));
            } else if meta.is_dir() {
                out.insert(rel, (mode, Vec::new()));
                walk(root, &p, out);
            } else {
                out.insert(rel, (mode, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

/// What differs between two snapshots, for a readable failure.
fn tree_diff(before: &Tree, after: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in after {
        match before.get(k) {
            None => out.push(format!("new: {k}")),
            Some(b) if b.0 != v.0 => out.push(format!("mode {:o} -> {:o}: {k}", b.0, v.0)),
            Some(b) if b.1 != v.1 => out.push(format!("changed: {k}")),
            _ => {}
        }
    }
    for k in before.keys() {
        if !after.contains_key(k) {
            out.push(format!("removed: {k}"));
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// `s` with the workspace path, run ids and run times made stable.
fn normalise(s: &str, ws: &Path) -> String {
    let s = s.replace(&ws.display().to_string(), "$WS");
    let mut out = String::new();
    let mut rest = s.as_str();
    // run ids: 8 digits, `-`, 6 digits, `-`, 4 hex digits
    while let Some(i) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let b = rest.as_bytes();
        let is_id = b.len() >= 20
            && b[..8].iter().all(u8::is_ascii_digit)
            && b[8] == b'-'
            && b[9..15].iter().all(u8::is_ascii_digit)
            && b[15] == b'-'
            && b[16..20].iter().all(u8::is_ascii_hexdigit);
        if is_id {
            out.push_str("RUN_ID");
            rest = &rest[20..];
        } else {
            out.push_str(&rest[..1]);
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    // `failed after 0.0s`
    let mut fixed = String::new();
    for line in out.split_inclusive('\n') {
        match line.find(" after ").map(|i| (i, &line[i + 7..])) {
            Some((i, tail))
                if tail
                    .split_once('s')
                    .is_some_and(|(n, _)| n.parse::<f64>().is_ok()) =>
            {
                let (_, after) = tail.split_once('s').unwrap();
                fixed.push_str(&line[..i]);
                fixed.push_str(" after Ts");
                fixed.push_str(after);
            }
            _ => fixed.push_str(line),
        }
    }
    fixed
}

/// Take the audit log out of `diff`: a command may append one entry to
/// `.cairn/audit.log` (creating it 0600) and change nothing else there; says
/// what is wrong otherwise.
fn audit_entry_added(before: &Tree, after: &Tree, diff: &mut Vec<String>) -> Option<String> {
    const LOG: &str = ".cairn/audit.log";
    diff.retain(|d| !d.ends_with(&format!(" {LOG}")));
    let (mode, now) = after.get(LOG)?;
    let was = before
        .get(LOG)
        .map(|(_, b)| b.as_slice())
        .unwrap_or_default();
    let added = now.strip_prefix(was);
    let one_line =
        added.is_some_and(|a| a.ends_with(b"\n") && a.iter().filter(|b| **b == b'\n').count() == 1);
    if !one_line || mode & 0o777 != 0o600 {
        return Some(format!(
            "{LOG} (mode {mode:o}) did not gain exactly one entry: {:?}",
            String::from_utf8_lossy(now)
        ));
    }
    let entry: serde_json::Value = serde_json::from_slice(added.unwrap()).ok()?;
    (entry["result"] != "refused" && entry["result"] != "failed")
        .then(|| format!("{LOG}: the entry is not a refusal or failure: {entry}"))
}

/// The first `error: ` line of `stderr`.
fn error_line(stderr: &str) -> Option<&str> {
    stderr.lines().find(|l| l.starts_with("error: "))
}

/// Runs one corpus case; returns a description of what is wrong, if anything.
fn check_case(case: &Path, bless: bool) -> Option<String> {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path();
    if case.join("ws").is_dir() {
        copy_tree(&case.join("ws"), ws);
    }
    if let Ok(modes) = std::fs::read_to_string(case.join("modes")) {
        for line in modes.lines().filter(|l| !l.trim().is_empty()) {
            let (path, mode) = line.split_once(' ').expect("modes: `PATH MODE` lines");
            let mode = u32::from_str_radix(mode.trim(), 8).expect("octal mode");
            std::fs::set_permissions(ws.join(path), std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
    let args_text = std::fs::read_to_string(case.join("args"))
        .unwrap_or_else(|e| panic!("{name}: read args: {e}"));
    let args: Vec<&str> = args_text.lines().collect();
    // optional `env`: `KEY=VALUE` lines set for the command
    let env_text = std::fs::read_to_string(case.join("env")).unwrap_or_default();
    let env: Vec<(&str, &str)> = env_text.lines().filter_map(|l| l.split_once('=')).collect();
    let before = snapshot(ws);
    let out = cairn_env(ws, &args, &env);
    let after = snapshot(ws);
    let stderr = normalise(&String::from_utf8_lossy(&out.stderr), ws);
    let stdout = normalise(&String::from_utf8_lossy(&out.stdout), ws);
    let mut problems = Vec::new();
    if out.status.code() != Some(1) {
        problems.push(format!("exit status {} (want 1)", out.status));
    }
    let mut diff = tree_diff(&before, &after);
    if let Some(problem) = audit_entry_added(&before, &after, &mut diff) {
        problems.push(problem);
    }
    if args[0] == "run" {
        // a run that started leaves its journal, and only that
        let journals: Vec<String> = diff
            .iter()
            .filter_map(|d| d.strip_prefix("new: "))
            .filter(|p| p.starts_with(".cairn/runs/") && p.ends_with("/journal.jsonl"))
            .map(String::from)
            .collect();
        for j in &journals {
            let text = String::from_utf8_lossy(&after[j.as_str()].1).into_owned();
            let last = text.lines().last().unwrap_or_default();
            if !last.contains(r#"{"t":"end","status":"failed""#) {
                problems.push(format!("journal {j} does not end failed: {last}"));
            }
            // done steps may only be no-ops (`= ok`: a CA already there)
            for line in text.lines().filter(|l| l.contains(r#"{"t":"done""#)) {
                let record: serde_json::Value =
                    serde_json::from_str(line.split_once(' ').unwrap().1).unwrap();
                let actions = record["actions"].as_array().cloned().unwrap_or_default();
                if actions.iter().any(|a| a["kind"] != "noop") {
                    problems.push(format!(
                        "journal {j} records a step that changed something: {line}"
                    ));
                }
            }
        }
        // the run's journal, and the workspace lock a run holds while it runs
        let made_by_run = |p: &str| {
            p == ".cairn"
                || p == ".cairn/lock"
                || p == ".cairn/runs"
                || journals.iter().any(|j| j.starts_with(p) || j == p)
        };
        diff.retain(|d| !d.strip_prefix("new: ").is_some_and(made_by_run));
    }
    if !diff.is_empty() {
        problems.push(format!("workspace changed: {diff:?}"));
    }
    if args[0] == "run" {
        let mut plan_args = args.clone();
        plan_args[0] = "plan";
        let before = snapshot(ws);
        let plan = cairn_env(ws, &plan_args, &env);
        let after = snapshot(ws);
        let mut plan_diff = tree_diff(&before, &after);
        if let Some(problem) = audit_entry_added(&before, &after, &mut plan_diff) {
            problems.push(format!("plan: {problem}"));
        }
        let plan_err = String::from_utf8_lossy(&plan.stderr).into_owned();
        if plan.status.code() != Some(1) {
            problems.push(format!("plan: exit status {} (want 1)", plan.status));
        }
        if !plan_diff.is_empty() {
            problems.push(format!("plan changed the workspace: {plan_diff:?}"));
        }
        if error_line(&plan_err).map(|l| normalise(l, ws)).as_deref() != error_line(&stderr) {
            problems.push(format!(
                "plan's error differs from run's:\nplan: {plan_err}\nrun: {stderr}"
            ));
        }
    }
    if bless {
        std::fs::write(case.join("stderr"), &stderr).unwrap();
        if stdout.is_empty() {
            let _ = std::fs::remove_file(case.join("stdout"));
        } else {
            std::fs::write(case.join("stdout"), &stdout).unwrap();
        }
    } else {
        let want = std::fs::read_to_string(case.join("stderr"))
            .unwrap_or_else(|e| panic!("{name}: read stderr: {e} (bless with CAIRN_BLESS=1)"));
        if want != stderr {
            problems.push(format!("stderr:\n--- want\n{want}--- got\n{stderr}---"));
        }
        let want = std::fs::read_to_string(case.join("stdout")).unwrap_or_default();
        if want != stdout {
            problems.push(format!("stdout:\n--- want\n{want}--- got\n{stdout}---"));
        }
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "{name} ({}):\n{}",
            args.join(" "),
            problems.join("\n")
        ))
    }
}

/// The corpus's cases (`CAIRN_BAD_INPUT_DIR` names another corpus folder).
fn cases() -> Vec<PathBuf> {
    let dir = std::env::var_os("CAIRN_BAD_INPUT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(corpus);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("args").is_file())
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_corpus_case_fails_with_its_exact_error_and_changes_nothing() {
    let bless = std::env::var_os("CAIRN_BLESS").is_some();
    let cases = cases();
    assert!(!cases.is_empty(), "no cases");
    let failures: Vec<String> = cases.iter().filter_map(|c| check_case(c, bless)).collect();
    eprintln!(
        "bad input corpus: {} cases, {} failed",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

// ---- journals damaged on disk ----

/// A workspace with a run killed after two of six steps: (workspace, journal path).
fn killed_run() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path();
    std::fs::create_dir_all(ws.join("rb")).unwrap();
    std::fs::write(
        ws.join("rb/runbook.toml"),
        "name = \"steps\"\nversion = \"1.0.0\"\ndescription = \"six files\"\n",
    )
    .unwrap();
    std::fs::write(
        ws.join("rb/main.rhai"),
        "for i in 0..6 { local_file(#{ path: `f/${i}.txt`, content: `file ${i}` }); }\n",
    )
    .unwrap();
    let killed = cairn_env(ws, &["run", "rb"], &[("CAIRN_FAULT_KILL", "applied:3")]);
    assert_eq!(killed.status.code(), None, "must die: {}", text(&killed));
    let runs: Vec<PathBuf> = std::fs::read_dir(ws.join(".cairn/runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let journal = runs[0].join("journal.jsonl");
    (tmp, journal)
}

#[test]
fn resume_refuses_a_truncated_or_corrupted_journal_and_leaves_it_as_it_was() {
    type Damage = fn(&[u8]) -> Vec<u8>;
    // (a last record cut off is not corruption: see the test after this one)
    let cases: [(&str, Damage, &str); 4] = [
        (
            "a byte changed in a done record",
            |b| {
                let text = String::from_utf8(b.to_vec()).unwrap();
                let mut lines: Vec<String> = text.lines().map(String::from).collect();
                lines[2] = lines[2].replacen("file", "fXle", 1);
                (lines.join("\n") + "\n").into_bytes()
            },
            "is corrupted at line 3: checksum mismatch",
        ),
        (
            "the run header changed",
            |b| {
                String::from_utf8(b.to_vec())
                    .unwrap()
                    .replacen("\"steps\"", "\"stepz\"", 1)
                    .into_bytes()
            },
            "is corrupted at line 1: checksum mismatch",
        ),
        (
            "a line without checksum appended",
            |b| [b, b"garbage\n"].concat(),
            "is corrupted at line 7: no checksum",
        ),
        ("emptied", |_| Vec::new(), "is empty or has no run header"),
    ];
    for (what, damage, want) in cases {
        let (tmp, journal) = killed_run();
        let ws = tmp.path();
        let id = journal
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let good = std::fs::read(&journal).unwrap();
        std::fs::write(&journal, damage(&good)).unwrap();
        let mut before = snapshot(ws);
        for args in [
            &["resume"][..],
            &["resume", &id],
            &["resume", &id, "--force"],
        ] {
            let out = cairn(ws, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{what}: {args:?}: {}",
                text(&out)
            );
            let rel = format!(".cairn/runs/{id}/journal.jsonl");
            let expected = if want.starts_with("is empty") {
                format!("error: journal {rel} {want}\n")
            } else {
                format!(
                    "error: journal {rel} {want}; refusing to resume from it (nothing was changed; the file is left as it is for inspection)\n"
                )
            };
            assert_eq!(stderr, expected, "{what}: {args:?}");
            assert!(out.stdout.is_empty(), "{what}: {}", text(&out));
            // nothing changed but the audit log's one entry for this refusal
            let after = snapshot(ws);
            let mut diff = tree_diff(&before, &after);
            let logged = audit_entry_added(&before, &after, &mut diff);
            assert!(logged.is_none(), "{what}: {args:?}: {logged:?}");
            assert!(diff.is_empty(), "{what}: {args:?} changed {diff:?}");
            before = after;
        }
        // the files written before the kill are intact
        for i in 0..2 {
            assert_eq!(
                std::fs::read_to_string(ws.join(format!(".cairn/files/f/{i}.txt"))).unwrap(),
                format!("file {i}")
            );
        }
    }
}

/// A record that was not written whole (a full disk, a crash mid-write) is
/// the last line without its newline: resume cuts it off, says so, and goes
/// on from the last whole record; no step is done twice.
#[test]
fn resume_cuts_off_a_torn_last_record_and_continues_from_the_last_whole_one() {
    type Damage = fn(&[u8]) -> Vec<u8>;
    let cases: [(&str, Damage); 2] = [
        ("truncated mid-record", |b| b[..b.len() - 20].to_vec()),
        ("last newline lost", |b| b[..b.len() - 1].to_vec()),
    ];
    for (what, damage) in cases {
        let (tmp, journal) = killed_run();
        let ws = tmp.path();
        let good = std::fs::read(&journal).unwrap();
        let torn = damage(&good);
        let whole = torn.iter().rposition(|b| *b == b'\n').unwrap() + 1;
        std::fs::write(&journal, &torn).unwrap();
        let listed = cairn(ws, &["runs"]);
        assert!(
            text(&listed).contains(" failed "),
            "{what}: {}",
            text(&listed)
        );
        let out = cairn(ws, &["resume"]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!(
                "cut off its last record ({} bytes), which was not written whole; continuing from the last whole record.",
                torn.len() - whole
            )),
            "{what}: {stdout}"
        );
        let after = std::fs::read(&journal).unwrap();
        assert_eq!(
            &after[..whole],
            &torn[..whole],
            "{what}: whole records kept"
        );
        let j = cairn::journal::Journal::read(&journal).unwrap();
        assert_eq!(j.torn, None);
        assert_eq!(j.status(), Some(cairn::journal::RunStatus::Succeeded));
        for (key, n) in j.done_counts() {
            assert_eq!(n, 1, "{what}: {key} done {n} times");
        }
        assert_eq!(j.done_counts().len(), 6, "{what}");
    }
}

// ---- bad input against lab hosts: nothing changes on a node ----

/// Every entry of a node's /etc: type, mode, owner, link target, and the
/// sha256 of every regular file.
fn etc_listing(l: &lab::LabHandle, node: &str) -> String {
    l.ssh_ok(
        node,
        "find /etc -xdev -printf '%p %y %m %u:%g %l\\n' | sort; \
         find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum",
    )
}

fn etc_listings(l: &lab::LabHandle) -> Vec<String> {
    l.nodes.iter().map(|n| etc_listing(l, &n.name)).collect()
}

/// Servers the lab's Hetzner emulation has.
fn hetzner_servers(l: &lab::LabHandle) -> usize {
    let out = Command::new("curl")
        .args(["-sf", "-H"])
        .arg(format!("Authorization: Bearer {}", l.var("HCLOUD_TOKEN")))
        .arg(format!("{}/servers", l.var("HCLOUD_ENDPOINT")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["servers"].as_array().map(Vec::len).unwrap_or(0)
}

/// One lab case: files to write into the workspace, the command, and what
/// the `error: ` line must be (`Ok`: exactly; `Err((start, end))`: its start
/// and end).
struct LabCase {
    name: &'static str,
    files: Vec<(&'static str, String)>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    error: Result<String, (String, String)>,
    /// Lines stderr must also hold.
    also: Vec<String>,
}

const RB: &str = "name = \"bad\"\nversion = \"1.0.0\"\ndescription = \"a bad input\"\n";

fn lab_cases(l: &lab::LabHandle) -> Vec<LabCase> {
    let node1 = l.node("node-1").address.clone();
    let key = std::fs::read_to_string(&l.key).unwrap();
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let lab_args = |v: &[&str]| {
        let mut a = s(v);
        a.extend(["--lab".to_string(), l.name.clone()]);
        a
    };
    let mut inv4 = String::new();
    for (i, n) in l.nodes.iter().enumerate() {
        inv4 += &format!(
            "[[hosts]]\nname = \"etcd-{}\"\naddress = \"{}\"\n\n",
            i + 1,
            n.address
        );
    }
    inv4 += &format!("[[hosts]]\nname = \"etcd-4\"\naddress = \"{node1}\"\n");
    let cloud_env = |token: Option<&str>| {
        let mut env: Vec<(String, String)> = l
            .env
            .iter()
            .filter(|(k, _)| k.as_str() != "HCLOUD_TOKEN")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(t) = token {
            env.push(("HCLOUD_TOKEN".into(), t.into()));
        }
        env
    };
    vec![
        LabCase {
            name: "key file readable by others",
            files: vec![
                ("rb/runbook.toml", RB.into()),
                (
                    "rb/main.rhai",
                    "for h in hosts() {\n    file(h, #{ path: \"/etc/cairn-bad-input\", content: \"x\" });\n}\n".into(),
                ),
                ("id_lab", key.clone()),
                (
                    "hosts.toml",
                    format!("[[hosts]]\nname = \"node-1\"\naddress = \"{node1}\"\nkey = \"id_lab\"\n"),
                ),
            ],
            args: s(&["run", "rb", "--inventory", "hosts.toml"]),
            env: vec![],
            error: Ok(format!("error: file on node-1 failed: cannot connect to node-1 ({node1}:22): identity file id_lab is readable by others (mode 0644); ssh refuses it: run `chmod 600 id_lab`")),
            also: vec![],
        },
        LabCase {
            name: "upload from outside the runbook folder",
            files: vec![
                ("rb/runbook.toml", RB.into()),
                (
                    "rb/main.rhai",
                    "let h = hosts()[0];\nupload(h, #{ src: \"../../etc/passwd\", dest: \"/etc/passwd-copy\" });\n".into(),
                ),
            ],
            args: lab_args(&["run", "rb"]),
            env: vec![],
            error: Ok("error: upload on node-1 failed: invalid `path`: `../../etc/passwd` escapes the runbook folder (only relative paths inside it are allowed)".into()),
            also: vec![],
        },
        LabCase {
            name: "template with an undefined variable",
            files: vec![
                ("rb/runbook.toml", RB.into()),
                (
                    "rb/main.rhai",
                    "on(hosts(), |h| {\n    file(h, #{ path: \"/etc/bad.conf\", content: render(\"templates/conf.j2\", #{ port: 1 }) });\n});\n".into(),
                ),
                ("rb/templates/conf.j2", "port={{ port }}\nproto={{ prot }}\n".into()),
            ],
            args: lab_args(&["run", "rb"]),
            env: vec![],
            error: Ok("error: 3 of 3 hosts failed:".into()),
            also: (1..=3)
                .map(|i| format!("  node-{i}: render: template templates/conf.j2 line 2: undefined value: `prot` is undefined\n"))
                .collect(),
        },
        LabCase {
            name: "a host twice in on()",
            files: vec![
                ("rb/runbook.toml", RB.into()),
                (
                    "rb/main.rhai",
                    "let h = hosts()[0];\non([h, h], |h| { file(h, #{ path: \"/etc/twice\", content: \"x\" }); });\n".into(),
                ),
            ],
            args: lab_args(&["run", "rb"]),
            env: vec![],
            error: Ok("error: on: host `node-1` appears twice".into()),
            also: vec![],
        },
        LabCase {
            name: "a node name twice in the inventory",
            files: vec![(
                "hosts.toml",
                format!("[[hosts]]\nname = \"etcd-1\"\naddress = \"{node1}\"\n\n[[hosts]]\nname = \"etcd-1\"\naddress = \"{}\"\n", l.node("node-2").address),
            )],
            args: lab_args(&["run", "etcd-binary-yaml", "--inventory", "hosts.toml"]),
            env: vec![],
            error: Ok("error: inventory hosts.toml: host name `etcd-1` appears twice".into()),
            also: vec![],
        },
        LabCase {
            name: "four members for etcd-binary-yaml",
            files: vec![("hosts.toml", inv4)],
            args: lab_args(&["run", "etcd-binary-yaml", "--inventory", "hosts.toml"]),
            env: vec![],
            error: Ok("error: a cluster of 4 members is refused: quorum is 3, so it tolerates only 1 failed member(s), the same as 3 members, with more ways to split the vote; use 3 or 5; --var allow_even_size=true builds it anyway".into()),
            also: vec![],
        },
        LabCase {
            name: "etcd-hetzner-apt with a wrong token",
            files: vec![],
            args: s(&["run", "etcd-hetzner-apt"]),
            env: cloud_env(Some("wrong-token-0a1b2c3d4e5f60718293a4b5c6d7e8f9")),
            error: Err((
                "error: hcloud_network on hetzner failed: hetzner GET /v1/networks".into(),
                ": 401 unauthorized: unable to authenticate".into(),
            )),
            also: vec![],
        },
        LabCase {
            name: "etcd-hetzner-apt without a token",
            files: vec![],
            args: s(&["run", "etcd-hetzner-apt"]),
            env: cloud_env(None),
            error: Err((
                "error: hcloud_network on hetzner failed: ".into(),
                "set HCLOUD_TOKEN or pass `token_file`".into(),
            )),
            also: vec![],
        },
    ]
}

#[test]
fn bad_input_against_lab_hosts_changes_no_node() {
    if lab::skip() {
        return;
    }
    let l = lab::lab();
    let cases = lab_cases(l);
    let mut failures = Vec::new();
    for case in &cases {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path();
        for (rel, content) in &case.files {
            let p = ws.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, content).unwrap();
        }
        if ws.join("id_lab").exists() {
            std::fs::set_permissions(ws.join("id_lab"), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        let etc_before = etc_listings(l);
        let servers_before = hetzner_servers(l);
        let before = snapshot(ws);
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = case
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let out = cairn_env(ws, &args, &env);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut problems = Vec::new();
        if out.status.code() != Some(1) {
            problems.push(format!("exit status {}", out.status));
        }
        let line = error_line(&stderr).unwrap_or_default();
        let ok = match &case.error {
            Ok(want) => line == want,
            Err((start, end)) => line.starts_with(start.as_str()) && line.ends_with(end.as_str()),
        };
        for want in &case.also {
            if !stderr.contains(want.as_str()) {
                problems.push(format!("stderr lacks {want:?}:\n{stderr}"));
            }
        }
        if !ok {
            problems.push(format!(
                "error line: want {:?}\ngot: {}",
                case.error,
                text(&out)
            ));
        }
        // only the failed run's journal (and the workspace lock) may be new,
        // and the audit log's one entry for it
        let after = snapshot(ws);
        let mut logged = tree_diff(&before, &after);
        if let Some(problem) = audit_entry_added(&before, &after, &mut logged) {
            problems.push(problem);
        }
        let diff: Vec<String> = logged
            .into_iter()
            .filter(|d| {
                !d.strip_prefix("new: ").is_some_and(|p| {
                    p == ".cairn"
                        || p == ".cairn/lock"
                        || p == ".cairn/runs"
                        || p.starts_with(".cairn/runs/")
                })
            })
            .collect();
        if !diff.is_empty() {
            problems.push(format!("workspace changed: {diff:?}"));
        }
        for (node, (b, a)) in l.nodes.iter().zip(etc_before.iter().zip(etc_listings(l))) {
            if *b != a {
                let changed: Vec<&str> =
                    a.lines().filter(|x| !b.lines().any(|y| y == *x)).collect();
                problems.push(format!("{}: /etc changed: {changed:?}", node.name));
            }
        }
        if hetzner_servers(l) != servers_before {
            problems.push("a server was created".into());
        }
        for (k, v) in &case.env {
            if k == "HCLOUD_TOKEN" && text(&out).contains(v.as_str()) {
                problems.push("the token is printed".into());
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("\n")));
        }
    }
    eprintln!(
        "bad input on a lab: {} cases, {} failed",
        cases.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---- bounded fuzzing of the manifest, vars and inventory parsers ----
//
// cargo-fuzz targets live in `fuzz/` (`cargo +nightly fuzz run manifest`);
// this is a short, seeded, deterministic run of the same properties for
// every `cargo test`: `CAIRN_FUZZ_SECS` (default 3) bounds each parser.

/// xorshift64*: deterministic and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes TOML cares about, and some it should refuse.
const TOKENS: &[&[u8]] = &[
    b"=",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b"{",
    b"}",
    b"\"",
    b"'",
    b"'''",
    b"\"\"\"",
    b"\n",
    b"#",
    b",",
    b".",
    b"\\",
    b"\\u00e9",
    b"-",
    b"+",
    b"0x",
    b"1e400",
    b"9223372036854775808",
    b"-0",
    b"nan",
    b"inf",
    b"true",
    b"1979-05-27T07:32:00Z",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"\xf0\x9f\x98\x80",
    b"\xff",
    b"\0",
    b"\t",
    b"\r\n",
    b"type",
    b"default",
    b"params",
    b"version",
    b"items",
    b"choices",
    b"min",
    b"max",
    b"secret",
    b"list",
    b"cidr",
    b"ip",
    b"map",
    b"hosts",
    b"name",
    b"address",
    b"key",
    b"port",
    b"65536",
    b"10.0.0.0/33",
    b"::1",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.splice(at..at, t.iter().copied());
            }
            2 if at < b.len() => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at..end);
            }
            3 => b.truncate(at),
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let end = (from + rng.below(64)).min(other.len());
                b.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())];
                b.extend_from_slice(t);
            }
        }
    }
    b
}

/// Feeds mutations of `seeds` to `check` for `CAIRN_FUZZ_SECS` seconds;
/// returns (executions, findings as `input: panic message`).
fn fuzz(
    seeds: &[Vec<u8>],
    seed: u64,
    check: impl Fn(&[u8]) + std::panic::RefUnwindSafe,
) -> (u64, Vec<String>) {
    let secs: u64 = std::env::var("CAIRN_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let mut rng = Rng(seed);
    let mut findings = Vec::new();
    let mut execs = 0;
    let mut inputs: Vec<Vec<u8>> = seeds.to_vec();
    while std::time::Instant::now() < deadline {
        let input = if execs < seeds.len() as u64 {
            seeds[execs as usize].clone()
        } else {
            mutate(&mut rng, &inputs)
        };
        execs += 1;
        if let Err(e) = std::panic::catch_unwind(|| check(&input)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            if findings.len() < 5 {
                findings.push(format!("{:?}: {msg}", String::from_utf8_lossy(&input)));
            }
        } else if execs % 64 == 0 && inputs.len() < 256 {
            inputs.push(input);
        }
    }
    (execs, findings)
}

/// Every `runbook.toml` under the shipped runbooks, examples and this corpus.
fn manifest_seeds() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<Vec<u8>>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.file_name().is_some_and(|n| n == "runbook.toml") {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for d in [
        "runbooks",
        "examples",
        "tests/bad_input",
        "tests/fixtures/runbooks",
    ] {
        walk(&root.join(d), &mut out);
    }
    out
}

#[test]
fn fuzzed_manifests_vars_and_inventories_fail_cleanly() {
    use cairn::manifest::{resolve, Inputs, Manifest};
    let seeds = manifest_seeds();
    assert!(seeds.len() > 10);

    // manifests: parse, then resolve the defaults; errors name the file
    let (n1, f1) = fuzz(&seeds, 0x5eed_0001, |data| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        match Manifest::parse("fz/runbook.toml", text) {
            Ok(m) => {
                let _ =
                    resolve(&m, &Inputs::default(), &BTreeMap::new()).map_err(|e| e.to_string());
            }
            Err(e) => assert!(e.to_string().contains("fz/runbook.toml"), "{e}"),
        }
    });

    // vars files against every shipped manifest's parameters
    let manifests: Vec<Manifest> = seeds
        .iter()
        .filter_map(|s| Manifest::parse("m", std::str::from_utf8(s).ok()?).ok())
        .collect();
    let vars_seeds: Vec<Vec<u8>> = vec![
        b"nodes = [\"a\", \"b\", \"c\"]\ncluster = \"c\"\nca_days = 10\n".to_vec(),
        b"subnet = \"10.0.0.0/24\"\nip_range = \"10.0.0.0/16\"\n".to_vec(),
        b"count = 3\nflag = true\nm = { a = \"b\" }\n".to_vec(),
    ];
    let (n2, f2) = fuzz(&vars_seeds, 0x5eed_0002, |data| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let table = match toml::from_str::<toml::Table>(text) {
            Ok(t) => t,
            Err(e) => {
                let _ = cairn::manifest::toml_message(text, &e);
                return;
            }
        };
        for m in &manifests {
            let inputs = Inputs {
                files: vec![("vars.toml".into(), table.clone())],
                ..Default::default()
            };
            if let Err(e) = resolve(m, &inputs, &BTreeMap::new()) {
                let _ = e.to_string();
            }
        }
    });

    // inventories (read from a file, as the CLI does)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hosts.toml");
    let inv_seeds: Vec<Vec<u8>> = vec![
        b"[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\nuser = \"root\"\nport = 22\nkey = \"k\"\ngroups = [\"g\"]\n[hosts.labels]\nx = \"y\"\n".to_vec(),
        std::fs::read(corpus().join("inventory-duplicate-name/ws/hosts.toml")).unwrap(),
    ];
    let (n3, f3) = fuzz(&inv_seeds, 0x5eed_0003, |data| {
        std::fs::write(&path, data).unwrap();
        if let Err(e) = cairn::launch::read_inventory(&path) {
            assert!(e.to_string().contains("hosts.toml"), "{e}");
        }
    });
    eprintln!(
        "fuzz: manifests {n1} runs, vars {n2} runs ({} manifests), inventories {n3} runs",
        manifests.len()
    );
    let findings: Vec<String> = [f1, f2, f3].concat();
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// One invalid argument per primitive family: `plan --offline` refuses it
/// exactly as a connected plan does (same exit code, same message naming the
/// argument and the runbook position). The connected plan's hosts and cloud
/// are unreachable (TEST-NET addresses, no token): validation comes before any
/// connection, so a primitive that looked at facts first would fail
/// differently here and the comparison would fail.
#[test]
fn offline_plan_refuses_exactly_what_a_connected_plan_refuses() {
    let host = "let h = host(#{ name: \"n1\", address: \"192.0.2.1\" });\n";
    let ca = "let ca = gen_ca(#{ name: \"ca\", cn: \"ca\", days: 3650 });";
    let cases: &[(&str, String, &str, &str)] = &[
        (
            "remote",
            format!("{host}systemctl(h, #{{ unit: \"etcd;reboot\", state: \"started\" }});\n"),
            "unit",
            "rb/main.rhai:2:1",
        ),
        (
            "etcd",
            "etcd_health(#{ endpoints: [], ca: \"pki/ca.crt\" });\n".into(),
            "endpoints",
            "rb/main.rhai:1:1",
        ),
        (
            "pki",
            "let ca = gen_ca(#{ name: \"ca\", cn: \"ca\", days: 3650 });\n\
             gen_cert(#{ name: \"n1\", ca: ca, cn: \"n1\", ips: [\"10.0.0.300\"], usage: [\"server\"], days: 100 });\n"
                .into(),
            "ips",
            "rb/main.rhai:2:1",
        ),
        (
            "pki ca name",
            "gen_cert(#{ name: \"n1\", ca: \"../ca\", cn: \"n1\", usage: [\"server\"], days: 100 });\n"
                .into(),
            "ca",
            "rb/main.rhai:1:1",
        ),
        (
            "pki csr",
            format!("{ca}\nsign_csr(#{{ name: \"n1\", ca: ca, csr: \"not a PEM\", usage: [\"server\"], days: 100 }});\n"),
            "csr",
            "rb/main.rhai:2:1",
        ),
        (
            "pki csr and key",
            format!("{ca}\nsign_csr(#{{ name: \"n1\", ca: \"ca\", csr: \"a\", public_key: \"b\", usage: [\"server\"], days: 100 }});\n"),
            "public_key",
            "rb/main.rhai:2:1",
        ),
        (
            "local",
            "local_file(#{ path: \"../escaped\", content: \"x\" });\n".into(),
            "path",
            "rb/main.rhai:1:1",
        ),
        (
            "render",
            "local_file(#{ path: \"a\", content: render(\"../secret.j2\", #{}) });\n".into(),
            "template",
            "rb/main.rhai:1:35",
        ),
        (
            "owner",
            format!("{host}{ca}\nclaim_hosts(#{{ hosts: [h], cluster: \"\", ca: ca }});\n"),
            "cluster",
            "rb/main.rhai:3:1",
        ),
        (
            "cloud",
            "hcloud_network(#{ name: \"n\", ip_range: \"10.0.0.0/33\" });\n".into(),
            "ip_range",
            "rb/main.rhai:1:1",
        ),
    ];
    let mut failures = Vec::new();
    for (family, source, arg, at) in cases {
        let ws = tempfile::tempdir().unwrap();
        let rb = ws.path().join("rb");
        std::fs::create_dir(&rb).unwrap();
        std::fs::write(
            rb.join("runbook.toml"),
            "name = \"bad\"\nversion = \"1.0.0\"\ndescription = \"a bad input\"\n",
        )
        .unwrap();
        std::fs::write(rb.join("main.rhai"), source).unwrap();
        let offline = cairn(ws.path(), &["plan", "rb", "--offline"]);
        let connected = cairn(ws.path(), &["plan", "rb"]);
        let (off_err, con_err) = (
            String::from_utf8_lossy(&offline.stderr).into_owned(),
            String::from_utf8_lossy(&connected.stderr).into_owned(),
        );
        let names = |e: &str| e.contains(&format!("invalid `{arg}`")) && e.contains(at);
        if offline.status.code() != connected.status.code()
            || offline.status.success()
            || off_err != con_err
            || !names(&off_err)
        {
            failures.push(format!(
                "{family}: offline {:?} vs connected {:?}, expected `{arg}` at {at}\n\
                 --- offline:\n{off_err}--- connected:\n{con_err}",
                offline.status.code(),
                connected.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
