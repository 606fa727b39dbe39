//! Three-way drift end to end: removed fields are cleared, out-of-band changes to managed fields
//! are reverted, unmanaged fields are left alone, and each difference is classified on the status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, env, org, spec, status};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

async fn drift_detail(pool: &PgPool, id: Uuid) -> Value {
    sqlx::query_scalar("select drift_detail from agent_status where agent_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn removed_fields_are_cleared_managed_ones_reverted_unmanaged_ones_left(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let mut with_end = spec(1);
    with_end["endCallMessage"] = json!("Goodbye from Harbor.");
    let id = agent(&pool, org, "front-desk", with_end).await;
    env.pass().await;
    let assistant = status(&pool, id).await.assistant_id.unwrap();
    assert_eq!(
        env.assistant(&assistant)["endCallMessage"],
        "Goodbye from Harbor."
    );

    // The spec drops endCallMessage: the assistant loses it too.
    sqlx::query("update agents set spec = spec - 'endCallMessage' where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(report.patched, 1);
    let a = env.assistant(&assistant);
    assert!(a["endCallMessage"].is_null(), "cleared: {a}");
    assert_eq!(
        drift_detail(&pool, id).await,
        json!([{"path": "endCallMessage", "kind": "desired"}])
    );

    // Someone edits the greeting (managed) and the voicemail message (never set) in Vapi.
    env.sim.edit_out_of_band(
        &assistant,
        json!({"firstMessage": "Edited by hand.", "voicemailMessage": "Please leave a message."}),
    );
    let report = env.pass().await;
    assert_eq!(report.patched, 1);
    let a = env.assistant(&assistant);
    assert_eq!(a["firstMessage"], spec(1)["firstMessage"], "reverted");
    assert_eq!(
        a["voicemailMessage"], "Please leave a message.",
        "left alone"
    );
    let s = status(&pool, id).await;
    assert_eq!(s.drift, vec!["firstMessage"]);
    assert!(
        s.message.contains("firstMessage (changed in Vapi)"),
        "{}",
        s.message
    );
    assert_eq!(
        drift_detail(&pool, id).await,
        json!([{"path": "firstMessage", "kind": "actual"}])
    );

    // Nothing left to do: one listing, no writes.
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!((report.in_sync, env.sim.counters().writes()), (1, 0));
}
