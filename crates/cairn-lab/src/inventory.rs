//! Files `cairn lab up` writes for runbooks and tests: the inventory (TOML
//! `[[hosts]]` entries that deserialize into [`cairn::host::Host`]) and the
//! env file (`KEY=VALUE` lines, mode 0600).

use super::error::Result;
use super::naming::{domain, CLOUD_PORT, MIRROR_PORT};
use super::paths::LabPaths;
use super::record::{write_atomic, LabRecord, Origin};
use cairn::host::{Host, HostKeys};
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
            let mut h = Host::new(rec.host_name_of(n), &n.address);
            h.fqdn = Some(format!("{}.{d}", n.hostname()));
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
        (
            "CAIRN_APT_MIRROR_NEWER".into(),
            format!("{mirror}/{}", super::mirror::NEWER_APT_DIR),
        ),
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
        // DigitalOcean's own clients take the base without `/v2` and add it
        // to every path: pydo's `Client(token, endpoint=...)`, doctl's
        // `--api-url` (which reads this variable).
        ("DIGITALOCEAN_API_URL".into(), cloud.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{NodeRecord, PrivateAttachment};

    fn record() -> LabRecord {
        let mut rec = LabRecord {
            name: "demo".into(),
            subnet: 3,
            daemon_pid: None,
            hcloud_token: "h".into(),
            digitalocean_token: "d".into(),
            next_index: 3,
            nodes: Default::default(),
            private_networks: Default::default(),
            next_network_index: 1,
            cgroups: Vec::new(),
            memory_cgroup: None,
        };
        for (i, (name, origin)) in [("node-1", Origin::Up), ("web", Origin::Cloud)]
            .into_iter()
            .enumerate()
        {
            let index = i as u32 + 1;
            rec.nodes.insert(
                name.into(),
                NodeRecord {
                    name: name.into(),
                    index,
                    address: crate::naming::node_address(3, index),
                    origin,
                    pid: None,
                    authorized_keys: Vec::new(),
                    private: if origin == Origin::Cloud {
                        vec![PrivateAttachment {
                            network: "n1".into(),
                            cidr: "10.1.0.0/16".into(),
                            address: "10.1.1.2".into(),
                        }]
                    } else {
                        Vec::new()
                    },
                    host_key: Some("ssh-ed25519 AAAAkey".into()),
                    hostname: None,
                    powered_off: false,
                },
            );
        }
        rec
    }

    #[test]
    fn inventory_deserializes_into_cairn_hosts() {
        #[derive(serde::Deserialize)]
        struct Inv {
            hosts: Vec<Host>,
        }
        let p = crate::paths("demo");
        let text = render_inventory(&p, &record());
        let inv: Inv = toml::from_str(&text).expect("inventory parses");
        assert_eq!(inv.hosts.len(), 2);
        let h = &inv.hosts[0];
        assert_eq!(h.name, "node-1");
        assert_eq!(h.address, "10.200.3.11");
        assert_eq!(h.fqdn.as_deref(), Some("node-1.demo.lab"));
        assert_eq!(h.user, "root");
        assert_eq!(h.port, 22);
        assert_eq!(h.key.as_deref(), Some(p.key.as_path()));
        assert_eq!(h.host_keys, HostKeys::Workspace);
        assert_eq!(h.groups, ["lab"]);
        assert_eq!(inv.hosts[1].groups, ["cloud"]);
        assert_eq!(inv.hosts[1].private_address.as_deref(), Some("10.1.1.2"));
    }

    #[test]
    fn env_names_mirrors_and_cloud_endpoints() {
        let p = crate::paths("demo");
        let env: std::collections::BTreeMap<_, _> =
            env_entries(&p, &record()).into_iter().collect();
        assert_eq!(env["CAIRN_APT_MIRROR"], "http://10.200.3.1:7480/debian");
        assert_eq!(
            env["CAIRN_APT_MIRROR_NEWER"],
            "http://10.200.3.1:7480/debian-newer"
        );
        assert_eq!(env["CAIRN_RELEASE_MIRROR"], "http://10.200.3.1:7480");
        assert_eq!(env["HCLOUD_ENDPOINT"], "http://10.200.3.1:7481/v1");
        assert_eq!(env["DIGITALOCEAN_ENDPOINT"], "http://10.200.3.1:7481/v2");
        assert_eq!(env["DIGITALOCEAN_API_URL"], "http://10.200.3.1:7481");
        assert_eq!(env["CAIRN_LAB_DOMAIN"], "demo.lab");
    }

    #[test]
    fn cloud_nodes_go_by_hostname_unless_another_node_shares_it() {
        let mut rec = record();
        let web = rec.nodes["web"].clone();
        for (i, (name, hostname)) in [("hc-7", "twin"), ("do-9", "twin"), ("hc-8", "solo")]
            .into_iter()
            .enumerate()
        {
            let mut n = web.clone();
            n.name = name.into();
            n.hostname = Some(hostname.into());
            n.index = 10 + i as u32;
            n.address = crate::naming::node_address(3, n.index);
            rec.nodes.insert(name.into(), n);
        }
        let p = crate::paths("demo");
        let names: Vec<String> = hosts(&p, &rec).into_iter().map(|h| h.name).collect();
        assert_eq!(names, ["node-1", "web", "hc-7", "do-9", "solo"]);
        let fqdns: Vec<String> = hosts(&p, &rec).into_iter().filter_map(|h| h.fqdn).collect();
        assert_eq!(
            fqdns[2..],
            ["twin.demo.lab", "twin.demo.lab", "solo.demo.lab"]
        );
        assert_eq!(rec.find_node("solo").map(|n| n.name.as_str()), Some("hc-8"));
        assert_eq!(rec.find_node("hc-8").map(|n| n.name.as_str()), Some("hc-8"));
        assert!(rec.find_node("twin").is_none(), "twin names two nodes");
        let text = crate::hosts::render_hosts(&rec);
        assert!(
            text.contains("10.200.3.20\ttwin.demo.lab twin hc-7.demo.lab hc-7\n"),
            "{text}"
        );
        assert!(
            text.contains("10.200.3.21\ttwin.demo.lab twin do-9.demo.lab do-9\n"),
            "{text}"
        );
        let kh = crate::hosts::render_known_hosts(&rec);
        assert!(
            kh.contains("solo,solo.demo.lab,hc-8,hc-8.demo.lab,10.200.3.22 "),
            "{kh}"
        );
    }

    #[test]
    fn hosts_file_lists_localhost_gateway_and_every_node() {
        let text = crate::hosts::render_hosts(&record());
        assert!(text.contains("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("10.200.3.1\tgateway.demo.lab gateway\n"));
        assert!(text.contains("10.200.3.11\tnode-1.demo.lab node-1\n"));
        assert!(text.contains("10.200.3.12\tweb.demo.lab web\n"));
        let kh = crate::hosts::render_known_hosts(&record());
        assert_eq!(
            kh.lines().next(),
            Some("node-1,node-1.demo.lab,10.200.3.11 ssh-ed25519 AAAAkey")
        );
    }
}
