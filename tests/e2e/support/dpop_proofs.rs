//! DPoP proofs (contract section 13, RFC 9449): what a client holding a key
//! sends with its token requests and API calls, honest or hostile.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idp_crypto::client_keys::ClientKey;
use reqwest::{Method, RequestBuilder};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::app::{AgentClient, TestApp};
use super::http::{Exchange, Reply};

/// The path of the token endpoint.
pub const TOKEN_PATH: &str = "/api/v1/token";

/// The `ath` of a proof for `access_token`: base64url(SHA-256(token)).
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// The header of an honest proof: `typ` `dpop+jwt` and the key's public JWK
/// (the key's `alg` is added when signing).
pub fn proof_header(key: &ClientKey) -> Map<String, Value> {
    let mut header = Map::new();
    header.insert("typ".into(), json!("dpop+jwt"));
    header.insert("jwk".into(), key.public_jwk());
    header
}

/// The claims of an honest proof for `htm` `htu`, issued now, with `ath`
/// when it comes with `access_token`.
pub fn proof_claims(htm: &str, htu: &str, access_token: Option<&str>) -> Value {
    let mut claims = json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "htm": htm,
        "htu": htu,
        "iat": super::wall_clock().timestamp(),
    });
    if let Some(token) = access_token {
        claims["ath"] = json!(ath(token));
    }
    claims
}

/// An honest proof by `key` for `htm` `htu` (and `access_token`).
pub fn proof(key: &ClientKey, htm: &str, htu: &str, access_token: Option<&str>) -> String {
    key.sign(proof_header(key), &proof_claims(htm, htu, access_token))
}

/// An honest proof for the token endpoint of `issuer`.
pub fn token_proof(key: &ClientKey, issuer: &str) -> String {
    proof(key, "POST", &format!("{issuer}{TOKEN_PATH}"), None)
}

/// `POST /api/v1/token` on `base_url` by `client` (HTTP Basic) with `proofs`
/// as `DPoP` headers (none, one or several) and `extra` form parameters.
pub async fn token_request_to(
    app: &TestApp,
    base_url: &str,
    client: &AgentClient,
    proofs: &[&str],
    extra: &[(&str, &str)],
) -> Reply {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    let mut request = app
        .request_to(base_url, Method::POST, TOKEN_PATH)
        .basic_auth(&client.client_id, Some(&client.client_secret));
    for proof in proofs {
        request = request.header("DPoP", *proof);
    }
    request.form(&form).reply().await
}

/// [`token_request_to`] the app's own node.
pub async fn token_request(
    app: &TestApp,
    client: &AgentClient,
    proofs: &[&str],
    extra: &[(&str, &str)],
) -> Reply {
    token_request_to(app, app.base_url(), client, proofs, extra).await
}

/// A DPoP-bound access token of `client` for `key`; asserts the reply says
/// so.
pub async fn bound_token(app: &TestApp, client: &AgentClient, key: &ClientKey) -> String {
    let body = token_request(app, client, &[&token_proof(key, app.base_url())], &[])
        .await
        .expect_json(200);
    assert_eq!(body["token_type"], "DPoP", "{body}");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// A request to `path` of `base_url` under `Authorization: DPoP <token>`,
/// with `proofs` as `DPoP` headers.
pub fn dpop_request(
    app: &TestApp,
    base_url: &str,
    method: Method,
    path: &str,
    token: &str,
    proofs: &[&str],
) -> RequestBuilder {
    let mut request = app
        .request_to(base_url, method, path)
        .header("Authorization", format!("DPoP {token}"));
    for proof in proofs {
        request = request.header("DPoP", *proof);
    }
    request
}

/// `GET path` on the app's own node with `token` and an honest proof by `key`.
pub async fn dpop_get(app: &TestApp, key: &ClientKey, token: &str, path: &str) -> Reply {
    let htu = format!("{}{path}", app.base_url());
    let proof = proof(key, "GET", &htu, Some(token));
    dpop_request(app, app.base_url(), Method::GET, path, token, &[&proof])
        .reply()
        .await
}

/// Asserts a `401 AUTHENTICATION_ERROR` whose challenge is the DPoP scheme's
/// with `error`.
#[track_caller]
pub fn expect_dpop_challenge(reply: &Reply, error: &str, what: &str) {
    assert_eq!(
        (reply.status, reply.json()["code"].as_str()),
        (401, Some("AUTHENTICATION_ERROR")),
        "{what}: {} {}",
        reply.status,
        reply.text
    );
    let challenge = reply.header_values("www-authenticate");
    assert!(
        challenge.starts_with("DPoP") && challenge.contains(&format!(r#"error="{error}""#)),
        "{what}: challenge {challenge:?}, expected DPoP error=\"{error}\""
    );
}
