//! Rendering errors in one place: the message, `file:line:col`, the source
//! line with a caret, and the chain of calls that led there.

use crate::error::{BranchFailure, Error, Located, OnFailure, ScriptError, StepFailure};
use rhai::{EvalAltResult, ParseError, Position};
use std::collections::BTreeMap;

/// The texts of every script a run may execute, by the name Rhai knows them by.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// name -> (how to show it, text)
    texts: BTreeMap<String, (String, String)>,
}

impl Sources {
    /// Add a script: `name` is what Rhai knows it by (stable across folders:
    /// `main.rhai`, `stdlib/etcd.rhai`), `display` how the user knows it.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        display: impl Into<String>,
        text: impl Into<String>,
    ) {
        self.texts
            .insert(name.into(), (display.into(), text.into()));
    }

    fn display<'a>(&'a self, name: &'a str) -> &'a str {
        self.texts
            .get(name)
            .map(|(d, _)| d.as_str())
            .unwrap_or(name)
    }

    /// Where `pos` in script `source` is, as the user knows the script.
    fn located(&self, source: &str, pos: Position) -> Option<Located> {
        Some(Located {
            file: self.display(source).to_string(),
            line: pos.line()?,
            column: pos.position().unwrap_or(1),
        })
    }

    /// `  --> file:line:col`, the line, and a caret under the column.
    fn snippet(&self, source: &str, pos: Position) -> String {
        let shown = self.display(source);
        let (Some(line), col) = (pos.line(), pos.position().unwrap_or(1)) else {
            return format!("  --> {shown}\n");
        };
        let mut out = format!("  --> {shown}:{line}:{col}\n");
        if let Some(text) = self
            .texts
            .get(source)
            .and_then(|(_, t)| t.lines().nth(line - 1))
        {
            let num = line.to_string();
            let pad = " ".repeat(num.len());
            let caret_pad: String = text
                .chars()
                .take(col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&format!("{pad} |\n{num} | {text}\n{pad} | {caret_pad}^\n"));
        }
        out
    }
}

/// The text every rendered error starts with; written here only.
const PREFIX: &str = "error: ";

/// Render an error as the user sees it on stderr: `error: ` and its text (a
/// script error with its position, source line and calls), ending in a
/// newline. The one place errors are rendered.
pub fn render(err: &Error) -> String {
    match err {
        Error::Several(errors) => errors.iter().map(render).collect(),
        Error::Unrecorded { error, cause } => format!("{}{}", render(error), render(cause)),
        other => ensure_nl(format!("{PREFIX}{other}")),
    }
}

/// A script error as a run's journal records it (as [`render`] shows it).
pub fn render_script(err: &ScriptError) -> String {
    ensure_nl(format!("{PREFIX}{err}"))
}

fn ensure_nl(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The value a script error was raised with (`throw`, `fail`, or a typed
/// failure a primitive raised), below the calls that led to it.
fn raised(err: &EvalAltResult) -> Option<&rhai::Dynamic> {
    match err {
        EvalAltResult::ErrorRuntime(v, _) => Some(v),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => raised(inner),
        _ => None,
    }
}

/// The step's failure an error carries, if a step raised it (downcast from
/// the value the executor raised; see [`StepFailure`]): a failed `on()`'s
/// first one.
pub fn step_failure(err: &EvalAltResult) -> Option<StepFailure> {
    let v = raised(err)?;
    match v.read_lock::<OnFailure>() {
        Some(on) => on.step().cloned(),
        None => v.read_lock::<StepFailure>().map(|f| f.clone()),
    }
}

/// The hosts of a failed `on()` an error carries, each with its typed error.
pub fn branch_failures(err: &EvalAltResult) -> Vec<BranchFailure> {
    raised(err)
        .and_then(|v| v.read_lock::<OnFailure>().map(|on| on.hosts.clone()))
        .unwrap_or_default()
}

/// The message of a script error, without its position: a step's failure
/// from its typed value, a runbook's own `fail`/`throw` text as given, Rhai's
/// own errors as Rhai words them.
pub fn message_of(err: &mut EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorRuntime(v, _) => {
            if let Some(on) = v.read_lock::<OnFailure>() {
                return on.to_string();
            }
            match v.read_lock::<StepFailure>() {
                Some(f) => f.to_string(),
                None => v.to_string(),
            }
        }
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => message_of(inner),
        EvalAltResult::ErrorInModule(_, inner, _) => message_of(inner),
        EvalAltResult::ErrorTerminated(v, _) => v.to_string(),
        other => {
            let pos = other.take_position();
            let text = other.to_string();
            other.set_position(pos);
            text
        }
    }
}

/// Render a script error: innermost message and position first, then the calls
/// that led to it.
pub fn render_eval(mut err: Box<EvalAltResult>, main: &str, sources: &Sources) -> ScriptError {
    let step = step_failure(&err);
    let hosts = branch_failures(&err);
    let mut chain: Vec<(String, String, Position)> = Vec::new();
    let mut source = main.to_string();
    let mut cur: &mut EvalAltResult = &mut err;
    loop {
        match cur {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                let what = if name.starts_with("anon$") {
                    "in the closure passed".to_string()
                } else {
                    format!("in call to `{name}`")
                };
                chain.push((what, source.clone(), *pos));
                if !src.is_empty() {
                    source = src.to_string();
                }
                cur = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => {
                chain.push((format!("in module `{path}`"), source.clone(), *pos));
                source = path.to_string();
                cur = inner;
            }
            _ => break,
        }
    }
    let message = message_of(cur);
    let pos = cur.position();
    let mut shown = format!("{message}\n");
    shown.push_str(&sources.snippet(&source, pos));
    for (what, src, pos) in chain.iter().rev() {
        if let (Some(line), Some(col)) = (pos.line(), pos.position()) {
            shown.push_str(&format!(
                "  = {what} at {}:{line}:{col}\n",
                sources.display(src)
            ));
        }
    }
    ScriptError {
        message,
        at: sources.located(&source, pos),
        step,
        hosts,
        shown,
    }
}

/// Render a parse error of `source`.
pub fn render_parse(err: &ParseError, source: &str, sources: &Sources) -> ScriptError {
    let message = format!("syntax error: {}", err.err_type());
    let shown = format!("{message}\n{}", sources.snippet(source, err.position()));
    ScriptError {
        message,
        at: sources.located(source, err.position()),
        step: None,
        hosts: Vec::new(),
        shown,
    }
}
