//! Integration tests of the SQLite store. Every test opens its own database
//! file in its own temporary directory, removed at the end.
//!
//! * `chain`: the audit hash chain and the signing keys on SQLite (backfill,
//!   tamper detection, triggers, concurrent writers).
//! * `contract`: the shared store contract suite of `idp-port-tests`.
//! * `sqlite`: what only this adapter promises (triggers, migrations, restart
//!   safety, the data directory lock, several processes on one file).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod chain;
mod contract;
mod sqlite;

use std::sync::Arc;

use idp_domain::ports::{
    AgentRepository, AuditLog, CredentialRepository, RevokedTokenStore, SigningKeyStore,
};
use idp_store_sqlite::testing::TestDataDir;
use idp_store_sqlite::{SqliteConfig, SqliteStore};

/// A test's own data directory and a store over its database.
#[derive(Debug)]
pub struct Harness {
    pub store: SqliteStore,
    pub dir: TestDataDir,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(SqliteConfig::with_pool_size(4)).await
    }

    pub async fn start_with(config: SqliteConfig) -> Self {
        let dir = TestDataDir::create().expect("test data directory");
        let store = dir.open(config).await.expect("open the store");
        Self { store, dir }
    }

    pub fn agents(&self) -> Arc<dyn AgentRepository> {
        Arc::new(self.store.clone())
    }

    pub fn credentials(&self) -> Arc<dyn CredentialRepository> {
        Arc::new(self.store.clone())
    }

    pub fn audit(&self) -> Arc<dyn AuditLog> {
        Arc::new(self.store.clone())
    }

    pub fn revoked_tokens(&self) -> Arc<dyn RevokedTokenStore> {
        Arc::new(self.store.clone())
    }

    pub fn signing_keys(&self) -> Arc<dyn SigningKeyStore> {
        Arc::new(self.store.clone())
    }

    /// Closes the store, then removes the directory.
    pub fn finish(self) {
        let Self { store, dir } = self;
        drop(store);
        drop(dir);
    }
}
