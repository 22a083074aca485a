//! Contract suites of the cache ports: RevocationList, RateLimiter, UsageCounter.
