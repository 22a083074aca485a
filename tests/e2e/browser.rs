//! What browsers are told (contract section 8, v2; issue 9, item 13):
//! security headers on every response, CORS for the discovery documents from
//! anywhere and for the API only from `IDP_CORS_ORIGINS`, and preflights that
//! spend no rate-limit budget.

use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::support::{Exchange, Reply, TestApp};

const LISTED: &str = "https://app.example.com";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[track_caller]
fn assert_security_headers(reply: &Reply) {
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{}",
        reply.path
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{}",
        reply.path
    );
    assert_eq!(
        reply.header("content-security-policy"),
        Some("default-src 'none'; frame-ancestors 'none'"),
        "{}",
        reply.path
    );
}

/// A CORS preflight for `method path` from `origin`: status and headers. Sent
/// without the harness's reply checks, which expect `X-RateLimit-*` on every
/// `/api/v1` answer, and a preflight rightly has none.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> (u16, HeaderMap) {
    let res = app
        .request(Method::OPTIONS, path)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header("Access-Control-Request-Headers", "authorization")
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.headers().clone())
}

async fn every_response_carries_the_security_headers() {
    let app = TestApp::start().await;
    let client = app.bootstrap("acme", "admin@acme.example").await;
    let replies = [
        app.get("/healthz").reply().await.expect(200),
        app.get("/.well-known/jwks.json").reply().await.expect(200),
        app.get("/api/v1/agents").reply().await.expect(401),
        app.get("/nowhere").reply().await.expect(404),
        app.request_token(&client, None).await.expect(200),
        app.request_token(&client, Some("nope:x")).await.expect(400),
    ];
    for reply in &replies {
        assert_security_headers(reply);
        assert!(
            reply.header("strict-transport-security").is_none(),
            "{}: HSTS for an http issuer",
            reply.path
        );
        assert!(reply.header("access-control-allow-credentials").is_none());
    }
}

async fn an_https_issuer_adds_strict_transport_security() {
    let app = TestApp::builder()
        .env("IDP_ISSUER", "https://idp.example.com")
        .start()
        .await;
    for path in [
        "/healthz",
        "/api/v1/agents",
        "/.well-known/oauth-authorization-server",
    ] {
        let reply = app.get(path).reply().await;
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains"),
            "{path}"
        );
        assert_security_headers(&reply);
    }
}

async fn discovery_documents_are_readable_from_any_origin() {
    let app = TestApp::start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/jwks.json",
    ] {
        let reply = app
            .get(path)
            .header("Origin", "https://anywhere.example")
            .reply()
            .await
            .expect(200);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("*"),
            "{path}"
        );
        let (status, headers) = preflight(&app, path, "https://anywhere.example", "GET").await;
        assert_eq!(status, 204, "{path}");
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            header(&headers, "access-control-allow-methods"),
            Some("GET")
        );
    }
}

async fn the_api_answers_cors_only_to_listed_origins() {
    let app = TestApp::builder()
        .env("IDP_CORS_ORIGINS", LISTED)
        .start()
        .await;
    let (admin, token) = app.bootstrap_admin("acme").await;

    for (path, method) in [
        ("/api/v1/agents", "POST"),
        (
            "/api/v1/agents/0194f3a0-0000-7000-8000-000000000001",
            "PATCH",
        ),
        ("/api/v1/token", "POST"),
        ("/api/v1/token/introspect", "POST"),
    ] {
        let (status, headers) = preflight(&app, path, LISTED, method).await;
        assert_eq!(status, 204, "{path}");
        assert_eq!(
            header(&headers, "access-control-allow-origin"),
            Some(LISTED)
        );
        let methods = header(&headers, "access-control-allow-methods").unwrap();
        assert!(methods.contains(method), "{path}: {methods}");
        let allowed = header(&headers, "access-control-allow-headers").unwrap();
        assert!(allowed.contains("Authorization"), "{allowed}");
        assert!(header(&headers, "access-control-max-age").is_some());
        assert_eq!(header(&headers, "vary"), Some("Origin"));
        assert!(header(&headers, "access-control-allow-credentials").is_none());
        assert!(header(&headers, "x-ratelimit-limit").is_none(), "{path}");
        assert_eq!(header(&headers, "x-content-type-options"), Some("nosniff"));
    }

    let (status, headers) = preflight(&app, "/api/v1/agents", "https://evil.example", "GET").await;
    assert_eq!(status, 204);
    assert!(
        !headers
            .keys()
            .any(|k| k.as_str().starts_with("access-control-")),
        "{headers:?}"
    );

    let reply = app
        .get("/api/v1/agents")
        .bearer_auth(&token)
        .header("Origin", LISTED)
        .reply()
        .await
        .expect(200);
    assert_eq!(reply.header("access-control-allow-origin"), Some(LISTED));
    let exposed = reply.header("access-control-expose-headers").unwrap();
    for name in [
        "X-RateLimit-Remaining",
        "Retry-After",
        "X-Request-Id",
        "WWW-Authenticate",
    ] {
        assert!(exposed.contains(name), "{exposed}");
    }
    assert!(reply.header_values("vary").contains("Origin"));

    let issued = app
        .post("/api/v1/token")
        .basic_auth(&admin.client_id, Some(&admin.client_secret))
        .header("Origin", LISTED)
        .form(&[("grant_type", "client_credentials")])
        .reply()
        .await
        .expect(200);
    assert_eq!(issued.header("access-control-allow-origin"), Some(LISTED));

    let foreign = app
        .get("/api/v1/agents")
        .bearer_auth(&token)
        .header("Origin", "https://evil.example")
        .reply()
        .await
        .expect(200);
    assert!(foreign.header("access-control-allow-origin").is_none());
}

async fn without_listed_origins_the_api_allows_none() {
    let app = TestApp::start().await;
    let (status, headers) = preflight(&app, "/api/v1/agents", LISTED, "GET").await;
    assert_eq!(status, 204);
    assert!(header(&headers, "access-control-allow-origin").is_none());
    let reply = app
        .get("/api/v1/agents")
        .header("Origin", LISTED)
        .reply()
        .await;
    reply.expect_unauthenticated();
    assert!(reply.header("access-control-allow-origin").is_none());
}

async fn preflights_spend_no_rate_limit_budget() {
    let app = TestApp::builder()
        .env("IDP_CORS_ORIGINS", LISTED)
        .env("IDP_RATE_LIMIT_PER_MINUTE", "2")
        .start()
        .await;
    for _ in 0..5 {
        let (status, headers) = preflight(&app, "/api/v1/agents", LISTED, "GET").await;
        assert_eq!(status, 204);
        assert!(header(&headers, "x-ratelimit-remaining").is_none());
        let (status, _) = preflight(&app, "/api/v1/token", LISTED, "POST").await;
        assert_eq!(status, 204);
    }
    // The address's budget is untouched: this is its first request.
    let first = app.get("/api/v1/agents").reply().await;
    first.expect_unauthenticated();
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
}

e2e_tests!(
    every_response_carries_the_security_headers,
    an_https_issuer_adds_strict_transport_security,
    discovery_documents_are_readable_from_any_origin,
    the_api_answers_cors_only_to_listed_origins,
    without_listed_origins_the_api_allows_none,
    preflights_spend_no_rate_limit_budget,
);
