//! # idp-cache-memory
//!
//! In-process adapters of the cache ports, used when no `REDIS_URL` is set
//! (the "embedded default"). They keep the semantics of the Redis adapters
//! (exactly, but for the rate limiter's bound below), while their state lives
//! in this process only:
//!
//! * [`MemoryRateLimiter`] ([`RateLimiter`](idp_domain::ports::RateLimiter)):
//!   the same sliding-window log, one sorted `VecDeque` of request times per
//!   key in sharded maps. Exact while a key has fewer than 128 distinct
//!   request times in its window; beyond that a request may count up to a
//!   64th of the window longer (never shorter), so memory per key stays
//!   bounded whatever the rate.
//! * [`MemoryUsageCounter`] ([`UsageCounter`](idp_domain::ports::UsageCounter)):
//!   one counter per key and UTC month.
//! * [`MemoryAdmission`] ([`AdmissionControl`](idp_domain::ports::AdmissionControl)):
//!   the two above in one call, on their shared state.
//! * [`MemoryRevocationList`] ([`RevocationList`](idp_domain::ports::RevocationList)):
//!   revoked `jti`s with their expiry, loaded from the durable
//!   [`RevokedTokenStore`](idp_domain::ports::RevokedTokenStore) at start
//!   ([`MemoryRevocationList::warm`]) and in any case before the first answer.
//! * [`MemoryReplayGuard`] ([`ReplayGuard`](idp_domain::ports::ReplayGuard)):
//!   used `jti`s with their expiry; it remembers every use since the process
//!   started, which it reports as `remembered_since`. Made on its own with
//!   that start instant, not by [`MemoryCache`]: it shares nothing with the
//!   other adapters.
//! * [`MemoryHealth`]: the `cache` [`HealthCheck`](idp_domain::ports::HealthCheck),
//!   always healthy.
//! * [`MemoryCache`]: the state all of the above share, so every handle made
//!   from one `MemoryCache` sees the same counters.
//! * [`RevokedEntries`] and the [`lock`] helpers: the revoked-token map and
//!   the poison-recovering locks, shared with the in-process wrappers of
//!   `idp-port-wrappers` (the caches in front of the stores and the
//!   revocation mirror live there, beside the other wrappers of ports).
//!
//! Limits of the embedded default: counters are per process, so several
//! server nodes without Redis each enforce the limits on their own, and a
//! restart forgets rate windows and monthly usage. Revocations survive a
//! restart, because the durable store holds them. Used `jti`s do not, and the
//! replay guard says so: its `remembered_since` is the process's start, and
//! the domain refuses an assertion that could have been used before it.
//!
//! Time always comes from the `now` argument (the domain's `Clock`); nothing
//! here reads a clock. Memory stays bounded: entries that no longer count are
//! swept every so often, amortised over the calls, with the calls' `now`.
//!
//! Locks are `std::sync` locks held only for a few map operations, never
//! across an `.await`. A poisoned lock is recovered (see the `lock` module).
//!
//! Error policy: these adapters cannot fail on their own; the only error is
//! the durable store's, passed through unchanged when the revocation list
//! loads from it.

mod admission;
mod cache;
pub mod lock;
mod quota;
mod rate;
mod replay;
mod revocation;

pub use admission::MemoryAdmission;
pub use cache::{MemoryCache, MemoryHealth};
pub use quota::MemoryUsageCounter;
pub use rate::MemoryRateLimiter;
pub use replay::MemoryReplayGuard;
pub use revocation::{MemoryRevocationList, RevokedEntries};
