//! The one place that names concrete types and wires them together.
//!
//! A command line becomes a [`Settings`] (`settings`), and a `Settings` becomes a controller
//! (`controller`), its Vapi client (`vapi_client`) and its elector (`elector`). The demo, the
//! tests and the bench fill in a `Settings` of their own and call the same functions, so what
//! they run is what `run` runs.

use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use crate::api::AdminToken;
use crate::config::{
    BreakerArgs, BreakerCommand, ControllerArgs, DatabaseArgs, GuardArgs, GuardCommand,
    OrphanPolicyArg, PlanArgs, ReconcileArgs, RunArgs, VapiArgs,
};
use crate::controller::{Controller, PassSettings, PlanFilter, PlanView};
use crate::credentials::PlatformKey;
use crate::http::{self, HttpState};
use crate::leader::Elector;
use crate::metrics::Metrics;
use crate::reconcile::guard::GuardSettings;
use crate::reconcile::{OrphanPolicy, PlanSettings, VoiceRules};
use crate::resilience::{BreakerConfig, Rate};
use crate::settings::{DatabaseSettings, Settings, defaults, delta};
use crate::sharding::ShardElector;
use crate::store::{self, MIGRATOR, Store};
use crate::vapi::{ClientConfig, VapiClient};

// Per-organization Vapi keys: the encryption keyring and `org-key` (src/app/org_keys.rs).
mod org_keys;
pub use org_keys::{keyring, org_key};

pub async fn connect(url: &SecretString) -> anyhow::Result<PgPool> {
    Ok(connect_with(url, &DatabaseSettings::default()).await?.0)
}

/// The pool, and the options it was built from (for the leader's dedicated connections).
/// Checks the database with one direct connection first, within the start's time budget.
pub async fn connect_with(
    url: &SecretString,
    settings: &DatabaseSettings,
) -> anyhow::Result<(PgPool, PgConnectOptions)> {
    // The URL may hold a password: errors name the variable, the host and the user, never it.
    let options = PgConnectOptions::from_str(url.expose_secret()).map_err(|e| {
        anyhow::anyhow!(
            "DATABASE_URL / --database-url is not a valid Postgres URL: {}",
            connect_cause(&e)
        )
    })?;
    // One direct attempt first: a pool retries until its timeout and then reports only that,
    // hiding the real cause ("connection refused", "password authentication failed").
    let target = format!(
        "{}:{} (database {:?}, user {:?})",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or(options.get_username()),
        options.get_username()
    );
    match tokio::time::timeout(
        settings.connect_timeout,
        PgConnection::connect_with(&options),
    )
    .await
    {
        Err(_) => bail!(
            "DATABASE_URL / --database-url: no answer from {target} within {}",
            humantime::format_duration(settings.connect_timeout)
        ),
        Ok(Err(e)) => bail!(
            "DATABASE_URL / --database-url: {} at {target}",
            connect_cause(&e)
        ),
        Ok(Ok(conn)) => {
            conn.close().await.ok();
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(options.clone());
    Ok((pool, options))
}

/// Why a connection failed, in the server's or the system's words (never the URL).
fn connect_cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_owned()
        }
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Tls(tls) => format!("TLS: {tls}"),
        other => other.to_string(),
    }
}

pub async fn migrate(args: DatabaseArgs) -> anyhow::Result<()> {
    let pool = connect(&args.database_url).await?;
    MIGRATOR.run(&pool).await.context("applying migrations")?;
    tracing::info!(
        migrations = MIGRATOR.iter().count(),
        "database is up to date"
    );
    Ok(())
}

/// Refuses a database that lacks migrations, unless told to apply them.
async fn ensure_migrated(pool: &PgPool, apply: bool) -> anyhow::Result<()> {
    let missing = store::unapplied_migrations(pool).await?;
    if missing.is_empty() {
        return Ok(());
    }
    if apply {
        MIGRATOR.run(pool).await.context("applying migrations")?;
        tracing::info!(applied = ?missing, "applied migrations");
        return Ok(());
    }
    bail!(
        "the database has {} unapplied migration(s) ({}); run `vapi-reconciler migrate` or start with --migrate",
        missing.len(),
        missing.join(", ")
    )
}

fn platform_key(args: &VapiArgs) -> anyhow::Result<PlatformKey> {
    let env = std::env::var("VAPI_PRIVATE_KEY").ok();
    Ok(PlatformKey::load(
        args.vapi_private_key_file.as_deref(),
        env.as_deref(),
    )?)
}

/// The settings a command line asks for. `resync` is the loop's schedule (`run`); a one-shot
/// command keeps the default, which it never waits on.
pub fn settings(
    args: &ControllerArgs,
    resync: Option<(Duration, f64)>,
) -> anyhow::Result<Settings> {
    let ControllerArgs {
        database,
        vapi,
        pass,
        leader,
        resilience: r,
        vault: _,
    } = args;
    let mut s = Settings {
        vapi: ClientConfig {
            base_url: vapi.vapi_base_url.clone(),
            connect_timeout: vapi.vapi_connect_timeout.into(),
            request_timeout: vapi.vapi_request_timeout.into(),
        },
        ..Settings::default()
    };
    s.database.max_connections = database.database_max_connections;
    s.database.acquire_timeout = database.database_acquire_timeout.into();
    if let Some((interval, jitter)) = resync {
        s.controller.resync_interval = interval;
        s.controller.jitter = jitter;
    }
    s.controller.journal_retention = pass.journal_retention.into();
    let lanes = &mut s.controller.lanes;
    lanes.breaker = BreakerConfig {
        failure_threshold: r.breaker_failures,
        open_base: r.breaker_open_base.into(),
        open_max: r.breaker_open_max.into(),
    };
    lanes.read_rate = Rate {
        per_second: r.vapi_read_rate,
        burst: r.vapi_read_burst,
    };
    lanes.write_rate = Rate {
        per_second: r.vapi_write_rate,
        burst: r.vapi_write_burst,
    };
    lanes.pacing = r.vapi_pacing.pacing();
    lanes.read_rate_max = r
        .vapi_read_rate_max
        .unwrap_or(defaults::VAPI_RATE_MAX.max(r.vapi_read_rate));
    lanes.write_rate_max = r
        .vapi_write_rate_max
        .unwrap_or(defaults::VAPI_RATE_MAX.max(r.vapi_write_rate));
    lanes.retries = r.vapi_retries;
    lanes.retry_backoff.base = r.vapi_retry_backoff_base.into();
    lanes.retry_backoff.max = r.vapi_retry_backoff_max.into();
    lanes.retry_after_max = r.vapi_retry_after_max.into();
    lanes.probe_interval = r.quarantine_probe_interval.into();
    s.controller.agent_backoff.base = r.agent_backoff_base.into();
    s.controller.agent_backoff.max = r.agent_backoff_max.into();
    s.pass = PassSettings {
        concurrency: usize::from(pass.concurrency),
        dry_run: pass.dry_run,
        plan: PlanSettings {
            create_grace: delta(pass.create_grace.into()),
            orphan_grace: delta(pass.orphan_grace.into()),
            orphan_policy: match pass.orphan_policy {
                OrphanPolicyArg::Delete => OrphanPolicy::Delete,
                OrphanPolicyArg::Keep => OrphanPolicy::Keep,
            },
            voices: voice_rules(pass.voice_rules.as_deref())?,
        },
        guard: GuardSettings {
            max_share: pass.guard_max_share,
            min_count: pass.guard_min_count,
        },
    };
    s.leader.name = leader.leader_election_name.clone();
    if let Some(holder) = &leader.holder {
        s.leader.holder = holder.clone();
    }
    s.leader.lease = leader.leader_lease.into();
    s.leader.renew_interval = leader.leader_renew_interval.into();
    s.leader.poll_interval = leader.leader_poll_interval.into();
    s.shards = leader.shards;
    s.key_reload_interval = r.key_reload_interval.into();
    s.controller.lanes.create_send_window = s.create_send_window();
    Ok(s)
}

fn voice_rules(path: Option<&std::path::Path>) -> anyhow::Result<VoiceRules> {
    let Some(path) = path else {
        return Ok(VoiceRules::default());
    };
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "VOICE_RULES_FILE / --voice-rules: cannot read {}",
            path.display()
        )
    })?;
    VoiceRules::from_json(&text)
        .map_err(|e| anyhow::anyhow!("VOICE_RULES_FILE / --voice-rules ({}): {e}", path.display()))
}

/// The Vapi client the settings describe.
pub fn vapi_client(settings: &Settings) -> anyhow::Result<VapiClient> {
    Ok(VapiClient::new(&settings.vapi)?)
}

/// A controller from its settings and its parts: the binary, the demo, the tests and the bench
/// all build theirs here.
pub fn controller(
    settings: &Settings,
    pool: &PgPool,
    vapi: VapiClient,
    key: PlatformKey,
) -> Controller {
    let mut config = settings.controller.clone();
    // Follows the grace, request timeout and lease these settings have, however they were made.
    config.lanes.create_send_window = settings.create_send_window();
    Controller::new(
        Store::new(pool.clone()),
        vapi,
        key,
        config,
        settings.pass.clone(),
        settings.holder().to_owned(),
    )
}

/// The shard elector the settings describe, on its own connections to this database.
pub fn elector(settings: &Settings, pool: &PgPool) -> ShardElector {
    ShardElector::new(
        (*pool.connect_options()).clone(),
        settings.leader.clone(),
        settings.shards,
    )
}

/// Checks the configuration, then the database, then wires a controller and its elector: the
/// key is read before anything is connected, so a missing key fails at once.
async fn build(
    args: &ControllerArgs,
    apply_migrations: bool,
    resync: Option<(Duration, f64)>,
) -> anyhow::Result<(PgPool, Controller, ShardElector, Metrics, Settings)> {
    let key = platform_key(&args.vapi)?;
    let keyring = keyring(&args.vault)?;
    let settings = settings(args, resync)?;
    let metrics = Metrics::new(&settings.leader.name).context("registering metrics")?;
    let client = vapi_client(&settings)?.with_metrics(metrics.clone());
    let (pool, _) = connect_with(&args.database.database_url, &settings.database).await?;
    ensure_migrated(&pool, apply_migrations).await?;
    let elector =
        elector(&settings, &pool).with_proof_age_gauge(metrics.lease_proof_age_seconds.clone());
    let controller = controller(&settings, &pool, client, key)
        .with_keyring(keyring)
        .with_metrics(metrics.clone());
    Ok((pool, controller, elector, metrics, settings))
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let RunArgs {
        controller: args,
        resync_interval,
        resync_jitter,
        listen,
        migrate,
        admin_token_file,
        api_wait_timeout,
        http: http_args,
    } = args;
    let token = admin_token(admin_token_file.as_deref())?;
    let (pool, controller, elector, metrics, settings) = build(
        &args,
        migrate,
        Some((resync_interval.into(), resync_jitter)),
    )
    .await?;
    let controller = std::sync::Arc::new(controller);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");

    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    let state = HttpState {
        pool: pool.clone(),
        loop_status: controller.subscribe(),
        platform_key: controller.platform_key().clone(),
        metrics,
        api: Some(crate::api::Api {
            controller: controller.clone(),
            store: Store::new(pool.clone()),
            token,
            wait_timeout: api_wait_timeout.into(),
        }),
    };
    let server = tokio::spawn(http::serve_with(
        listener,
        state,
        http_args.limits(),
        cancel.clone(),
    ));
    tokio::spawn({
        let controller = controller.clone();
        let (pool, activator, cancel) = (pool.clone(), controller.activator(), cancel.clone());
        async move {
            crate::controller::listen::listen(pool, activator, cancel, |table| {
                controller.on_notified(table);
            })
            .await;
        }
    });
    let activator = controller.activator();
    tokio::spawn(controller.platform_key().clone().watch(
        settings.key_reload_interval,
        cancel.clone(),
        move || activator.activate(),
    ));
    controller.run(&elector, cancel.clone()).await;
    cancel.cancel();
    server.await.context("HTTP server task")??;
    Ok(())
}

/// The admin token for `/v1`: a file wins over `ADMIN_TOKEN`; logged only as a fingerprint.
fn admin_token(file: Option<&std::path::Path>) -> anyhow::Result<Option<AdminToken>> {
    let raw = match file {
        Some(path) => Some(std::fs::read_to_string(path).with_context(|| {
            format!(
                "ADMIN_TOKEN_FILE / --admin-token-file: cannot read {}",
                path.display()
            )
        })?),
        None => std::env::var("ADMIN_TOKEN").ok(),
    };
    let token = raw.as_deref().and_then(AdminToken::new);
    match &token {
        Some(t) => tracing::info!(token = ?t, "the /v1 API is enabled"),
        None => tracing::warn!(
            "no admin token (ADMIN_TOKEN_FILE or ADMIN_TOKEN): the /v1 API refuses every request"
        ),
    }
    Ok(token)
}

pub async fn reconcile_once(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let ReconcileArgs {
        once: _,
        controller: args,
    } = args;
    // One pass only: the interval is never waited on.
    let (pool, controller, elector, _, _) = build(&args, false, None).await?;
    // Every shard or none: a one-shot pass covers every organization.
    let Some(all) = elector.try_acquire_all().await? else {
        let holder = Elector::current(&pool, &elector.lease_name(0))
            .await?
            .filter(|l| l.released_at.is_none())
            .map(|l| format!("{} (epoch {})", l.holder, l.epoch))
            .unwrap_or_else(|| "another replica".to_owned());
        bail!(
            "{holder} holds the lease {:?} (or another of the {} shards, or replicas run with another --shards): one writer at a time, so this pass does not run; trigger a reconcile through a running replica instead",
            elector.lease_name(0),
            elector.count()
        );
    };
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    if !all.ready(&cancel).await {
        all.release().await;
        bail!("leadership was lost or shutdown began before the pass could start");
    }
    let result = controller.pass_owned(&all.ownership(), &cancel).await;
    all.release().await;
    let report = result?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(
        if report.failed == 0
            && report.skipped == 0
            && report.list_error.is_none()
            && report.blocked.is_none()
        {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

pub async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let PlanArgs {
        controller: args,
        org,
        agent,
        json,
    } = args;
    let (_, controller, _, _, _) = build(&args, false, None).await?;
    let view = controller.plan(&PlanFilter { org, agent }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", render_plan(&view));
    }
    Ok(ExitCode::from(view.exit_code()))
}

/// The plan for a terminal.
fn render_plan(view: &PlanView) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let count = |a: &str| view.changes.iter().filter(|c| c.action == a).count();
    let orphans = view
        .orphans
        .iter()
        .filter(|o| o["action"] == "delete")
        .count();
    let _ = writeln!(
        out,
        "Plan: {} to create, {} to patch, {} to recreate, {} to delete, {} to adopt, {} duplicates and {orphans} orphans to delete.",
        count("create"),
        count("patch"),
        count("recreate"),
        count("delete"),
        count("adopt"),
        view.changes
            .iter()
            .map(|c| c.duplicates.len())
            .sum::<usize>(),
    );
    for c in &view.changes {
        let mark = match c.action {
            "create" | "recreate" => "+",
            "delete" | "delete-duplicates" => "-",
            _ => "~",
        };
        let _ = write!(out, "  {mark} {:<17} {} ({})", c.action, c.name, c.agent_id);
        if let Some(a) = &c.assistant_id {
            let _ = write!(out, " assistant {a}");
        }
        if !c.fields.is_empty() {
            let _ = write!(out, ": {}", crate::reconcile::describe_drift(&c.fields));
        }
        if !c.duplicates.is_empty() {
            let _ = write!(out, "; duplicates {}", c.duplicates.join(", "));
        }
        if !c.voice.is_empty() {
            let _ = write!(out, "; voice {}", c.voice.join(", "));
        }
        out.push('\n');
    }
    for c in view.tool_changes.iter().chain(&view.number_changes) {
        let mark = match c.action {
            "create" | "recreate" => "+",
            "delete" | "delete-duplicates" | "unbind" => "-",
            "invalid" | "blocked" | "not-found" | "ambiguous" => "!",
            _ => "~",
        };
        let kind = if c.kind == "tool" { "tool" } else { "number" };
        let _ = write!(
            out,
            "  {mark} {:<17} {kind} {} ({})",
            c.action, c.name, c.id
        );
        if let Some(v) = &c.vapi_id {
            let _ = write!(out, " {v}");
        }
        if !c.fields.is_empty() {
            let _ = write!(out, ": {}", crate::reconcile::describe_drift(&c.fields));
        }
        if !c.detail.is_empty() {
            let _ = write!(out, ": {}", c.detail);
        }
        out.push('\n');
    }
    for b in view.blocked_agents.iter().chain(&view.waiting_agents) {
        let _ = writeln!(out, "  ! {:<17} {}: {}", b.reason, b.agent_id, b.message);
    }
    if view.tool_guard.exceeded() {
        let _ = writeln!(
            out,
            "The blast-radius guard would hold the tools' writes: {} deletes and {} recreates exceed the limit of {}.",
            view.tool_guard.deletes, view.tool_guard.recreates, view.tool_guard.limit
        );
    }
    if view.guard_exceeded {
        let _ = writeln!(
            out,
            "The blast-radius guard would stop this pass: {} deletes and {} recreates exceed the limit of {}.",
            view.guard.deletes, view.guard.recreates, view.guard.limit
        );
    }
    out
}

pub async fn breaker(args: BreakerArgs) -> anyhow::Result<()> {
    let BreakerArgs { database, command } = args;
    let pool = connect(&database.database_url).await?;
    ensure_migrated(&pool, false).await?;
    let store = Store::new(pool);
    match command {
        BreakerCommand::List => {
            println!(
                "{}",
                serde_json::to_string_pretty(&store.credential_health().await?)?
            );
        }
        BreakerCommand::Reset { fingerprint } => {
            if !store.request_breaker_reset(&fingerprint).await? {
                bail!(
                    "no key with fingerprint {fingerprint:?} is known; `vapi-reconciler breaker list` shows them"
                );
            }
            tracing::warn!(fingerprint = %fingerprint, "breaker reset requested; the leader applies it after its current pass");
        }
    }
    Ok(())
}

pub async fn guard(args: GuardArgs) -> anyhow::Result<()> {
    let GuardArgs { database, command } = args;
    let pool = connect(&database.database_url).await?;
    ensure_migrated(&pool, false).await?;
    let store = Store::new(pool);
    match command {
        GuardCommand::List { limit } => {
            let blocks = store.guard_blocks(limit).await?;
            println!("{}", serde_json::to_string_pretty(&blocks)?);
        }
        GuardCommand::Confirm { id, valid_for, by } => {
            let Some(block) = store.confirm_guard_block(id, &by, valid_for.into()).await? else {
                bail!(
                    "there is no guard block with id {id}; `vapi-reconciler guard list` shows them"
                );
            };
            tracing::warn!(block_id = id, deletes = block.deletes, recreates = block.recreates, by = %by, valid_for = %valid_for, "guard block confirmed");
            println!("{}", serde_json::to_string_pretty(&block)?);
        }
    }
    Ok(())
}

/// Cancels on SIGTERM or SIGINT: no new writes start, in-flight calls finish.
pub async fn stop_on_signal(cancel: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: finishing in-flight work"),
        () = term => tracing::info!("SIGTERM: finishing in-flight work"),
    }
    cancel.cancel();
}

pub async fn simulate(args: crate::config::SimulateArgs) -> anyhow::Result<()> {
    use crate::simulator::Simulator;
    let crate::config::SimulateArgs {
        listen,
        keys,
        latency,
    } = args;
    let sim = Simulator::new();
    if keys.is_empty() {
        let key = uuid::Uuid::new_v4().to_string();
        let org = uuid::Uuid::new_v4().to_string();
        sim.add_key(&key, &org);
        // A simulator key opens nothing but this process; printing it is how a user learns it.
        println!("simulator key (for this simulator only): {key}  org: {org}");
    }
    for pair in &keys {
        let Some((key, org)) = pair.split_once('=') else {
            bail!(
                "--key / VAPI_SIM_KEYS entries look like KEY=ORG_ID; one entry has no '=' (fingerprint {})",
                crate::credentials::fingerprint(pair)
            );
        };
        sim.add_key(key.trim(), org.trim());
    }
    sim.set_latency(latency.into());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, keys = keys.len().max(1), "Vapi simulator serving; control API under /_sim");
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    sim.serve(listener, cancel).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::{Cli, Command};

    /// The command line's defaults and `Settings::default()` come from the same constants; this
    /// catches a default changed in one place only (or a flag that no longer reaches a setting).
    #[test]
    fn a_bare_command_line_means_the_default_settings() {
        let cli = Cli::try_parse_from(["vapi-reconciler", "run", "--database-url", "postgres://x"])
            .expect("parse");
        let Command::Run(run) = cli.command else {
            panic!("run")
        };
        let parsed = settings(
            &run.controller,
            Some((run.resync_interval.into(), run.resync_jitter)),
        )
        .expect("settings");
        assert_eq!(format!("{parsed:?}"), format!("{:?}", Settings::default()));
    }

    #[test]
    fn every_flag_reaches_its_setting() {
        let cli = Cli::try_parse_from([
            "vapi-reconciler",
            "run",
            "--database-url",
            "postgres://x",
            "--database-max-connections",
            "21",
            "--database-acquire-timeout",
            "3s",
            "--vapi-retry-backoff-base",
            "50ms",
            "--vapi-retry-backoff-max",
            "2s",
            "--resync-jitter",
            "0",
            "--holder",
            "replica-a",
            "--vapi-pacing",
            "fixed",
            "--vapi-read-rate",
            "600",
            "--vapi-write-rate-max",
            "80",
        ])
        .expect("parse");
        let Command::Run(run) = cli.command else {
            panic!("run")
        };
        let s = settings(
            &run.controller,
            Some((run.resync_interval.into(), run.resync_jitter)),
        )
        .expect("settings");
        assert_eq!(s.database.max_connections, 21);
        assert_eq!(s.database.acquire_timeout, Duration::from_secs(3));
        assert_eq!(
            s.controller.lanes.retry_backoff.base,
            Duration::from_millis(50)
        );
        assert_eq!(s.controller.lanes.retry_backoff.max, Duration::from_secs(2));
        assert_eq!(s.controller.jitter, 0.0);
        assert_eq!(s.holder(), "replica-a");
        let lanes = &s.controller.lanes;
        assert_eq!(lanes.pacing, crate::resilience::Pacing::Fixed);
        // A start above the default max is its own max.
        assert_eq!((lanes.read_rate_max, lanes.write_rate_max), (600.0, 80.0));
    }
}
