//! One node: an overlay of the base image, its own network namespace and
//! cgroups, booted by `systemd-nspawn -b`; and its orderly teardown.

use super::cgroup;
use super::error::{LabError, Result};
use super::exec::{self, cmd};
use super::hosts;
use super::naming::{domain, LabNames, MIRROR_PORT};
use super::net;
use super::paths::{ImagePaths, LabPaths};
use super::process;
use super::record::{write_atomic, LabRecord, NodeRecord};
use super::ssh;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Directory of node `node`: `upper/`, `work/`, `merged/` (the overlay), its
/// host key and `console.log`.
pub fn dir(paths: &LabPaths, node: &str) -> PathBuf {
    paths.nodes.join(node)
}

/// The node's root as the host sees it (the overlay mount point).
pub fn merged(paths: &LabPaths, node: &str) -> PathBuf {
    dir(paths, node).join("merged")
}

/// The node's console output (systemd's boot messages).
pub fn console_log(paths: &LabPaths, node: &str) -> PathBuf {
    dir(paths, node).join("console.log")
}

/// Creates node `n` and starts booting it: network, private attachments,
/// overlay root with node files, cgroups, systemd-nspawn. Records the pid and
/// host key in `n`. Does not wait for the boot.
pub fn create(
    rec: &LabRecord,
    paths: &LabPaths,
    img: &ImagePaths,
    n: &mut NodeRecord,
) -> Result<()> {
    plug_network(rec, n)?;

    let d = dir(paths, &n.name);
    unmount_below(&d)?;
    super::image::remove_dir(&d)?;
    for sub in ["upper", "work", "merged"] {
        let p = d.join(sub);
        std::fs::create_dir_all(&p).map_err(LabError::io("create directory", &p))?;
    }
    let m = merged(paths, &n.name);
    mount_root(img, &d)?;

    let fqdn = format!("{}.{}", n.hostname(), domain(&rec.name));
    n.host_key = Some(ssh::node_host_key(&d, &format!("root@{fqdn}"))?);
    for f in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
        let to = m.join("etc/ssh").join(f);
        std::fs::copy(d.join(f), &to).map_err(LabError::io("copy host key to", &to))?;
    }
    let mut keys = vec![ssh::lab_pubkey(paths)?];
    keys.extend(n.authorized_keys.iter().map(|k| k.trim().to_string()));
    let root_ssh = m.join("root/.ssh");
    std::fs::create_dir_all(&root_ssh).map_err(LabError::io("create directory", &root_ssh))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root_ssh, std::fs::Permissions::from_mode(0o700))
        .map_err(LabError::io("chmod", &root_ssh))?;
    write_atomic(
        &root_ssh.join("authorized_keys"),
        format!("{}\n", keys.join("\n")).as_bytes(),
        0o600,
    )?;
    write_atomic(
        &m.join("etc/hostname"),
        format!("{}\n", n.hostname()).as_bytes(),
        0o644,
    )?;
    let machine_id = hex::encode(rand::random::<[u8; 16]>());
    write_atomic(
        &m.join("etc/machine-id"),
        format!("{machine_id}\n").as_bytes(),
        0o444,
    )?;
    write_atomic(
        &m.join("etc/apt/sources.list"),
        format!(
            "# the lab mirror only (cairn lab {})\ndeb [trusted=yes] http://{}:{MIRROR_PORT}/debian ./\n",
            rec.name,
            rec.gateway()
        )
        .as_bytes(),
        0o644,
    )?;
    let mut with_me = rec.clone();
    with_me.nodes.insert(n.name.clone(), n.clone());
    write_atomic(
        &m.join("etc/hosts"),
        hosts::render_hosts(&with_me).as_bytes(),
        0o644,
    )?;
    boot(rec, paths, n)
}

/// Creates node `n`'s network namespace and veth pair on the lab bridge and
/// attaches it to its private networks.
fn plug_network(rec: &LabRecord, n: &NodeRecord) -> Result<()> {
    let names = LabNames::new(&rec.name);
    let err = |m: String| LabError::node(&rec.name, &n.name, m);
    net::create_node(&names, &n.name, n.index, &n.address)?;
    for (i, att) in n.private.iter().enumerate() {
        let net_rec = rec.private_networks.get(&att.network).ok_or_else(|| {
            err(format!(
                "private network {} is not in the lab record",
                att.network
            ))
        })?;
        let prefix = att
            .cidr
            .split_once('/')
            .map(|(_, p)| p)
            .ok_or_else(|| err(format!("private network cidr {} has no prefix", att.cidr)))?;
        net::attach_private(
            &names,
            &n.name,
            n.index,
            net_rec.index,
            &format!("eth{}", i + 1),
            &format!("{}/{prefix}", att.address),
        )?;
    }
    Ok(())
}

/// Mounts the node's overlay root (`upper/` over the image) on `merged/`.
fn mount_root(img: &ImagePaths, d: &Path) -> Result<()> {
    exec::run(
        cmd("mount", ["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                img.rootfs.display(),
                d.join("upper").display(),
                d.join("work").display()
            ))
            .arg(d.join("merged")),
    )?;
    Ok(())
}

/// Launches systemd-nspawn on the node's mounted root in its own cgroups;
/// records its pid in `n`.
fn boot(rec: &LabRecord, paths: &LabPaths, n: &mut NodeRecord) -> Result<()> {
    let names = LabNames::new(&rec.name);
    let m = merged(paths, &n.name);
    let cg = cgroup::create_node(&rec.cgroups, rec.memory_cgroup.as_deref(), &n.name)?;
    let ns = names.node_netns(&n.name);
    let argv: Vec<String> = vec![
        "systemd-nspawn".into(),
        "--register=no".into(),
        "--keep-unit".into(),
        "--boot".into(),
        "--console=read-only".into(),
        format!("--directory={}", m.display()),
        format!("--network-namespace-path=/run/netns/{ns}"),
        format!("--machine={}", n.name),
    ];
    let pid = process::spawn_detached(
        &cgroup::join_prelude(&cg),
        &argv,
        &console_log(paths, &n.name),
    )?;
    n.pid = Some(pid);
    Ok(())
}

/// The systemd-nspawn processes running node `node` (by recorded pid and by
/// scanning for its root directory).
pub fn nspawn_pids(paths: &LabPaths, node: &str, recorded: Option<u32>) -> Vec<u32> {
    let m = merged(paths, node);
    let mark = format!("--directory={}", m.display());
    let mut pids: Vec<u32> =
        process::find(|cl| cl.starts_with("systemd-nspawn ") && cl.contains(&mark));
    if let Some(p) = process::verified(recorded, &["systemd-nspawn", &mark]) {
        if !pids.contains(&p) {
            pids.push(p);
        }
    }
    pids
}

/// Polls the node over ssh until `systemctl is-system-running` says running
/// or degraded; returns that state. Fails early when systemd-nspawn exits,
/// and gives up with [`LabError::Cancelled`] once `cancel` is set.
pub fn wait_ready(
    rec: &LabRecord,
    paths: &LabPaths,
    n: &NodeRecord,
    deadline: Instant,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<String> {
    loop {
        if cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) {
            return Err(LabError::Cancelled);
        }
        if let Some(pid) = n.pid {
            if !process::alive(pid) {
                return Err(LabError::node(
                    &rec.name,
                    &n.name,
                    format!(
                        "systemd-nspawn (pid {pid}) exited during boot; console log {}:\n{}",
                        console_log(paths, &n.name).display(),
                        log_tail(&console_log(paths, &n.name), 20)
                    ),
                ));
            }
        }
        let out =
            exec::output(ssh::command(paths, &n.address).args(["systemctl", "is-system-running"]))?;
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let last = match state.as_str() {
            "running" => return Ok(state),
            "degraded" => {
                let failed = exec::output(ssh::command(paths, &n.address).args([
                    "systemctl",
                    "--failed",
                    "--plain",
                    "--no-legend",
                ]))?;
                let units: Vec<String> = String::from_utf8_lossy(&failed.stdout)
                    .lines()
                    .filter_map(|l| l.split_whitespace().next().map(String::from))
                    .collect();
                return Ok(format!("degraded (failed: {})", units.join(" ")));
            }
            "" => exec::failure_detail(&out),
            s => format!("systemd is {s}"),
        };
        if Instant::now() >= deadline {
            return Err(LabError::node(
                &rec.name,
                &n.name,
                format!(
                    "not ready by the deadline (last: {last}); console log {}",
                    console_log(paths, &n.name).display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().rev().take(lines).collect();
    v.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// What teardown needs to know about a node; everything but the name is
/// optional (a node found only by its directory or cgroup has no record).
#[derive(Clone, Debug, Default)]
pub struct Doomed {
    pub name: String,
    /// Its index (decides the host veth name), if recorded.
    pub index: Option<u32>,
    /// Its recorded systemd-nspawn pid.
    pub pid: Option<u32>,
    /// Indices of the private networks it is attached to.
    pub private_nets: Vec<u32>,
}

/// Stops node `d` and removes everything it had: halts the container's
/// systemd (SIGRTMIN+3 to nspawn's child) and waits for nspawn to exit; kills
/// what is left in its cgroups by pid; unmounts its root; deletes its veth
/// pairs, namespace, cgroups and directory.
pub fn destroy(
    rec_name: &str,
    paths: &LabPaths,
    cgroup_dirs: &[PathBuf],
    d: &Doomed,
) -> Result<()> {
    let (node, index, pid, private_nets) = (d.name.as_str(), d.index, d.pid, &d.private_nets);
    let names = LabNames::new(rec_name);
    let nspawns = nspawn_pids(paths, node, pid);
    let mut inits = Vec::new();
    for p in &nspawns {
        for c in process::children(*p) {
            process::signal(c, process::sig_halt());
            inits.push(c);
        }
    }
    let halted = process::wait_gone(&nspawns, Duration::from_secs(20));
    let node_cgroups: Vec<PathBuf> = cgroup_dirs.iter().map(|d| d.join(node)).collect();
    if !halted {
        eprintln!("cairn lab: node {node} did not halt within 20 s; killing it");
    }
    kill_all(rec_name, node, &nspawns, &inits, &node_cgroups)?;
    let node_dir = dir(paths, node);
    unmount_below(&node_dir)?;
    if let Some(i) = index {
        for net_index in private_nets {
            net::detach_private(&names, i, *net_index)?;
        }
        net::remove_node(&names, node, i)?;
    } else if net::netns_exists(&names.node_netns(node)) {
        exec::run(&mut cmd("ip", ["netns", "del", &names.node_netns(node)]))?;
    }
    for c in &node_cgroups {
        cgroup::remove_tree(c, Duration::from_secs(10))?;
    }
    super::image::remove_dir(&node_dir)?;
    Ok(())
}

/// SIGKILLs `pids` and everything in `node_cgroups` until nothing is left.
fn kill_all(
    rec_name: &str,
    node: &str,
    nspawns: &[u32],
    inits: &[u32],
    node_cgroups: &[PathBuf],
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut left: Vec<u32> = nspawns
            .iter()
            .chain(inits)
            .copied()
            .filter(|p| process::alive(*p))
            .collect();
        for d in node_cgroups {
            left.extend(cgroup::procs(d).into_iter().filter(|p| process::alive(*p)));
        }
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LabError::node(
                rec_name,
                node,
                format!("processes {left:?} survive SIGKILL"),
            ));
        }
        for p in &left {
            process::signal(*p, libc::SIGKILL);
        }
        process::wait_gone(&left, Duration::from_millis(500));
    }
}

/// Pulls node `n`'s plug: first its network goes (the host end of its veth
/// and its private-network veths are deleted, so nothing it sends afterwards
/// reaches anyone: peers see silence, not a closed connection), then every
/// process of the container is SIGKILLed (no shutdown), its root unmounted,
/// its namespace and cgroups removed. Its disk stays: the overlay's `upper/`
/// (its /etc, /var/lib, host key...) is what [`power_on`] boots again.
pub fn power_off(
    rec: &LabRecord,
    paths: &LabPaths,
    cgroup_dirs: &[PathBuf],
    n: &NodeRecord,
) -> Result<()> {
    let names = LabNames::new(&rec.name);
    let veth = names.host_veth(n.index);
    if net::link_exists(&veth) {
        exec::run(&mut cmd("ip", ["link", "del", &veth]))?;
    }
    for att in &n.private {
        if let Some(net_rec) = rec.private_networks.get(&att.network) {
            net::detach_private(&names, n.index, net_rec.index)?;
        }
    }
    let nspawns = nspawn_pids(paths, &n.name, n.pid);
    let inits: Vec<u32> = nspawns.iter().flat_map(|p| process::children(*p)).collect();
    let node_cgroups: Vec<PathBuf> = cgroup_dirs.iter().map(|d| d.join(&n.name)).collect();
    kill_all(&rec.name, &n.name, &nspawns, &inits, &node_cgroups)?;
    unmount_below(&merged(paths, &n.name))?;
    net::remove_node(&names, &n.name, n.index)?;
    for c in &node_cgroups {
        cgroup::remove_tree(c, Duration::from_secs(10))?;
    }
    Ok(())
}

/// Boots node `n` again from the disk [`power_off`] left: a new network
/// namespace with the same address (and private attachments), the same
/// overlay root (same host key, /etc, /var/lib), the lab's current
/// /etc/hosts, fresh cgroups, systemd-nspawn. Records the pid in `n`. Does not
/// wait for the boot.
pub fn power_on(
    rec: &LabRecord,
    paths: &LabPaths,
    img: &ImagePaths,
    n: &mut NodeRecord,
) -> Result<()> {
    let d = dir(paths, &n.name);
    if !d.join("upper").is_dir() {
        return Err(LabError::node(
            &rec.name,
            &n.name,
            format!("has no disk at {} to boot from", d.join("upper").display()),
        ));
    }
    plug_network(rec, n)?;
    unmount_below(&merged(paths, &n.name))?;
    mount_root(img, &d)?;
    write_atomic(
        &merged(paths, &n.name).join("etc/hosts"),
        hosts::render_hosts(rec).as_bytes(),
        0o644,
    )?;
    boot(rec, paths, n)
}

/// Unmounts every mount at or below `dir` (deepest first).
pub fn unmount_below(dir: &Path) -> Result<()> {
    let prefix = dir.display().to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(unescape_mount))
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        let out = exec::output(&mut cmd("umount", [&p]))?;
        if !out.status.success() {
            exec::run(&mut cmd("umount", ["-l", &p]))?;
        }
    }
    Ok(())
}

/// Undoes the octal escapes of /proc/self/mountinfo (`\040` for space).
fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}
