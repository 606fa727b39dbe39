//! One resource cannot poison the others: an assistant the controller cannot read fails only its
//! own agent, specs over the depth and size limits are refused before Vapi, and a 413 is final.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, env, org, spec, status};
use serde_json::{Value, json};
use sqlx::PgPool;
use vapi_reconciler::metrics::Metrics;
use vapi_reconciler::reconcile::validate::{SPEC_MAX_BYTES, SPEC_MAX_DEPTH};
use vapi_reconciler::simulator::FaultMode;
use vapi_reconciler::vapi::Resource;

/// `levels` nested arrays around a number: beyond 127 no serde_json parser reads it.
fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!([v]);
    }
    v
}

#[sqlx::test]
async fn an_unreadable_assistant_fails_its_own_agent_and_no_other(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let a = agent(&pool, org, "a", spec(1)).await;
    let b = agent(&pool, org, "b", spec(2)).await;
    let c = agent(&pool, org, "c", spec(3)).await;
    assert_eq!(env.pass().await.created, 3);
    let poisoned = status(&pool, b).await.assistant_id.unwrap();

    // Someone (another tool, an older version) leaves b's assistant and a stranger nested deeper
    // than any parser reads; then a new agent arrives.
    assert!(
        env.sim
            .edit_out_of_band(&poisoned, json!({"analysisPlan": nested(200)}))
    );
    let stranger = env.sim.create_out_of_band(
        &env.vapi_org,
        json!({"name": "stranger", "analysisPlan": nested(300)}),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = agent(&pool, org, "d", spec(4)).await;

    let report = env.pass().await;
    assert_eq!(report.created, 1, "the new agent is created: {report:?}");
    assert_eq!(report.failed, 1, "{report:?}");
    assert!(report.list_error.is_none(), "{report:?}");
    for (id, state) in [(a, "synced"), (c, "synced"), (d, "synced"), (b, "failed")] {
        assert_eq!(status(&pool, id).await.state, state, "{id}");
    }
    let failed = status(&pool, b).await;
    assert_eq!(failed.reason, "VapiBadResponse");
    assert!(
        failed
            .message
            .contains(&format!("assistant {poisoned} cannot be read"))
            && failed.message.contains("\"analysisPlan\"")
            && failed.message.contains("recursion limit"),
        "{}",
        failed.message
    );
    assert_eq!(env.assistants_of(b).len(), 1, "no second assistant for b");
    assert!(env.sim.assistant(&stranger).is_some(), "left alone");

    // The listing names both, and they are counted.
    let metrics = Metrics::new("vapi-reconciler").unwrap();
    let client = common::client(&env.running.base_url()).with_metrics(metrics.clone());
    let listing = client
        .list_all(Resource::Assistant, &env.key)
        .await
        .unwrap();
    let mut ids: Vec<_> = listing
        .unreadable
        .iter()
        .map(|u| u.id.clone().unwrap())
        .collect();
    ids.sort();
    let mut expected = vec![poisoned.clone(), stranger];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(listing.items.len(), 3);
    assert_eq!(metrics.unreadable_assistants_total.get(), 2);

    // Fixing the one assistant restores its agent.
    env.sim
        .edit_out_of_band(&poisoned, json!({"analysisPlan": null}));
    env.pass().await;
    assert_eq!(status(&pool, b).await.state, "synced");
    assert_eq!(env.assistants_of(b).len(), 1);
}

/// Stores a spec as text, so Postgres keeps what a JSON library could never build or parse.
async fn raw_agent(pool: &PgPool, org: uuid::Uuid, name: &str, spec: &str) -> uuid::Uuid {
    sqlx::query_scalar(
        "insert into agents (org_id, name, spec) values ($1, $2, $3::jsonb) returning id",
    )
    .bind(org)
    .bind(name)
    .bind(spec)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test]
async fn specs_over_the_limits_are_refused_before_vapi_naming_limit_and_value(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let fine = agent(&pool, org, "fine", spec(1)).await;
    let mut deep = spec(2);
    deep["analysisPlan"] = json!({ "x": nested(SPEC_MAX_DEPTH) });
    let deep = agent(&pool, org, "deep", deep).await;
    let brackets = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    // 127 levels passed validation before and poisoned the listing; 200 no parser reads.
    let at_127 = raw_agent(
        &pool,
        org,
        "at-127",
        &format!(r#"{{"analysisPlan": {}}}"#, brackets(126)),
    )
    .await;
    let at_200 = raw_agent(
        &pool,
        org,
        "at-200",
        &format!(
            r#"{{"firstMessage": "hi", "analysisPlan": {}}}"#,
            brackets(199)
        ),
    )
    .await;
    let huge_number = raw_agent(
        &pool,
        org,
        "huge-number",
        r#"{"maxDurationSeconds": 1e400}"#,
    )
    .await;
    let mut big = spec(3);
    big["firstMessage"] = json!("x".repeat(SPEC_MAX_BYTES));
    let big = agent(&pool, org, "big", big).await;

    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(report.created, 1, "{report:?}");
    assert_eq!(env.sim.counters().total("POST", "/assistant"), 1);
    let expect = [
        (
            deep,
            format!(
                "spec.analysisPlan nests {} levels deep (the spec itself is level 1); the limit is 32",
                SPEC_MAX_DEPTH + 2
            ),
        ),
        (
            at_127,
            "spec.analysisPlan nests 127 levels deep (the spec itself is level 1); the limit is 32"
                .to_owned(),
        ),
        (
            at_200,
            "spec.analysisPlan nests 200 levels deep (the spec itself is level 1); the limit is 32"
                .to_owned(),
        ),
        (
            huge_number,
            "spec.maxDurationSeconds cannot be read: number out of range".to_owned(),
        ),
        (
            big,
            format!(
                "spec is {} bytes as compact JSON (the largest field, spec.firstMessage, is {} bytes); the limit is {SPEC_MAX_BYTES} bytes",
                {
                    let mut b = spec(3);
                    b["firstMessage"] = json!("x".repeat(SPEC_MAX_BYTES));
                    serde_json::to_string(&b).unwrap().len()
                },
                SPEC_MAX_BYTES + 2
            ),
        ),
    ];
    for (id, needle) in expect {
        let s = status(&pool, id).await;
        assert_eq!(
            (s.state.as_str(), s.reason.as_str()),
            ("failed", "InvalidSpec"),
            "{id}"
        );
        assert!(
            s.message.contains(&needle),
            "{needle}\nnot in: {}",
            s.message
        );
    }
    assert_eq!(status(&pool, fine).await.state, "synced");
}

#[sqlx::test]
async fn a_create_refused_with_413_is_final_and_not_outcome_unknown(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "a", spec(1)).await;
    env.sim.inject(common::fault(
        Some("POST"),
        None,
        FaultMode::Respond,
        Some(413),
        Some(1),
    ));
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(
        (report.created, report.awaiting_create),
        (0, 0),
        "{report:?}"
    );
    let s = status(&pool, id).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("failed", "VapiRejected")
    );
    assert!(s.message.contains("413"), "{}", s.message);
    assert_eq!(
        env.sim.counters().total("POST", "/assistant"),
        1,
        "never retried"
    );
    // Refused for this spec: the next pass does not send it again until it changes.
    env.pass().await;
    assert_eq!(env.sim.counters().total("POST", "/assistant"), 1);
    assert!(env.assistants_of(id).is_empty());
}
