//! Golden files: a whole output compared byte for byte with a file under
//! `tests/golden/`, after masking what legitimately varies between runs
//! ([`mask`]). `CAIRN_BLESS=1` rewrites the files from the actual output
//! instead (review their diff before committing). A mismatch fails with a
//! unified diff.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `tests/golden/NAME`.
pub fn path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Whether this run rewrites golden files (`CAIRN_BLESS` set, not `0`).
pub fn blessing() -> bool {
    std::env::var_os("CAIRN_BLESS").is_some_and(|v| v != "0")
}

/// Compares `actual` with `tests/golden/NAME` (or writes it with
/// `CAIRN_BLESS=1`), panicking with a unified diff when they differ.
pub fn check(name: &str, actual: &str) {
    let path = path(name);
    if blessing() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (CAIRN_BLESS=1 cargo test ... writes it from the actual output)",
            path.display()
        )
    });
    if expected != actual {
        let diff = similar::TextDiff::from_lines(expected.as_str(), actual)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{} (expected)", path.display()), "actual")
            .to_string();
        panic!(
            "output differs from {}:\n{diff}\nIf the change is intended: CAIRN_BLESS=1 cargo test ..., then review `git diff tests/golden/`.",
            path.display()
        );
    }
}

/// Replaces each maximal match of `is_match` (tried at every position,
/// returning the match's length) with `with`.
pub fn replace_spans(text: &str, with: &str, is_match: impl Fn(&str) -> Option<usize>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(n) = is_match(rest) {
            out.push_str(with);
            rest = &rest[n..];
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Whether `s` starts with `pattern`, where `9` matches a digit, `f` a
/// lowercase hex digit and any other character itself.
pub fn shape(s: &str, pattern: &str) -> Option<usize> {
    let (sb, pb) = (s.as_bytes(), pattern.as_bytes());
    if sb.len() < pb.len() {
        return None;
    }
    for (c, p) in sb.iter().zip(pb) {
        let ok = match p {
            b'9' => c.is_ascii_digit(),
            b'f' => c.is_ascii_hexdigit() && !c.is_ascii_uppercase(),
            _ => c == p,
        };
        if !ok {
            return None;
        }
    }
    Some(pb.len())
}

/// The volatile parts of output, masked:
/// - the workspace's path -> `$WS`;
/// - run ids (`20261201-113137-ab12`) -> `RUN_ID`;
/// - times (`2026-12-01 11:31:37 UTC`) -> `TIME`;
/// - step durations (`(123 ms)`) -> `(N ms)`, run times (`after 1.2s`) -> `after Ts`.
pub fn mask(text: &str, ws: &Path) -> String {
    let text = text.replace(&ws.display().to_string(), "$WS");
    let text = replace_spans(&text, "RUN_ID", |s| shape(s, "99999999-999999-ffff"));
    let text = replace_spans(&text, "TIME", |s| shape(s, "9999-99-99 99:99:99 UTC"));
    let text = replace_spans(&text, "(N ms)", |s| {
        let digits = s
            .strip_prefix('(')?
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        (digits > 0 && s[1 + digits..].starts_with(" ms)")).then_some(digits + 5)
    });
    replace_spans(&text, "after Ts", |s| {
        let rest = s.strip_prefix("after ")?;
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        (n > 0 && rest[n..].starts_with('s')).then_some(6 + n + 1)
    })
}
