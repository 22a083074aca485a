//! Client keys for tests (feature `test-keys`): what an agent holds to sign a
//! client assertion or a DPoP proof, so other crates' tests and the e2e suite
//! can play the client, honest or hostile.
//!
//! A test helper panics on failure rather than returning errors: a key that
//! OpenSSL cannot generate or use is a broken test machine, not a case to
//! handle.
#![expect(
    clippy::expect_used,
    reason = "test helper: a key OpenSSL cannot make or use is a broken test machine"
)]

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idp_domain::values::JwsAlgorithm;
use josekit::jwk::alg::ec::{EcCurve, EcKeyPair};
use josekit::jwk::alg::ed::{EdCurve, EdKeyPair};
use josekit::jwk::alg::rsa::RsaKeyPair;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{ES256, EdDSA, JwsSigner, PS256, RS256};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// RSA modulus size of generated keys: the smallest accepted, the fastest.
const RSA_BITS: u32 = 2048;

/// A client's key pair for one algorithm, with the `kid` it publishes.
#[derive(Clone)]
pub struct ClientKey {
    algorithm: JwsAlgorithm,
    /// Public and private members, without `kid` or `alg`.
    private: Jwk,
    kid: String,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// A fresh key for `algorithm`: RSA 2048 for RS256 and PS256, P-256 for
    /// ES256, Ed25519 for EdDSA. Its `kid` is its RFC 7638 thumbprint.
    pub fn generate(algorithm: JwsAlgorithm) -> Self {
        let private = match algorithm {
            JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256 => RsaKeyPair::generate(RSA_BITS)
                .expect("generate an RSA key")
                .to_jwk_key_pair(),
            JwsAlgorithm::Es256 => EcKeyPair::generate(EcCurve::P256)
                .expect("generate a P-256 key")
                .to_jwk_key_pair(),
            JwsAlgorithm::EdDsa => EdKeyPair::generate(EdCurve::Ed25519)
                .expect("generate an Ed25519 key")
                .to_jwk_key_pair(),
        };
        let mut key = Self {
            algorithm,
            private,
            kid: String::new(),
        };
        key.kid = key.thumbprint();
        key
    }

    /// The same key under another `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = kid.into();
        self
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> JwsAlgorithm {
        self.algorithm
    }

    /// The `kid` of [`ClientKey::public_jwk`].
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK: `kty`, `crv`, `n`, `e`, `x`, `y` as the key type has
    /// them, plus `kid`; no `alg`, no private member.
    pub fn public_jwk(&self) -> Value {
        let mut members = self.public_members();
        members.insert("kid".to_owned(), Value::String(self.kid.clone()));
        Value::Object(members)
    }

    /// The JWK with its private members too (`d`, and `p`, `q`, ... for
    /// RSA), plus `kid`: for tests that send a private key where only a
    /// public one belongs.
    pub fn private_jwk(&self) -> Value {
        let mut members: Map<String, Value> = self.private.as_ref().clone();
        members.insert("kid".to_owned(), Value::String(self.kid.clone()));
        Value::Object(members)
    }

    /// The RFC 7638 thumbprint of the public key, base64url without padding.
    pub fn thumbprint(&self) -> String {
        // `public_members` holds exactly the required members, inserted in
        // lexicographic order, so the text is canonical whether or not
        // serde_json's `preserve_order` is on.
        let canonical = Value::Object(self.public_members()).to_string();
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    /// A compact JWS of `claims` (any JSON, so tests can sign a non-object)
    /// under `header` as given, with `alg` set to the key's algorithm unless
    /// the header has one. Nothing else is added: a test that wants `typ`,
    /// `kid` or `jwk` (any `jwk`, even another key's) puts it in `header`.
    pub fn sign(&self, mut header: Map<String, Value>, claims: &Value) -> String {
        header
            .entry("alg")
            .or_insert_with(|| Value::String(self.algorithm.as_str().to_owned()));
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
        );
        let signature = self
            .signer()
            .sign(signing_input.as_bytes())
            .expect("sign with a client key");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn signer(&self) -> Box<dyn JwsSigner> {
        let jwk = &self.private;
        match self.algorithm {
            JwsAlgorithm::Rs256 => Box::new(RS256.signer_from_jwk(jwk).expect("RS256 signer")),
            JwsAlgorithm::Ps256 => Box::new(PS256.signer_from_jwk(jwk).expect("PS256 signer")),
            JwsAlgorithm::Es256 => Box::new(ES256.signer_from_jwk(jwk).expect("ES256 signer")),
            JwsAlgorithm::EdDsa => Box::new(EdDSA.signer_from_jwk(jwk).expect("EdDSA signer")),
        }
    }

    /// The RFC 7638 required members, and only those.
    fn public_members(&self) -> Map<String, Value> {
        let names: &[&str] = match self.algorithm {
            JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256 => &["e", "kty", "n"],
            JwsAlgorithm::Es256 => &["crv", "kty", "x", "y"],
            JwsAlgorithm::EdDsa => &["crv", "kty", "x"],
        };
        names
            .iter()
            .map(|name| {
                let value = self
                    .private
                    .parameter(name)
                    .cloned()
                    .expect("public member of a generated key");
                ((*name).to_owned(), value)
            })
            .collect()
    }
}
