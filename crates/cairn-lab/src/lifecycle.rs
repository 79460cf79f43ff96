//! Bringing a lab up, adding and removing nodes, inspecting it and tearing
//! it down. Every change holds the lab's lock; the record on disk is the
//! source of truth, and teardown also sweeps by name so that a lab whose
//! record was lost still goes away completely.

use super::cgroup;
use super::daemon;
use super::error::{LabError, Result};
use super::exec::{self, cmd};
use super::firewall;
use super::hosts;
use super::image;
use super::inventory;
use super::naming::{self, check_hostname, check_lab_name, check_node_name, domain, LabNames};
use super::net;
use super::node;
use super::paths::{image_paths, paths, LabPaths};
use super::prereq;
use super::process;
use super::record::{
    self, LabLock, LabRecord, NodeRecord, Origin, PrivateAttachment, PrivateNetwork,
};
use super::state::{NodeInfo, NodeSpec};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What `up` reports per node.
#[derive(Clone, Debug)]
pub struct NodeStatus {
    pub name: String,
    pub address: String,
    pub fqdn: String,
    /// `systemctl is-system-running` (or why it could not be asked).
    pub state: String,
}

/// Brings lab `name` to `nodes` nodes named `node-1..node-N` (nodes a cloud
/// emulation added are kept) and waits until every node answers ssh with
/// systemd running or degraded. Builds the image cache first if needed.
/// Running it again on an up lab only repairs what is missing.
pub fn up(name: &str, nodes: u32, timeout: Duration) -> Result<Vec<NodeStatus>> {
    check_lab_name(name)?;
    if nodes as usize > naming::MAX_NODE_INDEX as usize {
        return Err(LabError::Invalid {
            what: "node count",
            value: nodes.to_string(),
            message: format!("at most {} nodes fit a lab's /24", naming::MAX_NODE_INDEX),
        });
    }
    let img_paths = image_paths();
    let build = !image::rootfs_ready(&img_paths) || !super::mirror::ready(&img_paths);
    prereq::check(build)?;
    let img = image::ensure(false)?;
    super::limits::ensure()?;
    let p = paths(name);
    std::fs::create_dir_all(&p.nodes).map_err(LabError::io("create directory", &p.nodes))?;
    let _lock = LabLock::lab(name)?;
    let mut rec = match LabRecord::load(name)? {
        Some(r) => r,
        None => new_record(name)?,
    };
    let names = LabNames::new(name);
    super::ssh::ensure_lab_key(&p, name)?;
    net::ensure_bridge(&names, rec.subnet)?;
    firewall::ensure(&names, &rec)?;
    for d in rec.cgroups.iter().chain(rec.memory_cgroup.iter()) {
        let _ = std::fs::create_dir_all(d);
    }
    daemon::ensure_running(&p, &mut rec)?;
    rec.save()?;

    // Converge: drop `up` nodes beyond N, recreate nodes that are not running.
    let wanted: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
    let mut to_destroy = Vec::new();
    for n in rec.nodes.values() {
        let extra = n.origin == Origin::Up && !wanted.contains(&n.name);
        let running = !node::nspawn_pids(&p, &n.name, n.pid).is_empty();
        // A powered-off node stays off (with its disk) unless it is extra.
        if extra || (!running && !n.powered_off) {
            to_destroy.push((n.clone(), extra));
        }
    }
    for (n, extra) in &to_destroy {
        destroy_node(&rec, &p, n)?;
        if *extra {
            rec.nodes.remove(&n.name);
        } else if let Some(r) = rec.nodes.get_mut(&n.name) {
            r.pid = None;
        }
    }
    for w in &wanted {
        if !rec.nodes.contains_key(w) {
            let index = take_index(&mut rec)?;
            rec.nodes.insert(
                w.clone(),
                NodeRecord {
                    name: w.clone(),
                    index,
                    address: naming::node_address(rec.subnet, index),
                    origin: Origin::Up,
                    pid: None,
                    authorized_keys: Vec::new(),
                    private: Vec::new(),
                    host_key: None,
                    hostname: None,
                    powered_off: false,
                },
            );
        }
    }
    rec.save()?;
    let mut starting: Vec<NodeRecord> = rec
        .nodes
        .values()
        .filter(|n| n.pid.is_none() && !n.powered_off)
        .cloned()
        .collect();
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = starting
            .iter_mut()
            .map(|n| {
                let (rec, p, img) = (&rec, &p, &img);
                s.spawn(move || node::create(rec, p, img, n))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("node thread"))
            .collect()
    });
    for n in starting {
        rec.nodes.insert(n.name.clone(), n);
    }
    rec.save()?;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    hosts::publish(&p, &rec)?;
    inventory::write(&p, &rec)?;
    wait_all(&rec, &p, Instant::now() + timeout)
}

/// Waits for every node of `rec` in parallel; the first failure stops the
/// others from waiting on.
fn wait_all(rec: &LabRecord, p: &LabPaths, deadline: Instant) -> Result<Vec<NodeStatus>> {
    let mut nodes: Vec<&NodeRecord> = rec.nodes.values().filter(|n| !n.powered_off).collect();
    nodes.sort_by_key(|n| n.index);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let results: Vec<Result<String>> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| {
                let failed = &failed;
                s.spawn(move || {
                    let r = node::wait_ready(rec, p, n, deadline, Some(failed));
                    if r.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    r
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("wait thread"))
            .collect()
    });
    let mut out = Vec::new();
    let mut first_err = None;
    for (n, r) in nodes.iter().zip(results) {
        match r {
            Ok(state) => out.push(NodeStatus {
                name: n.name.clone(),
                address: n.address.clone(),
                fqdn: format!("{}.{}", n.hostname(), domain(&rec.name)),
                state,
            }),
            Err(LabError::Cancelled) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// A fresh record: first free subnet, new cloud tokens, cgroup directories.
fn new_record(name: &str) -> Result<LabRecord> {
    let _alloc = LabLock::allocation()?;
    let mut used = record::used_subnets();
    for a in net::host_addresses() {
        let mut o = a.split(['.', '/']);
        if let (Some("10"), Some("200"), Some(k)) = (o.next(), o.next(), o.next()) {
            if let Ok(k) = k.parse::<u8>() {
                used.push(k);
            }
        }
    }
    let subnet = (0..=255u8)
        .find(|k| !used.contains(k))
        .ok_or_else(|| LabError::lab(name, "all 256 lab subnets 10.200.k.0/24 are in use"))?;
    let names = LabNames::new(name);
    let (cgroups, memory) = cgroup::lab_dirs(&names.cgroup());
    if cgroups.is_empty() {
        return Err(LabError::lab(
            name,
            "no cgroup2 or name=systemd cgroup hierarchy is mounted",
        ));
    }
    let rec = LabRecord {
        name: name.into(),
        subnet,
        daemon_pid: None,
        hcloud_token: hex::encode(rand::random::<[u8; 24]>()),
        digitalocean_token: hex::encode(rand::random::<[u8; 24]>()),
        next_index: 1,
        nodes: Default::default(),
        private_networks: Default::default(),
        next_network_index: 1,
        cgroups,
        memory_cgroup: memory,
    };
    rec.save()?;
    Ok(rec)
}

fn take_index(rec: &mut LabRecord) -> Result<u32> {
    let i = rec.next_index;
    if i > naming::MAX_NODE_INDEX {
        return Err(LabError::lab(
            &rec.name,
            "no node addresses left in the lab's /24",
        ));
    }
    rec.next_index += 1;
    Ok(i)
}

fn all_cgroup_dirs(rec: Option<&LabRecord>, names: &LabNames) -> Vec<PathBuf> {
    let (mut dirs, mem) = cgroup::lab_dirs(&names.cgroup());
    dirs.extend(mem);
    if let Some(r) = rec {
        dirs.extend(r.cgroups.iter().cloned());
        dirs.extend(r.memory_cgroup.iter().cloned());
    }
    dirs.sort();
    dirs.dedup();
    dirs
}

fn destroy_node(rec: &LabRecord, p: &LabPaths, n: &NodeRecord) -> Result<()> {
    let names = LabNames::new(&rec.name);
    let nets: Vec<u32> = n
        .private
        .iter()
        .filter_map(|a| rec.private_networks.get(&a.network).map(|x| x.index))
        .collect();
    let d = node::Doomed {
        name: n.name.clone(),
        index: Some(n.index),
        pid: n.pid,
        private_nets: nets,
    };
    node::destroy(&rec.name, p, &all_cgroup_dirs(Some(rec), &names), &d)
}

/// Adds node `spec.name` to the running lab `name` (for cloud emulations):
/// boots it with the lab key plus `spec.authorized_keys`, attaches its private
/// networks, makes every node resolve it, and waits until it is ready.
pub fn add_node(name: &str, spec: &NodeSpec, timeout: Duration) -> Result<NodeInfo> {
    check_node_name(&spec.name)?;
    if let Some(h) = &spec.hostname {
        check_hostname(h)?;
    }
    super::limits::ensure()?;
    let p = paths(name);
    let _lock = LabLock::lab(name)?;
    let mut rec = LabRecord::load(name)?.ok_or_else(|| LabError::lab(name, "is not up"))?;
    if rec.nodes.contains_key(&spec.name) {
        return Err(LabError::node(name, &spec.name, "already exists"));
    }
    for att in &spec.private_networks {
        check_private(name, att)?;
        match rec.private_networks.get(&att.network) {
            Some(n) if n.cidr != att.cidr => {
                return Err(LabError::node(
                    name,
                    &spec.name,
                    format!(
                        "private network {} has range {}, not {}",
                        att.network, n.cidr, att.cidr
                    ),
                ))
            }
            Some(_) => {}
            None => {
                let index = rec.next_network_index;
                rec.next_network_index += 1;
                rec.private_networks.insert(
                    att.network.clone(),
                    PrivateNetwork {
                        index,
                        cidr: att.cidr.clone(),
                    },
                );
            }
        }
    }
    let index = take_index(&mut rec)?;
    let mut n = NodeRecord {
        name: spec.name.clone(),
        index,
        address: naming::node_address(rec.subnet, index),
        origin: Origin::Cloud,
        pid: None,
        authorized_keys: spec.authorized_keys.clone(),
        private: spec.private_networks.clone(),
        host_key: None,
        hostname: spec.hostname.clone().filter(|h| *h != spec.name),
        powered_off: false,
    };
    rec.nodes.insert(n.name.clone(), n.clone());
    rec.save()?;
    let img = image_paths();
    let created = node::create(&rec, &p, &img, &mut n);
    rec.nodes.insert(n.name.clone(), n.clone());
    rec.save()?;
    created?;
    hosts::publish(&p, &rec)?;
    inventory::write(&p, &rec)?;
    node::wait_ready(&rec, &p, &n, Instant::now() + timeout, None)?;
    if let Some(password) = &spec.root_password {
        set_root_password(name, &p, &n, password)?;
    }
    Ok(info(&rec, &n))
}

/// Sets root's password on node `n` with `chpasswd`, the password on its
/// stdin (never on a command line).
fn set_root_password(lab: &str, p: &LabPaths, n: &NodeRecord, password: &str) -> Result<()> {
    use std::io::Write;
    use std::process::Stdio;
    let mut c = super::ssh::command(p, &n.address);
    c.arg("chpasswd")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let failed = |m: String| LabError::node(lab, &n.name, format!("setting root's password: {m}"));
    let mut child = c.spawn().map_err(|e| failed(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(format!("root:{password}\n").as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

fn check_private(lab: &str, att: &PrivateAttachment) -> Result<()> {
    let net: ipnet::Ipv4Net = att.cidr.parse().map_err(|e| LabError::Invalid {
        what: "private network cidr",
        value: att.cidr.clone(),
        message: format!("{e}"),
    })?;
    let addr: std::net::Ipv4Addr = att.address.parse().map_err(|e| LabError::Invalid {
        what: "private address",
        value: att.address.clone(),
        message: format!("{e}"),
    })?;
    if !net.contains(&addr) {
        return Err(LabError::lab(
            lab,
            format!("private address {} is not in {}", att.address, att.cidr),
        ));
    }
    Ok(())
}

/// Removes node `node` from lab `name` and from every node's /etc/hosts.
pub fn remove_node(name: &str, node_name: &str) -> Result<()> {
    let p = paths(name);
    let _lock = LabLock::lab(name)?;
    let mut rec = LabRecord::load(name)?.ok_or_else(|| LabError::lab(name, "is not up"))?;
    let n = rec
        .nodes
        .get(node_name)
        .cloned()
        .ok_or_else(|| LabError::node(name, node_name, "no such node"))?;
    destroy_node(&rec, &p, &n)?;
    rec.nodes.remove(node_name);
    rec.save()?;
    hosts::publish(&p, &rec)?;
    inventory::write(&p, &rec)
}

/// Powers node `node_name` of lab `name` off the hard way (see
/// [`node::power_off`]): network gone, every process SIGKILLed, disk kept.
/// A node already off stays off.
pub fn power_off(name: &str, node_name: &str) -> Result<()> {
    let p = paths(name);
    let _lock = LabLock::lab(name)?;
    let mut rec = LabRecord::load(name)?.ok_or_else(|| LabError::lab(name, "is not up"))?;
    let n = rec
        .nodes
        .get(node_name)
        .cloned()
        .ok_or_else(|| LabError::node(name, node_name, "no such node"))?;
    if n.powered_off {
        return Ok(());
    }
    let names = LabNames::new(name);
    // Recorded first: a power-off interrupted halfway is finished by `down`
    // or by `poweron`, never undone by `up` recreating the node's disk.
    if let Some(r) = rec.nodes.get_mut(node_name) {
        r.powered_off = true;
    }
    rec.save()?;
    node::power_off(&rec, &p, &all_cgroup_dirs(Some(&rec), &names), &n)?;
    if let Some(r) = rec.nodes.get_mut(node_name) {
        r.pid = None;
    }
    rec.save()
}

/// Boots the powered-off node `node_name` of lab `name` from its disk (see
/// [`node::power_on`]) and waits, like `up`, until it answers ssh with
/// systemd running or degraded; returns that state. A node that is running
/// is only waited for.
pub fn power_on(name: &str, node_name: &str, timeout: Duration) -> Result<String> {
    let p = paths(name);
    let _lock = LabLock::lab(name)?;
    let mut rec = LabRecord::load(name)?.ok_or_else(|| LabError::lab(name, "is not up"))?;
    let mut n = rec
        .nodes
        .get(node_name)
        .cloned()
        .ok_or_else(|| LabError::node(name, node_name, "no such node"))?;
    if n.powered_off || node::nspawn_pids(&p, &n.name, n.pid).is_empty() {
        if !n.powered_off {
            // Stopped without `poweroff` (crashed): clear what is left first.
            let names = LabNames::new(name);
            node::power_off(&rec, &p, &all_cgroup_dirs(Some(&rec), &names), &n)?;
        }
        let booted = node::power_on(&rec, &p, &image_paths(), &mut n);
        n.powered_off = booted.is_err();
        rec.nodes.insert(n.name.clone(), n.clone());
        rec.save()?;
        booted?;
    }
    node::wait_ready(&rec, &p, &n, Instant::now() + timeout, None)
}

/// What the cloud emulation reports about a node.
pub fn info(rec: &LabRecord, n: &NodeRecord) -> NodeInfo {
    NodeInfo {
        name: n.name.clone(),
        hostname: n.hostname().to_string(),
        address: n.address.clone(),
        private: n
            .private
            .iter()
            .map(|a| (a.network.clone(), a.address.clone()))
            .collect(),
        fqdn: format!("{}.{}", n.hostname(), domain(&rec.name)),
    }
}

/// Tears lab `name` down completely: daemon, nodes, namespaces, links,
/// bridge, firewall table, cgroups, mounts and the lab directory. Works
/// without a record (sweeping by name) and on a lab that is not up.
/// Fails if anything is left afterwards, naming it.
pub fn down(name: &str) -> Result<()> {
    check_lab_name(name)?;
    prereq::check(false)?;
    let p = paths(name);
    let names = LabNames::new(name);
    let lock = if p.dir.exists() {
        Some(LabLock::lab(name)?)
    } else {
        None
    };
    let rec = LabRecord::load(name).unwrap_or(None);
    daemon::stop(name, rec.as_ref().and_then(|r| r.daemon_pid));
    super::state_etcd::stop(name);
    let cg = all_cgroup_dirs(rec.as_ref(), &names);

    // Every node we know of: recorded, with a directory, or with a cgroup.
    let mut nodes: Vec<node::Doomed> = Vec::new();
    if let Some(r) = &rec {
        for n in r.nodes.values() {
            let private_nets = n
                .private
                .iter()
                .filter_map(|a| r.private_networks.get(&a.network).map(|x| x.index))
                .collect();
            nodes.push(node::Doomed {
                name: n.name.clone(),
                index: Some(n.index),
                pid: n.pid,
                private_nets,
            });
        }
    }
    let mut extra: Vec<String> = Vec::new();
    for d in std::iter::once(p.nodes.clone()).chain(cg.iter().cloned()) {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    extra.push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    for x in extra {
        if !nodes.iter().any(|n| n.name == x) {
            nodes.push(node::Doomed {
                name: x,
                ..Default::default()
            });
        }
    }
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|d| {
                let (p, cg) = (&p, &cg);
                s.spawn(move || node::destroy(name, p, cg, d))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("teardown thread"))
            .collect()
    });
    let mut errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err())
        .map(|e| e.to_string())
        .collect();

    // Sweep by name whatever is left.
    let veths: Vec<String> = net::links()
        .into_iter()
        .filter(|l| l.starts_with(&names.veth_prefix()))
        .collect();
    for l in &veths {
        if let Err(e) = exec::run(&mut cmd("ip", ["link", "del", l])) {
            errors.push(e.to_string());
        }
    }
    net::wait_links_gone(&veths, Duration::from_secs(10));
    for ns in net::netns_list()
        .into_iter()
        .filter(|n| n.starts_with(&names.netns_prefix()))
    {
        if let Err(e) = exec::run(&mut cmd("ip", ["netns", "del", &ns])) {
            errors.push(e.to_string());
        }
    }
    if let Err(e) = net::remove_bridge(&names) {
        errors.push(e.to_string());
    }
    if let Err(e) = firewall::remove(&names) {
        errors.push(e.to_string());
    }
    for d in &cg {
        if let Err(e) = cgroup::remove_tree(d, Duration::from_secs(10)) {
            errors.push(e.to_string());
        }
    }
    if let Err(e) = node::unmount_below(&p.dir).and_then(|_| image::remove_dir(&p.dir)) {
        errors.push(e.to_string());
    }
    drop(lock);
    let left = leftovers(name);
    if !left.is_empty() {
        errors.push(format!("still present after teardown: {}", left.join(", ")));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(LabError::lab(
            name,
            format!("teardown incomplete:\n  {}", errors.join("\n  ")),
        ))
    }
}

/// Everything of lab `name` that exists on the machine: processes, network
/// namespaces, links, cgroups, mounts, the lab directory. Empty when the lab
/// is down.
pub fn leftovers(name: &str) -> Vec<String> {
    let p = paths(name);
    let names = LabNames::new(name);
    let mut out = Vec::new();
    let nodes_mark = format!("--directory={}/", p.nodes.display());
    for pid in process::find(|cl| cl.starts_with("systemd-nspawn ") && cl.contains(&nodes_mark)) {
        out.push(format!("systemd-nspawn pid {pid}"));
    }
    for pid in daemon::pids(name) {
        out.push(format!("lab daemon pid {pid}"));
    }
    for pid in super::state_etcd::pids(name) {
        out.push(format!("state etcd pid {pid}"));
    }
    for ns in net::netns_list() {
        if ns.starts_with(&names.netns_prefix()) {
            out.push(format!("netns {ns}"));
        }
    }
    for l in net::links() {
        if l.starts_with(&names.veth_prefix()) || l == names.bridge() {
            out.push(format!("link {l}"));
        }
    }
    for d in all_cgroup_dirs(None, &names) {
        if d.exists() {
            out.push(format!("cgroup {}", d.display()));
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = format!("{}/", p.dir.display());
    for l in info.lines() {
        if let Some(mp) = l.split_whitespace().nth(4) {
            if mp.starts_with(&prefix) {
                out.push(format!("mount {mp}"));
            }
        }
    }
    if firewall::exists(&names) {
        out.push(format!("nftables table {}", names.nft_table()));
    }
    if p.dir.exists() {
        out.push(format!("directory {}", p.dir.display()));
    }
    out
}

/// One line per node for `cairn lab status`, plus the lab's summary.
pub fn status(name: &str) -> Result<String> {
    check_lab_name(name)?;
    let p = paths(name);
    let Some(rec) = LabRecord::load(name)? else {
        let left = leftovers(name);
        return Ok(if left.is_empty() {
            format!("lab {name} is down\n")
        } else {
            format!(
                "lab {name} is down but has leftovers (run `cairn lab down --name {name}`): {}\n",
                left.join(", ")
            )
        });
    };
    let daemon = match process::verified(rec.daemon_pid, &["lab", "serve", name]) {
        Some(pid) => format!("running (pid {pid})"),
        None => "NOT running".into(),
    };
    let mut s = format!(
        "lab {name}: subnet {} (gateway {}), domain {}\ndaemon: {daemon}, mirror http://{}:{}, cloud http://{}:{}\n",
        naming::subnet(rec.subnet),
        rec.gateway(),
        domain(name),
        rec.gateway(),
        naming::MIRROR_PORT,
        rec.gateway(),
        naming::CLOUD_PORT
    );
    let mut nodes: Vec<&NodeRecord> = rec.nodes.values().collect();
    nodes.sort_by_key(|n| n.index);
    let states: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = nodes
            .iter()
            .map(|n| {
                let p = &p;
                sc.spawn(move || {
                    if n.powered_off {
                        return "powered off".to_string();
                    }
                    if node::nspawn_pids(p, &n.name, n.pid).is_empty() {
                        return "stopped".to_string();
                    }
                    match exec::output(
                        super::ssh::command(p, &n.address).args(["systemctl", "is-system-running"]),
                    ) {
                        Ok(o) if !o.stdout.is_empty() => {
                            String::from_utf8_lossy(&o.stdout).trim().to_string()
                        }
                        Ok(o) => format!("unreachable ({})", exec::failure_detail(&o)),
                        Err(e) => format!("unreachable ({e})"),
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("status thread"))
            .collect()
    });
    for (n, st) in nodes.iter().zip(states) {
        // The v1 memory cgroup, else a cgroup2 `memory.current` if the
        // memory controller is enabled there.
        let mem = rec
            .memory_cgroup
            .iter()
            .chain(&rec.cgroups)
            .find_map(|m| cgroup::memory_usage(&m.join(&n.name)))
            .map(|b| format!("{} MiB", b / (1 << 20)))
            .unwrap_or_else(|| "-".into());
        let private: Vec<String> = n
            .private
            .iter()
            .map(|a| format!("{}={}", a.network, a.address))
            .collect();
        s.push_str(&format!(
            "  {:<12} {:<14} {:<28} {:<11} mem {:<9} {}{}\n",
            rec.host_name_of(n),
            n.address,
            format!("{}.{}", n.hostname(), domain(name)),
            st,
            mem,
            match n.origin {
                Origin::Up => "lab".to_string(),
                Origin::Cloud if n.hostname() != n.name => format!("cloud node {}", n.name),
                Origin::Cloud => "cloud".to_string(),
            },
            if private.is_empty() {
                String::new()
            } else {
                format!(" private {}", private.join(" "))
            }
        ));
    }
    s.push_str(&format!(
        "inventory: {}\nenv:       {}\n",
        p.inventory.display(),
        p.env.display()
    ));
    Ok(s)
}
