//! # idp-store-sqlite
//!
//! The embedded store: SQLite adapters of the store ports of `idp-domain`
//! ([`AgentRepository`](idp_domain::ports::AgentRepository),
//! [`CredentialRepository`](idp_domain::ports::CredentialRepository),
//! [`AuditLog`](idp_domain::ports::AuditLog),
//! [`RevokedTokenStore`](idp_domain::ports::RevokedTokenStore),
//! [`SigningKeyStore`](idp_domain::ports::SigningKeyStore) and a
//! [`HealthCheck`](idp_domain::ports::HealthCheck) named `database`), on
//! diesel's SQLite backend with SQLite compiled in. The server uses it when no
//! `DATABASE_URL` is set: one file in `IDP_DATA_DIR`, nothing else to run.
//!
//! Start-up, as the server does it:
//!
//! ```no_run
//! # async fn start(data_dir: &std::path::Path) -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use idp_domain::ports::AgentRepository;
//! use idp_store_sqlite::{DATABASE_FILE_NAME, lock_data_dir, open};
//!
//! let _lock = lock_data_dir(data_dir)?; // `serve` only; held until shutdown
//! let store = open(&data_dir.join(DATABASE_FILE_NAME), 4).await?; // migrates
//! let agents: Arc<dyn AgentRepository> = Arc::new(store.clone());
//! # Ok(()) }
//! ```
//!
//! One-off commands (`bootstrap`, `migrate`) call [`open`] or
//! [`run_migrations`] without [`lock_data_dir`]: they may run beside a serving
//! server, and SQLite serializes their writes with the server's.
//!
//! Rules every query here follows:
//! * the owner is in the WHERE clause of every tenant query;
//! * a port method is one unit of work on one connection, run to its end on
//!   the blocking pool (see the `pool` module for why not diesel-async's
//!   `SyncConnectionWrapper`);
//! * a write that checks a limit or a state runs in a `BEGIN IMMEDIATE`
//!   transaction, which takes the database's write lock before its first
//!   read: writers (of every connection and every process) take turns, so
//!   no two can both pass a count;
//! * an agent update is a compare-and-swap in such a transaction: a change
//!   computed from a stale read is refused (`UpdateOutcome::Stale`), never
//!   written over a concurrent one;
//! * every audit event is linked into its owner's hash chain (`audit_heads`)
//!   inside the `BEGIN IMMEDIATE` transaction that stores it, so concurrent
//!   writers of one owner make one gapless chain (the `chain` module); every
//!   change of the signing keys also moves the key-set version in its
//!   transaction;
//! * reads of a page and its total share one snapshot;
//! * errors are mapped in one place, the `error` module.
//!
//! Storage layout (UUIDs as text, instants as integer milliseconds, JSON as
//! text) is described at the top of `migrations/sqlite/.../up.sql`.

mod agents;
mod audit;
mod chain;
mod columns;
mod credentials;
mod database_file;
mod error;
mod health;
mod instance_lock;
mod migrate;
mod paging;
mod pool;
mod revoked_tokens;
mod rows;
mod schema;
mod signing_keys;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use idp_domain::StoreError;

pub use instance_lock::{InstanceLock, InstanceLockError, LOCK_FILE_NAME, lock_data_dir};
pub use migrate::{MIGRATIONS, run_migrations};
pub use pool::SqliteConfig;

use crate::error::from_join;
use crate::pool::{SqlitePool, WriteTurns, build_pool, check_pool_size, ping};

/// The name of the database file inside the data directory.
pub const DATABASE_FILE_NAME: &str = "agentidp.db";

/// The SQLite store: one value implementing every store port of the domain,
/// plus the `database` [`HealthCheck`](idp_domain::ports::HealthCheck).
/// Cloning is cheap and shares the pool; the connections close when the last
/// clone is dropped.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writes: WriteTurns,
    path: Arc<Path>,
}

impl SqliteStore {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection pool's counters, for metrics (no I/O).
    pub fn pool_status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }
}

/// A reading of [`SqliteStore`]'s connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections not checked out.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("available", &status.available)
            .finish()
    }
}

/// Opens the database file at `path` with a pool of `pool_size` connections
/// (at least 2) and the default timeouts; see [`open_with`].
pub async fn open(path: &Path, pool_size: usize) -> Result<SqliteStore, StoreError> {
    open_with(path, SqliteConfig::with_pool_size(pool_size)).await
}

/// Opens the database file at `path`: creates its directory and the file if
/// missing (private to the user, see below), applies the pending embedded
/// migrations once (safe when several processes open the file together), and
/// checks out one connection so a broken file fails here, at start, with a
/// one-line error rather than on the first request.
///
/// A file or directory that cannot be created or opened, or a database kept
/// locked by another writer beyond the busy timeout, is
/// [`StoreError::Unavailable`]; a pool smaller than
/// [`SqliteConfig::MIN_POOL_SIZE`] or a file that is not a database of this
/// program is [`StoreError::Unknown`].
///
/// On Unix a new directory is created `0700` and a new file `0600`: the file
/// holds signing keys and secret hashes. Must be called inside a Tokio runtime.
pub async fn open_with(path: &Path, config: SqliteConfig) -> Result<SqliteStore, StoreError> {
    check_pool_size(&config)?;
    let owned: PathBuf = path.to_owned();
    let busy_timeout = config.busy_timeout;
    let (url, applied) = tokio::task::spawn_blocking(move || {
        let url = database_file::prepare(&owned)?;
        let applied = migrate::migrate_blocking(&url, busy_timeout)?;
        Ok::<_, StoreError>((url, applied))
    })
    .await
    .map_err(from_join)??;
    if !applied.is_empty() {
        tracing::info!(path = %path.display(), versions = ?applied, "migrated the embedded store");
    }
    let pool = build_pool(url, &config)?;
    ping(&pool).await?;
    Ok(SqliteStore {
        pool,
        writes: WriteTurns::default(),
        path: Arc::from(path),
    })
}
