//! Event-driven: a saved agent reaches Vapi at once (not at the 5-minute resync), a small save is
//! one PATCH without a listing, and a change whose notification was lost is caught up when the
//! listening connection comes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::process::eventually;
use common::running::{BOUND, Running};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;
use vapi_reconciler::controller::listen;

/// The state and generation the agent's status records.
async fn status(pool: &PgPool, agent: Uuid) -> Option<(String, i64, Option<String>)> {
    sqlx::query_as(
        "select state, observed_generation, assistant_id from agent_status where agent_id = $1",
    )
    .bind(agent)
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn generation(pool: &PgPool, agent: Uuid) -> i64 {
    sqlx::query_scalar("select generation from agents where id = $1")
        .bind(agent)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Synced at the agent's current generation.
async fn synced(pool: &PgPool, agent: Uuid) -> bool {
    let current = generation(pool, agent).await;
    status(pool, agent)
        .await
        .is_some_and(|(state, observed, _)| state == "synced" && observed == current)
}

async fn set_first_message(pool: &PgPool, agent: Uuid, message: &str) {
    sqlx::query("update agents set spec = jsonb_set(spec, '{firstMessage}', $2) where id = $1")
        .bind(agent)
        .bind(json!(message))
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test]
async fn a_save_wakes_the_controller_and_a_lost_notification_is_caught_up(pool: PgPool) {
    let run = Running::start(&pool).await;

    // The resync interval is 5 minutes: only the notification can bring this agent in time.
    let org = common::org(&pool, "Harbor").await;
    let saved = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    eventually("the saved agent is synced", BOUND, || synced(&pool, saved)).await;

    // A change made while its notification is lost...
    sqlx::query("alter table agents disable trigger agents_notify_insert")
        .execute(&pool)
        .await
        .unwrap();
    let missed = common::agent(&pool, org, "billing", common::spec(2)).await;
    sqlx::query("alter table agents enable trigger agents_notify_insert")
        .execute(&pool)
        .await
        .unwrap();
    let passes = run.status().passes;
    // ...is caught up when the listening connection drops and comes back.
    let dropped: i64 = sqlx::query_scalar(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity
         where datname = current_database() and query like 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dropped, 1, "one listening connection");
    eventually("the missed agent is synced", BOUND, || {
        synced(&pool, missed)
    })
    .await;
    // The status row is written inside the pass; the pass is counted as it returns.
    eventually("the catch-up pass is counted", BOUND, || async {
        run.status().passes > passes
    })
    .await;
}

#[sqlx::test]
async fn a_small_save_is_one_patch_without_a_listing(pool: PgPool) {
    let run = Running::start(&pool).await;
    let org = common::org(&pool, "Harbor").await;
    // New agents have no assistant to stand in for a listing: the focused pass leaves them to a
    // full pass, which creates them.
    let agent = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    let other = common::agent(&pool, org, "billing", common::spec(2)).await;
    for a in [agent, other] {
        eventually("the new agent is synced", BOUND, || synced(&pool, a)).await;
    }
    let (_, _, Some(assistant)) = status(&pool, agent).await.unwrap() else {
        panic!("no assistant recorded")
    };

    let before = run.status();
    let (full, focused) = (run.passes_total("full"), run.passes_total("focused"));
    run.sim.reset_counters();
    set_first_message(&pool, agent, "Welcome back to Harbor.").await;
    eventually("the edit is synced", BOUND, || synced(&pool, agent)).await;
    let c = run.sim.counters();
    assert_eq!(
        (
            c.total("GET", "/assistant"),
            c.total("PATCH", "/assistant/{id}"),
            c.writes()
        ),
        (0, 1, 1),
        "{c:?}"
    );
    // The status row is written inside the pass; the pass is counted as it returns.
    eventually("the focused pass is counted", BOUND, || async {
        run.status().focused_passes > before.focused_passes
    })
    .await;
    let after = run.status();
    assert_eq!(after.passes, before.passes, "no full pass for a small save");
    assert!(
        after.last_focused_pass_finished_at > before.last_focused_pass_finished_at,
        "the focused pass's time is shown: {:?}",
        after.last_focused_pass_finished_at
    );
    assert_eq!(run.passes_total("full"), full);
    assert!(run.passes_total("focused") > focused);
    let shown = run.assistants_of(agent);
    assert_eq!(shown.len(), 1);
    assert_eq!(shown[0]["id"], assistant.as_str());
    assert_eq!(shown[0]["firstMessage"], "Welcome back to Harbor.");
    // Only the saved key was sent: the other keys Vapi holds are as they were.
    assert_eq!(
        shown[0]["model"]["messages"][0]["content"],
        "You are agent 1."
    );
    assert_eq!(
        run.assistants_of(other)[0]["firstMessage"],
        "Hello from agent 2."
    );
}

#[sqlx::test]
async fn a_focused_patch_that_finds_its_assistant_gone_gets_a_full_pass(pool: PgPool) {
    let run = Running::start(&pool).await;
    let org = common::org(&pool, "Harbor").await;
    let agent = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    eventually("the new agent is synced", BOUND, || synced(&pool, agent)).await;
    let (_, _, Some(first)) = status(&pool, agent).await.unwrap() else {
        panic!("no assistant recorded")
    };
    // Deleted in Vapi behind the controller's back; the status still names it.
    assert!(run.sim.delete_out_of_band(&first));
    let passes = run.status().passes;
    set_first_message(&pool, agent, "Welcome back to Harbor.").await;
    eventually("recreated with the edit", BOUND, || async {
        synced(&pool, agent).await
            && status(&pool, agent)
                .await
                .is_some_and(|(_, _, id)| id.is_some_and(|id| id != first))
    })
    .await;
    eventually("the 404 asked for a full pass", BOUND, || async {
        run.status().passes > passes
    })
    .await;
    let shown = run.assistants_of(agent);
    assert_eq!(shown.len(), 1, "one assistant, never a duplicate");
    assert_eq!(shown[0]["firstMessage"], "Welcome back to Harbor.");
}

/// The notification a statement on `agents` sends, if any, within `wait`.
async fn notified(listener: &mut PgListener, wait: Duration) -> Option<String> {
    tokio::time::timeout(wait, listener.recv())
        .await
        .ok()
        .map(|n| n.unwrap().payload().to_owned())
}

#[sqlx::test]
async fn a_small_save_names_its_agents_and_a_large_or_destructive_one_asks_for_everything(
    pool: PgPool,
) {
    let org = common::org(&pool, "Harbor").await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(listen::CHANNEL).await.unwrap();

    let one = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    assert_eq!(
        notified(&mut listener, BOUND).await.as_deref(),
        Some(format!("agents:{one}").as_str())
    );
    set_first_message(&pool, one, "Hi.").await;
    assert_eq!(
        notified(&mut listener, BOUND).await.as_deref(),
        Some(format!("agents:{one}").as_str())
    );

    // 100 rows in one statement are still named; 101 are not.
    let hundred: Vec<Uuid> = sqlx::query_scalar(
        "insert into agents (org_id, name, spec)
         select $1, 'agent-' || n, '{}'::jsonb from generate_series(1, 100) n returning id",
    )
    .bind(org)
    .fetch_all(&pool)
    .await
    .unwrap();
    let payload = notified(&mut listener, BOUND).await.unwrap();
    let mut named: Vec<Uuid> = payload
        .strip_prefix("agents:")
        .unwrap()
        .split(',')
        .map(|id| id.parse().unwrap())
        .collect();
    named.sort();
    let mut want = hundred.clone();
    want.sort();
    assert_eq!(named, want);
    for statement in [
        format!("update agents set management_mode = 'observe' where org_id = '{org}'"),
        format!("delete from agents where id = '{one}'"),
    ] {
        sqlx::query(&statement).execute(&pool).await.unwrap();
        assert_eq!(
            notified(&mut listener, BOUND).await.as_deref(),
            Some("agents"),
            "{statement}"
        );
    }
    // A statement that changed nothing sends nothing; the marker below arrives first.
    sqlx::query("update agents set name = 'x' where false")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("select pg_notify($1, 'marker')")
        .bind(listen::CHANNEL)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        notified(&mut listener, BOUND).await.as_deref(),
        Some("marker")
    );
}
