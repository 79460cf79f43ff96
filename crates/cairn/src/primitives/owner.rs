//! `claim_hosts`: host ownership. A host records which cluster and which CA
//! manage it, so that a run from another workspace (another CA) cannot take
//! a member over by accident.
//!
//! The first run that manages a host writes `/etc/cairn/owner.json` there
//! (root-owned, in a root-owned folder, through a temp file renamed into
//! place): the cluster name, the runbook, the SHA-256 fingerprint and subject
//! of the workspace's CA certificate (never a key), and which workspace
//! recorded it. Later runs compare: the same CA and cluster is a no-op; a
//! different one is refused for every host at once, before any host is
//! changed — in plans too, which fail with the same message — unless the run
//! says `adopt: true`, which rewrites the record.
//!
//! A CA that does not exist in the workspace yet (a plan in a new workspace)
//! cannot be the recorded one: an owned host is refused then too.

use crate::action::Action;
use crate::cmd::quote;
use crate::error::StepError;
use crate::executor::Executor;
use crate::host::Host;
use crate::primitives::pki::{parse_pem, Cert};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use rhai::{EvalAltResult, Map, NativeCallContext};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The record's folder on a host (root-owned, 0755).
pub const OWNER_DIR: &str = "/etc/cairn";
/// The owner record on a host (root-owned, 0644).
pub const OWNER_FILE: &str = "/etc/cairn/owner.json";

crate::registration::documented! {
    /// Claim `hosts` for this cluster and this workspace's CA, before changing them.
    ///
    /// Options: `hosts` (array of hosts, required), `cluster` (the cluster's name,
    /// required), `ca` (the CA certificate from `gen_ca`, required), `adopt`
    /// (bool, default false).
    ///
    /// Each host records its owner in /etc/cairn/owner.json (root-only folder; the
    /// CA's fingerprint, never a key). A host owned by another cluster or CA (a run
    /// from another workspace) makes the step fail for all hosts, in plans too,
    /// before anything is changed, naming the record; `adopt: true` takes the hosts
    /// over and rewrites their records. Returns a `ClaimResult` (`changed`).
    ///
    /// ```rhai
    /// claim_hosts(#{ hosts: nodes, cluster: params.cluster, ca: ca, adopt: params.adopt });
    /// ```
    const DOC;
}

/// Options of `claim_hosts`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimArgs {
    pub hosts: Vec<Host>,
    pub cluster: String,
    pub ca: Cert,
    #[serde(default)]
    pub adopt: bool,
}

/// The step. Only the CA's name is an argument: its fingerprint is read from
/// the workspace, so a plan in a new workspace still reads the hosts' records.
#[derive(Clone, Debug, Serialize)]
pub struct ClaimHosts {
    pub hosts: Vec<Host>,
    pub cluster: String,
    /// Workspace name of the CA (`gen_ca`'s `name`).
    pub ca: String,
    /// Whether the CA handle the script holds is known: in a plan that makes
    /// or re-issues the CA it is not, and the CA still on disk (if any) is not
    /// the one the run will record. The hosts' records are still read; an
    /// existing record is then refused (or adopted) as for a CA the workspace
    /// does not have, since the new CA cannot be the recorded one.
    pub ca_known: bool,
    pub adopt: bool,
    /// The runbook making the claim (recorded, not compared).
    pub runbook: String,
}

/// What a host's owner record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    pub cluster: String,
    pub runbook: String,
    /// `SHA256:AB:CD:...` of the CA certificate (DER).
    pub ca_fingerprint: String,
    pub ca_subject: String,
    /// `machine:/path/to/.cairn` of the workspace that wrote the record.
    pub workspace: String,
}

/// What was found on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Found {
    /// No record: the host is not claimed yet.
    Absent,
    Record(OwnerRecord),
    /// Something that is not a record of ours (or a folder that is not root's).
    Unreadable(String),
}

/// The workspace's CA as far as ownership is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaIdentity {
    pub fingerprint: String,
    pub subject: String,
}

/// What to do on one host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Record,
    Adopt(OwnerRecord),
    Refuse(String),
}

/// Result of `claim_hosts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "ClaimResult")]
pub struct ClaimResult {
    /// Hosts whose record was written (new or adopted).
    #[rhai_type(skip)]
    pub recorded: Vec<String>,
    /// Hosts taken over from another owner (`adopt`).
    #[rhai_type(skip)]
    pub adopted: Vec<String>,
    #[rhai_type(readonly)]
    pub changed: bool,
}

/// Decide for one host (table-tested below). `ca` is `None` when the
/// workspace has no such CA yet (this run would make a new one).
pub fn decide(
    found: &Found,
    cluster: &str,
    ca_name: &str,
    ca: Option<&CaIdentity>,
    adopt: bool,
) -> Verdict {
    let record = match found {
        Found::Absent => return Verdict::Record,
        Found::Unreadable(why) => {
            return Verdict::Refuse(format!(
                "{OWNER_FILE}: {why}; inspect it and remove it if it is not needed"
            ))
        }
        Found::Record(r) => r,
    };
    let same_ca = ca.is_some_and(|c| c.fingerprint == record.ca_fingerprint);
    if same_ca && record.cluster == cluster {
        return Verdict::Ok;
    }
    if adopt {
        return Verdict::Adopt(record.clone());
    }
    let ours = match ca {
        Some(c) => format!("this workspace's CA `{ca_name}` is {}", c.fingerprint),
        None => format!("this run makes a new CA `{ca_name}` (none in this workspace yet, or re-issued), which cannot be the recorded one"),
    };
    Verdict::Refuse(format!(
        "managed by another workspace: {OWNER_FILE} records cluster `{}` (runbook {}) with CA {} ({}), recorded from {}; this run is for cluster `{cluster}` and {ours}",
        record.cluster, record.runbook, record.ca_fingerprint, record.ca_subject, record.workspace
    ))
}

/// Parse the fact script's output: `absent`, `bad <why>`, or `record` and the JSON.
pub fn parse_found(stdout: &str) -> Found {
    let (head, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    match head.trim() {
        "absent" => Found::Absent,
        "record" => match serde_json::from_str::<OwnerRecord>(rest) {
            Ok(r) => Found::Record(r),
            Err(e) => Found::Unreadable(format!("not a cairn owner record ({e})")),
        },
        other => Found::Unreadable(
            other
                .strip_prefix("bad ")
                .unwrap_or("unexpected answer")
                .to_string(),
        ),
    }
}

/// The fact script: never follows a link, reads at most 64 KiB.
fn fact_script() -> String {
    let d = quote(OWNER_DIR);
    let f = quote(OWNER_FILE);
    format!(
        "if [ -L {d} ]; then echo 'bad {OWNER_DIR} is a symlink'; \
         elif [ ! -e {d} ]; then echo absent; \
         elif [ ! -d {d} ] || [ \"$(stat -c %u {d})\" != 0 ]; then echo 'bad {OWNER_DIR} is not a folder owned by root'; \
         elif [ -L {f} ]; then echo 'bad {OWNER_FILE} is a symlink'; \
         elif [ ! -e {f} ]; then echo absent; \
         elif [ ! -f {f} ] || [ \"$(stat -c %u {f})\" != 0 ]; then echo 'bad {OWNER_FILE} is not a file owned by root'; \
         else echo record; head -c 65536 {f}; fi"
    )
}

/// The write: a root-owned folder (made if missing, refused if it is a
/// link or not root's), a temp file there, renamed over the record.
fn write_script() -> String {
    let d = quote(OWNER_DIR);
    let f = quote(OWNER_FILE);
    let tmp = quote(&format!("{OWNER_DIR}/.owner.json.XXXXXX"));
    format!(
        "set -e; umask 022; \
         if [ -L {d} ]; then echo '{OWNER_DIR} is a symlink' >&2; exit 1; fi; \
         mkdir -p {d}; \
         if [ ! -d {d} ] || [ \"$(stat -c %u {d})\" != 0 ]; then echo '{OWNER_DIR} is not a folder owned by root' >&2; exit 1; fi; \
         chmod 0755 {d}; \
         t=$(mktemp {tmp}); \
         cat > \"$t\"; chmod 0644 \"$t\"; mv -f \"$t\" {f}"
    )
}

/// `machine:/path` of the workspace.
fn workspace_label(ctx: &Ctx) -> String {
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("{machine}:{}", ctx.workspace.root().display())
}

impl ClaimHosts {
    /// The workspace's CA, if it exists there.
    fn ca_identity(&self, ctx: &Ctx) -> Result<Option<CaIdentity>, StepError> {
        let store = crate::primitives::pki::Store::new(ctx.workspace.pki_dir());
        let Some(pem) = store.read_cert(&self.ca)? else {
            return Ok(None);
        };
        let parsed = parse_pem(&pem).map_err(|e| {
            StepError::invalid("ca", format!("the workspace's CA `{}`: {e}", self.ca))
        })?;
        Ok(Some(CaIdentity {
            fingerprint: format!("SHA256:{}", parsed.info.fingerprint),
            subject: parsed.info.subject.clone(),
        }))
    }

    fn record(&self, ctx: &Ctx, ca: &CaIdentity) -> OwnerRecord {
        OwnerRecord {
            cluster: self.cluster.clone(),
            runbook: self.runbook.clone(),
            ca_fingerprint: ca.fingerprint.clone(),
            ca_subject: ca.subject.clone(),
            workspace: workspace_label(ctx),
        }
    }

    fn what(&self) -> String {
        format!(
            "owner record {OWNER_FILE} (cluster {}, CA {})",
            self.cluster, self.ca
        )
    }

    fn result(&self, verdicts: &[Verdict]) -> ClaimResult {
        let mut r = ClaimResult {
            recorded: vec![],
            adopted: vec![],
            changed: false,
        };
        for (h, v) in self.hosts.iter().zip(verdicts) {
            match v {
                Verdict::Record => r.recorded.push(h.name.clone()),
                Verdict::Adopt(_) => {
                    r.recorded.push(h.name.clone());
                    r.adopted.push(h.name.clone());
                }
                _ => {}
            }
        }
        r.changed = !r.recorded.is_empty();
        r
    }
}

impl Step for ClaimHosts {
    type Output = ClaimResult;
    /// Which hosts get a record written, and the result once they have.
    type Work = (Vec<bool>, ClaimResult);

    fn kind(&self) -> &'static str {
        "claim_hosts"
    }
    fn target(&self) -> String {
        self.hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
    fn validate(&self) -> Result<(), StepError> {
        if self.cluster.is_empty() {
            return Err(StepError::invalid("cluster", "must not be empty"));
        }
        crate::primitives::pki::check_name("ca", &self.ca)
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<ClaimResult, Self::Work>, StepError> {
        let ca = if this.ca_known {
            this.ca_identity(ctx)?
        } else {
            None
        };
        let script = fact_script();
        let answers =
            futures::future::join_all(this.hosts.iter().map(|h| ctx.ssh.exec(h, &script, None)))
                .await;
        let mut found = Vec::new();
        for answer in answers {
            found.push(parse_found(&answer?.stdout));
        }
        let verdicts: Vec<Verdict> = found
            .iter()
            .map(|f| decide(f, &this.cluster, &this.ca, ca.as_ref(), this.adopt))
            .collect();
        let refused: Vec<String> = this
            .hosts
            .iter()
            .zip(&verdicts)
            .filter_map(|(h, v)| match v {
                Verdict::Refuse(why) => Some(format!("{}: {why}", h.name)),
                _ => None,
            })
            .collect();
        if !refused.is_empty() {
            return Err(StepError::Other(format!(
                "refusing to change hosts another workspace manages (nothing was changed):\n  {}\nIf this workspace is to take them over, run again with `adopt` (the shipped runbooks: --var adopt=true).",
                refused.join("\n  ")
            )));
        }
        let mut actions = Vec::new();
        for (h, v) in this.hosts.iter().zip(&verdicts) {
            actions.push(match v {
                Verdict::Ok => Action::noop(
                    &h.name,
                    this.what(),
                    "the host is this cluster's, with this workspace's CA",
                ),
                Verdict::Record => Action::create(&h.name, this.what()),
                Verdict::Adopt(old) => Action::change(&h.name, this.what()).because(format!(
                    "adopt: taken over from cluster `{}` with CA {}, recorded from {}",
                    old.cluster, old.ca_fingerprint, old.workspace
                )),
                Verdict::Refuse(_) => unreachable!("refused above"),
            });
        }
        let facts = fingerprint(&found);
        let output = this.result(&verdicts);
        let work: Vec<bool> = verdicts
            .iter()
            .map(|v| matches!(v, Verdict::Record | Verdict::Adopt(_)))
            .collect();
        Ok(if work.iter().any(|w| *w) {
            Prepared::todo(actions, facts, output.clone(), (work, output))
        } else {
            Prepared::done(actions, facts, output)
        })
    }

    fn intent(this: &Valid<Self>) -> Prepared<ClaimResult, Self::Work> {
        let actions = this
            .hosts
            .iter()
            .map(|h| {
                Action::create(&h.name, this.what())
                    .because("unless the host is owned by another cluster or CA (then refused)")
            })
            .collect();
        let output = this.result(&vec![Verdict::Record; this.hosts.len()]);
        Prepared::todo(
            actions,
            String::new(),
            output.clone(),
            (vec![true; this.hosts.len()], output),
        )
    }

    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        (work, done): Self::Work,
    ) -> Result<ClaimResult, StepError> {
        let Some(ca) = this.ca_identity(ctx)? else {
            return Err(StepError::Pending {
                what: format!("the workspace's CA `{}`", this.ca),
            });
        };
        let record = serde_json::to_vec_pretty(&this.record(ctx, &ca))
            .map_err(|e| StepError::Other(e.to_string()))?;
        let script = write_script();
        let targets: Vec<&Host> = this
            .hosts
            .iter()
            .zip(&work)
            .filter(|(_, w)| **w)
            .map(|(h, _)| h)
            .collect();
        let answers = futures::future::join_all(
            targets
                .iter()
                .map(|h| ctx.ssh.exec(h, &script, Some(&record))),
        )
        .await;
        for (h, answer) in targets.iter().zip(answers) {
            let out = answer?;
            if out.code != 0 {
                return Err(StepError::Command {
                    host: h.name.clone(),
                    command: format!("write {OWNER_FILE}"),
                    code: out.code,
                    stderr: crate::ssh::tail(&out.stderr, 500),
                });
            }
        }
        Ok(done)
    }
}

/// Register `claim_hosts` and its result type.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    engine
        .build_type::<ClaimResult>()
        .register_get("recorded", |r: &mut ClaimResult| {
            r.recorded
                .iter()
                .cloned()
                .map(rhai::Dynamic::from)
                .collect::<rhai::Array>()
        })
        .register_fn("to_string", |r: &mut ClaimResult| {
            format!("claimed (recorded on: {})", r.recorded.join(", "))
        });
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "claim_hosts"("options: Map") -> "ClaimResult" as DOC =
        move |call: NativeCallContext, opts: Map| -> Result<ClaimResult, Box<EvalAltResult>> {
            let a: ClaimArgs = crate::args::parse(&call, "claim_hosts", opts)?;
            if !a.ca.is_ca {
                return Err(crate::executor::script_error(format!(
                        "claim_hosts: bad arguments: `ca` must be a CA certificate (from gen_ca); `{}` is not one",
                        a.ca.name
                    )));
            }
            let runbook = x.ctx().bundle.origin.clone();
            x.exec(
                &call,
                ClaimHosts {
                    hosts: a.hosts,
                    cluster: a.cluster,
                    ca_known: !a.ca.is_unknown() && !crate::unknown::is_unknown(&a.ca.fingerprint),
                    ca: a.ca.name,
                    adopt: a.adopt,
                    runbook,
                },
            )
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(cluster: &str, fp: &str) -> OwnerRecord {
        OwnerRecord {
            cluster: cluster.into(),
            runbook: "etcd-binary-yaml".into(),
            ca_fingerprint: fp.into(),
            ca_subject: "CN=etcd-ca".into(),
            workspace: "op:/home/a/.cairn".into(),
        }
    }

    #[test]
    fn facts_in_verdicts_out() {
        let ours = CaIdentity {
            fingerprint: "SHA256:AA".into(),
            subject: "CN=etcd-ca".into(),
        };
        let c = Some(&ours);
        assert_eq!(
            decide(&Found::Absent, "c1", "c1-ca", c, false),
            Verdict::Record
        );
        assert_eq!(
            decide(&Found::Absent, "c1", "c1-ca", None, false),
            Verdict::Record
        );
        let same = Found::Record(rec("c1", "SHA256:AA"));
        assert_eq!(decide(&same, "c1", "c1-ca", c, false), Verdict::Ok);

        let other = Found::Record(rec("c1", "SHA256:BB"));
        let Verdict::Refuse(why) = decide(&other, "c1", "c1-ca", c, false) else {
            panic!("another CA must be refused")
        };
        assert_eq!(
            why,
            "managed by another workspace: /etc/cairn/owner.json records cluster `c1` (runbook etcd-binary-yaml) with CA SHA256:BB (CN=etcd-ca), recorded from op:/home/a/.cairn; this run is for cluster `c1` and this workspace's CA `c1-ca` is SHA256:AA"
        );
        let Verdict::Refuse(why) = decide(&same, "c1", "c1-ca", None, false) else {
            panic!("a CA yet to be made cannot be the recorded one")
        };
        assert!(
            why.ends_with("this run makes a new CA `c1-ca` (none in this workspace yet, or re-issued), which cannot be the recorded one"),
            "{why}"
        );
        // another cluster with the same CA
        assert!(matches!(
            decide(&same, "c2", "c1-ca", c, false),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            decide(&other, "c1", "c1-ca", c, true),
            Verdict::Adopt(rec("c1", "SHA256:BB"))
        );
        let bad = Found::Unreadable("not a cairn owner record (x)".into());
        assert!(
            matches!(decide(&bad, "c1", "c1-ca", c, true), Verdict::Refuse(w) if w.contains("inspect it"))
        );
    }

    #[test]
    fn answers_parse() {
        assert_eq!(parse_found("absent\n"), Found::Absent);
        let r = rec("c1", "SHA256:AA");
        let text = format!("record\n{}", serde_json::to_string_pretty(&r).unwrap());
        assert_eq!(parse_found(&text), Found::Record(r));
        assert!(
            matches!(parse_found("record\n{nope"), Found::Unreadable(w) if w.starts_with("not a cairn owner record"))
        );
        assert_eq!(
            parse_found("bad /etc/cairn is a symlink\n"),
            Found::Unreadable("/etc/cairn is a symlink".into())
        );
    }
}
