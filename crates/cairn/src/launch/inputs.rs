//! A command's inputs: the process environment (and which of its variables
//! are secret), a lab's env file, the inventory, `--vars` files.

use super::*;

pub(super) fn process_env() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Names of environment variables whose values are secret.
pub(super) fn is_secret_env(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["TOKEN", "SECRET", "PASSWORD", "PASSPHRASE", "API_KEY"]
        .iter()
        .any(|s| n.contains(s))
}

/// Read a lab's env file (`KEY=VALUE` lines).
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read", path))?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Read an inventory file (see [`crate::inventory::read`]).
pub fn read_inventory(path: &Path) -> Result<Vec<Host>, Error> {
    crate::inventory::read(path)
}

pub(super) fn lab_files(name: &str) -> (PathBuf, PathBuf) {
    let paths = crate::labs::paths(name);
    (paths.inventory, paths.env)
}

/// A `--vars` file: a TOML table, or an error naming the file (and the line).
pub(super) fn read_vars_file(path: &std::path::Path) -> Result<toml::Table, Error> {
    let text = std::fs::read_to_string(path).map_err(Error::io("read vars file", path))?;
    toml::from_str(&text).map_err(|e| {
        Error::input(
            format!("--vars {}", path.display()),
            format!(
                "vars file {} is not valid TOML: {}",
                path.display(),
                crate::manifest::toml_message(&text, &e)
            ),
        )
    })
}
