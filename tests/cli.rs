//! The binary as a user runs it: migrations gate `run`, `reconcile --once` exit codes, and a
//! clean exit on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{BIN, command, read_until, signal, url_of};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use sqlx::PgPool;
use vapi_reconciler::simulator::Simulator;

async fn simulator() -> (vapi_reconciler::simulator::RunningSimulator, String) {
    let sim = Simulator::new();
    let key = uuid::Uuid::new_v4().to_string();
    sim.add_key(&key, "org-1");
    (sim.start(([127, 0, 0, 1], 0).into()).await.unwrap(), key)
}

fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[sqlx::test(migrations = false)]
async fn run_refuses_an_unmigrated_database_and_migrate_fixes_it(pool: PgPool) {
    let url = url_of(&pool);
    let (sim, key) = simulator().await;
    let out = command(
        &["run", "--listen", "127.0.0.1:0"],
        &url,
        &sim.base_url(),
        &key,
    )
    .output()
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unapplied migration") && stderr.contains("vapi-reconciler migrate"),
        "{stderr}"
    );
    assert!(!stderr.contains(&key));

    let out = command(&["migrate"], &url, &sim.base_url(), &key)
        .output()
        .await
        .unwrap();
    assert_ok(&out);
    let out = command(&["reconcile", "--once"], &url, &sim.base_url(), &key)
        .output()
        .await
        .unwrap();
    assert_ok(&out);
}

#[sqlx::test]
async fn reconcile_once_exits_non_zero_when_an_agent_failed(pool: PgPool) {
    let url = url_of(&pool);
    let (sim, key) = simulator().await;
    let org = common::org(&pool, "Harbor").await;
    common::agent(&pool, org, "good", common::spec(1)).await;
    let out = command(&["reconcile", "--once"], &url, &sim.base_url(), &key)
        .output()
        .await
        .unwrap();
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["created"], 1);

    common::agent(&pool, org, &"x".repeat(60), common::spec(2)).await;
    let out = command(&["reconcile", "--once"], &url, &sim.base_url(), &key)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["failed"].as_u64(), report["in_sync"].as_u64()),
        (Some(1), Some(1))
    );

    // Vapi unreachable with nothing to converge is still not a success: nothing was verified.
    sqlx::query("delete from agents")
        .execute(&pool)
        .await
        .unwrap();
    let out = command(&["reconcile", "--once"], &url, "http://127.0.0.1:9", &key)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["list_error"]
            .as_str()
            .unwrap()
            .contains("could not reach Vapi"),
        "{report}"
    );
}

#[sqlx::test]
async fn run_stops_cleanly_on_sigterm(pool: PgPool) {
    let url = url_of(&pool);
    let (sim, key) = simulator().await;
    let org = common::org(&pool, "Harbor").await;
    common::agent(&pool, org, "good", common::spec(1)).await;
    let mut child = command(
        &["run", "--listen", "127.0.0.1:0"],
        &url,
        &sim.base_url(),
        &key,
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    // Wait for the first pass by reading the log, not by sleeping.
    let mut lines = BufReader::new(stderr).lines();
    let mut log = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        let done = line.contains("pass complete");
        log.push(line);
        if done {
            break;
        }
    }
    assert!(log.iter().any(|l| l.contains("created=1")), "{log:#?}");
    signal(&child, "-TERM").await;
    while let Some(line) = lines.next_line().await.unwrap() {
        log.push(line);
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}\n{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("controller stopped")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains(&key)),
        "the key never reaches the log"
    );
}

#[sqlx::test]
async fn sigterm_mid_pass_finishes_in_flight_writes_and_records_them(pool: PgPool) {
    let url = url_of(&pool);
    let sim = Simulator::new();
    let key = uuid::Uuid::new_v4().to_string();
    sim.add_key(&key, "org-1");
    // Slow enough that the pass is still going when SIGTERM arrives.
    sim.set_latency(std::time::Duration::from_millis(400));
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let org = common::org(&pool, "Harbor").await;
    for n in 0..8 {
        common::agent(&pool, org, &format!("agent-{n}"), common::spec(n)).await;
    }
    let mut child = command(
        &["run", "--listen", "127.0.0.1:0", "--concurrency", "1"],
        &url,
        &running.base_url(),
        &key,
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    read_until(&mut lines, "agent reconciled", &mut log).await;
    signal(&child, "-TERM").await;
    read_until(&mut lines, "pass complete", &mut log).await;
    while let Some(line) = lines.next_line().await.unwrap() {
        log.push(line);
    }
    assert!(child.wait().await.unwrap().success(), "{log:#?}");
    let created = sim.assistants("org-1").len();
    let recorded: i64 =
        sqlx::query_scalar("select count(*) from agent_status where assistant_id is not null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        created as i64, recorded,
        "every write that was made is recorded"
    );
    assert!(
        created < 8,
        "no new write started after SIGTERM: {created} created"
    );
    let summary = log.iter().find(|l| l.contains("pass complete")).unwrap();
    assert!(
        summary.contains(&format!("skipped={}", 8 - created)),
        "{summary}"
    );
}

#[sqlx::test]
async fn a_blocked_pass_waits_for_guard_confirm_on_the_command_line(pool: PgPool) {
    let url = url_of(&pool);
    let (running, key) = simulator().await;
    let org = common::org(&pool, "Harbor").await;
    for n in 0..10 {
        common::agent(&pool, org, &format!("agent-{n}"), common::spec(n)).await;
    }
    let once = || async {
        command(&["reconcile", "--once"], &url, &running.base_url(), &key)
            .env("GUARD_MIN_COUNT", "5")
            .env("ORPHAN_GRACE", "0s")
            .output()
            .await
            .unwrap()
    };
    assert_ok(&once().await);
    sqlx::query("delete from agents")
        .execute(&pool)
        .await
        .unwrap();

    let out = once().await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "a blocked pass is not a success"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let block = report["blocked"]["block_id"].as_i64().unwrap();
    assert_eq!(report["blocked"]["deletes"], 10);
    assert_eq!(report["orphans_deleted"], 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("vapi-reconciler guard confirm {block}")),
        "the log says how to confirm: {stderr}"
    );

    let list = command(&["guard", "list"], &url, &running.base_url(), &key)
        .output()
        .await
        .unwrap();
    assert_ok(&list);
    let blocks: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(blocks[0]["id"], block);
    assert!(blocks[0]["confirmed_at"].is_null());

    let bad = command(
        &["guard", "confirm", "999999"],
        &url,
        &running.base_url(),
        &key,
    )
    .output()
    .await
    .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no guard block with id 999999"));

    let confirm = command(
        &["guard", "confirm", &block.to_string(), "--by", "on-call"],
        &url,
        &running.base_url(),
        &key,
    )
    .output()
    .await
    .unwrap();
    assert_ok(&confirm);
    let out = once().await;
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["confirmed_block"], block);
    assert_eq!(report["orphans_deleted"], 10);
}

#[tokio::test]
async fn the_demo_shows_failures_and_repairs_then_stops_on_ctrl_c() {
    let database = format!("vr_demo_test_{}", uuid::Uuid::new_v4().simple());
    let server = std::env::var("DATABASE_URL").unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--database", &database, "--resync-interval", "1s"])
        .env("DATABASE_URL", &server)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out: Vec<String> = Vec::new();
    // The repairs may land in one pass or spread over two; wait for each, whichever pass it is.
    for marker in [
        "gen 2  synced  Patched",
        "AssistantRecreated",
        "Patched model",
        "Reception",
        "Deleted duplicate assistant(s)",
        "Refill line (deleted)",
    ] {
        if !out.iter().any(|l| l.contains(marker)) {
            read_until(&mut lines, marker, &mut out).await;
        }
    }
    signal(&child, "-INT").await;
    while let Some(line) = lines.next_line().await.unwrap() {
        out.push(line);
    }
    assert!(child.wait().await.unwrap().success());
    let text = out.join("\n");
    for want in [
        "Voice: vapi/Kylie → vapi/Savannah (retired-voice)",
        "Couldn't Find Azure Voice: en-US-AmberNeural",
        "used the fallback voice azure/en-US-JennyNeural",
        "agents.name must be at most 40 characters",
        "InvalidSpec",
        "gen 2  synced  Patched",
        "differing fields: model.messages[0].content (changed in Vapi)",
        "AssistantRecreated",
        "Deleted duplicate assistant(s)",
        "Refill line (deleted)",
        "tools: 6/6 synced",
        "☎ +15550100001 → Front desk",
        // The front desk's assistant was deleted in Vapi: recreated, then its number re-pointed.
        "then recreated its assistant, which was deleted in Vapi, then pointed its number +15550100001 at assistant",
        "Stopped.",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let admin = sqlx::PgPool::connect(&server).await.unwrap();
    sqlx::query(&format!("drop database {database} with (force)"))
        .execute(&admin)
        .await
        .unwrap();
}

#[sqlx::test]
async fn plan_exits_0_when_nothing_to_do_2_when_changes_pend_1_on_error(pool: PgPool) {
    let url = url_of(&pool);
    let (sim, key) = simulator().await;
    let org = common::org(&pool, "Harbor").await;
    let id = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    let plan = |base: String, extra: &'static [&'static str]| {
        let url = url.clone();
        let key = key.clone();
        async move {
            let mut args = vec!["plan", "--json"];
            args.extend_from_slice(extra);
            command(&args, &url, &base, &key).output().await.unwrap()
        }
    };
    let out = plan(sim.base_url(), &[]).await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view["changes"][0]["action"], "create");
    assert_eq!(view["changes"][0]["agent_id"], id.to_string());
    let writes: i64 = sqlx::query_scalar("select count(*) from agent_status")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(writes, 0, "a plan writes nothing");
    // Another org filters everything out.
    let other = uuid::Uuid::new_v4().to_string();
    let out = command(&["plan", "--org", &other], &url, &sim.base_url(), &key)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));

    assert_ok(
        &command(&["reconcile", "--once"], &url, &sim.base_url(), &key)
            .output()
            .await
            .unwrap(),
    );
    let out = plan(sim.base_url(), &[]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Edited in Vapi: a patch is pending, with the field named (human output).
    let assistant: String = sqlx::query_scalar("select assistant_id from agent_status")
        .fetch_one(&pool)
        .await
        .unwrap();
    reqwest::Client::new()
        .patch(format!("{}/_sim/assistants/{assistant}", sim.base_url()))
        .json(&serde_json::json!({"firstMessage": "edited"}))
        .send()
        .await
        .unwrap();
    let out = command(&["plan"], &url, &sim.base_url(), &key)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 to patch") && text.contains("firstMessage (changed in Vapi)"),
        "{text}"
    );

    let out = plan("http://127.0.0.1:9".to_owned(), &[]).await;
    assert_eq!(out.status.code(), Some(1), "unreachable Vapi is an error");
}

#[sqlx::test]
async fn sigterm_ends_a_retry_after_wait_at_once(pool: PgPool) {
    let url = url_of(&pool);
    let sim = Simulator::new();
    let key = uuid::Uuid::new_v4().to_string();
    sim.add_key(&key, "org-1");
    // Vapi asks for a minute's patience on every request, and the controller is allowed to wait
    // up to ten: only shutdown can end the wait early.
    sim.inject(vapi_reconciler::simulator::Fault {
        retry_after: Some("60".into()),
        ..common::fault(
            None,
            None,
            vapi_reconciler::simulator::FaultMode::Respond,
            Some(429),
            None,
        )
    });
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let org = common::org(&pool, "Harbor").await;
    common::agent(&pool, org, "front-desk", common::spec(1)).await;
    let mut child = command(
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--vapi-retry-after-max",
            "10m",
        ],
        &url,
        &running.base_url(),
        &key,
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    read_until(&mut lines, "Vapi rate limit", &mut log).await;
    signal(&child, "-TERM").await;
    // The bound documented for shutdown; before, this wait outlived SIGTERM by the full minute.
    let exited = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push(line);
        }
        child.wait().await.unwrap()
    })
    .await;
    let status = exited.unwrap_or_else(|_| panic!("still running 20 s after SIGTERM: {log:#?}"));
    assert!(status.success(), "{status:?}\n{log:#?}");
    assert!(
        log.iter().any(|l| l.contains("controller stopped")),
        "{log:#?}"
    );
}
