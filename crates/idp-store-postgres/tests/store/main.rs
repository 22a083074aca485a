//! Integration tests of the PostgreSQL store against a real server
//! (`IDP_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//! Every test gets a database of its own, cloned from a migrated template.
//!
//! * `contract`: the shared store contract suite of `idp-port-tests`.
//! * `postgres`: what only this adapter promises (triggers, migrations, pool).
//! * `chain`: the audit chain across pools, the chain backfill of the
//!   migration, the serving role's privileges, tamper detection.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod chain;
mod contract;
mod postgres;

use std::sync::Arc;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use idp_domain::ports::{
    AgentRepository, AuditLog, CredentialRepository, RevokedTokenStore, SigningKeyStore,
};
use idp_store_postgres::testing::TestDatabase;
use idp_store_postgres::{PgStore, connect};

/// A connection of its own to `url`, outside any pool.
pub async fn raw_connection(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url)
        .await
        .expect("raw connection")
}

/// Runs `statement`; a failure fails the test, naming the statement.
pub async fn sql(conn: &mut AsyncPgConnection, statement: &str) {
    diesel::sql_query(statement)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// A test's own database and a store over it.
#[derive(Debug)]
pub struct Harness {
    pub store: PgStore,
    pub db: TestDatabase,
}

impl Harness {
    pub async fn start() -> Self {
        let db = TestDatabase::create().await.expect("test database");
        let store = PgStore::new(connect(&db.url, 8).await.expect("pool"));
        Self { store, db }
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

    pub async fn finish(self) {
        drop(self.store);
        self.db.drop_db().await;
    }
}
