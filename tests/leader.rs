//! Leader election against a real Postgres: one leader per name, a strictly increasing epoch, and
//! a takeover wait after anything but a graceful release.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::PgPool;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use vapi_reconciler::leader::{
    APPLICATION_NAME, Elector, Fence, LOCK_CLASS, LeaderConfig, Leadership,
};

/// Bound on events that must happen; generous, since only a hang should hit it.
const EVENT: Duration = Duration::from_secs(10);

fn elector(pool: &PgPool, name: &str, holder: &str, lease: Duration) -> Elector {
    Elector::new(
        (*pool.connect_options()).clone(),
        LeaderConfig {
            name: name.to_owned(),
            holder: holder.to_owned(),
            poll_interval: Duration::from_millis(50),
            renew_interval: Duration::from_millis(100),
            lease,
        },
    )
}

/// Stands by as a replica does: one try every poll interval until the lock is free.
async fn stand_by(elector: &Elector) -> Leadership {
    loop {
        if let Some(lead) = elector.try_acquire().await.expect("try_acquire failed") {
            return lead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn lead(elector: &Elector) -> Leadership {
    timeout(EVENT, elector.try_acquire())
        .await
        .expect("try_acquire hung")
        .expect("try_acquire failed")
        .expect("the lease was held elsewhere")
}

/// Ends the leader's session from the server side, as a crash or a partition would.
async fn terminate_leader_sessions(pool: &PgPool) -> usize {
    sqlx::query_scalar::<_, bool>(
        "select pg_terminate_backend(pid) from pg_stat_activity
         where application_name = $1 and datname = current_database()",
    )
    .bind(APPLICATION_NAME)
    .fetch_all(pool)
    .await
    .unwrap()
    .len()
}

#[sqlx::test]
async fn graceful_release_hands_over_without_waiting(pool: PgPool) {
    let lease = Duration::from_secs(30);
    let a = elector(&pool, "vapi-reconciler", "a", lease);
    let b = elector(&pool, "vapi-reconciler", "b", lease);

    let first = lead(&a).await;
    assert_eq!(first.epoch(), 1);
    assert_eq!(
        first.fence(),
        Fence {
            name: "vapi-reconciler".into(),
            epoch: 1
        }
    );
    // Nobody held it before: writes may start at once.
    assert!(
        timeout(EVENT, first.ready(&CancellationToken::new()))
            .await
            .unwrap()
    );
    assert!(first.may_write());
    assert!(b.try_acquire().await.unwrap().is_none());

    let first_lost = first.lost();
    first.release().await;
    assert!(first_lost.is_cancelled(), "release must fire lost");
    let info = Elector::current(&pool, "vapi-reconciler")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((info.epoch, info.holder.as_str()), (1, "a"));
    assert!(info.released_at.is_some());

    let second = lead(&b).await;
    assert_eq!(second.epoch(), 2);
    // Far shorter than the 30s lease: the previous holder released, so there is no takeover wait.
    let ready = timeout(
        Duration::from_secs(5),
        second.ready(&CancellationToken::new()),
    )
    .await
    .expect("ready() waited although the previous holder released");
    assert!(ready);
    assert!(second.may_write());
    let info = Elector::current(&pool, "vapi-reconciler")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((info.epoch, info.holder.as_str()), (2, "b"));
    assert!(info.released_at.is_none());
    second.release().await;
}

#[sqlx::test]
async fn a_terminated_session_loses_leadership_and_the_next_leader_waits_the_lease(pool: PgPool) {
    let lease = Duration::from_secs(2);
    let a = elector(&pool, "vapi-reconciler", "a", lease);
    let b = elector(&pool, "vapi-reconciler", "b", lease);

    let first = lead(&a).await;
    assert!(first.may_write());
    assert_eq!(terminate_leader_sessions(&pool).await, 1);
    timeout(EVENT, first.lost().cancelled())
        .await
        .expect("lost() did not fire after the session was terminated");
    assert!(!first.may_write());
    assert!(!first.ready(&CancellationToken::new()).await);

    // The epoch bump (which starts the takeover wait) happens after this instant.
    let standing_by = std::time::Instant::now();
    let second = timeout(EVENT, stand_by(&b))
        .await
        .expect("the lock was not freed");
    assert_eq!(second.epoch(), 2);
    // The previous holder did not release: no writes until the lease has passed.
    assert!(!second.may_write());
    assert!(
        timeout(EVENT, second.ready(&CancellationToken::new()))
            .await
            .unwrap()
    );
    // A lower bound only, so a slow machine cannot fail it: the wait was a whole lease.
    assert!(
        standing_by.elapsed() >= lease,
        "ready() resolved {:?} after standing by, before the takeover wait of {lease:?}",
        standing_by.elapsed()
    );
    assert!(second.may_write());
    assert!(!second.lost().is_cancelled());
    second.release().await;
}

#[sqlx::test]
async fn a_superseded_epoch_loses_leadership(pool: PgPool) {
    let a = elector(&pool, "vapi-reconciler", "a", Duration::from_secs(30));
    let first = lead(&a).await;
    // Someone else's acquisition recorded a newer epoch: our heartbeat must notice.
    sqlx::query("update leader_lease set epoch = epoch + 1 where name = 'vapi-reconciler'")
        .execute(&pool)
        .await
        .unwrap();
    timeout(EVENT, first.lost().cancelled())
        .await
        .expect("lost() did not fire after the epoch moved on");
    assert!(!first.may_write());
    // Losing closes the session, so the lock is free again.
    let b = elector(&pool, "vapi-reconciler", "b", Duration::from_secs(30));
    let second = timeout(EVENT, stand_by(&b)).await.unwrap();
    assert_eq!(second.epoch(), 3);
}

#[sqlx::test]
async fn fenced_writes_holding_the_lease_row_do_not_starve_the_heartbeat(pool: PgPool) {
    // A 100 ms renew interval makes the proving query time out after 100 ms: a heartbeat that
    // queued behind the row lock would lose leadership well before the long lease runs out.
    let a = elector(&pool, "vapi-reconciler", "a", Duration::from_secs(30));
    let leader = lead(&a).await;
    let renewed_at = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "select renewed_at from leader_lease where name = 'vapi-reconciler'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    // What every fenced write does first, held open as a long status batch under load would.
    let mut write = pool.begin().await.unwrap();
    sqlx::query("select epoch from leader_lease where name = 'vapi-reconciler' for share")
        .execute(&mut *write)
        .await
        .unwrap();
    let locked_at = tokio::time::Instant::now();
    let while_locked = renewed_at().await;
    let proven = async {
        while leader.proven_at() <= locked_at {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let lost = leader.lost();
    tokio::select! {
        () = lost.cancelled() => panic!("leadership was lost behind a fenced write"),
        r = timeout(EVENT, proven) => r.expect("no proof while a fenced write held the row"),
    }
    assert!(leader.may_write());
    // `renewed_at` waits for a free row rather than for the write.
    assert_eq!(renewed_at().await, while_locked);
    write.commit().await.unwrap();
    timeout(EVENT, async {
        while renewed_at().await <= while_locked {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("renewed_at was not refreshed once the row was free");
    assert!(!lost.is_cancelled());
}

#[sqlx::test]
async fn a_takeover_terminates_a_stuck_write_of_the_old_epoch(pool: PgPool) {
    let lease = Duration::from_millis(500);
    let a = elector(&pool, "vapi-reconciler", "a", lease);
    let first = lead(&a).await;
    // A fenced write of the first leader's epoch that never ends, as from a writer frozen
    // mid-transaction: its kernel keeps the session, so Postgres never ends it by itself.
    let mut stuck = pool.begin().await.unwrap();
    let stuck_pid: i32 = sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(&mut *stuck)
        .await
        .unwrap();
    sqlx::query("select epoch from leader_lease where name = 'vapi-reconciler' for share")
        .execute(&mut *stuck)
        .await
        .unwrap();
    drop(first);
    let b = elector(&pool, "vapi-reconciler", "b", lease);
    // The bump waits for the write, then terminates it: the lease is taken, not given up.
    let second = timeout(EVENT, stand_by(&b))
        .await
        .expect("the takeover waited for the stuck write");
    assert_eq!(second.epoch(), 2);
    let alive: bool =
        sqlx::query_scalar("select exists (select 1 from pg_stat_activity where pid = $1)")
            .bind(stuck_pid)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(!alive, "the old epoch's transaction was terminated");
    assert!(
        stuck.commit().await.is_err(),
        "the stuck write cannot commit"
    );
}

/// A timestamp read from Postgres: the clock the heartbeats are timed by.
async fn db_time(pool: &PgPool, sql: &str) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Takes the lock from a session of its own, writes a heartbeat for it as a holder would, and
/// then never proves again: a frozen holder, whose session Postgres keeps.
async fn hung_holder(pool: &PgPool, name: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect_with(&pool.connect_options())
        .await
        .unwrap();
    let locked: bool = sqlx::query_scalar(
        "with lock as (select pg_try_advisory_lock($1, hashtext($2)) as locked),
              beat as (insert into leader_heartbeat (name, pid, epoch, holder, proven_at)
                       select $2, pg_backend_pid(), 1, 'frozen', now() from lock where locked
                       returning 1)
         select (select locked from lock) and (select count(*) from beat) = 1",
    )
    .bind(LOCK_CLASS)
    .bind(name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(locked);
    sqlx::query(
        "insert into leader_lease (name, epoch, holder, acquired_at, renewed_at)
         values ($1, 1, 'frozen', now(), now())",
    )
    .bind(name)
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

#[sqlx::test]
async fn a_holder_whose_heartbeat_is_older_than_the_lease_is_terminated_and_replaced(pool: PgPool) {
    let lease = Duration::from_millis(500);
    let mut frozen = hung_holder(&pool, "vapi-reconciler").await;
    let b = elector(&pool, "vapi-reconciler", "b", lease);
    // While the heartbeat is younger than the lease the holder is left alone.
    assert!(b.try_acquire().await.unwrap().is_none());
    let before = db_time(&pool, "select proven_at from leader_heartbeat").await;
    let second = timeout(EVENT, stand_by(&b))
        .await
        .expect("the hung holder was never replaced");
    let after = db_time(&pool, "select now()").await;
    // Measured by Postgres: the takeover came no earlier than one lease after the last proof.
    assert!(
        (after - before).to_std().unwrap() >= lease,
        "replaced after {:?}, before the heartbeat was one lease old",
        after - before
    );
    assert_eq!(second.epoch(), 2);
    // Not released: the new leader waits a lease before writing.
    assert!(!second.may_write());
    let heartbeat: (i64, String) =
        sqlx::query_as("select coalesce(epoch, 0), holder from leader_heartbeat")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(heartbeat.1, "b");
    // The frozen holder's session is gone: whatever it sends now fails.
    assert!(
        sqlx::query("select 1").execute(&mut frozen).await.is_err(),
        "the hung holder's session was terminated"
    );
}

#[sqlx::test]
async fn a_live_leaders_heartbeat_keeps_standbys_off(pool: PgPool) {
    let lease = Duration::from_millis(500);
    let a = elector(&pool, "vapi-reconciler", "a", lease);
    let first = lead(&a).await;
    let b = elector(&pool, "vapi-reconciler", "b", lease);
    // Standing by until the leader has proven for three more leases (by its heartbeat, timed
    // by Postgres): the proving leader is never terminated.
    let start = db_time(&pool, "select now()").await;
    let until = start + chrono::TimeDelta::from_std(lease * 3).unwrap();
    timeout(EVENT, async {
        loop {
            assert!(b.try_acquire().await.unwrap().is_none());
            if db_time(&pool, "select proven_at from leader_heartbeat").await >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the leader stopped proving");
    assert!(!first.lost().is_cancelled());
    assert!(first.may_write());
    let age: f64 = sqlx::query_scalar(
        "select extract(epoch from now() - proven_at)::float8 from leader_heartbeat",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(age < lease.as_secs_f64(), "the heartbeat is renewed: {age}");
    first.release().await;
}

#[sqlx::test]
async fn dropping_leadership_frees_the_lock(pool: PgPool) {
    let lease = Duration::from_secs(30);
    let a = elector(&pool, "vapi-reconciler", "a", lease);
    let b = elector(&pool, "vapi-reconciler", "b", lease);

    let first = lead(&a).await;
    let first_lost = first.lost();
    assert!(b.try_acquire().await.unwrap().is_none());
    drop(first);

    let second = timeout(EVENT, stand_by(&b))
        .await
        .expect("the lock was not freed after the leadership was dropped");
    assert_eq!(second.epoch(), 2);
    assert!(first_lost.is_cancelled());
    // Not a graceful release: the takeover wait applies.
    assert!(!second.may_write());
}

#[sqlx::test]
async fn the_epoch_increases_with_every_acquisition(pool: PgPool) {
    let lease = Duration::from_secs(30);
    assert!(
        Elector::current(&pool, "vapi-reconciler")
            .await
            .unwrap()
            .is_none()
    );
    let mut epochs = Vec::new();
    for (i, holder) in ["a", "b", "c"].into_iter().enumerate() {
        let e = elector(&pool, "vapi-reconciler", holder, lease);
        let leadership = timeout(EVENT, stand_by(&e)).await.unwrap();
        let info = Elector::current(&pool, "vapi-reconciler")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.holder, holder);
        assert_eq!(info.epoch, leadership.epoch());
        assert_eq!(info.name, "vapi-reconciler");
        assert!(info.released_at.is_none());
        epochs.push(leadership.epoch());
        // Hand over both ways: gracefully, then by dropping.
        if i % 2 == 0 {
            leadership.release().await;
        } else {
            drop(leadership);
        }
    }
    assert_eq!(epochs, [1, 2, 3]);
}

#[sqlx::test]
async fn different_names_do_not_block_each_other(pool: PgPool) {
    let lease = Duration::from_secs(30);
    let one = lead(&elector(&pool, "lease-one", "a", lease)).await;
    let two = lead(&elector(&pool, "lease-two", "a", lease)).await;
    assert_eq!((one.epoch(), two.epoch()), (1, 1));
    assert!(one.may_write() && two.may_write());
    // And the same name is still exclusive.
    assert!(
        elector(&pool, "lease-one", "b", lease)
            .try_acquire()
            .await
            .unwrap()
            .is_none()
    );
    one.release().await;
    two.release().await;
}
