//! The documentation in `docs/` and the container files in `docker/`, checked
//! against the code so they cannot drift:
//!
//! * `quick_start`: runs the ```bash blocks of `docs/quick-start.md`, in order,
//!   in one shell session against a freshly started `idp-server` on the
//!   embedded store, and checks what they print.
//! * `links`: every link between docs resolves (anchors included), every page
//!   is reachable from `docs/README.md`, every ```bash block is valid bash.
//! * `configuration`: the operate guide's variable table is exactly
//!   `idp_server::config::VARIABLES`, which covers what `idp-server config` prints.
//! * `api_reference`: `docs/api-reference.md` has a section for every operation
//!   of `openapi/openapi.yaml`, listing each of its statuses and error codes,
//!   with a curl example.
//! * `verify_tokens`: the Rust example of the verification guide is this
//!   crate's `verify_token_example.rs`, and it accepts a real token.
//! * `embed_the_domain`: the embedding guide shows `examples/embedded-registry`
//!   verbatim, and the built example prints what the guide shows; no page or
//!   manifest points at a repository address that does not exist.
//! * `containers`: `docker/compose.yml` parses (serde_yaml_ng and Python's
//!   PyYAML) and has the shape the operate guide describes; the image's
//!   healthcheck script answers for a live server.
//! * `agents_without_secrets`: the keys-instead-of-secrets guide shows its
//!   Python script and `examples/agent-without-secrets` verbatim, and both get
//!   a DPoP-bound token with a `private_key_jwt` assertion from a live server
//!   and read their agent with it, before and after a key rotation (needs
//!   `cargo build -p agent-without-secrets`, or `AGENT_WITHOUT_SECRETS_BIN`).
//! * `delegation`: the delegation guide shows its three-agent walk-through
//!   verbatim, and the script prints what the guide shows against a live
//!   server (token exchange, the `act` chain, refusals, the cascade).
//! * `mcp_and_a2a`: the MCP and A2A guide shows its two scripts verbatim; the
//!   MCP protected resource takes AgentIdP tokens for its own URL only, and
//!   the A2A peer follows an Agent Card to AgentIdP and checks the signed card.
//!
//! Needs the server binary (`cargo build -p idp-server`, or `IDP_SERVER_BIN`),
//! the example's (`cargo build -p embedded-registry`, or `EMBEDDED_REGISTRY_BIN`),
//! `bash`, `curl`, `jq` and `python3` with PyYAML; no PostgreSQL or Redis.

#![expect(
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed assumption must fail the test loudly"
)]

mod agents_without_secrets;
mod api_reference;
mod audit_chain_script;
mod configuration;
mod containers;
mod delegation;
mod embed_the_domain;
mod links;
mod markdown;
mod mcp_and_a2a;
mod quick_start;
mod server;
mod verify_token_example;
mod verify_tokens;

use std::path::{Path, PathBuf};

/// The repository's root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The text of a file of the repository, by its path from the root.
pub fn read_repo_file(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
