//! The executor: the one place that decides plan versus apply.
//!
//! Every primitive call arrives here as a [`Step`]. The executor keys it by its
//! call site, replays it from the journal when resuming, and then either only
//! plans it (facts and actions, nothing changed) or applies it and journals the
//! result. Primitives never see the mode.
//!
//! Plans are sound over-approximations of runs, by three rules kept here and
//! nowhere else:
//! - the result of a step a plan will change is *unsettled* (see
//!   [`unknown::unsettle`]): what it says beyond its arguments is unknown and
//!   its `changed` flags are true, so every step fed from it is planned from
//!   intent, as the change it may make;
//! - once a plan changes something on a host, a later step there that finds
//!   nothing to do is planned as its intent too (its facts may be the ones the
//!   earlier change replaces: a package install creates a data dir); steps
//!   whose intent changes nothing (reads, checks) keep their facts;
//! - a run given an approved plan (`cairn run --plan`) checks every step's
//!   actions against it before applying them and stops before the first one
//!   not approved.
//!
//! On resume, steps that may change something and were journaled done are
//! replayed; checks and reads (steps whose intent changes nothing) run again
//! against the hosts.

use crate::action::{Action, ActionKind};
use crate::error::{StepError, StepFailure};
use crate::journal::{DoneStep, JournalWriter, Record};
use crate::report::Reporter;
use crate::secrets::Secrets;
use crate::step::{Ctx, Step, Valid};
use crate::unknown;
use rhai::{EvalAltResult, NativeCallContext, Position};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What the executor does with steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Observe facts and report actions; change nothing.
    Plan,
    /// Plan without any network: every step from intent.
    Offline,
    /// Apply and journal.
    Apply,
}

/// A step as planned (or applied): the unit of a plan and of a saved plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Stable key: scope, call site and occurrence.
    pub key: String,
    pub kind: String,
    pub target: String,
    /// Digest of the arguments.
    pub args: String,
    /// Digest of the facts the decision rests on (empty when planned from intent).
    pub facts: String,
    /// Planned without facts (offline or unknown inputs).
    pub intent: bool,
    pub actions: Vec<Action>,
    /// Replayed from the journal on resume (nothing executed).
    #[serde(default)]
    pub replayed: bool,
    #[serde(default)]
    pub ms: u64,
}

/// Everything the executor needs besides the mode.
pub struct ExecutorSetup {
    pub mode: Mode,
    pub ctx: Ctx,
    pub handle: tokio::runtime::Handle,
    pub journal: Option<JournalWriter>,
    /// Done steps of the run being resumed.
    pub replay: BTreeMap<String, DoneStep>,
    /// Re-execute replayed steps whose arguments changed instead of refusing.
    pub force: bool,
    pub secrets: Secrets,
    pub reporter: Arc<Reporter>,
    pub cancel: Arc<AtomicBool>,
    /// The approved plan's steps by key (`cairn run --plan`): every change
    /// is checked against them before it is made.
    pub approved: Option<BTreeMap<String, StepRecord>>,
    /// `--limit`: steps aimed at hosts outside it are refused.
    pub limit: Option<Arc<crate::limit::Limit>>,
}

/// See the module documentation.
pub struct Executor {
    mode: Mode,
    ctx: Ctx,
    handle: tokio::runtime::Handle,
    journal: Option<Mutex<JournalWriter>>,
    replay: BTreeMap<String, DoneStep>,
    force: bool,
    secrets: Secrets,
    reporter: Arc<Reporter>,
    cancel: Arc<AtomicBool>,
    occurrences: Mutex<HashMap<String, usize>>,
    steps: Mutex<Vec<StepRecord>>,
    faults: Faults,
    approved: Option<BTreeMap<String, StepRecord>>,
    /// Why the run stopped before its next step (an action not approved).
    halted: Mutex<Option<String>>,
    /// Targets a plan changes something on so far.
    changing: Mutex<HashSet<String>>,
    limit: Option<Arc<crate::limit::Limit>>,
}

/// Fault injection for cairn's own kill/resume tests: `CAIRN_FAULT_KILL=done:N`
/// SIGKILLs the process right after the N-th step is journaled done;
/// `CAIRN_FAULT_KILL=applied:N` right after the N-th step's work is applied but
/// before it is journaled (a kill inside a step). `CAIRN_FAULT_WAIT=N:FIFO`
/// waits after the N-th step is journaled done until the test writes a byte
/// to the named pipe FIFO: a run held between steps, for tests of what
/// happens meanwhile (a second run, a signal). Compiled only with the
/// `fault-hooks` feature (the tests' build): any other build reads neither
/// variable and never arms a fault.
#[derive(Default)]
struct Faults {
    kill_done: Option<usize>,
    kill_applied: Option<usize>,
    wait_done: Option<(usize, std::path::PathBuf)>,
    done: std::sync::atomic::AtomicUsize,
    applied: std::sync::atomic::AtomicUsize,
}

impl Faults {
    #[cfg(not(feature = "fault-hooks"))]
    fn from_env() -> Self {
        Faults::default()
    }
    #[cfg(feature = "fault-hooks")]
    fn from_env() -> Self {
        let spec = std::env::var("CAIRN_FAULT_KILL").unwrap_or_default();
        let mut f = Faults::default();
        if let Some((what, n)) = spec.split_once(':') {
            let n = n.parse().ok();
            match what {
                "done" => f.kill_done = n,
                "applied" => f.kill_applied = n,
                _ => {}
            }
        }
        let wait = std::env::var("CAIRN_FAULT_WAIT").unwrap_or_default();
        if let Some((n, fifo)) = wait.split_once(':') {
            f.wait_done = n.parse().ok().map(|n| (n, fifo.into()));
        }
        f
    }
    fn tick(counter: &std::sync::atomic::AtomicUsize, at: Option<usize>) -> usize {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if at == Some(n) {
            // SAFETY: raising a signal on our own process.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        }
        n
    }
    fn wait_after_done(&self, n: usize) {
        if let Some((at, fifo)) = &self.wait_done {
            if *at == n {
                // blocks until the test writes a byte to the pipe; a signal
                // meanwhile does not end the wait
                let Ok(mut file) = std::fs::File::open(fifo) else {
                    return;
                };
                loop {
                    match std::io::Read::read(&mut file, &mut [0u8; 1]) {
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        _ => break,
                    }
                }
            }
        }
    }
}

thread_local! {
    /// The scope of the current thread's steps: empty at top level, `node-1/`
    /// inside `on(hosts, ...)` for node-1. Part of every step key, so keys stay
    /// stable whatever order parallel branches run in.
    static SCOPE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Run `f` with the step scope extended by `name` (used by `on`).
pub fn with_scope<R>(parent: &str, name: &str, f: impl FnOnce() -> R) -> R {
    let previous = SCOPE.with(|s| s.replace(format!("{parent}{name}/")));
    let out = f();
    SCOPE.with(|s| *s.borrow_mut() = previous);
    out
}

/// The current step scope.
pub fn current_scope() -> String {
    SCOPE.with(|s| s.borrow().clone())
}

/// A runtime error for the script, at the call site.
pub fn script_error(message: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        message.into().into(),
        Position::NONE,
    ))
}

/// A step's failure for the script, at the call site: a typed value that
/// [`crate::diagnostic`] downcasts, never text to parse back.
pub fn raise(failure: StepFailure) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        rhai::Dynamic::from(failure),
        Position::NONE,
    ))
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..12])
}

impl Executor {
    pub fn new(setup: ExecutorSetup) -> Self {
        Executor {
            mode: setup.mode,
            ctx: setup.ctx,
            handle: setup.handle,
            journal: setup.journal.map(Mutex::new),
            replay: setup.replay,
            force: setup.force,
            secrets: setup.secrets,
            reporter: setup.reporter,
            cancel: setup.cancel,
            occurrences: Mutex::new(HashMap::new()),
            steps: Mutex::new(Vec::new()),
            faults: Faults::from_env(),
            approved: setup.approved,
            halted: Mutex::new(None),
            changing: Mutex::new(HashSet::new()),
            limit: setup.limit,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The run's `--limit`, if any.
    pub fn limit(&self) -> Option<&crate::limit::Limit> {
        self.limit.as_deref()
    }

    /// The run's `--limit`, shared.
    pub fn limit_arc(&self) -> Option<Arc<crate::limit::Limit>> {
        self.limit.clone()
    }

    /// The context steps run with.
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// The run's secret values.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// The runtime the run's futures run on (to spawn background work).
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Block on a future from the script's thread.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }

    /// Print text from the script (`print`) under the host whose `on(...)`
    /// branch printed it, or `local`.
    pub fn print(&self, text: &str) {
        self.reporter
            .output(&current_scope(), &self.secrets.redact(text));
    }

    /// A warning from the script (`warn`): shown, and listed in the summary;
    /// the run goes on.
    pub fn warn(&self, text: &str) {
        self.reporter
            .warn(&current_scope(), &self.secrets.redact(text));
    }

    /// Whether Ctrl-C asked the run to stop.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Every step seen so far, in order of completion.
    pub fn steps(&self) -> Vec<StepRecord> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Append a record to the journal (apply mode), redacted.
    pub fn journal(&self, record: &Record, durable: bool) -> Result<(), StepError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        let mut journal = journal.lock().unwrap_or_else(|e| e.into_inner());
        let value = serde_json::to_value(record).map_err(|e| StepError::Other(e.to_string()))?;
        let record: Record = serde_json::from_value(self.secrets.redact_json(value))
            .map_err(|e| StepError::Other(e.to_string()))?;
        let path = journal.path().to_path_buf();
        journal.append(&record, durable).map_err(|e| {
            // the team state refused the record (see `crate::state`): say why
            let refused = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<crate::state::sync::Refused>());
            if let Some(r) = refused {
                return StepError::Other(r.0.clone());
            }
            StepError::Other(format!(
                "cannot write journal {}: {e}; the record was cut off, so the journal ends \
                 with its last whole record: free space there, then `cairn resume` continues from it",
                path.display()
            ))
        })
    }

    fn next_key(&self, call: &NativeCallContext) -> String {
        let pos = call.call_position();
        let source = call.call_source().unwrap_or("main.rhai");
        let site = format!(
            "{}{source}:{}:{}",
            current_scope(),
            pos.line().unwrap_or(0),
            pos.position().unwrap_or(0)
        );
        let mut occ = self.occurrences.lock().unwrap_or_else(|e| e.into_inner());
        let n = occ.entry(site.clone()).or_insert(0);
        let key = format!("{site}#{n}");
        *n += 1;
        key
    }

    /// Run one step. See the module documentation.
    pub fn exec<S: Step>(
        &self,
        call: &NativeCallContext,
        step: S,
    ) -> Result<S::Output, Box<EvalAltResult>> {
        if self.cancelled() {
            return Err(script_error(
                "interrupted (Ctrl-C): stopped before this step",
            ));
        }
        if let Some(why) = self
            .halted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Err(script_error(format!("stopped before this step: {why}")));
        }
        let key = self.next_key(call);
        let kind = step.kind();
        let target = step.target();
        let args_json =
            serde_json::to_value(&step).map_err(|e| script_error(format!("{kind}: {e}")))?;
        // The only way to a step's facts and work; its refusal is reported
        // below, after --limit and resume had their say, as before.
        let valid = Valid::new(step);
        let intent_changes = || match &valid {
            Ok(step) => step.intent().actions.iter().any(|a| a.kind.is_change()),
            Err(_) => true,
        };
        // --limit: nothing runs on a host outside it, not even a read.
        if let Some(limit) = &self.limit {
            let changes = intent_changes;
            let cloud = crate::limit::CLOUD_TARGETS.contains(&target.as_str());
            if let Err(why) = limit.check_target(&target, cloud && changes()) {
                return Err(script_error(format!("`{kind}` on {target} refused: {why}")));
            }
        }
        let args = digest(args_json.to_string().as_bytes());
        let (fail_key, fail_target) = (key.clone(), target.clone());
        let fail = |e: StepError| {
            raise(StepFailure::new(&fail_key, kind, &fail_target, e, |t| {
                self.secrets.redact(t)
            }))
        };

        // Resume: a step done before is replayed, never executed again, unless
        // it only reads or checks (its intent changes nothing): verification
        // is never replayed, what it saw may be gone.
        let reads_only = || !intent_changes();
        if let Some(done) = self.replay.get(&key).filter(|_| !reads_only()) {
            if done.args == args || !self.force {
                if done.args != args {
                    return Err(script_error(format!(
                        "cannot resume: step `{kind}` on {target} ({key}) was done with other arguments \
                         than it has now; the runbook or its inputs changed since the run. \
                         Use --force to re-execute it with the new arguments"
                    )));
                }
                let output: S::Output = serde_json::from_value(done.output.clone()).map_err(|e| {
                    script_error(format!(
                        "cannot resume: the journal's output of `{kind}` ({key}) does not fit this cairn: {e}"
                    ))
                })?;
                let record = StepRecord {
                    key,
                    kind: kind.into(),
                    target,
                    args,
                    facts: String::new(),
                    intent: false,
                    actions: vec![],
                    replayed: true,
                    ms: 0,
                };
                self.reporter.step(&record);
                self.push(record);
                return Ok(output);
            }
        }

        let from_intent = self.mode == Mode::Offline || unknown::contains_unknown(&args_json);
        if from_intent && self.mode == Mode::Apply {
            return Err(fail(StepError::Other(
                "an argument holds a value that is only known after an earlier create; \
                 it should have been known by now"
                    .into(),
            )));
        }
        let step = match valid {
            Ok(step) => step,
            Err(e) => return Err(self.failed(&key, kind, &target, e)),
        };
        let started = Instant::now();
        self.reporter.started(&key, kind, &target);
        if self.mode == Mode::Apply {
            self.journal(
                &Record::Start {
                    key: key.clone(),
                    kind: kind.into(),
                    target: target.clone(),
                    args: args.clone(),
                },
                false,
            )
            .map_err(fail)?;
        }
        let mut from_intent = from_intent;
        // A read on a host the plan changes before it would see the state
        // before those changes: what it reads is not known until they are made.
        if self.mode == Mode::Plan && !from_intent && self.changes_planned_on(&target) {
            from_intent = !step.intent().actions.iter().any(|a| a.kind.is_change());
        }
        let prepared = if from_intent {
            Ok(step.intent())
        } else {
            match self.block_on(step.prepare(&self.ctx)) {
                // In a plan, an input an earlier step will make is not there yet.
                Err(StepError::Pending { .. }) if self.mode != Mode::Apply => {
                    from_intent = true;
                    Ok(step.intent())
                }
                other => other,
            }
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => return Err(self.failed(&key, kind, &target, e)),
        };
        let mut record = StepRecord {
            key: key.clone(),
            kind: kind.into(),
            target: target.clone(),
            args: args.clone(),
            facts: prepared.facts.clone(),
            intent: from_intent,
            actions: prepared
                .actions
                .iter()
                .map(|a| self.redact_action(a))
                .collect(),
            replayed: false,
            ms: 0,
        };
        if self.mode != Mode::Apply {
            let predicted = self.plan_soundly(&step, &args_json, prepared, &mut record);
            record.ms = started.elapsed().as_millis() as u64;
            self.reporter.step(&record);
            self.push(record);
            return Ok(predicted);
        }
        if let Err(why) = self.check_approved(&record) {
            let e = StepError::Other(format!(
                "{why}; stopped before it, nothing of it applied (make a new plan and review it)"
            ));
            *self.halted.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                "`{kind}` on {target} ({key}) was not approved by the saved plan"
            ));
            return Err(self.failed(&key, kind, &target, e));
        }

        // Only a step that changed something must reach the disk before the
        // next one starts: a lost record of a no-op or a check just means it
        // is looked at again on resume. Syncing a record also syncs every
        // record written before it.
        let durable = prepared.actions.iter().any(|a| a.kind.is_change());
        let output = match prepared.work {
            None => prepared.predicted,
            Some(work) => match self.block_on(step.apply(&self.ctx, work)) {
                Ok(out) => {
                    Faults::tick(&self.faults.applied, self.faults.kill_applied);
                    out
                }
                Err(e) => return Err(self.failed(&key, kind, &target, e)),
            },
        };
        record.ms = started.elapsed().as_millis() as u64;
        let output_json =
            serde_json::to_value(&output).map_err(|e| fail(StepError::Other(e.to_string())))?;
        self.journal(
            &Record::Done {
                key,
                kind: kind.into(),
                target,
                args,
                output: output_json,
                actions: record.actions.clone(),
                ms: record.ms,
            },
            durable,
        )
        .map_err(fail)?;
        let n = Faults::tick(&self.faults.done, self.faults.kill_done);
        self.reporter.step(&record);
        self.faults.wait_after_done(n);
        self.push(record);
        Ok(output)
    }

    /// The plan-side rules of the module documentation: a step that may change
    /// something is planned as that change, and its result is unsettled.
    fn plan_soundly<S: Step>(
        &self,
        step: &Valid<S>,
        args: &serde_json::Value,
        prepared: crate::step::Prepared<S::Output, S::Work>,
        record: &mut StepRecord,
    ) -> S::Output {
        let changes = |actions: &[Action]| actions.iter().any(|a| a.kind.is_change());
        let mut predicted = prepared.predicted;
        if self.mode == Mode::Plan && record.intent {
            if let Some(why) = unknown::first_unknown(args) {
                note(&mut record.actions, &why);
            }
        } else if self.mode == Mode::Plan
            && !changes(&record.actions)
            && self.changes_planned_on(&record.target)
        {
            let intent = step.intent();
            if changes(&intent.actions) {
                // What it found now, as the possible change it is.
                for a in record
                    .actions
                    .iter_mut()
                    .filter(|a| a.kind == ActionKind::Noop)
                {
                    a.kind = ActionKind::Change;
                    a.diff = None;
                    a.reason = Some(format!(
                        "ok now{}; may change after the changes planned before it on {}",
                        a.reason
                            .as_deref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default(),
                        record.target
                    ));
                }
                record.intent = true;
                predicted = intent.predicted;
            }
        }
        if !changes(&record.actions) {
            return predicted;
        }
        self.changing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(record.target.clone());
        let label = args
            .get("name")
            .and_then(|n| n.as_str())
            .map(String::from)
            .or_else(|| {
                record
                    .actions
                    .iter()
                    .find(|a| a.kind.is_change())
                    .map(|a| a.what.split(" (").next().unwrap_or(&a.what).to_string())
            })
            .unwrap_or_else(|| record.target.clone());
        let event = format!("{} {label} changes", record.kind);
        match serde_json::to_value(&predicted)
            .map(|v| unknown::unsettle(v, args, &event))
            .and_then(serde_json::from_value)
        {
            Ok(unsettled) => unsettled,
            Err(_) => predicted,
        }
    }

    /// Whether the plan changes something on `target` before the current step
    /// (the operator's own machine, `local`, only through values: its steps
    /// are files named by their arguments).
    fn changes_planned_on(&self, target: &str) -> bool {
        target != "local"
            && self
                .changing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(target)
    }

    /// With an approved plan: whether this step's actions are covered by it.
    /// A step planned as a possible change covers any change of that step; any
    /// other must do exactly what was planned. Steps that change nothing pass.
    fn check_approved(&self, now: &StepRecord) -> Result<(), String> {
        let Some(approved) = &self.approved else {
            return Ok(());
        };
        let Some(first) = now.actions.iter().find(|a| a.kind.is_change()) else {
            return Ok(());
        };
        let what = format!("`{}` on {} ({})", now.kind, now.target, now.key);
        let Some(plan) = approved.get(&now.key) else {
            return Err(format!(
                "{what} would {first}, and the approved plan has no such step"
            ));
        };
        if plan.kind != now.kind || plan.target != now.target {
            return Err(format!(
                "{what} would {first}; the approved plan has `{}` on {} there",
                plan.kind, plan.target
            ));
        }
        let planned = |a: &Action| a.to_string();
        if plan.intent && plan.actions.iter().any(|a| a.kind.is_change()) {
            return Ok(());
        }
        if let Some(a) = now
            .actions
            .iter()
            .filter(|a| a.kind.is_change())
            .find(|a| !plan.actions.contains(a))
        {
            let approved: Vec<String> = plan.actions.iter().map(planned).collect();
            return Err(format!(
                "{what} would {a}, which the approved plan does not contain (approved: {})",
                approved.join("; ")
            ));
        }
        Ok(())
    }

    fn redact_action(&self, a: &Action) -> Action {
        Action {
            kind: a.kind,
            target: self.secrets.redact(&a.target),
            what: self.secrets.redact(&a.what),
            reason: a.reason.as_deref().map(|r| self.secrets.redact(r)),
            diff: a.diff.as_deref().map(|d| self.secrets.redact(d)),
        }
    }

    fn push(&self, record: StepRecord) {
        self.steps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    fn failed(&self, key: &str, kind: &str, target: &str, e: StepError) -> Box<EvalAltResult> {
        let failure = StepFailure::new(key, kind, target, e, |t| self.secrets.redact(t));
        let error = failure.shown.clone();
        // A failure to journal the failure is reported with the step's own error.
        let _ = self.journal(
            &Record::Fail {
                key: key.into(),
                kind: kind.into(),
                target: target.into(),
                error: error.clone(),
            },
            true,
        );
        self.reporter.failed(key, kind, target, &error);
        raise(failure)
    }
}

/// Add `why` to the reasons of the change actions (once).
fn note(actions: &mut [Action], why: &str) {
    for a in actions.iter_mut().filter(|a| a.kind.is_change()) {
        let shown = a.what.contains(why) || a.reason.as_deref().is_some_and(|r| r.contains(why));
        if !shown {
            a.reason = Some(match a.reason.take() {
                Some(r) => format!("{r}; {why}"),
                None => why.to_string(),
            });
        }
    }
}

/// How a freshly planned step differs from the saved plan's, if it does.
pub fn drift_of(saved: Option<&StepRecord>, now: &StepRecord) -> Option<String> {
    let Some(saved) = saved else {
        return Some(format!(
            "step `{}` on {} ({}) is not in the saved plan",
            now.kind, now.target, now.key
        ));
    };
    if saved.kind != now.kind || saved.target != now.target {
        return Some(format!(
            "step {} was `{}` on {} in the saved plan, now `{}` on {}",
            now.key, saved.kind, saved.target, now.kind, now.target
        ));
    }
    if saved.intent {
        // planned without facts: its inputs were not known then
        return None;
    }
    if saved.args != now.args {
        return Some(format!(
            "the arguments of `{}` on {} ({}) changed since the plan was saved",
            now.kind, now.target, now.key
        ));
    }
    if saved.facts != now.facts || saved.actions != now.actions {
        let was: Vec<String> = saved.actions.iter().map(|a| a.to_string()).collect();
        let is: Vec<String> = now.actions.iter().map(|a| a.to_string()).collect();
        return Some(format!(
            "`{}` on {} ({}) drifted since the plan was saved: planned [{}], now [{}]",
            now.kind,
            now.target,
            now.key,
            was.join("; "),
            is.join("; ")
        ));
    }
    None
}
