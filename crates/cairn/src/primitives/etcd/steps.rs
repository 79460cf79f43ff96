//! The etcd steps. All but `etcd_put` are read-only checks: their plan is a
//! `verify` action, and applying them asks the cluster and fails with a
//! [`StepError::Verify`] naming the member or endpoint when the answer is not
//! the expected one. `etcd_put` observes the key first and is a no-op when it
//! already holds the value.

use super::client::{chain, EtcdClient, Identity, Member, Refusal, Status};
use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::primitives::pki::Cert;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A PEM file on the operator's machine: a path (relative paths are inside the
/// workspace) or a `Cert` handle (its `cert_path`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PemFile {
    Path(String),
    Cert(Box<Cert>),
}

/// Hosts to reach the endpoints through: one for all, or one per endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Via {
    One(Box<Host>),
    Each(Vec<Host>),
}

/// How to reach the cluster: the arguments every etcd step shares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conn {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    pub cert: Option<PemFile>,
    /// Key file of `cert` (default: a `Cert` handle's `key_path`).
    pub cert_key: Option<String>,
    pub via: Option<Via>,
}

fn read_file(ctx: &Ctx, field: &str, path: &str) -> Result<String, StepError> {
    if unknown::is_unknown(path) || path.is_empty() {
        return Err(StepError::invalid(
            field,
            format!("`{path}` is not a file path"),
        ));
    }
    let full: PathBuf = ctx.workspace.root().join(path);
    std::fs::read_to_string(&full).map_err(|e| StepError::io("reading", full, e))
}

impl Conn {
    /// The `via` host of endpoint `i`, if any.
    fn via(&self, i: usize) -> Option<&Host> {
        match &self.via {
            None => None,
            Some(Via::One(h)) => Some(h),
            Some(Via::Each(hs)) => hs.get(i),
        }
    }

    /// `https://10.1.1.2:2379 via node-2` for plan lines.
    pub(super) fn shown(&self, i: usize) -> String {
        let ep = &self.endpoints[i];
        match self.via(i) {
            Some(h) => format!("{ep} via {}", h.name),
            None => ep.clone(),
        }
    }

    /// Check the arguments' shape (no I/O).
    pub(crate) fn validate(&self) -> Result<(), StepError> {
        if self.endpoints.is_empty() {
            return Err(StepError::invalid(
                "endpoints",
                "at least one endpoint is needed",
            ));
        }
        for e in &self.endpoints {
            if !unknown::is_unknown(e) {
                super::client::Endpoint::parse("endpoints", e)?;
            }
        }
        if let Some(Via::Each(hosts)) = &self.via {
            if hosts.len() != self.endpoints.len() {
                return Err(StepError::invalid(
                    "via",
                    format!(
                        "{} endpoints but {} via hosts (give one host for all, or one per endpoint)",
                        self.endpoints.len(),
                        hosts.len()
                    ),
                ));
            }
        }
        if self.cert_key.is_some() && self.cert.is_none() {
            return Err(StepError::invalid("cert_key", "a key needs its `cert`"));
        }
        Ok(())
    }

    /// Read the PEM files and open ssh forwards: a client ready to ask.
    pub async fn client(&self, ctx: &Ctx) -> Result<EtcdClient, StepError> {
        self.validate()?;
        let ca_path = match &self.ca {
            PemFile::Path(p) => p.clone(),
            PemFile::Cert(c) => c.cert_path.clone(),
        };
        let ca = read_file(ctx, "ca", &ca_path)?;
        let identity = match &self.cert {
            None => None,
            Some(cert) => {
                let (cert_path, key_path) = match cert {
                    PemFile::Path(p) => (p.clone(), self.cert_key.clone()),
                    PemFile::Cert(c) => (
                        c.cert_path.clone(),
                        self.cert_key.clone().or(Some(c.key_path.clone())),
                    ),
                };
                let key_path = key_path.filter(|k| !k.is_empty()).ok_or_else(|| {
                    StepError::invalid("cert_key", "the client certificate needs its key file")
                })?;
                Some(Identity::new(
                    read_file(ctx, "cert", &cert_path)?,
                    read_file(ctx, "cert_key", &key_path)?,
                ))
            }
        };
        let mut client = EtcdClient::new(&self.endpoints, &ca, identity)?;
        for (i, ep) in client.endpoints().to_vec().iter().enumerate() {
            if let Some(host) = self.via(i) {
                let forward = ctx.ssh.forward_held(host, &ep.authority()).await?;
                client.route_held(&ep.url, forward);
            }
        }
        Ok(client)
    }
}

/// Health of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EndpointHealth")]
pub struct EndpointHealth {
    #[rhai_type(readonly)]
    pub endpoint: String,
    #[rhai_type(readonly)]
    pub healthy: bool,
    /// Why not, if not.
    #[rhai_type(readonly)]
    pub error: String,
}

/// Result of `etcd_health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdHealth")]
pub struct EtcdHealth {
    /// Every endpoint healthy (always true when the step succeeded).
    #[rhai_type(readonly)]
    pub healthy: bool,
    #[rhai_type(skip)]
    pub endpoints: Vec<EndpointHealth>,
}

fn default_health_wait() -> u64 {
    30
}

/// `etcd_health(#{endpoints, ca, cert?, cert_key?, via?, wait_seconds? (30)})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdHealthCheck {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// How long to keep asking before reporting the unhealthy members.
    #[serde(default = "default_health_wait")]
    pub wait_seconds: u64,
}

/// `etcd_members(#{endpoints, ca, cert?, cert_key?, via?, expect?: [names]})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMembers {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// Names the cluster must consist of, all started.
    #[serde(default)]
    pub expect: Option<Vec<String>>,
    #[serde(default)]
    pub wait_seconds: u64,
}

/// `etcd_status(#{endpoints, ca, cert?, cert_key?, via?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdStatus {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
}

/// `etcd_put(#{endpoints, ca, cert?, cert_key?, via?, key, value})`: a no-op when `key` already holds `value`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdPut {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// The etcd key.
    pub key: String,
    pub value: String,
}

/// `etcd_get(#{endpoints, ca, cert?, cert_key?, via?, key})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdGet {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// The etcd key.
    pub key: String,
}

/// `etcd_expect_refused(#{endpoint, ca, cert?, cert_key?, via?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdExpectRefused {
    pub endpoint: String,
    pub ca: PemFile,
    /// A certificate the server must refuse (e.g. from another CA); none: no certificate.
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Host>,
}

macro_rules! conn {
    ($s:expr) => {
        Conn {
            endpoints: $s.endpoints.clone(),
            ca: $s.ca.clone(),
            cert: $s.cert.clone(),
            cert_key: $s.cert_key.clone(),
            via: $s.via.clone(),
        }
    };
}

fn verify_actions(conn: &Conn, what: impl Fn(String) -> String) -> Vec<Action> {
    (0..conn.endpoints.len())
        .map(|i| Action::verify("local", what(conn.shown(i))))
        .collect()
}

/// `member node-2 (https://10.1.1.2:2379)` when the member list knows the
/// endpoint, else `endpoint https://10.1.1.2:2379`.
fn who(members: &[Member], endpoint: &str) -> String {
    match members.iter().find(|m| {
        m.client_urls
            .iter()
            .any(|u| u.trim_end_matches('/') == endpoint)
    }) {
        Some(m) if !m.name.is_empty() => format!("member {} ({endpoint})", m.name),
        _ => format!("endpoint {endpoint}"),
    }
}

async fn poll<T>(
    wait: u64,
    mut attempt: impl AsyncFnMut() -> Result<T, StepError>,
) -> Result<T, StepError> {
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

impl EtcdHealthCheck {
    fn conn(&self) -> Conn {
        conn!(self)
    }
    fn planned(&self) -> Prepared<EtcdHealth, ()> {
        let conn = self.conn();
        Prepared::todo(
            verify_actions(&conn, |ep| format!("etcd {ep} healthy")),
            String::new(),
            EtcdHealth {
                healthy: true,
                endpoints: self
                    .endpoints
                    .iter()
                    .map(|e| EndpointHealth {
                        endpoint: e.clone(),
                        healthy: true,
                        error: String::new(),
                    })
                    .collect(),
            },
            (),
        )
    }
}

impl Step for EtcdHealthCheck {
    type Output = EtcdHealth;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_health"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(
        this: &Valid<Self>,
        _ctx: &Ctx,
    ) -> Result<Prepared<EtcdHealth, ()>, StepError> {
        this.conn().validate()?;
        Ok(this.planned())
    }
    fn intent(this: &Valid<Self>) -> Prepared<EtcdHealth, ()> {
        this.planned()
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<EtcdHealth, StepError> {
        let client = this.conn().client(ctx).await?;
        let urls: Vec<String> = client.endpoints().iter().map(|e| e.url.clone()).collect();
        let deadline = Instant::now() + Duration::from_secs(this.wait_seconds);
        loop {
            let results = futures::future::join_all(urls.iter().map(|u| client.health(u))).await;
            let report: Vec<EndpointHealth> = urls
                .iter()
                .zip(&results)
                .map(|(u, r)| EndpointHealth {
                    endpoint: u.clone(),
                    healthy: r.is_ok(),
                    error: r.as_ref().err().map(|e| e.to_string()).unwrap_or_default(),
                })
                .collect();
            if report.iter().all(|r| r.healthy) {
                return Ok(EtcdHealth {
                    healthy: true,
                    endpoints: report,
                });
            }
            if Instant::now() >= deadline {
                let members = client.member_list().await.unwrap_or_default();
                let bad: Vec<String> = report
                    .iter()
                    .filter(|r| !r.healthy)
                    .map(|r| format!("{} unhealthy: {}", who(&members, &r.endpoint), r.error))
                    .collect();
                return Err(StepError::Verify(bad.join("; ")));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Check a member list against expected names: what is wrong, if anything.
pub fn check_members(members: &[Member], expect: &[String]) -> Option<String> {
    let mut problems = Vec::new();
    for name in expect {
        if !members.iter().any(|m| &m.name == name) {
            problems.push(format!("member {name} missing"));
        }
    }
    for m in members {
        if !m.started {
            problems.push(format!(
                "member {} ({}) has not started",
                m.id,
                m.peer_urls.join(",")
            ));
        } else if !expect.contains(&m.name) {
            problems.push(format!("member {} ({}) not expected", m.name, m.id));
        }
    }
    if problems.is_empty() {
        return None;
    }
    let have: Vec<&str> = members
        .iter()
        .map(|m| {
            if m.started {
                m.name.as_str()
            } else {
                "(unstarted)"
            }
        })
        .collect();
    Some(format!(
        "{} (members: {})",
        problems.join("; "),
        have.join(", ")
    ))
}

impl EtcdMembers {
    fn conn(&self) -> Conn {
        conn!(self)
    }
    fn planned(&self) -> Prepared<Vec<Member>, ()> {
        let what = match &self.expect {
            Some(names) => format!("etcd members are {}", names.join(", ")),
            None => "etcd member list".into(),
        };
        let via = self.conn().shown(0);
        // what a successful check returns: the expected members
        let predicted = self
            .expect
            .iter()
            .flatten()
            .map(|name| Member {
                id: unknown::placeholder("etcd_members", &format!("{name}.id")),
                name: name.clone(),
                peer_urls: vec![],
                client_urls: vec![],
                started: true,
                is_learner: false,
            })
            .collect();
        Prepared::todo(
            vec![Action::verify("local", format!("{what} (asking {via})"))],
            String::new(),
            predicted,
            (),
        )
    }
}

impl Step for EtcdMembers {
    type Output = Vec<Member>;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_members"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(
        this: &Valid<Self>,
        _ctx: &Ctx,
    ) -> Result<Prepared<Vec<Member>, ()>, StepError> {
        this.conn().validate()?;
        Ok(this.planned())
    }
    fn intent(this: &Valid<Self>) -> Prepared<Vec<Member>, ()> {
        this.planned()
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Vec<Member>, StepError> {
        let client = this.conn().client(ctx).await?;
        poll(this.wait_seconds, async || {
            let members = client.member_list().await?;
            if let Some(expect) = &this.expect {
                if let Some(problem) = check_members(&members, expect) {
                    return Err(StepError::Verify(problem));
                }
            }
            Ok(members)
        })
        .await
    }
}

impl EtcdStatus {
    fn conn(&self) -> Conn {
        conn!(self)
    }
    fn planned(&self) -> Prepared<Vec<Status>, ()> {
        let p = |ep: &str, what: &str| unknown::placeholder("etcd_status", &format!("{ep}.{what}"));
        let predicted = self
            .endpoints
            .iter()
            .map(|ep| Status {
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
            verify_actions(&self.conn(), |ep| format!("etcd {ep} status")),
            String::new(),
            predicted,
            (),
        )
    }
}

impl Step for EtcdStatus {
    type Output = Vec<Status>;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_status"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(
        this: &Valid<Self>,
        _ctx: &Ctx,
    ) -> Result<Prepared<Vec<Status>, ()>, StepError> {
        this.conn().validate()?;
        Ok(this.planned())
    }
    fn intent(this: &Valid<Self>) -> Prepared<Vec<Status>, ()> {
        this.planned()
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Vec<Status>, StepError> {
        let client = this.conn().client(ctx).await?;
        let urls: Vec<String> = client.endpoints().iter().map(|e| e.url.clone()).collect();
        let results = futures::future::join_all(urls.iter().map(|u| client.status(u))).await;
        let mut out = Vec::new();
        let mut bad = Vec::new();
        for (url, r) in urls.iter().zip(results) {
            match r {
                Ok(s) => out.push(s),
                Err(e) => bad.push(format!("endpoint {url}: {e}")),
            }
        }
        if !bad.is_empty() {
            return Err(StepError::Verify(bad.join("; ")));
        }
        Ok(out)
    }
}

fn sha(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

impl EtcdPut {
    fn conn(&self) -> Conn {
        conn!(self)
    }
    fn what(&self) -> String {
        format!("etcd key {}", self.key)
    }
    fn unknown_current(&self, why: &StepError) -> Prepared<bool, ()> {
        Prepared::todo(
            vec![Action::change("local", self.what())
                .because(format!("current value unknown: {why}"))],
            String::new(),
            true,
            (),
        )
    }
}

impl Step for EtcdPut {
    type Output = bool;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()?;
        if self.key.is_empty() {
            return Err(StepError::invalid("key", "the etcd key is empty"));
        }
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "etcd_put"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<bool, ()>, StepError> {
        let conn = this.conn();
        conn.validate()?;
        if this.key.is_empty() {
            return Err(StepError::invalid("key", "the etcd key is empty"));
        }
        // the cluster may not exist yet when planning: then the value is unknown
        let client = match conn.client(ctx).await {
            Ok(c) => c,
            Err(e) => return Ok(this.unknown_current(&e)),
        };
        let current = match client.get(&this.key).await {
            Ok(v) => v,
            Err(e) => return Ok(this.unknown_current(&e)),
        };
        let facts = fingerprint(&current.as_deref().map(sha));
        Ok(match current {
            Some(v) if v == this.value => Prepared::done(
                vec![Action::noop("local", this.what(), "already has this value")],
                facts,
                false,
            ),
            Some(v) => {
                let diff = crate::primitives::local::unified_diff(&this.key, &v, &this.value);
                Prepared::todo(
                    vec![Action::change("local", this.what()).with_diff(Some(diff))],
                    facts,
                    true,
                    (),
                )
            }
            None => {
                let diff = crate::primitives::local::unified_diff(&this.key, "", &this.value);
                Prepared::todo(
                    vec![Action::create("local", this.what()).with_diff(Some(diff))],
                    facts,
                    true,
                    (),
                )
            }
        })
    }
    fn intent(this: &Valid<Self>) -> Prepared<bool, ()> {
        Prepared::todo(
            vec![Action::create("local", this.what())],
            String::new(),
            true,
            (),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<bool, StepError> {
        let client = this.conn().client(ctx).await?;
        client.put(&this.key, &this.value).await?;
        Ok(true)
    }
}

impl EtcdGet {
    fn conn(&self) -> Conn {
        conn!(self)
    }
    fn planned(&self) -> Prepared<Option<String>, ()> {
        Prepared::todo(
            vec![Action::verify("local", format!("etcd get {}", self.key))],
            String::new(),
            Some(unknown::placeholder("etcd_get", &self.key)),
            (),
        )
    }
}

impl Step for EtcdGet {
    type Output = Option<String>;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_get"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(
        this: &Valid<Self>,
        _ctx: &Ctx,
    ) -> Result<Prepared<Option<String>, ()>, StepError> {
        this.conn().validate()?;
        Ok(this.planned())
    }
    fn intent(this: &Valid<Self>) -> Prepared<Option<String>, ()> {
        this.planned()
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Option<String>, StepError> {
        this.conn().client(ctx).await?.get(&this.key).await
    }
}

impl EtcdExpectRefused {
    fn conn(&self) -> Conn {
        Conn {
            endpoints: vec![self.endpoint.clone()],
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            cert_key: self.cert_key.clone(),
            via: self.via.clone().map(|h| Via::One(Box::new(h))),
        }
    }
    fn planned(&self) -> Prepared<Refusal, ()> {
        let whom = match &self.cert {
            None => "a client without a certificate".to_string(),
            Some(PemFile::Cert(c)) => format!("a client with certificate {}", c.name),
            Some(PemFile::Path(p)) => format!("a client with certificate {p}"),
        };
        Prepared::todo(
            vec![Action::verify(
                "local",
                format!("etcd {} refuses {whom}", self.conn().shown(0)),
            )],
            String::new(),
            Refusal {
                endpoint: self.endpoint.clone(),
                how: unknown::placeholder("etcd_expect_refused", "how"),
            },
            (),
        )
    }
}

impl Step for EtcdExpectRefused {
    type Output = Refusal;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_expect_refused"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(this: &Valid<Self>, _ctx: &Ctx) -> Result<Prepared<Refusal, ()>, StepError> {
        this.conn().validate()?;
        Ok(this.planned())
    }
    fn intent(this: &Valid<Self>) -> Prepared<Refusal, ()> {
        this.planned()
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Refusal, StepError> {
        let client = this.conn().client(ctx).await?;
        client
            .expect_refused(&this.endpoint)
            .await
            .map_err(|e| match e {
                StepError::Verify(m) => StepError::Verify(m),
                other => StepError::Verify(format!("{}: {}", this.endpoint, chain(&other))),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, id: &str) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![format!("https://{id}:2380")],
            client_urls: vec![format!("https://{id}:2379")],
            started: !name.is_empty(),
            is_learner: false,
        }
    }

    #[test]
    fn member_lists_are_checked_against_expected_names() {
        let names: Vec<String> = ["node-1", "node-2"].iter().map(|s| s.to_string()).collect();
        let ok = [member("node-1", "a1"), member("node-2", "b2")];
        assert_eq!(check_members(&ok, &names), None);
        let unstarted = [member("node-1", "a1"), member("", "b2")];
        assert_eq!(
            check_members(&unstarted, &names).unwrap(),
            "member node-2 missing; member b2 (https://b2:2380) has not started (members: node-1, (unstarted))"
        );
        let extra = [
            member("node-1", "a1"),
            member("node-2", "b2"),
            member("old", "c3"),
        ];
        assert_eq!(
            check_members(&extra, &names).unwrap(),
            "member old (c3) not expected (members: node-1, node-2, old)"
        );
        assert_eq!(
            who(&ok, "https://b2:2379"),
            "member node-2 (https://b2:2379)"
        );
        assert_eq!(who(&ok, "https://zz:2379"), "endpoint https://zz:2379");
    }

    #[test]
    fn via_must_fit_the_endpoints() {
        let conn = Conn {
            endpoints: vec![
                "https://10.0.0.1:2379".into(),
                "https://10.0.0.2:2379".into(),
            ],
            ca: PemFile::Path("pki/ca.crt".into()),
            cert: None,
            cert_key: None,
            via: Some(Via::Each(vec![Host::new("n1", "10.0.0.1")])),
        };
        assert_eq!(
            conn.validate().unwrap_err().to_string(),
            "invalid `via`: 2 endpoints but 1 via hosts (give one host for all, or one per endpoint)"
        );
        let conn = Conn {
            via: Some(Via::One(Box::new(Host::new("n1", "10.0.0.1")))),
            ..conn
        };
        conn.validate().unwrap();
        assert_eq!(conn.shown(1), "https://10.0.0.2:2379 via n1");
    }
}
