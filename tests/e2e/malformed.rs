//! A battery of malformed requests. None may produce a 5xx (every exchange
//! asserts that); where the contract names the answer, it is asserted exactly.

use josekit::jws::HS256;
use reqwest::RequestBuilder;
use serde_json::{Value, json};

use crate::support::{Exchange, Reply, TestApp, agent_body, jwt, raw_exchange};

/// What a malformed request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A contract error: status and code.
    Error(u16, &'static str),
    /// `400 VALIDATION_ERROR` naming this field.
    Field(&'static str),
    /// `401 AUTHENTICATION_ERROR` with a Bearer challenge.
    Unauthenticated,
    /// An OAuth error of the token endpoint.
    OAuth(u16, &'static str),
    /// Only this status.
    Status(u16),
    /// Anything but a server error (the contract leaves the answer open).
    NoServerError,
}

fn check(reply: &Reply, expect: Expect) -> Result<(), String> {
    let body: Value = serde_json::from_str(&reply.text).unwrap_or(Value::Null);
    let ok = match expect {
        Expect::Error(status, code) => reply.status == status && body["code"] == code,
        Expect::Field(field) => {
            reply.status == 400
                && body["code"] == "VALIDATION_ERROR"
                && body["details"]["field"] == field
        }
        Expect::Unauthenticated => {
            reply.status == 401
                && body["code"] == "AUTHENTICATION_ERROR"
                && reply
                    .header_values("www-authenticate")
                    .starts_with("Bearer")
        }
        Expect::OAuth(status, error) => {
            reply.status == status
                && body["error"] == error
                && reply.header("cache-control") == Some("no-store")
        }
        Expect::Status(status) => reply.status == status,
        Expect::NoServerError => reply.status < 500,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "expected {expect:?}, got {} {:.300}",
            reply.status, reply.text
        ))
    }
}

/// Sends every probe, then fails listing every one that got the wrong answer.
async fn run(probes: Vec<(String, RequestBuilder, Expect)>) {
    let mut failures = Vec::new();
    let count = probes.len();
    for (what, request, expect) in probes {
        let reply = request.reply().await;
        if let Err(e) = check(&reply, expect) {
            failures.push(format!("{what}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} probes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn valid_agent() -> Value {
    agent_body("valid@acme.example", &["resume:read"])
}

fn with(field: &str, value: Value) -> Value {
    let mut body = valid_agent();
    body[field] = value;
    body
}

async fn json_bodies_that_are_not_valid_agents_are_400() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let raw = |what: &str, body: Vec<u8>, expect: Expect| {
        (
            what.to_owned(),
            app.post("/api/v1/agents")
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body),
            expect,
        )
    };
    let json_body = |what: &str, body: Value, expect: Expect| {
        (
            what.to_owned(),
            app.post("/api/v1/agents").bearer_auth(&token).json(&body),
            expect,
        )
    };
    let ten_kb = "x".repeat(10 * 1024);
    let deep = format!("{{\"email\":{}{}}}", "[".repeat(5000), "]".repeat(5000));
    let mut non_utf8 = br#"{"email":"a"#.to_vec();
    non_utf8.extend_from_slice(&[0xff, 0xfe]);
    non_utf8.extend_from_slice(br#"@acme.example"}"#);
    let body_error = Expect::Field("body");
    let probes = vec![
        raw("truncated JSON", b"{\"email\":".to_vec(), body_error),
        raw("not JSON", b"email=a@b.c".to_vec(), body_error),
        raw(
            "trailing garbage",
            br#"{"email":"a@b.c"} x"#.to_vec(),
            body_error,
        ),
        raw("an array", b"[]".to_vec(), body_error),
        raw("a string", b"\"agent\"".to_vec(), body_error),
        raw("null", b"null".to_vec(), body_error),
        raw("a number", b"42".to_vec(), body_error),
        raw("deeply nested", deep.into_bytes(), body_error),
        raw("non-UTF-8 bytes", non_utf8, body_error),
        raw(
            "a UTF-8 BOM",
            [
                &[0xef, 0xbb, 0xbf][..],
                valid_agent().to_string().as_bytes(),
            ]
            .concat(),
            Expect::NoServerError,
        ),
        raw("huge number", br#"{"email":1e400}"#.to_vec(), body_error),
        json_body("empty object", json!({}), Expect::Field("email")),
        json_body(
            "email a number",
            with("email", json!(12345)),
            Expect::Field("email"),
        ),
        json_body(
            "email an object",
            with("email", json!({ "a": 1 })),
            Expect::Field("email"),
        ),
        json_body(
            "email 10 KB",
            with("email", json!(format!("{ten_kb}@acme.example"))),
            Expect::Field("email"),
        ),
        json_body(
            "email with NUL",
            with("email", json!("a\u{0}b@acme.example")),
            Expect::Field("email"),
        ),
        json_body(
            "email with newline",
            with("email", json!("a@acme.example\nBcc: x@y.z")),
            Expect::Field("email"),
        ),
        json_body(
            "agentType 10 KB",
            with("agentType", json!(ten_kb)),
            Expect::Field("agentType"),
        ),
        json_body(
            "agentType with NUL",
            with("agentType", json!("screener\u{0}")),
            Expect::Field("agentType"),
        ),
        json_body(
            "version 10 KB",
            with("version", json!(ten_kb)),
            Expect::Field("version"),
        ),
        json_body(
            "version a number",
            with("version", json!(1.0)),
            Expect::Field("version"),
        ),
        json_body(
            "version negative",
            with("version", json!("-1.0.0")),
            Expect::Field("version"),
        ),
        json_body(
            "version with a leading zero",
            with("version", json!("01.0.0")),
            Expect::Field("version"),
        ),
        json_body(
            "capabilities an object",
            with("capabilities", json!({ "a": "b" })),
            Expect::Field("capabilities"),
        ),
        json_body(
            "capabilities nested",
            with("capabilities", json!([["a:b"]])),
            Expect::Field("capabilities"),
        ),
        json_body(
            "capability 10 KB",
            with("capabilities", json!([ten_kb])),
            Expect::Field("capabilities"),
        ),
        json_body(
            "capability with NUL",
            with("capabilities", json!(["a:b\u{0}"])),
            Expect::Field("capabilities"),
        ),
        json_body(
            "capabilities null",
            with("capabilities", Value::Null),
            Expect::Field("capabilities"),
        ),
        json_body(
            "deploymentEnv a bool",
            with("deploymentEnv", json!(true)),
            Expect::Field("deploymentEnv"),
        ),
        json_body(
            "owner 10 KB",
            with("owner", json!(ten_kb)),
            Expect::Field("owner"),
        ),
        json_body(
            "agentId set",
            with("agentId", json!(admin.agent_id)),
            Expect::Field("agentId"),
        ),
        json_body(
            "status set",
            with("status", json!("active")),
            Expect::Field("status"),
        ),
        json_body(
            "createdAt set",
            with("createdAt", json!("2026-01-01T00:00:00.000Z")),
            Expect::Field("createdAt"),
        ),
        json_body(
            "unknown field",
            with("isAdmin", json!(true)),
            Expect::Field("isAdmin"),
        ),
        json_body(
            "unknown field named 10 KB",
            with(&ten_kb, json!(1)),
            Expect::Error(400, "VALIDATION_ERROR"),
        ),
        json_body(
            "unicode email",
            with("email", json!("ü@ä.example")),
            Expect::NoServerError,
        ),
    ];
    run(probes).await;

    // Nothing was created; the field name in details is bounded.
    let page = app.get_as(&token, "/api/v1/agents").await.expect_json(200);
    assert!(page["pagination"]["total"].as_u64().unwrap() <= 3);
    let long_name = app.post_agent(&token, &with(&ten_kb, json!(1))).await;
    assert!(
        long_name.text.len() < 1024,
        "the refusal echoes 10 KB: {} bytes",
        long_name.text.len()
    );
}

async fn patch_and_credential_bodies_that_are_malformed_are_400() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let id = &admin.agent_id;
    let agent = format!("/api/v1/agents/{id}");
    let credentials = format!("/api/v1/agents/{id}/credentials");
    let patch = |what: &str, body: Value, expect: Expect| {
        (
            what.to_owned(),
            app.patch(&agent).bearer_auth(&token).json(&body),
            expect,
        )
    };
    let post = |what: &str, body: Value, expect: Expect| {
        (
            what.to_owned(),
            app.post(&credentials).bearer_auth(&token).json(&body),
            expect,
        )
    };
    let probes = vec![
        patch(
            "status a number",
            json!({ "status": 1 }),
            Expect::Field("status"),
        ),
        patch(
            "status decommissioned",
            json!({ "status": "decommissioned" }),
            Expect::Field("status"),
        ),
        patch(
            "capabilities empty",
            json!({ "capabilities": [] }),
            Expect::Field("capabilities"),
        ),
        patch(
            "email 10 KB",
            json!({ "email": "e".repeat(10240) }),
            Expect::Field("email"),
        ),
        patch(
            "updatedAt",
            json!({ "updatedAt": "2030-01-01T00:00:00Z" }),
            Expect::Field("updatedAt"),
        ),
        patch(
            "an array",
            json!([{ "version": "1.0.0" }]),
            Expect::Field("body"),
        ),
        post(
            "expiresAt in the past",
            json!({ "expiresAt": "2001-01-01T00:00:00Z" }),
            Expect::Field("expiresAt"),
        ),
        post(
            "expiresAt not a time",
            json!({ "expiresAt": "soon" }),
            Expect::Field("expiresAt"),
        ),
        post(
            "expiresAt year 10000",
            json!({ "expiresAt": "+10000-01-01T00:00:00Z" }),
            Expect::Field("expiresAt"),
        ),
        post(
            "expiresAt huge number",
            json!({ "expiresAt": u64::MAX }),
            Expect::Field("expiresAt"),
        ),
        post(
            "expiresAt negative",
            json!({ "expiresAt": -1 }),
            Expect::Field("expiresAt"),
        ),
        post(
            "expiresAt without offset",
            json!({ "expiresAt": "2099-01-01T00:00:00" }),
            Expect::Field("expiresAt"),
        ),
        post(
            "expiresAt 10 KB",
            json!({ "expiresAt": "2".repeat(10240) }),
            Expect::Field("expiresAt"),
        ),
        post(
            "unknown field",
            json!({ "clientSecret": "sk_live_mine" }),
            Expect::Field("clientSecret"),
        ),
        post(
            "credentialId set",
            json!({ "credentialId": admin.agent_id }),
            Expect::Field("credentialId"),
        ),
        (
            "rotate with a body field".into(),
            app.post(&format!("{credentials}/{}/rotate", uuid::Uuid::new_v4()))
                .bearer_auth(&token)
                .json(&json!({ "clientSecret": "sk_live_mine" })),
            Expect::Error(400, "VALIDATION_ERROR"),
        ),
    ];
    run(probes).await;
    let unchanged = app.get_as(&token, &agent).await.expect_json(200);
    assert_eq!(unchanged["status"], "active");
}

async fn content_types_and_sizes() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let id = &admin.agent_id;
    let body = valid_agent().to_string();
    let oversized = format!(
        "{{\"email\":\"a@acme.example\",\"padding\":\"{}\"}}",
        "p".repeat(65 * 1024)
    );
    let post = |content_type: Option<&str>, body: String| {
        let mut request = app.post("/api/v1/agents").bearer_auth(&token).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request
    };
    let too_large = Expect::Error(413, "PAYLOAD_TOO_LARGE");
    let unsupported = Expect::Error(415, "UNSUPPORTED_MEDIA_TYPE");
    let form = |path: &str, body: String| {
        app.post(path)
            .bearer_auth(&token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let probes = vec![
        (
            "text/plain".into(),
            post(Some("text/plain"), body.clone()),
            unsupported,
        ),
        (
            "no content type".into(),
            post(None, body.clone()),
            unsupported,
        ),
        (
            "form".into(),
            post(
                Some("application/x-www-form-urlencoded"),
                "email=a%40b.c".into(),
            ),
            unsupported,
        ),
        (
            "xml".into(),
            post(Some("application/xml"), "<agent/>".into()),
            unsupported,
        ),
        (
            "multipart".into(),
            post(Some("multipart/form-data; boundary=x"), "--x--".into()),
            unsupported,
        ),
        (
            "garbage content type".into(),
            post(Some(";;;==="), body.clone()),
            unsupported,
        ),
        (
            "json with a charset".into(),
            post(Some("application/json; charset=utf-8"), body.clone()),
            Expect::Status(201),
        ),
        (
            "JSON over 64 KiB".into(),
            post(Some("application/json"), oversized.clone()),
            too_large,
        ),
        (
            "text over 64 KiB".into(),
            post(Some("text/plain"), oversized.clone()),
            too_large,
        ),
        (
            "PATCH over 64 KiB".into(),
            app.patch(&format!("/api/v1/agents/{id}"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(oversized.clone()),
            too_large,
        ),
        (
            "PATCH as merge-patch+json".into(),
            app.patch(&format!("/api/v1/agents/{id}"))
                .bearer_auth(&token)
                .header("content-type", "application/merge-patch+json")
                .body(r#"{"version":"1.0.1"}"#),
            Expect::Status(200),
        ),
        (
            "credential over 64 KiB".into(),
            app.post(&format!("/api/v1/agents/{id}/credentials"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(oversized.clone()),
            too_large,
        ),
        (
            "introspection over 64 KiB".into(),
            form(
                "/api/v1/token/introspect",
                format!("token={}", "t".repeat(65 * 1024)),
            ),
            too_large,
        ),
        (
            "revocation over 64 KiB".into(),
            form(
                "/api/v1/token/revoke",
                format!("token={}", "t".repeat(65 * 1024)),
            ),
            too_large,
        ),
        (
            "introspection with non-UTF-8 bytes".into(),
            form("/api/v1/token/introspect", String::new()).body(b"token=\xff\xfe".to_vec()),
            Expect::NoServerError,
        ),
        (
            "token endpoint with non-UTF-8 bytes".into(),
            app.post("/api/v1/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(b"grant_type=client_credentials&client_id=\xff&client_secret=\xfe".to_vec()),
            Expect::OAuth(401, "invalid_client"),
        ),
        (
            "token endpoint with a broken form".into(),
            app.post("/api/v1/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials&%zz=%"),
            Expect::NoServerError,
        ),
    ];
    run(probes).await;

    // Chunked bodies have no Content-Length to check up front.
    let chunk = "c".repeat(16 * 1024);
    let mut request = format!(
        "POST /api/v1/agents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..5 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    let reply = raw_exchange(app.base_url(), request.into_bytes()).await;
    assert_eq!(
        (reply.status, reply.code().as_deref()),
        (413, Some("PAYLOAD_TOO_LARGE")),
        "{}",
        reply.body
    );
    assert!(reply.head.contains("x-request-id"));
}

async fn query_parameters() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let get = |query: &str, expect: Expect| {
        (
            format!("?{query}"),
            app.get(&format!("/api/v1/agents?{query}"))
                .bearer_auth(&token),
            expect,
        )
    };
    let credentials = |query: &str, expect: Expect| {
        (
            format!("credentials ?{query}"),
            app.get(&format!(
                "/api/v1/agents/{}/credentials?{query}",
                admin.agent_id
            ))
            .bearer_auth(&token),
            expect,
        )
    };
    let audit = |query: &str, expect: Expect| {
        (
            format!("audit ?{query}"),
            app.get(&format!("/api/v1/audit?{query}"))
                .bearer_auth(&token),
            expect,
        )
    };
    let page = Expect::Field("page");
    let limit = Expect::Field("limit");
    let ten_kb = "9".repeat(10 * 1024);
    let probes = vec![
        get("page=0", page),
        get("page=-1", page),
        get("page=1.5", page),
        get("page=abc", page),
        get("page=", page),
        get("page=99999999999999999999999", page),
        get("page=4294967296", page),
        get("page=10000001", page),
        get(&format!("page={ten_kb}"), page),
        get("page=%FF%FE", page),
        get("page=%00", page),
        get("page=+1", Expect::NoServerError),
        get("page=10000000", Expect::Status(200)),
        get("page=10000000&limit=100", Expect::Status(200)),
        get("limit=0", limit),
        get("limit=101", limit),
        get("limit=-5", limit),
        get("limit=1e2", limit),
        get("limit=18446744073709551616", limit),
        get("page=1&page=2", page),
        get("status=active&status=suspended", Expect::Field("status")),
        get("limit=5&limit=5", limit),
        get("foo=bar", Expect::Field("foo")),
        get("Page=1", Expect::Field("Page")),
        get(
            &format!("{ten_kb}=1"),
            Expect::Error(400, "VALIDATION_ERROR"),
        ),
        get("status=", Expect::Field("status")),
        get(&format!("status={ten_kb}"), Expect::Field("status")),
        get("agentType=%FF", Expect::Field("agentType")),
        get("&&&", Expect::NoServerError),
        get("%zz", Expect::NoServerError),
        credentials("page=0", page),
        credentials("status=active&status=active", Expect::Field("status")),
        credentials("bogus=1", Expect::Field("bogus")),
        audit("limit=1000000", limit),
        audit("page=-1", page),
        audit("agentId=not-a-uuid", Expect::Field("agentId")),
        audit(&format!("agentId={ten_kb}"), Expect::Field("agentId")),
        audit("fromDate=2026-02-30T00:00:00Z", Expect::Field("fromDate")),
        audit("fromDate=1e999", Expect::Field("fromDate")),
        audit("toDate=-99999-01-01T00:00:00Z", Expect::Field("toDate")),
        audit(
            "action=agent.created&action=agent.updated",
            Expect::Field("action"),
        ),
        audit("password=hunter2", Expect::Field("password")),
    ];
    run(probes).await;
}

async fn unknown_query_parameters_are_refused_everywhere() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let id = &admin.agent_id;
    let probes = vec![
        (
            "GET agent".into(),
            app.get(&format!("/api/v1/agents/{id}?foo=bar"))
                .bearer_auth(&token),
            Expect::Field("foo"),
        ),
        (
            "POST agents".into(),
            app.post("/api/v1/agents?dryRun=true")
                .bearer_auth(&token)
                .json(&valid_agent()),
            Expect::Field("dryRun"),
        ),
        (
            "PATCH agent".into(),
            app.patch(&format!("/api/v1/agents/{id}?force=1"))
                .bearer_auth(&token)
                .json(&json!({ "version": "2.0.0" })),
            Expect::Field("force"),
        ),
        (
            "POST credential".into(),
            app.post(&format!("/api/v1/agents/{id}/credentials?x=1"))
                .bearer_auth(&token),
            Expect::Field("x"),
        ),
    ];
    run(probes).await;
}

async fn path_parameters() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let id = &admin.agent_id;
    let cid = uuid::Uuid::new_v4();
    let ten_kb = "f".repeat(10 * 1024);
    let get =
        |path: String, expect: Expect| (path.clone(), app.get(&path).bearer_auth(&token), expect);
    let agent_id = Expect::Field("agentId");
    let credential_id = Expect::Field("credentialId");
    let probes = vec![
        get("/api/v1/agents/not-a-uuid".into(), agent_id),
        get("/api/v1/agents/123".into(), agent_id),
        get("/api/v1/agents/-1".into(), agent_id),
        get(
            "/api/v1/agents/00000000-0000-0000-0000-00000000000g".into(),
            agent_id,
        ),
        get(format!("/api/v1/agents/{id}0"), agent_id),
        get(format!("/api/v1/agents/{ten_kb}"), agent_id),
        get("/api/v1/agents/%FF%FE".into(), agent_id),
        get("/api/v1/agents/%00".into(), agent_id),
        get("/api/v1/agents/%2F".into(), agent_id),
        get("/api/v1/agents/'%20OR%201=1--".into(), agent_id),
        get(
            "/api/v1/agents/00000000-0000-0000-0000-000000000000".into(),
            Expect::Error(404, "AGENT_NOT_FOUND"),
        ),
        get(
            format!("/api/v1/agents/{}", id.to_uppercase()),
            Expect::NoServerError,
        ),
        get("/api/v1/agents/x/credentials".into(), agent_id),
        get("/api/v1/audit/not-a-uuid".into(), Expect::Field("eventId")),
        get(format!("/api/v1/audit/{ten_kb}"), Expect::Field("eventId")),
        (
            "rotate bad credentialId".into(),
            app.post(&format!("/api/v1/agents/{id}/credentials/nope/rotate"))
                .bearer_auth(&token),
            credential_id,
        ),
        (
            "revoke bad credentialId".into(),
            app.delete(&format!("/api/v1/agents/{id}/credentials/{ten_kb}"))
                .bearer_auth(&token),
            credential_id,
        ),
        (
            "revoke bad agentId".into(),
            app.delete(&format!("/api/v1/agents/zzz/credentials/{cid}"))
                .bearer_auth(&token),
            agent_id,
        ),
        (
            "PATCH bad agentId".into(),
            app.patch("/api/v1/agents/zzz")
                .bearer_auth(&token)
                .json(&json!({ "version": "1.0.0" })),
            agent_id,
        ),
        (
            "DELETE bad agentId".into(),
            app.delete("/api/v1/agents/%20").bearer_auth(&token),
            agent_id,
        ),
    ];
    run(probes).await;

    // Bytes no client library will put in a request line.
    for target in [
        &b"/api/v1/agents/\xff\xfe"[..],
        b"/api/v1/agents/\x01",
        b"/api/v1/\xc0\xaf",
    ] {
        let mut request = b"GET ".to_vec();
        request.extend_from_slice(target);
        request.extend_from_slice(
            format!(
                " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        let reply = raw_exchange(app.base_url(), request).await;
        assert!(
            (400..500).contains(&reply.status),
            "{:?}: {} {}",
            String::from_utf8_lossy(target),
            reply.status,
            reply.body
        );
    }
}

async fn authorization_headers() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let (header, claims) = jwt::parts(&token);
    let foreign = jwt::foreign_rs256_signer();
    let jwks = app
        .get("/.well-known/jwks.json")
        .reply()
        .await
        .expect_json(200);
    let public_key_bytes = jwks["keys"][0].to_string();
    let hmac = HS256
        .signer_from_bytes(public_key_bytes.as_bytes())
        .expect("an HS256 signer");
    let mut expired = claims.clone();
    expired["exp"] = json!(1_000_000_000);
    expired["iat"] = json!(999_996_400);
    expired["nbf"] = json!(999_996_400);
    let mut future = claims.clone();
    future["nbf"] = json!(claims["iat"].as_i64().unwrap() + 3000);
    let mut other_issuer = claims.clone();
    other_issuer["iss"] = json!("https://evil.example");
    let (message, signature) = token.rsplit_once('.').unwrap();
    let forged_tokens = [
        (
            "alg none",
            jwt::forge(
                &json!({ "alg": "none", "typ": "at+jwt", "kid": header["kid"] }),
                &claims,
                None,
            ),
        ),
        (
            "alg none, no dot",
            jwt::forge(&json!({ "alg": "none" }), &claims, None)
                .trim_end_matches('.')
                .to_owned(),
        ),
        (
            "another key, same kid",
            jwt::forge(&header, &claims, Some(&foreign)),
        ),
        (
            "HS256 keyed with the public key",
            jwt::forge(
                &json!({ "alg": "HS256", "typ": "at+jwt", "kid": header["kid"] }),
                &claims,
                Some(&hmac),
            ),
        ),
        (
            "unknown kid",
            jwt::forge(
                &json!({ "alg": "RS256", "typ": "at+jwt", "kid": "nope" }),
                &claims,
                Some(&foreign),
            ),
        ),
        (
            "RS512 in the header",
            format!(
                "{}.{}.{signature}",
                jwt::forge(
                    &json!({ "alg": "RS512", "typ": "at+jwt", "kid": header["kid"] }),
                    &claims,
                    None
                )
                .split('.')
                .next()
                .unwrap(),
                message.split('.').nth(1).unwrap()
            ),
        ),
        (
            "expired, foreign key",
            jwt::forge(&header, &expired, Some(&foreign)),
        ),
        (
            "not yet valid, foreign key",
            jwt::forge(&header, &future, Some(&foreign)),
        ),
        (
            "other issuer, foreign key",
            jwt::forge(&header, &other_issuer, Some(&foreign)),
        ),
        (
            "signature of another token",
            format!("{message}.{}", "A".repeat(signature.len())),
        ),
        (
            "signature cut",
            format!("{message}.{}", &signature[..signature.len() / 2]),
        ),
        ("extra segment", format!("{token}.e30")),
        ("JWE-shaped", "a.b.c.d.e".to_owned()),
    ];
    let mut probes: Vec<(String, RequestBuilder, Expect)> = forged_tokens
        .into_iter()
        .map(|(what, forged)| {
            (
                what.to_owned(),
                app.get("/api/v1/agents").bearer_auth(forged),
                Expect::Unauthenticated,
            )
        })
        .collect();
    let basic_garbage =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "no-colon");
    for (what, value) in [
        ("Bearer alone", "Bearer".to_owned()),
        ("Bearer and spaces", "Bearer    ".to_owned()),
        (
            "Bearer with spaces inside",
            format!("Bearer {token} {token}"),
        ),
        ("Bearer 10 KB", format!("Bearer {}", "a".repeat(10 * 1024))),
        ("Bearer garbage", "Bearer !!!".to_owned()),
        ("Bearer empty JSON segments", "Bearer e30.e30.".to_owned()),
        ("Basic garbage", "Basic !!!".to_owned()),
        ("Basic without colon", format!("Basic {basic_garbage}")),
        (
            "Basic of the admin",
            format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{}:{}", admin.client_id, admin.client_secret)
                )
            ),
        ),
        ("Digest", "Digest username=\"x\"".to_owned()),
        ("token without scheme", token.clone()),
        ("empty", String::new()),
    ] {
        probes.push((
            what.to_owned(),
            app.get("/api/v1/agents").header("authorization", value),
            Expect::Unauthenticated,
        ));
    }
    probes.push((
        "non-UTF-8 bytes".into(),
        app.get("/api/v1/agents").header(
            "authorization",
            reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe\xfd").unwrap(),
        ),
        Expect::Unauthenticated,
    ));
    probes.push((
        "lower-case scheme".into(),
        app.get("/api/v1/agents")
            .header("authorization", format!("bearer {token}")),
        Expect::Status(200),
    ));
    probes.push((
        "two Authorization headers".into(),
        app.get("/api/v1/agents")
            .header("authorization", "Bearer garbage")
            .header("authorization", format!("Bearer {token}")),
        Expect::NoServerError,
    ));
    run(probes).await;
    // The token itself was never harmed, and nothing presented was logged.
    app.get_as(&token, "/api/v1/agents").await.expect(200);
    let logs = app.server.logs();
    assert!(!logs.contains(&admin.client_secret), "a secret in the logs");
    assert!(!logs.contains(signature), "a token in the logs");
}

async fn odd_methods_and_request_ids() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    for method in ["PUT", "HEAD", "OPTIONS", "TRACE", "FOO"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let reply = app
            .request(method.clone(), "/api/v1/agents")
            .bearer_auth(&token)
            .reply()
            .await;
        assert_eq!(reply.status, 405, "{method}: {}", reply.text);
    }
    for hostile in [
        "x".repeat(300),
        "a b".into(),
        "<script>".into(),
        "\u{7f}".into(),
    ] {
        let Ok(value) = reqwest::header::HeaderValue::from_str(&hostile) else {
            continue;
        };
        let reply = app
            .get("/healthz")
            .header("x-request-id", value)
            .reply()
            .await;
        let id = reply.header("x-request-id").unwrap();
        assert_ne!(id, hostile, "an unsafe request id was echoed");
        assert!(id.len() <= 128);
    }
}

e2e_tests! {
    json_bodies_that_are_not_valid_agents_are_400,
    patch_and_credential_bodies_that_are_malformed_are_400,
    content_types_and_sizes,
    query_parameters,
    unknown_query_parameters_are_refused_everywhere,
    path_parameters,
    authorization_headers,
    odd_methods_and_request_ids,
}
