//! What a certificate should be ([`Spec`]), what is on disk ([`Facts`]), and
//! the decision between them ([`decide`]): create, reissue (saying exactly what
//! differs), or keep.

use super::cert::CertInfo;
use crate::error::StepError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// Key algorithm and size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    #[default]
    Rsa2048,
    Rsa3072,
    Rsa4096,
    P256,
}

impl KeyType {
    /// As runbooks spell it (`rsa2048`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
            KeyType::P256 => "p256",
        }
    }
}

/// Extended key usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Usage {
    /// TLS server authentication.
    Server,
    /// TLS client authentication.
    Client,
}

impl Usage {
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Server => "server",
            Usage::Client => "client",
        }
    }
    pub(super) fn rcgen(self) -> rcgen::ExtendedKeyUsagePurpose {
        match self {
            Usage::Server => rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        }
    }
}

/// Key usage (the X.509 `keyUsage` extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyUse {
    DigitalSignature,
    ContentCommitment,
    KeyEncipherment,
    DataEncipherment,
    KeyAgreement,
    CertSign,
    CrlSign,
}

impl KeyUse {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::DigitalSignature => "digital_signature",
            KeyUse::ContentCommitment => "content_commitment",
            KeyUse::KeyEncipherment => "key_encipherment",
            KeyUse::DataEncipherment => "data_encipherment",
            KeyUse::KeyAgreement => "key_agreement",
            KeyUse::CertSign => "cert_sign",
            KeyUse::CrlSign => "crl_sign",
        }
    }
    pub(super) fn rcgen(self) -> rcgen::KeyUsagePurpose {
        use rcgen::KeyUsagePurpose as K;
        match self {
            KeyUse::DigitalSignature => K::DigitalSignature,
            KeyUse::ContentCommitment => K::ContentCommitment,
            KeyUse::KeyEncipherment => K::KeyEncipherment,
            KeyUse::DataEncipherment => K::DataEncipherment,
            KeyUse::KeyAgreement => K::KeyAgreement,
            KeyUse::CertSign => K::KeyCertSign,
            KeyUse::CrlSign => K::CrlSign,
        }
    }

    /// What a certificate gets unless the runbook says otherwise.
    pub fn defaults(is_ca: bool, key: &str) -> Vec<KeyUse> {
        if is_ca {
            vec![KeyUse::DigitalSignature, KeyUse::CertSign, KeyUse::CrlSign]
        } else if key.starts_with("rsa") {
            vec![KeyUse::DigitalSignature, KeyUse::KeyEncipherment]
        } else {
            vec![KeyUse::DigitalSignature]
        }
    }
}

/// What a certificate should be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Spec {
    pub cn: String,
    pub o: Option<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usage: Vec<Usage>,
    pub key_usage: Vec<KeyUse>,
    /// Key type, when cairn makes the key (`None` for CSRs).
    pub key: Option<KeyType>,
    pub is_ca: bool,
    /// Digest of the public key the certificate must certify (CSRs).
    pub public_key: Option<String>,
}

impl Spec {
    /// One line for plans: `CN=node-1, O=cairn; DNS node-1; IP 10.1.1.1; usage server,client; rsa2048`.
    pub fn summary(&self) -> String {
        let mut parts = vec![match &self.o {
            Some(o) => format!("CN={}, O={o}", self.cn),
            None => format!("CN={}", self.cn),
        }];
        if !self.dns.is_empty() {
            parts.push(format!("DNS {}", self.dns.join(" ")));
        }
        if !self.ips.is_empty() {
            let ips: Vec<String> = self.ips.iter().map(|ip| ip.to_string()).collect();
            parts.push(format!("IP {}", ips.join(" ")));
        }
        if !self.usage.is_empty() {
            let u: Vec<&str> = self.usage.iter().map(|u| u.as_str()).collect();
            parts.push(format!("usage {}", u.join(",")));
        }
        if self.is_ca {
            parts.push("CA".into());
        }
        if let Some(k) = self.key {
            parts.push(k.as_str().into());
        }
        parts.join("; ")
    }
}

/// Parse IP SANs, naming the field and value of a bad one.
pub fn parse_ips(field: &str, ips: &[String]) -> Result<Vec<IpAddr>, StepError> {
    let mut out: Vec<IpAddr> = Vec::new();
    for s in ips {
        let ip: IpAddr = s
            .trim()
            .parse()
            .map_err(|_| StepError::invalid(field, format!("`{s}` is not an IP address")))?;
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// Check DNS SANs (RFC 1123 labels, an optional leading `*.`), naming a bad one.
pub fn check_dns(field: &str, names: &[String]) -> Result<Vec<String>, StepError> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let bare = name.strip_prefix("*.").unwrap_or(name);
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        };
        let ok = !bare.is_empty()
            && name.len() <= 253
            && bare.split('.').all(label_ok)
            && bare.parse::<IpAddr>().is_err();
        if !ok {
            let hint = if name.parse::<IpAddr>().is_ok() {
                " (an IP address: put it in `ips`)"
            } else {
                ""
            };
            return Err(StepError::invalid(
                field,
                format!("`{name}` is not a valid DNS name{hint}"),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if !out.contains(&lower) {
            out.push(lower);
        }
    }
    Ok(out)
}

/// Check a validity in days.
pub fn check_days(field: &str, days: u32) -> Result<(), StepError> {
    if days == 0 || days > 36500 {
        return Err(StepError::invalid(
            field,
            format!("{days} is not between 1 and 36500"),
        ));
    }
    Ok(())
}

/// Check that a renewal window is shorter than the validity, or every run
/// would renew the certificate it just made.
pub fn check_renew(days: u32, renew_before_days: u32) -> Result<(), StepError> {
    if renew_before_days >= days {
        return Err(StepError::invalid(
            "renew_before_days",
            format!(
                "{renew_before_days} is not less than `days` ({days}): the certificate would be renewed on every run"
            ),
        ));
    }
    Ok(())
}

/// The private key file next to a certificate, as observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyFact {
    /// cairn does not keep this certificate's key (signed from a CSR).
    NotKept,
    Absent,
    /// Belongs to the certificate; `mode` is its permission bits.
    Matches {
        mode: u32,
    },
    /// Does not belong to the certificate (or cannot be read as a key).
    Mismatch,
}

/// Who signed the certificate on disk, as observed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerFact {
    /// A CA: whether its self-signature verifies.
    SelfSigned { verified: bool },
    /// Whether the workspace CA `name` (fingerprint `ca`) signed it.
    Ca {
        name: String,
        ca: String,
        verified: bool,
    },
    /// The CA `name` does not exist yet (it is created earlier in the same plan).
    CaAbsent { name: String },
}

/// Everything the decision rests on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Facts {
    /// The certificate on disk, if any.
    pub cert: Option<CertInfo>,
    /// Why the file there is not a certificate, if it is not.
    pub unreadable: Option<String>,
    pub key: KeyFact,
    pub issuer: IssuerFact,
}

/// What to do about a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is none: make it.
    Create,
    /// It differs: make it anew; each string says one difference.
    Reissue(Vec<String>),
    /// It is as wanted; the reason says until when.
    Keep(String),
}

fn set_diff(out: &mut Vec<String>, what: &str, have: &BTreeSet<String>, want: &BTreeSet<String>) {
    for w in want.difference(have) {
        out.push(format!("{what} {w} missing"));
    }
    for h in have.difference(want) {
        out.push(format!("{what} {h} not wanted"));
    }
}

fn day(t: OffsetDateTime) -> String {
    format!("{}", t.date())
}

/// Decide from facts. `key_file` is the key's path as shown to the operator.
pub fn decide(
    spec: &Spec,
    facts: &Facts,
    key_file: &str,
    now: OffsetDateTime,
    renew_before_days: u32,
) -> Decision {
    let Some(have) = &facts.cert else {
        return match &facts.unreadable {
            Some(e) => Decision::Reissue(vec![format!("the file there is unreadable: {e}")]),
            None => Decision::Create,
        };
    };
    let mut why = Vec::new();
    if let IssuerFact::CaAbsent { name } = &facts.issuer {
        why.push(format!("its CA {name} does not exist yet"));
    }
    if have.cn != spec.cn {
        why.push(format!("CN is `{}`, wanted `{}`", have.cn, spec.cn));
    }
    let want_o = spec.o.clone().unwrap_or_default();
    if have.o != want_o {
        why.push(match (have.o.is_empty(), want_o.is_empty()) {
            (true, _) => format!("O missing, wanted `{want_o}`"),
            (_, true) => format!("O is `{}`, wanted none", have.o),
            _ => format!("O is `{}`, wanted `{want_o}`", have.o),
        });
    }
    if have.is_ca != spec.is_ca {
        why.push(if spec.is_ca {
            "not a CA certificate".to_string()
        } else {
            "is a CA certificate, wanted a leaf".to_string()
        });
    }
    let lower = |v: &[String]| {
        v.iter()
            .map(|s| s.to_ascii_lowercase())
            .collect::<BTreeSet<_>>()
    };
    set_diff(&mut why, "SAN DNS", &lower(&have.dns), &lower(&spec.dns));
    let have_ips: BTreeSet<String> = have
        .ips
        .iter()
        .map(|s| {
            s.parse::<IpAddr>()
                .map(|ip| ip.to_string())
                .unwrap_or_else(|_| s.clone())
        })
        .collect();
    let want_ips: BTreeSet<String> = spec.ips.iter().map(|ip| ip.to_string()).collect();
    set_diff(&mut why, "SAN IP", &have_ips, &want_ips);
    let want_usage: BTreeSet<String> = spec.usage.iter().map(|u| u.as_str().to_string()).collect();
    set_diff(
        &mut why,
        "usage",
        &have.usages.iter().cloned().collect(),
        &want_usage,
    );
    let want_ku: BTreeSet<String> = spec
        .key_usage
        .iter()
        .map(|k| k.as_str().to_string())
        .collect();
    set_diff(
        &mut why,
        "key usage",
        &have.key_usage.iter().cloned().collect(),
        &want_ku,
    );
    if let Some(key) = spec.key {
        if have.key != key.as_str() {
            why.push(format!("key is {}, wanted {}", have.key, key.as_str()));
        }
    }
    if let Some(pk) = &spec.public_key {
        if &have.public_key != pk {
            why.push("certifies another key than the CSR's".into());
        }
    }
    match &facts.key {
        KeyFact::NotKept => {}
        KeyFact::Absent => why.push(format!("key {key_file} missing")),
        KeyFact::Mismatch => why.push(format!("key {key_file} does not belong to the certificate")),
        KeyFact::Matches { mode } if mode & 0o077 != 0 => why.push(format!(
            "key {key_file} is readable by others (mode {mode:04o}): a new key replaces it"
        )),
        KeyFact::Matches { .. } => {}
    }
    match &facts.issuer {
        IssuerFact::SelfSigned { verified: false } => {
            why.push("its self-signature does not verify".into())
        }
        IssuerFact::Ca {
            name,
            verified: false,
            ..
        } => why.push(format!("not signed by the current {name} certificate")),
        _ => {}
    }
    match have.not_after_time() {
        None => why.push(format!("expiry `{}` unreadable", have.not_after)),
        Some(t) if t <= now => why.push(format!("expired on {}", day(t))),
        Some(t) if t - now < Duration::days(renew_before_days.into()) => why.push(format!(
            "expires on {} (within {renew_before_days} days)",
            day(t)
        )),
        Some(_) => {}
    }
    if why.is_empty() {
        let until = have.not_after_time().map(day).unwrap_or_default();
        Decision::Keep(format!("valid until {until}, matches spec"))
    } else {
        Decision::Reissue(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-10 12:00 UTC);

    fn spec() -> Spec {
        Spec {
            cn: "node-1".into(),
            o: Some("cairn".into()),
            dns: vec!["node-1".into()],
            ips: vec!["10.1.1.1".parse().unwrap(), "127.0.0.1".parse().unwrap()],
            usage: vec![Usage::Server, Usage::Client],
            key_usage: vec![KeyUse::DigitalSignature, KeyUse::KeyEncipherment],
            key: Some(KeyType::Rsa2048),
            is_ca: false,
            public_key: None,
        }
    }

    fn info() -> CertInfo {
        CertInfo {
            subject: "CN=node-1, O=cairn".into(),
            cn: "node-1".into(),
            o: "cairn".into(),
            issuer: "CN=etcd-ca".into(),
            dns: vec!["node-1".into()],
            ips: vec!["127.0.0.1".into(), "10.1.1.1".into()],
            not_before: "2026-01-01T00:00:00Z".into(),
            not_after: "2028-01-01T00:00:00Z".into(),
            serial: "40aa".into(),
            usages: vec!["server".into(), "client".into()],
            key_usage: vec!["digital_signature".into(), "key_encipherment".into()],
            fingerprint: "AA:BB".into(),
            is_ca: false,
            key: "rsa2048".into(),
            public_key: "pk".into(),
        }
    }

    fn facts(cert: Option<CertInfo>) -> Facts {
        Facts {
            cert,
            unreadable: None,
            key: KeyFact::Matches { mode: 0o600 },
            issuer: IssuerFact::Ca {
                name: "etcd-ca".into(),
                ca: "CC:DD".into(),
                verified: true,
            },
        }
    }

    fn reissue(reasons: &[&str]) -> Decision {
        Decision::Reissue(reasons.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn facts_in_actions_out() {
        let with = |f: &dyn Fn(&mut Facts)| {
            let mut x = facts(Some(info()));
            f(&mut x);
            x
        };
        let cases: Vec<(&str, Facts, Decision)> = vec![
            ("absent", facts(None), Decision::Create),
            (
                "valid",
                facts(Some(info())),
                Decision::Keep("valid until 2028-01-01, matches spec".into()),
            ),
            (
                "missing SAN",
                with(&|f| f.cert.as_mut().unwrap().ips.retain(|ip| ip != "10.1.1.1")),
                reissue(&["SAN IP 10.1.1.1 missing"]),
            ),
            (
                "extra SAN and other CN",
                with(&|f| {
                    let c = f.cert.as_mut().unwrap();
                    c.dns.push("old-name".into());
                    c.cn = "node-9".into();
                }),
                reissue(&[
                    "CN is `node-9`, wanted `node-1`",
                    "SAN DNS old-name not wanted",
                ]),
            ),
            (
                "expired",
                with(&|f| f.cert.as_mut().unwrap().not_after = "2026-01-01T00:00:00Z".into()),
                reissue(&["expired on 2026-01-01"]),
            ),
            (
                "expiring soon",
                with(&|f| f.cert.as_mut().unwrap().not_after = "2026-02-01T00:00:00Z".into()),
                reissue(&["expires on 2026-02-01 (within 30 days)"]),
            ),
            (
                "usage and key type",
                with(&|f| {
                    let c = f.cert.as_mut().unwrap();
                    c.usages = vec!["server".into()];
                    c.key = "p256".into();
                }),
                reissue(&["usage client missing", "key is p256, wanted rsa2048"]),
            ),
            (
                "other CA",
                with(&|f| {
                    f.issuer = IssuerFact::Ca {
                        name: "etcd-ca".into(),
                        ca: "EE:FF".into(),
                        verified: false,
                    }
                }),
                reissue(&["not signed by the current etcd-ca certificate"]),
            ),
            (
                "CA not made yet",
                with(&|f| {
                    f.issuer = IssuerFact::CaAbsent {
                        name: "etcd-ca".into(),
                    }
                }),
                reissue(&["its CA etcd-ca does not exist yet"]),
            ),
            (
                "key missing",
                with(&|f| f.key = KeyFact::Absent),
                reissue(&["key pki/node-1.key missing"]),
            ),
            (
                "key exposed",
                with(&|f| f.key = KeyFact::Matches { mode: 0o644 }),
                reissue(&[
                    "key pki/node-1.key is readable by others (mode 0644): a new key replaces it",
                ]),
            ),
            (
                "key of another cert",
                with(&|f| f.key = KeyFact::Mismatch),
                reissue(&["key pki/node-1.key does not belong to the certificate"]),
            ),
            (
                "O dropped",
                with(&|f| f.cert.as_mut().unwrap().o = String::new()),
                reissue(&["O missing, wanted `cairn`"]),
            ),
        ];
        for (name, facts, want) in cases {
            let got = decide(&spec(), &facts, "pki/node-1.key", NOW, 30);
            assert_eq!(got, want, "case `{name}`");
        }
    }

    #[test]
    fn a_renewal_window_must_be_shorter_than_the_validity() {
        check_renew(90, 30).unwrap();
        assert_eq!(
            check_renew(30, 30).unwrap_err().to_string(),
            "invalid `renew_before_days`: 30 is not less than `days` (30): the certificate would be renewed on every run"
        );
    }

    #[test]
    fn renew_window_is_configurable() {
        let mut f = facts(Some(info()));
        f.cert.as_mut().unwrap().not_after = "2026-03-01T00:00:00Z".into();
        assert!(matches!(
            decide(&spec(), &f, "k", NOW, 30),
            Decision::Keep(_)
        ));
        assert_eq!(
            decide(&spec(), &f, "k", NOW, 60),
            reissue(&["expires on 2026-03-01 (within 60 days)"])
        );
    }

    #[test]
    fn sans_are_validated_naming_value_and_field() {
        assert_eq!(
            parse_ips("ips", &["10.0.0.1".into(), "10.0.0.300".into()])
                .unwrap_err()
                .to_string(),
            "invalid `ips`: `10.0.0.300` is not an IP address"
        );
        assert_eq!(
            check_dns("dns", &["node_1".into()])
                .unwrap_err()
                .to_string(),
            "invalid `dns`: `node_1` is not a valid DNS name"
        );
        assert_eq!(
            check_dns("dns", &["10.0.0.1".into()])
                .unwrap_err()
                .to_string(),
            "invalid `dns`: `10.0.0.1` is not a valid DNS name (an IP address: put it in `ips`)"
        );
        assert_eq!(
            check_dns(
                "dns",
                &[
                    "Node-1.Example.com".into(),
                    "*.etcd.local".into(),
                    "localhost".into()
                ]
            )
            .unwrap(),
            vec!["node-1.example.com", "*.etcd.local", "localhost"]
        );
        assert_eq!(
            parse_ips("ips", &["::1".into(), "::1".into()]).unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
    }
}
