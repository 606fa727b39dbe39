//! Conformance tests of the Vapi simulator over real HTTP (127.0.0.1), against the shapes in the
//! compiled Vapi reference: status codes, bodies, ordering, validation wording, and fault injection.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use vapi_reconciler::simulator::{
    DEFAULT_VAPI_VOICES, Fault, FaultMode, RateLimit, RunningSimulator, Simulator,
};

const KEY: &str = "0b5c7f7e-4a43-4a5e-9f31-2f0d8e1f6a11";
const ORG: &str = "c5e63a82-371d-4063-9d0f-704fc17b1d07";
const OTHER_KEY: &str = "9d3c2b1a-0000-4000-8000-000000000002";
const OTHER_ORG: &str = "7f1e2d3c-1111-4111-8111-111111111111";
const INVALID_KEY_BODY: &str = r#"{"message":"Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.","error":"Unauthorized","statusCode":401}"#;
const MISSING: &str = "3f0b7c1e-9a4d-4c2e-8b1f-2d6e5a7c9b10";

/// Every other kind (tools, phone numbers, squads, ...), table-driven, on this harness.
#[path = "simulator/kinds.rs"]
mod kinds;

struct Env {
    sim: Simulator,
    running: RunningSimulator,
    http: Client,
}

impl Env {
    async fn new() -> Self {
        let sim = Simulator::new();
        sim.add_key(KEY, ORG);
        sim.add_key(OTHER_KEY, OTHER_ORG);
        let running = sim
            .clone()
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Self {
            sim,
            running,
            http: Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url())
    }

    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(KEY)
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut rb = self.req(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        read(rb.send().await.unwrap()).await
    }

    async fn create(&self, body: Value) -> Value {
        let (status, v) = self.send(Method::POST, "/assistant", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v
    }
}

async fn read(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The `name`s of a listed page, in order.
fn names(page: &Value) -> Vec<&str> {
    page.as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect()
}

fn bad(messages: &[&str]) -> Value {
    json!({"message": messages, "error": "Bad Request", "statusCode": 400})
}

fn bad_str(message: &str) -> Value {
    json!({"message": message, "error": "Bad Request", "statusCode": 400})
}

fn is_ms_timestamp(s: &str) -> bool {
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn fault(method: Option<&str>, route: Option<&str>, mode: FaultMode) -> Fault {
    Fault {
        method: method.map(str::to_owned),
        route: route.map(str::to_owned),
        mode,
        status: None,
        retry_after: None,
        count: Some(1),
    }
}

fn example_create() -> Value {
    json!({
        "name": "acme-support-prod",
        "firstMessage": "Hi, thanks for calling Acme. How can I help?",
        "firstMessageMode": "assistant-speaks-first",
        "model": {
            "provider": "openai", "model": "gpt-4.1", "temperature": 0.3, "maxTokens": 400,
            "messages": [{"role": "system", "content": "You are Acme's support agent."}],
            "toolIds": ["7c0a6f8e-2f7b-4e0e-9d0c-6a3f1b2c4d5e"]
        },
        "voice": {"provider": "azure", "voiceId": "en-US-JennyNeural"},
        "transcriber": {"provider": "deepgram", "model": "nova-3", "language": "en"},
        "server": {"url": "https://hooks.example.com/vapi", "headers": {"x-vapi-secret": "s"}, "timeoutSeconds": 20},
        "serverMessages": ["end-of-call-report", "status-update", "tool-calls"],
        "endCallMessage": "Thanks for calling, goodbye.",
        "voicemailMessage": null,
        "maxDurationSeconds": 900,
        "metadata": {"managedBy": "vapi-controller", "resourceKey": "acme/support/prod", "nested": {"n": [1, 2]}}
    })
}

// ---------------------------------------------------------------- create / get

#[tokio::test]
async fn create_echoes_body_and_adds_server_fields() {
    let env = Env::new().await;
    let resp = env
        .req(Method::POST, "/assistant")
        .json(&example_create())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let (_, created) = read(resp).await;

    let id = created["id"].as_str().unwrap();
    let parsed = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    assert_eq!(id, id.to_lowercase());
    assert_eq!(created["orgId"], ORG);
    let created_at = created["createdAt"].as_str().unwrap();
    assert!(is_ms_timestamp(created_at), "{created_at}");
    assert_eq!(created["updatedAt"], created["createdAt"]);
    assert_eq!(created["isServerUrlSecretSet"], false);

    // The body comes back verbatim (nulls kept, metadata round-trips), with no defaults added.
    let mut expected = example_create();
    for k in [
        "id",
        "orgId",
        "createdAt",
        "updatedAt",
        "isServerUrlSecretSet",
    ] {
        expected[k] = created[k].clone();
    }
    assert_eq!(created, expected);
    assert!(created.get("firstMessageInterruptionsEnabled").is_none());
    assert_eq!(created["voicemailMessage"], Value::Null);

    let (status, got) = env
        .send(Method::GET, &format!("/assistant/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created);
    // Ids are matched case-insensitively, like a Postgres uuid column.
    let (status, _) = env
        .send(
            Method::GET,
            &format!("/assistant/{}", id.to_uppercase()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(env.sim.assistants(ORG), vec![created]);
}

#[tokio::test]
async fn empty_create_is_accepted() {
    let env = Env::new().await;
    let created = env.create(json!({})).await;
    let keys: Vec<&String> = created.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "createdAt",
            "id",
            "isServerUrlSecretSet",
            "orgId",
            "updatedAt"
        ]
    );
}

#[tokio::test]
async fn get_missing_and_malformed_ids() {
    let env = Env::new().await;
    let not_found = json!({"message": "Not Found", "error": "Not Found", "statusCode": 404});
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let (status, body) = env
            .send(
                method.clone(),
                &format!("/assistant/{MISSING}"),
                Some(json!({})),
            )
            .await;
        assert_eq!(
            (status, body),
            (StatusCode::NOT_FOUND, not_found.clone()),
            "{method}"
        );
        let (status, body) = env
            .send(method, "/assistant/not-a-uuid", Some(json!({})))
            .await;
        assert_eq!(
            (status, body),
            (
                StatusCode::BAD_REQUEST,
                bad_str("Validation failed (uuid is expected)")
            )
        );
    }
}

#[tokio::test]
async fn unknown_routes_say_cannot() {
    let env = Env::new().await;
    let (status, body) = env.send(Method::GET, "/foo", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"message": "Cannot GET /foo", "error": "Not Found", "statusCode": 404})
    );
    let (status, body) = env.send(Method::PUT, "/assistant", Some(json!({}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "Cannot PUT /assistant");
    // Unknown routes are not assistant requests and are not counted.
    assert_eq!(env.sim.counters().requests, vec![]);
}

// ---------------------------------------------------------------- auth

#[tokio::test]
async fn bad_keys_get_the_exact_401_body() {
    let env = Env::new().await;
    let no_header = env.http.get(env.url("/assistant")).send().await.unwrap();
    let wrong = env
        .http
        .get(env.url("/assistant"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    let public_style = env
        .http
        .post(env.url("/assistant"))
        .header("authorization", format!("Bearer  {KEY}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    for resp in [no_header, wrong, public_style] {
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let bytes = resp.bytes().await.unwrap();
        assert_eq!(bytes.len(), 150);
        assert_eq!(std::str::from_utf8(&bytes).unwrap(), INVALID_KEY_BODY);
    }
    env.sim.revoke_key(KEY);
    let resp = env.req(Method::GET, "/assistant").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(env.sim.assistants(ORG), Vec::<Value>::new());
    assert_eq!(env.sim.counters().with_status(401), 4);
}

#[tokio::test]
async fn orgs_are_isolated() {
    let env = Env::new().await;
    let mine = env.create(json!({"name": "mine"})).await;
    let id = mine["id"].as_str().unwrap();
    let other = |m: Method, p: String| env.http.request(m, env.url(&p)).bearer_auth(OTHER_KEY);
    let (status, list) = read(
        other(Method::GET, "/assistant".into())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, list), (StatusCode::OK, json!([])));
    for m in [Method::GET, Method::PATCH, Method::DELETE] {
        let resp = other(m, format!("/assistant/{id}"))
            .json(&json!({"name": "theirs"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    let (_, got) = env
        .send(Method::GET, &format!("/assistant/{id}"), None)
        .await;
    assert_eq!(got, mine);
}

// ---------------------------------------------------------------- list

#[tokio::test]
async fn list_is_a_bare_array_newest_first_limited_to_100() {
    let env = Env::new().await;
    for i in 0..150 {
        env.sim.create_out_of_band(ORG, json!({"name": format!("a{i}"), "createdAt": format!("2026-01-01T00:{:02}:{:02}.000Z", i / 60, i % 60)}));
    }
    let (status, list) = env.send(Method::GET, "/assistant", None).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 100);
    assert_eq!(list[0]["name"], "a149");
    assert_eq!(list[99]["name"], "a50");

    let (_, all) = env.send(Method::GET, "/assistant?limit=1000", None).await;
    assert_eq!(all.as_array().unwrap().len(), 150);
    let (_, some) = env.send(Method::GET, "/assistant?limit=3", None).await;
    assert_eq!(names(&some), ["a149", "a148", "a147"]);

    // Paging the way a reconciler does: strictly older than the oldest seen.
    let (_, page) = env
        .send(
            Method::GET,
            "/assistant?limit=2&createdAtLt=2026-01-01T00:00:02.000Z",
            None,
        )
        .await;
    assert_eq!(names(&page), ["a1", "a0"]);
    let (_, page) = env
        .send(
            Method::GET,
            "/assistant?limit=2&createdAtLe=2026-01-01T00:00:02.000Z",
            None,
        )
        .await;
    assert_eq!(names(&page), ["a2", "a1"]);
    let (_, page) = env
        .send(
            Method::GET,
            "/assistant?createdAtGt=2026-01-01T00:02:28.000Z",
            None,
        )
        .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    let (_, page) = env.send(Method::GET, "/assistant?limit=0", None).await;
    assert_eq!(page, json!([]));
}

#[tokio::test]
async fn list_ties_break_newest_insert_first_and_limit_caps_at_1000() {
    let env = Env::new().await;
    for i in 0..1001 {
        env.sim.create_out_of_band(
            ORG,
            json!({"name": format!("t{i}"), "createdAt": "2026-02-02T02:02:02.222Z"}),
        );
    }
    let (status, list) = env.send(Method::GET, "/assistant?limit=1000", None).await;
    assert_eq!(status, StatusCode::OK);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1000);
    assert_eq!(list[0]["name"], "t1000");
    assert_eq!(list[999]["name"], "t1");
}

#[tokio::test]
async fn list_query_validation() {
    let env = Env::new().await;
    let cases: &[(&str, Value)] = &[
        ("limit=1001", bad(&["limit must not be greater than 1000"])),
        ("limit=-1", bad(&["limit must not be less than 0"])),
        (
            "limit=abc",
            bad(&[
                "limit must be a number conforming to the specified constraints",
                "limit must not be less than 0",
                "limit must not be greater than 1000",
            ]),
        ),
        (
            "createdAtLt=yesterday",
            bad(&["createdAtLt must be a valid ISO 8601 date string"]),
        ),
        (
            "limit=5000&updatedAtGe=x",
            bad(&[
                "limit must not be greater than 1000",
                "updatedAtGe must be a valid ISO 8601 date string",
            ]),
        ),
    ];
    for (query, expected) in cases {
        let (status, body) = env
            .send(Method::GET, &format!("/assistant?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(&body, expected, "{query}");
    }
    let (status, _) = env
        .send(
            Method::GET,
            "/assistant?unknownParam=1&createdAtGe=2026-01-01",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------- patch / delete

#[tokio::test]
async fn patch_replaces_top_level_keys_wholesale() {
    let env = Env::new().await;
    let old = env.sim.create_out_of_band(
        ORG,
        json!({
            "name": "acme", "firstMessage": "hi", "voicemailMessage": "leave one",
            "createdAt": "2025-01-01T00:00:00.000Z",
            "model": {"provider": "openai", "model": "gpt-4.1", "messages": [{"role": "system", "content": "prompt"}]}
        }),
    );
    let id = old["id"].as_str().unwrap();
    let (status, patched) = env
        .send(Method::PATCH, &format!("/assistant/{id}"), Some(json!({"model": {"provider": "openai", "model": "gpt-4o"}, "voicemailMessage": null})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        patched["model"],
        json!({"provider": "openai", "model": "gpt-4o"})
    );
    assert_eq!(patched["voicemailMessage"], Value::Null);
    assert_eq!(patched["name"], "acme");
    assert_eq!(patched["firstMessage"], "hi");
    assert_eq!(patched["createdAt"], "2025-01-01T00:00:00.000Z");
    assert!(patched["updatedAt"].as_str().unwrap() > "2025-01-01T00:00:00.000Z");
    assert!(is_ms_timestamp(patched["updatedAt"].as_str().unwrap()));
    let (_, got) = env
        .send(Method::GET, &format!("/assistant/{id}"), None)
        .await;
    assert_eq!(got, patched);

    // A no-op patch still bumps updatedAt.
    env.sim
        .edit_out_of_band(id, json!({"updatedAt": "2025-06-01T00:00:00.000Z"}));
    let (status, again) = env
        .send(Method::PATCH, &format!("/assistant/{id}"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(again["updatedAt"].as_str().unwrap() > "2025-06-01T00:00:00.000Z");
}

#[tokio::test]
async fn a_bad_field_rejects_the_whole_patch() {
    let env = Env::new().await;
    let created = env
        .create(json!({"name": "keep", "voice": {"provider": "vapi", "voiceId": "Elliot"}}))
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/assistant/{id}");
    let (status, body) = env
        .send(
            Method::PATCH,
            &path,
            Some(json!({"name": "changed", "maxDurationSeconds": 5})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            bad(&["maxDurationSeconds must not be less than 10"])
        )
    );
    let (status, body) = env
        .send(
            Method::PATCH,
            &path,
            Some(json!({"name": "changed", "voice": {"provider": "vapi", "voiceId": "Lily"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        bad_str(
            "The Lily voice is part of a legacy voice set that is being phased out, and assistants cannot be updated to use this voice."
        )
    );
    let (_, got) = env.send(Method::GET, &path, None).await;
    assert_eq!(got, created);
}

#[tokio::test]
async fn delete_returns_the_object_then_404s() {
    let env = Env::new().await;
    let created = env.create(json!({"name": "doomed"})).await;
    let path = format!("/assistant/{}", created["id"].as_str().unwrap());
    let (status, body) = env.send(Method::DELETE, &path, None).await;
    assert_eq!((status, body), (StatusCode::OK, created));
    for m in [Method::GET, Method::PATCH, Method::DELETE] {
        let (status, _) = env.send(m, &path, Some(json!({}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn pinned_assistants_cannot_be_deleted() {
    let env = Env::new().await;
    let created = env.create(json!({"name": "pinned"})).await;
    let id = created["id"].as_str().unwrap();
    assert!(env.sim.pin(id, true));
    let (status, body) = env
        .send(Method::DELETE, &format!("/assistant/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "assistant_pinned");
    assert!(body["message"].is_string());
    assert_eq!(body.as_object().unwrap().len(), 2);
    assert!(env.sim.pin(id, false));
    let (status, _) = env
        .send(Method::DELETE, &format!("/assistant/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!env.sim.pin(id, true));
}

// ---------------------------------------------------------------- body parsing and validation

#[tokio::test]
async fn malformed_and_non_object_bodies() {
    let env = Env::new().await;
    let raw = |body: &'static str| {
        env.req(Method::POST, "/assistant")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (status, body) = read(raw(r#"{"name":1,}"#).await.unwrap()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            bad_str("Unexpected token } in JSON at position 10")
        )
    );
    let (status, body) = read(raw(r#"{"name":"#).await.unwrap()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            bad_str("Unexpected end of JSON input")
        )
    );
    let (status, body) = read(raw("42").await.unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].is_string());
    let (status, body) = read(raw("[]").await.unwrap()).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            bad(&["an unknown value was passed to the validate function"])
        )
    );
    assert_eq!(env.sim.assistants(ORG).len(), 0);
}

async fn expect_rejection(env: &Env, body: Value, messages: &[&str]) {
    let (status, got) = env
        .send(Method::POST, "/assistant", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(got, bad(messages), "{body}");
}

#[tokio::test]
async fn top_level_validation_messages() {
    let env = Env::new().await;
    for removed in [
        "serverUrl",
        "serverUrlSecret",
        "hipaaEnabled",
        "silenceTimeoutSeconds",
        "backchannelingEnabled",
        "id",
    ] {
        expect_rejection(
            &env,
            json!({ removed: "x" }),
            &[&format!("property {removed} should not exist")],
        )
        .await;
    }
    expect_rejection(
        &env,
        json!({"name": 7}),
        &[
            "name must be a string",
            "name must be shorter than or equal to 40 characters",
        ],
    )
    .await;
    expect_rejection(
        &env,
        json!({"name": "x".repeat(41)}),
        &["name must be shorter than or equal to 40 characters"],
    )
    .await;
    env.create(json!({"name": "é".repeat(40)})).await;
    expect_rejection(
        &env,
        json!({"maxDurationSeconds": 9}),
        &["maxDurationSeconds must not be less than 10"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"maxDurationSeconds": 43201}),
        &["maxDurationSeconds must not be greater than 43200"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"maxDurationSeconds": "600"}),
        &[
            "maxDurationSeconds must be a number conforming to the specified constraints",
            "maxDurationSeconds must not be less than 10",
            "maxDurationSeconds must not be greater than 43200",
        ],
    )
    .await;
    expect_rejection(
        &env,
        json!({"firstMessageMode": "speak"}),
        &["firstMessageMode must be one of the following values: assistant-speaks-first, assistant-speaks-first-with-model-generated-message, assistant-waits-for-user"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"endCallMessage": "x".repeat(1001)}),
        &["endCallMessage must be shorter than or equal to 1000 characters"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"voicemailMessage": "x".repeat(1001)}),
        &["voicemailMessage must be shorter than or equal to 1000 characters"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"firstMessage": 1}),
        &["firstMessage must be a string"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"metadata": [1]}),
        &["metadata must be an object"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"metadata": "x"}),
        &["metadata must be an object"],
    )
    .await;
    // All messages at once: whitelist errors first, then declared properties in DTO order.
    expect_rejection(
        &env,
        json!({"serverUrl": "https://x", "name": "x".repeat(41), "maxDurationSeconds": 1, "firstMessage": false}),
        &[
            "property serverUrl should not exist",
            "firstMessage must be a string",
            "maxDurationSeconds must not be less than 10",
            "name must be shorter than or equal to 40 characters",
        ],
    )
    .await;
    // null means "cleared" and passes validation.
    env.create(
        json!({"name": null, "firstMessage": null, "metadata": null, "maxDurationSeconds": null}),
    )
    .await;
    assert_eq!(env.sim.assistants(ORG).len(), 2);
}

#[tokio::test]
async fn voice_validation_messages() {
    let env = Env::new().await;
    let providers = "azure, cartesia, custom-voice, deepgram, 11labs, hume, lmnt, neuphonic, openai, playht, wellsaid, rime-ai, smallest-ai, tavus, vapi, sesame, inworld, minimax, xai, microsoft";
    let provider_msg = format!("voice.provider must be one of the following values: {providers}");
    expect_rejection(
        &env,
        json!({"voice": {"provider": "elevenlabs", "voiceId": "x"}}),
        &[&provider_msg],
    )
    .await;
    expect_rejection(
        &env,
        json!({"voice": {"provider": "neets", "voiceId": "x"}}),
        &[&provider_msg],
    )
    .await;
    expect_rejection(&env, json!({"voice": {"voiceId": "x"}}), &[&provider_msg]).await;
    expect_rejection(
        &env,
        json!({"voice": "Elliot"}),
        &["nested property voice must be either object or array"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"voice": {"provider": "vapi", "voiceId": "Elliot", "enableSsmlParsing": true}}),
        &["voice.property enableSsmlParsing should not exist"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"voice": {"provider": "cartesia", "voiceId": "a1b2", "speed": 1}}),
        &["voice.property speed should not exist"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"voice": {"provider": "11labs"}}),
        &["voice.voiceId should not be empty"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"voice": {"provider": "11labs", "voiceId": 5}}),
        &["voice.voiceId must be a string"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"voice": {"provider": "11labs", "voiceId": "burt", "stability": 2}}),
        &["voice.stability must not be greater than 1"],
    )
    .await;
    let catalogue = DEFAULT_VAPI_VOICES.join(", ");
    assert_eq!(DEFAULT_VAPI_VOICES.len(), 30);
    let enum_msg = format!("voice.voiceId must be one of the following values: {catalogue}");
    assert!(
        enum_msg.starts_with(
            "voice.voiceId must be one of the following values: Clara, Godfrey, Elliot,"
        )
    );
    for bad_id in ["elliot", "jennifer", "Elliot V2"] {
        expect_rejection(
            &env,
            json!({"voice": {"provider": "vapi", "voiceId": bad_id}}),
            &[&enum_msg],
        )
        .await;
    }
    env.create(json!({"voice": {"provider": "vapi", "voiceId": "Elliot", "speed": 1.2}}))
        .await;
    env.create(
        json!({"voice": {"provider": "11labs", "voiceId": "burt", "enableSsmlParsing": true}}),
    )
    .await;
    env.create(json!({"voice": {"provider": "custom-voice", "server": {"url": "https://tts.example.com"}}})).await;

    // The catalogue is configurable (e.g. the free-string spec after 2026-08-11).
    env.sim
        .set_vapi_voices(Some(vec!["Zed".into(), "Amy".into()]));
    expect_rejection(
        &env,
        json!({"voice": {"provider": "vapi", "voiceId": "Elliot"}}),
        &["voice.voiceId must be one of the following values: Zed, Amy"],
    )
    .await;
    env.sim.set_vapi_voices(None);
    env.create(json!({"voice": {"provider": "vapi", "voiceId": "my-cloned-voice", "version": 2}}))
        .await;
}

#[tokio::test]
async fn model_validation_messages() {
    let env = Env::new().await;
    let providers = "anthropic, anthropic-bedrock, anyscale, cerebras, custom-llm, deepinfra, deep-seek, google, groq, inflection-ai, minimax, openai, openrouter, perplexity-ai, together-ai, xai, vapi";
    expect_rejection(
        &env,
        json!({"model": {"provider": "azure-openai", "model": "x"}}),
        &[&format!(
            "model.provider must be one of the following values: {providers}"
        )],
    )
    .await;
    expect_rejection(
        &env,
        json!({"model": {"provider": "openai", "model": "gpt-4o", "temperature": 2.5, "maxTokens": 20}}),
        &["model.temperature must not be greater than 2", "model.maxTokens must not be less than 50"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"model": {"provider": "openai", "model": "gpt-4o", "maxTokens": 10001}}),
        &["model.maxTokens must not be greater than 10000"],
    )
    .await;
    expect_rejection(
        &env,
        json!({"model": {"provider": "openai", "model": "gpt-4o", "temperature": -0.1}}),
        &["model.temperature must not be less than 0"],
    )
    .await;
    // Other model fields pass through untouched (model validation is intentionally shallow).
    env.create(json!({"model": {"provider": "openai", "model": "gpt-4o", "systemPrompt": "legacy", "temperature": 0}})).await;
}

#[tokio::test]
async fn legacy_vapi_voices_have_create_and_update_wording() {
    let env = Env::new().await;
    let (status, body) = env
        .send(
            Method::POST,
            "/assistant",
            Some(json!({"name": "n", "voice": {"provider": "vapi", "voiceId": "Neha"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        bad_str(
            "The Neha voice is part of a legacy voice set that is being phased out, and new assistants cannot be created with this voice."
        )
    );
    // Class-validation errors win over the business rule (it only runs once the DTO is valid).
    expect_rejection(
        &env,
        json!({"name": 1, "voice": {"provider": "vapi", "voiceId": "Neha"}}),
        &[
            "name must be a string",
            "name must be shorter than or equal to 40 characters",
        ],
    )
    .await;
    let created = env
        .create(json!({"voice": {"provider": "vapi", "voiceId": "Elliot"}}))
        .await;
    let (status, body) = env
        .send(
            Method::PATCH,
            &format!("/assistant/{}", created["id"].as_str().unwrap()),
            Some(json!({"voice": {"provider": "vapi", "voiceId": "Kylie"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        bad_str(
            "The Kylie voice is part of a legacy voice set that is being phased out, and assistants cannot be updated to use this voice."
        )
    );
    assert_eq!(env.sim.assistants(ORG), vec![created]);
}

#[tokio::test]
async fn azure_voice_ids_must_be_presets_or_short_names() {
    let env = Env::new().await;
    let (status, body) = env
        .send(
            Method::POST,
            "/assistant",
            Some(json!({"voice": {"provider": "azure", "voiceId": "jenny"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        bad_str("Couldn't Find Azure Voice: jenny. Voice id should look like en-US-EmmaNeural")
    );
    for ok in ["en-US-JennyNeural", "andrew", "en-US-AvaMultilingualNeural"] {
        env.create(json!({"voice": {"provider": "azure", "voiceId": ok}}))
            .await;
    }
    let created = env.sim.assistants(ORG)[0].clone();
    let (status, body) = env
        .send(
            Method::PATCH,
            &format!("/assistant/{}", created["id"].as_str().unwrap()),
            Some(json!({"voice": {"provider": "azure", "voiceId": "Jenny"}})),
        )
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            bad_str("Couldn't Find Azure Voice: Jenny. Voice id should look like en-US-EmmaNeural")
        )
    );
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn respond_faults_answer_without_touching_state() {
    let env = Env::new().await;
    env.sim.inject(Fault {
        status: Some(503),
        ..fault(Some("POST"), Some("/assistant"), FaultMode::Respond)
    });
    let (status, body) = env
        .send(Method::POST, "/assistant", Some(json!({"name": "x"})))
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        json!({"message": "Service Unavailable", "error": "Service Unavailable", "statusCode": 503})
    );
    assert!(env.sim.assistants(ORG).is_empty());
    assert!(env.sim.faults().is_empty(), "a count of 1 is spent");
    env.create(json!({"name": "x"})).await;

    // 429 with and without a Retry-After header.
    env.sim.inject(Fault {
        status: Some(429),
        retry_after: Some("7".into()),
        ..fault(None, None, FaultMode::Respond)
    });
    env.sim.inject(Fault {
        status: Some(429),
        ..fault(None, None, FaultMode::Respond)
    });
    let first = env.req(Method::GET, "/assistant").send().await.unwrap();
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.headers()["retry-after"], "7");
    assert_eq!(
        read(first).await.1,
        json!({"message": "Rate limit exceeded", "error": "Too Many Requests", "statusCode": 429})
    );
    let second = env.req(Method::GET, "/assistant").send().await.unwrap();
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(second.headers().get("retry-after").is_none());

    // Rules only hit matching requests; `count: None` lasts until cleared.
    env.sim.inject(Fault {
        count: None,
        ..fault(Some("delete"), Some("/assistant/{id}"), FaultMode::Respond)
    });
    let (status, _) = env.send(Method::GET, "/assistant", None).await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..2 {
        let (status, body) = env
            .send(Method::DELETE, &format!("/assistant/{MISSING}"), None)
            .await;
        assert_eq!(
            (status, body["statusCode"].clone()),
            (StatusCode::INTERNAL_SERVER_ERROR, json!(500))
        );
    }
    env.sim.clear_faults();
    let (status, _) = env
        .send(Method::DELETE, &format!("/assistant/{MISSING}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn commit_then_fail_applies_the_write() {
    let env = Env::new().await;
    env.sim
        .inject(fault(Some("POST"), None, FaultMode::CommitThenFail));
    let (status, body) = env
        .send(Method::POST, "/assistant", Some(json!({"name": "ghost"})))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(
        body,
        json!({"message": "Bad Gateway", "error": "Bad Gateway", "statusCode": 502})
    );
    let stored = env.sim.assistants(ORG);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["name"], "ghost");
    let c = env.sim.counters();
    assert_eq!(c.total("POST", "/assistant"), 1);
    assert_eq!(c.with_status(502), 1);
    assert_eq!(c.with_status(201), 0);
}

#[tokio::test]
async fn commit_then_drop_is_a_transport_error_after_the_write() {
    let env = Env::new().await;
    env.sim.inject(fault(
        Some("POST"),
        Some("/assistant"),
        FaultMode::CommitThenDrop,
    ));
    let err = env
        .req(Method::POST, "/assistant")
        .json(&json!({"name": "lost-id"}))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "{err:?}");
    assert!(err.status().is_none());
    let stored = env.sim.assistants(ORG);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["name"], "lost-id");
    assert_eq!(env.sim.counters().with_status(0), 1);
    // The server keeps serving after the drop.
    let (status, list) = env.send(Method::GET, "/assistant", None).await;
    assert_eq!(
        (status, list.as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
}

#[tokio::test]
async fn drop_is_a_transport_error_without_the_write() {
    let env = Env::new().await;
    env.sim.inject(fault(None, None, FaultMode::Drop));
    let err = env
        .req(Method::POST, "/assistant")
        .json(&json!({"name": "never"}))
        .send()
        .await
        .unwrap_err();
    assert!(!err.is_status(), "{err:?}");
    assert!(env.sim.assistants(ORG).is_empty());
    assert_eq!(env.sim.counters().total("POST", "/assistant"), 1);
}

#[tokio::test]
async fn hang_never_answers_until_shutdown() {
    let env = Env::new().await;
    env.sim.inject(fault(Some("GET"), None, FaultMode::Hang));
    let err = env
        .req(Method::GET, "/assistant")
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    // A request left hanging server-side does not block shutdown.
    env.sim.inject(Fault {
        count: None,
        ..fault(Some("GET"), None, FaultMode::Hang)
    });
    let pending = tokio::spawn(env.req(Method::GET, "/assistant").send());
    // Wait (on the test's own runtime, no timers) until the server has parked the second request.
    while env.sim.counters().with_status(0) < 2 {
        tokio::task::yield_now().await;
    }
    env.running.shutdown().await;
    assert!(pending.await.unwrap().is_err());
}

#[tokio::test]
async fn faults_come_after_auth() {
    let env = Env::new().await;
    env.sim.inject(fault(None, None, FaultMode::Drop));
    let resp = env
        .http
        .get(env.url("/assistant"))
        .bearer_auth("bad")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        env.sim.faults().len(),
        1,
        "an unauthenticated request does not spend the rule"
    );
}

// ---------------------------------------------------------------- rate limit and latency

#[tokio::test]
async fn rate_limit_allows_a_burst_then_429s_per_key() {
    let env = Env::new().await;
    env.sim.set_rate_limit(Some(RateLimit {
        per_second: 0.5,
        burst: 3,
        retry_after: true,
    }));
    for _ in 0..3 {
        let (status, _) = env.send(Method::GET, "/assistant", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let resp = env.req(Method::GET, "/assistant").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(
        read(resp).await.1,
        json!({"message": "Rate limit exceeded", "error": "Too Many Requests", "statusCode": 429})
    );
    // Another key has its own bucket.
    let other = env
        .http
        .get(env.url("/assistant"))
        .bearer_auth(OTHER_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);

    env.sim.set_rate_limit(Some(RateLimit {
        per_second: 0.5,
        burst: 1,
        retry_after: false,
    }));
    let (status, _) = env.send(Method::GET, "/assistant", None).await;
    assert_eq!(status, StatusCode::OK);
    let resp = env.req(Method::GET, "/assistant").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").is_none());
    assert_eq!(env.sim.counters().with_status(429), 2);

    env.sim.set_rate_limit(None);
    let (status, _) = env.send(Method::GET, "/assistant", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_assistant_requests_on_the_tokio_clock() {
    let env = Env::new().await;
    env.sim.set_latency(Duration::from_secs(30));
    let started = tokio::time::Instant::now();
    let (status, _) = env.send(Method::GET, "/assistant", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_secs(30));
    // Control requests are not delayed.
    let started = tokio::time::Instant::now();
    env.http
        .get(env.url("/_sim/counters"))
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ---------------------------------------------------------------- counters and control API

#[tokio::test]
async fn counters_record_method_route_and_status() {
    let env = Env::new().await;
    let created = env.create(json!({})).await;
    let id = created["id"].as_str().unwrap();
    env.send(
        Method::PATCH,
        &format!("/assistant/{id}"),
        Some(json!({"name": 1})),
    )
    .await;
    env.send(Method::GET, &format!("/assistant/{MISSING}"), None)
        .await;
    env.send(Method::DELETE, &format!("/assistant/{id}"), None)
        .await;
    env.send(Method::GET, "/assistant", None).await;
    let c = env.sim.counters();
    assert_eq!(c.total("POST", "/assistant"), 1);
    assert_eq!(c.total("PATCH", "/assistant/{id}"), 1);
    assert_eq!(c.total("GET", "/assistant/{id}"), 1);
    assert_eq!(c.total("get", "/assistant"), 1);
    assert_eq!(c.writes(), 3);
    assert_eq!(c.with_status(400), 1);
    assert_eq!(c.with_status(404), 1);
    assert_eq!(c.with_status(200), 2);
    env.sim.reset_counters();
    assert_eq!(env.sim.counters().requests.len(), 0);
}

#[tokio::test]
async fn control_api_over_http() {
    let env = Env::new().await;
    let http = &env.http;
    let ctl = |m: Method, p: &str| http.request(m, env.url(&format!("/_sim{p}")));
    let key = "11111111-2222-4333-8444-555555555555";
    let org = "org-http";

    // Keys.
    let resp = ctl(Method::POST, "/keys")
        .json(&json!({"key": key, "orgId": org}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let as_new = |m: Method, p: &str| http.request(m, env.url(p)).bearer_auth(key);
    let (status, created) = read(
        as_new(Method::POST, "/assistant")
            .json(&json!({"name": "via-http"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["orgId"], org);

    // Out-of-band create / list / edit / delete.
    let (status, oob) = read(
        ctl(Method::POST, "/assistants")
            .json(&json!({"orgId": org, "body": {"name": "dashboard"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let oob_id = oob["id"].as_str().unwrap().to_owned();
    let (_, listed) = read(
        ctl(Method::GET, &format!("/assistants?orgId={org}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert_eq!(listed[0]["name"], "dashboard");
    let (_, everyone) = read(ctl(Method::GET, "/assistants").send().await.unwrap()).await;
    assert_eq!(everyone.as_array().unwrap().len(), 2);
    let (status, edited) = read(
        ctl(Method::PATCH, &format!("/assistants/{oob_id}"))
            .json(&json!({"name": "renamed", "serverUrl": "legacy"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        edited["serverUrl"], "legacy",
        "out-of-band edits skip validation"
    );
    let (_, got) = read(
        as_new(Method::GET, &format!("/assistant/{oob_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got["name"], "renamed");

    // Pin over HTTP → the API answers 409.
    let resp = ctl(Method::POST, &format!("/assistants/{oob_id}/pin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, body) = read(
        as_new(Method::DELETE, &format!("/assistant/{oob_id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "assistant_pinned");
    ctl(Method::DELETE, &format!("/assistants/{oob_id}/pin"))
        .send()
        .await
        .unwrap();
    let resp = ctl(Method::DELETE, &format!("/assistants/{oob_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = ctl(Method::DELETE, &format!("/assistants/{oob_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = as_new(Method::GET, &format!("/assistant/{oob_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // Faults.
    let resp = ctl(Method::POST, "/faults")
        .json(&json!({"method": "GET", "mode": "respond", "status": 503, "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (_, faults) = read(ctl(Method::GET, "/faults").send().await.unwrap()).await;
    assert_eq!(faults[0]["mode"], "respond");
    assert_eq!(
        as_new(Method::GET, "/assistant")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    ctl(Method::POST, "/faults")
        .json(&json!({"mode": "commitThenFail", "retryAfter": "3"}))
        .send()
        .await
        .unwrap();
    ctl(Method::DELETE, "/faults").send().await.unwrap();
    let (_, faults) = read(ctl(Method::GET, "/faults").send().await.unwrap()).await;
    assert_eq!(faults, json!([]));
    let resp = ctl(Method::POST, "/faults")
        .json(&json!({"mode": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    // Rate limit and latency.
    ctl(Method::PUT, "/rate-limit")
        .json(&json!({"perSecond": 0.001, "burst": 0, "retryAfter": true}))
        .send()
        .await
        .unwrap();
    let resp = as_new(Method::GET, "/assistant").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    ctl(Method::DELETE, "/rate-limit").send().await.unwrap();
    assert_eq!(env.sim.rate_limit(), None);
    ctl(Method::PUT, "/latency")
        .json(&json!({"ms": 0}))
        .send()
        .await
        .unwrap();
    let (_, lat) = read(ctl(Method::GET, "/latency").send().await.unwrap()).await;
    assert_eq!(lat, json!({"ms": 0}));

    // Counters (control requests are not counted).
    let (_, counters) = read(ctl(Method::GET, "/counters").send().await.unwrap()).await;
    let total: u64 = counters["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 6);
    assert!(counters["requests"].as_array().unwrap().iter().any(|r| r
        == &json!({"method": "DELETE", "route": "/assistant/{id}", "status": 409, "count": 1})));
    ctl(Method::DELETE, "/counters").send().await.unwrap();
    assert!(env.sim.counters().requests.is_empty());

    // Revoke.
    ctl(Method::POST, "/keys/revoke")
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        as_new(Method::GET, "/assistant")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn out_of_band_changes_are_visible_to_the_api() {
    let env = Env::new().await;
    let created = env
        .create(json!({"name": "a", "model": {"provider": "openai", "model": "gpt-4o"}}))
        .await;
    let id = created["id"].as_str().unwrap();
    assert!(
        env.sim
            .edit_out_of_band(id, json!({"name": "edited-on-dashboard"}))
    );
    let (_, got) = env
        .send(Method::GET, &format!("/assistant/{id}"), None)
        .await;
    assert_eq!(got["name"], "edited-on-dashboard");
    assert_eq!(got["model"], created["model"]);
    assert!(env.sim.delete_out_of_band(id));
    assert!(!env.sim.delete_out_of_band(id));
    assert!(!env.sim.edit_out_of_band(id, json!({})));
    let (status, _) = env
        .send(Method::GET, &format!("/assistant/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
