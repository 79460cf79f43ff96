//! `--limit` on a 3-node lab (real sshd and systemd): a limited run writes
//! its file only on the limited host and opens no ssh connection to the
//! others (each node's sshd log counts the logins); the journal's steps name
//! only the limited host; a fact of a host outside the limit is an error
//! naming it, with no login there; a resume with another limit, or none, is
//! refused before anything runs; the same limit finishes the run; unknown
//! names are refused.
//!
//! And the cap on ssh masters (`CAIRN_SSH_MAX_MASTERS`): a run over 5
//! inventory hosts (5 distinct connections on the 3 nodes) touching each
//! twice never has more than 2 of its ssh masters alive, counted from the
//! real `ssh -M` processes, with private masters and with shared ones, also
//! when a live master stops answering (`CAIRN_FAULT_SSH_LOST`: it must be
//! ended before its replacement counts). A cap below the run's `on()` cap
//! is refused (no lab needed).

mod common;

use common::{lab, text};
use std::path::Path;
use std::process::Output;

const MARKER: &str = "/root/cairn-limit-marker";

/// The two tests share the lab and count its logins: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `cairn ARGS` in workspace `ws` (the harness's scrubbed environment); ssh
/// masters are not shared with later runs (so no connection outlives a run).
fn cairn(ws: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    common::Cairn::new(ws)
        .args(args)
        .env("CAIRN_SSH_PERSIST", "0")
        .envs(env.iter().copied())
        .output()
}

/// Successful ssh logins on `node` so far (this one included: sshd logs it
/// before the command runs).
fn logins(l: &lab::LabHandle, node: &str) -> usize {
    l.ssh_ok(
        node,
        "journalctl --no-pager -o cat | grep -c 'Accepted publickey' || true",
    )
    .trim()
    .parse()
    .unwrap()
}

/// Which nodes have the marker file, and what it says.
fn markers(l: &lab::LabHandle) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for n in ["node-1", "node-2", "node-3"] {
        let out = l.ssh(n, &format!("cat {MARKER}"));
        if out.status.success() {
            found.push((n.to_string(), String::from_utf8_lossy(&out.stdout).into()));
        }
    }
    found
}

const SCRIPT: &str = r#"
let nodes = hosts();
on(nodes, |h| {
    file(h, #{ path: "/root/cairn-limit-marker", content: `${h.name} of ${nodes.len()}`, mode: "0644" });
});
if env("LIMIT_TEST_FAIL") == "1" { fail("stopped by LIMIT_TEST_FAIL"); }
if env("LIMIT_TEST_PEEK") == "1" { let name = fact(nodes[2], "hostname"); }
"#;

#[test]
fn a_limited_run_touches_only_its_hosts_and_resumes_only_with_its_limit() {
    if lab::skip() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let l = lab::lab();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::create_dir_all(ws.join("rb")).unwrap();
    std::fs::write(
        ws.join("rb/runbook.toml"),
        "name = \"lab-limit\"\nversion = \"1.0.0\"\ndescription = \"a marker file per host\"\n",
    )
    .unwrap();
    std::fs::write(ws.join("rb/main.rhai"), SCRIPT).unwrap();
    for n in ["node-1", "node-2", "node-3"] {
        l.ssh_ok(n, &format!("rm -f {MARKER}"));
    }
    let before = [logins(l, "node-1"), logins(l, "node-3")];

    // unknown names: refused before anything runs, listing what there is
    let out = cairn(
        ws,
        &["run", "rb", "--lab", &l.name, "--limit", "node-2,node-4"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "error: --limit names a host or group not in the inventory: node-4; its hosts: \
             node-1, node-2, node-3"
        ),
        "{}",
        text(&out)
    );

    // a run limited to node-2, stopped after its on(...)
    let run = cairn(
        ws,
        &["run", "rb", "--lab", &l.name, "--limit", "node-2"],
        &[("LIMIT_TEST_FAIL", "1")],
    );
    assert_eq!(run.status.code(), Some(1), "{}", text(&run));
    assert!(
        text(&run).contains("stopped by LIMIT_TEST_FAIL"),
        "{}",
        text(&run)
    );
    // hosts() still listed all 3; only node-2 got the file
    assert_eq!(
        markers(l),
        [("node-2".to_string(), "node-2 of 3".to_string())]
    );
    // no login on node-1 or node-3 but the counting ones (2 each)
    assert_eq!(
        [logins(l, "node-1"), logins(l, "node-3")],
        [before[0] + 2, before[1] + 2],
        "cairn logged in to a host outside the limit"
    );
    let id = std::fs::read_dir(ws.join(".cairn/runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name()
        .into_string()
        .unwrap();
    let journal =
        cairn::journal::Journal::read(&ws.join(".cairn/runs").join(&id).join("journal.jsonl"))
            .unwrap();
    assert_eq!(journal.header.limit.as_deref(), Some("node-2"));
    let targets: std::collections::BTreeSet<String> = journal
        .records
        .iter()
        .filter_map(|r| match r {
            cairn::journal::Record::Done { target, .. } => Some(target.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(targets.into_iter().collect::<Vec<_>>(), ["node-2"]);

    // resume with another limit, or none: refused, nothing written
    let records = journal.records.len();
    for extra in [
        vec![],
        vec!["--limit", "node-1"],
        vec!["--limit", "node-1,node-2"],
    ] {
        let mut args = vec!["resume", id.as_str()];
        args.extend(extra.iter().copied());
        let out = cairn(ws, &args, &[]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains(&format!(
                "error: cannot resume run {id}: it started with --limit node-2 and this resume has"
            )),
            "{}",
            text(&out)
        );
        let now =
            cairn::journal::Journal::read(&ws.join(".cairn/runs").join(&id).join("journal.jsonl"))
                .unwrap();
        assert_eq!(now.records.len(), records, "a refused resume wrote");
    }
    assert_eq!(
        markers(l),
        [("node-2".to_string(), "node-2 of 3".to_string())]
    );

    // the same limit finishes it
    let out = cairn(ws, &["resume", &id, "--limit", "node-2"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let show = cairn(ws, &["runs", "show", &id], &[]);
    assert!(
        text(&show).contains("  limit node-2 (node-2)\n"),
        "{}",
        text(&show)
    );

    // a fact of a host outside the limit: an error naming it, no login there
    let before3 = logins(l, "node-3");
    let out = cairn(
        ws,
        &["run", "rb", "--lab", &l.name, "--limit", "node-2"],
        &[("LIMIT_TEST_PEEK", "1")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("`fact` on node-3 refused: node-3 is outside --limit node-2"),
        "{}",
        text(&out)
    );
    assert_eq!(logins(l, "node-3"), before3 + 1);
    assert_eq!(
        markers(l),
        [("node-2".to_string(), "node-2 of 3".to_string())]
    );
}

/// The live ssh masters whose control socket path starts with `prefix`:
/// distinct `-S` paths of `ssh ... -M` processes (a master forking into the
/// background is briefly two processes with one socket).
fn masters(prefix: &str) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for p in procs.flatten() {
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args
            .first()
            .is_some_and(|a| a == "ssh" || a.ends_with("/ssh"))
            || !args.iter().any(|a| a == "-M")
        {
            continue;
        }
        if let Some(socket) = args
            .windows(2)
            .find(|w| w[0] == "-S" && w[1].starts_with(prefix))
        {
            found.insert(socket[1].clone());
        }
    }
    found
}

const CAP_SCRIPT: &str = r#"
for round in [1, 2] {
    on(hosts(), |h| {
        file(h, #{ path: `/root/cairn-cap-${h.name}`, content: `${h.name} round ${round}`, mode: "0644" });
    });
}
"#;

#[test]
fn at_most_the_capped_number_of_ssh_masters_live_at_once() {
    if lab::skip() {
        return;
    }
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let l = lab::lab();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::create_dir_all(ws.join("rb")).unwrap();
    std::fs::write(
        ws.join("rb/runbook.toml"),
        "name = \"lab-cap\"\nversion = \"1.0.0\"\ndescription = \"5 hosts, twice\"\n",
    )
    .unwrap();
    std::fs::write(ws.join("rb/main.rhai"), CAP_SCRIPT).unwrap();
    // 5 connections on 3 nodes: a-1..a-3 with the lab's key, b-1 and b-2
    // (node-1 and node-2 again) with a copy of it, a connection of its own.
    let key2 = ws.join("key2");
    std::fs::copy(&l.key, &key2).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key2, std::fs::Permissions::from_mode(0o600)).unwrap();
    let nodes = l.hosts();
    let mut hosts = Vec::new();
    for (i, n) in nodes.iter().take(3).enumerate() {
        let mut h = n.clone();
        h.name = format!("a-{}", i + 1);
        hosts.push(h);
    }
    for (i, n) in nodes.iter().take(2).enumerate() {
        let mut h = n.clone();
        h.name = format!("b-{}", i + 1);
        h.key = Some(key2.clone());
        hosts.push(h);
    }
    #[derive(serde::Serialize)]
    struct Inv {
        hosts: Vec<cairn::host::Host>,
    }
    let inventory = ws.join("hosts.toml");
    std::fs::write(&inventory, toml::to_string(&Inv { hosts }).unwrap()).unwrap();
    let names = ["a-1", "a-2", "a-3", "b-1", "b-2"];
    let node_of = |name: &str| format!("node-{}", &name[2..]);

    let runtime = tempfile::tempdir().unwrap();
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let shared_dir = runtime.path().join("cairn-ssh");
    // Each mode as is, and with a fault:
    // - the 3rd command finds its master unresponsive (its process still
    //   running): the pool must end it before a replacement counts;
    // - every child process cairn starts holds a copy of the lock file that
    //   says a shared master is in use (as a child does until it execs; at
    //   100 hosts on a loaded machine 9 masters were left up outside the
    //   count this way): closing a master must not take that copy for
    //   another process using it.
    for (mode, persist, fault) in [
        ("private", "0", ("CAIRN_FAULT_SSH_LOST", "")),
        ("shared", "60", ("CAIRN_FAULT_SSH_LOST", "")),
        (
            "private, a master unresponsive",
            "0",
            ("CAIRN_FAULT_SSH_LOST", "3"),
        ),
        (
            "shared, a master unresponsive",
            "60",
            ("CAIRN_FAULT_SSH_LOST", "3"),
        ),
        (
            "shared, lock copies in children",
            "60",
            ("CAIRN_FAULT_SSH_FORK_HOLD", "20"),
        ),
    ] {
        for name in names {
            l.ssh_ok(&node_of(name), &format!("rm -f /root/cairn-cap-{name}"));
        }
        let fifo = ws.join(format!("hold-{}", mode.replace([' ', ','], "-")));
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let mut child = common::Cairn::new(ws)
            .args(["run", "rb", "--inventory", inventory.to_str().unwrap()])
            .args(["--max-parallel", "2"])
            .env("CAIRN_SSH_MAX_MASTERS", "2")
            .env(fault.0, fault.1)
            .env("CAIRN_SSH_PERSIST", persist)
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env("CAIRN_FAULT_WAIT", format!("7:{}", fifo.display()))
            .command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let private = persist == "0";
        let prefix = match private {
            true => format!("/tmp/cairn-ssh-{}-", child.id()),
            false => format!("{}/", shared_dir.display()),
        };
        // Sample the masters all along the run, in a thread of its own.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (stop, prefix) = (stop.clone(), prefix.clone());
            std::thread::spawn(move || {
                let (mut peak, mut seen) = (0, std::collections::BTreeSet::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let now = masters(&prefix);
                    peak = peak.max(now.len());
                    seen.extend(now);
                    // a sampling interval, not a wait for anything
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                (peak, seen)
            })
        };
        // Held after 7 of its 10 steps: round 2 is under way.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        let mut release = loop {
            use std::os::unix::fs::OpenOptionsExt;
            if let Ok(f) = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
            {
                break f;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "{mode}: the run ended before its step 7"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "{mode}: the run never reached its step 7"
            );
            // a poll bounded by `deadline`: the run opens the pipe when held
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let held = masters(&prefix);
        assert!(
            !held.is_empty() && held.len() <= 2,
            "{mode}: {} masters while held: {held:?}",
            held.len()
        );
        use std::io::Write;
        release.write_all(b"x").unwrap();
        drop(release);
        let out = child.wait_with_output().unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let (peak, seen) = sampler.join().unwrap();
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", text(&out));
        eprintln!(
            "{mode}: peak {peak} live ssh masters, {} masters in all",
            seen.len()
        );
        assert!(
            peak <= 2,
            "{mode}: {peak} ssh masters alive at once (cap 2)"
        );
        for name in names {
            assert_eq!(
                l.ssh_ok(&node_of(name), &format!("cat /root/cairn-cap-{name}")),
                format!("{name} round 2"),
                "{mode}: {name}"
            );
        }
        let left = masters(&prefix);
        match private {
            true => assert!(left.is_empty(), "private masters outlive the run: {left:?}"),
            false => {
                assert!(left.len() <= 2, "shared masters kept: {left:?}");
                for socket in left {
                    let _ = std::process::Command::new("ssh")
                        .args(["-S", &socket, "-O", "exit", "--", "x"])
                        .output();
                }
            }
        }
    }
}

/// A cap on ssh masters below the run's `on()` cap would make the branches
/// close each other's masters between commands: refused before anything
/// runs, naming both numbers and how to fix it; so is an `on()` whose own
/// `max_parallel` runs more hosts at once than the cap. No lab: an offline
/// plan of fake hosts.
#[test]
fn a_cap_on_masters_below_the_on_cap_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path();
    std::fs::create_dir_all(ws.join("rb")).unwrap();
    std::fs::write(
        ws.join("rb/runbook.toml"),
        "name = \"cap-check\"\nversion = \"1.0.0\"\ndescription = \"a file per host\"\n",
    )
    .unwrap();
    std::fs::write(ws.join("rb/main.rhai"), SCRIPT).unwrap();
    let mut inventory = String::new();
    for i in 1..=9 {
        inventory.push_str(&format!(
            "[[hosts]]\nname = \"h{i}\"\naddress = \"10.250.0.{i}\"\n"
        ));
    }
    std::fs::write(ws.join("hosts.toml"), inventory).unwrap();
    let plan = |extra: &[&str], masters: &str| {
        let mut args = vec!["plan", "rb", "--offline", "--inventory", "hosts.toml"];
        args.extend(extra);
        cairn(ws, &args, &[("CAIRN_SSH_MAX_MASTERS", masters)])
    };
    let out = plan(&[], "8");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "CAIRN_SSH_MAX_MASTERS=8 is below the run's on() cap (--max-parallel 32, the default)"
        ) && stderr.contains("set CAIRN_SSH_MAX_MASTERS to at least 32")
            && stderr.contains("run with --max-parallel 8 or less"),
        "{stderr}"
    );
    let out = plan(&["--max-parallel", "12"], "8");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("CAIRN_SSH_MAX_MASTERS=8 is below the run's on() cap (--max-parallel 12)"),
        "{}",
        text(&out)
    );
    // equal caps: the plan runs (exit 2: it has changes)
    let out = plan(&["--max-parallel", "8"], "8");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // an on() asking for more hosts at once than the cap
    std::fs::write(
        ws.join("rb/main.rhai"),
        SCRIPT.replace("on(nodes, |h|", "on(nodes, #{ max_parallel: 9 }, |h|"),
    )
    .unwrap();
    let out = plan(&["--max-parallel", "8"], "8");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("on(#{max_parallel: 9}) would run 9 hosts at once, more than the run's cap on ssh masters (8")
            && stderr.contains("lower this max_parallel to 8 or raise CAIRN_SSH_MAX_MASTERS"),
        "{stderr}"
    );
    // the same on() within the cap
    let out = plan(&["--max-parallel", "8"], "9");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
