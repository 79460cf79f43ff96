//! The lab's networks. Each lab has a bridge `cb-<hash>` in the host network
//! namespace carrying `10.200.k.0/24`; the host holds `.1` (mirror and cloud
//! emulation listen there) and node `i` holds `.(10+i)` on its `eth0`, the
//! far end of a veth pair whose host end `cv-<hash>-<i>` is a bridge port.
//! Nodes get no default route, so they reach nothing but the lab's subnet.
//!
//! Private networks (cloud emulation) are bridges in a lab-owned helper
//! namespace `cairn-<lab>--private`, never in the host namespace, so two labs
//! may use the same private range. A node joins one with a veth pair from the
//! helper namespace into its own (`eth1`, `eth2`, ...).

use super::error::Result;
use super::exec::{self, cmd};
use super::naming::{self, LabNames};
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether the link `name` exists in the host namespace.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether the named network namespace exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Names of all network namespaces in /run/netns.
pub fn netns_list() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Names of all links in the host namespace.
pub fn links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn ip<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    exec::run(&mut cmd("ip", args))
}

/// Creates the lab bridge with the gateway address (if it is not there yet).
pub fn ensure_bridge(names: &LabNames, subnet: u8) -> Result<()> {
    let br = names.bridge();
    if !link_exists(&br) {
        ip(["link", "add", &br, "type", "bridge"])?;
    }
    let gw = format!("{}/24", naming::gateway(subnet));
    let addrs = ip(["-o", "-4", "addr", "show", "dev", &br])?;
    if !addrs.contains(&format!(" {gw} ")) {
        ip(["addr", "add", &gw, "dev", &br])?;
    }
    ip(["link", "set", &br, "up"])?;
    Ok(())
}

/// Addresses (IPv4, with prefix) configured anywhere in the host namespace.
pub fn host_addresses() -> Vec<String> {
    exec::run(&mut cmd("ip", ["-o", "-4", "addr", "show"]))
        .map(|out| {
            out.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.iter()
                        .position(|x| *x == "inet")
                        .and_then(|i| f.get(i + 1))
                        .map(|s| s.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Creates node `node`'s namespace and veth pair, attached to the bridge, with
/// `address/24` on its `eth0`. Leftovers of an earlier attempt are removed first.
pub fn create_node(names: &LabNames, node: &str, index: u32, address: &str) -> Result<()> {
    remove_node(names, node, index)?;
    let ns = names.node_netns(node);
    let veth = names.host_veth(index);
    ip(["netns", "add", &ns])?;
    let mac = node_mac(address);
    ip([
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "address", &mac, "netns", &ns,
    ])?;
    ip(["link", "set", &veth, "master", &names.bridge(), "up"])?;
    ip([
        "-n",
        &ns,
        "addr",
        "add",
        &format!("{address}/24"),
        "dev",
        "eth0",
    ])?;
    ip(["-n", &ns, "link", "set", "eth0", "up"])?;
    ip(["-n", &ns, "link", "set", "lo", "up"])?;
    Ok(())
}

/// The MAC address of the node with IPv4 `address` on its `eth0`:
/// `02:ca:` (locally administered) and the address's four octets. Fixed, like
/// a real NIC's, so a node powered off and on again is reached at once
/// through the neighbour caches of the host and the other nodes.
pub fn node_mac(address: &str) -> String {
    let o: Vec<u8> = address
        .split('.')
        .filter_map(|x| x.parse::<u8>().ok())
        .collect();
    let o = if o.len() == 4 { o } else { vec![0; 4] };
    format!("02:ca:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// Deletes node `node`'s veth pair and namespace and waits until the host
/// end is really gone (namespace teardown is asynchronous; a later
/// `ip link add` of the same name would fail with "File exists").
pub fn remove_node(names: &LabNames, node: &str, index: u32) -> Result<()> {
    let ns = names.node_netns(node);
    let veth = names.host_veth(index);
    if link_exists(&veth) {
        ip(["link", "del", &veth])?;
    }
    if netns_exists(&ns) {
        ip(["netns", "del", &ns])?;
    }
    wait_links_gone(&[veth], Duration::from_secs(10));
    Ok(())
}

/// Waits until none of `links` exists; false on timeout.
pub fn wait_links_gone(links: &[String], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if links.iter().all(|l| !link_exists(l)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates the helper namespace holding the lab's private-network bridges.
pub fn ensure_private_netns(names: &LabNames) -> Result<()> {
    let ns = names.private_netns();
    if !netns_exists(&ns) {
        ip(["netns", "add", &ns])?;
        ip(["-n", &ns, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

/// Attaches node `node` (index `node_index`) to private network `net_index`
/// as interface `ifname` with `address/prefix`.
pub fn attach_private(
    names: &LabNames,
    node: &str,
    node_index: u32,
    net_index: u32,
    ifname: &str,
    address_with_prefix: &str,
) -> Result<()> {
    ensure_private_netns(names)?;
    let helper = names.private_netns();
    let br = naming::private_bridge(net_index);
    let existing = ip(["-n", &helper, "-o", "link", "show"])?;
    if !existing.contains(&format!(": {br}:")) {
        ip(["-n", &helper, "link", "add", &br, "type", "bridge"])?;
        ip(["-n", &helper, "link", "set", &br, "up"])?;
    }
    let pv = naming::private_veth(node_index, net_index);
    if existing.contains(&format!(": {pv}@")) {
        ip(["-n", &helper, "link", "del", &pv])?;
    }
    let ns = names.node_netns(node);
    ip([
        "-n", &helper, "link", "add", &pv, "type", "veth", "peer", "name", ifname, "netns", &ns,
    ])?;
    ip(["-n", &helper, "link", "set", &pv, "master", &br, "up"])?;
    ip(["-n", &ns, "addr", "add", address_with_prefix, "dev", ifname])?;
    ip(["-n", &ns, "link", "set", ifname, "up"])?;
    Ok(())
}

/// Removes node `node_index`'s helper-side veth on private network `net_index`.
pub fn detach_private(names: &LabNames, node_index: u32, net_index: u32) -> Result<()> {
    let helper = names.private_netns();
    if !netns_exists(&helper) {
        return Ok(());
    }
    let pv = naming::private_veth(node_index, net_index);
    let existing = ip(["-n", &helper, "-o", "link", "show"])?;
    if existing.contains(&format!(": {pv}@")) {
        ip(["-n", &helper, "link", "del", &pv])?;
    }
    Ok(())
}

/// Deletes the lab's helper namespace (and with it all private bridges).
pub fn remove_private_netns(names: &LabNames) -> Result<()> {
    let ns = names.private_netns();
    if netns_exists(&ns) {
        ip(["netns", "del", &ns])?;
    }
    Ok(())
}

/// Deletes the lab bridge.
pub fn remove_bridge(names: &LabNames) -> Result<()> {
    let br = names.bridge();
    if link_exists(&br) {
        ip(["link", "del", &br])?;
    }
    wait_links_gone(&[br], Duration::from_secs(10));
    Ok(())
}
