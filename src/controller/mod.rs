//! The controller loop: stand by until this replica owns shards (one shard: leads), then a pass
//! at once and one every resync interval (with jitter), over the shards it owns at that moment.
//!
//! A full pass takes no input but its shards: it always looks at their whole desired state. A
//! notification that names a few saved agents wakes a *focused* pass over just those, planned
//! against what their statuses record as applied (no listing: a save costs one PATCH); agents it
//! cannot vouch for, and a focused PATCH that finds its assistant gone, ask for a full pass right
//! after. Everything else that wakes the loop (the resync timer, a reconnect, an HTTP trigger, a
//! changed key, a shard taken) asks for a full pass, which covers whatever was asked before it
//! began. A pass
//! stops starting writes when shutdown begins or when any of its leases is lost, lets in-flight
//! calls finish and records their outcomes. Shards are handed over only between passes.

mod activator;
mod apply;
mod intents;
mod lane;
pub mod listen;
mod numbers;
mod outcome;
#[cfg(test)]
mod outcome_tests;
mod pass;
mod preview;
mod record;
mod requeue;
mod schedule;
mod survey;
mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use uuid::Uuid;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use activator::Activator;
pub use apply::Gate;
pub use lane::{CallError, Lane, LaneConfig, LaneStatus, Lanes, PacingStatus, Rejection};
pub use outcome::{Outcome, Reason};
pub use pass::{Blocked, PassContext, PassError, PassReport, PassSettings, Scope, run_pass};
pub use preview::{Change, PlanFilter, PlanView};

use crate::credentials::{LoadedKey, PlatformKey};
use crate::leader::{Fence, Leadership};
use crate::metrics::{self, Metrics};
use crate::resilience::Backoff;
use crate::sharding::{Owned, Ownership, ShardElector};
use crate::store::{CredentialHealth, Store, SyncState};
use crate::vapi::VapiClient;
use crate::vault::Keyring;
use requeue::Requeue;
use schedule::{Schedule, Wake};

/// The Vapi kind the pipeline's stages converge; the client and the lanes take the kind as data.
pub(crate) const ASSISTANT: crate::vapi::Resource = crate::vapi::Resource::Assistant;

#[derive(Debug, Clone)]
pub struct LoopConfig {
    pub resync_interval: Duration,
    /// Each wait is the interval ± this fraction, so replicas and restarts do not stay in step.
    pub jitter: f64,
    /// Journal entries older than this are deleted (checked at most hourly).
    pub journal_retention: Duration,
    pub lanes: LaneConfig,
    /// Spacing of a failing agent's retries.
    pub agent_backoff: Backoff,
}

/// Whether this replica reconciles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Standby,
    Leader,
    /// It led, and can no longer prove it holds any lease, nor that it holds none: its path to
    /// Postgres hangs or it was frozen. It writes nothing.
    Unproven,
}

/// One shard lease this replica holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ShardLease {
    pub shard: u32,
    pub lease: String,
    pub epoch: i64,
    /// False while it waits out the takeover delay after a crashed holder.
    pub writing: bool,
}

/// What the loop last did, for the HTTP layer and the demo.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoopStatus {
    /// Leader while this replica owns at least one shard that may write.
    pub role: Role,
    /// The fencing epoch while leading with a single shard.
    pub epoch: Option<i64>,
    /// How many shards the organizations are divided into.
    pub shard_count: u32,
    /// The shards this replica holds.
    pub shards: Vec<ShardLease>,
    /// Why this replica holds no shard although it could, if so.
    pub shard_note: Option<String>,
    pub passes: u64,
    /// Passes begun; a trigger's pass is the first to begin after it.
    pub passes_started: u64,
    /// Focused passes finished (over agents a notification named; not in `passes`).
    pub focused_passes: u64,
    pub last_pass: Option<PassReport>,
    pub last_error: Option<String>,
    pub last_pass_finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the last focused pass finished, whatever it found.
    pub last_focused_pass_finished_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The platform key in use (fingerprint, source, load time).
    pub platform_key: Option<LoadedKey>,
    /// Breaker and quarantine state of every key in use, after the last pass.
    pub credentials: Vec<LaneStatus>,
    /// The leases `role` rests on: those written for while leading, those lost unproven while
    /// unproven. [`LoopStatus::role_now`] reads them when asked, not when last published.
    #[serde(skip)]
    pub proofs: Vec<crate::leader::LeaseGuard>,
    /// The last proof of a lease lost without release, while `role` is unproven.
    #[serde(skip)]
    pub unproven_since: Option<tokio::time::Instant>,
}

impl LoopStatus {
    /// The role as of now, and the age of the last proof when it is not proven: leader only
    /// while every lease written for was proven within its lease.
    pub fn role_now(&self) -> (Role, Option<f64>) {
        let age = |at: tokio::time::Instant| at.elapsed().as_secs_f64();
        match self.role {
            Role::Leader if self.proofs.iter().all(crate::leader::LeaseGuard::may_write) => {
                (Role::Leader, None)
            }
            Role::Leader => {
                let oldest = self
                    .proofs
                    .iter()
                    .filter(|g| !g.may_write())
                    .map(crate::leader::LeaseGuard::proven_at)
                    .min();
                (Role::Unproven, oldest.map(age))
            }
            Role::Unproven => (Role::Unproven, self.unproven_since.map(age)),
            Role::Standby => (Role::Standby, None),
        }
    }
}

impl Gate for Leadership {
    fn may_write(&self) -> bool {
        Leadership::may_write(self)
    }
}

impl Gate for Ownership {
    fn may_write(&self) -> bool {
        Ownership::may_write(self)
    }
}

/// Unchanged key state is published again at least this often (and resets requested without a
/// notification are applied within it).
const HEALTH_REFRESH: Duration = Duration::from_secs(60);

/// The parts of a key's state whose change is worth a write.
#[derive(Debug, Clone, PartialEq)]
struct HealthKey {
    fingerprint: String,
    breaker: crate::resilience::BreakerState,
    failures: u32,
    rejected_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl HealthKey {
    fn of(l: &LaneStatus) -> Self {
        Self {
            fingerprint: l.fingerprint.clone(),
            breaker: l.breaker,
            failures: l.consecutive_failures,
            rejected_at: l.rejected.as_ref().map(|r| r.at),
        }
    }
}

/// How often the journal's retention is applied.
const JOURNAL_TRIM_EVERY: Duration = Duration::from_secs(3600);

pub struct Controller {
    store: Store,
    platform: PlatformKey,
    lanes: Lanes,
    /// At most `concurrency` Vapi writes in flight across every pass of this controller.
    requests: tokio::sync::Semaphore,
    requeue: Requeue,
    config: LoopConfig,
    settings: PassSettings,
    holder: String,
    activator: Activator,
    /// Opens organizations' own keys; `None` when no encryption keys are configured.
    keyring: Option<Keyring>,
    metrics: Option<Metrics>,
    /// What was last published to `credential_health`, and when: unchanged state is written
    /// again only now and then, so a steady pass costs no write.
    health_written: Mutex<Option<(Vec<HealthKey>, std::time::Instant)>>,
    /// An operator asked for a breaker reset: publish (and read the request) on the next pass.
    reset_requested: std::sync::atomic::AtomicBool,
    /// When each agent's current difference was first seen, for the oldest-drift age.
    drift_since: Mutex<HashMap<Uuid, std::time::Instant>>,
    last_trim: Mutex<Option<Instant>>,
    /// Leases (name, epoch) whose earlier epochs' pending journal rows are resolved already.
    resolved: Mutex<std::collections::HashSet<(String, i64)>>,
    status: watch::Sender<LoopStatus>,
}

impl Controller {
    pub fn new(
        store: Store,
        vapi: VapiClient,
        platform: PlatformKey,
        config: LoopConfig,
        settings: PassSettings,
        holder: String,
    ) -> Self {
        Self {
            store,
            lanes: Lanes::new(vapi, config.lanes.clone()),
            requests: tokio::sync::Semaphore::new(settings.concurrency.max(1)),
            requeue: Requeue::new(config.agent_backoff, config.lanes.clock.clone()),
            platform,
            config,
            settings,
            holder,
            activator: Activator::new(),
            keyring: None,
            metrics: None,
            drift_since: Mutex::new(HashMap::new()),
            health_written: Mutex::new(None),
            reset_requested: std::sync::atomic::AtomicBool::new(false),
            last_trim: Mutex::new(None),
            resolved: Mutex::new(std::collections::HashSet::new()),
            status: watch::Sender::new(LoopStatus::default()),
        }
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        metrics
            .max_concurrent_reconciles
            .set(i64::try_from(self.settings.concurrency).unwrap_or(i64::MAX));
        self.metrics = Some(metrics);
        self
    }

    pub fn with_keyring(mut self, keyring: Option<Keyring>) -> Self {
        self.keyring = keyring;
        self
    }

    /// Wakes the loop for a pass now (coalescing with any pass already asked for).
    pub fn activator(&self) -> Activator {
        self.activator.clone()
    }

    pub fn platform_key(&self) -> &PlatformKey {
        &self.platform
    }

    pub fn subscribe(&self) -> watch::Receiver<LoopStatus> {
        self.status.subscribe()
    }

    fn context<'a>(
        &'a self,
        platform: &'a LoadedKey,
        org_keys: &'a HashMap<Uuid, Result<crate::credentials::ApiKey, String>>,
        owner: &'a Ownership,
        gate: &'a (dyn Gate + Sync),
        cancel: &'a CancellationToken,
    ) -> PassContext<'a> {
        PassContext {
            store: &self.store,
            lanes: &self.lanes,
            requests: &self.requests,
            platform,
            org_keys,
            requeue: &self.requeue,
            metrics: self.metrics.as_ref(),
            settings: &self.settings,
            owner,
            gate,
            holder: &self.holder,
            cancel,
        }
    }

    /// One pass under `lead` (a single lease: every organization); `cancel` stops it from
    /// starting further writes.
    pub async fn pass(
        &self,
        lead: &Leadership,
        cancel: &CancellationToken,
    ) -> Result<PassReport, PassError> {
        self.pass_owned(&Ownership::single(lead), cancel).await
    }

    /// One pass over the shards of `owner`.
    pub async fn pass_owned(
        &self,
        owner: &Ownership,
        cancel: &CancellationToken,
    ) -> Result<PassReport, PassError> {
        let fences = owner.fences();
        tracing::debug!("full pass starting");
        self.status.send_modify(|s| s.passes_started += 1);
        let platform = self.platform.current();
        // Read at every pass: a key set or changed with `org-key set` is used on the next one.
        let org_keys = match self.store.load_org_keys(self.keyring.as_ref()).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!(error = %e, kind = e.kind(), "pass failed: cannot read organizations' keys");
                return Err(e.into());
            }
        };
        self.resolve_deposed(&fences).await;
        let ctx = self.context(&platform, &org_keys, owner, owner, cancel);
        let result = run_pass(&ctx, Scope::All).await;
        self.count_pass("full");
        let credentials = self.lanes.statuses();
        self.export(result.as_ref().ok(), &credentials);
        if self.health_due(&credentials) {
            self.record_health(&fences, &credentials).await;
        }
        self.status.send_modify(|s| {
            s.platform_key = Some(platform.clone());
            s.credentials = credentials;
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
                memos_written = r.memos_written,
                texts_read_again = r.texts_read_again,
                assistants_remembered = r.assistants_remembered,
                assistants_read_again = r.assistants_read_again,
                duration_ms = r.duration.as_millis() as u64,
                "pass complete"
            ),
            Err(e) => tracing::error!(error = %e, kind = e.kind(), "pass failed"),
        }
        self.trim_journal().await;
        result
    }

    /// A focused pass over `agents` of the shards of `owner` (see [`Scope::Agents`]). It records
    /// their outcomes but leaves the fleet's gauges and `last_pass` to full passes. Returns
    /// whether a full pass is needed at once: for agents it left alone, an assistant found
    /// gone, or an error (the full pass says what it is).
    pub async fn pass_focused(
        &self,
        owner: &Ownership,
        agents: &[Uuid],
        cancel: &CancellationToken,
    ) -> bool {
        let platform = self.platform.current();
        let report = match self.store.load_org_keys(self.keyring.as_ref()).await {
            Ok(org_keys) => {
                let ctx = self.context(&platform, &org_keys, owner, owner, cancel);
                run_pass(&ctx, Scope::Agents(agents)).await
            }
            Err(e) => Err(e.into()),
        };
        self.count_pass("focused");
        self.status.send_modify(|s| {
            s.focused_passes += 1;
            s.last_focused_pass_finished_at = Some(chrono::Utc::now());
        });
        let r = match report {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, kind = e.kind(), "focused pass failed; a full pass follows");
                return true;
            }
        };
        tracing::info!(
            named = agents.len(),
            in_sync = r.in_sync,
            patched = r.patched,
            failed = r.failed,
            deferred = r.deferred,
            left_to_full_pass = r.left_to_full_pass,
            duration_ms = r.duration.as_millis() as u64,
            "focused pass complete"
        );
        // A 404 (the assistant is gone) and a write whose answer still differed both leave the
        // agent pending: only a full pass's listing can say what is there.
        let gone = r.states.values().any(|s| *s == SyncState::Pending);
        r.left_to_full_pass > 0 || gone || r.unverified > 0
    }

    /// Once per lease epoch taken: settles the journal rows earlier holders left `pending` (a
    /// crash mid-call). Creates among them wait for their intent (the plan adopts or replaces
    /// it); patches and deletes become `unknown`.
    async fn resolve_deposed(&self, fences: &[Fence]) {
        let new: Vec<Fence> = {
            let done = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
            fences
                .iter()
                .filter(|f| !done.contains(&(f.name.clone(), f.epoch)))
                .cloned()
                .collect()
        };
        if new.is_empty() {
            return;
        }
        match self.store.resolve_deposed_writes(&new).await {
            Ok(n) => {
                if n > 0 {
                    tracing::warn!(
                        rows = n,
                        "settled journal rows an earlier leader left pending"
                    );
                }
                let mut done = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
                done.extend(new.into_iter().map(|f| (f.name, f.epoch)));
            }
            Err(e) => {
                tracing::warn!(error = %e, kind = e.kind(), "could not settle pending journal rows; tried again next pass")
            }
        }
    }

    fn count_pass(&self, scope: &str) {
        if let Some(m) = &self.metrics {
            m.passes_total.with_label_values(&[scope]).inc();
        }
    }

    /// Sets the pass-level gauges.
    fn export(&self, report: Option<&PassReport>, lanes: &[LaneStatus]) {
        let Some(m) = &self.metrics else { return };
        for s in metrics::BREAKER_STATES {
            let n = lanes.iter().filter(|l| l.breaker.as_str() == *s).count();
            m.breakers
                .with_label_values(&[s])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        for (kind, rate) in [
            (
                "read",
                (|l: &LaneStatus| l.pacing.read) as fn(&LaneStatus) -> f64,
            ),
            ("write", |l: &LaneStatus| l.pacing.write),
        ] {
            let rates = lanes.iter().map(rate);
            let (min, max) = rates
                .fold(None, |acc: Option<(f64, f64)>, r| {
                    Some(acc.map_or((r, r), |(lo, hi)| (lo.min(r), hi.max(r))))
                })
                .unwrap_or((0.0, 0.0));
            m.vapi_rate.with_label_values(&[kind, "min"]).set(min);
            m.vapi_rate.with_label_values(&[kind, "max"]).set(max);
        }
        let rejected = lanes.iter().filter(|l| l.rejected.is_some()).count();
        m.credentials_rejected
            .set(i64::try_from(rejected).unwrap_or(i64::MAX));
        m.workqueue_depth
            .set(i64::try_from(self.requeue.len()).unwrap_or(i64::MAX));
        let Some(r) = report else { return };
        m.guard_blocked.set(i64::from(r.blocked.is_some()));
        if r.blocked.is_some() {
            // A blocked pass acted on nothing: the rest describes the last pass that did.
            return;
        }
        for s in metrics::AGENT_STATES {
            let n = r.states.values().filter(|v| v.as_str() == *s).count();
            m.agents
                .with_label_values(&[s])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if r.full {
            for (kind, states) in [
                ("assistant", &r.states),
                ("tool", &r.tools.states),
                ("phone_number", &r.phone_numbers.states),
            ] {
                for s in metrics::RESOURCE_STATES {
                    let n = states.values().filter(|v| v.as_str() == *s).count();
                    m.resources
                        .with_label_values(&[kind, s])
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                }
            }
        }
        for (kind, n) in [
            ("missing", r.missing),
            ("diverged", r.diverged),
            ("orphaned", r.orphans),
            ("duplicate", r.duplicates),
        ] {
            m.drift
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let now = std::time::Instant::now();
        let oldest = {
            let mut since = self.drift_since.lock().unwrap_or_else(|p| p.into_inner());
            let drifting: std::collections::HashSet<_> = r.drifting.iter().collect();
            since.retain(|a, _| drifting.contains(a));
            for a in &r.drifting {
                since.entry(*a).or_insert(now);
            }
            since.values().min().copied()
        };
        m.oldest_drift_age_seconds
            .set(oldest.map_or(0.0, |t| now.duration_since(t).as_secs_f64()));
        m.last_pass_timestamp_seconds
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        m.last_pass_duration_seconds.set(r.duration.as_secs_f64());
    }

    /// Publishes how many shards this replica writes for (one shard: whether it leads).
    fn set_leader(&self, shards: usize) {
        if let Some(m) = &self.metrics {
            m.leader_election_master_status
                .with_label_values(&[&m.leader_name])
                .set(i64::from(shards > 0));
            m.shards_owned
                .set(i64::try_from(shards).unwrap_or(i64::MAX));
        }
    }

    /// What a pass would do now, without writing anything (Vapi calls: listings only).
    pub async fn plan(&self, filter: &PlanFilter) -> Result<PlanView, PassError> {
        let platform = self.platform.current();
        let org_keys = self.store.load_org_keys(self.keyring.as_ref()).await?;
        let owner = Ownership::preview(1);
        let cancel = CancellationToken::new();
        let ctx = PassContext {
            metrics: None,
            ..self.context(&platform, &org_keys, &owner, preview::no_writes(), &cancel)
        };
        preview::preview(&ctx, filter).await
    }

    /// A database notification arrived: the table that changed.
    pub fn on_notified(&self, table: &str) {
        if table == "credential_health" {
            self.note_operator_request();
        }
    }

    /// An operator changed something the next pass must read (a breaker reset request).
    pub fn note_operator_request(&self) {
        self.reset_requested
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.activator.activate();
    }

    /// Whether `credential_health` needs a write: the keys' state changed, an operator asked for
    /// a reset, or the last write is older than [`HEALTH_REFRESH`].
    fn health_due(&self, lanes: &[LaneStatus]) -> bool {
        let keys: Vec<HealthKey> = lanes.iter().map(HealthKey::of).collect();
        let requested = self
            .reset_requested
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        let mut written = self
            .health_written
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = requested
            || written
                .as_ref()
                .is_none_or(|(k, at)| *k != keys || at.elapsed() >= HEALTH_REFRESH);
        if due {
            *written = Some((keys, std::time::Instant::now()));
        }
        due
    }

    /// Publishes every key's state and applies operators' breaker resets.
    async fn record_health(&self, fences: &[Fence], lanes: &[LaneStatus]) {
        let rows: Vec<CredentialHealth> = lanes
            .iter()
            .map(|l| CredentialHealth {
                fingerprint: l.fingerprint.clone(),
                scope: l.scope.clone(),
                breaker_state: l.breaker.as_str().to_owned(),
                consecutive_failures: i32::try_from(l.consecutive_failures).unwrap_or(i32::MAX),
                open_until: l.open_until,
                last_transition_at: l.last_transition,
                rejected_at: l.rejected.as_ref().map(|r| r.at),
                rejected_status: l.rejected.as_ref().map(|r| i32::from(r.status)),
                rejected_message: l.rejected.as_ref().map(|r| r.message.clone()),
            })
            .collect();
        match self.store.record_credential_health(fences, &rows).await {
            Ok(resets) => {
                let mut any = false;
                for fp in resets {
                    any |= self.lanes.reset_breaker(&fp);
                }
                if any {
                    self.activator.activate();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, kind = e.kind(), "could not record credential health")
            }
        }
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

    /// Stands by until this replica owns shards, reconciles what it owns while it can prove it,
    /// and hands every shard over when `cancel` fires.
    pub async fn run(&self, elector: &ShardElector, cancel: CancellationToken) {
        tracing::info!(
            resync_interval = %humantime::format_duration(self.config.resync_interval),
            concurrency = self.settings.concurrency,
            dry_run = self.settings.dry_run,
            shards = elector.count(),
            key_fingerprint = self.platform.current().key.fingerprint(),
            holder = %self.holder,
            "controller started; standing by for shards"
        );
        self.status.send_modify(|s| s.shard_count = elector.count());
        if let Some(m) = &self.metrics {
            m.shards.set(i64::from(elector.count()));
        }
        let (publish, owned) = watch::channel(Owned::default());
        let passes = Arc::new(tokio::sync::Mutex::new(()));
        let stop_electing = CancellationToken::new();
        let electing = elector.manage(publish, passes.clone(), stop_electing.clone());
        let reconciling = async {
            self.reconcile_owned(owned, &passes, &cancel).await;
            // Only now: the elector releases the shards after the last pass.
            stop_electing.cancel();
        };
        tokio::join!(electing, reconciling);
        self.set_leader(0);
        self.status.send_modify(|s| {
            s.role = Role::Standby;
            s.epoch = None;
            s.shards.clear();
            s.proofs.clear();
            s.unproven_since = None;
        });
        tracing::info!("controller stopped");
    }

    /// Passes over the shards held at each moment, until `cancel`, on the [`Schedule`]: a full
    /// pass by its deadline whatever else runs, focused passes for named saves in between, and
    /// extra full passes for triggers, a change of shards, a breaker's probe or a backed-off
    /// agent falling due.
    async fn reconcile_owned(
        &self,
        mut owned: watch::Receiver<Owned>,
        passes: &tokio::sync::Mutex<()>,
        cancel: &CancellationToken,
    ) {
        let mut leading: Vec<u32> = Vec::new();
        let now = tokio::time::Instant::now();
        let mut schedule = Schedule::new(self.config.resync_interval, self.config.jitter, now);
        while !cancel.is_cancelled() {
            // Held while reading what is owned and passing over it: shards are handed over only
            // between passes.
            let between = passes.lock().await;
            let current = owned.borrow_and_update().clone();
            // Shards still waiting out a crashed holder's lease are left to a pass at `next`.
            let (ownership, _) = current.ready();
            let now_leading: Vec<u32> = ownership
                .as_ref()
                .map(|o| o.shards().owned().collect())
                .unwrap_or_default();
            if now_leading != leading {
                if now_leading.is_empty() {
                    tracing::warn!("no shard held; standing by");
                } else {
                    tracing::info!(shards = ?now_leading, of = current.count, "reconciling");
                }
                leading = now_leading;
            }
            self.publish_ownership(&current, ownership.as_ref());
            if let Some(ownership) = &ownership {
                let stop = cancel.child_token();
                // A lost lease stops the pass from starting writes; its in-flight ones finish.
                let link = async {
                    ownership.lost().await;
                    stop.cancel();
                    std::future::pending::<()>().await;
                };
                let wanted = self.activator.take();
                let full = wanted.all || schedule.full_due(tokio::time::Instant::now());
                let focused: Vec<Uuid> = wanted.agents.into_iter().collect();
                let run = async {
                    if full {
                        let _ = self.pass_owned(ownership, &stop).await;
                        false
                    } else if focused.is_empty() {
                        false
                    } else {
                        self.pass_focused(ownership, &focused, &stop).await
                    }
                };
                tokio::select! {
                    more = run => {
                        if full {
                            schedule.full_pass_ended(tokio::time::Instant::now());
                        }
                        if more {
                            self.activator.activate();
                        }
                    }
                    () = link => {}
                }
            }
            drop(between);
            let now = tokio::time::Instant::now();
            // A shard whose crashed holder's lease ran out while the pass ran is writable now: its
            // wake-up lies in the past, so it is not waited for but passed over at once.
            let (after, next) = current.ready();
            let became_ready =
                after.is_some_and(|o| o.shards().owned().ne(leading.iter().copied()));
            let wake = match (ownership.is_some(), next) {
                (true, _) if became_ready => Wake::Extra(now),
                (true, next) => {
                    let extra = [
                        self.lanes.next_probe(),
                        self.requeue.next_due(|fp| self.lanes.open_until(fp)),
                        next,
                    ];
                    schedule.next_wake(now, extra.into_iter().flatten())
                }
                (false, Some(t)) => Wake::Extra(t.max(now)),
                (false, None) => Wake::Full(now + self.config.resync_interval),
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake.at()) => {
                    if let Wake::Extra(_) = wake {
                        schedule.full_pass_now(tokio::time::Instant::now());
                    }
                }
                () = self.activator.activated(), if ownership.is_some() => {}
                // A lease lost between passes: the role must say so now, not at the next wake.
                () = current.next_loss() => {}
                changed = owned.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    schedule.full_pass_now(tokio::time::Instant::now());
                }
                () = cancel.cancelled() => {}
            }
        }
    }

    fn publish_ownership(&self, owned: &Owned, ownership: Option<&Ownership>) {
        let writing: Vec<u32> = ownership
            .map(|o| o.shards().owned().collect())
            .unwrap_or_default();
        let shards: Vec<ShardLease> = owned
            .leases
            .iter()
            .map(|(shard, g)| ShardLease {
                shard: *shard,
                lease: g.fence().name.clone(),
                epoch: g.fence().epoch,
                writing: writing.contains(shard),
            })
            .collect();
        let unproven = owned.unproven_since();
        let proofs: Vec<crate::leader::LeaseGuard> = match ownership {
            Some(o) if !writing.is_empty() => o.guards().cloned().collect(),
            _ => Vec::new(),
        };
        self.set_leader(writing.len());
        self.status.send_modify(|s| {
            s.role = match (writing.is_empty(), unproven) {
                (false, _) => Role::Leader,
                (true, Some(_)) => Role::Unproven,
                (true, None) => Role::Standby,
            };
            s.proofs = proofs;
            s.unproven_since = unproven;
            s.epoch = match (owned.count, shards.as_slice()) {
                (1, [one]) if one.writing => Some(one.epoch),
                _ => None,
            };
            s.shard_count = owned.count;
            s.shard_note = owned.note.clone();
            s.shards = shards;
        });
    }
}
