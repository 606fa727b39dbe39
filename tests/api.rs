//! The operator API over real HTTP: auth, error codes, triggers that wait for their pass, and
//! coalescing of triggers that arrive during a pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vapi_reconciler::api::{AdminToken, Api};
use vapi_reconciler::controller::{Controller, Role};
use vapi_reconciler::credentials::PlatformKey;
use vapi_reconciler::http::{self, HttpState};
use vapi_reconciler::metrics::Metrics;
use vapi_reconciler::simulator::Simulator;
use vapi_reconciler::store::Store;

const TOKEN: &str = "test-admin-token-0123456789";

struct Served {
    base: String,
    sim: Simulator,
    controller: Arc<Controller>,
    cancel: CancellationToken,
    _running: vapi_reconciler::simulator::RunningSimulator,
}

/// A leading controller loop and the HTTP server with the API, as `run` wires them.
async fn serve(pool: &PgPool) -> Served {
    let sim = Simulator::new();
    let key = uuid::Uuid::new_v4().to_string();
    sim.add_key(&key, "org-1");
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let vapi = common::client(&running.base_url());
    let controller = Arc::new(common::controller_with(
        pool,
        &vapi,
        PlatformKey::fixed(vapi_reconciler::credentials::ApiKey::new(&key).unwrap()),
        common::loop_config(),
        common::settings(),
    ));
    let cancel = CancellationToken::new();
    let elector = vapi_reconciler::sharding::ShardElector::new(
        (*pool.connect_options()).clone(),
        common::leader_config("api-test"),
        1,
    );
    tokio::spawn({
        let controller = controller.clone();
        let cancel = cancel.clone();
        async move { controller.run(&elector, cancel).await }
    });
    let mut status = controller.subscribe();
    tokio::time::timeout(
        Duration::from_secs(30),
        status.wait_for(|s| s.role == Role::Leader && s.passes >= 1),
    )
    .await
    .unwrap()
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = HttpState {
        pool: pool.clone(),
        loop_status: controller.subscribe(),
        platform_key: controller.platform_key().clone(),
        metrics: Metrics::new("vapi-reconciler").unwrap(),
        api: Some(Api {
            controller: controller.clone(),
            store: Store::new(pool.clone()),
            token: AdminToken::new(TOKEN),
            wait_timeout: Duration::from_secs(30),
        }),
    };
    tokio::spawn(http::serve(listener, state, cancel.clone()));
    Served {
        base,
        sim,
        controller,
        cancel,
        _running: running,
    }
}

async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<String>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[sqlx::test]
async fn auth_and_error_codes_are_json(pool: PgPool) {
    let s = serve(&pool).await;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let status_url = format!("{}/v1/status", s.base);
    let (code, body) = call(get.clone(), &status_url, None, None).await;
    assert_eq!((code, body["error"].as_str()), (401, Some("unauthorized")));
    let (code, _) = call(get.clone(), &status_url, Some("wrong-token"), None).await;
    assert_eq!(code, 401);
    let (code, body) = call(get.clone(), &status_url, Some(TOKEN), None).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["role"], "leader");
    assert!(body["platformKey"]["fingerprint"].is_string());

    let (code, body) = call(
        get.clone(),
        &format!("{}/v1/agents/not-a-uuid", s.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((code, body["error"].as_str()), (400, Some("bad_request")));
    let unknown = uuid::Uuid::new_v4();
    let (code, body) = call(
        get.clone(),
        &format!("{}/v1/agents/{unknown}", s.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((code, body["error"].as_str()), (404, Some("not_found")));
    let reconcile = format!("{}/v1/reconcile", s.base);
    let (code, body) = call(
        post.clone(),
        &reconcile,
        Some(TOKEN),
        Some("{not json".into()),
    )
    .await;
    assert_eq!((code, body["error"].as_str()), (400, Some("bad_json")));
    let (code, body) = call(
        post.clone(),
        &reconcile,
        Some(TOKEN),
        Some(format!("{{\"orgId\": \"{}\"}}", "x".repeat(70_000))),
    )
    .await;
    assert_eq!(
        (code, body["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    let (code, body) = call(
        post.clone(),
        &format!("{}/v1/breakers/deadbeef/reset", s.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((code, body["error"].as_str()), (404, Some("not_found")));
    let (code, _) = call(
        post,
        &format!("{}/v1/guard/blocks/424242/confirm", s.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(code, 404);
    let (code, body) = call(
        get,
        &format!("{}/v1/nothing-here", s.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((code, body["error"].as_str()), (404, Some("not_found")));
    s.cancel.cancel();
}

#[sqlx::test]
async fn a_trigger_waits_for_its_pass_and_triggers_during_a_pass_coalesce(pool: PgPool) {
    let s = serve(&pool).await;
    let org = common::org(&pool, "Harbor").await;
    let id = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    let reconcile = format!("{}/v1/reconcile?wait=true", s.base);
    let (code, body) = call(
        reqwest::Method::POST,
        &reconcile,
        Some(TOKEN),
        Some(json!({"agentId": id}).to_string()),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["agents"].as_array().unwrap().len(), 1);
    assert_eq!(body["agents"][0]["state"], "synced");
    assert_eq!(body["pass"]["created"], 1);
    let (code, body) = call(
        reqwest::Method::GET,
        &format!("{}/v1/agents/{id}", s.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((code, body["state"].as_str()), (200, Some("synced")));

    // Hold the next pass in flight (each Vapi call takes a second), then trigger five times.
    s.sim.set_latency(Duration::from_secs(1));
    let before = s.controller.subscribe().borrow().passes_started;
    let (code, body) = call(
        reqwest::Method::POST,
        &format!("{}/v1/reconcile", s.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!((code, body["accepted"].as_bool()), (202, Some(true)));
    let mut status = s.controller.subscribe();
    status
        .wait_for(|st| st.passes_started > before)
        .await
        .unwrap();
    for _ in 0..5 {
        let (code, _) = call(
            reqwest::Method::POST,
            &format!("{}/v1/reconcile", s.base),
            Some(TOKEN),
            None,
        )
        .await;
        assert_eq!(code, 202);
    }
    // The five coalesce into exactly one more pass, which a waiting trigger joins.
    let (code, _) = call(reqwest::Method::POST, &reconcile, Some(TOKEN), None).await;
    assert_eq!(code, 200);
    let after = s.controller.subscribe().borrow().passes_started;
    assert_eq!(
        after,
        before + 2,
        "one pass for the first trigger, one for the five"
    );
    s.cancel.cancel();
}

#[sqlx::test]
async fn the_plan_endpoint_shows_pending_changes_without_writing(pool: PgPool) {
    let s = serve(&pool).await;
    let org = common::org(&pool, "Harbor").await;
    let id = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    s.sim.reset_counters();
    let (code, body) = call(
        reqwest::Method::GET,
        &format!("{}/v1/plan?org={org}", s.base),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["changes"][0]["action"], "create");
    assert_eq!(body["changes"][0]["agent_id"], id.to_string());
    assert_eq!(s.sim.counters().writes(), 0);
    s.cancel.cancel();
}
