//! The controller loop and its listener as `run` runs them, leading, on a test environment.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vapi_reconciler::controller::{Controller, LoopConfig, LoopStatus, PassSettings, Role, listen};
use vapi_reconciler::metrics::Metrics;
use vapi_reconciler::simulator::{RunningSimulator, Simulator};

pub const BOUND: Duration = Duration::from_secs(30);

pub struct Running {
    pub sim: Simulator,
    pub _serving: RunningSimulator,
    pub vapi_org: String,
    pub controller: Arc<Controller>,
    pub metrics: Metrics,
    pub cancel: CancellationToken,
}

impl Running {
    /// The loop with the tests' defaults (5-minute resync).
    pub async fn start(pool: &PgPool) -> Self {
        Self::start_with(pool, super::loop_config(), super::settings()).await
    }

    /// The loop with this configuration; returns once it leads and its first pass is done.
    pub async fn start_with(pool: &PgPool, config: LoopConfig, settings: PassSettings) -> Self {
        let super::TestEnv {
            sim,
            running,
            vapi_org,
            vapi,
            key,
            lead,
            ..
        } = super::env(pool.clone()).await;
        // The environment's own leadership would keep the loop standing by: hand it over.
        lead.release().await;
        let metrics = Metrics::new("vapi-reconciler").unwrap();
        let controller = Arc::new(
            super::controller_with(
                pool,
                &vapi,
                vapi_reconciler::credentials::PlatformKey::fixed(key),
                config,
                settings,
            )
            .with_metrics(metrics.clone()),
        );
        let cancel = CancellationToken::new();
        let elector = vapi_reconciler::sharding::ShardElector::new(
            (*pool.connect_options()).clone(),
            super::leader_config("loop"),
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
        tokio::time::timeout(
            BOUND,
            controller
                .subscribe()
                .wait_for(|s| s.role == Role::Leader && s.passes >= 1),
        )
        .await
        .unwrap()
        .unwrap();
        Self {
            sim,
            _serving: running,
            vapi_org,
            controller,
            metrics,
            cancel,
        }
    }

    /// `vapi_reconciler_passes_total` of `scope`.
    pub fn passes_total(&self, scope: &str) -> u64 {
        self.metrics.passes_total.with_label_values(&[scope]).get()
    }

    pub fn status(&self) -> LoopStatus {
        self.controller.subscribe().borrow().clone()
    }

    pub fn assistants_of(&self, agent: Uuid) -> Vec<serde_json::Value> {
        self.sim
            .assistants(&self.vapi_org)
            .into_iter()
            .filter(|a| a["metadata"]["agentId"] == agent.to_string())
            .collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
