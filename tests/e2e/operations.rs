//! Operational and discovery endpoints (contract section 8): no auth, not rate
//! limited; and the conventions every response follows (section 1).

use serde_json::Value;

use crate::support::{Exchange, MANAGEMENT_SCOPES, TestApp, jwt};

async fn health_and_readiness_answer_200_without_rate_limiting() {
    let app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "1")
        .start()
        .await;
    for _ in 0..3 {
        let health = app.get("/healthz").reply().await.expect(200);
        assert!(health.header("x-ratelimit-limit").is_none());
        let ready = app.get("/readyz").reply().await.expect_json(200);
        assert_eq!(ready["status"], "ready", "{ready}");
    }
}

async fn metrics_are_prometheus_text_with_agentidp_series() {
    let app = TestApp::start().await;
    let (admin, _) = app.bootstrap_admin("acme").await;
    app.get("/api/v1/agents").reply().await.expect(401);
    app.request_token(&admin, Some("nope:x")).await.expect(400);
    let metrics = app.get("/metrics").reply().await.expect(200);
    let content_type = metrics.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "{content_type}"
    );
    for series in [
        "agentidp_http_requests",
        "agentidp_tokens_issued",
        "agentidp_tokens_refused",
    ] {
        assert!(
            metrics.text.contains(&format!("# TYPE {series}")),
            "{series} missing from\n{}",
            metrics.text
        );
    }
    // The requests above were counted.
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("agentidp_http_requests") && l.contains("status=\"401\"")),
        "no 401 counted in\n{}",
        metrics.text
    );
}

async fn openapi_document_is_served_as_json_and_yaml() {
    let app = TestApp::start().await;
    let doc = app.get("/openapi.json").reply().await.expect_json(200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    // Every route of the contract, with its methods.
    for (path, methods) in [
        ("/api/v1/agents", &["get", "post"][..]),
        ("/api/v1/agents/{agentId}", &["get", "patch", "delete"]),
        ("/api/v1/agents/{agentId}/credentials", &["get", "post"]),
        (
            "/api/v1/agents/{agentId}/credentials/{credentialId}/rotate",
            &["post"],
        ),
        (
            "/api/v1/agents/{agentId}/credentials/{credentialId}",
            &["delete"],
        ),
        ("/api/v1/token", &["post"]),
        ("/api/v1/token/introspect", &["post"]),
        ("/api/v1/token/revoke", &["post"]),
        ("/api/v1/audit", &["get"]),
        ("/api/v1/audit/{eventId}", &["get"]),
        ("/.well-known/oauth-authorization-server", &["get"]),
        ("/.well-known/jwks.json", &["get"]),
        ("/healthz", &["get"]),
        ("/readyz", &["get"]),
        ("/metrics", &["get"]),
    ] {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} not in the OpenAPI paths"));
        for method in methods {
            assert!(
                item.get(*method).is_some(),
                "{method} {path} not in the OpenAPI document"
            );
        }
    }
    let yaml = app.get("/openapi.yaml").reply().await.expect(200);
    assert!(yaml.text.contains("openapi:"));
}

async fn server_metadata_follows_rfc_8414() {
    let app = TestApp::start().await;
    let meta = app
        .get("/.well-known/oauth-authorization-server")
        .reply()
        .await
        .expect_json(200);
    let issuer = app.base_url();
    assert_eq!(meta["issuer"], issuer);
    assert_eq!(meta["token_endpoint"], format!("{issuer}/api/v1/token"));
    assert_eq!(
        meta["introspection_endpoint"],
        format!("{issuer}/api/v1/token/introspect")
    );
    assert_eq!(
        meta["revocation_endpoint"],
        format!("{issuer}/api/v1/token/revoke")
    );
    assert_eq!(meta["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!([
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange"
        ])
    );
    let auth_methods = meta["token_endpoint_auth_methods_supported"].clone();
    for method in ["client_secret_basic", "client_secret_post"] {
        assert!(
            auth_methods.as_array().unwrap().iter().any(|m| m == method),
            "{auth_methods}"
        );
    }
    for member in [
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        assert!(
            meta[member]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m == "client_secret_basic")),
            "{member}: {}",
            meta[member]
        );
    }
    assert_eq!(
        meta["scopes_supported"],
        serde_json::json!(MANAGEMENT_SCOPES)
    );
    assert_eq!(
        meta["access_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
}

async fn jwks_publishes_only_public_members() {
    let app = TestApp::start().await;
    let jwks = app
        .get("/.well-known/jwks.json")
        .reply()
        .await
        .expect_json(200);
    let keys = jwks["keys"].as_array().expect("keys");
    assert!(!keys.is_empty());
    for key in keys {
        assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()), "{key}");
        assert_eq!(key["use"], "sig", "{key}");
        assert_eq!(key["alg"], "RS256", "{key}");
        assert_eq!(key["kty"], "RSA", "{key}");
        assert!(key["n"].is_string() && key["e"].is_string(), "{key}");
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            assert!(
                key.get(private).is_none(),
                "private member {private} in {key}"
            );
        }
    }
}

/// Starts a server signing with `alg` and checks the whole chain: metadata,
/// JWKS, token header and signature.
async fn tokens_are_signed_with(alg: &str, kty: &str) {
    let app = TestApp::builder().env("IDP_SIGNING_ALG", alg).start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let meta = app
        .get("/.well-known/oauth-authorization-server")
        .reply()
        .await
        .expect_json(200);
    assert_eq!(
        meta["access_token_signing_alg_values_supported"],
        serde_json::json!([alg])
    );
    let jwks = app
        .get("/.well-known/jwks.json")
        .reply()
        .await
        .expect_json(200);
    let (header, _) = jwt::parts(&token);
    assert_eq!(header["alg"], alg);
    assert_eq!(header["typ"], "at+jwt");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(key["kty"], kty, "{jwks}");
    assert!(key.get("d").is_none(), "private member in {key}");
    assert!(jwt::verifies_with(&token, &jwks));
    assert_eq!(app.get_as(&token, "/api/v1/agents").await.status, 200);
}

async fn es256_signing_is_configurable() {
    tokens_are_signed_with("ES256", "EC").await;
}

async fn eddsa_signing_is_configurable() {
    tokens_are_signed_with("EdDSA", "OKP").await;
}

async fn request_ids_are_echoed_or_made() {
    let app = TestApp::start().await;
    for path in ["/healthz", "/api/v1/agents", "/nowhere", "/api/v1/nowhere"] {
        let echoed = app
            .get(path)
            .header("X-Request-Id", "e2e-req.42")
            .reply()
            .await;
        assert_eq!(echoed.header("x-request-id"), Some("e2e-req.42"), "{path}");
        let made = app.get(path).reply().await;
        let id = made.header("x-request-id").unwrap();
        assert_ne!(id, "e2e-req.42");
    }
    let token = app
        .post("/api/v1/token")
        .header("X-Request-Id", "tok-1")
        .form(&[("grant_type", "client_credentials")])
        .reply()
        .await;
    assert_eq!(token.header("x-request-id"), Some("tok-1"));
}

async fn unknown_paths_and_methods_answer_in_the_contract_shape() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    app.get("/nowhere")
        .reply()
        .await
        .expect_error(404, "NOT_FOUND");
    app.get_as(&token, "/api/v1/nowhere")
        .await
        .expect_error(404, "NOT_FOUND");
    let put = app
        .request(reqwest::Method::PUT, "/api/v1/agents")
        .bearer_auth(&token)
        .reply()
        .await
        .expect(405);
    let allow = put.header("allow").unwrap_or_default();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_eq!(put.json()["code"], "METHOD_NOT_ALLOWED");
    app.get("/api/v1/token").reply().await.expect(405);
}

async fn metric_labels_stay_bounded_whatever_clients_send() {
    let app = TestApp::start().await;
    let baseline = app.get("/metrics").reply().await.expect(200).text.len();
    for i in 0..50 {
        let method =
            reqwest::Method::from_bytes(format!("X{i:03}{}", "M".repeat(200)).as_bytes()).unwrap();
        app.request(method, "/healthz").reply().await.expect(405);
    }
    let metrics = app.get("/metrics").reply().await.expect(200).text;
    assert!(
        !metrics.contains("X000MMM"),
        "an invented method became a label value ({} bytes of metrics, {baseline} before)",
        metrics.len()
    );
}

e2e_tests! {
    health_and_readiness_answer_200_without_rate_limiting,
    metrics_are_prometheus_text_with_agentidp_series,
    openapi_document_is_served_as_json_and_yaml,
    server_metadata_follows_rfc_8414,
    jwks_publishes_only_public_members,
    es256_signing_is_configurable,
    eddsa_signing_is_configurable,
    request_ids_are_echoed_or_made,
    unknown_paths_and_methods_answer_in_the_contract_shape,
    metric_labels_stay_bounded_whatever_clients_send,
}
