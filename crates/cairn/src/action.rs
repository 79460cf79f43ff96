//! Actions: what a step will do (plan) or did (journal), as data.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of change an action makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Something new comes into existence (a file, a server, a certificate).
    Create,
    /// Something existing is modified (file content, a unit's state).
    Change,
    /// Something is removed.
    Delete,
    /// A command whose effect cannot be predicted from facts (`run`).
    Run,
    /// A read-only check of the result (verification); never a change.
    Verify,
    /// Nothing to do; `reason` says why.
    Noop,
}

impl ActionKind {
    /// The one-character sigil used in plan output.
    pub fn sigil(self) -> char {
        match self {
            ActionKind::Create => '+',
            ActionKind::Change => '~',
            ActionKind::Delete => '-',
            ActionKind::Run => '>',
            ActionKind::Verify => '?',
            ActionKind::Noop => '=',
        }
    }

    /// Whether the action changes anything.
    pub fn is_change(self) -> bool {
        !matches!(self, ActionKind::Noop | ActionKind::Verify)
    }
}

/// One thing a step does to one target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    /// Where it happens: a host name, `local` (the operator's machine) or a
    /// cloud provider (`hetzner`, `digitalocean`).
    pub target: String,
    /// One line: what is acted upon, e.g. `file /etc/default/etcd (0644 root:root)`.
    pub what: String,
    /// Why (for no-ops) or further detail (for changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A unified diff for file content changes. Never contains secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl Action {
    pub fn new(kind: ActionKind, target: impl Into<String>, what: impl Into<String>) -> Self {
        Action {
            kind,
            target: target.into(),
            what: what.into(),
            reason: None,
            diff: None,
        }
    }
    pub fn create(target: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(ActionKind::Create, target, what)
    }
    pub fn change(target: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(ActionKind::Change, target, what)
    }
    pub fn delete(target: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(ActionKind::Delete, target, what)
    }
    pub fn run(target: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(ActionKind::Run, target, what)
    }
    /// A read-only verification of a result.
    pub fn verify(target: impl Into<String>, what: impl Into<String>) -> Self {
        Self::new(ActionKind::Verify, target, what)
    }
    /// An explicit "nothing to do", with its reason.
    pub fn noop(
        target: impl Into<String>,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(ActionKind::Noop, target, what).because(reason)
    }
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
    pub fn with_diff(mut self, diff: Option<String>) -> Self {
        self.diff = diff;
        self
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = match self.kind {
            ActionKind::Create => "create",
            ActionKind::Change => "change",
            ActionKind::Delete => "delete",
            ActionKind::Run => "run",
            ActionKind::Verify => "verify",
            ActionKind::Noop => "ok",
        };
        write!(f, "{} {verb} {}", self.kind.sigil(), self.what)?;
        if let Some(reason) = &self.reason {
            write!(f, " ({reason})")?;
        }
        Ok(())
    }
}

/// Counts of actions by kind: the plan's summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub change: usize,
    pub delete: usize,
    pub run: usize,
    pub verify: usize,
    pub unchanged: usize,
    /// Of the changes above, those planned from intent: they may happen, and
    /// depend on values known only once earlier changes are made.
    #[serde(default)]
    pub possible: usize,
}

impl Summary {
    pub fn add(&mut self, kind: ActionKind) {
        match kind {
            ActionKind::Create => self.create += 1,
            ActionKind::Change => self.change += 1,
            ActionKind::Delete => self.delete += 1,
            ActionKind::Run => self.run += 1,
            ActionKind::Verify => self.verify += 1,
            ActionKind::Noop => self.unchanged += 1,
        }
    }
    /// Whether anything would change.
    pub fn has_changes(&self) -> bool {
        self.create + self.change + self.delete + self.run > 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} to create, {} to change, {} to delete, {} to run, {} unchanged, {} to verify",
            self.create, self.change, self.delete, self.run, self.unchanged, self.verify
        )?;
        if self.possible > 0 {
            write!(
                f,
                " ({} of the changes possible: they depend on earlier changes)",
                self.possible
            )?;
        }
        Ok(())
    }
}
