//! The Vapi client against the simulator over HTTP: every failure mode arrives as its own error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;
use vapi_reconciler::vapi::Resource;

use serde_json::{Map, Value, json};
use uuid::Uuid;
use vapi_reconciler::credentials::ApiKey;
use vapi_reconciler::simulator::{Fault, FaultMode, Simulator};
use vapi_reconciler::vapi::{ClientConfig, VapiClient, VapiError};

struct Sim {
    sim: Simulator,
    running: vapi_reconciler::simulator::RunningSimulator,
    key: ApiKey,
    client: VapiClient,
}

async fn sim() -> Sim {
    let sim = Simulator::new();
    let raw = Uuid::new_v4().to_string();
    sim.add_key(&raw, "org-1");
    let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let client = common::client(&running.base_url());
    Sim {
        sim,
        running,
        key: ApiKey::new(&raw).unwrap(),
        client,
    }
}

fn body(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn fault(method: &str, mode: FaultMode, status: Option<u16>, retry_after: Option<&str>) -> Fault {
    Fault {
        method: Some(method.into()),
        route: None,
        mode,
        status,
        retry_after: retry_after.map(str::to_owned),
        count: Some(1),
    }
}

#[tokio::test]
async fn crud_round_trip() {
    let s = sim().await;
    let created = s
        .client
        .create(
            Resource::Assistant,
            &s.key,
            &body(json!({"name": "a", "metadata": {"k": "v"}})),
        )
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        s.client.get(Resource::Assistant, &s.key, id).await.unwrap()["metadata"],
        json!({"k": "v"})
    );
    let patched = s
        .client
        .update(Resource::Assistant, &s.key, id, &body(json!({"name": "b"})))
        .await
        .unwrap();
    assert_eq!(patched["name"], "b");
    assert_eq!(
        s.client
            .delete(Resource::Assistant, &s.key, id)
            .await
            .unwrap()["id"],
        id
    );
    assert!(matches!(
        s.client.get(Resource::Assistant, &s.key, id).await,
        Err(VapiError::NotFound)
    ));
    s.running.shutdown().await;
}

#[tokio::test]
async fn errors_are_typed() {
    let s = sim().await;
    let err = s
        .client
        .create(
            Resource::Assistant,
            &s.key,
            &body(json!({"name": "x".repeat(41), "serverUrl": "https://x"})),
        )
        .await
        .unwrap_err();
    let VapiError::BadRequest { messages } = &err else {
        panic!("{err:?}")
    };
    assert!(
        messages.contains(&"property serverUrl should not exist".to_owned()),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"name must be shorter than or equal to 40 characters".to_owned()),
        "{messages:?}"
    );

    let err = s
        .client
        .create(
            Resource::Assistant,
            &s.key,
            &body(json!({"voice": {"provider": "vapi", "voiceId": "Kylie"}})),
        )
        .await
        .unwrap_err();
    let VapiError::BadRequest { messages } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(messages.len(), 1, "a string message is one message");
    assert!(
        messages[0].starts_with("The Kylie voice is part of a legacy voice set"),
        "{messages:?}"
    );

    let wrong = ApiKey::new("not-a-key").unwrap();
    let err = s
        .client
        .list_all(Resource::Assistant, &wrong)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, VapiError::Unauthorized { message } if message.starts_with("Invalid Key")),
        "{err:?}"
    );
    assert!(!err.to_string().contains("not-a-key"));

    let missing = Uuid::new_v4().to_string();
    assert!(matches!(
        s.client
            .update(Resource::Assistant, &s.key, &missing, &body(json!({})))
            .await,
        Err(VapiError::NotFound)
    ));

    let id = s
        .client
        .create(
            Resource::Assistant,
            &s.key,
            &body(json!({"name": "pinned"})),
        )
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    s.sim.pin(&id, true);
    let err = s
        .client
        .delete(Resource::Assistant, &s.key, &id)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, VapiError::Conflict { error, .. } if error == "assistant_pinned"),
        "{err:?}"
    );

    s.sim
        .inject(fault("GET", FaultMode::Respond, Some(429), Some("7")));
    let err = s
        .client
        .list_all(Resource::Assistant, &s.key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, VapiError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)),
        "{err:?}"
    );
    s.sim
        .inject(fault("GET", FaultMode::Respond, Some(429), None));
    assert!(matches!(
        s.client.list_all(Resource::Assistant, &s.key).await,
        Err(VapiError::RateLimited { retry_after: None })
    ));

    s.sim
        .inject(fault("GET", FaultMode::Respond, Some(503), None));
    assert!(matches!(
        s.client.list_all(Resource::Assistant, &s.key).await,
        Err(VapiError::Server { status: 503, .. })
    ));

    s.sim
        .inject(fault("POST", FaultMode::CommitThenDrop, None, None));
    let err = s
        .client
        .create(
            Resource::Assistant,
            &s.key,
            &body(json!({"name": "dropped"})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, VapiError::Transport(_)), "{err:?}");
    assert!(err.outcome_unknown());
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_call_that_never_answers_times_out() {
    let s = sim().await;
    s.sim.inject(fault("GET", FaultMode::Hang, None, None));
    let client = VapiClient::new(&ClientConfig {
        base_url: s.running.base_url(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_millis(200),
    })
    .unwrap();
    let err = client
        .list_all(Resource::Assistant, &s.key)
        .await
        .unwrap_err();
    assert!(
        matches!(err, VapiError::Timeout(d) if d == Duration::from_millis(200)),
        "{err:?}"
    );
    s.running.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_vapi_is_a_transport_error() {
    // Bind and drop: the port is then closed on loopback.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for scheme in ["http", "https"] {
        let client = common::client(&format!("{scheme}://127.0.0.1:{port}"));
        let err = client
            .list_all(Resource::Assistant, &ApiKey::new("k").unwrap())
            .await
            .unwrap_err();
        // https must get as far as connecting: Vapi is only reachable over TLS.
        assert!(
            matches!(&err, VapiError::Transport(m) if m.contains("onnect")),
            "{scheme}: {err:?}"
        );
    }
}

#[tokio::test]
async fn an_undecodable_answer_is_a_decode_error() {
    let app = axum::Router::new().route(
        "/assistant",
        axum::routing::get(|| async { "<html>maintenance</html>" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = common::client(&format!("http://{addr}"));
    let err = client
        .list_all(Resource::Assistant, &ApiKey::new("k").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, VapiError::Decode(_)), "{err:?}");
    server.abort();
}

#[tokio::test]
async fn list_sends_limit_1000_and_pages_through_shared_timestamps() {
    let s = sim().await;
    // 2,500 assistants created within a few milliseconds: many share a createdAt, including
    // across page boundaries.
    for n in 0..2500 {
        s.sim
            .create_out_of_band("org-1", json!({"name": format!("a{n}")}));
    }
    s.sim.reset_counters();
    let all = s
        .client
        .list_all(Resource::Assistant, &s.key)
        .await
        .unwrap()
        .items;
    let ids: std::collections::HashSet<_> = all.iter().map(|a| a.id.clone()).collect();
    assert_eq!((all.len(), ids.len()), (2500, 2500));
    assert_eq!(s.sim.counters().total("GET", "/assistant"), 3);
    s.running.shutdown().await;
}
