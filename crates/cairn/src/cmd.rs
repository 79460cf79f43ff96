//! Remote commands as argument lists.
//!
//! Every command cairn sends to a host is a shell line (ssh gives the remote
//! login shell one string). Values never become code because they enter that
//! line only through [`quote`], the one quoting function: a word is either
//! made of characters no POSIX shell treats specially, or it is wrapped in
//! single quotes, inside which nothing is special but the quote itself.
//! [`Cmd`] builds a command from its arguments and renders it with [`quote`];
//! the few multi-line scripts of the primitives put values into shell
//! variables the same way (`p={quote(path)}`) and use them as `"$p"`.

use std::fmt;

/// Quote `s` as one word for a POSIX shell: as it is when every character is
/// plain (letters, digits and `-_./:,+@%=`), else `'...'` with each embedded
/// `'` written as `'\''`. The empty string is `''`.
///
/// A word that starts with `-` is still an option to the program that reads
/// it: put `--` before operands (as [`Cmd::operands`] does). NUL cannot be
/// passed through a shell at all; [`Cmd::check`] refuses it.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,+@%=".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command: a program and its arguments, each one word whatever it holds.
///
/// ```
/// use cairn::cmd::Cmd;
/// let cn = "x; touch /tmp/owned";
/// let c = Cmd::new("openssl").arg("req").arg("-subj").arg(format!("/CN={cn}"));
/// assert_eq!(c.to_string(), "openssl req -subj '/CN=x; touch /tmp/owned'");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cmd {
    argv: Vec<String>,
}

impl Cmd {
    /// A command running `program`.
    pub fn new(program: impl Into<String>) -> Self {
        Cmd {
            argv: vec![program.into()],
        }
    }

    /// A command from a whole argument list (`argv[0]` is the program).
    pub fn from_argv<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd {
            argv: argv.into_iter().map(Into::into).collect(),
        }
    }

    /// One more argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.argv.push(a.into());
        self
    }

    /// More arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// `--` and then `operands`: values that must never read as options.
    pub fn operands<I, S>(self, operands: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.arg("--").args(operands)
    }

    /// The argument list.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Refuse what no shell line can carry: an empty list, a program that
    /// is empty, and NUL bytes. `Err` names the offending argument.
    pub fn check(&self) -> Result<(), String> {
        match self.argv.first() {
            None => return Err("the argument list is empty".into()),
            Some(p) if p.is_empty() => return Err("the program (argument 0) is empty".into()),
            Some(_) => {}
        }
        if let Some(i) = self.argv.iter().position(|a| a.contains('\0')) {
            return Err(format!("argument {i} contains a NUL byte"));
        }
        Ok(())
    }
}

impl fmt::Display for Cmd {
    /// The shell line: every argument through [`quote`], joined by spaces.
    /// A program word with `=` is quoted too, or the shell would take it
    /// for a variable assignment and run the next word instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.argv.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
                f.write_str(&quote(a))?;
            } else if a.contains('=') {
                write!(f, "'{}'", a.replace('\'', r"'\''"))?;
            } else {
                f.write_str(&quote(a))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `sh` makes of `line`: each word it passes to the program, one per
    /// line after printf's `[%s]`.
    fn words_of(line: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '[%s]\\n' {line}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{line}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut words = Vec::new();
        let mut cur = String::new();
        for piece in text.split_inclusive("]\n") {
            cur.push_str(piece);
            if cur.starts_with('[') && cur.ends_with("]\n") {
                words.push(cur[1..cur.len() - 2].to_string());
                cur.clear();
            }
        }
        assert!(cur.is_empty(), "{text:?}");
        words
    }

    #[test]
    fn quoting_table() {
        // (value, exact rendering)
        let table: &[(&str, &str)] = &[
            ("/etc/default/etcd", "/etc/default/etcd"),
            ("", "''"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("''", r"''\'''\'''"),
            ("$(touch /tmp/x)", "'$(touch /tmp/x)'"),
            ("`id`", "'`id`'"),
            ("$HOME", "'$HOME'"),
            ("a\nb", "'a\nb'"),
            ("n1;touch /tmp/x;:", "'n1;touch /tmp/x;:'"),
            ("-rf", "-rf"),
            ("--", "--"),
            ("a=b", "a=b"),
            ("--peer-urls=https://a:2380", "--peer-urls=https://a:2380"),
            ("~root", "'~root'"),
            ("*", "'*'"),
            ("a\\b", "'a\\b'"),
            ("\"q\"", "'\"q\"'"),
            ("a|b&c>d<e", "'a|b&c>d<e'"),
            ("tab\there", "'tab\there'"),
            ("ünïcode", "'ünïcode'"),
            ("{a,b}", "'{a,b}'"),
            ("!x", "'!x'"),
        ];
        for (value, want) in table {
            assert_eq!(quote(value), *want, "rendering of {value:?}");
            // ... and the shell reads it back as exactly one word, unchanged.
            assert_eq!(
                words_of(&quote(value)),
                vec![value.to_string()],
                "{value:?}"
            );
        }
    }

    #[test]
    fn commands_are_one_word_per_argument() {
        let hostile = [
            "x'; touch /tmp/cairn-quote-test; '",
            "$(touch /tmp/cairn-quote-test)",
            "`touch /tmp/cairn-quote-test`",
            "\n touch /tmp/cairn-quote-test\n",
            "",
            "-n",
        ];
        let c = Cmd::new("printf").arg("[%s]\\n").args(hostile);
        assert!(c.check().is_ok());
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(c.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let want: String = hostile.iter().map(|h| format!("[{h}]\n")).collect();
        assert_eq!(text, want);
        assert!(!std::path::Path::new("/tmp/cairn-quote-test").exists());
    }

    #[test]
    fn a_program_is_never_an_assignment() {
        let c = Cmd::from_argv(["X=1", "touch", "/tmp/cairn-assign-test"]);
        assert_eq!(c.to_string(), "'X=1' touch /tmp/cairn-assign-test");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(c.to_string())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(127), "{out:?}");
        assert!(!std::path::Path::new("/tmp/cairn-assign-test").exists());
    }

    #[test]
    fn operands_follow_a_double_dash() {
        let c = Cmd::new("rm").arg("-f").operands(["-rf /"]);
        assert_eq!(c.to_string(), "rm -f -- '-rf /'");
        assert_eq!(c.argv(), ["rm", "-f", "--", "-rf /"]);
    }

    #[test]
    fn what_no_shell_line_can_carry_is_refused() {
        assert_eq!(
            Cmd::from_argv(Vec::<String>::new()).check(),
            Err("the argument list is empty".into())
        );
        assert_eq!(
            Cmd::from_argv([""]).check(),
            Err("the program (argument 0) is empty".into())
        );
        assert_eq!(
            Cmd::from_argv(["echo", "a\0b"]).check(),
            Err("argument 1 contains a NUL byte".into())
        );
    }
}
