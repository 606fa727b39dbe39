//! Adaptive pacing: finds the rate a key may call Vapi at, since Vapi publishes none.
//!
//! Design note. A fixed rate is either too slow (a 2,000-agent cold start at 10 writes/s takes
//! 200 s however much Vapi would allow) or too fast (a storm of 429s). [`Pacer`] is an AIMD
//! controller over the lane's token bucket: it raises the bucket's rate while callers queue on it
//! and lowers it when Vapi answers 429, the only signal Vapi gives.
//!
//! - **Demand-limited.** The rate grows only while callers actually waited on the limiter: an
//!   idle lane, or one whose callers never queue, keeps its rate, so a quiet key does not arrive
//!   at its next cold start with a rate nobody ever tested.
//! - **Slow start.** Until the first 429 the rate doubles once per [`GROWTH_INTERVAL`] (250 ms)
//!   while callers wait, up to the max: from the default 10/s a key allowing 200/s is reached in
//!   about a second.
//! - **The first 429 is a measurement.** What the lane was being served over the last
//!   [`WINDOW`] (500 ms) is what Vapi allows, so the rate becomes 0.95 × that served rate
//!   (answers other than 429, counted when they arrive) and slow start ends for good. A 429
//!   before the lane has sent for one growth interval measures nothing (its first burst was
//!   larger than Vapi's) and changes nothing.
//! - **Congestion avoidance.** Afterwards the rate grows by 2 % of itself per second while
//!   callers wait, and a 429 cuts it by ×0.9 — at most once per congestion event: a 429 for a
//!   request sent before the last cut was already in flight when the cut was made, says nothing
//!   about the new rate and cuts nothing.
//! - **Gentle probing.** A key's limit does not move from one second to the next, so once a 429
//!   has marked a rate as too high, growth slows to a quarter of its pace within 5 % of that
//!   rate and beyond it: the probe that finds the limit again costs one 429, not a burst of them
//!   (docs/benchmarks.md, "Pacing", has the figures without and with it).
//! - **Bounds.** Never below 0.1 × the start rate (a run of 429s from another client of the same
//!   key must not park the lane near zero) nor above the configured max.
//!
//! `Retry-After` is not the pacer's business: the lane holds the bucket until then, as it always
//! has; the pacer only sees that the request was throttled.
//!
//! PURE: every method takes the current time as an argument, so the tests drive it with made-up
//! instants and never sleep.
//!
//! Why not the `governor` crate (the rate limiter most Rust services use): its `Quota` is fixed
//! when the limiter is built (boinkor-net/governor#39 and #273 ask for a change at run time; the
//! answer is to build a new limiter, which forgets every queued caller's place), its
//! `until_ready` waiters poll `check()` in a loop and are not served in order (whoever wakes
//! first takes the token), and it sleeps on its own timer rather than tokio's, so the paused-clock
//! tests here would not drive it. The lane needs all three: a rate that changes while callers
//! queue, those callers served first-come first-served at the new rate, and tests on a paused
//! clock. The hand-written bucket (`bucket.rs`, the generic cell rate algorithm governor also
//! uses) does this in a few dozen lines.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How the lanes' rates are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// Start at the configured rates and adapt to what Vapi allows (this module).
    #[default]
    Adaptive,
    /// The configured rates, always; a 429 holds the lane (for `Retry-After`, else a back-off).
    Fixed,
}

impl Pacing {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Adaptive => "adaptive",
            Self::Fixed => "fixed",
        }
    }
}

/// Slow start doubles the rate at most once per this interval.
pub(crate) const GROWTH_INTERVAL: Duration = Duration::from_millis(250);
/// The served rate the first 429 measures is counted over this window: two growth intervals,
/// the one in which slow start crossed the limit and the one before. A longer window reaches
/// back into slow start's lower rates and under-measures (with a whole second, the bench's
/// 200/s limit was still not reached again when its 2,000 creates were done); a shorter one is
/// mostly the server's burst.
pub(crate) const WINDOW: Duration = Duration::from_millis(500);
/// The rate after the first 429, as a share of the served rate measured then.
const FIRST_CUT: f64 = 0.95;
/// The cut of a later congestion event.
const CUT: f64 = 0.9;
/// Growth in congestion avoidance: this share of the current rate per second of waiting.
const GROWTH_PER_SECOND: f64 = 0.02;
/// Near and above the rate a 429 last marked as too high, growth runs at this share of its pace.
const PROBE_SLOWDOWN: f64 = 0.25;
/// "Near": within this share below that rate.
const PROBE_MARGIN: f64 = 0.05;
/// The lowest rate, as a share of the start rate.
const FLOOR: f64 = 0.1;
/// A change smaller than this share of the published rate is not worth re-queueing waiters for.
const PUBLISH_STEP: f64 = 0.01;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    SlowStart,
    Avoidance,
}

/// One lane's rate for one kind of call (reads or writes).
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    rate: f64,
    /// The rate last handed to the limiter.
    published: f64,
    floor: f64,
    max: f64,
    phase: Phase,
    /// Growth has been accounted up to here.
    grown_at: Instant,
    /// The last time a caller waited: demand older than one growth interval has lapsed.
    last_wait: Option<Instant>,
    /// When the last cut was made: 429s for requests sent before it do not cut again.
    cut_at: Option<Instant>,
    /// The rate at which the last cut was made: Vapi said it was too high.
    too_high: Option<f64>,
    /// Arrival times of answers that were served (not 429) within the last [`WINDOW`].
    served: VecDeque<Instant>,
    /// When the first request was sent, so a window younger than [`WINDOW`] is measured as such.
    first_sent: Option<Instant>,
}

impl Pacer {
    /// A pacer at `start` calls per second that never goes above `max` (a max below the start
    /// is the start).
    pub(crate) fn new(start: f64, max: f64, now: Instant) -> Self {
        let start = if start.is_finite() && start > 0.0 {
            start
        } else {
            1.0
        };
        let max = if max.is_finite() {
            max.max(start)
        } else {
            start
        };
        Self {
            rate: start,
            published: start,
            floor: start * FLOOR,
            max,
            phase: Phase::SlowStart,
            grown_at: now,
            last_wait: None,
            cut_at: None,
            too_high: None,
            served: VecDeque::new(),
            first_sent: None,
        }
    }

    /// The current rate, calls per second (the lane reads it from its limiter).
    #[cfg(test)]
    fn rate(&self) -> f64 {
        self.rate
    }

    /// Still in slow start (no 429 yet).
    #[cfg(test)]
    fn slow_start(&self) -> bool {
        self.phase == Phase::SlowStart
    }

    /// A request is sent at `now`; `waited` says whether it queued on the limiter first. The
    /// new rate for the limiter, if it moved enough to be worth applying.
    pub(crate) fn on_send(&mut self, now: Instant, waited: bool) -> Option<f64> {
        self.first_sent.get_or_insert(now);
        if !waited {
            return None;
        }
        // Demand that lapsed for a whole interval starts the growth clock afresh: the idle time
        // in between earns nothing.
        let lapsed = self
            .last_wait
            .is_none_or(|at| now.saturating_duration_since(at) > GROWTH_INTERVAL);
        self.last_wait = Some(now);
        if lapsed {
            self.grown_at = now;
            return None;
        }
        let elapsed = now.saturating_duration_since(self.grown_at);
        match self.phase {
            Phase::SlowStart => {
                if elapsed >= GROWTH_INTERVAL {
                    self.rate = (self.rate * 2.0).min(self.max);
                    self.grown_at = now;
                }
            }
            Phase::Avoidance => {
                let mut pace = GROWTH_PER_SECOND;
                if self
                    .too_high
                    .is_some_and(|high| self.rate >= high * (1.0 - PROBE_MARGIN))
                {
                    pace *= PROBE_SLOWDOWN;
                }
                self.rate = (self.rate * (1.0 + pace * elapsed.as_secs_f64())).min(self.max);
                self.grown_at = now;
            }
        }
        self.publish(false)
    }

    /// An answer other than 429 arrived at `now`.
    pub(crate) fn on_served(&mut self, now: Instant) {
        self.served.push_back(now);
        self.forget_before(now);
    }

    /// A request sent at `sent_at` was answered 429 at `now`. The new rate, if it changed.
    pub(crate) fn on_throttled(&mut self, sent_at: Instant, now: Instant) -> Option<f64> {
        self.forget_before(now);
        match self.phase {
            Phase::SlowStart => {
                // Before the lane has been sending for a growth interval there is no rate to
                // measure: a 429 then says the first burst was larger than Vapi's, not what
                // Vapi allows per second. Slow start goes on (a `Retry-After` still holds).
                let measured = self.served_rate(now)?;
                self.too_high = Some(self.rate);
                self.rate = (measured * FIRST_CUT).min(self.rate);
                self.phase = Phase::Avoidance;
            }
            Phase::Avoidance => {
                if self.cut_at.is_some_and(|cut| sent_at < cut) {
                    return None;
                }
                self.too_high = Some(self.rate);
                self.rate *= CUT;
            }
        }
        self.rate = self.rate.clamp(self.floor, self.max);
        self.cut_at = Some(now);
        self.grown_at = now;
        self.publish(true)
    }

    /// Answers served per second over the last [`WINDOW`] (or since the first request, when
    /// that is more recent); `None` before anything was served or before the lane has sent for
    /// one growth interval (a span of a few milliseconds would make one answer a huge rate).
    fn served_rate(&self, now: Instant) -> Option<f64> {
        let since = self.first_sent?;
        let span = now.saturating_duration_since(since).min(WINDOW);
        if self.served.is_empty() || span < GROWTH_INTERVAL {
            return None;
        }
        Some(self.served.len() as f64 / span.as_secs_f64())
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .served
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > WINDOW)
        {
            self.served.pop_front();
        }
    }

    fn publish(&mut self, always: bool) -> Option<f64> {
        let moved = (self.rate - self.published).abs() >= self.published * PUBLISH_STEP;
        if always || moved {
            self.published = self.rate;
            Some(self.rate)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Callers queue continuously from `from` for `total`, one send every `every`.
    fn busy(p: &mut Pacer, from: Instant, total: Duration, every: Duration) -> Instant {
        let mut t = from;
        while t < from + total {
            p.on_send(t, true);
            t += every;
        }
        t
    }

    #[test]
    fn slow_start_doubles_once_per_interval_up_to_the_max() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10.0, 100.0, t0);
        // The first wait starts the clock; each further 250 ms of waiting doubles the rate.
        assert_eq!(p.on_send(t0, true), None);
        assert_eq!(p.on_send(t0 + ms(100), true), None);
        assert_eq!(p.rate(), 10.0);
        assert_eq!(p.on_send(t0 + ms(250), true), Some(20.0));
        assert_eq!(p.on_send(t0 + ms(300), true), None, "once per interval");
        assert_eq!(p.on_send(t0 + ms(500), true), Some(40.0));
        p.on_send(t0 + ms(700), true);
        assert_eq!(p.on_send(t0 + ms(750), true), Some(80.0));
        p.on_send(t0 + ms(900), true);
        assert_eq!(p.on_send(t0 + ms(1000), true), Some(100.0), "capped");
        p.on_send(t0 + ms(1200), true);
        p.on_send(t0 + ms(1250), true);
        assert_eq!(p.rate(), 100.0);
        assert!(p.slow_start());
    }

    #[test]
    fn no_growth_without_waiting_callers() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10.0, 500.0, t0);
        // Sends that never queued: an idle or under-used lane keeps its rate.
        for i in 0..100 {
            assert_eq!(p.on_send(t0 + ms(i * 100), false), None);
        }
        assert_eq!(p.rate(), 10.0);
        // One wait after a long idle period earns nothing for the idle time...
        assert_eq!(p.on_send(t0 + ms(60_000), true), None);
        assert_eq!(p.rate(), 10.0);
        // ...nor does a wait that comes more than an interval after the previous one.
        assert_eq!(p.on_send(t0 + ms(60_400), true), None);
        assert_eq!(p.rate(), 10.0);
        // Sustained waiting grows it again.
        p.on_send(t0 + ms(60_500), true);
        assert_eq!(p.on_send(t0 + ms(60_650), true), Some(20.0));
    }

    /// Leaves slow start with a measured cut: 100 answers a second served over the second
    /// from `t0`, then a 429 (95/s after it). The instant of the cut.
    fn measured_cut(p: &mut Pacer, t0: Instant) -> Instant {
        p.on_send(t0, true);
        for i in 0..100 {
            p.on_served(t0 + ms(i * 10));
        }
        let at = t0 + ms(1_000);
        assert_eq!(p.on_throttled(at, at), Some(95.0));
        at
    }

    #[test]
    fn the_first_429_sets_the_rate_to_095_of_the_measured_served_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10.0, 500.0, t0);
        // Slow start well past the limit, while 60 answers per second are served.
        let mut t = t0;
        for _ in 0..300 {
            p.on_send(t, true);
            p.on_served(t);
            t += Duration::from_micros(16_667);
        }
        assert!(p.rate() > 100.0, "{}", p.rate());
        let rate = p.on_throttled(t, t).expect("a cut");
        // 30 answers in the last half second (the window), give or take the boundary.
        assert!((rate - 0.95 * 60.0).abs() <= 0.95 * 2.5, "{rate}");
        assert!(!p.slow_start());
    }

    #[test]
    fn a_429_before_there_is_a_rate_to_measure_cuts_nothing() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10.0, 500.0, t0);
        // The first burst overran Vapi's: answers, then a 429, all within 50 ms.
        p.on_send(t0, false);
        p.on_served(t0 + ms(40));
        assert_eq!(p.on_throttled(t0, t0 + ms(50)), None);
        assert_eq!(p.rate(), 10.0);
        assert!(p.slow_start());
    }

    #[test]
    fn congestion_avoidance_grows_by_two_percent_per_second_of_waiting() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100.0, 500.0, t0);
        let cut = measured_cut(&mut p, t0);
        // Far below the rate that was last too high, growth runs at full pace.
        p.too_high = Some(1_000.0);
        let t1 = cut + ms(1_000);
        p.on_send(t1, true);
        let start = p.rate();
        busy(&mut p, t1, ms(10_000), ms(10));
        let grown = p.rate() / start;
        // 2 % a second, compounded per send over 10 s: e^0.2 ≈ 1.22.
        assert!((1.20..=1.23).contains(&grown), "{grown}");
    }

    #[test]
    fn probing_near_and_above_the_rate_that_was_too_high_is_slower() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100.0, 500.0, t0);
        // 95/s after the cut; 100/s was too high.
        let cut = measured_cut(&mut p, t0);
        let t1 = cut + ms(1_000);
        p.on_send(t1, true);
        busy(&mut p, t1, ms(10_000), ms(10));
        // A quarter of the pace: about 0.5 % a second.
        let grown = p.rate() / 95.0;
        assert!((1.04..=1.06).contains(&grown), "{grown}");
    }

    #[test]
    fn one_cut_per_congestion_event() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100.0, 500.0, t0);
        measured_cut(&mut p, t0);
        let t1 = t0 + ms(5_000);
        let before = p.rate();
        // A later 429 cuts ×0.9...
        assert_eq!(p.on_throttled(t1, t1 + ms(50)), Some(before * 0.9));
        // ...and the 429s of requests sent before that cut (in flight then) do not cut again.
        for i in 0..20 {
            assert_eq!(p.on_throttled(t1 + ms(i), t1 + ms(60 + i)), None);
        }
        assert_eq!(p.rate(), before * 0.9);
        // A request sent after the cut that is refused starts a new event.
        assert_eq!(
            p.on_throttled(t1 + ms(100), t1 + ms(150)),
            Some(before * 0.9 * 0.9)
        );
    }

    #[test]
    fn never_below_a_tenth_of_the_start_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100.0, 500.0, t0);
        let mut t = measured_cut(&mut p, t0);
        for _ in 0..200 {
            t += ms(100);
            p.on_throttled(t, t + ms(1));
        }
        assert_eq!(p.rate(), 10.0);
    }

    #[test]
    fn never_above_the_max() {
        let t0 = Instant::now();
        let mut p = Pacer::new(10.0, 50.0, t0);
        busy(&mut p, t0, ms(5_000), ms(10));
        assert_eq!(p.rate(), 50.0);
        p.on_served(t0 + ms(5_000));
        p.on_throttled(t0 + ms(5_000), t0 + ms(5_001));
        busy(&mut p, t0 + ms(6_000), ms(600_000), ms(100));
        assert_eq!(p.rate(), 50.0);
        // A max below the start is the start.
        assert_eq!(Pacer::new(10.0, 5.0, t0).max, 10.0);
    }

    #[test]
    fn small_changes_are_not_published() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100.0, 500.0, t0);
        let cut = measured_cut(&mut p, t0);
        p.too_high = Some(1_000.0);
        // 2 %/s in 10 ms steps: 0.02 % a step; published once the total reaches 1 %.
        let mut published = Vec::new();
        let mut t = cut;
        for _ in 0..100 {
            t += ms(10);
            published.extend(p.on_send(t, true));
        }
        assert!(
            !published.is_empty() && published.len() <= 2,
            "{published:?}"
        );
        assert!(published[0] >= 95.0 * 1.01, "{published:?}");
    }
}
