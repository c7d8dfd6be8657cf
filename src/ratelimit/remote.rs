//! Policies whose state is in Redis (`backend = "redis"`): the same GCRA
//! as the shards' tables, run by one Lua script per check on the Redis
//! server's clock, so every host of a fleet enforces one limit per client.
//! Each shard keeps one connection; its checks are pipelined on it.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use super::{Key, Policy, Verdict};
use crate::observe::log::OncePerSecond;
use crate::redis::{Redis, RedisConfig, RedisError, RedisErrorKind, Script};

/// The GCRA in microseconds (Lua numbers are doubles: exact to 2^53 µs).
/// ARGV: interval, tolerance. Returns allowed, remaining, reset, retry
/// after (µs); the key expires when its bucket is full again.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local start = math.max(tat, now)
local allowed_from = start - tolerance
if now < allowed_from then
  return {0, 0, start - now, allowed_from - now}
end
local new_tat = start + interval
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
local headroom = now + tolerance + interval - new_tat
return {1, math.floor(headroom / interval), new_tat - now, 0}
";

/// After a failed connect, checks fail at once for this long (no connect
/// storm while Redis is down).
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// One shard's link to the fleet's Redis.
pub(crate) struct Remote {
    url: String,
    timeout: Duration,
    redis: RefCell<Option<Redis>>,
    failed_at: Cell<Option<Instant>>,
    script: Script,
    errors: Cell<u64>,
    last_log: OncePerSecond,
}

impl Remote {
    pub(crate) fn new(url: &str, timeout: Duration) -> Self {
        Self {
            url: url.to_owned(),
            timeout,
            redis: RefCell::new(None),
            failed_at: Cell::new(None),
            script: Script::new(GCRA),
            errors: Cell::new(0),
            last_log: OncePerSecond::default(),
        }
    }

    /// Checks failed because Redis did not answer (each decided by the
    /// policy's `on_redis_error`).
    pub(crate) fn errors(&self) -> u64 {
        self.errors.get()
    }

    /// Whether a failure less than [`RECONNECT_AFTER`] ago holds calls back.
    fn backing_off(&self) -> bool {
        self.failed_at
            .get()
            .is_some_and(|at| at.elapsed() < RECONNECT_AFTER)
    }

    async fn client(&self) -> Result<Redis, RedisError> {
        // After a failure, one try a second: the others fail at once
        // rather than each waiting on a Redis that is down.
        if self.backing_off() {
            return Err(RedisError::new(
                RedisErrorKind::Connect,
                "not retried yet after the last failure",
            ));
        }
        if let Some(redis) = self.redis.borrow().as_ref() {
            return Ok(redis.clone());
        }
        let config = RedisConfig {
            connect_timeout: self.timeout.max(Duration::from_millis(500)),
            command_timeout: self.timeout,
            ..RedisConfig::new(&self.url)
        };
        let redis = Redis::connect(config).await?;
        *self.redis.borrow_mut() = Some(redis.clone());
        Ok(redis)
    }

    /// The verdict of the fleet's state for `key` under `policy`.
    pub(crate) async fn check(&self, policy: &Policy, key: Key) -> Result<Verdict, RedisError> {
        let attempted = !self.backing_off();
        // The whole check, a reconnect included, within the timeout.
        let outcome = futures_lite::future::or(self.ask(policy, key), async {
            glommio::timer::sleep(self.timeout).await;
            Err(RedisError::new(
                RedisErrorKind::Timeout,
                format_args!("no answer within {:?}", self.timeout),
            ))
        })
        .await;
        match &outcome {
            Ok(_) => self.failed_at.set(None),
            Err(_) if attempted => self.failed_at.set(Some(Instant::now())),
            Err(_) => {}
        }
        if let Err(error) = &outcome {
            self.errors.set(self.errors.get() + 1);
            if self.last_log.ready() {
                tracing::warn!(policy = policy.name, %error, "the rate limiter's Redis did not answer");
            }
        }
        outcome
    }

    async fn ask(&self, policy: &Policy, key: Key) -> Result<Verdict, RedisError> {
        let redis = self.client().await?;
        let (interval, tolerance) = policy.gcra.parts();
        let interval_us = (interval / 1000).max(1);
        let tolerance_us = tolerance / 1000;
        let redis_key = format!("percore:rl:{}:{key:032x}", policy.name);
        let reply: Vec<i64> = redis
            .eval(&self.script, &[&redis_key], &[&interval_us, &tolerance_us])
            .await?;
        let us = |i: usize| u64::try_from(reply.get(i).copied().unwrap_or(0)).unwrap_or(0);
        Ok(Verdict {
            allowed: us(0) == 1,
            remaining: us(1),
            reset_ns: us(2).saturating_mul(1000),
            retry_after_ns: us(3).saturating_mul(1000),
        })
    }
}
