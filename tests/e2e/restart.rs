//! What a restart of the server process keeps: agents, credentials, audit
//! events, revocations and the signing key (issue 3: the embedded store keeps
//! its data across restarts, as PostgreSQL does).

use serde_json::Value;

use crate::support::{Deployment, TestApp, agent_body};

async fn agents_credentials_audit_and_revocations_survive_a_restart() {
    let mut app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let worker = app
        .new_client(&admin, "worker@acme.example", &["agents:read"])
        .await;
    let revoked_token = app.token(&worker).await;
    let kept_token = app.token(&worker).await;
    app.revoke_token(&admin, &revoked_token).await;
    let dropped = app.generate_credential(&admin, &worker.agent_id).await;
    app.revoke_credential(
        &admin,
        &worker.agent_id,
        dropped.credential_id.as_deref().unwrap(),
    )
    .await
    .expect(204);
    let agent_before = app
        .get_as(&admin, &format!("/api/v1/agents/{}", worker.agent_id))
        .await
        .expect_json(200);
    let events_before = app.audit_events(&admin, "").await;

    app.restart().await;

    // The signing key survived: tokens issued before still verify.
    let agent_after = app
        .get_as(&admin, &format!("/api/v1/agents/{}", worker.agent_id))
        .await
        .expect_json(200);
    assert_eq!(agent_after, agent_before);
    assert!(app.token_works(&kept_token, &worker.agent_id).await);
    // The revocation survived.
    assert!(!app.token_works(&revoked_token, &worker.agent_id).await);
    assert_eq!(
        app.introspect(&admin, &revoked_token).await["active"],
        false
    );
    // Credentials: the live one still verifies, the revoked one does not.
    app.token(&worker).await;
    app.request_token(&dropped, None)
        .await
        .expect_oauth_error(401, "invalid_client");
    let credentials = app
        .get_as(
            &admin,
            &format!("/api/v1/agents/{}/credentials", worker.agent_id),
        )
        .await
        .expect_json(200);
    let statuses: Vec<&str> = credentials["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| c["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses.len(), 2, "{credentials}");
    assert!(statuses.contains(&"active") && statuses.contains(&"revoked"));
    // The audit log kept every event, in order, unchanged.
    let events_after = app.audit_events(&admin, "").await;
    let tail: Vec<&Value> = events_after
        .iter()
        .skip(events_after.len() - events_before.len())
        .collect();
    assert_eq!(tail, events_before.iter().collect::<Vec<_>>());
}

async fn quotas_and_agent_limits_survive_a_restart() {
    let mut app = TestApp::builder()
        .env("IDP_MAX_AGENTS_PER_OWNER", "2")
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "2")
        .start()
        .await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let worker = app
        .new_client(&admin, "worker@acme.example", &["agents:read"])
        .await;
    app.token(&worker).await;
    app.token(&worker).await;
    app.restart().await;
    app.request_token(&worker, None)
        .await
        .expect_oauth_error(429, "access_denied");
    app.post_agent(&admin, &agent_body("two@acme.example", &["agents:read"]))
        .await
        .expect_error(403, "FREE_TIER_LIMIT_EXCEEDED");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_the_same_data_directory_is_refused() {
    let app = TestApp::builder().on(Deployment::Embedded).start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let stderr = crate::process::serve_fails(
        &app.env()
            .iter()
            .filter(|(k, _)| k != "IDP_BIND")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
    )
    .await;
    assert!(
        stderr.contains(&app.data_dir().display().to_string()),
        "the error names the data directory: {stderr}"
    );
    // The first server is untouched.
    app.get_as(&token, "/api/v1/agents").await.expect(200);
}

e2e_tests! {
    agents_credentials_audit_and_revocations_survive_a_restart,
    quotas_and_agent_limits_survive_a_restart,
}
