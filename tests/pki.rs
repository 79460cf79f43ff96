//! pki steps against real files, checked with openssl.

use cairn::action::ActionKind;
use cairn::bundle::Bundle;
use cairn::primitives::pki::{CaRef, Cert, GenCa, GenCert, KeyType, SignCsr, Usage};
use cairn::ssh::Pool;
use cairn::step::{Ctx, Prepared, Validating};
use cairn::workspace::Workspace;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn ctx(root: &Path) -> Ctx {
    let workspace = Workspace::new(root);
    Ctx {
        ssh: Pool::new(workspace.known_hosts()),
        workspace,
        http: reqwest::Client::new(),
        bundle: Arc::new(Bundle::default()),
        env: Default::default(),
    }
}

fn ca_step(name: &str) -> GenCa {
    GenCa {
        name: name.into(),
        cn: format!("{name} root"),
        o: Some("cairn".into()),
        key: KeyType::P256,
        days: 3650,
        renew_before_days: 30,
        pki_dir: None,
    }
}

fn cert_step(ca: CaRef, ips: &[&str]) -> GenCert {
    GenCert {
        name: "node-1".into(),
        ca,
        cn: "node-1".into(),
        o: None,
        dns: vec!["node-1".into(), "localhost".into()],
        ips: ips.iter().map(|s| s.to_string()).collect(),
        usage: vec![Usage::Server, Usage::Client],
        key_usage: None,
        key: KeyType::Rsa2048,
        days: 365,
        renew_before_days: 30,
        pki_dir: None,
    }
}

/// Prepare and, if there is work, apply: what `cairn run` does.
async fn run<S: Validating>(ctx: &Ctx, step: &S) -> (Vec<String>, S::Output) {
    let prepared: Prepared<S::Output, S::Work> = step.prepare(ctx).await.expect("prepare");
    let lines = prepared.actions.iter().map(|a| a.to_string()).collect();
    let out = match prepared.work {
        Some(work) => step.apply(ctx, work).await.expect("apply"),
        None => prepared.predicted,
    };
    (lines, out)
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn mode(p: impl AsRef<Path>) -> u32 {
    std::fs::metadata(p).unwrap().mode() & 0o7777
}

#[tokio::test]
async fn ca_and_cert_are_made_kept_and_changed_when_the_spec_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());

    let (lines, ca) = run(&ctx, &ca_step("etcd-ca")).await;
    assert_eq!(
        lines,
        vec![
            "+ create CA certificate etcd-ca (pki/etcd-ca.crt, key pki/etcd-ca.key) \
              (CN=etcd-ca root, O=cairn; CA; p256; 3650 days; self-signed)"
        ]
    );
    assert!(ca.is_ca);
    assert_eq!(
        ca.key_path,
        tmp.path().join("pki/etcd-ca.key").display().to_string()
    );

    let step = cert_step(
        CaRef::Cert(Box::new(ca.clone())),
        &["10.1.1.1", "127.0.0.1"],
    );
    let (lines, cert) = run(&ctx, &step).await;
    assert_eq!(
        lines,
        vec!["+ create certificate node-1 (pki/node-1.crt, key pki/node-1.key) \
              (CN=node-1; DNS node-1 localhost; IP 10.1.1.1 127.0.0.1; usage server,client; rsa2048; \
              365 days; signed by etcd-ca)"]
    );
    assert_eq!(cert.ca, "etcd-ca");
    assert_eq!(cert.ca_pem, ca.pem);
    assert_eq!(cert.issuer, "CN=etcd-ca root, O=cairn");
    assert_eq!(cert.ips, vec!["10.1.1.1", "127.0.0.1"]);
    assert_eq!(cert.chain_pem(), format!("{}{}", cert.pem, ca.pem));

    // openssl agrees: the chain verifies for TLS server and client use
    for purpose in ["sslserver", "sslclient"] {
        let (ok, text) = openssl(&[
            "verify",
            "-purpose",
            purpose,
            "-CAfile",
            &ca.cert_path,
            &cert.cert_path,
        ]);
        assert!(ok, "{purpose}: {text}");
    }
    let (ok, text) = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage",
        "-in",
        &cert.cert_path,
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("DNS:node-1, DNS:localhost, IP Address:10.1.1.1, IP Address:127.0.0.1"),
        "{text}"
    );
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    let (ok, text) = openssl(&[
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-serial",
        "-in",
        &cert.cert_path,
    ]);
    assert!(ok);
    assert!(
        text.contains(&format!("Fingerprint={}", cert.fingerprint)),
        "{text}"
    );
    assert!(
        text.contains(&format!("serial={}", cert.serial.to_uppercase())),
        "{text}"
    );
    assert_eq!(cert.serial.len(), 32, "16-byte serial");
    // the key on disk belongs to the certificate
    let (_, key_mod) = openssl(&["pkey", "-pubout", "-in", &cert.key_path]);
    let (_, cert_mod) = openssl(&["x509", "-pubkey", "-noout", "-in", &cert.cert_path]);
    assert_eq!(key_mod, cert_mod);

    // run again: nothing to do, with the reason
    let (lines, again) = run(&ctx, &step).await;
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with(
            "= ok certificate node-1 (pki/node-1.crt, key pki/node-1.key) (valid until 20"
        ),
        "{lines:?}"
    );
    assert!(lines[0].ends_with(", matches spec)"), "{lines:?}");
    assert_eq!(again, cert);
    let (lines, _) = run(&ctx, &ca_step("etcd-ca")).await;
    assert!(
        lines[0].starts_with("= ok CA certificate etcd-ca"),
        "{lines:?}"
    );

    // one more IP: a change that says what differs
    let wider = cert_step(
        CaRef::Name("etcd-ca".into()),
        &["10.1.1.1", "127.0.0.1", "10.1.1.3"],
    );
    let (lines, renewed) = run(&ctx, &wider).await;
    assert_eq!(
        lines,
        vec!["~ change certificate node-1 (pki/node-1.crt, key pki/node-1.key) (SAN IP 10.1.1.3 missing)"]
    );
    assert!(renewed.ips.contains(&"10.1.1.3".to_string()));
    assert_ne!(renewed.serial, cert.serial);

    // a new CA: the leaf is no longer signed by it
    std::fs::remove_file(tmp.path().join("pki/etcd-ca.crt")).unwrap();
    let (lines, _) = run(&ctx, &ca_step("etcd-ca")).await;
    assert!(
        lines[0].starts_with("+ create CA certificate etcd-ca"),
        "{lines:?}"
    );
    let prepared = wider.prepare(&ctx).await.unwrap();
    assert_eq!(
        prepared.actions[0].reason.as_deref(),
        Some("not signed by the current etcd-ca certificate")
    );
}

#[tokio::test]
async fn keys_are_0600_in_a_0700_folder_whatever_the_umask() {
    // a permissive umask must not make keys or the folder readable by others
    let old = unsafe { libc::umask(0) };
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    let (_, ca) = run(&ctx, &ca_step("ca")).await;
    let (_, cert) = run(&ctx, &cert_step(CaRef::Name("ca".into()), &["10.0.0.1"])).await;
    unsafe { libc::umask(old) };
    assert_eq!(mode(tmp.path().join("pki")), 0o700);
    assert_eq!(mode(&ca.key_path), 0o600);
    assert_eq!(mode(&cert.key_path), 0o600);
    assert_eq!(mode(&cert.cert_path), 0o644);

    // a key someone made readable is replaced, not trusted
    std::fs::set_permissions(
        &cert.key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let step = cert_step(CaRef::Name("ca".into()), &["10.0.0.1"]);
    let (lines, _) = run(&ctx, &step).await;
    assert_eq!(
        lines,
        vec![
            "~ change certificate node-1 (pki/node-1.crt, key pki/node-1.key) \
              (key pki/node-1.key is readable by others (mode 0644): a new key replaces it)"
        ]
    );
    assert_eq!(mode(&cert.key_path), 0o600);
}

#[tokio::test]
async fn a_cert_whose_ca_is_made_earlier_in_the_same_plan_is_planned_as_create() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    let step = cert_step(CaRef::Name("later-ca".into()), &["10.0.0.1"]);
    let prepared = step
        .prepare(&ctx)
        .await
        .expect("no error for a CA not made yet");
    assert_eq!(prepared.actions.len(), 1);
    assert_eq!(prepared.actions[0].kind, ActionKind::Create);
    assert!(
        prepared.actions[0]
            .reason
            .as_deref()
            .unwrap()
            .ends_with("(CA later-ca is made first)"),
        "{:?}",
        prepared.actions[0]
    );
    assert!(cairn::unknown::is_unknown(&prepared.predicted.pem));
    assert!(cairn::unknown::is_unknown(&prepared.predicted.ca_pem));
    // applying it without the CA is an error naming the CA
    let err = step.apply(&ctx, ()).await.unwrap_err().to_string();
    assert!(err.contains("CA `later-ca` not found"), "{err}");
    assert!(!tmp.path().join("pki/node-1.key").exists());
}

#[test]
fn intent_has_real_paths_and_placeholders_for_content() {
    let dir = Path::new("/ws/pki");
    let ca = ca_step("etcd-ca").in_dir(dir).intent().unwrap();
    assert_eq!(ca.actions[0].kind, ActionKind::Create);
    let predicted_ca = ca.predicted;
    assert_eq!(predicted_ca.cert_path, "/ws/pki/etcd-ca.crt");
    assert_eq!(predicted_ca.key_path, "/ws/pki/etcd-ca.key");
    assert_eq!(predicted_ca.pem, "(known after gen_ca: etcd-ca.pem)");
    assert_eq!(
        predicted_ca.fingerprint,
        "(known after gen_ca: etcd-ca.fingerprint)"
    );

    let cert = cert_step(CaRef::Cert(Box::new(predicted_ca.clone())), &["10.0.0.1"])
        .in_dir(dir)
        .intent()
        .unwrap()
        .predicted;
    assert_eq!(cert.cert_path, "/ws/pki/node-1.crt");
    assert_eq!(cert.pem, "(known after gen_cert: node-1.pem)");
    assert_eq!(cert.serial, "(known after gen_cert: node-1.serial)");
    assert_eq!(cert.ca_pem, predicted_ca.pem);
    assert!(cairn::unknown::is_unknown(&cert.chain_pem()));
    assert_eq!(cert.ips, vec!["10.0.0.1"]);
}

#[tokio::test]
async fn bad_sans_and_names_are_refused_naming_field_and_value() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    let mut step = cert_step(CaRef::Name("ca".into()), &["10.0.0.256"]);
    let err = step.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(err, "invalid `ips`: `10.0.0.256` is not an IP address");
    step.ips = vec![];
    step.dns = vec!["bad name".into()];
    let err = step.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(err, "invalid `dns`: `bad name` is not a valid DNS name");
    step.dns = vec![];
    step.name = "../escape".into();
    let err = step.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        err,
        "invalid `name`: `../escape` is not a valid name (letters, digits, `.`, `_`, `-`; no path separators)"
    );
}

fn openssl_csr(dir: &Path, cn: &str, san: &str) -> String {
    let csr = dir.join(format!("{cn}.csr"));
    let (ok, text) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        dir.join(format!("{cn}.key")).to_str().unwrap(),
        "-subj",
        &format!("/CN={cn}/O=nodes"),
        "-addext",
        &format!("subjectAltName={san}"),
        "-out",
        csr.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    std::fs::read_to_string(csr).unwrap()
}

fn csr_step(csr: String) -> SignCsr {
    SignCsr {
        name: "node-2".into(),
        ca: CaRef::Name("etcd-ca".into()),
        csr: Some(csr),
        public_key: None,
        o: None,
        days: 90,
        usage: vec![Usage::Server, Usage::Client],
        key_usage: None,
        cn: None,
        dns: None,
        ips: None,
        override_sans: false,
        renew_before_days: 30,
        pki_dir: None,
    }
}

#[tokio::test]
async fn an_openssl_csr_is_signed_with_its_sans_and_the_runbooks_usages() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    let (_, ca) = run(&ctx, &ca_step("etcd-ca")).await;
    let csr = openssl_csr(node.path(), "node-2", "DNS:node-2,IP:10.1.1.2");

    let step = csr_step(csr.clone());
    let (lines, cert): (Vec<String>, Cert) = run(&ctx, &step).await;
    assert_eq!(
        lines,
        vec!["+ create certificate node-2 from CSR (pki/node-2.crt) \
              (CN=node-2, O=nodes; DNS node-2; IP 10.1.1.2; usage server,client; 90 days; signed by etcd-ca)"]
    );
    assert_eq!(cert.key_path, "");
    assert!(!tmp.path().join("pki/node-2.key").exists());
    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        &ca.cert_path,
        &cert.cert_path,
    ]);
    assert!(ok, "{text}");
    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        &ca.cert_path,
        &cert.cert_path,
    ]);
    assert!(ok, "{text}");
    let (_, text) = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName,extendedKeyUsage,basicConstraints",
        "-in",
        &cert.cert_path,
    ]);
    assert!(text.contains("DNS:node-2, IP Address:10.1.1.2"), "{text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"), "{text}");
    // the certificate is for the node's key
    let (_, from_key) = openssl(&[
        "pkey",
        "-pubout",
        "-in",
        node.path().join("node-2.key").to_str().unwrap(),
    ]);
    let (_, from_cert) = openssl(&["x509", "-pubkey", "-noout", "-in", &cert.cert_path]);
    assert_eq!(from_key, from_cert);

    // same CSR again: kept
    let (lines, _) = run(&ctx, &step).await;
    assert!(
        lines[0].starts_with("= ok certificate node-2 from CSR"),
        "{lines:?}"
    );

    // the node made a new key: its new CSR gets a new certificate
    let csr2 = openssl_csr(node.path(), "node-2", "DNS:node-2,IP:10.1.1.2");
    let (lines, _) = run(&ctx, &csr_step(csr2.clone())).await;
    assert_eq!(
        lines,
        vec!["~ change certificate node-2 from CSR (pki/node-2.crt) (certifies another key than the CSR's)"]
    );

    // required SANs that the CSR does not ask for are refused ...
    let mut strict = csr_step(csr2.clone());
    strict.ips = Some(vec!["10.1.1.9".into()]);
    let err = strict.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        err,
        "invalid `ips`: the CSR asks for 10.1.1.2, which is not in `ips` (set `override_sans: true` to sign only `ips`)"
    );
    strict.ips = Some(vec!["10.1.1.2".into(), "10.1.1.9".into()]);
    let err = strict.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        err,
        "invalid `ips`: the CSR does not ask for 10.1.1.9 (set `override_sans: true` to add it)"
    );
    strict.ips = Some(vec!["10.1.1.2".into()]);
    strict.cn = Some("node-3".into());
    let err = strict.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        err,
        "invalid `cn`: the CSR's CN is `node-2`, wanted `node-3`"
    );
    // ... or set when the runbook overrides them
    strict.cn = None;
    strict.ips = Some(vec!["10.1.1.9".into()]);
    strict.override_sans = true;
    let (lines, cert) = run(&ctx, &strict).await;
    assert_eq!(
        lines,
        vec!["~ change certificate node-2 from CSR (pki/node-2.crt) (SAN IP 10.1.1.9 missing; SAN IP 10.1.1.2 not wanted)"]
    );
    assert_eq!(cert.ips, vec!["10.1.1.9"]);

    // garbage is refused as a CSR
    let err = csr_step(
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".into(),
    )
    .prepare(&ctx)
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with("invalid `csr`: not a valid certificate signing request"),
        "{err}"
    );
}

#[tokio::test]
async fn a_public_key_gets_a_certificate_for_that_key_and_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    let (_, ca) = run(&ctx, &ca_step("etcd-ca")).await;
    let key = node.path().join("member.key");
    let key = key.to_str().unwrap();
    let (ok, text) = openssl(&["genrsa", "-out", key, "2048"]);
    assert!(ok, "{text}");
    let (ok, public) = openssl(&["pkey", "-in", key, "-pubout"]);
    assert!(ok, "{public}");

    let mut step = csr_step(String::new());
    step.csr = None;
    step.public_key = Some(public.clone());
    step.cn = Some("node-2".into());
    step.o = Some("nodes".into());
    step.ips = Some(vec!["10.1.1.2".into()]);
    step.dns = Some(vec!["node-2".into()]);
    let (lines, cert): (Vec<String>, Cert) = run(&ctx, &step).await;
    assert_eq!(
        lines,
        vec!["+ create certificate node-2 for a given public key (pki/node-2.crt) \
              (CN=node-2, O=nodes; DNS node-2; IP 10.1.1.2; usage server,client; 90 days; signed by etcd-ca)"]
    );
    assert_eq!(cert.key_path, "");
    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        "sslserver",
        "-CAfile",
        &ca.cert_path,
        &cert.cert_path,
    ]);
    assert!(ok, "{text}");
    // the certificate is for that key: a server can pair them
    let (_, from_cert) = openssl(&["x509", "-pubkey", "-noout", "-in", &cert.cert_path]);
    assert_eq!(from_cert, public);

    // the same key again: kept; another key: a new certificate
    let (lines, _) = run(&ctx, &step).await;
    assert!(
        lines[0].starts_with("= ok certificate node-2 for a given public key"),
        "{lines:?}"
    );
    let other = node.path().join("other.key");
    let other = other.to_str().unwrap();
    assert!(openssl(&["genrsa", "-out", other, "2048"]).0);
    let (_, other_public) = openssl(&["pkey", "-in", other, "-pubout"]);
    let mut moved = step.clone();
    moved.public_key = Some(other_public);
    let (lines, _) = run(&ctx, &moved).await;
    assert!(
        lines[0].starts_with("~ change certificate node-2"),
        "{lines:?}"
    );

    // refused: no subject, both sources, neither, and a private key (never echoed)
    let mut bad = step.clone();
    bad.cn = None;
    let err = bad.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        err,
        "invalid `cn`: required with `public_key` (a bare key has no subject)"
    );
    let mut bad = step.clone();
    bad.csr = Some("x".into());
    let err = bad.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        err,
        "invalid `public_key`: give `csr` or `public_key`, not both"
    );
    let mut bad = step.clone();
    bad.public_key = None;
    let err = bad.prepare(&ctx).await.err().unwrap().to_string();
    assert!(err.starts_with("invalid `csr`: missing"), "{err}");
    let private = std::fs::read_to_string(key).unwrap();
    let mut bad = step.clone();
    bad.public_key = Some(private.clone());
    let err = bad.prepare(&ctx).await.err().unwrap().to_string();
    assert_eq!(
        err,
        "invalid `public_key`: a PEM `PRIVATE KEY`, not a `PUBLIC KEY` (e.g. `openssl pkey -in KEY -pubout`)"
    );
    let body = private.lines().nth(1).unwrap();
    assert!(!err.contains(body));
}

#[tokio::test]
async fn inspect_reports_what_the_certificate_says() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = ctx(tmp.path());
    let (_, _) = run(&ctx, &ca_step("ca")).await;
    let (_, cert) = run(&ctx, &cert_step(CaRef::Name("ca".into()), &["10.0.0.1"])).await;
    let by_path = cairn::primitives::pki::inspect("pki/node-1.crt", tmp.path()).unwrap();
    let by_pem = cairn::primitives::pki::inspect(&cert.pem, Path::new("/nowhere")).unwrap();
    assert_eq!(by_path, by_pem);
    assert_eq!(by_path.cn, "node-1");
    assert_eq!(by_path.subject, "CN=node-1");
    assert_eq!(by_path.issuer, "CN=ca root, O=cairn");
    assert_eq!(by_path.dns, vec!["node-1", "localhost"]);
    assert_eq!(by_path.ips, vec!["10.0.0.1"]);
    assert_eq!(by_path.usages, vec!["server", "client"]);
    assert_eq!(
        by_path.key_usage,
        vec!["digital_signature", "key_encipherment"]
    );
    assert_eq!(by_path.key, "rsa2048");
    assert!(!by_path.is_ca);
    assert_eq!(by_path.fingerprint, cert.fingerprint);
    assert_eq!(by_path.not_after, cert.not_after);
    let err = cairn::primitives::pki::inspect("pki/missing.crt", tmp.path())
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("reading certificate "), "{err}");
    assert!(err.contains("pki/missing.crt"), "{err}");
}
