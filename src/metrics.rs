//! Every metric the controller exports, defined in one place.
//!
//! Controller health uses the names controller-runtime uses (`controller="assistant"`), so the
//! dashboards and alerts people already have for Kubernetes controllers read this one too; the
//! domain metrics are prefixed `vapi_reconciler_`. No label ever carries an unbounded value (an
//! agent or org id, a URL, an error text): labels are closed sets listed in the README, and a
//! test fails when the README and this registry disagree.

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The controller-runtime name of this controller.
pub const CONTROLLER: &str = "assistant";

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// The leader election's lease name: `leader_election_master_status`'s label.
    pub leader_name: String,
    pub reconcile_total: IntCounterVec,
    pub reconcile_errors_total: IntCounter,
    pub reconcile_time_seconds: Histogram,
    pub max_concurrent_reconciles: IntGauge,
    pub active_workers: IntGauge,
    pub workqueue_depth: IntGauge,
    pub workqueue_retries_total: IntCounter,
    pub leader_election_master_status: IntGaugeVec,
    pub agents: IntGaugeVec,
    pub resources: IntGaugeVec,
    pub drift: IntGaugeVec,
    pub oldest_drift_age_seconds: Gauge,
    pub actions_total: IntCounterVec,
    pub vapi_requests_total: IntCounterVec,
    pub vapi_request_duration_seconds: HistogramVec,
    pub breakers: IntGaugeVec,
    pub credentials_rejected: IntGauge,
    pub vapi_rate: GaugeVec,
    pub voice_normalizations_total: IntCounterVec,
    pub unreadable_assistants_total: IntCounter,
    pub last_pass_timestamp_seconds: Gauge,
    pub last_pass_duration_seconds: Gauge,
    pub guard_blocked: IntGauge,
    pub passes_total: IntCounterVec,
    pub shards: IntGauge,
    pub shards_owned: IntGauge,
    pub lease_proof_age_seconds: Gauge,
}

/// States, drift kinds and breaker states, pre-created so a zero is a zero, not an absence.
pub const AGENT_STATES: &[&str] = &[
    "pending", "synced", "failed", "drifted", "paused", "deleted",
];
/// The kinds the controller converges, the bounded `kind` label of `vapi_reconciler_resources`.
pub const RESOURCE_KINDS: &[&str] = &["assistant", "tool", "phone_number"];
/// Every state a resource of any kind can be in (`blocked`: a deleted tool still called).
pub const RESOURCE_STATES: &[&str] = &[
    "pending", "synced", "failed", "drifted", "paused", "deleted", "blocked",
];
pub const DRIFT_KINDS: &[&str] = &["missing", "diverged", "orphaned", "duplicate"];
pub const BREAKER_STATES: &[&str] = &["closed", "open", "half-open"];
/// The kinds of call each lane paces apart, and the statistics over lanes the rate gauge shows.
pub const RATE_KINDS: &[&str] = &["read", "write"];
pub const RATE_STATS: &[&str] = &["min", "max"];
pub const RECONCILE_RESULTS: &[&str] = &["success", "error", "requeue", "requeue_after"];
/// A full pass looks at everything owned; a focused one at the agents a notification named.
pub const PASS_SCOPES: &[&str] = &["full", "focused"];

impl Metrics {
    // One registration call per metric keeps the list readable; a failure here is a programming
    // error (a duplicate name) that the tests catch, so it is reported, not hidden.
    pub fn new(leader_election_name: &str) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let c = |name: &str, help: &str| Opts::new(name, help);
        let with_controller = |o: Opts| o.const_label("controller", CONTROLLER);
        let with_queue = |o: Opts| o.const_label("name", CONTROLLER);
        let m = Self {
            reconcile_total: IntCounterVec::new(
                with_controller(c(
                    "controller_runtime_reconcile_total",
                    "Agent reconciles by result: success, error, requeue (waiting on Vapi or a create), requeue_after (back-off).",
                )),
                &["result"],
            )?,
            reconcile_errors_total: IntCounter::with_opts(with_controller(c(
                "controller_runtime_reconcile_errors_total",
                "Agent reconciles that ended failed.",
            )))?,
            reconcile_time_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "controller_runtime_reconcile_time_seconds",
                    "Time to reconcile one agent (its Vapi calls included).",
                )
                .const_label("controller", CONTROLLER)
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )?,
            max_concurrent_reconciles: IntGauge::with_opts(with_controller(c(
                "controller_runtime_max_concurrent_reconciles",
                "Agents reconciled at once at most (--concurrency).",
            )))?,
            active_workers: IntGauge::with_opts(with_controller(c(
                "controller_runtime_active_workers",
                "Agents being reconciled right now.",
            )))?,
            workqueue_depth: IntGauge::with_opts(with_queue(c(
                "workqueue_depth",
                "Agents waiting out a back-off before their next attempt.",
            )))?,
            workqueue_retries_total: IntCounter::with_opts(with_queue(c(
                "workqueue_retries_total",
                "Agents put into back-off after a failure.",
            )))?,
            leader_election_master_status: IntGaugeVec::new(
                c(
                    "leader_election_master_status",
                    "1 while this replica writes for at least one shard (with one shard: leads), 0 while it stands by.",
                ),
                &["name"],
            )?,
            agents: IntGaugeVec::new(
                c(
                    "vapi_reconciler_agents",
                    "Agents by sync state after the last pass.",
                ),
                &["state"],
            )?,
            resources: IntGaugeVec::new(
                c(
                    "vapi_reconciler_resources",
                    "Resources by kind (assistant, tool, phone_number) and sync state after the last full pass.",
                ),
                &["kind", "state"],
            )?,
            drift: IntGaugeVec::new(
                c(
                    "vapi_reconciler_drift",
                    "Differences found by the last pass: missing assistants, diverged assistants, orphaned and duplicate assistants.",
                ),
                &["kind"],
            )?,
            oldest_drift_age_seconds: Gauge::with_opts(c(
                "vapi_reconciler_oldest_drift_age_seconds",
                "Age of the oldest difference not yet resolved (0 when everything matches).",
            ))?,
            actions_total: IntCounterVec::new(
                c(
                    "vapi_reconciler_actions_total",
                    "Vapi writes and adoptions by action (create, recreate, patch, delete, adopt) and outcome (ok, failed, unknown, gone).",
                ),
                &["action", "outcome"],
            )?,
            vapi_requests_total: IntCounterVec::new(
                c(
                    "vapi_reconciler_vapi_requests_total",
                    "Vapi API requests by method, route template and HTTP status (\"error\" when no answer came).",
                ),
                &["method", "route", "status"],
            )?,
            vapi_request_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "vapi_reconciler_vapi_request_duration_seconds",
                    "Vapi API request duration by method and route template.",
                )
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
                &["method", "route"],
            )?,
            breakers: IntGaugeVec::new(
                c(
                    "vapi_reconciler_breakers",
                    "Keys in use by circuit-breaker state.",
                ),
                &["state"],
            )?,
            credentials_rejected: IntGauge::with_opts(c(
                "vapi_reconciler_credentials_rejected",
                "Keys in use that Vapi rejected (401/403) and that are quarantined.",
            ))?,
            vapi_rate: GaugeVec::new(
                c(
                    "vapi_reconciler_vapi_rate",
                    "Current calls per second a key's lane allows, by kind (read, write): the lowest (min) and highest (max) over the keys in use, after the last pass; 0 while none is.",
                ),
                &["kind", "stat"],
            )?,
            voice_normalizations_total: IntCounterVec::new(
                c(
                    "vapi_reconciler_voice_normalizations_total",
                    "Voice rewrites in writes by rule (retired-voice, case, azure-name, provider-alias, removed-provider, fallback).",
                ),
                &["rule"],
            )?,
            unreadable_assistants_total: IntCounter::with_opts(c(
                "vapi_reconciler_unreadable_assistants_total",
                "Listed assistants the controller could not read (nested too deep, unparseable, no id), counted per listing page read; each is left alone and its agent failed.",
            ))?,
            last_pass_timestamp_seconds: Gauge::with_opts(c(
                "vapi_reconciler_last_pass_timestamp_seconds",
                "Unix time the last complete pass ended.",
            ))?,
            last_pass_duration_seconds: Gauge::with_opts(c(
                "vapi_reconciler_last_pass_duration_seconds",
                "Duration of the last complete pass.",
            ))?,
            passes_total: IntCounterVec::new(
                c(
                    "vapi_reconciler_passes_total",
                    "Passes finished, by scope: full (everything owned) or focused (agents a notification named).",
                ),
                &["scope"],
            )?,
            shards: IntGauge::with_opts(c(
                "vapi_reconciler_shards",
                "How many shards the organizations are divided into (--shards).",
            ))?,
            shards_owned: IntGauge::with_opts(c(
                "vapi_reconciler_shards_owned",
                "Shards this replica holds and writes for.",
            ))?,
            lease_proof_age_seconds: Gauge::with_opts(c(
                "vapi_reconciler_lease_proof_age_seconds",
                "Age of the oldest shard lease's last proof by any replica, by Postgres's clock, as this replica last read it plus the time since (+Inf for a lease never held).",
            ))?,
            guard_blocked: IntGauge::with_opts(c(
                "vapi_reconciler_guard_blocked",
                "1 while the last pass was stopped by the blast-radius guard.",
            ))?,
            registry,
            leader_name: leader_election_name.to_owned(),
        };
        m.register()?;
        m.leader_election_master_status
            .with_label_values(&[leader_election_name])
            .set(0);
        for s in AGENT_STATES {
            m.agents.with_label_values(&[s]).set(0);
        }
        for k in RESOURCE_KINDS {
            for s in RESOURCE_STATES {
                m.resources.with_label_values(&[k, s]).set(0);
            }
        }
        for k in DRIFT_KINDS {
            m.drift.with_label_values(&[k]).set(0);
        }
        for s in BREAKER_STATES {
            m.breakers.with_label_values(&[s]).set(0);
        }
        for k in RATE_KINDS {
            for s in RATE_STATS {
                m.vapi_rate.with_label_values(&[k, s]).set(0.0);
            }
        }
        for r in RECONCILE_RESULTS {
            m.reconcile_total.with_label_values(&[r]);
        }
        for s in PASS_SCOPES {
            m.passes_total.with_label_values(&[s]);
        }
        Ok(m)
    }

    fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.reconcile_total.clone()),
            Box::new(self.reconcile_errors_total.clone()),
            Box::new(self.reconcile_time_seconds.clone()),
            Box::new(self.max_concurrent_reconciles.clone()),
            Box::new(self.active_workers.clone()),
            Box::new(self.workqueue_depth.clone()),
            Box::new(self.workqueue_retries_total.clone()),
            Box::new(self.leader_election_master_status.clone()),
            Box::new(self.agents.clone()),
            Box::new(self.resources.clone()),
            Box::new(self.drift.clone()),
            Box::new(self.oldest_drift_age_seconds.clone()),
            Box::new(self.actions_total.clone()),
            Box::new(self.vapi_requests_total.clone()),
            Box::new(self.vapi_request_duration_seconds.clone()),
            Box::new(self.breakers.clone()),
            Box::new(self.credentials_rejected.clone()),
            Box::new(self.vapi_rate.clone()),
            Box::new(self.voice_normalizations_total.clone()),
            Box::new(self.unreadable_assistants_total.clone()),
            Box::new(self.last_pass_timestamp_seconds.clone()),
            Box::new(self.last_pass_duration_seconds.clone()),
            Box::new(self.guard_blocked.clone()),
            Box::new(self.passes_total.clone()),
            Box::new(self.shards.clone()),
            Box::new(self.shards_owned.clone()),
            Box::new(self.lease_proof_age_seconds.clone()),
        ]
    }

    fn register(&self) -> Result<(), prometheus::Error> {
        for c in self.collectors() {
            self.registry.register(c)?;
        }
        Ok(())
    }

    /// The names of every metric this registry exports, children or not.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .collectors()
            .iter()
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect();
        names.sort();
        names
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format; an error would leave it empty.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// One Vapi request's outcome; `status` is `None` when no answer came.
    pub fn vapi_request(&self, method: &str, route: &str, status: Option<u16>, seconds: f64) {
        let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
        self.vapi_requests_total
            .with_label_values(&[method, route, &status])
            .inc();
        self.vapi_request_duration_seconds
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's metrics table lists exactly the metrics this registry exports.
    #[test]
    fn readme_and_registry_agree() {
        let metrics = Metrics::new("vapi-reconciler").expect("registry");
        let readme = include_str!("../README.md");
        let section = readme
            .split("## Metrics")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("a Metrics section");
        let mut documented: Vec<String> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .map(|name| name.split('{').next().unwrap_or(name).to_owned())
            .collect();
        documented.sort();
        documented.dedup();
        assert_eq!(documented, metrics.names());
        // The list the alert rules and the dashboard are checked against (deploy/check).
        let mut deployed: Vec<String> = include_str!("../deploy/metrics.txt")
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        deployed.sort();
        assert_eq!(deployed, metrics.names());
    }

    #[test]
    fn labels_are_closed_sets_and_render_as_text() {
        let m = Metrics::new("vapi-reconciler").expect("registry");
        m.vapi_request("GET", "/assistant", Some(200), 0.01);
        m.vapi_request("POST", "/assistant", None, 5.0);
        let text = m.render();
        assert!(text.contains(
            "vapi_reconciler_vapi_requests_total{method=\"POST\",route=\"/assistant\",status=\"error\"} 1"
        ));
        assert!(text.contains("leader_election_master_status{name=\"vapi-reconciler\"} 0"));
        assert!(text.contains("vapi_reconciler_agents{state=\"failed\"} 0"));
        assert!(
            text.contains("controller_runtime_max_concurrent_reconciles{controller=\"assistant\"}")
        );
    }
}
