//! The long bad-input run: `cargo run --release --example fuzz -- [--specs N] [--requests N] [--seed S]`.
//!
//! Two parts, both seeded so a failure can be replayed:
//! - **Specs**: random hostile spec texts (deep nesting, numbers out of range, huge and control
//!   character keys, random values spliced into a valid spec, byte mutations of it) go through
//!   what a pass runs on a stored spec (`parse_spec`, then `desired_body`: voice rules and
//!   validation). Counted: tried, accepted, refused, refused with a named field, panics.
//! - **HTTP**: random requests (methods, paths with hostile segments, query strings, tokens with
//!   any scheme case, junk and deep bodies) to the controller's router with the `/v1` API, on a
//!   fresh database (`vr_fuzz_<random>` on the server of `DATABASE_URL`, dropped at the end).
//!   Counted: tried, by status class, non-JSON errors, 5xx, panics, leaks (the admin token or the
//!   platform key in an answer).
//!
//! Exits 1 if there is any panic, leak, 5xx or non-JSON error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, Executor, PgConnection};
use tower::ServiceExt;
use uuid::Uuid;
use vapi_reconciler::api::{AdminToken, Api};
use vapi_reconciler::app;
use vapi_reconciler::credentials::{ApiKey, PlatformKey};
use vapi_reconciler::http::{self, HttpState};
use vapi_reconciler::metrics::Metrics;
use vapi_reconciler::reconcile::validate::stored_spec_problems;
use vapi_reconciler::reconcile::{OrphanPolicy, VoiceRules};
use vapi_reconciler::settings::Settings;
use vapi_reconciler::store::{MIGRATOR, Store};
use vapi_reconciler::vapi::ClientConfig;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    specs: usize,
    #[arg(long, default_value_t = 5_000)]
    requests: usize,
    #[arg(long, default_value_t = 18)]
    seed: u64,
}

const TOKEN: &str = "fuzz-admin-token-9f8e7d6c5b4a";
const PLATFORM_KEY: &str = "fuzz-platform-key-0a1b2c3d4e5f";

fn base_spec() -> Value {
    json!({
        "firstMessage": "Hello.",
        "model": {"provider": "openai", "model": "gpt-4o", "temperature": 0.5, "maxTokens": 300,
                  "messages": [{"role": "system", "content": "You are a receptionist."}]},
        "voice": {"provider": "vapi", "voiceId": "Elliot"},
        "maxDurationSeconds": 600,
        "server": {"url": "https://example.com/hook"}
    })
}

/// A hostile JSON-ish text (not always valid JSON: some mutations break the syntax).
fn hostile_value(rng: &mut StdRng, depth: usize) -> String {
    let nest = |rng: &mut StdRng, open: &str, close: &str| {
        let n = rng.random_range(1..400);
        format!(
            "{}{}{}",
            open.repeat(n),
            if rng.random_bool(0.5) { "1" } else { "" },
            close.repeat(n)
        )
    };
    match rng.random_range(0..14) {
        0 => nest(rng, "[", "]"),
        1 => {
            let n = rng.random_range(1..300);
            format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n))
        }
        2 => [
            "1e400",
            "-1e400",
            "1e-400",
            "123456789012345678901234567890",
            "-0",
            "1E+308",
        ][rng.random_range(0..6)]
        .to_owned(),
        3 => format!("\"{}\"", "x".repeat(rng.random_range(0..400_000))),
        4 => "\"\\u0000\\u001f\\ud800\"".to_owned(),
        5 => ["null", "true", "false", "0", "[]", "{}", "\"\""][rng.random_range(0..7)].to_owned(),
        6 => format!(
            "\"{}\"",
            [
                "elevenlabs",
                "neets",
                "Kylie",
                "en-US-JennyNeural",
                "javascript:x",
                "ftp://x"
            ][rng.random_range(0..6)]
        ),
        7 if depth < 4 => {
            let items: Vec<String> = (0..rng.random_range(0..20))
                .map(|_| hostile_value(rng, depth + 1))
                .collect();
            format!("[{}]", items.join(","))
        }
        8 if depth < 4 => {
            let fields: Vec<String> = (0..rng.random_range(0..12))
                .map(|_| format!("{}:{}", hostile_key(rng), hostile_value(rng, depth + 1)))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        9 => format!(
            "{}",
            rng.random::<f64>() * 10f64.powi(rng.random_range(-10..40))
        ),
        10 => format!("{}", rng.random::<i64>()),
        _ => format!("\"{}\"", rng.random_range(0..1000)),
    }
}

fn hostile_key(rng: &mut StdRng) -> String {
    let known = [
        "voice",
        "model",
        "transcriber",
        "server",
        "firstMessage",
        "maxDurationSeconds",
        "name",
        "metadata",
        "id",
        "orgId",
        "serverUrl",
        "hooks",
        "analysisPlan",
        "serverMessages",
        "clientMessages",
        "endCallPhrases",
        "backgroundSound",
    ];
    match rng.random_range(0..5) {
        0 => format!("\"{}\"", "k".repeat(rng.random_range(1..100_000))),
        1 => "\"a\\u0000b\"".to_owned(),
        2 => "\"ünï©ødé 😀\"".to_owned(),
        _ => format!("\"{}\"", known[rng.random_range(0..known.len())]),
    }
}

fn hostile_spec(rng: &mut StdRng) -> String {
    match rng.random_range(0..4) {
        // A valid spec with one field replaced by something hostile.
        0 | 1 => {
            let mut text = base_spec().to_string();
            let key = hostile_key(rng);
            let value = hostile_value(rng, 0);
            text.insert_str(1, &format!("{key}:{value},"));
            text
        }
        // A wholly random value.
        2 => hostile_value(rng, 0),
        // Byte mutations of a valid spec.
        _ => {
            let mut bytes = base_spec().to_string().into_bytes();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..bytes.len());
                const NOISE: &[u8] = b"{}[]\",:\\0e-";
                bytes[at] = NOISE[rng.random_range(0..NOISE.len())];
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}

fn fuzz_specs(rng: &mut StdRng, n: usize) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::new();
    for _ in 0..n {
        let text = hostile_spec(rng);
        *c.entry("tried").or_default() += 1;
        let outcome = std::panic::catch_unwind(|| {
            stored_spec_problems("front-desk", &text, &VoiceRules::default())
        });
        match outcome {
            Err(_) => {
                *c.entry("panics").or_default() += 1;
                eprintln!("PANIC on spec: {}", &text[..text.len().min(300)]);
            }
            Ok(None) => *c.entry("accepted").or_default() += 1,
            // Postgres stores only valid JSON: a text that is not JSON at all (a byte mutation
            // broke its syntax) cannot be a stored spec and cannot name a field.
            Ok(Some(_)) if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_err() => {
                *c.entry("refused").or_default() += 1;
                *c.entry("refused: not JSON at all").or_default() += 1;
            }
            Ok(Some(problems)) => {
                *c.entry("refused").or_default() += 1;
                let named = problems.iter().all(|p| {
                    let p = p.strip_prefix("spec cannot be read: ").unwrap_or(p);
                    p.starts_with("spec.")
                        || p.starts_with("the spec")
                        || p.starts_with("agents.name")
                        || p.starts_with("spec must be")
                        || p.starts_with("spec is")
                });
                if !named && c.get("refused without a field").copied().unwrap_or(0) < 5 {
                    eprintln!("refused without a field: {problems:?}");
                }
                *c.entry(if named {
                    "refused naming a field"
                } else {
                    "refused without a field"
                })
                .or_default() += 1;
                if problems.iter().any(|p| p.chars().count() > 2_000) {
                    *c.entry("overlong messages").or_default() += 1;
                }
            }
        }
    }
    c
}

fn segment(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0 => Uuid::new_v4().to_string(),
        1 => "%00".to_owned(),
        2 => "%FF%FE".to_owned(),
        3 => "a".repeat(rng.random_range(1..9_000)),
        4 => "..%2F..".to_owned(),
        5 => "99999999999999999999999".to_owned(),
        6 => "0123abcd".to_owned(),
        7 => "%F0%9F%98%80".to_owned(),
        8 => "-1".to_owned(),
        _ => rng.random_range(0..100).to_string(),
    }
}

fn request(rng: &mut StdRng) -> Option<axum::http::Request<axum::body::Body>> {
    let s = segment(rng);
    let path = match rng.random_range(0..11) {
        0 => "/v1/reconcile".to_owned(),
        1 => format!("/v1/reconcile?wait={s}"),
        2 => format!("/v1/agents/{s}"),
        3 => format!("/v1/plan?org={s}&agent={}", segment(rng)),
        4 => "/v1/status".to_owned(),
        5 => format!("/v1/breakers/{s}/reset"),
        6 => format!("/v1/guard/blocks/{s}/confirm"),
        7 => ["/healthz", "/readyz", "/metrics"][rng.random_range(0..3)].to_owned(),
        8 => format!("/{s}"),
        9 => format!("/v1/{s}"),
        _ => format!("/healthz?{s}={s}"),
    };
    let method = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"][rng.random_range(0..6)];
    let mut builder = axum::http::Request::builder().method(method).uri(path);
    builder = match rng.random_range(0..6) {
        0 => builder,
        1 => builder.header("authorization", "Bearer wrong"),
        2 => builder.header("authorization", format!("bEaReR {TOKEN}")),
        3 => builder.header("authorization", format!("Basic {TOKEN}")),
        _ => builder.header("authorization", format!("Bearer {TOKEN}")),
    };
    let body = match rng.random_range(0..6) {
        0 => String::new(),
        1 => hostile_value(rng, 0),
        2 => format!(
            r#"{{"validFor": {}, "by": {}}}"#,
            hostile_value(rng, 3),
            hostile_value(rng, 3)
        ),
        3 => format!(r#"{{"orgId": {}}}"#, hostile_value(rng, 3)),
        4 => "x".repeat(rng.random_range(0..200_000)),
        _ => "{}".to_owned(),
    };
    builder
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .ok()
}

async fn fuzz_http(rng: &mut StdRng, n: usize) -> anyhow::Result<BTreeMap<String, usize>> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("vr_fuzz_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&url).await?;
    admin
        .execute(format!("create database {name}").as_str())
        .await?;
    let mut db_url = reqwest::Url::parse(&url)?;
    db_url.set_path(&name);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(db_url.as_str())
        .await?;
    MIGRATOR.run(&pool).await?;

    // A dry-run controller on an address nothing listens on: the API is what is fuzzed.
    let mut settings = Settings {
        vapi: ClientConfig {
            base_url: "http://127.0.0.1:9".to_owned(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        },
        ..Settings::default()
    };
    settings.leader.holder = "fuzz".to_owned();
    settings.controller.jitter = 0.0;
    settings.controller.lanes.retries = 0;
    settings.pass.concurrency = 1;
    settings.pass.dry_run = true;
    settings.pass.plan.orphan_policy = OrphanPolicy::Keep;
    let key = ApiKey::new(PLATFORM_KEY).expect("key");
    let platform = PlatformKey::fixed(key);
    let controller = Arc::new(app::controller(
        &settings,
        &pool,
        app::vapi_client(&settings)?,
        platform.clone(),
    ));
    let router = http::router(HttpState {
        pool: pool.clone(),
        loop_status: controller.subscribe(),
        platform_key: platform,
        metrics: Metrics::new("vapi-reconciler")?,
        api: Some(Api {
            controller,
            store: Store::new(pool.clone()),
            token: AdminToken::new(TOKEN),
            wait_timeout: Duration::from_secs(1),
        }),
    });
    let mut c: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..n {
        let Some(req) = request(rng) else {
            *c.entry("not sendable (invalid URI)".into()).or_default() += 1;
            continue;
        };
        *c.entry("tried".into()).or_default() += 1;
        let answered = tokio::spawn(router.clone().oneshot(req)).await;
        let answer = match answered {
            Err(e) if e.is_panic() => {
                *c.entry("panics".into()).or_default() += 1;
                continue;
            }
            Err(_) => continue,
            Ok(Err(never)) => match never {},
            Ok(Ok(a)) => a,
        };
        let status = answer.status().as_u16();
        *c.entry(format!("status {}xx", status / 100)).or_default() += 1;
        let body = axum::body::to_bytes(answer.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        if text.contains(TOKEN) || text.contains(PLATFORM_KEY) {
            *c.entry("leaks".into()).or_default() += 1;
        }
        if status >= 400 {
            let shaped = serde_json::from_str::<Value>(&text)
                .is_ok_and(|v| v["error"].is_string() && v["message"].is_string());
            if !shaped {
                *c.entry("errors not JSON {error, message}".into())
                    .or_default() += 1;
                eprintln!("unshaped {status}: {}", &text[..text.len().min(200)]);
            }
        }
        if status >= 500 {
            eprintln!("{status}: {}", &text[..text.len().min(300)]);
        }
    }
    pool.close().await;
    admin
        .execute(format!("drop database {name} with (force)").as_str())
        .await?;
    Ok(c)
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    let args = Args::parse();
    let mut rng = StdRng::seed_from_u64(args.seed);
    let started = Instant::now();
    let specs = fuzz_specs(&mut rng, args.specs);
    let specs_took = started.elapsed();
    let started = Instant::now();
    let http = fuzz_http(&mut rng, args.requests).await?;
    let http_took = started.elapsed();
    println!(
        "## Specs (seed {}, {:.1} s)\n",
        args.seed,
        specs_took.as_secs_f64()
    );
    println!("| counter | value |\n|---|---|");
    for key in [
        "tried",
        "accepted",
        "refused",
        "refused naming a field",
        "refused without a field",
        "refused: not JSON at all",
        "overlong messages",
        "panics",
    ] {
        println!("| {key} | {} |", specs.get(key).copied().unwrap_or(0));
    }
    println!("\n## HTTP ({:.1} s)\n", http_took.as_secs_f64());
    println!("| counter | value |\n|---|---|");
    for key in [
        "tried",
        "status 2xx",
        "status 4xx",
        "status 5xx",
        "errors not JSON {error, message}",
        "panics",
        "leaks",
        "not sendable (invalid URI)",
    ] {
        println!("| {key} | {} |", http.get(key).copied().unwrap_or(0));
    }
    let bad = specs.get("panics").copied().unwrap_or(0)
        + http.get("panics").copied().unwrap_or(0)
        + http.get("leaks").copied().unwrap_or(0)
        + http.get("status 5xx").copied().unwrap_or(0)
        + http
            .get("errors not JSON {error, message}")
            .copied()
            .unwrap_or(0);
    Ok(if bad == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
