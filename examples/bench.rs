//! Benchmark harness: `cargo run --release --example bench -- [--scenario NAME] [--agents N] ...`
//!
//! Each scenario gets its own database (`vr_bench_<random>` on the server of `DATABASE_URL`,
//! dropped at the end), runs the migrations, starts the Vapi simulator in-process on 127.0.0.1
//! (on its own thread and runtime, so its CPU time can be told apart from the controller's) and
//! wires the controller exactly as `tests/common` does. Prints a Markdown table.
//!
//! Scenarios: `cold`, `ratelimited`, `pacing`, `steady`, `tools`, `reaction`, `failover`,
//! `console` (the operator console's pages at 100,000 agents, support/console.rs), `all`
//! (= every one). See
//! docs/benchmarks.md for what each measures and the latest results.
//!
//! `failover` runs two real `vapi-reconciler run` processes (the binary of the same profile,
//! next to this example in the target directory; under `cargo run` the harness first runs
//! `cargo build --bin vapi-reconciler` with the same profile and target directory, so it is never
//! stale; `--binary` names another one) against the in-process simulator, and SIGKILLs the
//! leader, round after round; `--hang freeze` stops it with SIGSTOP instead, and `--hang path`
//! stops a TCP relay (`socat`) between it and Postgres, so the path hangs without closing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/console.rs"]
mod console;
#[path = "support/process.rs"]
mod process;
#[path = "../tests/common/relay.rs"]
mod relay;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use uuid::Uuid;
use vapi_reconciler::app;
use vapi_reconciler::controller::Controller;
use vapi_reconciler::credentials::{ApiKey, PlatformKey};
use vapi_reconciler::leader::{Elector, LeaderConfig, Leadership};
use vapi_reconciler::reconcile::shard::shard_of;
use vapi_reconciler::resilience::{Backoff, Pacing, Rate};
use vapi_reconciler::settings::Settings;
use vapi_reconciler::simulator::{RateLimit, Simulator};
use vapi_reconciler::store::MIGRATOR;
use vapi_reconciler::vapi::{ClientConfig, VapiClient};

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmarks the controller against the in-process Vapi simulator")]
struct Args {
    /// cold | ratelimited | pacing | steady | tools | reaction | failover | console | all
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Agents (default per scenario: cold 10000, ratelimited 2000, pacing 2000, steady 100000,
    /// tools 10000, reaction 100, failover 100, console 100000).
    #[arg(long)]
    agents: Option<usize>,
    /// Simulator latency per request, ms (cold, ratelimited, pacing, reaction, failover).
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Pass concurrency (in-flight Vapi writes; default 64, and cold runs both 32 and 64).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Simulator rate limit per second (ratelimited).
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Simulator rate-limit burst (ratelimited).
    #[arg(long, default_value_t = 20)]
    burst: u32,
    /// Single edits measured (reaction).
    #[arg(long, default_value_t = 200)]
    edits: usize,
    /// Leader kills measured (failover).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// `--leader-lease` of the `run` processes (failover; the binary's default).
    #[arg(long, default_value = "3s")]
    lease: humantime::Duration,
    /// `--leader-renew-interval` of the `run` processes (failover; the binary's default).
    #[arg(long, default_value = "1s")]
    renew: humantime::Duration,
    /// `--leader-poll-interval` of the `run` processes (failover; the binary's default).
    #[arg(long, default_value = "500ms")]
    poll: humantime::Duration,
    /// `--shards` of the `run` processes (failover). Above 1, both replicas own shards; the
    /// agents are spread over 4 organizations per shard, a replica is killed and an agent of one
    /// of its shards edited, and "leads" is the survivor writing for every shard.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// How the leader fails (failover): `kill` (SIGKILL), `freeze` (SIGSTOP, resumed after the
    /// round) or `path` (SIGSTOP of the `socat` relay between it and Postgres, resumed after).
    #[arg(long, default_value = "kill")]
    hang: String,
    /// One more argument for every `run` process (failover; repeatable, in order), e.g.
    /// `--extra-arg=--vapi-write-rate=100`.
    #[arg(long = "extra-arg", allow_hyphen_values = true)]
    extra_args: Vec<String>,
    /// The `vapi-reconciler` binary the failover scenario runs (default: built by the harness,
    /// next to this example).
    #[arg(long)]
    binary: Option<std::path::PathBuf>,
    /// Where `steady` draws its curve (default docs/steady-footprint.svg; only with several sizes).
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Postgres server; the harness creates and drops its own database on it.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

/// One line of the result table.
struct Row {
    scenario: String,
    measured: String,
    bound: String,
    ratio: Option<f64>,
    /// The ratio may not exceed this; a row over it makes the harness exit non-zero.
    goal: Option<f64>,
    note: String,
}

// ---------------------------------------------------------------------------------------------
// Measurement helpers

/// `sqlx::query` events seen (sqlx logs every executed statement there, at debug level).
static QUERIES: AtomicU64 = AtomicU64::new(0);
/// The statements' summaries, while recording (the steady pass lists them on stderr).
static RECORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static SUMMARIES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

struct Summary(Option<String>);

impl tracing::field::Visit for Summary {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "summary" {
            self.0 = Some(value.to_owned());
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "summary" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}

struct CountQueries;

impl<S: tracing::Subscriber> Layer<S> for CountQueries {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() == "sqlx::query" {
            QUERIES.fetch_add(1, Ordering::Relaxed);
            if RECORDING.load(Ordering::Relaxed) {
                let mut summary = Summary(None);
                event.record(&mut summary);
                SUMMARIES
                    .lock()
                    .unwrap()
                    .push(summary.0.unwrap_or_default());
            }
        }
    }
}

fn install_tracing() {
    let counter = CountQueries.with_filter(tracing_subscriber::filter::filter_fn(|m| {
        m.target() == "sqlx::query"
    }));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,sqlx::query=error")),
        );
    tracing_subscriber::registry()
        .with(counter)
        .with(fmt)
        .init();
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Environment: database, simulator, controller (as tests/common wires them)

/// The simulator on its own OS thread with a current-thread runtime.
struct SimThread {
    sim: Simulator,
    base_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimThread {
    fn start(sim: Simulator) -> Self {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let s = sim.clone();
        let thread = std::thread::Builder::new()
            .name("simulator".to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let running = s.start(([127, 0, 0, 1], 0).into()).await.unwrap();
                    tx.send(running.base_url()).unwrap();
                    let _ = stop_rx.await;
                    running.shutdown().await;
                });
            })
            .unwrap();
        let base_url = rx.recv().unwrap();
        Self {
            sim,
            base_url,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Env {
    server: PgConnectOptions,
    db_name: String,
    /// The database's URL, for processes of their own.
    url: String,
    options: PgConnectOptions,
    pool: PgPool,
    sim: SimThread,
    /// The simulator key as Vapi would hand it out (for processes of their own).
    raw_key: String,
    key: ApiKey,
    vapi: VapiClient,
    org: Uuid,
}

/// The production defaults (`Settings::default()`) with tests/common's changes: orphans go at
/// once, no agent back-off, fast retries, a breaker that never opens, and the given rates.
fn bench_settings(concurrency: usize, read: Rate, write: Rate) -> Settings {
    let mut s = Settings {
        leader: leader_config(),
        ..Settings::default()
    };
    s.pass.concurrency = concurrency;
    s.pass.plan.orphan_grace = chrono::TimeDelta::zero();
    s.controller.jitter = 0.0;
    let lanes = &mut s.controller.lanes;
    lanes.breaker.failure_threshold = 1_000_000;
    // Fixed rates: the other scenarios measure at the rates they name (`pacing` asks for
    // adaptive pacing itself).
    lanes.pacing = Pacing::Fixed;
    lanes.read_rate = read;
    lanes.write_rate = write;
    lanes.retries = 2;
    lanes.retry_backoff.base = Duration::from_millis(10);
    lanes.retry_backoff.max = Duration::from_millis(100);
    lanes.retry_after_min = Duration::from_millis(10);
    lanes.retry_after_max = Duration::from_secs(5);
    s.controller.agent_backoff = Backoff {
        base: Duration::ZERO,
        max: Duration::ZERO,
        jitter: 0.0,
    };
    s
}

fn leader_config() -> LeaderConfig {
    LeaderConfig {
        name: "vapi-reconciler".to_owned(),
        holder: "bench/controller".to_owned(),
        poll_interval: Duration::from_millis(100),
        // Slow renewals: the lease's own queries stay out of a short pass's query count.
        renew_interval: Duration::from_secs(10),
        lease: Duration::from_secs(30),
    }
}

fn rate(per_second: f64, burst: u32) -> Rate {
    Rate { per_second, burst }
}

impl Env {
    async fn new(url: &str) -> anyhow::Result<Self> {
        let server = PgConnectOptions::from_str(url)?.disable_statement_logging();
        let db_name = format!("vr_bench_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect_with(&server).await?;
        admin
            .execute(format!("create database {db_name}").as_str())
            .await?;
        admin.close().await?;
        let mut db_url = reqwest::Url::parse(url)?;
        db_url.set_path(&db_name);
        // Statement logging stays on (the default): that is how queries are counted.
        let options = PgConnectOptions::from_str(url)?.database(&db_name);
        let pool = PgPoolOptions::new()
            .max_connections(8) // as `app::connect`
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;

        let sim = Simulator::new();
        let raw_key = Uuid::new_v4().to_string();
        let vapi_org = Uuid::new_v4().to_string();
        sim.add_key(&raw_key, &vapi_org);
        let sim = SimThread::start(sim);
        let key = ApiKey::new(&raw_key)?;
        let vapi = VapiClient::new(&ClientConfig {
            base_url: sim.base_url.clone(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(30),
        })?;
        let org = sqlx::query_scalar(
            "insert into organizations (id, name) values (gen_random_uuid(), 'bench') returning id",
        )
        .fetch_one(&pool)
        .await?;
        Ok(Self {
            server,
            db_name,
            url: db_url.to_string(),
            options,
            pool,
            sim,
            raw_key,
            key,
            vapi,
            org,
        })
    }

    /// `n` valid, distinct agents in one statement.
    async fn insert_agents(&self, n: usize) -> anyhow::Result<()> {
        self.insert_agents_range(1, n).await
    }

    /// Agents `agent-<first>` to `agent-<last>` in one statement.
    async fn insert_agents_range(&self, first: usize, last: usize) -> anyhow::Result<()> {
        sqlx::query(
            "insert into agents (org_id, name, spec)
             select $1, 'agent-' || g, jsonb_build_object(
                 'firstMessage', 'Hello from agent ' || g || '.',
                 'model', jsonb_build_object('provider', 'openai', 'model', 'gpt-4o',
                     'temperature', 0.5, 'maxTokens', 300,
                     'messages', jsonb_build_array(jsonb_build_object(
                         'role', 'system', 'content', 'You are agent ' || g || '.'))),
                 'voice', jsonb_build_object('provider', 'vapi', 'voiceId', 'Elliot'),
                 'maxDurationSeconds', 600)
             from generate_series($3::int, $2::int) g",
        )
        .bind(self.org)
        .bind(i32::try_from(last)?)
        .bind(i32::try_from(first)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Changes an agent's `spec.firstMessage` (the database's trigger bumps `generation`).
    async fn edit_first_message(&self, agent: Uuid, message: &str) -> anyhow::Result<()> {
        sqlx::query(
            "update agents set spec = jsonb_set(spec, '{firstMessage}', to_jsonb($2::text)) where id = $1",
        )
        .bind(agent)
        .bind(message)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Agents synced with an assistant.
    async fn synced(&self) -> anyhow::Result<usize> {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from agent_sync_status where state = 'synced' and assistant_id is not null",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(usize::try_from(n)?)
    }

    fn controller(&self, settings: &Settings) -> Controller {
        app::controller(
            settings,
            &self.pool,
            self.vapi.clone(),
            PlatformKey::fixed(self.key.clone()),
        )
    }

    fn elector(&self) -> Elector {
        Elector::new(self.options.clone(), leader_config())
    }

    async fn lead(&self) -> anyhow::Result<Leadership> {
        let lead = self
            .elector()
            .try_acquire()
            .await?
            .ok_or_else(|| anyhow::anyhow!("a fresh database has no leader"))?;
        anyhow::ensure!(lead.ready(&CancellationToken::new()).await, "not ready");
        Ok(lead)
    }

    async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        self.sim.stop();
        let mut admin = PgConnection::connect_with(&self.server).await?;
        admin
            .execute(format!("drop database if exists {} with (force)", self.db_name).as_str())
            .await?;
        admin.close().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// A cold start at each size and concurrency: N = 2,000 and 10,000, C = 32 and 64 unless
/// `--agents` / `--concurrency` name one.
async fn cold(args: &Args) -> anyhow::Result<Vec<Row>> {
    let sizes = args.agents.map_or(vec![2_000, 10_000], |n| vec![n]);
    let concurrencies = args.concurrency.map_or(vec![32, 64], |c| vec![c]);
    let mut rows = Vec::new();
    for &n in &sizes {
        for &c in &concurrencies {
            rows.push(cold_one(args, n, c).await?);
        }
    }
    Ok(rows)
}

async fn cold_one(args: &Args, n: usize, c: usize) -> anyhow::Result<Row> {
    let latency = Duration::from_millis(args.latency_ms);
    let env = Env::new(&args.database_url).await?;
    env.insert_agents(n).await?;
    env.sim.sim.set_latency(latency);
    let controller = env.controller(&bench_settings(
        c,
        rate(100_000.0, 100_000),
        rate(100_000.0, 100_000),
    ));
    let lead = env.lead().await?;
    let t0 = Instant::now();
    let report = controller.pass(&lead, &CancellationToken::new()).await?;
    let wall = t0.elapsed().as_secs_f64();
    let counters = env.sim.sim.counters();
    let bound = n as f64 * latency.as_secs_f64() / c as f64;
    lead.release().await;
    env.drop().await?;
    Ok(Row {
        scenario: format!("cold (N={n}, L={}ms, C={c})", args.latency_ms),
        measured: format!("{wall:.2} s"),
        bound: format!("N×L/C = {bound:.2} s (goal ≤ 1.15)"),
        ratio: Some(wall / bound),
        goal: Some(1.15),
        note: format!(
            "created {}, failed {}; {} Vapi calls, peak {} in flight",
            report.created,
            report.failed,
            counters.requests.iter().map(|r| r.count).sum::<u64>(),
            counters.peak_in_flight
        ),
    })
}

async fn ratelimited(args: &Args) -> anyhow::Result<Vec<Row>> {
    let n = args.agents.unwrap_or(2_000);
    let r = args.rate;
    let env = Env::new(&args.database_url).await?;
    env.insert_agents(n).await?;
    env.sim
        .sim
        .set_latency(Duration::from_millis(args.latency_ms));
    env.sim.sim.set_rate_limit(Some(RateLimit {
        per_second: r,
        burst: args.burst,
        retry_after: true,
    }));
    // The client spends at 95 % of the server's rate; its own burst stays under the server's
    // (minus one token for the listing), so it never outruns the server's bucket.
    let write_burst = (args.burst / 2).max(1);
    let controller = env.controller(&bench_settings(
        args.concurrency.unwrap_or(64),
        rate(2.0, 2),
        rate(r * 0.95, write_burst),
    ));
    let lead = env.lead().await?;
    let t0 = Instant::now();
    let report = controller.pass(&lead, &CancellationToken::new()).await?;
    let wall = t0.elapsed().as_secs_f64();
    let counters = env.sim.sim.counters();
    let r429 = counters.with_status(429);
    let bound = n as f64 / r;
    lead.release().await;
    env.drop().await?;
    Ok(vec![
        Row {
            scenario: format!("ratelimited (N={n}, R={r}/s, burst {})", args.burst),
            measured: format!("{wall:.2} s"),
            bound: format!("N/R = {bound:.2} s (goal ≤ 1.05)"),
            ratio: Some(wall / bound),
            goal: Some(1.05),
            note: format!(
                "client writes at {:.0}/s (burst {write_burst}); created {}, failed {}",
                r * 0.95,
                report.created,
                report.failed
            ),
        },
        Row {
            scenario: "ratelimited: 429 answers".to_owned(),
            measured: r429.to_string(),
            bound: "0 after the first burst".to_owned(),
            ratio: None,
            goal: None,
            note: format!(
                "{} Vapi calls in all",
                counters.requests.iter().map(|r| r.count).sum::<u64>()
            ),
        },
    ])
}

/// Adaptive pacing against a limit the controller is not told: the simulator allows R requests
/// a second per key (burst R/10, as `ratelimited`'s 20 at 200/s), with and without
/// `Retry-After` on its 429s; N agents (2,000) start cold with the controller at the default
/// rates (reads 5/s, writes 10/s, max 500/s). Passes run back to back until every agent is
/// synced (a create that ran out of retries is tried again by the next pass, as in production);
/// the time is the whole of it.
async fn pacing(args: &Args) -> anyhow::Result<Vec<Row>> {
    let n = args.agents.unwrap_or(2_000);
    let mut rows = Vec::new();
    for r in [20.0, 200.0] {
        for retry_after in [false, true] {
            rows.extend(pacing_one(args, n, r, retry_after).await?);
        }
    }
    Ok(rows)
}

async fn pacing_one(args: &Args, n: usize, r: f64, retry_after: bool) -> anyhow::Result<Vec<Row>> {
    let env = Env::new(&args.database_url).await?;
    env.insert_agents(n).await?;
    env.sim
        .sim
        .set_latency(Duration::from_millis(args.latency_ms));
    let burst = ((r / 10.0) as u32).max(1);
    env.sim.sim.set_rate_limit(Some(RateLimit {
        per_second: r,
        burst,
        retry_after,
    }));
    let defaults = Settings::default().controller.lanes;
    let mut settings = bench_settings(
        args.concurrency.unwrap_or(64),
        defaults.read_rate,
        defaults.write_rate,
    );
    settings.controller.lanes.pacing = Pacing::Adaptive;
    settings.controller.lanes.read_rate_max = defaults.read_rate_max;
    settings.controller.lanes.write_rate_max = defaults.write_rate_max;
    // Production's bounds on Retry-After: the simulator's whole seconds are honoured as given.
    settings.controller.lanes.retry_after_min = defaults.retry_after_min;
    settings.controller.lanes.retry_after_max = defaults.retry_after_max;
    let controller = env.controller(&settings);
    let status = controller.subscribe();
    let lead = env.lead().await?;
    let cancel = CancellationToken::new();
    let t0 = Instant::now();
    let mut passes = 0;
    let mut failed = 0;
    while env.synced().await? < n {
        anyhow::ensure!(passes < 20, "not converged after {passes} passes");
        let report = controller.pass(&lead, &cancel).await?;
        failed += report.failed;
        passes += 1;
    }
    let wall = t0.elapsed().as_secs_f64();
    let counters = env.sim.sim.counters();
    let total: u64 = counters.requests.iter().map(|c| c.count).sum();
    let r429 = counters.with_status(429);
    let write_rate = status
        .borrow()
        .credentials
        .first()
        .map_or(f64::NAN, |l| l.pacing.write);
    lead.release().await;
    env.drop().await?;
    let bound = n as f64 / r;
    let label = if retry_after {
        "with Retry-After"
    } else {
        "no Retry-After"
    };
    let share = r429 as f64 / total.max(1) as f64;
    Ok(vec![
        Row {
            scenario: format!("pacing (N={n}, R={r}/s unknown, burst {burst}, {label})"),
            measured: format!("{wall:.2} s"),
            bound: format!("N/R = {bound:.2} s (goal ≤ 1.15)"),
            ratio: Some(wall / bound),
            goal: Some(1.15),
            note: format!(
                "{passes} pass(es), {failed} agent failures on the way; write rate at the end \
                 {write_rate:.1}/s (start {:.0}/s)",
                defaults.write_rate.per_second
            ),
        },
        Row {
            scenario: format!("pacing (R={r}/s, {label}): 429 share"),
            measured: format!("{r429} of {total}"),
            bound: "≤ 2 % of all calls".to_owned(),
            ratio: Some(share),
            goal: Some(0.02),
            note: "every call counted, retries and listings included".to_owned(),
        },
    ])
}

/// A controller whose first pass (no latency, no pacing to speak of) brought everything in sync.
struct InSync {
    controller: vapi_reconciler::controller::Controller,
    lead: Leadership,
    cancel: CancellationToken,
    setup: vapi_reconciler::controller::PassReport,
    setup_wall: f64,
}

async fn in_sync(env: &Env, args: &Args) -> anyhow::Result<InSync> {
    env.sim.sim.set_latency(Duration::ZERO);
    let controller = env.controller(&bench_settings(
        args.concurrency.unwrap_or(64).max(64),
        rate(100_000.0, 100_000),
        rate(100_000.0, 100_000),
    ));
    let lead = env.lead().await?;
    let cancel = CancellationToken::new();
    let t_setup = Instant::now();
    let setup = controller.pass(&lead, &cancel).await?;
    Ok(InSync {
        controller,
        lead,
        cancel,
        setup,
        setup_wall: t_setup.elapsed().as_secs_f64(),
    })
}

/// Tools per agent in the `tools` scenario.
const TOOLS_PER_AGENT: usize = 6;

/// A steady pass over agents that each call their own 6 tools: the tools are listed (one paged
/// LIST per key), never looked up one by one, so the pass makes no call but the listings.
async fn tools(args: &Args) -> anyhow::Result<Vec<Row>> {
    let n = args.agents.unwrap_or(10_000);
    let env = Env::new(&args.database_url).await?;
    env.insert_agents(n).await?;
    sqlx::query(
        "insert into tools (org_id, name, spec)
         select $1, 'tool-' || g || '-' || k, jsonb_build_object(
             'type', 'function',
             'function', jsonb_build_object('name', 'tool' || k, 'description', 'Tool ' || k || ' of agent ' || g),
             'server', jsonb_build_object('url', 'https://clinic.example/vapi/' || g || '/' || k))
         from generate_series(1, $2::int) g, generate_series(1, $3::int) k",
    )
    .bind(env.org)
    .bind(i32::try_from(n)?)
    .bind(i32::try_from(TOOLS_PER_AGENT)?)
    .execute(&env.pool)
    .await?;
    sqlx::query(
        "update agents set tool_names = array(
             select 'tool-' || substr(name, 7) || '-' || k from generate_series(1, $1::int) k)",
    )
    .bind(i32::try_from(TOOLS_PER_AGENT)?)
    .execute(&env.pool)
    .await?;
    let InSync {
        controller,
        lead,
        cancel,
        setup,
        setup_wall,
    } = in_sync(&env, args).await?;
    let tools = n * TOOLS_PER_AGENT;
    anyhow::ensure!(
        setup.created == n && setup.tools.created == tools,
        "setup pass created {} of {n} assistants and {} of {tools} tools",
        setup.created,
        setup.tools.created
    );
    env.sim.sim.reset_counters();
    let q0 = QUERIES.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let report = controller.pass(&lead, &cancel).await?;
    let wall = t0.elapsed().as_secs_f64();
    let queries = QUERIES.load(Ordering::Relaxed) - q0;
    let counters = env.sim.sim.counters();
    let total: u64 = counters.requests.iter().map(|r| r.count).sum();
    let lists = counters.total("GET", "/assistant") + counters.total("GET", "/tool");
    lead.release().await;
    env.drop().await?;
    Ok(vec![Row {
        scenario: format!("tools steady (N={n}, {TOOLS_PER_AGENT} tools each): Vapi calls"),
        measured: format!("{total} ({lists} LIST)"),
        bound: "the listings, nothing else".to_owned(),
        ratio: Some(total as f64 / lists.max(1) as f64),
        goal: Some(1.0),
        note: format!(
            "{} tools in sync, {} agents in sync, status writes {} + {}; pass wall {wall:.2} s; \
                 {queries} queries; setup cold pass {setup_wall:.1} s",
            report.tools.in_sync, report.in_sync, report.status_writes, report.tools.status_writes
        ),
    }])
}

async fn reaction(args: &Args) -> anyhow::Result<Vec<Row>> {
    let n = args.agents.unwrap_or(100);
    let latency = Duration::from_millis(args.latency_ms);
    let env = Env::new(&args.database_url).await?;
    env.insert_agents(n).await?;
    env.sim.sim.set_latency(latency);
    let settings = bench_settings(
        args.concurrency.unwrap_or(64),
        rate(10_000.0, 10_000),
        rate(10_000.0, 10_000),
    );
    let controller = Arc::new(env.controller(&settings));
    let cancel = CancellationToken::new();
    let elector = app::elector(&settings, &env.pool);
    let mut status = controller.subscribe();
    let run = tokio::spawn({
        let controller = controller.clone();
        let cancel = cancel.clone();
        async move { controller.run(&elector, cancel).await }
    });
    let listen = tokio::spawn(vapi_reconciler::controller::listen::listen(
        env.pool.clone(),
        controller.activator(),
        cancel.clone(),
        |_| {},
    ));

    // Wait for the first pass to create everything, then for the loop to go quiet.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let synced = env.synced().await?;
        if synced == n {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "initial sync did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids: Vec<(Uuid, String)> =
        sqlx::query_as("select agent_id, assistant_id from agent_status order by agent_id")
            .fetch_all(&env.pool)
            .await?;
    let (passes0, focused0) = {
        let s = status.borrow_and_update();
        (s.passes, s.focused_passes)
    };

    env.sim.sim.reset_counters();
    let mut samples = Vec::with_capacity(args.edits);
    let mut timeouts = 0;
    for i in 0..args.edits {
        let (agent, assistant) = &ids[i % ids.len()];
        let message = format!("Edit {i} at {}.", Uuid::new_v4().simple());
        env.edit_first_message(*agent, &message).await?;
        let t0 = Instant::now();
        let done = loop {
            if env
                .sim
                .sim
                .assistant(assistant)
                .is_some_and(|a| a["firstMessage"] == message.as_str())
            {
                break true;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        if done {
            samples.push(t0.elapsed());
        } else {
            timeouts += 1;
        }
    }
    let (passes, focused) = {
        let s = status.borrow();
        (s.passes - passes0, s.focused_passes - focused0)
    };
    let counters = env.sim.sim.counters();
    cancel.cancel();
    let _ = run.await;
    let _ = listen.await;
    drop(controller);
    env.drop().await?;

    samples.sort();
    let pct = |p: f64| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        let i = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    let bound = latency.as_secs_f64() * 1000.0 + 50.0;
    let (p50, p99) = (pct(0.50), pct(0.99));
    let note = format!(
        "{} edits measured, {timeouts} timed out (10 s); {passes} full and {focused} focused passes; Vapi calls during edits: \
         {} LIST, {} PATCH, {} other",
        samples.len(),
        counters.total("GET", "/assistant"),
        counters.total("PATCH", "/assistant/{id}"),
        counters.requests.iter().map(|r| r.count).sum::<u64>()
            - counters.total("GET", "/assistant")
            - counters.total("PATCH", "/assistant/{id}"),
    );
    Ok(vec![
        Row {
            scenario: format!("reaction p50 (N={n}, L={}ms)", args.latency_ms),
            measured: format!("{p50:.1} ms"),
            bound: format!("L + 50 ms = {bound:.0} ms"),
            ratio: Some(p50 / bound),
            goal: Some(1.0),
            note: note.clone(),
        },
        Row {
            scenario: "reaction p99".to_owned(),
            measured: format!("{p99:.1} ms"),
            bound: format!("L + 50 ms = {bound:.0} ms"),
            ratio: Some(p99 / bound),
            goal: Some(1.0),
            note: format!(
                "max {:.1} ms",
                samples
                    .last()
                    .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
            ),
        },
    ])
}

// ---------------------------------------------------------------------------------------------
// Failover: real `vapi-reconciler run` processes

/// The `vapi-reconciler` binary for the failover scenario: `--binary`, else the one of this
/// example's profile. Under `cargo run` (which sets `CARGO`) it is built first with the same
/// profile and target directory (a no-op when it is up to date), so it is never older than the
/// sources; run directly, it must exist already (`cargo build --release` first).
fn reconciler_binary(args: &Args) -> anyhow::Result<std::path::PathBuf> {
    if let Some(bin) = &args.binary {
        anyhow::ensure!(bin.is_file(), "--binary {}: no such file", bin.display());
        return Ok(bin.clone());
    }
    let exe = std::env::current_exe()?;
    // <target>/<profile>/examples/bench
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .ok_or_else(|| anyhow::anyhow!("cannot tell the profile directory of {}", exe.display()))?;
    let bin = profile_dir.join("vapi-reconciler");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("release");
        let target_dir = profile_dir.parent().unwrap_or(profile_dir);
        let mut build = std::process::Command::new(cargo);
        // What `cargo run` set for this example is not the caller's environment: a build script
        // that watches one of these (ring's watches CARGO_MANIFEST_DIR) would otherwise rebuild
        // half the dependency tree here and again at the caller's next `cargo build`.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || matches!(
                    &*name,
                    "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "OUT_DIR"
                )
            {
                build.env_remove(&*name);
            }
        }
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", target_dir)
            .args(["build", "--quiet", "--bin", "vapi-reconciler"]);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        eprintln!("failover: building the vapi-reconciler binary ({profile}) ...");
        let status = build.status()?;
        anyhow::ensure!(
            status.success(),
            "building vapi-reconciler failed: {status}"
        );
    }
    anyhow::ensure!(
        bin.is_file(),
        "{} is missing: run `cargo build --release --bin vapi-reconciler` first, run the \
         harness with `cargo run --release --example bench`, or pass --binary",
        bin.display()
    );
    Ok(bin)
}

/// How every `run` process of the failover scenario is started.
struct Launch {
    bin: std::path::PathBuf,
    url: String,
    /// `--hang path`: each process reaches Postgres through a relay of its own.
    relayed: bool,
    base_url: String,
    key: String,
    /// After `run --listen … --holder …`: the leader timings and `--extra-arg`s.
    args: Vec<String>,
    log_dir: std::path::PathBuf,
}

/// One `vapi-reconciler run` process; killed (SIGKILL) when dropped.
struct Replica {
    holder: String,
    addr: std::net::SocketAddr,
    child: tokio::process::Child,
    relay: Option<relay::Relay>,
}

impl Launch {
    fn log_path(&self, holder: &str) -> std::path::PathBuf {
        self.log_dir.join(format!("{holder}.log"))
    }

    async fn spawn(&self, holder: &str) -> anyhow::Result<Replica> {
        let relay = if self.relayed {
            let target = reqwest::Url::parse(&self.url)?;
            let target = format!(
                "{}:{}",
                target.host_str().unwrap_or("127.0.0.1"),
                target.port().unwrap_or(5432)
            );
            Some(relay::Relay::start(&target).await)
        } else {
            None
        };
        let url = relay
            .as_ref()
            .map_or(self.url.clone(), |r| r.url(&self.url));
        // A free port, released just before the process binds it.
        let addr = std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(holder))?;
        let child = tokio::process::Command::new(&self.bin)
            .arg("run")
            .args(["--listen", &addr.to_string(), "--holder", holder])
            .args(&self.args)
            .env("DATABASE_URL", &url)
            .env("VAPI_BASE_URL", &self.base_url)
            .env("VAPI_PRIVATE_KEY", &self.key)
            .env_remove("VAPI_PRIVATE_KEY_FILE")
            .env_remove("RUST_LOG")
            .env_remove("LOG_FORMAT")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Replica {
            holder: holder.to_owned(),
            addr,
            child,
            relay,
        })
    }
}

impl Replica {
    /// SIGKILL, then reap (resumed first, so a stopped relay lets nothing linger).
    async fn kill(&mut self) {
        if let Some(relay) = &self.relay {
            relay.thaw();
        }
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("the replica has exited")?;
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} {pid}");
        Ok(())
    }

    /// Makes it fail as `hang` says.
    fn fail(&mut self, hang: Hang) -> anyhow::Result<()> {
        match hang {
            Hang::Kill => self.child.start_kill()?,
            Hang::Freeze => self.signal("-STOP")?,
            Hang::Path => self.relay.as_ref().context("no relay")?.freeze(),
        }
        Ok(())
    }

    /// Resumes what `fail` stopped (a killed one is reaped; the caller starts it again).
    async fn resume(&mut self, hang: Hang) -> anyhow::Result<()> {
        match hang {
            Hang::Kill => {
                let _ = self.child.wait().await;
            }
            Hang::Freeze => self.signal("-CONT")?,
            Hang::Path => self.relay.as_ref().context("no relay")?.thaw(),
        }
        Ok(())
    }
}

/// How the failover scenario's leader fails.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hang {
    Kill,
    Freeze,
    Path,
}

impl Hang {
    fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "kill" => Ok(Self::Kill),
            "freeze" => Ok(Self::Freeze),
            "path" => Ok(Self::Path),
            other => anyhow::bail!("unknown --hang {other:?}: kill, freeze or path"),
        }
    }

    /// How the event is named in the table.
    fn event(self) -> &'static str {
        match self {
            Self::Kill => "SIGKILL",
            Self::Freeze => "SIGSTOP",
            Self::Path => "path SIGSTOP",
        }
    }
}

/// The `role` a replica's `/readyz` reports, `None` while it does not answer "ready".
async fn role(http: &reqwest::Client, addr: std::net::SocketAddr) -> Option<String> {
    let response = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: serde_json::Value = response.json().await.ok()?;
    body["role"].as_str().map(str::to_owned)
}

/// Polls `/readyz` of `addr` every 5 ms until it reports `want`; the time since `since`.
async fn until_role(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    want: &str,
    since: Instant,
    bound: Duration,
) -> Option<Duration> {
    loop {
        if role(http, addr).await.as_deref() == Some(want) {
            return Some(since.elapsed());
        }
        if since.elapsed() > bound {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Exactly one replica leads and the others stand by: the leader's index.
async fn find_leader(http: &reqwest::Client, replicas: &[Replica]) -> anyhow::Result<usize> {
    let t0 = Instant::now();
    loop {
        let mut roles = Vec::with_capacity(replicas.len());
        for r in replicas {
            roles.push(role(http, r.addr).await);
        }
        let leaders: Vec<usize> = (0..roles.len())
            .filter(|&i| roles[i].as_deref() == Some("leader"))
            .collect();
        let standbys = roles
            .iter()
            .filter(|r| r.as_deref() == Some("standby"))
            .count();
        if leaders.len() == 1 && standbys + 1 == replicas.len() {
            return Ok(leaders[0]);
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "no single leader within 60 s: roles {roles:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The shards `addr` writes for, per its `/readyz`.
async fn shards_writing(http: &reqwest::Client, addr: std::net::SocketAddr) -> Option<Vec<u32>> {
    let body: serde_json::Value = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        body["shards"]
            .as_array()?
            .iter()
            .filter(|l| l["writing"] == true)
            .filter_map(|l| l["shard"].as_u64().and_then(|s| u32::try_from(s).ok()))
            .collect(),
    )
}

/// Waits until every replica writes for its share of the shards, and all are owned.
async fn until_balanced(
    http: &reqwest::Client,
    replicas: &[Replica],
    shards: u32,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let share = shards.div_ceil(u32::try_from(replicas.len())?) as usize;
    loop {
        let mut held = Vec::new();
        for r in replicas {
            held.push(shards_writing(http, r.addr).await.unwrap_or_default());
        }
        let total: usize = held.iter().map(Vec::len).sum();
        if total == shards as usize && held.iter().all(|h| h.len() <= share && !h.is_empty()) {
            return Ok(());
        }
        anyhow::ensure!(
            t0.elapsed() < Duration::from_secs(60),
            "shards not balanced within 60 s: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `/readyz` of `addr` every 5 ms until it writes for every shard; the time since `since`.
async fn until_all_shards(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    shards: u32,
    since: Instant,
    bound: Duration,
) -> Option<Duration> {
    loop {
        if shards_writing(http, addr).await.map(|s| s.len()) == Some(shards as usize) {
            return Some(since.elapsed());
        }
        if since.elapsed() > bound {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One measured leader kill.
struct Round {
    /// SIGKILL → the survivor's /readyz says leader.
    leads: Duration,
    /// SIGKILL → the edit is in the simulator.
    visible: Duration,
    /// SIGKILL → the survivor's lock (its `leader_lease.acquired_at`, same host clock).
    lock: Duration,
    /// SIGKILL → the UPDATE committed.
    commit: Duration,
}

async fn failover(args: &Args) -> anyhow::Result<Vec<Row>> {
    let n = args.agents.unwrap_or(100);
    anyhow::ensure!(
        n > 0 && args.rounds > 0,
        "failover needs --agents and --rounds above 0"
    );
    let bin = reconciler_binary(args)?;
    let log_dir =
        std::env::temp_dir().join(format!("vr_bench_failover_{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&log_dir)?;
    let env = Env::new(&args.database_url).await?;
    let mut launch_args = vec![
        "--leader-lease".to_owned(),
        args.lease.to_string(),
        "--leader-renew-interval".to_owned(),
        args.renew.to_string(),
        "--leader-poll-interval".to_owned(),
        args.poll.to_string(),
        "--shards".to_owned(),
        args.shards.to_string(),
    ];
    launch_args.extend(args.extra_args.iter().cloned());
    let hang = Hang::parse(&args.hang)?;
    let launch = Launch {
        bin,
        url: env.url.clone(),
        relayed: hang == Hang::Path,
        base_url: env.sim.base_url.clone(),
        key: env.raw_key.clone(),
        args: launch_args,
        log_dir: log_dir.clone(),
    };
    let mut replicas = Vec::new();
    let outcome = tokio::select! {
        outcome = failover_rounds(args, n, &env, &launch, &mut replicas) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    // No process outlives the scenario, whatever happened.
    for r in &mut replicas {
        r.kill().await;
    }
    drop(replicas);
    env.drop().await?;
    match outcome {
        Ok(rows) => {
            let _ = std::fs::remove_dir_all(&log_dir);
            Ok(rows)
        }
        Err(e) => Err(e.context(format!("the processes' logs are in {}", log_dir.display()))),
    }
}

async fn failover_rounds(
    args: &Args,
    n: usize,
    env: &Env,
    launch: &Launch,
    replicas: &mut Vec<Replica>,
) -> anyhow::Result<Vec<Row>> {
    let latency = Duration::from_millis(args.latency_ms);
    let bound = Duration::from_secs(30);
    env.insert_agents(n).await?;
    if args.shards > 1 {
        // Organizations in every shard: the agents are spread over 4 per shard.
        let orgs: Vec<Uuid> = sqlx::query_scalar(
            "insert into organizations (id, name)
             select gen_random_uuid(), 'bench org ' || g from generate_series(1, $1::int) g
             returning id",
        )
        .bind(i32::try_from(4 * args.shards)?)
        .fetch_all(&env.pool)
        .await?;
        sqlx::query(
            "with numbered as (select id, row_number() over (order by id) as r from agents)
             update agents a set org_id = ($1::uuid[])[1 + (n.r % cardinality($1::uuid[]))]
             from numbered n where a.id = n.id",
        )
        .bind(&orgs)
        .execute(&env.pool)
        .await?;
    }
    env.sim.sim.set_latency(latency);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let hang = Hang::parse(&args.hang)?;
    for holder in ["bench-a", "bench-b"] {
        replicas.push(launch.spawn(holder).await?);
    }

    // Converged first: every agent synced by whichever replica leads.
    let t_setup = Instant::now();
    loop {
        let synced = env.synced().await?;
        if synced == n {
            break;
        }
        for r in replicas.iter_mut() {
            if let Some(status) = r.child.try_wait()? {
                anyhow::bail!("{} exited during the initial sync: {status}", r.holder);
            }
        }
        anyhow::ensure!(
            t_setup.elapsed() < Duration::from_secs(600),
            "initial sync did not finish: {synced} of {n} synced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let setup = t_setup.elapsed();
    let ids: Vec<(Uuid, String, Uuid)> = sqlx::query_as(
        "select s.agent_id, s.assistant_id, a.org_id from agent_status s
         join agents a on a.id = s.agent_id order by s.agent_id",
    )
    .fetch_all(&env.pool)
    .await?;
    let sharded = args.shards > 1;

    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        // One shard: the leader dies. Several: each replica in turn, once both own shards.
        let victim = if sharded {
            until_balanced(&http, replicas, args.shards).await?;
            round % replicas.len()
        } else {
            find_leader(&http, replicas).await?
        };
        let survivor = 1 - victim;
        // Let the standby's poll loop run for a while: its phase against the kill is arbitrary.
        let settle = 1000 + rand::random_range(0..500);
        tokio::time::sleep(Duration::from_millis(settle)).await;
        let victim_shards = if sharded {
            until_balanced(&http, replicas, args.shards).await?;
            shards_writing(&http, replicas[victim].addr)
                .await
                .unwrap_or_default()
        } else {
            anyhow::ensure!(
                find_leader(&http, replicas).await? == victim,
                "the leader changed while settling"
            );
            vec![0]
        };
        let candidates: Vec<&(Uuid, String, Uuid)> = ids
            .iter()
            .filter(|(_, _, org)| victim_shards.contains(&shard_of(*org, args.shards)))
            .collect();
        anyhow::ensure!(!candidates.is_empty(), "no agent in the victim's shards");
        let (agent, assistant, org) = candidates[round % candidates.len()];
        let lease = if sharded {
            format!("vapi-reconciler/shard-{}", shard_of(*org, args.shards))
        } else {
            "vapi-reconciler".to_owned()
        };
        let message = format!("Failover {round} at {}.", Uuid::new_v4().simple());
        let killed_at = chrono::Utc::now();
        let t0 = Instant::now();
        replicas[victim].fail(hang)?;
        env.edit_first_message(*agent, &message).await?;
        let commit = t0.elapsed();
        let leads = tokio::spawn({
            let http = http.clone();
            let addr = replicas[survivor].addr;
            let shards = args.shards;
            async move {
                if shards > 1 {
                    until_all_shards(&http, addr, shards, t0, bound).await
                } else {
                    until_role(&http, addr, "leader", t0, bound).await
                }
            }
        });
        let visible = loop {
            if env
                .sim
                .sim
                .assistant(assistant)
                .is_some_and(|a| a["firstMessage"] == message.as_str())
            {
                break Some(t0.elapsed());
            }
            if t0.elapsed() > bound {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let leads = leads.await?;
        let (Some(visible), Some(leads)) = (visible, leads) else {
            anyhow::bail!(
                "round {}: after {bound:?} the survivor {} leads: {}, the edit is in Vapi: {}",
                round + 1,
                replicas[survivor].holder,
                leads.is_some(),
                visible.is_some()
            );
        };
        let (holder, acquired_at): (String, chrono::DateTime<chrono::Utc>) =
            sqlx::query_as("select holder, acquired_at from leader_lease where name = $1")
                .bind(&lease)
                .fetch_one(&env.pool)
                .await?;
        anyhow::ensure!(
            holder == replicas[survivor].holder,
            "round {}: the lease {lease} names {holder}, not the survivor {}",
            round + 1,
            replicas[survivor].holder
        );
        let lock = (acquired_at - killed_at).to_std().unwrap_or_default();
        eprintln!(
            "failover round {}: {} {}; {lease} taken after {:.0} ms, leader after {:.0} ms, \
             edit in Vapi after {:.0} ms",
            round + 1,
            hang.event(),
            replicas[victim].holder,
            lock.as_secs_f64() * 1000.0,
            leads.as_secs_f64() * 1000.0,
            visible.as_secs_f64() * 1000.0
        );
        rounds.push(Round {
            leads,
            visible,
            lock,
            commit,
        });

        // The killed one comes back, the hung one resumes (as the standby, or to take its share
        // of the shards back).
        replicas[victim].resume(hang).await?;
        let holder = replicas[victim].holder.clone();
        if hang == Hang::Kill {
            replicas[victim] = launch.spawn(&holder).await?;
        }
        let back = replicas[victim].addr;
        if !sharded {
            anyhow::ensure!(
                until_role(&http, back, "standby", Instant::now(), bound)
                    .await
                    .is_some(),
                "the restarted {holder} did not stand by within {bound:?}"
            );
        }
    }
    Ok(failover_rows(args, n, setup, &rounds))
}

fn failover_rows(args: &Args, n: usize, setup: Duration, rounds: &[Round]) -> Vec<Row> {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let secs = |d: Duration| d.as_secs_f64();
    let median = |mut v: Vec<Duration>| -> Duration {
        v.sort();
        // Nearest rank, as the reaction scenario's percentiles.
        v.get(v.len().div_ceil(2).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    let mean = |v: Vec<Duration>| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64
    };
    let visible: Vec<Duration> = rounds.iter().map(|r| r.visible).collect();
    let leads: Vec<Duration> = rounds.iter().map(|r| r.leads).collect();
    let list = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", secs(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hang = Hang::parse(&args.hang).unwrap_or(Hang::Kill);
    let event = hang.event();
    let lease = Duration::from(args.lease);
    let poll = Duration::from(args.poll);
    // A crash frees the lock at once: the lease wait and a poll. A hang frees it only once the
    // heartbeat is a lease old: one lease more (src/leader.rs, "A hung holder").
    let (leads_bound, leads_formula) = match hang {
        Hang::Kill => (secs(lease + poll), "lease + poll"),
        Hang::Freeze | Hang::Path => (secs(lease * 2 + poll), "2 × lease + poll"),
    };
    // The edit also waits for one pass after the takeover.
    let goal = match hang {
        Hang::Kill => 5.0,
        Hang::Freeze | Hang::Path => leads_bound + 1.0,
    };
    let (v50, vmax) = (
        secs(median(visible.clone())),
        secs(visible.iter().max().copied().unwrap_or_default()),
    );
    let (l50, lmax) = (
        secs(median(leads.clone())),
        secs(leads.iter().max().copied().unwrap_or_default()),
    );
    let lock_mean = mean(rounds.iter().map(|r| r.lock).collect());
    let lock_max = rounds.iter().map(|r| ms(r.lock)).fold(0.0, f64::max);
    let pass_mean = mean(
        rounds
            .iter()
            .map(|r| r.visible.saturating_sub(r.leads))
            .collect(),
    );
    let commit_max = rounds.iter().map(|r| ms(r.commit)).fold(0.0, f64::max);
    let k = rounds.len();
    let (who, leads_what) = if args.shards > 1 {
        (
            format!(", shards {}: a shard owner killed", args.shards),
            "writes for every shard",
        )
    } else {
        (String::new(), "says leader")
    };
    vec![
        Row {
            scenario: format!(
                "failover p50: {event} → edit in Vapi (N={n}, L={}ms, K={k}{who})",
                args.latency_ms
            ),
            measured: format!("{v50:.2} s"),
            bound: format!("< {goal:.1} s"),
            ratio: Some(v50 / goal),
            goal: Some(1.0),
            note: format!(
                "lease {} waited after the takeover + lock taken {lock_mean:.0} ms after the {event} \
                 (mean, max {lock_max:.0}; poll {}) + one pass after taking over, \
                 {pass_mean:.0} ms (mean; LIST + PATCH at L); edit committed ≤ {commit_max:.0} ms \
                 after the {event}; setup sync {:.1} s",
                args.lease,
                args.poll,
                secs(setup)
            ),
        },
        Row {
            scenario: format!("failover max: {event} → edit in Vapi"),
            measured: format!("{vmax:.2} s"),
            bound: format!("< {goal:.1} s"),
            ratio: Some(vmax / goal),
            goal: Some(1.0),
            note: format!("rounds: {} s", list(&visible)),
        },
        Row {
            scenario: format!("failover p50: {event} → survivor's /readyz {leads_what}"),
            measured: format!("{l50:.2} s"),
            bound: format!("{leads_formula} = {leads_bound:.2} s"),
            ratio: Some(l50 / leads_bound),
            goal: None,
            note: format!(
                "/readyz polled every 5 ms; renew {}; rounds: {} s",
                args.renew,
                list(&leads)
            ),
        },
        Row {
            scenario: format!("failover max: {event} → survivor leads"),
            measured: format!("{lmax:.2} s"),
            bound: format!("{leads_formula} = {leads_bound:.2} s"),
            ratio: Some(lmax / leads_bound),
            goal: None,
            note: "the role turns leader after the lease wait, before the first pass".to_owned(),
        },
    ]
}

fn print_table(rows: &[Row]) {
    println!("| scenario | measured | bound/goal | ratio | note |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.scenario,
            r.measured,
            r.bound,
            r.ratio.map_or("–".to_owned(), |x| format!("{x:.2}")),
            r.note
        );
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    // Re-executed as the measuring parent of one controller process (see support/process.rs).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "--rusage-of") {
        return process::rusage_main(&argv[2..]);
    }
    install_tracing();
    let args = Args::parse();
    let scenarios: Vec<&str> = match args.scenario.as_str() {
        "all" => vec![
            "cold",
            "ratelimited",
            "pacing",
            "steady",
            "tools",
            "reaction",
            "failover",
            "console",
        ],
        s @ ("cold" | "ratelimited" | "pacing" | "steady" | "tools" | "reaction" | "failover"
        | "console") => {
            vec![s]
        }
        other => {
            anyhow::bail!(
                "unknown scenario {other:?}: cold, ratelimited, pacing, steady, tools, reaction, failover, console or all"
            )
        }
    };
    let mut rows = Vec::new();
    for s in scenarios {
        eprintln!("running {s} ...");
        let t = Instant::now();
        let mut r = match s {
            "cold" => cold(&args).await?,
            "ratelimited" => ratelimited(&args).await?,
            "pacing" => pacing(&args).await?,
            "steady" => process::steady(&args).await?,
            "tools" => tools(&args).await?,
            "reaction" => reaction(&args).await?,
            "console" => console::console(&args).await?,
            _ => failover(&args).await?,
        };
        eprintln!("{s} done in {:.1} s", t.elapsed().as_secs_f64());
        rows.append(&mut r);
    }
    print_table(&rows);
    let missed: Vec<&Row> = rows
        .iter()
        .filter(|r| {
            r.ratio
                .zip(r.goal)
                .is_some_and(|(x, g)| x > g || x.is_nan())
        })
        .collect();
    if missed.is_empty() {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    for r in &missed {
        eprintln!(
            "goal missed: {}: ratio {:.2} > {:.2}",
            r.scenario,
            r.ratio.unwrap_or(f64::NAN),
            r.goal.unwrap_or(f64::NAN)
        );
    }
    Ok(std::process::ExitCode::FAILURE)
}
