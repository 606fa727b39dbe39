//! Sharding across replicas: organizations are hashed onto `--shards` shards (the hash is
//! `reconcile::shard`), and every shard is a lease of its own ([`Elector`], with its own fencing
//! epoch), so each organization has exactly one writer while the work is spread over replicas.
//! One shard is the single-leader case: its lease is the configured lease name.
//!
//! Who takes how many: every replica holds a *shared* advisory lock `(MEMBER_CLASS, shards)` on a
//! dedicated session for as long as it runs. `pg_locks` then tells every replica, in one query,
//! how many replicas are alive and which shard counts they run with; a replica that vanishes
//! leaves the count as soon as Postgres drops its session (at once for a killed process, within
//! the keepalive timeouts for a lost host). A replica that hangs keeps its session, so each
//! member also stamps `leader_members.seen_at = now()` every round (and while it waits between
//! passes); a member whose stamp is older than one lease by Postgres's clock is not counted and
//! its session is terminated, as [`crate::leader`] does with a hung lease holder, whose shards
//! count as free for the takeover. Each replica aims at `ceil(shards / replicas)`:
//! below that it takes free shards (preferring those that rank highest for it by rendezvous
//! hashing, so replicas reach for different ones), above it it hands the lowest-ranked back
//! gracefully, after its current pass, so the taker starts at once.
//!
//! Replicas that disagree on the shard count would map one organization to two different
//! leases, so while the members' locks show more than one count, every replica holds no shard
//! (a rolling update that changes `--shards` pauses until the old replicas are gone). A one-shot
//! command takes every shard or none.
//!
//! Every query of a round is bounded (one lease each), so a path to Postgres that hangs fails
//! the round instead of stopping the elector; a replica that lost a lease unreleased publishes
//! itself as unproven ([`Owned::unproven`]) until a round reaches Postgres again.
//!
//! Limits: shard leases are taken through `pg_try_advisory_lock`, so exclusivity and fencing are
//! exactly [`crate::leader`]'s, per shard; each held shard keeps one Postgres connection open. A
//! replica lists a shared key's assistants in full (they are not sharded in Vapi), so with R
//! replicas a platform-key pass costs R listings. Per-key rate limits are per replica.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::leader::{
    Elector, Fence, LOCK_CLASS, LeaderConfig, LeaderError, Leadership, LeaseGuard,
    dedicated_session,
};
use crate::reconcile::Shards;

/// First key of the members' shared locks ("VAPM"); the second key is the shard count.
pub const MEMBER_CLASS: i32 = 0x5641_504D;

/// The shard leases a replica holds now, as the controller sees them.
#[derive(Debug, Clone, Default)]
pub struct Owned {
    pub count: u32,
    pub leases: BTreeMap<u32, LeaseGuard>,
    /// Why this replica holds nothing although it could, when it is not just waiting its turn.
    pub note: Option<String>,
    /// The last proof of a lease this replica lost without releasing it, until a later round
    /// reached Postgres again: while set, this replica cannot show whether it leads.
    pub unproven: Option<Instant>,
}

impl Owned {
    /// The leases that may write now (`None` if none), and when the first of the others held
    /// will (after a crashed holder's lease ran out), if any.
    pub fn ready(&self) -> (Option<Ownership>, Option<Instant>) {
        let now = Instant::now();
        let (ready, waiting): (Vec<_>, Vec<_>) = self
            .leases
            .iter()
            .filter(|(_, g)| !g.lost().is_cancelled())
            .partition(|(_, g)| g.write_from() <= now);
        let next = waiting.iter().map(|(_, g)| g.write_from()).min();
        if ready.is_empty() {
            return (None, next);
        }
        let ownership = Ownership::new(self.count, ready.into_iter().map(|(s, g)| (*s, g.clone())));
        (Some(ownership), next)
    }

    /// The last proof of a lease lost without a release, here or remembered by the elector.
    pub fn unproven_since(&self) -> Option<Instant> {
        self.leases
            .values()
            .filter_map(LeaseGuard::unproven_since)
            .chain(self.unproven)
            .max()
    }

    /// Resolves when a lease held now and not lost yet is lost (never, if there is none).
    pub async fn next_loss(&self) {
        let tokens: Vec<CancellationToken> = self
            .leases
            .values()
            .map(LeaseGuard::lost)
            .filter(|t| !t.is_cancelled())
            .collect();
        if tokens.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(tokens.iter().map(|t| Box::pin(t.cancelled()))).await;
    }
}

/// What one pass may write: the shards it covers, each with its fencing token.
#[derive(Debug, Clone)]
pub struct Ownership {
    shards: Shards,
    guards: BTreeMap<u32, LeaseGuard>,
}

impl Ownership {
    pub fn new(count: u32, guards: impl IntoIterator<Item = (u32, LeaseGuard)>) -> Self {
        let guards: BTreeMap<u32, LeaseGuard> = guards.into_iter().collect();
        Self {
            shards: Shards::some(count, guards.keys().copied()),
            guards,
        }
    }

    /// The single-lease case: one shard, held by `lead`.
    pub fn single(lead: &Leadership) -> Self {
        Self::new(1, [(0, lead.guard())])
    }

    /// Every shard of `count` and no lease: for looking, never writing.
    pub fn preview(count: u32) -> Self {
        Self {
            shards: Shards::all(count),
            guards: BTreeMap::new(),
        }
    }

    pub fn shards(&self) -> &Shards {
        &self.shards
    }

    /// The leases of the pass.
    pub fn guards(&self) -> impl Iterator<Item = &LeaseGuard> {
        self.guards.values()
    }

    /// Every fence, for a write that must hold all of them.
    pub fn fences(&self) -> Vec<Fence> {
        self.guards.values().map(|g| g.fence().clone()).collect()
    }

    pub fn fence_of_org(&self, org: Uuid) -> Option<&Fence> {
        let shard = crate::reconcile::shard::shard_of(org, self.shards.count());
        self.guards.get(&shard).map(LeaseGuard::fence)
    }

    pub fn fence_of_marker(&self, org: Option<&str>) -> Option<&Fence> {
        let shard = self.shards.shard_of_marker(org);
        self.guards.get(&shard).map(LeaseGuard::fence)
    }

    /// Writes are allowed while every lease of the pass can be proven.
    pub fn may_write(&self) -> bool {
        !self.guards.is_empty() && self.guards.values().all(LeaseGuard::may_write)
    }

    /// Fires when any lease of the pass is lost.
    pub async fn lost(&self) {
        let tokens: Vec<CancellationToken> = self.guards.values().map(LeaseGuard::lost).collect();
        if tokens.is_empty() {
            return std::future::pending().await;
        }
        futures::future::select_all(tokens.iter().map(|t| Box::pin(t.cancelled()))).await;
    }
}

/// Elects this replica's shards.
pub struct ShardElector {
    options: PgConnectOptions,
    config: LeaderConfig,
    count: u32,
    /// Set every round to the age of the oldest lease's last proof (see [`ProofAge`]).
    proof_age: Option<prometheus::Gauge>,
}

/// The age of the oldest of this shard count's leases' last proofs, by Postgres's clock, as of
/// the last round that could read it; later rounds that cannot add the time since (this
/// replica's monotonic clock), so the figure keeps growing while nobody can read or prove.
#[derive(Debug, Clone, Copy)]
struct ProofAge {
    read_at: Instant,
    age: f64,
}

impl ProofAge {
    fn now(&self) -> f64 {
        self.age + self.read_at.elapsed().as_secs_f64()
    }
}

/// The members' locks as one replica reads them.
#[derive(Debug, Clone, PartialEq)]
struct Members {
    /// Live replicas running with our shard count (this one included).
    alike: u32,
    /// Other shard counts seen among live replicas.
    others: Vec<u32>,
}

impl ShardElector {
    pub fn new(options: PgConnectOptions, config: LeaderConfig, count: u32) -> Self {
        Self {
            options,
            config,
            count: count.max(1),
            proof_age: None,
        }
    }

    /// Publishes the age of the oldest lease's last proof to `gauge` every round.
    pub fn with_proof_age_gauge(mut self, gauge: prometheus::Gauge) -> Self {
        self.proof_age = Some(gauge);
        self
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The lease of `shard`: the configured name itself when there is one shard.
    pub fn lease_name(&self, shard: u32) -> String {
        if self.count == 1 {
            self.config.name.clone()
        } else {
            format!("{}/shard-{shard}", self.config.name)
        }
    }

    fn elector(&self, shard: u32) -> Elector {
        Elector::new(
            self.options.clone(),
            LeaderConfig {
                name: self.lease_name(shard),
                ..self.config.clone()
            },
        )
    }

    /// For one-shot commands: every shard, or `Ok(None)` (having released what it took) when
    /// any is held elsewhere or a replica runs with another shard count. The returned member
    /// session must be kept until the leases are released.
    pub async fn try_acquire_all(&self) -> Result<Option<AllShards>, LeaderError> {
        let mut member = self.join().await?;
        let members = members(&mut member, self.count, self.config.lease).await?;
        if !members.others.is_empty() {
            tracing::warn!(shards = self.count, others = ?members.others, "replicas run with another shard count; not taking any shard");
            return Ok(None);
        }
        let mut held: Vec<(u32, Leadership)> = Vec::new();
        for shard in 0..self.count {
            let taken = self.elector(shard).try_acquire().await;
            let lead = match taken {
                Ok(Some(lead)) => lead,
                Ok(None) | Err(_) => {
                    for (_, lead) in held {
                        lead.release().await;
                    }
                    return match taken {
                        Err(e) => Err(e),
                        _ => Ok(None),
                    };
                }
            };
            held.push((shard, lead));
        }
        Ok(Some(AllShards {
            count: self.count,
            held,
            member,
        }))
    }

    /// Takes and hands back shards until `cancel`, publishing what is held. The controller holds
    /// `passes` while it reads what it owns and runs a pass, so a shard is released only between
    /// passes and never appears in a pass after its release. On cancel, waits for the current
    /// pass and releases everything gracefully.
    pub async fn manage(
        &self,
        publish: watch::Sender<Owned>,
        passes: Arc<Mutex<()>>,
        cancel: CancellationToken,
    ) {
        let mut held: BTreeMap<u32, Leadership> = BTreeMap::new();
        let mut member: Option<PgConnection> = None;
        let mut note: Option<String> = None;
        // Leases leave `held` only here or by a release, so what is lost here was lost unreleased.
        let mut unproven: Option<Instant> = None;
        let mut proof_age: Option<ProofAge> = None;
        loop {
            for lead in held.values().filter(|l| l.lost().is_cancelled()) {
                unproven = unproven.max(Some(lead.proven_at()));
            }
            held.retain(|_, l| !l.lost().is_cancelled());
            let round = timeout(
                self.round_timeout(),
                self.tick(&mut member, &mut held, &publish, &passes),
            )
            .await
            .unwrap_or(Err(LeaderError::TimedOut("a shard election round")));
            match round {
                Ok((n, age)) => {
                    note = n;
                    // Postgres answered: this replica knows again what it holds.
                    unproven = None;
                    proof_age = age.or(proof_age);
                }
                Err(e) => {
                    tracing::warn!(error = %e, kind = e.kind(), "shard election: cannot read the members; retrying");
                    member = None;
                }
            }
            if let (Some(gauge), Some(age)) = (&self.proof_age, proof_age) {
                gauge.set(age.now());
            }
            self.publish(&publish, &held, note.clone(), unproven);
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        let _pass = passes.lock().await;
        for (_, lead) in std::mem::take(&mut held) {
            lead.release().await;
        }
        publish.send_replace(Owned {
            count: self.count,
            ..Owned::default()
        });
        if let Some(member) = member {
            let _ = member.close().await;
        }
    }

    /// One round: read the members, then take or hand back shards. Returns why nothing is
    /// taken, when that is not just a matter of turns.
    async fn tick(
        &self,
        member: &mut Option<PgConnection>,
        held: &mut BTreeMap<u32, Leadership>,
        publish: &watch::Sender<Owned>,
        passes: &Mutex<()>,
    ) -> Result<(Option<String>, Option<ProofAge>), LeaderError> {
        if member.is_none() {
            *member = Some(self.join().await?);
        }
        let Some(conn) = member.as_mut() else {
            return Ok((None, None));
        };
        let members = members(conn, self.count, self.config.lease).await?;
        let age = self.oldest_proof(conn).await?;
        let (target, note) = if members.others.is_empty() {
            (self.count.div_ceil(members.alike.max(1)) as usize, None)
        } else {
            let note = format!(
                "replicas run with different shard counts ({} here, {:?} elsewhere): holding no shard until they agree",
                self.count, members.others
            );
            tracing::error!(shards = self.count, others = ?members.others, "{note}");
            (0, Some(note))
        };
        if held.len() > target {
            let mut ranked: Vec<u32> = held.keys().copied().collect();
            ranked.sort_by_key(|s| std::cmp::Reverse(rank(&self.config.holder, *s)));
            let surplus: Vec<u32> = ranked.split_off(target);
            let leaving: Vec<(u32, Leadership)> = surplus
                .iter()
                .filter_map(|s| held.remove(s).map(|l| (*s, l)))
                .collect();
            // Released between passes: the controller reads what it owns only under this lock.
            // A pass may take long; the member session keeps proving it is alive meanwhile.
            let _pass = self.lock_passes(conn, passes).await;
            for (shard, lead) in leaving {
                tracing::info!(
                    shard,
                    replicas = members.alike,
                    shards_wanted = target,
                    "handing a shard over to rebalance"
                );
                lead.release().await;
            }
            self.publish(publish, held, note.clone(), None);
        } else if held.len() < target {
            let free = free_shards(conn, self, held).await?;
            let mut ranked: Vec<u32> = free;
            ranked.sort_by_key(|s| std::cmp::Reverse(rank(&self.config.holder, *s)));
            for shard in ranked {
                if held.len() >= target {
                    break;
                }
                match self.elector(shard).try_acquire().await {
                    Ok(Some(lead)) => {
                        tracing::info!(
                            shard,
                            lease = self.lease_name(shard).as_str(),
                            epoch = lead.epoch(),
                            replicas = members.alike,
                            shards_wanted = target,
                            "took a shard"
                        );
                        held.insert(shard, lead);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(shard, error = %e, "cannot take a free shard");
                    }
                }
            }
        }
        Ok((note, Some(age)))
    }

    /// Bound on one round: the queries' own bounds (a lease each) and the takeovers' (see
    /// [`Elector::try_acquire`]) are the real limits; this catches a path to Postgres that hangs.
    fn round_timeout(&self) -> Duration {
        self.config.lease * (4 + 3 * self.count.min(64))
    }

    /// Waits for the pass lock, stamping the member heartbeat every poll interval meanwhile.
    async fn lock_passes<'a>(
        &self,
        conn: &mut PgConnection,
        passes: &'a Mutex<()>,
    ) -> tokio::sync::MutexGuard<'a, ()> {
        let locking = passes.lock();
        tokio::pin!(locking);
        loop {
            tokio::select! {
                biased;
                guard = &mut locking => return guard,
                () = tokio::time::sleep(self.config.poll_interval) => {
                    if let Ok(Err(e)) = timeout(self.config.lease, beat(conn)).await {
                        tracing::debug!(error = %e, "cannot stamp the member heartbeat");
                    }
                }
            }
        }
    }

    /// The age of the oldest of this shard count's leases' last proofs, by Postgres's clock
    /// (infinite for a lease never held).
    async fn oldest_proof(&self, conn: &mut PgConnection) -> Result<ProofAge, LeaderError> {
        let names: Vec<String> = (0..self.count).map(|s| self.lease_name(s)).collect();
        let age: Option<f64> = bounded(
            self.config.lease,
            sqlx::query_scalar(
                "select case when count(h.name) < count(*) then 'infinity'::float8
                             else extract(epoch from max(now() - h.proven_at))::float8 end
                 from unnest($1::text[]) as n(name)
                 left join leader_heartbeat h on h.name = n.name",
            )
            .bind(&names)
            .fetch_one(conn),
        )
        .await?;
        Ok(ProofAge {
            read_at: Instant::now(),
            age: age.unwrap_or(f64::INFINITY).max(0.0),
        })
    }

    fn publish(
        &self,
        publish: &watch::Sender<Owned>,
        held: &BTreeMap<u32, Leadership>,
        note: Option<String>,
        unproven: Option<Instant>,
    ) {
        let leases: BTreeMap<u32, LeaseGuard> = held.iter().map(|(s, l)| (*s, l.guard())).collect();
        publish.send_if_modified(|o| {
            let same = o.count == self.count
                && o.note == note
                && o.unproven == unproven
                && o.leases.len() == leases.len()
                && o.leases
                    .iter()
                    .zip(&leases)
                    .all(|((a, x), (b, y))| a == b && x.fence() == y.fence());
            if !same {
                *o = Owned {
                    count: self.count,
                    leases,
                    note,
                    unproven,
                };
            }
            !same
        });
    }

    /// Opens the member session and takes the shared member lock.
    async fn join(&self) -> Result<PgConnection, LeaderError> {
        let mut conn = bounded(self.config.lease, dedicated_session(&self.options)).await?;
        // Shared: every replica holds it at once. Nothing takes it exclusively, so this is
        // granted; if it were not, this replica would only be left out of the count. The same
        // statement registers the member's heartbeat row and forgets the rows of gone sessions.
        let joined: bool = bounded(
            self.config.lease,
            sqlx::query_scalar(
                "with joined as (
                     select pg_try_advisory_lock_shared($1, $2) as joined
                 ), gone as (
                     delete from leader_members
                     where pid <> pg_backend_pid()
                       and pid not in (select pid from pg_stat_activity where pid is not null)
                 ), me as (
                     insert into leader_members (pid, holder, shards, seen_at)
                     values (pg_backend_pid(), $3, $2, now())
                     on conflict (pid) do update
                     set holder = excluded.holder, shards = excluded.shards, seen_at = now()
                 )
                 select joined from joined",
            )
            .bind(MEMBER_CLASS)
            .bind(i32::try_from(self.count).unwrap_or(i32::MAX))
            .bind(&self.config.holder)
            .fetch_one(&mut conn),
        )
        .await?;
        if !joined {
            tracing::warn!(
                shards = self.count,
                "the member lock was not granted; other replicas will not count this one"
            );
        }
        Ok(conn)
    }
}

/// Every shard, held by a one-shot command.
pub struct AllShards {
    count: u32,
    held: Vec<(u32, Leadership)>,
    member: PgConnection,
}

impl AllShards {
    pub fn ownership(&self) -> Ownership {
        Ownership::new(self.count, self.held.iter().map(|(s, l)| (*s, l.guard())))
    }

    /// Resolves when every lease may write (after a crashed holder's lease ran out).
    pub async fn ready(&self, cancel: &CancellationToken) -> bool {
        for (_, lead) in &self.held {
            if !lead.ready(cancel).await {
                return false;
            }
        }
        true
    }

    pub async fn release(self) {
        for (_, lead) in self.held {
            lead.release().await;
        }
        let _ = self.member.close().await;
    }
}

/// Stamps this member's heartbeat row.
async fn beat(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("update leader_members set seen_at = now() where pid = pg_backend_pid()")
        .execute(conn)
        .await?;
    Ok(())
}

/// Awaits `query` for at most `bound`.
async fn bounded<T>(
    bound: Duration,
    query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, LeaderError> {
    match timeout(bound, query).await {
        Ok(done) => Ok(done?),
        Err(_) => Err(LeaderError::TimedOut("a shard election query")),
    }
}

/// Live members by shard count, from the members' shared locks, stamping this member's heartbeat
/// in the same statement. A member whose heartbeat is older than `lease` (by Postgres's clock) is
/// hung, frozen or cut off behind a hanging path: it is not counted, and its session is
/// terminated so that its shared lock goes too (a frozen process's kernel would keep it).
/// A member without a row (an older binary) is counted and left alone.
async fn members(
    conn: &mut PgConnection,
    count: u32,
    lease: Duration,
) -> Result<Members, LeaderError> {
    let rows = bounded(
        lease,
        sqlx::query(
            "with beat as (
                 update leader_members set seen_at = now() where pid = pg_backend_pid()
             )
             select l.pid, l.objid::int8 as shards,
                    (l.pid <> pg_backend_pid()
                     and coalesce(m.seen_at < now() - make_interval(secs => $2), false)) as stale
             from pg_locks l
             left join leader_members m on m.pid = l.pid
             where l.locktype = 'advisory' and l.granted and l.objsubid = 2
               and l.classid = $1::int4::oid
               and l.database = (select oid from pg_database where datname = current_database())",
        )
        .bind(MEMBER_CLASS)
        .bind(lease.as_secs_f64())
        .fetch_all(&mut *conn),
    )
    .await?;
    let mut by_count: BTreeMap<i64, u32> = BTreeMap::new();
    let mut stale: Vec<i32> = Vec::new();
    for row in rows {
        let shards: i64 = row.try_get("shards")?;
        if row.try_get::<bool, _>("stale")? {
            stale.push(row.try_get("pid")?);
        } else {
            *by_count.entry(shards).or_default() += 1;
        }
    }
    if !stale.is_empty() {
        terminate_hung_members(conn, &stale, lease).await?;
    }
    let mut members = Members {
        alike: 0,
        others: Vec::new(),
    };
    for (shards, n) in by_count {
        if shards == i64::from(count) {
            members.alike = n;
        } else {
            members
                .others
                .push(u32::try_from(shards).unwrap_or(u32::MAX));
        }
    }
    Ok(members)
}

/// Terminates member sessions whose heartbeat is still older than `lease`. Needs the same
/// privilege as [`crate::leader`]'s takeover (the same role, or `pg_signal_backend`).
async fn terminate_hung_members(
    conn: &mut PgConnection,
    pids: &[i32],
    lease: Duration,
) -> Result<(), LeaderError> {
    let rows = bounded(
        lease,
        sqlx::query(
            "select m.pid, m.holder, extract(epoch from now() - m.seen_at)::float8 as age,
                    pg_terminate_backend(m.pid, $3) as terminated
             from leader_members m
             where m.pid = any($1) and m.seen_at < now() - make_interval(secs => $2)",
        )
        .bind(pids)
        .bind(lease.as_secs_f64())
        .bind(i64::try_from((lease / 2).as_millis()).unwrap_or(i64::MAX))
        .fetch_all(conn),
    )
    .await?;
    for row in rows {
        tracing::warn!(
            pid = row.try_get::<i32, _>("pid")?,
            holder = row.try_get::<String, _>("holder")?.as_str(),
            heartbeat_age_seconds = row.try_get::<f64, _>("age")?,
            terminated = row.try_get::<bool, _>("terminated")?,
            "a replica's member heartbeat is older than the lease: terminated its session"
        );
    }
    Ok(())
}

/// Shards whose lease lock nobody holds now, or whose holder's heartbeat is older than the
/// lease (a hung holder, which the takeover terminates); this replica's excluded.
async fn free_shards(
    conn: &mut PgConnection,
    elector: &ShardElector,
    held: &BTreeMap<u32, Leadership>,
) -> Result<Vec<u32>, LeaderError> {
    let wanted: Vec<u32> = (0..elector.count)
        .filter(|s| !held.contains_key(s))
        .collect();
    let names: Vec<String> = wanted.iter().map(|s| elector.lease_name(*s)).collect();
    let free: Vec<String> = bounded(
        elector.config.lease,
        sqlx::query_scalar(
            "select n from unnest($2::text[]) as n
             where not exists (
                 select 1 from pg_locks l
                 where l.locktype = 'advisory' and l.granted and l.objsubid = 2
                   and l.classid = $1::int4::oid and l.objid = hashtext(n)::int4::oid
                   and l.database = (select oid from pg_database where datname = current_database())
                   and not exists (
                       select 1 from leader_heartbeat h
                       where h.name = n and h.pid = l.pid
                         and h.proven_at < now() - make_interval(secs => $3)))",
        )
        .bind(LOCK_CLASS)
        .bind(&names)
        .bind(elector.config.lease.as_secs_f64())
        .fetch_all(conn),
    )
    .await?;
    Ok(wanted
        .into_iter()
        .zip(names)
        .filter(|(_, n)| free.contains(n))
        .map(|(s, _)| s)
        .collect())
}

/// Rendezvous rank of `shard` for `holder`: each replica prefers different shards.
fn rank(holder: &str, shard: u32) -> u64 {
    let digest = Sha256::digest(format!("{holder}\u{0}{shard}").as_bytes());
    u64::from_be_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ])
}
