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
use rhai::{Array, Dynamic, EvalAltResult, Map, NativeCallContext};
use std::sync::Arc;

fn strings(v: &[String]) -> Array {
    v.iter().cloned().map(Dynamic::from).collect()
}

crate::registration::documented! {
    /// Connection: `endpoints: ["https://10.1.1.1:2379", ..]`, `ca` (CA file path or `Cert`), `cert` (client certificate path or `Cert`; a `Cert` brings its key), `cert_key?` (key file of a `cert` path), `via?` (a `Host`, or one `Host` per endpoint, to reach the endpoints through an ssh forward; the server is still verified for the endpoint's name). Relative paths are inside the workspace.
    const CONN_DOC;
}

fn register_types(engine: &mut rhai::Engine) {
    engine
        .build_type::<EtcdHealth>()
        .register_get("endpoints", |h: &mut EtcdHealth| -> Array {
            h.endpoints.iter().cloned().map(Dynamic::from).collect()
        })
        .register_fn("to_string", |h: &mut EtcdHealth| health_line(h))
        .register_fn("to_debug", |h: &mut EtcdHealth| health_line(h));
    engine
        .build_type::<EndpointHealth>()
        .register_fn("to_string", |h: &mut EndpointHealth| {
            format!(
                "{}: {}",
                h.endpoint,
                if h.healthy { "healthy" } else { &h.error }
            )
        });
    engine
        .build_type::<Member>()
        .register_get("peer_urls", |m: &mut Member| strings(&m.peer_urls))
        .register_get("client_urls", |m: &mut Member| strings(&m.client_urls))
        .register_fn("to_string", |m: &mut Member| member_line(m))
        .register_fn("to_debug", |m: &mut Member| member_line(m));
    engine
        .build_type::<Status>()
        .register_get("raft_term", |s: &mut Status| s.raft_term as i64)
        .register_get("raft_index", |s: &mut Status| s.raft_index as i64)
        .register_get("db_size", |s: &mut Status| s.db_size as i64)
        .register_fn("to_string", |s: &mut Status| status_line(s))
        .register_fn("to_debug", |s: &mut Status| status_line(s));
    engine
        .build_type::<Refusal>()
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

    crate::registration::function!(
        engine,
        /// Verify that every endpoint answers `/health` with `true`, asking again for up to
        /// `wait_seconds` (default 30); fails naming each unhealthy member and why.
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, wait_seconds?}`
        fn "etcd_health"("args: Map") -> "EtcdHealth" + CONN_DOC =
        crate::registration::map_step::<EtcdHealthCheck>(exec, "etcd_health")
    );

    crate::registration::function!(
        engine,
        /// The cluster's members (`EtcdMember`: id (hex), name, peer_urls, client_urls, started,
        /// is_learner). With `expect: [names]` it verifies that the cluster is exactly those
        /// members, all started, asking again for up to `wait_seconds` (default 0).
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, expect?, wait_seconds?}`
        fn "etcd_members"("args: Map") -> "Array" + CONN_DOC =
        crate::registration::map_step_then::<EtcdMembers, _>(
            exec,
            "etcd_members",
            crate::registration::array,
        )
    );

    crate::registration::function!(
        engine,
        /// `maintenance/status` of every endpoint (`EtcdStatus`: endpoint, member_id, leader,
        /// is_leader, raft_term, raft_index, version, db_size, cluster_id); fails naming an
        /// endpoint that does not answer.
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?}`
        fn "etcd_status"("args: Map") -> "Array" + CONN_DOC =
        crate::registration::map_step_then::<EtcdStatus, _>(
            exec,
            "etcd_status",
            crate::registration::array,
        )
    );

    crate::registration::function!(
        engine,
        /// Write `value` to the etcd `key`; a no-op when the key already holds it (the plan
        /// shows a diff of the old and new value). Returns whether it wrote.
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, key, value}`
        fn "etcd_put"("args: Map") -> "bool" + CONN_DOC =
        crate::registration::map_step::<EtcdPut>(exec, "etcd_put")
    );

    crate::registration::function!(
        engine,
        /// The value of the etcd `key` as a string, or `()` if there is none.
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, key}`
        fn "etcd_get"("args: Map") -> "Dynamic" + CONN_DOC =
        crate::registration::map_step_then::<EtcdGet, _>(
            exec,
            "etcd_get",
            crate::registration::or_unit,
        )
    );

    crate::registration::function!(
        engine,
        /// Verify that `endpoint` refuses a client without a certificate (no `cert`) or with
        /// the given `cert` (e.g. one from another CA): a TLS alert from the server or HTTP
        /// 401/403. Fails if the request is accepted, or if the refusal cannot be told apart
        /// from the server being unreachable.
        ///
        /// `#{endpoint, ca, cert?, cert_key?, via?: Host}`
        fn "etcd_expect_refused"("args: Map") -> "EtcdRefusal" =
        crate::registration::map_step::<EtcdExpectRefused>(exec, "etcd_expect_refused")
    );
}

fn register_member(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    type L = MemberLayout;
    engine
        .build_type::<L>()
        .register_get("unit_files", |m: &mut L| strings(&m.unit_files))
        .register_get("exec_start", |m: &mut L| strings(&m.exec_start))
        .register_get("environment_files", |m: &mut L| {
            strings(&m.environment_files)
        })
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
        .register_get("origins", |m: &mut L| -> Map {
            m.settings
                .origins
                .iter()
                .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
                .collect()
        })
        .register_fn("to_string", |m: &mut L| layout_line(m))
        .register_fn("to_debug", |m: &mut L| layout_line(m));
    crate::registration::function!(
        engine,
        /// The whole member layout as a map (every field, and `origins`: where each
        /// value came from), e.g. to compare or print it.
        fn "to_map"("layout: EtcdMemberLayout") -> "Map" =
        |m: &mut L| -> Dynamic { rhai::serde::to_dynamic(&*m).unwrap_or(Dynamic::UNIT) }
    );
    crate::registration::function!(
        engine,
        /// The whole member layout as one line of JSON.
        fn "to_json"("layout: EtcdMemberLayout") -> "String" =
        |m: &mut L| -> String { serde_json::to_string(&*m).unwrap_or_default() }
    );

    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "etcd_member"("host: Host") -> "EtcdMemberLayout" as member::DOC =
        move |call: NativeCallContext, host: Host| -> Result<L, Box<EvalAltResult>> {
            x.exec(
                &call,
                EtcdMember {
                    host,
                    args: MemberArgs::default(),
                },
            )
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "etcd_member"("host: Host", "options: Map") -> "EtcdMemberLayout" as member::DOC =
        move |call: NativeCallContext, host: Host, options: Map| -> Result<L, Box<EvalAltResult>> {
            let args: MemberArgs = crate::args::parse(&call, "etcd_member", options)?;
            x.exec(&call, EtcdMember { host, args })
        }
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
        .build_type::<R>()
        .register_get("sans", |r: &mut R| strings(&r.sans))
        .register_fn("to_string", |r: &mut R| row_line(r))
        .register_fn("to_debug", |r: &mut R| row_line(r));
    crate::registration::function!(
        engine,
        /// The audit row as a map (the fields above), e.g. for JSON output.
        fn "to_map"("row: EtcdCertRow") -> "Map" =
        |r: &mut R| -> Dynamic { rhai::serde::to_dynamic(&*r).unwrap_or(Dynamic::UNIT) }
    );

    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "etcd_cert_audit"("host: Host") -> "Array" as audit::DOC =
        move |call: NativeCallContext, host: Host| -> Result<Array, Box<EvalAltResult>> {
            let rows = x.exec(
                &call,
                EtcdCertAudit {
                    host,
                    args: AuditArgs::default(),
                },
            )?;
            Ok(rows.into_iter().map(Dynamic::from).collect())
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "etcd_cert_audit"("host: Host", "options: Map") -> "Array" as audit::DOC =
        move |call: NativeCallContext,
              host: Host,
              options: Map|
              -> Result<Array, Box<EvalAltResult>> {
            let args: AuditArgs = crate::args::parse(&call, "etcd_cert_audit", options)?;
            let rows = x.exec(&call, EtcdCertAudit { host, args })?;
            Ok(rows.into_iter().map(Dynamic::from).collect())
        }
    );
    crate::registration::function!(
        engine,
        /// `EtcdCertRow`s (from `etcd_cert_audit`) as an aligned table, one line per
        /// certificate, with a STATUS column: `FAIL` below `fail_days` days left, `WARN`
        /// below `warn_days`, else `ok`.
        fn "cert_audit_table"("rows: Array", "warn_days: i64", "fail_days: i64") -> "String" =
        |rows: Array, warn_days: i64, fail_days: i64| {
            audit::table(&cert_rows(rows), warn_days, fail_days)
        }
    );
    crate::registration::function!(
        engine,
        /// `EtcdCertRow`s as one line of JSON (an array of objects with the getters' names).
        fn "cert_audit_json"("rows: Array") -> "String" =
        |rows: Array| serde_json::to_string(&cert_rows(rows)).unwrap_or_default()
    );
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
        .build_type::<EndpointVersion>()
        .register_fn("to_string", |v: &mut EndpointVersion| {
            format!("{}: server {}, cluster {}", v.endpoint, v.server, v.cluster)
        });

    crate::registration::function!(
        engine,
        /// Every endpoint's `/version` (`EtcdEndpointVersion`: endpoint, server, cluster).
        /// With `expect_server: "3.5.30"` every member must run that version; with
        /// `expect_cluster: "3.5"` every member must report that cluster version (the
        /// lowest minor version of all members). Asks again for up to `wait_seconds`
        /// (default 0); fails naming each endpoint that differs.
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, expect_server?, expect_cluster?, wait_seconds?}`
        fn "etcd_version"("args: Map") -> "Array" + CONN_DOC =
        crate::registration::map_step_then::<EtcdVersion, _>(
            exec,
            "etcd_version",
            crate::registration::array,
        )
    );

    crate::registration::function!(
        engine,
        /// Wait until the cluster is caught up: every endpoint answers `maintenance/status`,
        /// all follow one leader, and every raft index is within `max_lag` (default 50) of
        /// the highest. Asks again for up to `wait_seconds` (default 60), then fails naming
        /// the members that do not answer or lag. Returns the `EtcdStatus` of each endpoint.
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, max_lag?, wait_seconds?}`
        fn "etcd_caught_up"("args: Map") -> "Array" + CONN_DOC =
        crate::registration::map_step_then::<EtcdCaughtUp, _>(
            exec,
            "etcd_caught_up",
            crate::registration::array,
        )
    );

    crate::registration::function!(
        engine,
        fn "etcd_upgrade_path"("from: &str", "to: &str", "allow_downgrade: bool") -> "String"
            as upgrade::PATH_DOC =
        |from: &str, to: &str, allow_downgrade: bool| -> Result<String, Box<EvalAltResult>> {
            upgrade::upgrade_path(from, to, allow_downgrade).map_err(crate::executor::script_error)
        }
    );

    crate::registration::function!(
        engine,
        fn "etcd_removed_settings"("settings: Array", "target: &str") -> "Array"
            as upgrade::REMOVED_DOC =
        |settings: Array, target: &str| -> Result<Array, Box<EvalAltResult>> {
            let settings: Vec<String> = settings.into_iter().map(|s| s.to_string()).collect();
            upgrade::removed_settings(&settings, target)
                .map(|v| v.into_iter().map(Dynamic::from).collect())
                .map_err(crate::executor::script_error)
        }
    );
}
// ---- etcd_snapshot: a restore-tested snapshot (see snapshot.rs) ----------
fn register_snapshot(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    use snapshot::{EtcdSnapshot, SnapshotArgs, SnapshotRecord as R};
    engine
        .build_type::<R>()
        .register_fn("to_string", |r: &mut R| snapshot_line(r))
        .register_fn("to_debug", |r: &mut R| snapshot_line(r));
    crate::registration::function!(
        engine,
        /// The snapshot's record as a map (the getters above).
        fn "to_map"("snapshot: EtcdSnapshot") -> "Map" =
        |r: &mut R| -> Dynamic { rhai::serde::to_dynamic(&*r).unwrap_or(Dynamic::UNIT) }
    );
    crate::registration::function!(
        engine,
        /// The snapshot's record as pretty JSON (what etcd-backup keeps next to the file).
        fn "to_json"("snapshot: EtcdSnapshot") -> "String" =
        |r: &mut R| -> String { serde_json::to_string_pretty(&*r).unwrap_or_default() }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "etcd_snapshot"("host: Host") -> "EtcdSnapshot" as snapshot::DOC =
        move |call: NativeCallContext, host: Host| -> Result<R, Box<EvalAltResult>> {
            let args = SnapshotArgs::default();
            x.exec(&call, EtcdSnapshot { host, args })
        }
    );
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "etcd_snapshot"("host: Host", "options: Map") -> "EtcdSnapshot" as snapshot::DOC =
        move |call: NativeCallContext, host: Host, options: Map| -> Result<R, Box<EvalAltResult>> {
            let args: SnapshotArgs = crate::args::parse(&call, "etcd_snapshot", options)?;
            x.exec(&call, EtcdSnapshot { host, args })
        }
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
    crate::registration::function!(
        engine,
        /// Hand raft leadership to the member `to` (its name or hex ID) before work that
        /// would take the leader down. Reads who leads first: a no-op (`= ok`) when `to`
        /// already leads. The transfer is asked of the current leader, so the leader's client
        /// URL must be among `endpoints`; then it waits (up to 30 s) until the endpoints
        /// report the new leader. Returns the new leader's name. In a plan the line says who
        /// leads now (or that it is unknown when the cluster cannot be asked).
        ///
        /// `#{endpoints, ca, cert?, cert_key?, via?, to}`
        ///
        /// ```rhai
        /// etcd_move_leader(tls + #{ endpoints: eps, to: "node-1" });
        /// ```
        fn "etcd_move_leader"("args: Map") -> "String" + CONN_DOC =
        crate::registration::map_step::<EtcdMoveLeader>(exec, "etcd_move_leader")
    );
}
