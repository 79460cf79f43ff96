//! Hosts: where remote steps run. They come from an inventory file, from a lab,
//! or from servers a cloud step created.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Whose known_hosts a host's key is checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostKeys {
    /// The user's own ssh configuration and known_hosts (inventory hosts).
    #[default]
    User,
    /// Pinned in the workspace's known_hosts on first contact; a changed key is
    /// refused afterwards (lab and cloud-created hosts).
    Workspace,
}

/// A host cairn connects to over ssh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Short, unique name (also the etcd member name in shipped runbooks).
    pub name: String,
    /// Address cairn connects to (IP or DNS name).
    pub address: String,
    /// Address on the private network, if any (peers talk over it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_address: Option<String>,
    /// Fully qualified domain name, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    #[serde(default = "default_user")]
    pub user: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// Private key file for ssh (must not be readable by others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub host_keys: HostKeys,
}

fn default_user() -> String {
    "root".into()
}
fn default_port() -> u16 {
    22
}

impl Host {
    /// A host with defaults for everything but name and address.
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        Host {
            name: name.into(),
            address: address.into(),
            private_address: None,
            fqdn: None,
            user: default_user(),
            port: default_port(),
            key: None,
            labels: BTreeMap::new(),
            groups: Vec::new(),
            host_keys: HostKeys::User,
        }
    }
    /// Check the values that become names and addresses on hosts (in
    /// commands, configs, certificates): `Err` names the field and the value.
    pub fn check(&self) -> Result<(), String> {
        use crate::value_kind::{address, host_label, hostname};
        host_label(&self.name).map_err(|e| format!("name: {e}"))?;
        address(&self.address).map_err(|e| format!("address: {e}"))?;
        if let Some(a) = &self.private_address {
            address(a).map_err(|e| format!("private_address: {e}"))?;
        }
        if let Some(f) = &self.fqdn {
            hostname(f).map_err(|e| format!("fqdn: {e}"))?;
        }
        if self.user.is_empty()
            || self.user.starts_with('-')
            || !self
                .user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(format!(
                "user: `{}` is not a user name",
                self.user.escape_default()
            ));
        }
        Ok(())
    }

    /// The private address if there is one, else the public one.
    pub fn internal_address(&self) -> &str {
        self.private_address.as_deref().unwrap_or(&self.address)
    }
}
