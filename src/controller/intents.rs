//! Create intents, committed together.
//!
//! The create protocol: a POST leaves only after its intent (operation id, generation, epoch) and
//! its `pending` journal row are committed in one fenced transaction, so a create whose answer is
//! lost is adopted by its operation id rather than made twice. With one transaction per create,
//! that commit — a fence check, two inserts and a WAL flush — was the cold start's cost.
//!
//! Here the creates of one pass that are ready at the same moment share a transaction: each hands
//! its intent to the pass's [`Intents`] queue and waits for the commit of the batch it landed in;
//! only then does it send. Nothing about the protocol changes — no POST leaves before its own
//! intent is durable, and a fenced or failed batch sends none of its creates — only the commits are
//! shared. A lone create (a focused pass) is a batch of one and waits for nobody.

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::leader::Fence;
use crate::reconcile::CreateIntent;
use crate::store::{JournalEntry, NewIntent, Store, StoreError};

/// Most intents one transaction commits.
const BATCH: usize = 256;

/// One create waiting for its intent to be committed.
struct Waiting {
    intent: NewIntent,
    committed: oneshot::Sender<Result<i64, StoreError>>,
}

/// The pass's queue of intents to commit.
pub(crate) struct Intents {
    queue: mpsc::UnboundedSender<Waiting>,
}

/// The other end of [`Intents`]: commits what is queued, batch by batch, until every sender is gone.
pub(crate) struct Committer {
    queue: mpsc::UnboundedReceiver<Waiting>,
}

pub(crate) fn queue() -> (Intents, Committer) {
    let (queue, rx) = mpsc::unbounded_channel();
    (Intents { queue }, Committer { queue: rx })
}

impl Intents {
    /// Commits this agent's intent with its create's pending journal row; the row's id once it
    /// is durable.
    pub(crate) async fn record(
        &self,
        agent_id: Uuid,
        intent: CreateIntent,
        epoch: i64,
        row: JournalEntry,
    ) -> Result<i64, StoreError> {
        let (committed, answer) = oneshot::channel();
        let waiting = Waiting {
            intent: NewIntent {
                agent_id,
                intent,
                epoch,
                row,
            },
            committed,
        };
        if self.queue.send(waiting).is_err() {
            return Err(StoreError::shared(
                "other",
                "the pass's intent queue is closed",
            ));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::shared("other", "the intent batch was dropped")))
    }
}

impl Committer {
    /// Runs beside the pass's executor; ends when the executor drops its [`Intents`].
    pub(crate) async fn run(mut self, store: &Store, fences: &[Fence]) {
        let mut batch = Vec::with_capacity(BATCH);
        while self.queue.recv_many(&mut batch, BATCH).await > 0 {
            let (intents, waiters): (Vec<NewIntent>, Vec<_>) =
                batch.drain(..).map(|w| (w.intent, w.committed)).unzip();
            match store.record_intents(fences, &intents).await {
                Ok(ids) => {
                    for (id, w) in ids.into_iter().zip(waiters) {
                        let _ = w.send(Ok(id));
                    }
                }
                Err(e) => {
                    for w in waiters {
                        let _ = w.send(Err(e.for_each()));
                    }
                }
            }
        }
    }
}
