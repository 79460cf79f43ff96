//! `cairn lab up --state-etcd`: a TLS etcd for cairn's team state (see
//! `cairn --state`), on the lab's gateway address, reachable from the host.
//!
//! It is the official etcd binary of release [`VERSION`] from the lab's
//! release mirror, run on the host as a detached process of the lab (its
//! command line carries `--name cairn-state-<lab>`, which `down` looks for),
//! with its own CA, server and client certificates made by the lab and
//! client-certificate authentication on. Its files live in
//! `/var/lib/cairn/labs/<lab>/state-etcd/`; `state.env` there holds the
//! `CAIRN_STATE*` values to use. `cairn lab down` stops it with the lab.

use super::error::{LabError, Result};
use super::paths::{image_paths, LabPaths};
use super::process;
use super::record::{write_atomic, LabRecord};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The etcd release run for state.
pub const VERSION: &str = "3.5.30";
/// Its client port on the gateway address.
pub const CLIENT_PORT: u16 = 2379;
/// Its peer port (on the gateway address too; a one-member cluster).
pub const PEER_PORT: u16 = 2380;
/// The key prefix printed for `--state`.
pub const PREFIX: &str = "cairn";

/// Files of a lab's state etcd.
#[derive(Clone, Debug)]
pub struct StateEtcd {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// `https://GW:2379`
    pub endpoint: String,
    /// `etcd://GW:2379/cairn`
    pub url: String,
    /// `CAIRN_STATE*=...` lines.
    pub env_file: PathBuf,
}

fn files(p: &LabPaths, gw: &str) -> StateEtcd {
    let dir = p.dir.join("state-etcd");
    StateEtcd {
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
        endpoint: format!("https://{gw}:{CLIENT_PORT}"),
        url: format!("etcd://{gw}:{CLIENT_PORT}/{PREFIX}"),
        env_file: dir.join("state.env"),
        dir,
    }
}

fn member_name(lab: &str) -> String {
    format!("cairn-state-{lab}")
}

/// Pids of lab `lab`'s state etcd.
pub fn pids(lab: &str) -> Vec<u32> {
    let mark = format!("--name={} ", member_name(lab));
    process::find(|cl| format!("{cl} ").contains(&mark) && cl.contains("/state-etcd/"))
}

/// Stops lab `lab`'s state etcd, if it runs.
pub fn stop(lab: &str) {
    let ps = pids(lab);
    for p in &ps {
        process::signal(*p, libc::SIGTERM);
    }
    if !process::wait_gone(&ps, Duration::from_secs(10)) {
        for p in &ps {
            process::signal(*p, libc::SIGKILL);
        }
        process::wait_gone(&ps, Duration::from_secs(5));
    }
}

fn fail(lab: &str, what: &str, e: impl std::fmt::Display) -> LabError {
    LabError::lab(lab, format!("state etcd: {what}: {e}"))
}

/// The etcd binary, extracted from the mirror's release tarball once.
fn binary(lab: &str, dir: &Path) -> Result<PathBuf> {
    let bin = dir.join("etcd");
    if bin.is_file() {
        return Ok(bin);
    }
    let mirror = image_paths().mirror;
    let tarball =
        super::mirror::release_dir(&mirror, VERSION).join(super::mirror::tarball_name(VERSION));
    if !tarball.is_file() {
        return Err(fail(
            lab,
            "no etcd release in the mirror",
            format!("{} is missing; run `cairn lab image`", tarball.display()),
        ));
    }
    let member = format!(
        "{}/etcd",
        super::mirror::tarball_name(VERSION).trim_end_matches(".tar.gz")
    );
    let mut c = super::exec::cmd(
        "tar",
        [
            "-xzf".as_ref(),
            tarball.as_os_str(),
            "-C".as_ref(),
            dir.as_os_str(),
            "--strip-components=1".as_ref(),
            std::ffi::OsStr::new(&member),
        ],
    );
    super::exec::run(&mut c)?;
    Ok(bin)
}

fn certs(lab: &str, s: &StateEtcd, gw: &str) -> Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, SanType,
    };
    if s.ca.is_file() && s.client_cert.is_file() && s.client_key.is_file() {
        return Ok(());
    }
    let now = time::OffsetDateTime::now_utc();
    let key =
        || KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| fail(lab, "key", e));
    let base = |cn: &str| {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before = now - time::Duration::minutes(5);
        p.not_after = now + time::Duration::days(365);
        let mut serial: [u8; 16] = rand::random();
        serial[0] = (serial[0] & 0x7f) | 0x40;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        p
    };
    let ca_key = key()?;
    let mut ca = base(&format!("cairn lab {lab} state CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).map_err(|e| fail(lab, "CA", e))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca_cert.pem(), ca_key).map_err(|e| fail(lab, "CA", e))?;

    let server_key = key()?;
    let mut server = base(&member_name(lab));
    server.subject_alt_names = vec![
        SanType::IpAddress(gw.parse().map_err(|e| fail(lab, "gateway address", e))?),
        SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        SanType::DnsName("localhost".try_into().map_err(|e| fail(lab, "SAN", e))?),
    ];
    server.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    server.use_authority_key_identifier_extension = true;
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .map_err(|e| fail(lab, "server certificate", e))?;

    let client_key = key()?;
    let mut client = base("cairn");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    client.use_authority_key_identifier_extension = true;
    let client_cert = client
        .signed_by(&client_key, &issuer)
        .map_err(|e| fail(lab, "client certificate", e))?;

    write_atomic(
        &s.dir.join("server.pem"),
        server_cert.pem().as_bytes(),
        0o600,
    )?;
    write_atomic(
        &s.dir.join("server-key.pem"),
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(&s.client_cert, client_cert.pem().as_bytes(), 0o600)?;
    write_atomic(&s.client_key, client_key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&s.ca, ca_cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

/// Whether the state etcd answers `/health` with the lab's client certificate.
fn healthy(s: &StateEtcd) -> bool {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let Ok(client) = cairn::primitives::etcd::EtcdClient::new(
        std::slice::from_ref(&s.endpoint),
        &read(&s.ca),
        Some(cairn::primitives::etcd::Identity::new(
            read(&s.client_cert),
            read(&s.client_key),
        )),
    ) else {
        return false;
    };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    rt.block_on(client.health(&s.endpoint)).is_ok()
}

/// Start lab `rec`'s state etcd unless it runs; wait until it serves.
pub fn ensure(p: &LabPaths, rec: &LabRecord) -> Result<StateEtcd> {
    let lab = rec.name.as_str();
    let gw = rec.gateway();
    let s = files(p, &gw);
    std::fs::create_dir_all(&s.dir).map_err(LabError::io("create directory", &s.dir))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(LabError::io("chmod", &s.dir))?;
    }
    let bin = binary(lab, &s.dir)?;
    certs(lab, &s, &gw)?;
    write_atomic(
        &s.env_file,
        format!(
            "CAIRN_STATE={}\nCAIRN_STATE_CACERT={}\nCAIRN_STATE_CERT={}\nCAIRN_STATE_KEY_FILE={}\n",
            s.url,
            s.ca.display(),
            s.client_cert.display(),
            s.client_key.display()
        )
        .as_bytes(),
        0o600,
    )?;
    if !pids(lab).is_empty() && healthy(&s) {
        return Ok(s);
    }
    stop(lab);
    let d = |f: &str| s.dir.join(f).display().to_string();
    let client_url = format!("https://{gw}:{CLIENT_PORT}");
    let peer_url = format!("http://{gw}:{PEER_PORT}");
    let argv = vec![
        bin.display().to_string(),
        format!("--name={}", member_name(lab)),
        format!("--data-dir={}", d("data")),
        format!("--listen-client-urls={client_url}"),
        format!("--advertise-client-urls={client_url}"),
        format!("--listen-peer-urls={peer_url}"),
        format!("--initial-advertise-peer-urls={peer_url}"),
        format!("--initial-cluster={}={peer_url}", member_name(lab)),
        "--initial-cluster-state=new".into(),
        format!("--cert-file={}", d("server.pem")),
        format!("--key-file={}", d("server-key.pem")),
        format!("--trusted-ca-file={}", d("ca.pem")),
        "--client-cert-auth=true".into(),
        "--logger=zap".into(),
        "--log-outputs=stderr".into(),
    ];
    let log = s.dir.join("etcd.log");
    let pid = process::spawn_detached("", &argv, &log)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy(&s) {
        if !process::alive(pid) || Instant::now() >= deadline {
            stop(lab);
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            return Err(fail(
                lab,
                &format!("etcd (pid {pid}) did not become healthy on {client_url}"),
                format!(
                    "{}:\n{}",
                    log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            ));
        }
        // a poll bounded by `deadline` (and the process being alive): etcd
        // gives no signal when it starts serving, so its health is asked again
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(s)
}

/// What `lab up --state-etcd` prints: the exact values to use.
pub fn usage(s: &StateEtcd) -> String {
    format!(
        "state etcd: {} (etcd {VERSION}, client certificates required)\n\
         use it with:\n  \
         export CAIRN_STATE={}\n  \
         export CAIRN_STATE_CACERT={}\n  \
         export CAIRN_STATE_CERT={}\n  \
         export CAIRN_STATE_KEY_FILE={}\n\
         (or `set -a; . {}; set +a`; the flags are --state, --state-cacert, --state-cert, --state-key)\n",
        s.endpoint,
        s.url,
        s.ca.display(),
        s.client_cert.display(),
        s.client_key.display(),
        s.env_file.display()
    )
}
