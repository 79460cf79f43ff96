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
use super::{json, no_content, timestamp, Cloud};
use crate::lab::{NodeSpec, PrivateAttachment};
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json as j, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Locations and their network zones.
pub const LOCATIONS: &[(&str, &str, &str, &str)] = &[
    ("fsn1", "fsn1-dc14", "eu-central", "Falkenstein"),
    ("nbg1", "nbg1-dc3", "eu-central", "Nuremberg"),
    ("hel1", "hel1-dc2", "eu-central", "Helsinki"),
    ("ash", "ash-dc1", "us-east", "Ashburn, VA"),
    ("hil", "hil-dc1", "us-west", "Hillsboro, OR"),
    ("sin", "sin-dc1", "ap-southeast", "Singapore"),
];

/// Server types: name, cores, memory (GB), disk (GB), cpu type.
pub const SERVER_TYPES: &[(&str, u32, u32, u32, &str)] = &[
    ("cx22", 2, 4, 40, "shared"),
    ("cx32", 4, 8, 80, "shared"),
    ("cx42", 8, 16, 160, "shared"),
    ("cx52", 16, 32, 320, "shared"),
    ("cpx11", 2, 2, 40, "shared"),
    ("cpx21", 3, 4, 80, "shared"),
    ("cpx31", 4, 8, 160, "shared"),
    ("cpx41", 8, 16, 240, "shared"),
    ("cpx51", 16, 32, 360, "shared"),
    ("cax11", 2, 4, 40, "shared"),
    ("ccx13", 2, 8, 80, "dedicated"),
];

/// Images: name, os flavor, os version.
pub const IMAGES: &[(&str, &str, &str)] = &[
    ("ubuntu-20.04", "ubuntu", "20.04"),
    ("ubuntu-22.04", "ubuntu", "22.04"),
    ("ubuntu-24.04", "ubuntu", "24.04"),
    ("debian-11", "debian", "11"),
    ("debian-12", "debian", "12"),
    ("rocky-9", "rocky", "9"),
    ("fedora-41", "fedora", "41"),
];

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

fn location(
    name: &str,
) -> Option<&'static (&'static str, &'static str, &'static str, &'static str)> {
    LOCATIONS.iter().find(|l| l.0 == name)
}

fn server_json(s: &Server) -> Value {
    let (loc, dc, zone, city) = location(&s.location).copied().unwrap_or(("", "", "", ""));
    let (_, cores, memory, disk, cpu) = SERVER_TYPES
        .iter()
        .find(|t| t.0 == s.server_type)
        .copied()
        .unwrap_or(("", 0, 0, 0, "shared"));
    let (_, flavor, version) = IMAGES
        .iter()
        .find(|i| i.0 == s.image)
        .copied()
        .unwrap_or(("", "", ""));
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
        "server_type": {
            "id": SERVER_TYPES.iter().position(|t| t.0 == s.server_type).map(|i| i + 1).unwrap_or(0),
            "name": s.server_type, "description": s.server_type.to_uppercase(),
            "cores": cores, "memory": memory, "disk": disk, "deprecated": false,
            "prices": [], "storage_type": "local", "cpu_type": cpu, "architecture": "x86"
        },
        "datacenter": {
            "id": LOCATIONS.iter().position(|l| l.0 == s.location).map(|i| i + 1).unwrap_or(0),
            "name": dc, "description": format!("{city} DC"),
            "location": {
                "id": LOCATIONS.iter().position(|l| l.0 == s.location).map(|i| i + 1).unwrap_or(0),
                "name": loc, "description": city, "country": "", "city": city,
                "latitude": 0.0, "longitude": 0.0, "network_zone": zone
            },
            "server_types": {"supported": [], "available": [], "available_for_migration": []}
        },
        "image": {
            "id": IMAGES.iter().position(|i| i.0 == s.image).map(|i| i + 1).unwrap_or(0),
            "type": "system", "status": "available", "name": s.image,
            "description": s.image, "image_size": null, "disk_size": 5,
            "created": "2024-01-01T00:00:00+00:00", "created_from": null, "bound_to": null,
            "os_flavor": flavor, "os_version": version, "rapid_deploy": true,
            "protection": {"delete": false}, "deprecated": null, "deleted": null,
            "labels": {}, "architecture": "x86"
        },
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

type Q = Query<HashMap<String, String>>;
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

/// A page of `items` with `meta.pagination` (default 25 per page, at most 50).
fn page(key: &str, items: Vec<Value>, q: &HashMap<String, String>) -> Response {
    let num = |k: &str, d: u64| q.get(k).map(|v| v.parse::<u64>().ok()).unwrap_or(Some(d));
    let (Some(page), Some(per_page)) = (num("page", 1), num("per_page", 25)) else {
        return invalid("page and per_page must be positive integers");
    };
    if page == 0 || per_page == 0 {
        return invalid("page and per_page must be positive integers");
    }
    let per_page = per_page.min(50);
    let total = items.len() as u64;
    let last = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip(((page - 1) * per_page) as usize)
        .take(per_page as usize)
        .collect();
    json(
        StatusCode::OK,
        j!({
            key: slice,
            "meta": {"pagination": {
                "page": page,
                "per_page": per_page,
                "previous_page": (page > 1).then(|| page - 1),
                "next_page": (page < last).then(|| page + 1),
                "last_page": last,
                "total_entries": total
            }}
        }),
    )
}

fn selector(q: &HashMap<String, String>) -> Result<Vec<Requirement>, Response> {
    match q.get("label_selector") {
        None => Ok(Vec::new()),
        Some(s) => parse_selector(s).map_err(|e| invalid(&format!("invalid label_selector: {e}"))),
    }
}

async fn get_action(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let w = cloud.world();
    match w.hetzner.actions.get(&id) {
        Some(a) => json(StatusCode::OK, j!({ "action": a.json() })),
        None => not_found("action"),
    }
}

async fn list_servers(AxState(cloud): St, Query(q): Q) -> Response {
    let reqs = match selector(&q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let w = cloud.world();
    let items = w
        .hetzner
        .servers
        .values()
        .filter(|s| q.get("name").is_none_or(|n| &s.name == n))
        .filter(|s| q.get("status").is_none_or(|st| &s.status == st))
        .filter(|s| matches(&reqs, &s.labels))
        .map(server_json)
        .collect();
    page("servers", items, &q)
}

async fn get_server(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let w = cloud.world();
    match w.hetzner.servers.get(&id) {
        Some(s) => json(StatusCode::OK, j!({ "server": server_json(s) })),
        None => not_found("server"),
    }
}

/// Parsed `POST /servers` body.
#[derive(Deserialize)]
struct CreateServer {
    name: String,
    server_type: Value,
    image: Value,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    datacenter: Option<String>,
    #[serde(default)]
    ssh_keys: Vec<Value>,
    #[serde(default)]
    networks: Vec<u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
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

async fn create_server(AxState(cloud): St, raw: Bytes) -> Response {
    let req: CreateServer = match body(&raw).and_then(|v| {
        serde_json::from_value(v).map_err(|e| invalid(&format!("invalid input: {e}")))
    }) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let server_type = as_name(&req.server_type);
    let image = as_name(&req.image);
    let location_name = match (&req.location, &req.datacenter) {
        (Some(l), _) => l.clone(),
        (None, Some(dc)) => match LOCATIONS.iter().find(|l| l.1 == dc) {
            Some(l) => l.0.to_string(),
            None => {
                return invalid(&format!(
                    "invalid input in field 'datacenter': unknown datacenter {dc}"
                ))
            }
        },
        (None, None) => "fsn1".to_string(),
    };
    if !valid_hostname(&req.name) {
        return invalid("invalid input in field 'name': must be a valid hostname");
    }
    if !SERVER_TYPES.iter().any(|t| t.0 == server_type) {
        return invalid(&format!(
            "invalid input in field 'server_type': server type {server_type} not found"
        ));
    }
    if !IMAGES.iter().any(|i| i.0 == image) {
        return invalid(&format!(
            "invalid input in field 'image': image {image} not found"
        ));
    }
    let Some(&(_, _, zone, _)) = location(&location_name) else {
        return invalid(&format!(
            "invalid input in field 'location': location {location_name} not found"
        ));
    };
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
        };
        let response_server = server_json(&server);
        w.hetzner.servers.insert(id, server);
        let action_id = new_action(&mut w, "create_server", vec![(id, "server".into())]);
        let next_id = new_action(&mut w, "start_server", vec![(id, "server".into())]);
        let actions = (
            w.hetzner.actions[&action_id].json(),
            w.hetzner.actions[&next_id].json(),
        );
        let spec = NodeSpec {
            name: req.name.clone(),
            authorized_keys: keys,
            private_networks: attachments,
        };
        let response = j!({
            "server": response_server,
            "action": actions.0,
            "next_actions": [actions.1],
            "root_password": null
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
            if let Some(s) = w.hetzner.servers.get_mut(&id) {
                s.status = "starting".into();
            }
        }
        let result = bg.provisioner().add(spec).await;
        {
            let mut w = bg.world();
            let failure = result
                .as_ref()
                .err()
                .map(|e| ("action_failed".to_string(), e.clone()));
            if let Some(s) = w.hetzner.servers.get_mut(&id) {
                match &result {
                    Ok(info) => {
                        s.ipv4 = Some(info.address.clone());
                        s.status = "running".into();
                    }
                    Err(_) => s.status = "off".into(),
                }
            }
            for a in [action_id, next_id] {
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

async fn delete_server(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let (name, action_id, response) = {
        let mut w = cloud.world();
        let Some(s) = w.hetzner.servers.get_mut(&id) else {
            return not_found("server");
        };
        s.status = "deleting".into();
        let name = s.name.clone();
        let action_id = new_action(&mut w, "delete_server", vec![(id, "server".into())]);
        let response = j!({ "action": w.hetzner.actions[&action_id].json() });
        (name, action_id, response)
    };
    cloud.save();
    let bg = cloud.clone();
    tokio::spawn(async move {
        let result = bg.provisioner().remove(&name).await;
        {
            let mut w = bg.world();
            if result.is_ok() {
                w.hetzner.servers.remove(&id);
            }
            if let Some(a) = w.hetzner.actions.get_mut(&action_id) {
                a.finish(result.err().map(|e| ("action_failed".to_string(), e)));
            }
        }
        bg.save();
    });
    json(StatusCode::OK, response)
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
        let name = s.name.clone();
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

async fn list_networks(AxState(cloud): St, Query(q): Q) -> Response {
    let reqs = match selector(&q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let w = cloud.world();
    let items = w
        .hetzner
        .networks
        .values()
        .filter(|n| q.get("name").is_none_or(|name| &n.name == name))
        .filter(|n| matches(&reqs, &n.labels))
        .map(|n| network_json(n, &w.hetzner.servers))
        .collect();
    page("networks", items, &q)
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

async fn list_keys(AxState(cloud): St, Query(q): Q) -> Response {
    let reqs = match selector(&q) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let w = cloud.world();
    let items = w
        .hetzner
        .ssh_keys
        .values()
        .filter(|k| q.get("name").is_none_or(|n| &k.name == n))
        .filter(|k| q.get("fingerprint").is_none_or(|f| &k.fingerprint == f))
        .filter(|k| matches(&reqs, &k.labels))
        .map(key_json)
        .collect();
    page("ssh_keys", items, &q)
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
    let Ok(fp) = crate::primitives::cloud::fingerprint_md5(&req.public_key) else {
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
        .route("/actions/{id}", get(get_action))
        .route("/servers", get(list_servers).post(create_server))
        .route("/servers/{id}", get(get_server).delete(delete_server))
        .route("/servers/{id}/actions/poweroff", post(poweroff_server))
        .route("/servers/{id}/actions/poweron", post(poweron_server))
        .route("/networks", get(list_networks).post(create_network))
        .route("/networks/{id}", get(get_network).delete(delete_network))
        .route("/networks/{id}/actions/add_subnet", post(add_subnet))
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
