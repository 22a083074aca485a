//! Security headers on every response and CORS per contract section 8 (v2):
//! the metadata and JWKS for any origin, the API for listed origins only, and
//! preflights answered before the gate.

use actix_web::http::header::HeaderMap;
use actix_web::test::TestRequest;

use super::fixtures::*;

const LISTED: &str = "https://app.example.com";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

/// Mocks whose limiter must never be called, with [`LISTED`] allowed.
fn no_limiter_state() -> crate::AppState {
    let mut mocks = Mocks::default();
    mocks.limiter.expect_hit().never();
    let mut state = mocks.state();
    state.settings.cors_origins = vec![LISTED.to_owned()];
    state
}

fn preflight(path: &str, origin: &str) -> TestRequest {
    TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri(path)
        .insert_header(("Origin", origin))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .insert_header((
            "Access-Control-Request-Headers",
            "authorization, content-type",
        ))
}

#[track_caller]
fn assert_security_headers(headers: &HeaderMap, what: &str) {
    assert_eq!(
        header(headers, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(headers, "referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        header(headers, "content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'"),
        "{what}"
    );
}

#[actix_web::test]
async fn every_response_carries_the_security_headers() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let state = mocks.state();
    for req in [
        TestRequest::get().uri("/healthz"),
        TestRequest::get().uri("/nope"),
        TestRequest::get().uri("/api/v1/agents"),
        TestRequest::put().uri("/readyz"),
    ] {
        let (status, headers, _) = send(state.clone(), req).await;
        assert_security_headers(&headers, &status.to_string());
        assert!(
            !headers.contains_key("strict-transport-security"),
            "no HSTS for an http issuer"
        );
    }
}

#[actix_web::test]
async fn an_https_issuer_adds_hsts() {
    let mut state = Mocks::default().state();
    state.settings.issuer = "https://idp.example.com".into();
    let (_, headers, _) = send(state, TestRequest::get().uri("/healthz")).await;
    assert_eq!(
        header(&headers, "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_security_headers(&headers, "healthz");
}

#[actix_web::test]
async fn a_preflight_from_a_listed_origin_is_allowed_without_spending_budget() {
    for path in [
        "/api/v1/agents",
        "/%61pi/v1/agents",
        "/api/v1/token",
        "/api/v1/token/revoke",
    ] {
        let (status, headers, body) = send(no_limiter_state(), preflight(path, LISTED)).await;
        assert_eq!(status, 204, "{path}: {body}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some(LISTED),
            "{path}"
        );
        assert_eq!(
            header(&headers, "access-control-allow-methods"),
            Some("GET, POST, PATCH, DELETE")
        );
        let allowed_headers = header(&headers, "access-control-allow-headers").unwrap();
        for name in ["Authorization", "Content-Type", "X-Request-Id"] {
            assert!(allowed_headers.contains(name), "{allowed_headers}");
        }
        assert!(header(&headers, "access-control-max-age").is_some());
        assert_eq!(header(&headers, "vary"), Some("Origin"));
        assert!(!headers.contains_key("access-control-allow-credentials"));
        assert!(!headers.contains_key("x-ratelimit-limit"), "{path}: gated");
        assert_security_headers(&headers, path);
    }
}

#[actix_web::test]
async fn origins_are_compared_case_insensitively_and_echoed_as_sent() {
    let sent = "https://APP.example.com";
    let (status, headers, _) = send(no_limiter_state(), preflight("/api/v1/agents", sent)).await;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(sent));
}

#[actix_web::test]
async fn a_preflight_from_another_origin_gets_no_allowance() {
    for origin in [
        "https://evil.example",
        "null",
        "https://app.example.com.evil.example",
    ] {
        let (status, headers, _) =
            send(no_limiter_state(), preflight("/api/v1/agents", origin)).await;
        assert_eq!(status, 204, "{origin}");
        assert!(
            !headers
                .keys()
                .any(|name| name.as_str().starts_with("access-control-")),
            "{origin}: {headers:?}"
        );
        assert!(!headers.contains_key("x-ratelimit-limit"));
    }
}

#[actix_web::test]
async fn with_no_origins_configured_no_origin_is_allowed() {
    let mut mocks = Mocks::default();
    mocks.limiter.expect_hit().never();
    let (status, headers, _) = send(mocks.state(), preflight("/api/v1/agents", LISTED)).await;
    assert_eq!(status, 204);
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[actix_web::test]
async fn actual_requests_from_a_listed_origin_may_read_the_answer() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let mut state = mocks.state();
    state.settings.cors_origins = vec![LISTED.to_owned()];
    let req = TestRequest::get()
        .uri("/api/v1/agents")
        .insert_header(("Origin", LISTED));
    let (status, headers, _) = send(state.clone(), req).await;
    assert_eq!(status, 401);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(LISTED)
    );
    assert_eq!(header(&headers, "vary"), Some("Origin"));
    let exposed = header(&headers, "access-control-expose-headers").unwrap();
    for name in [
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "Retry-After",
        "X-Request-Id",
        "WWW-Authenticate",
    ] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert!(!headers.contains_key("access-control-allow-credentials"));
    // The request itself was gated as usual.
    assert!(headers.contains_key("x-ratelimit-limit"));

    let req = TestRequest::get()
        .uri("/api/v1/agents")
        .insert_header(("Origin", "https://evil.example"));
    let (status, headers, _) = send(state, req).await;
    assert_eq!(status, 401);
    assert!(!headers.contains_key("access-control-allow-origin"));
    assert_eq!(header(&headers, "vary"), Some("Origin"));
}

#[actix_web::test]
async fn discovery_documents_are_readable_from_any_origin() {
    let mut mocks = Mocks::default();
    mocks.limiter.expect_hit().never();
    mocks
        .codec
        .expect_jwks()
        .returning(|| serde_json::json!({ "keys": [] }));
    mocks
        .codec
        .expect_algorithms()
        .returning(|| vec!["RS256".to_owned()]);
    let state = mocks.state();
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        let req = TestRequest::get()
            .uri(path)
            .insert_header(("Origin", "https://anywhere.example"));
        let (status, headers, _) = send(state.clone(), req).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        assert!(!headers.contains_key("access-control-allow-credentials"));

        let (status, headers, _) =
            send(state.clone(), preflight(path, "https://anywhere.example")).await;
        assert_eq!(status, 204, "{path}");
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            header(&headers, "access-control-allow-methods"),
            Some("GET")
        );
    }
}

#[actix_web::test]
async fn an_options_request_that_is_no_preflight_is_an_ordinary_request() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let req = TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri("/api/v1/agents");
    let (status, headers, _) = send(mocks.state(), req).await;
    assert_eq!(status, 405);
    assert!(headers.contains_key("x-ratelimit-limit"));
}
