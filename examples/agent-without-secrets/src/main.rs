//! An AgentIdP agent without a shared secret: it proves who it is with its own
//! key (`private_key_jwt`, RFC 7523) and binds its token to that key (DPoP,
//! RFC 9449). See docs/guides/agents-without-secrets.md.
//!
//! `agent-without-secrets keygen KEY_FILE` writes a new P-256 private key to
//! KEY_FILE and prints its public JWK, the one to register as the agent's credential.
//! `agent-without-secrets IDP_URL AGENT_ID KEY_FILE` gets a DPoP-bound token and
//! reads the agent's own record with it.

use std::io::Write;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::Jwk;
use josekit::jws::{ES256, JwsHeader, JwsSigner};
use josekit::jwt::{self, JwtPayload};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

type Error = Box<dyn std::error::Error + Send + Sync>;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [command, key_file] if command == "keygen" => keygen(key_file),
        [idp, agent_id, key_file] => run(idp, agent_id, key_file).await,
        _ => Err("usage: agent-without-secrets keygen KEY_FILE | IDP_URL AGENT_ID KEY_FILE".into()),
    }
}

fn keygen(key_file: &str) -> Result<(), Error> {
    let mut key = ES256.generate_key_pair()?.to_jwk_key_pair();
    key.set_key_id(thumbprint(&key)?);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true); // never overwrites a key
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600); // readable by its owner only
    options
        .open(key_file)?
        .write_all(key.to_string().as_bytes())?;
    println!("{}", public_jwk(&key)?);
    Ok(())
}

async fn run(idp: &str, agent_id: &str, key_file: &str) -> Result<(), Error> {
    let key = Jwk::from_bytes(std::fs::read(key_file)?)?;
    let signer = ES256.signer_from_jwk(&key)?;
    let public = public_jwk(&key)?;
    let http = reqwest::Client::new();

    // A token bound to the key, the agent authenticated by an assertion signed with it.
    let token_url = format!("{idp}/api/v1/token");
    let response = http
        .post(&token_url)
        .header(
            "DPoP",
            dpop_proof(&signer, &public, "POST", &token_url, None)?,
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "agents:read"),
            ("client_assertion_type", ASSERTION_TYPE),
            (
                "client_assertion",
                &client_assertion(&signer, &key, agent_id, &token_url)?,
            ),
        ])
        .send()
        .await?;
    if !response.status().is_success() {
        // {"error": "invalid_client", ...}
        let refusal = format!(
            "token request refused: {} {}",
            response.status(),
            response.text().await?
        );
        return Err(refusal.into());
    }
    let token: Value = response.json().await?;
    let access_token = token["access_token"].as_str().ok_or("no access_token")?;

    // The API, with the token and a fresh proof of possession for this request.
    let url = format!("{idp}/api/v1/agents/{agent_id}");
    let response = http
        .get(&url)
        .header("Authorization", format!("DPoP {access_token}"))
        .header(
            "DPoP",
            dpop_proof(&signer, &public, "GET", &url, Some(access_token))?,
        )
        .send()
        .await?;
    if let Some(challenge) = response.headers().get("WWW-Authenticate") {
        eprintln!("{challenge:?}"); // a 401 says what was wrong with the token or the proof
    }

    // The token's own claims, read without verifying: the agent only looks at its binding.
    let payload = access_token.split('.').nth(1).ok_or("not a JWT")?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload)?)?;
    let summary = json!({
        "token_type": token["token_type"], // "DPoP"
        "jkt": claims["cnf"]["jkt"], // the thumbprint of the agent's key
        "status": response.status().as_u16(), // of GET /api/v1/agents/{agentId}
    });
    println!("{summary}");
    Ok(())
}

/// Who the agent is: a JWT signed with its key, good once, for one minute.
fn client_assertion(
    signer: &dyn JwsSigner,
    key: &Jwk,
    agent_id: &str,
    token_url: &str,
) -> Result<String, Error> {
    let mut header = JwsHeader::new();
    if let Some(kid) = key.key_id() {
        header.set_key_id(kid);
    }
    let now = unix_now()?;
    let claims = json!({
        "iss": agent_id,
        "sub": agent_id,
        "aud": token_url,
        "iat": now,
        "exp": now + 60, // at most 300 s after iat
        "jti": uuid::Uuid::new_v4().to_string(), // single use
    });
    signed(signer, &header, claims)
}

/// Proof that this request comes from the holder of the key: one per request.
fn dpop_proof(
    signer: &dyn JwsSigner,
    public: &Jwk,
    method: &str,
    url: &str,
    access_token: Option<&str>,
) -> Result<String, Error> {
    let mut header = JwsHeader::new();
    header.set_token_type("dpop+jwt");
    header.set_jwk(public.clone());
    let mut claims = json!({
        "jti": uuid::Uuid::new_v4().to_string(),
        "htm": method,
        "htu": url,
        "iat": unix_now()?,
    });
    if let Some(token) = access_token {
        claims["ath"] = URL_SAFE_NO_PAD.encode(Sha256::digest(token)).into();
    }
    signed(signer, &header, claims)
}

fn signed(signer: &dyn JwsSigner, header: &JwsHeader, claims: Value) -> Result<String, Error> {
    let Value::Object(claims) = claims else {
        return Err("claims must be a JSON object".into());
    };
    Ok(jwt::encode_with_signer(
        &JwtPayload::from_map(claims)?,
        header,
        signer,
    )?)
}

/// The key's public members, `kid` included.
fn public_jwk(key: &Jwk) -> Result<Jwk, Error> {
    let mut public = key.to_public_key()?;
    if let Some(kid) = key.key_id() {
        public.set_key_id(kid);
    }
    Ok(public)
}

/// The RFC 7638 thumbprint of an EC key: what AgentIdP names it by.
fn thumbprint(key: &Jwk) -> Result<String, Error> {
    let member = |name: &str| {
        key.parameter(name)
            .and_then(Value::as_str)
            .ok_or("not an EC key")
    };
    let canonical = format!(
        r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
        member("crv")?,
        member("x")?,
        member("y")?
    );
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical)))
}

/// Seconds since the Unix epoch, by this machine's clock.
#[expect(
    clippy::disallowed_methods,
    reason = "an agent signs with its own clock; the ban is for the server's code"
)]
fn unix_now() -> Result<u64, Error> {
    Ok(SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_secs())
}
