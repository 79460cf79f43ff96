//! Host kernel limits many nodes need. Every node's systemd, journald, dbus
//! and logind take inotify instances, all counted against root's single
//! `fs.inotify.max_user_instances` (Debian's default of 128 is exhausted by
//! about 20 nodes: systemd then fails with "Too many open files" and units
//! or whole nodes fail to start). `lab up` raises the limits, never lowers them.

use super::error::{LabError, Result};
use std::path::Path;

/// `(sysctl file, minimum)`: raised to at least the minimum.
const MINIMUMS: &[(&str, u64)] = &[
    ("/proc/sys/fs/inotify/max_user_instances", 8192),
    ("/proc/sys/fs/inotify/max_user_watches", 524288),
];

/// Raises the limits in [`MINIMUMS`] where they are lower.
pub fn ensure() -> Result<()> {
    for (file, min) in MINIMUMS {
        let p = Path::new(file);
        let Ok(text) = std::fs::read_to_string(p) else {
            continue;
        };
        let cur: u64 = text.trim().parse().unwrap_or(0);
        if cur < *min {
            std::fs::write(p, format!("{min}\n")).map_err(LabError::io("raise kernel limit", p))?;
            eprintln!("cairn lab: raised {file} from {cur} to {min} (many nodes need it)");
        }
    }
    Ok(())
}
