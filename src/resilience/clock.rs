//! The time the breaker, the quarantine probe and agent back-off are judged by: tokio's clock,
//! plus an offset that only tests move. It lets a test walk a 60-second outage through the
//! controller in a few real passes without pausing tokio's clock, which would also jump the
//! timers of real database and HTTP I/O.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_nanos: Arc<AtomicU64>,
}

impl Clock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn now(&self) -> Instant {
        let offset = Duration::from_nanos(self.offset_nanos.load(Ordering::Relaxed));
        tokio::time::Instant::now().into_std() + offset
    }

    /// Moves this clock (and every clone) forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The tokio instant at which this clock will read `at`: what a timer must sleep until.
    pub fn to_tokio(&self, at: Instant) -> tokio::time::Instant {
        let now = self.now();
        tokio::time::Instant::now() + at.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn advancing_moves_every_clone() {
        let a = Clock::new();
        let b = a.clone();
        let t0 = a.now();
        b.advance(Duration::from_secs(60));
        assert_eq!(a.now() - t0, Duration::from_secs(60));
        let at = a.now() + Duration::from_secs(5);
        assert_eq!(
            a.to_tokio(at) - tokio::time::Instant::now(),
            Duration::from_secs(5)
        );
    }
}
