//! The memory adapters: the shared contract suites of `idp-port-tests`
//! (`contract`), and what this adapter promises beyond them (`adapter`):
//! bounded memory, atomicity on a multi-threaded runtime, state shared by all
//! handles, loading revocations from the durable store; and the replay
//! guard's own promises (`replay`).
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
mod contract;
mod replay;
