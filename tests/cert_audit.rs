//! etcd-cert-audit on a lab: a 3-member cluster built by etcd-binary-yaml
//! (certificates for 365 days), then node-2's certificate re-issued by the
//! workspace CA for 5 days (openssl, same key) and installed on the node. The
//! audit's table must be exactly the expected one — every file and every
//! served certificate, with the SANs, serials and expiry of the workspace's
//! own certificates — and it exits 1 with fail_days=30 listing node-2's four
//! rows; with fail_days=3 it passes with node-2 marked WARN; its JSON is the
//! same rows.

mod common;

use common::{cairn, lab, text};

use cairn::clock::Timestamp;
use cairn::cmd::quote;
use cairn::primitives::etcd::audit::{table, CertRow};
use cairn::primitives::pki::parse_pem;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `openssl ARGS` in `dir`, which must succeed.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
}

/// The table lines of an audit's output (the plan indents printed text with
/// `  | `; a failed run prints it as it is).
fn table_of(out: &str) -> String {
    let lines: Vec<&str> = out
        .lines()
        .map(|l| l.strip_prefix("  | ").unwrap_or(l))
        .collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("HOST "))
        .unwrap_or_else(|| panic!("no table in:\n{out}"));
    let mut t = String::new();
    for l in &lines[start..] {
        if !(l.starts_with("HOST ") || l.starts_with("node-")) {
            break;
        }
        t.push_str(l);
        t.push('\n');
    }
    t
}

/// A row as the audit must report it for the certificate `pem`.
fn expect(
    host: &str,
    cert: &str,
    origin: &str,
    source: &str,
    pem: &str,
    sans: &[String],
) -> CertRow {
    let info = parse_pem(pem).unwrap().info;
    let is_ca = cert == "ca";
    CertRow {
        host: host.into(),
        member: host.into(),
        cert: cert.into(),
        origin: origin.into(),
        source: source.into(),
        subject: if is_ca {
            "CN=etcd-ca".into()
        } else {
            format!("CN={host}")
        },
        sans: sans.to_vec(),
        issuer: "CN=etcd-ca".into(),
        serial: info.serial.clone(),
        not_after: info.not_after.clone(),
        days_left: Timestamp::now().days_until(&Timestamp::parse(&info.not_after).unwrap()),
        covers: if is_ca { "-".into() } else { "yes".into() },
        key: "p256".into(),
        chain: if is_ca {
            "ok (self-signed CA)".into()
        } else {
            "ok".into()
        },
        differs: false,
    }
}

#[test]
fn audit_table_and_thresholds() {
    if lab::skip() {
        return;
    }
    let started = Instant::now();
    let l = lab::lab();
    let ws = tempfile::tempdir().unwrap();
    let w = ws.path();

    // 1. a cluster made by a shipped runbook
    let run = cairn(w, &["run", "etcd-binary-yaml", "--lab", l.name.as_str()]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let built = started.elapsed();

    // 2. node-2's certificate re-issued for 5 days by the workspace CA, same key
    let pki = w.join(".cairn/pki");
    let n2 = l.node("node-2");
    let ext = format!(
        "subjectAltName=DNS:node-2,DNS:{},IP:{},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n\
         keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n",
        n2.fqdn, n2.address
    );
    std::fs::write(pki.join("short.ext"), ext).unwrap();
    openssl(
        &pki,
        &[
            "req",
            "-new",
            "-key",
            "etcd-cluster-1-node-2.key",
            "-subj",
            "/CN=node-2",
            "-out",
            "short.csr",
        ],
    );
    openssl(
        &pki,
        &[
            "x509",
            "-req",
            "-in",
            "short.csr",
            "-CA",
            "etcd-cluster-1-etcd-ca.crt",
            "-CAkey",
            "etcd-cluster-1-etcd-ca.key",
            "-days",
            "5",
            "-set_serial",
            "0x5dd5c0ffee0001",
            "-extfile",
            "short.ext",
            "-out",
            "short.crt",
        ],
    );
    let short = std::fs::read_to_string(pki.join("short.crt")).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&short);
    l.ssh_ok(
        "node-2",
        &format!(
            "printf %s {} | base64 -d > /etc/etcd/pki/node-2.crt.new && \
             mv /etc/etcd/pki/node-2.crt.new /etc/etcd/pki/node-2.crt",
            quote(&b64)
        ),
    );
    // etcd reads its certificate on every handshake: poll until it serves it
    let probe = format!(
        "openssl s_client -connect {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        quote(&format!("{}:2379", n2.address))
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = text(&l.ssh("node-2", &probe)).to_lowercase();
        if out.contains("serial=5dd5c0ffee0001") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node-2 does not serve the new certificate: {out}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 3. the expected rows, from the workspace's certificates
    let ca = std::fs::read_to_string(pki.join("etcd-cluster-1-etcd-ca.crt")).unwrap();
    let mut rows = Vec::new();
    for n in ["node-1", "node-2", "node-3"] {
        let node = l.node(n);
        let pem = if n == "node-2" {
            short.clone()
        } else {
            std::fs::read_to_string(pki.join(format!("etcd-cluster-1-{n}.crt"))).unwrap()
        };
        let sans = vec![
            format!("DNS:{n}"),
            format!("DNS:{}", node.fqdn),
            format!("IP:{}", node.address),
            "IP:127.0.0.1".to_string(),
        ];
        let file = format!("/etc/etcd/pki/{n}.crt");
        let a = &node.address;
        rows.push(expect(n, "server", "file", &file, &pem, &sans));
        rows.push(expect(
            n,
            "server",
            "served",
            &format!("https://{a}:2379"),
            &pem,
            &sans,
        ));
        rows.push(expect(
            n,
            "ca",
            "file",
            "/etc/etcd/pki/etcd-ca.crt",
            &ca,
            &[],
        ));
        rows.push(expect(n, "peer", "file", &file, &pem, &sans));
        rows.push(expect(
            n,
            "peer",
            "served",
            &format!("https://{a}:2380"),
            &pem,
            &sans,
        ));
    }
    let node2_days = rows[5].days_left;
    assert_eq!(
        node2_days, 4,
        "a 5-day certificate issued just now has 4 whole days left"
    );
    assert_eq!(rows[0].days_left, 364);

    // 4. defaults (warn 60, fail 30): the exact table, exit 1 listing node-2's four rows
    let audit_started = Instant::now();
    let audit = cairn(w, &["plan", "etcd-cert-audit", "--lab", l.name.as_str()]);
    let audit_time = audit_started.elapsed();
    let out = text(&audit);
    assert_eq!(audit.status.code(), Some(1), "{out}");
    assert_eq!(table_of(&out), table(&rows, 60, 30), "{out}");
    let t = table_of(&out);
    assert_eq!(t.matches("  FAIL  ").count(), 4, "{t}");
    assert!(
        t.lines()
            .next()
            .unwrap()
            .starts_with("HOST    CERT    ORIGIN  SOURCE "),
        "{t}"
    );
    assert!(
        out.contains("error: 4 certificate(s) with fewer than 30 days left:"),
        "{out}"
    );
    for (cert, origin, source) in [
        ("server", "file", "/etc/etcd/pki/node-2.crt".to_string()),
        ("server", "served", format!("https://{}:2379", n2.address)),
        ("peer", "file", "/etc/etcd/pki/node-2.crt".to_string()),
        ("peer", "served", format!("https://{}:2380", n2.address)),
    ] {
        let line = format!(
            "node-2 {cert} {origin} {source} (serial 5dd5c0ffee0001): 4 days left, expires {}",
            rows[5].not_after
        );
        assert!(out.contains(&line), "missing `{line}` in:\n{out}");
    }
    assert!(!out.contains("node-1 server file"), "{out}");

    // 5. fail_days=3: exit 0, node-2 WARN and warned about
    let pass = cairn(
        w,
        &[
            "plan",
            "etcd-cert-audit",
            "--lab",
            l.name.as_str(),
            "--var",
            "fail_days=3",
        ],
    );
    let p = text(&pass);
    assert_eq!(pass.status.code(), Some(0), "{p}");
    assert_eq!(table_of(&p), table(&rows, 60, 3), "{p}");
    assert_eq!(table_of(&p).matches("  WARN  ").count(), 4, "{p}");
    assert!(
        p.contains("warning: node-2: server certificate /etc/etcd/pki/node-2.crt expires"),
        "{p}"
    );

    // 6. --var json=true: the same rows as JSON
    let json = cairn(
        w,
        &[
            "plan",
            "etcd-cert-audit",
            "--lab",
            l.name.as_str(),
            "--var",
            "json=true",
            "--var",
            "fail_days=0",
        ],
    );
    let j = text(&json);
    assert_eq!(json.status.code(), Some(0), "{j}");
    let line = j
        .lines()
        .map(|l| l.strip_prefix("  | ").unwrap_or(l))
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no JSON in:\n{j}"));
    let got: Vec<CertRow> = serde_json::from_str(line).unwrap();
    assert_eq!(got, rows);

    // 7. node-3's configuration names a new certificate file, etcd not
    // restarted: the served certificate differs from the file
    let n3 = l.node("node-3");
    let ext3 = format!(
        "subjectAltName=DNS:node-3,DNS:{},IP:{},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
        n3.fqdn, n3.address
    );
    std::fs::write(pki.join("next.ext"), ext3).unwrap();
    openssl(
        &pki,
        &[
            "req",
            "-new",
            "-key",
            "etcd-cluster-1-node-3.key",
            "-subj",
            "/CN=node-3",
            "-out",
            "next.csr",
        ],
    );
    openssl(
        &pki,
        &[
            "x509",
            "-req",
            "-in",
            "next.csr",
            "-CA",
            "etcd-cluster-1-etcd-ca.crt",
            "-CAkey",
            "etcd-cluster-1-etcd-ca.key",
            "-days",
            "200",
            "-set_serial",
            "0x5dd5c0ffee0003",
            "-extfile",
            "next.ext",
            "-out",
            "next.crt",
        ],
    );
    let next = std::fs::read_to_string(pki.join("next.crt")).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&next);
    let pid_before = l.ssh_ok("node-3", "systemctl show -p MainPID --value etcd");
    l.ssh_ok(
        "node-3",
        &format!(
            "printf %s {} | base64 -d > /etc/etcd/pki/node-3-next.crt && \
             sed -i '0,/node-3.crt/s//node-3-next.crt/' /etc/etcd/etcd.conf",
            quote(&b64)
        ),
    );
    let differ = cairn(
        w,
        &[
            "plan",
            "etcd-cert-audit",
            "--lab",
            l.name.as_str(),
            "--var",
            "fail_days=3",
            "--json",
        ],
    );
    let d = text(&differ);
    assert_eq!(differ.status.code(), Some(0), "{d}");
    let mut rows3 = rows.clone();
    rows3[10] = expect(
        "node-3",
        "server",
        "file",
        "/etc/etcd/pki/node-3-next.crt",
        &next,
        &rows[10].sans,
    );
    rows3[11].differs = true;
    // (with --json the plan is JSON on stdout and the printed table on stderr)
    assert_eq!(table_of(&d), table(&rows3, 60, 3), "{d}");
    assert!(
        d.contains(&format!(
            "warning: node-3: https://{}:2379 serves serial {}, not the certificate in its file (replaced but not served yet)",
            n3.address, rows[11].serial
        )),
        "{d}"
    );
    assert!(
        d.contains("read-only: 5 certificates; fewest days left 199 (server file /etc/etcd/pki/node-3-next.crt); 1 served not as in their files"),
        "the plan's JSON carries the summary:\n{d}"
    );
    assert_eq!(
        l.ssh_ok("node-3", "systemctl show -p MainPID --value etcd"),
        pid_before,
        "the audit restarted nothing"
    );

    eprintln!(
        "cert_audit: cluster built in {:.1}s, audit of 3 members (15 certificates) in {:.2}s, test {:.1}s",
        built.as_secs_f64(),
        audit_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
