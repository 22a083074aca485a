//! The store contract suite, run against SQLite: every function of
//! `idp_port_tests::store`, each on a fresh database.

use crate::Harness;

idp_port_tests::store_contract_tests! {
    start: Harness::start().await,
    finish: |harness| harness.finish(),
}
