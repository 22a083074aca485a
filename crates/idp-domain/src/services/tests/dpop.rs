//! DPoP (RFC 9449, contract section 13): proofs at the token endpoint
//! (`TokenService::issue`) and on AgentIdP's own API
//! (`TokenService::authenticate_presented`).
//!
//! Proofs are compact JWS strings built by hand; the verifier mock accepts
//! exactly those signed [`GOOD_SIGNATURE`].

use serde_json::{Value, json};

use super::fixtures::*;
use crate::DomainError;
use crate::ports::FirstUse;
use crate::services::{
    DpopProofError, DpopRequest, IssuedToken, PresentedToken, TokenRefusal, TokenRequest,
    TokenRequestError,
};
use crate::token::{AccessTokenClaims, Confirmation, Principal};
use crate::values::{AgentStatus, AuditAction, access_token_hash};

/// A management API URL a proof may be made for.
const API_URL: &str = "https://idp.acme.test/api/v1/agents";

fn now_secs() -> i64 {
    now().timestamp()
}

/// The thumbprint of the key `ec_jwk(seed)`.
fn thumbprint(seed: u8) -> String {
    ec_jwk(seed).thumbprint().to_owned()
}

/// A proof header carrying `ec_jwk_value(seed)`.
fn header(seed: u8) -> Value {
    json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": ec_jwk_value(seed) })
}

/// The claims of a proof for the token endpoint, made now.
fn token_claims() -> Value {
    json!({ "jti": "proof-0001", "htm": "POST", "htu": TOKEN_ENDPOINT, "iat": now_secs() })
}

/// The claims of a proof for `GET` [`API_URL`] with [`TOKEN`].
fn api_claims() -> Value {
    json!({
        "jti": "proof-0002",
        "htm": "GET",
        "htu": API_URL,
        "iat": now_secs(),
        "ath": access_token_hash(TOKEN),
    })
}

fn with(mut value: Value, change: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    change(value.as_object_mut().unwrap());
    value
}

fn signed(header: &Value, claims: &Value) -> String {
    compact_jws(header, claims, GOOD_SIGNATURE)
}

/// A good proof of key 1 for the token endpoint.
fn good_token_proof() -> String {
    signed(&header(1), &token_claims())
}

async fn issue_with(
    m: TokenMocks,
    agent: crate::entities::Agent,
    proof: Option<&str>,
) -> Result<IssuedToken, TokenRequestError> {
    let request = TokenRequest {
        dpop: proof.map(|proof| DpopRequest {
            proof,
            method: "POST",
            url: TOKEN_ENDPOINT,
        }),
        ..TokenRequest::default()
    };
    m.build()
        .issue(&authenticated(agent), request, &anonymous_ctx())
        .await
        .1
}

// ----- at the token endpoint -------------------------------------------------------

#[tokio::test]
async fn a_valid_proof_binds_the_token_to_the_keys_thumbprint() {
    let mut m = TokenMocks::new();
    m.verifier_checks_signatures();
    let guarded = Captured::new();
    let seen = guarded.clone();
    m.replay
        .expect_first_use()
        .times(1)
        .returning(move |key, expires_at, _| {
            seen.push((key.to_owned(), expires_at));
            Ok(remembered_since(now()))
        });
    m.admits_a_unit();
    let signed = m.signs_once();
    let events = m.appends_once();

    let issued = issue_with(m, active_agent(), Some(&good_token_proof()))
        .await
        .unwrap();

    assert_eq!(issued.token_type, "DPoP");
    let claims = signed.only();
    assert_eq!(claims.cnf, Some(Confirmation { jkt: thumbprint(1) }));
    assert_eq!(claims.token_type(), "DPoP");
    let event = events.only();
    assert_eq!(event.action, AuditAction::TokenIssued);
    assert_eq!(event.metadata["jkt"], json!(thumbprint(1)));
    assert_eq!(event.metadata["authMethod"], "client_secret_basic");
    let (key, expires_at) = guarded.only();
    assert!(key.starts_with("dpop:"), "{key}");
    // Accepted until the end of the second iat + 60.
    assert_eq!(expires_at.timestamp(), now_secs() + 61);
}

#[tokio::test]
async fn a_token_without_a_proof_is_a_bearer_token() {
    let mut m = TokenMocks::new();
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();
    m.admits_a_unit();
    let signed = m.signs_once();
    let events = m.appends_once();

    let issued = issue_with(m, active_agent(), None).await.unwrap();

    assert_eq!(issued.token_type, "Bearer");
    assert_eq!(signed.only().cnf, None);
    assert!(events.only().metadata.get("jkt").is_none());
}

#[tokio::test]
async fn a_proof_made_within_a_minute_either_way_is_accepted() {
    for iat in [now_secs() - 60, now_secs() + 60] {
        let mut m = TokenMocks::new();
        m.verifier_checks_signatures();
        m.replay_accepts();
        m.admits_a_unit();
        m.signs_once();
        m.appends_once();
        let proof = signed(
            &header(1),
            &with(token_claims(), |c| {
                c.insert("iat".into(), json!(iat));
            }),
        );

        let issued = issue_with(m, active_agent(), Some(&proof)).await;

        assert!(issued.is_ok(), "iat {iat}: {issued:?}");
    }
}

/// Each bad proof, and why it is refused.
fn bad_proofs() -> Vec<(&'static str, String, DpopProofError)> {
    let n = now_secs();
    let claims = token_claims;
    let mut private = ec_jwk_value(1);
    private["d"] = json!("c2VjcmV0");
    vec![
        (
            "typ not dpop+jwt",
            signed(
                &with(header(1), |h| {
                    h.insert("typ".into(), json!("JWT"));
                }),
                &claims(),
            ),
            DpopProofError::Malformed,
        ),
        (
            "no typ",
            signed(
                &with(header(1), |h| {
                    h.remove("typ");
                }),
                &claims(),
            ),
            DpopProofError::Malformed,
        ),
        (
            "alg none",
            signed(
                &with(header(1), |h| {
                    h.insert("alg".into(), json!("none"));
                }),
                &claims(),
            ),
            DpopProofError::Malformed,
        ),
        (
            "alg HS256",
            signed(
                &with(header(1), |h| {
                    h.insert("alg".into(), json!("HS256"));
                }),
                &claims(),
            ),
            DpopProofError::Malformed,
        ),
        (
            "no jwk",
            signed(
                &with(header(1), |h| {
                    h.remove("jwk");
                }),
                &claims(),
            ),
            DpopProofError::Malformed,
        ),
        (
            "jwk with the private member d",
            signed(
                &with(header(1), |h| {
                    h.insert("jwk".into(), private.clone());
                }),
                &claims(),
            ),
            DpopProofError::Key,
        ),
        (
            "symmetric jwk",
            signed(
                &with(header(1), |h| {
                    h.insert("jwk".into(), json!({ "kty": "oct", "k": "c2VjcmV0" }));
                }),
                &claims(),
            ),
            DpopProofError::Key,
        ),
        (
            "bad signature",
            compact_jws(&header(1), &claims(), "forged"),
            DpopProofError::Signature,
        ),
        (
            "htm GET",
            signed(
                &header(1),
                &with(claims(), |c| {
                    c.insert("htm".into(), json!("GET"));
                }),
            ),
            DpopProofError::WrongRequest,
        ),
        (
            "htm lowercase",
            signed(
                &header(1),
                &with(claims(), |c| {
                    c.insert("htm".into(), json!("post"));
                }),
            ),
            DpopProofError::WrongRequest,
        ),
        (
            "htu of another URL",
            signed(
                &header(1),
                &with(claims(), |c| {
                    c.insert(
                        "htu".into(),
                        json!("https://idp.acme.test/api/v1/token/introspect"),
                    );
                }),
            ),
            DpopProofError::WrongRequest,
        ),
        (
            "htu of another host",
            signed(
                &header(1),
                &with(claims(), |c| {
                    c.insert("htu".into(), json!("https://evil.test/api/v1/token"));
                }),
            ),
            DpopProofError::WrongRequest,
        ),
        (
            "no htu",
            signed(
                &header(1),
                &with(claims(), |c| {
                    c.remove("htu");
                }),
            ),
            DpopProofError::WrongRequest,
        ),
        (
            "iat 61 s old",
            signed(
                &header(1),
                &with(claims(), |c| {
                    c.insert("iat".into(), json!(n - 61));
                }),
            ),
            DpopProofError::Stale,
        ),
        (
            "iat 61 s ahead",
            signed(
                &header(1),
                &with(claims(), |c| {
                    c.insert("iat".into(), json!(n + 61));
                }),
            ),
            DpopProofError::Stale,
        ),
        (
            "no iat",
            signed(
                &header(1),
                &with(claims(), |c| {
                    c.remove("iat");
                }),
            ),
            DpopProofError::Stale,
        ),
        (
            "no jti",
            signed(
                &header(1),
                &with(claims(), |c| {
                    c.remove("jti");
                }),
            ),
            DpopProofError::Malformed,
        ),
        ("not a JWS", "garbage".to_owned(), DpopProofError::Malformed),
    ]
}

#[tokio::test]
async fn a_bad_proof_is_invalid_dpop_proof_audited_and_takes_no_unit() {
    for (case, proof, expected) in bad_proofs() {
        let mut m = TokenMocks::new();
        m.verifier_checks_signatures();
        m.replay.expect_first_use().never();
        m.counts_a_refused_request();
        audits_failure(&mut m, "invalid_dpop_proof");

        let err = issue_with(m, active_agent(), Some(&proof))
            .await
            .unwrap_err();

        match err {
            TokenRequestError::InvalidDpopProof(got) => assert_eq!(got, expected, "{case}"),
            other => panic!("{case}: expected InvalidDpopProof, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_replayed_proof_is_invalid_dpop_proof() {
    let mut m = TokenMocks::new();
    m.verifier_checks_signatures();
    m.replay
        .expect_first_use()
        .times(1)
        .returning(|_, _, _| Ok(FirstUse::Replayed));
    m.counts_a_refused_request();
    audits_failure(&mut m, "invalid_dpop_proof");

    let err = issue_with(m, active_agent(), Some(&good_token_proof()))
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            TokenRequestError::InvalidDpopProof(DpopProofError::Replayed)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_agent_requiring_dpop_is_refused_a_token_without_a_proof() {
    let agent = crate::entities::Agent {
        require_dpop: true,
        ..active_agent()
    };
    let mut m = TokenMocks::new();
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();
    m.counts_a_refused_request();
    audits_failure(&mut m, "dpop_proof_required");

    let err = issue_with(m, agent, None).await.unwrap_err();

    assert!(matches!(err, TokenRequestError::DpopRequired), "{err:?}");
}

#[tokio::test]
async fn an_agent_requiring_dpop_gets_a_bound_token_with_a_proof() {
    let agent = crate::entities::Agent {
        require_dpop: true,
        ..active_agent()
    };
    let mut m = TokenMocks::new();
    m.verifier_checks_signatures();
    m.replay_accepts();
    m.admits_a_unit();
    let signed = m.signs_once();
    m.appends_once();

    let issued = issue_with(m, agent, Some(&good_token_proof()))
        .await
        .unwrap();

    assert_eq!(issued.token_type, "DPoP");
    assert!(signed.only().cnf.is_some());
}

// ----- on AgentIdP's own API -------------------------------------------------------

/// [`live_claims`] bound to key `seed`.
fn bound_claims(seed: u8) -> AccessTokenClaims {
    AccessTokenClaims {
        cnf: Some(Confirmation {
            jkt: thumbprint(seed),
        }),
        ..live_claims()
    }
}

fn api_request(proof: &str) -> DpopRequest<'_> {
    DpopRequest {
        proof,
        method: "GET",
        url: API_URL,
    }
}

async fn present(m: TokenMocks, presented: PresentedToken<'_>) -> Result<Principal, TokenRefusal> {
    m.build().authenticate_presented(presented).await.unwrap()
}

/// What a valid [`TOKEN`] of [`TARGET`] authenticates as.
fn target_principal() -> Principal {
    Principal {
        agent_id: TARGET,
        client_id: TARGET,
        owner: owner(),
        scopes: scopes(&["agents:read", "resume:read"]),
        token_id: Some(TOKEN_ID),
        credential_id: CREDENTIAL,
    }
}

#[tokio::test]
async fn a_bound_token_with_a_good_proof_authenticates() {
    let mut m = TokenMocks::new();
    m.valid_token(bound_claims(1), owner());
    m.verifier_checks_signatures();
    m.replay
        .expect_first_use()
        .withf(|key, _, at| key.starts_with("dpop:") && *at == now())
        .times(1)
        .returning(|_, _, _| Ok(remembered_since(now())));
    let proof = signed(&header(1), &api_claims());

    let principal = present(
        m,
        PresentedToken::Dpop {
            token: TOKEN,
            proof: Some(api_request(&proof)),
        },
    )
    .await
    .unwrap();

    assert_eq!(principal, target_principal());
}

#[tokio::test]
async fn a_proof_whose_htu_differs_only_by_the_query_matches() {
    let mut m = TokenMocks::new();
    m.valid_token(bound_claims(1), owner());
    m.verifier_checks_signatures();
    m.replay_accepts();
    let proof = signed(&header(1), &api_claims());
    let request = DpopRequest {
        url: "https://idp.acme.test/api/v1/agents?page=2",
        ..api_request(&proof)
    };

    let result = present(
        m,
        PresentedToken::Dpop {
            token: TOKEN,
            proof: Some(request),
        },
    )
    .await;

    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_bound_token_sent_as_bearer_is_the_wrong_scheme() {
    let mut m = TokenMocks::new();
    m.valid_token(bound_claims(1), owner());
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();

    let refusal = present(m, PresentedToken::Bearer(TOKEN)).await.unwrap_err();

    assert!(
        matches!(refusal, TokenRefusal::WrongScheme(_)),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn authenticate_refuses_a_bound_token_as_bearer() {
    let mut m = TokenMocks::new();
    m.valid_token(bound_claims(1), owner());
    m.verifier.expect_verify().never();

    let err = m.build().authenticate(TOKEN).await.unwrap_err();

    assert!(matches!(err, DomainError::Authentication(_)), "{err:?}");
}

#[tokio::test]
async fn an_unbound_token_sent_as_dpop_is_the_wrong_scheme() {
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();
    let proof = signed(&header(1), &api_claims());

    let refusal = present(
        m,
        PresentedToken::Dpop {
            token: TOKEN,
            proof: Some(api_request(&proof)),
        },
    )
    .await
    .unwrap_err();

    assert!(
        matches!(refusal, TokenRefusal::WrongScheme(_)),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn a_bound_token_without_a_proof_is_missing_its_proof() {
    let mut m = TokenMocks::new();
    m.valid_token(bound_claims(1), owner());
    m.replay.expect_first_use().never();

    let refusal = present(
        m,
        PresentedToken::Dpop {
            token: TOKEN,
            proof: None,
        },
    )
    .await
    .unwrap_err();

    assert_eq!(refusal, TokenRefusal::InvalidProof(DpopProofError::Missing));
}

#[tokio::test]
async fn a_proof_for_another_token_is_wrong_token() {
    for ath in [Some(access_token_hash("another.token.value")), None] {
        let mut m = TokenMocks::new();
        m.valid_token(bound_claims(1), owner());
        m.verifier_checks_signatures();
        m.replay.expect_first_use().never();
        let claims = with(api_claims(), |c| match &ath {
            Some(ath) => {
                c.insert("ath".into(), json!(ath));
            }
            None => {
                c.remove("ath");
            }
        });
        let proof = signed(&header(1), &claims);

        let refusal = present(
            m,
            PresentedToken::Dpop {
                token: TOKEN,
                proof: Some(api_request(&proof)),
            },
        )
        .await
        .unwrap_err();

        assert_eq!(
            refusal,
            TokenRefusal::InvalidProof(DpopProofError::WrongToken),
            "ath {ath:?}"
        );
    }
}

#[tokio::test]
async fn a_proof_by_another_key_is_wrong_key() {
    let mut m = TokenMocks::new();
    m.valid_token(bound_claims(1), owner());
    m.verifier_checks_signatures();
    m.replay_accepts();
    let proof = signed(&header(2), &api_claims());

    let refusal = present(
        m,
        PresentedToken::Dpop {
            token: TOKEN,
            proof: Some(api_request(&proof)),
        },
    )
    .await
    .unwrap_err();

    assert_eq!(
        refusal,
        TokenRefusal::InvalidProof(DpopProofError::WrongKey)
    );
}

#[tokio::test]
async fn a_proof_for_another_request_or_replayed_is_refused() {
    let wrong_method = signed(
        &header(1),
        &with(api_claims(), |c| {
            c.insert("htm".into(), json!("DELETE"));
        }),
    );
    let good = signed(&header(1), &api_claims());
    let cases = [
        (wrong_method, None, DpopProofError::WrongRequest),
        (good, Some(FirstUse::Replayed), DpopProofError::Replayed),
    ];
    for (proof, guard, expected) in cases {
        let mut m = TokenMocks::new();
        m.valid_token(bound_claims(1), owner());
        m.verifier_checks_signatures();
        match guard {
            Some(answer) => {
                m.replay
                    .expect_first_use()
                    .times(1)
                    .returning(move |_, _, _| Ok(answer));
            }
            None => {
                m.replay.expect_first_use().never();
            }
        }

        let refusal = present(
            m,
            PresentedToken::Dpop {
                token: TOKEN,
                proof: Some(api_request(&proof)),
            },
        )
        .await
        .unwrap_err();

        assert_eq!(refusal, TokenRefusal::InvalidProof(expected));
    }
}

#[tokio::test]
async fn an_invalid_token_is_refused_before_any_proof_is_checked() {
    let mut m = TokenMocks::new();
    m.decodes_to(AccessTokenClaims {
        exp: now_secs() - 1,
        ..bound_claims(1)
    });
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();
    let proof = signed(&header(1), &api_claims());

    let refusal = present(
        m,
        PresentedToken::Dpop {
            token: TOKEN,
            proof: Some(api_request(&proof)),
        },
    )
    .await
    .unwrap_err();

    assert!(
        matches!(refusal, TokenRefusal::InvalidToken(_)),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn introspection_reports_the_binding_and_the_dpop_token_type() {
    let mut m = TokenMocks::new();
    m.valid_token(bound_claims(1), owner());
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();

    let answer = m
        .build()
        .introspect(&caller(&["tokens:introspect"]), TOKEN)
        .await
        .unwrap();

    let answer = serde_json::to_value(&answer).unwrap();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "DPoP");
    assert_eq!(answer["cnf"], json!({ "jkt": thumbprint(1) }));
}

#[tokio::test]
async fn introspection_of_a_bearer_token_has_no_cnf() {
    let mut m = TokenMocks::new();
    m.valid_token(live_claims(), owner());

    let answer = m
        .build()
        .introspect(&caller(&["tokens:introspect"]), TOKEN)
        .await
        .unwrap();

    let answer = serde_json::to_value(&answer).unwrap();
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer.get("cnf").is_none(), "{answer}");
}

#[tokio::test]
async fn a_suspended_agents_bound_token_is_refused_even_with_a_good_proof() {
    let mut m = TokenMocks::new();
    m.decodes_to(bound_claims(1));
    m.revocation_answers(false);
    m.subject_is(Some(crate::ports::SubjectState {
        agent_status: AgentStatus::Suspended,
        ..live_subject(owner())
    }));
    m.verifier.expect_verify().never();
    m.replay.expect_first_use().never();
    m.audit.expect_append().never();
    let proof = signed(&header(1), &api_claims());

    let refusal = present(
        m,
        PresentedToken::Dpop {
            token: TOKEN,
            proof: Some(api_request(&proof)),
        },
    )
    .await
    .unwrap_err();

    assert!(
        matches!(refusal, TokenRefusal::InvalidToken(_)),
        "{refusal:?}"
    );
}

// ----- single use ----------------------------------------------------------------

#[tokio::test]
async fn a_proof_is_remembered_for_as_long_as_it_is_accepted() {
    // iat 60 s before now's whole second: still accepted (now is .123 s
    // past that second).
    let mut m = TokenMocks::new();
    m.verifier_checks_signatures();
    let remembered = Captured::new();
    let seen = remembered.clone();
    m.replay
        .expect_first_use()
        .times(1)
        .returning(move |_, expires_at, _| {
            seen.push(expires_at);
            Ok(remembered_since(now() - chrono::Duration::days(1)))
        });
    m.admits_a_unit();
    m.signs_once();
    m.appends_once();
    let proof = signed(
        &header(1),
        &with(token_claims(), |c| {
            c.insert("iat".into(), json!(now_secs() - 60));
        }),
    );

    issue_with(m, active_agent(), Some(&proof)).await.unwrap();

    // Accepted now, so it must be remembered past now.
    assert!(remembered.only() > now(), "{:?}", remembered.only());
}

#[tokio::test]
async fn a_proof_that_may_predate_the_guards_memory_is_refused_as_replayed() {
    // The guard restarted 10 s ago; the proof was made 30 s ago and may
    // have been used before the restart.
    let mut m = TokenMocks::new();
    m.verifier_checks_signatures();
    m.replay
        .expect_first_use()
        .times(1)
        .returning(|_, _, _| Ok(remembered_since(now() - chrono::Duration::seconds(10))));
    m.counts_a_refused_request();
    audits_failure(&mut m, "invalid_dpop_proof");
    let proof = signed(
        &header(1),
        &with(token_claims(), |c| {
            c.insert("iat".into(), json!(now_secs() - 30));
        }),
    );

    let err = issue_with(m, active_agent(), Some(&proof))
        .await
        .unwrap_err();

    assert!(
        matches!(
            err,
            TokenRequestError::InvalidDpopProof(DpopProofError::Replayed)
        ),
        "{err:?}"
    );
}
