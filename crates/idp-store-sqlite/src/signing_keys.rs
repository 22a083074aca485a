//! [`SigningKeyStore`] on `signing_keys`.

use async_trait::async_trait;
use diesel::prelude::*;
use idp_domain::StoreError;
use idp_domain::ports::{SigningKeyStore, StoredSigningKey};

use crate::SqliteStore;
use crate::pool::{run, write_transaction};
use crate::schema::signing_keys;

#[async_trait]
impl SigningKeyStore for SqliteStore {
    /// `INSERT ... ON CONFLICT DO NOTHING` then a read, in one write
    /// transaction: of several callers (or processes) racing, exactly one
    /// insert wins and every caller reads the winner's key.
    async fn get_or_insert(
        &self,
        candidate: &StoredSigningKey,
    ) -> Result<StoredSigningKey, StoreError> {
        let candidate = candidate.clone();
        run(&self.pool, move |conn| {
            write_transaction(conn, |conn| {
                diesel::insert_into(signing_keys::table)
                    .values((
                        signing_keys::algorithm.eq(&candidate.algorithm),
                        signing_keys::kid.eq(&candidate.kid),
                        signing_keys::private_pem.eq(&candidate.private_pem),
                    ))
                    .on_conflict(signing_keys::algorithm)
                    .do_nothing()
                    .execute(conn)?;
                let (kid, algorithm, private_pem) = signing_keys::table
                    .filter(signing_keys::algorithm.eq(&candidate.algorithm))
                    .select((
                        signing_keys::kid,
                        signing_keys::algorithm,
                        signing_keys::private_pem,
                    ))
                    .first::<(String, String, String)>(conn)?;
                Ok(StoredSigningKey {
                    kid,
                    algorithm,
                    private_pem,
                })
            })
        })
        .await
    }
}
