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

/// A saved plan (`cairn plan -o`), applied as approved by `cairn run --plan`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    pub runbook: String,
    pub version: String,
    pub source: String,
    pub content_hash: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub offline: bool,
    /// The `--limit` it was made with (canonical), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    pub steps: Vec<StepRecord>,
    pub summary: crate::action::Summary,
}

impl SavedPlan {
    /// The saved plan's text, as `cairn plan -o FILE` writes it (pretty JSON,
    /// no final newline).
    pub fn to_text(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}

/// The digest of a saved plan: SHA-256 (hex) of its text, as written by
/// `cairn plan -o FILE` and read by `cairn run --plan FILE`, so the audit log's
/// digest is `sha256sum FILE`.
pub fn plan_digest(text: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text))
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

fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Names of environment variables whose values are secret.
fn is_secret_env(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSPHRASE", "API_KEY"]
        .iter()
        .any(|s| n.contains(s))
}

/// Read a lab's env file (`KEY=VALUE` lines).
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read", path))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Read an inventory file (see [`crate::inventory::read`]).
pub fn read_inventory(path: &Path) -> Result<Vec<Host>, Error> {
    crate::inventory::read(path)
}

fn lab_files(name: &str) -> (PathBuf, PathBuf) {
    let paths = crate::lab::paths(name);
    (paths.inventory, paths.env)
}

fn prepare(
    req: &Request,
    journal_params: BTreeMap<String, toml::Value>,
    audit: &mut Audit,
) -> Result<Prepared, Error> {
    let runbook = Arc::new(Runbook::load(&req.runbook)?);
    audit.runbook(&runbook);
    let mut env = process_env();
    ssh_persist(&env)?;
    let mut inventory = req.inventory.clone();
    if let Some(lab) = &req.lab {
        let (inv, env_file) = lab_files(lab);
        if !env_file.exists() {
            return Err(Error::input(
                "--lab",
                format!(
                    "lab `{lab}` is not up (no {}); start it with `cairn lab up --name {lab}`",
                    env_file.display()
                ),
            ));
        }
        env.extend(read_env_file(&env_file)?);
        if inventory.is_none() {
            inventory = Some(inv);
        }
    }
    let hosts = match &inventory {
        Some(p) => read_inventory(p)?,
        None => Vec::new(),
    };
    let limit = match &req.limit {
        Some(spec) => Some(Arc::new(Limit::resolve(spec, &hosts).map_err(|why| {
            let from = match &inventory {
                Some(p) => format!(" (inventory {})", p.display()),
                None => " (no --inventory or --lab given)".to_string(),
            };
            Error::input("--limit", format!("{why}{from}"))
        })?)),
        None => None,
    };
    let mut files = Vec::new();
    for path in &req.vars_files {
        let table = read_vars_file(path)?;
        files.push((path.display().to_string(), table));
    }
    let values = resolve(
        &runbook.manifest,
        &Inputs {
            files,
            vars: req.vars.clone(),
            journal: journal_params,
        },
        &env,
    )?;
    // A script that does not compile stops here, before any journal exists.
    let mut scope = rhai::Scope::new();
    scope.push_constant("params", ());
    let engine = crate::engine::compile_engine();
    if let Err(e) = engine.compile_with_scope(&scope, &runbook.script) {
        return Err(render_parse(&e, "main.rhai", &sources(&runbook)).into());
    }
    let declared = runbook
        .manifest
        .params
        .names()
        .into_iter()
        .map(String::from)
        .collect();
    let shared = match &req.shared {
        Some(opts) => Some(Arc::new(crate::state::Shared::connect(
            opts,
            &req.state_dir,
        )?)),
        None => None,
    };
    let workspace = match &shared {
        Some(s) => s.cache.clone(),
        None => {
            Workspace::new(std::path::absolute(&req.state_dir).unwrap_or(req.state_dir.clone()))
        }
    };
    workspace.check_private_dirs()?;
    let secrets = Secrets::default();
    for (k, v) in &env {
        if is_secret_env(k) {
            secrets.add(v);
        }
    }
    for name in &values.secret {
        if let Some(v) = values.values.get(name).and_then(|v| v.as_str()) {
            secrets.add(v);
        }
    }
    Ok(Prepared {
        runbook,
        inputs: ScriptInputs {
            hosts,
            params: values.values,
            secret_params: values.secret,
            declared,
            any_group: false,
            max_parallel: req
                .max_parallel
                .unwrap_or(crate::fanout::DEFAULT_MAX_PARALLEL),
        },
        env,
        secrets,
        workspace,
        lab: req.lab.clone(),
        limit,
        shared,
    })
}

fn sources(runbook: &Runbook) -> Sources {
    let mut s = Sources::default();
    for (name, text) in stdlib_modules() {
        s.add(name.clone(), name, text);
    }
    for (path, bytes) in runbook.bundle.files() {
        if path.extension().is_some_and(|e| e == "rhai") {
            if let Ok(text) = std::str::from_utf8(bytes) {
                let name = path.display().to_string();
                s.add(name.clone(), format!("{}/{name}", runbook.label), text);
            }
        }
    }
    s
}

/// Public parameter values for journals and plans (secrets as `null`).
fn public_params(inputs: &ScriptInputs) -> BTreeMap<String, serde_json::Value> {
    inputs
        .params
        .iter()
        .map(|(k, v)| {
            let value = if inputs.secret_params.contains(k) {
                serde_json::Value::Null
            } else {
                serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
            };
            (k.clone(), value)
        })
        .collect()
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

/// Run the script once.
fn execute(
    p: &Prepared,
    pass: Pass,
    rt: &tokio::runtime::Runtime,
    cancel: Arc<AtomicBool>,
) -> Result<Outcome, Error> {
    let Pass {
        mode,
        journal,
        replay,
        force,
        reporter,
        approved,
    } = pass;
    // Plans must leave the workspace untouched: host keys seen while planning
    // go to a scratch copy of known_hosts.
    let scratch = Scratch::new().map_err(Error::io(
        "create a scratch folder in",
        std::env::temp_dir(),
    ))?;
    let known_hosts = match mode {
        Mode::Apply => p.workspace.known_hosts(),
        _ => {
            let copy = scratch.path().join("known_hosts");
            let _ = std::fs::copy(p.workspace.known_hosts(), &copy);
            copy
        }
    };
    // Runs share their ssh masters with the next run (see `Pool::shared`);
    // plans pin host keys in a scratch file, so theirs stay private.
    let ssh = match (mode, shared_ssh(&p.env)) {
        (Mode::Apply, Some((dir, persist))) => Pool::shared(known_hosts, dir, persist),
        _ => Pool::new(known_hosts),
    }
    .with_limit(p.limit.clone());
    let ctx = Ctx {
        workspace: p.workspace.clone(),
        ssh,
        http: reqwest::Client::new(),
        bundle: p.runbook.bundle.clone(),
        env: p.env.clone(),
    };
    let exec = Arc::new(Executor::new(ExecutorSetup {
        mode,
        ctx,
        handle: rt.handle().clone(),
        journal,
        replay,
        force,
        secrets: p.secrets.clone(),
        reporter,
        cancel: cancel.clone(),
        approved,
        limit: p.limit.clone(),
    }));
    let engine = build_engine(&exec, &p.runbook, &p.inputs);
    let sources = sources(&p.runbook);
    let script_name = "main.rhai";
    let mut scope = rhai::Scope::new();
    scope.push(
        "params",
        Params::new(params_map(&p.inputs, &p.secrets), p.inputs.declared.clone()),
    );
    let error = match engine.compile_with_scope(&scope, &p.runbook.script) {
        Err(e) => Some(render_parse(&e, script_name, &sources)),
        Ok(mut ast) => {
            ast.set_source(script_name);
            match engine.run_ast_with_scope(&mut scope, &ast) {
                Ok(()) => None,
                Err(e) => {
                    Some(render_eval(e, script_name, &sources).redacted(|t| p.secrets.redact(t)))
                }
            }
        }
    };
    rt.block_on(exec.ctx().ssh.close_all());
    drop(scratch);
    Ok(Outcome {
        steps: exec.steps(),
        error,
        interrupted: cancel.load(Ordering::SeqCst),
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::System {
            what: "start the async runtime",
            source,
        })
}

/// The name of the next of these signals to arrive.
async fn next_signal(
    int: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
    hup: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = int.recv() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
        _ = hup.recv() => "SIGHUP",
    }
}

/// First Ctrl-C, SIGTERM (a CI cancel, `kill`) or SIGHUP (a closed
/// terminal): stop between steps, so the run ends "interrupted". Second: exit
/// at once (the journal is consistent at every record, so resume still works),
/// removing this process's scratch folders first. The handlers are in place
/// when this returns.
fn watch_interrupts(rt: &tokio::runtime::Runtime, cancel: Arc<AtomicBool>) -> Result<(), Error> {
    use tokio::signal::unix::{signal, SignalKind};
    let _enter = rt.enter();
    let handler = |source| Error::System {
        what: "install signal handlers",
        source,
    };
    let mut int = signal(SignalKind::interrupt()).map_err(handler)?;
    let mut term = signal(SignalKind::terminate()).map_err(handler)?;
    let mut hup = signal(SignalKind::hangup()).map_err(handler)?;
    rt.spawn(async move {
        let first = next_signal(&mut int, &mut term, &mut hup).await;
        cancel.store(true, Ordering::SeqCst);
        eprintln!(
            "\ninterrupt ({first}): stopping after the steps under way (Ctrl-C or SIGTERM again to quit now)"
        );
        let second = next_signal(&mut int, &mut term, &mut hup).await;
        eprintln!("interrupt ({second}): quitting now");
        crate::scratch::remove_own();
        // The one exit outside main.rs: quitting now means not unwinding to it.
        std::process::exit(exit::INTERRUPTED);
    });
    Ok(())
}

/// A stand-in value for parameter `name` in `cairn check`: its default, except
/// that secrets and text without a value (no default, or `""`) are
/// placeholders (unknown); numbers and booleans without a default cannot be
/// unknown and take their first choice or smallest value.
fn check_value(name: &str, p: &crate::manifest::Param) -> toml::Value {
    use crate::manifest::ParamType;
    let unknown = toml::Value::String(crate::unknown::placeholder(
        "run",
        &format!("params.{name}"),
    ));
    if let Some(c) = p.choices.as_ref().and_then(|c| c.first()) {
        return p.default.clone().unwrap_or_else(|| c.clone());
    }
    match &p.default {
        // "" is how manifests say "not given": unknown here
        Some(toml::Value::String(d)) if d.is_empty() => return unknown,
        _ if p.kind == ParamType::Secret => return unknown,
        Some(d) => return d.clone(),
        None => {}
    }
    match p.kind {
        ParamType::Int => toml::Value::Integer(p.min.unwrap_or(1)),
        ParamType::Bool => toml::Value::Boolean(false),
        ParamType::List => toml::Value::Array(vec![unknown]),
        ParamType::Map => toml::Value::Table(toml::Table::new()),
        // text of any kind (string, ip, cidr, hostname, path, url, ...)
        _ => unknown,
    }
}

/// `cairn check`: run the script once with no network and nothing known —
/// placeholder hosts (standing for any group), placeholder parameters, no
/// environment, a scratch workspace — as an offline plan does. It catches what
/// a plan would catch except facts: unknown option keys, wrong argument types,
/// unknown functions, missing imports, undefined parameters and template
/// variables. Returns the number of steps planned, or the error.
pub fn check_offline(runbook: Runbook) -> Result<usize, Error> {
    let scratch = Scratch::new().map_err(Error::io(
        "create a scratch folder in",
        std::env::temp_dir(),
    ))?;
    let m = &runbook.manifest;
    let params = m
        .params
        .iter()
        .map(|(name, p)| (name.clone(), check_value(name, p)))
        .collect();
    let secret_params = m
        .params
        .iter()
        .filter(|(_, p)| p.kind == crate::manifest::ParamType::Secret)
        .map(|(n, _)| n.clone())
        .collect();
    let hosts = (1..=3)
        .map(|i| {
            let name = format!("host-{i}");
            let address = crate::unknown::placeholder("run", &format!("{name}.address"));
            Host::new(name, address)
        })
        .collect();
    let p = Prepared {
        inputs: ScriptInputs {
            hosts,
            params,
            secret_params,
            declared: m.params.names().into_iter().map(String::from).collect(),
            any_group: true,
            max_parallel: crate::fanout::DEFAULT_MAX_PARALLEL,
        },
        runbook: Arc::new(runbook),
        env: BTreeMap::new(),
        secrets: Secrets::default(),
        workspace: Workspace::new(scratch.path().join("workspace")),
        lab: None,
        limit: None,
        shared: None,
    };
    let rt = runtime()?;
    let reporter = Arc::new(Reporter::quiet());
    let cancel = Arc::new(AtomicBool::new(false));
    let out = execute(&p, Pass::plan(Mode::Offline, reporter), &rt, cancel)?;
    match out.error {
        Some(e) => Err(e.into()),
        None => Ok(out.steps.len()),
    }
}

/// `cairn plan`: [`Success::Done`] when nothing would change,
/// [`Success::Changes`] when something would.
pub fn plan(req: &Request, offline: bool) -> Result<Success, Error> {
    let mut audit = Audit::new(&req.runbook);
    let result = plan_inner(req, offline, &mut audit);
    record_audit(
        (&req.state_dir, req.shared.as_ref()),
        crate::audit::Command::Plan,
        &audit,
        crate::error::exit_code(&result),
    );
    result
}

fn plan_inner(req: &Request, offline: bool, audit: &mut Audit) -> Result<Success, Error> {
    let p = prepare(req, BTreeMap::new(), audit)?;
    let rt = runtime()?;
    let cancel = Arc::new(AtomicBool::new(false));
    watch_interrupts(&rt, cancel.clone())?;
    if let Some(holder) = crate::lock::holder(&p.workspace) {
        eprintln!(
            "note: a run is in progress in this workspace ({holder}); this plan shows the targets \
             as they are now, while that run changes them"
        );
    } else if let Some(shared) = &p.shared {
        crate::state::plan_view(shared)?;
    }
    let reporter = Arc::new(if req.json {
        Reporter::new(false, false, Box::new(std::io::stderr()))
    } else {
        Reporter::stdout(false)
    });
    let mode = if offline { Mode::Offline } else { Mode::Plan };
    let progress = reporter.tick(rt.handle());
    audit.started = true;
    let out = execute(&p, Pass::plan(mode, reporter.clone()), &rt, cancel)?;
    audit.interrupted = out.interrupted;
    progress.abort();
    if let Some(err) = out.error {
        // what the script printed before it failed, as a run would show it
        print!("{}", reporter.held_output());
        return Err(err.into());
    }
    let summary = summarize(&out.steps);
    let saved = SavedPlan {
        runbook: p.runbook.manifest.name.clone(),
        version: p.runbook.manifest.version.to_string(),
        source: p.runbook.source.clone(),
        content_hash: p.runbook.content_hash(),
        params: public_params(&p.inputs),
        offline,
        limit: p.limit.as_ref().map(|l| l.spec()),
        steps: out.steps.clone(),
        summary,
    };
    let json = saved.to_text().map_err(|source| Error::Encode {
        what: "the plan",
        source,
    })?;
    audit.plan_digest = Some(plan_digest(json.as_bytes()));
    if let Some(path) = &req.save_plan {
        std::fs::write(path, &json).map_err(Error::io("write plan", path))?;
    }
    if req.json {
        println!("{json}");
    } else {
        println!(
            "Plan for {} {}{}\n",
            p.runbook.manifest.name,
            p.runbook.manifest.version,
            if offline { " (offline)" } else { "" }
        );
        if let Some(limit) = &p.limit {
            println!(
                "Limited to {}; other hosts are not touched.\n",
                limit.describe()
            );
        }
        let view = PlanView {
            show_unchanged: req.show_unchanged,
            hosts: p.inputs.hosts.iter().map(|h| h.name.clone()).collect(),
        };
        print!("{}", reporter.plan_text(&view));
        if let Some(path) = &req.save_plan {
            println!(
                "Saved to {}; apply exactly this with `cairn run {} --plan {}`.",
                path.display(),
                req.runbook,
                path.display()
            );
        }
    }
    Ok(if summary.has_changes() {
        Success::Changes
    } else {
        Success::Done
    })
}

fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    format!(
        "{}-{:04x}",
        now.format(&fmt).unwrap_or_default(),
        rand::random::<u16>()
    )
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn ensure_workspace(ws: &Workspace) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(ws.root())
        .map_err(Error::io("create", ws.root()))?;
    Ok(ws.check_private_dirs()?)
}

/// `cairn run`.
pub fn run(req: &Request) -> Result<Success, Error> {
    let mut audit = Audit::new(&req.runbook);
    let result = run_inner(req, &mut audit);
    record_audit(
        (&req.state_dir, req.shared.as_ref()),
        crate::audit::Command::Run,
        &audit,
        crate::error::exit_code(&result),
    );
    result
}

/// Refuse a saved plan made for other inputs or targets before anything runs;
/// hand back its steps, which the run then checks every change against.
fn check_approved(
    p: &Prepared,
    rt: &tokio::runtime::Runtime,
    path: &Path,
    audit: &mut Audit,
) -> Result<BTreeMap<String, StepRecord>, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read plan", path))?;
    audit.plan_digest = Some(plan_digest(text.as_bytes()));
    let saved: SavedPlan = serde_json::from_str(&text).map_err(|e| Error::NotAPlan {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let refuse = |why: PlanRefusal| Error::PlanRefused {
        path: path.to_path_buf(),
        why,
    };
    if saved.offline {
        return Err(refuse(PlanRefusal::Offline));
    }
    if saved.source != p.runbook.source || saved.content_hash != p.runbook.content_hash() {
        return Err(refuse(PlanRefusal::RunbookChanged {
            plan: format!(
                "{} {} {}",
                saved.runbook, saved.version, &saved.content_hash
            ),
            now: format!(
                "{} {} {}",
                p.runbook.manifest.name,
                p.runbook.manifest.version,
                p.runbook.content_hash()
            ),
        }));
    }
    let now_limit = p.limit.as_ref().map(|l| l.spec());
    if saved.limit != now_limit {
        let shown = |l: &Option<String>| match l {
            Some(l) => format!("--limit {l}"),
            None => "no --limit".to_string(),
        };
        return Err(refuse(PlanRefusal::Limit {
            plan: shown(&saved.limit),
            now: shown(&now_limit),
        }));
    }
    if saved.params != public_params(&p.inputs) {
        return Err(refuse(PlanRefusal::Params));
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let fresh = execute(
        p,
        Pass::plan(Mode::Plan, Arc::new(Reporter::quiet())),
        rt,
        cancel,
    )?;
    if let Some(err) = fresh.error {
        return Err(err.into());
    }
    let by_key: BTreeMap<&str, &StepRecord> =
        saved.steps.iter().map(|s| (s.key.as_str(), s)).collect();
    let mut drifts: Vec<String> = fresh
        .steps
        .iter()
        .filter_map(|now| drift_of(by_key.get(now.key.as_str()).copied(), now))
        .collect();
    let now_keys: std::collections::BTreeSet<&str> =
        fresh.steps.iter().map(|s| s.key.as_str()).collect();
    for s in &saved.steps {
        if !now_keys.contains(s.key.as_str()) {
            drifts.push(format!(
                "planned step `{}` on {} ({}) would not run now",
                s.kind, s.target, s.key
            ));
        }
    }
    if drifts.is_empty() {
        Ok(saved
            .steps
            .into_iter()
            .map(|s| (s.key.clone(), s))
            .collect())
    } else {
        Err(refuse(PlanRefusal::Drifted(drifts)))
    }
}

fn run_inner(req: &Request, audit: &mut Audit) -> Result<Success, Error> {
    let p = prepare(req, BTreeMap::new(), audit)?;
    let rt = runtime()?;
    // A saved plan is checked against the state the run will use: the local
    // workspace as it is, or, with `--state`, the team state pulled after its
    // lock is taken (the cache may be stale until then).
    let mut approved = match (&req.approved_plan, &p.shared) {
        (Some(path), None) => Some(check_approved(&p, &rt, path, audit)?),
        _ => None,
    };
    ensure_workspace(&p.workspace)?;
    let _lock = WorkspaceLock::acquire(&p.workspace)?;
    let id = new_run_id();
    let session = match &p.shared {
        Some(shared) => Some(crate::state::begin(
            shared,
            "run",
            &p.runbook.manifest.name,
            &id,
            &p.secrets,
        )?),
        None => None,
    };
    if let (Some(path), Some(_)) = (&req.approved_plan, &p.shared) {
        approved = Some(check_approved(&p, &rt, path, audit)?);
    }
    let cancel = Arc::new(AtomicBool::new(false));
    watch_interrupts(&rt, cancel.clone())?;
    let header = RunHeader {
        id: id.clone(),
        runbook: p.runbook.manifest.name.clone(),
        version: p.runbook.manifest.version.to_string(),
        source: p.runbook.source.clone(),
        content_hash: p.runbook.content_hash(),
        params: public_params(&p.inputs),
        inventory: req.inventory.clone(),
        lab: p.lab.clone(),
        limit: p.limit.as_ref().map(|l| l.spec()),
        limit_hosts: p.limit.as_ref().map(|l| l.selected()).unwrap_or_default(),
        started_at: now_rfc3339(),
        cairn_version: env!("CARGO_PKG_VERSION").into(),
    };
    let dir = p.workspace.runs_dir().join(&id);
    let path = dir.join("journal.jsonl");
    let mut journal = JournalWriter::open(&path).map_err(Error::io("create journal", &path))?;
    if let Some(s) = &session {
        journal = journal.with_sink(s.journal(&id));
    }
    if let Err(e) = journal.append(&Record::Run(header), true) {
        if let Some(why) = refusal(&e) {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(Error::StateRefused {
                why,
                nothing_run: true,
                stopped: None,
            });
        }
        // a run without its header cannot be resumed: leave nothing behind
        let _ = std::fs::remove_dir_all(&dir);
        return Err(Error::JournalHeader { path, source: e });
    }
    audit.run_id = Some(id.clone());
    audit.started = true;
    println!(
        "Run {id}: {} {}",
        p.runbook.manifest.name, p.runbook.manifest.version
    );
    if let Some(limit) = &p.limit {
        println!(
            "Limited to {}; other hosts are not touched.",
            limit.describe()
        );
    }
    finish(
        &p,
        &rt,
        journal,
        (BTreeMap::new(), false),
        approved,
        (&id, session.as_ref()),
        cancel,
    )
}

/// A resume of a run that already succeeded.
fn already_succeeded(id: &str) -> Error {
    Error::resume(
        Some(id),
        format!("run {id} already succeeded; nothing to resume (start a new one with `cairn run`)"),
    )
}

/// A run that ended without an error text (cannot happen: a failed or
/// interrupted run has one).
fn unknown() -> ScriptError {
    ScriptError {
        message: "the run stopped".into(),
        at: None,
        step: None,
        shown: "the run stopped\n".into(),
    }
}

/// The team state's refusal inside a journal error, if that is what it is.
fn refusal(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<crate::state::sync::Refused>())
        .map(|r| r.0.clone())
}

/// The error for a journal that cannot take another record: what happened
/// and what to do.
fn journal_full(path: &Path, id: &str, e: std::io::Error) -> Error {
    Error::JournalFull {
        path: path.to_path_buf(),
        id: id.to_string(),
        source: e,
    }
}

fn finish(
    p: &Prepared,
    rt: &tokio::runtime::Runtime,
    journal: JournalWriter,
    (replay, force): (BTreeMap<String, crate::journal::DoneStep>, bool),
    approved: Option<BTreeMap<String, StepRecord>>,
    (id, session): (&str, Option<&Arc<crate::state::sync::Session>>),
    cancel: Arc<AtomicBool>,
) -> Result<Success, Error> {
    let started = Instant::now();
    let jpath = journal.path().to_path_buf();
    let reporter = Arc::new(Reporter::stdout(true));
    let progress = reporter.tick(rt.handle());
    let pass = Pass {
        mode: Mode::Apply,
        journal: Some(journal),
        replay,
        force,
        reporter: reporter.clone(),
        approved,
    };
    let out = execute(p, pass, rt, cancel)?;
    progress.abort();
    let status = match (&out.error, out.interrupted) {
        (None, _) => RunStatus::Succeeded,
        (Some(_), true) => RunStatus::Interrupted,
        (Some(_), false) => RunStatus::Failed,
    };
    // Re-opening cuts off a record a full disk left torn.
    let ended = JournalWriter::open(&jpath).and_then(|journal| {
        let mut journal = match session {
            Some(s) => journal.with_sink(s.journal(id)),
            None => journal,
        };
        journal.append(
            &Record::End {
                status,
                at: now_rfc3339(),
                error: out.error.as_ref().map(render_script),
            },
            true,
        )
    });
    if let Err(e) = ended {
        let cause = match refusal(&e) {
            Some(why) => Error::StateRefused {
                why,
                nothing_run: false,
                stopped: Some(id.to_string()),
            },
            None => journal_full(&jpath, id, e),
        };
        return Err(match out.error {
            Some(error) => Error::Unrecorded {
                error: Box::new(error.into()),
                cause: Box::new(cause),
            },
            None => cause,
        });
    }
    let summary = summarize(&out.steps);
    let secs = started.elapsed().as_secs_f64();
    match status {
        RunStatus::Succeeded => {
            println!(
                "\nRun {id} succeeded in {secs:.1}s: {} created, {} changed, {} deleted, {} ran, {} unchanged, {} verified.",
                summary.create, summary.change, summary.delete, summary.run, summary.unchanged, summary.verify
            );
            print!("{}", reporter.warnings_text());
            Ok(Success::Done)
        }
        RunStatus::Interrupted | RunStatus::Failed => {
            print!("{}", reporter.warnings_text());
            let (id, error) = (id.to_string(), Box::new(out.error.unwrap_or_else(unknown)));
            Err(if status == RunStatus::Interrupted {
                Error::Interrupted { id, secs, error }
            } else {
                Error::RunFailed { id, secs, error }
            })
        }
    }
}

/// Find a run's journal: `id`, or the last run that did not succeed.
pub fn find_run(ws: &Workspace, id: Option<&str>) -> Result<(String, PathBuf), Error> {
    let runs = ws.runs_dir();
    if let Some(id) = id {
        let path = runs.join(id).join("journal.jsonl");
        if !path.exists() {
            return Err(Error::resume(
                Some(id),
                format!("no run `{id}` in {} (see `cairn runs`)", runs.display()),
            ));
        }
        return Ok((id.to_string(), path));
    }
    // The newest run that did not succeed, refused ones included: a run
    // refused by a check changed nothing, and its error said to fix the cause
    // and resume it; an older unfinished run is never picked over it (its
    // changes are an older intent: resume it by its id).
    let ids = crate::runs::run_ids(ws);
    for id in ids.iter().rev() {
        let path = runs.join(id).join("journal.jsonl");
        match Journal::read(&path) {
            Ok(j) if j.status() == Some(RunStatus::Succeeded) => continue,
            _ => return Ok((id.clone(), path)),
        }
    }
    Err(Error::resume(
        None,
        format!("no unfinished run in {} to resume", runs.display()),
    ))
}

/// What `cairn resume` was given.
#[derive(Clone, Debug, Default)]
pub struct ResumeRequest {
    /// The run (default: the last one that did not succeed).
    pub id: Option<String>,
    /// Resume even though the runbook changed since.
    pub force: bool,
    /// `--var NAME=VALUE`: secret parameters only.
    pub vars: Vec<(String, String)>,
    /// `--vars FILE`: secret parameters only.
    pub vars_files: Vec<PathBuf>,
    /// `--max-parallel N`: as for `run` (not journaled: a resume may use another).
    pub max_parallel: Option<usize>,
    /// `--limit`: must be the run's own (journaled in its header).
    pub limit: Option<String>,
    /// `--state etcd://...`: resume a run of the team state.
    pub shared: Option<Arc<crate::state::StateOptions>>,
}

/// `cairn resume [ID]`.
pub fn resume(state_dir: &Path, r: &ResumeRequest) -> Result<Success, Error> {
    let mut audit = Audit::new("");
    audit.run_id = r.id.clone();
    let result = resume_inner(state_dir, r, &mut audit);
    record_audit(
        (state_dir, r.shared.as_ref()),
        crate::audit::Command::Resume,
        &audit,
        crate::error::exit_code(&result),
    );
    result
}

/// A resume continues a run with the values it started with: only secret
/// parameters (never journaled) may be given again.
fn only_secrets(
    p: &Prepared,
    r: &ResumeRequest,
    id: &str,
    runbook: &str,
    spec: &str,
) -> Result<(), Error> {
    let mut names: Vec<(String, String)> = r
        .vars
        .iter()
        .map(|(k, _)| (k.clone(), "--var".to_string()))
        .collect();
    for path in &r.vars_files {
        let table = read_vars_file(path)?;
        for k in table.keys() {
            names.push((k.clone(), format!("--vars {}", path.display())));
        }
    }
    for (name, origin) in names {
        if !p.inputs.secret_params.contains(&name) {
            return Err(Error::resume(
                Some(id),
                format!(
                    "`{name}` ({origin}) is not a secret parameter of {runbook}: `cairn resume` \
                     takes only secret parameters (they are never journaled); run {id} continues \
                     with the values it started with. For other values start a new run: \
                     `cairn run {spec} --var {name}=...`"
                ),
            ));
        }
    }
    Ok(())
}

fn resume_inner(state_dir: &Path, r: &ResumeRequest, audit: &mut Audit) -> Result<Success, Error> {
    // With team state: lock it and fill the cache first, then resume there.
    let (ws, early_lock, session) = match &r.shared {
        None => (Workspace::new(state_dir), None, None),
        Some(opts) => {
            let shared = Arc::new(crate::state::Shared::connect(opts, state_dir)?);
            let ws = shared.cache.clone();
            ensure_workspace(&ws)?;
            let lock = WorkspaceLock::acquire(&ws)?;
            let which = r.id.as_deref().unwrap_or("(the last unfinished)");
            let session = crate::state::begin(
                &shared,
                "resume",
                "(reading)",
                which,
                &crate::secrets::Secrets::default(),
            )?;
            (ws, Some(lock), Some(session))
        }
    };
    let (id, path) = find_run(&ws, r.id.as_deref())?;
    audit.run_id = Some(id.clone());
    // Everything is checked before the workspace is locked or written.
    let journal = Journal::read(&path)?;
    audit.runbook = journal.header.runbook.clone();
    audit.version = journal.runbook().version;
    if journal.status() == Some(RunStatus::Succeeded) {
        return Err(already_succeeded(&id));
    }
    let h = &journal.header;
    same_limit(&id, h.limit.as_deref(), r.limit.as_deref())?;
    let params: BTreeMap<String, toml::Value> = h
        .params
        .iter()
        .filter(|(_, v)| !v.is_null())
        .filter_map(|(k, v)| Some((k.clone(), toml::Value::try_from(v).ok()?)))
        .collect();
    let req = Request {
        runbook: h.source.clone(),
        vars: r.vars.clone(),
        vars_files: r.vars_files.clone(),
        inventory: h.inventory.clone(),
        lab: h.lab.clone(),
        state_dir: state_dir.to_path_buf(),
        max_parallel: r.max_parallel,
        limit: h.limit.clone(),
        shared: r.shared.clone(),
        ..Default::default()
    };
    if !h.source.starts_with("builtin:") && !Path::new(&h.source).is_dir() {
        return Err(Error::resume(
            Some(&id),
            format!(
                "cannot resume run {id}: its runbook folder {} is gone",
                h.source
            ),
        ));
    }
    let p = prepare(&req, params, audit)?;
    if let Some(limit) = &p.limit {
        if limit.selected() != h.limit_hosts {
            return Err(Error::resume(
                Some(&id),
                format!(
                    "cannot resume run {id}: --limit {} selected {} when the run started \
                     and selects {} now (the inventory changed); a resume touches the hosts the \
                     run started with: restore the inventory, or start a new run",
                    limit.spec(),
                    h.limit_hosts.join(", "),
                    limit.selected().join(", ")
                ),
            ));
        }
    }
    let spec = h.source.strip_prefix("builtin:").unwrap_or(&h.source);
    only_secrets(&p, r, &id, &h.runbook, spec)?;
    let was = journal.runbook();
    let now_hash = p.runbook.content_hash();
    let now_version = p.runbook.manifest.version.to_string();
    let changed = now_hash != was.content_hash || now_version != was.version;
    if changed && !r.force {
        return Err(Error::resume(
            Some(&id),
            format!(
                "cannot resume run {id}: runbook {} changed since the run started \
                 (version {} -> {now_version}, content {} -> {now_hash}); \
                 resume with --force to replay the done steps anyway and continue with the new runbook",
                h.runbook, was.version, was.content_hash
            ),
        ));
    }
    // The environment may give a parameter a value the run did not have; a
    // changed runbook (--force) may add parameters, which take their defaults.
    let now = public_params(&p.inputs);
    let differs = |k: &String| match (h.params.get(k), now.get(k)) {
        (Some(a), Some(b)) => a != b,
        (None, Some(_)) => !changed,
        (Some(_), None) => !changed,
        (None, None) => false,
    };
    if let Some(name) = now.keys().chain(h.params.keys()).find(|k| differs(k)) {
        let shown =
            |v: Option<&serde_json::Value>| v.map_or("no value".to_string(), |v| v.to_string());
        return Err(Error::resume(
            Some(&id),
            format!(
                "cannot resume run {id}: parameter `{name}` would be {} now but the run \
                 started with {} (from the environment?); a resume keeps the run's values: \
                 restore the environment, or start a new run with `cairn run`",
                shown(now.get(name)),
                shown(h.params.get(name)),
            ),
        ));
    }
    let rt = runtime()?;
    let _lock = match early_lock {
        Some(l) => l,
        None => WorkspaceLock::acquire(&ws)?,
    };
    if let Some(s) = &session {
        s.set_secrets(p.secrets.clone());
        s.lock.relabel(&h.runbook, &id)?;
    }
    let cancel = Arc::new(AtomicBool::new(false));
    watch_interrupts(&rt, cancel.clone())?;
    // Read again under the lock: what another writer did before is replayed.
    let journal = Journal::read(&path)?;
    if journal.status() == Some(RunStatus::Succeeded) {
        return Err(already_succeeded(&id));
    }
    let mut writer = JournalWriter::open(&path).map_err(Error::io("open journal", &path))?;
    if let Some(s) = &session {
        writer = writer.with_sink(s.journal(&id));
    }
    if writer.cut_off() > 0 {
        println!(
            "Journal {}: cut off its last record ({} bytes), which was not written whole; \
             continuing from the last whole record.",
            path.display(),
            writer.cut_off()
        );
    }
    writer
        .append(
            &Record::Resume {
                at: now_rfc3339(),
                forced: r.force,
                runbook: changed.then(|| RunbookVersion {
                    version: now_version.clone(),
                    content_hash: now_hash.clone(),
                }),
            },
            true,
        )
        .map_err(|e| match refusal(&e) {
            Some(why) => Error::StateRefused {
                why,
                nothing_run: false,
                stopped: None,
            },
            None => journal_full(&path, &id, e),
        })?;
    let replay = journal.done_steps();
    audit.version = now_version.clone();
    audit.started = true;
    println!(
        "Resuming run {id}: {} {} ({} steps done before)",
        h.runbook,
        now_version,
        replay.len()
    );
    finish(
        &p,
        &rt,
        writer,
        (replay, r.force),
        None,
        (&id, session.as_ref()),
        cancel,
    )
}

/// A resume must give the run's own `--limit` (in any order), or none when
/// the run had none; refused before anything runs, naming both.
fn same_limit(id: &str, run: Option<&str>, now: Option<&str>) -> Result<(), Error> {
    let set = |l: Option<&str>| -> Option<std::collections::BTreeSet<String>> {
        l.map(|l| Limit::items(l).into_iter().collect())
    };
    if set(run) == set(now) {
        return Ok(());
    }
    let shown = |l: Option<&str>| match l {
        Some(l) => format!("--limit {}", Limit::canonical(l)),
        None => "no --limit".to_string(),
    };
    let again = match run {
        Some(l) => format!("`cairn resume {id} --limit {l}`"),
        None => format!("`cairn resume {id}` without --limit"),
    };
    Err(Error::resume(
        Some(id),
        format!(
            "cannot resume run {id}: it started with {} and this resume has {}; a resume \
             touches the hosts the run started with: {again} (for other hosts start a new run)",
            shown(run),
            shown(now)
        ),
    ))
}

/// How long runs keep their ssh masters for the next run:
/// `CAIRN_SSH_PERSIST` seconds (default 120; `0` turns sharing off).
fn ssh_persist(env: &BTreeMap<String, String>) -> Result<u64, Error> {
    match env.get("CAIRN_SSH_PERSIST") {
        None => Ok(crate::ssh::SHARED_PERSIST.as_secs()),
        Some(v) => v.trim().parse::<u64>().map_err(|_| {
            Error::input(
                "CAIRN_SSH_PERSIST",
                format!(
                    "CAIRN_SSH_PERSIST=`{v}` is not a number of seconds \
                     (how long ssh connections wait for the next run; 0 closes them at exit)"
                ),
            )
        }),
    }
}

/// Where and how long runs keep their ssh masters (checked in `prepare`).
fn shared_ssh(env: &BTreeMap<String, String>) -> Option<(PathBuf, std::time::Duration)> {
    match ssh_persist(env) {
        Ok(0) | Err(_) => None,
        Ok(secs) => Some((Pool::shared_dir()?, std::time::Duration::from_secs(secs))),
    }
}

/// A `--vars` file: a TOML table, or an error naming the file (and the line).
fn read_vars_file(path: &std::path::Path) -> Result<toml::Table, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read vars file", path))?;
    toml::from_str(&text).map_err(|e| {
        Error::input(
            format!("--vars {}", path.display()),
            format!(
                "vars file {} is not valid TOML: {}",
                path.display(),
                crate::manifest::toml_message(&text, &e)
            ),
        )
    })
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
