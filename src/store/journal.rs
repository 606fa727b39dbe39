//! The append-only journal of Vapi writes: what an operator reads after an incident.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalOutcome {
    Ok,
    Failed,
    /// The request may or may not have taken effect (timeout, 5xx, dropped connection).
    Unknown,
    /// The assistant was already gone (a 404 on delete or patch).
    Gone,
}

impl JournalOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
            Self::Gone => "gone",
        }
    }
}

/// One Vapi write, or one adoption.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The lease (the shard's) whose epoch this is.
    pub lease: String,
    pub epoch: i64,
    pub holder: String,
    pub org_id: Option<Uuid>,
    pub agent_id: Option<Uuid>,
    pub generation: Option<i64>,
    /// `create`, `recreate`, `patch`, `delete` or `adopt`.
    pub action: &'static str,
    pub outcome: JournalOutcome,
    pub assistant_id: Option<String>,
    pub operation_id: Option<Uuid>,
    pub why: String,
}

pub(super) async fn append(pool: &PgPool, entries: &[JournalEntry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len();
    let mut started = Vec::with_capacity(n);
    let mut finished = Vec::with_capacity(n);
    let mut leases = Vec::with_capacity(n);
    let mut epochs = Vec::with_capacity(n);
    let mut holders = Vec::with_capacity(n);
    let mut orgs = Vec::with_capacity(n);
    let mut agents = Vec::with_capacity(n);
    let mut generations = Vec::with_capacity(n);
    let mut actions = Vec::with_capacity(n);
    let mut outcomes = Vec::with_capacity(n);
    let mut assistants = Vec::with_capacity(n);
    let mut operations = Vec::with_capacity(n);
    let mut whys = Vec::with_capacity(n);
    for e in entries {
        started.push(e.started_at);
        finished.push(e.finished_at);
        leases.push(e.lease.as_str());
        epochs.push(e.epoch);
        holders.push(e.holder.as_str());
        orgs.push(e.org_id);
        agents.push(e.agent_id);
        generations.push(e.generation);
        actions.push(e.action);
        outcomes.push(e.outcome.as_str());
        assistants.push(e.assistant_id.as_deref());
        operations.push(e.operation_id);
        whys.push(e.why.as_str());
    }
    sqlx::query(
        "insert into journal (started_at, finished_at, epoch, holder, org_id, agent_id, generation,
                              action, outcome, assistant_id, operation_id, why, lease)
         select * from unnest($1::timestamptz[], $2::timestamptz[], $3::int8[], $4::text[],
                              $5::uuid[], $6::uuid[], $7::int8[], $8::text[], $9::text[],
                              $10::text[], $11::uuid[], $12::text[], $13::text[])",
    )
    .bind(&started)
    .bind(&finished)
    .bind(&epochs)
    .bind(&holders)
    .bind(&orgs)
    .bind(&agents)
    .bind(&generations)
    .bind(&actions)
    .bind(&outcomes)
    .bind(&assistants)
    .bind(&operations)
    .bind(&whys)
    .bind(&leases)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn trim(pool: &PgPool, retention: std::time::Duration) -> Result<u64, StoreError> {
    let retention = chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    let done = sqlx::query("delete from journal where started_at < now() - $1")
        .bind(retention)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}
