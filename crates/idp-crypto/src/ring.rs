//! The key ring: every published signing key, each with its algorithm
//! pinned, and which one signs at an instant.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Duration, Utc};
use idp_domain::StoreError;
use idp_domain::keys::{KeyState, SigningKeyRecord, active_key, key_statuses};
use idp_domain::ports::{Clock, TokenCodec, TokenDecodeError};
use idp_domain::token::AccessTokenClaims;
use serde_json::{Map, Value, json};

use crate::codec::{LoadedKey, decode_part};
use crate::verified_tokens::{self, VerifiedTokens};
use crate::{CryptoError, KeyVault, MAX_TOKEN_LEN, PemSigningKey, SigningAlgorithm, load_pem_file};

/// The keys as last installed.
#[derive(Default)]
struct KeySet {
    /// Every installed record, its private key blanked: the times from which
    /// each key's state follows.
    records: Vec<SigningKeyRecord>,
    /// The parsed keys that were published when installed, by kid.
    loaded: HashMap<String, Arc<LoadedKey>>,
}

impl KeySet {
    /// The parsed key that signs at `at`.
    fn active_at(&self, at: DateTime<Utc>) -> Result<&Arc<LoadedKey>, StoreError> {
        let record = active_key(&self.records, at).ok_or_else(|| {
            StoreError::Unavailable(anyhow::anyhow!("no signing key is active at {at}"))
        })?;
        self.loaded.get(&record.kid).ok_or_else(|| {
            StoreError::Unavailable(anyhow::anyhow!(
                "the signing key {} active at {at} is not loaded",
                record.kid
            ))
        })
    }

    /// The parsed keys published at `now`, in activation order, the active
    /// one flagged.
    fn published(&self, now: DateTime<Utc>, ttl: Duration) -> Vec<(&Arc<LoadedKey>, bool)> {
        key_statuses(&self.records, now, ttl)
            .into_iter()
            .filter(|s| s.published)
            .filter_map(|s| {
                let active = s.state == KeyState::Active;
                self.loaded.get(&s.record.kid).map(|k| (k, active))
            })
            .collect()
    }
}

/// [`TokenCodec`] over every published key of the deployment.
///
/// Which key signs and which keys verify follows, at each call, from the
/// installed keys' times ([`key_statuses`]) at the clock's now, so a key
/// becomes active at its `activates_at` on every node without a new
/// [`install`](TokenCodec::install). Each key's `alg` is pinned: a token
/// verifies only with the algorithm of the key its `kid` names.
///
/// Keys are parsed once, when first installed, and kept ready; readers only
/// take a lock long enough to clone an [`Arc`].
pub struct JoseKeyRing {
    vault: Arc<KeyVault>,
    clock: Arc<dyn Clock>,
    token_ttl: Duration,
    set: RwLock<Arc<KeySet>>,
    /// One install at a time, so none parses a key twice or overwrites a
    /// newer set.
    installing: Mutex<()>,
    /// Tokens that verified, so a token presented again skips its signature
    /// check while the key that verified it stays published.
    verified: VerifiedTokens,
}

impl fmt::Debug for JoseKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.current();
        let mut kids: Vec<&str> = set.loaded.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("JoseKeyRing")
            .field("loaded", &kids)
            .field("token_ttl", &self.token_ttl)
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}

impl JoseKeyRing {
    /// An empty ring (it signs nothing until keys are installed) opening
    /// private keys with `vault`; tokens live `token_ttl`, which keeps a
    /// retired key published long enough.
    pub fn new(vault: Arc<KeyVault>, clock: Arc<dyn Clock>, token_ttl: Duration) -> Self {
        Self {
            vault,
            clock,
            token_ttl,
            set: RwLock::new(Arc::new(KeySet::default())),
            installing: Mutex::new(()),
            verified: VerifiedTokens::new(verified_tokens::CAPACITY),
        }
    }

    /// A ring of one always-active key (activating at the UNIX epoch): an
    /// operator-managed key, or a fixed key in tests.
    pub fn from_key(
        key: &PemSigningKey,
        clock: Arc<dyn Clock>,
        token_ttl: Duration,
    ) -> Result<Self, CryptoError> {
        let ring = Self::new(Arc::new(KeyVault::plaintext()), clock, token_ttl);
        ring.install_keys(&[key.record(DateTime::UNIX_EPOCH)])?;
        Ok(ring)
    }

    /// A ring of the one always-active key in a PEM file
    /// (`IDP_SIGNING_KEY_FILE`; see [`load_pem_file`]): its kid is the
    /// key's thumbprint.
    pub fn from_pem_file(
        path: impl AsRef<Path>,
        algorithm: SigningAlgorithm,
        clock: Arc<dyn Clock>,
        token_ttl: Duration,
    ) -> Result<Self, CryptoError> {
        Self::from_key(&load_pem_file(path, algorithm)?, clock, token_ttl)
    }

    /// [`TokenCodec::install`] with the cause: replaces the ring's keys with
    /// `records` (revoked ones included). Keys published now are opened and
    /// parsed, unless already loaded under the same kid and algorithm; keys
    /// no longer given are dropped. On any failure the previous keys stay.
    pub fn install_keys(&self, records: &[SigningKeyRecord]) -> Result<(), CryptoError> {
        let _installing = self
            .installing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let previous = self.current();
        let now = self.clock.now();
        let mut loaded = HashMap::new();
        for status in key_statuses(records, now, self.token_ttl) {
            if !status.published {
                continue;
            }
            let record = &status.record;
            let algorithm: SigningAlgorithm = record.algorithm.parse()?;
            let key = match previous.loaded.get(&record.kid) {
                Some(key) if key.algorithm == algorithm => Arc::clone(key),
                _ => {
                    if record.kid.is_empty() {
                        return Err(CryptoError::EmptyKeyId);
                    }
                    let pem = self.vault.open(&record.kid, &record.private_key)?;
                    Arc::new(LoadedKey::new(&record.kid, algorithm, &pem)?)
                }
            };
            loaded.insert(record.kid.clone(), key);
        }
        let records = records
            .iter()
            .map(|r| SigningKeyRecord {
                private_key: String::new(),
                ..r.clone()
            })
            .collect();
        let set = Arc::new(KeySet { records, loaded });
        *self.set.write().unwrap_or_else(PoisonError::into_inner) = set;
        Ok(())
    }

    /// The kid of the key active now, if any.
    pub fn active_key_id(&self) -> Option<String> {
        active_key(&self.current().records, self.clock.now()).map(|r| r.kid.clone())
    }

    fn current(&self) -> Arc<KeySet> {
        Arc::clone(&self.set.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl TokenCodec for JoseKeyRing {
    fn install(&self, keys: &[SigningKeyRecord]) -> Result<(), StoreError> {
        self.install_keys(keys)
            .map_err(|e| StoreError::Unknown(anyhow::Error::new(e)))
    }

    fn algorithms(&self) -> Vec<String> {
        let set = self.current();
        let mut published = set.published(self.clock.now(), self.token_ttl);
        // Active first (a stable sort keeps the others in activation order).
        published.sort_by_key(|(_, active)| !*active);
        let mut algorithms: Vec<String> = Vec::new();
        for (key, _) in published {
            if !algorithms.iter().any(|a| a == key.algorithm.as_str()) {
                algorithms.push(key.algorithm.to_string());
            }
        }
        algorithms
    }

    /// Signs with the key active at the end of the second `claims.iat`: the
    /// token is dated to the second, so a key activating within that second
    /// (a deployment's first key, made a moment ago) signs it; that key is
    /// already published, as `next`, before its instant.
    fn sign(&self, claims: &AccessTokenClaims) -> Result<String, StoreError> {
        let at = DateTime::from_timestamp(claims.iat, 999_999_999).ok_or_else(|| {
            StoreError::Unknown(anyhow::anyhow!("iat {} is out of range", claims.iat))
        })?;
        self.current().active_at(at)?.sign_access_token(claims)
    }

    fn sign_jwt(&self, typ: &str, claims: &Value, at: DateTime<Utc>) -> Result<String, StoreError> {
        self.current().active_at(at)?.sign_jwt(typ, claims)
    }

    fn decode(&self, token: &str) -> Result<AccessTokenClaims, TokenDecodeError> {
        use TokenDecodeError::{BadSignature, Malformed};

        if token.len() > MAX_TOKEN_LEN {
            return Err(Malformed);
        }
        let now = self.clock.now();
        let set = self.current();
        let published = set.published(now, self.token_ttl);
        let digest = VerifiedTokens::digest(token);
        if let Some((kid, claims)) = self.verified.get(&digest, now.timestamp())
            && published.iter().any(|(key, _)| key.kid == kid)
        {
            return Ok(claims);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Malformed);
        };
        let header = decode_part(header_b64)?;
        let payload = decode_part(payload_b64)?;
        let signature = decode_part(signature_b64)?;
        let header: Map<String, Value> = serde_json::from_slice(&header).map_err(|_| Malformed)?;
        let Some(Value::String(kid)) = header.get("kid") else {
            return Err(BadSignature);
        };
        let key = published
            .into_iter()
            .find(|(key, _)| key.kid == *kid)
            .map(|(key, _)| Arc::clone(key))
            .ok_or(BadSignature)?;
        key.check_header(&header)?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        key.verify(signing_input.as_bytes(), &signature)?;
        let claims: AccessTokenClaims = serde_json::from_slice(&payload).map_err(|_| Malformed)?;
        self.verified.insert(digest, kid, &claims, now.timestamp());
        Ok(claims)
    }

    fn jwks(&self) -> Value {
        let set = self.current();
        let keys: Vec<Value> = set
            .published(self.clock.now(), self.token_ttl)
            .into_iter()
            .map(|(key, _)| key.jwk().clone())
            .collect();
        json!({ "keys": keys })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use josekit::jwk::Jwk;
    use josekit::jws::{ES256, EdDSA, HS256, JwsSigner, JwsVerifier, RS256};

    use super::*;
    use crate::generate_signing_key;
    use crate::test_support::{T0, TestClock, t, ttl};

    /// RSA keys are slow to make in debug builds: a few per test binary.
    fn keys(algorithm: SigningAlgorithm) -> &'static [PemSigningKey] {
        static KEYS: OnceLock<Vec<Vec<PemSigningKey>>> = OnceLock::new();
        let all = KEYS.get_or_init(|| {
            SigningAlgorithm::ALL
                .iter()
                .map(|a| {
                    let count = if *a == SigningAlgorithm::RS256 { 1 } else { 3 };
                    (0..count)
                        .map(|_| generate_signing_key(*a).unwrap())
                        .collect()
                })
                .collect()
        });
        &all[SigningAlgorithm::ALL
            .iter()
            .position(|a| *a == algorithm)
            .unwrap()]
    }

    fn record(
        key: &PemSigningKey,
        succeeds: Option<&PemSigningKey>,
        activates: i64,
    ) -> SigningKeyRecord {
        let mut r = key.record(t(activates));
        r.succeeds = succeeds.map(|k| k.kid.clone());
        r.created_at = t(activates.min(0));
        r
    }

    fn claims(iat_offset: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "http://127.0.0.1:8080".into(),
            sub: "0b7c2a3e-7d2c-4c55-9d0e-6c1f2b3a4d5e".into(),
            aud: idp_domain::token::Audience::One("http://127.0.0.1:8080".into()),
            client_id: "0b7c2a3e-7d2c-4c55-9d0e-6c1f2b3a4d5e".into(),
            scope: "agents:read".into(),
            jti: "7f0c0d8e-1111-4c55-9d0e-6c1f2b3a4d5e".into(),
            iat: T0 + iat_offset,
            nbf: T0 + iat_offset,
            exp: T0 + iat_offset + 3600,
            owner: "acme".into(),
            agent_type: "screener".into(),
            deployment_env: "production".into(),
            cid: "9a9a9a9a-1111-4c55-9d0e-6c1f2b3a4d5e".into(),
            cnf: None,
            act: None,
            dlg: Vec::new(),
        }
    }

    fn ring(clock: &Arc<TestClock>, records: &[SigningKeyRecord]) -> JoseKeyRing {
        let ring = JoseKeyRing::new(Arc::new(KeyVault::plaintext()), clock.clone(), ttl());
        ring.install(records).unwrap();
        ring
    }

    fn header(token: &str) -> Value {
        let part = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn kid_of(token: &str) -> String {
        header(token)["kid"].as_str().unwrap().to_owned()
    }

    fn jwks_kids(ring: &JoseKeyRing) -> Vec<String> {
        ring.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    fn signer(key: &PemSigningKey) -> Box<dyn JwsSigner> {
        match key.algorithm {
            SigningAlgorithm::RS256 => Box::new(RS256.signer_from_pem(&key.pem).unwrap()),
            SigningAlgorithm::ES256 => Box::new(ES256.signer_from_pem(&key.pem).unwrap()),
            SigningAlgorithm::EdDSA => Box::new(EdDSA.signer_from_pem(&key.pem).unwrap()),
        }
    }

    fn forge(signer: &dyn JwsSigner, header: &Value, payload: &Value) -> String {
        let b64 = |s: String| URL_SAFE_NO_PAD.encode(s);
        let input = format!("{}.{}", b64(header.to_string()), b64(payload.to_string()));
        let signature = signer.sign(input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn payload() -> Value {
        serde_json::to_value(claims(0)).unwrap()
    }

    #[test]
    fn the_next_key_signs_from_its_instant_and_the_old_one_still_verifies() {
        let (a, b) = (
            &keys(SigningAlgorithm::ES256)[0],
            &keys(SigningAlgorithm::ES256)[1],
        );
        let clock = TestClock::at(50);
        let ring = ring(&clock, &[record(a, None, 0), record(b, Some(a), 100)]);
        assert_eq!(ring.active_key_id(), Some(a.kid.clone()));
        let by_a = ring.sign(&claims(50)).unwrap();
        assert_eq!(kid_of(&by_a), a.kid);
        assert_eq!(ring.decode(&by_a).unwrap(), claims(50));
        assert_eq!(jwks_kids(&ring), [a.kid.clone(), b.kid.clone()]);

        // One second before b's instant a signs; at the instant b does, on
        // this node as on every other, with no install in between.
        assert_eq!(kid_of(&ring.sign(&claims(99)).unwrap()), a.kid);
        clock.set(100);
        assert_eq!(ring.active_key_id(), Some(b.kid.clone()));
        let by_b = ring.sign(&claims(100)).unwrap();
        assert_eq!(kid_of(&by_b), b.kid);
        assert_eq!(ring.decode(&by_b).unwrap(), claims(100));
        assert_eq!(ring.decode(&by_a).unwrap(), claims(50));
        assert_eq!(jwks_kids(&ring), [a.kid.clone(), b.kid.clone()]);
        assert_eq!(ring.algorithms(), ["ES256"]);

        // a stays published until its last token expired (plus the skew).
        let last = 100 + ttl().num_seconds() + idp_domain::keys::CLOCK_SKEW.num_seconds();
        clock.set(last - 1);
        assert_eq!(ring.decode(&by_a).unwrap(), claims(50));
        assert_eq!(jwks_kids(&ring).len(), 2);
        clock.set(last);
        assert_eq!(ring.decode(&by_a), Err(TokenDecodeError::BadSignature));
        assert_eq!(jwks_kids(&ring), [b.kid.as_str()]);
        assert_eq!(ring.decode(&by_b).unwrap(), claims(100));
    }

    #[test]
    fn a_revoked_key_stops_verifying_at_once() {
        let (a, b) = (
            &keys(SigningAlgorithm::EdDSA)[0],
            &keys(SigningAlgorithm::EdDSA)[1],
        );
        let clock = TestClock::at(150);
        let mut records = [record(a, None, 0), record(b, Some(a), 100)];
        let ring = ring(&clock, &records);
        let by_b = ring.sign(&claims(150)).unwrap();
        assert_eq!(kid_of(&by_b), b.kid);
        // Verified once, so remembered: revoking its key must still end it.
        assert_eq!(ring.decode(&by_b).unwrap(), claims(150));
        clock.set(160);
        records[1].revoked_at = Some(t(160));
        ring.install(&records).unwrap();
        assert_eq!(ring.decode(&by_b), Err(TokenDecodeError::BadSignature));
        assert_eq!(jwks_kids(&ring), [a.kid.as_str()]);
        // The key it replaced signs again.
        assert_eq!(kid_of(&ring.sign(&claims(160)).unwrap()), a.kid);
        // Every key revoked: nothing signs.
        records[0].revoked_at = Some(t(170));
        clock.set(170);
        ring.install(&records).unwrap();
        assert!(matches!(
            ring.sign(&claims(170)),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(ring.jwks(), json!({"keys": []}));
        assert!(ring.algorithms().is_empty());
        assert_eq!(ring.active_key_id(), None);
    }

    #[test]
    fn a_verified_token_is_remembered_and_only_that_exact_token() {
        let a = &keys(SigningAlgorithm::ES256)[0];
        let clock = TestClock::at(50);
        let ring = ring(&clock, &[record(a, None, 0)]);
        let token = ring.sign(&claims(50)).unwrap();
        assert_eq!(ring.verified.len(), 0);
        assert_eq!(ring.decode(&token).unwrap(), claims(50));
        assert_eq!(ring.verified.len(), 1);
        assert_eq!(ring.decode(&token).unwrap(), claims(50));

        // The same header and payload under another signature is checked,
        // not answered from memory.
        let (input, _) = token.rsplit_once('.').unwrap();
        let other = ring.sign(&claims(51)).unwrap();
        let (_, signature) = other.rsplit_once('.').unwrap();
        let spliced = format!("{input}.{signature}");
        assert_eq!(ring.decode(&spliced), Err(TokenDecodeError::BadSignature));
        assert_eq!(ring.verified.len(), 1);

        // Once expired it is checked again (and the domain refuses it).
        clock.set(claims(50).exp - T0);
        assert_eq!(ring.decode(&token).unwrap(), claims(50));
        assert_eq!(ring.verified.len(), 0);
    }

    #[test]
    fn rs256_tokens_verify_while_es256_is_active() {
        let (a, b) = (
            &keys(SigningAlgorithm::RS256)[0],
            &keys(SigningAlgorithm::ES256)[0],
        );
        let clock = TestClock::at(50);
        let ring = ring(&clock, &[record(a, None, 0), record(b, Some(a), 100)]);
        assert_eq!(ring.algorithms(), ["RS256", "ES256"]);
        let by_a = ring.sign(&claims(50)).unwrap();
        assert_eq!(header(&by_a)["alg"], "RS256");
        clock.set(200);
        assert_eq!(ring.algorithms(), ["ES256", "RS256"]);
        let by_b = ring.sign(&claims(200)).unwrap();
        assert_eq!(header(&by_b)["alg"], "ES256");
        assert_eq!(ring.decode(&by_a).unwrap(), claims(50));
        assert_eq!(ring.decode(&by_b).unwrap(), claims(200));
        let jwks = ring.jwks();
        assert_eq!(jwks["keys"][0]["alg"], "RS256");
        assert_eq!(jwks["keys"][1]["alg"], "ES256");
    }

    #[test]
    fn the_alg_is_pinned_per_key() {
        let (a, b) = (
            &keys(SigningAlgorithm::RS256)[0],
            &keys(SigningAlgorithm::ES256)[0],
        );
        let clock = TestClock::at(200);
        let ring = ring(&clock, &[record(a, None, 0), record(b, Some(a), 100)]);
        let (sa, sb) = (signer(a), signer(b));
        // Controls: each key's own alg and kid verify.
        for (s, key) in [(&sa, a), (&sb, b)] {
            let h = json!({"alg": key.algorithm.as_str(), "typ": "at+jwt", "kid": key.kid});
            assert_eq!(
                ring.decode(&forge(s.as_ref(), &h, &payload())).unwrap(),
                claims(0)
            );
        }
        // b's alg and signature under a's kid, and the reverse.
        let h = json!({"alg": "ES256", "typ": "at+jwt", "kid": a.kid});
        assert_eq!(
            ring.decode(&forge(sb.as_ref(), &h, &payload())),
            Err(TokenDecodeError::BadSignature)
        );
        let h = json!({"alg": "RS256", "typ": "at+jwt", "kid": b.kid});
        assert_eq!(
            ring.decode(&forge(sa.as_ref(), &h, &payload())),
            Err(TokenDecodeError::BadSignature)
        );
        for key in [a, b] {
            // alg none.
            let h = json!({"alg": "none", "typ": "at+jwt", "kid": key.kid});
            let b64 = |s: String| URL_SAFE_NO_PAD.encode(s);
            let unsigned = format!("{}.{}.", b64(h.to_string()), b64(payload().to_string()));
            assert_eq!(ring.decode(&unsigned), Err(TokenDecodeError::BadSignature));
            // HS256 keyed with the public key.
            let public_pem = match key.algorithm {
                SigningAlgorithm::RS256 => RS256
                    .key_pair_from_pem(&key.pem)
                    .unwrap()
                    .to_pem_public_key(),
                _ => ES256
                    .key_pair_from_pem(&key.pem)
                    .unwrap()
                    .to_pem_public_key(),
            };
            let jwk = ring.jwks()["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["kid"] == key.kid.as_str())
                .unwrap()
                .to_string();
            for secret in [public_pem, jwk.into_bytes()] {
                let hmac = HS256.signer_from_bytes(&secret).unwrap();
                let h = json!({"alg": "HS256", "typ": "at+jwt", "kid": key.kid});
                assert_eq!(
                    ring.decode(&forge(&hmac, &h, &payload())),
                    Err(TokenDecodeError::BadSignature)
                );
            }
        }
    }

    #[test]
    fn unknown_and_unpublished_kids_fail() {
        let (a, b) = (
            &keys(SigningAlgorithm::EdDSA)[0],
            &keys(SigningAlgorithm::EdDSA)[1],
        );
        let stranger = &keys(SigningAlgorithm::EdDSA)[2];
        let clock = TestClock::at(10_000);
        // a retired long ago: stored, no longer published.
        let ring = ring(&clock, &[record(a, None, 0), record(b, Some(a), 100)]);
        assert_eq!(jwks_kids(&ring), [b.kid.as_str()]);
        for (s, kid) in [
            (signer(a), a.kid.as_str()),
            (signer(stranger), stranger.kid.as_str()),
            (signer(b), "unknown"),
        ] {
            let h = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
            assert_eq!(
                ring.decode(&forge(s.as_ref(), &h, &payload())),
                Err(TokenDecodeError::BadSignature),
                "{kid}"
            );
        }
        // The stranger's key under b's kid does not verify either.
        let h = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": b.kid});
        assert_eq!(
            ring.decode(&forge(signer(stranger).as_ref(), &h, &payload())),
            Err(TokenDecodeError::BadSignature)
        );
    }

    #[test]
    fn a_failed_install_keeps_the_previous_keys() {
        let (a, b) = (
            &keys(SigningAlgorithm::ES256)[0],
            &keys(SigningAlgorithm::ES256)[1],
        );
        let (ours, other) = (KeyVault::from_key(&[1; 32]), KeyVault::from_key(&[2; 32]));
        let clock = TestClock::at(50);
        let ring = JoseKeyRing::new(Arc::new(ours), clock.clone(), ttl());
        let mut ra = record(a, None, 0);
        ra.private_key = KeyVault::from_key(&[1; 32]).seal(&a.kid, &a.pem).unwrap();
        ring.install(std::slice::from_ref(&ra)).unwrap();
        let by_a = ring.sign(&claims(50)).unwrap();

        let mut rb = record(b, Some(a), 100);
        rb.private_key = other.seal(&b.kid, &b.pem).unwrap();
        let e = ring.install_keys(&[ra.clone(), rb.clone()]).unwrap_err();
        assert!(
            matches!(&e, CryptoError::SealedKey { kid, .. } if *kid == b.kid),
            "{e:?}"
        );
        assert!(ring.install(&[ra.clone(), rb.clone()]).is_err());
        assert_eq!(jwks_kids(&ring), [a.kid.as_str()]);
        assert_eq!(ring.decode(&by_a).unwrap(), claims(50));
        clock.set(200);
        assert_eq!(kid_of(&ring.sign(&claims(200)).unwrap()), a.kid);

        // A PEM that does not parse fails the same way.
        rb.private_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        assert!(matches!(
            ring.install_keys(&[ra.clone(), rb]),
            Err(CryptoError::InvalidKey { .. })
        ));
        assert_eq!(jwks_kids(&ring), [a.kid.as_str()]);
    }

    #[test]
    fn install_parses_new_keys_only_and_drops_missing_ones() {
        let (a, b) = (
            &keys(SigningAlgorithm::EdDSA)[0],
            &keys(SigningAlgorithm::EdDSA)[1],
        );
        let clock = TestClock::at(50);
        let ring = ring(&clock, &[record(a, None, 0)]);
        // a is loaded already: its stored text is not read again.
        let mut ra = record(a, None, 0);
        ra.private_key = "not read".into();
        ring.install(&[ra.clone(), record(b, Some(a), 100)])
            .unwrap();
        assert_eq!(jwks_kids(&ring), [a.kid.clone(), b.kid.clone()]);
        // a no longer given: gone.
        ring.install(&[record(b, None, 0)]).unwrap();
        assert_eq!(jwks_kids(&ring), [b.kid.as_str()]);
        // ...and read again when it comes back.
        assert!(ring.install(&[ra]).is_err());
        assert_eq!(jwks_kids(&ring), [b.kid.as_str()]);
    }

    #[test]
    fn nothing_signs_before_the_first_key_is_active() {
        let a = &keys(SigningAlgorithm::EdDSA)[0];
        let clock = TestClock::at(50);
        let empty = JoseKeyRing::new(Arc::new(KeyVault::plaintext()), clock.clone(), ttl());
        assert!(matches!(
            empty.sign(&claims(50)),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(empty.jwks(), json!({"keys": []}));
        let ring = ring(&clock, &[record(a, None, 100)]);
        assert!(matches!(
            ring.sign(&claims(50)),
            Err(StoreError::Unavailable(_))
        ));
        assert!(matches!(
            ring.sign_jwt("audit-head+jwt", &json!({}), t(50)),
            Err(StoreError::Unavailable(_))
        ));
        // Published as next before its instant.
        assert_eq!(jwks_kids(&ring), [a.kid.as_str()]);
        assert_eq!(ring.algorithms(), ["EdDSA"]);
    }

    #[test]
    fn a_key_activating_within_the_second_of_iat_signs() {
        // A deployment's first key, made at 12:00:00.300, signs a token
        // issued at 12:00:00.400 whose iat is 12:00:00.
        let a = &keys(SigningAlgorithm::EdDSA)[0];
        let clock = TestClock::at(0);
        let at = t(0) + Duration::milliseconds(300);
        clock.set_to(at + Duration::milliseconds(100));
        let mut r = a.record(at);
        r.created_at = at;
        let ring = ring(&clock, &[r]);
        let token = ring.sign(&claims(0)).unwrap();
        assert_eq!(ring.decode(&token).unwrap(), claims(0));
    }

    #[test]
    fn sign_jwt_verifies_with_the_published_jwk() {
        let (a, b) = (
            &keys(SigningAlgorithm::RS256)[0],
            &keys(SigningAlgorithm::EdDSA)[0],
        );
        let clock = TestClock::at(150);
        let ring = ring(&clock, &[record(a, None, 0), record(b, Some(a), 100)]);
        let claims = json!({"seq": 42, "hash": "abc", "ts": "2026-09-21T00:00:00Z"});
        for (at, key) in [(t(50), a), (t(150), b)] {
            let token = ring.sign_jwt("audit-head+jwt", &claims, at).unwrap();
            let h = header(&token);
            assert_eq!(
                h,
                json!({"alg": key.algorithm.as_str(), "typ": "audit-head+jwt", "kid": key.kid})
            );
            let jwk = ring.jwks()["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|j| j["kid"] == key.kid.as_str())
                .unwrap()
                .clone();
            let jwk = Jwk::from_map(jwk.as_object().unwrap().clone()).unwrap();
            let verifier: Box<dyn JwsVerifier> = match key.algorithm {
                SigningAlgorithm::RS256 => Box::new(RS256.verifier_from_jwk(&jwk).unwrap()),
                SigningAlgorithm::ES256 => Box::new(ES256.verifier_from_jwk(&jwk).unwrap()),
                SigningAlgorithm::EdDSA => Box::new(EdDSA.verifier_from_jwk(&jwk).unwrap()),
            };
            let (payload, header) =
                josekit::jws::deserialize_compact(&token, verifier.as_ref()).unwrap();
            assert_eq!(header.token_type(), Some("audit-head+jwt"));
            assert_eq!(header.key_id(), Some(key.kid.as_str()));
            assert_eq!(serde_json::from_slice::<Value>(&payload).unwrap(), claims);
            // Not an access token.
            assert_eq!(ring.decode(&token), Err(TokenDecodeError::BadSignature));
        }
    }

    #[test]
    fn from_pem_file_is_one_always_active_key() {
        let key = &keys(SigningAlgorithm::ES256)[0];
        let dir = std::env::temp_dir().join(format!("idp-crypto-ring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("signing.pem");
        std::fs::write(&path, &key.pem).unwrap();
        let clock = TestClock::at(0);
        let ring =
            JoseKeyRing::from_pem_file(&path, SigningAlgorithm::ES256, clock, ttl()).unwrap();
        assert_eq!(ring.active_key_id(), Some(key.kid.clone()));
        let token = ring.sign(&claims(0)).unwrap();
        assert_eq!(kid_of(&token), key.kid);
        assert_eq!(ring.decode(&token).unwrap(), claims(0));
        assert!(matches!(
            JoseKeyRing::from_pem_file(&path, SigningAlgorithm::RS256, TestClock::at(0), ttl()),
            Err(CryptoError::InvalidKey { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
