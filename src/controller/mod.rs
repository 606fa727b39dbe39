//! The controller loop: stand by until this replica leads, then a pass at once and one every
//! resync interval (with jitter), until shutdown or until leadership can no longer be proven.
//!
//! A pass takes no input: it always looks at the whole desired state, so whatever wakes the loop
//! only changes *when* work happens, never *what* is looked at. Shutdown stops new writes from
//! starting, lets in-flight calls finish and records their outcomes, then returns.

mod execute;
mod outcome;
mod pass;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use execute::Gate;
pub use outcome::{Outcome, Reason};
pub use pass::{Blocked, PassContext, PassError, PassReport, PassSettings, run_pass};

use crate::credentials::ApiKey;
use crate::leader::{Elector, Leadership};
use crate::store::Store;
use crate::vapi::VapiClient;

#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub resync_interval: Duration,
    /// Each wait is the interval ± this fraction, so replicas and restarts do not stay in step.
    pub jitter: f64,
    /// Journal entries older than this are deleted (checked at most hourly).
    pub journal_retention: Duration,
}

/// Whether this replica reconciles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Standby,
    Leader,
}

/// What the loop last did, for the HTTP layer and the demo.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoopStatus {
    pub role: Role,
    /// The fencing epoch while leading.
    pub epoch: Option<i64>,
    pub passes: u64,
    pub last_pass: Option<PassReport>,
    pub last_error: Option<String>,
    pub last_pass_finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Gate for Leadership {
    fn may_write(&self) -> bool {
        Leadership::may_write(self)
    }
}

/// How often the journal's retention is applied.
const JOURNAL_TRIM_EVERY: Duration = Duration::from_secs(3600);

pub struct Controller {
    store: Store,
    vapi: VapiClient,
    key: ApiKey,
    config: LoopConfig,
    settings: PassSettings,
    holder: String,
    last_trim: Mutex<Option<Instant>>,
    status: watch::Sender<LoopStatus>,
}

impl Controller {
    pub fn new(
        store: Store,
        vapi: VapiClient,
        key: ApiKey,
        config: LoopConfig,
        settings: PassSettings,
        holder: String,
    ) -> Self {
        Self {
            store,
            vapi,
            key,
            config,
            settings,
            holder,
            last_trim: Mutex::new(None),
            status: watch::Sender::new(LoopStatus::default()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<LoopStatus> {
        self.status.subscribe()
    }

    /// One pass under `lead`; `cancel` stops it from starting further writes.
    pub async fn pass(
        &self,
        lead: &Leadership,
        cancel: &CancellationToken,
    ) -> Result<PassReport, PassError> {
        let fence = lead.fence();
        let ctx = PassContext {
            store: &self.store,
            vapi: &self.vapi,
            key: &self.key,
            settings: &self.settings,
            fence: &fence,
            gate: lead,
            holder: &self.holder,
            cancel,
        };
        let result = run_pass(&ctx).await;
        self.status.send_modify(|s| {
            s.passes += 1;
            s.last_pass_finished_at = Some(chrono::Utc::now());
            match &result {
                Ok(report) => {
                    s.last_pass = Some(report.clone());
                    s.last_error = None;
                }
                Err(e) => s.last_error = Some(e.to_string()),
            }
        });
        match &result {
            Ok(r) => tracing::info!(
                agents = r.agents,
                listed = r.assistants_listed,
                in_sync = r.in_sync,
                created = r.created,
                patched = r.patched,
                recreated = r.recreated,
                adopted = r.adopted,
                deleted = r.deleted,
                duplicates_deleted = r.duplicates_deleted,
                orphans = r.orphans,
                orphans_deleted = r.orphans_deleted,
                awaiting_create = r.awaiting_create,
                not_enforced = r.not_enforced,
                failed = r.failed,
                skipped = r.skipped,
                blocked = r.blocked.is_some(),
                status_writes = r.status_writes,
                duration_ms = r.duration.as_millis() as u64,
                "pass complete"
            ),
            Err(e) => tracing::error!(error = %e, kind = e.kind(), "pass failed"),
        }
        self.trim_journal().await;
        result
    }

    async fn trim_journal(&self) {
        let due = {
            let mut last = self.last_trim.lock().unwrap_or_else(|p| p.into_inner());
            let due = last.is_none_or(|t| t.elapsed() >= JOURNAL_TRIM_EVERY);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            match self.store.trim_journal(self.config.journal_retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "trimmed the journal to its retention"),
                Err(e) => tracing::warn!(error = %e, "could not trim the journal"),
            }
        }
    }

    /// Stands by until this replica leads, reconciles while it can prove it leads, and hands
    /// leadership over when `cancel` fires.
    pub async fn run(&self, elector: &Elector, cancel: CancellationToken) {
        tracing::info!(
            resync_interval = %humantime::format_duration(self.config.resync_interval),
            concurrency = self.settings.concurrency,
            dry_run = self.settings.dry_run,
            key_fingerprint = self.key.fingerprint(),
            holder = %self.holder,
            "controller started; standing by for leadership"
        );
        while !cancel.is_cancelled() {
            let lead = match elector.acquire(&cancel).await {
                Ok(Some(lead)) => lead,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, kind = e.kind(), "leader election failed");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = cancel.cancelled() => break,
                    }
                }
            };
            self.lead(&lead, &cancel).await;
            self.status.send_modify(|s| {
                s.role = Role::Standby;
                s.epoch = None;
            });
            if cancel.is_cancelled() {
                lead.release().await;
                tracing::info!("leadership released");
            } else {
                tracing::warn!("leadership lost; standing by");
            }
        }
        tracing::info!("controller stopped");
    }

    /// Passes until shutdown or until leadership can no longer be proven.
    async fn lead(&self, lead: &Leadership, cancel: &CancellationToken) {
        // A pass stops starting writes on either signal.
        let stop = cancel.child_token();
        let lost = lead.lost();
        let _link = AbortOnDrop(tokio::spawn({
            let stop = stop.clone();
            async move {
                lost.cancelled().await;
                stop.cancel();
            }
        }));
        if !lead.ready(&stop).await {
            return;
        }
        self.status.send_modify(|s| {
            s.role = Role::Leader;
            s.epoch = Some(lead.epoch());
        });
        tracing::info!(epoch = lead.epoch(), "leading: reconciling");
        while !stop.is_cancelled() {
            // A failed pass is already recorded and logged; the next one is the retry.
            let _ = self.pass(lead, &stop).await;
            let wait = jittered(self.config.resync_interval, self.config.jitter);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => {}
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn jittered(interval: Duration, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    let factor = 1.0 + rand::rng().random_range(-jitter..=jitter);
    interval.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_bounds() {
        let base = Duration::from_secs(300);
        for _ in 0..1000 {
            let d = jittered(base, 0.1);
            assert!(
                d >= Duration::from_secs(270) && d <= Duration::from_secs(330),
                "{d:?}"
            );
        }
        assert_eq!(jittered(base, 0.0), base);
    }
}
