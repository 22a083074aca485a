//! End-to-end tests of AgentIdP: each test starts the real `idp-server` binary
//! on port 0 with a PostgreSQL database and a Redis key prefix of its own, and
//! walks the HTTP contract (`/work/shared/api-contract.md`) over the wire.
//!
//! Needs PostgreSQL (`IDP_TEST_DATABASE_URL`) and Redis (`IDP_TEST_REDIS_URL`),
//! and the server binary built first: `cargo build -p idp-server` (or point
//! `IDP_SERVER_BIN` at one).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed assumption must fail the test loudly"
)]

#[macro_use]
mod support;

mod agent_card;
mod agents;
mod audit;
mod audit_chain;
mod browser;
mod client_assertions;
mod concurrency;
mod credentials;
mod delegates;
mod delegation;
mod dpop;
mod faults;
mod gate_paths;
mod interop;
mod introspection;
mod keys;
mod lifecycle;
mod limits;
mod listeners;
mod lockout;
mod malformed;
mod observability;
mod operations;
mod process;
mod resources;
mod restart;
mod token_endpoint;
