//! The controller's health endpoints over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vapi_reconciler::controller::LoopStatus;
use vapi_reconciler::credentials::{ApiKey, PlatformKey};
use vapi_reconciler::simulator::FaultMode;

async fn serve(
    pool: PgPool,
    loop_status: tokio::sync::watch::Receiver<LoopStatus>,
) -> (String, CancellationToken) {
    let metrics = vapi_reconciler::metrics::Metrics::new("vapi-reconciler").unwrap();
    serve_with(pool, loop_status, metrics).await
}

async fn serve_with(
    pool: PgPool,
    loop_status: tokio::sync::watch::Receiver<LoopStatus>,
    metrics: vapi_reconciler::metrics::Metrics,
) -> (String, CancellationToken) {
    let platform_key = PlatformKey::fixed(ApiKey::new("a-test-key").unwrap());
    common::serve_health(pool, loop_status, platform_key, metrics).await
}

async fn get(url: String) -> (u16, Value) {
    let resp = reqwest::get(url).await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[sqlx::test]
async fn ready_with_a_migrated_database_and_live_regardless_of_vapi(pool: PgPool) {
    let env = common::env(pool.clone()).await;
    let (base, cancel) = serve(pool, env.controller.subscribe()).await;
    let (status, body) = get(format!("{base}/readyz")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let (status, body) = get(format!("{base}/healthz")).await;
    assert_eq!((status, body["passes"].as_u64()), (200, Some(0)));

    // Vapi down does not make the controller unhealthy: a restart would not fix it.
    env.sim.inject(common::fault(
        None,
        None,
        FaultMode::Respond,
        Some(503),
        None,
    ));
    env.pass().await;
    let (status, body) = get(format!("{base}/healthz")).await;
    assert_eq!((status, body["passes"].as_u64()), (200, Some(1)));
    cancel.cancel();
}

#[sqlx::test(migrations = false)]
async fn not_ready_while_migrations_are_missing(pool: PgPool) {
    let (_keep, status) = tokio::sync::watch::channel(LoopStatus::default());
    let (base, cancel) = serve(pool.clone(), status).await;
    let (status, body) = get(format!("{base}/readyz")).await;
    assert_eq!(status, 503);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("unapplied migrations"),
        "{body}"
    );
    vapi_reconciler::store::MIGRATOR.run(&pool).await.unwrap();
    assert_eq!(get(format!("{base}/readyz")).await.0, 200);
    cancel.cancel();
}

use common::sample;

#[sqlx::test]
async fn metrics_show_drift_appear_and_disappear(pool: PgPool) {
    let mut env = common::env(pool.clone()).await;
    let metrics = vapi_reconciler::metrics::Metrics::new("vapi-reconciler").unwrap();
    env.controller = common::controller(
        &pool,
        &env.vapi.clone().with_metrics(metrics.clone()),
        &env.key,
        common::settings(),
    )
    .with_metrics(metrics.clone());
    let (base, cancel) =
        serve_with(pool.clone(), env.controller.subscribe(), metrics.clone()).await;
    let org = common::org(&pool, "Harbor").await;
    let a = common::agent(&pool, org, "a", common::spec(1)).await;
    common::agent(&pool, org, "b", common::spec(2)).await;
    env.pass().await;
    let scrape = || async {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let text = scrape().await;
    assert_eq!(
        sample(&text, "vapi_reconciler_drift{kind=\"missing\"}"),
        2.0
    );
    assert_eq!(
        sample(&text, "vapi_reconciler_agents{state=\"synced\"}"),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "vapi_reconciler_vapi_requests_total{method=\"POST\",route=\"/assistant\",status=\"201\"}"
        ),
        2.0
    );
    assert_eq!(
        sample(
            &text,
            "vapi_reconciler_actions_total{action=\"create\",outcome=\"ok\"}"
        ),
        2.0
    );

    let assistant = common::status(&pool, a).await.assistant_id.unwrap();
    env.sim
        .edit_out_of_band(&assistant, serde_json::json!({"firstMessage": "edited"}));
    env.pass().await;
    let text = scrape().await;
    assert_eq!(
        sample(&text, "vapi_reconciler_drift{kind=\"diverged\"}"),
        1.0
    );
    assert_eq!(
        sample(&text, "vapi_reconciler_drift{kind=\"missing\"}"),
        0.0
    );
    env.pass().await;
    let text = scrape().await;
    assert_eq!(
        sample(&text, "vapi_reconciler_drift{kind=\"diverged\"}"),
        0.0
    );
    assert_eq!(
        sample(&text, "vapi_reconciler_oldest_drift_age_seconds"),
        0.0
    );
    assert!(sample(&text, "vapi_reconciler_last_pass_timestamp_seconds") > 1.7e9);
    assert_eq!(
        sample(
            &text,
            "controller_runtime_reconcile_errors_total{controller=\"assistant\"}"
        ),
        0.0
    );
    cancel.cancel();
}
