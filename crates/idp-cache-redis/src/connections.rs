//! The Redis connections the adapters send their commands on: one
//! multiplexed connection per thread, shared by that thread's commands.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleResult};
use deadpool_redis::Runtime;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{AsyncConnectionConfig, RedisError, RedisResult};
use idp_domain::StoreError;
use thread_local::ThreadLocal;
use tokio::runtime::{self, Handle};

use crate::error::{from_pool, from_redis, is_connection_failure};

/// Limit on opening a TCP connection (and on the start-up PING).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on one command's answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit on waiting for the thread's connection while it is being opened.
const WAIT_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection idle this long is PINGed before it is used again; a busier
/// one is not (see [`RedisManager`]).
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

/// The deadpool pool that holds one thread's connection (see [`Connections`]).
type Pool = managed::Pool<RedisManager>;

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
/// and that command's caller (`settle`) takes it out of its pool, so the next
/// command opens a fresh one: a broken connection costs the commands that
/// were in flight on it (503 with `Retry-After`), where the PING cost every
/// command a round trip. `UNWATCH` is not needed: nothing here uses `WATCH`.
///
/// Cheap to clone: clones open connections to the same Redis.
#[derive(Clone, Debug)]
pub struct RedisManager {
    inner: Arc<deadpool_redis::Manager>,
}

impl RedisManager {
    /// A manager for `url` with connect and response timeouts.
    pub fn new(url: &str, config: AsyncConnectionConfig) -> Result<Self, RedisError> {
        Ok(Self {
            inner: Arc::new(deadpool_redis::Manager::new_with_config(url, config)?),
        })
    }
}

impl managed::Manager for RedisManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> Result<MultiplexedConnection, RedisError> {
        managed::Manager::create(&*self.inner).await
    }

    async fn recycle(
        &self,
        conn: &mut MultiplexedConnection,
        metrics: &Metrics,
    ) -> RecycleResult<RedisError> {
        if metrics.last_used() < PING_WHEN_IDLE_FOR {
            return Ok(());
        }
        managed::Manager::recycle(&*self.inner, conn, metrics).await
    }
}

/// The connections every Redis adapter of one server shares: one multiplexed
/// connection per thread that sends commands, shared by all of that thread's
/// commands. Cheap to clone (clones share the connections).
///
/// - **Shared, not checked out.** A multiplexed connection carries any number
///   of commands at once: those sent while others are in flight are written
///   together and answered in order. A command takes a clone of its thread's
///   connection and never waits for another command to give one back.
/// - **Per thread.** The `redis` crate drives a connection from a task on the
///   runtime that opened it. On a server, each actix worker is a thread with a
///   runtime of its own, so a connection shared by all of them would make
///   every command wake the thread that drives it, and every answer wake the
///   thread that asked. Opened and used on the same thread, a command and its
///   answer wake only that thread, once it has something to read.
///
/// Each thread's connection lives in a deadpool pool of one over
/// [`RedisManager`], which opens it within 2 s (the thread's other commands
/// wait for it meanwhile, up to 2 s), PINGs it after 10 s idle, and opens a
/// new one after a command found it broken (see [`RedisManager`]).
#[derive(Clone)]
pub struct Connections {
    manager: RedisManager,
    per_thread: Arc<ThreadLocal<Mutex<Option<ThreadPool>>>>,
}

/// A thread's pool, and the runtime its connection was opened on (which
/// drives it).
struct ThreadPool {
    runtime: runtime::Id,
    pool: Pool,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("open", &self.open())
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// Connections opened by `manager`.
    pub fn new(manager: RedisManager) -> Self {
        Self {
            manager,
            per_thread: Arc::new(ThreadLocal::new()),
        }
    }

    /// Connections to `url`: 2 s limits on connecting, on each answer and on
    /// waiting for the thread's connection. Connects nothing yet.
    pub fn to(url: &str) -> Result<Self, RedisError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        Ok(Self::new(RedisManager::new(url, config)?))
    }

    /// The calling thread's connection, opened if it has none (or only one
    /// opened on a runtime that is not the caller's).
    pub async fn get(&self) -> Result<SharedConnection, StoreError> {
        let pool = self.thread_pool()?;
        let object = pool.get().await.map_err(from_pool)?;
        let created = managed::Object::metrics(&object).created;
        // Back to the pool at once: other commands share it meanwhile.
        let conn = (*object).clone();
        Ok(SharedConnection {
            conn,
            pool,
            created,
        })
    }

    /// How many threads hold an open connection.
    pub fn open(&self) -> usize {
        self.per_thread
            .iter()
            .filter(|slot| {
                lock(slot)
                    .as_ref()
                    .is_some_and(|thread| thread.pool.status().size > 0)
            })
            .count()
    }

    /// The calling thread's pool. A thread that ended leaves its pool to the
    /// next thread that starts, and a thread can run one runtime after
    /// another: a pool whose connection another runtime opened (and drove,
    /// until it ended) is replaced.
    fn thread_pool(&self) -> Result<Pool, StoreError> {
        let runtime = Handle::try_current()
            .map_err(|e| StoreError::Unknown(anyhow::Error::new(e).context("redis")))?
            .id();
        let mut slot = lock(self.per_thread.get_or_default());
        match &*slot {
            Some(thread) if thread.runtime == runtime => Ok(thread.pool.clone()),
            _ => {
                let pool = self.pool()?;
                *slot = Some(ThreadPool {
                    runtime,
                    pool: pool.clone(),
                });
                Ok(pool)
            }
        }
    }

    fn pool(&self) -> Result<Pool, StoreError> {
        Pool::builder(self.manager.clone())
            .max_size(1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(RESPONSE_TIMEOUT))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Unknown(anyhow::Error::new(e).context("redis pool")))
    }
}

/// Only the slot's own thread locks it, but for [`Connections::open`]; a
/// panic elsewhere cannot leave it invalid.
fn lock(slot: &Mutex<Option<ThreadPool>>) -> MutexGuard<'_, Option<ThreadPool>> {
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A clone of the calling thread's connection (see [`Connections`]);
/// dereferences to the `redis` crate's multiplexed connection (`&mut *conn`
/// for commands).
pub struct SharedConnection {
    conn: MultiplexedConnection,
    pool: Pool,
    created: Instant,
}

impl fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConnection")
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl Deref for SharedConnection {
    type Target = MultiplexedConnection;

    fn deref(&self) -> &MultiplexedConnection {
        &self.conn
    }
}

impl DerefMut for SharedConnection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.conn
    }
}

impl SharedConnection {
    /// Takes this connection out of its thread's pool, so that the thread's
    /// next command opens a fresh one. A connection opened since this one
    /// (after another command found it broken first) stays.
    fn discard(self) {
        let created = self.created;
        self.pool.retain(|_, metrics| metrics.created > created);
    }
}

/// The result of a command run on `conn`, in the domain's terms. A connection
/// whose command failed at the connection level (I/O, dropped, refused, timed
/// out) is discarded, so the thread's next command opens a fresh one; see
/// [`RedisManager`].
pub(crate) fn settle<T>(conn: SharedConnection, result: RedisResult<T>) -> Result<T, StoreError> {
    result.map_err(|err| failed(conn, err))
}

/// `err`, a command's failure on `conn`, in the domain's terms; see [`settle`].
pub(crate) fn failed(conn: SharedConnection, err: RedisError) -> StoreError {
    if is_connection_failure(&err) {
        conn.discard();
    }
    from_redis(err)
}

#[cfg(test)]
mod tests {
    use deadpool_redis::redis;

    use super::*;

    fn redis_url() -> String {
        std::env::var("IDP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
    }

    async fn client_id(conn: &mut SharedConnection) -> RedisResult<i64> {
        redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut **conn)
            .await
    }

    /// A command sent before the break was found fails after the connection
    /// was replaced: the replacement stays.
    #[tokio::test]
    async fn a_late_failure_on_a_replaced_connection_keeps_the_new_one() {
        let connections = Connections::to(&redis_url()).unwrap();
        let mut found_first = connections.get().await.unwrap();
        let mut found_late = connections.get().await.unwrap();
        let old = client_id(&mut found_first).await.unwrap();
        let client = redis::Client::open(redis_url()).unwrap();
        let mut outside = client.get_multiplexed_async_connection().await.unwrap();
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(old)
            .query_async(&mut outside)
            .await
            .unwrap();
        assert_eq!(killed, 1);

        let err = client_id(&mut found_first).await.unwrap_err();
        assert!(matches!(
            failed(found_first, err),
            StoreError::Unavailable(_)
        ));
        let new = client_id(&mut connections.get().await.unwrap())
            .await
            .unwrap();
        assert_ne!(new, old);

        let err = client_id(&mut found_late).await.unwrap_err();
        assert!(matches!(
            failed(found_late, err),
            StoreError::Unavailable(_)
        ));
        let again = client_id(&mut connections.get().await.unwrap())
            .await
            .unwrap();
        assert_eq!(again, new, "the replacement was discarded too");
    }
}
