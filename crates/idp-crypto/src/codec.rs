//! One signing key: parsing, thumbprint, signing and the per-key checks of a
//! token ([`LoadedKey`]), used by the key ring ([`crate::JoseKeyRing`]).
//!
//! The compact serialization is written and parsed here rather than by
//! josekit's JWT helpers, so every check on the way in is visible in one place
//! (`JoseKeyRing::decode` and [`LoadedKey::check_header`]); josekit (OpenSSL)
//! only computes and checks the signature bytes, except ES256 signatures,
//! which *ring* computes behind josekit's signer interface (`es256_signer`).

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::keys::SigningKeyRecord;
use idp_domain::ports::TokenDecodeError;
use idp_domain::token::AccessTokenClaims;
use josekit::JoseError;
use josekit::jwk::Jwk;
use josekit::jwk::KeyPair;
use josekit::jwk::alg::ed::EdCurve;
use josekit::jws::{ES256, EdDSA, JwsSigner, JwsVerifier, RS256};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::es256_signer::Es256Signer;
use crate::{CryptoError, SigningAlgorithm};

/// Longest token [`JoseKeyRing::decode`](crate::JoseKeyRing) looks at (8 KiB); anything longer
/// is refused as malformed before any decoding. Claims of up to
/// [`idp_domain::token::MAX_CLAIMS_BYTES`], all the token service signs, fit
/// in it with any supported key.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The `typ` of every access token (RFC 9068 section 2.1).
const TOKEN_TYP: &str = "at+jwt";

/// RSA modulus size of generated keys.
const RSA_BITS: u32 = 2048;

/// The parsed private key: what signing, verifying and publishing need.
struct KeyMaterial {
    signer: Box<dyn JwsSigner>,
    verifier: Box<dyn JwsVerifier>,
    /// Exact length of a signature in bytes (RSA: modulus size; ES256 and
    /// Ed25519: 64).
    signature_len: usize,
    /// The public JWK members that RFC 7638 requires, `kty` included, sorted
    /// by name. Nothing private is ever put here.
    public_members: Vec<(&'static str, String)>,
    /// The key re-encoded as PKCS#8 PEM.
    pkcs8_pem: Zeroizing<String>,
}

impl KeyMaterial {
    /// Parses a private key (PKCS#8 PEM, or the traditional PKCS#1 / SEC1 PEM)
    /// for `algorithm`, refusing keys of another type or curve and RSA keys
    /// under 2048 bits.
    fn parse(algorithm: SigningAlgorithm, pem: &str) -> Result<Self, CryptoError> {
        let invalid = |e: JoseError| CryptoError::InvalidKey {
            algorithm,
            reason: e.to_string(),
        };
        let (pair, signer, signature_len): (Box<dyn KeyPair>, Box<dyn JwsSigner>, usize) =
            match algorithm {
                SigningAlgorithm::RS256 => {
                    let pair = RS256.key_pair_from_pem(pem).map_err(invalid)?;
                    let len =
                        usize::try_from(pair.key_len()).map_err(|e| CryptoError::InvalidKey {
                            algorithm,
                            reason: e.to_string(),
                        })?;
                    let signer = RS256.signer_from_pem(pem).map_err(invalid)?;
                    (Box::new(pair), Box::new(signer), len)
                }
                SigningAlgorithm::ES256 => {
                    let pair = ES256.key_pair_from_pem(pem).map_err(invalid)?;
                    let signer = Es256Signer::from_key_pair_jwk(&pair.to_jwk_key_pair())
                        .map_err(|reason| CryptoError::InvalidKey { algorithm, reason })?;
                    (Box::new(pair), Box::new(signer), 64)
                }
                SigningAlgorithm::EdDSA => {
                    let pair = EdDSA.key_pair_from_pem(pem).map_err(invalid)?;
                    if pair.curve() != EdCurve::Ed25519 {
                        return Err(CryptoError::InvalidKey {
                            algorithm,
                            reason: format!("curve {} instead of Ed25519", pair.curve().name()),
                        });
                    }
                    let signer = EdDSA.signer_from_pem(pem).map_err(invalid)?;
                    (Box::new(pair), Box::new(signer), 64)
                }
            };
        let public = pair.to_jwk_public_key();
        let verifier: Box<dyn JwsVerifier> = match algorithm {
            SigningAlgorithm::RS256 => Box::new(RS256.verifier_from_jwk(&public).map_err(invalid)?),
            SigningAlgorithm::ES256 => Box::new(ES256.verifier_from_jwk(&public).map_err(invalid)?),
            SigningAlgorithm::EdDSA => Box::new(EdDSA.verifier_from_jwk(&public).map_err(invalid)?),
        };
        let public_members = public_members(algorithm, &public)?;
        let pkcs8_pem =
            Zeroizing::new(String::from_utf8(pair.to_pem_private_key()).map_err(|e| {
                CryptoError::InvalidKey {
                    algorithm,
                    reason: e.utf8_error().to_string(),
                }
            })?);
        Ok(Self {
            signer,
            verifier,
            signature_len,
            public_members,
            pkcs8_pem,
        })
    }

    /// The RFC 7638 JWK thumbprint: base64url(SHA-256 of the required public
    /// members, sorted, without whitespace).
    fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical_json(&self.public_members)))
    }
}

/// The required public members of the key (RFC 7638 section 3.2), sorted by
/// name: an allowlist, so no private member can reach the JWKS.
fn public_members(
    algorithm: SigningAlgorithm,
    public: &Jwk,
) -> Result<Vec<(&'static str, String)>, CryptoError> {
    let (kty, names): (&str, &[&'static str]) = match algorithm {
        SigningAlgorithm::RS256 => ("RSA", &["e", "n"]),
        SigningAlgorithm::ES256 => ("EC", &["crv", "x", "y"]),
        SigningAlgorithm::EdDSA => ("OKP", &["crv", "x"]),
    };
    let mut members = vec![("kty", kty.to_owned())];
    for &name in names {
        let Some(Value::String(value)) = public.parameter(name) else {
            return Err(CryptoError::InvalidKey {
                algorithm,
                reason: format!("public key lacks {name}"),
            });
        };
        members.push((name, value.clone()));
    }
    members.sort_by_key(|(name, _)| *name);
    Ok(members)
}

/// `{"a":"..","b":".."}` in the given order, without whitespace. Written by
/// hand because serde_json's map order depends on a cargo feature.
fn canonical_json(members: &[(&str, String)]) -> String {
    let body = members
        .iter()
        .map(|(name, value)| format!("{}:{}", Value::from(*name), Value::from(value.as_str())))
        .collect::<Vec<_>>()
        .join(",");
    format!("{{{body}}}")
}

/// A private key in PKCS#8 PEM with its `kid` (the RFC 7638 thumbprint):
/// what [`generate_signing_key`] and [`load_pem_file`] answer. Debug never
/// shows the PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct PemSigningKey {
    /// The RFC 7638 JWK thumbprint (SHA-256, base64url, 43 characters).
    pub kid: String,
    /// The algorithm the key signs with.
    pub algorithm: SigningAlgorithm,
    /// The private key as PKCS#8 PEM.
    pub pem: String,
}

impl fmt::Debug for PemSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemSigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl PemSigningKey {
    /// Parses a private key for `algorithm` (PKCS#8 PEM, or the traditional
    /// PKCS#1 / SEC1 PEM), refusing keys of another type or curve and RSA
    /// keys under 2048 bits. The answer holds the key re-encoded as PKCS#8
    /// and, as `kid`, its thumbprint (derived from the public key).
    pub fn parse(algorithm: SigningAlgorithm, pem: &str) -> Result<Self, CryptoError> {
        let material = KeyMaterial::parse(algorithm, pem)?;
        Ok(Self {
            kid: material.thumbprint(),
            algorithm,
            pem: material.pkcs8_pem.to_string(),
        })
    }

    /// The key as a stored record, its private key as plain PEM, activating
    /// at `activates_at` (for one fixed key, the UNIX epoch: always active).
    pub fn record(&self, activates_at: DateTime<Utc>) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: self.kid.clone(),
            algorithm: self.algorithm.to_string(),
            private_key: self.pem.clone(),
            succeeds: None,
            created_at: activates_at,
            activates_at,
            revoked_at: None,
            activation_recorded: true,
        }
    }
}

/// A fresh signing key for `algorithm`: RSA 2048, P-256 or Ed25519, as PKCS#8
/// PEM. Its `kid` is the key's RFC 7638 JWK thumbprint (SHA-256, base64url,
/// 43 characters), so the same key always gets the same id.
pub fn generate_signing_key(algorithm: SigningAlgorithm) -> Result<PemSigningKey, CryptoError> {
    let op = |e: JoseError| CryptoError::Operation(e.to_string());
    let pem = Zeroizing::new(match algorithm {
        SigningAlgorithm::RS256 => RS256
            .generate_key_pair(RSA_BITS)
            .map_err(op)?
            .to_pem_private_key(),
        SigningAlgorithm::ES256 => ES256.generate_key_pair().map_err(op)?.to_pem_private_key(),
        SigningAlgorithm::EdDSA => EdDSA
            .generate_key_pair(EdCurve::Ed25519)
            .map_err(op)?
            .to_pem_private_key(),
    });
    let pem = std::str::from_utf8(&pem).map_err(|e| CryptoError::Operation(e.to_string()))?;
    PemSigningKey::parse(algorithm, pem)
}

/// Reads a private key for `algorithm` from a PEM file (PKCS#8, or the
/// traditional PKCS#1 / SEC1 forms). The answer holds the key re-encoded as
/// PKCS#8 and, as `kid`, its RFC 7638 thumbprint (derived from the public key).
pub fn load_pem_file(
    path: impl AsRef<Path>,
    algorithm: SigningAlgorithm,
) -> Result<PemSigningKey, CryptoError> {
    let path = path.as_ref();
    let pem =
        Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| CryptoError::KeyFile {
                path: path.to_owned(),
                source,
            })?,
        );
    PemSigningKey::parse(algorithm, &pem)
}

/// One parsed key of the ring: signer, verifier, encoded access-token header
/// and public JWK, all ready. Its `alg` is pinned: a token naming this key
/// verifies only with this key's algorithm.
pub(crate) struct LoadedKey {
    pub(crate) kid: String,
    pub(crate) algorithm: SigningAlgorithm,
    /// base64url of `{"alg":..,"typ":"at+jwt","kid":..}`.
    access_header: String,
    signer: Box<dyn JwsSigner>,
    verifier: Box<dyn JwsVerifier>,
    /// Exact length of a signature in bytes.
    signature_len: usize,
    /// `{kty.., kid, use: "sig", alg}`: public members only.
    jwk: Value,
}

impl fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl LoadedKey {
    /// Parses `pem` for `algorithm`; `kid` is used as it is (never empty).
    pub(crate) fn new(
        kid: &str,
        algorithm: SigningAlgorithm,
        pem: &str,
    ) -> Result<Self, CryptoError> {
        if kid.is_empty() {
            return Err(CryptoError::EmptyKeyId);
        }
        let material = KeyMaterial::parse(algorithm, pem)?;
        let mut jwk = Map::new();
        for (name, value) in &material.public_members {
            jwk.insert((*name).to_owned(), Value::from(value.as_str()));
        }
        jwk.insert("kid".to_owned(), Value::from(kid));
        jwk.insert("use".to_owned(), Value::from("sig"));
        jwk.insert("alg".to_owned(), Value::from(algorithm.as_str()));
        Ok(Self {
            kid: kid.to_owned(),
            algorithm,
            access_header: URL_SAFE_NO_PAD.encode(header_json(algorithm, TOKEN_TYP, kid)),
            signer: material.signer,
            verifier: material.verifier,
            signature_len: material.signature_len,
            jwk: Value::Object(jwk),
        })
    }

    /// The public JWK.
    pub(crate) fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// `header_b64.payload.signature`.
    fn sign_with_header(&self, header_b64: &str, payload: &[u8]) -> Result<String, StoreError> {
        let mut token = String::with_capacity(
            header_b64.len() + payload.len() * 4 / 3 + self.signature_len * 4 / 3 + 8,
        );
        token.push_str(header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = self
            .signer
            .sign(token.as_bytes())
            .map_err(|e| anyhow::anyhow!("signing failed: {e}"))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    /// An access token (`typ` `at+jwt`) over `claims`.
    pub(crate) fn sign_access_token(
        &self,
        claims: &AccessTokenClaims,
    ) -> Result<String, StoreError> {
        let payload = serde_json::to_vec(claims).map_err(anyhow::Error::new)?;
        let token = self.sign_with_header(&self.access_header, &payload)?;
        if token.len() > MAX_TOKEN_LEN {
            // Never hand out a token that decode would refuse.
            return Err(anyhow::anyhow!(
                "access token of {} bytes exceeds {MAX_TOKEN_LEN}",
                token.len()
            )
            .into());
        }
        Ok(token)
    }

    /// A JWS with header `{"alg", "typ", "kid"}` over the JSON `claims`.
    pub(crate) fn sign_jwt(&self, typ: &str, claims: &Value) -> Result<String, StoreError> {
        let payload = serde_json::to_vec(claims).map_err(anyhow::Error::new)?;
        let header = URL_SAFE_NO_PAD.encode(header_json(self.algorithm, typ, &self.kid));
        self.sign_with_header(&header, &payload)
    }

    /// Refuses any header but ours: this key's `alg` and `kid`, `typ` `at+jwt`
    /// (or `application/at+jwt`, RFC 9068 section 4), and no `crit` or `b64`
    /// (no extension is understood, RFC 7515 section 4.1.11).
    pub(crate) fn check_header(&self, header: &Map<String, Value>) -> Result<(), TokenDecodeError> {
        let is = |name: &str, expected: &str| matches!(header.get(name), Some(Value::String(v)) if v == expected);
        let typ_ok = matches!(
            header.get("typ"),
            Some(Value::String(t)) if t.eq_ignore_ascii_case(TOKEN_TYP)
                || t.eq_ignore_ascii_case("application/at+jwt")
        );
        if is("alg", self.algorithm.as_str())
            && is("kid", &self.kid)
            && typ_ok
            && !header.contains_key("crit")
            && !header.contains_key("b64")
        {
            Ok(())
        } else {
            Err(TokenDecodeError::BadSignature)
        }
    }

    /// Checks `signature` over `signing_input`: exact length, then the
    /// signature itself.
    pub(crate) fn verify(
        &self,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), TokenDecodeError> {
        if signature.len() != self.signature_len {
            return Err(TokenDecodeError::BadSignature);
        }
        self.verifier
            .verify(signing_input, signature)
            .map_err(|_| TokenDecodeError::BadSignature)
    }
}

/// `{"alg":..,"typ":..,"kid":..}`, in that order.
fn header_json(algorithm: SigningAlgorithm, typ: &str, kid: &str) -> String {
    format!(
        r#"{{"alg":{},"typ":{},"kid":{}}}"#,
        Value::from(algorithm.as_str()),
        Value::from(typ),
        Value::from(kid),
    )
}

pub(crate) fn decode_part(part: &str) -> Result<Vec<u8>, TokenDecodeError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenDecodeError::Malformed)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use idp_domain::ports::TokenCodec;
    use idp_domain::token::{Audience, MAX_CLAIMS_BYTES};
    use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
    use josekit::jwk::alg::rsa::RsaKeyPair;
    use josekit::jws::HS256;
    use serde_json::json;

    use super::*;
    use crate::JoseKeyRing;
    use crate::test_support::{TestClock, ttl};

    type StoredSigningKey = PemSigningKey;

    /// A ring of one fixed key, with that key's signer at hand to forge tokens.
    struct Codec {
        ring: JoseKeyRing,
        signer: Box<dyn JwsSigner>,
        algorithm: SigningAlgorithm,
        kid: String,
    }

    impl Codec {
        fn new(key: &PemSigningKey) -> Result<Self, CryptoError> {
            let ring = JoseKeyRing::from_key(key, TestClock::at(0), ttl())?;
            let signer: Box<dyn JwsSigner> = match key.algorithm {
                SigningAlgorithm::RS256 => Box::new(RS256.signer_from_pem(&key.pem).unwrap()),
                SigningAlgorithm::ES256 => Box::new(ES256.signer_from_pem(&key.pem).unwrap()),
                SigningAlgorithm::EdDSA => Box::new(EdDSA.signer_from_pem(&key.pem).unwrap()),
            };
            Ok(Self {
                ring,
                signer,
                algorithm: key.algorithm,
                kid: key.kid.clone(),
            })
        }

        fn algorithm(&self) -> &str {
            self.algorithm.as_str()
        }

        fn signing_algorithm(&self) -> SigningAlgorithm {
            self.algorithm
        }

        fn key_id(&self) -> &str {
            &self.kid
        }

        fn sign(&self, claims: &AccessTokenClaims) -> Result<String, StoreError> {
            self.ring.sign(claims)
        }

        fn decode(&self, token: &str) -> Result<AccessTokenClaims, TokenDecodeError> {
            self.ring.decode(token)
        }

        fn jwks(&self) -> Value {
            self.ring.jwks()
        }
    }

    /// Generating RSA keys is slow in debug builds: one per algorithm for the
    /// whole test binary.
    fn key(algorithm: SigningAlgorithm) -> &'static StoredSigningKey {
        static KEYS: OnceLock<Vec<StoredSigningKey>> = OnceLock::new();
        let keys = KEYS.get_or_init(|| {
            SigningAlgorithm::ALL
                .iter()
                .map(|a| generate_signing_key(*a).unwrap())
                .collect()
        });
        &keys[SigningAlgorithm::ALL
            .iter()
            .position(|a| *a == algorithm)
            .unwrap()]
    }

    fn codec(algorithm: SigningAlgorithm) -> Codec {
        Codec::new(key(algorithm)).unwrap()
    }

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "http://127.0.0.1:8080".into(),
            sub: "0b7c2a3e-7d2c-4c55-9d0e-6c1f2b3a4d5e".into(),
            aud: idp_domain::token::Audience::One("http://127.0.0.1:8080".into()),
            client_id: "0b7c2a3e-7d2c-4c55-9d0e-6c1f2b3a4d5e".into(),
            scope: "agents:read agents:write".into(),
            jti: "7f0c0d8e-1111-4c55-9d0e-6c1f2b3a4d5e".into(),
            iat: 1_790_000_000,
            nbf: 1_790_000_000,
            exp: 1_790_003_600,
            owner: "acme".into(),
            agent_type: "screener".into(),
            deployment_env: "production".into(),
            cid: "9a9a9a9a-1111-4c55-9d0e-6c1f2b3a4d5e".into(),
            cnf: None,
            act: None,
            dlg: Vec::new(),
        }
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with any header and payload, signed with `signer` (by default
    /// the codec's own key), to build every malicious variant.
    fn forge(signer: &dyn JwsSigner, header: &Value, payload: &Value) -> String {
        let input = format!("{}.{}", b64(header.to_string()), b64(payload.to_string()));
        let signature = signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(signature))
    }

    fn our_header(c: &Codec) -> Value {
        json!({"alg": c.algorithm(), "typ": "at+jwt", "kid": c.key_id()})
    }

    fn payload() -> Value {
        serde_json::to_value(claims()).unwrap()
    }

    fn each_codec() -> impl Iterator<Item = Codec> {
        SigningAlgorithm::ALL.into_iter().map(codec)
    }

    #[test]
    fn sign_then_decode_round_trips_for_every_algorithm() {
        for c in each_codec() {
            let token = c.sign(&claims()).unwrap();
            assert_eq!(token.split('.').count(), 3);
            assert_eq!(c.decode(&token).unwrap(), claims(), "{}", c.algorithm());
        }
    }

    #[test]
    fn header_is_alg_typ_kid() {
        for c in each_codec() {
            let token = c.sign(&claims()).unwrap();
            let header = token.split('.').next().unwrap();
            let header: Value = serde_json::from_slice(&decode_part(header).unwrap()).unwrap();
            assert_eq!(header, our_header(&c));
            assert_eq!(
                header.as_object().unwrap().keys().count(),
                3,
                "nothing else in the header"
            );
        }
    }

    #[test]
    fn tokens_verify_with_the_published_jwk() {
        // Interop: a third party holding only the JWKS can verify our tokens.
        for c in each_codec() {
            let token = c.sign(&claims()).unwrap();
            let jwk = Jwk::from_map(c.jwks()["keys"][0].as_object().unwrap().clone()).unwrap();
            let verifier: Box<dyn JwsVerifier> = match c.signing_algorithm() {
                SigningAlgorithm::RS256 => Box::new(RS256.verifier_from_jwk(&jwk).unwrap()),
                SigningAlgorithm::ES256 => Box::new(ES256.verifier_from_jwk(&jwk).unwrap()),
                SigningAlgorithm::EdDSA => Box::new(EdDSA.verifier_from_jwk(&jwk).unwrap()),
            };
            let (payload, header) =
                josekit::jwt::decode_with_verifier(&token, verifier.as_ref()).unwrap();
            assert_eq!(header.token_type(), Some("at+jwt"));
            assert_eq!(payload.claim("sub"), Some(&Value::from(claims().sub)));
        }
    }

    #[test]
    fn jwks_has_public_members_only() {
        for c in each_codec() {
            let jwks = c.jwks();
            let keys = jwks["keys"].as_array().unwrap();
            assert_eq!(keys.len(), 1);
            let jwk = keys[0].as_object().unwrap();
            let mut names: Vec<&str> = jwk.keys().map(String::as_str).collect();
            names.sort_unstable();
            let expected: &[&str] = match c.signing_algorithm() {
                SigningAlgorithm::RS256 => &["alg", "e", "kid", "kty", "n", "use"],
                SigningAlgorithm::ES256 => &["alg", "crv", "kid", "kty", "use", "x", "y"],
                SigningAlgorithm::EdDSA => &["alg", "crv", "kid", "kty", "use", "x"],
            };
            assert_eq!(names, expected);
            for private in ["d", "p", "q", "dp", "dq", "qi", "k", "oth"] {
                assert!(!jwk.contains_key(private), "{private} leaked");
            }
            assert_eq!(jwk["use"], "sig");
            assert_eq!(jwk["alg"], c.algorithm());
            assert_eq!(jwk["kid"], c.key_id());
            let kty = match c.signing_algorithm() {
                SigningAlgorithm::RS256 => "RSA",
                SigningAlgorithm::ES256 => "EC",
                SigningAlgorithm::EdDSA => "OKP",
            };
            assert_eq!(jwk["kty"], kty);
        }
        assert_eq!(
            codec(SigningAlgorithm::ES256).jwks()["keys"][0]["crv"],
            "P-256"
        );
        assert_eq!(
            codec(SigningAlgorithm::EdDSA).jwks()["keys"][0]["crv"],
            "Ed25519"
        );
    }

    #[test]
    fn generated_kid_is_the_rfc7638_thumbprint() {
        for alg in SigningAlgorithm::ALL {
            let stored = key(alg);
            assert_eq!(stored.algorithm, alg);
            assert!(stored.pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            let material = KeyMaterial::parse(alg, &stored.pem).unwrap();
            assert_eq!(stored.kid, material.thumbprint());
            assert_eq!(stored.kid.len(), 43);
        }
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let members = vec![
            ("e", "AQAB".to_owned()),
            ("kty", "RSA".to_owned()),
            ("n", n.to_owned()),
        ];
        assert_eq!(
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical_json(&members))),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn two_generated_keys_differ() {
        let a = generate_signing_key(SigningAlgorithm::EdDSA).unwrap();
        let b = generate_signing_key(SigningAlgorithm::EdDSA).unwrap();
        assert_ne!(a.kid, b.kid);
        assert_ne!(a.pem, b.pem);
    }

    #[test]
    fn forged_with_our_key_and_header_is_accepted() {
        // Control for the refusals below: `forge` itself makes valid tokens.
        for c in each_codec() {
            let token = forge(c.signer.as_ref(), &our_header(&c), &payload());
            assert_eq!(c.decode(&token).unwrap(), claims());
        }
    }

    #[test]
    fn refuses_alg_none() {
        for c in each_codec() {
            let header = json!({"alg": "none", "typ": "at+jwt", "kid": c.key_id()});
            let unsigned = format!(
                "{}.{}.",
                b64(header.to_string()),
                b64(payload().to_string())
            );
            assert_eq!(c.decode(&unsigned), Err(TokenDecodeError::BadSignature));
            let with_sig = format!("{unsigned}{}", b64("x"));
            assert_eq!(c.decode(&with_sig), Err(TokenDecodeError::BadSignature));
        }
    }

    #[test]
    fn refuses_hs256_with_the_public_key_as_secret() {
        for c in each_codec() {
            let jwk = c.jwks()["keys"][0].to_string();
            let stored = &key(c.signing_algorithm()).pem;
            let public_pem = match c.signing_algorithm() {
                SigningAlgorithm::RS256 => {
                    RS256.key_pair_from_pem(stored).unwrap().to_pem_public_key()
                }
                SigningAlgorithm::ES256 => {
                    ES256.key_pair_from_pem(stored).unwrap().to_pem_public_key()
                }
                SigningAlgorithm::EdDSA => {
                    EdDSA.key_pair_from_pem(stored).unwrap().to_pem_public_key()
                }
            };
            for secret in [public_pem, jwk.into_bytes()] {
                let hmac = HS256.signer_from_bytes(&secret).unwrap();
                let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": c.key_id()});
                let token = forge(&hmac, &header, &payload());
                assert_eq!(c.decode(&token), Err(TokenDecodeError::BadSignature));
                // Even claiming our alg, an HMAC is not our signature.
                let token = forge(&hmac, &our_header(&c), &payload());
                assert_eq!(c.decode(&token), Err(TokenDecodeError::BadSignature));
            }
        }
    }

    #[test]
    fn refuses_another_algorithm_in_the_header() {
        for c in each_codec() {
            for other in SigningAlgorithm::ALL
                .into_iter()
                .filter(|a| *a != c.signing_algorithm())
            {
                // Properly signed by the other algorithm's key, with our kid.
                let o = codec(other);
                let header = json!({"alg": other.as_str(), "typ": "at+jwt", "kid": c.key_id()});
                let token = forge(o.signer.as_ref(), &header, &payload());
                assert_eq!(c.decode(&token), Err(TokenDecodeError::BadSignature));
            }
            for alg in ["RS384", "PS256", "ES384", "Ed25519", "rs256", ""] {
                let header = json!({"alg": alg, "typ": "at+jwt", "kid": c.key_id()});
                let token = forge(c.signer.as_ref(), &header, &payload());
                assert_eq!(
                    c.decode(&token),
                    Err(TokenDecodeError::BadSignature),
                    "{alg}"
                );
            }
            let header = json!({"typ": "at+jwt", "kid": c.key_id()});
            let token = forge(c.signer.as_ref(), &header, &payload());
            assert_eq!(c.decode(&token), Err(TokenDecodeError::BadSignature));
        }
    }

    #[test]
    fn refuses_another_kid() {
        for c in each_codec() {
            for kid in [json!("other"), json!(""), json!(null), json!(7)] {
                let header = json!({"alg": c.algorithm(), "typ": "at+jwt", "kid": kid});
                let token = forge(c.signer.as_ref(), &header, &payload());
                assert_eq!(
                    c.decode(&token),
                    Err(TokenDecodeError::BadSignature),
                    "{kid}"
                );
            }
            let header = json!({"alg": c.algorithm(), "typ": "at+jwt"});
            let token = forge(c.signer.as_ref(), &header, &payload());
            assert_eq!(c.decode(&token), Err(TokenDecodeError::BadSignature));
        }
    }

    #[test]
    fn refuses_other_typ() {
        for c in each_codec() {
            for typ in [
                json!("JWT"),
                json!("jwt"),
                json!("at+jwe"),
                json!(null),
                json!(1),
            ] {
                let header = json!({"alg": c.algorithm(), "typ": typ, "kid": c.key_id()});
                let token = forge(c.signer.as_ref(), &header, &payload());
                assert_eq!(
                    c.decode(&token),
                    Err(TokenDecodeError::BadSignature),
                    "{typ}"
                );
            }
            let header = json!({"alg": c.algorithm(), "kid": c.key_id()});
            let token = forge(c.signer.as_ref(), &header, &payload());
            assert_eq!(c.decode(&token), Err(TokenDecodeError::BadSignature));
            // RFC 9068 section 4 allows the full media type.
            let header =
                json!({"alg": c.algorithm(), "typ": "application/at+jwt", "kid": c.key_id()});
            let token = forge(c.signer.as_ref(), &header, &payload());
            assert_eq!(c.decode(&token).unwrap(), claims());
        }
    }

    #[test]
    fn refuses_crit_and_b64_headers() {
        let c = codec(SigningAlgorithm::EdDSA);
        for extra in [
            json!({"crit": ["exp"], "exp": 1}),
            json!({"b64": false, "crit": ["b64"]}),
            json!({"b64": true}),
        ] {
            let mut header = our_header(&c);
            header
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let token = forge(c.signer.as_ref(), &header, &payload());
            assert_eq!(
                c.decode(&token),
                Err(TokenDecodeError::BadSignature),
                "{extra}"
            );
        }
    }

    #[test]
    fn refuses_a_token_of_another_key_with_our_kid() {
        for alg in SigningAlgorithm::ALL {
            let ours = codec(alg);
            let mut theirs = generate_signing_key(alg).unwrap();
            theirs.kid = ours.key_id().to_owned();
            let theirs = Codec::new(&theirs).unwrap();
            let token = theirs.sign(&claims()).unwrap();
            assert_eq!(
                ours.decode(&token),
                Err(TokenDecodeError::BadSignature),
                "{alg}"
            );
        }
    }

    #[test]
    fn refuses_a_tampered_payload() {
        for c in each_codec() {
            let token = c.sign(&claims()).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            let mut tampered = claims();
            tampered.scope = "agents:read agents:write audit:read tokens:introspect".into();
            let forged = format!(
                "{}.{}.{}",
                parts[0],
                b64(serde_json::to_vec(&tampered).unwrap()),
                parts[2]
            );
            assert_eq!(c.decode(&forged), Err(TokenDecodeError::BadSignature));
        }
    }

    #[test]
    fn refuses_a_tampered_signature() {
        for c in each_codec() {
            let token = c.sign(&claims()).unwrap();
            let (input, signature) = token.rsplit_once('.').unwrap();
            let mut signature = decode_part(signature).unwrap();
            signature[10] ^= 1;
            assert_eq!(
                c.decode(&format!("{input}.{}", b64(&signature))),
                Err(TokenDecodeError::BadSignature)
            );
            signature.push(0);
            assert_eq!(
                c.decode(&format!("{input}.{}", b64(&signature))),
                Err(TokenDecodeError::BadSignature)
            );
            assert_eq!(
                c.decode(&format!("{input}.")),
                Err(TokenDecodeError::BadSignature)
            );
        }
    }

    #[test]
    fn refuses_extra_or_missing_parts() {
        for c in each_codec() {
            let token = c.sign(&claims()).unwrap();
            let (input, _) = token.rsplit_once('.').unwrap();
            for bad in [
                format!("{token}."),
                format!("{token}.{}", b64("x")),
                format!("{token}.{}.{}", b64("x"), b64("y")),
                input.to_owned(),
                token.split('.').next().unwrap().to_owned(),
                String::new(),
                "..".to_owned(),
                "...".to_owned(),
            ] {
                assert_eq!(c.decode(&bad), Err(TokenDecodeError::Malformed), "{bad}");
            }
        }
    }

    #[test]
    fn refuses_oversized_input_before_anything_else() {
        let c = codec(SigningAlgorithm::EdDSA);
        let mut big = payload();
        big["padding"] = Value::from("x".repeat(MAX_TOKEN_LEN));
        let token = forge(c.signer.as_ref(), &our_header(&c), &big);
        assert!(token.len() > MAX_TOKEN_LEN);
        assert_eq!(c.decode(&token), Err(TokenDecodeError::Malformed));
        assert_eq!(
            c.decode(&"a".repeat(1 << 20)),
            Err(TokenDecodeError::Malformed)
        );
        // Just under the limit an unknown claim is fine.
        let mut fits = payload();
        fits["padding"] = Value::from("x".repeat(4000));
        let token = forge(c.signer.as_ref(), &our_header(&c), &fits);
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert_eq!(c.decode(&token).unwrap(), claims());
    }

    #[test]
    fn claims_as_long_as_the_domain_allows_sign_within_the_limit() {
        for c in each_codec() {
            let mut longest = claims();
            longest.aud = Audience::One(String::new());
            let room = MAX_CLAIMS_BYTES - longest.json_len();
            longest.aud = Audience::One("a".repeat(room));
            assert_eq!(longest.json_len(), MAX_CLAIMS_BYTES);

            let token = c.sign(&longest).unwrap();

            assert!(token.len() <= MAX_TOKEN_LEN, "{}", c.algorithm());
            assert_eq!(c.decode(&token).unwrap(), longest, "{}", c.algorithm());
        }
    }

    #[test]
    fn refuses_bad_base64() {
        for c in each_codec() {
            let token = c.sign(&claims()).unwrap();
            let parts: Vec<&str> = token.split('.').collect();
            let std_alphabet = |s: &str| s.replace('-', "+").replace('_', "/");
            for (i, bad_part) in [
                (0, format!("{}=", parts[0])),
                (0, format!("*{}", parts[0])),
                (1, format!("{} ", parts[1])),
                (1, format!("{}==", parts[1])),
                (2, format!("{}!", parts[2])),
                (2, "A".to_owned()),
            ] {
                let mut p: Vec<String> = parts.iter().map(|s| (*s).to_owned()).collect();
                p[i] = bad_part;
                assert_eq!(
                    c.decode(&p.join(".")),
                    Err(TokenDecodeError::Malformed),
                    "{p:?}"
                );
            }
            // The standard alphabet is not base64url.
            let header_std = std_alphabet(parts[0]);
            let sig_std = std_alphabet(parts[2]);
            if sig_std != parts[2] {
                let t = format!("{}.{}.{}", parts[0], parts[1], sig_std);
                assert_eq!(c.decode(&t), Err(TokenDecodeError::Malformed));
            }
            if header_std != parts[0] {
                let t = format!("{}.{}.{}", header_std, parts[1], parts[2]);
                assert_eq!(c.decode(&t), Err(TokenDecodeError::Malformed));
            }
        }
    }

    #[test]
    fn refuses_headers_that_are_not_json_objects() {
        let c = codec(SigningAlgorithm::ES256);
        for header in ["not json", "[1,2]", "\"alg\"", "null", ""] {
            let input = format!("{}.{}", b64(header), b64(payload().to_string()));
            let sig = c.signer.sign(input.as_bytes()).unwrap();
            let token = format!("{input}.{}", b64(sig));
            assert_eq!(
                c.decode(&token),
                Err(TokenDecodeError::Malformed),
                "{header}"
            );
        }
    }

    #[test]
    fn missing_claims_are_malformed_unknown_ones_ignored() {
        let c = codec(SigningAlgorithm::ES256);
        for missing in [
            "iss",
            "sub",
            "aud",
            "client_id",
            "scope",
            "jti",
            "iat",
            "nbf",
            "exp",
            "owner",
            "agent_type",
            "deployment_env",
            "cid",
        ] {
            let mut p = payload();
            p.as_object_mut().unwrap().remove(missing);
            let token = forge(c.signer.as_ref(), &our_header(&c), &p);
            assert_eq!(
                c.decode(&token),
                Err(TokenDecodeError::Malformed),
                "{missing}"
            );
        }
        for bad in [
            json!({"exp": "soon"}),
            json!({"aud": 42}),
            json!({"aud": [1, 2]}),
            json!({"iat": 1.5}),
            json!({"act": "x"}),
            json!({"act": {"act": {"sub": "a"}}}),
            json!({"dlg": [{"sub": "a", "cid": "b"}]}),
        ] {
            let mut p = payload();
            p.as_object_mut()
                .unwrap()
                .extend(bad.as_object().unwrap().clone());
            let token = forge(c.signer.as_ref(), &our_header(&c), &p);
            assert_eq!(c.decode(&token), Err(TokenDecodeError::Malformed), "{bad}");
        }
        for not_an_object in [json!([1]), json!("claims"), json!(null)] {
            let token = forge(c.signer.as_ref(), &our_header(&c), &not_an_object);
            assert_eq!(c.decode(&token), Err(TokenDecodeError::Malformed));
        }
        let mut p = payload();
        p["unknown"] = json!({"nested": [1, 2]});
        p["may_act"] = json!("x");
        let token = forge(c.signer.as_ref(), &our_header(&c), &p);
        assert_eq!(c.decode(&token).unwrap(), claims());
        // A delegated token's actor chain and links (RFC 8693 section 4.1).
        let mut delegated = claims();
        delegated.act = idp_domain::token::Actor::nest(&["c", "b"]);
        delegated.dlg = vec![idp_domain::token::DelegationLink {
            sub: "a".into(),
            cid: "ca".into(),
            jti: "ja".into(),
        }];
        let token = c.sign(&delegated).unwrap();
        let signed: Value =
            serde_json::from_slice(&decode_part(token.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(signed["act"], json!({"sub": "c", "act": {"sub": "b"}}));
        assert_eq!(c.decode(&token).unwrap(), delegated);
        // The deepest chain IDP_MAX_DELEGATION_DEPTH allows (16) still fits
        // the size a token may have, with RSA's long signature.
        let uuid = "0b7c2a3e-7d2c-4c55-9d0e-6c1f2b3a4d5e";
        let mut deepest = claims();
        deepest.act = idp_domain::token::Actor::nest(&[uuid; 16]);
        deepest.dlg = vec![
            idp_domain::token::DelegationLink {
                sub: uuid.into(),
                cid: uuid.into(),
                jti: uuid.into(),
            };
            16
        ];
        let rsa = codec(SigningAlgorithm::RS256);
        let token = rsa.sign(&deepest).unwrap();
        assert!(token.len() < MAX_TOKEN_LEN / 2 + 1024, "{}", token.len());
        assert_eq!(rsa.decode(&token).unwrap(), deepest);
        // Several audiences are an array (RFC 7519 section 4.1.3).
        let mut p = payload();
        p["aud"] = json!(["a", "b"]);
        let token = forge(c.signer.as_ref(), &our_header(&c), &p);
        assert_eq!(
            c.decode(&token).unwrap().aud,
            idp_domain::token::Audience::Many(vec!["a".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn install_refuses_unknown_algorithms_and_empty_kid() {
        let ring = JoseKeyRing::new(
            std::sync::Arc::new(crate::KeyVault::plaintext()),
            TestClock::at(0),
            ttl(),
        );
        let mut record = key(SigningAlgorithm::RS256).record(DateTime::UNIX_EPOCH);
        for alg in ["HS256", "none", "rs256", "PS256"] {
            record.algorithm = alg.to_owned();
            assert!(matches!(
                ring.install_keys(std::slice::from_ref(&record)),
                Err(CryptoError::UnsupportedAlgorithm(_))
            ));
        }
        record.algorithm = "RS256".to_owned();
        record.kid = String::new();
        assert!(matches!(
            ring.install_keys(std::slice::from_ref(&record)),
            Err(CryptoError::EmptyKeyId)
        ));
        assert_eq!(ring.jwks(), json!({"keys": []}));
    }

    #[test]
    fn new_refuses_keys_of_the_wrong_type_or_size() {
        let mismatched = [
            (
                SigningAlgorithm::RS256,
                key(SigningAlgorithm::ES256).pem.clone(),
            ),
            (
                SigningAlgorithm::RS256,
                key(SigningAlgorithm::EdDSA).pem.clone(),
            ),
            (
                SigningAlgorithm::ES256,
                key(SigningAlgorithm::RS256).pem.clone(),
            ),
            (
                SigningAlgorithm::ES256,
                key(SigningAlgorithm::EdDSA).pem.clone(),
            ),
            (
                SigningAlgorithm::EdDSA,
                key(SigningAlgorithm::RS256).pem.clone(),
            ),
            (
                SigningAlgorithm::EdDSA,
                key(SigningAlgorithm::ES256).pem.clone(),
            ),
            (
                SigningAlgorithm::ES256,
                String::from_utf8(
                    EcKeyPair::generate(EcCurve::P384)
                        .unwrap()
                        .to_pem_private_key(),
                )
                .unwrap(),
            ),
            (
                SigningAlgorithm::EdDSA,
                String::from_utf8(
                    EdDSA
                        .generate_key_pair(EdCurve::Ed448)
                        .unwrap()
                        .to_pem_private_key(),
                )
                .unwrap(),
            ),
            (
                SigningAlgorithm::RS256,
                String::from_utf8(RsaKeyPair::generate(1024).unwrap().to_pem_private_key())
                    .unwrap(),
            ),
            (SigningAlgorithm::RS256, "not a pem".to_owned()),
            (SigningAlgorithm::EdDSA, String::new()),
        ];
        for (alg, pem) in mismatched {
            let stored = StoredSigningKey {
                kid: "k".into(),
                algorithm: alg,
                pem,
            };
            assert!(
                matches!(Codec::new(&stored), Err(CryptoError::InvalidKey { .. })),
                "{alg}"
            );
        }
    }

    #[test]
    fn uses_the_stored_kid_as_given() {
        let mut stored = key(SigningAlgorithm::EdDSA).clone();
        stored.kid = "legacy-\"kid\"".into();
        let c = Codec::new(&stored).unwrap();
        assert_eq!(c.key_id(), "legacy-\"kid\"");
        let token = c.sign(&claims()).unwrap();
        assert_eq!(c.decode(&token).unwrap(), claims());
        assert_eq!(c.jwks()["keys"][0]["kid"], "legacy-\"kid\"");
    }

    #[test]
    fn load_pem_file_reads_pkcs8_and_traditional_pem() {
        let dir = std::env::temp_dir().join(format!("idp-crypto-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for alg in SigningAlgorithm::ALL {
            let generated = key(alg);
            let path = dir.join(format!("{alg}.pem"));
            std::fs::write(&path, &generated.pem).unwrap();
            let loaded = load_pem_file(&path, alg).unwrap();
            assert_eq!(&loaded, generated);
        }
        // PKCS#1 "RSA PRIVATE KEY" and SEC1 "EC PRIVATE KEY" are re-encoded as PKCS#8.
        let rsa = RS256
            .key_pair_from_pem(&key(SigningAlgorithm::RS256).pem)
            .unwrap();
        let ec = ES256
            .key_pair_from_pem(&key(SigningAlgorithm::ES256).pem)
            .unwrap();
        for (alg, pem) in [
            (
                SigningAlgorithm::RS256,
                rsa.to_traditional_pem_private_key(),
            ),
            (SigningAlgorithm::ES256, ec.to_traditional_pem_private_key()),
        ] {
            assert!(!pem.starts_with(b"-----BEGIN PRIVATE KEY-----"));
            let path = dir.join(format!("{alg}-traditional.pem"));
            std::fs::write(&path, pem).unwrap();
            let loaded = load_pem_file(&path, alg).unwrap();
            assert_eq!(loaded.kid, key(alg).kid, "kid comes from the public key");
            assert!(loaded.pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        }
        assert!(matches!(
            load_pem_file(dir.join("absent.pem"), SigningAlgorithm::RS256),
            Err(CryptoError::KeyFile { .. })
        ));
        assert!(matches!(
            load_pem_file(dir.join("RS256.pem"), SigningAlgorithm::ES256),
            Err(CryptoError::InvalidKey { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_shows_no_key_material() {
        let c = codec(SigningAlgorithm::ES256);
        let debug = format!("{:?}", c.ring);
        assert!(debug.contains(c.key_id()), "{debug}");
        assert!(!debug.contains("PRIVATE"));
        let stored = key(SigningAlgorithm::ES256);
        let debug = format!("{stored:?}");
        assert!(debug.contains("ES256") && debug.contains(&stored.kid));
        assert!(!debug.contains("PRIVATE"));
        let loaded = LoadedKey::new("k", SigningAlgorithm::ES256, &stored.pem).unwrap();
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
    }
}
