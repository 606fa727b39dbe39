//! A circuit breaker per credential. When Vapi is failing (5xx, timeouts, transport errors),
//! calling it for every agent only adds load to an already struggling service and fills the
//! journal with identical errors; the breaker turns that into one probe per open period.
//!
//! Only server-side trouble counts. A 4xx is an answer about *our* request, so it is
//! [`CallOutcome::Neutral`]: it never trips the breaker and never heals a closed one's failure
//! count. In half-open, though, a Neutral answer *closes* the breaker: the probe's question is
//! "is Vapi up?", and any answer at all says yes.
//!
//! The open period doubles after each failed probe (capped) so a long outage is probed less
//! and less often, and it returns to the base period once Vapi answers again.

use std::time::{Duration, Instant};

use super::later;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// The first open period.
    pub open_base: Duration,
    /// Cap of the open period, which doubles after every failed probe.
    pub open_max: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(5 * 60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

/// What a caller must do before a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Call normally and report the outcome.
    Allowed,
    /// This call is the single probe of a half-open breaker; its outcome decides the state.
    Probe,
    /// Don't call; asking again before `until` is pointless.
    Rejected { until: Instant },
}

/// The outcome of an admitted call, as far as the breaker is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Success,
    /// A 5xx, a timeout or a transport error.
    Failure,
    /// A 4xx (400/401/403/404/409/429): neither trips nor heals a closed breaker, but closes a
    /// half-open one, because Vapi answered.
    Neutral,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    state: BreakerState,
    consecutive_failures: u32,
    /// The period the next opening lasts; grows while probes fail.
    period: Duration,
    open_until: Option<Instant>,
    /// While half-open: until when the outstanding probe holds the only slot.
    probe_until: Option<Instant>,
    last_transition: Option<Instant>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            period: base_period(&config),
            open_until: None,
            probe_until: None,
            last_transition: None,
        }
    }

    /// The state as of the last `admit`/`record`: an open breaker whose period is over still
    /// reports `Open` until someone asks to call, because only a call can probe.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// When the current open period ends (None unless open).
    pub fn open_until(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Open => self.open_until,
            BreakerState::Closed | BreakerState::HalfOpen => None,
        }
    }

    /// Time of the last state transition (None if never transitioned).
    pub fn last_transition(&self) -> Option<Instant> {
        self.last_transition
    }

    /// Whether [`Breaker::admit`] would let a call through at `now`, without asking: no state
    /// changes and no probe is taken.
    pub fn would_admit(&self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => self.open_until.is_none_or(|until| now >= until),
            BreakerState::HalfOpen => self.probe_until.is_none_or(|until| now >= until),
        }
    }

    /// Asks to make a call at `now`.
    ///
    /// A probe's slot is leased for `open_base`: a caller that drops its probe without
    /// recording an outcome must not leave the breaker half-open and rejecting forever, so
    /// once the lease is over the next caller becomes the probe.
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::Open => match self.open_until {
                Some(until) if now < until => Admission::Rejected { until },
                _ => {
                    self.transition(BreakerState::HalfOpen, now);
                    self.open_until = None;
                    self.grant_probe(now)
                }
            },
            BreakerState::HalfOpen => match self.probe_until {
                Some(until) if now < until => Admission::Rejected { until },
                _ => self.grant_probe(now),
            },
        }
    }

    /// Reports the outcome of an admitted call.
    ///
    /// Outcomes arriving while open come from calls admitted before it opened; they are stale
    /// evidence, so a failure is counted but neither kind changes the open period: only a
    /// probe ends it.
    pub fn record(&mut self, now: Instant, outcome: CallOutcome) {
        match (self.state, outcome) {
            (BreakerState::Closed, CallOutcome::Success)
            | (BreakerState::HalfOpen, CallOutcome::Success | CallOutcome::Neutral) => {
                self.close(now);
            }
            (BreakerState::Closed, CallOutcome::Failure) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= self.config.failure_threshold.max(1) {
                    self.open(now);
                }
            }
            (BreakerState::HalfOpen, CallOutcome::Failure) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.period = self
                    .period
                    .checked_mul(2)
                    .unwrap_or(self.config.open_max)
                    .min(self.config.open_max);
                self.open(now);
            }
            (BreakerState::Open, CallOutcome::Failure) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            }
            (BreakerState::Open, CallOutcome::Success | CallOutcome::Neutral)
            | (BreakerState::Closed, CallOutcome::Neutral) => {}
        }
    }

    /// Operator reset: Closed, counters and period reset.
    pub fn reset(&mut self, now: Instant) {
        self.close(now);
    }

    fn grant_probe(&mut self, now: Instant) -> Admission {
        self.probe_until = Some(later(now, self.config.open_base));
        Admission::Probe
    }

    fn open(&mut self, now: Instant) {
        self.transition(BreakerState::Open, now);
        self.open_until = Some(later(now, self.period));
        self.probe_until = None;
    }

    fn close(&mut self, now: Instant) {
        self.transition(BreakerState::Closed, now);
        self.consecutive_failures = 0;
        self.period = base_period(&self.config);
        self.open_until = None;
        self.probe_until = None;
    }

    fn transition(&mut self, to: BreakerState, now: Instant) {
        if self.state != to {
            self.state = to;
            self.last_transition = Some(now);
        }
    }
}

/// A base above the cap would make the first period longer than any later one.
fn base_period(config: &BreakerConfig) -> Duration {
    config.open_base.min(config.open_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A breaker opened at `t0` by `threshold` failures.
    fn opened(t0: Instant) -> Breaker {
        let mut b = Breaker::new(BreakerConfig::default());
        for _ in 0..5 {
            assert_eq!(b.admit(t0), Admission::Allowed);
            b.record(t0, CallOutcome::Failure);
        }
        assert_eq!(b.state(), BreakerState::Open);
        b
    }

    #[test]
    fn opens_exactly_at_the_threshold() {
        for threshold in [1, 2, 5] {
            let t0 = Instant::now();
            let mut b = Breaker::new(BreakerConfig {
                failure_threshold: threshold,
                ..BreakerConfig::default()
            });
            for n in 1..threshold {
                b.record(t0, CallOutcome::Failure);
                assert_eq!(
                    b.state(),
                    BreakerState::Closed,
                    "threshold {threshold}, n {n}"
                );
                assert_eq!(b.consecutive_failures(), n);
            }
            b.record(t0, CallOutcome::Failure);
            assert_eq!(b.state(), BreakerState::Open, "threshold {threshold}");
            assert_eq!(b.open_until(), Some(t0 + secs(5)));
        }
    }

    #[test]
    fn zero_threshold_behaves_as_one() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 0,
            ..BreakerConfig::default()
        });
        assert_eq!(b.admit(t0), Admission::Allowed);
        b.record(t0, CallOutcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn rejects_during_the_open_period() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        for dt in [0, 1, 4] {
            assert_eq!(
                b.admit(t0 + secs(dt)),
                Admission::Rejected {
                    until: t0 + secs(5)
                },
                "at +{dt}s"
            );
            assert_eq!(b.state(), BreakerState::Open);
        }
    }

    #[test]
    fn half_open_admits_exactly_one_probe() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let t5 = t0 + secs(5);
        assert_eq!(b.admit(t5), Admission::Probe);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.open_until(), None);
        // While the probe is out, everyone else waits for its lease.
        for dt in [0, 1, 4] {
            assert_eq!(
                b.admit(t5 + secs(dt)),
                Admission::Rejected {
                    until: t5 + secs(5)
                },
                "at +{dt}s"
            );
        }
        // A probe that never reported gives its slot to the next caller.
        assert_eq!(b.admit(t5 + secs(5)), Admission::Probe);
        assert_eq!(
            b.admit(t5 + secs(6)),
            Admission::Rejected {
                until: t5 + secs(10)
            }
        );
    }

    #[test]
    fn failed_probes_double_the_period_up_to_the_cap() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let expected = [5, 10, 20, 40, 80, 160, 300, 300, 300];
        let mut now = t0;
        for (i, period) in expected.into_iter().enumerate() {
            let until = b.open_until().expect("open");
            assert_eq!(until - now, secs(period), "opening #{i}");
            assert_eq!(
                b.admit(until - Duration::from_millis(1)),
                Admission::Rejected { until }
            );
            assert_eq!(b.admit(until), Admission::Probe);
            now = until + secs(1);
            b.record(now, CallOutcome::Failure);
            assert_eq!(b.state(), BreakerState::Open);
        }
    }

    #[test]
    fn answered_probe_closes_and_resets_the_period() {
        for outcome in [CallOutcome::Success, CallOutcome::Neutral] {
            let t0 = Instant::now();
            let mut b = opened(t0);
            // Two failed probes: the period is now 20 s.
            let mut now = t0;
            for _ in 0..2 {
                now = b.open_until().expect("open");
                assert_eq!(b.admit(now), Admission::Probe);
                b.record(now, CallOutcome::Failure);
            }
            assert_eq!(b.open_until(), Some(now + secs(20)));

            now += secs(20);
            assert_eq!(b.admit(now), Admission::Probe);
            b.record(now, outcome);
            assert_eq!(b.state(), BreakerState::Closed, "{outcome:?}");
            assert_eq!(b.consecutive_failures(), 0);
            assert_eq!(b.admit(now), Admission::Allowed);

            // The next opening starts from the base period again.
            for _ in 0..5 {
                b.record(now, CallOutcome::Failure);
            }
            assert_eq!(b.open_until(), Some(now + secs(5)), "{outcome:?}");
        }
    }

    #[test]
    fn neutral_never_opens_nor_heals_a_closed_breaker() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig::default());
        for _ in 0..100 {
            b.record(t0, CallOutcome::Neutral);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.last_transition(), None);

        for _ in 0..4 {
            b.record(t0, CallOutcome::Failure);
            b.record(t0, CallOutcome::Neutral);
        }
        assert_eq!(b.consecutive_failures(), 4);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn success_in_closed_resets_the_counter() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig::default());
        for _ in 0..3 {
            for _ in 0..4 {
                b.record(t0, CallOutcome::Failure);
            }
            assert_eq!(b.consecutive_failures(), 4);
            b.record(t0, CallOutcome::Success);
            assert_eq!(b.consecutive_failures(), 0);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.last_transition(), None);
    }

    #[test]
    fn late_outcomes_while_open_do_not_end_the_period() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        b.record(t0 + secs(1), CallOutcome::Success);
        b.record(t0 + secs(1), CallOutcome::Neutral);
        b.record(t0 + secs(1), CallOutcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.open_until(), Some(t0 + secs(5)));
        assert_eq!(b.consecutive_failures(), 6);
    }

    #[test]
    fn reset_closes_and_resets_everything() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let probe_at = b.open_until().expect("open");
        assert_eq!(b.admit(probe_at), Admission::Probe);
        b.record(probe_at, CallOutcome::Failure); // period now 10 s

        let t = probe_at + secs(1);
        b.reset(t);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.open_until(), None);
        assert_eq!(b.last_transition(), Some(t));
        assert_eq!(b.admit(t), Admission::Allowed);
        for _ in 0..5 {
            b.record(t, CallOutcome::Failure);
        }
        assert_eq!(b.open_until(), Some(t + secs(5)));
    }

    #[test]
    fn last_transition_follows_every_transition() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig::default());
        assert_eq!(b.last_transition(), None);

        // (time offset, action, expected state, expected last transition offset)
        enum Step {
            Admit,
            Record(CallOutcome),
        }
        let steps = [
            (
                1,
                Step::Record(CallOutcome::Failure),
                BreakerState::Closed,
                None,
            ),
            (
                2,
                Step::Record(CallOutcome::Failure),
                BreakerState::Closed,
                None,
            ),
            (
                3,
                Step::Record(CallOutcome::Failure),
                BreakerState::Closed,
                None,
            ),
            (
                4,
                Step::Record(CallOutcome::Failure),
                BreakerState::Closed,
                None,
            ),
            (
                5,
                Step::Record(CallOutcome::Failure),
                BreakerState::Open,
                Some(5),
            ),
            (7, Step::Admit, BreakerState::Open, Some(5)),
            (10, Step::Admit, BreakerState::HalfOpen, Some(10)),
            (11, Step::Admit, BreakerState::HalfOpen, Some(10)),
            (
                12,
                Step::Record(CallOutcome::Failure),
                BreakerState::Open,
                Some(12),
            ),
            (22, Step::Admit, BreakerState::HalfOpen, Some(22)),
            (
                23,
                Step::Record(CallOutcome::Success),
                BreakerState::Closed,
                Some(23),
            ),
            (
                24,
                Step::Record(CallOutcome::Success),
                BreakerState::Closed,
                Some(23),
            ),
        ];
        for (dt, step, state, transition) in steps {
            let now = t0 + secs(dt);
            match step {
                Step::Admit => {
                    b.admit(now);
                }
                Step::Record(outcome) => b.record(now, outcome),
            }
            assert_eq!(b.state(), state, "at +{dt}s");
            assert_eq!(
                b.last_transition(),
                transition.map(|s| t0 + secs(s)),
                "at +{dt}s"
            );
        }
    }

    #[test]
    fn base_above_cap_is_capped() {
        let t0 = Instant::now();
        let mut b = Breaker::new(BreakerConfig {
            failure_threshold: 1,
            open_base: secs(600),
            open_max: secs(60),
        });
        b.record(t0, CallOutcome::Failure);
        assert_eq!(b.open_until(), Some(t0 + secs(60)));
    }

    #[test]
    fn state_names() {
        for (state, name) in [
            (BreakerState::Closed, "closed"),
            (BreakerState::Open, "open"),
            (BreakerState::HalfOpen, "half-open"),
        ] {
            assert_eq!(state.as_str(), name);
            assert_eq!(
                serde_json::to_value(state).expect("json"),
                serde_json::Value::from(name)
            );
        }
    }
}
