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
    cmd.args(args)
        .env("DATABASE_URL", url)
        .env("VAPI_BASE_URL", base)
        .env("VAPI_PRIVATE_KEY", key)
        .env_remove("VAPI_PRIVATE_KEY_FILE")
        .env_remove("RUST_LOG");
    cmd
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
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
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
