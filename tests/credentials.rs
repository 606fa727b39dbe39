//! Credentials and resilience: the seed incident's timeline end to end, per-org keys, an outage
//! behind the breaker, rate limits, and no secret in any log line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::process::{command, eventually, signal, url_of};
use common::{agent, env, loop_config, org, settings, spec, status};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vapi_reconciler::credentials::{ApiKey, PlatformKey, fingerprint};
use vapi_reconciler::resilience::{BreakerConfig, Rate};
use vapi_reconciler::simulator::{Fault, FaultMode, RateLimit, Simulator};
use vapi_reconciler::store::Store;
use vapi_reconciler::vault::Keyring;

const BOUND: Duration = Duration::from_secs(60);

/// Replaces a key file the way Kubernetes updates a mounted Secret: write aside, then rename.
fn swap_key_file(path: &std::path::Path, key: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{key}\n")).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn state_of(pool: &PgPool, agent: Uuid) -> Option<(String, String, Option<String>)> {
    sqlx::query_as("select state, reason, key_fingerprint from agent_status where agent_id = $1")
        .bind(agent)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn the_seed_incident_is_loud_within_seconds_and_heals_without_a_restart(pool: PgPool) {
    let url = url_of(&pool);
    let key_a = format!("key-a-{}", Uuid::new_v4());
    let key_b = format!("key-b-{}", Uuid::new_v4());
    let org_key = format!("org-key-{}", Uuid::new_v4());
    let encryption = STANDARD.encode(rand::random::<[u8; 32]>());
    let sim = Simulator::new();
    sim.add_key(&key_b, "clinic-vapi-org");
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await.unwrap();

    // Another tenant with its own key that Vapi does not know: its failures are in the logs too.
    let other = org(&pool, "Lakeview").await;
    let keyring = Keyring::parse(&format!("k1:{encryption}"), "test").unwrap();
    let store = Store::new(pool.clone());
    store
        .set_org_key(
            other,
            &keyring.seal(other, &org_key).unwrap(),
            &fingerprint(&org_key),
        )
        .await
        .unwrap();
    agent(&pool, other, "lakeview", spec(9)).await;

    let dir = std::env::temp_dir().join(format!("vr-seed-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("vapi-key");
    swap_key_file(&key_file, &key_a);

    let mut child = command(
        &["run", "--listen", "127.0.0.1:0"],
        &url,
        &running.base_url(),
        "",
    )
    .env_remove("VAPI_PRIVATE_KEY")
    .env("VAPI_PRIVATE_KEY_FILE", &key_file)
    .env(
        "VAPI_RECONCILER_ENCRYPTION_KEYS",
        format!("k1:{encryption}"),
    )
    .env("RESYNC_INTERVAL", "1s")
    .env("KEY_RELOAD_INTERVAL", "200ms")
    .env("QUARANTINE_PROBE_INTERVAL", "2s")
    .env("LOG_FORMAT", "json")
    .env("RUST_LOG", "debug")
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = tokio::spawn({
        let log = log.clone();
        let stderr = child.stderr.take().unwrap();
        async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line);
            }
        }
    });

    // The controller is running with key A; the clinic saves an agent.
    let clinic = org(&pool, "Harbor").await;
    let id = agent(&pool, clinic, "front-desk", spec(1)).await;
    let fp_a = fingerprint(&key_a);
    eventually(
        "CredentialsRejected with A's fingerprint",
        Duration::from_secs(10),
        || async {
            state_of(&pool, id).await
                == Some((
                    "failed".into(),
                    "CredentialsRejected".into(),
                    Some(fp_a.clone()),
                ))
        },
    )
    .await;
    let s = status(&pool, id).await;
    assert!(
        s.message.contains(&fp_a) && s.message.contains("Invalid Key"),
        "{}",
        s.message
    );

    // Quarantined: later passes (every second) send nothing with A beyond one probe per 2 s.
    let before = sim.counters();
    let probes_at_start = before.with_status(401);
    eventually("three more passes", BOUND, || async {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("pass complete"))
            .count()
            >= 4
    })
    .await;
    let passes = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("pass complete"))
        .count();
    let after = sim.counters();
    assert_eq!(after.writes(), 0, "no write with a rejected key: {after:?}");
    let probes = after.with_status(401) - probes_at_start;
    // The other tenant's key is quarantined too; each key is probed at most once per 2 s.
    assert!(
        probes <= 2 * (passes as u64 / 2 + 1),
        "{probes} probes in {passes} passes"
    );

    // The key file is fixed: the agent converges with B, no restart.
    swap_key_file(&key_file, &key_b);
    let fp_b = fingerprint(&key_b);
    eventually("synced with B", Duration::from_secs(10), || async {
        state_of(&pool, id)
            .await
            .is_some_and(|(state, _, fp)| state == "synced" && fp == Some(fp_b.clone()))
    })
    .await;
    assert_eq!(sim.assistants("clinic-vapi-org").len(), 1);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the same process, never restarted"
    );
    // The other tenant still fails on its own key and never fell back to the platform key.
    let (state, reason, fp) = state_of(&pool, other_agent(&pool, other).await)
        .await
        .unwrap();
    assert_eq!(
        (state.as_str(), reason.as_str(), fp),
        ("failed", "CredentialsRejected", Some(fingerprint(&org_key)))
    );

    signal(&child, "-TERM").await;
    assert!(child.wait().await.unwrap().success());
    reader.await.unwrap();
    let text = log.lock().unwrap().join("\n");
    assert!(
        text.contains("reloaded the Vapi platform key") && text.contains(&fp_b),
        "{text}"
    );
    for secret in [&key_a, &key_b, &org_key, &encryption] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret leaked into the logs"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

async fn other_agent(pool: &PgPool, org: Uuid) -> Uuid {
    sqlx::query_scalar("select id from agents where org_id = $1")
        .bind(org)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test]
async fn an_orgs_own_key_serves_that_org_only_and_a_wrong_one_hurts_no_one_else(pool: PgPool) {
    let env = env(pool.clone()).await;
    let own_key = Uuid::new_v4().to_string();
    env.sim.add_key(&own_key, "own-vapi-org");
    let wrong_key = Uuid::new_v4().to_string();
    let keyring = Keyring::parse(
        &format!("k1:{}", STANDARD.encode(rand::random::<[u8; 32]>())),
        "test",
    )
    .unwrap();
    let store = Store::new(pool.clone());
    let own = org(&pool, "Own").await;
    let wrong = org(&pool, "Wrong").await;
    let shared = org(&pool, "Shared").await;
    for (o, k) in [(own, &own_key), (wrong, &wrong_key)] {
        store
            .set_org_key(o, &keyring.seal(o, k).unwrap(), &fingerprint(k))
            .await
            .unwrap();
    }
    let a_own = agent(&pool, own, "own", spec(1)).await;
    let a_wrong = agent(&pool, wrong, "wrong", spec(2)).await;
    let a_shared = agent(&pool, shared, "shared", spec(3)).await;

    let controller = env
        .controller_for(loop_config(), settings())
        .with_keyring(Some(keyring));
    let report = controller
        .pass(&env.lead, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((report.created, report.failed), (2, 1));
    assert_eq!(env.sim.assistants("own-vapi-org").len(), 1);
    assert_eq!(
        env.sim.assistants("own-vapi-org")[0]["metadata"]["agentId"],
        a_own.to_string()
    );
    assert_eq!(
        env.assistants().len(),
        1,
        "only the shared org uses the platform key"
    );
    assert_eq!(
        env.assistants()[0]["metadata"]["agentId"],
        a_shared.to_string()
    );
    let pool = &pool;
    let fp = |id| async move { state_of(pool, id).await.unwrap() };
    assert_eq!(fp(a_own).await.2, Some(fingerprint(&own_key)));
    assert_eq!(fp(a_shared).await.2, Some(env.key.fingerprint().to_owned()));
    let (state, reason, key) = fp(a_wrong).await;
    assert_eq!(
        (state.as_str(), reason.as_str(), key),
        (
            "failed",
            "CredentialsRejected",
            Some(fingerprint(&wrong_key))
        )
    );

    // Without the encryption keys, the orgs with their own key get nothing, not the platform key.
    env.sim.reset_counters();
    let report = env.pass().await;
    assert_eq!(report.failed, 2);
    assert_eq!(env.sim.counters().writes(), 0);
    let (state, reason, _) = fp(a_own).await;
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("failed", "CredentialsUnavailable")
    );
    assert_eq!(env.assistants().len(), 1);
}

#[sqlx::test]
async fn a_minute_long_outage_opens_the_breaker_and_convergence_resumes_by_itself(pool: PgPool) {
    let env = env(pool.clone()).await;
    let mut config = loop_config();
    config.lanes.breaker = BreakerConfig {
        failure_threshold: 5,
        open_base: Duration::from_secs(5),
        open_max: Duration::from_secs(30),
    };
    let clock = config.lanes.clock.clone();
    let controller = env.controller_for(config, settings());
    let org = org(&pool, "Harbor").await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(agent(&pool, org, &format!("agent-{n}"), spec(n)).await);
    }
    env.sim.inject(common::fault(
        None,
        None,
        FaultMode::Respond,
        Some(503),
        None,
    ));
    // 60 s of outage on the controller's clock, a pass every 5 s.
    let cancel = CancellationToken::new();
    for _ in 0..12 {
        controller.pass(&env.lead, &cancel).await.unwrap();
        clock.advance(Duration::from_secs(5));
    }
    let during = env.sim.counters().total("GET", "/assistant");
    // Threshold 5 (the first pass's listing and its 2 retries, then the second pass's), then one
    // probe per open period: 5, 10, 20, 30 s — at most 4 in the remaining minute.
    assert!(during <= 5 + 4, "{during} calls during the outage");
    assert_eq!(env.sim.counters().writes(), 0);
    let s = status(&pool, ids[0]).await;
    assert_eq!(
        (s.state.as_str(), s.reason.as_str()),
        ("pending", "CircuitOpen"),
        "{}",
        s.message
    );
    let health = Store::new(pool.clone()).credential_health().await.unwrap();
    assert_eq!(health[0].breaker_state, "open");

    // Vapi is back: once the open period ends, the next pass probes, closes and converges.
    env.sim.clear_faults();
    clock.advance(Duration::from_secs(30));
    let report = controller.pass(&env.lead, &cancel).await.unwrap();
    assert_eq!(report.created, 20);
    let health = Store::new(pool.clone()).credential_health().await.unwrap();
    assert_eq!(health[0].breaker_state, "closed");
}

#[sqlx::test]
async fn a_breaker_reset_from_the_command_line_reaches_the_leader(pool: PgPool) {
    let env = env(pool.clone()).await;
    // The loop below must lead: hand the environment's leadership over.
    let common::TestEnv {
        lead,
        sim,
        vapi,
        key,
        running: _running,
        ..
    } = env;
    lead.release().await;
    let mut config = loop_config();
    config.lanes.breaker = BreakerConfig {
        failure_threshold: 1,
        open_base: Duration::from_secs(3600),
        open_max: Duration::from_secs(3600),
    };
    let controller = Arc::new(common::controller_with(
        &pool,
        &vapi,
        PlatformKey::fixed(key.clone()),
        config,
        settings(),
    ));
    let org = org(&pool, "Harbor").await;
    let id = agent(&pool, org, "front-desk", spec(1)).await;
    sim.inject(common::fault(
        Some("GET"),
        Some("/assistant"),
        FaultMode::Respond,
        Some(503),
        Some(1),
    ));
    // `run` as deployed: the loop (5-minute resync) and the listener.
    let cancel = CancellationToken::new();
    let elector = vapi_reconciler::sharding::ShardElector::new(
        (*pool.connect_options()).clone(),
        common::leader_config("breaker-test"),
        1,
    );
    tokio::spawn({
        let (controller, cancel) = (controller.clone(), cancel.clone());
        async move { controller.run(&elector, cancel).await }
    });
    tokio::spawn({
        let (controller, pool, cancel) = (controller.clone(), pool.clone(), cancel.clone());
        async move {
            vapi_reconciler::controller::listen::listen(
                pool,
                controller.activator(),
                cancel,
                |table| controller.on_notified(table),
            )
            .await;
        }
    });
    eventually("the breaker opens", BOUND, || async {
        state_of(&pool, id)
            .await
            .is_some_and(|(_, reason, _)| reason == "CircuitOpen")
    })
    .await;
    let list = command(
        &["breaker", "list"],
        &url_of(&pool),
        "http://127.0.0.1:9",
        "",
    )
    .output()
    .await
    .unwrap();
    let rows: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["fingerprint"], key.fingerprint());
    assert_eq!(rows[0]["breaker_state"], "open");
    let out = command(
        &["breaker", "reset", key.fingerprint()],
        &url_of(&pool),
        "http://127.0.0.1:9",
        "",
    )
    .output()
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Notified, the leader applies the reset and converges, long before the open hour is over.
    // Well under the 60 s after which unchanged key state is republished anyway.
    eventually(
        "synced after the reset",
        Duration::from_secs(20),
        || async {
            state_of(&pool, id)
                .await
                .is_some_and(|(state, _, _)| state == "synced")
        },
    )
    .await;
    cancel.cancel();
}

#[sqlx::test]
async fn retry_after_is_honoured_and_a_rate_limit_is_not_hit_after_the_first_burst(pool: PgPool) {
    let env = env(pool.clone()).await;
    let org = org(&pool, "Harbor").await;
    // One 429 on the listing, asking for a 1 s pause: the retry waits at least that long.
    env.sim.inject(Fault {
        method: Some("GET".into()),
        route: Some("/assistant".into()),
        mode: FaultMode::Respond,
        status: Some(429),
        retry_after: Some("1".into()),
        count: Some(1),
    });
    agent(&pool, org, "front-desk", spec(0)).await;
    let mut config = loop_config();
    config.lanes.retry_after_min = Duration::from_secs(1);
    let controller = env.controller_for(config, settings());
    let cancel = CancellationToken::new();
    let started = std::time::Instant::now();
    let report = controller.pass(&env.lead, &cancel).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    assert_eq!((report.created, report.failed), (1, 0));
    assert_eq!(env.sim.counters().with_status(429), 1);

    // 1,000 agents against a Vapi that allows 400 requests a second: pacing under it means no
    // 429 at all.
    sqlx::query(
        "insert into agents (org_id, name, spec)
         select $1, 'agent-' || n, jsonb_build_object('firstMessage', 'Hello ' || n)
         from generate_series(1, 999) n",
    )
    .bind(org)
    .execute(&pool)
    .await
    .unwrap();
    env.sim.set_rate_limit(Some(RateLimit {
        per_second: 400.0,
        burst: 40,
        retry_after: true,
    }));
    env.sim.reset_counters();
    let mut config = loop_config();
    config.lanes.write_rate = Rate {
        per_second: 350.0,
        burst: 20,
    };
    config.lanes.read_rate = Rate {
        per_second: 20.0,
        burst: 5,
    };
    let controller = env.controller_for(
        config,
        vapi_reconciler::controller::PassSettings {
            concurrency: 32,
            ..settings()
        },
    );
    let report = controller.pass(&env.lead, &cancel).await.unwrap();
    assert_eq!(report.created, 999, "{report:?}");
    let c = env.sim.counters();
    assert_eq!(c.with_status(429), 0, "{c:?}");
    assert_eq!(env.assistants().len(), 1000);
}

#[test]
fn debug_output_of_keys_and_keyrings_shows_fingerprints_only() {
    let raw = format!("secret-{}", Uuid::new_v4());
    let key = ApiKey::new(&raw).unwrap();
    let platform = PlatformKey::fixed(key.clone());
    let encryption = STANDARD.encode(rand::random::<[u8; 32]>());
    let keyring = Keyring::parse(&format!("k1:{encryption}"), "test").unwrap();
    let shown = format!(
        "{key:?} {platform:?} {:?} {keyring:?} {}",
        platform.current(),
        serde_json::to_string(&platform.current()).unwrap()
    );
    assert!(
        !shown.contains(&raw) && !shown.contains(&encryption),
        "{shown}"
    );
    assert!(shown.contains(key.fingerprint()));
}

#[sqlx::test]
async fn a_failing_agent_backs_off_alone_and_a_refused_spec_waits_for_a_change(pool: PgPool) {
    let env = env(pool.clone()).await;
    let mut config = loop_config();
    config.agent_backoff = vapi_reconciler::resilience::Backoff {
        base: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
        jitter: 0.0,
    };
    let controller = env.controller_for(config, settings());
    let cancel = CancellationToken::new();
    let org = org(&pool, "Harbor").await;
    let flaky = agent(&pool, org, "flaky", spec(1)).await;
    controller.pass(&env.lead, &cancel).await.unwrap();
    // Vapi refuses the new agent's spec (a 400): terminal until the agent changes.
    let refused = agent(&pool, org, "refused", spec(2)).await;
    env.sim.inject(common::fault(
        Some("POST"),
        Some("/assistant"),
        FaultMode::Respond,
        Some(400),
        Some(1),
    ));
    // The flaky agent's assistant drifts, and patching it fails three times (all retries).
    let a = status(&pool, flaky).await.assistant_id.unwrap();
    env.sim
        .edit_out_of_band(&a, serde_json::json!({"firstMessage": "edited"}));
    env.sim.inject(common::fault(
        Some("PATCH"),
        Some("/assistant/{id}"),
        FaultMode::Respond,
        Some(503),
        Some(3),
    ));
    let report = controller.pass(&env.lead, &cancel).await.unwrap();
    assert_eq!(report.failed, 2);
    assert_eq!(status(&pool, refused).await.reason, "VapiRejected");
    assert_eq!(status(&pool, flaky).await.reason, "VapiUnavailable");

    // Both wait; a new agent in the same pass does not.
    let fresh = agent(&pool, org, "fresh", spec(3)).await;
    env.sim.reset_counters();
    let report = controller.pass(&env.lead, &cancel).await.unwrap();
    assert_eq!((report.deferred, report.created), (2, 1));
    let c = env.sim.counters();
    assert_eq!(
        (
            c.total("POST", "/assistant"),
            c.total("PATCH", "/assistant/{id}")
        ),
        (1, 0)
    );
    assert_eq!(status(&pool, fresh).await.state, "synced");
    assert_eq!(
        status(&pool, refused).await.reason,
        "VapiRejected",
        "its status stays"
    );

    // Changing the refused agent is a new generation: it is tried at once.
    sqlx::query("update agents set name = 'fixed' where id = $1")
        .bind(refused)
        .execute(&pool)
        .await
        .unwrap();
    let report = controller.pass(&env.lead, &cancel).await.unwrap();
    assert_eq!((report.created, report.deferred), (1, 1));
    assert_eq!(status(&pool, refused).await.state, "synced");
}
