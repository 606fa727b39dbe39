//! The journal of Vapi writes: what an operator reads after an incident.
//!
//! A write's row is inserted as `pending` *before* its request is sent ([`begin`]) and completed
//! once the answer is known ([`complete`], batched with the pass's other records), so a crash
//! mid-call leaves a `pending` row rather than no row. [`resolve_deposed`] settles the rows a
//! deposed writer left behind. Calls the controller refused itself (open breaker, quarantined
//! key) never reached Vapi: their row is withdrawn ([`discard`]), they are counted instead.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalOutcome {
    /// Sent (or about to be); the answer is not recorded yet.
    Pending,
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
            Self::Pending => "pending",
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
    /// The row [`begin`] inserted for this write, which this entry completes; `None`: a new row.
    pub id: Option<i64>,
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

/// Inserts the `pending` row of a write about to be sent; returns its id.
pub(super) async fn begin<'e, E>(executor: E, e: &JournalEntry) -> Result<i64, StoreError>
where
    E: sqlx::PgExecutor<'e>,
{
    let id = sqlx::query_scalar(
        "insert into journal (started_at, finished_at, epoch, holder, org_id, agent_id, generation,
                              action, outcome, assistant_id, operation_id, why, lease)
         values ($1, null, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10, $11)
         returning id",
    )
    .bind(e.started_at)
    .bind(e.epoch)
    .bind(&e.holder)
    .bind(e.org_id)
    .bind(e.agent_id)
    .bind(e.generation)
    .bind(e.action)
    .bind(e.assistant_id.as_deref())
    .bind(e.operation_id)
    .bind(&e.why)
    .bind(&e.lease)
    .fetch_one(executor)
    .await?;
    Ok(id)
}

/// [`begin`] for several writes at once (create intents committed together); the rows' ids in
/// the order of `entries`, each of which carries its operation id.
pub(super) async fn begin_all<'e, E>(
    executor: E,
    entries: &[&JournalEntry],
) -> Result<Vec<i64>, StoreError>
where
    E: sqlx::PgExecutor<'e>,
{
    let cols = Columns::of(entries.iter().copied());
    // The ids come back as one array in the order of the input, matched by operation id (the
    // order of RETURNING is not promised).
    let q = sqlx::query_scalar::<_, Vec<Option<i64>>>(
        "with ins as (
             insert into journal (started_at, finished_at, epoch, holder, org_id, agent_id,
                                  generation, action, outcome, assistant_id, operation_id, why,
                                  lease)
             select u.started_at, null, u.epoch, u.holder, u.org_id, u.agent_id, u.generation,
                    u.action, 'pending', u.assistant_id, u.operation_id, u.why, u.lease
             from unnest($1::timestamptz[], $2::timestamptz[], $3::int8[], $4::text[],
                         $5::uuid[], $6::uuid[], $7::int8[], $8::text[], $9::text[],
                         $10::text[], $11::uuid[], $12::text[], $13::text[])
                  as u(started_at, finished_at, epoch, holder, org_id, agent_id, generation,
                       action, outcome, assistant_id, operation_id, why, lease)
             returning id, operation_id)
         select coalesce(array_agg(ins.id order by o.ord), '{}')
         from unnest($11::uuid[]) with ordinality as o(op, ord)
         left join ins on ins.operation_id = o.op",
    );
    let ids = cols.bind(q).fetch_one(executor).await?;
    if ids.len() != entries.len() || ids.iter().any(Option::is_none) {
        return Err(StoreError::shared(
            "other",
            "a create's journal row came back without its operation id",
        ));
    }
    Ok(ids.into_iter().flatten().collect())
}

/// Completes rows [`begin`] inserted (entries with an `id`) with their outcome.
pub(super) async fn complete(pool: &PgPool, entries: &[&JournalEntry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = entries.iter().filter_map(|e| e.id).collect();
    let finished: Vec<DateTime<Utc>> = entries.iter().map(|e| e.finished_at).collect();
    let outcomes: Vec<&str> = entries.iter().map(|e| e.outcome.as_str()).collect();
    let assistants: Vec<Option<&str>> = entries.iter().map(|e| e.assistant_id.as_deref()).collect();
    let whys: Vec<&str> = entries.iter().map(|e| e.why.as_str()).collect();
    sqlx::query(
        "update journal j set finished_at = u.finished_at, outcome = u.outcome,
                              assistant_id = coalesce(u.assistant_id, j.assistant_id), why = u.why
         from unnest($1::int8[], $2::timestamptz[], $3::text[], $4::text[], $5::text[])
              as u(id, finished_at, outcome, assistant_id, why)
         where j.id = u.id",
    )
    .bind(&ids)
    .bind(&finished)
    .bind(&outcomes)
    .bind(&assistants)
    .bind(&whys)
    .execute(pool)
    .await?;
    Ok(())
}

/// Withdraws rows of writes that were never sent (refused locally, or shutdown began first).
pub(super) async fn discard(pool: &PgPool, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("delete from journal where id = any($1) and outcome = 'pending'")
        .bind(ids)
        .execute(pool)
        .await?;
    Ok(())
}

/// How a create's pending row is settled once its intent is.
#[derive(Debug, Clone)]
pub struct CreateSettled {
    pub operation_id: Uuid,
    /// `Ok` (its assistant was found and adopted) or `Failed` (absent after the grace period).
    pub outcome: JournalOutcome,
    pub assistant_id: Option<String>,
    pub why: String,
}

/// Completes the pending rows of creates whose operation is now settled. Their `finished_at`
/// stays empty: when the request itself ended is not known.
pub(super) async fn settle_creates(
    pool: &PgPool,
    settled: &[CreateSettled],
) -> Result<(), StoreError> {
    if settled.is_empty() {
        return Ok(());
    }
    let ops: Vec<Uuid> = settled.iter().map(|s| s.operation_id).collect();
    let outcomes: Vec<&str> = settled.iter().map(|s| s.outcome.as_str()).collect();
    let assistants: Vec<Option<&str>> = settled.iter().map(|s| s.assistant_id.as_deref()).collect();
    let whys: Vec<&str> = settled.iter().map(|s| s.why.as_str()).collect();
    sqlx::query(
        "update journal j set outcome = u.outcome,
                              assistant_id = coalesce(u.assistant_id, j.assistant_id),
                              why = j.why || '; ' || u.why
         from unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
              as u(operation_id, outcome, assistant_id, why)
         where j.operation_id = u.operation_id and j.outcome = 'pending'
           and j.action in ('create', 'recreate')",
    )
    .bind(&ops)
    .bind(&outcomes)
    .bind(&assistants)
    .bind(&whys)
    .execute(pool)
    .await?;
    Ok(())
}

/// Settles what writers of earlier epochs of these leases left `pending`: patches and deletes
/// become `unknown` (the next comparison shows their effect); creates stay pending while their
/// intent is outstanding (the plan adopts or replaces them, [`settle_creates`]) and become
/// `unknown` once no intent names them. Returns how many rows changed.
pub(super) async fn resolve_deposed(
    pool: &PgPool,
    leases: &[(String, i64)],
) -> Result<u64, StoreError> {
    if leases.is_empty() {
        return Ok(0);
    }
    let names: Vec<&str> = leases.iter().map(|(n, _)| n.as_str()).collect();
    let epochs: Vec<i64> = leases.iter().map(|(_, e)| *e).collect();
    let done = sqlx::query(
        "update journal j set outcome = 'unknown',
                              why = j.why || '; its writer stopped before the answer was recorded'
         from unnest($1::text[], $2::int8[]) as l(lease, epoch)
         where j.outcome = 'pending' and j.lease = l.lease and j.epoch < l.epoch
           and (j.action not in ('create', 'recreate')
                or not exists (select 1 from create_intents i
                               where i.operation_id = j.operation_id)
                   and not exists (select 1 from tool_create_intents i
                                   where i.operation_id = j.operation_id))",
    )
    .bind(&names)
    .bind(&epochs)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The columns of a batch of entries, bound as arrays `$1`..`$13`.
struct Columns<'a> {
    started: Vec<DateTime<Utc>>,
    finished: Vec<DateTime<Utc>>,
    leases: Vec<&'a str>,
    epochs: Vec<i64>,
    holders: Vec<&'a str>,
    orgs: Vec<Option<Uuid>>,
    agents: Vec<Option<Uuid>>,
    generations: Vec<Option<i64>>,
    actions: Vec<&'a str>,
    outcomes: Vec<&'a str>,
    assistants: Vec<Option<&'a str>>,
    operations: Vec<Option<Uuid>>,
    whys: Vec<&'a str>,
}

impl<'a> Columns<'a> {
    fn of(entries: impl ExactSizeIterator<Item = &'a JournalEntry>) -> Self {
        let n = entries.len();
        let mut c = Self {
            started: Vec::with_capacity(n),
            finished: Vec::with_capacity(n),
            leases: Vec::with_capacity(n),
            epochs: Vec::with_capacity(n),
            holders: Vec::with_capacity(n),
            orgs: Vec::with_capacity(n),
            agents: Vec::with_capacity(n),
            generations: Vec::with_capacity(n),
            actions: Vec::with_capacity(n),
            outcomes: Vec::with_capacity(n),
            assistants: Vec::with_capacity(n),
            operations: Vec::with_capacity(n),
            whys: Vec::with_capacity(n),
        };
        for e in entries {
            c.started.push(e.started_at);
            c.finished.push(e.finished_at);
            c.leases.push(e.lease.as_str());
            c.epochs.push(e.epoch);
            c.holders.push(e.holder.as_str());
            c.orgs.push(e.org_id);
            c.agents.push(e.agent_id);
            c.generations.push(e.generation);
            c.actions.push(e.action);
            c.outcomes.push(e.outcome.as_str());
            c.assistants.push(e.assistant_id.as_deref());
            c.operations.push(e.operation_id);
            c.whys.push(e.why.as_str());
        }
        c
    }

    fn bind<'q, O>(
        &'q self,
        q: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        q.bind(&self.started)
            .bind(&self.finished)
            .bind(&self.epochs)
            .bind(&self.holders)
            .bind(&self.orgs)
            .bind(&self.agents)
            .bind(&self.generations)
            .bind(&self.actions)
            .bind(&self.outcomes)
            .bind(&self.assistants)
            .bind(&self.operations)
            .bind(&self.whys)
            .bind(&self.leases)
    }
}

/// Inserts finished entries (adoptions; writes journaled after the fact).
pub(super) async fn append(pool: &PgPool, entries: &[&JournalEntry]) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let cols = Columns::of(entries.iter().copied());
    let q = sqlx::query_scalar::<_, i64>(
        "insert into journal (started_at, finished_at, epoch, holder, org_id, agent_id, generation,
                              action, outcome, assistant_id, operation_id, why, lease)
         select * from unnest($1::timestamptz[], $2::timestamptz[], $3::int8[], $4::text[],
                              $5::uuid[], $6::uuid[], $7::int8[], $8::text[], $9::text[],
                              $10::text[], $11::uuid[], $12::text[], $13::text[])
         returning id",
    );
    cols.bind(q).fetch_all(pool).await?;
    Ok(())
}

pub(super) async fn trim(pool: &PgPool, retention: std::time::Duration) -> Result<u64, StoreError> {
    let retention = chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    // Pending rows are kept until resolved, however old.
    let done =
        sqlx::query("delete from journal where started_at < now() - $1 and outcome <> 'pending'")
            .bind(retention)
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}
