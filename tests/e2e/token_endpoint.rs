//! `POST /api/v1/token` (contract section 5; RFC 6749 sections 2.3.1, 4.4, 5)
//! and the access token it issues (RFC 9068).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::{AgentClient, Exchange, MANAGEMENT_SCOPES, Reply, TestApp, is_uuid, jwt};

const TOKEN_PATH: &str = "/api/v1/token";

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

/// `POST /api/v1/token` with a raw form body and optional Authorization.
async fn post_form(app: &TestApp, authorization: Option<&str>, form: &str) -> Reply {
    let mut request = app
        .post(TOKEN_PATH)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.reply().await
}

fn assert_token_response(reply: &Reply, scope: &str) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.expect_no_store();
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], scope);
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

async fn client_secret_basic_and_client_secret_post_both_work() {
    let app = TestApp::start().await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let all = MANAGEMENT_SCOPES.join(" ");
    let reply = post_form(
        &app,
        Some(&basic(&admin.client_id, &admin.client_secret)),
        "grant_type=client_credentials",
    )
    .await;
    let by_basic = assert_token_response(&reply, &all);
    let reply = post_form(
        &app,
        None,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope=agents%3Aread",
            admin.client_id, admin.client_secret
        ),
    )
    .await;
    let by_post = assert_token_response(&reply, "agents:read");
    assert_ne!(by_basic, by_post);
    // Basic credentials are form-urlencoded (RFC 6749 section 2.3.1): a
    // percent-encoded id decodes to the same client id.
    let encoded_id = admin.client_id.replace('-', "%2D");
    let reply = post_form(
        &app,
        Some(&basic(&encoded_id, &admin.client_secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_token_response(&reply, &all);
    // A Basic client and the same client_id in the body is one method.
    let reply = post_form(
        &app,
        Some(&basic(&admin.client_id, &admin.client_secret)),
        &format!(
            "grant_type=client_credentials&client_id={}",
            admin.client_id
        ),
    )
    .await;
    assert_token_response(&reply, &all);
}

async fn requests_that_break_rfc_6749_are_invalid_request() {
    let app = TestApp::start().await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let auth = basic(&admin.client_id, &admin.client_secret);
    let creds = format!(
        "client_id={}&client_secret={}",
        admin.client_id, admin.client_secret
    );

    // Two authentication methods at once.
    post_form(
        &app,
        Some(&auth),
        &format!("grant_type=client_credentials&{creds}"),
    )
    .await
    .expect_oauth_error(400, "invalid_request");
    // Missing or repeated grant_type.
    post_form(&app, Some(&auth), "")
        .await
        .expect_oauth_error(400, "invalid_request");
    post_form(&app, Some(&auth), "scope=agents%3Aread")
        .await
        .expect_oauth_error(400, "invalid_request");
    post_form(
        &app,
        Some(&auth),
        "grant_type=client_credentials&grant_type=client_credentials",
    )
    .await
    .expect_oauth_error(400, "invalid_request");
    post_form(
        &app,
        Some(&auth),
        "grant_type=client_credentials&scope=a&scope=b",
    )
    .await
    .expect_oauth_error(400, "invalid_request");
    // Client credentials in the query string.
    for query in [
        format!("?client_secret={}", admin.client_secret),
        format!("?client_id={}", admin.client_id),
    ] {
        app.post(&format!("{TOKEN_PATH}{query}"))
            .header("authorization", &auth)
            .form(&[("grant_type", "client_credentials")])
            .reply()
            .await
            .expect_oauth_error(400, "invalid_request");
    }
    app.post(&format!("{TOKEN_PATH}?{creds}"))
        .form(&[("grant_type", "client_credentials")])
        .reply()
        .await
        .expect_oauth_error(400, "invalid_request");
    // A body that is not form-urlencoded.
    app.post(TOKEN_PATH)
        .header("authorization", &auth)
        .json(&json!({ "grant_type": "client_credentials" }))
        .reply()
        .await
        .expect_oauth_error(400, "invalid_request");
    app.post(TOKEN_PATH)
        .header("authorization", &auth)
        .body("grant_type=client_credentials")
        .reply()
        .await
        .expect_oauth_error(400, "invalid_request");
    // Over 64 KiB.
    let padding = "a".repeat(65 * 1024);
    post_form(
        &app,
        Some(&auth),
        &format!("grant_type=client_credentials&padding={padding}"),
    )
    .await
    .expect_oauth_error(400, "invalid_request");
    // A secret without its id.
    post_form(
        &app,
        None,
        &format!(
            "grant_type=client_credentials&client_secret={}",
            admin.client_secret
        ),
    )
    .await
    .expect_oauth_error(400, "invalid_request");
    let logs = app.server.logs();
    assert!(
        !logs.contains(&admin.client_secret),
        "a secret sent in a query string was logged"
    );
}

async fn grant_and_scope_errors() {
    let app = TestApp::start().await;
    let admin = app
        .bootstrap_with(
            "acme",
            "admin@acme.example",
            &["agents:read", "resume:read"],
        )
        .await;
    let auth = basic(&admin.client_id, &admin.client_secret);
    for grant in [
        "password",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ] {
        post_form(&app, Some(&auth), &format!("grant_type={grant}"))
            .await
            .expect_oauth_error(400, "unsupported_grant_type");
    }
    for scope in [
        "audit:read",
        "agents:read%20agents:write",
        "Bad!Scope",
        "unknown",
    ] {
        post_form(
            &app,
            Some(&auth),
            &format!("grant_type=client_credentials&scope={scope}"),
        )
        .await
        .expect_oauth_error(400, "invalid_scope");
    }
    let reply = post_form(
        &app,
        Some(&auth),
        "grant_type=client_credentials&scope=resume%3Aread",
    )
    .await;
    assert_token_response(&reply, "resume:read");
}

async fn client_authentication_failures_are_invalid_client() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let form = "grant_type=client_credentials";
    let expect_invalid_client = |reply: Reply| {
        reply.expect_oauth_error(401, "invalid_client");
        assert_eq!(
            reply.header("www-authenticate"),
            Some(r#"Basic realm="agentidp""#),
            "{}",
            reply.text
        );
    };
    let unknown = uuid::Uuid::new_v4().to_string();
    let wrong_secret = format!("sk_live_{}", "0".repeat(64));
    expect_invalid_client(post_form(&app, None, form).await);
    expect_invalid_client(
        post_form(&app, Some(&basic(&unknown, &admin.client_secret)), form).await,
    );
    expect_invalid_client(
        post_form(&app, Some(&basic(&admin.client_id, &wrong_secret)), form).await,
    );
    expect_invalid_client(post_form(&app, Some(&basic(&admin.client_id, "")), form).await);
    expect_invalid_client(post_form(&app, Some(&basic("not-a-uuid", "x")), form).await);
    expect_invalid_client(post_form(&app, Some("Basic !!!not base64"), form).await);
    expect_invalid_client(
        post_form(
            &app,
            None,
            &format!(
                "{form}&client_id={}&client_secret={wrong_secret}",
                admin.client_id
            ),
        )
        .await,
    );
    // A Bearer token is not client authentication.
    expect_invalid_client(post_form(&app, Some(&format!("Bearer {token}")), form).await);
    // Suspended and decommissioned agents cannot get tokens.
    let agent = app.new_client(&token, "s@acme.example", &["x:y"]).await;
    app.set_status(&token, &agent.agent_id, "suspended").await;
    expect_invalid_client(app.request_token(&agent, None).await);
    app.set_status(&token, &agent.agent_id, "active").await;
    app.token(&agent).await;
    app.decommission(&token, &agent.agent_id).await.expect(204);
    expect_invalid_client(app.request_token(&agent, None).await);
}

async fn the_access_token_is_an_rfc_9068_jwt_verified_by_the_jwks() {
    let app = TestApp::start().await;
    let (_, admin_token) = app.bootstrap_admin("acme").await;
    let mut body = crate::support::agent_body("jwt@acme.example", &["resume:read", "agents:read"]);
    body["agentType"] = json!("extractor");
    body["deploymentEnv"] = json!("staging");
    let agent = app.post_agent(&admin_token, &body).await.expect_json(201);
    let agent_id = agent["agentId"].as_str().unwrap();
    let client: AgentClient = app.generate_credential(&admin_token, agent_id).await;
    let token = app.token_with_scope(&client, "resume:read").await;

    let (header, claims) = jwt::parts(&token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let jwks = app
        .get("/.well-known/jwks.json")
        .reply()
        .await
        .expect_json(200);
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "kid {} not in {jwks}",
        header["kid"]
    );
    assert!(
        jwt::verifies_with(&token, &jwks),
        "signature does not verify"
    );

    let issuer = app.base_url();
    assert_eq!(claims["iss"], issuer);
    assert_eq!(claims["sub"], agent_id);
    assert_eq!(claims["aud"], issuer, "audience defaults to the issuer");
    assert_eq!(claims["client_id"], agent_id);
    assert_eq!(claims["scope"], "resume:read");
    assert!(is_uuid(&claims["jti"]));
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["nbf"].as_i64(), Some(iat));
    assert_eq!(claims["exp"].as_i64(), Some(iat + 3600));
    let now = crate::support::wall_clock().timestamp();
    assert!(
        (now - 60..=now + 5).contains(&iat),
        "iat {iat} vs now {now}"
    );
    assert_eq!(claims["owner"], "acme");
    assert_eq!(claims["agent_type"], "extractor");
    assert_eq!(claims["deployment_env"], "staging");
    assert_eq!(claims["cid"], json!(client.credential_id));
    let mut names: Vec<&str> = claims
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "agent_type",
            "aud",
            "cid",
            "client_id",
            "deployment_env",
            "exp",
            "iat",
            "iss",
            "jti",
            "nbf",
            "owner",
            "scope",
            "sub"
        ]
    );

    // Each token has its own jti.
    let again = app.token_with_scope(&client, "resume:read").await;
    assert_ne!(jwt::parts(&again).1["jti"], claims["jti"]);
}

async fn issuer_audience_and_lifetime_are_configurable() {
    let app = TestApp::builder()
        .env("IDP_ISSUER", "https://idp.acme.example")
        .env("IDP_AUDIENCE", "https://api.acme.example")
        .env("IDP_TOKEN_TTL_SECONDS", "120")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let body = app.request_token(&admin, None).await.expect_json(200);
    assert_eq!(body["expires_in"], 120);
    let token = body["access_token"].as_str().unwrap();
    let (_, claims) = jwt::parts(token);
    assert_eq!(claims["iss"], "https://idp.acme.example");
    assert_eq!(claims["aud"], "https://api.acme.example");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    let meta = app
        .get("/.well-known/oauth-authorization-server")
        .reply()
        .await
        .expect_json(200);
    assert_eq!(meta["issuer"], "https://idp.acme.example");
    assert_eq!(
        meta["token_endpoint"],
        "https://idp.acme.example/api/v1/token"
    );
    assert_eq!(app.get_as(token, "/api/v1/agents").await.status, 200);
}

async fn token_requests_carry_rate_limit_headers() {
    let app = TestApp::start().await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let ok = app.request_token(&admin, None).await.expect(200);
    let refused = app.request_token(&admin, Some("nope:x")).await.expect(400);
    for reply in [&ok, &refused] {
        for name in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ] {
            assert!(reply.header(name).is_some(), "{name} missing");
        }
    }
    let remaining = |r: &Reply| {
        r.header("x-ratelimit-remaining")
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(remaining(&ok), remaining(&refused) + 1);
}

async fn malformed_token_requests_are_rate_limited_too() {
    let app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "3")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    let auth = basic(&admin.client_id, &admin.client_secret);
    let cases = [
        (
            "JSON body",
            app.post(TOKEN_PATH)
                .json(&json!({ "grant_type": "client_credentials" })),
        ),
        (
            "over 64 KiB",
            app.post(TOKEN_PATH)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=client_credentials&p={}",
                    "p".repeat(65 * 1024)
                )),
        ),
        (
            "repeated parameter",
            app.post(TOKEN_PATH)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=a&grant_type=b"),
        ),
        (
            "two authentication methods",
            app.post(TOKEN_PATH).header("authorization", &auth).form(&[
                ("grant_type", "client_credentials"),
                ("client_id", admin.client_id.as_str()),
                ("client_secret", admin.client_secret.as_str()),
            ]),
        ),
        (
            "malformed Basic",
            app.post(TOKEN_PATH)
                .header("authorization", "Basic !!!")
                .form(&[("grant_type", "client_credentials")]),
        ),
        (
            "secret without id",
            app.post(TOKEN_PATH)
                .form(&[("grant_type", "client_credentials"), ("client_secret", "x")]),
        ),
    ];
    let mut missing = Vec::new();
    for (what, request) in cases {
        let reply = request.reply().await;
        assert!(
            (400..500).contains(&reply.status),
            "{what}: {}",
            reply.status
        );
        if reply.header("x-ratelimit-limit").is_none() {
            missing.push(what);
        }
    }
    assert!(
        missing.is_empty(),
        "contract section 7: every /api/v1 response carries X-RateLimit-*; missing on {missing:?}"
    );
    // Six requests against a limit of three: the address is over its limit.
    let reply = app
        .post(TOKEN_PATH)
        .json(&json!({ "grant_type": "client_credentials" }))
        .reply()
        .await;
    reply.expect_oauth_error(429, "access_denied");
    assert!(reply.header("retry-after").is_some());
}

async fn token_endpoint_answers_only_post() {
    let app = TestApp::start().await;
    let reply = app.get(TOKEN_PATH).reply().await.expect(405);
    assert_eq!(reply.header("allow"), Some("POST"));
    let _: Value = reply.json();
}

e2e_tests! {
    client_secret_basic_and_client_secret_post_both_work,
    requests_that_break_rfc_6749_are_invalid_request,
    grant_and_scope_errors,
    client_authentication_failures_are_invalid_client,
    the_access_token_is_an_rfc_9068_jwt_verified_by_the_jwks,
    issuer_audience_and_lifetime_are_configurable,
    token_requests_carry_rate_limit_headers,
    malformed_token_requests_are_rate_limited_too,
    token_endpoint_answers_only_post,
}
