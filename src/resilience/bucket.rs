//! Token buckets pace calls to Vapi so a pass over many agents stays under the rate Vapi
//! tolerates instead of discovering it through 429s. Reads and writes get a bucket each per
//! credential; the caller composes them.
//!
//! The bucket is kept as a single instant, "when it will be full again" (the generic cell rate
//! algorithm), rather than as a fractional token count: with integer `Instant`/`Duration`
//! arithmetic, the instant `try_take` names as the next token is exactly the one at which a
//! token is there, with no floating-point drift between the two.
//!
//! A 429 empties the bucket until the instant Vapi named, and it refills from zero from there:
//! the first call after a hold comes one token interval after it, which is conservative on
//! purpose, since the limit was just exceeded.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::later;

/// The sustained rate and how many calls may go at once after a quiet period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens earned per second; must be > 0.
    pub per_second: f64,
    /// Capacity; must be >= 1.
    pub burst: u32,
}

/// A rate below one token an hour (including zero, negative and NaN) is treated as one an
/// hour: a bad setting then slows the controller down rather than letting it hammer Vapi or
/// overflowing time arithmetic.
const SLOWEST_INTERVAL: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    /// Time to earn one token.
    interval: Duration,
    /// Time to earn a full bucket: how far `full_at` may run ahead of now.
    window: Duration,
    /// When the bucket will be full again; at or before now means full.
    full_at: Instant,
    /// The latest 429 hold, so waiters that reserved before it can notice it.
    held_until: Option<Instant>,
}

impl TokenBucket {
    /// Starts full.
    pub fn new(rate: Rate, now: Instant) -> Self {
        let interval = Duration::try_from_secs_f64(1.0 / rate.per_second)
            .unwrap_or(SLOWEST_INTERVAL)
            .clamp(Duration::from_nanos(1), SLOWEST_INTERVAL);
        Self {
            rate,
            interval,
            window: interval.saturating_mul(rate.burst.max(1)),
            full_at: now,
            held_until: None,
        }
    }

    /// Takes one token at `now` if available (Ok), else Err(the Instant at which one token
    /// will be available).
    pub fn try_take(&mut self, now: Instant) -> Result<(), Instant> {
        let (at, full_at) = self.next_token(now);
        if at <= now {
            self.full_at = full_at;
            Ok(())
        } else {
            Err(at)
        }
    }

    /// A 429 told us to back off: no token is available before `until` (empties the bucket
    /// and sets a hold-until).
    pub fn hold_until(&mut self, until: Instant) {
        self.full_at = self.full_at.max(later(until, self.window));
        self.held_until = self.held_until.max(Some(until));
    }

    /// The rate as given, before any sanitising.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes the next token whenever it comes and says when that is. Waiters that reserve
    /// rather than retry are served in order and cannot over-take each other.
    fn reserve(&mut self, now: Instant) -> Instant {
        let (at, full_at) = self.next_token(now);
        self.full_at = full_at;
        at
    }

    /// When the next token is available, and when the bucket would be full again after it is
    /// taken.
    fn next_token(&self, now: Instant) -> (Instant, Instant) {
        let full_at = later(self.full_at.max(now), self.interval);
        let at = full_at
            .checked_sub(self.window)
            .map_or(now, |at| at.max(now));
        (at, full_at)
    }
}

/// A shareable limiter: `acquire().await` waits until a token is available; many tasks may
/// wait concurrently and each gets its own token (no thundering herd that over-takes).
///
/// It reads tokio's clock (converted to std `Instant`s for the bucket), so tests with paused
/// time run instantly and deterministically.
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<Mutex<TokenBucket>>,
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            inner: Arc::new(Mutex::new(TokenBucket::new(rate, now()))),
        }
    }

    /// Dropping this future while it waits wastes its token, which only errs on the slow side.
    pub async fn acquire(&self) {
        loop {
            let at = self.bucket().reserve(now());
            if at > now() {
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            }
            // A 429 that arrived while we waited voids a token that falls inside its hold.
            if self.bucket().held_until.is_none_or(|until| at >= until) {
                return;
            }
        }
    }

    pub fn hold_until(&self, until: tokio::time::Instant) {
        self.bucket().hold_until(until.into_std());
    }

    fn bucket(&self) -> MutexGuard<'_, TokenBucket> {
        // Nothing panics while the lock is held, so a poisoned bucket is still consistent.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn rate(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }

    /// How many tokens `try_take` hands out at `now`, and when the next one comes.
    fn drain(bucket: &mut TokenBucket, now: Instant) -> (u32, Instant) {
        let mut taken = 0;
        loop {
            match bucket.try_take(now) {
                Ok(()) => taken += 1,
                Err(next) => return (taken, next),
            }
        }
    }

    #[test]
    fn starts_full_with_burst_tokens() {
        for burst in [1, 5, 20] {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate(10.0, burst), t0);
            assert_eq!(drain(&mut b, t0), (burst, t0 + ms(100)), "burst {burst}");
            assert_eq!(b.rate(), rate(10.0, burst));
        }
    }

    #[test]
    fn refills_by_elapsed_time_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10.0, 5), t0);
        drain(&mut b, t0);
        // (time since the previous step, tokens available then): partial tokens carry over,
        // and a long pause only refills up to the burst.
        let mut now = t0;
        for (elapsed, tokens) in [(ms(50), 0), (ms(300), 3), (ms(150), 2), (ms(10_000), 5)] {
            now += elapsed;
            let (taken, next) = drain(&mut b, now);
            assert_eq!(taken, tokens, "at {:?}", now - t0);
            assert!(next > now);
        }
    }

    #[test]
    fn fractional_rates() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(0.5, 1), t0);
        assert_eq!(b.try_take(t0), Ok(()));
        assert_eq!(b.try_take(t0 + ms(1_000)), Err(t0 + ms(2_000)));
        assert_eq!(b.try_take(t0 + ms(1_999)), Err(t0 + ms(2_000)));
        assert_eq!(b.try_take(t0 + ms(2_000)), Ok(()));
        assert_eq!(b.try_take(t0 + ms(2_000)), Err(t0 + ms(4_000)));
    }

    #[test]
    fn try_take_names_the_exact_next_token_instant() {
        for r in [rate(3.0, 2), rate(7.0, 1), rate(0.3, 4), rate(1000.0, 10)] {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(r, t0);
            let mut now = t0;
            for _ in 0..50 {
                match b.try_take(now) {
                    Ok(()) => {}
                    Err(next) => {
                        assert!(next > now);
                        let just_before = next - Duration::from_nanos(1);
                        assert_eq!(b.try_take(just_before), Err(next), "{r:?}");
                        assert_eq!(b.try_take(next), Ok(()), "{r:?}");
                        now = next;
                    }
                }
            }
        }
    }

    #[test]
    fn hold_until_blocks_then_refills_from_zero() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10.0, 5), t0);
        let until = t0 + ms(10_000);
        b.hold_until(until);
        assert_eq!(b.try_take(t0), Err(until + ms(100)));
        assert_eq!(b.try_take(t0 + ms(5_000)), Err(until + ms(100)));
        assert_eq!(b.try_take(until), Err(until + ms(100)));
        assert_eq!(drain(&mut b, until + ms(300)), (3, until + ms(400)));
        assert_eq!(drain(&mut b, until + ms(60_000)).0, 5);
    }

    #[test]
    fn a_hold_never_shortens_a_longer_one() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10.0, 5), t0);
        b.hold_until(t0 + ms(10_000));
        b.hold_until(t0 + ms(2_000));
        assert_eq!(b.try_take(t0 + ms(5_000)), Err(t0 + ms(10_100)));
    }

    #[test]
    fn a_hold_in_the_past_has_already_refilled() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10.0, 5), t0);
        b.hold_until(t0 + ms(1_000));
        assert_eq!(drain(&mut b, t0 + ms(2_000)).0, 5);
    }

    #[test]
    fn invalid_rates_are_slow_not_fast() {
        for bad in [0.0, -1.0, f64::NAN, 1e-300] {
            let t0 = Instant::now();
            let mut b = TokenBucket::new(rate(bad, 0), t0);
            assert_eq!(drain(&mut b, t0), (1, t0 + SLOWEST_INTERVAL), "{bad}");
        }
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(f64::INFINITY, 3), t0);
        assert_eq!(drain(&mut b, t0), (3, t0 + Duration::from_nanos(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_sequential_acquires() {
        let limiter = Limiter::new(rate(10.0, 5));
        let start = tokio::time::Instant::now();
        for _ in 0..25 {
            limiter.acquire().await;
        }
        // 5 at once, then 20 at 10/s.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= ms(1_900) && elapsed <= ms(2_100),
            "elapsed {elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_acquirers_never_exceed_the_rate() {
        let r = rate(10.0, 5);
        let limiter = Limiter::new(r);
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..40)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire().await;
                    tokio::time::Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.expect("task"));
        }
        times.sort();

        let limit = r.burst as usize + r.per_second as usize;
        for (i, from) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|t| t.duration_since(*from) <= ms(1_000))
                .count();
            assert!(
                in_window <= limit,
                "{in_window} tokens within 1 s of {from:?}"
            );
        }
        // Each task got its own token: 5 at once, then 35 at 10/s.
        let last = times.last().expect("times").duration_since(start);
        assert!(last >= ms(3_400) && last <= ms(3_600), "last at {last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_hold_delays_waiters_that_reserved_before_it() {
        let limiter = Limiter::new(rate(10.0, 5));
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        let waiter = tokio::spawn({
            let limiter = limiter.clone();
            async move {
                limiter.acquire().await;
                tokio::time::Instant::now()
            }
        });
        // Let the waiter reserve its token (due at 100 ms) before the 429 arrives.
        tokio::task::yield_now().await;
        limiter.hold_until(start + ms(1_000));

        let woke = waiter.await.expect("task").duration_since(start);
        assert!(woke >= ms(1_100) && woke <= ms(1_150), "woke at {woke:?}");

        limiter.acquire().await;
        let next = start.elapsed();
        assert!(next >= ms(1_200) && next <= ms(1_250), "next at {next:?}");
    }
}
