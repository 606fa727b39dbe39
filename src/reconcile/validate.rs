//! Spec validation before Vapi sees it: every problem of an `agents.spec`, each naming the field
//! path and the offending value, so a bad spec becomes [`super::Action::Invalid`] with a useful
//! status instead of a 400 that also blocks every other field of the PATCH.
//!
//! PURE: no I/O. The data comes from Vapi's OpenAPI document ([`crate::vapi::schema`]) and its API
//! documentation (the voiceId rules, the fields Vapi removed).
//!
//! Order of use: [`super::voice::VoiceRules::normalize`] runs first and validation checks what it
//! produced, so an alias (`elevenlabs`) or a removed provider (`neets`) is only accepted when the
//! normalizer rewrote it; validating the raw spec reports them.
//!
//! Division of labour with [`super::desired_body`]: `name`, `metadata` and the fields Vapi assigns
//! (`id`, `orgId`, …) in the spec are reported there, so they are skipped here. The agent's name
//! (`agents.name`, sent as the assistant's `name`) is checked here for Vapi's 40-character limit.
//!
//! Messages come in a stable order: the agent's name, then the spec's keys that are not Vapi fields
//! (in key order), then the declared fields in the spec's declaration order, each field's problems
//! in the order of its checks. `null` is accepted for every top-level field: Vapi stores it as
//! "cleared". Shapes of any kind are handled without panicking; displayed values are cut to about
//! 60 characters.

use serde_json::{Map, Value};

mod limits;
pub use limits::{SPEC_MAX_BYTES, SPEC_MAX_DEPTH, parse_spec};

use super::{SERVER_FIELDS, json_type};
use crate::vapi::schema::{
    ASSISTANT_PROPERTIES, AZURE_PRESETS, CLIENT_MESSAGES, DEFAULT_VAPI_VOICES, FIRST_MESSAGE_MODES,
    LEGACY_VAPI_VOICES, MESSAGE_ROLES, MODEL_PROVIDERS, SERVER_MESSAGES, SERVER_PROPERTIES,
    TRANSCRIBER_PROVIDERS, VOICE_ID_ENUMS, VOICE_SCHEMAS, VoiceSchema, is_azure_short_name,
    voice_schema,
};

/// Vapi's limit on an assistant's `name`.
pub const NAME_MAX: usize = 40;

/// Top-level fields Vapi removed from the assistant (dates from the history of its OpenAPI
/// document), each with where its job went. Sending one gets `property X should not exist`.
pub const REMOVED_FIELDS: &[(&str, &str)] = &[
    ("serverUrl", "set server.url instead"),
    (
        "serverUrlSecret",
        "send the secret as a header in server.headers (e.g. x-vapi-secret) or reference a \
         credential with server.credentialId (server.secret was removed too)",
    ),
    ("backchannelingEnabled", "it has no replacement: remove it"),
    ("hipaaEnabled", "set compliancePlan.hipaaEnabled instead"),
    ("pciEnabled", "set compliancePlan.pciEnabled instead"),
    (
        "silenceTimeoutSeconds",
        "react to caller silence with a hooks entry on \"customer.speech.timeout\" instead",
    ),
    (
        "backgroundDenoisingEnabled",
        "set backgroundSpeechDenoisingPlan.smartDenoisingPlan.enabled instead",
    ),
    (
        "messagePlan",
        "idle messages are now hooks entries on \"customer.speech.timeout\" with a \"say\" action",
    ),
];

/// Declared fields that must be objects (nested DTOs); only their type is checked, unless a
/// dedicated check below looks deeper.
const OBJECT_FIELDS: &[&str] = &[
    "observabilityPlan",
    "backgroundSpeechDenoisingPlan",
    "analysisPlan",
    "artifactPlan",
    "monitorPlan",
    "keypadInputPlan",
];

/// Declared fields that must be arrays of objects.
const OBJECT_ARRAY_FIELDS: &[&str] = &["transportConfigurations", "credentials", "hooks"];

/// Numeric bounds inside plans, from the OpenAPI document (`StopSpeakingPlan`, `StartSpeakingPlan`).
/// `stopSpeakingPlan.voiceSeconds` over 0.5 is a 400 people only meet at push time.
const PLAN_NUMBERS: &[(&str, &str, f64, f64)] = &[
    ("startSpeakingPlan", "waitSeconds", 0.0, 5.0),
    ("stopSpeakingPlan", "numWords", 0.0, 10.0),
    ("stopSpeakingPlan", "voiceSeconds", 0.0, 0.5),
    ("stopSpeakingPlan", "backoffSeconds", 0.0, 10.0),
];

/// How many offending items of one array are reported one by one.
const ITEMS_SHOWN: usize = 3;

/// The problems a pass reports for an agent with this name and this stored spec text (read as
/// `load_agents` reads it, then normalized and validated as `desired_body` does), or `None` when
/// the spec would be sent: everything that runs before Vapi, for the bad-input corpus and the
/// fuzz run.
pub fn stored_spec_problems(
    name: &str,
    text: &str,
    voices: &super::VoiceRules,
) -> Option<Vec<String>> {
    let agent = super::DesiredAgent {
        id: uuid::Uuid::nil(),
        org_id: uuid::Uuid::nil(),
        name: name.to_owned(),
        spec: super::Spec::from_text(text.to_owned()),
        generation: 1,
        mode: super::Mode::Enforce,
        deleted: false,
        recorded_assistant_id: None,
        last_applied: None,
        intent: None,
        voice_fallback: false,
        tool_names: Vec::new(),
        tool_ids: Vec::new(),
        in_sync_digest: None,
    };
    super::desired_body(&agent, voices).err()
}

/// The depth and size limits alone (a tool's spec has the same ones as an agent's: a tool nested
/// near the parser's limit would come back from Vapi's listing unreadable).
pub(crate) fn spec_limits(spec: &Map<String, Value>) -> Vec<String> {
    limits::check_limits(spec)
}

/// Every problem with a spec, each naming the field path and the offending value (values shown
/// truncated to about 60 characters). `name` is the agent's name (`agents.name`). A spec deeper
/// than [`SPEC_MAX_DEPTH`] or larger than [`SPEC_MAX_BYTES`] gets only that problem.
pub fn validate_spec(spec: &Map<String, Value>, name: &str) -> Vec<String> {
    let mut p = limits::check_limits(spec);
    if !p.is_empty() {
        return p;
    }
    let len = js_length(name);
    if len > NAME_MAX {
        p.push(format!(
            "agents.name must be at most {NAME_MAX} characters (Vapi's limit), found {len}: {}",
            show(&Value::String(name.to_owned()))
        ));
    }
    for key in spec.keys() {
        let key = key.as_str();
        if ASSISTANT_PROPERTIES.contains(&key) || SERVER_FIELDS.contains(&key) {
            continue;
        }
        match REMOVED_FIELDS.iter().find(|(k, _)| *k == key) {
            Some((_, hint)) => p.push(format!("spec.{key} was removed from Vapi's API: {hint}")),
            None => p.push(format!(
                "{} is not a Vapi assistant field",
                limits::field_path(key)
            )),
        }
    }
    for &field in ASSISTANT_PROPERTIES {
        let Some(value) = spec.get(field).filter(|v| !v.is_null()) else {
            continue;
        };
        check_field(field, value, &mut p);
    }
    p
}

fn check_field(field: &str, value: &Value, p: &mut Vec<String>) {
    let path = format!("spec.{field}");
    match field {
        // The controller's: checked by `desired_body`.
        "name" | "metadata" => {}
        "firstMessage" => {
            string(&path, value, p);
        }
        "voicemailMessage" | "endCallMessage" => string_max(&path, value, 1000, p),
        "firstMessageMode" => enum_of(&path, value, FIRST_MESSAGE_MODES, "a first-message mode", p),
        "firstMessageInterruptionsEnabled" | "modelOutputInMessagesEnabled" => {
            boolean(&path, value, p);
        }
        "maxDurationSeconds" => number(&path, value, Some(10.0), Some(43200.0), p),
        "backgroundSound" => background_sound(&path, value, p),
        "voicemailDetection" if value.as_str() != Some("off") && !value.is_object() => {
            p.push(wrong_type(&path, "\"off\" or an object", value));
        }
        "clientMessages" => each_enum(&path, value, CLIENT_MESSAGES, "a client message", p),
        "serverMessages" => each_enum(&path, value, SERVER_MESSAGES, "a server message", p),
        "endCallPhrases" => end_call_phrases(&path, value, p),
        "credentialIds" => each_string(&path, value, p),
        "transcriber" => transcriber(&path, value, p),
        "model" => model(&path, value, p),
        "voice" => voice(&path, value, p),
        "server" => server(&path, value, p),
        "compliancePlan" => {
            if let Some(plan) = object(&path, value, p) {
                for flag in ["hipaaEnabled", "pciEnabled"] {
                    if let Some(v) = plan.get(flag).filter(|v| !v.is_null()) {
                        boolean(&format!("{path}.{flag}"), v, p);
                    }
                }
            }
        }
        "startSpeakingPlan" | "stopSpeakingPlan" => {
            if let Some(plan) = object(&path, value, p) {
                for (_, key, lo, hi) in PLAN_NUMBERS.iter().filter(|(f, ..)| *f == field) {
                    if let Some(v) = plan.get(*key).filter(|v| !v.is_null()) {
                        number(&format!("{path}.{key}"), v, Some(*lo), Some(*hi), p);
                    }
                }
            }
        }
        f if OBJECT_FIELDS.contains(&f) => {
            object(&path, value, p);
        }
        f if OBJECT_ARRAY_FIELDS.contains(&f) => each_object(&path, value, p),
        _ => {}
    }
}

// ---- voice -------------------------------------------------------------------------------------

fn voice(path: &str, value: &Value, p: &mut Vec<String>) {
    let Some(voice) = object(path, value, p) else {
        return;
    };
    let providers = || {
        VOICE_SCHEMAS
            .iter()
            .map(|s| s.provider)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let schema = match voice.get("provider").filter(|v| !v.is_null()) {
        None => {
            p.push(format!(
                "{path}.provider is required (one of: {})",
                providers()
            ));
            return;
        }
        Some(provider) => match provider.as_str().and_then(voice_schema) {
            Some(schema) => schema,
            None => {
                p.push(format!(
                    "{path}.provider must be a Vapi voice provider (one of: {}), found {}",
                    providers(),
                    show(provider)
                ));
                return;
            }
        },
    };
    let provider = schema.provider;
    for key in voice.keys() {
        if schema.properties.contains(&key.as_str()) {
            continue;
        }
        let elsewhere: Vec<&str> = VOICE_SCHEMAS
            .iter()
            .filter(|s| s.properties.contains(&key.as_str()))
            .map(|s| s.provider)
            .collect();
        if elsewhere.is_empty() {
            p.push(format!("{path}.{key} is not a field of any Vapi voice"));
        } else {
            p.push(format!(
                "{path}.{key} is not accepted for provider {provider} (only for: {})",
                elsewhere.join(", ")
            ));
        }
    }
    for &prop in schema.properties {
        if prop == "provider" {
            continue;
        }
        let field = format!("{path}.{prop}");
        let Some(v) = voice.get(prop).filter(|v| !v.is_null()) else {
            if schema.required.contains(&prop) {
                p.push(format!("{field} is required for provider {provider}"));
            }
            continue;
        };
        if let Some(rule) = schema.numbers.iter().find(|r| r.name == prop) {
            number(&field, v, rule.min, rule.max, p);
        } else if schema.booleans.contains(&prop) {
            boolean(&field, v, p);
        } else if prop == "voiceId" {
            voice_id(&field, schema, voice, v, p);
        } else if prop == "version" && provider == "vapi" {
            let ok = matches!(v.as_str(), Some("1" | "2" | "latest"))
                || v.as_f64().is_some_and(|n| n == 1.0 || n == 2.0);
            if !ok {
                p.push(format!(
                    "{field} must be 1, 2, \"1\", \"2\" or \"latest\", found {}",
                    show(v)
                ));
            }
        }
    }
}

/// The voiceId rules of Vapi's API documentation, per provider.
fn voice_id(
    path: &str,
    schema: &VoiceSchema,
    voice: &Map<String, Value>,
    value: &Value,
    p: &mut Vec<String>,
) {
    let Some(id) = string(path, value, p) else {
        return;
    };
    if id.trim().is_empty() {
        p.push(format!("{path} must not be empty"));
        return;
    }
    let shown = show(value);
    match schema.provider {
        "vapi" => vapi_voice_id(path, id, &shown, voice, p),
        "azure" => {
            if !AZURE_PRESETS.contains(&id) && !is_azure_short_name(id) {
                p.push(format!(
                    "{path} {shown} is not an Azure voice: use a full name such as \
                     en-US-JennyNeural, or a preset ({})",
                    AZURE_PRESETS.join(", ")
                ));
            }
        }
        provider => {
            let Some((_, allowed)) = VOICE_ID_ENUMS.iter().find(|(p, _)| *p == provider) else {
                return;
            };
            if allowed.contains(&id) {
                return;
            }
            // Deepgram's ids are bare names: `aura-asteria-en` / `aura-2-thalia-en` → `asteria`.
            let bare = id
                .strip_prefix("aura-2-")
                .or_else(|| id.strip_prefix("aura-"))
                .map(|rest| rest.split('-').next().unwrap_or(rest));
            match bare.filter(|b| allowed.contains(b)) {
                Some(bare) => p.push(format!(
                    "{path} {shown} is not one of the {provider} voices: use the bare name \"{bare}\""
                )),
                None => p.push(format!(
                    "{path} {shown} is not one of the {provider} voices ({})",
                    list_some(allowed)
                )),
            }
        }
    }
}

fn vapi_voice_id(
    path: &str,
    id: &str,
    shown: &str,
    voice: &Map<String, Value>,
    p: &mut Vec<String>,
) {
    if LEGACY_VAPI_VOICES
        .iter()
        .any(|v| v.eq_ignore_ascii_case(id))
    {
        p.push(format!(
            "{path} {shown} is a Vapi voice retired on 2026-03-01; Vapi refuses it"
        ));
        return;
    }
    let current: Vec<&str> = DEFAULT_VAPI_VOICES
        .iter()
        .copied()
        .filter(|v| !LEGACY_VAPI_VOICES.contains(v))
        .collect();
    if current.contains(&id) {
        return;
    }
    if let Some(name) = current.iter().find(|v| v.eq_ignore_ascii_case(id)) {
        p.push(format!(
            "{path} {shown} must be spelled \"{name}\": Vapi voice names are case-sensitive"
        ));
        return;
    }
    // Since 2026-08-11 the id may also be a cloned voice's id, used with version 2.
    let version_2 = voice
        .get("version")
        .is_some_and(|v| matches!(v.as_str(), Some("2" | "latest")) || v.as_f64() == Some(2.0));
    if version_2 {
        return;
    }
    // A display label such as `Elliot V2`.
    let mut words = id.split_whitespace();
    if let (Some(first), Some(second), None) = (words.next(), words.next(), words.next()) {
        if second.eq_ignore_ascii_case("v2") {
            if let Some(name) = current.iter().find(|v| v.eq_ignore_ascii_case(first)) {
                p.push(format!(
                    "{path} {shown} is a display label: use voiceId \"{name}\" with version 2"
                ));
                return;
            }
        }
    }
    p.push(format!(
        "{path} {shown} is not a Vapi voice (one of: {}); a cloned voice id needs version 2",
        current.join(", ")
    ));
}

// ---- other nested fields -----------------------------------------------------------------------

fn transcriber(path: &str, value: &Value, p: &mut Vec<String>) {
    let Some(t) = object(path, value, p) else {
        return;
    };
    let provider = t.get("provider").filter(|v| !v.is_null());
    if !provider
        .and_then(Value::as_str)
        .is_some_and(|s| TRANSCRIBER_PROVIDERS.contains(&s))
    {
        p.push(format!(
            "{path}.provider must be a Vapi transcriber provider (one of: {}), found {}",
            TRANSCRIBER_PROVIDERS.join(", "),
            provider.map_or_else(|| "nothing".to_owned(), show)
        ));
    }
}

fn model(path: &str, value: &Value, p: &mut Vec<String>) {
    let Some(m) = object(path, value, p) else {
        return;
    };
    let provider = m.get("provider").filter(|v| !v.is_null());
    match provider.and_then(Value::as_str) {
        Some(s) if MODEL_PROVIDERS.contains(&s) => {
            // Every model schema but `VapiModel` requires `model`; `CustomLLMModel` also `url`.
            let mut required = Vec::new();
            if s != "vapi" {
                required.push("model");
            }
            if s == "custom-llm" {
                required.push("url");
            }
            for key in required {
                match m.get(key).filter(|v| !v.is_null()) {
                    None => p.push(format!("{path}.{key} is required for provider {s}")),
                    Some(v) => {
                        string(&format!("{path}.{key}"), v, p);
                    }
                }
            }
        }
        _ => p.push(format!(
            "{path}.provider must be a Vapi model provider (one of: {}), found {}",
            MODEL_PROVIDERS.join(", "),
            provider.map_or_else(|| "nothing".to_owned(), show)
        )),
    }
    if let Some(t) = m.get("temperature").filter(|v| !v.is_null()) {
        number(&format!("{path}.temperature"), t, Some(0.0), Some(2.0), p);
    }
    if let Some(t) = m.get("maxTokens").filter(|v| !v.is_null()) {
        number(
            &format!("{path}.maxTokens"),
            t,
            Some(50.0),
            Some(10000.0),
            p,
        );
    }
    if let Some(messages) = m.get("messages").filter(|v| !v.is_null()) {
        messages_check(&format!("{path}.messages"), messages, p);
    }
    if let Some(ids) = m.get("toolIds").filter(|v| !v.is_null()) {
        each_string(&format!("{path}.toolIds"), ids, p);
    }
}

fn messages_check(path: &str, value: &Value, p: &mut Vec<String>) {
    let Some(items) = array(path, value, p) else {
        return;
    };
    let mut bad = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(msg) = item.as_object() else {
            bad.push(wrong_type(&at, "an object", item));
            continue;
        };
        let role = msg.get("role");
        if !role
            .and_then(Value::as_str)
            .is_some_and(|r| MESSAGE_ROLES.contains(&r))
        {
            bad.push(format!(
                "{at}.role must be one of {}, found {}",
                MESSAGE_ROLES.join(", "),
                role.map_or_else(|| "nothing".to_owned(), show)
            ));
        }
        match msg.get("content") {
            None => bad.push(format!("{at}.content is required (a string or null)")),
            Some(Value::String(_) | Value::Null) => {}
            Some(other) => bad.push(wrong_type(
                &format!("{at}.content"),
                "a string or null",
                other,
            )),
        }
    }
    capped(path, bad, p);
}

fn server(path: &str, value: &Value, p: &mut Vec<String>) {
    let Some(s) = object(path, value, p) else {
        return;
    };
    for key in s.keys() {
        if key == "secret" {
            p.push(format!(
                "{path}.secret was removed from Vapi's API: send the secret as a header in \
                 {path}.headers (e.g. x-vapi-secret) or use {path}.credentialId"
            ));
        } else if !SERVER_PROPERTIES.contains(&key.as_str()) {
            p.push(format!(
                "{path}.{key} is not a field of Vapi's server object"
            ));
        }
    }
    for &prop in SERVER_PROPERTIES {
        let Some(v) = s.get(prop).filter(|v| !v.is_null()) else {
            continue;
        };
        let field = format!("{path}.{prop}");
        match prop {
            "url" => {
                if let Some(url) = string(&field, v, p) {
                    if !is_http_url(url) {
                        p.push(format!("{field} must be an http(s) URL, found {}", show(v)));
                    }
                }
            }
            "timeoutSeconds" => number(&field, v, Some(1.0), Some(300.0), p),
            "credentialId" => {
                string(&field, v, p);
            }
            "staticIpAddressesEnabled" => {
                boolean(&field, v, p);
            }
            "headers" | "backoffPlan" => {
                object(&field, v, p);
            }
            "encryptedPaths" => each_string(&field, v, p),
            _ => {}
        }
    }
}

fn background_sound(path: &str, value: &Value, p: &mut Vec<String>) {
    let Some(s) = string(path, value, p) else {
        return;
    };
    if !matches!(s, "off" | "office") && !is_http_url(s) {
        p.push(format!(
            "{path} must be \"off\", \"office\" or an http(s) URL, found {}",
            show(value)
        ));
    }
}

fn end_call_phrases(path: &str, value: &Value, p: &mut Vec<String>) {
    let Some(items) = array(path, value, p) else {
        return;
    };
    let mut bad = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match item.as_str().map(js_length) {
            None => bad.push(wrong_type(&at, "a string", item)),
            Some(len) if !(2..=140).contains(&len) => bad.push(format!(
                "{at} must be 2 to 140 characters, found {len}: {}",
                show(item)
            )),
            Some(_) => {}
        }
    }
    capped(path, bad, p);
}

// ---- primitives --------------------------------------------------------------------------------

fn string<'a>(path: &str, value: &'a Value, p: &mut Vec<String>) -> Option<&'a str> {
    let s = value.as_str();
    if s.is_none() {
        p.push(wrong_type(path, "a string", value));
    }
    s
}

fn string_max(path: &str, value: &Value, max: usize, p: &mut Vec<String>) {
    if let Some(s) = string(path, value, p) {
        let len = js_length(s);
        if len > max {
            p.push(format!(
                "{path} must be at most {max} characters, found {len}: {}",
                show(value)
            ));
        }
    }
}

fn boolean(path: &str, value: &Value, p: &mut Vec<String>) {
    if !value.is_boolean() {
        p.push(wrong_type(path, "a boolean", value));
    }
}

fn object<'a>(path: &str, value: &'a Value, p: &mut Vec<String>) -> Option<&'a Map<String, Value>> {
    let o = value.as_object();
    if o.is_none() {
        p.push(wrong_type(path, "an object", value));
    }
    o
}

fn array<'a>(path: &str, value: &'a Value, p: &mut Vec<String>) -> Option<&'a Vec<Value>> {
    let a = value.as_array();
    if a.is_none() {
        p.push(wrong_type(path, "an array", value));
    }
    a
}

fn number(path: &str, value: &Value, min: Option<f64>, max: Option<f64>, p: &mut Vec<String>) {
    let Some(n) = value.as_f64().filter(|n| n.is_finite()) else {
        p.push(wrong_type(path, "a number", value));
        return;
    };
    let below = min.is_some_and(|lo| n < lo);
    let above = max.is_some_and(|hi| n > hi);
    if !below && !above {
        return;
    }
    let shown = show(value);
    p.push(match (min, max) {
        (Some(lo), Some(hi)) => format!("{path} must be between {lo} and {hi}, found {shown}"),
        (Some(lo), None) => format!("{path} must be at least {lo}, found {shown}"),
        (None, Some(hi)) => format!("{path} must be at most {hi}, found {shown}"),
        (None, None) => format!("{path} is out of range, found {shown}"),
    });
}

fn enum_of(path: &str, value: &Value, allowed: &[&str], what: &str, p: &mut Vec<String>) {
    if let Some(s) = string(path, value, p) {
        if !allowed.contains(&s) {
            p.push(format!(
                "{path} {} is not {what} Vapi knows (one of: {})",
                show(value),
                allowed.join(", ")
            ));
        }
    }
}

fn each_enum(path: &str, value: &Value, allowed: &[&str], what: &str, p: &mut Vec<String>) {
    let Some(items) = array(path, value, p) else {
        return;
    };
    let bad = items
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.as_str().is_some_and(|s| allowed.contains(&s)))
        .map(|(i, v)| format!("{path}[{i}] {} is not {what} Vapi knows", show(v)))
        .collect();
    capped(path, bad, p);
}

fn each_string(path: &str, value: &Value, p: &mut Vec<String>) {
    let Some(items) = array(path, value, p) else {
        return;
    };
    let bad = items
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_string())
        .map(|(i, v)| wrong_type(&format!("{path}[{i}]"), "a string", v))
        .collect();
    capped(path, bad, p);
}

fn each_object(path: &str, value: &Value, p: &mut Vec<String>) {
    let Some(items) = array(path, value, p) else {
        return;
    };
    let bad = items
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_object())
        .map(|(i, v)| wrong_type(&format!("{path}[{i}]"), "an object", v))
        .collect();
    capped(path, bad, p);
}

/// Reports the first few problems of one array and counts the rest.
fn capped(path: &str, bad: Vec<String>, p: &mut Vec<String>) {
    let more = bad.len().saturating_sub(ITEMS_SHOWN);
    p.extend(bad.into_iter().take(ITEMS_SHOWN));
    if more > 0 {
        p.push(format!("{path} has {more} more invalid items"));
    }
}

fn wrong_type(path: &str, expected: &str, value: &Value) -> String {
    format!(
        "{path} must be {expected}, found {}: {}",
        json_type(value),
        show(value)
    )
}

fn is_http_url(s: &str) -> bool {
    ["https://", "http://"].iter().any(|scheme| {
        s.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
            && s.len() > scheme.len()
    })
}

/// Length as Vapi's validator counts it: code points, minus emoji presentation selectors.
fn js_length(s: &str) -> usize {
    s.chars()
        .filter(|c| !matches!(c, '\u{FE0E}' | '\u{FE0F}'))
        .count()
}

/// At most this many characters of a value are shown.
const SHOW_MAX: usize = 60;

/// A value as compact JSON, cut to [`SHOW_MAX`] characters (`…` marks the cut). Renders only as
/// much as it shows, so huge or deeply nested values cost nothing.
pub fn show(value: &Value) -> String {
    let mut out = String::new();
    render(value, &mut out, 0);
    if out.chars().count() > SHOW_MAX {
        let mut cut: String = out.chars().take(SHOW_MAX).collect();
        cut.push('…');
        cut
    } else {
        out
    }
}

/// Enough rendered to know whether the value is longer than [`SHOW_MAX`].
const RENDER_BUDGET: usize = SHOW_MAX * 4 + 8;

fn render(value: &Value, out: &mut String, depth: usize) {
    if out.len() > RENDER_BUDGET {
        return;
    }
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => out.push_str(&value.to_string()),
        Value::String(s) => {
            let head: String = s.chars().take(SHOW_MAX + 1).collect();
            out.push_str(&Value::String(head).to_string());
        }
        Value::Array(items) if depth >= 8 && !items.is_empty() => out.push_str("[…]"),
        Value::Object(map) if depth >= 8 && !map.is_empty() => out.push_str("{…}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if out.len() > RENDER_BUDGET {
                    break;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                render(item, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if out.len() > RENDER_BUDGET {
                    break;
                }
                if i > 0 {
                    out.push_str(", ");
                }
                let head: String = key.chars().take(SHOW_MAX + 1).collect();
                out.push_str(&Value::String(head).to_string());
                out.push_str(": ");
                render(item, out, depth + 1);
            }
            out.push('}');
        }
    }
}

/// The first few names of a long list.
fn list_some(names: &[&str]) -> String {
    const SHOWN: usize = 12;
    if names.len() <= SHOWN {
        names.join(", ")
    } else {
        format!("{}, …", names[..SHOWN].join(", "))
    }
}
