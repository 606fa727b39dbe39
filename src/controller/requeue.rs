//! Per-agent back-off: a failing agent is retried later and later (2 s → 5 min by default, with
//! jitter) without delaying any other agent, and reset by a success. A terminal failure (Vapi
//! refused the spec) waits for the spec to change instead. Failures of the credential or of Vapi
//! as a whole (quarantine, open breaker) are the lane's business and do not count here.
//!
//! Held in memory by the leader: a new leader starts with every agent due, which costs at most
//! one attempt each.

use std::collections::HashMap;
use std::sync::Mutex;

use std::time::Instant;

use uuid::Uuid;

use super::outcome::Outcome;
use crate::resilience::{Backoff, Clock};
use crate::store::SyncState;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    next_at: Instant,
    generation: i64,
    terminal: bool,
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
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// Agents waiting out a back-off or a spec change.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// The earliest time a backed-off agent is due (terminal ones never are).
    pub fn next_due(&self) -> Option<tokio::time::Instant> {
        let at = self
            .entries()
            .values()
            .filter(|e| !e.terminal)
            .map(|e| e.next_at)
            .min()?;
        Some(self.clock.to_tokio(at))
    }
}
