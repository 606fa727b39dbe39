//! Outcome (PURE): a decision and what applying it did ([`Applied`]) → the status a dashboard
//! reads, its message, and what the record stage writes ([`Done`]).
//!
//! Reasons are a closed set of short machine words (they become metric labels later); messages
//! are sentences that say what happened and what a human can do about it. No I/O here: every
//! sentence below is checked by plain `#[test]`s against golden text.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::apply::{Applied, Effect, Fallback, Verified};
use super::lane::CallError;
use crate::reconcile::{
    Action, Decision, Drift, FALLBACK_RULE, Mode, Normalization, describe_drift,
    describe_normalization, drift_paths,
};
use crate::store::{CreateSettled, JournalEntry, ResourceStatus, StatusUpdate, SyncState};
use crate::vapi::VapiError;

/// Why an agent is in its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    InSync,
    Created,
    Patched,
    Adopted,
    AssistantRecreated,
    AssistantGone,
    InvalidSpec,
    /// A create was sent and its outcome is unknown: waiting for it to show up before retrying.
    CreateOutcomeUnknown,
    Deleted,
    AssistantPinned,
    /// The agent is in observe-only mode and its assistant differs.
    ObserveOnly,
    /// The controller runs with `--dry-run` and the assistant differs.
    DryRun,
    Paused,
    /// Postgres failed where the controller had to record something before calling Vapi.
    StoreUnavailable,
    /// Vapi answered 401 or 403 for the key in use: it is quarantined until it changes.
    CredentialsRejected,
    /// The org's stored key cannot be decrypted; nothing is sent (never the platform key instead).
    CredentialsUnavailable,
    /// The key's circuit breaker is open: the agent is requeued for when it half-opens.
    CircuitOpen,
    VapiRejected,
    VapiConflict,
    VapiRateLimited,
    VapiUnavailable,
    VapiTimeout,
    VapiUnreachable,
    VapiBadResponse,
    VapiUnexpectedStatus,
    /// Vapi's answer to the controller's own write still differs from the spec (changed in Vapi
    /// meanwhile, or a repair failed): not synced, a full pass follows.
    AnswerDiffers,
    /// An agent's tool is not synced yet: nothing is sent until every tool it names has an id.
    WaitingForTool,
    /// A deleted tool still called by live agents: kept in Vapi.
    StillReferenced,
    /// A tool deleted in Vapi was created again; its assistants take the new id.
    ToolRecreated,
    /// A phone number was pointed at its agent's assistant.
    Bound,
    /// A phone number was unbound (its agent is deleted, or it is bound to nobody).
    Unbound,
    /// A phone number waits for its agent to have an assistant.
    WaitingForAssistant,
    NumberNotFound,
    NumberAmbiguous,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InSync => "InSync",
            Self::Created => "Created",
            Self::Patched => "Patched",
            Self::Adopted => "Adopted",
            Self::AssistantRecreated => "AssistantRecreated",
            Self::AssistantGone => "AssistantGone",
            Self::InvalidSpec => "InvalidSpec",
            Self::CreateOutcomeUnknown => "CreateOutcomeUnknown",
            Self::Deleted => "Deleted",
            Self::AssistantPinned => "AssistantPinned",
            Self::ObserveOnly => "ObserveOnly",
            Self::DryRun => "DryRun",
            Self::Paused => "Paused",
            Self::StoreUnavailable => "StoreUnavailable",
            Self::CredentialsRejected => "CredentialsRejected",
            Self::CredentialsUnavailable => "CredentialsUnavailable",
            Self::CircuitOpen => "CircuitOpen",
            Self::VapiRejected => "VapiRejected",
            Self::VapiConflict => "VapiConflict",
            Self::VapiRateLimited => "VapiRateLimited",
            Self::VapiUnavailable => "VapiUnavailable",
            Self::VapiTimeout => "VapiTimeout",
            Self::VapiUnreachable => "VapiUnreachable",
            Self::VapiBadResponse => "VapiBadResponse",
            Self::VapiUnexpectedStatus => "VapiUnexpectedStatus",
            Self::AnswerDiffers => "AnswerDiffers",
            Self::WaitingForTool => "WaitingForTool",
            Self::StillReferenced => "StillReferenced",
            Self::ToolRecreated => "ToolRecreated",
            Self::Bound => "Bound",
            Self::Unbound => "Unbound",
            Self::WaitingForAssistant => "WaitingForAssistant",
            Self::NumberNotFound => "NumberNotFound",
            Self::NumberAmbiguous => "NumberAmbiguous",
        }
    }

    pub fn of(err: &VapiError) -> Self {
        match err {
            // Both wait for the spec to change: sending the same body again cannot succeed.
            VapiError::BadRequest { .. } | VapiError::PayloadTooLarge { .. } => Self::VapiRejected,
            VapiError::Unauthorized { .. } | VapiError::Forbidden { .. } => {
                Self::CredentialsRejected
            }
            // A 404 on a write is handled by recreating; one that still surfaces is unexpected.
            VapiError::NotFound | VapiError::UnexpectedStatus { .. } => Self::VapiUnexpectedStatus,
            VapiError::Conflict { error, .. } if error == "assistant_pinned" => {
                Self::AssistantPinned
            }
            VapiError::Conflict { .. } => Self::VapiConflict,
            VapiError::RateLimited { .. } => Self::VapiRateLimited,
            VapiError::Server { .. } => Self::VapiUnavailable,
            VapiError::Timeout(_) => Self::VapiTimeout,
            VapiError::Transport(_) => Self::VapiUnreachable,
            VapiError::Decode(_) => Self::VapiBadResponse,
        }
    }
}

impl Reason {
    pub fn of_call(err: &CallError) -> Self {
        match err {
            CallError::Vapi(e) => Self::of(e),
            CallError::BreakerOpen { .. } => Self::CircuitOpen,
            CallError::Quarantined { .. } => Self::CredentialsRejected,
            // Stopped calls are skipped before they reach a status; this is only a fallback.
            CallError::Stopped => Self::VapiUnreachable,
        }
    }

    /// The state a failed call leaves: requeued (pending) when the breaker refused it, else failed.
    pub fn call_state(self) -> SyncState {
        if self == Self::CircuitOpen {
            SyncState::Pending
        } else {
            SyncState::Failed
        }
    }

    /// A failure that waits for the agent's spec to change rather than being retried.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::VapiRejected | Self::InvalidSpec)
    }

    /// A failure of the credential or of Vapi as a whole, not of this agent: the lane handles
    /// it (quarantine, breaker), so it does not grow the agent's own back-off.
    pub fn is_lane_wide(self) -> bool {
        matches!(
            self,
            Self::CredentialsRejected | Self::CredentialsUnavailable | Self::CircuitOpen
        )
    }
}

/// The result of reconciling one agent in one pass.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub agent_id: Uuid,
    pub generation: i64,
    pub state: SyncState,
    pub reason: Reason,
    pub message: String,
    pub assistant_id: Option<String>,
    pub drift: Vec<String>,
    /// The same paths, each classified (spec changed, or changed in Vapi).
    pub drift_detail: Vec<Drift>,
    /// The body now applied to the assistant, when this outcome confirms one.
    pub applied: Option<Map<String, Value>>,
    /// Voice rewrites, `original → applied (rule)`.
    pub normalizations: Vec<String>,
    pub attempted: bool,
    /// Fingerprint of the key the agent's calls used (or would use).
    pub key_fingerprint: Option<String>,
    /// In sync with nothing new to record: the memo digest to keep ([`crate::reconcile::memo`]).
    pub in_sync_digest: Option<crate::reconcile::memo::InSyncDigest>,
}

impl Outcome {
    pub fn synced(
        agent_id: Uuid,
        generation: i64,
        reason: Reason,
        assistant_id: &str,
        message: String,
    ) -> Self {
        Self {
            agent_id,
            generation,
            state: SyncState::Synced,
            reason,
            message,
            assistant_id: Some(assistant_id.to_owned()),
            drift: Vec::new(),
            drift_detail: Vec::new(),
            applied: None,
            normalizations: Vec::new(),
            attempted: reason != Reason::InSync && reason != Reason::Adopted,
            key_fingerprint: None,
            in_sync_digest: None,
        }
    }

    /// A state other than synced or failed (pending, drifted, paused, deleted).
    pub fn other(
        agent_id: Uuid,
        generation: i64,
        state: SyncState,
        reason: Reason,
        message: String,
        attempted: bool,
    ) -> Self {
        Self {
            state,
            ..Self::failed(agent_id, generation, reason, message, attempted)
        }
    }

    pub fn with_key(mut self, fingerprint: &str) -> Self {
        self.key_fingerprint = Some(fingerprint.to_owned());
        self
    }

    /// A failed call: requeued (pending) when the breaker refused it, failed otherwise.
    pub fn call_failed(
        agent_id: Uuid,
        generation: i64,
        what: &str,
        err: &CallError,
        key_fingerprint: &str,
    ) -> Self {
        let reason = Reason::of_call(err);
        let state = reason.call_state();
        // Only a call that reached Vapi counts as an attempt.
        let attempted = matches!(err, CallError::Vapi(_));
        Self::other(
            agent_id,
            generation,
            state,
            reason,
            call_failure_message(what, err, key_fingerprint),
            attempted,
        )
        .with_key(key_fingerprint)
    }

    pub fn with_assistant(mut self, assistant_id: Option<String>) -> Self {
        self.assistant_id = assistant_id;
        self
    }

    pub fn failed(
        agent_id: Uuid,
        generation: i64,
        reason: Reason,
        message: String,
        attempted: bool,
    ) -> Self {
        Self {
            agent_id,
            generation,
            state: SyncState::Failed,
            reason,
            message,
            assistant_id: None,
            drift: Vec::new(),
            drift_detail: Vec::new(),
            applied: None,
            normalizations: Vec::new(),
            attempted,
            key_fingerprint: None,
            in_sync_digest: None,
        }
    }

    pub fn with_drift(mut self, drift: &[Drift]) -> Self {
        self.drift = drift_paths(drift);
        self.drift_detail = drift.to_vec();
        self
    }

    pub fn with_applied(mut self, body: &Map<String, Value>) -> Self {
        self.applied = Some(body.clone());
        self
    }

    pub fn to_update(&self) -> StatusUpdate {
        StatusUpdate {
            agent_id: self.agent_id,
            assistant_id: self.assistant_id.clone(),
            observed_generation: self.generation,
            state: self.state,
            reason: self.reason.as_str(),
            message: bounded(&self.message, MESSAGE_MAX),
            drift: self.drift.clone(),
            drift_detail: serde_json::to_value(&self.drift_detail).unwrap_or_default(),
            applied: self.applied.clone().map(Value::Object),
            normalizations: self.normalizations.clone(),
            attempted: self.attempted,
            key_fingerprint: self.key_fingerprint.clone(),
            in_sync_digest: self.in_sync_digest.map(|d| d.to_vec()),
        }
    }
}

/// A tool's or phone number's status row (the agents' [`Outcome`] for the other kinds).
pub(crate) fn resource_status(
    id: Uuid,
    generation: i64,
    state: SyncState,
    reason: Reason,
    message: &str,
) -> ResourceStatus {
    ResourceStatus {
        id,
        vapi_id: None,
        assistant_id: None,
        observed_generation: generation,
        state,
        reason: reason.as_str(),
        message: bounded(message, MESSAGE_MAX),
        drift: Vec::new(),
        applied: None,
        attempted: false,
        key_fingerprint: None,
    }
}

/// A tool's or phone number's status after a failed call, as [`Outcome::call_failed`].
pub(crate) fn resource_call_failed(
    id: Uuid,
    generation: i64,
    what: &str,
    err: &CallError,
    key_fingerprint: &str,
) -> ResourceStatus {
    let reason = Reason::of_call(err);
    let mut s = resource_status(
        id,
        generation,
        reason.call_state(),
        reason,
        &call_failure_message(what, err, key_fingerprint),
    );
    s.attempted = matches!(err, CallError::Vapi(_));
    s.key_fingerprint = Some(key_fingerprint.to_owned());
    s
}

/// The longest status message stored, in bytes; longer ones end in a marker with the full size.
/// Messages quote what tenants and Vapi wrote (key names, error texts), which have no bound.
pub(crate) const MESSAGE_MAX: usize = 4096;

/// `text` cut to at most `max` bytes (on a character boundary) with a marker saying so.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let marker = format!(" … [truncated: {} bytes in all]", text.len());
    let mut cut = max.saturating_sub(marker.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{marker}", &text[..cut])
}

/// A sentence for a failed call, with what to do about it.
pub fn call_failure_message(what: &str, err: &CallError, key_fingerprint: &str) -> String {
    match err {
        CallError::Vapi(e) => failure_message(what, e, key_fingerprint),
        CallError::BreakerOpen { .. } => format!(
            "Did not {what}: {err}. The agent is requeued and tried when the breaker lets a probe through."
        ),
        CallError::Quarantined { .. } => format!(
            "Did not {what}: {err}. Fix VAPI_PRIVATE_KEY_FILE (or the org's key); a new key is tried at once."
        ),
        CallError::Stopped => format!("Did not {what}: {err}."),
    }
}

/// A sentence for a failed Vapi call, with what to do about it.
pub fn failure_message(what: &str, err: &VapiError, key_fingerprint: &str) -> String {
    let advice = match err {
        VapiError::BadRequest { .. } => {
            " Fix the agent's name or spec; the controller tries again on every pass.".to_owned()
        }
        VapiError::Conflict { error, .. } if error == "assistant_pinned" => {
            " Unpin it in Vapi; the controller tries again on every pass.".to_owned()
        }
        VapiError::Unauthorized { .. } | VapiError::Forbidden { .. } => format!(
            " The key in use has fingerprint {key_fingerprint}; it is quarantined (writes stop, one probe per interval) until it changes. Check VAPI_PRIVATE_KEY_FILE, VAPI_PRIVATE_KEY or the org's key."
        ),
        _ => " The next pass tries again.".to_owned(),
    };
    let err = err.to_string();
    // Vapi's own messages often end with a period already.
    format!("Could not {what}: {}.{advice}", err.trim_end_matches('.'))
}

/// `model, name` for a patch's keys.
pub fn keys_of(patch: &Map<String, Value>) -> String {
    patch
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What one applied item leaves for the record stage.
#[derive(Debug, Default)]
pub(crate) struct Done {
    pub(crate) status: Option<Outcome>,
    pub(crate) journal: Vec<JournalEntry>,
    /// Pending journal rows of writes never sent.
    pub(crate) discarded: Vec<i64>,
    /// The agent whose create intent is settled (found, failed for sure, or never sent).
    pub(crate) settle_intent: Option<Uuid>,
    /// How the settled intent's create is journaled.
    pub(crate) create_settled: Option<CreateSettled>,
    pub(crate) duplicates_deleted: usize,
    pub(crate) orphans_deleted: usize,
    pub(crate) assistants_deleted: usize,
    /// A write was not started because shutdown began or leadership could not be proven.
    pub(crate) skipped: bool,
    /// A status that rests on no observation of Vapi this pass could make (a focused pass's
    /// write whose answer still differed): a full pass must follow at once.
    pub(crate) needs_full_pass: bool,
}

impl Done {
    pub(crate) fn status(o: Outcome) -> Self {
        Self {
            status: Some(o),
            ..Self::default()
        }
    }
}

/// Turns a decision and what applying it did into its status and records.
pub(crate) fn settle(d: &Decision, a: Applied, dry_run: bool, fingerprint: &str) -> Done {
    let Applied {
        effect,
        duplicates,
        fallback,
        journal,
        discarded,
        settle_intent,
        create_settled,
    } = a;
    let mut done = Done {
        journal,
        discarded,
        settle_intent: settle_intent.then_some(d.agent_id),
        create_settled: create_settled.filter(|_| settle_intent),
        ..Done::default()
    };
    if dry_run || d.mode != Mode::Enforce {
        done.status = Some(hands_off(d, dry_run).with_key(fingerprint));
        return done;
    }
    let unverified = matches!(
        &effect,
        Effect::Created { verified, .. } | Effect::Patched { verified }
            if verified.unresolved.is_some()
    );
    let status = match effect {
        Effect::Skipped | Effect::Failed { error: CallError::Stopped, .. } => {
            done.skipped = true;
            return done;
        }
        Effect::NoWrite => match &d.action {
            Action::InSync {
                assistant_id,
                adopted: true,
            } => Outcome::synced(
                d.agent_id,
                d.generation,
                Reason::Adopted,
                assistant_id,
                format!(
                    "Adopted assistant {assistant_id}, which carries this agent's ownership marker; it matches generation {}.",
                    d.generation
                ),
            ),
            Action::InSync { assistant_id, .. } => in_sync(d, assistant_id),
            Action::Invalid { problems } => invalid(d.agent_id, d.generation, problems),
            Action::AwaitCreate {
                operation_id,
                until,
            } => Outcome::other(
                d.agent_id,
                d.generation,
                SyncState::Pending,
                Reason::CreateOutcomeUnknown,
                format!(
                    "A create (operation {operation_id}) had an unknown outcome and may still land; no new create before {} unless it appears.",
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                false,
            ),
            _ => Outcome::other(
                d.agent_id,
                d.generation,
                SyncState::Deleted,
                Reason::Deleted,
                "The agent is deleted and no assistant of it remains in Vapi; the row may be purged."
                    .into(),
                false,
            ),
        },
        Effect::NotRecorded { error, create } => {
            let what = if create {
                "the intent to create"
            } else {
                "the write in the journal"
            };
            Outcome::failed(
                d.agent_id,
                d.generation,
                Reason::StoreUnavailable,
                format!(
                    "Could not record {what}, so nothing was sent: {error}. The next pass tries again."
                ),
                false,
            )
        }
        Effect::Created { id, verified } => {
            let outcome = match &d.action {
                Action::Recreate { previous_id, .. } => Outcome::synced(
                    d.agent_id,
                    d.generation,
                    Reason::AssistantRecreated,
                    &id,
                    format!(
                        "Assistant {previous_id} no longer exists in Vapi; created {id} in its place."
                    ),
                ),
                _ => Outcome::synced(
                    d.agent_id,
                    d.generation,
                    Reason::Created,
                    &id,
                    format!("Created assistant {id}."),
                ),
            };
            with_verified(with_fallback(outcome, d, fallback), &verified)
        }
        Effect::CreatedWithoutId { operation_id } => Outcome::other(
            d.agent_id,
            d.generation,
            SyncState::Pending,
            Reason::VapiBadResponse,
            format!(
                "Vapi accepted the create (operation {operation_id}) but its answer carried no assistant id; the next pass adopts the assistant by its ownership marker."
            ),
            true,
        ),
        Effect::CreateUnknown {
            operation_id,
            error,
        } => {
            let action = if matches!(d.action, Action::Recreate { .. }) {
                "recreate"
            } else {
                "create"
            };
            Outcome::other(
                d.agent_id,
                d.generation,
                SyncState::Pending,
                Reason::CreateOutcomeUnknown,
                format!(
                    "The {action} (operation {operation_id}) has an unknown outcome: {}. Vapi may have stored it: the next pass adopts the assistant carrying this operation id, and creates again only if none appears within the grace period.",
                    error.to_string().trim_end_matches('.')
                ),
                true,
            )
        }
        Effect::Patched { verified } => {
            let Action::Patch {
                assistant_id,
                patch,
                drift,
                adopted,
            } = &d.action
            else {
                return done;
            };
            let verb = if *adopted {
                "Adopted assistant and patched"
            } else {
                "Patched"
            };
            let outcome = Outcome::synced(
                d.agent_id,
                d.generation,
                Reason::Patched,
                assistant_id,
                format!(
                    "{verb} {} on assistant {assistant_id}; differing fields: {}.",
                    keys_of(patch),
                    describe_drift(drift)
                ),
            )
            .with_drift(drift);
            with_verified(with_fallback(outcome, d, fallback), &verified)
        }
        Effect::Gone => {
            let assistant_id = match &d.action {
                Action::Patch { assistant_id, .. } => assistant_id.as_str(),
                _ => "",
            };
            // Deleted between the listing and the patch: the next pass recreates it.
            Outcome::other(
                d.agent_id,
                d.generation,
                SyncState::Pending,
                Reason::AssistantGone,
                format!(
                    "Assistant {assistant_id} was deleted from Vapi while being patched; the next pass recreates it."
                ),
                true,
            )
        }
        Effect::Deleted { ids } => {
            done.assistants_deleted = ids.len();
            Outcome::other(
                d.agent_id,
                d.generation,
                SyncState::Deleted,
                Reason::Deleted,
                format!(
                    "Deleted assistant(s) {} and confirmed they are gone; the row may be purged.",
                    ids.join(", ")
                ),
                true,
            )
        }
        Effect::Failed {
            what,
            error,
            assistant_id,
        } => {
            let failed = Outcome::call_failed(d.agent_id, d.generation, &what, &error, fingerprint);
            let failed = match &d.action {
                Action::Patch { drift, .. } => failed.with_drift(drift),
                _ => failed,
            };
            match assistant_id {
                Some(id) => failed.with_assistant(Some(id)),
                None => failed,
            }
        }
    };
    let mut status = status;
    done.needs_full_pass = unverified;
    // Duplicates: a failure fails the agent's status; removals are added to its message.
    done.duplicates_deleted = duplicates.removed.len();
    done.skipped |= duplicates.skipped;
    if let Some((id, err)) = &duplicates.failed {
        status = Outcome::call_failed(
            d.agent_id,
            d.generation,
            &format!("delete duplicate assistant {id}"),
            err,
            fingerprint,
        )
        .with_assistant(status.assistant_id);
    } else if !duplicates.removed.is_empty() {
        status = Outcome {
            message: format!(
                "{} Deleted duplicate assistant(s) {}.",
                status.message,
                duplicates.removed.join(", ")
            ),
            attempted: true,
            ..status
        };
    }
    if status.state == SyncState::Synced && status.applied.is_none() {
        status.applied = d.desired.clone();
    }
    status
        .normalizations
        .splice(0..0, d.normalizations.iter().map(describe_normalization));
    if status.state == SyncState::Synced && !d.normalizations.is_empty() {
        let voice: Vec<_> = d
            .normalizations
            .iter()
            .map(describe_normalization)
            .collect();
        status.message = format!("{} Voice: {}.", status.message, voice.join(", "));
    }
    done.status = Some(status.with_key(fingerprint));
    done
}

/// Adds what Vapi's answer showed: keys repaired at once, or what still differs (then the
/// status is not `synced`: nothing observed says it is).
fn with_verified(mut outcome: Outcome, v: &Verified) -> Outcome {
    if !v.repaired.is_empty() {
        outcome.message = format!(
            "{} Vapi's answer showed {} as well; patched {} too.",
            outcome.message,
            describe_drift(&v.repaired),
            if v.repaired.len() == 1 { "it" } else { "them" }
        );
        let mut drift = outcome.drift_detail.clone();
        drift.extend(v.repaired.iter().cloned());
        outcome = outcome.with_drift(&drift);
    }
    let Some(u) = &v.unresolved else {
        return outcome;
    };
    let why = match &u.error {
        Some(e) => format!("the repair failed: {}", e.to_string().trim_end_matches('.')),
        None => "Vapi's answer still differs".to_owned(),
    };
    Outcome {
        state: SyncState::Pending,
        reason: Reason::AnswerDiffers,
        message: format!(
            "{} Not synced: {}; still differing: {}. A full pass follows at once.",
            outcome.message,
            why,
            describe_drift(&u.drift)
        ),
        applied: None,
        ..outcome
    }
}

/// Records a fallback on a successful outcome: message, normalization and the applied voice.
fn with_fallback(mut outcome: Outcome, d: &Decision, fallback: Option<Fallback>) -> Outcome {
    let Some(f) = fallback else {
        return outcome;
    };
    outcome.message = format!(
        "{} Vapi refused voice {} ({}); used the fallback voice {} instead.",
        outcome.message, f.from, f.message, f.to
    );
    outcome
        .normalizations
        .push(describe_normalization(&Normalization {
            from: f.from,
            to: f.to,
            rule: FALLBACK_RULE,
            dropped: Vec::new(),
        }));
    outcome.applied = d.desired.clone().map(|mut body| {
        body.insert("voice".to_owned(), f.voice);
        body
    });
    outcome
}

/// Observe-only, paused or dry-run: report what enforcing would do, write nothing to Vapi.
pub(crate) fn hands_off(d: &Decision, dry_run: bool) -> Outcome {
    let (state, reason) = match (d.mode, dry_run) {
        (Mode::Paused, _) => (SyncState::Paused, Reason::Paused),
        (_, true) => (SyncState::Drifted, Reason::DryRun),
        _ => (SyncState::Drifted, Reason::ObserveOnly),
    };
    let would = describe(&d.action, &d.duplicates);
    match (&d.action, would) {
        (Action::Invalid { problems }, _) => invalid(d.agent_id, d.generation, problems),
        (Action::InSync { assistant_id, .. }, None) if state != SyncState::Paused => {
            in_sync(d, assistant_id)
        }
        (action, would) => {
            let prefix = match reason {
                Reason::Paused => "Management is paused for this agent",
                Reason::DryRun => "The controller runs in dry-run mode",
                _ => "This agent is observe-only",
            };
            let message = match would {
                Some(w) => format!("{prefix}; enforcing would {w}. Nothing was sent to Vapi."),
                None => format!("{prefix}; its assistant matches."),
            };
            let drift = match action {
                Action::Patch { drift, .. } => drift.clone(),
                _ => Vec::new(),
            };
            let assistant = match action {
                Action::InSync { assistant_id, .. } | Action::Patch { assistant_id, .. } => {
                    Some(assistant_id.clone())
                }
                _ => None,
            };
            let state =
                if state == SyncState::Drifted && !action.writes() && d.duplicates.is_empty() {
                    // Nothing would be written (waiting for a create, or already deleted).
                    match action {
                        Action::Deleted => SyncState::Deleted,
                        _ => SyncState::Pending,
                    }
                } else {
                    state
                };
            Outcome::other(d.agent_id, d.generation, state, reason, message, false)
                .with_drift(&drift)
                .with_assistant(assistant)
        }
    }
}

/// What enforcing an action would do, in words; `None` when it would write nothing.
fn describe(action: &Action, duplicates: &[String]) -> Option<String> {
    let main = match action {
        Action::Create { .. } => Some("create the assistant".to_owned()),
        Action::Recreate { previous_id, .. } => Some(format!(
            "recreate the assistant (the recorded {previous_id} is gone)"
        )),
        Action::Patch {
            assistant_id,
            drift,
            ..
        } => Some(format!(
            "patch assistant {assistant_id} (differing fields: {})",
            describe_drift(drift)
        )),
        Action::Delete { assistant_ids } => {
            Some(format!("delete assistant(s) {}", assistant_ids.join(", ")))
        }
        _ => None,
    };
    let dups = (!duplicates.is_empty())
        .then(|| format!("delete duplicate assistant(s) {}", duplicates.join(", ")));
    match (main, dups) {
        (Some(m), Some(d)) => Some(format!("{m} and {d}")),
        (m, d) => m.or(d),
    }
}

fn in_sync(d: &Decision, assistant_id: &str) -> Outcome {
    Outcome {
        in_sync_digest: d.in_sync_digest,
        ..Outcome::synced(
            d.agent_id,
            d.generation,
            Reason::InSync,
            assistant_id,
            format!(
                "Assistant {assistant_id} matches generation {}.",
                d.generation
            ),
        )
    }
}

pub(crate) fn invalid(agent_id: Uuid, generation: i64, problems: &[String]) -> Outcome {
    Outcome::failed(
        agent_id,
        generation,
        Reason::InvalidSpec,
        format!(
            "The spec cannot be sent to Vapi: {}. Nothing was sent.",
            problems.join("; ")
        ),
        false,
    )
}
