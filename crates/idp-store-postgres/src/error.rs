//! Error policy of the PostgreSQL adapter: the one place where library errors
//! become [`StoreError`].
//!
//! * The database or the pool cannot be reached (pool wait/create/recycle
//!   timeout, closed pool, refused or lost connection):
//!   [`StoreError::Unavailable`], which the HTTP layer answers with `503`.
//! * A unique constraint refused a write: [`StoreError::Duplicate`]. The only
//!   unique key a caller can hit is the agents' normalized email; the domain
//!   treats a duplicate anywhere else as a bug.
//! * Everything else (a bad query, a row that does not parse, a trigger refusing
//!   a write): [`StoreError::Unknown`], a bug or a broken database.
//!
//! No diesel, deadpool or tokio-postgres type appears in a public signature.
//! Causes are flattened into the message of an `anyhow::Error` (one line, for
//! the log; never for a response body).

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::PoolError as ManagerError;
use diesel_async::pooled_connection::deadpool::PoolError;
use idp_domain::StoreError;

/// The error of a unit of work run on one connection (usually a transaction):
/// either the database failed, or a rule of the port refused the write, which
/// also rolls the transaction back.
#[derive(Debug)]
pub(crate) enum TxError {
    /// The database answered an error.
    Db(DieselError),
    /// A port rule refused (`NotFound`, `LimitExceeded`, ...), or a row did not parse.
    Refused(StoreError),
}

impl From<DieselError> for TxError {
    fn from(err: DieselError) -> Self {
        TxError::Db(err)
    }
}

impl From<StoreError> for TxError {
    fn from(err: StoreError) -> Self {
        TxError::Refused(err)
    }
}

impl From<TxError> for StoreError {
    fn from(err: TxError) -> Self {
        match err {
            TxError::Db(e) => from_diesel(e),
            TxError::Refused(e) => e,
        }
    }
}

/// Maps a query error.
pub(crate) fn from_diesel(err: DieselError) -> StoreError {
    match err {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => StoreError::Duplicate,
        // The connection died under the query, or left a transaction it could
        // not roll back because it died.
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | DieselError::BrokenTransactionManager => {
            StoreError::Unavailable(anyhow::anyhow!("database connection lost: {err}"))
        }
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, ref info)
            if is_shutting_down(info.message()) =>
        {
            StoreError::Unavailable(anyhow::anyhow!("database shutting down: {err}"))
        }
        other => StoreError::Unknown(anyhow::anyhow!("database query failed: {other}")),
    }
}

/// Whether a database error says the server is going away or not there yet
/// (SQLSTATE class 57: `admin_shutdown`, `crash_shutdown`,
/// `cannot_connect_now`). diesel-async keeps no SQLSTATE outside its short list
/// of constraint errors, so the server's message is what is left; these are
/// its English texts (`lc_messages` other than English leaves such an error a
/// 500, as before).
fn is_shutting_down(message: &str) -> bool {
    const PREFIXES: [&str; 3] = [
        "terminating connection due to",
        "the database system is shutting down",
        "the database system is starting up",
    ];
    PREFIXES.iter().any(|prefix| message.starts_with(prefix))
}

/// Maps a failure to check a connection out of the pool.
pub(crate) fn from_pool(err: PoolError) -> StoreError {
    match err {
        PoolError::Timeout(kind) => {
            StoreError::Unavailable(anyhow::anyhow!("database pool timed out ({kind:?})"))
        }
        PoolError::Closed => StoreError::Unavailable(anyhow::anyhow!("database pool is closed")),
        PoolError::Backend(ManagerError::ConnectionError(e)) => {
            StoreError::Unavailable(anyhow::anyhow!("cannot connect to the database: {e}"))
        }
        PoolError::Backend(ManagerError::QueryError(e)) => StoreError::Unavailable(
            anyhow::anyhow!("database connection failed its health check: {e}"),
        ),
        other => StoreError::Unknown(anyhow::anyhow!("database pool misconfigured: {other}")),
    }
}

/// A row that does not parse into its domain entity: the database holds
/// something the program never writes.
pub(crate) fn corrupt_row(
    table: &str,
    key: impl std::fmt::Display,
    err: impl std::fmt::Display,
) -> StoreError {
    StoreError::Unknown(anyhow::anyhow!("corrupt row in {table} ({key}): {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violation_is_duplicate() {
        let err = DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("duplicate key".to_owned()),
        );
        assert!(matches!(from_diesel(err), StoreError::Duplicate));
    }

    #[test]
    fn lost_connection_is_unavailable() {
        let err = DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand,
            Box::new("connection closed".to_owned()),
        );
        assert!(matches!(from_diesel(err), StoreError::Unavailable(_)));
        assert!(matches!(
            from_diesel(DieselError::BrokenTransactionManager),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn a_server_going_away_is_unavailable() {
        for message in [
            "terminating connection due to administrator command",
            "terminating connection due to unexpected postmaster exit",
            "the database system is shutting down",
            "the database system is starting up",
        ] {
            let err = DieselError::DatabaseError(
                DatabaseErrorKind::Unknown,
                Box::new(message.to_owned()),
            );
            assert!(
                matches!(from_diesel(err), StoreError::Unavailable(_)),
                "{message}"
            );
        }
        let err = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("permission denied for table agents".to_owned()),
        );
        assert!(matches!(from_diesel(err), StoreError::Unknown(_)));
    }

    #[test]
    fn other_query_errors_are_unknown() {
        assert!(matches!(
            from_diesel(DieselError::NotFound),
            StoreError::Unknown(_)
        ));
        let err = DieselError::DatabaseError(
            DatabaseErrorKind::CheckViolation,
            Box::new("check".to_owned()),
        );
        assert!(matches!(from_diesel(err), StoreError::Unknown(_)));
    }

    #[test]
    fn pool_failures_are_unavailable() {
        assert!(matches!(
            from_pool(PoolError::Closed),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_pool(PoolError::Timeout(deadpool::managed::TimeoutType::Wait)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_pool(PoolError::NoRuntimeSpecified),
            StoreError::Unknown(_)
        ));
    }
}
