//! The connection pool and the start-up check that the database answers.

use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, QueueMode, RecycleResult};
use diesel::IntoSql;
use diesel::sql_types::Integer;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, PoolError, PoolableConnection,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use idp_domain::StoreError;

use crate::error::{from_diesel, from_pool};

/// A connection idle (not checked out) this long is checked with `SELECT 1`
/// before it is handed out again; a busier one is not (see [`PgManager`]).
const VERIFY_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

/// The pool every adapter of this crate shares.
pub type PgPool = managed::Pool<PgManager>;

/// A connection checked out of a [`PgPool`].
pub(crate) type PooledConnection = managed::Object<PgManager>;

/// diesel-async's connection manager without its `SELECT 1` on every checkout.
///
/// diesel-async's own manager verifies each connection with a query every time
/// it leaves the pool (`RecyclingMethod::Verified`, its default), so every
/// one-query use of the database cost two round trips. This manager opens
/// connections through diesel-async's, drops a connection the driver already
/// knows is closed or broken, and verifies only one that sat idle for 10 s
/// (a database restart or an idle timeout on the way could have broken it
/// meanwhile). A busy connection that breaks is found by the query that fails
/// on it: that request answers 503 and the driver marks the connection
/// broken, so its next checkout drops it.
#[derive(Debug)]
pub struct PgManager {
    inner: AsyncDieselConnectionManager<AsyncPgConnection>,
}

impl managed::Manager for PgManager {
    type Type = AsyncPgConnection;
    type Error = PoolError;

    async fn create(&self) -> Result<AsyncPgConnection, PoolError> {
        let mut conn = managed::Manager::create(&self.inner).await?;
        // Every query here is a prepared statement whose plan is decided by
        // an index on the owner or the agent, whatever the values. By
        // default PostgreSQL plans each execution again when a statement has
        // a LIMIT parameter (its generic plan looks costlier than the custom
        // ones), and that planning was most of the database's work on a list
        // or an audit page.
        diesel::sql_query("SET plan_cache_mode = force_generic_plan")
            .execute(&mut conn)
            .await
            .map_err(PoolError::QueryError)?;
        Ok(conn)
    }

    async fn recycle(
        &self,
        conn: &mut AsyncPgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<PoolError> {
        if metrics.last_used() < VERIFY_WHEN_IDLE_FOR && !conn.is_broken() {
            return Ok(());
        }
        managed::Manager::recycle(&self.inner, conn, metrics).await
    }
}

/// Size and timeouts of the pool. Every timeout is explicit, so an unreachable
/// or exhausted database answers `503` within a bound instead of hanging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most connections open at once; at least [`PoolConfig::MIN_SIZE`].
    pub max_size: usize,
    /// How long a request waits for a free connection.
    pub wait_timeout: Duration,
    /// How long opening a new connection may take.
    pub create_timeout: Duration,
    /// How long the health check of a returned connection may take.
    pub recycle_timeout: Duration,
}

impl PoolConfig {
    /// The smallest pool accepted: one connection may be held by a long
    /// transaction while a health check or another request still gets one.
    pub const MIN_SIZE: usize = 2;

    /// Defaults with `max_size` connections.
    pub fn with_max_size(max_size: usize) -> Self {
        Self {
            max_size,
            ..Self::default()
        }
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 10,
            wait_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(2),
        }
    }
}

/// Builds a pool of at most `pool_size` connections with the default timeouts
/// and checks that the database answers; see [`connect_with`].
pub async fn connect(database_url: &str, pool_size: usize) -> Result<PgPool, StoreError> {
    connect_with(database_url, PoolConfig::with_max_size(pool_size)).await
}

/// Builds a pool and checks out one connection to run `SELECT 1`, so a server
/// started against an unreachable database fails at once with a one-line
/// [`StoreError::Unavailable`] instead of on its first request. The URL (which
/// may hold a password) never appears in the error.
///
/// Must be called inside a Tokio runtime (the pool's timeouts use it).
pub async fn connect_with(database_url: &str, config: PoolConfig) -> Result<PgPool, StoreError> {
    if config.max_size < PoolConfig::MIN_SIZE {
        return Err(StoreError::Unknown(anyhow::anyhow!(
            "database pool size must be at least {}, got {}",
            PoolConfig::MIN_SIZE,
            config.max_size
        )));
    }
    let manager = PgManager {
        inner: AsyncDieselConnectionManager::new(database_url),
    };
    let pool = PgPool::builder(manager)
        .max_size(config.max_size)
        .wait_timeout(Some(config.wait_timeout))
        .create_timeout(Some(config.create_timeout))
        .recycle_timeout(Some(config.recycle_timeout))
        .runtime(Runtime::Tokio1)
        // The connection given back last goes out first. Under load the
        // audit writer's one commit at a time then stays on one or two warm
        // backends; FIFO handed each commit to the connection idle longest,
        // so the commits took turns over all 16 backends (ES256 token bench:
        // 12% more tokens/s, RS256 13%, alternated runs).
        .queue_mode(QueueMode::Lifo)
        .build()
        .map_err(|e| StoreError::Unknown(anyhow::anyhow!("cannot build the database pool: {e}")))?;
    ping(&pool).await?;
    Ok(pool)
}

/// Checks out a connection.
pub(crate) async fn checkout(pool: &PgPool) -> Result<PooledConnection, StoreError> {
    pool.get().await.map_err(from_pool)
}

/// `SELECT 1` on a pooled connection.
pub(crate) async fn ping(pool: &PgPool) -> Result<(), StoreError> {
    let mut conn = checkout(pool).await?;
    let one: i32 = diesel::select(1.into_sql::<Integer>())
        .get_result(&mut conn)
        .await
        .map_err(from_diesel)?;
    if one == 1 {
        Ok(())
    } else {
        Err(StoreError::Unknown(anyhow::anyhow!(
            "SELECT 1 answered {one}"
        )))
    }
}
