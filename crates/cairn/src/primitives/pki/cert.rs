//! Certificates as runbooks see them ([`Cert`]) and as inspection reports them
//! ([`CertInfo`]), read from PEM with x509-parser.

use crate::unknown;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// A certificate made (or signed) by cairn, as handed to the runbook.
///
/// Only public material: the private key stays in the 0600 file at `key_path`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "Cert", extra = crate::args::argument)]
pub struct Cert {
    /// Name in the workspace (`<workspace>/pki/<name>.crt`).
    #[rhai_type(readonly)]
    pub name: String,
    /// Subject common name.
    #[rhai_type(readonly)]
    pub cn: String,
    /// Absolute path of the certificate file.
    #[rhai_type(readonly)]
    pub cert_path: String,
    /// Absolute path of the private key file; empty when cairn holds no key
    /// (certificates signed from a CSR).
    #[rhai_type(readonly)]
    pub key_path: String,
    /// The certificate, PEM.
    #[rhai_type(readonly)]
    pub pem: String,
    /// The issuing CA's certificate, PEM; empty for a CA.
    #[rhai_type(readonly)]
    pub ca_pem: String,
    /// Workspace name of the issuing CA; empty for a CA.
    #[rhai_type(readonly)]
    pub ca: String,
    /// Issuer distinguished name (`CN=etcd-ca, O=cairn`).
    #[rhai_type(readonly)]
    pub issuer: String,
    /// Expiry, RFC 3339.
    #[rhai_type(readonly)]
    pub not_after: String,
    /// Serial number, hex.
    #[rhai_type(readonly)]
    pub serial: String,
    /// SHA-256 of the DER certificate, `AB:CD:...` as openssl prints it.
    #[rhai_type(readonly)]
    pub fingerprint: String,
    /// DNS subject alternative names.
    #[rhai_type(skip)]
    pub dns: Vec<String>,
    /// IP subject alternative names.
    #[rhai_type(skip)]
    pub ips: Vec<String>,
    /// Extended key usages (`server`, `client`).
    #[rhai_type(skip)]
    pub usage: Vec<String>,
    /// Whether this is a CA certificate.
    #[rhai_type(readonly)]
    pub is_ca: bool,
}

impl Cert {
    /// The certificate followed by its CA's certificate (for servers that
    /// present the chain).
    pub fn chain_pem(&self) -> String {
        let mut chain = self.pem.clone();
        if !self.ca_pem.is_empty() {
            if !chain.ends_with('\n') {
                chain.push('\n');
            }
            chain.push_str(&self.ca_pem);
        }
        chain
    }

    /// Build the handle from what a certificate says and where it lives.
    pub fn from_info(
        name: &str,
        info: &CertInfo,
        pem: &str,
        cert_path: String,
        key_path: String,
        ca: &str,
        ca_pem: &str,
    ) -> Cert {
        Cert {
            name: name.into(),
            cn: info.cn.clone(),
            cert_path,
            key_path,
            pem: pem.into(),
            ca_pem: ca_pem.into(),
            ca: ca.into(),
            issuer: info.issuer.clone(),
            not_after: info.not_after.clone(),
            serial: info.serial.clone(),
            fingerprint: info.fingerprint.clone(),
            dns: info.dns.clone(),
            ips: info.ips.clone(),
            usage: info.usages.clone(),
            is_ca: info.is_ca,
        }
    }

    /// Whether the certificate itself is not known yet (a plan's prediction).
    pub fn is_unknown(&self) -> bool {
        unknown::is_unknown(&self.pem)
    }
}

/// What a certificate says (`inspect_cert`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "CertInfo")]
pub struct CertInfo {
    /// Subject distinguished name.
    #[rhai_type(readonly)]
    pub subject: String,
    /// Subject common name (empty if none).
    #[rhai_type(readonly)]
    pub cn: String,
    /// Subject organization (empty if none).
    #[rhai_type(readonly)]
    pub o: String,
    /// Issuer distinguished name.
    #[rhai_type(readonly)]
    pub issuer: String,
    #[rhai_type(skip)]
    pub dns: Vec<String>,
    #[rhai_type(skip)]
    pub ips: Vec<String>,
    /// RFC 3339.
    #[rhai_type(readonly)]
    pub not_before: String,
    /// RFC 3339.
    #[rhai_type(readonly)]
    pub not_after: String,
    /// Serial number, hex.
    #[rhai_type(readonly)]
    pub serial: String,
    /// Extended key usages: `server`, `client`, other names or OIDs.
    #[rhai_type(skip)]
    pub usages: Vec<String>,
    /// Key usages (`digital_signature`, `key_encipherment`, `cert_sign`, ...).
    #[rhai_type(skip)]
    pub key_usage: Vec<String>,
    /// SHA-256 of the DER certificate, `AB:CD:...`.
    #[rhai_type(readonly)]
    pub fingerprint: String,
    #[rhai_type(readonly)]
    pub is_ca: bool,
    /// Key type: `rsa2048`, `rsa4096`, `p256`, ...
    #[rhai_type(readonly)]
    pub key: String,
    /// SHA-256 (hex) of the subject public key: equal for a key and its certificates.
    #[rhai_type(skip)]
    pub public_key: String,
}

impl CertInfo {
    /// Expiry as a time.
    pub fn not_after_time(&self) -> Option<OffsetDateTime> {
        OffsetDateTime::parse(&self.not_after, &Rfc3339).ok()
    }

    /// Every field a placeholder: what `inspect_cert` says of a certificate
    /// that only exists after a step runs.
    pub fn unknown(what: &str) -> CertInfo {
        let p = |field: &str| unknown::placeholder("gen_cert", &format!("{what}.{field}"));
        CertInfo {
            subject: p("subject"),
            cn: p("cn"),
            o: p("o"),
            issuer: p("issuer"),
            dns: vec![],
            ips: vec![],
            not_before: p("not_before"),
            not_after: p("not_after"),
            serial: p("serial"),
            usages: vec![],
            key_usage: vec![],
            fingerprint: p("fingerprint"),
            is_ca: false,
            key: p("key"),
            public_key: p("public_key"),
        }
    }
}

/// A parsed certificate: its facts plus the DER it came from.
pub struct Parsed {
    pub info: CertInfo,
    pub der: Vec<u8>,
}

/// Parse the first certificate of a PEM text.
pub fn parse_pem(pem: &str) -> Result<Parsed, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate ({e})"))?;
    if block.label != "CERTIFICATE" {
        return Err(format!("PEM block is `{}`, not `CERTIFICATE`", block.label));
    }
    let info = {
        let (_, x509) = X509Certificate::from_der(&block.contents)
            .map_err(|e| format!("not an X.509 certificate ({e})"))?;
        info_of(&x509, &block.contents)?
    };
    Ok(Parsed {
        info,
        der: block.contents,
    })
}

/// Whether `cert_der` carries a valid signature by the key of `ca_der`.
pub fn signed_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(cert_der),
        X509Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// `AB:CD:...` of SHA-256, as `openssl x509 -fingerprint -sha256` prints it.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Hex SHA-256 of public key bits (the BIT STRING of a SubjectPublicKeyInfo).
pub fn public_key_digest(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// `rsa2048`, `p256`, ... for a subject public key.
pub fn key_type_of(spki: &SubjectPublicKeyInfo) -> String {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("rsa{}", rsa.key_size()),
        Ok(PublicKey::EC(ec)) => format!("p{}", ec.key_size()),
        Ok(other) => format!("other{}", other.key_size()),
        Err(_) => "unknown".into(),
    }
}

/// RFC 3339 text of a time, seconds precision.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The first attribute's text (`CN` or `O` of a name).
pub fn first_attr<'a, 'b: 'a>(
    mut it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'b>>,
) -> Option<String> {
    it.next().and_then(|a| a.as_str().ok()).map(str::to_string)
}

/// An IP address from SAN bytes.
pub fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

fn info_of(x509: &X509Certificate<'_>, der: &[u8]) -> Result<CertInfo, String> {
    let cn = first_attr(x509.subject().iter_common_name()).unwrap_or_default();
    let o = first_attr(x509.subject().iter_organization()).unwrap_or_default();

    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(
                    ip_of(b)
                        .map(|ip| ip.to_string())
                        .unwrap_or_else(|| hex::encode(b)),
                ),
                _ => {}
            }
        }
    }

    let mut usages = Vec::new();
    if let Ok(Some(eku)) = x509.extended_key_usage() {
        let e = eku.value;
        for (on, name) in [
            (e.server_auth, "server"),
            (e.client_auth, "client"),
            (e.code_signing, "code_signing"),
            (e.email_protection, "email_protection"),
            (e.time_stamping, "time_stamping"),
            (e.ocsp_signing, "ocsp_signing"),
            (e.any, "any"),
        ] {
            if on {
                usages.push(name.to_string());
            }
        }
        usages.extend(e.other.iter().map(|oid| oid.to_id_string()));
    }

    let mut key_usage = Vec::new();
    if let Ok(Some(ku)) = x509.key_usage() {
        let k = ku.value;
        for (on, name) in [
            (k.digital_signature(), "digital_signature"),
            (k.non_repudiation(), "content_commitment"),
            (k.key_encipherment(), "key_encipherment"),
            (k.data_encipherment(), "data_encipherment"),
            (k.key_agreement(), "key_agreement"),
            (k.key_cert_sign(), "cert_sign"),
            (k.crl_sign(), "crl_sign"),
            (k.encipher_only(), "encipher_only"),
            (k.decipher_only(), "decipher_only"),
        ] {
            if on {
                key_usage.push(name.to_string());
            }
        }
    }

    let validity = x509.validity();
    Ok(CertInfo {
        subject: x509.subject().to_string(),
        cn,
        o,
        issuer: x509.issuer().to_string(),
        dns,
        ips,
        not_before: rfc3339(validity.not_before.to_datetime()),
        not_after: rfc3339(validity.not_after.to_datetime()),
        serial: hex::encode(x509.raw_serial()),
        usages,
        key_usage,
        fingerprint: fingerprint(der),
        is_ca: x509.is_ca(),
        key: key_type_of(x509.public_key()),
        public_key: public_key_digest(&x509.public_key().subject_public_key.data),
    })
}
