//! `apt`: Debian/Ubuntu packages installed, the package lists refreshed only
//! when needed.

use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::ssh::tail;
use crate::step::{fingerprint, Ctx, Prepared, Step};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

pub(super) const DOC: &str = "\
/// Install Debian/Ubuntu packages on `host` (apt-get, non-interactive).
///
/// Options: `packages` (array of package names, required), `update`
/// (\"auto\" (default): refresh the package lists when they are missing,
/// older than 24 hours or older than the apt sources, or when a package is not
/// found, then retry once; \"always\"; \"never\").
///
/// A no-op when every package is installed. Waits up to 60 s for another
/// apt/dpkg run to release its lock. Returns an `AptResult` (`installed`: the
/// packages this step installed, `changed`).
///
/// ```rhai
/// apt(node, #{ packages: [\"etcd-server\", \"etcd-client\"] });
/// ```";

/// Package lists older than this are refreshed before installing.
pub const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);

const APT: &str = "apt-get -q -o DPkg::Lock::Timeout=60";
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);

/// When to refresh the package lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AptUpdate {
    #[default]
    Auto,
    Always,
    Never,
}

/// Options of `apt`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AptArgs {
    pub packages: Vec<String>,
    #[serde(default)]
    pub update: AptUpdate,
}

/// `apt(host, #{packages, update?})`.
#[derive(Clone, Debug, Serialize)]
pub struct Apt {
    pub host: Host,
    #[serde(flatten)]
    pub args: AptArgs,
}

/// The result of `apt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AptResult {
    /// Packages this step installed.
    pub installed: Vec<String>,
    pub changed: bool,
}

impl fmt::Display for AptResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.installed.is_empty() {
            write!(f, "nothing installed")
        } else {
            write!(f, "installed {}", self.installed.join(", "))
        }
    }
}

/// What apt saw on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AptFacts {
    /// Requested packages not installed, in the order asked.
    pub missing: Vec<String>,
    /// Why the lists need a refresh, if they do (None: fresh enough).
    pub stale: Option<String>,
}

/// The install to do.
pub struct AptWork {
    missing: Vec<String>,
    update_first: bool,
}

fn check_name(name: &str) -> Result<(), StepError> {
    let ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StepError::invalid(
            "packages",
            format!("`{name}` is not a package name"),
        ))
    }
}

/// Parse the facts script's output (see [`Apt::facts_script`]).
pub fn parse_facts(stdout: &str, packages: &[String], max_age: Duration) -> AptFacts {
    let mut installed = std::collections::BTreeSet::new();
    let mut lists = 0u64;
    let mut sources = 0u64;
    let mut now = 0u64;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["times", l, s, n] => {
                lists = l.parse().unwrap_or(0);
                sources = s.parse().unwrap_or(0);
                now = n.parse().unwrap_or(0);
            }
            // `${Package} ${Status}`: name, want, flag, status
            [name, _, _, "installed"] => {
                installed.insert(name.to_string());
            }
            _ => {}
        }
    }
    let missing = packages
        .iter()
        .filter(|p| !installed.contains(p.split(':').next().unwrap_or(p)))
        .cloned()
        .collect();
    let stale = if lists == 0 {
        Some("no package lists yet".to_string())
    } else if sources > lists {
        Some("apt sources changed since the last update".to_string())
    } else if now.saturating_sub(lists) > max_age.as_secs() {
        Some(format!(
            "package lists older than {} hours",
            max_age.as_secs() / 3600
        ))
    } else {
        None
    };
    AptFacts { missing, stale }
}

/// Whether apt failed because the lists do not know a package (or are stale).
fn lists_problem(stderr: &str) -> bool {
    stderr.contains("Unable to locate package")
        || stderr.contains("has no installation candidate")
        || stderr.contains("Failed to fetch")
}

impl Apt {
    fn facts_script(&self) -> String {
        let query = crate::cmd::Cmd::new("dpkg-query")
            .args(["-W", "-f", "${Package} ${Status}\\n"])
            .operands(self.args.packages.iter().map(String::as_str));
        format!(
            "{query} 2>/dev/null\n\
             l=$(stat -c %Y /var/lib/apt/lists/*_Packages* 2>/dev/null | sort -n | tail -1)\n\
             s=$(stat -c %Y /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | sort -n | tail -1)\n\
             echo times ${{l:-0}} ${{s:-0}} $(date +%s)\n"
        )
    }

    /// Package names (the Step's `check`); a value known only after an
    /// earlier change is let through.
    fn validate(&self) -> Result<(), StepError> {
        if self.args.packages.is_empty() {
            return Err(StepError::invalid("packages", "no packages given"));
        }
        self.args
            .packages
            .iter()
            .filter(|p| !crate::unknown::is_unknown(p))
            .try_for_each(|p| check_name(p))
    }

    /// Actions and work from facts.
    pub fn decide(&self, facts: &AptFacts) -> Prepared<AptResult, AptWork> {
        let target = &self.host.name;
        let digest = fingerprint(facts);
        if facts.missing.is_empty() {
            let what = format!("apt packages {}", self.args.packages.join(", "));
            return Prepared::done(
                vec![Action::noop(target, what, "already installed")],
                digest,
                AptResult {
                    installed: vec![],
                    changed: false,
                },
            );
        }
        let update_first = match self.args.update {
            AptUpdate::Always => Some("update: always".to_string()),
            AptUpdate::Never => None,
            AptUpdate::Auto => facts.stale.clone(),
        };
        let mut actions = Vec::new();
        if let Some(reason) = &update_first {
            actions.push(Action::run(target, "apt-get update").because(reason.clone()));
        }
        for p in &facts.missing {
            actions.push(Action::create(target, format!("apt package {p}")));
        }
        let result = AptResult {
            installed: facts.missing.clone(),
            changed: true,
        };
        Prepared::todo(
            actions,
            digest,
            result,
            AptWork {
                missing: facts.missing.clone(),
                update_first: update_first.is_some(),
            },
        )
    }

    async fn apt(&self, ctx: &Ctx, args: &str) -> Result<crate::ssh::CommandOutput, StepError> {
        let line = format!("export DEBIAN_FRONTEND=noninteractive; {APT} {args}");
        ctx.ssh
            .exec_with(&self.host, &line, None, Some(INSTALL_TIMEOUT))
            .await
    }

    fn failed(&self, what: &str, out: &crate::ssh::CommandOutput) -> StepError {
        StepError::Command {
            host: self.host.name.clone(),
            command: format!("apt-get {what}"),
            code: out.code,
            stderr: tail(&out.stderr, 2000),
        }
    }
}

impl Step for Apt {
    type Output = AptResult;
    type Work = AptWork;

    fn check(&self) -> Result<(), StepError> {
        self.validate()
    }
    fn kind(&self) -> &'static str {
        "apt"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(&self, ctx: &Ctx) -> Result<Prepared<AptResult, AptWork>, StepError> {
        self.validate()?;
        let out = ctx.ssh.exec(&self.host, &self.facts_script(), None).await?;
        let facts = parse_facts(&out.stdout, &self.args.packages, LISTS_MAX_AGE);
        Ok(self.decide(&facts))
    }
    fn intent(&self) -> Prepared<AptResult, AptWork> {
        let mut p = self.decide(&AptFacts {
            missing: self.args.packages.clone(),
            stale: None,
        });
        p.facts = String::new();
        p.work = None;
        p
    }
    async fn apply(&self, ctx: &Ctx, work: AptWork) -> Result<AptResult, StepError> {
        // (package names are checked; `--` keeps any from reading as an option)
        let install = crate::cmd::Cmd::new("install")
            .arg("-y")
            .operands(work.missing.iter().map(String::as_str))
            .to_string();
        let update = || async {
            let out = self.apt(ctx, "update").await?;
            if out.code != 0 {
                return Err(self.failed("update", &out));
            }
            Ok(())
        };
        if work.update_first {
            update().await?;
        }
        let mut out = self.apt(ctx, &install).await?;
        if out.code != 0
            && !work.update_first
            && self.args.update != AptUpdate::Never
            && lists_problem(&out.stderr)
        {
            update().await?;
            out = self.apt(ctx, &install).await?;
        }
        if out.code != 0 {
            return Err(self.failed(&install, &out));
        }
        Ok(AptResult {
            installed: work.missing,
            changed: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ActionKind;

    fn apt(packages: &[&str], update: AptUpdate) -> Apt {
        Apt {
            host: Host::new("n1", "10.0.0.1"),
            args: AptArgs {
                packages: packages.iter().map(|p| p.to_string()).collect(),
                update,
            },
        }
    }

    const DAY: u64 = 24 * 3600;

    #[test]
    fn installed_packages_are_a_noop() {
        let out = format!(
            "etcd-server install ok installed\ncurl install ok installed\ntimes 100 50 {}\n",
            200
        );
        let f = parse_facts(&out, &["etcd-server".into(), "curl".into()], LISTS_MAX_AGE);
        assert!(f.missing.is_empty());
        assert_eq!(f.stale, None);
        let p = apt(&["etcd-server", "curl"], AptUpdate::Auto).decide(&f);
        assert_eq!(p.actions[0].kind, ActionKind::Noop);
        assert_eq!(
            p.actions[0].to_string(),
            "= ok apt packages etcd-server, curl (already installed)"
        );
        assert!(p.work.is_none());
    }

    #[test]
    fn missing_packages_are_installed_and_stale_lists_refreshed() {
        // removed packages show up with status "config-files" or "not-installed"
        let out = format!(
            "etcd-server deinstall ok config-files\ntimes 100 50 {}\n",
            100 + DAY + 1
        );
        let f = parse_facts(
            &out,
            &["etcd-server".into(), "etcd-client".into()],
            LISTS_MAX_AGE,
        );
        assert_eq!(f.missing, ["etcd-server", "etcd-client"]);
        assert_eq!(
            f.stale.as_deref(),
            Some("package lists older than 24 hours")
        );
        let p = apt(&["etcd-server", "etcd-client"], AptUpdate::Auto).decide(&f);
        let lines: Vec<String> = p.actions.iter().map(|a| a.to_string()).collect();
        assert_eq!(
            lines,
            [
                "> run apt-get update (package lists older than 24 hours)",
                "+ create apt package etcd-server",
                "+ create apt package etcd-client"
            ]
        );
        assert!(p.work.unwrap().update_first);
        let p = apt(&["etcd-server"], AptUpdate::Never).decide(&f);
        assert!(!p.work.unwrap().update_first);
    }

    #[test]
    fn lists_staleness() {
        let pk = ["x".to_string()];
        assert_eq!(
            parse_facts("times 0 10 20\n", &pk, LISTS_MAX_AGE)
                .stale
                .as_deref(),
            Some("no package lists yet")
        );
        assert_eq!(
            parse_facts("times 100 150 200\n", &pk, LISTS_MAX_AGE)
                .stale
                .as_deref(),
            Some("apt sources changed since the last update")
        );
        assert_eq!(
            parse_facts("times 100 50 200\n", &pk, LISTS_MAX_AGE).stale,
            None
        );
    }

    #[test]
    fn package_names_are_checked() {
        assert!(apt(&["etcd-server", "libc6:amd64", "g++"], AptUpdate::Auto)
            .validate()
            .is_ok());
        assert!(apt(&["-o=foo"], AptUpdate::Auto).validate().is_err());
        assert!(apt(&["a b"], AptUpdate::Auto).validate().is_err());
        assert!(apt(&[], AptUpdate::Auto).validate().is_err());
    }
}
