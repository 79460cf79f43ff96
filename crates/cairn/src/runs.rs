//! `cairn runs`: the runs in the workspace and their steps.
//!
//! `cairn runs` lists them oldest first with a readable start time (UTC,
//! to the second); `cairn runs show ID` (or `last`) shows one run: a failed
//! run's failed step and error first, then every step with its actions,
//! commands in full.

use crate::error::{Error, Success};
use crate::journal::{Journal, Record, RunStatus};
use crate::workspace::Workspace;
use std::path::{Path, PathBuf};

fn status_word(j: &Journal) -> &'static str {
    match j.status() {
        Some(RunStatus::Succeeded) => "succeeded",
        Some(RunStatus::Failed) => "failed",
        Some(RunStatus::Interrupted) => "interrupted",
        None => "unfinished",
    }
}

/// An RFC 3339 time as `2026-12-01 11:31:37 UTC` (the text itself when it
/// does not parse).
pub fn readable_time(rfc3339: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::parse(rfc3339, &Rfc3339)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&fmt).ok())
        .map(|t| format!("{t} UTC"))
        .unwrap_or_else(|| rfc3339.to_string())
}

/// The run ids of the workspace, oldest first: by the start time in each
/// journal's header (to the nanosecond), then by id. An id holds its start
/// time only to the second and then a random suffix, so two runs started in
/// the same second (a run refused at once, then the next one) would sort by
/// chance. A journal without a readable header sorts by its id's second.
pub fn run_ids(ws: &Workspace) -> Vec<String> {
    use time::format_description::well_known::Rfc3339;
    let runs = ws.runs_dir();
    let mut ids: Vec<(Option<time::OffsetDateTime>, String)> = std::fs::read_dir(&runs)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .map(|id| {
                    let started = Journal::read(&runs.join(&id).join("journal.jsonl"))
                        .ok()
                        .and_then(|j| {
                            time::OffsetDateTime::parse(&j.header.started_at, &Rfc3339).ok()
                        })
                        .or_else(|| id_time(&id));
                    (started, id)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.into_iter().map(|(_, id)| id).collect()
}

/// The start time an id carries (`20261201-180116-abcd`: to the second, UTC).
fn id_time(id: &str) -> Option<time::OffsetDateTime> {
    let fmt = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::PrimitiveDateTime::parse(id.get(..15)?, &fmt)
        .ok()
        .map(|t| t.assume_utc())
}

/// List runs, newest last.
pub fn list(state_dir: &Path) -> Result<Success, Error> {
    let ws = Workspace::new(state_dir);
    let ids = run_ids(&ws);
    if ids.is_empty() {
        println!("no runs in {}", ws.runs_dir().display());
        return Ok(Success::Done);
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
                readable_time(&j.header.started_at)
            ),
            Err(e) => println!("{id:<22} {:<12} {e}", "unreadable"),
        }
    }
    Ok(Success::Done)
}

/// `text` with every line indented by `indent`.
fn indented(text: &str, indent: &str) -> String {
    text.trim_end()
        .lines()
        .map(|l| format!("{indent}{l}\n"))
        .collect()
}

/// Why a run that did not succeed stopped: its failed steps (those not done
/// later by a resume) with their errors, else the run's own error.
fn failure_text(j: &Journal) -> String {
    let mut text = String::new();
    let mut done_after = std::collections::BTreeSet::new();
    let mut failed = Vec::new();
    for r in j.records.iter().rev() {
        match r {
            Record::Done { key, .. } => {
                done_after.insert(key.clone());
            }
            Record::Fail {
                key,
                kind,
                target,
                error,
            } if !done_after.contains(key) => failed.push((key, kind, target, error)),
            // only the last attempt's failures
            Record::Resume { .. } if !failed.is_empty() => break,
            _ => {}
        }
    }
    failed.reverse();
    for (key, kind, target, error) in failed {
        text.push_str(&format!("  failed step: {kind} on {target} ({key})\n"));
        text.push_str(&indented(error, "      "));
    }
    if text.is_empty() {
        let end_error = j.records.iter().rev().find_map(|r| match r {
            Record::End { error, .. } => Some(error.clone()),
            Record::Resume { .. } => Some(None),
            _ => None,
        });
        if let Some(Some(error)) = end_error {
            text.push_str("  error:\n");
            text.push_str(&indented(&error, "      "));
        }
    }
    text
}

/// Show one run's steps; `id` may be `last` (the newest run).
pub fn show(state_dir: &Path, id: &str) -> Result<Success, Error> {
    let ws = Workspace::new(state_dir);
    let id = if id == "last" {
        run_ids(&ws)
            .pop()
            .ok_or_else(|| Error::resume(None, format!("no runs in {}", ws.runs_dir().display())))?
    } else {
        id.to_string()
    };
    let path = ws.runs_dir().join(&id).join("journal.jsonl");
    if !path.exists() {
        return Err(Error::resume(
            Some(&id),
            format!(
                "no run `{id}` in {} (see `cairn runs`; `last` is the newest)",
                ws.runs_dir().display()
            ),
        ));
    }
    let j = Journal::read(&path)?;
    let h = &j.header;
    println!(
        "Run {}: {} {} ({})",
        h.id,
        h.runbook,
        h.version,
        status_word(&j)
    );
    println!(
        "  source {}  started {}",
        h.source,
        readable_time(&h.started_at)
    );
    if let Some(limit) = &h.limit {
        println!("  limit {limit} ({})", h.limit_hosts.join(", "));
    }
    if matches!(
        j.status(),
        Some(RunStatus::Failed) | Some(RunStatus::Interrupted)
    ) {
        print!("{}", failure_text(&j));
    }
    println!("  steps:");
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
                println!("  done  {target:<12} {kind:<12} {key} ({ms} ms)");
                for a in actions {
                    println!("          {a}");
                }
            }
            Record::Fail {
                key,
                kind,
                target,
                error,
            } => {
                println!("  FAIL  {target:<12} {kind:<12} {key}:");
                print!("{}", indented(error, "          "));
            }
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
                    "  -- resumed at {}{}{with}",
                    readable_time(at),
                    if *forced { " (forced)" } else { "" }
                )
            }
            Record::End { status, at, .. } => {
                println!("  -- ended {status:?} at {}", readable_time(at))
            }
            Record::Start { .. } | Record::Run(_) => {}
        }
    }
    Ok(Success::Done)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_are_read_in_utc_to_the_second() {
        assert_eq!(
            readable_time("2026-12-01T11:31:37.123456Z"),
            "2026-12-01 11:31:37 UTC"
        );
        assert_eq!(
            readable_time("2026-12-01T12:31:37+01:00"),
            "2026-12-01 11:31:37 UTC"
        );
        assert_eq!(readable_time("garbage"), "garbage");
    }

    #[test]
    fn an_id_carries_its_start_second() {
        let t = id_time("20261201-180116-0a1b").unwrap();
        assert_eq!((t.hour(), t.minute(), t.second(), t.day()), (18, 1, 16, 1));
        assert_eq!(id_time("not-an-id"), None);
    }
}
