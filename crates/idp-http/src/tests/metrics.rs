//! `/metrics`: label values stay bounded whatever clients send.

use actix_web::http::Method;
use actix_web::test::TestRequest;

use idp_domain::services::ClientAuthFailure;

use super::fixtures::*;
use crate::metrics::{Metrics, PoolStatus, TokenRefusal, method_label};

#[test]
fn standard_methods_are_their_own_label_and_any_other_is_other() {
    for (method, label) in [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::PATCH, "PATCH"),
        (Method::DELETE, "DELETE"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::TRACE, "OTHER"),
        (Method::CONNECT, "OTHER"),
        (Method::from_bytes(b"PROPFIND").unwrap(), "OTHER"),
        (Method::from_bytes(b"get").unwrap(), "OTHER"),
        (Method::from_bytes(&[b'X'; 300]).unwrap(), "OTHER"),
    ] {
        assert_eq!(method_label(&method), label, "{method}");
    }
}

#[actix_web::test]
async fn invented_methods_share_one_series() {
    let state = Mocks::default().state();
    let metrics = state.metrics.clone();
    for i in 0..20 {
        let method = Method::from_bytes(format!("X{i:03}{}", "M".repeat(100)).as_bytes()).unwrap();
        let (status, _, _) = send(
            state.clone(),
            TestRequest::default().method(method).uri("/healthz"),
        )
        .await;
        assert_eq!(status, 405);
    }
    let (status, _, _) = send(state.clone(), TestRequest::get().uri("/healthz")).await;
    assert_eq!(status, 200);

    let text = metrics.render();
    assert!(
        !text.contains("X000"),
        "an invented method is a label:\n{text}"
    );
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("agentidp_http_requests_total{"))
        .collect();
    assert!(
        series.iter().any(|l| l.contains(r#"method="OTHER""#)
            && l.contains(r#"status="405""#)
            && l.ends_with(" 20")),
        "{series:#?}"
    );
    assert!(
        series
            .iter()
            .any(|l| l.contains(r#"method="GET""#) && l.contains(r#"status="200""#)),
        "{series:#?}"
    );
    assert_eq!(series.len(), 2, "{series:#?}");
}

/// The series of `text` whose line starts with `name{` (or is `name value`).
fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

fn token_request(form: &str) -> TestRequest {
    TestRequest::post()
        .uri("/api/v1/token")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(form.to_owned())
}

#[actix_web::test]
async fn routes_are_labelled_by_their_pattern_never_the_raw_path() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let state = mocks.state();
    let metrics = state.metrics.clone();
    for id in ["a", "b", "0194f3a0-0000-7000-8000-00000000000c"] {
        let (status, _, _) = send(
            state.clone(),
            TestRequest::get().uri(&format!("/api/v1/agents/{id}")),
        )
        .await;
        assert_eq!(status, 401);
        let (status, _, _) = send(
            state.clone(),
            TestRequest::get().uri(&format!("/no/such/{id}")),
        )
        .await;
        assert_eq!(status, 404);
    }
    let text = metrics.render();
    let requests = series(&text, "agentidp_http_requests_total");
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert!(
        requests
            .iter()
            .any(|l| l.contains(r#"route="/api/v1/agents/{agentId}""#)
                && l.contains(r#"status="401""#)
                && l.ends_with(" 3")),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains(r#"route="unmatched""#) && l.ends_with(" 3")),
        "{requests:#?}"
    );
    assert!(!text.contains("/no/such"), "{text}");
    assert!(
        text.contains("agentidp_http_request_duration_seconds_bucket{"),
        "{text}"
    );
}

#[actix_web::test]
async fn token_refusals_are_counted_by_reason() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    mocks.hasher.expect_verify_dummy().returning(|_| Ok(()));
    let state = mocks.state();
    let metrics = state.metrics.clone();
    let basic = |id: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{id}:s"))
        )
    };
    for (req, status) in [
        (token_request("grant_type=client_credentials"), 401),
        (
            token_request("grant_type=client_credentials")
                .insert_header(("Authorization", "Basic !!!")),
            401,
        ),
        (
            token_request("grant_type=client_credentials")
                .insert_header(("Authorization", basic("nobody"))),
            401,
        ),
        (
            token_request("grant_type=password").insert_header(("Authorization", basic(AGENT))),
            400,
        ),
        (token_request("grant_type=a&grant_type=b"), 400),
    ] {
        assert_eq!(send(state.clone(), req).await.0, status);
    }
    let text = metrics.render();
    let refused = series(&text, "agentidp_tokens_refused_total");
    for reason in [
        "no_client_authentication",
        "malformed_client_authentication",
        "unknown_client",
        "unsupported_grant_type",
        "invalid_request",
    ] {
        assert!(
            refused
                .iter()
                .any(|l| l.contains(&format!(r#"reason="{reason}""#)) && l.ends_with(" 1")),
            "{reason}: {refused:#?}"
        );
    }
    assert_eq!(refused.len(), 5, "{refused:#?}");
    assert_eq!(
        series(&text, "agentidp_tokens_issued_total"),
        ["agentidp_tokens_issued_total 0"]
    );
}

#[actix_web::test]
async fn rate_limit_refusals_are_counted_on_every_endpoint() {
    let mut limiter = idp_domain::ports::MockRateLimiter::new();
    limiter.expect_hit().returning(|_, limit, _, _| {
        Ok(idp_domain::ports::RateDecision {
            allowed: false,
            limit,
            remaining: 0,
            reset_at: now().timestamp() + 30,
            retry_after: 30,
        })
    });
    let state = Mocks {
        limiter,
        ..Mocks::default()
    }
    .state();
    let metrics = state.metrics.clone();
    let (status, _, _) = send(state.clone(), TestRequest::get().uri("/api/v1/agents")).await;
    assert_eq!(status, 429);
    let (status, _, _) = send(
        state.clone(),
        token_request("grant_type=client_credentials"),
    )
    .await;
    assert_eq!(status, 429);
    let text = metrics.render();
    assert_eq!(
        series(&text, "agentidp_rate_limited_total"),
        ["agentidp_rate_limited_total 2"]
    );
    assert!(
        series(&text, "agentidp_tokens_refused_total")
            .contains(&r#"agentidp_tokens_refused_total{reason="rate_limited"} 1"#),
        "{text}"
    );
}

#[test]
fn a_spent_quota_is_counted_as_a_refusal_and_a_quota_refusal() {
    let metrics = Metrics::new();
    metrics.token_refused(TokenRefusal::MonthlyQuotaExceeded);
    metrics.token_refused(TokenRefusal::InvalidScope);
    let text = metrics.render();
    assert_eq!(
        series(&text, "agentidp_quota_exceeded_total"),
        ["agentidp_quota_exceeded_total 1"]
    );
    assert_eq!(series(&text, "agentidp_tokens_refused_total").len(), 2);
}

#[test]
fn audit_commits_are_histograms_of_duration_size_and_wait() {
    let metrics = Metrics::new();
    let commits = metrics.audit_commits();
    commits.batch_committed(12, 0.004);
    commits.batch_committed(1, 0.0015);
    for _ in 0..13 {
        commits.append_answered(0.02);
    }
    let text = metrics.render();
    for line in [
        "agentidp_audit_commit_duration_seconds_count 2",
        "agentidp_audit_commit_duration_seconds_bucket{le=\"0.001\"} 0",
        "agentidp_audit_commit_duration_seconds_bucket{le=\"0.002\"} 1",
        "agentidp_audit_commit_duration_seconds_bucket{le=\"0.004\"} 2",
        "agentidp_audit_commit_events_sum 13.0",
        "agentidp_audit_commit_events_count 2",
        "agentidp_audit_commit_events_bucket{le=\"1.0\"} 1",
        "agentidp_audit_commit_events_bucket{le=\"8.0\"} 1",
        "agentidp_audit_commit_events_bucket{le=\"16.0\"} 2",
        "agentidp_audit_append_wait_seconds_count 13",
        "agentidp_audit_append_wait_seconds_bucket{le=\"0.015\"} 0",
        "agentidp_audit_append_wait_seconds_bucket{le=\"0.02\"} 13",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}

#[test]
fn refusal_reasons_are_a_closed_set_matching_the_audit_reasons() {
    for (domain_reason, label) in [
        (ClientAuthFailure::UnknownClient, "unknown_client"),
        (ClientAuthFailure::InvalidSecret, "invalid_client_secret"),
        (ClientAuthFailure::CredentialRevoked, "credential_revoked"),
        (ClientAuthFailure::CredentialExpired, "credential_expired"),
        (ClientAuthFailure::AgentSuspended, "agent_suspended"),
        (
            ClientAuthFailure::AgentDecommissioned,
            "agent_decommissioned",
        ),
    ] {
        // The metric's label is the audit event's reason.
        assert_eq!(domain_reason.as_str(), label);
        assert_eq!(
            TokenRefusal::from_client_failure(domain_reason).as_str(),
            label
        );
    }
    let labels: std::collections::BTreeSet<&str> =
        TokenRefusal::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), TokenRefusal::ALL.len());
    assert!(
        labels
            .iter()
            .all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
}

#[test]
fn probed_gauges_are_read_at_every_scrape() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let depth = Arc::new(AtomicUsize::new(3));
    let probe_depth = depth.clone();
    let metrics = Metrics::new()
        .with_pool_status(Arc::new(|| PoolStatus {
            max_size: 16,
            size: 5,
            available: 2,
            waiting: 1,
        }))
        .with_hash_queue_depth(Arc::new(move || probe_depth.load(Ordering::Relaxed)));
    let text = metrics.render();
    for line in [
        "agentidp_db_pool_max_size 16",
        "agentidp_db_pool_size 5",
        "agentidp_db_pool_available 2",
        "agentidp_db_pool_waiting 1",
        "agentidp_hash_queue_depth 3",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
    depth.store(0, Ordering::Relaxed);
    assert!(
        metrics
            .render()
            .lines()
            .any(|l| l == "agentidp_hash_queue_depth 0")
    );
    // Without probes, the gauges are absent rather than a misleading zero.
    let bare = Metrics::new().render();
    assert!(
        !bare.contains("db_pool") && !bare.contains("hash_queue"),
        "{bare}"
    );
}

#[actix_web::test]
async fn each_dependency_reports_whether_it_is_up_at_scrape_time() {
    use std::sync::Arc;

    use idp_domain::StoreError;
    use idp_domain::ports::MockHealthCheck;

    let mut database = MockHealthCheck::new();
    database.expect_name().return_const("database");
    database.expect_check().returning(|| Ok(()));
    let mut cache = MockHealthCheck::new();
    cache.expect_name().return_const("cache");
    cache
        .expect_check()
        .returning(|| Err(StoreError::Unavailable(anyhow::anyhow!("down"))));
    let mut state = Mocks::default().state();
    state.health_checks = vec![Arc::new(database), Arc::new(cache)];
    let app = actix_web::test::init_service(crate::app(state)).await;
    let res =
        actix_web::test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(res.status(), 200);
    let body = actix_web::test::read_body(res).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let up = series(&text, "agentidp_dependency_up");
    assert!(
        up.contains(&r#"agentidp_dependency_up{dependency="database"} 1"#),
        "{up:#?}"
    );
    assert!(
        up.contains(&r#"agentidp_dependency_up{dependency="cache"} 0"#),
        "{up:#?}"
    );
}
