//! Agents that authenticate with a key instead of a secret (contract section
//! 10, RFC 7523): registering a public key, making client assertions, and
//! presenting them to the token endpoint.

use idp_crypto::client_keys::ClientKey;
use idp_domain::values::JwsAlgorithm;
use serde_json::{Map, Value, json};

use super::app::TestApp;
use super::http::{Exchange, Reply};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 section 2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An agent and one of its public-key credentials, with the private key.
#[derive(Debug, Clone)]
pub struct KeyClient {
    /// The agent.
    pub agent_id: String,
    /// The public-key credential.
    pub credential_id: String,
    /// The key its assertions are signed with.
    pub key: ClientKey,
}

impl KeyClient {
    /// Assertion claims a careful client sends: `iss` = `sub` = the agent,
    /// `aud` the issuer, issued now, valid one minute, a fresh `jti`.
    pub fn claims(&self, issuer: &str) -> Value {
        assertion_claims(issuer, &self.agent_id)
    }

    /// `claims` signed by this client's key, its `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        sign_with_kid(&self.key, claims)
    }

    /// A fresh, valid assertion for `issuer`.
    pub fn assertion(&self, issuer: &str) -> String {
        self.sign(&self.claims(issuer))
    }
}

/// Seconds since the epoch, on the clock the server reads too.
pub fn now_secs() -> i64 {
    super::wall_clock().timestamp()
}

/// Valid assertion claims for `agent_id` (see [`KeyClient::claims`]).
pub fn assertion_claims(issuer: &str, agent_id: &str) -> Value {
    let now = now_secs();
    json!({
        "iss": agent_id,
        "sub": agent_id,
        "aud": issuer,
        "iat": now,
        "exp": now + 60,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// `claims` signed by `key`, with `kid` (and the key's `alg`) in the header.
pub fn sign_with_kid(key: &ClientKey, claims: &Value) -> String {
    let mut header = Map::new();
    header.insert("kid".into(), Value::String(key.kid().to_owned()));
    key.sign(header, claims)
}

/// `POST /api/v1/agents/{agent_id}/credentials` with `body`.
pub async fn post_key_credential(
    app: &TestApp,
    token: &str,
    agent_id: &str,
    body: &Value,
) -> Reply {
    app.post(&format!("/api/v1/agents/{agent_id}/credentials"))
        .bearer_auth(token)
        .json(body)
        .reply()
        .await
}

/// Registers `key` for `agent_id` (its public JWK, plus `extra` members of
/// the body); returns the credential.
pub async fn register_key(
    app: &TestApp,
    token: &str,
    agent_id: &str,
    key: &ClientKey,
    extra: &Value,
) -> KeyClient {
    let mut body = json!({ "type": "public_key", "jwk": key.public_jwk() });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let credential = post_key_credential(app, token, agent_id, &body)
        .await
        .expect_json(201);
    assert_eq!(credential["type"], "public_key", "{credential}");
    KeyClient {
        agent_id: agent_id.to_owned(),
        credential_id: credential["credentialId"]
            .as_str()
            .expect("credentialId")
            .to_owned(),
        key: key.clone(),
    }
}

/// A new agent of the token's owner with `capabilities` and one key
/// credential for `algorithm`.
pub async fn new_key_client(
    app: &TestApp,
    token: &str,
    email: &str,
    capabilities: &[&str],
    algorithm: JwsAlgorithm,
) -> KeyClient {
    let agent = app.create_agent(token, email, capabilities).await;
    let agent_id = agent["agentId"].as_str().expect("agentId");
    let key = ClientKey::generate(algorithm);
    register_key(app, token, agent_id, &key, &json!({})).await
}

/// `POST /api/v1/token` (client credentials) with `assertion` and any
/// `extra` form parameters.
pub async fn token_by_assertion_to(
    app: &TestApp,
    base_url: &str,
    assertion: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion),
    ];
    form.extend_from_slice(extra);
    app.request_to(base_url, reqwest::Method::POST, "/api/v1/token")
        .form(&form)
        .reply()
        .await
}

/// [`token_by_assertion_to`] the app's own node.
pub async fn token_by_assertion(app: &TestApp, assertion: &str, extra: &[(&str, &str)]) -> Reply {
    token_by_assertion_to(app, app.base_url(), assertion, extra).await
}

/// Waits until the replay guard of a server started (or restarted) at
/// `started` vouches for assertions issued now: more than
/// `ASSERTION_IAT_SKEW` (2 s) plus a second of rounding after it, and the
/// 2 s by which some tests date their assertions back.
pub async fn wait_for_replay_memory(started: chrono::DateTime<chrono::Utc>) {
    let ready = started + chrono::Duration::seconds(6);
    let wait = (ready - super::wall_clock()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
}

/// Makes the server's replay guard vouch for assertions made from now on:
/// presents one assertion of `client` (whatever the answer), then waits out
/// the guard's start-up window.
///
/// Why: the guard refuses an assertion that may have been used before it
/// began to remember (the server's start, embedded; a fresh or flushed Redis
/// prefix, PostgreSQL + Redis). How far before that counts has changed as the
/// server was written; waiting out the window keeps tests of other rules
/// independent of it.
pub async fn prime_replay_guard(app: &TestApp, client: &KeyClient, forwarded_for: Option<&str>) {
    let primed = super::wall_clock();
    let mut request = app.post("/api/v1/token");
    if let Some(from) = forwarded_for {
        request = request.header("X-Forwarded-For", from);
    }
    let assertion = client.assertion(app.base_url());
    let reply = request
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion.as_str()),
        ])
        .reply()
        .await;
    assert!(
        reply.status == 200 || reply.status == 401,
        "priming assertion: {} {}",
        reply.status,
        reply.text
    );
    wait_for_replay_memory(primed).await;
}
