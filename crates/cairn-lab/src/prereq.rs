//! Prerequisites of the lab, checked before anything is changed. When some
//! are missing the error names them and the exact apt-get line to install them.

use super::error::{LabError, Result};
use std::path::Path;

/// A host program and the Debian package that ships it.
struct Tool {
    program: &'static str,
    package: &'static str,
}

/// Needed to run nodes.
const RUNTIME: &[Tool] = &[
    Tool {
        program: "systemd-nspawn",
        package: "systemd-container",
    },
    Tool {
        program: "ip",
        package: "iproute2",
    },
    Tool {
        program: "ssh",
        package: "openssh-client",
    },
    Tool {
        program: "ssh-keygen",
        package: "openssh-client",
    },
    Tool {
        program: "mount",
        package: "mount",
    },
    Tool {
        program: "setsid",
        package: "util-linux",
    },
    Tool {
        program: "nft",
        package: "nftables",
    },
];

/// Needed to build the base image and the mirror content.
const BUILD: &[Tool] = &[
    Tool {
        program: "debootstrap",
        package: "debootstrap",
    },
    Tool {
        program: "dpkg-scanpackages",
        package: "dpkg-dev",
    },
    Tool {
        program: "dpkg-deb",
        package: "dpkg",
    },
    Tool {
        program: "apt-get",
        package: "apt",
    },
    Tool {
        program: "apt-cache",
        package: "apt",
    },
    Tool {
        program: "tar",
        package: "tar",
    },
    Tool {
        program: "gzip",
        package: "gzip",
    },
    Tool {
        program: "python3",
        package: "python3",
    },
];

/// Whether `program` is on PATH (or in the sbin directories root uses).
pub fn have(program: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .any(|d| !d.is_empty() && Path::new(d).join(program).is_file());
    found
}

fn have_pip() -> bool {
    std::process::Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Checks that this is Linux, that we are root, and that the tools for
/// running nodes (and, with `build`, for building the image) are installed.
pub fn check(build: bool) -> Result<()> {
    if !cfg!(target_os = "linux") {
        return Err(LabError::Prereq {
            missing: "Linux (network namespaces, systemd-nspawn)".into(),
            install: "run cairn lab on a Linux machine (Debian 12 is what it is tested on)".into(),
        });
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(LabError::Prereq {
            missing: "root privileges (network namespaces, mounts, cgroups)".into(),
            install: "sudo cairn lab ...".into(),
        });
    }
    let tools = RUNTIME.iter().chain(if build { BUILD } else { &[] });
    let mut missing: Vec<&str> = Vec::new();
    let mut packages: Vec<&str> = Vec::new();
    for t in tools {
        if !have(t.program) {
            missing.push(t.program);
            packages.push(t.package);
        }
    }
    if build && have("python3") && !have_pip() {
        missing.push("python3 -m pip");
        packages.push("python3-pip");
    }
    if missing.is_empty() {
        return Ok(());
    }
    packages.sort();
    packages.dedup();
    Err(LabError::Prereq {
        missing: missing.join(", "),
        install: format!("apt-get install -y {}", packages.join(" ")),
    })
}

/// Debian packages the lab uses (for CI scripts and documentation).
pub fn packages() -> Vec<&'static str> {
    let mut p: Vec<&str> = RUNTIME.iter().chain(BUILD).map(|t| t.package).collect();
    p.push("python3-pip");
    p.sort();
    p.dedup();
    p
}
