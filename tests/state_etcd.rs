//! Team state in etcd (`--state`) on a lab's state etcd (`cairn lab up
//! --state-etcd`): two runners with different workspaces and one state; the
//! lock, its lapse after a SIGKILL, a resume from the other workspace, the
//! journal's compare-and-swap, `cairn state unlock`, and no secret in plain
//! text anywhere under the prefix.

mod common;

use cairn::state::lock::{self, LockInfo};
use cairn::state::sync::Session;
use cairn::state::{Shared, StateOptions};
use common::{lab, text};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The lock's lease TTL the runs use here (seconds).
const TTL: u64 = 4;
/// The secret parameter's value: must never reach etcd in plain text.
const TOKEN: &str = "tok-3f9a1c77e2b94d05-secret";
/// The team key (as `cairn state keygen` makes one).
static TEAM_KEY: OnceLock<String> = OnceLock::new();

struct StateLab {
    name: String,
    env: BTreeMap<String, String>,
}

/// One lab (a node) with a state etcd, for the whole binary.
fn state_lab() -> &'static StateLab {
    static LAB: OnceLock<StateLab> = OnceLock::new();
    LAB.get_or_init(|| {
        lab::sweep_stale_labs();
        let name = lab::unique_name("state");
        lab::own(&name);
        let out = lab::cairn_lab(&["up", "--nodes", "1", "--name", &name, "--state-etcd"]);
        let shown = text(&out);
        let env = lab::read_env(
            &PathBuf::from("/var/lib/cairn/labs")
                .join(&name)
                .join("state-etcd/state.env"),
        );
        for (k, v) in &env {
            assert!(
                shown.contains(&format!("export {k}={v}")),
                "lab up prints {k}:\n{shown}"
            );
        }
        StateLab { name, env }
    })
}

fn team_key() -> &'static str {
    TEAM_KEY.get_or_init(|| {
        let out = common::Cairn::detached().args(["state", "keygen"]).output();
        assert!(out.status.success(), "keygen: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// `cairn ARGS` in `dir` on the team state at `prefix`.
fn cairn_cmd(dir: &Path, prefix: &str, args: &[&str]) -> Command {
    let l = state_lab();
    let mut cmd = common::Cairn::detached().command();
    cmd.current_dir(dir)
        .args(args)
        .env("CAIRN_SSH_PERSIST", "0")
        .env("CAIRN_STATE_LOCK_TTL", TTL.to_string())
        .env("CAIRN_STATE_KEY", team_key())
        .stdin(Stdio::null());
    for (k, v) in &l.env {
        let v = if k == "CAIRN_STATE" {
            v.replace("/cairn", &format!("/{prefix}"))
        } else {
            v.clone()
        };
        cmd.env(k, v);
    }
    cmd
}

fn options(prefix: &str) -> StateOptions {
    let e = &state_lab().env;
    StateOptions {
        url: e["CAIRN_STATE"].replace("/cairn", &format!("/{prefix}")),
        cacert: Some(e["CAIRN_STATE_CACERT"].clone().into()),
        cert: Some(e["CAIRN_STATE_CERT"].clone().into()),
        key: Some(e["CAIRN_STATE_KEY_FILE"].clone().into()),
        lock_ttl: TTL,
    }
}

fn shared(prefix: &str, dir: &Path) -> Arc<Shared> {
    Arc::new(Shared::connect(&options(prefix), dir).expect("state options"))
}

const MANIFEST: &str = r#"
name = "team-steps"
version = "1.0.0"
description = "a CA, a secret file and a few files"

[params.token]
type = "secret"
help = "a secret"
"#;

const SCRIPT: &str = r#"
let ca = gen_ca(#{ name: "team-ca", cn: "team CA", key: "p256", days: 90 });
local_file(#{ path: "token.txt", content: render_str("token={{ t }}\n", #{ t: params.token }) });
for i in 0..6 {
    local_file(#{ path: `f/${i}.txt`, content: `file ${i}` });
}
"#;

fn runbook(dir: &Path) -> PathBuf {
    let rb = dir.join("rb");
    std::fs::create_dir_all(&rb).unwrap();
    std::fs::write(rb.join("runbook.toml"), MANIFEST).unwrap();
    std::fs::write(rb.join("main.rhai"), SCRIPT).unwrap();
    rb
}

/// A temporary folder only we can enter (workspaces must be 0700).
fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    t
}

/// Poll `f` until it gives a value, at most `secs` seconds.
fn poll<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s: {what}"
        );
        // a poll bounded by `deadline`: etcd's lease lapse and the runner's
        // progress have no event to wait on from here
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_runners_one_lock_a_lapse_after_sigkill_and_a_resume_elsewhere() {
    if lab::skip() {
        return;
    }
    let prefix = "team-a";
    let tmp = private_tempdir();
    runbook(tmp.path());
    let (ws_a, ws_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let s = shared(prefix, tmp.path());
    let lock_key = s.url.key("lock");

    // Runner A holds between steps 3 and 4, then dies inside step 5.
    let fifo = tmp.path().join("hold");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut a = cairn_cmd(
        tmp.path(),
        prefix,
        &["run", "rb", "--var", &format!("token={TOKEN}")],
    );
    a.env("CAIRN_STATE_DIR", &ws_a)
        .env("CAIRN_FAULT_WAIT", format!("3:{}", fifo.display()))
        .env("CAIRN_FAULT_KILL", "applied:5")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let a = a.spawn().unwrap();
    let a_pid = a.id();
    let holder = poll(30, "runner A takes the team lock", || {
        lock::current(&s.kv, &lock_key)
            .unwrap()
            .and_then(|c| c.info)
    });
    assert_eq!(holder.pid, a_pid);
    assert_eq!(holder.runbook, "team-steps");

    // Runner B, another workspace, same state: refused, naming A.
    let b = cairn_cmd(
        tmp.path(),
        prefix,
        &["run", "rb", "--var", &format!("token={TOKEN}")],
    )
    .env("CAIRN_STATE_DIR", &ws_b)
    .output()
    .unwrap();
    let b_text = text(&b);
    assert_eq!(b.status.code(), Some(1), "{b_text}");
    for part in [
        format!("is locked: lock {} held by", holder.id),
        format!("@{} pid {a_pid} ", holder.host),
        "of runbook team-steps".to_string(),
        format!("run {}", holder.run_id),
        "its lease lapses in".to_string(),
    ] {
        assert!(b_text.contains(&part), "B names A ({part}):\n{b_text}");
    }
    assert!(
        !shared(prefix, &ws_b).cache.runs_dir().exists(),
        "B wrote no run"
    );

    // Let A go on; it kills itself inside step 5.
    std::fs::write(&fifo, b"x").unwrap();
    let out = a.wait_with_output().unwrap();
    let killed_at = Instant::now();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "A: {}", text(&out));
    let run_id = holder.run_id.clone();

    // The lock lapses within its TTL (no one revoked it: A was killed).
    assert!(
        lock::current(&s.kv, &lock_key).unwrap().is_some(),
        "A's lock outlives A for a while"
    );
    poll(TTL + 5, "A's lock lapses", || {
        lock::current(&s.kv, &lock_key)
            .unwrap()
            .is_none()
            .then_some(())
    });
    let lapse = killed_at.elapsed();
    eprintln!(
        "lock lapsed {:.2} s after the SIGKILL (TTL {TTL} s)",
        lapse.as_secs_f64()
    );
    assert!(
        lapse <= Duration::from_millis(TTL * 1000 + 1500),
        "lapse took {lapse:?}"
    );

    // B sees the run and resumes it from its own workspace.
    let runs = cairn_cmd(tmp.path(), prefix, &["runs"])
        .env("CAIRN_STATE_DIR", &ws_b)
        .output()
        .unwrap();
    assert!(
        text(&runs).contains(&run_id) && text(&runs).contains("unfinished"),
        "{}",
        text(&runs)
    );
    let resumed = cairn_cmd(
        tmp.path(),
        prefix,
        &["resume", "--var", &format!("token={TOKEN}")],
    )
    .env("CAIRN_STATE_DIR", &ws_b)
    .output()
    .unwrap();
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert!(
        text(&resumed).contains(&format!("Resuming run {run_id}")),
        "{}",
        text(&resumed)
    );
    assert!(
        lock::current(&s.kv, &lock_key).unwrap().is_none(),
        "the resume released the lock"
    );

    // The audit log is the team's: read from A's workspace, it has B's
    // refused run and B's resume.
    let log = cairn_cmd(tmp.path(), prefix, &["state", "log", "--json"])
        .env("CAIRN_STATE_DIR", &ws_a)
        .output()
        .unwrap();
    assert!(log.status.success(), "{}", text(&log));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&log.stdout).unwrap();
    let has = |command: &str, result: &str| {
        entries
            .iter()
            .any(|e| e["command"] == command && e["result"] == result && e["pid"] != a_pid)
    };
    assert!(
        has("run", "refused"),
        "B's refused run is logged: {entries:?}"
    );
    assert!(has("resume", "ok"), "B's resume is logged: {entries:?}");

    // The journal in etcd: records 0..N once each, and no step done twice.
    let jprefix = s.url.key(&format!("runs/{run_id}/journal/"));
    let records = s.kv.list(&jprefix).unwrap();
    let seqs: Vec<String> = records
        .iter()
        .map(|e| e.key[jprefix.len()..].to_string())
        .collect();
    let want: Vec<String> = (0..records.len()).map(|i| format!("{i:08}")).collect();
    assert_eq!(seqs, want, "one key per record, none missing");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.jsonl");
    std::fs::write(
        &path,
        records
            .iter()
            .flat_map(|e| e.value.clone())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let j = cairn::journal::Journal::read(&path).unwrap();
    assert_eq!(j.status(), Some(cairn::journal::RunStatus::Succeeded));
    let counts = j.done_counts();
    assert_eq!(counts.len(), 8, "{counts:?}");
    assert!(
        counts.values().all(|n| *n == 1),
        "a step done twice: {counts:?}"
    );

    // No private key and no secret value in plain text anywhere under the prefix.
    let all = s.kv.list(&format!("{prefix}/")).unwrap();
    let pki: Vec<_> = all.iter().filter(|e| e.key.contains("/pki/")).collect();
    assert!(
        pki.iter().any(|e| e.key.ends_with("team-ca.key")),
        "the CA key is stored: {:?}",
        all.iter().map(|e| &e.key).collect::<Vec<_>>()
    );
    assert!(
        all.iter().any(|e| e.key.ends_with("/files/token.txt")),
        "the secret file is stored"
    );
    for e in &all {
        let v = String::from_utf8_lossy(&e.value);
        assert!(
            !v.contains("PRIVATE KEY"),
            "{} holds a private key in plain text",
            e.key
        );
        assert!(
            !v.contains(TOKEN),
            "{} holds the secret in plain text",
            e.key
        );
    }
    // ... and the run's own files came back opened in B's cache.
    let b_shared = shared(prefix, &ws_b);
    assert_eq!(
        std::fs::read_to_string(b_shared.cache.files_dir().join("token.txt")).unwrap(),
        format!("token={TOKEN}\n")
    );
    assert!(
        std::fs::read_to_string(b_shared.cache.pki_dir().join("team-ca.key"))
            .unwrap()
            .contains("PRIVATE KEY")
    );

    // Without the team key, a run that needs the sealed files refuses.
    let no_key = cairn_cmd(
        tmp.path(),
        prefix,
        &["run", "rb", "--var", &format!("token={TOKEN}")],
    )
    .env("CAIRN_STATE_DIR", &ws_a)
    .env_remove("CAIRN_STATE_KEY")
    .output()
    .unwrap();
    assert_eq!(no_key.status.code(), Some(1), "{}", text(&no_key));
    assert!(
        text(&no_key).contains("CAIRN_STATE_KEY is not set")
            && text(&no_key).contains("cairn state keygen"),
        "{}",
        text(&no_key)
    );
}

#[test]
fn a_force_unlocked_runner_cannot_record_and_unlock_checks_the_id() {
    if lab::skip() {
        return;
    }
    let prefix = "team-u";
    let tmp = private_tempdir();
    let s = shared(prefix, tmp.path());
    let info = LockInfo::me("run", "unit", "r-unlock", TTL);
    let id = info.id.clone();
    let session = Session::begin(s.clone(), info, None).unwrap();
    let mut sink = session.journal("r-unlock");
    let rec = cairn::journal::Record::Resume {
        at: "now".into(),
        forced: false,
        runbook: None,
    };
    sink.store(0, "0 first\n", &rec)
        .expect("the holder records");
    // the same record number twice: refused
    let twice = sink.store(0, "0 again\n", &rec).unwrap_err().to_string();
    assert!(
        twice.contains("record 0 of run r-unlock is already there"),
        "{twice}"
    );

    // `cairn state unlock` with another id changes nothing
    let wrong = cairn_cmd(tmp.path(), prefix, &["state", "unlock", "0000000000000000"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        text(&wrong).contains(&format!("is not the current lock: lock {id}")),
        "{}",
        text(&wrong)
    );
    let ok = cairn_cmd(tmp.path(), prefix, &["state", "unlock", &id])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    assert!(
        text(&ok).contains("two runners may now work"),
        "{}",
        text(&ok)
    );

    // the old holder's next record is refused by the compare-and-swap
    let refused = sink.store(1, "1 second\n", &rec).unwrap_err().to_string();
    // (the keepalive may have noticed the revoked lease first: refused either way)
    assert!(
        refused.contains("refused by the team state") || refused.contains("lost the team lock"),
        "{refused}"
    );
    assert!(s
        .kv
        .get(&s.url.key("runs/r-unlock/journal/00000001"))
        .unwrap()
        .is_none());
    assert_eq!(
        s.kv.get(&s.url.key("runs/r-unlock/journal/00000000"))
            .unwrap()
            .unwrap()
            .value,
        b"0 first\n"
    );
    drop(session);
    let _ = &state_lab().name;
}

/// A saved plan is checked against the team state as the run will use it:
/// pulled after the lock is taken. A plan saved in workspace A, then a run of
/// the same runbook from workspace B (the CA and files now exist in the
/// team state), then `run --plan` in A: A's cache still says "create", the
/// team state says otherwise, so the saved plan is refused before anything
/// runs.
#[test]
fn a_saved_plan_is_checked_against_the_team_state_not_a_stale_cache() {
    if lab::skip() {
        return;
    }
    let prefix = "team-p";
    let tmp = private_tempdir();
    runbook(tmp.path());
    let (ws_a, ws_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let token = format!("token={TOKEN}");
    let run = |ws: &Path, args: &[&str]| {
        let out = cairn_cmd(tmp.path(), prefix, args)
            .env("CAIRN_STATE_DIR", ws)
            .output()
            .unwrap();
        (out.status.code(), text(&out))
    };
    let plan_file = tmp.path().join("plan.json");
    let plan_path = plan_file.to_str().unwrap();
    let (code, out) = run(&ws_a, &["plan", "rb", "--var", &token, "-o", plan_path]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("create CA certificate team-ca"), "{out}");

    let (code, out) = run(&ws_b, &["run", "rb", "--var", &token]);
    assert_eq!(code, Some(0), "{out}");

    let (code, out) = run(&ws_a, &["run", "rb", "--var", &token, "--plan", plan_path]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("refusing to apply the saved plan"),
        "not refused:\n{out}"
    );
    // refused before anything ran: the team state has B's run only
    let (code, runs) = run(&ws_a, &["runs"]);
    assert_eq!(code, Some(0), "{runs}");
    assert_eq!(runs.matches("team-steps").count(), 1, "{runs}");
}

/// A plan with `--state` while a run holds the team lock: the run is held
/// between its steps 3 and 4 (`CAIRN_FAULT_WAIT`); a plan from another
/// workspace on the same state succeeds, names the holder as a refused run
/// would (user@host, pid, run id), takes no lock (the lock key is the
/// holder's, unchanged) and writes nothing under the prefix but its one
/// audit entry (every key listed before and after). The run then finishes.
#[test]
fn a_plan_beside_a_running_run_names_the_holder_and_writes_only_its_audit_entry() {
    if lab::skip() {
        return;
    }
    let prefix = "team-v";
    let tmp = private_tempdir();
    runbook(tmp.path());
    let (ws_a, ws_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let token = format!("token={TOKEN}");
    let s = shared(prefix, tmp.path());
    let lock_key = s.url.key("lock");

    let fifo = tmp.path().join("hold");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let a = cairn_cmd(tmp.path(), prefix, &["run", "rb", "--var", &token])
        .env("CAIRN_STATE_DIR", &ws_a)
        .env("CAIRN_FAULT_WAIT", format!("3:{}", fifo.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A is held once it has the pipe open for reading: until then, opening
    // its write end without blocking fails (ENXIO).
    let mut release = poll(60, "runner A waits after its step 3", || {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .ok()
    });
    let lock_of = || {
        let e = s.kv.get(&lock_key).unwrap().expect("A holds the lock");
        (e.value, e.create_revision, e.lease)
    };
    let lock_before = lock_of();
    let holder = lock::current(&s.kv, &lock_key)
        .unwrap()
        .and_then(|c| c.info)
        .expect("the lock names its holder");
    assert_eq!(holder.pid, a.id());
    let snapshot = || -> BTreeMap<String, (Vec<u8>, u64, String)> {
        s.kv.list(&format!("{prefix}/"))
            .unwrap()
            .into_iter()
            .map(|e| (e.key, (e.value, e.create_revision, e.lease)))
            .collect()
    };
    let before = snapshot();
    assert!(
        before
            .keys()
            .any(|k| k.contains(&format!("runs/{}/journal/", holder.run_id))),
        "A's journal is in the team state: {:?}",
        before.keys().collect::<Vec<_>>()
    );

    let plan = cairn_cmd(tmp.path(), prefix, &["plan", "rb", "--var", &token])
        .env("CAIRN_STATE_DIR", &ws_b)
        .output()
        .unwrap();
    let plan_text = text(&plan);
    assert!(
        matches!(plan.status.code(), Some(0) | Some(2)),
        "the plan succeeds beside the run:\n{plan_text}"
    );
    for part in [
        "a run holds the team state's lock".to_string(),
        format!(
            "lock {} held by {}@{} ",
            holder.id, holder.user, holder.host
        ),
        format!("pid {} ", holder.pid),
        format!("run {}", holder.run_id),
    ] {
        assert!(
            plan_text.contains(&part),
            "the plan names the holder ({part}):\n{plan_text}"
        );
    }

    // No lock taken: the lock key is A's, as it was.
    assert_eq!(lock_of(), lock_before, "the plan left A's lock alone");
    // Nothing written but one audit entry, for this plan.
    let after = snapshot();
    let mut added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let changed: Vec<&String> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        changed.is_empty(),
        "the plan changed or removed {changed:?}"
    );
    assert_eq!(added.len(), 1, "the plan added {added:?}");
    let key = added.pop().unwrap();
    assert!(
        key.starts_with(&s.url.key("audit/")),
        "the plan's only write is an audit entry, not {key}"
    );
    let entry: serde_json::Value = serde_json::from_slice(&after[key].0).unwrap();
    assert_eq!(entry["command"], "plan", "{entry}");

    // A goes on and finishes, its lock intact all along.
    use std::io::Write;
    release.write_all(b"x").unwrap();
    drop(release);
    let out = a.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "A: {}", text(&out));
    assert!(
        lock::current(&s.kv, &lock_key).unwrap().is_none(),
        "A released the lock"
    );
}
