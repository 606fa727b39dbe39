//! JSON logs a machine can read: every line of a real run is one JSON object with exactly one
//! `message` and one `target` and no key twice at any depth (serde_json alone keeps the last of
//! duplicate keys, which is how log tools lose the event name).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::fmt;
use std::process::Stdio;

use common::process::{command, read_until, signal, url_of};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use sqlx::PgPool;
use tokio::io::{AsyncBufReadExt, BufReader};
use vapi_reconciler::simulator::Simulator;

/// Any JSON value, refused when an object repeats a key; the top level's keys are kept.
struct Unique(Vec<String>);

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<Unique>()?;
            keys.push(key);
        }
        Ok(Unique(keys))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique(Vec::new()))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique(Vec::new()))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique(Vec::new()))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique(Vec::new()))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique(Vec::new()))
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique(Vec::new()))
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique(Vec::new()))
    }
}

/// Every line parses, repeats no key, and names its event and its origin once.
fn check(log: &[String]) {
    assert!(!log.is_empty());
    for line in log {
        let Unique(keys) = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for key in ["message", "target", "level", "timestamp"] {
            assert!(keys.iter().any(|k| k == key), "no {key}: {line}");
        }
    }
}

#[test]
fn the_checker_catches_a_duplicate_key() {
    assert!(
        serde_json::from_str::<Unique>(r#"{"message":"a","x":[{"k":1}],"message":"b"}"#).is_err()
    );
    assert!(serde_json::from_str::<Unique>(r#"{"a":{"t":1,"t":2}}"#).is_err());
    assert!(serde_json::from_str::<Unique>(r#"{"message":"a","target":"b"}"#).is_ok());
}

#[sqlx::test]
async fn every_log_line_of_a_run_is_one_object_with_one_message_and_one_target(pool: PgPool) {
    let url = url_of(&pool);
    let sim = Simulator::new();
    let key = uuid::Uuid::new_v4().to_string();
    sim.add_key(&key, "org-1");
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let org = common::org(&pool, "Harbor").await;
    common::agent(&pool, org, "good", common::spec(1)).await;
    common::agent(
        &pool,
        org,
        "bad",
        serde_json::json!({"serverUrl": "http://x"}),
    )
    .await;

    // A run with shards: it takes them, reconciles one agent and fails the other.
    let mut child = command(
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--shards",
            "2",
        ],
        &url,
        &running.base_url(),
        &key,
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    read_until(&mut lines, "took a shard", &mut log).await;
    // Both outcomes of the first pass, in whichever order its concurrent writes finish.
    for event in ["agent failed", "agent reconciled"] {
        if !log.iter().any(|l| l.contains(event)) {
            read_until(&mut lines, event, &mut log).await;
        }
    }
    signal(&child, "-TERM").await;
    while let Some(line) = lines.next_line().await.unwrap() {
        log.push(line);
    }
    assert!(child.wait().await.unwrap().success(), "{log:#?}");
    for event in ["took a shard", "agent reconciled", "agent failed"] {
        assert!(
            log.iter()
                .any(|l| l.contains(&format!("\"message\":\"{event}\""))),
            "{event}: {log:#?}"
        );
    }
    check(&log);

    // A key Vapi rejects: the quarantine's error line.
    let out = command(
        &["reconcile", "--once", "--log-format", "json"],
        &url,
        &running.base_url(),
        "a-key-vapi-does-not-know",
    )
    .output()
    .await
    .unwrap();
    let log: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        log.iter().any(|l| l.contains("Vapi rejected the key")),
        "{log:#?}"
    );
    check(&log);
}
