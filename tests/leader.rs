//! Leader election against a real Postgres: one leader per name, a strictly increasing epoch, and
//! a takeover wait after anything but a graceful release.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sqlx::PgPool;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use vapi_reconciler::leader::{APPLICATION_NAME, Elector, Fence, LeaderConfig, Leadership};

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

    let second = timeout(EVENT, b.acquire(&CancellationToken::new()))
        .await
        .expect("acquire hung")
        .unwrap()
        .expect("acquire was cancelled");
    assert_eq!(second.epoch(), 2);
    // The previous holder did not release: no writes until the lease has passed.
    assert!(!second.may_write());
    assert!(
        timeout(lease / 2, second.ready(&CancellationToken::new()))
            .await
            .is_err(),
        "ready() resolved before the takeover wait"
    );
    assert!(
        timeout(EVENT, second.ready(&CancellationToken::new()))
            .await
            .unwrap()
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
    let second = timeout(EVENT, b.acquire(&CancellationToken::new()))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second.epoch(), 3);
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

    let second = timeout(EVENT, b.acquire(&CancellationToken::new()))
        .await
        .expect("the lock was not freed after the leadership was dropped")
        .unwrap()
        .expect("acquire was cancelled");
    assert_eq!(second.epoch(), 2);
    assert!(first_lost.is_cancelled());
    // Not a graceful release: the takeover wait applies.
    assert!(!second.may_write());
}

#[sqlx::test]
async fn acquire_returns_none_when_cancelled_while_standby(pool: PgPool) {
    let lease = Duration::from_secs(30);
    let first = lead(&elector(&pool, "vapi-reconciler", "a", lease)).await;

    let b = elector(&pool, "vapi-reconciler", "b", lease);
    let cancel = CancellationToken::new();
    let standby = tokio::spawn({
        let cancel = cancel.clone();
        async move { b.acquire(&cancel).await.map(|l| l.is_some()) }
    });
    // Give the standby a few polls; the outcome must be the same either way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !standby.is_finished(),
        "acquire returned while the lease was held"
    );
    cancel.cancel();
    let acquired = timeout(EVENT, standby).await.unwrap().unwrap().unwrap();
    assert!(!acquired);
    assert!(first.may_write());

    // An already-cancelled token returns at once too.
    let c = elector(&pool, "vapi-reconciler", "c", lease);
    assert!(c.acquire(&cancel).await.unwrap().is_none());
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
        let leadership = timeout(EVENT, e.acquire(&CancellationToken::new()))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
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
