//! Resilience towards Vapi, per credential: three small pieces the controller composes.
//!
//! - [`Breaker`] decides whether to call Vapi at all. After a run of server-side failures it
//!   stops traffic for a growing period and then lets exactly one probe through, so an outage
//!   costs one request per period instead of one per agent per pass.
//! - [`TokenBucket`] / [`Limiter`] pace the calls that are admitted. Reads and writes get one
//!   bucket each, so a large listing cannot starve writes, and a 429 holds the bucket for as
//!   long as Vapi asked.
//! - [`Pacer`] (adaptive pacing) moves a bucket's rate: up while callers queue on it, down when
//!   Vapi answers 429, since Vapi publishes no limit to configure.
//! - [`Backoff`] spaces retries: of idempotent calls within a pass, and of agents that keep
//!   failing across passes, with jitter so many agents don't retry in lockstep.
//!
//! Order per call: breaker first (a rejected call must not consume a token), then the bucket,
//! then the call, then the outcome back into the breaker. 4xx answers prove Vapi is up and are
//! reported as [`CallOutcome::Neutral`].
//!
//! Everything except [`Limiter`] is pure: the caller passes the current time in, so decisions
//! are reproducible and the tests never sleep.

mod backoff;
mod breaker;
mod bucket;
mod clock;
mod pace;

use std::time::{Duration, Instant};

pub use backoff::{Backoff, clamp_retry_after};
pub use breaker::{Admission, Breaker, BreakerConfig, BreakerState, CallOutcome};
pub use bucket::{Limiter, Rate, TokenBucket};
pub use clock::Clock;
pub(crate) use pace::Pacer;
pub use pace::Pacing;

/// `t + d` that cannot panic. Instants are opaque, so an absurd configured duration could
/// overflow one; falling back to a day still keeps the caller away for a long time instead of
/// crashing the controller or silently not waiting at all.
fn later(t: Instant, d: Duration) -> Instant {
    const FALLBACK: Duration = Duration::from_secs(24 * 60 * 60);
    t.checked_add(d)
        .or_else(|| t.checked_add(FALLBACK))
        .unwrap_or(t)
}
