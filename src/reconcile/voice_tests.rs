//! Table-driven tests of the voice rules: every shipped mapping, pass-through, override files,
//! and the recognition of Vapi's voice refusals.

use super::validate::validate_spec;
use super::voice::*;
use crate::vapi::schema::{DEFAULT_VAPI_VOICES, LEGACY_VAPI_VOICES};
use serde_json::{Map, Value, json};

fn n(from: &str, to: &str, rule: &'static str) -> Normalization {
    Normalization {
        from: from.to_owned(),
        to: to.to_owned(),
        rule,
        dropped: Vec::new(),
    }
}

fn dropping(mut norm: Normalization, dropped: &[&str]) -> Normalization {
    norm.dropped = dropped.iter().map(|d| (*d).to_owned()).collect();
    norm
}

struct Case {
    name: &'static str,
    voice: Value,
    want: Value,
    applied: Vec<Normalization>,
}

fn check(rules: &VoiceRules, cases: Vec<Case>) {
    for case in cases {
        let got = rules.normalize(&case.voice);
        assert_eq!(got.voice, case.want, "{}: voice", case.name);
        assert_eq!(got.applied, case.applied, "{}: applied", case.name);
    }
}

#[test]
fn retired_voices_map_to_current_voices_keeping_every_field() {
    let table = [
        ("Spencer", "Layla"),
        ("Neha", "Naina"),
        ("Harry", "Godfrey"),
        ("Cole", "Sid"),
        ("Paige", "Clara"),
        ("Hana", "Emma"),
        ("Lily", "Emma"),
        ("Kylie", "Savannah"),
    ];
    // Every voice Vapi retired has a shipped replacement.
    let mut retired: Vec<&str> = table.iter().map(|(old, _)| *old).collect();
    let mut legacy = LEGACY_VAPI_VOICES.to_vec();
    retired.sort_unstable();
    legacy.sort_unstable();
    assert_eq!(retired, legacy);

    let mut cases = Vec::new();
    for (old, new) in table {
        cases.push(Case {
            name: old,
            voice: json!({"provider": "vapi", "voiceId": old, "speed": 1.1, "version": 2,
                          "language": "en-US", "cachingEnabled": false}),
            want: json!({"provider": "vapi", "voiceId": new, "speed": 1.1, "version": 2,
                         "language": "en-US", "cachingEnabled": false}),
            applied: vec![n(
                &format!("vapi/{old}"),
                &format!("vapi/{new}"),
                "retired-voice",
            )],
        });
        let lower = old.to_lowercase();
        cases.push(Case {
            name: "retired, any case",
            voice: json!({"provider": "vapi", "voiceId": lower}),
            want: json!({"provider": "vapi", "voiceId": new}),
            applied: vec![n(
                &format!("vapi/{lower}"),
                &format!("vapi/{new}"),
                "retired-voice",
            )],
        });
    }
    check(&VoiceRules::default(), cases);
}

#[test]
fn replacements_are_current_catalogue_voices() {
    let rules = VoiceRules::default();
    assert_eq!(rules.check(), Vec::<String>::new());
    for (old, to) in &rules.retired {
        assert_eq!(to.provider, "vapi", "{old}");
        assert!(
            DEFAULT_VAPI_VOICES.contains(&to.voice_id.as_str())
                && !LEGACY_VAPI_VOICES.contains(&to.voice_id.as_str()),
            "{old} → {}",
            to.voice_id
        );
    }
}

#[test]
fn vapi_voice_case_is_fixed_from_the_catalogue() {
    let current: Vec<&str> = DEFAULT_VAPI_VOICES
        .iter()
        .copied()
        .filter(|v| !LEGACY_VAPI_VOICES.contains(v))
        .collect();
    assert_eq!(current.len(), 22);
    let mut cases = Vec::new();
    for name in &current {
        for spelled in [name.to_lowercase(), name.to_uppercase()] {
            cases.push(Case {
                name: "case",
                voice: json!({"provider": "vapi", "voiceId": spelled, "version": "latest"}),
                want: json!({"provider": "vapi", "voiceId": name, "version": "latest"}),
                applied: vec![n(
                    &format!("vapi/{spelled}"),
                    &format!("vapi/{name}"),
                    "case",
                )],
            });
        }
        cases.push(Case {
            name: "already right",
            voice: json!({"provider": "vapi", "voiceId": name}),
            want: json!({"provider": "vapi", "voiceId": name}),
            applied: vec![],
        });
    }
    check(&VoiceRules::default(), cases);
}

#[test]
fn bare_azure_names_become_full_names() {
    let rules = VoiceRules::default();
    assert!(rules.azure_names.len() >= 20);
    for bare in ["jenny", "guy", "aria", "davis"] {
        assert!(rules.azure_names.contains_key(bare), "{bare}");
    }
    let mut cases = Vec::new();
    for (bare, full) in &rules.azure_names {
        assert!(
            crate::vapi::schema::is_azure_short_name(full),
            "{full} is a full Azure name"
        );
        let capitalized = format!("{}{}", bare[..1].to_uppercase(), &bare[1..]);
        for spelled in [bare.clone(), capitalized] {
            cases.push(Case {
                name: "azure name",
                voice: json!({"provider": "azure", "voiceId": spelled, "speed": 1.2}),
                want: json!({"provider": "azure", "voiceId": full, "speed": 1.2}),
                applied: vec![n(
                    &format!("azure/{spelled}"),
                    &format!("azure/{full}"),
                    "azure-name",
                )],
            });
        }
    }
    check(&rules, cases);
}

#[test]
fn azure_voices_that_are_fine_or_only_miscased() {
    let same = |id: &str| Case {
        name: "azure pass-through",
        voice: json!({"provider": "azure", "voiceId": id}),
        want: json!({"provider": "azure", "voiceId": id}),
        applied: vec![],
    };
    check(
        &VoiceRules::default(),
        vec![
            same("andrew"),
            same("brian"),
            same("emma"),
            same("en-US-JennyNeural"),
            same("en-US-AvaMultilingualNeural"),
            same("zh-CN-henan-YundengNeural"),
            // Unknown and not fixable: left for validation to report.
            same("nobody"),
            Case {
                name: "preset in the wrong case",
                voice: json!({"provider": "azure", "voiceId": "Andrew"}),
                want: json!({"provider": "azure", "voiceId": "andrew"}),
                applied: vec![n("azure/Andrew", "azure/andrew", "case")],
            },
            Case {
                name: "full name in the wrong case",
                voice: json!({"provider": "azure", "voiceId": "en-us-jennyneural"}),
                want: json!({"provider": "azure", "voiceId": "en-US-JennyNeural"}),
                applied: vec![n(
                    "azure/en-us-jennyneural",
                    "azure/en-US-JennyNeural",
                    "case",
                )],
            },
        ],
    );
}

#[test]
fn provider_aliases_keep_every_field() {
    let rules = VoiceRules::default();
    let mut cases = Vec::new();
    for (alias, provider) in &rules.provider_aliases {
        if rules.removed_providers.contains(provider) {
            continue; // see removed_providers_fall_back
        }
        cases.push(Case {
            name: "alias",
            voice: json!({"provider": alias, "voiceId": "abc", "stability": 0.4, "model": "x"}),
            want: json!({"provider": provider, "voiceId": "abc", "stability": 0.4, "model": "x"}),
            applied: vec![n(
                &format!("{alias}/abc"),
                &format!("{provider}/abc"),
                "provider-alias",
            )],
        });
    }
    assert_eq!(rules.provider_aliases["elevenlabs"], "11labs");
    assert_eq!(rules.provider_aliases["eleven_labs"], "11labs");
    cases.extend([
        Case {
            name: "alias in another case",
            voice: json!({"provider": "ElevenLabs", "voiceId": "burt", "useSpeakerBoost": true}),
            want: json!({"provider": "11labs", "voiceId": "burt", "useSpeakerBoost": true}),
            applied: vec![n("ElevenLabs/burt", "11labs/burt", "provider-alias")],
        },
        Case {
            name: "provider in the wrong case, then a bare Azure name",
            voice: json!({"provider": "Azure", "voiceId": "jenny"}),
            want: json!({"provider": "azure", "voiceId": "en-US-JennyNeural"}),
            applied: vec![
                n("Azure/jenny", "azure/jenny", "case"),
                n("azure/jenny", "azure/en-US-JennyNeural", "azure-name"),
            ],
        },
        Case {
            name: "alias without a voiceId",
            voice: json!({"provider": "elevenlabs"}),
            want: json!({"provider": "11labs"}),
            applied: vec![n("elevenlabs", "11labs", "provider-alias")],
        },
    ]);
    check(&rules, cases);
}

#[test]
fn removed_providers_fall_back_dropping_what_azure_refuses() {
    let rules = VoiceRules::default();
    assert_eq!(rules.removed_providers, ["neets", "playht"]);
    let jenny = "azure/en-US-JennyNeural";
    check(
        &rules,
        vec![
            Case {
                name: "playht preset with PlayHT-only fields",
                voice: json!({"provider": "playht", "voiceId": "jennifer", "speed": 1.2,
                              "emotion": "female_happy", "model": "PlayHT2.0", "language": "english",
                              "temperature": 0.7, "cachingEnabled": false,
                              "chunkPlan": {"enabled": true}}),
                want: json!({"provider": "azure", "voiceId": "en-US-JennyNeural", "speed": 1.2,
                             "cachingEnabled": false, "chunkPlan": {"enabled": true}}),
                applied: vec![dropping(
                    n("playht/jennifer", jenny, "removed-provider"),
                    &[
                        "voice.emotion",
                        "voice.language",
                        "voice.model",
                        "voice.temperature",
                    ],
                )],
            },
            Case {
                name: "a speed Azure would refuse is dropped too",
                voice: json!({"provider": "playht", "voiceId": "will", "speed": 3}),
                want: json!({"provider": "azure", "voiceId": "en-US-JennyNeural"}),
                applied: vec![dropping(
                    n("playht/will", jenny, "removed-provider"),
                    &["voice.speed"],
                )],
            },
            Case {
                name: "neets",
                voice: json!({"provider": "neets", "voiceId": "vits"}),
                want: rules.fallback_voice(),
                applied: vec![n("neets/vits", jenny, "removed-provider")],
            },
            Case {
                name: "PlayHT spelled otherwise: alias, then fallback",
                voice: json!({"provider": "Play.HT", "voiceId": "jennifer"}),
                want: rules.fallback_voice(),
                applied: vec![
                    n("Play.HT/jennifer", "playht/jennifer", "provider-alias"),
                    n("playht/jennifer", jenny, "removed-provider"),
                ],
            },
            Case {
                name: "removed provider in capitals",
                voice: json!({"provider": "NEETS", "voiceId": "vits"}),
                want: rules.fallback_voice(),
                applied: vec![n("NEETS/vits", jenny, "removed-provider")],
            },
        ],
    );
    assert_eq!(
        rules.fallback_voice(),
        json!({"provider": "azure", "voiceId": "en-US-JennyNeural"})
    );
}

#[test]
fn voices_that_are_fine_pass_through_untouched() {
    let rules = VoiceRules::default();
    let voices = [
        json!({"provider": "vapi", "voiceId": "Elliot", "version": 2, "speed": 1.0,
               "pronunciationDictionary": [{"id": "x"}], "chunkPlan": {"enabled": true}}),
        json!({"provider": "11labs", "voiceId": "21m00Tcm4TlvDq8ikWAM", "stability": 0.5,
               "similarityBoost": 0.75, "model": "eleven_turbo_v2_5", "enableSsmlParsing": true}),
        json!({"provider": "cartesia", "voiceId": "a0e99841-438c-4a64-b679-ae501e7d6091",
               "generationConfig": {"speed": "fast"}}),
        json!({"provider": "custom-voice", "server": {"url": "https://tts.example.com"}}),
        json!({"provider": "deepgram", "voiceId": "asteria", "model": "aura-2"}),
        json!({"provider": "lmnt", "voiceId": "lily"}),
        json!({"provider": "inworld", "voiceId": "Hana"}),
        // Not this module's business: validation reports these.
        json!({"provider": "nobody-knows", "voiceId": "x"}),
        json!({"provider": "vapi", "voiceId": "jennifer"}),
        json!({"provider": "vapi", "voiceId": 7}),
        json!({"voiceId": "Elliot"}),
        json!({"provider": null, "voiceId": "Elliot"}),
        json!({"provider": ["vapi"], "voiceId": "Kylie"}),
        json!({}),
        json!("Elliot"),
        json!(null),
        json!(42),
        json!([{"provider": "vapi", "voiceId": "Kylie"}]),
    ];
    for voice in voices {
        let got = rules.normalize(&voice);
        assert_eq!(got.voice, voice);
        assert_eq!(got.applied, []);
    }
}

#[test]
fn override_file_merges_into_the_defaults() {
    let defaults = VoiceRules::default();
    assert_eq!(VoiceRules::from_json("{}"), Ok(defaults.clone()));

    // A new retired voice is added; the shipped ones stay.
    let rules = VoiceRules::from_json(
        r#"{"retired": {"Rohan": {"provider": "vapi", "voiceId": "Sagar"}},
            "azureNames": {"ryan": "en-GB-RyanNeural"},
            "providerAliases": {"11-labs": "11labs"}}"#,
    )
    .expect("valid");
    assert_eq!(rules.retired.len(), defaults.retired.len() + 1);
    check(
        &rules,
        vec![
            Case {
                name: "added retired voice",
                voice: json!({"provider": "vapi", "voiceId": "Rohan"}),
                want: json!({"provider": "vapi", "voiceId": "Sagar"}),
                applied: vec![n("vapi/Rohan", "vapi/Sagar", "retired-voice")],
            },
            Case {
                name: "an added retired voice is no longer case-fixed to itself",
                voice: json!({"provider": "vapi", "voiceId": "rohan"}),
                want: json!({"provider": "vapi", "voiceId": "Sagar"}),
                applied: vec![n("vapi/rohan", "vapi/Sagar", "retired-voice")],
            },
            Case {
                name: "shipped retired voice still mapped",
                voice: json!({"provider": "vapi", "voiceId": "Kylie"}),
                want: json!({"provider": "vapi", "voiceId": "Savannah"}),
                applied: vec![n("vapi/Kylie", "vapi/Savannah", "retired-voice")],
            },
            Case {
                name: "added azure name",
                voice: json!({"provider": "azure", "voiceId": "Ryan"}),
                want: json!({"provider": "azure", "voiceId": "en-GB-RyanNeural"}),
                applied: vec![n("azure/Ryan", "azure/en-GB-RyanNeural", "azure-name")],
            },
            Case {
                name: "added alias",
                voice: json!({"provider": "11-labs", "voiceId": "burt"}),
                want: json!({"provider": "11labs", "voiceId": "burt"}),
                applied: vec![n("11-labs/burt", "11labs/burt", "provider-alias")],
            },
        ],
    );
}

#[test]
fn override_file_replaces_entries_and_fields() {
    // Vapi's own migration target for Kylie, on another provider: Vapi-only fields are dropped,
    // fields 11labs accepts (within its bounds) are kept. The key matches case-insensitively.
    let rules = VoiceRules::from_json(
        r#"{"retired": {"kylie": {"provider": "11labs", "voiceId": "t5ztDJA7pj9EyW9QIcJ2"},
                        "Lily": null},
            "removedProviders": ["neets"],
            "fallback": {"provider": "vapi", "voiceId": "Elliot"}}"#,
    )
    .expect("valid");
    assert_eq!(rules.retired.len(), 7);
    assert_eq!(rules.removed_providers, ["neets"]);
    check(
        &rules,
        vec![
            Case {
                name: "replacement on another provider",
                voice: json!({"provider": "vapi", "voiceId": "Kylie", "version": 2, "speed": 1.1,
                              "language": "en", "pronunciationDictionary": [], "cachingEnabled": true}),
                want: json!({"provider": "11labs", "voiceId": "t5ztDJA7pj9EyW9QIcJ2", "speed": 1.1,
                             "language": "en", "cachingEnabled": true}),
                applied: vec![dropping(
                    n("vapi/Kylie", "11labs/t5ztDJA7pj9EyW9QIcJ2", "retired-voice"),
                    &["voice.pronunciationDictionary", "voice.version"],
                )],
            },
            Case {
                name: "mapping removed with null: left for validation",
                voice: json!({"provider": "vapi", "voiceId": "Lily"}),
                want: json!({"provider": "vapi", "voiceId": "Lily"}),
                applied: vec![],
            },
            Case {
                name: "playht no longer removed",
                voice: json!({"provider": "playht", "voiceId": "jennifer"}),
                want: json!({"provider": "playht", "voiceId": "jennifer"}),
                applied: vec![],
            },
            Case {
                name: "new fallback",
                voice: json!({"provider": "neets", "voiceId": "vits", "speed": 1.5}),
                want: json!({"provider": "vapi", "voiceId": "Elliot", "speed": 1.5}),
                applied: vec![n("neets/vits", "vapi/Elliot", "removed-provider")],
            },
        ],
    );
}

#[test]
fn override_file_errors() {
    let cases = [
        (r#"{"retierd": {}}"#, "unknown field `retierd`"),
        (
            r#"{"removed_providers": []}"#,
            "unknown field `removed_providers`",
        ),
        (
            r#"{"fallback": {"provider": "azure", "voiceId": "en-US-GuyNeural", "speed": 1}}"#,
            "unknown field `speed`",
        ),
        (
            r#"{"retired": {"Kylie": {"provider": "vapi"}}}"#,
            "missing field `voiceId`",
        ),
        (r#"{"fallback": "jenny"}"#, "invalid type"),
        ("[]", "the file must be a JSON object"),
        (
            "[null, null, null, null, null]",
            "the file must be a JSON object",
        ),
        ("{", "EOF"),
        (
            r#"{"fallback": {"provider": "playht", "voiceId": "jennifer"}}"#,
            "fallback uses provider \"playht\", which is a removed provider",
        ),
        (
            r#"{"fallback": {"provider": "elevenlabs", "voiceId": "x"}}"#,
            "fallback uses provider \"elevenlabs\", which is not a Vapi voice provider",
        ),
        (
            r#"{"retired": {"Rohan": {"provider": "vapi", "voiceId": "Kylie"}}}"#,
            "retired.Rohan is vapi/Kylie, which is itself retired",
        ),
        (
            r#"{"retired": {"Rohan": {"provider": "vapi", "voiceId": " "}}}"#,
            "retired.Rohan has an empty voiceId",
        ),
        (
            r#"{"providerAliases": {"eleven": "eleven-labs"}}"#,
            "providerAliases.eleven leads to \"eleven-labs\", which is not a Vapi voice provider",
        ),
    ];
    for (text, want) in cases {
        let err = VoiceRules::from_json(text).expect_err(text);
        assert!(err.starts_with("voice rules: "), "{err}");
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn rules_round_trip_as_json() {
    let rules = VoiceRules::default();
    let text = serde_json::to_string(&rules).expect("serializes");
    assert_eq!(VoiceRules::from_json(&text), Ok(rules.clone()));
    let value: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        value["retired"]["Kylie"],
        json!({"provider": "vapi", "voiceId": "Savannah"})
    );
    assert_eq!(value["providerAliases"]["elevenlabs"], "11labs");
    assert_eq!(value["azureNames"]["jenny"], "en-US-JennyNeural");
    assert_eq!(
        value["fallback"],
        json!({"provider": "azure", "voiceId": "en-US-JennyNeural"})
    );
    let norm = serde_json::to_value(n("vapi/Kylie", "vapi/Savannah", "retired-voice"))
        .expect("serializes");
    assert_eq!(
        norm,
        json!({"from": "vapi/Kylie", "to": "vapi/Savannah", "rule": "retired-voice"})
    );
}

/// What the normalizer produces from a voice Vapi would refuse is a voice validation accepts.
#[test]
fn normalized_voices_validate() {
    let rules = VoiceRules::default();
    let mut voices: Vec<Value> = LEGACY_VAPI_VOICES
        .iter()
        .map(|v| json!({"provider": "vapi", "voiceId": v.to_lowercase(), "speed": 1.0}))
        .collect();
    voices.extend(
        rules
            .azure_names
            .keys()
            .map(|bare| json!({"provider": "azure", "voiceId": bare})),
    );
    voices.extend([
        json!({"provider": "neets", "voiceId": "vits"}),
        json!({"provider": "elevenlabs", "voiceId": "burt", "stability": 0.5}),
        json!({"provider": "vapi", "voiceId": "elliot"}),
        json!({"provider": "Azure", "voiceId": "Andrew"}),
    ]);
    for voice in voices {
        assert!(
            !problems_of(&voice).is_empty(),
            "{voice} should be refused as it is"
        );
        let normalized = rules.normalize(&voice);
        assert_eq!(
            problems_of(&normalized.voice),
            Vec::<String>::new(),
            "{voice} → {}",
            normalized.voice
        );
    }
    // PlayHT validates (Vapi still lists it) but cannot speak: its fallback validates too.
    let playht =
        json!({"provider": "playht", "voiceId": "jennifer", "emotion": "female_happy", "speed": 4});
    assert_eq!(problems_of(&playht), Vec::<String>::new());
    assert_eq!(
        problems_of(&rules.normalize(&playht).voice),
        Vec::<String>::new()
    );
}

fn problems_of(voice: &Value) -> Vec<String> {
    let mut spec = Map::new();
    spec.insert("voice".to_owned(), voice.clone());
    validate_spec(&spec, "front-desk")
}

#[test]
fn voice_rejections_are_recognized() {
    let yes = [
        "The Neha voice is part of a legacy voice set that is being phased out, and new assistants cannot be created with this voice.",
        "The Lily voice is part of a legacy voice set that is being phased out, and assistants cannot be updated to use this voice.",
        "The Kylie voice is part of a legacy voice set that is being phased out...",
        "voice.voiceId must be one of the following values: Elliot, Kylie, Rohan, Lily, Savannah, Hana, Neha, Cole, Harry, Paige, Spencer, Leah, Tara, Jess, Leo, Dan, Mia, Zac, Zoe",
        "voice.provider must be one of the following values: azure, cartesia, custom-voice",
        "Couldn't Find Azure Voice: jenny. Voice id should look like en-US-EmmaNeural",
        "Couldn\u{2019}t Find Azure Voice ... should look like en-US-EmmaNeural",
    ];
    let no = [
        "",
        "voice.property enableSsmlParsing should not exist",
        "voice.voiceId must be a string",
        "property serverUrl should not exist",
        "name must be shorter than or equal to 40 characters",
        "stopSpeakingPlan.voiceSeconds must not be greater than 0.5",
        "model.provider must be one of the following values: anthropic, openai",
        "Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa.",
        "Not Found",
    ];
    for m in yes {
        assert!(is_voice_rejection(m), "{m}");
    }
    for m in no {
        assert!(!is_voice_rejection(m), "{m}");
    }
}
