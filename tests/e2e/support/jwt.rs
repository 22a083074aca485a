//! Reading access tokens, verifying them against the published JWK Set, and
//! forging the bad ones the server must refuse.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256};
use serde_json::{Map, Value};

/// The decoded header and claims of a compact JWS.
pub fn parts(token: &str) -> (Value, Value) {
    let segments: Vec<&str> = token.split('.').collect();
    assert_eq!(segments.len(), 3, "not a compact JWS: {token}");
    let decode = |segment: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(segment).expect("base64url");
        serde_json::from_slice(&bytes).expect("a JSON segment")
    };
    (decode(segments[0]), decode(segments[1]))
}

/// Whether `token`'s signature verifies with the key of `jwks` its `kid` names,
/// using the algorithm that key declares.
pub fn verifies_with(token: &str, jwks: &Value) -> bool {
    let (header, _) = parts(token);
    let Some(key) = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|key| key["kid"] == header["kid"])
    else {
        return false;
    };
    let map: Map<String, Value> = key.as_object().expect("a JWK object").clone();
    let jwk = Jwk::from_map(map).expect("a parseable JWK");
    let verifier: Box<dyn JwsVerifier> = match key["alg"].as_str() {
        Some("RS256") => Box::new(RS256.verifier_from_jwk(&jwk).expect("RS256 key")),
        Some("ES256") => Box::new(ES256.verifier_from_jwk(&jwk).expect("ES256 key")),
        Some("EdDSA") => Box::new(EdDSA.verifier_from_jwk(&jwk).expect("EdDSA key")),
        other => panic!("unexpected alg {other:?}"),
    };
    let (message, signature) = token.rsplit_once('.').expect("three segments");
    let Ok(signature) = URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    verifier.verify(message.as_bytes(), &signature).is_ok()
}

/// A compact JWS of `header` and `claims`, signed by `signer`, or with an
/// empty signature when there is none (`alg: none`).
pub fn forge(header: &Value, claims: &Value, signer: Option<&dyn JwsSigner>) -> String {
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let message = format!("{}.{}", encode(header), encode(claims));
    let signature = signer.map_or_else(String::new, |signer| {
        URL_SAFE_NO_PAD.encode(signer.sign(message.as_bytes()).expect("signing"))
    });
    format!("{message}.{signature}")
}

/// An RS256 signer with a fresh key nobody trusts.
pub fn foreign_rs256_signer() -> impl JwsSigner {
    let pair = RS256.generate_key_pair(2048).expect("an RSA key");
    RS256
        .signer_from_pem(pair.to_pem_private_key())
        .expect("a signer")
}
