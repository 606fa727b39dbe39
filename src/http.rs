//! The controller's own HTTP server: `/healthz` (liveness), `/readyz` (readiness) and
//! `/metrics` (Prometheus), and with the operator API (`/v1`) the console (`/ui`).
//!
//! Liveness means this process and its loop answer; it never depends on Vapi, because restarting
//! the controller does not fix someone else's outage. Readiness means the database is reachable
//! and carries every migration this binary expects; a standby is ready too (it serves HTTP and
//! takes over when the leader goes), and both endpoints say which role this replica has.

mod conn;

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::controller::LoopStatus;
use crate::credentials::PlatformKey;
use crate::metrics::Metrics;
use crate::store;

pub use conn::Limits;

#[derive(Clone)]
pub struct HttpState {
    pub pool: PgPool,
    pub loop_status: watch::Receiver<LoopStatus>,
    pub platform_key: PlatformKey,
    pub metrics: Metrics,
    /// The operator API under `/v1`, when this server offers it.
    pub api: Option<crate::api::Api>,
}

pub fn router(state: HttpState) -> Router {
    let api = state.api.clone();
    let health = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    let routes = match api {
        Some(api) => health
            .merge(crate::api::router(api.clone()))
            .merge(crate::console::router(api)),
        None => health,
    };
    routes
        .fallback(not_found)
        .layer(middleware::from_fn(json_errors))
}

async fn not_found(request: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no such endpoint: {} {}",
            request.method(),
            request.uri().path()
        ),
    )
}

/// Every error answer is JSON `{"error", "message"}`: axum's own rejections (a bad query string,
/// a wrong method, a malformed path) are plain text or empty, so they are rewritten here, their
/// text kept as the message and `Allow` kept on a 405. The console's HTML error pages stay HTML.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let answer = next.run(request).await;
    let status = answer.status();
    let is_json = answer
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return answer;
    }
    let (parts, body) = answer.into_parts();
    // Rejection texts are short; a longer body is cut, never buffered whole.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let allow = parts.headers.get(axum::http::header::ALLOW).cloned();
    let message = match (&allow, text.is_empty()) {
        (Some(allow), _) if status == StatusCode::METHOD_NOT_ALLOWED => format!(
            "{method} is not allowed here; allowed: {}",
            allow.to_str().unwrap_or("")
        ),
        (_, false) => text,
        (_, true) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let kind = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace([' ', '-'], "_");
    let mut rebuilt = error(status, &kind, message);
    if let Some(allow) = allow {
        rebuilt
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    rebuilt
}

/// Serves with the default [`Limits`] until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, state, Limits::default(), cancel).await
}

/// Serves until `cancel`, every connection bounded by `limits` (see [`conn`]).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: HttpState,
    limits: Limits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let app = router(state).layer(middleware::from_fn_with_state(
        limits.request_timeout,
        request_timeout,
    ));
    conn::serve(listener, app, limits, cancel).await
}

/// Answers 408 when reading the request and answering it takes longer than the bound.
async fn request_timeout(State(bound): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(bound, next.run(request)).await {
        Ok(answer) => answer,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request was not read and answered within {}",
                humantime::format_duration(bound)
            ),
        ),
    }
}

/// The JSON error every route answers with: `{"error": kind, "message": …}`.
pub(crate) fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": kind, "message": message.into()})),
    )
        .into_response()
}

async fn healthz(State(state): State<HttpState>) -> Json<serde_json::Value> {
    let status = state.loop_status.borrow().clone();
    let (role, proof_age) = status.role_now();
    Json(json!({
        "status": "ok",
        "role": role,
        "lastProofAgeSeconds": proof_age,
        "epoch": status.epoch,
        "shardCount": status.shard_count,
        "shards": status.shards,
        "passes": status.passes,
        "lastPassFinishedAt": status.last_pass_finished_at,
    }))
}

/// How long `/readyz` waits for the database: a database that went away (even one that stopped
/// answering without closing its sockets) makes it 503 within this, well inside a probe's timeout.
pub const READY_TIMEOUT: Duration = Duration::from_millis(1500);

async fn readyz(State(state): State<HttpState>) -> Response {
    let checked = tokio::time::timeout(READY_TIMEOUT, store::unapplied_migrations(&state.pool));
    let Ok(checked) = checked.await else {
        return not_ready(format!(
            "database unreachable: no answer within {}",
            humantime::format_duration(READY_TIMEOUT)
        ));
    };
    match checked {
        Ok(missing) if missing.is_empty() => {
            let ((role, proof_age), shards, note, credentials) = {
                let s = state.loop_status.borrow();
                (
                    s.role_now(),
                    s.shards.clone(),
                    s.shard_note.clone(),
                    s.credentials.clone(),
                )
            };
            Json(json!({
                "status": "ready",
                "role": role,
                "lastProofAgeSeconds": proof_age,
                "shards": shards,
                "shardNote": note,
                "platformKey": state.platform_key.current(),
                "credentials": credentials,
            }))
            .into_response()
        }
        Ok(missing) => not_ready(format!("unapplied migrations: {}", missing.join(", "))),
        Err(e) => not_ready(format!("database unreachable: {e}")),
    }
}

async fn metrics(State(state): State<HttpState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

fn not_ready(reason: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "not ready", "reason": reason, "error": "not_ready", "message": reason})),
    )
        .into_response()
}
