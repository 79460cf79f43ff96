//! ssh access to nodes with the lab's key: the lab key itself, commands for
//! waiting on nodes, and `cairn lab ssh`.

use super::error::{LabError, Result};
use super::exec::{self, cmd};
use super::paths::LabPaths;
use std::process::Command;

/// Creates the lab's ed25519 key pair (0600) unless it exists.
pub fn ensure_lab_key(paths: &LabPaths, lab: &str) -> Result<()> {
    if paths.key.exists() && paths.pubkey.exists() {
        return Ok(());
    }
    let _ = std::fs::remove_file(&paths.key);
    let _ = std::fs::remove_file(&paths.pubkey);
    exec::run(
        cmd(
            "ssh-keygen",
            [
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &format!("cairn-lab-{lab}"),
                "-f",
            ],
        )
        .arg(&paths.key),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&paths.key, std::fs::Permissions::from_mode(0o600))
        .map_err(LabError::io("chmod", &paths.key))?;
    Ok(())
}

/// The lab's public key line.
pub fn lab_pubkey(paths: &LabPaths) -> Result<String> {
    std::fs::read_to_string(&paths.pubkey)
        .map(|s| s.trim().to_string())
        .map_err(LabError::io("read", &paths.pubkey))
}

/// `ssh` to root@`address` with the lab key, checking the host key against
/// the lab's known_hosts. Append the remote command.
pub fn command(paths: &LabPaths, address: &str) -> Command {
    command_with(paths, address, &[])
}

/// [`command`] with extra ssh options (placed before the destination).
pub fn command_with(paths: &LabPaths, address: &str, options: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.args(options);
    c.arg("-i")
        .arg(&paths.key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            paths.known_hosts.display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
        ])
        .arg(format!("root@{address}"));
    c
}

/// Generates a node host key pair `<dir>/ssh_host_ed25519_key{,.pub}`;
/// returns the public key line (`ssh-ed25519 AAAA...`).
pub fn node_host_key(dir: &std::path::Path, comment: &str) -> Result<String> {
    let key = dir.join("ssh_host_ed25519_key");
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(key.with_extension("pub"));
    exec::run(
        cmd(
            "ssh-keygen",
            ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"],
        )
        .arg(&key),
    )?;
    let pubf = dir.join("ssh_host_ed25519_key.pub");
    let line = std::fs::read_to_string(&pubf).map_err(LabError::io("read", &pubf))?;
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(t), Some(k)) => Ok(format!("{t} {k}")),
        _ => Err(LabError::Image {
            message: format!("unexpected host key format in {}", pubf.display()),
        }),
    }
}
