//! The shared contract suites of `idp-port-tests`, run against the memory
//! adapters, each check on its own and then each `*_contract` whole.
//!
//! Storage loss of the revocation list: memory is lost only with the process,
//! so `wipe` simulates a restart. The list handed to the suite is a
//! [`Process`]: a proxy to the list of the current process; `wipe` replaces
//! it the way the server starts (a fresh `MemoryCache`, its revocation list on
//! the same durable store, `warm`). A no-op `wipe` would not fit: the suite
//! puts a revocation in the durable store only and expects the first answer
//! after the loss to know it, which only a reload can give.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use idp_cache_memory::{MemoryCache, MemoryReplayGuard, MemoryRevocationList};
use idp_domain::StoreError;
use idp_domain::ports::{
    RateLimiter, ReplayGuard, RevocationList, RevokedToken, RevokedTokenStore, UsageCounter,
};
use idp_domain::values::TokenId;
use idp_port_tests::{cache, replay};

fn limiter() -> Arc<dyn RateLimiter> {
    Arc::new(MemoryCache::new().rate_limiter())
}

fn counter() -> Arc<dyn UsageCounter> {
    Arc::new(MemoryCache::new().usage_counter())
}

/// What the server does at start: a fresh cache, its revocation list over the
/// durable store, warmed.
async fn start(durable: Arc<dyn RevokedTokenStore>) -> MemoryRevocationList {
    let list = MemoryCache::new().revocation_list(durable);
    list.warm(cache::base_time()).await.unwrap();
    list
}

/// One server process's revocation list, restartable by the test.
struct Process {
    durable: Arc<dyn RevokedTokenStore>,
    current: Mutex<Arc<MemoryRevocationList>>,
    restarts: Mutex<usize>,
}

impl Process {
    async fn start(durable: Arc<dyn RevokedTokenStore>) -> Arc<Self> {
        let list = start(Arc::clone(&durable)).await;
        Arc::new(Self {
            durable,
            current: Mutex::new(Arc::new(list)),
            restarts: Mutex::new(0),
        })
    }

    /// The process dies, taking its memory along, and starts again.
    async fn restart(&self) {
        let list = start(Arc::clone(&self.durable)).await;
        *self.current.lock().unwrap() = Arc::new(list);
        *self.restarts.lock().unwrap() += 1;
    }

    fn list(&self) -> Arc<MemoryRevocationList> {
        Arc::clone(&self.current.lock().unwrap())
    }
}

#[async_trait]
impl RevocationList for Process {
    async fn insert(&self, token: &RevokedToken, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.list().insert(token, now).await
    }

    async fn contains(&self, token_id: TokenId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.list().contains(token_id, now).await
    }
}

/// The suite's `make` and `wipe` over restartable processes: `wipe` restarts
/// the process `make` started last (the suite wipes only the list it made
/// last).
#[derive(Default)]
struct Processes {
    latest: Mutex<Option<Arc<Process>>>,
}

impl Processes {
    async fn make(&self, durable: Arc<dyn RevokedTokenStore>) -> Arc<dyn RevocationList> {
        let process = Process::start(durable).await;
        *self.latest.lock().unwrap() = Some(Arc::clone(&process));
        process
    }

    async fn wipe(&self) {
        let process = self
            .latest
            .lock()
            .unwrap()
            .clone()
            .expect("a list was made");
        process.restart().await;
    }

    fn restarts(&self) -> usize {
        let process = self
            .latest
            .lock()
            .unwrap()
            .clone()
            .expect("a list was made");
        *process.restarts.lock().unwrap()
    }
}

#[tokio::test]
async fn rate_limiter_sliding_window() {
    cache::rate_limiter_sliding_window(limiter(), "c").await;
}

#[tokio::test]
async fn rate_limiter_refused_not_counted() {
    cache::rate_limiter_refused_not_counted(limiter(), "c").await;
}

#[tokio::test]
async fn rate_limiter_keys_independent() {
    cache::rate_limiter_keys_independent(limiter(), "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_concurrent_hits_are_atomic() {
    cache::rate_limiter_concurrent_hits_are_atomic(limiter(), "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_contract() {
    cache::rate_limiter_contract(limiter(), "c").await;
}

#[tokio::test]
async fn usage_counter_limit() {
    cache::usage_counter_limit(counter(), "c").await;
}

#[tokio::test]
async fn usage_counter_month_rollover() {
    cache::usage_counter_month_rollover(counter(), "c").await;
}

#[tokio::test]
async fn usage_counter_keys_independent() {
    cache::usage_counter_keys_independent(counter(), "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counter_concurrent_is_atomic() {
    cache::usage_counter_concurrent_is_atomic(counter(), "c").await;
}

#[tokio::test]
async fn usage_counter_refund() {
    cache::usage_counter_refund(counter(), "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counter_contract() {
    cache::usage_counter_contract(counter(), "c").await;
}

/// The admission of a fresh cache, with that cache's limiter and counter.
fn admission() -> cache::AdmissionPorts {
    let memory = MemoryCache::new();
    cache::AdmissionPorts {
        admission: Arc::new(memory.admission()),
        limiter: Arc::new(memory.rate_limiter()),
        counter: Arc::new(memory.usage_counter()),
    }
}

#[tokio::test]
async fn admission_is_hit_then_consume() {
    cache::admission_is_hit_then_consume(admission(), "c").await;
}

#[tokio::test]
async fn admission_shares_the_counters() {
    cache::admission_shares_the_counters(admission(), "c").await;
}

#[tokio::test]
async fn admission_quota_month() {
    cache::admission_quota_month(admission(), "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_concurrent_is_atomic() {
    cache::admission_concurrent_is_atomic(admission(), "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_contract() {
    cache::admission_contract(admission(), "c").await;
}

#[tokio::test]
async fn revocation_insert_and_contains() {
    cache::revocation_insert_and_contains(async |durable| {
        let list: Arc<dyn RevocationList> = Arc::new(start(durable).await);
        list
    })
    .await;
}

#[tokio::test]
async fn revocation_expiry() {
    cache::revocation_expiry(async |durable| {
        let list: Arc<dyn RevocationList> = Arc::new(start(durable).await);
        list
    })
    .await;
}

#[tokio::test]
async fn revocation_survives_storage_loss() {
    let processes = Processes::default();
    cache::revocation_survives_storage_loss(
        async |durable| processes.make(durable).await,
        async || processes.wipe().await,
    )
    .await;
    assert_eq!(processes.restarts(), 2, "the suite lost the storage twice");
}

#[tokio::test]
async fn revocation_list_contract() {
    let processes = Processes::default();
    cache::revocation_list_contract(
        async |durable| processes.make(durable).await,
        async || processes.wipe().await,
    )
    .await;
    assert_eq!(processes.restarts(), 2);
}

#[tokio::test]
async fn rate_limiter_reserve_and_release() {
    cache::rate_limiter_reserve_and_release(limiter(), "c").await;
}

#[tokio::test]
async fn usage_counter_seed() {
    cache::usage_counter_seed(counter(), "c").await;
}

#[tokio::test]
async fn admission_unknown_counter_counts_nothing_until_seeded() {
    cache::admission_unknown_counter_counts_nothing_until_seeded(admission(), "c").await;
}

/// A fresh guard that started at the suites' base time.
fn replay_guard() -> Arc<dyn ReplayGuard> {
    Arc::new(MemoryReplayGuard::new(cache::base_time()))
}

#[tokio::test]
async fn replay_first_use_then_replayed() {
    replay::replay_first_use_then_replayed(replay_guard(), "c").await;
}

#[tokio::test]
async fn replay_keys_independent() {
    replay::replay_keys_independent(replay_guard(), "c").await;
}

#[tokio::test]
async fn replay_entry_expires() {
    replay::replay_entry_expires(replay_guard(), "c").await;
}

#[tokio::test]
async fn replay_expired_expiry_is_refused() {
    replay::replay_expired_expiry_is_refused(replay_guard(), "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_concurrent_first_use_has_one_winner() {
    replay::replay_concurrent_first_use_has_one_winner(replay_guard(), "c").await;
}

#[tokio::test]
async fn replay_remembered_since_is_stable() {
    replay::replay_remembered_since_is_stable(replay_guard(), "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_guard_contract() {
    replay::replay_guard_contract(replay_guard(), "c").await;
}
