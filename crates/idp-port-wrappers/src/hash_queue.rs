//! [`HashQueue`]: how many secret hashes and verifications are inside the
//! hasher (waiting for a thread or running), for `agentidp_hash_queue_depth`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use idp_domain::StoreError;
use idp_domain::ports::SecretHasher;
use idp_domain::values::{ClientSecret, SecretHash};

/// A [`SecretHasher`] that counts the calls inside the one it wraps: waiting
/// for a hashing slot or hashing. The count drops when a call ends or its
/// future is dropped.
///
/// The Argon2 hasher's semaphore does not tell how many wait for it; this
/// counts at the port instead. Calls answered from the verified-secret memory
/// pass through in microseconds and barely register.
#[derive(Clone)]
pub struct HashQueue {
    inner: Arc<dyn SecretHasher>,
    depth: Arc<AtomicUsize>,
}

impl std::fmt::Debug for HashQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashQueue")
            .field("depth", &self.depth.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Holds one place in a [`HashQueue`] until dropped.
struct InQueue<'a>(&'a AtomicUsize);

impl<'a> InQueue<'a> {
    fn enter(depth: &'a AtomicUsize) -> Self {
        depth.fetch_add(1, Ordering::Relaxed);
        Self(depth)
    }
}

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HashQueue {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SecretHasher>) -> Self {
        Self {
            inner,
            depth: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Reads the depth, for `agentidp_hash_queue_depth`.
    pub fn probe(&self) -> Arc<dyn Fn() -> usize + Send + Sync> {
        let depth = self.depth.clone();
        Arc::new(move || depth.load(Ordering::Relaxed))
    }
}

#[async_trait]
impl SecretHasher for HashQueue {
    async fn hash(&self, secret: &ClientSecret) -> Result<SecretHash, StoreError> {
        let _place = InQueue::enter(&self.depth);
        self.inner.hash(secret).await
    }

    async fn verify(&self, secret: &ClientSecret, hash: &SecretHash) -> Result<bool, StoreError> {
        let _place = InQueue::enter(&self.depth);
        self.inner.verify(secret, hash).await
    }

    async fn verify_dummy(&self, secret: &ClientSecret) -> Result<(), StoreError> {
        let _place = InQueue::enter(&self.depth);
        self.inner.verify_dummy(secret).await
    }

    fn lookup_hint(&self, secret: &ClientSecret) -> String {
        self.inner.lookup_hint(secret)
    }

    fn recently_verified(&self, secret: &ClientSecret, hash: &SecretHash) -> bool {
        self.inner.recently_verified(secret, hash)
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::Notify;

    use super::*;

    #[tokio::test]
    async fn the_queue_counts_calls_until_they_end_or_are_dropped() {
        let release = Arc::new(Notify::new());
        let queue = HashQueue::new(Arc::new(SlowHasher(release.clone())));
        let probe = queue.probe();
        assert_eq!(probe(), 0);
        let call = |queue: HashQueue| {
            tokio::spawn(async move {
                let secret = ClientSecret::new("s".to_owned());
                queue.verify_dummy(&secret).await
            })
        };

        let finishing = call(queue.clone());
        let dropped = call(queue.clone());
        while probe() < 2 {
            tokio::task::yield_now().await;
        }
        dropped.abort();
        assert!(dropped.await.is_err());
        assert_eq!(probe(), 1);
        release.notify_one();
        finishing.await.unwrap().unwrap();
        assert_eq!(probe(), 0);
    }

    /// A hasher whose dummy verification waits until notified.
    struct SlowHasher(Arc<Notify>);

    #[async_trait]
    impl SecretHasher for SlowHasher {
        async fn hash(&self, _: &ClientSecret) -> Result<SecretHash, StoreError> {
            Err(StoreError::Unknown(anyhow::anyhow!("not used")))
        }
        async fn verify(&self, _: &ClientSecret, _: &SecretHash) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn verify_dummy(&self, _: &ClientSecret) -> Result<(), StoreError> {
            self.0.notified().await;
            Ok(())
        }
        fn lookup_hint(&self, _: &ClientSecret) -> String {
            String::new()
        }
        fn recently_verified(&self, _: &ClientSecret, _: &SecretHash) -> bool {
            false
        }
    }
}
