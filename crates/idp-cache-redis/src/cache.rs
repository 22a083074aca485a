use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_redis::redis;
use idp_domain::StoreError;
use idp_domain::ports::{HealthCheck, RevokedTokenStore};

use crate::connections::{Connections, settle};
use crate::{
    RedisAdmission, RedisRateLimiter, RedisReplayGuard, RedisRevocationList, RedisUsageCounter,
};

/// Why [`connect`] failed; meant for a one-line start-up error. Never contains
/// the URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a Redis URL.
    #[error("invalid Redis URL")]
    InvalidUrl(#[source] redis::RedisError),
    /// Redis did not answer PING.
    #[error("Redis is unreachable")]
    Unreachable(#[source] StoreError),
}

/// The connections and key prefix that all Redis adapters of one server
/// share, with a constructor for each adapter. Cheap to clone.
#[derive(Clone)]
pub struct RedisCache {
    connections: Connections,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("connections", &self.connections)
            .finish()
    }
}

/// Connects to Redis at `url` (`redis://[user:password@]host:port[/db]`, or
/// `rediss://` if built with TLS) with every key under `prefix` (for example
/// `agentidp:`), and PINGs it once so an unreachable Redis stops start-up
/// within a few seconds.
pub async fn connect(url: &str, prefix: &str) -> Result<RedisCache, ConnectError> {
    let connections = Connections::to(url).map_err(ConnectError::InvalidUrl)?;
    let cache = RedisCache::new(connections, prefix);
    cache.ping().await.map_err(ConnectError::Unreachable)?;
    Ok(cache)
}

impl RedisCache {
    /// Adapters on `connections`, under `prefix`. Prefer [`connect`].
    pub fn new(connections: Connections, prefix: impl Into<String>) -> Self {
        Self {
            connections,
            prefix: prefix.into().into(),
        }
    }

    /// The connections.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The rate limiter on this Redis.
    pub fn rate_limiter(&self) -> RedisRateLimiter {
        RedisRateLimiter::new(self.connections.clone(), &self.prefix)
    }

    /// The monthly usage counter on this Redis.
    pub fn usage_counter(&self) -> RedisUsageCounter {
        RedisUsageCounter::new(self.connections.clone(), &self.prefix)
    }

    /// Rate limit and quota in one script, on the counters of
    /// [`RedisCache::rate_limiter`] and [`RedisCache::usage_counter`].
    pub fn admission(&self) -> RedisAdmission {
        RedisAdmission::new(self.connections.clone(), &self.prefix)
    }

    /// The revocation list on this Redis, backed by `durable`. Call
    /// [`RedisRevocationList::warm`] once at start-up.
    pub fn revocation_list(&self, durable: Arc<dyn RevokedTokenStore>) -> RedisRevocationList {
        RedisRevocationList::new(self.connections.clone(), &self.prefix, durable)
    }

    /// The replay guard on this Redis.
    pub fn replay_guard(&self) -> RedisReplayGuard {
        RedisReplayGuard::new(self.connections.clone(), &self.prefix)
    }

    /// The `cache` health check on this Redis.
    pub fn health(&self) -> RedisHealth {
        RedisHealth::new(self.connections.clone())
    }

    /// One PING.
    pub async fn ping(&self) -> Result<(), StoreError> {
        ping(&self.connections).await
    }
}

async fn ping(connections: &Connections) -> Result<(), StoreError> {
    let mut conn = connections.get().await?;
    let result = redis::cmd("PING").query_async(&mut *conn).await;
    let pong: String = settle(conn, result)?;
    if pong == "PONG" {
        Ok(())
    } else {
        Err(crate::error::unexpected("PING"))
    }
}

/// The `cache` [`HealthCheck`] for `/readyz`: one PING on the calling
/// thread's connection.
#[derive(Clone)]
pub struct RedisHealth {
    connections: Connections,
}

impl fmt::Debug for RedisHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisHealth")
            .field("connections", &self.connections)
            .finish()
    }
}

impl RedisHealth {
    /// A health check on `connections`.
    pub fn new(connections: Connections) -> Self {
        Self { connections }
    }
}

#[async_trait]
impl HealthCheck for RedisHealth {
    fn name(&self) -> &'static str {
        "cache"
    }

    async fn check(&self) -> Result<(), StoreError> {
        ping(&self.connections).await
    }
}
