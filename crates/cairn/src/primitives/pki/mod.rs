//! `pki`: certificate authorities, certificates and keys made on the
//! operator's machine, kept in `<workspace>/pki/` (folder 0700, keys 0600).
//!
//! Steps: [`GenCa`] (`gen_ca`), [`GenCert`] (`gen_cert`), [`SignCsr`]
//! (`sign_csr`). Each reads the certificate and key already there and keeps
//! them when they still match the request and are not about to expire, or says
//! exactly what differs and makes them anew. [`inspect`] (`inspect_cert`)
//! reports what a certificate says.

mod cert;
mod issue;
mod read;
mod spec;
mod steps;
mod store;

pub use cert::{fingerprint, parse_pem, signed_by, Cert, CertInfo, Parsed};
pub use read::WorkspaceCert;
pub use spec::{decide, Decision, Facts, IssuerFact, KeyFact, KeyType, KeyUse, Spec, Usage};
pub use steps::{CaRef, GenCa, GenCert, SignCsr};
pub use store::{check_name, Store};

use crate::error::StepError;
use crate::executor::{script_error, Executor};
use rhai::{Array, Dynamic, EvalAltResult, Map, NativeCallContext};
use std::path::Path;
use std::sync::Arc;

/// What a certificate says. `source` is PEM text or a file path; a relative
/// path is taken relative to `workspace` (so `pki/ca.crt` works).
pub fn inspect(source: &str, workspace: &Path) -> Result<CertInfo, StepError> {
    if crate::unknown::is_unknown(source) {
        return Ok(CertInfo::unknown("certificate"));
    }
    let (pem, field) = if source.contains("-----BEGIN") {
        (source.to_string(), "pem")
    } else {
        let path = workspace.join(source);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| StepError::io("reading certificate", &path, e))?;
        (text, "path")
    };
    parse_pem(&pem)
        .map(|p| p.info)
        .map_err(|e| StepError::invalid(field, e))
}

/// What a certificate handle's certificate says (placeholders in a plan
/// before it exists).
pub fn inspect_cert(cert: &Cert) -> Result<CertInfo, StepError> {
    if cert.is_unknown() {
        return Ok(CertInfo::unknown(&cert.name));
    }
    parse_pem(&cert.pem)
        .map(|p| p.info)
        .map_err(|e| StepError::invalid("cert", format!("certificate {}: {e}", cert.name)))
}

fn strings(v: &[String]) -> Array {
    v.iter().cloned().map(Dynamic::from).collect()
}

fn register_types(engine: &mut rhai::Engine) {
    engine
        .build_type::<Cert>()
        .register_get("chain_pem", |c: &mut Cert| c.chain_pem())
        .register_get("dns", |c: &mut Cert| strings(&c.dns))
        .register_get("ips", |c: &mut Cert| strings(&c.ips))
        .register_get("usage", |c: &mut Cert| strings(&c.usage))
        .register_fn("to_string", |c: &mut Cert| cert_line(c))
        .register_fn("to_debug", |c: &mut Cert| cert_line(c));

    engine
        .build_type::<CertInfo>()
        .register_get("dns", |c: &mut CertInfo| strings(&c.dns))
        .register_get("ips", |c: &mut CertInfo| strings(&c.ips))
        .register_get("usages", |c: &mut CertInfo| strings(&c.usages))
        .register_get("key_usage", |c: &mut CertInfo| strings(&c.key_usage))
        .register_fn("to_string", |c: &mut CertInfo| info_line(c))
        .register_fn("to_debug", |c: &mut CertInfo| info_line(c));
}

fn cert_line(c: &Cert) -> String {
    let mut sans: Vec<String> = c.dns.clone();
    sans.extend(c.ips.iter().cloned());
    format!(
        "Cert({}: CN={}{}{}, until {}, {})",
        c.name,
        c.cn,
        if sans.is_empty() {
            String::new()
        } else {
            format!(", SANs {}", sans.join(" "))
        },
        if c.is_ca {
            ", CA".to_string()
        } else {
            format!(", by {}", c.ca)
        },
        c.not_after,
        c.cert_path
    )
}

fn info_line(c: &CertInfo) -> String {
    let mut sans: Vec<String> = c.dns.clone();
    sans.extend(c.ips.iter().cloned());
    format!(
        "CertInfo({}; issuer {}; SANs [{}]; usages [{}]; {}; until {}; sha256 {})",
        c.subject,
        c.issuer,
        sans.join(" "),
        c.usages.join(","),
        c.key,
        c.not_after,
        c.fingerprint
    )
}

/// Register `gen_ca`, `gen_cert`, `sign_csr`, `inspect_cert` and the `Cert`
/// and `CertInfo` types.
pub fn register(engine: &mut rhai::Engine, exec: &Arc<Executor>) {
    register_types(engine);

    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Make (or keep) a certificate authority in `<workspace>/pki/<name>.crt` and `.key` (0600).
        ///
        /// `#{name, cn, o?, key?: "rsa2048"|"rsa3072"|"rsa4096"|"p256" (default rsa2048), days, renew_before_days? (30)}`
        ///
        /// An existing CA is kept while it matches (CN, O, key type) and is not within
        /// `renew_before_days` of expiry; otherwise the plan says what differs. A new CA
        /// means every certificate it signed is reissued by its `gen_cert` step.
        fn "gen_ca"("args: Map") -> "Cert" =
        move |call: NativeCallContext, args: Map| -> Result<Cert, Box<EvalAltResult>> {
            let step: GenCa = crate::args::parse(&call, "gen_ca", args)?;
            x.exec(&call, step.in_dir(&x.ctx().workspace.pki_dir()))
        }
    );

    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Make (or keep) a key and a certificate signed by a CA of the workspace.
        ///
        /// `#{name, ca: Cert or "ca-name", cn, o?, dns?: [..], ips?: [..], usage: ["server", "client"],
        ///   key_usage?: ["digital_signature", "key_encipherment", ...], key? (rsa2048), days, renew_before_days? (30)}`
        ///
        /// Kept while CN, O, SANs, usages, key type and issuer match and it is not about
        /// to expire; otherwise the plan names each difference (`SAN IP 10.1.1.3 missing`).
        /// Files: `<workspace>/pki/<name>.crt` (0644), `<name>.key` (0600).
        fn "gen_cert"("args: Map") -> "Cert" =
        move |call: NativeCallContext, args: Map| -> Result<Cert, Box<EvalAltResult>> {
            let step: GenCert = crate::args::parse(&call, "gen_cert", args)?;
            x.exec(&call, step.in_dir(&x.ctx().workspace.pki_dir()))
        }
    );

    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// Sign a certificate signing request (PEM, e.g. made by `openssl req` on a node);
        /// the private key stays where the CSR was made (`key_path` is empty).
        ///
        /// `#{name, ca, csr | public_key, days, usage, key_usage?, cn?, o?, dns?, ips?, override_sans? (false), renew_before_days?}`
        ///
        /// SANs come from the CSR. Given `dns`/`ips` must equal the CSR's, unless
        /// `override_sans: true`, which signs exactly those instead. A CSR never makes a CA.
        ///
        /// `public_key` (a PEM `PUBLIC KEY`, e.g. `openssl pkey -in KEY -pubout` run on the
        /// node) instead of `csr`: a certificate for that key, subject `cn` (required) and
        /// `o`, SANs `dns`/`ips` as given. A renewal that keeps the key: the only certificate
        /// replacement etcd, which re-reads cert and key per handshake, never sees half-done.
        fn "sign_csr"("args: Map") -> "Cert" =
        move |call: NativeCallContext, args: Map| -> Result<Cert, Box<EvalAltResult>> {
            let step: SignCsr = crate::args::parse(&call, "sign_csr", args)?;
            x.exec(&call, step.in_dir(&x.ctx().workspace.pki_dir()))
        }
    );

    // ---- workspace_cert (etcd-cert-rotate) ----
    let x = exec.clone();
    crate::registration::function!(
        engine,
        fn "workspace_cert"("name: &str") -> "CertInfo" as read::DOC =
        move |call: NativeCallContext, name: &str| -> Result<CertInfo, Box<EvalAltResult>> {
            x.exec(&call, WorkspaceCert { name: name.into() })
        }
    );

    let x = exec.clone();
    crate::registration::function!(
        engine,
        /// What a certificate says: subject, cn, o, issuer, dns, ips, not_before, not_after,
        /// serial, usages, key_usage, fingerprint (SHA-256), is_ca, key.
        ///
        /// `source` is PEM text or a file path (relative paths are inside the workspace,
        /// e.g. `"pki/ca.crt"`). Reads only; not a step.
        fn "inspect_cert"("source: &str") -> "CertInfo" =
        move |source: &str| -> Result<CertInfo, Box<EvalAltResult>> {
            inspect(source, x.ctx().workspace.root())
                .map_err(|e| script_error(format!("inspect_cert: {e}")))
        }
    );

    crate::registration::function!(
        engine,
        /// What the certificate of a `Cert` handle says (see `inspect_cert(source)`).
        fn "inspect_cert"("cert: Cert") -> "CertInfo" =
        |cert: Cert| -> Result<CertInfo, Box<EvalAltResult>> {
            inspect_cert(&cert).map_err(|e| script_error(format!("inspect_cert: {e}")))
        }
    );
}
