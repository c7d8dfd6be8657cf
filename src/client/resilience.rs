//! Retries that do not make an outage worse: exponential backoff with full
//! jitter, a retry budget, and a circuit breaker per origin.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// When and how often a failed call is tried again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryConfig {
    /// Tries in all, the first included (1: no retries).
    pub attempts: u32,
    /// The first backoff's ceiling; each retry doubles it.
    pub base: Duration,
    /// The largest backoff (and the longest `Retry-After` honoured).
    pub max_backoff: Duration,
    /// Retries allowed per call made, over time: 0.1 lets retries add at
    /// most a tenth to the load an origin sees, however many calls fail.
    pub budget_ratio: f64,
    /// Retries allowed each second whatever the ratio, so a quiet client
    /// can still retry.
    pub budget_per_second: f64,
    /// Statuses that an idempotent request is retried on.
    pub statuses: Vec<u16>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 3,
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            budget_ratio: 0.1,
            budget_per_second: 10.0,
            statuses: vec![502, 503, 504],
        }
    }
}

impl RetryConfig {
    /// No retries at all.
    #[must_use]
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// How long to wait before retry number `retry` (1 for the first):
    /// a uniform draw between zero and `base · 2^(retry-1)`, capped (full
    /// jitter spreads the retries of many clients apart).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }
}

/// Tokens for retries: each call adds `ratio`, each second adds
/// `per_second`, each retry takes one; none left, no retry.
#[derive(Debug)]
pub(crate) struct Budget {
    tokens: Cell<f64>,
    refilled: Cell<Instant>,
}

impl Budget {
    pub(crate) fn new(config: &RetryConfig) -> Self {
        Self {
            tokens: Cell::new(Self::cap(config)),
            refilled: Cell::new(Instant::now()),
        }
    }

    /// At most this many retries are banked: a burst of failures after a
    /// quiet time gets no more than ten (or a second's worth) at once.
    fn cap(config: &RetryConfig) -> f64 {
        config.budget_per_second.max(10.0)
    }

    /// A call was made.
    pub(crate) fn deposit(&self, config: &RetryConfig) {
        self.tokens
            .set((self.tokens.get() + config.budget_ratio).min(Self::cap(config)));
    }

    /// Takes a token for a retry, if there is one.
    pub(crate) fn withdraw(&self, config: &RetryConfig, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled.get());
        self.refilled.set(now);
        let tokens = (self.tokens.get() + elapsed.as_secs_f64() * config.budget_per_second)
            .min(Self::cap(config));
        if tokens >= 1.0 {
            self.tokens.set(tokens - 1.0);
            true
        } else {
            self.tokens.set(tokens);
            false
        }
    }
}

/// When an origin's circuit opens and for how long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit (0: never).
    pub failures: u32,
    /// How long it stays open before one probe is let through.
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 5,
            cooldown: Duration::from_secs(10),
        }
    }
}

/// One origin's circuit: closed (counting consecutive failures), open
/// until a moment, or half-open with one probe in flight.
#[derive(Debug, Default)]
pub(crate) struct Breaker {
    failures: Cell<u32>,
    open_until: Cell<Option<Instant>>,
    probing: Cell<bool>,
}

/// What the breaker lets a call do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Go ahead.
    Yes,
    /// Go ahead as the one probe of a half-open circuit.
    Probe,
    /// Fail at once.
    No,
}

impl Breaker {
    pub(crate) fn admit(&self, config: &BreakerConfig, now: Instant) -> Admit {
        if config.failures == 0 {
            return Admit::Yes;
        }
        match self.open_until.get() {
            None => Admit::Yes,
            Some(until) if now < until || self.probing.get() => Admit::No,
            Some(_) => {
                self.probing.set(true);
                Admit::Probe
            }
        }
    }

    /// The call succeeded (the origin answered below 500): the circuit
    /// closes.
    pub(crate) fn succeeded(&self) {
        self.failures.set(0);
        self.open_until.set(None);
        self.probing.set(false);
    }

    /// The call failed: after enough in a row (or a failed probe) the
    /// circuit opens for the cooldown. Returns whether it opened now.
    pub(crate) fn failed(&self, config: &BreakerConfig, now: Instant) -> bool {
        if config.failures == 0 {
            return false;
        }
        let failures = self.failures.get().saturating_add(1);
        self.failures.set(failures);
        let was_probe = self.probing.replace(false);
        if was_probe || (self.open_until.get().is_none() && failures >= config.failures) {
            self.open_until.set(Some(now + config.cooldown));
            return true;
        }
        false
    }

    /// Whether the circuit is open now.
    pub(crate) fn is_open(&self, now: Instant) -> bool {
        self.open_until.get().is_some_and(|until| now < until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_doubling_ceiling() {
        let config = RetryConfig::default();
        for retry in 1..8 {
            let ceiling = (config.base * (1 << (retry - 1))).min(config.max_backoff);
            for _ in 0..100 {
                assert!(config.backoff(retry) <= ceiling);
            }
        }
        // Full jitter: draws spread over the range, not all at the top.
        let draws: Vec<_> = (0..200).map(|_| config.backoff(3)).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(200)));
    }

    #[test]
    fn the_budget_allows_a_tenth_of_the_calls_once_spent() {
        let config = RetryConfig {
            budget_per_second: 0.0,
            ..RetryConfig::default()
        };
        let budget = Budget::new(&config);
        let now = Instant::now();
        // The ten banked at the start spent, 100 calls earn 10 retries.
        assert_eq!(
            (0..20).filter(|_| budget.withdraw(&config, now)).count(),
            10
        );
        assert!(!budget.withdraw(&config, now));
        for _ in 0..100 {
            budget.deposit(&config);
        }
        let allowed = (0..50).filter(|_| budget.withdraw(&config, now)).count();
        assert!((9..=10).contains(&allowed), "{allowed}");
    }

    #[test]
    fn the_breaker_opens_after_failures_and_closes_after_a_good_probe() {
        let config = BreakerConfig {
            failures: 3,
            cooldown: Duration::from_secs(10),
        };
        let breaker = Breaker::default();
        let now = Instant::now();
        for _ in 0..2 {
            assert_eq!(breaker.admit(&config, now), Admit::Yes);
            assert!(!breaker.failed(&config, now));
        }
        assert!(breaker.failed(&config, now));
        assert_eq!(breaker.admit(&config, now), Admit::No);
        let later = now + Duration::from_secs(11);
        assert_eq!(breaker.admit(&config, later), Admit::Probe);
        // Only one probe at a time.
        assert_eq!(breaker.admit(&config, later), Admit::No);
        // A failed probe opens it again.
        assert!(breaker.failed(&config, later));
        assert_eq!(breaker.admit(&config, later), Admit::No);
        let much_later = later + Duration::from_secs(11);
        assert_eq!(breaker.admit(&config, much_later), Admit::Probe);
        breaker.succeeded();
        assert_eq!(breaker.admit(&config, much_later), Admit::Yes);
    }
}
