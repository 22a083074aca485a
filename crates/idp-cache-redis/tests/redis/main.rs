//! The Redis adapters against a real Redis: `IDP_TEST_REDIS_URL`, by default
//! `redis://127.0.0.1:6379`. Each test works under its own random key prefix
//! and deletes its keys at the end (every key also expires on its own, but
//! for the replay guard's `since` marker, which must outlive every entry: a
//! failed replay test leaves that one key behind), so tests run in parallel
//! against a shared Redis and never flush it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a panic is a failed test"
)]

mod adapter;
mod changes;
mod contract;
mod replay;
mod support;
