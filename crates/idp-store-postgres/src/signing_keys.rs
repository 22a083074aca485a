//! [`SigningKeyStore`] on `signing_keys`, `key_set_version` and
//! `key_set_nodes`.
//!
//! Every change of the keys runs in one transaction that also appends its
//! audit events (chained, as every append) and counts one more key-set
//! version, so a node that sees the version move knows to reload.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable, Text, Timestamptz};
use diesel::upsert::excluded;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::keys::SigningKeyRecord;
use idp_domain::ports::SigningKeyStore;

use crate::PgStore;
use crate::audit::insert_events;
use crate::error::{TxError, corrupt_row, from_diesel};
use crate::pool::checkout;
use crate::rows::SigningKeyRow;
use crate::schema::{key_set_nodes, key_set_version, signing_keys};

/// Appends `events` and counts one more key-set version: what every change
/// of the keys does before it commits.
async fn record_change(conn: &mut AsyncPgConnection, events: &[AuditEvent]) -> QueryResult<()> {
    insert_events(conn, events).await?;
    diesel::update(key_set_version::table)
        .set(key_set_version::version.eq(key_set_version::version + 1_i64))
        .execute(conn)
        .await?;
    Ok(())
}

/// The partial unique index `signing_keys_one_live_successor` as the
/// conflict target: a second live key with the same `succeeds` (`NULL` as
/// `''`) is not inserted, and a racing insert waits for the first one's
/// transaction, then does nothing.
const INSERT_KEY: &str = "INSERT INTO signing_keys \
     (kid, algorithm, private_key, succeeds, created_at, activates_at, revoked_at, activation_recorded) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT ((coalesce(succeeds, ''))) WHERE revoked_at IS NULL DO NOTHING";

#[async_trait]
impl SigningKeyStore for PgStore {
    async fn list_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let rows: Vec<SigningKeyRow> = signing_keys::table
            .order((signing_keys::activates_at.asc(), signing_keys::kid.asc()))
            .select(SigningKeyRow::as_select())
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn insert_key(
        &self,
        key: &SigningKeyRecord,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let inserted = conn
            .transaction(async |conn| {
                let inserted = diesel::sql_query(INSERT_KEY)
                    .bind::<Text, _>(&key.kid)
                    .bind::<Text, _>(&key.algorithm)
                    .bind::<Text, _>(&key.private_key)
                    .bind::<Nullable<Text>, _>(key.succeeds.as_deref())
                    .bind::<Timestamptz, _>(key.created_at)
                    .bind::<Timestamptz, _>(key.activates_at)
                    .bind::<Nullable<Timestamptz>, _>(key.revoked_at)
                    .bind::<Bool, _>(key.activation_recorded)
                    .execute(conn)
                    .await?;
                if inserted == 0 {
                    return Ok::<_, TxError>(false);
                }
                record_change(conn, events).await?;
                Ok(true)
            })
            .await?;
        Ok(inserted)
    }

    async fn activate_early(
        &self,
        kid: &str,
        at: DateTime<Utc>,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let changed = conn
            .transaction(async |conn| {
                let changed = diesel::update(
                    signing_keys::table
                        .filter(signing_keys::kid.eq(kid))
                        .filter(signing_keys::revoked_at.is_null())
                        .filter(signing_keys::activates_at.gt(at)),
                )
                .set(signing_keys::activates_at.eq(at))
                .execute(conn)
                .await?;
                if changed == 0 {
                    return Ok::<_, TxError>(false);
                }
                record_change(conn, events).await?;
                Ok(true)
            })
            .await?;
        Ok(changed)
    }

    async fn revoke_key(
        &self,
        kid: &str,
        at: DateTime<Utc>,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let changed = conn
            .transaction(async |conn| {
                let changed = diesel::update(
                    signing_keys::table
                        .filter(signing_keys::kid.eq(kid))
                        .filter(signing_keys::revoked_at.is_null()),
                )
                .set(signing_keys::revoked_at.eq(at))
                .execute(conn)
                .await?;
                if changed == 0 {
                    return Ok::<_, TxError>(false);
                }
                record_change(conn, events).await?;
                Ok(true)
            })
            .await?;
        Ok(changed)
    }

    async fn record_activation(
        &self,
        kid: &str,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let changed = conn
            .transaction(async |conn| {
                let changed = diesel::update(
                    signing_keys::table
                        .filter(signing_keys::kid.eq(kid))
                        .filter(signing_keys::activation_recorded.eq(false)),
                )
                .set(signing_keys::activation_recorded.eq(true))
                .execute(conn)
                .await?;
                if changed == 0 {
                    return Ok::<_, TxError>(false);
                }
                record_change(conn, events).await?;
                Ok(true)
            })
            .await?;
        Ok(changed)
    }

    /// Each replacement is a compare-and-swap on the stored value; the first
    /// that finds something else rolls every one back.
    async fn replace_private_keys(
        &self,
        replacements: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        if replacements.is_empty() {
            return Ok(());
        }
        let mut conn = checkout(&self.pool).await?;
        conn.transaction(async |conn| {
            for (kid, stored, replacement) in replacements {
                let changed = diesel::update(
                    signing_keys::table
                        .filter(signing_keys::kid.eq(kid))
                        .filter(signing_keys::private_key.eq(stored)),
                )
                .set(signing_keys::private_key.eq(replacement))
                .execute(conn)
                .await?;
                if changed == 0 {
                    return Err(TxError::Refused(StoreError::NotFound));
                }
            }
            record_change(conn, &[]).await?;
            Ok::<_, TxError>(())
        })
        .await?;
        Ok(())
    }

    async fn key_set_version(&self) -> Result<u64, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let version: i64 = key_set_version::table
            .select(key_set_version::version)
            .first(&mut conn)
            .await
            .map_err(from_diesel)?;
        u64::try_from(version).map_err(|e| corrupt_row("key_set_version", version, e))
    }

    async fn acknowledge_key_set(
        &self,
        node: &str,
        version: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let version = i64::try_from(version)
            .map_err(|e| StoreError::Unknown(anyhow::anyhow!("key-set version {version}: {e}")))?;
        let mut conn = checkout(&self.pool).await?;
        diesel::insert_into(key_set_nodes::table)
            .values((
                key_set_nodes::node.eq(node),
                key_set_nodes::version.eq(version),
                key_set_nodes::seen_at.eq(at),
            ))
            .on_conflict(key_set_nodes::node)
            .do_update()
            .set((
                key_set_nodes::version.eq(excluded(key_set_nodes::version)),
                key_set_nodes::seen_at.eq(excluded(key_set_nodes::seen_at)),
            ))
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(())
    }

    async fn key_set_acknowledgements(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let rows: Vec<(String, i64)> = key_set_nodes::table
            .filter(key_set_nodes::seen_at.ge(since))
            .order(key_set_nodes::node.asc())
            .select((key_set_nodes::node, key_set_nodes::version))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        rows.into_iter()
            .map(|(node, version)| {
                let version =
                    u64::try_from(version).map_err(|e| corrupt_row("key_set_nodes", &node, e))?;
                Ok((node, version))
            })
            .collect()
    }
}
