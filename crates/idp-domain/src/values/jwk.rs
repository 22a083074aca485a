//! Public keys as JSON Web Keys (RFC 7517), their RFC 7638 thumbprints, and
//! the signature algorithms AgentIdP accepts from clients (contract sections
//! 10 and 13).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::ValueError;

/// The signature algorithms a client assertion or a DPoP proof may use.
/// Everything else (`none`, the `HS*` family, `RS384`, ...) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl JwsAlgorithm {
    /// Every accepted algorithm, in the order the metadata lists them.
    pub const ALL: [JwsAlgorithm; 4] = [Self::Rs256, Self::Ps256, Self::Es256, Self::EdDsa];

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm an `alg` header names, if it is one AgentIdP accepts
    /// (case-sensitive, as RFC 7515 says).
    pub fn parse(alg: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == alg)
    }

    /// The names of [`JwsAlgorithm::ALL`], for the metadata.
    pub fn names() -> Vec<&'static str> {
        Self::ALL.into_iter().map(Self::as_str).collect()
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The key types AgentIdP accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA, at least 2048 bits.
    Rsa,
    /// EC on P-256.
    EcP256,
    /// OKP on Ed25519.
    Ed25519,
}

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;

/// Members that only a private or symmetric key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A public verification key of a client: RSA (>= 2048 bits), EC P-256 or
/// Ed25519, holding only public members, with a `kid` (the one given, else
/// its thumbprint). An invalid one cannot exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyJwk {
    members: Map<String, Value>,
    key_type: KeyType,
    thumbprint: String,
}

impl PublicKeyJwk {
    /// Reads a JWK as a client sent it (`field` names it in errors). Refuses
    /// private or symmetric keys, weak or unknown ones, a `use` other than
    /// `sig`, and an `alg` that does not fit the key. Keeps the members RFC
    /// 7517 defines for public keys (`kty`, `crv`, `n`, `e`, `x`, `y`, `kid`,
    /// `alg`, `use`) and drops any other.
    pub fn parse(field: &str, jwk: &Value) -> Result<Self, ValueError> {
        let refuse = |reason: &str| ValueError::new(field, reason);
        let Some(object) = jwk.as_object() else {
            return Err(refuse("must be a JSON Web Key object"));
        };
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
            return Err(refuse(&format!(
                "must be a public key: member \"{member}\" is private or symmetric key material"
            )));
        }
        let text = |name: &str| -> Result<&str, ValueError> {
            object
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| refuse(&format!("member \"{name}\" is required")))
        };
        let key_type = match text("kty")? {
            "RSA" => {
                let n = decode_member(object, "n").map_err(|r| refuse(&r))?;
                let e = decode_member(object, "e").map_err(|r| refuse(&r))?;
                let bits = significant_bits(&n);
                if bits < MIN_RSA_BITS {
                    return Err(refuse(&format!(
                        "an RSA key must have at least {MIN_RSA_BITS} bits, this one has {bits}"
                    )));
                }
                if significant_bits(&e) < 2 || e.last().is_some_and(|b| b % 2 == 0) {
                    return Err(refuse("the RSA exponent is invalid"));
                }
                KeyType::Rsa
            }
            "EC" => {
                if text("crv")? != "P-256" {
                    return Err(refuse("only the EC curve P-256 is accepted"));
                }
                for coordinate in ["x", "y"] {
                    if decode_member(object, coordinate)
                        .map_err(|r| refuse(&r))?
                        .len()
                        != 32
                    {
                        return Err(refuse(&format!(
                            "member \"{coordinate}\" must be 32 bytes for P-256"
                        )));
                    }
                }
                KeyType::EcP256
            }
            "OKP" => {
                if text("crv")? != "Ed25519" {
                    return Err(refuse("only the OKP curve Ed25519 is accepted"));
                }
                if decode_member(object, "x").map_err(|r| refuse(&r))?.len() != 32 {
                    return Err(refuse("member \"x\" must be 32 bytes for Ed25519"));
                }
                KeyType::Ed25519
            }
            "oct" => return Err(refuse("symmetric keys are not accepted")),
            _ => return Err(refuse("kty must be RSA, EC or OKP")),
        };
        if let Some(usage) = object.get("use")
            && usage.as_str() != Some("sig")
        {
            return Err(refuse("use must be \"sig\""));
        }
        if let Some(alg) = object.get("alg") {
            let fits = alg
                .as_str()
                .and_then(JwsAlgorithm::parse)
                .is_some_and(|alg| algorithm_fits(key_type, alg));
            if !fits {
                return Err(refuse("alg is not an accepted algorithm for this key"));
            }
        }
        if object.get("kid").is_some_and(|kid| {
            kid.as_str()
                .is_none_or(|kid| kid.is_empty() || kid.len() > 200)
        }) {
            return Err(refuse("kid must be a string of 1 to 200 characters"));
        }
        let kept = ["kty", "crv", "n", "e", "x", "y", "kid", "alg", "use"];
        let mut members: Map<String, Value> = object
            .iter()
            .filter(|(name, _)| kept.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let thumbprint = thumbprint(&members, key_type);
        if !members.contains_key("kid") {
            members.insert("kid".to_owned(), Value::String(thumbprint.clone()));
        }
        Ok(Self {
            members,
            key_type,
            thumbprint,
        })
    }

    /// Rebuilds a key a store kept (`jwk`: its JSON text) through the same
    /// checks as [`PublicKeyJwk::parse`]. The recorded `thumbprint` must be
    /// the key's own: one that differs means the row was edited by hand, and
    /// the key cannot be trusted to be the one registered. The error says
    /// what is wrong, for the store's error.
    pub fn from_stored(jwk: Option<&str>, thumbprint: Option<&str>) -> Result<Self, String> {
        let text = jwk.ok_or("public_jwk is missing")?;
        let value: Value = serde_json::from_str(text).map_err(|e| format!("public_jwk: {e}"))?;
        let key = Self::parse("public_jwk", &value).map_err(|e| e.to_string())?;
        if thumbprint != Some(key.thumbprint()) {
            return Err("jwk_thumbprint is not the stored key's thumbprint".to_owned());
        }
        Ok(key)
    }

    /// The JWK's members (public only, `kid` always present).
    pub fn members(&self) -> &Map<String, Value> {
        &self.members
    }

    /// The JWK as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.members.clone())
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The `kid`.
    pub fn kid(&self) -> &str {
        self.members
            .get("kid")
            .and_then(Value::as_str)
            .unwrap_or(&self.thumbprint)
    }

    /// The RFC 7638 SHA-256 thumbprint, base64url without padding.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Whether a signature with `alg` may be verified with this key: the
    /// algorithm must fit the key type, and the key's own `alg`, when it has
    /// one, pins it.
    pub fn allows(&self, alg: JwsAlgorithm) -> bool {
        let pinned = self.members.get("alg").and_then(Value::as_str);
        algorithm_fits(self.key_type, alg) && pinned.is_none_or(|pinned| pinned == alg.as_str())
    }
}

fn algorithm_fits(key_type: KeyType, alg: JwsAlgorithm) -> bool {
    matches!(
        (key_type, alg),
        (KeyType::Rsa, JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256)
            | (KeyType::EcP256, JwsAlgorithm::Es256)
            | (KeyType::Ed25519, JwsAlgorithm::EdDsa)
    )
}

fn decode_member(object: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let encoded = object
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("member \"{name}\" is required"))?;
    URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| format!("member \"{name}\" must be base64url without padding"))
}

fn significant_bits(bytes: &[u8]) -> usize {
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    (bytes.len() - first) * 8 - bytes[first].leading_zeros() as usize
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no
/// whitespace, base64url without padding.
fn thumbprint(members: &Map<String, Value>, key_type: KeyType) -> String {
    let required: &[&str] = match key_type {
        KeyType::Rsa => &["e", "kty", "n"],
        KeyType::EcP256 => &["crv", "kty", "x", "y"],
        KeyType::Ed25519 => &["crv", "kty", "x"],
    };
    let mut canonical = String::from("{");
    for (i, name) in required.iter().enumerate() {
        if i > 0 {
            canonical.push(',');
        }
        let value = members.get(*name).cloned().unwrap_or(Value::Null);
        canonical.push_str(&Value::String((*name).to_owned()).to_string());
        canonical.push(':');
        canonical.push_str(&value.to_string());
    }
    canonical.push('}');
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The base64url SHA-256 of an access token: a DPoP proof's `ath` (RFC 9449
/// section 4.2).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// RFC 7638 section 3.1.
    fn rfc7638_key() -> Value {
        json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        })
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s_example() {
        let key = PublicKeyJwk::parse("jwk", &rfc7638_key()).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(key.kid(), "2011-04-29");
    }

    #[test]
    fn a_key_without_kid_gets_its_thumbprint() {
        let mut jwk = rfc7638_key();
        jwk.as_object_mut().unwrap().remove("kid");
        let key = PublicKeyJwk::parse("jwk", &jwk).unwrap();
        assert_eq!(key.kid(), key.thumbprint());
        assert_eq!(key.to_value()["kid"], key.thumbprint());
    }

    #[test]
    fn private_and_symmetric_members_are_refused() {
        for member in PRIVATE_MEMBERS {
            let mut jwk = rfc7638_key();
            jwk[member] = json!("AQAB");
            let err = PublicKeyJwk::parse("jwk", &jwk).unwrap_err();
            assert!(err.reason.contains(member), "{member}: {err}");
        }
        let oct = json!({"kty": "oct", "kid": "k"});
        assert!(PublicKeyJwk::parse("jwk", &oct).is_err());
    }

    #[test]
    fn weak_and_unknown_keys_are_refused() {
        let short = json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB"});
        let err = PublicKeyJwk::parse("jwk", &short).unwrap_err();
        assert!(err.reason.contains("1024"), "{err}");
        let p384 = json!({"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"});
        assert!(PublicKeyJwk::parse("jwk", &p384).is_err());
        let x448 = json!({"kty": "OKP", "crv": "X25519", "x": URL_SAFE_NO_PAD.encode([1u8; 32])});
        assert!(PublicKeyJwk::parse("jwk", &x448).is_err());
        assert!(PublicKeyJwk::parse("jwk", &json!({"kty": "DSA"})).is_err());
        assert!(PublicKeyJwk::parse("jwk", &json!("RSA")).is_err());
        let short_ec = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        assert!(PublicKeyJwk::parse("jwk", &short_ec).is_err());
    }

    #[test]
    fn alg_and_use_must_fit_the_key() {
        let mut jwk = rfc7638_key();
        jwk["alg"] = json!("ES256");
        assert!(PublicKeyJwk::parse("jwk", &jwk).is_err());
        jwk["alg"] = json!("HS256");
        assert!(PublicKeyJwk::parse("jwk", &jwk).is_err());
        let mut jwk = rfc7638_key();
        jwk["use"] = json!("enc");
        assert!(PublicKeyJwk::parse("jwk", &jwk).is_err());
    }

    #[test]
    fn a_key_with_alg_pins_it() {
        let key = PublicKeyJwk::parse("jwk", &rfc7638_key()).unwrap();
        assert!(key.allows(JwsAlgorithm::Rs256));
        assert!(!key.allows(JwsAlgorithm::Ps256));
        let mut jwk = rfc7638_key();
        jwk.as_object_mut().unwrap().remove("alg");
        let key = PublicKeyJwk::parse("jwk", &jwk).unwrap();
        assert!(key.allows(JwsAlgorithm::Ps256));
        assert!(!key.allows(JwsAlgorithm::Es256));
    }

    #[test]
    fn unknown_members_are_dropped() {
        let mut jwk = rfc7638_key();
        jwk["x5u"] = json!("https://attacker.example/keys");
        let key = PublicKeyJwk::parse("jwk", &jwk).unwrap();
        assert!(!key.members().contains_key("x5u"));
    }

    #[test]
    fn a_stored_key_must_carry_its_own_thumbprint() {
        let key = PublicKeyJwk::parse("jwk", &rfc7638_key()).unwrap();
        let text = key.to_value().to_string();
        let back = PublicKeyJwk::from_stored(Some(&text), Some(key.thumbprint())).unwrap();
        assert_eq!(back, key);
        assert!(PublicKeyJwk::from_stored(Some(&text), Some("another")).is_err());
        assert!(PublicKeyJwk::from_stored(None, Some(key.thumbprint())).is_err());
        assert!(PublicKeyJwk::from_stored(Some("{"), Some(key.thumbprint())).is_err());
    }

    #[test]
    fn algorithms_parse_case_sensitively() {
        assert_eq!(JwsAlgorithm::parse("ES256"), Some(JwsAlgorithm::Es256));
        assert_eq!(JwsAlgorithm::parse("es256"), None);
        assert_eq!(JwsAlgorithm::parse("none"), None);
        assert_eq!(JwsAlgorithm::parse("HS256"), None);
    }
}
