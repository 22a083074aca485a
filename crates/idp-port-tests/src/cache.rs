//! Contract suites of the cache ports: RevocationList, RateLimiter,
//! UsageCounter, AdmissionControl.
//!
//! Every function takes the adapter as `Arc<dyn Port>` (or, for the revocation
//! list, an async factory building one on top of a durable store the suite
//! controls) plus a namespace string that the caller makes unique per test, so
//! tests may share one backing service and run in parallel.
//!
//! Time is always the `now` argument: the suites use fixed instants in 2030, so
//! an adapter must never consult a clock of its own (and must compute any
//! expiry it gives its backing service from `now`).
//!
//! The `*_contract` functions run every check of one port; the single checks
//! are public too, so a failure names what broke.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::ports::{
    Admission, AdmissionControl, QuotaDecision, RateDecision, RateLimiter, RevocationList,
    RevokedToken, RevokedTokenStore, UsageCounter,
};
use idp_domain::values::{Owner, TokenId};
use tokio::task::JoinSet;
use uuid::Uuid;

/// The instant the suites start from: fixed (with a millisecond part, to catch
/// rounding), so no result depends on the real clock.
pub fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 3, 14, 15, 9, 26).unwrap() + TimeDelta::milliseconds(535)
}

fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// `t` as unix seconds, rounded up.
fn ceil_secs(t: DateTime<Utc>) -> i64 {
    let ms = t.timestamp_millis();
    ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0)
}

// ---------------------------------------------------------------------------
// RateLimiter
// ---------------------------------------------------------------------------

async fn hit(
    limiter: &Arc<dyn RateLimiter>,
    key: &str,
    limit: u32,
    window: Duration,
    at: DateTime<Utc>,
) -> RateDecision {
    limiter.hit(key, limit, window, at).await.unwrap()
}

#[track_caller]
fn assert_allowed(d: RateDecision, limit: u32, remaining: u32, reset_at: i64, what: &str) {
    assert_eq!(
        d,
        RateDecision {
            allowed: true,
            limit,
            remaining,
            reset_at,
            retry_after: 0
        },
        "{what}"
    );
}

#[track_caller]
fn assert_refused(d: RateDecision, limit: u32, reset_at: i64, retry_after: u64, what: &str) {
    assert_eq!(
        d,
        RateDecision {
            allowed: false,
            limit,
            remaining: 0,
            reset_at,
            retry_after
        },
        "{what}"
    );
}

/// Limit 3 per 10 s: three requests pass, the fourth does not; a request
/// counts until exactly one window after it; when the oldest leaves, exactly
/// one more passes. `remaining` is what is left after this request,
/// `reset_at` the unix second (rounded up) at which the oldest counted request
/// leaves the window, `retry_after` the whole seconds until then (at least 1)
/// when refused and 0 when allowed.
pub async fn rate_limiter_sliding_window(limiter: Arc<dyn RateLimiter>, ns: &str) {
    let key = format!("{ns}:sliding");
    let (limit, window) = (3, Duration::from_secs(10));
    let t0 = base_time();
    let frees = |oldest: DateTime<Utc>| ceil_secs(oldest + secs(10));

    let d = hit(&limiter, &key, limit, window, t0).await;
    assert_allowed(d, 3, 2, frees(t0), "first");
    let d = hit(&limiter, &key, limit, window, t0 + secs(1)).await;
    assert_allowed(d, 3, 1, frees(t0), "second");
    let d = hit(&limiter, &key, limit, window, t0 + secs(2)).await;
    assert_allowed(d, 3, 0, frees(t0), "third");
    let d = hit(&limiter, &key, limit, window, t0 + secs(3)).await;
    assert_refused(d, 3, frees(t0), 7, "fourth, 7 s before the first leaves");
    let d = hit(&limiter, &key, limit, window, t0 + ms(9_999)).await;
    assert_refused(d, 3, frees(t0), 1, "1 ms before the first leaves");
    let d = hit(&limiter, &key, limit, window, t0 + secs(10)).await;
    assert_allowed(d, 3, 0, frees(t0 + secs(1)), "the first left: one more");
    let d = hit(&limiter, &key, limit, window, t0 + secs(10)).await;
    assert_refused(d, 3, frees(t0 + secs(1)), 1, "only one more");
    let d = hit(&limiter, &key, limit, window, t0 + ms(10_500)).await;
    assert_refused(d, 3, frees(t0 + secs(1)), 1, "half a second: rounded up");
    let d = hit(&limiter, &key, limit, window, t0 + secs(11)).await;
    assert_allowed(d, 3, 0, frees(t0 + secs(2)), "the second left");
    let d = hit(&limiter, &key, limit, window, t0 + secs(12)).await;
    assert_allowed(d, 3, 0, frees(t0 + secs(10)), "the third left");
    let d = hit(&limiter, &key, limit, window, t0 + secs(12)).await;
    assert_refused(d, 3, frees(t0 + secs(10)), 8, "full again");
    let d = hit(&limiter, &key, limit, window, t0 + secs(25)).await;
    assert_allowed(
        d,
        3,
        2,
        frees(t0 + secs(25)),
        "all left after a quiet window",
    );
}

/// Refused requests are not counted: a client hammering while refused gets
/// through as soon as its counted requests leave the window.
pub async fn rate_limiter_refused_not_counted(limiter: Arc<dyn RateLimiter>, ns: &str) {
    let key = format!("{ns}:refused");
    let (limit, window) = (2, Duration::from_secs(10));
    let t0 = base_time();
    assert!(hit(&limiter, &key, limit, window, t0).await.allowed);
    assert!(
        hit(&limiter, &key, limit, window, t0 + secs(1))
            .await
            .allowed
    );
    for s in 2..10 {
        let d = hit(&limiter, &key, limit, window, t0 + secs(s)).await;
        assert!(!d.allowed, "refused at +{s}s");
        assert_eq!(d.remaining, 0);
    }
    let d = hit(&limiter, &key, limit, window, t0 + secs(10)).await;
    assert!(d.allowed, "refused requests were counted");
    assert_eq!(d.remaining, 0);
    assert!(
        hit(&limiter, &key, limit, window, t0 + secs(11))
            .await
            .allowed
    );
    assert!(
        !hit(&limiter, &key, limit, window, t0 + ms(11_500))
            .await
            .allowed
    );
}

/// Keys do not share a window; requests at the same millisecond all count.
pub async fn rate_limiter_keys_independent(limiter: Arc<dyn RateLimiter>, ns: &str) {
    let (a, b) = (format!("{ns}:client-a"), format!("{ns}:client-b"));
    let window = Duration::from_secs(60);
    let t0 = base_time();
    for remaining in [1, 0] {
        let d = hit(&limiter, &a, 2, window, t0).await;
        assert!(d.allowed);
        assert_eq!(d.remaining, remaining, "same instant, counted separately");
    }
    assert!(!hit(&limiter, &a, 2, window, t0).await.allowed);
    let d = hit(&limiter, &b, 2, window, t0).await;
    assert_allowed(
        d,
        2,
        1,
        ceil_secs(t0 + secs(60)),
        "another key is untouched",
    );
    assert!(!hit(&limiter, &a, 2, window, t0 + secs(1)).await.allowed);
}

/// 50 simultaneous hits with limit 10: exactly 10 pass, and they see the
/// remaining counts 9, 8, ..., 0 once each (the check and the count are atomic).
pub async fn rate_limiter_concurrent_hits_are_atomic(limiter: Arc<dyn RateLimiter>, ns: &str) {
    let key = format!("{ns}:concurrent");
    let t0 = base_time();
    let mut tasks = JoinSet::new();
    for i in 0..50 {
        let limiter = Arc::clone(&limiter);
        let key = key.clone();
        tasks.spawn(async move {
            limiter
                .hit(&key, 10, Duration::from_secs(60), t0 + ms(i % 3))
                .await
                .unwrap()
        });
    }
    let decisions = tasks.join_all().await;
    let mut remaining: Vec<u32> = decisions
        .iter()
        .filter(|d| d.allowed)
        .map(|d| d.remaining)
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..10).collect::<Vec<_>>());
    assert_eq!(decisions.iter().filter(|d| !d.allowed).count(), 40);
    assert!(
        decisions
            .iter()
            .filter(|d| !d.allowed)
            .all(|d| d.retry_after >= 1)
    );
}

/// A reservation counts in every window or in none: refused when one window
/// is full (and then nothing is counted in the others), and a release takes
/// the granted request out of every window again.
pub async fn rate_limiter_reserve_and_release(limiter: Arc<dyn RateLimiter>, ns: &str) {
    let t0 = base_time();
    let (a, b) = (format!("{ns}:reserve-a"), format!("{ns}:reserve-b"));
    let windows = vec![(a.clone(), 2), (b.clone(), 3)];
    let first = limiter.reserve(&windows, WINDOW, t0).await.unwrap();
    assert!(first.granted);
    assert_eq!(
        first
            .decisions
            .iter()
            .map(|d| d.remaining)
            .collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(first.decision().map(|d| d.remaining), Some(1));
    let second = limiter.reserve(&windows, WINDOW, t0 + ms(1)).await.unwrap();
    assert!(second.granted);
    // `a` is full: refused, and `b` counts nothing.
    let third = limiter.reserve(&windows, WINDOW, t0 + ms(2)).await.unwrap();
    assert!(!third.granted);
    let refusal = third.decision().expect("a refusing window");
    assert!(!refusal.allowed);
    assert_eq!(refusal.limit, 2);
    assert!(refusal.retry_after >= 1);
    let b_now = limiter.hit(&b, 3, WINDOW, t0 + ms(3)).await.unwrap();
    assert_eq!(
        b_now.remaining, 0,
        "b held the two reservations and this hit only"
    );
    // Releasing the second takes it out of both windows; releasing a refused
    // reservation does nothing.
    limiter.release(&second).await.unwrap();
    limiter.release(&third).await.unwrap();
    let again = limiter
        .reserve(&[(a.clone(), 2)], WINDOW, t0 + ms(4))
        .await
        .unwrap();
    assert!(again.granted, "the released place is free again");
    assert_eq!(again.decisions[0].remaining, 0);
}

/// Every check of the [`RateLimiter`] contract.
pub async fn rate_limiter_contract(limiter: Arc<dyn RateLimiter>, ns: &str) {
    rate_limiter_reserve_and_release(Arc::clone(&limiter), ns).await;
    rate_limiter_sliding_window(Arc::clone(&limiter), ns).await;
    rate_limiter_refused_not_counted(Arc::clone(&limiter), ns).await;
    rate_limiter_keys_independent(Arc::clone(&limiter), ns).await;
    rate_limiter_concurrent_hits_are_atomic(limiter, ns).await;
}

// ---------------------------------------------------------------------------
// UsageCounter
// ---------------------------------------------------------------------------

async fn consume(
    counter: &Arc<dyn UsageCounter>,
    key: &str,
    limit: u64,
    at: DateTime<Utc>,
) -> (bool, u64) {
    let d = counter.try_consume(key, limit, at).await.unwrap();
    (d.allowed, d.used)
}

/// Limit 3: units 1, 2, 3 are granted; after that every try is refused and
/// reports 3 used. Limit 0 grants nothing.
pub async fn usage_counter_limit(counter: Arc<dyn UsageCounter>, ns: &str) {
    let key = format!("{ns}:limit");
    let t0 = base_time();
    for used in 1..=3 {
        assert_eq!(
            consume(&counter, &key, 3, t0 + secs(used.try_into().unwrap())).await,
            (true, used)
        );
    }
    for _ in 0..3 {
        assert_eq!(consume(&counter, &key, 3, t0 + secs(10)).await, (false, 3));
    }
    // A higher limit (configuration changed) grants again from the same count.
    assert_eq!(consume(&counter, &key, 4, t0 + secs(11)).await, (true, 4));
    let zero = format!("{ns}:zero");
    assert_eq!(consume(&counter, &zero, 0, t0).await, (false, 0));
}

/// The month is the UTC calendar month of `now`: 23:59:59.999 on its last day
/// still counts against it, 00:00:00.000 of the next starts from zero, and
/// going back to the old month finds it still spent. Also across a year.
pub async fn usage_counter_month_rollover(counter: Arc<dyn UsageCounter>, ns: &str) {
    let key = format!("{ns}:rollover");
    let first_of_jan = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    let end_of_jan = Utc.with_ymd_and_hms(2030, 1, 31, 23, 59, 59).unwrap() + ms(999);
    let start_of_feb = Utc.with_ymd_and_hms(2030, 2, 1, 0, 0, 0).unwrap();
    assert_eq!(consume(&counter, &key, 2, first_of_jan).await, (true, 1));
    assert_eq!(consume(&counter, &key, 2, end_of_jan).await, (true, 2));
    assert_eq!(consume(&counter, &key, 2, end_of_jan).await, (false, 2));
    assert_eq!(consume(&counter, &key, 2, start_of_feb).await, (true, 1));
    assert_eq!(consume(&counter, &key, 2, end_of_jan).await, (false, 2));
    assert_eq!(
        consume(&counter, &key, 2, start_of_feb + secs(5)).await,
        (true, 2)
    );
    assert_eq!(
        consume(&counter, &key, 2, start_of_feb + secs(6)).await,
        (false, 2)
    );

    let end_of_year = Utc.with_ymd_and_hms(2030, 12, 31, 23, 59, 59).unwrap() + ms(999);
    let new_year = Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap();
    assert_eq!(consume(&counter, &key, 1, end_of_year).await, (true, 1));
    assert_eq!(consume(&counter, &key, 1, end_of_year).await, (false, 1));
    assert_eq!(consume(&counter, &key, 1, new_year).await, (true, 1));
    // January 2031 is not January 2030.
    assert_eq!(consume(&counter, &key, 3, new_year).await, (true, 2));
}

/// Keys do not share a counter.
pub async fn usage_counter_keys_independent(counter: Arc<dyn UsageCounter>, ns: &str) {
    let (a, b) = (format!("{ns}:client-a"), format!("{ns}:client-b"));
    let t0 = base_time();
    assert_eq!(consume(&counter, &a, 1, t0).await, (true, 1));
    assert_eq!(consume(&counter, &a, 1, t0).await, (false, 1));
    assert_eq!(consume(&counter, &b, 1, t0).await, (true, 1));
}

/// 30 simultaneous tries with limit 10: exactly 10 granted, used 1..=10 once each.
pub async fn usage_counter_concurrent_is_atomic(counter: Arc<dyn UsageCounter>, ns: &str) {
    let key = format!("{ns}:concurrent");
    let t0 = base_time();
    let mut tasks = JoinSet::new();
    for _ in 0..30 {
        let counter = Arc::clone(&counter);
        let key = key.clone();
        tasks.spawn(async move { counter.try_consume(&key, 10, t0).await.unwrap() });
    }
    let decisions = tasks.join_all().await;
    let mut used: Vec<u64> = decisions
        .iter()
        .filter(|d| d.allowed)
        .map(|d| d.used)
        .collect();
    used.sort_unstable();
    assert_eq!(used, (1..=10).collect::<Vec<_>>());
    assert!(
        decisions
            .iter()
            .filter(|d| !d.allowed)
            .all(|d| d.used == 10)
    );
}

/// Units used by `key` in the month of `at`, read without taking one: a try
/// with the limit at `expected` is refused and reports the count, if the
/// count is `expected`.
async fn used(counter: &Arc<dyn UsageCounter>, key: &str, expected: u64, at: DateTime<Utc>) -> u64 {
    let d = counter.try_consume(key, expected, at).await.unwrap();
    assert!(
        !d.allowed,
        "{key}: fewer than {expected} used (a unit was taken)"
    );
    d.used
}

/// A refund gives back one unit of the month of its `taken_at`: the next try
/// is granted again with the same count. Never below zero, and a counter
/// refunded to zero counts from one again. Another month is untouched, and a
/// refund of a key never used does nothing.
pub async fn usage_counter_refund(counter: Arc<dyn UsageCounter>, ns: &str) {
    let key = format!("{ns}:refund");
    let t0 = base_time();
    for n in 1..=3 {
        assert_eq!(consume(&counter, &key, 3, t0).await, (true, n));
    }
    counter.refund(&key, t0).await.unwrap();
    assert_eq!(used(&counter, &key, 2, t0 + secs(1)).await, 2);
    assert_eq!(consume(&counter, &key, 3, t0 + secs(1)).await, (true, 3));
    assert_eq!(consume(&counter, &key, 3, t0 + secs(1)).await, (false, 3));

    // Refunded at another instant of the same month: the same counter.
    counter.refund(&key, t0 + TimeDelta::days(3)).await.unwrap();
    assert_eq!(used(&counter, &key, 2, t0).await, 2);
    // Another month's refund does not touch this one.
    let next_month = Utc.with_ymd_and_hms(2030, 4, 1, 0, 0, 0).unwrap();
    counter.refund(&key, next_month).await.unwrap();
    assert_eq!(used(&counter, &key, 2, t0).await, 2);
    assert_eq!(consume(&counter, &key, 5, next_month).await, (true, 1));

    // Down to zero and no further.
    for _ in 0..4 {
        counter.refund(&key, t0).await.unwrap();
    }
    assert_eq!(used(&counter, &key, 0, t0).await, 0);
    assert_eq!(consume(&counter, &key, 1, t0).await, (true, 1));
    assert_eq!(used(&counter, &key, 1, next_month).await, 1);

    let never = format!("{ns}:never-used");
    counter.refund(&never, t0).await.unwrap();
    assert_eq!(used(&counter, &never, 0, t0).await, 0);
}

/// A seed sets a counter the month does not have yet, and never changes one
/// it has; other months are untouched.
pub async fn usage_counter_seed(counter: Arc<dyn UsageCounter>, ns: &str) {
    let key = format!("{ns}:seed");
    let t0 = base_time();
    counter.seed(&key, 5, t0).await.unwrap();
    assert_eq!(consume(&counter, &key, 10, t0).await, (true, 6));
    counter.seed(&key, 1, t0 + secs(1)).await.unwrap();
    counter.seed(&key, 9, t0 + secs(1)).await.unwrap();
    assert_eq!(consume(&counter, &key, 10, t0 + secs(2)).await, (true, 7));
    let next_month = Utc.with_ymd_and_hms(2030, 4, 1, 0, 0, 0).unwrap();
    assert_eq!(consume(&counter, &key, 10, next_month).await, (true, 1));
    let other = format!("{ns}:seed-full");
    counter.seed(&other, 3, t0).await.unwrap();
    assert_eq!(consume(&counter, &other, 3, t0).await, (false, 3));
}

/// Every check of the [`UsageCounter`] contract.
pub async fn usage_counter_contract(counter: Arc<dyn UsageCounter>, ns: &str) {
    usage_counter_seed(Arc::clone(&counter), ns).await;
    usage_counter_limit(Arc::clone(&counter), ns).await;
    usage_counter_month_rollover(Arc::clone(&counter), ns).await;
    usage_counter_keys_independent(Arc::clone(&counter), ns).await;
    usage_counter_concurrent_is_atomic(Arc::clone(&counter), ns).await;
    usage_counter_refund(counter, ns).await;
}

// ---------------------------------------------------------------------------
// AdmissionControl
// ---------------------------------------------------------------------------

/// An adapter's [`AdmissionControl`] with the [`RateLimiter`] and
/// [`UsageCounter`] whose counters it shares.
#[derive(Clone)]
pub struct AdmissionPorts {
    /// The port under test.
    pub admission: Arc<dyn AdmissionControl>,
    /// The same adapter's limiter.
    pub limiter: Arc<dyn RateLimiter>,
    /// The same adapter's counter.
    pub counter: Arc<dyn UsageCounter>,
}

impl std::fmt::Debug for AdmissionPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdmissionPorts").finish_non_exhaustive()
    }
}

const WINDOW: Duration = Duration::from_secs(10);

/// One admission; a counter the adapter does not know is seeded at zero
/// first, as the token service does (from the audit log).
async fn admit(
    ports: &AdmissionPorts,
    ns: &str,
    rate_limit: u32,
    quota_limit: u64,
    at: DateTime<Utc>,
) -> Admission {
    let (rate_key, quota_key) = (format!("{ns}:rate"), format!("{ns}:quota"));
    let once = || {
        ports
            .admission
            .admit(&rate_key, rate_limit, WINDOW, &quota_key, quota_limit, at)
    };
    if let Some(admission) = once().await.unwrap() {
        return admission;
    }
    ports.counter.seed(&quota_key, 0, at).await.unwrap();
    once()
        .await
        .unwrap()
        .expect("a seeded counter is known to admission")
}

/// A counter the adapter does not know (it may have lost it) is reported as
/// such and nothing is counted, neither the request nor a unit; once seeded,
/// admission continues from the seeded count. An adapter that always knows
/// its counters answers at once.
pub async fn admission_unknown_counter_counts_nothing_until_seeded(
    ports: AdmissionPorts,
    ns: &str,
) {
    let t0 = base_time();
    let (rate_key, quota_key) = (format!("{ns}:rate"), format!("{ns}:quota"));
    let first = ports
        .admission
        .admit(&rate_key, 5, WINDOW, &quota_key, 10, t0)
        .await
        .unwrap();
    let expected_used = if first.is_none() {
        let untouched = ports.limiter.hit(&rate_key, 5, WINDOW, t0).await.unwrap();
        assert_eq!(
            untouched.remaining, 4,
            "an unknown counter counted the request"
        );
        ports.counter.seed(&quota_key, 7, t0).await.unwrap();
        let seeded = ports
            .admission
            .admit(&rate_key, 5, WINDOW, &quota_key, 10, t0)
            .await
            .unwrap()
            .expect("known once seeded");
        assert_eq!(seeded.rate.remaining, 3);
        seeded.quota.map(|q| q.used)
    } else {
        first.and_then(|a| a.quota).map(|q| q.used)
    };
    if first.is_none() {
        assert_eq!(expected_used, Some(8), "admission continued from the seed");
    } else {
        assert_eq!(expected_used, Some(1));
    }
}

fn granted(used: u64) -> Option<QuotaDecision> {
    Some(QuotaDecision {
        allowed: true,
        used,
    })
}

/// The rate decision is exactly [`RateLimiter::hit`]'s and the quota decision
/// [`UsageCounter::try_consume`]'s; a request the rate limit refuses takes no
/// unit; a request the quota refuses still counts against the rate limit (it
/// was a request), and takes no unit.
pub async fn admission_is_hit_then_consume(ports: AdmissionPorts, ns: &str) {
    let t0 = base_time();
    let frees = |oldest: DateTime<Utc>| ceil_secs(oldest + secs(10));
    let a = admit(&ports, ns, 3, 2, t0).await;
    assert_allowed(a.rate, 3, 2, frees(t0), "first");
    assert_eq!(a.quota, granted(1), "first");
    let a = admit(&ports, ns, 3, 2, t0 + secs(1)).await;
    assert_allowed(a.rate, 3, 1, frees(t0), "second");
    assert_eq!(a.quota, granted(2), "second");
    let a = admit(&ports, ns, 3, 2, t0 + secs(2)).await;
    assert_allowed(a.rate, 3, 0, frees(t0), "third: rate allows");
    assert_eq!(
        a.quota,
        Some(QuotaDecision {
            allowed: false,
            used: 2
        }),
        "third: quota spent"
    );
    let a = admit(&ports, ns, 3, 5, t0 + secs(3)).await;
    assert_refused(a.rate, 3, frees(t0), 7, "fourth: rate refuses");
    assert_eq!(a.quota, None, "no unit tried");
    assert_eq!(used(&ports.counter, &format!("{ns}:quota"), 2, t0).await, 2);
    // The first request left the window: admitted again, with a unit.
    let a = admit(&ports, ns, 3, 5, t0 + secs(10)).await;
    assert_allowed(a.rate, 3, 0, frees(t0 + secs(1)), "after a window");
    assert_eq!(a.quota, granted(3));
}

/// Requests and units counted through `admit` are seen by `hit` and
/// `try_consume`, and the other way round: they are the same counters.
pub async fn admission_shares_the_counters(ports: AdmissionPorts, ns: &str) {
    let t0 = base_time();
    let (rate_key, quota_key) = (format!("{ns}:rate"), format!("{ns}:quota"));
    let d = ports.limiter.hit(&rate_key, 3, WINDOW, t0).await.unwrap();
    assert_eq!(d.remaining, 2);
    assert_eq!(consume(&ports.counter, &quota_key, 10, t0).await, (true, 1));
    let a = admit(&ports, ns, 3, 10, t0 + secs(1)).await;
    assert_eq!(a.rate.remaining, 1, "the limiter's hit counted");
    assert_eq!(a.quota, granted(2), "the counter's unit counted");
    let d = ports
        .limiter
        .hit(&rate_key, 3, WINDOW, t0 + secs(2))
        .await
        .unwrap();
    assert_eq!(d.remaining, 0, "admit's hit counted");
    assert_eq!(
        consume(&ports.counter, &quota_key, 10, t0 + secs(2)).await,
        (true, 3),
        "admit's unit counted"
    );
    // A refund through the counter gives back a unit admit took.
    ports
        .counter
        .refund(&quota_key, t0 + secs(1))
        .await
        .unwrap();
    assert_eq!(used(&ports.counter, &quota_key, 2, t0).await, 2);
}

/// The quota is the UTC calendar month of `now`, as for `try_consume`.
pub async fn admission_quota_month(ports: AdmissionPorts, ns: &str) {
    let end_of_march = Utc.with_ymd_and_hms(2030, 3, 31, 23, 59, 59).unwrap() + ms(999);
    let start_of_april = Utc.with_ymd_and_hms(2030, 4, 1, 0, 0, 0).unwrap();
    assert_eq!(
        admit(&ports, ns, 10, 1, end_of_march).await.quota,
        granted(1)
    );
    assert_eq!(
        admit(&ports, ns, 10, 1, start_of_april).await.quota,
        granted(1)
    );
}

/// 40 simultaneous admissions with rate limit 20 and quota 10: exactly 20
/// pass the rate limit, of which exactly 10 get a unit (used 1..=10 once
/// each); the 20 refused by the rate limit try no unit.
pub async fn admission_concurrent_is_atomic(ports: AdmissionPorts, ns: &str) {
    let t0 = base_time();
    let mut tasks = JoinSet::new();
    for i in 0..40 {
        let ports = ports.clone();
        let ns = ns.to_owned();
        tasks.spawn(async move { admit(&ports, &ns, 20, 10, t0 + ms(i % 3)).await });
    }
    let admissions = tasks.join_all().await;
    let passed: Vec<_> = admissions.iter().filter(|a| a.rate.allowed).collect();
    assert_eq!(passed.len(), 20);
    let mut remaining: Vec<u32> = passed.iter().map(|a| a.rate.remaining).collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..20).collect::<Vec<_>>());
    let mut used: Vec<u64> = passed
        .iter()
        .filter_map(|a| a.quota)
        .filter(|q| q.allowed)
        .map(|q| q.used)
        .collect();
    used.sort_unstable();
    assert_eq!(used, (1..=10).collect::<Vec<_>>());
    assert!(passed.iter().all(|a| a.quota.is_some()));
    assert!(
        admissions
            .iter()
            .filter(|a| !a.rate.allowed)
            .all(|a| a.quota.is_none())
    );
}

/// Every check of the [`AdmissionControl`] contract; each takes its own
/// namespace under `ns`.
pub async fn admission_contract(ports: AdmissionPorts, ns: &str) {
    admission_is_hit_then_consume(ports.clone(), &format!("{ns}:order")).await;
    admission_shares_the_counters(ports.clone(), &format!("{ns}:shared")).await;
    admission_quota_month(ports.clone(), &format!("{ns}:month")).await;
    admission_concurrent_is_atomic(ports.clone(), &format!("{ns}:concurrent")).await;
    admission_unknown_counter_counts_nothing_until_seeded(ports, &format!("{ns}:unknown")).await;
}

// ---------------------------------------------------------------------------
// RevocationList
// ---------------------------------------------------------------------------

/// A tiny [`RevokedTokenStore`] in memory, the durable side of the revocation
/// suites. Counts calls of `unexpired`, so adapter tests can check when they
/// reload.
#[derive(Debug, Default)]
pub struct InMemoryRevokedTokens {
    tokens: Mutex<Vec<RevokedToken>>,
    unexpired_calls: AtomicUsize,
}

impl InMemoryRevokedTokens {
    /// An empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Records `token`; `false` when it was there already.
    pub fn add(&self, token: RevokedToken) -> bool {
        let mut tokens = self.tokens.lock().unwrap();
        if tokens.iter().any(|t| t.token_id == token.token_id) {
            return false;
        }
        tokens.push(token);
        true
    }

    /// How often `unexpired` was called.
    pub fn unexpired_calls(&self) -> usize {
        self.unexpired_calls.load(Ordering::SeqCst)
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

// Written out as `#[async_trait]` expands, since this crate does not depend
// on async-trait.
impl RevokedTokenStore for InMemoryRevokedTokens {
    fn revoke<'life0, 'life1, 'life2, 'life3, 'async_trait>(
        &'life0 self,
        _owner: &'life1 Owner,
        token: &'life2 RevokedToken,
        _event: &'life3 AuditEvent,
    ) -> BoxFuture<'async_trait, Result<bool, StoreError>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        'life3: 'async_trait,
        Self: 'async_trait,
    {
        let added = self.add(token.clone());
        Box::pin(async move { Ok(added) })
    }

    fn unexpired<'life0, 'async_trait>(
        &'life0 self,
        now: DateTime<Utc>,
    ) -> BoxFuture<'async_trait, Result<Vec<RevokedToken>, StoreError>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.unexpired_calls.fetch_add(1, Ordering::SeqCst);
        let tokens = self
            .tokens
            .lock()
            .unwrap()
            .iter()
            .filter(|t| t.expires_at > now)
            .cloned()
            .collect();
        Box::pin(async move { Ok(tokens) })
    }
}

fn revoked(expires_at: DateTime<Utc>) -> RevokedToken {
    RevokedToken {
        token_id: TokenId(Uuid::new_v4()),
        expires_at,
    }
}

/// Inserted tokens are reported revoked, others not; inserting twice is harmless.
pub async fn revocation_insert_and_contains(
    make: impl AsyncFn(Arc<dyn RevokedTokenStore>) -> Arc<dyn RevocationList>,
) {
    let durable = InMemoryRevokedTokens::new();
    let list = make(durable.clone()).await;
    let t0 = base_time();
    let token = revoked(t0 + TimeDelta::hours(1));
    let other = revoked(t0 + TimeDelta::hours(1));
    assert!(!list.contains(token.token_id, t0).await.unwrap());
    durable.add(token.clone());
    list.insert(&token, t0).await.unwrap();
    assert!(list.contains(token.token_id, t0).await.unwrap());
    assert!(list.contains(token.token_id, t0 + secs(1)).await.unwrap());
    list.insert(&token, t0 + secs(2)).await.unwrap();
    assert!(list.contains(token.token_id, t0 + secs(3)).await.unwrap());
    assert!(!list.contains(other.token_id, t0).await.unwrap());
}

/// A token is reported revoked only until it expires: one already expired
/// when inserted (also exactly at `now`) is not reported, and an entry stops
/// being reported at its token's `exp`.
pub async fn revocation_expiry(
    make: impl AsyncFn(Arc<dyn RevokedTokenStore>) -> Arc<dyn RevocationList>,
) {
    let list = make(InMemoryRevokedTokens::new()).await;
    let t0 = base_time();
    let expired = revoked(t0 - secs(1));
    list.insert(&expired, t0).await.unwrap();
    assert!(!list.contains(expired.token_id, t0).await.unwrap());
    let expiring_now = revoked(t0);
    list.insert(&expiring_now, t0).await.unwrap();
    assert!(!list.contains(expiring_now.token_id, t0).await.unwrap());

    let live = revoked(t0 + secs(60));
    list.insert(&live, t0).await.unwrap();
    assert!(list.contains(live.token_id, t0).await.unwrap());
    assert!(list.contains(live.token_id, t0 + ms(59_999)).await.unwrap());
    assert!(!list.contains(live.token_id, t0 + secs(60)).await.unwrap());
    assert!(!list.contains(live.token_id, t0 + secs(61)).await.unwrap());
}

/// After the list's own storage is lost (`wipe`: for Redis, every key under
/// the test's prefix deleted, as FLUSHALL or a restart would), the very next
/// answer is right again: it reloads the unexpired revocations from the
/// durable store. Also again after a second loss.
pub async fn revocation_survives_storage_loss(
    make: impl AsyncFn(Arc<dyn RevokedTokenStore>) -> Arc<dyn RevocationList>,
    wipe: impl AsyncFn(),
) {
    let durable = InMemoryRevokedTokens::new();
    let list = make(durable.clone()).await;
    let t0 = base_time();
    // Revoked the way the service does it: durable store first, then the list.
    let a = revoked(t0 + TimeDelta::hours(1));
    let b = revoked(t0 + TimeDelta::hours(2));
    for token in [&a, &b] {
        durable.add(token.clone());
        list.insert(token, t0).await.unwrap();
    }
    // Only in the durable store: the list can know it only by reloading.
    let durable_only = revoked(t0 + TimeDelta::hours(1));
    durable.add(durable_only.clone());
    // Expired: never comes back.
    let expired = revoked(t0 - secs(1));
    durable.add(expired.clone());
    assert!(list.contains(a.token_id, t0).await.unwrap());

    wipe().await;
    assert!(
        list.contains(durable_only.token_id, t0).await.unwrap(),
        "first answer after the loss must come from a reload"
    );
    assert!(list.contains(a.token_id, t0).await.unwrap());
    assert!(list.contains(b.token_id, t0).await.unwrap());
    assert!(!list.contains(expired.token_id, t0).await.unwrap());
    assert!(!list.contains(TokenId(Uuid::new_v4()), t0).await.unwrap());

    wipe().await;
    assert!(
        list.contains(b.token_id, t0 + secs(1)).await.unwrap(),
        "second loss"
    );
    assert!(
        list.contains(durable_only.token_id, t0 + secs(1))
            .await
            .unwrap()
    );
    // Reloaded entries still expire with their tokens.
    assert!(!list.contains(a.token_id, a.expires_at).await.unwrap());
    assert!(list.contains(b.token_id, a.expires_at).await.unwrap());

    // New revocations after a reload are kept as usual.
    let c = revoked(t0 + TimeDelta::hours(1));
    durable.add(c.clone());
    list.insert(&c, t0 + secs(2)).await.unwrap();
    assert!(list.contains(c.token_id, t0 + secs(2)).await.unwrap());
}

/// Every check of the [`RevocationList`] contract.
pub async fn revocation_list_contract(
    make: impl AsyncFn(Arc<dyn RevokedTokenStore>) -> Arc<dyn RevocationList>,
    wipe: impl AsyncFn(),
) {
    revocation_insert_and_contains(&make).await;
    revocation_expiry(&make).await;
    revocation_survives_storage_loss(&make, wipe).await;
}
