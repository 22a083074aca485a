//! Delegation (contract section 12, RFC 8693): the token-exchange grant over
//! the wire, a chain of three agents (A -> B -> C) with nested `act`, scope
//! attenuation and capped `exp`, every refusal of the section, the depth
//! limit, the cascade on each of its five triggers (and on a second node),
//! the `token.exchanged` events, `private_key_jwt` and DPoP actors, and the
//! actor's quota.

use std::time::Duration;

use idp_crypto::client_keys::ClientKey;
use idp_domain::values::JwsAlgorithm;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::client_keys::{JWT_BEARER, KeyClient, new_key_client, prime_replay_guard};
use crate::support::dpop_proofs::{dpop_get, token_proof};
use crate::support::{AgentClient, Exchange, Reply, TestApp, agent_body, jwt, metadata_of};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const TOKEN: &str = "/api/v1/token";
const AGENTS: &str = "/api/v1/agents";
const MCP: &str = "https://api.example/mcp";
const INVENTORY: &str = "urn:example:inventory";
/// What every agent of a plain chain may do: read agents (so its tokens work
/// on AgentIdP's own API) and one scope of an imaginary service.
const CHAIN_CAPABILITIES: [&str; 2] = ["agents:read", "resume:read"];

// ----- helpers -----

/// `POST /api/v1/token` on `base_url` with exactly `form` (after
/// `grant_type`), authenticated by `actor` with HTTP Basic when given.
async fn exchange_form_at(
    app: &TestApp,
    base_url: &str,
    actor: Option<&AgentClient>,
    form: &[(&str, &str)],
) -> Reply {
    let mut full = vec![("grant_type", TOKEN_EXCHANGE)];
    full.extend_from_slice(form);
    let mut request = app.request_to(base_url, Method::POST, TOKEN);
    if let Some(actor) = actor {
        request = request.basic_auth(&actor.client_id, Some(&actor.client_secret));
    }
    request.form(&full).reply().await
}

/// A token exchange of `subject` (an access token) by `actor` on `base_url`,
/// with `extra` form parameters.
async fn exchange_at(
    app: &TestApp,
    base_url: &str,
    actor: &AgentClient,
    subject: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut form = vec![
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN_TYPE),
    ];
    form.extend_from_slice(extra);
    exchange_form_at(app, base_url, Some(actor), &form).await
}

/// [`exchange_at`] the app's own node.
async fn exchange(
    app: &TestApp,
    actor: &AgentClient,
    subject: &str,
    extra: &[(&str, &str)],
) -> Reply {
    exchange_at(app, app.base_url(), actor, subject, extra).await
}

/// Asserts a successful exchange reply (RFC 8693 section 2.2.1) and returns
/// its body, token and claims.
#[track_caller]
fn exchanged(reply: Reply) -> (Value, String, Value) {
    reply.expect_no_store();
    let body = reply.expect_json(200);
    assert_eq!(body["issued_token_type"], ACCESS_TOKEN_TYPE, "{body}");
    let token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let (header, claims) = jwt::parts(&token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(
        body["expires_in"].as_i64(),
        Some(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap()),
        "{body} {claims}"
    );
    assert_eq!(body["scope"], claims["scope"], "{body} {claims}");
    (body, token, claims)
}

/// The access token `client` gets by client credentials, and its claims.
async fn plain_token(app: &TestApp, client: &AgentClient) -> (String, Value) {
    let token = app.token(client).await;
    let (_, claims) = jwt::parts(&token);
    (token, claims)
}

/// A sorted list of the space-separated scopes of `value`.
fn scopes(value: &Value) -> Vec<String> {
    let mut scopes: Vec<String> = value
        .as_str()
        .unwrap_or_else(|| panic!("not a scope string: {value}"))
        .split(' ')
        .map(str::to_owned)
        .collect();
    scopes.sort();
    scopes
}

/// An agent of the admin's owner with `capabilities`, `delegates` and
/// `resources`, and a secret credential for it.
async fn agent_with(
    app: &TestApp,
    admin: &str,
    email: &str,
    capabilities: &[&str],
    delegates: &[&AgentClient],
    resources: &[&str],
) -> AgentClient {
    let mut body = agent_body(email, capabilities);
    body["delegates"] = json!(
        delegates
            .iter()
            .map(|d| d.agent_id.clone())
            .collect::<Vec<_>>()
    );
    body["resources"] = json!(resources);
    let agent = app.post_agent(admin, &body).await.expect_json(201);
    assert_eq!(agent["delegates"], body["delegates"], "{agent}");
    let agent_id = agent["agentId"].as_str().expect("agentId");
    app.generate_credential(admin, agent_id).await
}

/// A and B, A listing B in its delegates, and a token of A.
async fn delegating_pair(app: &TestApp, admin: &str) -> (AgentClient, AgentClient, String) {
    let b = agent_with(app, admin, "b@acme.example", &CHAIN_CAPABILITIES, &[], &[]).await;
    let a = agent_with(
        app,
        admin,
        "a@acme.example",
        &CHAIN_CAPABILITIES,
        &[&b],
        &[],
    )
    .await;
    let a_token = app.token(&a).await;
    (a, b, a_token)
}

/// A chain A -> B -> C (A lists B in its delegates, B lists C), and the
/// tokens along it: A's by client credentials, B's exchanged from A's, C's
/// exchanged from B's.
struct Chain {
    a: AgentClient,
    b: AgentClient,
    c: AgentClient,
    a_token: String,
    b_token: String,
    c_token: String,
}

/// Builds a [`Chain`] on `base_url`'s node, agents named after `name`.
async fn chain_at(app: &TestApp, base_url: &str, admin: &str, name: &str) -> Chain {
    let c = agent_with(
        app,
        admin,
        &format!("{name}-c@acme.example"),
        &CHAIN_CAPABILITIES,
        &[],
        &[],
    )
    .await;
    let b = agent_with(
        app,
        admin,
        &format!("{name}-b@acme.example"),
        &CHAIN_CAPABILITIES,
        &[&c],
        &[],
    )
    .await;
    let a = agent_with(
        app,
        admin,
        &format!("{name}-a@acme.example"),
        &CHAIN_CAPABILITIES,
        &[&b],
        &[],
    )
    .await;
    let a_token = app.token(&a).await;
    let (_, b_token, _) = exchanged(exchange_at(app, base_url, &b, &a_token, &[]).await);
    let (_, c_token, _) = exchanged(exchange_at(app, base_url, &c, &b_token, &[]).await);
    Chain {
        a,
        b,
        c,
        a_token,
        b_token,
        c_token,
    }
}

/// [`chain_at`] the app's own node.
async fn chain(app: &TestApp, admin: &str, name: &str) -> Chain {
    chain_at(app, app.base_url(), admin, name).await
}

/// Asserts `token` is active on `base_url`: introspection and the API.
async fn assert_alive(app: &TestApp, base_url: &str, inspector: &str, token: &str, what: &str) {
    let answer = app.introspect_at(base_url, inspector, token).await;
    assert_eq!(answer["active"], true, "{what}: {answer}");
    app.request_to(base_url, Method::GET, AGENTS)
        .bearer_auth(token)
        .reply()
        .await
        .expect(200);
}

/// Asserts `token` is dead on `base_url`: `{"active": false}` and `401`.
async fn assert_dead(app: &TestApp, base_url: &str, inspector: &str, token: &str, what: &str) {
    assert_eq!(
        app.introspect_at(base_url, inspector, token).await,
        json!({ "active": false }),
        "{what}: introspection"
    );
    let reply = app
        .request_to(base_url, Method::GET, AGENTS)
        .bearer_auth(token)
        .reply()
        .await;
    assert_eq!(reply.status, 401, "{what}: the API answered {}", reply.text);
    reply.expect_unauthenticated();
}

/// Asserts the reply is the refusal `status` `error` and that it wrote
/// exactly one `token.exchanged` failure event by `actor` about `subject`;
/// returns the event.
async fn refused_with_event<F: std::future::Future<Output = Reply>>(
    app: &TestApp,
    admin: &str,
    exchange: F,
    (status, error): (u16, &str),
    actor: &AgentClient,
    subject: &str,
    what: &str,
) -> Value {
    let event = app
        .single_event_of(admin, async {
            let reply = exchange.await;
            assert_eq!(
                (reply.status, reply.json()["error"].as_str()),
                (status, Some(error)),
                "{what}: {}",
                reply.text
            );
            reply.expect_oauth_error(status, error);
        })
        .await;
    assert_eq!(event["action"], "token.exchanged", "{what}: {event}");
    assert_eq!(event["outcome"], "failure", "{what}: {event}");
    assert_eq!(event["actorId"], actor.agent_id.as_str(), "{what}: {event}");
    assert_eq!(event["agentId"], subject, "{what}: {event}");
    assert!(
        event["metadata"]["reason"].is_string(),
        "{what}: no reason: {event}"
    );
    event
}

// ----- the chain -----

async fn a_chain_of_three_nests_act_and_narrows_scope_and_exp() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let metadata = metadata_of(&reqwest::Client::new(), app.base_url()).await;
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(TOKEN_EXCHANGE)),
        "{metadata}"
    );

    let c = agent_with(
        &app,
        &admin,
        "c@acme.example",
        &["agents:read", "resume:read"],
        &[],
        &[],
    )
    .await;
    let d = agent_with(&app, &admin, "d@acme.example", &["other:thing"], &[], &[]).await;
    let b = agent_with(
        &app,
        &admin,
        "b@acme.example",
        &["agents:read", "resume:read", "resume:write"],
        &[&c, &d],
        &[],
    )
    .await;
    let a = agent_with(
        &app,
        &admin,
        "a@acme.example",
        &["agents:read", "audit:read", "resume:read", "resume:write"],
        &[&b],
        &[],
    )
    .await;
    let (a_token, a_claims) = plain_token(&app, &a).await;
    assert_eq!(
        scopes(&a_claims["scope"]),
        ["agents:read", "audit:read", "resume:read", "resume:write"]
    );
    // Later than A's token by more than a second, so a fresh lifetime would
    // pass A's `exp`: the exchange must cap it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    // B acts for A: default scope = A's token ∩ B's capabilities.
    let (body, b_token, b_claims) = exchanged(exchange(&app, &b, &a_token, &[]).await);
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(
        scopes(&body["scope"]),
        ["agents:read", "resume:read", "resume:write"]
    );
    assert_eq!(b_claims["sub"], a.agent_id.as_str(), "{b_claims}");
    assert_eq!(b_claims["client_id"], b.agent_id.as_str(), "{b_claims}");
    assert_eq!(
        b_claims["cid"],
        b.credential_id.as_deref().unwrap(),
        "{b_claims}"
    );
    assert_eq!(b_claims["act"], json!({ "sub": b.agent_id }), "{b_claims}");
    assert_eq!(b_claims["exp"], a_claims["exp"], "capped: {b_claims}");
    assert!(body["expires_in"].as_i64().unwrap() < 3600, "{body}");
    assert_eq!(b_claims["aud"], a_claims["aud"], "{b_claims}");
    assert_eq!(b_claims["aud"], app.base_url(), "{b_claims}");
    assert_eq!(b_claims["iss"], app.base_url(), "{b_claims}");
    assert_eq!(b_claims["owner"], a_claims["owner"], "{b_claims}");
    assert_ne!(b_claims["jti"], a_claims["jti"], "{b_claims}");
    assert!(b_claims.get("cnf").is_none(), "{b_claims}");
    assert_eq!(
        b_claims["dlg"],
        json!([{ "sub": a.agent_id, "cid": a_claims["cid"], "jti": a_claims["jti"] }]),
        "{b_claims}"
    );

    // C acts for B acting for A, the subject token called a JWT.
    let (body, c_token, c_claims) = exchanged(
        exchange_form_at(
            &app,
            app.base_url(),
            Some(&c),
            &[
                ("subject_token", &b_token),
                ("subject_token_type", JWT_TOKEN_TYPE),
            ],
        )
        .await,
    );
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(scopes(&body["scope"]), ["agents:read", "resume:read"]);
    assert_eq!(c_claims["sub"], a.agent_id.as_str(), "{c_claims}");
    assert_eq!(c_claims["client_id"], c.agent_id.as_str(), "{c_claims}");
    assert_eq!(
        c_claims["cid"],
        c.credential_id.as_deref().unwrap(),
        "{c_claims}"
    );
    assert_eq!(
        c_claims["act"],
        json!({ "sub": c.agent_id, "act": { "sub": b.agent_id } }),
        "{c_claims}"
    );
    assert!(c_claims["exp"].as_i64() <= a_claims["exp"].as_i64());
    assert_eq!(c_claims["exp"], a_claims["exp"], "capped: {c_claims}");
    assert_eq!(c_claims["aud"], app.base_url(), "{c_claims}");
    assert_eq!(
        c_claims["dlg"],
        json!([
            { "sub": a.agent_id, "cid": a_claims["cid"], "jti": a_claims["jti"] },
            { "sub": b.agent_id, "cid": b_claims["cid"], "jti": b_claims["jti"] },
        ]),
        "{c_claims}"
    );

    // A requested subset is granted as asked.
    let (body, _, claims) =
        exchanged(exchange(&app, &c, &b_token, &[("scope", "resume:read")]).await);
    assert_eq!(body["scope"], "resume:read", "{body}");
    assert_eq!(claims["scope"], "resume:read", "{claims}");
    let (body, _, _) =
        exchanged(exchange(&app, &b, &a_token, &[("scope", "resume:write agents:read")]).await);
    assert_eq!(scopes(&body["scope"]), ["agents:read", "resume:write"]);

    // Outside the subject token's scope or the actor's capabilities, or empty.
    for (actor, subject, scope, what) in [
        (&c, &b_token, Some("resume:write"), "not a capability of C"),
        (&c, &b_token, Some("audit:read"), "not in B's token"),
        (
            &b,
            &a_token,
            Some("audit:read"),
            "A's, not a capability of B",
        ),
        (&c, &b_token, Some("agents:read nope:x"), "partly unknown"),
        (&d, &b_token, None, "empty intersection"),
        (
            &d,
            &b_token,
            Some("other:thing"),
            "D's own, not in B's token",
        ),
    ] {
        let extra: Vec<(&str, &str)> = scope.map(|s| ("scope", s)).into_iter().collect();
        let reply = exchange(&app, actor, subject, &extra).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text);
        reply.expect_oauth_error(400, "invalid_scope");
    }

    // Introspection shows the chain.
    let answer = app.introspect(&admin, &c_token).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["sub"], a.agent_id.as_str(), "{answer}");
    assert_eq!(answer["client_id"], c.agent_id.as_str(), "{answer}");
    assert_eq!(
        answer["act"],
        json!({ "sub": c.agent_id, "act": { "sub": b.agent_id } }),
        "{answer}"
    );
    assert_eq!(scopes(&answer["scope"]), ["agents:read", "resume:read"]);
    assert_eq!(answer["exp"], c_claims["exp"], "{answer}");
    assert_eq!(answer["jti"], c_claims["jti"], "{answer}");
    assert_eq!(answer["aud"], app.base_url(), "{answer}");
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    let answer = app.introspect(&admin, &b_token).await;
    assert_eq!(answer["act"], json!({ "sub": b.agent_id }), "{answer}");
    let answer = app.introspect(&admin, &a_token).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert!(
        answer.get("act").is_none(),
        "a plain token has no act: {answer}"
    );

    // The delegated token works on AgentIdP's own API as A, within its scope only.
    let listed = app.get_as(&c_token, AGENTS).await.expect_json(200);
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|agent| agent["agentId"] == a.agent_id.as_str()),
        "{listed}"
    );
    assert!(app.token_works(&c_token, &a.agent_id).await);
    app.get_as(&a_token, "/api/v1/audit").await.expect(200);
    app.get_as(&c_token, "/api/v1/audit")
        .await
        .expect_insufficient_scope("audit:read");
    app.get_as(&b_token, "/api/v1/audit")
        .await
        .expect_insufficient_scope("audit:read");
}

async fn a_resource_narrows_the_audience_within_the_subjects_resources() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let b = agent_with(
        &app,
        &admin,
        "b@acme.example",
        &CHAIN_CAPABILITIES,
        &[],
        &[INVENTORY],
    )
    .await;
    let a = agent_with(
        &app,
        &admin,
        "a@acme.example",
        &CHAIN_CAPABILITIES,
        &[&b],
        &[MCP],
    )
    .await;
    let a_token = app.token(&a).await;

    // Among A's resources: the new token is for it, and not for AgentIdP.
    let (_, mcp_token, claims) =
        exchanged(exchange(&app, &b, &a_token, &[("resource", MCP)]).await);
    assert_eq!(claims["aud"], MCP, "{claims}");
    let answer = app.introspect(&admin, &mcp_token).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["aud"], MCP, "{answer}");
    app.get_as(&mcp_token, AGENTS)
        .await
        .expect_unauthenticated();
    let exchanged_event = app
        .audit_events(&admin, "action=token.exchanged")
        .await
        .into_iter()
        .next()
        .expect("an event");
    assert_eq!(
        exchanged_event["metadata"]["resource"],
        json!([MCP]),
        "{exchanged_event}"
    );
    // Without one, the subject token's audience: AgentIdP's.
    let (_, own_token, claims) = exchanged(exchange(&app, &b, &a_token, &[]).await);
    assert_eq!(claims["aud"], app.base_url(), "{claims}");
    app.get_as(&own_token, AGENTS).await.expect(200);

    // Outside A's resources (B's own do not count): invalid_target.
    for resources in [
        vec![("resource", INVENTORY)],
        vec![("resource", "https://api.example/other")],
        vec![("resource", MCP), ("resource", INVENTORY)],
    ] {
        refused_with_event(
            &app,
            &admin,
            exchange(&app, &b, &a_token, &resources),
            (400, "invalid_target"),
            &b,
            &a.agent_id,
            &format!("{resources:?}"),
        )
        .await;
    }
}

// ----- refusals -----

async fn each_refusal_is_an_oauth_error_and_audited() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let (_, globex_admin) = app.bootstrap_admin("globex").await;
    let Chain {
        a,
        b,
        c,
        a_token,
        b_token,
        ..
    } = chain(&app, &admin, "r").await;
    let b_own = app.token(&b).await;
    let a_id = a.agent_id.as_str();

    // C is not among A's delegates, and B not among its own: the agent the
    // subject token was issued to decides.
    refused_with_event(
        &app,
        &admin,
        exchange(&app, &c, &a_token, &[]),
        (400, "invalid_request"),
        &c,
        a_id,
        "C for A directly",
    )
    .await;
    refused_with_event(
        &app,
        &admin,
        exchange(&app, &b, &b_token, &[]),
        (400, "invalid_request"),
        &b,
        a_id,
        "B re-exchanging its own delegated token",
    )
    .await;
    // A is not its own delegate either.
    refused_with_event(
        &app,
        &admin,
        exchange(&app, &a, &a_token, &[]),
        (400, "invalid_request"),
        &a,
        a_id,
        "A for itself",
    )
    .await;

    // Subject tokens that are not active tokens of the owner: the event is
    // about the actor, the subject being unknown.
    // One character in the middle of the signature changed.
    let mut tampered: Vec<char> = a_token.chars().collect();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let globex_token = globex_admin.clone();
    for (subject, what) in [
        ("not-a-token", "garbage"),
        (tampered.as_str(), "a bad signature"),
        (globex_token.as_str(), "another owner's"),
    ] {
        refused_with_event(
            &app,
            &admin,
            exchange(&app, &b, subject, &[]),
            (400, "invalid_request"),
            &b,
            &b.agent_id,
            what,
        )
        .await;
    }

    // An actor token must be an active token of the client itself.
    exchanged(
        exchange(
            &app,
            &b,
            &a_token,
            &[
                ("actor_token", &b_own),
                ("actor_token_type", ACCESS_TOKEN_TYPE),
            ],
        )
        .await,
    );
    for (actor_token, actor_type, what) in [
        (a_token.as_str(), ACCESS_TOKEN_TYPE, "A's token"),
        (
            b_token.as_str(),
            JWT_TOKEN_TYPE,
            "a token about A held by B",
        ),
        ("not-a-token", ACCESS_TOKEN_TYPE, "garbage"),
        (globex_token.as_str(), ACCESS_TOKEN_TYPE, "another owner's"),
    ] {
        refused_with_event(
            &app,
            &admin,
            exchange(
                &app,
                &b,
                &a_token,
                &[
                    ("actor_token", actor_token),
                    ("actor_token_type", actor_type),
                ],
            ),
            (400, "invalid_request"),
            &b,
            a_id,
            what,
        )
        .await;
    }

    // Bad token types: refused before the tokens are read, so the event is
    // about the actor.
    for subject_type in [
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:refresh_token",
        "access_token",
    ] {
        refused_with_event(
            &app,
            &admin,
            exchange_form_at(
                &app,
                app.base_url(),
                Some(&b),
                &[
                    ("subject_token", &a_token),
                    ("subject_token_type", subject_type),
                ],
            ),
            (400, "invalid_request"),
            &b,
            &b.agent_id,
            subject_type,
        )
        .await;
    }
    // An empty one is no token type at all.
    exchange_form_at(
        &app,
        app.base_url(),
        Some(&b),
        &[("subject_token", &a_token), ("subject_token_type", "")],
    )
    .await
    .expect_oauth_error(400, "invalid_request");
    refused_with_event(
        &app,
        &admin,
        exchange(
            &app,
            &b,
            &a_token,
            &[
                ("actor_token", &b_own),
                (
                    "actor_token_type",
                    "urn:ietf:params:oauth:token-type:id_token",
                ),
            ],
        ),
        (400, "invalid_request"),
        &b,
        &b.agent_id,
        "a bad actor_token_type",
    )
    .await;

    // Malformed requests, refused before the client authenticates.
    for (form, what) in [
        (
            vec![("subject_token_type", ACCESS_TOKEN_TYPE)],
            "no subject_token",
        ),
        (
            vec![("subject_token", a_token.as_str())],
            "no subject_token_type",
        ),
        (
            vec![
                ("subject_token", a_token.as_str()),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("actor_token", b_own.as_str()),
            ],
            "actor_token without actor_token_type",
        ),
        (
            vec![
                ("subject_token", a_token.as_str()),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
                ("actor_token_type", ACCESS_TOKEN_TYPE),
            ],
            "actor_token_type without actor_token",
        ),
        (
            vec![
                ("subject_token", a_token.as_str()),
                ("subject_token", a_token.as_str()),
                ("subject_token_type", ACCESS_TOKEN_TYPE),
            ],
            "a repeated subject_token",
        ),
    ] {
        let reply = exchange_form_at(&app, app.base_url(), Some(&b), &form).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.text);
        reply.expect_oauth_error(400, "invalid_request");
    }

    // No client authentication, or a wrong secret: invalid_client.
    let reply = exchange_form_at(
        &app,
        app.base_url(),
        None,
        &[
            ("subject_token", &a_token),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ],
    )
    .await;
    reply.expect_oauth_error(401, "invalid_client");
    let mut wrong = b.clone();
    wrong.client_secret.push('x');
    let reply = exchange(&app, &wrong, &a_token, &[]).await;
    reply.expect_oauth_error(401, "invalid_client");
    assert!(
        reply.header_values("www-authenticate").contains("Basic"),
        "{:?}",
        reply.headers
    );

    // A suspended actor fails client authentication first.
    app.set_status(&admin, &b.agent_id, "suspended").await;
    let reply = exchange(&app, &b, &a_token, &[]).await;
    reply.expect_oauth_error(401, "invalid_client");
    assert!(reply.header_values("www-authenticate").contains("Basic"));
    app.set_status(&admin, &b.agent_id, "active").await;
    exchanged(exchange(&app, &b, &a_token, &[]).await);

    // A suspended subject: its token is not active.
    app.set_status(&admin, a_id, "suspended").await;
    refused_with_event(
        &app,
        &admin,
        exchange(&app, &b, &a_token, &[]),
        (400, "invalid_request"),
        &b,
        &b.agent_id,
        "A suspended",
    )
    .await;
    app.set_status(&admin, a_id, "active").await;
    exchanged(exchange(&app, &b, &a_token, &[]).await);

    // A revoked subject token.
    app.revoke_token(&admin, &a_token).await;
    refused_with_event(
        &app,
        &admin,
        exchange(&app, &b, &a_token, &[]),
        (400, "invalid_request"),
        &b,
        &b.agent_id,
        "revoked",
    )
    .await;
}

async fn an_expired_subject_token_is_invalid_request() {
    let app = TestApp::builder()
        .env("IDP_TOKEN_TTL_SECONDS", "3")
        .start()
        .await;
    let admin_client = app.bootstrap("acme", "admin@acme.example").await;
    // The admin's tokens live three seconds: a fresh one for each step.
    let admin = app.token(&admin_client).await;
    let b = app
        .new_client(&admin, "b@acme.example", &CHAIN_CAPABILITIES)
        .await;
    let admin = app.token(&admin_client).await;
    let a = agent_with(
        &app,
        &admin,
        "a@acme.example",
        &CHAIN_CAPABILITIES,
        &[&b],
        &[],
    )
    .await;
    let a_token = app.token(&a).await;
    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let admin = app.token(&admin_client).await;
    refused_with_event(
        &app,
        &admin,
        exchange(&app, &b, &a_token, &[]),
        (400, "invalid_request"),
        &b,
        &b.agent_id,
        "expired",
    )
    .await;
    // A fresh subject token is fine, and its exchange lives no longer than it.
    let a_token = app.token(&a).await;
    let (_, a_claims) = jwt::parts(&a_token);
    let (body, _, claims) = exchanged(exchange(&app, &b, &a_token, &[]).await);
    assert!(body["expires_in"].as_i64().unwrap() <= 3, "{body}");
    assert!(
        claims["exp"].as_i64() <= a_claims["exp"].as_i64(),
        "{claims}"
    );
}

async fn the_depth_limit_refuses_the_exchange_past_it() {
    // 0: no token exchange at all.
    let app = TestApp::builder()
        .env("IDP_MAX_DELEGATION_DEPTH", "0")
        .start()
        .await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let (_, b, a_token) = delegating_pair(&app, &admin).await;
    exchange(&app, &b, &a_token, &[])
        .await
        .expect_oauth_error(400, "invalid_request");
    drop(app);

    for depth in [1_usize, 2] {
        let app = TestApp::builder()
            .env("IDP_MAX_DELEGATION_DEPTH", &depth.to_string())
            .start()
            .await;
        let (_, admin) = app.bootstrap_admin("acme").await;
        // A chain one agent longer than the limit allows: agents[0] -> ... -> agents[depth + 1].
        let mut agents: Vec<AgentClient> = Vec::new();
        for i in (0..=depth + 1).rev() {
            let delegates: Vec<&AgentClient> = agents.last().into_iter().collect();
            let agent = agent_with(
                &app,
                &admin,
                &format!("n{i}@acme.example"),
                &CHAIN_CAPABILITIES,
                &delegates,
                &[],
            )
            .await;
            agents.push(agent);
        }
        agents.reverse();
        let mut token = app.token(&agents[0]).await;
        // Exchanges up to the limit pass.
        for (level, actor) in agents.iter().enumerate().take(depth + 1).skip(1) {
            let (_, next, claims) = exchanged(exchange(&app, actor, &token, &[]).await);
            let mut act = &claims["act"];
            let mut levels = 0;
            while act.is_object() {
                levels += 1;
                act = &act["act"];
            }
            assert_eq!(levels, level, "depth {depth}: {claims}");
            token = next;
        }
        // The one past it is invalid_request, and audited.
        let event = refused_with_event(
            &app,
            &admin,
            exchange(&app, &agents[depth + 1], &token, &[]),
            (400, "invalid_request"),
            &agents[depth + 1],
            &agents[0].agent_id,
            &format!("depth {depth}"),
        )
        .await;
        let chain: Vec<Value> = agents.iter().map(|a| json!(a.agent_id)).collect();
        assert_eq!(event["metadata"]["chain"], json!(chain), "{event}");
    }
}

// ----- audit -----

async fn each_exchange_writes_one_token_exchanged_event() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let c = agent_with(
        &app,
        &admin,
        "c@acme.example",
        &CHAIN_CAPABILITIES,
        &[],
        &[],
    )
    .await;
    let b = agent_with(
        &app,
        &admin,
        "b@acme.example",
        &CHAIN_CAPABILITIES,
        &[&c],
        &[],
    )
    .await;
    let a = agent_with(
        &app,
        &admin,
        "a@acme.example",
        &CHAIN_CAPABILITIES,
        &[&b],
        &[],
    )
    .await;
    let a_token = app.token(&a).await;
    let issued_before = app.audit_events(&admin, "action=token.issued").await.len();

    let mut b_out = None;
    let event = app
        .single_event_of(&admin, async {
            b_out = Some(exchanged(exchange(&app, &b, &a_token, &[]).await));
        })
        .await;
    let (_, b_token, b_claims) = b_out.unwrap();
    assert_eq!(event["action"], "token.exchanged", "{event}");
    assert_eq!(event["outcome"], "success", "{event}");
    assert_eq!(event["agentId"], a.agent_id.as_str(), "{event}");
    assert_eq!(event["actorId"], b.agent_id.as_str(), "{event}");
    let metadata = &event["metadata"];
    assert_eq!(
        metadata["chain"],
        json!([a.agent_id, b.agent_id]),
        "{event}"
    );
    assert_eq!(metadata["scope"], b_claims["scope"], "{event}");
    assert_eq!(metadata["jti"], b_claims["jti"], "{event}");
    assert_eq!(metadata["credentialId"], b_claims["cid"], "{event}");
    assert_eq!(metadata["authMethod"], "client_secret_basic", "{event}");
    assert!(metadata.get("resource").is_none(), "{event}");
    assert!(!event.to_string().contains(&a_token), "no token in events");

    let mut c_out = None;
    let event = app
        .single_event_of(&admin, async {
            c_out = Some(exchanged(
                exchange(&app, &c, &b_token, &[("scope", "resume:read")]).await,
            ));
        })
        .await;
    let (_, _, c_claims) = c_out.unwrap();
    assert_eq!(event["action"], "token.exchanged", "{event}");
    assert_eq!(event["outcome"], "success", "{event}");
    assert_eq!(event["agentId"], a.agent_id.as_str(), "{event}");
    assert_eq!(event["actorId"], c.agent_id.as_str(), "{event}");
    assert_eq!(
        event["metadata"]["chain"],
        json!([a.agent_id, b.agent_id, c.agent_id]),
        "{event}"
    );
    assert_eq!(event["metadata"]["scope"], "resume:read", "{event}");
    assert_eq!(event["metadata"]["jti"], c_claims["jti"], "{event}");

    // The filter finds both, newest first, and no token.issued was written.
    let events = app.audit_events(&admin, "action=token.exchanged").await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(events[0]["actorId"], c.agent_id.as_str());
    assert_eq!(events[1]["actorId"], b.agent_id.as_str());
    let by_subject = app
        .audit_events(
            &admin,
            &format!("action=token.exchanged&agentId={}", a.agent_id),
        )
        .await;
    assert_eq!(by_subject.len(), 2, "{by_subject:#?}");
    assert_eq!(
        app.audit_events(&admin, "action=token.issued").await.len(),
        issued_before
    );

    // A refused exchange by an authenticated actor: one failure event.
    let event = refused_with_event(
        &app,
        &admin,
        exchange(&app, &c, &a_token, &[]),
        (400, "invalid_request"),
        &c,
        &a.agent_id,
        "C for A directly",
    )
    .await;
    assert!(!event.to_string().contains(&a_token), "no token in events");
    let failures = app
        .audit_events(&admin, "action=token.exchanged&outcome=failure")
        .await;
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let successes = app
        .audit_events(&admin, "action=token.exchanged&outcome=success")
        .await;
    assert_eq!(successes.len(), 2, "{successes:#?}");
}

// ----- the cascade -----

async fn revoking_a_token_of_the_chain_kills_the_tokens_exchanged_from_it() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let base = app.base_url();

    // The delegated token itself: the tokens it came from live on.
    let one = chain(&app, &admin, "one").await;
    app.revoke_token(&admin, &one.c_token).await;
    assert_dead(&app, base, &admin, &one.c_token, "C's, revoked").await;
    assert_alive(&app, base, &admin, &one.b_token, "B's, C's revoked").await;
    assert_alive(&app, base, &admin, &one.a_token, "A's, C's revoked").await;

    // The subject token (B's delegated token).
    let two = chain(&app, &admin, "two").await;
    assert_alive(&app, base, &admin, &two.c_token, "C's").await;
    app.revoke_token(&admin, &two.b_token).await;
    assert_dead(&app, base, &admin, &two.c_token, "C's, B's revoked").await;
    assert_dead(&app, base, &admin, &two.b_token, "B's, revoked").await;
    assert_alive(&app, base, &admin, &two.a_token, "A's, B's revoked").await;
    // And nothing can be exchanged from it any more.
    exchange(&app, &two.c, &two.b_token, &[])
        .await
        .expect_oauth_error(400, "invalid_request");

    // A's original token.
    let three = chain(&app, &admin, "three").await;
    assert_alive(&app, base, &admin, &three.c_token, "C's").await;
    app.revoke_token(&admin, &three.a_token).await;
    assert_dead(&app, base, &admin, &three.c_token, "C's, A's revoked").await;
    assert_dead(&app, base, &admin, &three.b_token, "B's, A's revoked").await;
    // The agents themselves still get tokens.
    assert_alive(&app, base, &admin, &app.token(&three.a).await, "A's new").await;
    assert_alive(&app, base, &admin, &app.token(&three.c).await, "C's own").await;

    // The holder may revoke its own delegated token too.
    let four = chain(&app, &admin, "four").await;
    let holder = app.token(&four.c).await;
    app.revoke_token(&holder, &four.c_token).await;
    assert_dead(&app, base, &admin, &four.c_token, "C's, revoked by C").await;
}

async fn suspending_an_agent_of_the_chain_kills_the_delegated_token() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let base = app.base_url();

    // The subject, A.
    let one = chain(&app, &admin, "one").await;
    assert_alive(&app, base, &admin, &one.c_token, "C's").await;
    app.set_status(&admin, &one.a.agent_id, "suspended").await;
    assert_dead(&app, base, &admin, &one.c_token, "C's, A suspended").await;
    assert_dead(&app, base, &admin, &one.b_token, "B's, A suspended").await;
    assert_alive(&app, base, &admin, &app.token(&one.c).await, "C's own").await;

    // The middle actor, B.
    let two = chain(&app, &admin, "two").await;
    assert_alive(&app, base, &admin, &two.c_token, "C's").await;
    app.set_status(&admin, &two.b.agent_id, "suspended").await;
    assert_dead(&app, base, &admin, &two.c_token, "C's, B suspended").await;
    assert_dead(&app, base, &admin, &two.b_token, "B's, B suspended").await;
    assert_alive(&app, base, &admin, &two.a_token, "A's, B suspended").await;
    // Reactivation restores them, as for any token (section 3).
    app.set_status(&admin, &two.b.agent_id, "active").await;
    assert_alive(&app, base, &admin, &two.c_token, "C's, B reactivated").await;

    // The last actor, C: the tokens it acts for live on.
    let three = chain(&app, &admin, "three").await;
    app.set_status(&admin, &three.c.agent_id, "suspended").await;
    assert_dead(&app, base, &admin, &three.c_token, "C's, C suspended").await;
    assert_alive(&app, base, &admin, &three.b_token, "B's, C suspended").await;
}

async fn decommissioning_an_agent_of_the_chain_kills_the_delegated_token() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let base = app.base_url();

    // The middle actor, B.
    let one = chain(&app, &admin, "one").await;
    assert_alive(&app, base, &admin, &one.c_token, "C's").await;
    app.decommission(&admin, &one.b.agent_id).await.expect(204);
    assert_dead(&app, base, &admin, &one.c_token, "C's, B decommissioned").await;
    assert_alive(&app, base, &admin, &one.a_token, "A's, B decommissioned").await;

    // The subject, A.
    let two = chain(&app, &admin, "two").await;
    assert_alive(&app, base, &admin, &two.c_token, "C's").await;
    app.decommission(&admin, &two.a.agent_id).await.expect(204);
    assert_dead(&app, base, &admin, &two.c_token, "C's, A decommissioned").await;
    assert_dead(&app, base, &admin, &two.b_token, "B's, A decommissioned").await;

    // The last actor, C.
    let three = chain(&app, &admin, "three").await;
    app.decommission(&admin, &three.c.agent_id)
        .await
        .expect(204);
    assert_dead(&app, base, &admin, &three.c_token, "C's, C decommissioned").await;
    assert_alive(&app, base, &admin, &three.b_token, "B's, C decommissioned").await;
}

async fn revoking_a_credential_of_the_chain_kills_the_delegated_token() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let base = app.base_url();

    // A's credential, which A's original token was issued under.
    let one = chain(&app, &admin, "one").await;
    assert_alive(&app, base, &admin, &one.c_token, "C's").await;
    app.revoke_credential(
        &admin,
        &one.a.agent_id,
        one.a.credential_id.as_deref().unwrap(),
    )
    .await
    .expect(204);
    assert_dead(
        &app,
        base,
        &admin,
        &one.c_token,
        "C's, A's credential revoked",
    )
    .await;
    assert_dead(
        &app,
        base,
        &admin,
        &one.b_token,
        "B's, A's credential revoked",
    )
    .await;

    // B's credential, which B authenticated the first exchange with.
    let two = chain(&app, &admin, "two").await;
    assert_alive(&app, base, &admin, &two.c_token, "C's").await;
    app.revoke_credential(
        &admin,
        &two.b.agent_id,
        two.b.credential_id.as_deref().unwrap(),
    )
    .await
    .expect(204);
    assert_dead(
        &app,
        base,
        &admin,
        &two.c_token,
        "C's, B's credential revoked",
    )
    .await;
    assert_dead(
        &app,
        base,
        &admin,
        &two.b_token,
        "B's, B's credential revoked",
    )
    .await;
    assert_alive(
        &app,
        base,
        &admin,
        &two.a_token,
        "A's, B's credential revoked",
    )
    .await;

    // C's credential, which C's delegated token was issued under.
    let three = chain(&app, &admin, "three").await;
    app.revoke_credential(
        &admin,
        &three.c.agent_id,
        three.c.credential_id.as_deref().unwrap(),
    )
    .await
    .expect(204);
    assert_dead(
        &app,
        base,
        &admin,
        &three.c_token,
        "C's, C's credential revoked",
    )
    .await;
    assert_alive(
        &app,
        base,
        &admin,
        &three.b_token,
        "B's, C's credential revoked",
    )
    .await;
}

/// PostgreSQL + Redis only: two server processes on the same stores; each
/// trigger pulled on node 1 kills the delegated token on node 2 at once.
#[tokio::test(flavor = "multi_thread")]
async fn the_cascade_reaches_the_second_node() {
    let app = TestApp::builder()
        .on(crate::support::Deployment::Postgres)
        .start()
        .await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let node = app.start_another_node().await;
    let one_url = app.base_url().to_owned();
    let two_url = node.base_url.clone();

    // Exchanges work on either node with tokens of the other.
    let chains = [
        chain_at(&app, &two_url, &admin, "revoke-b").await,
        chain_at(&app, &two_url, &admin, "revoke-a").await,
        chain_at(&app, &one_url, &admin, "suspend-a").await,
        chain_at(&app, &one_url, &admin, "suspend-b").await,
        chain_at(&app, &one_url, &admin, "decommission-b").await,
        chain_at(&app, &one_url, &admin, "credential-a").await,
    ];
    // Node 2 has seen every delegated token alive (and cached what it caches).
    for (i, chain) in chains.iter().enumerate() {
        assert_alive(
            &app,
            &two_url,
            &admin,
            &chain.c_token,
            &format!("chain {i}"),
        )
        .await;
        let answer = app.introspect_at(&two_url, &admin, &chain.c_token).await;
        assert_eq!(
            answer["act"],
            json!({ "sub": chain.c.agent_id, "act": { "sub": chain.b.agent_id } }),
            "{answer}"
        );
    }

    let [
        revoke_b,
        revoke_a,
        suspend_a,
        suspend_b,
        decommission_b,
        credential_a,
    ] = &chains;
    app.revoke_token(&admin, &revoke_b.b_token).await;
    assert_dead(
        &app,
        &two_url,
        &admin,
        &revoke_b.c_token,
        "B's token revoked",
    )
    .await;
    app.revoke_token(&admin, &revoke_a.a_token).await;
    assert_dead(
        &app,
        &two_url,
        &admin,
        &revoke_a.c_token,
        "A's token revoked",
    )
    .await;
    app.set_status(&admin, &suspend_a.a.agent_id, "suspended")
        .await;
    assert_dead(&app, &two_url, &admin, &suspend_a.c_token, "A suspended").await;
    app.set_status(&admin, &suspend_b.b.agent_id, "suspended")
        .await;
    assert_dead(&app, &two_url, &admin, &suspend_b.c_token, "B suspended").await;
    app.decommission(&admin, &decommission_b.b.agent_id)
        .await
        .expect(204);
    assert_dead(
        &app,
        &two_url,
        &admin,
        &decommission_b.c_token,
        "B decommissioned",
    )
    .await;
    app.revoke_credential(
        &admin,
        &credential_a.a.agent_id,
        credential_a.a.credential_id.as_deref().unwrap(),
    )
    .await
    .expect(204);
    assert_dead(
        &app,
        &two_url,
        &admin,
        &credential_a.c_token,
        "A's credential revoked",
    )
    .await;
    // Node 1 agrees.
    for (i, chain) in chains.iter().enumerate() {
        assert_dead(
            &app,
            &one_url,
            &admin,
            &chain.c_token,
            &format!("node 1, chain {i}"),
        )
        .await;
    }
    drop(node);
}

// ----- client authentication, DPoP, quota -----

/// A token exchange of `subject` by the `private_key_jwt` client `actor`,
/// with a fresh assertion and `dpop` as the `DPoP` header when given.
async fn exchange_by_assertion(
    app: &TestApp,
    actor: &KeyClient,
    subject: &str,
    dpop: Option<&str>,
) -> Reply {
    let assertion = actor.assertion(app.base_url());
    let mut request = app.post(TOKEN);
    if let Some(proof) = dpop {
        request = request.header("DPoP", proof);
    }
    request
        .form(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ])
        .reply()
        .await
}

async fn a_private_key_jwt_actor_may_exchange_and_bind_with_dpop() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let b: KeyClient = new_key_client(
        &app,
        &admin,
        "b@acme.example",
        &CHAIN_CAPABILITIES,
        JwsAlgorithm::Es256,
    )
    .await;
    let b_client = AgentClient {
        agent_id: b.agent_id.clone(),
        client_id: b.agent_id.clone(),
        client_secret: String::new(),
        credential_id: Some(b.credential_id.clone()),
    };
    let a = agent_with(
        &app,
        &admin,
        "a@acme.example",
        &CHAIN_CAPABILITIES,
        &[&b_client],
        &[],
    )
    .await;
    prime_replay_guard(&app, &b, None).await;
    let a_token = app.token(&a).await;

    let mut out = None;
    let event = app
        .single_event_of(&admin, async {
            out = Some(exchanged(
                exchange_by_assertion(&app, &b, &a_token, None).await,
            ));
        })
        .await;
    let (body, token, claims) = out.unwrap();
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert_eq!(claims["sub"], a.agent_id.as_str(), "{claims}");
    assert_eq!(claims["client_id"], b.agent_id.as_str(), "{claims}");
    assert_eq!(claims["cid"], b.credential_id.as_str(), "{claims}");
    assert_eq!(claims["act"], json!({ "sub": b.agent_id }), "{claims}");
    assert_eq!(event["action"], "token.exchanged", "{event}");
    assert_eq!(
        event["metadata"]["authMethod"], "private_key_jwt",
        "{event}"
    );
    assert_eq!(event["metadata"]["credentialId"], b.credential_id.as_str());
    app.get_as(&token, AGENTS).await.expect(200);

    // With a DPoP proof: a DPoP-bound delegated token.
    let key = ClientKey::generate(JwsAlgorithm::EdDsa);
    let mut out = None;
    let event = app
        .single_event_of(&admin, async {
            out = Some(exchanged(
                exchange_by_assertion(&app, &b, &a_token, Some(&token_proof(&key, app.base_url())))
                    .await,
            ));
        })
        .await;
    let (body, bound, claims) = out.unwrap();
    assert_eq!(body["token_type"], "DPoP", "{body}");
    assert_eq!(
        claims["cnf"],
        json!({ "jkt": key.thumbprint() }),
        "{claims}"
    );
    assert_eq!(claims["act"], json!({ "sub": b.agent_id }), "{claims}");
    assert_eq!(event["metadata"]["jkt"], key.thumbprint(), "{event}");
    let answer = app.introspect(&admin, &bound).await;
    assert_eq!(answer["token_type"], "DPoP", "{answer}");
    assert_eq!(
        answer["cnf"],
        json!({ "jkt": key.thumbprint() }),
        "{answer}"
    );
    assert_eq!(answer["act"], json!({ "sub": b.agent_id }), "{answer}");
    dpop_get(&app, &key, &bound, AGENTS).await.expect(200);
    // Bound: as a Bearer token it is refused.
    app.get_as(&bound, AGENTS).await.expect(401);

    // A secret actor with a proof is bound too.
    let c = agent_with(
        &app,
        &admin,
        "c@acme.example",
        &CHAIN_CAPABILITIES,
        &[],
        &[],
    )
    .await;
    app.patch_agent(
        &admin,
        &a.agent_id,
        &json!({ "delegates": [b.agent_id, c.agent_id] }),
    )
    .await
    .expect(200);
    let reply = app
        .post(TOKEN)
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .header("DPoP", token_proof(&key, app.base_url()))
        .form(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", a_token.as_str()),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
        ])
        .reply()
        .await;
    let (body, _, claims) = exchanged(reply);
    assert_eq!(body["token_type"], "DPoP", "{body}");
    assert_eq!(
        claims["cnf"],
        json!({ "jkt": key.thumbprint() }),
        "{claims}"
    );
}

async fn the_actors_quota_is_spent_by_exchanges() {
    let app = TestApp::builder()
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "2")
        .start()
        .await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let (a, b, a_token) = delegating_pair(&app, &admin).await;
    // Refused exchanges spend none of it.
    for _ in 0..3 {
        exchange(&app, &b, &a_token, &[("scope", "nope:x")])
            .await
            .expect_oauth_error(400, "invalid_scope");
        exchange(&app, &b, "not-a-token", &[])
            .await
            .expect_oauth_error(400, "invalid_request");
        exchange(&app, &b, &a_token, &[("resource", MCP)])
            .await
            .expect_oauth_error(400, "invalid_target");
    }
    exchanged(exchange(&app, &b, &a_token, &[]).await);
    exchanged(exchange(&app, &b, &a_token, &[]).await);
    let refused = exchange(&app, &b, &a_token, &[]).await;
    let body = refused.expect_oauth_error(429, "access_denied");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("quota"),
        "{body}"
    );
    assert!(
        refused.header("retry-after").is_some(),
        "{:?}",
        refused.headers
    );
    // B's client credentials are spent too: one quota for both grants.
    app.request_token(&b, None)
        .await
        .expect_oauth_error(429, "access_denied");
    // The subject's quota was not touched: A has one token left.
    app.token(&a).await;
    app.request_token(&a, None)
        .await
        .expect_oauth_error(429, "access_denied");
}

/// A delegated token is its actor's power to act for the subject within the
/// token's scope: it must not let the actor revoke the subject's other
/// tokens (the subject's own, or those it delegated to others), which needs
/// no scope for the subject itself.
async fn a_delegated_token_cannot_revoke_the_subjects_other_tokens() {
    let app = TestApp::start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let base = app.base_url().to_owned();
    let one = chain(&app, &admin, "one").await;
    let d = agent_with(
        &app,
        &admin,
        "d@acme.example",
        &CHAIN_CAPABILITIES,
        &[],
        &[],
    )
    .await;
    app.patch_agent(
        &admin,
        &one.a.agent_id,
        &json!({ "delegates": [one.b.agent_id, d.agent_id] }),
    )
    .await
    .expect(200);
    let (_, d_token, _) = exchanged(exchange(&app, &d, &one.a_token, &[]).await);
    for (victim, what) in [
        (&one.a_token, "A's own token"),
        (&d_token, "D's delegated token"),
    ] {
        app.revoke_token(&one.c_token, victim).await;
        assert_alive(&app, &base, &admin, victim, what).await;
    }
    // Its own delegated token, it may revoke.
    app.revoke_token(&one.c_token, &one.c_token).await;
    assert_dead(&app, &base, &admin, &one.c_token, "C's, revoked by itself").await;
}

e2e_tests! {
    a_chain_of_three_nests_act_and_narrows_scope_and_exp,
    a_resource_narrows_the_audience_within_the_subjects_resources,
    each_refusal_is_an_oauth_error_and_audited,
    an_expired_subject_token_is_invalid_request,
    the_depth_limit_refuses_the_exchange_past_it,
    each_exchange_writes_one_token_exchanged_event,
    revoking_a_token_of_the_chain_kills_the_tokens_exchanged_from_it,
    suspending_an_agent_of_the_chain_kills_the_delegated_token,
    decommissioning_an_agent_of_the_chain_kills_the_delegated_token,
    revoking_a_credential_of_the_chain_kills_the_delegated_token,
    a_private_key_jwt_actor_may_exchange_and_bind_with_dpop,
    the_actors_quota_is_spent_by_exchanges,
    a_delegated_token_cannot_revoke_the_subjects_other_tokens,
}
