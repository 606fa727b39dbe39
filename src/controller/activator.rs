//! Wakes the loop before its next periodic pass, and says for what: everything (a changed key, an
//! HTTP trigger, a reconnect, a notification that names no agent) or a few named agents (a
//! notification of a small save). Activations coalesce: any number of them during a pass schedule
//! exactly one more, which takes everything asked for since the last one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

/// What the activations since the last [`Activator::take`] asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// A full pass.
    pub all: bool,
    /// Agents whose change was notified by id.
    pub agents: HashSet<Uuid>,
}

#[derive(Debug, Clone, Default)]
pub struct Activator {
    notify: Arc<Notify>,
    wanted: Arc<Mutex<Wanted>>,
}

impl Activator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a full pass as soon as possible.
    pub fn activate(&self) {
        self.want(|w| w.all = true);
    }

    /// Asks for these agents to be reconciled as soon as possible.
    pub fn activate_agents(&self, agents: impl IntoIterator<Item = Uuid>) {
        self.want(|w| w.agents.extend(agents));
    }

    /// A database notification's payload: `agents:<id>,…` names agents; anything else (another
    /// table, `agents` alone, an id that does not parse) asks for everything.
    pub fn notified(&self, payload: &str) {
        let named = payload.strip_prefix("agents:").and_then(|ids| {
            ids.split(',')
                .map(|id| id.parse::<Uuid>().ok())
                .collect::<Option<Vec<_>>>()
        });
        match named {
            Some(agents) => self.activate_agents(agents),
            None => self.activate(),
        }
    }

    fn want(&self, f: impl FnOnce(&mut Wanted)) {
        f(&mut self.wanted.lock().unwrap_or_else(|p| p.into_inner()));
        // `notify_one` stores a permit when nobody waits: a trigger during a pass is not lost,
        // and further triggers add nothing to it.
        self.notify.notify_one();
    }

    pub async fn activated(&self) {
        self.notify.notified().await;
    }

    /// Everything asked for so far, leaving nothing asked for.
    pub fn take(&self) -> Wanted {
        std::mem::take(&mut self.wanted.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn triggers_during_a_pass_coalesce_into_one() {
        let a = Activator::new();
        for _ in 0..5 {
            a.activate();
        }
        // One stored permit: the first wait returns at once, the second does not.
        tokio::time::timeout(std::time::Duration::from_secs(1), a.activated())
            .await
            .expect("one pending activation");
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(60), a.activated())
                .await
                .is_err(),
            "the five triggers coalesced"
        );
    }

    #[test]
    fn notifications_name_agents_or_ask_for_everything() {
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        let a = Activator::new();
        a.notified(&format!("agents:{x},{y}"));
        a.notified(&format!("agents:{x}"));
        assert_eq!(
            a.take(),
            Wanted {
                all: false,
                agents: HashSet::from([x, y])
            }
        );
        assert_eq!(a.take(), Wanted::default(), "taken once");
        for payload in [
            "agents",
            "org_credentials",
            "agents:",
            "agents:not-a-uuid",
            "",
        ] {
            a.notified(payload);
            assert!(a.take().all, "{payload:?} asks for everything");
        }
    }
}
