//! The tools stage of a full pass: converges every tool before the assistants that call it.
//!
//! ```text
//!  Postgres: tools + status + intents, references ──┐
//!  Vapi: one paged LIST /tool per key with tools ───┴─▶ reconcile::tools::plan_tools (PURE)
//!     ▼ per key a ToolPlan                              guard (PURE): tool deletes + recreates
//!  apply (≤ C at once): journal row before each write (a create's with its intent, fenced)
//!     ▼ per tool a ResourceStatus
//!  record: tool_status + settled intents (fenced), journal completions
//! ```
//! The assistants' survey then reads `tool_status` to resolve each agent's tool names
//! ([`crate::reconcile::tools::resolve`]): a tool recreated here has its new id in every
//! assistant that calls it in this same pass, and an agent whose tool is not synced waits.
//! A key with no tool rows is never listed, so a fleet without tools pays nothing for this stage.
//! Focused passes do not run it (tools are listed, never looked up one by one); a tool save
//! notifies a full pass.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::lane::{CallError, Lane};
use super::outcome::{MESSAGE_MAX, Reason, bounded, resource_call_failed, resource_status};
use super::pass::{Guarded, PassContext, PassError, guard_gate};
use crate::reconcile::guard::{self, Impact};
use crate::reconcile::tools::{
    DesiredTool, ToolAction, ToolDecision, ToolPlan, ToolPlanInput, plan_tools, tool_marker,
};
use crate::reconcile::{ActualAssistant, CreateIntent, Mode, describe_drift, drift_paths};
use crate::store::{JournalOutcome, ResourceStatus, ResourceWrite, SyncState, ToolRecorded};
use crate::vapi::{Resource, VapiError};

const TOOL: Resource = Resource::Tool;

/// What the tools stage did, for the pass report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ToolReport {
    pub tools: usize,
    pub listed: usize,
    pub managed: usize,
    pub unmanaged: usize,
    pub in_sync: usize,
    pub created: usize,
    pub patched: usize,
    pub recreated: usize,
    pub adopted: usize,
    pub deleted: usize,
    pub duplicates_deleted: usize,
    pub blocked: usize,
    pub failed: usize,
    pub drifting: usize,
    pub status_writes: usize,
    pub journal_entries: usize,
    /// The blast-radius guard stopped the tools' writes this pass.
    pub guard_block: Option<i64>,
    #[serde(skip)]
    pub states: HashMap<Uuid, SyncState>,
    pub list_error: Option<String>,
}

/// Every tool's plan, with the lane of its key: what the stage (or a preview) acts on.
pub(crate) struct ToolSurvey {
    pub(crate) groups: Vec<(Arc<Lane>, ToolPlan)>,
    pub(crate) early: Vec<ResourceStatus>,
    pub(crate) recorded: HashMap<Uuid, ToolRecorded>,
    pub(crate) report: ToolReport,
}

/// Reads tools and lists each key's tools; plans; writes nothing.
pub(crate) async fn survey_tools(ctx: &PassContext<'_>) -> Result<ToolSurvey, PassError> {
    let shards = ctx.owner.shards();
    let rows = ctx.store.load_tools(shards).await?;
    let mut out = ToolSurvey {
        groups: Vec::new(),
        early: Vec::new(),
        recorded: HashMap::new(),
        report: ToolReport::default(),
    };
    if rows.is_empty() {
        return Ok(out);
    }
    // Every row under any shard: a tool marked for a row of another shard is never adopted here.
    let known: HashSet<Uuid> = if shards.is_all() {
        rows.iter().map(|(t, _)| t.id).collect()
    } else {
        ctx.store.tool_ids().await?.into_iter().collect()
    };
    // Who calls what: a deleted tool is still referenced when a live agent of its organization
    // names it and no live tool of that name has taken its place.
    let live: HashSet<(Uuid, &str)> = rows
        .iter()
        .filter(|(t, _)| !t.deleted)
        .map(|(t, _)| (t.org_id, t.name.as_str()))
        .collect();
    let references = if rows.iter().any(|(t, _)| t.deleted) {
        ctx.store.tool_references(shards).await?
    } else {
        Vec::new()
    };
    let mut callers: HashMap<(Uuid, String), Vec<String>> = HashMap::new();
    let mut calling_ids: HashMap<String, Vec<String>> = HashMap::new();
    for (org, agent, names, applied_ids) in references {
        for n in names {
            let entry = callers.entry((org, n)).or_default();
            if !entry.contains(&agent) {
                entry.push(agent.clone());
            }
        }
        for id in applied_ids {
            let entry = calling_ids.entry(id).or_default();
            if !entry.contains(&agent) {
                entry.push(agent.clone());
            }
        }
    }
    // A deleted tool is still called while a live agent names it (and no live tool of that name
    // took its place) or while an assistant was last given its id: it goes only after the
    // assistants calling it were patched.
    let mut referenced_by: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (t, _) in rows.iter().filter(|(t, _)| t.deleted) {
        let mut agents = Vec::new();
        if !live.contains(&(t.org_id, t.name.as_str())) {
            agents.extend(
                callers
                    .get(&(t.org_id, t.name.clone()))
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        for a in t
            .recorded_id
            .as_ref()
            .and_then(|id| calling_ids.get(id))
            .into_iter()
            .flatten()
        {
            if !agents.contains(a) {
                agents.push(a.clone());
            }
        }
        if !agents.is_empty() {
            referenced_by.insert(t.id, agents);
        }
    }
    out.report.tools = rows.iter().filter(|(t, _)| !t.deleted).count();
    let mut groups: HashMap<String, (Arc<Lane>, Vec<DesiredTool>)> = HashMap::new();
    for (tool, recorded) in rows {
        if let Some(r) = recorded {
            out.recorded.insert(tool.id, r);
        }
        let (key, scope) = match ctx.org_keys.get(&tool.org_id) {
            Some(Ok(key)) => (key, format!("org {}", tool.org_id)),
            Some(Err(why)) => {
                out.early.push(status(
                    &tool,
                    SyncState::Failed,
                    Reason::CredentialsUnavailable,
                    format!("The organization's own Vapi key cannot be used: {why}. Nothing was sent; the platform key is never used in its place."),
                ));
                continue;
            }
            None => (&ctx.platform.key, "platform".to_owned()),
        };
        groups
            .entry(key.fingerprint().to_owned())
            .or_insert_with(|| (ctx.lanes.lane(key, &scope), Vec::new()))
            .1
            .push(tool);
    }
    let now = Utc::now();
    let mut list_errors = Vec::new();
    let mut held: HashSet<Uuid> = HashSet::new();
    for (lane, tools) in groups.into_values() {
        let listed = if lane.rejection().is_some() && !lane.may_probe() {
            Err(CallError::Quarantined {
                fingerprint: lane.fingerprint().to_owned(),
                status: lane.rejection().map_or(401, |r| r.status),
                message: lane.rejection().map(|r| r.message).unwrap_or_default(),
            })
        } else {
            lane.list_all(TOOL, ctx.cancel).await
        };
        let listed: Vec<ActualAssistant> = match listed {
            Ok(listing) => {
                // A listed tool the controller cannot read, that is (or is marked as) one of
                // these rows: that row is held, not planned — planned without it, it would get
                // a second tool.
                for u in &listing.unreadable {
                    let marker = tool_marker(&u.fields);
                    for t in tools.iter().filter(|t| {
                        marker == Some(t.id) || (u.id.is_some() && u.id == t.recorded_id)
                    }) {
                        held.insert(t.id);
                        out.early.push(status(
                            t,
                            SyncState::Failed,
                            Reason::VapiBadResponse,
                            format!("Vapi lists this tool's {u}. Nothing was sent (a create would duplicate it); fix or delete that tool in Vapi."),
                        ));
                    }
                }
                listing
                    .items
                    .into_iter()
                    .map(ActualAssistant::from_item)
                    .collect()
            }
            Err(CallError::Stopped) => continue,
            Err(err) => {
                list_errors.push(format!("key {}: {err}", lane.fingerprint()));
                for t in &tools {
                    out.early.push(resource_call_failed(
                        t.id,
                        t.generation,
                        "list tools",
                        &err,
                        lane.fingerprint(),
                    ));
                }
                continue;
            }
        };
        out.report.listed += listed.len();
        let tools: Vec<DesiredTool> = tools
            .into_iter()
            .filter(|t| !held.contains(&t.id))
            .collect();
        let plan = plan_tools(&ToolPlanInput {
            tools: &tools,
            listed: &listed,
            referenced_by: &referenced_by,
            known_tools: &known,
            now,
            create_grace: ctx.settings.plan.create_grace,
        });
        out.report.managed += plan.managed;
        out.report.unmanaged += plan.unmanaged;
        out.groups.push((lane, plan));
    }
    if !list_errors.is_empty() {
        out.report.list_error = Some(list_errors.join("; "));
    }
    Ok(out)
}

/// What the guard counts for tools: deletes (a deleted tool's, duplicates) and recreates of
/// enforced tools, against the same limit as assistants, taken of the tool fleet.
pub(crate) fn assess(groups: &[(Arc<Lane>, ToolPlan)], ctx: &PassContext<'_>) -> Impact {
    let settings = ctx.settings.guard;
    let (mut deletes, mut recreates, mut fleet) = (0u64, 0u64, 0u64);
    for d in groups.iter().flat_map(|(_, p)| &p.decisions) {
        if !matches!(d.action, ToolAction::Delete { .. } | ToolAction::Deleted) {
            fleet += 1;
        }
        if ctx.settings.dry_run || d.mode != Mode::Enforce {
            continue;
        }
        deletes += d.duplicates.len() as u64;
        match &d.action {
            ToolAction::Delete { tool_ids } => deletes += tool_ids.len() as u64,
            ToolAction::Recreate { .. } => recreates += 1,
            _ => {}
        }
    }
    guard::impact(deletes, recreates, fleet, settings)
}

/// Surveys, guards, applies and records the tools of the shards owned.
pub(crate) async fn converge_tools(ctx: &PassContext<'_>) -> Result<ToolReport, PassError> {
    let ToolSurvey {
        groups,
        early,
        recorded,
        mut report,
    } = survey_tools(ctx).await?;
    let mut statuses = early;
    let impact = assess(&groups, ctx);
    let sample = || {
        let sample: Vec<Value> = groups
            .iter()
            .flat_map(|(_, p)| &p.decisions)
            .filter(|d| {
                matches!(
                    d.action,
                    ToolAction::Delete { .. } | ToolAction::Recreate { .. }
                ) || !d.duplicates.is_empty()
            })
            .take(20)
            .map(|d| json!({"kind": "tool", "action": d.action.verb(), "toolId": d.tool_id, "name": d.name, "duplicates": d.duplicates}))
            .collect();
        Value::Array(sample)
    };
    let held = match guard_gate(ctx, &impact, "tools", sample).await? {
        Guarded::Blocked(id) => {
            report.guard_block = Some(id);
            true
        }
        Guarded::Clear | Guarded::Confirmed(_) => false,
    };
    let mut settled_intents = Vec::new();
    let mut settled_creates = Vec::new();
    let mut journal = Vec::new();
    let mut discarded = Vec::new();
    let work: Vec<(ToolDecision, Arc<Lane>)> = groups
        .into_iter()
        .flat_map(|(lane, plan)| plan.decisions.into_iter().map(move |d| (d, lane.clone())))
        .collect();
    let mut results = futures::stream::iter(work)
        .map(|(d, lane)| async move {
            let applied = apply(ctx, &d, &lane, held).await;
            (d, applied)
        })
        .buffer_unordered(ctx.workers());
    while let Some((d, applied)) = results.next().await {
        let ToolApplied {
            status: s,
            settle_intent,
            create_settled,
            rows,
            discarded: gone,
        } = applied;
        if settle_intent {
            settled_intents.push(d.tool_id);
        }
        settled_creates.extend(create_settled);
        journal.extend(rows);
        discarded.extend(gone);
        let Some(s) = s else { continue };
        count(&mut report, &s, &d);
        report.states.insert(s.id, s.state);
        // A steady tool writes no status: a tool found in sync that was synced at this generation
        // (whatever the write that got it there), or the same non-writing verdict again.
        let in_sync = matches!(d.action, ToolAction::InSync { adopted: false, .. });
        let unchanged = recorded.get(&d.tool_id).is_some_and(|r| {
            r.observed_generation == s.observed_generation
                && r.state == Some(s.state)
                && (in_sync || (s.applied.is_none() && r.reason == s.reason))
        });
        if !unchanged {
            statuses.push(s);
        }
    }
    drop(results);
    for s in &statuses {
        report.states.entry(s.id).or_insert(s.state);
    }
    report.journal_entries = journal.len();
    ctx.store.finish_resource_writes(&journal).await?;
    ctx.store.discard_resource_writes(&discarded).await?;
    ctx.store.settle_tool_creates(&settled_creates).await?;
    report.status_writes = statuses.len();
    ctx.store
        .write_tool_outcomes(&ctx.owner.fences(), &statuses, &settled_intents)
        .await?;
    Ok(report)
}

fn count(report: &mut ToolReport, s: &ResourceStatus, d: &ToolDecision) {
    match (s.state, s.reason) {
        (SyncState::Failed, _) => report.failed += 1,
        (SyncState::Blocked, _) => report.blocked += 1,
        (SyncState::Drifted, _) => report.drifting += 1,
        (_, "Created") => report.created += 1,
        (_, "Patched") => report.patched += 1,
        (_, "ToolRecreated") => report.recreated += 1,
        (_, "Adopted") => report.adopted += 1,
        (_, "InSync") => report.in_sync += 1,
        (SyncState::Deleted, _) if matches!(d.action, ToolAction::Delete { .. }) => {
            report.deleted += 1;
        }
        _ => {}
    }
}

/// What applying one tool decision did.
struct ToolApplied {
    status: Option<ResourceStatus>,
    settle_intent: bool,
    create_settled: Option<(Uuid, JournalOutcome, Option<String>, String)>,
    rows: Vec<ResourceWrite>,
    discarded: Vec<i64>,
}

fn status(t: &DesiredTool, state: SyncState, reason: Reason, message: String) -> ResourceStatus {
    resource_status(t.id, t.generation, state, reason, &message)
}

fn decided(d: &ToolDecision, state: SyncState, reason: Reason, message: String) -> ResourceStatus {
    resource_status(d.tool_id, d.generation, state, reason, &message)
}

/// Journals and sends one tool's writes.
struct Writer<'a> {
    ctx: &'a PassContext<'a>,
    d: &'a ToolDecision,
    lane: &'a Lane,
    rows: Vec<ResourceWrite>,
    discarded: Vec<i64>,
}

impl Writer<'_> {
    fn row(
        &self,
        action: &'static str,
        vapi_id: Option<&str>,
        operation_id: Option<Uuid>,
        why: String,
    ) -> ResourceWrite {
        let fence = self.ctx.owner.fence_of_org(self.d.org_id);
        ResourceWrite {
            id: None,
            kind: "tool",
            started_at: Utc::now(),
            lease: fence.map(|f| f.name.clone()).unwrap_or_default(),
            epoch: fence.map_or(-1, |f| f.epoch),
            holder: self.ctx.holder.to_owned(),
            org_id: self.d.org_id,
            resource_id: self.d.tool_id,
            agent_id: None,
            generation: self.d.generation,
            action,
            outcome: JournalOutcome::Pending,
            vapi_id: vapi_id.map(str::to_owned),
            assistant_id: None,
            operation_id,
            why: bounded(&why, MESSAGE_MAX),
        }
    }

    /// Completes a begun row with the call's result.
    fn finish(&mut self, mut row: ResourceWrite, result: &Result<Value, CallError>) {
        let Some(id) = row.id else { return };
        match result {
            Err(e) if e.local() => {
                self.discarded.push(id);
                return;
            }
            Ok(v) => {
                row.outcome = JournalOutcome::Ok;
                if let Some(answered) = v.get("id").and_then(Value::as_str) {
                    row.vapi_id = Some(answered.to_owned());
                }
            }
            Err(CallError::Vapi(VapiError::NotFound)) => row.outcome = JournalOutcome::Gone,
            Err(e) => {
                row.outcome = if e.outcome_unknown() {
                    JournalOutcome::Unknown
                } else {
                    JournalOutcome::Failed
                };
                row.why = bounded(&format!("{}; {}: {e}", row.why, e.kind()), MESSAGE_MAX);
            }
        }
        self.rows.push(row);
    }

    /// A PATCH or DELETE: pending row, then the call.
    async fn send(
        &mut self,
        action: &'static str,
        id: &str,
        patch: Option<&Map<String, Value>>,
        why: String,
    ) -> Result<Value, CallError> {
        if let Some(e) = self.lane.refuses_write() {
            return Err(e);
        }
        let mut row = self.row(action, Some(id), None, why);
        row.id = Some(
            self.ctx
                .store
                .begin_resource_write(&row)
                .await
                .map_err(|e| {
                    CallError::Vapi(VapiError::Transport(format!("journal unavailable: {e}")))
                })?,
        );
        let result = match patch {
            Some(p) => {
                self.ctx
                    .send(self.lane.update(TOOL, id, p, self.ctx.cancel))
                    .await
            }
            None => {
                self.ctx
                    .send(self.lane.delete(TOOL, id, self.ctx.cancel))
                    .await
            }
        };
        self.finish(row, &result);
        result
    }
}

async fn apply(ctx: &PassContext<'_>, d: &ToolDecision, lane: &Lane, held: bool) -> ToolApplied {
    let mut w = Writer {
        ctx,
        d,
        lane,
        rows: Vec::new(),
        discarded: Vec::new(),
    };
    let fp = lane.fingerprint().to_owned();
    let mut settle_intent = false;
    let mut create_settled = None;
    let writes = d.action.writes() || !d.duplicates.is_empty();
    let hands_off = ctx.settings.dry_run || d.mode != Mode::Enforce || held;
    let mut s = if writes && held {
        // The guard holds every tool write; what was recorded stays until an operator confirms.
        None
    } else if writes && hands_off {
        let (state, reason, why) = if ctx.settings.dry_run {
            (
                SyncState::Drifted,
                Reason::DryRun,
                "the controller runs with --dry-run".to_owned(),
            )
        } else if d.mode == Mode::Paused {
            (
                SyncState::Paused,
                Reason::Paused,
                "the tool is paused".to_owned(),
            )
        } else {
            (
                SyncState::Drifted,
                Reason::ObserveOnly,
                "the tool is observe-only".to_owned(),
            )
        };
        let mut s = decided(
            d,
            state,
            reason,
            format!(
                "Would {} the tool in Vapi; nothing was sent: {why}.",
                d.action.verb()
            ),
        );
        if let ToolAction::Patch { drift, tool_id, .. } = &d.action {
            s.drift = drift_paths(drift);
            s.vapi_id = Some(tool_id.clone());
            s.message = format!(
                "Tool {tool_id} differs: {}. Nothing was sent: {why}.",
                describe_drift(drift)
            );
        }
        Some(s)
    } else if !writes && d.mode == Mode::Paused {
        Some(decided(
            d,
            SyncState::Paused,
            Reason::Paused,
            "The tool is paused: the controller writes nothing to Vapi for it.".to_owned(),
        ))
    } else if !may_write(ctx) && writes {
        None
    } else {
        Some(match &d.action {
            ToolAction::InSync { tool_id, adopted } => {
                if d.intent.is_some() {
                    settle_intent = true;
                    if let Some(i) = &d.intent {
                        create_settled = Some((
                            i.operation_id,
                            JournalOutcome::Ok,
                            Some(tool_id.clone()),
                            "adopted after its answer was lost".to_owned(),
                        ));
                    }
                }
                let (reason, message) = if *adopted {
                    let mut row = w.row("adopt", Some(tool_id), d.intent.as_ref().map(|i| i.operation_id), "adopted: it carries this tool's marker or is the create whose answer was lost".to_owned());
                    row.outcome = JournalOutcome::Ok;
                    w.rows.push(row);
                    (
                        Reason::Adopted,
                        format!(
                            "Adopted tool {tool_id}; it matches generation {}.",
                            d.generation
                        ),
                    )
                } else {
                    (
                        Reason::InSync,
                        format!("Tool {tool_id} matches generation {}.", d.generation),
                    )
                };
                let mut s = decided(d, SyncState::Synced, reason, message);
                s.vapi_id = Some(tool_id.clone());
                s
            }
            ToolAction::Patch {
                tool_id,
                patch,
                drift,
                ..
            } => {
                let why = format!("drift: {}", describe_drift(drift));
                match w.send("patch", tool_id, Some(patch), why).await {
                    Ok(answer) => {
                        let mut s = decided(
                            d,
                            SyncState::Synced,
                            Reason::Patched,
                            format!(
                                "Patched tool {tool_id} ({}); its id is kept, so assistants keep calling it.",
                                super::outcome::keys_of(patch)
                            ),
                        );
                        s.attempted = true;
                        if let (Some(desired), Value::Object(answer)) = (&d.desired, answer) {
                            if let Some((_, left)) = crate::reconcile::residual(desired, answer) {
                                s.state = SyncState::Pending;
                                s.reason = Reason::AnswerDiffers.as_str();
                                s.message = format!(
                                    "Patched tool {tool_id}, but Vapi's answer still differs: {}. The next pass looks again.",
                                    describe_drift(&left)
                                );
                                s.drift = drift_paths(&left);
                            }
                        }
                        s.vapi_id = Some(tool_id.clone());
                        s
                    }
                    Err(CallError::Vapi(VapiError::NotFound)) => {
                        let mut s = decided(
                            d,
                            SyncState::Pending,
                            Reason::AssistantGone,
                            format!(
                                "Tool {tool_id} was deleted in Vapi meanwhile; the next pass creates it again and links the new id."
                            ),
                        );
                        s.attempted = true;
                        s
                    }
                    Err(e) => failed(d, "patch the tool", &e, &fp),
                }
            }
            ToolAction::Create { body } | ToolAction::Recreate { body, .. } => {
                let recreate = matches!(d.action, ToolAction::Recreate { .. });
                create(
                    &mut w,
                    ctx,
                    d,
                    body,
                    recreate,
                    &fp,
                    &mut settle_intent,
                    &mut create_settled,
                )
                .await
            }
            ToolAction::AwaitCreate {
                operation_id,
                until,
            } => decided(
                d,
                SyncState::Pending,
                Reason::CreateOutcomeUnknown,
                format!(
                    "A create of this tool (operation {operation_id}) has an unknown outcome; waiting until {} for it to show up before creating again.",
                    until.format("%H:%M:%S UTC")
                ),
            ),
            ToolAction::Delete { tool_ids } => {
                let mut failure = None;
                for id in tool_ids {
                    match w
                        .send("delete", id, None, "the tool is deleted".to_owned())
                        .await
                    {
                        Ok(_) | Err(CallError::Vapi(VapiError::NotFound)) => {}
                        Err(e) => {
                            failure = Some(failed(d, &format!("delete tool {id}"), &e, &fp));
                            break;
                        }
                    }
                }
                failure.unwrap_or_else(|| {
                    let mut s = decided(
                        d,
                        SyncState::Deleted,
                        Reason::Deleted,
                        format!("Deleted tool {} in Vapi.", tool_ids.join(", ")),
                    );
                    s.attempted = true;
                    s
                })
            }
            ToolAction::Deleted => {
                settle_intent = d.intent.is_some();
                decided(
                    d,
                    SyncState::Deleted,
                    Reason::Deleted,
                    "The tool is deleted and nothing of it is left in Vapi.".to_owned(),
                )
            }
            ToolAction::Invalid { problems } => decided(
                d,
                SyncState::Failed,
                Reason::InvalidSpec,
                format!(
                    "The tool's spec cannot be sent to Vapi: {}. Nothing was sent.",
                    problems.join("; ")
                ),
            ),
            ToolAction::StillReferenced { agents } => decided(
                d,
                SyncState::Blocked,
                Reason::StillReferenced,
                format!(
                    "The tool is deleted but still called by live agents: {}. It is deleted in Vapi once no agent references it.",
                    agents.join(", ")
                ),
            ),
        })
    };
    // Duplicates (marked tools of this row besides the kept one) go once the main action is done.
    if !hands_off && may_write(ctx) {
        for dup in &d.duplicates {
            if let Err(e) = w
                .send(
                    "delete",
                    dup,
                    None,
                    "duplicate: a second tool marked as this row's".to_owned(),
                )
                .await
            {
                if !matches!(e, CallError::Vapi(VapiError::NotFound)) {
                    tracing::warn!(tool_id = %d.tool_id, duplicate = %dup, error = %e, "could not delete a duplicate tool");
                }
            }
        }
    }
    if let Some(s) = s.as_mut() {
        s.key_fingerprint = Some(fp);
        if s.state == SyncState::Synced {
            s.applied = d.desired.clone().map(Value::Object);
        }
    }
    ToolApplied {
        status: s,
        settle_intent,
        create_settled,
        rows: w.rows,
        discarded: w.discarded,
    }
}

#[allow(clippy::too_many_arguments)]
async fn create(
    w: &mut Writer<'_>,
    ctx: &PassContext<'_>,
    d: &ToolDecision,
    body: &Map<String, Value>,
    recreate: bool,
    fp: &str,
    settle_intent: &mut bool,
    create_settled: &mut Option<(Uuid, JournalOutcome, Option<String>, String)>,
) -> ResourceStatus {
    if let Some(e) = w.lane.refuses_write() {
        return failed(d, "create the tool", &e, fp);
    }
    // A replaced intent's create never landed (the grace is over, nothing carries it).
    if let Some(old) = &d.intent {
        *create_settled = Some((
            old.operation_id,
            JournalOutcome::Failed,
            None,
            "nothing it made appeared before the grace period ended".to_owned(),
        ));
    }
    let intent_at = tokio::time::Instant::now();
    let intent = CreateIntent {
        operation_id: Uuid::new_v4(),
        generation: d.generation,
        started_at: Utc::now(),
    };
    let previous = match &d.action {
        ToolAction::Recreate { previous_id, .. } => Some(previous_id.clone()),
        _ => None,
    };
    let action = if recreate { "recreate" } else { "create" };
    let why = match &previous {
        Some(p) => format!("tool {p} no longer exists in Vapi"),
        None => "no tool in Vapi yet".to_owned(),
    };
    let mut row = w.row(action, None, Some(intent.operation_id), why);
    match ctx
        .store
        .record_tool_intent(&ctx.owner.fences(), d.tool_id, &intent, &row)
        .await
    {
        Ok(id) => row.id = Some(id),
        Err(e) => {
            return decided(
                d,
                SyncState::Failed,
                Reason::StoreUnavailable,
                format!(
                    "The create intent could not be recorded ({}), so nothing was sent.",
                    e.kind()
                ),
            );
        }
    }
    let result = ctx
        .send(w.lane.create(TOOL, body, intent_at, ctx.cancel))
        .await;
    w.finish(row, &result);
    match result {
        Ok(answer) => {
            *settle_intent = true;
            let Some(id) = answer.get("id").and_then(Value::as_str).map(str::to_owned) else {
                return decided(
                    d,
                    SyncState::Pending,
                    Reason::CreateOutcomeUnknown,
                    "Vapi took the create but its answer named no tool; the next pass adopts it."
                        .to_owned(),
                );
            };
            // Keep the intent only if the id is unknown; here it is known.
            let (reason, message) = match previous {
                Some(p) => (
                    Reason::ToolRecreated,
                    format!(
                        "Tool {p} no longer exists in Vapi; created {id} in its place, and the assistants calling it are linked to the new id."
                    ),
                ),
                None => (Reason::Created, format!("Created tool {id}.")),
            };
            let mut s = decided(d, SyncState::Synced, reason, message);
            s.vapi_id = Some(id);
            s.attempted = true;
            s
        }
        Err(e) if e.outcome_unknown() => {
            // The intent stays: the next pass adopts what this create made, or waits for it.
            let mut s = decided(
                d,
                SyncState::Pending,
                Reason::CreateOutcomeUnknown,
                format!(
                    "The create's answer was lost ({}: {e}); the next pass adopts the tool if it landed, and never creates a second one meanwhile.",
                    e.kind()
                ),
            );
            s.attempted = true;
            s
        }
        Err(e) => {
            // A refusal (or a call never sent) made nothing: a new create may follow.
            *settle_intent = true;
            failed(d, "create the tool", &e, fp)
        }
    }
}

fn failed(d: &ToolDecision, what: &str, err: &CallError, fp: &str) -> ResourceStatus {
    resource_call_failed(d.tool_id, d.generation, what, err, fp)
}

fn may_write(ctx: &PassContext<'_>) -> bool {
    !ctx.cancel.is_cancelled() && ctx.gate.may_write()
}
