//! Authentication, rate limiting, request ids and fallbacks.

use actix_web::test::TestRequest;
use idp_domain::ports::RateDecision;

use super::fixtures::*;

#[actix_web::test]
async fn missing_token_is_401_with_a_bearer_challenge() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let (status, headers, body) =
        send(mocks.state(), TestRequest::get().uri("/api/v1/agents")).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "AUTHENTICATION_ERROR");
    assert_eq!(
        headers.get("www-authenticate").unwrap(),
        r#"Bearer realm="agentidp""#
    );
}

#[actix_web::test]
async fn bad_token_is_401_invalid_token() {
    let state = Mocks::authenticated("agents:read").state();
    let (status, headers, _) = send(
        state,
        bearer(TestRequest::get().uri("/api/v1/agents"), "forged"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
}

#[actix_web::test]
async fn request_id_is_echoed_or_made() {
    let state = Mocks::authenticated("agents:read").state();
    let req = TestRequest::get()
        .uri("/healthz")
        .insert_header(("X-Request-Id", "abc-123"));
    let (_, headers, _) = send(state, req).await;
    assert_eq!(headers.get("x-request-id").unwrap(), "abc-123");

    let state = Mocks::authenticated("agents:read").state();
    let req = TestRequest::get()
        .uri("/healthz")
        .insert_header(("X-Request-Id", "evil value with spaces"));
    let (_, headers, _) = send(state, req).await;
    let made = headers.get("x-request-id").unwrap().to_str().unwrap();
    assert!(uuid::Uuid::parse_str(made).is_ok());
}

#[actix_web::test]
async fn rate_limit_headers_on_every_api_response() {
    let mut mocks = Mocks::authenticated("agents:read");
    mocks.agents.expect_find().returning(|_, _| Ok(None));
    let uri = format!("/api/v1/agents/{AGENT}");
    let (_, headers, _) = send(mocks.state(), bearer(TestRequest::get().uri(&uri), "good")).await;
    assert_eq!(headers.get("x-ratelimit-limit").unwrap(), "100");
    assert_eq!(headers.get("x-ratelimit-remaining").unwrap(), "99");
    assert!(headers.contains_key("x-ratelimit-reset"));
}

#[actix_web::test]
async fn spent_limit_is_429_keyed_by_the_agent() {
    let mut mocks = Mocks::authenticated("agents:read");
    mocks.limiter = Default::default();
    mocks
        .limiter
        .expect_hit()
        .withf(|key, _, _, _| key == format!("agent:{AGENT}"))
        .returning(|_, limit, _, _| {
            Ok(RateDecision {
                allowed: false,
                limit,
                remaining: 0,
                reset_at: now().timestamp() + 42,
                retry_after: 42,
            })
        });
    let (status, headers, body) = send(
        mocks.state(),
        bearer(TestRequest::get().uri("/api/v1/agents"), "good"),
    )
    .await;
    assert_eq!(status, 429);
    assert_eq!(body["code"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(headers.get("retry-after").unwrap(), "42");
    assert_eq!(headers.get("x-ratelimit-remaining").unwrap(), "0");
}

#[actix_web::test]
async fn anonymous_requests_are_limited_by_address() {
    let mut mocks = Mocks::default();
    mocks
        .limiter
        .expect_hit()
        .withf(|key, _, _, _| key == "ip:10.0.0.1")
        .times(1)
        .returning(|_, limit, _, _| {
            Ok(RateDecision {
                allowed: true,
                limit,
                remaining: 1,
                reset_at: 0,
                retry_after: 0,
            })
        });
    let (status, _, _) = send(mocks.state(), TestRequest::get().uri("/api/v1/audit")).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn operational_endpoints_are_not_limited() {
    // No limiter expectation: a call would panic the mock.
    let (status, headers, _) =
        send(Mocks::default().state(), TestRequest::get().uri("/healthz")).await;
    assert_eq!(status, 200);
    assert!(!headers.contains_key("x-ratelimit-limit"));
}

#[actix_web::test]
async fn unknown_routes_and_methods_answer_in_the_contract_shape() {
    let (status, _, body) = send(Mocks::default().state(), TestRequest::get().uri("/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "NOT_FOUND");
    let (status, headers, body) =
        send(Mocks::default().state(), TestRequest::put().uri("/healthz")).await;
    assert_eq!(status, 405);
    assert_eq!(body["code"], "METHOD_NOT_ALLOWED");
    assert_eq!(headers.get("allow").unwrap(), "GET");
}
