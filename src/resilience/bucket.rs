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
//!
//! The rate can change in place (adaptive pacing, `pace.rs`). The bucket keeps its fill level
//! in tokens across the change, and the [`Limiter`]'s queued callers are given their places again
//! at the new rate, in the order they came: a rate raised while 60 callers queue serves them at
//! the new rate at once rather than after the old queue drains, and nobody over-takes anybody.
//! Converting the fill level goes through floating point once per change, which rounds by a
//! nanosecond at most; the arithmetic between changes stays integer.

use std::collections::BTreeMap;
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

/// Time to earn one token at `per_second`, within the sane range.
fn interval_of(per_second: f64) -> Duration {
    Duration::try_from_secs_f64(1.0 / per_second)
        .unwrap_or(SLOWEST_INTERVAL)
        .clamp(Duration::from_nanos(1), SLOWEST_INTERVAL)
}

impl TokenBucket {
    /// Starts full.
    pub fn new(rate: Rate, now: Instant) -> Self {
        let interval = interval_of(rate.per_second);
        Self {
            rate,
            interval,
            window: interval.saturating_mul(rate.burst.max(1)),
            full_at: now,
            held_until: None,
        }
    }

    /// Changes the rate at `now`, keeping the burst and the fill level: the tokens owed (how
    /// far `full_at` runs ahead) are owed at the new rate, less `released` reservations that
    /// are handed back to be made again. A hold in force stays as it is: what is owed is
    /// counted from its end, and the bucket stays empty until then.
    pub fn set_rate(&mut self, per_second: f64, now: Instant, released: u32) {
        let held = self.held_until.filter(|until| *until > now);
        let base = held.unwrap_or(now);
        let owed = self.full_at.saturating_duration_since(base).as_secs_f64()
            / self.interval.as_secs_f64();
        let mut owed = (owed - f64::from(released)).max(0.0);
        let burst = self.rate.burst.max(1);
        if held.is_some() {
            owed = owed.max(f64::from(burst));
        }
        self.rate.per_second = per_second;
        self.interval = interval_of(per_second);
        self.window = self.interval.saturating_mul(burst);
        let ahead =
            Duration::try_from_secs_f64(owed * self.interval.as_secs_f64()).unwrap_or(self.window);
        self.full_at = later(base, ahead);
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
/// Callers are served in the order they came: each takes a ticket and the next token time in
/// that order, and a rate change gives every queued ticket a new time, again in ticket order.
///
/// It reads tokio's clock (converted to std `Instant`s for the bucket), so tests with paused
/// time run instantly and deterministically.
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<Mutex<Queue>>,
    /// Bumped when queued callers were given new times, so each looks up its own again.
    moved: Arc<tokio::sync::watch::Sender<u64>>,
}

/// The bucket and the callers waiting on it.
#[derive(Debug)]
struct Queue {
    bucket: TokenBucket,
    /// Each queued caller's ticket and the time its token is due.
    waiting: BTreeMap<u64, Instant>,
    next_ticket: u64,
}

impl Queue {
    /// Reserves the next token for a new ticket.
    fn enqueue(&mut self, now: Instant) -> (u64, Instant) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let at = self.bucket.reserve(now);
        self.waiting.insert(ticket, at);
        (ticket, at)
    }
}

/// Takes a ticket out of the queue when its caller is done or stops waiting (a dropped
/// `acquire`), so a later rate change does not keep a place for it.
struct Ticket<'a> {
    limiter: &'a Limiter,
    ticket: u64,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.limiter.queue().waiting.remove(&self.ticket);
    }
}

impl Limiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Queue {
                bucket: TokenBucket::new(rate, now()),
                waiting: BTreeMap::new(),
                next_ticket: 0,
            })),
            moved: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Waits for a token; `true` when the caller had to wait for it (what adaptive pacing
    /// counts as demand). Dropping this future while it waits wastes its token, which only
    /// errs on the slow side.
    pub async fn acquire(&self) -> bool {
        let mut moved = self.moved.subscribe();
        let (ticket, mut at) = self.queue().enqueue(now());
        let mut place = Ticket {
            limiter: self,
            ticket,
        };
        let mut waited = false;
        loop {
            if at > now() {
                waited = true;
                tokio::select! {
                    () = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                    // The sender lives as long as `self`: `changed` cannot fail here.
                    _ = moved.changed() => {}
                }
                // A rate change may have moved this ticket either way.
                if let Some(&due) = self.queue().waiting.get(&place.ticket) {
                    at = due;
                }
                if at > now() {
                    continue;
                }
            }
            let mut q = self.queue();
            q.waiting.remove(&place.ticket);
            // A 429 that arrived while we waited voids a token that falls inside its hold.
            if q.bucket.held_until.is_none_or(|until| at >= until) {
                return waited;
            }
            (place.ticket, at) = q.enqueue(now());
        }
    }

    pub fn hold_until(&self, until: tokio::time::Instant) {
        self.queue().bucket.hold_until(until.into_std());
    }

    /// Changes the rate in place. Callers already queued are given their places again at the
    /// new rate, in the order they came, so a higher rate serves them at once.
    pub fn set_rate(&self, per_second: f64) {
        let now = now();
        {
            let mut q = self.queue();
            let queued: Vec<u64> = q
                .waiting
                .iter()
                .filter(|(_, at)| **at > now)
                .map(|(ticket, _)| *ticket)
                .collect();
            let released = u32::try_from(queued.len()).unwrap_or(u32::MAX);
            q.bucket.set_rate(per_second, now, released);
            for ticket in queued {
                let at = q.bucket.reserve(now);
                q.waiting.insert(ticket, at);
            }
        }
        self.moved.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The current rate, calls per second.
    pub fn rate(&self) -> f64 {
        self.queue().bucket.rate().per_second
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while the lock is held, so a poisoned queue is still consistent.
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

    #[test]
    fn a_rate_change_keeps_the_fill_level_in_tokens() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10.0, 5), t0);
        assert_eq!(drain(&mut b, t0), (5, t0 + ms(100)));
        // Five tokens owed at 10/s is half a second; at 100/s it is 50 ms.
        b.set_rate(100.0, t0, 0);
        assert_eq!(b.rate(), rate(100.0, 5));
        assert_eq!(b.try_take(t0), Err(t0 + ms(10)));
        assert_eq!(drain(&mut b, t0 + ms(50)).0, 5);
        // Slower again: the 5 just taken are owed at 2/s.
        b.set_rate(2.0, t0 + ms(50), 0);
        assert_eq!(b.try_take(t0 + ms(50)), Err(t0 + ms(550)));
    }

    #[test]
    fn a_rate_change_during_a_hold_keeps_the_hold() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(rate(10.0, 5), t0);
        let until = t0 + ms(1_000);
        b.hold_until(until);
        b.set_rate(100.0, t0, 0);
        assert_eq!(b.try_take(t0 + ms(500)), Err(until + ms(10)));
        assert_eq!(drain(&mut b, until + ms(50)).0, 5);
    }

    /// Spawns `n` acquirers in order; each reports its index and when it got its token.
    fn acquirers(
        limiter: &Limiter,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<(usize, tokio::time::Instant)>> {
        (0..n)
            .map(|i| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire().await;
                    (i, tokio::time::Instant::now())
                })
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_change_moves_queued_waiters_at_once_and_in_order() {
        let limiter = Limiter::new(rate(10.0, 5));
        let start = tokio::time::Instant::now();
        let tasks = acquirers(&limiter, 40);
        // Every task has taken its ticket: 5 at once, 35 queued up to 3.5 s out at 10/s.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        limiter.set_rate(100.0);
        assert_eq!(limiter.rate(), 100.0);
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.expect("task"));
        }
        // The queue drains at the new rate: 35 more at 100/s, the first 10 ms out (not 3.5 s).
        let last = done.iter().map(|(_, t)| *t).max().expect("times") - start;
        assert!(last >= ms(340) && last <= ms(360), "last at {last:?}");
        // First come, first served: token times rise with the order of arrival.
        done.sort_by_key(|(i, _)| *i);
        for pair in done.windows(2) {
            assert!(pair[0].1 <= pair[1].1, "{pair:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_cut_slows_queued_waiters() {
        let limiter = Limiter::new(rate(100.0, 1));
        let start = tokio::time::Instant::now();
        let tasks = acquirers(&limiter, 11);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        limiter.set_rate(10.0);
        let mut last = Duration::ZERO;
        for task in tasks {
            last = last.max(task.await.expect("task").1 - start);
        }
        // One at once, then 10 at 10/s.
        assert!(last >= ms(990) && last <= ms(1_010), "last at {last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_waiter_gives_up_its_place() {
        let limiter = Limiter::new(rate(10.0, 1));
        limiter.acquire().await;
        let waiting = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await }
        });
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        assert!(limiter.queue().waiting.is_empty());
        // Its token (due at 100 ms) is spent: the next one comes at 200 ms.
        let start = tokio::time::Instant::now();
        assert!(limiter.acquire().await, "waited");
        assert_eq!(start.elapsed(), ms(200));
    }
}
