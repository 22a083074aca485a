//! [`RevokedTokenStore`] on `revoked_tokens`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::ports::{RevokedToken, RevokedTokenStore};
use idp_domain::values::{Owner, TokenId};

use crate::SqliteStore;
use crate::chain::append_chained;
use crate::columns::{after, instant, millis, parse_uuid, uuid_text};
use crate::error::{corrupt_row, from_diesel};
use crate::pool::{run, run_write, write_transaction};
use crate::schema::revoked_tokens;

#[async_trait]
impl RevokedTokenStore for SqliteStore {
    /// `revoked_at` is the event's timestamp: the time the program decided.
    async fn revoke(
        &self,
        owner: &Owner,
        token: &RevokedToken,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let event_row = event.clone();
        let owner = owner.as_str().to_owned();
        let jti = uuid_text(token.token_id.0);
        let expires_at = millis(token.expires_at);
        let revoked_at = millis(event.timestamp);
        run_write(&self.pool, &self.writes, move |conn| {
            write_transaction(conn, |conn| {
                let inserted = diesel::insert_into(revoked_tokens::table)
                    .values((
                        revoked_tokens::jti.eq(&jti),
                        revoked_tokens::owner.eq(&owner),
                        revoked_tokens::expires_at.eq(expires_at),
                        revoked_tokens::revoked_at.eq(revoked_at),
                    ))
                    .on_conflict(revoked_tokens::jti)
                    .do_nothing()
                    .execute(conn)?;
                if inserted == 0 {
                    return Ok(false);
                }
                append_chained(conn, std::slice::from_ref(&event_row))?;
                Ok(true)
            })
        })
        .await
    }

    async fn unexpired(&self, now: DateTime<Utc>) -> Result<Vec<RevokedToken>, StoreError> {
        let now = after(now);
        let rows: Vec<(String, i64)> = run(&self.pool, move |conn| {
            revoked_tokens::table
                .filter(revoked_tokens::expires_at.gt(now))
                .select((revoked_tokens::jti, revoked_tokens::expires_at))
                .load(conn)
                .map_err(from_diesel)
        })
        .await?;
        rows.into_iter()
            .map(|(jti, expires_at)| {
                let bad = |e: &dyn std::fmt::Display| corrupt_row("revoked_tokens", &jti, e);
                Ok(RevokedToken {
                    token_id: TokenId(parse_uuid(&jti).map_err(|e| bad(&e))?),
                    expires_at: instant(expires_at)
                        .ok_or_else(|| bad(&format!("expires_at {expires_at} out of range")))?,
                })
            })
            .collect()
    }
}
