use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::redis::Script;
use idp_domain::StoreError;
use idp_domain::ports::{RateDecision, RateLimiter, Reservation};
use uuid::Uuid;

use crate::connections::{Connections, settle};
use crate::error::unexpected;
use idp_domain::admission::{rate_decision, stored_key};

/// The Lua function `hit(key, now, window, limit, member)`, shared by the
/// limiter's script and the admission script: one hit, atomically. Forget
/// entries that left the window `(now - window, now]`, count the rest, log
/// this request (a unique member scored `now`) only if under the limit, keep
/// the key alive one window, and report the oldest entry still counted.
///
/// Returns {allowed 0/1, entries counted after this hit, oldest entry (ms) or -1}.
macro_rules! hit_function {
    () => {
        r"
local function hit(key, now, window, limit, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local count = redis.call('ZCARD', key)
  local allowed = 0
  if count < limit then
    redis.call('ZADD', key, now, member)
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
end
"
    };
}
pub(crate) use hit_function;

/// KEYS[1] the log; ARGV now (ms), window (ms), limit, member.
const HIT_SCRIPT: &str = concat!(
    hit_function!(),
    "return hit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4])"
);

/// KEYS the logs; ARGV now (ms), window (ms), member, then each log's limit.
/// Counts the member in every log only if every log has room.
/// Returns {granted 0/1, then per log: allowed 0/1, counted, oldest (ms) or -1}.
const RESERVE_SCRIPT: &str = r"
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local member = ARGV[3]
local counts = {}
local granted = 1
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  counts[i] = redis.call('ZCARD', KEYS[i])
  if counts[i] >= tonumber(ARGV[3 + i]) then
    granted = 0
  end
end
local out = {granted}
for i = 1, #KEYS do
  local allowed = 1
  if granted == 1 then
    redis.call('ZADD', KEYS[i], now, member)
    counts[i] = counts[i] + 1
  elseif counts[i] >= tonumber(ARGV[3 + i]) then
    allowed = 0
  end
  if counts[i] > 0 then
    redis.call('PEXPIRE', KEYS[i], window)
  end
  local oldest = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  local oldest_ms = -1
  if oldest[2] then
    oldest_ms = tonumber(oldest[2])
  end
  table.insert(out, allowed)
  table.insert(out, counts[i])
  table.insert(out, oldest_ms)
end
return out
";

/// KEYS the logs; ARGV the member to take out of each.
const RELEASE_SCRIPT: &str = r"
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
end
return 0
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
    connections: Connections,
    prefix: Arc<str>,
    script: Arc<Script>,
    reserve: Arc<Script>,
    release: Arc<Script>,
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
    pub fn new(connections: Connections, prefix: impl AsRef<str>) -> Self {
        Self {
            connections,
            prefix: prefix.as_ref().into(),
            script: Arc::new(Script::new(HIT_SCRIPT)),
            reserve: Arc::new(Script::new(RESERVE_SCRIPT)),
            release: Arc::new(Script::new(RELEASE_SCRIPT)),
        }
    }
}

/// What one hit sends to the `hit` function besides the key.
#[derive(Debug, Clone)]
pub(crate) struct HitArgs {
    pub(crate) now_ms: i64,
    pub(crate) window_ms: i64,
    /// A member unique to this request.
    pub(crate) member: String,
}

impl HitArgs {
    pub(crate) fn new(window: Duration, now: DateTime<Utc>) -> Self {
        let now_ms = now.timestamp_millis();
        Self {
            now_ms,
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1),
            member: format!("{now_ms}-{}", Uuid::new_v4().simple()),
        }
    }
}

/// The Redis key of `key`'s log.
pub(crate) fn log_key(prefix: &str, key: &str) -> String {
    format!("{prefix}rate:{}", stored_key(key))
}

/// The decision from the `hit` function's reply.
pub(crate) fn decision(
    (allowed, count, oldest_ms): (i64, i64, i64),
    limit: u32,
    args: &HitArgs,
) -> Result<RateDecision, StoreError> {
    let allowed = match allowed {
        1 => true,
        0 => false,
        _ => return Err(unexpected("rate limit script")),
    };
    Ok(rate_decision(
        allowed,
        u32::try_from(count.max(0)).unwrap_or(u32::MAX),
        (oldest_ms >= 0).then_some(oldest_ms),
        limit,
        args.window_ms,
        args.now_ms,
    ))
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
        let args = HitArgs::new(window, now);
        let mut conn = self.connections.get().await?;
        let result = self
            .script
            .key(log_key(&self.prefix, key))
            .arg(args.now_ms)
            .arg(args.window_ms)
            .arg(limit)
            .arg(&args.member)
            .invoke_async(&mut *conn)
            .await;
        decision(settle(conn, result)?, limit, &args)
    }

    async fn reserve(
        &self,
        windows: &[(String, u32)],
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError> {
        let args = HitArgs::new(window, now);
        let mut invocation = self.reserve.prepare_invoke();
        for (key, _) in windows {
            invocation.key(log_key(&self.prefix, key));
        }
        invocation
            .arg(args.now_ms)
            .arg(args.window_ms)
            .arg(&args.member);
        for (_, limit) in windows {
            invocation.arg(*limit);
        }
        let mut conn = self.connections.get().await?;
        let result = invocation.invoke_async(&mut *conn).await;
        let reply: Vec<i64> = settle(conn, result)?;
        let (granted, per_window) = reply
            .split_first()
            .ok_or_else(|| unexpected("reserve script"))?;
        if per_window.len() != windows.len() * 3 {
            return Err(unexpected("reserve script"));
        }
        let decisions = per_window
            .chunks_exact(3)
            .zip(windows)
            .map(|(reply, (_, limit))| decision((reply[0], reply[1], reply[2]), *limit, &args))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Reservation {
            granted: *granted == 1,
            decisions,
            keys: windows.iter().map(|(key, _)| key.clone()).collect(),
            entry: args.member,
        })
    }

    async fn release(&self, reservation: &Reservation) -> Result<(), StoreError> {
        if !reservation.granted || reservation.keys.is_empty() {
            return Ok(());
        }
        let mut invocation = self.release.prepare_invoke();
        for key in &reservation.keys {
            invocation.key(log_key(&self.prefix, key));
        }
        invocation.arg(&reservation.entry);
        let mut conn = self.connections.get().await?;
        let result = invocation.invoke_async(&mut *conn).await;
        let _: i64 = settle(conn, result)?;
        Ok(())
    }
}
