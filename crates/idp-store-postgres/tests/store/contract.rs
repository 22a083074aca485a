//! The store contract suite, run against PostgreSQL: every function of
//! `idp_port_tests::store`, each on a database of its own.

use crate::Harness;

idp_port_tests::store_contract_tests! {
    start: Harness::start().await,
    finish: |harness| harness.finish().await,
}
