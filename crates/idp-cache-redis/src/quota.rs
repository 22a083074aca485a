use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, Utc};
use deadpool_redis::redis::Script;
use idp_domain::StoreError;
use idp_domain::admission::next_month_start;
use idp_domain::ports::{QuotaDecision, UsageCounter};

use crate::connections::{Connections, settle};
use crate::error::unexpected;
use idp_domain::admission::stored_key;

/// How long a month's counter outlives the month, so a node whose clock runs
/// a little behind still finds it.
const KEEP_AFTER_MONTH: Duration = Duration::days(7);

/// The Lua function `consume(key, limit, ttl)`, shared by the counter's
/// script and the admission script: one unit, atomically. Refuse when the
/// month's counter has reached the limit, else increment it and (re)set its
/// time to live (ms).
///
/// Returns {granted 0/1, units used}.
macro_rules! consume_function {
    () => {
        r"
local function consume(key, limit, ttl)
  local used = tonumber(redis.call('GET', key) or '0')
  if used >= limit then
    return {0, used}
  end
  used = redis.call('INCR', key)
  redis.call('PEXPIRE', key, ttl)
  return {1, used}
end
"
    };
}
pub(crate) use consume_function;

/// KEYS[1] the counter; ARGV limit, time to live (ms).
const CONSUME_SCRIPT: &str = concat!(
    consume_function!(),
    "return consume(KEYS[1], tonumber(ARGV[1]), ARGV[2])"
);

/// One unit back, never below zero. A missing counter stays missing (it is
/// rebuilt from the audit log when next needed); one at zero stays, as if
/// never used.
///
/// KEYS[1] the counter. Returns the units used after the refund.
const REFUND_SCRIPT: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used <= 0 then
  return 0
end
return redis.call('DECR', KEYS[1])
";

/// [`UsageCounter`] with one Redis counter per key and UTC calendar month,
/// `<prefix>quota:<key>:<YYYY-MM>`, kept until seven days after that month
/// ends. Check and increment are one script call, and so is a refund. A
/// counter lost with Redis is not known here: [`crate::RedisAdmission`]
/// reports it missing, and the token service seeds it from the audit log.
#[derive(Clone)]
pub struct RedisUsageCounter {
    connections: Connections,
    prefix: Arc<str>,
    consume: Arc<Script>,
    refund: Arc<Script>,
}

impl fmt::Debug for RedisUsageCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUsageCounter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisUsageCounter {
    /// A counter keeping its keys under `prefix`.
    pub fn new(connections: Connections, prefix: impl AsRef<str>) -> Self {
        Self {
            connections,
            prefix: prefix.as_ref().into(),
            consume: Arc::new(Script::new(CONSUME_SCRIPT)),
            refund: Arc::new(Script::new(REFUND_SCRIPT)),
        }
    }
}

/// The Redis key of `key`'s counter for the month of `now`.
pub(crate) fn counter_key(prefix: &str, key: &str, now: DateTime<Utc>) -> String {
    format!(
        "{prefix}quota:{}:{:04}-{:02}",
        stored_key(key),
        now.year(),
        now.month()
    )
}

/// How long (ms) a counter written at `now` lives: until seven days after
/// its month ends.
pub(crate) fn counter_ttl_ms(now: DateTime<Utc>) -> Result<i64, StoreError> {
    let month_end = next_month_start(now).ok_or_else(|| unexpected("date out of range"))?;
    Ok((month_end + KEEP_AFTER_MONTH - now)
        .num_milliseconds()
        .max(1))
}

/// The decision from the `consume` function's reply.
pub(crate) fn decision((granted, used): (i64, i64)) -> Result<QuotaDecision, StoreError> {
    let allowed = match granted {
        1 => true,
        0 => false,
        _ => return Err(unexpected("usage script")),
    };
    Ok(QuotaDecision {
        allowed,
        used: u64::try_from(used).map_err(|_| unexpected("negative usage"))?,
    })
}

#[async_trait]
impl UsageCounter for RedisUsageCounter {
    async fn try_consume(
        &self,
        key: &str,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<QuotaDecision, StoreError> {
        let ttl_ms = counter_ttl_ms(now)?;
        let mut conn = self.connections.get().await?;
        let result = self
            .consume
            .key(counter_key(&self.prefix, key, now))
            .arg(limit)
            .arg(ttl_ms)
            .invoke_async(&mut *conn)
            .await;
        decision(settle(conn, result)?)
    }

    async fn refund(&self, key: &str, taken_at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut conn = self.connections.get().await?;
        let result = self
            .refund
            .key(counter_key(&self.prefix, key, taken_at))
            .invoke_async(&mut *conn)
            .await;
        let _used: i64 = settle(conn, result)?;
        Ok(())
    }

    async fn seed(&self, key: &str, used: u64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let ttl_ms = counter_ttl_ms(now)?;
        let mut conn = self.connections.get().await?;
        let result = deadpool_redis::redis::cmd("SET")
            .arg(counter_key(&self.prefix, key, now))
            .arg(used)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut *conn)
            .await;
        let _set: Option<String> = settle(conn, result)?;
        Ok(())
    }
}
