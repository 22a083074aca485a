//! `TokenService::issue` and `TokenService::issue_admitted` (the client
//! credentials grant) and client authentication.

use chrono::Duration;
use serde_json::json;

use super::fixtures::*;
use crate::DomainError;
use crate::audit::AuditEvent;
use crate::entities::{Agent, Credential};
use crate::ports::{Admission, QuotaDecision, RateDecision};
use crate::services::{ClientCredentials, IssuedToken, TokenRequestError};
use crate::token::{AccessTokenClaims, Principal};
use crate::values::{AgentStatus, AuditAction, EventId, Outcome, SecretHash};

fn client(presented: &str) -> ClientCredentials {
    ClientCredentials {
        client_id: TARGET.to_string(),
        client_secret: secret(presented),
    }
}

/// The client id names `agent`; the hint of `presented` finds `candidates`.
fn known_client(
    m: &mut TokenMocks,
    agent: Agent,
    presented: &'static str,
    candidates: Vec<Credential>,
) {
    m.agents
        .expect_find_for_authentication()
        .withf(|id| *id == TARGET)
        .times(1)
        .returning(move |_| Ok(Some(agent.clone())));
    m.hasher
        .expect_lookup_hint()
        .withf(move |s| s.expose() == presented)
        .times(1)
        .return_const(HINT.to_owned());
    m.credentials
        .expect_find_by_hint()
        .withf(|id, hint| *id == TARGET && hint == HINT)
        .times(1)
        .returning(move |_, _| Ok(candidates.clone()));
}

/// Verifying `presented` against `hash` answers `matches`, once.
fn verifies(m: &mut TokenMocks, presented: &'static str, hash: SecretHash, matches: bool) {
    m.hasher
        .expect_verify()
        .withf(move |s, h| s.expose() == presented && *h == hash)
        .times(1)
        .returning(move |_, _| Ok(matches));
}

/// [`SECRET`] authenticates `agent` through `credential`, without a dummy verification.
fn authenticates(m: &mut TokenMocks, agent: Agent, credential: Credential) {
    let hash = credential.secret_hash.clone();
    known_client(m, agent, SECRET, vec![credential]);
    verifies(m, SECRET, hash, true);
    m.hasher.expect_verify_dummy().never();
}

/// One dummy verification of `presented`.
fn dummy_verification(m: &mut TokenMocks, presented: &'static str) {
    m.hasher
        .expect_verify_dummy()
        .withf(move |s| s.expose() == presented)
        .times(1)
        .returning(|_| Ok(()));
}

/// The quota for [`TARGET`] is asked with the configured limit at now.
fn quota(m: &mut TokenMocks, allowed: bool) {
    m.usage
        .expect_try_consume()
        .withf(|key, limit, at| key == TARGET.to_string() && *limit == 250 && *at == now())
        .times(1)
        .returning(move |_, _, _| Ok(QuotaDecision { allowed, used: 17 }));
}

/// One `auth.failed` event about [`TARGET`], actor null, with `reason`.
fn audits_failure(m: &mut TokenMocks, reason: &'static str) {
    m.audit
        .expect_append()
        .withf(move |event| {
            is_event(
                event,
                AuditAction::AuthFailed,
                Outcome::Failure,
                TARGET,
                None,
            ) && event.metadata == json!({ "reason": reason })
                && event.ip_address.as_deref() == Some("203.0.113.7")
        })
        .times(1)
        .returning(|_| Ok(()));
}

/// No quota taken, nothing signed.
fn nothing_issued(m: &mut TokenMocks) {
    m.usage.expect_try_consume().never();
    m.codec.expect_sign().never();
}

/// The token is signed once, whatever the claims, as [`TOKEN`].
fn signs(m: &mut TokenMocks) {
    m.codec
        .expect_sign()
        .times(1)
        .returning(|_| Ok(TOKEN.to_owned()));
}

fn issued_claims(scope: &str) -> AccessTokenClaims {
    let iat = now().timestamp();
    AccessTokenClaims {
        iss: "https://idp.acme.test".into(),
        sub: TARGET.to_string(),
        aud: "https://api.acme.test".into(),
        client_id: TARGET.to_string(),
        scope: scope.into(),
        jti: generated_id(1).to_string(),
        iat,
        nbf: iat,
        exp: iat + 1800,
        owner: "acme".into(),
        agent_type: "screener".into(),
        deployment_env: "production".into(),
        cid: CREDENTIAL.to_string(),
    }
}

// ----- success -------------------------------------------------------------------

#[tokio::test]
async fn issue_grants_every_capability_sorted_when_no_scope_is_asked() {
    let ctx = anonymous_ctx();
    let mut m = TokenMocks::new();
    authenticates(&mut m, active_agent(), credential());
    quota(&mut m, true);
    let expected_claims = issued_claims("agents:read files:write resume:read");
    let signed = expected_claims.clone();
    m.codec
        .expect_sign()
        .withf(move |claims| *claims == signed)
        .times(1)
        .returning(|_| Ok(TOKEN.to_owned()));
    let expected_event = AuditEvent {
        event_id: EventId(generated_id(2)),
        owner: Some(owner()),
        agent_id: Some(TARGET),
        actor_id: Some(TARGET),
        action: AuditAction::TokenIssued,
        outcome: Outcome::Success,
        ip_address: ctx.ip_address.clone(),
        user_agent: ctx.user_agent.clone(),
        metadata: json!({
            "jti": generated_id(1).to_string(),
            "credentialId": CREDENTIAL,
            "scope": "agents:read files:write resume:read",
            "expiresAt": expected_claims.exp,
        }),
        timestamp: now(),
    };
    let events = Captured::new();
    let seen = events.clone();
    m.audit
        .expect_append()
        .withf(move |event| *event == expected_event)
        .times(1)
        .returning(move |event| {
            seen.push(event.clone());
            Ok(())
        });

    let issued = m.build().issue(&client(SECRET), None, &ctx).await.unwrap();

    assert_eq!(issued.access_token, TOKEN);
    assert_eq!(issued.expires_in, 1800);
    assert_eq!(issued.scope, "agents:read files:write resume:read");
    let event = event_text(&events.only());
    for part in TOKEN.split('.') {
        assert!(!event.contains(part), "token in event: {event}");
    }
    assert!(!event.contains(&SECRET[8..]), "secret in event: {event}");
}

#[tokio::test]
async fn issue_grants_a_requested_subset_of_the_capabilities() {
    let mut m = TokenMocks::new();
    authenticates(&mut m, active_agent(), credential());
    quota(&mut m, true);
    m.codec
        .expect_sign()
        .withf(|claims| claims.scope == "files:write resume:read")
        .times(1)
        .returning(|_| Ok(TOKEN.to_owned()));
    m.audit
        .expect_append()
        .withf(|event| {
            is_event(
                event,
                AuditAction::TokenIssued,
                Outcome::Success,
                TARGET,
                Some(TARGET),
            ) && event.metadata["scope"] == "files:write resume:read"
        })
        .times(1)
        .returning(|_| Ok(()));

    let issued = m
        .build()
        .issue(
            &client(SECRET),
            Some("resume:read files:write"),
            &anonymous_ctx(),
        )
        .await
        .unwrap();

    assert_eq!(issued.scope, "files:write resume:read");
}

#[tokio::test]
async fn issue_uses_the_candidate_credential_the_secret_verifies_against() {
    let other = Credential {
        credential_id: OTHER_CREDENTIAL,
        secret_hash: new_hash(),
        ..credential()
    };
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), SECRET, vec![other, credential()]);
    verifies(&mut m, SECRET, new_hash(), false);
    verifies(&mut m, SECRET, stored_hash(), true);
    m.hasher.expect_verify_dummy().never();
    quota(&mut m, true);
    m.codec
        .expect_sign()
        .withf(|claims| claims.cid == CREDENTIAL.to_string())
        .times(1)
        .returning(|_| Ok(TOKEN.to_owned()));
    m.audit
        .expect_append()
        .withf(|event| event.metadata["credentialId"] == json!(CREDENTIAL))
        .times(1)
        .returning(|_| Ok(()));

    m.build()
        .issue(&client(SECRET), None, &anonymous_ctx())
        .await
        .unwrap();
}

// ----- scope -----------------------------------------------------------------------

#[tokio::test]
async fn issue_refuses_a_scope_outside_the_capabilities() {
    let mut m = TokenMocks::new();
    authenticates(&mut m, active_agent(), credential());
    audits_failure(&mut m, "invalid_scope");
    nothing_issued(&mut m);

    let err = m
        .build()
        .issue(
            &client(SECRET),
            Some("resume:read audit:read"),
            &anonymous_ctx(),
        )
        .await
        .unwrap_err();

    assert!(matches!(err, TokenRequestError::InvalidScope), "{err:?}");
}

#[tokio::test]
async fn issue_refuses_a_malformed_scope() {
    for raw in [
        "",
        "Resume:Read",
        "resume:read  files:write",
        " resume:read",
        "resume:read ",
        "resume:read\tfiles:write",
    ] {
        let mut m = TokenMocks::new();
        authenticates(&mut m, active_agent(), credential());
        audits_failure(&mut m, "invalid_scope");
        nothing_issued(&mut m);

        let err = m
            .build()
            .issue(&client(SECRET), Some(raw), &anonymous_ctx())
            .await
            .unwrap_err();

        assert!(
            matches!(err, TokenRequestError::InvalidScope),
            "{raw:?}: {err:?}"
        );
    }
}

// ----- client authentication ----------------------------------------------------

#[tokio::test]
async fn issue_refuses_a_client_id_that_is_no_uuid_after_a_dummy_verification() {
    let mut m = TokenMocks::new();
    m.agents.expect_find_for_authentication().never();
    dummy_verification(&mut m, SECRET);
    m.audit.expect_append().never();
    nothing_issued(&mut m);
    let client = ClientCredentials {
        client_id: "screener-01".into(),
        client_secret: secret(SECRET),
    };

    let err = m
        .build()
        .issue(&client, None, &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(
        matches!(err, TokenRequestError::InvalidClient(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn issue_refuses_an_unknown_client_after_a_dummy_verification() {
    let mut m = TokenMocks::new();
    m.agents
        .expect_find_for_authentication()
        .withf(|id| *id == TARGET)
        .times(1)
        .returning(|_| Ok(None));
    dummy_verification(&mut m, SECRET);
    m.credentials.expect_find_by_hint().never();
    m.audit.expect_append().never();
    nothing_issued(&mut m);

    let err = m
        .build()
        .issue(&client(SECRET), None, &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(
        matches!(err, TokenRequestError::InvalidClient(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn issue_refuses_a_wrong_secret_and_audits_it() {
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![]);
    m.hasher.expect_verify().never();
    dummy_verification(&mut m, WRONG_SECRET);
    audits_failure(&mut m, "invalid_client_secret");
    nothing_issued(&mut m);

    let err = m
        .build()
        .issue(&client(WRONG_SECRET), None, &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            TokenRequestError::InvalidClient("invalid_client_secret")
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn issue_refuses_a_secret_no_candidate_verifies_against() {
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![credential()]);
    verifies(&mut m, WRONG_SECRET, stored_hash(), false);
    dummy_verification(&mut m, WRONG_SECRET);
    audits_failure(&mut m, "invalid_client_secret");
    nothing_issued(&mut m);

    let err = m
        .build()
        .issue(&client(WRONG_SECRET), None, &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            TokenRequestError::InvalidClient("invalid_client_secret")
        ),
        "{err:?}"
    );
}

/// A correct secret that is refused anyway, with `reason` audited.
async fn refused_with_correct_secret(agent: Agent, credential: Credential, reason: &'static str) {
    let mut m = TokenMocks::new();
    authenticates(&mut m, agent, credential);
    audits_failure(&mut m, reason);
    nothing_issued(&mut m);

    let err = m
        .build()
        .issue(&client(SECRET), None, &anonymous_ctx())
        .await
        .unwrap_err();

    match err {
        TokenRequestError::InvalidClient(got) => assert_eq!(got, reason),
        other => panic!("expected InvalidClient({reason}), got {other:?}"),
    }
}

#[tokio::test]
async fn issue_refuses_a_revoked_credential() {
    let revoked = Credential {
        revoked_at: Some(now() - Duration::minutes(1)),
        ..credential()
    };
    refused_with_correct_secret(active_agent(), revoked, "credential_revoked").await;
}

#[tokio::test]
async fn issue_refuses_an_expired_credential() {
    for expires_at in [now(), now() - Duration::days(1)] {
        let expired = Credential {
            expires_at: Some(expires_at),
            ..credential()
        };
        refused_with_correct_secret(active_agent(), expired, "credential_expired").await;
    }
}

#[tokio::test]
async fn issue_refuses_a_suspended_agent() {
    let suspended = agent(AgentStatus::Suspended, &["resume:read"]);
    refused_with_correct_secret(suspended, credential(), "agent_suspended").await;
}

#[tokio::test]
async fn issue_refuses_a_decommissioned_agent() {
    let gone = agent(AgentStatus::Decommissioned, &["resume:read"]);
    refused_with_correct_secret(gone, credential(), "agent_decommissioned").await;
}

// ----- quota and stores -------------------------------------------------------------

#[tokio::test]
async fn issue_refuses_a_spent_monthly_quota_without_signing() {
    let mut m = TokenMocks::new();
    authenticates(&mut m, active_agent(), credential());
    quota(&mut m, false);
    m.codec.expect_sign().never();
    audits_failure(&mut m, "monthly_quota_exceeded");

    let err = m
        .build()
        .issue(&client(SECRET), None, &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(matches!(err, TokenRequestError::QuotaExceeded), "{err:?}");
}

#[tokio::test]
async fn issue_reports_an_unreachable_agent_store_as_unavailable() {
    let mut m = TokenMocks::new();
    m.agents
        .expect_find_for_authentication()
        .times(1)
        .returning(|_| Err(unavailable()));
    m.audit.expect_append().never();
    nothing_issued(&mut m);

    let err = m
        .build()
        .issue(&client(SECRET), None, &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_reports_an_unreachable_usage_counter_as_unavailable() {
    let mut m = TokenMocks::new();
    authenticates(&mut m, active_agent(), credential());
    m.usage
        .expect_try_consume()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    m.codec.expect_sign().never();
    m.audit.expect_append().never();

    let err = m
        .build()
        .issue(&client(SECRET), None, &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_answers_no_token_when_its_event_cannot_be_written() {
    // Contract section 6: the event is durable before the response is sent.
    let mut m = TokenMocks::new();
    authenticates(&mut m, active_agent(), credential());
    quota(&mut m, true);
    signs(&mut m);
    m.audit
        .expect_append()
        .times(1)
        .returning(|_| Err(unavailable()));

    let err = m
        .build()
        .issue(&client(SECRET), None, &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_reports_an_unwritable_failure_event_as_unavailable() {
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![]);
    dummy_verification(&mut m, WRONG_SECRET);
    m.audit
        .expect_append()
        .times(1)
        .returning(|_| Err(unavailable()));

    let err = m
        .build()
        .issue(&client(WRONG_SECRET), None, &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

// ----- client_principal (introspection and revocation by client credentials) ------

#[tokio::test]
async fn client_principal_holds_the_agents_capabilities() {
    let mut m = TokenMocks::new();
    authenticates(&mut m, active_agent(), credential());
    m.audit.expect_append().never();
    nothing_issued(&mut m);

    let principal = m
        .build()
        .client_principal(&client(SECRET), &anonymous_ctx())
        .await
        .unwrap();

    assert_eq!(
        principal,
        Principal {
            agent_id: TARGET,
            owner: owner(),
            scopes: scopes(&["resume:read", "agents:read", "files:write"]),
            token_id: None,
            credential_id: CREDENTIAL,
        }
    );
}

#[tokio::test]
async fn client_principal_refuses_a_wrong_secret_as_authentication() {
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![]);
    dummy_verification(&mut m, WRONG_SECRET);
    audits_failure(&mut m, "invalid_client_secret");

    let err = m
        .build()
        .client_principal(&client(WRONG_SECRET), &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Authentication(_)), "{err:?}");
}

#[tokio::test]
async fn client_principal_reports_an_unreachable_store_as_unavailable() {
    let mut m = TokenMocks::new();
    m.agents
        .expect_find_for_authentication()
        .times(1)
        .returning(|_| Err(unavailable()));

    let err = m
        .build()
        .client_principal(&client(SECRET), &anonymous_ctx())
        .await
        .unwrap_err();

    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

// ----- issue_admitted (rate limit and quota in one admission) -----------------------

/// The rate limiter's key, limit and window the caller passes through.
const RATE_KEY: &str = "client:7a49e700-0000-0000-0000-000000000001";
const RATE_LIMIT: u32 = 40;
const WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// A rate decision: allowed with 12 left, or refused for 30 s.
fn rate(allowed: bool) -> RateDecision {
    RateDecision {
        allowed,
        limit: RATE_LIMIT,
        remaining: if allowed { 12 } else { 0 },
        reset_at: now().timestamp() + 30,
        retry_after: if allowed { 0 } else { 30 },
    }
}

/// One admission of [`RATE_KEY`] and [`TARGET`]'s quota (its canonical id,
/// the configured limit) at now, answering `rate(allowed)` and `quota`.
fn admits(m: &mut TokenMocks, allowed: bool, quota: Option<QuotaDecision>) {
    m.admission
        .expect_admit()
        .withf(|rate_key, rate_limit, window, quota_key, quota_limit, at| {
            rate_key == RATE_KEY
                && *rate_limit == RATE_LIMIT
                && *window == WINDOW
                && quota_key == TARGET.to_string()
                && *quota_limit == 250
                && *at == now()
        })
        .times(1)
        .returning(move |_, _, _, _, _, _| {
            Ok(Admission {
                rate: rate(allowed),
                quota,
            })
        });
}

/// A unit was granted by the admission (17 used, this one included).
const GRANTED: Option<QuotaDecision> = Some(QuotaDecision {
    allowed: true,
    used: 17,
});
/// The quota was spent before this request.
const SPENT: Option<QuotaDecision> = Some(QuotaDecision {
    allowed: false,
    used: 250,
});

/// The unit of [`TARGET`] taken at now is given back once.
fn refunds(m: &mut TokenMocks) {
    m.usage
        .expect_refund()
        .withf(|key, taken_at| key == TARGET.to_string() && *taken_at == now())
        .times(1)
        .returning(|_, _| Ok(()));
}

/// The quota is never asked again, nor given back.
fn no_second_quota_call(m: &mut TokenMocks) {
    m.usage.expect_try_consume().never();
    m.usage.expect_refund().never();
}

/// One `token.issued` event about [`TARGET`].
fn audits_issue(m: &mut TokenMocks) {
    m.audit
        .expect_append()
        .withf(|event| {
            is_event(
                event,
                AuditAction::TokenIssued,
                Outcome::Success,
                TARGET,
                Some(TARGET),
            ) && event.metadata["credentialId"] == json!(CREDENTIAL)
        })
        .times(1)
        .returning(|_| Ok(()));
}

async fn issue_admitted(
    m: TokenMocks,
    client: &ClientCredentials,
    scope: Option<&str>,
) -> (Option<RateDecision>, Result<IssuedToken, TokenRequestError>) {
    m.build()
        .issue_admitted(
            client,
            scope,
            RATE_KEY,
            RATE_LIMIT,
            WINDOW,
            &anonymous_ctx(),
        )
        .await
}

#[tokio::test]
async fn issue_admitted_issues_on_the_admitted_unit_without_taking_another() {
    let mut m = TokenMocks::new();
    admits(&mut m, true, GRANTED);
    authenticates(&mut m, active_agent(), credential());
    no_second_quota_call(&mut m);
    let signed = issued_claims("agents:read files:write resume:read");
    m.codec
        .expect_sign()
        .withf(move |claims| *claims == signed)
        .times(1)
        .returning(|_| Ok(TOKEN.to_owned()));
    audits_issue(&mut m);

    let (decision, outcome) = issue_admitted(m, &client(SECRET), None).await;

    assert_eq!(decision, Some(rate(true)));
    let issued = outcome.unwrap();
    assert_eq!(issued.access_token, TOKEN);
    assert_eq!(issued.expires_in, 1800);
    assert_eq!(issued.scope, "agents:read files:write resume:read");
}

#[tokio::test]
async fn issue_admitted_keys_the_quota_by_the_canonical_agent_id() {
    // A client id in another spelling of the same UUID: the rate key is the
    // caller's, the quota key is the one `issue` uses.
    let mut m = TokenMocks::new();
    admits(&mut m, true, GRANTED);
    authenticates(&mut m, active_agent(), credential());
    no_second_quota_call(&mut m);
    signs(&mut m);
    audits_issue(&mut m);
    let client = ClientCredentials {
        client_id: TARGET.to_string().to_uppercase(),
        client_secret: secret(SECRET),
    };

    let (_, outcome) = issue_admitted(m, &client, None).await;

    outcome.unwrap();
}

#[tokio::test]
async fn issue_admitted_refuses_a_spent_quota_only_after_authentication() {
    let mut m = TokenMocks::new();
    admits(&mut m, true, SPENT);
    authenticates(&mut m, active_agent(), credential());
    no_second_quota_call(&mut m);
    m.codec.expect_sign().never();
    audits_failure(&mut m, "monthly_quota_exceeded");

    let (decision, outcome) = issue_admitted(m, &client(SECRET), None).await;

    assert_eq!(decision, Some(rate(true)));
    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::QuotaExceeded), "{err:?}");
}

#[tokio::test]
async fn issue_admitted_hides_a_spent_quota_from_a_wrong_secret() {
    let mut m = TokenMocks::new();
    admits(&mut m, true, SPENT);
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![credential()]);
    verifies(&mut m, WRONG_SECRET, stored_hash(), false);
    dummy_verification(&mut m, WRONG_SECRET);
    audits_failure(&mut m, "invalid_client_secret");
    // No unit was taken, so none is given back.
    no_second_quota_call(&mut m);
    m.codec.expect_sign().never();

    let (_, outcome) = issue_admitted(m, &client(WRONG_SECRET), None).await;

    let err = outcome.unwrap_err();
    assert!(
        matches!(
            err,
            TokenRequestError::InvalidClient("invalid_client_secret")
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn issue_admitted_gives_back_the_unit_of_a_wrong_secret() {
    let mut m = TokenMocks::new();
    admits(&mut m, true, GRANTED);
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![credential()]);
    verifies(&mut m, WRONG_SECRET, stored_hash(), false);
    dummy_verification(&mut m, WRONG_SECRET);
    audits_failure(&mut m, "invalid_client_secret");
    m.usage.expect_try_consume().never();
    refunds(&mut m);
    m.codec.expect_sign().never();

    let (decision, outcome) = issue_admitted(m, &client(WRONG_SECRET), None).await;

    assert_eq!(decision, Some(rate(true)));
    let err = outcome.unwrap_err();
    assert!(
        matches!(
            err,
            TokenRequestError::InvalidClient("invalid_client_secret")
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn issue_admitted_gives_back_the_unit_of_an_unknown_agent() {
    let mut m = TokenMocks::new();
    admits(&mut m, true, GRANTED);
    m.agents
        .expect_find_for_authentication()
        .withf(|id| *id == TARGET)
        .times(1)
        .returning(|_| Ok(None));
    dummy_verification(&mut m, SECRET);
    m.audit.expect_append().never();
    m.usage.expect_try_consume().never();
    refunds(&mut m);

    let (_, outcome) = issue_admitted(m, &client(SECRET), None).await;

    let err = outcome.unwrap_err();
    assert!(
        matches!(err, TokenRequestError::InvalidClient(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn issue_admitted_gives_back_the_unit_of_an_invalid_scope() {
    let mut m = TokenMocks::new();
    admits(&mut m, true, GRANTED);
    authenticates(&mut m, active_agent(), credential());
    audits_failure(&mut m, "invalid_scope");
    m.usage.expect_try_consume().never();
    refunds(&mut m);
    m.codec.expect_sign().never();

    let (_, outcome) = issue_admitted(m, &client(SECRET), Some("audit:read")).await;

    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::InvalidScope), "{err:?}");
}

#[tokio::test]
async fn issue_admitted_gives_back_the_unit_when_signing_fails() {
    let mut m = TokenMocks::new();
    admits(&mut m, true, GRANTED);
    authenticates(&mut m, active_agent(), credential());
    m.usage.expect_try_consume().never();
    m.codec
        .expect_sign()
        .times(1)
        .returning(|_| Err(crate::StoreError::Unknown(anyhow::anyhow!("no key"))));
    m.audit.expect_append().never();
    refunds(&mut m);

    let (_, outcome) = issue_admitted(m, &client(SECRET), None).await;

    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unknown(_)), "{err:?}");
}

#[tokio::test]
async fn issue_admitted_gives_back_the_unit_when_the_event_cannot_be_written() {
    let mut m = TokenMocks::new();
    admits(&mut m, true, GRANTED);
    authenticates(&mut m, active_agent(), credential());
    m.usage.expect_try_consume().never();
    signs(&mut m);
    m.audit
        .expect_append()
        .times(1)
        .returning(|_| Err(unavailable()));
    refunds(&mut m);

    let (_, outcome) = issue_admitted(m, &client(SECRET), None).await;

    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_admitted_reports_a_failed_refund_as_unavailable() {
    let mut m = TokenMocks::new();
    admits(&mut m, true, GRANTED);
    authenticates(&mut m, active_agent(), credential());
    audits_failure(&mut m, "invalid_scope");
    m.usage.expect_try_consume().never();
    m.usage
        .expect_refund()
        .times(1)
        .returning(|_, _| Err(unavailable()));

    let (decision, outcome) = issue_admitted(m, &client(SECRET), Some("audit:read")).await;

    assert_eq!(decision, Some(rate(true)));
    let err = outcome.unwrap_err();
    match err {
        TokenRequestError::Unavailable(cause) => {
            let cause = format!("{cause:#}");
            assert!(cause.contains("invalid scope"), "{cause}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn issue_admitted_does_nothing_else_when_the_rate_limit_refuses() {
    let mut m = TokenMocks::new();
    admits(&mut m, false, None);
    m.agents.expect_find_for_authentication().never();
    m.credentials.expect_find_by_hint().never();
    m.hasher.expect_lookup_hint().never();
    m.hasher.expect_verify().never();
    m.hasher.expect_verify_dummy().never();
    m.audit.expect_append().never();
    no_second_quota_call(&mut m);
    m.codec.expect_sign().never();

    let (decision, outcome) = issue_admitted(m, &client(SECRET), None).await;

    assert_eq!(decision, Some(rate(false)));
    let err = outcome.unwrap_err();
    assert!(
        matches!(err, TokenRequestError::RateLimited { retry_after: 30 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn issue_admitted_reports_an_unreachable_admission_as_unavailable() {
    let mut m = TokenMocks::new();
    m.admission
        .expect_admit()
        .times(1)
        .returning(|_, _, _, _, _, _| Err(unavailable()));
    m.agents.expect_find_for_authentication().never();
    m.hasher.expect_verify_dummy().never();
    m.audit.expect_append().never();
    no_second_quota_call(&mut m);

    let (decision, outcome) = issue_admitted(m, &client(SECRET), None).await;

    assert_eq!(decision, None);
    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_admitted_takes_no_client_whose_id_names_no_agent() {
    let mut m = TokenMocks::new();
    m.admission.expect_admit().never();
    m.agents.expect_find_for_authentication().never();
    m.hasher.expect_verify_dummy().never();
    let client = ClientCredentials {
        client_id: "screener-01".into(),
        client_secret: secret(SECRET),
    };

    let (decision, outcome) = issue_admitted(m, &client, None).await;

    assert_eq!(decision, None);
    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unknown(_)), "{err:?}");
}
