//! What the console's pages read: the dashboard views and the controller's own tables, never Vapi
//! (except the agent page's live comparison, which goes through the plan path).
//!
//! Why this shape: the fleet's counts are one aggregate over every live agent (the view's state
//! needs each agent's generation against its status), which at 100,000 agents takes longer than
//! the page may. So the fleet page reads that aggregate from a [`FleetCache`] that takes its first
//! count when the server starts and recounts in the background when a page finds it older than
//! [`FLEET_FRESH`] (stale-while-revalidate, one recount at a time, none while nobody looks), and
//! shows how old it is; everything small (keys,
//! guard blocks, leases) is one more query on every request. Lists are pages of at most
//! [`PAGE_SIZE`] rows: the agents list sorts by name on `agents_live_name_idx` and pages with
//! `LIMIT`/`OFFSET`, asking for one row more to know whether a next page exists, so no page ever
//! counts or renders the whole fleet.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::StoreError;

/// Rows on one page of a list.
pub(crate) const PAGE_SIZE: i64 = 100;
/// A fleet count younger than this is served as it is; an older one is served and recounted.
pub(crate) const FLEET_FRESH: Duration = Duration::from_secs(2);
/// Journal rows on an agent's page.
const TIMELINE: i64 = 50;

/// The fleet aggregate: counts by state, the oldest unresolved agent, failing organizations,
/// and the tools' and numbers' counts.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct FleetCounts {
    pub(crate) agents: std::collections::BTreeMap<String, i64>,
    pub(crate) tools: std::collections::BTreeMap<String, i64>,
    pub(crate) numbers: std::collections::BTreeMap<String, i64>,
    pub(crate) oldest: Option<Unresolved>,
    pub(crate) failing_orgs: Vec<FailingOrg>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct Unresolved {
    pub(crate) agent_id: Uuid,
    pub(crate) name: String,
    pub(crate) state: String,
    pub(crate) reason: String,
    /// The later of its last save and its last success: it has not been synced since.
    pub(crate) since: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct FailingOrg {
    pub(crate) org_id: Uuid,
    pub(crate) name: String,
    pub(crate) failed: i64,
}

/// One aggregate over every live agent, tool and number.
async fn count_fleet(pool: &PgPool) -> Result<FleetCounts, StoreError> {
    let value: Value = sqlx::query_scalar(
        "with v as materialized (
             select agent_id, org_id, name, state, reason,
                    greatest(saved_at, last_success_at) as since
             from agent_sync_status
         )
         select jsonb_build_object(
             'agents', (select coalesce(jsonb_object_agg(state, n), '{}')
                        from (select state, count(*) as n from v group by state) c),
             'oldest', (select to_jsonb(o) from (
                            select agent_id, name, state, reason, since from v
                            where state in ('failed', 'drifted', 'pending')
                            order by since, agent_id limit 1) o),
             'failing_orgs', (select coalesce(jsonb_agg(f order by f.failed desc, f.name), '[]')
                              from (select v.org_id, o.name, count(*) as failed
                                    from v join organizations o on o.id = v.org_id
                                    where v.state = 'failed'
                                    group by v.org_id, o.name
                                    order by count(*) desc, o.name limit 10) f),
             'tools', (select coalesce(jsonb_object_agg(state, n), '{}')
                       from (select state, count(*) as n from tool_sync_status
                             where deleted_at is null group by state) t),
             'numbers', (select coalesce(jsonb_object_agg(state, n), '{}')
                         from (select state, count(*) as n from phone_number_sync_status
                               group by state) p))",
    )
    .fetch_one(pool)
    .await?;
    serde_json::from_value(value).map_err(|e| StoreError::shared("query", &e.to_string()))
}

/// The last fleet count, when it was taken, and whether a recount is running.
#[derive(Clone, Default)]
pub(crate) struct FleetCache {
    inner: Arc<Mutex<CacheState>>,
}

#[derive(Default)]
struct CacheState {
    last: Option<(Instant, DateTime<Utc>, FleetCounts)>,
    counting: bool,
}

impl FleetCache {
    /// The last count and when it was taken; the first call waits for one, a later call finding
    /// it older than [`FLEET_FRESH`] starts a recount in the background and returns at once.
    pub(crate) async fn get(
        &self,
        pool: &PgPool,
    ) -> Result<(DateTime<Utc>, FleetCounts), StoreError> {
        let (cached, recount) = {
            let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            let cached = state.last.as_ref().map(|(_, at, c)| (*at, c.clone()));
            let stale = state
                .last
                .as_ref()
                .is_none_or(|(taken, _, _)| taken.elapsed() >= FLEET_FRESH);
            let recount = stale && !state.counting;
            if recount {
                state.counting = true;
            }
            (cached, recount)
        };
        match cached {
            Some(cached) => {
                if recount {
                    let (cache, pool) = (self.clone(), pool.clone());
                    tokio::spawn(async move {
                        if let Err(e) = cache.recount(&pool).await {
                            tracing::warn!(error = %e, "the console's fleet count failed; the last one stays");
                        }
                    });
                }
                Ok(cached)
            }
            None if recount => self.recount(pool).await,
            // Another request is taking the first count: take one of this request's own.
            None => {
                let at = Utc::now();
                Ok((at, count_fleet(pool).await?))
            }
        }
    }

    /// Takes the first count in the background, when a runtime is there to run it.
    pub(crate) fn warm(&self, pool: &PgPool) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        {
            let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if state.last.is_some() || state.counting {
                return;
            }
            state.counting = true;
        }
        let (cache, pool) = (self.clone(), pool.clone());
        runtime.spawn(async move {
            if let Err(e) = cache.recount(&pool).await {
                tracing::warn!(error = %e, "the console's first fleet count failed; a page will take one");
            }
        });
    }

    async fn recount(&self, pool: &PgPool) -> Result<(DateTime<Utc>, FleetCounts), StoreError> {
        let at = Utc::now();
        let counted = count_fleet(pool).await;
        let mut state = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        state.counting = false;
        let counts = counted?;
        state.last = Some((Instant::now(), at, counts.clone()));
        Ok((at, counts))
    }
}

/// The small tables of the fleet page, read on every request in one statement.
#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct FleetLive {
    pub(crate) keys: Vec<KeyRow>,
    pub(crate) blocks: Vec<crate::store::GuardBlock>,
    pub(crate) leases: Vec<LeaseRow>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct KeyRow {
    pub(crate) fingerprint: String,
    pub(crate) scope: String,
    pub(crate) breaker_state: String,
    pub(crate) consecutive_failures: i64,
    pub(crate) open_until: Option<DateTime<Utc>>,
    pub(crate) rejected_at: Option<DateTime<Utc>>,
    pub(crate) rejected_status: Option<i64>,
    pub(crate) rejected_message: Option<String>,
    pub(crate) reset_requested_at: Option<DateTime<Utc>>,
    pub(crate) updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct LeaseRow {
    pub(crate) name: String,
    pub(crate) holder: String,
    pub(crate) epoch: i64,
    pub(crate) acquired_at: Option<DateTime<Utc>>,
    pub(crate) released_at: Option<DateTime<Utc>>,
}

pub(crate) async fn fleet_live(pool: &PgPool) -> Result<FleetLive, StoreError> {
    let value: Value = sqlx::query_scalar(
        "select jsonb_build_object(
             'keys', (select coalesce(jsonb_agg(to_jsonb(h) order by h.fingerprint), '[]')
                      from (select fingerprint, scope, breaker_state, consecutive_failures,
                                   open_until, rejected_at, rejected_status, rejected_message,
                                   reset_requested_at, updated_at
                            from credential_health) h),
             'blocks', (select coalesce(jsonb_agg(to_jsonb(b) order by b.id desc), '[]')
                        from (select id, created_at, last_seen_at, epoch, deletes, recreates,
                                     fleet, \"limit\", sample, confirmed_at, confirmed_by,
                                     expires_at
                              from guard_blocks where confirmed_at is null
                              order by id desc limit 20) b),
             'leases', (select coalesce(jsonb_agg(to_jsonb(l) order by l.name), '[]')
                        from (select name, holder, epoch, acquired_at, released_at
                              from leader_lease) l))",
    )
    .fetch_one(pool)
    .await?;
    serde_json::from_value(value).map_err(|e| StoreError::shared("query", &e.to_string()))
}

/// How the agents list is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Sort {
    #[default]
    Name,
    State,
    Reason,
    Attempted,
}

impl Sort {
    pub(crate) const ALL: [Sort; 4] = [Sort::Name, Sort::State, Sort::Reason, Sort::Attempted];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::State => "state",
            Sort::Reason => "reason",
            Sort::Attempted => "attempted",
        }
    }

    /// The `order by` of this sort, always ending in the agent id so pages never overlap.
    /// Built from this closed list only, never from the request's text.
    fn order_by(self, descending: bool) -> String {
        let dir = if descending { "desc" } else { "asc" };
        match self {
            Sort::Name => format!("name {dir}, agent_id {dir}"),
            Sort::State => format!("state {dir}, name, agent_id"),
            Sort::Reason => format!("reason {dir}, name, agent_id"),
            Sort::Attempted => format!("last_attempt_at {dir} nulls last, agent_id"),
        }
    }
}

/// The agents list's filters, sort and page.
#[derive(Debug, Clone, Default)]
pub(crate) struct AgentQuery {
    pub(crate) org: Option<Uuid>,
    pub(crate) state: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) sort: Sort,
    pub(crate) descending: bool,
    /// Zero-based.
    pub(crate) page: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AgentRow {
    pub(crate) agent_id: Uuid,
    pub(crate) org_id: Uuid,
    pub(crate) org_name: Option<String>,
    pub(crate) name: String,
    pub(crate) state: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) last_attempt_at: Option<DateTime<Utc>>,
}

/// A page's rows (asked for with one more than [`PAGE_SIZE`]) and whether another page follows.
fn one_page<T>(mut rows: Vec<T>) -> (Vec<T>, bool) {
    let size = usize::try_from(PAGE_SIZE).unwrap_or(usize::MAX);
    let more = rows.len() > size;
    rows.truncate(size);
    (rows, more)
}

/// One page of agents and whether another follows.
pub(crate) async fn agents(
    pool: &PgPool,
    q: &AgentQuery,
) -> Result<(Vec<AgentRow>, bool), StoreError> {
    // The view's state is computed, so no index finds it; but an agent is failed, drifted,
    // paused, deleted or blocked only if its status row says so, and those rows are few and
    // indexed (`agent_status_unresolved_idx`): narrowing to them first keeps a filtered list off
    // a scan of the whole fleet. `pending` (also every unprocessed agent) and `synced` (most of
    // the fleet) gain nothing from it.
    let narrow = match q.state.as_deref() {
        Some("pending" | "synced") | None => "",
        Some(_) => {
            "and v.agent_id in (select agent_id from agent_status
                                where state = $2 and state <> 'synced')"
        }
    };
    let sql = format!(
        "select v.agent_id, v.org_id, o.name as org_name, v.name, v.state, v.reason, v.message,
                v.last_attempt_at
         from agent_sync_status v
         left join organizations o on o.id = v.org_id
         where ($1::uuid is null or v.org_id = $1)
           and ($2::text is null or v.state = $2)
           and ($3::text is null or v.reason = $3)
           {}
         order by {}
         limit $4 offset $5",
        narrow,
        q.sort.order_by(q.descending)
    );
    let rows: Vec<AgentRow> = sqlx::query_as(&sql)
        .bind(q.org)
        .bind(q.state.as_deref())
        .bind(q.reason.as_deref())
        .bind(PAGE_SIZE + 1)
        .bind(q.page.saturating_mul(PAGE_SIZE))
        .fetch_all(pool)
        .await?;
    Ok(one_page(rows))
}

/// Everything the agent page shows of one agent, live or deleted.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct AgentDetail {
    pub(crate) agent_id: Uuid,
    pub(crate) org_id: Uuid,
    pub(crate) org_name: Option<String>,
    pub(crate) name: String,
    pub(crate) spec: Value,
    pub(crate) generation: i64,
    pub(crate) deleted_at: Option<DateTime<Utc>>,
    pub(crate) management_mode: String,
    pub(crate) tool_names: Vec<String>,
    pub(crate) observed_generation: Option<i64>,
    pub(crate) assistant_id: Option<String>,
    pub(crate) state: String,
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) drift_detail: Option<Value>,
    pub(crate) applied: Option<Value>,
    pub(crate) normalizations: Option<Vec<String>>,
    pub(crate) key_fingerprint: Option<String>,
    pub(crate) last_attempt_at: Option<DateTime<Utc>>,
    pub(crate) last_success_at: Option<DateTime<Utc>>,
    pub(crate) saved_at: DateTime<Utc>,
}

pub(crate) async fn agent(pool: &PgPool, id: Uuid) -> Result<Option<AgentDetail>, StoreError> {
    // The state, reason and message as the views say them (pending while not processed at the
    // current generation), for a deleted agent too.
    Ok(sqlx::query_as(
        "select a.id as agent_id, a.org_id, o.name as org_name, a.name, a.spec, a.generation,
                a.deleted_at, a.management_mode, a.tool_names, s.observed_generation,
                s.assistant_id,
                case when s.agent_id is null or s.observed_generation < a.generation
                     then 'pending' else s.state end as state,
                case when s.agent_id is null or s.observed_generation < a.generation
                     then case when a.deleted_at is null then 'AwaitingReconcile'
                               else 'AwaitingDeletion' end
                     else s.reason end as reason,
                case when s.agent_id is null or s.observed_generation < a.generation
                     then 'Generation ' || a.generation || ' is saved and waiting for the controller.'
                     else s.message end as message,
                s.drift_detail, s.applied, s.normalizations, s.key_fingerprint,
                s.last_attempt_at, s.last_success_at, a.updated_at as saved_at
         from agents a
         left join agent_status s on s.agent_id = a.id
         left join organizations o on o.id = a.org_id
         where a.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// One journal row: a Vapi write (or adoption) and its outcome.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct JournalRow {
    pub(crate) id: i64,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) finished_at: Option<DateTime<Utc>>,
    pub(crate) kind: String,
    pub(crate) action: String,
    pub(crate) outcome: String,
    pub(crate) generation: Option<i64>,
    pub(crate) vapi_id: Option<String>,
    pub(crate) holder: String,
    pub(crate) epoch: i64,
    pub(crate) why: String,
}

/// The agent's Vapi writes, newest first: its assistant's (by `agent_id`) and its number's
/// (journaled naming the agent).
pub(crate) async fn timeline(pool: &PgPool, agent: Uuid) -> Result<Vec<JournalRow>, StoreError> {
    Ok(sqlx::query_as(
        "select id, started_at, finished_at, kind, action, outcome, generation,
                coalesce(vapi_id, assistant_id) as vapi_id, holder, epoch, why
         from journal where agent_id = $1
         order by started_at desc, id desc limit $2",
    )
    .bind(agent)
    .bind(TIMELINE)
    .fetch_all(pool)
    .await?)
}

/// One page of a list whose query takes an organization (`$1`, or null for all), a limit (`$2`)
/// and an offset (`$3`).
async fn org_page<T>(
    pool: &PgPool,
    sql: &'static str,
    org: Option<Uuid>,
    page: i64,
) -> Result<(Vec<T>, bool), StoreError>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    let rows: Vec<T> = sqlx::query_as(sql)
        .bind(org)
        .bind(PAGE_SIZE + 1)
        .bind(page.saturating_mul(PAGE_SIZE))
        .fetch_all(pool)
        .await?;
    Ok(one_page(rows))
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ToolRow {
    pub(crate) tool_id: Uuid,
    pub(crate) org_name: Option<String>,
    pub(crate) name: String,
    pub(crate) state: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) vapi_tool_id: Option<String>,
    pub(crate) key_fingerprint: Option<String>,
}

pub(crate) async fn tools(
    pool: &PgPool,
    org: Option<Uuid>,
    page: i64,
) -> Result<(Vec<ToolRow>, bool), StoreError> {
    org_page(
        pool,
        "select t.tool_id, o.name as org_name, t.name, t.state, t.reason, t.message,
                t.vapi_tool_id, t.key_fingerprint
         from tool_sync_status t left join organizations o on o.id = t.org_id
         where ($1::uuid is null or t.org_id = $1)
         order by t.name, t.tool_id limit $2 offset $3",
        org,
        page,
    )
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct NumberRow {
    pub(crate) phone_number_id: Uuid,
    pub(crate) org_name: Option<String>,
    pub(crate) number: Option<String>,
    pub(crate) vapi_phone_number_id: Option<String>,
    pub(crate) agent_id: Option<Uuid>,
    pub(crate) agent_name: Option<String>,
    pub(crate) state: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) assistant_id: Option<String>,
}

pub(crate) async fn numbers(
    pool: &PgPool,
    org: Option<Uuid>,
    page: i64,
) -> Result<(Vec<NumberRow>, bool), StoreError> {
    org_page(
        pool,
        "select p.phone_number_id, o.name as org_name, p.number, p.vapi_phone_number_id,
                p.agent_id, a.name as agent_name, p.state, p.reason, p.message, p.assistant_id
         from phone_number_sync_status p
         left join organizations o on o.id = p.org_id
         left join agents a on a.id = p.agent_id
         where ($1::uuid is null or p.org_id = $1)
         order by p.number nulls last, p.phone_number_id limit $2 offset $3",
        org,
        page,
    )
    .await
}

/// One guard block, confirmed or not.
pub(crate) async fn guard_block(
    pool: &PgPool,
    id: i64,
) -> Result<Option<crate::store::GuardBlock>, StoreError> {
    Ok(sqlx::query_as(
        "select id, created_at, last_seen_at, epoch, deletes, recreates, fleet, \"limit\",
                sample, confirmed_at, confirmed_by, expires_at
         from guard_blocks where id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// The names of the agents a guard block's sample mentions, for the page that shows it.
pub(crate) async fn agent_names(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, String>, StoreError> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("select id, name from agents where id = any($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().collect())
}
