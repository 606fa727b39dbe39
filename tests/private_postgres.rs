//! The demo needs no database of its own: without DATABASE_URL it runs on a private, throwaway
//! PostgreSQL server (src/pgtemp.rs) and removes it when stopped; without any server binary it
//! says in one line what to install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::process::{BIN, read_until, signal};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn without_database_url_the_demo_runs_on_a_private_server_and_removes_it() {
    let mut child = Command::new(BIN)
        .args(["demo", "--resync-interval", "1s"])
        .env_remove("DATABASE_URL")
        .env_remove("VAPI_RECONCILER_PG_BINDIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    read_until(&mut lines, "ready in", &mut out).await;
    let ready = out.last().unwrap().clone();
    let dir = ready
        .split(", in ")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .unwrap_or_else(|| panic!("no directory in {ready:?}"))
        .to_owned();
    assert!(std::path::Path::new(&dir).is_dir(), "{dir} while running");
    for marker in ["AssistantRecreated", "Refill line (deleted)"] {
        if !out.iter().any(|l| l.contains(marker)) {
            read_until(&mut lines, marker, &mut out).await;
        }
    }
    signal(&child, "-INT").await;
    while let Some(line) = lines.next_line().await.unwrap() {
        out.push(line);
    }
    let status = child.wait().await.unwrap();
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "{stderr}");
    let text = out.join("\n");
    for want in [
        "No DATABASE_URL: starting a private PostgreSQL server",
        "controller log: ",
        "What happened to each agent:",
        "Exercise coach (Lakeview Physio) — refused before any call to Vapi",
        "Front desk (Harbor Family Clinic) — created its assistant, then pointed its number",
        "then recreated its assistant, which was deleted in Vapi, then pointed its number",
        "The private PostgreSQL server is stopped and its files are removed.",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Not a terminal: no colour, and the controller's log is in its file, not here.
    assert!(!text.contains('\u{1b}'), "colour on a pipe:\n{text}");
    assert!(
        stderr.is_empty(),
        "the controller logged to stderr: {stderr}"
    );
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
    // The log stays for a look after a real demo; this one is not needed.
    let log = text
        .split("controller log: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap();
    std::fs::remove_file(log).unwrap();
}

#[tokio::test]
async fn without_server_binaries_the_demo_says_what_to_install_in_one_line() {
    let empty = std::env::temp_dir().join(format!("vr-no-pg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(BIN)
        .arg("demo")
        .env_remove("DATABASE_URL")
        .env("VAPI_RECONCILER_PG_BINDIR", &empty)
        .output()
        .await
        .unwrap();
    std::fs::remove_dir(&empty).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let said: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(
        said[0].contains("apt-get install postgresql") && said[0].contains("DATABASE_URL"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
