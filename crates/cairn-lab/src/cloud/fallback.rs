//! What the emulations answer outside the routes they implement, and for
//! requests the router itself refuses (a path id that is not a number, a
//! method a route lacks): always the provider's documented error body
//! (Hetzner `{"error": {"code", "message", "details"}}`, DigitalOcean
//! `{"id", "message"}`), never an empty or plain-text answer. The rate-limit
//! headers are added by [`super::faults::guard`], which every answer passes.

use super::faults::{error, Api};
use axum::body::to_bytes;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;

/// The answer to a route neither emulation implements: 404 `not_found`.
pub async fn unknown(req: Request) -> Response {
    let path = req.uri().path().to_string();
    not_implemented(Api::of(&path), req.method(), &path)
}

fn not_implemented(api: Api, method: &Method, path: &str) -> Response {
    let message = format!("{method} {path} is not implemented by the lab's emulation");
    error(api, StatusCode::NOT_FOUND, "not_found", &message)
}

/// `resp` if it already is a JSON answer; otherwise (the router's own
/// plain-text or empty refusals) the provider's error body for it: 404 and
/// 405 become `not_found`, other client errors `invalid_input` (Hetzner) or
/// `bad_request` (DigitalOcean) with the router's reason.
pub async fn shaped(api: Api, method: &Method, path: &str, resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    if matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) {
        return not_implemented(api, method, path);
    }
    let reason = to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let reason = if reason.is_empty() {
        status.canonical_reason().unwrap_or("refused").to_string()
    } else {
        reason
    };
    let message = format!("{method} {path}: {reason}");
    match (api, status.is_client_error()) {
        (Api::Hetzner, true) => error(api, StatusCode::BAD_REQUEST, "invalid_input", &message),
        (Api::DigitalOcean, true) => error(api, StatusCode::BAD_REQUEST, "bad_request", &message),
        (_, false) => error(api, status, "server_error", &message),
    }
}
