//! What the replay guard promises beyond the contract: nodes sharing one
//! Redis share the used keys, a loss of Redis's data moves
//! `remembered_since` forward (the domain's cue to refuse what may have been
//! forgotten), key layout and expiry, error mapping.

use chrono::TimeDelta;
use idp_cache_redis::{Connections, RedisCache, connect, redis};
use idp_domain::StoreError;
use idp_domain::ports::{FirstUse, ReplayGuard};
use idp_port_tests::cache::base_time;

use crate::support::{TestRedis, redis_url};

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

#[tokio::test]
async fn nodes_sharing_redis_see_each_others_keys() {
    let redis = TestRedis::new().await;
    // A second node: its own pool, the same Redis and prefix.
    let other = connect(&redis_url(), &redis.prefix).await.unwrap();
    let (a, b) = (redis.cache.replay_guard(), other.replay_guard());
    let t0 = base_time();
    let since = FirstUse::Yes {
        remembered_since: t0,
    };

    assert_eq!(a.first_use("k1", t0 + secs(60), t0).await.unwrap(), since);
    assert_eq!(
        b.first_use("k1", t0 + secs(60), t0 + secs(1))
            .await
            .unwrap(),
        FirstUse::Replayed
    );
    assert_eq!(
        b.first_use("k2", t0 + secs(60), t0 + secs(2))
            .await
            .unwrap(),
        since,
        "the other node reports the same remembered_since"
    );
    assert_eq!(
        a.first_use("k2", t0 + secs(60), t0 + secs(3))
            .await
            .unwrap(),
        FirstUse::Replayed
    );
    redis.wipe().await;
}

/// A flush (or a restart without persistence) forgets every used key, so a
/// key used before it is accepted again: exactly the replay the domain
/// refuses by comparing the assertion's earliest use with
/// `remembered_since`, which moves to the first call after the loss.
#[tokio::test]
async fn a_lost_redis_moves_remembered_since_to_the_next_call() {
    let redis = TestRedis::new().await;
    let guard = redis.cache.replay_guard();
    let t0 = base_time();
    let expires_at = t0 + secs(3_600);
    assert_eq!(
        guard.first_use("old", expires_at, t0).await.unwrap(),
        FirstUse::Yes {
            remembered_since: t0
        }
    );

    redis.wipe().await;

    let t1 = t0 + secs(5);
    assert_eq!(
        guard.first_use("old", expires_at, t1).await.unwrap(),
        FirstUse::Yes {
            remembered_since: t1
        },
        "the old key is new again, and the guard says since when it remembers"
    );
    assert_eq!(
        guard
            .first_use("new", expires_at, t1 + secs(1))
            .await
            .unwrap(),
        FirstUse::Yes {
            remembered_since: t1
        },
        "and stays there"
    );
    assert_eq!(
        guard
            .first_use("old", expires_at, t1 + secs(2))
            .await
            .unwrap(),
        FirstUse::Replayed
    );
    redis.wipe().await;
}

#[tokio::test]
async fn keys_live_under_the_prefix_and_expire_with_the_entry() {
    let redis = TestRedis::new().await;
    let p = &redis.prefix;
    let t0 = base_time();
    let guard = redis.cache.replay_guard();
    // An expired expiry touches nothing, not even the marker.
    assert_eq!(
        guard.first_use("dpop:ab", t0, t0).await.unwrap(),
        FirstUse::Replayed
    );
    assert!(redis.keys().await.is_empty());

    guard.first_use("dpop:ab", t0 + secs(30), t0).await.unwrap();
    assert_eq!(
        redis.keys().await,
        [
            format!("{p}replay:since"),
            format!("{p}replay:used:dpop:ab")
        ]
    );
    let pttl = redis.pttl(&format!("{p}replay:used:dpop:ab")).await;
    assert!((29_000..=30_000).contains(&pttl), "entry {pttl}");
    assert_eq!(
        redis.pttl(&format!("{p}replay:since")).await,
        -1,
        "the marker must outlive every entry"
    );
    redis.wipe().await;
}

#[tokio::test]
async fn an_unparsable_marker_is_an_error() {
    let redis = TestRedis::new().await;
    let mut conn = redis.cache.connections().get().await.unwrap();
    let () = redis::cmd("SET")
        .arg(format!("{}replay:since", redis.prefix))
        .arg("garbage")
        .query_async(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let t0 = base_time();
    let answer = redis
        .cache
        .replay_guard()
        .first_use("k", t0 + secs(60), t0)
        .await;
    assert!(matches!(answer, Err(StoreError::Unknown(_))), "{answer:?}");
    redis.wipe().await;
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable() {
    let cache = RedisCache::new(Connections::to("redis://127.0.0.1:1").unwrap(), "dead:");
    let t0 = base_time();
    let answer = cache.replay_guard().first_use("k", t0 + secs(60), t0).await;
    assert!(
        matches!(answer, Err(StoreError::Unavailable(_))),
        "{answer:?}"
    );
}

/// A node records the start of the guard's memory as it starts; a second
/// node starting later keeps the first one's, and uses report it.
#[tokio::test]
async fn start_records_the_first_nodes_start() {
    let redis = TestRedis::new().await;
    let guard = redis.cache.replay_guard();
    let t0 = base_time();
    guard.start(t0).await.unwrap();
    guard.start(t0 + secs(30)).await.unwrap();
    assert_eq!(
        guard
            .first_use("k", t0 + secs(120), t0 + secs(60))
            .await
            .unwrap(),
        FirstUse::Yes {
            remembered_since: t0
        }
    );
    redis.wipe().await;
}
