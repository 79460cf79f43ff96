//! What cairn prints: a line per step and target as it finishes, plans grouped
//! per target with diffs, progress for slow steps, and summaries. Colour only
//! on a terminal.
//!
//! A plan is rendered from the reporter's log of what happened (steps,
//! `print()` lines, warnings), in sections: `local` and the cloud providers
//! first, then hosts in inventory order, then other hosts (e.g. servers a
//! cloud step created) in natural name order. Within a section, lines from
//! parallel `on(...)` branches are grouped per host in host order, so a plan
//! reads the same however the branches interleaved.

use crate::action::{Action, ActionKind, Summary};
use crate::executor::StepRecord;
use std::cmp::Ordering;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where and how output goes.
pub struct Reporter {
    /// Print a line per step as it finishes (runs), or stay quiet (plans, --json).
    live: bool,
    color: bool,
    /// Keep `print()` lines and warnings for the plan text instead of printing them now.
    hold: bool,
    out: Mutex<Box<dyn Write + Send>>,
    /// Progress lines (`… still running: ...`): stdout for runs, stderr for plans.
    progress_out: Mutex<Box<dyn Write + Send>>,
    /// Steps under way: key -> what, since when, how many progress lines so far.
    running: Mutex<std::collections::BTreeMap<String, Running>>,
    /// What happened, in arrival order.
    log: Mutex<Vec<Entry>>,
}

struct Running {
    what: String,
    since: Instant,
    reported: u32,
}

/// One thing that happened, with the step scope (`""` at top level,
/// `node-1/` inside `on(...)` for node-1) of the thread it happened on.
#[derive(Clone)]
enum Entry {
    Step { scope: String, step: StepRecord },
    Print { scope: String, text: String },
    Warn { scope: String, text: String },
}

impl Entry {
    fn scope(&self) -> &str {
        match self {
            Entry::Step { scope, .. } | Entry::Print { scope, .. } | Entry::Warn { scope, .. } => {
                scope
            }
        }
    }
}

/// How a plan is shown.
#[derive(Clone, Debug, Default)]
pub struct PlanView {
    /// List every `= ok` and `? verify` line (`--show-unchanged`, `-v`);
    /// otherwise each section counts them on one line.
    pub show_unchanged: bool,
    /// Host names in inventory order: the order of host sections.
    pub hosts: Vec<String>,
}

/// The first progress line for a step comes after this long ...
pub const PROGRESS_FIRST: Duration = Duration::from_secs(5);
/// ... and the next ones this often.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The last progress mark (5 s, 15 s, 25 s, ...) a step running for
/// `elapsed` has passed, as its index (0 for 5 s), or `None` before 5 s.
pub fn progress_mark(elapsed: Duration) -> Option<u32> {
    let past = elapsed.checked_sub(PROGRESS_FIRST)?;
    Some((past.as_secs() / PROGRESS_EVERY.as_secs()) as u32)
}

/// The time of progress mark `index`: 5 s, 15 s, 25 s, ...
pub fn mark_secs(index: u32) -> u64 {
    PROGRESS_FIRST.as_secs() + PROGRESS_EVERY.as_secs() * u64::from(index)
}

/// Targets that are cloud providers: their sections come right after `local`.
const CLOUDS: [&str; 2] = ["hetzner", "digitalocean"];

/// The section a line printed in `scope` belongs to: the innermost host of
/// `on(...)`, or `local` at top level.
fn section_of(scope: &str) -> String {
    scope
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("local")
        .to_string()
}

const RESET: &str = "\x1b[0m";

fn paint(color: bool, kind: ActionKind) -> &'static str {
    if !color {
        return "";
    }
    match kind {
        ActionKind::Create => "\x1b[32m",
        ActionKind::Change => "\x1b[33m",
        ActionKind::Delete => "\x1b[31m",
        ActionKind::Run => "\x1b[36m",
        ActionKind::Verify => "\x1b[35m",
        ActionKind::Noop => "\x1b[2m",
    }
}

/// Compare names with digit runs as numbers: `node-2` before `node-10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, xa), (db, xb)) in ca.iter().zip(&cb) {
        let o = if *da && *db {
            let (ta, tb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            xa.cmp(xb)
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// Sort key of a section or scope name: local, clouds, inventory hosts, others.
fn rank(name: &str, hosts: &[String]) -> (usize, usize) {
    if name == "local" {
        (0, 0)
    } else if let Some(i) = CLOUDS.iter().position(|c| *c == name) {
        (1, i)
    } else if let Some(i) = hosts.iter().position(|h| h == name) {
        (2, i)
    } else {
        (3, 0)
    }
}

fn order(a: &str, b: &str, hosts: &[String]) -> Ordering {
    rank(a, hosts)
        .cmp(&rank(b, hosts))
        .then_with(|| natural_cmp(a, b))
}

/// The first host of a scope (`node-1/` -> `node-1`), or `""` at top level.
fn scope_host(scope: &str) -> &str {
    scope.split('/').next().unwrap_or("")
}

/// Entries in a stable order: top-level entries stay where they are; each run
/// of entries from parallel branches between them is grouped per branch, in
/// host order (a stable sort, so each branch keeps its own sequence).
fn stable_order<'a>(entries: Vec<&'a Entry>, hosts: &[String]) -> Vec<&'a Entry> {
    let mut out = Vec::with_capacity(entries.len());
    let mut branch: Vec<&'a Entry> = Vec::new();
    for e in entries {
        if e.scope().is_empty() {
            branch.sort_by(|a, b| order(scope_host(a.scope()), scope_host(b.scope()), hosts));
            out.append(&mut branch);
            out.push(e);
        } else {
            branch.push(e);
        }
    }
    branch.sort_by(|a, b| order(scope_host(a.scope()), scope_host(b.scope()), hosts));
    out.append(&mut branch);
    out
}

impl Reporter {
    pub fn new(live: bool, color: bool, out: Box<dyn Write + Send>) -> Self {
        Reporter {
            live,
            color,
            hold: false,
            out: Mutex::new(out),
            progress_out: Mutex::new(Box::new(std::io::stderr())),
            running: Mutex::new(Default::default()),
            log: Mutex::new(Vec::new()),
        }
    }

    /// To stdout; colour when stdout is a terminal and NO_COLOR is unset.
    /// Live (runs): a line per step, progress on stdout. Not live (plans):
    /// `print()` lines are kept for the plan text, progress goes to stderr.
    pub fn stdout(live: bool) -> Self {
        use std::io::IsTerminal;
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let mut r = Self::new(live, color, Box::new(std::io::stdout()));
        r.hold = !live;
        if live {
            r.progress_out = Mutex::new(Box::new(std::io::stdout()));
        }
        r
    }

    /// Quiet: nothing printed (tests, --json).
    pub fn quiet() -> Self {
        let r = Self::new(false, false, Box::new(std::io::sink()));
        *r.progress_out.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(std::io::sink());
        r
    }

    fn log(&self, entry: Entry) {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry);
    }

    /// A step started; if it runs long, [`Reporter::progress`] says so.
    pub fn started(&self, key: &str, kind: &str, target: &str) {
        tracing::debug!(step = key, kind, target, "step started");
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key.to_string(),
                Running {
                    what: format!("{kind} on {target}"),
                    since: Instant::now(),
                    reported: 0,
                },
            );
    }

    fn finished(&self, key: &str) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// A line for every step still running after 5 s, then every 10 s:
    /// `… still running: apt on node-2 (15 s)`. Called about once a second.
    pub fn progress(&self) {
        let mut lines = String::new();
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            for r in running.values_mut() {
                // one line per mark passed since the last one (a late tick
                // skips the marks it missed), naming the mark: "(15 s)"
                let Some(mark) = progress_mark(r.since.elapsed()) else {
                    continue;
                };
                if mark + 1 > r.reported {
                    r.reported = mark + 1;
                    let (on, off) = if self.color {
                        ("\x1b[2m", RESET)
                    } else {
                        ("", "")
                    };
                    lines.push_str(&format!(
                        "{on}… still running: {} ({} s){off}\n",
                        r.what,
                        mark_secs(mark)
                    ));
                }
            }
        }
        if !lines.is_empty() {
            let mut out = self.progress_out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = out.write_all(lines.as_bytes());
            let _ = out.flush();
        }
    }

    /// Call [`Reporter::progress`] every second until the handle is aborted.
    pub fn tick(self: &Arc<Self>, rt: &tokio::runtime::Handle) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                me.progress();
            }
        })
    }

    fn print(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// A step finished (or was replayed).
    pub fn step(&self, step: &StepRecord) {
        self.finished(&step.key);
        self.log(Entry::Step {
            scope: crate::executor::current_scope(),
            step: step.clone(),
        });
        tracing::debug!(step = %step.key, kind = %step.kind, target = %step.target, ms = step.ms, replayed = step.replayed, "step finished");
        if !self.live {
            return;
        }
        let mut text = String::new();
        if step.replayed {
            text.push_str(&format!(
                "{:<14} {} {} (done before, replayed from the journal)\n",
                step.target, '↺', step.kind
            ));
        }
        for action in &step.actions {
            text.push_str(&format!(
                "{:<14} {}{}{}",
                step.target,
                paint(self.color, action.kind),
                action,
                if self.color { RESET } else { "" }
            ));
            if action.kind.is_change() && step.ms >= 100 {
                text.push_str(&format!(" [{:.1}s]", step.ms as f64 / 1000.0));
            }
            text.push('\n');
        }
        self.print(&text);
    }

    /// A step failed.
    pub fn failed(&self, key: &str, kind: &str, target: &str, error: &str) {
        self.finished(key);
        tracing::debug!(step = key, kind, target, "step failed");
        if !self.live {
            return;
        }
        let (on, off) = if self.color {
            ("\x1b[31m", RESET)
        } else {
            ("", "")
        };
        self.print(&format!(
            "{target:<14} {on}✗ {kind} failed ({key}){off}: {error}\n"
        ));
    }

    /// A script's `print(text)` in `scope`. In a run, as it happens: inside an
    /// `on(...)` branch each line is marked with its host (`node-1         | text`),
    /// at top level the text is printed as it is. In a plan: in the section of
    /// its host, or of `local` at top level.
    pub fn output(&self, scope: &str, text: &str) {
        self.log(Entry::Print {
            scope: scope.to_string(),
            text: text.to_string(),
        });
        if !self.hold {
            self.print(&print_lines(scope, text));
        }
    }

    /// The `print()` and `warn()` lines held for a plan, as a run shows them:
    /// for a plan that fails before its text is shown.
    pub fn held_output(&self) -> String {
        if !self.hold {
            return String::new();
        }
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.iter()
            .map(|e| match e {
                Entry::Print { scope, text } => print_lines(scope, text),
                Entry::Warn { scope, text } => warn_line(scope, text, ("", "")),
                Entry::Step { .. } => String::new(),
            })
            .collect()
    }

    /// A script's `warn(text)` in `scope`: shown now (runs) or in its plan
    /// section, and again in the summary ([`Reporter::warnings_text`]).
    pub fn warn(&self, scope: &str, text: &str) {
        self.log(Entry::Warn {
            scope: scope.to_string(),
            text: text.to_string(),
        });
        if !self.hold {
            let (on, off) = if self.color {
                ("\x1b[33m", RESET)
            } else {
                ("", "")
            };
            self.print(&warn_line(scope, text, (on, off)));
        }
    }

    /// The warnings so far, for the summary: `""` when there were none.
    pub fn warnings_text(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let warnings: Vec<String> = log
            .iter()
            .filter_map(|e| match e {
                Entry::Warn { scope, text } if scope.is_empty() => Some(format!("  {text}\n")),
                Entry::Warn { scope, text } => Some(format!("  {}: {text}\n", section_of(scope))),
                _ => None,
            })
            .collect();
        match warnings.len() {
            0 => String::new(),
            1 => format!("1 warning:\n{}", warnings[0]),
            n => format!("{n} warnings:\n{}", warnings.concat()),
        }
    }

    /// Free text (summaries).
    pub fn line(&self, text: &str) {
        self.print(&format!("{text}\n"));
    }

    /// Render a plan from what was reported: a section per target (see the
    /// module documentation), changes with diffs, `print()` lines and
    /// warnings; unchanged and verify lines listed only with
    /// `view.show_unchanged`, else counted on one line per section. Ends with
    /// `No changes.` when nothing would change, the summary, and the warnings.
    pub fn plan_text(&self, view: &PlanView) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut sections: Vec<String> = Vec::new();
        let mut add = |name: &str| {
            if !sections.iter().any(|s| s == name) {
                sections.push(name.to_string());
            }
        };
        for e in &log {
            match e {
                Entry::Step { step, .. } => step.actions.iter().for_each(|a| add(&a.target)),
                Entry::Print { scope, .. } | Entry::Warn { scope, .. } => add(&section_of(scope)),
            }
        }
        sections.sort_by(|a, b| order(a, b, &view.hosts));
        let entries = stable_order(log.iter().collect(), &view.hosts);
        let mut steps = Vec::new();
        let mut text = String::new();
        for e in &entries {
            if let Entry::Step { step, .. } = e {
                steps.push(step.clone());
            }
        }
        for section in &sections {
            let mut lines = String::new();
            let mut hidden = Summary::default();
            for e in &entries {
                match e {
                    Entry::Step { step, .. } => {
                        for a in step.actions.iter().filter(|a| &a.target == section) {
                            if a.kind.is_change() || view.show_unchanged {
                                lines.push_str(&self.action_line(a, step));
                            } else {
                                hidden.add(a.kind);
                            }
                        }
                    }
                    Entry::Print { scope, text }
                        if section_of(scope.as_str()) == section.as_str() =>
                    {
                        for l in text.lines() {
                            lines.push_str(&format!("  | {l}\n"));
                        }
                        if text.is_empty() {
                            lines.push_str("  |\n");
                        }
                    }
                    Entry::Warn { scope, text }
                        if section_of(scope.as_str()) == section.as_str() =>
                    {
                        lines.push_str(&format!("  ! warning: {text}\n"));
                    }
                    _ => {}
                }
            }
            let counted = hidden_counts(&hidden);
            if lines.is_empty() {
                text.push_str(&format!("{section}: {counted}\n"));
            } else {
                text.push_str(&format!("{section}:\n{lines}"));
                if hidden.unchanged + hidden.verify > 0 {
                    text.push_str(&format!("  = {counted}\n"));
                }
            }
        }
        let summary = summarize(&steps);
        text.push('\n');
        if !summary.has_changes() {
            text.push_str("No changes.\n");
        }
        text.push_str(&format!("Plan: {summary}.\n"));
        text.push_str(&self.warnings_text());
        text
    }

    fn action_line(&self, a: &Action, s: &StepRecord) -> String {
        let (on, off) = if self.color {
            (paint(true, a.kind), RESET)
        } else {
            ("", "")
        };
        let mut line = format!("  {on}{a}{off}");
        if s.intent && a.kind.is_change() {
            // facts read, but an earlier planned change may move them
            line.push_str(if s.facts.is_empty() {
                " [planned without facts]"
            } else {
                " [possible]"
            });
        }
        line.push('\n');
        if let Some(diff) = &a.diff {
            for l in diff.lines() {
                let c = if !self.color {
                    ""
                } else if l.starts_with('+') {
                    "\x1b[32m"
                } else if l.starts_with('-') {
                    "\x1b[31m"
                } else {
                    ""
                };
                line.push_str(&format!(
                    "      {c}{l}{}\n",
                    if c.is_empty() { "" } else { RESET }
                ));
            }
        }
        line
    }
}

/// A `print()` in a run: at top level as it is; inside `on(...)` each line
/// marked with its host, `node-1         | text`.
fn print_lines(scope: &str, text: &str) -> String {
    if scope.is_empty() {
        return format!("{text}\n");
    }
    let section = section_of(scope);
    let mut lines = String::new();
    for l in text.lines() {
        lines.push_str(&format!("{section:<14} | {l}\n"));
    }
    if text.is_empty() {
        lines.push_str(&format!("{section:<14} |\n"));
    }
    lines
}

/// A `warn()` in a run: `! warning: text`, after its host inside `on(...)`.
fn warn_line(scope: &str, text: &str, (on, off): (&str, &str)) -> String {
    let host = if scope.is_empty() {
        String::new()
    } else {
        format!("{:<14} ", section_of(scope))
    };
    format!("{host}{on}! warning: {text}{off}\n")
}

/// `3 unchanged` or `3 unchanged, 1 to verify`.
fn hidden_counts(s: &Summary) -> String {
    let mut text = format!("{} unchanged", s.unchanged);
    if s.verify > 0 {
        text.push_str(&format!(", {} to verify", s.verify));
    }
    text
}

/// Count the actions of steps (replayed steps count as unchanged).
pub fn summarize(steps: &[StepRecord]) -> Summary {
    let mut summary = Summary::default();
    for s in steps {
        if s.replayed {
            summary.unchanged += 1;
        }
        for a in &s.actions {
            summary.add(a.kind);
            if s.intent && a.kind.is_change() {
                summary.possible += 1;
            }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_comes_at_5_then_every_10_seconds() {
        let ms = Duration::from_millis;
        let table = [
            (ms(0), None),
            (ms(4_999), None),
            (ms(5_000), Some(5)),
            (ms(14_999), Some(5)),
            (ms(15_000), Some(15)),
            (ms(24_000), Some(15)),
            (ms(25_300), Some(25)),
            (ms(3_605_000), Some(3605)),
        ];
        for (elapsed, secs) in table {
            assert_eq!(progress_mark(elapsed).map(mark_secs), secs, "{elapsed:?}");
        }
    }

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_progress_line_per_mark() {
        let r = Reporter::quiet();
        let buf = Buffer::default();
        *r.progress_out.lock().unwrap() = Box::new(buf.clone());
        r.started("k", "apt", "node-2");
        let shift = |secs| {
            let mut running = r.running.lock().unwrap();
            let e = running.get_mut("k").unwrap();
            e.since -= Duration::from_secs(secs);
        };
        let lines = |r: &Reporter| r.running.lock().unwrap()["k"].reported;
        r.progress();
        assert_eq!(lines(&r), 0);
        shift(6);
        r.progress();
        r.progress();
        assert_eq!(lines(&r), 1);
        shift(10);
        r.progress();
        assert_eq!(lines(&r), 2);
        // 41 s: a late tick reports once, for the last mark passed (35 s)
        shift(25);
        r.progress();
        assert_eq!(lines(&r), 4);
        assert_eq!(
            String::from_utf8(buf.0.lock().unwrap().clone()).unwrap(),
            "… still running: apt on node-2 (5 s)\n\
             … still running: apt on node-2 (15 s)\n\
             … still running: apt on node-2 (35 s)\n"
        );
    }

    #[test]
    fn sections_local_clouds_inventory_then_others_naturally() {
        let hosts = vec!["db-b".to_string(), "db-a".to_string()];
        let mut names = vec![
            "node-10",
            "db-a",
            "node-2",
            "digitalocean",
            "local",
            "db-b",
            "hetzner",
        ];
        names.sort_by(|a, b| order(a, b, &hosts));
        assert_eq!(
            names,
            [
                "local",
                "hetzner",
                "digitalocean",
                "db-b",
                "db-a",
                "node-2",
                "node-10"
            ]
        );
    }

    #[test]
    fn print_sections_follow_the_innermost_host() {
        assert_eq!(section_of(""), "local");
        assert_eq!(section_of("node-1/"), "node-1");
        assert_eq!(section_of("node-1/etcd-2/"), "etcd-2");
    }
}
