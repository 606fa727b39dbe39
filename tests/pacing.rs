//! Adaptive pacing end to end: the controller against the simulator over HTTP with a per-key
//! limit it is not told, and a real Postgres. Nothing here sleeps or reads a wall clock: the
//! assertions are on counts (simulator counters, statuses) and on the rates the controller
//! reports, which hold however fast the machine runs the pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::sample;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vapi_reconciler::controller::{Controller, PassSettings};
use vapi_reconciler::metrics::Metrics;
use vapi_reconciler::resilience::Pacing;
use vapi_reconciler::settings::Settings;
use vapi_reconciler::simulator::{FaultMode, RateLimit};

/// A controller with the production lanes' pacing (adaptive from the default rates, max
/// 500/s) on the tests' other settings, exporting to `metrics`.
fn adaptive(env: &common::TestEnv, metrics: &Metrics, pacing: Pacing) -> Controller {
    let defaults = Settings::default().controller.lanes;
    let mut config = common::loop_config();
    let lanes = &mut config.lanes;
    lanes.pacing = pacing;
    lanes.read_rate = defaults.read_rate;
    lanes.write_rate = defaults.write_rate;
    lanes.read_rate_max = defaults.read_rate_max;
    lanes.write_rate_max = defaults.write_rate_max;
    let vapi = env.vapi.clone().with_metrics(metrics.clone());
    common::controller_with(
        &env.pool,
        &vapi,
        vapi_reconciler::credentials::PlatformKey::fixed(env.key.clone()),
        config,
        PassSettings {
            concurrency: 16,
            ..common::settings()
        },
    )
    .with_metrics(metrics.clone())
}

/// `/readyz` and `/metrics` of `controller`, as `run` serves them.
async fn serve(pool: &PgPool, controller: &Controller, metrics: &Metrics) -> String {
    let platform_key = controller.platform_key().clone();
    common::serve_health(
        pool.clone(),
        controller.subscribe(),
        platform_key,
        metrics.clone(),
    )
    .await
    .0
}

#[sqlx::test]
async fn a_cold_start_finds_an_unknown_limit_with_few_429s(pool: PgPool) {
    const N: usize = 200;
    const LIMIT: f64 = 40.0;
    let env = common::env(pool.clone()).await;
    let org = common::org(&pool, "Harbor").await;
    sqlx::query(
        "insert into agents (org_id, name, spec)
         select $1, 'agent-' || n, jsonb_build_object('firstMessage', 'Hello ' || n)
         from generate_series(1, $2::int) n",
    )
    .bind(org)
    .bind(i32::try_from(N).unwrap())
    .execute(&pool)
    .await
    .unwrap();
    // 40 requests a second per key, burst 4, no Retry-After: the controller starts at 10
    // writes a second and is told nothing else.
    env.sim.set_rate_limit(Some(RateLimit {
        per_second: LIMIT,
        burst: 4,
        retry_after: false,
    }));
    let metrics = Metrics::new("vapi-reconciler").unwrap();
    let controller = adaptive(&env, &metrics, Pacing::Adaptive);
    let base = serve(&pool, &controller, &metrics).await;

    // Passes until every agent is synced: a create that ran out of retries waits for the next
    // one, as in production.
    let cancel = CancellationToken::new();
    let mut passes = 0;
    loop {
        let report = controller.pass(&env.lead, &cancel).await.unwrap();
        passes += 1;
        if report.failed == 0 && report.created + report.in_sync == N {
            break;
        }
        assert!(passes < 10, "not converged: {report:?}");
    }
    // Converged without a duplicate, though POSTs refused with 429 were sent again.
    assert_eq!(env.assistants().len(), N);
    let counters = env.sim.counters();
    let all: u64 = counters.requests.iter().map(|r| r.count).sum();
    let refused = counters.with_status(429);
    assert!(
        refused * 20 <= all,
        "{refused} of {all} calls answered 429: {counters:?}"
    );
    // Every POST Vapi refused was retried, and only those.
    assert_eq!(
        counters.total("POST", "/assistant"),
        N as u64 + counters_of(&counters, "POST", 429)
    );

    // What the controller says its write rate is now: the same on /readyz and the gauge.
    let ready: Value = reqwest::get(format!("{base}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lane = &ready["credentials"][0];
    assert_eq!(lane["fingerprint"], env.key.fingerprint());
    assert_eq!(lane["pacing"]["mode"], "adaptive");
    let write = lane["pacing"]["write"].as_f64().unwrap();
    let read = lane["pacing"]["read"].as_f64().unwrap();
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for stat in ["min", "max"] {
        let series = format!("vapi_reconciler_vapi_rate{{kind=\"write\",stat=\"{stat}\"}}");
        assert_eq!(sample(&text, &series), write, "{series}");
        let series = format!("vapi_reconciler_vapi_rate{{kind=\"read\",stat=\"{stat}\"}}");
        assert_eq!(sample(&text, &series), read, "{series}");
    }
    // Callers queued on 10/s, so the rate grew; within the max.
    assert!(write > 10.0 && write <= 500.0, "write rate {write}");
    // Once Vapi refused, the rate came down to about what it allows (0.1 × start at the lowest).
    if refused > 0 {
        assert!((1.0..2.0 * LIMIT).contains(&write), "write rate {write}");
    }
    // The reads (the listing) never queued long enough to grow.
    assert!((5.0..=10.0).contains(&read), "read rate {read}");
}

fn counters_of(c: &vapi_reconciler::simulator::Counters, method: &str, status: u16) -> u64 {
    c.requests
        .iter()
        .filter(|r| r.method == method && r.status == status)
        .map(|r| r.count)
        .sum()
}

#[sqlx::test]
async fn a_create_refused_with_429_is_sent_again_only_when_pacing_adapts(pool: PgPool) {
    let env = common::env(pool.clone()).await;
    let org = common::org(&pool, "Harbor").await;
    let agent = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    let refuse_once = || {
        env.sim.inject(common::fault(
            Some("POST"),
            Some("/assistant"),
            FaultMode::Respond,
            Some(429),
            Some(1),
        ))
    };
    let metrics = Metrics::new("vapi-reconciler").unwrap();

    // Fixed: a POST is never sent twice; the agent fails and waits for the next pass.
    refuse_once();
    let fixed = adaptive(&env, &metrics, Pacing::Fixed);
    let report = fixed
        .pass(&env.lead, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((report.created, report.failed), (0, 1));
    assert_eq!(common::status(&pool, agent).await.reason, "VapiRateLimited");
    assert_eq!(env.sim.counters().total("POST", "/assistant"), 1);
    assert_eq!(
        fixed.subscribe().borrow().credentials[0].pacing.mode,
        "fixed"
    );

    // Adaptive: a 429 means Vapi did not take it, so the same create goes again.
    env.sim.reset_counters();
    refuse_once();
    let adapting = adaptive(&env, &metrics, Pacing::Adaptive);
    let report = adapting
        .pass(&env.lead, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((report.created, report.failed), (1, 0), "{report:?}");
    let c = env.sim.counters();
    assert_eq!(c.total("POST", "/assistant"), 2);
    assert_eq!(c.with_status(429), 1);
    assert_eq!(env.assistants_of(agent).len(), 1);
    assert_eq!(common::status(&pool, agent).await.state, "synced");
}
