//! Conversion of Redis and pool failures into the domain's [`StoreError`].

use deadpool_redis::PoolError;
use deadpool_redis::redis::{ErrorKind, RedisError, ServerErrorKind};
use idp_domain::StoreError;

/// Connection-level failures and a Redis that cannot serve right now are
/// `Unavailable`; everything else is `Unknown`.
pub(crate) fn from_redis(err: RedisError) -> StoreError {
    let unavailable = err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        );
    if unavailable {
        StoreError::Unavailable(anyhow::Error::new(err).context("redis"))
    } else {
        StoreError::Unknown(anyhow::Error::new(err).context("redis"))
    }
}

/// Whether `err` says the connection itself failed (I/O, dropped, refused,
/// timed out, or anything else after which the `redis` crate would reconnect,
/// such as a reply it could not parse), so it should not be used again.
pub(crate) fn is_connection_failure(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_unrecoverable_error()
}

/// Pool timeouts and failures to open a connection are `Unavailable`.
pub(crate) fn from_pool(err: PoolError) -> StoreError {
    match err {
        PoolError::Timeout(kind) => {
            StoreError::Unavailable(anyhow::anyhow!("redis pool timeout ({kind:?})"))
        }
        PoolError::Backend(e) => {
            StoreError::Unavailable(anyhow::Error::new(e).context("redis connection"))
        }
        PoolError::Closed => StoreError::Unavailable(anyhow::anyhow!("redis pool closed")),
        other => StoreError::Unknown(anyhow::anyhow!("redis pool: {other}")),
    }
}

/// A reply that does not have the shape the script promises.
pub(crate) fn unexpected(what: &str) -> StoreError {
    StoreError::Unknown(anyhow::anyhow!("unexpected redis reply: {what}"))
}
