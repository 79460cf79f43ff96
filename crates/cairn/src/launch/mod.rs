//! Launching a runbook: gather inputs, build the executor and engine, run the
//! script in plan, offline or apply mode, journal it, and report.

use crate::diagnostic::{render_eval, render_parse, render_script, Sources};
use crate::engine::{build_engine, params_map, ScriptInputs};
use crate::error::{exit, Error, PlanRefusal, ScriptError, Success};
use crate::executor::{drift_of, Executor, ExecutorSetup, Mode, StepRecord};
use crate::host::Host;
use crate::journal::{Journal, JournalWriter, Record, RunHeader, RunStatus, RunbookVersion};
use crate::limit::Limit;
use crate::lock::WorkspaceLock;
use crate::manifest::{resolve, Inputs};
use crate::params::Params;
use crate::report::{summarize, PlanView, Reporter};
use crate::runbook::{stdlib_modules, Runbook};
use crate::runs::find_run;
use crate::scratch::Scratch;
use crate::secrets::Secrets;
use crate::ssh::Pool;
use crate::step::Ctx;
use crate::workspace::Workspace;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
mod inputs;
mod plan;
mod resume;
mod run;
mod saved_plan;
mod session;

use inputs::*;
pub use inputs::{read_env_file, read_inventory};
pub use plan::{check_offline, plan};
pub use resume::{resume, ResumeRequest};
pub use run::run;
use run::*;
use saved_plan::*;
pub use saved_plan::{plan_digest, SavedPlan};
use session::*;

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Request {
    pub runbook: String,
    pub vars: Vec<(String, String)>,
    pub vars_files: Vec<PathBuf>,
    pub inventory: Option<PathBuf>,
    pub lab: Option<String>,
    pub state_dir: PathBuf,
    pub json: bool,
    /// `plan -o FILE`
    pub save_plan: Option<PathBuf>,
    /// `run --plan FILE`
    pub approved_plan: Option<PathBuf>,
    /// `plan --show-unchanged` (or `-v`): list every `= ok` line.
    pub show_unchanged: bool,
    /// `--max-parallel N` (or `CAIRN_MAX_PARALLEL`): hosts an `on(...)` runs
    /// at once unless it says; `None`: [`crate::fanout::DEFAULT_MAX_PARALLEL`].
    pub max_parallel: Option<usize>,
    /// `--limit NAMES|GROUPS`: only these hosts are touched (see [`crate::limit`]).
    pub limit: Option<String>,
    /// `--state etcd://...`: team state in etcd (see [`crate::state`]).
    pub shared: Option<Arc<crate::state::StateOptions>>,
}

/// What a command tells the audit log, filled in as it learns it; written by
/// [`record_audit`] when the command ends.
#[derive(Debug, Default)]
struct Audit {
    runbook: String,
    version: String,
    run_id: Option<String>,
    plan_digest: Option<String>,
    /// The script started (a run: its journal exists): an error from here on
    /// is a failure, before it a refusal.
    started: bool,
    /// A signal stopped it (a plan exits 1 then, a run 130).
    interrupted: bool,
}

impl Audit {
    fn new(runbook: &str) -> Self {
        Audit {
            runbook: runbook.to_string(),
            ..Default::default()
        }
    }
    fn runbook(&mut self, r: &Runbook) {
        self.runbook = r.manifest.name.clone();
        self.version = r.manifest.version.to_string();
    }
}

/// The one place a command's audit entry is written: one entry per `run`,
/// `plan` and `resume`, whatever the outcome, to [`crate::audit::store_for`]'s
/// store. A log that cannot be written is a warning: the command's own result
/// and exit code stand.
fn record_audit(
    (state_dir, shared): (&Path, Option<&Arc<crate::state::StateOptions>>),
    command: crate::audit::Command,
    a: &Audit,
    code: i32,
) {
    use crate::audit::Entry;
    let mut e = Entry::now(command, &a.runbook, audit_outcome(command, a, code), code);
    e.version = a.version.clone();
    e.run_id = a.run_id.clone();
    e.plan_digest = a.plan_digest.clone();
    let store = match shared {
        Some(opts) => crate::state::audit::store(opts, state_dir),
        None => crate::audit::store_for(state_dir),
    };
    if let Some(store) = store {
        if let Err(err) = store.append(&e) {
            eprintln!("warning: {err}; this {command} is not in the audit log");
        }
    }
}

/// Run a command flow and write its audit entry with the exit code it ends
/// with: the one place a flow's result meets the audit log.
fn audited(
    state: (&Path, Option<&Arc<crate::state::StateOptions>>),
    command: crate::audit::Command,
    mut audit: Audit,
    flow: impl FnOnce(&mut Audit) -> Result<Success, Error>,
) -> Result<Success, Error> {
    let result = flow(&mut audit);
    record_audit(state, command, &audit, crate::error::exit_code(&result));
    result
}

/// How a command ended, from its exit code and how far it got.
fn audit_outcome(command: crate::audit::Command, a: &Audit, code: i32) -> crate::audit::Outcome {
    use crate::audit::Outcome;
    match code {
        exit::OK => Outcome::Ok,
        exit::CHANGES if command == crate::audit::Command::Plan => Outcome::Changes,
        exit::INTERRUPTED => Outcome::Interrupted,
        _ if a.interrupted => Outcome::Interrupted,
        _ if a.started => Outcome::Failed,
        _ => Outcome::Refused,
    }
}

/// Everything resolved before a script runs.
struct Prepared {
    runbook: Arc<Runbook>,
    inputs: ScriptInputs,
    env: BTreeMap<String, String>,
    secrets: Secrets,
    workspace: Workspace,
    lab: Option<String>,
    /// `--limit`, resolved against the inventory.
    limit: Option<Arc<Limit>>,
    /// With `--state`: the team state (`workspace` is its cache).
    shared: Option<Arc<crate::state::Shared>>,
}

struct Outcome {
    steps: Vec<StepRecord>,
    error: Option<ScriptError>,
    interrupted: bool,
}

/// One pass of the script: its mode and what it journals or replays.
struct Pass {
    mode: Mode,
    journal: Option<JournalWriter>,
    replay: BTreeMap<String, crate::journal::DoneStep>,
    force: bool,
    reporter: Arc<Reporter>,
    /// `run --plan`: the approved steps every change is checked against.
    approved: Option<BTreeMap<String, StepRecord>>,
}

impl Pass {
    /// A pass that journals nothing (plans).
    fn plan(mode: Mode, reporter: Arc<Reporter>) -> Self {
        Pass {
            mode,
            journal: None,
            replay: BTreeMap::new(),
            force: false,
            reporter,
            approved: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Command as C, Outcome as O};

    /// `check_offline` of a runbook whose `main.rhai` is `script`.
    fn check_script(script: &str) -> Result<usize, Error> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("runbook.toml"),
            "name = \"typed\"\nversion = \"0.1.0\"\ndescription = \"d\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("main.rhai"), script).unwrap();
        check_offline(Runbook::load(dir.path().to_str().unwrap()).unwrap())
    }

    #[test]
    fn a_step_error_reaches_the_renderer_typed_with_the_runbook_position() {
        // a step in a function, called in an `on()` branch, no `try`
        let script = "fn put(h) {\n    file(h, #{ path: \"relative\", content: \"x\" });\n}\n\
                      on([hosts()[0]], |h| put(h));\n";
        let err = check_script(script).unwrap_err();
        let e = err.script().expect("a script error");
        let step = e
            .step
            .as_ref()
            .expect("the step's failure, as a typed value");
        assert_eq!(
            (step.kind.as_str(), step.target.as_str()),
            ("file", "host-1")
        );
        assert!(
            matches!(&*step.error, crate::error::StepError::Invalid { field, .. } if field == "path"),
            "{:?}",
            step.error
        );
        let at = e.at.as_ref().expect("a position");
        assert!(at.file.ends_with("main.rhai"), "{at}");
        assert_eq!((at.line, at.column), (2, 5), "{at}");
        assert_eq!(e.message, step.to_string());
        let shown = crate::diagnostic::render(&err);
        assert!(
            shown.starts_with(&format!("error: file on host-1 failed: {}\n", step.shown)),
            "{shown}"
        );
        assert!(shown.contains("  = in call to `put` at "), "{shown}");
        assert!(shown.contains("  = in the closure passed at "), "{shown}");
    }

    #[test]
    fn hosts_failing_in_one_on_reach_the_renderer_each_with_its_typed_step_failure() {
        // two hosts fail with a step error, one with the runbook's own fail()
        let script =
            "on(hosts(), |h| {\n    if h.name == \"host-2\" { fail(\"not this one\"); }\n    \
                      file(h, #{ path: \"relative\", content: \"x\" });\n});\n";
        let err = check_script(script).unwrap_err();
        let e = err.script().expect("a script error");
        let got: Vec<(&str, Option<(&str, &str)>)> = e
            .hosts
            .iter()
            .map(|h| {
                let step = h
                    .step
                    .as_ref()
                    .map(|s| (s.kind.as_str(), s.target.as_str()));
                (h.host.as_str(), step)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("host-1", Some(("file", "host-1"))),
                ("host-2", None),
                ("host-3", Some(("file", "host-3"))),
            ]
        );
        assert!(
            matches!(&*e.hosts[2].step.as_ref().unwrap().error,
                crate::error::StepError::Invalid { field, .. } if field == "path"),
            "{:?}",
            e.hosts[2]
        );
        assert_eq!(e.hosts[1].message, "not this one");
        let step = e.step.as_ref().expect("the first failed host's step");
        assert_eq!(step.target, "host-1");
        assert!(
            e.message.starts_with(
                "3 of 3 hosts failed:\n  host-1: file on host-1 failed: invalid `path`"
            ),
            "{}",
            e.message
        );
        let at = e.at.as_ref().expect("a position");
        assert_eq!((at.line, at.column), (3, 5), "{at}");
    }

    #[test]
    fn one_failed_host_is_named_once_whatever_its_message_says() {
        // a step on the host names it; the runbook's own text is prefixed even
        // when it happens to hold the host's name
        let step = "on([hosts()[0]], |h| file(h, #{ path: \"relative\", content: \"x\" }));\n";
        let e = check_script(step).unwrap_err();
        let message = &e.script().expect("a script error").message;
        assert!(
            message.starts_with("file on host-1 failed: invalid `path`"),
            "{message}"
        );
        let own = "on([hosts()[0]], |h| fail(`${h.name} is not ready`));\n";
        let e = check_script(own).unwrap_err();
        let message = &e.script().expect("a script error").message;
        assert_eq!(message, "on host-1: host-1 is not ready");
    }

    #[test]
    fn a_caught_on_failure_is_typed_and_reads_as_its_text() {
        let script =
            "try {\n    on(hosts(), |h| file(h, #{ path: \"relative\", content: \"x\" }));\n} \
                      catch (e) {\n    fail(`${type_of(e)}: ${e}`);\n}\n";
        let err = check_script(script).unwrap_err();
        let e = err.script().expect("a script error");
        assert!(
            e.message
                .starts_with("OnFailure: 3 of 3 hosts failed:\n  host-1: file on host-1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_caught_step_error_reads_as_its_text_and_fail_stays_a_string() {
        let script =
            "let h = hosts()[0];\ntry {\n    file(h, #{ path: \"relative\", content: \"x\" });\n} \
                      catch (e) {\n    fail(`${e}; caught`);\n}\n";
        let err = check_script(script).unwrap_err();
        let e = err.script().expect("a script error");
        assert!(e.step.is_none(), "fail() raises text, not a step value");
        assert!(
            e.message
                .starts_with("file on host-1 failed: invalid `path`"),
            "{}",
            e.message
        );
        assert!(e.message.ends_with("; caught"), "{}", e.message);
        assert_eq!(e.at.as_ref().map(|a| a.line), Some(5));
    }

    #[test]
    fn audit_outcomes_follow_exit_codes_and_progress() {
        let at = |started, interrupted| Audit {
            started,
            interrupted,
            ..Default::default()
        };
        let table = [
            (C::Plan, at(true, false), exit::OK, O::Ok),
            (C::Plan, at(true, false), exit::CHANGES, O::Changes),
            (C::Plan, at(false, false), exit::ERROR, O::Refused),
            (C::Plan, at(true, false), exit::ERROR, O::Failed),
            (C::Plan, at(true, true), exit::ERROR, O::Interrupted),
            (C::Run, at(false, false), exit::ERROR, O::Refused),
            (C::Run, at(true, false), exit::ERROR, O::Failed),
            (C::Run, at(true, false), exit::CHANGES, O::Failed),
            (C::Run, at(true, true), exit::INTERRUPTED, O::Interrupted),
            (C::Resume, at(true, false), exit::OK, O::Ok),
            (C::Resume, at(false, false), exit::ERROR, O::Refused),
        ];
        for (command, a, code, want) in table {
            assert_eq!(
                audit_outcome(command, &a, code),
                want,
                "{command} {a:?} {code}"
            );
        }
    }
}
