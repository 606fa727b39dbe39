//! The binary as a user runs it: migrations gate `run`, `reconcile --once` exit codes, and a
//! clean exit on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use sqlx::PgPool;
use vapi_reconciler::simulator::Simulator;

const BIN: &str = env!("CARGO_BIN_EXE_vapi-reconciler");

/// The URL of the test's own database.
fn url_of(pool: &PgPool) -> String {
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let mut url = reqwest::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
    url.set_path(&db);
    url.to_string()
}

async fn simulator() -> (vapi_reconciler::simulator::RunningSimulator, String) {
    let sim = Simulator::new();
    let key = uuid::Uuid::new_v4().to_string();
    sim.add_key(&key, "org-1");
    (sim.start(([127, 0, 0, 1], 0).into()).await.unwrap(), key)
}

fn command(args: &[&str], url: &str, base: &str, key: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.kill_on_drop(true)
        .args(args)
        .env("DATABASE_URL", url)
        .env("VAPI_BASE_URL", base)
        .env("VAPI_PRIVATE_KEY", key)
        .env_remove("VAPI_PRIVATE_KEY_FILE")
        .env_remove("RUST_LOG");
    cmd
}

async fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("the child is running").to_string();
    let status = Command::new("kill")
        .args([signal, &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
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

/// Reads log lines until one contains `marker`; a test that never sees it fails instead of
/// hanging (the bound is generous: it only catches a marker that never comes).
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<impl tokio::io::AsyncRead + Unpin>>,
    marker: &str,
    log: &mut Vec<String>,
) {
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let found = line.contains(marker);
            log.push(line);
            if found {
                return true;
            }
        }
        false
    };
    match tokio::time::timeout(std::time::Duration::from_secs(60), reading).await {
        Ok(true) => {}
        Ok(false) => panic!("the process ended before logging {marker:?}: {log:#?}"),
        Err(_) => panic!("no {marker:?} within 60 s: {log:#?}"),
    }
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
        "The Kylie voice is part of a legacy voice set",
        "name must be shorter than or equal to 40 characters",
        "InvalidSpec",
        "gen 2  synced  Patched",
        "differing fields: model.messages[0].content",
        "AssistantRecreated",
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
