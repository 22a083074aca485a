//! `/readyz`: whether the database answers.

use async_trait::async_trait;
use idp_domain::StoreError;
use idp_domain::ports::HealthCheck;

use crate::PgStore;
use crate::pool::ping;

#[async_trait]
impl HealthCheck for PgStore {
    fn name(&self) -> &'static str {
        "database"
    }

    /// Checks out a connection (bounded by the pool's timeouts) and runs `SELECT 1`.
    async fn check(&self) -> Result<(), StoreError> {
        ping(&self.pool).await
    }
}
