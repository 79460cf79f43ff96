//! `etcd_snapshot(host)`: a snapshot of the etcd member on a host, proven
//! restorable before it is handed back.
//!
//! Everything happens on the member's host, which already has etcd and its
//! tools: `etcdctl snapshot save` through the member's own client URL with its
//! own certificate (found by `etcd_member`, [`super::member`]); `snapshot
//! status` (etcdutl when the host has it, i.e. 3.5; etcdctl on 3.4); the live
//! member's key count and `endpoint hashkv` at the snapshot's revision; then
//! the restore test: `snapshot restore` into a scratch data dir
//! (`/var/tmp/cairn-restore.XXXXXXXX`, 0700), a temporary one-member etcd on
//! loopback ports (`127.0.0.1:52379`/`52380` by default, refused when
//! something answers there already), polled until healthy, its key count and
//! hashkv at the same revision compared with the live member's; the
//! temporary etcd is stopped and its folder removed whatever happened (a
//! shell `trap`). One round trip; the snapshot stays in `dir` on the host
//! for `fetch`.

use super::member::{EtcdMember, MemberArgs};
use crate::action::Action;
use crate::error::StepError;
use crate::host::Host;
use crate::primitives::remote::put;
use crate::ssh::{quote, tail};
use crate::step::{Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};
use std::time::Duration;

crate::registration::documented! {
    /// Take a snapshot of the etcd member on `host` and restore-test it there:
    /// an `EtcdSnapshot`.
    ///
    /// The member's layout is found as `etcd_member` finds it; `etcdctl snapshot
    /// save` runs on the host through the member's client URL (a loopback one when
    /// it listens on one) with the member's own certificate, into `dir`
    /// (default `/var/lib/cairn/backups`, 0700) as `<taken_at>-<member>.db`
    /// (replacing that member's older snapshots left there).
    /// `snapshot status` (etcdutl on 3.5, etcdctl on 3.4) gives its hash,
    /// revision, keys and size. The restore test: the file is restored into a
    /// scratch data dir under `/var/tmp` and served by a temporary etcd on
    /// `127.0.0.1:restore_port` (peer `restore_port + 1`; default 52379), whose
    /// key count and `endpoint hashkv` at the snapshot's revision must equal the
    /// live member's; the temporary etcd is then stopped and its dir removed.
    /// A failed comparison is an error naming both sides.
    ///
    /// Options: `dir`, `restore_port`, `wait_seconds` (for the temporary etcd to
    /// become healthy, default 60), `unit`/`manifest` (as for `etcd_member`),
    /// `ca_file`, `cert_file`, `key_file` (paths on the host, instead of the
    /// member's own).
    ///
    /// Getters: `host`, `member`, `path` (on the host), `file` (its name),
    /// `taken_at` (`20261201T101500Z`), `sha256`, `size`, `revision`, `hash`,
    /// `total_keys` (snapshot status), `keys` and `kv_hash` (live member at the
    /// revision), `restored_keys`, `restored_kv_hash`, `restore_tested`,
    /// `version`, `tool`; `to_map()`, `to_json()`.
    ///
    /// ```rhai
    /// let s = etcd_snapshot(node);
    /// fetch(node, #{ src: s.path, dest: `backups/etcd-1/${s.file}`, mode: "0600" });
    /// ```
    pub(super) const DOC;
}

/// Default folder for snapshots on the host.
const DIR: &str = "/var/lib/cairn/backups";
/// Default loopback client port of the temporary etcd (peer: +1).
const RESTORE_PORT: u16 = 52379;
/// Name of the temporary member.
const TEST_MEMBER: &str = "cairn-restore-test";

/// Options of `etcd_snapshot`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// `etcd_snapshot(host, #{...})`.
#[derive(Clone, Debug, Serialize)]
pub struct EtcdSnapshot {
    pub host: Host,
    #[serde(flatten)]
    pub args: SnapshotArgs,
}

/// A restore-tested snapshot on a host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdSnapshot")]
pub struct SnapshotRecord {
    #[rhai_type(readonly)]
    pub host: String,
    /// The member it was taken from.
    #[rhai_type(readonly)]
    pub member: String,
    /// Full path on the host.
    #[rhai_type(readonly)]
    pub path: String,
    /// File name (`<taken_at>-<member>.db`).
    #[rhai_type(readonly)]
    pub file: String,
    /// UTC, `20261201T101500Z`.
    #[rhai_type(readonly)]
    pub taken_at: String,
    #[rhai_type(readonly)]
    pub sha256: String,
    #[rhai_type(readonly)]
    pub size: i64,
    /// `snapshot status`: revision, hash (of the file's data) and total keys
    /// (every revision's, as bbolt counts them).
    #[rhai_type(readonly)]
    pub revision: i64,
    #[rhai_type(readonly)]
    pub hash: i64,
    #[rhai_type(readonly)]
    pub total_keys: i64,
    /// Keys of the live member at `revision`, and its `hashkv` there.
    #[rhai_type(readonly)]
    pub keys: i64,
    #[rhai_type(readonly)]
    pub kv_hash: i64,
    /// The same, asked of the temporary etcd serving the restored snapshot.
    #[rhai_type(readonly)]
    pub restored_keys: i64,
    #[rhai_type(readonly)]
    pub restored_kv_hash: i64,
    #[rhai_type(readonly)]
    pub restore_tested: bool,
    /// The member's etcd version.
    #[rhai_type(readonly)]
    pub version: String,
    /// `etcdutl` or `etcdctl`: what read and restored the snapshot.
    #[rhai_type(readonly)]
    pub tool: String,
}

/// What the host needs to take the snapshot.
pub struct SnapshotWork {
    member: String,
    version: String,
    script_vars: Vars,
}

/// The values the script gets (each quoted into a shell variable).
#[derive(Clone, Debug, Serialize)]
struct Vars {
    endpoint: String,
    ca: String,
    cert: String,
    key: String,
    etcd: String,
    dir: String,
    port: u16,
    wait: u64,
}

/// The client URL to reach the member from its own host: a loopback listen
/// URL when there is one, else the first advertised URL.
pub fn local_endpoint(listen: &[String], advertise: &[String]) -> Option<String> {
    listen
        .iter()
        .find(|u| {
            u.contains("://127.0.0.1:") || u.contains("://localhost:") || u.contains("://[::1]:")
        })
        .or_else(|| advertise.first())
        .or_else(|| listen.iter().find(|u| !u.contains("://0.0.0.0:")))
        .cloned()
}

impl EtcdSnapshot {
    fn dir(&self) -> &str {
        self.args.dir.as_deref().unwrap_or(DIR)
    }
    fn port(&self) -> Result<u16, StepError> {
        let p = self.args.restore_port.unwrap_or(RESTORE_PORT as i64);
        u16::try_from(p)
            .ok()
            .filter(|p| *p >= 1024 && *p < u16::MAX)
            .ok_or_else(|| {
                StepError::invalid(
                    "restore_port",
                    format!("{p} is not a port from 1024 to 65534 (the peer port is the next one)"),
                )
            })
    }
    fn wait(&self) -> Result<u64, StepError> {
        let w = self.args.wait_seconds.unwrap_or(60);
        if !(1..=3600).contains(&w) {
            return Err(StepError::invalid(
                "wait_seconds",
                format!("{w} is not from 1 to 3600"),
            ));
        }
        Ok(w as u64)
    }
    fn what(&self, member: &str) -> String {
        format!(
            "etcd snapshot of member {member} into {}/, restore-tested on 127.0.0.1:{}",
            self.dir(),
            self.port().unwrap_or(RESTORE_PORT)
        )
    }
}

/// The script run on the host; prints `key value` lines (values are JSON
/// from etcdctl/etcdutl, parsed by [`parse_output`]).
fn script(v: &Vars, member: &str, name: &str) -> String {
    format!(
        "set -u\n\
         ep={ep}; ca={ca}; cert={cert}; key={key}; etcd={etcd}; dir={dir}; name={name}; member={member}\n\
         port={port}; peer={peer}; wait={wait}; tm={tm}\n\
         export ETCDCTL_API=3\n\
         b=${{etcd%/*}}\n\
         ctl=$b/etcdctl; [ -x \"$ctl\" ] || ctl=$(command -v etcdctl) || {{ echo \"cairn: no etcdctl next to $etcd or on PATH\" >&2; exit 10; }}\n\
         utl=$b/etcdutl; [ -x \"$utl\" ] || utl=$(command -v etcdutl) || utl=\n\
         if [ -n \"$utl\" ]; then tool=$utl; else tool=$ctl; fi\n\
         echo \"tool ${{tool##*/}}\"\n\
         c() {{ \"$ctl\" --endpoints=\"$ep\" --cacert=\"$ca\" --cert=\"$cert\" --key=\"$key\" --dial-timeout=5s --command-timeout=120s \"$@\"; }}\n\
         u=http://127.0.0.1:$port; pu=http://127.0.0.1:$peer\n\
         t() {{ \"$ctl\" --endpoints=\"$u\" --dial-timeout=2s --command-timeout=60s \"$@\"; }}\n\
         if \"$ctl\" --endpoints=\"$u\" --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1; then\n\
         \x20 echo \"cairn: something already serves etcd on $u; pick another restore_port\" >&2; exit 11\n\
         fi\n\
         umask 077\n\
         mkdir -p -- \"$dir\" || exit 12\n\
         for o in \"${{dir%/}}\"/[0-9]*T[0-9]*Z-\"$member\".db \"${{dir%/}}\"/[0-9]*T[0-9]*Z-\"$member\".db.part; do\n\
         \x20 if [ -f \"$o\" ] && [ ! -L \"$o\" ]; then rm -f -- \"$o\"; echo \"replaced $o\"; fi\n\
         done\n\
         f=\"${{dir%/}}/$name.db\"\n\
         trap 'rm -f -- \"$f\"' EXIT\n\
         c snapshot save \"$f\" >/dev/null 2>\"$f.log\" || {{ tail -5 \"$f.log\" >&2; rm -f -- \"$f.log\" \"$f\" \"$f.part\"; exit 13; }}\n\
         rm -f -- \"$f.log\"\n\
         echo \"path $f\"\n\
         echo \"sha256 $(sha256sum < \"$f\" | cut -d' ' -f1)\"\n\
         echo \"size $(stat -c %s -- \"$f\")\"\n\
         st=$(\"$tool\" snapshot status \"$f\" -w json 2>&1) || {{ echo \"cairn: snapshot status: $st\" >&2; exit 14; }}\n\
         echo \"status $st\"\n\
         rev=$(printf '%s' \"$st\" | sed -n 's/.*\"revision\":\\([0-9]*\\).*/\\1/p')\n\
         [ -n \"$rev\" ] || {{ echo \"cairn: no revision in the snapshot status: $st\" >&2; exit 14; }}\n\
         k=$(c get '' --prefix --keys-only --limit=1 --rev=\"$rev\" -w json) || exit 15\n\
         echo \"keys $k\"\n\
         k=$(c endpoint hashkv --rev=\"$rev\" -w json) || exit 15\n\
         echo \"kv_hash $k\"\n\
         s=$(mktemp -d /var/tmp/cairn-restore.XXXXXXXX) || exit 16\n\
         pid=; ok=\n\
         trap 'if [ -n \"$pid\" ]; then kill \"$pid\" 2>/dev/null; wait \"$pid\" 2>/dev/null; fi; rm -rf -- \"$s\"; [ -n \"$ok\" ] || rm -f -- \"$f\"' EXIT\n\
         \"$tool\" snapshot restore \"$f\" --name \"$tm\" --data-dir \"$s/data\" --initial-cluster \"$tm=$pu\" \
           --initial-cluster-token \"$tm\" --initial-advertise-peer-urls \"$pu\" >\"$s/restore.log\" 2>&1 \
           || {{ echo 'cairn: snapshot restore failed:' >&2; tail -5 \"$s/restore.log\" >&2; exit 17; }}\n\
         \"$etcd\" --name \"$tm\" --data-dir \"$s/data\" --listen-client-urls \"$u\" --advertise-client-urls \"$u\" \
           --listen-peer-urls \"$pu\" --initial-advertise-peer-urls \"$pu\" --initial-cluster \"$tm=$pu\" \
           --initial-cluster-state new </dev/null >\"$s/etcd.log\" 2>&1 &\n\
         pid=$!\n\
         i=0\n\
         until t endpoint health >/dev/null 2>&1; do\n\
         \x20 if ! kill -0 \"$pid\" 2>/dev/null; then pid=; echo 'cairn: the restore-test etcd exited:' >&2; tail -5 \"$s/etcd.log\" >&2; exit 18; fi\n\
         \x20 i=$((i+1)); if [ \"$i\" -gt $((wait*5)) ]; then echo \"cairn: the restore-test etcd on $u was not healthy within ${{wait}}s:\" >&2; tail -5 \"$s/etcd.log\" >&2; exit 19; fi\n\
         \x20 sleep 0.2\n\
         done\n\
         k=$(t member list -w json) || exit 20\n\
         echo \"restored_members $k\"\n\
         k=$(t get '' --prefix --keys-only --limit=1 -w json) || exit 20\n\
         echo \"restored_keys $k\"\n\
         k=$(t endpoint hashkv --rev=\"$rev\" -w json) || exit 20\n\
         echo \"restored_kv_hash $k\"\n\
         kill \"$pid\"; wait \"$pid\" 2>/dev/null; pid=\n\
         ok=1\n\
         echo stopped\n",
        ep = quote(&v.endpoint),
        ca = quote(&v.ca),
        cert = quote(&v.cert),
        key = quote(&v.key),
        etcd = quote(&v.etcd),
        dir = quote(&v.dir),
        name = quote(name),
        member = quote(member),
        port = v.port,
        peer = v.port as u32 + 1,
        wait = v.wait,
        tm = TEST_MEMBER,
    )
}

/// What the script printed, by key (first word of each line).
fn lines_of(stdout: &str) -> std::collections::BTreeMap<&str, &str> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(' ').or(Some((l, ""))))
        .collect()
}

fn int_in(json: &serde_json::Value, path: &[&str]) -> Option<i64> {
    let mut v = json;
    for p in path {
        v = v.get(*p)?;
    }
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| u as i64))
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Fill `record` from the script's output; an error names what is missing.
pub fn parse_output(stdout: &str, record: &mut SnapshotRecord) -> Result<(), String> {
    let l = lines_of(stdout);
    let get = |k: &str| l.get(k).copied().ok_or_else(|| format!("no `{k}` line"));
    let json = |k: &str| -> Result<serde_json::Value, String> {
        serde_json::from_str(get(k)?)
            .map_err(|e| format!("`{k}` is not JSON ({e}): {}", get(k).unwrap_or("")))
    };
    record.tool = get("tool")?.trim().to_string();
    record.path = get("path")?.trim().to_string();
    record.sha256 = get("sha256")?.trim().to_string();
    record.size = get("size")?
        .trim()
        .parse()
        .map_err(|_| "bad `size`".to_string())?;
    let st = json("status")?;
    record.revision = int_in(&st, &["revision"]).ok_or("no revision in the snapshot status")?;
    record.hash = int_in(&st, &["hash"]).ok_or("no hash in the snapshot status")?;
    record.total_keys = int_in(&st, &["totalKey"]).ok_or("no totalKey in the snapshot status")?;
    let count = |k: &str| -> Result<i64, String> {
        // etcd leaves `count` out when it is 0 (limit 1 does not cap it).
        let v = json(k)?;
        match v.get("count") {
            None if v.get("header").is_some() => Ok(0),
            _ => int_in(&v, &["count"]).ok_or_else(|| format!("no count in `{k}`: {v}")),
        }
    };
    let kv = |k: &str| -> Result<i64, String> {
        let v = json(k)?;
        v.get(0)
            .and_then(|e| {
                int_in(e, &["HashKV", "hash"]).or_else(|| int_in(e, &["HashKV", "hash_kv"]))
            })
            .or_else(|| int_in(&v, &["hash"]))
            .ok_or_else(|| format!("no hash in `{k}`: {v}"))
    };
    record.keys = count("keys")?;
    record.kv_hash = kv("kv_hash")?;
    let members = json("restored_members")?;
    let names: Vec<&str> = members
        .get("members")
        .and_then(|m| m.as_array())
        .map(|a| a.iter().filter_map(|m| m.get("name")?.as_str()).collect())
        .unwrap_or_default();
    if names != [TEST_MEMBER] {
        return Err(format!(
            "the etcd that answered on the restore port is not the restored one (members {names:?})"
        ));
    }
    record.restored_keys = count("restored_keys")?;
    record.restored_kv_hash = kv("restored_kv_hash")?;
    if !l.contains_key("stopped") {
        return Err("the temporary etcd was not stopped".into());
    }
    Ok(())
}

impl Step for EtcdSnapshot {
    type Output = SnapshotRecord;
    type Work = SnapshotWork;

    fn kind(&self) -> &'static str {
        "etcd_snapshot"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    fn validate(&self) -> Result<(), StepError> {
        for (field, v) in [
            ("dir", self.args.dir.as_deref()),
            ("ca_file", self.args.ca_file.as_deref()),
            ("cert_file", self.args.cert_file.as_deref()),
            ("key_file", self.args.key_file.as_deref()),
            ("manifest", self.args.manifest.as_deref()),
        ] {
            if let Some(v) = v.filter(|v| !unknown::is_unknown(v)) {
                put::check_path(field, v)?;
            }
        }
        self.port()?;
        self.wait().map(|_| ())
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<SnapshotRecord, SnapshotWork>, StepError> {
        let port = this.port()?;
        let wait = this.wait()?;
        let layout = EtcdMember {
            host: this.host.clone(),
            args: MemberArgs {
                unit: this.args.unit.clone(),
                manifest: this.args.manifest.clone(),
            },
        }
        .discover(ctx)
        .await?;
        let name = &this.host.name;
        let member = layout.settings.name.clone();
        if !layout.running {
            return Err(StepError::Verify(format!(
                "{name}: etcd member {member} is not running; a snapshot needs a running member"
            )));
        }
        let s = &layout.settings;
        let endpoint =
            local_endpoint(&s.listen_client_urls, &s.advertise_client_urls).ok_or_else(|| {
                StepError::Verify(format!("{name}: etcd member {member} has no client URL"))
            })?;
        let pick = |given: &Option<String>, found: &str, what: &str| -> Result<String, StepError> {
            match given {
                Some(g) => Ok(g.clone()),
                None if !found.is_empty() || !endpoint.starts_with("https") => Ok(found.to_string()),
                None => Err(StepError::Verify(format!(
                    "{name}: etcd member {member} serves https but has no {what} file to connect with; give {what}_file"
                ))),
            }
        };
        let vars = Vars {
            ca: pick(&this.args.ca_file, &s.client_tls.trusted_ca_file, "ca")?,
            cert: pick(&this.args.cert_file, &s.client_tls.cert_file, "cert")?,
            key: pick(&this.args.key_file, &s.client_tls.key_file, "key")?,
            endpoint,
            etcd: layout.binary.clone(),
            dir: this.dir().to_string(),
            port,
            wait,
        };
        // The folder must be root's alone: the snapshot holds every key.
        let (facts, _) = put::observe(ctx, &this.host, &format!("{}/x", this.dir()), false).await?;
        facts.check_holders(name, "dir", this.dir())?;
        let version = if layout.running_version.is_empty() {
            layout.binary_version.clone()
        } else {
            layout.running_version.clone()
        };
        let action = Action::create(name, this.what(&member)).because(format!(
            "etcd {version}, through {} with {}",
            vars.endpoint,
            if vars.cert.is_empty() {
                "no client certificate"
            } else {
                vars.cert.as_str()
            }
        ));
        let predicted = SnapshotRecord {
            host: name.clone(),
            member: member.clone(),
            version: version.clone(),
            ..placeholders(name)
        };
        Ok(Prepared::todo(
            vec![action],
            String::new(),
            predicted,
            SnapshotWork {
                member,
                version,
                script_vars: vars,
            },
        ))
    }
    fn intent(this: &Valid<Self>) -> Prepared<SnapshotRecord, SnapshotWork> {
        let name = &this.host.name;
        Prepared {
            actions: vec![Action::create(name, this.what("(the member on this host)"))],
            facts: String::new(),
            predicted: placeholders(name),
            work: None,
        }
    }
    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        work: SnapshotWork,
    ) -> Result<SnapshotRecord, StepError> {
        let taken_at = crate::clock::Timestamp::now()
            .0
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_default();
        let file_stem = format!("{taken_at}-{}", safe_name(&work.member));
        let script = script(&work.script_vars, &safe_name(&work.member), &file_stem);
        let timeout = Duration::from_secs(900 + work.script_vars.wait);
        let out = ctx
            .ssh
            .exec_with(&this.host, &script, None, Some(timeout))
            .await?;
        let what = format!(
            "etcd snapshot of member {} on {}",
            work.member, this.host.name
        );
        if out.code != 0 {
            return Err(StepError::Command {
                host: this.host.name.clone(),
                command: what,
                code: out.code,
                stderr: tail(&out.stderr, 1500),
            });
        }
        let mut record = SnapshotRecord {
            host: this.host.name.clone(),
            member: work.member.clone(),
            file: format!("{file_stem}.db"),
            taken_at,
            version: work.version.clone(),
            ..SnapshotRecord::default()
        };
        parse_output(&out.stdout, &mut record).map_err(|e| {
            StepError::Verify(format!("{what}: {e} (output: {})", tail(&out.stdout, 600)))
        })?;
        if record.keys != record.restored_keys || record.kv_hash != record.restored_kv_hash {
            return Err(StepError::Verify(format!(
                "{what}: the restore test failed: at revision {} the live member has {} keys \
                 (hashkv {}), the restored snapshot {} keys (hashkv {}); the snapshot {} is \
                 kept on the host for inspection",
                record.revision,
                record.keys,
                record.kv_hash,
                record.restored_keys,
                record.restored_kv_hash,
                record.path
            )));
        }
        record.restore_tested = true;
        Ok(record)
    }
}

/// A member name as a file name part: anything but `[A-Za-z0-9._-]` becomes `_`.
fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("member{s}")
    } else {
        s
    }
}

fn placeholders(host: &str) -> SnapshotRecord {
    let p = |what: &str| unknown::placeholder("create", &format!("{host}: etcd snapshot {what}"));
    SnapshotRecord {
        host: host.to_string(),
        member: p("member"),
        path: p("path"),
        file: p("file"),
        taken_at: p("taken_at"),
        sha256: p("sha256"),
        version: p("version"),
        tool: p("tool"),
        ..SnapshotRecord::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_client_url_is_preferred() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            local_endpoint(
                &s(&["https://10.0.0.2:2379", "https://127.0.0.1:2379"]),
                &s(&["https://10.0.0.2:2379"])
            )
            .as_deref(),
            Some("https://127.0.0.1:2379")
        );
        assert_eq!(
            local_endpoint(
                &s(&["https://0.0.0.0:2379"]),
                &s(&["https://10.0.0.2:2379"])
            )
            .as_deref(),
            Some("https://10.0.0.2:2379")
        );
        assert_eq!(local_endpoint(&[], &[]), None);
    }

    const OUT: &str = "tool etcdutl\n\
        path /var/lib/cairn/backups/x.db\n\
        sha256 abc\n\
        size 2048\n\
        status {\"hash\":1234,\"revision\":77,\"totalKey\":90,\"totalSize\":2048}\n\
        keys {\"header\":{\"revision\":80},\"kvs\":[{\"key\":\"YQ==\"}],\"more\":true,\"count\":60}\n\
        kv_hash [{\"Endpoint\":\"https://127.0.0.1:2379\",\"HashKV\":{\"header\":{},\"hash\":555,\"compact_revision\":-1}}]\n\
        restored_members {\"header\":{},\"members\":[{\"ID\":1,\"name\":\"cairn-restore-test\"}]}\n\
        restored_keys {\"header\":{\"revision\":77},\"count\":60}\n\
        restored_kv_hash [{\"Endpoint\":\"http://127.0.0.1:52379\",\"HashKV\":{\"header\":{},\"hash\":555}}]\n\
        stopped\n";

    #[test]
    fn the_hosts_answers_are_parsed() {
        let mut r = SnapshotRecord::default();
        parse_output(OUT, &mut r).unwrap();
        assert_eq!(
            (r.tool.as_str(), r.size, r.revision, r.hash, r.total_keys),
            ("etcdutl", 2048, 77, 1234, 90)
        );
        assert_eq!(
            (r.keys, r.kv_hash, r.restored_keys, r.restored_kv_hash),
            (60, 555, 60, 555)
        );
        // no keys: etcd leaves `count` out
        let empty = OUT.replace(",\"count\":60}", "}");
        parse_output(&empty, &mut r).unwrap();
        assert_eq!((r.keys, r.restored_keys), (0, 0));
    }

    #[test]
    fn another_etcd_on_the_restore_port_is_refused() {
        let out = OUT.replace("cairn-restore-test", "node-1");
        let err = parse_output(&out, &mut SnapshotRecord::default()).unwrap_err();
        assert!(err.contains("not the restored one"), "{err}");
        let out = OUT.replace("stopped\n", "");
        assert!(parse_output(&out, &mut SnapshotRecord::default()).is_err());
    }

    #[test]
    fn values_enter_the_script_quoted() {
        let v = Vars {
            endpoint: "https://127.0.0.1:2379".into(),
            ca: "/etc/etcd/ca.crt".into(),
            cert: "/etc/etcd/a b.crt".into(),
            key: "/etc/etcd/k'; reboot".into(),
            etcd: "/usr/bin/etcd".into(),
            dir: DIR.into(),
            port: 52379,
            wait: 60,
        };
        let s = script(&v, "node-1", "20261201T000000Z-node-1");
        assert!(
            s.contains("cert='/etc/etcd/a b.crt'; key='/etc/etcd/k'\\''; reboot';"),
            "{s}"
        );
        assert!(s.contains("port=52379; peer=52380;"), "{s}");
        assert_eq!(safe_name("a/b c"), "a_b_c");
        assert_eq!(safe_name(".x"), "member.x");
    }
}
