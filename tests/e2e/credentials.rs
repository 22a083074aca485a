//! Credentials (contract section 4): generate, list, rotate, revoke, limits.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    AgentClient, Exchange, TestApp, client_from_credential, is_contract_timestamp, is_uuid, keys,
    sorted, wall_clock,
};

const CREDENTIAL_FIELDS: [&str; 7] = [
    "credentialId",
    "clientId",
    "type",
    "status",
    "createdAt",
    "expiresAt",
    "revokedAt",
];

fn is_secret(value: &Value) -> bool {
    value.as_str().is_some_and(|s| {
        s.strip_prefix("sk_live_").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
    })
}

async fn credentials_of(app: &TestApp, token: &str, agent_id: &str, query: &str) -> Value {
    app.get_as(
        token,
        &format!("/api/v1/agents/{agent_id}/credentials{query}"),
    )
    .await
    .expect_json(200)
}

async fn generate_returns_the_secret_exactly_once() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let agent = app.create_agent(&token, "c@acme.example", &["x:y"]).await;
    let agent_id = agent["agentId"].as_str().unwrap();
    let reply = app.post_credential(&token, agent_id).await.expect(201);
    reply.expect_no_store();
    let credential = reply.json();
    let mut expected = CREDENTIAL_FIELDS.to_vec();
    expected.push("clientSecret");
    assert_eq!(keys(&credential), sorted(&expected), "{credential}");
    assert!(is_uuid(&credential["credentialId"]));
    assert_eq!(credential["clientId"], agent_id, "clientId is the agentId");
    assert_eq!(credential["status"], "active");
    assert!(is_contract_timestamp(&credential["createdAt"]));
    assert_eq!(credential["expiresAt"], Value::Null);
    assert_eq!(credential["revokedAt"], Value::Null);
    assert!(
        is_secret(&credential["clientSecret"]),
        "{}",
        credential["clientSecret"]
    );
    let cid = credential["credentialId"].as_str().unwrap();
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/agents/{agent_id}/credentials/{cid}").as_str())
    );

    let client = client_from_credential(agent_id, &credential);
    app.token(&client).await;

    let listed = app
        .get_as(&token, &format!("/api/v1/agents/{agent_id}/credentials"))
        .await
        .expect(200);
    assert!(
        !listed.text.contains(&client.client_secret),
        "the secret is listed"
    );
    let page = listed.json();
    assert_eq!(page["pagination"]["total"], 1);
    let item = &page["data"][0];
    assert_eq!(
        keys(item),
        sorted(&CREDENTIAL_FIELDS),
        "no secret, no hash: {item}"
    );
    assert_eq!(item["credentialId"], cid);
}

async fn generate_takes_an_optional_future_expiry() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let path = format!("/api/v1/agents/{}/credentials", admin.agent_id);
    let post = |body: Value| app.post(&path).bearer_auth(&token).json(&body).reply();

    let expires = "2099-01-02T03:04:05.678Z";
    let credential = post(json!({ "expiresAt": expires })).await.expect_json(201);
    assert_eq!(credential["expiresAt"], expires);
    assert_eq!(credential["status"], "active");
    let with_offset = post(json!({ "expiresAt": "2099-01-02T05:04:05.678+02:00" }))
        .await
        .expect_json(201);
    assert_eq!(with_offset["expiresAt"], expires, "normalised to UTC");

    let past = (wall_clock() - chrono::Duration::minutes(1)).to_rfc3339();
    post(json!({ "expiresAt": past }))
        .await
        .expect_invalid_field("expiresAt");
    post(json!({ "expiresAt": "tomorrow" }))
        .await
        .expect_invalid_field("expiresAt");
    post(json!({ "expiresAt": 4_102_444_800_u64 }))
        .await
        .expect_invalid_field("expiresAt");
    post(json!({ "expiresAt": expires, "status": "active" }))
        .await
        .expect_invalid_field("status");
    app.post(&path)
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(format!(r#"{{"expiresAt":"{expires}"}}"#))
        .reply()
        .await
        .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    // An empty JSON object is an empty body.
    post(json!({})).await.expect(201);
}

async fn an_expired_credential_stops_authenticating() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let agent = app.create_agent(&token, "exp@acme.example", &["x:y"]).await;
    let agent_id = agent["agentId"].as_str().unwrap();
    let expires_at = wall_clock() + chrono::Duration::milliseconds(2500);
    let credential = app
        .post(&format!("/api/v1/agents/{agent_id}/credentials"))
        .bearer_auth(&token)
        .json(&json!({ "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true) }))
        .reply()
        .await
        .expect_json(201);
    let client = client_from_credential(agent_id, &credential);
    app.token(&client).await;
    let remaining = (expires_at - wall_clock()).to_std().unwrap_or_default();
    tokio::time::sleep(remaining + Duration::from_millis(50)).await;
    app.request_token(&client, None)
        .await
        .expect_oauth_error(401, "invalid_client");
    let page = credentials_of(&app, &token, agent_id, "?status=expired").await;
    assert_eq!(page["pagination"]["total"], 1);
    assert_eq!(page["data"][0]["status"], "expired");
    assert_eq!(
        credentials_of(&app, &token, agent_id, "?status=active").await["pagination"]["total"],
        0
    );
    // Expired credentials do not count toward the limit and can be revoked.
    app.revoke_credential(
        &token,
        agent_id,
        credential["credentialId"].as_str().unwrap(),
    )
    .await
    .expect(204);
}

async fn the_free_tier_caps_active_credentials_per_agent() {
    let app = TestApp::builder()
        .env("IDP_MAX_CREDENTIALS_PER_AGENT", "2")
        .start()
        .await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    // The bootstrap credential is the first.
    let second = app.generate_credential(&token, &admin.agent_id).await;
    app.post_credential(&token, &admin.agent_id)
        .await
        .expect_error(403, "FREE_TIER_LIMIT_EXCEEDED");
    app.revoke_credential(
        &token,
        &admin.agent_id,
        second.credential_id.as_deref().unwrap(),
    )
    .await
    .expect(204);
    app.generate_credential(&token, &admin.agent_id).await;
    app.post_credential(&token, &admin.agent_id)
        .await
        .expect_error(403, "FREE_TIER_LIMIT_EXCEEDED");
}

async fn a_suspended_agent_gets_no_new_credential() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let agent = app.create_agent(&token, "s@acme.example", &["x:y"]).await;
    let id = agent["agentId"].as_str().unwrap();
    app.set_status(&token, id, "suspended").await;
    app.post_credential(&token, id)
        .await
        .expect_error(409, "AGENT_NOT_ACTIVE");
    app.set_status(&token, id, "active").await;
    app.generate_credential(&token, id).await;
}

async fn list_paginates_filters_and_accepts_either_scope() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let agent = app.create_agent(&token, "l@acme.example", &["x:y"]).await;
    let id = agent["agentId"].as_str().unwrap();
    let mut made: Vec<AgentClient> = Vec::new();
    for _ in 0..3 {
        made.push(app.generate_credential(&token, id).await);
    }
    app.revoke_credential(&token, id, made[0].credential_id.as_deref().unwrap())
        .await
        .expect(204);

    let page = credentials_of(&app, &token, id, "?limit=2").await;
    assert_eq!(
        page["pagination"],
        json!({ "page": 1, "limit": 2, "total": 3, "totalPages": 2 })
    );
    let revoked = credentials_of(&app, &token, id, "?status=revoked").await;
    assert_eq!(revoked["pagination"]["total"], 1);
    assert_eq!(
        revoked["data"][0]["credentialId"],
        json!(made[0].credential_id)
    );
    assert!(is_contract_timestamp(&revoked["data"][0]["revokedAt"]));
    let active = credentials_of(&app, &token, id, "?status=active").await;
    assert_eq!(active["pagination"]["total"], 2);
    app.get_as(
        &token,
        &format!("/api/v1/agents/{id}/credentials?status=lost"),
    )
    .await
    .expect_invalid_field("status");

    for scope in ["agents:read", "agents:write"] {
        let narrowed = app.token_with_scope(&admin, scope).await;
        credentials_of(&app, &narrowed, id, "").await;
    }
    let neither = app.token_with_scope(&admin, "audit:read").await;
    app.get_as(&neither, &format!("/api/v1/agents/{id}/credentials"))
        .await
        .expect_error(403, "INSUFFICIENT_SCOPE");
    let reader = app.token_with_scope(&admin, "agents:read").await;
    app.post_credential(&reader, id)
        .await
        .expect_insufficient_scope("agents:write");
}

async fn rotate_and_revoke_refuse_revoked_and_unknown_credentials() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let client = app.new_client(&token, "r@acme.example", &["x:y"]).await;
    let cid = client.credential_id.clone().unwrap();
    let id = &client.agent_id;

    let rotated = app.rotate(&token, id, &cid).await.expect(200);
    rotated.expect_no_store();
    let body = rotated.json();
    assert_eq!(body["credentialId"], cid, "same credential");
    assert!(is_secret(&body["clientSecret"]));
    assert_ne!(body["clientSecret"], client.client_secret);

    // A credential of another agent of the same owner is not under this path.
    let other = app.generate_credential(&token, &admin.agent_id).await;
    let other_cid = other.credential_id.unwrap();
    app.rotate(&token, id, &other_cid)
        .await
        .expect_error(404, "CREDENTIAL_NOT_FOUND");
    app.revoke_credential(&token, id, &other_cid)
        .await
        .expect_error(404, "CREDENTIAL_NOT_FOUND");
    let unknown = uuid::Uuid::new_v4().to_string();
    app.rotate(&token, id, &unknown)
        .await
        .expect_error(404, "CREDENTIAL_NOT_FOUND");
    app.rotate(&token, &unknown, &cid)
        .await
        .expect_error(404, "AGENT_NOT_FOUND");
    app.rotate(&token, id, "nope")
        .await
        .expect_invalid_field("credentialId");

    let revoked = app.revoke_credential(&token, id, &cid).await.expect(204);
    assert!(revoked.text.is_empty());
    app.revoke_credential(&token, id, &cid)
        .await
        .expect_error(409, "CREDENTIAL_REVOKED");
    app.rotate(&token, id, &cid)
        .await
        .expect_error(409, "CREDENTIAL_REVOKED");
}

e2e_tests! {
    generate_returns_the_secret_exactly_once,
    generate_takes_an_optional_future_expiry,
    an_expired_credential_stops_authenticating,
    the_free_tier_caps_active_credentials_per_agent,
    a_suspended_agent_gets_no_new_credential,
    list_paginates_filters_and_accepts_either_scope,
    rotate_and_revoke_refuse_revoked_and_unknown_credentials,
}
