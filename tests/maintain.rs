//! etcd-maintain on a lab: a 3-member cluster built by etcd-binary-yaml with
//! a small `quota_backend_bytes`, filled (overwriting four keys with large
//! values) until writes fail with `mvcc: database space exceeded`. The plan of
//! etcd-maintain shows every member's DB size (as etcd reports it), the
//! compaction, a defragmentation per member and the disarm; the run recovers
//! the cluster: every member defragmented and smaller, the leader last after
//! moving leadership, the alarm gone, writes working again, sizes reported.

mod common;

use common::{cairn, lab, text};

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

/// Small enough to fill in seconds, large enough for etcd's own overhead.
const QUOTA: u64 = 8 * 1024 * 1024;

/// etcdctl on `node` with the member's own certificate, as a shell line.
fn etcdctl(node: &str) -> String {
    format!(
        "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/etcd/pki/etcd-ca.crt \
         --cert=/etc/etcd/pki/{node}.crt --key=/etc/etcd/pki/{node}.key"
    )
}

/// The printed lines of an output (a plan indents them with `  | `).
fn printed(out: &str) -> Vec<String> {
    out.lines()
        .map(|l| l.strip_prefix("  | ").unwrap_or(l).to_string())
        .collect()
}

/// `before: NAME db SIZE bytes ...` lines: name -> (size, leads).
fn sizes(out: &str, tag: &str) -> BTreeMap<String, (u64, bool)> {
    printed(out)
        .iter()
        .filter_map(|l| l.trim().strip_prefix(tag))
        .map(|rest| {
            let f: Vec<&str> = rest.split_whitespace().collect();
            (
                f[0].to_string(),
                (f[2].parse().unwrap(), rest.ends_with(", leader")),
            )
        })
        .collect()
}

/// `defragmented NAME: db A -> B bytes` lines in order: (name, A, B).
fn defrags(out: &str) -> Vec<(String, u64, u64)> {
    printed(out)
        .iter()
        .filter_map(|l| l.trim().strip_prefix("defragmented ").map(str::to_string))
        .map(|rest| {
            let f: Vec<&str> = rest.split_whitespace().collect();
            (
                f[0].trim_end_matches(':').to_string(),
                f[2].parse().unwrap(),
                f[4].parse().unwrap(),
            )
        })
        .collect()
}

/// DB size of every member as etcd itself reports it: name -> dbSize.
fn etcd_sizes(l: &lab::LabHandle) -> BTreeMap<String, u64> {
    let json = l.ssh_ok(
        "node-1",
        &format!("{} endpoint status --cluster -w json", etcdctl("node-1")),
    );
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    let addr: BTreeMap<String, String> = l
        .nodes
        .iter()
        .map(|n| (format!("https://{}:2379", n.address), n.name.clone()))
        .collect();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                addr[e["Endpoint"].as_str().unwrap()].clone(),
                e["Status"]["dbSize"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn nospace_recovered_followers_first_leader_last() {
    if lab::skip() {
        return;
    }
    let started = Instant::now();
    let l = lab::lab();
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();
    let quota = format!("quota_backend_bytes={QUOTA}");

    // 1. a cluster with a small quota, built by the shipped runbook
    let run = cairn(
        w,
        &["run", "etcd-binary-yaml", "--lab", &l.name, "--var", &quota],
    );
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let conf = l.ssh_ok("node-2", "grep quota /etc/etcd/etcd.conf");
    assert_eq!(conf.trim(), format!("quota-backend-bytes: {QUOTA}"));
    let built = started.elapsed();

    // 2. fill it: four keys overwritten with ~270 kB values until etcd refuses
    let fill = l.ssh(
        "node-1",
        &format!(
            "head -c 200000 /dev/urandom | base64 -w0 > /tmp/v; i=0; \
             while [ $i -lt 400 ]; do {} put fill/$((i % 4)) < /tmp/v >/dev/null 2>/tmp/err || break; \
             i=$((i+1)); done; echo \"$i writes\"; cat /tmp/err",
            etcdctl("node-1")
        ),
    );
    let f = text(&fill);
    assert!(
        f.contains("mvcc: database space exceeded"),
        "writes did not fail with NOSPACE: {f}"
    );
    let alarms = l.ssh_ok("node-3", &format!("{} alarm list", etcdctl("node-3")));
    assert!(alarms.contains("alarm:NOSPACE"), "{alarms}");
    let refused = l.ssh("node-2", &format!("{} put after fill", etcdctl("node-2")));
    assert!(
        text(&refused).contains("database space exceeded"),
        "{}",
        text(&refused)
    );
    let full = etcd_sizes(l);

    // 3. the plan: sizes as etcd reports them, compaction, one defrag per
    // member, the disarm; nothing changed
    let plan = cairn(
        w,
        &[
            "plan",
            "etcd-maintain",
            "--lab",
            &l.name,
            "--show-unchanged",
        ],
    );
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    let planned = sizes(&p, "before: ");
    assert_eq!(
        planned
            .iter()
            .map(|(n, (s, _))| (n.clone(), *s))
            .collect::<BTreeMap<_, _>>(),
        full,
        "{p}"
    );
    let leader = planned
        .iter()
        .find(|(_, (_, leads))| *leads)
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| panic!("no leader in the plan:\n{p}"));
    for expect in [
        "= ok read etcd cluster (3 members, leader ".to_string(),
        "NOSPACE alarm raised (on ".into(),
        "~ change compact etcd keyspace to the current revision (now ".into(),
        "~ change disarm etcd alarm NOSPACE of member ".into(),
        format!("~ change defragment etcd member {leader} (db size "),
    ] {
        assert!(p.contains(&expect), "plan lacks `{expect}`:\n{p}");
    }
    assert_eq!(
        p.matches("~ change defragment etcd member node-").count(),
        3,
        "{p}"
    );
    assert_eq!(etcd_sizes(l), full, "the plan changed the cluster");

    // 4. the run recovers it
    let t = Instant::now();
    let run = cairn(w, &["run", "etcd-maintain", "--lab", &l.name]);
    let r = text(&run);
    let took = t.elapsed();
    assert_eq!(run.status.code(), Some(0), "{r}");
    assert!(r.contains("NOSPACE recovered: a write works again"), "{r}");
    let done = defrags(&r);
    assert_eq!(done.len(), 3, "{r}");
    // followers first, the (former) leader last, leadership moved to the first
    assert_eq!(
        done[2].0, leader,
        "the leader is not defragmented last:\n{r}"
    );
    assert!(done[..2].iter().all(|d| d.0 != leader), "{r}");
    for (name, before, after) in &done {
        assert!(
            after < before,
            "{name} did not shrink: {before} -> {after}\n{r}"
        );
        assert!(*after < QUOTA / 2, "{name} still {after} bytes\n{r}");
    }
    let after = sizes(&r, "after: ");
    assert_eq!(after.len(), 3, "{r}");
    let new_leader = after
        .iter()
        .find(|(_, (_, leads))| *leads)
        .map(|(n, _)| n.clone())
        .unwrap();
    assert_eq!(
        new_leader, done[0].0,
        "leadership went to the first follower:\n{r}"
    );
    for (name, (size, _)) in &after {
        assert!(
            size < &full[name],
            "{name}: {size} not below {}\n{r}",
            full[name]
        );
    }

    // 5. writes work on every member, no alarm left
    for n in ["node-1", "node-2", "node-3"] {
        let put = l.ssh_ok(n, &format!("{} put after/{n} ok", etcdctl(n)));
        assert_eq!(put.trim(), "OK", "{n}");
    }
    let alarms = l.ssh_ok("node-1", &format!("{} alarm list", etcdctl("node-1")));
    assert_eq!(alarms.trim(), "", "alarms left: {alarms}");

    // 6. no NOSPACE any more: the plan only defragments again
    let plan = cairn(
        w,
        &[
            "plan",
            "etcd-maintain",
            "--lab",
            &l.name,
            "--show-unchanged",
        ],
    );
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    assert!(!p.contains("NOSPACE alarm raised"), "{p}");
    assert!(!p.contains("compact etcd keyspace"), "{p}");
    assert!(p.contains("alarms: none raised"), "{p}");

    eprintln!(
        "maintain: cluster built in {:.1} s, etcd-maintain run {:.1} s, whole test {:.1} s; \
         db sizes full {full:?}, defrag {done:?}",
        built.as_secs_f64(),
        took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// No lab: a cluster that cannot be reached is unknown in a plan (the plan
/// says why and still lists the defragmentation) and an error naming the
/// endpoint in a run.
#[test]
fn unreachable_cluster_is_unknown_in_plans_and_an_error_in_runs() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ca = dir.join("ca.pem");
    let made = Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key"])
        .args(["-out", "ca.pem", "-subj", "/CN=t", "-days", "2"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made));
    std::fs::create_dir_all(dir.join("q")).unwrap();
    std::fs::write(
        dir.join("q/runbook.toml"),
        "name = \"q\"\nversion = \"0.1.0\"\ndescription = \"test\"\n",
    )
    .unwrap();
    let conn = format!(
        "#{{ endpoints: [\"https://127.0.0.1:1\"], ca: \"{}\" }}",
        ca.display()
    );
    std::fs::write(
        dir.join("q/main.rhai"),
        format!(
            "let c = etcd_cluster({conn});\n\
             print(`cluster known: ${{is_known(c)}}`);\n\
             print(`alarms known: ${{is_known(etcd_alarms({conn}))}}`);\n\
             etcd_defrag(#{{ endpoint: \"https://127.0.0.1:1\", ca: \"{}\" }});\n",
            ca.display()
        ),
    )
    .unwrap();

    let plan = cairn(dir, &["plan", "q", "--show-unchanged"]);
    let p = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{p}");
    for expect in [
        "? verify read etcd cluster (cluster not reachable now: no endpoint answers: endpoint https://127.0.0.1:1: cannot connect to https://127.0.0.1:1 (127.0.0.1:1): ",
        "? verify read etcd alarms (cluster not reachable now: cannot connect to https://127.0.0.1:1",
        "| cluster known: false",
        "| alarms known: false",
        "~ change defragment etcd member at https://127.0.0.1:1 (db size unknown: cannot connect",
    ] {
        assert!(p.contains(expect), "plan lacks `{expect}`:\n{p}");
    }

    let run = cairn(dir, &["run", "q"]);
    let r = text(&run);
    assert_eq!(run.status.code(), Some(1), "{r}");
    assert!(
        r.contains("error: etcd_cluster on etcd failed: no endpoint answers: endpoint https://127.0.0.1:1: cannot connect to https://127.0.0.1:1"),
        "{r}"
    );
}

/// The packaged etcd servers the lab's mirror serves: 3.4.23 (Debian 12) and
/// 3.5.30 (sid), from the image cache `.ci/lab-prereqs.sh` builds.
const PACKAGES: [(&str, &str); 2] = [
    (
        "3.4.23",
        "/var/cache/cairn/image/mirror/debian/etcd-server_3.4.23-4+b4_amd64.deb",
    ),
    (
        "3.5.30",
        "/var/cache/cairn/image/mirror/debian-newer/etcd-server_3.5.30-2~cairn12+1_amd64.deb",
    ),
];

/// A one-member etcd on loopback (plain http), stopped when dropped.
struct Local(std::process::Child);

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// No lab: the maintenance calls of the Rust API against etcd 3.4.23 and
/// 3.5.30 themselves (one member each, a 2 MB quota): filled until NOSPACE,
/// then compacted, defragmented, disarmed; `query::look` sees the alarm
/// before and none after, and the DB shrinks.
#[test]
fn maintenance_api_answers_on_etcd_34_and_35() {
    use cairn::primitives::etcd::{query, EtcdClient};
    let rt = tokio::runtime::Runtime::new().unwrap();
    for (version, deb) in PACKAGES {
        let d = tempfile::tempdir().unwrap();
        let x = Command::new("dpkg-deb")
            .args(["-x", deb])
            .arg(d.path().join("pkg"))
            .output()
            .unwrap();
        assert!(x.status.success(), "{deb}: {}", text(&x));
        let (client_port, peer_port) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let _etcd = Local(
            Command::new(d.path().join("pkg/usr/bin/etcd"))
                .args(["--name", "m", "--data-dir"])
                .arg(d.path().join("data"))
                .args([
                    "--listen-client-urls",
                    &url,
                    "--advertise-client-urls",
                    &url,
                ])
                .args([
                    "--listen-peer-urls",
                    &peer,
                    "--initial-advertise-peer-urls",
                    &peer,
                ])
                .args(["--initial-cluster", &format!("m={peer}")])
                .args(["--quota-backend-bytes", "2000000"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let client = EtcdClient::new(std::slice::from_ref(&url), "", None).unwrap();
        rt.block_on(async {
            // wait (with a deadline) until it answers
            let deadline = Instant::now() + std::time::Duration::from_secs(30);
            while client.health(&url).await.is_err() {
                assert!(Instant::now() < deadline, "etcd {version} did not start");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let value = "x".repeat(150_000);
            let mut refused = None;
            for i in 0..100 {
                if let Err(e) = client.put(&format!("k{}", i % 3), &value).await {
                    refused = Some(e.to_string());
                    break;
                }
            }
            let refused = refused.unwrap_or_else(|| panic!("{version}: never refused"));
            assert!(
                refused.contains("mvcc: database space exceeded"),
                "{version}: {refused}"
            );
            let full = query::look(&client).await.unwrap();
            assert_eq!(full.alarms.len(), 1, "{version}: {full:?}");
            assert_eq!(full.alarms[0].alarm, "NOSPACE");
            assert_eq!(full.alarms[0].member, "m");
            assert_eq!(full.leader, "m");
            assert_eq!(full.endpoints[0].version, version);
            let before = full.endpoints[0].db_size;

            let rev = client.revision().await.unwrap();
            assert_eq!(rev, full.endpoints[0].revision, "{version}");
            assert!(!client.compacted_to(rev).await.unwrap(), "{version}");
            assert!(client.compact(rev).await.unwrap(), "{version}");
            assert!(client.compacted_to(rev).await.unwrap(), "{version}");
            assert!(!client.compact(rev).await.unwrap(), "{version}: again");
            client.defragment(&url).await.unwrap();
            for a in &full.alarms {
                client.disarm(&a.member_id, &a.alarm).await.unwrap();
            }
            assert_eq!(client.alarms().await.unwrap(), vec![], "{version}");
            client.put("after", "ok").await.unwrap();
            let after = query::look(&client).await.unwrap();
            assert!(
                after.endpoints[0].db_size < before / 2,
                "{version}: {before} -> {}",
                after.endpoints[0].db_size
            );
            assert!(after.alarms.is_empty());
        });
    }
}
