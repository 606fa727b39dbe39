//! The `/_sim` control API: an HTTP face for the in-process [`Simulator`] methods.
//!
//! Design note: each endpoint is a thin 1:1 wrapper, so tests driving a simulator in another process
//! (or by curl) get exactly the in-process semantics. `/_sim/resources/{kind}` serves every kind of
//! the table in `kinds.rs` (assistants included); `/_sim/assistants` is the older assistant-only
//! twin. Control requests bypass the API pipeline:
//! no auth, latency, rate limit, faults or counting. Bodies are parsed by hand rather than with axum's
//! `Json` extractor so that every error is JSON in the same shape as the rest of the API.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::http::{App, bad_request, error_response, not_found};
use super::{Fault, KIND_NAMES, RateLimit};

pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/_sim/keys", post(add_key))
        .route("/_sim/keys/revoke", post(revoke_key))
        .route("/_sim/latency", put(set_latency).get(get_latency))
        .route(
            "/_sim/rate-limit",
            put(set_rate_limit)
                .delete(clear_rate_limit)
                .get(get_rate_limit),
        )
        .route(
            "/_sim/faults",
            post(inject).get(list_faults).delete(clear_faults),
        )
        .route("/_sim/counters", get(counters).delete(reset_counters))
        .route(
            "/_sim/vapi-voices",
            put(set_vapi_voices).get(get_vapi_voices),
        )
        .route("/_sim/missing-azure-voices", put(set_missing_azure_voices))
        .route(
            "/_sim/assistants",
            get(list_assistants).post(create_assistant),
        )
        .route(
            "/_sim/assistants/{id}",
            patch(edit_assistant).delete(delete_assistant),
        )
        .route("/_sim/assistants/{id}/pin", post(pin).delete(unpin))
        .route("/_sim/resources", get(list_kinds))
        .route(
            "/_sim/resources/{kind}",
            get(list_resources).post(create_resource),
        )
        .route(
            "/_sim/resources/{kind}/{id}",
            get(get_resource)
                .patch(edit_resource)
                .delete(delete_resource),
        )
        .route(
            "/_sim/resources/{kind}/{id}/pin",
            post(pin_resource).delete(unpin_resource),
        )
}

/// The error is boxed only to keep the `Result` small.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(bad_request(format!("invalid control request: {e}"))))
}

fn ok() -> Response {
    reply(json!({"ok": true}))
}

fn reply(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyBody {
    key: String,
    #[serde(default)]
    org_id: Option<String>,
}

async fn add_key(State(app): State<App>, body: Bytes) -> Response {
    match parse::<KeyBody>(&body) {
        Ok(KeyBody {
            key,
            org_id: Some(org),
        }) => {
            app.sim.add_key(&key, &org);
            ok()
        }
        Ok(_) => bad_request("orgId is required"),
        Err(resp) => *resp,
    }
}

async fn revoke_key(State(app): State<App>, body: Bytes) -> Response {
    match parse::<KeyBody>(&body) {
        Ok(b) => {
            app.sim.revoke_key(&b.key);
            ok()
        }
        Err(resp) => *resp,
    }
}

#[derive(Deserialize)]
struct LatencyBody {
    ms: u64,
}

async fn set_latency(State(app): State<App>, body: Bytes) -> Response {
    match parse::<LatencyBody>(&body) {
        Ok(b) => {
            app.sim.set_latency(Duration::from_millis(b.ms));
            ok()
        }
        Err(resp) => *resp,
    }
}

async fn get_latency(State(app): State<App>) -> Response {
    let ms = u64::try_from(app.sim.latency().as_millis()).unwrap_or(u64::MAX);
    reply(json!({ "ms": ms }))
}

async fn set_rate_limit(State(app): State<App>, body: Bytes) -> Response {
    match parse::<RateLimit>(&body) {
        Ok(limit) => {
            app.sim.set_rate_limit(Some(limit));
            ok()
        }
        Err(resp) => *resp,
    }
}

async fn clear_rate_limit(State(app): State<App>) -> Response {
    app.sim.set_rate_limit(None);
    ok()
}

async fn get_rate_limit(State(app): State<App>) -> Response {
    reply(serde_json::to_value(app.sim.rate_limit()).unwrap_or(Value::Null))
}

async fn inject(State(app): State<App>, body: Bytes) -> Response {
    match parse::<Fault>(&body) {
        Ok(fault) => {
            app.sim.inject(fault);
            ok()
        }
        Err(resp) => *resp,
    }
}

async fn list_faults(State(app): State<App>) -> Response {
    reply(serde_json::to_value(app.sim.faults()).unwrap_or(Value::Null))
}

async fn clear_faults(State(app): State<App>) -> Response {
    app.sim.clear_faults();
    ok()
}

async fn counters(State(app): State<App>) -> Response {
    reply(serde_json::to_value(app.sim.counters()).unwrap_or(Value::Null))
}

async fn reset_counters(State(app): State<App>) -> Response {
    app.sim.reset_counters();
    ok()
}

#[derive(Deserialize)]
struct VoicesBody {
    voices: Option<Vec<String>>,
}

async fn set_vapi_voices(State(app): State<App>, body: Bytes) -> Response {
    match parse::<VoicesBody>(&body) {
        Ok(b) => {
            app.sim.set_vapi_voices(b.voices);
            ok()
        }
        Err(resp) => *resp,
    }
}

#[derive(Deserialize)]
struct MissingAzureBody {
    voices: Vec<String>,
}

async fn set_missing_azure_voices(State(app): State<App>, body: Bytes) -> Response {
    match parse::<MissingAzureBody>(&body) {
        Ok(b) => {
            app.sim.set_missing_azure_voices(b.voices);
            ok()
        }
        Err(resp) => *resp,
    }
}

async fn get_vapi_voices(State(app): State<App>) -> Response {
    reply(json!({ "voices": app.sim.vapi_voices() }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrgQuery {
    org_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    org_id: String,
    #[serde(default)]
    body: Value,
}

// `/_sim/assistants…` is `/_sim/resources/assistant…` under its older name.

fn assistant_kind() -> Path<String> {
    Path("assistant".to_owned())
}

async fn list_assistants(state: State<App>, query: Query<OrgQuery>) -> Response {
    list_resources(state, assistant_kind(), query).await
}

async fn create_assistant(state: State<App>, body: Bytes) -> Response {
    create_resource(state, assistant_kind(), body).await
}

/// Answers the edited object (200) or 404.
async fn edit_assistant(state: State<App>, Path(id): Path<String>, body: Bytes) -> Response {
    edit_resource(state, Path(("assistant".to_owned(), id)), body).await
}

async fn delete_assistant(state: State<App>, Path(id): Path<String>) -> Response {
    delete_resource(state, Path(("assistant".to_owned(), id))).await
}

async fn pin(State(app): State<App>, Path(id): Path<String>) -> Response {
    pin_kind(&app, "assistant", &id, true)
}

async fn unpin(State(app): State<App>, Path(id): Path<String>) -> Response {
    pin_kind(&app, "assistant", &id, false)
}

// ---------- every kind: /_sim/resources/{kind} ----------

fn unknown_kind(kind: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        format!(
            "unknown kind {kind:?}; the kinds are {}",
            KIND_NAMES.join(", ")
        ),
        "Not Found",
    )
}

async fn list_kinds() -> Response {
    reply(json!({ "kinds": KIND_NAMES }))
}

async fn list_resources(
    State(app): State<App>,
    Path(kind): Path<String>,
    Query(q): Query<OrgQuery>,
) -> Response {
    let items = match q.org_id {
        Some(org) => app.sim.resources(&kind, &org),
        None => app.sim.all_resources(&kind),
    };
    items.map_or_else(|| unknown_kind(&kind), |v| reply(Value::Array(v)))
}

async fn create_resource(
    State(app): State<App>,
    Path(kind): Path<String>,
    body: Bytes,
) -> Response {
    match parse::<CreateBody>(&body) {
        Ok(b) => match app
            .sim
            .create_resource_out_of_band(&kind, &b.org_id, b.body)
        {
            Some(created) => (StatusCode::CREATED, axum::Json(created)).into_response(),
            None => unknown_kind(&kind),
        },
        Err(resp) => *resp,
    }
}

async fn get_resource(
    State(app): State<App>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    if !KIND_NAMES.contains(&kind.as_str()) {
        return unknown_kind(&kind);
    }
    app.sim.resource(&kind, &id).map_or_else(not_found, reply)
}

async fn edit_resource(
    State(app): State<App>,
    Path((kind, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if !KIND_NAMES.contains(&kind.as_str()) {
        return unknown_kind(&kind);
    }
    let patch = match parse::<Value>(&body) {
        Ok(p @ Value::Object(_)) => p,
        Ok(_) => return bad_request("the patch must be a JSON object"),
        Err(resp) => return *resp,
    };
    if !app.sim.edit_resource_out_of_band(&kind, &id, patch) {
        return not_found();
    }
    app.sim.resource(&kind, &id).map_or_else(not_found, reply)
}

async fn delete_resource(
    State(app): State<App>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    if !KIND_NAMES.contains(&kind.as_str()) {
        return unknown_kind(&kind);
    }
    if app.sim.delete_resource_out_of_band(&kind, &id) {
        ok()
    } else {
        not_found()
    }
}

fn pin_kind(app: &App, kind: &str, id: &str, pinned: bool) -> Response {
    if !KIND_NAMES.contains(&kind) {
        return unknown_kind(kind);
    }
    if app.sim.pin_resource(kind, id, pinned) {
        reply(json!({"id": id, "pinned": pinned}))
    } else {
        not_found()
    }
}

async fn pin_resource(
    State(app): State<App>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    pin_kind(&app, &kind, &id, true)
}

async fn unpin_resource(
    State(app): State<App>,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    pin_kind(&app, &kind, &id, false)
}
