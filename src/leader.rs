//! Leader election: one replica writes, the others stand by, decided by a Postgres advisory lock
//! and recorded under a fencing epoch.
//!
//! The lock is a session advisory lock (`pg_try_advisory_lock(LOCK_CLASS, hashtext(name))`) taken
//! on a dedicated connection, never a pool connection: a pooled session could be handed to other
//! code or recycled, and the lock would go with it. Each acquisition bumps `leader_lease.epoch` in
//! the same statement that records the holder, so every leader has its own fencing token
//! ([`Fence`]) to carry into its writes, and a write from an older epoch can be refused.
//!
//! Holding the lock is proven, not assumed: a heartbeat runs one statement every renew interval
//! that checks `pg_locks` for our granted lock on this very session and that the row is still at
//! our epoch, without waiting on the row locks that fenced writes hold. Writes are allowed only
//! while the last proof (timed from *before* the query was sent) is younger than `lease`;
//! `may_write` checks that age itself, so a hung heartbeat cannot keep leadership alive. A new
//! leader waits `lease` before its first write unless the previous holder released gracefully,
//! which outlasts the old leader's last proof. The session sets server-side TCP keepalives and
//! `tcp_user_timeout`, so Postgres drops a vanished client's session (and its lock) within
//! seconds instead of the kernel's hours.
//!
//! **A hung holder.** Keepalives only help when the far end is gone. A frozen process (`SIGSTOP`,
//! a paused VM) or a path that hangs without closing (a stuck pooler, a half-open NAT, a frozen
//! relay) leaves a live socket at Postgres, and the session and its lock stay forever while the
//! holder writes nothing. Two designs were weighed:
//!
//! - *A lease row with an expiry as the source of truth* (Kubernetes' Lease), the advisory lock
//!   at most an optimisation. Exclusivity would then rest on expiry arithmetic, and every fenced
//!   write would have to check the expiry as well as the epoch; the lock's "exactly one session"
//!   guarantee, which Postgres enforces for us, would be demoted to a hint.
//! - *Keep the lock as the source of truth and make a hung holder's session end* (chosen). The
//!   holder stamps `leader_heartbeat.proven_at = now()` with every proof (a table of its own:
//!   fenced writes share-lock `leader_lease` back to back, and a heartbeat that waited for them
//!   would age for being busy). A standby that cannot get the lock reads the holder's pid from
//!   `pg_locks` and its heartbeat; older than one lease, by Postgres's clock on both sides, it
//!   calls `pg_terminate_backend` on that pid and tries the lock again at once. The
//!   [`crate::sharding`] member sessions get the same treatment, so a hung replica also stops
//!   counting as a member.
//!
//! Why one lease is the threshold, and why it is safe. A holder gives up by itself once its last
//! proof is one lease old, timed from before the query was sent, which is no later than the
//! `now()` the query stamped; so a heartbeat one lease old by Postgres's clock belongs to a holder
//! that no longer writes by its own rules (clock *rates* are assumed equal, as every lease
//! system assumes; no two clocks' readings are compared). And exclusivity never depends on that
//! threshold: proofs go through the holder's session, so once Postgres has ended it the old
//! holder cannot prove again, and the taker still waits one lease before writing (the holder did
//! not release), which outlasts the old holder's last proof. A wrong threshold or a Postgres
//! clock step can cost an unneeded failover, never two writers. A thawed old leader finds its
//! proof expired (its monotonic clock ran on while it was stopped), so `may_write` is false at
//! its first check and the heartbeat fires `lost` at once; a write it had already decided on
//! fails at Postgres on the epoch.
//!
//! While the epoch bump waits on the lease row, whatever holds that row is a transaction of the
//! old epoch (the lock is already ours): after one query timeout those transactions are
//! terminated too ([`pg_blocking_pids`]), since a frozen writer's never end.
//!
//! The bound, from the instant a leader hangs: its last heartbeat is at most that old; a standby
//! sees it one lease old within one poll interval after that, terminates it and bumps the epoch,
//! then waits one lease: **2 × lease + poll, plus one election round** (6.5 s with the defaults
//! 3 s and 500 ms; a round, its queries and the termination, takes tens of milliseconds, and one
//! query timeout more when a transaction of the hung leader holds the lease row). `examples/bench.rs
//! -- --scenario failover --hang freeze|path` measures it (docs/benchmarks.md: 5.5 to 6.9 s).
//!
//! Privilege: `pg_terminate_backend` works on backends of the caller's own role (or a role it is
//! a member of) and for members of `pg_signal_backend`, never on a superuser's backend unless the
//! caller is superuser. Replicas that share one database role need nothing more. The two-argument
//! form (waiting for the backend to exit) needs PostgreSQL 14 or later. A holder without a
//! heartbeat row (an older binary) is never terminated.
//!
//! Limits: this fences what is gated on `may_write` and on the epoch. A request to Vapi that a
//! partitioned old leader already sent can still land up to that request's timeout after the old
//! leader lost its proof, and a process frozen between its `may_write` check and sending a request
//! sends it when thawed; a lease longer than the request timeout closes most of that window, and
//! the reconcile being idempotent makes the rest converge.
//!
//! [`pg_blocking_pids`]: https://www.postgresql.org/docs/current/functions-info.html

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool, Row};
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::{CancellationToken, DropGuard};

/// First key of every advisory lock taken here ("VAPI" in ASCII), so the lease locks do not
/// collide with other users of the two-int form in the same database.
pub const LOCK_CLASS: i32 = 0x5641_5049;

/// `application_name` of the leader's dedicated session, as seen in `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "vapi-reconciler leader";

/// Server-side settings that make Postgres notice a dead client quickly (ignored on Unix sockets).
const KEEPALIVES: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "5"),
    ("tcp_keepalives_interval", "2"),
    ("tcp_keepalives_count", "3"),
    ("tcp_user_timeout", "10000"),
];

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Lease name, e.g. "vapi-reconciler"; the advisory lock key is derived from it.
    pub name: String,
    /// This replica's identity, e.g. "hostname/pid".
    pub holder: String,
    /// Standby: how often to try the lock.
    pub poll_interval: Duration,
    /// Leader: how often to prove the lock.
    pub renew_interval: Duration,
    /// How long one proof stays valid.
    pub lease: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election: database: {0}")]
    Database(#[from] sqlx::Error),
    /// Postgres did not answer in time: the path to it may hang without closing.
    #[error("leader election: {0} timed out")]
    TimedOut(&'static str),
}

impl LeaderError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => "unavailable",
                sqlx::Error::Database(db) => {
                    // Connection exceptions, shutdowns and "too many clients" are the server
                    // being unavailable, not a bad query.
                    let code = db.code().unwrap_or_default();
                    if code.starts_with("08") || code.starts_with("57P") || code == "53300" {
                        "unavailable"
                    } else {
                        "query"
                    }
                }
                _ => "other",
            },
            Self::TimedOut(_) => "timeout",
        }
    }
}

/// Fencing token carried into every controller write to Postgres.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub name: String,
    pub epoch: i64,
}

/// One row of `leader_lease`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct LeaseInfo {
    pub name: String,
    pub epoch: i64,
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    pub renewed_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
}

pub struct Elector {
    options: PgConnectOptions,
    config: LeaderConfig,
}

impl Elector {
    pub fn new(options: PgConnectOptions, config: LeaderConfig) -> Self {
        Self { options, config }
    }

    /// One try at the lock: `Ok(None)` when another session holds it. Standing by is trying
    /// again every poll interval (the shard elector does).
    /// Bounded by three leases (connecting, the lock, a takeover's termination and the bump's
    /// `lock_timeout` each take less), so a path to Postgres that hangs fails the try instead.
    pub async fn try_acquire(&self) -> Result<Option<Leadership>, LeaderError> {
        match timeout(self.config.lease * 3, self.attempt()).await {
            Ok(attempt) => Ok(attempt?),
            Err(_) => Err(LeaderError::TimedOut("a try at the leader lock")),
        }
    }

    /// Who holds the lease per the table (for status output), `None` if never held.
    pub async fn current(pool: &PgPool, name: &str) -> Result<Option<LeaseInfo>, LeaderError> {
        let info = sqlx::query_as::<_, LeaseInfo>(
            "select name, epoch, holder, acquired_at, renewed_at, released_at
             from leader_lease where name = $1",
        )
        .bind(name)
        .fetch_optional(pool)
        .await?;
        Ok(info)
    }

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        dedicated_session(&self.options).await
    }

    /// Tries the lock on a new connection; once held, bumps the epoch and starts the heartbeat.
    /// When another session holds the lock but its heartbeat is older than one lease, that
    /// holder is hung (a healthy one would have given up by now): its backend is terminated and
    /// the lock tried once more. An error drops the connection, and with it any lock it took.
    async fn attempt(&self) -> Result<Option<Leadership>, sqlx::Error> {
        let config = &self.config;
        let mut conn = self.connect().await?;
        // The first proof, dated before the lock query: the lock was held no earlier than this.
        let mut proven_at = Instant::now();
        let mut locked = lock(&mut conn, config).await?;
        if locked.is_none() && terminate_hung_holder(&mut conn, config).await? {
            proven_at = Instant::now();
            locked = lock(&mut conn, config).await?;
        }
        let Some((key, pid)) = locked else {
            if let Err(e) = conn.close().await {
                tracing::debug!(error = %e, "closing the leader connection failed");
            }
            return Ok(None);
        };

        let (epoch, had_previous, released) =
            bump_clearing_the_way(&mut conn, config, pid, &self.options).await?;
        // The epoch is committed durably above. What follows on this session is the heartbeat,
        // whose writes (`proven_at`, `renewed_at`) need not survive a crash of Postgres, which
        // ends the session anyway: without the WAL flush a proof does not queue behind a busy
        // disk, and a busy leader is not deposed for being busy.
        sqlx::query("set synchronous_commit = off")
            .execute(&mut conn)
            .await?;

        // A holder that crashed (or was cut off) may still believe it leads until its last proof
        // is `lease` old; that proof is older than our lock, so waiting `lease` from now outlasts it.
        let wait = had_previous && !released;
        let write_from = if wait {
            Instant::now() + config.lease
        } else {
            Instant::now()
        };
        tracing::info!(
            lease = config.name.as_str(),
            epoch,
            holder = config.holder.as_str(),
            waiting = ?if wait { config.lease } else { Duration::ZERO },
            "acquired leadership"
        );

        let fence = Fence {
            name: config.name.clone(),
            epoch,
        };
        let proof = Arc::new(Proof::new(proven_at));
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            conn,
            Heartbeat {
                fence: fence.clone(),
                key,
                renew_interval: config.renew_interval,
                query_timeout: query_timeout(config),
                lease: config.lease,
                proof: proof.clone(),
                lost: lost.clone(),
                stop: stop.clone(),
            },
        ));
        Ok(Some(Leadership {
            fence,
            key,
            lease: config.lease,
            query_timeout: query_timeout(config),
            proof,
            write_from,
            lost,
            stop: stop.drop_guard(),
            heartbeat,
        }))
    }
}

/// A connection of its own (never a pool's: a pooled session could be handed to other code, and
/// a session lock would go with it), with the keepalives that let Postgres drop it soon after
/// this process vanishes.
pub(crate) async fn dedicated_session(
    options: &PgConnectOptions,
) -> Result<PgConnection, sqlx::Error> {
    let options = options.clone().application_name(APPLICATION_NAME);
    let mut conn = PgConnection::connect_with(&options).await?;
    for (setting, value) in KEEPALIVES {
        if let Err(e) = sqlx::query("select set_config($1, $2, false)")
            .bind(setting)
            .bind(value)
            .execute(&mut conn)
            .await
        {
            tracing::debug!(setting, error = %e, "cannot set a keepalive on the leader session");
        }
    }
    Ok(conn)
}

/// Takes the lock and, in the same statement, records this session as its holder in
/// `leader_heartbeat` (so a holder is never without a heartbeat row naming its backend). Returns
/// the lock key and this session's backend pid, or `None` when another session holds the lock.
/// Sets `lock_timeout` for the epoch bump that follows.
async fn lock(
    conn: &mut PgConnection,
    config: &LeaderConfig,
) -> Result<Option<(i32, i32)>, sqlx::Error> {
    // The bump waits for fenced writes that still hold the row under the old epoch. A writer that
    // vanished mid-transaction holds it until Postgres drops its session; `lock_timeout` gives up
    // after one lease at the latest (dropping this session and the lock), so one stuck lease never
    // holds up an elector that takes others; the next poll tries again.
    let row = sqlx::query(
        "with lock as (
             select pg_try_advisory_lock($1, hashtext($2)) as locked
         ), beat as (
             insert into leader_heartbeat (name, pid, epoch, holder, proven_at)
             select $2, pg_backend_pid(), null, $4, now() from lock where locked
             on conflict (name) do update
             set pid = excluded.pid, epoch = null, holder = excluded.holder,
                 proven_at = excluded.proven_at
             returning 1
         )
         select (select locked from lock) as locked, hashtext($2) as key,
                pg_backend_pid() as pid, (select count(*) from beat) as beats,
                set_config('lock_timeout', $3, false)",
    )
    .bind(LOCK_CLASS)
    .bind(&config.name)
    .bind(format!("{}ms", config.lease.as_millis().max(1)))
    .bind(&config.holder)
    .fetch_one(conn)
    .await?;
    if !row.try_get::<bool, _>("locked")? {
        return Ok(None);
    }
    Ok(Some((row.try_get("key")?, row.try_get("pid")?)))
}

/// Terminates the backend holding `config.name`'s lock when its heartbeat is older than one
/// lease, as measured by Postgres (`now()` against the holder's own `now()`; no two hosts'
/// clocks are compared). Returns whether a backend was terminated (and has exited, or the wait
/// for it timed out: the lock is tried again either way).
///
/// A holder proves every renew interval and gives up by itself once its last proof is one lease
/// old, timed from before its proving query was sent, which is no later than the `now()` that
/// query recorded. So a heartbeat older than one lease means the holder no longer writes by its
/// own rules: it is frozen, or its path to Postgres hangs, and only its session still holds the
/// lock. Terminating it is not what keeps writes single either way: a holder's proofs go through
/// its session, so once that session is gone it cannot prove again, and the taker waits one lease
/// before its first write (the holder did not release).
///
/// Needs the right to signal the holder's backend: the same database role (or a member of it),
/// or `pg_signal_backend`. Without it the statement fails and the standby logs why, every poll.
async fn terminate_hung_holder(
    conn: &mut PgConnection,
    config: &LeaderConfig,
) -> Result<bool, sqlx::Error> {
    let rows = sqlx::query(
        "select l.pid, h.holder, h.epoch,
                extract(epoch from now() - h.proven_at)::float8 as age,
                pg_terminate_backend(l.pid, $4) as terminated
         from pg_locks l
         join leader_heartbeat h on h.name = $2 and h.pid = l.pid
         where l.locktype = 'advisory' and l.granted and l.objsubid = 2
           and l.classid = $1::int4::oid and l.objid = hashtext($2)::int4::oid
           and l.database = (select oid from pg_database where datname = current_database())
           and h.proven_at < now() - make_interval(secs => $3)",
    )
    .bind(LOCK_CLASS)
    .bind(&config.name)
    .bind(config.lease.as_secs_f64())
    .bind(i64::try_from(query_timeout(config).as_millis()).unwrap_or(i64::MAX))
    .fetch_all(conn)
    .await?;
    for row in &rows {
        tracing::warn!(
            lease = config.name.as_str(),
            pid = row.try_get::<i32, _>("pid")?,
            holder = row.try_get::<String, _>("holder")?.as_str(),
            epoch = row.try_get::<Option<i64>, _>("epoch")?,
            heartbeat_age_seconds = row.try_get::<f64, _>("age")?,
            terminated = row.try_get::<bool, _>("terminated")?,
            "the lease holder's heartbeat is older than the lease: terminated its session"
        );
    }
    Ok(!rows.is_empty())
}

/// Bumps the epoch (see [`bump`]). While the bump waits on the lease row, whatever holds it is a
/// transaction of an older epoch: the lock is ours, so its writer lost its session. A live writer
/// finishes within moments once its leadership is lost; after `query_timeout` the transactions
/// still in the way are terminated (a frozen writer's never end by themselves: its kernel keeps
/// the session up). Rolling them back is safe: they are writes of a leader that no longer leads.
async fn bump_clearing_the_way(
    conn: &mut PgConnection,
    config: &LeaderConfig,
    pid: i32,
    options: &PgConnectOptions,
) -> Result<(i64, bool, bool), sqlx::Error> {
    let grace = query_timeout(config);
    let bumping = bump(conn, config);
    tokio::pin!(bumping);
    let mut reaper: Option<PgConnection> = None;
    loop {
        tokio::select! {
            biased;
            bumped = &mut bumping => return bumped,
            () = sleep(grace) => {}
        }
        if reaper.is_none() {
            match timeout(grace, dedicated_session(options)).await {
                Ok(Ok(c)) => reaper = Some(c),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot open a session to clear the lease row")
                }
                Err(_) => tracing::warn!("opening a session to clear the lease row timed out"),
            }
        }
        if let Some(session) = reaper.as_mut() {
            match timeout(grace, terminate_blockers(session, pid, grace)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(lease = config.name.as_str(), error = %e, "cannot terminate the transactions holding the lease row");
                    reaper = None;
                }
                Err(_) => reaper = None,
            }
        }
    }
}

async fn terminate_blockers(
    session: &mut PgConnection,
    pid: i32,
    wait: Duration,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "select b.pid, a.application_name, a.xact_start,
                pg_terminate_backend(b.pid, $2) as terminated
         from unnest(pg_blocking_pids($1)) as b(pid)
         left join pg_stat_activity a on a.pid = b.pid",
    )
    .bind(pid)
    .bind(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
    .fetch_all(session)
    .await?;
    for row in rows {
        tracing::warn!(
            pid = row.try_get::<i32, _>("pid")?,
            application_name = row.try_get::<Option<String>, _>("application_name")?,
            transaction_started_at = ?row.try_get::<Option<DateTime<Utc>>, _>("xact_start")?,
            terminated = row.try_get::<bool, _>("terminated")?,
            "terminated a transaction of an older epoch that held the lease row"
        );
    }
    Ok(())
}

/// Records this holder under a new epoch. The previous row is read by the same statement (one
/// snapshot) that bumps it: whether there was a holder, and whether it released.
async fn bump(
    conn: &mut PgConnection,
    config: &LeaderConfig,
) -> Result<(i64, bool, bool), sqlx::Error> {
    let row = sqlx::query(
        "with previous as (
             select released_at from leader_lease where name = $1
         ), bumped as (
             insert into leader_lease (name, epoch, holder, acquired_at, renewed_at, released_at)
             values ($1, 1, $2, now(), now(), null)
             on conflict (name) do update
             set epoch = leader_lease.epoch + 1,
                 holder = excluded.holder,
                 acquired_at = excluded.acquired_at,
                 renewed_at = excluded.renewed_at,
                 released_at = null
             returning epoch
         )
         select bumped.epoch,
                exists (select 1 from previous) as had_previous,
                exists (select 1 from previous where released_at is not null) as released
         from bumped",
    )
    .bind(&config.name)
    .bind(&config.holder)
    .fetch_one(conn)
    .await?;
    Ok((
        row.try_get("epoch")?,
        row.try_get("had_previous")?,
        row.try_get("released")?,
    ))
}

fn query_timeout(config: &LeaderConfig) -> Duration {
    config.renew_interval.min(config.lease / 2)
}

/// The instant of the last successful proof, shared by the heartbeat and `may_write`.
struct Proof {
    base: Instant,
    /// Nanoseconds from `base` to the last proof.
    nanos: AtomicU64,
    /// Set by a graceful release: a lease that ended so is not "unproven".
    released: AtomicBool,
}

impl Proof {
    fn new(base: Instant) -> Self {
        Self {
            base,
            nanos: AtomicU64::new(0),
            released: AtomicBool::new(false),
        }
    }

    fn record(&self, at: Instant) {
        let nanos =
            u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_max(nanos, Ordering::AcqRel);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

struct Heartbeat {
    fence: Fence,
    key: i32,
    renew_interval: Duration,
    query_timeout: Duration,
    lease: Duration,
    proof: Arc<Proof>,
    lost: CancellationToken,
    stop: CancellationToken,
}

/// Proves the lock every renew interval until it cannot (returns `None`, having cancelled `lost`)
/// or until stopped (returns the connection, still holding the lock, for a graceful release).
async fn heartbeat(mut conn: PgConnection, hb: Heartbeat) -> Option<PgConnection> {
    let query_timeout = hb.query_timeout;
    let reason = loop {
        let expires = hb.proof.last() + hb.lease;
        tokio::select! {
            biased;
            () = hb.stop.cancelled() => {
                hb.lost.cancel();
                return Some(conn);
            }
            () = sleep_until(expires) => break "the last proof expired".to_owned(),
            () = sleep(hb.renew_interval) => {}
        }
        // Sent no earlier than this, so a success proves the lock held at a later instant.
        let sent = Instant::now();
        // Not raced against `stop`: an abandoned query would leave the connection unusable for
        // the release, and the timeout bounds the wait anyway.
        let proved = tokio::select! {
            biased;
            proved = timeout(query_timeout, prove(&mut conn, &hb.fence, hb.key)) => proved,
            () = sleep_until(expires) => break "the last proof expired while proving".to_owned(),
        };
        match proved {
            Ok(Ok((true, true))) => hb.proof.record(sent),
            Ok(Ok((false, _))) => break "the advisory lock is not held by this session".to_owned(),
            Ok(Ok((true, false))) => break "the epoch is no longer ours".to_owned(),
            Ok(Err(e)) => break format!("the heartbeat query failed: {e}"),
            Err(_) => break format!("the heartbeat query timed out after {query_timeout:?}"),
        }
    };
    hb.lost.cancel();
    tracing::warn!(
        lease = hb.fence.name.as_str(),
        epoch = hb.fence.epoch,
        reason = reason.as_str(),
        "lost leadership"
    );
    // Dropping the connection closes the session, which frees the lock if it still held it.
    drop(conn);
    None
}

/// One statement: is our lock granted to this session, and is the row still at our epoch? It
/// also stamps this session's heartbeat (`leader_heartbeat.proven_at = now()`), which standbys
/// read to tell a hung holder from a live one; nothing else locks that row.
///
/// It never waits on a row lock. Every fenced write holds the lease row `for share` until it
/// commits, and under load those transactions overlap without a gap; an `update` of the row
/// would queue behind them (share lockers keep overtaking it) until the query timed out and
/// leadership was lost for being busy. So the epoch is read without a lock, and `renewed_at`,
/// which only informs operators, is refreshed when the row is free (`skip locked`).
async fn prove(
    conn: &mut PgConnection,
    fence: &Fence,
    key: i32,
) -> Result<(bool, bool), sqlx::Error> {
    let row = sqlx::query(
        "with held as (
             select exists (
                 select 1 from pg_locks
                 where locktype = 'advisory'
                   and pid = pg_backend_pid()
                   and database = (select oid from pg_database where datname = current_database())
                   and classid = $3::int4::oid
                   and objid = $4::int4::oid
                   and objsubid = 2
                   and granted
             ) as held
         ), free as (
             select name from leader_lease
             where name = $1 and epoch = $2 and (select held from held)
             for no key update skip locked
         ), renewed as (
             update leader_lease set renewed_at = now()
             where name in (select name from free)
         ), beat as (
             update leader_heartbeat set proven_at = now(), epoch = $2
             where name = $1 and pid = pg_backend_pid() and (select held from held)
               and exists (select 1 from leader_lease where name = $1 and epoch = $2)
         )
         select (select held from held) as held,
                exists (select 1 from leader_lease where name = $1 and epoch = $2) as ours",
    )
    .bind(&fence.name)
    .bind(fence.epoch)
    .bind(LOCK_CLASS)
    .bind(key)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get("held")?, row.try_get("ours")?))
}

/// This replica leads. Owns the heartbeat task, which owns the dedicated connection; dropping
/// this without [`Leadership::release`] stops the heartbeat and closes the connection, which
/// frees the lock (the next leader then waits `lease`, as after a crash).
pub struct Leadership {
    fence: Fence,
    key: i32,
    lease: Duration,
    query_timeout: Duration,
    proof: Arc<Proof>,
    write_from: Instant,
    lost: CancellationToken,
    stop: DropGuard,
    heartbeat: JoinHandle<Option<PgConnection>>,
}

/// A cheap, shareable view of one [`Leadership`]: its fence and whether it may write now. It
/// stops allowing writes once the leadership is lost or released.
#[derive(Clone)]
pub struct LeaseGuard {
    fence: Fence,
    lease: Duration,
    proof: Arc<Proof>,
    write_from: Instant,
    lost: CancellationToken,
}

impl std::fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("fence", &self.fence)
            .field("may_write", &self.may_write())
            .finish_non_exhaustive()
    }
}

impl LeaseGuard {
    pub fn fence(&self) -> &Fence {
        &self.fence
    }

    /// See [`Leadership::may_write`].
    pub fn may_write(&self) -> bool {
        let now = Instant::now();
        !self.lost.is_cancelled()
            && now >= self.write_from
            && now.saturating_duration_since(self.proof.last()) < self.lease
    }

    /// When writes may start (one lease after a takeover from a crashed holder).
    pub fn write_from(&self) -> Instant {
        self.write_from
    }

    /// When the lock was last proven held (the instant the proving query was sent).
    pub fn proven_at(&self) -> Instant {
        self.proof.last()
    }

    /// The last proof of a lease that was lost without a graceful release: this replica led
    /// and can no longer show that it does (nor that it does not). `None` while it proves, and
    /// after a release.
    pub fn unproven_since(&self) -> Option<Instant> {
        (self.lost.is_cancelled() && !self.proof.released.load(Ordering::Acquire))
            .then(|| self.proof.last())
    }

    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }
}

impl Leadership {
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    pub fn guard(&self) -> LeaseGuard {
        LeaseGuard {
            fence: self.fence.clone(),
            lease: self.lease,
            proof: self.proof.clone(),
            write_from: self.write_from,
            lost: self.lost.clone(),
        }
    }

    pub fn epoch(&self) -> i64 {
        self.fence.epoch
    }

    /// Fires once leadership can no longer be proven (heartbeat query failed, lock not found,
    /// proof older than lease) or after release.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// When the lock was last proven held: the instant the proving query was sent.
    pub fn proven_at(&self) -> Instant {
        self.proof.last()
    }

    /// True while not lost and the last successful proof is younger than `lease`, and the
    /// takeover wait has passed.
    pub fn may_write(&self) -> bool {
        self.guard().may_write()
    }

    /// Resolves when writes may start (immediately if the previous holder released gracefully
    /// or there was no previous holder, else `lease` after acquisition), or when lost or
    /// `cancel` fires. Returns true if writes may start.
    pub async fn ready(&self, cancel: &CancellationToken) -> bool {
        tokio::select! {
            biased;
            () = self.lost.cancelled() => return false,
            () = cancel.cancelled() => return false,
            () = sleep_until(self.write_from) => {}
        }
        self.may_write()
    }

    /// Graceful hand-over: stops the heartbeat, sets `released_at` (only where the epoch is
    /// still ours), unlocks and closes the connection. Call it after in-flight writes finished:
    /// the next leader starts writing at once.
    pub async fn release(self) {
        let Leadership {
            fence,
            key,
            query_timeout,
            proof,
            lost,
            stop,
            heartbeat,
            ..
        } = self;
        proof.released.store(true, Ordering::Release);
        lost.cancel();
        stop.disarm().cancel();
        let name = fence.name.as_str();
        let mut conn = match heartbeat.await {
            Ok(Some(conn)) => conn,
            Ok(None) => {
                tracing::info!(
                    lease = name,
                    epoch = fence.epoch,
                    "leadership was already lost; nothing to release"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(lease = name, epoch = fence.epoch, error = %e, "the heartbeat task failed; the lock goes with its connection");
                return;
            }
        };
        let marked = timeout(
            query_timeout,
            sqlx::query(
                "update leader_lease set released_at = now() where name = $1 and epoch = $2",
            )
            .bind(name)
            .bind(fence.epoch)
            .execute(&mut conn),
        )
        .await;
        match marked {
            Ok(Ok(done)) if done.rows_affected() == 1 => {}
            Ok(Ok(_)) => tracing::warn!(
                lease = name,
                epoch = fence.epoch,
                "the epoch was superseded before release"
            ),
            Ok(Err(e)) => {
                tracing::warn!(lease = name, epoch = fence.epoch, error = %e, "cannot mark the lease released; dropping the connection");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    lease = name,
                    epoch = fence.epoch,
                    "marking the lease released timed out; dropping the connection"
                );
                return;
            }
        }
        let unlocked = timeout(
            query_timeout,
            sqlx::query_scalar::<_, bool>("select pg_advisory_unlock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(key)
                .fetch_one(&mut conn),
        )
        .await;
        match unlocked {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => tracing::warn!(
                lease = name,
                epoch = fence.epoch,
                "the advisory lock was not held at release"
            ),
            Ok(Err(e)) => {
                tracing::warn!(lease = name, epoch = fence.epoch, error = %e, "unlock failed; dropping the connection")
            }
            Err(_) => tracing::warn!(
                lease = name,
                epoch = fence.epoch,
                "unlock timed out; dropping the connection"
            ),
        }
        match timeout(query_timeout, conn.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the leader connection failed"),
            Err(_) => tracing::debug!("closing the leader connection timed out"),
        }
        tracing::info!(lease = name, epoch = fence.epoch, "released leadership");
    }
}
