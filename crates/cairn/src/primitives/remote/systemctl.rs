//! `systemctl`: a systemd unit started, stopped, restarted, enabled; or the
//! manager reloaded.

use crate::action::Action;
use crate::cmd::Cmd;
use crate::error::StepError;
use crate::host::Host;
use crate::ssh::{quote, tail};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Default for `wait`.
const DEFAULT_WAIT: u64 = 120;

/// What to do with the unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnitAction {
    Start,
    Stop,
    Restart,
    Reload,
    DaemonReload,
}

/// The state a unit should be in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    Started,
    Stopped,
}

/// Options of `systemctl`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemctlArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<UnitAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<UnitState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
}

crate::registration::documented! {
    /// Manage a systemd unit on `host`.
    ///
    /// Options: `unit` (required unless `action` is "daemon-reload"),
    /// `state` ("started" | "stopped": idempotent, a no-op when already so),
    /// `action` ("start" | "stop": same as `state`; "restart" | "reload":
    /// ALWAYS done, guard them yourself, e.g. `if cfg.changed`; "daemon-reload"),
    /// `enabled` (bool: enabled at boot), `wait` (seconds to wait for the unit to
    /// become active after a start/restart/reload, default 120).
    ///
    /// Order: daemon-reload, enable/disable, then the state change. When a unit
    /// fails to become active, the error holds the last 20 lines of its journal.
    /// Returns a `UnitResult` (`unit`, `active`, `enabled`, `changed`).
    ///
    /// ```rhai
    /// systemctl(node, #{ action: "daemon-reload" });
    /// systemctl(node, #{ unit: "etcd", state: "started", enabled: true });
    /// if cfg.changed { systemctl(node, #{ unit: "etcd", action: "restart" }); }
    /// ```
    #[derive(Clone, Debug, Serialize)]
    pub struct Systemctl {
        pub host: Host,
        #[serde(flatten)]
        pub args: SystemctlArgs,
    }
}

/// The result of `systemctl`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "UnitResult")]
pub struct UnitResult {
    #[rhai_type(readonly)]
    pub unit: String,
    #[rhai_type(readonly)]
    pub active: bool,
    #[rhai_type(readonly)]
    pub enabled: bool,
    #[rhai_type(readonly)]
    pub changed: bool,
}

impl fmt::Display for UnitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, {}{})",
            self.unit,
            if self.active { "active" } else { "inactive" },
            if self.enabled {
                "enabled"
            } else {
                "not enabled"
            },
            if self.changed { ", changed" } else { "" }
        )
    }
}

/// A unit as `systemctl show` describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnitFacts {
    pub load_state: String,
    pub active_state: String,
    pub unit_file_state: String,
}

impl UnitFacts {
    pub fn parse(stdout: &str) -> Self {
        let mut f = UnitFacts::default();
        for line in stdout.lines() {
            match line.split_once('=') {
                Some(("LoadState", v)) => f.load_state = v.trim().into(),
                Some(("ActiveState", v)) => f.active_state = v.trim().into(),
                Some(("UnitFileState", v)) => f.unit_file_state = v.trim().into(),
                _ => {}
            }
        }
        f
    }
    pub fn active(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "reloading" | "activating"
        )
    }
    /// Enabled at boot, or nothing to enable (static, generated, alias units).
    pub fn enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_str(),
            "enabled" | "enabled-runtime" | "alias" | "static" | "generated" | "indirect"
        )
    }
}

/// One systemctl command, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    DaemonReload,
    Enable,
    Disable,
    Start,
    Stop,
    Restart,
    Reload,
}

impl Op {
    fn verb(self) -> &'static str {
        match self {
            Op::DaemonReload => "daemon-reload",
            Op::Enable => "enable",
            Op::Disable => "disable",
            Op::Start => "start",
            Op::Stop => "stop",
            Op::Restart => "restart",
            Op::Reload => "reload",
        }
    }
    /// Whether the unit must be active afterwards.
    fn activates(self) -> bool {
        matches!(self, Op::Start | Op::Restart | Op::Reload)
    }
}

/// `systemctl show` of the properties [`UnitFacts`] reads.
fn show(unit: &str) -> Cmd {
    Cmd::new("systemctl")
        .args(["show", "-p", "LoadState,ActiveState,UnitFileState"])
        .operands([unit])
}

/// The commands `prepare` decided on.
pub struct UnitWork {
    ops: Vec<Op>,
}

impl Systemctl {
    fn unit(&self) -> Result<&str, StepError> {
        match (&self.args.unit, self.args.action) {
            (Some(u), _) => {
                let ok = !u.is_empty()
                    && !u.starts_with('-')
                    && u.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"@._:-\\".contains(&b));
                if ok {
                    Ok(u)
                } else {
                    Err(StepError::invalid(
                        "unit",
                        format!("`{u}` is not a unit name"),
                    ))
                }
            }
            (None, Some(UnitAction::DaemonReload)) => Ok(""),
            (None, _) => Err(StepError::invalid(
                "unit",
                "missing (only `action: \"daemon-reload\"` goes without a unit)",
            )),
        }
    }

    /// The arguments' own consistency (the Step's `check`): a unit name,
    /// not both `state` and a start/stop action, something asked.
    fn validate(&self) -> Result<(), StepError> {
        if !self.args.unit.as_deref().is_some_and(unknown::is_unknown) {
            self.unit()?;
        }
        let a = &self.args;
        let state_action = matches!(
            a.action,
            Some(UnitAction::Start | UnitAction::Stop | UnitAction::Restart | UnitAction::Reload)
        );
        if a.state.is_some() && state_action {
            return Err(StepError::invalid(
                "state",
                "give either `state` or a start/stop/restart/reload `action`, not both",
            ));
        }
        if a.unit.is_some() && a.action.is_none() && a.state.is_none() && a.enabled.is_none() {
            return Err(StepError::invalid(
                "action",
                "nothing asked: give `state`, `action` or `enabled`",
            ));
        }
        Ok(())
    }

    /// The commands needed, from the unit's facts.
    pub fn decide(&self, facts: &UnitFacts) -> Prepared<UnitResult, UnitWork> {
        let a = &self.args;
        let unit = a.unit.clone().unwrap_or_default();
        let target = &self.host.name;
        let mut ops = Vec::new();
        let mut actions = Vec::new();
        let mut ok = Vec::new();
        if a.action == Some(UnitAction::DaemonReload) {
            ops.push(Op::DaemonReload);
            actions.push(Action::run(target, "systemctl daemon-reload"));
        }
        let not_loaded = facts.load_state == "not-found";
        match a.enabled {
            Some(true) if !facts.enabled() => {
                ops.push(Op::Enable);
                actions.push(Action::change(target, format!("enable unit {unit}")));
            }
            Some(false)
                if matches!(
                    facts.unit_file_state.as_str(),
                    "enabled" | "enabled-runtime"
                ) =>
            {
                ops.push(Op::Disable);
                actions.push(Action::change(target, format!("disable unit {unit}")));
            }
            Some(true) => ok.push("enabled"),
            Some(false) => ok.push("not enabled"),
            None => {}
        }
        let wanted = match (a.state, a.action) {
            (Some(UnitState::Started), _) | (_, Some(UnitAction::Start)) => Some(Op::Start),
            (Some(UnitState::Stopped), _) | (_, Some(UnitAction::Stop)) => Some(Op::Stop),
            (_, Some(UnitAction::Restart)) => Some(Op::Restart),
            (_, Some(UnitAction::Reload)) => Some(Op::Reload),
            _ => None,
        };
        match wanted {
            Some(Op::Start) if facts.active() => ok.push("active"),
            Some(Op::Stop) if !facts.active() => ok.push("inactive"),
            Some(op @ (Op::Start | Op::Stop)) => {
                ops.push(op);
                let mut action = Action::change(target, format!("{} unit {unit}", op.verb()));
                if not_loaded && op == Op::Start {
                    action = action.because("not loaded yet");
                }
                actions.push(action);
            }
            Some(op) => {
                ops.push(op);
                actions.push(
                    Action::run(target, format!("{} unit {unit}", op.verb()))
                        .because("asked for explicitly"),
                );
            }
            None => {}
        }
        let active_after = match wanted {
            Some(Op::Stop) => false,
            Some(_) => true,
            None => facts.active(),
        };
        let enabled_after = a.enabled.unwrap_or(facts.enabled());
        let result = UnitResult {
            unit: unit.clone(),
            active: active_after,
            enabled: enabled_after,
            changed: !ops.is_empty(),
        };
        let digest = fingerprint(facts);
        if ops.is_empty() {
            let reason = format!("already {}", ok.join(" and "));
            return Prepared::done(
                vec![Action::noop(target, format!("unit {unit}"), reason)],
                digest,
                result,
            );
        }
        if !ok.is_empty() {
            actions.push(Action::noop(
                target,
                format!("unit {unit}"),
                format!("already {}", ok.join(" and ")),
            ));
        }
        Prepared::todo(actions, digest, result, UnitWork { ops })
    }

    async fn journal(&self, ctx: &Ctx, unit: &str) -> String {
        let cmd = format!(
            "{} 2>&1",
            Cmd::new("journalctl").args(["-n", "20", "--no-pager", "-u", unit])
        );
        match ctx.ssh.exec(&self.host, &cmd, None).await {
            Ok(out) => out.stdout,
            Err(e) => format!("(journal not available: {e})"),
        }
    }
}

impl Step for Systemctl {
    type Output = UnitResult;
    type Work = UnitWork;

    fn validate(&self) -> Result<(), StepError> {
        self.validate()
    }
    fn kind(&self) -> &'static str {
        "systemctl"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<UnitResult, UnitWork>, StepError> {
        let unit = this.unit()?;
        if unit.is_empty() {
            return Ok(this.decide(&UnitFacts::default()));
        }
        let cmd = show(unit).to_string();
        let out = ctx.ssh.exec(&this.host, &cmd, None).await?;
        if out.code != 0 {
            return Err(StepError::Command {
                host: this.host.name.clone(),
                command: cmd,
                code: out.code,
                stderr: tail(&out.stderr, 1000),
            });
        }
        Ok(this.decide(&UnitFacts::parse(&out.stdout)))
    }
    fn intent(this: &Valid<Self>) -> Prepared<UnitResult, UnitWork> {
        let blank = UnitFacts {
            load_state: "loaded".into(),
            active_state: "inactive".into(),
            unit_file_state: "disabled".into(),
        };
        let mut p = this.decide(&blank);
        p.facts = String::new();
        p.work = None;
        p
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, work: UnitWork) -> Result<UnitResult, StepError> {
        let unit = this.unit()?;
        let q = quote(unit);
        let wait = this.args.wait.unwrap_or(DEFAULT_WAIT);
        let mut script = String::from("set -e\n");
        for op in &work.ops {
            match op {
                Op::DaemonReload => script.push_str("systemctl daemon-reload\n"),
                op => script.push_str(&format!(
                    "{}\n",
                    Cmd::new("systemctl").arg(op.verb()).operands([unit])
                )),
            }
        }
        if work.ops.iter().any(|op| op.activates()) {
            // Type=notify units are ready when `start` returns; others may
            // still be activating. Poll on the host, one round trip.
            script.push_str(&format!(
                "i=0\nwhile :; do\n  s=$(systemctl is-active -- {q} || true)\n  \
                 case \"$s\" in active) break;; failed) echo \"unit failed\" >&2; exit 3;; esac\n  \
                 i=$((i+1)); if [ $i -gt {n} ]; then echo \"not active after {wait}s (state $s)\" >&2; exit 4; fi\n  \
                 sleep 0.2\ndone\n",
                n = wait * 5
            ));
        }
        if !unit.is_empty() {
            script.push_str(&format!("{}\n", show(unit)));
        }
        let what = work
            .ops
            .iter()
            .map(|o| o.verb())
            .collect::<Vec<_>>()
            .join(", ");
        let out = ctx
            .ssh
            .exec_with(
                &this.host,
                &script,
                None,
                Some(Duration::from_secs(wait + 120)),
            )
            .await?;
        if out.code != 0 {
            let mut stderr = tail(&out.stderr, 1000);
            if !unit.is_empty() {
                stderr.push_str(&format!("\nlast journal lines of {unit}:\n"));
                stderr.push_str(&this.journal(ctx, unit).await);
            }
            return Err(StepError::Command {
                host: this.host.name.clone(),
                command: format!("systemctl {what} {unit}").trim_end().to_string(),
                code: out.code,
                stderr,
            });
        }
        let facts = UnitFacts::parse(&out.stdout);
        Ok(UnitResult {
            unit: unit.to_string(),
            active: facts.active(),
            enabled: facts.enabled(),
            changed: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ActionKind;

    fn step(args: SystemctlArgs) -> Systemctl {
        Systemctl {
            host: Host::new("n1", "10.0.0.1"),
            args,
        }
    }
    fn args() -> SystemctlArgs {
        SystemctlArgs {
            unit: Some("etcd".into()),
            action: None,
            enabled: None,
            state: None,
            wait: None,
        }
    }
    fn facts(active: &str, file: &str) -> UnitFacts {
        UnitFacts {
            load_state: "loaded".into(),
            active_state: active.into(),
            unit_file_state: file.into(),
        }
    }
    fn lines(p: &Prepared<UnitResult, UnitWork>) -> Vec<String> {
        p.actions.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn started_and_enabled_is_a_noop_when_so() {
        let s = step(SystemctlArgs {
            state: Some(UnitState::Started),
            enabled: Some(true),
            ..args()
        });
        let p = s.decide(&facts("active", "enabled"));
        assert_eq!(lines(&p), ["= ok unit etcd (already enabled and active)"]);
        assert!(p.work.is_none());
        assert!(p.predicted.active && p.predicted.enabled && !p.predicted.changed);
    }

    #[test]
    fn inactive_units_are_enabled_then_started() {
        let s = step(SystemctlArgs {
            state: Some(UnitState::Started),
            enabled: Some(true),
            ..args()
        });
        let p = s.decide(&facts("inactive", "disabled"));
        assert_eq!(
            lines(&p),
            ["~ change enable unit etcd", "~ change start unit etcd"]
        );
        assert_eq!(p.work.unwrap().ops, [Op::Enable, Op::Start]);
    }

    #[test]
    fn restart_always_runs() {
        let s = step(SystemctlArgs {
            action: Some(UnitAction::Restart),
            ..args()
        });
        let p = s.decide(&facts("active", "enabled"));
        assert_eq!(p.actions[0].kind, ActionKind::Run);
        assert_eq!(p.work.unwrap().ops, [Op::Restart]);
    }

    #[test]
    fn daemon_reload_needs_no_unit() {
        let s = step(SystemctlArgs {
            unit: None,
            action: Some(UnitAction::DaemonReload),
            ..args()
        });
        assert!(s.validate().is_ok());
        let p = s.decide(&UnitFacts::default());
        assert_eq!(lines(&p), ["> run systemctl daemon-reload"]);
        let bad = step(SystemctlArgs {
            unit: None,
            state: Some(UnitState::Started),
            ..args()
        });
        assert!(bad.validate().is_err());
        let both = step(SystemctlArgs {
            state: Some(UnitState::Started),
            action: Some(UnitAction::Restart),
            ..args()
        });
        assert!(both.validate().is_err());
    }

    #[test]
    fn stop_of_a_stopped_unit_is_a_noop() {
        let s = step(SystemctlArgs {
            state: Some(UnitState::Stopped),
            ..args()
        });
        let p = s.decide(&facts("inactive", "disabled"));
        assert_eq!(lines(&p), ["= ok unit etcd (already inactive)"]);
    }

    #[test]
    fn show_output_parses() {
        let f = UnitFacts::parse("LoadState=loaded\nActiveState=failed\nUnitFileState=enabled\n");
        assert_eq!(f, facts("failed", "enabled"));
        assert!(!f.active() && f.enabled());
    }
}
