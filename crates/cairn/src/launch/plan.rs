//! `cairn plan` and `cairn check`'s offline pass.

use super::*;

/// A stand-in value for parameter `name` in `cairn check`: its default, except
/// that secrets and text without a value (no default, or `""`) are
/// placeholders (unknown); numbers and booleans without a default cannot be
/// unknown and take their first choice or smallest value.
pub(super) fn check_value(name: &str, p: &crate::manifest::Param) -> toml::Value {
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
    audited(
        (&req.state_dir, req.shared.as_ref()),
        crate::audit::Command::Plan,
        Audit::new(&req.runbook),
        |audit| plan_inner(req, offline, audit),
    )
}

pub(super) fn plan_inner(
    req: &Request,
    offline: bool,
    audit: &mut Audit,
) -> Result<Success, Error> {
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
