//! Embedded migrations, applied once even when several nodes start together.

use anyhow::Context;
use diesel::sql_types::BigInt;
use diesel::{Connection, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The SQL of `migrations/postgres`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// Key of the session-level advisory lock held while migrating (arbitrary, fixed:
/// "AgentIdP" in ASCII). Nodes starting at once queue on it; the first applies
/// the migrations, the others then find nothing pending.
const MIGRATION_LOCK_KEY: i64 = 0x4167_656e_7449_6450;

/// Applies every pending embedded migration to the database at `database_url`
/// and answers the versions it applied (empty when the schema was current).
///
/// Runs diesel's synchronous migration harness over
/// `AsyncConnectionWrapper<AsyncPgConnection>` (no libpq) on the blocking pool,
/// holding `pg_advisory_lock` for the whole run. Must be called inside a Tokio
/// runtime.
pub async fn run_migrations(database_url: &str) -> anyhow::Result<Vec<String>> {
    let database_url = database_url.to_owned();
    tokio::task::spawn_blocking(move || migrate_blocking(&database_url))
        .await
        .context("the migration task failed")?
}

/// The versions of the embedded migrations not yet applied to the database at
/// `database_url` (empty when the schema is current); reads only.
pub async fn pending_migrations(database_url: &str) -> anyhow::Result<Vec<String>> {
    let database_url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&database_url)
            .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
        conn.pending_migrations(MIGRATIONS)
            .map(|pending| pending.iter().map(|m| m.name().to_string()).collect())
            .map_err(|e| anyhow::anyhow!("cannot read the applied migrations: {e}"))
    })
    .await
    .context("the migration check failed")?
}

fn migrate_blocking(database_url: &str) -> anyhow::Result<Vec<String>> {
    let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(database_url)
        .map_err(|e| anyhow::anyhow!("cannot connect to the database to migrate: {e}"))?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut conn)
        .context("cannot take the migration lock")?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>())
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
    // Closing the session releases the lock too; unlocking explicitly keeps a
    // failed unlock from hiding the migration's own result.
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut conn);
    let applied = applied?;
    unlocked.context("cannot release the migration lock")?;
    Ok(applied)
}
