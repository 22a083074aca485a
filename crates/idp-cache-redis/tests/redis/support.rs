use std::time::Duration;

use idp_cache_redis::redis;
use idp_cache_redis::{RedisCache, connect};
use uuid::Uuid;

/// The Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("IDP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A connection to the test Redis with a prefix of its own, whose keys are
/// deleted when it is dropped (also when the test failed).
pub struct TestRedis {
    pub cache: RedisCache,
    pub prefix: String,
}

impl TestRedis {
    pub async fn new() -> Self {
        let prefix = format!("idp-test:{}:", Uuid::new_v4().simple());
        let url = redis_url();
        let cache = connect(&url, &prefix)
            .await
            .unwrap_or_else(|e| panic!("no Redis at IDP_TEST_REDIS_URL ({url}): {e:#}"));
        Self { cache, prefix }
    }

    /// Every key under this test's prefix.
    pub async fn keys(&self) -> Vec<String> {
        let mut conn = self.cache.connections().get().await.unwrap();
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut *conn)
                .await
                .unwrap();
            keys.extend(batch);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        keys.sort();
        keys
    }

    /// Deletes every key under the prefix: what FLUSHALL or a restart without
    /// persistence does to this test's data, without touching anyone else's.
    pub async fn wipe(&self) {
        wipe_prefix(&self.cache).await;
    }

    /// Milliseconds `key` has left to live (-1 none, -2 absent).
    pub async fn pttl(&self, key: &str) -> i64 {
        let mut conn = self.cache.connections().get().await.unwrap();
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut *conn)
            .await
            .unwrap()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Err(e) = delete_prefix_blocking(&self.prefix) {
            eprintln!("warning: cannot delete Redis keys {}*: {e}", self.prefix);
        }
    }
}

/// Deletes every key under `prefix` on a blocking connection of its own
/// (what [`TestRedis`]'s `Drop` needs: it cannot await, and the test's
/// runtime may already be shutting down).
fn delete_prefix_blocking(prefix: &str) -> redis::RedisResult<()> {
    let mut conn =
        redis::Client::open(redis_url())?.get_connection_with_timeout(Duration::from_secs(5))?;
    let keys = redis::Commands::scan_match::<_, String>(&mut conn, format!("{prefix}*"))?
        .collect::<redis::RedisResult<Vec<String>>>()?;
    if !keys.is_empty() {
        let () = redis::cmd("UNLINK").arg(&keys).query(&mut conn)?;
    }
    Ok(())
}

/// Deletes every key under the cache's prefix.
pub async fn wipe_prefix(cache: &RedisCache) {
    let prefix = cache.prefix().to_owned();
    tokio::task::spawn_blocking(move || delete_prefix_blocking(&prefix))
        .await
        .expect("the wipe thread")
        .unwrap_or_else(|e| panic!("cannot wipe the test's Redis keys: {e}"));
}
