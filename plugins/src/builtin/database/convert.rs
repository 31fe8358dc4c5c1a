//! Rows to JSON objects, and JSON parameters to bound values: what both backends share. A
//! SQLite row is read by `sqlite_row.rs` (feature `sqlite`), a PostgreSQL row by
//! `postgres_row.rs` (feature `postgres`).

use serde_json::{Number, Value};

use crate::PluginError;

pub(super) fn decode_error(column: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::execution(format!("cannot read column `{column}`: {e}"))
}

pub(super) fn float(x: f64) -> Value {
    Number::from_f64(x).map_or(Value::Null, Value::Number)
}

pub(super) fn hex(bytes: &[u8]) -> Value {
    Value::String(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Binds JSON parameters to a query, in order. Written as a macro because sqlx's bounds for
/// "a query of any database that can encode these types" cost more to read than this does.
macro_rules! bind_params {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                serde_json::Value::Null => query.bind(Option::<String>::None),
                serde_json::Value::Bool(b) => query.bind(*b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => query.bind(i),
                    None => query.bind(n.as_f64().unwrap_or(f64::NAN)),
                },
                serde_json::Value::String(s) => query.bind(s.clone()),
                other => query.bind(sqlx::types::Json(other.clone())),
            };
        }
        query
    }};
}
pub(crate) use bind_params;
