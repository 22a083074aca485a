//! What lifecycle changes do to live tokens: suspension, reactivation,
//! decommissioning, rotation, credential and token revocation, and
//! revocations surviving a Redis flush and reaching every node.

use serde_json::json;

use crate::support::{AgentClient, Deployment, Exchange, TestApp, client_from_credential};

/// An owner's admin token, and an agent of that owner with a live token.
async fn admin_and_worker(app: &TestApp) -> (String, AgentClient, String) {
    let (_, admin_token) = app.bootstrap_admin("acme").await;
    let worker = app
        .new_client(
            &admin_token,
            "worker@acme.example",
            &["agents:read", "resume:read"],
        )
        .await;
    let worker_token = app.token(&worker).await;
    assert!(app.token_works(&worker_token, &worker.agent_id).await);
    (admin_token, worker, worker_token)
}

async fn suspension_stops_live_tokens_at_once_and_reactivation_restores_them() {
    let app = TestApp::start().await;
    let (admin, worker, token) = admin_and_worker(&app).await;
    app.set_status(&admin, &worker.agent_id, "suspended").await;
    assert!(!app.token_works(&token, &worker.agent_id).await);
    assert_eq!(
        app.introspect(&admin, &token).await,
        json!({ "active": false })
    );
    app.request_token(&worker, None)
        .await
        .expect_oauth_error(401, "invalid_client");

    app.set_status(&admin, &worker.agent_id, "active").await;
    assert!(app.token_works(&token, &worker.agent_id).await, "restored");
    assert_eq!(app.introspect(&admin, &token).await["active"], true);
    app.token(&worker).await;
}

async fn decommissioning_kills_tokens_and_revokes_every_credential_in_one_event() {
    let app = TestApp::start().await;
    let (admin, worker, token) = admin_and_worker(&app).await;
    let second = app.generate_credential(&admin, &worker.agent_id).await;
    let second_token = app.token(&second).await;
    let already_revoked = app.generate_credential(&admin, &worker.agent_id).await;
    app.revoke_credential(
        &admin,
        &worker.agent_id,
        already_revoked.credential_id.as_deref().unwrap(),
    )
    .await
    .expect(204);

    let event = app
        .single_event_of(&admin, async {
            app.decommission(&admin, &worker.agent_id).await.expect(204);
        })
        .await;
    assert_eq!(event["action"], "agent.decommissioned");
    assert_eq!(event["agentId"], worker.agent_id.as_str());
    let mut listed: Vec<String> = event["metadata"]["revokedCredentialIds"]
        .as_array()
        .unwrap_or_else(|| panic!("no revokedCredentialIds in {event}"))
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    let mut expected = vec![
        worker.credential_id.clone().unwrap(),
        second.credential_id.clone().unwrap(),
    ];
    expected.sort();
    assert_eq!(
        listed, expected,
        "the credentials this decommission revoked"
    );

    for live in [&token, &second_token] {
        assert!(!app.token_works(live, &worker.agent_id).await);
        assert_eq!(
            app.introspect(&admin, live).await,
            json!({ "active": false })
        );
    }
    let credentials = app
        .get_as(
            &admin,
            &format!("/api/v1/agents/{}/credentials", worker.agent_id),
        )
        .await
        .expect_json(200);
    assert_eq!(credentials["pagination"]["total"], 3);
    for credential in credentials["data"].as_array().unwrap() {
        assert_eq!(credential["status"], "revoked", "{credential}");
    }
    for client in [&worker, &second] {
        app.request_token(client, None)
            .await
            .expect_oauth_error(401, "invalid_client");
    }
}

async fn rotation_refuses_the_old_secret_at_once_but_keeps_issued_tokens() {
    let app = TestApp::start().await;
    let (admin, worker, token) = admin_and_worker(&app).await;
    let cid = worker.credential_id.clone().unwrap();
    let rotated = app
        .rotate(&admin, &worker.agent_id, &cid)
        .await
        .expect_json(200);
    app.request_token(&worker, None)
        .await
        .expect_oauth_error(401, "invalid_client");
    let renewed = AgentClient {
        client_secret: rotated["clientSecret"].as_str().unwrap().to_owned(),
        ..worker.clone()
    };
    app.token(&renewed).await;
    assert!(
        app.token_works(&token, &worker.agent_id).await,
        "issued tokens stay valid"
    );
    assert_eq!(app.introspect(&admin, &token).await["active"], true);
}

async fn revoking_a_credential_kills_the_tokens_issued_under_it_only() {
    let app = TestApp::start().await;
    let (admin, worker, token) = admin_and_worker(&app).await;
    let other = app.generate_credential(&admin, &worker.agent_id).await;
    let other_token = app.token(&other).await;
    app.revoke_credential(
        &admin,
        &worker.agent_id,
        worker.credential_id.as_deref().unwrap(),
    )
    .await
    .expect(204);
    assert!(!app.token_works(&token, &worker.agent_id).await);
    assert_eq!(
        app.introspect(&admin, &token).await,
        json!({ "active": false })
    );
    app.request_token(&worker, None)
        .await
        .expect_oauth_error(401, "invalid_client");
    assert!(app.token_works(&other_token, &worker.agent_id).await);
}

async fn a_revoked_token_is_refused_everywhere() {
    let app = TestApp::start().await;
    let (admin, worker, token) = admin_and_worker(&app).await;
    app.revoke_token(&admin, &token).await;
    assert!(!app.token_works(&token, &worker.agent_id).await);
    app.get_as(&token, "/api/v1/agents")
        .await
        .expect_unauthenticated();
    app.get_as(&token, "/api/v1/audit")
        .await
        .expect_unauthenticated();
    assert_eq!(
        app.introspect(&admin, &token).await,
        json!({ "active": false })
    );
    // Using it to call the OAuth endpoints fails too.
    app.post("/api/v1/token/revoke")
        .bearer_auth(&token)
        .form(&[("token", token.as_str())])
        .reply()
        .await
        .expect_unauthenticated();
    // Revoking it again is still a quiet 200.
    app.revoke_token(&admin, &token).await;
    // The agent itself is fine: a new token works.
    let fresh = app.token(&worker).await;
    assert!(app.token_works(&fresh, &worker.agent_id).await);
}

async fn an_agent_may_revoke_its_own_token_by_bearer_or_basic() {
    let app = TestApp::start().await;
    let (_, worker, token) = admin_and_worker(&app).await;
    // With the token itself, and no scope for it.
    app.revoke_token(&token, &token).await;
    assert!(!app.token_works(&token, &worker.agent_id).await);
    // With its client credentials.
    let second = app.token(&worker).await;
    let reply = app
        .post("/api/v1/token/revoke")
        .basic_auth(&worker.client_id, Some(&worker.client_secret))
        .form(&[
            ("token", second.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .reply()
        .await
        .expect(200);
    assert!(reply.text.is_empty());
    assert!(!app.token_works(&second, &worker.agent_id).await);
}

async fn revoking_another_agents_token_needs_agents_write() {
    let app = TestApp::start().await;
    let (admin, worker, token) = admin_and_worker(&app).await;
    let peer = app
        .new_client(&admin, "peer@acme.example", &["agents:read"])
        .await;
    let peer_token = app.token(&peer).await;
    let before = app.audit_total(&admin).await;
    app.revoke_token(&peer_token, &token).await;
    let by_basic = app
        .post("/api/v1/token/revoke")
        .basic_auth(&peer.client_id, Some(&peer.client_secret))
        .form(&[("token", token.as_str())])
        .reply()
        .await;
    by_basic.expect(200);
    assert!(
        app.token_works(&token, &worker.agent_id).await,
        "RFC 7009 2.2: stays valid"
    );
    assert_eq!(
        app.audit_total(&admin).await,
        before,
        "nothing revoked, nothing written"
    );
    // With agents:write, it goes.
    app.revoke_token(&admin, &token).await;
    assert!(!app.token_works(&token, &worker.agent_id).await);
}

async fn revocation_ignores_tokens_it_cannot_revoke_and_still_checks_the_caller() {
    let app = TestApp::start().await;
    let (admin, _, _) = admin_and_worker(&app).await;
    let (_, globex) = app.bootstrap_admin("globex").await;
    let before = app.audit_total(&admin).await;
    for token in ["garbage", "a.b.c", &"x".repeat(9000)] {
        app.revoke_token(&admin, token).await;
    }
    // Another owner's token: 200, and it stays valid.
    app.revoke_token(&admin, &globex).await;
    assert_eq!(app.get_as(&globex, "/api/v1/agents").await.status, 200);
    assert_eq!(app.audit_total(&admin).await, before);

    app.post("/api/v1/token/revoke")
        .form(&[("token", "x")])
        .reply()
        .await
        .expect_unauthenticated();
    app.post("/api/v1/token/revoke")
        .bearer_auth(&admin)
        .reply()
        .await
        .expect_invalid_field("token");
    app.post("/api/v1/token/revoke")
        .bearer_auth(&admin)
        .json(&json!({ "token": "x" }))
        .reply()
        .await
        .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    let wrong = app
        .post("/api/v1/token/revoke")
        .basic_auth(uuid::Uuid::new_v4().to_string(), Some("sk_live_nope"))
        .form(&[("token", "x")])
        .reply()
        .await;
    wrong.expect_error(401, "AUTHENTICATION_ERROR");
    assert!(wrong.header("www-authenticate").is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_stays_refused_after_redis_loses_everything() {
    let app = TestApp::builder().on(Deployment::Postgres).start().await;
    let (admin, worker, token) = admin_and_worker(&app).await;
    let survivor = app.token(&worker).await;
    app.revoke_token(&admin, &token).await;
    assert!(!app.token_works(&token, &worker.agent_id).await);
    assert!(
        app.redis().key_count().await > 0,
        "the server keeps keys under its prefix"
    );

    app.redis().flush().await;
    // The running server renews its change-feed lease at once; nothing else
    // it kept is left.
    let left = app.redis().keys().await;
    assert!(left.iter().all(|key| key.contains("changes:")), "{left:?}");
    assert!(
        !app.token_works(&token, &worker.agent_id).await,
        "revocation survived the flush"
    );
    assert_eq!(
        app.introspect(&admin, &token).await,
        json!({ "active": false })
    );
    assert!(app.token_works(&survivor, &worker.agent_id).await);

    // And again, flushing between every request.
    for _ in 0..3 {
        app.redis().flush().await;
        assert!(!app.token_works(&token, &worker.agent_id).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_and_lifecycle_changes_reach_every_node_at_once() {
    let app = TestApp::builder().on(Deployment::Postgres).start().await;
    let other = app.start_another_node().await;
    let (admin, worker, token) = admin_and_worker(&app).await;
    let on_other = |token: &str| {
        app.request_to(
            &other.base_url,
            reqwest::Method::GET,
            &format!("/api/v1/agents/{}", worker.agent_id),
        )
        .bearer_auth(token.to_owned())
        .reply()
    };
    on_other(&token).await.expect(200);
    let from_other = app
        .request_token_from(&other.base_url, &worker, None)
        .await
        .expect_json(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        app.token_works(&from_other, &worker.agent_id).await,
        "one key, one issuer"
    );

    app.revoke_token(&admin, &token).await;
    on_other(&token).await.expect_unauthenticated();

    app.set_status(&admin, &worker.agent_id, "suspended").await;
    on_other(&from_other).await.expect_unauthenticated();
    app.set_status(&admin, &worker.agent_id, "active").await;
    on_other(&from_other).await.expect(200);

    // The other node has used the credential, so it knows it: a rotation or
    // a revocation here must still refuse it there at once.
    let credential_id = worker.credential_id.clone().unwrap();
    let rotated = app
        .rotate(&admin, &worker.agent_id, &credential_id)
        .await
        .expect_json(200);
    let rotated = client_from_credential(&worker.agent_id, &rotated);
    app.request_token_from(&other.base_url, &worker, None)
        .await
        .expect_oauth_error(401, "invalid_client");
    let after_rotation = app
        .request_token_from(&other.base_url, &rotated, None)
        .await
        .expect_json(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    on_other(&after_rotation).await.expect(200);
    app.revoke_credential(&admin, &worker.agent_id, &credential_id)
        .await
        .expect(204);
    app.request_token_from(&other.base_url, &rotated, None)
        .await
        .expect_oauth_error(401, "invalid_client");
    on_other(&after_rotation).await.expect_unauthenticated();
}

async fn a_token_revoked_while_suspended_stays_dead_after_reactivation() {
    let app = TestApp::start().await;
    let (admin, worker, token) = admin_and_worker(&app).await;
    let kept = app.token(&worker).await;
    app.set_status(&admin, &worker.agent_id, "suspended").await;
    app.revoke_token(&admin, &token).await;
    app.set_status(&admin, &worker.agent_id, "active").await;
    assert!(!app.token_works(&token, &worker.agent_id).await);
    assert!(app.token_works(&kept, &worker.agent_id).await);
}

e2e_tests! {
    suspension_stops_live_tokens_at_once_and_reactivation_restores_them,
    decommissioning_kills_tokens_and_revokes_every_credential_in_one_event,
    rotation_refuses_the_old_secret_at_once_but_keeps_issued_tokens,
    revoking_a_credential_kills_the_tokens_issued_under_it_only,
    a_revoked_token_is_refused_everywhere,
    an_agent_may_revoke_its_own_token_by_bearer_or_basic,
    revoking_another_agents_token_needs_agents_write,
    revocation_ignores_tokens_it_cannot_revoke_and_still_checks_the_caller,
    a_token_revoked_while_suspended_stays_dead_after_reactivation,
}
