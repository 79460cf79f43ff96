//! `etcd`: checks and writes against a running cluster over its JSON gateway
//! (v3) with mutual TLS, directly or through an ssh forward to a node
//! (`via`), always verifying the server for the endpoint's own name.
//!
//! [`EtcdClient`] is the typed client. The steps are read-only verifications
//! (`etcd_health`, `etcd_members`, `etcd_status`, `etcd_get`,
//! `etcd_expect_refused`: plan line `? verify ...`) and one change,
//! `etcd_put`, which is a no-op when the key already holds the value.
//! `etcd_member(host)` ([`member`]) reads how etcd runs on a host.

pub mod audit;
mod client;
pub mod layout;
mod leader;
pub mod maintenance;
pub mod member;
pub mod membership;
pub mod query;
pub mod snapshot;
mod steps;
pub mod upgrade;

pub use client::{chain, Endpoint, EtcdClient, Identity, Member, Refusal, Status};
pub use leader::EtcdMoveLeader;
pub use member::{EtcdMember, MemberArgs, MemberLayout};
pub use steps::{
    check_members, Conn, EndpointHealth, EtcdExpectRefused, EtcdGet, EtcdHealth, EtcdHealthCheck,
    EtcdMembers, EtcdPut, EtcdStatus, PemFile, Via,
};

use crate::executor::Executor;
use crate::host::Host;
use rhai::{Array, Dynamic, EvalAltResult, FuncRegistration, Map, NativeCallContext};
use std::sync::Arc;

fn strings(v: &[String]) -> Array {
    v.iter().cloned().map(Dynamic::from).collect()
}

const CONN_DOC: &str = "/// Connection: `endpoints: [\"https://10.1.1.1:2379\", ..]`, `ca` (CA file path or `Cert`), \
`cert` (client certificate path or `Cert`; a `Cert` brings its key), `cert_key?` (key file of a `cert` path), \
`via?` (a `Host`, or one `Host` per endpoint, to reach the endpoints through an ssh forward; \
the server is still verified for the endpoint's name). Relative paths are inside the workspace.";

fn register_types(engine: &mut rhai::Engine) {
    engine
        .register_type_with_name::<EtcdHealth>("EtcdHealth")
        .register_get("healthy", |h: &mut EtcdHealth| h.healthy)
        .register_get("endpoints", |h: &mut EtcdHealth| -> Array {
            h.endpoints.iter().cloned().map(Dynamic::from).collect()
        })
        .register_fn("to_string", |h: &mut EtcdHealth| health_line(h))
        .register_fn("to_debug", |h: &mut EtcdHealth| health_line(h));
    engine
        .register_type_with_name::<EndpointHealth>("EndpointHealth")
        .register_get("endpoint", |h: &mut EndpointHealth| h.endpoint.clone())
        .register_get("healthy", |h: &mut EndpointHealth| h.healthy)
        .register_get("error", |h: &mut EndpointHealth| h.error.clone())
        .register_fn("to_string", |h: &mut EndpointHealth| {
            format!(
                "{}: {}",
                h.endpoint,
                if h.healthy { "healthy" } else { &h.error }
            )
        });
    engine
        .register_type_with_name::<Member>("EtcdMember")
        .register_get("id", |m: &mut Member| m.id.clone())
        .register_get("name", |m: &mut Member| m.name.clone())
        .register_get("peer_urls", |m: &mut Member| strings(&m.peer_urls))
        .register_get("client_urls", |m: &mut Member| strings(&m.client_urls))
        .register_get("started", |m: &mut Member| m.started)
        .register_get("is_learner", |m: &mut Member| m.is_learner)
        .register_fn("to_string", |m: &mut Member| member_line(m))
        .register_fn("to_debug", |m: &mut Member| member_line(m));
    engine
        .register_type_with_name::<Status>("EtcdStatus")
        .register_get("endpoint", |s: &mut Status| s.endpoint.clone())
        .register_get("member_id", |s: &mut Status| s.member_id.clone())
        .register_get("leader", |s: &mut Status| s.leader.clone())
        .register_get("is_leader", |s: &mut Status| s.is_leader)
        .register_get("raft_term", |s: &mut Status| s.raft_term as i64)
        .register_get("raft_index", |s: &mut Status| s.raft_index as i64)
        .register_get("version", |s: &mut Status| s.version.clone())
        .register_get("db_size", |s: &mut Status| s.db_size as i64)
        .register_get("cluster_id", |s: &mut Status| s.cluster_id.clone())
        .register_fn("to_string", |s: &mut Status| status_line(s))
        .register_fn("to_debug", |s: &mut Status| status_line(s));
    engine
        .register_type_with_name::<Refusal>("EtcdRefusal")
        .register_get("endpoint", |r: &mut Refusal| r.endpoint.clone())
        .register_get("how", |r: &mut Refusal| r.how.clone())
        .register_fn("to_string", |r: &mut Refusal| {
            format!("{} refused: {}", r.endpoint, r.how)
        });
}

fn health_line(h: &EtcdHealth) -> String {
    let eps: Vec<String> = h
        .endpoints
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e.endpoint,
                if e.healthy { "healthy" } else { "unhealthy" }
            )
        })
        .collect();
    format!("EtcdHealth({})", eps.join(", "))
}

fn member_line(m: &Member) -> String {
    format!(
        "EtcdMember({} {}, peers {}, clients {}{})",
        m.id,
        if m.started {
            m.name.as_str()
        } else {
            "(unstarted)"
        },
        m.peer_urls.join(","),
        m.client_urls.join(","),
        if m.is_learner { ", learner" } else { "" }
    )
}

fn status_line(s: &Status) -> String {
    format!(
        "EtcdStatus({}: member {}, leader {}{}, term {}, version {}, db {} bytes)",
        s.endpoint,
        s.member_id,
        s.leader,
        if s.is_leader { " (this one)" } else { "" },
        s.raft_term,
        s.version,
        s.db_size
    )
}

/// Register the etcd steps and their result types.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    register_types(engine);
    register_member(engine, exec);
    register_audit(engine, exec);
    register_snapshot(engine, exec);
    register_move_leader(engine, exec);
    // maintenance (defrag, compact, alarms) and the read-only cluster query
    maintenance::register(engine, exec);
    query::register(engine, exec);
    membership::register(engine, exec);
    register_upgrade(engine, exec);

    let x = exec.clone();
    FuncRegistration::new("etcd_health")
        .with_params_info(["args: Map", "EtcdHealth"])
        .with_comments([
            "/// Verify that every endpoint answers `/health` with `true`, asking again for up to",
            "/// `wait_seconds` (default 30); fails naming each unhealthy member and why.",
            "///",
            "/// `#{endpoints, ca, cert?, cert_key?, via?, wait_seconds?}`",
            CONN_DOC,
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<EtcdHealth, Box<EvalAltResult>> {
                let step: EtcdHealthCheck = crate::args::parse("etcd_health", args)?;
                x.exec(&call, step)
            },
        );

    let x = exec.clone();
    FuncRegistration::new("etcd_members")
        .with_params_info(["args: Map", "Array"])
        .with_comments([
            "/// The cluster's members (`EtcdMember`: id (hex), name, peer_urls, client_urls, started,",
            "/// is_learner). With `expect: [names]` it verifies that the cluster is exactly those",
            "/// members, all started, asking again for up to `wait_seconds` (default 0).",
            "///",
            "/// `#{endpoints, ca, cert?, cert_key?, via?, expect?, wait_seconds?}`",
            CONN_DOC,
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<Array, Box<EvalAltResult>> {
                let step: EtcdMembers = crate::args::parse("etcd_members", args)?;
                Ok(x.exec(&call, step)?.into_iter().map(Dynamic::from).collect())
            },
        );

    let x = exec.clone();
    FuncRegistration::new("etcd_status")
        .with_params_info(["args: Map", "Array"])
        .with_comments([
            "/// `maintenance/status` of every endpoint (`EtcdStatus`: endpoint, member_id, leader,",
            "/// is_leader, raft_term, raft_index, version, db_size, cluster_id); fails naming an",
            "/// endpoint that does not answer.",
            "///",
            "/// `#{endpoints, ca, cert?, cert_key?, via?}`",
            CONN_DOC,
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<Array, Box<EvalAltResult>> {
                let step: EtcdStatus = crate::args::parse("etcd_status", args)?;
                Ok(x.exec(&call, step)?.into_iter().map(Dynamic::from).collect())
            },
        );

    let x = exec.clone();
    FuncRegistration::new("etcd_put")
        .with_params_info(["args: Map", "bool"])
        .with_comments([
            "/// Write `value` to the etcd `key`; a no-op when the key already holds it (the plan",
            "/// shows a diff of the old and new value). Returns whether it wrote.",
            "///",
            "/// `#{endpoints, ca, cert?, cert_key?, via?, key, value}`",
            CONN_DOC,
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<bool, Box<EvalAltResult>> {
                let step: EtcdPut = crate::args::parse("etcd_put", args)?;
                x.exec(&call, step)
            },
        );

    let x = exec.clone();
    FuncRegistration::new("etcd_get")
        .with_params_info(["args: Map", "Dynamic"])
        .with_comments([
            "/// The value of the etcd `key` as a string, or `()` if there is none.",
            "///",
            "/// `#{endpoints, ca, cert?, cert_key?, via?, key}`",
            CONN_DOC,
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<Dynamic, Box<EvalAltResult>> {
                let step: EtcdGet = crate::args::parse("etcd_get", args)?;
                Ok(x.exec(&call, step)?
                    .map(Dynamic::from)
                    .unwrap_or(Dynamic::UNIT))
            },
        );

    let x = exec.clone();
    FuncRegistration::new("etcd_expect_refused")
        .with_params_info(["args: Map", "EtcdRefusal"])
        .with_comments([
            "/// Verify that `endpoint` refuses a client without a certificate (no `cert`) or with",
            "/// the given `cert` (e.g. one from another CA): a TLS alert from the server or HTTP",
            "/// 401/403. Fails if the request is accepted, or if the refusal cannot be told apart",
            "/// from the server being unreachable.",
            "///",
            "/// `#{endpoint, ca, cert?, cert_key?, via?: Host}`",
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<Refusal, Box<EvalAltResult>> {
                let step: EtcdExpectRefused = crate::args::parse("etcd_expect_refused", args)?;
                x.exec(&call, step)
            },
        );
}

fn register_member(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    type L = MemberLayout;
    engine
        .register_type_with_name::<L>("EtcdMemberLayout")
        .register_get("host", |m: &mut L| m.host.clone())
        .register_get("started_by", |m: &mut L| m.started_by.clone())
        .register_get("unit", |m: &mut L| m.unit.clone())
        .register_get("unit_files", |m: &mut L| strings(&m.unit_files))
        .register_get("exec_start", |m: &mut L| strings(&m.exec_start))
        .register_get("environment_files", |m: &mut L| {
            strings(&m.environment_files)
        })
        .register_get("config_file", |m: &mut L| m.config_file.clone())
        .register_get("manifest", |m: &mut L| m.manifest.clone())
        .register_get("image", |m: &mut L| m.image.clone())
        .register_get("user", |m: &mut L| m.user.clone())
        .register_get("name", |m: &mut L| m.settings.name.clone())
        .register_get("data_dir", |m: &mut L| m.settings.data_dir.clone())
        .register_get("wal_dir", |m: &mut L| m.settings.wal_dir.clone())
        .register_get("listen_client_urls", |m: &mut L| {
            strings(&m.settings.listen_client_urls)
        })
        .register_get("advertise_client_urls", |m: &mut L| {
            strings(&m.settings.advertise_client_urls)
        })
        .register_get("listen_peer_urls", |m: &mut L| {
            strings(&m.settings.listen_peer_urls)
        })
        .register_get("advertise_peer_urls", |m: &mut L| {
            strings(&m.settings.advertise_peer_urls)
        })
        .register_get("cert_file", |m: &mut L| {
            m.settings.client_tls.cert_file.clone()
        })
        .register_get("key_file", |m: &mut L| {
            m.settings.client_tls.key_file.clone()
        })
        .register_get("trusted_ca_file", |m: &mut L| {
            m.settings.client_tls.trusted_ca_file.clone()
        })
        .register_get("client_cert_auth", |m: &mut L| {
            m.settings.client_tls.client_cert_auth
        })
        .register_get("peer_cert_file", |m: &mut L| {
            m.settings.peer_tls.cert_file.clone()
        })
        .register_get("peer_key_file", |m: &mut L| {
            m.settings.peer_tls.key_file.clone()
        })
        .register_get("peer_trusted_ca_file", |m: &mut L| {
            m.settings.peer_tls.trusted_ca_file.clone()
        })
        .register_get("peer_client_cert_auth", |m: &mut L| {
            m.settings.peer_tls.client_cert_auth
        })
        .register_get("binary", |m: &mut L| m.binary.clone())
        .register_get("binary_version", |m: &mut L| m.binary_version.clone())
        .register_get("running", |m: &mut L| m.running)
        .register_get("pid", |m: &mut L| m.pid)
        .register_get("running_version", |m: &mut L| m.running_version.clone())
        .register_get("running_version_from", |m: &mut L| {
            m.running_version_from.clone()
        })
        .register_get("origins", |m: &mut L| -> Map {
            m.settings
                .origins
                .iter()
                .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
                .collect()
        })
        .register_fn("to_string", |m: &mut L| layout_line(m))
        .register_fn("to_debug", |m: &mut L| layout_line(m));
    FuncRegistration::new("to_map")
        .with_params_info(["layout: EtcdMemberLayout", "Map"])
        .with_comments([
            "/// The whole member layout as a map (every field, and `origins`: where each",
            "/// value came from), e.g. to compare or print it.",
        ])
        .register_into_engine(engine, |m: &mut L| -> Dynamic {
            rhai::serde::to_dynamic(&*m).unwrap_or(Dynamic::UNIT)
        });
    FuncRegistration::new("to_json")
        .with_params_info(["layout: EtcdMemberLayout", "String"])
        .with_comments(["/// The whole member layout as one line of JSON."])
        .register_into_engine(engine, |m: &mut L| -> String {
            serde_json::to_string(&*m).unwrap_or_default()
        });

    let x = exec.clone();
    FuncRegistration::new("etcd_member")
        .with_params_info(["host: Host", "EtcdMemberLayout"])
        .with_comments([member::DOC])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, host: Host| -> Result<L, Box<EvalAltResult>> {
                x.exec(
                    &call,
                    EtcdMember {
                        host,
                        args: MemberArgs::default(),
                    },
                )
            },
        );
    let x = exec.clone();
    FuncRegistration::new("etcd_member")
        .with_params_info(["host: Host", "options: Map", "EtcdMemberLayout"])
        .with_comments([member::DOC])
        .register_into_engine(
            engine,
            move |call: NativeCallContext,
                  host: Host,
                  options: Map|
                  -> Result<L, Box<EvalAltResult>> {
                let args: MemberArgs = crate::args::parse("etcd_member", options)?;
                x.exec(&call, EtcdMember { host, args })
            },
        );
}

fn layout_line(m: &MemberLayout) -> String {
    let how = match m.started_by.as_str() {
        "systemd" => format!("unit {}", m.unit),
        _ => format!("manifest {}", m.manifest),
    };
    format!(
        "EtcdMemberLayout({} on {}: {how}, data {}, {}{})",
        m.settings.name,
        m.host,
        m.settings.data_dir,
        if m.running { "running " } else { "not running" },
        m.running_version
    )
}

fn register_audit(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    use audit::{AuditArgs, CertRow, EtcdCertAudit};
    type R = CertRow;
    engine
        .register_type_with_name::<R>("EtcdCertRow")
        .register_get("host", |r: &mut R| r.host.clone())
        .register_get("member", |r: &mut R| r.member.clone())
        .register_get("cert", |r: &mut R| r.cert.clone())
        .register_get("origin", |r: &mut R| r.origin.clone())
        .register_get("source", |r: &mut R| r.source.clone())
        .register_get("subject", |r: &mut R| r.subject.clone())
        .register_get("sans", |r: &mut R| strings(&r.sans))
        .register_get("issuer", |r: &mut R| r.issuer.clone())
        .register_get("serial", |r: &mut R| r.serial.clone())
        .register_get("not_after", |r: &mut R| r.not_after.clone())
        .register_get("days_left", |r: &mut R| r.days_left)
        .register_get("covers", |r: &mut R| r.covers.clone())
        .register_get("key", |r: &mut R| r.key.clone())
        .register_get("chain", |r: &mut R| r.chain.clone())
        .register_get("differs", |r: &mut R| r.differs)
        .register_fn("to_string", |r: &mut R| row_line(r))
        .register_fn("to_debug", |r: &mut R| row_line(r));
    FuncRegistration::new("to_map")
        .with_params_info(["row: EtcdCertRow", "Map"])
        .with_comments(["/// The audit row as a map (the fields above), e.g. for JSON output."])
        .register_into_engine(engine, |r: &mut R| -> Dynamic {
            rhai::serde::to_dynamic(&*r).unwrap_or(Dynamic::UNIT)
        });

    let x = exec.clone();
    FuncRegistration::new("etcd_cert_audit")
        .with_params_info(["host: Host", "Array"])
        .with_comments([audit::DOC])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, host: Host| -> Result<Array, Box<EvalAltResult>> {
                let rows = x.exec(
                    &call,
                    EtcdCertAudit {
                        host,
                        args: AuditArgs::default(),
                    },
                )?;
                Ok(rows.into_iter().map(Dynamic::from).collect())
            },
        );
    let x = exec.clone();
    FuncRegistration::new("etcd_cert_audit")
        .with_params_info(["host: Host", "options: Map", "Array"])
        .with_comments([audit::DOC])
        .register_into_engine(
            engine,
            move |call: NativeCallContext,
                  host: Host,
                  options: Map|
                  -> Result<Array, Box<EvalAltResult>> {
                let args: AuditArgs = crate::args::parse("etcd_cert_audit", options)?;
                let rows = x.exec(&call, EtcdCertAudit { host, args })?;
                Ok(rows.into_iter().map(Dynamic::from).collect())
            },
        );
    FuncRegistration::new("cert_audit_table")
        .with_params_info(["rows: Array", "warn_days: i64", "fail_days: i64", "String"])
        .with_comments([
            "/// `EtcdCertRow`s (from `etcd_cert_audit`) as an aligned table, one line per",
            "/// certificate, with a STATUS column: `FAIL` below `fail_days` days left, `WARN`",
            "/// below `warn_days`, else `ok`.",
        ])
        .register_into_engine(engine, |rows: Array, warn_days: i64, fail_days: i64| {
            audit::table(&cert_rows(rows), warn_days, fail_days)
        });
    FuncRegistration::new("cert_audit_json")
        .with_params_info(["rows: Array", "String"])
        .with_comments([
            "/// `EtcdCertRow`s as one line of JSON (an array of objects with the getters' names).",
        ])
        .register_into_engine(engine, |rows: Array| {
            serde_json::to_string(&cert_rows(rows)).unwrap_or_default()
        });
}

fn cert_rows(rows: Array) -> Vec<audit::CertRow> {
    rows.into_iter()
        .filter_map(|r| r.try_cast::<audit::CertRow>())
        .collect()
}

fn row_line(r: &audit::CertRow) -> String {
    format!(
        "EtcdCertRow({} {} {} {}: {}, {} days left)",
        r.host, r.cert, r.origin, r.source, r.subject, r.days_left
    )
}

// ---- etcd-upgrade: version checks (upgrade.rs) -----------------------------
fn register_upgrade(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    use upgrade::{EndpointVersion, EtcdCaughtUp, EtcdVersion};
    engine
        .register_type_with_name::<EndpointVersion>("EtcdEndpointVersion")
        .register_get("endpoint", |v: &mut EndpointVersion| v.endpoint.clone())
        .register_get("server", |v: &mut EndpointVersion| v.server.clone())
        .register_get("cluster", |v: &mut EndpointVersion| v.cluster.clone())
        .register_fn("to_string", |v: &mut EndpointVersion| {
            format!("{}: server {}, cluster {}", v.endpoint, v.server, v.cluster)
        });

    let x = exec.clone();
    FuncRegistration::new("etcd_version")
        .with_params_info(["args: Map", "Array"])
        .with_comments([
            "/// Every endpoint's `/version` (`EtcdEndpointVersion`: endpoint, server, cluster).",
            "/// With `expect_server: \"3.5.30\"` every member must run that version; with",
            "/// `expect_cluster: \"3.5\"` every member must report that cluster version (the",
            "/// lowest minor version of all members). Asks again for up to `wait_seconds`",
            "/// (default 0); fails naming each endpoint that differs.",
            "///",
            "/// `#{endpoints, ca, cert?, cert_key?, via?, expect_server?, expect_cluster?, wait_seconds?}`",
            CONN_DOC,
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<Array, Box<EvalAltResult>> {
                let step: EtcdVersion = crate::args::parse("etcd_version", args)?;
                Ok(x.exec(&call, step)?.into_iter().map(Dynamic::from).collect())
            },
        );

    let x = exec.clone();
    FuncRegistration::new("etcd_caught_up")
        .with_params_info(["args: Map", "Array"])
        .with_comments([
            "/// Wait until the cluster is caught up: every endpoint answers `maintenance/status`,",
            "/// all follow one leader, and every raft index is within `max_lag` (default 50) of",
            "/// the highest. Asks again for up to `wait_seconds` (default 60), then fails naming",
            "/// the members that do not answer or lag. Returns the `EtcdStatus` of each endpoint.",
            "///",
            "/// `#{endpoints, ca, cert?, cert_key?, via?, max_lag?, wait_seconds?}`",
            CONN_DOC,
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<Array, Box<EvalAltResult>> {
                let step: EtcdCaughtUp = crate::args::parse("etcd_caught_up", args)?;
                Ok(x.exec(&call, step)?
                    .into_iter()
                    .map(Dynamic::from)
                    .collect())
            },
        );

    FuncRegistration::new("etcd_upgrade_path")
        .with_params_info(["from: &str", "to: &str", "allow_downgrade: bool", "String"])
        .with_comments([upgrade::PATH_DOC])
        .register_into_engine(
            engine,
            |from: &str, to: &str, allow_downgrade: bool| -> Result<String, Box<EvalAltResult>> {
                upgrade::upgrade_path(from, to, allow_downgrade)
                    .map_err(crate::executor::script_error)
            },
        );

    FuncRegistration::new("etcd_removed_settings")
        .with_params_info(["settings: Array", "target: &str", "Array"])
        .with_comments([upgrade::REMOVED_DOC])
        .register_into_engine(
            engine,
            |settings: Array, target: &str| -> Result<Array, Box<EvalAltResult>> {
                let settings: Vec<String> = settings.into_iter().map(|s| s.to_string()).collect();
                upgrade::removed_settings(&settings, target)
                    .map(|v| v.into_iter().map(Dynamic::from).collect())
                    .map_err(crate::executor::script_error)
            },
        );
}
// ---- etcd_snapshot: a restore-tested snapshot (see snapshot.rs) ----------
fn register_snapshot(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    use snapshot::{EtcdSnapshot, SnapshotArgs, SnapshotRecord as R};
    engine
        .register_type_with_name::<R>("EtcdSnapshot")
        .register_get("host", |r: &mut R| r.host.clone())
        .register_get("member", |r: &mut R| r.member.clone())
        .register_get("path", |r: &mut R| r.path.clone())
        .register_get("file", |r: &mut R| r.file.clone())
        .register_get("taken_at", |r: &mut R| r.taken_at.clone())
        .register_get("sha256", |r: &mut R| r.sha256.clone())
        .register_get("size", |r: &mut R| r.size)
        .register_get("revision", |r: &mut R| r.revision)
        .register_get("hash", |r: &mut R| r.hash)
        .register_get("total_keys", |r: &mut R| r.total_keys)
        .register_get("keys", |r: &mut R| r.keys)
        .register_get("kv_hash", |r: &mut R| r.kv_hash)
        .register_get("restored_keys", |r: &mut R| r.restored_keys)
        .register_get("restored_kv_hash", |r: &mut R| r.restored_kv_hash)
        .register_get("restore_tested", |r: &mut R| r.restore_tested)
        .register_get("version", |r: &mut R| r.version.clone())
        .register_get("tool", |r: &mut R| r.tool.clone())
        .register_fn("to_string", |r: &mut R| snapshot_line(r))
        .register_fn("to_debug", |r: &mut R| snapshot_line(r));
    FuncRegistration::new("to_map")
        .with_params_info(["snapshot: EtcdSnapshot", "Map"])
        .with_comments(["/// The snapshot's record as a map (the getters above)."])
        .register_into_engine(engine, |r: &mut R| -> Dynamic {
            rhai::serde::to_dynamic(&*r).unwrap_or(Dynamic::UNIT)
        });
    FuncRegistration::new("to_json")
        .with_params_info(["snapshot: EtcdSnapshot", "String"])
        .with_comments([
            "/// The snapshot's record as pretty JSON (what etcd-backup keeps next to the file).",
        ])
        .register_into_engine(engine, |r: &mut R| -> String {
            serde_json::to_string_pretty(&*r).unwrap_or_default()
        });
    let x = exec.clone();
    FuncRegistration::new("etcd_snapshot")
        .with_params_info(["host: Host", "EtcdSnapshot"])
        .with_comments([snapshot::DOC])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, host: Host| -> Result<R, Box<EvalAltResult>> {
                let args = SnapshotArgs::default();
                x.exec(&call, EtcdSnapshot { host, args })
            },
        );
    let x = exec.clone();
    FuncRegistration::new("etcd_snapshot")
        .with_params_info(["host: Host", "options: Map", "EtcdSnapshot"])
        .with_comments([snapshot::DOC])
        .register_into_engine(
            engine,
            move |call: NativeCallContext,
                  host: Host,
                  options: Map|
                  -> Result<R, Box<EvalAltResult>> {
                let args: SnapshotArgs = crate::args::parse("etcd_snapshot", options)?;
                x.exec(&call, EtcdSnapshot { host, args })
            },
        );
}

fn snapshot_line(r: &snapshot::SnapshotRecord) -> String {
    format!(
        "EtcdSnapshot({} of {} on {}: revision {}, {} keys, {} bytes, {})",
        r.file,
        r.member,
        r.host,
        r.revision,
        r.keys,
        r.size,
        if r.restore_tested {
            "restore-tested"
        } else {
            "NOT restore-tested"
        }
    )
}

fn register_move_leader(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    let x = exec.clone();
    FuncRegistration::new("etcd_move_leader")
        .with_params_info(["args: Map", "String"])
        .with_comments([
            "/// Hand raft leadership to the member `to` (its name or hex ID) before work that",
            "/// would take the leader down. Reads who leads first: a no-op (`= ok`) when `to`",
            "/// already leads. The transfer is asked of the current leader, so the leader's client",
            "/// URL must be among `endpoints`; then it waits (up to 30 s) until the endpoints",
            "/// report the new leader. Returns the new leader's name. In a plan the line says who",
            "/// leads now (or that it is unknown when the cluster cannot be asked).",
            "///",
            "/// `#{endpoints, ca, cert?, cert_key?, via?, to}`",
            "///",
            "/// ```rhai",
            "/// etcd_move_leader(tls + #{ endpoints: eps, to: \"node-1\" });",
            "/// ```",
            CONN_DOC,
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<String, Box<EvalAltResult>> {
                let step: EtcdMoveLeader = crate::args::parse("etcd_move_leader", args)?;
                x.exec(&call, step)
            },
        );
}
