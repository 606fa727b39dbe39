//! The controller loop: a pass at start, then one every resync interval (with jitter), until
//! shutdown.
//!
//! A pass takes no input: it always looks at the whole desired state, so whatever wakes the loop
//! only changes *when* work happens, never *what* is looked at. Shutdown stops new writes from
//! starting, lets in-flight calls finish and records their outcomes, then returns.

mod outcome;
mod pass;

use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use outcome::{Outcome, Reason};
pub use pass::{PassContext, PassError, PassReport, run_pass};

use crate::credentials::ApiKey;
use crate::store::Store;
use crate::vapi::VapiClient;

#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub resync_interval: Duration,
    /// Each wait is the interval ± this fraction, so replicas and restarts do not stay in step.
    pub jitter: f64,
    pub concurrency: usize,
}

/// What the loop last did, for the HTTP layer and the demo.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoopStatus {
    pub passes: u64,
    pub last_pass: Option<PassReport>,
    pub last_error: Option<String>,
    pub last_pass_finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

pub struct Controller {
    store: Store,
    vapi: VapiClient,
    key: ApiKey,
    config: LoopConfig,
    status: watch::Sender<LoopStatus>,
}

impl Controller {
    pub fn new(store: Store, vapi: VapiClient, key: ApiKey, config: LoopConfig) -> Self {
        Self {
            store,
            vapi,
            key,
            config,
            status: watch::Sender::new(LoopStatus::default()),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<LoopStatus> {
        self.status.subscribe()
    }

    /// One pass; `cancel` stops it from starting further writes.
    pub async fn pass(&self, cancel: &CancellationToken) -> Result<PassReport, PassError> {
        let ctx = PassContext {
            store: &self.store,
            vapi: &self.vapi,
            key: &self.key,
            concurrency: self.config.concurrency,
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
                failed = r.failed,
                skipped = r.skipped,
                status_writes = r.status_writes,
                duration_ms = r.duration.as_millis() as u64,
                "pass complete"
            ),
            Err(e) => tracing::error!(error = %e, "pass failed"),
        }
        result
    }

    /// Runs passes until `cancel` fires.
    pub async fn run(&self, cancel: CancellationToken) {
        tracing::info!(
            resync_interval = %humantime::format_duration(self.config.resync_interval),
            concurrency = self.config.concurrency,
            key_fingerprint = self.key.fingerprint(),
            "controller started"
        );
        while !cancel.is_cancelled() {
            // A failed pass is already recorded and logged; the next one is the retry.
            let _ = self.pass(&cancel).await;
            let wait = jittered(self.config.resync_interval, self.config.jitter);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {}
            }
        }
        tracing::info!("controller stopped");
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
