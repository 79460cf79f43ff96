//! Making keys and certificates with rcgen: CPU-bound, called from
//! `spawn_blocking`.

use super::spec::{KeyType, Spec};
use crate::error::StepError;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyPair, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// How far `not_before` is set back, for clocks of nodes slightly behind ours.
const BACKDATE: Duration = Duration::minutes(5);

/// A new certificate and, unless signed from a CSR, its new private key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: Option<String>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> StepError {
    StepError::Other(format!("{what}: {e}"))
}

/// A fresh private key of the given type.
pub fn generate_key(key: KeyType) -> Result<KeyPair, StepError> {
    let size = match key {
        KeyType::Rsa2048 => rcgen::RsaKeySize::_2048,
        KeyType::Rsa3072 => rcgen::RsaKeySize::_3072,
        KeyType::Rsa4096 => rcgen::RsaKeySize::_4096,
        KeyType::P256 => {
            return KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| failed("generating p256 key", e))
        }
    };
    KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        .map_err(|e| failed(&format!("generating {} key", key.as_str()), e))
}

/// A random positive serial of 16 bytes (RFC 5280 allows up to 20).
fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Certificate parameters for `spec`, valid from (about) now for `days`.
pub fn params(spec: &Spec, days: u32, now: OffsetDateTime) -> Result<CertificateParams, StepError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, spec.cn.as_str());
    if let Some(o) = &spec.o {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    p.distinguished_name = dn;
    p.not_before = now - BACKDATE;
    p.not_after = now + Duration::days(days.into());
    p.serial_number = Some(serial());
    for d in &spec.dns {
        let name = d
            .as_str()
            .try_into()
            .map_err(|_| StepError::invalid("dns", format!("`{d}` is not a valid DNS name")))?;
        p.subject_alt_names.push(SanType::DnsName(name));
    }
    p.subject_alt_names
        .extend(spec.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    p.key_usages = spec.key_usage.iter().map(|k| k.rcgen()).collect();
    p.extended_key_usages = spec.usage.iter().map(|u| u.rcgen()).collect();
    if spec.is_ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.use_authority_key_identifier_extension = true;
    }
    Ok(p)
}

/// A new self-signed CA with a new key.
pub fn self_signed(spec: &Spec, key: KeyType, days: u32) -> Result<Issued, StepError> {
    let key = generate_key(key)?;
    let cert = params(spec, days, OffsetDateTime::now_utc())?
        .self_signed(&key)
        .map_err(|e| failed("signing CA certificate", e))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: Some(key.serialize_pem()),
    })
}

fn issuer<'a>(ca_pem: &str, ca_key_pem: &str) -> Result<Issuer<'a, KeyPair>, StepError> {
    let ca_key =
        KeyPair::from_pem(ca_key_pem).map_err(|e| failed("reading the CA's private key", e))?;
    Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(|e| failed("reading the CA certificate", e))
}

/// A new certificate with a new key, signed by the CA.
pub fn signed(
    spec: &Spec,
    key: KeyType,
    days: u32,
    ca_pem: &str,
    ca_key_pem: &str,
) -> Result<Issued, StepError> {
    let issuer = issuer(ca_pem, ca_key_pem)?;
    let key = generate_key(key)?;
    let cert = params(spec, days, OffsetDateTime::now_utc())?
        .signed_by(&key, &issuer)
        .map_err(|e| failed("signing certificate", e))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: Some(key.serialize_pem()),
    })
}

/// A certificate for the key of a CSR, signed by the CA. Subject, SANs and
/// usages come from `spec` (which the caller built from the CSR and the
/// runbook's requirements), never from extensions the CSR asks for: a CSR
/// cannot make itself a CA.
pub fn from_csr(
    spec: &Spec,
    csr_pem: &str,
    days: u32,
    ca_pem: &str,
    ca_key_pem: &str,
) -> Result<Issued, StepError> {
    let issuer = issuer(ca_pem, ca_key_pem)?;
    let mut csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| {
        StepError::invalid(
            "csr",
            format!("not a valid certificate signing request: {e}"),
        )
    })?;
    csr.params = params(spec, days, OffsetDateTime::now_utc())?;
    let cert = csr
        .signed_by(&issuer)
        .map_err(|e| failed("signing certificate", e))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: None,
    })
}

/// A certificate for a bare public key (PEM `PUBLIC KEY`), signed by the CA:
/// a renewal that keeps the key. Subject, SANs and usages come from `spec`.
pub fn for_public_key(
    spec: &Spec,
    public_key_pem: &str,
    days: u32,
    ca_pem: &str,
    ca_key_pem: &str,
) -> Result<Issued, StepError> {
    let issuer = issuer(ca_pem, ca_key_pem)?;
    let key = rcgen::SubjectPublicKeyInfo::from_pem(public_key_pem)
        .map_err(|e| StepError::invalid("public_key", format!("not a public key: {e}")))?;
    let cert = params(spec, days, OffsetDateTime::now_utc())?
        .signed_by(&key, &issuer)
        .map_err(|e| failed("signing certificate", e))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: None,
    })
}
