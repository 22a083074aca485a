//! The HTTP side of contract sections 10, 11 and 13: how the token endpoint
//! reads client assertions, `resource` parameters and `DPoP` headers, and the
//! `DPoP` challenge of the API.

use actix_web::test::TestRequest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use idp_domain::token::Confirmation;

use super::fixtures::*;

const ASSERTION_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer";

fn token_request(form: &str) -> TestRequest {
    TestRequest::post()
        .uri("/api/v1/token")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(form.to_owned())
}

/// Sends a token request that must be refused before any client is looked up
/// (the mocks have no expectation but the limiter's).
async fn refused(req: TestRequest) -> (u16, actix_web::http::header::HeaderMap, serde_json::Value) {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let (status, headers, body) = send(mocks.state(), req).await;
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    (status, headers, body)
}

#[actix_web::test]
async fn an_assertion_with_another_method_is_invalid_request() {
    let basic = format!("Basic {}", STANDARD.encode(format!("{AGENT}:s")));
    let with_basic = token_request(&format!(
        "grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion=a.b.c"
    ))
    .insert_header(("Authorization", basic));
    let with_secret = token_request(&format!(
        "grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion=a.b.c&client_id={AGENT}&client_secret=s"
    ));
    for req in [with_basic, with_secret] {
        let (status, _, body) = refused(req).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"], "invalid_request");
    }
}

#[actix_web::test]
async fn half_an_assertion_is_invalid_request_and_an_unknown_type_invalid_client() {
    let (status, _, body) = refused(token_request(
        "grant_type=client_credentials&client_assertion=a.b.c",
    ))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, headers, body) = refused(token_request(
        "grant_type=client_credentials&client_assertion_type=urn%3Aexample%3Asaml&client_assertion=x",
    ))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(headers.get("www-authenticate").is_some());
}

#[actix_web::test]
async fn an_assertion_in_the_query_is_invalid_request() {
    let req = TestRequest::post()
        .uri("/api/v1/token?client_assertion=a.b.c")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(format!(
            "grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}&client_assertion=a.b.c"
        ));
    let (status, _, body) = refused(req).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[actix_web::test]
async fn a_malformed_resource_is_invalid_target() {
    for resource in ["relative%2Fpath", "https%3A%2F%2Fapi.example%2F%23frag", ""] {
        let req = token_request(&format!(
            "grant_type=client_credentials&client_id={AGENT}&client_secret=s&resource=urn%3Aok&resource={resource}"
        ));
        let (status, _, body) = refused(req).await;
        assert_eq!(status, 400, "{resource}");
        assert_eq!(body["error"], "invalid_target", "{resource}");
    }
}

#[actix_web::test]
async fn two_dpop_headers_are_an_invalid_proof() {
    let req = token_request(&format!(
        "grant_type=client_credentials&client_id={AGENT}&client_secret=s"
    ))
    .append_header(("DPoP", "a.b.c"))
    .append_header(("DPoP", "d.e.f"));
    let (status, _, body) = refused(req).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_dpop_proof"))
    );
}

/// The `good` token bound to a DPoP key.
fn bound_token_mocks() -> Mocks {
    let mut mocks = Mocks::default();
    mocks.codec.expect_decode().returning(|_| {
        let mut claims = claims("agents:read");
        claims.cnf = Some(Confirmation {
            jkt: "thumb".into(),
        });
        Ok(claims)
    });
    mocks
        .revocations
        .expect_contains()
        .returning(|_, _| Ok(false));
    mocks.credentials.expect_subject_state().returning(|_, _| {
        Ok(Some(idp_domain::ports::SubjectState {
            owner: idp_domain::values::Owner::parse("acme").unwrap(),
            agent_status: idp_domain::values::AgentStatus::Active,
            credential_revoked: false,
        }))
    });
    allow_all(&mut mocks.limiter);
    mocks
}

#[actix_web::test]
async fn a_bound_token_sent_as_bearer_gets_the_dpop_challenge() {
    let req = bearer(TestRequest::get().uri("/api/v1/agents"), "good");
    let (status, headers, body) = send(bound_token_mocks().state(), req).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "AUTHENTICATION_ERROR");
    assert_eq!(
        headers.get("www-authenticate").unwrap(),
        r#"DPoP algs="RS256 PS256 ES256 EdDSA", error="invalid_token""#
    );
}

#[actix_web::test]
async fn a_bound_token_without_a_proof_is_an_invalid_proof() {
    let req = TestRequest::get()
        .uri("/api/v1/agents")
        .insert_header(("Authorization", "DPoP good"));
    let (status, headers, _) = send(bound_token_mocks().state(), req).await;
    assert_eq!(status, 401);
    let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_dpop_proof""#),
        "{challenge}"
    );
}

#[actix_web::test]
async fn an_unbound_token_sent_as_dpop_is_an_invalid_token() {
    let req = TestRequest::get()
        .uri("/api/v1/agents")
        .insert_header(("Authorization", "DPoP good"))
        .insert_header(("DPoP", "a.b.c"));
    let (status, headers, _) = send(Mocks::authenticated("agents:read").state(), req).await;
    assert_eq!(status, 401);
    let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
}

#[actix_web::test]
async fn introspection_without_any_client_authentication_is_401() {
    let req = TestRequest::post()
        .uri("/api/v1/token/introspect")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload("token=x&client_id=only-an-id");
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let (status, _, body) = send(mocks.state(), req).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "AUTHENTICATION_ERROR");
}

#[actix_web::test]
async fn the_metadata_lists_the_new_methods_and_algorithms() {
    let mut mocks = Mocks::default();
    mocks
        .codec
        .expect_algorithms()
        .returning(|| vec!["RS256".into()]);
    let req = TestRequest::get().uri("/.well-known/oauth-authorization-server");
    let (status, _, body) = send(mocks.state(), req).await;
    assert_eq!(status, 200);
    for member in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        assert!(
            body[member]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("private_key_jwt")),
            "{member}"
        );
    }
    let algs = serde_json::json!(["RS256", "PS256", "ES256", "EdDSA"]);
    assert_eq!(body["dpop_signing_alg_values_supported"], algs);
    assert_eq!(
        body["token_endpoint_auth_signing_alg_values_supported"],
        algs
    );
}
