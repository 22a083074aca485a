//! Sender-constrained tokens (contract section 13, RFC 9449): DPoP proofs at
//! the token endpoint, DPoP-bound tokens on AgentIdP's own API, and every
//! way a proof can be wrong.

use idp_crypto::client_keys::ClientKey;
use idp_domain::values::JwsAlgorithm;
use josekit::jws::HS256;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::dpop_proofs::{
    TOKEN_PATH, bound_token, dpop_get, dpop_request, expect_dpop_challenge, proof, proof_claims,
    proof_header, token_proof, token_request, token_request_to,
};
use crate::support::{Deployment, Exchange, TestApp, jwt, metadata_of};

const AGENTS: &str = "/api/v1/agents";
const REVOKE: &str = "/api/v1/token/revoke";

/// The newest audit event of `action` (the token may read the audit log).
async fn newest_event(app: &TestApp, audit_token: &str, action: &str) -> Value {
    app.audit_events(audit_token, &format!("action={action}"))
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {action} event"))
}

async fn a_proof_binds_the_token_to_each_kind_of_key() {
    let app = TestApp::start().await;
    let (admin, admin_token) = app.bootstrap_admin("acme").await;
    for algorithm in JwsAlgorithm::ALL {
        let key = ClientKey::generate(algorithm);
        let at_token_endpoint = token_proof(&key, app.base_url());
        let reply = token_request(&app, &admin, &[&at_token_endpoint], &[]).await;
        reply.expect_no_store();
        let body = reply.expect_json(200);
        assert_eq!(body["token_type"], "DPoP", "{algorithm:?}: {body}");
        let token = body["access_token"].as_str().expect("access_token");
        let (_, claims) = jwt::parts(token);
        assert_eq!(
            claims["cnf"],
            json!({ "jkt": key.thumbprint() }),
            "{algorithm:?}: {claims}"
        );

        let issued = newest_event(&app, &admin_token, "token.issued").await;
        assert_eq!(
            issued["metadata"]["jkt"],
            key.thumbprint(),
            "{algorithm:?}: {issued}"
        );

        let answer = app.introspect(&admin_token, token).await;
        assert_eq!(answer["active"], true, "{algorithm:?}: {answer}");
        assert_eq!(answer["token_type"], "DPoP", "{algorithm:?}: {answer}");
        assert_eq!(
            answer["cnf"],
            json!({ "jkt": key.thumbprint() }),
            "{algorithm:?}: {answer}"
        );

        // The bound token may be the introspection caller too, with a proof for that URL.
        let introspect = format!("{}/api/v1/token/introspect", app.base_url());
        let by_itself = dpop_request(
            &app,
            app.base_url(),
            Method::POST,
            "/api/v1/token/introspect",
            token,
            &[&proof(&key, "POST", &introspect, Some(token))],
        )
        .form(&[("token", token)])
        .reply()
        .await
        .expect_json(200);
        assert_eq!(by_itself, answer, "{algorithm:?}");

        let page = dpop_get(&app, &key, token, AGENTS).await.expect_json(200);
        assert!(
            page["data"].as_array().is_some_and(|d| !d.is_empty()),
            "{algorithm:?}: {page}"
        );
    }
    // Without a proof, the token stays a Bearer token with no cnf.
    let body = token_request(&app, &admin, &[], &[]).await.expect_json(200);
    assert_eq!(body["token_type"], "Bearer", "{body}");
    let (_, claims) = jwt::parts(body["access_token"].as_str().unwrap());
    assert!(claims.get("cnf").is_none(), "{claims}");
}

async fn the_proof_target_ignores_the_query_and_binds_with_a_resource() {
    const MCP: &str = "https://api.example/mcp";
    let app = TestApp::start().await;
    let (_, admin_token) = app.bootstrap_admin("acme").await;
    let mut body = crate::support::agent_body("w@acme.example", &["agents:read"]);
    body["resources"] = json!([MCP]);
    let agent = app.post_agent(&admin_token, &body).await.expect_json(201);
    let worker = app
        .generate_credential(&admin_token, agent["agentId"].as_str().unwrap())
        .await;
    let key = ClientKey::generate(JwsAlgorithm::Es256);

    // RFC 9449 section 4.3: htu is compared without query and fragment.
    let htu = format!("{}{TOKEN_PATH}?x=1#f", app.base_url());
    let body = token_request(&app, &worker, &[&proof(&key, "POST", &htu, None)], &[])
        .await
        .expect_json(200);
    assert_eq!(body["token_type"], "DPoP", "{body}");

    // Both bindings at once: the audience and the key.
    let body = token_request(
        &app,
        &worker,
        &[&token_proof(&key, app.base_url())],
        &[("resource", MCP)],
    )
    .await
    .expect_json(200);
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let token = body["access_token"].as_str().unwrap();
    let (_, claims) = jwt::parts(token);
    assert_eq!(claims["aud"], MCP, "{claims}");
    assert_eq!(
        claims["cnf"],
        json!({ "jkt": key.thumbprint() }),
        "{claims}"
    );
    let answer = app.introspect(&admin_token, token).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["aud"], MCP, "{answer}");
    assert_eq!(answer["token_type"], "DPoP", "{answer}");
    assert_eq!(
        answer["cnf"],
        json!({ "jkt": key.thumbprint() }),
        "{answer}"
    );
    // Meant for the resource, not for AgentIdP, even with an honest proof.
    let reply = dpop_get(&app, &key, token, AGENTS).await;
    expect_dpop_challenge(
        &reply,
        "invalid_token",
        "a resource's DPoP token on AgentIdP",
    );
}

async fn hostile_proofs_at_the_token_endpoint_are_invalid_dpop_proof() {
    let app = TestApp::start().await;
    let (admin, admin_token) = app.bootstrap_admin("acme").await;
    let key = ClientKey::generate(JwsAlgorithm::Es256);
    let other = ClientKey::generate(JwsAlgorithm::Es256);
    let htu = format!("{}{TOKEN_PATH}", app.base_url());
    let now = crate::support::wall_clock().timestamp();
    let with_claims = |change: &dyn Fn(&mut Value)| {
        let mut claims = proof_claims("POST", &htu, None);
        change(&mut claims);
        key.sign(proof_header(&key), &claims)
    };
    let with_header = |name: &str, value: Value| {
        let mut header = proof_header(&key);
        header.insert(name.to_owned(), value);
        key.sign(header, &proof_claims("POST", &htu, None))
    };
    let forged = |alg: &str, signer: Option<&dyn josekit::jws::JwsSigner>| {
        let header = json!({ "typ": "dpop+jwt", "alg": alg, "jwk": key.public_jwk() });
        jwt::forge(&header, &proof_claims("POST", &htu, None), signer)
    };
    let hmac = HS256
        .signer_from_bytes(key.public_jwk().to_string().as_bytes())
        .expect("an HS256 signer");

    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "another URL",
            vec![with_claims(&|c| {
                c["htu"] = json!(format!("{}/api/v1/token/introspect", app.base_url()));
            })],
        ),
        (
            "another host",
            vec![with_claims(&|c| {
                c["htu"] = json!("https://evil.example/api/v1/token");
            })],
        ),
        ("GET", vec![with_claims(&|c| c["htm"] = json!("GET"))]),
        (
            "iat 120 s old",
            vec![with_claims(&|c| c["iat"] = json!(now - 120))],
        ),
        (
            "iat 120 s ahead",
            vec![with_claims(&|c| c["iat"] = json!(now + 120))],
        ),
        (
            "no iat",
            vec![with_claims(&|c| {
                c.as_object_mut().unwrap().remove("iat");
            })],
        ),
        (
            "no jti",
            vec![with_claims(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            })],
        ),
        ("typ jwt", vec![with_header("typ", json!("jwt"))]),
        (
            "no typ",
            vec![{
                let mut header = proof_header(&key);
                header.remove("typ");
                key.sign(header, &proof_claims("POST", &htu, None))
            }],
        ),
        ("alg none", vec![forged("none", None)]),
        ("HS256", vec![forged("HS256", Some(&hmac))]),
        (
            "private key in the jwk",
            vec![with_header("jwk", key.private_jwk())],
        ),
        (
            "no jwk",
            vec![{
                let mut header = proof_header(&key);
                header.remove("jwk");
                key.sign(header, &proof_claims("POST", &htu, None))
            }],
        ),
        (
            "signed by a key other than the jwk's",
            vec![other.sign(proof_header(&key), &proof_claims("POST", &htu, None))],
        ),
        (
            "iat a string",
            vec![with_claims(&|c| c["iat"] = json!(now.to_string()))],
        ),
        ("empty jti", vec![with_claims(&|c| c["jti"] = json!(""))]),
        (
            "jti 300 characters",
            vec![with_claims(&|c| c["jti"] = json!("j".repeat(300)))],
        ),
        ("jti a number", vec![with_claims(&|c| c["jti"] = json!(7))]),
        (
            "alg not the key's",
            vec![with_header("alg", json!("RS256"))],
        ),
        (
            "jwk a symmetric key",
            vec![with_header("jwk", json!({ "kty": "oct", "k": "c2VjcmV0" }))],
        ),
        (
            "claims an array",
            vec![key.sign(proof_header(&key), &json!(["POST", htu]))],
        ),
        ("garbage", vec!["garbage".to_owned()]),
        ("three junk segments", vec!["a.b.c".to_owned()]),
    ];
    for (what, proofs) in &cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        // The client authenticated, so the refusal is audited.
        let failed = app
            .single_event_of(&admin_token, async {
                let reply = token_request(&app, &admin, &proofs, &[]).await;
                assert_eq!(reply.status, 400, "{what}: {}", reply.text);
                reply.expect_oauth_error(400, "invalid_dpop_proof");
            })
            .await;
        assert_eq!(failed["action"], "auth.failed", "{what}: {failed}");
        assert_eq!(
            failed["agentId"],
            admin.agent_id.as_str(),
            "{what}: {failed}"
        );
        assert_eq!(
            failed["metadata"]["reason"], "invalid_dpop_proof",
            "{what}: {failed}"
        );
    }

    // Two DPoP headers, each an honest proof: refused before the client is known.
    let two = [
        token_proof(&key, app.base_url()),
        token_proof(&key, app.base_url()),
    ];
    token_request(&app, &admin, &[&two[0], &two[1]], &[])
        .await
        .expect_oauth_error(400, "invalid_dpop_proof");

    // The same proof twice: accepted once.
    let once = token_proof(&key, app.base_url());
    token_request(&app, &admin, &[&once], &[])
        .await
        .expect_json(200);
    let replay = token_request(&app, &admin, &[&once], &[]).await;
    replay.expect_oauth_error(400, "invalid_dpop_proof");

    // Ahead, but inside the window, is fine. (Behind is not tried: this
    // server started moments ago, and a proof dated before its replay guard
    // began remembering is refused as a possible replay.)
    let ahead = with_claims(&|c| c["iat"] = json!(now + 50));
    token_request(&app, &admin, &[&ahead], &[])
        .await
        .expect_json(200);

    // The key itself is fine: a fresh honest proof still gets a token.
    token_request(&app, &admin, &[&token_proof(&key, app.base_url())], &[])
        .await
        .expect_json(200);
}

async fn an_agent_that_requires_dpop_needs_a_proof() {
    let app = TestApp::start().await;
    let (_, admin_token) = app.bootstrap_admin("acme").await;
    let worker = app
        .new_client(&admin_token, "w@acme.example", &["agents:read"])
        .await;
    let agent = app
        .patch_agent(
            &admin_token,
            &worker.agent_id,
            &json!({ "requireDpop": true }),
        )
        .await
        .expect_json(200);
    assert_eq!(agent["requireDpop"], true, "{agent}");

    token_request(&app, &worker, &[], &[])
        .await
        .expect_oauth_error(400, "invalid_request");
    let failed = newest_event(&app, &admin_token, "auth.failed").await;
    assert_eq!(failed["agentId"], worker.agent_id.as_str(), "{failed}");
    assert_eq!(
        failed["metadata"]["reason"], "dpop_proof_required",
        "{failed}"
    );

    let key = ClientKey::generate(JwsAlgorithm::EdDsa);
    let token = bound_token(&app, &worker, &key).await;
    dpop_get(&app, &key, &token, AGENTS).await.expect(200);

    // Switched off again, a Bearer token is fine.
    app.patch_agent(
        &admin_token,
        &worker.agent_id,
        &json!({ "requireDpop": false }),
    )
    .await
    .expect(200);
    let body = token_request(&app, &worker, &[], &[])
        .await
        .expect_json(200);
    assert_eq!(body["token_type"], "Bearer", "{body}");
}

async fn hostile_proofs_on_the_api_are_refused_with_a_dpop_challenge() {
    let app = TestApp::start().await;
    let (admin, _) = app.bootstrap_admin("acme").await;
    let key = ClientKey::generate(JwsAlgorithm::Es256);
    let other = ClientKey::generate(JwsAlgorithm::Es256);
    let token = bound_token(&app, &admin, &key).await;
    let unbound = app.token(&admin).await;
    let base = app.base_url();
    let htu = format!("{base}{AGENTS}");
    let now = crate::support::wall_clock().timestamp();
    let with_claims = |change: &dyn Fn(&mut Value)| {
        let mut claims = proof_claims("GET", &htu, Some(&token));
        change(&mut claims);
        key.sign(proof_header(&key), &claims)
    };

    // The bound token as Bearer: the challenge says DPoP, invalid_token.
    let reply = app.get(AGENTS).bearer_auth(&token).reply().await;
    expect_dpop_challenge(&reply, "invalid_token", "bound token as Bearer");

    // An unbound token under the DPoP scheme, even with an honest proof.
    let reply = dpop_request(
        &app,
        base,
        Method::GET,
        AGENTS,
        &unbound,
        &[&proof(&key, "GET", &htu, Some(&unbound))],
    )
    .reply()
    .await;
    expect_dpop_challenge(&reply, "invalid_token", "unbound token as DPoP");

    // A token that is no token, under the DPoP scheme.
    let reply = dpop_request(
        &app,
        base,
        Method::GET,
        AGENTS,
        "garbage",
        &[&proof(&key, "GET", &htu, Some("garbage"))],
    )
    .reply()
    .await;
    expect_dpop_challenge(&reply, "invalid_token", "garbage token as DPoP");

    let stale = with_claims(&|c| c["iat"] = json!(now - 120));
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("no proof", vec![]),
        (
            "wrong ath",
            vec![with_claims(&|c| {
                c["ath"] = json!(crate::support::dpop_proofs::ath(&unbound));
            })],
        ),
        (
            "no ath",
            vec![with_claims(&|c| {
                c.as_object_mut().unwrap().remove("ath");
            })],
        ),
        (
            "another path",
            vec![with_claims(&|c| {
                c["htu"] = json!(format!("{base}/api/v1/audit"));
            })],
        ),
        (
            "another method",
            vec![with_claims(&|c| c["htm"] = json!("POST"))],
        ),
        ("stale", vec![stale]),
        (
            "iat 120 s ahead",
            vec![with_claims(&|c| c["iat"] = json!(now + 120))],
        ),
        (
            "another key, its own jwk",
            vec![other.sign(
                proof_header(&other),
                &proof_claims("GET", &htu, Some(&token)),
            )],
        ),
        (
            "signed by another key than the jwk's",
            vec![other.sign(proof_header(&key), &proof_claims("GET", &htu, Some(&token)))],
        ),
        (
            "private key in the jwk",
            vec![{
                let mut header = proof_header(&key);
                header.insert("jwk".into(), key.private_jwk());
                key.sign(header, &proof_claims("GET", &htu, Some(&token)))
            }],
        ),
        (
            "typ jwt",
            vec![{
                let mut header = proof_header(&key);
                header.insert("typ".into(), json!("jwt"));
                key.sign(header, &proof_claims("GET", &htu, Some(&token)))
            }],
        ),
        (
            "two DPoP headers",
            vec![
                proof(&key, "GET", &htu, Some(&token)),
                proof(&key, "GET", &htu, Some(&token)),
            ],
        ),
        ("garbage", vec!["garbage".to_owned()]),
    ];
    for (what, proofs) in &cases {
        let proofs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        let reply = dpop_request(&app, base, Method::GET, AGENTS, &token, &proofs)
            .reply()
            .await;
        expect_dpop_challenge(&reply, "invalid_dpop_proof", what);
    }

    // A proof is good once.
    let once = proof(&key, "GET", &htu, Some(&token));
    dpop_request(&app, base, Method::GET, AGENTS, &token, &[&once])
        .reply()
        .await
        .expect(200);
    let replay = dpop_request(&app, base, Method::GET, AGENTS, &token, &[&once])
        .reply()
        .await;
    expect_dpop_challenge(&replay, "invalid_dpop_proof", "replayed");

    // A proof for another path is good there, and the query is not part of htu.
    let audit = format!("{base}/api/v1/audit");
    dpop_request(
        &app,
        base,
        Method::GET,
        "/api/v1/audit?limit=1",
        &token,
        &[&proof(&key, "GET", &audit, Some(&token))],
    )
    .reply()
    .await
    .expect(200);
    // Nothing above burned the token.
    dpop_get(&app, &key, &token, AGENTS).await.expect(200);
    // The scheme name is case-insensitive (RFC 9110 section 11.1).
    app.get(AGENTS)
        .header("Authorization", format!("dpop {token}"))
        .header("DPoP", proof(&key, "GET", &htu, Some(&token)))
        .reply()
        .await
        .expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_used_on_one_node_is_refused_on_another() {
    let app = TestApp::builder().on(Deployment::Postgres).start().await;
    let node = app.start_another_node().await;
    let (admin, _) = app.bootstrap_admin("acme").await;
    let key = ClientKey::generate(JwsAlgorithm::Es256);
    let (a, b) = (app.base_url(), node.base_url.as_str());

    // At the token endpoint: htu is the shared issuer's.
    let once = token_proof(&key, a);
    token_request_to(&app, a, &admin, &[&once], &[])
        .await
        .expect_json(200);
    token_request_to(&app, b, &admin, &[&once], &[])
        .await
        .expect_oauth_error(400, "invalid_dpop_proof");
    let body = token_request_to(&app, b, &admin, &[&token_proof(&key, a)], &[])
        .await
        .expect_json(200);
    let token = body["access_token"].as_str().expect("access_token");

    // On the API.
    let htu = format!("{a}{AGENTS}");
    let once = proof(&key, "GET", &htu, Some(token));
    dpop_request(&app, a, Method::GET, AGENTS, token, &[&once])
        .reply()
        .await
        .expect(200);
    let replay = dpop_request(&app, b, Method::GET, AGENTS, token, &[&once])
        .reply()
        .await;
    expect_dpop_challenge(&replay, "invalid_dpop_proof", "replayed on node B");
    let fresh = proof(&key, "GET", &htu, Some(token));
    dpop_request(&app, b, Method::GET, AGENTS, token, &[&fresh])
        .reply()
        .await
        .expect(200);
}

async fn a_dpop_token_revoked_by_its_holder_is_refused() {
    let app = TestApp::start().await;
    let (admin, admin_token) = app.bootstrap_admin("acme").await;
    let worker = app
        .new_client(&admin_token, "w@acme.example", &["agents:read"])
        .await;
    let key = ClientKey::generate(JwsAlgorithm::Rs256);
    let token = bound_token(&app, &worker, &key).await;
    dpop_get(&app, &key, &token, AGENTS).await.expect(200);

    // Revocation under the DPoP scheme needs a proof for the revoke URL.
    let wrong_url = proof(
        &key,
        "POST",
        &format!("{}{AGENTS}", app.base_url()),
        Some(&token),
    );
    let reply = dpop_request(
        &app,
        app.base_url(),
        Method::POST,
        REVOKE,
        &token,
        &[&wrong_url],
    )
    .form(&[("token", token.as_str())])
    .reply()
    .await;
    expect_dpop_challenge(
        &reply,
        "invalid_dpop_proof",
        "revoke with a proof for another URL",
    );
    dpop_get(&app, &key, &token, AGENTS).await.expect(200);

    let htu = format!("{}{REVOKE}", app.base_url());
    let revoke = proof(&key, "POST", &htu, Some(&token));
    let reply = dpop_request(
        &app,
        app.base_url(),
        Method::POST,
        REVOKE,
        &token,
        &[&revoke],
    )
    .form(&[("token", token.as_str())])
    .reply()
    .await
    .expect(200);
    assert!(reply.text.is_empty(), "revocation answered {}", reply.text);

    let refused = dpop_get(&app, &key, &token, AGENTS).await;
    expect_dpop_challenge(&refused, "invalid_token", "revoked");
    assert_eq!(
        app.introspect(&admin_token, &token).await,
        json!({ "active": false })
    );
    // The admin's own tokens are untouched.
    assert!(app.token_works(&admin_token, &admin.agent_id).await);
}

async fn metadata_lists_the_dpop_algorithms() {
    let app = TestApp::start().await;
    let metadata = metadata_of(&reqwest::Client::new(), app.base_url()).await;
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["RS256", "PS256", "ES256", "EdDSA"]),
        "{metadata}"
    );
}

e2e_tests! {
    a_proof_binds_the_token_to_each_kind_of_key,
    the_proof_target_ignores_the_query_and_binds_with_a_resource,
    hostile_proofs_at_the_token_endpoint_are_invalid_dpop_proof,
    an_agent_that_requires_dpop_needs_a_proof,
    hostile_proofs_on_the_api_are_refused_with_a_dpop_challenge,
    a_dpop_token_revoked_by_its_holder_is_refused,
    metadata_lists_the_dpop_algorithms,
}
