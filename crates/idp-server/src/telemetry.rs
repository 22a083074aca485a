//! Logs and the readings behind the server's probed metrics.
//!
//! * [`init_logging`]: text or JSON lines on stderr, filtered by `RUST_LOG`.
//! * [`HashQueue`]: counts the secret hashes and verifications in the hasher
//!   (waiting for a slot or running), for `agentidp_hash_queue_depth`.
//! * [`pg_pool_status`]: the PostgreSQL pool's size, for `agentidp_db_pool_*`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use idp_domain::StoreError;
use idp_domain::ports::SecretHasher;
use idp_domain::values::{ClientSecret, SecretHash};
use idp_http::metrics::{PoolStatus, Probe};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::config::LogFormat;

/// Log targets whose debug lines carry what must never be logged, capped at
/// `info` unless `RUST_LOG` names them: `tokio_postgres` logs every bind
/// parameter of every statement at debug (emails, secret hashes, addresses).
const CAPPED_TARGETS: &[&str] = &["tokio_postgres"];

/// The filter `RUST_LOG` describes (`info` when unset), with
/// `CAPPED_TARGETS` held at `info` when it asks for more than `info`
/// without naming them. A directive that does not parse is an error naming
/// `RUST_LOG`.
pub fn log_filter(rust_log: Option<&str>) -> anyhow::Result<EnvFilter> {
    let spec = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let parse = |spec: &str| {
        EnvFilter::builder()
            .with_default_directive(LevelFilter::INFO.into())
            .parse(spec)
    };
    let filter = parse(spec).map_err(|e| anyhow::anyhow!("RUST_LOG={spec:?} is invalid: {e}"))?;
    let capped: Vec<String> = CAPPED_TARGETS
        .iter()
        .filter(|target| !spec.contains(*target))
        .map(|target| format!("{target}=info"))
        .collect();
    if capped.is_empty()
        || filter
            .max_level_hint()
            .is_none_or(|l| l <= LevelFilter::INFO)
    {
        return Ok(filter);
    }
    let spec = format!("{spec},{}", capped.join(","));
    parse(&spec).map_err(|e| anyhow::anyhow!("RUST_LOG={spec:?} is invalid: {e}"))
}

/// Installs the global subscriber: logs go to stderr, so stdout carries only
/// a command's result. Text is colored only on a terminal. JSON is one object
/// per line, the event's fields at the top level and the enclosing spans (the
/// request's, with its `request_id`) under `span` and `spans`.
pub fn init_logging(format: LogFormat, rust_log: Option<&str>) -> anyhow::Result<()> {
    let filter = log_filter(rust_log)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A subscriber already installed (a second `run` in one process) stays.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    Ok(())
}

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
    pub fn probe(&self) -> Probe<usize> {
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

/// Reads the PostgreSQL pool's state (deadpool's own counters; no I/O).
pub fn pg_pool_status(pool: idp_store_postgres::PgPool) -> Probe<PoolStatus> {
    Arc::new(move || {
        let status = pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    })
}

/// Reads the embedded store's pool state (its own counters; no I/O).
pub fn sqlite_pool_status(store: Arc<idp_store_sqlite::SqliteStore>) -> Probe<PoolStatus> {
    Arc::new(move || {
        let status = store.pool_status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    })
}

#[cfg(test)]
mod tests {
    use tokio::sync::Notify;

    use super::*;

    #[test]
    fn an_unparsable_filter_names_rust_log() {
        let err = log_filter(Some("idp_http=loudest"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("RUST_LOG="), "{err}");
    }

    #[test]
    fn debug_holds_the_statement_logger_at_info_unless_named() {
        assert_eq!(
            log_filter(Some("debug")).unwrap().to_string(),
            "tokio_postgres=info,debug"
        );
        assert_eq!(
            log_filter(Some("debug,tokio_postgres=debug"))
                .unwrap()
                .to_string(),
            "tokio_postgres=debug,debug"
        );
        assert_eq!(log_filter(Some("warn")).unwrap().to_string(), "warn");
        assert_eq!(log_filter(None).unwrap().to_string(), "info");
        assert_eq!(log_filter(Some("  ")).unwrap().to_string(), "info");
    }

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
