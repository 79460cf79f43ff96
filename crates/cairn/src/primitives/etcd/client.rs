//! A typed client for etcd's JSON gateway (v3), over mutual TLS.
//!
//! Each endpoint gets its own rustls configuration: the server certificate is
//! checked against the given CA *for the endpoint's host name or IP*, even when
//! the connection actually goes to a local port forwarded over ssh
//! ([`EtcdClient::route`]). The client key is held in memory only and never
//! appears in errors or `Debug` output.

use crate::error::StepError;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A member as `member list` reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdMember")]
pub struct Member {
    /// Member ID in hex, as etcdctl prints it.
    #[rhai_type(readonly)]
    pub id: String,
    /// Empty until the member has started.
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(skip)]
    pub peer_urls: Vec<String>,
    #[rhai_type(skip)]
    pub client_urls: Vec<String>,
    /// Whether the member has started (has a name).
    #[rhai_type(readonly)]
    pub started: bool,
    /// Whether it is a learner (non-voting).
    #[rhai_type(readonly)]
    pub is_learner: bool,
}

/// `maintenance/status` of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdStatus")]
pub struct Status {
    #[rhai_type(readonly)]
    pub endpoint: String,
    /// This member's ID (hex).
    #[rhai_type(readonly)]
    pub member_id: String,
    /// The leader's member ID (hex); `0` when there is no leader.
    #[rhai_type(readonly)]
    pub leader: String,
    #[rhai_type(readonly)]
    pub is_leader: bool,
    #[rhai_type(skip)]
    pub raft_term: u64,
    #[rhai_type(skip)]
    pub raft_index: u64,
    #[rhai_type(readonly)]
    pub version: String,
    #[rhai_type(skip)]
    pub db_size: u64,
    /// Cluster ID (hex).
    #[rhai_type(readonly)]
    pub cluster_id: String,
}

/// How a server refused a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, rhai::CustomType)]
#[rhai_type(name = "EtcdRefusal")]
pub struct Refusal {
    #[rhai_type(readonly)]
    pub endpoint: String,
    /// e.g. `TLS alert: CertificateRequired` or `HTTP 401`.
    #[rhai_type(readonly)]
    pub how: String,
}

/// Client certificate and key, PEM.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: String,
    key_pem: String,
}

impl Identity {
    pub fn new(cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        Identity {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &"..")
            .field("key_pem", &"(hidden)")
            .finish()
    }
}

/// Checks the server certificate for `name` instead of the name in the URL
/// (which is `127.0.0.1` when the connection is tunnelled).
#[derive(Debug)]
struct ForName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ForName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _url_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// An endpoint URL taken apart.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: String,
    pub tls: bool,
    /// Host as in the URL (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parse `https://10.1.1.2:2379` (port defaults to 2379).
    pub fn parse(field: &str, url: &str) -> Result<Endpoint, StepError> {
        let bad = |why: &str| StepError::invalid(field, format!("`{url}` {why}"));
        if !url.contains("://") {
            return Err(bad("is not a URL like `https://HOST:2379`"));
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
        let tls = match parsed.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(bad(&format!("has scheme `{other}`, not https or http"))),
        };
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if parsed.path() != "/" && !parsed.path().is_empty() {
            return Err(bad("has a path; give only scheme, host and port"));
        }
        Ok(Endpoint {
            url: url.trim_end_matches('/').to_string(),
            tls,
            port: parsed.port().unwrap_or(2379),
            host,
        })
    }

    /// `host:port` as the endpoint's host sees it (for an ssh forward).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Text of an error and its causes, without repeats.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The TLS alert the server sent, if that is why a request failed. The
/// rustls error sits inside (possibly nested) `io::Error`s, whose `source()`
/// skips it, so those are opened with `get_ref`.
fn alert_of(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(rustls::Error::AlertReceived(alert)) = err.downcast_ref::<rustls::Error>() {
            return Some(format!("{alert:?}"));
        }
        cur = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// A base64 value from the gateway as UTF-8 text.
fn decode_text(key: &str, v: &Value) -> Result<String, StepError> {
    let raw = B64
        .decode(v.as_str().unwrap_or_default())
        .map_err(|e| StepError::Other(format!("etcd value of `{key}` is not base64: {e}")))?;
    String::from_utf8(raw)
        .map_err(|_| StepError::Other(format!("etcd value of `{key}` is not UTF-8 text")))
}

pub(super) fn hex_id(v: &Value) -> String {
    let n = match v {
        Value::String(s) => s.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    n.map(|n| format!("{n:x}")).unwrap_or_else(|| "0".into())
}

pub(super) fn number(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A member of a gateway answer (`member list`, `member add`).
pub(super) fn member_of(m: &Value) -> Member {
    let name = m["name"].as_str().unwrap_or_default().to_string();
    Member {
        id: hex_id(&m["ID"]),
        started: !name.is_empty(),
        name,
        peer_urls: strings(&m["peerURLs"]),
        client_urls: strings(&m["clientURLs"]),
        is_learner: m["isLearner"].as_bool().unwrap_or(false),
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct EtcdClient {
    endpoints: Vec<Endpoint>,
    ca_pem: String,
    identity: Option<Identity>,
    routes: BTreeMap<String, SocketAddr>,
    timeout: Duration,
    /// The ssh forwards behind `routes`, kept open while the client lives.
    holds: Vec<std::sync::Arc<crate::ssh::ForwardHold>>,
}

impl EtcdClient {
    /// A client for `endpoints` trusting `ca_pem`, authenticating with
    /// `identity` if given.
    pub fn new(
        endpoints: &[String],
        ca_pem: &str,
        identity: Option<Identity>,
    ) -> Result<Self, StepError> {
        if endpoints.is_empty() {
            return Err(StepError::invalid(
                "endpoints",
                "at least one endpoint is needed",
            ));
        }
        Ok(EtcdClient {
            endpoints: endpoints
                .iter()
                .map(|e| Endpoint::parse("endpoints", e))
                .collect::<Result<_, _>>()?,
            ca_pem: ca_pem.into(),
            identity,
            routes: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            holds: Vec::new(),
        })
    }

    /// The endpoints, parsed.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Reach `endpoint` at `local` (an ssh forward) instead of its own address.
    /// The server certificate is still checked for the endpoint's host.
    pub fn route(&mut self, endpoint: &str, local: SocketAddr) {
        self.routes
            .insert(endpoint.trim_end_matches('/').to_string(), local);
    }

    /// [`EtcdClient::route`] through an ssh forward, keeping its master open
    /// while the client lives (see [`crate::ssh::Pool::forward_held`]).
    pub fn route_held(
        &mut self,
        endpoint: &str,
        (local, hold): (SocketAddr, crate::ssh::ForwardHold),
    ) {
        self.route(endpoint, local);
        self.holds.push(std::sync::Arc::new(hold));
    }

    /// Per-request time limit (default 10 s).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    fn endpoint(&self, url: &str) -> Result<Endpoint, StepError> {
        let url = url.trim_end_matches('/');
        match self.endpoints.iter().find(|e| e.url == url) {
            Some(e) => Ok(e.clone()),
            None => Endpoint::parse("endpoint", url),
        }
    }

    fn tls_config(
        &self,
        ep: &Endpoint,
        identity: Option<&Identity>,
    ) -> Result<ClientConfig, StepError> {
        let bad = |field: &str, m: String| StepError::invalid(field, m);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            let der = der.map_err(|e| bad("ca", format!("not PEM certificates: {e}")))?;
            roots
                .add(der)
                .map_err(|e| bad("ca", format!("not a usable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(bad("ca", "holds no certificate".into()));
        }
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| bad("ca", format!("cannot verify with it: {e}")))?;
        let name = ServerName::try_from(ep.host.clone())
            .map_err(|e| bad("endpoints", format!("`{}`: {e}", ep.url)))?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StepError::Other(format!("TLS setup: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ForName { inner, name }));
        match identity {
            None => Ok(builder.with_no_client_auth()),
            Some(id) => {
                let certs = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad("cert", format!("not PEM certificates: {e}")))?;
                // the key's parse error is not shown: it could quote key material
                let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes())
                    .map_err(|_| bad("key", "not a PEM private key".into()))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| bad("key", format!("does not fit the client certificate: {e}")))
            }
        }
    }

    /// An HTTP client and base URL for `ep`, with `identity` (or none).
    fn http(
        &self,
        ep: &Endpoint,
        identity: Option<&Identity>,
    ) -> Result<(reqwest::Client, String), StepError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(self.timeout)
            .no_proxy();
        if ep.tls {
            builder = builder.tls_backend_preconfigured(self.tls_config(ep, identity)?);
        }
        let scheme = if ep.tls { "https" } else { "http" };
        let base = match self.routes.get(&ep.url) {
            Some(local) => format!("{scheme}://{local}"),
            None => ep.url.clone(),
        };
        let client = builder
            .build()
            .map_err(|e| StepError::Other(format!("HTTP client for {}: {}", ep.url, chain(&e))))?;
        Ok((client, base))
    }

    fn connect_error(&self, ep: &Endpoint, e: &reqwest::Error) -> StepError {
        let address = match self.routes.get(&ep.url) {
            Some(local) => format!("tunnelled via {local}"),
            None => ep.authority(),
        };
        StepError::Connect {
            host: ep.url.clone(),
            address,
            message: chain(e),
        }
    }

    async fn call(
        &self,
        url: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, StepError> {
        let ep = self.endpoint(url)?;
        let (client, base) = self.http(&ep, self.identity.as_ref())?;
        let request = match &body {
            Some(b) => client.post(format!("{base}{path}")).json(b),
            None => client.get(format!("{base}{path}")),
        };
        let response = request
            .send()
            .await
            .map_err(|e| self.connect_error(&ep, &e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| self.connect_error(&ep, &e))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(StepError::Api {
                service: format!("etcd {}", ep.url),
                method: method.into(),
                path: path.into(),
                status: status.as_u16(),
                code: value.get("code").map(|c| c.to_string()).unwrap_or_default(),
                message: value
                    .get("message")
                    .or_else(|| value.get("error"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| text.chars().take(200).collect()),
            });
        }
        if value.is_null() {
            return Err(StepError::Other(format!(
                "etcd {} {path}: answer is not JSON: {}",
                ep.url,
                text.chars().take(200).collect::<String>()
            )));
        }
        Ok(value)
    }

    /// `POST path` with a JSON `body` to endpoint `url`.
    pub(crate) async fn post(
        &self,
        url: &str,
        path: &str,
        body: Value,
    ) -> Result<Value, StepError> {
        self.call(url, "POST", path, Some(body)).await
    }

    /// `GET /health` of one endpoint: `Ok(())` when healthy, else why not.
    pub async fn health(&self, url: &str) -> Result<(), StepError> {
        let v = self.call(url, "GET", "/health", None).await?;
        match v.get("health").and_then(Value::as_str) {
            Some("true") => Ok(()),
            _ => Err(StepError::Verify(format!(
                "health is {}{}",
                v.get("health")
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "missing".into()),
                v.get("reason")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ))),
        }
    }

    /// `GET /version` of one endpoint: the member's server version and the
    /// cluster version it reports (`etcdserver`, `etcdcluster`).
    pub async fn version(&self, url: &str) -> Result<(String, String), StepError> {
        let v = self.call(url, "GET", "/version", None).await?;
        let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Ok((field("etcdserver"), field("etcdcluster")))
    }

    /// `maintenance/status` of one endpoint.
    pub async fn status(&self, url: &str) -> Result<Status, StepError> {
        let v = self.post(url, "/v3/maintenance/status", json!({})).await?;
        let member_id = hex_id(&v["header"]["member_id"]);
        let leader = hex_id(&v["leader"]);
        Ok(Status {
            endpoint: url.trim_end_matches('/').into(),
            is_leader: leader == member_id && leader != "0",
            member_id,
            leader,
            raft_term: number(&v["raftTerm"]).max(number(&v["header"]["raft_term"])),
            raft_index: number(&v["raftIndex"]),
            version: v["version"].as_str().unwrap_or_default().into(),
            db_size: number(&v["dbSize"]),
            cluster_id: hex_id(&v["header"]["cluster_id"]),
        })
    }

    /// Try each endpoint in turn until one answers.
    pub(crate) async fn first<T, F, Fut>(&self, f: F) -> Result<T, StepError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, StepError>>,
    {
        let mut last = None;
        for ep in &self.endpoints {
            match f(ep.url.clone()).await {
                Ok(v) => return Ok(v),
                // an answer with an error is final; only unreachable endpoints are skipped
                Err(e @ StepError::Api { .. }) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| StepError::invalid("endpoints", "none given")))
    }

    /// The cluster's members (asked of the first endpoint that answers).
    pub async fn member_list(&self) -> Result<Vec<Member>, StepError> {
        let v = self
            .first(|url| async move { self.post(&url, "/v3/cluster/member/list", json!({})).await })
            .await?;
        Ok(v["members"]
            .as_array()
            .map(|ms| ms.iter().map(member_of).collect())
            .unwrap_or_default())
    }

    /// Ask the leader at `leader_url` to hand leadership to the member with
    /// hex ID `target` (`maintenance/transfer-leadership`, etcd's MoveLeader).
    pub async fn move_leader(&self, leader_url: &str, target: &str) -> Result<(), StepError> {
        let id = u64::from_str_radix(target, 16)
            .map_err(|_| StepError::invalid("to", format!("`{target}` is not a hex member ID")))?;
        self.post(
            leader_url,
            "/v3/maintenance/transfer-leadership",
            json!({ "targetID": id.to_string() }),
        )
        .await
        .map(|_| ())
    }

    /// Write `key` = `value` through the endpoint `url` only.
    pub async fn put_at(&self, url: &str, key: &str, value: &str) -> Result<(), StepError> {
        let body = json!({"key": B64.encode(key), "value": B64.encode(value)});
        self.post(url, "/v3/kv/put", body).await.map(|_| ())
    }

    /// The value of `key` read through the endpoint `url` only (a
    /// linearizable read), or `None` if there is none.
    pub async fn get_at(&self, url: &str, key: &str) -> Result<Option<String>, StepError> {
        let v = self
            .post(url, "/v3/kv/range", json!({"key": B64.encode(key)}))
            .await?;
        let Some(kv) = v["kvs"].as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        decode_text(key, &kv["value"]).map(Some)
    }

    /// Every key under `prefix` with its value, in key order.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, StepError> {
        let mut end = prefix.as_bytes().to_vec();
        match end.last_mut() {
            Some(b) if *b < 0xff => *b += 1,
            _ => {
                return Err(StepError::invalid(
                    "prefix",
                    "must end in a byte below 0xff",
                ))
            }
        }
        let body = json!({"key": B64.encode(prefix), "range_end": B64.encode(&end)});
        let v = self
            .first(|url| {
                let body = body.clone();
                async move { self.post(&url, "/v3/kv/range", body).await }
            })
            .await?;
        let mut out = Vec::new();
        for kv in v["kvs"].as_array().into_iter().flatten() {
            let raw = B64
                .decode(kv["key"].as_str().unwrap_or_default())
                .map_err(|e| {
                    StepError::Other(format!("etcd key under `{prefix}` is not base64: {e}"))
                })?;
            let key = String::from_utf8_lossy(&raw).into_owned();
            let value = decode_text(&key, &kv["value"])?;
            out.push((key, value));
        }
        Ok(out)
    }

    /// Write `key` = `value`.
    pub async fn put(&self, key: &str, value: &str) -> Result<(), StepError> {
        let body = json!({"key": B64.encode(key), "value": B64.encode(value)});
        self.first(|url| {
            let body = body.clone();
            async move { self.post(&url, "/v3/kv/put", body).await }
        })
        .await
        .map(|_| ())
    }

    /// The value of `key`, or `None` if there is none.
    pub async fn get(&self, key: &str) -> Result<Option<String>, StepError> {
        let body = json!({"key": B64.encode(key)});
        let v = self
            .first(|url| {
                let body = body.clone();
                async move { self.post(&url, "/v3/kv/range", body).await }
            })
            .await?;
        let Some(kv) = v["kvs"].as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        decode_text(key, &kv["value"]).map(Some)
    }

    /// Ask `url` for `/health` as this client (its identity may be none or
    /// one from another CA) and report how the server refused. An accepted
    /// request is an error, and so is a failure that is not the server's
    /// refusal (unreachable, or the server's own certificate rejected).
    pub async fn expect_refused(&self, url: &str) -> Result<Refusal, StepError> {
        let ep = self.endpoint(url)?;
        let (client, base) = self.http(&ep, self.identity.as_ref())?;
        let who = if self.identity.is_some() {
            "a client with that certificate"
        } else {
            "a client without a certificate"
        };
        // With TLS 1.3 the server rejects a client certificate after the
        // client's handshake is done: the alert may race with the request and
        // the connection is then merely dropped. Such an ambiguous failure is
        // asked again; only an alert or a 401/403 counts as a refusal, and any
        // answer that serves the request is an acceptance.
        let mut last = String::new();
        for attempt in 0..5u64 {
            match client.get(format!("{base}/health")).send().await {
                Ok(r) if matches!(r.status().as_u16(), 401 | 403) => {
                    return Ok(Refusal {
                        endpoint: ep.url.clone(),
                        how: format!("HTTP {}", r.status().as_u16()),
                    })
                }
                Ok(r) => {
                    return Err(StepError::Verify(format!(
                        "{} accepted {who} (HTTP {})",
                        ep.url,
                        r.status().as_u16()
                    )))
                }
                Err(e) => match alert_of(&e) {
                    Some(alert) => {
                        return Ok(Refusal {
                            endpoint: ep.url.clone(),
                            how: format!("TLS alert: {alert}"),
                        })
                    }
                    None => last = chain(&e),
                },
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 * (attempt + 1))).await;
        }
        Err(StepError::Verify(format!(
            "{}: could not tell whether it refuses {who}: {last}",
            ep.url
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_parsed_and_checked() {
        let e = Endpoint::parse("endpoints", "https://10.1.1.2:2379/").unwrap();
        assert_eq!(
            (e.url.as_str(), e.host.as_str(), e.port, e.tls),
            ("https://10.1.1.2:2379", "10.1.1.2", 2379, true)
        );
        assert_eq!(e.authority(), "10.1.1.2:2379");
        let e = Endpoint::parse("endpoints", "https://[fd00::2]:2379").unwrap();
        assert_eq!(
            (e.host.as_str(), e.authority()),
            ("fd00::2", "[fd00::2]:2379".to_string())
        );
        let e = Endpoint::parse("endpoints", "https://node-1.example").unwrap();
        assert_eq!(e.port, 2379);
        assert_eq!(
            Endpoint::parse("endpoints", "10.1.1.2:2379")
                .unwrap_err()
                .to_string(),
            "invalid `endpoints`: `10.1.1.2:2379` is not a URL like `https://HOST:2379`"
        );
        assert_eq!(
            Endpoint::parse("endpoints", "unix://h:2379")
                .unwrap_err()
                .to_string(),
            "invalid `endpoints`: `unix://h:2379` has scheme `unix`, not https or http"
        );
        assert_eq!(
            Endpoint::parse("endpoints", "https://h:2379/v3")
                .unwrap_err()
                .to_string(),
            "invalid `endpoints`: `https://h:2379/v3` has a path; give only scheme, host and port"
        );
    }

    #[test]
    fn ids_are_hex_like_etcdctl() {
        assert_eq!(hex_id(&json!("10276657743932975437")), "8e9e05c52164694d");
        assert_eq!(hex_id(&json!(255)), "ff");
        assert_eq!(hex_id(&Value::Null), "0");
    }

    #[test]
    fn identity_debug_hides_the_key() {
        let id = Identity::new("CERT", "-----BEGIN PRIVATE KEY-----\nsecret");
        assert!(!format!("{id:?}").contains("secret"));
    }
}
