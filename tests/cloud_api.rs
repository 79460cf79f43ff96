//! Cloud primitives: response parsing against the public API references'
//! examples (tests/fixtures/{hetzner,digitalocean}), and the HTTP contract
//! between cairn's client and the lab's emulations, in process, with a
//! provisioner that records calls instead of booting nodes.

use cairn::bundle::Bundle;
use cairn::error::StepError;
use cairn::host::HostKeys;
use cairn::primitives::cloud::digitalocean::{
    self as dov, DigitalOcean, DoDelete, DoDroplet, DoDroplets, DoSshKey, Selection,
};
use cairn::primitives::cloud::hetzner::{
    self as hz, Hcloud, HcloudDelete, HcloudNetwork, HcloudServer, HcloudServers, HcloudSshKey,
    Kind, SubnetSpec,
};
use cairn::primitives::cloud::http::{Api, Provider, Token};
use cairn::primitives::cloud::KeyRef;
use cairn::ssh::Pool;
use cairn::step::{Ctx, Validating};
use cairn::workspace::Workspace;
use cairn_lab::cloud::{router, Cloud, CloudConfig, Provisioner};
use cairn_lab::{NodeInfo, NodeSpec};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

const HTOKEN: &str = "hcloud-test-token-0123456789abcdef";
const DTOKEN: &str = "do-test-token-fedcba9876543210";
const PUBKEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKHDy1c0Hn6h1xiTU7jPQSmrsoqVKfXxoJ4mPAoxuhdL test";
const PUBKEY_MD5: &str = "3c:e0:3d:24:46:f3:3a:c8:81:f4:2b:71:36:eb:70:3b";

fn fixture(path: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

// ----- parsing the references' examples -----

#[test]
fn hetzner_create_server_answer_parses() {
    let answer: hz::ApiCreateServer =
        serde_json::from_value(fixture("hetzner/create_server_response.json")).unwrap();
    assert_eq!(answer.server.id, 42);
    assert_eq!(answer.server.status, "initializing");
    assert_eq!(answer.action.command, "create_server");
    assert_eq!(
        answer.next_actions.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![13]
    );
    let network: hz::ApiNetwork =
        serde_json::from_value(fixture("hetzner/create_network_response.json")["network"].clone())
            .unwrap();
    assert_eq!(network.id, 4711);
    assert_eq!(network.subnets[0].network_zone, "eu-central");
    let s = hz::Server::from_api(&answer.server, &[network], Some("/k/id".into()));
    assert_eq!(s.ipv4, "1.2.3.4");
    assert_eq!(s.private_ip, "10.0.0.2");
    assert_eq!(
        s.private_ips,
        BTreeMap::from([("mynet".to_string(), "10.0.0.2".to_string())])
    );
    assert_eq!(
        (
            s.server_type.as_str(),
            s.image.as_str(),
            s.location.as_str()
        ),
        ("cpx11", "ubuntu-20.04", "fsn1")
    );
    let h = s.host(None);
    assert_eq!(
        (h.name.as_str(), h.address.as_str()),
        ("my-server", "1.2.3.4")
    );
    assert_eq!(h.private_address.as_deref(), Some("10.0.0.2"));
    assert_eq!(h.key.as_deref(), Some(Path::new("/k/id")));
    assert_eq!(h.host_keys, HostKeys::Workspace);
}

#[test]
fn hetzner_differences_name_the_field() {
    let answer: hz::ApiCreateServer =
        serde_json::from_value(fixture("hetzner/create_server_response.json")).unwrap();
    let mut spec = server_spec("my-server");
    spec.server_type = "cx22".into();
    spec.location = "fsn1".into();
    spec.image = "ubuntu-20.04".into();
    spec.labels = BTreeMap::from([("key".to_string(), "value".to_string())]);
    let network: hz::ApiNetwork =
        serde_json::from_value(fixture("hetzner/create_network_response.json")["network"].clone())
            .unwrap();
    let nets = [network];
    assert_eq!(
        spec.differences(&answer.server, &[]),
        vec![
            "server_type cpx11, runbook asks cx22".to_string(),
            "no attachment to network cluster-net, runbook asks for one".to_string()
        ]
    );
    spec.server_type = "cpx11".into();
    spec.networks = vec![hz::NetRef::Name("mynet".into())];
    assert!(spec.differences(&answer.server, &nets).is_empty());
    spec.labels.insert("etcd".into(), "true".into());
    assert_eq!(
        spec.differences(&answer.server, &nets),
        vec!["no label etcd, runbook asks etcd=true".to_string()]
    );
}

#[test]
fn hetzner_actions_keys_and_errors_parse() {
    let a: hz::ApiAction =
        serde_json::from_value(fixture("hetzner/get_action.json")["action"].clone()).unwrap();
    assert_eq!((a.id, a.status.as_str()), (42, "running"));
    let a: hz::ApiAction =
        serde_json::from_value(fixture("hetzner/add_subnet_response.json")["action"].clone())
            .unwrap();
    assert_eq!(a.command, "add_subnet");
    let a: hz::ApiAction =
        serde_json::from_value(fixture("hetzner/delete_server_response.json")["action"].clone())
            .unwrap();
    assert_eq!(a.error.unwrap().code, "action_failed");
    let keys: Vec<hz::ApiSshKey> =
        serde_json::from_value(fixture("hetzner/list_ssh_keys.json")["ssh_keys"].clone()).unwrap();
    assert_eq!(
        keys[0].fingerprint,
        "b7:2f:30:a0:2f:6c:58:6c:21:04:58:61:ba:06:3b:2f"
    );
    let p: hz::ApiPagination =
        serde_json::from_value(fixture("hetzner/list_ssh_keys.json")["meta"]["pagination"].clone())
            .unwrap();
    assert_eq!((p.page, p.next_page, p.last_page), (3, Some(4), Some(4)));
    assert_eq!(
        Provider::Hetzner.error_of(&fixture("hetzner/error_uniqueness.json")),
        Some((
            "uniqueness_error".into(),
            "SSH key with the same fingerprint already exists".into()
        ))
    );
    // what cairn sends is what the reference's request example has, field for field
    let req = fixture("hetzner/create_server_request.json");
    for field in [
        "name",
        "location",
        "server_type",
        "image",
        "ssh_keys",
        "networks",
        "labels",
        "start_after_create",
    ] {
        assert!(req.get(field).is_some(), "{field}");
    }
}

#[test]
fn digitalocean_answers_parse() {
    let created = fixture("digitalocean/create_droplet_response.json");
    let d: dov::ApiDroplet = serde_json::from_value(created["droplet"].clone()).unwrap();
    assert_eq!(
        (d.id, d.status.as_str(), d.size_slug.as_str()),
        (3164444, "new", "s-1vcpu-1gb")
    );
    let links: Vec<dov::ApiActionLink> =
        serde_json::from_value(created["links"]["actions"].clone()).unwrap();
    assert_eq!((links[0].id, links[0].rel.as_str()), (7515, "create"));
    let list: Vec<dov::ApiDroplet> =
        serde_json::from_value(fixture("digitalocean/list_droplets.json")["droplets"].clone())
            .unwrap();
    assert_eq!(list.len(), 3);
    let out = dov::Droplet::from_api(&list[0], None);
    assert_eq!(
        (out.ipv4.as_str(), out.private_ip.as_str()),
        ("192.241.165.154", "10.128.192.124")
    );
    assert_eq!(out.tags, vec!["web", "env:prod"]);
    assert_eq!(
        (out.region.as_str(), out.image.as_str()),
        ("nyc3", "ubuntu-20-04-x64")
    );
    let a: dov::ApiAction =
        serde_json::from_value(fixture("digitalocean/get_action.json")["action"].clone()).unwrap();
    assert_eq!(
        (a.status.as_str(), a.kind.as_str()),
        ("completed", "create")
    );
    let keys: Vec<dov::ApiSshKey> =
        serde_json::from_value(fixture("digitalocean/list_ssh_keys.json")["ssh_keys"].clone())
            .unwrap();
    assert_eq!(keys[0].id, 289794);
    assert_eq!(
        Provider::DigitalOcean
            .error_of(&fixture("digitalocean/error_unauthorized.json"))
            .unwrap()
            .1,
        "Unable to authenticate you."
    );
    let page = fixture("digitalocean/list_droplets_page.json");
    assert!(page["links"]["pages"]["next"]
        .as_str()
        .unwrap()
        .contains("page=3"));
}

#[test]
fn intent_plans_carry_placeholders_without_requests() {
    let p = server_spec("node-1").intent().unwrap();
    assert_eq!(p.predicted.ipv4, "(known after create: node-1.ipv4)");
    assert_eq!(p.predicted.id, "(known after create: node-1.id)");
    assert_eq!(
        p.predicted.private_ip,
        "(known after create: node-1.private_ip)"
    );
    assert_eq!(
        p.actions[0].to_string(),
        "+ create server node-1 (cpx11, ubuntu-22.04, ash) labels cluster=cluster-1,etcd=true networks cluster-net"
    );
    let d = droplet_spec("etcd-1").intent().unwrap();
    assert_eq!(d.predicted.ipv4, "(known after create: etcd-1.ipv4)");
}

// ----- the emulations, in process -----

/// Records node calls (by the hostname the object gave its node: the
/// server's or droplet's name) and hands out documentation addresses.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
    specs: Mutex<Vec<NodeSpec>>,
    n: AtomicU32,
}

impl Recorder {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    /// The hostname of node `name`, as its spec gave it.
    fn hostname(&self, name: &str) -> String {
        let specs = self.specs.lock().unwrap();
        let spec = specs.iter().find(|s| s.name == name);
        spec.and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| name.to_string())
    }
}

impl Provisioner for Recorder {
    fn add(&self, spec: NodeSpec) -> BoxFuture<'_, Result<NodeInfo, String>> {
        Box::pin(async move {
            let n = self.n.fetch_add(1, Ordering::SeqCst) + 10;
            let hostname = spec.hostname.clone().unwrap_or_else(|| spec.name.clone());
            self.calls.lock().unwrap().push(format!("add {hostname}"));
            self.specs.lock().unwrap().push(spec.clone());
            Ok(NodeInfo {
                name: spec.name.clone(),
                hostname: hostname.clone(),
                address: format!("192.0.2.{n}"),
                private: spec
                    .private_networks
                    .iter()
                    .map(|a| (a.network.clone(), a.address.clone()))
                    .collect(),
                fqdn: format!("{hostname}.test.lab"),
            })
        })
    }
    fn remove(&self, name: &str) -> BoxFuture<'_, Result<(), String>> {
        let name = name.to_string();
        Box::pin(async move {
            let hostname = self.hostname(&name);
            self.calls
                .lock()
                .unwrap()
                .push(format!("remove {hostname}"));
            Ok(())
        })
    }
}

struct Lab {
    base: String,
    recorder: Arc<Recorder>,
    dir: tempfile::TempDir,
}

impl Lab {
    async fn start() -> Lab {
        let recorder = Arc::new(Recorder::default());
        let cloud = Cloud::new(CloudConfig {
            hetzner_token: HTOKEN.into(),
            digitalocean_token: DTOKEN.into(),
            provisioner: recorder.clone(),
            state_file: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(cloud)).await });
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("id_test.pub"), format!("{PUBKEY}\n")).unwrap();
        std::fs::write(dir.path().join("id_test"), "private key file\n").unwrap();
        Lab {
            base,
            recorder,
            dir,
        }
    }

    fn ctx_with(&self, htoken: &str, dtoken: &str) -> Ctx {
        let workspace = Workspace::new(self.dir.path());
        let env = BTreeMap::from([
            ("HCLOUD_ENDPOINT".to_string(), format!("{}/v1", self.base)),
            ("HCLOUD_TOKEN".to_string(), htoken.to_string()),
            (
                "DIGITALOCEAN_ENDPOINT".to_string(),
                format!("{}/v2", self.base),
            ),
            ("DIGITALOCEAN_ACCESS_TOKEN".to_string(), dtoken.to_string()),
        ]);
        Ctx {
            ssh: Pool::new(workspace.known_hosts()),
            workspace,
            http: reqwest::Client::new(),
            bundle: Arc::new(Bundle::default()),
            env,
        }
    }

    fn ctx(&self) -> Ctx {
        self.ctx_with(HTOKEN, DTOKEN)
    }

    async fn faults(&self, body: Value) -> Value {
        let c = reqwest::Client::new();
        let r = c
            .post(format!("{}/_cairn/faults", self.base))
            .bearer_auth(HTOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// The node provisioner's calls starting with `prefix` (`add`, `remove`).
    fn calls(&self, prefix: &str) -> Vec<String> {
        let calls = self.recorder.calls().into_iter();
        calls.filter(|c| c.starts_with(prefix)).collect()
    }

    /// The emulation's faults and counts of what it injected.
    async fn injected(&self) -> Value {
        let v: Value = reqwest::Client::new()
            .get(format!("{}/_cairn/faults", self.base))
            .bearer_auth(DTOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["faults"].clone()
    }

    async fn fault_counts(&self) -> (u64, u64) {
        let f = self.injected().await;
        (
            f["failed"].as_u64().unwrap(),
            f["dropped"].as_u64().unwrap(),
        )
    }

    fn hcloud(&self) -> Hcloud {
        let api = Api::new(
            Provider::Hetzner,
            &format!("{}/v1", self.base),
            Token::new(HTOKEN),
            reqwest::Client::new(),
        )
        .unwrap();
        Hcloud::new(api)
    }

    fn digitalocean(&self) -> DigitalOcean {
        let api = Api::new(
            Provider::DigitalOcean,
            &format!("{}/v2", self.base),
            Token::new(DTOKEN),
            reqwest::Client::new(),
        )
        .unwrap();
        DigitalOcean::new(api)
    }
}

/// Run a step as the executor does in apply mode: prepare, then apply the
/// work if any. Returns the actions' plan lines and the output.
async fn run<S: Validating>(ctx: &Ctx, step: &S) -> Result<(Vec<String>, S::Output), StepError>
where
    S::Work: Send,
{
    let p = step.prepare(ctx).await?;
    let lines = p.actions.iter().map(|a| a.to_string()).collect();
    let out = match p.work {
        Some(w) => step.apply(ctx, w).await?,
        None => p.predicted,
    };
    Ok((lines, out))
}

fn server_spec(name: &str) -> HcloudServer {
    serde_json::from_value(json!({
        "name": name,
        "server_type": "cpx11",
        "image": "ubuntu-22.04",
        "location": "ash",
        "ssh_keys": ["cairn"],
        "networks": ["cluster-net"],
        "labels": {"etcd": "true", "cluster": "cluster-1"},
    }))
    .unwrap()
}

fn network_spec() -> HcloudNetwork {
    HcloudNetwork {
        name: "cluster-net".into(),
        ip_range: "10.1.0.0/16".into(),
        subnets: vec![SubnetSpec {
            network_zone: "us-east".into(),
            kind: "cloud".into(),
            ip_range: "10.1.1.0/24".into(),
        }],
        labels: BTreeMap::new(),
        token_file: None,
    }
}

fn key_spec() -> HcloudSshKey {
    HcloudSshKey {
        name: "cairn".into(),
        public_key_file: Some("id_test.pub".into()),
        public_key: None,
        labels: BTreeMap::new(),
        token_file: None,
    }
}

const SELECTOR: &str = "cluster=cluster-1,etcd=true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hetzner_network_key_and_three_servers_then_rerun_adopts() {
    let lab = Lab::start().await;
    let ctx = lab.ctx();

    let (lines, net) = run(&ctx, &network_spec()).await.unwrap();
    assert_eq!(
        lines,
        vec!["+ create network cluster-net (10.1.0.0/16) with subnet 10.1.1.0/24 (us-east cloud)"]
    );
    assert!(net.id.parse::<u64>().is_ok(), "{}", net.id);
    let (lines, key) = run(&ctx, &key_spec()).await.unwrap();
    assert_eq!(
        lines,
        vec![format!("+ create ssh key cairn ({PUBKEY_MD5})")]
    );
    assert_eq!(key.fingerprint, PUBKEY_MD5);
    let private_key = lab.dir.path().join("id_test").display().to_string();
    assert_eq!(key.private_key.as_deref(), Some(private_key.as_str()));

    let mut servers = Vec::new();
    for name in ["node-1", "node-2", "node-3"] {
        let mut spec = server_spec(name);
        spec.ssh_keys = vec![KeyRef::Key(key.clone())];
        let (lines, s) = run(&ctx, &spec).await.unwrap();
        assert!(
            lines[0].starts_with(&format!("+ create server {name} (cpx11")),
            "{lines:?}"
        );
        assert_eq!(s.status, "running");
        servers.push(s);
    }
    // one more with only one of the two labels: the selector must leave it out
    let mut other = server_spec("other");
    other.labels = BTreeMap::from([("etcd".to_string(), "true".to_string())]);
    run(&ctx, &other).await.unwrap();

    assert_eq!(
        servers
            .iter()
            .map(|s| s.private_ip.as_str())
            .collect::<Vec<_>>(),
        vec!["10.1.1.2", "10.1.1.3", "10.1.1.4"]
    );
    assert!(servers.iter().all(|s| s.ipv4.starts_with("192.0.2.")));
    assert_eq!(
        servers[0]
            .private_ips
            .get("cluster-net")
            .map(String::as_str),
        Some("10.1.1.2")
    );
    let host = servers[0].host(None);
    assert_eq!(host.address, servers[0].ipv4);
    assert_eq!(host.private_address.as_deref(), Some("10.1.1.2"));
    assert_eq!(
        host.key.as_ref().map(|k| k.display().to_string()),
        Some(private_key.clone())
    );

    // the nodes got the key and the network
    let specs = lab.recorder.specs.lock().unwrap().clone();
    assert_eq!(specs.len(), 4);
    assert_eq!(specs[0].authorized_keys, vec![PUBKEY.to_string()]);
    assert_eq!(specs[0].private_networks[0].cidr, "10.1.0.0/16");
    assert_eq!(specs[0].private_networks[0].address, "10.1.1.2");

    let listing = HcloudServers {
        selector: SELECTOR.into(),
        private_key: Some(private_key.clone()),
        token_file: None,
    };
    let (lines, listed) = run(&ctx, &listing).await.unwrap();
    assert_eq!(
        lines,
        vec!["= ok list servers cluster=cluster-1,etcd=true (read-only; found 3: node-1, node-2, node-3)"]
    );
    assert_eq!(listed, servers);

    // pagination: one per page still gets all three
    let paged = lab
        .hcloud()
        .per_page(1)
        .servers(Some(SELECTOR))
        .await
        .unwrap();
    let mut names: Vec<String> = paged.iter().map(|s| s.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["node-1", "node-2", "node-3"]);

    // rerun: everything is adopted, nothing created
    let calls_before = lab.recorder.calls().len();
    let p = network_spec().prepare(&ctx).await.unwrap();
    assert!(p.work.is_none());
    assert_eq!(
        p.actions[0].to_string(),
        "= ok network cluster-net (10.1.0.0/16) (exists with the requested ip_range and subnets)"
    );
    let p = key_spec().prepare(&ctx).await.unwrap();
    assert!(p.work.is_none());
    assert_eq!(p.predicted.id, key.id);
    for (i, name) in ["node-1", "node-2", "node-3"].into_iter().enumerate() {
        let mut spec = server_spec(name);
        spec.ssh_keys = vec![KeyRef::Key(key.clone())];
        let p = spec.prepare(&ctx).await.unwrap();
        assert!(p.work.is_none(), "{name}");
        assert_eq!(
            p.actions[0].to_string(),
            format!("= ok server {name} (exists with the same spec, running)")
        );
        assert_eq!(p.predicted, servers[i]);
    }
    assert_eq!(lab.recorder.calls().len(), calls_before);

    // a different spec for an existing name is refused, saying what differs
    let mut wrong = server_spec("node-1");
    wrong.server_type = "cx22".into();
    let e = wrong.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        e,
        "server node-1 exists with server_type cpx11, runbook asks cx22"
    );

    // a key of the same name with another fingerprint is refused too
    let mut other_key = key_spec();
    other_key.public_key_file = None;
    other_key.public_key = Some(
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb0Sa7Y2k0zYzKx7mN9mZ0s9vQk5n2Zb1wFqU3xX1pL x".into(),
    );
    let e = other_key.prepare(&ctx).await.err().unwrap().to_string();
    assert!(
        e.starts_with(&format!(
            "ssh key cairn exists with fingerprint {PUBKEY_MD5}, the runbook's key has "
        )),
        "{e}"
    );

    // cleanup: servers, network, key; a second cleanup has nothing to do
    for name in ["node-1", "node-2", "node-3", "other"] {
        let del = HcloudDelete {
            kind: Kind::Server,
            name: name.into(),
            token_file: None,
        };
        let (lines, r) = run(&ctx, &del).await.unwrap();
        assert!(
            lines[0].starts_with(&format!("- delete server {name} (id ")),
            "{lines:?}"
        );
        assert_eq!(r.count, 1);
    }
    for kind in [Kind::Network, Kind::SshKey] {
        let name = if kind == Kind::Network {
            "cluster-net"
        } else {
            "cairn"
        };
        let (_, r) = run(
            &ctx,
            &HcloudDelete {
                kind,
                name: name.into(),
                token_file: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(r.count, 1);
    }
    assert!(lab.hcloud().servers(None).await.unwrap().is_empty());
    assert!(lab.hcloud().networks().await.unwrap().is_empty());
    let again = HcloudDelete {
        kind: Kind::Server,
        name: "node-1".into(),
        token_file: None,
    };
    let (lines, r) = run(&ctx, &again).await.unwrap();
    assert_eq!(lines, vec!["= ok server node-1 (does not exist)"]);
    assert_eq!(r.count, 0);
    let removes = lab.calls("remove");
    assert_eq!(
        removes,
        vec![
            "remove node-1",
            "remove node-2",
            "remove node-3",
            "remove other"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hetzner_survives_429_503_and_a_dropped_create_without_duplicates() {
    let lab = Lab::start().await;
    let ctx = lab.ctx();
    run(&ctx, &network_spec()).await.unwrap();
    run(&ctx, &key_spec()).await.unwrap();

    lab.faults(json!({"fail_next": 2, "status": 429, "retry_after": 1}))
        .await;
    run(&ctx, &server_spec("node-1")).await.unwrap();
    lab.faults(json!({"fail_next": 1, "status": 503, "only": "POST /v1/servers"}))
        .await;
    run(&ctx, &server_spec("node-2")).await.unwrap();
    // the server makes node-3, then cuts the connection instead of answering
    lab.faults(json!({"drop_after_effect": 1, "only": "POST /v1/servers"}))
        .await;
    let (_, s3) = run(&ctx, &server_spec("node-3")).await.unwrap();
    assert_eq!(s3.status, "running");
    assert_eq!(lab.fault_counts().await, (3, 1));

    let all = lab.hcloud().servers(Some(SELECTOR)).await.unwrap();
    let mut names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["node-1", "node-2", "node-3"]);
    let adds = lab.calls("add");
    assert_eq!(adds, vec!["add node-1", "add node-2", "add node-3"]);
}

/// 500 and 502 answers, a create whose answer comes after the client's
/// timeout, and creates and reads whose answers are not JSON (all after the
/// effect where there is one): every server is made exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hetzner_survives_5xx_timeouts_and_malformed_answers_without_duplicates() {
    let lab = Lab::start().await;
    let mut ctx = lab.ctx();
    ctx.env.insert("CAIRN_CLOUD_TIMEOUT".into(), "1".into());
    run(&ctx, &network_spec()).await.unwrap();
    run(&ctx, &key_spec()).await.unwrap();

    lab.faults(json!({"fail_next": 1, "status": 500, "only": "POST /v1/servers"}))
        .await;
    run(&ctx, &server_spec("node-1")).await.unwrap();
    lab.faults(json!({"fail_next": 2, "status": 502, "only": "GET /v1/servers"}))
        .await;
    run(&ctx, &server_spec("node-2")).await.unwrap();
    // node-3 is made at once, but its answer would come 10 s later: the
    // client gives up after its 1 s timeout and finds the server by name
    lab.faults(json!({"slow_next": 1, "delay_ms": 10_000, "only": "POST /v1/servers"}))
        .await;
    let started = std::time::Instant::now();
    let (_, s3) = run(&ctx, &server_spec("node-3")).await.unwrap();
    assert_eq!(s3.status, "running");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "waited {:?} for an answer instead of timing out",
        started.elapsed()
    );
    // node-4's create is answered with a body cut short, then a read too
    lab.faults(json!({"garble_next": 1, "only": "POST /v1/servers"}))
        .await;
    run(&ctx, &server_spec("node-4")).await.unwrap();
    lab.faults(json!({"garble_next": 1, "only": "GET /v1/servers"}))
        .await;
    let (lines, _) = run(&ctx, &server_spec("node-4")).await.unwrap();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("= ok"), "{lines:?}");

    let f = lab.injected().await;
    assert_eq!(
        (&f["failed"], &f["slowed"], &f["garbled"]),
        (&json!(3), &json!(1), &json!(2)),
        "{f}"
    );
    let all = lab.hcloud().servers(Some(SELECTOR)).await.unwrap();
    let mut names: Vec<String> = all.iter().map(|s| s.name.clone()).collect();
    names.sort();
    assert_eq!(names, vec!["node-1", "node-2", "node-3", "node-4"]);
    let adds = lab.calls("add");
    assert_eq!(
        adds,
        vec!["add node-1", "add node-2", "add node-3", "add node-4"]
    );

    // A timeout that is not a number is refused, naming the setting.
    ctx.env.insert("CAIRN_CLOUD_TIMEOUT".into(), "soon".into());
    let err = run(&ctx, &server_spec("node-5")).await.unwrap_err();
    assert!(err.to_string().contains("CAIRN_CLOUD_TIMEOUT"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_refused_and_never_shown() {
    let lab = Lab::start().await;
    let bad_h = "wrong-hcloud-token-SECRET";
    let bad_d = "wrong-do-token-SECRET";
    let ctx = lab.ctx_with(bad_h, bad_d);
    let listing = HcloudServers {
        selector: SELECTOR.into(),
        private_key: None,
        token_file: None,
    };
    let e = listing.prepare(&ctx).await.err().unwrap();
    assert_eq!(
        e.to_string(),
        "hetzner GET /v1/servers: 401 unauthorized: unable to authenticate"
    );
    let d = DoDroplets {
        tag: "etcd".into(),
        private_key: None,
        token_file: None,
    };
    let e2 = d.prepare(&ctx).await.err().unwrap();
    assert_eq!(
        e2.to_string(),
        "digitalocean GET /v2/droplets: 401 Unauthorized: Unable to authenticate you."
    );
    for text in [
        e.to_string(),
        format!("{e:?}"),
        e2.to_string(),
        format!("{e2:?}"),
    ] {
        for secret in [bad_h, bad_d, HTOKEN, DTOKEN] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    // nor in a client's Debug, nor in a step's serialized form
    let dbg = format!("{:?}", lab.hcloud());
    assert!(!dbg.contains(HTOKEN), "{dbg}");
    let ser = serde_json::to_string(&server_spec("node-1")).unwrap();
    assert!(!ser.contains(HTOKEN));

    // token_file works and its content stays out of errors too
    let tf = lab.dir.path().join("token");
    std::fs::write(&tf, format!("{bad_h}\n")).unwrap();
    let ctx = lab.ctx();
    let with_file = HcloudServers {
        selector: SELECTOR.into(),
        private_key: None,
        token_file: Some(tf.display().to_string()),
    };
    let e = with_file.prepare(&ctx).await.err().unwrap().to_string();
    assert!(e.contains("401 unauthorized") && !e.contains(bad_h), "{e}");

    // a missing token says where to put it
    let mut ctx = lab.ctx();
    ctx.env.remove("HCLOUD_TOKEN");
    let e = listing.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        e,
        "invalid `token_file`: no hetzner API token: set HCLOUD_TOKEN or pass `token_file`"
    );
}

fn droplet_spec(name: &str) -> DoDroplet {
    serde_json::from_value(json!({
        "name": name,
        "region": "nyc3",
        "size": "s-1vcpu-2gb",
        "image": "ubuntu-22-04-x64",
        "tags": ["etcd"],
        "user_data": "#cloud-config\n",
    }))
    .unwrap()
}

/// DigitalOcean's creates under the same faults: a 502, a create answered
/// after the client's timeout, a create and a read answered with a body that
/// is not JSON: each droplet is made exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digitalocean_survives_5xx_timeouts_and_malformed_answers_without_duplicates() {
    let lab = Lab::start().await;
    let mut ctx = lab.ctx();
    ctx.env.insert("CAIRN_CLOUD_TIMEOUT".into(), "1".into());
    let faults = [
        json!({"fail_next": 1, "status": 502, "only": "POST /v2/droplets"}),
        json!({"slow_next": 1, "delay_ms": 10_000, "only": "POST /v2/droplets"}),
        json!({"garble_next": 1, "only": "POST /v2/droplets"}),
        json!({"garble_next": 1, "only": "GET /v2/droplets"}),
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        lab.faults(fault).await;
        let started = std::time::Instant::now();
        let (_, d) = run(&ctx, &droplet_spec(&format!("etcd-{}", i + 1)))
            .await
            .unwrap();
        assert_eq!(d.status, "active");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "etcd-{}: waited {:?} instead of timing out",
            i + 1,
            started.elapsed()
        );
    }
    let f = lab.injected().await;
    assert_eq!(
        (&f["failed"], &f["slowed"], &f["garbled"]),
        (&json!(1), &json!(1), &json!(2)),
        "{f}"
    );
    let adds = lab.calls("add");
    assert_eq!(
        adds,
        vec!["add etcd-1", "add etcd-2", "add etcd-3", "add etcd-4"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digitalocean_droplets_tagged_etcd() {
    let lab = Lab::start().await;
    let ctx = lab.ctx();
    let key_step = DoSshKey {
        name: "cairn".into(),
        public_key_file: Some("id_test.pub".into()),
        public_key: None,
        token_file: None,
    };
    let (lines, key) = run(&ctx, &key_step).await.unwrap();
    assert_eq!(
        lines,
        vec![format!("+ create ssh key cairn ({PUBKEY_MD5})")]
    );
    let p = key_step.prepare(&ctx).await.unwrap();
    assert!(p.work.is_none());
    assert_eq!(p.predicted.id, key.id);

    lab.faults(json!({"fail_next": 1, "status": 429, "retry_after": 1}))
        .await;
    let mut made = Vec::new();
    for name in ["etcd-1", "etcd-2"] {
        let mut spec = droplet_spec(name);
        spec.ssh_keys = vec![KeyRef::Key(key.clone())];
        let (lines, d) = run(&ctx, &spec).await.unwrap();
        assert_eq!(
            lines,
            vec![format!(
                "+ create droplet {name} (s-1vcpu-2gb, ubuntu-22-04-x64, nyc3) tags etcd"
            )]
        );
        made.push(d);
    }
    // the create fails with 503 first, then its answer is dropped after the
    // droplet was made: one droplet, found by name
    lab.faults(
        json!({"fail_next": 1, "status": 503, "drop_after_effect": 1, "only": "POST /v2/droplets"}),
    )
    .await;
    let mut spec3 = droplet_spec("etcd-3");
    spec3.ssh_keys = vec![KeyRef::Key(key.clone())];
    made.push(run(&ctx, &spec3).await.unwrap().1);
    assert_eq!(lab.fault_counts().await, (2, 1));
    // an untagged one the tag listing must leave out
    let mut untagged = droplet_spec("web-1");
    untagged.tags = vec![];
    run(&ctx, &untagged).await.unwrap();

    assert!(made
        .iter()
        .all(|d| d.status == "active" && d.ipv4.starts_with("192.0.2.")));
    assert_eq!(
        made.iter()
            .map(|d| d.private_ip.as_str())
            .collect::<Vec<_>>(),
        vec!["10.111.0.2", "10.111.0.3", "10.111.0.4"]
    );
    let h = made[0].host(None);
    assert_eq!(
        h.key.map(|k| k.display().to_string()),
        key.private_key.clone()
    );

    let list = DoDroplets {
        tag: "etcd".into(),
        private_key: None,
        token_file: None,
    };
    let (lines, listed) = run(&ctx, &list).await.unwrap();
    assert_eq!(
        lines,
        vec!["= ok list droplets tagged etcd (read-only; found 3: etcd-1, etcd-2, etcd-3)"]
    );
    assert_eq!(
        listed
            .iter()
            .map(|d| d.private_key.clone())
            .collect::<Vec<_>>(),
        vec![None, None, None]
    );
    let paged = lab
        .digitalocean()
        .per_page(1)
        .droplets_by_tag("etcd")
        .await
        .unwrap();
    assert_eq!(paged.len(), 3);

    // rerun adopts
    for name in ["etcd-1", "etcd-2", "etcd-3"] {
        let mut spec = droplet_spec(name);
        spec.ssh_keys = vec![KeyRef::Key(key.clone())];
        let p = spec.prepare(&ctx).await.unwrap();
        assert!(p.work.is_none(), "{name}");
    }
    let mut wrong = droplet_spec("etcd-1");
    wrong.size = "s-2vcpu-4gb".into();
    let e = wrong.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        e,
        "droplet etcd-1 exists with size s-1vcpu-2gb, runbook asks s-2vcpu-4gb"
    );
    let adds = lab
        .recorder
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("add"))
        .count();
    assert_eq!(adds, 4);

    // delete by tag leaves the untagged one
    let del = DoDelete {
        selection: Selection::Tag("etcd".into()),
        token_file: None,
    };
    let (lines, r) = run(&ctx, &del).await.unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(r.count, 3);
    assert!(lab
        .digitalocean()
        .droplets_by_tag("etcd")
        .await
        .unwrap()
        .is_empty());
    let (lines, r) = run(&ctx, &del).await.unwrap();
    assert_eq!(lines, vec!["= ok droplets tagged etcd (none exist)"]);
    assert_eq!(r.count, 0);
    let del1 = DoDelete {
        selection: Selection::Name("web-1".into()),
        token_file: None,
    };
    assert_eq!(run(&ctx, &del1).await.unwrap().1.count, 1);
    assert!(lab
        .digitalocean()
        .droplet_by_name("web-1")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulation_answers_like_the_references() {
    let lab = Lab::start().await;
    let c = reqwest::Client::new();
    // rate-limit headers on every answer, errors shaped like the provider's
    let r = c
        .get(format!("{}/v1/servers/999", lab.base))
        .bearer_auth(HTOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    for h in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "not_found");
    let r = c
        .get(format!("{}/v2/droplets/999", lab.base))
        .bearer_auth(DTOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], "not_found");
    // the Hetzner token does not open the DigitalOcean API
    let r = c
        .get(format!("{}/v2/droplets", lab.base))
        .bearer_auth(HTOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"id": "Unauthorized", "message": "Unable to authenticate you."})
    );
    let r = c
        .get(format!("{}/v1/servers", lab.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "unauthorized");
    assert_eq!(v["error"]["message"], "unable to authenticate");
    // a network: 201, subnet gateway is the network's first address
    let r = c
        .post(format!("{}/v1/networks", lab.base))
        .bearer_auth(HTOKEN)
        .json(&json!({"name": "n", "ip_range": "10.1.0.0/16", "subnets": [{"type": "cloud", "ip_range": "10.1.1.0/24", "network_zone": "us-east"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["network"]["subnets"][0]["gateway"], "10.1.0.1");
    // duplicate name: 409 uniqueness_error
    let r = c
        .post(format!("{}/v1/networks", lab.base))
        .bearer_auth(HTOKEN)
        .json(&json!({"name": "n", "ip_range": "10.2.0.0/16"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "uniqueness_error");
    // an overlapping subnet is refused
    let id = lab.hcloud().network_by_name("n").await.unwrap().unwrap().id;
    let r = c
        .post(format!("{}/v1/networks/{id}/actions/add_subnet", lab.base))
        .bearer_auth(HTOKEN)
        .json(&json!({"type": "cloud", "ip_range": "10.1.1.0/25", "network_zone": "us-east"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // a server in a zone without a subnet is refused
    let r = c
        .post(format!("{}/v1/servers", lab.base))
        .bearer_auth(HTOKEN)
        .json(&json!({"name": "x", "server_type": "cpx11", "image": "ubuntu-22.04", "location": "fsn1", "networks": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // a server: 201 with an action that runs until the node is up, and next_actions
    let r = c
        .post(format!("{}/v1/servers", lab.base))
        .bearer_auth(HTOKEN)
        .json(&json!({"name": "x", "server_type": "cpx11", "image": "ubuntu-22.04", "location": "ash", "networks": [id]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["action"]["command"], "create_server");
    assert_eq!(v["next_actions"][0]["command"], "start_server");
    assert_eq!(v["server"]["private_net"][0]["ip"], "10.1.1.2");
    // no ssh key given: the reference hands out a root password
    assert!(
        v["root_password"].as_str().is_some_and(|p| p.len() >= 16),
        "{v}"
    );
    let server: hz::ApiServer = serde_json::from_value(v["server"].clone()).unwrap();
    let running = lab
        .hcloud()
        .wait_action(
            v["action"]["id"].as_u64().unwrap(),
            std::time::Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        (running.status.as_str(), running.progress),
        ("success", 100)
    );
    let s = lab.hcloud().server(server.id).await.unwrap().unwrap();
    assert_eq!(s.status, "running");
    // delete server: 200 with an action
    let r = c
        .delete(format!("{}/v1/servers/{}", lab.base, server.id))
        .bearer_auth(HTOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["action"]["command"], "delete_server");
    // DigitalOcean: droplet create is 202 with links.actions, delete is 204
    let r = c
        .post(format!("{}/v2/droplets", lab.base))
        .bearer_auth(DTOKEN)
        .json(&json!({"name": "d1", "region": "nyc3", "size": "s-1vcpu-1gb", "image": "ubuntu-22-04-x64", "tags": ["etcd"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["links"]["actions"][0]["rel"], "create");
    assert_eq!(v["droplet"]["status"], "new");
    let id = v["droplet"]["id"].as_u64().unwrap();
    lab.digitalocean()
        .wait_active(id, "d1", std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let r = c
        .get(format!("{}/v2/droplets?tag_name=etcd&per_page=1", lab.base))
        .bearer_auth(DTOKEN)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["meta"]["total"], 1);
    assert_eq!(v["links"]["pages"], json!({}));
    let r = c
        .delete(format!("{}/v2/droplets?tag_name=etcd", lab.base))
        .bearer_auth(DTOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}
