//! `GET /api/v1/agents/{agentId}/card`: an A2A-style Agent Card, a compact
//! JWS signed with the active key, that verifies against the published JWK
//! Set and names the same issuer and subject as the agent's access tokens.

use serde_json::Value;

use crate::support::{Exchange, TestApp, is_uuid, jwt, wall_clock};

/// The decoded claims must match `#/components/schemas/AgentCardClaims` of
/// the OpenAPI document (the reply itself is no JSON, so the harness's own
/// reply check cannot see them).
fn assert_matches_documented_claims(claims: &Value) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.yaml");
    let document: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut schema = document["components"]["schemas"]["AgentCardClaims"].clone();
    assert!(schema.is_object(), "AgentCardClaims is documented");
    schema
        .as_object_mut()
        .unwrap()
        .insert("components".into(), document["components"].clone());
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(claims)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the card's claims do not match AgentCardClaims:\n  {}\n{claims:#}",
        errors.join("\n  ")
    );
}

/// `GET .../card` with `token`: the raw compact JWS, after checking the
/// media type and that it is never cached.
async fn card_of(app: &TestApp, token: &str, agent_id: &str) -> String {
    let reply = app
        .get_as(token, &format!("/api/v1/agents/{agent_id}/card"))
        .await
        .expect(200);
    assert_eq!(
        reply
            .header("content-type")
            .map(|t| t.split(';').next().unwrap().trim()),
        Some("application/jwt")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    reply.text.trim().to_owned()
}

async fn the_card_is_signed_by_the_issuer_of_the_agents_tokens() {
    let app = TestApp::start().await;
    let (_, admin_token) = app.bootstrap_admin("acme").await;
    let agent = app
        .new_client(
            &admin_token,
            "summarizer@acme.example",
            &["docs:read", "agents:read"],
        )
        .await;
    let metadata = app
        .get("/.well-known/oauth-authorization-server")
        .reply()
        .await
        .expect_json(200);
    let issuer = metadata["issuer"].as_str().unwrap();
    let jwks = app
        .get("/.well-known/jwks.json")
        .reply()
        .await
        .expect_json(200);

    let card = card_of(&app, &admin_token, &agent.agent_id).await;
    let (header, claims) = jwt::parts(&card);
    assert_eq!(header["typ"], "agent-card+jwt", "{header}");
    assert!(
        jwt::verifies_with(&card, &jwks),
        "the card does not verify with the JWKS key {}",
        header["kid"]
    );
    // A character in the middle of the signature changed (never its last,
    // whose low bits may be padding a decoder ignores).
    let (message, signature) = card.rsplit_once('.').unwrap();
    let middle = signature.len() / 2;
    let flipped = if &signature[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    let tampered = format!(
        "{message}.{}{flipped}{}",
        &signature[..middle],
        &signature[middle + 1..]
    );
    assert!(
        !jwt::verifies_with(&tampered, &jwks),
        "a changed signature must not verify"
    );
    assert_matches_documented_claims(&claims);

    // The claims tie the card to the agent and to this issuer.
    assert_eq!(claims["iss"], issuer, "{claims}");
    assert_eq!(claims["sub"], agent.agent_id.as_str(), "{claims}");
    assert!(is_uuid(&claims["sub"]));
    assert_eq!(claims["owner"], "acme");
    assert_eq!(claims["status"], "active");
    let iat = claims["iat"].as_i64().expect("iat");
    assert!(
        (iat - wall_clock().timestamp()).abs() < 120,
        "iat {iat} is not now"
    );
    // ... as the agent's own access token does, signed by a key of the same set.
    let access = app.token(&agent).await;
    let (_, token_claims) = jwt::parts(&access);
    assert!(jwt::verifies_with(&access, &jwks));
    assert_eq!(token_claims["iss"], claims["iss"]);
    assert_eq!(token_claims["sub"], claims["sub"]);
    assert_eq!(token_claims["owner"], claims["owner"]);

    // The card itself.
    let card = &claims["card"];
    assert_eq!(card["name"], "summarizer@acme.example");
    assert_eq!(card["version"], "1.4.2");
    assert_eq!(card["protocolVersion"], "0.3.0");
    assert_eq!(card["provider"]["organization"], "acme");
    let skills: Vec<&str> = card["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(skills, ["docs:read", "agents:read"]);
    let scheme = &card["securitySchemes"]["agentidp"];
    assert_eq!(scheme["type"], "oauth2");
    assert_eq!(
        scheme["flows"]["clientCredentials"]["tokenUrl"],
        metadata["token_endpoint"]
    );
    assert_eq!(card["security"], serde_json::json!([{"agentidp": []}]));
    // The scheme's metadata URL is this server's metadata.
    let metadata_url = scheme["oauth2MetadataUrl"].as_str().unwrap();
    let path = metadata_url
        .strip_prefix(issuer.trim_end_matches('/'))
        .expect("the metadata URL is under the issuer");
    assert_eq!(path, "/.well-known/oauth-authorization-server");
    assert_eq!(app.get(path).reply().await.expect_json(200), metadata);
    assert_eq!(
        card["url"],
        format!(
            "{}/api/v1/agents/{}",
            issuer.trim_end_matches('/'),
            agent.agent_id
        )
    );

    // Any `agents:read` token of the owner reads it, the agent's own too.
    let own = app.token_with_scope(&agent, "agents:read").await;
    let (_, again) = jwt::parts(&card_of(&app, &own, &agent.agent_id).await);
    assert_eq!(again["card"], claims["card"]);
}

async fn the_card_follows_the_tenancy_and_scope_of_reading_the_agent() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let (_, other_token) = app.bootstrap_admin("globex").await;
    let agent = app
        .create_agent(&token, "worker@acme.example", &["x:y"])
        .await;
    let id = agent["agentId"].as_str().unwrap();
    let uri = format!("/api/v1/agents/{id}/card");

    // Another owner's agent and an unknown one are absent.
    app.get_as(&other_token, &uri)
        .await
        .expect_error(404, "AGENT_NOT_FOUND");
    app.get_as(
        &token,
        "/api/v1/agents/0193a5c4-8f3e-7b2a-9c1d-2e4f6a8b0c1d/card",
    )
    .await
    .expect_error(404, "AGENT_NOT_FOUND");
    // A malformed id and any query parameter are 400, as for the agent itself.
    app.get_as(&token, "/api/v1/agents/not-a-uuid/card")
        .await
        .expect_error(400, "VALIDATION_ERROR");
    app.get_as(&token, &format!("{uri}?x=1"))
        .await
        .expect_error(400, "VALIDATION_ERROR");

    // No token is 401; a token without `agents:read` is 403.
    app.get(&uri).reply().await.expect_unauthenticated();
    let narrow = app.token_with_scope(&admin, "audit:read").await;
    app.get_as(&narrow, &uri)
        .await
        .expect_insufficient_scope("agents:read");

    // Other methods are 405 with `Allow: GET`.
    let reply = app.post(&uri).bearer_auth(&token).reply().await;
    assert_eq!(reply.status, 405, "{}", reply.text);
    assert_eq!(reply.header("allow"), Some("GET"));

    // A suspended or decommissioned agent stays readable, and its card says so.
    app.set_status(&token, id, "suspended").await;
    let (_, claims) = jwt::parts(&card_of(&app, &token, id).await);
    assert_eq!(claims["status"], "suspended");
    app.decommission(&token, id).await.expect(204);
    let (_, claims) = jwt::parts(&card_of(&app, &token, id).await);
    assert_eq!(claims["status"], "decommissioned");
    assert_eq!(claims["card"]["skills"][0]["id"], "x:y");
}

e2e_tests!(
    the_card_is_signed_by_the_issuer_of_the_agents_tokens,
    the_card_follows_the_tenancy_and_scope_of_reading_the_agent,
);
