use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use deadpool_redis::Pool;
use deadpool_redis::redis::Script;
use idp_domain::StoreError;
use idp_domain::ports::{QuotaDecision, UsageCounter};

use crate::error::{from_pool, from_redis, unexpected};
use crate::keys::key_part;

/// How long a month's counter outlives the month, so a node whose clock runs
/// a little behind still finds it.
const KEEP_AFTER_MONTH: Duration = Duration::days(7);

/// One unit, atomically: refuse when the month's counter has reached the limit,
/// else increment it and (re)set its time to live.
///
/// KEYS[1] the counter; ARGV limit, time to live (ms).
/// Returns {granted 0/1, units used}.
const CONSUME_SCRIPT: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
  return {0, used}
end
used = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {1, used}
";

/// [`UsageCounter`] with one Redis counter per key and UTC calendar month,
/// `<prefix>quota:<key>:<YYYY-MM>`, kept until seven days after that month
/// ends. Check and increment are one script call.
#[derive(Clone)]
pub struct RedisUsageCounter {
    pool: Pool,
    prefix: Arc<str>,
    script: Arc<Script>,
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
    pub fn new(pool: Pool, prefix: impl AsRef<str>) -> Self {
        Self {
            pool,
            prefix: prefix.as_ref().into(),
            script: Arc::new(Script::new(CONSUME_SCRIPT)),
        }
    }
}

/// The first instant of the UTC month after the one of `now`.
fn next_month_start(now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let (year, month) = if now.month() == 12 {
        (now.year().checked_add(1)?, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Some(
        NaiveDate::from_ymd_opt(year, month, 1)?
            .and_hms_opt(0, 0, 0)?
            .and_utc(),
    )
}

#[async_trait]
impl UsageCounter for RedisUsageCounter {
    async fn try_consume(
        &self,
        key: &str,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<QuotaDecision, StoreError> {
        let month_end = next_month_start(now).ok_or_else(|| unexpected("date out of range"))?;
        let ttl_ms = (month_end + KEEP_AFTER_MONTH - now)
            .num_milliseconds()
            .max(1);
        let redis_key = format!(
            "{}quota:{}:{:04}-{:02}",
            self.prefix,
            key_part(key),
            now.year(),
            now.month()
        );
        let mut conn = self.pool.get().await.map_err(from_pool)?;
        let (granted, used): (i64, i64) = self
            .script
            .key(&redis_key)
            .arg(limit)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(from_redis)?;
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
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn next_month_start_rolls_months_and_years() {
        let at = |y, m, d, h, mi, s| Utc.with_ymd_and_hms(y, m, d, h, mi, s).unwrap();
        assert_eq!(
            next_month_start(at(2030, 1, 31, 23, 59, 59)),
            Some(at(2030, 2, 1, 0, 0, 0))
        );
        assert_eq!(
            next_month_start(at(2030, 2, 1, 0, 0, 0)),
            Some(at(2030, 3, 1, 0, 0, 0))
        );
        assert_eq!(
            next_month_start(at(2030, 12, 31, 23, 59, 59)),
            Some(at(2031, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            next_month_start(at(2028, 2, 29, 12, 0, 0)),
            Some(at(2028, 3, 1, 0, 0, 0))
        );
    }
}
