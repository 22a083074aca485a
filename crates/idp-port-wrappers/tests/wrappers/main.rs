//! The wrappers of ports: the authentication cache's rules with mocked stores
//! (`auth_cache`), the store contract suite passed through it in front of a
//! real SQLite store (`cached_store`), and the revocation mirror with mocked
//! ports (`revocation_mirror`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod auth_cache;
mod cached_store;
mod revocation_mirror;
