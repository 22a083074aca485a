//! `POST /api/v1/token/introspect` (contract section 5; RFC 7662).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::support::{Exchange, TestApp, jwt};

const INTROSPECT: &str = "/api/v1/token/introspect";

async fn an_active_token_answers_with_its_claims() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let worker = app
        .new_client(&admin, "w@acme.example", &["resume:read", "resume:write"])
        .await;
    let token = app.token_with_scope(&worker, "resume:read").await;
    let before = app.audit_total(&admin).await;

    let answer = app.introspect(&admin, &token).await;
    let (_, claims) = jwt::parts(&token);
    let mut names: Vec<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "active",
            "aud",
            "client_id",
            "exp",
            "iat",
            "iss",
            "jti",
            "nbf",
            "owner",
            "scope",
            "sub",
            "token_type"
        ]
    );
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "Bearer");
    for claim in [
        "scope",
        "client_id",
        "sub",
        "aud",
        "iss",
        "exp",
        "iat",
        "nbf",
        "jti",
        "owner",
    ] {
        assert_eq!(answer[claim], claims[claim], "{claim}");
    }
    assert_eq!(answer["scope"], "resume:read");
    assert_eq!(answer["sub"], worker.agent_id.as_str());

    // With a hint, the same.
    let hinted = app
        .post(INTROSPECT)
        .bearer_auth(&admin)
        .form(&[
            ("token", token.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .reply()
        .await
        .expect_json(200);
    assert_eq!(hinted, answer);
    assert_eq!(
        app.audit_total(&admin).await,
        before,
        "introspection is not audited"
    );
}

async fn client_credentials_may_introspect_when_the_agent_has_the_capability() {
    let app = TestApp::start().await;
    let (admin, admin_token) = app.bootstrap_admin("acme").await;
    let worker = app
        .new_client(&admin_token, "w@acme.example", &["resume:read"])
        .await;
    let worker_token = app.token(&worker).await;
    let by_basic = |id: String, secret: String, token: String| {
        app.post(INTROSPECT)
            .basic_auth(id, Some(secret))
            .form(&[("token", token)])
            .reply()
    };
    let answer = by_basic(
        admin.client_id.clone(),
        admin.client_secret.clone(),
        worker_token.clone(),
    )
    .await
    .expect_json(200);
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], worker.agent_id.as_str());

    by_basic(
        worker.client_id.clone(),
        worker.client_secret.clone(),
        worker_token.clone(),
    )
    .await
    .expect_error(403, "INSUFFICIENT_SCOPE");
    let wrong = by_basic(
        admin.client_id.clone(),
        format!("sk_live_{}", "1".repeat(64)),
        worker_token,
    )
    .await;
    wrong.expect_error(401, "AUTHENTICATION_ERROR");
    assert!(
        wrong.header_values("www-authenticate").contains("Basic"),
        "{:?}",
        wrong.headers
    );
}

async fn callers_need_authentication_the_scope_and_a_token_parameter() {
    let app = TestApp::start().await;
    let (admin, admin_token) = app.bootstrap_admin("acme").await;
    let no_introspect = app.token_with_scope(&admin, "agents:read").await;
    app.post(INTROSPECT)
        .form(&[("token", admin_token.as_str())])
        .reply()
        .await
        .expect_unauthenticated();
    app.post(INTROSPECT)
        .bearer_auth("not-a-token")
        .form(&[("token", admin_token.as_str())])
        .reply()
        .await
        .expect_unauthenticated();
    app.post(INTROSPECT)
        .bearer_auth(&no_introspect)
        .form(&[("token", admin_token.as_str())])
        .reply()
        .await
        .expect_insufficient_scope("tokens:introspect");
    // Scope before validation.
    app.post(INTROSPECT)
        .bearer_auth(&no_introspect)
        .json(&json!({}))
        .reply()
        .await
        .expect_insufficient_scope("tokens:introspect");
    app.post(INTROSPECT)
        .bearer_auth(&admin_token)
        .reply()
        .await
        .expect_invalid_field("token");
    app.post(INTROSPECT)
        .bearer_auth(&admin_token)
        .form(&[("token_type_hint", "access_token")])
        .reply()
        .await
        .expect_invalid_field("token");
    app.post(INTROSPECT)
        .bearer_auth(&admin_token)
        .json(&json!({ "token": admin_token }))
        .reply()
        .await
        .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    app.post(INTROSPECT)
        .bearer_auth(&admin_token)
        .body(format!("token={admin_token}"))
        .reply()
        .await
        .expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    app.post(INTROSPECT)
        .bearer_auth(&admin_token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=a&token=b")
        .reply()
        .await
        .expect_error(400, "VALIDATION_ERROR");
}

async fn everything_but_a_live_token_of_the_owner_is_just_inactive() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let (_, globex) = app.bootstrap_admin("globex").await;
    let worker = app.new_client(&admin, "w@acme.example", &["x:y"]).await;
    let live = app.token(&worker).await;
    let revoked = app.token(&worker).await;
    app.revoke_token(&admin, &revoked).await;

    let (header, claims) = jwt::parts(&live);
    let signer = jwt::foreign_rs256_signer();
    let foreign_signed = jwt::forge(&header, &claims, Some(&signer));
    let unsigned = jwt::forge(&json!({ "alg": "none", "typ": "at+jwt" }), &claims, None);
    let mut widened = claims.clone();
    widened["scope"] = json!("x:y agents:write");
    let (original_header, _) = live.split_once('.').unwrap();
    let signature = live.rsplit('.').next().unwrap();
    let tampered = format!(
        "{original_header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(widened.to_string())
    );

    assert_eq!(app.introspect(&admin, &live).await["active"], true);
    assert_eq!(app.introspect(&globex, &globex).await["active"], true);
    let inactive = json!({ "active": false });
    for (what, token) in [
        ("garbage", "garbage"),
        ("three empty segments", ".."),
        ("three junk segments", "a.b.c"),
        ("signed by another key", foreign_signed.as_str()),
        ("alg none", unsigned.as_str()),
        ("tampered claims", tampered.as_str()),
        ("revoked", revoked.as_str()),
        ("another owner's", globex.as_str()),
    ] {
        assert_eq!(app.introspect(&admin, token).await, inactive, "{what}");
    }
    // And the other way round.
    assert_eq!(app.introspect(&globex, &live).await, inactive);
}

async fn an_expired_token_is_refused_and_inactive() {
    let app = TestApp::builder()
        .env("IDP_TOKEN_TTL_SECONDS", "1")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let token = app.token(&admin).await;
    let (_, claims) = jwt::parts(&token);
    let exp_ms = claims["exp"].as_i64().unwrap() * 1000;
    let wait = u64::try_from(exp_ms - crate::support::wall_clock().timestamp_millis()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait + 50)).await;
    app.get_as(&token, "/api/v1/agents")
        .await
        .expect_unauthenticated();
    // The caller authenticates with its client credentials: its tokens would expire too.
    let answer = app
        .post(INTROSPECT)
        .basic_auth(&admin.client_id, Some(&admin.client_secret))
        .form(&[("token", token.as_str())])
        .reply()
        .await
        .expect_json(200);
    assert_eq!(answer, json!({ "active": false }));
}

e2e_tests! {
    an_active_token_answers_with_its_claims,
    client_credentials_may_introspect_when_the_agent_has_the_capability,
    callers_need_authentication_the_scope_and_a_token_parameter,
    everything_but_a_live_token_of_the_owner_is_just_inactive,
    an_expired_token_is_refused_and_inactive,
}
