//! PURE blast-radius guard: how many assistants a plan would destroy, against a limit.
//!
//! Deleting or recreating assistants is what turns a mistake into an outage: an emptied
//! `agents` table makes every assistant an orphan, and a key for the wrong Vapi org makes every
//! recorded assistant look gone. Both show up here as a count far above normal churn, and the
//! controller stops before acting until an operator confirms.

use super::{Action, Mode, Plan, StrayAction};

/// The limit: `max(ceil(max_share × fleet), min_count)` destructive actions per pass.
#[derive(Debug, Clone, Copy)]
pub struct GuardSettings {
    pub max_share: f64,
    pub min_count: u64,
}

/// What a plan would destroy, if enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Impact {
    pub deletes: u64,
    pub recreates: u64,
    /// The fleet the share is taken of: the larger of live agents and managed assistants listed.
    pub fleet: u64,
    pub limit: u64,
}

impl Impact {
    pub fn destructive(&self) -> u64 {
        self.deletes + self.recreates
    }

    pub fn exceeded(&self) -> bool {
        self.destructive() > self.limit
    }

    /// Whether an operator's confirmation of `confirmed` covers this impact.
    pub fn covered_by(&self, confirmed_deletes: u64, confirmed_recreates: u64) -> bool {
        self.deletes <= confirmed_deletes && self.recreates <= confirmed_recreates
    }
}

/// Counts what would actually run: only enforced agents, and nothing at all under dry-run.
pub fn assess(plan: &Plan, dry_run: bool, settings: GuardSettings) -> Impact {
    let mut deletes = 0u64;
    let mut recreates = 0u64;
    let mut live_agents = 0u64;
    for d in &plan.decisions {
        if !matches!(d.action, Action::Delete { .. } | Action::Deleted) {
            live_agents += 1;
        }
        if dry_run || d.mode != Mode::Enforce {
            continue;
        }
        deletes += d.duplicates.len() as u64;
        match &d.action {
            Action::Delete { assistant_ids } => deletes += assistant_ids.len() as u64,
            Action::Recreate { .. } => recreates += 1,
            _ => {}
        }
    }
    if !dry_run {
        deletes += plan
            .strays
            .iter()
            .filter(|s| s.action == StrayAction::Delete)
            .count() as u64;
    }
    impact(
        deletes,
        recreates,
        live_agents.max(plan.managed as u64),
        settings,
    )
}

/// The impact of `deletes` and `recreates` against the limit for a fleet of `fleet` (assistants
/// here; the tools stage counts its tools the same way).
pub(crate) fn impact(deletes: u64, recreates: u64, fleet: u64, settings: GuardSettings) -> Impact {
    let share = (settings.max_share.clamp(0.0, 1.0) * fleet as f64).ceil() as u64;
    Impact {
        deletes,
        recreates,
        fleet,
        limit: share.max(settings.min_count),
    }
}
