//! Cloud primitives: servers, networks and ssh keys at Hetzner Cloud
//! ([`hetzner`]) and droplets and ssh keys at DigitalOcean ([`digitalocean`]),
//! over a shared retrying client ([`http`]).
//!
//! Every create is idempotent by name: an existing object with a matching spec
//! is adopted (a no-op with its reason), a mismatching one is an error that
//! says what differs. Reads (`hcloud_servers`, `do_droplets`) run in plans too.
//! Tokens come from the environment (`HCLOUD_TOKEN`, `DIGITALOCEAN_ACCESS_TOKEN`)
//! or a `token_file`, and never appear in steps, plans, journals or errors.

pub mod digitalocean;
pub mod hetzner;
pub mod http;

use crate::action::Action;
use crate::error::StepError;
use crate::executor::Executor;
use crate::step::{Ctx, Prepared};
use crate::unknown::placeholder;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An ssh public key, from a file or given inline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PublicKeySource {
    /// Path of an OpenSSH public key file (absolute, `~/...`, or relative to the workspace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<String>,
    /// The public key itself (`ssh-ed25519 AAAA... comment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

impl PublicKeySource {
    /// Read the key: exactly one of the two fields must be set.
    pub fn read(&self, ctx: &Ctx) -> Result<String, StepError> {
        let key = match (&self.public_key_file, &self.public_key) {
            (Some(file), None) => {
                let path = http::local_path(ctx, file);
                std::fs::read_to_string(&path)
                    .map_err(|e| StepError::io("reading public key", &path, e))?
            }
            (None, Some(key)) => key.clone(),
            _ => {
                return Err(StepError::invalid(
                    "public_key_file",
                    "give exactly one of `public_key_file` and `public_key`",
                ))
            }
        };
        let key = key.trim().to_string();
        fingerprint_md5(&key)?;
        Ok(key)
    }

    /// The private key next to the public key file (`id_ed25519` for
    /// `id_ed25519.pub`), if there is one.
    pub fn private_key(&self, ctx: &Ctx) -> Option<String> {
        let file = self.public_key_file.as_deref()?;
        let private = http::local_path(ctx, file.strip_suffix(".pub")?);
        private.exists().then(|| private.display().to_string())
    }
}

/// The MD5 fingerprint of an OpenSSH public key as Hetzner and DigitalOcean
/// show it: colon-separated hex of the MD5 of the decoded key blob.
pub fn fingerprint_md5(public_key: &str) -> Result<String, StepError> {
    use base64::Engine as _;
    let blob = public_key
        .split_whitespace()
        .nth(1)
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .ok_or_else(|| {
            StepError::invalid(
                "public_key",
                "not an OpenSSH public key (expected `<type> <base64> [comment]`)",
            )
        })?;
    let digest = Md5::digest(&blob);
    Ok(digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// An ssh key known to a provider.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "SshKey", extra = crate::args::argument)]
pub struct SshKey {
    /// `hetzner` or `digitalocean`.
    #[rhai_type(readonly)]
    pub provider: String,
    /// Its name at the provider (an existing key with the same fingerprint
    /// keeps its own name).
    #[rhai_type(readonly)]
    pub name: String,
    /// Its id at the provider (a placeholder in plans until created).
    #[rhai_type(readonly)]
    pub id: String,
    /// MD5 fingerprint, colon hex.
    #[rhai_type(readonly)]
    pub fingerprint: String,
    /// The private key file next to the public key file, if any (used by
    /// `host()` of servers created with this key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[rhai_type(skip)]
    pub private_key: Option<String>,
}

/// The three plans of an ssh key step, the same for every provider.
impl SshKey {
    /// An existing key (same fingerprint) is reused: a no-op with `reason`.
    pub(super) fn reused<W>(
        self,
        wanted: &str,
        reason: String,
        facts: String,
    ) -> Prepared<SshKey, W> {
        let action = Action::noop(self.provider.clone(), format!("ssh key {wanted}"), reason);
        Prepared::done(vec![action], facts, self)
    }

    /// No key with that fingerprint: create `name` from `public_key`.
    pub(super) fn to_create(
        provider: &str,
        name: &str,
        fingerprint: String,
        private_key: Option<String>,
        public_key: String,
        facts: String,
    ) -> Prepared<SshKey, (String, String)> {
        let out = SshKey {
            provider: provider.into(),
            name: name.into(),
            id: placeholder("create", &format!("{name}.id")),
            fingerprint: fingerprint.clone(),
            private_key,
        };
        let action = Action::create(provider, format!("ssh key {name} ({fingerprint})"));
        Prepared::todo(vec![action], facts, out, (public_key, fingerprint))
    }

    /// Planned without facts: a create whose id and fingerprint are placeholders.
    pub(super) fn intent(provider: &str, name: &str) -> Prepared<SshKey, (String, String)> {
        let out = SshKey {
            provider: provider.into(),
            name: name.into(),
            id: placeholder("create", &format!("{name}.id")),
            fingerprint: placeholder("read", &format!("{name}.fingerprint")),
            private_key: None,
        };
        let action = Action::create(provider, format!("ssh key {name}"));
        Prepared::todo(
            vec![action],
            String::new(),
            out,
            (String::new(), String::new()),
        )
    }
}

/// A reference to an ssh key in a server or droplet spec: a name (Hetzner),
/// id or fingerprint (DigitalOcean) or a key handle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum KeyRef {
    /// A handle returned by `hcloud_ssh_key` / `do_ssh_key`.
    Key(SshKey),
    /// A name, id or fingerprint.
    Name(String),
    /// A numeric id.
    Id(i64),
}

impl KeyRef {
    /// The private key file the handle knows of.
    pub fn private_key(&self) -> Option<&str> {
        match self {
            KeyRef::Key(k) => k.private_key.as_deref(),
            _ => None,
        }
    }
}

/// The result of a delete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "Removed")]
pub struct Removed {
    /// What was asked for, e.g. `server node-1` or `droplets tagged etcd`.
    #[rhai_type(readonly)]
    pub what: String,
    /// How many objects were deleted (0 when there was nothing to delete).
    #[rhai_type(readonly)]
    pub count: i64,
}

/// The `private_key` a created server's `host()` uses: the explicit argument,
/// else the first key handle's private key file.
pub fn pick_private_key(explicit: &Option<String>, keys: &[KeyRef]) -> Option<String> {
    explicit.clone().or_else(|| {
        keys.iter()
            .find_map(|k| k.private_key().map(str::to_string))
    })
}

/// Labels as `k=v,k2=v2`, sorted.
pub fn show_labels(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Register the cloud primitives and their types.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    engine
        .build_type::<SshKey>()
        .register_fn("to_string", |k: &mut SshKey| {
            format!("{} ssh key {} ({})", k.provider, k.name, k.fingerprint)
        })
        .register_fn("to_debug", |k: &mut SshKey| {
            format!("SshKey({} {} {})", k.provider, k.name, k.fingerprint)
        });
    engine
        .build_type::<Removed>()
        .register_fn("to_string", |r: &mut Removed| {
            format!("deleted {} ({})", r.what, r.count)
        });
    hetzner::register(engine, exec);
    digitalocean::register(engine, exec);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_fingerprint_matches_ssh_keygen() {
        // `ssh-keygen -l -E md5` prints MD5:3c:e0:3d:24:46:f3:3a:c8:81:f4:2b:71:36:eb:70:3b for this key.
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKHDy1c0Hn6h1xiTU7jPQSmrsoqVKfXxoJ4mPAoxuhdL test";
        assert_eq!(
            fingerprint_md5(key).unwrap(),
            "3c:e0:3d:24:46:f3:3a:c8:81:f4:2b:71:36:eb:70:3b"
        );
        assert!(fingerprint_md5("not a key").is_err());
    }
}
