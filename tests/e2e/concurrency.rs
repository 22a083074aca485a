//! Limits and lifecycle rules under concurrent requests: exactly as many
//! winners as the rule allows, and the losers refused with the contract's
//! answer, never a 500.

use reqwest::RequestBuilder;
use serde_json::json;
use tokio::task::JoinSet;

use crate::support::{Exchange, Reply, TestApp, agent_body};

/// Sends every request at once; returns the replies' statuses and codes.
async fn all_at_once(requests: Vec<RequestBuilder>) -> Vec<Reply> {
    let mut set = JoinSet::new();
    for request in requests {
        set.spawn(request.reply());
    }
    let mut replies = Vec::new();
    while let Some(reply) = set.join_next().await {
        replies.push(reply.expect("a request task"));
    }
    replies
}

/// Counts replies with `status`, asserting each of the others is `other_status` + `code`.
#[track_caller]
fn winners(replies: &[Reply], status: u16, other_status: u16, code: &str) -> usize {
    let mut won = 0;
    for reply in replies {
        if reply.status == status {
            won += 1;
        } else {
            let body = reply.json();
            let got = body["code"].as_str().or(body["error"].as_str());
            assert_eq!(
                (reply.status, got),
                (other_status, Some(code)),
                "{}",
                reply.text
            );
        }
    }
    won
}

async fn concurrent_creates_respect_the_agent_limit() {
    let app = TestApp::builder()
        .env("IDP_MAX_AGENTS_PER_OWNER", "4")
        .start()
        .await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let requests = (0..10)
        .map(|i| {
            app.post("/api/v1/agents")
                .bearer_auth(&token)
                .json(&agent_body(&format!("c{i}@acme.example"), &["x:y"]))
        })
        .collect();
    let replies = all_at_once(requests).await;
    assert_eq!(winners(&replies, 201, 403, "FREE_TIER_LIMIT_EXCEEDED"), 3);
    let page = app.get_as(&token, "/api/v1/agents").await.expect_json(200);
    assert_eq!(page["pagination"]["total"], 4);
}

async fn concurrent_creates_with_one_email_make_one_agent() {
    let app = TestApp::start().await;
    let (_, acme) = app.bootstrap_admin("acme").await;
    let (_, globex) = app.bootstrap_admin("globex").await;
    let requests = [
        "Same@Race.example",
        "same@race.example",
        "SAME@RACE.EXAMPLE",
        "same@RACE.example",
    ]
    .iter()
    .enumerate()
    .map(|(i, email)| {
        let token = if i % 2 == 0 { &acme } else { &globex };
        app.post("/api/v1/agents")
            .bearer_auth(token)
            .json(&agent_body(email, &["x:y"]))
    })
    .collect();
    let replies = all_at_once(requests).await;
    assert_eq!(winners(&replies, 201, 409, "AGENT_ALREADY_EXISTS"), 1);
}

async fn concurrent_generation_respects_the_credential_limit() {
    let app = TestApp::builder()
        .env("IDP_MAX_CREDENTIALS_PER_AGENT", "3")
        .start()
        .await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let requests = (0..6)
        .map(|_| {
            app.post(&format!("/api/v1/agents/{}/credentials", admin.agent_id))
                .bearer_auth(&token)
        })
        .collect();
    let replies = all_at_once(requests).await;
    assert_eq!(winners(&replies, 201, 403, "FREE_TIER_LIMIT_EXCEEDED"), 2);
}

async fn concurrent_token_requests_respect_the_quota() {
    let app = TestApp::builder()
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "3")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let requests = (0..8)
        .map(|_| {
            app.post("/api/v1/token")
                .basic_auth(&admin.client_id, Some(&admin.client_secret))
                .form(&[("grant_type", "client_credentials")])
        })
        .collect();
    let replies = all_at_once(requests).await;
    assert_eq!(winners(&replies, 200, 429, "access_denied"), 3);
}

async fn concurrent_requests_respect_the_rate_limit() {
    let app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "5")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let token = app.token(&admin).await;
    let requests = (0..12)
        .map(|_| app.get("/api/v1/agents").bearer_auth(&token))
        .collect();
    let replies = all_at_once(requests).await;
    assert_eq!(winners(&replies, 200, 429, "RATE_LIMIT_EXCEEDED"), 4);
}

async fn concurrent_lifecycle_changes_have_one_winner() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let worker = app.new_client(&token, "w@acme.example", &["x:y"]).await;
    let cid = worker.credential_id.clone().unwrap();
    let revoke = format!("/api/v1/agents/{}/credentials/{cid}", worker.agent_id);
    let replies = all_at_once(
        (0..4)
            .map(|_| app.delete(&revoke).bearer_auth(&token))
            .collect(),
    )
    .await;
    assert_eq!(winners(&replies, 204, 409, "CREDENTIAL_REVOKED"), 1);

    let before = app.audit_total(&token).await;
    let agent = format!("/api/v1/agents/{}", worker.agent_id);
    let replies = all_at_once(
        (0..4)
            .map(|_| app.delete(&agent).bearer_auth(&token))
            .collect(),
    )
    .await;
    assert_eq!(winners(&replies, 204, 409, "AGENT_DECOMMISSIONED"), 1);
    assert_eq!(
        app.audit_total(&token).await,
        before + 1,
        "one decommission event"
    );

    // Suspending and patching the same agent at once never loses the agent.
    let other = app.create_agent(&token, "o@acme.example", &["x:y"]).await;
    let path = format!("/api/v1/agents/{}", other["agentId"].as_str().unwrap());
    let replies = all_at_once(vec![
        app.patch(&path)
            .bearer_auth(&token)
            .json(&json!({ "status": "suspended" })),
        app.patch(&path)
            .bearer_auth(&token)
            .json(&json!({ "version": "3.0.0" })),
        app.patch(&path)
            .bearer_auth(&token)
            .json(&json!({ "deploymentEnv": "production" })),
    ])
    .await;
    assert!(replies.iter().all(|r| r.status == 200), "{replies:?}");
    app.get_as(&token, &path).await.expect(200);
}

async fn an_acknowledged_suspension_is_never_lost_to_a_concurrent_update() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let worker = app.new_client(&token, "w@acme.example", &["x:y"]).await;
    let worker_token = app.token(&worker).await;
    let path = format!("/api/v1/agents/{}", worker.agent_id);
    for round in 0..30 {
        let mut requests = vec![
            app.patch(&path)
                .bearer_auth(&token)
                .json(&json!({ "status": "suspended" })),
        ];
        for i in 0..4 {
            requests.push(
                app.patch(&path)
                    .bearer_auth(&token)
                    .json(&json!({ "version": format!("{round}.{i}.0") })),
            );
        }
        let replies = all_at_once(requests).await;
        assert!(replies.iter().all(|r| r.status == 200), "{replies:?}");
        let agent = app.get_as(&token, &path).await.expect_json(200);
        assert_eq!(
            agent["status"], "suspended",
            "round {round}: the suspension was answered 200 and then lost"
        );
        assert!(!app.token_works(&worker_token, &worker.agent_id).await);
        app.set_status(&token, &worker.agent_id, "active").await;
    }
}

e2e_tests! {
    concurrent_creates_respect_the_agent_limit,
    concurrent_creates_with_one_email_make_one_agent,
    concurrent_generation_respects_the_credential_limit,
    concurrent_token_requests_respect_the_quota,
    concurrent_requests_respect_the_rate_limit,
    concurrent_lifecycle_changes_have_one_winner,
    an_acknowledged_suspension_is_never_lost_to_a_concurrent_update,
}
