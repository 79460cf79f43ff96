//! `etcd_cert_audit(host)`: every certificate of an etcd member, on disk and
//! as served.
//!
//! A read-only step built on [`super::member`]: it finds the member's layout,
//! reads each certificate file it names (server, peer, trusted CAs, and the
//! client certificates the caller knows of) with the same non-following read,
//! and asks the member's advertised https client and peer URLs for the chain
//! they serve, with a TLS handshake made on the node itself (`openssl
//! s_client`, which ships with Debian's `ca-certificates`). Each certificate is
//! parsed by [`crate::primitives::pki`] and becomes a [`CertRow`]. Its plan
//! line is an `ok` no-op: it answers in plans as in runs.

use super::member::{read_text, EtcdMember, MemberArgs, MemberLayout};
use crate::action::Action;
use crate::clock::Timestamp;
use crate::cmd::Cmd;
use crate::error::StepError;
use crate::host::Host;
use crate::primitives::pki::{parse_pem, signed_by, Parsed};
use crate::step::{fingerprint, Ctx, Prepared, Step, Valid};
use serde::{Deserialize, Serialize};

crate::registration::documented! {
    /// Every certificate of the etcd member on `host` (read-only; it also
    /// answers in plans): an array of `EtcdCertRow`, one per certificate.
    ///
    /// Built on `etcd_member(host)`: the files it names — `server`
    /// (`cert_file`), `peer` (`peer_cert_file`), `ca` (each certificate of
    /// `trusted_ca_file`), `peer-ca` (of `peer_trusted_ca_file` when it is
    /// another file) — plus `client_certs: [paths on the host]`; and the chain
    /// each advertised https client URL (`server`) and peer URL (`peer`) serves,
    /// fetched with a TLS handshake from the node itself (`openssl s_client`).
    ///
    /// Getters: `host`, `member`, `cert` (role), `origin` (`file` | `served`),
    /// `source` (path or URL), `subject`, `sans` (`DNS:x`, `IP:y`), `issuer`,
    /// `serial` (hex), `not_after` (RFC 3339), `days_left` (whole days from now),
    /// `covers` (`yes`, `no: IP:10.1.1.2 missing`, or `-` when no URL applies),
    /// `key` (`p256`, `rsa2048`), `chain` (`ok` or why not: verified against the
    /// trusted CA file of its side), `differs` (a served certificate that is not
    /// the one in the file: replaced but not served yet). `to_map()`.
    ///
    /// Options: `unit`, `manifest` (as `etcd_member`), `client_certs`.
    ///
    /// ```rhai
    /// let rows = etcd_cert_audit(node, #{ client_certs: ["/etc/etcd/pki/healthcheck.crt"] });
    /// print(cert_audit_table(rows, 30, 7));
    /// ```
    pub(super) const DOC;
}

/// Options of `etcd_cert_audit`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditArgs {
    /// A systemd unit (as `etcd_member`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// A static-pod manifest path (as `etcd_member`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Client certificate files on the host to audit too.
    #[serde(default)]
    pub client_certs: Vec<String>,
}

/// `etcd_cert_audit(host, #{..})`.
#[derive(Clone, Debug, Serialize)]
pub struct EtcdCertAudit {
    pub host: Host,
    #[serde(flatten)]
    pub args: AuditArgs,
}

/// One certificate of a member, on disk or served.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdCertRow")]
pub struct CertRow {
    #[rhai_type(readonly)]
    pub host: String,
    /// The member's name.
    #[rhai_type(readonly)]
    pub member: String,
    /// `server`, `peer`, `ca`, `peer-ca` or `client`.
    #[rhai_type(readonly)]
    pub cert: String,
    /// `file` or `served`.
    #[rhai_type(readonly)]
    pub origin: String,
    /// The file's path or the URL that served it.
    #[rhai_type(readonly)]
    pub source: String,
    #[rhai_type(readonly)]
    pub subject: String,
    /// `DNS:name` and `IP:address`.
    #[rhai_type(skip)]
    pub sans: Vec<String>,
    #[rhai_type(readonly)]
    pub issuer: String,
    /// Hex.
    #[rhai_type(readonly)]
    pub serial: String,
    /// RFC 3339.
    #[rhai_type(readonly)]
    pub not_after: String,
    /// Whole days from the audit until `not_after` (negative when expired).
    #[rhai_type(readonly)]
    pub days_left: i64,
    /// `yes`, `no: SAN missing...`, or `-` (no URL to cover).
    #[rhai_type(readonly)]
    pub covers: String,
    /// `p256`, `rsa2048`, ...
    #[rhai_type(readonly)]
    pub key: String,
    /// `ok`, or why the certificate does not verify against the trusted CA.
    #[rhai_type(readonly)]
    pub chain: String,
    /// A served certificate that is not the one in its file.
    #[rhai_type(readonly)]
    pub differs: bool,
}

/// The certificates of a PEM text, each as its own PEM block.
pub fn pem_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(format!("{line}\n"));
        } else if let Some(c) = current.as_mut() {
            c.push_str(line);
            c.push('\n');
            if line == "-----END CERTIFICATE-----" {
                blocks.extend(current.take());
            }
        }
    }
    blocks
}

/// `host:port` of an https URL (None for http or anything else).
pub fn https_authority(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    Some(authority.to_string())
}

/// The host part of an `https://host:port` URL, without IPv6 brackets.
fn url_host(url: &str) -> Option<String> {
    let a = https_authority(url).or_else(|| {
        url.strip_prefix("http://")
            .map(|r| r.split('/').next().unwrap_or(r).to_string())
    })?;
    let host = match a.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6).to_string(),
        None => a.rsplit_once(':').map_or(a.clone(), |(h, _)| h.to_string()),
    };
    Some(host)
}

/// `yes` when the SANs name every URL's host, else the missing ones; `-`
/// when there are no URLs.
pub fn coverage(sans: &[String], urls: &[String]) -> String {
    if urls.is_empty() {
        return "-".into();
    }
    let mut missing: Vec<String> = Vec::new();
    for host in urls.iter().filter_map(|u| url_host(u)) {
        let san = if host.parse::<std::net::IpAddr>().is_ok() {
            format!("IP:{host}")
        } else {
            format!("DNS:{host}")
        };
        if !sans.contains(&san) && !missing.contains(&san) {
            missing.push(san);
        }
    }
    if missing.is_empty() {
        "yes".into()
    } else {
        format!("no: {} missing", missing.join(" "))
    }
}

/// Whether `leaf` verifies against one of `cas` (the parsed trusted-CA
/// file), and is within its validity at `now`.
fn chain_of(leaf: &Parsed, cas: &[Parsed], ca_file: &str, now: &Timestamp) -> String {
    if ca_file.is_empty() {
        return "no trusted CA file".into();
    }
    if cas.is_empty() {
        return format!("no certificate in {ca_file}");
    }
    if !cas.iter().any(|ca| signed_by(&leaf.der, &ca.der)) {
        return format!("not signed by {ca_file}");
    }
    let not_before = Timestamp::parse(&leaf.info.not_before).ok();
    let not_after = Timestamp::parse(&leaf.info.not_after).ok();
    match (not_before, not_after) {
        (Some(b), _) if b > *now => format!("not valid before {}", leaf.info.not_before),
        (_, Some(a)) if a < *now => format!("expired {}", leaf.info.not_after),
        _ => "ok".into(),
    }
}

/// What a row needs besides the certificate.
struct Place<'a> {
    cert: &'a str,
    origin: &'a str,
    source: &'a str,
    urls: &'a [String],
}

fn row(
    layout: &MemberLayout,
    place: &Place,
    parsed: &Parsed,
    cas: &[Parsed],
    ca_file: &str,
    now: &Timestamp,
) -> CertRow {
    let info = &parsed.info;
    let sans: Vec<String> = info
        .dns
        .iter()
        .map(|d| format!("DNS:{d}"))
        .chain(info.ips.iter().map(|i| format!("IP:{i}")))
        .collect();
    let days_left = Timestamp::parse(&info.not_after)
        .map(|t| now.days_until(&t))
        .unwrap_or(i64::MIN);
    let chain = if info.is_ca {
        if signed_by(&parsed.der, &parsed.der) {
            "ok (self-signed CA)".into()
        } else if cas.iter().any(|ca| signed_by(&parsed.der, &ca.der)) {
            "ok".into()
        } else {
            "CA not self-signed".into()
        }
    } else {
        chain_of(parsed, cas, ca_file, now)
    };
    CertRow {
        host: layout.host.clone(),
        member: layout.settings.name.clone(),
        cert: place.cert.into(),
        origin: place.origin.into(),
        source: place.source.into(),
        subject: info.subject.clone(),
        covers: coverage(&sans, place.urls),
        sans,
        issuer: info.issuer.clone(),
        serial: info.serial.clone(),
        not_after: info.not_after.clone(),
        days_left,
        key: info.key.clone(),
        chain,
        differs: false,
    }
}

impl EtcdCertAudit {
    fn action(&self) -> Action {
        Action::noop(&self.host.name, "audit etcd certificates", "read-only fact")
    }

    fn bad(&self, place: &str, message: impl Into<String>) -> StepError {
        StepError::Fact {
            host: self.host.name.clone(),
            place: place.into(),
            message: message.into(),
        }
    }

    /// Every certificate of a PEM file on the host, parsed.
    async fn read_certs(&self, ctx: &Ctx, path: &str) -> Result<Vec<Parsed>, StepError> {
        let text = read_text(ctx, &self.host, path)
            .await?
            .ok_or_else(|| self.bad(path, "missing"))?;
        let blocks = pem_blocks(&text);
        if blocks.is_empty() {
            return Err(self.bad(path, "holds no PEM certificate"));
        }
        blocks
            .iter()
            .map(|b| parse_pem(b).map_err(|e| self.bad(path, e)))
            .collect()
    }

    /// The chain `authority` (`host:port`) serves, asked from the node.
    async fn served(&self, ctx: &Ctx, url: &str, authority: &str) -> Result<Parsed, StepError> {
        let cmd = Cmd::new("timeout").args([
            "10",
            "openssl",
            "s_client",
            "-showcerts",
            "-connect",
            authority,
        ]);
        let out = ctx
            .ssh
            .exec(&self.host, &format!("{cmd} </dev/null 2>&1"), None)
            .await?;
        let blocks = pem_blocks(&out.stdout);
        let first = blocks.first().ok_or_else(|| {
            self.bad(
                url,
                format!(
                    "no certificate served (openssl s_client exit {}: {})",
                    out.code,
                    crate::ssh::tail(out.stdout.trim(), 300)
                ),
            )
        })?;
        parse_pem(first).map_err(|e| self.bad(url, format!("served certificate: {e}")))
    }

    /// Gather every certificate and describe it.
    pub async fn audit(&self, ctx: &Ctx) -> Result<Vec<CertRow>, StepError> {
        let member = EtcdMember {
            host: self.host.clone(),
            args: MemberArgs {
                unit: self.args.unit.clone(),
                manifest: self.args.manifest.clone(),
            },
        };
        let layout = member.discover(ctx).await?;
        let s = &layout.settings;
        let now = Timestamp::now();
        let mut rows = Vec::new();
        let none: Vec<String> = Vec::new();
        let sides = [
            ("server", "ca", &s.client_tls, &s.advertise_client_urls),
            ("peer", "peer-ca", &s.peer_tls, &s.advertise_peer_urls),
        ];
        let mut read_cas: Vec<String> = Vec::new();
        for (role, ca_role, tls, urls) in sides {
            let cas = if tls.trusted_ca_file.is_empty() {
                Vec::new()
            } else {
                self.read_certs(ctx, &tls.trusted_ca_file).await?
            };
            if !tls.cert_file.is_empty() {
                let file = self.read_certs(ctx, &tls.cert_file).await?;
                let place = Place {
                    cert: role,
                    origin: "file",
                    source: &tls.cert_file,
                    urls,
                };
                rows.push(row(
                    &layout,
                    &place,
                    &file[0],
                    &cas,
                    &tls.trusted_ca_file,
                    &now,
                ));
                for url in urls.iter() {
                    let Some(authority) = https_authority(url) else {
                        continue;
                    };
                    let served = self.served(ctx, url, &authority).await?;
                    let place = Place {
                        cert: role,
                        origin: "served",
                        source: url,
                        urls,
                    };
                    let mut r = row(&layout, &place, &served, &cas, &tls.trusted_ca_file, &now);
                    r.differs = served.der != file[0].der;
                    rows.push(r);
                }
            }
            if !tls.trusted_ca_file.is_empty() && !read_cas.contains(&tls.trusted_ca_file) {
                read_cas.push(tls.trusted_ca_file.clone());
                let ca_role = if role == "server" || read_cas.len() == 1 {
                    "ca"
                } else {
                    ca_role
                };
                for ca in &cas {
                    let place = Place {
                        cert: ca_role,
                        origin: "file",
                        source: &tls.trusted_ca_file,
                        urls: &none,
                    };
                    rows.push(row(&layout, &place, ca, &cas, &tls.trusted_ca_file, &now));
                }
            }
        }
        let cas = if s.client_tls.trusted_ca_file.is_empty() {
            Vec::new()
        } else {
            self.read_certs(ctx, &s.client_tls.trusted_ca_file).await?
        };
        for path in &self.args.client_certs {
            let file = self.read_certs(ctx, path).await?;
            let place = Place {
                cert: "client",
                origin: "file",
                source: path,
                urls: &none,
            };
            rows.push(row(
                &layout,
                &place,
                &file[0],
                &cas,
                &s.client_tls.trusted_ca_file,
                &now,
            ));
        }
        Ok(rows)
    }
}

impl Step for EtcdCertAudit {
    type Output = Vec<CertRow>;
    type Work = ();

    fn kind(&self) -> &'static str {
        "etcd_cert_audit"
    }
    fn target(&self) -> String {
        self.host.name.clone()
    }
    fn validate(&self) -> Result<(), StepError> {
        for p in &self.args.client_certs {
            if !crate::unknown::is_unknown(p) {
                crate::primitives::remote::put::check_path("client_certs", p)?;
            }
        }
        Ok(())
    }
    async fn prepare(
        this: &Valid<Self>,
        ctx: &Ctx,
    ) -> Result<Prepared<Vec<CertRow>, ()>, StepError> {
        let rows = this.audit(ctx).await?;
        let action = Action::noop(&this.host.name, "audit etcd certificates", summary(&rows));
        Ok(Prepared::done(vec![action], fingerprint(&rows), rows))
    }
    fn intent(this: &Valid<Self>) -> Prepared<Vec<CertRow>, ()> {
        Prepared::done(vec![this.action()], String::new(), Vec::new())
    }
    async fn apply(this: &Valid<Self>, ctx: &Ctx, _work: ()) -> Result<Vec<CertRow>, StepError> {
        // Never reached: prepare leaves no work.
        Ok(this.prepare(ctx).await?.predicted)
    }
}

/// The plan line's reason (also in `cairn plan --json`): how many
/// certificates, the one closest to expiry, and how many served ones differ
/// from their files.
pub fn summary(rows: &[CertRow]) -> String {
    let Some(soonest) = rows.iter().min_by_key(|r| r.days_left) else {
        return "read-only: no certificates (etcd without TLS)".into();
    };
    let differ = rows.iter().filter(|r| r.differs).count();
    format!(
        "read-only: {} certificates; fewest days left {} ({} {} {}){}",
        rows.len(),
        soonest.days_left,
        soonest.cert,
        soonest.origin,
        soonest.source,
        if differ > 0 {
            format!("; {differ} served not as in their files")
        } else {
            String::new()
        }
    )
}

/// `ok`, `WARN` or `FAIL` for a row and the thresholds.
pub fn status(row: &CertRow, warn_days: i64, fail_days: i64) -> &'static str {
    if row.days_left < fail_days {
        "FAIL"
    } else if row.days_left < warn_days {
        "WARN"
    } else {
        "ok"
    }
}

/// The rows as an aligned text table, one line per certificate.
pub fn table(rows: &[CertRow], warn_days: i64, fail_days: i64) -> String {
    let head = [
        "HOST",
        "CERT",
        "ORIGIN",
        "SOURCE",
        "SUBJECT",
        "SANS",
        "ISSUER",
        "SERIAL",
        "NOT_AFTER",
        "DAYS",
        "STATUS",
        "COVERS",
        "KEY",
        "CHAIN",
        "DIFFERS",
    ];
    let mut lines: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        lines.push(vec![
            r.host.clone(),
            r.cert.clone(),
            r.origin.clone(),
            r.source.clone(),
            r.subject.clone(),
            if r.sans.is_empty() {
                "-".into()
            } else {
                r.sans.join(",")
            },
            r.issuer.clone(),
            r.serial.clone(),
            r.not_after.clone(),
            r.days_left.to_string(),
            status(r, warn_days, fail_days).into(),
            r.covers.clone(),
            r.key.clone(),
            r.chain.clone(),
            if r.origin == "served" {
                if r.differs { "yes" } else { "no" }.into()
            } else {
                "-".into()
            },
        ]);
    }
    let widths: Vec<usize> = (0..head.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_names_missing_hosts() {
        let sans = vec!["DNS:node-1".to_string(), "IP:10.1.1.1".to_string()];
        assert_eq!(coverage(&sans, &[]), "-");
        assert_eq!(coverage(&sans, &["https://10.1.1.1:2379".into()]), "yes");
        assert_eq!(
            coverage(
                &sans,
                &[
                    "https://10.1.1.2:2379".into(),
                    "https://etcd.example:2379".into()
                ]
            ),
            "no: IP:10.1.1.2 DNS:etcd.example missing"
        );
        assert_eq!(
            coverage(&["IP:::1".to_string()], &["https://[::1]:2379".into()]),
            "yes"
        );
    }

    #[test]
    fn pem_blocks_split_a_chain_and_skip_other_text() {
        let text = "depth=0\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n \
                    junk\n-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        let b = pem_blocks(text);
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[1],
            "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(
            https_authority("https://10.1.1.1:2379"),
            Some("10.1.1.1:2379".into())
        );
        assert_eq!(https_authority("http://127.0.0.1:2379"), None);
    }

    #[test]
    fn table_aligns_columns_and_marks_status() {
        let row = |cert: &str, origin: &str, days: i64, differs: bool| CertRow {
            host: "n-1".into(),
            member: "n-1".into(),
            cert: cert.into(),
            origin: origin.into(),
            source: "/p".into(),
            subject: "CN=n-1".into(),
            sans: vec!["IP:10.0.0.1".into()],
            issuer: "CN=ca".into(),
            serial: "0a".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            days_left: days,
            covers: "yes".into(),
            key: "p256".into(),
            chain: "ok".into(),
            differs,
        };
        let rows = [
            row("server", "file", 4, false),
            row("peer", "served", 45, true),
            row("ca", "file", 3000, false),
        ];
        assert_eq!(
            table(&rows, 60, 30),
            "HOST  CERT    ORIGIN  SOURCE  SUBJECT  SANS         ISSUER  SERIAL  NOT_AFTER             DAYS  STATUS  COVERS  KEY   CHAIN  DIFFERS\n\
             n-1   server  file    /p      CN=n-1   IP:10.0.0.1  CN=ca   0a      2027-01-01T00:00:00Z  4     FAIL    yes     p256  ok     -\n\
             n-1   peer    served  /p      CN=n-1   IP:10.0.0.1  CN=ca   0a      2027-01-01T00:00:00Z  45    WARN    yes     p256  ok     yes\n\
             n-1   ca      file    /p      CN=n-1   IP:10.0.0.1  CN=ca   0a      2027-01-01T00:00:00Z  3000  ok      yes     p256  ok     -\n"
        );
        assert_eq!(
            summary(&rows),
            "read-only: 3 certificates; fewest days left 4 (server file /p); 1 served not as in their files"
        );
        assert_eq!(
            summary(&[]),
            "read-only: no certificates (etcd without TLS)"
        );
    }

    #[test]
    fn status_follows_thresholds() {
        let mut r = CertRow {
            days_left: 4,
            ..CertRow::default()
        };
        assert_eq!(status(&r, 60, 30), "FAIL");
        r.days_left = 30;
        assert_eq!(status(&r, 60, 30), "WARN");
        r.days_left = 60;
        assert_eq!(status(&r, 60, 30), "ok");
    }
}
