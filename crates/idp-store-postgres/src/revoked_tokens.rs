//! [`RevokedTokenStore`] on `revoked_tokens`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::ports::{RevokedToken, RevokedTokenStore};
use idp_domain::values::{Owner, TokenId};
use uuid::Uuid;

use crate::PgStore;
use crate::audit::insert_event;
use crate::error::{TxError, from_diesel};
use crate::pool::checkout;
use crate::schema::revoked_tokens;

#[async_trait]
impl RevokedTokenStore for PgStore {
    /// `revoked_at` is the event's timestamp: the time the program decided.
    async fn revoke(
        &self,
        owner: &Owner,
        token: &RevokedToken,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let revoked = conn
            .transaction(async |conn| {
                let inserted = diesel::insert_into(revoked_tokens::table)
                    .values((
                        revoked_tokens::jti.eq(token.token_id.0),
                        revoked_tokens::owner.eq(owner.as_str()),
                        revoked_tokens::expires_at.eq(token.expires_at),
                        revoked_tokens::revoked_at.eq(event.timestamp),
                    ))
                    .on_conflict(revoked_tokens::jti)
                    .do_nothing()
                    .execute(conn)
                    .await?;
                if inserted == 0 {
                    return Ok(false);
                }
                insert_event(conn, event).await?;
                Ok::<_, TxError>(true)
            })
            .await?;
        Ok(revoked)
    }

    async fn unexpired(&self, now: DateTime<Utc>) -> Result<Vec<RevokedToken>, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        let rows: Vec<(Uuid, DateTime<Utc>)> = revoked_tokens::table
            .filter(revoked_tokens::expires_at.gt(now))
            .select((revoked_tokens::jti, revoked_tokens::expires_at))
            .load(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(rows
            .into_iter()
            .map(|(jti, expires_at)| RevokedToken {
                token_id: TokenId(jti),
                expires_at,
            })
            .collect())
    }
}
