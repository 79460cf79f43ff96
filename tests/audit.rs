//! The audit log through the real binary, offline (a runbook of local files):
//! every `run`, `plan` and `resume` appends one entry with who, what and how
//! it ended; `cairn state log` shows them; no parameter value is ever in it.

use cairn::audit::{AuditStore, Command as Cmd, Entry, LocalAudit, Outcome};
mod common;

use common::text;
use std::path::Path;
use std::process::Output;

const MANIFEST: &str = r#"
name = "steps"
version = "1.2.3"
description = "local files, then maybe a failure"

[params.count]
type = "int"
default = 2
help = "how many files"

[params.fail]
type = "bool"
default = false
help = "fail after the files"

[params.token]
type = "secret"
help = "a secret"
"#;

const SCRIPT: &str = r#"
for i in 0..params.count {
    local_file(#{ path: `f/${i}.txt`, content: `file ${i}` });
}
if params.fail {
    throw "failing as asked";
}
"#;

struct Ws {
    dir: tempfile::TempDir,
}

impl Ws {
    fn new() -> Ws {
        let ws = Ws {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(ws.path().join("rb")).unwrap();
        std::fs::write(ws.path().join("rb/runbook.toml"), MANIFEST).unwrap();
        std::fs::write(ws.path().join("rb/main.rhai"), SCRIPT).unwrap();
        ws
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn cairn(&self, args: &[&str]) -> Output {
        common::Cairn::new(self.path()).args(args).output()
    }
    fn entries(&self) -> Vec<Entry> {
        LocalAudit::new(&self.path().join(".cairn"))
            .entries()
            .unwrap()
    }
    fn log_text(&self) -> String {
        std::fs::read_to_string(self.path().join(".cairn/audit.log")).unwrap()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// The run id a `cairn run` printed (`Run ID: ...`).
fn run_id(o: &Output) -> String {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().find(|l| l.starts_with("Run ")).unwrap();
    line[4..].split(':').next().unwrap().to_string()
}

fn me() -> (String, String) {
    let e = Entry::now(Cmd::Run, "", Outcome::Ok, 0);
    (e.user, e.host)
}

#[test]
fn plan_run_and_resume_each_append_one_entry() {
    let ws = Ws::new();
    let secret = "s3cret-audit-value-7781";

    // A plan of a workspace that does not exist records nothing and creates nothing.
    let plan = ws.cairn(&["plan", "rb", "--var", &format!("token={secret}")]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        !ws.path().join(".cairn").exists(),
        "plan created the workspace"
    );

    // A run: ok, with its run id, no plan digest.
    let run = ws.cairn(&["run", "rb", "--var", &format!("token={secret}")]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let id1 = run_id(&run);
    let e = ws.entries();
    assert_eq!(e.len(), 1, "{e:?}");
    let (user, host) = me();
    assert_eq!(
        (
            &e[0].user,
            &e[0].host,
            e[0].command,
            e[0].runbook.as_str(),
            e[0].version.as_str(),
            e[0].run_id.as_deref(),
            e[0].plan_digest.as_deref(),
            e[0].result,
            e[0].exit_code
        ),
        (
            &user,
            &host,
            Cmd::Run,
            "steps",
            "1.2.3",
            Some(id1.as_str()),
            None,
            Outcome::Ok,
            0
        )
    );
    assert!(e[0].pid > 0 && e[0].pid != std::process::id());

    // A saved plan: its digest is the file's SHA-256; `run --plan` applies the same digest.
    let plan = ws.cairn(&[
        "plan",
        "rb",
        "--var",
        "count=3",
        "--var",
        &format!("token={secret}"),
        "-o",
        "p.json",
    ]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let digest = sha256_hex(&std::fs::read(ws.path().join("p.json")).unwrap());
    let applied = ws.cairn(&[
        "run",
        "rb",
        "--var",
        "count=3",
        "--var",
        &format!("token={secret}"),
        "--plan",
        "p.json",
    ]);
    assert_eq!(applied.status.code(), Some(0), "{}", text(&applied));
    let id2 = run_id(&applied);
    let e = ws.entries();
    assert_eq!(e.len(), 3, "{e:?}");
    assert_eq!(
        (
            e[1].command,
            e[1].plan_digest.as_deref(),
            e[1].run_id.as_deref(),
            e[1].result,
            e[1].exit_code
        ),
        (Cmd::Plan, Some(digest.as_str()), None, Outcome::Changes, 2)
    );
    assert_eq!(
        (
            e[2].command,
            e[2].plan_digest.as_deref(),
            e[2].run_id.as_deref(),
            e[2].result
        ),
        (
            Cmd::Run,
            Some(digest.as_str()),
            Some(id2.as_str()),
            Outcome::Ok
        )
    );

    // A plan with nothing to change: ok, exit 0.
    let plan = ws.cairn(&["plan", "rb", "--var", "count=3"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));

    // A failing run: failed, exit 1; its resume fails the same way.
    let failed = ws.cairn(&["run", "rb", "--var", "fail=true"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let id3 = run_id(&failed);
    let resumed = ws.cairn(&["resume"]);
    assert_eq!(resumed.status.code(), Some(1), "{}", text(&resumed));

    // A refused run (unknown parameter) and a refused resume (nothing to resume by that id).
    let refused = ws.cairn(&["run", "rb", "--var", "nope=1"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let no_run = ws.cairn(&["resume", "20990101-000000-beef"]);
    assert_eq!(no_run.status.code(), Some(1), "{}", text(&no_run));
    let no_runbook = ws.cairn(&["run", "no-such-runbook"]);
    assert_eq!(no_runbook.status.code(), Some(1), "{}", text(&no_runbook));

    let e = ws.entries();
    let got: Vec<(Cmd, Option<&str>, Outcome, i32)> = e
        .iter()
        .skip(3)
        .map(|e| (e.command, e.run_id.as_deref(), e.result, e.exit_code))
        .collect();
    assert_eq!(
        got,
        [
            (Cmd::Plan, None, Outcome::Ok, 0),
            (Cmd::Run, Some(id3.as_str()), Outcome::Failed, 1),
            (Cmd::Resume, Some(id3.as_str()), Outcome::Failed, 1),
            (Cmd::Run, None, Outcome::Refused, 1),
            (
                Cmd::Resume,
                Some("20990101-000000-beef"),
                Outcome::Refused,
                1
            ),
            (Cmd::Run, None, Outcome::Refused, 1),
        ]
    );
    assert_eq!(
        (e[6].runbook.as_str(), e[6].version.as_str()),
        ("steps", "1.2.3")
    );
    assert_eq!((e[7].runbook.as_str(), e[7].version.as_str()), ("", ""));
    assert_eq!(
        (e[8].runbook.as_str(), e[8].version.as_str()),
        ("no-such-runbook", ""),
        "a runbook that did not load: as given"
    );

    // No parameter value, secret or not, is in the log.
    let log = ws.log_text();
    assert_eq!(log.lines().count(), 9);
    assert!(!log.contains(secret), "{log}");
    assert!(!log.contains("count"), "{log}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(ws.path().join(".cairn/audit.log"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);

    // `cairn state log`: a table, oldest first; `--json`: the entries.
    let shown = ws.cairn(&["state", "log"]);
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown));
    let table = String::from_utf8(shown.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 10, "{table}");
    assert!(lines[0].starts_with("TIME "), "{table}");
    let who = format!("{user}@{host}");
    for (line, entry) in lines[1..].iter().zip(&e) {
        assert!(line.starts_with(&entry.time), "{line}");
        assert!(line.contains(&who), "{line}");
    }
    let cols = |l: &str| l.split_whitespace().skip(2).collect::<Vec<_>>().join(" ");
    assert_eq!(
        cols(lines[1]),
        format!("run steps@1.2.3 {id1} - ok (exit 0)")
    );
    assert_eq!(
        cols(lines[2]),
        format!("plan steps@1.2.3 - {} changes (exit 2)", &digest[..12])
    );
    assert_eq!(
        cols(lines[5]),
        format!("run steps@1.2.3 {id3} - failed (exit 1)")
    );
    assert_eq!(cols(lines[7]), "run steps@1.2.3 - - refused (exit 1)");
    assert_eq!(
        cols(lines[8]),
        "resume - 20990101-000000-beef - refused (exit 1)"
    );
    assert_eq!(cols(lines[9]), "run no-such-runbook - - refused (exit 1)");
    let json = ws.cairn(&["state", "log", "--json"]);
    assert_eq!(json.status.code(), Some(0));
    let parsed: Vec<Entry> = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(parsed, e);
    assert!(!String::from_utf8_lossy(&json.stdout).contains(secret));
}

#[test]
fn state_log_reports_a_damaged_line_and_an_empty_log() {
    let ws = Ws::new();
    let empty = ws.cairn(&["state", "log"]);
    assert_eq!(empty.status.code(), Some(0), "{}", text(&empty));
    assert!(
        text(&empty).starts_with("No entries in "),
        "{}",
        text(&empty)
    );
    assert!(!ws.path().join(".cairn").exists());

    let run = ws.cairn(&["run", "rb"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let log = ws.path().join(".cairn/audit.log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"garbage\n");
    std::fs::write(&log, &bytes).unwrap();
    let plan = ws.cairn(&["plan", "rb"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    let shown = ws.cairn(&["state", "log"]);
    assert_eq!(shown.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&shown.stderr),
        format!(
            "error: audit log .cairn/audit.log line 2 is damaged: expected value at line 1 column 1\n"
        )
    );
}

#[test]
fn keygen_prints_a_key_that_opens_what_it_seals() {
    let ws = Ws::new();
    let out = ws.cairn(&["state", "keygen"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let key = String::from_utf8(out.stdout).unwrap();
    let key = key.trim();
    let k = cairn::seal::TeamKey::from_base64(key).unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("fingerprint {}", k.fingerprint())),
        "{err}"
    );
    assert!(err.contains("export CAIRN_STATE_KEY="), "{err}");
    let sealed = k.seal("pki/ca.key", b"x");
    assert_eq!(k.open("pki/ca.key", &sealed).unwrap(), b"x");
    // two keys differ
    let again = ws.cairn(&["state", "keygen"]);
    assert_ne!(String::from_utf8(again.stdout).unwrap().trim(), key);
    assert!(!ws.path().join(".cairn").exists(), "keygen stores nothing");
}
