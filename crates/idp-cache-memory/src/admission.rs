use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::ports::{Admission, AdmissionControl};

use crate::{MemoryRateLimiter, MemoryUsageCounter};

/// [`AdmissionControl`] in this process: a hit of the [`MemoryRateLimiter`]
/// and, if it allowed the request, a unit of the [`MemoryUsageCounter`] it
/// was made with (their state, shared). Each step is atomic under its own
/// lock; there is no round trip to save, so the pair is not made atomic as a
/// whole (the port does not require it).
#[derive(Debug, Clone, Default)]
pub struct MemoryAdmission {
    rate_limiter: MemoryRateLimiter,
    usage_counter: MemoryUsageCounter,
}

impl MemoryAdmission {
    /// Admission on the state of `rate_limiter` and `usage_counter`.
    pub fn new(rate_limiter: MemoryRateLimiter, usage_counter: MemoryUsageCounter) -> Self {
        Self {
            rate_limiter,
            usage_counter,
        }
    }
}

#[async_trait]
impl AdmissionControl for MemoryAdmission {
    async fn admit(
        &self,
        rate_key: &str,
        rate_limit: u32,
        window: Duration,
        quota_key: &str,
        quota_limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<Admission>, StoreError> {
        let rate = self.rate_limiter.hit_now(rate_key, rate_limit, window, now);
        let quota = rate
            .allowed
            .then(|| self.usage_counter.consume_now(quota_key, quota_limit, now));
        // Counters here are rebuilt at start, so never unknown.
        Ok(Some(Admission { rate, quota }))
    }
}
