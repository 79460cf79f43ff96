//! The DigitalOcean API emulation (`/v2`): droplets, ssh keys and actions, as
//! in the public API v2 reference (<https://docs.digitalocean.com/reference/api/>).
//!
//! Droplets boot as lab nodes (always the lab's Debian image). Each region has
//! a default VPC (`10.1xx.0.0/20`); a `vpc_uuid` names another one, which is
//! made on first use (the emulation has no VPC endpoints). Private addresses
//! come from the VPC's range, `.2` upwards.

// Handlers answer errors as ready HTTP responses; boxing them buys nothing.
#![allow(clippy::result_large_err)]

use super::faults::{error, Api};
use super::{json, no_content, timestamp, Cloud};
use crate::{NodeSpec, PrivateAttachment};
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{json as j, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Regions: slug, name.
pub const REGIONS: &[(&str, &str)] = &[
    ("nyc1", "New York 1"),
    ("nyc3", "New York 3"),
    ("sfo3", "San Francisco 3"),
    ("ams3", "Amsterdam 3"),
    ("fra1", "Frankfurt 1"),
    ("lon1", "London 1"),
    ("sgp1", "Singapore 1"),
    ("tor1", "Toronto 1"),
    ("blr1", "Bangalore 1"),
    ("syd1", "Sydney 1"),
];

/// Sizes: slug, memory (MB), vcpus, disk (GB), price monthly.
pub const SIZES: &[(&str, u32, u32, u32, f64)] = &[
    ("s-1vcpu-1gb", 1024, 1, 25, 6.0),
    ("s-1vcpu-2gb", 2048, 1, 50, 12.0),
    ("s-2vcpu-2gb", 2048, 2, 60, 18.0),
    ("s-2vcpu-4gb", 4096, 2, 80, 24.0),
    ("s-4vcpu-8gb", 8192, 4, 160, 48.0),
];

/// Images: slug, distribution, name.
pub const IMAGES: &[(&str, &str, &str)] = &[
    ("ubuntu-22-04-x64", "Ubuntu", "22.04 (LTS) x64"),
    ("ubuntu-24-04-x64", "Ubuntu", "24.04 (LTS) x64"),
    ("debian-12-x64", "Debian", "12 x64"),
    ("rockylinux-9-x64", "Rocky Linux", "9 x64"),
];

/// The DigitalOcean part of the emulation's state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub droplets: BTreeMap<u64, Droplet>,
    pub ssh_keys: BTreeMap<u64, SshKey>,
    pub actions: BTreeMap<u64, Action>,
    /// VPC uuid -> ip range.
    pub vpcs: BTreeMap<String, String>,
}

/// A droplet.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Droplet {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub region: String,
    pub size: String,
    pub image: String,
    pub tags: Vec<String>,
    pub vpc_uuid: String,
    pub created_at: String,
    /// Public IPv4, known once its node is up.
    pub public: Option<String>,
    pub private: String,
    pub authorized_keys: Vec<String>,
    /// Being deleted (its node is being removed).
    #[serde(default)]
    pub deleting: bool,
    /// The lab node behind it: `do-<id>` (its hostname is the droplet's
    /// name). Empty in state saved before nodes were named by id: then the
    /// node is named like the droplet.
    #[serde(default)]
    pub node: String,
}

impl Droplet {
    /// The lab node behind this droplet.
    pub fn node(&self) -> String {
        if self.node.is_empty() {
            self.name.clone()
        } else {
            self.node.clone()
        }
    }
}

/// The lab node behind droplet `id`: named after the id, so that droplets
/// (which may share a name) and servers never share a host.
pub fn node_name(id: u64) -> String {
    format!("do-{id}")
}

/// An ssh key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SshKey {
    pub id: u64,
    pub name: String,
    pub fingerprint: String,
    pub public_key: String,
}

/// An action.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Action {
    pub id: u64,
    pub kind: String,
    pub status: String,
    pub started_at: String,
    pub completed_at: Option<String>,
    pub resource_id: u64,
    pub region: String,
}

impl Action {
    fn json(&self) -> Value {
        let name = REGIONS
            .iter()
            .find(|r| r.0 == self.region)
            .map(|r| r.1)
            .unwrap_or("");
        j!({
            "id": self.id,
            "status": self.status,
            "type": self.kind,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "resource_id": self.resource_id,
            "resource_type": "droplet",
            "region": {"name": name, "slug": self.region, "features": [], "available": true, "sizes": []},
            "region_slug": self.region
        })
    }
}

fn droplet_json(d: &Droplet) -> Value {
    let (_, memory, vcpus, disk, price) = SIZES
        .iter()
        .find(|s| s.0 == d.size)
        .copied()
        .unwrap_or(("", 0, 0, 0, 0.0));
    let (_, distro, image_name) = IMAGES
        .iter()
        .find(|i| i.0 == d.image)
        .copied()
        .unwrap_or(("", "", ""));
    let region_name = REGIONS
        .iter()
        .find(|r| r.0 == d.region)
        .map(|r| r.1)
        .unwrap_or("");
    let mut v4 = Vec::new();
    if let Some(ip) = &d.public {
        let gw = ip
            .rsplit_once('.')
            .map(|(a, _)| format!("{a}.1"))
            .unwrap_or_default();
        v4.push(
            j!({"ip_address": ip, "netmask": "255.255.255.0", "gateway": gw, "type": "public"}),
        );
        v4.push(j!({"ip_address": d.private, "netmask": "255.255.240.0", "gateway": null, "type": "private"}));
    }
    j!({
        "id": d.id,
        "name": d.name,
        "memory": memory,
        "vcpus": vcpus,
        "disk": disk,
        "disk_info": [{"type": "local", "size": {"amount": disk, "unit": "gib"}}],
        "locked": false,
        "status": d.status,
        "kernel": null,
        "created_at": d.created_at,
        "features": ["private_networking"],
        "backup_ids": [],
        "next_backup_window": null,
        "snapshot_ids": [],
        "image": {
            "id": IMAGES.iter().position(|i| i.0 == d.image).map(|i| 100 + i).unwrap_or(0),
            "name": image_name, "distribution": distro, "slug": d.image, "public": true,
            "regions": REGIONS.iter().map(|r| r.0).collect::<Vec<_>>(),
            "created_at": "2024-01-01T00:00:00Z", "type": "base", "min_disk_size": 7,
            "size_gigabytes": 2.36, "description": "", "tags": [], "status": "available", "error_message": ""
        },
        "volume_ids": [],
        "size": {
            "slug": d.size, "memory": memory, "vcpus": vcpus, "disk": disk, "transfer": 1.0,
            "price_monthly": price, "price_hourly": price / 672.0,
            "regions": REGIONS.iter().map(|r| r.0).collect::<Vec<_>>(), "available": true, "description": "Basic"
        },
        "size_slug": d.size,
        "networks": {"v4": v4, "v6": []},
        "region": {"name": region_name, "slug": d.region, "features": ["private_networking", "metadata"], "available": true, "sizes": SIZES.iter().map(|s| s.0).collect::<Vec<_>>()},
        "tags": d.tags,
        "vpc_uuid": d.vpc_uuid
    })
}

fn key_json(k: &SshKey) -> Value {
    j!({"id": k.id, "fingerprint": k.fingerprint, "public_key": k.public_key, "name": k.name})
}

type Q = Query<HashMap<String, String>>;
type St = AxState<Arc<Cloud>>;

fn err(status: StatusCode, id: &str, message: &str) -> Response {
    error(Api::DigitalOcean, status, id, message)
}

fn not_found() -> Response {
    err(
        StatusCode::NOT_FOUND,
        "not_found",
        "The resource you were accessing could not be found.",
    )
}

fn unprocessable(message: &str) -> Response {
    err(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable_entity",
        message,
    )
}

fn body<T: serde::de::DeserializeOwned>(raw: &Bytes) -> Result<T, Response> {
    serde_json::from_slice(raw).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("invalid request body: {e}"),
        )
    })
}

/// A page of `items` with `links.pages` and `meta.total` (default 20 per page, at most 200).
fn page(
    key: &str,
    items: Vec<Value>,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    path: &str,
) -> Response {
    let num = |k: &str, d: u64| q.get(k).map(|v| v.parse::<u64>().ok()).unwrap_or(Some(d));
    let (Some(page), Some(per_page)) = (num("page", 1), num("per_page", 20)) else {
        return err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "page and per_page must be positive integers",
        );
    };
    if page == 0 || per_page == 0 {
        return err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "page and per_page must be positive integers",
        );
    }
    let per_page = per_page.min(200);
    let total = items.len() as u64;
    let last = total.div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip(((page - 1) * per_page) as usize)
        .take(per_page as usize)
        .collect();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let mut keep: Vec<(&String, &String)> = q
        .iter()
        .filter(|(k, _)| *k != "page" && *k != "per_page")
        .collect();
    keep.sort();
    let link = |p: u64| {
        let mut url = format!("http://{host}{path}?page={p}&per_page={per_page}");
        for (k, v) in &keep {
            url.push_str(&format!("&{}={}", encode(k), encode(v)));
        }
        url
    };
    let mut pages = serde_json::Map::new();
    if page > 1 {
        pages.insert("first".into(), j!(link(1)));
        pages.insert("prev".into(), j!(link(page - 1)));
    }
    if page < last {
        pages.insert("next".into(), j!(link(page + 1)));
        pages.insert("last".into(), j!(link(last)));
    }
    json(
        StatusCode::OK,
        j!({ key: slice, "links": {"pages": pages}, "meta": {"total": total} }),
    )
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /v2/actions/{id}`.
async fn get_action(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let w = cloud.world();
    match w.digitalocean.actions.get(&id) {
        Some(a) => json(StatusCode::OK, j!({ "action": a.json() })),
        None => not_found(),
    }
}

/// `GET /v2/droplets/{id}/actions/{action_id}`: an action of that droplet.
async fn get_droplet_action(
    AxState(cloud): St,
    Path((id, action_id)): Path<(u64, u64)>,
) -> Response {
    let w = cloud.world();
    match w
        .digitalocean
        .actions
        .get(&action_id)
        .filter(|a| a.resource_id == id)
    {
        Some(a) => json(StatusCode::OK, j!({ "action": a.json() })),
        None => not_found(),
    }
}

/// `GET /v2/droplets/{id}/actions`: the droplet's actions, newest first.
async fn list_droplet_actions(
    AxState(cloud): St,
    Path(id): Path<u64>,
    Query(q): Q,
    headers: HeaderMap,
) -> Response {
    let w = cloud.world();
    if !w.digitalocean.droplets.contains_key(&id) {
        return not_found();
    }
    let items = w
        .digitalocean
        .actions
        .values()
        .rev()
        .filter(|a| a.resource_id == id)
        .map(Action::json)
        .collect();
    page(
        "actions",
        items,
        &q,
        &headers,
        &format!("/v2/droplets/{id}/actions"),
    )
}

async fn list_droplets(AxState(cloud): St, Query(q): Q, headers: HeaderMap) -> Response {
    if q.contains_key("tag_name") && q.contains_key("name") {
        return unprocessable("tag_name can not be combined with name");
    }
    let w = cloud.world();
    let items = w
        .digitalocean
        .droplets
        .values()
        .filter(|d| q.get("tag_name").is_none_or(|t| d.tags.contains(t)))
        .filter(|d| q.get("name").is_none_or(|n| d.name.eq_ignore_ascii_case(n)))
        .map(droplet_json)
        .collect();
    page("droplets", items, &q, &headers, "/v2/droplets")
}

async fn get_droplet(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    let w = cloud.world();
    match w.digitalocean.droplets.get(&id) {
        Some(d) => json(StatusCode::OK, j!({ "droplet": droplet_json(d) })),
        None => not_found(),
    }
}

#[derive(Deserialize)]
struct CreateDroplet {
    name: String,
    region: String,
    size: String,
    image: Value,
    #[serde(default)]
    ssh_keys: Vec<Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    vpc_uuid: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    user_data: Option<String>,
}

fn default_vpc(region: &str) -> (String, String) {
    let i = REGIONS.iter().position(|r| r.0 == region).unwrap_or(0);
    (
        format!("00000000-0000-4000-8000-{:012x}", i + 1),
        format!("10.{}.0.0/20", 110 + i),
    )
}

async fn create_droplet(AxState(cloud): St, headers: HeaderMap, raw: Bytes) -> Response {
    let req: CreateDroplet = match body(&raw) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let image = match &req.image {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if req.name.is_empty()
        || !req
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return unprocessable(
            "Name Only valid hostname characters are allowed. (a-z, A-Z, 0-9, . and -)",
        );
    }
    if !REGIONS.iter().any(|r| r.0 == req.region) {
        return unprocessable(&format!("Region {} is not available.", req.region));
    }
    if !SIZES.iter().any(|s| s.0 == req.size) {
        return unprocessable(&format!("Size {} is not available.", req.size));
    }
    if !IMAGES.iter().any(|i| i.0 == image) {
        return unprocessable(&format!("Image {image} is not available."));
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let (id, action_id, spec, response) = {
        let mut w = cloud.world();
        let mut keys = Vec::new();
        for k in &req.ssh_keys {
            let want = match k {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match w
                .digitalocean
                .ssh_keys
                .values()
                .find(|key| key.id.to_string() == want || key.fingerprint == want)
            {
                Some(key) => keys.push(key.public_key.clone()),
                None => return unprocessable(&format!("ssh_keys: key {want} was not found")),
            }
        }
        let (vpc, cidr) = match &req.vpc_uuid {
            None => {
                let (uuid, cidr) = default_vpc(&req.region);
                w.digitalocean
                    .vpcs
                    .entry(uuid.clone())
                    .or_insert(cidr.clone());
                (uuid, cidr)
            }
            Some(uuid) => {
                let n = w.digitalocean.vpcs.len();
                let cidr = w
                    .digitalocean
                    .vpcs
                    .entry(uuid.clone())
                    .or_insert_with(|| format!("10.{}.0.0/20", 130 + n))
                    .clone();
                (uuid.clone(), cidr)
            }
        };
        let used: Vec<&str> = w
            .digitalocean
            .droplets
            .values()
            .filter(|d| d.vpc_uuid == vpc)
            .map(|d| d.private.as_str())
            .collect();
        let Some(private) = cidr.parse::<ipnet::Ipv4Net>().ok().and_then(|n| {
            n.hosts()
                .skip(1)
                .map(|a| a.to_string())
                .find(|a| !used.contains(&a.as_str()))
        }) else {
            return unprocessable(&format!("no free address left in VPC {vpc}"));
        };
        let id = w.next_id() + 3_164_000;
        let droplet = Droplet {
            id,
            name: req.name.clone(),
            status: "new".into(),
            region: req.region.clone(),
            size: req.size.clone(),
            image,
            tags: req.tags.clone(),
            vpc_uuid: vpc.clone(),
            created_at: timestamp(true),
            public: None,
            private: private.clone(),
            authorized_keys: keys.clone(),
            deleting: false,
            node: node_name(id),
        };
        let response = droplet_json(&droplet);
        w.digitalocean.droplets.insert(id, droplet);
        let action_id = w.next_id();
        w.digitalocean.actions.insert(
            action_id,
            Action {
                id: action_id,
                kind: "create".into(),
                status: "in-progress".into(),
                started_at: timestamp(true),
                completed_at: None,
                resource_id: id,
                region: req.region.clone(),
            },
        );
        let spec = NodeSpec {
            name: node_name(id),
            hostname: Some(req.name.clone()),
            root_password: None,
            authorized_keys: keys,
            private_networks: vec![PrivateAttachment {
                network: format!("do-vpc-{vpc}"),
                cidr,
                address: private,
            }],
        };
        let response = j!({
            "droplet": response,
            "links": {"actions": [{"id": action_id, "rel": "create", "href": format!("http://{host}/v2/actions/{action_id}")}]}
        });
        (id, action_id, spec, response)
    };
    cloud.save();
    let bg = cloud.clone();
    tokio::spawn(async move {
        let result = bg.provisioner().add(spec).await;
        {
            let mut w = bg.world();
            if let Some(d) = w.digitalocean.droplets.get_mut(&id) {
                match &result {
                    Ok(info) => {
                        d.public = Some(info.address.clone());
                        d.status = "active".into();
                    }
                    Err(_) => d.status = "off".into(),
                }
            }
            if let Some(a) = w.digitalocean.actions.get_mut(&action_id) {
                a.status = if result.is_ok() {
                    "completed"
                } else {
                    "errored"
                }
                .into();
                a.completed_at = Some(timestamp(true));
            }
        }
        bg.save();
    });
    json(StatusCode::ACCEPTED, response)
}

/// Removes the nodes of droplets `ids`, one after another, and then the
/// droplets: when this answers, they are gone from every listing and their
/// hosts are gone. A droplet whose node cannot be removed stays listed (as
/// it was), and the answer is an error naming it.
async fn remove_droplets(cloud: &Arc<Cloud>, ids: Vec<u64>) -> Result<(), Response> {
    let nodes: Vec<(u64, String)> = {
        let mut w = cloud.world();
        ids.iter()
            .filter_map(|id| {
                let d = w.digitalocean.droplets.get_mut(id)?;
                if d.deleting {
                    return None;
                }
                d.deleting = true;
                Some((*id, d.node()))
            })
            .collect()
    };
    // The removals run on their own task: a client that disconnects (a
    // killed run) drops this handler, and no droplet may stay half-deleted.
    let bg = cloud.clone();
    let removal = tokio::spawn(async move {
        let mut failed = Vec::new();
        for (id, node) in nodes {
            let result = bg.provisioner().remove(&node).await;
            let mut w = bg.world();
            match result {
                Ok(()) => {
                    w.digitalocean.droplets.remove(&id);
                }
                Err(e) => {
                    if let Some(d) = w.digitalocean.droplets.get_mut(&id) {
                        d.deleting = false;
                    }
                    failed.push(format!("droplet {id}: {e}"));
                }
            }
        }
        bg.save();
        failed
    });
    let failed = removal
        .await
        .unwrap_or_else(|e| vec![format!("the removal task failed: {e}")]);
    if failed.is_empty() {
        Ok(())
    } else {
        Err(err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &format!("could not delete {}", failed.join("; ")),
        ))
    }
}

/// `DELETE /v2/droplets/{id}`: 204 once the droplet and its host are gone.
async fn delete_droplet(AxState(cloud): St, Path(id): Path<u64>) -> Response {
    if !cloud.world().digitalocean.droplets.contains_key(&id) {
        return not_found();
    }
    match remove_droplets(&cloud, vec![id]).await {
        Ok(()) => no_content(),
        Err(e) => e,
    }
}

/// `DELETE /v2/droplets?tag_name=TAG`: 204 once every droplet with the tag
/// and its host are gone (none: 204 too).
async fn delete_by_tag(AxState(cloud): St, Query(q): Q) -> Response {
    let Some(tag) = q.get("tag_name") else {
        return unprocessable("tag_name is required to delete droplets by tag");
    };
    let ids: Vec<u64> = cloud
        .world()
        .digitalocean
        .droplets
        .values()
        .filter(|d| d.tags.contains(tag))
        .map(|d| d.id)
        .collect();
    match remove_droplets(&cloud, ids).await {
        Ok(()) => no_content(),
        Err(e) => e,
    }
}

async fn list_keys(AxState(cloud): St, Query(q): Q, headers: HeaderMap) -> Response {
    let w = cloud.world();
    let items = w.digitalocean.ssh_keys.values().map(key_json).collect();
    page("ssh_keys", items, &q, &headers, "/v2/account/keys")
}

fn find_key<'a>(state: &'a State, id: &str) -> Option<&'a SshKey> {
    state
        .ssh_keys
        .values()
        .find(|k| k.id.to_string() == id || k.fingerprint == id)
}

async fn get_key(AxState(cloud): St, Path(id): Path<String>) -> Response {
    let w = cloud.world();
    match find_key(&w.digitalocean, &id) {
        Some(k) => json(StatusCode::OK, j!({ "ssh_key": key_json(k) })),
        None => not_found(),
    }
}

#[derive(Deserialize)]
struct CreateKey {
    name: String,
    public_key: String,
}

async fn create_key(AxState(cloud): St, raw: Bytes) -> Response {
    let req: CreateKey = match body(&raw) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Ok(fp) = cairn::primitives::cloud::fingerprint_md5(&req.public_key) else {
        return unprocessable("Key invalid type, we support 'ssh-rsa', 'ssh-dss', 'ecdsa-sha2-nistp' or 'ssh-ed25519'");
    };
    let response = {
        let mut w = cloud.world();
        if w.digitalocean
            .ssh_keys
            .values()
            .any(|k| k.fingerprint == fp)
        {
            return unprocessable("SSH Key is already in use on your account");
        }
        let id = w.next_id();
        let key = SshKey {
            id,
            name: req.name,
            fingerprint: fp,
            public_key: req.public_key.trim().to_string(),
        };
        let response = key_json(&key);
        w.digitalocean.ssh_keys.insert(id, key);
        response
    };
    cloud.save();
    json(StatusCode::CREATED, j!({ "ssh_key": response }))
}

async fn delete_key(AxState(cloud): St, Path(id): Path<String>) -> Response {
    let removed = {
        let mut w = cloud.world();
        let found = find_key(&w.digitalocean, &id).map(|k| k.id);
        found.and_then(|k| w.digitalocean.ssh_keys.remove(&k))
    };
    if removed.is_none() {
        return not_found();
    }
    cloud.save();
    no_content()
}

/// Body of `POST /v2/droplets/{id}/actions`.
#[derive(Deserialize)]
struct DropletAction {
    #[serde(rename = "type")]
    kind: String,
}

/// `POST /v2/droplets/{id}/actions` with `{"type": "power_off"}` (cuts the
/// power; the droplet ends `off`) or `{"type": "power_on"}` (boots it; it ends
/// `active`). 201 with the `in-progress` action, which turns `completed` (or
/// `errored`) once the node is off or up. Other action types, and droplets
/// with a pending event (being created, powered or deleted), are refused with
/// 422.
async fn droplet_action(AxState(cloud): St, Path(id): Path<u64>, raw: Bytes) -> Response {
    let req: DropletAction = match body(&raw) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let on = match req.kind.as_str() {
        "power_on" => true,
        "power_off" => false,
        other => {
            return unprocessable(&format!(
                "type {other} is not an action this emulation supports (power_off, power_on)"
            ))
        }
    };
    let (name, action_id, response) = {
        let mut w = cloud.world();
        let pending = w
            .digitalocean
            .actions
            .values()
            .any(|a| a.resource_id == id && a.status == "in-progress");
        let Some(d) = w.digitalocean.droplets.get(&id) else {
            return not_found();
        };
        if pending || d.deleting || !matches!(d.status.as_str(), "active" | "off") {
            return unprocessable("Droplet already has a pending event.");
        }
        let (name, region) = (d.node(), d.region.clone());
        let action_id = w.next_id();
        let action = Action {
            id: action_id,
            kind: req.kind.clone(),
            status: "in-progress".into(),
            started_at: timestamp(true),
            completed_at: None,
            resource_id: id,
            region,
        };
        let response = j!({ "action": action.json() });
        w.digitalocean.actions.insert(action_id, action);
        (name, action_id, response)
    };
    cloud.save();
    let bg = cloud.clone();
    tokio::spawn(async move {
        let result = bg.provisioner().power(&name, on).await;
        {
            let mut w = bg.world();
            if let Some(d) = w.digitalocean.droplets.get_mut(&id) {
                // A node that failed to boot is off; one that failed to stop runs.
                d.status = if on == result.is_ok() {
                    "active"
                } else {
                    "off"
                }
                .into();
            }
            if let Some(a) = w.digitalocean.actions.get_mut(&action_id) {
                a.status = if result.is_ok() {
                    "completed"
                } else {
                    "errored"
                }
                .into();
                a.completed_at = Some(timestamp(true));
            }
        }
        bg.save();
    });
    json(StatusCode::CREATED, response)
}

/// The `/v2` routes.
pub fn routes() -> Router<Arc<Cloud>> {
    Router::new()
        .route("/actions/{id}", get(get_action))
        .route(
            "/droplets",
            get(list_droplets)
                .post(create_droplet)
                .delete(delete_by_tag),
        )
        .route("/droplets/{id}", get(get_droplet).delete(delete_droplet))
        .route(
            "/droplets/{id}/actions",
            get(list_droplet_actions).post(droplet_action),
        )
        .route(
            "/droplets/{id}/actions/{action_id}",
            get(get_droplet_action),
        )
        .route("/account/keys", get(list_keys).post(create_key))
        .route("/account/keys/{id}", get(get_key).delete(delete_key))
}
