//! A real Prometheus server (Debian's `prometheus`, which `./test` installs) scrapes the
//! controller on 127.0.0.1: drift introduced out of band shows up in the drift metrics and goes
//! away once the controller has fixed it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::process::eventually;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use vapi_reconciler::credentials::{ApiKey, PlatformKey};
use vapi_reconciler::http::{self, HttpState};
use vapi_reconciler::metrics::Metrics;

const BOUND: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of an instant query, if it returned exactly one sample.
async fn query(prometheus: &str, q: &str) -> Option<f64> {
    let resp: Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let result = resp["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

#[sqlx::test]
async fn prometheus_sees_drift_appear_and_disappear(pool: PgPool) {
    let binary = which("prometheus").expect(
        "the Prometheus server is needed for this test: `apt-get install prometheus` (the README's ./test installs it)",
    );
    let mut env = common::env(pool.clone()).await;
    let metrics = Metrics::new("vapi-reconciler").unwrap();
    env.controller = common::controller_with(
        &pool,
        &env.vapi.clone().with_metrics(metrics.clone()),
        PlatformKey::fixed(ApiKey::new(&env.raw_key).unwrap()),
        common::loop_config(),
        common::settings(),
    )
    .with_metrics(metrics.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(http::serve(
        listener,
        HttpState {
            pool: pool.clone(),
            loop_status: env.controller.subscribe(),
            platform_key: env.controller.platform_key().clone(),
            metrics,
            api: None,
        },
        cancel.clone(),
    ));

    let dir = std::env::temp_dir().join(format!("vr-prom-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: vapi-reconciler\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let _server = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let prometheus = format!("http://127.0.0.1:{port}");
    eventually("Prometheus scrapes the controller", BOUND, || async {
        query(&prometheus, "up{job=\"vapi-reconciler\"}").await == Some(1.0)
    })
    .await;

    let org = common::org(&pool, "Harbor").await;
    let id = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    env.pass().await;
    env.pass().await;
    let diverged = "vapi_reconciler_drift{job=\"vapi-reconciler\",kind=\"diverged\"}";
    eventually("no drift after convergence", BOUND, || async {
        query(&prometheus, diverged).await == Some(0.0)
            && query(&prometheus, "vapi_reconciler_agents{state=\"synced\"}").await == Some(1.0)
    })
    .await;

    // Someone edits the assistant in Vapi; the next pass finds it (and repairs it).
    let assistant = common::status(&pool, id).await.assistant_id.unwrap();
    env.sim.edit_out_of_band(
        &assistant,
        json!({"firstMessage": "edited in the dashboard"}),
    );
    assert_eq!(env.pass().await.patched, 1);
    eventually("the drift shows up", BOUND, || async {
        query(&prometheus, diverged).await == Some(1.0)
    })
    .await;
    // Fixed: the following pass finds nothing, and the metric goes back to zero.
    assert_eq!(env.pass().await.in_sync, 1);
    eventually("the drift disappears", BOUND, || async {
        query(&prometheus, diverged).await == Some(0.0)
    })
    .await;
    cancel.cancel();
    let _ = std::fs::remove_dir_all(dir);
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}
