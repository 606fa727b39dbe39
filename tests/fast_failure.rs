//! Fast failure signals: every subcommand started against a database that refuses, does not
//! answer or does not exist fails within seconds naming `DATABASE_URL` and the real cause,
//! never the password; `/readyz` turns 503 promptly when the database stops answering.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::process::command;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use vapi_reconciler::credentials::{ApiKey, PlatformKey};
use vapi_reconciler::http::{self, HttpState};
use vapi_reconciler::metrics::Metrics;

const PASSWORD: &str = "hunter2-never-printed";

/// A port on loopback that refuses connections.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the binary; its stderr. A start that hangs fails the test (the bound is generous: the
/// binary's own bound is 4 s).
async fn fails(args: &[&str], url: &str) -> String {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        command(args, url, "http://127.0.0.1:9", "a-test-key").output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{args:?} did not stop"))
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} started: {stderr}");
    assert!(
        !stderr.contains(PASSWORD),
        "{args:?} printed the password: {stderr}"
    );
    stderr
}

const SUBCOMMANDS: &[&[&str]] = &[
    &["migrate"],
    &["run", "--listen", "127.0.0.1:0"],
    &["reconcile", "--once"],
    &["plan"],
    &["guard", "list"],
    &["breaker", "list"],
    &["org-key", "list"],
    &["demo"],
];

#[tokio::test]
async fn every_subcommand_names_a_refused_connection() {
    let port = closed_port();
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/app");
    let runs = SUBCOMMANDS.iter().map(|args| {
        let url = url.clone();
        async move { (args, fails(args, &url).await) }
    });
    for (args, stderr) in futures::future::join_all(runs).await {
        assert!(
            stderr.contains("DATABASE_URL")
                && stderr.contains(&format!("connection refused at 127.0.0.1:{port}")),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_database_that_never_answers_fails_the_start_in_seconds() {
    // The kernel completes the handshake; nobody ever speaks.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://app:{PASSWORD}@127.0.0.1:{port}/app");
    let stderr = fails(&["migrate"], &url).await;
    assert!(
        stderr.contains("DATABASE_URL")
            && stderr.contains(&format!("no answer from 127.0.0.1:{port}"))
            && stderr.contains("within 4s"),
        "{stderr}"
    );
}

#[sqlx::test]
async fn a_missing_database_is_named(pool: PgPool) {
    let mut url = reqwest::Url::parse(&common::process::url_of(&pool)).unwrap();
    url.set_path("no_such_database_here");
    let stderr = fails(&["migrate"], url.as_str()).await;
    assert!(
        stderr.contains("DATABASE_URL")
            && stderr.contains("database \"no_such_database_here\" does not exist"),
        "{stderr}"
    );
}

/// A TCP relay to Postgres that can freeze: it stops passing bytes but keeps every socket open,
/// as a database behind a dead network does.
async fn relay(to: u16, freeze: CancellationToken) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let freeze = freeze.clone();
            tokio::spawn(async move {
                let mut server = TcpStream::connect(("127.0.0.1", to)).await.unwrap();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    () = freeze.cancelled() => std::future::pending::<()>().await,
                }
            });
        }
    });
    port
}

#[sqlx::test]
async fn readyz_turns_503_soon_after_the_database_stops_answering(pool: PgPool) {
    let freeze = CancellationToken::new();
    let options = (*pool.connect_options()).clone();
    let port = relay(options.get_port(), freeze.clone()).await;
    let relayed = PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(options.host("127.0.0.1").port(port));
    let env = common::env(pool.clone()).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let cancel = CancellationToken::new();
    tokio::spawn(http::serve(
        listener,
        HttpState {
            pool: relayed,
            loop_status: env.controller.subscribe(),
            platform_key: PlatformKey::fixed(ApiKey::new("a-test-key").unwrap()),
            metrics: Metrics::new("vapi-reconciler").unwrap(),
            api: None,
        },
        cancel.clone(),
    ));
    // A probe's own timeout is 5 s (deploy/); the answer must come well inside it.
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    let ready = probe.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    freeze.cancel();
    for _ in 0..2 {
        let answer = probe
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("an answer within the probe's timeout");
        assert_eq!(answer.status().as_u16(), 503);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert!(
            body["reason"]
                .as_str()
                .unwrap()
                .starts_with("database unreachable"),
            "{body}"
        );
    }
    // Liveness does not depend on the database.
    let live = probe.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
    cancel.cancel();
}
