use std::num::NonZeroUsize;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use async_trait::async_trait;
use idp_domain::StoreError;
use idp_domain::ports::SecretHasher;
use idp_domain::values::{ClientSecret, SecretHash};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::CryptoError;
use crate::verified::VerifiedSecrets;

/// Hex characters of SHA-256(secret) kept as the lookup hint: 32 bits, enough
/// to pick the right credential among an agent's few, far too few to test
/// guesses of a 256-bit secret against.
const HINT_LEN: usize = 8;

/// [`SecretHasher`] with Argon2id (`Argon2::default()`: m=19 MiB, t=2, p=1) for
/// new hashes; verifies Argon2id/Argon2i/Argon2d PHC strings and bcrypt
/// (`$2a$`, `$2b$`, `$2y$`) hashes.
///
/// Every hash and verification runs on tokio's blocking pool, at most
/// `max_concurrency` at a time (a semaphore: the rest wait their turn instead of
/// piling up threads and memory), inside the caller's tracing span. The permit
/// travels with the blocking task, so a cancelled request does not free a slot
/// before its hash is actually done.
///
/// Both libraries compare the computed and stored digests in constant time.
#[derive(Clone)]
pub struct Argon2SecretHasher {
    permits: Arc<Semaphore>,
    /// An Argon2id hash of a random secret, made once at construction, for
    /// [`SecretHasher::verify_dummy`].
    dummy_hash: Arc<str>,
    /// Secrets that already verified, so repeats skip the slow hash.
    verified: Arc<VerifiedSecrets>,
}

impl std::fmt::Debug for Argon2SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2SecretHasher")
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Argon2SecretHasher {
    /// A hasher running at most `max_concurrency` (at least 1) hashes at once.
    ///
    /// Computes the dummy hash synchronously (one Argon2id hash, ~20 ms in
    /// release); call it at start-up, not on an async worker under load.
    pub fn new(max_concurrency: usize) -> Result<Self, CryptoError> {
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| CryptoError::Operation(e.to_string()))?;
        let dummy_hash = Argon2::default()
            .hash_password(hex::encode(random).as_bytes())
            .map_err(|e| CryptoError::Operation(e.to_string()))?
            .to_string();
        Ok(Self {
            permits: Arc::new(Semaphore::new(max_concurrency.max(1))),
            dummy_hash: dummy_hash.into(),
            verified: Arc::new(VerifiedSecrets::new()?),
        })
    }

    /// A hasher with one permit per CPU the process may use.
    pub fn with_default_concurrency() -> Result<Self, CryptoError> {
        Self::new(Self::default_concurrency())
    }

    /// The default number of concurrent hashes: the available parallelism.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
    }

    /// Runs `work` on the blocking pool under a permit and the current span.
    async fn run_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Unknown(anyhow::Error::new(e)))?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _entered = span.enter();
            work()
        })
        .await
        .map_err(|e| StoreError::Unknown(anyhow::anyhow!("hashing task failed: {e}")))
    }
}

/// The lookup hint of `secret`: the first [`HINT_LEN`] lowercase hex
/// characters of its SHA-256.
fn hint_of(secret: &ClientSecret) -> String {
    let mut hint = hex::encode(Sha256::digest(secret.expose().as_bytes()));
    hint.truncate(HINT_LEN);
    hint
}

/// Verifies `secret` against a stored PHC (Argon2) or MCF (bcrypt) string. A
/// malformed or unknown hash is a mismatch, logged, never an error or a panic.
fn verify_blocking(secret: &[u8], stored: &str) -> bool {
    if ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        let parsed = match PasswordHash::new(stored) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::warn!(error = %e, "malformed Argon2 hash in store; treated as mismatch");
                return false;
            }
        };
        // The hash's own algorithm, version and parameters are used, not
        // those of `Argon2::default()`.
        match Argon2::default().verify_password(secret, &parsed) {
            Ok(()) => true,
            Err(argon2::password_hash::Error::PasswordInvalid) => false,
            Err(e) => {
                tracing::warn!(error = %e, "unusable Argon2 hash in store; treated as mismatch");
                false
            }
        }
    } else if ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        match bcrypt::verify(secret, stored) {
            Ok(matches) => matches,
            Err(e) => {
                tracing::warn!(error = %e, "malformed bcrypt hash in store; treated as mismatch");
                false
            }
        }
    } else {
        tracing::warn!("stored secret hash has an unknown format; treated as mismatch");
        false
    }
}

#[async_trait]
impl SecretHasher for Argon2SecretHasher {
    async fn hash(&self, secret: &ClientSecret) -> Result<SecretHash, StoreError> {
        let hint = hint_of(secret);
        let secret = secret.clone();
        let hash = self
            .run_blocking(move || {
                Argon2::default()
                    .hash_password(secret.expose().as_bytes())
                    .map(|hash| hash.to_string())
            })
            .await?
            .map_err(|e| StoreError::Unknown(anyhow::anyhow!("argon2 hashing failed: {e}")))?;
        Ok(SecretHash {
            hash,
            hint: Some(hint),
        })
    }

    async fn verify(&self, secret: &ClientSecret, hash: &SecretHash) -> Result<bool, StoreError> {
        if self
            .verified
            .contains(&hash.hash, secret.expose().as_bytes())
        {
            return Ok(true);
        }
        let owned_secret = secret.clone();
        let stored = hash.hash.clone();
        let matches = self
            .run_blocking(move || verify_blocking(owned_secret.expose().as_bytes(), &stored))
            .await?;
        if matches {
            self.verified.insert(&hash.hash, secret.expose().as_bytes());
        }
        Ok(matches)
    }

    async fn verify_dummy(&self, secret: &ClientSecret) -> Result<(), StoreError> {
        let secret = secret.clone();
        let stored = Arc::clone(&self.dummy_hash);
        self.run_blocking(move || {
            // The answer is irrelevant; the point is the time spent.
            let _ = verify_blocking(secret.expose().as_bytes(), &stored);
        })
        .await
    }

    fn lookup_hint(&self, secret: &ClientSecret) -> String {
        hint_of(secret)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn secret(s: &str) -> ClientSecret {
        ClientSecret::new(s.to_owned())
    }

    const SECRET: &str = "sk_live_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = Argon2SecretHasher::new(2).unwrap();
        let hash = hasher.hash(&secret(SECRET)).await.unwrap();
        assert!(
            hash.hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            hash.hash
        );
        assert!(hasher.verify(&secret(SECRET), &hash).await.unwrap());
        assert!(
            !hasher
                .verify(&secret("sk_live_wrong"), &hash)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn salts_are_random() {
        let hasher = Argon2SecretHasher::new(2).unwrap();
        let a = hasher.hash(&secret(SECRET)).await.unwrap();
        let b = hasher.hash(&secret(SECRET)).await.unwrap();
        assert_ne!(a.hash, b.hash);
    }

    #[tokio::test]
    async fn hint_is_eight_hex_of_sha256_and_stored_by_hash() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        // sha256("abc") = ba7816bf...
        assert_eq!(hasher.lookup_hint(&secret("abc")), "ba7816bf");
        let hash = hasher.hash(&secret(SECRET)).await.unwrap();
        assert_eq!(
            hash.hint.as_deref(),
            Some(hasher.lookup_hint(&secret(SECRET)).as_str())
        );
        assert_ne!(
            hasher.lookup_hint(&secret(SECRET)),
            hasher.lookup_hint(&secret("x"))
        );
    }

    #[tokio::test]
    async fn verifies_bcrypt() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        let bcrypt_hash = bcrypt::hash(SECRET, 4).unwrap();
        assert!(bcrypt_hash.starts_with("$2b$04$"));
        for variant in ["$2a$", "$2b$", "$2y$"] {
            let stored = SecretHash {
                hash: format!("{variant}{}", &bcrypt_hash[4..]),
                hint: None,
            };
            assert!(
                hasher.verify(&secret(SECRET), &stored).await.unwrap(),
                "{variant}"
            );
            assert!(
                !hasher
                    .verify(&secret("sk_live_nope"), &stored)
                    .await
                    .unwrap(),
                "{variant}"
            );
        }
    }

    #[tokio::test]
    async fn verifies_argon2i_and_argon2d() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        let params = argon2::Params::new(8 * 1024, 1, 1, None).unwrap();
        for algorithm in [argon2::Algorithm::Argon2i, argon2::Algorithm::Argon2d] {
            let a2 = Argon2::new(algorithm, argon2::Version::V0x13, params.clone());
            let stored = a2.hash_password(SECRET.as_bytes()).unwrap().to_string();
            let stored = SecretHash {
                hash: stored,
                hint: None,
            };
            assert!(hasher.verify(&secret(SECRET), &stored).await.unwrap());
            assert!(!hasher.verify(&secret("sk_live_no"), &stored).await.unwrap());
        }
    }

    #[tokio::test]
    async fn malformed_hashes_verify_false() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        for bad in [
            "",
            "plaintext",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$bm90YmFzZTY0$",
            "$argon2id$v=19$m=1,t=0,p=0$c2FsdHNhbHQ$aGFzaGhhc2g",
            "$2b$04$short",
            "$2b$99$abcdefghijklmnopqrstuuJjOq0i6X.4cSzKD6Tvb1wFn0o2lR1bq",
            "$1$md5crypt$abc",
            "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
        ] {
            let stored = SecretHash {
                hash: bad.to_owned(),
                hint: None,
            };
            assert!(
                !hasher.verify(&secret(SECRET), &stored).await.unwrap(),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn verify_dummy_costs_about_one_verification() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        assert!(
            hasher
                .dummy_hash
                .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
        );
        let real = hasher.hash(&secret(SECRET)).await.unwrap();
        // The fastest of a few runs each, to shrug off a busy machine.
        let (mut verify, mut dummy) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            let started = Instant::now();
            // A wrong secret: never remembered, so always the slow path.
            hasher
                .verify(&secret("sk_live_wrong"), &real)
                .await
                .unwrap();
            verify = verify.min(started.elapsed());
            let started = Instant::now();
            hasher.verify_dummy(&secret(SECRET)).await.unwrap();
            dummy = dummy.min(started.elapsed());
        }
        // Same parameters, so within a generous factor of each other.
        assert!(
            dummy * 4 > verify && verify * 4 > dummy,
            "{dummy:?} vs {verify:?}"
        );
    }

    #[tokio::test]
    async fn only_successful_verifications_are_remembered() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        let real = hasher.hash(&secret(SECRET)).await.unwrap();
        assert!(
            !hasher
                .verify(&secret("sk_live_wrong"), &real)
                .await
                .unwrap()
        );
        assert_eq!(hasher.verified.len(), 0);
        assert!(hasher.verify(&secret(SECRET), &real).await.unwrap());
        assert_eq!(hasher.verified.len(), 1);
        // Remembered: true again, and a wrong secret is still refused.
        assert!(hasher.verify(&secret(SECRET), &real).await.unwrap());
        assert!(
            !hasher
                .verify(&secret("sk_live_wrong"), &real)
                .await
                .unwrap()
        );
        // A rotated credential has a new hash: the old secret does not match it.
        let rotated = hasher.hash(&secret("sk_live_new")).await.unwrap();
        assert!(!hasher.verify(&secret(SECRET), &rotated).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_is_bounded_by_the_semaphore() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        let permit = Arc::clone(&hasher.permits).acquire_owned().await.unwrap();
        let h = hasher.clone();
        let task = tokio::spawn(async move { h.hash(&secret(SECRET)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!task.is_finished(), "hash ran without a permit");
        drop(permit);
        assert!(task.await.unwrap().is_ok());
        assert_eq!(hasher.permits.available_permits(), 1);
    }

    #[test]
    fn zero_concurrency_means_one() {
        let hasher = Argon2SecretHasher::new(0).unwrap();
        assert_eq!(hasher.permits.available_permits(), 1);
        assert!(Argon2SecretHasher::default_concurrency() >= 1);
    }
}
