//! Postgres: desired agents in; sync status, create intents, the journal, orphan sightings and
//! guard blocks out.
//!
//! The pass reads the whole desired state in one query (agents joined with their status and
//! create intent), and writes go out in batches of one statement each, so a pass costs a constant
//! number of round trips however many agents there are.
//!
//! Fencing: every write of controller state runs in a transaction that first takes a share lock
//! on the `leader_lease` row and checks that its epoch is still the writer's. A new leader's
//! epoch bump waits for such a transaction and every later one fails with
//! [`StoreError::Fenced`], so a deposed leader cannot overwrite what its successor decided. The
//! journal alone is not fenced: it records what was done, whoever did it.

mod health;
mod journal;
mod resources;

pub use health::CredentialHealth;
pub use journal::{CreateSettled, JournalEntry, JournalOutcome};
pub use resources::{BindingRow, ResourceStatus, ResourceWrite, ToolRecorded};

// Per-organization Vapi keys, sealed by the vault.
mod org_keys;

pub use org_keys::{OrgKeyError, OrgKeyInfo};

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::leader::Fence;
use crate::reconcile::guard::Impact;
use crate::reconcile::{CreateIntent, DesiredAgent, LastApplied, Mode, Shards};

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Another replica took the lease: this one must stop writing.
    #[error("lost leadership: lease {name:?} is no longer at epoch {epoch}")]
    Fenced { name: String, epoch: i64 },
    /// A write shared by several callers failed; each gets this copy of the error.
    #[error("database: {message}")]
    Shared { kind: &'static str, message: String },
}

impl StoreError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
            ) => "unavailable",
            Self::Database(sqlx::Error::Database(_)) => "query",
            Self::Database(_) => "other",
            Self::Fenced { .. } => "fenced",
            Self::Shared { kind, .. } => kind,
        }
    }

    pub(crate) fn shared(kind: &'static str, message: &str) -> Self {
        Self::Shared {
            kind,
            message: message.to_owned(),
        }
    }

    /// This error again, for one more of the callers that shared the failed write.
    pub(crate) fn for_each(&self) -> Self {
        match self {
            Self::Fenced { name, epoch } => Self::Fenced {
                name: name.clone(),
                epoch: *epoch,
            },
            Self::Database(e) => Self::Shared {
                kind: self.kind(),
                message: e.to_string(),
            },
            Self::Shared { kind, message } => Self::Shared {
                kind,
                message: message.clone(),
            },
        }
    }
}

/// A create intent to record, with its create's pending journal row.
#[derive(Debug, Clone)]
pub struct NewIntent {
    pub agent_id: Uuid,
    pub intent: CreateIntent,
    /// The epoch of the lease the agent's shard is written under.
    pub epoch: i64,
    pub row: JournalEntry,
}

/// The controller's verdict on one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Pending,
    Synced,
    Failed,
    /// Observe-only or dry-run: the assistant differs and was left as it is.
    Drifted,
    Paused,
    Deleted,
    /// A deleted tool still referenced by live agents: kept until they stop calling it.
    Blocked,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Synced => "synced",
            Self::Failed => "failed",
            Self::Drifted => "drifted",
            Self::Paused => "paused",
            Self::Deleted => "deleted",
            Self::Blocked => "blocked",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "synced" => Some(Self::Synced),
            "failed" => Some(Self::Failed),
            "drifted" => Some(Self::Drifted),
            "paused" => Some(Self::Paused),
            "deleted" => Some(Self::Deleted),
            "blocked" => Some(Self::Blocked),
            _ => None,
        }
    }
}

/// What the status table said about an agent when the pass read it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedStatus {
    pub assistant_id: Option<String>,
    pub observed_generation: i64,
    pub state: Option<SyncState>,
    pub reason: String,
    pub drift: Vec<String>,
    /// See [`crate::reconcile::memo`].
    pub in_sync_digest: Option<[u8; 32]>,
}

/// A memo digest for an in-sync status row that otherwise stays as it is.
#[derive(Debug, Clone)]
pub struct Memo {
    pub agent_id: Uuid,
    pub generation: i64,
    pub digest: Vec<u8>,
}

/// One row to write to `agent_status`.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    pub agent_id: Uuid,
    /// `None` keeps what was recorded (a failed create leaves the previous record in place).
    pub assistant_id: Option<String>,
    pub observed_generation: i64,
    pub state: SyncState,
    pub reason: &'static str,
    pub message: String,
    pub drift: Vec<String>,
    /// A Vapi write was attempted for this outcome.
    pub attempted: bool,
    /// `None` keeps what was recorded.
    pub key_fingerprint: Option<String>,
    /// `[{path, kind}]`.
    pub drift_detail: Value,
    /// The body now applied to the assistant; `None` keeps what was recorded.
    pub applied: Option<Value>,
    pub normalizations: Vec<String>,
    /// An in-sync status's memo digest; `None` keeps what was recorded when the status is in
    /// sync (a focused pass has no listed text to hash) and clears it otherwise.
    pub in_sync_digest: Option<Vec<u8>>,
}

/// One row of the desired-state query.
///
/// The spec is read as text and parsed per row: Postgres accepts JSON that a parser refuses (such
/// as nesting deeper than 128 levels), and one such row must fail its own agent, not the query.
struct AgentRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    /// `None` where the query left the text out (see `agents_query`).
    spec: Option<String>,
    spec_sha: [u8; 32],
    generation: i64,
    mode: Mode,
    deleted: bool,
    assistant_id: Option<String>,
    observed_generation: Option<i64>,
    state: Option<SyncState>,
    reason: Option<String>,
    drift: Option<Vec<String>>,
    applied: Option<String>,
    applied_sha: Option<[u8; 32]>,
    normalizations: Option<Vec<String>>,
    in_sync_digest: Option<[u8; 32]>,
    operation_id: Option<Uuid>,
    intent_generation: Option<i64>,
    intent_started_at: Option<DateTime<Utc>>,
    tool_names: Vec<String>,
}

/// The columns of [`agents_query`], in order: a row is read by position. By name, sqlx looks
/// each column up in a hash map, 21 lookups a row, a few percent of a steady pass at 100,000
/// agents; the debug build checks every name against its place.
const AGENT_COLUMNS: [&str; 21] = [
    "id",
    "org_id",
    "name",
    "generation",
    "spec",
    "spec_sha",
    "management_mode",
    "deleted",
    "assistant_id",
    "observed_generation",
    "state",
    "reason",
    "drift",
    "applied",
    "applied_sha",
    "normalizations",
    "in_sync_digest",
    "operation_id",
    "intent_generation",
    "intent_started_at",
    "tool_names",
];

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for AgentRow {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row as _;
        debug_assert!(
            AGENT_COLUMNS.iter().enumerate().all(|(i, name)| row
                .try_column(i)
                .is_ok_and(|c| sqlx::Column::name(c) == *name)),
            "agents_query's columns are not AGENT_COLUMNS"
        );
        // A digest read in place (`sha256()` always gives 32 bytes; a memo of another length is
        // no memo).
        let sha = |i: usize| -> Result<Option<[u8; 32]>, sqlx::Error> {
            Ok(row
                .try_get::<Option<&[u8]>, _>(i)?
                .and_then(|b| <[u8; 32]>::try_from(b).ok()))
        };
        Ok(Self {
            id: row.try_get(0)?,
            org_id: row.try_get(1)?,
            name: row.try_get(2)?,
            generation: row.try_get(3)?,
            spec: row.try_get(4)?,
            spec_sha: sha(5)?.unwrap_or_default(),
            // The column's check constraint admits only known modes.
            mode: Mode::parse(row.try_get::<&str, _>(6)?).unwrap_or_default(),
            deleted: row.try_get(7)?,
            assistant_id: row.try_get(8)?,
            observed_generation: row.try_get(9)?,
            state: row
                .try_get::<Option<&str>, _>(10)?
                .and_then(SyncState::parse),
            reason: row.try_get(11)?,
            drift: row.try_get(12)?,
            applied: row.try_get(13)?,
            applied_sha: sha(14)?,
            normalizations: row.try_get(15)?,
            in_sync_digest: sha(16)?,
            operation_id: row.try_get(17)?,
            intent_generation: row.try_get(18)?,
            intent_started_at: row.try_get(19)?,
            tool_names: row.try_get(20)?,
        })
    }
}

impl AgentRow {
    fn split(self) -> (DesiredAgent, Option<RecordedStatus>) {
        let memo = self.in_sync_digest;
        let recorded = self
            .observed_generation
            .map(|observed_generation| RecordedStatus {
                assistant_id: self.assistant_id.clone(),
                observed_generation,
                state: self.state,
                reason: self.reason.unwrap_or_default(),
                drift: self.drift.unwrap_or_default(),
                in_sync_digest: memo,
            });
        let intent = match (
            self.operation_id,
            self.intent_generation,
            self.intent_started_at,
        ) {
            (Some(operation_id), Some(generation), Some(started_at)) => Some(CreateIntent {
                operation_id,
                generation,
                started_at,
            }),
            _ => None,
        };
        let agent = DesiredAgent {
            id: self.id,
            org_id: self.org_id,
            name: self.name,
            spec: crate::reconcile::Spec::from_store(self.spec, self.spec_sha),
            generation: self.generation,
            mode: self.mode,
            deleted: self.deleted,
            // The voice was refused at this very generation: the status recorded the fallback.
            voice_fallback: self.observed_generation == Some(self.generation)
                && self
                    .normalizations
                    .iter()
                    .flatten()
                    .any(|n| n.ends_with(&format!("({})", crate::reconcile::FALLBACK_RULE))),
            recorded_assistant_id: self.assistant_id,
            // Written by the controller itself; an unreadable one only loses the third side.
            last_applied: self
                .applied_sha
                .map(|sha| LastApplied::from_store(self.applied, sha)),
            intent,
            tool_names: self.tool_names,
            tool_ids: Vec::new(),
            in_sync_digest: memo,
        };
        (agent, recorded)
    }
}

/// A marked assistant whose agent no longer exists, as a pass saw it.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub assistant_id: String,
    pub agent_id: Uuid,
    /// The organization its marker names, when that is an id.
    pub org_id: Option<Uuid>,
    pub first_seen: DateTime<Utc>,
}

/// An agent with its recorded status and create intent; a `where` clause follows.
///
/// `read` is the condition under which the spec and applied texts come along; their SHA-256
/// always does (Postgres takes it, so an agent whose in-sync memo holds costs the pass 64 bytes
/// instead of its texts; see `reconcile::memo`).
fn agents_query(read: &str) -> String {
    // The columns are AGENT_COLUMNS, in that order.
    format!(
        "select a.id, a.org_id, a.name, a.generation,
            case when {read} then a.spec::text end as spec,
            sha256(convert_to(a.spec::text, 'UTF8')) as spec_sha,
            a.management_mode, a.deleted_at is not null as deleted,
            s.assistant_id, s.observed_generation, s.state, s.reason, s.drift,
            case when {read} then s.applied::text end as applied,
            sha256(convert_to(s.applied::text, 'UTF8')) as applied_sha,
            s.normalizations, s.in_sync_digest,
            i.operation_id, i.generation as intent_generation,
            i.started_at as intent_started_at, a.tool_names
        from agents a
        left join agent_status s on s.agent_id = a.id
        left join create_intents i on i.agent_id = a.id"
    )
}

/// A full pass leaves out the texts of an agent whose memo may hold: one at the generation its
/// status observed. The survey reads the texts of those whose memo then misses.
const READ_UNLESS_REMEMBERED: &str =
    "s.in_sync_digest is null or s.observed_generation is distinct from a.generation";

fn owned(shards: &Shards) -> Vec<i32> {
    shards
        .owned()
        .map(|s| i32::try_from(s).unwrap_or(i32::MAX))
        .collect()
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Every agent, deleted ones included (their assistants are the controller's to delete, even
    /// one that appears late), with its recorded status and create intent, in one query.
    ///
    /// Only the organizations of `shards` (the hash is `vapi_reconciler_shard`).
    pub async fn load_agents(
        &self,
        shards: &Shards,
    ) -> Result<Vec<(DesiredAgent, Option<RecordedStatus>)>, StoreError> {
        let rows = sqlx::query_as::<_, AgentRow>(&format!(
            "{} where $1 or vapi_reconciler_shard(a.org_id, $2) = any($3)
             order by a.org_id, a.id",
            agents_query(READ_UNLESS_REMEMBERED)
        ))
        .bind(shards.is_all())
        .bind(i32::try_from(shards.count()).unwrap_or(i32::MAX))
        .bind(owned(shards))
        // Each row becomes an agent as it arrives: the pass never holds the rows and the agents
        // made of them at once.
        .fetch(&self.pool)
        .map_ok(AgentRow::split)
        .try_collect()
        .await?;
        Ok(rows)
    }

    /// The agents of `ids` that exist and belong to `shards`, as [`Store::load_agents`] reads
    /// them (by primary key: the cost follows `ids`, not the fleet).
    pub async fn load_agents_by_id(
        &self,
        shards: &Shards,
        ids: &[Uuid],
    ) -> Result<Vec<(DesiredAgent, Option<RecordedStatus>)>, StoreError> {
        let rows: Vec<AgentRow> = sqlx::query_as(&format!(
            "{} where a.id = any($4)
               and ($1 or vapi_reconciler_shard(a.org_id, $2) = any($3))
             order by a.org_id, a.id",
            agents_query("true")
        ))
        .bind(shards.is_all())
        .bind(i32::try_from(shards.count()).unwrap_or(i32::MAX))
        .bind(owned(shards))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AgentRow::split).collect())
    }

    /// Starts a transaction that holds every fence's lease row (share lock) at its epoch: the
    /// write commits only while none of the leases it relies on has moved on.
    async fn fenced(&self, fences: &[Fence]) -> Result<Transaction<'static, Postgres>, StoreError> {
        if fences.is_empty() {
            return Err(StoreError::Fenced {
                name: String::new(),
                epoch: -1,
            });
        }
        let mut tx = self.pool.begin().await?;
        let names: Vec<&str> = fences.iter().map(|f| f.name.as_str()).collect();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "select name, epoch from leader_lease where name = any($1) order by name for share",
        )
        .bind(&names)
        .fetch_all(&mut *tx)
        .await?;
        let epochs: HashMap<&str, i64> = rows.iter().map(|(n, e)| (n.as_str(), *e)).collect();
        if let Some(stale) = fences
            .iter()
            .find(|f| epochs.get(f.name.as_str()) != Some(&f.epoch))
        {
            return Err(StoreError::Fenced {
                name: stale.name.clone(),
                epoch: stale.epoch,
            });
        }
        Ok(tx)
    }

    /// Records create intents before their POSTs are sent and, in the same transaction, the
    /// `pending` journal row of each POST: an intent and its row exist together or not at all.
    /// The rows' ids, in the order of `intents`.
    pub async fn record_intents(
        &self,
        fences: &[Fence],
        intents: &[NewIntent],
    ) -> Result<Vec<i64>, StoreError> {
        if intents.is_empty() {
            return Ok(Vec::new());
        }
        let agents: Vec<Uuid> = intents.iter().map(|n| n.agent_id).collect();
        let operations: Vec<Uuid> = intents.iter().map(|n| n.intent.operation_id).collect();
        let generations: Vec<i64> = intents.iter().map(|n| n.intent.generation).collect();
        let epochs: Vec<i64> = intents.iter().map(|n| n.epoch).collect();
        let started: Vec<DateTime<Utc>> = intents.iter().map(|n| n.intent.started_at).collect();
        let mut tx = self.fenced(fences).await?;
        sqlx::query(
            "insert into create_intents (agent_id, operation_id, generation, epoch, started_at)
             select u.agent_id, u.operation_id, u.generation, u.epoch, u.started_at
             from unnest($1::uuid[], $2::uuid[], $3::int8[], $4::int8[], $5::timestamptz[])
                  as u(agent_id, operation_id, generation, epoch, started_at)
             on conflict (agent_id) do update set
                 operation_id = excluded.operation_id,
                 generation   = excluded.generation,
                 epoch        = excluded.epoch,
                 started_at   = excluded.started_at",
        )
        .bind(&agents)
        .bind(&operations)
        .bind(&generations)
        .bind(&epochs)
        .bind(&started)
        .execute(&mut *tx)
        .await?;
        let rows: Vec<&JournalEntry> = intents.iter().map(|n| &n.row).collect();
        let ids = journal::begin_all(&mut *tx, &rows).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Upserts a batch of outcomes and removes the create intents they settled, in one fenced
    /// transaction. Status rows for agents purged meanwhile are skipped.
    pub async fn write_outcomes(
        &self,
        fences: &[Fence],
        updates: &[StatusUpdate],
        settled_intents: &[Uuid],
        memos: &[Memo],
    ) -> Result<(), StoreError> {
        if updates.is_empty() && settled_intents.is_empty() && memos.is_empty() {
            return Ok(());
        }
        let mut tx = self.fenced(fences).await?;
        if !settled_intents.is_empty() {
            sqlx::query("delete from create_intents where agent_id = any($1)")
                .bind(settled_intents)
                .execute(&mut *tx)
                .await?;
        }
        write_status(&mut tx, updates).await?;
        if !memos.is_empty() {
            let ids: Vec<Uuid> = memos.iter().map(|m| m.agent_id).collect();
            let generations: Vec<i64> = memos.iter().map(|m| m.generation).collect();
            let digests: Vec<&[u8]> = memos.iter().map(|m| m.digest.as_slice()).collect();
            // Only onto the in-sync row it was decided with: a row another pass changed since
            // (another generation, another state) does not take it.
            sqlx::query(
                "update agent_status s set in_sync_digest = u.digest
                 from unnest($1::uuid[], $2::int8[], $3::bytea[]) as u(agent_id, generation, digest)
                 where s.agent_id = u.agent_id and s.observed_generation = u.generation
                   and s.state = 'synced'",
            )
            .bind(&ids)
            .bind(&generations)
            .bind(&digests)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// When each currently known orphan was first seen.
    pub async fn orphan_sightings(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, DateTime<Utc>)> =
            sqlx::query_as("select assistant_id, first_seen_at from orphan_sightings")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Replaces the sightings of `shards` with this pass's orphans, keeping first-seen times;
    /// other shards' sightings are their owners'.
    pub async fn record_orphans(
        &self,
        fences: &[Fence],
        shards: &Shards,
        orphans: &[Orphan],
    ) -> Result<(), StoreError> {
        let ids: Vec<&str> = orphans.iter().map(|o| o.assistant_id.as_str()).collect();
        let agents: Vec<Uuid> = orphans.iter().map(|o| o.agent_id).collect();
        let orgs: Vec<Option<Uuid>> = orphans.iter().map(|o| o.org_id).collect();
        let seen: Vec<DateTime<Utc>> = orphans.iter().map(|o| o.first_seen).collect();
        let mut tx = self.fenced(fences).await?;
        sqlx::query(
            "delete from orphan_sightings
             where assistant_id <> all($1)
               and ($2 or coalesce(vapi_reconciler_shard(org_id, $3), 0) = any($4))",
        )
        .bind(&ids)
        .bind(shards.is_all())
        .bind(i32::try_from(shards.count()).unwrap_or(i32::MAX))
        .bind(owned(shards))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "insert into orphan_sightings
                 (assistant_id, agent_id, org_id, first_seen_at, last_seen_at)
             select u.assistant_id, u.agent_id, u.org_id, u.first_seen, now()
             from unnest($1::text[], $2::uuid[], $3::uuid[], $4::timestamptz[])
                  as u(assistant_id, agent_id, org_id, first_seen)
             on conflict (assistant_id) do update set last_seen_at = now()",
        )
        .bind(&ids)
        .bind(&agents)
        .bind(&orgs)
        .bind(&seen)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The organization of an agent, if it exists.
    pub async fn org_of_agent(&self, agent: Uuid) -> Result<Option<Uuid>, StoreError> {
        Ok(
            sqlx::query_scalar("select org_id from agents where id = $1")
                .bind(agent)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Wakes every replica's loop (each listens on the channel the triggers notify).
    pub async fn notify_replicas(&self) -> Result<(), StoreError> {
        sqlx::query("select pg_notify('vapi_reconciler', 'reconcile')")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records journal entries: completes the pending rows they carry the id of, inserts the
    /// others, withdraws the rows of writes never sent, and settles creates' pending rows. Not
    /// fenced: they record what was done, whoever did it.
    pub async fn record_journal(
        &self,
        entries: &[JournalEntry],
        discarded: &[i64],
        creates: &[CreateSettled],
    ) -> Result<(), StoreError> {
        let (begun, new): (Vec<&JournalEntry>, Vec<&JournalEntry>) =
            entries.iter().partition(|e| e.id.is_some());
        journal::append(&self.pool, &new).await?;
        journal::complete(&self.pool, &begun).await?;
        journal::discard(&self.pool, discarded).await?;
        journal::settle_creates(&self.pool, creates).await
    }

    /// Inserts the `pending` journal row of a PATCH or DELETE about to be sent; returns its id.
    ///
    /// The commit does not wait for the WAL flush (`synchronous_commit = off` for this
    /// transaction only): the row is committed and visible before the request leaves, so a
    /// controller that dies mid-call leaves it `pending` for the next leader, but only a crash of
    /// Postgres itself within the WAL writer's delay (200 ms by default) could lose it. That
    /// bounded gap buys a focused pass its reaction time back (a flush per edit); a PATCH or
    /// DELETE is idempotent and re-derived from state, so nothing but the audit row is at stake.
    /// Create intents, which prevent duplicates, are always flushed ([`Store::record_intents`]).
    pub async fn begin_write(&self, entry: &JournalEntry) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let id = journal::begin(&mut *tx, entry).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Settles the pending journal rows earlier epochs of these leases left behind.
    pub async fn resolve_deposed_writes(&self, fences: &[Fence]) -> Result<u64, StoreError> {
        let leases: Vec<(String, i64)> = fences.iter().map(|f| (f.name.clone(), f.epoch)).collect();
        journal::resolve_deposed(&self.pool, &leases).await
    }

    /// Deletes journal entries older than `retention`; returns how many.
    pub async fn trim_journal(&self, retention: std::time::Duration) -> Result<u64, StoreError> {
        journal::trim(&self.pool, retention).await
    }

    /// What a dashboard reads, as JSON rows: live and deleted agents, optionally one org or one
    /// agent.
    pub async fn agent_statuses(
        &self,
        org: Option<Uuid>,
        agent: Option<Uuid>,
    ) -> Result<Vec<Value>, StoreError> {
        Ok(sqlx::query_scalar(
            "select to_jsonb(v) || jsonb_build_object('deleted', false)
             from agent_sync_status v
             where ($1::uuid is null or v.org_id = $1) and ($2::uuid is null or v.agent_id = $2)
             union all
             select to_jsonb(d) || jsonb_build_object('deleted', true)
             from agent_deletion_status d
             where ($1::uuid is null or d.org_id = $1) and ($2::uuid is null or d.agent_id = $2)",
        )
        .bind(org)
        .bind(agent)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Live agents by the state a dashboard shows.
    pub async fn state_counts(
        &self,
    ) -> Result<std::collections::BTreeMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("select state, count(*) from agent_sync_status group by state")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// A confirmation, still valid, that covers this impact: its block id.
    pub async fn guard_confirmation(&self, impact: &Impact) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "select id from guard_blocks
             where confirmed_at is not null and expires_at > now()
               and deletes >= $1 and recreates >= $2
             order by id desc limit 1",
        )
        .bind(i64::try_from(impact.deletes).unwrap_or(i64::MAX))
        .bind(i64::try_from(impact.recreates).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records a blocked pass; an open block with the same counts is refreshed, not repeated.
    pub async fn record_guard_block(
        &self,
        fences: &[Fence],
        impact: &Impact,
        sample: &Value,
    ) -> Result<i64, StoreError> {
        let deletes = i64::try_from(impact.deletes).unwrap_or(i64::MAX);
        let recreates = i64::try_from(impact.recreates).unwrap_or(i64::MAX);
        let mut tx = self.fenced(fences).await?;
        let open: Option<i64> = sqlx::query_scalar(
            "update guard_blocks set last_seen_at = now(), sample = $3
             where id = (select max(id) from guard_blocks where confirmed_at is null)
               and deletes = $1 and recreates = $2
             returning id",
        )
        .bind(deletes)
        .bind(recreates)
        .bind(sample)
        .fetch_optional(&mut *tx)
        .await?;
        let id =
            match open {
                Some(id) => id,
                None => sqlx::query_scalar(
                    "insert into guard_blocks (epoch, deletes, recreates, fleet, \"limit\", sample)
                     values ($1, $2, $3, $4, $5, $6) returning id",
                )
                .bind(fences.first().map_or(-1, |f| f.epoch))
                .bind(deletes)
                .bind(recreates)
                .bind(i64::try_from(impact.fleet).unwrap_or(i64::MAX))
                .bind(i64::try_from(impact.limit).unwrap_or(i64::MAX))
                .bind(sample)
                .fetch_one(&mut *tx)
                .await?,
            };
        tx.commit().await?;
        Ok(id)
    }

    /// Confirms a block: passes destroying at most its counts may run until `valid_for` elapses.
    pub async fn confirm_guard_block(
        &self,
        id: i64,
        by: &str,
        valid_for: std::time::Duration,
    ) -> Result<Option<GuardBlock>, StoreError> {
        let valid_for = chrono::TimeDelta::from_std(valid_for).unwrap_or(chrono::TimeDelta::MAX);
        Ok(sqlx::query_as(
            "update guard_blocks
             set confirmed_at = now(), confirmed_by = $2, expires_at = now() + $3
             where id = $1
             returning id, created_at, last_seen_at, epoch, deletes, recreates, fleet,
                       \"limit\", sample, confirmed_at, confirmed_by, expires_at",
        )
        .bind(id)
        .bind(by)
        .bind(valid_for)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The most recent blocks, newest first.
    pub async fn guard_blocks(&self, limit: i64) -> Result<Vec<GuardBlock>, StoreError> {
        Ok(sqlx::query_as(
            "select id, created_at, last_seen_at, epoch, deletes, recreates, fleet, \"limit\",
                    sample, confirmed_at, confirmed_by, expires_at
             from guard_blocks order by id desc limit $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// A pass the blast-radius guard stopped.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct GuardBlock {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub epoch: i64,
    pub deletes: i64,
    pub recreates: i64,
    pub fleet: i64,
    pub limit: i64,
    pub sample: Value,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub confirmed_by: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Upserts a batch of outcomes in one statement. Rows for agents purged meanwhile are skipped.
async fn write_status(
    tx: &mut Transaction<'static, Postgres>,
    updates: &[StatusUpdate],
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    {
        let mut ids = Vec::with_capacity(updates.len());
        let mut assistants = Vec::with_capacity(updates.len());
        let mut generations = Vec::with_capacity(updates.len());
        let mut states = Vec::with_capacity(updates.len());
        let mut reasons = Vec::with_capacity(updates.len());
        let mut messages = Vec::with_capacity(updates.len());
        let mut drifts = Vec::with_capacity(updates.len());
        let mut attempted = Vec::with_capacity(updates.len());
        let mut succeeded = Vec::with_capacity(updates.len());
        let mut keys = Vec::with_capacity(updates.len());
        let mut details = Vec::with_capacity(updates.len());
        let mut applied = Vec::with_capacity(updates.len());
        let mut normalizations = Vec::with_capacity(updates.len());
        let mut digests = Vec::with_capacity(updates.len());
        for u in updates {
            ids.push(u.agent_id);
            assistants.push(u.assistant_id.clone());
            generations.push(u.observed_generation);
            states.push(u.state.as_str());
            reasons.push(u.reason);
            messages.push(u.message.as_str());
            drifts.push(Value::from(u.drift.clone()));
            attempted.push(u.attempted);
            keys.push(u.key_fingerprint.clone());
            details.push(u.drift_detail.clone());
            applied.push(u.applied.clone());
            normalizations.push(Value::from(u.normalizations.clone()));
            digests.push(u.in_sync_digest.clone());
            succeeded.push(matches!(u.state, SyncState::Synced | SyncState::Deleted));
        }
        sqlx::query(
            "insert into agent_status as s (agent_id, assistant_id, observed_generation, state, reason,
                                            message, drift, last_attempt_at, last_success_at,
                                            key_fingerprint, drift_detail, applied, normalizations,
                                            in_sync_digest, updated_at)
             select u.agent_id, u.assistant_id, u.generation, u.state, u.reason, u.message,
                    array(select jsonb_array_elements_text(u.drift)),
                    case when u.attempted then now() end,
                    case when u.succeeded then now() end,
                    u.key_fingerprint, u.drift_detail, u.applied,
                    array(select jsonb_array_elements_text(u.normalizations)),
                    u.in_sync_digest, now()
             from unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                         $7::jsonb[], $8::bool[], $9::bool[], $10::text[], $11::jsonb[],
                         $12::jsonb[], $13::jsonb[], $14::bytea[])
                  as u(agent_id, assistant_id, generation, state, reason, message, drift, attempted,
                       succeeded, key_fingerprint, drift_detail, applied, normalizations,
                       in_sync_digest)
             where exists (select 1 from agents a where a.id = u.agent_id)
             on conflict (agent_id) do update set
                 assistant_id        = coalesce(excluded.assistant_id, s.assistant_id),
                 observed_generation = excluded.observed_generation,
                 state               = excluded.state,
                 reason              = excluded.reason,
                 message             = excluded.message,
                 drift               = excluded.drift,
                 last_attempt_at     = coalesce(excluded.last_attempt_at, s.last_attempt_at),
                 last_success_at     = coalesce(excluded.last_success_at, s.last_success_at),
                 key_fingerprint     = coalesce(excluded.key_fingerprint, s.key_fingerprint),
                 drift_detail        = excluded.drift_detail,
                 applied             = coalesce(excluded.applied, s.applied),
                 normalizations      = excluded.normalizations,
                 in_sync_digest      = case when excluded.reason = 'InSync'
                                            then coalesce(excluded.in_sync_digest, s.in_sync_digest)
                                       end,
                 updated_at          = now()",
        )
        .bind(&ids)
        .bind(&assistants)
        .bind(&generations)
        .bind(&states)
        .bind(&reasons)
        .bind(&messages)
        .bind(&drifts)
        .bind(&attempted)
        .bind(&succeeded)
        .bind(&keys)
        .bind(&details)
        .bind(&applied)
        .bind(&normalizations)
        .bind(&digests)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Migrations this binary knows that the database has not applied, as `version description`.
pub async fn unapplied_migrations(pool: &PgPool) -> Result<Vec<String>, StoreError> {
    let exists: bool = sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
        .fetch_one(pool)
        .await?;
    let applied: Vec<i64> = if exists {
        sqlx::query_scalar("select version from _sqlx_migrations where success")
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    Ok(MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect())
}
