//! # idp-store-postgres
//!
//! The PostgreSQL adapters of the store ports of `idp-domain`
//! ([`AgentRepository`](idp_domain::ports::AgentRepository),
//! [`CredentialRepository`](idp_domain::ports::CredentialRepository),
//! [`AuditLog`](idp_domain::ports::AuditLog),
//! [`RevokedTokenStore`](idp_domain::ports::RevokedTokenStore),
//! [`SigningKeyStore`](idp_domain::ports::SigningKeyStore) and a
//! [`HealthCheck`](idp_domain::ports::HealthCheck) named `database`), on
//! diesel-async over tokio-postgres (no libpq).
//!
//! Start-up, as the server does it:
//!
//! ```no_run
//! # async fn start(url: &str) -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use idp_domain::ports::AgentRepository;
//! use idp_store_postgres::{PgStore, connect, run_migrations};
//!
//! run_migrations(url).await?; // `idp-server migrate`, or before `serve`
//! let store = PgStore::new(connect(url, 10).await?);
//! let agents: Arc<dyn AgentRepository> = Arc::new(store.clone());
//! # Ok(()) }
//! ```
//!
//! Rules every query here follows:
//! * the owner is in the WHERE clause of every tenant query;
//! * a write of several rows runs in one transaction on one connection, which is
//!   passed down as `&mut AsyncPgConnection`: no second checkout while one is
//!   held, and no transaction future is ever raced against a timeout;
//! * the free-tier limits are checked under a lock (an advisory lock per owner
//!   for agents, the agent's row for credentials), so concurrent writers cannot
//!   both pass the count;
//! * an agent update is a compare-and-swap under the agent's row lock: a change
//!   computed from a stale read is refused (`UpdateOutcome::Stale`), never
//!   written over a concurrent one;
//! * every audit event is appended inside a transaction that links it into
//!   its owner's hash chain under that owner's `audit_heads` row lock (owners
//!   locked in sorted order), so writers on any number of pools or nodes make
//!   one gapless chain per owner; a batch linked ahead from the heads this
//!   store last wrote is one statement that checks, under the same locks,
//!   that those heads are still the stored ones, and writes nothing if not;
//! * every change of the signing keys appends its events and counts one more
//!   key-set version in the same transaction;
//! * errors are mapped in one place, the `error` module.

mod agents;
mod audit;
mod credentials;
mod error;
mod health;
mod known_heads;
mod migrate;
mod paging;
mod pool;
mod revoked_tokens;
mod rows;
mod schema;
mod signing_keys;
#[cfg(feature = "testing")]
pub mod testing;

pub use migrate::{MIGRATIONS, pending_migrations, run_migrations};
pub use pool::{PgPool, PoolConfig, connect, connect_with};

/// The privileges a serving role needs, and no more on `audit_events`: it may
/// append and read events, never UPDATE, DELETE or TRUNCATE them, nor
/// disable their triggers (only the table's owner may `ALTER TABLE`). Run
/// migrations as the owner of the tables (`idp-server migrate`), serve as a
/// role granted this, with `{role}` replaced by its name:
///
/// ```sql
/// GRANT USAGE ON SCHEMA public TO {role};
/// GRANT SELECT, INSERT ON audit_events TO {role};
/// GRANT SELECT, INSERT, UPDATE, DELETE ON agents, credentials, revoked_tokens,
///     signing_keys, audit_heads, key_set_version, key_set_nodes TO {role};
/// GRANT SELECT ON __diesel_schema_migrations TO {role};
/// ```
///
/// The last one lets `serve` (with `IDP_MIGRATE_ON_START=false`) check at
/// start that no migration is pending.
///
/// Even then `audit_heads` is writable by the serving role (each append moves
/// the head): the chain, not the grants, is what shows a rewrite there.
pub const SERVING_ROLE_GRANTS: &str = "\
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT ON audit_events TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON agents, credentials, revoked_tokens, \
signing_keys, audit_heads, key_set_version, key_set_nodes TO {role};
GRANT SELECT ON __diesel_schema_migrations TO {role};
";

/// The PostgreSQL store: one value implementing every store port of the
/// domain, plus the `database` [`HealthCheck`](idp_domain::ports::HealthCheck).
/// Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The audit chain heads this store's appends left.
    known_heads: std::sync::Arc<known_heads::KnownHeads>,
}

impl PgStore {
    /// A store over `pool` (see [`connect`]).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            known_heads: std::sync::Arc::default(),
        }
    }

    /// The pool, e.g. for metrics of its size.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgStore")
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("available", &status.available)
            .finish()
    }
}
