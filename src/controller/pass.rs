//! One reconcile pass, as a one-way pipeline of stages with typed hand-offs:
//!
//! ```text
//!  survey.rs  (reads only)  Postgres: agents+status+intents; Vapi: one paged LIST per key
//!     │ Survey: per key one group (lane, agents, listing), planned by reconcile::plan (PURE)
//!     ▼
//!  reconcile::guard (PURE)  would it destroy too much? then stop before the first write
//!     │ Plan
//!     ▼
//!  apply.rs   (Vapi effects only, ≤ C at once)  journal row before each write, then the call
//!     │ Applied: Effect per action (created / patched(verified) / gone / unknown / failed / …)
//!     ▼
//!  outcome.rs (PURE)        decision + Applied → status, reason, message (golden-tested)
//!     │ Done
//!     ▼
//!  record.rs  (batched)     journal completions; changed statuses + settled intents (fenced)
//! ```
//! This file wires the stages: [`run_pass`] surveys, guards, applies with bounded concurrency
//! and records as outcomes arrive. A focused pass ([`Scope::Agents`], for a small save the
//! database named) is the same pipeline with a survey that stands in for the listing (see
//! `survey.rs`); agents it cannot vouch for are counted in `left_to_full_pass`.
//!
//! A pass never stops for one agent: each decision ends in an outcome, failures included.
//! Beyond the lane's few quick retries of an idempotent call (cut short by shutdown), the next
//! pass is the retry. The blast-radius guard stops a pass before its first write when it would
//! destroy too much, until an operator confirms.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::apply::{self, Gate};
use super::intents;
use super::lane::{self, Lane};
use super::outcome::{self, Done};
use super::record::record;
use super::requeue::Requeue;
use super::survey::{Survey, survey};
use crate::credentials::{ApiKey, LoadedKey};
use crate::metrics::Metrics;
use crate::reconcile::guard::{self, GuardSettings, Impact};
use crate::reconcile::{self, Action, Plan, PlanSettings, StrayAction};
use crate::sharding::Ownership;
use crate::store::{Orphan, RecordedStatus, Store, StoreError, SyncState};

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
    /// Agents whose texts a full pass left out (their memo could stand for the decision) and
    /// then read after all, because the memo did not match the listing.
    pub texts_read_again: usize,
    /// Listed assistants whose text a full pass dropped as it arrived, its agent's memo digest
    /// standing for it.
    pub assistants_remembered: usize,
    /// Listed assistants whose text a full pass dropped for its memo digest and then read again
    /// with a GET, because the memo did not stand for the decision after all.
    pub assistants_read_again: usize,
    /// Writes whose answer still differed from the spec: a full pass must follow.
    #[serde(skip)]
    pub unverified: usize,
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
    /// In-sync statuses that got their memo digest ([`crate::reconcile::memo`]), the row kept.
    pub memos_written: usize,
    pub journal_entries: usize,
    pub dry_run: bool,
    /// Why the assistants could not be listed, when they could not.
    pub list_error: Option<String>,
    /// The guard stopped this pass before its first write.
    pub blocked: Option<Blocked>,
    /// The guard's limit was exceeded and this confirmed block let the pass run.
    pub confirmed_block: Option<i64>,
    /// A full pass (it saw every resource of the shards owned), not a focused one.
    #[serde(skip)]
    pub full: bool,
    /// The tools stage (full passes only).
    pub tools: super::tools::ToolReport,
    /// The phone-number stage (full passes only).
    pub phone_numbers: super::numbers::NumberReport,
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
    /// Bounds the apply stages' requests in flight; see [`PassContext::send`].
    pub requests: &'a tokio::sync::Semaphore,
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

impl PassContext<'_> {
    /// Sends one request of an apply stage once fewer than `concurrency` are in flight.
    ///
    /// The stages run twice as many workers as requests may be in flight, so a worker's own
    /// database work (a create's intent commit, a write's pending journal row) happens while the
    /// others' requests are out rather than between them; the bound Vapi sees is this one.
    pub(crate) async fn send<T>(&self, request: impl std::future::Future<Output = T>) -> T {
        // Never closed: the controller owns the semaphore for its whole life.
        let _permit = self.requests.acquire().await.ok();
        request.await
    }

    /// How many items an apply stage works on at once: twice the requests in flight.
    pub(crate) fn workers(&self) -> usize {
        self.settings.concurrency.max(1).saturating_mul(2)
    }
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

pub async fn run_pass(ctx: &PassContext<'_>, scope: Scope<'_>) -> Result<PassReport, PassError> {
    let full = matches!(scope, Scope::All);
    // Tools first: the survey resolves the agents' tool references from what this stage records.
    let tools = if full {
        super::tools::converge_tools(ctx).await?
    } else {
        super::tools::ToolReport::default()
    };
    let Survey {
        started,
        mut report,
        recorded,
        mut plan,
        mut decision_lanes,
        stray_lanes,
        early,
        orphans_known,
        names: _,
        keys_in_use,
    } = survey(ctx, scope, false).await?;
    // Forgetting lanes of keys gone out of use is the pass's business, not the survey's: a
    // preview surveys too, and must leave the registry as it found it.
    if let Some(in_use) = &keys_in_use {
        ctx.lanes.retain(in_use);
    }
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
    report.tools = tools;
    report.full = full;
    // Numbers of deleted agents are unbound before their assistants are deleted; an agent whose
    // number is still bound keeps its assistant this pass (no call may ring a deleted assistant).
    let mut numbers = super::numbers::Numbers::default();
    if full {
        let held = numbers.unbind(ctx).await?;
        if !held.is_empty() {
            let (kept, lanes): (Vec<_>, Vec<_>) = plan
                .decisions
                .into_iter()
                .zip(decision_lanes)
                .filter(|(d, _)| {
                    let hold = held.contains(&d.agent_id) && matches!(d.action, Action::Delete { .. });
                    if hold {
                        tracing::warn!(agent_id = %d.agent_id, "assistant not deleted: its phone number could not be unbound first");
                    }
                    !hold
                })
                .unzip();
            plan.decisions = kept;
            decision_lanes = lanes;
        }
    }
    let mut report = guard_and_execute(
        ctx,
        plan,
        decision_lanes,
        stray_lanes,
        &recorded,
        report,
        started,
    )
    .await?;
    if full {
        // After the assistants are recorded: a recreated assistant's number follows at once.
        numbers.point(ctx).await?;
        report.phone_numbers = numbers.report;
        report.duration = started.elapsed();
    }
    Ok(report)
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
    match guard_gate(ctx, &impact, "assistants", || sample(&plan)).await? {
        Guarded::Clear => {}
        Guarded::Confirmed(id) => report.confirmed_block = Some(id),
        Guarded::Blocked(id) => {
            report.blocked = Some(Blocked {
                block_id: id,
                impact,
            });
            report.duration = started.elapsed();
            return Ok(report);
        }
    }
    let lanes = Lanes {
        decisions: decision_lanes,
        strays: stray_lanes,
    };
    execute_plan(ctx, plan, lanes, recorded, report, started).await
}

/// What the blast-radius guard lets through.
pub(super) enum Guarded {
    /// Within the limit.
    Clear,
    /// Over the limit, under this operator's confirmation.
    Confirmed(i64),
    /// Over the limit: recorded as this block, nothing of `what` is to be written.
    Blocked(i64),
}

/// The guard's one step for every kind (assistants, tools): within the limit, or confirmed by an
/// operator, or recorded as a block (with `sample`, built only then) that an operator confirms
/// with `vapi-reconciler guard confirm`.
pub(super) async fn guard_gate(
    ctx: &PassContext<'_>,
    impact: &Impact,
    what: &str,
    sample: impl FnOnce() -> serde_json::Value,
) -> Result<Guarded, PassError> {
    if !impact.exceeded() {
        return Ok(Guarded::Clear);
    }
    if let Some(id) = ctx.store.guard_confirmation(impact).await? {
        tracing::warn!(
            block_id = id,
            what,
            deletes = impact.deletes,
            recreates = impact.recreates,
            limit = impact.limit,
            "blast-radius limit exceeded; proceeding under an operator's confirmation"
        );
        return Ok(Guarded::Confirmed(id));
    }
    let id = ctx
        .store
        .record_guard_block(&ctx.owner.fences(), impact, &sample())
        .await?;
    tracing::error!(
        block_id = id,
        deletes = impact.deletes,
        recreates = impact.recreates,
        fleet = impact.fleet,
        limit = impact.limit,
        "pass blocked: it would delete or recreate more {what} than allowed; none of their writes was sent. Confirm with `vapi-reconciler guard confirm {id}` if this is intended"
    );
    Ok(Guarded::Blocked(id))
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

// Nearly all work is agents: boxing their decisions would only add an allocation to each.
#[allow(clippy::large_enum_variant)]
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
    // The work is taken from the plan as the executor asks for it, never gathered into a list
    // of its own: at 100,000 agents a second list of decisions would be tens of megabytes.
    let deferred = std::sync::atomic::AtomicUsize::new(0);
    let dry_run = ctx.settings.dry_run;
    let agents = plan
        .decisions
        .into_iter()
        .zip(lanes.decisions)
        .filter(|(d, _)| {
            let writes = d.action.writes() || !d.duplicates.is_empty();
            if writes && d.mode == reconcile::Mode::Enforce && !dry_run {
                if let Some(wait) = ctx.requeue.waiting(d.agent_id, d.generation) {
                    tracing::debug!(agent_id = %d.agent_id, ?wait, "agent in back-off");
                    deferred.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(m) = ctx.metrics {
                        m.reconcile_total
                            .with_label_values(&["requeue_after"])
                            .inc();
                    }
                    return false;
                }
            }
            true
        })
        .map(|(d, lane)| Work::Agent(d, lane));
    let strays = plan
        .strays
        .into_iter()
        .zip(lanes.strays)
        .filter(|(s, _)| !dry_run && s.action == StrayAction::Delete)
        .map(|(s, lane)| Work::Stray(s, lane));
    let work = agents.chain(strays);

    // Unbounded on purpose: an executor blocked on a full channel stops polling its in-flight
    // writes, which may hold pool connections mid-transaction, while the writer needs one to
    // drain the channel. At most one item per agent is ever queued.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let (intents, committer) = intents::queue();
    let fences = ctx.owner.fences();
    let executor = async move {
        let intents = &intents;
        let run = |w: Work| async move {
            let started = Instant::now();
            if let Some(m) = ctx.metrics {
                m.active_workers.inc();
            }
            let done = match w {
                Work::Agent(d, lane) => {
                    let applied = apply::decision(ctx, intents, &d, &lane).await;
                    outcome::settle(&d, applied, dry_run, lane.fingerprint())
                }
                Work::Stray(s, lane) => {
                    let applied = apply::stray(ctx, &s, &lane).await;
                    Done {
                        journal: applied.journal,
                        discarded: applied.discarded,
                        orphans_deleted: usize::from(applied.deleted),
                        skipped: applied.skipped,
                        ..Done::default()
                    }
                }
            };
            if let Some(m) = ctx.metrics {
                m.active_workers.dec();
                m.reconcile_time_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            done
        };
        let mut work = work;
        let mut inflight = futures::stream::FuturesUnordered::new();
        let mut exhausted = false;
        let mut sent = 0usize;
        loop {
            // At most `workers` decisions in flight. One that needs nothing of Vapi or the
            // journal (all of a steady pass) is settled here, in order, without a future.
            let mut ready = Vec::with_capacity(2);
            while !exhausted && inflight.len() < ctx.workers() {
                match work.next() {
                    None => exhausted = true,
                    Some(Work::Agent(d, lane)) => match apply::needs_nothing(&d) {
                        Some(applied) => {
                            let started = Instant::now();
                            ready.push(outcome::settle(&d, applied, dry_run, lane.fingerprint()));
                            // Still one agent reconciled, in the histogram as in the counts.
                            if let Some(m) = ctx.metrics {
                                m.reconcile_time_seconds
                                    .observe(started.elapsed().as_secs_f64());
                            }
                            break;
                        }
                        None => inflight.push(run(Work::Agent(d, lane))),
                    },
                    Some(stray) => inflight.push(run(stray)),
                }
            }
            if ready.is_empty() {
                match inflight.next().await {
                    Some(done) => ready.push(done),
                    None if exhausted => break,
                    None => continue,
                }
            } else if !inflight.is_empty() {
                // The writes in flight are polled between settled ones, not only once the
                // quiet decisions run out.
                let polled =
                    std::future::poll_fn(|cx| std::task::Poll::Ready(inflight.poll_next_unpin(cx)))
                        .await;
                if let std::task::Poll::Ready(Some(done)) = polled {
                    ready.push(done);
                }
            }
            for done in ready {
                // A decision that writes nothing is ready at once, so without this the executor
                // would settle the whole fleet before the writer (polled by the same task)
                // drained one batch: 100,000 outcomes queued at once, tens of megabytes.
                // Yielding once a batch lets the writer keep the queue near one batch.
                sent += 1;
                if sent % STATUS_BATCH == 0 {
                    tokio::task::yield_now().await;
                }
                if let Some(o) = &done.status {
                    if ctx.requeue.observe(o) {
                        if let Some(m) = ctx.metrics {
                            m.workqueue_retries_total.inc();
                        }
                    }
                }
                if tx.send(done).is_err() {
                    return;
                }
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
    let ((), written, ()) = tokio::join!(executor, writer, committer.run(ctx.store, &fences));
    written?;
    report.deferred += deferred.into_inner();
    report.duration = started.elapsed();
    Ok(report)
}
