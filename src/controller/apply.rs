//! Apply: the Vapi effects of one decision (or one orphan), and nothing else.
//!
//! In: a [`Decision`] and the lane of its key. Out: an [`Applied`]: a typed [`Effect`] for the
//! main action, what became of the duplicates, and the journal rows of every write. No status
//! sentence is written here; [`super::outcome::settle`] turns an `Applied` into the status, pure.
//!
//! - **Journal = what reached Vapi.** Each POST, PATCH and DELETE gets its journal row, outcome
//!   `pending`, before its request is sent (a create's in the same transaction as its intent),
//!   completed when the answer is known. A write the lane would refuse locally (open breaker,
//!   quarantined key) is not journaled at all; one refused after its row was written (a race
//!   with the breaker, or shutdown during pacing) has its row withdrawn.
//! - **No claim without an observation.** Vapi answers a POST or PATCH with the whole assistant
//!   after the write. That answer is compared with the *whole* desired body
//!   ([`reconcile::residual`]); whatever else differs (someone changed it in Vapi) is patched
//!   at once, and a second difference is reported, never hidden behind `synced`.
//! - **No blind retry.** The lane retries idempotent calls a few times; a POST is never
//!   repeated, because Vapi has no idempotency key: a create whose outcome is unknown keeps its
//!   intent, and the next pass adopts what it finds or waits.
//!
//! Every write first asks [`Gate::may_write`]: shutdown has not begun and this replica can still
//! prove it leads.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::lane::{CallError, Lane};
use super::outcome::{MESSAGE_MAX, bounded};
use super::pass::PassContext;
use crate::reconcile::voice::is_voice_rejection;
use crate::reconcile::{
    self, Action, CreateIntent, Decision, Drift, Mode, Stray, describe_normalization, voice_label,
};
use crate::store::{CreateSettled, JournalEntry, JournalOutcome, StoreError};
use crate::vapi::VapiError;

use super::ASSISTANT;
use super::intents::Intents;

/// Whether a write may start now.
pub trait Gate {
    fn may_write(&self) -> bool;
}

/// What applying one decision did.
#[derive(Debug)]
pub(crate) struct Applied {
    pub(crate) effect: Effect,
    pub(crate) duplicates: Duplicates,
    /// Vapi refused the voice and the fallback voice was sent instead.
    pub(crate) fallback: Option<Fallback>,
    /// Rows for the journal: completions of the pending rows written before each request, and
    /// adoptions.
    pub(crate) journal: Vec<JournalEntry>,
    /// Pending rows of writes that were never sent after all.
    pub(crate) discarded: Vec<i64>,
    /// The agent's create intent is settled (found, replaced, failed for sure, or never sent).
    pub(crate) settle_intent: bool,
    /// What the settled intent's own create turned out to be, for its pending journal row.
    pub(crate) create_settled: Option<CreateSettled>,
}

impl Applied {
    /// Nothing sent, nothing journaled, nothing settled.
    pub(crate) fn nothing() -> Self {
        Self {
            effect: Effect::NoWrite,
            duplicates: Duplicates::default(),
            fallback: None,
            journal: Vec::new(),
            discarded: Vec::new(),
            settle_intent: false,
            create_settled: None,
        }
    }
}

/// The result of a decision's main action.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Nothing was to be sent: in sync, invalid, waiting for a create, deleted, or hands-off.
    NoWrite,
    /// Not started: shutdown began or leadership could not be proven.
    Skipped,
    /// Postgres failed before the request, so nothing was sent.
    NotRecorded {
        error: StoreError,
        create: bool,
    },
    Created {
        id: String,
        verified: Verified,
    },
    /// Vapi took the create but its answer named no assistant: the next pass adopts it.
    CreatedWithoutId {
        operation_id: Uuid,
    },
    /// The POST may or may not have taken effect.
    CreateUnknown {
        operation_id: Uuid,
        error: CallError,
    },
    Patched {
        verified: Verified,
    },
    /// The assistant answered 404 to the PATCH: deleted meanwhile.
    Gone,
    /// Every assistant of a deleted agent is deleted and confirmed gone.
    Deleted {
        ids: Vec<String>,
    },
    /// A call failed, at Vapi or refused locally.
    Failed {
        what: String,
        error: CallError,
        assistant_id: Option<String>,
    },
}

/// How Vapi's answer to a write compared with the whole desired body.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    /// Keys the answer showed differing besides the ones written, patched at once.
    pub(crate) repaired: Vec<Drift>,
    /// What still differs after that, and why (the second PATCH failed, or its answer differed).
    pub(crate) unresolved: Option<Unresolved>,
}

#[derive(Debug)]
pub(crate) struct Unresolved {
    pub(crate) drift: Vec<Drift>,
    pub(crate) error: Option<CallError>,
}

/// What became of the agent's duplicates.
#[derive(Debug, Default)]
pub(crate) struct Duplicates {
    pub(crate) removed: Vec<String>,
    /// The first that could not be deleted (the rest were not tried).
    pub(crate) failed: Option<(String, CallError)>,
    /// Shutdown began before all were tried.
    pub(crate) skipped: bool,
}

/// Vapi refused a voice, and the fallback voice was used instead.
#[derive(Debug)]
pub(crate) struct Fallback {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) message: String,
    pub(crate) voice: Value,
}

/// What deleting an orphan did.
#[derive(Debug)]
pub(crate) struct StrayApplied {
    pub(crate) deleted: bool,
    pub(crate) skipped: bool,
    pub(crate) journal: Vec<JournalEntry>,
    pub(crate) discarded: Vec<i64>,
}

/// Journals the writes of one agent.
struct Journal<'a> {
    ctx: &'a PassContext<'a>,
    decision: &'a Decision,
    entries: Vec<JournalEntry>,
    discarded: Vec<i64>,
}

/// A write whose pending row is in the journal.
struct Begun {
    id: i64,
    started: DateTime<Utc>,
    action: &'static str,
    assistant_id: Option<String>,
    operation_id: Option<Uuid>,
    why: String,
}

impl<'a> Journal<'a> {
    fn new(ctx: &'a PassContext<'a>, decision: &'a Decision) -> Self {
        Self {
            ctx,
            decision,
            entries: Vec::new(),
            discarded: Vec::new(),
        }
    }

    fn row(
        &self,
        action: &'static str,
        outcome: JournalOutcome,
        assistant_id: Option<&str>,
        operation_id: Option<Uuid>,
        why: String,
    ) -> JournalEntry {
        let d = self.decision;
        let fence = self.ctx.owner.fence_of_org(d.org_id);
        let now = Utc::now();
        JournalEntry {
            id: None,
            started_at: now,
            finished_at: now,
            lease: fence.map(|f| f.name.clone()).unwrap_or_default(),
            epoch: fence.map_or(-1, |f| f.epoch),
            holder: self.ctx.holder.to_owned(),
            org_id: Some(d.org_id),
            agent_id: Some(d.agent_id),
            generation: Some(d.generation),
            action,
            outcome,
            assistant_id: assistant_id.map(str::to_owned),
            operation_id,
            why: bounded(&self.with_voice(action, why), MESSAGE_MAX),
        }
    }

    /// A write's reason, with the voice rewrites it carries.
    fn with_voice(&self, action: &str, why: String) -> String {
        let d = self.decision;
        if d.normalizations.is_empty() || !matches!(action, "create" | "recreate" | "patch") {
            return why;
        }
        let voice: Vec<_> = d
            .normalizations
            .iter()
            .map(describe_normalization)
            .collect();
        format!("{why}; voice {}", voice.join(", "))
    }

    /// Writes the pending row of a write about to be sent.
    async fn begin(
        &self,
        action: &'static str,
        assistant_id: Option<&str>,
        operation_id: Option<Uuid>,
        why: String,
    ) -> Result<Begun, StoreError> {
        let row = self.row(
            action,
            JournalOutcome::Pending,
            assistant_id,
            operation_id,
            why,
        );
        let id = self.ctx.store.begin_write(&row).await?;
        Ok(Begun::of(id, row))
    }

    /// Completes a begun write with what came of its request: the assistant id of the answer,
    /// else `assistant_id`, else the one the row began with.
    fn finish(
        &mut self,
        begun: Begun,
        result: &Result<Value, CallError>,
        assistant_id: Option<&str>,
    ) {
        let answered = result
            .as_ref()
            .ok()
            .and_then(|v| v.get("id"))
            .and_then(Value::as_str)
            .or(assistant_id);
        let (outcome, why) = match result {
            Err(e) if e.local() => {
                // Never reached Vapi: not a write.
                self.discarded.push(begun.id);
                return;
            }
            Ok(_) => (JournalOutcome::Ok, begun.why),
            Err(e) => (
                journal_outcome(e),
                bounded(&format!("{}; {}", begun.why, error_why(e)), MESSAGE_MAX),
            ),
        };
        // A completion updates the row `begin` wrote: only the outcome, the finish, the
        // assistant and the reason are written; the row keeps its lease, epoch and holder.
        self.entries.push(JournalEntry {
            id: Some(begun.id),
            started_at: begun.started,
            finished_at: Utc::now(),
            lease: String::new(),
            epoch: 0,
            holder: String::new(),
            org_id: None,
            agent_id: None,
            generation: None,
            action: begun.action,
            outcome,
            assistant_id: answered.map(str::to_owned).or(begun.assistant_id),
            operation_id: begun.operation_id,
            why,
        });
    }
}

impl Begun {
    fn of(id: i64, row: JournalEntry) -> Self {
        Self {
            id,
            started: row.started_at,
            action: row.action,
            assistant_id: row.assistant_id,
            operation_id: row.operation_id,
            why: row.why,
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

/// Sends one journaled write: refused locally → no row; else the pending row, the request, and
/// its completion. A journal that cannot be written stops the write before it is sent.
async fn write<F, Fut>(
    journal: &mut Journal<'_>,
    lane: &Lane,
    action: &'static str,
    assistant_id: Option<&str>,
    why: String,
    send: F,
) -> Result<Result<Value, CallError>, StoreError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Value, CallError>>,
{
    if let Some(refused) = lane.refuses_write() {
        return Ok(Err(refused));
    }
    let begun = journal.begin(action, assistant_id, None, why).await?;
    let result = send().await;
    journal.finish(begun, &result, assistant_id);
    Ok(result)
}

/// Applies one agent's decision with its key's lane. Dry-run and hands-off decisions send
/// nothing.
/// What [`decision`] would return, without running it, for a decision that needs no call and
/// no journal row: one that writes nothing (in sync with the assistant it holds, invalid,
/// waiting, deleted) and has no duplicate to delete, no create intent to settle and no adoption
/// to journal. `None` for every other decision, which must go through [`decision`]. A steady
/// pass is all such decisions; settling them inline spares each a future of its own.
pub(crate) fn needs_nothing(d: &Decision) -> Option<Applied> {
    let quiet = !d.action.writes()
        && d.duplicates.is_empty()
        && d.intent.is_none()
        && !matches!(d.action, Action::InSync { adopted: true, .. });
    quiet.then(Applied::nothing)
}

pub(crate) async fn decision(
    ctx: &PassContext<'_>,
    intents: &Intents,
    d: &Decision,
    lane: &Lane,
) -> Applied {
    let mut journal = Journal::new(ctx, d);
    let mut applied = Applied::nothing();
    if ctx.settings.dry_run || d.mode != Mode::Enforce {
        return applied;
    }
    if let Some(intent) = d
        .intent
        .as_ref()
        .filter(|_| !matches!(d.action, Action::AwaitCreate { .. }))
    {
        // Found, replaced by this pass's create, or moot: the old intent is settled either way.
        applied.settle_intent = true;
        applied.create_settled = Some(intent_fate(intent, d));
    }
    applied.effect = match &d.action {
        Action::InSync {
            assistant_id,
            adopted: true,
        } => {
            journal.entries.push(journal.row(
                "adopt",
                JournalOutcome::Ok,
                Some(assistant_id),
                d.intent.as_ref().map(|i| i.operation_id),
                "its ownership marker names this agent and nothing else is recorded".into(),
            ));
            Effect::NoWrite
        }
        Action::InSync { .. }
        | Action::Invalid { .. }
        | Action::AwaitCreate { .. }
        | Action::Deleted => Effect::NoWrite,
        Action::Create { body } | Action::Recreate { body, .. } => {
            if !may_write(ctx) {
                Effect::Skipped
            } else {
                let previous = match &d.action {
                    Action::Recreate { previous_id, .. } => Some(previous_id.as_str()),
                    _ => None,
                };
                create(
                    ctx,
                    intents,
                    &mut journal,
                    &mut applied,
                    lane,
                    body,
                    previous,
                )
                .await
            }
        }
        Action::Patch {
            assistant_id,
            patch,
            drift,
            ..
        } => {
            if !may_write(ctx) {
                applied.settle_intent = false;
                applied.create_settled = None;
                Effect::Skipped
            } else {
                let why = format!("drift: {}", reconcile::describe_drift(drift));
                let (result, fallback) = voice_fallback(
                    ctx,
                    &mut journal,
                    lane,
                    "patch",
                    Target::Patch(assistant_id),
                    patch.clone(),
                    why,
                    None,
                )
                .await;
                applied.fallback = fallback;
                match result {
                    Err(Stop::NotRecorded(error)) => Effect::NotRecorded {
                        error,
                        create: false,
                    },
                    Err(Stop::Call(CallError::Stopped)) => Effect::Skipped,
                    Ok(answer) => {
                        let desired = applied_body(d, applied.fallback.as_ref());
                        let verified = verify(
                            ctx,
                            &mut journal,
                            lane,
                            assistant_id,
                            desired.as_ref(),
                            answer,
                        )
                        .await;
                        Effect::Patched { verified }
                    }
                    Err(Stop::Call(CallError::Vapi(VapiError::NotFound))) => Effect::Gone,
                    Err(Stop::Call(error)) => Effect::Failed {
                        what: format!("patch assistant {assistant_id}"),
                        error,
                        assistant_id: None,
                    },
                }
            }
        }
        Action::Delete { assistant_ids } => {
            if !may_write(ctx) {
                Effect::Skipped
            } else {
                delete_all(ctx, &mut journal, lane, assistant_ids).await
            }
        }
    };
    if !matches!(applied.effect, Effect::Skipped) {
        let kept = kept_assistant(d, &applied.effect);
        applied.duplicates = remove_duplicates(ctx, &mut journal, lane, d, kept.as_deref()).await;
    }
    applied.journal = journal.entries;
    applied.discarded = journal.discarded;
    applied
}

/// The assistant the agent keeps after its main action, which its duplicates are named against.
fn kept_assistant(d: &Decision, effect: &Effect) -> Option<String> {
    match (effect, &d.action) {
        (Effect::Created { id, .. }, _) => Some(id.clone()),
        (_, Action::InSync { assistant_id, .. } | Action::Patch { assistant_id, .. }) => {
            Some(assistant_id.clone())
        }
        _ => None,
    }
}

/// What became of the create an outstanding intent recorded: it landed (a listed assistant
/// carries its operation id), or it is absent now that the plan replaces or forgets it.
fn intent_fate(intent: &CreateIntent, d: &Decision) -> CreateSettled {
    match &d.intent_landed {
        Some(id) => CreateSettled {
            operation_id: intent.operation_id,
            outcome: JournalOutcome::Ok,
            assistant_id: Some(id.clone()),
            why: format!("found in Vapi as {id}"),
        },
        None => CreateSettled {
            operation_id: intent.operation_id,
            outcome: JournalOutcome::Failed,
            assistant_id: None,
            why: "no assistant carries its operation id after the grace period".into(),
        },
    }
}

/// The full body the assistant should hold after a successful write (with the fallback voice
/// when that was sent instead).
fn applied_body(d: &Decision, fallback: Option<&Fallback>) -> Option<Map<String, Value>> {
    let mut body = d.desired.clone()?;
    if let Some(f) = fallback {
        body.insert("voice".to_owned(), f.voice.clone());
    }
    Some(body)
}

/// Compares a write's answer with the whole desired body; patches what else differs once.
async fn verify(
    ctx: &PassContext<'_>,
    journal: &mut Journal<'_>,
    lane: &Lane,
    assistant_id: &str,
    desired: Option<&Map<String, Value>>,
    answer: Value,
) -> Verified {
    let (Some(desired), Value::Object(answer)) = (desired, answer) else {
        return Verified::default();
    };
    let Some((patch, drift)) = reconcile::residual(desired, answer) else {
        return Verified::default();
    };
    if !may_write(ctx) {
        return Verified {
            repaired: Vec::new(),
            unresolved: Some(Unresolved { drift, error: None }),
        };
    }
    let why = format!(
        "Vapi's answer differed: {}",
        reconcile::describe_drift(&drift)
    );
    let sent = write(journal, lane, "patch", Some(assistant_id), why, || {
        ctx.send(lane.update(ASSISTANT, assistant_id, &patch, ctx.cancel))
    })
    .await;
    let unresolved = match sent {
        Ok(Ok(Value::Object(again))) => {
            reconcile::residual(desired, again).map(|(_, still)| Unresolved {
                drift: still,
                error: None,
            })
        }
        Ok(Ok(_)) => None,
        Ok(Err(error)) => Some(Unresolved {
            drift: drift.clone(),
            error: Some(error),
        }),
        Err(error) => Some(Unresolved {
            drift: drift.clone(),
            error: Some(CallError::Vapi(VapiError::Transport(format!(
                "the journal could not be written, so nothing was sent: {error}"
            )))),
        }),
    };
    Verified {
        repaired: drift,
        unresolved,
    }
}

/// Why a write stopped short of an answer.
enum Stop {
    Call(CallError),
    NotRecorded(StoreError),
}

/// Records the intent (fenced, committed with the other creates ready now) with the POST's
/// pending journal row, then POSTs once.
async fn create(
    ctx: &PassContext<'_>,
    intents: &Intents,
    journal: &mut Journal<'_>,
    applied: &mut Applied,
    lane: &Lane,
    body: &Map<String, Value>,
    previous: Option<&str>,
) -> Effect {
    let d = journal.decision;
    let action = if previous.is_some() {
        "recreate"
    } else {
        "create"
    };
    if let Some(refused) = lane.refuses_write() {
        // Nothing is recorded for a call that cannot be sent; an old intent is still settled.
        return Effect::Failed {
            what: format!("{action} the assistant"),
            error: refused,
            assistant_id: None,
        };
    }
    let op = Uuid::new_v4();
    let intent_at = tokio::time::Instant::now();
    let intent = CreateIntent {
        operation_id: op,
        generation: d.generation,
        started_at: Utc::now(),
    };
    let why = match previous {
        Some(p) => format!("the recorded assistant {p} is gone from Vapi"),
        None => "no assistant of this agent exists".to_owned(),
    };
    let row = journal.row(action, JournalOutcome::Pending, None, Some(op), why);
    let epoch = ctx.owner.fence_of_org(d.org_id).map_or(-1, |f| f.epoch);
    let begun = match intents.record(d.agent_id, intent, epoch, row.clone()).await {
        Ok(id) => Begun::of(id, row),
        Err(StoreError::Fenced { .. }) => return Effect::Skipped,
        Err(error) => {
            return Effect::NotRecorded {
                error,
                create: true,
            };
        }
    };
    let why = begun.why.clone();
    let (result, fallback) = voice_fallback(
        ctx,
        journal,
        lane,
        action,
        Target::Create { intent_at },
        reconcile::with_operation(body.clone(), op),
        why,
        Some(begun),
    )
    .await;
    applied.fallback = fallback;
    match result {
        Ok(created) => {
            applied.settle_intent = true;
            let Some(id) = created.get("id").and_then(Value::as_str).map(str::to_owned) else {
                // Keep the intent: the assistant exists and the next pass adopts it.
                applied.settle_intent = false;
                if let Some(e) = journal.entries.last_mut() {
                    e.outcome = JournalOutcome::Unknown;
                    e.why = format!("{}; the answer carried no id", e.why);
                }
                return Effect::CreatedWithoutId { operation_id: op };
            };
            let desired = applied_body(d, applied.fallback.as_ref());
            let verified = verify(ctx, journal, lane, &id, desired.as_ref(), created).await;
            Effect::Created { id, verified }
        }
        Err(Stop::NotRecorded(error)) => Effect::NotRecorded {
            error,
            create: true,
        },
        Err(Stop::Call(error)) if error.outcome_unknown() => {
            applied.settle_intent = false;
            Effect::CreateUnknown {
                operation_id: op,
                error,
            }
        }
        Err(Stop::Call(CallError::Stopped)) => {
            // Nothing was sent: the intent goes, with its row.
            applied.settle_intent = true;
            Effect::Skipped
        }
        Err(Stop::Call(error)) => {
            applied.settle_intent = true;
            Effect::Failed {
                what: format!("{action} the assistant"),
                error,
                assistant_id: None,
            }
        }
    }
}

/// Sends `body` (a create body or a patch); when Vapi refuses its voice, sends it once more with
/// the fallback voice. Any other 400 is not retried. Each attempt is a journaled write; a create
/// passes the row its intent transaction began for the first attempt.
#[allow(clippy::too_many_arguments)]
async fn voice_fallback(
    ctx: &PassContext<'_>,
    journal: &mut Journal<'_>,
    lane: &Lane,
    action: &'static str,
    target: Target<'_>,
    mut body: Map<String, Value>,
    why: String,
    begun: Option<Begun>,
) -> (Result<Value, Stop>, Option<Fallback>) {
    let result = send(
        ctx,
        journal,
        lane,
        action,
        target,
        &body,
        why.clone(),
        begun,
    )
    .await;
    let refused = match &result {
        Err(Stop::Call(CallError::Vapi(VapiError::BadRequest { messages }))) => {
            messages.iter().find(|m| is_voice_rejection(m)).cloned()
        }
        _ => None,
    };
    let fallback_voice = ctx.settings.plan.voices.fallback_voice();
    let (Some(message), Some(voice)) = (refused, body.get("voice").cloned()) else {
        return (result, None);
    };
    if voice == fallback_voice || !may_write(ctx) {
        return (result, None);
    }
    // The refused attempt's row says why it failed.
    if let Some(e) = journal.entries.last_mut() {
        e.why = format!("Vapi refused voice {}: {message}", voice_label(&voice));
    }
    let fallback = Fallback {
        from: voice_label(&voice),
        to: voice_label(&fallback_voice),
        message,
        voice: fallback_voice.clone(),
    };
    body.insert("voice".to_owned(), fallback_voice);
    let again = send(ctx, journal, lane, action, target, &body, why, None).await;
    (again, Some(fallback))
}

/// What a body is sent to.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// PATCH this assistant.
    Patch(&'a str),
    /// POST a new one, under the intent taken at this instant (bounds a retry after a 429).
    Create { intent_at: tokio::time::Instant },
}

impl Target<'_> {
    fn assistant_id(&self) -> Option<&str> {
        match self {
            Self::Patch(id) => Some(id),
            Self::Create { .. } => None,
        }
    }
}

/// One attempt of a create or patch, journaled (with `begun`'s row when given).
#[allow(clippy::too_many_arguments)]
async fn send(
    ctx: &PassContext<'_>,
    journal: &mut Journal<'_>,
    lane: &Lane,
    action: &'static str,
    target: Target<'_>,
    body: &Map<String, Value>,
    why: String,
    begun: Option<Begun>,
) -> Result<Value, Stop> {
    let assistant_id = target.assistant_id();
    let call = || async {
        match target {
            Target::Patch(id) => ctx.send(lane.update(ASSISTANT, id, body, ctx.cancel)).await,
            Target::Create { intent_at } => {
                ctx.send(lane.create(ASSISTANT, body, intent_at, ctx.cancel))
                    .await
            }
        }
    };
    let result = match begun {
        Some(begun) => {
            let result = call().await;
            journal.finish(begun, &result, None);
            result
        }
        None => write(journal, lane, action, assistant_id, why, call)
            .await
            .map_err(Stop::NotRecorded)?,
    };
    result.map_err(Stop::Call)
}

/// Deletes each assistant and confirms it is gone (a 404 on GET).
async fn delete_all(
    ctx: &PassContext<'_>,
    journal: &mut Journal<'_>,
    lane: &Lane,
    ids: &[String],
) -> Effect {
    for id in ids {
        if let Err(error) = delete_confirmed(ctx, journal, lane, id, "the agent is deleted").await {
            return Effect::Failed {
                what: format!("delete assistant {id}"),
                error,
                assistant_id: Some(id.clone()),
            };
        }
    }
    Effect::Deleted { ids: ids.to_vec() }
}

/// DELETE, then GET to confirm a 404. A 404 on the DELETE itself means already gone.
async fn delete_confirmed(
    ctx: &PassContext<'_>,
    journal: &mut Journal<'_>,
    lane: &Lane,
    id: &str,
    why: &str,
) -> Result<(), CallError> {
    let stop = ctx.cancel;
    let confirm = || async {
        match ctx.send(lane.delete(ASSISTANT, id, stop)).await {
            Ok(_) | Err(CallError::Vapi(VapiError::NotFound)) => {
                match ctx.send(lane.get(ASSISTANT, id, stop)).await {
                    Err(CallError::Vapi(VapiError::NotFound)) => Ok(Value::Null),
                    Ok(_) => Err(CallError::Vapi(VapiError::UnexpectedStatus {
                        status: 200,
                        message: "the assistant is still there after DELETE".into(),
                    })),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    };
    match write(journal, lane, "delete", Some(id), why.to_owned(), confirm).await {
        Ok(result) => result.map(|_| ()),
        Err(e) => Err(CallError::Vapi(VapiError::Transport(format!(
            "the journal could not be written, so nothing was sent: {e}"
        )))),
    }
}

/// Deletes the agent's duplicates after its main action; the first failure stops the rest.
async fn remove_duplicates(
    ctx: &PassContext<'_>,
    journal: &mut Journal<'_>,
    lane: &Lane,
    d: &Decision,
    kept: Option<&str>,
) -> Duplicates {
    let mut out = Duplicates::default();
    if d.duplicates.is_empty() || ctx.settings.dry_run || d.mode != Mode::Enforce {
        return out;
    }
    let kept = kept.unwrap_or_default();
    for id in &d.duplicates {
        if !may_write(ctx) {
            out.skipped = true;
            break;
        }
        let why = format!("duplicate of {kept}");
        if let Err(err) = delete_confirmed(ctx, journal, lane, id, &why).await {
            out.failed = Some((id.clone(), err));
            break;
        }
        out.removed.push(id.clone());
    }
    out
}

/// Deletes an orphan whose grace period has passed.
pub(crate) async fn stray(ctx: &PassContext<'_>, s: &Stray, lane: &Lane) -> StrayApplied {
    let mut out = StrayApplied {
        deleted: false,
        skipped: false,
        journal: Vec::new(),
        discarded: Vec::new(),
    };
    if !may_write(ctx) {
        out.skipped = true;
        return out;
    }
    let fence = ctx.owner.fence_of_marker(s.org_id.as_deref());
    let why = format!(
        "orphan: agent {} no longer exists (first seen {})",
        s.agent_id,
        s.first_seen
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    if let Some(refused) = lane.refuses_write() {
        tracing::debug!(assistant_id = %s.assistant_id, kind = refused.kind(), "orphan not deleted: refused locally");
        return out;
    }
    let now = Utc::now();
    let row = JournalEntry {
        id: None,
        started_at: now,
        finished_at: now,
        lease: fence.map(|f| f.name.clone()).unwrap_or_default(),
        epoch: fence.map_or(-1, |f| f.epoch),
        holder: ctx.holder.to_owned(),
        org_id: None,
        agent_id: Some(s.agent_id),
        generation: None,
        action: "delete",
        outcome: JournalOutcome::Pending,
        assistant_id: Some(s.assistant_id.clone()),
        operation_id: None,
        why,
    };
    let id = match ctx.store.begin_write(&row).await {
        Ok(id) => id,
        Err(e) => {
            tracing::warn!(assistant_id = %s.assistant_id, error = %e, "orphan not deleted: the journal could not be written");
            return out;
        }
    };
    let result = match ctx
        .send(lane.delete(ASSISTANT, &s.assistant_id, ctx.cancel))
        .await
    {
        Ok(_) | Err(CallError::Vapi(VapiError::NotFound)) => Ok(()),
        Err(e) => Err(e),
    };
    let (outcome, why) = match &result {
        Ok(()) => (JournalOutcome::Ok, row.why),
        Err(e) if e.local() => {
            out.discarded.push(id);
            return out;
        }
        Err(e) => {
            tracing::warn!(assistant_id = %s.assistant_id, kind = e.kind(), error = %e, "could not delete an orphaned assistant");
            (
                journal_outcome(e),
                bounded(&format!("{}; {}", row.why, error_why(e)), MESSAGE_MAX),
            )
        }
    };
    out.deleted = result.is_ok();
    out.journal.push(JournalEntry {
        id: Some(id),
        finished_at: Utc::now(),
        outcome,
        why,
        ..row
    });
    out
}
