//! The operator console's pages at fleet scale: how long `GET /ui` (the fleet page) and the
//! first page of `/ui/agents` take at 100,000 agents, as ratios to the 100 ms bound.
//!
//! Design note: the fleet is made as the steady scenario makes it (the agents inserted, one
//! pass at no latency creating every assistant, so every agent is `synced`), then 1 % of the
//! agents are marked failed, so the page has an oldest unresolved agent and failing
//! organizations to find. The HTTP server is wired as `run` wires it (the `/v1` API and the
//! console on one listener), a session is signed in through `POST /ui/login`, and each page is
//! fetched over loopback HTTP: what is measured is what a browser waits for. Requests are spaced
//! by 100 ms, so the fleet count goes stale during the run and is recounted in the background
//! while pages are served, as it is for an operator watching the page.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Args, Env, Row, in_sync};
use vapi_reconciler::api::{AdminToken, Api};
use vapi_reconciler::http::{self, HttpState};
use vapi_reconciler::metrics::Metrics;
use vapi_reconciler::store::Store;

/// The bound on every measured page.
const BOUND_MS: f64 = 100.0;
/// Requests per measured page.
const SAMPLES: usize = 50;

pub(crate) async fn console(args: &Args) -> anyhow::Result<Vec<Row>> {
    let n = args.agents.unwrap_or(100_000);
    let env = Env::new(&args.database_url).await?;
    env.insert_agents(n).await?;
    let setup = in_sync(&env, args).await?;
    anyhow::ensure!(
        env.synced().await? == n,
        "the setup pass left agents unsynced"
    );
    sqlx::query(
        "update agent_status set state = 'failed', reason = 'VapiRejected',
                message = 'Vapi refused the spec.'
         where agent_id in (select id from agents order by id limit $1)",
    )
    .bind(i64::try_from(n / 100)?)
    .execute(&env.pool)
    .await?;
    sqlx::query("analyze").execute(&env.pool).await?;

    let token = "bench-console-admin-token";
    let controller = Arc::new(setup.controller);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cancel = tokio_util::sync::CancellationToken::new();
    let state = HttpState {
        pool: env.pool.clone(),
        loop_status: controller.subscribe(),
        platform_key: controller.platform_key().clone(),
        metrics: Metrics::new("vapi-reconciler")?,
        api: Some(Api {
            controller: controller.clone(),
            store: Store::new(env.pool.clone()),
            token: AdminToken::new(token),
            wait_timeout: Duration::from_secs(30),
        }),
    };
    let server = tokio::spawn(http::serve(listener, state, cancel.clone()));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let signed_in = client
        .post(format!("{base}/ui/login"))
        .header("origin", &base)
        .form(&[("token", token)])
        .send()
        .await?;
    anyhow::ensure!(signed_in.status() == 303, "sign-in: {}", signed_in.status());
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("sign-in set no cookie"))?
        .to_owned();
    let fetch = |path: &str| {
        let (client, cookie, url) = (client.clone(), cookie.clone(), format!("{base}{path}"));
        async move {
            let t = Instant::now();
            let answer = client.get(&url).header("cookie", cookie).send().await?;
            anyhow::ensure!(answer.status() == 200, "{url}: {}", answer.status());
            let body = answer.text().await?;
            Ok::<_, anyhow::Error>((t.elapsed().as_secs_f64() * 1000.0, body))
        }
    };

    // The server took its first count as it started; the first page, asked for at once, waits
    // for the rest of it. Every later one is served from it.
    let (first_ms, page) = fetch("/ui").await?;
    anyhow::ensure!(page.contains("Oldest unresolved"), "not the fleet page");
    let mut rows = Vec::new();
    for (path, what) in [
        ("/ui", "fleet page"),
        ("/ui/agents", "agents list, first page"),
        ("/ui/agents?state=failed", "agents list, failed"),
    ] {
        let mut times = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            times.push(fetch(path).await?.0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        times.sort_by(f64::total_cmp);
        let p50 = times[SAMPLES / 2];
        let p95 = times[SAMPLES * 95 / 100];
        rows.push(Row {
            scenario: format!("console {what} p50 (N={n})"),
            measured: format!("{p50:.1} ms"),
            bound: format!("{BOUND_MS} ms"),
            ratio: Some(p50 / BOUND_MS),
            goal: Some(1.0),
            note: format!("GET {path} over loopback, {SAMPLES} requests 100 ms apart"),
        });
        rows.push(Row {
            scenario: format!("console {what} p95 (N={n})"),
            measured: format!("{p95:.1} ms"),
            bound: format!("{BOUND_MS} ms"),
            ratio: Some(p95 / BOUND_MS),
            goal: Some(1.0),
            note: format!("max {:.1} ms", times[SAMPLES - 1]),
        });
    }
    rows.push(Row {
        scenario: format!("console fleet page, first (N={n})"),
        measured: format!("{first_ms:.1} ms"),
        bound: "—".to_owned(),
        ratio: None,
        goal: None,
        note: "asked for right after the server started: waits for the rest of the first fleet count (one aggregate over every agent, begun at start); later pages are served from it and it is recounted in the background once 2 s old".to_owned(),
    });
    cancel.cancel();
    server.await??;
    setup.lead.release().await;
    env.drop().await?;
    Ok(rows)
}
