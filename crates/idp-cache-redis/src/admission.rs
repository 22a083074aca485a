use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::redis::Script;
use idp_domain::StoreError;
use idp_domain::ports::{Admission, AdmissionControl};

use crate::connections::{Connections, settle};
use crate::quota::{self, consume_function, counter_key, counter_ttl_ms};
use crate::rate::{self, HitArgs, hit_function, log_key};

/// The limiter's `hit`, then, only if it allowed the request, the counter's
/// `consume`: the same functions as their own scripts use, in one script.
///
/// KEYS[1] the rate log, KEYS[2] the month's counter; ARGV now (ms), window
/// (ms), rate limit, member, quota limit, counter time to live (ms).
/// Returns {allowed, counted, oldest (ms) or -1, granted 0/1 or -1 when not
/// tried, units used}, or {-2, ...} counting nothing when the month's counter
/// does not exist (lost with Redis, or never made).
const ADMIT_SCRIPT: &str = concat!(
    hit_function!(),
    consume_function!(),
    r"
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-2, 0, 0, 0, 0}
end
local rate = hit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])
if rate[1] == 0 then
  return {rate[1], rate[2], rate[3], -1, 0}
end
local quota = consume(KEYS[2], tonumber(ARGV[5]), ARGV[6])
return {rate[1], rate[2], rate[3], quota[1], quota[2]}
"
);

/// [`AdmissionControl`] on Redis: the rate limit of [`RedisRateLimiter`](crate::RedisRateLimiter)
/// and the monthly quota of [`RedisUsageCounter`](crate::RedisUsageCounter),
/// on their keys, in one script call, so one round trip and atomic as a
/// whole. Both keys are in one script, so on a Redis Cluster they would have
/// to share a hash slot; this adapter speaks to a single Redis.
#[derive(Clone)]
pub struct RedisAdmission {
    connections: Connections,
    prefix: Arc<str>,
    script: Arc<Script>,
}

impl fmt::Debug for RedisAdmission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdmission")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisAdmission {
    /// Admission on the counters under `prefix`.
    pub fn new(connections: Connections, prefix: impl AsRef<str>) -> Self {
        Self {
            connections,
            prefix: prefix.as_ref().into(),
            script: Arc::new(Script::new(ADMIT_SCRIPT)),
        }
    }
}

#[async_trait]
impl AdmissionControl for RedisAdmission {
    async fn admit(
        &self,
        rate_key: &str,
        rate_limit: u32,
        window: Duration,
        quota_key: &str,
        quota_limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<Admission>, StoreError> {
        let args = HitArgs::new(window, now);
        let ttl_ms = counter_ttl_ms(now)?;
        let mut conn = self.connections.get().await?;
        let result = self
            .script
            .key(log_key(&self.prefix, rate_key))
            .key(counter_key(&self.prefix, quota_key, now))
            .arg(args.now_ms)
            .arg(args.window_ms)
            .arg(rate_limit)
            .arg(&args.member)
            .arg(quota_limit)
            .arg(ttl_ms)
            .invoke_async(&mut *conn)
            .await;
        let (allowed, counted, oldest_ms, granted, used): (i64, i64, i64, i64, i64) =
            settle(conn, result)?;
        if allowed == -2 {
            return Ok(None);
        }
        let rate = rate::decision((allowed, counted, oldest_ms), rate_limit, &args)?;
        let quota = if rate.allowed {
            Some(quota::decision((granted, used))?)
        } else {
            None
        };
        Ok(Some(Admission { rate, quota }))
    }
}
