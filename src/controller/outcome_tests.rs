//! Golden tests of the outcome stage: a decision and what applying it did → state, reason and
//! message, for every effect. The expected text is `golden/outcomes.txt`; after a deliberate
//! change of wording, regenerate it with `UPDATE_GOLDEN=1 cargo test --lib outcome` and review
//! the diff like any other change.

use serde_json::json;
use uuid::Uuid;

use super::apply::{Applied, Effect, Fallback, Unresolved, Verified};
use super::lane::CallError;
use super::outcome::settle;
use crate::reconcile::{Action, Decision, Drift, DriftKind, Mode, Normalization};
use crate::store::StoreError;
use crate::vapi::VapiError;

const GOLDEN: &str = include_str!("golden/outcomes.txt");

fn decision(action: Action) -> Decision {
    Decision {
        agent_id: Uuid::from_u128(1),
        org_id: Uuid::from_u128(2),
        generation: 7,
        mode: Mode::Enforce,
        action,
        duplicates: Vec::new(),
        intent: None,
        intent_landed: None,
        desired: json!({"firstMessage": "Hi."}).as_object().cloned(),
        normalizations: Vec::new(),
        in_sync_digest: None,
    }
}

fn applied(effect: Effect) -> Applied {
    Applied {
        effect,
        ..Applied::nothing()
    }
}

fn drift(path: &str, kind: DriftKind) -> Drift {
    Drift {
        path: path.to_owned(),
        kind,
    }
}

fn patch() -> Action {
    Action::Patch {
        assistant_id: "asst-1".into(),
        patch: json!({"firstMessage": "Hi."})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        drift: vec![drift("firstMessage", DriftKind::Desired)],
        adopted: false,
    }
}

fn server_error() -> CallError {
    CallError::Vapi(VapiError::Server {
        status: 503,
        message: "Service Unavailable".into(),
    })
}

/// Every case: a name, a decision, and what applying it did.
fn cases() -> Vec<(&'static str, Decision, Applied, bool)> {
    let create = Action::Create {
        body: serde_json::Map::new(),
    };
    let recreate = Action::Recreate {
        previous_id: "asst-0".into(),
        body: serde_json::Map::new(),
    };
    let model_in_vapi = vec![drift("model.model", DriftKind::Actual)];
    let mut with_duplicates = decision(Action::InSync {
        assistant_id: "asst-1".into(),
        adopted: false,
    });
    with_duplicates.duplicates = vec!["asst-2".into(), "asst-3".into()];
    let mut dups_removed = applied(Effect::NoWrite);
    dups_removed.duplicates.removed = vec!["asst-2".into(), "asst-3".into()];
    let mut dup_failed = applied(Effect::NoWrite);
    dup_failed.duplicates.failed = Some(("asst-2".into(), server_error()));
    let mut voiced = decision(create.clone());
    voiced.normalizations = vec![Normalization {
        from: "vapi/Kylie".into(),
        to: "vapi/Savannah".into(),
        rule: "retired-voice",
        dropped: Vec::new(),
    }];
    let mut fell_back = applied(Effect::Created {
        id: "asst-9".into(),
        verified: Verified::default(),
    });
    fell_back.fallback = Some(Fallback {
        from: "azure/en-US-Old".into(),
        to: "azure/en-US-JennyNeural".into(),
        message: "Couldn't Find Azure Voice".into(),
        voice: json!({"provider": "azure", "voiceId": "en-US-JennyNeural"}),
    });
    let mut observe = decision(patch());
    observe.mode = Mode::Observe;
    let mut paused = decision(patch());
    paused.mode = Mode::Paused;
    vec![
        (
            "in sync",
            decision(Action::InSync {
                assistant_id: "asst-1".into(),
                adopted: false,
            }),
            applied(Effect::NoWrite),
            false,
        ),
        (
            "adopted",
            decision(Action::InSync {
                assistant_id: "asst-1".into(),
                adopted: true,
            }),
            applied(Effect::NoWrite),
            false,
        ),
        (
            "invalid",
            decision(Action::Invalid {
                problems: vec![
                    "name: too long".into(),
                    "voice.provider: \"x\" is not a provider".into(),
                ],
            }),
            applied(Effect::NoWrite),
            false,
        ),
        (
            "created",
            decision(create.clone()),
            applied(Effect::Created {
                id: "asst-9".into(),
                verified: Verified::default(),
            }),
            false,
        ),
        (
            "recreated",
            decision(recreate.clone()),
            applied(Effect::Created {
                id: "asst-9".into(),
                verified: Verified::default(),
            }),
            false,
        ),
        (
            "created with a retired voice rewritten",
            voiced,
            applied(Effect::Created {
                id: "asst-9".into(),
                verified: Verified::default(),
            }),
            false,
        ),
        (
            "created with the fallback voice",
            decision(create.clone()),
            fell_back,
            false,
        ),
        (
            "created without an id",
            decision(create.clone()),
            applied(Effect::CreatedWithoutId {
                operation_id: Uuid::from_u128(3),
            }),
            false,
        ),
        (
            "create outcome unknown",
            decision(create.clone()),
            applied(Effect::CreateUnknown {
                operation_id: Uuid::from_u128(3),
                error: CallError::Vapi(VapiError::Timeout(std::time::Duration::from_secs(30))),
            }),
            false,
        ),
        (
            "recreate outcome unknown",
            decision(recreate),
            applied(Effect::CreateUnknown {
                operation_id: Uuid::from_u128(3),
                error: server_error(),
            }),
            false,
        ),
        (
            "create refused by an open breaker",
            decision(create.clone()),
            applied(Effect::Failed {
                what: "create the assistant".into(),
                error: CallError::BreakerOpen {
                    fingerprint: "fp-1".into(),
                    until: chrono::DateTime::UNIX_EPOCH,
                },
                assistant_id: None,
            }),
            false,
        ),
        (
            "create with a quarantined key",
            decision(create.clone()),
            applied(Effect::Failed {
                what: "create the assistant".into(),
                error: CallError::Quarantined {
                    fingerprint: "fp-1".into(),
                    status: 401,
                    message: "Invalid Key".into(),
                },
                assistant_id: None,
            }),
            false,
        ),
        (
            "create rejected by Vapi",
            decision(create.clone()),
            applied(Effect::Failed {
                what: "create the assistant".into(),
                error: CallError::Vapi(VapiError::BadRequest {
                    messages: vec!["voice.voiceId must be one of …".into()],
                }),
                assistant_id: None,
            }),
            false,
        ),
        (
            "intent not recorded",
            decision(create),
            applied(Effect::NotRecorded {
                error: StoreError::Database(sqlx::Error::PoolTimedOut),
                create: true,
            }),
            false,
        ),
        (
            "patched",
            decision(patch()),
            applied(Effect::Patched {
                verified: Verified::default(),
            }),
            false,
        ),
        (
            "patched, the answer showed more drift, repaired",
            decision(patch()),
            applied(Effect::Patched {
                verified: Verified {
                    repaired: model_in_vapi.clone(),
                    unresolved: None,
                },
            }),
            false,
        ),
        (
            "patched, the answer still differs",
            decision(patch()),
            applied(Effect::Patched {
                verified: Verified {
                    repaired: model_in_vapi.clone(),
                    unresolved: Some(Unresolved {
                        drift: model_in_vapi.clone(),
                        error: None,
                    }),
                },
            }),
            false,
        ),
        (
            "patched, the repair failed",
            decision(patch()),
            applied(Effect::Patched {
                verified: Verified {
                    repaired: model_in_vapi.clone(),
                    unresolved: Some(Unresolved {
                        drift: model_in_vapi,
                        error: Some(server_error()),
                    }),
                },
            }),
            false,
        ),
        (
            "patch found the assistant gone",
            decision(patch()),
            applied(Effect::Gone),
            false,
        ),
        (
            "patch failed",
            decision(patch()),
            applied(Effect::Failed {
                what: "patch assistant asst-1".into(),
                error: server_error(),
                assistant_id: None,
            }),
            false,
        ),
        (
            "deleted",
            decision(Action::Delete {
                assistant_ids: vec!["asst-1".into(), "asst-2".into()],
            }),
            applied(Effect::Deleted {
                ids: vec!["asst-1".into(), "asst-2".into()],
            }),
            false,
        ),
        (
            "delete failed",
            decision(Action::Delete {
                assistant_ids: vec!["asst-1".into()],
            }),
            applied(Effect::Failed {
                what: "delete assistant asst-1".into(),
                error: server_error(),
                assistant_id: Some("asst-1".into()),
            }),
            false,
        ),
        (
            "deleted already",
            decision(Action::Deleted),
            applied(Effect::NoWrite),
            false,
        ),
        (
            "waiting for a create",
            decision(Action::AwaitCreate {
                operation_id: Uuid::from_u128(3),
                until: chrono::DateTime::UNIX_EPOCH,
            }),
            applied(Effect::NoWrite),
            false,
        ),
        (
            "duplicates removed",
            with_duplicates.clone(),
            dups_removed,
            false,
        ),
        (
            "a duplicate could not be removed",
            with_duplicates,
            dup_failed,
            false,
        ),
        (
            "observe-only, differs",
            observe,
            applied(Effect::NoWrite),
            false,
        ),
        ("paused, differs", paused, applied(Effect::NoWrite), false),
        (
            "dry run, differs",
            decision(patch()),
            applied(Effect::NoWrite),
            true,
        ),
    ]
}

fn render() -> String {
    let mut out = String::new();
    for (name, d, a, dry_run) in cases() {
        let done = settle(&d, a, dry_run, "fp-1");
        out.push_str(&format!("## {name}\n"));
        match &done.status {
            Some(o) => out.push_str(&format!(
                "{} {} attempted={} full-pass={}\n{}\n",
                o.state.as_str(),
                o.reason.as_str(),
                o.attempted,
                done.needs_full_pass,
                o.message
            )),
            None => out.push_str(&format!("no status; skipped={}\n", done.skipped)),
        }
        out.push('\n');
    }
    out
}

#[test]
fn outcomes_match_the_golden_text() {
    let rendered = render();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/controller/golden/outcomes.txt"
        );
        std::fs::write(path, &rendered).expect("write the golden file");
        return;
    }
    for (want, got) in GOLDEN.lines().zip(rendered.lines()) {
        assert_eq!(want, got, "outcome text changed; see golden/outcomes.txt");
    }
    assert_eq!(GOLDEN.lines().count(), rendered.lines().count());
}

#[test]
fn a_status_is_synced_only_when_an_answer_matched() {
    for (name, d, a, dry_run) in cases() {
        let unresolved = matches!(
            &a.effect,
            Effect::Patched { verified } | Effect::Created { verified, .. } if verified.unresolved.is_some()
        );
        let done = settle(&d, a, dry_run, "fp-1");
        if unresolved {
            let o = done.status.expect("a status");
            assert_ne!(o.state.as_str(), "synced", "{name}");
            assert!(done.needs_full_pass, "{name}");
        }
    }
}

#[test]
fn stopped_and_skipped_writes_record_no_status() {
    for effect in [
        Effect::Skipped,
        Effect::Failed {
            what: "patch assistant asst-1".into(),
            error: CallError::Stopped,
            assistant_id: None,
        },
    ] {
        let done = settle(&decision(patch()), applied(effect), false, "fp-1");
        assert!(done.status.is_none() && done.skipped);
    }
}

#[test]
fn long_messages_are_bounded_with_a_marker() {
    use super::outcome::{MESSAGE_MAX, bounded};
    let short = "Created assistant asst-9.";
    assert_eq!(bounded(short, MESSAGE_MAX), short);
    // A key name of a megabyte, in multi-byte characters, as a hostile spec might carry.
    let long = "é".repeat(500_000);
    let cut = bounded(&long, MESSAGE_MAX);
    assert!(cut.len() <= MESSAGE_MAX, "{}", cut.len());
    assert!(
        cut.ends_with(" … [truncated: 1000000 bytes in all]"),
        "{}",
        &cut[cut.len() - 60..]
    );
    let status = super::outcome::invalid(Uuid::from_u128(1), 1, &[long]).to_update();
    assert!(status.message.len() <= MESSAGE_MAX);
}
