//! Wakes the loop when the database says something changed (`LISTEN vapi_reconciler`): a saved
//! agent, an org key, an operator's breaker reset or guard confirmation.
//!
//! A notification that names agents (a small save) asks for those agents only; anything else asks
//! for a full pass (see [`Activator::notified`]).
//!
//! Notifications sent while the connection is down are lost, so every (re)connect asks for a full
//! pass: it reads the whole desired state of the shards owned and compares each agent's
//! `generation` with the `observed_generation` its status recorded, which is the catch-up
//! cursor — nothing narrower can be missed. The periodic resync stays as the backstop.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::Activator;

pub const CHANNEL: &str = "vapi_reconciler";

/// Runs until `cancel`; never gives up on the database.
/// `on_change` gets each notification's payload (the table that changed, and for a small save
/// of agents their ids) before the loop is woken for it.
pub async fn listen(
    pool: PgPool,
    activator: Activator,
    cancel: CancellationToken,
    on_change: impl Fn(&str),
) {
    let mut failing = false;
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            r = connected => match r {
                Ok(l) => l,
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot listen for changes; relying on the periodic resync until it works");
                        failing = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = cancel.cancelled() => return,
                    }
                }
            },
            () = cancel.cancelled() => return,
        };
        failing = false;
        tracing::debug!("listening for changes");
        // Whatever changed while not listening is caught up by one pass.
        activator.activate();
        loop {
            let next = tokio::select! {
                n = listener.try_recv() => n,
                () = cancel.cancelled() => return,
            };
            match next {
                Ok(Some(n)) => {
                    tracing::debug!(payload = n.payload(), "change notified");
                    on_change(n.payload());
                    activator.notified(n.payload());
                }
                // The connection dropped; try_recv reconnects on the next call. Catch up.
                Ok(None) => {
                    tracing::info!("listening connection lost; reconnected, catching up");
                    activator.activate();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening for changes failed; reconnecting");
                    break;
                }
            }
        }
    }
}
