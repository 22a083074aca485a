use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncConnectionConfig};
use deadpool_redis::{Manager, Pool, Runtime};
use idp_domain::StoreError;
use idp_domain::ports::{HealthCheck, RevokedTokenStore};

use crate::error::{from_pool, from_redis};
use crate::{RedisRateLimiter, RedisRevocationList, RedisUsageCounter};

/// Connections are multiplexed, so a few carry any load.
const POOL_SIZE: usize = 8;
/// Limit on opening a TCP connection (and on the start-up PING).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on one command's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on waiting for a free pooled connection.
const WAIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why [`connect`] failed; meant for a one-line start-up error. Never contains
/// the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
    /// The pool could not be built.
    #[error("cannot build the Redis pool")]
    Pool(#[source] deadpool_redis::BuildError),
    /// Redis did not answer PING.
    #[error("Redis is unreachable")]
    Unreachable(#[source] StoreError),
}

/// The connection pool and key prefix that all Redis adapters of one server
/// share, with a constructor for each adapter. Cheap to clone.
#[derive(Clone)]
pub struct RedisCache {
    pool: Pool,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("pool", &self.pool.status())
            .finish()
    }
}

/// Connects to Redis at `url` (`redis://[user:password@]host:port[/db]`, or
/// `rediss://` if built with TLS) with every key under `prefix` (for example
/// `agentidp:`), and PINGs it once so an unreachable Redis stops start-up
/// within a few seconds.
pub async fn connect(url: &str, prefix: &str) -> Result<RedisCache, ConnectError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let manager = Manager::new_with_config(url, config).map_err(ConnectError::InvalidUrl)?;
    let pool = Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(RESPONSE_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(ConnectError::Pool)?;
    let cache = RedisCache::new(pool, prefix);
    cache.ping().await.map_err(ConnectError::Unreachable)?;
    Ok(cache)
}

impl RedisCache {
    /// Wraps an existing pool (with a runtime set). Prefer [`connect`].
    pub fn new(pool: Pool, prefix: impl Into<String>) -> Self {
        Self {
            pool,
            prefix: prefix.into().into(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The rate limiter on this Redis.
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::new(self.pool.clone(), &self.prefix)
    }

    /// The monthly usage counter on this Redis.
    pub fn usage_counter(&self) -> RedisUsageCounter {
        RedisUsageCounter::new(self.pool.clone(), &self.prefix)
    }

    /// The revocation list on this Redis, backed by `durable`. Call
    /// [`RedisRevocationList::warm`] once at start-up.
    pub fn revocation_list(&self, durable: Arc<dyn RevokedTokenStore>) -> RedisRevocationList {
        RedisRevocationList::new(self.pool.clone(), &self.prefix, durable)
    }

    /// The `cache` health check on this Redis.
    pub fn health(&self) -> RedisHealth {
        RedisHealth::new(self.pool.clone())
    }

    /// One PING.
    pub async fn ping(&self) -> Result<(), StoreError> {
        ping(&self.pool).await
    }
}

async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let mut conn = pool.get().await.map_err(from_pool)?;
    let pong: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(from_redis)?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(crate::error::unexpected("PING"))
    }
}

/// The `cache` [`HealthCheck`] for `/readyz`: one PING through the pool.
#[derive(Clone)]
pub struct RedisHealth {
    pool: Pool,
}

impl fmt::Debug for RedisHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisHealth")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl RedisHealth {
    /// A health check on `pool`.
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl HealthCheck for RedisHealth {
    fn name(&self) -> &'static str {
        "cache"
    }

    async fn check(&self) -> Result<(), StoreError> {
        ping(&self.pool).await
    }
}
