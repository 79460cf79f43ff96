//! The engine session shared by every command flow: resolve inputs into a
//! [`Prepared`], run the script once in a mode ([`execute`]), the runtime,
//! signal handling, and how long runs keep their ssh masters.

use super::*;

pub(super) fn prepare(
    req: &Request,
    journal_params: BTreeMap<String, toml::Value>,
    audit: &mut Audit,
) -> Result<Prepared, Error> {
    let runbook = Arc::new(Runbook::load(&req.runbook)?);
    audit.runbook(&runbook);
    let mut env = process_env();
    ssh_persist(&env)?;
    check_ssh_max_masters(&env)?;
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
    let max_parallel = req
        .max_parallel
        .unwrap_or(crate::fanout::DEFAULT_MAX_PARALLEL);
    check_masters_cover_on_cap(&env, max_parallel, req.max_parallel.is_some())?;
    Ok(Prepared {
        runbook,
        inputs: ScriptInputs {
            hosts,
            params: values.values,
            secret_params: values.secret,
            declared,
            any_group: false,
            max_parallel,
        },
        env,
        secrets,
        workspace,
        lab: req.lab.clone(),
        limit,
        shared,
    })
}

pub(super) fn sources(runbook: &Runbook) -> Sources {
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
pub(super) fn public_params(inputs: &ScriptInputs) -> BTreeMap<String, serde_json::Value> {
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

/// Run the script once.
pub(super) fn execute(
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
    .with_limit(p.limit.clone())
    .with_max_masters(ssh_max_masters(&p.env, p.inputs.max_parallel));
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

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
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
pub(super) async fn next_signal(
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
pub(super) fn watch_interrupts(
    rt: &tokio::runtime::Runtime,
    cancel: Arc<AtomicBool>,
) -> Result<(), Error> {
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

/// How long runs keep their ssh masters for the next run:
/// `CAIRN_SSH_PERSIST` seconds (default 120; `0` turns sharing off).
pub(super) fn ssh_persist(env: &BTreeMap<String, String>) -> Result<u64, Error> {
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

/// How many ssh masters a run or plan keeps open at once:
/// `CAIRN_SSH_MAX_MASTERS` (a number >= 1), else twice the run's `on()` cap
/// (`--max-parallel`, default 32, so 64): room for every running branch's
/// host and one more each (an etcd client's forward through another member,
/// a nested `on`), while 200 hosts do not keep 200 ssh processes. An
/// unparsable value is refused in `prepare`.
fn ssh_max_masters(env: &BTreeMap<String, String>, max_parallel: usize) -> Option<usize> {
    match env.get("CAIRN_SSH_MAX_MASTERS") {
        Some(v) => v.trim().parse::<usize>().ok().filter(|n| *n >= 1),
        None => Some(max_parallel.saturating_mul(2)),
    }
}

/// `CAIRN_SSH_MAX_MASTERS`, if set, must be a number >= 1.
fn check_ssh_max_masters(env: &BTreeMap<String, String>) -> Result<(), Error> {
    match env.get("CAIRN_SSH_MAX_MASTERS") {
        Some(v) if v.trim().parse::<usize>().ok().filter(|n| *n >= 1).is_none() => {
            Err(Error::input(
                "CAIRN_SSH_MAX_MASTERS",
                format!(
                    "CAIRN_SSH_MAX_MASTERS=`{v}` is not a number >= 1 (how many ssh \
                 connections a run keeps open at once; default twice --max-parallel)"
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// A cap on ssh masters below the run's `on()` cap is refused: up to
/// `max_parallel` hosts run at once, each needing a master of its own, so
/// with fewer masters the branches close each other's masters between
/// commands and reconnect all the time (27 hosts with 8 masters and an
/// `on()` cap of 32: 68.7 s and 1.2 s of cairn CPU per host, against 23 s and
/// 0.12 s). Refused rather than raised: the operator set the cap (file
/// descriptors, a bastion's session limit), so cairn keeps to it or says
/// which of the two numbers to change. `given`: `--max-parallel` (or
/// `CAIRN_MAX_PARALLEL`) was set, not the default.
fn check_masters_cover_on_cap(
    env: &BTreeMap<String, String>,
    max_parallel: usize,
    given: bool,
) -> Result<(), Error> {
    let Some(masters) = env
        .get("CAIRN_SSH_MAX_MASTERS")
        .and_then(|v| v.trim().parse::<usize>().ok())
    else {
        return Ok(());
    };
    if masters >= max_parallel {
        return Ok(());
    }
    let source = if given {
        format!("--max-parallel {max_parallel}")
    } else {
        format!("--max-parallel {max_parallel}, the default")
    };
    Err(Error::input(
        "CAIRN_SSH_MAX_MASTERS",
        format!(
            "CAIRN_SSH_MAX_MASTERS={masters} is below the run's on() cap ({source}):              up to {max_parallel} hosts run at once, each with its own ssh master, so they              would close each other's masters between commands and reconnect all the time;              set CAIRN_SSH_MAX_MASTERS to at least {max_parallel} (or leave it unset: twice              --max-parallel), or run with --max-parallel {masters} or less"
        ),
    ))
}

/// Where and how long runs keep their ssh masters (checked in `prepare`).
pub(super) fn shared_ssh(env: &BTreeMap<String, String>) -> Option<(PathBuf, std::time::Duration)> {
    match ssh_persist(env) {
        Ok(0) | Err(_) => None,
        Ok(secs) => Some((Pool::shared_dir()?, std::time::Duration::from_secs(secs))),
    }
}

pub(super) fn new_run_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    format!(
        "{}-{:04x}",
        now.format(&fmt).unwrap_or_default(),
        rand::random::<u16>()
    )
}

pub(super) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(super) fn ensure_workspace(ws: &Workspace) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(ws.root())
        .map_err(Error::io("create", ws.root()))?;
    Ok(ws.check_private_dirs()?)
}
