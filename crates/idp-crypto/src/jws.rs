//! [`JwsVerifier`] with josekit: client assertions (RFC 7523) and DPoP proofs
//! (RFC 9449) signed with the client's own key.
//!
//! The compact serialization is split and its header checked here, as in
//! [`codec`](crate::codec), so that every decision on the way in is visible
//! in one place; josekit (OpenSSL) only checks the signature bytes, with the
//! algorithm chosen here from the domain's list, never from the token alone.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idp_domain::ports::{JwsError, JwsVerifier, VerifiedJws};
use idp_domain::values::{JwsAlgorithm, PublicKeyJwk};
use josekit::JoseError;
use josekit::jwk::Jwk;
use josekit::jws::{ES256, EdDSA, JwsVerifier as JoseVerifier, PS256, RS256};
use serde_json::{Map, Value};

/// Longest compact JWS looked at (16 KiB): a DPoP proof carrying an RSA
/// 4096 `jwk` is under 2 KiB, so anything near this is abuse, refused before
/// any decoding.
pub const MAX_CLIENT_JWS_LEN: usize = 16 * 1024;

/// Header members refused outright: each would make the key, or the bytes
/// signed, depend on something other than the key the domain chose
/// (RFC 7515 sections 4.1.2-4.1.7 and 4.1.11, RFC 7797).
const FORBIDDEN_HEADER_MEMBERS: [&str; 7] = ["crit", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64"];

/// [`JwsVerifier`] over josekit. Holds nothing: a verifier is built from the
/// key at each call, which costs little next to the signature check itself
/// and leaves no cache to bound or to invalidate when a client rotates keys.
#[derive(Debug, Default, Clone, Copy)]
pub struct JoseJwsVerifier;

impl JoseJwsVerifier {
    /// A verifier.
    pub fn new() -> Self {
        Self
    }
}

impl JwsVerifier for JoseJwsVerifier {
    fn check_key(&self, key: &PublicKeyJwk) -> Result<(), JwsError> {
        let jwk = to_jose_jwk(key)?;
        let mut last_error = None;
        for alg in JwsAlgorithm::ALL.into_iter().filter(|a| key.allows(*a)) {
            match jose_verifier(alg, &jwk) {
                Ok(_) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| JwsError::Key("no accepted algorithm fits the key".to_owned())))
    }

    fn verify(
        &self,
        jws: &str,
        key: &PublicKeyJwk,
        algorithms: &[JwsAlgorithm],
    ) -> Result<VerifiedJws, JwsError> {
        if jws.len() > MAX_CLIENT_JWS_LEN {
            return Err(JwsError::Malformed);
        }
        let mut parts = jws.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed);
        };
        if header_b64.is_empty() {
            return Err(JwsError::Malformed);
        }
        let header = decode_object(header_b64)?;
        if FORBIDDEN_HEADER_MEMBERS
            .iter()
            .any(|member| header.contains_key(*member))
        {
            return Err(JwsError::Malformed);
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(JwsAlgorithm::parse)
            .filter(|alg| algorithms.contains(alg) && key.allows(*alg))
            .ok_or(JwsError::Algorithm)?;
        let claims = decode_object(payload_b64)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| JwsError::Malformed)?;
        let verifier = jose_verifier(alg, &to_jose_jwk(key)?)?;
        // The signing input is the token's own bytes, not a re-encoding of
        // the parsed header and payload.
        let signing_input = &jws[..header_b64.len() + 1 + payload_b64.len()];
        verifier
            .verify(signing_input.as_bytes(), &signature)
            .map_err(|_| JwsError::Signature)?;
        Ok(VerifiedJws { header, claims })
    }
}

/// One base64url (no padding) part holding a JSON object.
fn decode_object(part: &str) -> Result<Map<String, Value>, JwsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwsError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| JwsError::Malformed)
}

fn to_jose_jwk(key: &PublicKeyJwk) -> Result<Jwk, JwsError> {
    Jwk::from_map(key.members().clone()).map_err(key_error)
}

/// josekit's verifier for exactly `alg`: the algorithm is pinned here, and
/// the key must be of its type (josekit refuses an EC key for RS256, and an
/// EC point off the curve).
fn jose_verifier(alg: JwsAlgorithm, jwk: &Jwk) -> Result<Box<dyn JoseVerifier>, JwsError> {
    Ok(match alg {
        JwsAlgorithm::Rs256 => Box::new(RS256.verifier_from_jwk(jwk).map_err(key_error)?),
        JwsAlgorithm::Ps256 => Box::new(PS256.verifier_from_jwk(jwk).map_err(key_error)?),
        JwsAlgorithm::Es256 => Box::new(ES256.verifier_from_jwk(jwk).map_err(key_error)?),
        JwsAlgorithm::EdDsa => Box::new(EdDSA.verifier_from_jwk(jwk).map_err(key_error)?),
    })
}

fn key_error(e: JoseError) -> JwsError {
    JwsError::Key(e.to_string())
}

#[cfg(test)]
mod tests {
    use josekit::jwk::KeyPair;
    use josekit::jwk::alg::rsa::RsaKeyPair;
    use josekit::jws::HS256;
    use serde_json::json;

    use super::*;
    use crate::client_keys::ClientKey;

    const ALL: &[JwsAlgorithm] = &JwsAlgorithm::ALL;

    fn public(key: &ClientKey) -> PublicKeyJwk {
        PublicKeyJwk::parse("jwk", &key.public_jwk()).unwrap()
    }

    fn header(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn claims() -> Value {
        json!({"iss": "agent-1", "jti": "j-1"})
    }

    fn b64(text: &str) -> String {
        URL_SAFE_NO_PAD.encode(text)
    }

    /// A JWS of the given header and payload texts, signed with HS256 under
    /// `secret`.
    fn hmac_jws(header: &str, payload: &str, secret: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let signature = HS256
            .signer_from_bytes(secret)
            .unwrap()
            .sign(input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn verify(
        jws: &str,
        key: &PublicKeyJwk,
        algorithms: &[JwsAlgorithm],
    ) -> Result<VerifiedJws, JwsError> {
        JoseJwsVerifier.verify(jws, key, algorithms)
    }

    #[test]
    fn each_algorithm_verifies_and_answers_header_and_claims() {
        for alg in JwsAlgorithm::ALL {
            let key = ClientKey::generate(alg);
            let jwk = public(&key);
            JoseJwsVerifier.check_key(&jwk).unwrap();
            let jws = key.sign(
                header(json!({"typ": "dpop+jwt", "jwk": key.public_jwk()})),
                &claims(),
            );
            let verified = verify(&jws, &jwk, &[alg]).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(verified.header["alg"], alg.as_str());
            assert_eq!(verified.header["typ"], "dpop+jwt");
            assert_eq!(verified.header["jwk"], key.public_jwk());
            assert_eq!(Value::Object(verified.claims), claims());
        }
    }

    #[test]
    fn another_key_of_the_same_type_is_a_bad_signature() {
        for alg in JwsAlgorithm::ALL {
            let signer = ClientKey::generate(alg);
            let other = public(&ClientKey::generate(alg));
            let jws = signer.sign(Map::new(), &claims());
            assert_eq!(verify(&jws, &other, ALL), Err(JwsError::Signature), "{alg}");
        }
    }

    #[test]
    fn a_changed_payload_is_a_bad_signature() {
        let key = ClientKey::generate(JwsAlgorithm::Es256);
        let jws = key.sign(Map::new(), &claims());
        let (signed, signature) = jws.rsplit_once('.').unwrap();
        let (head, _) = signed.split_once('.').unwrap();
        let forged = format!(
            "{head}.{}.{signature}",
            b64(r#"{"iss":"agent-2","jti":"j-1"}"#)
        );
        assert_eq!(
            verify(&forged, &public(&key), ALL),
            Err(JwsError::Signature)
        );
        assert!(verify(&jws, &public(&key), ALL).is_ok());
    }

    #[test]
    fn a_kid_in_the_header_does_not_choose_the_key() {
        // The domain picks the key; a header kid naming another key neither
        // helps nor hurts, so it cannot redirect verification.
        let key = ClientKey::generate(JwsAlgorithm::EdDsa);
        let jws = key.sign(header(json!({"kid": "someone-else"})), &claims());
        let verified = verify(&jws, &public(&key), ALL).unwrap();
        assert_eq!(verified.header["kid"], "someone-else");
    }

    #[test]
    fn alg_none_is_an_algorithm_error() {
        let jwk = public(&ClientKey::generate(JwsAlgorithm::Rs256));
        let payload = claims().to_string();
        for alg in ["none", "None", "NONE"] {
            let unsigned = format!(
                "{}.{}.",
                b64(&json!({"alg": alg}).to_string()),
                b64(&payload)
            );
            assert_eq!(
                verify(&unsigned, &jwk, ALL),
                Err(JwsError::Algorithm),
                "{alg}"
            );
        }
    }

    #[test]
    fn hmac_keyed_with_the_public_key_is_an_algorithm_error() {
        let key = ClientKey::generate(JwsAlgorithm::Rs256);
        let jwk = public(&key);
        let pair =
            RsaKeyPair::from_jwk(&Jwk::from_map(header(key.private_jwk())).unwrap()).unwrap();
        let secrets: Vec<Vec<u8>> = vec![
            pair.to_pem_public_key(),
            pair.to_der_public_key(),
            pair.to_raw_public_key(),
            key.public_jwk().to_string().into_bytes(),
            jwk.to_value().to_string().into_bytes(),
        ];
        for (i, secret) in secrets.iter().enumerate() {
            for alg in ["HS256", "HS384", "HS512"] {
                let jws = hmac_jws(
                    &json!({"alg": alg}).to_string(),
                    &claims().to_string(),
                    secret,
                );
                assert_eq!(
                    verify(&jws, &jwk, ALL),
                    Err(JwsError::Algorithm),
                    "{alg}, secret {i}"
                );
            }
        }
    }

    #[test]
    fn a_key_pinned_to_ps256_refuses_rs256() {
        let rsa = ClientKey::generate(JwsAlgorithm::Rs256);
        let mut pinned = rsa.public_jwk();
        pinned["alg"] = json!("PS256");
        let pinned = PublicKeyJwk::parse("jwk", &pinned).unwrap();
        let jws = rsa.sign(Map::new(), &claims());
        assert_eq!(verify(&jws, &pinned, ALL), Err(JwsError::Algorithm));
        assert!(verify(&jws, &public(&rsa), ALL).is_ok());

        let pss = ClientKey::generate(JwsAlgorithm::Ps256);
        let mut pinned = pss.public_jwk();
        pinned["alg"] = json!("PS256");
        let pinned = PublicKeyJwk::parse("jwk", &pinned).unwrap();
        assert!(verify(&pss.sign(Map::new(), &claims()), &pinned, ALL).is_ok());
    }

    #[test]
    fn an_algorithm_of_another_key_type_is_an_algorithm_error() {
        let rsa = public(&ClientKey::generate(JwsAlgorithm::Rs256));
        let ec = ClientKey::generate(JwsAlgorithm::Es256);
        let jws = ec.sign(Map::new(), &claims());
        assert_eq!(verify(&jws, &rsa, ALL), Err(JwsError::Algorithm));
        let ed = ClientKey::generate(JwsAlgorithm::EdDsa);
        let jws = ed.sign(Map::new(), &claims());
        assert_eq!(verify(&jws, &public(&ec), ALL), Err(JwsError::Algorithm));
    }

    #[test]
    fn an_algorithm_outside_the_callers_list_is_an_algorithm_error() {
        let key = ClientKey::generate(JwsAlgorithm::Es256);
        let jwk = public(&key);
        let jws = key.sign(Map::new(), &claims());
        let others = [
            JwsAlgorithm::Rs256,
            JwsAlgorithm::Ps256,
            JwsAlgorithm::EdDsa,
        ];
        assert_eq!(verify(&jws, &jwk, &others), Err(JwsError::Algorithm));
        assert_eq!(verify(&jws, &jwk, &[]), Err(JwsError::Algorithm));
        assert!(verify(&jws, &jwk, &[JwsAlgorithm::Es256]).is_ok());
    }

    #[test]
    fn an_alg_that_is_missing_misspelt_or_not_a_string_is_an_algorithm_error() {
        let key = ClientKey::generate(JwsAlgorithm::Es256);
        let jwk = public(&key);
        for alg in [
            json!("es256"),
            json!("ES384"),
            json!(["ES256"]),
            json!(null),
            json!(1),
        ] {
            let jws = key.sign(header(json!({"alg": alg})), &claims());
            assert_eq!(verify(&jws, &jwk, ALL), Err(JwsError::Algorithm), "{alg}");
        }
        // Without `alg` at all: the signature is right, the header is not.
        let payload = b64(&claims().to_string());
        let signed = key.sign(Map::new(), &claims());
        let signature = signed.rsplit('.').next().unwrap();
        let jws = format!("{}.{payload}.{signature}", b64(r#"{"typ":"jwt"}"#));
        assert_eq!(verify(&jws, &jwk, ALL), Err(JwsError::Algorithm));
    }

    #[test]
    fn headers_pointing_at_other_keys_or_extensions_are_malformed() {
        let key = ClientKey::generate(JwsAlgorithm::EdDsa);
        let jwk = public(&key);
        let members = [
            ("jku", json!("https://attacker.example/jwks")),
            ("x5u", json!("https://attacker.example/cert")),
            ("x5c", json!(["MIIB"])),
            ("x5t", json!("AAAA")),
            ("x5t#S256", json!("AAAA")),
            ("crit", json!(["exp"])),
            ("b64", json!(false)),
        ];
        for (name, value) in members {
            let jws = key.sign(header(json!({ name: value })), &claims());
            assert_eq!(verify(&jws, &jwk, ALL), Err(JwsError::Malformed), "{name}");
        }
    }

    #[test]
    fn shapes_other_than_a_compact_jws_of_objects_are_malformed() {
        let key = ClientKey::generate(JwsAlgorithm::Es256);
        let jwk = public(&key);
        let jws = key.sign(Map::new(), &claims());
        let (head, rest) = jws.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let non_object_payload = key.sign(Map::new(), &json!(["not", "an", "object"]));
        let string_payload = key.sign(Map::new(), &json!("claims"));
        let cases = [
            ("two parts", format!("{head}.{payload}")),
            ("four parts", format!("{jws}.{signature}")),
            ("empty header", format!(".{payload}.{signature}")),
            ("padded header", format!("{head}=.{payload}.{signature}")),
            (
                "bad base64 payload",
                format!("{head}.{payload}*.{signature}"),
            ),
            (
                "bad base64 signature",
                format!("{head}.{payload}.{signature}!"),
            ),
            (
                "header not JSON",
                format!("{}.{payload}.{signature}", b64("alg=ES256")),
            ),
            (
                "header an array",
                format!("{}.{payload}.{signature}", b64(r#"["ES256"]"#)),
            ),
            ("payload an array", non_object_payload),
            ("payload a string", string_payload),
            ("empty", String::new()),
        ];
        for (case, jws) in cases {
            assert_eq!(verify(&jws, &jwk, ALL), Err(JwsError::Malformed), "{case}");
        }
    }

    #[test]
    fn a_jws_over_the_size_bound_is_malformed_though_well_signed() {
        let key = ClientKey::generate(JwsAlgorithm::EdDsa);
        let jwk = public(&key);
        let padding = "a".repeat(MAX_CLIENT_JWS_LEN);
        let big = key.sign(Map::new(), &json!({"jti": "j-1", "pad": padding}));
        assert!(big.len() > MAX_CLIENT_JWS_LEN);
        assert_eq!(verify(&big, &jwk, ALL), Err(JwsError::Malformed));
        let fits = key.sign(
            Map::new(),
            &json!({"jti": "j-1", "pad": "a".repeat(8 * 1024)}),
        );
        assert!(verify(&fits, &jwk, ALL).is_ok());
    }

    #[test]
    fn an_ec_point_off_the_curve_is_an_unusable_key() {
        let off_curve = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]),
            "y": URL_SAFE_NO_PAD.encode([2u8; 32]),
        });
        let jwk = PublicKeyJwk::parse("jwk", &off_curve).unwrap();
        assert!(matches!(
            JoseJwsVerifier.check_key(&jwk),
            Err(JwsError::Key(_))
        ));
        let jws = ClientKey::generate(JwsAlgorithm::Es256).sign(Map::new(), &claims());
        assert!(matches!(verify(&jws, &jwk, ALL), Err(JwsError::Key(_))));
    }

    #[test]
    fn generated_keys_pass_the_key_check() {
        for alg in JwsAlgorithm::ALL {
            assert_eq!(
                JoseJwsVerifier.check_key(&public(&ClientKey::generate(alg))),
                Ok(())
            );
        }
    }

    #[test]
    fn client_keys_publish_only_public_members_under_their_thumbprint() {
        for alg in JwsAlgorithm::ALL {
            let key = ClientKey::generate(alg);
            let jwk = public(&key);
            assert_eq!(key.kid(), jwk.thumbprint(), "{alg}");
            assert_eq!(jwk.kid(), key.thumbprint(), "{alg}");
            assert!(!key.public_jwk().as_object().unwrap().contains_key("d"));
            assert!(key.private_jwk().as_object().unwrap().contains_key("d"));
            // A private JWK is what a hostile DPoP proof would carry.
            assert!(PublicKeyJwk::parse("jwk", &key.private_jwk()).is_err());
            let renamed = key.with_kid("client-key-1");
            assert_eq!(renamed.public_jwk()["kid"], "client-key-1");
            assert_eq!(renamed.private_jwk()["kid"], "client-key-1");
        }
    }
}
