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

/// A host cairn connects to over ssh. In a runbook its getters are read-only;
/// printed, it shows its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[serde(deny_unknown_fields)]
#[rhai_type(extra = crate::args::argument, extra = Self::build_rhai)]
pub struct Host {
    /// Short, unique name (also the etcd member name in shipped runbooks).
    #[rhai_type(readonly)]
    pub name: String,
    /// Address cairn connects to (IP or DNS name).
    #[rhai_type(readonly)]
    pub address: String,
    /// Address on the private network, if any (peers talk over it); `()` if none.
    #[rhai_type(readonly)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_address: Option<String>,
    /// Fully qualified domain name; the name if none is known.
    #[rhai_type(readonly, get = Self::fqdn_or_name)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fqdn: Option<String>,
    /// The ssh user.
    #[rhai_type(readonly)]
    #[serde(default = "default_user")]
    pub user: String,
    /// The ssh port.
    #[rhai_type(readonly, get = Self::port_int)]
    #[serde(default = "default_port")]
    pub port: u16,
    /// Private key file for ssh (must not be readable by others).
    #[rhai_type(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// The inventory's labels, as a map.
    #[rhai_type(readonly, get = Self::labels_map)]
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The inventory groups it is in.
    #[rhai_type(readonly, get = Self::groups_array)]
    #[serde(default)]
    pub groups: Vec<String>,
    #[rhai_type(skip)]
    #[serde(default)]
    pub host_keys: HostKeys,
}

/// The Rhai side of [`Host`] the derive does not write: conversions of its
/// fields to Rhai's types, the computed `internal_address`, and printing.
impl Host {
    fn fqdn_or_name(&self) -> String {
        self.fqdn.clone().unwrap_or_else(|| self.name.clone())
    }

    fn port_int(&self) -> rhai::INT {
        rhai::INT::from(self.port)
    }

    fn labels_map(&self) -> rhai::Map {
        self.labels
            .iter()
            .map(|(k, v)| (k.as_str().into(), rhai::Dynamic::from(v.clone())))
            .collect()
    }

    fn groups_array(&self) -> rhai::Array {
        self.groups
            .iter()
            .cloned()
            .map(rhai::Dynamic::from)
            .collect()
    }

    fn build_rhai(builder: &mut rhai::TypeBuilder<Self>) {
        builder
            .with_get("internal_address", |h: &mut Host| {
                h.internal_address().to_string()
            })
            .with_fn("to_string", |h: &mut Host| h.name.clone())
            .with_fn("print", |h: &mut Host| h.name.clone())
            .with_fn("to_debug", |h: &mut Host| {
                format!("Host({} {}@{}:{})", h.name, h.user, h.address, h.port)
            });
    }
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
