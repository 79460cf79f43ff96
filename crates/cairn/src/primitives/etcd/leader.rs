//! `etcd_move_leader`: hand raft leadership to a named member before work
//! that would otherwise take the leader down (a restart, a defragmentation,
//! a removal). Facts first: which member leads now; a no-op when the wanted
//! member already does. Applying asks the current leader (etcd only accepts a
//! transfer from the leader), then waits until the cluster reports the new
//! leader.

use super::client::{EtcdClient, Member, Status};
use super::steps::{Conn, PemFile, Via};
use crate::action::Action;
use crate::error::StepError;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How long a transfer may take to show in every answering endpoint's status.
const SETTLE: Duration = Duration::from_secs(30);

/// `etcd_move_leader(#{endpoints, ca, cert?, cert_key?, via?, to})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdMoveLeader {
    pub endpoints: Vec<String>,
    pub ca: PemFile,
    #[serde(default)]
    pub cert: Option<PemFile>,
    #[serde(default)]
    pub cert_key: Option<String>,
    #[serde(default)]
    pub via: Option<Via>,
    /// The member to lead: its name, or its ID in hex.
    pub to: String,
}

/// Who leads, and the member to hand over to, as the cluster says.
struct Leadership {
    members: Vec<Member>,
    statuses: Vec<Status>,
    leader: String,
    target: Member,
}

impl Leadership {
    fn name_of(&self, id: &str) -> String {
        self.members
            .iter()
            .find(|m| m.id == id)
            .map(|m| {
                if m.name.is_empty() {
                    m.id.clone()
                } else {
                    m.name.clone()
                }
            })
            .unwrap_or_else(|| id.to_string())
    }
}

impl EtcdMoveLeader {
    fn conn(&self) -> Conn {
        Conn {
            endpoints: self.endpoints.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            cert_key: self.cert_key.clone(),
            via: self.via.clone(),
        }
    }

    fn what(&self) -> String {
        format!("etcd leadership to {}", self.to)
    }

    /// The member list and every answering endpoint's status; the leader is
    /// the one the answering endpoints agree on.
    async fn observe(&self, client: &EtcdClient) -> Result<Leadership, StepError> {
        let members = client.member_list().await?;
        let target = members
            .iter()
            .find(|m| m.name == self.to || m.id.eq_ignore_ascii_case(&self.to))
            .cloned()
            .ok_or_else(|| {
                StepError::invalid(
                    "to",
                    format!(
                        "no member named `{}` (members: {})",
                        self.to,
                        members
                            .iter()
                            .map(|m| if m.name.is_empty() {
                                m.id.clone()
                            } else {
                                m.name.clone()
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?;
        if target.is_learner {
            return Err(StepError::invalid(
                "to",
                format!("member `{}` is a learner: a learner cannot lead", self.to),
            ));
        }
        let mut statuses = Vec::new();
        let mut errors = Vec::new();
        for ep in client.endpoints() {
            match client.status(&ep.url).await {
                Ok(s) => statuses.push(s),
                Err(e) => errors.push(format!("{}: {e}", ep.url)),
            }
        }
        let leaders: Vec<&str> = statuses
            .iter()
            .map(|s| s.leader.as_str())
            .filter(|l| *l != "0")
            .collect();
        let Some(leader) = leaders.first().map(|l| l.to_string()) else {
            return Err(StepError::Verify(format!(
                "no endpoint reports a leader{}",
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", errors.join("; "))
                }
            )));
        };
        if leaders.iter().any(|l| *l != leader) {
            return Err(StepError::Verify(format!(
                "the endpoints disagree on the leader ({}): an election is under way, try again",
                statuses
                    .iter()
                    .map(|s| format!("{} says {}", s.endpoint, s.leader))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Leadership {
            members,
            statuses,
            leader,
            target,
        })
    }
}

impl Step for EtcdMoveLeader {
    type Output = String;
    type Work = ();

    fn validate(&self) -> Result<(), StepError> {
        self.conn().validate()?;
        if self.to.trim().is_empty() {
            return Err(StepError::invalid(
                "to",
                "name the member to lead (its name or hex ID)",
            ));
        }
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "etcd_move_leader"
    }

    fn target(&self) -> String {
        "local".into()
    }

    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<String, ()>, StepError> {
        let unknown_leader = |why: &StepError| {
            Prepared::todo(
                vec![Action::change("local", this.what())
                    .because(format!("current leader unknown: {why}"))],
                String::new(),
                this.to.clone(),
                (),
            )
        };
        if unknown::is_unknown(&this.to) || this.endpoints.iter().any(|e| unknown::is_unknown(e)) {
            return Ok(this.intent());
        }
        // the cluster may not exist yet when planning
        let client = match this.conn().client(ctx).await {
            Ok(c) => c,
            Err(e) => return Ok(unknown_leader(&e)),
        };
        let now = match this.observe(&client).await {
            Ok(now) => now,
            Err(e @ StepError::Invalid { .. }) => return Err(e),
            Err(e) => return Ok(unknown_leader(&e)),
        };
        let facts = fingerprint(&(&now.leader, &now.target.id));
        let name = now.name_of(&now.target.id);
        if now.leader == now.target.id {
            return Ok(Prepared::done(
                vec![Action::noop("local", this.what(), "already leads")],
                facts,
                name,
            ));
        }
        Ok(Prepared::todo(
            vec![Action::change("local", this.what())
                .because(format!("{} leads now", now.name_of(&now.leader)))],
            facts,
            name,
            (),
        ))
    }

    fn intent(this: &Valid<Self>) -> Prepared<String, ()> {
        Prepared::todo(
            vec![Action::change("local", this.what())],
            String::new(),
            this.to.clone(),
            (),
        )
    }

    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<String, StepError> {
        let client = this.conn().client(ctx).await?;
        let now = this.observe(&client).await?;
        let name = now.name_of(&now.target.id);
        if now.leader != now.target.id {
            let Some(leader_ep) = now
                .statuses
                .iter()
                .find(|s| s.member_id == now.leader)
                .map(|s| s.endpoint.clone())
            else {
                return Err(StepError::invalid(
                    "endpoints",
                    format!(
                        "the leader {} is not reachable through any of them: etcd accepts a transfer only from the leader",
                        now.name_of(&now.leader)
                    ),
                ));
            };
            client.move_leader(&leader_ep, &now.target.id).await?;
        }
        // wait (bounded) until every answering endpoint names the new leader
        let deadline = Instant::now() + SETTLE;
        loop {
            let seen = this.observe(&client).await;
            match &seen {
                Ok(s) if s.leader == now.target.id => return Ok(name),
                _ if Instant::now() >= deadline => {
                    return Err(StepError::Verify(format!(
                        "{name} does not lead {} s after the transfer: {}",
                        SETTLE.as_secs(),
                        match seen {
                            Ok(s) => format!("{} leads", s.name_of(&s.leader)),
                            Err(e) => e.to_string(),
                        }
                    )))
                }
                // a bounded poll: the election settles within a few heartbeats
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}
