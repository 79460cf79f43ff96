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
use rhai::{Array, Dynamic, EvalAltResult, FuncRegistration, Map, NativeCallContext};
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
        .register_type_with_name::<Cert>("Cert")
        .register_get("name", |c: &mut Cert| c.name.clone())
        .register_get("cn", |c: &mut Cert| c.cn.clone())
        .register_get("cert_path", |c: &mut Cert| c.cert_path.clone())
        .register_get("key_path", |c: &mut Cert| c.key_path.clone())
        .register_get("pem", |c: &mut Cert| c.pem.clone())
        .register_get("ca_pem", |c: &mut Cert| c.ca_pem.clone())
        .register_get("chain_pem", |c: &mut Cert| c.chain_pem())
        .register_get("ca", |c: &mut Cert| c.ca.clone())
        .register_get("issuer", |c: &mut Cert| c.issuer.clone())
        .register_get("not_after", |c: &mut Cert| c.not_after.clone())
        .register_get("serial", |c: &mut Cert| c.serial.clone())
        .register_get("fingerprint", |c: &mut Cert| c.fingerprint.clone())
        .register_get("dns", |c: &mut Cert| strings(&c.dns))
        .register_get("ips", |c: &mut Cert| strings(&c.ips))
        .register_get("usage", |c: &mut Cert| strings(&c.usage))
        .register_get("is_ca", |c: &mut Cert| c.is_ca)
        .register_fn("to_string", |c: &mut Cert| cert_line(c))
        .register_fn("to_debug", |c: &mut Cert| cert_line(c));

    engine
        .register_type_with_name::<CertInfo>("CertInfo")
        .register_get("subject", |c: &mut CertInfo| c.subject.clone())
        .register_get("cn", |c: &mut CertInfo| c.cn.clone())
        .register_get("o", |c: &mut CertInfo| c.o.clone())
        .register_get("issuer", |c: &mut CertInfo| c.issuer.clone())
        .register_get("dns", |c: &mut CertInfo| strings(&c.dns))
        .register_get("ips", |c: &mut CertInfo| strings(&c.ips))
        .register_get("not_before", |c: &mut CertInfo| c.not_before.clone())
        .register_get("not_after", |c: &mut CertInfo| c.not_after.clone())
        .register_get("serial", |c: &mut CertInfo| c.serial.clone())
        .register_get("usages", |c: &mut CertInfo| strings(&c.usages))
        .register_get("key_usage", |c: &mut CertInfo| strings(&c.key_usage))
        .register_get("fingerprint", |c: &mut CertInfo| c.fingerprint.clone())
        .register_get("is_ca", |c: &mut CertInfo| c.is_ca)
        .register_get("key", |c: &mut CertInfo| c.key.clone())
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
    FuncRegistration::new("gen_ca")
        .with_params_info(["args: Map", "Cert"])
        .with_comments([
            "/// Make (or keep) a certificate authority in `<workspace>/pki/<name>.crt` and `.key` (0600).",
            "///",
            "/// `#{name, cn, o?, key?: \"rsa2048\"|\"rsa3072\"|\"rsa4096\"|\"p256\" (default rsa2048), days, renew_before_days? (30)}`",
            "///",
            "/// An existing CA is kept while it matches (CN, O, key type) and is not within",
            "/// `renew_before_days` of expiry; otherwise the plan says what differs. A new CA",
            "/// means every certificate it signed is reissued by its `gen_cert` step.",
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<Cert, Box<EvalAltResult>> {
                let step: GenCa = crate::args::parse("gen_ca", args)?;
                x.exec(&call, step.in_dir(&x.ctx().workspace.pki_dir()))
            },
        );

    let x = exec.clone();
    FuncRegistration::new("gen_cert")
        .with_params_info(["args: Map", "Cert"])
        .with_comments([
            "/// Make (or keep) a key and a certificate signed by a CA of the workspace.",
            "///",
            "/// `#{name, ca: Cert or \"ca-name\", cn, o?, dns?: [..], ips?: [..], usage: [\"server\", \"client\"],",
            "///   key_usage?: [\"digital_signature\", \"key_encipherment\", ...], key? (rsa2048), days, renew_before_days? (30)}`",
            "///",
            "/// Kept while CN, O, SANs, usages, key type and issuer match and it is not about",
            "/// to expire; otherwise the plan names each difference (`SAN IP 10.1.1.3 missing`).",
            "/// Files: `<workspace>/pki/<name>.crt` (0644), `<name>.key` (0600).",
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<Cert, Box<EvalAltResult>> {
                let step: GenCert = crate::args::parse("gen_cert", args)?;
                x.exec(&call, step.in_dir(&x.ctx().workspace.pki_dir()))
            },
        );

    let x = exec.clone();
    FuncRegistration::new("sign_csr")
        .with_params_info(["args: Map", "Cert"])
        .with_comments([
            "/// Sign a certificate signing request (PEM, e.g. made by `openssl req` on a node);",
            "/// the private key stays where the CSR was made (`key_path` is empty).",
            "///",
            "/// `#{name, ca, csr | public_key, days, usage, key_usage?, cn?, o?, dns?, ips?, override_sans? (false), renew_before_days?}`",
            "///",
            "/// SANs come from the CSR. Given `dns`/`ips` must equal the CSR's, unless",
            "/// `override_sans: true`, which signs exactly those instead. A CSR never makes a CA.",
            "///",
            "/// `public_key` (a PEM `PUBLIC KEY`, e.g. `openssl pkey -in KEY -pubout` run on the",
            "/// node) instead of `csr`: a certificate for that key, subject `cn` (required) and",
            "/// `o`, SANs `dns`/`ips` as given. A renewal that keeps the key: the only certificate",
            "/// replacement etcd, which re-reads cert and key per handshake, never sees half-done.",
        ])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, args: Map| -> Result<Cert, Box<EvalAltResult>> {
                let step: SignCsr = crate::args::parse("sign_csr", args)?;
                x.exec(&call, step.in_dir(&x.ctx().workspace.pki_dir()))
            },
        );

    // ---- workspace_cert (etcd-cert-rotate) ----
    let x = exec.clone();
    FuncRegistration::new("workspace_cert")
        .with_params_info(["name: &str", "CertInfo"])
        .with_comments([read::DOC])
        .register_into_engine(
            engine,
            move |call: NativeCallContext, name: &str| -> Result<CertInfo, Box<EvalAltResult>> {
                x.exec(&call, WorkspaceCert { name: name.into() })
            },
        );

    let x = exec.clone();
    FuncRegistration::new("inspect_cert")
        .with_params_info(["source: &str", "CertInfo"])
        .with_comments([
            "/// What a certificate says: subject, cn, o, issuer, dns, ips, not_before, not_after,",
            "/// serial, usages, key_usage, fingerprint (SHA-256), is_ca, key.",
            "///",
            "/// `source` is PEM text or a file path (relative paths are inside the workspace,",
            "/// e.g. `\"pki/ca.crt\"`). Reads only; not a step.",
        ])
        .register_into_engine(
            engine,
            move |source: &str| -> Result<CertInfo, Box<EvalAltResult>> {
                inspect(source, x.ctx().workspace.root())
                    .map_err(|e| script_error(format!("inspect_cert: {e}")))
            },
        );

    FuncRegistration::new("inspect_cert")
        .with_params_info(["cert: Cert", "CertInfo"])
        .with_comments([
            "/// What the certificate of a `Cert` handle says (see `inspect_cert(source)`).",
        ])
        .register_into_engine(
            engine,
            |cert: Cert| -> Result<CertInfo, Box<EvalAltResult>> {
                inspect_cert(&cert).map_err(|e| script_error(format!("inspect_cert: {e}")))
            },
        );
}
