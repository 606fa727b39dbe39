//! The controller against a real Postgres and the simulator over HTTP: agents become assistants,
//! and the status table tells the truth.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent, env, generation, org, spec, status};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use vapi_reconciler::reconcile::json::json_eq;
use vapi_reconciler::simulator::FaultMode;

#[sqlx::test]
async fn fifty_agents_across_three_orgs_converge(pool: PgPool) {
    let env = env(pool.clone()).await;
    let mut agents = Vec::new();
    for (o, name) in [
        "Harbor Family Clinic",
        "Northside Dental",
        "Lakeview Physio",
    ]
    .iter()
    .enumerate()
    {
        let org = org(&pool, name).await;
        for i in 0..[17, 17, 16][o] {
            let n = agents.len();
            agents.push((
                agent(&pool, org, &format!("agent-{n}"), spec(n)).await,
                org,
                n,
                i,
            ));
        }
    }
    let report = env.pass().await;
    assert_eq!((report.agents, report.created, report.failed), (50, 50, 0));
    assert_eq!(env.assistants().len(), 50);
    for (id, org, n, _) in agents {
        let s = status(&pool, id).await;
        assert_eq!((s.state.as_str(), s.reason.as_str()), ("synced", "Created"));
        assert_eq!(s.observed_generation, generation(&pool, id).await);
        let a = env.assistant(s.assistant_id.as_deref().unwrap());
        assert_eq!(a["name"], format!("agent-{n}"));
        for (k, v) in spec(n).as_object().unwrap() {
            assert!(json_eq(&a[k], v), "{k}: {} vs {v}", a[k]);
        }
        let op = a["metadata"]["operationId"].as_str().unwrap();
        assert!(
            op.parse::<Uuid>().is_ok(),
            "the create's operation id: {op}"
        );
        assert_eq!(
            a["metadata"],
            json!({"managedBy": "vapi-reconciler", "agentId": id.to_string(), "orgId": org.to_string(), "operationId": op})
        );
    }
}

#[sqlx::test]
async fn second_pass_with_nothing_changed_writes_nothing(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    for n in 0..20 {
        agent(&pool, org, &format!("agent-{n}"), spec(n)).await;
    }
    assert_eq!(env.pass().await.created, 20);
    env.sim.reset_counters();
    let report = env.pass().await;
    let counters = env.sim.counters();
    assert_eq!(counters.writes(), 0, "{counters:?}");
    assert_eq!(
        counters.total("GET", "/assistant"),
        1,
        "one LIST, no per-agent GET"
    );
    assert_eq!(counters.total("GET", "/assistant/{id}"), 0);
    assert_eq!((report.in_sync, report.status_writes), (20, 0));
    // The first pass to see them in sync remembers what it decided from, keeping each row as the
    // create left it; the next has nothing at all to write.
    assert_eq!(report.memos_written, 20);
    let rows: Vec<(String, bool)> =
        sqlx::query_as("select reason, in_sync_digest is not null from agent_status")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 20);
    assert!(
        rows.iter().all(|r| r == &("Created".to_owned(), true)),
        "{rows:?}"
    );
    let again = env.pass().await;
    assert_eq!(
        (again.in_sync, again.status_writes, again.memos_written),
        (20, 0, 0)
    );
    // The memos held: no spec or applied text was read, and every listed text was dropped as
    // its page arrived.
    assert_eq!(
        (again.texts_read_again, again.assistants_remembered),
        (0, 20)
    );
    assert_eq!(env.sim.counters().writes(), 0);
}

#[sqlx::test]
async fn spec_edit_is_one_patch_of_whole_top_level_keys(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(agent(&pool, org, &format!("agent-{n}"), spec(n)).await);
    }
    env.pass().await;
    let edited = ids[3];
    sqlx::query(
        "update agents set spec = jsonb_set(spec, '{model,temperature}', '0.9') where id = $1",
    )
    .bind(edited)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(generation(&pool, edited).await, 2);
    env.sim.reset_counters();
    let report = env.pass().await;
    let counters = env.sim.counters();
    assert_eq!(counters.total("PATCH", "/assistant/{id}"), 1);
    assert_eq!(counters.writes(), 1, "untouched assistants get no write");
    assert_eq!(report.patched, 1);
    let s = status(&pool, edited).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str(), s.observed_generation),
        ("synced", "Patched", 2)
    );
    assert_eq!(s.drift, vec!["model.temperature"]);
    // Vapi replaces `model` wholesale: the system prompt survives only if the whole key was sent.
    let mut want = spec(3)["model"].clone();
    want["temperature"] = json!(0.9);
    let a = env.assistant(s.assistant_id.as_deref().unwrap());
    assert!(json_eq(&a["model"], &want), "{}", a["model"]);
}

#[sqlx::test]
async fn assistant_deleted_out_of_band_is_recreated(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    env.pass().await;
    let old = status(&pool, id).await.assistant_id.unwrap();
    assert!(env.sim.delete_out_of_band(&old));
    let report = env.pass().await;
    assert_eq!(report.recreated, 1);
    let s = status(&pool, id).await;
    let new = s.assistant_id.clone().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("synced", "AssistantRecreated")
    );
    assert!(
        s.message.contains(&old) && s.message.contains(&new),
        "{}",
        s.message
    );
    assert_eq!(env.assistants_of(id).len(), 1);
}

#[sqlx::test]
async fn assistant_edited_out_of_band_is_patched_back(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    env.pass().await;
    // Remembered in sync first: the memo must not hide what Vapi changed since.
    assert_eq!(env.pass().await.memos_written, 1);
    let aid = status(&pool, id).await.assistant_id.unwrap();
    let mut rude = spec(1)["model"].clone();
    rude["messages"][0]["content"] = json!("Be rude to callers.");
    assert!(
        env.sim
            .edit_out_of_band(&aid, json!({"model": rude, "endCallMessage": "Bye."}))
    );
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!((report.patched, env.sim.counters().writes()), (1, 1));
    // The pass read the agent's digests only, found the memo missed, and read its texts.
    assert_eq!(report.texts_read_again, 1);
    let s = status(&pool, id).await;
    assert_eq!(s.reason, "Patched");
    assert_eq!(s.drift, vec!["model.messages[0].content"]);
    let a = env.assistant(&aid);
    assert!(json_eq(&a["model"], &spec(1)["model"]), "{}", a["model"]);
    // A field the spec never set is nobody's to revert.
    assert_eq!(a["endCallMessage"], "Bye.");
}

#[sqlx::test]
async fn fifteen_hundred_assistants_in_one_org_are_all_listed(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Big clinic").await;
    sqlx::query(
        "insert into agents (org_id, name, spec)
         select $1, 'agent-' || n, jsonb_build_object('firstMessage', 'Hello ' || n)
         from generate_series(1, 1500) n",
    )
    .bind(org)
    .execute(&pool)
    .await
    .unwrap();
    let first = env.pass().await;
    assert_eq!(first.created, 1500, "{first:?}");
    let listed = env
        .vapi
        .list_all(vapi_reconciler::vapi::Resource::Assistant, &env.key)
        .await
        .unwrap()
        .items;
    let ids: std::collections::HashSet<_> = listed.iter().map(|a| a.id.as_str()).collect();
    assert_eq!((listed.len(), ids.len()), (1500, 1500));
    // Had paging missed any, the controller would now recreate them.
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(
        (report.in_sync, report.recreated, report.created),
        (1500, 0, 0)
    );
    let counters = env.sim.counters();
    assert_eq!(counters.writes(), 0);
    assert_eq!(
        counters.total("GET", "/assistant"),
        2,
        "two pages of at most 1000"
    );
}

#[sqlx::test]
async fn agents_vapi_rejects_fail_alone_with_vapis_message(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Northside Dental").await;
    // The first POST is refused (what Vapi answers to a spec no client-side check catches).
    env.sim.inject(common::fault(
        Some("POST"),
        Some("/assistant"),
        FaultMode::Respond,
        Some(400),
        Some(1),
    ));
    let mut agents = Vec::new();
    for n in 0..6 {
        agents.push(agent(&pool, org, &format!("agent-{n}"), spec(n)).await);
    }
    let report = env.pass().await;
    assert_eq!((report.failed, report.created), (1, 5));
    let refused: Vec<Uuid> =
        sqlx::query_scalar("select agent_id from agent_status where state = 'failed'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let s = status(&pool, refused[0]).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("failed", "VapiRejected")
    );
    assert!(
        s.message.contains("Vapi rejected the request (400)"),
        "{}",
        s.message
    );
    let good: Vec<Uuid> = agents.into_iter().filter(|a| *a != refused[0]).collect();
    for id in good {
        assert_eq!(status(&pool, id).await.state, "synced");
    }
}

#[sqlx::test]
async fn a_rejected_key_fails_every_agent_loudly(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let ids = [
        agent(&pool, org, "a", spec(0)).await,
        agent(&pool, org, "b", spec(1)).await,
    ];
    env.sim.revoke_key(&env.raw_key);
    let report = env.pass().await;
    assert_eq!(report.failed, 2);
    assert_eq!(env.sim.counters().writes(), 0);
    for id in ids {
        let s = status(&pool, id).await;
        assert_eq!(
            (s.state.as_str(), s.reason.as_str()),
            ("failed", "CredentialsRejected")
        );
        assert!(
            s.message.contains("Invalid Key") && s.message.contains(env.key.fingerprint()),
            "{}",
            s.message
        );
        assert!(!s.message.contains(&env.raw_key));
    }
}

#[sqlx::test]
async fn a_create_whose_answer_was_lost_is_adopted_not_duplicated(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    env.sim.inject(common::fault(
        Some("POST"),
        Some("/assistant"),
        FaultMode::CommitThenFail,
        Some(502),
        Some(1),
    ));
    let report = env.pass().await;
    assert_eq!((report.awaiting_create, report.failed), (1, 0));
    let s = status(&pool, id).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("pending", "CreateOutcomeUnknown")
    );
    assert!(s.message.contains("adopts"), "{}", s.message);
    assert_eq!(
        env.assistants_of(id).len(),
        1,
        "Vapi stored it despite the 502"
    );
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(report.adopted, 1);
    assert_eq!(env.sim.counters().total("POST", "/assistant"), 0);
    assert_eq!(env.assistants_of(id).len(), 1);
    let s = status(&pool, id).await;
    assert_eq!((s.state.as_str(), s.reason.as_str()), ("synced", "Adopted"));
}

#[sqlx::test]
async fn an_unsendable_spec_is_refused_without_calling_vapi(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let cases: [(Value, &str); 3] = [
        (
            json!("not an object"),
            "spec must be a JSON object, found a string",
        ),
        (json!(null), "spec must be a JSON object, found null"),
        (
            json!({"metadata": {"x": 1}, "name": "n"}),
            "spec.name is owned by the controller",
        ),
    ];
    let mut ids = Vec::new();
    for (n, (spec, _)) in cases.iter().enumerate() {
        // jsonb null is a value, not SQL NULL: the column's not-null rule does not catch it.
        ids.push(agent(&pool, org, &format!("bad-{n}"), spec.clone()).await);
    }
    let good = agent(&pool, org, "good", spec(9)).await;
    let report = env.pass().await;
    assert_eq!((report.failed, report.created), (3, 1));
    assert_eq!(
        env.sim.counters().writes(),
        1,
        "only the good agent reached Vapi"
    );
    for (id, (_, want)) in ids.into_iter().zip(cases) {
        let s = status(&pool, id).await;
        assert_eq!(
            (s.state.as_str(), s.reason.as_str()),
            ("failed", "InvalidSpec")
        );
        assert!(s.message.contains(want), "{}", s.message);
    }
    assert_eq!(status(&pool, good).await.state, "synced");
}

#[sqlx::test]
async fn dashboard_view_says_pending_until_the_controller_has_seen_a_save(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    let view = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, String)>(
            "select state, reason from agent_sync_status where agent_id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(
        view(pool.clone()).await,
        ("pending".into(), "AwaitingReconcile".into())
    );
    env.pass().await;
    assert_eq!(
        view(pool.clone()).await,
        ("synced".into(), "Created".into())
    );
    sqlx::query(
        "update agents set spec = spec || '{\"firstMessage\": \"New greeting\"}' where id = $1",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(view(pool.clone()).await.0, "pending");
    env.pass().await;
    assert_eq!(
        view(pool.clone()).await,
        ("synced".into(), "Patched".into())
    );
}

#[sqlx::test]
async fn generation_is_owned_by_the_database(pool: PgPool) {
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    assert_eq!(generation(&pool, id).await, 1);
    let update = |sql: &'static str| {
        let pool = pool.clone();
        async move { sqlx::query(sql).bind(id).execute(&pool).await.unwrap() }
    };
    update("update agents set spec = spec || '{\"firstMessage\": \"x\"}' where id = $1").await;
    assert_eq!(generation(&pool, id).await, 2);
    update("update agents set spec = spec where id = $1").await;
    assert_eq!(
        generation(&pool, id).await,
        2,
        "an update that changes nothing is not a generation"
    );
    update("update agents set generation = 100 where id = $1").await;
    assert_eq!(
        generation(&pool, id).await,
        2,
        "writers cannot set generation"
    );
    update("update agents set name = 'renamed' where id = $1").await;
    assert_eq!(generation(&pool, id).await, 3);
    update("update agents set deleted_at = now() where id = $1").await;
    assert_eq!(generation(&pool, id).await, 4);
}

#[sqlx::test]
async fn one_unreadable_spec_does_not_stop_the_others(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    // Postgres stores nesting far deeper than a JSON parser accepts; a pass must survive it.
    let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
    let bad: uuid::Uuid = sqlx::query_scalar(
        "insert into agents (org_id, name, spec) values ($1, 'deep', jsonb_build_object('model', $2::jsonb)) returning id",
    )
    .bind(org)
    .bind(deep)
    .fetch_one(&pool)
    .await
    .unwrap();
    let good = agent(&pool, org, "good", spec(1)).await;
    let report = env.pass().await;
    assert_eq!((report.created, report.failed), (1, 1));
    let s = status(&pool, bad).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("failed", "InvalidSpec")
    );
    assert!(s.message.contains("spec cannot be read"), "{}", s.message);
    assert_eq!(status(&pool, good).await.state, "synced");
}

#[sqlx::test]
async fn writes_run_concurrently_up_to_the_bound_and_never_beyond(pool: PgPool) {
    let env = env(pool.clone()).await; // concurrency 8
    let org = org(&pool, "Harbor").await;
    for n in 0..24 {
        agent(&pool, org, &format!("agent-{n}"), spec(n)).await;
    }
    // Long enough that requests overlap whenever the controller lets them.
    env.sim.set_latency(std::time::Duration::from_millis(200));
    env.sim.reset_counters();
    assert_eq!(env.pass().await.created, 24);
    assert_eq!(env.sim.counters().peak_in_flight, 8);
}
