//! `TokenService::authenticate_client` with a client assertion
//! (`private_key_jwt`, RFC 7523 section 2.2, contract section 10).
//!
//! The assertions are compact JWS strings built by hand; the verifier mock
//! accepts exactly those signed [`GOOD_SIGNATURE`], so what is under test is
//! the domain's choice of key and its checks of the claims.

use std::net::IpAddr;

use chrono::Duration;
use serde_json::{Value, json};
use uuid::Uuid;

use super::fixtures::*;
use crate::admission::{address_key, auth_failure_key};
use crate::entities::{Agent, Credential, CredentialKey};
use crate::ports::{FirstUse, JwsError, RateDecision, Reservation};
use crate::services::{
    ASSERTION_IAT_SKEW, AuthenticatedClient, ClientAssertion, ClientAuthError, ClientAuthFailure,
    ClientAuthentication,
};
use crate::values::{AgentId, AgentStatus, CredentialId, JwsAlgorithm};

/// The `kid` of the target's key.
const KID: &str = "target-key-1";

/// Another agent of the same owner.
const OTHER_AGENT: AgentId = AgentId(Uuid::from_u128(0x07e4_0000_0000_0000_0000_0000_0000_0001));

/// Now, in whole seconds (NumericDate).
fn now_secs() -> i64 {
    now().timestamp()
}

/// The header of a good assertion: RS256 under [`KID`].
fn header() -> Value {
    json!({ "alg": "RS256", "typ": "JWT", "kid": KID })
}

/// The claims of a good assertion of [`TARGET`]: made 10 s ago, valid for a
/// minute, audience the token endpoint.
fn claims() -> Value {
    json!({
        "iss": TARGET.to_string(),
        "sub": TARGET.to_string(),
        "aud": TOKEN_ENDPOINT,
        "iat": now_secs() - 10,
        "exp": now_secs() + 50,
        "jti": "assertion-0001",
    })
}

/// `claims()` with `change` applied.
fn claims_with(change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut claims = claims();
    change(claims.as_object_mut().unwrap());
    claims
}

/// An assertion signed [`GOOD_SIGNATURE`], without a `client_id` parameter.
fn signed(header: &Value, claims: &Value) -> ClientAssertion {
    ClientAssertion {
        client_id: None,
        assertion: compact_jws(header, claims, GOOD_SIGNATURE),
    }
}

fn jwt(assertion: ClientAssertion) -> ClientAuthentication {
    ClientAuthentication::PrivateKeyJwt(assertion)
}

/// The target's public-key credential: the RSA key under [`KID`].
fn rsa_credential() -> Credential {
    key_credential(CREDENTIAL, rsa_jwk(KID))
}

fn address() -> IpAddr {
    "203.0.113.7".parse().unwrap()
}

/// The windows an attempt claiming `client_id` reserves.
fn windows_of(client_id: &str) -> Vec<(String, u32)> {
    vec![
        (
            auth_failure_key(client_id, Some(address())),
            AUTH_FAILURE_LIMIT,
        ),
        (address_key(Some(address())), RATE_LIMIT),
    ]
}

fn decision(limit: u32, remaining: u32) -> RateDecision {
    let allowed = remaining > 0;
    RateDecision {
        allowed,
        limit,
        remaining,
        reset_at: now_secs() + 42,
        retry_after: if allowed { 0 } else { 42 },
    }
}

/// A reservation that counted the attempt of `client_id`.
fn granted(client_id: &str) -> Reservation {
    Reservation {
        granted: true,
        decisions: vec![decision(AUTH_FAILURE_LIMIT, 2), decision(RATE_LIMIT, 30)],
        keys: windows_of(client_id).into_iter().map(|(k, _)| k).collect(),
        entry: "entry-9".into(),
    }
}

/// The client id names `agent`, whose public keys are `candidates`; no
/// secret is looked up or hashed.
fn known_agent(m: &mut TokenMocks, agent: Agent, candidates: Vec<Credential>) {
    m.agents
        .expect_find_for_authentication()
        .withf(|id| *id == TARGET)
        .times(1)
        .returning(move |_| Ok(Some(agent.clone())));
    m.credentials
        .expect_find_public_keys()
        .withf(|id| *id == TARGET)
        .times(1)
        .returning(move |_| Ok(candidates.clone()));
    no_secret_work(m);
}

/// Nothing of a secret authentication happens.
fn no_secret_work(m: &mut TokenMocks) {
    m.credentials.expect_find_by_hint().never();
    m.hasher.expect_lookup_hint().never();
    m.hasher.expect_recently_verified().never();
    m.hasher.expect_verify().never();
    m.hasher.expect_verify_dummy().never();
}

/// The attempt of `client_id` reserves its windows once and is answered
/// `answer`.
fn reserves(m: &mut TokenMocks, client_id: &str, answer: Reservation) {
    let expected = windows_of(client_id);
    m.limiter
        .expect_reserve()
        .withf(move |asked, _, at| asked == expected.as_slice() && *at == now())
        .times(1)
        .returning(move |_, _, _| Ok(answer.clone()));
}

/// The reservation of [`TARGET`] is given back once.
fn releases(m: &mut TokenMocks) {
    let reservation = granted(&TARGET.to_string());
    m.limiter
        .expect_release()
        .withf(move |released| *released == reservation)
        .times(1)
        .returning(|_| Ok(()));
}

/// A known, active [`TARGET`] with the RSA key, the attempt reserved, the
/// verifier deciding by signature, and a replay guard that saw nothing.
fn accepting(m: &mut TokenMocks) {
    known_agent(m, active_agent(), vec![rsa_credential()]);
    reserves(m, &TARGET.to_string(), granted(&TARGET.to_string()));
    m.verifier_checks_signatures();
}

/// Mocks for an attempt of [`TARGET`] that fails with `reason` after the
/// reservation: kept, and an `auth.failed` event with `reason`.
fn failing(m: &mut TokenMocks, reason: &'static str) {
    accepting(m);
    m.limiter.expect_release().never();
    audits_failure(m, reason);
}

async fn authenticate(
    m: TokenMocks,
    assertion: ClientAssertion,
) -> Result<AuthenticatedClient, ClientAuthError> {
    m.build()
        .authenticate_client(&jwt(assertion), &anonymous_ctx())
        .await
}

/// `err` is `Failed` with `reason` and the reservation's decision.
fn assert_failed(err: ClientAuthError, reason: ClientAuthFailure) {
    match err {
        ClientAuthError::Failed { reason: got, rate } => {
            assert_eq!(got, reason);
            assert_eq!(rate, Some(decision(AUTH_FAILURE_LIMIT, 2)));
        }
        other => panic!("expected Failed({reason}), got {other:?}"),
    }
}

/// `claims` (with [`header`]) is refused as an invalid assertion, with an
/// `auth.failed` event, before the replay guard is asked.
async fn refused_claims(claims: Value, case: &str) {
    let mut m = TokenMocks::new();
    failing(&mut m, "invalid_client_assertion");
    m.replay.expect_first_use().never();

    let err = authenticate(m, signed(&header(), &claims))
        .await
        .unwrap_err();

    match err {
        ClientAuthError::Failed { reason, .. } => {
            assert_eq!(reason, ClientAuthFailure::InvalidAssertion, "{case}");
        }
        other => panic!("{case}: expected InvalidAssertion, got {other:?}"),
    }
}

// ----- success -------------------------------------------------------------------

#[tokio::test]
async fn a_valid_assertion_authenticates_with_private_key_jwt_and_gives_the_reservation_back() {
    let mut m = TokenMocks::new();
    accepting(&mut m);
    releases(&mut m);
    let keys = Captured::new();
    let seen = keys.clone();
    m.replay
        .expect_first_use()
        .times(1)
        .returning(move |key, expires_at, at| {
            seen.push((key.to_owned(), expires_at, at));
            Ok(remembered_since(now() - Duration::days(1)))
        });
    m.audit.expect_append().never();

    let client = authenticate(m, signed(&header(), &claims())).await.unwrap();

    assert_eq!(client.method, "private_key_jwt");
    assert_eq!(client.agent.agent_id, TARGET);
    assert_eq!(client.credential, rsa_credential());
    let (key, expires_at, at) = keys.only();
    assert!(key.starts_with("assertion:"), "{key}");
    assert!(!key.contains("assertion-0001"), "the jti is hashed: {key}");
    assert_eq!(expires_at.timestamp(), now_secs() + 50);
    assert_eq!(at, now());
}

#[tokio::test]
async fn a_client_id_parameter_equal_to_sub_is_accepted() {
    let mut m = TokenMocks::new();
    accepting(&mut m);
    releases(&mut m);
    m.replay_accepts();
    m.audit.expect_append().never();
    let assertion = ClientAssertion {
        client_id: Some(TARGET.to_string()),
        ..signed(&header(), &claims())
    };

    let client = authenticate(m, assertion).await.unwrap();

    assert_eq!(client.credential.credential_id, CREDENTIAL);
}

#[tokio::test]
async fn aud_may_name_the_issuer_or_hold_the_token_endpoint_among_others() {
    for aud in [
        json!("https://idp.acme.test"),
        json!(["https://other.example", TOKEN_ENDPOINT]),
        json!(["https://idp.acme.test"]),
    ] {
        let mut m = TokenMocks::new();
        accepting(&mut m);
        releases(&mut m);
        m.replay_accepts();
        m.audit.expect_append().never();
        let claims = claims_with(|c| {
            c.insert("aud".into(), aud.clone());
        });

        let result = authenticate(m, signed(&header(), &claims)).await;

        assert!(result.is_ok(), "{aud}: {result:?}");
    }
}

#[tokio::test]
async fn the_time_limits_are_inclusive() {
    let cases = [
        // exp exactly iat + 300.
        claims_with(|c| {
            c.insert("iat".into(), json!(now_secs() - 100));
            c.insert("exp".into(), json!(now_secs() + 200));
        }),
        // No iat, exp exactly now + 300.
        claims_with(|c| {
            c.remove("iat");
            c.insert("exp".into(), json!(now_secs() + 300));
        }),
        // iat exactly 2 s ahead.
        claims_with(|c| {
            c.insert("iat".into(), json!(now_secs() + 2));
            c.insert("exp".into(), json!(now_secs() + 60));
        }),
        // nbf exactly at the 30 s leeway.
        claims_with(|c| {
            c.insert("nbf".into(), json!(now_secs() + 30));
        }),
    ];
    for claims in cases {
        let mut m = TokenMocks::new();
        accepting(&mut m);
        releases(&mut m);
        m.replay_accepts();
        m.audit.expect_append().never();

        let result = authenticate(m, signed(&header(), &claims)).await;

        assert!(result.is_ok(), "{claims}: {result:?}");
    }
}

// ----- claims that do not hold ---------------------------------------------------------

#[tokio::test]
async fn an_iss_naming_another_agent_fails_and_is_audited() {
    refused_claims(
        claims_with(|c| {
            c.insert("iss".into(), json!(OTHER_AGENT.to_string()));
        }),
        "iss of another agent",
    )
    .await;
}

#[tokio::test]
async fn a_client_id_parameter_other_than_sub_fails() {
    let mut m = TokenMocks::new();
    failing(&mut m, "invalid_client_assertion");
    m.replay.expect_first_use().never();
    let assertion = ClientAssertion {
        client_id: Some(OTHER_AGENT.to_string()),
        ..signed(&header(), &claims())
    };

    let err = authenticate(m, assertion).await.unwrap_err();

    assert_failed(err, ClientAuthFailure::InvalidAssertion);
}

#[tokio::test]
async fn an_aud_naming_neither_the_issuer_nor_the_token_endpoint_fails() {
    for aud in [
        json!("https://api.acme.test"),
        json!(["https://api.acme.test", "https://other.example"]),
        json!("https://idp.acme.test/"),
        json!(42),
    ] {
        refused_claims(
            claims_with(|c| {
                c.insert("aud".into(), aud.clone());
            }),
            &format!("aud {aud}"),
        )
        .await;
    }
    refused_claims(
        claims_with(|c| {
            c.remove("aud");
        }),
        "no aud",
    )
    .await;
}

#[tokio::test]
async fn bad_lifetimes_and_missing_claims_fail() {
    let n = now_secs();
    let cases: Vec<(&str, Value)> = vec![
        (
            "no exp",
            claims_with(|c| {
                c.remove("exp");
            }),
        ),
        (
            "exp in the past",
            claims_with(|c| {
                c.insert("exp".into(), json!(n - 1));
            }),
        ),
        (
            "exp now",
            claims_with(|c| {
                c.insert("exp".into(), json!(n));
            }),
        ),
        (
            "exp more than 300 s after iat",
            claims_with(|c| {
                c.insert("iat".into(), json!(n - 100));
                c.insert("exp".into(), json!(n + 201));
            }),
        ),
        (
            "no iat and exp more than 300 s ahead",
            claims_with(|c| {
                c.remove("iat");
                c.insert("exp".into(), json!(n + 301));
            }),
        ),
        (
            "iat more than 5 s ahead",
            claims_with(|c| {
                c.insert("iat".into(), json!(n + 6));
                c.insert("exp".into(), json!(n + 60));
            }),
        ),
        (
            "nbf beyond the leeway",
            claims_with(|c| {
                c.insert("nbf".into(), json!(n + 31));
            }),
        ),
        (
            "exp not a number",
            claims_with(|c| {
                c.insert("exp".into(), json!((n + 50).to_string()));
            }),
        ),
        (
            "no jti",
            claims_with(|c| {
                c.remove("jti");
            }),
        ),
        (
            "empty jti",
            claims_with(|c| {
                c.insert("jti".into(), json!(""));
            }),
        ),
    ];
    for (case, claims) in cases {
        refused_claims(claims, case).await;
    }
}

#[tokio::test]
async fn a_bad_signature_fails_without_asking_the_replay_guard() {
    let mut m = TokenMocks::new();
    failing(&mut m, "invalid_client_assertion");
    m.replay.expect_first_use().never();
    let assertion = ClientAssertion {
        client_id: None,
        assertion: compact_jws(&header(), &claims(), "forged"),
    };

    let err = authenticate(m, assertion).await.unwrap_err();

    assert_failed(err, ClientAuthFailure::InvalidAssertion);
}

// ----- single use ----------------------------------------------------------------

#[tokio::test]
async fn a_replayed_assertion_fails_as_replayed_and_is_audited() {
    let mut m = TokenMocks::new();
    failing(&mut m, "client_assertion_replayed");
    m.replay
        .expect_first_use()
        .times(1)
        .returning(|_, _, _| Ok(FirstUse::Replayed));

    let err = authenticate(m, signed(&header(), &claims()))
        .await
        .unwrap_err();

    assert_failed(err, ClientAuthFailure::AssertionReplayed);
}

#[tokio::test]
async fn an_assertion_that_may_predate_the_guards_memory_is_refused_as_replayed() {
    // The guard restarted 10 s ago: an assertion made 30 s ago could have
    // been used in the window it forgot.
    let since = now() - Duration::seconds(10);
    let mut m = TokenMocks::new();
    failing(&mut m, "client_assertion_replayed");
    m.replay
        .expect_first_use()
        .times(1)
        .returning(move |_, _, _| Ok(remembered_since(since)));
    let claims = claims_with(|c| {
        c.insert("iat".into(), json!(now_secs() - 30));
        c.insert("exp".into(), json!(now_secs() + 30));
    });

    let err = authenticate(m, signed(&header(), &claims))
        .await
        .unwrap_err();

    assert_failed(err, ClientAuthFailure::AssertionReplayed);
}

#[tokio::test]
async fn an_assertion_without_iat_counts_from_exp_minus_its_longest_lifetime() {
    // exp = now + 100 could have been accepted from now - 200 on.
    let since = now() - Duration::seconds(10);
    let mut m = TokenMocks::new();
    failing(&mut m, "client_assertion_replayed");
    m.replay
        .expect_first_use()
        .times(1)
        .returning(move |_, _, _| Ok(remembered_since(since)));
    let claims = claims_with(|c| {
        c.remove("iat");
        c.insert("exp".into(), json!(now_secs() + 100));
    });

    let err = authenticate(m, signed(&header(), &claims))
        .await
        .unwrap_err();

    assert_failed(err, ClientAuthFailure::AssertionReplayed);
}

#[tokio::test]
async fn an_assertion_made_after_the_guards_memory_began_passes() {
    // Remembering since 10 s ago; made 4 s ago (more than the skew after).
    let since = now() - Duration::seconds(10);
    let mut m = TokenMocks::new();
    accepting(&mut m);
    releases(&mut m);
    m.audit.expect_append().never();
    m.replay
        .expect_first_use()
        .times(1)
        .returning(move |_, _, _| Ok(remembered_since(since)));
    let claims = claims_with(|c| {
        c.insert("iat".into(), json!(now_secs() - 4));
        c.insert("exp".into(), json!(now_secs() + 56));
    });

    let client = authenticate(m, signed(&header(), &claims)).await.unwrap();

    assert_eq!(client.method, "private_key_jwt");
}

/// The boundary of the restart rule: the guard began remembering at
/// `since`; an assertion dated `ahead` seconds after `since`'s second.
async fn restart_boundary(ahead: i64) -> Result<AuthenticatedClient, ClientAuthError> {
    let since = now() - Duration::seconds(20);
    let mut m = TokenMocks::new();
    if ahead > ASSERTION_IAT_SKEW.num_seconds() {
        accepting(&mut m);
        releases(&mut m);
        m.audit.expect_append().never();
    } else {
        failing(&mut m, "client_assertion_replayed");
    }
    m.replay
        .expect_first_use()
        .times(1)
        .returning(move |_, _, _| Ok(remembered_since(since)));
    let iat = since.timestamp() + ahead;
    let claims = claims_with(|c| {
        c.insert("iat".into(), json!(iat));
        c.insert("exp".into(), json!(now_secs() + 60));
    });
    authenticate(m, signed(&header(), &claims)).await
}

#[tokio::test]
async fn an_assertion_dated_within_the_skew_of_the_guards_start_is_refused() {
    // Dated up to ASSERTION_IAT_SKEW after the guard's start second, it could
    // have been accepted in that second, before the guard remembered.
    let skew = ASSERTION_IAT_SKEW.num_seconds();
    for ahead in [0, skew] {
        let err = restart_boundary(ahead).await.unwrap_err();
        assert_failed(err, ClientAuthFailure::AssertionReplayed);
    }
    let client = restart_boundary(skew + 1).await.unwrap();
    assert_eq!(client.method, "private_key_jwt");
}

#[tokio::test]
async fn an_unreachable_replay_guard_is_unavailable_and_gives_the_reservation_back() {
    let mut m = TokenMocks::new();
    accepting(&mut m);
    releases(&mut m);
    m.audit.expect_append().never();
    m.replay
        .expect_first_use()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));

    let err = authenticate(m, signed(&header(), &claims()))
        .await
        .unwrap_err();

    assert!(matches!(err, ClientAuthError::Unavailable(_)), "{err:?}");
}

// ----- choice of key -------------------------------------------------------------

#[tokio::test]
async fn kid_selects_the_credential_and_only_its_key_is_tried() {
    let old = key_credential(OTHER_CREDENTIAL, rsa_jwk("old-key"));
    let mut m = TokenMocks::new();
    known_agent(&mut m, active_agent(), vec![old, rsa_credential()]);
    reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
    releases(&mut m);
    m.replay_accepts();
    m.audit.expect_append().never();
    let kids = Captured::new();
    let seen = kids.clone();
    m.verifier.expect_verify().returning(move |jws, key, _| {
        seen.push(key.kid().to_owned());
        verify_by_signature(jws)
    });

    let client = authenticate(m, signed(&header(), &claims())).await.unwrap();

    assert_eq!(client.credential.credential_id, CREDENTIAL);
    assert_eq!(kids.all(), vec![KID.to_owned()]);
}

#[tokio::test]
async fn without_kid_each_key_is_tried_until_one_verifies() {
    let old = key_credential(OTHER_CREDENTIAL, rsa_jwk("old-key"));
    let mut m = TokenMocks::new();
    known_agent(&mut m, active_agent(), vec![old, rsa_credential()]);
    reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
    releases(&mut m);
    m.replay_accepts();
    m.audit.expect_append().never();
    let kids = Captured::new();
    let seen = kids.clone();
    // Only the target's current key made the signature.
    m.verifier.expect_verify().returning(move |jws, key, _| {
        seen.push(key.kid().to_owned());
        if key.kid() == KID {
            verify_by_signature(jws)
        } else {
            Err(JwsError::Signature)
        }
    });

    let client = authenticate(m, signed(&json!({ "alg": "RS256" }), &claims()))
        .await
        .unwrap();

    assert_eq!(client.credential.credential_id, CREDENTIAL);
    assert_eq!(kids.all(), vec!["old-key".to_owned(), KID.to_owned()]);
}

#[tokio::test]
async fn a_kid_naming_no_key_of_the_agent_fails_without_verifying() {
    let mut m = TokenMocks::new();
    known_agent(&mut m, active_agent(), vec![rsa_credential()]);
    reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();
    audits_failure(&mut m, "invalid_client_assertion");

    let header = json!({ "alg": "RS256", "kid": "someone-elses-key" });
    let err = authenticate(m, signed(&header, &claims()))
        .await
        .unwrap_err();

    assert_failed(err, ClientAuthFailure::InvalidAssertion);
}

#[tokio::test]
async fn an_alg_the_key_does_not_allow_is_never_verified() {
    for alg in ["ES256", "EdDSA", "none", "HS256", "RS384", "rs256"] {
        let mut m = TokenMocks::new();
        known_agent(&mut m, active_agent(), vec![rsa_credential()]);
        reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
        m.verifier.expect_verify().never();
        m.replay.expect_first_use().never();
        audits_failure(&mut m, "invalid_client_assertion");

        let header = json!({ "alg": alg, "kid": KID });
        let err = authenticate(m, signed(&header, &claims()))
            .await
            .unwrap_err();

        assert!(
            matches!(
                err,
                ClientAuthError::Failed {
                    reason: ClientAuthFailure::InvalidAssertion,
                    ..
                }
            ),
            "{alg}: {err:?}"
        );
    }
}

#[tokio::test]
async fn the_verifier_is_offered_only_accepted_algorithms() {
    let mut m = TokenMocks::new();
    known_agent(&mut m, active_agent(), vec![rsa_credential()]);
    reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
    releases(&mut m);
    m.replay_accepts();
    m.audit.expect_append().never();
    m.verifier
        .expect_verify()
        .withf(|_, key, algorithms| {
            key.kid() == KID
                && !algorithms.is_empty()
                && algorithms.iter().all(|a| JwsAlgorithm::ALL.contains(a))
        })
        .times(1)
        .returning(|jws, _, _| verify_by_signature(jws));

    authenticate(m, signed(&header(), &claims())).await.unwrap();
}

#[tokio::test]
async fn a_secret_credential_is_never_tried_for_an_assertion() {
    // Even if the store handed one out among the public keys.
    let mut m = TokenMocks::new();
    known_agent(&mut m, active_agent(), vec![credential()]);
    reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();
    audits_failure(&mut m, "invalid_client_assertion");

    let err = authenticate(m, signed(&header(), &claims()))
        .await
        .unwrap_err();

    assert_failed(err, ClientAuthFailure::InvalidAssertion);
}

// ----- credential and agent state ------------------------------------------------------

#[tokio::test]
async fn a_revoked_or_expired_key_credential_fails_with_its_reason() {
    let cases = [
        (
            Credential {
                revoked_at: Some(now() - Duration::minutes(1)),
                ..rsa_credential()
            },
            ClientAuthFailure::CredentialRevoked,
            "credential_revoked",
        ),
        (
            Credential {
                expires_at: Some(now() - Duration::seconds(1)),
                ..rsa_credential()
            },
            ClientAuthFailure::CredentialExpired,
            "credential_expired",
        ),
    ];
    for (credential, reason, spelled) in cases {
        let mut m = TokenMocks::new();
        known_agent(&mut m, active_agent(), vec![credential]);
        reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
        m.verifier_checks_signatures();
        m.replay_accepts();
        m.limiter.expect_release().never();
        audits_failure(&mut m, spelled);

        let err = authenticate(m, signed(&header(), &claims()))
            .await
            .unwrap_err();

        assert_failed(err, reason);
    }
}

#[tokio::test]
async fn a_suspended_agent_fails_as_suspended() {
    let mut m = TokenMocks::new();
    known_agent(
        &mut m,
        agent(AgentStatus::Suspended, &["resume:read"]),
        vec![rsa_credential()],
    );
    reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
    m.verifier_checks_signatures();
    m.replay_accepts();
    m.limiter.expect_release().never();
    audits_failure(&mut m, "agent_suspended");

    let err = authenticate(m, signed(&header(), &claims()))
        .await
        .unwrap_err();

    assert_failed(err, ClientAuthFailure::AgentSuspended);
}

#[tokio::test]
async fn a_throttled_client_is_refused_before_any_signature_check() {
    let refused = Reservation {
        granted: false,
        decisions: vec![decision(AUTH_FAILURE_LIMIT, 0), decision(RATE_LIMIT, 30)],
        keys: windows_of(&TARGET.to_string())
            .into_iter()
            .map(|(k, _)| k)
            .collect(),
        entry: String::new(),
    };
    let mut m = TokenMocks::new();
    known_agent(&mut m, active_agent(), vec![rsa_credential()]);
    reserves(&mut m, &TARGET.to_string(), refused);
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();
    m.limiter.expect_release().never();
    m.audit.expect_append().never();

    let err = authenticate(m, signed(&header(), &claims()))
        .await
        .unwrap_err();

    match err {
        ClientAuthError::Throttled(decision) => {
            assert!(!decision.allowed);
            assert_eq!(decision.limit, AUTH_FAILURE_LIMIT);
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_agent_is_unknown_client_without_an_event() {
    let mut m = TokenMocks::new();
    m.agents
        .expect_find_for_authentication()
        .withf(|id| *id == OTHER_AGENT)
        .times(1)
        .returning(|_| Ok(None));
    m.credentials.expect_find_public_keys().never();
    no_secret_work(&mut m);
    let claimed = OTHER_AGENT.to_string();
    reserves(&mut m, &claimed, granted(&claimed));
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();
    m.limiter.expect_release().never();
    m.audit.expect_append().never();
    let claims = claims_with(|c| {
        c.insert("iss".into(), json!(claimed));
        c.insert("sub".into(), json!(claimed));
    });

    let err = authenticate(m, signed(&header(), &claims))
        .await
        .unwrap_err();

    assert_failed(err, ClientAuthFailure::UnknownClient);
}

#[tokio::test]
async fn a_public_key_credential_id_is_what_the_client_is_authenticated_under() {
    // The credential (and so the token's `cid`) is the key's, not a secret's.
    let id = CredentialId(Uuid::from_u128(0x6e7_0000_0000_0000_0000_0000_0000_0009));
    let mut m = TokenMocks::new();
    known_agent(
        &mut m,
        active_agent(),
        vec![key_credential(id, rsa_jwk(KID))],
    );
    reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
    releases(&mut m);
    m.verifier_checks_signatures();
    m.replay_accepts();
    m.audit.expect_append().never();

    let client = authenticate(m, signed(&header(), &claims())).await.unwrap();

    assert_eq!(client.principal().credential_id, id);
    assert!(matches!(client.credential.key, CredentialKey::PublicKey(_)));
}

#[tokio::test]
async fn a_key_registered_again_after_its_revocation_authenticates_under_the_active_credential() {
    // The same public key, once revoked and registered anew: the assertion is
    // signed by an active credential of the agent, whichever order the store
    // lists them in.
    let revoked = Credential {
        credential_id: OTHER_CREDENTIAL,
        revoked_at: Some(now() - Duration::days(1)),
        ..rsa_credential()
    };
    let mut m = TokenMocks::new();
    known_agent(&mut m, active_agent(), vec![revoked, rsa_credential()]);
    reserves(&mut m, &TARGET.to_string(), granted(&TARGET.to_string()));
    m.verifier_checks_signatures();
    m.replay_accepts();
    m.limiter.expect_release().returning(|_| Ok(()));
    m.audit.expect_append().returning(|_| Ok(()));

    let client = authenticate(m, signed(&header(), &claims())).await;

    assert_eq!(client.unwrap().credential.credential_id, CREDENTIAL);
}
