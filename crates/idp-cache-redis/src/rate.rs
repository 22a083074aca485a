use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::Pool;
use deadpool_redis::redis::Script;
use idp_domain::StoreError;
use idp_domain::ports::{RateDecision, RateLimiter};
use uuid::Uuid;

use crate::error::{from_pool, from_redis, unexpected};
use crate::keys::key_part;

/// One hit, atomically: forget entries that left the window `(now - window,
/// now]`, count the rest, log this request (a unique member scored `now`) only
/// if under the limit, keep the key alive one window, and report the oldest
/// entry still counted.
///
/// KEYS[1] the log; ARGV now (ms), window (ms), limit, member.
/// Returns {allowed 0/1, entries counted after this hit, oldest entry (ms) or -1}.
const HIT_SCRIPT: &str = r"
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  count = count + 1
  allowed = 1
end
if count > 0 then
  redis.call('PEXPIRE', key, window)
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local oldest_ms = -1
if oldest[2] then
  oldest_ms = tonumber(oldest[2])
end
return {allowed, count, oldest_ms}
";

/// [`RateLimiter`] as an exact sliding-window log: a sorted set per key
/// (`<prefix>rate:<key>`) of the requests counted in the last window, scored by
/// their time in milliseconds. One script call per hit (EVALSHA, falling back
/// to EVAL when Redis lost the script), so concurrent hits from all nodes are
/// serialised by Redis.
///
/// `reset_at` is the unix second (rounded up) at which the oldest counted
/// request leaves the window; `retry_after`, when refused, is the whole
/// seconds until then, at least 1, and 0 when allowed.
#[derive(Clone)]
pub struct RedisRateLimiter {
    pool: Pool,
    prefix: Arc<str>,
    script: Arc<Script>,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter keeping its logs under `prefix`.
    pub fn new(pool: Pool, prefix: impl AsRef<str>) -> Self {
        Self {
            pool,
            prefix: prefix.as_ref().into(),
            script: Arc::new(Script::new(HIT_SCRIPT)),
        }
    }
}

/// `ms` rounded up to whole seconds.
fn ceil_secs(ms: i64) -> i64 {
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<RateDecision, StoreError> {
        let now_ms = now.timestamp_millis();
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
        let redis_key = format!("{}rate:{}", self.prefix, key_part(key));
        let member = format!("{now_ms}-{}", Uuid::new_v4().simple());
        let mut conn = self.pool.get().await.map_err(from_pool)?;
        let (allowed, count, oldest_ms): (i64, i64, i64) = self
            .script
            .key(&redis_key)
            .arg(now_ms)
            .arg(window_ms)
            .arg(limit)
            .arg(member)
            .invoke_async(&mut conn)
            .await
            .map_err(from_redis)?;
        let allowed = match allowed {
            1 => true,
            0 => false,
            _ => return Err(unexpected("rate limit script")),
        };
        let counted = u32::try_from(count.max(0)).unwrap_or(u32::MAX);
        // Room comes back when the oldest counted request leaves the window;
        // with nothing counted (limit 0) that is a full window from now.
        let oldest_ms = if oldest_ms < 0 { now_ms } else { oldest_ms };
        let frees_at_ms = oldest_ms.saturating_add(window_ms);
        let retry_after = if allowed {
            0
        } else {
            u64::try_from(ceil_secs(frees_at_ms.saturating_sub(now_ms)))
                .unwrap_or(0)
                .max(1)
        };
        Ok(RateDecision {
            allowed,
            limit,
            remaining: limit.saturating_sub(counted),
            reset_at: ceil_secs(frees_at_ms),
            retry_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceil_secs_rounds_up() {
        assert_eq!(ceil_secs(0), 0);
        assert_eq!(ceil_secs(1), 1);
        assert_eq!(ceil_secs(999), 1);
        assert_eq!(ceil_secs(1000), 1);
        assert_eq!(ceil_secs(1001), 2);
        assert_eq!(ceil_secs(-1), 0);
        assert_eq!(ceil_secs(-1000), -1);
    }
}
