//! etcd maintenance over the JSON gateway: defragmentation of one member
//! (`etcd_defrag`), compaction of the keyspace (`etcd_compact`), and alarms
//! (`etcd_alarms`, read-only; `etcd_alarm_disarm`). Checked against etcd
//! 3.4.23 and 3.5.30: both answer `/v3/maintenance/defragment` (`{}`),
//! `/v3/kv/compaction`, `/v3/maintenance/alarm` (3.4 without a header) and
//! `/v3/maintenance/status` (with `dbSizeInUse`).
//!
//! Facts first: a defragmentation reads the member's status (name, DB size,
//! size in use, whether it leads) and always changes (etcd cannot say what it
//! would free beyond `db size - in use`, and the plan shows both); a
//! compaction is a no-op when the revision is already compacted (a read at
//! the revision before it is refused as compacted); a disarm is a no-op
//! without alarms. A cluster that cannot be reached while planning (not
//! created yet) leaves the facts unknown: the plan says so and a run asks again.

use super::client::{hex_id, number, EtcdClient, Member};
use super::steps::{Conn, PemFile, Via};
use crate::action::Action;
use crate::error::StepError;
use crate::executor::Executor;
use crate::host::Host;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The target of the maintenance steps and of `etcd_cluster`: the cluster,
/// not the operator's machine, so that a plan that changes it reads it
/// afterwards as unknown (the executor's rule for reads after changes).
pub const TARGET: &str = "etcd";

/// How long one defragmentation may take (it blocks the member meanwhile).
const DEFRAG_TIMEOUT: Duration = Duration::from_secs(300);

/// An alarm raised on a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdAlarm")]
pub struct Alarm {
    /// The member's ID (hex).
    #[rhai_type(readonly)]
    pub member_id: String,
    /// The member's name (empty when the member list does not know the ID).
    #[rhai_type(readonly)]
    pub member: String,
    /// `NOSPACE` or `CORRUPT`.
    #[rhai_type(readonly)]
    pub alarm: String,
}

/// What `etcd_defrag` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdDefrag")]
pub struct DefragResult {
    #[rhai_type(readonly)]
    pub endpoint: String,
    /// The member's name.
    #[rhai_type(readonly)]
    pub member: String,
    #[rhai_type(readonly)]
    pub member_id: String,
    /// DB size before (bytes).
    #[rhai_type(skip)]
    pub db_size_before: u64,
    /// DB size after (bytes; 0 in a plan).
    #[rhai_type(skip)]
    pub db_size_after: u64,
    /// Of the size after, the part in use (bytes; 0 in a plan).
    #[rhai_type(skip)]
    pub db_size_in_use_after: u64,
}

/// What `etcd_compact` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdCompaction")]
pub struct CompactResult {
    /// The revision compacted to.
    #[rhai_type(skip)]
    pub revision: u64,
    /// False when it was already compacted that far.
    #[rhai_type(readonly)]
    pub compacted: bool,
}

/// Human size: `1.9 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The alarms of an `/v3/maintenance/alarm` answer: (member ID hex, type).
/// Types come as names (`NOSPACE`) or, from older gateways, as numbers.
pub fn parse_alarms(v: &Value) -> Vec<(String, String)> {
    v["alarms"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let kind = match &x["alarm"] {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => match n.as_u64() {
                            Some(1) => "NOSPACE".into(),
                            Some(2) => "CORRUPT".into(),
                            _ => format!("alarm {n}"),
                        },
                        _ => "NONE".into(),
                    };
                    (hex_id(&x["memberID"]), kind)
                })
                .filter(|(_, kind)| kind != "NONE")
                .collect()
        })
        .unwrap_or_default()
}

/// The revision in an answer's header.
pub fn header_revision(v: &Value) -> u64 {
    number(&v["header"]["revision"])
}

/// Whether etcd refused because the revision is compacted already.
pub fn is_compacted(e: &StepError) -> bool {
    matches!(e, StepError::Api { message, .. } if message.contains("required revision has been compacted"))
}

/// The name of member `id` (hex), or empty.
pub fn name_of(members: &[Member], id: &str) -> String {
    members
        .iter()
        .find(|m| m.id == id)
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

impl EtcdClient {
    /// Defragment the member at `url` (blocks it meanwhile).
    pub async fn defragment(&self, url: &str) -> Result<(), StepError> {
        self.post(url, "/v3/maintenance/defragment", json!({}))
            .await
            .map(|_| ())
    }

    /// The first answer of `path` among the endpoints: unreachable ones are
    /// skipped, an error answer is final.
    async fn any(&self, path: &str, body: Value) -> Result<Value, StepError> {
        let mut last = None;
        for ep in self.endpoints() {
            match self.post(&ep.url, path, body.clone()).await {
                Ok(v) => return Ok(v),
                Err(e @ StepError::Api { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| StepError::invalid("endpoints", "none given")))
    }

    /// The cluster's current revision.
    pub async fn revision(&self) -> Result<u64, StepError> {
        let v = self.any("/v3/maintenance/status", json!({})).await?;
        Ok(header_revision(&v))
    }

    /// Whether the keyspace is compacted up to `revision` already.
    pub async fn compacted_to(&self, revision: u64) -> Result<bool, StepError> {
        if revision <= 1 {
            return Ok(true);
        }
        let body = json!({"key": B64.encode([0u8]), "revision": (revision - 1).to_string(),
                          "limit": "1", "count_only": true});
        match self.any("/v3/kv/range", body).await {
            Ok(_) => Ok(false),
            Err(e) if is_compacted(&e) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Compact to `revision` (physically: returns once the members have
    /// removed the old revisions). `Ok(false)` when already compacted so far.
    pub async fn compact(&self, revision: u64) -> Result<bool, StepError> {
        let body = json!({"revision": revision.to_string(), "physical": true});
        match self.any("/v3/kv/compaction", body).await {
            Ok(_) => Ok(true),
            Err(e) if is_compacted(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The raised alarms, with member names.
    pub async fn alarms(&self) -> Result<Vec<Alarm>, StepError> {
        let v = self
            .any("/v3/maintenance/alarm", json!({"action": "GET"}))
            .await?;
        let raised = parse_alarms(&v);
        let members = if raised.is_empty() {
            vec![]
        } else {
            self.member_list().await.unwrap_or_default()
        };
        Ok(raised
            .into_iter()
            .map(|(id, alarm)| Alarm {
                member: name_of(&members, &id),
                member_id: id,
                alarm,
            })
            .collect())
    }

    /// Deactivate `alarm` of member `member_id` (hex).
    pub async fn disarm(&self, member_id: &str, alarm: &str) -> Result<(), StepError> {
        let id = u64::from_str_radix(member_id, 16)
            .map_err(|_| StepError::invalid("member_id", format!("`{member_id}` is not hex")))?;
        let body = json!({"action": "DEACTIVATE", "memberID": id.to_string(), "alarm": alarm});
        self.any("/v3/maintenance/alarm", body).await.map(|_| ())
    }
}

/// `maintenance/status` of one endpoint as (member id, db size, in use, leads).
async fn sizes(client: &EtcdClient, url: &str) -> Result<(String, u64, u64, bool), StepError> {
    let v = client
        .post(url, "/v3/maintenance/status", json!({}))
        .await?;
    let id = hex_id(&v["header"]["member_id"]);
    let leads = hex_id(&v["leader"]) == id;
    Ok((id, number(&v["dbSize"]), number(&v["dbSizeInUse"]), leads))
}

/// `etcd_defrag(#{endpoint, ca, cert?, cert_key?, via?: Host})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdDefrag {
    /// The client URL of the member to defragment.
    pub endpoint: String,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    /// A host to reach the endpoint through (ssh forward).
    #[serde(default)]
    pub via: Option<Host>,
}

fn one(
    endpoint: &str,
    ca: &PemFile,
    cert: &Option<PemFile>,
    key: &Option<String>,
    via: &Option<Host>,
) -> Conn {
    Conn {
        endpoints: vec![endpoint.to_string()],
        ca: ca.clone(),
        cert: cert.clone(),
        cert_key: key.clone(),
        via: via.clone().map(|h| Via::One(Box::new(h))),
    }
}

fn many(
    endpoints: &[String],
    ca: &PemFile,
    cert: &Option<PemFile>,
    key: &Option<String>,
    via: &Option<Via>,
) -> Conn {
    Conn {
        endpoints: endpoints.to_vec(),
        ca: ca.clone(),
        cert: cert.clone(),
        cert_key: key.clone(),
        via: via.clone(),
    }
}

/// The facts a defragmentation is planned from.
struct DefragFacts {
    member: String,
    member_id: String,
    size: u64,
    in_use: u64,
    leads: bool,
}

impl EtcdDefrag {
    fn conn(&self) -> Conn {
        one(
            &self.endpoint,
            &self.ca,
            &self.cert,
            &self.cert_key,
            &self.via,
        )
    }

    fn result(&self, f: &DefragFacts) -> DefragResult {
        DefragResult {
            endpoint: self.endpoint.clone(),
            member: f.member.clone(),
            member_id: f.member_id.clone(),
            db_size_before: f.size,
            db_size_after: 0,
            db_size_in_use_after: 0,
        }
    }

    async fn facts(&self, ctx: &Ctx) -> Result<DefragFacts, StepError> {
        let client = self.conn().client(ctx).await?;
        let (member_id, size, in_use, leads) = sizes(&client, &self.endpoint).await?;
        let members = client.member_list().await?;
        Ok(DefragFacts {
            member: name_of(&members, &member_id),
            member_id,
            size,
            in_use,
            leads,
        })
    }
}

/// The plan line of a defragmentation of `f`.
pub fn defrag_action(f_member: &str, size: u64, in_use: u64, leads: bool) -> Action {
    let a = Action::change(
        TARGET,
        format!(
            "defragment etcd member {f_member} (db size {}, {} in use)",
            mib(size),
            mib(in_use)
        ),
    );
    if leads {
        a.because("it leads: a defragmentation of the leader stalls writes cluster-wide")
    } else {
        a
    }
}

impl Step for EtcdDefrag {
    type Output = DefragResult;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_defrag"
    }
    fn target(&self) -> String {
        TARGET.into()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<DefragResult, ()>, StepError> {
        match this.facts(ctx).await {
            Ok(f) => Ok(Prepared::todo(
                vec![defrag_action(&f.member, f.size, f.in_use, f.leads)],
                fingerprint(&f.member_id),
                this.result(&f),
                (),
            )),
            Err(e) => Ok(Prepared::todo(
                vec![Action::change(
                    TARGET,
                    format!("defragment etcd member at {}", this.conn().shown(0)),
                )
                .because(format!("db size unknown: {e}"))],
                String::new(),
                this.intent().predicted,
                (),
            )),
        }
    }
    fn intent(this: &Valid<Self>) -> Prepared<DefragResult, ()> {
        let p =
            |what: &str| unknown::placeholder("etcd_defrag", &format!("{}.{what}", this.endpoint));
        Prepared::todo(
            vec![Action::change(
                TARGET,
                format!("defragment etcd member at {}", this.conn().shown(0)),
            )],
            String::new(),
            DefragResult {
                endpoint: this.endpoint.clone(),
                member: p("member"),
                member_id: p("member_id"),
                db_size_before: 0,
                db_size_after: 0,
                db_size_in_use_after: 0,
            },
            (),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<DefragResult, StepError> {
        let f = this.facts(ctx).await?;
        let mut client = this.conn().client(ctx).await?;
        client.set_timeout(DEFRAG_TIMEOUT);
        client.defragment(&this.endpoint).await?;
        let (_, after, in_use, _) = sizes(&client, &this.endpoint).await?;
        Ok(DefragResult {
            db_size_after: after,
            db_size_in_use_after: in_use,
            ..this.result(&f)
        })
    }
}

/// `etcd_compact(#{endpoints, ca, cert?, cert_key?, via?, revision?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdCompact {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// Compact to this revision (default: the current one when applied).
    #[serde(default)]
    pub revision: Option<u64>,
}

impl EtcdCompact {
    fn conn(&self) -> Conn {
        many(
            &self.endpoints,
            &self.ca,
            &self.cert,
            &self.cert_key,
            &self.via,
        )
    }
    fn what(&self, rev: Option<u64>) -> String {
        match (self.revision, rev) {
            (Some(r), _) => format!("compact etcd keyspace to revision {r}"),
            (None, Some(r)) => format!("compact etcd keyspace to the current revision (now {r})"),
            (None, None) => "compact etcd keyspace to the current revision".into(),
        }
    }
}

impl Step for EtcdCompact {
    type Output = CompactResult;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()?;
        if self.revision == Some(0) {
            return Err(StepError::invalid(
                "revision",
                "revision 0 is not a revision",
            ));
        }
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "etcd_compact"
    }
    fn target(&self) -> String {
        TARGET.into()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<CompactResult, ()>, StepError> {
        let facts = async {
            let client = this.conn().client(ctx).await?;
            let current = client.revision().await?;
            let target = this.revision.unwrap_or(current);
            if target > current {
                return Ok(Err(StepError::invalid(
                    "revision",
                    format!("{target} is beyond the cluster's current revision {current}"),
                )));
            }
            Ok::<_, StepError>(Ok((current, target, client.compacted_to(target).await?)))
        };
        match facts.await {
            Ok(Err(refused)) => Err(refused),
            Ok(Ok((current, target, true))) => Ok(Prepared::done(
                vec![Action::noop(
                    TARGET,
                    this.what(Some(current)),
                    format!("already compacted to revision {target} or later"),
                )],
                fingerprint(&target),
                CompactResult {
                    revision: target,
                    compacted: false,
                },
            )),
            Ok(Ok((current, target, false))) => Ok(Prepared::todo(
                vec![Action::change(TARGET, this.what(Some(current)))],
                fingerprint(&target),
                CompactResult {
                    revision: target,
                    compacted: true,
                },
                (),
            )),
            Err(e) => Ok(Prepared::todo(
                vec![Action::change(TARGET, this.what(None))
                    .because(format!("current revision unknown: {e}"))],
                String::new(),
                this.intent().predicted,
                (),
            )),
        }
    }
    fn intent(this: &Valid<Self>) -> Prepared<CompactResult, ()> {
        Prepared::todo(
            vec![Action::change(TARGET, this.what(None))],
            String::new(),
            CompactResult {
                revision: this.revision.unwrap_or(0),
                compacted: true,
            },
            (),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<CompactResult, StepError> {
        let client = this.conn().client(ctx).await?;
        let revision = match this.revision {
            Some(r) => r,
            None => client.revision().await?,
        };
        let compacted = client.compact(revision).await?;
        Ok(CompactResult {
            revision,
            compacted,
        })
    }
}

/// `etcd_alarms(#{endpoints, ca, cert?, cert_key?, via?})`: read-only.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdAlarms {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
}

/// `NOSPACE on node-1, CORRUPT on 8e9e...` or `none`.
pub fn alarms_line(alarms: &[Alarm]) -> String {
    if alarms.is_empty() {
        return "none raised".into();
    }
    alarms
        .iter()
        .map(|a| {
            let who = if a.member.is_empty() {
                &a.member_id
            } else {
                &a.member
            };
            format!("{} on {who}", a.alarm)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn unknown_alarms(kind: &str) -> Vec<Alarm> {
    vec![Alarm {
        member_id: unknown::placeholder(kind, "member_id"),
        member: unknown::placeholder(kind, "member"),
        alarm: unknown::placeholder(kind, "alarm"),
    }]
}

impl EtcdAlarms {
    fn conn(&self) -> Conn {
        many(
            &self.endpoints,
            &self.ca,
            &self.cert,
            &self.cert_key,
            &self.via,
        )
    }
}

impl Step for EtcdAlarms {
    type Output = Vec<Alarm>;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_alarms"
    }
    fn target(&self) -> String {
        TARGET.into()
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<Vec<Alarm>, ()>, StepError> {
        let read = async { this.conn().client(ctx).await?.alarms().await };
        Ok(match read.await {
            Ok(alarms) => Prepared::done(
                vec![Action::noop(
                    TARGET,
                    "read etcd alarms",
                    alarms_line(&alarms),
                )],
                fingerprint(&alarms),
                alarms,
            ),
            Err(e) => Prepared::todo(
                vec![Action::verify(TARGET, "read etcd alarms")
                    .because(format!("cluster not reachable now: {e}"))],
                String::new(),
                unknown_alarms("etcd_alarms"),
                (),
            ),
        })
    }
    fn intent(_this: &Valid<Self>) -> Prepared<Vec<Alarm>, ()> {
        Prepared::todo(
            vec![Action::verify(TARGET, "read etcd alarms")],
            String::new(),
            unknown_alarms("etcd_alarms"),
            (),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Vec<Alarm>, StepError> {
        this.conn().client(ctx).await?.alarms().await
    }
}

/// `etcd_alarm_disarm(#{endpoints, ca, cert?, cert_key?, via?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdAlarmDisarm {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// Only this type (`NOSPACE`, `CORRUPT`); default every raised alarm.
    #[serde(default)]
    pub alarm: Option<String>,
}

impl EtcdAlarmDisarm {
    /// The raised alarms this step disarms.
    async fn raised(&self, client: &EtcdClient) -> Result<Vec<Alarm>, StepError> {
        let all = client.alarms().await?;
        Ok(all
            .into_iter()
            .filter(|a| self.alarm.as_ref().is_none_or(|t| &a.alarm == t))
            .collect())
    }
    fn conn(&self) -> Conn {
        many(
            &self.endpoints,
            &self.ca,
            &self.cert,
            &self.cert_key,
            &self.via,
        )
    }
}

fn disarm_action(a: &Alarm) -> Action {
    let who = if a.member.is_empty() {
        format!("member {}", a.member_id)
    } else {
        format!("member {} ({})", a.member, a.member_id)
    };
    Action::change(TARGET, format!("disarm etcd alarm {} of {who}", a.alarm))
}

impl Step for EtcdAlarmDisarm {
    type Output = Vec<Alarm>;
    /// The alarms to disarm; `None`: read them when applying.
    type Work = Option<Vec<Alarm>>;
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()?;
        match self.alarm.as_deref() {
            None | Some("NOSPACE") | Some("CORRUPT") => Ok(()),
            Some(other) => Err(StepError::invalid(
                "alarm",
                format!("`{other}` is not an etcd alarm (NOSPACE or CORRUPT)"),
            )),
        }
    }
    fn kind(&self) -> &'static str {
        "etcd_alarm_disarm"
    }
    fn target(&self) -> String {
        TARGET.into()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Vec<Alarm>, Self::Work>, StepError> {
        let read = async { this.raised(&this.conn().client(ctx).await?).await };
        let what = match &this.alarm {
            Some(t) => format!("disarm etcd {t} alarms"),
            None => "disarm etcd alarms".into(),
        };
        Ok(match read.await {
            Ok(alarms) if alarms.is_empty() => Prepared::done(
                vec![Action::noop(TARGET, what, "none raised")],
                fingerprint(&alarms),
                alarms,
            ),
            Ok(alarms) => Prepared::todo(
                alarms.iter().map(disarm_action).collect(),
                fingerprint(&alarms),
                alarms.clone(),
                Some(alarms),
            ),
            Err(e) => Prepared::todo(
                vec![Action::change(TARGET, what).because(format!("alarms unknown: {e}"))],
                String::new(),
                unknown_alarms("etcd_alarm_disarm"),
                None,
            ),
        })
    }
    fn intent(_this: &Valid<Self>) -> Prepared<Vec<Alarm>, Self::Work> {
        Prepared::todo(
            vec![Action::change(TARGET, "disarm etcd alarms")],
            String::new(),
            unknown_alarms("etcd_alarm_disarm"),
            None,
        )
    }
    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        work: Self::Work,
    ) -> Result<Vec<Alarm>, StepError> {
        let client = this.conn().client(ctx).await?;
        let alarms = match work {
            Some(a) => a,
            None => this.raised(&client).await?,
        };
        for a in &alarms {
            client.disarm(&a.member_id, &a.alarm).await?;
        }
        let left = client.alarms().await?;
        let still: Vec<Alarm> = left.into_iter().filter(|l| alarms.contains(l)).collect();
        if !still.is_empty() {
            return Err(StepError::Verify(format!(
                "still raised after disarming: {}",
                alarms_line(&still)
            )));
        }
        Ok(alarms)
    }
}

crate::registration::documented! {
    /// Connection as for `etcd_status`: `endpoints`, `ca`, `cert?`, `cert_key?`, `via?`.
    const CONN;
}

fn alarm_line(a: &Alarm) -> String {
    format!("EtcdAlarm({})", alarms_line(std::slice::from_ref(a)))
}

/// Register the maintenance steps and their result types.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    engine
        .build_type::<Alarm>()
        .register_fn("to_string", |a: &mut Alarm| alarm_line(a))
        .register_fn("to_debug", |a: &mut Alarm| alarm_line(a));
    type D = DefragResult;
    let defrag_line = |d: &mut D| {
        format!(
            "EtcdDefrag({} {}: {} -> {} bytes)",
            d.member, d.endpoint, d.db_size_before, d.db_size_after
        )
    };
    engine
        .build_type::<D>()
        .register_get("db_size_before", |d: &mut D| d.db_size_before as i64)
        .register_get("db_size_after", |d: &mut D| d.db_size_after as i64)
        .register_get("db_size_in_use_after", |d: &mut D| {
            d.db_size_in_use_after as i64
        })
        .register_fn("to_string", defrag_line)
        .register_fn("to_debug", defrag_line);
    type C = CompactResult;
    let compact_line = |c: &mut C| {
        format!(
            "EtcdCompaction(revision {}{})",
            c.revision,
            if c.compacted { "" } else { ", already" }
        )
    };
    engine
        .build_type::<C>()
        .register_get("revision", |c: &mut C| c.revision as i64)
        .register_fn("to_string", compact_line)
        .register_fn("to_debug", compact_line);

    crate::registration::function!(
        engine,
        /// Defragment ONE etcd member (the one at `endpoint`): its DB file shrinks to what is
        /// in use. The member blocks reads and writes meanwhile, and a defragmentation of the
        /// leader stalls writes cluster-wide: defragment followers first and move leadership
        /// away before the leader's turn (`etcd_move_leader`). The plan line names the member
        /// and its DB size and size in use; it always changes. Returns an `EtcdDefrag`
        /// (endpoint, member, member_id, db_size_before, db_size_after, db_size_in_use_after;
        /// sizes in bytes, after is 0 in plans). Waits up to 5 minutes.
        ///
        /// `#{endpoint, ca, cert?, cert_key?, via?: Host}`
        fn "etcd_defrag"("args: Map") -> "EtcdDefrag" =
        crate::registration::map_step::<EtcdDefrag>(exec, "etcd_defrag")
    );

    crate::registration::function!(
        engine,
        /// Compact the etcd keyspace (all revisions before one are removed, physically) to
        /// `revision`, default the current revision when applied. A no-op when compacted that
        /// far already. Returns an `EtcdCompaction` (revision, compacted).
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, revision?}`
        fn "etcd_compact"("args: Map") -> "EtcdCompaction" + CONN =
        crate::registration::map_step::<EtcdCompact>(exec, "etcd_compact")
    );

    crate::registration::function!(
        engine,
        /// The raised etcd alarms (read-only; it answers in plans too): `EtcdAlarm`s with
        /// member_id, member (name) and alarm (`NOSPACE`, `CORRUPT`). When the cluster cannot
        /// be reached while planning, one alarm of unknown values (`is_known` is false).
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?}`
        fn "etcd_alarms"("args: Map") -> "Array" + CONN =
        crate::registration::map_step_then::<EtcdAlarms, _>(
            exec,
            "etcd_alarms",
            crate::registration::array,
        )
    );

    crate::registration::function!(
        engine,
        /// Disarm every raised etcd alarm, or only those of type `alarm` (one plan line per
        /// alarm and member; a no-op when none is raised), then check that none of them is
        /// raised still. Returns the
        /// disarmed `EtcdAlarm`s. Disarm NOSPACE only once space is free (compact, defragment):
        /// etcd raises it again on the next write otherwise.
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, alarm?}`
        fn "etcd_alarm_disarm"("args: Map") -> "Array" + CONN =
        crate::registration::map_step_then::<EtcdAlarmDisarm, _>(
            exec,
            "etcd_alarm_disarm",
            crate::registration::array,
        )
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarms_of_34_and_35_answers() {
        // etcd 3.4.23: no header; 3.5.30: with header
        let v34: Value = serde_json::from_str(
            r#"{"alarms":[{"memberID":"6987771583291745523","alarm":"NOSPACE"}]}"#,
        )
        .unwrap();
        let v35: Value = serde_json::from_str(
            r#"{"header":{"cluster_id":"1715426195391287628", "member_id":"865312067528504062", "revision":"10", "raft_term":"2"}, "alarms":[{"memberID":"865312067528504062", "alarm":"NOSPACE"}, {"memberID":"255", "alarm":2}]}"#,
        )
        .unwrap();
        assert_eq!(
            parse_alarms(&v34),
            vec![("60f98d3b71ac64f3".to_string(), "NOSPACE".to_string())]
        );
        assert_eq!(
            parse_alarms(&v35),
            vec![
                ("c0234bda4e532fe".to_string(), "NOSPACE".to_string()),
                ("ff".to_string(), "CORRUPT".to_string())
            ]
        );
        assert_eq!(header_revision(&v35), 10);
        assert_eq!(parse_alarms(&json!({})), vec![]);
        assert_eq!(header_revision(&json!({})), 0);
    }

    #[test]
    fn compacted_refusal_is_recognized() {
        let e = StepError::Api {
            service: "etcd https://10.0.0.1:2379".into(),
            method: "POST".into(),
            path: "/v3/kv/compaction".into(),
            status: 400,
            code: "11".into(),
            message: "etcdserver: mvcc: required revision has been compacted".into(),
        };
        assert!(is_compacted(&e));
        assert!(!is_compacted(&StepError::Verify(
            "required revision has been compacted".into()
        )));
    }

    #[test]
    fn plan_lines_name_member_sizes_and_alarms() {
        assert_eq!(
            defrag_action("node-2", 2_035_712, 614_400, false).to_string(),
            "~ change defragment etcd member node-2 (db size 1.9 MiB, 0.6 MiB in use)"
        );
        assert_eq!(
            defrag_action("node-1", 1_048_576, 1_048_576, true).to_string(),
            "~ change defragment etcd member node-1 (db size 1.0 MiB, 1.0 MiB in use) \
             (it leads: a defragmentation of the leader stalls writes cluster-wide)"
        );
        let a = |member: &str, id: &str| Alarm {
            member_id: id.into(),
            member: member.into(),
            alarm: "NOSPACE".into(),
        };
        assert_eq!(alarms_line(&[]), "none raised");
        assert_eq!(
            alarms_line(&[a("node-1", "a1"), a("", "b2")]),
            "NOSPACE on node-1, NOSPACE on b2"
        );
        assert_eq!(
            disarm_action(&a("node-1", "a1")).to_string(),
            "~ change disarm etcd alarm NOSPACE of member node-1 (a1)"
        );
    }
}
