use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use idp_domain::StoreError;
use idp_domain::ports::SecretHasher;
use idp_domain::values::{ClientSecret, SecretHash};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{Semaphore, oneshot};

use crate::CryptoError;
use crate::verified::VerifiedSecrets;
use crate::workers::{HashMemory, HashWorkers, TooMuchMemory};

/// Hex characters of SHA-256(secret) kept as the lookup hint: 32 bits, enough
/// to pick the right credential among an agent's few, far too few to test
/// guesses of a 256-bit secret against.
const HINT_LEN: usize = 8;

/// Bytes of random salt in new hashes (the argon2 crate's recommendation).
const SALT_LEN: usize = argon2::RECOMMENDED_SALT_LEN;

/// Argon2id's memory cost (KiB) for every new hash: 9 MiB.
///
/// With [`NEW_HASH_PASSES`] this is one of the five settings OWASP's password
/// storage guidance lists as equal in strength (m=9216 KiB, t=4, p=1), picked
/// over the argon2 crate's default (m=19456 KiB, t=2) because it costs about
/// the same time per hash (11.1 against 13.4 ms on the bench machine) for half
/// the memory, and the server holds one buffer per hashing thread. Hashes
/// stored with other parameters keep verifying with their own.
pub const NEW_HASH_MEMORY_KIB: u32 = 9 * 1024;

/// Argon2id's passes (time cost) for every new hash; see [`NEW_HASH_MEMORY_KIB`].
pub const NEW_HASH_PASSES: u32 = 4;

/// The Argon2id parameters of every new hash: [`NEW_HASH_MEMORY_KIB`],
/// [`NEW_HASH_PASSES`], one lane, 32-byte output.
pub const NEW_HASH_PARAMS: Params = match Params::new(NEW_HASH_MEMORY_KIB, NEW_HASH_PASSES, 1, None)
{
    Ok(params) => params,
    Err(_) => panic!("the new-hash Argon2 parameters are valid"),
};

/// [`SecretHasher`] with Argon2id ([`NEW_HASH_PARAMS`]: m=9 MiB, t=4, p=1) for
/// new hashes; verifies Argon2id/Argon2i/Argon2d PHC strings and bcrypt
/// (`$2a$`, `$2b$`, `$2y$`) hashes.
///
/// Every hash and verification runs on one of `max_concurrency` threads of
/// its own (see the `workers` module), at most `max_concurrency` at a time (a
/// semaphore: the rest wait their turn instead of piling up threads and
/// memory), inside the caller's tracing span. Each thread reuses one Argon2
/// buffer, so the memory hashing holds is bounded by `max_concurrency x 9 MiB`
/// and no hash allocates it anew (a stored hash with a higher memory cost gets
/// a buffer of its own for its verification). The permit travels with the job, so a
/// cancelled request does not free a slot before its hash is actually done.
///
/// Argon2 outputs are compared with `subtle` in constant time; bcrypt's
/// library compares its own in constant time.
#[derive(Clone)]
pub struct Argon2SecretHasher {
    permits: Arc<Semaphore>,
    workers: HashWorkers,
    /// An Argon2id hash of a random secret, made once at construction, for
    /// [`SecretHasher::verify_dummy`].
    dummy_hash: Arc<str>,
    /// Secrets that already verified, so repeats skip the slow hash.
    verified: Arc<VerifiedSecrets>,
    /// Jobs waiting for a permit now, and how many may (see
    /// [`Argon2SecretHasher::with_queue_limit`]).
    waiting: Arc<AtomicUsize>,
    queue_limit: usize,
}

impl std::fmt::Debug for Argon2SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2SecretHasher")
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl Argon2SecretHasher {
    /// A hasher running at most `max_concurrency` (at least 1) hashes at once,
    /// on as many threads of its own. The threads stop when the last clone of
    /// the hasher is dropped.
    ///
    /// Computes the dummy hash before answering (one Argon2id hash, ~20 ms in
    /// release, on a worker while this thread waits); call it at start-up, not
    /// on an async worker under load.
    pub fn new(max_concurrency: usize) -> Result<Self, CryptoError> {
        let concurrency = max_concurrency.max(1);
        let workers = HashWorkers::start(concurrency)?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| CryptoError::Operation(e.to_string()))?;
        let dummy_secret = hex::encode(random);
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        // On a worker, so its kept buffer serves this hash too.
        let submitted = workers.submit(Box::new(move |memory| {
            let _ = reply.send(hash_argon2id(dummy_secret.as_bytes(), memory));
        }));
        let stopped = || CryptoError::Operation("the hashing threads stopped".to_owned());
        if !submitted {
            return Err(stopped());
        }
        let dummy_hash = answer
            .recv()
            .map_err(|_| stopped())?
            .map_err(CryptoError::Operation)?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency)),
            workers,
            dummy_hash: dummy_hash.into(),
            verified: Arc::new(VerifiedSecrets::new()?),
            waiting: Arc::new(AtomicUsize::new(0)),
            queue_limit: usize::MAX,
        })
    }

    /// At most `limit` hashes or verifications wait for a hashing thread at
    /// once; one more is refused at once with [`StoreError::Unavailable`]
    /// (the contract's 503), so a flood of wrong secrets cannot queue work
    /// without bound. Secrets verified before never wait (see
    /// [`SecretHasher::recently_verified`]).
    #[must_use]
    pub fn with_queue_limit(mut self, limit: usize) -> Self {
        self.queue_limit = limit;
        self
    }

    /// A hasher with one permit per CPU the process may use.
    pub fn with_default_concurrency() -> Result<Self, CryptoError> {
        Self::new(Self::default_concurrency())
    }

    /// The default number of concurrent hashes: the available parallelism.
    pub fn default_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
    }

    /// Runs `work` on a hashing thread under a permit and the current span.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut HashMemory) -> T + Send + 'static,
    {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let _place = QueuePlace::take(&self.waiting, self.queue_limit)?;
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .map_err(|e| StoreError::Unknown(anyhow::Error::new(e)))?
            }
        };
        let span = tracing::Span::current();
        let (reply, answer) = oneshot::channel();
        let submitted = self.workers.submit(Box::new(move |memory| {
            let _entered = span.enter();
            let result = work(memory);
            // Free before answering, so a caller that got its answer finds
            // the permit back.
            drop(permit);
            // The caller may have gone; the work is done either way.
            let _ = reply.send(result);
        }));
        if !submitted {
            return Err(StoreError::Unknown(anyhow::anyhow!(
                "the hashing threads stopped"
            )));
        }
        answer
            .await
            .map_err(|_| StoreError::Unknown(anyhow::anyhow!("hashing task failed")))
    }
}

/// A place among the jobs waiting for a hashing thread, given back on drop
/// (also when the waiting request is cancelled).
struct QueuePlace<'a>(&'a AtomicUsize);

impl<'a> QueuePlace<'a> {
    /// Takes a place if fewer than `limit` are taken.
    fn take(waiting: &'a AtomicUsize, limit: usize) -> Result<Self, StoreError> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| {
                StoreError::Unavailable(anyhow::anyhow!(
                    "the hashing queue is full ({limit} waiting)"
                ))
            })?;
        Ok(Self(waiting))
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The lookup hint of `secret`: the first [`HINT_LEN`] lowercase hex
/// characters of its SHA-256.
fn hint_of(secret: &ClientSecret) -> String {
    let mut hint = hex::encode(Sha256::digest(secret.expose().as_bytes()));
    hint.truncate(HINT_LEN);
    hint
}

/// A new Argon2id PHC string of `secret` with [`NEW_HASH_PARAMS`] and a
/// random salt, computed in `memory`.
fn hash_argon2id(secret: &[u8], memory: &mut HashMemory) -> Result<String, String> {
    let params = NEW_HASH_PARAMS;
    let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    memory
        .with_blocks(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(secret, &salt, &mut output, blocks)
        })
        .map_err(|e| format!("{} blocks of memory refused", e.blocks))?
        .map_err(|e| e.to_string())?;
    let phc = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(&salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(&output).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Verifies `secret` against an Argon2 PHC string with the hash's own
/// algorithm, version and parameters, in `memory`; compares in constant time.
/// Unusable hashes are a mismatch, logged.
fn verify_argon2(secret: &[u8], stored: &str, memory: &mut HashMemory) -> bool {
    let unusable = |reason: &dyn std::fmt::Display| {
        tracing::warn!(error = %reason, "unusable Argon2 hash in store; treated as mismatch");
        false
    };
    let parsed = match PasswordHash::new(stored) {
        Ok(parsed) => parsed,
        Err(e) => return unusable(&e),
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return unusable(&"no salt or no hash");
    };
    let algorithm = match Algorithm::new(parsed.algorithm.as_str()) {
        Ok(algorithm) => algorithm,
        Err(e) => return unusable(&e),
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(e) => return unusable(&e),
    };
    // Also reads `keyid` and `data`, and takes the output length from the hash.
    let params = match Params::try_from(&parsed) {
        Ok(params) => params,
        Err(e) => return unusable(&e),
    };
    let block_count = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    // `Output` holds at most 64 bytes.
    let mut buffer = [0u8; 64];
    let Some(computed) = buffer.get_mut(..expected.len()) else {
        return unusable(&"hash longer than 64 bytes");
    };
    match memory.with_blocks(block_count, |blocks| {
        argon2.hash_password_into_with_memory(secret, salt, computed, blocks)
    }) {
        Ok(Ok(())) => bool::from(computed.ct_eq(expected.as_bytes())),
        Ok(Err(e)) => unusable(&e),
        Err(TooMuchMemory { blocks }) => unusable(&format!(
            "memory cost of {blocks} KiB above the limit of {} KiB",
            crate::workers::MAX_BLOCKS
        )),
    }
}

/// Verifies `secret` against a stored PHC (Argon2) or MCF (bcrypt) string. A
/// malformed or unknown hash is a mismatch, logged, never an error or a panic.
fn verify_blocking(secret: &[u8], stored: &str, memory: &mut HashMemory) -> bool {
    if ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| stored.starts_with(p))
    {
        verify_argon2(secret, stored, memory)
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
            .run(move |memory| hash_argon2id(secret.expose().as_bytes(), memory))
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
            .run(move |memory| verify_blocking(owned_secret.expose().as_bytes(), &stored, memory))
            .await?;
        if matches {
            self.verified.insert(&hash.hash, secret.expose().as_bytes());
        }
        Ok(matches)
    }

    async fn verify_dummy(&self, secret: &ClientSecret) -> Result<(), StoreError> {
        let secret = secret.clone();
        let stored = Arc::clone(&self.dummy_hash);
        self.run(move |memory| {
            // The answer is irrelevant; the point is the time spent.
            let _ = verify_blocking(secret.expose().as_bytes(), &stored, memory);
        })
        .await
    }

    fn lookup_hint(&self, secret: &ClientSecret) -> String {
        hint_of(secret)
    }

    fn recently_verified(&self, secret: &ClientSecret, hash: &SecretHash) -> bool {
        self.verified
            .contains(&hash.hash, secret.expose().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use argon2::password_hash::PasswordHasher;

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
            hash.hash.starts_with("$argon2id$v=19$m=9216,t=4,p=1$"),
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
                .starts_with("$argon2id$v=19$m=9216,t=4,p=1$")
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

    #[tokio::test]
    async fn recently_verified_knows_only_secrets_that_verified() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        let real = hasher.hash(&secret(SECRET)).await.unwrap();
        assert!(!hasher.recently_verified(&secret(SECRET), &real));
        assert!(
            !hasher
                .verify(&secret("sk_live_wrong"), &real)
                .await
                .unwrap()
        );
        assert!(!hasher.recently_verified(&secret("sk_live_wrong"), &real));
        assert!(hasher.verify(&secret(SECRET), &real).await.unwrap());
        assert!(hasher.recently_verified(&secret(SECRET), &real));
        assert!(!hasher.recently_verified(&secret("sk_live_wrong"), &real));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once_and_remembered_secrets_skip_it() {
        let hasher = Argon2SecretHasher::new(1).unwrap().with_queue_limit(2);
        let known = hasher.hash(&secret(SECRET)).await.unwrap();
        assert!(hasher.verify(&secret(SECRET), &known).await.unwrap());
        // The only thread is busy and two jobs wait: the queue is full.
        let permit = Arc::clone(&hasher.permits).acquire_owned().await.unwrap();
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let h = hasher.clone();
                tokio::spawn(async move { h.verify_dummy(&secret("sk_live_x")).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(hasher.waiting.load(Ordering::Acquire), 2);
        let started = Instant::now();
        let refused = hasher.verify(&secret("sk_live_wrong"), &known).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{refused:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(50));
        // A secret verified before does not wait at all.
        assert!(hasher.verify(&secret(SECRET), &known).await.unwrap());
        drop(permit);
        for task in waiting {
            task.await.unwrap().unwrap();
        }
        assert_eq!(hasher.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_waiter_gives_its_place_back() {
        let hasher = Argon2SecretHasher::new(1).unwrap().with_queue_limit(1);
        let permit = Arc::clone(&hasher.permits).acquire_owned().await.unwrap();
        let h = hasher.clone();
        let waiter = tokio::spawn(async move { h.verify_dummy(&secret("sk_live_x")).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(hasher.waiting.load(Ordering::Acquire), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(hasher.waiting.load(Ordering::Acquire), 0);
        drop(permit);
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

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crate() {
        use argon2::password_hash::PasswordVerifier;

        let hasher = Argon2SecretHasher::new(1).unwrap();
        let ours = hasher.hash(&secret(SECRET)).await.unwrap();
        let parsed = PasswordHash::new(&ours.hash).unwrap();
        assert_eq!(parsed.salt.unwrap().len(), SALT_LEN);
        assert!(
            Argon2::default()
                .verify_password(SECRET.as_bytes(), &parsed)
                .is_ok()
        );
        let theirs = SecretHash {
            hash: Argon2::default()
                .hash_password(SECRET.as_bytes())
                .unwrap()
                .to_string(),
            hint: None,
        };
        assert!(hasher.verify(&secret(SECRET), &theirs).await.unwrap());
        assert!(!hasher.verify(&secret("sk_live_no"), &theirs).await.unwrap());
    }

    /// A hash of `SECRET` with other parameters, by the argon2 crate itself.
    fn foreign_hash(m_kib: u32, t: u32, p: u32, output_len: usize) -> SecretHash {
        let params = Params::new(m_kib, t, p, Some(output_len)).unwrap();
        let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(SECRET.as_bytes())
            .unwrap()
            .to_string();
        SecretHash { hash, hint: None }
    }

    #[tokio::test]
    async fn verifies_other_costs_lanes_and_output_lengths() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        for stored in [
            // More memory than the kept buffer: a buffer of its own.
            foreign_hash(19_456 + 1_024, 1, 1, 32),
            foreign_hash(1_024, 1, 4, 16),
            foreign_hash(64, 3, 1, 64),
        ] {
            assert!(hasher.verify(&secret(SECRET), &stored).await.unwrap());
            assert!(!hasher.verify(&secret("sk_live_no"), &stored).await.unwrap());
        }
        // Version 0x10 (no `v=` in the string) still verifies.
        let params = Params::new(64, 1, 1, None).unwrap();
        let old = Argon2::new(Algorithm::Argon2id, Version::V0x10, params);
        let stored = old.hash_password(SECRET.as_bytes()).unwrap().to_string();
        let stored = SecretHash {
            hash: stored,
            hint: None,
        };
        assert!(hasher.verify(&secret(SECRET), &stored).await.unwrap());
    }

    #[tokio::test]
    async fn a_memory_cost_above_the_limit_is_refused_without_hashing() {
        let hasher = Argon2SecretHasher::new(1).unwrap();
        let stored = SecretHash {
            hash: format!(
                "$argon2id$v=19$m={},t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                // Argon2 rounds the cost down to a multiple of 4 blocks per lane.
                crate::workers::MAX_BLOCKS + 4
            ),
            hint: None,
        };
        let started = Instant::now();
        assert!(!hasher.verify(&secret(SECRET), &stored).await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// Every hash runs on one of the hasher's own threads, each reusing one
    /// buffer, however many tasks and runtime threads ask at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hashing_threads_and_their_buffers_never_grow() {
        let hasher = Argon2SecretHasher::new(2).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12 {
            let h = hasher.clone();
            tasks.spawn(async move {
                let s = secret(&format!("sk_live_{i}"));
                let hash = h.hash(&s).await.unwrap();
                assert!(h.verify(&s, &hash).await.unwrap());
                h.run(|memory| {
                    (
                        std::thread::current().name().map(str::to_owned),
                        memory.kept(),
                    )
                })
                .await
                .unwrap()
            });
        }
        let seen: std::collections::BTreeSet<_> = tasks.join_all().await.into_iter().collect();
        let names: std::collections::BTreeSet<_> =
            seen.iter().map(|(name, _)| name.clone()).collect();
        assert!(names.len() <= 2, "{seen:?}");
        assert!(
            names
                .iter()
                .all(|n| matches!(n.as_deref(), Some("idp-hash-0" | "idp-hash-1"))),
            "{seen:?}"
        );
        // One buffer per thread, of the kept size, whichever hash ran last.
        assert_eq!(seen.len(), names.len(), "{seen:?}");
        assert!(
            seen.iter()
                .all(|(_, (_, len))| *len == crate::workers::KEPT_BLOCKS)
        );
    }

    #[test]
    fn zero_concurrency_means_one() {
        let hasher = Argon2SecretHasher::new(0).unwrap();
        assert_eq!(hasher.permits.available_permits(), 1);
        assert!(Argon2SecretHasher::default_concurrency() >= 1);
    }
}
