//! How a database failure is worded for the one who can fix it.
//!
//! sqlx's own text for a PostgreSQL error ends in "at line N", where N is the line of the
//! *server's* C source that raised it (the protocol's `L` field): useless to a user, and read as
//! a line of their SQL. The text here keeps what the server says about the statement (its
//! message, where in the statement, detail, hint, SQLSTATE) and drops that line. A refused
//! connection is said to be refused, rather than surfacing as a pool timeout.

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgDatabaseError, PgErrorPosition};

/// The failure in words: for a database error, the server's message with its position in the
/// statement, detail, hint and code; otherwise sqlx's own text.
pub(super) fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => {
            #[cfg(feature = "postgres")]
            if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                return describe_postgres(pg);
            }
            match db.code() {
                Some(code) => format!("{} (code {code})", db.message()),
                None => db.message().to_string(),
            }
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("the server refused the connection ({io})")
        }
        other => other.to_string(),
    }
}

#[cfg(feature = "postgres")]
fn describe_postgres(error: &PgDatabaseError) -> String {
    let mut text = error.message().to_string();
    match error.position() {
        Some(PgErrorPosition::Original(at)) => {
            text.push_str(&format!(" (at character {at} of the statement)"));
        }
        Some(PgErrorPosition::Internal { position, query }) => {
            text.push_str(&format!(
                " (at character {position} of the server's internal query `{query}`)"
            ));
        }
        None => {}
    }
    if let Some(detail) = error.detail() {
        text.push_str(&format!("; detail: {detail}"));
    }
    if let Some(hint) = error.hint() {
        text.push_str(&format!("; hint: {hint}"));
    }
    text.push_str(&format!(" (SQLSTATE {})", error.code()));
    text
}
