//! `on(hosts, #{ serial, max_parallel, gate, order }, |h| ...)` through the real
//! binary, on hosts that only take local steps (no lab needed): batches one
//! after the other with the gate between them, the cap on hosts at once (the
//! option, `--max-parallel`, `CAIRN_MAX_PARALLEL`), a failed gate or host
//! stopping later batches untouched, percentages, the order option, every bad
//! option refused at the call, plans of batched calls, and resume.
//!
//! What ran when is read from the run's journal: records are appended in the
//! order steps start and finish, each keyed under its host's scope (`c/...`).

mod common;

use common::{text, Cairn};

use std::path::{Path, PathBuf};
use std::process::Output;

struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    /// A workspace with runbook `rb` running `script`, its [`BRANCH`] loops
    /// of length 0.
    fn new(script: &str) -> Self {
        Self::spinning(script, 0)
    }
    /// The same with branch loops of length `spin`, to keep branches busy.
    fn spinning(script: &str, spin: u64) -> Self {
        let d = Dir {
            tmp: tempfile::tempdir().unwrap(),
        };
        d.write(
            "rb/runbook.toml",
            "name = \"rb\"\nversion = \"0.1.0\"\ndescription = \"batches\"\n",
        );
        d.write("rb/main.rhai", &script.replace("SPIN", &spin.to_string()));
        d
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
    /// The only run's journal.
    fn journal(&self) -> cairn::journal::Journal {
        let ids = self.run_ids();
        assert_eq!(ids.len(), 1, "{ids:?}");
        cairn::journal::Journal::read(
            &self
                .path()
                .join(".cairn/runs")
                .join(&ids[0])
                .join("journal.jsonl"),
        )
        .unwrap()
    }
    /// The workspace file `rel` (under `.cairn/files`), if it exists.
    fn file(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path().join(".cairn/files").join(rel)).ok()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The host scope of a step key (`c/main.rhai:4:5#0` -> `c`), or `""` for a
/// top-level step (the gate's, the order closure's).
fn scope_of(key: &str) -> &str {
    match key.split_once('/') {
        Some((scope, _)) if !scope.contains(':') => scope,
        _ => "",
    }
}

/// Every step event in journal order: (`start`/`done`/`fail`, scope, key).
fn events(j: &cairn::journal::Journal) -> Vec<(&'static str, String, String)> {
    use cairn::journal::Record;
    j.records
        .iter()
        .filter_map(|r| match r {
            Record::Start { key, .. } => Some(("start", key)),
            Record::Done { key, .. } => Some(("done", key)),
            Record::Fail { key, .. } => Some(("fail", key)),
            _ => None,
        })
        .map(|(what, key)| (what, scope_of(key).to_string(), key.clone()))
        .collect()
}

/// The hosts in the order their branches first started a step.
fn start_order(j: &cairn::journal::Journal) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (what, scope, _) in events(j) {
        if what == "start" && !scope.is_empty() && !out.contains(&scope) {
            out.push(scope);
        }
    }
    out
}

/// How many host branches were under way at once at most: a branch is under
/// way from its first step's start to its last step's end, in journal order.
fn max_at_once(j: &cairn::journal::Journal) -> usize {
    let ev = events(j);
    let mut spans: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (i, (_, scope, _)) in ev.iter().enumerate() {
        if scope.is_empty() {
            continue;
        }
        let span = spans.entry(scope.clone()).or_insert((i, i));
        span.1 = i;
    }
    (0..ev.len())
        .map(|i| spans.values().filter(|(a, b)| *a <= i && i <= *b).count())
        .max()
        .unwrap_or(0)
}

/// A branch: a file when it starts, a busy loop, a file when it ends; it
/// returns the host's name. The loop's length is `SPIN`, replaced by a
/// number when the runbook is written: a closure that reads a captured
/// variable (`params`) from many threads at once can fail with Rhai's "Data
/// race detected", and this loop would read it all the time.
const BRANCH: &str = r#"|h| {
    local_file(#{ path: `start/${h.name}`, content: h.name });
    let i = 0; while i < SPIN { i += 1; }
    local_file(#{ path: `end/${h.name}`, content: h.name });
    h.name
}"#;

/// A script over hosts `names` with `on(hs, OPTIONS, BRANCH)` whose results
/// are printed as `results: [...]`.
fn script(names: &[&str], options: &str) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!(
        "let hs = [{}].map(|n| host(#{{ name: n, address: \"127.0.0.1\" }}));\n\
         let r = on(hs, {options}, {BRANCH});\n\
         print(`results: ${{r}}`);\n",
        list.join(", ")
    )
}

#[test]
fn batches_run_one_after_another_with_the_gate_between() {
    // the gate records each batch it is given, in a file named by its call number
    let options = r#"#{ serial: 2, gate: |batch| {
        let names = batch.map(|h| h.name);
        local_file(#{ path: `gate/${names[0]}`, content: `${names}` });
        true
    } }"#;
    let d = Dir::spinning(&script(&["a", "b", "c", "d", "e"], options), 20_000);
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    for line in [
        "on: batch 1 of 3 (a, b)",
        "on: batch 2 of 3 (c, d)",
        "on: batch 3 of 3 (e)",
        "results: [\"a\", \"b\", \"c\", \"d\", \"e\"]",
    ] {
        assert!(t.contains(line), "{line}: {t}");
    }
    let j = d.journal();
    let ev = events(&j);
    // each batch's steps, then its gate's, then the next batch's
    let batch_of = |scope: &str| match scope {
        "a" | "b" => 0,
        "c" | "d" => 1,
        "e" => 2,
        other => panic!("unexpected scope {other}"),
    };
    let mut phase = 0; // 2k: batch k under way; 2k+1: its gate
    for (what, scope, key) in &ev {
        let p = if scope.is_empty() {
            assert!(key.starts_with("main.rhai:"), "{key}");
            2 * gate_number(key) + 1
        } else {
            2 * batch_of(scope)
        };
        assert!(
            p >= phase,
            "{what} {key} (phase {p}) after phase {phase}: {ev:#?}"
        );
        phase = p;
    }
    assert_eq!(phase, 5, "the gate ran after the last batch too");
    assert_eq!(d.file("gate/a").as_deref(), Some("[\"a\", \"b\"]"));
    assert_eq!(d.file("gate/c").as_deref(), Some("[\"c\", \"d\"]"));
    assert_eq!(d.file("gate/e").as_deref(), Some("[\"e\"]"));
    // and inside a batch its hosts ran at once
    assert!(max_at_once(&j) <= 2, "{ev:#?}");
}

/// The gate call a top-level key belongs to: its occurrence number (`#N`).
fn gate_number(key: &str) -> usize {
    key.rsplit('#').next().unwrap().parse().unwrap()
}

#[test]
fn max_parallel_caps_the_hosts_running_at_once() {
    let hosts = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let spin = 200_000;
    // without a cap all eight run at once (this is what the cap must change)
    let d = Dir::spinning(&script(&hosts, "#{}"), spin);
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let free = max_at_once(&d.journal());
    assert!(free > 3, "without a cap: {free} at once");

    // the option
    let d = Dir::spinning(&script(&hosts, "#{ max_parallel: 3 }"), spin);
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = d.journal();
    let n = max_at_once(&j);
    assert!((1..=3).contains(&n), "max_parallel 3: {n} at once");
    assert_eq!(j.done_steps().len(), 16, "every host ran");
    assert!(
        text(&o).contains("results: [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\"]"),
        "{}",
        text(&o)
    );

    // the run's cap, for every on() that does not set its own: the flag ...
    let plain = format!(
        "let hs = [{}].map(|n| host(#{{ name: n, address: \"127.0.0.1\" }}));\non(hs, {BRANCH});\n",
        hosts.map(|h| format!("{h:?}")).join(", ")
    );
    let d = Dir::spinning(&plain, spin);
    let o = d.cairn(&["run", "rb", "--max-parallel", "2"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let n = max_at_once(&d.journal());
    assert!((1..=2).contains(&n), "--max-parallel 2: {n} at once");
    // ... or the environment
    let d = Dir::spinning(&plain, spin);
    let o = d.cairn_env(&["run", "rb"], &[("CAIRN_MAX_PARALLEL", "1")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = d.journal();
    assert_eq!(max_at_once(&j), 1, "CAIRN_MAX_PARALLEL=1");
    assert_eq!(start_order(&j), hosts, "one at a time, in host order");
    // ... and by default 32: forty hosts are not forty at once
    let forty: Vec<String> = (1..=40).map(|i| format!("h{i}")).collect();
    let forty: Vec<&str> = forty.iter().map(String::as_str).collect();
    let d = Dir::spinning(&script(&forty, "#{}"), spin);
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let j = d.journal();
    let n = max_at_once(&j);
    assert!((4..=32).contains(&n), "default cap: {n} at once");
    assert_eq!(j.done_steps().len(), 80);
    // a bad value is refused before anything runs
    let o = d.cairn(&["plan", "rb", "--max-parallel", "0"]);
    assert_eq!(o.status.code(), Some(2), "clap's usage error: {}", text(&o));
    assert!(
        stderr(&o).contains("invalid value '0' for '--max-parallel <N>'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_failed_gate_stops_before_the_next_batch() {
    // the gate throws after b's batch
    let options = r#"#{ serial: 1, gate: |batch| {
        if batch[0].name == "b" {
            fail("b is not healthy");
        }
    } }"#;
    let d = Dir::new(&script(&["a", "b", "c", "d"], options));
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(
            "error: on: the gate after batch 2 of 4 (b) failed: b is not healthy; not started: c, d\n"
        ),
        "{err}"
    );
    assert!(err.contains("  --> rb/main.rhai:4:13\n"), "{err}");
    assert_eq!(start_order(&d.journal()), ["a", "b"]);
    for h in ["c", "d"] {
        assert_eq!(d.file(&format!("start/{h}")), None, "{h} was started");
    }
    assert!(d.file("end/b").is_some());

    // a gate that returns false, shown at the on() call
    let d = Dir::new(&script(
        &["a", "b", "c"],
        "#{ serial: 1, gate: |batch| false }",
    ));
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with(
            "error: on: the gate after batch 1 of 3 (a) returned false; not started: b, c\n"
        ),
        "{err}"
    );
    assert!(err.contains("  --> rb/main.rhai:2:9\n"), "{err}");
    assert_eq!(start_order(&d.journal()), ["a"]);
}

#[test]
fn a_failed_host_stops_later_batches_once_its_batch_is_done() {
    let branch_fails = r#"
let hs = ["a", "b", "c", "d", "e"].map(|n| host(#{ name: n, address: "127.0.0.1" }));
on(hs, #{ serial: 2, max_parallel: 1 }, |h| {
    if h.name == "c" { fail("c broke"); }
    local_file(#{ path: `done/${h.name}`, content: h.name });
});
"#;
    let d = Dir::new(branch_fails);
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = stderr(&o);
    assert!(
        err.starts_with("error: on: batch 2 of 3 (c, d) failed; not started: e\n  c: c broke\n"),
        "{err}"
    );
    assert!(err.contains("  --> rb/main.rhai:4:24\n"), "{err}");
    // d, after c in the same batch, still ran; e never started
    for (h, done) in [("a", true), ("b", true), ("d", true), ("e", false)] {
        assert_eq!(d.file(&format!("done/{h}")).is_some(), done, "{h}");
    }
    assert_eq!(start_order(&d.journal()), ["a", "b", "d"]);
}

#[test]
fn percentages_are_of_the_hosts_rounded_up() {
    for (serial, batches) in [
        ("\"34%\"", vec!["(a, b)", "(c)"]),
        ("\"33%\"", vec!["(a)", "(b)", "(c)"]),
        ("\"1%\"", vec!["(a)", "(b)", "(c)"]),
        ("\"100%\"", vec![]),
        ("\" 66 %\"", vec!["(a, b)", "(c)"]),
    ] {
        let d = Dir::new(&script(
            &["a", "b", "c"],
            &format!("#{{ serial: {serial} }}"),
        ));
        let o = d.cairn(&["run", "rb"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let shown: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("on: batch"))
            .map(String::from)
            .collect();
        let want: Vec<String> = batches
            .iter()
            .enumerate()
            .map(|(i, b)| format!("on: batch {} of {} {b}", i + 1, batches.len()))
            .collect();
        assert_eq!(shown, want, "serial {serial}");
        assert_eq!(d.journal().done_steps().len(), 6, "serial {serial}");
    }
}

#[test]
fn order_by_names_or_by_a_key_and_results_in_the_given_order() {
    let hosts = ["a", "b", "c", "d"];
    for (order, want) in [
        ("[\"c\", \"a\", \"d\", \"b\"]", ["c", "a", "d", "b"]),
        // the leader last: false sorts before true, ties keep the given order
        ("|h| h.name == \"b\"", ["a", "c", "d", "b"]),
        ("|h| -rank[h.name]", ["d", "c", "b", "a"]),
        (
            "|h| if h.name == \"a\" { \"z\" } else { h.name }",
            ["b", "c", "d", "a"],
        ),
        // a host value in the array stands for its name
        ("[hs[3], \"c\", \"b\", hs[0]]", ["d", "c", "b", "a"]),
    ] {
        let list: Vec<String> = hosts
            .iter()
            .map(|n| format!("host(#{{ name: {n:?}, address: \"127.0.0.1\" }})"))
            .collect();
        let s = format!(
            "let hs = [{}];\nlet rank = #{{ a: 0, b: 1, c: 2, d: 3 }};\nlet r = on(hs, #{{ serial: 1, order: {order} }}, {BRANCH});\nprint(`results: ${{r}}`);\n",
            list.join(", ")
        );
        let d = Dir::new(&s);
        let o = d.cairn(&["run", "rb"]);
        assert_eq!(o.status.code(), Some(0), "{order}: {}", text(&o));
        assert_eq!(start_order(&d.journal()), want, "{order}");
        assert!(
            text(&o).contains("results: [\"a\", \"b\", \"c\", \"d\"]"),
            "{order}: {}",
            text(&o)
        );
    }
}

/// `(exit code, stderr)` of a run of `on(hs, OPTIONS, ...)` over a, b, c;
/// nothing may have run.
fn refused(options: &str) -> String {
    let d = Dir::new(&script(&["a", "b", "c"], options));
    let o = d.cairn(&["run", "rb"]);
    assert_eq!(o.status.code(), Some(1), "{options}: {}", text(&o));
    assert!(
        !d.path().join(".cairn/files").exists(),
        "{options}: something ran"
    );
    stderr(&o)
}

#[test]
fn bad_options_are_refused_at_the_call_before_any_host_runs() {
    let serial = "`serial` must be a number of hosts (an integer of at least 1) or a percentage of them from \"1%\" to \"100%\", not";
    let order = "`order` must be an array of host names or a closure `|h| ...` giving each host's sort key, not";
    let cases: Vec<(&str, String)> = vec![
        (
            "#{ seral: 2 }",
            "unknown option `seral`, expected one of `serial`, `max_parallel`, `gate`, `order`"
                .into(),
        ),
        ("#{ serial: 0 }", format!("{serial} 0")),
        ("#{ serial: -2 }", format!("{serial} -2")),
        ("#{ serial: \"0%\" }", format!("{serial} \"0%\"")),
        ("#{ serial: \"150%\" }", format!("{serial} \"150%\"")),
        ("#{ serial: \"half\" }", format!("{serial} \"half\"")),
        ("#{ serial: true }", format!("{serial} a bool")),
        ("#{ serial: 1.5 }", format!("{serial} a number (1.5)")),
        (
            "#{ max_parallel: 0 }",
            "`max_parallel` must be an integer of at least 1, not 0".into(),
        ),
        (
            "#{ max_parallel: \"2\" }",
            "`max_parallel` must be an integer of at least 1, not \"2\"".into(),
        ),
        (
            "#{ gate: true }",
            "`gate` must be a closure `|batch| ...` run after each batch, not a bool".into(),
        ),
        ("#{ order: \"a,b,c\" }", format!("{order} \"a,b,c\"")),
        ("#{ order: #{} }", format!("{order} a map")),
        (
            "#{ order: [\"a\", 2, \"c\"] }",
            "item 1 of `order` must be a host or a host name, not 2".into(),
        ),
        (
            "#{ order: [\"c\", \"a\"] }",
            "`order` must name every host once (missing b)".into(),
        ),
        (
            "#{ order: [\"c\", \"a\", \"b\", \"x\", \"y\"] }",
            "`order` must name every host once (not among the hosts: x, y)".into(),
        ),
        (
            "#{ order: [\"c\", \"a\", \"a\"] }",
            "`order` must name every host once (missing b; named twice: a)".into(),
        ),
        (
            "#{ order: |h| #{} }",
            "the `order` closure must give an integer, a string or a bool for each host, not a map (for a)"
                .into(),
        ),
        (
            "#{ order: |h| if h.name == \"b\" { 1 } else { \"x\" } }",
            "the `order` closure must give keys of one kind: a string for a, an integer for b"
                .into(),
        ),
    ];
    for (options, msg) in cases {
        let err = refused(options);
        assert_eq!(
            err.lines().next().unwrap_or_default(),
            format!("error: on: bad arguments: {msg}"),
            "{options}: {err}"
        );
        // at the on() call: line 2, column 9 (`let r = on(...)`)
        assert!(err.contains("  --> rb/main.rhai:2:9\n"), "{options}: {err}");
    }
}

#[test]
fn plans_show_every_batch_and_a_gate_that_fails_there_is_a_warning() {
    // The gate checks etcd (a `?` line per batch in the plan) and a value
    // that a plan cannot know yet: the path of a file the run creates.
    let s = r#"
let marker = local_file(#{ path: "marker", content: "m" });
let hs = ["a", "b", "c"].map(|n| host(#{ name: n, address: "127.0.0.1" }));
on(hs, #{ serial: 1, gate: |batch| {
    etcd_health(#{ endpoints: [`https://${batch[0].name}.invalid:2379`], ca: "ca.pem" });
    is_known(marker.path)
} }, |h| {
    local_file(#{ path: `done/${h.name}`, content: h.name });
});
"#;
    let d = Dir::new(s);
    let o = d.cairn(&["plan", "rb", "--show-unchanged"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = String::from_utf8_lossy(&o.stdout);
    let mut lines = Vec::new();
    for l in t.lines() {
        let l = l.trim();
        if l.starts_with("| on:") || l.starts_with("? verify") || l.contains("create file") {
            lines.push(l.replace(&d.path().display().to_string(), "WS"));
        }
    }
    assert_eq!(
        lines,
        [
            "+ create file WS/.cairn/files/marker (0644)",
            "| on: batch 1 of 3 (a)",
            "+ create file WS/.cairn/files/done/a (0644)",
            "? verify etcd https://a.invalid:2379 healthy",
            "| on: batch 2 of 3 (b)",
            "+ create file WS/.cairn/files/done/b (0644)",
            "? verify etcd https://b.invalid:2379 healthy",
            "| on: batch 3 of 3 (c)",
            "+ create file WS/.cairn/files/done/c (0644)",
            "? verify etcd https://c.invalid:2379 healthy",
        ],
        "{t}"
    );
    assert!(
        t.contains(
            "Plan: 4 to create, 0 to change, 0 to delete, 0 to run, 0 unchanged, 3 to verify"
        ),
        "{t}"
    );
    let warning = "on: the gate after batch 1 of 3 (a) did not pass in the plan (returned false); \
                   the plan goes on as if it passed, a run stops there if it fails";
    assert!(t.contains("3 warnings:"), "{t}");
    assert!(t.contains(warning), "{t}");
    assert!(!d.path().join(".cairn").exists(), "a plan writes nothing");
}

#[test]
fn a_killed_batched_run_resumes_batch_by_batch() {
    // serial 2 over five hosts with a gate that writes a file: kill after
    // the 6th step (in batch 2), resume, and every step ran exactly once, in
    // batch order, the gates' files included
    let options = r#"#{ serial: 2, order: ["e", "d", "c", "b", "a"], gate: |batch| {
        local_file(#{ path: `gate/${batch[0].name}`, content: "passed" });
    } }"#;
    let d = Dir::new(&script(&["a", "b", "c", "d", "e"], options));
    let killed = d.cairn_env(&["run", "rb"], &[("CAIRN_FAULT_KILL", "done:6")]);
    assert_eq!(killed.status.code(), None, "{}", text(&killed));
    // the 6th step is in batch 2, whose other host may finish one more
    // before the signal lands
    let before = d.journal().done_steps().len();
    assert!((6..=7).contains(&before), "{before}");
    assert_eq!(d.file("start/a"), None, "batch 3 had not started");

    let resumed = d.cairn(&["resume"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    let t = text(&resumed);
    assert_eq!(
        t.matches("replayed from the journal").count(),
        before,
        "{t}"
    );
    let j = d.journal();
    assert_eq!(j.status(), Some(cairn::journal::RunStatus::Succeeded));
    assert_eq!(j.done_steps().len(), 13);
    for (key, n) in j.done_counts() {
        assert_eq!(n, 1, "step {key} was done {n} times");
    }
    for g in ["e", "c", "a"] {
        assert_eq!(d.file(&format!("gate/{g}")).as_deref(), Some("passed"));
    }
    assert!(
        t.contains("results: [\"a\", \"b\", \"c\", \"d\", \"e\"]"),
        "{t}"
    );
}

#[test]
fn an_interrupt_stops_before_the_next_batch_and_resume_finishes() {
    use std::io::BufRead;
    let d = Dir::new(&script(&["a", "b", "c"], "#{ serial: 1 }"));
    // held after a's first step until the pipe gets a byte
    let fifo = d.path().join("hold");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // open for reading and writing, which never blocks; cairn's open of it
    // does not block either, and its read waits for our byte
    let mut pipe = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let wait = format!("1:{}", fifo.display());
    let mut child = Cairn::new(d.path())
        .args(["run", "rb"])
        .env("CAIRN_FAULT_WAIT", &wait)
        .command()
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut until = |r: &mut dyn BufRead, want: &str| loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "no {want:?} in:\n{seen}"
        );
        seen.push_str(&line);
        if line.contains(want) {
            break;
        }
    };
    until(&mut out, "create file");
    // SAFETY: a signal to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    until(&mut err, "interrupt (Ctrl-C)");
    std::io::Write::write_all(&mut pipe, b"go").unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    // a's branch stops at its next operation; b and c are never started
    assert!(
        rest.contains(
            "error: on: batch 1 of 3 (a) failed; not started: b, c\n  a: interrupted (Ctrl-C)\n"
        ),
        "{rest}"
    );
    assert_eq!(start_order(&d.journal()), ["a"], "b and c untouched");
    assert_eq!(d.file("start/b"), None);
    assert_eq!(d.file("end/a"), None);

    let r = d.cairn(&["resume"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r));
    let j = d.journal();
    assert_eq!(j.done_steps().len(), 6);
    assert!(j.done_counts().values().all(|n| *n == 1));
}
