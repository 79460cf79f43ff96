//! Hetzner Cloud: networks (with subnets), ssh keys and servers.
//!
//! The request and response shapes follow the public API reference
//! (<https://docs.hetzner.cloud>): `POST /servers` answers with the server, an
//! `action` and `next_actions`, which are polled at `GET /actions/{id}` until
//! `success` or `error`; the server is then polled until `running` and only
//! then are its addresses read. Lists follow `meta.pagination.next_page`.

use super::http::{Api, Created, Provider};
use super::{
    fingerprint_md5, pick_private_key, show_labels, KeyRef, PublicKeySource, Removed, SshKey,
};
use crate::action::Action;
use crate::error::StepError;
use crate::executor::{script_error, Executor};
use crate::host::{Host, HostKeys};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown::placeholder;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map, NativeCallContext};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TARGET: &str = "hetzner";

// ----- API shapes (the subset cairn reads) -----

/// An action object (`GET /actions/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiAction {
    pub id: u64,
    pub command: String,
    /// `running`, `success` or `error`.
    pub status: String,
    #[serde(default)]
    pub progress: u64,
    #[serde(default)]
    pub error: Option<ApiActionError>,
}

/// The error of a failed action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiActionError {
    pub code: String,
    pub message: String,
}

/// A server object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiServer {
    pub id: u64,
    pub name: String,
    /// `initializing`, `starting`, `running`, `stopping`, `off`, `deleting`, ...
    pub status: String,
    pub public_net: ApiPublicNet,
    #[serde(default)]
    pub private_net: Vec<ApiPrivateNet>,
    pub server_type: ApiNamed,
    #[serde(default)]
    pub image: Option<ApiImage>,
    pub datacenter: ApiDatacenter,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `public_net` of a server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiPublicNet {
    #[serde(default)]
    pub ipv4: Option<ApiIp>,
}

/// An address with its reverse DNS.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiIp {
    pub ip: String,
}

/// One entry of `private_net`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiPrivateNet {
    pub network: u64,
    pub ip: String,
}

/// Anything with a name (server type, location).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiNamed {
    pub name: String,
}

/// An image (its name is null for snapshots).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiImage {
    #[serde(default)]
    pub name: Option<String>,
}

/// A datacenter with its location.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiDatacenter {
    pub name: String,
    pub location: ApiLocation,
}

/// A location with its network zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiLocation {
    pub name: String,
    #[serde(default)]
    pub network_zone: String,
}

/// A network object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiNetwork {
    pub id: u64,
    pub name: String,
    pub ip_range: String,
    #[serde(default)]
    pub subnets: Vec<ApiSubnet>,
    #[serde(default)]
    pub servers: Vec<u64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A subnet of a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiSubnet {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub ip_range: Option<String>,
    pub network_zone: String,
    #[serde(default)]
    pub gateway: Option<String>,
}

/// An ssh key object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiSshKey {
    pub id: u64,
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `meta.pagination` of a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiPagination {
    pub page: u64,
    pub per_page: u64,
    #[serde(default)]
    pub previous_page: Option<u64>,
    #[serde(default)]
    pub next_page: Option<u64>,
    #[serde(default)]
    pub last_page: Option<u64>,
    #[serde(default)]
    pub total_entries: Option<u64>,
}

/// The answer to `POST /servers`.
#[derive(Clone, Debug, Deserialize)]
pub struct ApiCreateServer {
    pub server: ApiServer,
    pub action: ApiAction,
    #[serde(default)]
    pub next_actions: Vec<ApiAction>,
}

fn parse<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, StepError> {
    serde_json::from_value(value)
        .map_err(|e| StepError::Other(format!("hetzner: unexpected answer for {what}: {e}")))
}

/// A typed Hetzner Cloud client over [`Api`].
#[derive(Debug)]
pub struct Hcloud {
    api: Api,
    per_page: u32,
}

impl Hcloud {
    /// A client for `api` (which must be a Hetzner API).
    pub fn new(api: Api) -> Self {
        Hcloud { api, per_page: 50 }
    }

    /// The client configured in `ctx` (`HCLOUD_ENDPOINT`, `HCLOUD_TOKEN`) or with `token_file`.
    pub fn from_ctx(ctx: &Ctx, token_file: Option<&str>) -> Result<Self, StepError> {
        Ok(Hcloud::new(Api::from_ctx(
            Provider::Hetzner,
            ctx,
            token_file,
        )?))
    }

    /// Page size of lists (default 50, the API's maximum).
    pub fn per_page(mut self, n: u32) -> Self {
        self.per_page = n.max(1);
        self
    }

    /// The underlying API.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// Every item of a list endpoint (`key` is the array's name), following
    /// `meta.pagination.next_page` to the last page.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        filters: &[(&str, String)],
    ) -> Result<Vec<T>, StepError> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let mut query: Vec<(&str, String)> = filters.to_vec();
            query.push(("page", page.to_string()));
            query.push(("per_page", self.per_page.to_string()));
            let mut body = self.api.get(path, &query).await?;
            let items: Vec<T> = parse(path, body[key].take())?;
            out.extend(items);
            let pagination: Option<ApiPagination> =
                serde_json::from_value(body["meta"]["pagination"].take()).ok();
            match pagination.and_then(|p| p.next_page) {
                Some(next) if next > page => page = next,
                _ => return Ok(out),
            }
        }
    }

    /// The server named `name`, if any.
    pub async fn server_by_name(&self, name: &str) -> Result<Option<ApiServer>, StepError> {
        Ok(self
            .list::<ApiServer>("servers", "servers", &[("name", name.to_string())])
            .await?
            .into_iter()
            .find(|s| s.name == name))
    }

    /// Servers matching a label selector (`cluster=cluster-1,etcd=true`: both).
    pub async fn servers(&self, selector: Option<&str>) -> Result<Vec<ApiServer>, StepError> {
        let filters: Vec<(&str, String)> = selector
            .filter(|s| !s.is_empty())
            .map(|s| vec![("label_selector", s.to_string())])
            .unwrap_or_default();
        self.list("servers", "servers", &filters).await
    }

    /// `GET /servers/{id}`, `None` when it does not exist.
    pub async fn server(&self, id: u64) -> Result<Option<ApiServer>, StepError> {
        match self.api.get_opt(&format!("servers/{id}")).await? {
            Some(mut v) => Ok(Some(parse("server", v["server"].take())?)),
            None => Ok(None),
        }
    }

    /// All networks.
    pub async fn networks(&self) -> Result<Vec<ApiNetwork>, StepError> {
        self.list("networks", "networks", &[]).await
    }

    /// The network named `name`, if any.
    pub async fn network_by_name(&self, name: &str) -> Result<Option<ApiNetwork>, StepError> {
        Ok(self
            .list::<ApiNetwork>("networks", "networks", &[("name", name.to_string())])
            .await?
            .into_iter()
            .find(|n| n.name == name))
    }

    /// The ssh key with this fingerprint, if any.
    pub async fn ssh_key_by_fingerprint(&self, fp: &str) -> Result<Option<ApiSshKey>, StepError> {
        Ok(self
            .list::<ApiSshKey>("ssh_keys", "ssh_keys", &[("fingerprint", fp.to_string())])
            .await?
            .into_iter()
            .find(|k| k.fingerprint == fp))
    }

    /// The ssh key named `name`, if any.
    pub async fn ssh_key_by_name(&self, name: &str) -> Result<Option<ApiSshKey>, StepError> {
        Ok(self
            .list::<ApiSshKey>("ssh_keys", "ssh_keys", &[("name", name.to_string())])
            .await?
            .into_iter()
            .find(|k| k.name == name))
    }

    /// Poll `GET /actions/{id}` until `success`; an `error` status is an error.
    pub async fn wait_action(&self, id: u64, timeout: Duration) -> Result<ApiAction, StepError> {
        let what = format!("hetzner action {id}");
        let action: ApiAction = self
            .api
            .wait_until(&what, timeout, || async {
                let mut v = self.api.get(&format!("actions/{id}"), &[]).await?;
                let a: ApiAction = parse("action", v["action"].take())?;
                Ok((a.status != "running").then_some(a))
            })
            .await?;
        if action.status == "success" {
            return Ok(action);
        }
        let (code, message) = action
            .error
            .clone()
            .map(|e| (e.code, e.message))
            .unwrap_or_else(|| ("action_failed".into(), format!("status {}", action.status)));
        Err(StepError::Api {
            service: TARGET.into(),
            method: "GET".into(),
            path: format!("/actions/{id} ({})", action.command),
            status: 200,
            code,
            message,
        })
    }

    /// Poll the server until its status is `running`.
    pub async fn wait_running(
        &self,
        id: u64,
        name: &str,
        timeout: Duration,
    ) -> Result<ApiServer, StepError> {
        self.api
            .wait_until(
                &format!("hetzner server {name} to be running"),
                timeout,
                || async {
                    match self.server(id).await? {
                        Some(s) if s.status == "running" => Ok(Some(s)),
                        Some(_) => Ok(None),
                        None => Err(StepError::Other(format!(
                            "hetzner server {name} (id {id}) disappeared"
                        ))),
                    }
                },
            )
            .await
    }

    /// Create a server (see [`HcloudServer`]) and wait until it runs.
    pub async fn create_server(
        &self,
        spec: &HcloudServer,
        timeout: Duration,
    ) -> Result<ApiServer, StepError> {
        let mut network_ids = Vec::new();
        for n in &spec.networks {
            network_ids.push(match n {
                NetRef::Network(net) if net.id.parse::<u64>().is_ok() => {
                    net.id.parse::<u64>().unwrap_or(0)
                }
                NetRef::Id(id) => *id as u64,
                other => {
                    let name = other.name();
                    self.network_by_name(&name)
                        .await?
                        .ok_or_else(|| {
                            StepError::invalid(
                                "networks",
                                format!("hetzner network {name} does not exist"),
                            )
                        })?
                        .id
                }
            });
        }
        let ssh_keys: Vec<String> = spec
            .ssh_keys
            .iter()
            .map(|k| match k {
                KeyRef::Key(k) => k.name.clone(),
                KeyRef::Name(n) => n.clone(),
                KeyRef::Id(i) => i.to_string(),
            })
            .collect();
        let mut body = json!({
            "name": spec.name,
            "server_type": spec.server_type,
            "image": spec.image,
            "location": spec.location,
            "start_after_create": true,
            "ssh_keys": ssh_keys,
            "networks": network_ids,
            "labels": spec.labels,
        });
        if let Some(ud) = &spec.user_data {
            body["user_data"] = json!(ud);
        }
        let created = self
            .api
            .create("servers", &body, || async {
                Ok(self
                    .server_by_name(&spec.name)
                    .await?
                    .map(|s| json!({ "server": s })))
            })
            .await?;
        let id = match created {
            Created::New(v) => {
                let answer: ApiCreateServer = parse("create server", v)?;
                self.wait_action(answer.action.id, timeout).await?;
                for next in &answer.next_actions {
                    self.wait_action(next.id, timeout).await?;
                }
                answer.server.id
            }
            Created::Found(mut v) => {
                let s: ApiServer = parse("server", v["server"].take())?;
                s.id
            }
        };
        self.wait_running(id, &spec.name, timeout).await
    }
}

// ----- outputs -----

/// A Hetzner Cloud server as runbooks see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "Server", extra = crate::args::argument)]
pub struct Server {
    #[rhai_type(readonly)]
    pub name: String,
    /// Server id (a placeholder in plans until created).
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub status: String,
    /// Public IPv4 address.
    #[rhai_type(readonly)]
    pub ipv4: String,
    /// Private addresses by network name.
    #[rhai_type(skip)]
    pub private_ips: BTreeMap<String, String>,
    /// The first private address (empty when not attached to a network).
    #[rhai_type(readonly)]
    pub private_ip: String,
    #[rhai_type(skip)]
    pub labels: BTreeMap<String, String>,
    #[rhai_type(readonly)]
    pub server_type: String,
    #[rhai_type(readonly)]
    pub image: String,
    #[rhai_type(readonly)]
    pub location: String,
    /// Private key file `host()` uses, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[rhai_type(skip)]
    pub private_key: Option<String>,
}

impl Server {
    /// The server as seen through the API, with network ids resolved to names.
    pub fn from_api(s: &ApiServer, networks: &[ApiNetwork], private_key: Option<String>) -> Self {
        let private_ips: BTreeMap<String, String> = s
            .private_net
            .iter()
            .map(|p| {
                let name = networks
                    .iter()
                    .find(|n| n.id == p.network)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| p.network.to_string());
                (name, p.ip.clone())
            })
            .collect();
        Server {
            name: s.name.clone(),
            id: s.id.to_string(),
            status: s.status.clone(),
            ipv4: s
                .public_net
                .ipv4
                .as_ref()
                .map(|i| i.ip.clone())
                .unwrap_or_default(),
            private_ip: s
                .private_net
                .first()
                .map(|p| p.ip.clone())
                .unwrap_or_default(),
            private_ips,
            labels: s.labels.clone(),
            server_type: s.server_type.name.clone(),
            image: s
                .image
                .as_ref()
                .and_then(|i| i.name.clone())
                .unwrap_or_default(),
            location: s.datacenter.location.name.clone(),
            private_key,
        }
    }

    /// A cairn host for ssh: public address, private address, the key file.
    pub fn host(&self, key: Option<&str>) -> Host {
        let mut h = Host::new(&self.name, &self.ipv4);
        h.private_address = (!self.private_ip.is_empty()).then(|| self.private_ip.clone());
        h.key = key.or(self.private_key.as_deref()).map(PathBuf::from);
        h.labels = self.labels.clone();
        h.host_keys = HostKeys::Workspace;
        h
    }
}

/// A Hetzner Cloud network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "Network", extra = crate::args::argument)]
pub struct Network {
    #[rhai_type(readonly)]
    pub name: String,
    /// Network id (a placeholder in plans until created).
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub ip_range: String,
    #[rhai_type(skip)]
    pub subnets: Vec<SubnetSpec>,
}

// ----- steps -----

/// A subnet to add to a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// `eu-central`, `us-east`, `us-west`, `ap-southeast`.
    pub network_zone: String,
    /// `cloud` (default); `server` is accepted but deprecated by Hetzner.
    #[serde(rename = "type", default = "default_subnet_type")]
    pub kind: String,
    pub ip_range: String,
}

fn default_subnet_type() -> String {
    "cloud".into()
}

/// `hcloud_network`: a network with its subnets.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HcloudNetwork {
    pub name: String,
    pub ip_range: String,
    #[serde(default)]
    pub subnets: Vec<SubnetSpec>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub token_file: Option<String>,
}

/// What `hcloud_network` will do.
pub enum NetworkWork {
    Create,
    AddSubnets { id: u64, missing: Vec<SubnetSpec> },
}

fn show_subnet(s: &SubnetSpec) -> String {
    let deprecated = if s.kind == "server" {
        ", deprecated type"
    } else {
        ""
    };
    format!("{} ({} {}{deprecated})", s.ip_range, s.network_zone, s.kind)
}

impl HcloudNetwork {
    /// The ranges (the Step's `check`); a value known only after an earlier
    /// change is let through.
    fn validate(&self) -> Result<(), StepError> {
        if crate::unknown::is_unknown(&self.ip_range)
            || self
                .subnets
                .iter()
                .any(|s| crate::unknown::is_unknown(&s.ip_range))
        {
            return Ok(());
        }
        let net: ipnet::Ipv4Net = self.ip_range.parse().map_err(|_| {
            StepError::invalid(
                "ip_range",
                format!("`{}` is not an IPv4 CIDR", self.ip_range),
            )
        })?;
        for s in &self.subnets {
            let sub: ipnet::Ipv4Net = s.ip_range.parse().map_err(|_| {
                StepError::invalid("subnets", format!("`{}` is not an IPv4 CIDR", s.ip_range))
            })?;
            if !net.contains(&sub) {
                return Err(StepError::invalid(
                    "subnets",
                    format!(
                        "subnet {} is not inside the network's ip_range {}",
                        s.ip_range, self.ip_range
                    ),
                ));
            }
            if !matches!(s.kind.as_str(), "cloud" | "server") {
                return Err(StepError::invalid(
                    "subnets",
                    format!("subnet type `{}`: cairn creates `cloud` (or the deprecated `server`) subnets", s.kind),
                ));
            }
        }
        Ok(())
    }

    fn output(&self, id: String) -> Network {
        Network {
            name: self.name.clone(),
            id,
            ip_range: self.ip_range.clone(),
            subnets: self.subnets.clone(),
        }
    }

    fn create_action(&self) -> Action {
        let subnets: Vec<String> = self.subnets.iter().map(show_subnet).collect();
        let mut what = format!("network {} ({})", self.name, self.ip_range);
        if !subnets.is_empty() {
            what.push_str(&format!(" with subnet {}", subnets.join(", ")));
        }
        Action::create(TARGET, what)
    }
}

impl Step for HcloudNetwork {
    type Output = Network;
    type Work = NetworkWork;

    fn validate(&self) -> Result<(), StepError> {
        self.validate()
    }
    fn kind(&self) -> &'static str {
        "hcloud_network"
    }
    fn target(&self) -> String {
        TARGET.into()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Network, NetworkWork>, StepError> {
        this.validate()?;
        let client = Hcloud::from_ctx(ctx, this.token_file.as_deref())?;
        let existing = client.network_by_name(&this.name).await?;
        let facts = fingerprint(&existing);
        let Some(net) = existing else {
            let id = placeholder("create", &format!("{}.id", this.name));
            return Ok(Prepared::todo(
                vec![this.create_action()],
                facts,
                this.output(id),
                NetworkWork::Create,
            ));
        };
        if net.ip_range != this.ip_range {
            return Err(StepError::Other(format!(
                "network {} exists with ip_range {}, runbook asks {}",
                this.name, net.ip_range, this.ip_range
            )));
        }
        let mut missing = Vec::new();
        for want in &this.subnets {
            match net
                .subnets
                .iter()
                .find(|s| s.ip_range.as_deref() == Some(want.ip_range.as_str()))
            {
                None => missing.push(want.clone()),
                Some(have) if have.network_zone != want.network_zone || have.kind != want.kind => {
                    return Err(StepError::Other(format!(
                        "network {} has subnet {} in {} ({}), runbook asks {} ({})",
                        this.name,
                        want.ip_range,
                        have.network_zone,
                        have.kind,
                        want.network_zone,
                        want.kind
                    )))
                }
                Some(_) => {}
            }
        }
        let out = this.output(net.id.to_string());
        if missing.is_empty() {
            let action = Action::noop(
                TARGET,
                format!("network {} ({})", this.name, this.ip_range),
                "exists with the requested ip_range and subnets",
            );
            return Ok(Prepared::done(vec![action], facts, out));
        }
        let actions = missing
            .iter()
            .map(|s| {
                Action::change(
                    TARGET,
                    format!("network {}: add subnet {}", this.name, show_subnet(s)),
                )
            })
            .collect();
        Ok(Prepared::todo(
            actions,
            facts,
            out,
            NetworkWork::AddSubnets {
                id: net.id,
                missing,
            },
        ))
    }

    fn intent(this: &Valid<Self>) -> Prepared<Network, NetworkWork> {
        let id = placeholder("create", &format!("{}.id", this.name));
        Prepared::todo(
            vec![this.create_action()],
            String::new(),
            this.output(id),
            NetworkWork::Create,
        )
    }

    async fn apply(this: &Valid<Self>, ctx: &Ctx, work: NetworkWork) -> Result<Network, StepError> {
        let client = Hcloud::from_ctx(ctx, this.token_file.as_deref())?;
        let timeout = Duration::from_secs(120);
        let (id, missing) = match work {
            NetworkWork::AddSubnets { id, missing } => (id, missing),
            NetworkWork::Create => {
                let body =
                    json!({ "name": this.name, "ip_range": this.ip_range, "labels": this.labels });
                let created = client
                    .api
                    .create("networks", &body, || async {
                        Ok(client
                            .network_by_name(&this.name)
                            .await?
                            .map(|n| json!({ "network": n })))
                    })
                    .await?;
                let (Created::New(mut v) | Created::Found(mut v)) = created;
                let net: ApiNetwork = parse("network", v["network"].take())?;
                let missing = this
                    .subnets
                    .iter()
                    .filter(|want| {
                        !net.subnets
                            .iter()
                            .any(|s| s.ip_range.as_deref() == Some(&want.ip_range))
                    })
                    .cloned()
                    .collect();
                (net.id, missing)
            }
        };
        for subnet in &missing {
            let body = json!({ "type": subnet.kind, "ip_range": subnet.ip_range, "network_zone": subnet.network_zone });
            let created = client
                .api
                .create(
                    &format!("networks/{id}/actions/add_subnet"),
                    &body,
                    || async {
                        let net = client.network_by_name(&this.name).await?;
                        let has = net.is_some_and(|n| {
                            n.subnets
                                .iter()
                                .any(|s| s.ip_range.as_deref() == Some(&subnet.ip_range))
                        });
                        Ok(has.then(|| json!({})))
                    },
                )
                .await?;
            if let Created::New(mut v) = created {
                let action: ApiAction = parse("add_subnet", v["action"].take())?;
                client.wait_action(action.id, timeout).await?;
            }
        }
        Ok(this.output(id.to_string()))
    }
}

/// `hcloud_ssh_key`: an ssh key, reused if one with the same fingerprint exists.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HcloudSshKey {
    pub name: String,
    /// OpenSSH public key file (absolute, `~/...` or relative to the workspace).
    #[serde(default)]
    pub public_key_file: Option<String>,
    /// The public key itself.
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub token_file: Option<String>,
}

impl HcloudSshKey {
    fn source(&self) -> PublicKeySource {
        PublicKeySource {
            public_key_file: self.public_key_file.clone(),
            public_key: self.public_key.clone(),
        }
    }
}

impl Step for HcloudSshKey {
    type Output = SshKey;
    type Work = (String, String);

    /// Every argument is typed where the script calls it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "hcloud_ssh_key"
    }
    fn target(&self) -> String {
        TARGET.into()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<SshKey, (String, String)>, StepError> {
        let public_key = this.source().read(ctx)?;
        let fp = fingerprint_md5(&public_key)?;
        let private_key = this.source().private_key(ctx);
        let client = Hcloud::from_ctx(ctx, this.token_file.as_deref())?;
        let by_fp = client.ssh_key_by_fingerprint(&fp).await?;
        let by_name = match &by_fp {
            Some(_) => None,
            None => client.ssh_key_by_name(&this.name).await?,
        };
        let facts = fingerprint(&(&by_fp, &by_name));
        if let Some(k) = by_fp {
            let reason = if k.name == this.name {
                "exists with the same fingerprint".to_string()
            } else {
                format!(
                    "a key with the same fingerprint exists as {}; reusing it",
                    k.name
                )
            };
            let existing = SshKey {
                provider: TARGET.into(),
                name: k.name.clone(),
                id: k.id.to_string(),
                fingerprint: fp,
                private_key,
            };
            return Ok(existing.reused(&this.name, reason, facts));
        }
        if let Some(k) = by_name {
            return Err(StepError::Other(format!(
                "ssh key {} exists with fingerprint {}, the runbook's key has {}",
                this.name, k.fingerprint, fp
            )));
        }
        Ok(SshKey::to_create(
            TARGET,
            &this.name,
            fp,
            private_key,
            public_key,
            facts,
        ))
    }

    fn intent(this: &Valid<Self>) -> Prepared<SshKey, (String, String)> {
        SshKey::intent(TARGET, &this.name)
    }

    async fn apply(
        this: &Valid<Self>,
        ctx: &Ctx,
        (public_key, fp): (String, String),
    ) -> Result<SshKey, StepError> {
        let client = Hcloud::from_ctx(ctx, this.token_file.as_deref())?;
        let body = json!({ "name": this.name, "public_key": public_key, "labels": this.labels });
        let created = client
            .api
            .create("ssh_keys", &body, || async {
                Ok(client
                    .ssh_key_by_fingerprint(&fp)
                    .await?
                    .map(|k| json!({ "ssh_key": k })))
            })
            .await?;
        let (Created::New(mut v) | Created::Found(mut v)) = created;
        let k: ApiSshKey = parse("ssh key", v["ssh_key"].take())?;
        Ok(SshKey {
            provider: TARGET.into(),
            name: k.name,
            id: k.id.to_string(),
            fingerprint: k.fingerprint,
            private_key: this.source().private_key(ctx),
        })
    }
}

/// A network in a server spec: a name, an id or a network handle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NetRef {
    Network(Network),
    Name(String),
    Id(i64),
}

impl NetRef {
    fn name(&self) -> String {
        match self {
            NetRef::Network(n) => n.name.clone(),
            NetRef::Name(n) => n.clone(),
            NetRef::Id(i) => i.to_string(),
        }
    }
}

/// `hcloud_server`: a server, created and waited for until it runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HcloudServer {
    pub name: String,
    pub server_type: String,
    pub image: String,
    pub location: String,
    #[serde(default)]
    pub ssh_keys: Vec<KeyRef>,
    #[serde(default)]
    pub networks: Vec<NetRef>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Cloud-init user data.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Private key file for `host()` (default: the key handle's).
    #[serde(default)]
    pub private_key: Option<String>,
    /// Seconds to wait for the server to run (default 600).
    #[serde(default)]
    pub timeout: Option<u64>,
    #[serde(default)]
    pub token_file: Option<String>,
}

/// What `hcloud_server` will do.
pub enum ServerWork {
    Create,
    /// It exists but is not running yet (an interrupted earlier run).
    Wait(u64),
}

impl HcloudServer {
    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout.unwrap_or(600))
    }

    fn key(&self) -> Option<String> {
        pick_private_key(&self.private_key, &self.ssh_keys)
    }

    /// How an existing server differs from this spec (empty: it matches).
    pub fn differences(&self, s: &ApiServer, networks: &[ApiNetwork]) -> Vec<String> {
        let mut diffs = Vec::new();
        let mut differ = |field: &str, have: &str, want: &str| {
            if have != want {
                diffs.push(format!("{field} {have}, runbook asks {want}"));
            }
        };
        differ("server_type", &s.server_type.name, &self.server_type);
        if let Some(image) = s.image.as_ref().and_then(|i| i.name.as_deref()) {
            differ("image", image, &self.image);
        }
        differ("location", &s.datacenter.location.name, &self.location);
        for (k, v) in &self.labels {
            match s.labels.get(k) {
                Some(have) if have == v => {}
                Some(have) => diffs.push(format!("label {k}={have}, runbook asks {k}={v}")),
                None => diffs.push(format!("no label {k}, runbook asks {k}={v}")),
            }
        }
        for n in &self.networks {
            let name = n.name();
            let attached = s.private_net.iter().any(|p| {
                p.network.to_string() == name
                    || networks
                        .iter()
                        .any(|net| net.id == p.network && net.name == name)
            });
            if !attached {
                diffs.push(format!(
                    "no attachment to network {name}, runbook asks for one"
                ));
            }
        }
        diffs
    }

    fn create_action(&self) -> Action {
        let mut what = format!(
            "server {} ({}, {}, {})",
            self.name, self.server_type, self.image, self.location
        );
        if !self.labels.is_empty() {
            what.push_str(&format!(" labels {}", show_labels(&self.labels)));
        }
        let nets: Vec<String> = self.networks.iter().map(NetRef::name).collect();
        if !nets.is_empty() {
            what.push_str(&format!(" networks {}", nets.join(",")));
        }
        Action::create(TARGET, what)
    }

    fn predicted(&self) -> Server {
        let p = |what: &str| placeholder("create", &format!("{}.{what}", self.name));
        let private_ips: BTreeMap<String, String> = self
            .networks
            .iter()
            .map(|n| (n.name(), p(&format!("private_ips.{}", n.name()))))
            .collect();
        Server {
            name: self.name.clone(),
            id: p("id"),
            status: "running".into(),
            ipv4: p("ipv4"),
            private_ip: if self.networks.is_empty() {
                String::new()
            } else {
                p("private_ip")
            },
            private_ips,
            labels: self.labels.clone(),
            server_type: self.server_type.clone(),
            image: self.image.clone(),
            location: self.location.clone(),
            private_key: self.key(),
        }
    }
}

impl Step for HcloudServer {
    type Output = Server;
    type Work = ServerWork;

    /// Every argument is typed where the script calls it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "hcloud_server"
    }
    fn target(&self) -> String {
        TARGET.into()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Server, ServerWork>, StepError> {
        let client = Hcloud::from_ctx(ctx, this.token_file.as_deref())?;
        let existing = client.server_by_name(&this.name).await?;
        let Some(s) = existing else {
            let facts = fingerprint(&Option::<ApiServer>::None);
            return Ok(Prepared::todo(
                vec![this.create_action()],
                facts,
                this.predicted(),
                ServerWork::Create,
            ));
        };
        let networks = client.networks().await?;
        let facts = fingerprint(&(
            &s.id,
            &s.server_type,
            &s.image,
            &s.datacenter.location,
            &s.labels,
            &s.private_net,
        ));
        let diffs = this.differences(&s, &networks);
        if !diffs.is_empty() {
            return Err(StepError::Other(format!(
                "server {} exists with {}",
                this.name,
                diffs.join("; ")
            )));
        }
        let out = Server::from_api(&s, &networks, this.key());
        let what = format!("server {}", this.name);
        if s.status == "running" {
            let action = Action::noop(TARGET, what, "exists with the same spec, running");
            return Ok(Prepared::done(vec![action], facts, out));
        }
        let action = Action::noop(
            TARGET,
            what,
            format!(
                "exists with the same spec ({}); will wait until running",
                s.status
            ),
        );
        Ok(Prepared::todo(
            vec![action],
            facts,
            this.predicted(),
            ServerWork::Wait(s.id),
        ))
    }

    fn intent(this: &Valid<Self>) -> Prepared<Server, ServerWork> {
        Prepared::todo(
            vec![this.create_action()],
            String::new(),
            this.predicted(),
            ServerWork::Create,
        )
    }

    async fn apply(this: &Valid<Self>, ctx: &Ctx, work: ServerWork) -> Result<Server, StepError> {
        let client = Hcloud::from_ctx(ctx, this.token_file.as_deref())?;
        let server = match work {
            ServerWork::Create => client.create_server(this, this.timeout()).await?,
            ServerWork::Wait(id) => client.wait_running(id, &this.name, this.timeout()).await?,
        };
        let networks = client.networks().await?;
        Ok(Server::from_api(&server, &networks, this.key()))
    }
}

/// `hcloud_servers`: servers matching a label selector (read-only).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HcloudServers {
    /// Label selector: `cluster=cluster-1,etcd=true` means both.
    #[serde(default)]
    pub selector: String,
    /// Private key file for the servers' `host()`.
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub token_file: Option<String>,
}

impl Step for HcloudServers {
    type Output = Vec<Server>;
    type Work = ();

    /// Every argument is typed where the script calls it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "hcloud_servers"
    }
    fn target(&self) -> String {
        TARGET.into()
    }

    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Vec<Server>, ()>, StepError> {
        let client = Hcloud::from_ctx(ctx, this.token_file.as_deref())?;
        let servers = client.servers(Some(&this.selector)).await?;
        let networks = if servers.iter().any(|s| !s.private_net.is_empty()) {
            client.networks().await?
        } else {
            Vec::new()
        };
        let mut out: Vec<Server> = servers
            .iter()
            .map(|s| Server::from_api(s, &networks, this.private_key.clone()))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = out.iter().map(|s| s.name.as_str()).collect();
        let action = Action::noop(
            TARGET,
            format!("list servers {}", this.selector),
            format!("read-only; found {}: {}", out.len(), names.join(", ")),
        );
        Ok(Prepared::done(vec![action], fingerprint(&names), out))
    }

    fn intent(this: &Valid<Self>) -> Prepared<Vec<Server>, ()> {
        let action = Action::noop(
            TARGET,
            format!("list servers {}", this.selector),
            "read-only; not listed offline",
        );
        Prepared::done(vec![action], String::new(), Vec::new())
    }

    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Vec<Server>, StepError> {
        Ok(this.prepare(ctx).await?.predicted)
    }
}

/// What a delete step removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Server,
    Network,
    SshKey,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Network => "network",
            Kind::SshKey => "ssh key",
        }
    }
}

/// `hcloud_delete_server`, `hcloud_delete_network`, `hcloud_delete_ssh_key`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HcloudDelete {
    pub kind: Kind,
    pub name: String,
    #[serde(default)]
    pub token_file: Option<String>,
}

/// Arguments of the delete functions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteArgs {
    pub name: String,
    #[serde(default)]
    pub token_file: Option<String>,
}

impl HcloudDelete {
    async fn find(&self, client: &Hcloud) -> Result<Option<u64>, StepError> {
        Ok(match self.kind {
            Kind::Server => client.server_by_name(&self.name).await?.map(|s| s.id),
            Kind::Network => client.network_by_name(&self.name).await?.map(|n| n.id),
            Kind::SshKey => client.ssh_key_by_name(&self.name).await?.map(|k| k.id),
        })
    }
    fn what(&self) -> String {
        format!("{} {}", self.kind.noun(), self.name)
    }
}

impl Step for HcloudDelete {
    type Output = Removed;
    type Work = u64;

    /// Every argument is typed where the script calls it; nothing else can
    /// be checked without facts.
    fn validate(&self) -> Result<(), StepError> {
        Ok(())
    }
    fn kind(&self) -> &'static str {
        match self.kind {
            Kind::Server => "hcloud_delete_server",
            Kind::Network => "hcloud_delete_network",
            Kind::SshKey => "hcloud_delete_ssh_key",
        }
    }
    fn target(&self) -> String {
        TARGET.into()
    }

    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<Removed, u64>, StepError> {
        let client = Hcloud::from_ctx(ctx, this.token_file.as_deref())?;
        let id = this.find(&client).await?;
        let facts = fingerprint(&id);
        let what = format!("{} {}", this.kind.noun(), this.name);
        match id {
            None => Ok(Prepared::done(
                vec![Action::noop(TARGET, this.what(), "does not exist")],
                facts,
                Removed { what, count: 0 },
            )),
            Some(id) => Ok(Prepared::todo(
                vec![Action::delete(TARGET, format!("{} (id {id})", this.what()))],
                facts,
                Removed { what, count: 1 },
                id,
            )),
        }
    }

    fn intent(this: &Valid<Self>) -> Prepared<Removed, u64> {
        Prepared::todo(
            vec![Action::delete(
                TARGET,
                format!("{} (if it exists)", this.what()),
            )],
            String::new(),
            Removed {
                what: format!("{} {}", this.kind.noun(), this.name),
                count: 1,
            },
            0,
        )
    }

    async fn apply(this: &Valid<Self>, ctx: &Ctx, id: u64) -> Result<Removed, StepError> {
        let client = Hcloud::from_ctx(ctx, this.token_file.as_deref())?;
        let path = match this.kind {
            Kind::Server => format!("servers/{id}"),
            Kind::Network => format!("networks/{id}"),
            Kind::SshKey => format!("ssh_keys/{id}"),
        };
        let answer = client.api.delete(&path, &[]).await?;
        if let Some(mut v) = answer {
            if !v["action"].is_null() {
                let action: ApiAction = parse("delete", v["action"].take())?;
                client
                    .wait_action(action.id, Duration::from_secs(300))
                    .await?;
            }
        }
        Ok(Removed {
            what: format!("{} {}", this.kind.noun(), this.name),
            count: 1,
        })
    }
}

// ----- Rhai -----

type Res<T> = Result<T, Box<EvalAltResult>>;

fn servers_array(servers: Vec<Server>) -> Array {
    servers.into_iter().map(Dynamic::from).collect()
}

/// Register the Hetzner functions and the `Server` and `Network` types.
pub fn register(engine: &mut Engine, exec: &Arc<Executor>) {
    engine
        .build_type::<Server>()
        .register_get("private_ips", |s: &mut Server| {
            s.private_ips
                .iter()
                .map(|(k, v)| (k.into(), Dynamic::from(v.clone())))
                .collect::<Map>()
        })
        .register_get("labels", |s: &mut Server| {
            s.labels
                .iter()
                .map(|(k, v)| (k.into(), Dynamic::from(v.clone())))
                .collect::<Map>()
        })
        .register_fn("to_string", |s: &mut Server| {
            format!("{} ({})", s.name, s.ipv4)
        })
        .register_fn("to_debug", |s: &mut Server| {
            format!(
                "Server({} id={} {} {} private={})",
                s.name, s.id, s.status, s.ipv4, s.private_ip
            )
        });
    engine
        .build_type::<Network>()
        .register_fn("to_string", |n: &mut Network| {
            format!("{} ({})", n.name, n.ip_range)
        });

    crate::registration::function!(
        engine,
        /// The server as a `Host` for ssh: public IPv4 as address, first private IP as
        /// private_address, the private key of the ssh key handle it was created with
        /// (or `private_key`), host keys pinned in the workspace on first contact.
        fn "host"("server: Server") -> "Host" = |s: &mut Server| s.host(None)
    );
    crate::registration::function!(
        engine,
        /// The server as a `Host` for ssh, connecting with the given private key file.
        fn "host"("server: Server", "private_key: &str") -> "Host" =
        |s: &mut Server, key: &str| s.host(Some(key))
    );

    crate::registration::function!(
        engine,
        /// Ensure a Hetzner Cloud network exists with its subnets.
        ///
        /// `hcloud_network(#{ name, ip_range, subnets: [#{ network_zone, type?, ip_range }], labels?, token_file? })`
        ///
        /// `type` is `cloud` by default; `server` is accepted (deprecated by Hetzner).
        /// An existing network with the same ip_range is adopted and missing subnets are
        /// added; a different ip_range or subnet zone is an error.
        fn "hcloud_network"("spec: Map") -> "Network" =
        crate::registration::map_step::<HcloudNetwork>(exec, "hcloud_network")
    );
    crate::registration::function!(
        engine,
        /// Ensure an ssh key is known to Hetzner Cloud.
        ///
        /// `hcloud_ssh_key(#{ name, public_key_file | public_key, labels?, token_file? })`
        ///
        /// A key with the same (MD5) fingerprint is reused whatever its name; a key with
        /// this name but another fingerprint is an error. The private key next to
        /// `public_key_file` (without `.pub`) is what servers' `host()` connect with.
        fn "hcloud_ssh_key"("spec: Map") -> "SshKey" =
        crate::registration::map_step::<HcloudSshKey>(exec, "hcloud_ssh_key")
    );
    crate::registration::function!(
        engine,
        /// Ensure a Hetzner Cloud server exists and runs.
        ///
        /// `hcloud_server(#{ name, server_type, image, location, ssh_keys: [SshKey | name], networks: [Network | name], labels?, user_data?, private_key?, timeout?, token_file? })`
        ///
        /// Waits for the create action and the server to run, then returns it with its
        /// addresses. A server with this name and the same spec is adopted; one with a
        /// different spec is an error naming what differs.
        fn "hcloud_server"("spec: Map") -> "Server" =
        crate::registration::map_step::<HcloudServer>(exec, "hcloud_server")
    );
    crate::registration::function!(
        engine,
        /// Servers matching a label selector, sorted by name (read-only; runs in plans too).
        ///
        /// `hcloud_servers(#{ selector, private_key?, token_file? })` — `cluster=cluster-1,etcd=true`
        /// means both labels; `!=`, `key`, `!key`, `in (...)` and `notin (...)` work too.
        fn "hcloud_servers"("query: Map") -> "Array" =
        crate::registration::map_step_then::<HcloudServers, _>(
            exec,
            "hcloud_servers",
            servers_array,
        )
    );
    crate::registration::documented! {
        /// Delete a Hetzner Cloud server by name and wait for it to be gone (no-op if absent).
        ///
        /// `hcloud_delete_server(#{ name, token_file? })`
        const DELETE_SERVER;
    }
    crate::registration::documented! {
        /// Delete a Hetzner Cloud network by name (no-op if absent).
        ///
        /// `hcloud_delete_network(#{ name, token_file? })`
        const DELETE_NETWORK;
    }
    crate::registration::documented! {
        /// Delete a Hetzner Cloud ssh key by name (no-op if absent).
        ///
        /// `hcloud_delete_ssh_key(#{ name, token_file? })`
        const DELETE_SSH_KEY;
    }
    for (name, kind, doc) in [
        ("hcloud_delete_server", Kind::Server, DELETE_SERVER),
        ("hcloud_delete_network", Kind::Network, DELETE_NETWORK),
        ("hcloud_delete_ssh_key", Kind::SshKey, DELETE_SSH_KEY),
    ] {
        let x = exec.clone();
        crate::registration::function!(
            engine,
            fn name("spec: Map") -> "Removed" as doc =
            move |call: NativeCallContext, args: Map| -> Res<Removed> {
                let a: DeleteArgs = crate::args::parse(&call, name, args)?;
                if a.name.is_empty() {
                    return Err(script_error(format!("{name}: `name` is empty")));
                }
                x.exec(
                    &call,
                    HcloudDelete {
                        kind,
                        name: a.name,
                        token_file: a.token_file,
                    },
                )
            }
        );
    }
}
