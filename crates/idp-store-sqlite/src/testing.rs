//! A fresh data directory per test (feature `testing`).
//!
//! Each test gets a directory of its own under the system's temporary
//! directory, removed when the [`TestDataDir`] is dropped (also when the test
//! panics), so tests run in parallel and leave nothing behind.

use std::path::{Path, PathBuf};

use diesel::{Connection, SqliteConnection};
use idp_domain::StoreError;

use crate::{DATABASE_FILE_NAME, SqliteConfig, SqliteStore, open_with};

/// A temporary data directory, removed on drop.
#[derive(Debug)]
pub struct TestDataDir {
    dir: PathBuf,
}

impl TestDataDir {
    /// Creates a new, empty directory.
    pub fn create() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "idp-store-sqlite-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database file in it (which may not exist yet).
    pub fn database(&self) -> PathBuf {
        self.dir.join(DATABASE_FILE_NAME)
    }

    /// Opens (creating and migrating) the directory's database with `config`.
    pub async fn open(&self, config: SqliteConfig) -> Result<SqliteStore, StoreError> {
        open_with(&self.database(), config).await
    }

    /// A plain connection to the database, outside the store and without its
    /// set-up (foreign keys off, default busy timeout), as the `sqlite3` shell
    /// would open it: to check what the database itself refuses.
    pub fn raw_connection(&self) -> Result<SqliteConnection, StoreError> {
        let name = self
            .database()
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Unknown(anyhow::anyhow!("path is not UTF-8")))?;
        SqliteConnection::establish(&name).map_err(crate::error::from_connection)
    }

    /// The value of an integer pragma on a connection of `store`'s pool.
    pub async fn pragma_of(store: &SqliteStore, name: &'static str) -> Result<i64, StoreError> {
        crate::pool::run(&store.pool, move |conn| {
            crate::pool::pragma_integer(conn, name)
        })
        .await
    }

    /// Waits until every connection of `store`'s pool is back in it: no unit
    /// of work is running any more (including those whose future was dropped).
    pub async fn wait_until_idle(store: &SqliteStore) {
        loop {
            let status = store.pool.status();
            if status.available == status.size {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// The journal mode of a connection of `store`'s pool.
    pub async fn journal_mode_of(store: &SqliteStore) -> Result<String, StoreError> {
        crate::pool::run(&store.pool, |conn| {
            crate::pool::pragma_text(conn, "journal_mode")
        })
        .await
    }
}

impl Drop for TestDataDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!(
                "warning: cannot remove test data directory {}: {e}",
                self.dir.display()
            );
        }
    }
}
