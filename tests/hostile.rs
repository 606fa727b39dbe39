//! The bad-input corpus, fast enough for every `cargo test`: hostile specs, each refused before
//! Vapi with a message naming its field (checked through the same code a pass runs), and hostile
//! HTTP requests, each answered with the right 4xx in the JSON `{"error", "message"}` shape,
//! never a 5xx, never the admin token. The longer randomized run is
//! `cargo run --release --example fuzz`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;
use vapi_reconciler::http::Limits;
use vapi_reconciler::reconcile::VoiceRules;
use vapi_reconciler::reconcile::validate::stored_spec_problems;

/// The problems a pass would report for a stored spec text.
fn refusal(name: &str, text: &str) -> Option<Vec<String>> {
    stored_spec_problems(name, text, &VoiceRules::default())
}

fn deep(open: &str, close: &str, n: usize, inner: &str) -> String {
    format!("{}{inner}{}", open.repeat(n), close.repeat(n))
}

#[test]
fn hostile_specs_are_refused_naming_their_field() {
    let long = "x".repeat(300_000);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "not an object",
            "[1,2]".into(),
            "spec must be a JSON object",
        ),
        ("a string", "\"hi\"".into(), "spec must be a JSON object"),
        ("null", "null".into(), "spec must be a JSON object"),
        (
            "depth 33",
            format!(r#"{{"analysisPlan": {}}}"#, deep(r#"{"a":"#, "}", 32, "1")),
            "spec.analysisPlan nests 33 levels",
        ),
        (
            "depth 127",
            format!(r#"{{"analysisPlan": {}}}"#, deep("[", "]", 126, "1")),
            "spec.analysisPlan nests 127 levels",
        ),
        (
            "depth 128",
            format!(r#"{{"analysisPlan": {}}}"#, deep("[", "]", 127, "1")),
            "spec.analysisPlan nests 128 levels",
        ),
        (
            "depth 10000",
            format!(r#"{{"model": {}}}"#, deep("[", "]", 10_000, "")),
            "spec.model nests 10001 levels",
        ),
        (
            "a deep array alone",
            deep("[", "]", 500, ""),
            "the spec nests 500 levels",
        ),
        (
            "1e400",
            r#"{"maxDurationSeconds": 1e400}"#.into(),
            "spec.maxDurationSeconds cannot be read",
        ),
        (
            "-1e400 deep inside",
            r#"{"model": {"temperature": -1e400}}"#.into(),
            "spec.model cannot be read",
        ),
        (
            "a huge integer",
            r#"{"maxDurationSeconds": 1000000000000000000000000000000}"#.into(),
            "spec.maxDurationSeconds",
        ),
        (
            "300 KB",
            format!(r#"{{"firstMessage": "{long}"}}"#),
            "spec is 300019 bytes as compact JSON (the largest field, spec.firstMessage",
        ),
        (
            "a 300 KB key",
            format!(r#"{{"{long}": 1}}"#),
            "the limit is 262144 bytes",
        ),
        (
            "a 100 KB key",
            format!(r#"{{"{}": 1}}"#, &long[..100_000]),
            "is not a Vapi assistant field",
        ),
        (
            "an unknown key",
            r#"{"firstMesage": "hi"}"#.into(),
            "spec.firstMesage is not a Vapi assistant field",
        ),
        (
            "a control character key",
            "{\"a\\u0000b\": 1}".into(),
            "is not a Vapi assistant field",
        ),
        (
            "a removed field",
            r#"{"serverUrl": "https://x"}"#.into(),
            "spec.serverUrl was removed",
        ),
        (
            "name owned",
            r#"{"name": "x"}"#.into(),
            "spec.name is owned by the controller",
        ),
        (
            "metadata owned",
            r#"{"metadata": {"managedBy": "someone"}}"#.into(),
            "spec.metadata is owned by the controller",
        ),
        (
            "server field",
            r#"{"id": "x"}"#.into(),
            "spec.id is assigned by Vapi",
        ),
        (
            "wrong type",
            r#"{"maxDurationSeconds": "long"}"#.into(),
            "spec.maxDurationSeconds",
        ),
        (
            "out of range",
            r#"{"maxDurationSeconds": 5}"#.into(),
            "spec.maxDurationSeconds must be between 10 and 43200",
        ),
        (
            "NaN-like text",
            r#"{"model": {"provider": "openai", "model": "gpt-4o", "temperature": "NaN"}}"#.into(),
            "spec.model.temperature",
        ),
        (
            "voice provider object",
            r#"{"voice": {"provider": {"a": 1}}}"#.into(),
            "spec.voice.provider",
        ),
        (
            "voice array",
            r#"{"voice": []}"#.into(),
            "spec.voice must be an object",
        ),
        (
            "server url scheme",
            r#"{"server": {"url": "javascript:alert(1)"}}"#.into(),
            "spec.server.url",
        ),
        (
            "messages not an array",
            r#"{"model": {"provider": "openai", "model": "gpt-4o", "messages": {}}}"#.into(),
            "spec.model.messages",
        ),
        (
            "10,000 bad items",
            format!(
                r#"{{"serverMessages": [{}]}}"#,
                vec!["\"nope\""; 10_000].join(",")
            ),
            "spec.serverMessages has 9997 more invalid items",
        ),
    ];
    for (what, text, needle) in &cases {
        let problems = refusal("front-desk", text).unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{what}: {needle:?} not in {problems:?}"
        );
        assert!(
            problems.iter().all(|p| p.chars().count() < 600),
            "{what}: messages stay short: {problems:?}"
        );
    }
    let name = "n".repeat(41);
    assert!(refusal(&name, "{}").unwrap()[0].starts_with("agents.name must be at most 40"));
    assert_eq!(refusal("front-desk", &common::spec(1).to_string()), None);
}

const TOKEN: &str = "hostile-corpus-admin-token-0123456789";

/// Method, path and query, `Authorization`, body, the status and the error kind expected.
type HttpCase = (
    &'static str,
    String,
    Option<String>,
    Option<String>,
    u16,
    &'static str,
);

#[sqlx::test]
async fn hostile_http_requests_get_the_right_4xx_as_json(pool: PgPool) {
    let (addr, cancel) = common::serve_api(&pool, TOKEN, Limits::default()).await;
    let base = format!("http://{addr}");
    let auth = format!("Bearer {TOKEN}");
    let big = "x".repeat(100_000);
    let deep_body = deep("[", "]", 5_000, "");
    let cases: Vec<HttpCase> = vec![
        ("GET", "/nowhere".into(), None, None, 404, "not_found"),
        (
            "GET",
            "/v1/nowhere".into(),
            Some(auth.clone()),
            None,
            404,
            "not_found",
        ),
        (
            "DELETE",
            "/healthz".into(),
            None,
            None,
            405,
            "method_not_allowed",
        ),
        (
            "POST",
            "/readyz".into(),
            None,
            None,
            405,
            "method_not_allowed",
        ),
        (
            "PUT",
            "/v1/status".into(),
            Some(auth.clone()),
            None,
            405,
            "method_not_allowed",
        ),
        (
            "GET",
            "/v1/reconcile".into(),
            Some(auth.clone()),
            None,
            405,
            "method_not_allowed",
        ),
        ("GET", "/v1/status".into(), None, None, 401, "unauthorized"),
        (
            "GET",
            "/v1/status".into(),
            Some("Bearer wrong".into()),
            None,
            401,
            "unauthorized",
        ),
        (
            "GET",
            "/v1/status".into(),
            Some("Basic Zm9vOmJhcg==".into()),
            None,
            401,
            "unauthorized",
        ),
        (
            "GET",
            "/v1/status".into(),
            Some("Bearer".into()),
            None,
            401,
            "unauthorized",
        ),
        (
            "GET",
            "/v1/plan?org=not-a-uuid".into(),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/v1/plan?org=%00".into(),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/reconcile?wait=maybe".into(),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/reconcile".into(),
            Some(auth.clone()),
            Some("{".into()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/reconcile".into(),
            Some(auth.clone()),
            Some(r#"{"orgId": "x"}"#.into()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/reconcile".into(),
            Some(auth.clone()),
            Some(r#"{"surprise": 1}"#.into()),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/reconcile".into(),
            Some(auth.clone()),
            Some(deep_body),
            400,
            "bad_json",
        ),
        (
            "POST",
            "/v1/reconcile".into(),
            Some(auth.clone()),
            Some(big),
            413,
            "payload_too_large",
        ),
        (
            "GET",
            "/v1/agents/not-a-uuid".into(),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            "/v1/agents/%00".into(),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "GET",
            format!("/v1/agents/{}", Uuid::new_v4()),
            Some(auth.clone()),
            None,
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/breakers/%00/reset".into(),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/breakers/%FF%FE/reset".into(),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            format!("/v1/breakers/{}/reset", "a".repeat(5000)),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/breakers/0123abcd/reset".into(),
            Some(auth.clone()),
            None,
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/guard/blocks/x/confirm".into(),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/guard/blocks/99999999999999999999/confirm".into(),
            Some(auth.clone()),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/guard/blocks/1/confirm".into(),
            Some(auth.clone()),
            Some(r#"{"validFor": "100000000000years"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/guard/blocks/1/confirm".into(),
            Some(auth.clone()),
            Some(r#"{"validFor": "0s"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/guard/blocks/1/confirm".into(),
            Some(auth.clone()),
            Some(r#"{"validFor": "soon"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/guard/blocks/1/confirm".into(),
            Some(auth.clone()),
            Some(r#"{"by": "a\u0000b"}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/guard/blocks/1/confirm".into(),
            Some(auth.clone()),
            Some(r#"{"by": ""}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/guard/blocks/1/confirm".into(),
            Some(auth.clone()),
            None,
            404,
            "not_found",
        ),
    ];
    let client = reqwest::Client::new();
    for (method, path, authorization, body, status, kind) in cases {
        let mut request = client.request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(a) = &authorization {
            request = request.header("authorization", a);
        }
        if let Some(b) = body {
            request = request.header("content-type", "application/json").body(b);
        }
        let answer = request.send().await.unwrap();
        let got = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        let what = format!("{method} {}", &path[..path.len().min(80)]);
        assert_eq!(got, status, "{what}: {text}");
        let json: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert_eq!(json["error"], kind, "{what}: {text}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {text}"
        );
        assert!(!text.contains(TOKEN), "{what} leaks the token");
    }
    // The scheme is case-insensitive (RFC 7235).
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let answer = client
            .get(format!("{base}/v1/status"))
            .header("authorization", format!("{scheme} {TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{scheme}");
    }
    cancel.cancel();
}
