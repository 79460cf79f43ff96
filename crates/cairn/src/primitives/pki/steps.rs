//! The pki steps: `gen_ca`, `gen_cert`, `sign_csr`.
//!
//! Each reads what is on disk (certificate, key, the CA), decides with
//! [`decide`], and makes keys in `spawn_blocking` when applied.

use super::cert::{self, Cert, Parsed};
use super::issue::{self, Issued};
use super::spec::{
    check_days, check_dns, check_renew, decide, parse_ips, Decision, Facts, IssuerFact, KeyFact,
    KeyType, KeyUse, Spec, Usage,
};
use super::store::{check_name, Store};
use crate::action::Action;
use crate::error::StepError;
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use crate::unknown;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

fn default_renew() -> u32 {
    30
}

/// The CA that signs: a `Cert` handle from `gen_ca`, or a CA's name in the workspace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CaRef {
    Name(String),
    Cert(Box<Cert>),
}

impl CaRef {
    /// The CA's workspace name.
    pub fn name(&self) -> &str {
        match self {
            CaRef::Name(n) => n,
            CaRef::Cert(c) => &c.name,
        }
    }
}

/// `gen_ca(#{name, cn, o?, key?, days, renew_before_days?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenCa {
    pub name: String,
    pub cn: String,
    #[serde(default)]
    pub o: Option<String>,
    #[serde(default)]
    pub key: KeyType,
    pub days: u32,
    #[serde(default = "default_renew")]
    pub renew_before_days: u32,
    /// The workspace pki folder, for plans without facts (set by `register`).
    #[serde(skip)]
    pub pki_dir: Option<PathBuf>,
}

/// `gen_cert(#{name, ca, cn, o?, dns?, ips?, usage, key_usage?, key?, days, renew_before_days?})`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenCert {
    pub name: String,
    pub ca: CaRef,
    pub cn: String,
    #[serde(default)]
    pub o: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    pub usage: Vec<Usage>,
    #[serde(default)]
    pub key_usage: Option<Vec<KeyUse>>,
    #[serde(default)]
    pub key: KeyType,
    pub days: u32,
    #[serde(default = "default_renew")]
    pub renew_before_days: u32,
    #[serde(skip)]
    pub pki_dir: Option<PathBuf>,
}

/// `sign_csr(#{name, ca, csr | public_key, days, usage, key_usage?, cn?, o?, dns?, ips?, override_sans?, renew_before_days?})`
///
/// SANs come from the CSR. Given `dns`/`ips` are requirements: the CSR must
/// ask for exactly those; with `override_sans: true` they replace the CSR's.
///
/// With `public_key` (a PEM `PUBLIC KEY`, e.g. printed by `openssl pkey
/// -pubout` from a member's own key file) instead of `csr`, the certificate
/// is for that key: `cn` is required, `o`, `dns` and `ips` are the subject and
/// SANs as given. There is no proof of possession, so only a key read from
/// where it is used belongs here; it renews a certificate without changing
/// its key, the one replacement a server that re-reads its cert and key files
/// per handshake cannot observe half-done.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignCsr {
    pub name: String,
    pub ca: CaRef,
    #[serde(default)]
    pub csr: Option<String>,
    #[serde(default)]
    pub public_key: Option<String>,
    #[serde(default)]
    pub o: Option<String>,
    pub days: u32,
    pub usage: Vec<Usage>,
    #[serde(default)]
    pub key_usage: Option<Vec<KeyUse>>,
    #[serde(default)]
    pub cn: Option<String>,
    #[serde(default)]
    pub dns: Option<Vec<String>>,
    #[serde(default)]
    pub ips: Option<Vec<String>>,
    #[serde(default)]
    pub override_sans: bool,
    #[serde(default = "default_renew")]
    pub renew_before_days: u32,
    #[serde(skip)]
    pub pki_dir: Option<PathBuf>,
}

/// A certificate read from the workspace.
struct OnDisk {
    pem: String,
    parsed: Parsed,
}

fn read(store: &Store, name: &str) -> Result<Option<Result<OnDisk, String>>, StepError> {
    Ok(store
        .read_cert(name)?
        .map(|pem| cert::parse_pem(&pem).map(|parsed| OnDisk { pem, parsed })))
}

fn read_ca(store: &Store, name: &str) -> Result<Option<OnDisk>, StepError> {
    let path = store.cert_path(name);
    match read(store, name)? {
        None => Ok(None),
        Some(Err(e)) => Err(StepError::invalid(
            "ca",
            format!("CA `{name}`: {} is unreadable: {e}", path.display()),
        )),
        Some(Ok(ca)) if !ca.parsed.info.is_ca => Err(StepError::invalid(
            "ca",
            format!("`{name}` ({}) is not a CA certificate", path.display()),
        )),
        Some(Ok(ca)) => Ok(Some(ca)),
    }
}

/// The CA's certificate and key, for signing (apply).
fn load_ca(store: &Store, name: &str) -> Result<(OnDisk, String), StepError> {
    let ca = read_ca(store, name)?.ok_or_else(|| {
        StepError::invalid(
            "ca",
            format!(
                "CA `{name}` not found: {} does not exist (make it with gen_ca first)",
                store.cert_path(name).display()
            ),
        )
    })?;
    let key = store.read_key(name)?.ok_or_else(|| {
        StepError::invalid(
            "ca",
            format!(
                "CA `{name}` has no private key at {}",
                store.key_path(name).display()
            ),
        )
    })?;
    Ok((ca, key.pem))
}

/// How one certificate is decided, shared by the three steps.
struct Plan<'a> {
    kind: &'static str,
    name: &'a str,
    spec: Spec,
    /// The signing CA's name (`None`: self-signed).
    ca: Option<&'a str>,
    /// Whether cairn keeps the private key.
    keeps_key: bool,
    /// Where the key to certify comes from when cairn does not keep it.
    key_from: &'static str,
    days: u32,
    renew_before_days: u32,
}

impl Plan<'_> {
    fn what(&self) -> String {
        let n = self.name;
        match (self.spec.is_ca, self.keeps_key) {
            (true, _) => format!("CA certificate {n} (pki/{n}.crt, key pki/{n}.key)"),
            (false, true) => format!("certificate {n} (pki/{n}.crt, key pki/{n}.key)"),
            (false, false) => format!("certificate {n} {} (pki/{n}.crt)", self.key_from),
        }
    }

    fn detail(&self) -> String {
        let by = match self.ca {
            Some(ca) => format!("signed by {ca}"),
            None => "self-signed".into(),
        };
        format!("{}; {} days; {by}", self.spec.summary(), self.days)
    }

    fn key_path(&self, store: &Store) -> String {
        if self.keeps_key {
            store.key_path(self.name).display().to_string()
        } else {
            String::new()
        }
    }

    /// The output before the certificate exists: content-derived fields are placeholders.
    fn predicted(&self, store: &Store, ca_pem: String, issuer: String) -> Cert {
        let p = |field: &str| unknown::placeholder(self.kind, &format!("{}.{field}", self.name));
        Cert {
            name: self.name.into(),
            cn: self.spec.cn.clone(),
            cert_path: store.cert_path(self.name).display().to_string(),
            key_path: self.key_path(store),
            pem: p("pem"),
            ca_pem,
            ca: self.ca.unwrap_or_default().into(),
            issuer,
            not_after: p("not_after"),
            serial: p("serial"),
            fingerprint: p("fingerprint"),
            dns: self.spec.dns.clone(),
            ips: self.spec.ips.iter().map(|ip| ip.to_string()).collect(),
            usage: self
                .spec
                .usage
                .iter()
                .map(|u| u.as_str().to_string())
                .collect(),
            is_ca: self.spec.is_ca,
        }
    }

    fn output(&self, store: &Store, pem: &str, parsed: &Parsed, ca_pem: &str) -> Cert {
        Cert::from_info(
            self.name,
            &parsed.info,
            pem,
            store.cert_path(self.name).display().to_string(),
            self.key_path(store),
            self.ca.unwrap_or_default(),
            ca_pem,
        )
    }

    /// Observe and decide.
    fn prepare(&self, store: &Store) -> Result<Prepared<Cert, ()>, StepError> {
        let ca = match self.ca {
            Some(name) => read_ca(store, name)?,
            None => None,
        };
        let existing = read(store, self.name)?;
        let (cert, unreadable) = match &existing {
            None => (None, None),
            Some(Ok(c)) => (Some(c), None),
            Some(Err(e)) => (None, Some(e.clone())),
        };
        let key = match (cert, self.keeps_key) {
            (_, false) => KeyFact::NotKept,
            (None, true) => KeyFact::Absent,
            (Some(c), true) => match store.read_key(self.name)? {
                None => KeyFact::Absent,
                Some(k) => match rcgen::KeyPair::from_pem(&k.pem) {
                    Ok(kp)
                        if cert::public_key_digest(kp.public_key_raw())
                            == c.parsed.info.public_key =>
                    {
                        KeyFact::Matches { mode: k.mode }
                    }
                    _ => KeyFact::Mismatch,
                },
            },
        };
        let issuer = match (self.ca, &ca) {
            (None, _) => IssuerFact::SelfSigned {
                verified: cert.is_some_and(|c| cert::signed_by(&c.parsed.der, &c.parsed.der)),
            },
            (Some(name), None) => IssuerFact::CaAbsent { name: name.into() },
            (Some(name), Some(ca)) => IssuerFact::Ca {
                name: name.into(),
                ca: ca.parsed.info.fingerprint.clone(),
                verified: cert.is_some_and(|c| cert::signed_by(&c.parsed.der, &ca.parsed.der)),
            },
        };
        let facts = Facts {
            cert: cert.map(|c| c.parsed.info.clone()),
            unreadable,
            key,
            issuer,
        };
        let digest = fingerprint(&(&facts, &self.spec));
        let key_file = format!("pki/{}.key", self.name);
        let ca_pem = ca.as_ref().map(|c| c.pem.clone()).unwrap_or_default();
        let decision = decide(
            &self.spec,
            &facts,
            &key_file,
            OffsetDateTime::now_utc(),
            self.renew_before_days,
        );
        let (ca_pem_predicted, issuer) = match (&ca, self.ca) {
            (Some(ca), _) => (ca.pem.clone(), ca.parsed.info.subject.clone()),
            (None, Some(name)) => (
                unknown::placeholder("gen_ca", &format!("{name}.pem")),
                unknown::placeholder("gen_ca", &format!("{name}.subject")),
            ),
            (None, None) => (String::new(), self.self_subject()),
        };
        Ok(match decision {
            Decision::Keep(reason) => {
                let Some(c) = cert else {
                    return Err(StepError::Other(
                        "kept a certificate that is not there".into(),
                    ));
                };
                Prepared::done(
                    vec![Action::noop("local", self.what(), reason)],
                    digest,
                    self.output(store, &c.pem, &c.parsed, &ca_pem),
                )
            }
            Decision::Create => {
                let mut detail = self.detail();
                if let IssuerFact::CaAbsent { name } = &facts.issuer {
                    detail.push_str(&format!(" (CA {name} is made first)"));
                }
                Prepared::todo(
                    vec![Action::create("local", self.what()).because(detail)],
                    digest,
                    self.predicted(store, ca_pem_predicted, issuer),
                    (),
                )
            }
            Decision::Reissue(why) => Prepared::todo(
                vec![Action::change("local", self.what()).because(why.join("; "))],
                digest,
                self.predicted(store, ca_pem_predicted, issuer),
                (),
            ),
        })
    }

    /// What the step would do to an empty workspace.
    fn intent(&self, store: &Store, ca: Option<&CaRef>) -> Prepared<Cert, ()> {
        let (ca_pem, issuer) = match ca {
            Some(CaRef::Cert(c)) => (c.pem.clone(), c.cn_subject()),
            Some(CaRef::Name(name)) => (
                unknown::placeholder("gen_ca", &format!("{name}.pem")),
                unknown::placeholder("gen_ca", &format!("{name}.subject")),
            ),
            None => (String::new(), self.self_subject()),
        };
        Prepared::todo(
            vec![Action::create("local", self.what()).because(self.detail())],
            String::new(),
            self.predicted(store, ca_pem, issuer),
            (),
        )
    }

    fn self_subject(&self) -> String {
        match &self.spec.o {
            Some(o) => format!("CN={}, O={o}", self.spec.cn),
            None => format!("CN={}", self.spec.cn),
        }
    }

    /// Write what was issued and hand back the handle.
    fn finish(&self, store: &Store, issued: Issued, ca_pem: &str) -> Result<Cert, StepError> {
        if let Some(key) = &issued.key_pem {
            store.write_key(self.name, key)?;
        }
        store.write_cert(self.name, &issued.cert_pem)?;
        let parsed = cert::parse_pem(&issued.cert_pem)
            .map_err(|e| StepError::Other(format!("reading back the new certificate: {e}")))?;
        Ok(self.output(store, &issued.cert_pem, &parsed, ca_pem))
    }
}

impl Cert {
    /// The subject as `CN=.., O=..`, from a (possibly predicted) CA handle.
    fn cn_subject(&self) -> String {
        if self.is_unknown() {
            return unknown::placeholder("gen_ca", &format!("{}.subject", self.name));
        }
        cert::parse_pem(&self.pem)
            .map(|p| p.info.subject)
            .unwrap_or_else(|_| format!("CN={}", self.cn))
    }
}

fn store_for(dir: &Option<PathBuf>) -> Store {
    Store::new(dir.clone().unwrap_or_else(|| PathBuf::from("pki")))
}

/// Run CPU-heavy issuing off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StepError> + Send + 'static,
) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StepError::Other(format!("key generation task failed: {e}")))?
}

impl GenCa {
    /// Plans without facts place files in `pki_dir` (the workspace's).
    pub fn in_dir(mut self, pki_dir: &Path) -> Self {
        self.pki_dir = Some(pki_dir.to_path_buf());
        self
    }

    fn plan(&self) -> Plan<'_> {
        Plan {
            kind: "gen_ca",
            name: &self.name,
            spec: Spec {
                cn: self.cn.clone(),
                o: self.o.clone(),
                dns: vec![],
                ips: vec![],
                usage: vec![],
                key_usage: KeyUse::defaults(true, self.key.as_str()),
                key: Some(self.key),
                is_ca: true,
                public_key: None,
            },
            ca: None,
            keeps_key: true,
            key_from: "",
            days: self.days,
            renew_before_days: self.renew_before_days,
        }
    }
}

impl Step for GenCa {
    type Output = Cert;
    type Work = ();

    fn kind(&self) -> &'static str {
        "gen_ca"
    }
    fn validate(&self) -> Result<(), StepError> {
        check_name("name", &self.name)?;
        check_days("days", self.days)?;
        check_renew(self.days, self.renew_before_days)
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<Cert, ()>, StepError> {
        this.plan().prepare(&Store::new(ctx.workspace.pki_dir()))
    }
    fn intent(this: &Valid<Self>) -> Prepared<Cert, ()> {
        this.plan().intent(&store_for(&this.pki_dir), None)
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Cert, StepError> {
        let store = Store::new(ctx.workspace.pki_dir());
        let this = (**this).clone();
        blocking(move || {
            let plan = this.plan();
            let issued = issue::self_signed(&plan.spec, this.key, this.days)?;
            plan.finish(&store, issued, "")
        })
        .await
    }
}

impl GenCert {
    /// Plans without facts place files in `pki_dir` (the workspace's).
    pub fn in_dir(mut self, pki_dir: &Path) -> Self {
        self.pki_dir = Some(pki_dir.to_path_buf());
        self
    }

    fn spec(&self) -> Result<Spec, StepError> {
        Ok(Spec {
            cn: self.cn.clone(),
            o: self.o.clone(),
            dns: check_dns("dns", &self.dns)?,
            ips: parse_ips("ips", &self.ips)?,
            usage: dedup(&self.usage),
            key_usage: match &self.key_usage {
                Some(k) => dedup(k),
                None => KeyUse::defaults(false, self.key.as_str()),
            },
            key: Some(self.key),
            is_ca: false,
            public_key: None,
        })
    }

    fn plan(&self, spec: Spec) -> Plan<'_> {
        Plan {
            kind: "gen_cert",
            name: &self.name,
            spec,
            ca: Some(self.ca.name()),
            keeps_key: true,
            key_from: "",
            days: self.days,
            renew_before_days: self.renew_before_days,
        }
    }

    /// The checks of `validate` that need the spec, and the spec.
    fn checked_spec(&self) -> Result<Spec, StepError> {
        check_name("name", &self.name)?;
        check_name("ca", self.ca.name())?;
        check_days("days", self.days)?;
        check_renew(self.days, self.renew_before_days)?;
        self.spec()
    }
}

fn dedup<T: Copy + PartialEq>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for i in items {
        if !out.contains(i) {
            out.push(*i);
        }
    }
    out
}

/// A workspace name, checked when known (a placeholder is checked once known).
fn check_known_name(field: &str, name: &str) -> Result<(), StepError> {
    if unknown::is_unknown(name) {
        Ok(())
    } else {
        check_name(field, name)
    }
}

/// The values that are known now (placeholders are checked once known).
fn known_only(values: &[String]) -> Vec<String> {
    values
        .iter()
        .filter(|v| !unknown::is_unknown(v))
        .cloned()
        .collect()
}

/// Spec of a plan made without facts: argument errors show up when applied.
fn lenient_spec(spec: Result<Spec, StepError>, cn: &str, dns: &[String], ips: &[String]) -> Spec {
    spec.unwrap_or_else(|_| Spec {
        cn: cn.into(),
        o: None,
        dns: dns.to_vec(),
        ips: ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
        usage: vec![],
        key_usage: vec![],
        key: None,
        is_ca: false,
        public_key: None,
    })
}

impl Step for GenCert {
    type Output = Cert;
    type Work = ();

    fn kind(&self) -> &'static str {
        "gen_cert"
    }
    fn validate(&self) -> Result<(), StepError> {
        check_name("name", &self.name)?;
        check_days("days", self.days)?;
        check_renew(self.days, self.renew_before_days)?;
        check_known_name("ca", self.ca.name())?;
        parse_ips("ips", &known_only(&self.ips))?;
        check_dns("dns", &known_only(&self.dns))?;
        Ok(())
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<Cert, ()>, StepError> {
        let spec = this.checked_spec()?;
        this.plan(spec)
            .prepare(&Store::new(ctx.workspace.pki_dir()))
    }
    fn intent(this: &Valid<Self>) -> Prepared<Cert, ()> {
        let spec = lenient_spec(this.spec(), &this.cn, &this.dns, &this.ips);
        this.plan(spec)
            .intent(&store_for(&this.pki_dir), Some(&this.ca))
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Cert, StepError> {
        this.checked_spec()?;
        let store = Store::new(ctx.workspace.pki_dir());
        let this = (**this).clone();
        blocking(move || {
            let (ca, ca_key) = load_ca(&store, this.ca.name())?;
            let plan = this.plan(this.spec()?);
            let issued = issue::signed(&plan.spec, this.key, this.days, &ca.pem, &ca_key)?;
            plan.finish(&store, issued, &ca.pem)
        })
        .await
    }
}

/// What a CSR asks for.
struct CsrRequest {
    cn: String,
    o: Option<String>,
    dns: Vec<String>,
    ips: Vec<String>,
    key: String,
    public_key: String,
}

/// What a bare public key gives: its type and digest (subject and SANs come
/// from the runbook).
fn parse_public_key(pem: &str) -> Result<(String, String), StepError> {
    let bad = |m: String| StepError::invalid("public_key", m);
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| bad(format!("not PEM ({e})")))?;
    if block.label != "PUBLIC KEY" {
        return Err(bad(format!(
            "a PEM `{}`, not a `PUBLIC KEY` (e.g. `openssl pkey -in KEY -pubout`)",
            block.label
        )));
    }
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&block.contents)
        .map_err(|e| bad(format!("not a subject public key ({e})")))?;
    rcgen::SubjectPublicKeyInfo::from_pem(pem)
        .map_err(|e| bad(format!("a public key cairn cannot sign for: {e}")))?;
    let key = cert::key_type_of(&spki);
    if key.starts_with("other") || key == "unknown" {
        return Err(bad(format!("a {key} key: cairn signs RSA and EC keys")));
    }
    Ok((key, cert::public_key_digest(&spki.subject_public_key.data)))
}

fn parse_csr(pem: &str) -> Result<CsrRequest, StepError> {
    let bad = |m: String| StepError::invalid("csr", m);
    // rcgen checks the signature and refuses extensions it cannot honour
    rcgen::CertificateSigningRequestParams::from_pem(pem)
        .map_err(|e| bad(format!("not a valid certificate signing request: {e}")))?;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| bad(format!("not PEM ({e})")))?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| bad(format!("not a certificate signing request ({e})")))?;
    let info = &csr.certification_request_info;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    GeneralName::IPAddress(b) if cert::ip_of(b).is_some() => {
                        ips.extend(cert::ip_of(b).map(|ip| ip.to_string()));
                    }
                    other => {
                        return Err(bad(format!(
                            "asks for a subject alternative name cairn does not sign ({other})"
                        )))
                    }
                }
            }
        }
    }
    Ok(CsrRequest {
        cn: cert::first_attr(info.subject.iter_common_name()).unwrap_or_default(),
        o: cert::first_attr(info.subject.iter_organization()),
        dns,
        ips,
        key: cert::key_type_of(&info.subject_pki),
        public_key: cert::public_key_digest(&info.subject_pki.subject_public_key.data),
    })
}

/// SANs for a CSR: the CSR's, required to equal or replaced by the runbook's.
fn sans(
    field: &str,
    from_csr: Vec<String>,
    wanted: Option<Vec<String>>,
    override_sans: bool,
    same: impl Fn(&str, &str) -> bool,
) -> Result<Vec<String>, StepError> {
    let Some(wanted) = wanted else {
        return Ok(from_csr);
    };
    if override_sans {
        return Ok(wanted);
    }
    if let Some(extra) = from_csr.iter().find(|c| !wanted.iter().any(|w| same(c, w))) {
        return Err(StepError::invalid(
            field,
            format!("the CSR asks for {extra}, which is not in `{field}` (set `override_sans: true` to sign only `{field}`)"),
        ));
    }
    if let Some(missing) = wanted.iter().find(|w| !from_csr.iter().any(|c| same(c, w))) {
        return Err(StepError::invalid(
            field,
            format!("the CSR does not ask for {missing} (set `override_sans: true` to add it)"),
        ));
    }
    Ok(from_csr)
}

impl SignCsr {
    /// Plans without facts place files in `pki_dir` (the workspace's).
    pub fn in_dir(mut self, pki_dir: &Path) -> Self {
        self.pki_dir = Some(pki_dir.to_path_buf());
        self
    }

    /// Whether every value the request's spec is built from is known.
    fn request_known(&self) -> bool {
        let known = |v: &Option<String>| v.as_deref().is_none_or(|v| !unknown::is_unknown(v));
        let all_known =
            |v: &Option<Vec<String>>| v.iter().flatten().all(|v| !unknown::is_unknown(v));
        known(&self.csr)
            && known(&self.public_key)
            && known(&self.cn)
            && known(&self.o)
            && all_known(&self.dns)
            && all_known(&self.ips)
    }

    fn spec(&self) -> Result<Spec, StepError> {
        let req = match (&self.csr, &self.public_key) {
            (Some(csr), None) => {
                if self.o.is_some() {
                    return Err(StepError::invalid(
                        "o",
                        "the organisation comes from the CSR; `o` goes with `public_key`",
                    ));
                }
                parse_csr(csr)?
            }
            (None, Some(pem)) => {
                let (key, public_key) = parse_public_key(pem)?;
                let Some(cn) = self.cn.clone() else {
                    return Err(StepError::invalid(
                        "cn",
                        "required with `public_key` (a bare key has no subject)",
                    ));
                };
                CsrRequest {
                    cn,
                    o: self.o.clone(),
                    dns: self.dns.clone().unwrap_or_default(),
                    ips: self.ips.clone().unwrap_or_default(),
                    key,
                    public_key,
                }
            }
            (Some(_), Some(_)) => {
                return Err(StepError::invalid(
                    "public_key",
                    "give `csr` or `public_key`, not both",
                ))
            }
            (None, None) => {
                return Err(StepError::invalid(
                    "csr",
                    "missing: give `csr` (a PEM certificate request) or `public_key` (a PEM public key)",
                ))
            }
        };
        if let Some(cn) = &self.cn {
            if &req.cn != cn {
                return Err(StepError::invalid(
                    "cn",
                    format!("the CSR's CN is `{}`, wanted `{cn}`", req.cn),
                ));
            }
        }
        if let Some(ips) = &self.ips {
            parse_ips("ips", ips)?;
        }
        if let Some(dns) = &self.dns {
            check_dns("dns", dns)?;
        }
        let dns = sans(
            "dns",
            req.dns,
            self.dns.clone(),
            self.override_sans,
            |a, b| a.eq_ignore_ascii_case(b),
        )?;
        let ips = sans(
            "ips",
            req.ips,
            self.ips.clone(),
            self.override_sans,
            |a, b| a.parse::<std::net::IpAddr>().ok() == b.parse().ok(),
        )?;
        Ok(Spec {
            cn: req.cn,
            o: req.o,
            dns: check_dns("dns", &dns)?,
            ips: parse_ips("ips", &ips)?,
            usage: dedup(&self.usage),
            key_usage: match &self.key_usage {
                Some(k) => dedup(k),
                None => KeyUse::defaults(false, &req.key),
            },
            key: None,
            is_ca: false,
            public_key: Some(req.public_key),
        })
    }

    fn plan(&self, spec: Spec) -> Plan<'_> {
        Plan {
            kind: "sign_csr",
            name: &self.name,
            spec,
            ca: Some(self.ca.name()),
            keeps_key: false,
            key_from: if self.public_key.is_some() {
                "for a given public key"
            } else {
                "from CSR"
            },
            days: self.days,
            renew_before_days: self.renew_before_days,
        }
    }

    /// The checks of `validate` that need the spec, and the spec.
    fn checked_spec(&self) -> Result<Spec, StepError> {
        check_name("name", &self.name)?;
        check_name("ca", self.ca.name())?;
        check_days("days", self.days)?;
        check_renew(self.days, self.renew_before_days)?;
        self.spec()
    }
}

impl Step for SignCsr {
    type Output = Cert;
    type Work = ();

    fn kind(&self) -> &'static str {
        "sign_csr"
    }
    fn validate(&self) -> Result<(), StepError> {
        check_name("name", &self.name)?;
        check_days("days", self.days)?;
        check_renew(self.days, self.renew_before_days)?;
        check_known_name("ca", self.ca.name())?;
        parse_ips("ips", &known_only(self.ips.as_deref().unwrap_or_default()))?;
        check_dns("dns", &known_only(self.dns.as_deref().unwrap_or_default()))?;
        // The whole request (CSR or key, subject, SANs) once every value it
        // depends on is known; a plan whose CSR comes from a host checks it
        // when the run has read it.
        if self.request_known() {
            self.spec()?;
        }
        Ok(())
    }
    fn target(&self) -> String {
        "local".into()
    }
    async fn prepare(this: &Valid<Self>, ctx: &Ctx) -> Result<Prepared<Cert, ()>, StepError> {
        let spec = this.checked_spec()?;
        this.plan(spec)
            .prepare(&Store::new(ctx.workspace.pki_dir()))
    }
    fn intent(this: &Valid<Self>) -> Prepared<Cert, ()> {
        let empty = Vec::new();
        let spec = lenient_spec(
            this.spec(),
            this.cn.as_deref().unwrap_or_default(),
            this.dns.as_ref().unwrap_or(&empty),
            this.ips.as_ref().unwrap_or(&empty),
        );
        this.plan(spec)
            .intent(&store_for(&this.pki_dir), Some(&this.ca))
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Cert, StepError> {
        this.checked_spec()?;
        let store = Store::new(ctx.workspace.pki_dir());
        let this = (**this).clone();
        blocking(move || {
            let (ca, ca_key) = load_ca(&store, this.ca.name())?;
            let plan = this.plan(this.spec()?);
            let issued = match (&this.csr, &this.public_key) {
                (Some(csr), _) => issue::from_csr(&plan.spec, csr, this.days, &ca.pem, &ca_key)?,
                (None, Some(pem)) => {
                    issue::for_public_key(&plan.spec, pem, this.days, &ca.pem, &ca_key)?
                }
                (None, None) => unreachable!("spec() refuses a sign_csr without csr or public_key"),
            };
            plan.finish(&store, issued, &ca.pem)
        })
        .await
    }
}
