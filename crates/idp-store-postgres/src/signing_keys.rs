//! [`SigningKeyStore`] on `signing_keys`.

use async_trait::async_trait;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use idp_domain::StoreError;
use idp_domain::ports::{SigningKeyStore, StoredSigningKey};

use crate::PgStore;
use crate::error::from_diesel;
use crate::pool::checkout;
use crate::schema::signing_keys;

#[async_trait]
impl SigningKeyStore for PgStore {
    /// `INSERT ... ON CONFLICT DO NOTHING` then a read: of several nodes racing,
    /// exactly one insert wins and every node reads the winner's key.
    async fn get_or_insert(
        &self,
        candidate: &StoredSigningKey,
    ) -> Result<StoredSigningKey, StoreError> {
        let mut conn = checkout(&self.pool).await?;
        diesel::insert_into(signing_keys::table)
            .values((
                signing_keys::algorithm.eq(&candidate.algorithm),
                signing_keys::kid.eq(&candidate.kid),
                signing_keys::private_pem.eq(&candidate.private_pem),
            ))
            .on_conflict(signing_keys::algorithm)
            .do_nothing()
            .execute(&mut conn)
            .await
            .map_err(from_diesel)?;
        let (kid, algorithm, private_pem): (String, String, String) = signing_keys::table
            .filter(signing_keys::algorithm.eq(&candidate.algorithm))
            .select((
                signing_keys::kid,
                signing_keys::algorithm,
                signing_keys::private_pem,
            ))
            .first(&mut conn)
            .await
            .map_err(from_diesel)?;
        Ok(StoredSigningKey {
            kid,
            algorithm,
            private_pem,
        })
    }
}
