//! Record: what a pass learned, written back in batches.
//!
//! In: [`Done`]s from the outcome stage (or the survey's early outcomes). Out: the journal
//! (completions of pending rows, adoptions, withdrawn rows, settled creates), the status rows
//! that changed with the create intents they settle (one fenced transaction), counters, and the
//! log lines of agents whose status changed.

use std::collections::HashMap;

use uuid::Uuid;

use super::outcome::{Done, Outcome, Reason};
use super::pass::{PassContext, PassError, PassReport};
use crate::store::{Memo, RecordedStatus, SyncState};

/// Counts outcomes, appends their journal entries, and writes the statuses that change what the
/// status table says together with the intents they settle.
pub(super) async fn record(
    ctx: &PassContext<'_>,
    done: Vec<Done>,
    recorded: &HashMap<Uuid, RecordedStatus>,
    report: &mut PassReport,
) -> Result<(), PassError> {
    let mut updates = Vec::with_capacity(done.len());
    let mut journal = Vec::new();
    let mut discarded = Vec::new();
    let mut creates = Vec::new();
    let mut settled = Vec::new();
    let mut memos = Vec::new();
    for d in done {
        if let Some(m) = ctx.metrics {
            for j in &d.journal {
                m.actions_total
                    .with_label_values(&[j.action, j.outcome.as_str()])
                    .inc();
            }
        }
        journal.extend(d.journal);
        discarded.extend(d.discarded);
        creates.extend(d.create_settled);
        settled.extend(d.settle_intent);
        report.unverified += usize::from(d.needs_full_pass);
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
        ctx.requeue.forget_settled(&o);
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
        // Logged when the status changes, not on every pass that finds it unchanged: a few
        // invalid agents at a short resync would otherwise fill the logs with the same lines.
        let was = recorded.get(&o.agent_id);
        let changed = !already_recorded(&o, was);
        count(&o, changed, report);
        if changed {
            updates.push(o.to_update());
        } else if let Some(digest) = new_memo(&o, was) {
            // The row stays as it is (why it got synced); only the memo is added to it.
            memos.push(Memo {
                agent_id: o.agent_id,
                generation: o.generation,
                digest: digest.to_vec(),
            });
        }
    }
    // The journal first: it must hold every write even if this replica was just deposed.
    ctx.store
        .record_journal(&journal, &discarded, &creates)
        .await?;
    report.journal_entries += journal.len();
    ctx.store
        .write_outcomes(&ctx.owner.fences(), &updates, &settled, &memos)
        .await?;
    report.status_writes += updates.len();
    report.memos_written += memos.len();
    Ok(())
}

/// An in-sync outcome whose row stays, with a memo digest the row does not hold yet.
fn new_memo<'o>(o: &'o Outcome, recorded: Option<&RecordedStatus>) -> Option<&'o [u8; 32]> {
    let digest = o.in_sync_digest.as_ref()?;
    let held = recorded.and_then(|r| r.in_sync_digest.as_ref());
    (o.reason == Reason::InSync && held != Some(digest)).then_some(digest)
}

fn count(o: &Outcome, changed: bool, report: &mut PassReport) {
    match (o.state, o.reason) {
        (SyncState::Failed, _) => {
            report.failed += 1;
            if changed {
                tracing::warn!(agent_id = %o.agent_id, reason = o.reason.as_str(), status_message = %o.message, "agent failed");
            } else {
                tracing::debug!(agent_id = %o.agent_id, reason = o.reason.as_str(), "agent still failing");
            }
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
