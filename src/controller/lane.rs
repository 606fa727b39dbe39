//! A lane: everything the Vapi calls made with one credential go through.
//!
//! ```text
//!  call ─▶ quarantined? ─▶ breaker admits? ─▶ read/write bucket ─▶ Vapi ─▶ classify ─┐
//!             (writes)      (else requeue)       (pacing)                            │
//!    ◀── retry (idempotent only: GET, PATCH, DELETE; never POST) ◀── 429 / 5xx ──────┘
//! ```
//! - Retries happen here, inside one call: a few quick ones for an idempotent request; what
//!   they cannot fix waits for the agent's back-off and a later pass. Every wait (pacing, a
//!   429's hold, a retry's back-off) ends when the caller's `stop` token fires, so no retry or
//!   `Retry-After` outlives shutdown: a wait cut short before anything was sent is
//!   [`CallError::Stopped`], one cut short between attempts returns the last attempt's error.
//! - A 401 or 403 quarantines the credential: its writes stop at once, and a pass lists with it
//!   (the probe) at most once per probe interval until the key changes or Vapi accepts it again.
//!   A changed key is a new lane, so it is tried at once.
//! - 5xx, timeouts and transport errors count toward the breaker; 4xx answers prove Vapi is up
//!   and do not. An open breaker refuses calls locally until its open period ends.
//! - Reads and writes are paced by separate token buckets, so a burst of writes cannot starve
//!   the listing. A 429 holds the bucket for `Retry-After` (clamped), or an exponential back-off.
//!
//! Lanes live as long as their credential is in use; their state is exported after each pass.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::credentials::ApiKey;
use crate::resilience::{
    Admission, Backoff, Breaker, BreakerConfig, BreakerState, CallOutcome, Clock, Limiter, Rate,
    clamp_retry_after,
};
use crate::vapi::{Item, Listing, Resource, VapiClient, VapiError, list_all_pages};

#[derive(Debug, Clone)]
pub struct LaneConfig {
    pub breaker: BreakerConfig,
    pub read_rate: Rate,
    pub write_rate: Rate,
    /// Extra attempts for an idempotent call after a 429, 5xx, timeout or transport error.
    pub retries: u32,
    pub retry_backoff: Backoff,
    /// Bounds on how long a 429's `Retry-After` is honoured.
    pub retry_after_min: Duration,
    pub retry_after_max: Duration,
    /// A quarantined credential is probed at most this often.
    pub probe_interval: Duration,
    pub clock: Clock,
}

/// Vapi refused the credential.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejection {
    pub status: u16,
    pub message: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Vapi(#[from] VapiError),
    #[error(
        "calls with key {fingerprint} are paused: the circuit breaker opened after repeated failures (5xx, timeouts, unreachable); next try after {until}"
    )]
    BreakerOpen {
        fingerprint: String,
        until: DateTime<Utc>,
    },
    #[error(
        "key {fingerprint} was rejected by Vapi (HTTP {status}: {message}); writes with it are stopped until the key changes or a probe succeeds"
    )]
    Quarantined {
        fingerprint: String,
        status: u16,
        message: String,
    },
    /// Shutdown (or a lost lease) began while the call waited to be sent: nothing was sent.
    #[error("not sent: the controller is stopping")]
    Stopped,
}

impl CallError {
    pub fn vapi(&self) -> Option<&VapiError> {
        match self {
            Self::Vapi(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the request may have taken effect.
    pub fn outcome_unknown(&self) -> bool {
        self.vapi().is_some_and(VapiError::outcome_unknown)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Vapi(e) => e.kind(),
            Self::BreakerOpen { .. } => "breaker_open",
            Self::Quarantined { .. } => "quarantined",
            Self::Stopped => "stopped",
        }
    }

    /// Refused here, without a request reaching Vapi.
    pub fn local(&self) -> bool {
        !matches!(self, Self::Vapi(_))
    }
}

/// What a status endpoint shows of a lane.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LaneStatus {
    pub fingerprint: String,
    /// `platform` or `org <uuid>`.
    pub scope: String,
    pub breaker: BreakerState,
    pub consecutive_failures: u32,
    pub open_until: Option<DateTime<Utc>>,
    pub last_transition: Option<DateTime<Utc>>,
    pub rejected: Option<Rejection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

struct LaneState {
    breaker: Breaker,
    rejected: Option<Rejection>,
    last_probe: Option<std::time::Instant>,
}

pub struct Lane {
    key: ApiKey,
    scope: String,
    vapi: VapiClient,
    config: LaneConfig,
    read: Limiter,
    write: Limiter,
    state: Mutex<LaneState>,
}

fn wall(clock: &Clock, at: std::time::Instant) -> DateTime<Utc> {
    let now = clock.now();
    let utc = Utc::now();
    if at >= now {
        utc + chrono::TimeDelta::from_std(at - now).unwrap_or_default()
    } else {
        utc - chrono::TimeDelta::from_std(now - at).unwrap_or_default()
    }
}

impl Lane {
    pub fn new(key: ApiKey, scope: String, vapi: VapiClient, config: LaneConfig) -> Self {
        Self {
            read: Limiter::new(config.read_rate),
            write: Limiter::new(config.write_rate),
            state: Mutex::new(LaneState {
                breaker: Breaker::new(config.breaker),
                rejected: None,
                last_probe: None,
            }),
            key,
            scope,
            vapi,
            config,
        }
    }

    pub fn key(&self) -> &ApiKey {
        &self.key
    }

    pub fn fingerprint(&self) -> &str {
        self.key.fingerprint()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LaneState> {
        // A panic elsewhere must not wedge every later call: the state stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn rejection(&self) -> Option<Rejection> {
        self.state().rejected.clone()
    }

    /// Whether a quarantined credential is due for its probe (always true when not quarantined).
    pub fn may_probe(&self) -> bool {
        let st = self.state();
        match (&st.rejected, st.last_probe) {
            (Some(_), Some(at)) => {
                self.config.clock.now().saturating_duration_since(at) >= self.config.probe_interval
            }
            _ => true,
        }
    }

    pub fn reset_breaker(&self) {
        self.state().breaker.reset(self.config.clock.now());
        tracing::warn!(
            fingerprint = self.fingerprint(),
            "circuit breaker reset by an operator"
        );
    }

    pub fn status(&self) -> LaneStatus {
        let st = self.state();
        LaneStatus {
            fingerprint: self.fingerprint().to_owned(),
            scope: self.scope.clone(),
            breaker: st.breaker.state(),
            consecutive_failures: st.breaker.consecutive_failures(),
            open_until: st.breaker.open_until().map(|t| wall(&self.config.clock, t)),
            last_transition: st
                .breaker
                .last_transition()
                .map(|t| wall(&self.config.clock, t)),
            rejected: st.rejected.clone(),
        }
    }

    /// When an open breaker will admit a probe: the loop wakes then to requeue this lane's agents.
    pub fn open_until(&self) -> Option<Instant> {
        let until = self.state().breaker.open_until()?;
        Some(self.config.clock.to_tokio(until))
    }

    /// Why a write would be refused here without reaching Vapi (a quarantined key, an open
    /// breaker), if it would; asks nothing of the breaker. A write is journaled only when this
    /// says none, so a call refused locally never looks like one Vapi saw.
    pub fn refuses_write(&self) -> Option<CallError> {
        let st = self.state();
        if let Some(r) = &st.rejected {
            return Some(CallError::Quarantined {
                fingerprint: self.fingerprint().to_owned(),
                status: r.status,
                message: r.message.clone(),
            });
        }
        let now = self.config.clock.now();
        (!st.breaker.would_admit(now)).then(|| CallError::BreakerOpen {
            fingerprint: self.fingerprint().to_owned(),
            until: st
                .breaker
                .open_until()
                .map_or_else(Utc::now, |t| wall(&self.config.clock, t)),
        })
    }

    /// Every assistant, readable or not (the listing is also the quarantine probe).
    pub async fn list_all(
        &self,
        resource: Resource,
        stop: &CancellationToken,
    ) -> Result<Listing, CallError> {
        self.state().last_probe = Some(self.config.clock.now());
        let listed = list_all_pages(|boundary| async move {
            self.call(Kind::Read, true, stop, || {
                self.vapi
                    .list_page(resource, &self.key, boundary.as_deref())
            })
            .await
            .map(|v| match v {
                Listed::Page(page) => page,
                Listed::Value(_) => Listing::default(),
            })
        })
        .await?;
        let mut st = self.state();
        if let Some(r) = st.rejected.take() {
            tracing::info!(fingerprint = self.fingerprint(), rejected_at = %r.at, "Vapi accepts the key again; writes resume");
        }
        Ok(listed)
    }

    pub async fn get(
        &self,
        resource: Resource,
        id: &str,
        stop: &CancellationToken,
    ) -> Result<Value, CallError> {
        self.value(Kind::Read, true, stop, || {
            self.vapi.get(resource, &self.key, id)
        })
        .await
    }

    /// Never retried: Vapi has no idempotency key, so a second POST could be a second assistant.
    pub async fn create(
        &self,
        resource: Resource,
        body: &Map<String, Value>,
        stop: &CancellationToken,
    ) -> Result<Value, CallError> {
        self.value(Kind::Write, false, stop, || {
            self.vapi.create(resource, &self.key, body)
        })
        .await
    }

    pub async fn update(
        &self,
        resource: Resource,
        id: &str,
        patch: &Map<String, Value>,
        stop: &CancellationToken,
    ) -> Result<Value, CallError> {
        self.value(Kind::Write, true, stop, || {
            self.vapi.update(resource, &self.key, id, patch)
        })
        .await
    }

    pub async fn delete(
        &self,
        resource: Resource,
        id: &str,
        stop: &CancellationToken,
    ) -> Result<Value, CallError> {
        self.value(Kind::Write, true, stop, || {
            self.vapi.delete(resource, &self.key, id)
        })
        .await
    }

    async fn value<F, Fut>(
        &self,
        kind: Kind,
        idempotent: bool,
        stop: &CancellationToken,
        f: F,
    ) -> Result<Value, CallError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Value, VapiError>>,
    {
        self.call(kind, idempotent, stop, || async {
            f().await.map(Listed::Value)
        })
        .await
        .map(|l| match l {
            Listed::Value(v) => v,
            Listed::Page(page) => Value::Array(page.items.iter().map(Item::value).collect()),
        })
    }

    async fn call<F, Fut, T>(
        &self,
        kind: Kind,
        idempotent: bool,
        stop: &CancellationToken,
        f: F,
    ) -> Result<Listed, CallError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, VapiError>>,
        T: Into<Listed>,
    {
        let mut attempt = 0u32;
        loop {
            {
                let mut st = self.state();
                if let (Kind::Write, Some(r)) = (kind, &st.rejected) {
                    return Err(CallError::Quarantined {
                        fingerprint: self.fingerprint().to_owned(),
                        status: r.status,
                        message: r.message.clone(),
                    });
                }
                if let Admission::Rejected { until } = st.breaker.admit(self.config.clock.now()) {
                    return Err(CallError::BreakerOpen {
                        fingerprint: self.fingerprint().to_owned(),
                        until: wall(&self.config.clock, until),
                    });
                }
            }
            let limiter = match kind {
                Kind::Read => &self.read,
                Kind::Write => &self.write,
            };
            tokio::select! {
                () = limiter.acquire() => {}
                () = stop.cancelled() => return Err(CallError::Stopped),
            }
            let result = f().await;
            let outcome = match &result {
                Ok(_) => CallOutcome::Success,
                Err(e) if e.outcome_unknown() => CallOutcome::Failure,
                Err(_) => CallOutcome::Neutral,
            };
            self.state()
                .breaker
                .record(self.config.clock.now(), outcome);
            let err = match result {
                Ok(v) => return Ok(v.into()),
                Err(e) => e,
            };
            attempt += 1;
            let retry_in = match &err {
                VapiError::Unauthorized { message } | VapiError::Forbidden { message } => {
                    self.quarantine(&err, message);
                    return Err(err.into());
                }
                VapiError::RateLimited { retry_after } => {
                    let wait = clamp_retry_after(
                        *retry_after,
                        self.config.retry_after_min,
                        self.config.retry_after_max,
                    )
                    .unwrap_or_else(|| self.config.retry_backoff.delay_random(attempt));
                    // Everyone on this lane waits, not only this call: the limit is per key.
                    limiter.hold_until(Instant::now() + wait);
                    tracing::warn!(
                        fingerprint = self.fingerprint(),
                        wait_ms = wait.as_millis() as u64,
                        "Vapi rate limit: holding this key's calls"
                    );
                    Duration::ZERO
                }
                e if e.outcome_unknown() => self.config.retry_backoff.delay_random(attempt),
                _ => return Err(err.into()),
            };
            if !idempotent || attempt > self.config.retries || stop.is_cancelled() {
                return Err(err.into());
            }
            tokio::select! {
                () = tokio::time::sleep(retry_in) => {}
                () = stop.cancelled() => return Err(err.into()),
            }
        }
    }

    fn quarantine(&self, err: &VapiError, message: &str) {
        let status = match err {
            VapiError::Forbidden { .. } => 403,
            _ => 401,
        };
        let mut st = self.state();
        if st.rejected.is_none() {
            tracing::error!(fingerprint = self.fingerprint(), scope = %self.scope, status, vapi_message = message, "Vapi rejected the key: quarantined; its writes stop until the key changes");
        }
        st.rejected = Some(Rejection {
            status,
            message: message.to_owned(),
            at: Utc::now(),
        });
    }
}

/// A call's answer: one value, or one page of a listing.
enum Listed {
    Value(Value),
    Page(Listing),
}

impl From<Value> for Listed {
    fn from(v: Value) -> Self {
        Self::Value(v)
    }
}

impl From<Listing> for Listed {
    fn from(v: Listing) -> Self {
        Self::Page(v)
    }
}

/// The lanes in use, by key fingerprint.
pub struct Lanes {
    vapi: VapiClient,
    config: LaneConfig,
    map: Mutex<std::collections::HashMap<String, std::sync::Arc<Lane>>>,
}

impl Lanes {
    pub fn new(vapi: VapiClient, config: LaneConfig) -> Self {
        Self {
            vapi,
            config,
            map: Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, std::sync::Arc<Lane>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The lane of this key, made on first use: a new key starts with a closed breaker and no
    /// quarantine, which is what makes a rotated key get tried at once.
    pub fn lane(&self, key: &ApiKey, scope: &str) -> std::sync::Arc<Lane> {
        self.map()
            .entry(key.fingerprint().to_owned())
            .or_insert_with(|| {
                std::sync::Arc::new(Lane::new(
                    key.clone(),
                    scope.to_owned(),
                    self.vapi.clone(),
                    self.config.clone(),
                ))
            })
            .clone()
    }

    /// Forgets lanes of keys no longer in use.
    pub fn retain(&self, in_use: &std::collections::HashSet<String>) {
        self.map().retain(|fp, _| in_use.contains(fp));
    }

    pub fn statuses(&self) -> Vec<LaneStatus> {
        let mut out: Vec<_> = self.map().values().map(|l| l.status()).collect();
        out.sort_by(|a, b| {
            a.scope
                .cmp(&b.scope)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        out
    }

    /// `false` when no lane has this fingerprint.
    pub fn reset_breaker(&self, fingerprint: &str) -> bool {
        let lane = self.map().get(fingerprint).cloned();
        lane.map(|l| l.reset_breaker()).is_some()
    }

    /// The earliest time an open breaker admits a probe.
    pub fn next_probe(&self) -> Option<Instant> {
        self.map().values().filter_map(|l| l.open_until()).min()
    }

    /// When the open breaker of this key admits a probe, if it is open.
    pub fn open_until(&self, fingerprint: &str) -> Option<Instant> {
        let lane = self.map().get(fingerprint).cloned();
        lane.and_then(|l| l.open_until())
    }
}
