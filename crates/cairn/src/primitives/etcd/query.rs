//! `etcd_cluster(#{endpoints, ca, cert?, cert_key?, via?})`: one read-only
//! look at a cluster that answers in plans as well as in runs (like
//! `etcd_member`): its members, the status of every endpoint (leader, raft
//! index and term, DB size and size in use, version), its alarms, the leader's
//! name and the cluster ID. An endpoint that does not answer is listed with
//! its error; the query fails only when none answers. When none answers while
//! planning (the cluster is not created yet), every value is unknown (see
//! [`crate::unknown`]) and a run asks again.

use super::client::{hex_id, number, EtcdClient, Member};
use super::maintenance::{alarms_line, mib, name_of, Alarm, TARGET};
use super::steps::{Conn, PemFile, Via};
use crate::action::Action;
use crate::error::StepError;
use crate::executor::Executor;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use rhai::{Array, Dynamic};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::Arc;

/// `maintenance/status` of one endpoint, with the member's name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdEndpointStatus")]
pub struct EndpointStatus {
    #[rhai_type(readonly)]
    pub endpoint: String,
    /// Whether it answered; if not, `error` says why and the rest is empty.
    #[rhai_type(readonly)]
    pub answered: bool,
    #[rhai_type(readonly)]
    pub error: String,
    /// The member's name (from the member list).
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub member_id: String,
    /// The leader's member ID as this member sees it (`0`: none).
    #[rhai_type(readonly)]
    pub leader_id: String,
    #[rhai_type(readonly)]
    pub is_leader: bool,
    #[rhai_type(readonly)]
    pub is_learner: bool,
    #[rhai_type(skip)]
    pub raft_index: u64,
    #[rhai_type(skip)]
    pub raft_term: u64,
    #[rhai_type(skip)]
    pub revision: u64,
    #[rhai_type(skip)]
    pub db_size: u64,
    #[rhai_type(skip)]
    pub db_size_in_use: u64,
    #[rhai_type(readonly)]
    pub version: String,
}

/// What `etcd_cluster` found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdCluster")]
pub struct ClusterView {
    /// Cluster ID (hex).
    #[rhai_type(readonly)]
    pub cluster_id: String,
    /// The leader's name and ID (empty when no endpoint names a leader).
    #[rhai_type(readonly)]
    pub leader: String,
    #[rhai_type(readonly)]
    pub leader_id: String,
    #[rhai_type(skip)]
    pub members: Vec<Member>,
    /// One per endpoint asked, in the order given.
    #[rhai_type(skip)]
    pub endpoints: Vec<EndpointStatus>,
    #[rhai_type(skip)]
    pub alarms: Vec<Alarm>,
}

/// Parse a `/v3/maintenance/status` answer of `endpoint` (3.4 and 3.5 alike).
pub fn parse_status(endpoint: &str, v: &Value) -> EndpointStatus {
    let member_id = hex_id(&v["header"]["member_id"]);
    let leader_id = hex_id(&v["leader"]);
    EndpointStatus {
        endpoint: endpoint.trim_end_matches('/').into(),
        answered: true,
        is_leader: leader_id == member_id && leader_id != "0",
        is_learner: v["isLearner"].as_bool().unwrap_or(false),
        member_id,
        leader_id,
        raft_index: number(&v["raftIndex"]),
        raft_term: number(&v["raftTerm"]).max(number(&v["header"]["raft_term"])),
        revision: number(&v["header"]["revision"]),
        db_size: number(&v["dbSize"]),
        db_size_in_use: number(&v["dbSizeInUse"]),
        version: v["version"].as_str().unwrap_or_default().into(),
        ..EndpointStatus::default()
    }
}

/// Put the statuses, members and alarms together: names, the leader (the
/// one most endpoints follow), the cluster ID.
pub fn assemble(
    mut endpoints: Vec<EndpointStatus>,
    members: Vec<Member>,
    alarms: Vec<Alarm>,
    cluster_id: String,
) -> ClusterView {
    for e in endpoints.iter_mut().filter(|e| e.answered) {
        e.name = name_of(&members, &e.member_id);
    }
    let mut votes: Vec<(&str, usize)> = Vec::new();
    for e in endpoints
        .iter()
        .filter(|e| e.answered && e.leader_id != "0")
    {
        match votes.iter_mut().find(|(id, _)| *id == e.leader_id) {
            Some((_, n)) => *n += 1,
            None => votes.push((&e.leader_id, 1)),
        }
    }
    let leader_id = votes
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(id, _)| id.to_string())
        .unwrap_or_default();
    ClusterView {
        cluster_id,
        leader: name_of(&members, &leader_id),
        leader_id,
        members,
        endpoints,
        alarms,
    }
}

/// The plan line's detail: `leader node-1; node-1 1.9 MiB (0.6 in use), ...; alarms: none raised`.
pub fn summary(c: &ClusterView) -> String {
    let sizes: Vec<String> = c
        .endpoints
        .iter()
        .map(|e| {
            if e.answered {
                format!(
                    "{} db {} ({} in use)",
                    if e.name.is_empty() {
                        &e.endpoint
                    } else {
                        &e.name
                    },
                    mib(e.db_size),
                    mib(e.db_size_in_use)
                )
            } else {
                format!("{} not answering", e.endpoint)
            }
        })
        .collect();
    format!(
        "{} members, leader {}; {}; alarms: {}",
        c.members.len(),
        if c.leader.is_empty() {
            "none"
        } else {
            &c.leader
        },
        sizes.join(", "),
        alarms_line(&c.alarms)
    )
}

/// Ask every endpoint for its status, and the cluster for members and
/// alarms. Fails only when no endpoint answers.
pub async fn look(client: &EtcdClient) -> Result<ClusterView, StepError> {
    let urls: Vec<String> = client.endpoints().iter().map(|e| e.url.clone()).collect();
    let answers = futures::future::join_all(
        urls.iter()
            .map(|u| client.post(u, "/v3/maintenance/status", json!({}))),
    )
    .await;
    let mut cluster_id = String::new();
    let mut errors = Vec::new();
    let endpoints: Vec<EndpointStatus> = urls
        .iter()
        .zip(answers)
        .map(|(url, a)| match a {
            Ok(v) => {
                cluster_id = hex_id(&v["header"]["cluster_id"]);
                parse_status(url, &v)
            }
            Err(e) => {
                errors.push(format!("endpoint {url}: {e}"));
                EndpointStatus {
                    endpoint: url.clone(),
                    error: e.to_string(),
                    ..EndpointStatus::default()
                }
            }
        })
        .collect();
    if errors.len() == urls.len() {
        return Err(StepError::Other(format!(
            "no endpoint answers: {}",
            errors.join("; ")
        )));
    }
    let members = client.member_list().await?;
    let alarms = client.alarms().await?;
    let mut view = assemble(endpoints, members, alarms, cluster_id);
    for e in view.endpoints.iter_mut() {
        if let Some(m) = view.members.iter().find(|m| m.id == e.member_id) {
            e.is_learner = e.is_learner || m.is_learner;
        }
    }
    Ok(view)
}

/// `etcd_cluster(#{endpoints, ca, cert?, cert_key?, via?})`: read-only.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdCluster {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
}

impl EtcdCluster {
    fn conn(&self) -> Conn {
        Conn {
            endpoints: self.endpoints.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            cert_key: self.cert_key.clone(),
            via: self.via.clone(),
        }
    }

    /// Every value unknown: the cluster could not be asked.
    fn unknown_view(&self) -> ClusterView {
        let p = |what: &str| unknown::placeholder("etcd_cluster", what);
        ClusterView {
            cluster_id: p("cluster_id"),
            leader: p("leader"),
            leader_id: p("leader_id"),
            members: vec![],
            endpoints: self
                .endpoints
                .iter()
                .map(|e| EndpointStatus {
                    endpoint: e.clone(),
                    name: p(&format!("{e}.name")),
                    member_id: p(&format!("{e}.member_id")),
                    leader_id: p(&format!("{e}.leader_id")),
                    version: p(&format!("{e}.version")),
                    ..EndpointStatus::default()
                })
                .collect(),
            alarms: vec![],
        }
    }
}

impl Step for EtcdCluster {
    type Output = ClusterView;
    type Work = ();
    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()
    }
    fn kind(&self) -> &'static str {
        "etcd_cluster"
    }
    fn target(&self) -> String {
        TARGET.into()
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<ClusterView, ()>, StepError> {
        let read = async { look(&this.conn().client(ctx).await?).await };
        Ok(match read.await {
            Ok(view) => {
                // what the decision rests on: who is in it and who leads,
                // not sizes and indexes that move all the time
                let ids: Vec<&str> = view.members.iter().map(|m| m.id.as_str()).collect();
                let facts = fingerprint(&(&view.cluster_id, ids, &view.leader_id));
                Prepared::done(
                    vec![Action::noop(TARGET, "read etcd cluster", summary(&view))],
                    facts,
                    view,
                )
            }
            Err(e) => Prepared::todo(
                vec![Action::verify(TARGET, "read etcd cluster")
                    .because(format!("cluster not reachable now: {e}"))],
                String::new(),
                this.unknown_view(),
                (),
            ),
        })
    }
    fn intent(this: &Valid<Self>) -> Prepared<ClusterView, ()> {
        Prepared::todo(
            vec![Action::verify(TARGET, "read etcd cluster")],
            String::new(),
            this.unknown_view(),
            (),
        )
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<ClusterView, StepError> {
        look(&this.conn().client(ctx).await?).await
    }
}

fn view_line(c: &ClusterView) -> String {
    format!("EtcdCluster({}: {})", c.cluster_id, summary(c))
}

fn status_line(e: &EndpointStatus) -> String {
    if !e.answered {
        return format!("EtcdEndpointStatus({}: {})", e.endpoint, e.error);
    }
    format!(
        "EtcdEndpointStatus({} {}{}: index {}, term {}, db {} bytes ({} in use), version {})",
        e.name,
        e.endpoint,
        if e.is_leader { ", leader" } else { "" },
        e.raft_index,
        e.raft_term,
        e.db_size,
        e.db_size_in_use,
        e.version
    )
}

/// Register `etcd_cluster` and its result types.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    type E = EndpointStatus;
    engine
        .build_type::<E>()
        .register_get("raft_index", |e: &mut E| e.raft_index as i64)
        .register_get("raft_term", |e: &mut E| e.raft_term as i64)
        .register_get("revision", |e: &mut E| e.revision as i64)
        .register_get("db_size", |e: &mut E| e.db_size as i64)
        .register_get("db_size_in_use", |e: &mut E| e.db_size_in_use as i64)
        .register_fn("to_string", |e: &mut E| status_line(e))
        .register_fn("to_debug", |e: &mut E| status_line(e));
    type V = ClusterView;
    engine
        .build_type::<V>()
        .register_get("members", |c: &mut V| -> Array {
            c.members.iter().cloned().map(Dynamic::from).collect()
        })
        .register_get("endpoints", |c: &mut V| -> Array {
            c.endpoints.iter().cloned().map(Dynamic::from).collect()
        })
        .register_get("alarms", |c: &mut V| -> Array {
            c.alarms.iter().cloned().map(Dynamic::from).collect()
        })
        .register_fn("to_string", |c: &mut V| view_line(c))
        .register_fn("to_debug", |c: &mut V| view_line(c));
    crate::registration::function!(
        engine,
        /// The whole cluster view as a map (the getters' values, nested), e.g. to print
        /// it as JSON.
        fn "to_map"("cluster: EtcdCluster") -> "Map" =
        |c: &mut V| -> Dynamic { rhai::serde::to_dynamic(&*c).unwrap_or(Dynamic::UNIT) }
    );

    crate::registration::function!(
        engine,
        /// A read-only look at an etcd cluster that answers in plans too (plan line
        /// `= ok read etcd cluster (3 members, leader node-1; node-1 db 1.9 MiB (0.6 MiB in use), ...)`).
        /// Getters: `cluster_id`, `leader` (name), `leader_id`, `members` (`EtcdMember`s),
        /// `endpoints` (one `EtcdEndpointStatus` per endpoint, in order: endpoint, answered, error,
        /// name, member_id, leader_id, is_leader, is_learner, raft_index, raft_term, revision,
        /// db_size, db_size_in_use (bytes), version), `alarms` (`EtcdAlarm`s).
        /// An endpoint that does not answer has `answered` false and its `error`; the query
        /// fails only when none answers. While planning a cluster that cannot be reached
        /// (not created yet) every value is unknown (`is_known(c)` is false).
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?}` (as for `etcd_status`)
        fn "etcd_cluster"("args: Map") -> "EtcdCluster" =
        crate::registration::map_step::<EtcdCluster>(exec, "etcd_cluster")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers of etcd 3.4.23 and 3.5.30 (one member each), as captured.
    const S34: &str = r#"{"header":{"cluster_id":"12499579882375668459","member_id":"6987771583291745523","revision":"12","raft_term":"2"},"version":"3.4.23","dbSize":"2633728","leader":"6987771583291745523","raftIndex":"19","raftTerm":"2","raftAppliedIndex":"19","errors":["memberID:6987771583291745523 alarm:NOSPACE "],"dbSizeInUse":"2437120"}"#;
    const S35: &str = r#"{"header":{"cluster_id":"1715426195391287628", "member_id":"865312067528504062", "revision":"10", "raft_term":"2"}, "version":"3.5.30", "dbSize":"2035712", "leader":"6987771583291745523", "raftIndex":"17", "raftTerm":"3", "raftAppliedIndex":"17", "dbSizeInUse":"614400"}"#;

    fn member(name: &str, id: &str) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            peer_urls: vec![],
            client_urls: vec![],
            started: true,
            is_learner: false,
        }
    }

    #[test]
    fn status_answers_of_34_and_35_parse() {
        let s = parse_status(
            "https://10.0.0.1:2379/",
            &serde_json::from_str(S34).unwrap(),
        );
        assert_eq!(
            (
                s.endpoint.as_str(),
                s.member_id.as_str(),
                s.is_leader,
                s.raft_index,
                s.raft_term,
                s.revision,
                s.db_size,
                s.db_size_in_use,
                s.version.as_str()
            ),
            (
                "https://10.0.0.1:2379",
                "60f98d3b71ac64f3",
                true,
                19,
                2,
                12,
                2_633_728,
                2_437_120,
                "3.4.23"
            )
        );
        let s = parse_status("https://10.0.0.2:2379", &serde_json::from_str(S35).unwrap());
        assert!(!s.is_leader);
        assert_eq!(s.leader_id, "60f98d3b71ac64f3");
        assert_eq!((s.raft_term, s.db_size_in_use), (3, 614_400));
    }

    #[test]
    fn the_leader_is_named_and_summarized() {
        let a = parse_status("https://a:2379", &serde_json::from_str(S34).unwrap());
        let b = parse_status("https://b:2379", &serde_json::from_str(S35).unwrap());
        let down = EndpointStatus {
            endpoint: "https://c:2379".into(),
            error: "connection refused".into(),
            ..EndpointStatus::default()
        };
        let members = vec![
            member("node-1", "60f98d3b71ac64f3"),
            member("node-2", "c0234bda4e532fe"),
        ];
        let alarms = vec![Alarm {
            member_id: "c0234bda4e532fe".into(),
            member: "node-2".into(),
            alarm: "NOSPACE".into(),
        }];
        let c = assemble(vec![a, b, down], members, alarms, "ad7f".into());
        assert_eq!(
            (c.leader.as_str(), c.leader_id.as_str()),
            ("node-1", "60f98d3b71ac64f3")
        );
        assert_eq!(c.endpoints[1].name, "node-2");
        assert_eq!(
            summary(&c),
            "2 members, leader node-1; node-1 db 2.5 MiB (2.3 MiB in use), \
             node-2 db 1.9 MiB (0.6 MiB in use), https://c:2379 not answering; \
             alarms: NOSPACE on node-2"
        );
        let none = assemble(vec![], vec![], vec![], String::new());
        assert_eq!(none.leader, "");
        assert_eq!(
            summary(&none),
            "0 members, leader none; ; alarms: none raised"
        );
    }
}
