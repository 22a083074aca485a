//! A Redis key prefix of the test's own, deleted at the end (also when the
//! test fails), and the "flush" that simulates a Redis restart or FLUSHALL
//! without touching other tests' keys.

use std::time::Duration;

use deadpool_redis::redis;

/// The Redis the tests use when `IDP_TEST_REDIS_URL` is unset.
const DEFAULT_TEST_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Keys of one test: everything under `e2e-<uuid>:`.
#[derive(Debug)]
pub struct RedisNamespace {
    /// The Redis URL.
    pub url: String,
    /// The key prefix, to pass as `IDP_REDIS_PREFIX`.
    pub prefix: String,
}

impl RedisNamespace {
    /// A fresh prefix on the test Redis.
    pub fn new() -> Self {
        Self {
            url: std::env::var("IDP_TEST_REDIS_URL")
                .unwrap_or_else(|_| DEFAULT_TEST_REDIS_URL.to_owned()),
            prefix: format!("e2e-{}:", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Deletes every key of the prefix: to the server, the same as FLUSHALL.
    pub async fn flush(&self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let deleted = tokio::task::spawn_blocking(move || delete_prefix(&url, &prefix))
            .await
            .expect("the flush thread");
        deleted.unwrap_or_else(|e| panic!("cannot flush the test's Redis keys: {e}"));
    }

    /// The keys the prefix holds.
    pub async fn keys(&self) -> Vec<String> {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        tokio::task::spawn_blocking(move || scan_prefix(&mut connect(&url)?, &prefix))
            .await
            .expect("the scan thread")
            .unwrap_or_else(|e| panic!("cannot scan the test's Redis keys: {e}"))
    }

    /// How many keys the prefix holds.
    pub async fn key_count(&self) -> usize {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        tokio::task::spawn_blocking(move || scan_prefix(&mut connect(&url)?, &prefix))
            .await
            .expect("the scan thread")
            .unwrap_or_else(|e| panic!("cannot scan the test's Redis keys: {e}"))
            .len()
    }
}

impl Drop for RedisNamespace {
    fn drop(&mut self) {
        if let Err(e) = delete_prefix(&self.url, &self.prefix) {
            eprintln!("warning: cannot delete Redis keys {}*: {e}", self.prefix);
        }
    }
}

/// A blocking connection: usable in `Drop`, where no runtime can be entered.
fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(5))
}

fn scan_prefix(conn: &mut redis::Connection, prefix: &str) -> redis::RedisResult<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query(conn)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

fn delete_prefix(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let mut conn = connect(url)?;
    let keys = scan_prefix(&mut conn, prefix)?;
    for chunk in keys.chunks(500) {
        let _deleted: usize = redis::cmd("DEL").arg(chunk).query(&mut conn)?;
    }
    Ok(())
}
