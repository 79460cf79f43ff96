//! Membership changes over etcd's JSON gateway: `etcd_member_list` (read-only,
//! answers in plans), `etcd_member_add` (as a learner by default),
//! `etcd_member_promote` (retried while etcd says the learner is not in sync)
//! and `etcd_member_remove` (refused when the remaining voting members would
//! not have a healthy quorum).
//!
//! Each step reads the member list first and decides from it, so a rerun does
//! nothing: an add is `= ok` when a member with those peer URLs exists, a
//! promote when the member already votes, a remove when it is gone. The
//! gateway paths (`/v3/cluster/member/{list,add,promote,remove}`) are the same
//! on etcd 3.4 and 3.5; learners exist since 3.4.

use super::client::{member_of, EtcdClient, Member};
use super::steps::{Conn, PemFile, Via};
use crate::action::Action;
use crate::error::StepError;
use crate::executor::Executor;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use rhai::{Array, Dynamic};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// etcd's answer when a learner is not caught up with the leader yet.
const NOT_IN_SYNC: &str = "in sync with leader";
/// etcd's answer when the member to promote already votes.
const NOT_LEARNER: &str = "can only promote a learner member";
/// etcd's answer when the member to remove or promote is not in the cluster.
const NOT_FOUND: &str = "member not found";
/// etcd's answers (strict reconfiguration check) while the voting members
/// have not all been connected for 5 s, or too few have started: it passes
/// by itself once they have (e.g. just after a start or restart).
const SETTLING: [&str; 2] = ["unhealthy cluster", "not enough started members"];

fn settling(e: &StepError) -> bool {
    SETTLING.iter().any(|t| says(e, t))
}

/// How long a change is asked again while etcd answers [`SETTLING`].
const SETTLE_WAIT: Duration = Duration::from_secs(60);

/// `etcd_member_list(#{endpoints, ca, cert?, cert_key?, via?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMemberList {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
}

fn default_true() -> bool {
    true
}

/// `etcd_member_add(#{endpoints, ca, cert?, cert_key?, via?, peer_urls, name?, learner? (true)})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMemberAdd {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// The new member's peer URLs (`https://ADDRESS:2380`).
    pub peer_urls: Vec<String>,
    /// The name the member will start with: refused when another member
    /// already has it; shown in plan lines.
    #[serde(default)]
    pub name: Option<String>,
    /// Join as a non-voting learner (default true).
    #[serde(default = "default_true")]
    pub learner: bool,
}

fn default_promote_wait() -> u64 {
    120
}

/// `etcd_member_promote(#{endpoints, ca, cert?, cert_key?, via?, name? | peer_urls?, wait_seconds? (120)})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMemberPromote {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub peer_urls: Option<Vec<String>>,
    /// How long to keep asking while etcd says the learner is not in sync.
    #[serde(default = "default_promote_wait")]
    pub wait_seconds: u64,
}

/// `etcd_member_remove(#{endpoints, ca, cert?, cert_key?, via?, name? | peer_urls?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMemberRemove {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub peer_urls: Option<Vec<String>>,
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

fn norm(urls: &[String]) -> BTreeSet<String> {
    urls.iter()
        .map(|u| u.trim_end_matches('/').to_string())
        .collect()
}

/// Which member a promote or remove acts on: by name or by peer URLs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Which {
    Name(String),
    PeerUrls(Vec<String>),
}

impl Which {
    fn from_args(
        name: &Option<String>,
        peer_urls: &Option<Vec<String>>,
    ) -> Result<Which, StepError> {
        match (name, peer_urls) {
            (Some(n), None) if !n.is_empty() => Ok(Which::Name(n.clone())),
            (None, Some(p)) if !p.is_empty() => Ok(Which::PeerUrls(p.clone())),
            (Some(_), Some(_)) => Err(StepError::invalid(
                "name",
                "give either `name` or `peer_urls`, not both",
            )),
            _ => Err(StepError::invalid(
                "name",
                "the member is named by `name` or by `peer_urls` (non-empty)",
            )),
        }
    }

    /// The member it names, if it is in `members`.
    pub fn find<'a>(&self, members: &'a [Member]) -> Option<&'a Member> {
        match self {
            Which::Name(n) => members.iter().find(|m| &m.name == n),
            Which::PeerUrls(p) => {
                let want = norm(p);
                members.iter().find(|m| norm(&m.peer_urls) == want)
            }
        }
    }
}

impl std::fmt::Display for Which {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Which::Name(n) => write!(f, "{n}"),
            Which::PeerUrls(p) => write!(f, "with peer URLs {}", p.join(",")),
        }
    }
}

/// `node-4 (id 8e9e05c52164694d)`, or its peer URLs while it has no name.
fn shown(m: &Member) -> String {
    if m.started {
        format!("{} (id {})", m.name, m.id)
    } else {
        format!("{} (id {}, not started)", m.peer_urls.join(","), m.id)
    }
}

fn decimal_id(m: &Member) -> Result<String, StepError> {
    u64::from_str_radix(&m.id, 16)
        .map(|n| n.to_string())
        .map_err(|_| StepError::Other(format!("etcd member id `{}` is not hex", m.id)))
}

/// Whether an answer is etcd's error containing `text`.
fn says(e: &StepError, text: &str) -> bool {
    matches!(e, StepError::Api { message, .. } if message.contains(text))
}

/// What removing `target` leaves: `Ok(reason)` when the remaining voting
/// members keep a healthy quorum, else `Err(why not)`. `healthy` holds the
/// ids of the members that answered `/health` with true; `problems` says
/// why the others did not.
pub fn quorum_after_removal(
    members: &[Member],
    target: &Member,
    healthy: &BTreeSet<String>,
    problems: &[String],
) -> Result<String, String> {
    if target.is_learner {
        return Ok("a learner: the quorum does not change".into());
    }
    let remaining: Vec<&Member> = members
        .iter()
        .filter(|m| !m.is_learner && m.id != target.id)
        .collect();
    let up = remaining.iter().filter(|m| healthy.contains(&m.id)).count();
    let quorum = remaining.len() / 2 + 1;
    let line = format!(
        "{up} of the {} remaining voting members healthy, quorum {quorum}",
        remaining.len()
    );
    if remaining.is_empty() {
        return Err(format!(
            "{} is the last voting member; removing it would leave no cluster",
            shown(target)
        ));
    }
    if up < quorum {
        let mut why = format!("removing {} would lose quorum: {line}", shown(target));
        if !problems.is_empty() {
            why.push_str(&format!(" ({})", problems.join("; ")));
        }
        return Err(why);
    }
    Ok(line)
}

/// Health of one member, asked at its own client URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHealth {
    pub id: String,
    pub name: String,
    pub is_learner: bool,
    pub healthy: bool,
    /// Why not, if not.
    pub error: String,
    #[serde(skip)]
    shown: String,
}

/// Ask `/health` of each of `members` at its own (first) client URL, through
/// the first `via` host of `conn` if it has one, 3 s each, concurrently.
async fn health(ctx: &Ctx, conn: &Conn, members: &[Member]) -> Vec<MemberHealth> {
    let via = match &conn.via {
        Some(Via::Each(hs)) => hs.first().cloned().map(|h| Via::One(Box::new(h))),
        other => other.clone(),
    };
    let row = |m: &Member, error: Option<String>| MemberHealth {
        id: m.id.clone(),
        name: m.name.clone(),
        is_learner: m.is_learner,
        healthy: error.is_none(),
        error: error.unwrap_or_default(),
        shown: shown(m),
    };
    let urls: Vec<String> = members
        .iter()
        .filter_map(|m| m.client_urls.first().cloned())
        .collect();
    let client = if urls.is_empty() {
        None
    } else {
        let asking = Conn {
            endpoints: urls,
            ca: conn.ca.clone(),
            cert: conn.cert.clone(),
            cert_key: conn.cert_key.clone(),
            via,
        };
        Some(asking.client(ctx).await.map(|mut c| {
            c.set_timeout(Duration::from_secs(3));
            c
        }))
    };
    let ask = |m: &Member| {
        let client = &client;
        let m = m.clone();
        async move {
            let Some(url) = m.client_urls.first() else {
                return Some("no client URL (not started)".to_string());
            };
            match client {
                Some(Ok(c)) => c.health(url).await.err().map(|e| e.to_string()),
                Some(Err(e)) => Some(format!("cannot ask: {e}")),
                None => Some("no client URL".into()),
            }
        }
    };
    let answers = futures::future::join_all(members.iter().map(ask)).await;
    members
        .iter()
        .zip(answers)
        .map(|(m, e)| row(m, e))
        .collect()
}

async fn list(conn: &Conn, ctx: &Ctx) -> Result<(EtcdClient, Vec<Member>), StepError> {
    let client = conn.client(ctx).await?;
    let members = client.member_list().await?;
    Ok((client, members))
}

fn names(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| {
            let n = if m.started {
                m.name.as_str()
            } else {
                "(unstarted)"
            };
            if m.is_learner {
                format!("{n} (learner)")
            } else {
                n.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl EtcdMemberList {
    fn what(&self) -> String {
        format!("etcd member list (asking {})", self.endpoints.join(", "))
    }
}

impl Step for EtcdMemberList {
    type Output = Vec<Member>;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        conn!(self).validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_member_list"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Vec<Member>, ()>, StepError> {
        let (_, members) = list(&conn!(this), ctx).await?;
        Ok(Prepared::done(
            vec![Action::noop(
                "local",
                format!("read {}", this.what()),
                names(&members),
            )],
            fingerprint(&members),
            members,
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<Vec<Member>, ()> {
        Prepared::todo(
            vec![Action::verify("local", format!("read {}", this.what()))],
            String::new(),
            vec![],
            (),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Vec<Member>, StepError> {
        Ok(list(&conn!(this), ctx).await?.1)
    }
}

/// `etcd_member_health(#{endpoints, ca, cert?, cert_key?, via?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMemberHealth {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
}

impl Step for EtcdMemberHealth {
    type Output = Vec<MemberHealth>;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        conn!(self).validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_member_health"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Vec<MemberHealth>, ()>, StepError> {
        let conn = conn!(this);
        let (_, members) = list(&conn, ctx).await?;
        let report = health(ctx, &conn, &members).await;
        let line = report
            .iter()
            .map(|h| {
                format!(
                    "{} {}",
                    if h.name.is_empty() { &h.id } else { &h.name },
                    if h.healthy { "healthy" } else { "unhealthy" }
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Prepared::done(
            vec![Action::noop(
                "local",
                format!(
                    "read etcd members' health (asking {})",
                    this.endpoints.join(", ")
                ),
                line,
            )],
            fingerprint(&report),
            report,
        ))
    }
    fn intent(_this: &Valid<Self>) -> Prepared<Vec<MemberHealth>, ()> {
        Prepared::todo(
            vec![Action::verify("local", "read etcd members' health")],
            String::new(),
            vec![],
            (),
        )
    }
    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        _work: (),
    ) -> Result<Vec<MemberHealth>, StepError> {
        Ok(this.prepare(ctx).await?.predicted)
    }
}

impl EtcdMemberAdd {
    fn what(&self) -> String {
        format!(
            "etcd member {}{} with peer URLs {}",
            self.name.as_deref().unwrap_or(""),
            if self.learner { " as a learner" } else { "" },
            self.peer_urls.join(",")
        )
        .replace("member  as", "member as")
    }
    fn predicted(&self) -> Member {
        Member {
            id: unknown::placeholder("etcd_member_add", "id"),
            name: String::new(),
            peer_urls: self.peer_urls.clone(),
            client_urls: vec![],
            started: false,
            is_learner: self.learner,
        }
    }
}

impl Step for EtcdMemberAdd {
    type Output = Member;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        conn!(self).validate()?;
        if self.peer_urls.is_empty() {
            return Err(StepError::invalid("peer_urls", "at least one peer URL"));
        }
        for u in &self.peer_urls {
            if !unknown::is_unknown(u) {
                super::client::Endpoint::parse("peer_urls", u)?;
            }
        }
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "etcd_member_add"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<Member, ()>, StepError> {
        let (_, members) = list(&conn!(this), ctx).await?;
        let facts = fingerprint(&members);
        let want = norm(&this.peer_urls);
        if let Some(m) = members.iter().find(|m| norm(&m.peer_urls) == want) {
            let role = if m.is_learner {
                "a learner"
            } else {
                "a voting member"
            };
            return Ok(Prepared::done(
                vec![Action::noop(
                    "local",
                    this.what(),
                    format!("already {role}: {}", shown(m)),
                )],
                facts,
                m.clone(),
            ));
        }
        if let Some(m) = members
            .iter()
            .find(|m| !norm(&m.peer_urls).is_disjoint(&want))
        {
            return Err(StepError::Verify(format!(
                "peer URLs {} overlap those of member {} ({}); remove it first",
                this.peer_urls.join(","),
                shown(m),
                m.peer_urls.join(",")
            )));
        }
        if let Some(name) = &this.name {
            if let Some(m) = members.iter().find(|m| &m.name == name) {
                return Err(StepError::Verify(format!(
                    "a member named {name} already exists with peer URLs {} (id {}); remove it first",
                    m.peer_urls.join(","),
                    m.id
                )));
            }
        }
        Ok(Prepared::todo(
            vec![Action::create("local", this.what())
                .because(format!("members now: {}", names(&members)))],
            facts,
            this.predicted(),
            (),
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<Member, ()> {
        Prepared::todo(
            vec![Action::create("local", this.what())],
            String::new(),
            this.predicted(),
            (),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Member, StepError> {
        let client = conn!(this).client(ctx).await?;
        let body = json!({"peerURLs": this.peer_urls, "isLearner": this.learner});
        let deadline = Instant::now() + SETTLE_WAIT;
        loop {
            let answer = client
                .first(|url| {
                    let body = body.clone();
                    let client = &client;
                    async move { client.post(&url, "/v3/cluster/member/add", body).await }
                })
                .await;
            match answer {
                Ok(v) => return Ok(member_of(&v["member"])),
                Err(e) if settling(&e) && Instant::now() < deadline => {
                    // a bounded retry (until `deadline`): etcd gives this
                    // answer only for the seconds its cluster settles
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl EtcdMemberPromote {
    fn which(&self) -> Result<Which, StepError> {
        Which::from_args(&self.name, &self.peer_urls)
    }
    fn what(&self) -> String {
        match self.which() {
            Ok(w) => format!("promote etcd learner {w} to a voting member"),
            Err(_) => "promote etcd learner".into(),
        }
    }
}

impl Step for EtcdMemberPromote {
    type Output = Member;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        conn!(self).validate()?;
        self.which().map(|_| ())
    }
    fn kind(&self) -> &'static str {
        "etcd_member_promote"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<Member, ()>, StepError> {
        let which = this.which()?;
        let (_, members) = list(&conn!(this), ctx).await?;
        let facts = fingerprint(&members);
        match which.find(&members) {
            Some(m) if !m.is_learner => Ok(Prepared::done(
                vec![Action::noop(
                    "local",
                    this.what(),
                    format!("already a voting member: {}", shown(m)),
                )],
                facts,
                m.clone(),
            )),
            Some(m) => Ok(Prepared::todo(
                vec![Action::change("local", this.what())
                    .because(format!("{} is a learner", shown(m)))],
                facts,
                Member {
                    is_learner: false,
                    ..m.clone()
                },
                (),
            )),
            // added by an earlier step of this run (a plan does not add it)
            None => Ok(Prepared::todo(
                vec![Action::change("local", this.what()).because(format!(
                    "not a member yet (members now: {})",
                    names(&members)
                ))],
                facts,
                Member {
                    id: unknown::placeholder("etcd_member_promote", "id"),
                    name: this.name.clone().unwrap_or_default(),
                    peer_urls: this.peer_urls.clone().unwrap_or_default(),
                    client_urls: vec![],
                    started: this.name.is_some(),
                    is_learner: false,
                },
                (),
            )),
        }
    }
    fn intent(this: &Valid<Self>) -> Prepared<Member, ()> {
        Prepared::todo(
            vec![Action::change("local", this.what())],
            String::new(),
            Member {
                id: unknown::placeholder("etcd_member_promote", "id"),
                name: this.name.clone().unwrap_or_default(),
                peer_urls: this.peer_urls.clone().unwrap_or_default(),
                client_urls: vec![],
                started: this.name.is_some(),
                is_learner: false,
            },
            (),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Member, StepError> {
        let which = this.which()?;
        let client = conn!(this).client(ctx).await?;
        let deadline = Instant::now() + Duration::from_secs(this.wait_seconds);
        loop {
            let members = client.member_list().await?;
            let Some(m) = which.find(&members) else {
                return Err(StepError::Verify(format!(
                    "no etcd member {which} to promote (members: {})",
                    names(&members)
                )));
            };
            if !m.is_learner {
                return Ok(m.clone());
            }
            let body = json!({"ID": decimal_id(m)?});
            let answer = client
                .first(|url| {
                    let body = body.clone();
                    let client = &client;
                    async move { client.post(&url, "/v3/cluster/member/promote", body).await }
                })
                .await;
            match answer {
                Ok(_) => {
                    return Ok(Member {
                        is_learner: false,
                        ..m.clone()
                    })
                }
                Err(e) if (says(&e, NOT_IN_SYNC) || settling(&e)) && Instant::now() < deadline => {
                    // a bounded retry (until `deadline`): etcd gives this
                    // answer only for the seconds its cluster settles
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                Err(e) if says(&e, NOT_IN_SYNC) => {
                    return Err(StepError::Timeout {
                        what: format!(
                            "learner {} still not in sync with the leader ({e})",
                            shown(m)
                        ),
                        seconds: this.wait_seconds,
                    })
                }
                // promoted meanwhile (by an earlier, interrupted attempt): the loop sees it
                Err(e) if says(&e, NOT_LEARNER) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl EtcdMemberRemove {
    fn which(&self) -> Result<Which, StepError> {
        Which::from_args(&self.name, &self.peer_urls)
    }
    fn what(&self) -> String {
        match self.which() {
            Ok(w) => format!("etcd member {w}"),
            Err(_) => "etcd member".into(),
        }
    }
}

impl Step for EtcdMemberRemove {
    type Output = bool;
    type Work = Member;
    fn validate(&self) -> Result<(), StepError> {
        conn!(self).validate()?;
        self.which().map(|_| ())
    }
    fn kind(&self) -> &'static str {
        "etcd_member_remove"
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<bool, Member>, StepError> {
        let which = this.which()?;
        let (_, members) = list(&conn!(this), ctx).await?;
        let facts = fingerprint(&members);
        let Some(target) = which.find(&members) else {
            return Ok(Prepared::done(
                vec![Action::noop(
                    "local",
                    this.what(),
                    format!("not a member (members: {})", names(&members)),
                )],
                facts,
                false,
            ));
        };
        let others: Vec<Member> = members
            .iter()
            .filter(|m| !m.is_learner && m.id != target.id)
            .cloned()
            .collect();
        let report = health(ctx, &conn!(this), &others).await;
        let healthy: BTreeSet<String> = report
            .iter()
            .filter(|h| h.healthy)
            .map(|h| h.id.clone())
            .collect();
        let problems: Vec<String> = report
            .iter()
            .filter(|h| !h.healthy)
            .map(|h| format!("{} unhealthy: {}", h.shown, h.error))
            .collect();
        let why = quorum_after_removal(&members, target, &healthy, &problems)
            .map_err(StepError::Verify)?;
        Ok(Prepared::todo(
            vec![Action::delete("local", format!("etcd member {}", shown(target))).because(why)],
            facts,
            true,
            target.clone(),
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<bool, Member> {
        Prepared::todo(
            vec![Action::delete("local", this.what())],
            String::new(),
            true,
            Member {
                id: unknown::placeholder("etcd_member_remove", "id"),
                name: this.name.clone().unwrap_or_default(),
                peer_urls: this.peer_urls.clone().unwrap_or_default(),
                client_urls: vec![],
                started: false,
                is_learner: false,
            },
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, target: Member) -> Result<bool, StepError> {
        let client = conn!(this).client(ctx).await?;
        let body = json!({"ID": decimal_id(&target)?});
        let deadline = Instant::now() + SETTLE_WAIT;
        loop {
            let answer = client
                .first(|url| {
                    let body = body.clone();
                    let client = &client;
                    async move { client.post(&url, "/v3/cluster/member/remove", body).await }
                })
                .await;
            match answer {
                Ok(_) => return Ok(true),
                // removed by an earlier, interrupted attempt
                Err(e) if says(&e, NOT_FOUND) => return Ok(true),
                Err(e) if settling(&e) && Instant::now() < deadline => {
                    // a bounded retry (until `deadline`): etcd gives this
                    // answer only for the seconds its cluster settles
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
                Err(e) => return Err(e),
            }
        }
    }
}

crate::registration::documented! {
    /// Connection: `endpoints`, `ca`, `cert?`, `cert_key?`, `via?` as for `etcd_health`.
    const CONN;
}

/// Register the membership steps.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    crate::registration::function!(
        engine,
        /// The cluster's members (`EtcdMember`: id, name, peer_urls, client_urls, started,
        /// is_learner), asked of the first endpoint that answers. Read-only: it answers in
        /// plans too (`= ok read etcd member list`).
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?}`
        fn "etcd_member_list"("args: Map") -> "Array" + CONN =
        crate::registration::map_step_then::<EtcdMemberList, _>(
            exec,
            "etcd_member_list",
            crate::registration::array,
        )
    );

    crate::registration::function!(
        engine,
        /// Every member's health, asked at its own client URL (through the first `via` host),
        /// 3 s each: an array of maps `#{id, name, is_learner, healthy, error}`. Read-only: it
        /// answers in plans too. Never fails for an unhealthy member (that is the answer).
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?}`
        fn "etcd_member_health"("args: Map") -> "Array" + CONN =
        crate::registration::map_step_then::<EtcdMemberHealth, _>(
            exec,
            "etcd_member_health",
            health_maps,
        )
    );

    crate::registration::function!(
        engine,
        /// Add a member with `peer_urls` to the cluster, as a non-voting learner unless
        /// `learner: false` (`member add --learner`). A no-op when a member with those peer
        /// URLs exists (returned as it is); refused when the URLs overlap another member's
        /// or `name` is already taken. Returns the `EtcdMember` (not started: no name yet).
        /// The member then starts with `initial-cluster-state: existing`. Asked again for up
        /// to 60 s while etcd answers "unhealthy cluster" (members connected < 5 s).
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, peer_urls, name?, learner? (true)}`
        fn "etcd_member_add"("args: Map") -> "EtcdMember" + CONN =
        crate::registration::map_step::<EtcdMemberAdd>(exec, "etcd_member_add")
    );

    crate::registration::function!(
        engine,
        /// Promote the learner named `name` (or with `peer_urls`) to a voting member, asking
        /// again every second for up to `wait_seconds` (default 120) while etcd answers that
        /// it is not in sync with the leader. A no-op when it already votes.
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, name? | peer_urls?, wait_seconds?}`
        fn "etcd_member_promote"("args: Map") -> "EtcdMember" + CONN =
        crate::registration::map_step::<EtcdMemberPromote>(exec, "etcd_member_promote")
    );

    crate::registration::function!(
        engine,
        /// Remove the member named `name` (or with `peer_urls`) from the cluster. Refused,
        /// before anything changes, when the voting members left would not have a healthy
        /// quorum (each is asked `/health` at its own client URL, through the first `via`
        /// host). A no-op when it is not a member. Returns whether it removed one. Does not
        /// touch the member's host: stop its etcd and move its data dir aside afterwards.
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, name? | peer_urls?}`
        fn "etcd_member_remove"("args: Map") -> "bool" + CONN =
        crate::registration::map_step::<EtcdMemberRemove>(exec, "etcd_member_remove")
    );
}

/// `etcd_member_health`'s answer: a map per member.
fn health_maps(members: Vec<MemberHealth>) -> Array {
    members
        .iter()
        .map(|h| rhai::serde::to_dynamic(h).unwrap_or(Dynamic::UNIT))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, id: &str, learner: bool) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![format!("https://{name}:2380")],
            client_urls: vec![format!("https://{name}:2379")],
            started: !name.is_empty(),
            is_learner: learner,
        }
    }

    fn ids(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn removal_keeps_a_healthy_quorum_or_is_refused() {
        let three = [
            m("n1", "a", false),
            m("n2", "b", false),
            m("n3", "c", false),
        ];
        // a dead member of three: the two others are a quorum of two
        assert_eq!(
            quorum_after_removal(&three, &three[1], &ids(&["a", "c"]), &[]),
            Ok("2 of the 2 remaining voting members healthy, quorum 2".into())
        );
        // a healthy member while another is dead: one of two left
        assert_eq!(
            quorum_after_removal(&three, &three[0], &ids(&["a", "c"]), &["n2 (id b) unhealthy: down".into()]),
            Err("removing n1 (id a) would lose quorum: 1 of the 2 remaining voting members healthy, quorum 2 (n2 (id b) unhealthy: down)".into())
        );
        let five = [
            m("n1", "a", false),
            m("n2", "b", false),
            m("n3", "c", false),
            m("n4", "d", false),
            m("n5", "e", false),
        ];
        assert!(
            quorum_after_removal(&five, &five[4], &ids(&["a", "b", "c", "d", "e"]), &[]).is_ok()
        );
        assert!(quorum_after_removal(&five, &five[4], &ids(&["a", "b"]), &[]).is_err());
        // learners do not vote
        let with_learner = [m("n1", "a", false), m("n4", "d", true)];
        assert_eq!(
            quorum_after_removal(&with_learner, &with_learner[1], &ids(&[]), &[]),
            Ok("a learner: the quorum does not change".into())
        );
        assert!(quorum_after_removal(&with_learner, &with_learner[0], &ids(&["a"]), &[]).is_err());
    }

    #[test]
    fn members_are_found_by_name_or_peer_urls() {
        let ms = [m("n1", "a", false), m("", "b", true)];
        assert_eq!(Which::Name("n1".into()).find(&ms).unwrap().id, "a");
        let unstarted = Which::PeerUrls(vec!["https://:2380/".into()]);
        assert_eq!(unstarted.find(&ms).unwrap().id, "b");
        assert!(Which::Name("n9".into()).find(&ms).is_none());
        assert_eq!(
            Which::from_args(&None, &None).unwrap_err().to_string(),
            "invalid `name`: the member is named by `name` or by `peer_urls` (non-empty)"
        );
        assert_eq!(decimal_id(&m("x", "ff", false)).unwrap(), "255");
    }
}
