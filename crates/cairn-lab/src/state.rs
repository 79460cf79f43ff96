//! [`LabState`]: the running lab as the daemon's cloud API emulations see
//! it. They create and delete nodes through it; each node is a full lab node
//! (own netns, systemd, sshd) that every other node resolves by name.

use super::error::{LabError, Result};
use super::inventory;
use super::lifecycle;
use super::naming::{domain, CLOUD_PORT, MIRROR_PORT};
use super::paths::{paths, LabPaths};
use super::record::LabRecord;
pub use super::record::PrivateAttachment;
use std::sync::Arc;
use std::time::Duration;

/// How long [`LabState::add_node`] waits for a new node to be ready.
pub const ADD_NODE_TIMEOUT: Duration = Duration::from_secs(120);

/// A node the cloud emulation wants.
#[derive(Clone, Default)]
pub struct NodeSpec {
    /// Node name: `[a-z][a-z0-9-]*`, unique in the lab (cloud emulations name
    /// it after the object's id: `hc-<id>`, `do-<id>`).
    pub name: String,
    /// The name the node calls itself and is resolved by (a server's or
    /// droplet's name; several nodes may share one). Default: `name`.
    pub hostname: Option<String>,
    /// ssh public keys (`ssh-ed25519 AAAA... comment`) root accepts, besides the lab key.
    pub authorized_keys: Vec<String>,
    /// Private networks to attach to, as `eth1`, `eth2`, ... in this order.
    pub private_networks: Vec<PrivateAttachment>,
    /// root's password, set once the node is up (a server made without ssh
    /// keys). Never printed.
    pub root_password: Option<String>,
}

impl std::fmt::Debug for NodeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSpec")
            .field("name", &self.name)
            .field("hostname", &self.hostname)
            .field("authorized_keys", &self.authorized_keys)
            .field("private_networks", &self.private_networks)
            .field(
                "root_password",
                &self.root_password.as_ref().map(|_| "(secret)"),
            )
            .finish()
    }
}

/// A node as the cloud emulation reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// The name it calls itself (a cloud object's name; `name` otherwise).
    pub hostname: String,
    /// Public address on the lab bridge.
    pub address: String,
    /// `(network id, address)` per private network.
    pub private: Vec<(String, String)>,
    /// `<hostname>.<lab>.lab`.
    pub fqdn: String,
}

/// The lab, shared by the daemon's request handlers.
#[derive(Debug)]
pub struct LabState {
    name: String,
    gateway: String,
    hcloud_token: String,
    digitalocean_token: String,
    /// Serializes node changes made through this state (the lab lock also
    /// serializes them against other processes).
    changes: tokio::sync::Mutex<()>,
}

impl LabState {
    /// The state of the lab `name`, which must be up (have a record).
    pub fn new(name: &str) -> Result<Arc<LabState>> {
        let rec = LabRecord::load(name)?.ok_or_else(|| LabError::lab(name, "is not up"))?;
        Ok(Arc::new(LabState {
            name: name.into(),
            gateway: rec.gateway(),
            hcloud_token: rec.hcloud_token,
            digitalocean_token: rec.digitalocean_token,
            changes: tokio::sync::Mutex::new(()),
        }))
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// DNS suffix of the lab's nodes (`<lab>.lab`).
    pub fn domain(&self) -> String {
        domain(&self.name)
    }

    /// The lab's gateway (bridge) address, where the daemon listens.
    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Base URL of the cloud emulation port (`http://GW:PORT`).
    pub fn cloud_url(&self) -> String {
        format!("http://{}:{CLOUD_PORT}", self.gateway)
    }

    /// Base URL of the mirrors (`http://GW:PORT`).
    pub fn mirror_url(&self) -> String {
        format!("http://{}:{MIRROR_PORT}", self.gateway)
    }

    /// Bearer token the Hetzner emulation must require (`HCLOUD_TOKEN`).
    pub fn hcloud_token(&self) -> &str {
        &self.hcloud_token
    }

    /// Bearer token the DigitalOcean emulation must require
    /// (`DIGITALOCEAN_ACCESS_TOKEN`).
    pub fn digitalocean_token(&self) -> &str {
        &self.digitalocean_token
    }

    /// The lab's files (key, inventory, env).
    pub fn paths(&self) -> LabPaths {
        paths(&self.name)
    }

    /// The env entries `lab up` writes (mirrors, key, cloud endpoints, tokens).
    pub fn env(&self) -> Result<Vec<(String, String)>> {
        let rec = self.record()?;
        Ok(inventory::env_entries(&self.paths(), &rec))
    }

    fn record(&self) -> Result<LabRecord> {
        LabRecord::load(&self.name)?.ok_or_else(|| LabError::lab(&self.name, "is not up"))
    }

    /// All nodes of the lab (from `lab up` and from cloud emulations).
    pub fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let rec = self.record()?;
        let mut v: Vec<_> = rec.nodes.values().collect();
        v.sort_by_key(|n| n.index);
        Ok(v.into_iter().map(|n| lifecycle::info(&rec, n)).collect())
    }

    /// Node `name`, if it exists.
    pub fn node(&self, name: &str) -> Result<Option<NodeInfo>> {
        let rec = self.record()?;
        Ok(rec.nodes.get(name).map(|n| lifecycle::info(&rec, n)))
    }

    /// Creates and boots a node; returns once it answers ssh with systemd
    /// running. Every node's /etc/hosts then resolves it.
    pub async fn add_node(&self, spec: NodeSpec) -> Result<NodeInfo> {
        let _g = self.changes.lock().await;
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || lifecycle::add_node(&name, &spec, ADD_NODE_TIMEOUT))
            .await
            .map_err(|e| LabError::lab(&self.name, format!("add_node task failed: {e}")))?
    }

    /// Powers node `name` off the hard way, keeping its disk (see
    /// [`lifecycle::power_off`]).
    pub async fn power_off(&self, name: &str) -> Result<()> {
        let _g = self.changes.lock().await;
        let (lab, node) = (self.name.clone(), name.to_string());
        tokio::task::spawn_blocking(move || lifecycle::power_off(&lab, &node))
            .await
            .map_err(|e| LabError::lab(&self.name, format!("power_off task failed: {e}")))?
    }

    /// Boots the powered-off node `name` from its disk; returns once it
    /// answers ssh with systemd running (see [`lifecycle::power_on`]).
    pub async fn power_on(&self, name: &str) -> Result<()> {
        let _g = self.changes.lock().await;
        let (lab, node) = (self.name.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            lifecycle::power_on(&lab, &node, ADD_NODE_TIMEOUT).map(|_| ())
        })
        .await
        .map_err(|e| LabError::lab(&self.name, format!("power_on task failed: {e}")))?
    }

    /// Stops and removes node `name` and drops it from every /etc/hosts.
    pub async fn remove_node(&self, name: &str) -> Result<()> {
        let _g = self.changes.lock().await;
        let (lab, node) = (self.name.clone(), name.to_string());
        tokio::task::spawn_blocking(move || lifecycle::remove_node(&lab, &node))
            .await
            .map_err(|e| LabError::lab(&self.name, format!("remove_node task failed: {e}")))?
    }
}
