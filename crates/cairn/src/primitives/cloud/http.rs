//! The HTTP client the cloud primitives share.
//!
//! One [`Api`] per provider call: a bearer token (never printed), retries on
//! 429 (honouring `Retry-After` and the rate-limit reset header), on 5xx and on
//! transport errors, with capped exponential backoff, jitter and a total
//! budget. Other 4xx answers become [`StepError::Api`] carrying the provider's
//! error code and message. Creates go through [`Api::create`], which looks the
//! object up by name before repeating a request whose answer was lost, so a
//! dropped response never makes a duplicate.

use crate::error::StepError;
use crate::step::Ctx;
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The cloud providers cairn talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// Hetzner Cloud, API v1.
    Hetzner,
    /// DigitalOcean, API v2.
    DigitalOcean,
}

impl Provider {
    /// The name used as action target and in errors.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Hetzner => "hetzner",
            Provider::DigitalOcean => "digitalocean",
        }
    }
    /// The public API endpoint.
    pub fn default_endpoint(self) -> &'static str {
        match self {
            Provider::Hetzner => "https://api.hetzner.cloud/v1",
            Provider::DigitalOcean => "https://api.digitalocean.com/v2",
        }
    }
    /// The environment variable overriding the endpoint.
    pub fn endpoint_var(self) -> &'static str {
        match self {
            Provider::Hetzner => "HCLOUD_ENDPOINT",
            Provider::DigitalOcean => "DIGITALOCEAN_ENDPOINT",
        }
    }
    /// The environment variable holding the API token.
    pub fn token_var(self) -> &'static str {
        match self {
            Provider::Hetzner => "HCLOUD_TOKEN",
            Provider::DigitalOcean => "DIGITALOCEAN_ACCESS_TOKEN",
        }
    }
    /// Code and message of an error body: Hetzner's
    /// `{"error":{"code","message","details"}}`, DigitalOcean's `{"id","message"}`.
    pub fn error_of(self, body: &Value) -> Option<(String, String)> {
        let (code, message) = match self {
            Provider::Hetzner => (&body["error"]["code"], &body["error"]["message"]),
            Provider::DigitalOcean => (&body["id"], &body["message"]),
        };
        Some((
            code.as_str()?.to_string(),
            message.as_str().unwrap_or("").to_string(),
        ))
    }
}

/// An API token. Its `Debug` and `Display` never show the value.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wrap a token value.
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// The token from `token_file` if given, else from the provider's
    /// environment variable in `ctx.env`.
    pub fn resolve(
        provider: Provider,
        ctx: &Ctx,
        token_file: Option<&str>,
    ) -> Result<Token, StepError> {
        if let Some(file) = token_file {
            let path = local_path(ctx, file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| StepError::io("reading token file", &path, e))?;
            let token = text.trim();
            if token.is_empty() {
                return Err(StepError::invalid(
                    "token_file",
                    format!("{} is empty", path.display()),
                ));
            }
            return Ok(Token(token.to_string()));
        }
        match ctx.env(provider.token_var()) {
            Some(t) if !t.trim().is_empty() => Ok(Token(t.trim().to_string())),
            _ => Err(StepError::invalid(
                "token_file",
                format!(
                    "no {} API token: set {} or pass `token_file`",
                    provider.name(),
                    provider.token_var()
                ),
            )),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A local file named in a runbook: absolute, `~/...` (the user's home) or
/// relative to the workspace root.
pub fn local_path(ctx: &Ctx, file: &str) -> PathBuf {
    if let Some(rest) = file.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return Path::new(&home).join(rest);
        }
    }
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        ctx.workspace.root().join(p)
    }
}

/// Seconds one cloud API request may take before it is retried (default 30).
pub const TIMEOUT_VAR: &str = "CAIRN_CLOUD_TIMEOUT";

/// How long and how often to retry.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// First backoff delay.
    pub first: Duration,
    /// Largest single delay.
    pub cap: Duration,
    /// Total time a call may spend retrying.
    pub budget: Duration,
    /// Time limit of one request.
    pub request_timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            first: Duration::from_millis(200),
            cap: Duration::from_secs(8),
            budget: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Capped exponential backoff with jitter within a total budget.
pub struct Backoff {
    retry: Retry,
    started: Instant,
    attempts: u32,
}

impl Backoff {
    /// Start counting now.
    pub fn new(retry: Retry) -> Self {
        Backoff {
            retry,
            started: Instant::now(),
            attempts: 0,
        }
    }

    /// The next delay: `hint` (from the server) if given, else exponential
    /// with jitter in [half, full], capped.
    pub fn delay(&self, hint: Option<Duration>) -> Duration {
        if let Some(h) = hint {
            return h.min(self.retry.cap * 4);
        }
        let exp = self
            .retry
            .first
            .saturating_mul(1u32 << self.attempts.min(16));
        let full = exp.min(self.retry.cap);
        let jitter: f64 = rand::random_range(0.5..=1.0);
        full.mul_f64(jitter)
    }

    /// Sleep before the next attempt, or fail if the budget is spent.
    pub async fn pause(
        &mut self,
        hint: Option<Duration>,
        what: &str,
        why: &str,
    ) -> Result<(), StepError> {
        let delay = self.delay(hint);
        if self.started.elapsed() + delay > self.retry.budget {
            return Err(StepError::Timeout {
                what: format!("{what} (retried {} times; last: {why})", self.attempts),
                seconds: self.retry.budget.as_secs(),
            });
        }
        self.attempts += 1;
        tracing::debug!(what, why, ?delay, "retrying");
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// The outcome of one request.
enum Attempt {
    Done(Value),
    /// Worth retrying; `ambiguous` when the server may have acted on it.
    Retry {
        hint: Option<Duration>,
        ambiguous: bool,
        why: String,
    },
    Fail(StepError),
}

/// What [`Api::create`] returns.
#[derive(Debug)]
pub enum Created {
    /// The provider's answer to the create.
    New(Value),
    /// The answer was lost; the object was found by name afterwards.
    Found(Value),
}

/// A provider API with its endpoint and token.
pub struct Api {
    provider: Provider,
    base: Url,
    token: Token,
    http: reqwest::Client,
    retry: Retry,
}

impl fmt::Debug for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Api")
            .field("provider", &self.provider)
            .field("base", &self.base.as_str())
            .field("token", &self.token)
            .finish()
    }
}

impl Api {
    /// The provider's API as configured in `ctx` (endpoint variable, token).
    pub fn from_ctx(
        provider: Provider,
        ctx: &Ctx,
        token_file: Option<&str>,
    ) -> Result<Api, StepError> {
        let token = Token::resolve(provider, ctx, token_file)?;
        let endpoint = ctx
            .env(provider.endpoint_var())
            .filter(|e| !e.is_empty())
            .unwrap_or(provider.default_endpoint());
        let mut retry = Retry::default();
        if let Some(t) = ctx.env(TIMEOUT_VAR).filter(|t| !t.is_empty()) {
            let secs = t
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| {
                    StepError::invalid(
                        TIMEOUT_VAR,
                        format!("`{t}` is not a number of seconds (1 or more)"),
                    )
                })?;
            retry.request_timeout = Duration::from_secs(secs);
        }
        Ok(Api::new(provider, endpoint, token, ctx.http.clone())?.with_retry(retry))
    }

    /// An API at `endpoint` (e.g. `http://10.0.0.1:8080/v1`).
    pub fn new(
        provider: Provider,
        endpoint: &str,
        token: Token,
        http: reqwest::Client,
    ) -> Result<Api, StepError> {
        let trimmed = endpoint.trim_end_matches('/');
        let base = Url::parse(&format!("{trimmed}/")).map_err(|e| {
            StepError::invalid(
                provider.endpoint_var(),
                format!("`{endpoint}` is not a URL: {e}"),
            )
        })?;
        Ok(Api {
            provider,
            base,
            token,
            http,
            retry: Retry::default(),
        })
    }

    /// Use other retry settings.
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The provider.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The URL of `path` (relative to the endpoint) with `query`.
    pub fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, StepError> {
        let mut url = self.base.join(path.trim_start_matches('/')).map_err(|e| {
            StepError::Other(format!("{}: bad path {path}: {e}", self.provider.name()))
        })?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Whether `url` (e.g. a pagination link from a response) points at this
    /// API; the token is never sent anywhere else.
    pub fn owns(&self, url: &Url) -> bool {
        url.origin() == self.base.origin() && url.path().starts_with(self.base.path())
    }

    fn api_error(&self, method: &Method, url: &Url, status: u16, body: &Value) -> StepError {
        let (code, message) = self.provider.error_of(body).unwrap_or_else(|| {
            (
                "unknown".into(),
                body.to_string().chars().take(200).collect(),
            )
        });
        StepError::Api {
            service: self.provider.name().into(),
            method: method.to_string(),
            path: url.path().to_string(),
            status,
            code,
            message,
        }
    }

    async fn attempt(&self, method: &Method, url: &Url, body: Option<&Value>) -> Attempt {
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(&self.token.0)
            .timeout(self.retry.request_timeout);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    hint: None,
                    // refused before anything was sent: the server did nothing
                    ambiguous: !e.is_connect(),
                    why: format!("{}", e.without_url()),
                };
            }
        };
        let status = resp.status().as_u16();
        let hint = retry_hint(resp.headers());
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry {
                    hint: None,
                    ambiguous: true,
                    why: format!("reading the answer (status {status}): {}", e.without_url()),
                }
            }
        };
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) if status >= 500 => Value::Null,
                // A success whose answer is cut short or mangled (a proxy, a
                // truncated body): the server may have acted on it, so it is
                // treated like a lost answer (a create looks for its object).
                Err(e) if (200..300).contains(&status) => {
                    return Attempt::Retry {
                        hint: None,
                        ambiguous: true,
                        why: format!("status {status} but the answer is not JSON: {e}"),
                    }
                }
                Err(e) => {
                    return Attempt::Fail(StepError::Api {
                        service: self.provider.name().into(),
                        method: method.to_string(),
                        path: url.path().to_string(),
                        status,
                        code: "invalid_json".into(),
                        message: format!("the answer is not JSON: {e}"),
                    })
                }
            }
        };
        match status {
            200..=299 => Attempt::Done(value),
            429 => Attempt::Retry {
                hint,
                ambiguous: false,
                why: "429 rate limited".into(),
            },
            500..=599 => Attempt::Retry {
                hint: None,
                ambiguous: true,
                why: match self.provider.error_of(&value) {
                    Some((code, msg)) => format!("{status} {code}: {msg}"),
                    None => format!("{status}"),
                },
            },
            _ => Attempt::Fail(self.api_error(method, url, status, &value)),
        }
    }

    /// A request that may be repeated safely (GET, DELETE, action polls).
    /// Returns the JSON answer (`Null` for an empty one).
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, StepError> {
        let what = format!("{} {method} {}", self.provider.name(), url.path());
        let mut backoff = Backoff::new(self.retry);
        loop {
            match self.attempt(&method, &url, body).await {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { hint, why, .. } => backoff.pause(hint, &what, &why).await?,
            }
        }
    }

    /// `GET path?query`.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, StepError> {
        self.call(Method::GET, self.url(path, query)?, None).await
    }

    /// `GET path`, or `None` on 404.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>, StepError> {
        match self.get(path, &[]).await {
            Ok(v) => Ok(Some(v)),
            Err(StepError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `DELETE path?query`. A 404 counts as done (an earlier attempt whose
    /// answer was lost may have deleted it); then `None` is returned.
    pub async fn delete(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<Value>, StepError> {
        match self
            .call(Method::DELETE, self.url(path, query)?, None)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(StepError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A `POST` that creates something. When the answer is lost (transport
    /// error, 5xx, timeout), `find` looks the object up (by name) before the
    /// request is repeated: if the first request took effect, its object is
    /// returned as [`Created::Found`] and nothing is created twice.
    pub async fn create<F, Fut>(
        &self,
        path: &str,
        body: &Value,
        mut find: F,
    ) -> Result<Created, StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<Value>, StepError>>,
    {
        let url = self.url(path, &[])?;
        let what = format!("{} POST {}", self.provider.name(), url.path());
        let mut backoff = Backoff::new(self.retry);
        loop {
            match self.attempt(&Method::POST, &url, Some(body)).await {
                Attempt::Done(v) => return Ok(Created::New(v)),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry {
                    hint,
                    ambiguous,
                    why,
                } => {
                    backoff.pause(hint, &what, &why).await?;
                    if ambiguous {
                        if let Some(found) = find().await? {
                            return Ok(Created::Found(found));
                        }
                    }
                }
            }
        }
    }

    /// A `POST` that is safe to repeat (or whose effect is checked by the caller).
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, StepError> {
        self.call(Method::POST, self.url(path, &[])?, Some(body))
            .await
    }

    /// Poll `check` until it returns `Some`, with growing intervals, for at
    /// most `timeout`.
    pub async fn wait_until<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: F,
    ) -> Result<T, StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<T>, StepError>>,
    {
        let started = Instant::now();
        let mut interval = Duration::from_millis(50);
        loop {
            if let Some(v) = check().await? {
                return Ok(v);
            }
            if started.elapsed() >= timeout {
                return Err(StepError::Timeout {
                    what: what.to_string(),
                    seconds: timeout.as_secs(),
                });
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 2).min(Duration::from_secs(2));
        }
    }
}

/// How long the server asks us to wait: `Retry-After` (seconds), else the
/// rate-limit reset time (a UNIX timestamp; `RateLimit-Reset` at Hetzner,
/// `ratelimit-reset` at DigitalOcean — header names are case-insensitive).
pub fn retry_hint(headers: &HeaderMap) -> Option<Duration> {
    let num = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if let Some(secs) = num("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let reset = num("ratelimit-reset")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_prints() {
        let t = Token::new("s3cr3t-value");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        let api = Api::new(
            Provider::Hetzner,
            "http://127.0.0.1:1/v1",
            t,
            reqwest::Client::new(),
        )
        .unwrap();
        assert!(!format!("{api:?}").contains("s3cr3t"));
    }

    #[test]
    fn urls_join_under_the_endpoint_and_links_are_checked() {
        let api = Api::new(
            Provider::DigitalOcean,
            "http://10.0.0.1:8080/v2/",
            Token::new("x"),
            reqwest::Client::new(),
        )
        .unwrap();
        let url = api
            .url(
                "/droplets",
                &[("tag_name", "etcd".into()), ("page", "2".into())],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://10.0.0.1:8080/v2/droplets?tag_name=etcd&page=2"
        );
        assert!(api.owns(&url));
        assert!(!api.owns(&Url::parse("http://evil.example/v2/droplets?page=2").unwrap()));
        assert!(!api.owns(&Url::parse("http://10.0.0.1:8080/v1/servers").unwrap()));
    }

    #[test]
    fn retry_hints_prefer_retry_after_then_reset() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_hint(&h), None);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        h.insert("RateLimit-Reset", (now + 3).to_string().parse().unwrap());
        let d = retry_hint(&h).unwrap();
        assert!(
            d >= Duration::from_secs(2) && d <= Duration::from_secs(3),
            "{d:?}"
        );
        h.insert("Retry-After", "1".parse().unwrap());
        assert_eq!(retry_hint(&h), Some(Duration::from_secs(1)));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut b = Backoff::new(Retry {
            first: Duration::from_millis(100),
            cap: Duration::from_millis(400),
            budget: Duration::from_secs(10),
            request_timeout: Duration::from_secs(1),
        });
        let d0 = b.delay(None);
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
        b.attempts = 10;
        let d = b.delay(None);
        assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        assert_eq!(
            b.delay(Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn provider_errors_are_parsed() {
        let h = serde_json::json!({"error":{"code":"uniqueness_error","message":"SSH key with the same fingerprint already exists","details":{}}});
        assert_eq!(
            Provider::Hetzner.error_of(&h),
            Some((
                "uniqueness_error".into(),
                "SSH key with the same fingerprint already exists".into()
            ))
        );
        let d = serde_json::json!({"id":"not_found","message":"The resource you requested could not be found."});
        assert_eq!(Provider::DigitalOcean.error_of(&d).unwrap().0, "not_found");
        assert_eq!(Provider::DigitalOcean.error_of(&h), None);
    }
}
