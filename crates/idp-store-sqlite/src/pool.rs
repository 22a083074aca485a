//! Connections: how each one is opened, the pool that holds them, and how a
//! unit of work runs on one.
//!
//! # Why blocking connections on `spawn_blocking`, not `SyncConnectionWrapper`
//!
//! SQLite is a library, not a server: every call blocks the calling thread.
//! This crate keeps a small deadpool pool of plain diesel `SqliteConnection`s
//! and runs each port method as one closure (a *unit of work*, usually one
//! transaction) on Tokio's blocking pool, with the connection moved into it.
//! diesel-async's `SyncConnectionWrapper` does the same per statement, but:
//!
//! * a cancelled future (actix-web drops a handler's future when its client
//!   disconnects) leaves that wrapper's transaction open on a pooled connection
//!   (documented on its `immediate_transaction`), still holding SQLite's write
//!   lock, and its cancel guard calls `block_in_place`, which panics on the
//!   current-thread runtimes actix-web's workers run on. Here the closure runs
//!   to its commit or rollback whatever happens to the future awaiting it;
//! * one hop to the blocking pool per port call instead of one per statement.
//!
//! The blocking pool is this store's own ([`WorkThreads`]), not the caller's
//! runtime's: see there why.
//!
//! Every connection is set up the same way, before it is used:
//! `busy_timeout` (so a writer waits for another process's writer instead
//! of failing at once; this store's own writers take turns in [`WriteTurns`]),
//! `journal_mode = WAL` (readers never wait for the writer), `foreign_keys = ON`
//! (SQLite's default is off), `synchronous = FULL` (every commit is on disk
//! before it returns, also across a power loss: the contract makes audit
//! events durable before the response).

use std::sync::Arc;
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, QueueMode, RecycleError, RecycleResult};
use diesel::connection::{
    AnsiTransactionManager, Connection, SimpleConnection, TransactionManager,
};
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl, SqliteConnection};
use idp_domain::StoreError;

use crate::error::{TxError, from_connection, from_diesel, from_join, from_pool};

/// Size and timeouts of the embedded store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteConfig {
    /// Most connections open at once; at least [`SqliteConfig::MIN_POOL_SIZE`].
    /// Readers run in parallel; writers take turns whatever the size.
    pub pool_size: usize,
    /// How long a writer waits for another writer's transaction to end before
    /// the store answers [`StoreError::Unavailable`] (`PRAGMA busy_timeout`).
    pub busy_timeout: Duration,
    /// How long a request waits for a free connection.
    pub wait_timeout: Duration,
    /// How long opening a new connection may take.
    pub create_timeout: Duration,
}

impl SqliteConfig {
    /// The smallest pool accepted: one connection may be held by a long
    /// transaction while a health check or another request still gets one.
    pub const MIN_POOL_SIZE: usize = 2;

    /// Defaults with `pool_size` connections.
    pub fn with_pool_size(pool_size: usize) -> Self {
        Self {
            pool_size,
            ..Self::default()
        }
    }
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            pool_size: 4,
            busy_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
        }
    }
}

/// Page cache per connection, in KiB.
const PAGE_CACHE_KIB: u32 = 256;

/// Opens one connection to `url` and sets it up (see the module docs).
/// Blocking.
pub(crate) fn establish(url: &str, busy_timeout: Duration) -> Result<SqliteConnection, StoreError> {
    let mut conn = SqliteConnection::establish(url).map_err(from_connection)?;
    let busy_ms = busy_timeout.as_millis().min(i32::MAX as u128);
    // busy_timeout first, so switching to WAL waits for a concurrent opener.
    // secure_delete: space freed by an UPDATE or DELETE is zeroed, so a
    // private key replaced by its sealed form leaves no copy in the file.
    // Each connection keeps its own page cache, 2 MiB by default: with a
    // pool of 16 that is 32 MiB of the server's memory holding copies of
    // pages the operating system caches anyway. 256 KiB keeps the hot index
    // pages; the rest is a read from the OS page cache.
    let setup = format!(
        "PRAGMA busy_timeout = {busy_ms}; \
         PRAGMA journal_mode = WAL; \
         PRAGMA foreign_keys = ON; \
         PRAGMA synchronous = FULL; \
         PRAGMA secure_delete = ON; \
         PRAGMA cache_size = -{PAGE_CACHE_KIB};"
    );
    // Switching a new file to WAL takes an exclusive lock, and SQLite answers
    // SQLITE_BUSY at once rather than calling the busy handler when another
    // opener holds one (waiting could deadlock the two): try again until the
    // busy timeout has passed.
    let started = std::time::Instant::now();
    loop {
        match conn.batch_execute(&setup).map_err(from_diesel) {
            Ok(()) => break,
            Err(StoreError::Unavailable(_)) if started.elapsed() < busy_timeout => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => return Err(err),
        }
    }
    // journal_mode answers the mode it could set rather than failing (e.g. on
    // a file system without shared memory); concurrent readers need WAL.
    let mode = pragma_text(&mut conn, "journal_mode")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unknown(anyhow::anyhow!(
            "cannot put the database in WAL mode (it stays in {mode} mode)"
        )));
    }
    Ok(conn)
}

#[derive(QueryableByName)]
struct PragmaText {
    #[diesel(sql_type = Text)]
    value: String,
}

#[cfg(any(test, feature = "testing"))]
#[derive(QueryableByName)]
struct PragmaInteger {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

/// The value of a text pragma (`journal_mode`, ...) on `conn`.
pub(crate) fn pragma_text(conn: &mut SqliteConnection, name: &str) -> Result<String, StoreError> {
    // Pragma names cannot be bound; every caller passes a literal.
    diesel::sql_query(format!("SELECT (SELECT * FROM pragma_{name}()) AS value"))
        .get_result::<PragmaText>(conn)
        .map(|row| row.value)
        .map_err(from_diesel)
}

/// The value of an integer pragma (`foreign_keys`, `busy_timeout`, ...) on `conn`.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn pragma_integer(conn: &mut SqliteConnection, name: &str) -> Result<i64, StoreError> {
    diesel::sql_query(format!("SELECT (SELECT * FROM pragma_{name}()) AS value"))
        .get_result::<PragmaInteger>(conn)
        .map(|row| row.value)
        .map_err(from_diesel)
}

/// The threads every unit of work (and every connection's opening) runs on:
/// the blocking pool of a runtime of this store's own, at most one thread per
/// connection of the pool.
///
/// Why not `tokio::task::spawn_blocking` on the caller's runtime: actix-web
/// runs each worker on a current-thread runtime of its own, each with its own
/// blocking pool, and a pool opens a thread whenever none of *its* threads is
/// idle (keeping it 10 s). Called from every worker and the main runtime, the
/// units of work spread over up to runtimes x connections threads, each with
/// its stack and its allocator cache: the embedded server under the bench
/// grew to 98 threads and about 20 MiB more resident memory. A unit of work
/// holds its connection while it runs, so one thread per connection is never
/// a wait.
pub(crate) struct WorkThreads {
    /// Only its blocking pool is used; never driven. `None` once shut down.
    runtime: Option<tokio::runtime::Runtime>,
}

impl WorkThreads {
    /// At most `threads` (at least 1) threads named `idp-sqlite`, each
    /// stopping after 10 s without work.
    pub(crate) fn start(threads: usize) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(threads.max(1))
            .thread_name("idp-sqlite")
            .build()
            .map_err(|e| {
                StoreError::Unknown(anyhow::anyhow!("cannot start the database threads: {e}"))
            })?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on one of the threads, queued while all are busy.
    fn spawn<R, F>(&self, work: F) -> Result<tokio::task::JoinHandle<R>, StoreError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let runtime = self.runtime.as_ref().ok_or_else(|| {
            StoreError::Unavailable(anyhow::anyhow!("the database threads stopped"))
        })?;
        Ok(runtime.spawn_blocking(work))
    }
}

impl Drop for WorkThreads {
    /// Without waiting: the last store clone may be dropped on an async
    /// thread, where a runtime's blocking shutdown panics. Units of work
    /// already running finish on their own.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for WorkThreads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkThreads")
            .field("running", &self.runtime.is_some())
            .finish()
    }
}

/// Opens and recycles the pool's connections, and owns the threads they
/// are used on.
#[derive(Debug)]
pub(crate) struct ConnectionManager {
    url: String,
    busy_timeout: Duration,
    threads: WorkThreads,
}

impl managed::Manager for ConnectionManager {
    type Type = SqliteConnection;
    type Error = StoreError;

    async fn create(&self) -> Result<SqliteConnection, StoreError> {
        let url = self.url.clone();
        let busy_timeout = self.busy_timeout;
        self.threads
            .spawn(move || establish(&url, busy_timeout))?
            .await
            .map_err(from_join)?
    }

    /// A connection whose unit of work panicked inside a transaction comes
    /// back with the transaction open: drop it (closing it rolls back).
    async fn recycle(&self, conn: &mut SqliteConnection, _: &Metrics) -> RecycleResult<StoreError> {
        match AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth() {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err(RecycleError::message("left inside a transaction")),
            Err(_) => Err(RecycleError::message("transaction manager broken")),
        }
    }
}

/// The pool every adapter of this crate shares.
pub(crate) type SqlitePool = managed::Pool<ConnectionManager>;

/// Refuses a pool smaller than [`SqliteConfig::MIN_POOL_SIZE`].
pub(crate) fn check_pool_size(config: &SqliteConfig) -> Result<(), StoreError> {
    if config.pool_size < SqliteConfig::MIN_POOL_SIZE {
        return Err(StoreError::Unknown(anyhow::anyhow!(
            "database pool size must be at least {}, got {}",
            SqliteConfig::MIN_POOL_SIZE,
            config.pool_size
        )));
    }
    Ok(())
}

/// Builds the pool (opening no connection yet).
pub(crate) fn build_pool(url: String, config: &SqliteConfig) -> Result<SqlitePool, StoreError> {
    check_pool_size(config)?;
    let manager = ConnectionManager {
        url,
        busy_timeout: config.busy_timeout,
        threads: WorkThreads::start(config.pool_size)?,
    };
    SqlitePool::builder(manager)
        .max_size(config.pool_size)
        .wait_timeout(Some(config.wait_timeout))
        .create_timeout(Some(config.create_timeout))
        .runtime(Runtime::Tokio1)
        // The connection given back last goes out first, as on PostgreSQL:
        // the audit writer's commits stay on a connection whose page cache
        // is current instead of taking turns over every idle one (embedded
        // ES256 token bench: 7,557-7,912 tokens/s against 6,129-6,676,
        // alternated; RS256, bound by signing, the same).
        .queue_mode(QueueMode::Lifo)
        .build()
        .map_err(|e| StoreError::Unknown(anyhow::anyhow!("cannot build the database pool: {e}")))
}

/// Runs `work` on a pooled connection on the store's [`WorkThreads`], inside
/// the caller's tracing span. Once started, `work` runs to its end (its commit or
/// rollback) even if the returned future is dropped; the connection then goes
/// back to the pool.
pub(crate) async fn run<R, F>(pool: &SqlitePool, work: F) -> Result<R, StoreError>
where
    F: FnOnce(&mut SqliteConnection) -> Result<R, StoreError> + Send + 'static,
    R: Send + 'static,
{
    let mut conn = pool.get().await.map_err(from_pool)?;
    let span = tracing::Span::current();
    pool.manager()
        .threads
        .spawn(move || span.in_scope(|| work(&mut conn)))?
        .await
        .map_err(from_join)?
}

/// The store's writers, one at a time and in the order they asked.
///
/// SQLite lets one transaction write at a time, and a connection that finds
/// the write lock taken waits in its busy handler, which sleeps (1, 2, 5, 10,
/// ... up to 100 ms a try) and tries again: no queue, so under a steady
/// stream of writes (the audit group commit's) an unlucky writer kept losing
/// and waited hundreds of milliseconds. Writers of this store take their turn
/// here first, in order and woken as soon as the one before them ends, so
/// they find the lock free; the busy handler is left for other processes
/// using the file.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteTurns(Arc<tokio::sync::Mutex<()>>);

/// Like [`run`] for a unit of work that writes (a [`write_transaction`]): it
/// starts once every write of `turns` asked for before it has ended, and its
/// turn ends with it (its commit or rollback), even if the returned future
/// is dropped.
pub(crate) async fn run_write<R, F>(
    pool: &SqlitePool,
    turns: &WriteTurns,
    work: F,
) -> Result<R, StoreError>
where
    F: FnOnce(&mut SqliteConnection) -> Result<R, StoreError> + Send + 'static,
    R: Send + 'static,
{
    // The turn before the connection: a writer waiting for its turn holds no
    // connection that readers could use.
    let turn = Arc::clone(&turns.0).lock_owned().await;
    run(pool, move |conn| {
        let result = work(conn);
        drop(turn);
        result
    })
    .await
}

/// Runs `work` in a `BEGIN IMMEDIATE` transaction: it takes SQLite's write
/// lock before its first read, so every check it makes (a count, a status)
/// still holds when it writes. This store's writers take turns in
/// [`WriteTurns`] ([`run_write`]); writers of other processes using the file
/// wait for the lock up to the busy timeout.
pub(crate) fn write_transaction<R>(
    conn: &mut SqliteConnection,
    work: impl FnOnce(&mut SqliteConnection) -> Result<R, TxError>,
) -> Result<R, StoreError> {
    conn.immediate_transaction(work).map_err(StoreError::from)
}

/// Runs `work` in a read transaction: its queries see one snapshot (WAL), so
/// a count and the page it counts agree.
pub(crate) fn read_transaction<R>(
    conn: &mut SqliteConnection,
    work: impl FnOnce(&mut SqliteConnection) -> Result<R, TxError>,
) -> Result<R, StoreError> {
    conn.transaction(work).map_err(StoreError::from)
}

/// Reads the schema through a pooled connection: the file is there, readable,
/// and a connection can be had within the pool's timeouts.
pub(crate) async fn ping(pool: &SqlitePool) -> Result<(), StoreError> {
    run(pool, |conn| {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let tables = diesel::sql_query("SELECT count(*) AS n FROM sqlite_schema")
            .get_result::<Count>(conn)
            .map_err(from_diesel)?;
        if tables.n > 0 {
            Ok(())
        } else {
            Err(StoreError::Unknown(anyhow::anyhow!(
                "the database has no schema"
            )))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use diesel::connection::TransactionManager;

    use super::*;
    use crate::testing::TestDataDir;

    #[test]
    fn every_connection_is_set_up() {
        let dir = TestDataDir::create().unwrap();
        let name = dir.database().to_str().unwrap().to_owned();
        let mut conn = establish(&name, Duration::from_millis(1_234)).unwrap();
        assert_eq!(pragma_text(&mut conn, "journal_mode").unwrap(), "wal");
        assert_eq!(pragma_integer(&mut conn, "busy_timeout").unwrap(), 1_234);
        assert_eq!(pragma_integer(&mut conn, "foreign_keys").unwrap(), 1);
        // 1 is NORMAL.
        assert_eq!(pragma_integer(&mut conn, "synchronous").unwrap(), 2);
        // Overwritten content (a private key before it was sealed) is zeroed.
        assert_eq!(pragma_integer(&mut conn, "secure_delete").unwrap(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_exhausted_pool_is_unavailable_not_a_hang() {
        let dir = TestDataDir::create().unwrap();
        let config = SqliteConfig {
            pool_size: 2,
            wait_timeout: Duration::from_millis(200),
            ..SqliteConfig::default()
        };
        let store = dir.open(config).await.unwrap();
        let first = store.pool.get().await.unwrap();
        let second = store.pool.get().await.unwrap();
        let err = ping(&store.pool).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
        drop((first, second));
        ping(&store.pool).await.unwrap();
    }

    /// Units of work from several current-thread runtimes (as actix-web's
    /// workers run) share the store's threads: never more than one per
    /// connection, all named `idp-sqlite`, however many run at once.
    #[test]
    fn units_of_work_from_every_runtime_share_one_thread_per_connection() {
        use std::collections::HashSet;
        use std::sync::Mutex;

        let dir = TestDataDir::create().unwrap();
        let opener = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store = opener
            .block_on(dir.open(SqliteConfig::with_pool_size(3)))
            .unwrap();
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (store, seen) = (store.clone(), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        let mut units = tokio::task::JoinSet::new();
                        for _ in 0..12 {
                            let (pool, seen) = (store.pool.clone(), Arc::clone(&seen));
                            units.spawn(async move {
                                run(&pool, move |_conn| {
                                    let thread = std::thread::current();
                                    seen.lock()
                                        .unwrap()
                                        .insert((thread.id(), thread.name().map(str::to_owned)));
                                    std::thread::sleep(Duration::from_millis(5));
                                    Ok(())
                                })
                                .await
                            });
                        }
                        while let Some(unit) = units.join_next().await {
                            unit.unwrap().unwrap();
                        }
                    });
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty() && seen.len() <= 3, "{seen:?}");
        assert!(
            seen.iter()
                .all(|(_, name)| name.as_deref() == Some("idp-sqlite")),
            "{seen:?}"
        );
        // Dropped outside any runtime here; inside one it must not panic either.
        opener.block_on(async move { drop(store) });
    }

    /// LIFO: the connection given back last is the next one handed out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pool_hands_out_the_connection_given_back_last() {
        use diesel::RunQueryDsl;

        let dir = TestDataDir::create().unwrap();
        let store = dir.open(SqliteConfig::with_pool_size(2)).await.unwrap();
        let first = store.pool.get().await.unwrap();
        let mut second = store.pool.get().await.unwrap();
        // A TEMP table exists on its own connection only.
        diesel::sql_query("CREATE TEMP TABLE given_back_last (x INTEGER)")
            .execute(&mut *second)
            .unwrap();
        // `first` goes back before `second`: FIFO would hand `first` out next.
        drop(first);
        drop(second);
        for _ in 0..3 {
            let mut conn = store.pool.get().await.unwrap();
            diesel::sql_query("SELECT x FROM given_back_last")
                .execute(&mut *conn)
                .unwrap();
        }
    }

    /// Writers queued behind a write wait for it in the store, not in
    /// SQLite's busy handler, and go in the order they asked. (A
    /// current-thread runtime, so each spawned writer has asked before the
    /// next is spawned.)
    #[tokio::test]
    async fn writes_wait_for_their_turn_and_go_in_the_order_they_asked() {
        use diesel::RunQueryDsl;

        #[derive(QueryableByName)]
        struct Number {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        async fn written(store: &crate::SqliteStore) -> Vec<i64> {
            run(&store.pool, |conn| {
                diesel::sql_query("SELECT n FROM turn_order ORDER BY rowid")
                    .load::<Number>(conn)
                    .map_err(from_diesel)
            })
            .await
            .unwrap()
            .into_iter()
            .map(|row| row.n)
            .collect()
        }

        let dir = TestDataDir::create().unwrap();
        let store = dir.open(SqliteConfig::with_pool_size(4)).await.unwrap();
        run_write(&store.pool, &store.writes, |conn| {
            diesel::sql_query("CREATE TABLE turn_order (n INTEGER NOT NULL)")
                .execute(conn)
                .map(drop)
                .map_err(from_diesel)
        })
        .await
        .unwrap();
        let held = Arc::clone(&store.writes.0).lock_owned().await;
        let mut writers = Vec::new();
        for n in 0..6 {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                run_write(&store.pool, &store.writes, move |conn| {
                    write_transaction(conn, |conn| {
                        diesel::sql_query(format!("INSERT INTO turn_order (n) VALUES ({n})"))
                            .execute(conn)?;
                        Ok(())
                    })
                })
                .await
            }));
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(
            written(&store).await,
            Vec::<i64>::new(),
            "a writer did not wait for its turn"
        );
        drop(held);
        for writer in writers {
            writer.await.unwrap().unwrap();
        }
        assert_eq!(written(&store).await, (0..6).collect::<Vec<i64>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_left_in_a_transaction_is_not_reused() {
        let dir = TestDataDir::create().unwrap();
        let store = dir.open(SqliteConfig::with_pool_size(2)).await.unwrap();
        let mut conn = store.pool.get().await.unwrap();
        AnsiTransactionManager::begin_transaction(&mut *conn).unwrap();
        drop(conn);
        let mut conn = store.pool.get().await.unwrap();
        assert_eq!(
            AnsiTransactionManager::transaction_manager_status_mut(&mut *conn)
                .transaction_depth()
                .unwrap(),
            None,
            "the pool handed out a connection inside a transaction"
        );
    }
}
