//! [`SigningKeyStore`] on `signing_keys`, `key_set_version` and
//! `key_set_nodes`.
//!
//! Every change of the keys is one `BEGIN IMMEDIATE` transaction that also
//! appends its audit events (chained, see the `chain` module) and increments
//! the key-set version: all of it commits, or none. The write lock makes each
//! check (is there already a live successor? is the key still unrevoked?)
//! hold until the write; the partial unique index
//! `signing_keys_one_live_successor` enforces one live successor per key in
//! the database too.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::keys::SigningKeyRecord;
use idp_domain::ports::SigningKeyStore;

use crate::SqliteStore;
use crate::chain::append_chained;
use crate::columns::{at_or_after, instant, millis};
use crate::error::{TxError, corrupt_row, from_diesel};
use crate::pool::{run, run_write, write_transaction};
use crate::schema::{key_set_nodes, key_set_version, signing_keys};

/// A row of `signing_keys`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = signing_keys, check_for_backend(diesel::sqlite::Sqlite))]
struct SigningKeyRow {
    kid: String,
    algorithm: String,
    private_key: String,
    succeeds: Option<String>,
    created_at: i64,
    activates_at: i64,
    revoked_at: Option<i64>,
    activation_recorded: bool,
}

impl From<&SigningKeyRecord> for SigningKeyRow {
    fn from(key: &SigningKeyRecord) -> Self {
        Self {
            kid: key.kid.clone(),
            algorithm: key.algorithm.clone(),
            private_key: key.private_key.clone(),
            succeeds: key.succeeds.clone(),
            created_at: millis(key.created_at),
            activates_at: millis(key.activates_at),
            revoked_at: key.revoked_at.map(millis),
            activation_recorded: key.activation_recorded,
        }
    }
}

impl TryFrom<SigningKeyRow> for SigningKeyRecord {
    type Error = StoreError;

    fn try_from(row: SigningKeyRow) -> Result<Self, StoreError> {
        let at = |column: &str, value: i64| {
            instant(value).ok_or_else(|| {
                corrupt_row(
                    "signing_keys",
                    &row.kid,
                    format!("{column} {value} out of range"),
                )
            })
        };
        let created_at = at("created_at", row.created_at)?;
        let activates_at = at("activates_at", row.activates_at)?;
        let revoked_at = row
            .revoked_at
            .map(|value| at("revoked_at", value))
            .transpose()?;
        Ok(SigningKeyRecord {
            kid: row.kid,
            algorithm: row.algorithm,
            private_key: row.private_key,
            succeeds: row.succeeds,
            created_at,
            activates_at,
            revoked_at,
            activation_recorded: row.activation_recorded,
        })
    }
}

/// Increments the key-set version, inside the caller's write transaction.
fn bump_version(conn: &mut SqliteConnection) -> Result<(), TxError> {
    let updated = diesel::update(key_set_version::table)
        .set(key_set_version::version.eq(key_set_version::version + 1))
        .execute(conn)?;
    if updated == 1 {
        Ok(())
    } else {
        Err(corrupt_row(
            "key_set_version",
            1,
            format!("{updated} rows instead of one"),
        )
        .into())
    }
}

/// The end of every change of the keys: its events, then the new version.
fn finish_change(conn: &mut SqliteConnection, events: &[AuditEvent]) -> Result<bool, TxError> {
    append_chained(conn, events)?;
    bump_version(conn)?;
    Ok(true)
}

impl SqliteStore {
    /// Runs `change` on the keys in one write transaction: when it answers
    /// `true` (it wrote), `events` are appended and the version incremented
    /// in that transaction; `false` rolls nothing back because nothing was
    /// written.
    async fn change_keys<F>(&self, events: &[AuditEvent], change: F) -> Result<bool, StoreError>
    where
        F: FnOnce(&mut SqliteConnection) -> Result<bool, TxError> + Send + 'static,
    {
        let events = events.to_vec();
        run_write(&self.pool, &self.writes, move |conn| {
            write_transaction(conn, |conn| {
                if change(conn)? {
                    finish_change(conn, &events)
                } else {
                    Ok(false)
                }
            })
        })
        .await
    }
}

#[async_trait]
impl SigningKeyStore for SqliteStore {
    /// Ordered by `activates_at`, then `kid`.
    async fn list_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let rows: Vec<SigningKeyRow> = run(&self.pool, |conn| {
            signing_keys::table
                .select(SigningKeyRow::as_select())
                .order((signing_keys::activates_at, signing_keys::kid))
                .load(conn)
                .map_err(from_diesel)
        })
        .await?;
        rows.into_iter().map(SigningKeyRecord::try_from).collect()
    }

    /// A key whose `kid` is already stored is [`StoreError::Duplicate`].
    async fn insert_key(
        &self,
        key: &SigningKeyRecord,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let row = SigningKeyRow::from(key);
        self.change_keys(events, move |conn| {
            let successor = signing_keys::table
                .filter(signing_keys::revoked_at.is_null())
                .into_boxed();
            let successor = match &row.succeeds {
                Some(kid) => successor.filter(signing_keys::succeeds.eq(kid)),
                None => successor.filter(signing_keys::succeeds.is_null()),
            };
            let taken: i64 = successor.count().get_result(conn)?;
            if taken > 0 {
                return Ok(false);
            }
            diesel::insert_into(signing_keys::table)
                .values(&row)
                .execute(conn)?;
            Ok(true)
        })
        .await
    }

    async fn activate_early(
        &self,
        kid: &str,
        at: DateTime<Utc>,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let kid = kid.to_owned();
        let at = millis(at);
        self.change_keys(events, move |conn| {
            let updated = diesel::update(
                signing_keys::table
                    .filter(signing_keys::kid.eq(&kid))
                    .filter(signing_keys::revoked_at.is_null())
                    .filter(signing_keys::activates_at.gt(at)),
            )
            .set(signing_keys::activates_at.eq(at))
            .execute(conn)?;
            Ok(updated > 0)
        })
        .await
    }

    async fn revoke_key(
        &self,
        kid: &str,
        at: DateTime<Utc>,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let kid = kid.to_owned();
        let at = millis(at);
        self.change_keys(events, move |conn| {
            let updated = diesel::update(
                signing_keys::table
                    .filter(signing_keys::kid.eq(&kid))
                    .filter(signing_keys::revoked_at.is_null()),
            )
            .set(signing_keys::revoked_at.eq(at))
            .execute(conn)?;
            Ok(updated > 0)
        })
        .await
    }

    async fn record_activation(
        &self,
        kid: &str,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let kid = kid.to_owned();
        self.change_keys(events, move |conn| {
            let updated = diesel::update(
                signing_keys::table
                    .filter(signing_keys::kid.eq(&kid))
                    .filter(signing_keys::activation_recorded.eq(false)),
            )
            .set(signing_keys::activation_recorded.eq(true))
            .execute(conn)?;
            Ok(updated > 0)
        })
        .await
    }

    /// Each replacement is a compare-and-swap on the stored text; the first
    /// that finds something else rolls all of them back.
    async fn replace_private_keys(
        &self,
        replacements: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        if replacements.is_empty() {
            return Ok(());
        }
        let replacements = replacements.to_vec();
        self.change_keys(&[], move |conn| {
            for (kid, current, replacement) in &replacements {
                let updated = diesel::update(
                    signing_keys::table
                        .filter(signing_keys::kid.eq(kid))
                        .filter(signing_keys::private_key.eq(current)),
                )
                .set(signing_keys::private_key.eq(replacement))
                .execute(conn)?;
                if updated == 0 {
                    return Err(StoreError::NotFound.into());
                }
            }
            Ok(true)
        })
        .await?;
        // The WAL still holds the pages as they were before; copying them
        // into the file and truncating the log leaves no plain key behind.
        let checkpoint = run_write(&self.pool, &self.writes, |conn| {
            diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(conn)
                .map_err(from_diesel)
        })
        .await;
        if let Err(e) = checkpoint {
            tracing::warn!(error = %e, "cannot checkpoint the WAL after replacing private keys; their previous form stays in it until the next checkpoint");
        }
        Ok(())
    }

    async fn key_set_version(&self) -> Result<u64, StoreError> {
        let version: i64 = run(&self.pool, |conn| {
            key_set_version::table
                .select(key_set_version::version)
                .first(conn)
                .map_err(from_diesel)
        })
        .await?;
        u64::try_from(version).map_err(|e| corrupt_row("key_set_version", 1, e))
    }

    async fn acknowledge_key_set(
        &self,
        node: &str,
        version: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let node = node.to_owned();
        let version = i64::try_from(version)
            .map_err(|e| StoreError::Unknown(anyhow::anyhow!("key-set version {version}: {e}")))?;
        let at = millis(at);
        run_write(&self.pool, &self.writes, move |conn| {
            diesel::insert_into(key_set_nodes::table)
                .values((
                    key_set_nodes::node.eq(&node),
                    key_set_nodes::version.eq(version),
                    key_set_nodes::seen_at.eq(at),
                ))
                .on_conflict(key_set_nodes::node)
                .do_update()
                .set((
                    key_set_nodes::version.eq(excluded(key_set_nodes::version)),
                    key_set_nodes::seen_at.eq(excluded(key_set_nodes::seen_at)),
                ))
                .execute(conn)
                .map(drop)
                .map_err(from_diesel)
        })
        .await
    }

    /// Ordered by node.
    async fn key_set_acknowledgements(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let since = at_or_after(since);
        let rows: Vec<(String, i64)> = run(&self.pool, move |conn| {
            key_set_nodes::table
                .filter(key_set_nodes::seen_at.ge(since))
                .select((key_set_nodes::node, key_set_nodes::version))
                .order(key_set_nodes::node)
                .load(conn)
                .map_err(from_diesel)
        })
        .await?;
        rows.into_iter()
            .map(|(node, version)| {
                let version =
                    u64::try_from(version).map_err(|e| corrupt_row("key_set_nodes", &node, e))?;
                Ok((node, version))
            })
            .collect()
    }
}
