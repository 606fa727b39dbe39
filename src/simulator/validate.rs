//! Request-body validation for `POST /assistant` and `PATCH /assistant/{id}`.
//!
//! Design note: Vapi is a NestJS service with a global `ValidationPipe` (class-validator, `whitelist` +
//! `forbidNonWhitelisted`). Validation therefore happens in two stages, and we keep them apart:
//!
//! 1. **Class validation** collects *every* failing constraint and answers 400 with an **array** `message`.
//!    We mimic class-validator's traversal: at each object level the whitelist errors come first
//!    (`property X should not exist`, in body key order — alphabetical here because `serde_json::Map` is
//!    ordered), then the declared properties in the DTO's declaration order (= the OpenAPI property
//!    order, see `crate::vapi::schema`). Nested errors carry a dotted prefix (`voice.`, `model.`). Like
//!    class-validator, a value of the wrong type also fails its range/length constraints
//!    (`name: 5` gives both `must be a string` and `must be shorter than or equal to 40 characters`), and
//!    `null` counts as absent (`@IsOptional()`), which is why cleared fields can be sent as `null`.
//! 2. **Business rules** (retired Vapi voices, Azure voice lookup) run only once stage 1 passed and answer
//!    400 with a **string** `message`, as captured from the real service.
//!
//! Only fields a reconciler touches are checked in depth; the other declared properties pass through.

use serde_json::{Map, Value};

use crate::vapi::schema::{
    ASSISTANT_PROPERTIES, AZURE_PRESETS, CLIENT_MESSAGES, FIRST_MESSAGE_MODES, MODEL_PROVIDERS,
    SERVER_MESSAGES, VOICE_SCHEMAS, is_azure_short_name,
};

pub use crate::vapi::schema::{DEFAULT_VAPI_VOICES, LEGACY_VAPI_VOICES};

/// Which DTO the body is validated as; only the legacy-voice wording differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
}

/// A rejected body: class-validator messages (array) or a business-rule message (string).
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    Messages(Vec<String>),
    Message(String),
}

/// Properties declared as nested DTOs (`@ValidateNested`); we only check that they are objects/arrays.
const NESTED_OBJECTS: &[&str] = &[
    "transcriber",
    "observabilityPlan",
    "compliancePlan",
    "backgroundSpeechDenoisingPlan",
    "analysisPlan",
    "artifactPlan",
    "startSpeakingPlan",
    "stopSpeakingPlan",
    "monitorPlan",
    "server",
    "keypadInputPlan",
];

/// Validate an assistant body. `vapi_voices` is the Vapi voice enum, or `None` for a free string (the
/// spec after 2026-08-11).
pub fn validate_assistant(
    body: &Map<String, Value>,
    op: Op,
    vapi_voices: Option<&[String]>,
    missing_azure: &[String],
) -> Result<(), Rejection> {
    let mut msgs = Vec::new();
    for key in body.keys() {
        if !ASSISTANT_PROPERTIES.contains(&key.as_str()) {
            msgs.push(format!("property {key} should not exist"));
        }
    }
    for &prop in ASSISTANT_PROPERTIES {
        let Some(value) = body.get(prop).filter(|v| !v.is_null()) else {
            continue;
        };
        check_property(prop, value, vapi_voices, &mut msgs);
    }
    if !msgs.is_empty() {
        return Err(Rejection::Messages(msgs));
    }
    if let Some(voice) = body.get("voice").and_then(Value::as_object) {
        business_rules_voice(voice, op, missing_azure)?;
    }
    Ok(())
}

fn check_property(
    prop: &str,
    value: &Value,
    vapi_voices: Option<&[String]>,
    msgs: &mut Vec<String>,
) {
    match prop {
        "name" => string_max(prop, value, 40, msgs),
        "voicemailMessage" | "endCallMessage" => string_max(prop, value, 1000, msgs),
        "firstMessage" => string(prop, value, msgs),
        "firstMessageMode" => enum_of(prop, value, FIRST_MESSAGE_MODES, msgs),
        "firstMessageInterruptionsEnabled" | "modelOutputInMessagesEnabled" => {
            boolean(prop, value, msgs)
        }
        "maxDurationSeconds" => number_range(prop, value, Some(10.0), Some(43200.0), msgs),
        "metadata" => object(prop, value, msgs),
        "endCallPhrases" => each_string(prop, value, Some((2, 140)), msgs),
        "credentialIds" => each_string(prop, value, None, msgs),
        "clientMessages" => each_enum(prop, value, CLIENT_MESSAGES, msgs),
        "serverMessages" => each_enum(prop, value, SERVER_MESSAGES, msgs),
        "voice" => check_voice(value, vapi_voices, msgs),
        "model" => check_model(value, msgs),
        p if NESTED_OBJECTS.contains(&p) => {
            nested_object(p, value, msgs);
        }
        _ => {}
    }
}

fn nested_object(path: &str, value: &Value, msgs: &mut Vec<String>) -> bool {
    if value.is_object() || value.is_array() {
        true
    } else {
        msgs.push(format!(
            "nested property {path} must be either object or array"
        ));
        false
    }
}

/// `@IsString() @MaxLength(n)`; length as validator.js counts it (code points, minus emoji
/// presentation selectors).
fn string_max(path: &str, value: &Value, max: usize, msgs: &mut Vec<String>) {
    let len = value.as_str().map(js_length);
    if len.is_none() {
        msgs.push(format!("{path} must be a string"));
    }
    if len.is_none_or(|l| l > max) {
        msgs.push(format!(
            "{path} must be shorter than or equal to {max} characters"
        ));
    }
}

/// `@IsString()` with optional `@MinLength` / `@MaxLength` (a non-string fails every one of them).
pub fn push_string_messages(
    path: &str,
    value: &Value,
    min: Option<usize>,
    max: Option<usize>,
    msgs: &mut Vec<String>,
) {
    let len = value.as_str().map(js_length);
    if len.is_none() {
        msgs.push(format!("{path} must be a string"));
    }
    if let Some(lo) = min {
        if len.is_none_or(|l| l < lo) {
            msgs.push(format!(
                "{path} must be longer than or equal to {lo} characters"
            ));
        }
    }
    if let Some(hi) = max {
        if len.is_none_or(|l| l > hi) {
            msgs.push(format!(
                "{path} must be shorter than or equal to {hi} characters"
            ));
        }
    }
}

fn js_length(s: &str) -> usize {
    s.chars()
        .filter(|c| !matches!(c, '\u{FE0E}' | '\u{FE0F}'))
        .count()
}

fn string(path: &str, value: &Value, msgs: &mut Vec<String>) {
    if !value.is_string() {
        msgs.push(format!("{path} must be a string"));
    }
}

/// `@IsObject()`: arrays are not objects.
fn object(path: &str, value: &Value, msgs: &mut Vec<String>) {
    if !value.is_object() {
        msgs.push(format!("{path} must be an object"));
    }
}

fn boolean(path: &str, value: &Value, msgs: &mut Vec<String>) {
    if !value.is_boolean() {
        msgs.push(format!("{path} must be a boolean value"));
    }
}

fn enum_of(path: &str, value: &Value, allowed: &[&str], msgs: &mut Vec<String>) {
    if !value.as_str().is_some_and(|s| allowed.contains(&s)) {
        msgs.push(format!(
            "{path} must be one of the following values: {}",
            allowed.join(", ")
        ));
    }
}

/// `@IsNumber() @Min() @Max()`: class-validator's min/max also fail for non-numbers, so a string
/// yields all three messages.
pub fn number_range(
    path: &str,
    value: &Value,
    min: Option<f64>,
    max: Option<f64>,
    msgs: &mut Vec<String>,
) {
    number_messages(
        path,
        value.as_f64().filter(|_| value.is_number()),
        min,
        max,
        msgs,
    );
}

/// Shared by body fields and the `limit` query parameter; `n` is `None` for "not a number".
pub fn number_messages(
    path: &str,
    n: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    msgs: &mut Vec<String>,
) {
    let finite = n.filter(|x| x.is_finite());
    if finite.is_none() {
        msgs.push(format!(
            "{path} must be a number conforming to the specified constraints"
        ));
    }
    if let Some(lo) = min {
        if n.is_none_or(|x| x.is_nan() || x < lo) {
            msgs.push(format!("{path} must not be less than {}", js_number(lo)));
        }
    }
    if let Some(hi) = max {
        if n.is_none_or(|x| x.is_nan() || x > hi) {
            msgs.push(format!("{path} must not be greater than {}", js_number(hi)));
        }
    }
}

/// Format a bound the way JavaScript prints numbers (`2`, not `2.0`).
fn js_number(x: f64) -> String {
    format!("{x}")
}

fn each_string(path: &str, value: &Value, len: Option<(usize, usize)>, msgs: &mut Vec<String>) {
    let Some(items) = value.as_array() else {
        msgs.push(format!("{path} must be an array"));
        return;
    };
    // class-validator reports each constraint once per property, however many items fail it.
    let strs: Vec<Option<usize>> = items.iter().map(|v| v.as_str().map(js_length)).collect();
    if strs.iter().any(Option::is_none) {
        msgs.push(format!("each value in {path} must be a string"));
    }
    if let Some((lo, hi)) = len {
        if strs.iter().any(|l| l.is_none_or(|l| l < lo)) {
            msgs.push(format!(
                "each value in {path} must be longer than or equal to {lo} characters"
            ));
        }
        if strs.iter().any(|l| l.is_none_or(|l| l > hi)) {
            msgs.push(format!(
                "each value in {path} must be shorter than or equal to {hi} characters"
            ));
        }
    }
}

fn each_enum(path: &str, value: &Value, allowed: &[&str], msgs: &mut Vec<String>) {
    let Some(items) = value.as_array() else {
        msgs.push(format!("{path} must be an array"));
        return;
    };
    if items
        .iter()
        .any(|v| !v.as_str().is_some_and(|s| allowed.contains(&s)))
    {
        msgs.push(format!(
            "each value in {path} must be one of the following values: {}",
            allowed.join(", ")
        ));
    }
}

fn voice_providers() -> Vec<&'static str> {
    VOICE_SCHEMAS.iter().map(|s| s.provider).collect()
}

fn check_voice(value: &Value, vapi_voices: Option<&[String]>, msgs: &mut Vec<String>) {
    if !nested_object("voice", value, msgs) {
        return;
    }
    let Some(voice) = value.as_object() else {
        // An array passes @ValidateNested but is no voice at all; report the discriminator.
        msgs.push(format!(
            "voice.provider must be one of the following values: {}",
            voice_providers().join(", ")
        ));
        return;
    };
    let provider = voice.get("provider").and_then(Value::as_str);
    let Some(schema) = VOICE_SCHEMAS.iter().find(|s| Some(s.provider) == provider) else {
        // Unknown discriminator: class-transformer falls back to the base voice class, whose only
        // failing constraint is the provider enum.
        msgs.push(format!(
            "voice.provider must be one of the following values: {}",
            voice_providers().join(", ")
        ));
        return;
    };
    for key in voice.keys() {
        if !schema.properties.contains(&key.as_str()) {
            msgs.push(format!("voice.property {key} should not exist"));
        }
    }
    for &prop in schema.properties {
        let v = voice.get(prop).filter(|v| !v.is_null());
        let required = schema.required.contains(&prop);
        let path = format!("voice.{prop}");
        if prop == "provider" {
            continue;
        }
        if prop == "voiceId" && schema.provider == "vapi" {
            if let Some(catalogue) = vapi_voices {
                let ok = v
                    .and_then(Value::as_str)
                    .is_some_and(|s| catalogue.iter().any(|c| c == s));
                if !ok {
                    msgs.push(format!(
                        "{path} must be one of the following values: {}",
                        catalogue.join(", ")
                    ));
                }
                continue;
            }
        }
        let Some(v) = v else {
            if required {
                msgs.push(format!("{path} should not be empty"));
            }
            continue;
        };
        if let Some(rule) = schema.numbers.iter().find(|r| r.name == prop) {
            number_range(&path, v, rule.min, rule.max, msgs);
        } else if schema.booleans.contains(&prop) {
            boolean(&path, v, msgs);
        } else if prop == "voiceId" {
            match v.as_str() {
                None => msgs.push(format!("{path} must be a string")),
                Some("") if required => msgs.push(format!("{path} should not be empty")),
                Some(_) => {}
            }
        }
    }
}

fn check_model(value: &Value, msgs: &mut Vec<String>) {
    if !nested_object("model", value, msgs) {
        return;
    }
    let provider_msg = || {
        format!(
            "model.provider must be one of the following values: {}",
            MODEL_PROVIDERS.join(", ")
        )
    };
    let Some(model) = value.as_object() else {
        msgs.push(provider_msg());
        return;
    };
    let provider = model.get("provider").and_then(Value::as_str);
    if !provider.is_some_and(|p| MODEL_PROVIDERS.contains(&p)) {
        msgs.push(provider_msg());
        return;
    }
    if let Some(t) = model.get("temperature").filter(|v| !v.is_null()) {
        number_range("model.temperature", t, Some(0.0), Some(2.0), msgs);
    }
    if let Some(m) = model.get("maxTokens").filter(|v| !v.is_null()) {
        number_range("model.maxTokens", m, Some(50.0), Some(10000.0), msgs);
    }
    // `@IsUUID(each)`: the wording is the one Vapi's GitOps notes quote (`docs/learnings/squads.md`).
    // Whether the tools exist is not checked here: Vapi resolves `toolIds` when a call starts.
    if let Some(ids) = model.get("toolIds").filter(|v| !v.is_null()) {
        match ids.as_array() {
            None => msgs.push("model.toolIds must be an array".to_owned()),
            Some(items) => {
                if items
                    .iter()
                    .any(|v| !v.as_str().is_some_and(super::http::is_uuid))
                {
                    msgs.push("model.each value in toolIds must be a UUID".to_owned());
                }
            }
        }
    }
}

/// Stage 2: rules the real service enforces after the DTO validated; string `message`.
fn business_rules_voice(
    voice: &Map<String, Value>,
    op: Op,
    missing_azure: &[String],
) -> Result<(), Rejection> {
    let provider = voice.get("provider").and_then(Value::as_str);
    let Some(voice_id) = voice.get("voiceId").and_then(Value::as_str) else {
        return Ok(());
    };
    match provider {
        Some("vapi") if LEGACY_VAPI_VOICES.contains(&voice_id) => {
            let tail = match op {
                Op::Create => "new assistants cannot be created with this voice.",
                Op::Update => "assistants cannot be updated to use this voice.",
            };
            Err(Rejection::Message(format!(
                "The {voice_id} voice is part of a legacy voice set that is being phased out, and {tail}"
            )))
        }
        Some("azure")
            if (!AZURE_PRESETS.contains(&voice_id) && !is_azure_short_name(voice_id))
                || missing_azure.iter().any(|m| m == voice_id) =>
        {
            Err(Rejection::Message(format!(
                "Couldn't Find Azure Voice: {voice_id}. Voice id should look like en-US-EmmaNeural"
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_names() {
        assert!(is_azure_short_name("en-US-JennyNeural"));
        assert!(is_azure_short_name("zh-CN-henan-YundengNeural"));
        assert!(is_azure_short_name("fil-PH-BlessicaNeural"));
        assert!(!is_azure_short_name("jenny"));
        assert!(!is_azure_short_name("en-US-Neural"));
        assert!(!is_azure_short_name("en-us-JennyNeural"));
    }

    #[test]
    fn non_number_fails_all_constraints() {
        let mut m = Vec::new();
        number_range("x", &Value::from("5"), Some(1.0), Some(2.5), &mut m);
        assert_eq!(
            m,
            [
                "x must be a number conforming to the specified constraints",
                "x must not be less than 1",
                "x must not be greater than 2.5"
            ]
        );
    }
}
