//! Rate limit and monthly quota (contract section 7).

use crate::support::{Deployment, Exchange, Reply, TestApp, wall_clock};

fn remaining(reply: &Reply) -> u64 {
    reply
        .header("x-ratelimit-remaining")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-RateLimit-Remaining on {}", reply.path))
}

#[track_caller]
fn assert_rate_headers(reply: &Reply, limit: u64) {
    assert_eq!(
        reply.header("x-ratelimit-limit"),
        Some(limit.to_string().as_str())
    );
    let reset: i64 = reply.header("x-ratelimit-reset").unwrap().parse().unwrap();
    let now = wall_clock().timestamp();
    assert!(
        (now..=now + 61).contains(&reset),
        "X-RateLimit-Reset {reset} is not unix seconds within the next minute ({now})"
    );
}

async fn api_requests_count_down_then_429_with_retry_after() {
    let app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "3")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let other = app.bootstrap("acme", "other@acme.example").await;
    // The token request is the client's first request of the minute.
    let issued = app.request_token(&admin, None).await;
    assert_rate_headers(&issued, 3);
    assert_eq!(remaining(&issued), 2);
    let token = issued.json()["access_token"].as_str().unwrap().to_owned();
    let second = app.get_as(&token, "/api/v1/agents").await.expect(200);
    assert_rate_headers(&second, 3);
    assert_eq!(remaining(&second), 1);
    let third = app.get_as(&token, "/api/v1/audit").await.expect(200);
    assert_eq!(remaining(&third), 0);

    let refused = app.get_as(&token, "/api/v1/agents").await;
    refused.expect_error(429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(remaining(&refused), 0);
    let retry: u64 = refused
        .header("retry-after")
        .expect("Retry-After on 429")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    // The token endpoint shares the client's budget, in the OAuth shape.
    let token_refused = app.request_token(&admin, None).await;
    let body = token_refused.expect_oauth_error(429, "access_denied");
    assert!(token_refused.header("retry-after").is_some());
    assert!(
        body["error_description"].as_str().unwrap().contains("rate"),
        "the description says which limit: {body}"
    );
    // Another client has a budget of its own; operational endpoints none.
    assert_eq!(
        remaining(&app.request_token(&other, None).await.expect(200)),
        2
    );
    app.get("/healthz").reply().await.expect(200);
    app.get("/.well-known/jwks.json").reply().await.expect(200);
}

async fn anonymous_requests_are_limited_by_address() {
    let app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "2")
        .start()
        .await;
    let first = app.get("/api/v1/agents").reply().await;
    first.expect_unauthenticated();
    assert_eq!(remaining(&first), 1);
    let second = app
        .get("/api/v1/agents")
        .bearer_auth("garbage")
        .reply()
        .await;
    second.expect_unauthenticated();
    assert_eq!(remaining(&second), 0);
    let third = app.get("/api/v1/audit").reply().await;
    third.expect_error(429, "RATE_LIMIT_EXCEEDED");
    assert!(third.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_limit_holds_across_nodes_sharing_redis() {
    let app = TestApp::builder()
        .on(Deployment::Postgres)
        .env("IDP_RATE_LIMIT_PER_MINUTE", "3")
        .start()
        .await;
    let other = app.start_another_node().await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let token = app.token(&admin).await;
    let on_other = app
        .request_to(&other.base_url, reqwest::Method::GET, "/api/v1/agents")
        .bearer_auth(&token)
        .reply()
        .await
        .expect(200);
    assert_eq!(remaining(&on_other), 1);
    app.get_as(&token, "/api/v1/agents").await.expect(200);
    app.request_to(&other.base_url, reqwest::Method::GET, "/api/v1/agents")
        .bearer_auth(&token)
        .reply()
        .await
        .expect_error(429, "RATE_LIMIT_EXCEEDED");
}

async fn the_monthly_quota_ends_in_access_denied() {
    let app = TestApp::builder()
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "2")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let other = app.bootstrap("acme", "other@acme.example").await;
    let first = app.token(&admin).await;
    app.token(&admin).await;
    let refused = app.request_token(&admin, None).await;
    let body = refused.expect_oauth_error(429, "access_denied");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("quota"),
        "the description says which limit: {body}"
    );
    let retry: i64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(
        (1..=31 * 24 * 3600).contains(&retry),
        "Retry-After {retry}: until the next UTC month"
    );
    // Issued tokens still work; the quota is per client.
    assert!(app.token_works(&first, &admin.agent_id).await);
    app.token(&other).await;
}

/// A refused token request spends no quota: the unit the admission step took
/// is given back when the client, or its scope, is refused afterwards.
async fn refused_token_requests_spend_no_quota() {
    let app = TestApp::builder()
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "2")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let mut wrong = admin.clone();
    wrong.client_secret.push('x');
    for _ in 0..3 {
        app.request_token(&wrong, None)
            .await
            .expect_oauth_error(401, "invalid_client");
        app.request_token(&admin, Some("not:granted"))
            .await
            .expect_oauth_error(400, "invalid_scope");
    }
    app.token(&admin).await;
    app.token(&admin).await;
    app.request_token(&admin, None)
        .await
        .expect_oauth_error(429, "access_denied");
    // A spent quota is still no answer to a wrong secret.
    app.request_token(&wrong, None)
        .await
        .expect_oauth_error(401, "invalid_client");
}

e2e_tests! {
    api_requests_count_down_then_429_with_retry_after,
    anonymous_requests_are_limited_by_address,
    the_monthly_quota_ends_in_access_denied,
    refused_token_requests_spend_no_quota,
}
