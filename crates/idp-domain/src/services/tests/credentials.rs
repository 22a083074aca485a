//! `CredentialService`: generation, listing, rotation and revocation.

use std::sync::Arc;

use chrono::Duration;
use serde_json::json;

use super::fixtures::*;
use crate::audit::AuditEvent;
use crate::entities::{Agent, Credential, CredentialKey, CredentialType, CredentialView};
use crate::page::{Page, PageRequest};
use crate::ports::{
    JwsError, MockAgentRepository, MockCredentialRepository, MockJwsVerifier, MockSecretGenerator,
    MockSecretHasher,
};
use crate::services::{CredentialService, Limits, NewKey};
use crate::values::{
    AgentStatus, AuditAction, CredentialId, CredentialStatus, EventId, Outcome, PublicKeyJwk,
};
use crate::{DomainError, StoreError};

/// The ports of the credential service as mocks.
struct Mocks {
    agents: MockAgentRepository,
    credentials: MockCredentialRepository,
    hasher: MockSecretHasher,
    secrets: MockSecretGenerator,
    verifier: MockJwsVerifier,
}

impl Mocks {
    fn new() -> Self {
        Self {
            agents: MockAgentRepository::new(),
            credentials: MockCredentialRepository::new(),
            hasher: MockSecretHasher::new(),
            secrets: MockSecretGenerator::new(),
            verifier: MockJwsVerifier::new(),
        }
    }

    fn build(self) -> CredentialService {
        self.build_with(limits())
    }

    fn build_with(self, limits: Limits) -> CredentialService {
        CredentialService::new(
            Arc::new(self.agents),
            Arc::new(self.credentials),
            Arc::new(self.hasher),
            Arc::new(self.secrets),
            Arc::new(self.verifier),
            ambient(),
            limits,
        )
    }

    /// The agent store finds `agent` for the caller's owner, once.
    fn agent_is(&mut self, agent: Option<Agent>) {
        self.agents
            .expect_find()
            .withf(|o, id| *o == owner() && *id == TARGET)
            .times(1)
            .returning(move |_, _| Ok(agent.clone()));
    }

    /// The credential store finds `credential` for the caller's owner, once.
    fn credential_is(&mut self, credential: Option<Credential>) {
        self.credentials
            .expect_find()
            .withf(|o, agent, id| *o == owner() && *agent == TARGET && *id == CREDENTIAL)
            .times(1)
            .returning(move |_, _, _| Ok(credential.clone()));
    }

    /// One new secret is generated and hashed.
    fn new_secret_is_hashed(&mut self) {
        self.secrets
            .expect_generate()
            .times(1)
            .returning(|| secret(NEW_SECRET));
        self.hasher
            .expect_hash()
            .withf(|s| s.expose() == NEW_SECRET)
            .times(1)
            .returning(|_| Ok(new_hash()));
    }

    /// No secret is generated or hashed.
    fn no_secret(&mut self) {
        self.secrets.expect_generate().never();
        self.hasher.expect_hash().never();
    }
}

/// A writer that also holds `agents:read`, the one management scope of
/// [`active_agent`], so acting on its credentials escalates nothing.
fn writer() -> crate::token::Principal {
    caller(&["agents:read", "agents:write"])
}

/// A writer holding no other management scope.
fn writer_only() -> crate::token::Principal {
    caller(&["agents:write"])
}

/// An active agent holding management scopes beyond [`writer_only`]'s.
fn privileged_agent(status: AgentStatus) -> Agent {
    agent(
        status,
        &[
            "resume:read",
            "agents:write",
            "audit:read",
            "tokens:introspect",
        ],
    )
}

/// The refusal names the scopes the caller lacks, and only those.
fn assert_escalation_refused(err: &DomainError) {
    match err {
        DomainError::Authorization(reason) => {
            assert!(
                reason.contains("audit:read") && reason.contains("tokens:introspect"),
                "missing scope not named: {reason}"
            );
            assert!(
                !reason.contains("agents:write"),
                "held scope named: {reason}"
            );
            assert!(
                !reason.contains("resume:read"),
                "ordinary scope named: {reason}"
            );
        }
        other => panic!("expected Authorization, got {other:?}"),
    }
}

// ----- generate ----------------------------------------------------------------

#[tokio::test]
async fn generate_refuses_an_expiry_in_the_past_or_now_before_any_store_call() {
    for expires_at in [
        now() - Duration::days(1),
        now() - Duration::milliseconds(1),
        now(),
    ] {
        let mut m = Mocks::new();
        m.agents.expect_find().never();
        m.credentials.expect_create().never();
        m.no_secret();

        let err = m
            .build()
            .generate(
                &writer(),
                TARGET,
                NewKey::Secret,
                Some(expires_at),
                &ctx_of(&writer()),
            )
            .await
            .unwrap_err();

        match err {
            DomainError::Validation(e) => assert_eq!(e.field, "expiresAt"),
            other => panic!("{expires_at}: expected Validation, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn generate_for_a_missing_agent_is_agent_not_found_without_hashing() {
    let mut m = Mocks::new();
    m.agent_is(None);
    m.no_secret();
    m.credentials.expect_create().never();

    let err = m
        .build()
        .generate(&writer(), TARGET, NewKey::Secret, None, &ctx_of(&writer()))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn generate_for_an_inactive_agent_is_agent_not_active_without_hashing() {
    for status in [AgentStatus::Suspended, AgentStatus::Decommissioned] {
        let mut m = Mocks::new();
        m.agent_is(Some(agent(status, &["resume:read"])));
        m.no_secret();
        m.credentials.expect_create().never();

        let err = m
            .build()
            .generate(&writer(), TARGET, NewKey::Secret, None, &ctx_of(&writer()))
            .await
            .unwrap_err();

        assert!(
            matches!(err, DomainError::AgentNotActive),
            "{status}: {err:?}"
        );
    }
}

#[tokio::test]
async fn generate_for_a_more_privileged_agent_is_authorization_error_without_hashing() {
    // A credential hands over every capability of its agent: taking one of an
    // agent holding audit:read would grant the caller audit:read.
    let mut m = Mocks::new();
    m.agent_is(Some(privileged_agent(AgentStatus::Active)));
    m.no_secret();
    m.credentials.expect_create().never();

    let err = m
        .build()
        .generate(
            &writer_only(),
            TARGET,
            NewKey::Secret,
            None,
            &ctx_of(&writer_only()),
        )
        .await
        .unwrap_err();

    assert_escalation_refused(&err);
}

#[tokio::test]
async fn generate_checks_escalation_before_the_agents_state() {
    // Contract section 1: authorization (403) comes before state (409).
    let mut m = Mocks::new();
    m.agent_is(Some(privileged_agent(AgentStatus::Suspended)));
    m.no_secret();
    m.credentials.expect_create().never();

    let err = m
        .build()
        .generate(
            &writer_only(),
            TARGET,
            NewKey::Secret,
            None,
            &ctx_of(&writer_only()),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Authorization(_)), "{err:?}");
}

#[tokio::test]
async fn generate_lets_a_writer_take_an_agent_with_ordinary_capabilities_only() {
    let mut m = Mocks::new();
    m.agent_is(Some(agent(
        AgentStatus::Active,
        &["resume:read", "files:write"],
    )));
    m.new_secret_is_hashed();
    m.credentials
        .expect_create()
        .times(1)
        .returning(|_, _, _, _| Ok(()));

    m.build()
        .generate(
            &writer_only(),
            TARGET,
            NewKey::Secret,
            None,
            &ctx_of(&writer_only()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn generate_lets_a_caller_holding_every_management_scope_of_the_agent() {
    let caller = caller(&["agents:write", "audit:read", "tokens:introspect"]);
    let mut m = Mocks::new();
    m.agent_is(Some(privileged_agent(AgentStatus::Active)));
    m.new_secret_is_hashed();
    m.credentials
        .expect_create()
        .times(1)
        .returning(|_, _, _, _| Ok(()));

    m.build()
        .generate(&caller, TARGET, NewKey::Secret, None, &ctx_of(&caller))
        .await
        .unwrap();
}

#[tokio::test]
async fn generate_stores_the_hash_and_returns_the_secret_once() {
    let caller = writer();
    let ctx = ctx_of(&caller);
    let expires_at = now() + Duration::days(30);
    let credential_id = CredentialId(generated_id(1));
    let expected_credential = Credential {
        credential_id,
        agent_id: TARGET,
        owner: owner(),
        key: CredentialKey::Secret(new_hash()),
        created_at: now(),
        expires_at: Some(expires_at),
        revoked_at: None,
    };
    let expected_event = AuditEvent {
        event_id: EventId(generated_id(2)),
        owner: Some(owner()),
        agent_id: Some(TARGET),
        actor_id: Some(CALLER),
        action: AuditAction::CredentialGenerated,
        outcome: Outcome::Success,
        ip_address: ctx.ip_address.clone(),
        user_agent: ctx.user_agent.clone(),
        metadata: json!({
            "credentialId": credential_id,
            "type": "secret",
            "expiresAt": "2026-12-22T10:00:00.123Z",
        }),
        timestamp: now(),
        sequence: None,
        hash: None,
    };
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.new_secret_is_hashed();
    let events = Captured::new();
    let seen = events.clone();
    m.credentials
        .expect_create()
        .withf(move |credential, limit, at, event| {
            *credential == expected_credential
                && *limit == 3
                && *at == now()
                && *event == expected_event
        })
        .times(1)
        .returning(move |_, _, _, event| {
            seen.push(event.clone());
            Ok(())
        });

    let issued = m
        .build()
        .generate(&caller, TARGET, NewKey::Secret, Some(expires_at), &ctx)
        .await
        .unwrap();

    assert_eq!(issued.client_secret.as_ref().unwrap().expose(), NEW_SECRET);
    assert_eq!(
        issued.credential,
        CredentialView {
            credential_id,
            client_id: TARGET,
            credential_type: CredentialType::Secret,
            jwk: None,
            jwk_thumbprint: None,
            status: CredentialStatus::Active,
            created_at: now(),
            expires_at: Some(expires_at),
            revoked_at: None,
        }
    );
    let view = serde_json::to_string(&issued.credential).unwrap();
    assert!(!view.contains(NEW_SECRET), "{view}");
    assert!(!view.contains(&new_hash().hash), "{view}");
    let event = event_text(&events.only());
    assert!(!event.contains(NEW_SECRET), "secret in event: {event}");
    assert!(
        !event.contains(&NEW_SECRET[8..]),
        "secret in event: {event}"
    );
    assert!(!event.contains(&new_hash().hash), "hash in event: {event}");
}

#[tokio::test]
async fn generate_without_expiry_writes_a_null_expiry() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.new_secret_is_hashed();
    m.credentials
        .expect_create()
        .withf(|credential, _, _, event| {
            credential.expires_at.is_none()
                && event.metadata["expiresAt"].is_null()
                && is_event(
                    event,
                    AuditAction::CredentialGenerated,
                    Outcome::Success,
                    TARGET,
                    Some(CALLER),
                )
        })
        .times(1)
        .returning(|_, _, _, _| Ok(()));

    let issued = m
        .build()
        .generate(&writer(), TARGET, NewKey::Secret, None, &ctx_of(&writer()))
        .await
        .unwrap();

    assert_eq!(issued.credential.expires_at, None);
}

#[tokio::test]
async fn generate_accepts_an_expiry_one_millisecond_ahead() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.new_secret_is_hashed();
    m.credentials
        .expect_create()
        .times(1)
        .returning(|_, _, _, _| Ok(()));

    m.build()
        .generate(
            &writer(),
            TARGET,
            NewKey::Secret,
            Some(now() + Duration::milliseconds(1)),
            &ctx_of(&writer()),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn generate_passes_the_configured_credential_limit() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.new_secret_is_hashed();
    m.credentials
        .expect_create()
        .withf(|_, limit, _, _| *limit == 9)
        .times(1)
        .returning(|_, _, _, _| Ok(()));

    m.build_with(Limits {
        max_credentials_per_agent: 9,
        ..limits()
    })
    .generate(&writer(), TARGET, NewKey::Secret, None, &ctx_of(&writer()))
    .await
    .unwrap();
}

#[tokio::test]
async fn generate_maps_the_stores_answers() {
    type Check = fn(&DomainError) -> bool;
    let cases: [(fn() -> StoreError, Check); 4] = [
        (
            || StoreError::LimitExceeded,
            |e| matches!(e, DomainError::FreeTierLimitExceeded(_)),
        ),
        (
            || StoreError::NotFound,
            |e| matches!(e, DomainError::AgentNotFound),
        ),
        (
            || StoreError::AgentNotActive,
            |e| matches!(e, DomainError::AgentNotActive),
        ),
        (unavailable, |e| matches!(e, DomainError::Unavailable(_))),
    ];
    for (store_error, expected) in cases {
        let mut m = Mocks::new();
        m.agent_is(Some(active_agent()));
        m.new_secret_is_hashed();
        m.credentials
            .expect_create()
            .times(1)
            .returning(move |_, _, _, _| Err(store_error()));

        let err = m
            .build()
            .generate(&writer(), TARGET, NewKey::Secret, None, &ctx_of(&writer()))
            .await
            .unwrap_err();

        assert!(expected(&err), "{:?} -> {err:?}", store_error());
    }
}

#[tokio::test]
async fn generate_writes_nothing_when_hashing_fails() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.secrets
        .expect_generate()
        .times(1)
        .returning(|| secret(NEW_SECRET));
    m.hasher
        .expect_hash()
        .times(1)
        .returning(|_| Err(unavailable()));
    m.credentials.expect_create().never();

    let err = m
        .build()
        .generate(&writer(), TARGET, NewKey::Secret, None, &ctx_of(&writer()))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

// ----- list --------------------------------------------------------------------

#[tokio::test]
async fn list_of_a_missing_agent_is_agent_not_found() {
    let mut m = Mocks::new();
    m.agent_is(None);
    m.credentials.expect_list().never();

    let err = m
        .build()
        .list(
            &caller(&["agents:read"]),
            TARGET,
            None,
            PageRequest::default(),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn list_derives_statuses_at_now_and_never_shows_a_hash() {
    let active = credential();
    let expired = Credential {
        credential_id: OTHER_CREDENTIAL,
        expires_at: Some(now()),
        ..credential()
    };
    let revoked = Credential {
        credential_id: CredentialId(generated_id(99)),
        revoked_at: Some(now() - Duration::hours(1)),
        ..credential()
    };
    let rows = vec![active, expired, revoked];
    let page = PageRequest::new(Some(2), Some(3)).unwrap();
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credentials
        .expect_list()
        .withf(move |o, agent, status, at, p| {
            *o == owner()
                && *agent == TARGET
                && *status == Some(CredentialStatus::Revoked)
                && *at == now()
                && *p == page
        })
        .times(1)
        .returning(move |_, _, _, _, p| {
            Ok(Page {
                items: rows.clone(),
                request: p,
                total: 6,
            })
        });

    let listed = m
        .build()
        .list(
            &caller(&["agents:read"]),
            TARGET,
            Some(CredentialStatus::Revoked),
            page,
        )
        .await
        .unwrap();

    let statuses: Vec<CredentialStatus> = listed.items.iter().map(|v| v.status).collect();
    assert_eq!(
        statuses,
        [
            CredentialStatus::Active,
            CredentialStatus::Expired,
            CredentialStatus::Revoked
        ]
    );
    assert_eq!((listed.total, listed.request), (6, page));
    assert!(listed.items.iter().all(|v| v.client_id == TARGET));
    let body = serde_json::to_string(&listed.envelope()).unwrap();
    assert!(!body.contains(&stored_hash().hash), "{body}");
    assert!(!body.contains("argon2"), "{body}");
}

// ----- rotate ------------------------------------------------------------------

#[tokio::test]
async fn rotate_of_a_revoked_credential_is_credential_revoked_without_a_new_secret() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(Some(Credential {
        revoked_at: Some(now() - Duration::minutes(5)),
        ..credential()
    }));
    m.no_secret();
    m.credentials.expect_rotate().never();

    let err = m
        .build()
        .rotate(
            &writer(),
            TARGET,
            CREDENTIAL,
            NewKey::Secret,
            &ctx_of(&writer()),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::CredentialRevoked), "{err:?}");
}

#[tokio::test]
async fn rotate_of_a_missing_credential_is_credential_not_found() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(None);
    m.no_secret();
    m.credentials.expect_rotate().never();

    let err = m
        .build()
        .rotate(
            &writer(),
            TARGET,
            CREDENTIAL,
            NewKey::Secret,
            &ctx_of(&writer()),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::CredentialNotFound), "{err:?}");
}

#[tokio::test]
async fn rotate_under_a_missing_agent_is_agent_not_found() {
    let mut m = Mocks::new();
    m.agent_is(None);
    m.credentials.expect_find().never();
    m.no_secret();
    m.credentials.expect_rotate().never();

    let err = m
        .build()
        .rotate(
            &writer(),
            TARGET,
            CREDENTIAL,
            NewKey::Secret,
            &ctx_of(&writer()),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn rotate_for_a_more_privileged_agent_is_authorization_error_without_a_new_secret() {
    let mut m = Mocks::new();
    m.agent_is(Some(privileged_agent(AgentStatus::Active)));
    m.credentials.expect_find().never();
    m.no_secret();
    m.credentials.expect_rotate().never();

    let err = m
        .build()
        .rotate(
            &writer_only(),
            TARGET,
            CREDENTIAL,
            NewKey::Secret,
            &ctx_of(&writer_only()),
        )
        .await
        .unwrap_err();

    assert_escalation_refused(&err);
}

#[tokio::test]
async fn rotate_checks_escalation_before_the_credentials_existence_or_state() {
    // 403 before 404 and 409: the credential is not even looked up, so a caller
    // learns nothing about the credentials of an agent it may not act for.
    let mut m = Mocks::new();
    m.agent_is(Some(privileged_agent(AgentStatus::Active)));
    m.credentials.expect_find().never();
    m.no_secret();
    m.credentials.expect_rotate().never();

    let err = m
        .build()
        .rotate(
            &writer_only(),
            TARGET,
            CREDENTIAL,
            NewKey::Secret,
            &ctx_of(&writer_only()),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Authorization(_)), "{err:?}");
}

#[tokio::test]
async fn rotate_lets_a_caller_holding_every_management_scope_of_the_agent() {
    let caller = caller(&["agents:write", "audit:read", "tokens:introspect"]);
    let mut m = Mocks::new();
    m.agent_is(Some(privileged_agent(AgentStatus::Active)));
    m.credential_is(Some(credential()));
    m.new_secret_is_hashed();
    m.credentials
        .expect_rotate()
        .times(1)
        .returning(|_, _, _, hash, _| {
            Ok(Credential {
                key: hash.clone(),
                ..credential()
            })
        });

    let issued = m
        .build()
        .rotate(
            &caller,
            TARGET,
            CREDENTIAL,
            NewKey::Secret,
            &ctx_of(&caller),
        )
        .await
        .unwrap();

    assert_eq!(issued.client_secret.as_ref().unwrap().expose(), NEW_SECRET);
}

#[tokio::test]
async fn rotate_stores_a_new_hash_and_returns_the_new_secret_once() {
    let caller = writer();
    let ctx = ctx_of(&caller);
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(Some(credential()));
    m.new_secret_is_hashed();
    let events = Captured::new();
    let seen = events.clone();
    m.credentials
        .expect_rotate()
        .withf(|o, agent, id, hash, event| {
            *o == owner()
                && *agent == TARGET
                && *id == CREDENTIAL
                && *hash == CredentialKey::Secret(new_hash())
                && *hash != CredentialKey::Secret(stored_hash())
                && is_event(
                    event,
                    AuditAction::CredentialRotated,
                    Outcome::Success,
                    TARGET,
                    Some(CALLER),
                )
                && event.metadata == json!({ "credentialId": CREDENTIAL, "type": "secret" })
        })
        .times(1)
        .returning(move |_, _, _, hash, event| {
            seen.push(event.clone());
            Ok(Credential {
                key: hash.clone(),
                ..credential()
            })
        });

    let issued = m
        .build()
        .rotate(&caller, TARGET, CREDENTIAL, NewKey::Secret, &ctx)
        .await
        .unwrap();

    assert_eq!(issued.client_secret.as_ref().unwrap().expose(), NEW_SECRET);
    assert_ne!(issued.client_secret.as_ref().unwrap().expose(), SECRET);
    assert_eq!(issued.credential.credential_id, CREDENTIAL);
    assert_eq!(issued.credential.status, CredentialStatus::Active);
    let event = event_text(&events.only());
    assert!(
        !event.contains(&NEW_SECRET[8..]),
        "secret in event: {event}"
    );
    assert!(!event.contains(&new_hash().hash), "hash in event: {event}");
}

#[tokio::test]
async fn rotate_maps_the_stores_answers() {
    type Check = fn(&DomainError) -> bool;
    let cases: [(fn() -> StoreError, Check); 3] = [
        (
            || StoreError::NotFound,
            |e| matches!(e, DomainError::CredentialNotFound),
        ),
        (
            || StoreError::CredentialRevoked,
            |e| matches!(e, DomainError::CredentialRevoked),
        ),
        (unavailable, |e| matches!(e, DomainError::Unavailable(_))),
    ];
    for (store_error, expected) in cases {
        let mut m = Mocks::new();
        m.agent_is(Some(active_agent()));
        m.credential_is(Some(credential()));
        m.new_secret_is_hashed();
        m.credentials
            .expect_rotate()
            .times(1)
            .returning(move |_, _, _, _, _| Err(store_error()));

        let err = m
            .build()
            .rotate(
                &writer(),
                TARGET,
                CREDENTIAL,
                NewKey::Secret,
                &ctx_of(&writer()),
            )
            .await
            .unwrap_err();

        assert!(expected(&err), "{:?} -> {err:?}", store_error());
    }
}

// ----- revoke ------------------------------------------------------------------

#[tokio::test]
async fn revoke_revokes_at_now_and_writes_credential_revoked() {
    let caller = writer();
    let ctx = ctx_of(&caller);
    let expected_event = AuditEvent {
        event_id: EventId(generated_id(1)),
        owner: Some(owner()),
        agent_id: Some(TARGET),
        actor_id: Some(CALLER),
        action: AuditAction::CredentialRevoked,
        outcome: Outcome::Success,
        ip_address: ctx.ip_address.clone(),
        user_agent: ctx.user_agent.clone(),
        metadata: json!({ "credentialId": CREDENTIAL }),
        timestamp: now(),
        sequence: None,
        hash: None,
    };
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(Some(credential()));
    m.no_secret();
    m.credentials
        .expect_revoke()
        .withf(move |o, agent, id, at, event| {
            *o == owner()
                && *agent == TARGET
                && *id == CREDENTIAL
                && *at == now()
                && *event == expected_event
        })
        .times(1)
        .returning(|_, _, _, at, _| {
            Ok(Credential {
                revoked_at: Some(at),
                ..credential()
            })
        });

    m.build()
        .revoke(&caller, TARGET, CREDENTIAL, &ctx)
        .await
        .unwrap();
}

#[tokio::test]
async fn revoke_of_a_more_privileged_agents_credential_is_allowed() {
    // Revoking hands the caller nothing, so it is no escalation.
    let mut m = Mocks::new();
    m.agent_is(Some(privileged_agent(AgentStatus::Active)));
    m.credential_is(Some(credential()));
    m.no_secret();
    m.credentials
        .expect_revoke()
        .times(1)
        .returning(|_, _, _, at, _| {
            Ok(Credential {
                revoked_at: Some(at),
                ..credential()
            })
        });

    m.build()
        .revoke(&writer_only(), TARGET, CREDENTIAL, &ctx_of(&writer_only()))
        .await
        .unwrap();
}

#[tokio::test]
async fn revoke_under_a_missing_agent_is_agent_not_found() {
    let mut m = Mocks::new();
    m.agent_is(None);
    m.credentials.expect_find().never();
    m.credentials.expect_revoke().never();

    let err = m
        .build()
        .revoke(&writer(), TARGET, CREDENTIAL, &ctx_of(&writer()))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn revoke_of_a_missing_credential_is_credential_not_found() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(None);
    m.credentials.expect_revoke().never();

    let err = m
        .build()
        .revoke(&writer(), TARGET, CREDENTIAL, &ctx_of(&writer()))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::CredentialNotFound), "{err:?}");
}

#[tokio::test]
async fn revoke_twice_is_credential_revoked() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(Some(Credential {
        revoked_at: Some(now() - Duration::minutes(1)),
        ..credential()
    }));
    m.credentials
        .expect_revoke()
        .times(..=1)
        .returning(|_, _, _, _, _| Err(StoreError::CredentialRevoked));

    let err = m
        .build()
        .revoke(&writer(), TARGET, CREDENTIAL, &ctx_of(&writer()))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::CredentialRevoked), "{err:?}");
}

#[tokio::test]
async fn revoke_racing_a_delete_is_credential_not_found() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(Some(credential()));
    m.credentials
        .expect_revoke()
        .times(1)
        .returning(|_, _, _, _, _| Err(StoreError::NotFound));

    let err = m
        .build()
        .revoke(&writer(), TARGET, CREDENTIAL, &ctx_of(&writer()))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::CredentialNotFound), "{err:?}");
}

// ----- public keys (private_key_jwt, contract section 10) ---------------------------------

/// The verifier can use `jwk`'s key (checked once).
fn key_is_usable(m: &mut Mocks, jwk: &PublicKeyJwk) {
    let expected = jwk.clone();
    m.verifier
        .expect_check_key()
        .withf(move |key| *key == expected)
        .times(1)
        .returning(|_| Ok(()));
}

/// `err` is a `400` on the field `jwk`.
fn assert_jwk_refused(err: &DomainError) {
    match err {
        DomainError::Validation(e) => assert_eq!(e.field, "jwk"),
        other => panic!("expected a validation error on jwk, got {other:?}"),
    }
}

#[tokio::test]
async fn generate_with_a_public_key_stores_it_and_returns_no_secret() {
    let caller = writer();
    let jwk = ec_jwk(7);
    let credential_id = CredentialId(generated_id(1));
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.no_secret();
    key_is_usable(&mut m, &jwk);
    let stored = jwk.clone();
    let thumbprint = jwk.thumbprint().to_owned();
    m.credentials
        .expect_create()
        .withf(move |credential, limit, at, event| {
            credential.credential_id == credential_id
                && credential.key == CredentialKey::PublicKey(stored.clone())
                && *limit == 3
                && *at == now()
                && is_event(
                    event,
                    AuditAction::CredentialGenerated,
                    Outcome::Success,
                    TARGET,
                    Some(CALLER),
                )
                && event.metadata
                    == json!({
                        "credentialId": credential_id,
                        "type": "public_key",
                        "expiresAt": null,
                        "jwkThumbprint": thumbprint,
                    })
        })
        .times(1)
        .returning(|_, _, _, _| Ok(()));

    let issued = m
        .build()
        .generate(
            &caller,
            TARGET,
            NewKey::PublicKey(jwk.clone()),
            None,
            &ctx_of(&caller),
        )
        .await
        .unwrap();

    assert!(issued.client_secret.is_none());
    assert_eq!(issued.credential.credential_type, CredentialType::PublicKey);
    assert_eq!(issued.credential.jwk, Some(jwk.to_value()));
    assert_eq!(
        issued.credential.jwk_thumbprint.as_deref(),
        Some(jwk.thumbprint())
    );
    let view = serde_json::to_value(&issued.credential).unwrap();
    assert_eq!(view["type"], "public_key");
    assert_eq!(view["jwk"]["kid"], jwk.thumbprint());
}

#[tokio::test]
async fn generate_with_a_key_the_verifier_cannot_use_is_a_400_on_jwk() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.no_secret();
    m.verifier
        .expect_check_key()
        .times(1)
        .returning(|_| Err(JwsError::Key("point not on the curve".into())));
    m.credentials.expect_create().never();

    let err = m
        .build()
        .generate(
            &writer(),
            TARGET,
            NewKey::PublicKey(ec_jwk(7)),
            None,
            &ctx_of(&writer()),
        )
        .await
        .unwrap_err();

    assert_jwk_refused(&err);
}

#[tokio::test]
async fn rotate_of_a_public_key_credential_without_a_key_is_a_400() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(Some(key_credential(CREDENTIAL, ec_jwk(7))));
    m.no_secret();
    m.verifier.expect_check_key().never();
    m.credentials.expect_rotate().never();

    let err = m
        .build()
        .rotate(
            &writer(),
            TARGET,
            CREDENTIAL,
            NewKey::Secret,
            &ctx_of(&writer()),
        )
        .await
        .unwrap_err();

    assert_jwk_refused(&err);
}

#[tokio::test]
async fn rotate_of_a_secret_credential_with_a_public_key_is_a_400() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(Some(credential()));
    m.no_secret();
    m.verifier.expect_check_key().never();
    m.credentials.expect_rotate().never();

    let err = m
        .build()
        .rotate(
            &writer(),
            TARGET,
            CREDENTIAL,
            NewKey::PublicKey(ec_jwk(7)),
            &ctx_of(&writer()),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Validation(_)), "{err:?}");
}

#[tokio::test]
async fn rotate_of_a_public_key_credential_replaces_the_key() {
    let caller = writer();
    let new_jwk = ec_jwk(9);
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(Some(key_credential(CREDENTIAL, ec_jwk(7))));
    m.no_secret();
    key_is_usable(&mut m, &new_jwk);
    let expected_key = CredentialKey::PublicKey(new_jwk.clone());
    let thumbprint = new_jwk.thumbprint().to_owned();
    m.credentials
        .expect_rotate()
        .withf(move |o, agent, id, key, event| {
            *o == owner()
                && *agent == TARGET
                && *id == CREDENTIAL
                && *key == expected_key
                && is_event(
                    event,
                    AuditAction::CredentialRotated,
                    Outcome::Success,
                    TARGET,
                    Some(CALLER),
                )
                && event.metadata
                    == json!({
                        "credentialId": CREDENTIAL,
                        "type": "public_key",
                        "jwkThumbprint": thumbprint,
                    })
        })
        .times(1)
        .returning(|_, _, _, key, _| {
            Ok(Credential {
                key: key.clone(),
                ..key_credential(CREDENTIAL, ec_jwk(7))
            })
        });

    let issued = m
        .build()
        .rotate(
            &caller,
            TARGET,
            CREDENTIAL,
            NewKey::PublicKey(new_jwk.clone()),
            &ctx_of(&caller),
        )
        .await
        .unwrap();

    assert!(issued.client_secret.is_none());
    assert_eq!(issued.credential.credential_id, CREDENTIAL);
    assert_eq!(issued.credential.jwk, Some(new_jwk.to_value()));
    assert_ne!(
        issued.credential.jwk_thumbprint.as_deref(),
        Some(ec_jwk(7).thumbprint())
    );
}

#[tokio::test]
async fn rotate_with_a_key_the_verifier_cannot_use_writes_nothing() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    m.credential_is(Some(key_credential(CREDENTIAL, ec_jwk(7))));
    m.no_secret();
    m.verifier
        .expect_check_key()
        .times(1)
        .returning(|_| Err(JwsError::Key("point not on the curve".into())));
    m.credentials.expect_rotate().never();

    let err = m
        .build()
        .rotate(
            &writer(),
            TARGET,
            CREDENTIAL,
            NewKey::PublicKey(ec_jwk(9)),
            &ctx_of(&writer()),
        )
        .await
        .unwrap_err();

    assert_jwk_refused(&err);
}

#[tokio::test]
async fn listing_shows_a_public_key_credential_without_a_secret() {
    let mut m = Mocks::new();
    m.agent_is(Some(active_agent()));
    let jwk = ec_jwk(7);
    let stored = key_credential(CREDENTIAL, jwk.clone());
    m.credentials
        .expect_list()
        .times(1)
        .returning(move |_, _, _, _, page| {
            Ok(Page {
                items: vec![stored.clone()],
                request: page,
                total: 1,
            })
        });

    let page = m
        .build()
        .list(&writer(), TARGET, None, PageRequest::default())
        .await
        .unwrap();

    let view = serde_json::to_value(&page.items[0]).unwrap();
    assert_eq!(view["type"], "public_key");
    assert_eq!(view["jwkThumbprint"], jwk.thumbprint());
    assert!(view.get("clientSecret").is_none());
}
