//! SQL as a plugin, over sqlx: SQLite embedded by default, PostgreSQL for `postgres://` URLs.
//! Each backend is a feature (`sqlite`, `postgres`); a URL of a backend the build lacks is
//! refused at load with the feature to build with.
//!
//! - [`DatabaseConfig`]: URL or file path, read-only mode, row limit, pool size;
//! - [`DbRequest`]: `{"sql": "...", "params": [...]}` or a bare SQL string (as the seed's
//!   `call_plugin("database", "SELECT ...")` sends); parameters are always bound (`?` in
//!   SQLite, `$1` in PostgreSQL), never spliced into the SQL text;
//! - [`DatabasePlugin`]: answers a query with a JSON array of row objects, a write with
//!   `{"rows_affected": n}`.
//!
//! Column values become JSON by type: integers → numbers, floats → numbers (NaN/∞ → `null`),
//! booleans → `true`/`false` (SQLite: columns declared `BOOLEAN`), text → strings, `NULL` →
//! `null`, JSON/JSONB → the JSON value, BLOB/BYTEA → lowercase hex strings, UUID → its text.
//! PostgreSQL `NUMERIC` becomes a JSON number when it has at most 15 significant digits (so an
//! `f64` holds it exactly as written) and a string otherwise, so no precision is lost silently.
//! PostgreSQL `DATE`/`TIMESTAMP`/`TIMESTAMPTZ` become ISO 8601 strings (`TIMESTAMPTZ` in UTC).
//! PostgreSQL types beyond these (intervals, arrays, enums, ...) are refused with an error
//! naming the column; cast them in the query (`created_at::text`).

mod config;
mod convert;
mod error_text;
mod plugin;
#[cfg(feature = "postgres")]
mod postgres_row;
mod request;
#[cfg(feature = "sqlite")]
mod sqlite_row;

pub use config::DatabaseConfig;
pub use plugin::DatabasePlugin;
pub use request::DbRequest;
