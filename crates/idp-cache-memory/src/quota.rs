use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Datelike, Duration, Utc};
use idp_domain::StoreError;
use idp_domain::admission::next_month_start;
use idp_domain::ports::{QuotaDecision, UsageCounter};

use crate::lock::lock;
use idp_domain::admission::stored_key;

/// How long a month's counters outlive the month, as in the Redis adapter
/// (whose counters expire seven days after their month ends).
const KEEP_AFTER_MONTH: Duration = Duration::days(7);

/// The counters of one UTC calendar month.
#[derive(Debug)]
struct Month {
    /// When the month's counters are dropped: seven days after it ends.
    drop_at: DateTime<Utc>,
    /// Units used per key.
    used: HashMap<Box<str>, u64>,
}

/// The months with counters, by month number (`year * 12 + month0`), so the
/// oldest come first.
type Months = BTreeMap<i64, Month>;

/// The month number of `now`: consecutive months have consecutive numbers.
fn month_number(now: DateTime<Utc>) -> i64 {
    i64::from(now.year()) * 12 + i64::from(now.month0())
}

/// When the counters of `now`'s month are dropped; never, for a month at the
/// end of chrono's range (it cannot end).
fn drop_at(now: DateTime<Utc>) -> DateTime<Utc> {
    next_month_start(now)
        .and_then(|start| start.checked_add_signed(KEEP_AFTER_MONTH))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// [`UsageCounter`] in this process: one counter per key and UTC calendar
/// month of `now`, checked and incremented under one mutex. A month's counters
/// are dropped once a call's `now` is seven days past the month's end (the
/// Redis adapter's expiry), so only the current month and perhaps the last
/// one are held. Keys are stored as the Redis adapter names them (long or
/// odd keys by their SHA-256).
///
/// Cloning shares the state; [`MemoryCache::usage_counter`](crate::MemoryCache::usage_counter)
/// hands out clones of one counter's state.
#[derive(Clone, Default)]
pub struct MemoryUsageCounter {
    months: Arc<Mutex<Months>>,
}

impl fmt::Debug for MemoryUsageCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryUsageCounter").finish_non_exhaustive()
    }
}

impl MemoryUsageCounter {
    /// An empty counter with a state of its own.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many (key, month) counters are held; for metrics and tests.
    pub fn counter_count(&self) -> usize {
        lock(&self.months).values().map(|m| m.used.len()).sum()
    }
}

/// Drops the months whose counters expired at `now`. Months are ordered, and
/// a later month is dropped later, so only the first ones can be due.
fn drop_expired(months: &mut Months, now: DateTime<Utc>) {
    while let Some(oldest) = months.first_entry()
        && oldest.get().drop_at <= now
    {
        oldest.remove();
    }
}

/// Takes one unit of `key` for the month of `now` if fewer than `limit` were
/// taken (the Redis script: refuse at the limit without writing, else add one).
fn consume(months: &mut Months, key: &str, limit: u64, now: DateTime<Utc>) -> QuotaDecision {
    drop_expired(months, now);
    let number = month_number(now);
    let used = months
        .get(&number)
        .and_then(|month| month.used.get(key))
        .copied()
        .unwrap_or(0);
    if used >= limit {
        return QuotaDecision {
            allowed: false,
            used,
        };
    }
    let month = months.entry(number).or_insert_with(|| Month {
        drop_at: drop_at(now),
        used: HashMap::new(),
    });
    // `used < limit <= u64::MAX`, so adding one cannot overflow.
    let used = used + 1;
    if let Some(counter) = month.used.get_mut(key) {
        *counter = used;
    } else {
        month.used.insert(key.into(), used);
    }
    QuotaDecision {
        allowed: true,
        used,
    }
}

/// Gives back one unit of `key` for the month of `taken_at`, never below
/// zero; a counter back at zero is removed (the Redis script deletes it).
fn refund(months: &mut Months, key: &str, taken_at: DateTime<Utc>) {
    let Some(month) = months.get_mut(&month_number(taken_at)) else {
        return;
    };
    match month.used.get_mut(key) {
        Some(used) if *used > 1 => *used -= 1,
        Some(_) => {
            month.used.remove(key);
        }
        None => {}
    }
}

impl MemoryUsageCounter {
    /// Sets the counters of `now`'s month to at least the `used` of each key:
    /// how a process rebuilds its counters at start from what the durable
    /// store recorded (the `token.issued` events since [`idp_domain::admission::month_start`]), so
    /// a restart does not hand out a fresh monthly quota.
    pub fn restore(&self, used: impl IntoIterator<Item = (String, u64)>, now: DateTime<Utc>) {
        let mut months = lock(&self.months);
        drop_expired(&mut months, now);
        let month = months.entry(month_number(now)).or_insert_with(|| Month {
            drop_at: drop_at(now),
            used: HashMap::new(),
        });
        for (key, count) in used {
            let counter = month.used.entry(stored_key(&key).into()).or_insert(0);
            *counter = (*counter).max(count);
        }
    }

    /// [`UsageCounter::try_consume`], without the `async`.
    pub(crate) fn consume_now(&self, key: &str, limit: u64, now: DateTime<Utc>) -> QuotaDecision {
        consume(&mut lock(&self.months), &stored_key(key), limit, now)
    }
}

#[async_trait]
impl UsageCounter for MemoryUsageCounter {
    async fn try_consume(
        &self,
        key: &str,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<QuotaDecision, StoreError> {
        Ok(self.consume_now(key, limit, now))
    }

    async fn refund(&self, key: &str, taken_at: DateTime<Utc>) -> Result<(), StoreError> {
        refund(&mut lock(&self.months), &stored_key(key), taken_at);
        Ok(())
    }

    async fn seed(&self, key: &str, used: u64, now: DateTime<Utc>) -> Result<(), StoreError> {
        let mut months = lock(&self.months);
        drop_expired(&mut months, now);
        let month = months.entry(month_number(now)).or_insert_with(|| Month {
            drop_at: drop_at(now),
            used: HashMap::new(),
        });
        month.used.entry(stored_key(key).into()).or_insert(used);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, mi, s).unwrap()
    }

    #[test]
    fn restored_counters_count_against_the_quota_of_their_month_only() {
        let counter = MemoryUsageCounter::new();
        let now = at(2030, 5, 20, 12, 0, 0);
        counter.restore([("a".to_owned(), 2), ("b".to_owned(), 5)], now);
        // Restoring less than what is held keeps the higher count.
        counter.restore([("a".to_owned(), 1)], now);
        let a = counter.consume_now("a", 3, now);
        assert_eq!((a.allowed, a.used), (true, 3));
        assert!(!counter.consume_now("a", 3, now).allowed);
        assert!(!counter.consume_now("b", 5, now).allowed);
        let next_month = at(2030, 6, 1, 0, 0, 0);
        assert_eq!(counter.consume_now("b", 5, next_month).used, 1);
    }

    #[test]
    fn month_numbers_are_consecutive_across_years() {
        assert_eq!(
            month_number(at(2031, 1, 1, 0, 0, 0)),
            month_number(at(2030, 12, 31, 23, 59, 59)) + 1
        );
    }

    #[test]
    fn a_month_is_dropped_seven_days_after_it_ends() {
        let mut months = Months::new();
        assert!(consume(&mut months, "k", 5, at(2030, 1, 15, 0, 0, 0)).allowed);
        consume(&mut months, "other", 5, at(2030, 2, 7, 23, 59, 59));
        assert_eq!(months.len(), 2, "January kept until February 8");
        consume(&mut months, "other", 5, at(2030, 2, 8, 0, 0, 0));
        assert_eq!(months.len(), 1, "January dropped on February 8");
        assert!(months.contains_key(&month_number(at(2030, 2, 1, 0, 0, 0))));
    }

    #[test]
    fn a_refund_to_zero_removes_the_counter() {
        let mut months = Months::new();
        let t = at(2030, 1, 15, 0, 0, 0);
        consume(&mut months, "k", 5, t);
        consume(&mut months, "k", 5, t);
        refund(&mut months, "k", t);
        assert_eq!(months[&month_number(t)].used["k"], 1);
        refund(&mut months, "k", t);
        assert!(months[&month_number(t)].used.is_empty());
        refund(&mut months, "k", t);
        refund(&mut months, "k", at(2030, 2, 1, 0, 0, 0));
        assert!(months[&month_number(t)].used.is_empty());
        assert_eq!(months.len(), 1, "a refund creates no month");
    }

    #[test]
    fn a_refusal_writes_nothing() {
        let mut months = Months::new();
        let d = consume(&mut months, "k", 0, at(2030, 1, 15, 0, 0, 0));
        assert_eq!(
            d,
            QuotaDecision {
                allowed: false,
                used: 0
            }
        );
        assert!(months.is_empty());
    }
}
