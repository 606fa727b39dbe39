//! Voices that never break a save, and specs refused before Vapi sees them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, env, org, spec, status};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

async fn normalizations(pool: &PgPool, id: Uuid) -> Vec<String> {
    sqlx::query_scalar("select normalizations from agent_status where agent_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn a_retired_voice_is_replaced_before_vapi_ever_sees_it(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Northside Dental").await;
    let mut kylie = spec(1);
    kylie["voice"] = json!({"provider": "vapi", "voiceId": "Kylie", "speed": 1.1});
    let id = agent(&pool, org, "recall reminders", kylie).await;
    let report = env.pass().await;
    assert_eq!((report.created, report.voice_normalizations), (1, 1));
    assert_eq!(
        env.sim.counters().with_status(400),
        0,
        "Kylie was never sent"
    );
    let s = status(&pool, id).await;
    assert_eq!(s.state, "synced");
    assert!(
        s.message.contains("vapi/Kylie → vapi/Savannah"),
        "{}",
        s.message
    );
    assert_eq!(
        normalizations(&pool, id).await,
        vec!["vapi/Kylie → vapi/Savannah (retired-voice)"]
    );
    let voice = &env.assistant(s.assistant_id.as_deref().unwrap())["voice"];
    assert_eq!(
        voice,
        &json!({"provider": "vapi", "voiceId": "Savannah", "speed": 1.1})
    );
    let journal: String = sqlx::query_scalar("select why from journal where action = 'create'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(journal.contains("vapi/Kylie → vapi/Savannah"), "{journal}");
    // Steady: the replacement is what was applied, so nothing drifts.
    env.sim.reset_counters();
    assert_eq!(env.pass().await.in_sync, 1);
    assert_eq!(env.sim.counters().writes(), 0);
}

#[sqlx::test]
async fn a_voice_only_vapi_refuses_converges_on_the_fallback_after_one_refusal(pool: PgPool) {
    let env = env(pool.clone()).await;
    env.sim
        .set_missing_azure_voices(vec!["en-US-AmberNeural".to_owned()]);
    let org = org(&pool, "Harbor").await;
    let mut amber = spec(1);
    amber["voice"] = json!({"provider": "azure", "voiceId": "en-US-AmberNeural"});
    let id = agent(&pool, org, "billing", amber).await;
    let report = env.pass().await;
    assert_eq!((report.created, report.failed), (1, 0));
    let c = env.sim.counters();
    assert_eq!(
        (c.with_status(400), c.total("POST", "/assistant")),
        (1, 2),
        "{c:?}"
    );
    let s = status(&pool, id).await;
    assert!(
        s.message.contains("Couldn't Find Azure Voice")
            && s.message
                .contains("used the fallback voice azure/en-US-JennyNeural"),
        "{}",
        s.message
    );
    assert_eq!(
        normalizations(&pool, id).await,
        vec!["azure/en-US-AmberNeural → azure/en-US-JennyNeural (fallback)"]
    );
    assert_eq!(
        env.assistant(s.assistant_id.as_deref().unwrap())["voice"]["voiceId"],
        "en-US-JennyNeural"
    );
    // The refusal is remembered for this generation: no second refused attempt, no drift.
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(report.in_sync, 1);
    assert_eq!(env.sim.counters().writes(), 0);
    // The journal holds the refused attempt and the create with the fallback voice.
    let rows: Vec<(String, String)> =
        sqlx::query_as("select action, outcome from journal order by id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            ("create".into(), "failed".into()),
            ("create".into(), "ok".into())
        ]
    );
}

#[sqlx::test]
async fn five_errors_in_one_spec_are_one_invalid_spec_and_no_call(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let bad = agent(
        &pool,
        org,
        "front desk",
        json!({
            "serverUrl": "https://example.com/hook",
            "maxDurationSeconds": 5,
            "model": {"provider": "openai", "model": "gpt-4o", "temperature": 3},
            "endCallMessage": "x".repeat(1001),
            "voice": {"provider": "nope", "voiceId": "x"}
        }),
    )
    .await;
    let good = agent(&pool, org, "good", spec(2)).await;
    let report = env.pass().await;
    assert_eq!((report.failed, report.created), (1, 1));
    assert_eq!(
        env.sim.counters().total("POST", "/assistant"),
        1,
        "only the good one"
    );
    let s = status(&pool, bad).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("failed", "InvalidSpec")
    );
    for field in [
        "serverUrl",
        "maxDurationSeconds",
        "model.temperature",
        "endCallMessage",
        "voice.provider",
    ] {
        assert!(
            s.message.contains(field),
            "{field} missing in: {}",
            s.message
        );
    }
    assert_eq!(
        s.message.matches("; ").count(),
        4,
        "five problems: {}",
        s.message
    );
    assert_eq!(status(&pool, good).await.state, "synced");
}
