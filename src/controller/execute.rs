//! Executing one decision (or one orphan) against Vapi: the effects half of the pass.
//!
//! Each call returns a [`Done`]: the status to record, the journal entries of every write, and
//! whether a create intent is settled. Nothing here retries: the next pass is the retry, and a
//! POST in particular is never repeated, because Vapi has no idempotency key — a create whose
//! outcome is unknown keeps its intent, and the next pass adopts what it finds or waits.
//!
//! Every Vapi write first asks [`Gate::may_write`]: shutdown has not begun and this replica can
//! still prove it leads.

use chrono::Utc;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::lane::{CallError, Lane};
use super::outcome::{Outcome, Reason, keys_of};
use super::pass::PassContext;
use crate::reconcile::voice::is_voice_rejection;
use crate::reconcile::{
    self, Action, CreateIntent, Decision, FALLBACK_RULE, Mode, Normalization, Stray,
    describe_drift, describe_normalization, voice_label,
};
use crate::store::{JournalEntry, JournalOutcome, StoreError, SyncState};
use crate::vapi::VapiError;

/// What executing one item produced.
#[derive(Debug, Default)]
pub struct Done {
    pub status: Option<Outcome>,
    pub journal: Vec<JournalEntry>,
    /// The agent whose create intent is settled (found, failed for sure, or never sent).
    pub settle_intent: Option<Uuid>,
    pub duplicates_deleted: usize,
    pub orphans_deleted: usize,
    pub assistants_deleted: usize,
    /// A write was not started because shutdown began or leadership could not be proven.
    pub skipped: bool,
}

impl Done {
    pub fn status(o: Outcome) -> Self {
        Self {
            status: Some(o),
            ..Self::default()
        }
    }
}

/// Whether a write may start now.
pub trait Gate {
    fn may_write(&self) -> bool;
}

/// Journals one write of a decision's agent.
struct Entry<'a> {
    ctx: &'a PassContext<'a>,
    decision: &'a Decision,
    lane: &'a Lane,
}

impl Entry<'_> {
    fn record(
        &self,
        started_at: chrono::DateTime<Utc>,
        action: &'static str,
        outcome: JournalOutcome,
        assistant_id: Option<&str>,
        operation_id: Option<Uuid>,
        mut why: String,
    ) -> JournalEntry {
        let d = self.decision;
        if !d.normalizations.is_empty() && matches!(action, "create" | "recreate" | "patch") {
            let voice: Vec<_> = d
                .normalizations
                .iter()
                .map(describe_normalization)
                .collect();
            why = format!("{why}; voice {}", voice.join(", "));
        }
        JournalEntry {
            started_at,
            finished_at: Utc::now(),
            lease: self
                .ctx
                .owner
                .fence_of_org(self.decision.org_id)
                .map(|f| f.name.clone())
                .unwrap_or_default(),
            epoch: self
                .ctx
                .owner
                .fence_of_org(self.decision.org_id)
                .map_or(-1, |f| f.epoch),
            holder: self.ctx.holder.to_owned(),
            org_id: Some(self.decision.org_id),
            agent_id: Some(self.decision.agent_id),
            generation: Some(self.decision.generation),
            action,
            outcome,
            assistant_id: assistant_id.map(str::to_owned),
            operation_id,
            why,
        }
    }
}

fn journal_outcome(err: &CallError) -> JournalOutcome {
    match err {
        CallError::Vapi(VapiError::NotFound) => JournalOutcome::Gone,
        e if e.outcome_unknown() => JournalOutcome::Unknown,
        _ => JournalOutcome::Failed,
    }
}

fn error_why(err: &CallError) -> String {
    format!("{}: {err}", err.kind())
}

fn may_write(ctx: &PassContext<'_>) -> bool {
    !ctx.cancel.is_cancelled() && ctx.gate.may_write()
}

/// Runs one agent's decision with its credential's lane.
pub async fn decision(ctx: &PassContext<'_>, mut d: Decision, lane: &Lane) -> Done {
    if ctx.settings.dry_run || d.mode != Mode::Enforce {
        let mut done = hands_off(ctx, &d);
        done.status = done.status.map(|s| s.with_key(lane.fingerprint()));
        return done;
    }
    let entry = Entry {
        ctx,
        decision: &d,
        lane,
    };
    let mut done = Done::default();
    if d.intent.is_some() && !matches!(d.action, Action::AwaitCreate { .. }) {
        // Found, replaced by this pass's create, or moot: the old intent is settled either way.
        done.settle_intent = Some(d.agent_id);
    }
    let status = match &d.action {
        Action::InSync {
            assistant_id,
            adopted,
        } => {
            if *adopted {
                done.journal.push(entry.record(
                    Utc::now(),
                    "adopt",
                    JournalOutcome::Ok,
                    Some(assistant_id),
                    d.intent.as_ref().map(|i| i.operation_id),
                    "its ownership marker names this agent and nothing else is recorded".into(),
                ));
                Outcome::synced(
                    d.agent_id,
                    d.generation,
                    Reason::Adopted,
                    assistant_id,
                    format!(
                        "Adopted assistant {assistant_id}, which carries this agent's ownership marker; it matches generation {}.",
                        d.generation
                    ),
                )
            } else {
                in_sync(&d, assistant_id)
            }
        }
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
        Action::Create { body } | Action::Recreate { body, .. } => {
            if !may_write(ctx) {
                return Done {
                    skipped: true,
                    ..done
                };
            }
            let previous = match &d.action {
                Action::Recreate { previous_id, .. } => Some(previous_id.as_str()),
                _ => None,
            };
            match create(ctx, &entry, &mut done, body, previous).await {
                Some(status) => status,
                None => {
                    return Done {
                        skipped: true,
                        ..done
                    };
                }
            }
        }
        Action::Patch {
            assistant_id,
            patch,
            drift,
            adopted,
        } => {
            if !may_write(ctx) {
                return Done {
                    skipped: true,
                    settle_intent: None,
                    ..done
                };
            }
            let started = Utc::now();
            let (result, fallback) = voice_fallback(
                &entry,
                &mut done,
                "patch",
                None,
                Some(assistant_id),
                patch.clone(),
                |p| async move { lane.update(assistant_id, &p).await },
            )
            .await;
            let why = format!("drift: {}", describe_drift(drift));
            match result {
                Ok(_) => {
                    done.journal.push(entry.record(
                        started,
                        "patch",
                        JournalOutcome::Ok,
                        Some(assistant_id),
                        None,
                        why,
                    ));
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
                    with_fallback(outcome, &d, fallback)
                }
                Err(err) => {
                    done.journal.push(entry.record(
                        started,
                        "patch",
                        journal_outcome(&err),
                        Some(assistant_id),
                        None,
                        format!("{why}; {}", error_why(&err)),
                    ));
                    if matches!(err, CallError::Vapi(VapiError::NotFound)) {
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
                    } else {
                        Outcome::call_failed(
                            d.agent_id,
                            d.generation,
                            &format!("patch assistant {assistant_id}"),
                            &err,
                            entry.lane.fingerprint(),
                        )
                        .with_drift(drift)
                    }
                }
            }
        }
        Action::Delete { assistant_ids } => {
            if !may_write(ctx) {
                return Done {
                    skipped: true,
                    ..done
                };
            }
            delete_all(&entry, &mut done, assistant_ids).await
        }
        Action::Deleted => Outcome::other(
            d.agent_id,
            d.generation,
            SyncState::Deleted,
            Reason::Deleted,
            "The agent is deleted and no assistant of it remains in Vapi; the row may be purged."
                .into(),
            false,
        ),
    };
    let mut status = remove_duplicates(ctx, &entry, &mut done, &d, status).await;
    if status.state == SyncState::Synced && status.applied.is_none() {
        status.applied = d.desired.take();
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
    done.status = Some(status.with_key(lane.fingerprint()));
    done
}

/// Records the intent (fenced), then POSTs once. `None` when this replica no longer leads.
async fn create(
    ctx: &PassContext<'_>,
    entry: &Entry<'_>,
    done: &mut Done,
    body: &Map<String, Value>,
    previous: Option<&str>,
) -> Option<Outcome> {
    let d = entry.decision;
    let op = Uuid::new_v4();
    let intent = CreateIntent {
        operation_id: op,
        generation: d.generation,
        started_at: Utc::now(),
    };
    match ctx
        .store
        .record_intents(
            &ctx.owner.fences(),
            ctx.owner.fence_of_org(d.org_id).map_or(-1, |f| f.epoch),
            &[(d.agent_id, intent)],
        )
        .await
    {
        Ok(()) => {}
        Err(StoreError::Fenced { .. }) => return None,
        Err(e) => {
            return Some(Outcome::failed(
                d.agent_id,
                d.generation,
                Reason::StoreUnavailable,
                format!(
                    "Could not record the intent to create, so nothing was sent: {e}. The next pass tries again."
                ),
                false,
            ));
        }
    }
    Some(post(entry, done, body, op, previous).await)
}

async fn post(
    entry: &Entry<'_>,
    done: &mut Done,
    body: &Map<String, Value>,
    op: Uuid,
    previous: Option<&str>,
) -> Outcome {
    let d = entry.decision;
    let action = if previous.is_some() {
        "recreate"
    } else {
        "create"
    };
    let why = match previous {
        Some(p) => format!("the recorded assistant {p} is gone from Vapi"),
        None => "no assistant of this agent exists".to_owned(),
    };
    let started = Utc::now();
    let (result, fallback) = voice_fallback(
        entry,
        done,
        action,
        Some(op),
        None,
        reconcile::with_operation(body.clone(), op),
        |b| async move { entry.lane.create(&b).await },
    )
    .await;
    match result {
        Ok(created) => {
            done.settle_intent = Some(d.agent_id);
            let Some(id) = created.get("id").and_then(Value::as_str) else {
                done.journal.push(entry.record(
                    started,
                    action,
                    JournalOutcome::Unknown,
                    None,
                    Some(op),
                    format!("{why}; the answer carried no id"),
                ));
                // Keep the intent: the assistant exists and the next pass adopts it.
                done.settle_intent = None;
                return Outcome::other(
                    d.agent_id,
                    d.generation,
                    SyncState::Pending,
                    Reason::VapiBadResponse,
                    format!(
                        "Vapi accepted the create (operation {op}) but its answer carried no assistant id; the next pass adopts the assistant by its ownership marker."
                    ),
                    true,
                );
            };
            done.journal.push(entry.record(
                started,
                action,
                JournalOutcome::Ok,
                Some(id),
                Some(op),
                why,
            ));
            let outcome = match previous {
                Some(p) => Outcome::synced(
                    d.agent_id,
                    d.generation,
                    Reason::AssistantRecreated,
                    id,
                    format!("Assistant {p} no longer exists in Vapi; created {id} in its place."),
                ),
                None => Outcome::synced(
                    d.agent_id,
                    d.generation,
                    Reason::Created,
                    id,
                    format!("Created assistant {id}."),
                ),
            };
            with_fallback(outcome, d, fallback)
        }
        Err(err) if err.outcome_unknown() => {
            done.settle_intent = None;
            done.journal.push(entry.record(
                started,
                action,
                JournalOutcome::Unknown,
                None,
                Some(op),
                format!("{why}; {}", error_why(&err)),
            ));
            Outcome::other(
                d.agent_id,
                d.generation,
                SyncState::Pending,
                Reason::CreateOutcomeUnknown,
                format!(
                    "The {action} (operation {op}) has an unknown outcome: {}. Vapi may have stored it: the next pass adopts the assistant carrying this operation id, and creates again only if none appears within the grace period.",
                    err.to_string().trim_end_matches('.')
                ),
                true,
            )
        }
        Err(err) => {
            done.settle_intent = Some(d.agent_id);
            done.journal.push(entry.record(
                started,
                action,
                journal_outcome(&err),
                None,
                Some(op),
                format!("{why}; {}", error_why(&err)),
            ));
            Outcome::call_failed(
                d.agent_id,
                d.generation,
                &format!("{action} the assistant"),
                &err,
                entry.lane.fingerprint(),
            )
        }
    }
}

/// Deletes each assistant and confirms it is gone (a 404 on GET).
async fn delete_all(entry: &Entry<'_>, done: &mut Done, ids: &[String]) -> Outcome {
    let d = entry.decision;
    for id in ids {
        if let Err(err) = delete_confirmed(entry, done, id, "the agent is deleted").await {
            return Outcome::call_failed(
                d.agent_id,
                d.generation,
                &format!("delete assistant {id}"),
                &err,
                entry.lane.fingerprint(),
            )
            .with_assistant(Some(id.clone()));
        }
        done.assistants_deleted += 1;
    }
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

/// DELETE, then GET to confirm a 404. A 404 on the DELETE itself means already gone.
async fn delete_confirmed(
    entry: &Entry<'_>,
    done: &mut Done,
    id: &str,
    why: &str,
) -> Result<(), CallError> {
    let started = Utc::now();
    let lane = entry.lane;
    let result = match lane.delete(id).await {
        Ok(_) | Err(CallError::Vapi(VapiError::NotFound)) => match lane.get(id).await {
            Err(CallError::Vapi(VapiError::NotFound)) => Ok(()),
            Ok(_) => Err(CallError::Vapi(VapiError::UnexpectedStatus {
                status: 200,
                message: "the assistant is still there after DELETE".into(),
            })),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let (outcome, why) = match &result {
        Ok(()) => (JournalOutcome::Ok, why.to_owned()),
        Err(e) => (journal_outcome(e), format!("{why}; {}", error_why(e))),
    };
    done.journal
        .push(entry.record(started, "delete", outcome, Some(id), None, why));
    result
}

/// Deletes the agent's duplicates after its main action; a failure fails the agent's status.
async fn remove_duplicates(
    ctx: &PassContext<'_>,
    entry: &Entry<'_>,
    done: &mut Done,
    d: &Decision,
    status: Outcome,
) -> Outcome {
    if d.duplicates.is_empty() {
        return status;
    }
    let kept = status.assistant_id.clone().unwrap_or_default();
    let mut removed = Vec::new();
    for id in &d.duplicates {
        if !may_write(ctx) {
            done.skipped = true;
            break;
        }
        let why = format!("duplicate of {kept}");
        if let Err(err) = delete_confirmed(entry, done, id, &why).await {
            return Outcome::call_failed(
                d.agent_id,
                d.generation,
                &format!("delete duplicate assistant {id}"),
                &err,
                entry.lane.fingerprint(),
            )
            .with_assistant(status.assistant_id);
        }
        done.duplicates_deleted += 1;
        removed.push(id.as_str());
    }
    if removed.is_empty() {
        return status;
    }
    Outcome {
        message: format!(
            "{} Deleted duplicate assistant(s) {}.",
            status.message,
            removed.join(", ")
        ),
        attempted: true,
        ..status
    }
}

/// Observe-only, paused or dry-run: report what enforcing would do, write nothing to Vapi.
fn hands_off(ctx: &PassContext<'_>, d: &Decision) -> Done {
    let (state, reason) = match (d.mode, ctx.settings.dry_run) {
        (Mode::Paused, _) => (SyncState::Paused, Reason::Paused),
        (_, true) => (SyncState::Drifted, Reason::DryRun),
        _ => (SyncState::Drifted, Reason::ObserveOnly),
    };
    let would = describe(&d.action, &d.duplicates);
    let status = match (&d.action, would) {
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
    };
    Done {
        status: Some(status),
        ..Done::default()
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

/// Deletes an orphan whose grace period has passed.
pub async fn stray(ctx: &PassContext<'_>, s: Stray, lane: &Lane) -> Done {
    let mut done = Done::default();
    if !may_write(ctx) {
        done.skipped = true;
        return done;
    }
    let started = Utc::now();
    let why = format!(
        "orphan: agent {} no longer exists (first seen {})",
        s.agent_id,
        s.first_seen
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let result = match lane.delete(&s.assistant_id).await {
        Ok(_) | Err(CallError::Vapi(VapiError::NotFound)) => Ok(()),
        Err(e) => Err(e),
    };
    let (outcome, why) = match &result {
        Ok(()) => (JournalOutcome::Ok, why),
        Err(e) => {
            tracing::warn!(assistant_id = %s.assistant_id, kind = e.kind(), error = %e, "could not delete an orphaned assistant");
            (journal_outcome(e), format!("{why}; {}", error_why(e)))
        }
    };
    if result.is_ok() {
        done.orphans_deleted += 1;
    }
    done.journal.push(JournalEntry {
        started_at: started,
        finished_at: Utc::now(),
        lease: ctx
            .owner
            .fence_of_marker(s.org_id.as_deref())
            .map(|f| f.name.clone())
            .unwrap_or_default(),
        epoch: ctx
            .owner
            .fence_of_marker(s.org_id.as_deref())
            .map_or(-1, |f| f.epoch),
        holder: ctx.holder.to_owned(),
        org_id: None,
        agent_id: Some(s.agent_id),
        generation: None,
        action: "delete",
        outcome,
        assistant_id: Some(s.assistant_id),
        operation_id: None,
        why,
    });
    done
}

/// Vapi refused a voice, and the fallback voice was used instead.
struct Fallback {
    from: String,
    to: String,
    message: String,
    voice: Value,
}

/// Sends `body` (a create body or a patch); when Vapi refuses its voice, sends it once more with
/// the fallback voice. Any other 400 is not retried. The refused attempt is journaled here.
async fn voice_fallback<F, Fut>(
    entry: &Entry<'_>,
    done: &mut Done,
    action: &'static str,
    op: Option<Uuid>,
    assistant_id: Option<&str>,
    mut body: Map<String, Value>,
    send: F,
) -> (Result<Value, CallError>, Option<Fallback>)
where
    F: Fn(Map<String, Value>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, CallError>>,
{
    let started = Utc::now();
    let result = send(body.clone()).await;
    let refused = match &result {
        Err(CallError::Vapi(VapiError::BadRequest { messages })) => {
            messages.iter().find(|m| is_voice_rejection(m)).cloned()
        }
        _ => None,
    };
    let fallback_voice = entry.ctx.settings.plan.voices.fallback_voice();
    let (Some(message), Some(voice)) = (refused, body.get("voice").cloned()) else {
        return (result, None);
    };
    if voice == fallback_voice || !may_write(entry.ctx) {
        return (result, None);
    }
    done.journal.push(entry.record(
        started,
        action,
        JournalOutcome::Failed,
        assistant_id,
        op,
        format!("Vapi refused voice {}: {message}", voice_label(&voice)),
    ));
    let fallback = Fallback {
        from: voice_label(&voice),
        to: voice_label(&fallback_voice),
        message,
        voice: fallback_voice.clone(),
    };
    body.insert("voice".to_owned(), fallback_voice);
    (send(body).await, Some(fallback))
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

fn in_sync(d: &Decision, assistant_id: &str) -> Outcome {
    Outcome::synced(
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

pub fn invalid(agent_id: Uuid, generation: i64, problems: &[String]) -> Outcome {
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
