//! A lane: everything the Vapi calls made with one credential go through.
//!
//! ```text
//!  call ─▶ quarantined? ─▶ breaker admits? ─▶ read/write bucket ─▶ Vapi ─▶ classify ─┐
//!             (writes)      (else requeue)       (pacing)                            │
//!    ◀── retry (GET, PATCH, DELETE; a POST only after a 429, adaptive) ◀── 429 / 5xx ┘
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
//!   the listing. A 429 holds the bucket for `Retry-After` (clamped). Without one, fixed pacing
//!   holds it for an exponential back-off; adaptive pacing (`resilience::Pacer`, the default)
//!   holds nothing, since its rate cut is the answer, and raises the rate while callers queue.
//! - A POST is retried only after a 429, and only with adaptive pacing. A 429 means Vapi did
//!   not process the request, so the retry cannot make a second assistant, and the create
//!   protocol still holds: the retry is the same request (the same operation id in its marker,
//!   under the same committed intent); like every wait here it ends when the lease is lost; and
//!   it is not sent later than `create_send_window` after the intent was taken, so every POST
//!   of an intent has left in time to land or fail before `--create-grace` lets another create
//!   begin. Any other failure of a POST (5xx, timeout) may have created it and is never retried.
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
    Admission, Backoff, Breaker, BreakerConfig, BreakerState, CallOutcome, Clock, Limiter, Pacer,
    Pacing, Rate, clamp_retry_after,
};
use crate::vapi::{Item, Listing, Resource, VapiClient, VapiError, list_all_pages_into};

#[derive(Debug, Clone)]
pub struct LaneConfig {
    pub breaker: BreakerConfig,
    /// Fixed rates, or rates that start at `read_rate` / `write_rate` and adapt.
    pub pacing: Pacing,
    /// The start (adaptive) or the only (fixed) rate and the burst of each kind.
    pub read_rate: Rate,
    pub write_rate: Rate,
    /// Adaptive pacing never goes above these (calls per second).
    pub read_rate_max: f64,
    pub write_rate_max: f64,
    /// A POST retried after a 429 is not sent later than this after its create intent was
    /// taken: `--create-grace` less the request timeout and the lease (see the module note).
    pub create_send_window: Duration,
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
    pub pacing: PacingStatus,
}

/// A lane's current rates, calls per second.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PacingStatus {
    pub mode: &'static str,
    pub read: f64,
    pub write: f64,
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
    read: Paced,
    write: Paced,
    state: Mutex<LaneState>,
}

/// One kind's bucket, and the pacer that moves its rate (none when pacing is fixed).
struct Paced {
    limiter: Limiter,
    pacer: Option<Mutex<Pacer>>,
}

impl Paced {
    fn new(pacing: Pacing, rate: Rate, max: f64) -> Self {
        Self {
            limiter: Limiter::new(rate),
            pacer: (pacing == Pacing::Adaptive)
                .then(|| Mutex::new(Pacer::new(rate.per_second, max, now()))),
        }
    }

    /// Waits for a token; the instant the request is sent.
    async fn acquire(&self) -> std::time::Instant {
        let waited = self.limiter.acquire().await;
        let at = now();
        self.adapt(|p| p.on_send(at, waited));
        at
    }

    /// The answer to a request sent at `sent_at`: throttled (429) or served.
    fn answered(&self, sent_at: std::time::Instant, throttled: bool) {
        let at = now();
        if throttled {
            self.adapt(|p| p.on_throttled(sent_at, at));
        } else {
            self.adapt(|p| {
                p.on_served(at);
                None
            });
        }
    }

    /// Applies what the pacer decides to the bucket. The pacer's lock is taken before the
    /// bucket's, always in that order.
    fn adapt(&self, f: impl FnOnce(&mut Pacer) -> Option<f64>) {
        let Some(pacer) = &self.pacer else { return };
        let mut p = pacer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rate) = f(&mut p) {
            self.limiter.set_rate(rate);
        }
    }

    fn rate(&self) -> f64 {
        self.limiter.rate()
    }
}

/// The clock the buckets read (tokio's, so paused-time tests drive both).
fn now() -> std::time::Instant {
    Instant::now().into_std()
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
            read: Paced::new(config.pacing, config.read_rate, config.read_rate_max),
            write: Paced::new(config.pacing, config.write_rate, config.write_rate_max),
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
            pacing: PacingStatus {
                mode: self.config.pacing.as_str(),
                read: self.read.rate(),
                write: self.write.rate(),
            },
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
        let (items, unreadable) = self.list_all_into(resource, stop, |item| item).await?;
        Ok(Listing { items, unreadable })
    }

    /// [`Lane::list_all`], each item handed to `each` as its page arrives
    /// ([`list_all_pages_into`]).
    pub async fn list_all_into<T>(
        &self,
        resource: Resource,
        stop: &CancellationToken,
        each: impl FnMut(Item) -> T,
    ) -> Result<(Vec<T>, Vec<crate::vapi::Unreadable>), CallError> {
        self.state().last_probe = Some(self.config.clock.now());
        let listed = list_all_pages_into(
            |boundary| async move {
                self.call(Kind::Read, true, None, stop, || {
                    self.vapi
                        .list_page(resource, &self.key, boundary.as_deref())
                })
                .await
                .map(|v| match v {
                    Listed::Page(page) => page,
                    Listed::Value(_) => Listing::default(),
                })
            },
            each,
        )
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
        self.value(Kind::Read, true, None, stop, || {
            self.vapi.get(resource, &self.key, id)
        })
        .await
    }

    /// Not retried, but for a 429 with adaptive pacing: Vapi has no idempotency key, so a
    /// second POST after any other failure could be a second assistant. `intent_at` is when the
    /// create's intent was taken: no retry leaves later than `create_send_window` after it.
    pub async fn create(
        &self,
        resource: Resource,
        body: &Map<String, Value>,
        intent_at: Instant,
        stop: &CancellationToken,
    ) -> Result<Value, CallError> {
        let send_by = intent_at + self.config.create_send_window;
        self.value(Kind::Write, false, Some(send_by), stop, || {
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
        self.value(Kind::Write, true, None, stop, || {
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
        self.value(Kind::Write, true, None, stop, || {
            self.vapi.delete(resource, &self.key, id)
        })
        .await
    }

    async fn value<F, Fut>(
        &self,
        kind: Kind,
        idempotent: bool,
        send_by: Option<Instant>,
        stop: &CancellationToken,
        f: F,
    ) -> Result<Value, CallError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Value, VapiError>>,
    {
        self.call(kind, idempotent, send_by, stop, || async {
            f().await.map(Listed::Value)
        })
        .await
        .map(|l| match l {
            Listed::Value(v) => v,
            Listed::Page(page) => Value::Array(page.items.iter().map(Item::value).collect()),
        })
    }

    /// One request with its retries. `send_by`: no retry is sent after it (a POST's, see
    /// [`Lane::create`]).
    async fn call<F, Fut, T>(
        &self,
        kind: Kind,
        idempotent: bool,
        send_by: Option<Instant>,
        stop: &CancellationToken,
        f: F,
    ) -> Result<Listed, CallError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, VapiError>>,
        T: Into<Listed>,
    {
        let adaptive = self.config.pacing == Pacing::Adaptive;
        let mut attempt = 0u32;
        // The last attempt's error, returned when a retry may no longer be sent.
        let mut last: Option<VapiError> = None;
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
            let paced = match kind {
                Kind::Read => &self.read,
                Kind::Write => &self.write,
            };
            let sent_at = tokio::select! {
                at = paced.acquire() => at,
                () = stop.cancelled() => return Err(CallError::Stopped),
            };
            // A retry too late to send: the last attempt's answer stands.
            if send_by.is_some_and(|by| Instant::from_std(sent_at) > by) {
                if let Some(err) = last.take() {
                    return Err(err.into());
                }
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
            let throttled = matches!(&result, Err(VapiError::RateLimited { .. }));
            // A request that got no answer, or a 5xx, says nothing about the rate Vapi allows.
            if throttled || outcome != CallOutcome::Failure {
                paced.answered(sent_at, throttled);
            }
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
                    let asked = clamp_retry_after(
                        *retry_after,
                        self.config.retry_after_min,
                        self.config.retry_after_max,
                    );
                    // Adaptive: without `Retry-After` the rate cut is the answer, and the retry
                    // waits its turn at the new rate like every other call.
                    let wait = match asked {
                        Some(wait) => Some(wait),
                        None if adaptive => None,
                        None => Some(self.config.retry_backoff.delay_random(attempt)),
                    };
                    if let Some(wait) = wait {
                        // Everyone on this lane waits, not only this call: the limit is per key.
                        paced.limiter.hold_until(Instant::now() + wait);
                        tracing::warn!(
                            fingerprint = self.fingerprint(),
                            wait_ms = wait.as_millis() as u64,
                            "Vapi rate limit: holding this key's calls"
                        );
                    } else {
                        tracing::debug!(
                            fingerprint = self.fingerprint(),
                            rate = paced.rate(),
                            "Vapi rate limit: pacing this key's calls slower"
                        );
                    }
                    Duration::ZERO
                }
                e if e.outcome_unknown() => self.config.retry_backoff.delay_random(attempt),
                _ => return Err(err.into()),
            };
            // A 429 means Vapi did not process the request: safe to send again, even a POST.
            let retriable =
                idempotent || (adaptive && matches!(err, VapiError::RateLimited { .. }));
            if !retriable || attempt > self.config.retries || stop.is_cancelled() {
                return Err(err.into());
            }
            tokio::select! {
                () = tokio::time::sleep(retry_in) => {}
                () = stop.cancelled() => return Err(err.into()),
            }
            last = Some(err);
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
