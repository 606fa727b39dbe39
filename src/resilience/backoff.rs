//! Exponential back-off with jitter, for retries of idempotent calls and for agents that keep
//! failing across passes.
//!
//! Jitter is ±`jitter` around the nominal delay, not "full" jitter (uniform in [0, d]) nor
//! "equal" jitter (d/2 plus uniform in [0, d/2]): the delay stays close to what an operator
//! reads in the journal ("retry in ~8 s") while still spreading agents that failed together.
//! The cap applies after the jitter too, so `max` is a hard bound; at the cap the spread is
//! only downwards, which still de-synchronises.
//!
//! The random draw is an argument so the arithmetic is pure and testable; `delay_random`
//! supplies it. All arithmetic saturates: a failure count from a long outage must not panic.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Hard cap, after jitter.
    pub max: Duration,
    /// Fraction of the nominal delay, e.g. 0.2 for ±20 %; clamped into [0, 1].
    pub jitter: f64,
}

impl Backoff {
    /// Delay before the next attempt after `failures` failures (1 = after the first failure;
    /// 0 = nothing failed, no delay): `base * 2^(failures-1)`, capped at `max`, times a factor
    /// in [1 - jitter, 1 + jitter) chosen by `u` in [0, 1), capped at `max` again.
    pub fn delay(&self, failures: u32, u: f64) -> Duration {
        let Some(doublings) = failures.checked_sub(1) else {
            return Duration::ZERO;
        };
        let nominal = 2u32
            .checked_pow(doublings)
            .and_then(|factor| self.base.checked_mul(factor))
            .unwrap_or(self.max)
            .min(self.max);

        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let u = if u.is_nan() { 0.5 } else { u.clamp(0.0, 1.0) };
        let factor = 1.0 - jitter + 2.0 * jitter * u;
        Duration::try_from_secs_f64(nominal.as_secs_f64() * factor)
            .unwrap_or(nominal)
            .min(self.max)
    }

    /// [`Backoff::delay`] with a fresh random draw.
    pub fn delay_random(&self, failures: u32) -> Duration {
        self.delay(failures, rand::rng().random::<f64>())
    }
}

/// Retry-After from a 429, clamped into [min, max]; None → None. Should `min` exceed `max`,
/// `max` wins: it is the bound that keeps the controller from stalling.
pub fn clamp_retry_after(
    retry_after: Option<Duration>,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    retry_after.map(|d| d.max(min).min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn backoff(jitter: f64) -> Backoff {
        Backoff {
            base: secs(2),
            max: secs(300),
            jitter,
        }
    }

    #[test]
    fn doubles_up_to_the_cap() {
        let b = backoff(0.2);
        let expected = [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300];
        for (i, want) in expected.into_iter().enumerate() {
            let failures = u32::try_from(i).expect("small") + 1;
            assert_eq!(b.delay(failures, 0.5), secs(want), "failures {failures}");
        }
    }

    #[test]
    fn no_failures_no_delay() {
        assert_eq!(backoff(0.2).delay(0, 0.5), Duration::ZERO);
    }

    #[test]
    fn jitter_bounds() {
        let b = backoff(0.2);
        let below_one = 1.0 - f64::EPSILON;
        // (failures, u, expected lower bound, expected upper bound)
        let cases = [
            (
                3,
                0.0,
                Duration::from_millis(6_400),
                Duration::from_millis(6_400),
            ),
            (
                3,
                below_one,
                Duration::from_millis(9_599),
                Duration::from_millis(9_600),
            ),
            (
                1,
                0.0,
                Duration::from_millis(1_600),
                Duration::from_millis(1_600),
            ),
            (
                1,
                below_one,
                Duration::from_millis(2_399),
                Duration::from_millis(2_400),
            ),
            // At the cap jitter only goes down.
            (20, 0.0, secs(240), secs(240)),
            (20, below_one, secs(300), secs(300)),
            // Out-of-range draws are clamped.
            (
                3,
                -5.0,
                Duration::from_millis(6_400),
                Duration::from_millis(6_400),
            ),
            (
                3,
                7.0,
                Duration::from_millis(9_600),
                Duration::from_millis(9_600),
            ),
            (3, f64::NAN, secs(8), secs(8)),
        ];
        for (failures, u, low, high) in cases {
            // Float round-off may move the result by a nanosecond or so.
            let slack = Duration::from_micros(1);
            let d = b.delay(failures, u);
            assert!(
                d + slack >= low && d <= high + slack,
                "failures {failures}, u {u}: {d:?}"
            );
        }
    }

    #[test]
    fn jitter_is_clamped() {
        assert_eq!(backoff(0.0).delay(3, 0.99), secs(8));
        assert_eq!(backoff(f64::NAN).delay(3, 0.99), secs(8));
        assert_eq!(backoff(-1.0).delay(3, 0.99), secs(8));
        assert_eq!(backoff(5.0).delay(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let b = backoff(0.2);
        for failures in [31, 32, 33, 64, 1000, u32::MAX] {
            assert_eq!(b.delay(failures, 0.5), secs(300), "failures {failures}");
        }
        let huge = Backoff {
            base: Duration::MAX,
            max: Duration::MAX,
            jitter: 0.5,
        };
        assert_eq!(huge.delay(1000, 0.99), Duration::MAX);
    }

    #[test]
    fn random_delays_stay_within_bounds() {
        let b = backoff(0.2);
        for _ in 0..1000 {
            let d = b.delay_random(3);
            assert!(
                d >= Duration::from_millis(6_400) && d <= Duration::from_millis(9_600),
                "{d:?}"
            );
        }
    }

    #[test]
    fn clamps_retry_after() {
        let (min, max) = (secs(1), secs(60));
        for (given, want) in [
            (None, None),
            (Some(Duration::ZERO), Some(secs(1))),
            (Some(secs(5)), Some(secs(5))),
            (Some(secs(3600)), Some(secs(60))),
        ] {
            assert_eq!(clamp_retry_after(given, min, max), want, "{given:?}");
        }
        assert_eq!(
            clamp_retry_after(Some(secs(5)), secs(10), secs(2)),
            Some(secs(2))
        );
    }
}
