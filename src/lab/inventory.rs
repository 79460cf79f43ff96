//! Files `cairn lab up` writes for runbooks and tests: the inventory (TOML
//! `[[hosts]]` entries that deserialize into [`crate::host::Host`]) and the
//! env file (`KEY=VALUE` lines, mode 0600).

use super::error::Result;
use super::naming::{domain, CLOUD_PORT, MIRROR_PORT};
use super::paths::LabPaths;
use super::record::{write_atomic, LabRecord, Origin};
use crate::host::{Host, HostKeys};
use serde::Serialize;

#[derive(Serialize)]
struct Inventory {
    hosts: Vec<Host>,
}

/// The lab's hosts as cairn hosts (group `lab` for `lab up` nodes, `cloud`
/// for nodes a cloud emulation created), in index order.
pub fn hosts(paths: &LabPaths, rec: &LabRecord) -> Vec<Host> {
    let d = domain(&rec.name);
    let mut nodes: Vec<_> = rec.nodes.values().collect();
    nodes.sort_by_key(|n| n.index);
    nodes
        .into_iter()
        .map(|n| {
            let mut h = Host::new(&n.name, &n.address);
            h.fqdn = Some(format!("{}.{d}", n.name));
            h.private_address = n.private.first().map(|p| p.address.clone());
            h.key = Some(paths.key.clone());
            h.host_keys = HostKeys::Workspace;
            h.groups = vec![match n.origin {
                Origin::Up => "lab".to_string(),
                Origin::Cloud => "cloud".to_string(),
            }];
            h
        })
        .collect()
}

/// The inventory text.
pub fn render_inventory(paths: &LabPaths, rec: &LabRecord) -> String {
    let inv = Inventory {
        hosts: hosts(paths, rec),
    };
    format!(
        "# cairn lab {} ({}); written by `cairn lab up`\n{}",
        rec.name,
        domain(&rec.name),
        toml::to_string(&inv).expect("inventory serializes")
    )
}

/// The env entries, in file order.
pub fn env_entries(paths: &LabPaths, rec: &LabRecord) -> Vec<(String, String)> {
    let gw = rec.gateway();
    let mirror = format!("http://{gw}:{MIRROR_PORT}");
    let cloud = format!("http://{gw}:{CLOUD_PORT}");
    vec![
        ("CAIRN_LAB".into(), rec.name.clone()),
        ("CAIRN_LAB_DOMAIN".into(), domain(&rec.name)),
        (
            "CAIRN_LAB_INVENTORY".into(),
            paths.inventory.display().to_string(),
        ),
        ("CAIRN_APT_MIRROR".into(), format!("{mirror}/debian")),
        ("CAIRN_RELEASE_MIRROR".into(), mirror),
        ("CAIRN_LAB_SSH_KEY".into(), paths.key.display().to_string()),
        (
            "CAIRN_LAB_SSH_PUBKEY".into(),
            paths.pubkey.display().to_string(),
        ),
        (
            "CAIRN_LAB_KNOWN_HOSTS".into(),
            paths.known_hosts.display().to_string(),
        ),
        ("HCLOUD_ENDPOINT".into(), format!("{cloud}/v1")),
        ("HCLOUD_TOKEN".into(), rec.hcloud_token.clone()),
        ("DIGITALOCEAN_ENDPOINT".into(), format!("{cloud}/v2")),
        (
            "DIGITALOCEAN_ACCESS_TOKEN".into(),
            rec.digitalocean_token.clone(),
        ),
    ]
}

/// Writes the inventory (0644) and the env file (0600).
pub fn write(paths: &LabPaths, rec: &LabRecord) -> Result<()> {
    write_atomic(
        &paths.inventory,
        render_inventory(paths, rec).as_bytes(),
        0o644,
    )?;
    let env: String = env_entries(paths, rec)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    write_atomic(&paths.env, env.as_bytes(), 0o600)
}
