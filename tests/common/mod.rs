//! Test harness: a fresh database per test (from `#[sqlx::test]`), the simulator over real HTTP
//! on 127.0.0.1, and the controller wired to both exactly as `app` wires it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod process;
pub mod relay;
pub mod running;

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vapi_reconciler::app;
use vapi_reconciler::controller::{Controller, LaneConfig, LoopConfig, PassReport, PassSettings};
use vapi_reconciler::credentials::{ApiKey, PlatformKey};
use vapi_reconciler::leader::{Elector, LeaderConfig, Leadership};
use vapi_reconciler::resilience::{Backoff, Pacing, Rate};
use vapi_reconciler::settings::Settings;
use vapi_reconciler::simulator::{RunningSimulator, Simulator};
use vapi_reconciler::store::Store;
use vapi_reconciler::vapi::VapiClient;

pub struct TestEnv {
    pub pool: PgPool,
    pub sim: Simulator,
    pub running: RunningSimulator,
    pub raw_key: String,
    pub key: ApiKey,
    pub vapi_org: String,
    pub vapi: VapiClient,
    pub controller: Controller,
    pub lead: Leadership,
}

/// The tests' settings: the production defaults (`Settings::default()`, as `run` has them)
/// with the test-only changes below, wired by `app` as `run` is.
pub fn test_settings() -> Settings {
    let mut s = Settings {
        leader: leader_config("test/controller"),
        ..Settings::default()
    };
    s.vapi.connect_timeout = Duration::from_secs(2);
    s.vapi.request_timeout = Duration::from_secs(5);
    // Orphans go at once (grace zero).
    s.pass.plan.orphan_grace = chrono::TimeDelta::zero();
    s.controller.jitter = 0.0;
    // Lanes that never get in a test's way unless it asks: generous rates, fast retries. Tests
    // that inject many failures are about other things; the breaker's own tests set a real
    // threshold.
    let lanes = &mut s.controller.lanes;
    lanes.breaker.failure_threshold = 1_000_000;
    lanes.read_rate = Rate {
        per_second: 10_000.0,
        burst: 10_000,
    };
    lanes.write_rate = lanes.read_rate;
    // Fixed rates: a test's call counts and timings do not depend on what pacing learned.
    // tests/pacing.rs is about adaptive pacing and asks for it.
    lanes.pacing = Pacing::Fixed;
    lanes.retries = 2;
    lanes.retry_backoff.base = Duration::from_millis(10);
    lanes.retry_backoff.max = Duration::from_millis(100);
    lanes.retry_after_min = Duration::from_millis(10);
    lanes.retry_after_max = Duration::from_secs(5);
    // No back-off unless a test asks: a failed agent is due again on the very next pass.
    s.controller.agent_backoff = Backoff {
        base: Duration::ZERO,
        max: Duration::ZERO,
        jitter: 0.0,
    };
    s
}

/// The tests' pass settings (see `test_settings`).
pub fn settings() -> PassSettings {
    test_settings().pass
}

pub fn leader_config(holder: &str) -> LeaderConfig {
    LeaderConfig {
        name: "vapi-reconciler".to_owned(),
        holder: holder.to_owned(),
        poll_interval: Duration::from_millis(100),
        renew_interval: Duration::from_millis(200),
        lease: Duration::from_secs(2),
    }
}

pub fn lanes() -> LaneConfig {
    test_settings().controller.lanes
}

pub fn loop_config() -> LoopConfig {
    test_settings().controller
}

pub fn controller(
    pool: &PgPool,
    vapi: &VapiClient,
    key: &ApiKey,
    settings: PassSettings,
) -> Controller {
    controller_with(
        pool,
        vapi,
        PlatformKey::fixed(key.clone()),
        loop_config(),
        settings,
    )
}

pub fn controller_with(
    pool: &PgPool,
    vapi: &VapiClient,
    platform: PlatformKey,
    config: LoopConfig,
    settings: PassSettings,
) -> Controller {
    let mut s = test_settings();
    s.controller = config;
    s.pass = settings;
    app::controller(&s, pool, vapi.clone(), platform)
}

pub async fn env(pool: PgPool) -> TestEnv {
    env_with(pool, settings()).await
}

pub async fn env_with(pool: PgPool, settings: PassSettings) -> TestEnv {
    let sim = Simulator::new();
    let raw_key = Uuid::new_v4().to_string();
    let vapi_org = Uuid::new_v4().to_string();
    sim.add_key(&raw_key, &vapi_org);
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let key = ApiKey::new(&raw_key).unwrap();
    let vapi = client(&running.base_url());
    let controller = controller(&pool, &vapi, &key, settings);
    let lead = Elector::new(
        (*pool.connect_options()).clone(),
        leader_config("test/controller"),
    )
    .try_acquire()
    .await
    .unwrap()
    .expect("a fresh database has no leader");
    assert!(lead.ready(&CancellationToken::new()).await);
    TestEnv {
        pool,
        sim,
        running,
        raw_key,
        key,
        vapi_org,
        vapi,
        controller,
        lead,
    }
}

pub fn client(base_url: &str) -> VapiClient {
    let mut s = test_settings();
    s.vapi.base_url = base_url.to_owned();
    app::vapi_client(&s).unwrap()
}

impl TestEnv {
    pub async fn pass(&self) -> PassReport {
        self.controller
            .pass(&self.lead, &CancellationToken::new())
            .await
            .unwrap()
    }

    /// A controller on this environment's database, simulator and key, configured otherwise.
    pub fn controller_for(&self, config: LoopConfig, settings: PassSettings) -> Controller {
        controller_with(
            &self.pool,
            &self.vapi,
            PlatformKey::fixed(self.key.clone()),
            config,
            settings,
        )
    }

    /// The same environment with other pass settings.
    pub fn reconfigure(&mut self, settings: PassSettings) {
        self.controller = controller(&self.pool, &self.vapi, &self.key, settings);
    }

    /// Assistants in the simulator's org, newest first.
    pub fn assistants(&self) -> Vec<Value> {
        self.sim.assistants(&self.vapi_org)
    }

    pub fn assistant(&self, id: &str) -> Value {
        self.assistants()
            .into_iter()
            .find(|a| a["id"] == id)
            .unwrap_or_else(|| panic!("assistant {id} not in the simulator"))
    }

    /// Assistants whose ownership marker names this agent.
    pub fn assistants_of(&self, agent: Uuid) -> Vec<Value> {
        self.assistants()
            .into_iter()
            .filter(|a| a["metadata"]["agentId"] == agent.to_string())
            .collect()
    }
}

pub async fn org(pool: &PgPool, name: &str) -> Uuid {
    sqlx::query_scalar(
        "insert into organizations (id, name) values (gen_random_uuid(), $1) returning id",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub async fn agent(pool: &PgPool, org: Uuid, name: &str, spec: Value) -> Uuid {
    sqlx::query_scalar("insert into agents (org_id, name, spec) values ($1, $2, $3) returning id")
        .bind(org)
        .bind(name)
        .bind(spec)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A valid, distinct spec.
pub fn spec(n: usize) -> Value {
    json!({
        "firstMessage": format!("Hello from agent {n}."),
        "model": {"provider": "openai", "model": "gpt-4o", "temperature": 0.5, "maxTokens": 300,
                  "messages": [{"role": "system", "content": format!("You are agent {n}.")}]},
        "voice": {"provider": "vapi", "voiceId": "Elliot"},
        "maxDurationSeconds": 600
    })
}

#[derive(Debug, sqlx::FromRow)]
pub struct StatusRow {
    pub assistant_id: Option<String>,
    pub observed_generation: i64,
    pub state: String,
    pub reason: String,
    pub message: String,
    pub drift: Vec<String>,
}

pub async fn status(pool: &PgPool, agent: Uuid) -> StatusRow {
    sqlx::query_as(
        "select assistant_id, observed_generation, state, reason, message, drift
         from agent_status where agent_id = $1",
    )
    .bind(agent)
    .fetch_one(pool)
    .await
    .unwrap()
}

pub async fn generation(pool: &PgPool, agent: Uuid) -> i64 {
    sqlx::query_scalar("select generation from agents where id = $1")
        .bind(agent)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// A fault rule for `count` matching requests (every one when `None`), without `Retry-After`.
pub fn fault(
    method: Option<&str>,
    route: Option<&str>,
    mode: vapi_reconciler::simulator::FaultMode,
    status: Option<u16>,
    count: Option<u32>,
) -> vapi_reconciler::simulator::Fault {
    vapi_reconciler::simulator::Fault {
        method: method.map(str::to_owned),
        route: route.map(str::to_owned),
        mode,
        status,
        retry_after: None,
        count,
    }
}

/// The HTTP server with the `/v1` API (admin token `token`) under `limits`, as `run` wires it,
/// for a controller that does not loop and a Vapi that is unreachable.
pub async fn serve_api(
    pool: &PgPool,
    token: &str,
    limits: vapi_reconciler::http::Limits,
) -> (std::net::SocketAddr, CancellationToken) {
    use vapi_reconciler::api::{AdminToken, Api};
    let vapi = client("http://127.0.0.1:9");
    let key = ApiKey::new("a-test-key").unwrap();
    let controller = std::sync::Arc::new(self::controller(pool, &vapi, &key, settings()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let state = vapi_reconciler::http::HttpState {
        pool: pool.clone(),
        loop_status: controller.subscribe(),
        platform_key: PlatformKey::fixed(key),
        metrics: vapi_reconciler::metrics::Metrics::new("vapi-reconciler").unwrap(),
        api: Some(Api {
            controller,
            store: Store::new(pool.clone()),
            token: AdminToken::new(token),
            wait_timeout: Duration::from_secs(1),
        }),
    };
    tokio::spawn(vapi_reconciler::http::serve_with(
        listener,
        state,
        limits,
        cancel.clone(),
    ));
    (addr, cancel)
}

/// `/healthz`, `/readyz` and `/metrics` (no `/v1`) for `loop_status`, as `run` serves them; the
/// base URL and the token that stops the server.
pub async fn serve_health(
    pool: PgPool,
    loop_status: tokio::sync::watch::Receiver<vapi_reconciler::controller::LoopStatus>,
    platform_key: PlatformKey,
    metrics: vapi_reconciler::metrics::Metrics,
) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    let state = vapi_reconciler::http::HttpState {
        pool,
        loop_status,
        platform_key,
        metrics,
        api: None,
    };
    tokio::spawn(vapi_reconciler::http::serve(
        listener,
        state,
        cancel.clone(),
    ));
    (base, cancel)
}

/// The value of one series in a Prometheus text exposition.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} not in:\n{text}"))
}
