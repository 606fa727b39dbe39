//! Table-driven tests of the decision rules.

use super::guard::{GuardSettings, assess};
use super::*;
use serde_json::json;

const AGENT: &str = "0b3a6f9e-1c2d-4e5f-8a9b-0c1d2e3f4a5b";
const ORG: &str = "7d1e2f3a-4b5c-4d6e-9f0a-1b2c3d4e5f6a";
const OP: &str = "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d";
const GONE_AGENT: &str = "11111111-1111-4111-8111-111111111111";

fn agent(spec: Value, recorded: Option<&str>) -> DesiredAgent {
    DesiredAgent {
        id: AGENT.parse().expect("uuid"),
        org_id: ORG.parse().expect("uuid"),
        name: "front-desk".to_owned(),
        spec: Spec::from(spec),
        generation: 3,
        mode: Mode::Enforce,
        deleted: false,
        recorded_assistant_id: recorded.map(str::to_owned),
        last_applied: None,
        intent: None,
        voice_fallback: false,
        tool_names: Vec::new(),
        tool_ids: Vec::new(),
        in_sync_digest: None,
    }
}

/// A difference with no record of what was applied: attributed to the spec.
fn d(path: &str) -> Drift {
    Drift {
        path: path.to_owned(),
        kind: DriftKind::Desired,
    }
}

fn now() -> DateTime<Utc> {
    "2026-11-21T12:00:00Z".parse().expect("time")
}

fn settings() -> PlanSettings {
    PlanSettings {
        create_grace: TimeDelta::minutes(2),
        orphan_grace: TimeDelta::minutes(15),
        orphan_policy: OrphanPolicy::Delete,
        voices: VoiceRules::default(),
    }
}

fn plan_with(
    agents: &[DesiredAgent],
    listed: &[ActualAssistant],
    seen: &HashMap<String, DateTime<Utc>>,
    settings: &PlanSettings,
) -> Plan {
    plan_sharded(agents, listed, seen, settings, &Shards::all(1))
}

fn plan_sharded(
    agents: &[DesiredAgent],
    listed: &[ActualAssistant],
    seen: &HashMap<String, DateTime<Utc>>,
    settings: &PlanSettings,
    shards: &Shards,
) -> Plan {
    let known: HashSet<Uuid> = agents.iter().map(|a| a.id).collect();
    plan(&PlanInput {
        agents,
        assistants: listed,
        known_agents: &known,
        orphans_seen: seen,
        shards,
        now: now(),
        settings,
    })
}

/// Plans one agent twice: against the assistants as given (listed ones are texts, compared
/// without a tree where they are equal) and against the same assistants as parsed trees. The
/// two must agree: the text is a shortcut, never a different answer.
fn plan_one(agent: &DesiredAgent, listed: &[ActualAssistant]) -> Decision {
    let once = |listed: &[ActualAssistant]| {
        let mut p = plan_with(
            std::slice::from_ref(agent),
            listed,
            &HashMap::new(),
            &settings(),
        );
        assert_eq!(p.decisions.len(), 1);
        p.decisions.remove(0)
    };
    let trees: Vec<ActualAssistant> = listed
        .iter()
        .map(|a| {
            let copy = a.clone();
            ActualAssistant::from_parts(a.id.clone(), a.created_at.clone(), copy.body().clone())
        })
        .collect();
    let decided = once(listed);
    // A tree (a focused pass's GET) has no listed text to remember a decision by.
    let untexted = Decision {
        in_sync_digest: None,
        ..decided.clone()
    };
    assert_eq!(untexted, once(&trees), "a text and its tree decide alike");
    decided
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

/// An assistant as Vapi would list it: the body plus server fields, keys in another order,
/// kept as its text the way a listing keeps it.
fn listed(id: &str, created_at: &str, body: Value) -> ActualAssistant {
    let mut v = json!({
        "id": id, "orgId": "vapi-org", "createdAt": created_at, "updatedAt": created_at,
        "isServerUrlSecretSet": false
    });
    for (k, val) in body.as_object().expect("object") {
        v[k] = val.clone();
    }
    ActualAssistant::from_item(crate::vapi::Item::read(&v.to_string()).expect("readable"))
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
    desired_body(&agent(spec(), None), &VoiceRules::default())
        .expect("valid")
        .body
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
            name: "recorded assistant carries another agent's marker: not this agent's, recreate",
            agent: agent(spec(), Some("a1")),
            listed: vec![listed("a1", t0, with(in_sync_body(), "metadata", other_marker.clone()))],
            want: Action::Recreate { previous_id: "a1".into(), body: expected_body() },
        },
        Case {
            name: "the operation id in the marker is not drift",
            agent: agent(spec(), Some("a1")),
            listed: vec![listed("a1", t0, with(in_sync_body(), "metadata", with(marker(), "operationId", json!(OP))))],
            want: Action::InSync { assistant_id: "a1".into(), adopted: false },
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
                drift: vec![d("model.messages[0].content")],
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
                drift: vec![d("firstMessage"), d("name")],
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
                drift: vec![d("metadata.agentId"), d("metadata.managedBy"), d("metadata.orgId"), d("metadata.note")],
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
            agent: DesiredAgent { spec: Spec::from_text(r#"{"model": 1e400}"#.into()), ..agent(spec(), Some("a1")) },
            listed: vec![listed("a1", t0, in_sync_body())],
            want: Action::Invalid { problems: vec!["spec cannot be read: spec.model cannot be read: number out of range at line 1 column 5".into()] },
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
        let got = plan_one(&case.agent, &case.listed);
        assert_eq!(got.action, case.want, "{}", case.name);
        assert_eq!(got.generation, 3, "{}", case.name);
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

fn marked(id: &str, created_at: &str, agent_id: &str, op: Option<&str>) -> ActualAssistant {
    let mut m = json!({"managedBy": MANAGED_BY, "agentId": agent_id, "orgId": ORG});
    if let Some(op) = op {
        m["operationId"] = json!(op);
    }
    listed(id, created_at, with(in_sync_body(), "metadata", m))
}

fn intent(started_at: &str) -> CreateIntent {
    CreateIntent {
        operation_id: OP.parse().expect("uuid"),
        generation: 3,
        started_at: started_at.parse().expect("time"),
    }
}

#[test]
fn create_protocol() {
    let t0 = "2026-11-21T10:00:00.000Z";
    let t1 = "2026-11-21T10:00:01.000Z";
    let recent = "2026-11-21T11:59:00Z"; // 1 minute before now(): within the 2-minute grace
    let old = "2026-11-21T11:50:00Z";
    struct Case {
        name: &'static str,
        agent: DesiredAgent,
        listed: Vec<ActualAssistant>,
        want: Action,
        duplicates: Vec<&'static str>,
    }
    let with_intent = |i: CreateIntent, recorded: Option<&str>| DesiredAgent {
        intent: Some(i),
        ..agent(spec(), recorded)
    };
    let cases = vec![
        Case {
            name: "unknown create within the grace, nothing listed: wait, never a second POST",
            agent: with_intent(intent(recent), None),
            listed: vec![],
            want: Action::AwaitCreate {
                operation_id: OP.parse().expect("uuid"),
                until: "2026-11-21T12:01:00Z".parse().expect("time"),
            },
            duplicates: vec![],
        },
        Case {
            name: "unknown create past the grace, nothing listed: create anew",
            agent: with_intent(intent(old), None),
            listed: vec![],
            want: Action::Create {
                body: expected_body(),
            },
            duplicates: vec![],
        },
        Case {
            name: "the recorded assistant is gone but a create is outstanding: wait, not recreate",
            agent: with_intent(intent(recent), Some("gone")),
            listed: vec![],
            want: Action::AwaitCreate {
                operation_id: OP.parse().expect("uuid"),
                until: "2026-11-21T12:01:00Z".parse().expect("time"),
            },
            duplicates: vec![],
        },
        Case {
            name: "the intent's operation landed: adopt that one over an older marked one",
            agent: with_intent(intent(recent), None),
            listed: vec![
                marked("older", t0, AGENT, None),
                marked("landed", t1, AGENT, Some(OP)),
            ],
            want: Action::InSync {
                assistant_id: "landed".into(),
                adopted: true,
            },
            duplicates: vec!["older"],
        },
        Case {
            name: "duplicates: the recorded one is kept even when newer",
            agent: agent(spec(), Some("newer")),
            listed: vec![
                marked("older", t0, AGENT, None),
                marked("newer", t1, AGENT, None),
            ],
            want: Action::InSync {
                assistant_id: "newer".into(),
                adopted: false,
            },
            duplicates: vec!["older"],
        },
        Case {
            name: "duplicates, nothing recorded: the oldest is kept",
            agent: agent(spec(), None),
            listed: vec![
                marked("b", t1, AGENT, None),
                marked("a", t0, AGENT, None),
                marked("c", t1, AGENT, None),
            ],
            want: Action::InSync {
                assistant_id: "a".into(),
                adopted: true,
            },
            duplicates: vec!["b", "c"],
        },
        Case {
            name: "deleted agent: its recorded and marked assistants are deleted",
            agent: DesiredAgent {
                deleted: true,
                ..agent(spec(), Some("rec"))
            },
            listed: vec![
                listed("rec", t0, in_sync_body()),
                marked("dup", t1, AGENT, None),
                listed("other", t0, json!({})),
            ],
            want: Action::Delete {
                assistant_ids: vec!["rec".into(), "dup".into()],
            },
            duplicates: vec![],
        },
        Case {
            name: "deleted agent with nothing left: deleted",
            agent: DesiredAgent {
                deleted: true,
                ..agent(spec(), Some("rec"))
            },
            listed: vec![],
            want: Action::Deleted,
            duplicates: vec![],
        },
        Case {
            name: "deleted agent with an outstanding create: wait for it before calling it deleted",
            agent: DesiredAgent {
                deleted: true,
                ..with_intent(intent(recent), None)
            },
            listed: vec![],
            want: Action::AwaitCreate {
                operation_id: OP.parse().expect("uuid"),
                until: "2026-11-21T12:01:00Z".parse().expect("time"),
            },
            duplicates: vec![],
        },
        Case {
            name: "deleted agent with an invalid spec is still deleted",
            agent: DesiredAgent {
                deleted: true,
                ..agent(json!("nonsense"), Some("rec"))
            },
            listed: vec![listed("rec", t0, in_sync_body())],
            want: Action::Delete {
                assistant_ids: vec!["rec".into()],
            },
            duplicates: vec![],
        },
    ];
    for case in cases {
        let got = plan_one(&case.agent, &case.listed);
        assert_eq!(got.action, case.want, "{}", case.name);
        assert_eq!(got.duplicates, case.duplicates, "{}", case.name);
    }
}

#[test]
fn orphans_wait_out_their_grace_then_go_and_unmanaged_are_never_touched() {
    let t0 = "2026-11-21T10:00:00.000Z";
    let listed = vec![
        marked("orphan-new", t0, GONE_AGENT, None),
        marked("orphan-old", t0, GONE_AGENT, None),
        listed("hand-made", t0, json!({"name": "front-desk"})),
        marked("ours", t0, AGENT, None),
    ];
    let seen = HashMap::from([("orphan-old".to_owned(), now() - TimeDelta::minutes(20))]);
    let agents = [agent(spec(), Some("ours"))];
    let p = plan_with(&agents, &listed, &seen, &settings());
    assert_eq!((p.managed, p.unmanaged), (3, 1));
    let actions: Vec<_> = p
        .strays
        .iter()
        .map(|s| (s.assistant_id.as_str(), s.action))
        .collect();
    assert_eq!(
        actions,
        vec![
            (
                "orphan-new",
                StrayAction::Wait {
                    until: now() + TimeDelta::minutes(15)
                }
            ),
            ("orphan-old", StrayAction::Delete),
        ]
    );
    let keep = PlanSettings {
        orphan_policy: OrphanPolicy::Keep,
        ..settings()
    };
    let p = plan_with(&agents, &listed, &seen, &keep);
    assert!(p.strays.iter().all(|s| s.action == StrayAction::Keep));
    // A deleted agent is still known: its late assistant is deleted as the agent's, not an orphan.
    let deleted = [DesiredAgent {
        id: GONE_AGENT.parse().expect("uuid"),
        deleted: true,
        ..agent(spec(), None)
    }];
    let p = plan_with(&deleted, &listed, &seen, &settings());
    assert!(
        p.strays
            .iter()
            .all(|s| s.agent_id != GONE_AGENT.parse::<Uuid>().expect("uuid"))
    );
    assert_eq!(
        p.decisions[0].action,
        Action::Delete {
            assistant_ids: vec!["orphan-new".into(), "orphan-old".into()]
        }
    );
}

#[test]
fn a_replica_sees_orphans_of_its_own_shards_only() {
    // The agents of other shards are not loaded here, so their assistants look unknown: they
    // must be left to their owner, never taken for orphans.
    let t0 = "2026-11-21T10:00:00.000Z";
    let org: Uuid = ORG.parse().expect("uuid");
    let home = shard::shard_of(org, 4);
    let mine = Shards::some(4, [home]);
    let others = Shards::some(4, (0..4).filter(|s| *s != home));
    let old = now() - TimeDelta::minutes(20);
    let seen = HashMap::from([("theirs-or-mine".to_owned(), old)]);
    let listed = vec![
        marked("theirs-or-mine", t0, GONE_AGENT, None),
        marked("ours", t0, AGENT, None),
    ];
    let agents = [agent(spec(), Some("ours"))];
    let p = plan_sharded(&agents, &listed, &seen, &settings(), &mine);
    assert_eq!(p.strays.len(), 1);
    assert_eq!(p.strays[0].org_id.as_deref(), Some(ORG));
    assert_eq!((p.managed, p.other_shards), (2, 0));
    // The replica owning the other shards does not know AGENT either: both are another's.
    let p = plan_sharded(&[], &listed, &seen, &settings(), &others);
    assert!(p.strays.is_empty(), "{:?}", p.strays);
    assert_eq!((p.managed, p.other_shards, p.unmanaged), (0, 2, 0));
}

#[test]
fn guard_counts_only_what_would_run() {
    let t0 = "2026-11-21T10:00:00.000Z";
    let settings_guard = GuardSettings {
        max_share: 0.1,
        min_count: 2,
    };
    let gone = |n: u32| DesiredAgent {
        id: Uuid::from_u128(u128::from(n)),
        ..agent(spec(), Some(&format!("gone-{n}")))
    };
    // Five agents whose recorded assistants vanished (a key for the wrong Vapi org looks so).
    let agents: Vec<_> = (1..=5).map(gone).collect();
    let p = plan_with(&agents, &[], &HashMap::new(), &settings());
    let impact = assess(&p, false, settings_guard);
    assert_eq!(
        (impact.recreates, impact.deletes, impact.fleet, impact.limit),
        (5, 0, 5, 2)
    );
    assert!(impact.exceeded());
    assert!(
        !assess(&p, true, settings_guard).exceeded(),
        "dry-run writes nothing"
    );
    // Observe-only agents would not be recreated.
    let observed: Vec<_> = agents
        .iter()
        .cloned()
        .map(|a| DesiredAgent {
            mode: Mode::Observe,
            ..a
        })
        .collect();
    let p = plan_with(&observed, &[], &HashMap::new(), &settings());
    assert_eq!(assess(&p, false, settings_guard).destructive(), 0);
    // An emptied agents table: every marked assistant is an orphan due for deletion.
    let listed: Vec<_> = (1..=30)
        .map(|n| marked(&format!("a{n}"), t0, &Uuid::from_u128(n).to_string(), None))
        .collect();
    let seen: HashMap<_, _> = listed
        .iter()
        .map(|a| (a.id.clone(), now() - TimeDelta::hours(1)))
        .collect();
    let p = plan_with(&[], &listed, &seen, &settings());
    let impact = assess(
        &p,
        false,
        GuardSettings {
            max_share: 0.1,
            min_count: 5,
        },
    );
    assert_eq!((impact.deletes, impact.fleet, impact.limit), (30, 30, 5));
    assert!(impact.exceeded());
    assert!(impact.covered_by(30, 0) && !impact.covered_by(29, 0));
    // Normal churn stays under the limit: one recreate in a fleet of 30.
    let mut agents: Vec<_> = (1..=30)
        .map(|n| DesiredAgent {
            id: Uuid::from_u128(n),
            ..agent(spec(), Some(&format!("a{n}")))
        })
        .collect();
    agents[0].recorded_assistant_id = Some("vanished".into());
    let listed: Vec<_> = listed.into_iter().skip(1).collect();
    let p = plan_with(&agents, &listed, &HashMap::new(), &settings());
    let impact = assess(
        &p,
        false,
        GuardSettings {
            max_share: 0.1,
            min_count: 2,
        },
    );
    assert_eq!((impact.recreates, impact.deletes, impact.limit), (1, 0, 3));
    assert!(!impact.exceeded());
}

#[test]
fn create_body_carries_the_operation_id() {
    let op: Uuid = OP.parse().expect("uuid");
    let body = with_operation(expected_body(), op);
    assert_eq!(body["metadata"]["operationId"], json!(OP));
    let listed = listed("a1", "2026-11-21T10:00:00.000Z", Value::Object(body));
    assert_eq!(
        listed.marker(),
        Some(&Marker {
            agent_id: AGENT.parse().expect("uuid"),
            org_id: Some(ORG.into()),
            operation_id: Some(op)
        })
    );
}

#[test]
fn an_in_sync_decision_is_remembered_by_its_inputs_and_any_change_decides_again() {
    let t0 = "2026-11-21T10:00:00.000Z";
    let synced = DesiredAgent {
        last_applied: Some(expected_body().into()),
        ..agent(spec(), Some("a1"))
    };
    let a1 = || listed("a1", t0, in_sync_body());
    let first = plan_one(&synced, &[a1()]);
    let in_sync = Action::InSync {
        assistant_id: "a1".into(),
        adopted: false,
    };
    assert_eq!(first.action, in_sync);
    assert_eq!(first.desired, None, "nothing new to record");
    let digest = first
        .in_sync_digest
        .expect("an in-sync decision is remembered");

    // Remembered: the same inputs give the same decision, digest and all.
    let remembered = DesiredAgent {
        in_sync_digest: Some(digest),
        ..synced.clone()
    };
    assert_eq!(plan_one(&remembered, &[a1()]), first);

    // A remembered digest never stands for other inputs: each change is decided in full.
    let drifted = listed(
        "a1",
        t0,
        with(in_sync_body(), "firstMessage", json!("Bye.")),
    );
    let d = plan_one(&remembered, std::slice::from_ref(&drifted));
    assert!(matches!(d.action, Action::Patch { .. }), "{:?}", d.action);
    assert_eq!(d.in_sync_digest, None);
    let renamed = DesiredAgent {
        name: "front-desk-2".into(),
        ..remembered.clone()
    };
    let d = plan_one(&renamed, &[a1()]);
    assert!(matches!(d.action, Action::Patch { .. }), "{:?}", d.action);
    let bumped = DesiredAgent {
        generation: remembered.generation + 1,
        ..remembered.clone()
    };
    let d = plan_one(&bumped, &[a1()]);
    assert_eq!(d.action, in_sync);
    assert_ne!(
        d.in_sync_digest,
        Some(digest),
        "another generation, another digest"
    );
    let mut voices = VoiceRules::default();
    voices
        .provider_aliases
        .insert("vapi".into(), "11labs".into());
    let index_of = |v: &VoiceRules| {
        let listed = [a1()];
        let index = Index::new(&listed, v);
        super::memo::digest(&remembered, &listed[0], &index.rules)
    };
    assert_ne!(
        index_of(&voices),
        index_of(&VoiceRules::default()),
        "other voice rules"
    );

    // A duplicate or an outstanding create is never remembered past.
    let dup = marked("a2", "2026-11-21T10:00:01.000Z", AGENT, None);
    let d = plan_one(&remembered, &[a1(), dup]);
    assert_eq!(d.duplicates, vec!["a2".to_owned()]);
    assert_eq!(d.in_sync_digest, None);
}

#[test]
fn an_agent_whose_texts_were_left_out_is_read_again_exactly_when_its_memo_misses() {
    let t0 = "2026-11-21T10:00:00.000Z";
    let synced = DesiredAgent {
        last_applied: Some(expected_body().into()),
        ..agent(spec(), Some("a1"))
    };
    let a1 = || listed("a1", t0, in_sync_body());
    let digest = plan_one(&synced, &[a1()])
        .in_sync_digest
        .expect("an agent found in sync keeps a memo");
    // As a full pass reads it: the digests Postgres took, neither text.
    let unread = DesiredAgent {
        spec: Spec::from_store(None, *synced.spec.sha()),
        last_applied: synced
            .last_applied
            .as_ref()
            .map(|l| LastApplied::from_store(None, *l.sha())),
        in_sync_digest: Some(digest),
        ..synced.clone()
    };
    assert!(!unread.texts_read());
    // A tree (a focused pass's GET) has no text to remember by: planned only as listed.
    let decide_listed = |agent: &DesiredAgent, listing: &[ActualAssistant]| {
        plan_with(
            std::slice::from_ref(agent),
            listing,
            &HashMap::new(),
            &settings(),
        )
        .decisions
        .remove(0)
    };
    let misses = |agent: &DesiredAgent, listing: &[ActualAssistant]| {
        let index = Index::new(listing, &VoiceRules::default());
        let agents = std::slice::from_ref(agent);
        misses(agents, &index, &index.found(agents)).texts
    };
    // The memo holds: nothing to read, and the decision is the full one's.
    assert_eq!(misses(&unread, &[a1()]), Vec::<Uuid>::new());
    assert_eq!(
        decide_listed(&unread, &[a1()]),
        plan_one(
            &DesiredAgent {
                in_sync_digest: Some(digest),
                ..synced.clone()
            },
            &[a1()]
        )
    );
    // Anything the memo does not cover: the texts must be read before deciding.
    let drifted = listed(
        "a1",
        t0,
        with(in_sync_body(), "firstMessage", json!("Bye.")),
    );
    assert_eq!(misses(&unread, &[drifted]), vec![unread.id]);
    let dup = marked("a2", "2026-11-21T10:00:01.000Z", AGENT, None);
    assert_eq!(misses(&unread, &[a1(), dup]), vec![unread.id]);
    assert_eq!(
        misses(&unread, &[]),
        vec![unread.id],
        "the assistant is gone"
    );
    let no_memo = DesiredAgent {
        in_sync_digest: None,
        ..unread.clone()
    };
    assert_eq!(misses(&no_memo, &[a1()]), vec![no_memo.id]);
    // Read agents and deleted ones never need it.
    let read = DesiredAgent {
        in_sync_digest: None,
        ..synced.clone()
    };
    assert_eq!(misses(&read, &[]), Vec::<Uuid>::new());
    let deleted = DesiredAgent {
        deleted: true,
        ..unread.clone()
    };
    assert_eq!(misses(&deleted, &[]), Vec::<Uuid>::new());
    // Decided without its text after all (a defect of the survey): refused loudly, never
    // reported as the user's bad spec in disguise, never sent.
    let d = decide_listed(&no_memo, &[a1()]);
    let Action::Invalid { problems } = &d.action else {
        panic!("{:?}", d.action)
    };
    assert!(
        problems[0].contains("not read by this pass"),
        "{problems:?}"
    );
}

#[test]
fn a_listed_text_that_reproduces_the_memo_is_dropped_and_read_again_only_when_needed() {
    let t0 = "2026-11-21T10:00:00.000Z";
    let synced = DesiredAgent {
        last_applied: Some(expected_body().into()),
        ..agent(spec(), Some("a1"))
    };
    let digest = plan_one(&synced, &[listed("a1", t0, in_sync_body())])
        .in_sync_digest
        .expect("an agent found in sync keeps a memo");
    let remembered = DesiredAgent {
        in_sync_digest: Some(digest),
        ..synced.clone()
    };
    let rules = memo::rules_digest(&VoiceRules::default());
    let arrive = |agent: &DesiredAgent, body: Value| {
        let mut a = listed("a1", t0, body);
        remember(agent, &mut a, &rules);
        a
    };
    let decide_listed = |agent: &DesiredAgent, listing: &[ActualAssistant]| {
        let index = Index::new(listing, &VoiceRules::default());
        let agents = std::slice::from_ref(agent);
        let m = misses(agents, &index, &index.found(agents));
        let d = plan_with(
            std::slice::from_ref(agent),
            listing,
            &HashMap::new(),
            &settings(),
        )
        .decisions
        .remove(0);
        (m, d)
    };

    // The text gives the memo: dropped, and the memo decides without it.
    let a1 = arrive(&remembered, in_sync_body());
    assert!(a1.is_forgotten() && a1.text().is_none());
    let (m, d) = decide_listed(&remembered, std::slice::from_ref(&a1));
    assert!(m.is_empty(), "{m:?}");
    assert_eq!(
        d,
        plan_one(&remembered, &[listed("a1", t0, in_sync_body())])
    );

    // Another text, no memo, or another agent: kept.
    let edited = arrive(
        &remembered,
        with(in_sync_body(), "firstMessage", json!("Bye.")),
    );
    assert!(!edited.is_forgotten() && edited.text().is_some());
    assert!(!arrive(&synced, in_sync_body()).is_forgotten());
    let other = DesiredAgent {
        id: Uuid::new_v4(),
        ..remembered.clone()
    };
    assert!(!arrive(&other, in_sync_body()).is_forgotten());
    // The digest stands only for the agent it was taken for.
    assert_eq!(a1.remembered_for(other.id), None);

    // A duplicate on a later page: the memo no longer holds, and the dropped text is named to
    // be read again before anything is decided.
    let dup = marked("a2", "2026-11-21T10:00:01.000Z", AGENT, None);
    let (m, _) = decide_listed(&remembered, &[a1.clone(), dup]);
    assert_eq!(m.assistants, vec!["a1".to_owned()]);
    assert!(m.texts.is_empty());
}

#[test]
fn a_body_vapi_accepted_is_not_validated_again_but_any_other_is() {
    let t0 = "2026-11-21T10:00:00.000Z";
    // A field the validation refuses (not a Vapi assistant field), in a body Vapi holds and the
    // controller last applied: a rule added after that apply.
    let spec = with(spec(), "legacyGreeting", json!("Hi"));
    let Value::Object(mut applied) = with(
        Value::Object(expected_body()),
        "legacyGreeting",
        json!("Hi"),
    ) else {
        unreachable!()
    };
    let listed_body = with(in_sync_body(), "legacyGreeting", json!("Hi"));
    let accepted = DesiredAgent {
        last_applied: Some(applied.clone().into()),
        ..agent(spec.clone(), Some("a1"))
    };
    assert_eq!(
        plan_one(&accepted, &[listed("a1", t0, listed_body.clone())]).action,
        Action::InSync {
            assistant_id: "a1".into(),
            adopted: false
        }
    );
    // Not what was applied (another value applied, or nothing recorded): validated, refused.
    applied.insert("legacyGreeting".into(), json!("Hello"));
    for last_applied in [Some(applied.into()), None] {
        let other = DesiredAgent {
            last_applied,
            ..agent(spec.clone(), Some("a1"))
        };
        match plan_one(&other, &[listed("a1", t0, listed_body.clone())]).action {
            Action::Invalid { problems } => assert!(
                problems.iter().any(|p| p.contains("spec.legacyGreeting")),
                "{problems:?}"
            ),
            other => panic!("{other:?}"),
        }
    }
    // `desired_body` itself (previews, the bad-input corpus) always validates.
    assert!(desired_body(&accepted, &VoiceRules::default()).is_err());
}

#[test]
fn three_way_drift() {
    let t0 = "2026-11-21T10:00:00.000Z";
    let mut applied = expected_body();
    applied.insert("endCallMessage".into(), json!("Goodbye."));
    let with_applied = |spec: Value| DesiredAgent {
        last_applied: Some(applied.clone().into()),
        ..agent(spec, Some("a1"))
    };
    let actual_with_end = with(in_sync_body(), "endCallMessage", json!("Goodbye."));
    struct Case {
        name: &'static str,
        agent: DesiredAgent,
        actual: Value,
        patch: Vec<(&'static str, Value)>,
        drift: Vec<(&'static str, DriftKind)>,
    }
    let cases = vec![
        Case {
            name: "a field removed from the spec is cleared with null",
            agent: with_applied(spec()),
            actual: actual_with_end.clone(),
            patch: vec![("endCallMessage", Value::Null)],
            drift: vec![("endCallMessage", DriftKind::Desired)],
        },
        Case {
            name: "changed in Vapi, spec unchanged: reverted, classified actual",
            agent: with_applied(with(spec(), "endCallMessage", json!("Goodbye."))),
            actual: with(actual_with_end.clone(), "firstMessage", json!("Hacked")),
            patch: vec![("firstMessage", json!("Hello, Harbor Clinic."))],
            drift: vec![("firstMessage", DriftKind::Actual)],
        },
        Case {
            name: "spec changed: classified desired",
            agent: with_applied(with(
                with(spec(), "endCallMessage", json!("Goodbye.")),
                "firstMessage",
                json!("Hi!"),
            )),
            actual: actual_with_end.clone(),
            patch: vec![("firstMessage", json!("Hi!"))],
            drift: vec![("firstMessage", DriftKind::Desired)],
        },
        Case {
            name: "a field nobody manages, changed in Vapi: left alone",
            agent: with_applied(with(spec(), "endCallMessage", json!("Goodbye."))),
            actual: with(
                actual_with_end.clone(),
                "voicemailMessage",
                json!("Leave a message"),
            ),
            patch: vec![],
            drift: vec![],
        },
        Case {
            name: "removed from the spec and already absent in Vapi: nothing to clear",
            agent: with_applied(spec()),
            actual: in_sync_body(),
            patch: vec![],
            drift: vec![],
        },
    ];
    for case in cases {
        let got = plan_one(&case.agent, &[listed("a1", t0, case.actual)]);
        match got.action {
            Action::Patch { patch, drift, .. } => {
                let want: Map<String, Value> = case
                    .patch
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect();
                assert_eq!(patch, want, "{}", case.name);
                let drift: Vec<_> = drift.iter().map(|d| (d.path.as_str(), d.kind)).collect();
                assert_eq!(drift, case.drift, "{}", case.name);
            }
            Action::InSync { .. } => assert!(case.patch.is_empty(), "{}: in sync", case.name),
            other => panic!("{}: {other:?}", case.name),
        }
    }
}

#[test]
fn a_focused_plan_patches_what_the_spec_changed_since_the_last_apply() {
    let applied = expected_body();
    let saved = DesiredAgent {
        last_applied: Some(applied.clone().into()),
        ..agent(with(spec(), "firstMessage", json!("Hi!")), Some("a1"))
    };
    let stand_in = assume_applied(&saved).expect("recorded assistant and applied body");
    assert_eq!((stand_in.id.as_str(), stand_in.body()), ("a1", &applied));
    match plan_one(&saved, &[stand_in]).action {
        Action::Patch {
            assistant_id,
            patch,
            drift,
            adopted,
        } => {
            assert_eq!((assistant_id.as_str(), adopted), ("a1", false));
            assert_eq!(Value::Object(patch), json!({"firstMessage": "Hi!"}));
            assert_eq!(drift, vec![d("firstMessage")]);
        }
        other => panic!("{other:?}"),
    }

    // What the status cannot stand in for is left to a full pass.
    let cases = [
        (
            "no assistant recorded",
            DesiredAgent {
                recorded_assistant_id: None,
                ..saved.clone()
            },
        ),
        (
            "nothing applied yet",
            DesiredAgent {
                last_applied: None,
                ..saved.clone()
            },
        ),
        (
            "an unreadable applied body",
            DesiredAgent {
                last_applied: Some(LastApplied::from_text("[1]".to_owned())),
                ..saved.clone()
            },
        ),
        (
            "a create in flight",
            DesiredAgent {
                intent: Some(intent("2026-11-21T11:59:00Z")),
                ..saved.clone()
            },
        ),
        (
            "deleted",
            DesiredAgent {
                deleted: true,
                ..saved.clone()
            },
        ),
    ];
    for (name, agent) in cases {
        assert!(assume_applied(&agent).is_none(), "{name}");
    }
}

#[test]
fn a_marker_read_from_its_text_is_the_marker_read_from_its_tree() {
    let agent = "6f1c2a9e-3b7d-4c1e-9a2f-0d5e8b7c6a41";
    let op = "0b7e5c3a-1d2f-4e6a-8b9c-7a5d3e1f2c40";
    let cases = [
        format!(
            r#"{{"managedBy":"vapi-reconciler","agentId":"{agent}","orgId":"o1","operationId":"{op}"}}"#
        ),
        format!(r#"{{"managedBy":"vapi-reconciler","agentId":"{agent}"}}"#),
        // Escapes, a repeated key (the last counts), keys of no interest with nested values.
        format!(
            r#"{{"managedBy":"vapi\u002Dreconciler","agentId":"x","agentId":"{agent}","orgId":"o\"1","x":{{"y":[1,2,{{"z":null}}]}}}}"#
        ),
        format!(
            r#"{{"managedBy":"vapi-reconciler","agentId":"{agent}","managedBy":"someone-else"}}"#
        ),
        format!(
            r#"{{"managedBy":"vapi-reconciler","agentId":"{agent}","orgId":7,"operationId":"not-a-uuid"}}"#
        ),
        r#"{"managedBy":"vapi-reconciler","agentId":"not-a-uuid"}"#.to_owned(),
        format!(r#"{{"managedBy":null,"agentId":"{agent}"}}"#),
        format!(r#"{{"agentId":"{agent}"}}"#),
        r#"{}"#.to_owned(),
        r#"[1,2]"#.to_owned(),
        r#""text""#.to_owned(),
    ];
    let mut found = 0;
    for text in &cases {
        let tree: Value = serde_json::from_str(text).expect("each case parses");
        let from_tree = Marker::read(Some(&tree));
        found += usize::from(from_tree.is_some());
        assert_eq!(Marker::read_text(Some(text)), from_tree, "{text}");
    }
    assert_eq!(found, 4, "the cases hold four markers");
    assert_eq!(Marker::read_text(None), None);
}
