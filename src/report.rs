//! What cairn prints: a line per step and target as it finishes, plans grouped
//! per target with diffs, and summaries. Colour only on a terminal.

use crate::action::{Action, ActionKind, Summary};
use crate::executor::StepRecord;
use std::io::Write;
use std::sync::Mutex;

/// Where and how output goes.
pub struct Reporter {
    /// Print a line per step as it finishes (runs), or stay quiet (plans, --json).
    live: bool,
    color: bool,
    out: Mutex<Box<dyn Write + Send>>,
    /// Steps under way: key -> (what, since), for the progress line.
    running: Mutex<std::collections::BTreeMap<String, (String, std::time::Instant)>>,
}

/// Steps running longer than this get a progress line on a terminal.
const SLOW: std::time::Duration = std::time::Duration::from_secs(3);

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

impl Reporter {
    pub fn new(live: bool, color: bool, out: Box<dyn Write + Send>) -> Self {
        Reporter {
            live,
            color,
            out: Mutex::new(out),
            running: Mutex::new(Default::default()),
        }
    }

    /// A step started; long ones show up in [`Reporter::progress`].
    pub fn started(&self, key: &str, kind: &str, target: &str) {
        tracing::debug!(step = key, kind, target, "step started");
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key.to_string(),
                (format!("{kind} on {target}"), std::time::Instant::now()),
            );
    }

    fn finished(&self, key: &str) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// On a terminal: one status line naming the steps running longer than a
    /// few seconds (called periodically while a run is under way).
    pub fn progress(&self) {
        if !self.live || !self.color {
            return;
        }
        let slow: Vec<String> = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|(_, since)| since.elapsed() >= SLOW)
            .map(|(what, since)| format!("{what} ({}s)", since.elapsed().as_secs()))
            .collect();
        if !slow.is_empty() {
            self.print(&format!("\x1b[2m  … running: {}\x1b[0m\n", slow.join(", ")));
        }
    }

    /// To stdout; colour when stdout is a terminal and NO_COLOR is unset.
    pub fn stdout(live: bool) -> Self {
        use std::io::IsTerminal;
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Self::new(live, color, Box::new(std::io::stdout()))
    }

    /// Quiet: nothing printed (tests, --json).
    pub fn quiet() -> Self {
        Self::new(false, false, Box::new(std::io::sink()))
    }

    fn print(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// A step finished (or was replayed).
    pub fn step(&self, step: &StepRecord) {
        self.finished(&step.key);
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

    /// Free text (summaries).
    pub fn line(&self, text: &str) {
        self.print(&format!("{text}\n"));
    }

    /// Render a plan: steps grouped per target in first-seen order, diffs indented.
    pub fn plan_text(&self, steps: &[StepRecord]) -> String {
        let mut targets: Vec<&str> = Vec::new();
        for s in steps {
            for a in &s.actions {
                if !targets.contains(&a.target.as_str()) {
                    targets.push(&a.target);
                }
            }
        }
        let mut text = String::new();
        for target in targets {
            text.push_str(&format!("{target}:\n"));
            for s in steps {
                for a in s.actions.iter().filter(|a| a.target == target) {
                    text.push_str(&self.action_line(a, s));
                }
            }
        }
        text.push_str(&format!("\nPlan: {}.\n", summarize(steps)));
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
