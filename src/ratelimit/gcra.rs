//! The generic cell rate algorithm (GCRA): a token bucket kept as one
//! number per key, the theoretical arrival time (TAT) of the next request.
//! With `nodelay` semantics (nginx's `limit_req ... nodelay`): `burst`
//! requests may arrive at once, then one every `1 / rate` seconds, so over
//! a time `t` a key gets `burst + ⌊rate · t⌋` requests; nothing is queued.

/// One policy's rate and burst, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    /// Time between two requests at the steady rate.
    interval: u64,
    /// How far ahead of now the TAT may run: `(burst − 1) · interval`.
    tolerance: u64,
}

/// What one check decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests the key may still make right now (after this one).
    pub remaining: u64,
    /// Nanoseconds until the key's bucket is full again.
    pub reset_ns: u64,
    /// For a refused request, nanoseconds until one would be allowed.
    pub retry_after_ns: u64,
}

impl Gcra {
    /// `rate` requests per second (above 0), `burst` at once (at least 1).
    #[must_use]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a positive, finite nanosecond count, clamped to at least 1"
    )]
    pub fn new(rate: f64, burst: u32) -> Self {
        let interval = (1e9 / rate).round().max(1.0) as u64;
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1) - 1)),
        }
    }

    /// Nanoseconds between two requests at the steady rate, and how far
    /// ahead of now the TAT may run.
    pub(crate) fn parts(&self) -> (u64, u64) {
        (self.interval, self.tolerance)
    }

    /// Checks a request at `now` (ns on any monotonic clock, above 0)
    /// against the key's `tat` (0 for a key never seen), updating it when
    /// the request is allowed.
    pub fn check(&self, tat: &mut u64, now: u64) -> Verdict {
        let start = (*tat).max(now);
        let allowed_from = start.saturating_sub(self.tolerance);
        if now >= allowed_from {
            *tat = start + self.interval;
            let headroom = (now + self.tolerance + self.interval).saturating_sub(*tat);
            Verdict {
                allowed: true,
                remaining: headroom / self.interval,
                reset_ns: *tat - now,
                retry_after_ns: 0,
            }
        } else {
            Verdict {
                allowed: false,
                remaining: 0,
                reset_ns: start - now,
                retry_after_ns: allowed_from - now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Gcra;

    const SECOND: u64 = 1_000_000_000;

    /// How many of `count` requests, spread evenly over `span` ns from
    /// `start`, are allowed.
    fn allowed(gcra: &Gcra, tat: &mut u64, start: u64, span: u64, count: u64) -> u64 {
        (0..count)
            .filter(|i| gcra.check(tat, start + span * i / count.max(1)).allowed)
            .count() as u64
    }

    #[test]
    fn burst_at_once_then_the_rate() {
        let gcra = Gcra::new(10.0, 20);
        let mut tat = 0;
        let t0 = SECOND;
        // 100 requests at one instant: exactly the burst.
        assert_eq!(allowed(&gcra, &mut tat, t0, 0, 100), 20);
        // The next is allowed one interval later, not before.
        assert!(!gcra.check(&mut tat, t0 + SECOND / 10 - 1).allowed);
        assert!(gcra.check(&mut tat, t0 + SECOND / 10).allowed);
    }

    #[test]
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "test arithmetic on small positive numbers"
    )]
    fn over_time_a_key_gets_rate_times_time_plus_burst() {
        for (rate, burst, seconds) in [(10.0, 20, 7), (1.0, 1, 30), (250.0, 5, 3), (0.5, 3, 60)] {
            let gcra = Gcra::new(rate, burst);
            let mut tat = 0;
            // A client asking 50 times as fast as allowed, for `seconds`.
            let count = (rate * 50.0) as u64 * seconds;
            let got = allowed(&gcra, &mut tat, SECOND, seconds * SECOND, count);
            let expected = u64::from(burst) + (rate * seconds as f64) as u64;
            assert!(
                got.abs_diff(expected) <= 1,
                "rate {rate} burst {burst} over {seconds}s: {got} allowed, {expected} expected"
            );
        }
    }

    #[test]
    fn verdicts_say_what_is_left_and_when() {
        let gcra = Gcra::new(1.0, 2);
        let mut tat = 0;
        let now = 5 * SECOND;
        let first = gcra.check(&mut tat, now);
        assert!(first.allowed);
        assert_eq!((first.remaining, first.reset_ns), (1, SECOND));
        let second = gcra.check(&mut tat, now);
        assert_eq!(
            (second.allowed, second.remaining, second.reset_ns),
            (true, 0, 2 * SECOND)
        );
        let third = gcra.check(&mut tat, now + SECOND / 4);
        assert!(!third.allowed);
        assert_eq!(third.retry_after_ns, 3 * SECOND / 4);
        assert_eq!(third.reset_ns, 2 * SECOND - SECOND / 4);
        // A refusal does not use up anything.
        assert_eq!(tat, now + 2 * SECOND);
        // A key idle for long starts full again.
        let later = gcra.check(&mut tat, now + 100 * SECOND);
        assert_eq!((later.allowed, later.remaining), (true, 1));
    }
}
