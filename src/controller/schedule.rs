//! The loop's schedule, as a pure value: when the next full pass is due and when to wake.
//!
//! The rules, each an invariant the tests check under load:
//! 1. **The backstop cannot starve.** A full pass is due at an absolute deadline, set when the
//!    last full pass *ended* (end + resync interval ± jitter). Nothing but a full pass moves it:
//!    notifications, API triggers, focused passes and back-off wake-ups may add passes, but
//!    never postpone it. So a full pass starts at least once per interval (plus one pass's
//!    duration) however busy the loop is.
//! 2. **A wake-up is never in the past.** Extra wake-ups (a breaker's next probe, a backed-off
//!    agent) count only while they lie ahead; a time already passed is no reason to wake, since
//!    the pass it asked for has run or cannot progress yet (an open breaker says when it can).
//! 3. **Idle means no work.** With nothing due and nothing asked, the loop sleeps until the
//!    deadline.
//!
//! Time is passed in, so every rule is a plain test.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct Schedule {
    resync: Duration,
    jitter: f64,
    /// When the next full pass is due.
    full_due: Instant,
}

impl Schedule {
    /// The first full pass is due at once.
    pub(crate) fn new(resync: Duration, jitter: f64, now: Instant) -> Self {
        Self {
            resync,
            jitter,
            full_due: now,
        }
    }

    /// Whether a full pass is due at `now`.
    pub(crate) fn full_due(&self, now: Instant) -> bool {
        now >= self.full_due
    }

    /// The deadline of the next full pass.
    #[cfg(test)]
    pub(crate) fn deadline(&self) -> Instant {
        self.full_due
    }

    /// A full pass ended at `now` (whatever started it): the next is due one interval later.
    pub(crate) fn full_pass_ended(&mut self, now: Instant) {
        self.full_due = now + jittered(self.resync, self.jitter);
    }

    /// Asks for a full pass as soon as possible (a change of shards held).
    pub(crate) fn full_pass_now(&mut self, now: Instant) {
        self.full_due = self.full_due.min(now);
    }

    /// When to wake: the deadline, or an earlier extra wake-up that still lies ahead of `now`.
    pub(crate) fn next_wake(&self, now: Instant, extra: impl IntoIterator<Item = Instant>) -> Wake {
        let soonest = extra.into_iter().filter(|t| *t > now).min();
        match soonest {
            Some(t) if t < self.full_due => Wake::Extra(t),
            _ => Wake::Full(self.full_due.max(now)),
        }
    }
}

/// What the loop sleeps until.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The full pass's deadline.
    Full(Instant),
    /// An earlier wake-up (a breaker probe, a backed-off agent): a full pass then too, because
    /// what it retries must be seen as it is now.
    Extra(Instant),
}

impl Wake {
    pub(crate) fn at(self) -> Instant {
        match self {
            Self::Full(t) | Self::Extra(t) => t,
        }
    }
}

/// `interval` ± `jitter` (a fraction, clamped to 0..=1), so replicas and restarts drift apart.
pub(crate) fn jittered(interval: Duration, jitter: f64) -> Duration {
    let jitter = jitter.clamp(0.0, 1.0);
    let factor = 1.0 + rand::rng().random_range(-jitter..=jitter);
    interval.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESYNC: Duration = Duration::from_secs(10);

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

    #[tokio::test(start_paused = true)]
    async fn the_first_full_pass_is_due_at_once() {
        let now = Instant::now();
        let s = Schedule::new(RESYNC, 0.0, now);
        assert!(s.full_due(now));
        assert_eq!(s.next_wake(now, []), Wake::Full(now));
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_full_pass_moves_the_deadline() {
        let t0 = Instant::now();
        let mut s = Schedule::new(RESYNC, 0.0, t0);
        s.full_pass_ended(t0);
        let deadline = s.deadline();
        assert_eq!(deadline, t0 + RESYNC);
        // A focused pass every 200 ms for three intervals: nothing here touches the deadline,
        // and the loop finds the full pass due when it comes.
        let mut full_passes = 0;
        let mut now = t0;
        while now < t0 + 3 * RESYNC {
            now += Duration::from_millis(200);
            if s.full_due(now) {
                full_passes += 1;
                s.full_pass_ended(now);
            }
        }
        assert_eq!(
            full_passes, 3,
            "one full pass per interval under steady saves"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_is_never_in_the_past() {
        let t0 = Instant::now();
        let mut s = Schedule::new(RESYNC, 0.0, t0);
        s.full_pass_ended(t0);
        let now = t0 + Duration::from_secs(3);
        // Due times already passed (a back-off entry whose pass has run) are not wake-ups.
        let past = [t0, t0 + Duration::from_secs(1), now];
        assert_eq!(s.next_wake(now, past), Wake::Full(t0 + RESYNC));
        let ahead = now + Duration::from_secs(2);
        assert_eq!(
            s.next_wake(now, past.into_iter().chain([ahead])),
            Wake::Extra(ahead)
        );
        // Beyond the deadline an extra wake-up changes nothing.
        assert_eq!(s.next_wake(now, [t0 + 2 * RESYNC]), Wake::Full(t0 + RESYNC));
        // An overdue deadline wakes now, not before.
        let late = t0 + 2 * RESYNC;
        assert_eq!(s.next_wake(late, []), Wake::Full(late));
        for w in [s.next_wake(now, past), s.next_wake(late, past)] {
            assert!(w.at() >= now);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_of_shards_brings_the_full_pass_forward_only() {
        let t0 = Instant::now();
        let mut s = Schedule::new(RESYNC, 0.0, t0);
        s.full_pass_ended(t0);
        let now = t0 + Duration::from_secs(1);
        s.full_pass_now(now);
        assert!(s.full_due(now));
        s.full_pass_ended(now);
        // Asking for "now" when the deadline is already earlier keeps the earlier one.
        let mut early = Schedule::new(RESYNC, 0.0, t0);
        early.full_pass_now(t0 + RESYNC);
        assert_eq!(early.deadline(), t0);
    }
}
