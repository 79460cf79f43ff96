//! Host-side guard of the lab bridge. Nodes have no default route and the
//! lab adds no NAT, so they can only address the lab's /24. A per-lab
//! nftables table also makes the host itself accept from nodes only
//! connections to the lab daemon (mirror and cloud ports on the gateway
//! address) and replies, and forward nothing into or out of the bridge.
//! (`nft` is a prerequisite; without it `ensure` is a no-op.)

use super::error::Result;
use super::exec::{self, cmd};
use super::naming::{LabNames, CLOUD_PORT, MIRROR_PORT};
use super::prereq::have;
use super::record::LabRecord;
use std::io::Write;
use std::process::Stdio;

/// Installs (or replaces) the lab's table; a no-op without `nft`.
pub fn ensure(names: &LabNames, rec: &LabRecord) -> Result<()> {
    if !have("nft") {
        return Ok(());
    }
    remove(names)?;
    let t = names.nft_table();
    let br = names.bridge();
    let gw = rec.gateway();
    let rules = format!(
        "table inet {t} {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority 0; policy accept;\n\
         \t\tiifname \"{br}\" ct state established,related accept\n\
         \t\tiifname \"{br}\" ip daddr {gw} tcp dport {{ {MIRROR_PORT}, {CLOUD_PORT} }} accept\n\
         \t\tiifname \"{br}\" meta l4proto tcp reject with tcp reset\n\
         \t\tiifname \"{br}\" reject\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority 0; policy accept;\n\
         \t\tiifname \"{br}\" oifname != \"{br}\" drop\n\
         \t\toifname \"{br}\" iifname != \"{br}\" drop\n\
         \t}}\n\
         }}\n"
    );
    let mut c = cmd("nft", ["-f", "-"]);
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().map_err(|e| super::error::LabError::Command {
        command: exec::describe(&c),
        detail: format!("cannot start: {e}"),
    })?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(rules.as_bytes())
        .map_err(|e| super::error::LabError::Command {
            command: exec::describe(&c),
            detail: format!("writing rules: {e}"),
        })?;
    let out = child
        .wait_with_output()
        .map_err(|e| super::error::LabError::Command {
            command: exec::describe(&c),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(super::error::LabError::Command {
            command: format!("{} <<{rules}", exec::describe(&c)),
            detail: exec::failure_detail(&out),
        });
    }
    Ok(())
}

/// Whether the lab's table exists.
pub fn exists(names: &LabNames) -> bool {
    have("nft")
        && exec::output(&mut cmd(
            "nft",
            ["list", "table", "inet", &names.nft_table()],
        ))
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Deletes the lab's table if present.
pub fn remove(names: &LabNames) -> Result<()> {
    if exists(names) {
        exec::run(&mut cmd(
            "nft",
            ["delete", "table", "inet", &names.nft_table()],
        ))?;
    }
    Ok(())
}
