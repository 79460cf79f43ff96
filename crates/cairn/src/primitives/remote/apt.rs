//! `apt`: Debian/Ubuntu packages installed, the package lists refreshed only
//! when needed.

use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::ssh::tail;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

crate::registration::documented! {
    /// The upstream part of a Debian package version: without the epoch, the
    /// Debian revision and any `+...`/`~...` suffix.
    ///
    /// ```rhai
    /// apt_upstream_version("3.5.30-2~bpo12+1")             // "3.5.30"
    /// apt_upstream_version("3.3.25+dfsg-7ubuntu0.22.04.1") // "3.3.25"
    /// ```
    pub(super) const DOC_UPSTREAM;
}

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
    /// Upstream version every package must carry (`3.5.30`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Added to the error when no package at `version` is offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// `Some(false)`: no service starts while the packages install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_services: Option<bool>,
}

crate::registration::documented! {
    /// Install Debian/Ubuntu packages on `host` (apt-get, non-interactive).
    ///
    /// Options: `packages` (array of package names, required), `update`
    /// ("auto" (default): refresh the package lists when they are missing,
    /// older than 24 hours or older than the apt sources, or when a package is not
    /// found, then retry once; "always"; "never"), `version` (an upstream
    /// version every package must carry, e.g. "3.5.30": each is installed as
    /// `NAME=PKGVER`, PKGVER being the version `apt-cache madison` lists whose
    /// upstream part is `version`, e.g. `3.5.30-2`; the lists are refreshed first
    /// when they offer none; a package installed at another version is changed),
    /// `hint` (text added to the error when the sources offer no package at
    /// `version`: how to get one), `start_services` (default true; false: the
    /// packages' services are not started while they install: a
    /// `/usr/sbin/policy-rc.d` that denies starts is in place during the install
    /// and removed when apt-get ends, written only when the host has none; one
    /// left by an install that was cut off is removed by the next `apt` step on
    /// the host).
    ///
    /// A no-op when every package is installed (at `version`, if given). When the
    /// sources offer no package at `version`, fails before installing anything,
    /// naming the host and the versions offered. Waits up to 60 s for another
    /// apt/dpkg run to release its lock. Returns an `AptResult` (`installed`: the
    /// packages this step installed, `versions`: a map of each package's
    /// installed package version, `changed`).
    ///
    /// ```rhai
    /// apt(node, #{ packages: ["etcd-server", "etcd-client"] });
    /// apt(node, #{ packages: ["etcd-server"], version: "3.5.30" });
    /// ```
    #[derive(Clone, Debug, Serialize)]
    pub struct Apt {
        pub host: Host,
        #[serde(flatten)]
        pub args: AptArgs,
    }
}

/// The result of `apt`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "AptResult")]
pub struct AptResult {
    /// Packages this step installed (or changed to `version`).
    #[rhai_type(skip)]
    pub installed: Vec<String>,
    /// Each requested package's installed package version (`3.5.30-2`).
    #[serde(default)]
    #[rhai_type(skip)]
    pub versions: BTreeMap<String, String>,
    #[rhai_type(readonly)]
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
    /// Requested packages that are installed: name (without `:arch`) -> version.
    pub installed: BTreeMap<String, String>,
    /// Package versions the lists offer (`apt-cache madison`, newest first),
    /// by name; `None` when not looked at (no `version` asked, or no facts).
    pub offered: Option<BTreeMap<String, Vec<String>>>,
    /// Why the lists need a refresh, if they do (None: fresh enough).
    pub stale: Option<String>,
    /// A `/usr/sbin/policy-rc.d` of cairn's is there: an install that kept
    /// services from starting was cut off before it could remove it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub leftover_policy: bool,
}

/// One package to install: its name as asked and the package version to pin
/// (`None`: no `version` asked, or found only after `apt-get update`).
#[derive(Clone, Debug)]
struct Wanted {
    name: String,
    pin: Option<String>,
}

/// The install to do.
pub struct AptWork {
    wanted: Vec<Wanted>,
    update_first: bool,
    /// Remove a policy-rc.d an interrupted install of cairn's left.
    remove_policy: bool,
}

/// Where Debian's invoke-rc.d asks whether a service may start.
pub const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
/// The line that marks a policy-rc.d as cairn's (and safe to remove).
const POLICY_MARK: &str = "# cairn: no service starts while apt installs (removed when it ends)";

/// Shell lines that put cairn's policy-rc.d in place unless the host has
/// one (a new file renamed into place: never through a link), and remove it
/// when the shell exits, also on a hangup or a signal.
fn hold_services_script() -> String {
    let p = crate::cmd::quote(POLICY_RC_D);
    let body = crate::cmd::quote(&format!("#!/bin/sh\n{POLICY_MARK}\nexit 101\n"));
    format!(
        "mine=\n\
         if [ ! -e {p} ] && [ ! -L {p} ]; then\n\
         t=$(mktemp /usr/sbin/.policy-rc.d.XXXXXX) && printf {body} > \"$t\" && chmod 0755 \"$t\" && mv -T \"$t\" {p} && mine=1\n\
         fi\n\
         trap '[ -z \"$mine\" ] || rm -f {p}' EXIT\n\
         trap 'exit 129' HUP INT TERM\n"
    )
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

/// Whether `v` can be a Debian version (or its upstream part): starts with a
/// digit, then letters, digits and `.+~:-`.
fn is_version(v: &str) -> bool {
    v.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
}

/// The upstream part of a Debian package version: without the epoch
/// (`1:`), the Debian revision (`-2`) and any `+...`/`~...` suffix of the
/// upstream part (`3.3.25+dfsg-7ubuntu0.1` -> `3.3.25`, `3.5.30-2~bpo12+1` -> `3.5.30`).
pub fn upstream_version(debian: &str) -> &str {
    let v = match debian.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => debian,
    };
    let v = v.rsplit_once('-').map_or(v, |(up, _)| up);
    v.split(['+', '~']).next().unwrap_or(v)
}

/// Whether package version `debian` carries upstream version `want`.
pub fn carries(debian: &str, want: &str) -> bool {
    let v = match debian.split_once(':') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => debian,
    };
    upstream_version(debian) == want || v.rsplit_once('-').map_or(v, |(up, _)| up) == want
}

/// A package name without its `:arch` qualifier.
fn base(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// `apt-cache madison` lines (`etcd-server | 3.4.23-1 | http://... Packages`),
/// each optionally prefixed by `madison `: versions by package, in order.
pub fn parse_madison(stdout: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stdout.lines() {
        let line = line.strip_prefix("madison ").unwrap_or(line);
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        if f.len() >= 2 && !f[0].is_empty() && is_version(f[1]) {
            let list = out.entry(f[0].to_string()).or_default();
            if !list.iter().any(|v| v == f[1]) {
                list.push(f[1].to_string());
            }
        }
    }
    out
}

/// Parse the facts script's output (see [`Apt::facts_script`]).
pub fn parse_facts(stdout: &str, packages: &[String], max_age: Duration) -> AptFacts {
    let mut installed = BTreeMap::new();
    let mut lists = 0u64;
    let mut sources = 0u64;
    let mut now = 0u64;
    let mut madison = String::new();
    let mut looked = false;
    let mut leftover_policy = false;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("madison") {
            looked = true;
            madison.push_str(rest.trim_start());
            madison.push('\n');
            continue;
        }
        if line == "leftover-policy" {
            leftover_policy = true;
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["times", l, s, n] => {
                lists = l.parse().unwrap_or(0);
                sources = s.parse().unwrap_or(0);
                now = n.parse().unwrap_or(0);
            }
            // `${Package} ${Status} ${Version}`: name, want, flag, status, version
            [name, _, _, "installed", rest @ ..] => {
                installed.insert(name.to_string(), rest.first().unwrap_or(&"").to_string());
            }
            _ => {}
        }
    }
    let missing = packages
        .iter()
        .filter(|p| !installed.contains_key(base(p)))
        .cloned()
        .collect();
    let installed = installed
        .into_iter()
        .filter(|(name, _)| packages.iter().any(|p| base(p) == name))
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
    AptFacts {
        missing,
        installed,
        offered: looked.then(|| parse_madison(&madison)),
        stale,
        leftover_policy,
    }
}

/// Whether apt failed because the lists do not know a package (or are stale).
fn lists_problem(stderr: &str) -> bool {
    stderr.contains("Unable to locate package")
        || stderr.contains("has no installation candidate")
        || stderr.contains("Failed to fetch")
}

impl Apt {
    /// `dpkg-query` listing the packages' status and version (see [`parse_facts`]).
    fn query(&self) -> crate::cmd::Cmd {
        crate::cmd::Cmd::new("dpkg-query")
            .args(["-W", "-f", "${Package} ${Status} ${Version}\\n"])
            .operands(self.args.packages.iter().map(String::as_str))
    }

    fn facts_script(&self) -> String {
        let query = self.query();
        let policy = format!(
            "grep -qxF {} {} 2>/dev/null && echo leftover-policy\n",
            crate::cmd::quote(POLICY_MARK),
            crate::cmd::quote(POLICY_RC_D)
        );
        let madison = match &self.args.version {
            Some(_) => format!("{} 2>/dev/null | sed 's/^/madison /'\n", self.madison()),
            None => String::new(),
        };
        format!(
            "{query} 2>/dev/null\n\
             {policy}\
             {madison}\
             l=$(stat -c %Y /var/lib/apt/lists/*_Packages* 2>/dev/null | sort -n | tail -1)\n\
             s=$(stat -c %Y /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | sort -n | tail -1)\n\
             echo times ${{l:-0}} ${{s:-0}} $(date +%s)\n"
        )
    }

    /// `apt-cache madison PACKAGES` (names are checked: none starts with `-`).
    fn madison(&self) -> crate::cmd::Cmd {
        crate::cmd::Cmd::new("apt-cache")
            .arg("madison")
            .args(self.args.packages.iter().map(|p| base(p).to_string()))
    }

    /// Package names and the version (the Step's `check`); a value known
    /// only after an earlier change is let through.
    fn validate(&self) -> Result<(), StepError> {
        if self.args.packages.is_empty() {
            return Err(StepError::invalid("packages", "no packages given"));
        }
        if let Some(v) = &self.args.version {
            if !crate::unknown::is_unknown(v) && !is_version(v) {
                return Err(StepError::invalid(
                    "version",
                    format!("`{v}` is not an upstream version (like 3.5.30)"),
                ));
            }
        }
        self.args
            .packages
            .iter()
            .filter(|p| !crate::unknown::is_unknown(p))
            .try_for_each(|p| check_name(p))
    }

    /// The error for packages the lists offer at no package version carrying `want`.
    fn not_offered(
        &self,
        want: &str,
        unresolved: &[&Wanted],
        offered: &BTreeMap<String, Vec<String>>,
    ) -> StepError {
        let list = unresolved
            .iter()
            .map(|w| {
                let vs = offered
                    .get(base(&w.name))
                    .map_or(String::new(), |v| v.join(", "));
                format!(
                    "{} {}",
                    base(&w.name),
                    if vs.is_empty() { "none" } else { &vs }
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        StepError::AptVersionMissing {
            host: self.host.name.clone(),
            package: unresolved
                .iter()
                .map(|w| base(&w.name))
                .collect::<Vec<_>>()
                .join(", "),
            version: want.to_string(),
            offered: list,
            hint: self
                .args
                .hint
                .as_ref()
                .map_or(String::new(), |h| format!(": {h}")),
        }
    }

    /// Actions and work from facts.
    pub fn decide(&self, facts: &AptFacts) -> Result<Prepared<AptResult, AptWork>, StepError> {
        let target = &self.host.name;
        let digest = fingerprint(facts);
        let want = self.args.version.as_deref();
        // (a package installed at another upstream version than `version` is wanted too)
        let wanted: Vec<Wanted> = self
            .args
            .packages
            .iter()
            .filter(|p| match (facts.installed.get(base(p)), want) {
                (None, _) => true,
                (Some(v), Some(want)) => !carries(v, want),
                (Some(_), None) => false,
            })
            .map(|p| Wanted {
                name: p.clone(),
                pin: want.and_then(|w| {
                    facts
                        .offered
                        .as_ref()?
                        .get(base(p))?
                        .iter()
                        .find(|v| carries(v, w))
                        .cloned()
                }),
            })
            .collect();
        let leftover = facts.leftover_policy.then(|| {
            Action::delete(target, format!("file {POLICY_RC_D}"))
                .because("left by an apt install of cairn's that was cut off: it keeps every service from starting")
        });
        if wanted.is_empty() {
            let at = want.map_or(String::new(), |w| format!(" at {w}"));
            let what = format!("apt packages {}", self.args.packages.join(", "));
            let ok = Action::noop(target, what, format!("already installed{at}"));
            let result = AptResult {
                installed: vec![],
                versions: facts.installed.clone(),
                changed: false,
            };
            return Ok(match leftover {
                None => Prepared::done(vec![ok], digest, result),
                Some(rm) => Prepared::todo(
                    vec![rm, ok],
                    digest,
                    result,
                    AptWork {
                        wanted: vec![],
                        update_first: false,
                        remove_policy: true,
                    },
                ),
            });
        }
        let unresolved: Vec<&Wanted> = match want {
            Some(_) => wanted.iter().filter(|w| w.pin.is_none()).collect(),
            None => vec![],
        };
        let update_first = match self.args.update {
            AptUpdate::Always => Some("update: always".to_string()),
            AptUpdate::Never => None,
            AptUpdate::Auto => facts.stale.clone().or_else(|| {
                // (facts looked at and no package carries `version`: maybe after an update)
                let looked = facts.offered.is_some();
                (looked && !unresolved.is_empty()).then(|| {
                    format!(
                        "the package lists offer no {} {}",
                        base(&unresolved[0].name),
                        want.unwrap_or_default()
                    )
                })
            }),
        };
        if let (Some(w), Some(offered), None) = (want, &facts.offered, &update_first) {
            if !unresolved.is_empty() {
                return Err(self.not_offered(w, &unresolved, offered));
            }
        }
        let mut actions: Vec<Action> = leftover.into_iter().collect();
        if let Some(reason) = &update_first {
            actions.push(Action::run(target, "apt-get update").because(reason.clone()));
        }
        let mut versions = facts.installed.clone();
        for w in &wanted {
            let name = base(&w.name).to_string();
            let to = match (&w.pin, want) {
                (Some(pin), _) => pin.clone(),
                (None, Some(want)) => want.to_string(),
                (None, None) => String::new(),
            };
            let action = match (facts.installed.get(&name), &w.pin, want) {
                (Some(old), _, _) => {
                    Action::change(target, format!("apt package {name} {old} -> {to}"))
                }
                (None, Some(pin), _) => Action::create(target, format!("apt package {name}={pin}")),
                (None, None, Some(want)) => Action::create(target, format!("apt package {name}"))
                    .because(format!(
                        "{want}, its package version read after apt-get update"
                    )),
                (None, None, None) => Action::create(target, format!("apt package {}", w.name)),
            };
            actions.push(action);
            versions.insert(name, to);
        }
        let result = AptResult {
            installed: wanted.iter().map(|w| w.name.clone()).collect(),
            versions,
            changed: true,
        };
        Ok(Prepared::todo(
            actions,
            digest,
            result,
            AptWork {
                wanted,
                update_first: update_first.is_some(),
                remove_policy: facts.leftover_policy,
            },
        ))
    }

    /// `apt-get ARGS` on the host, then the shell lines `after` (built from
    /// quoted arguments; they see apt-get's exit status in `$?`).
    async fn apt(
        &self,
        ctx: &Ctx,
        args: &str,
        after: &str,
    ) -> Result<crate::ssh::CommandOutput, StepError> {
        let hold = if args.starts_with("install") && self.args.start_services == Some(false) {
            hold_services_script()
        } else {
            String::new()
        };
        let after = match after {
            "" => String::new(),
            // (an update that failed stops here: its status is the script's)
            a if args == "update" => format!("\nc=$?; [ $c -eq 0 ] || exit $c\n{a}"),
            a => format!("\n{a}"),
        };
        let line = format!("export DEBIAN_FRONTEND=noninteractive\n{hold}{APT} {args}{after}");
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

    /// Each requested package's installed version, read on the host.
    async fn installed_versions(&self, ctx: &Ctx) -> Result<BTreeMap<String, String>, StepError> {
        let out = ctx.ssh.exec(&self.host, &self.facts_script(), None).await?;
        Ok(parse_facts(&out.stdout, &self.args.packages, LISTS_MAX_AGE).installed)
    }

    /// Pins for every wanted package, from `apt-cache madison` as the lists are now.
    async fn resolve(
        &self,
        ctx: &Ctx,
        want: &str,
        wanted: Vec<Wanted>,
    ) -> Result<Vec<Wanted>, StepError> {
        let out = ctx
            .ssh
            .exec(&self.host, &self.madison().to_string(), None)
            .await?;
        self.pin(want, wanted, &parse_madison(&out.stdout))
    }

    /// Pins for every wanted package from `offered` (versions by package),
    /// or the error naming what is offered when a package has none at `want`.
    fn pin(
        &self,
        want: &str,
        wanted: Vec<Wanted>,
        offered: &BTreeMap<String, Vec<String>>,
    ) -> Result<Vec<Wanted>, StepError> {
        let wanted: Vec<Wanted> = wanted
            .into_iter()
            .map(|w| Wanted {
                pin: offered
                    .get(base(&w.name))
                    .and_then(|vs| vs.iter().find(|v| carries(v, want)).cloned()),
                name: w.name,
            })
            .collect();
        let unresolved: Vec<&Wanted> = wanted.iter().filter(|w| w.pin.is_none()).collect();
        if !unresolved.is_empty() {
            return Err(self.not_offered(want, &unresolved, offered));
        }
        Ok(wanted)
    }
}

impl Step for Apt {
    type Output = AptResult;
    type Work = AptWork;

    fn validate(&self) -> Result<(), StepError> {
        self.validate()
    }
    fn kind(&self) -> &'static str {
        "apt"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<AptResult, AptWork>, StepError> {
        this.validate()?;
        let out = ctx.ssh.exec(&this.host, &this.facts_script(), None).await?;
        let facts = parse_facts(&out.stdout, &this.args.packages, LISTS_MAX_AGE);
        this.decide(&facts)
    }
    fn intent(this: &Valid<Self>) -> Prepared<AptResult, AptWork> {
        let facts = AptFacts {
            missing: this.args.packages.clone(),
            installed: BTreeMap::new(),
            offered: None,
            stale: None,
            leftover_policy: false,
        };
        // (without facts nothing is offered or refused: no error to report)
        let mut p = this
            .decide(&facts)
            .unwrap_or_else(|_| unreachable!("apt without facts refuses nothing"));
        p.facts = String::new();
        p.work = None;
        p
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, work: AptWork) -> Result<AptResult, StepError> {
        if work.remove_policy {
            // (only while it is still cairn's)
            let rm = format!(
                "! grep -qxF {m} {p} 2>/dev/null || rm -f {p}",
                m = crate::cmd::quote(POLICY_MARK),
                p = crate::cmd::quote(POLICY_RC_D)
            );
            let out = ctx.ssh.exec(&this.host, &rm, None).await?;
            if out.code != 0 {
                return Err(StepError::Command {
                    host: this.host.name.clone(),
                    command: rm,
                    code: out.code,
                    stderr: tail(&out.stderr, 2000),
                });
            }
        }
        if work.wanted.is_empty() {
            return Ok(AptResult {
                installed: vec![],
                versions: this.installed_versions(ctx).await?,
                changed: false,
            });
        }
        let update = || async {
            let out = this.apt(ctx, "update", "").await?;
            if out.code != 0 {
                return Err(this.failed("update", &out));
            }
            Ok(out)
        };
        let mut wanted = work.wanted;
        match &this.args.version {
            // One round trip: the update, then what the lists offer now
            // (after an update they may offer another package version).
            Some(want) if work.update_first => {
                let after = format!("{} 2>/dev/null | sed 's/^/madison /'\n", this.madison());
                let out = this.apt(ctx, "update", &after).await?;
                if out.code != 0 {
                    return Err(this.failed("update", &out));
                }
                let madison: String = out
                    .stdout
                    .lines()
                    .filter(|l| l.starts_with("madison "))
                    .map(|l| format!("{l}\n"))
                    .collect();
                wanted = this.pin(want, wanted, &parse_madison(&madison))?;
            }
            Some(want) if wanted.iter().any(|w| w.pin.is_none()) => {
                wanted = this.resolve(ctx, want, wanted).await?;
            }
            Some(_) => {}
            None if work.update_first => {
                update().await?;
            }
            None => {}
        }
        // (package names and versions are checked; `--` keeps any from reading as an option)
        let specs: Vec<String> = wanted
            .iter()
            .map(|w| match &w.pin {
                Some(pin) => format!("{}={pin}", w.name),
                None => w.name.clone(),
            })
            .collect();
        let install = crate::cmd::Cmd::new("install")
            .arg("-y")
            .operands(specs.iter().map(String::as_str))
            .to_string();
        // The installed versions are read in the same round trip, after a
        // line no output of apt's can hold.
        let mark = format!("cairn: installed versions {:016x}", rand::random::<u64>());
        let versions_after = format!(
            "c=$?\necho {}\n{} 2>/dev/null\nexit $c\n",
            crate::cmd::quote(&mark),
            this.query()
        );
        let mut out = this.apt(ctx, &install, &versions_after).await?;
        if out.code != 0
            && !work.update_first
            && this.args.update != AptUpdate::Never
            && this.args.version.is_none()
            && lists_problem(&out.stderr)
        {
            update().await?;
            out = this.apt(ctx, &install, &versions_after).await?;
        }
        if out.code != 0 {
            return Err(this.failed(&install, &out));
        }
        let versions = match out.stdout.split_once(&format!("{mark}\n")) {
            Some((_, listed)) => parse_facts(listed, &this.args.packages, LISTS_MAX_AGE).installed,
            None => this.installed_versions(ctx).await?,
        };
        Ok(AptResult {
            installed: wanted.into_iter().map(|w| w.name).collect(),
            versions,
            changed: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::ActionKind;
    use crate::step::Validating;

    fn apt(packages: &[&str], update: AptUpdate) -> Apt {
        Apt {
            host: Host::new("n1", "10.0.0.1"),
            args: AptArgs {
                packages: packages.iter().map(|p| p.to_string()).collect(),
                update,
                version: None,
                hint: None,
                start_services: None,
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
        let p = apt(&["etcd-server", "curl"], AptUpdate::Auto)
            .decide(&f)
            .unwrap();
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
        let p = apt(&["etcd-server", "etcd-client"], AptUpdate::Auto)
            .decide(&f)
            .unwrap();
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
        let p = apt(&["etcd-server"], AptUpdate::Never).decide(&f).unwrap();
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

    fn pinned(packages: &[&str], version: &str, update: AptUpdate) -> Apt {
        let mut a = apt(packages, update);
        a.args.version = Some(version.into());
        a.args.hint = Some("give another repository".into());
        a
    }

    const MADISON: &str =
        "madison etcd-server | 3.5.30-2~cairn12+1 | http://gw/debian-newer ./ Packages\n\
        madison etcd-server |   3.4.23-1 | http://gw/debian ./ Packages\n\
        madison etcd-client | 3.5.30-2~cairn12+1 | http://gw/debian-newer ./ Packages\n\
        madison etcd-client |   3.4.23-1 | http://gw/debian ./ Packages\n";

    fn lines(p: &Prepared<AptResult, AptWork>) -> Vec<String> {
        p.actions.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn upstream_versions() {
        assert_eq!(upstream_version("3.5.30-2~cairn12+1"), "3.5.30");
        assert_eq!(upstream_version("3.3.25+dfsg-7ubuntu0.22.04.1"), "3.3.25");
        assert_eq!(upstream_version("1:3.4.23-1"), "3.4.23");
        assert_eq!(upstream_version("3.5.16"), "3.5.16");
        assert!(carries("3.5.30-2~cairn12+1", "3.5.30"));
        assert!(carries("3.3.25+dfsg-7", "3.3.25+dfsg"));
        assert!(!carries("3.5.30-2", "3.5.3"));
        assert!(!carries("3.4.23-1", "3.5.30"));
    }

    #[test]
    fn a_version_is_pinned_from_madison() {
        let out = format!("{MADISON}times 100 50 200\n");
        let pk = ["etcd-server".to_string(), "etcd-client".to_string()];
        let f = parse_facts(&out, &pk, LISTS_MAX_AGE);
        assert_eq!(
            f.offered.as_ref().unwrap()["etcd-server"],
            ["3.5.30-2~cairn12+1", "3.4.23-1"]
        );
        let p = pinned(&["etcd-server", "etcd-client"], "3.5.30", AptUpdate::Auto)
            .decide(&f)
            .unwrap();
        assert_eq!(
            lines(&p),
            [
                "+ create apt package etcd-server=3.5.30-2~cairn12+1",
                "+ create apt package etcd-client=3.5.30-2~cairn12+1"
            ]
        );
        assert_eq!(p.predicted.versions["etcd-server"], "3.5.30-2~cairn12+1");
        let w = p.work.unwrap();
        assert!(!w.update_first);
        assert_eq!(w.wanted[1].pin.as_deref(), Some("3.5.30-2~cairn12+1"));
        // the older one is offered too
        let p = pinned(&["etcd-server"], "3.4.23", AptUpdate::Auto)
            .decide(&f)
            .unwrap();
        assert_eq!(lines(&p), ["+ create apt package etcd-server=3.4.23-1"]);
    }

    #[test]
    fn installed_at_the_version_is_a_noop_and_another_version_a_change() {
        let out = format!(
            "etcd-server install ok installed 3.5.30-2~cairn12+1\n\
             etcd-client install ok installed 3.4.23-1\n{MADISON}times 100 50 200\n"
        );
        let pk = ["etcd-server".to_string(), "etcd-client".to_string()];
        let f = parse_facts(&out, &pk, LISTS_MAX_AGE);
        let p = pinned(&["etcd-server"], "3.5.30", AptUpdate::Auto)
            .decide(&f)
            .unwrap();
        assert_eq!(
            lines(&p),
            ["= ok apt packages etcd-server (already installed at 3.5.30)"]
        );
        assert!(p.work.is_none());
        let p = pinned(&["etcd-server", "etcd-client"], "3.5.30", AptUpdate::Auto)
            .decide(&f)
            .unwrap();
        assert_eq!(
            lines(&p),
            ["~ change apt package etcd-client 3.4.23-1 -> 3.5.30-2~cairn12+1"]
        );
        assert_eq!(p.predicted.installed, ["etcd-client"]);
        // without a version, installed is installed, and its version is reported
        let p = apt(&["etcd-server", "etcd-client"], AptUpdate::Auto)
            .decide(&f)
            .unwrap();
        assert!(p.work.is_none());
        assert_eq!(p.predicted.versions["etcd-client"], "3.4.23-1");
    }

    #[test]
    fn a_version_not_offered_updates_first_or_is_refused() {
        let out =
            "madison etcd-server | 3.4.23-1 | http://gw/debian ./ Packages\ntimes 100 50 200\n";
        let pk = ["etcd-server".to_string()];
        let f = parse_facts(out, &pk, LISTS_MAX_AGE);
        // fresh lists without it: an update may bring it; the pin is read after
        let p = pinned(&["etcd-server"], "3.5.30", AptUpdate::Auto)
            .decide(&f)
            .unwrap();
        assert_eq!(
            lines(&p),
            [
                "> run apt-get update (the package lists offer no etcd-server 3.5.30)",
                "+ create apt package etcd-server (3.5.30, its package version read after apt-get update)"
            ]
        );
        let w = p.work.unwrap();
        assert!(w.update_first && w.wanted[0].pin.is_none());
        // no update allowed: refused before anything is installed, naming what is offered
        let e = pinned(&["etcd-server"], "3.5.30", AptUpdate::Never)
            .decide(&f)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "n1: the apt sources offer no etcd-server 3.5.30 (apt-cache madison lists: \
             etcd-server 3.4.23-1); nothing was installed: give another repository"
        );
        // nothing offered at all
        let f = parse_facts("madison\ntimes 100 50 200\n", &pk, LISTS_MAX_AGE);
        let e = pinned(&["etcd-server"], "3.5.30", AptUpdate::Never)
            .decide(&f)
            .err()
            .unwrap();
        assert!(e.to_string().contains("lists: etcd-server none)"), "{e}");
        // planned without facts: a possible install, no refusal
        let p = pinned(&["etcd-server"], "3.5.30", AptUpdate::Never)
            .intent()
            .unwrap();
        assert_eq!(
            lines(&p),
            ["+ create apt package etcd-server (3.5.30, its package version read after apt-get update)"]
        );
        assert!(pinned(&["etcd-server"], "3.5.30; rm", AptUpdate::Auto)
            .validate()
            .is_err());
    }

    #[test]
    fn a_leftover_policy_is_removed_even_when_nothing_is_installed() {
        let out = "etcd-server install ok installed 3.5.30-2\nleftover-policy\ntimes 100 50 200\n";
        let f = parse_facts(out, &["etcd-server".into()], LISTS_MAX_AGE);
        assert!(f.leftover_policy);
        let p = apt(&["etcd-server"], AptUpdate::Auto).decide(&f).unwrap();
        assert_eq!(
            lines(&p),
            [
                "- delete file /usr/sbin/policy-rc.d (left by an apt install of cairn's that was cut off: it keeps every service from starting)",
                "= ok apt packages etcd-server (already installed)"
            ]
        );
        let w = p.work.unwrap();
        assert!(w.remove_policy && w.wanted.is_empty());
        assert!(!p.predicted.changed);
        let f = parse_facts("times 100 50 200\n", &["etcd-server".into()], LISTS_MAX_AGE);
        assert!(!f.leftover_policy);
        let p = apt(&["etcd-server"], AptUpdate::Auto).decide(&f).unwrap();
        assert!(!p.work.unwrap().remove_policy);
    }

    #[test]
    fn the_hold_script_writes_only_a_missing_policy_and_always_removes_its_own() {
        let s = hold_services_script();
        assert!(
            s.contains("if [ ! -e /usr/sbin/policy-rc.d ] && [ ! -L /usr/sbin/policy-rc.d ]"),
            "{s}"
        );
        assert!(
            s.contains("mv -T \"$t\" /usr/sbin/policy-rc.d && mine=1"),
            "{s}"
        );
        assert!(
            s.contains("trap '[ -z \"$mine\" ] || rm -f /usr/sbin/policy-rc.d' EXIT"),
            "{s}"
        );
        assert!(s.contains("exit 101"), "{s}");
        assert!(s.contains(POLICY_MARK), "{s}");
    }
}
