//! Cloud API emulations served by the lab daemon on the cloud port:
//! Hetzner Cloud under `/v1` ([`hetzner`]), DigitalOcean under `/v2`
//! ([`digitalocean`]), and a fault-injection endpoint `/_cairn/faults`
//! ([`faults`]) for tests.
//!
//! They follow the providers' public API references for every endpoint the
//! cairn primitives use (paths, query parameters, JSON shapes, status codes,
//! error bodies, rate-limit headers). Creating a server or droplet boots a real
//! lab node through a [`Provisioner`] in the background: its action reports
//! `running` until the node is up, and the addresses in responses are the
//! node's real ones. Deleting one stops and removes its node. State lives in
//! memory and is saved to `cloud.json` in the lab directory after each change
//! (and loaded again when the daemon restarts).

pub mod digitalocean;
pub mod fallback;
pub mod faults;
pub mod hetzner;
pub mod hetzner_catalog;
pub mod listing;

use crate::{LabState, NodeInfo, NodeSpec};
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Boots and removes the nodes behind servers and droplets. Implemented by
/// [`LabState`]; tests of the HTTP contract use one that records calls.
pub trait Provisioner: Send + Sync + 'static {
    /// Create and boot a node; resolves once it is ready for ssh.
    fn add(&self, spec: NodeSpec) -> BoxFuture<'_, Result<NodeInfo, String>>;
    /// Stop and remove node `name`.
    fn remove(&self, name: &str) -> BoxFuture<'_, Result<(), String>>;
    /// Power node `name` off (hard, keeping its disk) or on again (resolves
    /// once it is ready for ssh). Provisioners without power control refuse.
    fn power(&self, name: &str, on: bool) -> BoxFuture<'_, Result<(), String>> {
        let name = name.to_string();
        Box::pin(async move {
            Err(format!(
                "cannot power {name} {}: this provisioner has no power control",
                if on { "on" } else { "off" }
            ))
        })
    }
}

impl Provisioner for LabState {
    fn add(&self, spec: NodeSpec) -> BoxFuture<'_, Result<NodeInfo, String>> {
        Box::pin(async move { self.add_node(spec).await.map_err(|e| e.to_string()) })
    }
    fn remove(&self, name: &str) -> BoxFuture<'_, Result<(), String>> {
        let name = name.to_string();
        Box::pin(async move { self.remove_node(&name).await.map_err(|e| e.to_string()) })
    }
    fn power(&self, name: &str, on: bool) -> BoxFuture<'_, Result<(), String>> {
        let name = name.to_string();
        Box::pin(async move {
            if on {
                self.power_on(&name).await
            } else {
                self.power_off(&name).await
            }
            .map_err(|e| e.to_string())
        })
    }
}

/// Everything the emulations know, saved as JSON.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct World {
    /// Last id handed out (servers, networks, keys, actions, droplets).
    pub last_id: u64,
    pub hetzner: hetzner::State,
    pub digitalocean: digitalocean::State,
}

impl World {
    /// A fresh id.
    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }
}

/// Configuration of the emulations.
pub struct CloudConfig {
    /// Bearer token of the Hetzner emulation.
    pub hetzner_token: String,
    /// Bearer token of the DigitalOcean emulation.
    pub digitalocean_token: String,
    /// Where nodes come from.
    pub provisioner: Arc<dyn Provisioner>,
    /// Where the state is saved (and loaded from at start), if anywhere.
    pub state_file: Option<PathBuf>,
}

/// The shared state of the emulations.
pub struct Cloud {
    hetzner_token: String,
    digitalocean_token: String,
    provisioner: Arc<dyn Provisioner>,
    state_file: Option<PathBuf>,
    world: Mutex<World>,
    faults: Mutex<faults::Faults>,
    rate: Mutex<RateWindow>,
}

impl Cloud {
    /// Emulations configured by `config`, with the state saved earlier if any.
    pub fn new(config: CloudConfig) -> Arc<Cloud> {
        let world = config
            .state_file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Arc::new(Cloud {
            hetzner_token: config.hetzner_token,
            digitalocean_token: config.digitalocean_token,
            provisioner: config.provisioner,
            state_file: config.state_file,
            world: Mutex::new(world),
            faults: Mutex::new(faults::Faults::default()),
            rate: Mutex::new(RateWindow::new()),
        })
    }

    /// Lock the state (never held across an await).
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Save the state, if a file is configured (best effort: the emulation
    /// keeps working from memory when the disk refuses).
    pub fn save(&self) {
        let Some(file) = &self.state_file else { return };
        let json = {
            let w = self.world();
            serde_json::to_vec_pretty(&*w)
        };
        if let Ok(json) = json {
            let tmp = file.with_extension("json.tmp");
            if std::fs::write(&tmp, json).is_ok() {
                let _ = std::fs::rename(&tmp, file);
            }
        }
    }

    /// The provisioner.
    pub fn provisioner(&self) -> Arc<dyn Provisioner> {
        self.provisioner.clone()
    }

    fn rate_headers(&self, headers: &mut HeaderMap) {
        let (limit, remaining, reset) = self.rate.lock().unwrap_or_else(|e| e.into_inner()).take();
        for (name, value) in [
            ("ratelimit-limit", limit),
            ("ratelimit-remaining", remaining),
            ("ratelimit-reset", reset),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
                headers.insert(name, v);
            }
        }
    }
}

/// A token bucket like the providers': 3600 per hour, one back per second.
struct RateWindow {
    limit: u64,
    remaining: u64,
    last: Instant,
}

impl RateWindow {
    fn new() -> Self {
        RateWindow {
            limit: 3600,
            remaining: 3600,
            last: Instant::now(),
        }
    }
    /// Count one request: (limit, remaining, reset as a UNIX time).
    fn take(&mut self) -> (u64, u64, u64) {
        let back = self.last.elapsed().as_secs();
        if back > 0 {
            self.remaining = (self.remaining + back).min(self.limit);
            self.last = Instant::now();
        }
        self.remaining = self.remaining.saturating_sub(1);
        (
            self.limit,
            self.remaining,
            now_unix() + (self.limit - self.remaining),
        )
    }
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now as `2016-01-30T23:55:00+00:00` (Hetzner) or `2020-07-21T18:37:44Z` (DigitalOcean).
pub fn timestamp(zulu: bool) -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = if zulu {
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")
    } else {
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00:00")
    };
    now.format(&fmt).unwrap_or_default()
}

/// A JSON response with a status.
pub fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// An empty response (204 for deletes).
pub fn no_content() -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .body(Body::empty())
        .unwrap_or_default()
}

/// The routes of all cloud emulations, for the lab daemon.
pub fn routes(state: Arc<LabState>) -> Router {
    let cloud = Cloud::new(CloudConfig {
        hetzner_token: state.hcloud_token().to_string(),
        digitalocean_token: state.digitalocean_token().to_string(),
        state_file: Some(state.paths().dir.join("cloud.json")),
        provisioner: state,
    });
    router(cloud)
}

/// The routes of all cloud emulations over `cloud` (tests use this with
/// their own provisioner).
pub fn router(cloud: Arc<Cloud>) -> Router {
    let providers = Router::new()
        .nest("/v1", hetzner::routes())
        .nest("/v2", digitalocean::routes())
        .fallback(fallback::unknown)
        .layer(axum::middleware::from_fn_with_state(
            cloud.clone(),
            faults::guard,
        ));
    Router::new()
        .merge(providers)
        .merge(faults::routes())
        .with_state(cloud)
}
