//! `/readyz`: whether the database answers.

use async_trait::async_trait;
use idp_domain::StoreError;
use idp_domain::ports::HealthCheck;

use crate::SqliteStore;
use crate::pool::ping;

#[async_trait]
impl HealthCheck for SqliteStore {
    fn name(&self) -> &'static str {
        "database"
    }

    /// Checks out a connection (bounded by the pool's timeouts) and reads the
    /// schema table, so the file is there and readable.
    async fn check(&self) -> Result<(), StoreError> {
        ping(&self.pool).await
    }
}
