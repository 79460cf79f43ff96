//! What an etcd upgrade may do: the upgrade path rules
//! ([`upgrade_path`]: one minor version at a time, 3.5 → 3.6 only from
//! 3.5.26, no downgrade unless asked), the settings a target version no
//! longer accepts ([`removed_settings`]), and the `etcd_version` check
//! (each member's server version and the cluster version, from `/version`).
//!
//! The rules are plain functions with table tests; the runbook
//! `etcd-upgrade` calls them in its preflight, before anything changes.

use super::steps::{Conn, PemFile, Via};
use crate::action::Action;
use crate::error::StepError;
use crate::step::{Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};

// The doc of `etcd_upgrade_path` for runbook authors.
crate::registration::documented! {
    /// Whether etcd may be upgraded from version `from` to `to` (`3.4.23`, `v3.5.30`):
    /// patch upgrades, or the next minor version (etcd supports no skipped minor);
    /// 3.5 → 3.6 only from 3.5.26 (etcd's 3.6 upgrade guide); no downgrade unless
    /// `allow_downgrade` (then only within a minor, or one minor back). Returns a short
    /// description (`patch upgrade 3.5.16 -> 3.5.30`, `minor upgrade 3.4.23 -> 3.5.30`,
    /// `nothing to do: already 3.5.30`); throws the reason a path is refused.
    pub const PATH_DOC;
}

// The doc of `etcd_removed_settings` for runbook authors.
crate::registration::documented! {
    /// The settings of a member that etcd `target` no longer accepts, each as
    /// `SETTING (from SOURCE): why`. `settings` is an array of `NAME=VALUE` strings:
    /// flags (`--enable-v2=true`, `--debug`), `ETCD_*` environment variables and
    /// YAML config keys (`enable-v2=true`), e.g. the running process's command line
    /// and environment. Empty when the member can run `target` as configured.
    pub const REMOVED_DOC;
}

/// A version as `(major, minor, patch)`; `v` prefix and `-suffix` ignored.
pub fn parse_version(v: &str) -> Result<(u64, u64, u64), String> {
    let t = v.trim().trim_start_matches('v');
    let core = t.split(['-', '+', '~']).next().unwrap_or_default();
    let parts: Vec<&str> = core.split('.').collect();
    let bad = || format!("`{v}` is not an etcd version (like 3.5.30 or v3.5.30)");
    if parts.len() != 3 {
        return Err(bad());
    }
    let n = |s: &str| s.parse::<u64>().map_err(|_| bad());
    Ok((n(parts[0])?, n(parts[1])?, n(parts[2])?))
}

fn shown((a, b, c): (u64, u64, u64)) -> String {
    format!("{a}.{b}.{c}")
}

/// The first 3.5 release a 3.6 upgrade may start from (etcd's 3.6 upgrade
/// guide: 3.5.24 to 3.5.26 fix upgrade blockers).
pub const MIN_3_5_FOR_3_6: u64 = 26;

/// Whether a cluster on `from` may move to `to`; see [`PATH_DOC`].
pub fn upgrade_path(from: &str, to: &str, allow_downgrade: bool) -> Result<String, String> {
    let f = parse_version(from)?;
    let t = parse_version(to)?;
    let (fs, ts) = (shown(f), shown(t));
    if f == t {
        return Ok(format!("nothing to do: already {ts}"));
    }
    if f.0 != t.0 {
        return Err(format!(
            "{fs} -> {ts} changes the major version: not an etcd upgrade cairn can make"
        ));
    }
    if t < f {
        if !allow_downgrade {
            return Err(format!(
                "{fs} -> {ts} is a downgrade: refused unless --var allow_downgrade=true \
                 (etcd downgrades only one minor version at a time, and a cluster whose \
                 cluster version is already {}.{} needs etcd's downgrade procedure first)",
                f.0, f.1
            ));
        }
        if f.1 - t.1 > 1 {
            return Err(format!(
                "{fs} -> {ts} skips a minor version: downgrade one minor version at a time"
            ));
        }
        return Ok(format!("downgrade {fs} -> {ts}"));
    }
    match t.1 - f.1 {
        0 => Ok(format!("patch upgrade {fs} -> {ts}")),
        1 => {
            if (f.1, t.1) == (5, 6) && f.2 < MIN_3_5_FOR_3_6 {
                return Err(format!(
                    "{fs} -> {ts}: a 3.5 -> 3.6 upgrade needs every member on 3.5.{MIN_3_5_FOR_3_6} \
                     or newer first (etcd's 3.6 upgrade guide); upgrade to the newest 3.5 release first"
                ));
            }
            Ok(format!("minor upgrade {fs} -> {ts}"))
        }
        n => Err(format!(
            "{fs} -> {ts} skips {} minor version(s): etcd supports upgrades one minor version \
             at a time; upgrade to {}.{}.x first",
            n - 1,
            f.0,
            f.1 + 1
        )),
    }
}

/// A setting a version no longer accepts: its flag name (without `--`),
/// the value that is refused (`None`: any value), from which minor version,
/// and what to do instead.
struct Removed {
    flag: &'static str,
    value: Option<&'static str>,
    since: (u64, u64),
    instead: &'static str,
}

/// From etcd's upgrade guides and changelogs (3.5, 3.6): what the target's
/// server refuses to start with.
const REMOVED: &[Removed] = &[
    Removed {
        flag: "enable-v2",
        value: Some("true"),
        since: (3, 6),
        instead:
            "the v2 API is gone in 3.6: migrate v2 data (etcdutl check v2store), then remove it",
    },
    Removed {
        flag: "experimental-enable-v2v3",
        value: None,
        since: (3, 6),
        instead: "v2 emulation is gone in 3.6: remove it",
    },
    Removed {
        flag: "enable-v2v3",
        value: None,
        since: (3, 6),
        instead: "v2 emulation is gone in 3.6: remove it",
    },
    Removed {
        flag: "debug",
        value: None,
        since: (3, 6),
        instead: "use --log-level=debug",
    },
    Removed {
        flag: "log-output",
        value: None,
        since: (3, 6),
        instead: "use --log-outputs",
    },
    Removed {
        flag: "logger",
        value: Some("capnslog"),
        since: (3, 6),
        instead: "use --logger=zap",
    },
];

/// `NAME=VALUE` (or `--flag`) as a flag name and value: `--enable-v2=true`,
/// `ETCD_ENABLE_V2=true` and the config key `enable-v2=true` all give
/// `("enable-v2", "true")`; a bare `--debug` gives `("debug", "true")`.
fn flag_of(setting: &str) -> Option<(String, String)> {
    let (name, value) = match setting.split_once('=') {
        Some((n, v)) => (n.trim(), v.trim()),
        None => (setting.trim(), "true"),
    };
    let value = value.trim_matches(['"', '\'']).to_ascii_lowercase();
    if let Some(var) = name.strip_prefix("ETCD_") {
        return Some((var.to_ascii_lowercase().replace('_', "-"), value));
    }
    let flag = name.trim_start_matches('-');
    if flag.is_empty() || flag.contains(char::is_whitespace) {
        return None;
    }
    Some((flag.to_string(), value))
}

/// The settings etcd `target` refuses; see [`REMOVED_DOC`].
pub fn removed_settings(settings: &[String], target: &str) -> Result<Vec<String>, String> {
    let t = parse_version(target)?;
    let mut out = Vec::new();
    for s in settings {
        let Some((flag, value)) = flag_of(s) else {
            continue;
        };
        for r in REMOVED {
            if r.flag != flag || (t.0, t.1) < r.since {
                continue;
            }
            if r.value.is_some_and(|v| v != value) {
                continue;
            }
            out.push(format!(
                "{} (not accepted by etcd {}.{}): {}",
                s.trim(),
                r.since.0,
                r.since.1,
                r.instead
            ));
        }
    }
    Ok(out)
}

/// One endpoint's `/version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdEndpointVersion")]
pub struct EndpointVersion {
    #[rhai_type(readonly)]
    pub endpoint: String,
    /// The member's server version (`etcdserver`).
    #[rhai_type(readonly)]
    pub server: String,
    /// The cluster version it reports (`etcdcluster`): the lowest minor
    /// version of all members, decided by the leader.
    #[rhai_type(readonly)]
    pub cluster: String,
}

/// `etcd_version(#{endpoints, ca, cert?, cert_key?, via?, expect_server?, expect_cluster?, wait_seconds?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdVersion {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// Every endpoint's server version must be this (`3.5.30`).
    #[serde(default)]
    pub expect_server: Option<String>,
    /// Every endpoint's cluster version must start with this (`3.5`).
    #[serde(default)]
    pub expect_cluster: Option<String>,
    /// How long to keep asking until the expectations hold (default 0; the
    /// cluster version moves a few seconds after the last member's upgrade).
    #[serde(default)]
    pub wait_seconds: u64,
}

impl EtcdVersion {
    fn conn(&self) -> Conn {
        Conn {
            endpoints: self.endpoints.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            cert_key: self.cert_key.clone(),
            via: self.via.clone(),
        }
    }

    fn planned(&self) -> Prepared<Vec<EndpointVersion>, ()> {
        let mut what = String::new();
        if let Some(s) = &self.expect_server {
            what += &format!(" server {s}");
        }
        if let Some(c) = &self.expect_cluster {
            what += &format!(" cluster {c}");
        }
        if what.is_empty() {
            what = " version".into();
        }
        let actions = self
            .endpoints
            .iter()
            .map(|e| Action::verify("local", format!("etcd {e}{what}")))
            .collect();
        let p = |ep: &str, w: &str| unknown::placeholder("etcd_version", &format!("{ep}.{w}"));
        let predicted = self
            .endpoints
            .iter()
            .map(|e| EndpointVersion {
                endpoint: e.clone(),
                server: p(e, "server"),
                cluster: p(e, "cluster"),
            })
            .collect();
        Prepared::todo(actions, String::new(), predicted, ())
    }

    /// What is wrong with `versions`, if anything.
    fn problems(&self, versions: &[EndpointVersion]) -> Vec<String> {
        let mut bad = Vec::new();
        for v in versions {
            if let Some(s) = &self.expect_server {
                if v.server != s.trim_start_matches('v') {
                    bad.push(format!(
                        "{} runs etcd {}, expected {s}",
                        v.endpoint, v.server
                    ));
                }
            }
            if let Some(c) = &self.expect_cluster {
                let c = c.trim_start_matches('v');
                if v.cluster != c && !v.cluster.starts_with(&format!("{c}.")) {
                    bad.push(format!(
                        "{} reports cluster version {}, expected {c}",
                        v.endpoint, v.cluster
                    ));
                }
            }
        }
        bad
    }
}

impl Step for EtcdVersion {
    type Output = Vec<EndpointVersion>;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_version"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(
        this: &Valid<Self>,
        _ctx: &Ctx,
    ) -> Result<Prepared<Vec<EndpointVersion>, ()>, StepError> {
        this.conn().validate()?;
        Ok(this.planned())
    }
    fn intent(this: &Valid<Self>) -> Prepared<Vec<EndpointVersion>, ()> {
        this.planned()
    }
    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        _work: (),
    ) -> Result<Vec<EndpointVersion>, StepError> {
        let client = this.conn().client(ctx).await?;
        let urls: Vec<String> = client.endpoints().iter().map(|e| e.url.clone()).collect();
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs(this.wait_seconds);
        loop {
            let results = futures::future::join_all(urls.iter().map(|u| client.version(u))).await;
            let mut out = Vec::new();
            let mut bad = Vec::new();
            for (url, r) in urls.iter().zip(results) {
                match r {
                    Ok((server, cluster)) => out.push(EndpointVersion {
                        endpoint: url.clone(),
                        server,
                        cluster,
                    }),
                    Err(e) => bad.push(format!("endpoint {url}: {e}")),
                }
            }
            bad.extend(this.problems(&out));
            if bad.is_empty() {
                return Ok(out);
            }
            if std::time::Instant::now() >= deadline {
                return Err(StepError::Verify(bad.join("; ")));
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

/// `etcd_caught_up(#{endpoints, ca, cert?, cert_key?, via?, max_lag?, wait_seconds?})`:
/// every member answers, one leader that all follow, raft indexes within
/// `max_lag` of the highest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdCaughtUp {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// Largest raft index distance to the most advanced member (default 50).
    #[serde(default = "default_max_lag")]
    pub max_lag: u64,
    /// How long to keep asking (default 60).
    #[serde(default = "default_caught_up_wait")]
    pub wait_seconds: u64,
}

fn default_max_lag() -> u64 {
    50
}

fn default_caught_up_wait() -> u64 {
    60
}

/// What keeps `statuses` from being one caught-up cluster, if anything.
pub fn lagging(statuses: &[super::Status], max_lag: u64) -> Option<String> {
    let leaders: std::collections::BTreeSet<&str> =
        statuses.iter().map(|s| s.leader.as_str()).collect();
    if leaders.len() != 1 || leaders.contains("0") || leaders.contains("") {
        let seen: Vec<String> = statuses
            .iter()
            .map(|s| format!("{} follows {}", s.endpoint, s.leader))
            .collect();
        return Some(format!("no single leader: {}", seen.join(", ")));
    }
    let top = statuses.iter().map(|s| s.raft_index).max().unwrap_or(0);
    let behind: Vec<String> = statuses
        .iter()
        .filter(|s| top - s.raft_index > max_lag)
        .map(|s| {
            format!(
                "{} at raft index {} ({} behind {top})",
                s.endpoint,
                s.raft_index,
                top - s.raft_index
            )
        })
        .collect();
    if behind.is_empty() {
        None
    } else {
        Some(format!(
            "not caught up (more than {max_lag} entries behind): {}",
            behind.join(", ")
        ))
    }
}

impl EtcdCaughtUp {
    fn conn(&self) -> Conn {
        Conn {
            endpoints: self.endpoints.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            cert_key: self.cert_key.clone(),
            via: self.via.clone(),
        }
    }
    fn planned(&self) -> Prepared<Vec<super::Status>, ()> {
        let p = |ep: &str, w: &str| unknown::placeholder("etcd_caught_up", &format!("{ep}.{w}"));
        let predicted = self
            .endpoints
            .iter()
            .map(|ep| super::Status {
                endpoint: ep.clone(),
                member_id: p(ep, "member_id"),
                leader: p(ep, "leader"),
                is_leader: false,
                raft_term: 0,
                raft_index: 0,
                version: p(ep, "version"),
                db_size: 0,
                cluster_id: p(ep, "cluster_id"),
            })
            .collect();
        Prepared::todo(
            vec![Action::verify(
                "local",
                format!(
                    "etcd members {} caught up (one leader, raft index within {})",
                    self.endpoints.join(", "),
                    self.max_lag
                ),
            )],
            String::new(),
            predicted,
            (),
        )
    }
}

impl Step for EtcdCaughtUp {
    type Output = Vec<super::Status>;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_caught_up"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(
        this: &Valid<Self>,
        _ctx: &Ctx,
    ) -> Result<Prepared<Vec<super::Status>, ()>, StepError> {
        this.conn().validate()?;
        Ok(this.planned())
    }
    fn intent(this: &Valid<Self>) -> Prepared<Vec<super::Status>, ()> {
        this.planned()
    }
    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        _work: (),
    ) -> Result<Vec<super::Status>, StepError> {
        let client = this.conn().client(ctx).await?;
        let urls: Vec<String> = client.endpoints().iter().map(|e| e.url.clone()).collect();
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs(this.wait_seconds);
        loop {
            let results = futures::future::join_all(urls.iter().map(|u| client.status(u))).await;
            let mut out = Vec::new();
            let mut bad = Vec::new();
            for (url, r) in urls.iter().zip(results) {
                match r {
                    Ok(s) => out.push(s),
                    Err(e) => bad.push(format!("endpoint {url}: {e}")),
                }
            }
            if bad.is_empty() {
                match lagging(&out, this.max_lag) {
                    None => return Ok(out),
                    Some(why) => bad.push(why),
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(StepError::Verify(bad.join("; ")));
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrade_paths() {
        let ok = |f: &str, t: &str, down: bool| upgrade_path(f, t, down).unwrap();
        let refused = |f: &str, t: &str, down: bool| upgrade_path(f, t, down).unwrap_err();
        assert_eq!(
            ok("3.4.23", "3.5.30", false),
            "minor upgrade 3.4.23 -> 3.5.30"
        );
        assert_eq!(
            ok("v3.5.16", "v3.5.30", false),
            "patch upgrade 3.5.16 -> 3.5.30"
        );
        assert_eq!(
            ok("3.5.30", "3.5.30", false),
            "nothing to do: already 3.5.30"
        );
        assert_eq!(
            ok("3.5.26", "3.6.0", false),
            "minor upgrade 3.5.26 -> 3.6.0"
        );
        assert_eq!(
            ok("3.5.30", "3.6.5", false),
            "minor upgrade 3.5.30 -> 3.6.5"
        );
        assert_eq!(
            ok("3.5.30-2~cairn12+1", "3.5.30", false),
            "nothing to do: already 3.5.30"
        );
        assert!(refused("3.5.25", "3.6.0", false).contains("needs every member on 3.5.26 or newer"));
        assert!(refused("3.5.1", "3.6.0", false).contains("3.5.1 -> 3.6.0"));
        let skip = refused("3.4.23", "3.6.0", false);
        assert!(skip.contains("skips 1 minor version(s)"), "{skip}");
        assert!(skip.contains("upgrade to 3.5.x first"), "{skip}");
        let down = refused("3.5.30", "3.5.16", false);
        assert!(
            down.contains("is a downgrade: refused unless --var allow_downgrade=true"),
            "{down}"
        );
        assert_eq!(ok("3.5.30", "3.5.16", true), "downgrade 3.5.30 -> 3.5.16");
        assert_eq!(ok("3.5.30", "3.4.23", true), "downgrade 3.5.30 -> 3.4.23");
        assert!(refused("3.6.1", "3.4.23", true).contains("skips a minor version"));
        assert!(refused("2.3.8", "3.4.23", false).contains("major version"));
        assert!(refused("3.5", "3.5.30", false).contains("is not an etcd version"));
        assert!(refused("3.5.30", "latest", false).contains("`latest` is not an etcd version"));
    }

    #[test]
    fn lagging_members() {
        let st = |ep: &str, leader: &str, index: u64| super::super::Status {
            endpoint: ep.into(),
            member_id: ep.into(),
            leader: leader.into(),
            is_leader: ep == leader,
            raft_term: 2,
            raft_index: index,
            version: "3.5.30".into(),
            db_size: 0,
            cluster_id: "c".into(),
        };
        assert_eq!(lagging(&[st("a", "a", 100), st("b", "a", 95)], 50), None);
        let why = lagging(&[st("a", "a", 100), st("b", "a", 40)], 50).unwrap();
        assert_eq!(
            why,
            "not caught up (more than 50 entries behind): b at raft index 40 (60 behind 100)"
        );
        let split = lagging(&[st("a", "a", 100), st("b", "0", 100)], 50).unwrap();
        assert!(
            split.starts_with("no single leader: a follows a, b follows 0"),
            "{split}"
        );
    }

    #[test]
    fn removed_settings_by_target() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let member = s(&[
            "--name=node-1",
            "ETCD_ENABLE_V2=true",
            "--debug",
            "--logger=capnslog",
            "ETCD_DATA_DIR=/var/lib/etcd",
        ]);
        assert!(removed_settings(&member, "3.5.30").unwrap().is_empty());
        let found = removed_settings(&member, "3.6.0").unwrap();
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0]
            .starts_with("ETCD_ENABLE_V2=true (not accepted by etcd 3.6): the v2 API is gone"));
        assert!(found[1].starts_with("--debug (not accepted by etcd 3.6): use --log-level=debug"));
        assert!(
            found[2].starts_with("--logger=capnslog (not accepted by etcd 3.6): use --logger=zap")
        );
        // a value etcd still accepts is not reported
        let fine = s(&[
            "ETCD_ENABLE_V2=false",
            "--logger=zap",
            "enable-v2=\"false\"",
        ]);
        assert!(removed_settings(&fine, "3.6.0").unwrap().is_empty());
        // config file keys count too
        let yaml = s(&["experimental-enable-v2v3=/v2"]);
        assert_eq!(removed_settings(&yaml, "3.6.0").unwrap().len(), 1);
        assert!(removed_settings(&member, "next").is_err());
    }
}
