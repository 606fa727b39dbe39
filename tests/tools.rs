//! Tools and phone numbers as resources of their own, against a real Postgres and the simulator
//! over HTTP: tools converge before the assistants that call them, references resolve (or the
//! agent waits), and numbers follow their agent's assistant.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestEnv, agent, env, fault, org, spec, status};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;
use vapi_reconciler::simulator::FaultMode;

fn function_tool(name: &str) -> Value {
    json!({
        "type": "function",
        "function": {"name": name, "description": format!("{name} for the clinic"),
                     "parameters": {"type": "object", "properties": {"date": {"type": "string"}}}},
        "server": {"url": format!("https://clinic.example/vapi/{name}")}
    })
}

async fn tool(pool: &PgPool, org: Uuid, name: &str, spec: Value) -> Uuid {
    sqlx::query_scalar("insert into tools (org_id, name, spec) values ($1, $2, $3) returning id")
        .bind(org)
        .bind(name)
        .bind(spec)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn link(pool: &PgPool, agent: Uuid, tools: &[&str]) {
    sqlx::query("update agents set tool_names = $2 where id = $1")
        .bind(agent)
        .bind(tools.iter().map(|t| t.to_string()).collect::<Vec<_>>())
        .execute(pool)
        .await
        .unwrap();
}

#[derive(Debug, sqlx::FromRow)]
struct ToolStatus {
    vapi_tool_id: Option<String>,
    state: String,
    reason: String,
    message: String,
}

async fn tool_status(pool: &PgPool, tool: Uuid) -> ToolStatus {
    sqlx::query_as(
        "select vapi_tool_id, state, reason, message from tool_sync_status where tool_id = $1",
    )
    .bind(tool)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[derive(Debug, sqlx::FromRow)]
struct NumberStatus {
    assistant_id: Option<String>,
    state: String,
    reason: String,
    message: String,
}

async fn number_status(pool: &PgPool, binding: Uuid) -> NumberStatus {
    sqlx::query_as(
        "select assistant_id, state, reason, message from phone_number_sync_status
         where phone_number_id = $1",
    )
    .bind(binding)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn tools_in_vapi(env: &TestEnv) -> Vec<Value> {
    env.sim.resources("tool", &env.vapi_org).unwrap()
}

fn tool_ids_of(env: &TestEnv, assistant: &str) -> Vec<String> {
    env.assistant(assistant)["model"]["toolIds"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// An organization with `checkAvailability` and `bookClinicAppointment` and an agent calling both.
async fn clinic(env: &TestEnv) -> (Uuid, Uuid, Uuid, Uuid) {
    let org = org(&env.pool, "Harbor Family Clinic").await;
    let check = tool(
        &env.pool,
        org,
        "checkAvailability",
        function_tool("checkAvailability"),
    )
    .await;
    let book = tool(
        &env.pool,
        org,
        "bookClinicAppointment",
        function_tool("bookClinicAppointment"),
    )
    .await;
    let desk = agent(&env.pool, org, "Front desk", spec(1)).await;
    link(
        &env.pool,
        desk,
        &["bookClinicAppointment", "checkAvailability"],
    )
    .await;
    (org, check, book, desk)
}

#[sqlx::test]
async fn tools_are_created_first_and_linked_in_order(pool: PgPool) {
    let env = env(pool.clone()).await;
    let (_, check, book, desk) = clinic(&env).await;
    let report = env.pass().await;
    assert_eq!(
        (report.tools.created, report.tools.failed),
        (2, 0),
        "{:?}",
        report.tools
    );
    let check_id = tool_status(&pool, check).await.vapi_tool_id.unwrap();
    let book_id = tool_status(&pool, book).await.vapi_tool_id.unwrap();
    let s = status(&pool, desk).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("synced", "Created"),
        "{}",
        s.message
    );
    let assistant = s.assistant_id.unwrap();
    assert_eq!(
        tool_ids_of(&env, &assistant),
        vec![book_id.clone(), check_id.clone()]
    );
    // Each tool carries the marker of its row, and its spec otherwise as written.
    let listed = tools_in_vapi(&env);
    assert_eq!(listed.len(), 2);
    let book_tool = listed.iter().find(|t| t["id"] == book_id.as_str()).unwrap();
    assert_eq!(
        book_tool["server"]["headers"]["X-Vapi-Reconciler-Tool"],
        book.to_string()
    );
    assert_eq!(book_tool["function"]["name"], "bookClinicAppointment");
    for t in [check, book] {
        let s = tool_status(&pool, t).await;
        assert_eq!(
            (s.state.as_str(), s.reason.as_str()),
            ("synced", "Created"),
            "{}",
            s.message
        );
    }

    // Steady: one LIST of tools and one of assistants, nothing else.
    env.sim.reset_counters();
    let report = env.pass().await;
    let c = env.sim.counters();
    assert_eq!(c.writes(), 0, "{c:?}");
    assert_eq!(c.total("GET", "/tool"), 1);
    assert_eq!(c.total("GET", "/tool/{id}"), 0);
    assert_eq!(c.total("GET", "/assistant"), 1);
    assert_eq!((report.tools.in_sync, report.tools.status_writes), (2, 0));
}

#[sqlx::test]
async fn a_tool_edit_patches_the_same_tool_and_leaves_the_assistant_alone(pool: PgPool) {
    let env = env(pool.clone()).await;
    let (_, _, book, desk) = clinic(&env).await;
    env.pass().await;
    let before = tool_status(&pool, book).await.vapi_tool_id.unwrap();
    let mut edited = function_tool("bookClinicAppointment");
    edited["function"]["description"] = json!("Books a visit; asks for the patient's birth date.");
    sqlx::query("update tools set spec = $2 where id = $1")
        .bind(book)
        .bind(&edited)
        .execute(&pool)
        .await
        .unwrap();
    env.sim.reset_counters();
    let report = env.pass().await;
    let c = env.sim.counters();
    assert_eq!(report.tools.patched, 1, "{:?}", report.tools);
    assert_eq!(c.total("PATCH", "/tool/{id}"), 1);
    assert_eq!(c.total("POST", "/tool"), 0);
    assert_eq!(
        c.total("PATCH", "/assistant/{id}"),
        0,
        "the assistant's toolIds did not change"
    );
    let s = tool_status(&pool, book).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("synced", "Patched"),
        "{}",
        s.message
    );
    assert_eq!(s.vapi_tool_id.as_deref(), Some(before.as_str()));
    let now = env.sim.resource("tool", &before).unwrap();
    assert_eq!(
        now["function"]["description"],
        edited["function"]["description"]
    );
    let assistant = status(&pool, desk).await.assistant_id.unwrap();
    assert!(tool_ids_of(&env, &assistant).contains(&before));
}

#[sqlx::test]
async fn a_tool_deleted_in_vapi_is_recreated_and_relinked_in_the_same_pass(pool: PgPool) {
    let env = env(pool.clone()).await;
    let (_, check, book, desk) = clinic(&env).await;
    env.pass().await;
    let old = tool_status(&pool, book).await.vapi_tool_id.unwrap();
    assert!(env.sim.delete_resource_out_of_band("tool", &old));
    let report = env.pass().await;
    assert_eq!(report.tools.recreated, 1, "{:?}", report.tools);
    let s = tool_status(&pool, book).await;
    assert_eq!(s.reason, "ToolRecreated", "{}", s.message);
    let new = s.vapi_tool_id.unwrap();
    assert_ne!(new, old);
    let a = status(&pool, desk).await;
    assert_eq!(
        (a.state.as_str(), a.reason.as_str()),
        ("synced", "Patched"),
        "{}",
        a.message
    );
    let check_id = tool_status(&pool, check).await.vapi_tool_id.unwrap();
    assert_eq!(
        tool_ids_of(&env, &a.assistant_id.unwrap()),
        vec![new, check_id]
    );
    assert_eq!(tools_in_vapi(&env).len(), 2);
}

#[sqlx::test]
async fn an_unresolved_tool_holds_the_agent_and_sends_nothing(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    // Plain http to a public host: refused before any call, naming the field and the value.
    let mut bad = function_tool("bookClinicAppointment");
    bad["server"]["url"] = json!("http://clinic.example/book");
    let book = tool(&pool, org, "bookClinicAppointment", bad).await;
    let desk = agent(&pool, org, "Front desk", spec(1)).await;
    link(&pool, desk, &["bookClinicAppointment"]).await;
    let other = agent(&pool, org, "Billing", spec(2)).await;
    link(&pool, other, &["noSuchTool"]).await;
    let fine = agent(&pool, org, "After hours", spec(3)).await;
    env.pass().await;
    let c = env.sim.counters();
    assert_eq!(c.total("POST", "/tool"), 0, "an invalid tool is never sent");
    assert_eq!(
        c.total("POST", "/assistant"),
        1,
        "only the agent without tools"
    );
    let t = tool_status(&pool, book).await;
    assert_eq!(
        (t.state.as_str(), t.reason.as_str()),
        ("failed", "InvalidSpec")
    );
    assert!(
        t.message.contains("tools.spec.server.url")
            && t.message.contains("http://clinic.example/book"),
        "{}",
        t.message
    );
    let s = status(&pool, desk).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("pending", "WaitingForTool")
    );
    assert!(
        s.message.contains("\"bookClinicAppointment\""),
        "{}",
        s.message
    );
    assert!(s.assistant_id.is_none());
    let s = status(&pool, other).await;
    assert_eq!(s.reason, "WaitingForTool");
    assert!(s.message.contains("noSuchTool"), "{}", s.message);
    assert_eq!(status(&pool, fine).await.state, "synced");

    // A spec that sets model.toolIds itself is refused: the references are the way.
    let mut own = spec(4);
    own["model"]["toolIds"] = json!(["some-tool"]);
    let rogue = agent(&pool, org, "Rogue", own).await;
    env.pass().await;
    let s = status(&pool, rogue).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("failed", "InvalidSpec")
    );
    assert!(
        s.message.contains("spec.model.toolIds") && s.message.contains("tool_names"),
        "{}",
        s.message
    );
}

async fn bind(pool: &PgPool, org: Uuid, number: &str, agent: Option<Uuid>) -> Uuid {
    sqlx::query_scalar(
        "insert into phone_numbers (org_id, number, agent_id) values ($1, $2, $3) returning id",
    )
    .bind(org)
    .bind(number)
    .bind(agent)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn number_in_vapi(env: &TestEnv, id: &str) -> Value {
    env.sim.resource("phone-number", id).unwrap()
}

#[sqlx::test]
async fn a_recreated_assistant_gets_its_number_in_the_same_pass(pool: PgPool) {
    let env = env(pool.clone()).await;
    let (org, _, _, desk) = clinic(&env).await;
    let seeded = env.sim.seed_phone_number(&env.vapi_org, "+15551230001");
    let phone = seeded["id"].as_str().unwrap().to_owned();
    let binding = bind(&pool, org, "+15551230001", Some(desk)).await;
    env.pass().await;
    let first = status(&pool, desk).await.assistant_id.unwrap();
    assert_eq!(number_in_vapi(&env, &phone)["assistantId"], first.as_str());
    let n = number_status(&pool, binding).await;
    assert_eq!(
        (n.state.as_str(), n.reason.as_str()),
        ("synced", "Bound"),
        "{}",
        n.message
    );

    assert!(env.sim.delete_out_of_band(&first));
    let report = env.pass().await;
    let a = status(&pool, desk).await;
    assert_eq!(a.reason, "AssistantRecreated", "{}", a.message);
    let second = a.assistant_id.unwrap();
    assert_ne!(second, first);
    assert_eq!(
        tool_ids_of(&env, &second).len(),
        2,
        "the new assistant has its tools"
    );
    assert_eq!(number_in_vapi(&env, &phone)["assistantId"], second.as_str());
    assert_eq!(
        report.phone_numbers.pointed, 1,
        "{:?}",
        report.phone_numbers
    );
    let n = number_status(&pool, binding).await;
    assert_eq!(n.assistant_id.as_deref(), Some(second.as_str()));
    let journaled: (String, String, Option<String>, Option<Uuid>) = sqlx::query_as(
        "select action, outcome, assistant_id, agent_id from journal
         where kind = 'phone_number' and vapi_id = $1 order by id desc limit 1",
    )
    .bind(&phone)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        journaled,
        ("patch".into(), "ok".into(), Some(second), Some(desk))
    );

    // Steady: the numbers are listed once and nothing is written.
    env.sim.reset_counters();
    env.pass().await;
    let c = env.sim.counters();
    assert_eq!(c.writes(), 0, "{c:?}");
    assert_eq!(c.total("GET", "/phone-number"), 1);
}

#[sqlx::test]
async fn a_deleted_agent_s_number_is_unbound_before_its_assistant_is_deleted(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let desk = agent(&pool, org, "Front desk", spec(1)).await;
    let phone = env.sim.seed_phone_number(&env.vapi_org, "+15551230002")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let binding = bind(&pool, org, "+15551230002", Some(desk)).await;
    env.pass().await;
    let assistant = status(&pool, desk).await.assistant_id.unwrap();
    sqlx::query("update agents set deleted_at = now() where id = $1")
        .bind(desk)
        .execute(&pool)
        .await
        .unwrap();
    // The unbind fails: the assistant must stay, so no call rings a deleted assistant.
    env.sim.inject(fault(
        Some("PATCH"),
        Some("/phone-number/{id}"),
        FaultMode::Respond,
        Some(503),
        None,
    ));
    env.pass().await;
    assert!(
        env.sim.assistant(&assistant).is_some(),
        "kept while its number still rings it"
    );
    assert_eq!(
        number_in_vapi(&env, &phone)["assistantId"],
        assistant.as_str()
    );
    assert_eq!(number_status(&pool, binding).await.state, "failed");

    env.sim.clear_faults();
    env.pass().await;
    assert!(number_in_vapi(&env, &phone)["assistantId"].is_null());
    assert!(
        env.sim.assistant(&assistant).is_none(),
        "deleted once the number is unbound"
    );
    let n = number_status(&pool, binding).await;
    assert_eq!(
        (n.state.as_str(), n.reason.as_str()),
        ("synced", "Unbound"),
        "{}",
        n.message
    );
    // The journal shows the order: the number's PATCH before the assistant's DELETE.
    let order: Vec<String> = sqlx::query_scalar(
        "select kind || ' ' || action from journal where outcome = 'ok'
           and (kind = 'phone_number' or action = 'delete') order by id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        order.last().map(String::as_str),
        Some("assistant delete"),
        "{order:?}"
    );
    let unbind = order
        .iter()
        .rposition(|o| o == "phone_number patch")
        .unwrap();
    assert_eq!(unbind, order.len() - 2, "{order:?}");
}

#[sqlx::test]
async fn lost_tool_creates_never_become_duplicates(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    let mut rows = Vec::new();
    for n in 0..16 {
        rows.push(
            tool(
                &pool,
                org,
                &format!("lookup{n}"),
                function_tool(&format!("lookup{n}")),
            )
            .await,
        );
    }
    // Tools that cannot carry the marker: adopted by the create intent and their exact body.
    for n in 0..4 {
        let spec = json!({"type": "transferCall", "destinations": [
            {"type": "number", "number": format!("+1555000{n:04}")}]});
        rows.push(tool(&pool, org, &format!("transfer{n}"), spec).await);
    }
    env.sim.inject(fault(
        Some("POST"),
        Some("/tool"),
        FaultMode::CommitThenFail,
        Some(502),
        Some(20),
    ));
    let report = env.pass().await;
    assert_eq!(env.sim.counters().total("POST", "/tool"), 20);
    assert_eq!(report.tools.created, 0, "{:?}", report.tools);
    for t in &rows {
        assert_eq!(tool_status(&pool, *t).await.reason, "CreateOutcomeUnknown");
    }
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(
        env.sim.counters().total("POST", "/tool"),
        0,
        "no second create"
    );
    assert_eq!(report.tools.adopted, 20, "{:?}", report.tools);
    assert_eq!(tools_in_vapi(&env).len(), 20, "0 duplicate tools");
    for t in &rows {
        let s = tool_status(&pool, *t).await;
        assert_eq!(
            (s.state.as_str(), s.reason.as_str()),
            ("synced", "Adopted"),
            "{}",
            s.message
        );
    }
    let journal: i64 = sqlx::query_scalar(
        "select count(*) from journal where kind = 'tool' and action = 'create' and outcome = 'unknown'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(journal, 20);

    // A database restored from a backup has lost every tool status: the marked tools are adopted
    // by their marker, never created twice.
    sqlx::query("delete from tool_status")
        .execute(&pool)
        .await
        .unwrap();
    env.sim.reset_counters();
    env.pass().await;
    assert_eq!(
        env.sim.counters().total("POST", "/tool"),
        4,
        "only the four that cannot carry a marker"
    );
    assert_eq!(tools_in_vapi(&env).len(), 24);
    for t in &rows[..16] {
        assert_eq!(tool_status(&pool, *t).await.reason, "Adopted");
    }
}

#[sqlx::test]
async fn a_deleted_tool_still_called_is_kept_until_nothing_calls_it(pool: PgPool) {
    let env = env(pool.clone()).await;
    let (_, check, book, desk) = clinic(&env).await;
    env.pass().await;
    let book_id = tool_status(&pool, book).await.vapi_tool_id.unwrap();
    sqlx::query("update tools set deleted_at = now() where id = $1")
        .bind(book)
        .execute(&pool)
        .await
        .unwrap();
    env.sim.reset_counters();
    env.pass().await;
    assert_eq!(env.sim.counters().total("DELETE", "/tool/{id}"), 0);
    assert!(env.sim.resource("tool", &book_id).is_some());
    let s = tool_status(&pool, book).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("blocked", "StillReferenced")
    );
    assert!(s.message.contains("Front desk"), "{}", s.message);
    let a = status(&pool, desk).await;
    assert_eq!(a.reason, "WaitingForTool", "{}", a.message);

    // The agent stops calling it: the assistant is patched first, then the tool goes.
    link(&pool, desk, &["checkAvailability"]).await;
    env.pass().await;
    let assistant = status(&pool, desk).await.assistant_id.unwrap();
    let check_id = tool_status(&pool, check).await.vapi_tool_id.unwrap();
    assert_eq!(tool_ids_of(&env, &assistant), vec![check_id]);
    assert_eq!(status(&pool, desk).await.state, "synced");
    env.pass().await;
    assert!(
        env.sim.resource("tool", &book_id).is_none(),
        "deleted once nothing calls it"
    );
    let deleted: String = sqlx::query_scalar("select state from tool_status where tool_id = $1")
        .bind(book)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deleted, "deleted");
}

#[sqlx::test]
async fn observe_and_paused_tools_are_reported_not_written(pool: PgPool) {
    let env = env(pool.clone()).await;
    let (_, check, book, _) = clinic(&env).await;
    env.pass().await;
    sqlx::query("update tools set management_mode = 'observe' where id = $1")
        .bind(check)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("update tools set management_mode = 'paused' where id = $1")
        .bind(book)
        .execute(&pool)
        .await
        .unwrap();
    for t in [check, book] {
        let id = tool_status(&pool, t).await.vapi_tool_id.unwrap();
        assert!(env.sim.edit_resource_out_of_band(
            "tool",
            &id,
            json!({"function": {"name": "renamedInVapi"}})
        ));
    }
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(env.sim.counters().writes(), 0);
    let s = tool_status(&pool, check).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("drifted", "ObserveOnly"),
        "{}",
        s.message
    );
    assert!(
        s.message.contains("function.name (changed in Vapi)"),
        "{}",
        s.message
    );
    let s = tool_status(&pool, book).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("paused", "Paused"),
        "{}",
        s.message
    );
    assert_eq!((report.tools.drifting, report.tools.patched), (1, 0));
}

#[sqlx::test]
async fn the_guard_counts_tool_deletes(pool: PgPool) {
    let mut settings = common::settings();
    settings.guard.max_share = 0.0;
    settings.guard.min_count = 2;
    let env = common::env_with(pool.clone(), settings).await;
    let org = org(&pool, "Harbor").await;
    for n in 0..3 {
        tool(
            &pool,
            org,
            &format!("t{n}"),
            function_tool(&format!("t{n}")),
        )
        .await;
    }
    env.pass().await;
    sqlx::query("update tools set deleted_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    env.sim.reset_counters();
    let report = env.pass().await;
    assert!(report.tools.guard_block.is_some(), "{:?}", report.tools);
    assert_eq!(env.sim.counters().total("DELETE", "/tool/{id}"), 0);
    assert_eq!(tools_in_vapi(&env).len(), 3);
    let sample: Value =
        sqlx::query_scalar("select sample from guard_blocks order by id desc limit 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(sample.as_array().unwrap().len(), 3, "{sample}");
    assert_eq!(sample[0]["kind"], "tool");
}

#[sqlx::test]
async fn the_plan_shows_tool_and_number_changes_without_making_them(pool: PgPool) {
    let env = env(pool.clone()).await;
    let (org, _, _, desk) = clinic(&env).await;
    let view = env.controller.plan(&Default::default()).await.unwrap();
    let tools: Vec<_> = view
        .tool_changes
        .iter()
        .map(|c| (c.action, c.name.as_str()))
        .collect();
    assert_eq!(tools.len(), 2, "{tools:?}");
    assert!(tools.iter().all(|(a, _)| *a == "create"), "{tools:?}");
    assert_eq!(
        view.waiting_agents.len(),
        1,
        "the agent waits for its tools"
    );
    assert_eq!(view.exit_code(), 2);
    assert_eq!(env.sim.counters().writes(), 0);
    env.pass().await;
    env.sim.seed_phone_number(&env.vapi_org, "+15551230003");
    bind(&pool, org, "+15551230003", Some(desk)).await;
    let view = env.controller.plan(&Default::default()).await.unwrap();
    assert!(view.tool_changes.is_empty(), "{:?}", view.tool_changes);
    let numbers: Vec<_> = view
        .number_changes
        .iter()
        .map(|c| (c.action, c.name.as_str()))
        .collect();
    assert_eq!(numbers, vec![("point", "+15551230003")]);
    let ringing: Option<String> =
        sqlx::query_scalar("select assistant_id from phone_number_status")
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert!(ringing.is_none(), "the plan writes no status");
}

#[sqlx::test]
async fn a_focused_save_keeps_the_tools_linked(pool: PgPool) {
    let env = env(pool.clone()).await;
    let (_, check, book, desk) = clinic(&env).await;
    env.pass().await;
    let assistant = status(&pool, desk).await.assistant_id.unwrap();
    let linked = tool_ids_of(&env, &assistant);
    sqlx::query("update agents set spec = jsonb_set(spec, '{firstMessage}', '\"Welcome back.\"') where id = $1")
        .bind(desk)
        .execute(&pool)
        .await
        .unwrap();
    env.sim.reset_counters();
    let owner = vapi_reconciler::sharding::Ownership::single(&env.lead);
    let full_wanted = env
        .controller
        .pass_focused(&owner, &[desk], &tokio_util::sync::CancellationToken::new())
        .await;
    assert!(!full_wanted);
    let c = env.sim.counters();
    assert_eq!(
        (c.total("GET", "/tool"), c.total("PATCH", "/assistant/{id}")),
        (0, 1),
        "{c:?}"
    );
    assert_eq!(env.assistant(&assistant)["firstMessage"], "Welcome back.");
    assert_eq!(
        tool_ids_of(&env, &assistant),
        linked,
        "the PATCH kept model.toolIds"
    );
    let ids = [check, book];
    for t in ids {
        assert_eq!(tool_status(&pool, t).await.state, "synced");
    }
    assert_eq!(status(&pool, desk).await.state, "synced");
}

#[sqlx::test]
async fn an_org_s_own_key_serves_its_tools_and_numbers(pool: PgPool) {
    use base64::Engine;
    let env = env(pool.clone()).await;
    let own_key = Uuid::new_v4().to_string();
    env.sim.add_key(&own_key, "own-vapi-org");
    let keyring = vapi_reconciler::vault::Keyring::parse(
        &format!(
            "k1:{}",
            base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
        ),
        "test",
    )
    .unwrap();
    let (org, check, _, desk) = clinic(&env).await;
    vapi_reconciler::store::Store::new(pool.clone())
        .set_org_key(
            org,
            &keyring.seal(org, &own_key).unwrap(),
            &vapi_reconciler::credentials::fingerprint(&own_key),
        )
        .await
        .unwrap();
    let phone = env.sim.seed_phone_number("own-vapi-org", "+15551230009")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The platform key's org has a number with the same digits: never the one bound here.
    let decoy = env.sim.seed_phone_number(&env.vapi_org, "+15551230009")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let binding = bind(&pool, org, "+15551230009", Some(desk)).await;
    let controller = env
        .controller_for(common::loop_config(), common::settings())
        .with_keyring(Some(keyring));
    controller
        .pass(&env.lead, &tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(env.sim.resources("tool", "own-vapi-org").unwrap().len(), 2);
    assert!(
        tools_in_vapi(&env).is_empty(),
        "nothing under the platform key"
    );
    let s = tool_status(&pool, check).await;
    assert_eq!(s.state, "synced", "{}", s.message);
    let assistant = status(&pool, desk).await.assistant_id.unwrap();
    assert_eq!(
        env.sim.resource("phone-number", &phone).unwrap()["assistantId"],
        assistant.as_str()
    );
    assert!(env.sim.resource("phone-number", &decoy).unwrap()["assistantId"].is_null());
    assert_eq!(number_status(&pool, binding).await.reason, "Bound");
}

#[sqlx::test]
async fn an_unreadable_listed_tool_holds_its_row_and_never_gets_a_twin(pool: PgPool) {
    let env = env(pool.clone()).await;
    let (_, check, book, _) = clinic(&env).await;
    env.pass().await;
    let id = tool_status(&pool, book).await.vapi_tool_id.unwrap();
    // Someone saved a tool in Vapi nested beyond what the controller's parser reads.
    let mut deep = json!("leaf");
    for _ in 0..200 {
        deep = json!([deep]);
    }
    assert!(
        env.sim
            .edit_resource_out_of_band("tool", &id, json!({"messages": [deep]}))
    );
    env.sim.reset_counters();
    env.pass().await;
    assert_eq!(
        env.sim.counters().total("POST", "/tool"),
        0,
        "no second tool"
    );
    let s = tool_status(&pool, book).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("failed", "VapiBadResponse")
    );
    assert!(s.message.contains(&id), "{}", s.message);
    assert_eq!(
        tool_status(&pool, check).await.state,
        "synced",
        "the other tool is fine"
    );
    assert_eq!(tools_in_vapi(&env).len(), 2);
}
