//! The memory adapters: the shared contract suites of `idp-port-tests`
//! (`contract`), and what this adapter promises beyond them (`adapter`):
//! bounded memory, atomicity on a multi-threaded runtime, state shared by all
//! handles, loading revocations from the durable store. The authentication
//! cache: its rules with mocked stores (`auth_state`), and the store contract
//! suite passed through it in front of a real SQLite store (`cached_store`).
//! The revocation mirror, with mocked ports (`revocation_mirror`).
//!
//! Every test builds its own `MemoryCache`, so tests share nothing and run in
//! parallel.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod adapter;
mod auth_state;
mod cached_store;
mod contract;
mod revocation_mirror;
