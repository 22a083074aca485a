//! The end-to-end harness: the real `idp-server` binary, stores of its own
//! per test (PostgreSQL + Redis, or the embedded store), and HTTP helpers.

#[macro_use]
mod deployment;

mod app;
pub mod client_keys;
pub mod dpop_proofs;
mod http;
pub mod jwt;
pub mod load;
mod openapi;
mod private_services;
mod process;
mod redis;

pub use app::{
    AgentClient, MANAGEMENT_SCOPES, TestApp, TestAppBuilder, agent_body, client_from_credential,
};
pub use deployment::Deployment;
pub use http::{Exchange, Reply, raw_exchange};
pub use private_services::{PrivatePostgres, PrivateRedis};
pub use process::{run_to_completion, server_command};

/// The wall clock. The server reads the same one, and some rules (an
/// `expiresAt` in the future, a rate-limit reset in the next minute) are
/// stated against it.
#[expect(
    clippy::disallowed_methods,
    reason = "the server under test runs on the real clock; tests must compare against it"
)]
pub fn wall_clock() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Whether `raw` is an RFC 3339 UTC timestamp with at least millisecond
/// precision, as the contract's conventions require.
pub fn is_contract_timestamp(raw: &serde_json::Value) -> bool {
    let Some(raw) = raw.as_str() else {
        return false;
    };
    let Some(fraction) = raw.strip_suffix('Z').and_then(|r| r.split_once('.')) else {
        return false;
    };
    chrono::DateTime::parse_from_rfc3339(raw).is_ok()
        && fraction.1.len() >= 3
        && fraction.1.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `raw` is a UUID string.
pub fn is_uuid(raw: &serde_json::Value) -> bool {
    raw.as_str()
        .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
}

/// The sorted keys of a JSON object.
pub fn keys(value: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// Sorted owned strings, for comparing key sets.
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    names.sort();
    names
}
mod tamper;
pub use tamper::{
    RawStore, assert_chain, audit_command, chain_hash, export as audit_export, get_with,
    is_chain_hash, ndjson, psql_command, run_blocking, verify as audit_verify,
};
mod operator;
pub use operator::{
    TempFile, TwoFreshNodes, bind_address, env_with, http_client, jwks_kids, jwks_of, jwks_reply,
    key_list, key_named, keys_command, keys_ok, kids_in_state, metadata_of, only_kid_in_state,
    parse_stdout, serve_exits_with, start_server, system_events,
};
