//! Postgres for tools and phone-number bindings: desired rows in (with their status and create
//! intent, one query per kind), statuses, intents and journal rows out.
//!
//! The same rules as for agents: status and intent writes are fenced (a deposed leader cannot
//! overwrite its successor), a tool create's intent and its `pending` journal row commit together
//! before the POST, and the journal itself is not fenced. Journal rows carry `kind` (`tool`,
//! `phone_number`), `resource_id` (the row) and `vapi_id` (the object in Vapi); a number's row
//! also names the agent it rings, so the agent's timeline shows its number being re-pointed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{JournalOutcome, Store, StoreError, SyncState, owned};
use crate::leader::Fence;
use crate::reconcile::numbers::DesiredBinding;
use crate::reconcile::tools::{DesiredTool, ToolState};
use crate::reconcile::{CreateIntent, LastApplied, Mode, Shards};

const SHARD_FILTER: &str = "($1 or vapi_reconciler_shard(t.org_id, $2) = any($3))";

/// What `tool_status` said about a tool when the pass read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRecorded {
    pub observed_generation: i64,
    pub state: Option<SyncState>,
    pub reason: String,
}

#[derive(sqlx::FromRow)]
struct ToolRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    spec: String,
    management_mode: String,
    generation: i64,
    deleted: bool,
    vapi_tool_id: Option<String>,
    observed_generation: Option<i64>,
    state: Option<String>,
    reason: Option<String>,
    applied: Option<String>,
    operation_id: Option<Uuid>,
    intent_generation: Option<i64>,
    intent_started_at: Option<DateTime<Utc>>,
}

/// One write of a tool or a number, for the journal.
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    /// The pending row this completes; `None` for a new row.
    pub id: Option<i64>,
    /// `tool` or `phone_number`.
    pub kind: &'static str,
    pub started_at: DateTime<Utc>,
    pub lease: String,
    pub epoch: i64,
    pub holder: String,
    pub org_id: Uuid,
    pub resource_id: Uuid,
    /// The agent a number rings (for its timeline); `None` for tools.
    pub agent_id: Option<Uuid>,
    pub generation: i64,
    pub action: &'static str,
    pub outcome: JournalOutcome,
    pub vapi_id: Option<String>,
    /// For a number: the assistant it was pointed at.
    pub assistant_id: Option<String>,
    pub operation_id: Option<Uuid>,
    pub why: String,
}

/// One row to write to `tool_status` or `phone_number_status`.
#[derive(Debug, Clone)]
pub struct ResourceStatus {
    pub id: Uuid,
    /// The Vapi object; `None` keeps what was recorded.
    pub vapi_id: Option<String>,
    /// For a number: the assistant it rings now (`None` with `pointed` = nobody).
    pub assistant_id: Option<String>,
    pub observed_generation: i64,
    pub state: SyncState,
    pub reason: &'static str,
    pub message: String,
    pub drift: Vec<String>,
    pub applied: Option<Value>,
    pub attempted: bool,
    pub key_fingerprint: Option<String>,
}

/// What a binding's agent looks like to the numbers stage.
#[derive(Debug, Clone)]
pub struct BindingRow {
    pub binding: DesiredBinding,
    /// The bound agent is soft-deleted.
    pub agent_deleted: bool,
    /// The bound agent's recorded assistant and its status, as recorded now.
    pub agent_assistant: Option<String>,
    pub agent_state: Option<SyncState>,
    pub agent_reason: Option<String>,
    /// The agent's status describes its current generation.
    pub agent_current: bool,
    /// What `phone_number_status` says now: observed generation, state, assistant rung.
    pub recorded: Option<(i64, String, Option<String>)>,
}

impl Store {
    /// Every tool of `shards`, deleted ones included, with its status and create intent.
    pub async fn load_tools(
        &self,
        shards: &Shards,
    ) -> Result<Vec<(DesiredTool, Option<ToolRecorded>)>, StoreError> {
        let rows: Vec<ToolRow> = sqlx::query_as(&format!(
            "select t.id, t.org_id, t.name, t.spec::text as spec, t.management_mode, t.generation,
                    t.deleted_at is not null as deleted,
                    s.vapi_tool_id, s.observed_generation, s.state, s.reason,
                    s.applied::text as applied,
                    i.operation_id, i.generation as intent_generation,
                    i.started_at as intent_started_at
             from tools t
             left join tool_status s on s.tool_id = t.id
             left join tool_create_intents i on i.tool_id = t.id
             where {SHARD_FILTER}
               and (t.deleted_at is null or s.state is distinct from 'deleted'
                    or s.observed_generation < t.generation or i.tool_id is not null)
             order by t.org_id, t.id"
        ))
        .bind(shards.is_all())
        .bind(i32::try_from(shards.count()).unwrap_or(i32::MAX))
        .bind(owned(shards))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let recorded = r.observed_generation.map(|g| ToolRecorded {
                    observed_generation: g,
                    state: r.state.as_deref().and_then(SyncState::parse),
                    reason: r.reason.clone().unwrap_or_default(),
                });
                let intent = match (r.operation_id, r.intent_generation, r.intent_started_at) {
                    (Some(operation_id), Some(generation), Some(started_at)) => {
                        Some(CreateIntent {
                            operation_id,
                            generation,
                            started_at,
                        })
                    }
                    _ => None,
                };
                let tool = DesiredTool {
                    id: r.id,
                    org_id: r.org_id,
                    name: r.name,
                    spec: crate::reconcile::validate::parse_spec(&r.spec),
                    generation: r.generation,
                    mode: Mode::parse(&r.management_mode).unwrap_or_default(),
                    deleted: r.deleted,
                    recorded_id: r.vapi_tool_id,
                    last_applied: r.applied.map(LastApplied::from_text),
                    intent,
                };
                (tool, recorded)
            })
            .collect())
    }

    /// Every tool id that exists, under any key and shard: a tool marked for one of them is
    /// never another row's to adopt or delete.
    pub async fn tool_ids(&self) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar("select id from tools")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Live agents that call tools, as `(org, agent name, tool names, the tool ids last applied to
    /// its assistant)`: a tool is still called while either names it.
    #[allow(clippy::type_complexity)]
    pub async fn tool_references(
        &self,
        shards: &Shards,
    ) -> Result<Vec<(Uuid, String, Vec<String>, Vec<String>)>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "select t.org_id, t.name, t.tool_names,
                    coalesce(array(select jsonb_array_elements_text(
                        case when jsonb_typeof(s.applied->'model'->'toolIds') = 'array'
                             then s.applied->'model'->'toolIds' else '[]' end)), '{{}}')
             from agents t left join agent_status s on s.agent_id = t.id
             where t.deleted_at is null and {SHARD_FILTER}
               and (cardinality(t.tool_names) > 0
                    or jsonb_typeof(s.applied->'model'->'toolIds') = 'array')"
        ))
        .bind(shards.is_all())
        .bind(i32::try_from(shards.count()).unwrap_or(i32::MAX))
        .bind(owned(shards))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The live tools of `shards` as agents may reference them: per organization, by name, the
    /// Vapi id when the tool is there at its current generation, else why not.
    pub async fn tool_states(
        &self,
        shards: &Shards,
    ) -> Result<HashMap<Uuid, HashMap<String, ToolState>>, StoreError> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            Uuid,
            String,
            i64,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
        )> = sqlx::query_as(&format!(
            "select t.org_id, t.name, t.generation, s.vapi_tool_id, s.observed_generation,
                        s.state, s.reason
                 from tools t left join tool_status s on s.tool_id = t.id
                 where t.deleted_at is null and {SHARD_FILTER}"
        ))
        .bind(shards.is_all())
        .bind(i32::try_from(shards.count()).unwrap_or(i32::MAX))
        .bind(owned(shards))
        .fetch_all(&self.pool)
        .await?;
        let mut out: HashMap<Uuid, HashMap<String, ToolState>> = HashMap::new();
        for (org, name, generation, vapi_id, observed, state, reason) in rows {
            let current = observed == Some(generation);
            let usable = current
                && matches!(state.as_deref(), Some("synced" | "drifted" | "paused"))
                && vapi_id.is_some();
            let why = match (current, state.as_deref()) {
                (false, _) => format!("generation {generation} is not reconciled yet"),
                (true, Some(s)) => format!("it is {s} ({})", reason.unwrap_or_default()),
                (true, None) => "it has no status yet".to_owned(),
            };
            out.entry(org).or_default().insert(
                name,
                ToolState {
                    vapi_id: vapi_id.filter(|_| usable),
                    why,
                },
            );
        }
        Ok(out)
    }

    /// Records a tool create's intent with its `pending` journal row, fenced, before the POST;
    /// the row's id.
    pub async fn record_tool_intent(
        &self,
        fences: &[Fence],
        tool_id: Uuid,
        intent: &CreateIntent,
        row: &ResourceWrite,
    ) -> Result<i64, StoreError> {
        let mut tx = self.fenced(fences).await?;
        sqlx::query(
            "insert into tool_create_intents (tool_id, operation_id, generation, epoch, started_at)
             values ($1, $2, $3, $4, $5)
             on conflict (tool_id) do update set
                 operation_id = excluded.operation_id, generation = excluded.generation,
                 epoch = excluded.epoch, started_at = excluded.started_at",
        )
        .bind(tool_id)
        .bind(intent.operation_id)
        .bind(intent.generation)
        .bind(row.epoch)
        .bind(intent.started_at)
        .execute(&mut *tx)
        .await?;
        let id = insert_write(&mut *tx, row).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Inserts the `pending` row of a tool or number PATCH or DELETE about to be sent.
    pub async fn begin_resource_write(&self, row: &ResourceWrite) -> Result<i64, StoreError> {
        insert_write(&self.pool, row).await
    }

    /// Completes pending rows (entries with an `id`) and inserts finished ones (without).
    pub async fn finish_resource_writes(&self, rows: &[ResourceWrite]) -> Result<(), StoreError> {
        for r in rows {
            match r.id {
                Some(id) => {
                    sqlx::query(
                        "update journal set outcome = $2, finished_at = case when $2 = 'pending' then null else now() end,
                                vapi_id = coalesce($3, vapi_id), why = $4
                         where id = $1",
                    )
                    .bind(id)
                    .bind(r.outcome.as_str())
                    .bind(r.vapi_id.as_deref())
                    .bind(&r.why)
                    .execute(&self.pool)
                    .await?;
                }
                None => {
                    insert_write(&self.pool, r).await?;
                }
            }
        }
        Ok(())
    }

    /// Settles the pending rows of tool creates whose intent is now settled: `(operation, outcome,
    /// the tool it made, why)`.
    pub async fn settle_tool_creates(
        &self,
        settled: &[(Uuid, JournalOutcome, Option<String>, String)],
    ) -> Result<(), StoreError> {
        for (op, outcome, vapi_id, why) in settled {
            sqlx::query(
                "update journal set outcome = $2, vapi_id = coalesce($3, vapi_id),
                                    why = why || '; ' || $4
                 where operation_id = $1 and outcome = 'pending' and kind = 'tool'",
            )
            .bind(op)
            .bind(outcome.as_str())
            .bind(vapi_id.as_deref())
            .bind(why)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Withdraws pending rows of writes that never reached Vapi.
    pub async fn discard_resource_writes(&self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        sqlx::query("delete from journal where id = any($1) and outcome = 'pending'")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Upserts tool statuses and removes the create intents they settled, fenced.
    pub async fn write_tool_outcomes(
        &self,
        fences: &[Fence],
        updates: &[ResourceStatus],
        settled_intents: &[Uuid],
    ) -> Result<(), StoreError> {
        if updates.is_empty() && settled_intents.is_empty() {
            return Ok(());
        }
        let mut tx = self.fenced(fences).await?;
        if !settled_intents.is_empty() {
            sqlx::query("delete from tool_create_intents where tool_id = any($1)")
                .bind(settled_intents)
                .execute(&mut *tx)
                .await?;
        }
        let c = StatusColumns::of(updates);
        sqlx::query(
            "insert into tool_status as s (tool_id, vapi_tool_id, key_fingerprint,
                 observed_generation, state, reason, message, drift, applied,
                 last_attempt_at, last_success_at, updated_at)
             select u.id, u.vapi_id, u.key, u.generation, u.state, u.reason, u.message,
                    array(select jsonb_array_elements_text(u.drift)), u.applied,
                    case when u.attempted then now() end, case when u.succeeded then now() end,
                    now()
             from unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[],
                         $7::text[], $8::jsonb[], $9::jsonb[], $10::bool[], $11::bool[])
                  as u(id, vapi_id, key, generation, state, reason, message, drift, applied,
                       attempted, succeeded)
             where exists (select 1 from tools t where t.id = u.id)
             on conflict (tool_id) do update set
                 vapi_tool_id = coalesce(excluded.vapi_tool_id, s.vapi_tool_id),
                 key_fingerprint = coalesce(excluded.key_fingerprint, s.key_fingerprint),
                 observed_generation = excluded.observed_generation,
                 state = excluded.state, reason = excluded.reason, message = excluded.message,
                 drift = excluded.drift, applied = coalesce(excluded.applied, s.applied),
                 last_attempt_at = coalesce(excluded.last_attempt_at, s.last_attempt_at),
                 last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
                 updated_at = now()",
        )
        .bind(&c.ids)
        .bind(&c.vapi_ids)
        .bind(&c.keys)
        .bind(&c.generations)
        .bind(&c.states)
        .bind(&c.reasons)
        .bind(&c.messages)
        .bind(&c.drifts)
        .bind(&c.applied)
        .bind(&c.attempted)
        .bind(&c.succeeded)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every binding of `shards` with what is recorded about its agent.
    pub async fn load_bindings(&self, shards: &Shards) -> Result<Vec<BindingRow>, StoreError> {
        #[allow(clippy::type_complexity)]
        let rows: Vec<(
            Uuid,
            Uuid,
            Option<String>,
            Option<String>,
            Option<Uuid>,
            i64,
            String,
            Option<bool>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<bool>,
            Option<i64>,
            Option<String>,
            Option<String>,
        )> = sqlx::query_as(&format!(
            "select t.id, t.org_id, t.vapi_phone_number_id, t.number, t.agent_id, t.generation,
                    t.management_mode, a.deleted_at is not null, s.assistant_id, s.state, s.reason,
                    s.observed_generation = a.generation,
                    ps.observed_generation, ps.state, ps.assistant_id
             from phone_numbers t
             left join agents a on a.id = t.agent_id
             left join agent_status s on s.agent_id = a.id
             left join phone_number_status ps on ps.phone_number_id = t.id
             where {SHARD_FILTER}
             order by t.org_id, t.id"
        ))
        .bind(shards.is_all())
        .bind(i32::try_from(shards.count()).unwrap_or(i32::MAX))
        .bind(owned(shards))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    id,
                    org_id,
                    vapi_id,
                    number,
                    agent_id,
                    generation,
                    mode,
                    deleted,
                    assistant,
                    state,
                    reason,
                    current,
                    r_gen,
                    r_state,
                    r_assistant,
                )| {
                    BindingRow {
                        binding: DesiredBinding {
                            id,
                            org_id,
                            vapi_id,
                            number,
                            agent_id,
                            generation,
                            mode: Mode::parse(&mode).unwrap_or_default(),
                        },
                        agent_deleted: deleted.unwrap_or(false),
                        agent_assistant: assistant,
                        agent_state: state.as_deref().and_then(SyncState::parse),
                        agent_reason: reason,
                        agent_current: current.unwrap_or(false),
                        recorded: r_gen.zip(r_state).map(|(g, s)| (g, s, r_assistant)),
                    }
                },
            )
            .collect())
    }

    /// Upserts binding statuses, fenced.
    pub async fn write_number_outcomes(
        &self,
        fences: &[Fence],
        updates: &[ResourceStatus],
    ) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut tx = self.fenced(fences).await?;
        let c = StatusColumns::of(updates);
        sqlx::query(
            "insert into phone_number_status as s (phone_number_id, vapi_phone_number_id,
                 assistant_id, key_fingerprint, observed_generation, state, reason, message,
                 last_attempt_at, last_success_at, updated_at)
             select u.id, u.vapi_id, u.assistant_id, u.key, u.generation, u.state, u.reason,
                    u.message, case when u.attempted then now() end,
                    case when u.state = 'synced' then now() end, now()
             from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int8[],
                         $6::text[], $7::text[], $8::text[], $9::bool[])
                  as u(id, vapi_id, assistant_id, key, generation, state, reason, message,
                       attempted)
             where exists (select 1 from phone_numbers p where p.id = u.id)
             on conflict (phone_number_id) do update set
                 vapi_phone_number_id = coalesce(excluded.vapi_phone_number_id, s.vapi_phone_number_id),
                 assistant_id = excluded.assistant_id,
                 key_fingerprint = coalesce(excluded.key_fingerprint, s.key_fingerprint),
                 observed_generation = excluded.observed_generation,
                 state = excluded.state, reason = excluded.reason, message = excluded.message,
                 last_attempt_at = coalesce(excluded.last_attempt_at, s.last_attempt_at),
                 last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
                 updated_at = now()",
        )
        .bind(&c.ids)
        .bind(&c.vapi_ids)
        .bind(&c.assistants)
        .bind(&c.keys)
        .bind(&c.generations)
        .bind(&c.states)
        .bind(&c.reasons)
        .bind(&c.messages)
        .bind(&c.attempted)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A batch of statuses as columns, bound as arrays (one statement however many rows).
struct StatusColumns<'a> {
    ids: Vec<Uuid>,
    vapi_ids: Vec<Option<&'a str>>,
    assistants: Vec<Option<&'a str>>,
    keys: Vec<Option<&'a str>>,
    generations: Vec<i64>,
    states: Vec<&'static str>,
    reasons: Vec<&'static str>,
    messages: Vec<&'a str>,
    drifts: Vec<Value>,
    applied: Vec<Option<Value>>,
    attempted: Vec<bool>,
    succeeded: Vec<bool>,
}

impl<'a> StatusColumns<'a> {
    fn of(updates: &'a [ResourceStatus]) -> Self {
        Self {
            ids: updates.iter().map(|u| u.id).collect(),
            vapi_ids: updates.iter().map(|u| u.vapi_id.as_deref()).collect(),
            assistants: updates.iter().map(|u| u.assistant_id.as_deref()).collect(),
            keys: updates
                .iter()
                .map(|u| u.key_fingerprint.as_deref())
                .collect(),
            generations: updates.iter().map(|u| u.observed_generation).collect(),
            states: updates.iter().map(|u| u.state.as_str()).collect(),
            reasons: updates.iter().map(|u| u.reason).collect(),
            messages: updates.iter().map(|u| u.message.as_str()).collect(),
            drifts: updates
                .iter()
                .map(|u| Value::from(u.drift.clone()))
                .collect(),
            applied: updates.iter().map(|u| u.applied.clone()).collect(),
            attempted: updates.iter().map(|u| u.attempted).collect(),
            succeeded: updates
                .iter()
                .map(|u| matches!(u.state, SyncState::Synced | SyncState::Deleted))
                .collect(),
        }
    }
}

async fn insert_write<'e, E>(executor: E, r: &ResourceWrite) -> Result<i64, StoreError>
where
    E: sqlx::PgExecutor<'e>,
{
    let pending = r.outcome == JournalOutcome::Pending;
    Ok(sqlx::query_scalar(
        "insert into journal (kind, started_at, finished_at, epoch, holder, org_id, agent_id,
                              resource_id, generation, action, outcome, assistant_id, vapi_id,
                              operation_id, why, lease)
         values ($1, $2, case when $3 then null else now() end, $4, $5, $6, $7, $8, $9, $10, $11,
                 $12, $13, $14, $15, $16)
         returning id",
    )
    .bind(r.kind)
    .bind(r.started_at)
    .bind(pending)
    .bind(r.epoch)
    .bind(&r.holder)
    .bind(r.org_id)
    .bind(r.agent_id)
    .bind(r.resource_id)
    .bind(r.generation)
    .bind(r.action)
    .bind(r.outcome.as_str())
    .bind(r.assistant_id.as_deref())
    .bind(r.vapi_id.as_deref())
    .bind(r.operation_id)
    .bind(&r.why)
    .bind(&r.lease)
    .fetch_one(executor)
    .await?)
}
