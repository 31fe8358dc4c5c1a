//! [`JournalError`]: every way a journal store can fail, worded for the one who can fix it.
//!
//! Each message names the store (its URL, any password replaced by `***`), says what went
//! wrong, and says what to do next. The error is `Clone` because one failed group commit is
//! reported to every callback of its batch.

/// What went wrong with a journal store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The URL names no store this program knows how to open.
    #[error(
        "cannot open the journal store `{url}`: not a store URL; use sqlite:PATH, \
         sqlite://PATH, postgres://... or postgresql://..."
    )]
    UnsupportedUrl {
        /// The URL, password redacted.
        url: String,
    },
    /// The URL names a backend this build was compiled without.
    #[error(
        "cannot open the journal store {url}: it is a {backend} store, and this bilayer was \
         built without the `{feature}` feature; rebuild with `cargo build --features {feature}` \
         (the default features include it)"
    )]
    BackendMissing {
        /// The URL, password redacted.
        url: String,
        /// `SQLite` or `PostgreSQL`.
        backend: &'static str,
        /// The Cargo feature that brings it.
        feature: &'static str,
    },
    /// The store could not be opened or connected to.
    #[error("cannot open the journal store {url}: {cause}; {advice}")]
    Open {
        /// The URL, password redacted.
        url: String,
        /// What failed.
        cause: String,
        /// What to do about it.
        advice: String,
    },
    /// The store was written by a newer bilayer whose journal this one cannot read.
    #[error(
        "the journal store {url} has schema version {found}, and this bilayer reads version \
         {supported} only: use the bilayer that wrote it (or a newer one), or another store"
    )]
    SchemaTooNew {
        /// The URL, password redacted.
        url: String,
        /// The version the store records.
        found: String,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A statement failed on an open store (a lost connection, a full disk, a lock held
    /// too long by another process).
    #[error("journal store {url}: {action} failed: {cause}")]
    Query {
        /// The URL, password redacted.
        url: String,
        /// What the journal was doing ("writing 4096 entries", "reading run b1-7").
        action: String,
        /// The database's own words.
        cause: String,
    },
    /// A row could not be read back (a wrong type, a NULL where a value belongs): the
    /// store was altered or damaged outside bilayer.
    #[error(
        "journal store {url}: run {run_id}: a row of {table} cannot be read ({cause}); \
         the row was altered outside bilayer: delete the run (`bilayer runs prune`) or repair \
         the row"
    )]
    Corrupt {
        /// The URL, password redacted.
        url: String,
        /// The run the row belongs to.
        run_id: String,
        /// The table.
        table: &'static str,
        /// Which column, and why.
        cause: String,
    },
    /// The journal writer has stopped ([`JournalWriter::close`](crate::journal::JournalWriter::close)
    /// was called, or its runtime shut down): nothing more is written.
    #[error(
        "journal store {url}: the journal writer has stopped, so this entry was not recorded; \
         open a new writer (JournalStore::writer) to record more"
    )]
    WriterStopped {
        /// The URL, password redacted.
        url: String,
    },
}

/// A database failure in words: a server's message with its detail, hint and code, a refused
/// connection said to be refused, otherwise sqlx's own text.
pub(crate) fn describe(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(db) => {
            #[cfg(feature = "postgres")]
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                let mut text = pg.message().to_string();
                if let Some(detail) = pg.detail() {
                    text.push_str(&format!("; detail: {detail}"));
                }
                if let Some(hint) = pg.hint() {
                    text.push_str(&format!("; hint: {hint}"));
                }
                text.push_str(&format!(" (SQLSTATE {})", pg.code()));
                return text;
            }
            match db.code() {
                Some(code) => format!("{} (code {code})", db.message()),
                None => db.message().to_string(),
            }
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("the server refused the connection ({io})")
        }
        sqlx::Error::PoolTimedOut => {
            "no connection became free in time (the database is busy or unreachable)".to_string()
        }
        other => other.to_string(),
    }
}

/// `url` with the password of its user-info part (`user:PASSWORD@host`) and any `password=`
/// query parameter replaced by `***`, for messages and logs. Only server URLs carry
/// credentials: a SQLite path is returned as is (`sqlite://a:b@c.db` is a file name).
pub(crate) fn redact(url: &str) -> String {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return url.to_string();
    }
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let user_info = &out[rest..rest + at];
            if let Some(colon) = user_info.find(':') {
                out.replace_range(rest + colon + 1..rest + at, "***");
            }
        }
    }
    if let Some(query_start) = out.find('?') {
        let (head, query) = out.split_at(query_start + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://bob:s3cret@db:5432/runs"),
            "postgres://bob:***@db:5432/runs"
        );
        assert_eq!(
            redact("postgresql://bob@db/runs?password=s3cret&sslmode=disable"),
            "postgresql://bob@db/runs?password=***&sslmode=disable"
        );
        assert_eq!(redact("postgres://bob@db/runs"), "postgres://bob@db/runs");
        assert_eq!(redact("sqlite:/tmp/a:b@c.db"), "sqlite:/tmp/a:b@c.db");
        assert_eq!(redact("sqlite:///tmp/runs.db"), "sqlite:///tmp/runs.db");
        assert_eq!(redact("sqlite://a:b@c.db"), "sqlite://a:b@c.db");
    }
}
