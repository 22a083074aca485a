//! What the gate guards follows from the matched route, never from the raw
//! path: every spelling that reaches an `/api/v1` handler is identified,
//! counted and answered with `X-RateLimit-*` (issue 9, item 7).

use actix_web::test::TestRequest;
use idp_domain::ports::RateDecision;

use super::fixtures::*;

/// A limiter that expects exactly `times` hits by the test's peer address.
fn limiter_counting(mocks: &mut Mocks, times: usize) {
    mocks
        .limiter
        .expect_hit()
        .withf(|key, _, _, _| key == "ip:10.0.0.1")
        .times(times)
        .returning(|_, limit, _, _| {
            Ok(RateDecision {
                allowed: true,
                limit,
                remaining: limit - 1,
                reset_at: now().timestamp() + 60,
                retry_after: 0,
            })
        });
}

#[actix_web::test]
async fn hostile_spellings_of_api_paths_are_gated() {
    for (path, status) in [
        ("/%61pi/v1/agents", 401),
        ("/api/v1/%61gents", 401),
        ("/%61pi/v1/audit", 401),
        ("/api/v1/agents/", 404),
        ("/api/v1/./agents", 404),
        ("/api/v1/token/../agents", 404),
        ("/api/v1", 404),
        ("/api/v1/nope", 404),
    ] {
        let mut mocks = Mocks::default();
        limiter_counting(&mut mocks, 1);
        let (got, headers, body) = send(mocks.state(), TestRequest::get().uri(path)).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(
            headers
                .get("x-ratelimit-remaining")
                .map(|v| v.to_str().unwrap()),
            Some("99"),
            "{path}: not counted by the gate"
        );
    }
}

#[actix_web::test]
async fn paths_outside_the_api_scope_reach_no_api_handler() {
    // These match no route: the app's 404, which is not rate limited.
    for path in ["/api//v1/agents", "/API/v1/agents", "/apiv1/agents"] {
        let mut mocks = Mocks::default();
        limiter_counting(&mut mocks, 0);
        let (status, headers, body) = send(mocks.state(), TestRequest::get().uri(path)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["code"], "NOT_FOUND", "{path}");
        assert!(!headers.contains_key("x-ratelimit-limit"), "{path}");
    }
}

#[actix_web::test]
async fn other_methods_on_the_token_endpoint_are_gated_405s() {
    for path in ["/api/v1/token", "/api/v1/%74oken"] {
        let mut mocks = Mocks::default();
        limiter_counting(&mut mocks, 1);
        let (status, headers, body) = send(mocks.state(), TestRequest::get().uri(path)).await;
        assert_eq!(status, 405, "{path}: {body}");
        assert_eq!(headers.get("allow").unwrap(), "POST", "{path}");
        assert!(headers.contains_key("x-ratelimit-limit"), "{path}");
    }
}

#[actix_web::test]
async fn route_patterns_keep_their_full_path_inside_the_scope() {
    let mut mocks = Mocks::authenticated("agents:read");
    mocks.agents.expect_find().returning(|_, _| Ok(None));
    let state = mocks.state();
    let metrics = state.metrics.clone();
    let uri = format!("/api/v1/agents/{AGENT}");
    let (status, _, _) = send(state, bearer(TestRequest::get().uri(&uri), "good")).await;
    assert_eq!(status, 404);
    let text = metrics.render();
    assert!(
        text.lines().any(|l| l.starts_with("agentidp_http_requests")
            && l.contains(r#"route="/api/v1/agents/{agentId}""#)),
        "{text}"
    );
}
