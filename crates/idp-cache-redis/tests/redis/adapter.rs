//! What the contract does not say but this adapter promises: key layout and
//! expiry, error mapping, fail-fast start-up, reload protocol, sharing between
//! nodes.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use idp_cache_redis::{ConnectError, Connections, RedisCache, RedisRevocationList, connect, redis};
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::ports::{
    HealthCheck, RateLimiter, RevocationList, RevokedToken, RevokedTokenStore, UsageCounter,
};
use idp_domain::values::{Owner, TokenId};
use idp_port_tests::cache::{InMemoryRevokedTokens, base_time};
use uuid::Uuid;

use crate::support::{TestRedis, redis_url, wipe_prefix};

fn revoked(expires_at: DateTime<Utc>) -> RevokedToken {
    RevokedToken {
        token_id: TokenId(Uuid::new_v4()),
        expires_at,
    }
}

/// Connections aimed at a port where nothing listens.
fn dead_cache() -> RedisCache {
    RedisCache::new(Connections::to("redis://127.0.0.1:1").unwrap(), "dead:")
}

/// The Redis client id of the calling thread's connection.
async fn client_id(connections: &Connections) -> i64 {
    let mut conn = connections.get().await.unwrap();
    redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut *conn)
        .await
        .unwrap()
}

/// Runs `cmd` on a connection of its own, outside every pool.
async fn outside<T: redis::FromRedisValue>(cmd: &redis::Cmd) -> T {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut conn).await.unwrap()
}

/// The last command client `id` ran, from `CLIENT LIST`.
async fn last_command(id: i64) -> String {
    let list: String = outside(redis::cmd("CLIENT").arg("LIST").arg("ID").arg(id)).await;
    list.split_whitespace()
        .find_map(|field| field.strip_prefix("cmd="))
        .unwrap_or_else(|| panic!("no cmd= in {list:?}"))
        .to_owned()
}

/// deadpool-redis's own manager sent UNWATCH + PING on every checkout; ours
/// sends nothing for a connection used within the last seconds.
#[tokio::test]
async fn a_checkout_costs_no_round_trip() {
    let redis = TestRedis::new().await;
    let connections = redis.cache.connections();
    let id = client_id(connections).await;
    assert_eq!(last_command(id).await, "client|id");
    for _ in 0..3 {
        drop(connections.get().await.unwrap());
    }
    assert_eq!(last_command(id).await, "client|id", "a checkout PINGed");
    let hit = redis
        .cache
        .rate_limiter()
        .hit("k", 5, Duration::from_secs(60), base_time())
        .await
        .unwrap();
    assert!(hit.allowed);
    let last = last_command(id).await;
    assert!(last == "evalsha" || last == "eval", "{last}");
    redis.wipe().await;
}

/// Commands sent at once from one thread share its one connection: none
/// waits for a connection of its own.
#[tokio::test]
async fn a_thread_s_commands_share_one_connection() {
    let redis = TestRedis::new().await;
    let connections = redis.cache.connections();
    let ids = futures_util::future::join_all((0..16).map(|_| client_id(connections))).await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(connections.open(), 1);
    redis.wipe().await;
}

/// Each thread opens a connection of its own, driven by its own runtime, and
/// keeps it: a worker's commands and their answers wake no other thread.
#[test]
fn each_thread_has_a_connection_of_its_own() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let redis = runtime().block_on(TestRedis::new());
    let connections = redis.cache.connections().clone();
    let ids: Vec<(i64, i64)> = (0..2)
        .map(|_| {
            let connections = connections.clone();
            std::thread::spawn(move || {
                runtime().block_on(async {
                    (client_id(&connections).await, client_id(&connections).await)
                })
            })
        })
        .map(|thread| thread.join().unwrap())
        .collect();
    for (first, again) in &ids {
        assert_eq!(
            first, again,
            "a thread's second command opened another connection"
        );
    }
    assert_ne!(ids[0].0, ids[1].0, "two threads shared a connection");
    assert_eq!(connections.open(), 2);
}

/// A connection that breaks (here: killed by the server) fails the commands
/// that find it broken, as unavailable, and is not used again: the thread's
/// next command opens a fresh one.
#[tokio::test]
async fn a_broken_connection_is_replaced() {
    let redis = TestRedis::new().await;
    let connections = redis.cache.connections();
    let id = client_id(connections).await;
    let killed: i64 = outside(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id)).await;
    assert_eq!(killed, 1);
    let counter = redis.cache.usage_counter();
    let first = counter.try_consume("k", 5, base_time()).await;
    assert!(
        matches!(first, Err(StoreError::Unavailable(_))),
        "{first:?}"
    );
    let second = counter.try_consume("k", 5, base_time()).await.unwrap();
    assert!(second.allowed);
    assert_ne!(client_id(connections).await, id);
    assert_eq!(connections.open(), 1, "the broken one was dropped");
    redis.wipe().await;
}

#[tokio::test]
async fn connect_fails_fast_when_redis_is_unreachable() {
    let started = Instant::now();
    let err = connect("redis://:hunter2@127.0.0.1:1", "x:")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::Unreachable(StoreError::Unavailable(_))),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(message.contains("unreachable"), "{message}");
    assert!(!message.contains("hunter2"), "password leaked: {message}");
}

#[tokio::test]
async fn connect_refuses_a_non_redis_url() {
    let err = connect("http://127.0.0.1:6379", "x:").await.unwrap_err();
    assert!(matches!(err, ConnectError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test]
async fn health_check_pings() {
    let redis = TestRedis::new().await;
    let health = redis.cache.health();
    assert_eq!(health.name(), "cache");
    health.check().await.unwrap();
    let dead = dead_cache().health();
    assert!(matches!(
        dead.check().await,
        Err(StoreError::Unavailable(_))
    ));
    // Built on bare connections, as `RedisHealth::new` allows.
    let bare = idp_cache_redis::RedisHealth::new(redis.cache.connections().clone());
    bare.check().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable_for_every_port() {
    let cache = dead_cache();
    let now = base_time();
    let hit = cache
        .rate_limiter()
        .hit("k", 1, Duration::from_secs(1), now)
        .await;
    assert!(matches!(hit, Err(StoreError::Unavailable(_))), "{hit:?}");
    let quota = cache.usage_counter().try_consume("k", 1, now).await;
    assert!(
        matches!(quota, Err(StoreError::Unavailable(_))),
        "{quota:?}"
    );
    let list = cache.revocation_list(InMemoryRevokedTokens::new());
    let contains = list.contains(TokenId(Uuid::new_v4()), now).await;
    assert!(
        matches!(contains, Err(StoreError::Unavailable(_))),
        "{contains:?}"
    );
    let insert = list.insert(&revoked(now + TimeDelta::hours(1)), now).await;
    assert!(
        matches!(insert, Err(StoreError::Unavailable(_))),
        "{insert:?}"
    );
}

#[tokio::test]
async fn keys_live_under_the_prefix_and_expire() {
    let redis = TestRedis::new().await;
    let p = &redis.prefix;
    let now = base_time(); // 2030-03-14T15:09:26.535Z
    redis
        .cache
        .rate_limiter()
        .hit("client:a", 5, Duration::from_secs(60), now)
        .await
        .unwrap();
    redis
        .cache
        .usage_counter()
        .try_consume("client:a", 5, now)
        .await
        .unwrap();
    let list = redis.cache.revocation_list(InMemoryRevokedTokens::new());
    let token = revoked(now + TimeDelta::minutes(30));
    list.insert(&token, now).await.unwrap();
    assert!(list.contains(token.token_id, now).await.unwrap());

    let mut expected = vec![
        format!("{p}quota:client:a:2030-03"),
        format!("{p}rate:client:a"),
        format!("{p}revoked:{}", token.token_id),
        format!("{p}revoked:loaded"),
    ];
    expected.sort();
    assert_eq!(redis.keys().await, expected, "the reload claim is gone");

    let pttl = redis.pttl(&format!("{p}rate:client:a")).await;
    assert!((59_000..=60_000).contains(&pttl), "rate {pttl}");
    // Until 2030-04-08T00:00:00Z, seven days after March ends.
    let until = Utc.with_ymd_and_hms(2030, 4, 8, 0, 0, 0).unwrap() - now;
    let pttl = redis.pttl(&format!("{p}quota:client:a:2030-03")).await;
    assert!(
        (until.num_milliseconds() - 2_000..=until.num_milliseconds()).contains(&pttl),
        "quota {pttl}"
    );
    let pttl = redis.pttl(&format!("{p}revoked:{}", token.token_id)).await;
    assert!(
        (29 * 60_000..=30 * 60_000).contains(&pttl),
        "revoked {pttl}"
    );
    let pttl = redis.pttl(&format!("{p}revoked:loaded")).await;
    assert!((1..=60_000).contains(&pttl), "marker {pttl}");
    redis.wipe().await;
    assert!(redis.keys().await.is_empty());
}

#[tokio::test]
async fn long_or_odd_keys_are_hashed() {
    let redis = TestRedis::new().await;
    let limiter = redis.cache.rate_limiter();
    let long = "x".repeat(10_000);
    let window = Duration::from_secs(60);
    assert!(
        limiter
            .hit(&long, 1, window, base_time())
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !limiter
            .hit(&long, 1, window, base_time())
            .await
            .unwrap()
            .allowed
    );
    assert!(
        limiter
            .hit("with space", 1, window, base_time())
            .await
            .unwrap()
            .allowed
    );
    let keys = redis.keys().await;
    assert_eq!(keys.len(), 2);
    for key in keys {
        let part = key.strip_prefix(&format!("{}rate:", redis.prefix)).unwrap();
        assert!(part.starts_with('#') && part.len() == 65, "{key}");
    }
    redis.wipe().await;
}

#[tokio::test]
async fn warm_loads_once_and_only_a_loss_reloads() {
    let redis = TestRedis::new().await;
    let durable = InMemoryRevokedTokens::new();
    let now = base_time();
    let token = revoked(now + TimeDelta::hours(1));
    durable.add(token.clone());
    let list = redis.cache.revocation_list(durable.clone());
    list.warm(now).await.unwrap();
    assert_eq!(durable.unexpired_calls(), 1);
    for _ in 0..5 {
        assert!(list.contains(token.token_id, now).await.unwrap());
        assert!(!list.contains(TokenId(Uuid::new_v4()), now).await.unwrap());
    }
    assert_eq!(
        durable.unexpired_calls(),
        1,
        "no reload while the marker stands"
    );

    // Losing only the marker (it expires every minute) reloads too.
    let mut conn = redis.cache.connections().get().await.unwrap();
    let () = idp_cache_redis::redis::cmd("DEL")
        .arg(format!("{}revoked:loaded", redis.prefix))
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert!(list.contains(token.token_id, now).await.unwrap());
    assert_eq!(durable.unexpired_calls(), 2);

    redis.wipe().await;
    assert!(list.contains(token.token_id, now).await.unwrap());
    assert_eq!(durable.unexpired_calls(), 3);
    assert!(list.contains(token.token_id, now).await.unwrap());
    assert_eq!(durable.unexpired_calls(), 3);
    redis.wipe().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_of_one_node_reload_once() {
    let redis = TestRedis::new().await;
    let durable = InMemoryRevokedTokens::new();
    let now = base_time();
    let token = revoked(now + TimeDelta::hours(1));
    durable.add(token.clone());
    let list = Arc::new(redis.cache.revocation_list(durable.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let list = Arc::clone(&list);
        let id = token.token_id;
        tasks.spawn(async move { list.contains(id, now).await.unwrap() });
    }
    assert!(tasks.join_all().await.into_iter().all(|revoked| revoked));
    assert_eq!(durable.unexpired_calls(), 1);
    redis.wipe().await;
}

#[tokio::test]
async fn nodes_sharing_redis_see_each_others_revocations() {
    let redis = TestRedis::new().await;
    let durable = InMemoryRevokedTokens::new();
    let node_a = redis.cache.revocation_list(durable.clone());
    let node_b = redis.cache.revocation_list(durable.clone());
    let now = base_time();
    node_a.warm(now).await.unwrap();
    let token = revoked(now + TimeDelta::hours(1));
    durable.add(token.clone());
    node_a.insert(&token, now).await.unwrap();
    assert!(node_b.contains(token.token_id, now).await.unwrap());
    assert_eq!(
        durable.unexpired_calls(),
        1,
        "node B trusted the shared marker"
    );

    let limiter_a = redis.cache.rate_limiter();
    let limiter_b = redis.cache.rate_limiter();
    let window = Duration::from_secs(60);
    assert!(limiter_a.hit("k", 1, window, now).await.unwrap().allowed);
    assert!(!limiter_b.hit("k", 1, window, now).await.unwrap().allowed);
    let counter_a = redis.cache.usage_counter();
    let counter_b = redis.cache.usage_counter();
    assert!(counter_a.try_consume("k", 1, now).await.unwrap().allowed);
    assert!(!counter_b.try_consume("k", 1, now).await.unwrap().allowed);
    redis.wipe().await;
}

/// A durable store that wipes Redis while it is being read: a flush in the
/// middle of a reload.
struct FlushDuringRead {
    inner: Arc<InMemoryRevokedTokens>,
    cache: RedisCache,
    flushes_left: AtomicUsize,
}

#[async_trait]
impl RevokedTokenStore for FlushDuringRead {
    async fn revoke(
        &self,
        owner: &Owner,
        token: &RevokedToken,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        self.inner.revoke(owner, token, event).await
    }

    async fn unexpired(&self, now: DateTime<Utc>) -> Result<Vec<RevokedToken>, StoreError> {
        let tokens = self.inner.unexpired(now).await?;
        if self.flushes_left.load(Ordering::SeqCst) > 0 {
            self.flushes_left.fetch_sub(1, Ordering::SeqCst);
            wipe_prefix(&self.cache).await;
        }
        Ok(tokens)
    }
}

#[tokio::test]
async fn a_flush_during_a_reload_leaves_no_marker() {
    let redis = TestRedis::new().await;
    let inner = InMemoryRevokedTokens::new();
    let now = base_time();
    let token = revoked(now + TimeDelta::hours(1));
    inner.add(token.clone());
    let durable = Arc::new(FlushDuringRead {
        inner: inner.clone(),
        cache: redis.cache.clone(),
        flushes_left: AtomicUsize::new(1),
    });
    let list = RedisRevocationList::new(redis.cache.connections().clone(), &redis.prefix, durable);
    // The reload's snapshot is right, so the answer is too...
    assert!(list.contains(token.token_id, now).await.unwrap());
    // ...but the flush after the claim means the marker must not be trusted.
    assert!(
        !redis
            .keys()
            .await
            .contains(&format!("{}revoked:loaded", redis.prefix)),
        "marker set although a flush overlapped the reload"
    );
    assert_eq!(inner.unexpired_calls(), 1);
    assert!(list.contains(token.token_id, now).await.unwrap());
    assert_eq!(inner.unexpired_calls(), 2, "reloaded again");
    assert!(
        redis
            .keys()
            .await
            .contains(&format!("{}revoked:loaded", redis.prefix))
    );
    assert!(list.contains(token.token_id, now).await.unwrap());
    assert_eq!(inner.unexpired_calls(), 2);
    redis.wipe().await;
}

#[tokio::test]
async fn an_unparsable_entry_counts_as_revoked() {
    let redis = TestRedis::new().await;
    let list = redis.cache.revocation_list(InMemoryRevokedTokens::new());
    let now = base_time();
    list.warm(now).await.unwrap();
    let id = TokenId(Uuid::new_v4());
    let mut conn = redis.cache.connections().get().await.unwrap();
    let () = idp_cache_redis::redis::cmd("SET")
        .arg(format!("{}revoked:{id}", redis.prefix))
        .arg("1")
        .arg("EX")
        .arg(60)
        .query_async(&mut *conn)
        .await
        .unwrap();
    // "1" parses as 1970: long expired.
    assert!(!list.contains(id, now).await.unwrap());
    let () = idp_cache_redis::redis::cmd("SET")
        .arg(format!("{}revoked:{id}", redis.prefix))
        .arg("yes")
        .arg("EX")
        .arg(60)
        .query_async(&mut *conn)
        .await
        .unwrap();
    assert!(list.contains(id, now).await.unwrap());
    redis.wipe().await;
}

#[tokio::test]
async fn a_durable_store_failure_fails_closed() {
    let redis = TestRedis::new().await;
    let mut durable = idp_domain::ports::MockRevokedTokenStore::new();
    durable
        .expect_unexpired()
        .returning(|_| Err(StoreError::Unavailable(anyhow::anyhow!("database down"))));
    let list = redis.cache.revocation_list(Arc::new(durable));
    let contains = list.contains(TokenId(Uuid::new_v4()), base_time()).await;
    assert!(
        matches!(contains, Err(StoreError::Unavailable(_))),
        "{contains:?}"
    );
    redis.wipe().await;
}
