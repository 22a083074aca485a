//! `TokenService::revoke` (RFC 7009).

use chrono::{DateTime, Utc};
use mockall::Sequence;
use serde_json::json;

use super::fixtures::*;
use crate::DomainError;
use crate::audit::AuditEvent;
use crate::ports::{RevokedToken, SubjectState};
use crate::token::Principal;
use crate::values::{AgentStatus, AuditAction, EventId, Outcome};

fn revoked_entry() -> RevokedToken {
    RevokedToken {
        token_id: TOKEN_ID,
        expires_at: DateTime::<Utc>::from_timestamp(live_claims().exp, 0).unwrap(),
    }
}

/// The target agent calling about its own token, holding no scope at all.
fn the_tokens_own_agent() -> Principal {
    Principal {
        agent_id: TARGET,
        client_id: TARGET,
        credential_id: CREDENTIAL,
        ..caller(&[])
    }
}

/// The store records the revocation (answering `newly`) with `event`, then the
/// revocation list gets the same entry at now, in that order.
fn revokes(m: &mut TokenMocks, newly: bool, event: impl Fn(&AuditEvent) -> bool + Send + 'static) {
    let mut order = Sequence::new();
    m.revoked_store
        .expect_revoke()
        .withf(move |o, token, e| *o == owner() && *token == revoked_entry() && event(e))
        .times(1)
        .in_sequence(&mut order)
        .returning(move |_, _, _| Ok(newly));
    m.revocations
        .expect_insert()
        .withf(|token, at| *token == revoked_entry() && *at == now())
        .times(1)
        .in_sequence(&mut order)
        .returning(|_, _| Ok(()));
}

#[tokio::test]
async fn revoke_of_its_own_token_needs_no_scope_and_writes_token_revoked() {
    let caller = the_tokens_own_agent();
    let ctx = ctx_of(&caller);
    let expected_event = AuditEvent {
        event_id: EventId(generated_id(1)),
        owner: Some(owner()),
        agent_id: Some(TARGET),
        actor_id: Some(TARGET),
        action: AuditAction::TokenRevoked,
        outcome: Outcome::Success,
        ip_address: ctx.ip_address.clone(),
        user_agent: ctx.user_agent.clone(),
        metadata: json!({ "jti": TOKEN_ID.to_string(), "credentialId": CREDENTIAL.to_string() }),
        timestamp: now(),
        sequence: None,
        hash: None,
    };
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());
    let events = Captured::new();
    let seen = events.clone();
    revokes(&mut m, true, move |event| {
        seen.push(event.clone());
        *event == expected_event
    });
    m.audit.expect_append().never();

    m.build().revoke(&caller, TOKEN, &ctx).await.unwrap();

    let event = event_text(&events.only());
    for part in TOKEN.split('.') {
        assert!(!event.contains(part), "token in event: {event}");
    }
}

#[tokio::test]
async fn revoke_of_another_agents_token_of_the_owner_with_agents_write() {
    let caller = caller(&["agents:write"]);
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());
    revokes(&mut m, true, |event| {
        is_event(
            event,
            AuditAction::TokenRevoked,
            Outcome::Success,
            TARGET,
            Some(CALLER),
        )
    });

    m.build()
        .revoke(&caller, TOKEN, &ctx_of(&caller))
        .await
        .unwrap();
}

#[tokio::test]
async fn revoke_of_another_agents_token_without_agents_write_changes_nothing() {
    let caller = caller(&["agents:read", "tokens:introspect", "audit:read"]);
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());
    m.nothing_revoked();
    m.audit.expect_append().never();

    m.build()
        .revoke(&caller, TOKEN, &ctx_of(&caller))
        .await
        .unwrap();
}

#[tokio::test]
async fn revoke_ignores_another_owners_token() {
    let mut claims = live_claims();
    claims.owner = "globex".into();
    let caller = caller(&["agents:write"]);
    let mut m = TokenMocks::new();
    m.valid_token(claims, other_owner());
    m.nothing_revoked();
    m.audit.expect_append().never();

    m.build()
        .revoke(&caller, TOKEN, &ctx_of(&caller))
        .await
        .unwrap();
}

#[tokio::test]
async fn revoke_of_an_invalid_expired_or_revoked_token_is_ok_and_writes_nothing() {
    let caller = caller(&["agents:write"]);
    for bad in BadToken::ALL {
        if bad == BadToken::AgentSuspended {
            // See revoke_records_the_token_of_a_suspended_agent.
            continue;
        }
        if bad == BadToken::WrongAudience {
            // A token meant for another resource is revocable (contract
            // section 11); see resources.rs.
            continue;
        }
        let mut m = bad.mocks();
        m.nothing_revoked();
        m.audit.expect_append().never();

        let result = m.build().revoke(&caller, TOKEN, &ctx_of(&caller)).await;

        assert!(result.is_ok(), "{bad:?}: {result:?}");
    }
}

#[tokio::test]
async fn revoke_still_fills_the_revocation_list_when_the_store_already_had_it() {
    // A previous attempt may have failed between the store and the cache.
    let caller = caller(&["agents:write"]);
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());
    revokes(&mut m, false, |_| true);

    m.build()
        .revoke(&caller, TOKEN, &ctx_of(&caller))
        .await
        .unwrap();
}

#[tokio::test]
async fn revoke_reports_an_unreachable_store_and_leaves_the_list_alone() {
    let caller = caller(&["agents:write"]);
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());
    m.revoked_store
        .expect_revoke()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    m.revocations.expect_insert().never();

    let err = m
        .build()
        .revoke(&caller, TOKEN, &ctx_of(&caller))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn revoke_reports_an_unreachable_revocation_list_as_unavailable() {
    let caller = caller(&["agents:write"]);
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());
    m.revoked_store
        .expect_revoke()
        .times(1)
        .returning(|_, _, _| Ok(true));
    m.revocations
        .expect_insert()
        .times(1)
        .returning(|_, _| Err(unavailable()));

    let err = m
        .build()
        .revoke(&caller, TOKEN, &ctx_of(&caller))
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

#[tokio::test]

async fn revoke_records_the_token_of_a_suspended_agent() {
    // Contract section 3: reactivating restores the live tokens of a suspended
    // agent. A revocation answered 200 for such a token must therefore be
    // recorded now, or the token comes back with the agent.
    let caller = caller(&["agents:write"]);
    let mut m = TokenMocks::new();
    m.decodes_to(live_claims());
    m.revocation_answers(false);
    m.subject_is(Some(SubjectState {
        agent_status: AgentStatus::Suspended,
        ..live_subject(owner())
    }));
    revokes(&mut m, true, |event| {
        is_event(
            event,
            AuditAction::TokenRevoked,
            Outcome::Success,
            TARGET,
            Some(CALLER),
        )
    });

    m.build()
        .revoke(&caller, TOKEN, &ctx_of(&caller))
        .await
        .unwrap();
}
