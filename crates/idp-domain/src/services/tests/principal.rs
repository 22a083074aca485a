//! `Principal::require_scope`: the HTTP layer's first check.

use super::fixtures::*;
use crate::DomainError;

#[test]
fn require_scope_accepts_a_held_scope() {
    let principal = caller(&["agents:read", "audit:read"]);

    assert!(principal.require_scope("agents:read").is_ok());
    assert!(principal.require_scope("audit:read").is_ok());
}

#[test]
fn require_scope_names_the_missing_scope() {
    let err = caller(&["agents:read"])
        .require_scope("agents:write")
        .unwrap_err();

    assert!(
        matches!(err, DomainError::InsufficientScope("agents:write")),
        "{err:?}"
    );
}

#[test]
fn require_scope_matches_whole_scopes_only() {
    let principal = caller(&["agents:read", "files:*", "audit"]);

    for not_held in [
        "agents",
        "agents:write",
        "agents:read:x",
        "AGENTS:READ",
        "files:write",
        "audit:read",
        "",
    ] {
        assert!(principal.require_scope(not_held).is_err(), "{not_held:?}");
    }
}

#[test]
fn require_scope_refuses_everything_without_scopes() {
    let principal = caller(&[]);

    for scope in [
        "agents:read",
        "agents:write",
        "audit:read",
        "tokens:introspect",
    ] {
        assert!(
            matches!(
                principal.require_scope(scope),
                Err(DomainError::InsufficientScope(s)) if s == scope
            ),
            "{scope}"
        );
    }
}
