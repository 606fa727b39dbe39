//! `vapi-reconciler demo`: the whole loop on one machine, in one command.
//!
//! It makes its own database on a local Postgres, seeds three clinics and their agents (one with
//! a retired Vapi voice that the voice rules replace, one with an Azure voice only Vapi knows is
//! gone, so the fallback voice is used, one whose name is too long and one whose spec sets
//! controller-owned fields, both refused before Vapi sees them), starts the simulator and the
//! controller in-process, and prints the status table a dashboard would read after every pass.
//! After the first pass it makes trouble on purpose (an edit, a delete and a duplicate behind the
//! controller's back in "Vapi", a save and a deletion in the "dashboard") so the repairs show.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::app::stop_on_signal;
use crate::config::DemoArgs;
use crate::credentials::{ApiKey, PlatformKey};
use crate::reconcile::MANAGED_BY;
use crate::resilience::{BreakerConfig, Rate};
use crate::settings::Settings;
use crate::simulator::Simulator;
use crate::store::MIGRATOR;
use crate::vapi::ClientConfig;

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let DemoArgs {
        database_url,
        database,
        resync_interval,
    } = args;
    let pool = create_database(&database_url, &database).await?;
    MIGRATOR
        .run(&pool)
        .await
        .context("migrating the demo database")?;
    seed(&pool).await?;

    let sim = Simulator::new();
    let raw_key = Uuid::new_v4().to_string();
    sim.add_key(&raw_key, &Uuid::new_v4().to_string());
    sim.set_missing_azure_voices(vec!["en-US-AmberNeural".to_owned()]);
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await?;
    let key = ApiKey::new(&raw_key)?;
    let settings = demo_settings(&running.base_url(), resync_interval.into());
    let vapi = crate::app::vapi_client(&settings)?;
    println!("demo database : {database} (dropped and recreated)");
    println!(
        "Vapi simulator: {} (control API under /_sim)",
        running.base_url()
    );
    println!("key in use    : fingerprint {}", key.fingerprint());
    println!("resync every  : {resync_interval}; Ctrl-C stops\n");

    let controller = crate::app::controller(&settings, &pool, vapi, PlatformKey::fixed(key));
    let elector = crate::app::elector(&settings, &pool);
    let mut passes = controller.subscribe();
    let cancel = CancellationToken::new();
    tokio::spawn(stop_on_signal(cancel.clone()));
    let looping = controller.run(&elector, cancel.clone());
    let watching = async {
        let mut shown = HashMap::new();
        let mut printed = 0;
        while passes.changed().await.is_ok() {
            // The status also changes when a pass starts or leadership moves: print once per pass.
            let done = passes.borrow_and_update().passes;
            if done == printed {
                continue;
            }
            printed = done;
            print_table(&pool, done, &mut shown).await?;
            if done == 1 {
                make_trouble(&pool, &sim).await?;
            }
        }
        Ok::<_, anyhow::Error>(())
    };
    let (_, watched) = tokio::join!(looping, async {
        tokio::select! {
            r = watching => r,
            () = cancel.cancelled() => Ok(()),
        }
    });
    watched?;
    running.shutdown().await;
    println!("\nStopped. The demo database is kept for a look:");
    println!(
        "  psql '{}' -c 'select name, state, reason, message from agent_sync_status'",
        demo_url(&database_url, &database)
    );
    Ok(())
}

/// The defaults, but quick: a local simulator allows fast calls, orphans go at once so the demo
/// shows it (the default waits 15 minutes), and creates are given up on sooner.
fn demo_settings(base_url: &str, resync_interval: Duration) -> Settings {
    let mut s = Settings {
        vapi: ClientConfig {
            base_url: base_url.to_owned(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        },
        ..Settings::default()
    };
    s.leader.holder = format!("demo/{}", std::process::id());
    s.controller.resync_interval = resync_interval;
    s.controller.jitter = 0.0;
    s.controller.journal_retention = Duration::from_secs(7 * 24 * 3600);
    let lanes = &mut s.controller.lanes;
    lanes.breaker = BreakerConfig::default();
    lanes.read_rate = Rate {
        per_second: 50.0,
        burst: 50,
    };
    lanes.write_rate = lanes.read_rate;
    lanes.retries = 2;
    lanes.retry_backoff.base = Duration::from_millis(200);
    lanes.retry_backoff.max = Duration::from_secs(2);
    lanes.retry_after_max = Duration::from_secs(10);
    lanes.probe_interval = Duration::from_secs(10);
    s.controller.agent_backoff.max = Duration::from_secs(60);
    s.pass.concurrency = 4;
    s.pass.plan.create_grace = chrono::TimeDelta::seconds(30);
    s.pass.plan.orphan_grace = chrono::TimeDelta::zero();
    s
}

async fn create_database(url: &SecretString, name: &str) -> anyhow::Result<PgPool> {
    // Fails within seconds naming the cause, never the password.
    let admin = crate::app::connect(url)
        .await
        .context("set DATABASE_URL to a Postgres server the demo may create a database on")?;
    // `name` is checked to be a plain identifier when the flags are parsed.
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&admin)
        .await?;
    sqlx::query(&format!("create database {name}"))
        .execute(&admin)
        .await?;
    admin.close().await;
    let options = PgConnectOptions::from_str(url.expose_secret())?.database(name);
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?)
}

fn prompt(text: &str) -> Value {
    json!({"provider": "openai", "model": "gpt-4o", "temperature": 0.4,
           "messages": [{"role": "system", "content": text}]})
}

async fn seed(pool: &PgPool) -> anyhow::Result<()> {
    let clinics: [(&str, &[(&str, Value)]); 3] = [
        (
            "Harbor Family Clinic",
            &[
                (
                    "Front desk",
                    json!({"firstMessage": "Harbor Family Clinic, how can I help?",
                "model": prompt("Book, move and cancel appointments."),
                "voice": {"provider": "vapi", "voiceId": "Elliot"}}),
                ),
                (
                    "After-hours triage",
                    json!({"firstMessage": "You have reached Harbor after hours.",
                "model": prompt("Triage calls; send emergencies to 911."),
                "voice": {"provider": "azure", "voiceId": "en-US-JennyNeural"}}),
                ),
                (
                    "Refill line",
                    json!({"model": prompt("Take prescription refill requests."),
                "voice": {"provider": "11labs", "voiceId": "sarah", "stability": 0.5}}),
                ),
            ],
        ),
        (
            "Northside Dental",
            &[
                (
                    "Reception",
                    json!({"firstMessage": "Northside Dental, good day!",
                "model": prompt("Answer questions about opening hours."),
                "voice": {"provider": "vapi", "voiceId": "Savannah"}}),
                ),
                // Retired by Vapi on 2026-03-01: Vapi would refuse it; the voice rules replace it.
                (
                    "Recall reminders",
                    json!({"model": prompt("Remind patients of check-ups."),
                "voice": {"provider": "vapi", "voiceId": "Kylie"}}),
                ),
                // 59 characters: Vapi allows 40, so the controller refuses it before Vapi does.
                (
                    "Northside Dental new patient intake and insurance questions",
                    json!({
                "model": prompt("Register new patients.")}),
                ),
            ],
        ),
        (
            "Lakeview Physio",
            &[
                (
                    "Bookings",
                    json!({"firstMessage": "Lakeview Physio, let's find you a slot.",
                "model": prompt("Book physiotherapy sessions."),
                "voice": {"provider": "openai", "voiceId": "alloy"}}),
                ),
                // Azure retired this voice; only Vapi's lookup finds out: the fallback voice is used.
                (
                    "Billing questions",
                    json!({"model": prompt("Answer billing questions."),
                "voice": {"provider": "azure", "voiceId": "en-US-AmberNeural"}}),
                ),
                // The controller owns metadata: refused before Vapi sees it.
                (
                    "Exercise coach",
                    json!({"model": prompt("Explain home exercises."),
                "metadata": {"team": "coaching"}}),
                ),
            ],
        ),
    ];
    for (clinic, agents) in clinics {
        let org: Uuid = sqlx::query_scalar(
            "insert into organizations (id, name) values (gen_random_uuid(), $1) returning id",
        )
        .bind(clinic)
        .fetch_one(pool)
        .await?;
        for (name, spec) in agents {
            sqlx::query("insert into agents (org_id, name, spec) values ($1, $2, $3)")
                .bind(org)
                .bind(name)
                .bind(spec)
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// Edits behind the controller's back, so the next pass has something to repair.
async fn make_trouble(pool: &PgPool, sim: &Simulator) -> anyhow::Result<()> {
    let assistant = |name: &'static str| async move {
        sqlx::query_scalar::<_, String>(
            "select s.assistant_id from agent_status s join agents a on a.id = s.agent_id where a.name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await
    };
    println!("Making trouble:");
    if let Some(id) = assistant("Front desk").await? {
        sim.edit_out_of_band(&id, json!({"model": prompt("Be rude to callers.")}));
        println!("  - someone rewrote the system prompt of 'Front desk' in the Vapi dashboard");
    }
    if let Some(id) = assistant("Bookings").await? {
        sim.delete_out_of_band(&id);
        println!("  - someone deleted the assistant of 'Bookings' in the Vapi dashboard");
    }
    if let Some(id) = assistant("Front desk").await? {
        // What a retried POST whose first answer was lost leaves behind.
        if let Some(original) = sim.assistant(&id) {
            let mut copy = original.clone();
            if let Some(body) = copy.as_object_mut() {
                for server_field in ["id", "orgId", "createdAt", "updatedAt"] {
                    body.remove(server_field);
                }
            }
            let org = original["orgId"].as_str().unwrap_or_default().to_owned();
            sim.create_out_of_band(&org, copy);
            println!(
                "  - a duplicate of 'Front desk' appeared (a retried create), marked {MANAGED_BY}"
            );
        }
    }
    sqlx::query("update agents set spec = jsonb_set(spec, '{firstMessage}', '\"Harbor Family Clinic after hours. Is this an emergency?\"') where name = 'After-hours triage'")
        .execute(pool)
        .await?;
    println!("  - the clinic saved a new greeting for 'After-hours triage' (generation 2)");
    sqlx::query("update agents set deleted_at = now() where name = 'Refill line'")
        .execute(pool)
        .await?;
    println!("  - the clinic deleted the agent 'Refill line'");
    println!("The next pass repairs all of it.\n");
    Ok(())
}

/// The demo database's URL without any password, for the closing hint.
fn demo_url(server: &SecretString, database: &str) -> String {
    match reqwest::Url::parse(server.expose_secret()) {
        Ok(mut url) => {
            let _ = url.set_password(None);
            url.set_path(database);
            url.to_string()
        }
        Err(_) => format!("<your server>/{database}"),
    }
}

/// Prints every agent's line; a message only when it is new since the last table.
async fn print_table(
    pool: &PgPool,
    pass: u64,
    shown: &mut HashMap<String, String>,
) -> anyhow::Result<()> {
    type Row = (String, String, i64, String, String, String);
    let rows: Vec<Row> = sqlx::query_as(
        "select o.name, v.name, v.generation, v.state, v.reason, v.message
         from agent_sync_status v join organizations o on o.id = v.org_id
         union all
         select o.name, d.name || ' (deleted)', d.generation, d.state, d.reason, d.message
         from agent_deletion_status d join organizations o on o.id = d.org_id
         order by 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let synced = rows.iter().filter(|r| r.3 == "synced").count();
    println!(
        "── after pass {pass} at {} ── {synced}/{} agents synced",
        chrono::Local::now().format("%H:%M:%S"),
        rows.len()
    );
    for (org, name, generation, state, reason, message) in rows {
        let mark = match state.as_str() {
            "synced" => "✔",
            "failed" => "✘",
            "deleted" => "–",
            _ => "…",
        };
        println!(
            "{mark} {org:<21} {:<30} gen {generation}  {state:<7} {reason}",
            truncate(&name, 30)
        );
        if shown.get(&name) != Some(&message) {
            println!("      {message}");
            shown.insert(name, message);
        }
    }
    println!();
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
