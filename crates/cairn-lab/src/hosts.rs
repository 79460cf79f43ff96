//! Name resolution in the lab: every node's `/etc/hosts` lists `localhost`,
//! the lab gateway (`gateway.<lab>.lab`, where the mirrors are) and every node
//! under its short name and FQDN `<node>.<lab>.lab`. The lab's known_hosts
//! lists every node's host key under the same names and its address. Both are
//! rewritten whenever the node set changes (lab up, cloud create or delete).

use super::error::Result;
use super::naming::domain;
use super::node;
use super::paths::LabPaths;
use super::record::{write_atomic, LabRecord};

/// The `/etc/hosts` of every node of the lab.
pub fn render_hosts(rec: &LabRecord) -> String {
    let d = domain(&rec.name);
    let mut s = String::from("# written by cairn lab; rewritten when nodes come and go\n");
    s.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    s.push_str(&format!("{}\tgateway.{d} gateway\n", rec.gateway()));
    let mut nodes: Vec<_> = rec.nodes.values().collect();
    nodes.sort_by_key(|n| n.index);
    for n in nodes {
        let h = n.hostname();
        s.push_str(&format!("{}\t{h}.{d} {h}", n.address));
        if h != n.name {
            s.push_str(&format!(" {}.{d} {}", n.name, n.name));
        }
        s.push('\n');
    }
    s
}

/// The lab's known_hosts: every node's host key.
pub fn render_known_hosts(rec: &LabRecord) -> String {
    let d = domain(&rec.name);
    let mut nodes: Vec<_> = rec.nodes.values().collect();
    nodes.sort_by_key(|n| n.index);
    nodes
        .iter()
        .filter_map(|n| {
            n.host_key.as_ref().map(|k| {
                let h = n.hostname();
                let mut names = format!("{h},{h}.{d}");
                if h != n.name {
                    names.push_str(&format!(",{},{}.{d}", n.name, n.name));
                }
                format!("{names},{} {k}\n", n.address)
            })
        })
        .collect()
}

/// Rewrites `/etc/hosts` on every node whose root is mounted, and the lab's
/// known_hosts.
pub fn publish(paths: &LabPaths, rec: &LabRecord) -> Result<()> {
    write_atomic(
        &paths.known_hosts,
        render_known_hosts(rec).as_bytes(),
        0o644,
    )?;
    let hosts = render_hosts(rec);
    for n in rec.nodes.values() {
        let etc = node::merged(paths, &n.name).join("etc");
        if etc.is_dir() {
            write_atomic(&etc.join("hosts"), hosts.as_bytes(), 0o644)?;
        }
    }
    Ok(())
}
