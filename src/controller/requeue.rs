//! Per-agent back-off: a failing agent is retried later and later (2 s → 5 min by default, with
//! jitter) without delaying any other agent, and reset by a success. A terminal failure (Vapi
//! refused the spec) waits for the spec to change instead. Failures of the credential or of Vapi
//! as a whole (quarantine, open breaker) are the lane's business and do not count here.
//!
//! Held in memory by the leader: a new leader starts with every agent due, which costs at most
//! one attempt each.
//!
//! Bounded work: an entry is a reason to wake only while its time lies ahead, and never before
//! its key's open breaker admits a probe (a retry then would be refused locally anyway). Agents
//! that cannot progress by a retry leave the queue: hands-off (paused, observe-only, dry-run),
//! deleted, or refused because their key is quarantined or unreadable.

use std::collections::HashMap;
use std::sync::Mutex;

use std::time::Instant;

use uuid::Uuid;

use super::outcome::{Outcome, Reason};
use crate::resilience::{Backoff, Clock};
use crate::store::SyncState;

#[derive(Debug, Clone)]
struct Entry {
    failures: u32,
    next_at: Instant,
    generation: i64,
    terminal: bool,
    /// The key the failing call used, so its open breaker can postpone the retry.
    key: Option<String>,
}

pub struct Requeue {
    policy: Backoff,
    clock: Clock,
    entries: Mutex<HashMap<Uuid, Entry>>,
}

/// Why an agent's write waits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    /// Failed `failures` times in a row; due again at this time.
    Until { failures: u32, at: Instant },
    /// Refused by Vapi at this generation; due when the spec changes.
    SpecChange,
}

impl Requeue {
    pub fn new(policy: Backoff, clock: Clock) -> Self {
        Self {
            policy,
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this agent's writes wait now.
    pub fn waiting(&self, agent: Uuid, generation: i64) -> Option<Wait> {
        let entries = self.entries();
        let e = entries.get(&agent)?;
        if e.generation != generation {
            return None;
        }
        if e.terminal {
            return Some(Wait::SpecChange);
        }
        (self.clock.now() < e.next_at).then_some(Wait::Until {
            failures: e.failures,
            at: e.next_at,
        })
    }

    /// Learns from an outcome of an attempted write; `true` when it put the agent in back-off.
    pub fn observe(&self, o: &Outcome) -> bool {
        let mut entries = self.entries();
        match o.state {
            SyncState::Synced | SyncState::Deleted => {
                entries.remove(&o.agent_id);
                false
            }
            SyncState::Failed if o.attempted && !o.reason.is_lane_wide() => {
                let previous = entries
                    .get(&o.agent_id)
                    .filter(|e| e.generation == o.generation)
                    .map_or(0, |e| e.failures);
                let failures = previous.saturating_add(1);
                entries.insert(
                    o.agent_id,
                    Entry {
                        failures,
                        next_at: self.clock.now() + self.policy.delay_random(failures),
                        generation: o.generation,
                        terminal: o.reason.is_terminal(),
                        key: o.key_fingerprint.clone(),
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// Forgets agents a retry cannot help: hands-off, deleted, or refused for their key (it is
    /// probed by the lane, and a new key is tried at once).
    pub fn forget_settled(&self, o: &Outcome) {
        let settled = matches!(
            o.state,
            SyncState::Paused | SyncState::Drifted | SyncState::Deleted
        ) || matches!(
            o.reason,
            Reason::CredentialsRejected | Reason::CredentialsUnavailable
        );
        if settled {
            self.entries().remove(&o.agent_id);
        }
    }

    /// Agents waiting out a back-off or a spec change.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// The earliest time still ahead at which a backed-off agent falls due (terminal ones never
    /// do), but not before its key's breaker admits a probe (`open_until` of a fingerprint).
    pub fn next_due(
        &self,
        open_until: impl Fn(&str) -> Option<tokio::time::Instant>,
    ) -> Option<tokio::time::Instant> {
        let now = self.clock.now();
        let at = self
            .entries()
            .values()
            .filter(|e| !e.terminal && e.next_at > now)
            .map(|e| {
                let due = self.clock.to_tokio(e.next_at);
                let open = e.key.as_deref().and_then(&open_until);
                open.map_or(due, |open| due.max(open))
            })
            .min()?;
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn failure(agent: Uuid, reason: Reason) -> Outcome {
        Outcome::failed(agent, 1, reason, "failed".into(), true).with_key("fp")
    }

    fn queue() -> Requeue {
        let policy = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(2),
            jitter: 0.0,
        };
        Requeue::new(policy, Clock::new())
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_time_that_has_passed_is_no_wake_up() {
        let q = queue();
        let agent = Uuid::new_v4();
        assert!(q.observe(&failure(agent, Reason::VapiUnavailable)));
        let due = q.next_due(|_| None).expect("due in 2 s");
        assert_eq!(due - tokio::time::Instant::now(), Duration::from_secs(2));
        tokio::time::advance(Duration::from_secs(3)).await;
        // Still queued (its next attempt decides), but no longer a reason to wake.
        assert_eq!(q.len(), 1);
        assert_eq!(q.next_due(|_| None), None);
        assert_eq!(q.waiting(agent, 1), None, "due: the next pass attempts it");
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_postpones_the_retry_to_its_probe() {
        let q = queue();
        q.observe(&failure(Uuid::new_v4(), Reason::VapiUnavailable));
        let probe = tokio::time::Instant::now() + Duration::from_secs(30);
        let due = q.next_due(|fp| (fp == "fp").then_some(probe));
        assert_eq!(due, Some(probe));
    }

    #[tokio::test(start_paused = true)]
    async fn hands_off_deleted_and_quarantined_agents_leave_the_queue() {
        let q = queue();
        let cases = [
            Outcome::other(
                Uuid::new_v4(),
                1,
                SyncState::Paused,
                Reason::Paused,
                String::new(),
                false,
            ),
            Outcome::other(
                Uuid::new_v4(),
                1,
                SyncState::Drifted,
                Reason::ObserveOnly,
                String::new(),
                false,
            ),
            Outcome::other(
                Uuid::new_v4(),
                1,
                SyncState::Deleted,
                Reason::Deleted,
                String::new(),
                true,
            ),
            Outcome::failed(
                Uuid::new_v4(),
                1,
                Reason::CredentialsRejected,
                String::new(),
                false,
            ),
        ];
        for o in &cases {
            q.observe(&failure(o.agent_id, Reason::VapiUnavailable));
        }
        assert_eq!(q.len(), cases.len());
        for o in &cases {
            q.forget_settled(o);
        }
        assert_eq!(q.len(), 0);
        // A failure that a retry may fix stays.
        let kept = failure(Uuid::new_v4(), Reason::VapiTimeout);
        q.observe(&kept);
        q.forget_settled(&kept);
        assert_eq!(q.len(), 1);
    }
}
