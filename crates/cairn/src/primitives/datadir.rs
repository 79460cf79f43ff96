//! `etcd_pristine_data_dir`: recognise the single-member data dir a distro
//! package leaves behind and replace it — never a cluster member's data.
//!
//! Debian's and Ubuntu's etcd packages start a one-member etcd at install time
//! (peer URL `http://localhost:2380`). Its data dir makes etcd ignore
//! `ETCD_INITIAL_CLUSTER`, so a node configured afterwards stays a 1-member
//! cluster. The decision rests on facts about the data dir — which peer URLs
//! its write-ahead log has ever recorded, and whether the member holds keys —
//! never on whether an install step reported a change.

use crate::action::Action;
use crate::cmd::Cmd;
use crate::error::StepError;
use crate::executor::Executor;
use crate::host::Host;
use crate::ssh::quote;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use rhai::{EvalAltResult, Map, NativeCallContext};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Options of `etcd_pristine_data_dir`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PristineOptions {
    /// The data dir (Debian: `/var/lib/etcd/default`).
    pub data_dir: String,
    /// The systemd unit running etcd.
    #[serde(default = "default_unit")]
    pub unit: String,
    /// The peer URL the package's own member uses.
    #[serde(default = "default_peer")]
    pub package_peer_url: String,
    /// Client URL of the package's member, to look for keys when it runs.
    #[serde(default = "default_client")]
    pub package_client_url: String,
}

fn default_unit() -> String {
    "etcd".into()
}
fn default_peer() -> String {
    "http://localhost:2380".into()
}
fn default_client() -> String {
    "http://127.0.0.1:2379".into()
}

/// The step.
#[derive(Clone, Debug, Serialize)]
pub struct PristineDataDir {
    pub host: Host,
    pub options: PristineOptions,
}

/// What was decided and done.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "DataDirResult")]
pub struct DataDirResult {
    #[rhai_type(skip)]
    pub data_dir: String,
    /// `absent`, `pristine` (replaced), or `member` (kept).
    #[rhai_type(readonly)]
    pub state: String,
    /// Peer URLs found in the write-ahead log.
    #[rhai_type(skip)]
    pub peer_urls: Vec<String>,
    /// Where the pristine data dir was moved to, if it was.
    #[rhai_type(readonly)]
    pub moved_to: String,
    #[rhai_type(readonly)]
    pub changed: bool,
}

/// Facts about a data dir, read in one round trip.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DataDirFacts {
    pub exists: bool,
    pub wal_files: usize,
    pub peer_urls: Vec<String>,
    pub active: bool,
    /// Some(true) when the running package member answered and holds keys.
    pub has_keys: Option<bool>,
}

/// What to do about a data dir.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Absent,
    Member,
    Pristine,
    Refuse(String),
}

/// Decide from facts (table-tested below).
pub fn decide(f: &DataDirFacts, o: &PristineOptions) -> Verdict {
    if !f.exists {
        return Verdict::Absent;
    }
    if f.wal_files == 0 || f.peer_urls.is_empty() {
        return Verdict::Refuse(format!(
            "{} exists but its write-ahead log names no member; cannot tell whose data it is, so it is left alone — inspect it and remove it yourself if it is disposable",
            o.data_dir
        ));
    }
    if f.peer_urls.iter().any(|u| *u != o.package_peer_url) {
        return Verdict::Member;
    }
    if f.has_keys == Some(true) {
        return Verdict::Refuse(format!(
            "{} is the package's single-member data dir but its member holds keys; refusing to replace data — back it up (etcdctl snapshot save) and move it away yourself",
            o.data_dir
        ));
    }
    Verdict::Pristine
}

/// Parse the fact script's output.
pub fn parse_facts(stdout: &str) -> DataDirFacts {
    let mut f = DataDirFacts::default();
    for line in stdout.lines() {
        let (k, v) = line.split_once('=').unwrap_or((line, ""));
        match k {
            "exists" => f.exists = v == "1",
            "wal" => f.wal_files = v.trim().parse().unwrap_or(0),
            "peer" => {
                // `peerURLs":["http://a:2380","http://b:2380"]`
                for url in v.split(['"', ',', '[', ']']).filter(|s| s.contains("://")) {
                    if !f.peer_urls.iter().any(|u| u == url) {
                        f.peer_urls.push(url.to_string());
                    }
                }
            }
            "active" => f.active = v == "active",
            "keys" => {
                f.has_keys = match v {
                    "yes" => Some(true),
                    "no" => Some(false),
                    _ => None,
                }
            }
            _ => {}
        }
    }
    f.peer_urls.sort();
    f
}

impl PristineDataDir {
    fn script(&self) -> String {
        let d = quote(&self.options.data_dir);
        let unit = quote(&self.options.unit);
        let client = quote(&self.options.package_client_url);
        let only_package = quote(&format!(
            "peerURLs\":[\"{}\"]",
            self.options.package_peer_url
        ));
        // WAL segments are preallocated (64 MB, mostly zeros): NUL-separated
        // records (`-z`) let grep skip the zeros instead of scanning them as
        // one 64 MB line (~30 ms instead of ~200 ms per segment).
        // The member is asked for keys only when its log has known nothing but
        // the package's peer: a configured member does not serve plain http
        // there, and asking it would only wait for a timeout.
        format!(
            "if [ -d {d}/member ]; then echo exists=1; else echo exists=0; fi; \
             echo wal=$(ls {d}/member/wal/*.wal 2>/dev/null | wc -l); \
             peers=$(for w in {d}/member/wal/*.wal; do [ -f \"$w\" ] && LC_ALL=C grep -azoh 'peerURLs\":\\[[^]]*\\]' \"$w\"; done 2>/dev/null | tr '\\0' '\\n' | sort -u); \
             printf '%s\\n' \"$peers\" | grep . | sed 's/^/peer=/'; \
             active=$(systemctl is-active {unit} 2>/dev/null); echo active=$active; \
             if [ \"$peers\" = {only_package} ] && [ \"$active\" = active ] && command -v etcdctl >/dev/null; then \
               k=$(ETCDCTL_API=3 etcdctl --endpoints={client} --dial-timeout=2s --command-timeout=3s get '' --prefix --keys-only --limit=1 2>/dev/null) && \
               {{ if [ -n \"$k\" ]; then echo keys=yes; else echo keys=no; fi; }} || echo keys=unknown; \
             fi"
        )
    }

    fn result(
        &self,
        f: &DataDirFacts,
        state: &str,
        moved_to: &str,
        changed: bool,
    ) -> DataDirResult {
        DataDirResult {
            data_dir: self.options.data_dir.clone(),
            state: state.into(),
            peer_urls: f.peer_urls.clone(),
            moved_to: moved_to.into(),
            changed,
        }
    }

    fn backup_path(&self) -> String {
        format!(
            "{}.pristine-replaced-by-cairn",
            self.options.data_dir.trim_end_matches('/')
        )
    }
}

impl Step for PristineDataDir {
    type Output = DataDirResult;
    type Work = DataDirFacts;

    /// Every argument is typed where the script calls it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "etcd_pristine_data_dir"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<DataDirResult, DataDirFacts>, StepError> {
        let out = ctx.ssh.exec(&this.host, &this.script(), None).await?;
        let facts = parse_facts(&out.stdout);
        let fp = fingerprint(&facts);
        let host = this.host.name.clone();
        let dir = &this.options.data_dir;
        match decide(&facts, &this.options) {
            Verdict::Absent => Ok(Prepared::done(
                vec![Action::noop(
                    &host,
                    format!("etcd data dir {dir}"),
                    "absent: etcd will bootstrap from its configuration",
                )],
                fp,
                this.result(&facts, "absent", "", false),
            )),
            Verdict::Member => Ok(Prepared::done(
                vec![Action::noop(
                    &host,
                    format!("etcd data dir {dir}"),
                    format!(
                        "belongs to a cluster member (peer URLs {}); kept",
                        facts.peer_urls.join(" ")
                    ),
                )],
                fp,
                this.result(&facts, "member", "", false),
            )),
            Verdict::Refuse(why) => Err(StepError::Other(format!("on {host}: {why}"))),
            Verdict::Pristine => {
                let backup = this.backup_path();
                let action = Action::delete(&host, format!("etcd data dir {dir}"))
                    .because(format!(
                        "the package's pristine single-member data (peer {}, no keys) would make etcd ignore the initial cluster; stop {} and move it to {backup}",
                        this.options.package_peer_url, this.options.unit
                    ));
                Ok(Prepared::todo(
                    vec![action],
                    fp,
                    this.result(&facts, "pristine", &backup, true),
                    facts,
                ))
            }
        }
    }

    fn intent(this: &Valid<Self>) -> Prepared<DataDirResult, DataDirFacts> {
        let dir = &this.options.data_dir;
        Prepared::todo(
            vec![
                Action::delete(&this.host.name, format!("etcd data dir {dir}"))
                    .because("if it is the package's pristine single-member data dir"),
            ],
            String::new(),
            this.result(
                &DataDirFacts::default(),
                "pristine",
                &this.backup_path(),
                true,
            ),
            DataDirFacts::default(),
        )
    }

    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        facts: DataDirFacts,
    ) -> Result<DataDirResult, StepError> {
        let backup = this.backup_path();
        // Re-check under the same rule right before acting (facts may have moved).
        let out = ctx.ssh.exec(&this.host, &this.script(), None).await?;
        let now = parse_facts(&out.stdout);
        if decide(&now, &this.options) != Verdict::Pristine {
            return Err(StepError::Other(format!(
                "on {}: {} changed since it was inspected (now: {:?}); not touching it",
                this.host.name, this.options.data_dir, now.peer_urls
            )));
        }
        // `rm -rf` removes a link at the backup path, never what it points
        // to; `mv -T` renames onto the path itself, never into a folder a
        // link there points to.
        let d = &this.options.data_dir;
        let cmd = [
            Cmd::new("systemctl")
                .arg("stop")
                .operands([this.options.unit.as_str()]),
            Cmd::new("rm").arg("-rf").operands([backup.as_str()]),
            Cmd::new("mv").args(["-f", "-T"]).operands([d, &backup]),
        ]
        .map(|c| c.to_string())
        .join(" && ");
        let out = ctx.ssh.exec(&this.host, &cmd, None).await?;
        if out.code != 0 {
            return Err(StepError::Command {
                host: this.host.name.clone(),
                command: cmd,
                code: out.code,
                stderr: crate::ssh::tail(&out.stderr, 2000),
            });
        }
        Ok(this.result(&facts, "pristine", &backup, true))
    }
}

/// Register `etcd_pristine_data_dir`.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    engine
        .build_type::<DataDirResult>()
        .register_get("peer_urls", |r: &mut DataDirResult| {
            r.peer_urls
                .iter()
                .cloned()
                .map(rhai::Dynamic::from)
                .collect::<rhai::Array>()
        })
        .register_fn("to_string", |r: &mut DataDirResult| {
            format!("{} ({})", r.data_dir, r.state)
        });
    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Move aside the single-member data dir a distro package made at install time
        /// (and nothing else): `#{ data_dir, unit?, package_peer_url?, package_client_url? }`.
        /// A dir whose write-ahead log has only ever known the package's peer URL and whose
        /// member holds no keys is stopped and moved aside; a cluster member's data dir is
        /// kept; anything unclear is an error that leaves the dir alone.
        ///
        /// ```rhai
        /// etcd_pristine_data_dir(h, #{ data_dir: "/var/lib/etcd/default" });
        /// ```
        fn "etcd_pristine_data_dir"("host: Host", "options: Map") -> "DataDirResult" =
        move |call: NativeCallContext,
              host: Host,
              opts: Map|
              -> Result<DataDirResult, Box<EvalAltResult>> {
            let options: PristineOptions = crate::args::parse(&call, "etcd_pristine_data_dir", opts)?;
            x.exec(&call, PristineDataDir { host, options })
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PristineOptions {
        PristineOptions {
            data_dir: "/var/lib/etcd/default".into(),
            unit: default_unit(),
            package_peer_url: default_peer(),
            package_client_url: default_client(),
        }
    }

    #[test]
    fn facts_in_verdicts_out() {
        let o = opts();
        let f = parse_facts("exists=0\nwal=0\nactive=inactive\n");
        assert_eq!(decide(&f, &o), Verdict::Absent);

        let pristine = parse_facts("exists=1\nwal=1\npeer=peerURLs\":[\"http://localhost:2380\"]\nactive=active\nkeys=no\n");
        assert_eq!(pristine.peer_urls, vec!["http://localhost:2380"]);
        assert_eq!(decide(&pristine, &o), Verdict::Pristine);

        // stopped package member: no key check possible, the log decides
        let stopped = parse_facts(
            "exists=1\nwal=1\npeer=peerURLs\":[\"http://localhost:2380\"]\nactive=failed\n",
        );
        assert_eq!(decide(&stopped, &o), Verdict::Pristine);

        let member = parse_facts(
            "exists=1\nwal=2\npeer=peerURLs\":[\"https://10.1.1.2:2380\"]\npeer=peerURLs\":[\"https://10.1.1.3:2380\"]\nactive=active\n",
        );
        assert_eq!(member.peer_urls.len(), 2);
        assert_eq!(decide(&member, &o), Verdict::Member);

        // a member that once was the package's and then joined a cluster: kept
        let mixed = parse_facts(
            "exists=1\nwal=1\npeer=peerURLs\":[\"http://localhost:2380\"]\npeer=peerURLs\":[\"https://10.1.1.2:2380\"]\n",
        );
        assert_eq!(decide(&mixed, &o), Verdict::Member);

        let with_keys = parse_facts("exists=1\nwal=1\npeer=peerURLs\":[\"http://localhost:2380\"]\nactive=active\nkeys=yes\n");
        assert!(matches!(decide(&with_keys, &o), Verdict::Refuse(m) if m.contains("holds keys")));

        let no_wal = parse_facts("exists=1\nwal=0\n");
        assert!(matches!(decide(&no_wal, &o), Verdict::Refuse(m) if m.contains("names no member")));
    }
}
