//! Contract section 7 (v2) against a hostile caller who reads the limits as
//! code does: the rate limit is the authenticated agent's whatever the
//! spelling of its id, guessing at a secret never spends the agent's budget,
//! hashing is bounded, only an issued token spends quota, a lost counter is
//! rebuilt, and the client address behind a proxy is the forwarded one.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::support::{AgentClient, Deployment, Exchange, Reply, TestApp, TestAppBuilder};

fn remaining(reply: &Reply) -> u64 {
    reply
        .header("x-ratelimit-remaining")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-RateLimit-Remaining on {}", reply.path))
}

/// A token request naming `client_id` with `secret`, as sent from `from`
/// (through the trusted proxy the test server is told about).
async fn token_as(app: &TestApp, client_id: &str, secret: &str, from: &str) -> Reply {
    app.post("/api/v1/token")
        .header("X-Forwarded-For", from)
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .reply()
        .await
}

/// The server behind a trusted proxy on loopback, so each request's
/// `X-Forwarded-For` is its client address.
fn behind_proxy() -> TestAppBuilder {
    TestApp::builder().env("IDP_TRUSTED_PROXIES", "127.0.0.1/32, ::1/128")
}

async fn every_spelling_of_an_agent_id_is_one_window() {
    let app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "3")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let upper = AgentClient {
        client_id: admin.client_id.to_uppercase(),
        ..admin.clone()
    };
    let simple = AgentClient {
        client_id: admin.client_id.replace('-', ""),
        ..admin.clone()
    };
    let first = app.request_token(&admin, None).await.expect(200);
    assert_eq!(remaining(&first), 2);
    let second = app.request_token(&upper, None).await.expect(200);
    assert_eq!(remaining(&second), 1, "upper case is the same agent");
    let token = second.json()["access_token"].as_str().unwrap().to_owned();
    let third = app.get_as(&token, "/api/v1/agents").await.expect(200);
    assert_eq!(remaining(&third), 0, "a Bearer call shares the window");
    for client in [&admin, &upper, &simple] {
        app.request_token(client, None)
            .await
            .expect_oauth_error(429, "access_denied");
    }
    // The token carries the agent id in one spelling only.
    let body = first.json();
    let (_, claims) = crate::support::jwt::parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], admin.agent_id);
    assert_eq!(claims["client_id"], admin.agent_id);
}

async fn wrong_secrets_never_lock_the_agent_out() {
    let app = behind_proxy()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "5")
        .env("IDP_AUTH_FAILURES_PER_MINUTE", "3")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let attacker = "203.0.113.7";
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(token_as(&app, &admin.client_id, "sk_live_guess", attacker).await);
    }
    for reply in &answers[..3] {
        reply.expect_oauth_error(401, "invalid_client");
    }
    for reply in &answers[3..] {
        let body = reply.expect_oauth_error(429, "access_denied");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("failed client authentications"),
            "{body}"
        );
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry));
    }
    // Other spellings of the same client from the same address: the same window.
    token_as(
        &app,
        &admin.client_id.to_uppercase(),
        "sk_live_guess",
        attacker,
    )
    .await
    .expect_oauth_error(429, "access_denied");
    // Introspection and revocation with Basic count in the same failures.
    let introspect = app
        .post("/api/v1/token/introspect")
        .header("X-Forwarded-For", attacker)
        .basic_auth(&admin.client_id, Some("sk_live_guess"))
        .form(&[("token", "x")])
        .reply()
        .await;
    introspect.expect_error(429, "RATE_LIMIT_EXCEEDED");
    assert!(introspect.header("retry-after").is_some());

    // An attacker guessing from another address has failures of its own.
    token_as(&app, &admin.client_id, "sk_live_guess", "203.0.113.8")
        .await
        .expect_oauth_error(401, "invalid_client");

    // The agent itself, from its own address, has its whole budget.
    let own = "198.51.100.20";
    let first = token_as(&app, &admin.client_id, &admin.client_secret, own)
        .await
        .expect(200);
    assert_eq!(
        remaining(&first),
        4,
        "failures spent nothing of the agent's window"
    );
    let token = first.json()["access_token"].as_str().unwrap().to_owned();
    // Each failure that was checked is in the audit log, with its address;
    // the refused ones were refused before any check and wrote nothing.
    let failed = app
        .get("/api/v1/audit?action=auth.failed&limit=100")
        .header("X-Forwarded-For", own)
        .bearer_auth(&token)
        .reply()
        .await
        .expect_json(200);
    let failed = failed["data"].as_array().unwrap();
    assert_eq!(failed.len(), 4, "{failed:#?}");
    assert_eq!(
        failed.iter().filter(|e| e["ipAddress"] == attacker).count(),
        3
    );
    for expected in [2, 1, 0] {
        let reply = app
            .get("/api/v1/agents")
            .header("X-Forwarded-For", own)
            .bearer_auth(&token)
            .reply()
            .await
            .expect(200);
        assert_eq!(remaining(&reply), expected);
    }
}

async fn ipv6_clients_are_limited_by_their_slash_64() {
    let app = behind_proxy()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "2")
        .start()
        .await;
    let anonymous = |from: &'static str| {
        app.get("/api/v1/agents")
            .header("X-Forwarded-For", from)
            .reply()
    };
    assert_eq!(remaining(&anonymous("2001:db8:0:1::1").await), 1);
    assert_eq!(
        remaining(&anonymous("2001:db8:0:1:ffff::2").await),
        0,
        "same /64"
    );
    anonymous("2001:db8:0:1::3")
        .await
        .expect_error(429, "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        remaining(&anonymous("2001:db8:0:2::1").await),
        1,
        "another /64"
    );
    assert_eq!(remaining(&anonymous("198.51.100.1").await), 1);
    // Without the proxy setting, the header is the client's own word: ignored.
    let direct = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "2")
        .start()
        .await;
    for (from, left) in [("203.0.113.1", 1), ("203.0.113.2", 0)] {
        let reply = direct
            .get("/api/v1/agents")
            .header("X-Forwarded-For", from)
            .reply()
            .await;
        assert_eq!(remaining(&reply), left, "{from}");
    }
}

async fn audit_addresses_follow_the_trusted_proxy_rule() {
    let app = behind_proxy().start().await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    token_as(
        &app,
        &admin.client_id,
        &admin.client_secret,
        "192.0.2.66, 203.0.113.50",
    )
    .await
    .expect(200);
    let token = app.token(&admin).await;
    let events = app.audit_events(&token, "action=token.issued").await;
    let addresses: Vec<&Value> = events.iter().map(|e| &e["ipAddress"]).collect();
    assert!(
        addresses.contains(&&Value::from("203.0.113.50")),
        "the rightmost untrusted hop: {addresses:?}"
    );
    assert!(
        !addresses.contains(&&Value::from("192.0.2.66")),
        "{addresses:?}"
    );

    let direct = TestApp::start().await;
    let admin = direct.bootstrap("acme", "admin@acme.example").await;
    let token = direct
        .post("/api/v1/token")
        .header("X-Forwarded-For", "203.0.113.50")
        .basic_auth(&admin.client_id, Some(&admin.client_secret))
        .form(&[("grant_type", "client_credentials")])
        .reply()
        .await
        .expect_json(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let events = direct.audit_events(&token, "action=token.issued").await;
    assert!(
        events.iter().all(|e| e["ipAddress"] == "127.0.0.1"),
        "{events:#?}"
    );
}

async fn a_flood_of_cold_wrong_secrets_is_refused_not_queued() {
    let app = behind_proxy()
        .env("IDP_HASH_CONCURRENCY", "1")
        .env("IDP_HASH_QUEUE_LIMIT", "2")
        .env("IDP_RATE_LIMIT_PER_MINUTE", "100000")
        .env("IDP_AUTH_FAILURES_PER_MINUTE", "100000")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    // Warm: this node verified the agent's secret once.
    app.request_token(&admin, None).await.expect(200);
    let flood: Vec<_> = (0..48)
        .map(|i| {
            let app_url = app.base_url().to_owned();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{app_url}/api/v1/token"))
                    .header("X-Forwarded-For", format!("198.18.0.{i}"))
                    .basic_auth(uuid::Uuid::new_v4().to_string(), Some("sk_live_wrong"))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .map(|r| (r.status().as_u16(), r.headers().contains_key("retry-after")))
            })
        })
        .collect();
    let mut warm = Vec::new();
    for _ in 0..10 {
        warm.push(app.request_token(&admin, None).await.status);
    }
    let mut statuses = Vec::new();
    for task in flood {
        statuses.push(task.await.unwrap().unwrap());
    }
    assert!(
        warm.iter().all(|s| *s == 200),
        "warm client refused: {warm:?}"
    );
    assert!(
        statuses.iter().all(|(s, _)| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    let unavailable: Vec<_> = statuses.iter().filter(|(s, _)| *s == 503).collect();
    assert!(
        !unavailable.is_empty(),
        "a full hashing queue answers 503 at once: {statuses:?}"
    );
    assert!(
        unavailable.iter().all(|(_, retry)| *retry),
        "503 without Retry-After"
    );
}

async fn wrong_secrets_hold_no_quota() {
    let app = behind_proxy()
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "2")
        .env("IDP_RATE_LIMIT_PER_MINUTE", "1000")
        .env("IDP_AUTH_FAILURES_PER_MINUTE", "1000")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    app.request_token(&admin, None).await.expect(200);
    // One unit left; many concurrent guesses must not hold it while they hash.
    let guesses: Vec<_> = (0..16)
        .map(|i| {
            let url = app.base_url().to_owned();
            let client_id = admin.client_id.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{url}/api/v1/token"))
                    .header("X-Forwarded-For", format!("198.18.1.{i}"))
                    .basic_auth(client_id, Some(format!("sk_live_guess_{i}")))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.request_token(&admin, None).await.expect(200);
    for guess in guesses {
        let status = guess.await.unwrap().unwrap();
        assert!(status == 401 || status == 503, "{status}");
    }
    let spent = app.request_token(&admin, None).await;
    let body = spent.expect_oauth_error(429, "access_denied");
    assert_eq!(body["error_description"], "monthly token quota exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_monthly_counter_is_rebuilt_from_the_audit_log() {
    let app = TestApp::builder()
        .on(Deployment::Postgres)
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "3")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    for _ in 0..2 {
        app.request_token(&admin, None).await.expect(200);
    }
    // Redis restarted empty, as far as this server can tell.
    app.redis().flush().await;
    app.request_token(&admin, None).await.expect(200);
    let body = app
        .request_token(&admin, None)
        .await
        .expect_oauth_error(429, "access_denied");
    assert_eq!(body["error_description"], "monthly token quota exceeded");
    // And again, when the counter is lost at the limit.
    app.redis().flush().await;
    app.request_token(&admin, None)
        .await
        .expect_oauth_error(429, "access_denied");
}

async fn the_credentials_listing_names_its_own_scope() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let narrow = app.token_with_scope(&admin, "audit:read").await;
    let _ = token;
    let reply = app
        .get_as(
            &narrow,
            &format!("/api/v1/agents/{}/credentials", admin.agent_id),
        )
        .await;
    reply.expect_insufficient_scope("agents:read");
}

async fn a_form_with_broken_percent_encoding_is_invalid_request() {
    let app = TestApp::start().await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let reply = app
        .request(Method::POST, "/api/v1/token")
        .basic_auth(&admin.client_id, Some(&admin.client_secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=%ZZ")
        .reply()
        .await;
    reply.expect_oauth_error(400, "invalid_request");
    let reply = app
        .request(Method::POST, "/api/v1/token")
        .basic_auth(&admin.client_id, Some(&admin.client_secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=agents%3")
        .reply()
        .await;
    reply.expect_oauth_error(400, "invalid_request");
}

e2e_tests!(
    every_spelling_of_an_agent_id_is_one_window,
    wrong_secrets_never_lock_the_agent_out,
    ipv6_clients_are_limited_by_their_slash_64,
    audit_addresses_follow_the_trusted_proxy_rule,
    a_flood_of_cold_wrong_secrets_is_refused_not_queued,
    wrong_secrets_hold_no_quota,
    the_credentials_listing_names_its_own_scope,
    a_form_with_broken_percent_encoding_is_invalid_request,
);
