//! How a controller runs, as one value.
//!
//! Every way of starting a controller — `run`, `reconcile --once`, `plan`, `demo`, the tests and
//! the bench — fills in a [`Settings`] and hands it to `app`, the one place that turns it into
//! concrete parts. The defaults exist once, as the constants in [`defaults`]: clap's
//! `default_value_t`s name them, and `Settings::default()` is built from them, so the binary's
//! defaults and the library's cannot drift apart (a test parses a bare command line and compares).
//!
//! Nothing here does I/O; reading a voice-rules file or a key is `app`'s business.

use std::time::Duration;

use crate::controller::{LaneConfig, LoopConfig, PassSettings};
use crate::leader::LeaderConfig;
use crate::reconcile::guard::GuardSettings;
use crate::reconcile::{OrphanPolicy, PlanSettings, VoiceRules};
use crate::resilience::{Backoff, BreakerConfig, Clock, Rate};
use crate::vapi::ClientConfig;

/// The defaults of every setting; the command line's defaults are these constants.
pub mod defaults {
    use std::time::Duration;

    pub const VAPI_BASE_URL: &str = "https://api.vapi.ai";
    pub const VAPI_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    pub const VAPI_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// Connections the controller's pool may hold: a pass's writes are bounded by its
    /// concurrency, and the API, health and listener need a few more.
    pub const DATABASE_MAX_CONNECTIONS: u32 = 8;
    /// How long a query waits for a pooled connection before it fails (and `/readyz` with it).
    pub const DATABASE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
    /// How long the first connection at start may take: within the 5 s a start may take.
    pub const DATABASE_CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

    pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5 * 60);
    /// Each full pass is due at the interval ± this fraction, so replicas do not stay in step.
    pub const RESYNC_JITTER: f64 = 0.1;
    pub const JOURNAL_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

    pub const CONCURRENCY: u16 = 8;
    pub const CREATE_GRACE: Duration = Duration::from_secs(2 * 60);
    pub const ORPHAN_GRACE: Duration = Duration::from_secs(15 * 60);
    pub const GUARD_MAX_SHARE: f64 = 0.10;
    pub const GUARD_MIN_COUNT: u64 = 50;

    pub const LEADER_ELECTION_NAME: &str = "vapi-reconciler";
    pub const LEADER_LEASE: Duration = Duration::from_secs(3);
    pub const LEADER_RENEW_INTERVAL: Duration = Duration::from_secs(1);
    pub const LEADER_POLL_INTERVAL: Duration = Duration::from_millis(500);
    pub const SHARDS: u32 = 1;

    pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
    pub const VAPI_READ_RATE: f64 = 5.0;
    pub const VAPI_READ_BURST: u32 = 5;
    pub const VAPI_WRITE_RATE: f64 = 10.0;
    pub const VAPI_WRITE_BURST: u32 = 10;
    /// Adaptive pacing: start at the rates above and adapt, never above the max.
    pub const VAPI_PACING: crate::resilience::Pacing = crate::resilience::Pacing::Adaptive;
    /// The highest rate adaptive pacing goes to, reads and writes alike (or the start rate, when
    /// that is higher).
    pub const VAPI_RATE_MAX: f64 = 500.0;
    pub const VAPI_RETRIES: u32 = 3;
    pub const VAPI_RETRY_BACKOFF_BASE: Duration = Duration::from_millis(500);
    pub const VAPI_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(10);
    pub const VAPI_RETRY_AFTER_MAX: Duration = Duration::from_secs(60);
    pub const BREAKER_FAILURES: u32 = 5;
    pub const BREAKER_OPEN_BASE: Duration = Duration::from_secs(5);
    pub const BREAKER_OPEN_MAX: Duration = Duration::from_secs(5 * 60);
    pub const QUARANTINE_PROBE_INTERVAL: Duration = Duration::from_secs(30);
    pub const AGENT_BACKOFF_BASE: Duration = Duration::from_secs(2);
    pub const AGENT_BACKOFF_MAX: Duration = Duration::from_secs(5 * 60);
    /// Every back-off (a call's retries, a failing agent's) waits its delay ± this fraction, so
    /// failures that began together do not retry together.
    pub const BACKOFF_JITTER: f64 = 0.2;
}

/// Everything a controller is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub vapi: ClientConfig,
    pub database: DatabaseSettings,
    /// The loop: resync schedule, journal retention, lanes and agent back-off.
    pub controller: LoopConfig,
    pub pass: PassSettings,
    /// The lease; its `holder` is this replica's identity in leases and the journal.
    pub leader: LeaderConfig,
    /// Organizations are divided into this many shards, each with one writer.
    pub shards: u32,
    /// How often a key file is re-read.
    pub key_reload_interval: Duration,
}

/// The controller's Postgres pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: defaults::DATABASE_MAX_CONNECTIONS,
            acquire_timeout: defaults::DATABASE_ACQUIRE_TIMEOUT,
            connect_timeout: defaults::DATABASE_CONNECT_TIMEOUT,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        use defaults::*;
        Self {
            vapi: ClientConfig {
                base_url: VAPI_BASE_URL.to_owned(),
                connect_timeout: VAPI_CONNECT_TIMEOUT,
                request_timeout: VAPI_REQUEST_TIMEOUT,
            },
            database: DatabaseSettings::default(),
            controller: LoopConfig {
                resync_interval: RESYNC_INTERVAL,
                jitter: RESYNC_JITTER,
                journal_retention: JOURNAL_RETENTION,
                lanes: LaneConfig {
                    breaker: BreakerConfig {
                        failure_threshold: BREAKER_FAILURES,
                        open_base: BREAKER_OPEN_BASE,
                        open_max: BREAKER_OPEN_MAX,
                    },
                    pacing: VAPI_PACING,
                    read_rate: Rate {
                        per_second: VAPI_READ_RATE,
                        burst: VAPI_READ_BURST,
                    },
                    write_rate: Rate {
                        per_second: VAPI_WRITE_RATE,
                        burst: VAPI_WRITE_BURST,
                    },
                    read_rate_max: VAPI_RATE_MAX.max(VAPI_READ_RATE),
                    write_rate_max: VAPI_RATE_MAX.max(VAPI_WRITE_RATE),
                    create_send_window: send_window(
                        CREATE_GRACE,
                        VAPI_REQUEST_TIMEOUT,
                        LEADER_LEASE,
                    ),
                    retries: VAPI_RETRIES,
                    retry_backoff: Backoff {
                        base: VAPI_RETRY_BACKOFF_BASE,
                        max: VAPI_RETRY_BACKOFF_MAX,
                        jitter: BACKOFF_JITTER,
                    },
                    retry_after_min: crate::config::RETRY_AFTER_MIN,
                    retry_after_max: VAPI_RETRY_AFTER_MAX,
                    probe_interval: QUARANTINE_PROBE_INTERVAL,
                    clock: Clock::new(),
                },
                agent_backoff: Backoff {
                    base: AGENT_BACKOFF_BASE,
                    max: AGENT_BACKOFF_MAX,
                    jitter: BACKOFF_JITTER,
                },
            },
            pass: PassSettings {
                concurrency: usize::from(CONCURRENCY),
                dry_run: false,
                plan: PlanSettings {
                    create_grace: delta(CREATE_GRACE),
                    orphan_grace: delta(ORPHAN_GRACE),
                    orphan_policy: OrphanPolicy::Delete,
                    voices: VoiceRules::default(),
                },
                guard: GuardSettings {
                    max_share: GUARD_MAX_SHARE,
                    min_count: GUARD_MIN_COUNT,
                },
            },
            leader: LeaderConfig {
                name: LEADER_ELECTION_NAME.to_owned(),
                holder: default_holder(),
                poll_interval: LEADER_POLL_INTERVAL,
                renew_interval: LEADER_RENEW_INTERVAL,
                lease: LEADER_LEASE,
            },
            shards: SHARDS,
            key_reload_interval: KEY_RELOAD_INTERVAL,
        }
    }
}

impl Settings {
    /// This replica's identity in leases and the journal.
    pub fn holder(&self) -> &str {
        &self.leader.holder
    }

    /// How long after its intent a POST may still be sent, from the settings it follows from
    /// (`app` applies it when it wires a controller, so a changed grace is followed).
    pub fn create_send_window(&self) -> Duration {
        let grace = self.pass.plan.create_grace.to_std().unwrap_or_default();
        send_window(grace, self.vapi.request_timeout, self.leader.lease)
    }
}

/// A POST sent within this of its intent has landed or failed (request timeout), and a deposed
/// leader has stopped sending (lease), before `create_grace` lets another create of the agent
/// begin.
fn send_window(create_grace: Duration, request_timeout: Duration, lease: Duration) -> Duration {
    create_grace
        .saturating_sub(request_timeout)
        .saturating_sub(lease)
}

/// This replica's identity when none is given: hostname/pid.
pub fn default_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".to_owned());
    format!("{host}/{}", std::process::id())
}

/// A duration as chrono's, saturating (the plan reasons in chrono's time).
pub(crate) fn delta(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX)
}
