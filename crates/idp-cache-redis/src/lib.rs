//! # idp-cache-redis
//!
//! Redis adapters of the cache ports, shared by every server node:
//!
//! * [`RedisRateLimiter`] ([`RateLimiter`](idp_domain::ports::RateLimiter)): an
//!   exact sliding-window log in a sorted set, one Lua script per hit.
//! * [`RedisUsageCounter`] ([`UsageCounter`](idp_domain::ports::UsageCounter)):
//!   one counter per key and UTC month, one Lua script per unit.
//! * [`RedisAdmission`] ([`AdmissionControl`](idp_domain::ports::AdmissionControl)):
//!   the two above in one script, so a token request's rate limit and quota
//!   cost one round trip.
//! * [`RedisRevocationList`] ([`RevocationList`](idp_domain::ports::RevocationList)):
//!   revoked `jti`s with a "loaded" marker; when Redis lost its data the list
//!   reloads from the durable [`RevokedTokenStore`](idp_domain::ports::RevokedTokenStore)
//!   before it answers.
//! * [`RedisReplayGuard`] ([`ReplayGuard`](idp_domain::ports::ReplayGuard)):
//!   used `jti`s as `SET NX` keys with a "since" marker that moves forward
//!   when Redis lost its data, reported as `remembered_since`. Needs Redis 7
//!   or later (`SET ... NX GET`); an older Redis answers every call with an
//!   error, so nothing is accepted unguarded.
//! * [`RedisHealth`]: the `cache` [`HealthCheck`](idp_domain::ports::HealthCheck) (PING).
//! * [`RedisChangeFeed`] ([`ChangeNotifier`](idp_domain::ports::ChangeNotifier)):
//!   changed agents and revoked tokens announced over pub/sub to every node's
//!   [`ChangeListener`](idp_domain::ports::ChangeListener)s, each announcement
//!   numbered in a shared sequence and acknowledged before the call returns by
//!   every node holding a lease (renewed only while it has heard the whole
//!   sequence), or waited out until that lease ends; a node without a fresh
//!   lease answers nothing from memory.
//! * [`RedisCache`]: the [`Connections`] and key prefix the adapters share,
//!   made by [`connect`], with a constructor for each adapter. Each thread
//!   that sends commands has one multiplexed connection, which all of its
//!   commands share, held in a deadpool pool over [`RedisManager`]; that
//!   manager does not PING on every checkout as deadpool-redis's own does,
//!   so one command is one round trip.
//!
//! Every key lives under the configured prefix (e.g. `agentidp:`), so several
//! deployments or test runs can share one Redis. Time always comes from the
//! `now` argument (the domain's `Clock`), never from Redis: expiries are set as
//! durations computed from that `now`.
//!
//! Error policy: a pool or connection failure (refused, dropped, timed out,
//! Redis loading or read-only) is [`StoreError::Unavailable`](idp_domain::StoreError)
//! (503 with `Retry-After`); anything else, such as an unexpected reply, is
//! `StoreError::Unknown`. [`connect`] answers its own [`ConnectError`] for the
//! one-line start-up message.

mod admission;
mod cache;
mod changes;
mod connections;
mod error;
mod quota;
mod rate;
mod replay;
mod revocation;

pub use admission::RedisAdmission;
pub use cache::{ConnectError, RedisCache, RedisHealth, connect};
pub use changes::{ACK_WITHIN, CATCH_UP_WITHIN, LEASE, RENEW_EVERY, RedisChangeFeed};
pub use connections::{Connections, RedisManager, SharedConnection};
pub use quota::RedisUsageCounter;
pub use rate::RedisRateLimiter;
pub use replay::RedisReplayGuard;
pub use revocation::RedisRevocationList;

/// The `redis` crate this adapter speaks through (deadpool-redis's re-export).
pub use deadpool_redis::redis;
