//! Embedded migrations, applied once even when several processes open the
//! same file together.

use std::error::Error;
use std::path::Path;
use std::time::Duration;

use diesel::result::Error as DieselError;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use idp_domain::StoreError;

use crate::error::{TxError, from_join};
use crate::pool::{SqliteConfig, establish, write_transaction};
use crate::{chain, database_file};

/// The SQL of `migrations/sqlite`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Applies every pending embedded migration to the database file at `path`
/// (creating it and its directory if missing, see [`crate::open`]) and
/// answers the versions it applied (empty when the schema was current).
///
/// SQLite cannot compute the audit chain's hashes, so the SQL migrations
/// leave the events stored before the chain existed unlinked; in the same
/// transaction, this links them (per owner, by timestamp then event id,
/// after the owner's head). That step finds nothing to do once it has run.
///
/// For `idp-server migrate`; [`crate::open`] migrates too. Takes no data
/// directory lock: the whole run is one `BEGIN IMMEDIATE` transaction, so
/// processes migrating at once take turns, the first applies the
/// migrations, and the others find nothing pending. Must be called inside a
/// Tokio runtime.
pub async fn run_migrations(path: &Path) -> Result<Vec<String>, StoreError> {
    let path = path.to_owned();
    let busy_timeout = SqliteConfig::default().busy_timeout;
    tokio::task::spawn_blocking(move || {
        let url = database_file::prepare(&path)?;
        migrate_blocking(&url, busy_timeout)
    })
    .await
    .map_err(from_join)?
}

/// Applies the pending migrations on a connection of its own. Blocking.
pub(crate) fn migrate_blocking(
    url: &str,
    busy_timeout: Duration,
) -> Result<Vec<String>, StoreError> {
    let mut conn = establish(url, busy_timeout)?;
    // diesel runs each migration in a transaction of its own; inside this
    // one they become savepoints, and the check for pending migrations, their
    // application and the audit chain's backfill are one atomic step.
    write_transaction(&mut conn, |conn| {
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(ToString::to_string).collect())
            .map_err(migration_error)?;
        let linked = chain::backfill(conn)?;
        if linked > 0 {
            tracing::info!(
                events = linked,
                "linked the stored audit events into their chains"
            );
        }
        Ok(applied)
    })
}

/// A failed migration: a database error keeps its mapping (busy is
/// `Unavailable`), anything else is `Unknown`.
fn migration_error(err: Box<dyn Error + Send + Sync>) -> TxError {
    match err.downcast::<DieselError>() {
        Ok(db) => TxError::Db(*db),
        Err(other) => TxError::Refused(StoreError::Unknown(anyhow::anyhow!(
            "migration failed: {other}"
        ))),
    }
}
