//! Error policy of the SQLite adapter: the one place where library errors
//! become [`StoreError`]. The same policy as the PostgreSQL adapter's:
//!
//! * The database cannot be used right now: another writer kept it locked for
//!   longer than the busy timeout (`SQLITE_BUSY`, `SQLITE_LOCKED`), the file
//!   cannot be opened, the pool timed out or is closed:
//!   [`StoreError::Unavailable`], which the HTTP layer answers with `503`.
//! * A unique constraint refused a write: [`StoreError::Duplicate`]. The only
//!   unique key a caller can hit is the agents' normalized email; the domain
//!   treats a duplicate anywhere else as a bug.
//! * Everything else (a bad query, a row that does not parse, a trigger
//!   refusing a write, a CHECK constraint, a full disk): [`StoreError::Unknown`],
//!   a bug or a broken database.
//!
//! diesel reports SQLite's result codes only as a kind and SQLite's message;
//! the busy and locked codes fall under its `Unknown` kind, so they are told
//! apart by SQLite's fixed message texts (`sqlite3_errstr`), which are stable
//! across SQLite versions.
//!
//! No diesel, deadpool or SQLite type appears in a public signature. Causes are
//! flattened into the message of an `anyhow::Error` (one line, for the log;
//! never for a response body).

use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};
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

/// SQLite's messages for "someone else holds the lock" (after the busy
/// timeout ran out) and "the file cannot be opened".
const UNAVAILABLE_MESSAGES: [&str; 4] = [
    // SQLITE_BUSY
    "database is locked",
    // SQLITE_LOCKED (and its shared-cache variants, which add ": name")
    "database table is locked",
    "database schema is locked",
    // SQLITE_CANTOPEN, also when the WAL or shared-memory file cannot be opened
    "unable to open database file",
];

fn is_unavailable(message: &str) -> bool {
    UNAVAILABLE_MESSAGES
        .iter()
        .any(|known| message.starts_with(known))
}

/// Maps a query error.
pub(crate) fn from_diesel(err: DieselError) -> StoreError {
    match err {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => StoreError::Duplicate,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, ref info)
            if is_unavailable(info.message()) =>
        {
            StoreError::Unavailable(anyhow::anyhow!("database busy or unreachable: {err}"))
        }
        // The blocking task running the query could not be started or joined.
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | DieselError::BrokenTransactionManager => {
            StoreError::Unavailable(anyhow::anyhow!("database connection lost: {err}"))
        }
        other => StoreError::Unknown(anyhow::anyhow!("database query failed: {other}")),
    }
}

/// Maps a failure to open a connection: the file or its directory is missing,
/// unreadable or not writable.
pub(crate) fn from_connection(err: ConnectionError) -> StoreError {
    match err {
        ConnectionError::BadConnection(message) => {
            StoreError::Unavailable(anyhow::anyhow!("cannot open the database: {message}"))
        }
        ConnectionError::CouldntSetupConfiguration(e) => from_diesel(e),
        other => StoreError::Unknown(anyhow::anyhow!("cannot open the database: {other}")),
    }
}

/// Maps a failure to check a connection out of the pool. The pool's backend
/// error is already a [`StoreError`] (see `pool::ConnectionManager`).
pub(crate) fn from_pool(err: deadpool::managed::PoolError<StoreError>) -> StoreError {
    use deadpool::managed::PoolError;
    match err {
        PoolError::Timeout(kind) => {
            StoreError::Unavailable(anyhow::anyhow!("database pool timed out ({kind:?})"))
        }
        PoolError::Closed => StoreError::Unavailable(anyhow::anyhow!("database pool is closed")),
        PoolError::Backend(e) => e,
        PoolError::NoRuntimeSpecified => {
            StoreError::Unknown(anyhow::anyhow!("database pool misconfigured: no runtime"))
        }
        PoolError::PostCreateHook(e) => {
            StoreError::Unknown(anyhow::anyhow!("database pool hook failed: {e}"))
        }
    }
}

/// A blocking task of the store that panicked or was cancelled (the runtime
/// is shutting down).
pub(crate) fn from_join(err: tokio::task::JoinError) -> StoreError {
    if err.is_cancelled() {
        StoreError::Unavailable(anyhow::anyhow!("database task cancelled: {err}"))
    } else {
        StoreError::Unknown(anyhow::anyhow!("database task panicked: {err}"))
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

    fn db_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn unique_violation_is_duplicate() {
        let err = db_error(
            DatabaseErrorKind::UniqueViolation,
            "UNIQUE constraint failed: agents.email_normalized",
        );
        assert!(matches!(from_diesel(err), StoreError::Duplicate));
    }

    #[test]
    fn busy_locked_and_unopenable_are_unavailable() {
        for message in [
            "database is locked",
            "database table is locked",
            "database table is locked: agents",
            "database schema is locked: main",
            "unable to open database file",
        ] {
            let err = from_diesel(db_error(DatabaseErrorKind::Unknown, message));
            assert!(matches!(err, StoreError::Unavailable(_)), "{message}");
        }
        let err = from_connection(ConnectionError::BadConnection(
            "unable to open database file".to_owned(),
        ));
        assert!(matches!(err, StoreError::Unavailable(_)));
        assert!(matches!(
            from_diesel(DieselError::BrokenTransactionManager),
            StoreError::Unavailable(_)
        ));
    }

    #[test]
    fn other_errors_are_unknown() {
        for (kind, message) in [
            (
                DatabaseErrorKind::Unknown,
                "audit_events is append-only: UPDATE refused",
            ),
            (DatabaseErrorKind::Unknown, "database or disk is full"),
            (DatabaseErrorKind::Unknown, "file is not a database"),
            (DatabaseErrorKind::CheckViolation, "CHECK constraint failed"),
            (
                DatabaseErrorKind::ForeignKeyViolation,
                "FOREIGN KEY constraint failed",
            ),
        ] {
            let err = from_diesel(db_error(kind, message));
            assert!(matches!(err, StoreError::Unknown(_)), "{message}");
        }
        assert!(matches!(
            from_diesel(DieselError::NotFound),
            StoreError::Unknown(_)
        ));
    }

    #[test]
    fn pool_failures_are_unavailable() {
        use deadpool::managed::{PoolError, TimeoutType};
        assert!(matches!(
            from_pool(PoolError::Closed),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_pool(PoolError::Timeout(TimeoutType::Wait)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_pool(PoolError::Backend(StoreError::Unavailable(
                anyhow::anyhow!("x")
            ))),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            from_pool(PoolError::NoRuntimeSpecified),
            StoreError::Unknown(_)
        ));
    }
}
