//! Duplicate safety in one process: lost creates, duplicates, orphans, deletion, modes, dry-run,
//! the blast-radius guard and fencing — real Postgres, the simulator over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{agent, env, env_with, org, settings, spec, status};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vapi_reconciler::controller::PassSettings;
use vapi_reconciler::credentials::ApiKey;
use vapi_reconciler::reconcile::{MANAGED_BY, OrphanPolicy};
use vapi_reconciler::simulator::{Fault, FaultMode};
use vapi_reconciler::store::Store;

fn post_fault(mode: FaultMode, status: Option<u16>, count: u32) -> Fault {
    Fault {
        method: Some("POST".into()),
        route: Some("/assistant".into()),
        mode,
        status,
        retry_after: None,
        count: Some(count),
    }
}

/// How many assistants in the simulator carry each agent's marker.
fn per_agent(assistants: &[Value]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for a in assistants {
        if a["metadata"]["managedBy"] == MANAGED_BY {
            *out.entry(a["metadata"]["agentId"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    out
}

async fn journal(pool: &PgPool) -> Vec<(String, String, Option<String>, Option<Uuid>, String)> {
    sqlx::query_as(
        "select action, outcome, assistant_id, operation_id, why from journal order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn a_hundred_creates_whose_answers_are_lost_become_a_hundred_adoptions(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let mut agents = Vec::new();
    for n in 0..100 {
        agents.push(agent(&pool, org, &format!("agent-{n}"), spec(n)).await);
    }
    // Every POST is stored by Vapi, and every answer is lost: a 502 for half, a dropped
    // connection for the other half.
    env.sim
        .inject(post_fault(FaultMode::CommitThenFail, Some(502), 50));
    env.sim
        .inject(post_fault(FaultMode::CommitThenDrop, None, 50));
    let report = env.pass().await;
    assert_eq!(
        (report.awaiting_create, report.created, report.failed),
        (100, 0, 0)
    );
    assert_eq!(env.assistants().len(), 100);
    let intents: i64 = sqlx::query_scalar("select count(*) from create_intents")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(intents, 100, "each unknown create keeps its intent");

    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!((report.adopted, report.created), (100, 0));
    assert_eq!(
        env.sim.counters().total("POST", "/assistant"),
        0,
        "no POST is ever retried"
    );
    let counts = per_agent(&env.assistants());
    assert_eq!(counts.len(), 100);
    assert!(
        counts.values().all(|&n| n == 1),
        "zero duplicates: {counts:?}"
    );
    for id in &agents {
        let s = status(&pool, *id).await;
        assert_eq!((s.state.as_str(), s.reason.as_str()), ("synced", "Adopted"));
    }
    let intents: i64 = sqlx::query_scalar("select count(*) from create_intents")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(intents, 0, "adoption settles the intents");
    // The journal pairs each unknown create with the adoption of the assistant it made.
    let rows = journal(&pool).await;
    let unknown: HashMap<Uuid, ()> = rows
        .iter()
        .filter(|r| r.0 == "create" && r.1 == "unknown")
        .map(|r| (r.3.unwrap(), ()))
        .collect();
    let adopted: Vec<_> = rows.iter().filter(|r| r.0 == "adopt").collect();
    assert_eq!((unknown.len(), adopted.len()), (100, 100));
    for a in adopted {
        assert!(
            unknown.contains_key(&a.3.unwrap()),
            "adopted by its operation id: {a:?}"
        );
        let assistant = env.assistant(a.2.as_deref().unwrap());
        assert_eq!(
            assistant["metadata"]["operationId"],
            a.3.unwrap().to_string()
        );
    }
}

#[sqlx::test]
async fn a_create_that_never_landed_is_waited_for_then_sent_again(pool: PgPool) {
    let mut env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    // The connection drops before Vapi stores anything: the outcome is unknown to the client.
    env.sim.inject(post_fault(FaultMode::Drop, None, 1));
    assert_eq!(env.pass().await.awaiting_create, 1);
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(report.awaiting_create, 1, "within the grace period: wait");
    assert_eq!(
        env.sim.counters().writes(),
        0,
        "no second POST while the first may land"
    );
    let s = status(&pool, id).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("pending", "CreateOutcomeUnknown")
    );

    // Past the grace period, with nothing listed, a new create is allowed.
    let mut past = settings();
    past.plan.create_grace = chrono::TimeDelta::zero();
    env.reconfigure(past);
    let report = env.pass().await;
    assert_eq!(report.created, 1);
    assert_eq!(env.assistants_of(id).len(), 1);
}

#[sqlx::test]
async fn a_remembered_assistant_that_gains_a_duplicate_is_read_again_and_kept(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let a = agent(&pool, org, "front-desk", spec(1)).await;
    env.pass().await;
    // Found in sync and remembered: from now on the pass keeps only its listed text's digest.
    assert_eq!(env.pass().await.memos_written, 1);
    let quiet = env.pass().await;
    assert_eq!(
        (
            quiet.assistants_remembered,
            quiet.assistants_read_again,
            quiet.texts_read_again
        ),
        (1, 0, 0)
    );
    let kept = status(&pool, a).await.assistant_id.unwrap();
    let mut body = spec(1);
    body["name"] = json!("front-desk");
    body["metadata"] =
        json!({"managedBy": MANAGED_BY, "agentId": a.to_string(), "orgId": org.to_string()});
    let dup = env.sim.create_out_of_band(&env.vapi_org, body)["id"].clone();

    env.sim.reset_counters();
    let report = env.pass().await;
    // The duplicate undoes the memo: the recorded assistant's dropped text is read again (one
    // GET), the agent's own texts too, and the decision is the full one.
    assert_eq!(
        (report.assistants_read_again, report.texts_read_again),
        (1, 1)
    );
    let c = env.sim.counters();
    // One GET reads the recorded assistant again (200); the other confirms the deleted
    // duplicate gone (404).
    let gets = |status: u16| {
        c.requests
            .iter()
            .filter(|r| r.method == "GET" && r.route == "/assistant/{id}" && r.status == status)
            .map(|r| r.count)
            .sum::<u64>()
    };
    assert_eq!((gets(200), gets(404)), (1, 1), "{c:?}");
    assert_eq!(c.total("DELETE", "/assistant/{id}"), 1, "{c:?}");
    assert_eq!((report.duplicates_deleted, report.in_sync), (1, 1));
    let left = env.assistants_of(a);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["id"], kept.as_str(), "the recorded one is kept");
    assert_ne!(left[0]["id"], dup);
    let s = status(&pool, a).await;
    assert_eq!(s.state, "synced");
    // The next pass remembers again (with the status it writes, or on its own), and the one
    // after drops the text again and writes nothing.
    env.pass().await;
    let memo: bool = sqlx::query_scalar(
        "select in_sync_digest is not null from agent_status where agent_id = $1",
    )
    .bind(a)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(memo, "remembered again");
    let again = env.pass().await;
    assert_eq!(
        (
            again.in_sync,
            again.assistants_remembered,
            again.assistants_read_again,
            again.memos_written,
            again.status_writes
        ),
        (1, 1, 0, 0, 0)
    );
}

#[sqlx::test]
async fn duplicates_are_reduced_to_the_recorded_one_orphans_deleted_unmarked_untouched(
    pool: PgPool,
) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let a = agent(&pool, org, "front-desk", spec(1)).await;
    let b = agent(&pool, org, "billing", spec(2)).await;
    env.pass().await;
    let kept = status(&pool, a).await.assistant_id.unwrap();
    let marker = |agent: Uuid| json!({"managedBy": MANAGED_BY, "agentId": agent.to_string(), "orgId": org.to_string()});
    let mut body = spec(1);
    body["name"] = json!("front-desk");
    body["metadata"] = marker(a);
    let dup1 = env.sim.create_out_of_band(&env.vapi_org, body.clone())["id"].clone();
    let dup2 = env.sim.create_out_of_band(&env.vapi_org, body.clone())["id"].clone();
    body["metadata"] = marker(Uuid::new_v4());
    let orphan = env.sim.create_out_of_band(&env.vapi_org, body.clone())["id"].clone();
    // Hand-made assistants, one even with the same name: never ours.
    body["metadata"] = json!({"team": "ops"});
    let hand1 = env.sim.create_out_of_band(&env.vapi_org, body.clone());
    body.as_object_mut().unwrap().remove("metadata");
    let hand2 = env.sim.create_out_of_band(&env.vapi_org, body.clone());

    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(
        (
            report.duplicates_deleted,
            report.orphans,
            report.orphans_deleted,
            report.unmanaged
        ),
        (2, 1, 1, 2)
    );
    assert_eq!(env.sim.counters().total("DELETE", "/assistant/{id}"), 3);
    let left = env.assistants();
    let counts = per_agent(&left);
    assert_eq!(counts.len(), 2);
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    assert_eq!(
        env.assistants_of(a)[0]["id"],
        kept,
        "the recorded one is kept"
    );
    assert_eq!(env.assistants_of(b).len(), 1);
    for hand in [&hand1, &hand2] {
        assert_eq!(
            &env.assistant(hand["id"].as_str().unwrap()),
            hand,
            "unmarked: untouched"
        );
    }
    let s = status(&pool, a).await;
    assert!(
        s.message.contains("Deleted duplicate assistant(s)"),
        "{}",
        s.message
    );
    let rows = journal(&pool).await;
    for (id, why) in [
        (&dup1, "duplicate of"),
        (&dup2, "duplicate of"),
        (&orphan, "orphan"),
    ] {
        assert!(
            rows.iter().any(|r| r.0 == "delete"
                && r.1 == "ok"
                && r.2.as_deref() == id.as_str()
                && r.4.contains(why)),
            "{id} {why}: {rows:#?}"
        );
    }
    let again = env.pass().await;
    assert_eq!((again.duplicates_deleted, again.orphans), (0, 0));
}

#[sqlx::test]
async fn orphans_wait_out_the_grace_period_and_policy_keep_never_deletes(pool: PgPool) {
    let mut env = env(pool.clone()).await;
    let marker = json!({"managedBy": MANAGED_BY, "agentId": Uuid::new_v4().to_string(), "orgId": Uuid::new_v4().to_string()});
    let orphan = env
        .sim
        .create_out_of_band(&env.vapi_org, json!({"name": "gone", "metadata": marker}));
    let mut waiting = settings();
    waiting.plan.orphan_grace = chrono::TimeDelta::hours(1);
    env.reconfigure(waiting);
    let report = env.pass().await;
    assert_eq!((report.orphans, report.orphans_deleted), (1, 0));
    let first_seen: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select first_seen_at from orphan_sightings where assistant_id = $1")
            .bind(orphan["id"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    env.pass().await;
    let still: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select first_seen_at from orphan_sightings where assistant_id = $1")
            .bind(orphan["id"].as_str().unwrap())
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(first_seen, still, "the grace runs from the first sighting");

    let mut keep = settings();
    keep.plan.orphan_policy = OrphanPolicy::Keep;
    env.reconfigure(keep);
    let report = env.pass().await;
    assert_eq!((report.orphans, report.orphans_deleted), (1, 0));
    assert_eq!(env.assistants().len(), 1);

    env.reconfigure(settings());
    let report = env.pass().await;
    assert_eq!(report.orphans_deleted, 1);
    assert!(env.assistants().is_empty());
    let sightings: i64 = sqlx::query_scalar("select count(*) from orphan_sightings")
        .fetch_one(&pool)
        .await
        .unwrap();
    env.pass().await;
    let after: i64 = sqlx::query_scalar("select count(*) from orphan_sightings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        (sightings, after),
        (1, 0),
        "a deleted orphan is forgotten on the next pass"
    );
}

async fn delete_agent(pool: &PgPool, id: Uuid) {
    sqlx::query("update agents set deleted_at = now() where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .unwrap();
}

async fn deletion(pool: &PgPool, id: Uuid) -> (String, String, bool) {
    sqlx::query_as(
        "select state, reason, purge_safe from agent_deletion_status where agent_id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn deleting_an_agent_deletes_its_assistant_and_confirms_it_gone(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    let keep = agent(&pool, org, "billing", spec(2)).await;
    env.pass().await;
    let assistant = status(&pool, id).await.assistant_id.unwrap();
    delete_agent(&pool, id).await;
    assert_eq!(
        deletion(&pool, id).await,
        ("pending".into(), "AwaitingDeletion".into(), false)
    );
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(
        (report.deleted, report.agents, report.deleted_agents),
        (1, 1, 1)
    );
    let c = env.sim.counters();
    assert_eq!(
        (c.total("DELETE", "/assistant/{id}"), c.with_status(404)),
        (1, 1),
        "one DELETE, then a GET that answers 404: {c:?}"
    );
    assert!(env.assistants_of(id).is_empty());
    assert_eq!(env.assistants_of(keep).len(), 1);
    assert_eq!(
        deletion(&pool, id).await,
        ("deleted".into(), "Deleted".into(), true)
    );
    let rows = journal(&pool).await;
    assert!(
        rows.iter()
            .any(|r| r.0 == "delete" && r.2.as_deref() == Some(&assistant))
    );
    // Done: the next pass calls nothing and writes nothing for it.
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!((env.sim.counters().writes(), report.status_writes), (0, 0));
    // The writer may purge the row now.
    sqlx::query("delete from agents where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(env.pass().await.orphans, 0);
}

#[sqlx::test]
async fn a_pinned_assistant_fails_the_deletion_until_unpinned(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    env.pass().await;
    let assistant = status(&pool, id).await.assistant_id.unwrap();
    assert!(env.sim.pin(&assistant, true));
    delete_agent(&pool, id).await;
    let report = env.pass().await;
    assert_eq!((report.failed, report.deleted), (1, 0));
    let s = status(&pool, id).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("failed", "AssistantPinned")
    );
    assert!(
        s.message.contains("pinned") && s.message.contains("Unpin"),
        "{}",
        s.message
    );
    assert!(
        !deletion(&pool, id).await.2,
        "not safe to purge while the assistant exists"
    );
    assert!(env.sim.pin(&assistant, false));
    assert_eq!(env.pass().await.deleted, 1);
    assert_eq!(
        deletion(&pool, id).await,
        ("deleted".into(), "Deleted".into(), true)
    );
}

#[sqlx::test]
async fn deleting_an_agent_whose_assistant_is_already_gone_needs_no_call(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    env.pass().await;
    let assistant = status(&pool, id).await.assistant_id.unwrap();
    assert!(env.sim.delete_out_of_band(&assistant));
    delete_agent(&pool, id).await;
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(env.sim.counters().writes(), 0);
    assert_eq!((report.deleted, report.recreated, report.failed), (0, 0, 0));
    assert_eq!(
        deletion(&pool, id).await,
        ("deleted".into(), "Deleted".into(), true)
    );
}

#[sqlx::test]
async fn observe_only_paused_and_dry_run_write_nothing_but_report_drift(pool: PgPool) {
    let mut env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let observed = agent(&pool, org, "observed", spec(1)).await;
    let paused = agent(&pool, org, "paused", spec(2)).await;
    env.pass().await;
    for (id, mode) in [(observed, "observe"), (paused, "paused")] {
        sqlx::query("update agents set management_mode = $2 where id = $1")
            .bind(id)
            .bind(mode)
            .execute(&pool)
            .await
            .unwrap();
        let a = status(&pool, id).await.assistant_id.unwrap();
        env.sim
            .edit_out_of_band(&a, json!({"firstMessage": "Changed by hand."}));
    }
    let fresh = agent(&pool, org, "fresh", spec(3)).await;
    sqlx::query("update agents set management_mode = 'observe' where id = $1")
        .bind(fresh)
        .execute(&pool)
        .await
        .unwrap();
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(env.sim.counters().writes(), 0, "{:?}", env.sim.counters());
    assert_eq!(report.not_enforced, 3);
    let s = status(&pool, observed).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("drifted", "ObserveOnly")
    );
    assert_eq!(s.drift, vec!["firstMessage"]);
    assert!(s.message.contains("enforcing would patch"), "{}", s.message);
    let s = status(&pool, paused).await;
    assert_eq!((s.state.as_str(), s.reason.as_str()), ("paused", "Paused"));
    let s = status(&pool, fresh).await;
    assert!(s.message.contains("would create"), "{}", s.message);

    // Dry-run: an enforced agent's drift is reported, not fixed; no intent is recorded.
    sqlx::query("update agents set management_mode = 'enforce'")
        .execute(&pool)
        .await
        .unwrap();
    env.reconfigure(PassSettings {
        dry_run: true,
        ..settings()
    });
    let report = env.pass().await;
    assert!(report.dry_run);
    assert_eq!(env.sim.counters().writes(), 0);
    let s = status(&pool, fresh).await;
    assert_eq!((s.state.as_str(), s.reason.as_str()), ("drifted", "DryRun"));
    let intents: i64 = sqlx::query_scalar("select count(*) from create_intents")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(intents, 0);

    env.reconfigure(settings());
    let report = env.pass().await;
    assert_eq!((report.created, report.patched), (1, 2));
}

async fn fleet(env: &common::TestEnv, n: usize) {
    let org = org(&env.pool, "Harbor").await;
    for i in 0..n {
        agent(&env.pool, org, &format!("agent-{i}"), spec(i)).await;
    }
    assert_eq!(env.pass().await.created, n);
}

#[sqlx::test]
async fn an_emptied_agents_table_is_blocked_until_an_operator_confirms(pool: PgPool) {
    let env = env(pool.clone()).await;
    fleet(&env, 60).await;
    sqlx::query("delete from agents")
        .execute(&pool)
        .await
        .unwrap();
    env.sim.reset_counters();
    let report = env.pass().await;
    let blocked = report.blocked.clone().expect("blocked");
    assert_eq!(
        (
            blocked.impact.deletes,
            blocked.impact.fleet,
            blocked.impact.limit
        ),
        (60, 60, 50)
    );
    assert_eq!(
        env.sim.counters().writes(),
        0,
        "zero deletes until confirmed"
    );
    assert_eq!(env.assistants().len(), 60);
    // Still blocked on the next pass, under the same block.
    let again = env.pass().await;
    assert_eq!(again.blocked.unwrap().block_id, blocked.block_id);
    assert_eq!(env.sim.counters().writes(), 0);

    let store = Store::new(pool.clone());
    let confirmed = store
        .confirm_guard_block(
            blocked.block_id,
            "test",
            std::time::Duration::from_secs(600),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(confirmed.deletes, 60);
    let report = env.pass().await;
    assert_eq!(report.confirmed_block, Some(blocked.block_id));
    assert_eq!(report.orphans_deleted, 60);
    assert!(env.assistants().is_empty());
}

#[sqlx::test]
async fn a_key_for_the_wrong_vapi_org_cannot_recreate_the_fleet(pool: PgPool) {
    let mut env = env(pool.clone()).await;
    fleet(&env, 60).await;
    // The key now points at another (empty) Vapi org: every recorded assistant looks gone.
    let other = Uuid::new_v4().to_string();
    env.sim.add_key(&other, "another-vapi-org");
    env.key = ApiKey::new(&other).unwrap();
    env.reconfigure(settings());
    env.sim.reset_counters();
    let report = env.pass().await;
    let blocked = report.blocked.expect("blocked");
    assert_eq!((blocked.impact.recreates, blocked.impact.deletes), (60, 0));
    assert_eq!(env.sim.counters().writes(), 0);
    assert!(env.sim.assistants("another-vapi-org").is_empty());
}

#[sqlx::test]
async fn a_deposed_leader_cannot_create(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    agent(&pool, org, "front-desk", spec(1)).await;
    // Another replica took over (its acquisition bumped the epoch).
    sqlx::query("update leader_lease set epoch = epoch + 1")
        .execute(&pool)
        .await
        .unwrap();
    let report = env
        .controller
        .pass(&env.lead, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((report.skipped, report.created), (1, 0));
    assert_eq!(
        env.sim.counters().writes(),
        0,
        "no POST without a fenced intent"
    );
    let intents: i64 = sqlx::query_scalar("select count(*) from create_intents")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(intents, 0);
}

#[sqlx::test]
async fn a_guard_limit_scales_with_the_fleet(pool: PgPool) {
    // 10 % of 600 is 60: a 55-assistant recreate goes through unblocked.
    let mut env = env_with(
        pool.clone(),
        PassSettings {
            concurrency: 32,
            ..settings()
        },
    )
    .await;
    fleet(&env, 600).await;
    let ids: Vec<String> = sqlx::query_scalar("select assistant_id from agent_status limit 55")
        .fetch_all(&pool)
        .await
        .unwrap();
    for id in &ids {
        assert!(env.sim.delete_out_of_band(id));
    }
    env.reconfigure(PassSettings {
        concurrency: 32,
        ..settings()
    });
    let report = env.pass().await;
    assert!(report.blocked.is_none());
    assert_eq!(report.recreated, 55);
}

/// Creates that commit their intents together (one transaction for the creates ready at the same
/// moment) each still get their own journal row: every create row names the assistant whose
/// marker carries that row's operation id, and the agent that assistant belongs to.
#[sqlx::test]
async fn creates_that_share_an_intent_commit_each_keep_their_own_journal_row(pool: PgPool) {
    let env = env(pool.clone()).await;
    let o = org(&pool, "clinic").await;
    for n in 0..40 {
        agent(&pool, o, &format!("agent-{n}"), spec(n)).await;
    }
    let report = env.pass().await;
    assert_eq!(report.created, 40, "{report:?}");
    let rows: Vec<(Uuid, Option<String>, Option<Uuid>, String)> = sqlx::query_as(
        "select agent_id, assistant_id, operation_id, outcome from journal where action = 'create'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 40);
    let listed = env.assistants();
    for (agent_id, assistant_id, operation_id, outcome) in rows {
        assert_eq!(outcome, "ok");
        let operation_id = operation_id.expect("a create's row has its operation id");
        let assistant = listed
            .iter()
            .find(|a| a["metadata"]["operationId"] == operation_id.to_string())
            .expect("an assistant carries each row's operation id");
        assert_eq!(assistant_id.as_deref(), assistant["id"].as_str());
        assert_eq!(
            assistant["metadata"]["agentId"],
            agent_id.to_string(),
            "the row and the assistant are the same agent's"
        );
    }
}
