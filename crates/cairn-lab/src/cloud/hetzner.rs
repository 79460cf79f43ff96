//! The Hetzner Cloud API emulation (`/v1`): servers, networks with subnets,
//! ssh keys and actions, as in the public reference (<https://docs.hetzner.cloud>).
//!
//! Servers boot as lab nodes (always the lab's Debian image, whatever `image`
//! says); their private addresses come from the attached network's subnet in
//! the location's network zone, `.2` upwards (`.1` of the network is the
//! gateway), as Hetzner allocates them.

// Handlers answer errors as ready HTTP responses; boxing them buys nothing.
#![allow(clippy::result_large_err)]

use super::faults::{error, Api};
use super::hetzner_catalog::{self as catalog, Kind};
use super::listing::Listing;
use super::{json, no_content, timestamp, Cloud};
use crate::{NodeSpec, PrivateAttachment};
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json as j, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

pub use super::hetzner_catalog::{IMAGES, LOCATIONS, SERVER_TYPES};

/// The Hetzner part of the emulation's state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub servers: BTreeMap<u64, Server>,
    pub networks: BTreeMap<u64, Network>,
    pub ssh_keys: BTreeMap<u64, SshKey>,
    pub actions: BTreeMap<u64, Action>,
}

/// A server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Server {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub server_type: String,
    pub image: String,
    pub location: String,
    pub labels: BTreeMap<String, String>,
    pub created: String,
    /// Public IPv4, known once its node is up.
    pub ipv4: Option<String>,
    /// `(network id, address)`.
    pub private: Vec<(u64, String)>,
    /// Public keys the node accepts.
    pub authorized_keys: Vec<String>,
    /// The lab node behind it: `hc-<id>` (its hostname is the server's
    /// name). Empty in state saved before nodes were named by id: then the
    /// node is named like the server.
    #[serde(default)]
    pub node: String,
}

impl Server {
    /// The lab node behind this server.
    pub fn node(&self) -> String {
        if self.node.is_empty() {
            self.name.clone()
        } else {
            self.node.clone()
        }
    }
}

/// The lab node behind server `id`: named after the id, never after the
/// server's name, so that a droplet or another server with the same name
/// never shares (or deletes) its host.
pub fn node_name(id: u64) -> String {
    format!("hc-{id}")
}

/// A network.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Network {
    pub id: u64,
    pub name: String,
    pub ip_range: String,
    pub subnets: Vec<Subnet>,
    pub labels: BTreeMap<String, String>,
    pub created: String,
}

/// A subnet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Subnet {
    pub kind: String,
    pub ip_range: String,
    pub network_zone: String,
}

/// An ssh key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SshKey {
    pub id: u64,
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
    pub labels: BTreeMap<String, String>,
    pub created: String,
}

/// An action.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Action {
    pub id: u64,
    pub command: String,
    pub status: String,
    pub progress: u64,
    pub started: String,
    pub finished: Option<String>,
    /// `(id, type)`.
    pub resources: Vec<(u64, String)>,
    /// `(code, message)`.
    pub error: Option<(String, String)>,
}

impl Action {
    fn json(&self) -> Value {
        j!({
            "id": self.id,
            "command": self.command,
            "status": self.status,
            "progress": self.progress,
            "started": self.started,
            "finished": self.finished,
            "resources": self.resources.iter().map(|(id, t)| j!({"id": id, "type": t})).collect::<Vec<_>>(),
            "error": self.error.as_ref().map(|(c, m)| j!({"code": c, "message": m})),
        })
    }
    fn finish(&mut self, error: Option<(String, String)>) {
        self.status = if error.is_some() { "error" } else { "success" }.into();
        self.progress = 100;
        self.finished = Some(timestamp(false));
        self.error = error;
    }
}

fn new_action(w: &mut super::World, command: &str, resources: Vec<(u64, String)>) -> u64 {
    let id = w.next_id();
    w.hetzner.actions.insert(
        id,
        Action {
            id,
            command: command.into(),
            status: "running".into(),
            progress: 0,
            started: timestamp(false),
            finished: None,
            resources,
            error: None,
        },
    );
    id
}

fn server_json(s: &Server) -> Value {
    let type_index = Kind::ServerType.by_name(&s.server_type);
    let (_, _, _, disk, _) = type_index
        .map(|i| SERVER_TYPES[i])
        .unwrap_or(("", 0, 0, 0, ""));
    j!({
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "created": s.created,
        "public_net": {
            "ipv4": s.ipv4.as_ref().map(|ip| j!({"id": s.id, "ip": ip, "blocked": false, "dns_ptr": format!("static.{ip}.clients.your-server.de")})),
            "ipv6": null,
            "floating_ips": [],
            "firewalls": []
        },
        "private_net": s.private.iter().map(|(net, ip)| j!({
            "network": net, "ip": ip, "alias_ips": [], "mac_address": mac(s.id, *net)
        })).collect::<Vec<_>>(),
        "server_type": type_index.map(catalog::server_type_json),
        // `datacenter` for older clients (hcloud-go 1.x, the CLI of Debian
        // 12), `location` as the current reference has it.
        "datacenter": Kind::Location.by_name(&s.location).map(catalog::datacenter_json),
        "location": Kind::Location.by_name(&s.location).map(catalog::location_json),
        "image": Kind::Image.by_name(&s.image).map(catalog::image_json),
        "iso": null,
        "rescue_enabled": false,
        "locked": false,
        "backup_window": null,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": 21990232555520u64,
        "protection": {"delete": false, "rebuild": false},
        "labels": s.labels,
        "volumes": [],
        "load_balancers": [],
        "primary_disk_size": disk,
        "placement_group": null
    })
}

fn mac(server: u64, net: u64) -> String {
    let b = (server.wrapping_mul(31) ^ net).to_be_bytes();
    format!("86:00:{:02x}:{:02x}:{:02x}:{:02x}", b[4], b[5], b[6], b[7])
}

fn network_json(n: &Network, servers: &BTreeMap<u64, Server>) -> Value {
    let gateway = first_host(&n.ip_range);
    j!({
        "id": n.id,
        "name": n.name,
        "ip_range": n.ip_range,
        "subnets": n.subnets.iter().map(|s| j!({
            "type": s.kind, "ip_range": s.ip_range, "network_zone": s.network_zone, "gateway": gateway
        })).collect::<Vec<_>>(),
        "routes": [],
        "servers": servers.values().filter(|s| s.private.iter().any(|(id, _)| *id == n.id)).map(|s| s.id).collect::<Vec<_>>(),
        "load_balancers": [],
        "protection": {"delete": false},
        "labels": n.labels,
        "created": n.created,
        "expose_routes_to_vswitch": false
    })
}

fn key_json(k: &SshKey) -> Value {
    j!({
        "id": k.id, "name": k.name, "fingerprint": k.fingerprint,
        "public_key": k.public_key, "labels": k.labels, "created": k.created
    })
}

fn first_host(cidr: &str) -> String {
    cidr.parse::<ipnet::Ipv4Net>()
        .ok()
        .and_then(|n| n.hosts().next())
        .map(|a| a.to_string())
        .unwrap_or_default()
}

// ----- label selectors -----

/// One requirement of a label selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Eq(String, String),
    Ne(String, String),
    Has(String),
    HasNot(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// Parse a label selector: comma-separated requirements (all must hold):
/// `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.
pub fn parse_selector(s: &str) -> Result<Vec<Requirement>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced parentheses in `{s}`"));
        }
    }
    parts.push(&s[start..]);
    let mut reqs = Vec::new();
    for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let set = |rest: &str| -> Result<Vec<String>, String> {
            let inner = rest
                .trim()
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(|| format!("expected `(v1,v2)` in `{p}`"))?;
            Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
        };
        let req = if let Some((k, v)) = p.split_once("!=") {
            Requirement::Ne(k.trim().into(), v.trim().into())
        } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
            Requirement::Eq(k.trim().into(), v.trim().into())
        } else if let Some((k, rest)) = p.split_once(" notin ") {
            Requirement::NotIn(k.trim().into(), set(rest)?)
        } else if let Some((k, rest)) = p.split_once(" in ") {
            Requirement::In(k.trim().into(), set(rest)?)
        } else if let Some(k) = p.strip_prefix('!') {
            Requirement::HasNot(k.trim().into())
        } else {
            Requirement::Has(p.into())
        };
        let key = match &req {
            Requirement::Eq(k, _)
            | Requirement::Ne(k, _)
            | Requirement::Has(k)
            | Requirement::HasNot(k)
            | Requirement::In(k, _)
            | Requirement::NotIn(k, _) => k,
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("invalid requirement `{p}`"));
        }
        reqs.push(req);
    }
    Ok(reqs)
}

/// Whether `labels` satisfy every requirement.
pub fn matches(reqs: &[Requirement], labels: &BTreeMap<String, String>) -> bool {
    reqs.iter().all(|r| match r {
        Requirement::Eq(k, v) => labels.get(k) == Some(v),
        Requirement::Ne(k, v) => labels.get(k) != Some(v),
        Requirement::Has(k) => labels.contains_key(k),
        Requirement::HasNot(k) => !labels.contains_key(k),
        Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
        Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
    })
}

// ----- handlers -----

type Q = Listing;
type St = AxState<Arc<Cloud>>;

fn err(status: StatusCode, code: &str, message: &str) -> Response {
    error(Api::Hetzner, status, code, message)
}

fn not_found(what: &str) -> Response {
    err(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("{what} not found"),
    )
}

fn invalid(message: &str) -> Response {
    err(StatusCode::BAD_REQUEST, "invalid_input", message)
}

fn body(bytes: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(bytes).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "json_error",
            &format!("invalid JSON: {e}"),
        )
    })
}

/// A page of `items` sorted by the request's `sort` (fields of `sortable`),
/// with `meta.pagination` (default 25 per page, at most 50) and a `Link`
/// header naming the previous, next and last pages, as the reference's
/// "Pagination" section shows them.
fn page(key: &str, mut items: Vec<Value>, q: &Listing, sortable: &[&str]) -> Response {
    if let Err(e) = q.sort(&mut items, sortable) {
        return invalid(&format!("invalid input in field 'sort': {e}"));
    }
    let w = match q.window(items.len() as u64, 25, 50) {
        Ok(w) => w,
        Err(e) => return invalid(&format!("invalid input: {e}")),
    };
    let slice: Vec<Value> = items
        .into_iter()
        .skip(((w.page - 1) * w.per_page) as usize)
        .take(w.per_page as usize)
        .collect();
    let mut links = Vec::new();
    if w.page > 1 {
        links.push(format!(
            "<{}>; rel=\"prev\"",
            q.page_url(w.page - 1, w.per_page)
        ));
    }
    if w.page < w.last_page {
        links.push(format!(
            "<{}>; rel=\"next\"",
            q.page_url(w.page + 1, w.per_page)
        ));
    }
    links.push(format!(
        "<{}>; rel=\"last\"",
        q.page_url(w.last_page, w.per_page)
    ));
    let mut resp = json(
        StatusCode::OK,
        j!({
            key: slice,
            "meta": {"pagination": {
                "page": w.page,
                "per_page": w.per_page,
                "previous_page": (w.page > 1).then(|| w.page - 1),
                "next_page": (w.page < w.last_page).then(|| w.page + 1),
                "last_page": w.last_page,
                "total_entries": w.total
            }}
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&links.join(", ")) {
        resp.headers_mut().insert("link", v);
    }
    resp
}

fn selector(q: &Listing) -> Result<Vec<Requirement>, Response> {
    match q.get("label_selector") {
        None => Ok(Vec::new()),
        Some(s) => parse_selector(s).map_err(|e| invalid(&format!("invalid label_selector: {e}"))),
    }
}

/// Fields actions sort by.
const ACTION_SORTS: &[&str] = &["id", "command", "status", "progress", "started", "finished"];

/// `GET /actions/{id}`.
async fn get_action(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let w = cloud.world();
    match w.hetzner.actions.get(&id) {
        Some(a) => json(StatusCode::OK, j!({ "action": a.json() })),
        None => not_found("action"),
    }
}

/// The actions with the request's `id`s (required, as in the reference
/// since the listing of every action was removed) and `status`es.
fn actions_page(cloud: &Cloud, q: &Listing, resource: Option<(u64, &str)>) -> Response {
    let mut ids = Vec::new();
    for v in q.all("id") {
        match v.parse::<u64>() {
            Ok(id) => ids.push(id),
            Err(_) => return invalid(&format!("invalid input in field 'id': `{v}` is not an ID")),
        }
    }
    if resource.is_none() && ids.is_empty() {
        return invalid("invalid input in field 'id': give the actions' IDs (id=1&id=2)");
    }
    let statuses = q.all("status");
    if let Some(s) = statuses
        .iter()
        .find(|s| !matches!(**s, "running" | "success" | "error"))
    {
        return invalid(&format!(
            "invalid input in field 'status': `{s}` (running, success or error)"
        ));
    }
    let w = cloud.world();
    let items = w
        .hetzner
        .actions
        .values()
        .filter(|a| ids.is_empty() || ids.contains(&a.id))
        .filter(|a| statuses.is_empty() || statuses.contains(&a.status.as_str()))
        .filter(|a| {
            resource.is_none_or(|(id, kind)| a.resources.iter().any(|(i, k)| *i == id && k == kind))
        })
        .map(Action::json)
        .collect();
    page("actions", items, q, ACTION_SORTS)
}

/// `GET /actions?id=..&id=..[&status=..][&sort=..]`.
async fn list_actions(AxState(cloud): St, q: Q) -> Response {
    actions_page(&cloud, &q, None)
}

/// `GET /{servers|networks}/{id}/actions`: the resource's actions.
async fn resource_actions(cloud: &Cloud, kind: &str, id: u64, q: &Listing) -> Response {
    let exists = {
        let w = cloud.world();
        match kind {
            "server" => w.hetzner.servers.contains_key(&id),
            _ => w.hetzner.networks.contains_key(&id),
        }
    };
    if !exists {
        return not_found(kind);
    }
    actions_page(cloud, q, Some((id, kind)))
}

/// `GET /{servers|networks}/{id}/actions/{action_id}` and
/// `GET /{servers|networks}/actions/{action_id}`: one action of that kind
/// of resource (of that resource, when `id` is given).
fn resource_action(cloud: &Cloud, kind: &str, id: Option<u64>, action_id: u64) -> Response {
    let w = cloud.world();
    match w.hetzner.actions.get(&action_id).filter(|a| {
        a.resources
            .iter()
            .any(|(i, k)| k == kind && id.is_none_or(|id| id == *i))
    }) {
        Some(a) => json(StatusCode::OK, j!({ "action": a.json() })),
        None => not_found("action"),
    }
}

async fn server_actions(AxState(cloud): St, Path(id): Path<u64>, q: Q) -> Response {
    resource_actions(&cloud, "server", id, &q).await
}

async fn server_action(AxState(cloud): St, Path((id, action)): Path<(u64, u64)>) -> Response {
    resource_action(&cloud, "server", Some(id), action)
}

async fn any_server_action(AxState(cloud): St, Path(action): Path<u64>) -> Response {
    resource_action(&cloud, "server", None, action)
}

async fn network_actions(AxState(cloud): St, Path(id): Path<u64>, q: Q) -> Response {
    resource_actions(&cloud, "network", id, &q).await
}

async fn network_action(AxState(cloud): St, Path((id, action)): Path<(u64, u64)>) -> Response {
    resource_action(&cloud, "network", Some(id), action)
}

async fn any_network_action(AxState(cloud): St, Path(action): Path<u64>) -> Response {
    resource_action(&cloud, "network", None, action)
}

/// `GET /servers[?name=][&status=][&label_selector=][&sort=]`.
async fn list_servers(AxState(cloud): St, q: Q) -> Response {
    let reqs = match selector(&q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let statuses = q.all("status");
    let w = cloud.world();
    let items = w
        .hetzner
        .servers
        .values()
        .filter(|s| q.get("name").is_none_or(|n| s.name == n))
        .filter(|s| statuses.is_empty() || statuses.contains(&s.status.as_str()))
        .filter(|s| matches(&reqs, &s.labels))
        .map(server_json)
        .collect();
    page("servers", items, &q, &["id", "name", "created"])
}

/// `GET /{locations|datacenters|server_types|images}[?name=]`: the catalog.
fn catalog_page(kind: Kind, key: &str, q: &Listing) -> Response {
    let reqs = match selector(q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let items = kind
        .all()
        .into_iter()
        .filter(|v| q.get("name").is_none_or(|n| v["name"] == n))
        .filter(|v| {
            kind != Kind::Image
                || (q.get("type").is_none_or(|t| v["type"] == t)
                    && q.get("architecture").is_none_or(|a| v["architecture"] == a)
                    && q.all("status").iter().all(|s| v["status"] == *s)
                    && matches(&reqs, &BTreeMap::new()))
        })
        .collect();
    page(key, items, q, &["id", "name"])
}

/// `GET /{kind}/{id}`: one catalog entry.
fn catalog_entry(kind: Kind, key: &str, id: u64) -> Response {
    match kind.by_id(id) {
        Some(i) => json(StatusCode::OK, j!({ key: kind.json(i) })),
        None => not_found(key),
    }
}

async fn list_locations(q: Q) -> Response {
    catalog_page(Kind::Location, "locations", &q)
}
async fn get_location(Path(id): Path<u64>) -> Response {
    catalog_entry(Kind::Location, "location", id)
}
async fn list_datacenters(q: Q) -> Response {
    catalog_page(Kind::Datacenter, "datacenters", &q)
}
async fn get_datacenter(Path(id): Path<u64>) -> Response {
    catalog_entry(Kind::Datacenter, "datacenter", id)
}
async fn list_server_types(q: Q) -> Response {
    catalog_page(Kind::ServerType, "server_types", &q)
}
async fn get_server_type(Path(id): Path<u64>) -> Response {
    catalog_entry(Kind::ServerType, "server_type", id)
}
async fn list_images(q: Q) -> Response {
    catalog_page(Kind::Image, "images", &q)
}
async fn get_image(Path(id): Path<u64>) -> Response {
    catalog_entry(Kind::Image, "image", id)
}

async fn get_server(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let w = cloud.world();
    match w.hetzner.servers.get(&id) {
        Some(s) => json(StatusCode::OK, j!({ "server": server_json(s) })),
        None => not_found("server"),
    }
}

/// Parsed `POST /servers` body. `server_type`, `image`, `location`,
/// `datacenter` and each of `ssh_keys` are an ID or a name (IDs as numbers
/// or as strings of digits), as the reference allows.
#[derive(Deserialize)]
struct CreateServer {
    name: String,
    server_type: Value,
    image: Value,
    #[serde(default)]
    location: Option<Value>,
    #[serde(default)]
    datacenter: Option<Value>,
    #[serde(default)]
    ssh_keys: Vec<Value>,
    #[serde(default)]
    networks: Vec<u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    start_after_create: Option<bool>,
}

fn as_name(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A root password as the API hands out when no ssh key is given.
fn root_password() -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Resolves `v` ("ID or name") in the catalog, or answers which field named
/// what that does not exist.
fn resolve(kind: Kind, field: &str, v: &Value) -> Result<usize, Response> {
    kind.resolve(v).ok_or_else(|| {
        invalid(&format!(
            "invalid input in field '{field}': {} {} not found",
            field.replace('_', " "),
            as_name(v)
        ))
    })
}

/// `POST /servers`: 201 with the server (`initializing`), the
/// `create_server` action and, unless `start_after_create` is false, a
/// `start_server` next action; `root_password` when no ssh key is given.
/// The node boots in the background; the actions end once it is up (or,
/// with `start_after_create: false`, once it is off again).
async fn create_server(AxState(cloud): St, raw: Bytes) -> Response {
    let req: CreateServer = match body(&raw).and_then(|v| {
        serde_json::from_value(v).map_err(|e| invalid(&format!("invalid input: {e}")))
    }) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if !valid_hostname(&req.name) {
        return invalid("invalid input in field 'name': must be a valid hostname");
    }
    let server_type = match resolve(Kind::ServerType, "server_type", &req.server_type) {
        Ok(i) => SERVER_TYPES[i].0.to_string(),
        Err(e) => return e,
    };
    let image = match resolve(Kind::Image, "image", &req.image) {
        Ok(i) => IMAGES[i].0.to_string(),
        Err(e) => return e,
    };
    let place = match (&req.location, &req.datacenter) {
        (Some(l), _) => resolve(Kind::Location, "location", l),
        (None, Some(dc)) => resolve(Kind::Datacenter, "datacenter", dc),
        (None, None) => Ok(0),
    };
    let (location_name, zone) = match place {
        Ok(i) => (LOCATIONS[i].0.to_string(), LOCATIONS[i].2),
        Err(e) => return e,
    };
    let start = req.start_after_create.unwrap_or(true);
    let (id, action_id, next_id, spec, response) = {
        let mut w = cloud.world();
        if w.hetzner.servers.values().any(|s| s.name == req.name) {
            return err(
                StatusCode::CONFLICT,
                "uniqueness_error",
                "server name is already used",
            );
        }
        let mut keys = Vec::new();
        for k in &req.ssh_keys {
            let want = as_name(k);
            match w
                .hetzner
                .ssh_keys
                .values()
                .find(|key| key.name == want || key.id.to_string() == want)
            {
                Some(key) => keys.push(key.public_key.clone()),
                None => {
                    return invalid(&format!(
                        "invalid input in field 'ssh_keys': SSH key {want} not found"
                    ))
                }
            }
        }
        let mut private = Vec::new();
        let mut attachments = Vec::new();
        for net_id in &req.networks {
            let Some(net) = w.hetzner.networks.get(net_id) else {
                return not_found(&format!("network {net_id}"));
            };
            let Some(subnet) = net.subnets.iter().find(|s| s.network_zone == zone) else {
                return invalid(&format!(
                    "network {} has no subnet in network zone {zone} of location {location_name}",
                    net.name
                ));
            };
            let used: Vec<&str> = w
                .hetzner
                .servers
                .values()
                .flat_map(|s| {
                    s.private
                        .iter()
                        .filter(|(n, _)| n == net_id)
                        .map(|(_, ip)| ip.as_str())
                })
                .collect();
            let Some(ip) = allocate(&subnet.ip_range, &used) else {
                return err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "ip_not_available",
                    &format!("no free address in subnet {}", subnet.ip_range),
                );
            };
            attachments.push(PrivateAttachment {
                network: format!("hcloud-{net_id}"),
                cidr: net.ip_range.clone(),
                address: ip.clone(),
            });
            private.push((*net_id, ip));
        }
        let id = w.next_id();
        let server = Server {
            id,
            name: req.name.clone(),
            status: "initializing".into(),
            server_type,
            image,
            location: location_name,
            labels: req.labels.clone(),
            created: timestamp(false),
            ipv4: None,
            private,
            authorized_keys: keys.clone(),
            node: node_name(id),
        };
        let response_server = server_json(&server);
        w.hetzner.servers.insert(id, server);
        let action_id = new_action(&mut w, "create_server", vec![(id, "server".into())]);
        let next_id =
            start.then(|| new_action(&mut w, "start_server", vec![(id, "server".into())]));
        let action = w.hetzner.actions[&action_id].json();
        let next: Vec<Value> = next_id
            .iter()
            .map(|n| w.hetzner.actions[n].json())
            .collect();
        let password = keys.is_empty().then(root_password);
        let spec = NodeSpec {
            name: node_name(id),
            hostname: Some(req.name.clone()),
            authorized_keys: keys,
            private_networks: attachments,
            root_password: password.clone(),
        };
        let response = j!({
            "server": response_server,
            "action": action,
            "next_actions": next,
            "root_password": password
        });
        (id, action_id, next_id, spec, response)
    };
    cloud.save();
    let bg = cloud.clone();
    tokio::spawn(async move {
        {
            let mut w = bg.world();
            if let Some(a) = w.hetzner.actions.get_mut(&action_id) {
                a.progress = 50;
            }
            if start {
                if let Some(s) = w.hetzner.servers.get_mut(&id) {
                    s.status = "starting".into();
                }
            }
        }
        let node = spec.name.clone();
        let result = bg.provisioner().add(spec).await;
        // Not to be started: the node was made (its disk exists) and is cut off again.
        let stopped = match (&result, start) {
            (Ok(_), false) => bg.provisioner().power(&node, false).await,
            _ => Ok(()),
        };
        {
            let mut w = bg.world();
            let failure = match (&result, &stopped) {
                (Err(e), _) | (Ok(_), Err(e)) => Some(("action_failed".to_string(), e.clone())),
                _ => None,
            };
            if let Some(s) = w.hetzner.servers.get_mut(&id) {
                if let Ok(info) = &result {
                    s.ipv4 = Some(info.address.clone());
                }
                s.status = if result.is_ok() && start && stopped.is_ok() {
                    "running"
                } else {
                    "off"
                }
                .into();
            }
            for a in std::iter::once(action_id).chain(next_id) {
                if let Some(a) = w.hetzner.actions.get_mut(&a) {
                    a.finish(failure.clone());
                }
            }
        }
        bg.save();
    });
    json(StatusCode::CREATED, response)
}

/// The lowest free host address of `subnet` from `.2` up.
fn allocate(subnet: &str, used: &[&str]) -> Option<String> {
    let net: ipnet::Ipv4Net = subnet.parse().ok()?;
    net.hosts()
        .skip(1)
        .map(|a| a.to_string())
        .find(|a| !used.contains(&a.as_str()))
}

/// `DELETE /servers/{id}`: 200 with the `delete_server` action, answered
/// once the server's host is gone (so the server is gone from every listing
/// by then, and its action finished). If the host cannot be removed, the
/// server stays as it was and the action ends `error`, naming why.
async fn delete_server(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let (node, before, action_id) = {
        let mut w = cloud.world();
        let Some(s) = w.hetzner.servers.get_mut(&id) else {
            return not_found("server");
        };
        if s.status == "deleting" {
            return err(
                StatusCode::LOCKED,
                "locked",
                &format!("server {id} is locked (deleting)"),
            );
        }
        let before = std::mem::replace(&mut s.status, "deleting".into());
        let node = s.node();
        let action_id = new_action(&mut w, "delete_server", vec![(id, "server".into())]);
        (node, before, action_id)
    };
    cloud.save();
    // The removal runs on its own task: a client that disconnects (a killed
    // run) drops this handler, and the server must not stay `deleting`.
    let bg = cloud.clone();
    let finish = tokio::spawn(async move {
        let cloud = bg;
        let result = cloud.provisioner().remove(&node).await;
        let response = {
            let mut w = cloud.world();
            match &result {
                Ok(()) => {
                    w.hetzner.servers.remove(&id);
                }
                Err(_) => {
                    if let Some(s) = w.hetzner.servers.get_mut(&id) {
                        s.status = before;
                    }
                }
            }
            let failure = result.err().map(|e| ("action_failed".to_string(), e));
            match w.hetzner.actions.get_mut(&action_id) {
                Some(a) => {
                    a.finish(failure);
                    j!({ "action": a.json() })
                }
                None => j!({}),
            }
        };
        cloud.save();
        response
    });
    match finish.await {
        Ok(response) => json(StatusCode::OK, response),
        Err(e) => err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &format!("deleting server {id} failed: {e}"),
        ),
    }
}

/// `POST /servers/{id}/actions/poweroff` (`on` false: cuts the power, the
/// action is `stop_server`, the server ends `off`) and `.../poweron` (`on`
/// true: `start_server`, ends `running`). 201 with the running action; the
/// node is powered off or booted in the background. A server that is busy
/// (being created, started, stopped or deleted) is `locked` (423).
async fn power(cloud: Arc<Cloud>, id: u64, on: bool) -> Response {
    let (name, action_id, response) = {
        let mut w = cloud.world();
        let Some(s) = w.hetzner.servers.get_mut(&id) else {
            return not_found("server");
        };
        if !matches!(s.status.as_str(), "running" | "off") {
            return err(
                StatusCode::LOCKED,
                "locked",
                &format!("server {id} is locked ({})", s.status),
            );
        }
        s.status = if on { "starting" } else { "stopping" }.into();
        let name = s.node();
        let command = if on { "start_server" } else { "stop_server" };
        let action_id = new_action(&mut w, command, vec![(id, "server".into())]);
        let response = j!({ "action": w.hetzner.actions[&action_id].json() });
        (name, action_id, response)
    };
    cloud.save();
    let bg = cloud.clone();
    tokio::spawn(async move {
        let result = bg.provisioner().power(&name, on).await;
        {
            let mut w = bg.world();
            if let Some(s) = w.hetzner.servers.get_mut(&id) {
                // A node that failed to boot is off; one that failed to stop runs.
                s.status = if on == result.is_ok() {
                    "running"
                } else {
                    "off"
                }
                .into();
            }
            if let Some(a) = w.hetzner.actions.get_mut(&action_id) {
                a.finish(result.err().map(|e| ("action_failed".to_string(), e)));
            }
        }
        bg.save();
    });
    json(StatusCode::CREATED, response)
}

async fn poweroff_server(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    power(cloud, id, false).await
}

async fn poweron_server(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    power(cloud, id, true).await
}

async fn list_networks(AxState(cloud): St, q: Q) -> Response {
    let reqs = match selector(&q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let w = cloud.world();
    let items = w
        .hetzner
        .networks
        .values()
        .filter(|n| q.get("name").is_none_or(|name| n.name == name))
        .filter(|n| matches(&reqs, &n.labels))
        .map(|n| network_json(n, &w.hetzner.servers))
        .collect();
    page("networks", items, &q, &["id", "name", "created"])
}

async fn get_network(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let w = cloud.world();
    match w.hetzner.networks.get(&id) {
        Some(n) => json(
            StatusCode::OK,
            j!({ "network": network_json(n, &w.hetzner.servers) }),
        ),
        None => not_found("network"),
    }
}

#[derive(Deserialize)]
struct SubnetBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    ip_range: Option<String>,
    network_zone: String,
}

#[derive(Deserialize)]
struct CreateNetwork {
    name: String,
    ip_range: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    subnets: Vec<SubnetBody>,
}

fn check_subnet(net: &Network, s: &SubnetBody) -> Result<Subnet, Response> {
    if !matches!(s.kind.as_str(), "cloud" | "server" | "vswitch") {
        return Err(invalid(&format!(
            "invalid input in field 'type': unknown subnet type {}",
            s.kind
        )));
    }
    if !LOCATIONS.iter().any(|l| l.2 == s.network_zone) {
        return Err(invalid(&format!(
            "invalid input in field 'network_zone': unknown network zone {}",
            s.network_zone
        )));
    }
    let outer: ipnet::Ipv4Net = net
        .ip_range
        .parse()
        .map_err(|_| invalid("bad network ip_range"))?;
    let range = match &s.ip_range {
        Some(r) => r.clone(),
        None => {
            // the first free /24
            outer
                .subnets(24.max(outer.prefix_len()))
                .ok()
                .and_then(|mut it| {
                    it.find(|c| {
                        !net.subnets.iter().any(|s| {
                            s.ip_range
                                .parse::<ipnet::Ipv4Net>()
                                .is_ok_and(|o| o.contains(c) || c.contains(&o))
                        })
                    })
                })
                .map(|c| c.to_string())
                .ok_or_else(|| invalid("no free /24 left in the network"))?
        }
    };
    let inner: ipnet::Ipv4Net = range.parse().map_err(|_| {
        invalid(&format!(
            "invalid input in field 'ip_range': {range} is not a CIDR"
        ))
    })?;
    if !outer.contains(&inner) || inner.prefix_len() > 30 {
        return Err(invalid(&format!(
            "invalid input in field 'ip_range': {range} is not a subnet of {}",
            net.ip_range
        )));
    }
    if net.subnets.iter().any(|o| {
        o.ip_range
            .parse::<ipnet::Ipv4Net>()
            .is_ok_and(|o| o.contains(&inner) || inner.contains(&o))
    }) {
        return Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            &format!("subnet {range} overlaps with an existing subnet"),
        ));
    }
    Ok(Subnet {
        kind: s.kind.clone(),
        ip_range: inner.to_string(),
        network_zone: s.network_zone.clone(),
    })
}

async fn create_network(AxState(cloud): St, raw: Bytes) -> Response {
    let req: CreateNetwork = match body(&raw).and_then(|v| {
        serde_json::from_value(v).map_err(|e| invalid(&format!("invalid input: {e}")))
    }) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match req.ip_range.parse::<ipnet::Ipv4Net>() {
        Ok(n) if n.prefix_len() <= 24 && n.network().is_private() => {}
        _ => {
            return invalid(&format!(
                "invalid input in field 'ip_range': {} must be a private (RFC 1918) range of /24 or larger",
                req.ip_range
            ))
        }
    }
    let response = {
        let mut w = cloud.world();
        if w.hetzner.networks.values().any(|n| n.name == req.name) {
            return err(
                StatusCode::CONFLICT,
                "uniqueness_error",
                "network name is already used",
            );
        }
        let id = w.next_id();
        let mut net = Network {
            id,
            name: req.name.clone(),
            ip_range: req.ip_range.clone(),
            subnets: Vec::new(),
            labels: req.labels.clone(),
            created: timestamp(false),
        };
        for s in &req.subnets {
            match check_subnet(&net, s) {
                Ok(sub) => net.subnets.push(sub),
                Err(e) => return e,
            }
        }
        let response = network_json(&net, &w.hetzner.servers);
        w.hetzner.networks.insert(id, net);
        response
    };
    cloud.save();
    json(StatusCode::CREATED, j!({ "network": response }))
}

async fn add_subnet(AxState(cloud): St, Path(id): Path<u64>, raw: Bytes) -> Response {
    let req: SubnetBody = match body(&raw).and_then(|v| {
        serde_json::from_value(v).map_err(|e| invalid(&format!("invalid input: {e}")))
    }) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let response = {
        let mut w = cloud.world();
        let Some(net) = w.hetzner.networks.get(&id) else {
            return not_found("network");
        };
        let sub = match check_subnet(net, &req) {
            Ok(s) => s,
            Err(e) => return e,
        };
        if let Some(net) = w.hetzner.networks.get_mut(&id) {
            net.subnets.push(sub);
        }
        let action_id = new_action(&mut w, "add_subnet", vec![(id, "network".into())]);
        // answered while running, as the API does; done at once
        let response = j!({ "action": w.hetzner.actions[&action_id].json() });
        if let Some(a) = w.hetzner.actions.get_mut(&action_id) {
            a.finish(None);
        }
        response
    };
    cloud.save();
    json(StatusCode::CREATED, response)
}

async fn delete_network(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    if cloud.world().hetzner.networks.remove(&id).is_none() {
        return not_found("network");
    }
    cloud.save();
    no_content()
}

async fn list_keys(AxState(cloud): St, q: Q) -> Response {
    let reqs = match selector(&q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let w = cloud.world();
    let items = w
        .hetzner
        .ssh_keys
        .values()
        .filter(|k| q.get("name").is_none_or(|n| k.name == n))
        .filter(|k| q.get("fingerprint").is_none_or(|f| k.fingerprint == f))
        .filter(|k| matches(&reqs, &k.labels))
        .map(key_json)
        .collect();
    page("ssh_keys", items, &q, &["id", "name"])
}

async fn get_key(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let w = cloud.world();
    match w.hetzner.ssh_keys.get(&id) {
        Some(k) => json(StatusCode::OK, j!({ "ssh_key": key_json(k) })),
        None => not_found("ssh_key"),
    }
}

#[derive(Deserialize)]
struct CreateKey {
    name: String,
    public_key: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

async fn create_key(AxState(cloud): St, raw: Bytes) -> Response {
    let req: CreateKey = match body(&raw).and_then(|v| {
        serde_json::from_value(v).map_err(|e| invalid(&format!("invalid input: {e}")))
    }) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Ok(fp) = cairn::primitives::cloud::fingerprint_md5(&req.public_key) else {
        return invalid("invalid input in field 'public_key': not a valid SSH public key");
    };
    let response = {
        let mut w = cloud.world();
        if w.hetzner.ssh_keys.values().any(|k| k.fingerprint == fp) {
            return err(
                StatusCode::CONFLICT,
                "uniqueness_error",
                "SSH key with the same fingerprint already exists",
            );
        }
        if w.hetzner.ssh_keys.values().any(|k| k.name == req.name) {
            return err(
                StatusCode::CONFLICT,
                "uniqueness_error",
                "SSH key with the same name already exists",
            );
        }
        let id = w.next_id();
        let key = SshKey {
            id,
            name: req.name,
            fingerprint: fp,
            public_key: req.public_key.trim().to_string(),
            labels: req.labels,
            created: timestamp(false),
        };
        let response = key_json(&key);
        w.hetzner.ssh_keys.insert(id, key);
        response
    };
    cloud.save();
    json(StatusCode::CREATED, j!({ "ssh_key": response }))
}

async fn delete_key(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    if cloud.world().hetzner.ssh_keys.remove(&id).is_none() {
        return not_found("ssh_key");
    }
    cloud.save();
    no_content()
}

/// The `/v1` routes.
pub fn routes() -> Router<Arc<Cloud>> {
    Router::new()
        .route("/actions", get(list_actions))
        .route("/actions/{id}", get(get_action))
        .route("/servers", get(list_servers).post(create_server))
        .route("/servers/actions/{action_id}", get(any_server_action))
        .route("/servers/{id}", get(get_server).delete(delete_server))
        .route("/servers/{id}/actions", get(server_actions))
        .route("/servers/{id}/actions/{action_id}", get(server_action))
        .route("/servers/{id}/actions/poweroff", post(poweroff_server))
        .route("/servers/{id}/actions/poweron", post(poweron_server))
        .route("/networks", get(list_networks).post(create_network))
        .route("/networks/actions/{action_id}", get(any_network_action))
        .route("/networks/{id}", get(get_network).delete(delete_network))
        .route("/networks/{id}/actions", get(network_actions))
        .route("/networks/{id}/actions/{action_id}", get(network_action))
        .route("/networks/{id}/actions/add_subnet", post(add_subnet))
        .route("/locations", get(list_locations))
        .route("/locations/{id}", get(get_location))
        .route("/datacenters", get(list_datacenters))
        .route("/datacenters/{id}", get(get_datacenter))
        .route("/server_types", get(list_server_types))
        .route("/server_types/{id}", get(get_server_type))
        .route("/images", get(list_images))
        .route("/images/{id}", get(get_image))
        .route("/ssh_keys", get(list_keys).post(create_key))
        .route("/ssh_keys/{id}", get(get_key).delete(delete_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_require_every_part() {
        let both = parse_selector("cluster=cluster-1,etcd=true").unwrap();
        assert!(matches(
            &both,
            &labels(&[("cluster", "cluster-1"), ("etcd", "true")])
        ));
        assert!(!matches(&both, &labels(&[("cluster", "cluster-1")])));
        assert!(!matches(&both, &labels(&[("etcd", "true")])));
        let s = parse_selector("env in (a,b),!gone,k!=x,has,t==1").unwrap();
        assert_eq!(s.len(), 5);
        assert!(matches(
            &s,
            &labels(&[("env", "b"), ("has", ""), ("t", "1")])
        ));
        assert!(!matches(
            &s,
            &labels(&[("env", "c"), ("has", ""), ("t", "1")])
        ));
        assert!(!matches(
            &s,
            &labels(&[("env", "a"), ("has", ""), ("t", "1"), ("gone", "")])
        ));
        assert!(!matches(
            &s,
            &labels(&[("env", "a"), ("has", ""), ("t", "1"), ("k", "x")])
        ));
        let n = parse_selector("env notin (prod)").unwrap();
        assert!(matches(&n, &labels(&[])));
        assert!(!matches(&n, &labels(&[("env", "prod")])));
        assert!(parse_selector("env in (a").is_err());
    }

    #[test]
    fn private_addresses_start_at_two() {
        assert_eq!(allocate("10.1.1.0/24", &[]).as_deref(), Some("10.1.1.2"));
        assert_eq!(
            allocate("10.1.1.0/24", &["10.1.1.2"]).as_deref(),
            Some("10.1.1.3")
        );
        assert_eq!(first_host("10.1.0.0/16"), "10.1.0.1");
    }
}
