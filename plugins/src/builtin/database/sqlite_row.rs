//! A SQLite row as a JSON object (feature `sqlite`).
//!
//! SQLite is dynamically typed, so a value's JSON type follows its storage class (a `REAL` sum
//! stays a float even in an `INTEGER` column); only `BOOLEAN` comes from the declared type,
//! since SQLite stores booleans as integers.

use serde_json::{Map, Value};
use sqlx::sqlite::SqliteRow;
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::convert::{decode_error, float, hex};
use crate::PluginResult;

pub(crate) fn sqlite_row(row: &SqliteRow) -> PluginResult<Map<String, Value>> {
    let mut object = Map::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(i).map_err(|e| decode_error(name, e))?;
        let value = if raw.is_null() {
            Value::Null
        } else {
            let storage = raw.type_info().name().to_string();
            let declared_bool = column.type_info().name().eq_ignore_ascii_case("BOOLEAN");
            match storage.as_str() {
                "INTEGER" | "BOOLEAN" => {
                    let n: i64 = row
                        .try_get_unchecked(i)
                        .map_err(|e| decode_error(name, e))?;
                    if declared_bool || storage == "BOOLEAN" {
                        Value::Bool(n != 0)
                    } else {
                        Value::from(n)
                    }
                }
                "REAL" => float(
                    row.try_get_unchecked(i)
                        .map_err(|e| decode_error(name, e))?,
                ),
                "BLOB" => {
                    let bytes: Vec<u8> = row
                        .try_get_unchecked(i)
                        .map_err(|e| decode_error(name, e))?;
                    hex(&bytes)
                }
                _ => Value::String(
                    row.try_get_unchecked(i)
                        .map_err(|e| decode_error(name, e))?,
                ),
            }
        };
        object.insert(name.to_string(), value);
    }
    Ok(object)
}
