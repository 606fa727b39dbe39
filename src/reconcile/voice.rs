//! Voice normalization as data: the rewrites that turn a voice Vapi would refuse (or that can no
//! longer speak) into one it accepts, before the spec is validated and sent.
//!
//! PURE: no I/O. The rules ([`VoiceRules`]) ship with defaults taken from Vapi's API documentation
//! and can be overridden by a JSON file ([`VoiceRules::from_json`]); [`VoiceRules::normalize`]
//! applies them to one `voice` object and reports every rewrite as a [`Normalization`], so the
//! controller can show why what it sends differs from what the writer stored.
//!
//! The rules, in the order they apply:
//! 1. `provider-alias`: a provider spelled the way people say it (`elevenlabs`) becomes Vapi's
//!    discriminator (`11labs`). `case`: a known provider in the wrong case (`Azure`) is lowercased.
//! 2. `removed-provider`: a provider that cannot speak any more (`neets`, gone from the schema in
//!    2025-03; `playht`, whose service shut down on 2025-12-31) is replaced by the fallback voice.
//! 3. `retired-voice`: a Vapi voice retired on 2026-03-01 (matched case-insensitively) becomes its
//!    replacement. Vapi refuses creates and updates that name one, and the refusal takes the whole
//!    PATCH down with it (prompt and tool changes included).
//! 4. `case`: a current Vapi voice in the wrong case (`elliot`) gets the catalogue's spelling
//!    (`Elliot`); Vapi's voice names are case-sensitive. Likewise Azure presets (`Andrew` →
//!    `andrew`) and full Azure names (`en-us-jennyneural` → `en-US-JennyNeural`).
//! 5. `azure-name`: a bare Azure name (`jenny`), which Azure's lookup cannot find, becomes the full
//!    neural name (`en-US-JennyNeural`).
//!
//! Every other field of the voice is kept as it is. When a rule moves the voice to another
//! provider (rule 2, or a rule-3 replacement on another provider), the fields the new provider
//! does not accept are dropped, and the [`Normalization`] lists them in `dropped`.
//! A voice no rule touches comes back as an identical value. A voice that is not an object, or
//! has no string `provider`, is left alone for validation to report.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::vapi::schema::{
    AZURE_PRESETS, DEFAULT_VAPI_VOICES, LEGACY_VAPI_VOICES, VoiceSchema, is_azure_short_name,
    voice_schema,
};

/// What a voice is rewritten to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceRef {
    pub provider: String,
    #[serde(rename = "voiceId")]
    pub voice_id: String,
}

impl VoiceRef {
    pub fn new(provider: &str, voice_id: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            voice_id: voice_id.to_owned(),
        }
    }

    /// `provider/voiceId`, as in [`Normalization`].
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider, self.voice_id)
    }
}

/// The rules: shipped defaults, overridable by a JSON file.
///
/// Deserializing this type directly replaces each field present wholesale; [`VoiceRules::from_json`]
/// is the entry point for override files and merges maps key by key instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VoiceRules {
    /// Retired Vapi voices (case-insensitive) → replacement.
    pub retired: BTreeMap<String, VoiceRef>,
    /// Provider aliases (case-insensitive): "elevenlabs" → "11labs", …
    pub provider_aliases: BTreeMap<String, String>,
    /// Providers that are gone (neets, playht) → use the fallback.
    pub removed_providers: Vec<String>,
    /// Bare Azure names (case-insensitive) → full names: "jenny" → "en-US-JennyNeural", …
    pub azure_names: BTreeMap<String, String>,
    /// The fallback voice (default azure en-US-JennyNeural).
    pub fallback: VoiceRef,
}

/// Replacements for the eight Vapi voices retired on 2026-03-01, each a current Vapi voice of the
/// same gender and, where one exists, the same accent, chosen from the character descriptions on
/// Vapi's voice pages (legacy voices as described before the retirement, current voices as now):
///
/// | retired | was                                  | replacement | is                                      |
/// |---------|--------------------------------------|-------------|-----------------------------------------|
/// | Spencer | female, American, energetic, quippy   | Layla       | female, American, 20s, bright, cheerful  |
/// | Neha    | female, Indian American, professional | Naina       | female, Indian American, professional    |
/// | Harry   | male, American, clear, energetic      | Godfrey     | male, American, 20s, young, energetic    |
/// | Cole    | male, American, deep, calm            | Sid         | male, American, laid-back, deep-toned    |
/// | Paige   | female, American, deeper, calming     | Clara       | female, American, 30s, warm, professional|
/// | Hana    | female, Asian, soft, soothing         | Emma        | female, Asian American, warm             |
/// | Lily    | female, Asian American, bright        | Emma        | female, Asian American, conversational   |
/// | Kylie   | female, American, friendly, approachable | Savannah | female, American, 20s, straightforward; a voice that was kept, not a new one |
///
/// Vapi's own automatic migration moved retired voices to ElevenLabs voice ids instead (e.g. Kylie →
/// `11labs` `t5ztDJA7pj9EyW9QIcJ2`, Lily → `11labs` `7sAIIIXrQKek5xiLc1R6`); an override file can
/// choose those, and the voice's Vapi-only fields are then dropped.
const RETIRED_REPLACEMENTS: &[(&str, &str)] = &[
    ("Spencer", "Layla"),
    ("Neha", "Naina"),
    ("Harry", "Godfrey"),
    ("Cole", "Sid"),
    ("Paige", "Clara"),
    ("Hana", "Emma"),
    ("Lily", "Emma"),
    ("Kylie", "Savannah"),
];

/// Spellings seen in the wild → Vapi's discriminator. `elevenlabs` is the one Vapi's documentation
/// records users sending (refused with `voice.provider must be one of the following values`); the
/// others are the same mistake in other forms. The PlayHT spellings lead to `playht`, which is
/// removed, so those voices then get the fallback.
const PROVIDER_ALIASES: &[(&str, &str)] = &[
    ("elevenlabs", "11labs"),
    ("eleven-labs", "11labs"),
    ("eleven_labs", "11labs"),
    ("rime", "rime-ai"),
    ("rimeai", "rime-ai"),
    ("smallest", "smallest-ai"),
    ("smallestai", "smallest-ai"),
    ("play.ht", "playht"),
    ("play-ht", "playht"),
    ("play_ht", "playht"),
];

/// `neets` left Vapi's schema in 2025-03 (Vapi refuses it). `playht` is still in the schema but the
/// PlayHT service shut down on 2025-12-31, so its voices validate and then fail at call time.
const REMOVED_PROVIDERS: &[&str] = &["neets", "playht"];

/// Bare names of common en-US Azure neural voices. Azure's lookup wants the full short name
/// (`Couldn't Find Azure Voice … should look like en-US-EmmaNeural`); only the presets
/// `andrew`, `brian` and `emma` may be bare, so they are not rewritten.
const AZURE_NAMES: &[&str] = &[
    "Jenny",
    "Guy",
    "Aria",
    "Davis",
    "Amber",
    "Ana",
    "Ashley",
    "Brandon",
    "Christopher",
    "Cora",
    "Elizabeth",
    "Eric",
    "Jacob",
    "Jane",
    "Jason",
    "Michelle",
    "Monica",
    "Nancy",
    "Roger",
    "Sara",
    "Steffan",
    "Tony",
    "Ava",
];

impl Default for VoiceRules {
    fn default() -> Self {
        Self {
            retired: RETIRED_REPLACEMENTS
                .iter()
                .map(|(old, new)| ((*old).to_owned(), VoiceRef::new("vapi", new)))
                .collect(),
            provider_aliases: PROVIDER_ALIASES
                .iter()
                .map(|(a, p)| ((*a).to_owned(), (*p).to_owned()))
                .collect(),
            removed_providers: REMOVED_PROVIDERS.iter().map(|p| (*p).to_owned()).collect(),
            azure_names: AZURE_NAMES
                .iter()
                .map(|n| (n.to_lowercase(), format!("en-US-{n}Neural")))
                .collect(),
            fallback: VoiceRef::new("azure", "en-US-JennyNeural"),
        }
    }
}

/// The override file: every field optional. Map entries merge into the defaults key by key
/// (case-insensitively; `null` removes a shipped entry); `removedProviders` and `fallback` replace.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RulesFile {
    retired: Option<BTreeMap<String, Option<VoiceRef>>>,
    provider_aliases: Option<BTreeMap<String, Option<String>>>,
    removed_providers: Option<Vec<String>>,
    azure_names: Option<BTreeMap<String, Option<String>>>,
    fallback: Option<VoiceRef>,
}

/// The result of [`VoiceRules::normalize`].
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub voice: Value,
    pub applied: Vec<Normalization>,
}

/// One applied rewrite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalization {
    /// `provider/voiceId` before, e.g. `vapi/Kylie` (just `provider` when there is no voiceId).
    pub from: String,
    /// `provider/voiceId` after, e.g. `vapi/Savannah`.
    pub to: String,
    /// `retired-voice` | `case` | `azure-name` | `provider-alias` | `removed-provider`.
    pub rule: &'static str,
    /// Voice fields dropped because the new provider does not accept them (`voice.emotion`, …);
    /// only ever non-empty when the provider changed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped: Vec<String>,
}

impl VoiceRules {
    /// Loads a JSON override file's contents: every field optional in the file (missing = the
    /// shipped default), unknown fields refused with a message naming the field.
    ///
    /// Merging: entries of `retired`, `providerAliases` and `azureNames` are added to (or replace,
    /// matching keys case-insensitively) the shipped ones, and an entry whose value is `null`
    /// removes the shipped one; `removedProviders` and `fallback` replace the shipped value.
    /// The merged rules must be consistent: the fallback and every replacement on a provider Vapi
    /// knows and that is not removed, no replacement that is itself retired, every alias leading
    /// to a provider Vapi knows (or to a removed one).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("voice rules: {e}"))?;
        if !value.is_object() {
            return Err("voice rules: the file must be a JSON object".to_owned());
        }
        let file: RulesFile =
            serde_json::from_value(value).map_err(|e| format!("voice rules: {e}"))?;
        let mut rules = Self::default();
        if let Some(entries) = file.retired {
            merge(&mut rules.retired, entries);
        }
        if let Some(entries) = file.provider_aliases {
            merge(&mut rules.provider_aliases, entries);
        }
        if let Some(entries) = file.azure_names {
            merge(&mut rules.azure_names, entries);
        }
        if let Some(removed) = file.removed_providers {
            rules.removed_providers = removed;
        }
        if let Some(fallback) = file.fallback {
            rules.fallback = fallback;
        }
        let problems = rules.check();
        if problems.is_empty() {
            Ok(rules)
        } else {
            Err(format!("voice rules: {}", problems.join("; ")))
        }
    }

    /// Every inconsistency in these rules (empty when they are usable).
    pub fn check(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut target = |what: String, to: &VoiceRef| {
            if voice_schema(&to.provider).is_none() {
                problems.push(format!(
                    "{what} uses provider {:?}, which is not a Vapi voice provider",
                    to.provider
                ));
            } else if self.is_removed(&to.provider) {
                problems.push(format!(
                    "{what} uses provider {:?}, which is a removed provider",
                    to.provider
                ));
            }
            if to.voice_id.trim().is_empty() {
                problems.push(format!("{what} has an empty voiceId"));
            }
            if to.provider == "vapi" && lookup(&self.retired, &to.voice_id).is_some() {
                problems.push(format!("{what} is {}, which is itself retired", to.label()));
            }
        };
        target("fallback".to_owned(), &self.fallback);
        for (name, to) in &self.retired {
            target(format!("retired.{name}"), to);
        }
        for (alias, to) in &self.provider_aliases {
            if voice_schema(to).is_none() && !self.is_removed(to) {
                problems.push(format!(
                    "providerAliases.{alias} leads to {to:?}, which is not a Vapi voice provider"
                ));
            }
        }
        problems
    }

    /// The fallback voice as a JSON voice object.
    pub fn fallback_voice(&self) -> Value {
        json!({"provider": self.fallback.provider, "voiceId": self.fallback.voice_id})
    }

    fn is_removed(&self, provider: &str) -> bool {
        self.removed_providers
            .iter()
            .any(|p| p.eq_ignore_ascii_case(provider))
    }

    /// Normalizes one spec's `voice` object: the new voice (every provider-specific field kept,
    /// only `provider`/`voiceId` changed, unless the provider changes: see the module docs) and the
    /// normalizations applied, in order. Nothing applied: the voice comes back unchanged.
    pub fn normalize(&self, voice: &Value) -> Normalized {
        let unchanged = || Normalized {
            voice: voice.clone(),
            applied: Vec::new(),
        };
        let Some(original) = voice.as_object() else {
            return unchanged();
        };
        let Some(spelled) = original.get("provider").and_then(Value::as_str) else {
            return unchanged();
        };
        let mut out = original.clone();
        let mut applied = Vec::new();
        let voice_id = original
            .get("voiceId")
            .and_then(Value::as_str)
            .map(str::to_owned);

        // 1. The provider's spelling.
        let mut provider = spelled.to_owned();
        if voice_schema(spelled).is_none() && !self.is_removed(spelled) {
            let rewrite = match lookup(&self.provider_aliases, spelled) {
                Some(to) => Some((to.clone(), "provider-alias")),
                None => {
                    let lower = spelled.to_lowercase();
                    (voice_schema(&lower).is_some() || self.is_removed(&lower))
                        .then_some((lower, "case"))
                }
            };
            if let Some((to, rule)) = rewrite {
                applied.push(Normalization {
                    from: label(spelled, voice_id.as_deref()),
                    to: label(&to, voice_id.as_deref()),
                    rule,
                    dropped: Vec::new(),
                });
                out.insert("provider".to_owned(), Value::String(to.clone()));
                provider = to;
            }
        }

        // 2. A provider that is gone: the fallback voice.
        if self.is_removed(&provider) {
            let dropped = switch_to(&mut out, &provider, &self.fallback);
            applied.push(Normalization {
                from: label(&provider, voice_id.as_deref()),
                to: self.fallback.label(),
                rule: "removed-provider",
                dropped,
            });
            return Normalized {
                voice: Value::Object(out),
                applied,
            };
        }

        // 3-5. The voice id.
        if let Some(id) = voice_id.as_deref() {
            let rewrite = match provider.as_str() {
                "vapi" => self.vapi_voice(id),
                "azure" => self.azure_voice(id),
                _ => None,
            };
            if let Some((to, rule)) = rewrite {
                let dropped = switch_to(&mut out, &provider, &to);
                applied.push(Normalization {
                    from: label(&provider, Some(id)),
                    to: to.label(),
                    rule,
                    dropped,
                });
            }
        }

        if applied.is_empty() {
            return unchanged();
        }
        Normalized {
            voice: Value::Object(out),
            applied,
        }
    }

    fn vapi_voice(&self, id: &str) -> Option<(VoiceRef, &'static str)> {
        if let Some(to) = lookup(&self.retired, id) {
            return Some((to.clone(), "retired-voice"));
        }
        current_vapi_voices(self)
            .find(|name| name.eq_ignore_ascii_case(id) && *name != id)
            .map(|name| (VoiceRef::new("vapi", name), "case"))
    }

    fn azure_voice(&self, id: &str) -> Option<(VoiceRef, &'static str)> {
        if AZURE_PRESETS.contains(&id) || is_azure_short_name(id) {
            return None;
        }
        if let Some(full) = lookup(&self.azure_names, id) {
            return Some((VoiceRef::new("azure", full), "azure-name"));
        }
        AZURE_PRESETS
            .iter()
            .copied()
            .chain(self.azure_names.values().map(String::as_str))
            .find(|name| name.eq_ignore_ascii_case(id))
            .map(|name| (VoiceRef::new("azure", name), "case"))
    }
}

/// The Vapi catalogue minus the voices Vapi retired and the ones these rules retire.
fn current_vapi_voices(rules: &VoiceRules) -> impl Iterator<Item = &'static str> + '_ {
    DEFAULT_VAPI_VOICES
        .iter()
        .copied()
        .filter(|name| !LEGACY_VAPI_VOICES.contains(name) && lookup(&rules.retired, name).is_none())
}

/// Case-insensitive key lookup.
fn lookup<'a, V>(map: &'a BTreeMap<String, V>, key: &str) -> Option<&'a V> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// Merges override entries into shipped ones; keys match case-insensitively, `None` removes.
fn merge<V>(into: &mut BTreeMap<String, V>, entries: BTreeMap<String, Option<V>>) {
    for (key, value) in entries {
        into.retain(|k, _| !k.eq_ignore_ascii_case(&key));
        if let Some(value) = value {
            into.insert(key, value);
        }
    }
}

fn label(provider: &str, voice_id: Option<&str>) -> String {
    match voice_id {
        Some(id) => format!("{provider}/{id}"),
        None => provider.to_owned(),
    }
}

/// Points `voice` at `to`. When the provider changes, drops what the new provider would refuse
/// and returns those fields' paths.
fn switch_to(voice: &mut Map<String, Value>, from_provider: &str, to: &VoiceRef) -> Vec<String> {
    let mut dropped = Vec::new();
    if to.provider != from_provider {
        let schema = voice_schema(&to.provider);
        voice.retain(|key, value| {
            let keep = matches!(key.as_str(), "provider" | "voiceId")
                || schema.is_some_and(|s| accepts(s, key, value));
            if !keep {
                dropped.push(format!("voice.{key}"));
            }
            keep
        });
    }
    voice.insert("provider".to_owned(), Value::String(to.provider.clone()));
    voice.insert("voiceId".to_owned(), Value::String(to.voice_id.clone()));
    dropped
}

/// Whether a field carried over from another provider's voice is fine for `schema`'s provider:
/// declared there, within its bounds, of its type. `model` never carries over: model names are
/// always one provider's own.
fn accepts(schema: &VoiceSchema, key: &str, value: &Value) -> bool {
    if key == "model" || !schema.properties.contains(&key) {
        return false;
    }
    if value.is_null() {
        return true;
    }
    if let Some(rule) = schema.numbers.iter().find(|r| r.name == key) {
        return value.as_f64().is_some_and(|n| {
            n.is_finite() && rule.min.is_none_or(|lo| n >= lo) && rule.max.is_none_or(|hi| n <= hi)
        });
    }
    if schema.booleans.contains(&key) {
        return value.is_boolean();
    }
    true
}

/// Whether a Vapi 400 message says the voice was refused: a retired ("legacy") Vapi voice, a
/// `voice.voiceId` or `voice.provider` enum violation, or Azure's failed voice lookup. Pass each
/// element of an array `message`, or the string `message`, as Vapi sent it.
pub fn is_voice_rejection(message: &str) -> bool {
    let m = message.to_lowercase().replace('\u{2019}', "'");
    m.contains("voice is part of a legacy voice set")
        || m.contains("voice.voiceid must be one of the following values")
        || m.contains("voice.provider must be one of the following values")
        || m.contains("couldn't find azure voice")
}
