//! Table-driven tests of the decision rules.

use super::*;
use serde_json::json;

const AGENT: &str = "0b3a6f9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
const ORG: &str = "7d1e2f3a-4b5c-4d6e-9f0a-1b2c3d4e5f6a";

fn agent(spec: Value, recorded: Option<&str>) -> DesiredAgent {
    DesiredAgent {
        id: AGENT.parse().expect("uuid"),
        org_id: ORG.parse().expect("uuid"),
        name: "front-desk".to_owned(),
        spec: Ok(spec),
        generation: 3,
        recorded_assistant_id: recorded.map(str::to_owned),
    }
}

fn marker() -> Value {
    json!({"managedBy": MANAGED_BY, "agentId": AGENT, "orgId": ORG})
}

fn spec() -> Value {
    json!({
        "firstMessage": "Hello, Harbor Clinic.",
        "model": {"provider": "openai", "model": "gpt-4o", "temperature": 0.5,
                  "messages": [{"role": "system", "content": "Book appointments."}]},
        "voice": {"provider": "vapi", "voiceId": "Elliot"}
    })
}

/// An assistant as Vapi would list it: the body plus server fields, keys in another order.
fn listed(id: &str, created_at: &str, body: Value) -> ActualAssistant {
    let mut v = json!({
        "id": id, "orgId": "vapi-org", "createdAt": created_at, "updatedAt": created_at,
        "isServerUrlSecretSet": false
    });
    for (k, val) in body.as_object().expect("object") {
        v[k] = val.clone();
    }
    ActualAssistant::from_value(v).expect("has id")
}

fn in_sync_body() -> Value {
    json!({
        "name": "front-desk",
        "metadata": marker(),
        "voice": {"voiceId": "Elliot", "provider": "vapi"},
        "model": {"temperature": 0.50, "provider": "openai", "model": "gpt-4o",
                  "messages": [{"content": "Book appointments.", "role": "system"}]},
        "firstMessage": "Hello, Harbor Clinic.",
    })
}

fn with(mut body: Value, key: &str, value: Value) -> Value {
    body[key] = value;
    body
}

fn expected_body() -> Map<String, Value> {
    desired_body(&agent(spec(), None)).expect("valid")
}

#[test]
fn decisions() {
    let t0 = "2026-11-21T10:00:00.000Z";
    let t1 = "2026-11-21T10:00:01.000Z";
    let other_marker = json!({"managedBy": MANAGED_BY, "agentId": "11111111-1111-4111-8111-111111111111", "orgId": ORG});
    struct Case {
        name: &'static str,
        agent: DesiredAgent,
        listed: Vec<ActualAssistant>,
        want: Action,
    }
    let cases = vec![
        Case {
            name: "nothing listed, nothing recorded: create",
            agent: agent(spec(), None),
            listed: vec![],
            want: Action::Create { body: expected_body() },
        },
        Case {
            name: "recorded and equal up to key order, number form and server fields: in sync",
            agent: agent(spec(), Some("a1")),
            listed: vec![listed("a1", t0, in_sync_body())],
            want: Action::InSync { assistant_id: "a1".into(), adopted: false },
        },
        Case {
            name: "recorded but gone: recreate",
            agent: agent(spec(), Some("gone")),
            listed: vec![listed("a9", t0, json!({"name": "someone else's"}))],
            want: Action::Recreate { previous_id: "gone".into(), body: expected_body() },
        },
        Case {
            name: "not recorded but a marked assistant exists: adopt, no create",
            agent: agent(spec(), None),
            listed: vec![listed("a1", t0, in_sync_body())],
            want: Action::InSync { assistant_id: "a1".into(), adopted: true },
        },
        Case {
            name: "recorded one gone, marked one exists: adopt it instead of recreating",
            agent: agent(spec(), Some("gone")),
            listed: vec![listed("a2", t0, in_sync_body())],
            want: Action::InSync { assistant_id: "a2".into(), adopted: true },
        },
        Case {
            name: "several marked: the oldest is adopted",
            agent: agent(spec(), None),
            listed: vec![listed("newer", t1, in_sync_body()), listed("older", t0, in_sync_body())],
            want: Action::InSync { assistant_id: "older".into(), adopted: true },
        },
        Case {
            name: "same name but another agent's marker: not ours, create",
            agent: agent(spec(), None),
            listed: vec![listed("a1", t0, with(in_sync_body(), "metadata", other_marker))],
            want: Action::Create { body: expected_body() },
        },
        Case {
            name: "same name, unmarked: never adopted by name",
            agent: agent(spec(), None),
            listed: vec![listed("a1", t0, with(in_sync_body(), "metadata", json!(null)))],
            want: Action::Create { body: expected_body() },
        },
        Case {
            name: "system prompt edited out of band: patch the whole model key",
            agent: agent(spec(), Some("a1")),
            listed: vec![listed("a1", t0, with(in_sync_body(), "model", json!({
                "provider": "openai", "model": "gpt-4o", "temperature": 0.5,
                "messages": [{"role": "system", "content": "Be rude."}]})))],
            want: Action::Patch {
                assistant_id: "a1".into(),
                patch: Map::from_iter([("model".to_owned(), spec()["model"].clone())]),
                drift: vec!["model.messages[0].content".into()],
                adopted: false,
            },
        },
        Case {
            name: "name and first message changed: both keys, nothing else",
            agent: agent(spec(), Some("a1")),
            listed: vec![listed("a1", t0, with(with(in_sync_body(), "name", json!("old")), "firstMessage", json!("Hi")))],
            want: Action::Patch {
                assistant_id: "a1".into(),
                patch: Map::from_iter([
                    ("firstMessage".to_owned(), json!("Hello, Harbor Clinic.")),
                    ("name".to_owned(), json!("front-desk")),
                ]),
                drift: vec!["firstMessage".into(), "name".into()],
                adopted: false,
            },
        },
        Case {
            name: "marker stripped out of band: metadata patched back",
            agent: agent(spec(), Some("a1")),
            listed: vec![listed("a1", t0, with(in_sync_body(), "metadata", json!({"note": "x"})))],
            want: Action::Patch {
                assistant_id: "a1".into(),
                patch: Map::from_iter([("metadata".to_owned(), marker())]),
                drift: vec!["metadata.agentId".into(), "metadata.managedBy".into(), "metadata.orgId".into(), "metadata.note".into()],
                adopted: false,
            },
        },
        Case {
            name: "a field the spec never set, added out of band: left alone",
            agent: agent(spec(), Some("a1")),
            listed: vec![listed("a1", t0, with(in_sync_body(), "endCallMessage", json!("Bye")))],
            want: Action::InSync { assistant_id: "a1".into(), adopted: false },
        },
        Case {
            name: "spec is a string: invalid, nothing sent",
            agent: agent(json!("{\"firstMessage\": \"hi\"}"), None),
            listed: vec![],
            want: Action::Invalid { problems: vec!["spec must be a JSON object, found a string".into()] },
        },
        Case {
            name: "spec is null: invalid",
            agent: agent(Value::Null, Some("a1")),
            listed: vec![listed("a1", t0, in_sync_body())],
            want: Action::Invalid { problems: vec!["spec must be a JSON object, found null".into()] },
        },
        Case {
            name: "spec the store could not parse: invalid, with the parser's reason",
            agent: DesiredAgent { spec: Err("recursion limit exceeded".into()), ..agent(spec(), Some("a1")) },
            listed: vec![listed("a1", t0, in_sync_body())],
            want: Action::Invalid { problems: vec!["spec cannot be read: recursion limit exceeded".into()] },
        },
        Case {
            name: "spec sets controller- and server-owned fields: every problem listed",
            agent: agent(json!({"name": "x", "metadata": {}, "id": "y", "createdAt": "z"}), None),
            listed: vec![],
            want: Action::Invalid { problems: vec![
                "spec.name is owned by the controller: set agents.name instead".into(),
                "spec.metadata is owned by the controller (it carries the ownership marker): remove it".into(),
                "spec.id is assigned by Vapi and cannot be set: remove it".into(),
                "spec.createdAt is assigned by Vapi and cannot be set: remove it".into(),
            ] },
        },
    ];
    for case in cases {
        let got = plan(std::slice::from_ref(&case.agent), &case.listed);
        assert_eq!(got.len(), 1, "{}", case.name);
        assert_eq!(got[0].action, case.want, "{}", case.name);
        assert_eq!(got[0].generation, 3, "{}", case.name);
    }
}

#[test]
fn body_is_spec_plus_name_and_marker() {
    let body = expected_body();
    assert_eq!(body["name"], json!("front-desk"));
    assert_eq!(body["metadata"], marker());
    assert_eq!(body["model"], spec()["model"]);
    assert_eq!(body.len(), 5);
}

#[test]
fn listed_object_without_id_is_skipped() {
    assert!(ActualAssistant::from_value(json!({"name": "x"})).is_none());
    assert!(ActualAssistant::from_value(json!([1])).is_none());
}
