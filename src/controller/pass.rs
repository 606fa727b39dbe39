//! One reconcile pass: read desired state, list actual state, plan (pure), guard, execute, record.
//!
//! ```text
//!  Postgres ──1 query──▶ agents + status + intents ─┐
//!                                                   ├─▶ reconcile::plan ─▶ guard ─▶ execute (≤ C at once;
//!  Vapi ──paged LIST──▶ assistants ─────────────────┘     (pure)          (pure)   a create records
//!                                                                                  its intent first)
//!                                                                                     │
//!                       journal (append) + status & settled intents (fenced) ◀────────┘
//! ```
//! A focused pass ([`Scope::Agents`], for a small save the database named) skips the listing:
//! each named agent is planned against the assistant its status records, as last applied
//! ([`reconcile::assume_applied`]), so a save costs one PATCH. Agents it cannot vouch for that
//! way (new, deleted, a create in flight) are counted in `left_to_full_pass` for a full pass.
//!
//! A pass never stops for one agent: each decision ends in an outcome, failures included.
//! There are no retry loops inside a pass; the next pass is the retry. The blast-radius guard
//! stops a pass before its first write when it would destroy too much, until an operator confirms.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::execute::{self, Done, Gate};
use super::lane::{self, CallError, Lane};
use super::outcome::{Outcome, Reason};
use super::requeue::Requeue;
use crate::credentials::{ApiKey, LoadedKey};
use crate::metrics::Metrics;
use crate::reconcile::guard::{self, GuardSettings, Impact};
use crate::reconcile::{
    self, Action, ActualAssistant, DesiredAgent, Plan, PlanInput, PlanSettings, StrayAction,
};
use crate::sharding::Ownership;
use crate::store::{Orphan, RecordedStatus, Store, StoreError, SyncState};
use crate::vapi::Unreadable;

/// What one pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PassReport {
    /// Live agents (not deleted).
    pub agents: usize,
    /// Agents with `deleted_at` set that the pass still looked at.
    pub deleted_agents: usize,
    pub assistants_listed: usize,
    /// Listed assistants carrying the ownership marker.
    pub managed: usize,
    /// Listed assistants without it: never touched.
    pub unmanaged: usize,
    /// Marked assistants of organizations in shards other replicas own: left to them.
    pub other_shards: usize,
    pub in_sync: usize,
    pub created: usize,
    pub patched: usize,
    pub recreated: usize,
    pub adopted: usize,
    /// Assistants deleted because their agent is deleted.
    pub deleted: usize,
    pub duplicates_deleted: usize,
    /// Marked assistants whose agent no longer exists.
    pub orphans: usize,
    pub orphans_deleted: usize,
    /// Agents waiting for a create with an unknown outcome.
    pub awaiting_create: usize,
    /// Agents whose writes wait out their back-off (or a spec change after a refusal).
    pub deferred: usize,
    /// Voice rewrites (rules and fallbacks) in this pass's writes.
    pub voice_normalizations: usize,
    /// Agents with no assistant in Vapi (to create, recreate, or waiting for a create).
    pub missing: usize,
    /// Agents whose assistant differs from the spec.
    pub diverged: usize,
    /// Agents a focused pass was asked for but left to a full pass.
    pub left_to_full_pass: usize,
    /// Extra marked assistants of agents.
    pub duplicates: usize,
    /// Every agent's state after this pass, for the metrics.
    #[serde(skip)]
    pub states: HashMap<Uuid, SyncState>,
    /// Agents whose assistant differs (or is missing) after planning, for the drift age.
    #[serde(skip)]
    pub drifting: Vec<Uuid>,
    /// Agents left differing on purpose (observe-only, paused, dry-run).
    pub not_enforced: usize,
    pub failed: usize,
    /// Writes not started because shutdown began or leadership could not be proven.
    pub skipped: usize,
    pub status_writes: usize,
    pub journal_entries: usize,
    pub dry_run: bool,
    /// Why the assistants could not be listed, when they could not.
    pub list_error: Option<String>,
    /// The guard stopped this pass before its first write.
    pub blocked: Option<Blocked>,
    /// The guard's limit was exceeded and this confirmed block let the pass run.
    pub confirmed_block: Option<i64>,
    /// Wall time of the pass, in seconds.
    #[serde(rename = "duration_seconds", with = "as_seconds")]
    pub duration: Duration,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Blocked {
    pub block_id: i64,
    #[serde(flatten)]
    pub impact: Impact,
}

mod as_seconds {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PassError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Store(e) => e.kind(),
        }
    }
}

/// Knobs of a pass.
#[derive(Debug, Clone)]
pub struct PassSettings {
    pub concurrency: usize,
    /// Compute and report, write nothing to Vapi.
    pub dry_run: bool,
    pub plan: PlanSettings,
    pub guard: GuardSettings,
}

/// The parts a pass needs.
pub struct PassContext<'a> {
    pub store: &'a Store,
    pub lanes: &'a lane::Lanes,
    pub platform: &'a LoadedKey,
    /// Organizations with their own key, or why it cannot be used.
    pub org_keys: &'a HashMap<Uuid, Result<ApiKey, String>>,
    pub requeue: &'a Requeue,
    pub metrics: Option<&'a Metrics>,
    pub settings: &'a PassSettings,
    /// The shards this pass covers, with their fences.
    pub owner: &'a Ownership,
    pub gate: &'a (dyn Gate + Sync),
    /// This replica's identity, for the journal.
    pub holder: &'a str,
    pub cancel: &'a CancellationToken,
}

/// What a pass looks at.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'s> {
    /// Every agent of the shards owned, against every key's listing.
    All,
    /// These agents only, against the assistants their statuses record: no listing, no orphans.
    Agents(&'s [Uuid]),
}

/// Outcomes are flushed in batches of at most this many, as they arrive.
const STATUS_BATCH: usize = 500;

/// How many of the guarded actions a block records for the operator.
const BLOCK_SAMPLE: usize = 20;

/// What a pass found before acting: the plan over every key's listing, and the outcomes that
/// need no Vapi write (agents whose key is unusable or whose listing failed).
pub(super) struct Survey {
    started: Instant,
    pub(super) report: PassReport,
    recorded: HashMap<Uuid, RecordedStatus>,
    pub(super) plan: Plan,
    decision_lanes: Vec<Arc<Lane>>,
    stray_lanes: Vec<Arc<Lane>>,
    pub(super) early: Vec<Done>,
    orphans_known: bool,
    pub(super) names: HashMap<Uuid, String>,
}

pub async fn run_pass(ctx: &PassContext<'_>, scope: Scope<'_>) -> Result<PassReport, PassError> {
    let Survey {
        started,
        mut report,
        recorded,
        plan,
        decision_lanes,
        stray_lanes,
        early,
        orphans_known,
        names: _,
    } = survey(ctx, scope).await?;
    if !plan.strays.is_empty() || orphans_known {
        let sightings: Vec<_> = plan
            .strays
            .iter()
            .map(|s| Orphan {
                assistant_id: s.assistant_id.clone(),
                agent_id: s.agent_id,
                org_id: s.org_id.as_deref().and_then(|o| o.parse().ok()),
                first_seen: s.first_seen,
            })
            .collect();
        ctx.store
            .record_orphans(&ctx.owner.fences(), ctx.owner.shards(), &sightings)
            .await?;
    }
    for s in &plan.strays {
        if s.action != StrayAction::Delete {
            tracing::warn!(assistant_id = %s.assistant_id, agent_id = %s.agent_id, action = ?s.action, "orphaned assistant: its agent no longer exists");
        }
    }
    record(ctx, early, &recorded, &mut report).await?;
    guard_and_execute(
        ctx,
        plan,
        decision_lanes,
        stray_lanes,
        &recorded,
        report,
        started,
    )
    .await
}

/// Reads the desired state, lists every key's assistants (or, focused, stands in for the
/// listing) and plans; writes nothing.
pub(super) async fn survey(ctx: &PassContext<'_>, scope: Scope<'_>) -> Result<Survey, PassError> {
    let started = Instant::now();
    let mut report = PassReport {
        dry_run: ctx.settings.dry_run,
        ..PassReport::default()
    };
    let rows = match scope {
        Scope::All => ctx.store.load_agents(ctx.owner.shards()).await?,
        Scope::Agents(ids) => {
            let mut rows = ctx.store.load_agents_by_id(ctx.owner.shards(), ids).await?;
            let loaded = rows.len();
            rows.retain(|(a, _)| reconcile::assume_applied(a).is_some());
            report.left_to_full_pass = loaded - rows.len();
            rows
        }
    };
    let full = matches!(scope, Scope::All);
    report.deleted_agents = rows.iter().filter(|(a, _)| a.deleted).count();
    report.agents = rows.len() - report.deleted_agents;
    let mut recorded: HashMap<Uuid, RecordedStatus> = HashMap::with_capacity(rows.len());
    let known: HashSet<Uuid> = rows.iter().map(|(a, _)| a.id).collect();
    let names: HashMap<Uuid, String> = rows.iter().map(|(a, _)| (a.id, a.name.clone())).collect();
    report.states = rows
        .iter()
        .map(|(a, r)| {
            let state = r
                .as_ref()
                .filter(|r| r.observed_generation >= a.generation)
                .and_then(|r| r.state)
                .unwrap_or(SyncState::Pending);
            (a.id, state)
        })
        .collect();

    // Each agent goes to its org's own key, or the platform key. An org whose stored key cannot
    // be read gets nothing: falling back to the platform key would write to another Vapi org.
    let mut groups: HashMap<String, (Arc<Lane>, Vec<DesiredAgent>)> = HashMap::new();
    let mut early = Vec::new();
    for (agent, status) in rows {
        if let Some(status) = status {
            recorded.insert(agent.id, status);
        }
        let (key, scope) = match ctx.org_keys.get(&agent.org_id) {
            Some(Ok(key)) => (key, format!("org {}", agent.org_id)),
            Some(Err(why)) => {
                early.push(Done::status(Outcome::failed(
                    agent.id,
                    agent.generation,
                    Reason::CredentialsUnavailable,
                    format!("The organization's own Vapi key cannot be used: {why}. Nothing was sent; the platform key is never used in its place."),
                    false,
                )));
                continue;
            }
            None => (&ctx.platform.key, "platform".to_owned()),
        };
        groups
            .entry(key.fingerprint().to_owned())
            .or_insert_with(|| (ctx.lanes.lane(key, &scope), Vec::new()))
            .1
            .push(agent);
    }
    let orphans_seen = if full {
        // The platform key is listed even with no agent on it: its orphans are found only so.
        let platform = &ctx.platform.key;
        groups
            .entry(platform.fingerprint().to_owned())
            .or_insert_with(|| (ctx.lanes.lane(platform, "platform"), Vec::new()));
        // Only a full pass knows every key in use.
        let in_use: HashSet<String> = groups.keys().cloned().collect();
        ctx.lanes.retain(&in_use);
        ctx.store.orphan_sightings().await?
    } else {
        HashMap::new()
    };
    let now = Utc::now();
    let mut plan = Plan::default();
    let mut decision_lanes = Vec::new();
    let mut stray_lanes = Vec::new();
    let mut list_errors = Vec::new();
    for (lane, agents) in groups.into_values() {
        let listed = if full {
            list(&lane).await
        } else {
            Ok((
                agents
                    .iter()
                    .filter_map(reconcile::assume_applied)
                    .collect(),
                Vec::new(),
            ))
        };
        let (assistants, agents) = match listed {
            Ok((assistants, unreadable)) => {
                (assistants, hold_unreadable(agents, &unreadable, &mut early))
            }
            Err(err) => {
                // Without the actual state nothing can be decided; every agent says why, except
                // an agent whose spec is unsendable, which keeps saying so (that needs no listing).
                if !matches!(err, CallError::Quarantined { .. }) {
                    tracing::warn!(error = %err, kind = err.kind(), fingerprint = lane.fingerprint(), "listing assistants failed");
                }
                list_errors.push(format!("key {}: {err}", lane.fingerprint()));
                early.extend(agents.iter().map(|a| {
                    Done::status(
                        match reconcile::desired_body(a, &ctx.settings.plan.voices) {
                            Err(problems) if !a.deleted => {
                                execute::invalid(a.id, a.generation, &problems)
                            }
                            _ => Outcome::call_failed(
                                a.id,
                                a.generation,
                                "list assistants",
                                &err,
                                lane.fingerprint(),
                            ),
                        },
                    )
                }));
                continue;
            }
        };
        if full {
            report.assistants_listed += assistants.len();
        }
        let part = reconcile::plan(&PlanInput {
            agents: &agents,
            assistants: &assistants,
            known_agents: &known,
            orphans_seen: &orphans_seen,
            shards: ctx.owner.shards(),
            now,
            settings: &ctx.settings.plan,
        });
        decision_lanes.extend(std::iter::repeat_n(lane.clone(), part.decisions.len()));
        stray_lanes.extend(std::iter::repeat_n(lane.clone(), part.strays.len()));
        plan.decisions.extend(part.decisions);
        plan.strays.extend(part.strays);
        plan.managed += part.managed;
        plan.unmanaged += part.unmanaged;
        plan.other_shards += part.other_shards;
    }
    if !list_errors.is_empty() {
        report.list_error = Some(list_errors.join("; "));
    }
    report.managed = plan.managed;
    report.unmanaged = plan.unmanaged;
    report.other_shards = plan.other_shards;
    report.orphans = plan.strays.len();
    for d in &plan.decisions {
        let differs = match &d.action {
            Action::Create { .. } | Action::Recreate { .. } | Action::AwaitCreate { .. } => {
                report.missing += 1;
                true
            }
            Action::Patch { .. } => {
                report.diverged += 1;
                true
            }
            Action::Delete { .. } => true,
            _ => false,
        };
        report.duplicates += d.duplicates.len();
        if differs || !d.duplicates.is_empty() {
            report.drifting.push(d.agent_id);
        }
    }
    Ok(Survey {
        started,
        report,
        recorded,
        plan,
        decision_lanes,
        stray_lanes,
        early,
        orphans_known: !orphans_seen.is_empty(),
        names,
    })
}

async fn guard_and_execute(
    ctx: &PassContext<'_>,
    plan: Plan,
    decision_lanes: Vec<Arc<Lane>>,
    stray_lanes: Vec<Arc<Lane>>,
    recorded: &HashMap<Uuid, RecordedStatus>,
    mut report: PassReport,
    started: Instant,
) -> Result<PassReport, PassError> {
    let impact = guard::assess(&plan, ctx.settings.dry_run, ctx.settings.guard);
    if impact.exceeded() {
        match ctx.store.guard_confirmation(&impact).await? {
            Some(id) => {
                tracing::warn!(
                    block_id = id,
                    deletes = impact.deletes,
                    recreates = impact.recreates,
                    limit = impact.limit,
                    "blast-radius limit exceeded; proceeding under an operator's confirmation"
                );
                report.confirmed_block = Some(id);
            }
            None => {
                let id = ctx
                    .store
                    .record_guard_block(&ctx.owner.fences(), &impact, &sample(&plan))
                    .await?;
                tracing::error!(
                    block_id = id,
                    deletes = impact.deletes,
                    recreates = impact.recreates,
                    fleet = impact.fleet,
                    limit = impact.limit,
                    "pass blocked: it would delete or recreate more assistants than allowed; nothing was written. Confirm with `vapi-reconciler guard confirm {id}` if this is intended"
                );
                report.blocked = Some(Blocked {
                    block_id: id,
                    impact,
                });
                report.duration = started.elapsed();
                return Ok(report);
            }
        }
    }
    let lanes = Lanes {
        decisions: decision_lanes,
        strays: stray_lanes,
    };
    execute_plan(ctx, plan, lanes, recorded, report, started).await
}

/// Lists with one lane; a quarantined key is probed at most once per probe interval.
async fn list(lane: &Lane) -> Result<(Vec<ActualAssistant>, Vec<Unreadable>), CallError> {
    if let Some(r) = lane.rejection().filter(|_| !lane.may_probe()) {
        return Err(CallError::Quarantined {
            fingerprint: lane.fingerprint().to_owned(),
            status: r.status,
            message: r.message,
        });
    }
    let listing = lane.list_all().await?;
    let assistants = listing
        .items
        .into_iter()
        .filter_map(ActualAssistant::from_value)
        .collect();
    Ok((assistants, listing.unreadable))
}

/// An agent whose assistant is listed but cannot be read (its marker or its status names it) is
/// failed, not planned: planned without it, it would get a second assistant.
fn hold_unreadable(
    agents: Vec<DesiredAgent>,
    unreadable: &[Unreadable],
    early: &mut Vec<Done>,
) -> Vec<DesiredAgent> {
    if unreadable.is_empty() {
        return agents;
    }
    let owner = |u: &Unreadable| {
        let shell = ActualAssistant {
            id: u.id.clone().unwrap_or_default(),
            created_at: String::new(),
            body: u.fields.clone(),
        };
        shell.managed_agent()
    };
    let owners: Vec<_> = unreadable.iter().map(|u| (u, owner(u))).collect();
    let mut rest = Vec::with_capacity(agents.len());
    for a in agents {
        let holder = owners.iter().find(|(u, owner)| {
            *owner == Some(a.id) || (u.id.is_some() && u.id == a.recorded_assistant_id)
        });
        let Some((u, _)) = holder else {
            rest.push(a);
            continue;
        };
        early.push(Done::status(Outcome::failed(
            a.id,
            a.generation,
            Reason::VapiBadResponse,
            format!("Vapi lists this agent's {u}. Nothing was sent (a create would duplicate it); fix or delete that assistant in Vapi, or fix the spec if it caused it."),
            false,
        )));
    }
    rest
}

/// A few of the destructive actions, for the operator who reads a block.
fn sample(plan: &Plan) -> serde_json::Value {
    let mut out = Vec::new();
    for d in &plan.decisions {
        match &d.action {
            Action::Delete { assistant_ids } => out.push(json!({"action": "delete", "agentId": d.agent_id, "assistantIds": assistant_ids})),
            Action::Recreate { previous_id, .. } => out.push(json!({"action": "recreate", "agentId": d.agent_id, "missingAssistantId": previous_id})),
            _ => {}
        }
        if !d.duplicates.is_empty() {
            out.push(json!({"action": "delete-duplicates", "agentId": d.agent_id, "assistantIds": d.duplicates}));
        }
    }
    out.extend(
        plan.strays
            .iter()
            .filter(|s| s.action == StrayAction::Delete)
            .map(|s| json!({"action": "delete-orphan", "agentId": s.agent_id, "assistantId": s.assistant_id})),
    );
    out.truncate(BLOCK_SAMPLE);
    serde_json::Value::Array(out)
}

/// The lane of each decision and each stray, in plan order.
struct Lanes {
    decisions: Vec<Arc<Lane>>,
    strays: Vec<Arc<Lane>>,
}

enum Work {
    Agent(reconcile::Decision, Arc<Lane>),
    Stray(reconcile::Stray, Arc<Lane>),
}

/// Executes with bounded concurrency while a writer flushes outcomes in batches. An agent in
/// back-off keeps its recorded status and waits; the others go ahead.
async fn execute_plan(
    ctx: &PassContext<'_>,
    plan: Plan,
    lanes: Lanes,
    recorded: &HashMap<Uuid, RecordedStatus>,
    mut report: PassReport,
    started: Instant,
) -> Result<PassReport, PassError> {
    let mut work = Vec::with_capacity(plan.decisions.len() + plan.strays.len());
    for (d, lane) in plan.decisions.into_iter().zip(lanes.decisions) {
        let writes = d.action.writes() || !d.duplicates.is_empty();
        if writes && d.mode == reconcile::Mode::Enforce && !ctx.settings.dry_run {
            if let Some(wait) = ctx.requeue.waiting(d.agent_id, d.generation) {
                tracing::debug!(agent_id = %d.agent_id, ?wait, "agent in back-off");
                report.deferred += 1;
                if let Some(m) = ctx.metrics {
                    m.reconcile_total
                        .with_label_values(&["requeue_after"])
                        .inc();
                }
                continue;
            }
        }
        work.push(Work::Agent(d, lane));
    }
    if !ctx.settings.dry_run {
        work.extend(
            plan.strays
                .into_iter()
                .zip(lanes.strays)
                .filter(|(s, _)| s.action == StrayAction::Delete)
                .map(|(s, lane)| Work::Stray(s, lane)),
        );
    }

    // Unbounded on purpose: an executor blocked on a full channel stops polling its in-flight
    // writes, which may hold pool connections mid-transaction, while the writer needs one to
    // drain the channel. At most one item per agent is ever queued.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let executor = async move {
        let mut results = futures::stream::iter(work)
            .map(|w| async move {
                let started = Instant::now();
                if let Some(m) = ctx.metrics {
                    m.active_workers.inc();
                }
                let done = match w {
                    Work::Agent(d, lane) => execute::decision(ctx, d, &lane).await,
                    Work::Stray(s, lane) => execute::stray(ctx, s, &lane).await,
                };
                if let Some(m) = ctx.metrics {
                    m.active_workers.dec();
                    m.reconcile_time_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                done
            })
            .buffer_unordered(ctx.settings.concurrency);
        while let Some(done) = results.next().await {
            if let Some(o) = &done.status {
                if ctx.requeue.observe(o) {
                    if let Some(m) = ctx.metrics {
                        m.workqueue_retries_total.inc();
                    }
                }
            }
            if tx.send(done).is_err() {
                break;
            }
        }
    };
    let writer = async {
        let mut batch = Vec::with_capacity(STATUS_BATCH);
        while rx.recv_many(&mut batch, STATUS_BATCH).await > 0 {
            record(ctx, std::mem::take(&mut batch), recorded, &mut report).await?;
        }
        Ok::<_, PassError>(())
    };
    let ((), written) = tokio::join!(executor, writer);
    written?;
    report.duration = started.elapsed();
    Ok(report)
}

/// Counts outcomes, appends their journal entries, and writes the statuses that change what the
/// status table says together with the intents they settle.
async fn record(
    ctx: &PassContext<'_>,
    done: Vec<Done>,
    recorded: &HashMap<Uuid, RecordedStatus>,
    report: &mut PassReport,
) -> Result<(), PassError> {
    let mut updates = Vec::with_capacity(done.len());
    let mut journal = Vec::new();
    let mut settled = Vec::new();
    for d in done {
        if let Some(m) = ctx.metrics {
            for j in &d.journal {
                m.actions_total
                    .with_label_values(&[j.action, j.outcome.as_str()])
                    .inc();
            }
        }
        journal.extend(d.journal);
        settled.extend(d.settle_intent);
        report.duplicates_deleted += d.duplicates_deleted;
        report.orphans_deleted += d.orphans_deleted;
        report.deleted += d.assistants_deleted;
        report.skipped += usize::from(d.skipped);
        let Some(o) = d.status else { continue };
        if o.attempted {
            report.voice_normalizations += o.normalizations.len();
            if let Some(m) = ctx.metrics {
                for n in &o.normalizations {
                    let rule = n
                        .rsplit_once('(')
                        .map_or("", |(_, r)| r.trim_end_matches(')'));
                    m.voice_normalizations_total
                        .with_label_values(&[rule])
                        .inc();
                }
            }
        }
        report.states.insert(o.agent_id, o.state);
        if let Some(m) = ctx.metrics {
            let result = match o.state {
                SyncState::Failed => {
                    m.reconcile_errors_total.inc();
                    "error"
                }
                SyncState::Pending => "requeue",
                _ => "success",
            };
            m.reconcile_total.with_label_values(&[result]).inc();
        }
        count(&o, report);
        if !already_recorded(&o, recorded.get(&o.agent_id)) {
            updates.push(o.to_update());
        }
    }
    // The journal first: it must hold every write even if this replica was just deposed.
    ctx.store.append_journal(&journal).await?;
    report.journal_entries += journal.len();
    ctx.store
        .write_outcomes(&ctx.owner.fences(), &updates, &settled)
        .await?;
    report.status_writes += updates.len();
    Ok(())
}

fn count(o: &Outcome, report: &mut PassReport) {
    match (o.state, o.reason) {
        (SyncState::Failed, _) => {
            report.failed += 1;
            tracing::warn!(agent_id = %o.agent_id, reason = o.reason.as_str(), status_message = %o.message, "agent failed");
        }
        (SyncState::Drifted | SyncState::Paused, _) => report.not_enforced += 1,
        (_, Reason::InSync) => report.in_sync += 1,
        (_, Reason::Created) => report.created += 1,
        (_, Reason::Patched) => report.patched += 1,
        (_, Reason::AssistantRecreated) => report.recreated += 1,
        (_, Reason::Adopted) => report.adopted += 1,
        (_, Reason::CreateOutcomeUnknown) => report.awaiting_create += 1,
        _ => {}
    }
    if o.attempted && o.state != SyncState::Failed {
        tracing::info!(agent_id = %o.agent_id, state = o.state.as_str(), reason = o.reason.as_str(), assistant_id = o.assistant_id.as_deref().unwrap_or(""), status_message = %o.message, "agent reconciled");
    }
}

/// Nothing was attempted and the status table already says this: no write. An agent that was,
/// and still is, synced with the same assistant keeps its row (why it got synced, what drifted).
fn already_recorded(o: &Outcome, recorded: Option<&RecordedStatus>) -> bool {
    let Some(r) = recorded.filter(|_| !o.attempted) else {
        return false;
    };
    // A newly applied body must be recorded: it is the next comparison's third side. The plan
    // leaves out a body equal to the recorded one (`Decision::desired`), so any body is new.
    let same = o.applied.is_none()
        && r.state == Some(o.state)
        && r.observed_generation == o.generation
        && (o.assistant_id.is_none() || r.assistant_id == o.assistant_id);
    if o.reason == Reason::InSync {
        return same;
    }
    same && r.reason == o.reason.as_str() && r.drift == o.drift
}
