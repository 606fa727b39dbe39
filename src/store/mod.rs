//! Postgres: desired agents in, sync status out.
//!
//! The pass reads the whole desired state in one query (agents joined with their status), and
//! status writes go out in batches of one statement each, so a pass costs a constant number of
//! round trips however many agents there are.

use serde_json::Value;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use uuid::Uuid;

use crate::reconcile::DesiredAgent;

pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
#[error("database: {0}")]
pub struct StoreError(#[from] sqlx::Error);

impl StoreError {
    pub fn kind(&self) -> &'static str {
        match &self.0 {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                "unavailable"
            }
            sqlx::Error::Database(_) => "query",
            _ => "other",
        }
    }
}

/// The controller's verdict on one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Pending,
    Synced,
    Failed,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Synced => "synced",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "synced" => Some(Self::Synced),
            "failed" => Some(Self::Failed),
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
}

/// One row of the desired-state query.
///
/// The spec is read as text and parsed per row: Postgres accepts JSON that a parser refuses (such
/// as nesting deeper than 128 levels), and one such row must fail its own agent, not the query.
#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    org_id: Uuid,
    name: String,
    spec: String,
    generation: i64,
    assistant_id: Option<String>,
    observed_generation: Option<i64>,
    state: Option<String>,
}

impl AgentRow {
    fn split(self) -> (DesiredAgent, Option<RecordedStatus>) {
        let recorded = self
            .observed_generation
            .map(|observed_generation| RecordedStatus {
                assistant_id: self.assistant_id.clone(),
                observed_generation,
                state: self.state.as_deref().and_then(SyncState::parse),
            });
        let agent = DesiredAgent {
            id: self.id,
            org_id: self.org_id,
            name: self.name,
            spec: serde_json::from_str(&self.spec).map_err(|e| e.to_string()),
            generation: self.generation,
            recorded_assistant_id: self.assistant_id,
        };
        (agent, recorded)
    }
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

    /// Every live agent with its recorded status, in one query.
    pub async fn load_agents(
        &self,
    ) -> Result<Vec<(DesiredAgent, Option<RecordedStatus>)>, StoreError> {
        let rows: Vec<AgentRow> = sqlx::query_as(
            "select a.id, a.org_id, a.name, a.spec::text as spec, a.generation,
                    s.assistant_id, s.observed_generation, s.state
             from agents a
             left join agent_status s on s.agent_id = a.id
             where a.deleted_at is null
             order by a.org_id, a.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AgentRow::split).collect())
    }

    /// Upserts a batch of outcomes in one statement. Rows for agents purged meanwhile are skipped.
    pub async fn write_status(&self, updates: &[StatusUpdate]) -> Result<(), StoreError> {
        if updates.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(updates.len());
        let mut assistants = Vec::with_capacity(updates.len());
        let mut generations = Vec::with_capacity(updates.len());
        let mut states = Vec::with_capacity(updates.len());
        let mut reasons = Vec::with_capacity(updates.len());
        let mut messages = Vec::with_capacity(updates.len());
        let mut drifts = Vec::with_capacity(updates.len());
        let mut attempted = Vec::with_capacity(updates.len());
        let mut succeeded = Vec::with_capacity(updates.len());
        for u in updates {
            ids.push(u.agent_id);
            assistants.push(u.assistant_id.clone());
            generations.push(u.observed_generation);
            states.push(u.state.as_str());
            reasons.push(u.reason);
            messages.push(u.message.as_str());
            drifts.push(Value::from(u.drift.clone()));
            attempted.push(u.attempted);
            succeeded.push(u.state == SyncState::Synced);
        }
        sqlx::query(
            "insert into agent_status as s (agent_id, assistant_id, observed_generation, state, reason,
                                            message, drift, last_attempt_at, last_success_at, updated_at)
             select u.agent_id, u.assistant_id, u.generation, u.state, u.reason, u.message,
                    array(select jsonb_array_elements_text(u.drift)),
                    case when u.attempted then now() end,
                    case when u.succeeded then now() end,
                    now()
             from unnest($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[],
                         $7::jsonb[], $8::bool[], $9::bool[])
                  as u(agent_id, assistant_id, generation, state, reason, message, drift, attempted, succeeded)
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }
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
