//! Rendering errors in one place: the message, `file:line:col`, the source
//! line with a caret, and the chain of calls that led there.

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

/// The message of an error without Rhai's position suffix.
pub fn message_of(err: &EvalAltResult) -> String {
    match err {
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) => message_of(inner),
        EvalAltResult::ErrorInModule(_, inner, _) => message_of(inner),
        EvalAltResult::ErrorTerminated(v, _) => v.to_string(),
        other => {
            let s = other.to_string();
            match s.rfind(" (line ") {
                Some(i) if s.ends_with(')') => s[..i].to_string(),
                _ => s,
            }
        }
    }
}

/// Render a script error: innermost message and position first, then the calls
/// that led to it.
pub fn render_eval(err: &EvalAltResult, main: &str, sources: &Sources) -> String {
    let mut chain: Vec<(String, String, Position)> = Vec::new();
    let mut source = main.to_string();
    let mut cur = err;
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
                    source = src.clone();
                }
                cur = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => {
                chain.push((format!("in module `{path}`"), source.clone(), *pos));
                source = path.clone();
                cur = inner;
            }
            _ => break,
        }
    }
    let mut out = format!("error: {}\n", message_of(cur));
    out.push_str(&sources.snippet(&source, cur.position()));
    for (what, src, pos) in chain.iter().rev() {
        if let (Some(line), Some(col)) = (pos.line(), pos.position()) {
            out.push_str(&format!(
                "  = {what} at {}:{line}:{col}\n",
                sources.display(src)
            ));
        }
    }
    out
}

/// Render a parse error of `source`.
pub fn render_parse(err: &ParseError, source: &str, sources: &Sources) -> String {
    let msg = err.err_type().to_string();
    format!(
        "error: syntax error: {msg}\n{}",
        sources.snippet(source, err.position())
    )
}
