//! What every provider request passes through: the bearer token check, fault
//! injection, and rate-limit headers; and the admin endpoint that sets faults.
//!
//! `POST /_cairn/faults` (bearer: either emulation's token) with
//! `{"fail_next": N, "status": 429|503, "delay_ms": M, "drop_after_effect": K,
//! "only": "POST /v1/servers", "retry_after": S}`:
//! the next N requests fail with `status` (429 carries `Retry-After: S`,
//! default 1, and reset headers); every request is delayed by M ms; the
//! answers of the next K successful changing requests (POST, PUT, DELETE) are
//! dropped after their effect happened (the connection is cut instead of
//! answering); with `"slow_next": N`, only the next N requests are delayed,
//! by `delay_ms` after their effect (a client timing out on an answer that
//! comes too late); the answers of the next `"garble_next": G` successful
//! requests are replaced, after their effect, by a body that is not JSON.
//! `only` restricts all of it to requests whose `METHOD /path`
//! starts with it. `GET` shows the faults and counts of what was injected;
//! `DELETE` clears them.

use super::{json, Cloud};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::json as j;
use std::sync::Arc;
use std::time::Duration;

/// Faults to inject, with counts of what was injected so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Fail this many of the next requests with `status`.
    #[serde(default)]
    pub fail_next: u32,
    /// 429 (rate limited) or 503 (unavailable); default 429.
    #[serde(default)]
    pub status: Option<u16>,
    /// Delay every answer by this many milliseconds.
    #[serde(default)]
    pub delay_ms: u64,
    /// Drop the answers of this many of the next successful changing requests.
    #[serde(default)]
    pub drop_after_effect: u32,
    /// Only requests whose `METHOD /path` starts with this.
    #[serde(default)]
    pub only: Option<String>,
    /// `Retry-After` seconds of injected 429s (default 1).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Delay only the next N answers, by `delay_ms`, after their effect.
    #[serde(default)]
    pub slow_next: u32,
    /// Replace the next N successful answers by a body that is not JSON.
    #[serde(default)]
    pub garble_next: u32,
    /// Answers delayed by `slow_next` so far (read-only).
    #[serde(default)]
    pub slowed: u32,
    /// Answers garbled so far (read-only).
    #[serde(default)]
    pub garbled: u32,
    /// Requests failed so far (read-only).
    #[serde(default)]
    pub failed: u32,
    /// Answers dropped so far (read-only).
    #[serde(default)]
    pub dropped: u32,
}

/// Which emulation a path belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Hetzner,
    DigitalOcean,
}

impl Api {
    /// The emulation that answers `path` (`/v2...`: DigitalOcean).
    pub fn of(path: &str) -> Api {
        if path.starts_with("/v2") {
            Api::DigitalOcean
        } else {
            Api::Hetzner
        }
    }
}

/// An error answer shaped like the provider's.
pub fn error(api: Api, status: StatusCode, code: &str, message: &str) -> Response {
    match api {
        Api::Hetzner => json(
            status,
            j!({ "error": { "code": code, "message": message, "details": {} } }),
        ),
        Api::DigitalOcean => json(status, j!({ "id": code, "message": message })),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Constant-time comparison of a presented token with the expected one.
fn token_matches(presented: Option<&str>, expected: &str) -> bool {
    let Some(p) = presented else { return false };
    if expected.is_empty() || p.len() != expected.len() {
        return false;
    }
    p.bytes()
        .zip(expected.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

enum Decision {
    Pass {
        drop: bool,
        /// Delay the answer after the effect by this many ms.
        late_ms: u64,
        garble: bool,
    },
    Fail {
        status: u16,
        retry_after: u64,
    },
}

const PASS: Decision = Decision::Pass {
    drop: false,
    late_ms: 0,
    garble: false,
};

fn decide(f: &mut Faults, method: &Method, path: &str) -> (Decision, u64) {
    let line = format!("{method} {path}");
    let applies = f.only.as_deref().is_none_or(|o| line.starts_with(o));
    if !applies {
        return (PASS, 0);
    }
    if f.fail_next > 0 {
        f.fail_next -= 1;
        f.failed += 1;
        let d = Decision::Fail {
            status: f.status.unwrap_or(429),
            retry_after: f.retry_after.unwrap_or(1),
        };
        return (d, if f.slow_next > 0 { 0 } else { f.delay_ms });
    }
    let changing = matches!(*method, Method::POST | Method::PUT | Method::DELETE);
    let late_ms = if f.slow_next > 0 {
        f.slow_next -= 1;
        f.slowed += 1;
        let late = f.delay_ms;
        if f.slow_next == 0 {
            // the delay belonged to those N requests only
            f.delay_ms = 0;
        }
        late
    } else {
        0
    };
    let before = if late_ms > 0 || f.slow_next > 0 {
        0
    } else {
        f.delay_ms
    };
    (
        Decision::Pass {
            drop: changing && f.drop_after_effect > 0,
            late_ms,
            garble: f.garble_next > 0,
        },
        before,
    )
}

/// The middleware in front of both emulations.
pub async fn guard(State(cloud): State<Arc<Cloud>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let api = Api::of(&path);
    let expected = match api {
        Api::Hetzner => &cloud.hetzner_token,
        Api::DigitalOcean => &cloud.digitalocean_token,
    };
    let mut resp = if !token_matches(bearer(req.headers()), expected) {
        match api {
            Api::Hetzner => error(
                api,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unable to authenticate",
            ),
            Api::DigitalOcean => error(
                api,
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Unable to authenticate you.",
            ),
        }
    } else {
        let (decision, delay) = {
            let mut f = cloud.faults.lock().unwrap_or_else(|e| e.into_inner());
            decide(&mut f, &method, &path)
        };
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        match decision {
            Decision::Fail {
                status: 429,
                retry_after,
            } => {
                let mut r = match api {
                    Api::Hetzner => error(
                        api,
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_exceeded",
                        "limit of 3600 requests per hour reached",
                    ),
                    Api::DigitalOcean => error(
                        api,
                        StatusCode::TOO_MANY_REQUESTS,
                        "too_many_requests",
                        "API rate limit exceeded.",
                    ),
                };
                let h = r.headers_mut();
                for (name, value) in [
                    ("retry-after", retry_after.to_string()),
                    ("ratelimit-limit", "3600".to_string()),
                    ("ratelimit-remaining", "0".to_string()),
                    (
                        "ratelimit-reset",
                        (super::now_unix() + retry_after).to_string(),
                    ),
                ] {
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        h.insert(name, v);
                    }
                }
                r
            }
            Decision::Fail { status, .. } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                match api {
                    Api::Hetzner => error(
                        api,
                        status,
                        "unavailable",
                        "service unavailable (injected fault)",
                    ),
                    Api::DigitalOcean => error(
                        api,
                        status,
                        "service_unavailable",
                        "Service unavailable (injected fault).",
                    ),
                }
            }
            Decision::Pass {
                drop,
                late_ms,
                garble,
            } => {
                let r = super::fallback::shaped(api, &method, &path, next.run(req).await).await;
                if late_ms > 0 {
                    // The effect happened; the answer comes too late.
                    tokio::time::sleep(Duration::from_millis(late_ms)).await;
                }
                if drop && r.status().is_success() {
                    let mut f = cloud.faults.lock().unwrap_or_else(|e| e.into_inner());
                    f.drop_after_effect = f.drop_after_effect.saturating_sub(1);
                    f.dropped += 1;
                    drop_body(r)
                } else if garble && r.status().is_success() {
                    let mut f = cloud.faults.lock().unwrap_or_else(|e| e.into_inner());
                    f.garble_next = f.garble_next.saturating_sub(1);
                    f.garbled += 1;
                    garble_body(r)
                } else {
                    r
                }
            }
        }
    };
    if !resp.headers().contains_key("ratelimit-limit") {
        cloud.rate_headers(resp.headers_mut());
    }
    resp
}

/// The answer with its body replaced by one that fails at once: the server
/// cuts the connection instead of completing the answer.
fn drop_body(resp: Response) -> Response {
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove("content-length");
    let failing = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("answer dropped by fault injection"))
    });
    Response::from_parts(parts, Body::from_stream(failing))
}

/// The answer with its JSON body cut short: a proxy's or a truncated answer.
fn garble_body(resp: Response) -> Response {
    let (mut parts, _) = resp.into_parts();
    parts.headers.remove("content-length");
    Response::from_parts(parts, Body::from("{\"server\": {\"id\": 4"))
}

async fn set(State(cloud): State<Arc<Cloud>>, headers: HeaderMap, body: Bytes) -> Response {
    if !admin(&cloud, &headers) {
        return error(
            Api::Hetzner,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
        );
    }
    let mut wanted: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return error(
                Api::Hetzner,
                StatusCode::BAD_REQUEST,
                "invalid_input",
                &e.to_string(),
            )
        }
    };
    if let Some(s) = wanted.status {
        if !(s == 429 || (500..600).contains(&s)) {
            return error(
                Api::Hetzner,
                StatusCode::BAD_REQUEST,
                "invalid_input",
                "status must be 429 or 5xx",
            );
        }
    }
    let mut f = cloud.faults.lock().unwrap_or_else(|e| e.into_inner());
    wanted.failed = f.failed;
    wanted.dropped = f.dropped;
    wanted.slowed = f.slowed;
    wanted.garbled = f.garbled;
    *f = wanted;
    json(StatusCode::OK, j!({ "faults": *f }))
}

async fn show(State(cloud): State<Arc<Cloud>>, headers: HeaderMap) -> Response {
    if !admin(&cloud, &headers) {
        return error(
            Api::Hetzner,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
        );
    }
    let f = cloud
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    json(StatusCode::OK, j!({ "faults": f }))
}

async fn clear(State(cloud): State<Arc<Cloud>>, headers: HeaderMap) -> Response {
    if !admin(&cloud, &headers) {
        return error(
            Api::Hetzner,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
        );
    }
    *cloud.faults.lock().unwrap_or_else(|e| e.into_inner()) = Faults::default();
    super::no_content()
}

fn admin(cloud: &Cloud, headers: &HeaderMap) -> bool {
    let presented = bearer(headers);
    token_matches(presented, &cloud.hetzner_token)
        || token_matches(presented, &cloud.digitalocean_token)
}

/// `/_cairn/faults`.
pub fn routes() -> Router<Arc<Cloud>> {
    Router::new().route("/_cairn/faults", post(set).get(show).delete(clear))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_in_order_and_only_where_asked() {
        let mut f = Faults {
            fail_next: 1,
            status: Some(503),
            drop_after_effect: 1,
            only: Some("POST /v1/servers".into()),
            ..Faults::default()
        };
        assert!(matches!(
            decide(&mut f, &Method::GET, "/v1/servers").0,
            Decision::Pass { drop: false, .. }
        ));
        assert!(matches!(
            decide(&mut f, &Method::POST, "/v1/servers").0,
            Decision::Fail { status: 503, .. }
        ));
        assert!(matches!(
            decide(&mut f, &Method::POST, "/v1/servers").0,
            Decision::Pass { drop: true, .. }
        ));
        assert_eq!(f.failed, 1);
    }

    #[test]
    fn slow_and_garbled_answers_come_after_the_effect_and_only_n_times() {
        let mut f = Faults {
            slow_next: 1,
            delay_ms: 900,
            garble_next: 1,
            ..Faults::default()
        };
        // the first: answered late (no delay before the effect) and garbled
        let (d, before) = decide(&mut f, &Method::POST, "/v1/servers");
        assert_eq!(before, 0);
        assert!(matches!(
            d,
            Decision::Pass {
                late_ms: 900,
                garble: true,
                ..
            }
        ));
        assert_eq!(f.slowed, 1);
        // the next: on time (garble_next is spent by the middleware, once a
        // successful answer was garbled)
        let (d, before) = decide(&mut f, &Method::GET, "/v1/servers");
        assert_eq!(before, 0, "the delay was for the slow request only");
        assert!(matches!(d, Decision::Pass { late_ms: 0, .. }));
        // without slow_next, delay_ms delays every request before it is handled
        f.delay_ms = 300;
        assert_eq!(decide(&mut f, &Method::GET, "/v1/servers").1, 300);
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches(Some("abc"), "abc"));
        assert!(!token_matches(Some("abd"), "abc"));
        assert!(!token_matches(Some("ab"), "abc"));
        assert!(!token_matches(None, "abc"));
        assert!(!token_matches(Some(""), ""));
    }
}
