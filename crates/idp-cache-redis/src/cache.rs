use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool::managed::{self, Metrics, Object, RecycleResult};
use deadpool_redis::Runtime;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, AsyncConnectionConfig, RedisError, RedisResult};
use idp_domain::StoreError;
use idp_domain::ports::{HealthCheck, RevokedTokenStore};

use crate::error::{from_pool, from_redis, is_connection_failure};
use crate::{
    RedisAdmission, RedisRateLimiter, RedisReplayGuard, RedisRevocationList, RedisUsageCounter,
};

/// Connections are multiplexed, so a few carry any load.
const POOL_SIZE: usize = 8;
/// Limit on opening a TCP connection (and on the start-up PING).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on one command's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on waiting for a free pooled connection.
const WAIT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection idle (not checked out) this long is PINGed before it is
/// handed out again; a busier one is not (see [`RedisManager`]).
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

/// The pool the adapters share: deadpool over [`RedisManager`].
pub type Pool = managed::Pool<RedisManager>;

/// A connection checked out of the [`Pool`]; dereferences to the `redis`
/// crate's multiplexed connection (`&mut *conn` for commands).
pub type PooledConnection = Object<RedisManager>;

/// deadpool-redis's connection manager without its PING on every checkout.
///
/// deadpool-redis 0.23's own `Manager::recycle` sends `UNWATCH` + `PING` each
/// time a connection leaves the pool, so every one-command use of Redis cost
/// two round trips; it has no setting to turn that off (a `RecyclingMethod`
/// like deadpool-postgres's is still an open request upstream, deadpool issue
/// #307). This manager opens connections through deadpool-redis's, but on
/// checkout it checks only a connection that sat idle for 10 s (a Redis
/// restart or an idle timeout on the way could have broken it meanwhile).
/// A busy connection that breaks is found by the command that fails on it,
/// and that command's caller (`settle`) takes it out of the pool instead of
/// returning it, so the next checkout opens a fresh one: a broken connection
/// costs the one request that found it (503 with `Retry-After`), where the
/// PING cost every request a round trip. `UNWATCH` is not needed: nothing
/// here uses `WATCH`.
#[derive(Debug)]
pub struct RedisManager {
    inner: deadpool_redis::Manager,
}

impl RedisManager {
    /// A manager for `url` with connect and response timeouts.
    pub fn new(url: &str, config: AsyncConnectionConfig) -> Result<Self, RedisError> {
        Ok(Self {
            inner: deadpool_redis::Manager::new_with_config(url, config)?,
        })
    }
}

impl managed::Manager for RedisManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        managed::Manager::create(&self.inner).await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<RedisError> {
        if metrics.last_used() < PING_WHEN_IDLE_FOR {
            return Ok(());
        }
        managed::Manager::recycle(&self.inner, conn, metrics).await
    }
}

/// Checks a connection out of `pool`.
pub(crate) async fn checkout(pool: &Pool) -> Result<PooledConnection, StoreError> {
    pool.get().await.map_err(from_pool)
}

/// The result of a command run on `conn`, in the domain's terms. A connection
/// whose command failed at the connection level (I/O, dropped, refused, timed
/// out) is taken out of the pool instead of going back to it, so the next
/// checkout opens a fresh one; see [`RedisManager`].
pub(crate) fn settle<T>(conn: PooledConnection, result: RedisResult<T>) -> Result<T, StoreError> {
    result.map_err(|err| failed(conn, err))
}

/// `err`, a command's failure on `conn`, in the domain's terms; see [`settle`].
pub(crate) fn failed(conn: PooledConnection, err: RedisError) -> StoreError {
    if is_connection_failure(&err) {
        drop(Object::take(conn));
    }
    from_redis(err)
}

/// Why [`connect`] failed; meant for a one-line start-up error. Never contains
/// the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
    /// The pool could not be built.
    #[error("cannot build the Redis pool")]
    Pool(#[source] managed::BuildError),
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
    let cache = RedisCache::new(build_pool(url)?, prefix);
    cache.ping().await.map_err(ConnectError::Unreachable)?;
    Ok(cache)
}

/// The pool [`connect`] uses, without connecting yet: at most 8 connections,
/// 2 s limits on connecting, on each answer and on waiting for a connection.
pub fn build_pool(url: &str) -> Result<Pool, ConnectError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let manager = RedisManager::new(url, config).map_err(ConnectError::InvalidUrl)?;
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .wait_timeout(Some(WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(RESPONSE_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(ConnectError::Pool)
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

    /// Rate limit and quota in one script, on the counters of
    /// [`RedisCache::rate_limiter`] and [`RedisCache::usage_counter`].
    pub fn admission(&self) -> RedisAdmission {
        RedisAdmission::new(self.pool.clone(), &self.prefix)
    }

    /// The revocation list on this Redis, backed by `durable`. Call
    /// [`RedisRevocationList::warm`] once at start-up.
    pub fn revocation_list(&self, durable: Arc<dyn RevokedTokenStore>) -> RedisRevocationList {
        RedisRevocationList::new(self.pool.clone(), &self.prefix, durable)
    }

    /// The replay guard on this Redis.
    pub fn replay_guard(&self) -> RedisReplayGuard {
        RedisReplayGuard::new(self.pool.clone(), &self.prefix)
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
    let mut conn = checkout(pool).await?;
    let result = redis::cmd("PING").query_async(&mut *conn).await;
    let pong: String = settle(conn, result)?;
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
