//! Embedded migrations, applied once even when several nodes start together,
//! followed by the one migration step SQL cannot do: linking stored audit
//! events into their owners' hash chains.

use anyhow::Context;
use diesel::migration::MigrationSource;
use diesel::sql_types::{Array, BigInt, Text};
use diesel::{Connection, RunQueryDsl};
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use idp_domain::audit::AuditEvent;
use idp_domain::audit_chain::{ChainHead, link};

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
/// holding `pg_advisory_lock` for the whole run. Then, still under the lock
/// and in one transaction, links every audit event stored without a chain
/// place into its owner's hash chain (events of before the chain, ordered by
/// `"timestamp"` then `event_id`); with none, that step only looks. Must be
/// called inside a Tokio runtime, as the owner of the tables.
pub async fn run_migrations(database_url: &str) -> anyhow::Result<Vec<String>> {
    let database_url = database_url.to_owned();
    tokio::task::spawn_blocking(move || migrate_blocking(&database_url))
        .await
        .context("the migration task failed")?
}

/// One row of diesel's migrations table.
#[derive(diesel::QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = diesel::sql_types::Text)]
    version: String,
}

/// Whether a table exists.
#[derive(diesel::QueryableByName)]
struct TableExists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// The versions of the embedded migrations not yet applied to the database at
/// `database_url` (empty when the schema is current); reads only.
pub async fn pending_migrations(database_url: &str) -> anyhow::Result<Vec<String>> {
    let database_url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&database_url)
            .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
        // Read directly rather than through diesel's harness, which first
        // runs `CREATE TABLE IF NOT EXISTS` on its table: a serving role
        // without CREATE on the schema (the two-role set-up) is refused that
        // even when the table exists.
        // A database never migrated has no table yet: everything is pending.
        let has_table = diesel::sql_query(
            "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS exists",
        )
        .get_result::<TableExists>(&mut conn)
        .map_err(|e| anyhow::anyhow!("cannot read the applied migrations: {e}"))?
        .exists;
        let applied: Vec<String> = if !has_table {
            Vec::new()
        } else {
            diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
                .load::<AppliedVersion>(&mut conn)
                .map_err(|e| anyhow::anyhow!("cannot read the applied migrations: {e}"))?
                .into_iter()
                .map(|row| row.version)
                .collect()
        };
        let known = MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
            .map_err(|e| anyhow::anyhow!("cannot list the embedded migrations: {e}"))?;
        Ok(known
            .iter()
            .filter(|m| !applied.contains(&m.name().version().to_string()))
            .map(|m| m.name().to_string())
            .collect())
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
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))
        .and_then(|applied| {
            conn.transaction(backfill_chains)
                .context("cannot link the stored audit events into their chains")?;
            Ok(applied)
        });
    // Closing the session releases the lock too; unlocking explicitly keeps a
    // failed unlock from hiding the migration's own result.
    let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .execute(&mut conn);
    let applied = applied?;
    unlocked.context("cannot release the migration lock")?;
    Ok(applied)
}

/// Events linked per round: one SELECT and one UPDATE each.
const BACKFILL_BATCH: i64 = 1_000;

/// Links every audit event stored without a chain place (those of before the
/// chain, or written by hand since) after its owner's current head, ordered
/// by `"timestamp"` then `event_id`, and records the new heads. Runs inside
/// one transaction under the migration lock; with no such event it only
/// counts them.
///
/// The append-only trigger is disabled for the UPDATEs and enabled again
/// before the transaction commits (`ALTER TABLE` takes the table's exclusive
/// lock: no append interleaves), so it is never off for anyone else.
fn backfill_chains(conn: &mut AsyncConnectionWrapper<AsyncPgConnection>) -> anyhow::Result<()> {
    use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper};

    use crate::rows::AuditEventRow;
    use crate::schema::{audit_events, audit_heads};

    let mut owners: Vec<String> = audit_events::table
        .filter(audit_events::sequence.is_null())
        .select(audit_events::owner)
        .distinct()
        .load(conn)?;
    if owners.is_empty() {
        return Ok(());
    }
    owners.sort();
    diesel::sql_query("ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete")
        .execute(conn)?;
    for owner in owners {
        let recorded: Option<(i64, String)> = audit_heads::table
            .find(&owner)
            .select((audit_heads::sequence, audit_heads::hash))
            .first(conn)
            .optional()?;
        let mut head = match recorded {
            Some((sequence, hash)) => ChainHead {
                sequence: u64::try_from(sequence)?,
                hash,
            },
            None => ChainHead::genesis(),
        };
        loop {
            let rows: Vec<AuditEventRow> = audit_events::table
                .filter(audit_events::owner.eq(&owner))
                .filter(audit_events::sequence.is_null())
                .order((audit_events::timestamp.asc(), audit_events::event_id.asc()))
                .limit(BACKFILL_BATCH)
                .select(AuditEventRow::as_select())
                .load(conn)?;
            if rows.is_empty() {
                break;
            }
            let mut events = rows
                .into_iter()
                .map(AuditEvent::try_from)
                .collect::<Result<Vec<_>, _>>()?;
            head = link(&head, &mut events)?;
            let mut ids = Vec::with_capacity(events.len());
            let mut sequences = Vec::with_capacity(events.len());
            let mut hashes = Vec::with_capacity(events.len());
            for event in events {
                ids.push(event.event_id.0);
                sequences.push(i64::try_from(event.sequence.unwrap_or_default())?);
                hashes.push(event.hash.unwrap_or_default());
            }
            diesel::sql_query(
                "UPDATE audit_events AS e SET sequence = v.sequence, hash = v.hash \
                 FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS v(event_id, sequence, hash) \
                 WHERE e.event_id = v.event_id",
            )
            .bind::<Array<diesel::sql_types::Uuid>, _>(ids)
            .bind::<Array<BigInt>, _>(sequences)
            .bind::<Array<Text>, _>(hashes)
            .execute(conn)?;
        }
        let sequence = i64::try_from(head.sequence)?;
        diesel::insert_into(audit_heads::table)
            .values((
                audit_heads::owner.eq(&owner),
                audit_heads::sequence.eq(sequence),
                audit_heads::hash.eq(&head.hash),
            ))
            .on_conflict(audit_heads::owner)
            .do_update()
            .set((
                audit_heads::sequence.eq(sequence),
                audit_heads::hash.eq(&head.hash),
            ))
            .execute(conn)?;
    }
    diesel::sql_query("ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_or_delete")
        .execute(conn)?;
    Ok(())
}
