//! Turning a decision and what Vapi answered into the status a dashboard reads.
//!
//! Reasons are a closed set of short machine words (they become metric labels later); messages
//! are sentences that say what happened and what a human can do about it.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::lane::CallError;
use crate::reconcile::{Drift, drift_paths};
use crate::store::{StatusUpdate, SyncState};
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
        let state = if reason == Reason::CircuitOpen {
            SyncState::Pending
        } else {
            SyncState::Failed
        };
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
            message: self.message.clone(),
            drift: self.drift.clone(),
            drift_detail: serde_json::to_value(&self.drift_detail).unwrap_or_default(),
            applied: self.applied.clone().map(Value::Object),
            normalizations: self.normalizations.clone(),
            attempted: self.attempted,
            key_fingerprint: self.key_fingerprint.clone(),
        }
    }
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
