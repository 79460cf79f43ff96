//! etcd steps against a real etcd 3.5.1 with client-certificate auth, its
//! certificates made by cairn's pki steps.
//!
//! The etcd binary comes from `$CAIRN_TEST_ETCD`, else from
//! `tests/fixtures/fetch-etcd.sh` (which downloads it once into a cache).

mod common;

use common::{lab, load, sshd};

use cairn::action::ActionKind;
use cairn::bundle::Bundle;
use cairn::error::StepError;
use cairn::primitives::etcd::{
    EtcdClient, EtcdExpectRefused, EtcdGet, EtcdHealthCheck, EtcdMembers, EtcdPut, EtcdStatus,
    Identity, PemFile, Via,
};
use cairn::primitives::pki::{CaRef, Cert, GenCa, GenCert, KeyType, Usage};
use cairn::ssh::Pool;
use cairn::step::{Ctx, Validating};
use cairn::workspace::Workspace;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn etcd_binary() -> PathBuf {
    if let Ok(p) = std::env::var("CAIRN_TEST_ETCD") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fetch-etcd.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("tests/fixtures/fetch-etcd.sh runs");
    assert!(
        out.status.success(),
        "fetch-etcd.sh failed; set CAIRN_TEST_ETCD to an etcd binary"
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

fn ctx(root: &Path) -> Ctx {
    let workspace = Workspace::new(root);
    Ctx {
        ssh: Pool::new(workspace.known_hosts()),
        workspace,
        http: reqwest::Client::new(),
        bundle: Arc::new(Bundle::default()),
        env: Default::default(),
    }
}

async fn apply<S: Validating>(ctx: &Ctx, step: &S) -> Result<S::Output, StepError> {
    let prepared = step.prepare(ctx).await?;
    match prepared.work {
        Some(work) => step.apply(ctx, work).await,
        None => Ok(prepared.predicted),
    }
}

async fn gen_ca(ctx: &Ctx, name: &str) -> Cert {
    let step = GenCa {
        name: name.into(),
        cn: name.into(),
        o: None,
        key: KeyType::P256,
        days: 30,
        renew_before_days: 1,
        pki_dir: None,
    };
    apply(ctx, &step).await.unwrap()
}

async fn gen_cert(ctx: &Ctx, name: &str, ca: &str, dns: &[&str], ips: &[&str]) -> Cert {
    let step = GenCert {
        name: name.into(),
        ca: CaRef::Name(ca.into()),
        cn: name.into(),
        o: None,
        dns: dns.iter().map(|s| s.to_string()).collect(),
        ips: ips.iter().map(|s| s.to_string()).collect(),
        usage: vec![Usage::Server, Usage::Client],
        key_usage: None,
        key: KeyType::P256,
        days: 30,
        renew_before_days: 1,
        pki_dir: None,
    };
    apply(ctx, &step).await.unwrap()
}

/// A running single-member etcd; killed on drop (also when a test panics).
struct Etcd {
    child: Child,
    client_url: String,
    peer_url: String,
    log: PathBuf,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Start etcd on 127.0.0.1 with TLS for clients and peers, client-cert auth on,
/// serving `server` (whose SANs decide which names verify).
fn start_etcd(dir: &Path, ca: &Cert, server: &Cert) -> Etcd {
    let client_port = free_port();
    let peer_port = free_port();
    let client_url = format!("https://127.0.0.1:{client_port}");
    let peer_url = format!("https://127.0.0.1:{peer_port}");
    let log = dir.join("etcd.log");
    let child = Command::new(etcd_binary())
        .args(["--name", "n1", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("n1={peer_url}")])
        .args(["--client-cert-auth", "--trusted-ca-file", &ca.cert_path])
        .args([
            "--cert-file",
            &server.cert_path,
            "--key-file",
            &server.key_path,
        ])
        .args([
            "--peer-client-cert-auth",
            "--peer-trusted-ca-file",
            &ca.cert_path,
        ])
        .args([
            "--peer-cert-file",
            &server.cert_path,
            "--peer-key-file",
            &server.key_path,
        ])
        .args(["--log-outputs", &log.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    Etcd {
        child,
        client_url,
        peer_url,
        log,
    }
}

/// Poll `/health` until it says true, or panic with etcd's log after 20 s.
async fn wait_healthy(etcd: &mut Etcd, client: &EtcdClient) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = etcd.child.try_wait().unwrap() {
            panic!("etcd exited with {status}:\n{}", etcd.log());
        }
        match client.health(&etcd.client_url).await {
            Ok(()) => return,
            Err(e) => assert!(
                Instant::now() < deadline,
                "etcd not healthy after 20s: {e}\n{}",
                etcd.log()
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn path(c: &Cert) -> PemFile {
    PemFile::Path(c.cert_path.clone())
}

fn handle(c: &Cert) -> PemFile {
    PemFile::Cert(Box::new(c.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_against_a_real_etcd_with_client_cert_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    let ca = gen_ca(&ctx, "etcd-ca").await;
    let server = gen_cert(&ctx, "n1", "etcd-ca", &["localhost"], &["127.0.0.1"]).await;
    let client_cert = gen_cert(&ctx, "client", "etcd-ca", &[], &[]).await;
    gen_ca(&ctx, "other-ca").await;
    let stranger = gen_cert(&ctx, "stranger", "other-ca", &[], &[]).await;

    let mut etcd = start_etcd(tmp.path(), &ca, &server);
    let ep = etcd.client_url.clone();
    let key_pem = std::fs::read_to_string(&client_cert.key_path).unwrap();
    let client = EtcdClient::new(
        std::slice::from_ref(&ep),
        &ca.pem,
        Some(Identity::new(client_cert.pem.clone(), key_pem)),
    )
    .unwrap();
    wait_healthy(&mut etcd, &client).await;

    // health: the plan is a verify action; applying checks for real
    let health = EtcdHealthCheck {
        endpoints: vec![ep.clone()],
        ca: handle(&ca),
        cert: Some(handle(&client_cert)),
        cert_key: None,
        via: None,
        wait_seconds: 0,
    };
    let prepared = health.prepare(&ctx).await.unwrap();
    assert_eq!(prepared.actions.len(), 1);
    assert_eq!(prepared.actions[0].kind, ActionKind::Verify);
    assert_eq!(
        prepared.actions[0].to_string(),
        format!("? verify etcd {ep} healthy")
    );
    let out = apply(&ctx, &health).await.unwrap();
    assert!(out.healthy && out.endpoints[0].healthy, "{out:?}");

    // members: the one member, started, with its URLs; an expectation that fails names the problem
    let mut members = EtcdMembers {
        endpoints: vec![ep.clone()],
        ca: path(&ca),
        cert: Some(path(&client_cert)),
        cert_key: Some(client_cert.key_path.clone()),
        via: None,
        expect: Some(vec!["n1".into()]),
        wait_seconds: 0,
    };
    let list = apply(&ctx, &members).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "n1");
    assert!(list[0].started);
    assert_eq!(list[0].client_urls, vec![ep.clone()]);
    assert_eq!(list[0].id.len(), 16, "hex id like etcdctl: {}", list[0].id);
    members.expect = Some(vec!["n1".into(), "n2".into()]);
    let err = apply(&ctx, &members).await.unwrap_err().to_string();
    assert_eq!(err, "verification failed: member n2 missing (members: n1)");

    // status
    let status = EtcdStatus {
        endpoints: vec![ep.clone()],
        ca: handle(&ca),
        cert: Some(handle(&client_cert)),
        cert_key: None,
        via: None,
    };
    let st = apply(&ctx, &status).await.unwrap();
    assert_eq!(st[0].version, "3.5.1");
    assert!(st[0].is_leader, "{:?}", st[0]);
    assert_eq!(st[0].member_id, list[0].id);
    assert!(st[0].raft_term >= 2 && st[0].db_size > 0, "{:?}", st[0]);

    // put: create, then a no-op, then a change with a diff; get reads it back
    let mut put = EtcdPut {
        endpoints: vec![ep.clone()],
        ca: handle(&ca),
        cert: Some(handle(&client_cert)),
        cert_key: None,
        via: None,
        key: "/coreos.com/network/config".into(),
        value: "{\"Network\": \"10.5.0.0/16\"}".into(),
    };
    let p = put.prepare(&ctx).await.unwrap();
    assert_eq!(
        p.actions[0].to_string(),
        "+ create etcd key /coreos.com/network/config"
    );
    assert!(apply(&ctx, &put).await.unwrap());
    let p = put.prepare(&ctx).await.unwrap();
    assert!(p.work.is_none());
    assert_eq!(
        p.actions[0].to_string(),
        "= ok etcd key /coreos.com/network/config (already has this value)"
    );
    put.value = "{\"Network\": \"10.6.0.0/16\"}".into();
    let p = put.prepare(&ctx).await.unwrap();
    assert_eq!(p.actions[0].kind, ActionKind::Change);
    let diff = p.actions[0].diff.clone().unwrap();
    assert!(diff.contains("-{\"Network\": \"10.5.0.0/16\"}"), "{diff}");
    assert!(diff.contains("+{\"Network\": \"10.6.0.0/16\"}"), "{diff}");
    assert!(apply(&ctx, &put).await.unwrap());
    let mut get = EtcdGet {
        endpoints: vec![ep.clone()],
        ca: handle(&ca),
        cert: Some(handle(&client_cert)),
        cert_key: None,
        via: None,
        key: "/coreos.com/network/config".into(),
    };
    assert_eq!(
        apply(&ctx, &get).await.unwrap().as_deref(),
        Some("{\"Network\": \"10.6.0.0/16\"}")
    );
    get.key = "/absent".into();
    assert_eq!(apply(&ctx, &get).await.unwrap(), None);

    // refusals: no certificate, a certificate from another CA
    let mut refused = EtcdExpectRefused {
        endpoint: ep.clone(),
        ca: handle(&ca),
        cert: None,
        cert_key: None,
        via: None,
    };
    let r = apply(&ctx, &refused).await.unwrap();
    assert!(r.how.starts_with("TLS alert: "), "{r:?}");
    refused.cert = Some(handle(&stranger));
    let r = apply(&ctx, &refused).await.unwrap();
    assert!(r.how.starts_with("TLS alert: "), "{r:?}");
    // ... and a client it must accept makes the check fail
    refused.cert = Some(handle(&client_cert));
    let err = apply(&ctx, &refused).await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!("verification failed: {ep} accepted a client with that certificate (HTTP 200)")
    );

    // the peer port checks client certificates too
    let peer = EtcdExpectRefused {
        endpoint: etcd.peer_url.clone(),
        ca: handle(&ca),
        cert: None,
        cert_key: None,
        via: None,
    };
    let r = apply(&ctx, &peer).await.unwrap();
    assert!(r.how.starts_with("TLS alert: "), "{r:?}");
    let peer = EtcdExpectRefused {
        cert: Some(handle(&client_cert)),
        ..peer
    };
    let err = apply(&ctx, &peer).await.unwrap_err().to_string();
    assert!(
        err.contains("accepted a client with that certificate (HTTP 404)"),
        "{err}"
    );

    // trusting the wrong CA is our refusal, not the server's: not a pass
    refused.cert = None;
    refused.ca = handle(&stranger);
    let err = apply(&ctx, &refused).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "verification failed: {ep}: could not tell whether it refuses"
        )),
        "{err}"
    );

    // an endpoint where nothing listens: unhealthy, named, with the reason
    let dead = format!("https://127.0.0.1:{}", free_port());
    let health = EtcdHealthCheck {
        endpoints: vec![ep.clone(), dead.clone()],
        ..health
    };
    let err = apply(&ctx, &health).await.unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "verification failed: endpoint {dead} unhealthy: cannot connect to {dead}"
        )),
        "{err}"
    );
    assert!(!err.contains(&format!("{ep} unhealthy")), "{err}");

    // the plan of a put while the cluster cannot be reached says so instead of failing
    let unreachable = EtcdPut {
        endpoints: vec![dead.clone()],
        ..put
    };
    let p = unreachable.prepare(&ctx).await.unwrap();
    assert_eq!(p.actions[0].kind, ActionKind::Change);
    assert!(
        p.actions[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("current value unknown: cannot connect"),
        "{:?}",
        p.actions[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn via_a_host_the_server_is_verified_for_the_endpoints_name() {
    if lab::skip_unless(lab::Need::Root) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    let ca = gen_ca(&ctx, "etcd-ca").await;
    // the server certificate names only `localhost`: a connection verified for
    // 127.0.0.1 (the forwarded port's address) would be refused
    let server = gen_cert(&ctx, "n1", "etcd-ca", &["localhost"], &[]).await;
    let client_cert = gen_cert(&ctx, "client", "etcd-ca", &[], &[]).await;
    let mut etcd = start_etcd(tmp.path(), &ca, &server);
    let port = etcd.client_url.rsplit(':').next().unwrap().to_string();
    let by_name = format!("https://localhost:{port}");
    let key_pem = std::fs::read_to_string(&client_cert.key_path).unwrap();
    let identity = Identity::new(client_cert.pem.clone(), key_pem);

    let direct = EtcdClient::new(
        std::slice::from_ref(&by_name),
        &ca.pem,
        Some(identity.clone()),
    )
    .unwrap();
    // etcd listens on 127.0.0.1 only; poll it by IP, verified for `localhost`
    let mut routed = direct.clone();
    routed.route(&by_name, format!("127.0.0.1:{port}").parse().unwrap());
    etcd.client_url = by_name.clone();
    wait_healthy(&mut etcd, &routed).await;
    // the same endpoint asked as 127.0.0.1 does not verify
    let by_ip = EtcdClient::new(
        std::slice::from_ref(&format!("https://127.0.0.1:{port}")),
        &ca.pem,
        Some(identity),
    )
    .unwrap();
    let err = by_ip
        .health(&format!("https://127.0.0.1:{port}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate"), "{err}");

    // through a real ssh forward
    let sshd = sshd::Sshd::start();
    let health = EtcdHealthCheck {
        endpoints: vec![by_name.clone()],
        ca: handle(&ca),
        cert: Some(handle(&client_cert)),
        cert_key: None,
        via: Some(Via::One(Box::new(sshd.host()))),
        wait_seconds: 0,
    };
    let prepared = health.prepare(&ctx).await.unwrap();
    assert_eq!(
        prepared.actions[0].to_string(),
        format!("? verify etcd {by_name} via local-sshd healthy")
    );
    let out = apply(&ctx, &health)
        .await
        .unwrap_or_else(|e| panic!("{e}\nsshd: {}", sshd.log()));
    assert!(out.healthy);
    let members = EtcdMembers {
        endpoints: vec![by_name.clone()],
        ca: handle(&ca),
        cert: Some(handle(&client_cert)),
        cert_key: None,
        via: Some(Via::Each(vec![sshd.host()])),
        expect: Some(vec!["n1".into()]),
        wait_seconds: 0,
    };
    assert_eq!(apply(&ctx, &members).await.unwrap()[0].name, "n1");
}

fn cairn(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = common::cairn(dir, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn runbook(dir: &Path, name: &str, main: &str) {
    let rb = dir.join(name);
    std::fs::create_dir_all(&rb).unwrap();
    std::fs::write(
        rb.join("runbook.toml"),
        format!("name = \"{name}\"\nversion = \"0.1.0\"\ndescription = \"etcd test\"\n"),
    )
    .unwrap();
    std::fs::write(rb.join("main.rhai"), main).unwrap();
}

const CERTS: &str = r#"
let ca = gen_ca(#{ name: "etcd-ca", cn: "etcd-ca", key: "p256", days: 90 });
let server = gen_cert(#{ name: "n1", ca: ca, cn: "n1", dns: ["localhost"], ips: ["127.0.0.1"],
                         usage: ["server", "client"], key: "p256", days: 90 });
let operator = gen_cert(#{ name: "operator", ca: ca, cn: "operator", usage: ["client"], key: "p256", days: 90 });
let other = gen_ca(#{ name: "other-ca", cn: "other-ca", key: "p256", days: 90 });
let stranger = gen_cert(#{ name: "stranger", ca: other, cn: "stranger", usage: ["client"], key: "p256", days: 90 });
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runbook_checks_a_real_etcd_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    runbook(dir, "certs", CERTS);
    let (code, out, err) = cairn(dir, &["run", "certs"]);
    assert_eq!(code, 0, "{out}{err}");

    let pki = dir.join(".cairn/pki");
    let read = |n: &str| std::fs::read_to_string(pki.join(n)).unwrap();
    let ctx = ctx(dir.join(".cairn").as_path());
    let ca = cairn::primitives::pki::inspect("pki/etcd-ca.crt", &dir.join(".cairn")).unwrap();
    assert!(ca.is_ca);
    let as_cert = |name: &str| Cert {
        name: name.into(),
        cn: name.into(),
        cert_path: pki.join(format!("{name}.crt")).display().to_string(),
        key_path: pki.join(format!("{name}.key")).display().to_string(),
        pem: read(&format!("{name}.crt")),
        ca_pem: String::new(),
        ca: String::new(),
        issuer: String::new(),
        not_after: String::new(),
        serial: String::new(),
        fingerprint: String::new(),
        dns: vec![],
        ips: vec![],
        usage: vec![],
        is_ca: false,
    };
    let mut etcd = start_etcd(dir, &as_cert("etcd-ca"), &as_cert("n1"));
    let ep = etcd.client_url.clone();
    let probe = EtcdClient::new(
        std::slice::from_ref(&ep),
        &read("etcd-ca.crt"),
        Some(Identity::new(read("operator.crt"), read("operator.key"))),
    )
    .unwrap();
    wait_healthy(&mut etcd, &probe).await;
    drop(ctx);

    let checks = format!(
        r#"{CERTS}
let tls = #{{ ca: ca, cert: operator, endpoints: ["{ep}"] }};
let h = etcd_health(tls + #{{ wait_seconds: 5 }});
print(`healthy: ${{h.healthy}}`);
let members = etcd_members(tls + #{{ expect: ["n1"] }});
print(`members: ${{members.len()}} ${{members[0].name}} started=${{members[0].started}}`);
let st = etcd_status(tls);
print(`version: ${{st[0].version}} leader: ${{st[0].is_leader}}`);
etcd_put(tls + #{{ key: "/cairn/test", value: "v1" }});
let v = etcd_get(tls + #{{ key: "/cairn/test" }});
print(`value: ${{v}}`);
let none = etcd_get(tls + #{{ key: "/cairn/absent" }});
print(`absent is unit: ${{type_of(none) == "()"}}`);
let r = etcd_expect_refused(#{{ endpoint: "{ep}", ca: "pki/etcd-ca.crt" }});
print(`refused: ${{r.how}}`);
let r = etcd_expect_refused(#{{ endpoint: "{ep}", ca: ca, cert: stranger }});
print(`stranger refused: ${{r.how}}`);
"#
    );
    runbook(dir, "checks", &checks);
    // verify and unchanged lines are listed with --show-unchanged
    let (code, out, err) = cairn(dir, &["plan", "checks", "--show-unchanged"]);
    assert!(code == 0 || code == 2, "{out}{err}");
    assert!(
        out.contains(&format!("? verify etcd {ep} healthy")),
        "{out}"
    );
    assert!(out.contains("? verify etcd members are n1"), "{out}");
    assert!(out.contains("+ create etcd key /cairn/test"), "{out}");
    assert!(
        out.contains(&format!(
            "? verify etcd {ep} refuses a client without a certificate"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "? verify etcd {ep} refuses a client with certificate stranger"
        )),
        "{out}"
    );
    assert!(
        out.contains("6 to verify") || out.contains("7 to verify"),
        "{out}"
    );

    let (code, out, err) = cairn(dir, &["run", "checks"]);
    assert_eq!(code, 0, "{out}{err}");
    for line in [
        "healthy: true",
        "members: 1 n1 started=true",
        "version: 3.5.1 leader: true",
        "value: v1",
        "absent is unit: true",
        "refused: TLS alert: ",
        "stranger refused: TLS alert: ",
    ] {
        assert!(out.contains(line), "`{line}` missing in:\n{out}{err}");
    }
    // the put is done: a rerun's plan says so
    let (_, out, _) = cairn(dir, &["plan", "checks", "--show-unchanged"]);
    assert!(
        out.contains("= ok etcd key /cairn/test (already has this value)"),
        "{out}"
    );

    // a failed check is an error naming what is wrong
    runbook(
        dir,
        "bad",
        &format!(
            "{CERTS}\netcd_members(#{{ ca: ca, cert: operator, endpoints: [\"{ep}\"], expect: [\"n1\", \"n2\"] }});\n"
        ),
    );
    let (code, out, err) = cairn(dir, &["run", "bad"]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err.lines().next().unwrap_or_default(),
        "error: etcd_members on local failed: verification failed: member n2 missing (members: n1)",
        "{err}"
    );
}

/// Start an `n`-member etcd cluster on 127.0.0.1, every member serving
/// `server` for clients and peers, client-cert auth on both.
fn start_cluster(dir: &Path, ca: &Cert, server: &Cert, n: usize) -> Vec<Etcd> {
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{i}=https://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    ports
        .iter()
        .enumerate()
        .map(|(i, (c, p))| {
            let client_url = format!("https://127.0.0.1:{c}");
            let peer_url = format!("https://127.0.0.1:{p}");
            let log = dir.join(format!("etcd-m{i}.log"));
            let child = Command::new(etcd_binary())
                .args(["--name", &format!("m{i}"), "--data-dir"])
                .arg(dir.join(format!("data-m{i}")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &initial])
                .args(["--client-cert-auth", "--trusted-ca-file", &ca.cert_path])
                .args(["--cert-file", &server.cert_path])
                .args(["--key-file", &server.key_path])
                .args(["--peer-client-cert-auth"])
                .args(["--peer-trusted-ca-file", &ca.cert_path])
                .args(["--peer-cert-file", &server.cert_path])
                .args(["--peer-key-file", &server.key_path])
                .args(["--log-outputs", &log.display().to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd starts");
            Etcd {
                child,
                client_url,
                peer_url,
                log,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_hands_leadership_to_the_named_member_and_is_a_noop_after() {
    use cairn::primitives::etcd::EtcdMoveLeader;
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    let ca = gen_ca(&ctx, "etcd-ca").await;
    let server = gen_cert(&ctx, "server", "etcd-ca", &["localhost"], &["127.0.0.1"]).await;
    let mut members = start_cluster(tmp.path(), &ca, &server, 3);
    let endpoints: Vec<String> = members.iter().map(|m| m.client_url.clone()).collect();
    let client = EtcdClient::new(
        &endpoints,
        &std::fs::read_to_string(&ca.cert_path).unwrap(),
        Some(Identity::new(
            std::fs::read_to_string(&server.cert_path).unwrap(),
            std::fs::read_to_string(&server.key_path).unwrap(),
        )),
    )
    .unwrap();
    for m in members.iter_mut() {
        wait_healthy(m, &client).await;
    }
    // the leader, as the first endpoint sees it, once one is elected
    let deadline = Instant::now() + Duration::from_secs(20);
    let leader = loop {
        let s = client.status(&endpoints[0]).await.unwrap();
        if s.leader != "0" {
            break s.leader;
        }
        assert!(Instant::now() < deadline, "no leader elected in 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let list = client.member_list().await.unwrap();
    let leader_name = list.iter().find(|m| m.id == leader).unwrap().name.clone();
    let target = list.iter().find(|m| m.id != leader).unwrap().clone();
    let step = |to: &str| EtcdMoveLeader {
        endpoints: endpoints.clone(),
        ca: handle(&ca),
        cert: Some(handle(&server)),
        cert_key: None,
        via: None,
        to: to.into(),
    };

    // plan: a change, saying who leads now
    let prepared = step(&target.name).prepare(&ctx).await.unwrap();
    assert!(prepared.work.is_some(), "moving to a follower is a change");
    let line = prepared.actions[0].to_string();
    assert!(
        line.contains(&format!("etcd leadership to {}", target.name))
            && line.contains(&format!("{leader_name} leads now")),
        "{line}"
    );

    // apply: the target leads, as every endpoint says
    let new = apply(&ctx, &step(&target.name)).await.unwrap();
    assert_eq!(new, target.name);
    for ep in &endpoints {
        let s = client.status(ep).await.unwrap();
        assert_eq!(s.leader, target.id, "{ep} names another leader");
    }

    // again, by hex id: nothing to do
    let prepared = step(&target.id).prepare(&ctx).await.unwrap();
    assert!(prepared.work.is_none(), "{:?}", prepared.actions);
    assert!(prepared.actions[0].to_string().contains("already leads"));

    // a name that is no member: an error naming the argument and the members
    let err = match step("m9").prepare(&ctx).await {
        Ok(p) => panic!("a stranger accepted: {:?}", p.actions),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("to") && err.contains("no member named `m9`") && err.contains("m0"),
        "{err}"
    );
}

/// The load harness of the day-2 lab tests: it counts no failure against a
/// healthy cluster, its acknowledged writes read back, and a member that dies
/// shows as failed requests through that member's endpoint only.
#[test]
fn the_load_harness_counts_failures_where_they_happen() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ca, server) = rt.block_on(async {
        let ctx = ctx(tmp.path());
        let ca = gen_ca(&ctx, "etcd-ca").await;
        let server = gen_cert(&ctx, "server", "etcd-ca", &["localhost"], &["127.0.0.1"]).await;
        (ca, server)
    });
    let mut members = start_cluster(tmp.path(), &ca, &server, 3);
    let target = load::Target {
        endpoints: members.iter().map(|m| m.client_url.clone()).collect(),
        ca: ca.cert_path.clone().into(),
        cert: server.cert_path.clone().into(),
        key: server.key_path.clone().into(),
    };
    rt.block_on(async {
        let client = target.client();
        for m in members.iter_mut() {
            wait_healthy(m, &client).await;
        }
    });
    // a follower dies (a dying leader fails requests everywhere until the
    // election, which is etcd's behaviour, not the harness's)
    let leader_url = rt.block_on(async {
        let client = target.client();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let all: Vec<_> = statuses(&client, &target.endpoints).await;
            if let Some(s) = all.iter().find(|s| s.is_leader) {
                break s.endpoint.clone();
            }
            assert!(Instant::now() < deadline, "no leader in 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let follower = members
        .iter()
        .position(|m| m.client_url != leader_url)
        .unwrap();
    let running = load::Load::start(target.clone(), 50);
    running.wait_for(Duration::from_secs(20), "60 requests", |sent, _| sent >= 60);
    let dead = members.remove(follower);
    let dead_url = dead.client_url.clone();
    drop(dead); // killed
    running.wait_for(Duration::from_secs(20), "3 failures", |_, failed| {
        failed >= 3
    });
    let report = running.stop();
    assert!(report.sent >= 60, "{report}");
    assert!(report.failed >= 3, "{report}");
    assert!(!report.acked.is_empty(), "{report}");
    for (ep, (_, failed)) in &report.per_endpoint {
        if *ep == dead_url {
            assert!(*failed >= 3, "{report}");
        } else {
            assert_eq!(*failed, 0, "a living member's endpoint failed: {report}");
        }
    }
    report.check_data(&load::Target {
        endpoints: members.iter().map(|m| m.client_url.clone()).collect(),
        ..target
    });
}

/// Every endpoint's status that answers.
async fn statuses(
    client: &EtcdClient,
    endpoints: &[String],
) -> Vec<cairn::primitives::etcd::Status> {
    let mut out = Vec::new();
    for ep in endpoints {
        if let Ok(s) = client.status(ep).await {
            out.push(s);
        }
    }
    out
}

// ---- stdlib etcd::verify against a real etcd ------------------------------

/// A one-member etcd `n1` at `addr` on etcd's own ports (2379, 2380: the URLs
/// `etcd::verify` expects a member to advertise), serving the workspace's
/// `pki/n1` certificate, asking clients on each port for a certificate of
/// `pki/etcd-ca` only where `client_auth` / `peer_auth` say.
fn start_member_at(dir: &Path, addr: &str, client_auth: bool, peer_auth: bool) -> Etcd {
    let pki = dir.join(".cairn/pki");
    let file = |n: &str| pki.join(n).display().to_string();
    let client_url = format!("https://{addr}:2379");
    let peer_url = format!("https://{addr}:2380");
    let log = dir.join("etcd-at.log");
    let mut cmd = Command::new(etcd_binary());
    cmd.args(["--name", "n1", "--data-dir"])
        .arg(dir.join("data-at"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("n1={peer_url}")])
        .args(["--listen-metrics-urls", &format!("http://{addr}:2381")])
        .args([
            "--cert-file",
            &file("n1.crt"),
            "--key-file",
            &file("n1.key"),
        ])
        .args(["--peer-cert-file", &file("n1.crt")])
        .args(["--peer-key-file", &file("n1.key")])
        .args(["--log-outputs", &log.display().to_string()]);
    // (etcd asks for a client certificate whenever it has a trusted CA file)
    let ca = file("etcd-ca.crt");
    if client_auth {
        cmd.args(["--client-cert-auth", "--trusted-ca-file", &ca]);
    }
    if peer_auth {
        cmd.args(["--peer-client-cert-auth", "--peer-trusted-ca-file", &ca]);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    Etcd {
        child,
        client_url,
        peer_url,
        log,
    }
}

/// `etcd::verify` (the building runbooks' verification) passes on a member
/// that refuses strangers, and fails the run, naming the port, when the
/// member accepts a client without a certificate on its peer port or on its
/// client port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdlib_verify_fails_the_run_when_a_stranger_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // a loopback address of this test's own (its ports are etcd's standard ones)
    let pid = std::process::id();
    let addr = format!("127.77.{}.{}", (pid >> 8) % 250 + 1, pid % 250 + 1);
    let certs = format!(
        r#"import "etcd" as etcd;
let ca = gen_ca(#{{ name: "etcd-ca", cn: "etcd-ca", key: "p256", days: 90 }});
let server = gen_cert(#{{ name: "n1", ca: ca, cn: "n1", ips: ["{addr}"], usage: ["server", "client"], key: "p256", days: 90 }});
let operator = gen_cert(#{{ name: "operator", ca: ca, cn: "operator", usage: ["client"], key: "p256", days: 90 }});
"#
    );
    runbook(dir, "certs", &certs);
    let (code, out, err) = cairn(dir, &["run", "certs"]);
    assert_eq!(code, 0, "{out}{err}");
    runbook(
        dir,
        "verify",
        &format!(
            r#"{certs}
let listed = etcd::verify(#{{ members: [#{{ name: "n1", address: "{addr}" }}], ca: ca, cert: operator, wait_seconds: 20 }});
if is_known(listed) {{ print(`verified: ${{listed.len()}} ${{listed[0].name}}`); }}
"#
        ),
    );
    let pki = dir.join(".cairn/pki");
    let read = |n: &str| std::fs::read_to_string(pki.join(n)).unwrap();
    let probe = EtcdClient::new(
        &[format!("https://{addr}:2379")],
        &read("etcd-ca.crt"),
        Some(Identity::new(read("operator.crt"), read("operator.key"))),
    )
    .unwrap();

    // strangers refused on both ports: verified, every check shown in the plan
    let mut etcd = start_member_at(dir, &addr, true, true);
    wait_healthy(&mut etcd, &probe).await;
    let (code, out, err) = cairn(dir, &["plan", "verify", "--show-unchanged"]);
    assert!(code == 0 || code == 2, "{out}{err}");
    for line in [
        format!("? verify etcd https://{addr}:2379 healthy"),
        "? verify etcd members are n1".into(),
        "? verify etcd get cairn/verify".into(),
        format!("? verify etcd https://{addr}:2379 refuses a client without a certificate"),
        format!(
            "? verify etcd https://{addr}:2379 refuses a client with certificate verify-stranger-client"
        ),
        format!("? verify etcd https://{addr}:2380 refuses a client without a certificate"),
    ] {
        assert!(out.contains(&line), "`{line}` missing in:\n{out}{err}");
    }
    let (code, out, err) = cairn(dir, &["run", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verified: 1 n1"), "{out}{err}");

    // the peer port accepts a client without a certificate: the run fails
    drop(etcd);
    let mut etcd = start_member_at(dir, &addr, true, false);
    wait_healthy(&mut etcd, &probe).await;
    let (code, out, err) = cairn(dir, &["run", "verify"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("verified:"), "{out}");
    assert!(
        err.contains("etcd_expect_refused on local failed")
            && err.contains(&format!(
                "https://{addr}:2380 accepted a client without a certificate"
            )),
        "{err}"
    );

    // the client port accepts one: the run fails
    drop(etcd);
    let mut etcd = start_member_at(dir, &addr, false, true);
    wait_healthy(&mut etcd, &probe).await;
    let (code, out, err) = cairn(dir, &["run", "verify"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("verified:"), "{out}");
    assert!(
        err.contains("etcd_expect_refused on local failed")
            && err.contains(&format!(
                "https://{addr}:2379 accepted a client without a certificate"
            )),
        "{err}"
    );
    drop(etcd);
}
