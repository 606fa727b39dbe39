//! Event-driven: a saved agent reaches Vapi at once (not at the 5-minute resync), and a change
//! whose notification was lost is caught up when the listening connection comes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::process::eventually;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use vapi_reconciler::controller::{Role, listen};

const BOUND: Duration = Duration::from_secs(30);

async fn synced(pool: &PgPool, agent: uuid::Uuid) -> bool {
    sqlx::query_scalar::<_, String>("select state from agent_status where agent_id = $1")
        .bind(agent)
        .fetch_optional(pool)
        .await
        .unwrap()
        .as_deref()
        == Some("synced")
}

#[sqlx::test]
async fn a_save_wakes_the_controller_and_a_lost_notification_is_caught_up(pool: PgPool) {
    // The environment's own leadership would keep the loop standing by: hand it over.
    let common::TestEnv {
        lead,
        vapi,
        key,
        sim: _sim,
        running: _running,
        ..
    } = common::env(pool.clone()).await;
    lead.release().await;
    let controller = Arc::new(common::controller(&pool, &vapi, &key, common::settings()));
    let cancel = CancellationToken::new();
    let elector = vapi_reconciler::sharding::ShardElector::new(
        (*pool.connect_options()).clone(),
        common::leader_config("notify"),
        1,
    );
    tokio::spawn({
        let (controller, cancel) = (controller.clone(), cancel.clone());
        async move { controller.run(&elector, cancel).await }
    });
    tokio::spawn(listen::listen(
        pool.clone(),
        controller.activator(),
        cancel.clone(),
        |_| {},
    ));
    let mut status = controller.subscribe();
    tokio::time::timeout(
        BOUND,
        status.wait_for(|s| s.role == Role::Leader && s.passes >= 1),
    )
    .await
    .unwrap()
    .unwrap();

    // The resync interval is 5 minutes: only the notification can bring this agent in time.
    let org = common::org(&pool, "Harbor").await;
    let saved = common::agent(&pool, org, "front-desk", common::spec(1)).await;
    eventually("the saved agent is synced", BOUND, || synced(&pool, saved)).await;

    // A change made while its notification is lost...
    sqlx::query("alter table agents disable trigger agents_notify")
        .execute(&pool)
        .await
        .unwrap();
    let missed = common::agent(&pool, org, "billing", common::spec(2)).await;
    sqlx::query("alter table agents enable trigger agents_notify")
        .execute(&pool)
        .await
        .unwrap();
    let passes = controller.subscribe().borrow().passes;
    // ...is caught up when the listening connection drops and comes back.
    let dropped: i64 = sqlx::query_scalar(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity
         where datname = current_database() and query like 'LISTEN%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(dropped, 1, "one listening connection");
    eventually("the missed agent is synced", BOUND, || {
        synced(&pool, missed)
    })
    .await;
    assert!(controller.subscribe().borrow().passes > passes);
    cancel.cancel();
}
