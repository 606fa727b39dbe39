//! The phone-number stage of a full pass, in two steps around the assistants:
//!
//! ```text
//!  unbind (before assistant writes)  numbers of deleted or unbound agents: assistantId → null,
//!     │                              so no call rings an assistant about to be deleted; an agent
//!     │                              whose number could not be unbound keeps its assistant
//!  … assistants applied and recorded …
//!  point (after)                     numbers of live agents: assistantId → the assistant the
//!                                    agent's status now records (a recreate is re-pointed in
//!                                    the same pass)
//! ```
//! Each key's numbers are listed once per pass (the first step that needs them) and the listing
//! is kept up to date with this pass's own writes. Decisions are pure
//! ([`crate::reconcile::numbers::decide_number`]); the only write is `PATCH /phone-number/{id}`
//! with `assistantId`, journaled (`kind = phone_number`, naming the agent). Focused passes do not
//! run this stage: a saved binding notifies a full pass.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::lane::{CallError, Lane};
use super::outcome::{MESSAGE_MAX, Reason, bounded, call_failure_message, resource_status};
use super::pass::{PassContext, PassError};
use crate::reconcile::Mode;
use crate::reconcile::numbers::{
    ListedNumber, NumberAction, NumberDecision, Target, decide_number,
};
use crate::store::{BindingRow, JournalOutcome, ResourceStatus, ResourceWrite, SyncState};
use crate::vapi::{Resource, VapiError};

const NUMBER: Resource = Resource::PhoneNumber;

/// What the number stage did, for the pass report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NumberReport {
    pub bindings: usize,
    pub listed: usize,
    pub in_sync: usize,
    pub pointed: usize,
    pub unbound: usize,
    pub waiting: usize,
    pub failed: usize,
    pub drifting: usize,
    pub journal_entries: usize,
    #[serde(skip)]
    pub states: HashMap<Uuid, SyncState>,
}

/// The pass's numbers: each key's listing, once, and what was written.
#[derive(Default)]
pub(crate) struct Numbers {
    listings: HashMap<String, Result<Vec<ListedNumber>, String>>,
    /// Bindings the first step found: none means the second has nothing to read either.
    bindings: Option<usize>,
    pub(crate) report: NumberReport,
}

/// Which bindings a step handles.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Unbind,
    Point,
}

impl Numbers {
    /// Unbinds the numbers of deleted (or no) agents; returns the deleted agents whose number is
    /// still bound, whose assistants must not be deleted this pass.
    pub(crate) async fn unbind(
        &mut self,
        ctx: &PassContext<'_>,
    ) -> Result<HashSet<Uuid>, PassError> {
        self.step(ctx, Step::Unbind).await
    }

    /// Points the numbers of live agents at the assistant each agent's status records now.
    pub(crate) async fn point(&mut self, ctx: &PassContext<'_>) -> Result<(), PassError> {
        self.step(ctx, Step::Point).await.map(|_| ())
    }

    async fn step(
        &mut self,
        ctx: &PassContext<'_>,
        step: Step,
    ) -> Result<HashSet<Uuid>, PassError> {
        if self.bindings == Some(0) {
            return Ok(HashSet::new());
        }
        let rows = ctx.store.load_bindings(ctx.owner.shards()).await?;
        self.bindings = Some(rows.len());
        let mut held = HashSet::new();
        let mut statuses = Vec::new();
        let mut rows_out = Vec::new();
        if step == Step::Point {
            self.report.bindings = rows.len();
        }
        for row in rows {
            let b = &row.binding;
            let unbinding = b.agent_id.is_none() || row.agent_deleted;
            if unbinding != (step == Step::Unbind) {
                continue;
            }
            let target = target(&row);
            let (key, scope) = match ctx.org_keys.get(&b.org_id) {
                Some(Ok(key)) => (key, format!("org {}", b.org_id)),
                Some(Err(why)) => {
                    statuses.push(status(&row, SyncState::Failed, Reason::CredentialsUnavailable, None, format!("The organization's own Vapi key cannot be used: {why}. Nothing was sent.")));
                    if row.agent_deleted {
                        held.extend(b.agent_id);
                    }
                    continue;
                }
                None => (&ctx.platform.key, "platform".to_owned()),
            };
            let lane = ctx.lanes.lane(key, &scope);
            let listed = self.listing(ctx, &lane).await;
            let listed = match listed {
                Ok(l) => l,
                Err(why) => {
                    statuses.push(status(
                        &row,
                        SyncState::Failed,
                        Reason::VapiUnavailable,
                        None,
                        format!("Could not list phone numbers: {why}. The next pass tries again."),
                    ));
                    if row.agent_deleted {
                        held.extend(b.agent_id);
                    }
                    continue;
                }
            };
            let d = decide_number(b, &target, &listed);
            let (s, row_out) = apply(ctx, &row, &d, &lane).await;
            if let (Some(written), NumberAction::Point { phone_id, to, .. }) = (&row_out, &d.action)
            {
                if written.outcome == JournalOutcome::Ok {
                    self.update_listing(lane.fingerprint(), phone_id, to.clone());
                }
            }
            if row.agent_deleted && s.state != SyncState::Synced {
                held.extend(b.agent_id);
            }
            rows_out.extend(row_out);
            count(&mut self.report, &s, &d);
            self.report.states.insert(s.id, s.state);
            // A number still ringing what it rang at this generation writes no status.
            let steady = matches!(d.action, NumberAction::InSync { .. })
                && row.recorded.as_ref().is_some_and(|(g, state, a)| {
                    *g == b.generation && state == "synced" && *a == s.assistant_id
                });
            if !steady {
                statuses.push(s);
            }
        }
        self.report.journal_entries += rows_out.len();
        ctx.store.finish_resource_writes(&rows_out).await?;
        ctx.store
            .write_number_outcomes(&ctx.owner.fences(), &statuses)
            .await?;
        Ok(held)
    }

    async fn listing(
        &mut self,
        ctx: &PassContext<'_>,
        lane: &Arc<Lane>,
    ) -> Result<Vec<ListedNumber>, String> {
        if let Some(l) = self.listings.get(lane.fingerprint()) {
            return l.clone();
        }
        let listed = match lane.list_all(NUMBER, ctx.cancel).await {
            Ok(l) => Ok(l
                .items
                .iter()
                .filter_map(|item| ListedNumber::from_value(&item.value()))
                .collect::<Vec<_>>()),
            Err(e) => Err(format!("key {}: {e}", lane.fingerprint())),
        };
        if let Ok(l) = &listed {
            self.report.listed += l.len();
        }
        self.listings
            .insert(lane.fingerprint().to_owned(), listed.clone());
        listed
    }

    fn update_listing(&mut self, fingerprint: &str, phone_id: &str, to: Option<String>) {
        if let Some(Ok(list)) = self.listings.get_mut(fingerprint) {
            if let Some(n) = list.iter_mut().find(|n| n.id == phone_id) {
                n.assistant_id = to;
            }
        }
    }
}

/// What the number stage would do now, from what each agent's status records (a preview: reads
/// only; an assistant the pass would recreate is shown by its current record).
pub(crate) async fn preview(
    ctx: &PassContext<'_>,
    filter: &super::preview::PlanFilter,
) -> Result<Vec<super::preview::ResourceChange>, PassError> {
    let mut numbers = Numbers::default();
    let mut out = Vec::new();
    for row in ctx.store.load_bindings(ctx.owner.shards()).await? {
        let b = &row.binding;
        if filter.org.is_some_and(|o| o != b.org_id)
            || filter.agent.is_some_and(|a| Some(a) != b.agent_id)
        {
            continue;
        }
        let key = match ctx.org_keys.get(&b.org_id) {
            Some(Ok(key)) => key,
            Some(Err(_)) => continue,
            None => &ctx.platform.key,
        };
        let lane = ctx.lanes.lane(key, "preview");
        let Ok(listed) = numbers.listing(ctx, &lane).await else {
            continue;
        };
        let d = decide_number(b, &target(&row), &listed);
        let (action, vapi_id, detail) = match &d.action {
            NumberAction::Point { phone_id, from, to } => (
                if to.is_some() { "point" } else { "unbind" },
                Some(phone_id.clone()),
                format!(
                    "rings {}, should ring {}",
                    ringing(from.as_deref()),
                    ringing(to.as_deref())
                ),
            ),
            NumberAction::NotFound => (
                "not-found",
                None,
                "not among the organization's numbers".to_owned(),
            ),
            NumberAction::Ambiguous { ids } => ("ambiguous", None, ids.join(",")),
            _ => continue,
        };
        out.push(super::preview::ResourceChange {
            kind: "phone_number",
            id: b.id,
            org_id: b.org_id,
            name: d.label.clone(),
            action,
            vapi_id,
            fields: Vec::new(),
            detail,
        });
    }
    Ok(out)
}

/// Where a binding should ring, from its agent's recorded status.
fn target(row: &BindingRow) -> Target {
    if row.binding.agent_id.is_none() || row.agent_deleted {
        return Target::Nobody;
    }
    match (&row.agent_assistant, row.agent_state) {
        (Some(a), Some(state)) if state != SyncState::Deleted => Target::Assistant(a.clone()),
        (_, state) => Target::Waiting(format!(
            "its agent has no assistant in Vapi yet ({}{})",
            state.map_or("pending", SyncState::as_str),
            row.agent_reason
                .as_deref()
                .map(|r| format!(", {r}"))
                .unwrap_or_default()
        )),
    }
}

fn count(report: &mut NumberReport, s: &ResourceStatus, d: &NumberDecision) {
    match (s.state, &d.action) {
        (SyncState::Failed, _) => report.failed += 1,
        (SyncState::Drifted | SyncState::Paused, _) => report.drifting += 1,
        (SyncState::Pending, _) => report.waiting += 1,
        (_, NumberAction::Point { to: None, .. }) => report.unbound += 1,
        (_, NumberAction::Point { .. }) => report.pointed += 1,
        _ => report.in_sync += 1,
    }
}

fn status(
    row: &BindingRow,
    state: SyncState,
    reason: Reason,
    assistant_id: Option<String>,
    message: String,
) -> ResourceStatus {
    let mut s = resource_status(
        row.binding.id,
        row.binding.generation,
        state,
        reason,
        &message,
    );
    s.vapi_id = row.binding.vapi_id.clone();
    s.assistant_id = assistant_id;
    s
}

fn ringing(a: Option<&str>) -> String {
    a.map_or_else(|| "nobody".to_owned(), |a| format!("assistant {a}"))
}

async fn apply(
    ctx: &PassContext<'_>,
    row: &BindingRow,
    d: &NumberDecision,
    lane: &Lane,
) -> (ResourceStatus, Option<ResourceWrite>) {
    let fp = lane.fingerprint().to_owned();
    let label = &d.label;
    let mut s = match &d.action {
        NumberAction::NotFound => status(
            row,
            SyncState::Failed,
            Reason::NumberNotFound,
            None,
            format!(
                "{label} is not among the organization's numbers in Vapi (key {fp}). The controller never buys or imports a number: add it in Vapi, or fix phone_numbers."
            ),
        ),
        NumberAction::Ambiguous { ids } => status(
            row,
            SyncState::Failed,
            Reason::NumberAmbiguous,
            None,
            format!(
                "{label} matches {} numbers in Vapi ({}); name it by vapi_phone_number_id. Nothing was sent.",
                ids.len(),
                ids.join(", ")
            ),
        ),
        NumberAction::Waiting { phone_id, why } => {
            let mut s = status(
                row,
                SyncState::Pending,
                Reason::WaitingForAssistant,
                None,
                format!("{label} is left as it is: {why}."),
            );
            s.vapi_id = Some(phone_id.clone());
            s
        }
        NumberAction::InSync {
            phone_id,
            assistant_id,
        } => {
            let mut s = status(
                row,
                SyncState::Synced,
                Reason::InSync,
                assistant_id.clone(),
                format!("{label} rings {}.", ringing(assistant_id.as_deref())),
            );
            s.vapi_id = Some(phone_id.clone());
            s
        }
        NumberAction::Point { phone_id, from, to } => {
            let hands_off = ctx.settings.dry_run || d.mode != Mode::Enforce;
            if hands_off {
                let (state, reason) = match (ctx.settings.dry_run, d.mode) {
                    (true, _) => (SyncState::Drifted, Reason::DryRun),
                    (false, Mode::Paused) => (SyncState::Paused, Reason::Paused),
                    _ => (SyncState::Drifted, Reason::ObserveOnly),
                };
                let mut s = status(
                    row,
                    state,
                    reason,
                    from.clone(),
                    format!(
                        "{label} rings {} and should ring {}; nothing was sent ({}).",
                        ringing(from.as_deref()),
                        ringing(to.as_deref()),
                        reason.as_str()
                    ),
                );
                s.vapi_id = Some(phone_id.clone());
                s.key_fingerprint = Some(fp);
                return (s, None);
            }
            if ctx.cancel.is_cancelled() || !ctx.gate.may_write() {
                let mut s = status(
                    row,
                    SyncState::Pending,
                    Reason::WaitingForAssistant,
                    from.clone(),
                    format!(
                        "{label} was not re-pointed: shutdown began or leadership could not be proven."
                    ),
                );
                s.vapi_id = Some(phone_id.clone());
                return (s, None);
            }
            return point(ctx, row, d, lane, phone_id, from.as_deref(), to.as_deref()).await;
        }
    };
    s.key_fingerprint = Some(fp);
    (s, None)
}

async fn point(
    ctx: &PassContext<'_>,
    row: &BindingRow,
    d: &NumberDecision,
    lane: &Lane,
    phone_id: &str,
    from: Option<&str>,
    to: Option<&str>,
) -> (ResourceStatus, Option<ResourceWrite>) {
    let fp = lane.fingerprint().to_owned();
    let label = &d.label;
    let fence = ctx.owner.fence_of_org(d.org_id);
    let why = match to {
        Some(a) => format!("{label}: ring assistant {a} (it rang {})", ringing(from)),
        None => format!(
            "{label}: unbind (it rang {}), its agent is deleted or unbound",
            ringing(from)
        ),
    };
    let mut write = ResourceWrite {
        id: None,
        kind: "phone_number",
        started_at: Utc::now(),
        lease: fence.map(|f| f.name.clone()).unwrap_or_default(),
        epoch: fence.map_or(-1, |f| f.epoch),
        holder: ctx.holder.to_owned(),
        org_id: d.org_id,
        resource_id: d.binding,
        agent_id: d.agent_id,
        generation: d.generation,
        action: "patch",
        outcome: JournalOutcome::Pending,
        vapi_id: Some(phone_id.to_owned()),
        assistant_id: to.map(str::to_owned),
        operation_id: None,
        why: bounded(&why, MESSAGE_MAX),
    };
    let vs = |state, reason, assistant: Option<&str>, message: String| {
        let mut s = status(row, state, reason, assistant.map(str::to_owned), message);
        s.vapi_id = Some(phone_id.to_owned());
        s.key_fingerprint = Some(fp.clone());
        s
    };
    if let Some(e) = lane.refuses_write() {
        return (
            vs(
                SyncState::Pending,
                Reason::of_call(&e),
                from,
                call_failure_message("re-point the number", &e, &fp),
            ),
            None,
        );
    }
    match ctx.store.begin_resource_write(&write).await {
        Ok(id) => write.id = Some(id),
        Err(e) => {
            return (
                vs(
                    SyncState::Failed,
                    Reason::StoreUnavailable,
                    from,
                    format!(
                        "The journal row could not be written ({}), so nothing was sent.",
                        e.kind()
                    ),
                ),
                None,
            );
        }
    }
    let mut body = Map::new();
    body.insert(
        "assistantId".to_owned(),
        to.map_or(Value::Null, |a| Value::String(a.to_owned())),
    );
    let result = ctx
        .send(lane.update(NUMBER, phone_id, &body, ctx.cancel))
        .await;
    if let Err(e) = &result {
        if e.local() {
            // Refused before it reached Vapi: not a write.
            if let Some(id) = write.id {
                let _ = ctx.store.discard_resource_writes(&[id]).await;
            }
            return (
                vs(
                    SyncState::Pending,
                    Reason::of_call(e),
                    from,
                    call_failure_message("re-point the number", e, &fp),
                ),
                None,
            );
        }
    }
    let mut s = match &result {
        Ok(answer) => {
            let now = answer.get("assistantId").and_then(Value::as_str);
            if now == to {
                let (reason, message) = match to {
                    Some(a) => (
                        Reason::Bound,
                        format!(
                            "{label} now rings assistant {a} (it rang {}).",
                            ringing(from)
                        ),
                    ),
                    None => (
                        Reason::Unbound,
                        format!(
                            "{label} was unbound (it rang {}): its agent is deleted or unbound.",
                            ringing(from)
                        ),
                    ),
                };
                vs(SyncState::Synced, reason, to, message)
            } else {
                vs(
                    SyncState::Pending,
                    Reason::AnswerDiffers,
                    now,
                    format!(
                        "{label} was re-pointed but Vapi answers that it rings {}; the next pass looks again.",
                        ringing(now)
                    ),
                )
            }
        }
        Err(CallError::Vapi(VapiError::NotFound)) => vs(
            SyncState::Failed,
            Reason::NumberNotFound,
            from,
            format!(
                "Vapi answered 404 to re-pointing {label}: the number, or assistant {}, no longer exists there. The next pass looks again.",
                to.unwrap_or("-")
            ),
        ),
        Err(e) => {
            let reason = Reason::of_call(e);
            vs(
                reason.call_state(),
                reason,
                from,
                call_failure_message("re-point the number", e, &fp),
            )
        }
    };
    s.attempted = matches!(result, Ok(_) | Err(CallError::Vapi(_)));
    write.outcome = match &result {
        Ok(_) => JournalOutcome::Ok,
        Err(CallError::Vapi(VapiError::NotFound)) => JournalOutcome::Gone,
        Err(e) if e.outcome_unknown() => JournalOutcome::Unknown,
        Err(_) => JournalOutcome::Failed,
    };
    if let Err(e) = &result {
        write.why = bounded(&format!("{}; {}: {e}", write.why, e.kind()), MESSAGE_MAX);
    }
    (s, Some(write))
}
