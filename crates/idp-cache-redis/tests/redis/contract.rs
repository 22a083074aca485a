//! The shared contract suites of `idp-port-tests`, run against Redis.

use std::sync::Arc;

use idp_cache_redis::RedisCache;
use idp_domain::ports::{
    RateLimiter, ReplayGuard, RevocationList, RevokedTokenStore, UsageCounter,
};
use idp_port_tests::{cache, replay};

use crate::support::TestRedis;

fn limiter(redis: &TestRedis) -> Arc<dyn RateLimiter> {
    Arc::new(redis.cache.rate_limiter())
}

fn list_on(cache: &RedisCache, durable: Arc<dyn RevokedTokenStore>) -> Arc<dyn RevocationList> {
    Arc::new(cache.revocation_list(durable))
}

fn counter(redis: &TestRedis) -> Arc<dyn UsageCounter> {
    Arc::new(redis.cache.usage_counter())
}

#[tokio::test]
async fn rate_limiter_sliding_window() {
    let redis = TestRedis::new().await;
    cache::rate_limiter_sliding_window(limiter(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn rate_limiter_refused_not_counted() {
    let redis = TestRedis::new().await;
    cache::rate_limiter_refused_not_counted(limiter(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn rate_limiter_keys_independent() {
    let redis = TestRedis::new().await;
    cache::rate_limiter_keys_independent(limiter(&redis), "c").await;
    redis.wipe().await;
}

/// 50 parallel hits with limit 10: exactly 10 allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_concurrent_hits_are_atomic() {
    let redis = TestRedis::new().await;
    cache::rate_limiter_concurrent_hits_are_atomic(limiter(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn usage_counter_limit() {
    let redis = TestRedis::new().await;
    cache::usage_counter_limit(counter(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn usage_counter_month_rollover() {
    let redis = TestRedis::new().await;
    cache::usage_counter_month_rollover(counter(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn usage_counter_keys_independent() {
    let redis = TestRedis::new().await;
    cache::usage_counter_keys_independent(counter(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counter_concurrent_is_atomic() {
    let redis = TestRedis::new().await;
    cache::usage_counter_concurrent_is_atomic(counter(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn usage_counter_refund() {
    let redis = TestRedis::new().await;
    cache::usage_counter_refund(counter(&redis), "c").await;
    redis.wipe().await;
}

/// The admission on this test's Redis, with the limiter and counter of the
/// same cache.
fn admission(redis: &TestRedis) -> cache::AdmissionPorts {
    cache::AdmissionPorts {
        admission: Arc::new(redis.cache.admission()),
        limiter: limiter(redis),
        counter: counter(redis),
    }
}

#[tokio::test]
async fn admission_is_hit_then_consume() {
    let redis = TestRedis::new().await;
    cache::admission_is_hit_then_consume(admission(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn admission_shares_the_counters() {
    let redis = TestRedis::new().await;
    cache::admission_shares_the_counters(admission(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn admission_quota_month() {
    let redis = TestRedis::new().await;
    cache::admission_quota_month(admission(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_concurrent_is_atomic() {
    let redis = TestRedis::new().await;
    cache::admission_concurrent_is_atomic(admission(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn revocation_insert_and_contains() {
    let redis = TestRedis::new().await;
    let cache_handle = redis.cache.clone();
    cache::revocation_insert_and_contains(async |durable| list_on(&cache_handle, durable)).await;
    redis.wipe().await;
}

#[tokio::test]
async fn revocation_expiry() {
    let redis = TestRedis::new().await;
    let cache_handle = redis.cache.clone();
    cache::revocation_expiry(async |durable| list_on(&cache_handle, durable)).await;
    redis.wipe().await;
}

#[tokio::test]
async fn revocation_survives_storage_loss() {
    let redis = TestRedis::new().await;
    let cache_handle = redis.cache.clone();
    cache::revocation_survives_storage_loss(
        async |durable| list_on(&cache_handle, durable),
        async || redis.wipe().await,
    )
    .await;
    redis.wipe().await;
}

#[tokio::test]
async fn rate_limiter_reserve_and_release() {
    let redis = TestRedis::new().await;
    cache::rate_limiter_reserve_and_release(limiter(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn usage_counter_seed() {
    let redis = TestRedis::new().await;
    cache::usage_counter_seed(counter(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn admission_unknown_counter_counts_nothing_until_seeded() {
    let redis = TestRedis::new().await;
    cache::admission_unknown_counter_counts_nothing_until_seeded(admission(&redis), "c").await;
    redis.wipe().await;
}

fn replay_guard(redis: &TestRedis) -> Arc<dyn ReplayGuard> {
    Arc::new(redis.cache.replay_guard())
}

#[tokio::test]
async fn replay_first_use_then_replayed() {
    let redis = TestRedis::new().await;
    replay::replay_first_use_then_replayed(replay_guard(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn replay_keys_independent() {
    let redis = TestRedis::new().await;
    replay::replay_keys_independent(replay_guard(&redis), "c").await;
    redis.wipe().await;
}

/// Sleeps 1.2 s: Redis counts the entry's lifetime in real time.
#[tokio::test]
async fn replay_entry_expires() {
    let redis = TestRedis::new().await;
    replay::replay_entry_expires(replay_guard(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn replay_expired_expiry_is_refused() {
    let redis = TestRedis::new().await;
    replay::replay_expired_expiry_is_refused(replay_guard(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_concurrent_first_use_has_one_winner() {
    let redis = TestRedis::new().await;
    replay::replay_concurrent_first_use_has_one_winner(replay_guard(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test]
async fn replay_remembered_since_is_stable() {
    let redis = TestRedis::new().await;
    replay::replay_remembered_since_is_stable(replay_guard(&redis), "c").await;
    redis.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_guard_contract() {
    let redis = TestRedis::new().await;
    replay::replay_guard_contract(replay_guard(&redis), "c").await;
    redis.wipe().await;
}
