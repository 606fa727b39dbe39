//! The loop's schedule and honesty, measured with counters and from outside (the simulator's
//! own request counts, the journal as Postgres holds it):
//! - the periodic backstop runs under a steady stream of saves and repairs an out-of-band edit;
//! - a focused pass never says `synced` while Vapi differs;
//! - nothing that cannot progress costs work: an open breaker, a paused agent after a failure;
//! - the journal holds what reached Vapi: a row before each request, settled after a crash, and
//!   none for calls the controller refused itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::process::eventually;
use common::running::{BOUND, Running};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vapi_reconciler::controller::LoopConfig;
use vapi_reconciler::leader::Elector;
use vapi_reconciler::resilience::{Backoff, BreakerConfig};
use vapi_reconciler::simulator::FaultMode;

async fn generation(pool: &PgPool, agent: Uuid) -> i64 {
    common::generation(pool, agent).await
}

/// The status at the agent's current generation, if the controller has processed it.
async fn current(pool: &PgPool, agent: Uuid) -> Option<common::StatusRow> {
    let generation = generation(pool, agent).await;
    sqlx::query_as(
        "select assistant_id, observed_generation, state, reason, message, drift
         from agent_status where agent_id = $1 and observed_generation = $2",
    )
    .bind(agent)
    .bind(generation)
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn synced(pool: &PgPool, agent: Uuid) -> bool {
    current(pool, agent)
        .await
        .is_some_and(|s| s.state == "synced")
}

async fn set_first_message(pool: &PgPool, agent: Uuid, message: &str) {
    sqlx::query("update agents set spec = jsonb_set(spec, '{firstMessage}', $2) where id = $1")
        .bind(agent)
        .bind(json!(message))
        .execute(pool)
        .await
        .unwrap();
}

/// Vapi answers every PATCH from now on with a 503.
fn patches_fail(sim: &vapi_reconciler::simulator::Simulator) {
    sim.inject(common::fault(
        Some("PATCH"),
        None,
        FaultMode::Respond,
        Some(503),
        None,
    ));
}

/// One statement saves a new greeting for every agent.
async fn save_every_agent(pool: &PgPool) {
    sqlx::query("update agents set spec = jsonb_set(spec, '{firstMessage}', '\"Hi.\"')")
        .execute(pool)
        .await
        .unwrap();
}

fn quick_resync(resync: Duration) -> LoopConfig {
    LoopConfig {
        resync_interval: resync,
        ..common::loop_config()
    }
}

#[sqlx::test]
async fn full_passes_keep_their_schedule_under_steady_saves(pool: PgPool) {
    const RESYNC: Duration = Duration::from_millis(1500);
    let org = common::org(&pool, "Harbor").await;
    let busy = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    let quiet = common::agent(&pool, org, "billing", common::spec(2)).await;
    let run = Running::start_with(&pool, quick_resync(RESYNC), common::settings()).await;
    for a in [busy, quiet] {
        eventually("synced", BOUND, || synced(&pool, a)).await;
    }
    // Someone edits the quiet agent's assistant in the Vapi dashboard: only a full pass sees it.
    let assistant = run.assistants_of(quiet)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(run.sim.edit_out_of_band(
        &assistant,
        json!({"firstMessage": "Edited in the dashboard."})
    ));
    let full_at_edit = run.passes_total("full");
    // A save every 200 ms for three resync intervals.
    let started = Instant::now();
    let mut repaired_by: Option<u64> = None;
    let mut saves = 0;
    while started.elapsed() < 3 * RESYNC {
        saves += 1;
        set_first_message(&pool, busy, &format!("Save number {saves}.")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shown = run.sim.assistant(&assistant).unwrap();
        if repaired_by.is_none() && shown["firstMessage"] == "Hello from agent 2." {
            repaired_by = Some(run.passes_total("full"));
        }
    }
    let full = run.passes_total("full") - full_at_edit;
    let status = run.status();
    assert!(
        full >= 2,
        "{full} full passes in three resync intervals under {saves} saves; loop: role {:?}, epoch {:?}, {} passes started, {} focused, last error {:?}",
        status.role,
        status.epoch,
        status.passes_started,
        status.focused_passes,
        status.last_error
    );
    assert!(
        run.passes_total("focused") > 0,
        "the saves ran focused passes"
    );
    let repaired_by = repaired_by.expect("the out-of-band edit was repaired during the saves");
    assert!(
        repaired_by <= full_at_edit + 1,
        "repaired by the first full pass after the edit (full passes: {full_at_edit} at the edit, {repaired_by} at the repair)"
    );
}

#[sqlx::test]
async fn a_focused_pass_never_says_synced_while_vapi_differs(pool: PgPool) {
    let run = Running::start(&pool).await;
    let org = common::org(&pool, "Harbor").await;
    let agent = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    eventually("synced", BOUND, || synced(&pool, agent)).await;
    let assistant = run.assistants_of(agent)[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The model is changed in Vapi (a bare `model` wipes the prompt), then the agent is saved.
    assert!(run.sim.edit_out_of_band(
        &assistant,
        json!({"model": {"provider": "openai", "model": "gpt-3.5-turbo"}})
    ));
    let full = run.passes_total("full");
    set_first_message(&pool, agent, "Welcome back to Harbor.").await;
    eventually("the save is processed", BOUND, || async {
        current(&pool, agent).await.is_some()
    })
    .await;
    let status = current(&pool, agent).await.unwrap();
    let shown = run.sim.assistant(&assistant).unwrap();
    if status.state == "synced" {
        assert_eq!(
            shown["model"],
            common::spec(1)["model"],
            "synced while Vapi holds another model: {}",
            status.message
        );
        assert_eq!(shown["firstMessage"], "Welcome back to Harbor.");
        assert!(
            status.message.contains("model") && status.message.contains("too"),
            "the status says what else was repaired: {}",
            status.message
        );
        assert!(
            status.drift.iter().any(|d| d.starts_with("model")),
            "{:?}",
            status.drift
        );
    } else {
        assert_eq!(status.state, "pending", "{}", status.message);
        eventually("a full pass repairs it", BOUND, || async {
            run.passes_total("full") > full && synced(&pool, agent).await
        })
        .await;
    }
    assert_eq!(run.assistants_of(agent).len(), 1);
}

/// Lanes whose breaker opens after three failures for one second at a time.
fn tripping(resync: Duration) -> LoopConfig {
    let mut config = quick_resync(resync);
    config.lanes.breaker = BreakerConfig {
        failure_threshold: 3,
        open_base: Duration::from_secs(1),
        open_max: Duration::from_secs(1),
    };
    config.agent_backoff = Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_millis(50),
        jitter: 0.0,
    };
    config
}

#[sqlx::test]
async fn an_open_breaker_costs_one_probe_per_period_and_no_passes_between(pool: PgPool) {
    let org = common::org(&pool, "Harbor").await;
    let mut agents = Vec::new();
    for n in 0..5 {
        agents.push(common::agent(&pool, org, &format!("agent-{n}"), common::spec(n)).await);
    }
    // One write at a time: the first agent's own attempts open the breaker, so it fails (and
    // backs off) while the others are refused locally.
    let mut settings = common::settings();
    settings.concurrency = 1;
    let run = Running::start_with(&pool, tripping(Duration::from_secs(300)), settings).await;
    for a in &agents {
        eventually("synced", BOUND, || synced(&pool, *a)).await;
    }
    // Vapi fails every PATCH from now on: the failures trip the breaker, whose probe (the
    // listing) succeeds and closes it, and the next PATCH opens it again, period after period.
    patches_fail(&run.sim);
    save_every_agent(&pool).await;
    eventually("the breaker opens", BOUND, || async {
        run.status()
            .credentials
            .iter()
            .any(|c| c.breaker.as_str() == "open")
            || run.metrics.breakers.with_label_values(&["open"]).get() > 0
    })
    .await;
    let before = run.status().passes_started + run.status().focused_passes;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let window = started.elapsed();
    let passes = run.status().passes_started + run.status().focused_passes - before;
    let bound = window.as_secs_f64() / 1.0 + 2.0;
    assert!(
        (passes as f64) <= bound,
        "{passes} passes in {window:?} with the breaker open (bound {bound:.1})"
    );
}

#[sqlx::test]
async fn a_paused_agent_after_a_failure_costs_no_more_than_the_schedule(pool: PgPool) {
    const RESYNC: Duration = Duration::from_secs(1);
    let org = common::org(&pool, "Harbor").await;
    let agent = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    let mut config = tripping(RESYNC);
    config.lanes.breaker.failure_threshold = 1_000_000;
    let run = Running::start_with(&pool, config, common::settings()).await;
    eventually("synced", BOUND, || synced(&pool, agent)).await;
    patches_fail(&run.sim);
    set_first_message(&pool, agent, "Hi.").await;
    eventually("the patch failed", BOUND, || async {
        current(&pool, agent)
            .await
            .is_some_and(|s| s.state == "failed")
    })
    .await;
    sqlx::query("update agents set management_mode = 'paused' where id = $1")
        .bind(agent)
        .execute(&pool)
        .await
        .unwrap();
    eventually("paused", BOUND, || async {
        sqlx::query_scalar::<_, String>("select state from agent_status where agent_id = $1")
            .bind(agent)
            .fetch_one(&pool)
            .await
            .unwrap()
            == "paused"
    })
    .await;
    run.sim.reset_counters();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let window = started.elapsed();
    let listings = run.sim.counters().total("GET", "/assistant");
    let bound = window.as_secs_f64() / RESYNC.as_secs_f64() * 1.1 + 2.0;
    assert!(
        (listings as f64) <= bound,
        "{listings} listings in {window:?} for a paused agent (bound {bound:.1} at a {RESYNC:?} resync)"
    );
    assert_eq!(
        run.sim.counters().writes(),
        0,
        "nothing is written for a paused agent"
    );
}

async fn journal(pool: &PgPool) -> Vec<(String, String, Option<String>, Option<Uuid>, String)> {
    sqlx::query_as(
        "select action, outcome, assistant_id, operation_id, why from journal
         where action <> 'adopt' order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn every_write_is_journaled_before_it_is_sent_and_a_crash_is_settled(pool: PgPool) {
    let env = common::env(pool.clone()).await;
    let org = common::org(&pool, "Harbor").await;
    let patched = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    env.pass().await;
    let created = common::agent(&pool, org, "billing", common::spec(2)).await;
    set_first_message(&pool, patched, "Welcome back.").await;
    // Vapi stores the POST and the PATCH, and never answers either: the process dies waiting.
    env.sim.inject(common::fault(
        Some("POST"),
        None,
        FaultMode::CommitThenHang,
        None,
        None,
    ));
    env.sim.inject(common::fault(
        Some("PATCH"),
        None,
        FaultMode::CommitThenHang,
        None,
        None,
    ));
    env.sim.reset_counters();
    let cancel = CancellationToken::new();
    let pass = env.controller.pass(&env.lead, &cancel);
    let watch = async {
        eventually("both requests reached Vapi", BOUND, || async {
            let c = env.sim.counters();
            c.total("POST", "/assistant") == 1 && c.total("PATCH", "/assistant/{id}") == 1
        })
        .await;
    };
    tokio::select! {
        r = pass => panic!("the pass finished although Vapi never answered: {r:?} {:?}", env.sim.counters()),
        () = watch => {}
    }
    // The pass is gone (as with SIGKILL); its writes are in the journal, pending.
    let rows = journal(&pool).await;
    let pending: Vec<_> = rows
        .iter()
        .filter(|r| r.1 == "pending")
        .map(|r| r.0.as_str())
        .collect();
    assert_eq!(
        {
            let mut p = pending.clone();
            p.sort();
            p
        },
        ["create", "patch"],
        "{rows:?}"
    );

    // The next leader (a new epoch) settles them.
    env.sim.clear_faults();
    let next = env.controller_for(common::loop_config(), common::settings());
    let TestLead { lead } = TestLead::take_over(&pool, env.lead).await;
    next.pass(&lead, &CancellationToken::new()).await.unwrap();
    let rows = journal(&pool).await;
    assert!(
        rows.iter().all(|r| r.1 != "pending"),
        "nothing left pending: {rows:?}"
    );
    let adopted: Vec<_> = env
        .sim
        .assistants(&env.vapi_org)
        .into_iter()
        .filter(|a| a["metadata"]["agentId"] == created.to_string())
        .collect();
    assert_eq!(adopted.len(), 1, "no duplicate");
    let create = rows.iter().rfind(|r| r.0 == "create").unwrap();
    assert_eq!(
        create.1, "ok",
        "the create landed and was adopted: {create:?}"
    );
    assert_eq!(create.2.as_deref(), adopted[0]["id"].as_str());
    let patch = rows.iter().rfind(|r| r.0 == "patch").unwrap();
    assert_eq!(patch.1, "unknown", "{patch:?}");
    assert!(synced(&pool, created).await && synced(&pool, patched).await);
}

#[sqlx::test]
async fn calls_refused_locally_are_not_journaled(pool: PgPool) {
    let mut env = common::env(pool.clone()).await;
    let org = common::org(&pool, "Harbor").await;
    let mut agents = Vec::new();
    for n in 0..4 {
        agents.push(common::agent(&pool, org, &format!("agent-{n}"), common::spec(n)).await);
    }
    env.pass().await;
    let mut config = common::loop_config();
    config.lanes.retries = 0;
    config.lanes.breaker = BreakerConfig {
        failure_threshold: 1,
        open_base: Duration::from_secs(60),
        open_max: Duration::from_secs(60),
    };
    // One write at a time, so the first failure opens the breaker before the next is tried.
    let mut settings = common::settings();
    settings.concurrency = 1;
    env.controller = env.controller_for(config, settings);
    patches_fail(&env.sim);
    save_every_agent(&pool).await;
    env.sim.reset_counters();
    let report = env.pass().await;
    let sent = env.sim.counters().total("PATCH", "/assistant/{id}");
    assert_eq!(sent, 1, "the first failure opened the breaker: {report:?}");
    let patches: Vec<(String,)> =
        sqlx::query_as("select outcome from journal where action = 'patch' order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        patches,
        vec![("unknown".to_owned(),)],
        "one journaled write for the one request Vapi saw"
    );
    let refused: i64 = sqlx::query_scalar(
        "select count(*) from agent_status where reason = 'CircuitOpen' and agent_id = any($1)",
    )
    .bind(&agents)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(refused, 3, "the refused ones say so in their status");
}

/// A new leadership epoch after the old leader vanished.
struct TestLead {
    lead: vapi_reconciler::leader::Leadership,
}

impl TestLead {
    async fn take_over(pool: &PgPool, old: vapi_reconciler::leader::Leadership) -> Self {
        let epoch = old.epoch();
        old.release().await;
        let lead = Elector::new(
            (*pool.connect_options()).clone(),
            common::leader_config("test/next"),
        )
        .try_acquire()
        .await
        .unwrap()
        .expect("the lock is free");
        assert!(lead.ready(&CancellationToken::new()).await);
        assert!(lead.epoch() > epoch);
        Self { lead }
    }
}
