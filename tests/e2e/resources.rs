//! Audience-bound tokens (contract section 11, RFC 8707): an agent's
//! `resources`, the `resource` parameter of the token endpoint, and tokens
//! meant for another service.

use serde_json::{Value, json};

use crate::support::{AgentClient, Exchange, Reply, TestApp, agent_body, jwt};

const MCP: &str = "https://api.example/mcp";
const INVENTORY: &str = "urn:example:inventory";

/// `POST /api/v1/token` by `client` (HTTP Basic) with `extra` form parameters.
async fn token_request(app: &TestApp, client: &AgentClient, extra: &[(&str, &str)]) -> Reply {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    app.post("/api/v1/token")
        .basic_auth(&client.client_id, Some(&client.client_secret))
        .form(&form)
        .reply()
        .await
}

/// The `aud` claim of the token `client` gets for `extra`.
async fn audience_of(app: &TestApp, client: &AgentClient, extra: &[(&str, &str)]) -> Value {
    let body = token_request(app, client, extra).await.expect_json(200);
    let (_, claims) = jwt::parts(body["access_token"].as_str().expect("access_token"));
    claims["aud"].clone()
}

/// An agent of the token's owner with `capabilities` and `resources`, and a
/// credential for it.
async fn client_with_resources(
    app: &TestApp,
    token: &str,
    email: &str,
    capabilities: &[&str],
    resources: &[&str],
) -> AgentClient {
    let mut body = agent_body(email, capabilities);
    body["resources"] = json!(resources);
    let agent = app.post_agent(token, &body).await.expect_json(201);
    assert_eq!(agent["resources"], json!(resources), "{agent}");
    let agent_id = agent["agentId"].as_str().expect("agentId");
    app.generate_credential(token, agent_id).await
}

/// Asserts `400 VALIDATION_ERROR` about `field` or one of its items.
#[track_caller]
fn expect_invalid(reply: &Reply, field: &str, what: &str) {
    let body = reply.expect_error(400, "VALIDATION_ERROR");
    let named = body["details"]["field"].as_str().unwrap_or_default();
    assert!(
        named == field || named.starts_with(&format!("{field}[")),
        "{what}: field {named:?}, expected {field}: {body}"
    );
}

async fn agents_carry_their_resources_and_require_dpop() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let mut body = agent_body("r@acme.example", &["x:y"]);
    body["resources"] = json!([MCP, INVENTORY]);
    let created = app.post_agent(&admin, &body).await.expect_json(201);
    assert_eq!(created["resources"], json!([MCP, INVENTORY]), "{created}");
    assert_eq!(created["requireDpop"], false, "{created}");
    let id = created["agentId"].as_str().unwrap();
    let path = format!("/api/v1/agents/{id}");
    let read = app.get_as(&admin, &path).await.expect_json(200);
    assert_eq!(read, created);

    // Without them: none, and no DPoP required.
    let plain = app.create_agent(&admin, "p@acme.example", &["x:y"]).await;
    assert_eq!(plain["resources"], json!([]), "{plain}");
    assert_eq!(plain["requireDpop"], false, "{plain}");
    let listed = app.get_as(&admin, "/api/v1/agents").await.expect_json(200);
    for agent in listed["data"].as_array().unwrap() {
        assert!(agent["resources"].is_array(), "{agent}");
        assert!(agent["requireDpop"].is_boolean(), "{agent}");
    }

    let patched = app
        .patch_agent(
            &admin,
            id,
            &json!({ "resources": [INVENTORY], "requireDpop": true }),
        )
        .await
        .expect_json(200);
    assert_eq!(patched["resources"], json!([INVENTORY]), "{patched}");
    assert_eq!(patched["requireDpop"], true, "{patched}");
    let read = app.get_as(&admin, &path).await.expect_json(200);
    assert_eq!(read["resources"], json!([INVENTORY]), "{read}");
    assert_eq!(read["requireDpop"], true, "{read}");

    // Each alone, the other kept.
    let patched = app
        .patch_agent(&admin, id, &json!({ "resources": [] }))
        .await
        .expect_json(200);
    assert_eq!(patched["resources"], json!([]), "{patched}");
    assert_eq!(patched["requireDpop"], true, "{patched}");
    let patched = app
        .patch_agent(&admin, id, &json!({ "requireDpop": false }))
        .await
        .expect_json(200);
    assert_eq!(patched["resources"], json!([]), "{patched}");
    assert_eq!(patched["requireDpop"], false, "{patched}");
}

async fn invalid_resources_are_validation_errors() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let existing = app.create_agent(&admin, "e@acme.example", &["x:y"]).await;
    let path = format!("/api/v1/agents/{}", existing["agentId"].as_str().unwrap());
    let too_many: Vec<String> = (0..21).map(|i| format!("urn:example:r{i}")).collect();
    let too_long = format!("https://api.example/{}", "a".repeat(2048));
    let cases: Vec<(&str, &str, Value)> = vec![
        ("relative", "resources", json!(["/mcp"])),
        ("no scheme", "resources", json!(["api.example/mcp"])),
        (
            "fragment",
            "resources",
            json!(["https://api.example/mcp#part"]),
        ),
        ("21 items", "resources", json!(too_many)),
        ("duplicates", "resources", json!([MCP, INVENTORY, MCP])),
        ("a number", "resources", json!([1])),
        ("null item", "resources", json!([null])),
        ("not an array", "resources", json!(MCP)),
        ("too long", "resources", json!([too_long])),
        ("empty string", "resources", json!([""])),
        ("requireDpop a string", "requireDpop", json!("yes")),
    ];
    for (what, field, value) in &cases {
        let mut body = agent_body(&format!("n{}@acme.example", what.len()), &["x:y"]);
        body[*field] = value.clone();
        let reply = app.post_agent(&admin, &body).await;
        expect_invalid(&reply, field, &format!("POST, {what}"));
        let reply = app
            .patch(&path)
            .bearer_auth(&admin)
            .json(&json!({ *field: value }))
            .reply()
            .await;
        expect_invalid(&reply, field, &format!("PATCH, {what}"));
    }
    // Nothing was created or changed.
    let listed = app.get_as(&admin, "/api/v1/agents").await.expect_json(200);
    assert_eq!(listed["pagination"]["total"], 2, "{listed}");
    let read = app.get_as(&admin, &path).await.expect_json(200);
    assert_eq!(read, existing);

    // Twenty, and the longest, are fine.
    let twenty: Vec<String> = (0..20).map(|i| format!("urn:example:r{i}")).collect();
    let longest = format!("https://api.example/{}", "a".repeat(2048 - 20));
    assert_eq!(longest.len(), 2048);
    for resources in [json!(twenty), json!([longest])] {
        let reply = app
            .patch(&path)
            .bearer_auth(&admin)
            .json(&json!({ "resources": resources }))
            .reply()
            .await
            .expect_json(200);
        assert_eq!(reply["resources"], resources);
    }
}

async fn the_audience_follows_the_requested_resources() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let worker = client_with_resources(
        &app,
        &admin,
        "w@acme.example",
        &["resume:read", "resume:write"],
        &[MCP, INVENTORY],
    )
    .await;

    assert_eq!(
        audience_of(&app, &worker, &[("resource", MCP)]).await,
        json!(MCP)
    );
    assert_eq!(
        audience_of(&app, &worker, &[("resource", INVENTORY), ("resource", MCP)]).await,
        json!([INVENTORY, MCP])
    );
    assert_eq!(
        audience_of(&app, &worker, &[("resource", MCP), ("resource", INVENTORY)]).await,
        json!([MCP, INVENTORY])
    );
    assert_eq!(
        audience_of(&app, &worker, &[("resource", MCP), ("resource", MCP)]).await,
        json!(MCP),
        "a repeated resource counts once"
    );
    assert_eq!(
        audience_of(&app, &worker, &[]).await,
        json!(app.base_url()),
        "without a resource, the issuer"
    );

    let body = token_request(
        &app,
        &worker,
        &[("resource", INVENTORY), ("scope", "resume:read")],
    )
    .await
    .expect_json(200);
    assert_eq!(body["scope"], "resume:read", "{body}");
    assert_eq!(body["token_type"], "Bearer", "{body}");
    let (_, claims) = jwt::parts(body["access_token"].as_str().unwrap());
    assert_eq!(claims["aud"], INVENTORY, "{claims}");
    assert_eq!(claims["scope"], "resume:read", "{claims}");

    // A bad scope with a good resource is still invalid_scope.
    token_request(&app, &worker, &[("resource", MCP), ("scope", "nope:x")])
        .await
        .expect_oauth_error(400, "invalid_scope");
}

async fn resources_outside_the_list_are_invalid_target() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let worker = client_with_resources(&app, &admin, "w@acme.example", &["x:y"], &[MCP]).await;
    let bare = app.new_client(&admin, "b@acme.example", &["x:y"]).await;

    for (client, extra) in [
        (&worker, vec![("resource", "https://api.example/other")]),
        (&worker, vec![("resource", MCP), ("resource", INVENTORY)]),
        // Exact string comparison: no normalization.
        (&worker, vec![("resource", "https://API.example/mcp")]),
        (&worker, vec![("resource", "https://api.example/mcp/")]),
        (&bare, vec![("resource", MCP)]),
    ] {
        let failed = app
            .single_event_of(&admin, async {
                token_request(&app, client, &extra)
                    .await
                    .expect_oauth_error(400, "invalid_target");
            })
            .await;
        assert_eq!(failed["action"], "auth.failed", "{extra:?}: {failed}");
        assert_eq!(failed["outcome"], "failure", "{extra:?}: {failed}");
        assert_eq!(failed["agentId"], client.agent_id.as_str(), "{failed}");
        assert_eq!(
            failed["metadata"]["reason"], "invalid_target",
            "{extra:?}: {failed}"
        );
    }

    for malformed in [
        "/mcp",
        "not a uri",
        "https://api.example/mcp#frag",
        "https://",
    ] {
        token_request(&app, &worker, &[("resource", malformed)])
            .await
            .expect_oauth_error(400, "invalid_target");
    }
    let long = format!("https://api.example/{}", "a".repeat(2048));
    token_request(&app, &worker, &[("resource", &long)])
        .await
        .expect_oauth_error(400, "invalid_target");
    // A malformed resource is refused before the client is authenticated.
    let wrong = AgentClient {
        client_secret: format!("sk_live_{}", "a".repeat(64)),
        ..worker.clone()
    };
    token_request(&app, &wrong, &[("resource", "/mcp")])
        .await
        .expect_oauth_error(400, "invalid_target");
    // A well-formed one is not: the client fails first.
    token_request(&app, &wrong, &[("resource", MCP)])
        .await
        .expect_oauth_error(401, "invalid_client");
}

/// Twenty resources of the longest length an agent may list (2,048 characters each).
fn longest_resources() -> Vec<String> {
    (0..20)
        .map(|i| {
            let prefix = format!("https://api.example/{i:02}/");
            format!("{prefix}{}", "a".repeat(2048 - prefix.len()))
        })
        .collect()
}

async fn resources_too_long_for_one_token_are_invalid_target() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let listed = longest_resources();
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    let worker = client_with_resources(&app, &admin, "w@acme.example", &["x:y"], &listed).await;

    for count in [3, 20] {
        let extra: Vec<(&str, &str)> = listed[..count].iter().map(|r| ("resource", *r)).collect();
        let failed = app
            .single_event_of(&admin, async {
                token_request(&app, &worker, &extra)
                    .await
                    .expect_oauth_error(400, "invalid_target");
            })
            .await;
        assert_eq!(failed["action"], "auth.failed", "{count}: {failed}");
        assert_eq!(failed["metadata"]["reason"], "token_too_large", "{failed}");
    }

    // Two of them fit, and the token is one AgentIdP itself still reads.
    let extra = [("resource", listed[0]), ("resource", listed[1])];
    let body = token_request(&app, &worker, &extra).await.expect_json(200);
    let token = body["access_token"].as_str().expect("access_token");
    assert!(token.len() <= 8 * 1024, "{}", token.len());
    let introspected = app.introspect(&admin, token).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(introspected["aud"], json!(listed[..2]), "{introspected}");
}

async fn a_token_for_another_resource_is_not_for_agentidp() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let worker = client_with_resources(
        &app,
        &admin,
        "w@acme.example",
        &["agents:read"],
        &[MCP, INVENTORY],
    )
    .await;
    let inspector = app
        .new_client(&admin, "i@acme.example", &["tokens:introspect"])
        .await;
    let inspector_token = app.token(&inspector).await;

    let body = token_request(&app, &worker, &[("resource", MCP)])
        .await
        .expect_json(200);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let reply = app.get_as(&token, "/api/v1/agents").await;
    reply.expect_unauthenticated();
    let challenge = reply.header_values("www-authenticate");
    assert!(
        challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#),
        "{challenge:?}"
    );
    // The same agent's token for AgentIdP works.
    let own = app.token(&worker).await;
    app.get_as(&own, "/api/v1/agents").await.expect(200);
    // An array audience without AgentIdP's is refused too.
    let body = token_request(&app, &worker, &[("resource", MCP), ("resource", INVENTORY)])
        .await
        .expect_json(200);
    app.get_as(body["access_token"].as_str().unwrap(), "/api/v1/agents")
        .await
        .expect_unauthenticated();

    let answer = app.introspect(&inspector_token, &token).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["aud"], MCP, "{answer}");
    assert_eq!(answer["sub"], worker.agent_id.as_str(), "{answer}");
    assert_eq!(answer["token_type"], "Bearer", "{answer}");

    app.revoke_token(&admin, &token).await;
    assert_eq!(
        app.introspect(&inspector_token, &token).await,
        json!({ "active": false })
    );
    // The agent's other tokens live on.
    app.get_as(&own, "/api/v1/agents").await.expect(200);
}

async fn token_issued_events_carry_the_resources() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let worker =
        client_with_resources(&app, &admin, "w@acme.example", &["x:y"], &[MCP, INVENTORY]).await;
    let issued = app
        .single_event_of(&admin, async {
            token_request(&app, &worker, &[("resource", INVENTORY), ("resource", MCP)])
                .await
                .expect(200);
        })
        .await;
    assert_eq!(issued["action"], "token.issued", "{issued}");
    assert_eq!(issued["agentId"], worker.agent_id.as_str(), "{issued}");
    assert_eq!(
        issued["metadata"]["resource"],
        json!([INVENTORY, MCP]),
        "{issued}"
    );

    let issued = app
        .single_event_of(&admin, async {
            token_request(&app, &worker, &[("resource", MCP)])
                .await
                .expect(200);
        })
        .await;
    assert_eq!(issued["metadata"]["resource"], json!([MCP]), "{issued}");

    let issued = app
        .single_event_of(&admin, async {
            token_request(&app, &worker, &[]).await.expect(200);
        })
        .await;
    assert_eq!(issued["action"], "token.issued", "{issued}");
    assert!(
        issued["metadata"].get("resource").is_none(),
        "no resource asked, none recorded: {issued}"
    );
}

e2e_tests! {
    agents_carry_their_resources_and_require_dpop,
    invalid_resources_are_validation_errors,
    the_audience_follows_the_requested_resources,
    resources_outside_the_list_are_invalid_target,
    resources_too_long_for_one_token_are_invalid_target,
    a_token_for_another_resource_is_not_for_agentidp,
    token_issued_events_carry_the_resources,
}
