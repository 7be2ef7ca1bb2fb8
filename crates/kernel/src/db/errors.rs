//! Which database errors mean "unreachable" (answered `503` with `Retry-After`, retried by
//! delivery) and which are bugs or business outcomes: decided here once, for every module,
//! the event log and the app.

use anyhow::anyhow;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::PoolError;

use crate::Unavailable;

/// Wraps a diesel error with context; an [`is_unavailable`] one is marked [`Unavailable`].
pub fn db_error(error: DieselError, context: &'static str) -> anyhow::Error {
    if is_unavailable(&error) {
        anyhow!(Unavailable(error.to_string())).context(context)
    } else {
        anyhow::Error::new(error).context(context)
    }
}

/// Whether `error` means the database cannot be reached right now (answered `503`, safe to
/// retry): the connection was lost (closed, reset, timed out), the server ended the session
/// because it is stopping or crashing, or a transaction was cut off. Any other database
/// error is a bug or a business outcome, for the caller to map.
///
/// diesel-async reports every tokio-postgres error without an SQLSTATE as
/// `UnableToSendCommand` carrying only its message, and a server error whose SQLSTATE it
/// does not know as `Unknown` without the code, so those two are told apart by message.
pub fn is_unavailable(error: &DieselError) -> bool {
    let starts_with_any = |message: &str, prefixes: &[&str]| {
        prefixes.iter().any(|prefix| message.starts_with(prefix))
    };
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
        | DieselError::BrokenTransactionManager => true,
        DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, info) => {
            starts_with_any(info.message(), LOST_CONNECTION)
        }
        DieselError::DatabaseError(_, info) => starts_with_any(info.message(), SERVER_GOING_AWAY),
        DieselError::RollbackErrorOnCommit { commit_error, .. } => is_unavailable(commit_error),
        _ => false,
    }
}

/// tokio-postgres's messages for a connection that is gone (its error kinds `Closed`, `Io`,
/// `Timeout`, `Connect`), and diesel-async's when the connection's background task ended
/// (tokio's `RecvError::Closed`). Not `Encode` or `Parameters`: those are bugs (more bind
/// parameters than the protocol carries, a query's parameter count).
const LOST_CONNECTION: &[&str] = &[
    "connection closed",
    "error communicating with the server",
    "timeout waiting for server",
    "error connecting to server",
    "channel closed",
];

/// Postgres's messages when it ends or refuses a session because it is stopping, crashing
/// or starting (SQLSTATE 57P01 `admin_shutdown`, 57P02 `crash_shutdown`, 57P03
/// `cannot_connect_now`): "the database system is starting up / shutting down / in
/// recovery mode / not yet accepting connections".
const SERVER_GOING_AWAY: &[&str] = &[
    "terminating connection due to administrator command",
    "terminating connection due to immediate shutdown command",
    "terminating connection due to unexpected postmaster exit",
    "terminating connection because of crash of another server process",
    "the database system is ",
    // 57014 `query_canceled` by the pool's `statement_timeout`: overloaded, try again.
    "canceling statement due to statement timeout",
];

/// Whether one cause of an error chain says the database cannot be reached: the
/// [`Unavailable`] marker, an [`is_unavailable`] diesel error, a connection that could not
/// be made, or a pool that gave no connection (as [`connect`] marks it). This is how
/// [`crate::Problem::from_unexpected`] answers `503` for an error that only went through
/// `anyhow::Context` on its way up (the event log's, a module service's).
pub(crate) fn is_unavailable_cause(cause: &(dyn std::error::Error + 'static)) -> bool {
    if cause.is::<Unavailable>() || cause.is::<PoolError>() {
        return true;
    }
    if let Some(error) = cause.downcast_ref::<DieselError>() {
        return is_unavailable(error);
    }
    matches!(
        cause.downcast_ref::<diesel::ConnectionError>(),
        Some(
            diesel::ConnectionError::BadConnection(_)
                | diesel::ConnectionError::CouldntSetupConfiguration(_)
        )
    )
}

/// The constraint name, when `error` is a unique violation.
pub fn unique_violation(error: &DieselError) -> Option<&str> {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            Some(info.constraint_name().unwrap_or_default())
        }
        _ => None,
    }
}

/// `.db_context("loading user")`: [`db_error`] on a diesel result.
pub trait DbContext<T> {
    fn db_context(self, context: &'static str) -> anyhow::Result<T>;
}

impl<T> DbContext<T> for Result<T, DieselError> {
    fn db_context(self, context: &'static str) -> anyhow::Result<T> {
        self.map_err(|e| db_error(e, context))
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;
    use crate::Problem;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    /// Every diesel error that means "the connection is gone", as diesel-async reports it
    /// (`UnableToSendCommand` carrying tokio-postgres's message), against errors that are
    /// bugs or business outcomes, with the status each must answer.
    fn cases() -> Vec<(DieselError, u16)> {
        use DatabaseErrorKind::*;
        vec![
            (
                database_error(ClosedConnection, "server closed the connection"),
                503,
            ),
            (
                database_error(UnableToSendCommand, "connection closed"),
                503,
            ),
            (
                database_error(
                    UnableToSendCommand,
                    "error communicating with the server: Connection reset by peer (os error 104)",
                ),
                503,
            ),
            (
                database_error(
                    UnableToSendCommand,
                    "error communicating with the server: unexpected end of file",
                ),
                503,
            ),
            (
                database_error(UnableToSendCommand, "timeout waiting for server"),
                503,
            ),
            (
                database_error(
                    UnableToSendCommand,
                    "error connecting to server: Connection refused (os error 111)",
                ),
                503,
            ),
            // diesel-async: the connection's background task is gone.
            (database_error(UnableToSendCommand, "channel closed"), 503),
            // The server ends the session (SQLSTATE 57P01/57P03); diesel-async drops the code.
            (
                database_error(
                    Unknown,
                    "terminating connection due to administrator command",
                ),
                503,
            ),
            (
                database_error(Unknown, "the database system is shutting down"),
                503,
            ),
            (
                database_error(Unknown, "the database system is in recovery mode"),
                503,
            ),
            (DieselError::BrokenTransactionManager, 503),
            (
                DieselError::RollbackErrorOnCommit {
                    commit_error: Box::new(database_error(
                        UnableToSendCommand,
                        "connection closed",
                    )),
                    rollback_error: Box::new(database_error(
                        UnableToSendCommand,
                        "connection closed",
                    )),
                },
                503,
            ),
            // Bugs and business outcomes stay what they are.
            (database_error(UniqueViolation, "duplicate key value"), 500),
            (
                database_error(ForeignKeyViolation, "violates foreign key"),
                500,
            ),
            (
                database_error(SerializationFailure, "could not serialize access"),
                500,
            ),
            (
                database_error(CheckViolation, "violates check constraint"),
                500,
            ),
            (
                database_error(Unknown, "syntax error at or near \"SELEC\""),
                500,
            ),
            // More bind parameters than the protocol carries: diesel's own example of this kind.
            (
                database_error(
                    UnableToSendCommand,
                    "error encoding message to server: value too large to transmit",
                ),
                500,
            ),
            (
                database_error(UnableToSendCommand, "expected 2 parameters but got 3"),
                500,
            ),
            (DieselError::NotFound, 500),
            (DieselError::AlreadyInTransaction, 500),
        ]
    }

    /// Each answers the same through [`db_error`]/[`DbContext`] and through a plain
    /// `anyhow::Context` (as the event log and module services wrap them), and no answer
    /// carries the cause.
    #[test]
    fn a_lost_connection_is_unavailable_however_it_is_wrapped() {
        for ((error, status), (twin, _)) in cases().into_iter().zip(cases()) {
            let described = format!("{error:?}");
            let text = error.to_string();
            let marked = Err::<(), _>(error).db_context("loading user").unwrap_err();
            let problem = Problem::from_unexpected(&marked);
            assert_eq!(problem.status, status, "db_context on {described}");
            assert!(!problem.detail.contains(&text), "{problem}");
            let plain = Err::<(), _>(twin)
                .context("appending user.updated to users.events")
                .context("renaming user")
                .unwrap_err();
            let problem = Problem::from_unexpected(&plain);
            assert_eq!(problem.status, status, "anyhow::Context on {described}");
            assert_eq!(
                problem.retry_after,
                (status == 503).then_some(1),
                "{described}"
            );
        }
    }

    /// A connection that could not be made or a pool that gave none, wrapped only in
    /// context, is unavailable too; a malformed url is not.
    #[test]
    fn a_connection_that_cannot_be_made_is_unavailable() {
        use deadpool::managed::TimeoutType;
        let cases: [(anyhow::Error, u16); 4] = [
            (
                diesel::ConnectionError::BadConnection("connection refused".into()).into(),
                503,
            ),
            (
                diesel::ConnectionError::CouldntSetupConfiguration(database_error(
                    DatabaseErrorKind::Unknown,
                    "the database system is starting up",
                ))
                .into(),
                503,
            ),
            (PoolError::Timeout(TimeoutType::Wait).into(), 503),
            (
                diesel::ConnectionError::InvalidConnectionUrl("no host".into()).into(),
                500,
            ),
        ];
        for (error, status) in cases {
            let error = error.context("listing events");
            assert_eq!(Problem::from_unexpected(&error).status, status, "{error:#}");
        }
    }
}
