//! Input handling: the contract's order (401, 403, 400, ...) and error shapes.

use actix_web::test::TestRequest;
use serde_json::json;

use super::fixtures::*;

fn agent_body() -> serde_json::Value {
    json!({
        "email": "bot@acme.example", "agentType": "screener", "version": "1.0.0",
        "capabilities": ["resume:read"], "deploymentEnv": "production"
    })
}

#[actix_web::test]
async fn scope_is_checked_before_the_body() {
    let state = Mocks::authenticated("agents:read").state();
    let req = bearer(TestRequest::post().uri("/api/v1/agents"), "good").set_payload("{not json");
    let (status, headers, body) = send(state, req).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "INSUFFICIENT_SCOPE");
    let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#) && challenge.contains("agents:write")
    );
}

#[actix_web::test]
async fn malformed_json_is_400() {
    let state = Mocks::authenticated("agents:write").state();
    let req = bearer(TestRequest::post().uri("/api/v1/agents"), "good")
        .insert_header(("Content-Type", "application/json"))
        .set_payload("{not json");
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert_eq!(body["details"]["field"], "body");
}

#[actix_web::test]
async fn non_json_content_type_is_415() {
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let state = Mocks::authenticated("agents:write").state();
        let mut req = bearer(TestRequest::post().uri("/api/v1/agents"), "good")
            .set_payload(agent_body().to_string());
        if let Some(ct) = content_type {
            req = req.insert_header(("Content-Type", ct));
        }
        let (status, _, body) = send(state, req).await;
        assert_eq!(status, 415, "{content_type:?}");
        assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE");
    }
}

#[actix_web::test]
async fn oversized_body_is_413() {
    let state = Mocks::authenticated("agents:write").state();
    let req = bearer(TestRequest::post().uri("/api/v1/agents"), "good")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(vec![b' '; 64 * 1024 + 1]);
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
}

#[actix_web::test]
async fn server_owned_and_unknown_fields_are_400() {
    for (field, value) in [
        ("agentId", json!("x")),
        ("status", json!("active")),
        ("extra", json!(1)),
    ] {
        let state = Mocks::authenticated("agents:write").state();
        let mut body = agent_body();
        body[field] = value;
        let req = bearer(TestRequest::post().uri("/api/v1/agents"), "good").set_json(&body);
        let (status, _, body) = send(state, req).await;
        assert_eq!(status, 400, "{field}");
        assert_eq!(body["details"]["field"], field);
    }
}

#[actix_web::test]
async fn invalid_values_name_their_field() {
    for (field, value) in [
        ("email", json!("not-an-email")),
        ("agentType", json!("robot")),
        ("version", json!("1.0")),
        ("capabilities", json!([])),
        ("capabilities", json!(["Bad Scope"])),
        ("deploymentEnv", json!("prod")),
        ("email", json!(12)),
        ("owner", json!("Not A Slug")),
    ] {
        let state = Mocks::authenticated("agents:write").state();
        let mut body = agent_body();
        body[field] = value.clone();
        let req = bearer(TestRequest::post().uri("/api/v1/agents"), "good").set_json(&body);
        let (status, _, body) = send(state, req).await;
        assert_eq!(status, 400, "{field}={value}");
        assert_eq!(body["code"], "VALIDATION_ERROR");
        assert_eq!(body["details"]["field"], field, "{field}={value}");
    }
}

#[actix_web::test]
async fn patch_refuses_immutable_fields_and_empty_bodies() {
    let uri = format!("/api/v1/agents/{AGENT}");
    for body in [
        json!({"owner": "other"}),
        json!({"createdAt": "x"}),
        json!({}),
        json!({"status": "decommissioned"}),
        json!({"email": null}),
    ] {
        let state = Mocks::authenticated("agents:write").state();
        let req = bearer(TestRequest::patch().uri(&uri), "good").set_json(&body);
        let (status, _, answer) = send(state, req).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(answer["code"], "VALIDATION_ERROR");
    }
}

#[actix_web::test]
async fn bad_path_and_query_parameters_are_400() {
    for uri in [
        "/api/v1/agents/not-a-uuid".to_owned(),
        "/api/v1/agents?limit=0".to_owned(),
        "/api/v1/agents?limit=101".to_owned(),
        "/api/v1/agents?page=0".to_owned(),
        "/api/v1/agents?page=99999999999999999999".to_owned(),
        "/api/v1/agents?page=-1".to_owned(),
        "/api/v1/agents?status=gone".to_owned(),
        "/api/v1/agents?limit=5&limit=6".to_owned(),
        "/api/v1/agents?color=blue".to_owned(),
    ] {
        let state = Mocks::authenticated("agents:read").state();
        let (status, _, body) = send(state, bearer(TestRequest::get().uri(&uri), "good")).await;
        assert_eq!(status, 400, "{uri}");
        assert_eq!(body["code"], "VALIDATION_ERROR", "{uri}");
    }
}

#[actix_web::test]
async fn audit_from_after_to_is_400() {
    let state = Mocks::authenticated("audit:read").state();
    let uri = "/api/v1/audit?fromDate=2026-11-22T10:00:00Z&toDate=2026-11-21T10:00:00Z";
    let (status, _, body) = send(state, bearer(TestRequest::get().uri(uri), "good")).await;
    assert_eq!(status, 400);
    assert_eq!(body["details"]["field"], "fromDate");
}

#[actix_web::test]
async fn domain_errors_map_to_the_contract_table() {
    let mut mocks = Mocks::authenticated("agents:read");
    mocks.agents.expect_find().returning(|_, _| Ok(None));
    let uri = format!("/api/v1/agents/{AGENT}");
    let (status, _, body) = send(mocks.state(), bearer(TestRequest::get().uri(&uri), "good")).await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": "AGENT_NOT_FOUND", "message": "agent not found"})
    );
}

#[actix_web::test]
async fn store_outage_is_503_with_retry_after() {
    let mut mocks = Mocks::authenticated("agents:read");
    mocks.agents.expect_find().returning(|_, _| {
        Err(idp_domain::StoreError::Unavailable(anyhow::anyhow!(
            "connection refused"
        )))
    });
    let uri = format!("/api/v1/agents/{AGENT}");
    let (status, headers, body) =
        send(mocks.state(), bearer(TestRequest::get().uri(&uri), "good")).await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
    assert!(headers.contains_key("retry-after"));
    assert!(
        !body.to_string().contains("connection refused"),
        "causes stay in the log"
    );
}

/// Every endpoint without query parameters, as (method, path, the scope it needs).
fn endpoints_without_query_parameters() -> Vec<(actix_web::http::Method, String, &'static str)> {
    use actix_web::http::Method;
    let agent = format!("/api/v1/agents/{AGENT}");
    let credentials = format!("{agent}/credentials");
    let credential = format!("{credentials}/{CREDENTIAL}");
    vec![
        (Method::POST, "/api/v1/agents".to_owned(), "agents:write"),
        (Method::GET, agent.clone(), "agents:read"),
        (Method::PATCH, agent.clone(), "agents:write"),
        (Method::DELETE, agent, "agents:write"),
        (Method::POST, credentials, "agents:write"),
        (Method::POST, format!("{credential}/rotate"), "agents:write"),
        (Method::DELETE, credential, "agents:write"),
        (
            Method::GET,
            format!("/api/v1/audit/{CREDENTIAL}"),
            "audit:read",
        ),
    ]
}

#[actix_web::test]
async fn unknown_query_parameters_are_400_on_every_endpoint() {
    // The mocks expect no store call: the refusal comes before any.
    for (method, path, scope) in endpoints_without_query_parameters() {
        for (query, field) in [("dryRun=true", "dryRun"), ("x", "x"), ("a=1&b=2", "a")] {
            let state = Mocks::authenticated(scope).state();
            let uri = format!("{path}?{query}");
            let req = bearer(
                TestRequest::default().method(method.clone()).uri(&uri),
                "good",
            );
            let (status, _, body) = send(state, req).await;
            assert_eq!(status, 400, "{method} {uri}");
            assert_eq!(body["code"], "VALIDATION_ERROR", "{method} {uri}");
            assert_eq!(body["details"]["field"], field, "{method} {uri}");
        }
    }
}

#[actix_web::test]
async fn repeated_or_undecodable_query_parameters_are_400_on_every_endpoint() {
    for (method, path, scope) in endpoints_without_query_parameters() {
        for (query, field) in [("x=1&x=2", "x"), ("%zz=1", "%zz")] {
            let state = Mocks::authenticated(scope).state();
            let uri = format!("{path}?{query}");
            let req = bearer(
                TestRequest::default().method(method.clone()).uri(&uri),
                "good",
            );
            let (status, _, body) = send(state, req).await;
            assert_eq!(status, 400, "{method} {uri}");
            assert_eq!(body["code"], "VALIDATION_ERROR", "{method} {uri}");
            assert_eq!(body["details"]["field"], field, "{method} {uri}");
        }
    }
}

#[actix_web::test]
async fn unknown_query_parameters_come_after_authentication_and_scope() {
    for (method, path, _) in endpoints_without_query_parameters() {
        let uri = format!("{path}?foo=bar");
        let mut mocks = Mocks::default();
        allow_all(&mut mocks.limiter);
        let req = TestRequest::default().method(method.clone()).uri(&uri);
        let (status, _, body) = send(mocks.state(), req).await;
        assert_eq!(status, 401, "{method} {uri}");
        assert_eq!(body["code"], "AUTHENTICATION_ERROR");

        let state = Mocks::authenticated("tokens:introspect").state();
        let req = bearer(
            TestRequest::default().method(method.clone()).uri(&uri),
            "good",
        );
        let (status, _, body) = send(state, req).await;
        assert_eq!(status, 403, "{method} {uri}");
        assert_eq!(body["code"], "INSUFFICIENT_SCOPE", "{method} {uri}");
    }
}

#[actix_web::test]
async fn an_empty_query_string_is_no_parameter() {
    let mut mocks = Mocks::authenticated("agents:read");
    mocks
        .agents
        .expect_find()
        .times(1)
        .returning(|_, _| Ok(None));
    let uri = format!("/api/v1/agents/{AGENT}?");
    let (status, _, body) = send(mocks.state(), bearer(TestRequest::get().uri(&uri), "good")).await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "AGENT_NOT_FOUND");
}
