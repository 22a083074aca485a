//! What client-signed JWTs (client assertions, DPoP proofs) have in common:
//! reading a header before its key is known, typed claim access, and the
//! single-use key of a `jti`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Longest client JWT read at all (an RSA-4096 proof with its `jwk` is about
/// 2 KiB).
pub const MAX_CLIENT_JWT_LEN: usize = 8 * 1024;

/// Longest `jti` accepted.
pub const MAX_JTI_LEN: usize = 256;

/// The decoded JSON object of segment `index` (0: header, 1: payload) of a
/// compact JWS, unverified: only for choosing the key that then verifies it.
pub(super) fn unverified_segment(jws: &str, index: usize) -> Option<Map<String, Value>> {
    if jws.len() > MAX_CLIENT_JWT_LEN {
        return None;
    }
    let mut parts = jws.split('.');
    let segment = parts.nth(index)?;
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A claim that must be a string.
pub(super) fn string_claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(Value::as_str)
}

/// A claim that must be a NumericDate, read as whole seconds. `Err` when
/// present but not a number.
pub(super) fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, ()> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(()),
    }
}

/// The `jti`, when it is a string of 1 to [`MAX_JTI_LEN`] characters.
pub(super) fn jti(claims: &Map<String, Value>) -> Option<&str> {
    string_claim(claims, "jti").filter(|jti| !jti.is_empty() && jti.len() <= MAX_JTI_LEN)
}

/// The replay-guard key of a `jti` within its `scope` (the agent of an
/// assertion, the key of a DPoP proof): hashed, so its length is bounded and
/// it carries nothing a client chose verbatim.
pub(super) fn replay_key(kind: &str, scope: &str, jti: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update([0]);
    hasher.update(jti.as_bytes());
    format!("{kind}:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn segment(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn segments_decode_only_when_objects() {
        let jws = format!(
            "{}.{}.sig",
            segment(&json!({"alg": "ES256"})),
            segment(&json!([1]))
        );
        assert_eq!(unverified_segment(&jws, 0).unwrap()["alg"], "ES256");
        assert!(unverified_segment(&jws, 1).is_none());
        assert!(unverified_segment("not-base64!.x.y", 0).is_none());
        assert!(unverified_segment(&"a".repeat(MAX_CLIENT_JWT_LEN + 1), 0).is_none());
    }

    #[test]
    fn time_claims_must_be_numbers() {
        let claims = json!({"exp": 10, "iat": 10.9, "nbf": "10"});
        let claims = claims.as_object().unwrap();
        assert_eq!(time_claim(claims, "exp"), Ok(Some(10)));
        assert_eq!(time_claim(claims, "iat"), Ok(Some(10)));
        assert_eq!(time_claim(claims, "nbf"), Err(()));
        assert_eq!(time_claim(claims, "absent"), Ok(None));
    }

    #[test]
    fn replay_keys_separate_scopes() {
        assert_ne!(replay_key("a", "x", "yz"), replay_key("a", "xy", "z"));
        assert_ne!(replay_key("a", "x", "y"), replay_key("b", "x", "y"));
        assert_eq!(replay_key("a", "x", "y"), replay_key("a", "x", "y"));
    }
}
