//! The format a template's values land in, and how each format escapes a
//! value so that data stays data.
//!
//! Every `{{ value }}` a template prints goes through [`Format::escape`] for
//! the template's format (minijinja's auto-escaping with a custom formatter):
//! a template cannot forget to escape. The format comes from a declaration on
//! the template's first line, `{# format: yaml #}`, or else from the file name
//! without `.j2` (`etcd.yaml.j2` is YAML):
//!
//! | format  | names                          | a value becomes |
//! |---------|--------------------------------|-----------------|
//! | `yaml`  | `*.yaml`, `*.yml`              | the inside of a double-quoted scalar: `\` `"` and control characters escaped (`\n`), so it can never start a line or a key; write `key: "{{ v }}"` |
//! | `env`   | `*.env`, `*.default`           | the inside of a double-quoted `KEY="value"` (systemd `EnvironmentFile=`, `/etc/default`, `sh`): `\` `"` `$` `` ` `` escaped; line breaks refused |
//! | `unit`  | `*.service`, `*.socket`, ...   | systemd unit text: `\` `"` escaped, `%` doubled (specifiers); line breaks refused |
//! | `shell` | `*.sh`, `*.bash`               | one shell word (quoted when needed); line breaks refused |
//! | `cnf`   | `*.cnf`                        | an OpenSSL config value: `\` `$` `#` `"` `'` escaped; line breaks and `,` refused |
//! | `line`  | anything else, inline text     | as is; line breaks refused (no value can add a line) |
//! | `text`  | declared only                  | as is |
//!
//! A refused value is an error naming the template, line and expression (the
//! variable), never the value. `{{ v | safe }}` prints a value unescaped; the
//! filters `yaml`, `env`, `unit`, `shell`, `cnf` apply a format explicitly.

use std::fmt;

/// See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Env,
    Unit,
    Shell,
    Cnf,
    Line,
    Text,
}

/// Every format, by name.
pub const ALL: [Format; 7] = [
    Format::Yaml,
    Format::Env,
    Format::Unit,
    Format::Shell,
    Format::Cnf,
    Format::Line,
    Format::Text,
];

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Format {
    /// The format's name (`yaml`, `env`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Env => "env",
            Format::Unit => "unit",
            Format::Shell => "shell",
            Format::Cnf => "cnf",
            Format::Line => "line",
            Format::Text => "text",
        }
    }

    /// The format called `name`.
    pub fn from_name(name: &str) -> Option<Format> {
        ALL.into_iter().find(|f| f.name() == name)
    }

    /// The format declared on the first line of `source` (`{# format: yaml #}`):
    /// `Ok(None)` when nothing is declared, `Err` naming an unknown format.
    pub fn declared(source: &str) -> Result<Option<Format>, String> {
        let first = source.lines().next().unwrap_or("").trim();
        let Some(inner) = first
            .strip_prefix("{#")
            .and_then(|s| s.strip_suffix("#}"))
            .map(|s| s.trim_matches('-').trim())
        else {
            return Ok(None);
        };
        let Some(name) = inner.strip_prefix("format:") else {
            return Ok(None);
        };
        let name = name.trim();
        Format::from_name(name).map(Some).ok_or_else(|| {
            let known: Vec<&str> = ALL.iter().map(|f| f.name()).collect();
            format!(
                "unknown template format `{name}` (known: {})",
                known.join(", ")
            )
        })
    }

    /// The format of a template called `name` (a path, `.j2` or not) with no declaration.
    pub fn of_name(name: &str) -> Format {
        let file = name.rsplit('/').next().unwrap_or(name);
        let file = file.strip_suffix(".j2").unwrap_or(file);
        let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext.to_ascii_lowercase().as_str() {
            "yaml" | "yml" => Format::Yaml,
            "env" | "default" => Format::Env,
            "service" | "socket" | "timer" | "mount" | "path" | "target" | "unit" => Format::Unit,
            "sh" | "bash" => Format::Shell,
            "cnf" => Format::Cnf,
            _ => Format::Line,
        }
    }

    /// Whether the format is read line by line (a line break in a value
    /// would add a line of its own).
    pub fn line_based(self) -> bool {
        !matches!(self, Format::Yaml | Format::Text)
    }

    /// `value` as it must appear in this format, or why it cannot.
    pub fn escape(self, value: &str) -> Result<String, String> {
        if self.line_based() {
            if let Some(c) = value.chars().find(|c| is_line_break(*c)) {
                return Err(format!(
                    "a value holding {} cannot go into this `{self}` file: it would start a line of its own",
                    describe(c)
                ));
            }
        }
        Ok(match self {
            Format::Text | Format::Line => value.to_string(),
            Format::Yaml => yaml_inside_double_quotes(value),
            Format::Env => backslash(value, &['\\', '"', '$', '`']),
            Format::Unit => backslash(value, &['\\', '"']).replace('%', "%%"),
            Format::Shell => crate::cmd::quote(value),
            Format::Cnf => {
                if value.contains(',') {
                    return Err(
                        "a value holding `,` cannot go into this `cnf` file: it would start another list item"
                            .into(),
                    );
                }
                backslash(value, &['\\', '$', '#', '"', '\''])
            }
        })
    }
}

fn is_line_break(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\0' | '\x0b' | '\x0c')
}

fn describe(c: char) -> &'static str {
    match c {
        '\n' => "a line break (\\n)",
        '\r' => "a carriage return (\\r)",
        '\0' => "a NUL byte",
        _ => "a vertical tab or form feed",
    }
}

fn backslash(value: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if special.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The inside of a YAML double-quoted scalar: no character of `value` can
/// end the scalar or start a line.
fn yaml_inside_double_quotes(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // C0/C1 controls, DEL, and Unicode line/paragraph separators
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name_and_declaration() {
        assert_eq!(Format::of_name("templates/etcd.yaml.j2"), Format::Yaml);
        assert_eq!(Format::of_name("templates/options.env.j2"), Format::Env);
        assert_eq!(Format::of_name("templates/etcd.default.j2"), Format::Env);
        assert_eq!(Format::of_name("templates/etcd.service.j2"), Format::Unit);
        assert_eq!(Format::of_name("x/prepare.sh.j2"), Format::Shell);
        assert_eq!(Format::of_name("openssl.cnf.j2"), Format::Cnf);
        assert_eq!(Format::of_name("templates/etcd-members.j2"), Format::Line);
        assert_eq!(Format::of_name("<string>"), Format::Line);
        assert_eq!(
            Format::declared("{# format: yaml #}\nname: x"),
            Ok(Some(Format::Yaml))
        );
        assert_eq!(
            Format::declared("{#- format: env -#}\n"),
            Ok(Some(Format::Env))
        );
        assert_eq!(Format::declared("# format: yaml\n"), Ok(None));
        assert_eq!(Format::declared("{# a comment #}\n"), Ok(None));
        assert!(Format::declared("{# format: xml #}")
            .unwrap_err()
            .contains("unknown template format `xml`"));
    }

    #[test]
    fn each_format_escapes_or_refuses() {
        let hostile = "t\"\nenable-pprof: true\n#";
        assert_eq!(
            Format::Yaml.escape(hostile).unwrap(),
            "t\\\"\\nenable-pprof: true\\n#"
        );
        assert_eq!(
            Format::Yaml.escape("a\\b\u{2028}\x07").unwrap(),
            "a\\\\b\\u2028\\u0007"
        );
        for f in [
            Format::Env,
            Format::Unit,
            Format::Shell,
            Format::Cnf,
            Format::Line,
        ] {
            let err = f.escape(hostile).unwrap_err();
            assert!(err.contains("a line break (\\n)"), "{f}: {err}");
            assert!(!err.contains("pprof"), "never the value: {err}");
            assert!(f.escape("a\rb").is_err(), "{f}");
        }
        assert_eq!(
            Format::Env.escape("a\"b $(touch x) `y` \\").unwrap(),
            "a\\\"b \\$(touch x) \\`y\\` \\\\"
        );
        assert_eq!(Format::Unit.escape("50%\"").unwrap(), "50%%\\\"");
        assert_eq!(
            Format::Shell.escape("a b;touch x").unwrap(),
            "'a b;touch x'"
        );
        assert_eq!(Format::Shell.escape("node-1").unwrap(), "node-1");
        assert_eq!(Format::Cnf.escape("a$b#c").unwrap(), "a\\$b\\#c");
        assert!(Format::Cnf
            .escape("x, DNS:evil")
            .unwrap_err()
            .contains("`,`"));
        assert_eq!(Format::Text.escape("a\nb").unwrap(), "a\nb");
    }
}
