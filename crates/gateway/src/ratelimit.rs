//! Token buckets per client address and route: in this process (governor),
//! or in Redis so that every gateway replica draws from the same buckets.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::RateLimit;

/// The token bucket, refilled from the elapsed time on the Redis server's
/// clock (so gateways with drifting clocks agree), in one atomic script.
/// Returns {allowed, milliseconds until a token}.
const BUCKET: &str = r"
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
";

pub enum Limiter {
    Local(DefaultKeyedRateLimiter<IpAddr>),
    Shared {
        redis: redis::aio::ConnectionManager,
        script: redis::Script,
        /// Redis key prefix of this route's buckets.
        key: String,
        limit: RateLimit,
        /// When the last Redis failure was logged (ms), to log it once a minute.
        last_warning: AtomicU64,
    },
}

impl Limiter {
    pub fn new(
        limit: RateLimit,
        redis: Option<&redis::aio::ConnectionManager>,
        route: &str,
    ) -> Self {
        match redis {
            None => {
                let per_second = NonZeroU32::new(limit.per_second).unwrap_or(NonZeroU32::MIN);
                let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
                Limiter::Local(DefaultKeyedRateLimiter::keyed(
                    Quota::per_second(per_second).allow_burst(burst),
                ))
            }
            Some(redis) => Limiter::Shared {
                redis: redis.clone(),
                script: redis::Script::new(BUCKET),
                key: format!("flotilla:ratelimit:{route}"),
                limit,
                last_warning: AtomicU64::new(0),
            },
        }
    }

    /// `Ok` when `client` may go on, else how long until it may. When Redis
    /// cannot answer, requests go through: the limiter protects the
    /// services, it must not become their outage.
    pub async fn check(&self, client: IpAddr) -> Result<(), Duration> {
        match self {
            Limiter::Local(limiter) => limiter
                .check_key(&client)
                .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now())),
            Limiter::Shared {
                redis,
                script,
                key,
                limit,
                last_warning,
            } => {
                let mut redis = redis.clone();
                let answer: redis::RedisResult<(i64, i64)> = script
                    .key(format!("{key}:{client}"))
                    .arg(limit.per_second)
                    .arg(limit.burst)
                    .invoke_async(&mut redis)
                    .await;
                match answer {
                    Ok((1, _)) => Ok(()),
                    Ok((_, wait_ms)) => Err(Duration::from_millis(wait_ms.max(1) as u64)),
                    Err(error) => {
                        let now = crate::pool::now_ms();
                        if now.saturating_sub(last_warning.load(Relaxed)) > 60_000 {
                            last_warning.store(now, Relaxed);
                            tracing::warn!(%error, "shared rate limits unavailable; letting requests through");
                        }
                        Ok(())
                    }
                }
            }
        }
    }
}
