//! Sharding across replicas: organizations hashed onto shards, each shard one lease; replicas
//! divide the shards, never share one, and take over a dead replica's shards.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vapi_reconciler::controller::{Controller, LoopStatus, listen};
use vapi_reconciler::leader::LOCK_CLASS;
use vapi_reconciler::reconcile::shard::shard_of;
use vapi_reconciler::sharding::ShardElector;

const SHARDS: u32 = 4;
/// A safety bound on waits for deterministic signals (status changes), not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(60);

#[sqlx::test]
async fn the_shard_hash_is_the_same_in_rust_and_in_postgres(pool: PgPool) {
    let orgs: Vec<Uuid> = (0..2000).map(|_| Uuid::new_v4()).collect();
    for count in [1u32, 2, 7, 16, 1024] {
        let sql: Vec<i32> = sqlx::query_scalar(
            "select vapi_reconciler_shard(o, $2) from unnest($1::uuid[]) with ordinality as u(o, n)
             order by n",
        )
        .bind(&orgs)
        .bind(i32::try_from(count).unwrap())
        .fetch_all(&pool)
        .await
        .unwrap();
        let rust: Vec<i32> = orgs
            .iter()
            .map(|o| i32::try_from(shard_of(*o, count)).unwrap())
            .collect();
        assert_eq!(sql, rust, "shard count {count}");
    }
}

/// One replica of the controller, run as `run` runs it.
struct Replica {
    holder: String,
    controller: Arc<Controller>,
    /// Its own connections, as a process has: a crash takes them down with it.
    pool: PgPool,
    status: watch::Receiver<LoopStatus>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
    listener: tokio::task::AbortHandle,
}

impl Replica {
    async fn start(env: &common::TestEnv, holder: &str, shards: u32) -> Self {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_with((*env.pool.connect_options()).clone())
            .await
            .unwrap();
        let controller = Arc::new(with_holder(env, &pool, holder));
        let elector = ShardElector::new(
            (*env.pool.connect_options()).clone(),
            common::leader_config(holder),
            shards,
        );
        let status = controller.subscribe();
        let cancel = CancellationToken::new();
        // As `run` runs it: the loop, and the listener that wakes it on every change.
        let listener = tokio::spawn(listen::listen(
            pool.clone(),
            controller.activator(),
            cancel.clone(),
            |_| {},
        ));
        let listening = listener.abort_handle();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            let controller = controller.clone();
            async move {
                controller.run(&elector, cancel).await;
                listener.abort();
            }
        });
        Self {
            holder: holder.to_owned(),
            controller: controller.clone(),
            pool,
            status,
            cancel,
            task,
            listener: listening,
        }
    }

    fn shards(&self) -> BTreeSet<u32> {
        self.status
            .borrow()
            .shards
            .iter()
            .filter(|s| s.writing)
            .map(|s| s.shard)
            .collect()
    }

    async fn until(&mut self, what: &str, ok: impl FnMut(&LoopStatus) -> bool) {
        tokio::time::timeout(PATIENCE, self.status.wait_for(ok))
            .await
            .unwrap_or_else(|_| panic!("{}: {what}", self.holder))
            .unwrap();
    }

    /// Like a killed process: nothing is released, the sessions just close (a transaction cut
    /// off mid-way included).
    async fn crash(self) {
        self.task.abort();
        self.listener.abort();
        let _ = self.task.await;
        self.pool.close().await;
    }

    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap();
    }
}

fn with_holder(env: &common::TestEnv, pool: &PgPool, holder: &str) -> Controller {
    let mut settings = common::test_settings();
    settings.leader.holder = holder.to_owned();
    vapi_reconciler::app::controller(
        &settings,
        pool,
        env.vapi.clone(),
        vapi_reconciler::credentials::PlatformKey::fixed(env.key.clone()),
    )
}

/// Organizations until every shard has at least two, each with one agent.
async fn fleet(pool: &PgPool) -> BTreeMap<Uuid, (Uuid, u32)> {
    let mut agents = BTreeMap::new();
    let mut per_shard = [0u32; SHARDS as usize];
    let mut n = 0;
    while per_shard.iter().any(|c| *c < 2) {
        n += 1;
        let org = common::org(pool, &format!("clinic {n}")).await;
        let shard = shard_of(org, SHARDS);
        per_shard[shard as usize] += 1;
        let agent = common::agent(pool, org, &format!("front-desk {n}"), common::spec(n)).await;
        agents.insert(agent, (org, shard));
    }
    agents
}

async fn synced_at(pool: &PgPool, agents: &[Uuid]) -> usize {
    let n: i64 = sqlx::query_scalar(
        "select count(*) from agent_status s join agents a on a.id = s.agent_id
         where s.agent_id = any($1) and s.state = 'synced' and s.observed_generation = a.generation",
    )
    .bind(agents)
    .fetch_one(pool)
    .await
    .unwrap();
    usize::try_from(n).unwrap()
}

/// Waits (on passes, not on time) until every one of `agents` is synced at its generation.
async fn until_synced(pool: &PgPool, replicas: &mut [&mut Replica], agents: &[Uuid]) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if synced_at(pool, agents).await == agents.len() {
            return;
        }
        // Full passes, and focused ones over agents a notification named.
        let done = |s: &LoopStatus| s.passes + s.focused_passes;
        let passes: Vec<u64> = replicas.iter().map(|r| done(&r.status.borrow())).collect();
        let wait = async {
            futures::future::select_all(replicas.iter_mut().zip(passes).map(|(r, seen)| {
                Box::pin(async move {
                    let _ = r.status.wait_for(|s| done(s) > seen).await;
                })
            }))
            .await
        };
        assert!(
            tokio::time::timeout_at(deadline, wait).await.is_ok(),
            "agents not synced: {} of {}",
            synced_at(pool, agents).await,
            agents.len()
        );
    }
}

/// The holder of each shard lease's lock now, per `pg_locks` and `leader_lease`.
async fn lock_holders(pool: &PgPool) -> BTreeMap<String, (i64, String)> {
    sqlx::query_as::<_, (String, i64, String)>(
        "select l.name, count(k.pid), l.holder from leader_lease l
         left join pg_locks k on k.locktype = 'advisory' and k.granted and k.objsubid = 2
              and k.classid = $1::int4::oid and k.objid = hashtext(l.name)::int4::oid
              and k.database = (select oid from pg_database where datname = current_database())
         group by l.name, l.holder",
    )
    .bind(LOCK_CLASS)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(name, locks, holder)| (name, (locks, holder)))
    .collect()
}

/// Journal writes per lease and epoch: (holder, first start, last finish).
async fn journal_epochs(pool: &PgPool) -> Vec<(String, i64, String, f64, f64)> {
    sqlx::query_as(
        "select lease, epoch, min(holder), extract(epoch from min(started_at))::float8,
                extract(epoch from max(finished_at))::float8
         from journal group by lease, epoch order by lease, epoch",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn lease(shard: u32) -> String {
    format!("vapi-reconciler/shard-{shard}")
}

fn writing(n: usize) -> impl FnMut(&LoopStatus) -> bool {
    move |s| s.shards.iter().filter(|x| x.writing).count() == n
}

/// Exactly one lock per shard lease, held by the replica that says it holds the shard.
async fn assert_exclusive(pool: &PgPool, replicas: &[&Replica]) {
    let mut seen = BTreeSet::new();
    let holders = lock_holders(pool).await;
    for r in replicas {
        for shard in r.shards() {
            assert!(seen.insert(shard), "shard {shard} held twice");
            let (locks, holder) = &holders[&lease(shard)];
            assert_eq!(
                (*locks, holder.as_str()),
                (1, r.holder.as_str()),
                "shard {shard}"
            );
        }
    }
    assert_eq!(seen, (0..SHARDS).collect(), "every shard has an owner");
}

/// One writer per shard at any time: each lease's epochs have one holder each, and every
/// epoch's writes end before the next epoch's begin; every write is under its org's shard.
async fn assert_one_writer_per_shard(pool: &PgPool, agents: &BTreeMap<Uuid, (Uuid, u32)>) {
    let epochs = journal_epochs(pool).await;
    assert!(!epochs.is_empty());
    for pair in epochs.windows(2) {
        let ((lease_a, epoch_a, _, _, end_a), (lease_b, epoch_b, _, start_b, _)) =
            (&pair[0], &pair[1]);
        if lease_a == lease_b {
            assert!(epoch_a < epoch_b);
            assert!(
                end_a <= start_b,
                "{lease_a}: epoch {epoch_a} wrote until {end_a}, epoch {epoch_b} from {start_b}"
            );
        }
    }
    let holders: Vec<(String, i64, i64)> = sqlx::query_as(
        "select lease, epoch, count(distinct holder) from journal group by lease, epoch",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(holders.iter().all(|(_, _, n)| *n == 1), "{holders:?}");
    let writes: Vec<(Uuid, String)> =
        sqlx::query_as("select agent_id, lease from journal where agent_id is not null")
            .fetch_all(pool)
            .await
            .unwrap();
    for (agent, written_under) in writes {
        let (_, shard) = agents[&agent];
        assert_eq!(written_under, lease(shard), "agent {agent}");
    }
}

async fn edit(pool: &PgPool, agent: Uuid, text: &str) {
    sqlx::query("update agents set spec = jsonb_set(spec, '{firstMessage}', $2) where id = $1")
        .bind(agent)
        .bind(json!(text))
        .execute(pool)
        .await
        .unwrap();
}

#[sqlx::test]
async fn replicas_divide_the_shards_and_a_survivor_takes_over_a_dead_ones(pool: PgPool) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("vapi_reconciler=info")
        .with_test_writer()
        .try_init();
    let env = common::env(pool.clone()).await;
    let agents = fleet(&pool).await;
    let ids: Vec<Uuid> = agents.keys().copied().collect();

    let mut a = Replica::start(&env, "replica-a", SHARDS).await;
    let mut b = Replica::start(&env, "replica-b", SHARDS).await;
    a.until("two shards", writing(2)).await;
    b.until("two shards", writing(2)).await;
    until_synced(&pool, &mut [&mut a, &mut b], &ids).await;
    assert_exclusive(&pool, &[&a, &b]).await;
    assert_eq!(env.assistants().len(), ids.len(), "one assistant per agent");

    // b dies without releasing anything: a takes its shards, after their takeover delay.
    let b_shards = b.shards();
    b.crash().await;
    a.until("all four shards", writing(4)).await;
    let orphaned: Vec<Uuid> = agents
        .iter()
        .filter(|(_, (_, shard))| b_shards.contains(shard))
        .map(|(agent, _)| *agent)
        .collect();
    assert!(!orphaned.is_empty());
    for agent in &orphaned {
        edit(&pool, *agent, "Edited after a replica died.").await;
    }
    until_synced(&pool, &mut [&mut a], &orphaned).await;
    for agent in &orphaned {
        let id = common::status(&pool, *agent).await.assistant_id.unwrap();
        assert_eq!(
            env.assistant(&id)["firstMessage"],
            "Edited after a replica died."
        );
    }
    let patched_by: Vec<String> = sqlx::query_scalar(
        "select distinct holder from journal where action = 'patch' and agent_id = any($1)",
    )
    .bind(&orphaned)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(patched_by, ["replica-a"]);

    // A third replica joins: a hands two shards over, gracefully, between passes.
    let mut c = Replica::start(&env, "replica-c", SHARDS).await;
    c.until("two shards", writing(2)).await;
    a.until("back to two shards", writing(2)).await;
    assert_exclusive(&pool, &[&a, &c]).await;
    for agent in &ids {
        edit(&pool, *agent, "Edited with three replicas.").await;
    }
    until_synced(&pool, &mut [&mut a, &mut c], &ids).await;
    assert_eq!(
        env.assistants().len(),
        ids.len(),
        "still one assistant per agent"
    );
    assert_one_writer_per_shard(&pool, &agents).await;

    a.stop().await;
    c.stop().await;
    let unreleased: i64 =
        sqlx::query_scalar("select count(*) from leader_lease where name like 'vapi-reconciler/shard-%' and released_at is null")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(unreleased, 0, "a graceful stop releases every shard");
}

#[sqlx::test]
async fn replicas_with_different_shard_counts_hold_nothing_until_they_agree(pool: PgPool) {
    let env = common::env(pool.clone()).await;
    let mut four = Replica::start(&env, "four", SHARDS).await;
    four.until("all four shards", writing(4)).await;
    // Another count would map an organization to another lease: two writers. Both stand back.
    let mut two = Replica::start(&env, "two", 2).await;
    four.until("gives its shards up", |s| {
        s.shards.is_empty() && s.shard_note.is_some()
    })
    .await;
    two.until("stands by with a reason", |s| s.shard_note.is_some())
        .await;
    assert!(two.shards().is_empty());
    let held: i64 = sqlx::query_scalar(
        "select count(*) from pg_locks where locktype = 'advisory' and granted and objsubid = 2
           and classid = $1::int4::oid
           and database = (select oid from pg_database where datname = current_database())",
    )
    .bind(LOCK_CLASS)
    .fetch_one(&pool)
    .await
    .unwrap();
    // Only the test environment's own single lease ("vapi-reconciler") is held.
    assert_eq!(held, 1);
    two.stop().await;
    four.until("takes the shards back", writing(4)).await;
    four.stop().await;
}

#[sqlx::test]
async fn a_trigger_goes_to_the_shards_owner_and_everything_wakes_every_replica(pool: PgPool) {
    const TOKEN: &str = "test-admin-token-0123456789";
    let env = common::env(pool.clone()).await;
    let agents = fleet(&pool).await;
    let mut a = Replica::start(&env, "replica-a", SHARDS).await;
    let mut b = Replica::start(&env, "replica-b", SHARDS).await;
    a.until("two shards", writing(2)).await;
    b.until("two shards", writing(2)).await;
    // The API served by replica a, as `run` serves it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = vapi_reconciler::http::HttpState {
        pool: pool.clone(),
        loop_status: a.controller.subscribe(),
        platform_key: a.controller.platform_key().clone(),
        metrics: vapi_reconciler::metrics::Metrics::new("vapi-reconciler").unwrap(),
        api: Some(vapi_reconciler::api::Api {
            controller: a.controller.clone(),
            store: vapi_reconciler::store::Store::new(pool.clone()),
            token: vapi_reconciler::api::AdminToken::new(TOKEN),
            wait_timeout: PATIENCE,
        }),
    };
    let cancel = CancellationToken::new();
    tokio::spawn(vapi_reconciler::http::serve(
        listener,
        state,
        cancel.clone(),
    ));
    let reconcile = |body: serde_json::Value, wait: bool| {
        let url = format!("{base}/v1/reconcile?wait={wait}");
        async move {
            let resp = reqwest::Client::new()
                .post(url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };
    let a_shards = a.shards();
    let (mine, theirs) = {
        let of = |own: bool| {
            agents
                .iter()
                .find(|(_, (_, shard))| a_shards.contains(shard) == own)
                .map(|(agent, (org, _))| (*agent, *org))
                .unwrap()
        };
        (of(true), of(false))
    };
    let (status, body) = reconcile(json!({"orgId": theirs.1}), false).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("not_owner")),
        "{body}"
    );
    let (status, body) = reconcile(json!({"agentId": theirs.0}), false).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("not_owner")),
        "{body}"
    );
    let (status, body) = reconcile(json!({"agentId": mine.0}), true).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agents"][0]["agent_id"], json!(mine.0), "{body}");
    // Everything: b runs a pass too, woken through the database.
    let b_passes = b.status.borrow().passes_started;
    let (status, body) = reconcile(json!({}), false).await;
    assert_eq!(status, 202, "{body}");
    b.until("a pass after the trigger", |s| s.passes_started > b_passes)
        .await;
    cancel.cancel();
    a.stop().await;
    b.stop().await;
}
