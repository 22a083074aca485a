// Cargo.toml: josekit = "0.10"
use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use josekit::jwk::JwkSet;
use josekit::jws::{JwsVerifier, RS256};
use josekit::jwt::{self, JwtPayload};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Clock skew tolerated between this service and the IdP, on `exp` and `nbf`.
const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// The RS256 keys of the IdP's JWK Set (`GET {issuer}/.well-known/jwks.json`),
/// by `kid`. Build it at start-up, and again when a token names an unknown `kid`.
pub fn rs256_verifiers(jwks_json: &[u8]) -> Result<HashMap<String, Box<dyn JwsVerifier>>, Error> {
    let mut verifiers: HashMap<String, Box<dyn JwsVerifier>> = HashMap::new();
    for jwk in JwkSet::from_bytes(jwks_json)?.keys() {
        if let (Some("RS256"), Some(kid)) = (jwk.algorithm(), jwk.key_id()) {
            verifiers.insert(kid.to_owned(), Box::new(RS256.verifier_from_jwk(jwk)?));
        }
    }
    Ok(verifiers)
}

/// The claims of `token` if it is a valid access token of this IdP for this
/// audience at `now`: signed with RS256 by the key its `kid` names (the header's
/// `alg` must say RS256; it never chooses the algorithm), `typ` `at+jwt`, the
/// expected `iss` and `aud`, and inside its `nbf`..`exp` window.
pub fn verify_access_token(
    token: &str,
    verifiers: &HashMap<String, Box<dyn JwsVerifier>>,
    issuer: &str,
    audience: &str,
    now: SystemTime,
) -> Result<JwtPayload, Error> {
    let (claims, header) = jwt::decode_with_verifier_selector(token, |header| {
        Ok(header
            .key_id()
            .and_then(|kid| verifiers.get(kid))
            .map(|verifier| verifier.as_ref()))
    })?;
    if header.token_type() != Some("at+jwt") {
        return Err("not an access token (typ)".into());
    }
    if claims.issuer() != Some(issuer) {
        return Err("wrong issuer".into());
    }
    if !claims.audience().is_some_and(|aud| aud.contains(&audience)) {
        return Err("wrong audience".into());
    }
    match (claims.not_before(), claims.expires_at()) {
        (Some(nbf), Some(exp)) if nbf <= now + CLOCK_SKEW && now < exp + CLOCK_SKEW => {}
        _ => return Err("expired or not yet valid".into()),
    }
    Ok(claims)
}

/// Who is acting, for a token from a token exchange (RFC 8693): the subject
/// (`sub`, on whose behalf), then each actor in the order they joined, the
/// one presenting the token (`client_id`) last. `act` nests the newest actor
/// outermost. A token of an agent acting for itself: just `[sub]`.
pub fn actor_chain(claims: &JwtPayload) -> Vec<String> {
    let mut chain = Vec::new(); // newest first, then reversed
    let mut act = claims.claim("act");
    while let Some(actor) = act.and_then(|act| act.get("sub")?.as_str()) {
        chain.push(actor.to_owned());
        act = act.and_then(|act| act.get("act"));
    }
    chain.extend(claims.subject().map(str::to_owned));
    chain.reverse();
    chain
}
