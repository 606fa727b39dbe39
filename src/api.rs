//! The authenticated operator API under `/v1`: trigger a reconcile, read an agent's truth, see
//! the plan and the controller's status, reset a breaker, confirm a blocked pass.
//!
//! Every route needs `Authorization: Bearer <admin token>`, compared in constant time; without a
//! configured token the API refuses everything. Errors are JSON `{"error", "message"}` with the
//! status the HTTP semantics call for (400, 401, 404, 409, 413, 504). A trigger only wakes the
//! loop: the pass still looks at everything it owns, and triggers during a pass coalesce into
//! exactly one more pass. With shards, a trigger naming an organization or agent must reach the
//! replica that owns its shard (else 409 `not_owner`); a trigger of everything wakes every replica
//! through the database's notification channel.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::controller::{Controller, PlanFilter, Role};
use crate::http::error;
use crate::reconcile::shard::shard_of;
use crate::store::Store;

/// Requests larger than this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// The admin token; `Debug` shows only its fingerprint.
#[derive(Clone)]
pub struct AdminToken(SecretString);

impl AdminToken {
    pub fn new(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        (!raw.is_empty()).then(|| Self(SecretString::from(raw.to_owned())))
    }

    /// Constant-time: `/v1`'s bearer check and the console's sign-in.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        self.0
            .expose_secret()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into()
    }
}

impl AdminToken {
    /// A key derived from the token for one purpose (HMAC-SHA-256 keyed by the token): the
    /// console signs its sessions with it, so a cookie never holds the token, every replica with
    /// the same token accepts it, and a new token ends every session.
    pub(crate) fn derive_key(&self, purpose: &str) -> [u8; 32] {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AdminToken(fingerprint={})",
            crate::credentials::fingerprint(self.0.expose_secret())
        )
    }
}

#[derive(Clone)]
pub struct Api {
    pub controller: Arc<Controller>,
    pub store: Store,
    pub token: Option<AdminToken>,
    /// How long `POST /v1/reconcile?wait=true` waits for its pass.
    pub wait_timeout: Duration,
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/v1/reconcile", post(reconcile))
        .route("/v1/agents/{id}", get(agent))
        .route("/v1/plan", get(plan))
        .route("/v1/status", get(status))
        .route("/v1/breakers/{fingerprint}/reset", post(reset_breaker))
        .route("/v1/guard/blocks/{id}/confirm", post(confirm_block))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(api.clone(), authenticate))
        .with_state(api)
}

async fn authenticate(State(api): State<Api>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match (&api.token, presented) {
        (None, _) => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the API is disabled: no admin token is configured (ADMIN_TOKEN_FILE or ADMIN_TOKEN)",
        ),
        (Some(_), None) => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send Authorization: Bearer <admin token>",
        ),
        (Some(token), Some(p)) if token.matches(p) => next.run(request).await,
        (Some(_), Some(_)) => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin token is wrong",
        ),
    }
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is case-insensitive
/// (RFC 7235 §2.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A JSON body, or a JSON error: 413 over the limit, 400 when it does not parse.
fn body<T: serde::de::DeserializeOwned + Default>(
    raw: Result<Bytes, BytesRejection>,
) -> Result<T, Box<Response>> {
    let bytes = raw
        .map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body is larger than {BODY_LIMIT} bytes"),
                )
            } else {
                error(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
            }
        })
        .map_err(Box::new)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, "bad_json", e.to_string())))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReconcileBody {
    org_id: Option<Uuid>,
    agent_id: Option<Uuid>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

async fn reconcile(
    State(api): State<Api>,
    Query(q): Query<WaitQuery>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let request: ReconcileBody = match body(raw) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let Triggered {
        request_id,
        started,
        mut loop_status,
    } = match trigger(&api, request.org_id, request.agent_id, q.wait).await {
        Ok(t) => t,
        Err(refused) => return refused.into_response(),
    };
    if !q.wait {
        return (
            StatusCode::ACCEPTED,
            Json(json!({"requestId": request_id, "accepted": true})),
        )
            .into_response();
    }
    // The first pass to start after this request looks at the state as of now.
    let target = started + 1;
    let pass = match wait_for_pass(&mut loop_status, target, api.wait_timeout).await {
        Some(pass) => pass,
        None => {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "no pass completed within {}; request {request_id} is still queued",
                    humantime::format_duration(api.wait_timeout)
                ),
            );
        }
    };
    match api
        .store
        .agent_statuses(request.org_id, request.agent_id)
        .await
    {
        Ok(agents) => {
            Json(json!({"requestId": request_id, "pass": pass, "agents": agents})).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e.to_string()),
    }
}

/// Why an operator action was refused: what `/v1` answers, and what the console shows.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl Refusal {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }

    fn store(e: &crate::store::StoreError) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e.to_string())
    }

    fn into_response(self) -> Response {
        error(self.status, self.kind, self.message)
    }
}

/// A reconcile that was asked for: its id, and the loop's pass count when it was.
pub(crate) struct Triggered {
    pub(crate) request_id: Uuid,
    pub(crate) started: u64,
    pub(crate) loop_status: tokio::sync::watch::Receiver<crate::controller::LoopStatus>,
}

/// Wakes the loop for everything, an organization or an agent: the one trigger behind
/// `POST /v1/reconcile` and the console's button. Refused on a standby, and for an organization
/// in a shard another replica writes for.
pub(crate) async fn trigger(
    api: &Api,
    org_id: Option<Uuid>,
    agent_id: Option<Uuid>,
    wait: bool,
) -> Result<Triggered, Refusal> {
    let loop_status = api.controller.subscribe();
    let (role, started, count, writing) = {
        let s = loop_status.borrow();
        let writing: Vec<u32> = s
            .shards
            .iter()
            .filter(|l| l.writing)
            .map(|l| l.shard)
            .collect();
        (
            s.role_now().0,
            s.passes_started,
            s.shard_count.max(1),
            writing,
        )
    };
    if role != Role::Leader {
        return Err(Refusal::new(
            StatusCode::CONFLICT,
            "standby",
            "this replica stands by; send the request to the leader (see GET /v1/status on any replica)",
        ));
    }
    // A named organization (or an agent's) must be in a shard this replica writes for.
    let org = match (org_id, agent_id) {
        (Some(org), _) => Some(org),
        (None, Some(agent)) => api
            .store
            .org_of_agent(agent)
            .await
            .map_err(|e| Refusal::store(&e))?,
        (None, None) => None,
    };
    if let Some(org) = org {
        let shard = shard_of(org, count);
        if !writing.contains(&shard) {
            return Err(Refusal::new(
                StatusCode::CONFLICT,
                "not_owner",
                format!(
                    "organization {org} is in shard {shard} of {count}, which another replica writes for; send the request there (GET /v1/status on each replica lists its shards)"
                ),
            ));
        }
    }
    let request_id = Uuid::new_v4();
    api.controller.activator().activate();
    if org.is_none() && count > 1 {
        // Everything: every replica's shards, so every replica is woken (through its listener).
        if let Err(e) = api.store.notify_replicas().await {
            tracing::warn!(error = %e, "could not wake the other replicas; they reconcile at their next pass");
        }
    }
    tracing::info!(%request_id, ?org_id, ?agent_id, wait, "reconcile requested");
    Ok(Triggered {
        request_id,
        started,
        loop_status,
    })
}

/// The report of pass number `target` (or a later one), once it has finished.
async fn wait_for_pass(
    loop_status: &mut tokio::sync::watch::Receiver<crate::controller::LoopStatus>,
    target: u64,
    bound: Duration,
) -> Option<Option<crate::controller::PassReport>> {
    let waiting = async {
        loop {
            {
                let s = loop_status.borrow_and_update();
                if s.passes >= target {
                    return Some(s.last_pass.clone());
                }
            }
            if loop_status.changed().await.is_err() {
                return None;
            }
        }
    };
    tokio::time::timeout(bound, waiting).await.ok().flatten()
}

async fn agent(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("agent id {id:?} is not a UUID"),
        );
    };
    match api.store.agent_statuses(None, Some(id)).await {
        Ok(mut rows) if !rows.is_empty() => Json(rows.swap_remove(0)).into_response(),
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no agent with id {id}"),
        ),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e.to_string()),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct PlanQuery {
    org: Option<Uuid>,
    agent: Option<Uuid>,
}

async fn plan(State(api): State<Api>, Query(q): Query<PlanQuery>) -> Response {
    match api
        .controller
        .plan(&PlanFilter {
            org: q.org,
            agent: q.agent,
        })
        .await
    {
        Ok(view) => Json(view).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e.to_string()),
    }
}

async fn status(State(api): State<Api>) -> Response {
    let loop_status = api.controller.subscribe().borrow().clone();
    let counts = api.store.state_counts().await;
    let blocks = api.store.guard_blocks(5).await;
    match (counts, blocks) {
        (Ok(counts), Ok(blocks)) => {
            let open: Vec<_> = blocks
                .into_iter()
                .filter(|b| b.confirmed_at.is_none())
                .collect();
            let (role, proof_age) = loop_status.role_now();
            Json(json!({
                "role": role,
                "lastProofAgeSeconds": proof_age,
                "epoch": loop_status.epoch,
                "passes": loop_status.passes,
                "focusedPasses": loop_status.focused_passes,
                "lastPass": loop_status.last_pass,
                "lastPassFinishedAt": loop_status.last_pass_finished_at,
                "lastFocusedPassFinishedAt": loop_status.last_focused_pass_finished_at,
                "lastError": loop_status.last_error,
                "agents": counts,
                "platformKey": api.controller.platform_key().current(),
                "credentials": loop_status.credentials,
                "blocked": open,
            }))
            .into_response()
        }
        (Err(e), _) | (_, Err(e)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.kind(), e.to_string())
        }
    }
}

async fn reset_breaker(State(api): State<Api>, Path(fingerprint): Path<String>) -> Response {
    match request_breaker_reset(&api, &fingerprint).await {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(json!({"fingerprint": fingerprint, "reset": "requested"})),
        )
            .into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// Asks the leader to close a key's breaker: behind `POST /v1/breakers/{fp}/reset` and the
/// console's button.
pub(crate) async fn request_breaker_reset(api: &Api, fingerprint: &str) -> Result<(), Refusal> {
    // A fingerprint is 8 hex digits; anything else (`%00` included) never reaches the database.
    if fingerprint.len() != 8 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "{} is not a key fingerprint (8 hex digits, as `breaker list` shows them)",
                crate::reconcile::validate::show(&serde_json::Value::String(
                    fingerprint.to_owned()
                ))
            ),
        ));
    }
    match api.store.request_breaker_reset(fingerprint).await {
        Ok(true) => {
            api.controller.note_operator_request();
            Ok(())
        }
        Ok(false) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no key with fingerprint {fingerprint:?} is in use"),
        )),
        Err(e) => Err(Refusal::store(&e)),
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfirmBody {
    /// humantime, default one hour.
    valid_for: Option<String>,
    by: Option<String>,
}

async fn confirm_block(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("block id {id:?} is not a number"),
        );
    };
    let request: ConfirmBody = match body(raw) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let valid_for = match request.valid_for.as_deref().map(humantime::parse_duration) {
        None => Duration::from_secs(3600),
        Some(Ok(d)) if !d.is_zero() && d <= crate::config::MAX_DURATION => d,
        Some(Ok(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "validFor must be above zero and at most {} (10 years)",
                    humantime::format_duration(crate::config::MAX_DURATION)
                ),
            );
        }
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("validFor: {e}"),
            );
        }
    };
    let by = request.by.unwrap_or_else(|| "api".to_owned());
    match confirm_guard_block(&api, id, &by, valid_for).await {
        Ok(block) => Json(block).into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// Confirms a guard block for `valid_for`: behind `POST /v1/guard/blocks/{id}/confirm` and the
/// console's button.
pub(crate) async fn confirm_guard_block(
    api: &Api,
    id: i64,
    by: &str,
    valid_for: Duration,
) -> Result<crate::store::GuardBlock, Refusal> {
    if by.trim().is_empty() || by.chars().count() > 200 || by.chars().any(char::is_control) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "by must be a name: not empty, at most 200 characters, no control characters",
        ));
    }
    match api.store.confirm_guard_block(id, by, valid_for).await {
        Ok(Some(block)) => {
            tracing::warn!(block_id = id, by = %by, "guard block confirmed by an operator");
            api.controller.activator().activate();
            Ok(block)
        }
        Ok(None) => Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no guard block with id {id}"),
        )),
        Err(e) => Err(Refusal::store(&e)),
    }
}
