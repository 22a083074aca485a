//! `TokenService::issue`: the client credentials grant for a client that
//! authenticated (see `client_auth.rs`), under the agent's rate limit and
//! monthly quota (contract section 7).

use chrono::{TimeZone, Utc};
use serde_json::json;

use super::fixtures::*;
use crate::admission::{RATE_WINDOW, agent_key, month_start};
use crate::audit::AuditEvent;
use crate::entities::{Agent, Credential, CredentialKey};
use crate::ports::{Admission, QuotaDecision, RateDecision};
use crate::services::{AuthenticatedClient, IssuedToken, TokenRequest, TokenRequestError};
use crate::token::{AccessTokenClaims, Audience};
use crate::values::{AuditAction, EventId, Outcome};

fn authenticated(agent: Agent, credential: Credential) -> AuthenticatedClient {
    AuthenticatedClient {
        agent,
        credential,
        method: "client_secret_basic",
    }
}

/// The active [`TARGET`] through its [`CREDENTIAL`].
fn client() -> AuthenticatedClient {
    authenticated(active_agent(), credential())
}

async fn issue(
    m: TokenMocks,
    client: &AuthenticatedClient,
    scope: Option<&str>,
) -> (Option<RateDecision>, Result<IssuedToken, TokenRequestError>) {
    let request = TokenRequest {
        scope,
        ..TokenRequest::default()
    };
    m.build().issue(client, request, &anonymous_ctx()).await
}

/// The agent's window, by name.
const AGENT_WINDOW: &str = "agent:7a49e700-0000-0000-0000-000000000001";

/// A rate decision of the agent's window: allowed with 12 left, or refused
/// for 30 s.
fn rate(allowed: bool) -> RateDecision {
    RateDecision {
        allowed,
        limit: RATE_LIMIT,
        remaining: if allowed { 12 } else { 0 },
        reset_at: now().timestamp() + 30,
        retry_after: if allowed { 0 } else { 30 },
    }
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

fn admitted(allowed: bool, quota: Option<QuotaDecision>) -> Option<Admission> {
    Some(Admission {
        rate: rate(allowed),
        quota,
    })
}

/// Admission of the agent's window and [`TARGET`]'s quota (its canonical
/// id), with the configured limits, at now: once per answer, in order.
fn admits(m: &mut TokenMocks, answers: Vec<Option<Admission>>, calls: &Captured<&'static str>) {
    let calls = calls.clone();
    let times = answers.len();
    let mut answers = answers.into_iter();
    m.admission
        .expect_admit()
        .withf(|rate_key, rate_limit, window, quota_key, quota_limit, at| {
            rate_key == agent_key(TARGET)
                && rate_key == AGENT_WINDOW
                && *rate_limit == RATE_LIMIT
                && *window == RATE_WINDOW
                && quota_key == TARGET.to_string()
                && *quota_limit == 250
                && *at == now()
        })
        .times(times)
        .returning(move |_, _, _, _, _, _| {
            calls.push("admit");
            Ok(answers.next().unwrap())
        });
}

/// One admission answering `rate(allowed)` and `quota`.
fn admits_once(m: &mut TokenMocks, allowed: bool, quota: Option<QuotaDecision>) {
    admits(m, vec![admitted(allowed, quota)], &Captured::new());
}

/// The agent's window alone is hit once (no quota at stake), answering
/// `rate(allowed)`.
fn hits_agent_window(m: &mut TokenMocks, allowed: bool) {
    m.limiter
        .expect_hit()
        .withf(|key, limit, window, at| {
            key == AGENT_WINDOW && *limit == RATE_LIMIT && *window == RATE_WINDOW && *at == now()
        })
        .times(1)
        .returning(move |_, _, _, _| Ok(rate(allowed)));
}

/// No quota unit is taken, given back or rebuilt.
fn no_quota(m: &mut TokenMocks) {
    m.admission.expect_admit().never();
    no_other_quota_call(m);
}

/// Nothing but admission touches the quota: no separate consumption, no
/// refund, no rebuilding.
fn no_other_quota_call(m: &mut TokenMocks) {
    m.usage.expect_try_consume().never();
    m.usage.expect_refund().never();
    m.usage.expect_seed().never();
    m.audit.expect_tokens_issued_by().never();
}

/// Authentication is not redone: no store read, no hash, no failure window.
fn no_authentication(m: &mut TokenMocks) {
    m.agents.expect_find_for_authentication().never();
    m.credentials.expect_find_by_hint().never();
    m.hasher.expect_verify().never();
    m.hasher.expect_verify_dummy().never();
    m.limiter.expect_reserve().never();
    m.limiter.expect_release().never();
}

/// The token is signed once, whatever the claims, as [`TOKEN`].
fn signs(m: &mut TokenMocks) {
    m.codec
        .expect_sign()
        .times(1)
        .returning(|_| Ok(TOKEN.to_owned()));
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

/// The unit of [`TARGET`] taken at now is given back once.
fn refunds(m: &mut TokenMocks) {
    m.usage
        .expect_refund()
        .withf(|key, taken_at| key == TARGET.to_string() && *taken_at == now())
        .times(1)
        .returning(|_, _| Ok(()));
}

fn issued_claims(scope: &str) -> AccessTokenClaims {
    let iat = now().timestamp();
    AccessTokenClaims {
        iss: "https://idp.acme.test".into(),
        sub: TARGET.to_string(),
        aud: Audience::One("https://api.acme.test".into()),
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
        cnf: None,
        act: None,
        dlg: Vec::new(),
    }
}

// ----- success -------------------------------------------------------------------

#[tokio::test]
async fn issue_grants_every_capability_sorted_when_no_scope_is_asked() {
    let ctx = anonymous_ctx();
    let mut m = TokenMocks::new();
    admits_once(&mut m, true, GRANTED);
    no_other_quota_call(&mut m);
    no_authentication(&mut m);
    m.limiter.expect_hit().never();
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
            "authMethod": "client_secret_basic",
            "scope": "agents:read files:write resume:read",
            "expiresAt": expected_claims.exp,
        }),
        timestamp: now(),
        sequence: None,
        hash: None,
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

    let (decision, outcome) = issue(m, &client(), None).await;

    assert_eq!(decision, Some(rate(true)));
    let issued = outcome.unwrap();
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
    admits_once(&mut m, true, GRANTED);
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

    let (_, outcome) = issue(m, &client(), Some("resume:read files:write")).await;

    assert_eq!(outcome.unwrap().scope, "files:write resume:read");
}

#[tokio::test]
async fn issue_names_the_credential_the_client_authenticated_with() {
    let other = Credential {
        credential_id: OTHER_CREDENTIAL,
        key: CredentialKey::Secret(new_hash()),
        ..credential()
    };
    let mut m = TokenMocks::new();
    admits_once(&mut m, true, GRANTED);
    m.codec
        .expect_sign()
        .withf(|claims| claims.cid == OTHER_CREDENTIAL.to_string())
        .times(1)
        .returning(|_| Ok(TOKEN.to_owned()));
    m.audit
        .expect_append()
        .withf(|event| event.metadata["credentialId"] == json!(OTHER_CREDENTIAL))
        .times(1)
        .returning(|_| Ok(()));

    let (_, outcome) = issue(m, &authenticated(active_agent(), other), None).await;

    outcome.unwrap();
}

// ----- scope -----------------------------------------------------------------------

/// An invalid scope: only the agent's window is hit, no unit is at stake,
/// `auth.failed invalid_scope` is written.
async fn refused_scope(raw: &str) {
    let mut m = TokenMocks::new();
    hits_agent_window(&mut m, true);
    no_quota(&mut m);
    no_authentication(&mut m);
    audits_failure(&mut m, "invalid_scope");
    m.codec.expect_sign().never();

    let (decision, outcome) = issue(m, &client(), Some(raw)).await;

    assert_eq!(decision, Some(rate(true)), "{raw:?}");
    let err = outcome.unwrap_err();
    assert!(
        matches!(err, TokenRequestError::InvalidScope),
        "{raw:?}: {err:?}"
    );
}

#[tokio::test]
async fn issue_refuses_a_scope_outside_the_capabilities_without_taking_quota() {
    refused_scope("resume:read audit:read").await;
}

#[tokio::test]
async fn issue_refuses_a_malformed_scope_without_taking_quota() {
    for raw in [
        "",
        "Resume:Read",
        "resume:read  files:write",
        " resume:read",
        "resume:read ",
        "resume:read\tfiles:write",
    ] {
        refused_scope(raw).await;
    }
}

#[tokio::test]
async fn issue_refuses_a_spent_rate_limit_before_an_invalid_scope() {
    let mut m = TokenMocks::new();
    hits_agent_window(&mut m, false);
    no_quota(&mut m);
    m.audit.expect_append().never();
    m.codec.expect_sign().never();

    let (decision, outcome) = issue(m, &client(), Some("audit:read")).await;

    assert_eq!(decision, Some(rate(false)));
    let err = outcome.unwrap_err();
    assert!(
        matches!(err, TokenRequestError::RateLimited { retry_after: 30 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn issue_reports_an_unreachable_limiter_on_an_invalid_scope_as_unavailable() {
    let mut m = TokenMocks::new();
    m.limiter
        .expect_hit()
        .times(1)
        .returning(|_, _, _, _| Err(unavailable()));
    no_quota(&mut m);
    m.audit.expect_append().never();

    let (decision, outcome) = issue(m, &client(), Some("audit:read")).await;

    assert_eq!(decision, None);
    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_reports_an_unwritable_invalid_scope_event_as_unavailable() {
    let mut m = TokenMocks::new();
    hits_agent_window(&mut m, true);
    no_quota(&mut m);
    m.audit
        .expect_append()
        .times(1)
        .returning(|_| Err(unavailable()));

    let (_, outcome) = issue(m, &client(), Some("audit:read")).await;

    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

// ----- rate limit and quota ---------------------------------------------------------

#[tokio::test]
async fn issue_admits_the_agents_window_and_quota_in_one_step() {
    assert_eq!(agent_key(TARGET), AGENT_WINDOW);
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    admits(&mut m, vec![admitted(true, GRANTED)], &calls);
    no_other_quota_call(&mut m);
    m.limiter.expect_hit().never();
    signs(&mut m);
    audits_issue(&mut m);

    let (decision, outcome) = issue(m, &client(), Some("resume:read")).await;

    assert_eq!(decision, Some(rate(true)));
    outcome.unwrap();
    assert_eq!(calls.all(), ["admit"]);
}

#[tokio::test]
async fn issue_does_nothing_else_when_the_rate_limit_refuses() {
    let mut m = TokenMocks::new();
    admits_once(&mut m, false, None);
    no_other_quota_call(&mut m);
    no_authentication(&mut m);
    m.audit.expect_append().never();
    m.codec.expect_sign().never();

    let (decision, outcome) = issue(m, &client(), None).await;

    assert_eq!(decision, Some(rate(false)));
    let err = outcome.unwrap_err();
    assert!(
        matches!(err, TokenRequestError::RateLimited { retry_after: 30 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn issue_refuses_a_spent_monthly_quota_without_signing() {
    let mut m = TokenMocks::new();
    admits_once(&mut m, true, SPENT);
    no_other_quota_call(&mut m);
    m.codec.expect_sign().never();
    audits_failure(&mut m, "monthly_quota_exceeded");

    let (decision, outcome) = issue(m, &client(), None).await;

    assert_eq!(decision, Some(rate(true)));
    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::QuotaExceeded), "{err:?}");
}

#[tokio::test]
async fn issue_reports_an_unwritable_quota_event_as_unavailable_and_refunds_nothing() {
    let mut m = TokenMocks::new();
    admits_once(&mut m, true, SPENT);
    no_other_quota_call(&mut m);
    m.codec.expect_sign().never();
    m.audit
        .expect_append()
        .times(1)
        .returning(|_| Err(unavailable()));

    let (_, outcome) = issue(m, &client(), None).await;

    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_reports_an_unreachable_admission_as_unavailable() {
    let mut m = TokenMocks::new();
    m.admission
        .expect_admit()
        .times(1)
        .returning(|_, _, _, _, _, _| Err(unavailable()));
    no_other_quota_call(&mut m);
    m.audit.expect_append().never();
    m.codec.expect_sign().never();

    let (decision, outcome) = issue(m, &client(), None).await;

    assert_eq!(decision, None);
    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_treats_an_allowed_admission_without_a_quota_decision_as_a_bug() {
    let mut m = TokenMocks::new();
    admits_once(&mut m, true, None);
    no_other_quota_call(&mut m);
    m.audit.expect_append().never();
    m.codec.expect_sign().never();

    let (_, outcome) = issue(m, &client(), None).await;

    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unknown(_)), "{err:?}");
}

// ----- a monthly counter lost with the cache ----------------------------------------

/// The month's `token.issued` events of [`TARGET`] (owner `acme`) since
/// the month's first instant are counted once, answering `count`.
fn counts_the_months_tokens(m: &mut TokenMocks, count: u64, calls: &Captured<&'static str>) {
    let calls = calls.clone();
    m.audit
        .expect_tokens_issued_by()
        .withf(|owner_, agent, since| {
            *owner_ == owner()
                && *agent == TARGET
                && *since == month_start(now())
                && *since == Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        })
        .times(1)
        .returning(move |_, _, _| {
            calls.push("tokens_issued_by");
            Ok(count)
        });
}

/// [`TARGET`]'s counter for now's month is seeded once with `used`.
fn seeds(m: &mut TokenMocks, used: u64, calls: &Captured<&'static str>) {
    let calls = calls.clone();
    m.usage
        .expect_seed()
        .withf(move |key, seeded, at| key == TARGET.to_string() && *seeded == used && *at == now())
        .times(1)
        .returning(move |_, _, _| {
            calls.push("seed");
            Ok(())
        });
}

#[tokio::test]
async fn issue_rebuilds_a_lost_counter_from_the_months_events_then_admits_again() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    admits(&mut m, vec![None, admitted(true, GRANTED)], &calls);
    counts_the_months_tokens(&mut m, 17, &calls);
    seeds(&mut m, 17, &calls);
    m.usage.expect_refund().never();
    signs(&mut m);
    audits_issue(&mut m);

    let (decision, outcome) = issue(m, &client(), None).await;

    assert_eq!(decision, Some(rate(true)));
    outcome.unwrap();
    assert_eq!(calls.all(), ["admit", "tokens_issued_by", "seed", "admit"]);
}

#[tokio::test]
async fn issue_refuses_a_quota_the_rebuilt_counter_shows_spent() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    admits(&mut m, vec![None, admitted(true, SPENT)], &calls);
    counts_the_months_tokens(&mut m, 250, &calls);
    seeds(&mut m, 250, &calls);
    m.usage.expect_refund().never();
    m.codec.expect_sign().never();
    audits_failure(&mut m, "monthly_quota_exceeded");

    let (_, outcome) = issue(m, &client(), None).await;

    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::QuotaExceeded), "{err:?}");
}

#[tokio::test]
async fn issue_is_unavailable_when_the_counter_is_lost_again_after_rebuilding() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    admits(&mut m, vec![None, None], &calls);
    counts_the_months_tokens(&mut m, 17, &calls);
    seeds(&mut m, 17, &calls);
    m.usage.expect_refund().never();
    m.codec.expect_sign().never();
    m.audit.expect_append().never();

    let (decision, outcome) = issue(m, &client(), None).await;

    assert_eq!(decision, None);
    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
    assert_eq!(calls.all(), ["admit", "tokens_issued_by", "seed", "admit"]);
}

#[tokio::test]
async fn issue_is_unavailable_when_the_months_events_cannot_be_counted() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    admits(&mut m, vec![None], &calls);
    m.audit
        .expect_tokens_issued_by()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    m.usage.expect_seed().never();
    m.codec.expect_sign().never();
    m.audit.expect_append().never();

    let (decision, outcome) = issue(m, &client(), None).await;

    assert_eq!(decision, None);
    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_is_unavailable_when_the_counter_cannot_be_seeded() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    admits(&mut m, vec![None], &calls);
    counts_the_months_tokens(&mut m, 17, &calls);
    m.usage
        .expect_seed()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    m.codec.expect_sign().never();
    m.audit.expect_append().never();

    let (_, outcome) = issue(m, &client(), None).await;

    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

// ----- only an issued token spends a unit -------------------------------------------

#[tokio::test]
async fn issue_gives_back_the_unit_when_signing_fails() {
    let mut m = TokenMocks::new();
    admits_once(&mut m, true, GRANTED);
    m.codec
        .expect_sign()
        .times(1)
        .returning(|_| Err(crate::StoreError::Unknown(anyhow::anyhow!("no key"))));
    m.audit.expect_append().never();
    refunds(&mut m);

    let (decision, outcome) = issue(m, &client(), None).await;

    assert_eq!(decision, Some(rate(true)));
    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unknown(_)), "{err:?}");
}

#[tokio::test]
async fn issue_answers_no_token_and_gives_back_the_unit_when_its_event_cannot_be_written() {
    // Contract section 6: the event is durable before the response is sent.
    let mut m = TokenMocks::new();
    admits_once(&mut m, true, GRANTED);
    signs(&mut m);
    m.audit
        .expect_append()
        .times(1)
        .returning(|_| Err(unavailable()));
    refunds(&mut m);

    let (_, outcome) = issue(m, &client(), None).await;

    let err = outcome.unwrap_err();
    assert!(matches!(err, TokenRequestError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn issue_reports_a_failed_refund_as_unavailable_naming_the_first_failure() {
    let mut m = TokenMocks::new();
    admits_once(&mut m, true, GRANTED);
    m.codec
        .expect_sign()
        .times(1)
        .returning(|_| Err(crate::StoreError::Unknown(anyhow::anyhow!("no key"))));
    m.usage
        .expect_refund()
        .times(1)
        .returning(|_, _| Err(unavailable()));

    let (decision, outcome) = issue(m, &client(), None).await;

    assert_eq!(decision, Some(rate(true)));
    match outcome.unwrap_err() {
        TokenRequestError::Unavailable(cause) => {
            let cause = format!("{cause:#}");
            assert!(cause.contains("no key"), "{cause}");
            assert!(cause.contains("connection refused"), "{cause}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}
