//! One writer per workspace, a journal that survives a full disk, resume with
//! secrets only, signals that interrupt like Ctrl-C, and scratch folders that
//! never outlive their process. Local runbooks (`local_file` steps): no lab.
//!
//! A run is held between two steps with `CAIRN_FAULT_WAIT=N:FIFO` (it waits
//! after its N-th done step until the test writes to the named pipe), so
//! "while a run is under way" is a state, not a race. The disk-full test
//! mounts a small tmpfs (root only, as the lab tests).

mod common;

use common::{lab, text, Cairn};

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, Output, Stdio};

/// A workspace folder with a runbook `rb` of `steps` local files, and a
/// private temp folder for cairn's scratch folders.
struct Ws {
    dir: tempfile::TempDir,
}

impl Ws {
    fn new(steps: usize) -> Ws {
        let ws = Ws {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(ws.path().join("rb")).unwrap();
        std::fs::create_dir_all(ws.tmp()).unwrap();
        ws.write(
            "rb/runbook.toml",
            "name = \"steps\"\nversion = \"1.0.0\"\ndescription = \"local files\"\n\n\
             [params.count]\ntype = \"int\"\ndefault = 2\nhelp = \"a number\"\n\n\
             [params.token]\ntype = \"secret\"\nhelp = \"a secret\"\n",
        );
        ws.write(
            "rb/main.rhai",
            &format!(
                "for i in 0..{steps} {{ local_file(#{{ path: `f/${{i}}.txt`, content: `file ${{i}} of ${{params.count}}` }}); }}\n"
            ),
        );
        ws
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn tmp(&self) -> PathBuf {
        self.path().join("tmp")
    }
    fn write(&self, rel: &str, content: &str) {
        std::fs::write(self.path().join(rel), content).unwrap();
    }
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        Cairn::new(self.path())
            .args(args)
            .env("TMPDIR", self.tmp())
            .env("CAIRN_SSH_PERSIST", "0")
            .envs(env.iter().copied())
            .command()
    }
    fn cairn(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }
    /// Start `cairn ARGS` held after its `n`-th done step.
    fn held(&self, args: &[&str], n: usize, env: &[(&str, &str)]) -> Held {
        let fifo = self
            .path()
            .join(format!("hold-{}", rand_suffix(args.len() + n)));
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Held open for reading and writing (which never blocks) until cairn
        // ends: cairn's open never blocks, its read waits for our byte, and
        // a byte written before cairn opens the pipe stays in it.
        let gate = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&fifo)
            .unwrap();
        let wait = format!("{n}:{}", fifo.display());
        let mut env = env.to_vec();
        env.push(("CAIRN_FAULT_WAIT", &wait));
        let mut child = self
            .command(args, &env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Held {
            stdout: BufReader::new(child.stdout.take().unwrap()),
            stderr: BufReader::new(child.stderr.take().unwrap()),
            child,
            gate,
            seen: String::new(),
        }
    }
    fn runs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.path().join(".cairn/runs"))
            .map(|d| d.map(|e| e.unwrap().path().join("journal.jsonl")).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
    fn scratch_folders(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("cairn-plan-"))
            .collect()
    }
}

fn rand_suffix(n: usize) -> String {
    format!(
        "{}-{n}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// A cairn process held between steps.
struct Held {
    child: Child,
    stdout: BufReader<ChildStdout>,
    stderr: BufReader<ChildStderr>,
    gate: std::fs::File,
    seen: String,
}

impl Held {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn read_until(reader: &mut impl BufRead, seen: &mut String, want: &str) -> String {
        loop {
            let mut line = String::new();
            let n = reader.read_line(&mut line).unwrap();
            seen.push_str(&line);
            assert!(n > 0, "output ended before a line with {want:?}:\n{seen}");
            if line.contains(want) {
                return line;
            }
        }
    }
    /// Read stdout until a line containing `want`; returns that line.
    fn stdout_until(&mut self, want: &str) -> String {
        Self::read_until(&mut self.stdout, &mut self.seen, want)
    }
    fn stderr_until(&mut self, want: &str) -> String {
        Self::read_until(&mut self.stderr, &mut self.seen, want)
    }
    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(self.pid() as i32, sig) }, 0);
    }
    /// Let it go on (it waits for a writer on the pipe) and wait for its end.
    fn release(mut self) -> Output {
        std::io::Write::write_all(&mut self.gate, b"go").unwrap();
        self.finish()
    }
    fn finish(self) -> Output {
        let Held {
            mut child,
            mut stdout,
            mut stderr,
            gate,
            seen,
        } = self;
        let status = child.wait().unwrap();
        drop(gate);
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut rest);
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        Output {
            status,
            stdout: format!("{seen}{rest}").into_bytes(),
            stderr: err.into_bytes(),
        }
    }
}

fn journal(path: &Path) -> cairn::journal::Journal {
    cairn::journal::Journal::read(path).unwrap_or_else(|e| panic!("{e}"))
}

fn assert_each_step_done_once(path: &Path, steps: usize) {
    let j = journal(path);
    let counts = j.done_counts();
    for (key, n) in &counts {
        assert_eq!(*n, 1, "{}: step {key} done {n} times", path.display());
    }
    assert_eq!(counts.len(), steps, "{}", path.display());
}

fn lock_pid(ws: &Ws) -> u32 {
    let text = std::fs::read_to_string(ws.path().join(".cairn/lock")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("pid="))
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn a_second_run_in_a_workspace_refuses_naming_the_first_and_plans_say_a_run_is_on() {
    let ws = Ws::new(3);
    let mut first = ws.held(&["run", "rb", "--var", "count=2"], 1, &[]);
    first.stdout_until("Run ");
    let second = ws.cairn(&["run", "rb"], &[]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        err.starts_with(&format!(
            "error: another cairn is writing to the workspace {}: pid {} (`cairn run rb --var count=...`), started 20",
            ws.path().join(".cairn").display(),
            first.pid()
        )),
        "{err}"
    );
    assert!(
        err.contains("wait for it to end (or stop it), then try again"),
        "{err}"
    );
    // a plan runs beside it, and says so
    let plan = ws.cairn(&["plan", "rb"], &[]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    let note = String::from_utf8_lossy(&plan.stderr);
    assert!(
        note.starts_with(&format!(
            "note: a run is in progress in this workspace (pid {}",
            first.pid()
        )),
        "{note}"
    );
    let out = first.release();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // the second run left no journal; the first did each step once
    let runs = ws.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_each_step_done_once(&runs[0], 3);
}

#[test]
fn two_resumes_of_one_run_never_do_a_step_twice_and_a_dead_holder_is_taken_over() {
    let ws = Ws::new(6);
    let killed = ws
        .command(&["run", "rb"], &[("CAIRN_FAULT_KILL", "done:2")])
        .spawn()
        .unwrap();
    let dead = killed.id();
    let out = killed.wait_with_output().unwrap();
    assert_eq!(out.status.code(), None, "must die: {}", text(&out));
    // the killed run's lock is left with its name in it, and taken over
    assert_eq!(lock_pid(&ws), dead);
    let mut first = ws.held(&["resume"], 1, &[]);
    first.stdout_until("Resuming run");
    assert_eq!(lock_pid(&ws), first.pid());
    let second = ws.cairn(&["resume"], &[]);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        err.contains(&format!("pid {} (`cairn resume`)", first.pid())),
        "{err}"
    );
    let out = first.release();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let runs = ws.runs();
    assert_eq!(runs.len(), 1);
    assert_each_step_done_once(&runs[0], 6);
}

#[test]
fn sigterm_and_sighup_interrupt_a_run_as_ctrl_c_does() {
    for (sig, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let ws = Ws::new(4);
        let mut run = ws.held(&["run", "rb"], 1, &[]);
        run.stdout_until("f/0.txt");
        run.signal(sig);
        run.stderr_until(&format!(
            "interrupt ({name}): stopping after the steps under way"
        ));
        let out = run.release();
        let all = text(&out);
        assert_eq!(out.status.code(), Some(130), "{name}: {all}");
        assert!(all.contains("interrupted after"), "{name}: {all}");
        let runs = ws.runs();
        let j = journal(&runs[0]);
        assert_eq!(
            j.status(),
            Some(cairn::journal::RunStatus::Interrupted),
            "{name}"
        );
        assert_eq!(
            j.done_counts().len(),
            1,
            "{name}: one step done, then stopped"
        );
        let listed = ws.cairn(&["runs"], &[]);
        assert!(text(&listed).contains("interrupted"), "{}", text(&listed));
        assert!(
            ws.scratch_folders().is_empty(),
            "{:?}",
            ws.scratch_folders()
        );
        let resumed = ws.cairn(&["resume"], &[]);
        assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
        assert_each_step_done_once(&runs[0], 4);
        // the audit log: the run interrupted (130), then the resume ok
        use cairn::audit::{AuditStore, Command as C, Outcome as O};
        let audit = cairn::audit::LocalAudit::new(&ws.path().join(".cairn"));
        let got: Vec<(C, O, i32)> = audit
            .entries()
            .unwrap()
            .iter()
            .map(|e| (e.command, e.result, e.exit_code))
            .collect();
        assert_eq!(
            got,
            [(C::Run, O::Interrupted, 130), (C::Resume, O::Ok, 0)],
            "{name}"
        );
    }
}

#[test]
fn scratch_folders_go_on_a_forced_exit_and_a_killed_process_s_on_the_next_start() {
    let ws = Ws::new(3);
    // a second SIGTERM quits at once, scratch folder removed
    let mut run = ws.held(&["run", "rb"], 1, &[]);
    run.stdout_until("f/0.txt");
    run.signal(libc::SIGTERM);
    run.stderr_until("interrupt (SIGTERM)");
    assert_eq!(ws.scratch_folders().len(), 1, "the run has one");
    run.signal(libc::SIGTERM);
    let out = run.finish();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(
        ws.scratch_folders().is_empty(),
        "{:?}",
        ws.scratch_folders()
    );
    // a killed process leaves its folder; the next cairn sweeps it
    let killed = ws.cairn(&["resume"], &[("CAIRN_FAULT_KILL", "done:1")]);
    assert_eq!(killed.status.code(), None, "must die: {}", text(&killed));
    assert_eq!(ws.scratch_folders().len(), 1, "left by the killed resume");
    let plan = ws.cairn(&["plan", "rb"], &[]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan));
    assert!(
        ws.scratch_folders().is_empty(),
        "{:?}",
        ws.scratch_folders()
    );
}

/// The values a run started with are the ones it ends with.
#[test]
fn resume_takes_only_secret_parameters() {
    let ws = Ws::new(4);
    let killed = ws.cairn(&["run", "rb"], &[("CAIRN_FAULT_KILL", "done:2")]);
    assert_eq!(killed.status.code(), None, "must die: {}", text(&killed));
    let run = ws.runs()[0].clone();
    let id = run
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    ws.write("other.toml", "count = 3\n");
    let before = std::fs::read(&run).unwrap();
    for args in [
        &["resume", "--var", "count=3"][..],
        &["resume", "--vars", "other.toml"][..],
        &["resume", &id, "--force", "--var", "count=3"][..],
    ] {
        let out = ws.cairn(args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let origin = if args.contains(&"--vars") {
            "--vars other.toml"
        } else {
            "--var"
        };
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "error: `count` ({origin}) is not a secret parameter of steps: `cairn resume` takes only \
                 secret parameters (they are never journaled); run {id} continues with the values it \
                 started with. For other values start a new run: `cairn run {} --var count=...`\n",
                ws.path().canonicalize().unwrap().join("rb").display()
            ),
            "{args:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
        assert_eq!(
            std::fs::read(&run).unwrap(),
            before,
            "{args:?}: journal changed"
        );
    }
    // no file was written with another count
    for i in 0..2 {
        assert_eq!(
            std::fs::read_to_string(ws.path().join(format!(".cairn/files/f/{i}.txt"))).unwrap(),
            format!("file {i} of 2")
        );
    }
    // a secret may be given again; the runbook changed, so --force, and the
    // journal records the version the run went on with
    ws.write(
        "rb/runbook.toml",
        &std::fs::read_to_string(ws.path().join("rb/runbook.toml"))
            .unwrap()
            .replace("1.0.0", "1.1.0"),
    );
    let out = ws.cairn(&["resume", "--force", "--var", "token=s3cret-value"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("s3cret-value"));
    let j = journal(&run);
    assert_eq!(j.runbook().version, "1.1.0");
    assert_eq!(j.header.version, "1.0.0", "the header says how it started");
    let show = ws.cairn(&["runs", "show", &id], &[]);
    assert!(
        text(&show).contains("(forced) with runbook 1.1.0"),
        "{}",
        text(&show)
    );
    assert_each_step_done_once(&run, 4);
    for i in 0..4 {
        assert_eq!(
            std::fs::read_to_string(ws.path().join(format!(".cairn/files/f/{i}.txt"))).unwrap(),
            format!("file {i} of 2")
        );
    }
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount (needs root): {}", text(&out));
        Tmpfs(at.to_path_buf())
    }
    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(out.status.success(), "remount: {}", text(&out));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_cuts_off_the_torn_record_and_resume_finishes_the_run() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    // 60 steps of about 650 bytes of journal each outgrow a 16 kB tmpfs;
    // the files themselves land outside it.
    let ws = Ws::new(60);
    std::fs::create_dir_all(ws.path().join(".cairn")).unwrap();
    std::fs::set_permissions(
        ws.path().join(".cairn"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let disk = Tmpfs::mount(&ws.path().join(".cairn/runs"), "16k");
    let out = ws.cairn(&["run", "rb"], &[]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(err.contains("No space left on device"), "{err}");
    assert!(
        err.contains("the journal ends with its last whole record")
            && err.contains("free space there, then `cairn resume"),
        "{err}"
    );
    let run = ws.runs()[0].clone();
    // the journal is whole: every line a whole record, the run not succeeded
    let j = journal(&run);
    assert_eq!(j.torn, None);
    assert_ne!(j.status(), Some(cairn::journal::RunStatus::Succeeded));
    let done_before = j.done_counts().len();
    assert!(
        done_before > 0 && done_before < 60,
        "the disk filled mid-run: {done_before}"
    );
    disk.resize("1m");
    let resumed = ws.cairn(&["resume"], &[]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_each_step_done_once(&run, 60);
    for i in 0..60 {
        let f = std::fs::read_to_string(ws.path().join(format!(".cairn/files/f/{i}.txt"))).unwrap();
        assert_eq!(f, format!("file {i} of 2"));
    }
}
