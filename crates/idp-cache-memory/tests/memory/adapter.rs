//! What the contract does not say but this adapter promises: bounded memory,
//! atomic hits on a multi-threaded runtime, one state for all handles of a
//! cache, revocations loaded from the durable store at start and before the
//! first answer, failing closed when that store fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use idp_cache_memory::{MemoryCache, MemoryRateLimiter, MemoryRevocationList};
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::ports::{
    HealthCheck, RateLimiter, RevocationList, RevokedToken, RevokedTokenStore, UsageCounter,
};
use idp_domain::values::{Owner, TokenId};
use idp_port_tests::cache::{InMemoryRevokedTokens, base_time};
use tokio::sync::Barrier;
use tokio::task::JoinSet;
use uuid::Uuid;

fn revoked(expires_at: DateTime<Utc>) -> RevokedToken {
    RevokedToken {
        token_id: TokenId(Uuid::new_v4()),
        expires_at,
    }
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

const WINDOW: Duration = Duration::from_secs(10);

/// Hits `keys` distinct keys once each at `at`.
async fn hit_distinct_keys(
    limiter: &MemoryRateLimiter,
    prefix: &str,
    keys: usize,
    at: DateTime<Utc>,
) {
    for i in 0..keys {
        let d = limiter
            .hit(&format!("{prefix}{i}"), 5, WINDOW, at)
            .await
            .unwrap();
        assert!(d.allowed);
    }
}

#[tokio::test]
async fn hits_forget_keys_once_their_window_passed() {
    let limiter = MemoryCache::new().rate_limiter();
    let t0 = base_time();
    hit_distinct_keys(&limiter, "ip:", 10_000, t0).await;
    assert_eq!(limiter.key_count(), 10_000, "all still in their window");

    // The window has passed for all of them. One client keeps hitting (and is
    // refused after its first): within as many hits as there were keys, a
    // hit sweeps and only that client's key is left.
    let t1 = t0 + secs(10);
    for _ in 0..=10_000 {
        limiter.hit("busy", 1, WINDOW, t1).await.unwrap();
    }
    assert_eq!(limiter.key_count(), 1);
    let d = limiter.hit("ip:0", 5, WINDOW, t1).await.unwrap();
    assert_eq!(d.remaining, 4, "a swept key starts over");
}

#[tokio::test]
async fn prune_drops_exactly_the_keys_whose_window_passed() {
    let limiter = MemoryRateLimiter::new();
    let t0 = base_time();
    hit_distinct_keys(&limiter, "early:", 500, t0).await;
    hit_distinct_keys(&limiter, "late:", 500, t0 + secs(5)).await;
    assert_eq!(limiter.prune(t0 + TimeDelta::milliseconds(9_999)), 1_000);
    assert_eq!(
        limiter.prune(t0 + secs(10)),
        500,
        "a request counts until one window after it"
    );
    assert_eq!(limiter.key_count(), 500);
    assert_eq!(limiter.prune(t0 + secs(15)), 0);
    assert_eq!(limiter.key_count(), 0);
}

/// 50 simultaneous hits through two handles of one cache, limit 10: exactly
/// 10 pass, seeing remaining 9..=0 once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_through_two_handles_are_atomic() {
    let cache = MemoryCache::new();
    let handles: [Arc<dyn RateLimiter>; 2] = [
        Arc::new(cache.rate_limiter()),
        Arc::new(cache.rate_limiter()),
    ];
    let start = Arc::new(Barrier::new(50));
    let t0 = base_time();
    let mut tasks = JoinSet::new();
    for i in 0..50 {
        let limiter = Arc::clone(&handles[i % 2]);
        let start = Arc::clone(&start);
        tasks.spawn(async move {
            start.wait().await;
            limiter
                .hit("client", 10, Duration::from_secs(60), t0)
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
    assert!(
        decisions
            .iter()
            .filter(|d| !d.allowed)
            .all(|d| d.retry_after == 60 && d.remaining == 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_units_through_two_handles_are_atomic() {
    let cache = MemoryCache::new();
    let handles: [Arc<dyn UsageCounter>; 2] = [
        Arc::new(cache.usage_counter()),
        Arc::new(cache.usage_counter()),
    ];
    let start = Arc::new(Barrier::new(30));
    let mut tasks = JoinSet::new();
    for i in 0..30 {
        let counter = Arc::clone(&handles[i % 2]);
        let start = Arc::clone(&start);
        tasks.spawn(async move {
            start.wait().await;
            counter
                .try_consume("client", 10, base_time())
                .await
                .unwrap()
        });
    }
    let decisions = tasks.join_all().await;
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 10);
    assert!(
        decisions
            .iter()
            .filter(|d| !d.allowed)
            .all(|d| d.used == 10)
    );
}

#[tokio::test]
async fn handles_of_one_cache_share_state_and_caches_do_not() {
    let (cache, other) = (MemoryCache::new(), MemoryCache::new());
    let t0 = base_time();

    assert!(
        cache
            .rate_limiter()
            .hit("k", 1, WINDOW, t0)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !cache
            .rate_limiter()
            .hit("k", 1, WINDOW, t0)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        other
            .rate_limiter()
            .hit("k", 1, WINDOW, t0)
            .await
            .unwrap()
            .allowed
    );

    assert!(
        cache
            .usage_counter()
            .try_consume("k", 1, t0)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !cache
            .usage_counter()
            .try_consume("k", 1, t0)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        other
            .usage_counter()
            .try_consume("k", 1, t0)
            .await
            .unwrap()
            .allowed
    );

    let durable = InMemoryRevokedTokens::new();
    let token = revoked(t0 + secs(60));
    cache
        .revocation_list(durable.clone())
        .insert(&token, t0)
        .await
        .unwrap();
    assert!(
        cache
            .revocation_list(durable.clone())
            .contains(token.token_id, t0)
            .await
            .unwrap()
    );
    assert!(
        !other
            .revocation_list(durable)
            .contains(token.token_id, t0)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn long_or_odd_keys_are_told_apart_by_their_hash() {
    let cache = MemoryCache::new();
    let limiter = cache.rate_limiter();
    let counter = cache.usage_counter();
    let t0 = base_time();
    let long_a = format!("{}a", "x".repeat(10_000));
    let long_b = format!("{}b", "x".repeat(10_000));
    for key in [&long_a, &long_b, &"with space".to_owned(), &"#x".to_owned()] {
        assert!(
            limiter.hit(key, 1, WINDOW, t0).await.unwrap().allowed,
            "{key:.20}"
        );
        assert!(
            !limiter.hit(key, 1, WINDOW, t0).await.unwrap().allowed,
            "{key:.20}"
        );
        assert!(
            counter.try_consume(key, 1, t0).await.unwrap().allowed,
            "{key:.20}"
        );
        assert!(
            !counter.try_consume(key, 1, t0).await.unwrap().allowed,
            "{key:.20}"
        );
    }
    assert_eq!(limiter.key_count(), 4);
    assert_eq!(counter.counter_count(), 4);
}

#[tokio::test]
async fn usage_of_a_month_is_dropped_a_week_after_it_ends() {
    let counter = MemoryCache::new().usage_counter();
    let january = Utc.with_ymd_and_hms(2030, 1, 20, 12, 0, 0).unwrap();
    for i in 0..100 {
        counter
            .try_consume(&format!("client-{i}"), 5, january)
            .await
            .unwrap();
    }
    let february_7 = Utc.with_ymd_and_hms(2030, 2, 7, 23, 59, 59).unwrap();
    counter
        .try_consume("client-0", 5, february_7)
        .await
        .unwrap();
    assert_eq!(
        counter.counter_count(),
        101,
        "January kept a week after it ends"
    );
    let february_8 = Utc.with_ymd_and_hms(2030, 2, 8, 0, 0, 0).unwrap();
    let d = counter
        .try_consume("client-0", 5, february_8)
        .await
        .unwrap();
    assert_eq!(d.used, 2, "February's count is untouched");
    assert_eq!(counter.counter_count(), 1, "January dropped");
}

#[tokio::test]
async fn warm_loads_the_unexpired_revocations_of_the_durable_store_once() {
    let t0 = base_time();
    let durable = InMemoryRevokedTokens::new();
    let (live, expired, expiring_now) =
        (revoked(t0 + secs(60)), revoked(t0 - secs(1)), revoked(t0));
    for token in [&live, &expired, &expiring_now] {
        durable.add(token.clone());
    }

    let list = MemoryCache::new().revocation_list(durable.clone());
    list.warm(t0).await.unwrap();
    assert_eq!(durable.unexpired_calls(), 1);
    assert_eq!(
        list.entry_count(),
        1,
        "only the unexpired revocation is held"
    );
    assert!(list.contains(live.token_id, t0).await.unwrap());
    assert!(!list.contains(expired.token_id, t0).await.unwrap());
    assert!(!list.contains(expiring_now.token_id, t0).await.unwrap());
    assert!(!list.contains(live.token_id, t0 + secs(60)).await.unwrap());
    assert_eq!(durable.unexpired_calls(), 1, "answers come from memory");
}

#[tokio::test]
async fn a_revocation_survives_a_restart_of_the_process() {
    let t0 = base_time();
    let durable = InMemoryRevokedTokens::new();
    let token = revoked(t0 + secs(3_600));
    {
        let list = MemoryCache::new().revocation_list(durable.clone());
        list.warm(t0).await.unwrap();
        // The service's order: durable store first, then the list.
        durable.add(token.clone());
        list.insert(&token, t0).await.unwrap();
    }
    let restarted = MemoryCache::new().revocation_list(durable);
    restarted.warm(t0 + secs(5)).await.unwrap();
    assert!(
        restarted
            .contains(token.token_id, t0 + secs(5))
            .await
            .unwrap()
    );
}

/// A list nobody warmed still loads before its first answer, once for many
/// simultaneous callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwarmed_list_loads_once_before_it_answers() {
    let t0 = base_time();
    let durable = InMemoryRevokedTokens::new();
    let token = revoked(t0 + secs(60));
    durable.add(token.clone());
    let list = MemoryCache::new().revocation_list(durable.clone());
    let start = Arc::new(Barrier::new(20));
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (list, start) = (list.clone(), Arc::clone(&start));
        tasks.spawn(async move {
            start.wait().await;
            list.contains(token.token_id, t0).await.unwrap()
        });
    }
    assert!(tasks.join_all().await.into_iter().all(|revoked| revoked));
    assert_eq!(durable.unexpired_calls(), 1);
}

/// A durable store that fails while `down`.
#[derive(Default)]
struct FlakyStore {
    down: AtomicBool,
    inner: InMemoryRevokedTokens,
}

#[async_trait]
impl RevokedTokenStore for FlakyStore {
    async fn revoke(
        &self,
        owner: &Owner,
        token: &RevokedToken,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.inner.revoke(owner, token, event).await
    }

    async fn unexpired(&self, now: DateTime<Utc>) -> Result<Vec<RevokedToken>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(anyhow::anyhow!("database down")));
        }
        self.inner.unexpired(now).await
    }
}

#[tokio::test]
async fn a_durable_store_failure_fails_closed_until_a_load_succeeds() {
    let t0 = base_time();
    let durable = Arc::new(FlakyStore::default());
    let token = revoked(t0 + secs(60));
    durable.inner.add(token.clone());
    durable.down.store(true, Ordering::SeqCst);
    let list = MemoryRevocationList::new(durable.clone());

    assert!(matches!(
        list.warm(t0).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(
        matches!(
            list.contains(token.token_id, t0).await,
            Err(StoreError::Unavailable(_))
        ),
        "never 'not revoked' without having loaded"
    );
    durable.down.store(false, Ordering::SeqCst);
    assert!(list.contains(token.token_id, t0).await.unwrap());
    assert_eq!(
        durable.inner.unexpired_calls(),
        1,
        "retried once the store was back"
    );
    durable.down.store(true, Ordering::SeqCst);
    assert!(
        list.contains(token.token_id, t0).await.unwrap(),
        "loaded: memory answers"
    );
}

#[tokio::test]
async fn expired_revocations_are_swept_as_new_ones_arrive() {
    let t0 = base_time();
    let list = MemoryCache::new().revocation_list(InMemoryRevokedTokens::new());
    for _ in 0..5_000 {
        list.insert(&revoked(t0 + secs(1)), t0).await.unwrap();
    }
    assert_eq!(list.entry_count(), 5_000);
    let t1 = t0 + secs(1);
    let fresh: Vec<RevokedToken> = (0..5_000).map(|_| revoked(t1 + secs(60))).collect();
    for token in &fresh {
        list.insert(token, t1).await.unwrap();
    }
    assert_eq!(list.entry_count(), 5_000, "the expired ones were swept");
    for token in &fresh {
        assert!(list.contains(token.token_id, t1).await.unwrap());
    }
}

#[tokio::test]
async fn the_health_check_is_the_always_ready_cache() {
    let health: Arc<dyn HealthCheck> = Arc::new(MemoryCache::new().health());
    assert_eq!(health.name(), "cache");
    health.check().await.unwrap();
}
