use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use idp_domain::StoreError;
use idp_domain::ports::{HealthCheck, RevokedTokenStore};

use crate::revocation::RevokedEntries;
use crate::{MemoryAdmission, MemoryRateLimiter, MemoryRevocationList, MemoryUsageCounter};

/// The in-process state that all memory adapters of one server share, with a
/// constructor for each adapter (the counterpart of the Redis adapter's
/// `RedisCache`). Every handle made from one `MemoryCache` (or a clone of it)
/// sees the same rate windows, usage counters and revocations. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct MemoryCache {
    rate_limiter: MemoryRateLimiter,
    usage_counter: MemoryUsageCounter,
    revocations: Arc<RwLock<RevokedEntries>>,
}

impl MemoryCache {
    /// Empty state: no request counted, no unit used, no token revoked.
    pub fn new() -> Self {
        Self::default()
    }

    /// The rate limiter on this state.
    pub fn rate_limiter(&self) -> MemoryRateLimiter {
        self.rate_limiter.clone()
    }

    /// The monthly usage counter on this state.
    pub fn usage_counter(&self) -> MemoryUsageCounter {
        self.usage_counter.clone()
    }

    /// Rate limit and quota in one call, on the state of
    /// [`MemoryCache::rate_limiter`] and [`MemoryCache::usage_counter`].
    pub fn admission(&self) -> MemoryAdmission {
        MemoryAdmission::new(self.rate_limiter.clone(), self.usage_counter.clone())
    }

    /// The revocation list on this state, loading from `durable`. Call
    /// [`MemoryRevocationList::warm`] once at start-up.
    pub fn revocation_list(&self, durable: Arc<dyn RevokedTokenStore>) -> MemoryRevocationList {
        MemoryRevocationList::on(Arc::clone(&self.revocations), durable)
    }

    /// The `cache` health check.
    pub fn health(&self) -> MemoryHealth {
        MemoryHealth
    }
}

/// The `cache` [`HealthCheck`] for `/readyz`: memory of this process is always
/// reachable, so it always answers `Ok`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryHealth;

#[async_trait]
impl HealthCheck for MemoryHealth {
    fn name(&self) -> &'static str {
        "cache"
    }

    async fn check(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
