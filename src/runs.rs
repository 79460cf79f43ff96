//! `cairn runs`: the runs in the workspace and their steps.

use crate::journal::{Journal, Record, RunStatus};
use crate::launch::exit;
use crate::workspace::Workspace;
use std::path::Path;

fn status_word(j: &Journal) -> &'static str {
    match j.status() {
        Some(RunStatus::Succeeded) => "succeeded",
        Some(RunStatus::Failed) => "failed",
        Some(RunStatus::Interrupted) => "interrupted",
        None => "unfinished",
    }
}

/// List runs, newest last.
pub fn list(state_dir: &Path) -> i32 {
    let ws = Workspace::new(state_dir);
    let mut ids: Vec<String> = std::fs::read_dir(ws.runs_dir())
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    if ids.is_empty() {
        println!("no runs in {}", ws.runs_dir().display());
        return exit::OK;
    }
    println!(
        "{:<22} {:<12} {:<28} {:>6}  STARTED",
        "RUN", "STATUS", "RUNBOOK", "STEPS"
    );
    for id in ids {
        let path = ws.runs_dir().join(&id).join("journal.jsonl");
        match Journal::read(&path) {
            Ok(j) => println!(
                "{:<22} {:<12} {:<28} {:>6}  {}",
                id,
                status_word(&j),
                format!("{} {}", j.header.runbook, j.header.version),
                j.done_steps().len(),
                j.header.started_at
            ),
            Err(e) => println!("{id:<22} {:<12} {e}", "unreadable"),
        }
    }
    exit::OK
}

/// Show one run's steps.
pub fn show(state_dir: &Path, id: &str) -> i32 {
    let ws = Workspace::new(state_dir);
    let path = ws.runs_dir().join(id).join("journal.jsonl");
    let j = match Journal::read(&path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ERROR;
        }
    };
    let h = &j.header;
    println!(
        "Run {}: {} {} ({})",
        h.id,
        h.runbook,
        h.version,
        status_word(&j)
    );
    println!("  source {}  started {}", h.source, h.started_at);
    for r in &j.records {
        match r {
            Record::Done {
                key,
                kind,
                target,
                actions,
                ms,
                ..
            } => {
                let what: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
                println!("  done  {target:<12} {kind:<12} {key} ({ms} ms)");
                for w in what {
                    println!("          {w}");
                }
            }
            Record::Fail {
                key,
                kind,
                target,
                error,
            } => println!("  FAIL  {target:<12} {kind:<12} {key}: {error}"),
            Record::Resume {
                at,
                forced,
                runbook,
            } => {
                let with = match runbook {
                    Some(v) => format!(" with runbook {} ({})", v.version, v.content_hash),
                    None => String::new(),
                };
                println!(
                    "  -- resumed at {at}{}{with}",
                    if *forced { " (forced)" } else { "" }
                )
            }
            Record::End { status, at } => println!("  -- ended {status:?} at {at}"),
            Record::Start { .. } | Record::Run(_) => {}
        }
    }
    exit::OK
}
