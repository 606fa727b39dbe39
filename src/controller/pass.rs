//! One reconcile pass: read desired state, list actual state, plan (pure), execute, record.
//!
//! ```text
//!  Postgres ──1 query──▶ agents ─┐
//!                                ├─▶ reconcile::plan ─▶ decisions ─▶ execute (≤ C writes at once)
//!  Vapi ──paged LIST──▶ assistants┘                                      │
//!                                                                        ▼
//!                                              status batches ──▶ Postgres (agent_status)
//! ```
//! A pass never stops for one agent: each decision ends in an [`Outcome`], failures included.
//! There are no retry loops inside a pass; the next pass is the retry.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::outcome::{Outcome, Reason, failure_message, keys_of};
use crate::credentials::ApiKey;
use crate::reconcile::{self, Action, ActualAssistant, Decision};
use crate::store::{RecordedStatus, Store, StoreError, SyncState};
use crate::vapi::{VapiClient, VapiError};

/// What one pass did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PassReport {
    pub agents: usize,
    pub assistants_listed: usize,
    pub in_sync: usize,
    pub created: usize,
    pub patched: usize,
    pub recreated: usize,
    pub adopted: usize,
    pub failed: usize,
    /// Decisions not executed because shutdown began.
    pub skipped: usize,
    pub status_writes: usize,
    /// Why the assistants could not be listed, when they could not.
    pub list_error: Option<String>,
    /// Wall time of the pass, in seconds.
    #[serde(rename = "duration_seconds", with = "as_seconds")]
    pub duration: Duration,
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

/// The parts a pass needs.
pub struct PassContext<'a> {
    pub store: &'a Store,
    pub vapi: &'a VapiClient,
    pub key: &'a ApiKey,
    pub concurrency: usize,
    pub cancel: &'a CancellationToken,
}

/// Status rows are flushed in batches of at most this many, as outcomes arrive.
const STATUS_BATCH: usize = 500;

pub async fn run_pass(ctx: &PassContext<'_>) -> Result<PassReport, PassError> {
    let started = Instant::now();
    let rows = ctx.store.load_agents().await?;
    let mut report = PassReport {
        agents: rows.len(),
        ..PassReport::default()
    };
    let recorded: HashMap<Uuid, RecordedStatus> = rows
        .iter()
        .filter_map(|(a, r)| r.clone().map(|r| (a.id, r)))
        .collect();
    let agents: Vec<_> = rows.into_iter().map(|(a, _)| a).collect();

    let assistants = match list(ctx).await {
        Ok(assistants) => assistants,
        Err(err) => {
            // Without the actual state nothing can be decided; every agent says why, except an
            // agent whose spec is unsendable, which keeps saying so (that needs no listing).
            tracing::warn!(error = %err, kind = err.kind(), "listing assistants failed");
            report.list_error = Some(err.to_string());
            let outcomes = agents
                .iter()
                .map(|a| match reconcile::desired_body(a) {
                    Err(problems) => invalid(a.id, a.generation, &problems),
                    Ok(_) => {
                        let message =
                            failure_message("list assistants", &err, ctx.key.fingerprint());
                        Outcome::failed(a.id, a.generation, Reason::of(&err), message, false)
                    }
                })
                .collect();
            record(ctx, outcomes, &recorded, &mut report).await?;
            report.duration = started.elapsed();
            return Ok(report);
        }
    };
    report.assistants_listed = assistants.len();
    let decisions = reconcile::plan(&agents, &assistants);
    finish(ctx, decisions, &recorded, report, started).await
}

async fn list(ctx: &PassContext<'_>) -> Result<Vec<ActualAssistant>, VapiError> {
    let items = ctx.vapi.list_all(ctx.key).await?;
    Ok(items
        .into_iter()
        .filter_map(ActualAssistant::from_value)
        .collect())
}

/// Executes the decisions with bounded concurrency while a writer flushes status batches.
async fn finish(
    ctx: &PassContext<'_>,
    decisions: Vec<Decision>,
    recorded: &HashMap<Uuid, RecordedStatus>,
    mut report: PassReport,
    started: Instant,
) -> Result<PassReport, PassError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Outcome>(STATUS_BATCH);
    let executor = async move {
        let mut skipped = 0;
        let mut results = futures::stream::iter(decisions)
            .map(|d| async move {
                if ctx.cancel.is_cancelled() && is_write(&d.action) {
                    return None;
                }
                Some(execute(ctx, d).await)
            })
            .buffer_unordered(ctx.concurrency);
        while let Some(result) = results.next().await {
            match result {
                Some(outcome) => {
                    if tx.send(outcome).await.is_err() {
                        break;
                    }
                }
                None => skipped += 1,
            }
        }
        skipped
    };
    let writer = async {
        let mut batch = Vec::with_capacity(STATUS_BATCH);
        while rx.recv_many(&mut batch, STATUS_BATCH).await > 0 {
            record(ctx, std::mem::take(&mut batch), recorded, &mut report).await?;
        }
        Ok::<_, PassError>(())
    };
    let (skipped, written) = tokio::join!(executor, writer);
    written?;
    report.skipped = skipped;
    report.duration = started.elapsed();
    Ok(report)
}

fn is_write(action: &Action) -> bool {
    !matches!(action, Action::InSync { .. } | Action::Invalid { .. })
}

/// Counts outcomes and writes those that change what the status table says.
async fn record(
    ctx: &PassContext<'_>,
    outcomes: Vec<Outcome>,
    recorded: &HashMap<Uuid, RecordedStatus>,
    report: &mut PassReport,
) -> Result<(), PassError> {
    let mut updates = Vec::with_capacity(outcomes.len());
    for o in outcomes {
        match (o.state, o.reason) {
            (SyncState::Failed, _) => {
                report.failed += 1;
                tracing::warn!(agent_id = %o.agent_id, reason = o.reason.as_str(), message = %o.message, "agent failed");
            }
            (_, Reason::InSync) => report.in_sync += 1,
            (_, Reason::Created) => report.created += 1,
            (_, Reason::Patched) => report.patched += 1,
            (_, Reason::AssistantRecreated) => report.recreated += 1,
            (_, Reason::Adopted) => report.adopted += 1,
            _ => {}
        }
        if o.state != SyncState::Failed && o.reason != Reason::InSync {
            tracing::info!(agent_id = %o.agent_id, reason = o.reason.as_str(), assistant_id = o.assistant_id.as_deref().unwrap_or(""), message = %o.message, "agent converged");
        }
        if !already_recorded(&o, recorded.get(&o.agent_id)) {
            updates.push(o.to_update());
        }
    }
    ctx.store.write_status(&updates).await?;
    report.status_writes += updates.len();
    Ok(())
}

/// An agent that was, and still is, in sync with the same assistant needs no status write.
fn already_recorded(o: &Outcome, recorded: Option<&RecordedStatus>) -> bool {
    o.reason == Reason::InSync
        && recorded.is_some_and(|r| {
            r.state == Some(SyncState::Synced)
                && r.observed_generation == o.generation
                && r.assistant_id == o.assistant_id
        })
}

async fn execute(ctx: &PassContext<'_>, decision: Decision) -> Outcome {
    let Decision {
        agent_id,
        generation,
        action,
    } = decision;
    let fp = ctx.key.fingerprint();
    match action {
        Action::InSync {
            assistant_id,
            adopted: false,
        } => Outcome::synced(
            agent_id,
            generation,
            Reason::InSync,
            &assistant_id,
            format!("Assistant {assistant_id} matches generation {generation}."),
        ),
        Action::InSync {
            assistant_id,
            adopted: true,
        } => Outcome::synced(
            agent_id,
            generation,
            Reason::Adopted,
            &assistant_id,
            format!(
                "Adopted assistant {assistant_id}, which carries this agent's ownership marker; it matches generation {generation}."
            ),
        ),
        Action::Invalid { problems } => invalid(agent_id, generation, &problems),
        Action::Create { body } => match ctx.vapi.create(ctx.key, &body).await {
            Ok(created) => match id_of(&created) {
                Some(id) => Outcome::synced(
                    agent_id,
                    generation,
                    Reason::Created,
                    &id,
                    format!("Created assistant {id}."),
                ),
                None => bad_answer(agent_id, generation, "create"),
            },
            Err(err) => Outcome::failed(
                agent_id,
                generation,
                Reason::of(&err),
                failure_message("create the assistant", &err, fp),
                true,
            ),
        },
        Action::Recreate { previous_id, body } => {
            recreate(ctx, agent_id, generation, &previous_id, &body).await
        }
        Action::Patch {
            assistant_id,
            patch,
            drift,
            adopted,
        } => match ctx.vapi.update(ctx.key, &assistant_id, &patch).await {
            Ok(_) => {
                let adopted = if adopted {
                    "Adopted assistant and patched"
                } else {
                    "Patched"
                };
                let message = format!(
                    "{adopted} {} on assistant {assistant_id}; differing fields: {}.",
                    keys_of(&patch),
                    drift.join(", ")
                );
                Outcome::synced(
                    agent_id,
                    generation,
                    Reason::Patched,
                    &assistant_id,
                    message,
                )
                .with_drift(drift)
            }
            // Deleted between the listing and the patch: the next pass sees it gone and recreates.
            Err(VapiError::NotFound) => Outcome {
                state: SyncState::Pending,
                ..Outcome::failed(
                    agent_id,
                    generation,
                    Reason::AssistantGone,
                    format!(
                        "Assistant {assistant_id} was deleted from Vapi while being patched; the next pass recreates it."
                    ),
                    true,
                )
            },
            Err(err) => Outcome::failed(
                agent_id,
                generation,
                Reason::of(&err),
                failure_message(&format!("patch assistant {assistant_id}"), &err, fp),
                true,
            )
            .with_drift(drift),
        },
    }
}

async fn recreate(
    ctx: &PassContext<'_>,
    agent_id: Uuid,
    generation: i64,
    previous_id: &str,
    body: &serde_json::Map<String, Value>,
) -> Outcome {
    match ctx.vapi.create(ctx.key, body).await {
        Ok(created) => match id_of(&created) {
            Some(id) => Outcome::synced(
                agent_id,
                generation,
                Reason::AssistantRecreated,
                &id,
                format!(
                    "Assistant {previous_id} no longer exists in Vapi; created {id} in its place."
                ),
            ),
            None => bad_answer(agent_id, generation, "create"),
        },
        Err(err) => Outcome::failed(
            agent_id,
            generation,
            Reason::of(&err),
            failure_message(
                &format!("recreate the assistant (the recorded {previous_id} is gone)"),
                &err,
                ctx.key.fingerprint(),
            ),
            true,
        ),
    }
}

fn invalid(agent_id: Uuid, generation: i64, problems: &[String]) -> Outcome {
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

fn id_of(v: &Value) -> Option<String> {
    v.get("id")?.as_str().map(str::to_owned)
}

fn bad_answer(agent_id: Uuid, generation: i64, what: &str) -> Outcome {
    Outcome::failed(
        agent_id,
        generation,
        Reason::VapiBadResponse,
        format!(
            "Vapi accepted the {what} but its answer carried no assistant id; the next pass adopts the assistant by its ownership marker."
        ),
        true,
    )
}
