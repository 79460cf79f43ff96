//! Names and addresses of the kernel objects a lab owns. Interface names are
//! limited to 15 bytes, so host-side names carry a short hash of the lab name
//! instead of the name itself; network namespaces and cgroups carry the name.

use super::error::{LabError, Result};
use sha2::{Digest, Sha256};

/// DNS suffix of lab `lab`: nodes are `<node>.<lab>.lab`.
pub fn domain(lab: &str) -> String {
    format!("{lab}.lab")
}

/// Port of the apt and release mirrors on the lab's bridge address.
pub const MIRROR_PORT: u16 = 7480;
/// Port of the cloud API emulations (`/v1` Hetzner, `/v2` DigitalOcean).
pub const CLOUD_PORT: u16 = 7481;

/// Host byte of the first node address: node index `i` gets `.(10 + i)`.
pub const FIRST_NODE_HOST: u32 = 10;
/// Highest node index that fits into the lab's /24.
pub const MAX_NODE_INDEX: u32 = 240;

/// Checks a lab name: 1-24 of `[a-z0-9-]`, starting with a letter.
pub fn check_lab_name(name: &str) -> Result<()> {
    check_label("lab name", name, 24)
}

/// Checks a node name: 1-40 of `[a-z0-9-]`, starting with a letter (it becomes
/// a hostname and part of a network namespace name).
pub fn check_node_name(name: &str) -> Result<()> {
    check_label("node name", name, 40)
}

/// Checks a hostname a cloud object gives its node: 1-253 characters,
/// dot-separated labels of `[A-Za-z0-9-]` (1-63 each, no `-` at either
/// end). It goes into `/etc/hostname`, `/etc/hosts` and known_hosts.
pub fn check_hostname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(LabError::Invalid {
            what: "hostname",
            value: name.into(),
            message: "must be dot-separated labels of a-z, A-Z, 0-9 and `-`".into(),
        })
    }
}

fn check_label(what: &'static str, name: &str, max: usize) -> Result<()> {
    let bad = |message: &str| LabError::Invalid {
        what,
        value: name.into(),
        message: message.into(),
    };
    if name.is_empty() || name.len() > max {
        return Err(bad(&format!("must be 1 to {max} characters")));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(bad("must start with a lowercase letter"));
    }
    if name.ends_with('-') {
        return Err(bad("must not end with `-`"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(bad("may contain only a-z, 0-9 and `-`"));
    }
    Ok(())
}

/// The names one lab uses on the host.
#[derive(Clone, Debug)]
pub struct LabNames {
    /// The lab's name.
    pub lab: String,
    /// Six hex digits of sha256(lab), used where names must be short.
    pub hash: String,
}

impl LabNames {
    /// Names for lab `lab`.
    pub fn new(lab: &str) -> Self {
        let digest = Sha256::digest(lab.as_bytes());
        LabNames {
            lab: lab.into(),
            hash: hex::encode(&digest[..3]),
        }
    }

    /// The lab's bridge in the host network namespace: `cb-<hash>`.
    pub fn bridge(&self) -> String {
        format!("cb-{}", self.hash)
    }

    /// Prefix of the host ends of the nodes' veth pairs.
    pub fn veth_prefix(&self) -> String {
        format!("cv-{}-", self.hash)
    }

    /// Host end of node `index`'s veth pair: `cv-<hash>-<index>` (<= 13 bytes).
    pub fn host_veth(&self, index: u32) -> String {
        format!("{}{index}", self.veth_prefix())
    }

    /// Prefix of the lab's network namespace names.
    pub fn netns_prefix(&self) -> String {
        format!("cairn-{}-", self.lab)
    }

    /// Network namespace of node `node`: `cairn-<lab>-<node>`.
    pub fn node_netns(&self, node: &str) -> String {
        format!("{}{node}", self.netns_prefix())
    }

    /// The lab's helper namespace holding private-network bridges:
    /// `cairn-<lab>--private` (node names cannot start with `-`).
    pub fn private_netns(&self) -> String {
        format!("{}-private", self.netns_prefix())
    }

    /// Name of the cgroup directory of the lab in every hierarchy.
    pub fn cgroup(&self) -> String {
        format!("cairn-{}", self.lab)
    }

    /// The nftables table guarding the lab's bridge.
    pub fn nft_table(&self) -> String {
        format!("cairn_{}", self.hash)
    }
}

/// The lab's /24 for subnet index `k`: `10.200.k.0/24`.
pub fn subnet(k: u8) -> String {
    format!("10.200.{k}.0/24")
}

/// The lab's bridge (gateway, mirror) address for subnet index `k`.
pub fn gateway(k: u8) -> String {
    format!("10.200.{k}.1")
}

/// Public address of node `index` in subnet `k`.
pub fn node_address(k: u8, index: u32) -> String {
    format!("10.200.{k}.{}", FIRST_NODE_HOST + index)
}

/// Name of the private-network bridge `net_index` inside the helper namespace.
pub fn private_bridge(net_index: u32) -> String {
    format!("pb{net_index}")
}

/// Helper-side veth of node `node_index` on private network `net_index`.
pub fn private_veth(node_index: u32, net_index: u32) -> String {
    format!("pv{node_index}-{net_index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_ifnamsiz() {
        let n = LabNames::new("a-very-long-lab-name-xyz");
        assert!(n.bridge().len() <= 15);
        assert!(n.host_veth(MAX_NODE_INDEX).len() <= 15);
        assert!(private_veth(MAX_NODE_INDEX, 999).len() <= 15);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_lab_name("cairn").is_ok());
        assert!(check_lab_name("t-lab-123").is_ok());
        assert!(check_lab_name("1abc").is_err());
        assert!(check_lab_name("ab_c").is_err());
        assert!(check_lab_name("abc-").is_err());
        assert!(check_node_name("").is_err());
    }
}
