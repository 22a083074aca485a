//! A memory of access tokens whose signature already checked, so a token
//! presented again (a caller's bearer token on every API call, the same token
//! introspected by each resource server it reaches) costs a SHA-256 and a map
//! lookup instead of a signature verification: an ES256 verification is about
//! four times the cost of the rest of an introspection on this kind of machine.
//!
//! An entry is keyed by the SHA-256 of the whole compact token, so only the
//! exact bytes that verified can match. It holds the kid that verified it,
//! and [`crate::JoseKeyRing`] answers from it only while that key is still
//! published, so retiring a key ends its entries' use at once. Everything
//! else about a token (expiry, revocation, its agent's and credential's
//! state) is decided by the token service on every request, never here. Only
//! tokens that verified enter; entries leave once expired, or when the memory
//! is full.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use idp_domain::token::AccessTokenClaims;
use sha2::{Digest, Sha256};

type TokenDigest = [u8; 32];

/// Tokens kept at most. An entry is a few hundred bytes of claims, so a full
/// memory is a few MiB.
pub(crate) const CAPACITY: usize = 8_192;

/// A verified token's claims and the key that verified them.
struct Entry {
    kid: String,
    claims: AccessTokenClaims,
}

/// Tokens whose signature verified, by digest.
pub(crate) struct VerifiedTokens {
    capacity: usize,
    entries: Mutex<HashMap<TokenDigest, Entry>>,
}

impl VerifiedTokens {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    /// A poisoned lock only means another thread panicked while touching a
    /// plain map; the map is still valid, so recover it.
    fn entries(&self) -> MutexGuard<'_, HashMap<TokenDigest, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The claims of the token with this digest and the kid that verified
    /// them, if it verified before and had not expired at `now` (unix seconds).
    pub(crate) fn get(
        &self,
        digest: &TokenDigest,
        now: i64,
    ) -> Option<(String, AccessTokenClaims)> {
        let mut entries = self.entries();
        let entry = entries.get(digest)?;
        if entry.claims.exp <= now {
            entries.remove(digest);
            return None;
        }
        Some((entry.kid.clone(), entry.claims.clone()))
    }

    /// Remembers a token that verified under `kid`. When full, the expired
    /// entries go first; if that frees less than an eighth of the room,
    /// arbitrary ones go too, so a full memory costs one sweep per
    /// `capacity / 8` insertions at most.
    pub(crate) fn insert(
        &self,
        digest: TokenDigest,
        kid: &str,
        claims: &AccessTokenClaims,
        now: i64,
    ) {
        if claims.exp <= now || self.capacity == 0 {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(&digest) {
            entries.retain(|_, e| e.claims.exp > now);
            let keep = self.capacity - self.capacity.div_ceil(8);
            if entries.len() > keep {
                let excess: Vec<TokenDigest> =
                    entries.keys().take(entries.len() - keep).copied().collect();
                for key in excess {
                    entries.remove(&key);
                }
            }
        }
        entries.insert(
            digest,
            Entry {
                kid: kid.to_owned(),
                claims: claims.clone(),
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use idp_domain::token::Audience;

    use super::*;

    fn claims(jti: &str, exp: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://idp.test".into(),
            sub: "agent".into(),
            aud: Audience::One("https://idp.test".into()),
            client_id: "agent".into(),
            scope: "a:read".into(),
            jti: jti.into(),
            iat: 0,
            nbf: 0,
            exp,
            owner: "owner".into(),
            agent_type: "custom".into(),
            deployment_env: "test".into(),
            cid: "cred".into(),
            cnf: None,
            act: None,
            dlg: Vec::new(),
        }
    }

    fn remember(memory: &VerifiedTokens, token: &str, exp: i64, now: i64) {
        memory.insert(VerifiedTokens::digest(token), "k", &claims(token, exp), now);
    }

    fn knows(memory: &VerifiedTokens, token: &str, now: i64) -> bool {
        memory.get(&VerifiedTokens::digest(token), now).is_some()
    }

    #[test]
    fn answers_only_the_exact_token_that_was_remembered() {
        let memory = VerifiedTokens::new(4);
        memory.insert(VerifiedTokens::digest("a.b.c"), "k1", &claims("1", 100), 0);

        let (kid, got) = memory.get(&VerifiedTokens::digest("a.b.c"), 0).unwrap();
        assert_eq!((kid.as_str(), got.jti.as_str()), ("k1", "1"));
        assert!(!knows(&memory, "a.b.d", 0));
        assert!(!knows(&memory, "a.b.c ", 0));
    }

    #[test]
    fn an_expired_token_is_neither_answered_nor_remembered() {
        let memory = VerifiedTokens::new(4);
        remember(&memory, "t1", 100, 0);
        assert!(!knows(&memory, "t1", 100));
        assert_eq!(memory.len(), 0, "the expired entry is dropped on sight");

        remember(&memory, "t2", 100, 100);
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn a_full_memory_drops_expired_entries_first_and_stays_bounded() {
        let memory = VerifiedTokens::new(8);
        for i in 0..7 {
            remember(&memory, &format!("old{i}"), 50, 0);
        }
        remember(&memory, "live", 500, 0);
        assert_eq!(memory.len(), 8);

        remember(&memory, "new", 500, 60);
        assert_eq!(memory.len(), 2, "the seven expired entries went");
        assert!(knows(&memory, "live", 60));
        assert!(knows(&memory, "new", 60));

        for i in 0..100 {
            remember(&memory, &format!("n{i}"), 500, 60);
            assert!(memory.len() <= 8);
        }
        assert!(knows(&memory, "n99", 60));
    }

    #[test]
    fn a_zero_capacity_memory_remembers_nothing() {
        let memory = VerifiedTokens::new(0);
        remember(&memory, "t", 100, 0);
        assert!(!knows(&memory, "t", 0));
    }
}
