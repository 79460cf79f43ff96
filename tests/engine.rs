//! The engine end to end through the real binary: plan, run, rerun, kill and
//! resume, saved plans, and exact error output.

mod common;

use common::{text, Cairn};

use std::path::{Path, PathBuf};
use std::process::Output;

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    fn new() -> Self {
        Dir {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> &Path {
        self.tmp.path()
    }
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }
    fn cairn(&self, args: &[&str]) -> Output {
        self.cairn_env(args, &[])
    }
    fn cairn_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        common::cairn_env(self.path(), args, env)
    }
    fn journal(&self, id: &str) -> cairn::journal::Journal {
        cairn::journal::Journal::read(
            &self
                .path()
                .join(".cairn/runs")
                .join(id)
                .join("journal.jsonl"),
        )
        .unwrap()
    }
    fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.path().join(".cairn/runs"))
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
    /// Every file under `.cairn/files` with its content.
    fn files(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        walk(&self.path().join(".cairn/files"), &mut out);
        out.sort();
        out
    }
}

fn walk(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
}

const MANIFEST: &str = r#"
name = "steps"
version = "1.0.0"
description = "many local files"

[params.count]
type = "int"
default = 8
help = "how many files"
"#;

const SCRIPT: &str = r#"
for i in 0..params.count {
    local_file(#{ path: `f/${i}.txt`, content: `file ${i}` });
}
let hs = ["a", "b", "c"].map(|n| host(#{ name: n, address: "127.0.0.1" }));
on(hs, |h| {
    local_file(#{ path: `hosts/${h.name}`, content: h.name });
    local_file(#{ path: `hosts/${h.name}.2`, content: h.name + "2" });
});
"#;

fn steps_runbook(d: &Dir) {
    d.write("rb/runbook.toml", MANIFEST);
    d.write("rb/main.rhai", SCRIPT);
}

#[test]
fn plan_run_rerun_changes_nothing_the_second_time() {
    let d = Dir::new();
    steps_runbook(&d);
    let plan = d.cairn(&["plan", "rb"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        text(&plan).contains("Plan: 14 to create, 0 to change"),
        "{}",
        text(&plan)
    );
    assert!(
        !d.path().join(".cairn").exists(),
        "plan must not create the workspace"
    );

    let run = d.cairn(&["run", "rb"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert_eq!(d.files().len(), 14);

    let plan = d.cairn(&["plan", "rb"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        text(&plan).contains("Plan: 0 to create, 0 to change, 0 to delete, 0 to run, 14 unchanged")
    );
    let before = d.files();
    let rerun = d.cairn(&["run", "rb"]);
    assert_eq!(rerun.status.code(), Some(0));
    assert!(
        text(&rerun).contains("0 created, 0 changed"),
        "{}",
        text(&rerun)
    );
    assert_eq!(d.files(), before);
}

#[test]
fn plan_shows_diffs_of_changed_files() {
    let d = Dir::new();
    steps_runbook(&d);
    assert_eq!(
        d.cairn(&["run", "rb", "--var", "count=2"]).status.code(),
        Some(0)
    );
    std::fs::write(d.path().join(".cairn/files/f/1.txt"), "tampered").unwrap();
    let plan = d.cairn(&["plan", "rb", "--var", "count=2"]);
    assert_eq!(plan.status.code(), Some(2));
    let t = text(&plan);
    assert!(t.contains("~ change file"), "{t}");
    assert!(t.contains("-tampered"), "{t}");
    assert!(t.contains("+file 1"), "{t}");
}

#[test]
fn killed_run_resumes_without_redoing_done_steps() {
    for fault in ["done:5", "applied:5", "done:10", "applied:12"] {
        let d = Dir::new();
        steps_runbook(&d);
        let killed = d.cairn_env(&["run", "rb"], &[("CAIRN_FAULT_KILL", fault)]);
        assert_eq!(
            killed.status.code(),
            None,
            "{fault}: must die by signal: {}",
            text(&killed)
        );
        let ids = d.run_ids();
        assert_eq!(ids.len(), 1);
        let j = d.journal(&ids[0]);
        assert_eq!(j.status(), None, "a killed run has no end record");
        let done_before = j.done_steps().len();

        let runs = d.cairn(&["runs"]);
        assert!(text(&runs).contains("unfinished"), "{}", text(&runs));
        let resumed = d.cairn(&["resume"]);
        assert_eq!(
            resumed.status.code(),
            Some(0),
            "{fault}: {}",
            text(&resumed)
        );
        let t = text(&resumed);
        assert!(
            t.contains(&format!("({done_before} steps done before)")),
            "{t}"
        );
        assert_eq!(
            t.matches("replayed from the journal").count(),
            done_before,
            "{t}"
        );

        let j = d.journal(&ids[0]);
        assert_eq!(j.status(), Some(cairn::journal::RunStatus::Succeeded));
        assert_eq!(j.done_steps().len(), 14, "{fault}");
        for (key, n) in j.done_counts() {
            assert_eq!(n, 1, "{fault}: step {key} was executed {n} times");
        }
        assert_eq!(d.files().len(), 14);
        // and nothing left to resume
        let again = d.cairn(&["resume"]);
        assert_eq!(again.status.code(), Some(1));
    }
}

#[test]
fn a_changed_runbook_refuses_to_resume_without_force() {
    let d = Dir::new();
    steps_runbook(&d);
    let killed = d.cairn_env(&["run", "rb"], &[("CAIRN_FAULT_KILL", "done:3")]);
    assert_eq!(killed.status.code(), None);
    d.write(
        "rb/main.rhai",
        &format!("{SCRIPT}\nlocal_file(#{{ path: \"extra\", content: \"x\" }});\n"),
    );
    let refused = d.cairn(&["resume"]);
    assert_eq!(refused.status.code(), Some(1));
    let t = text(&refused);
    assert!(t.contains("cannot resume run"), "{t}");
    assert!(t.contains("changed since the run started"), "{t}");
    assert!(t.contains("--force"), "{t}");
    assert_eq!(d.files().len(), 3, "nothing more was done");

    let forced = d.cairn(&["resume", "--force"]);
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced));
    assert_eq!(d.files().len(), 15);
}

#[test]
fn a_corrupted_journal_is_refused() {
    let d = Dir::new();
    steps_runbook(&d);
    d.cairn_env(&["run", "rb"], &[("CAIRN_FAULT_KILL", "done:4")]);
    let id = &d.run_ids()[0];
    let path = d.path().join(".cairn/runs").join(id).join("journal.jsonl");
    // a byte changed inside a whole record (a torn last record is not
    // corruption: resume cuts it off, see tests/bad_input.rs)
    let mut bytes = std::fs::read(&path).unwrap();
    let second_line = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    bytes[second_line + 20] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let before = d.files();
    let r = d.cairn(&["resume"]);
    assert_eq!(r.status.code(), Some(1));
    let t = text(&r);
    assert!(t.contains("is corrupted at line 2"), "{t}");
    assert!(t.contains("checksum mismatch"), "{t}");
    assert_eq!(d.files(), before);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the journal is left as it was"
    );
}

#[test]
fn saved_plan_applies_as_approved_and_refuses_drift() {
    let d = Dir::new();
    steps_runbook(&d);
    let plan = d.cairn(&["plan", "rb", "--var", "count=2", "-o", "plan.json"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    // drift: someone creates one of the files meanwhile (in a workspace
    // folder of the required private mode: a plan leaves none behind)
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(d.path().join(".cairn"))
            .unwrap();
    }
    d.write(".cairn/files/f/0.txt", "someone else");
    let r = d.cairn(&["run", "rb", "--var", "count=2", "--plan", "plan.json"]);
    assert_eq!(r.status.code(), Some(1));
    let t = text(&r);
    assert!(
        t.contains("refusing to apply the saved plan plan.json"),
        "{t}"
    );
    assert!(t.contains("drifted since the plan was saved"), "{t}");
    assert!(t.contains("f/0.txt"), "{t}");
    assert_eq!(
        std::fs::read_to_string(d.path().join(".cairn/files/f/0.txt")).unwrap(),
        "someone else"
    );
    assert_eq!(d.files().len(), 1, "nothing applied");

    // other parameters than planned
    std::fs::remove_file(d.path().join(".cairn/files/f/0.txt")).unwrap();
    let r = d.cairn(&["run", "rb", "--var", "count=3", "--plan", "plan.json"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(text(&r).contains("parameter values differ"), "{}", text(&r));

    let r = d.cairn(&["run", "rb", "--var", "count=2", "--plan", "plan.json"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    assert_eq!(d.files().len(), 8);
}

#[test]
fn offline_plan_uses_placeholders_and_runs_to_the_end() {
    let d = Dir::new();
    d.write(
        "rb/runbook.toml",
        "name = \"off\"\nversion = \"0.1.0\"\ndescription = \"d\"\n",
    );
    d.write(
        "rb/main.rhai",
        r#"
let f = local_file(#{ path: "a", content: "x" });
print("path: " + f.path);
local_file(#{ path: "b", content: "made after " + f.path });
print("end");
"#,
    );
    let plan = d.cairn(&["plan", "rb", "--offline"]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let t = text(&plan);
    assert!(t.contains("end"), "{t}");
    assert!(t.contains("[planned without facts]"), "{t}");
    assert!(!d.path().join(".cairn").exists());
}

#[test]
fn json_plan_is_machine_readable() {
    let d = Dir::new();
    steps_runbook(&d);
    let plan = d.cairn(&["plan", "rb", "--json", "--var", "count=1"]);
    assert_eq!(plan.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(v["runbook"], "steps");
    assert_eq!(v["summary"]["create"], 7);
    assert_eq!(v["steps"].as_array().unwrap().len(), 7);
}

// ---- exact error output ----

fn error_case(script: &str) -> (i32, String) {
    let d = Dir::new();
    d.write("rb/runbook.toml", MANIFEST);
    d.write("rb/main.rhai", script);
    let o = d.cairn(&["run", "rb"]);
    assert!(
        !d.path().join(".cairn/files").exists(),
        "nothing may be written"
    );
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn syntax_error_shows_file_line_column_and_caret() {
    let (code, err) = error_case("let x = 1;\nlet y = (x + ;\n");
    assert_eq!(code, 1);
    assert_eq!(
        err,
        "error: syntax error: Unexpected ';'\n  --> rb/main.rhai:2:14\n  |\n2 | let y = (x + ;\n  |              ^\n"
    );
}

#[test]
fn unknown_argument_key_is_reported_at_the_call() {
    let (code, err) = error_case("let x = 1;\nlocal_file(#{ path: \"a\", contnet: \"x\" });\n");
    assert_eq!(code, 1);
    let first = err.lines().next().unwrap();
    assert_eq!(
        first,
        "error: local_file: bad arguments: unknown field `contnet`, expected one of `path`, `content`, `mode`, `area`"
    );
    assert!(err.contains("  --> rb/main.rhai:2:1\n  |\n2 | local_file(#{ path: \"a\", contnet: \"x\" });\n  | ^\n"), "{err}");
}

#[test]
fn missing_parameter_and_bad_values_are_refused_before_anything_runs() {
    let d = Dir::new();
    d.write(
        "rb/runbook.toml",
        "name = \"p\"\nversion = \"0.1.0\"\ndescription = \"d\"\n[params.token]\ntype = \"secret\"\nrequired = true\nhelp = \"API token\"\n",
    );
    d.write(
        "rb/main.rhai",
        "local_file(#{ path: \"a\", content: params.token.reveal() });\n",
    );
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: missing required parameter `token` (API token); give it with --var token=...\n"
    );
    assert!(!d.path().join(".cairn").exists());
    let o = d.cairn(&["run", "rb", "--var", "tokn=x"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: unknown parameter `tokn` (from --var); p takes: token\n"
    );
    d.write("bad.toml", "token = \n");
    let o = d.cairn(&["run", "rb", "--vars", "bad.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .starts_with("error: vars file bad.toml is not valid TOML: line 1, column 9:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn secret_parameters_never_reach_output_or_journal() {
    let d = Dir::new();
    d.write(
        "rb/runbook.toml",
        "name = \"p\"\nversion = \"0.1.0\"\ndescription = \"d\"\n[params.token]\ntype = \"secret\"\nenv = \"MY_TOKEN_FOR_TEST\"\nrequired = true\nhelp = \"API token\"\n",
    );
    d.write(
        "rb/main.rhai",
        "print(`token is ${params.token}`);\nlocal_file(#{ path: \"t\", content: \"T=\" + params.token.reveal(), mode: \"0600\" });\nprint(\"revealed \" + params.token.reveal());\n",
    );
    let secret = "sekrit-0123456789";
    let plan = d.cairn_env(&["plan", "rb"], &[("MY_TOKEN_FOR_TEST", secret)]);
    let run = d.cairn_env(&["run", "rb"], &[("MY_TOKEN_FOR_TEST", secret)]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    assert!(!text(&plan).contains(secret), "{}", text(&plan));
    assert!(!text(&run).contains(secret), "{}", text(&run));
    assert!(text(&run).contains("token is ********"));
    let id = &d.run_ids()[0];
    let journal =
        std::fs::read_to_string(d.path().join(".cairn/runs").join(id).join("journal.jsonl"))
            .unwrap();
    assert!(!journal.contains(secret));
    // the file itself holds it, with mode 0600
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(d.path().join(".cairn/files/t")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn certs_and_templates_plan_apply_then_nothing_to_do() {
    let d = Dir::new();
    let ex = example("certs");
    let plan = d.cairn(&["plan", &ex]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        text(&plan).contains("Plan: 6 to create, 0 to change"),
        "{}",
        text(&plan)
    );
    assert!(
        !d.path().join(".cairn").exists(),
        "plan wrote to the workspace"
    );

    let run = d.cairn(&["run", &ex]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let pki = d.path().join(".cairn/pki");
    use std::os::unix::fs::PermissionsExt;
    for name in [
        "example-ca",
        "node-1-server",
        "node-2-server",
        "node-3-server",
        "operator",
    ] {
        let key = std::fs::metadata(pki.join(format!("{name}.key"))).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600, "{name}.key");
        assert!(pki.join(format!("{name}.crt")).exists());
    }
    let env = std::fs::read_to_string(d.path().join(".cairn/files/etcdctl.env")).unwrap();
    assert!(
        env.contains(
            "ETCDCTL_ENDPOINTS=https://node-1:2379,https://node-2:2379,https://node-3:2379"
        ),
        "{env}"
    );
    let before: Vec<_> = std::fs::read_dir(&pki)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.clone(), std::fs::read(&p).unwrap())
        })
        .collect();

    let plan = d.cairn(&["plan", &ex]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    assert!(
        text(&plan).contains("Plan: 0 to create, 0 to change, 0 to delete, 0 to run, 6 unchanged")
    );
    let rerun = d.cairn(&["run", &ex]);
    assert_eq!(rerun.status.code(), Some(0));
    assert!(
        text(&rerun).contains("0 created, 0 changed"),
        "{}",
        text(&rerun)
    );
    for (p, bytes) in before {
        assert_eq!(
            std::fs::read(&p).unwrap(),
            bytes,
            "{} changed on rerun",
            p.display()
        );
    }

    // a different key type: every certificate is replaced, and the plan says why
    let plan = d.cairn(&["plan", &ex, "--var", "key=rsa2048"]);
    assert_eq!(plan.status.code(), Some(2));
    assert!(
        text(&plan).contains("~ change CA certificate example-ca"),
        "{}",
        text(&plan)
    );
    assert!(
        text(&plan).contains("(key is p256, wanted rsa2048)"),
        "{}",
        text(&plan)
    );
}

#[test]
fn template_with_undefined_variable_names_template_and_line() {
    let d = Dir::new();
    d.write(
        "rb/runbook.toml",
        "name = \"t\"\nversion = \"0.1.0\"\ndescription = \"d\"\n",
    );
    d.write(
        "rb/templates/conf.j2",
        "name: {{ name }}\nport: {{ prot }}\n",
    );
    d.write(
        "rb/main.rhai",
        "let text = render(\"templates/conf.j2\", #{ name: \"n1\", port: 2379 });\nlocal_file(#{ path: \"c\", content: text });\n",
    );
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "error: render: template templates/conf.j2 line 2: undefined value: `prot` is undefined",
        "{err}"
    );
    assert!(err.contains("  --> rb/main.rhai:1:12\n"), "{err}");
    assert!(!d.path().join(".cairn/files").exists());
}

#[test]
fn ctrl_c_stops_between_steps_and_resume_finishes() {
    use std::io::{BufRead, BufReader};
    let d = Dir::new();
    let mut child = Cairn::new(d.path())
        .args(["run", &example("resume"), "--var", "steps=3000"])
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // wait until 20 steps are reported done, then interrupt
    let mut seen = 0;
    for line in lines.by_ref() {
        if line.unwrap().contains("create file") {
            seen += 1;
            if seen == 20 {
                break;
            }
        }
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    for _ in lines {}
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let id = &d.run_ids()[0];
    let j = d.journal(id);
    assert_eq!(j.status(), Some(cairn::journal::RunStatus::Interrupted));
    let done = j.done_steps().len();
    assert!((20..3000).contains(&done), "{done}");
    // every started step finished: Ctrl-C stopped between steps
    let started = j
        .records
        .iter()
        .filter(|r| matches!(r, cairn::journal::Record::Start { .. }))
        .count();
    assert_eq!(started, done);
    let r = d.cairn(&["resume"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    let j = d.journal(id);
    assert_eq!(j.done_steps().len(), 3000);
    assert!(j.done_counts().values().all(|n| *n == 1));
}

#[test]
fn new_scaffold_checks_shows_and_plans() {
    let d = Dir::new();
    let o = d.cairn(&["new", "my-book"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = d.cairn(&["check", "my-book"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).starts_with("my-book 0.1.0: manifest ok,"),
        "{}",
        text(&o)
    );
    let o = d.cairn(&["show", "my-book"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("  greeting (string; default \"hello from cairn\")"),
        "{}",
        text(&o)
    );
    // an empty inventory is a mistake, named at the selection (not a run
    // that does nothing and succeeds)
    d.write("hosts.toml", "hosts = []\n");
    let o = d.cairn(&["plan", "my-book", "--inventory", "hosts.toml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).starts_with("error: hosts() selects no host: the inventory has no hosts"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("--> my-book/main.rhai:2:4"),
        "{}",
        text(&o)
    );
    // a second `new` with the same name refuses
    let o = d.cairn(&["new", "my-book"]);
    assert_eq!(o.status.code(), Some(1));
    // check reports a syntax error with its position
    d.write("my-book/main.rhai", "on(hosts(), |h| {\n");
    let o = d.cairn(&["check", "my-book"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("--> my-book/main.rhai:2:1"),
        "{}",
        text(&o)
    );
}

#[test]
fn bad_inventory_is_refused_with_its_position() {
    let d = Dir::new();
    steps_runbook(&d);
    d.write(
        "hosts.toml",
        "[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\n[[hosts]]\nname = \"a\"\naddress = \"10.0.0.2\"\n",
    );
    let o = d.cairn(&["plan", "rb", "--inventory", "hosts.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: inventory hosts.toml: host name `a` appears twice\n"
    );
    d.write(
        "hosts.toml",
        "[[hosts]]\nname = \"a\"\nadress = \"10.0.0.1\"\n",
    );
    let o = d.cairn(&["plan", "rb", "--inventory", "hosts.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: inventory hosts.toml: line 3, column 1: unknown field `adress`"),
        "{err}"
    );
}

#[test]
fn a_host_reads_as_its_inventory_entry_and_its_getters_are_read_only() {
    let d = Dir::new();
    d.write("rb/runbook.toml", MANIFEST);
    d.write(
        "hosts.toml",
        "[[hosts]]\nname = \"a\"\naddress = \"10.0.0.1\"\nprivate_address = \"10.1.0.1\"\n\
         fqdn = \"a.example.org\"\nuser = \"ops\"\nport = 2222\ngroups = [\"etcd\"]\n\
         labels = { zone = \"x\" }\n\
         [[hosts]]\nname = \"b\"\naddress = \"10.0.0.2\"\n",
    );
    d.write(
        "rb/main.rhai",
        "let a = hosts()[0];\nlet b = hosts()[1];\n\
         fail(`${a}|${a.name}|${a.address}|${a.private_address}|${a.internal_address}|${a.fqdn}|\
         ${a.user}|${a.port}|${type_of(a.port)}|${a.labels.zone}|${a.groups}|${a.to_debug()}|\
         ${type_of(b.private_address)}|${b.internal_address}|${b.fqdn}|${b.port}|${b.groups.len()}`);\n",
    );
    let o = d.cairn(&["plan", "rb", "--inventory", "hosts.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(
            "error: a|a|10.0.0.1|10.1.0.1|10.1.0.1|a.example.org|ops|2222|i64|x|[\"etcd\"]|\
             Host(a ops@10.0.0.1:2222)|()|10.0.0.2|b|22|0\n"
        ),
        "{err}"
    );
    d.write(
        "rb/main.rhai",
        "let a = hosts()[0];\na.address = \"10.9.9.9\";\n",
    );
    let o = d.cairn(&["plan", "rb", "--inventory", "hosts.toml"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("address"), "{err}");
    assert!(err.contains("main.rhai:2:"), "{err}");
}
