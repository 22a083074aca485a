//! A memory of secrets that already passed a slow-hash verification, so a client
//! presenting the same secret again costs an HMAC instead of an Argon2id run.
//!
//! Entries are keyed by the stored hash string. Rotation writes a new hash (new
//! random salt), so the old entry can never match again; revocation, expiry,
//! suspension and decommission are decided from the rows the token service reads
//! from the store on every request, on every node, so this memory never has to
//! be told about them. Only successful verifications enter it; what it keeps is
//! HMAC-SHA256 under a per-process random key, useless to whoever reads memory
//! without that key.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::CryptoError;

type Digest = [u8; 32];

/// Entries kept at most; past it, an arbitrary entry is dropped per insert.
const CAPACITY: usize = 16_384;

/// Secrets verified once, as keyed digests.
pub(crate) struct VerifiedSecrets {
    key: [u8; 32],
    entries: Mutex<HashMap<String, Digest>>,
}

impl VerifiedSecrets {
    /// An empty memory with a fresh random key.
    pub(crate) fn new() -> Result<Self, CryptoError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| CryptoError::Operation(e.to_string()))?;
        Ok(Self {
            key,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn digest(&self, secret: &[u8]) -> Digest {
        // HMAC accepts keys of any length; this cannot fail for 32 bytes.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) else {
            return [0u8; 32];
        };
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }

    /// A poisoned lock only means another thread panicked mid-insert of a plain
    /// map entry; the map is still valid, so recover it.
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Digest>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `secret` was verified before against `stored`, compared in constant time.
    pub(crate) fn contains(&self, stored: &str, secret: &[u8]) -> bool {
        let Some(known) = self.entries().get(stored).copied() else {
            return false;
        };
        bool::from(known.ct_eq(&self.digest(secret)))
    }

    /// Remembers a successful verification.
    pub(crate) fn insert(&self, stored: &str, secret: &[u8]) {
        let digest = self.digest(secret);
        let mut entries = self.entries();
        if entries.len() >= CAPACITY
            && !entries.contains_key(stored)
            && let Some(evicted) = entries.keys().next().cloned()
        {
            entries.remove(&evicted);
        }
        entries.insert(stored.to_owned(), digest);
    }

    /// Entries held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_only_the_verified_secret_for_its_hash() {
        let memory = VerifiedSecrets::new().unwrap();
        assert!(!memory.contains("hash-a", b"secret"));
        memory.insert("hash-a", b"secret");
        assert!(memory.contains("hash-a", b"secret"));
        assert!(!memory.contains("hash-a", b"other"));
        assert!(!memory.contains("hash-b", b"secret"));
    }

    #[test]
    fn stays_bounded() {
        let memory = VerifiedSecrets::new().unwrap();
        for i in 0..CAPACITY + 10 {
            memory.insert(&format!("hash-{i}"), b"s");
        }
        assert_eq!(memory.len(), CAPACITY);
    }

    #[test]
    fn keys_differ_per_process_instance() {
        let (a, b) = (
            VerifiedSecrets::new().unwrap(),
            VerifiedSecrets::new().unwrap(),
        );
        assert_ne!(a.digest(b"s"), b.digest(b"s"));
    }
}
