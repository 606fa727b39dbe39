//! Table-driven tests of spec validation: one case per rule with its exact message, a spec with
//! several errors, a valid spec, malformed shapes, and random JSON that must never panic.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use super::validate::{REMOVED_FIELDS, show, validate_spec};
use super::voice::VoiceRules;
use crate::vapi::schema::ASSISTANT_PROPERTIES;

const VOICE_PROVIDERS: &str = "azure, cartesia, custom-voice, deepgram, 11labs, hume, lmnt, \
     neuphonic, openai, playht, wellsaid, rime-ai, smallest-ai, tavus, vapi, sesame, inworld, \
     minimax, xai, microsoft";
const MODEL_PROVIDERS: &str = "anthropic, anthropic-bedrock, anyscale, cerebras, custom-llm, \
     deepinfra, deep-seek, google, groq, inflection-ai, minimax, openai, openrouter, \
     perplexity-ai, together-ai, xai, vapi";
const CURRENT_VAPI_VOICES: &str = "Clara, Godfrey, Elliot, Savannah, Nico, Kai, Emma, Sagar, \
     Neil, Layla, Sid, Gustavo, Rohan, Naina, Leah, Tara, Jess, Leo, Dan, Mia, Zac, Zoe";

fn problems(spec: &Value) -> Vec<String> {
    problems_named(spec, "front-desk")
}

fn problems_named(spec: &Value, name: &str) -> Vec<String> {
    let Value::Object(spec) = spec else {
        panic!("test specs are objects");
    };
    validate_spec(spec, name)
}

fn openai(extra: Value) -> Value {
    let mut model = json!({"provider": "openai", "model": "gpt-4o"});
    for (k, v) in extra.as_object().expect("object") {
        model[k] = v.clone();
    }
    json!({ "model": model })
}

fn voice(v: Value) -> Value {
    json!({ "voice": v })
}

fn run(cases: Vec<(&str, Value, Vec<String>)>) {
    for (name, spec, want) in cases {
        assert_eq!(problems(&spec), want, "{name}");
    }
}

fn one(s: &str) -> Vec<String> {
    vec![s.to_owned()]
}

#[test]
fn fields_that_are_not_vapi_fields() {
    let mut cases = vec![(
        "unknown",
        json!({"foo": 1}),
        one("spec.foo is not a Vapi assistant field"),
    )];
    let removed = [
        (
            "serverUrl",
            "spec.serverUrl was removed from Vapi's API: set server.url instead",
        ),
        (
            "serverUrlSecret",
            "spec.serverUrlSecret was removed from Vapi's API: send the secret as a header in \
             server.headers (e.g. x-vapi-secret) or reference a credential with \
             server.credentialId (server.secret was removed too)",
        ),
        (
            "backchannelingEnabled",
            "spec.backchannelingEnabled was removed from Vapi's API: it has no replacement: remove it",
        ),
        (
            "hipaaEnabled",
            "spec.hipaaEnabled was removed from Vapi's API: set compliancePlan.hipaaEnabled instead",
        ),
        (
            "pciEnabled",
            "spec.pciEnabled was removed from Vapi's API: set compliancePlan.pciEnabled instead",
        ),
        (
            "silenceTimeoutSeconds",
            "spec.silenceTimeoutSeconds was removed from Vapi's API: react to caller silence with \
             a hooks entry on \"customer.speech.timeout\" instead",
        ),
        (
            "backgroundDenoisingEnabled",
            "spec.backgroundDenoisingEnabled was removed from Vapi's API: set \
             backgroundSpeechDenoisingPlan.smartDenoisingPlan.enabled instead",
        ),
        (
            "messagePlan",
            "spec.messagePlan was removed from Vapi's API: idle messages are now hooks entries on \
             \"customer.speech.timeout\" with a \"say\" action",
        ),
    ];
    assert_eq!(removed.len(), REMOVED_FIELDS.len());
    for (field, message) in removed {
        let mut spec = Map::new();
        spec.insert(field.to_owned(), json!(true));
        cases.push(("removed", Value::Object(spec), one(message)));
    }
    cases.extend([
        (
            "server.secret",
            json!({"server": {"url": "https://hooks.example.com", "secret": "s3cr3t"}}),
            one(
                "spec.server.secret was removed from Vapi's API: send the secret as a header in \
                 spec.server.headers (e.g. x-vapi-secret) or use spec.server.credentialId",
            ),
        ),
        (
            "unknown server field",
            json!({"server": {"url": "https://hooks.example.com", "retries": 3}}),
            one("spec.server.retries is not a field of Vapi's server object"),
        ),
        // Left to desired_body, which reports them with its own messages.
        (
            "controller and server fields",
            json!({"name": "x", "metadata": 5, "id": "a1", "orgId": 1, "createdAt": "now",
                   "isServerUrlSecretSet": false}),
            vec![],
        ),
    ]);
    run(cases);
}

#[test]
fn agent_name_length() {
    let forty_one = "a".repeat(41);
    assert_eq!(
        problems_named(&json!({}), &forty_one),
        one(&format!(
            "agents.name must be at most 40 characters (Vapi's limit), found 41: \"{forty_one}\""
        ))
    );
    let long = "b".repeat(500);
    assert_eq!(
        problems_named(&json!({}), &long),
        one(&format!(
            "agents.name must be at most 40 characters (Vapi's limit), found 500: \"{}…",
            "b".repeat(59)
        ))
    );
    for fine in [
        "a".repeat(40),
        "é".repeat(40),
        // Emoji presentation selectors do not count.
        "\u{1F44D}\u{FE0F}".repeat(40),
        String::new(),
    ] {
        assert_eq!(problems_named(&json!({}), &fine), Vec::<String>::new());
    }
}

#[test]
fn types_of_well_known_fields() {
    run(vec![
        (
            "string",
            json!({"firstMessage": 42}),
            one("spec.firstMessage must be a string, found a number: 42"),
        ),
        (
            "boolean",
            json!({"firstMessageInterruptionsEnabled": "yes"}),
            one("spec.firstMessageInterruptionsEnabled must be a boolean, found a string: \"yes\""),
        ),
        (
            "number",
            json!({"maxDurationSeconds": "600"}),
            one("spec.maxDurationSeconds must be a number, found a string: \"600\""),
        ),
        (
            "object",
            json!({"model": "gpt-4o"}),
            one("spec.model must be an object, found a string: \"gpt-4o\""),
        ),
        (
            "voice object",
            json!({"voice": "Elliot"}),
            one("spec.voice must be an object, found a string: \"Elliot\""),
        ),
        (
            "plan object",
            json!({"analysisPlan": []}),
            one("spec.analysisPlan must be an object, found an array: []"),
        ),
        (
            "array",
            json!({"serverMessages": "end-of-call-report"}),
            one("spec.serverMessages must be an array, found a string: \"end-of-call-report\""),
        ),
        (
            "array of objects",
            json!({"hooks": {"on": "call.ending"}}),
            one("spec.hooks must be an array, found an object: {\"on\": \"call.ending\"}"),
        ),
        (
            "array items",
            json!({"hooks": ["call.ending"], "credentialIds": [1]}),
            vec![
                "spec.hooks[0] must be an object, found a string: \"call.ending\"".to_owned(),
                "spec.credentialIds[0] must be a string, found a number: 1".to_owned(),
            ],
        ),
        (
            "nested boolean",
            json!({"compliancePlan": {"hipaaEnabled": "true"}}),
            one("spec.compliancePlan.hipaaEnabled must be a boolean, found a string: \"true\""),
        ),
        (
            "voicemail detection",
            json!({"voicemailDetection": "on"}),
            one("spec.voicemailDetection must be \"off\" or an object, found a string: \"on\""),
        ),
        (
            "voicemail detection fine",
            json!({"voicemailDetection": "off", "transportConfigurations": [{}]}),
            vec![],
        ),
        (
            "server fields",
            json!({"server": {"url": "ftp://hooks.example.com", "headers": "x-vapi-secret: 1",
                              "staticIpAddressesEnabled": 1}}),
            // In the declaration order of Vapi's `Server`.
            vec![
                "spec.server.staticIpAddressesEnabled must be a boolean, found a number: 1"
                    .to_owned(),
                "spec.server.url must be an http(s) URL, found \"ftp://hooks.example.com\""
                    .to_owned(),
                "spec.server.headers must be an object, found a string: \"x-vapi-secret: 1\""
                    .to_owned(),
            ],
        ),
        (
            "transcriber provider",
            json!({"transcriber": {"provider": "whisper"}}),
            one(
                "spec.transcriber.provider must be a Vapi transcriber provider (one of: \
                 assembly-ai, azure, custom-transcriber, deepgram, 11labs, gladia, google, \
                 speechmatics, talkscriber, openai, cartesia, soniox, xai, vapi), found \"whisper\"",
            ),
        ),
    ]);
}

#[test]
fn documented_ranges_and_lengths() {
    let a1001 = "a".repeat(1001);
    let cut = format!("\"{}…", "a".repeat(59));
    run(vec![
        (
            "maxDurationSeconds low",
            json!({"maxDurationSeconds": 5}),
            one("spec.maxDurationSeconds must be between 10 and 43200, found 5"),
        ),
        (
            "maxDurationSeconds high",
            json!({"maxDurationSeconds": 43200.5}),
            one("spec.maxDurationSeconds must be between 10 and 43200, found 43200.5"),
        ),
        (
            "maxDurationSeconds bounds",
            json!({"maxDurationSeconds": 10}),
            vec![],
        ),
        (
            "temperature",
            openai(json!({"temperature": 2.5})),
            one("spec.model.temperature must be between 0 and 2, found 2.5"),
        ),
        (
            "maxTokens",
            openai(json!({"maxTokens": 10})),
            one("spec.model.maxTokens must be between 50 and 10000, found 10"),
        ),
        (
            "endCallMessage",
            json!({"endCallMessage": a1001}),
            one(&format!(
                "spec.endCallMessage must be at most 1000 characters, found 1001: {cut}"
            )),
        ),
        (
            "voicemailMessage",
            json!({"voicemailMessage": a1001}),
            one(&format!(
                "spec.voicemailMessage must be at most 1000 characters, found 1001: {cut}"
            )),
        ),
        (
            "firstMessage has no documented limit",
            json!({"firstMessage": "a".repeat(5000)}),
            vec![],
        ),
        (
            "endCallPhrases",
            json!({"endCallPhrases": ["goodbye", "a", "b".repeat(141)]}),
            vec![
                "spec.endCallPhrases[1] must be 2 to 140 characters, found 1: \"a\"".to_owned(),
                format!(
                    "spec.endCallPhrases[2] must be 2 to 140 characters, found 141: \"{}…",
                    "b".repeat(59)
                ),
            ],
        ),
        (
            "voice bound from the schema",
            voice(json!({"provider": "azure", "voiceId": "en-US-JennyNeural", "speed": 3})),
            one("spec.voice.speed must be between 0.5 and 2, found 3"),
        ),
        (
            "voice lower bound only",
            voice(json!({"provider": "rime-ai", "voiceId": "cove", "speed": 0})),
            one("spec.voice.speed must be at least 0.1, found 0"),
        ),
        (
            "voice number without bounds",
            voice(json!({"provider": "smallest-ai", "voiceId": "emily", "speed": "fast"})),
            one("spec.voice.speed must be a number, found a string: \"fast\""),
        ),
        (
            "11labs bounds",
            voice(
                json!({"provider": "11labs", "voiceId": "burt", "stability": 1.5,
                         "optimizeStreamingLatency": 5}),
            ),
            vec![
                "spec.voice.stability must be between 0 and 1, found 1.5".to_owned(),
                "spec.voice.optimizeStreamingLatency must be between 0 and 4, found 5".to_owned(),
            ],
        ),
        (
            "stopSpeakingPlan",
            json!({"stopSpeakingPlan": {"voiceSeconds": 0.8, "numWords": 2}}),
            one("spec.stopSpeakingPlan.voiceSeconds must be between 0 and 0.5, found 0.8"),
        ),
        (
            "startSpeakingPlan",
            json!({"startSpeakingPlan": {"waitSeconds": 6}}),
            one("spec.startSpeakingPlan.waitSeconds must be between 0 and 5, found 6"),
        ),
        (
            "server timeout",
            json!({"server": {"url": "https://hooks.example.com", "timeoutSeconds": 0}}),
            one("spec.server.timeoutSeconds must be between 1 and 300, found 0"),
        ),
    ]);
}

#[test]
fn enumerations() {
    run(vec![
        (
            "firstMessageMode",
            json!({"firstMessageMode": "speak-first"}),
            one(
                "spec.firstMessageMode \"speak-first\" is not a first-message mode Vapi knows \
                 (one of: assistant-speaks-first, assistant-speaks-first-with-model-generated-message, \
                 assistant-waits-for-user)",
            ),
        ),
        (
            "serverMessages",
            json!({"serverMessages": ["end-of-call-report", "call-ended"]}),
            one("spec.serverMessages[1] \"call-ended\" is not a server message Vapi knows"),
        ),
        (
            "clientMessages",
            json!({"clientMessages": [1, "transcript"]}),
            one("spec.clientMessages[0] 1 is not a client message Vapi knows"),
        ),
        (
            "backgroundSound",
            json!({"backgroundSound": "forest"}),
            one(
                "spec.backgroundSound must be \"off\", \"office\" or an http(s) URL, found \"forest\"",
            ),
        ),
        (
            "backgroundSound fine",
            json!({"backgroundSound": "https://cdn.example.com/lounge.mp3"}),
            vec![],
        ),
    ]);
}

#[test]
fn model_shape() {
    run(vec![
        (
            "no provider",
            json!({"model": {"model": "gpt-4o"}}),
            one(&format!(
                "spec.model.provider must be a Vapi model provider (one of: {MODEL_PROVIDERS}), found nothing"
            )),
        ),
        (
            "unknown provider",
            json!({"model": {"provider": "OpenAI", "model": "gpt-4o"}}),
            one(&format!(
                "spec.model.provider must be a Vapi model provider (one of: {MODEL_PROVIDERS}), found \"OpenAI\""
            )),
        ),
        (
            "model required",
            json!({"model": {"provider": "openai"}}),
            one("spec.model.model is required for provider openai"),
        ),
        (
            "custom-llm needs a url",
            json!({"model": {"provider": "custom-llm", "model": "mine"}}),
            one("spec.model.url is required for provider custom-llm"),
        ),
        ("vapi needs nothing else", json!({"model": {"provider": "vapi"}}), vec![]),
        (
            "messages, capped",
            openai(json!({"messages": [
                {"role": "bot", "content": "x"},
                {"role": "system", "content": 5},
                "hi",
                {"role": "user"},
                {"role": "system", "content": null}
            ]})),
            vec![
                "spec.model.messages[0].role must be one of assistant, function, user, system, tool, found \"bot\"".to_owned(),
                "spec.model.messages[1].content must be a string or null, found a number: 5".to_owned(),
                "spec.model.messages[2] must be an object, found a string: \"hi\"".to_owned(),
                "spec.model.messages has 1 more invalid items".to_owned(),
            ],
        ),
        (
            "toolIds",
            openai(json!({"toolIds": ["7c0a6f8e", 1]})),
            one("spec.model.toolIds[1] must be a string, found a number: 1"),
        ),
    ]);
}

#[test]
fn voice_rules() {
    let cases = vec![
        (
            "no provider",
            voice(json!({"voiceId": "Elliot"})),
            one(&format!(
                "spec.voice.provider is required (one of: {VOICE_PROVIDERS})"
            )),
        ),
        (
            "alias not normalized",
            voice(json!({"provider": "elevenlabs", "voiceId": "burt"})),
            one(&format!(
                "spec.voice.provider must be a Vapi voice provider (one of: {VOICE_PROVIDERS}), found \"elevenlabs\""
            )),
        ),
        (
            "removed provider not normalized",
            voice(json!({"provider": "neets", "voiceId": "vits"})),
            one(&format!(
                "spec.voice.provider must be a Vapi voice provider (one of: {VOICE_PROVIDERS}), found \"neets\""
            )),
        ),
        (
            "field of another provider",
            voice(json!({"provider": "vapi", "voiceId": "Elliot", "enableSsmlParsing": true})),
            one(
                "spec.voice.enableSsmlParsing is not accepted for provider vapi (only for: 11labs)",
            ),
        ),
        (
            "field of one other provider",
            voice(json!({"provider": "cartesia", "voiceId": "a0e9", "volume": 2})),
            one("spec.voice.volume is not accepted for provider cartesia (only for: minimax)"),
        ),
        (
            "field of no voice at all",
            voice(json!({"provider": "vapi", "voiceId": "Elliot", "pitchShift": 2})),
            one("spec.voice.pitchShift is not a field of any Vapi voice"),
        ),
        (
            "required voiceId",
            voice(json!({"provider": "azure"})),
            one("spec.voice.voiceId is required for provider azure"),
        ),
        (
            "null counts as missing",
            voice(json!({"provider": "azure", "voiceId": null})),
            one("spec.voice.voiceId is required for provider azure"),
        ),
        (
            "sesame needs a model",
            voice(json!({"provider": "sesame", "voiceId": "maya"})),
            one("spec.voice.model is required for provider sesame"),
        ),
        (
            "neuphonic needs a language",
            voice(json!({"provider": "neuphonic", "voiceId": "x"})),
            one("spec.voice.language is required for provider neuphonic"),
        ),
        (
            "custom-voice needs a server, not a voiceId",
            voice(json!({"provider": "custom-voice"})),
            one("spec.voice.server is required for provider custom-voice"),
        ),
        (
            "boolean from the schema",
            voice(json!({"provider": "vapi", "voiceId": "Elliot", "cachingEnabled": "yes"})),
            one("spec.voice.cachingEnabled must be a boolean, found a string: \"yes\""),
        ),
        (
            "voiceId type",
            voice(json!({"provider": "11labs", "voiceId": 7})),
            one("spec.voice.voiceId must be a string, found a number: 7"),
        ),
        (
            "voiceId empty",
            voice(json!({"provider": "11labs", "voiceId": ""})),
            one("spec.voice.voiceId must not be empty"),
        ),
        (
            "retired Vapi voice",
            voice(json!({"provider": "vapi", "voiceId": "Kylie"})),
            one(
                "spec.voice.voiceId \"Kylie\" is a Vapi voice retired on 2026-03-01; Vapi refuses it",
            ),
        ),
        (
            "retired Vapi voice in any case",
            voice(json!({"provider": "vapi", "voiceId": "neha", "version": 2})),
            one(
                "spec.voice.voiceId \"neha\" is a Vapi voice retired on 2026-03-01; Vapi refuses it",
            ),
        ),
        (
            "Vapi voice case",
            voice(json!({"provider": "vapi", "voiceId": "elliot"})),
            one(
                "spec.voice.voiceId \"elliot\" must be spelled \"Elliot\": Vapi voice names are case-sensitive",
            ),
        ),
        (
            "not a Vapi voice",
            voice(json!({"provider": "vapi", "voiceId": "jennifer"})),
            one(&format!(
                "spec.voice.voiceId \"jennifer\" is not a Vapi voice (one of: {CURRENT_VAPI_VOICES}); \
                 a cloned voice id needs version 2"
            )),
        ),
        (
            "cloned voice with version 2",
            voice(json!({"provider": "vapi", "voiceId": "c7f3a1e2-clone", "version": 2})),
            vec![],
        ),
        (
            "display label",
            voice(json!({"provider": "vapi", "voiceId": "Elliot V2"})),
            one(
                "spec.voice.voiceId \"Elliot V2\" is a display label: use voiceId \"Elliot\" with version 2",
            ),
        ),
        (
            "Vapi version",
            voice(json!({"provider": "vapi", "voiceId": "Elliot", "version": 3})),
            one("spec.voice.version must be 1, 2, \"1\", \"2\" or \"latest\", found 3"),
        ),
        (
            "bare Azure name",
            voice(json!({"provider": "azure", "voiceId": "jenny"})),
            one(
                "spec.voice.voiceId \"jenny\" is not an Azure voice: use a full name such as \
                 en-US-JennyNeural, or a preset (andrew, brian, emma)",
            ),
        ),
        (
            "Azure presets and full names",
            json!({"voice": {"provider": "azure", "voiceId": "andrew"}}),
            vec![],
        ),
        (
            "Deepgram model-prefixed id",
            voice(json!({"provider": "deepgram", "voiceId": "aura-asteria-en"})),
            one(
                "spec.voice.voiceId \"aura-asteria-en\" is not one of the deepgram voices: use the bare name \"asteria\"",
            ),
        ),
        (
            "Deepgram aura-2 id",
            voice(
                json!({"provider": "deepgram", "voiceId": "aura-2-thalia-en", "model": "aura-2"}),
            ),
            one(
                "spec.voice.voiceId \"aura-2-thalia-en\" is not one of the deepgram voices: use the bare name \"thalia\"",
            ),
        ),
        (
            "Deepgram unknown",
            voice(json!({"provider": "deepgram", "voiceId": "bob"})),
            one(
                "spec.voice.voiceId \"bob\" is not one of the deepgram voices (asteria, luna, stella, \
                 athena, hera, orion, arcas, perseus, angus, orpheus, helios, zeus, …)",
            ),
        ),
        (
            "xAI enum",
            voice(json!({"provider": "xai", "voiceId": "Eve"})),
            one(
                "spec.voice.voiceId \"Eve\" is not one of the xai voices (eve, ara, rex, sal, leo)",
            ),
        ),
        (
            "enum providers fine",
            voice(json!({"provider": "microsoft", "voiceId": "en-US-Ethan:MAI-Voice-2"})),
            vec![],
        ),
        (
            "free-string providers",
            voice(
                json!({"provider": "cartesia", "voiceId": "a0e99841-438c-4a64-b679-ae501e7d6091",
                         "generationConfig": {"speed": 1.1}}),
            ),
            vec![],
        ),
    ];
    for (_, spec, _) in &cases {
        // No voice case adds problems outside `voice`.
        assert!(problems(spec).iter().all(|m| m.starts_with("spec.voice")));
    }
    run(cases);
    for id in [
        "andrew",
        "brian",
        "emma",
        "en-US-JennyNeural",
        "zh-CN-henan-YundengNeural",
    ] {
        assert_eq!(
            problems(&voice(json!({"provider": "azure", "voiceId": id}))),
            Vec::<String>::new()
        );
    }
}

#[test]
fn five_errors_in_a_stable_order() {
    let spec = json!({
        "serverUrl": "https://hooks.example.com/vapi",
        "model": {"provider": "openai", "model": "gpt-4o", "temperature": 3},
        "voice": {"provider": "vapi", "voiceId": "Kylie"},
        "maxDurationSeconds": 5,
        "foo": {"bar": 1}
    });
    let want = [
        "spec.foo is not a Vapi assistant field",
        "spec.serverUrl was removed from Vapi's API: set server.url instead",
        "spec.model.temperature must be between 0 and 2, found 3",
        "spec.voice.voiceId \"Kylie\" is a Vapi voice retired on 2026-03-01; Vapi refuses it",
        "spec.maxDurationSeconds must be between 10 and 43200, found 5",
    ];
    for _ in 0..3 {
        assert_eq!(problems(&spec), want);
    }
}

#[test]
fn a_valid_spec_has_no_problems() {
    let spec = json!({
        "firstMessage": "Hi, thanks for calling Acme. How can I help?",
        "firstMessageMode": "assistant-speaks-first",
        "firstMessageInterruptionsEnabled": false,
        "model": {
            "provider": "openai",
            "model": "gpt-4.1",
            "temperature": 0.3,
            "maxTokens": 400,
            "messages": [{ "role": "system", "content": "You are Acme's support agent." }],
            "toolIds": ["7c0a6f8e-2f7b-4e0e-9d0c-6a3f1b2c4d5e"]
        },
        "voice": { "provider": "azure", "voiceId": "en-US-JennyNeural" },
        "transcriber": { "provider": "deepgram", "model": "nova-3", "language": "en" },
        "server": { "url": "https://hooks.example.com/vapi", "headers": { "x-vapi-secret": "…" },
                    "timeoutSeconds": 20 },
        "serverMessages": ["end-of-call-report", "status-update", "tool-calls"],
        "clientMessages": ["transcript"],
        "endCallMessage": "Thanks for calling, goodbye.",
        "endCallPhrases": ["goodbye", "bye"],
        "maxDurationSeconds": 900,
        "backgroundSound": "office",
        "voicemailMessage": null,
        "compliancePlan": {"hipaaEnabled": true, "pciEnabled": false},
        "stopSpeakingPlan": {"voiceSeconds": 0.2},
        "analysisPlan": {},
        "hooks": [{"on": "customer.speech.timeout", "do": [{"type": "say", "exact": "Still there?"}]}],
        "credentialIds": []
    });
    assert_eq!(problems(&spec), Vec::<String>::new());
}

#[test]
fn every_field_may_be_null() {
    let spec: Map<String, Value> = ASSISTANT_PROPERTIES
        .iter()
        .map(|p| ((*p).to_owned(), Value::Null))
        .collect();
    assert_eq!(validate_spec(&spec, "front-desk"), Vec::<String>::new());
}

fn nested(depth: usize) -> Value {
    let mut v = json!("bottom");
    for i in 0..depth {
        v = if i % 2 == 0 {
            json!([v])
        } else {
            json!({ "k": v })
        };
    }
    v
}

#[test]
fn malformed_shapes_give_messages() {
    // As deep as the limit allows where it sits (`spec.model[…]` adds two levels).
    let deep = nested(28);
    let mut bad_messages = vec![json!("end-of-call-report")];
    bad_messages.extend((0..10_000).map(|i| json!(format!("nope-{i}"))));
    run(vec![
        (
            "voice array",
            json!({"voice": []}),
            one("spec.voice must be an object, found an array: []"),
        ),
        (
            "provider object",
            json!({"voice": {"provider": {"a": 1}}}),
            one(&format!(
                "spec.voice.provider must be a Vapi voice provider (one of: {VOICE_PROVIDERS}), found {{\"a\": 1}}"
            )),
        ),
        (
            "huge number where an object belongs",
            json!({"model": 1e308}),
            one("spec.model must be an object, found a number: 1e+308"),
        ),
        (
            "huge number out of range",
            json!({"maxDurationSeconds": 1e308, "model": {"provider": "openai", "model": "gpt-4o",
                   "maxTokens": u64::MAX, "temperature": -1e308}}),
            vec![
                "spec.model.temperature must be between 0 and 2, found -1e+308".to_owned(),
                "spec.model.maxTokens must be between 50 and 10000, found 18446744073709551615"
                    .to_owned(),
                "spec.maxDurationSeconds must be between 10 and 43200, found 1e+308".to_owned(),
            ],
        ),
        (
            "string where a number belongs",
            json!({"model": {"provider": "openai", "model": 4}}),
            one("spec.model.model must be a string, found a number: 4"),
        ),
        (
            "long array of bad items",
            json!({"serverMessages": bad_messages}),
            vec![
                "spec.serverMessages[1] \"nope-0\" is not a server message Vapi knows".to_owned(),
                "spec.serverMessages[2] \"nope-1\" is not a server message Vapi knows".to_owned(),
                "spec.serverMessages[3] \"nope-2\" is not a server message Vapi knows".to_owned(),
                "spec.serverMessages has 9997 more invalid items".to_owned(),
            ],
        ),
        (
            "deep nesting where anything goes",
            json!({"analysisPlan": {"x": deep.clone()}}),
            vec![],
        ),
        (
            "nesting beyond the limit, even where anything goes",
            json!({"analysisPlan": {"x": nested(300)}, "voice": []}),
            one(
                "spec.analysisPlan nests 302 levels deep (the spec itself is level 1); the limit is 32",
            ),
        ),
        (
            "very long string where a boolean belongs",
            json!({"modelOutputInMessagesEnabled": "x".repeat(200_000)}),
            one(&format!(
                "spec.modelOutputInMessagesEnabled must be a boolean, found a string: \"{}…",
                "x".repeat(59)
            )),
        ),
    ]);
    let got = problems(&json!({"model": [deep.clone()], "voice": {"provider": deep}}));
    assert_eq!(got.len(), 2);
    assert!(
        got[0].starts_with("spec.model must be an object, found an array: [{\"k\": [{\"k\""),
        "{}",
        got[0]
    );
    assert!(got.iter().all(|m| m.chars().count() < 400), "{got:?}");
}

#[test]
fn values_are_shown_short() {
    assert_eq!(show(&json!("short")), "\"short\"");
    assert_eq!(show(&json!(0.5)), "0.5");
    assert_eq!(show(&json!(null)), "null");
    assert_eq!(show(&json!({"a": [1, true]})), "{\"a\": [1, true]}");
    assert_eq!(
        show(&json!("x".repeat(70))),
        format!("\"{}…", "x".repeat(59))
    );
    assert_eq!(
        show(&json!("line\nbreak \"q\"")),
        "\"line\\nbreak \\\"q\\\"\""
    );
    let big: Vec<u32> = (0..100_000).collect();
    let shown = show(&json!(big));
    assert_eq!(shown.chars().count(), 61);
    assert!(shown.starts_with("[0, 1, 2, ") && shown.ends_with('…'));
    assert_eq!(
        show(&nested(9)),
        "[{\"k\": [{\"k\": [{\"k\": [{\"k\": […]}]}]}]}]"
    );
}

/// Random JSON of bounded size: scalars of every kind (huge numbers, long and odd strings),
/// arrays and objects whose keys are often Vapi's own field names, so the checks run deep.
fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    const KEYS: &[&str] = &[
        "provider",
        "voiceId",
        "model",
        "speed",
        "version",
        "url",
        "secret",
        "messages",
        "role",
        "content",
        "temperature",
        "maxTokens",
        "language",
        "server",
        "headers",
        "timeoutSeconds",
        "voiceSeconds",
        "waitSeconds",
        "hipaaEnabled",
        "cachingEnabled",
        "toolIds",
    ];
    const WORDS: &[&str] = &[
        "vapi",
        "azure",
        "11labs",
        "elevenlabs",
        "playht",
        "neets",
        "custom-voice",
        "deepgram",
        "custom-llm",
        "openai",
        "xai",
        "Kylie",
        "elliot",
        "Elliot V2",
        "jenny",
        "andrew",
        "aura-2-",
        "aura-",
        "en-US-JennyNeural",
        "off",
        "office",
        "https://",
        "http://x",
        "",
        " ",
        "é",
        "\u{FE0F}",
        "2",
        "latest",
        "system",
    ];
    let leaf = depth == 0 || rng.random_bool(0.4);
    match rng.random_range(0..if leaf { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => match rng.random_range(0..6) {
            0 => json!(1e308),
            1 => json!(-1e308),
            2 => json!(u64::MAX),
            3 => json!(i64::MIN),
            4 => json!(rng.random_range(-5.0..50_000.0)),
            _ => json!(rng.random_range(0..3)),
        },
        3 => json!(WORDS[rng.random_range(0..WORDS.len())]),
        4 => {
            let len = if rng.random_bool(0.05) {
                5_000
            } else {
                rng.random_range(0..50)
            };
            let s: String = (0..len)
                .map(|_| char::from_u32(rng.random_range(0..0x11_0000)).unwrap_or('?'))
                .collect();
            Value::String(s)
        }
        5 => json!(format!(
            "{}{}",
            WORDS[rng.random_range(0..WORDS.len())],
            rng.random_range(0..100)
        )),
        6 => Value::Array(
            (0..rng.random_range(0..6))
                .map(|_| random_value(rng, depth - 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..6))
                .map(|_| {
                    (
                        KEYS[rng.random_range(0..KEYS.len())].to_owned(),
                        random_value(rng, depth - 1),
                    )
                })
                .collect(),
        ),
    }
}

#[test]
fn random_json_never_panics() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    let rules = VoiceRules::default();
    let mut fields: Vec<&str> = ASSISTANT_PROPERTIES.to_vec();
    fields.extend(REMOVED_FIELDS.iter().map(|(f, _)| *f));
    fields.extend(["id", "foo", "orgId"]);
    for _ in 0..3_000 {
        let mut spec = Map::new();
        for _ in 0..rng.random_range(0..8) {
            let field = fields[rng.random_range(0..fields.len())];
            spec.insert(field.to_owned(), random_value(&mut rng, 5));
        }
        let name: String = (0..rng.random_range(0..60)).map(|_| 'n').collect();
        // Raw, and as the controller will run it: voice normalized first.
        let raw = validate_spec(&spec, &name);
        if let Some(voice) = spec.get("voice") {
            let normalized = rules.normalize(voice);
            if normalized.applied.is_empty() {
                assert_eq!(&normalized.voice, voice);
            }
            spec.insert("voice".to_owned(), normalized.voice);
        }
        let after = validate_spec(&spec, &name);
        for m in raw.iter().chain(&after) {
            assert!(
                m.starts_with("spec.") || m.starts_with("agents.name"),
                "{m}"
            );
            assert!(m.chars().count() < 1_000, "{m}");
        }
        // Anything at all as the spec's value of a field, and any value as a voice.
        let any = random_value(&mut rng, 6);
        let _ = rules.normalize(&any);
        if let Value::Object(map) = &any {
            let _ = validate_spec(map, "x");
        }
    }
}
