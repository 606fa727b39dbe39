//! PURE reconcile core: desired agents + listed assistants + what the controller remembers →
//! a [`Plan`]: one [`Decision`] per agent and one [`Stray`] per orphaned assistant.
//!
//! No I/O lives here (no tokio, sqlx or reqwest) and time is passed in: the controller feeds in
//! what it read and executes what comes out, so every rule below is a plain `#[test]`.
//!
//! Ownership: an assistant is the controller's when its `metadata` carries the marker
//! (`managedBy`, `agentId`, `orgId`, and `operationId` of the create that made it), or when the
//! agent's status records its id. Anything else is unmanaged: counted, never touched.
//!
//! Rules, in order, for one agent:
//! 1. A deleted agent (`deleted_at` set) gets every assistant it owns deleted
//!    ([`Action::Delete`]), then is [`Action::Deleted`]; an unresolved create waits first.
//! 2. Its spec must be something the controller can send ([`desired_body`]); otherwise the agent
//!    is [`Action::Invalid`] and nothing is sent to Vapi.
//! 3. Its assistant is the recorded one, if Vapi lists it; else the marked one whose
//!    `operationId` matches the outstanding create intent; else the oldest marked one
//!    (adoption: a create whose answer was lost, or a lost status row, never becomes a second
//!    assistant). Every other marked assistant of the agent is a duplicate, to be deleted.
//! 4. No assistant: [`Action::Create`] (or [`Action::Recreate`] when one was recorded), unless a
//!    create with an unknown outcome is younger than the grace period: then
//!    [`Action::AwaitCreate`], because that POST may still land. POST is never retried blindly.
//! 5. Otherwise the desired body is compared with the assistant on parsed JSON; any difference
//!    gives [`Action::Patch`] carrying the differing **top-level keys whole**, because Vapi
//!    replaces each sent key wholesale (a partial `model` would wipe the system prompt).
//!
//! Marked assistants whose agent no longer exists are [`Stray`]s: deleted once they have been
//! seen for the orphan grace period (policy `delete`), or only reported (policy `keep`).
//! The plan says what enforcing would do; management modes, dry-run and the blast-radius
//! [`guard`] decide what of it runs.
//!
//! Two further pure stages prepare a spec before rule 2 (wired in by the controller):
//! [`voice`] rewrites voices Vapi would refuse (retired voices, aliases, bare Azure names,
//! removed providers) by rules kept as data, and [`validate`] then reports every problem
//! Vapi would answer with a 400, each naming the field and the value.

pub(crate) mod guard;
pub mod json;
pub(crate) mod memo;
pub mod numbers;
pub mod shard;
pub mod tools;
pub mod validate;
pub(crate) mod voice;

pub use shard::Shards;
pub use voice::{Normalization, VoiceRules};

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// The `metadata.managedBy` value that marks an assistant as this controller's.
pub const MANAGED_BY: &str = "vapi-reconciler";

/// Fields Vapi assigns; a spec that sets them is refused rather than silently stripped.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "orgId",
    "createdAt",
    "updatedAt",
    "isServerUrlSecretSet",
    "latestVersion",
    "modelDeprecations",
    "analyticsMetadata",
    "isDeleted",
    "workflowIds",
];

/// How far the controller may act on one agent (`agents.management_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Converge: create, patch, recreate, delete.
    #[default]
    Enforce,
    /// Compute and report drift, write nothing to Vapi.
    Observe,
    /// Hands off: write nothing to Vapi; the status says paused.
    Paused,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Observe => "observe",
            Self::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "enforce" => Some(Self::Enforce),
            "observe" => Some(Self::Observe),
            "paused" => Some(Self::Paused),
            _ => None,
        }
    }
}

/// One agent as the writer saved it, plus what the controller recorded about it.
#[derive(Debug, Clone)]
pub struct DesiredAgent {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// As stored in `agents.spec` (any JSON: it is checked here).
    pub spec: Spec,
    pub generation: i64,
    pub mode: Mode,
    /// `deleted_at` is set: the agent's assistants are to be deleted.
    pub deleted: bool,
    pub recorded_assistant_id: Option<String>,
    /// The body the controller last applied to the assistant (the third side of the diff).
    pub last_applied: Option<LastApplied>,
    /// A create that was sent (or about to be) and whose outcome is not known yet.
    pub intent: Option<CreateIntent>,
    /// Vapi refused this generation's voice: use the fallback voice from the start.
    pub voice_fallback: bool,
    /// The tools the assistant calls, by name, in order (`agents.tool_names`).
    pub tool_names: Vec<String>,
    /// Those tools' Vapi ids, resolved by the pass before planning ([`tools::resolve`]): what
    /// the controller writes to `model.toolIds`.
    pub tool_ids: Vec<String>,
    /// The digest of the inputs the last in-sync decision was made of ([`memo`]).
    pub in_sync_digest: Option<memo::InSyncDigest>,
}

impl DesiredAgent {
    /// Whether the pass read its spec and applied body, not only their digests.
    pub(crate) fn texts_read(&self) -> bool {
        self.spec.is_read() && self.last_applied.as_ref().is_none_or(LastApplied::is_read)
    }
}

/// `agents.spec` as stored: its text, parsed only where the body is built ([`desired_body`]).
/// A pass holds every agent at once, and a tree costs several times its text.
///
/// A full pass does not read the text of an agent whose in-sync memo may stand for its decision
/// (only the SHA-256 Postgres takes of it, [`memo`]); the survey reads the text of every such
/// agent whose memo misses before anything is decided ([`misses`]).
#[derive(Debug, Clone)]
pub struct Spec {
    text: Option<String>,
    sha: std::sync::OnceLock<memo::InSyncDigest>,
}

/// What a spec or an applied body that was not read says when asked for its text: only a
/// defect of the survey can let that happen, and it must not pass for a bad spec of the user's.
const UNREAD: &str = "was not read by this pass (the controller's own defect: the next pass \
                      reads it again)";

impl Spec {
    pub fn from_text(text: String) -> Self {
        Self {
            text: Some(text),
            sha: std::sync::OnceLock::new(),
        }
    }

    /// As Postgres gave it: the text when the pass read it, and the SHA-256 of that text.
    pub(crate) fn from_store(text: Option<String>, sha: memo::InSyncDigest) -> Self {
        Self {
            text,
            sha: std::sync::OnceLock::from(sha),
        }
    }

    /// The spec, or why it cannot be read (naming the field; see [`validate::parse_spec`]).
    pub fn parse(&self) -> Result<Value, String> {
        match &self.text {
            Some(text) => validate::parse_spec(text),
            None => Err(format!("the spec {UNREAD}")),
        }
    }

    /// Whether the pass holds the text (not only its digest).
    pub(crate) fn is_read(&self) -> bool {
        self.text.is_some()
    }

    /// The SHA-256 of the text, as Postgres took it or taken here on first use.
    pub(crate) fn sha(&self) -> &memo::InSyncDigest {
        self.sha
            .get_or_init(|| memo::sha(self.text.as_deref().unwrap_or_default()))
    }
}

impl From<Value> for Spec {
    fn from(spec: Value) -> Self {
        Self::from_text(spec.to_string())
    }
}

/// The body the controller last applied, as stored: a JSON text, compared with the desired body
/// without a tree and parsed only when a difference needs it (an agent in sync never does). Like
/// [`Spec`], a full pass may hold only its digest.
#[derive(Debug, Clone)]
pub struct LastApplied {
    text: Option<String>,
    sha: std::sync::OnceLock<memo::InSyncDigest>,
    /// Parsed on first use; `None` when the text is not an object (that only loses the third side).
    parsed: std::sync::OnceLock<Option<Map<String, Value>>>,
}

impl LastApplied {
    pub fn from_text(text: String) -> Self {
        Self {
            text: Some(text),
            sha: std::sync::OnceLock::new(),
            parsed: std::sync::OnceLock::new(),
        }
    }

    /// As Postgres gave it: the text when the pass read it, and the SHA-256 of that text.
    pub(crate) fn from_store(text: Option<String>, sha: memo::InSyncDigest) -> Self {
        Self {
            text,
            sha: std::sync::OnceLock::from(sha),
            parsed: std::sync::OnceLock::new(),
        }
    }

    pub(crate) fn is_read(&self) -> bool {
        self.text.is_some()
    }

    pub(crate) fn sha(&self) -> &memo::InSyncDigest {
        self.sha
            .get_or_init(|| memo::sha(self.text.as_deref().unwrap_or_default()))
    }

    /// The body, parsed on first use; `None` when it cannot be read.
    pub fn body(&self) -> Option<&Map<String, Value>> {
        debug_assert!(self.is_read(), "the applied body {UNREAD}");
        self.parsed
            .get_or_init(|| serde_json::from_str(self.text.as_deref()?).ok())
            .as_ref()
    }

    /// How it compares with `body` (see [`json::text_matches`]); unequal when it cannot be read.
    pub fn matches(&self, body: &Map<String, Value>) -> json::TextMatch {
        let unreadable = json::TextMatch {
            equal: false,
            within: false,
        };
        match self.parsed.get() {
            Some(Some(parsed)) => json::TextMatch {
                equal: json::map_eq(parsed, body),
                within: parsed.keys().all(|k| body.contains_key(k)),
            },
            Some(None) => unreadable,
            None => self
                .text
                .as_deref()
                .and_then(|text| json::text_matches(text, body))
                .unwrap_or(unreadable),
        }
    }
}

impl From<Map<String, Value>> for LastApplied {
    fn from(body: Map<String, Value>) -> Self {
        Self {
            text: Some(Value::Object(body.clone()).to_string()),
            sha: std::sync::OnceLock::new(),
            parsed: std::sync::OnceLock::from(Some(body)),
        }
    }
}

/// The record, written before a POST, that a create is in flight.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateIntent {
    pub operation_id: Uuid,
    pub generation: i64,
    pub started_at: DateTime<Utc>,
}

/// One assistant as `GET /assistant` returned it.
///
/// A listed one is kept as its text (with its id, `createdAt` and marker read out): an assistant
/// in sync is compared on that text in one scan and never parsed; the tree is built on first
/// use of [`ActualAssistant::body`], that is only for one that differs.
#[derive(Debug, Clone)]
pub struct ActualAssistant {
    pub id: String,
    /// Vapi's ISO-8601 timestamp (fixed millisecond format, so string order is time order).
    pub created_at: String,
    marker: Option<Marker>,
    /// The text Vapi sent, when the assistant came from a listing.
    text: Option<Box<str>>,
    body: std::sync::OnceLock<Map<String, Value>>,
    /// Set when a full pass dropped the listed text as it arrived, because the text, hashed with
    /// this agent's inputs, gave the agent's in-sync memo ([`remember`]): the digest stands for
    /// the text. Should the decision need the text after all, the survey reads the assistant
    /// again ([`misses`]).
    remembered: Option<(Uuid, memo::InSyncDigest)>,
}

/// The ownership marker an assistant carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    pub agent_id: Uuid,
    pub org_id: Option<String>,
    pub operation_id: Option<Uuid>,
}

impl Marker {
    /// Reads our marker out of a `metadata` value.
    fn read(metadata: Option<&Value>) -> Option<Self> {
        let metadata = metadata?.as_object()?;
        if metadata.get("managedBy")?.as_str()? != MANAGED_BY {
            return None;
        }
        let text = |k: &str| metadata.get(k).and_then(Value::as_str);
        Some(Self {
            agent_id: text("agentId")?.parse().ok()?,
            org_id: text("orgId").map(str::to_owned),
            operation_id: text("operationId").and_then(|s| s.parse().ok()),
        })
    }

    /// [`Marker::read`] of a listed item's `metadata` text, without building its tree: only the
    /// four keys the marker has are kept (the last of a repeated key, as a parse keeps), each
    /// taken as a string or not at all. A listing reads one per assistant; a parsed map of
    /// its few keys and values was several allocations each.
    fn read_text(metadata: Option<&str>) -> Option<Self> {
        use serde_json::value::RawValue;
        #[derive(Default)]
        struct Fields<'a> {
            managed_by: Option<&'a RawValue>,
            agent_id: Option<&'a RawValue>,
            org_id: Option<&'a RawValue>,
            operation_id: Option<&'a RawValue>,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields<'de>, A::Error> {
                let mut out = Fields::default();
                while let Some(key) = map.next_key::<json::Key<'de>>()? {
                    let slot = match key.0.as_ref() {
                        "managedBy" => &mut out.managed_by,
                        "agentId" => &mut out.agent_id,
                        "orgId" => &mut out.org_id,
                        "operationId" => &mut out.operation_id,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value()?);
                }
                Ok(out)
            }
        }
        impl<'de> serde::Deserialize<'de> for Fields<'de> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_map(V)
            }
        }
        let fields: Fields<'_> = serde_json::from_str(metadata?).ok()?;
        // A string, unescaped (borrowed when it has no escape); anything else is no string.
        fn text(raw: Option<&RawValue>) -> Option<std::borrow::Cow<'_, str>> {
            let raw = raw?.get();
            match serde_json::from_str::<&str>(raw) {
                Ok(s) => Some(std::borrow::Cow::Borrowed(s)),
                Err(_) => serde_json::from_str::<String>(raw)
                    .ok()
                    .map(std::borrow::Cow::Owned),
            }
        }
        if text(fields.managed_by)?.as_ref() != MANAGED_BY {
            return None;
        }
        Some(Self {
            agent_id: text(fields.agent_id)?.parse().ok()?,
            org_id: text(fields.org_id).map(std::borrow::Cow::into_owned),
            operation_id: text(fields.operation_id).and_then(|s| s.parse().ok()),
        })
    }
}

impl ActualAssistant {
    /// Reads a parsed object; `None` when it lacks an `id` (then it cannot be acted on anyway).
    pub fn from_value(value: Value) -> Option<Self> {
        let Value::Object(body) = value else {
            return None;
        };
        let id = body.get("id")?.as_str()?.to_owned();
        let created_at = body
            .get("createdAt")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Some(Self::from_parts(id, created_at, body))
    }

    /// An assistant whose body is already a tree.
    pub fn from_parts(id: String, created_at: String, body: Map<String, Value>) -> Self {
        Self {
            id,
            created_at,
            marker: Marker::read(body.get("metadata")),
            text: None,
            body: std::sync::OnceLock::from(body),
            remembered: None,
        }
    }

    /// A listed item, kept as its text.
    pub fn from_item(item: crate::vapi::Item) -> Self {
        let marker = Marker::read_text(item.metadata_text());
        Self {
            id: item.id,
            created_at: item.created_at,
            marker,
            text: Some(item.text),
            body: std::sync::OnceLock::new(),
            remembered: None,
        }
    }

    /// The digest that stands for this listed assistant's text when decided for `agent`.
    pub(crate) fn remembered_for(&self, agent: Uuid) -> Option<&memo::InSyncDigest> {
        self.remembered
            .as_ref()
            .filter(|(of, _)| *of == agent)
            .map(|(_, d)| d)
    }

    /// Whether the listed text was dropped for a digest (see `remembered`).
    pub(crate) fn is_forgotten(&self) -> bool {
        self.text.is_none() && self.remembered.is_some()
    }

    /// The whole body, parsed on first use. A listed text parsed when it was listed, so it
    /// parses again; an empty body stands in should it ever not.
    pub fn body(&self) -> &Map<String, Value> {
        self.body.get_or_init(|| {
            self.text
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default()
        })
    }

    /// Whether every key of `desired` has the same value here (json_eq; keys only here are not
    /// looked at), decided on the listed text when the tree has not been built: `Some(true)`
    /// only when certainly so. `metadata` is compared with our marker's operation id added, as
    /// [`compare`] does.
    /// The text Vapi listed, when the assistant came from a listing.
    pub(crate) fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    fn covers(&self, desired: &Map<String, Value>) -> Option<bool> {
        let text = self.text.as_deref().filter(|_| self.body.get().is_none())?;
        let metadata = match (desired.get("metadata"), self.operation_id()) {
            (Some(Value::Object(m)), Some(op)) => {
                let mut with_op = m.clone();
                with_op.insert("operationId".to_owned(), Value::String(op.to_string()));
                Some(Value::Object(with_op))
            }
            _ => None,
        };
        let overrides: &[(&str, &Value)] = match &metadata {
            Some(m) => &[("metadata", m)],
            None => &[],
        };
        json::text_covers(text, desired, overrides)
    }

    fn operation_id(&self) -> Option<Uuid> {
        self.marker.as_ref().and_then(|m| m.operation_id)
    }

    /// This assistant's ownership marker, if it carries ours.
    pub fn marker(&self) -> Option<&Marker> {
        self.marker.as_ref()
    }

    /// The agent this assistant's ownership marker names, if it carries our marker.
    pub fn managed_agent(&self) -> Option<Uuid> {
        self.marker.as_ref().map(|m| m.agent_id)
    }
}

/// The assistant an agent's status says it has, as the controller last left it: its recorded id
/// with the body last applied to it. A focused pass plans against this instead of a listing, so
/// a small save costs one PATCH and no LIST; what Vapi changed behind the controller's back is
/// the full pass's to find, as it would be without the save.
///
/// `None` when the status cannot stand in for the listing: no assistant recorded, no readable
/// last-applied body, a create in flight, or the agent deleted (deleting must see every
/// assistant of it).
pub fn assume_applied(agent: &DesiredAgent) -> Option<ActualAssistant> {
    if agent.deleted || agent.intent.is_some() {
        return None;
    }
    let id = agent.recorded_assistant_id.clone()?;
    let body = agent.last_applied.as_ref()?.body()?.clone();
    Some(ActualAssistant::from_parts(id, String::new(), body))
}

/// Knobs of the plan.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    /// How long a create with an unknown outcome is waited for before a new create is allowed.
    pub create_grace: TimeDelta,
    /// How long an orphan must have been seen before it is deleted.
    pub orphan_grace: TimeDelta,
    pub orphan_policy: OrphanPolicy,
    /// How voices Vapi would refuse are rewritten before any write.
    pub voices: VoiceRules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrphanPolicy {
    Delete,
    Keep,
}

/// What to do for one agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The assistant already matches; `adopted` when it was found by marker, not by record.
    InSync {
        assistant_id: String,
        adopted: bool,
    },
    Create {
        body: Map<String, Value>,
    },
    /// The recorded assistant is gone from Vapi.
    Recreate {
        previous_id: String,
        body: Map<String, Value>,
    },
    /// A create's outcome is unknown and it may still land: wait, do not create again.
    AwaitCreate {
        operation_id: Uuid,
        until: DateTime<Utc>,
    },
    Patch {
        assistant_id: String,
        /// Whole top-level keys, ready to send.
        patch: Map<String, Value>,
        /// Leaf paths that differ, each classified, for status and logs.
        drift: Vec<Drift>,
        adopted: bool,
    },
    /// The agent is deleted and these assistants of it still exist.
    Delete {
        assistant_ids: Vec<String>,
    },
    /// The agent is deleted and nothing of it is left in Vapi.
    Deleted,
    /// The spec cannot be sent; every problem, each naming the field.
    Invalid {
        problems: Vec<String>,
    },
}

impl Action {
    /// Whether executing this action writes to Vapi.
    pub fn writes(&self) -> bool {
        matches!(
            self,
            Self::Create { .. } | Self::Recreate { .. } | Self::Patch { .. } | Self::Delete { .. }
        )
    }

    /// A short verb for logs, reports and the journal.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::InSync { adopted: true, .. } => "adopt",
            Self::InSync { .. } => "none",
            Self::Create { .. } => "create",
            Self::Recreate { .. } => "recreate",
            Self::AwaitCreate { .. } => "await-create",
            Self::Patch { .. } => "patch",
            Self::Delete { .. } => "delete",
            Self::Deleted => "none",
            Self::Invalid { .. } => "none",
        }
    }
}

/// Which side moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    /// The spec differs from what was last applied (or nothing was applied yet).
    Desired,
    /// The assistant was changed in Vapi; the spec did not change.
    Actual,
}

/// One differing field path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    pub path: String,
    pub kind: DriftKind,
}

/// `model.temperature (spec changed), firstMessage (changed in Vapi)`.
pub fn describe_drift(drift: &[Drift]) -> String {
    drift
        .iter()
        .map(|d| match d.kind {
            DriftKind::Desired => format!("{} (spec changed)", d.path),
            DriftKind::Actual => format!("{} (changed in Vapi)", d.path),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The paths alone, for messages and the status's `drift` column.
pub fn drift_paths(drift: &[Drift]) -> Vec<String> {
    drift.iter().map(|d| d.path.clone()).collect()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub agent_id: Uuid,
    pub org_id: Uuid,
    pub generation: i64,
    pub mode: Mode,
    pub action: Action,
    /// Other marked assistants of this agent, to be deleted (the kept one is in `action`).
    pub duplicates: Vec<String>,
    /// The outstanding create intent, when the action settles it (found, or to be replaced).
    pub intent: Option<CreateIntent>,
    /// The listed assistant that carries the intent's operation id, if that create landed
    /// (kept or a duplicate): what settles its journal row as `ok` rather than `failed`.
    pub intent_landed: Option<String>,
    /// The full body the assistant should have, when the spec can be sent: what a successful
    /// action has applied (the third side of the next comparison). `None` also when the agent is
    /// in sync and its `last_applied` already equals it: there is nothing new to record.
    pub desired: Option<Map<String, Value>>,
    /// Voice rewrites made to get `desired`.
    pub normalizations: Vec<Normalization>,
    /// In sync with nothing new to record: the digest of what that was decided from, for the
    /// status to keep ([`memo`]).
    pub in_sync_digest: Option<memo::InSyncDigest>,
}

/// A marked assistant whose agent no longer exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Stray {
    pub assistant_id: String,
    pub agent_id: Uuid,
    /// The organization its marker names, as written there.
    pub org_id: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub action: StrayAction,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StrayAction {
    Delete,
    /// Seen too recently to delete; deleted from this time on.
    Wait {
        until: DateTime<Utc>,
    },
    /// Policy `keep`: reported only.
    Keep,
}

/// Everything a pass would do against one listing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub decisions: Vec<Decision>,
    pub strays: Vec<Stray>,
    /// Listed assistants carrying our marker.
    pub managed: usize,
    /// Listed assistants without it: never touched.
    pub unmanaged: usize,
    /// Marked assistants of organizations in shards this replica does not own: left to their
    /// owner.
    pub other_shards: usize,
}

/// What the plan needs besides agents and assistants.
pub struct PlanInput<'a> {
    pub agents: &'a [DesiredAgent],
    pub assistants: &'a [ActualAssistant],
    /// Every agent that exists, deleted or not, under any credential: a marked assistant of
    /// any of them is not an orphan.
    pub known_agents: &'a HashSet<Uuid>,
    /// When each currently known orphan was first seen.
    pub orphans_seen: &'a HashMap<String, DateTime<Utc>>,
    /// The shards this replica owns: marked assistants of other shards' organizations are
    /// another replica's, never orphans here.
    pub shards: &'a Shards,
    pub now: DateTime<Utc>,
    pub settings: &'a PlanSettings,
}

/// Decides for every agent, and every orphan, against one listing of the assistants a
/// credential can see.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let index = Index::new(input.assistants, &input.settings.voices);
    plan_found(input, &index, &index.found(input.agents))
}

/// [`plan`] with the index of `input.assistants` built and each agent's lookups in it made
/// ([`Index::found`], in the order of `input.agents`): the survey makes them once for
/// [`misses`] and the plan both.
pub fn plan_found(input: &PlanInput<'_>, index: &Index<'_>, found: &[Found<'_, '_>]) -> Plan {
    debug_assert_eq!(found.len(), input.agents.len());
    let decisions = input
        .agents
        .iter()
        .zip(found)
        .map(|(agent, found)| decide(agent, index, *found, input.now, input.settings))
        .collect();
    let known = input.known_agents;
    let mut other_shards = 0;
    let mut strays: Vec<Stray> = Vec::new();
    for (agent_id, a) in index
        .by_agent
        .iter()
        .filter(|(agent, _)| !known.contains(agent))
        .flat_map(|(agent, list)| list.iter().map(move |a| (*agent, *a)))
    {
        let org = a.marker().and_then(|m| m.org_id.clone());
        if !input.shards.owns_marker(org.as_deref()) {
            other_shards += 1;
            continue;
        }
        let first_seen = input
            .orphans_seen
            .get(&a.id)
            .copied()
            .unwrap_or(input.now)
            .min(input.now);
        let until = first_seen + input.settings.orphan_grace;
        let action = match input.settings.orphan_policy {
            OrphanPolicy::Keep => StrayAction::Keep,
            OrphanPolicy::Delete if until <= input.now => StrayAction::Delete,
            OrphanPolicy::Delete => StrayAction::Wait { until },
        };
        strays.push(Stray {
            assistant_id: a.id.clone(),
            agent_id,
            org_id: org,
            first_seen,
            action,
        });
    }
    strays.sort_by(|x, y| x.assistant_id.cmp(&y.assistant_id));
    let marked: usize = index.by_agent.values().map(Vec::len).sum();
    let managed = marked - other_shards;
    Plan {
        decisions,
        strays,
        managed,
        other_shards,
        unmanaged: input.assistants.len() - marked,
    }
}

/// Lookup tables over one listing.
pub struct Index<'a> {
    /// The voice rules' share of every in-sync digest.
    rules: memo::InSyncDigest,
    by_id: FastMap<&'a str, &'a ActualAssistant>,
    /// Marked assistants per agent, oldest first.
    by_agent: FastMap<Uuid, Vec<&'a ActualAssistant>>,
}

/// The index's tables: as many entries as assistants, probed once an agent. foldhash is seeded
/// per process like the standard hasher (the ids are Vapi's, not chosen by a tenant) and several
/// times faster on 16- and 36-byte keys.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One agent's lookups in an [`Index`]: its marked assistants, oldest first, and its recorded
/// one (which counts unless its marker names another agent).
pub type Found<'s, 'a> = (&'s [&'a ActualAssistant], Option<&'a ActualAssistant>);

impl<'a> Index<'a> {
    /// Every agent's lookups, in order. Made once a pass: at 100,000 agents a lookup is two
    /// hash probes into tables far larger than the cache, and both the misses and the plan
    /// need them.
    pub fn found(&self, agents: &[DesiredAgent]) -> Vec<Found<'_, 'a>> {
        agents.iter().map(|agent| self.of(agent)).collect()
    }

    fn of(&self, agent: &DesiredAgent) -> Found<'_, 'a> {
        let marked = self
            .by_agent
            .get(&agent.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let recorded = agent
            .recorded_assistant_id
            .as_deref()
            .and_then(|id| self.by_id.get(id).copied())
            .filter(|a| a.managed_agent().is_none_or(|owner| owner == agent.id));
        (marked, recorded)
    }

    pub fn new(assistants: &'a [ActualAssistant], voices: &VoiceRules) -> Self {
        let mut by_agent: FastMap<Uuid, Vec<&ActualAssistant>> = FastMap::default();
        let mut by_id = FastMap::with_capacity_and_hasher(assistants.len(), Default::default());
        for a in assistants {
            // A listing that repeats an id (pages overlapping) must not count it twice.
            if by_id.insert(a.id.as_str(), a).is_some() {
                continue;
            }
            if let Some(agent) = a.managed_agent() {
                by_agent.entry(agent).or_default().push(a);
            }
        }
        for list in by_agent.values_mut() {
            list.sort_by(|x, y| x.created_at.cmp(&y.created_at).then(x.id.cmp(&y.id)));
        }
        Self {
            rules: memo::rules_digest(voices),
            by_id,
            by_agent,
        }
    }
}

/// The assistant an agent's memo would be taken against, and the digest of the inputs now:
/// only the recorded assistant, listed with its text, alone among the agent's marked ones, and
/// no create in flight.
fn remembered<'i>(
    agent: &DesiredAgent,
    index: &Index<'i>,
    marked: &[&'i ActualAssistant],
    recorded: Option<&'i ActualAssistant>,
) -> Option<(&'i ActualAssistant, memo::InSyncDigest)> {
    recorded
        .filter(|r| agent.intent.is_none() && marked.iter().all(|a| a.id == r.id))
        .and_then(|r| memo::digest(agent, r, &index.rules).map(|d| (r, d)))
}

/// As a listed assistant arrives: when it is `agent`'s recorded one and its text, hashed with
/// the agent's inputs, gives the agent's memo, the text is dropped and the digest kept in its
/// place. Whether the memo then holds is still for [`decide`] to say (a duplicate may come on a
/// later page); [`misses`] names what must be read again when it does not.
pub fn remember(agent: &DesiredAgent, assistant: &mut ActualAssistant, rules: &memo::InSyncDigest) {
    if agent.deleted
        || agent.intent.is_some()
        || agent.recorded_assistant_id.as_deref() != Some(assistant.id.as_str())
        || assistant
            .managed_agent()
            .is_some_and(|owner| owner != agent.id)
    {
        return;
    }
    let Some(digest) = memo::digest(agent, assistant, rules) else {
        return;
    };
    if agent.in_sync_digest == Some(digest) {
        assistant.text = None;
        assistant.remembered = Some((agent.id, digest));
    }
}

/// What the survey must read before [`plan_found`] decides, because a memo it counted on does
/// not stand for the decision after all.
#[derive(Debug, Default, PartialEq)]
pub struct Misses {
    /// Agents whose spec or applied text the pass left out (it read only their digests).
    pub texts: Vec<Uuid>,
    /// Listed assistants whose text was dropped for a digest ([`remember`]).
    pub assistants: Vec<String>,
}

impl Misses {
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty() && self.assistants.is_empty()
    }
}

/// The agents whose memo does not stand for their decision against this listing, and what of
/// theirs the pass holds only as digests (`found`: each agent's lookups, [`Index::found`]).
pub fn misses(agents: &[DesiredAgent], index: &Index<'_>, found: &[Found<'_, '_>]) -> Misses {
    debug_assert_eq!(found.len(), agents.len());
    let mut out = Misses::default();
    for (agent, &(marked, recorded)) in agents.iter().zip(found).filter(|(a, _)| !a.deleted) {
        let holds = remembered(agent, index, marked, recorded)
            .is_some_and(|(_, digest)| agent.in_sync_digest == Some(digest));
        if holds {
            continue;
        }
        if !agent.texts_read() {
            out.texts.push(agent.id);
        }
        for a in recorded.into_iter().chain(marked.iter().copied()) {
            if a.is_forgotten() && !out.assistants.contains(&a.id) {
                out.assistants.push(a.id.clone());
            }
        }
    }
    out
}

fn decide(
    agent: &DesiredAgent,
    index: &Index<'_>,
    (marked, recorded): Found<'_, '_>,
    now: DateTime<Utc>,
    settings: &PlanSettings,
) -> Decision {
    let pending = agent
        .intent
        .as_ref()
        .filter(|i| i.started_at + settings.create_grace > now);
    let mut decision = Decision {
        agent_id: agent.id,
        org_id: agent.org_id,
        generation: agent.generation,
        mode: agent.mode,
        action: Action::Deleted,
        duplicates: Vec::new(),
        intent: agent.intent.clone(),
        intent_landed: None,
        desired: None,
        normalizations: Vec::new(),
        in_sync_digest: None,
    };

    if agent.deleted {
        let mut ids: Vec<String> = recorded.iter().map(|a| a.id.clone()).collect();
        for a in marked {
            if !ids.contains(&a.id) {
                ids.push(a.id.clone());
            }
        }
        decision.action = match (ids.is_empty(), pending) {
            (false, _) => Action::Delete { assistant_ids: ids },
            // A create that may still land would outlive the deletion: wait for it first.
            (true, Some(i)) => Action::AwaitCreate {
                operation_id: i.operation_id,
                until: i.started_at + settings.create_grace,
            },
            (true, None) => Action::Deleted,
        };
        return decision;
    }

    // The same inputs as when it was last found in sync with nothing to record: the same answer.
    let memo = remembered(agent, index, marked, recorded);
    if let Some((assistant, digest)) = memo {
        if agent.in_sync_digest == Some(digest) {
            decision.action = Action::InSync {
                assistant_id: assistant.id.clone(),
                adopted: false,
            };
            decision.in_sync_digest = Some(digest);
            return decision;
        }
    }

    // The recorded body is usually this very one: then it needs neither a tree nor a key scan,
    // nor validating again (Vapi accepted it).
    let (body, applied_now) = match built(agent, &settings.voices) {
        Ok((desired, applied_now)) => {
            decision.normalizations = desired.normalizations;
            (desired.body, applied_now)
        }
        Err(problems) => {
            decision.action = Action::Invalid { problems };
            return decision;
        }
    };
    let by_operation = agent.intent.as_ref().and_then(|i| {
        marked
            .iter()
            .copied()
            .find(|a| a.operation_id() == Some(i.operation_id))
    });
    decision.intent_landed = by_operation.map(|a| a.id.clone());
    let found = recorded
        .map(|a| (a, false))
        .or_else(|| by_operation.map(|a| (a, true)))
        .or_else(|| marked.first().map(|a| (*a, true)));
    decision.duplicates = marked
        .iter()
        .filter(|a| found.is_none_or(|(kept, _)| kept.id != a.id))
        .map(|a| a.id.clone())
        .collect();
    decision.action = match (found, &agent.recorded_assistant_id, pending) {
        (Some((assistant, adopted)), _, _) => {
            // What was applied is about the recorded assistant only; an adopted one starts over.
            let applied = agent.last_applied.as_ref().filter(|_| !adopted);
            compare(&body, assistant, adopted, applied, applied_now)
        }
        (None, _, Some(i)) => Action::AwaitCreate {
            operation_id: i.operation_id,
            until: i.started_at + settings.create_grace,
        },
        (None, Some(previous), None) => Action::Recreate {
            previous_id: previous.clone(),
            body: body.clone(),
        },
        (None, None, None) => Action::Create { body: body.clone() },
    };
    // Only creates copy the body: an agent in sync (the common case) costs no deep clone. An
    // agent in sync whose recorded body already is this one keeps none: nothing new to record.
    let recorded = matches!(decision.action, Action::InSync { .. }) && applied_now.equal;
    decision.desired = (!recorded).then_some(body);
    // Remembered only where a hit can stand for the whole decision: in sync with the recorded
    // assistant, nothing to record, no duplicate, no voice rewrite to report.
    if recorded
        && decision.normalizations.is_empty()
        && matches!(decision.action, Action::InSync { adopted: false, .. })
    {
        decision.in_sync_digest = memo.map(|(_, d)| d);
    }
    decision
}

/// Three-way comparison: desired (the spec now), actual (the assistant) and last applied (what
/// the controller last made the assistant). Managed keys are those desired now or applied last;
/// a key applied last but no longer desired is cleared with `null` (Vapi stores null as
/// "intentionally cleared"). Keys nobody manages are never looked at. `applied_now` says how the
/// last applied body compares with `body`; the last applied body is parsed only when it matters.
pub(crate) fn compare(
    body: &Map<String, Value>,
    assistant: &ActualAssistant,
    adopted: bool,
    last_applied: Option<&LastApplied>,
    applied_now: json::TextMatch,
) -> Action {
    // Every key of a last applied body within `body` is still desired: nothing was removed.
    let removed_from = last_applied.filter(|_| !(applied_now.equal && applied_now.within));
    if removed_from.is_none() && assistant.covers(body) == Some(true) {
        // The common case, decided on the listed text: no tree, no paths.
        return Action::InSync {
            assistant_id: assistant.id.clone(),
            adopted,
        };
    }
    let actual = assistant.body();
    // The operation id is part of the marker but not of the desired state: keep what is there.
    let metadata = match (
        body.get("metadata"),
        actual.get("metadata").and_then(|m| m.get("operationId")),
    ) {
        (Some(Value::Object(desired)), Some(op)) => {
            let mut with_op = desired.clone();
            with_op.insert("operationId".to_owned(), op.clone());
            Some(Value::Object(with_op))
        }
        _ => None,
    };
    let mut drift = Vec::new();
    let mut patch = Map::new();
    for (key, desired) in body {
        let desired = match (&metadata, key.as_str()) {
            (Some(m), "metadata") => m,
            _ => desired,
        };
        let mut paths = Vec::new();
        json::diff_paths(desired, actual.get(key), key, &mut paths);
        if paths.is_empty() {
            continue;
        }
        // Per top-level key: the spec moved away from what was applied, or Vapi did.
        let kind = match last_applied
            .and_then(LastApplied::body)
            .map(|l| l.get(key).unwrap_or(&Value::Null))
        {
            Some(applied) if json::json_eq(applied, desired) => DriftKind::Actual,
            _ => DriftKind::Desired,
        };
        drift.extend(paths.into_iter().map(|path| Drift { path, kind }));
        patch.insert(key.clone(), desired.clone());
    }
    for key in removed_from
        .and_then(LastApplied::body)
        .iter()
        .flat_map(|l| l.keys())
    {
        let owned = key == "name" || key == "metadata";
        let cleared = actual.get(key).is_none_or(Value::is_null);
        if !owned && !body.contains_key(key) && !cleared {
            // Removed from the spec: clear it rather than leave the old value behind.
            drift.push(Drift {
                path: key.clone(),
                kind: DriftKind::Desired,
            });
            patch.insert(key.clone(), Value::Null);
        }
    }
    let assistant_id = assistant.id.clone();
    if patch.is_empty() {
        Action::InSync {
            assistant_id,
            adopted,
        }
    } else {
        Action::Patch {
            assistant_id,
            patch,
            drift,
            adopted,
        }
    }
}

/// What Vapi's answer to a write still lacks of the desired body: the differing top-level keys
/// whole (ready to PATCH) and their leaf paths, classified as changed in Vapi. `None` when the
/// answer holds every desired key. The answer is the whole assistant after the write, so this
/// is an observation: a status says `synced` only when it is `None`.
pub fn residual(
    desired: &Map<String, Value>,
    answer: Map<String, Value>,
) -> Option<(Map<String, Value>, Vec<Drift>)> {
    let assistant = ActualAssistant::from_parts(String::new(), String::new(), answer);
    let unmatched = json::TextMatch {
        equal: false,
        within: false,
    };
    match compare(desired, &assistant, false, None, unmatched) {
        Action::Patch { patch, drift, .. } => {
            let drift = drift
                .into_iter()
                .map(|d| Drift {
                    kind: DriftKind::Actual,
                    ..d
                })
                .collect();
            Some((patch, drift))
        }
        _ => None,
    }
}

/// The body of a create: the desired body with the create's operation id in the marker.
pub fn with_operation(mut body: Map<String, Value>, operation_id: Uuid) -> Map<String, Value> {
    if let Some(Value::Object(metadata)) = body.get_mut("metadata") {
        metadata.insert(
            "operationId".to_owned(),
            Value::String(operation_id.to_string()),
        );
    }
    body
}

/// The full assistant body the controller wants for this agent: the spec, the agent's name and
/// the ownership marker. Errors list every structural problem, each naming the field.
pub fn desired_body(agent: &DesiredAgent, voices: &VoiceRules) -> Result<Desired, Vec<String>> {
    build(agent, voices, false).map(|(desired, _)| desired)
}

/// [`desired_body`] for planning, and how the body compares with the agent's last applied one.
/// A body equal to it is not validated again: Vapi accepted that very body (validation was a
/// quarter of a steady pass's CPU), and the answer is the same but for rules tightened since,
/// which cannot make a body Vapi holds unsendable.
fn built(
    agent: &DesiredAgent,
    voices: &VoiceRules,
) -> Result<(Desired, json::TextMatch), Vec<String>> {
    build(agent, voices, true)
}

fn build(
    agent: &DesiredAgent,
    voices: &VoiceRules,
    trust_applied: bool,
) -> Result<(Desired, json::TextMatch), Vec<String>> {
    let spec = match agent.spec.parse() {
        Ok(Value::Object(spec)) => spec,
        Ok(other) => {
            return Err(vec![format!(
                "spec must be a JSON object, found {}",
                json_type(&other)
            )]);
        }
        Err(e) => return Err(vec![format!("spec cannot be read: {e}")]),
    };
    let mut problems = Vec::new();
    if spec.contains_key("name") {
        problems.push("spec.name is owned by the controller: set agents.name instead".to_owned());
    }
    if spec.contains_key("metadata") {
        problems.push(
            "spec.metadata is owned by the controller (it carries the ownership marker): remove it"
                .to_owned(),
        );
    }
    if spec
        .get("model")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key("toolIds"))
    {
        problems.push(
            "spec.model.toolIds is owned by the controller: reference tools by name in agents.tool_names instead"
                .to_owned(),
        );
    }
    if !agent.tool_names.is_empty() && !spec.get("model").is_some_and(Value::is_object) {
        problems.push(format!(
            "agents.tool_names names {} tool(s) but spec.model is missing: tools are linked through the model",
            agent.tool_names.len()
        ));
    }
    for field in SERVER_FIELDS.iter().filter(|f| spec.contains_key(**f)) {
        problems.push(format!(
            "spec.{field} is assigned by Vapi and cannot be set: remove it"
        ));
    }
    let mut body = spec;
    let mut normalizations = Vec::new();
    if let Some(voice) = body.get("voice") {
        let normalized = voices.normalize(voice);
        let mut voice = normalized.voice;
        normalizations = normalized.applied;
        if agent.voice_fallback {
            // Vapi refused this generation's voice before: go straight to the fallback.
            let fallback = voices.fallback_voice();
            normalizations.push(Normalization {
                from: voice_label(&voice),
                to: voice_label(&fallback),
                rule: FALLBACK_RULE,
                dropped: Vec::new(),
            });
            voice = fallback;
        }
        body.insert("voice".to_owned(), voice);
    }
    // `validate_spec` skips `name`, `metadata` and the server fields itself (reported above).
    let unresolved = agent.tool_ids.len() != agent.tool_names.len();
    if !problems.is_empty() || unresolved {
        problems.extend(validate::validate_spec(&body, &agent.name));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    if unresolved {
        // The pass resolves references before planning; a body without them would unlink tools.
        return Err(vec![format!(
            "agents.tool_names ({}) are not resolved to Vapi tools yet: nothing is sent",
            agent.tool_names.join(", ")
        )]);
    }
    let linked = !agent.tool_ids.is_empty();
    if linked {
        if let Some(Value::Object(model)) = body.get_mut("model") {
            model.insert(
                "toolIds".to_owned(),
                Value::Array(agent.tool_ids.iter().cloned().map(Value::String).collect()),
            );
        }
    }
    body.insert("name".to_owned(), Value::String(agent.name.clone()));
    body.insert(
        "metadata".to_owned(),
        json!({
            "managedBy": MANAGED_BY,
            "agentId": agent.id.to_string(),
            "orgId": agent.org_id.to_string(),
        }),
    );
    let unmatched = json::TextMatch {
        equal: false,
        within: false,
    };
    let applied_now = agent
        .last_applied
        .as_ref()
        .map_or(unmatched, |l| l.matches(&body));
    if !(trust_applied && applied_now.equal) {
        // Validated as the spec it was made from: without what the controller added just now.
        let owned = [body.remove("name"), body.remove("metadata")];
        let ids = match body.get_mut("model") {
            Some(Value::Object(model)) if linked => model.remove("toolIds"),
            _ => None,
        };
        let problems = validate::validate_spec(&body, &agent.name);
        if !problems.is_empty() {
            return Err(problems);
        }
        if let (Some(ids), Some(Value::Object(model))) = (ids, body.get_mut("model")) {
            model.insert("toolIds".to_owned(), ids);
        }
        for (key, value) in ["name", "metadata"].into_iter().zip(owned) {
            if let Some(value) = value {
                body.insert(key.to_owned(), value);
            }
        }
    }
    Ok((
        Desired {
            body,
            normalizations,
        },
        applied_now,
    ))
}

/// The rule name of a fallback made because Vapi refused a voice.
pub const FALLBACK_RULE: &str = "fallback";

/// `provider/voiceId` of a voice object.
pub fn voice_label(voice: &Value) -> String {
    let text = |k: &str| voice.get(k).and_then(Value::as_str).unwrap_or("?");
    format!("{}/{}", text("provider"), text("voiceId"))
}

/// `vapi/Kylie → vapi/Savannah (retired-voice)`.
pub fn describe_normalization(n: &Normalization) -> String {
    format!("{} → {} ({})", n.from, n.to, n.rule)
}

/// What the controller sends for an agent, and how it rewrote the voice to get there.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub body: Map<String, Value>,
    pub normalizations: Vec<Normalization>,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod validate_tests;
#[cfg(test)]
mod voice_tests;
