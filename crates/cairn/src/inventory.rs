//! Inventory files: the hosts a runbook runs on (`--inventory FILE`), and
//! `cairn inventory check FILE`, which validates one and prints its hosts.
//!
//! The format (documented in full in `docs/inventory.md`) is TOML with one
//! `[[hosts]]` table per host; the fields are those of [`Host`]. A relative
//! `key` is relative to the inventory file's folder, `~/` to the home folder.

use crate::error::{Error, Success};
use crate::host::{Host, HostKeys};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    hosts: Vec<toml::Spanned<Host>>,
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// Where a relative `key` points: from the inventory's folder (`~/`: home).
fn resolve_key(key: &Path, folder: &Path) -> PathBuf {
    if let Ok(rest) = key.strip_prefix("~") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    if key.is_absolute() {
        key.to_path_buf()
    } else {
        folder.join(key)
    }
}

/// What is wrong with a host's fields, if anything.
fn problem(h: &Host) -> Option<String> {
    let bad_name = h.name.is_empty()
        || h.name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/');
    if bad_name {
        return Some(format!(
            "host name `{}` must be non-empty, without spaces or `/`",
            h.name.escape_debug()
        ));
    }
    if h.address.trim().is_empty() {
        return Some(format!("host `{}` has an empty address", h.name));
    }
    if h.port == 0 {
        return Some(format!("host `{}` has port 0", h.name));
    }
    None
}

/// Read an inventory file: `[[hosts]]` tables, names unique, keys resolved
/// against the file's folder. Errors name the file and the line.
pub fn read(path: &Path) -> Result<Vec<Host>, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read inventory", path))?;
    let bad = |line: Option<usize>, message: String| Error::Inventory {
        path: path.to_path_buf(),
        line,
        message,
    };
    let inv: InventoryFile =
        toml::from_str(&text).map_err(|e| bad(None, crate::manifest::toml_message(&text, &e)))?;
    let folder = path.parent().unwrap_or(Path::new(""));
    let mut seen = std::collections::BTreeSet::new();
    let mut hosts = Vec::with_capacity(inv.hosts.len());
    for spanned in inv.hosts {
        let line = line_of(&text, spanned.span().start);
        let mut h = spanned.into_inner();
        // names and addresses become parts of commands, configs and certificates
        if let Err(e) = h.check() {
            return Err(bad(
                Some(line),
                format!("[[hosts]] entry {}: {e}", hosts.len() + 1),
            ));
        }
        if let Some(why) = problem(&h) {
            return Err(bad(Some(line), why));
        }
        if !seen.insert(h.name.clone()) {
            return Err(bad(None, format!("host name `{}` appears twice", h.name)));
        }
        h.key = h.key.map(|k| resolve_key(&k, folder));
        hosts.push(h);
    }
    Ok(hosts)
}

/// What is wrong with a host's key file, if anything (ssh would refuse it).
fn key_problem(key: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(key) {
        Err(e) => Some(format!("key {}: {e}", key.display())),
        Ok(m) if !m.is_file() => Some(format!("key {} is not a file", key.display())),
        Ok(m) if m.permissions().mode() & 0o077 != 0 => Some(format!(
            "key {} is readable by others (mode {:04o}); ssh refuses it: run `chmod 600 {}`",
            key.display(),
            m.permissions().mode() & 0o7777,
            key.display()
        )),
        Ok(_) => None,
    }
}

/// One host as `inventory check` prints it: every field, resolved.
pub fn describe(h: &Host) -> String {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    let rows = [
        ("address", h.address.clone()),
        ("private_address", or_dash(h.private_address.clone())),
        ("fqdn", or_dash(h.fqdn.clone())),
        ("user", h.user.clone()),
        ("port", h.port.to_string()),
        (
            "key",
            or_dash(h.key.as_ref().map(|k| k.display().to_string())),
        ),
        ("groups", list(h.groups.clone())),
        (
            "labels",
            list(h.labels.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        ),
        (
            "host_keys",
            match h.host_keys {
                HostKeys::User => "user (your ssh known_hosts)".into(),
                HostKeys::Workspace => "workspace (pinned on first contact)".into(),
            },
        ),
    ];
    let mut text = format!("{}\n", h.name);
    for (k, v) in rows {
        text.push_str(&format!("  {k:<16} {v}\n"));
    }
    text
}

/// `cairn inventory check FILE`: validate the file and every host's key
/// file, print each host with all its fields. Exit 0 when it is usable.
pub fn check(path: &Path) -> Result<Success, Error> {
    let hosts = read(path)?;
    let mut problems = Vec::new();
    for h in &hosts {
        if let Some(why) = h.key.as_deref().and_then(key_problem) {
            problems.push(format!("host `{}`: {why}", h.name));
        }
    }
    println!(
        "{}: {} host{}",
        path.display(),
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" }
    );
    for h in &hosts {
        print!("\n{}", describe(h));
    }
    if problems.is_empty() {
        Ok(Success::Done)
    } else {
        Err(Error::Several(
            problems
                .into_iter()
                .map(|message| Error::Inventory {
                    path: path.to_path_buf(),
                    line: None,
                    message,
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_to_the_inventory_folder() {
        let f = Path::new("/srv/inv");
        assert_eq!(
            resolve_key(Path::new("keys/id"), f),
            PathBuf::from("/srv/inv/keys/id")
        );
        assert_eq!(resolve_key(Path::new("/k/id"), f), PathBuf::from("/k/id"));
        assert_eq!(
            resolve_key(Path::new("id"), Path::new("")),
            PathBuf::from("id")
        );
    }
}
