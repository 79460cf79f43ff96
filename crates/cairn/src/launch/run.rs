//! `cairn run`: lock, journal, apply, and end the journal.

use super::*;

/// `cairn run`.
pub fn run(req: &Request) -> Result<Success, Error> {
    audited(
        (&req.state_dir, req.shared.as_ref()),
        crate::audit::Command::Run,
        Audit::new(&req.runbook),
        |audit| run_inner(req, audit),
    )
}

pub(super) fn run_inner(req: &Request, audit: &mut Audit) -> Result<Success, Error> {
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

/// A run that ended without an error text (cannot happen: a failed or
/// interrupted run has one).
pub(super) fn unknown() -> ScriptError {
    ScriptError {
        message: "the run stopped".into(),
        at: None,
        step: None,
        hosts: Vec::new(),
        shown: "the run stopped\n".into(),
    }
}

/// The team state's refusal inside a journal error, if that is what it is.
pub(super) fn refusal(e: &std::io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<crate::state::sync::Refused>())
        .map(|r| r.0.clone())
}

/// The error for a journal that cannot take another record: what happened
/// and what to do.
pub(super) fn journal_full(path: &Path, id: &str, e: std::io::Error) -> Error {
    Error::JournalFull {
        path: path.to_path_buf(),
        id: id.to_string(),
        source: e,
    }
}

pub(super) fn finish(
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
