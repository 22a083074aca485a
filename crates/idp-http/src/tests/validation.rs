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

/// Sends `body` to `POST /api/v1/agents` (or `PATCH` of one agent) and
/// returns the refused field and reason.
async fn refusal(patch: bool, body: &serde_json::Value) -> (String, String) {
    let state = Mocks::authenticated("agents:write").state();
    let req = if patch {
        TestRequest::patch().uri(&format!("/api/v1/agents/{AGENT}"))
    } else {
        TestRequest::post().uri("/api/v1/agents")
    };
    let (status, _, answer) = send(state, bearer(req, "good").set_json(body)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(answer["code"], "VALIDATION_ERROR", "{body}");
    let details = &answer["details"];
    (
        details["field"].as_str().unwrap_or_default().to_owned(),
        details["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

#[actix_web::test]
async fn the_first_refusal_follows_the_order_of_the_shape() {
    let with = |changes: serde_json::Value| {
        let mut body = agent_body();
        for (name, value) in changes.as_object().unwrap() {
            body[name] = value.clone();
        }
        body
    };
    let mut no_email = agent_body();
    no_email.as_object_mut().unwrap().remove("email");
    no_email["zzz"] = json!(1);
    for (patch, body, field, reason) in [
        // Server-owned fields first, even null and beside a wrong type.
        (
            false,
            with(json!({"agentId": null, "email": 12})),
            "agentId",
            "is set by the server",
        ),
        (
            false,
            with(json!({"updatedAt": "x", "status": 1})),
            "status",
            "is set by the server",
        ),
        // Then the declared fields in order: type, null, presence, value.
        (
            false,
            with(json!({"email": 12, "version": "1"})),
            "email",
            "must be a string",
        ),
        (
            false,
            with(json!({"capabilities": ["a:b", null]})),
            "capabilities",
            "must not be null",
        ),
        (false, no_email, "email", "is required"),
        (
            false,
            with(json!({"agentType": "robot", "deploymentEnv": "prod", "extra": 1})),
            "agentType",
            "must be one of: screener, classifier, orchestrator, extractor, summarizer, router, monitor, custom",
        ),
        (
            false,
            with(json!({"capabilities": []})),
            "capabilities",
            "must hold 1 to 50 scopes",
        ),
        // Unknown fields last, the first by name.
        (
            false,
            with(json!({"zeta": 1, "alpha": 2})),
            "alpha",
            "unknown field",
        ),
        // A patch refuses immutable fields first, then reads `status` first.
        (
            true,
            json!({"email": "bad", "createdAt": null, "owner": "acme"}),
            "owner",
            "is immutable",
        ),
        (
            true,
            json!({"email": "bad", "status": "decommissioned"}),
            "status",
            "must be active or suspended",
        ),
        (true, json!({"email": null}), "email", "must not be null"),
        (true, json!({"nickname": "x"}), "nickname", "unknown field"),
        (true, json!({}), "body", "must change at least one field"),
    ] {
        let (got_field, got_reason) = refusal(patch, &body).await;
        assert_eq!(
            (got_field.as_str(), got_reason.as_str()),
            (field, reason),
            "{body}"
        );
    }
}

#[actix_web::test]
async fn a_refusal_does_not_echo_the_input() {
    let secret = "sk_live_".to_owned() + &"a".repeat(64);
    for body in [
        json!({"email": [secret.clone()]}),
        json!({"version": {"x": secret.clone()}}),
        json!({"capabilities": secret.clone()}),
    ] {
        let mut full = agent_body();
        for (name, value) in body.as_object().unwrap() {
            full[name] = value.clone();
        }
        let (field, reason) = refusal(false, &full).await;
        assert!(
            !reason.contains(&secret) && !field.contains(&secret),
            "{reason}"
        );
    }
}

#[actix_web::test]
async fn query_and_path_parameters_are_read_by_their_shape() {
    for (uri, scope, field, reason) in [
        (
            "/api/v1/agents?page=x&limit=0".to_owned(),
            "agents:read",
            "page",
            "must be a positive integer",
        ),
        (
            "/api/v1/agents?limit=0&status=gone".to_owned(),
            "agents:read",
            "limit",
            "must be an integer from 1 to 100",
        ),
        (
            "/api/v1/agents?status=gone&color=blue".to_owned(),
            "agents:read",
            "status",
            "must be one of: active, suspended, decommissioned",
        ),
        (
            "/api/v1/audit?agentId=nope".to_owned(),
            "audit:read",
            "agentId",
            "must be a UUID",
        ),
        (
            "/api/v1/audit?toDate=yesterday".to_owned(),
            "audit:read",
            "toDate",
            "must be an RFC 3339 timestamp",
        ),
        (
            format!("/api/v1/agents/{AGENT}/credentials?status=old"),
            "agents:read",
            "status",
            "must be one of: active, expired, revoked",
        ),
        (
            format!("/api/v1/agents/{AGENT}/credentials/not-a-uuid"),
            "agents:write",
            "credentialId",
            "must be a UUID",
        ),
        (
            "/api/v1/audit/not-a-uuid".to_owned(),
            "audit:read",
            "eventId",
            "must be a UUID",
        ),
    ] {
        let state = Mocks::authenticated(scope).state();
        let method = if uri.ends_with("not-a-uuid") && scope == "agents:write" {
            actix_web::http::Method::DELETE
        } else {
            actix_web::http::Method::GET
        };
        let req = bearer(TestRequest::default().method(method).uri(&uri), "good");
        let (status, _, body) = send(state, req).await;
        assert_eq!(status, 400, "{uri}");
        assert_eq!(body["details"]["field"], field, "{uri}");
        assert_eq!(body["details"]["reason"], reason, "{uri}");
    }
}

#[actix_web::test]
async fn the_token_form_ignores_unknown_parameters_and_empty_values() {
    for form in [
        vec![("token", ""), ("other", "x")],
        vec![("token_type_hint", "access_token")],
    ] {
        let state = Mocks::authenticated("tokens:introspect").state();
        let req = bearer(TestRequest::post().uri("/api/v1/token/revoke"), "good").set_form(form);
        let (status, _, body) = send(state, req).await;
        assert_eq!(status, 400);
        assert_eq!(body["details"]["field"], "token");
        assert_eq!(body["details"]["reason"], "is required");
    }
    let state = Mocks::authenticated("tokens:introspect").state();
    let req = bearer(TestRequest::post().uri("/api/v1/token/revoke"), "good")
        .set_payload("token=a&token=b")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"));
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 400);
    assert_eq!(body["details"]["field"], "token");
    assert_eq!(body["details"]["reason"], "must not be repeated");
}
