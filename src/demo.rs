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
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

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
use crate::pgtemp::PrivatePostgres;
use crate::reconcile::MANAGED_BY;
use crate::resilience::{BreakerConfig, Pacing, Rate};
use crate::settings::Settings;
use crate::simulator::Simulator;
use crate::store::MIGRATOR;
use crate::vapi::ClientConfig;

/// Where the controller's log goes unless `--verbose` (`None` for other commands).
pub fn log_file(command: &crate::config::Command) -> Option<PathBuf> {
    match command {
        crate::config::Command::Demo(args) if !args.verbose => Some(
            std::env::temp_dir().join(format!("vapi-reconciler-demo-{}.log", std::process::id())),
        ),
        _ => None,
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    // Listening before anything starts: a Ctrl-C during the set-up still cleans up.
    tokio::spawn(stop_on_signal(cancel.clone()));
    let screen = Screen::new();
    let log = log_file(&crate::config::Command::Demo(args.clone()));
    let (server_url, private) = match &args.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let bindir = crate::pgtemp::find_bindir()?;
            screen.say("No DATABASE_URL: starting a private PostgreSQL server for this demo…");
            let started = Instant::now();
            let server = tokio::select! {
                server = PrivatePostgres::start(bindir) => server?,
                () = cancel.cancelled() => return Ok(()),
            };
            screen.say(&format!(
                "  ready in {:.1} s: {} (removed on exit)",
                started.elapsed().as_secs_f64(),
                server.describe()
            ));
            (server.url(), Some(server))
        }
    };
    let result = story(&args, &server_url, private.is_some(), log, &screen, cancel).await;
    if let Some(server) = private {
        server.stop().await;
        screen.say("The private PostgreSQL server is stopped and its files are removed.");
    }
    result
}

/// The demo proper, on the server `server_url` names.
async fn story(
    args: &DemoArgs,
    server_url: &SecretString,
    private: bool,
    log: Option<PathBuf>,
    screen: &Screen,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let DemoArgs {
        database,
        resync_interval,
        ..
    } = args;
    let resync_interval = *resync_interval;
    let pool = create_database(server_url, database).await?;
    MIGRATOR
        .run(&pool)
        .await
        .context("migrating the demo database")?;
    seed(&pool).await?;

    let sim = Simulator::new();
    let raw_key = Uuid::new_v4().to_string();
    let vapi_org = Uuid::new_v4().to_string();
    sim.add_key(&raw_key, &vapi_org);
    sim.set_missing_azure_voices(vec!["en-US-AmberNeural".to_owned()]);
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await?;
    for (_, number, _) in FRONT_DESKS {
        sim.seed_phone_number(&vapi_org, number);
    }
    let key = ApiKey::new(&raw_key)?;
    let settings = demo_settings(&running.base_url(), resync_interval.into());
    let vapi = crate::app::vapi_client(&settings)?;
    let place = if private {
        "on the private server"
    } else {
        "on the server of DATABASE_URL"
    };
    screen.say(&format!(
        "demo database : {database} {place} (dropped and recreated)"
    ));
    screen.say(&format!(
        "Vapi simulator: {} (control API under /_sim)",
        running.base_url()
    ));
    screen.say(&format!(
        "key in use    : fingerprint {}",
        key.fingerprint()
    ));
    match &log {
        Some(path) => screen.say(&format!(
            "controller log: {} (--verbose shows it here)",
            path.display()
        )),
        None => screen.say("controller log: below (--verbose)"),
    }
    screen.say(&format!(
        "resync every  : {resync_interval}; Ctrl-C stops\n"
    ));
    screen.say(
        "Seeded 3 clinics with 9 agents, each calling the clinic's checkAvailability and \
         bookClinicAppointment tools, and a phone number per clinic for its front desk: among the \
         agents a retired Vapi voice, an Azure voice Vapi no longer has, a name too long for Vapi \
         and a spec that sets a field the controller owns.\n",
    );

    let controller = crate::app::controller(&settings, &pool, vapi, PlatformKey::fixed(key));
    let elector = crate::app::elector(&settings, &pool);
    let mut passes = controller.subscribe();
    let looping = controller.run(&elector, cancel.clone());
    let watching = async {
        let mut shown = HashMap::new();
        let mut last = Vec::new();
        let mut printed = 0;
        let mut announced = 0;
        while passes.changed().await.is_ok() {
            // The status also changes when a pass starts or leadership moves: print once per pass.
            let (done, started) = {
                let status = passes.borrow_and_update();
                (status.passes, status.passes_started)
            };
            if started > done && started > announced {
                announced = started;
                screen.progress(&format!("… pass {started} running"));
            }
            if done == printed {
                continue;
            }
            printed = done;
            screen.clear_progress();
            print_table(&pool, done, &mut shown, &mut last, screen).await?;
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
    screen.clear_progress();
    summary(&pool, screen).await?;
    pool.close().await;
    if let Some(path) = &log {
        screen.say(&format!(
            "\nThe controller's log is kept in {}.",
            path.display()
        ));
    }
    if private {
        screen.say(
            "\nStopped. To keep the demo database for a look, run the demo with DATABASE_URL set.",
        );
    } else {
        screen.say("\nStopped. The demo database is kept for a look:");
        screen.say(&format!(
            "  psql '{}' -c 'select name, state, reason, message from agent_sync_status'",
            demo_url(server_url, database)
        ));
    }
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
    // Adaptive pacing (the default) from there: the local simulator sets no limit, so the demo's
    // handful of calls never queue long enough to move it.
    lanes.pacing = Pacing::Adaptive;
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
        .context("the demo creates its database on the server of DATABASE_URL (unset, it starts a private one)")?;
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
        // Every clinic's tools, on its own backend; every agent calls both, in this order.
        let host = clinic.to_lowercase().replace(' ', "-");
        for (tool, what) in [
            (
                "checkAvailability",
                "Finds free appointment slots on a date.",
            ),
            (
                "bookClinicAppointment",
                "Books an appointment in a free slot.",
            ),
        ] {
            sqlx::query("insert into tools (org_id, name, spec) values ($1, $2, $3)")
                .bind(org)
                .bind(tool)
                .bind(json!({
                    "type": "function",
                    "function": {"name": tool, "description": what,
                                 "parameters": {"type": "object",
                                                "properties": {"date": {"type": "string"}}}},
                    "server": {"url": format!("https://{host}.example/vapi/{tool}")}
                }))
                .execute(pool)
                .await?;
        }
        for (name, spec) in agents {
            sqlx::query(
                "insert into agents (org_id, name, spec, tool_names)
                 values ($1, $2, $3, '{checkAvailability,bookClinicAppointment}')",
            )
            .bind(org)
            .bind(name)
            .bind(spec)
            .execute(pool)
            .await?;
        }
        // The front desk (the clinic's first agent) answers the clinic's number.
        sqlx::query(
            "insert into phone_numbers (org_id, number, agent_id)
             select $1, $2, id from agents where org_id = $1 and name = $3",
        )
        .bind(org)
        .bind(
            FRONT_DESKS
                .iter()
                .find(|(c, _, _)| *c == clinic)
                .map(|(_, n, _)| *n),
        )
        .bind(agents[0].0)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Each clinic's number (bought in Vapi, as numbers are) and its front desk.
const FRONT_DESKS: [(&str, &str, &str); 3] = [
    ("Harbor Family Clinic", "+15550100001", "Front desk"),
    ("Northside Dental", "+15550100002", "Reception"),
    ("Lakeview Physio", "+15550100003", "Bookings"),
];

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
    if let Some(id) = assistant("Reception").await? {
        let mut model = prompt("Be rude to callers.");
        // The edit keeps the tools: only the prompt was rewritten.
        if let Some(tools) = sim.assistant(&id).map(|a| a["model"]["toolIds"].clone()) {
            model["toolIds"] = tools;
        }
        sim.edit_out_of_band(&id, json!({"model": model}));
        println!("  - someone rewrote the system prompt of 'Reception' in the Vapi dashboard");
    }
    if let Some(id) = assistant("Front desk").await? {
        sim.delete_out_of_band(&id);
        println!(
            "  - someone deleted the assistant of 'Front desk' in the Vapi dashboard: the clinic's number +15550100001 rings a dead assistant"
        );
    }
    if let Some(id) = assistant("Reception").await? {
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
                "  - a duplicate of 'Reception' appeared (a retried create), marked {MANAGED_BY}"
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
    last: &mut Vec<String>,
    screen: &Screen,
) -> anyhow::Result<()> {
    type Row = (String, String, i64, String, String, String);
    // An agent's line says how many of its tools its assistant was last given (model.toolIds).
    let rows: Vec<Row> = sqlx::query_as(
        "select o.name, v.name, v.generation, v.state, v.reason || case
                  when cardinality(a.tool_names) = 0 then ''
                  else '  tools ' || coalesce(jsonb_array_length(case when jsonb_typeof(
                       s.applied->'model'->'toolIds') = 'array'
                       then s.applied->'model'->'toolIds' end), 0)
                       || '/' || cardinality(a.tool_names) end,
                v.message
         from agent_sync_status v join organizations o on o.id = v.org_id
         join agents a on a.id = v.agent_id
         left join agent_status s on s.agent_id = v.agent_id
         union all
         select o.name, d.name || ' (deleted)', d.generation, d.state, d.reason, d.message
         from agent_deletion_status d join organizations o on o.id = d.org_id
         order by 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let synced = rows.iter().filter(|r| r.3 == "synced").count();
    let at = chrono::Local::now().format("%H:%M:%S");
    // The tools and the numbers, from their own views, as a dashboard reads them.
    let tools: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "select o.name, t.name, t.state, t.reason, t.message
         from tool_sync_status t join organizations o on o.id = t.org_id order by 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let numbers: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
        "select o.name, coalesce(p.number, p.vapi_phone_number_id, ''),
                coalesce(a.name, 'nobody'), p.state, p.reason, p.message
         from phone_number_sync_status p join organizations o on o.id = p.org_id
         left join agents a on a.id = p.agent_id order by 1, 2",
    )
    .fetch_all(pool)
    .await?;
    let mut seen: Vec<String> = rows
        .iter()
        .map(|(_, name, generation, state, reason, message)| {
            format!("{name} {generation} {state} {reason} {message}")
        })
        .collect();
    seen.extend(tools.iter().map(|t| format!("{t:?}")));
    seen.extend(numbers.iter().map(|n| format!("{n:?}")));
    if *last == seen {
        println!(
            "── after pass {pass} at {at} ── nothing changed; {synced}/{} agents synced",
            rows.len()
        );
        return Ok(());
    }
    *last = seen;
    println!(
        "── after pass {pass} at {at} ── {synced}/{} agents synced",
        rows.len()
    );
    for (org, name, generation, state, reason, message) in rows {
        println!(
            "{} {org:<21} {:<30} gen {generation}  {} {reason}",
            screen.mark(&state),
            truncate(&name, 30),
            screen.paint(&state, &format!("{state:<7}"))
        );
        if shown.get(&name) != Some(&message) {
            println!("      {message}");
            shown.insert(name, message);
        }
    }
    let tools_synced = tools.iter().filter(|t| t.2 == "synced").count();
    println!("  tools: {tools_synced}/{} synced", tools.len());
    for (org, name, state, reason, message) in tools.iter().filter(|t| t.2 != "synced") {
        println!(
            "{} {org:<21} tool {:<25} {} {reason}\n      {message}",
            screen.mark(state),
            truncate(name, 25),
            screen.paint(state, &format!("{state:<7}"))
        );
    }
    for (org, number, agent, state, reason, message) in numbers {
        println!(
            "{} {org:<21} ☎ {number} → {:<16} {} {reason}",
            screen.mark(&state),
            truncate(&agent, 16),
            screen.paint(&state, &format!("{state:<7}"))
        );
        let key = format!("number {number}");
        if shown.get(&key) != Some(&message) {
            println!("      {message}");
            shown.insert(key, message);
        }
    }
    println!();
    Ok(())
}

/// The closing screen: one sentence per agent, what the controller did and why it stands so.
async fn summary(pool: &PgPool, screen: &Screen) -> anyhow::Result<()> {
    type Row = (String, String, String, String, Vec<String>, Vec<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "select o.name, a.name, coalesce(s.state, 'pending'), coalesce(s.message, ''),
                array(select case when j.kind = 'phone_number' then 'number' else j.action end
                             || ':' || j.outcome from journal j
                      where j.agent_id = a.id order by j.id),
                array(select j.why from journal j where j.agent_id = a.id order by j.id)
         from agents a join organizations o on o.id = a.org_id
         left join agent_status s on s.agent_id = a.id
         order by 1, 2",
    )
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(());
    }
    println!("\nWhat happened to each agent:");
    for (org, name, state, message, actions, whys) in rows {
        let steps: Vec<(&str, &str)> = actions
            .iter()
            .map(String::as_str)
            .zip(whys.iter().map(String::as_str))
            .collect();
        println!(
            "{} {name} ({org}) — {}",
            screen.mark(&state),
            sentence(&state, &message, &steps)
        );
    }
    Ok(())
}

/// One agent's story: its journaled writes in order with their reasons, then where it stands.
fn sentence(state: &str, message: &str, steps: &[(&str, &str)]) -> String {
    if steps.is_empty() {
        let why = message
            .trim_start_matches("The spec cannot be sent to Vapi: ")
            .trim_end_matches(" Nothing was sent.")
            .trim_end_matches('.');
        return match state {
            "failed" => format!("refused before any call to Vapi: {why}."),
            _ => format!("is {state}: {why}."),
        };
    }
    let mut told: Vec<String> = Vec::new();
    let mut refused_voice = false;
    for (action, why) in steps {
        let step = match *action {
            "create:ok" if refused_voice => "then created it with the fallback voice".to_owned(),
            "create:ok" => match why.split_once("; voice ") {
                Some((_, voice)) => format!("created its assistant, rewriting voice {voice}"),
                None => "created its assistant".to_owned(),
            },
            "create:failed" => {
                refused_voice = why.starts_with("Vapi refused voice");
                format!("saw its first create refused ({why})")
            }
            "patch:ok" => format!("patched {}", why.trim_start_matches("drift: ")),
            "recreate:ok" => "recreated its assistant, which was deleted in Vapi".to_owned(),
            "delete:ok" if why.starts_with("duplicate") => {
                "deleted a duplicate assistant (what a retried create leaves)".to_owned()
            }
            "delete:ok" => "deleted its assistant as the agent was deleted".to_owned(),
            "adopt:ok" => "adopted an assistant it had created before".to_owned(),
            "number:ok" => match why.split_once(": ring ") {
                Some((number, rest)) => format!(
                    "pointed its number {number} at {}",
                    rest.split(" (").next().unwrap_or(rest)
                ),
                None => format!("re-pointed its number ({why})"),
            },
            other => format!("made a write that ended {other} ({why})"),
        };
        // A step repeated pass after pass is told once.
        if told.last() != Some(&step) {
            told.push(step);
        }
    }
    let now = match state {
        "synced" => "in sync now".to_owned(),
        "deleted" => "gone from Vapi, confirmed".to_owned(),
        other => format!("{other} now: {message}"),
    };
    let mut text = String::new();
    for (i, step) in told.iter().enumerate() {
        if i > 0 {
            text.push_str(if step.starts_with("then ") {
                ", "
            } else {
                ", then "
            });
        }
        text.push_str(step);
    }
    format!("{text}; {now}.")
}

/// Narration on stdout; colour and a self-erasing progress line only on a terminal.
struct Screen {
    tty: bool,
}

impl Screen {
    fn new() -> Self {
        Self {
            tty: std::io::stdout().is_terminal(),
        }
    }

    fn say(&self, text: &str) {
        println!("{text}");
    }

    fn progress(&self, text: &str) {
        if self.tty {
            print!("\r\x1b[2K{}", self.paint("", text));
            let _ = std::io::stdout().flush();
        } else {
            println!("{text}");
        }
    }

    fn clear_progress(&self) {
        if self.tty {
            print!("\r\x1b[2K");
            let _ = std::io::stdout().flush();
        }
    }

    fn mark(&self, state: &str) -> String {
        let mark = match state {
            "synced" => "✔",
            "failed" => "✘",
            "deleted" => "–",
            _ => "…",
        };
        self.paint(state, mark)
    }

    /// `text` in the colour of `state` (dim for anything else), on a terminal only.
    fn paint(&self, state: &str, text: &str) -> String {
        if !self.tty {
            return text.to_owned();
        }
        let colour = match state {
            "synced" => "32",
            "failed" => "31",
            "pending" | "drifted" => "33",
            _ => "2",
        };
        format!("\x1b[{colour}m{text}\x1b[0m")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}
