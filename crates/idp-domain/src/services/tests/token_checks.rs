//! `TokenService::authenticate` (Bearer tokens) and `introspect` (RFC 7662).

use serde_json::json;

use super::fixtures::*;
use crate::DomainError;
use crate::token::Principal;

async fn authenticate(m: TokenMocks) -> Result<Principal, DomainError> {
    m.build().authenticate(TOKEN).await
}

/// `bad` is refused with `401` and its reason, and nothing is audited.
async fn refused(bad: BadToken) {
    let mut m = bad.mocks();
    m.audit.expect_append().never();

    let err = authenticate(m).await.unwrap_err();

    match err {
        DomainError::Authentication(reason) => assert_eq!(reason, bad.reason(), "{bad:?}"),
        other => panic!("{bad:?}: expected Authentication, got {other:?}"),
    }
}

// ----- authenticate ----------------------------------------------------------------

#[tokio::test]
async fn authenticate_accepts_a_live_token_with_its_scopes() {
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());
    m.audit.expect_append().never();

    let principal = authenticate(m).await.unwrap();

    assert_eq!(
        principal,
        Principal {
            agent_id: TARGET,
            client_id: TARGET,
            owner: owner(),
            scopes: scopes(&["agents:read", "resume:read"]),
            token_id: Some(TOKEN_ID),
            credential_id: CREDENTIAL,
        }
    );
    assert!(principal.require_scope("agents:read").is_ok());
    assert!(principal.require_scope("agents:write").is_err());
}

#[tokio::test]
async fn authenticate_refuses_a_malformed_token() {
    refused(BadToken::Malformed).await;
}

#[tokio::test]
async fn authenticate_refuses_a_bad_signature() {
    refused(BadToken::BadSignature).await;
}

#[tokio::test]
async fn authenticate_refuses_a_foreign_issuer() {
    refused(BadToken::ForeignIssuer).await;
}

#[tokio::test]
async fn authenticate_refuses_a_wrong_audience() {
    refused(BadToken::WrongAudience).await;
}

#[tokio::test]
async fn authenticate_refuses_an_expired_token() {
    refused(BadToken::Expired).await;
}

#[tokio::test]
async fn authenticate_refuses_a_token_whose_exp_is_this_second() {
    refused(BadToken::ExpiringNow).await;
}

#[tokio::test]
async fn authenticate_refuses_an_nbf_beyond_the_leeway() {
    refused(BadToken::NotYetValid).await;
}

#[tokio::test]
async fn authenticate_refuses_a_jti_that_is_no_uuid() {
    refused(BadToken::NonUuidJti).await;
}

#[tokio::test]
async fn authenticate_refuses_an_owner_claim_that_is_no_slug() {
    refused(BadToken::BadOwnerClaim).await;
}

#[tokio::test]
async fn authenticate_refuses_a_revoked_token_without_reading_the_subject() {
    refused(BadToken::Revoked).await;
}

#[tokio::test]
async fn authenticate_refuses_an_unknown_subject() {
    refused(BadToken::UnknownSubject).await;
}

#[tokio::test]
async fn authenticate_refuses_an_owner_claim_that_is_not_the_subjects() {
    refused(BadToken::OwnerMismatch).await;
}

#[tokio::test]
async fn authenticate_refuses_the_token_of_a_suspended_agent() {
    refused(BadToken::AgentSuspended).await;
}

#[tokio::test]
async fn authenticate_refuses_the_token_of_a_decommissioned_agent() {
    refused(BadToken::AgentDecommissioned).await;
}

#[tokio::test]
async fn authenticate_refuses_a_token_of_a_revoked_credential() {
    refused(BadToken::CredentialRevoked).await;
}

#[tokio::test]
async fn authenticate_refuses_a_malformed_scope_claim() {
    refused(BadToken::MalformedScope).await;
}

#[tokio::test]
async fn authenticate_tolerates_an_nbf_within_the_leeway() {
    let mut claims = live_claims();
    claims.nbf = now().timestamp() + 30;
    let mut m = TokenMocks::new();
    m.valid_token(claims, owner());

    authenticate(m).await.unwrap();
}

#[tokio::test]
async fn authenticate_accepts_a_token_expiring_next_second() {
    let mut claims = live_claims();
    claims.exp = now().timestamp() + 1;
    let mut m = TokenMocks::new();
    m.valid_token(claims, owner());

    authenticate(m).await.unwrap();
}

#[tokio::test]
async fn authenticate_reports_an_unreachable_revocation_list_as_unavailable() {
    let mut m = TokenMocks::new();
    m.decodes_to(live_claims());
    m.revocations
        .expect_contains()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    m.credentials.expect_subject_state().never();

    let err = authenticate(m).await.unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn authenticate_reports_an_unreachable_credential_store_as_unavailable() {
    let mut m = TokenMocks::new();
    m.decodes_to(live_claims());
    m.revocation_answers(false);
    m.credentials
        .expect_subject_state()
        .times(1)
        .returning(|_, _| Err(unavailable()));

    let err = authenticate(m).await.unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

// ----- introspect -------------------------------------------------------------------

#[tokio::test]
async fn introspect_describes_an_active_token_of_the_callers_owner() {
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());
    m.audit.expect_append().never();
    let c = live_claims();

    let answer = m
        .build()
        .introspect(&caller(&["tokens:introspect"]), TOKEN)
        .await
        .unwrap();

    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        json!({
            "active": true,
            "scope": "agents:read resume:read",
            "client_id": TARGET.to_string(),
            "sub": TARGET.to_string(),
            "aud": "https://api.acme.test",
            "iss": "https://idp.acme.test",
            "exp": c.exp,
            "iat": c.iat,
            "nbf": c.nbf,
            "jti": TOKEN_ID.to_string(),
            "token_type": "Bearer",
            "owner": "acme",
        })
    );
}

#[tokio::test]
async fn introspect_is_inactive_for_another_owners_token() {
    let mut claims = live_claims();
    claims.owner = "globex".into();
    let mut m = TokenMocks::new();
    m.valid_token(claims, other_owner());

    let answer = m
        .build()
        .introspect(&caller(&["tokens:introspect"]), TOKEN)
        .await
        .unwrap();

    assert_eq!(
        serde_json::to_value(&answer).unwrap(),
        json!({ "active": false })
    );
}

#[tokio::test]
async fn introspect_is_inactive_and_says_nothing_more_for_every_invalid_token() {
    for bad in BadToken::ALL {
        if bad == BadToken::WrongAudience {
            // Introspection accepts a token meant for any resource (contract
            // section 11); see resources.rs.
            continue;
        }
        let mut m = bad.mocks();
        m.audit.expect_append().never();

        let answer = m
            .build()
            .introspect(&caller(&["tokens:introspect"]), TOKEN)
            .await
            .unwrap();

        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            json!({ "active": false }),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn introspect_reports_an_unreachable_store_as_unavailable_not_inactive() {
    let mut m = TokenMocks::new();
    m.decodes_to(live_claims());
    m.revocations
        .expect_contains()
        .times(1)
        .returning(|_, _| Err(unavailable()));

    let err = m
        .build()
        .introspect(&caller(&["tokens:introspect"]), TOKEN)
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}
