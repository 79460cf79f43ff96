//! `cairn resume`: continue a run from its journal with the values it
//! started with.

use super::*;

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
    audited(
        (state_dir, r.shared.as_ref()),
        crate::audit::Command::Resume,
        audit,
        |audit| resume_inner(state_dir, r, audit),
    )
}

/// A resume of a run that already succeeded.
pub(super) fn already_succeeded(id: &str) -> Error {
    Error::resume(
        Some(id),
        format!("run {id} already succeeded; nothing to resume (start a new one with `cairn run`)"),
    )
}

/// A resume continues a run with the values it started with: only secret
/// parameters (never journaled) may be given again.
pub(super) fn only_secrets(
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

pub(super) fn resume_inner(
    state_dir: &Path,
    r: &ResumeRequest,
    audit: &mut Audit,
) -> Result<Success, Error> {
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
pub(super) fn same_limit(id: &str, run: Option<&str>, now: Option<&str>) -> Result<(), Error> {
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
