//! `run`: a command whose effect cannot be predicted, guarded by facts; and
//! `fact`: a read-only command whose output is a fact (it also runs in plans).

use super::CommandResult;
use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::ssh::{quote, tail};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

crate::registration::documented! {
    /// Run a shell command on `host` (as the ssh user, through its login shell).
    ///
    /// Options: `allow_fail` (bool: a non-zero exit is returned, not an error),
    /// `creates` (path: skip when it exists on the host), `unless` (command, a string or an argument list: skip
    /// when it exits 0; it must change nothing, it runs in plans too), `stdin`
    /// (string fed to the command; never shown), `timeout` (seconds).
    ///
    /// A plan shows `> run `cmd``, or an `ok` line with the reason when a guard
    /// holds; the guards are checked read-only when planning. A non-zero exit is an
    /// error naming host and command unless `allow_fail`; 127 (command not
    /// found) is an exit code like any other. Returns a
    /// `CommandResult` (`code`, `stdout`, `stderr`, `ok`); when skipped by a guard,
    /// code 0 and empty output. In a plan its output is a placeholder.
    ///
    /// ```rhai
    /// run(node, "etcdctl snapshot save /var/backups/etcd.db", #{ timeout: 120 });
    /// run(node, "useradd --system etcd", #{ unless: "id etcd" });
    /// ```
    pub(super) const DOC_RUN;
}

crate::registration::documented! {
    /// Read a fact from `host` with a command that CHANGES NOTHING.
    ///
    /// The command runs while planning as well as when applying (it is how the
    /// runbook looks at the host), so it must be read-only: `cat`, `test`,
    /// `systemctl is-active`, `etcdctl member list`. Anything that changes the
    /// host belongs in `run`. Its plan line is an `ok read ...` no-op.
    ///
    /// Options: `allow_fail` (bool: a non-zero exit is returned, not an error;
    /// 127, command not found, too), `timeout` (seconds). Returns a
    /// `CommandResult` (`code`, `stdout`, `stderr`, `ok`).
    ///
    /// ```rhai
    /// let has_data = fact(node, "test -d /var/lib/etcd/member", #{ allow_fail: true }).ok;
    /// ```
    pub(super) const DOC_FACT;
}

crate::registration::documented! {
    /// Run a command given as an argument list on `host`: each item is one
    /// argument, passed as it is whatever it holds (quotes, `;`, `$(...)`,
    /// spaces, newlines), never read as shell code. Use this form whenever a
    /// value (a parameter, a host name, a path) goes into the command.
    ///
    /// Items are strings or integers; an empty list or a NUL byte is an error.
    /// Options and result as for `run(host, cmd, options)`; `unless` takes an
    /// argument list too.
    ///
    /// ```rhai
    /// run(node, ["openssl", "req", "-new", "-key", key, "-subj", `/CN=${node.name}`]);
    /// run(node, ["mkdir", "-p", "--", dir], #{ unless: ["test", "-d", dir] });
    /// ```
    pub(super) const DOC_RUN_ARGV;
}

crate::registration::documented! {
    /// Read a fact from `host` with a read-only command given as an argument
    /// list: each item is one argument, never shell code (see `run(host, [..])`).
    /// It runs in plans too, so it must change nothing. Options and result as
    /// for `fact(host, cmd, options)`.
    ///
    /// ```rhai
    /// let sums = fact(node, ["curl", "-fsSL", `${release}/SHA256SUMS`]).stdout;
    /// ```
    pub(super) const DOC_FACT_ARGV;
}

/// Hash a secret-ish string for the step's journal key.
fn hashed<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&format!("sha256:{}", super::put::sha256_hex(v.as_bytes()))),
        None => s.serialize_none(),
    }
}

/// A command given to `run`'s `unless`: a shell line as written, or an
/// argument list (`["test", "-f", path]`) rendered with [`crate::cmd::quote`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ShellLine(pub String);

impl From<&str> for ShellLine {
    fn from(line: &str) -> Self {
        ShellLine(line.to_string())
    }
}

/// One item of an argument list: strings, and numbers written as they read.
#[derive(Deserialize)]
#[serde(untagged)]
enum Word {
    Text(String),
    Int(i64),
}

impl<'de> Deserialize<'de> for ShellLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Line(String),
            Argv(Vec<Word>),
        }
        match Either::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a command: a string, or a list of strings")
        })? {
            Either::Line(l) => Ok(ShellLine(l)),
            Either::Argv(words) => argv_line(words.into_iter().map(|w| match w {
                Word::Text(t) => t,
                Word::Int(i) => i.to_string(),
            }))
            .map(ShellLine)
            .map_err(serde::de::Error::custom),
        }
    }
}

/// The shell line of an argument list: each word through the one quoting
/// function; an empty list, an empty program or a NUL byte is refused.
pub fn argv_line(words: impl IntoIterator<Item = String>) -> Result<String, String> {
    let cmd = crate::cmd::Cmd::from_argv(words);
    cmd.check()?;
    Ok(cmd.to_string())
}

/// Options of `run`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunOptions {
    #[serde(default)]
    pub allow_fail: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unless: Option<ShellLine>,
    /// Fed to the command; only its hash is journaled.
    #[serde(
        default,
        serialize_with = "hashed",
        skip_serializing_if = "Option::is_none"
    )]
    pub stdin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// `run(host, cmd, #{...})`.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub host: Host,
    pub cmd: String,
    #[serde(flatten)]
    pub options: RunOptions,
}

impl Run {
    pub fn new(host: Host, cmd: &str, options: RunOptions) -> Self {
        Run {
            host,
            cmd: cmd.to_string(),
            options,
        }
    }

    fn action(&self) -> Action {
        Action::run(&self.host.name, format!("`{}`", brief(&self.cmd)))
    }

    fn predicted(&self) -> CommandResult {
        let what = format!("{}: {}", self.host.name, brief(&self.cmd));
        CommandResult {
            code: 0,
            stdout: unknown::placeholder("run", &format!("{what} stdout")),
            stderr: unknown::placeholder("run", &format!("{what} stderr")),
        }
    }
}

/// A command on one line for plan lines, journals and errors: runs of
/// whitespace (line breaks, indentation) become one space; never cut, so a
/// plan shows every path and guard the command has.
fn brief(cmd: &str) -> String {
    cmd.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Which guard of a `run` holds, if any.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct Guards {
    creates_exists: bool,
    unless_ok: bool,
}

fn command_error(host: &Host, cmd: &str, out: &CommandResult) -> StepError {
    StepError::Command {
        host: host.name.clone(),
        command: brief(cmd),
        code: out.code,
        stderr: tail(&out.stderr, 2000),
    }
}

fn timeout(secs: Option<u64>) -> Option<Duration> {
    secs.map(Duration::from_secs)
}

impl Step for Run {
    type Output = CommandResult;
    type Work = ();

    /// The command was checked where the script gave it (`run`'s argument
    /// list or shell string); nothing else can be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "run"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<CommandResult, ()>, StepError> {
        let o = &this.options;
        if o.creates.is_none() && o.unless.is_none() {
            return Ok(Prepared::todo(
                vec![this.action()],
                String::new(),
                this.predicted(),
                (),
            ));
        }
        let mut script = String::new();
        if let Some(path) = &o.creates {
            script.push_str(&format!(
                "if [ -e {} ]; then echo creates; fi\n",
                quote(path)
            ));
        }
        if let Some(unless) = &o.unless {
            script.push_str(&format!(
                "if sh -c {} </dev/null >/dev/null 2>&1; then echo unless; fi\n",
                quote(&unless.0)
            ));
        }
        let out = ctx
            .ssh
            .exec_with(&this.host, &script, None, timeout(o.timeout))
            .await?;
        if out.code != 0 {
            return Err(command_error(&this.host, "check creates/unless", &out));
        }
        let guards = Guards {
            creates_exists: out.stdout.lines().any(|l| l == "creates"),
            unless_ok: out.stdout.lines().any(|l| l == "unless"),
        };
        let facts = fingerprint(&guards);
        let reason = match (&guards, &o.creates, &o.unless) {
            (
                Guards {
                    creates_exists: true,
                    ..
                },
                Some(path),
                _,
            ) => format!("{path} exists"),
            (
                Guards {
                    unless_ok: true, ..
                },
                _,
                Some(cmd),
            ) => format!("`{}` succeeded", brief(&cmd.0)),
            _ => {
                return Ok(Prepared::todo(
                    vec![this.action()],
                    facts,
                    this.predicted(),
                    (),
                ));
            }
        };
        let action = Action::noop(
            &this.host.name,
            format!("run `{}`", brief(&this.cmd)),
            reason,
        );
        Ok(Prepared::done(
            vec![action],
            facts,
            CommandResult::default(),
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<CommandResult, ()> {
        Prepared::todo(vec![this.action()], String::new(), this.predicted(), ())
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<CommandResult, StepError> {
        let o = &this.options;
        let out = ctx
            .ssh
            .exec_with(
                &this.host,
                &this.cmd,
                o.stdin.as_deref().map(str::as_bytes),
                timeout(o.timeout),
            )
            .await?;
        if out.code != 0 && !o.allow_fail {
            return Err(command_error(&this.host, &this.cmd, &out));
        }
        Ok(out)
    }
}

/// Options of `fact`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactOptions {
    #[serde(default)]
    pub allow_fail: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// `fact(host, cmd)`: see [`DOC_FACT`].
#[derive(Clone, Debug, Serialize)]
pub struct Fact {
    pub host: Host,
    pub cmd: String,
    #[serde(flatten)]
    pub options: FactOptions,
}

impl Fact {
    pub fn new(host: Host, cmd: &str, options: FactOptions) -> Self {
        Fact {
            host,
            cmd: cmd.to_string(),
            options,
        }
    }
    fn action(&self) -> Action {
        Action::noop(
            &self.host.name,
            format!("read `{}`", brief(&self.cmd)),
            "read-only fact",
        )
    }
}

impl Step for Fact {
    type Output = CommandResult;
    type Work = ();

    /// The command was checked where the script gave it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "fact"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<CommandResult, ()>, StepError> {
        let out = ctx
            .ssh
            .exec_with(&this.host, &this.cmd, None, timeout(this.options.timeout))
            .await?;
        if out.code != 0 && !this.options.allow_fail {
            return Err(command_error(&this.host, &this.cmd, &out));
        }
        Ok(Prepared::done(vec![this.action()], fingerprint(&out), out))
    }
    fn intent(this: &Valid<Self>) -> Prepared<CommandResult, ()> {
        let what = format!("{}: {}", this.host.name, brief(&this.cmd));
        let predicted = CommandResult {
            code: 0,
            stdout: unknown::placeholder("read", &format!("{what} stdout")),
            stderr: unknown::placeholder("read", &format!("{what} stderr")),
        };
        Prepared::done(vec![this.action()], String::new(), predicted)
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<CommandResult, StepError> {
        // Never reached: prepare leaves no work. Kept equivalent for safety.
        Ok(this.prepare(ctx).await?.predicted)
    }
}
