//! The base image: a Debian root made once with debootstrap from the
//! machine's own Debian source, the lower layer of every node's overlay.
//! It boots systemd with sshd, has the apt-daily timers masked, no ssh host
//! keys (each node gets its own), no apt sources (each node lists only its
//! lab's mirror) and no DNS resolver (nodes reach only the lab).

use super::error::{LabError, Result};
use super::exec::{self, cmd};
use super::mirror;
use super::paths::{image_paths, ImagePaths};
use std::path::Path;

/// Packages debootstrap adds to the minbase variant.
pub const INCLUDE: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "ca-certificates",
    "curl",
    "sudo",
    "procps",
    "openssl",
    "tar",
    "gzip",
];

/// Bumped when the image layout changes; a cache with another stamp is rebuilt.
const STAMP: &str = "cairn-image 1";
const STAMP_FILE: &str = ".cairn-image";

/// Whether the cached root filesystem is complete and current.
pub fn rootfs_ready(img: &ImagePaths) -> bool {
    std::fs::read_to_string(img.rootfs.join(STAMP_FILE))
        .map(|s| s.trim() == STAMP)
        .unwrap_or(false)
}

/// Builds what is missing in the image cache (all of it with `force`):
/// the root filesystem, then the mirror content. Refuses `force` while a
/// node still runs on the current root filesystem.
pub fn ensure(force: bool) -> Result<ImagePaths> {
    let img = image_paths();
    std::fs::create_dir_all(&img.dir).map_err(LabError::io("create directory", &img.dir))?;
    // Two `lab up`s on a fresh machine (parallel test binaries) build once.
    let _lock = super::record::LabLock::acquire(&img.dir.join(".lock"))?;
    if force && rootfs_in_use(&img.rootfs) {
        return Err(LabError::Image {
            message: format!(
                "{} is in use by running lab nodes; run `cairn lab down` on every lab first",
                img.rootfs.display()
            ),
        });
    }
    if force || !rootfs_ready(&img) {
        build_rootfs(&img)?;
    }
    mirror::ensure(&img, force)?;
    Ok(img)
}

/// Whether an overlay mount uses `rootfs` as its lower layer.
fn rootfs_in_use(rootfs: &Path) -> bool {
    let needle = format!("lowerdir={}", rootfs.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.contains(&needle))
        .unwrap_or(false)
}

/// The Debian (or Ubuntu) suite and mirror URI this machine installs from.
pub fn host_source() -> (String, String) {
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "bookworm".into());
    let mut uris = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if f.extension().and_then(|e| e.to_str()) == Some("sources") {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                uris.extend(deb822_uris(&text, &codename));
            }
        }
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for l in list.lines() {
        let f: Vec<&str> = l
            .split_whitespace()
            .filter(|w| !w.starts_with('['))
            .collect();
        if f.len() >= 3 && f[0] == "deb" && f[2] == codename {
            uris.push(f[1].to_string());
        }
    }
    let uri = uris
        .into_iter()
        .next()
        .unwrap_or_else(|| "http://deb.debian.org/debian".into());
    (codename, uri)
}

/// URIs of deb822 stanzas of type `deb` that carry suite `codename`.
fn deb822_uris(text: &str, codename: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(|v| v.trim().to_string())
            })
        };
        let types = field("Types").unwrap_or_default();
        let suites = field("Suites").unwrap_or_default();
        let enabled = field("Enabled").map(|v| v != "no").unwrap_or(true);
        if enabled
            && types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == codename)
        {
            if let Some(u) = field("URIs") {
                out.extend(u.split_whitespace().map(String::from));
            }
        }
    }
    out
}

fn build_rootfs(img: &ImagePaths) -> Result<()> {
    let (suite, uri) = host_source();
    let tmp = img.dir.join("rootfs.tmp");
    remove_dir(&tmp)?;
    eprintln!(
        "cairn lab: debootstrap {suite} from {uri} into {} (about a minute)",
        tmp.display()
    );
    let log = img.dir.join("debootstrap.log");
    let log_file = std::fs::File::create(&log).map_err(LabError::io("create", &log))?;
    let mut c = cmd(
        "debootstrap",
        [
            "--variant=minbase".to_string(),
            format!("--include={}", INCLUDE.join(",")),
            suite.clone(),
        ],
    );
    c.arg(&tmp).arg(&uri);
    c.stdout(log_file.try_clone().map_err(LabError::io("open", &log))?)
        .stderr(log_file);
    let status = c.status().map_err(|e| LabError::Command {
        command: exec::describe(&c),
        detail: format!("cannot start: {e}"),
    })?;
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        return Err(LabError::Command {
            command: exec::describe(&c),
            detail: format!(
                "{status}; last lines of {}:\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        });
    }
    configure(&tmp)?;
    write(&tmp.join(STAMP_FILE), &format!("{STAMP}\n"))?;
    if img.rootfs.exists() {
        let old = img.dir.join(format!("rootfs.old{}", std::process::id()));
        std::fs::rename(&img.rootfs, &old).map_err(LabError::io("rename", &img.rootfs))?;
        remove_dir(&old)?;
    }
    std::fs::rename(&tmp, &img.rootfs).map_err(LabError::io("rename into place", &tmp))?;
    eprintln!("cairn lab: base image ready at {}", img.rootfs.display());
    Ok(())
}

/// Node-independent settings of the image.
fn configure(root: &Path) -> Result<()> {
    let units = root.join("etc/systemd/system");
    for timer in [
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "dpkg-db-backup.timer",
        "e2scrub_all.timer",
        "fstrim.timer",
    ] {
        let link = units.join(timer);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link).map_err(LabError::io("mask", &link))?;
    }
    if let Ok(rd) = std::fs::read_dir(root.join("etc/ssh")) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("ssh_host_") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    write(
        &root.join("etc/ssh/sshd_config.d/cairn-lab.conf"),
        "# cairn lab node: key-only root login, one host key per node.\n\
         HostKey /etc/ssh/ssh_host_ed25519_key\n\
         PermitRootLogin prohibit-password\n\
         PasswordAuthentication no\n\
         UseDNS no\n",
    )?;
    write(&root.join("etc/machine-id"), "")?;
    write(&root.join("etc/hostname"), "localhost\n")?;
    write(
        &root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )?;
    let resolv = root.join("etc/resolv.conf");
    let _ = std::fs::remove_file(&resolv);
    write(
        &resolv,
        "# cairn lab: no resolver; names come from /etc/hosts\n",
    )?;
    write(&root.join("etc/apt/sources.list"), "")?;
    for dir in ["var/lib/apt/lists", "var/cache/apt/archives"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                if e.path().is_file() && e.file_name() != "lock" {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    for f in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let _ = std::fs::remove_file(root.join(f));
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(LabError::io("create directory", d))?;
    }
    std::fs::write(path, text).map_err(LabError::io("write", path))
}

/// `rm -rf` that does not cross into mounts (there should be none here).
pub fn remove_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        exec::run(cmd("rm", ["-rf", "--one-file-system"]).arg(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_give_the_suites_uri() {
        let text = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n\
                    Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            deb822_uris(text, "bookworm"),
            ["http://deb.debian.org/debian"]
        );
        assert!(deb822_uris(
            "Types: deb-src\nURIs: http://x\nSuites: bookworm\n",
            "bookworm"
        )
        .is_empty());
        assert!(deb822_uris(
            "Enabled: no\nTypes: deb\nURIs: http://x\nSuites: bookworm\n",
            "bookworm"
        )
        .is_empty());
    }
}
