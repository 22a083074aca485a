//! The ES256 signature of our own tokens computed by *ring* instead of OpenSSL,
//! behind josekit's [`JwsSigner`]: the JOSE layer stays josekit's.
//!
//! Why: through josekit, every ES256 signature builds an OpenSSL 3 signing
//! context (`EVP_DigestSignInit` fetches the algorithm from the provider under
//! global read-write locks), signs, then DER-decodes the signature into
//! `r || s`. In a `perf` profile of the token endpoint under load that was 21%
//! of the server's CPU, of which the elliptic-curve arithmetic (`EC_POINT_mul`)
//! was 4%. *ring* keeps the parsed key, needs no lock and returns `r || s`
//! directly; its P-256 code is the same constant-time assembly (nistz256) as
//! OpenSSL's. Verification is unchanged (josekit), so every token signed here
//! is checked by the other implementation in the tests.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::JoseError;
use josekit::jwk::Jwk;
use josekit::jws::{ES256, JwsAlgorithm, JwsSigner};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use zeroize::Zeroizing;

/// Length of an ES256 signature: `r || s`, 32 bytes each (RFC 7518 section 3.4).
const SIGNATURE_LEN: usize = 64;

/// An ES256 [`JwsSigner`] on *ring*, made from the key pair as a JWK.
#[derive(Clone)]
pub(crate) struct Es256Signer {
    key: Arc<EcdsaKeyPair>,
    rng: SystemRandom,
}

impl fmt::Debug for Es256Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Es256Signer").finish_non_exhaustive()
    }
}

impl Es256Signer {
    /// The signer of the P-256 key whose JWK `jwk` holds both halves (`d`, `x`, `y`);
    /// *ring* checks that the public point is on the curve and belongs to `d`.
    pub(crate) fn from_key_pair_jwk(jwk: &Jwk) -> Result<Self, String> {
        if jwk.curve() != Some("P-256") {
            return Err(format!("curve {:?} instead of P-256", jwk.curve()));
        }
        let member = |name: &str| -> Result<Zeroizing<Vec<u8>>, String> {
            let text = jwk
                .parameter(name)
                .and_then(|value| value.as_str())
                .ok_or_else(|| format!("no \"{name}\" in the key"))?;
            URL_SAFE_NO_PAD
                .decode(text)
                .map(Zeroizing::new)
                .map_err(|e| format!("\"{name}\": {e}"))
        };
        let d = member("d")?;
        let x = member("x")?;
        let y = member("y")?;
        let mut point = Vec::with_capacity(1 + x.len() + y.len());
        point.push(0x04);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_private_key_and_public_key(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &d,
            &point,
            &rng,
        )
        .map_err(|e| format!("refused by ring: {e}"))?;
        Ok(Self {
            key: Arc::new(key),
            rng,
        })
    }
}

impl JwsSigner for Es256Signer {
    fn algorithm(&self) -> &dyn JwsAlgorithm {
        &ES256
    }

    fn signature_len(&self) -> usize {
        SIGNATURE_LEN
    }

    fn key_id(&self) -> Option<&str> {
        None
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JoseError> {
        let signature = self
            .key
            .sign(&self.rng, message)
            .map_err(|e| JoseError::InvalidSignature(anyhow::anyhow!("ES256 signing: {e}")))?;
        Ok(signature.as_ref().to_vec())
    }

    fn box_clone(&self) -> Box<dyn JwsSigner> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use josekit::jwk::KeyPair;
    use josekit::jws::JwsVerifier;

    use super::*;

    fn key() -> josekit::jwk::alg::ec::EcKeyPair {
        ES256.generate_key_pair().unwrap()
    }

    #[test]
    fn its_signatures_verify_with_openssl_and_differ_each_time() {
        let pair = key();
        let signer = Es256Signer::from_key_pair_jwk(&pair.to_jwk_key_pair()).unwrap();
        let verifier = ES256.verifier_from_jwk(&pair.to_jwk_public_key()).unwrap();
        for message in [&b""[..], b"a", &[0xA5; 1000]] {
            let first = signer.sign(message).unwrap();
            let second = signer.sign(message).unwrap();
            assert_eq!(first.len(), SIGNATURE_LEN);
            assert_ne!(first, second, "a fresh nonce per signature");
            verifier.verify(message, &first).unwrap();
            verifier.verify(message, &second).unwrap();
            assert!(verifier.verify(b"another message", &first).is_err());
        }
    }

    #[test]
    fn a_signature_does_not_verify_under_another_key() {
        let signer = Es256Signer::from_key_pair_jwk(&key().to_jwk_key_pair()).unwrap();
        let other = ES256.verifier_from_jwk(&key().to_jwk_public_key()).unwrap();
        let signature = signer.sign(b"message").unwrap();
        assert!(other.verify(b"message", &signature).is_err());
    }

    #[test]
    fn a_public_point_that_is_not_the_private_keys_is_refused() {
        let mut jwk = key().to_jwk_key_pair();
        let other = key().to_jwk_public_key();
        for member in ["x", "y"] {
            let value = other.parameter(member).unwrap().clone();
            jwk.set_parameter(member, Some(value)).unwrap();
        }
        let err = Es256Signer::from_key_pair_jwk(&jwk).unwrap_err();
        assert!(err.contains("refused by ring"), "{err}");
    }

    #[test]
    fn a_key_without_a_private_part_or_on_another_curve_is_refused() {
        let public = key().to_jwk_public_key();
        assert!(
            Es256Signer::from_key_pair_jwk(&public)
                .unwrap_err()
                .contains("\"d\"")
        );
        let p384 = josekit::jws::ES384.generate_key_pair().unwrap();
        assert!(
            Es256Signer::from_key_pair_jwk(&p384.to_jwk_key_pair())
                .unwrap_err()
                .contains("P-384")
        );
    }
}
