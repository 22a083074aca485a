//! The OAuth endpoints' request handling and error shapes.

use actix_web::test::TestRequest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::fixtures::*;

fn token_request(form: &str) -> TestRequest {
    TestRequest::post()
        .uri("/api/v1/token")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(form.to_owned())
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

async fn token_error(
    req: TestRequest,
) -> (u16, actix_web::http::header::HeaderMap, serde_json::Value) {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let (status, headers, body) = send(mocks.state(), req).await;
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(headers.get("pragma").unwrap(), "no-cache");
    assert!(body["error_description"].is_string());
    (status, headers, body)
}

#[actix_web::test]
async fn two_authentication_methods_are_invalid_request() {
    let req = token_request(&format!(
        "grant_type=client_credentials&client_id={AGENT}&client_secret=s"
    ))
    .insert_header(("Authorization", basic(AGENT, "s")));
    let (status, _, body) = token_error(req).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
}

#[actix_web::test]
async fn credentials_in_the_query_are_invalid_request() {
    let req = TestRequest::post()
        .uri(&format!("/api/v1/token?client_id={AGENT}&client_secret=s"))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload("grant_type=client_credentials");
    let (status, _, body) = token_error(req).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
}

#[actix_web::test]
async fn missing_or_repeated_grant_type_is_invalid_request() {
    for form in [
        "",
        "scope=a",
        "grant_type=client_credentials&grant_type=client_credentials",
    ] {
        let (status, _, body) =
            token_error(token_request(form).insert_header(("Authorization", basic(AGENT, "s"))))
                .await;
        assert_eq!(status, 400, "{form}");
        assert_eq!(body["error"], "invalid_request", "{form}");
    }
}

#[actix_web::test]
async fn other_grant_types_are_unsupported() {
    let req =
        token_request("grant_type=password").insert_header(("Authorization", basic(AGENT, "s")));
    let (status, _, body) = token_error(req).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[actix_web::test]
async fn json_bodies_are_invalid_request() {
    let req = TestRequest::post()
        .uri("/api/v1/token")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(r#"{"grant_type":"client_credentials"}"#);
    let (status, _, body) = token_error(req).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
}

#[actix_web::test]
async fn oversized_bodies_are_invalid_request() {
    let form = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(70 * 1024)
    );
    let (status, _, body) = token_error(token_request(&form)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
}

#[actix_web::test]
async fn no_client_authentication_is_invalid_client() {
    let (status, headers, body) = token_error(token_request("grant_type=client_credentials")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(
        headers.get("www-authenticate").unwrap(),
        r#"Basic realm="agentidp""#
    );
}

#[actix_web::test]
async fn unknown_client_is_invalid_client_after_a_dummy_verification() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    mocks
        .hasher
        .expect_verify_dummy()
        .times(1)
        .returning(|_| Ok(()));
    let req = token_request("grant_type=client_credentials")
        .insert_header(("Authorization", basic("nobody", "s")));
    let (status, _, body) = send(mocks.state(), req).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
}

#[actix_web::test]
async fn introspection_needs_authentication_then_a_token_parameter() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let req = TestRequest::post()
        .uri("/api/v1/token/introspect")
        .set_form([("token", "x")]);
    let (status, _, body) = send(mocks.state(), req).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "AUTHENTICATION_ERROR");

    let state = Mocks::authenticated("tokens:introspect").state();
    let req = bearer(TestRequest::post().uri("/api/v1/token/introspect"), "good")
        .set_form([("other", "x")]);
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 400);
    assert_eq!(body["details"]["field"], "token");

    let state = Mocks::authenticated("tokens:introspect").state();
    let req = bearer(TestRequest::post().uri("/api/v1/token/introspect"), "good")
        .set_json(serde_json::json!({"token": "x"}));
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 415);
    assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE");
}

#[actix_web::test]
async fn introspection_without_the_scope_is_403() {
    let state = Mocks::authenticated("agents:read").state();
    let req = bearer(TestRequest::post().uri("/api/v1/token/introspect"), "good")
        .set_form([("token", "x")]);
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "INSUFFICIENT_SCOPE");
}

#[actix_web::test]
async fn introspecting_garbage_is_inactive_and_nothing_else() {
    let state = Mocks::authenticated("tokens:introspect").state();
    let req = bearer(TestRequest::post().uri("/api/v1/token/introspect"), "good")
        .set_form([("token", "garbage")]);
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"active": false}));
}

#[actix_web::test]
async fn metadata_names_the_configured_algorithm() {
    let mut mocks = Mocks::default();
    mocks
        .codec
        .expect_algorithm()
        .return_const("ES256".to_owned());
    let (status, _, body) = send(
        mocks.state(),
        TestRequest::get().uri("/.well-known/oauth-authorization-server"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["access_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    assert_eq!(body["token_endpoint"], format!("{ISSUER}/api/v1/token"));
    assert_eq!(body["scopes_supported"].as_array().unwrap().len(), 4);
}
