//! Contract test suites for the ports of `idp-domain`.
//!
//! Each suite is a set of `pub async fn` taking the adapter under test as
//! `Arc<dyn Port>`; every adapter crate calls them from its own tests, so all
//! adapters of a port are held to one contract. Test code: panics are the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cache;
pub mod store;
