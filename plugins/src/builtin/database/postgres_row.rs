//! A PostgreSQL row as a JSON object (feature `postgres`): values follow the column type, and
//! the binary forms of `NUMERIC`, dates, timestamps and UUIDs are decoded here.

use serde_json::{Map, Number, Value};
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::convert::{decode_error, float, hex};
use crate::{PluginError, PluginResult};

/// The largest number of significant digits a `NUMERIC` may have to be sent as a JSON number.
const EXACT_F64_DIGITS: usize = 15;

pub(crate) fn postgres_row(row: &PgRow) -> PluginResult<Map<String, Value>> {
    let mut object = Map::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let raw = row.try_get_raw(i).map_err(|e| decode_error(name, e))?;
        if raw.is_null() {
            object.insert(name.to_string(), Value::Null);
            continue;
        }
        let type_name = column.type_info().name().to_string();
        let get_err = |e: sqlx::Error| decode_error(name, e);
        let value = match type_name.as_str() {
            "BOOL" => Value::Bool(row.try_get(i).map_err(get_err)?),
            "INT2" => Value::from(row.try_get::<i16, _>(i).map_err(get_err)?),
            "INT4" => Value::from(row.try_get::<i32, _>(i).map_err(get_err)?),
            "INT8" => Value::from(row.try_get::<i64, _>(i).map_err(get_err)?),
            "FLOAT4" => float(f64::from(row.try_get::<f32, _>(i).map_err(get_err)?)),
            "FLOAT8" => float(row.try_get(i).map_err(get_err)?),
            "TEXT" | "VARCHAR" | "BPCHAR" | "CHAR" | "NAME" | "CITEXT" | "UNKNOWN" => {
                Value::String(row.try_get(i).map_err(get_err)?)
            }
            "JSON" | "JSONB" => {
                row.try_get::<sqlx::types::Json<Value>, _>(i)
                    .map_err(get_err)?
                    .0
            }
            "BYTEA" => hex(&row.try_get::<Vec<u8>, _>(i).map_err(get_err)?),
            "NUMERIC" => {
                let text = match raw.format() {
                    PgValueFormat::Binary => {
                        numeric_to_string(raw.as_bytes().map_err(|e| decode_error(name, e))?)
                            .ok_or_else(|| decode_error(name, "malformed NUMERIC value"))?
                    }
                    PgValueFormat::Text => {
                        raw.as_str().map_err(|e| decode_error(name, e))?.to_string()
                    }
                };
                numeric_to_json(text)
            }
            "UUID" => {
                let bytes = raw.as_bytes().map_err(|e| decode_error(name, e))?;
                uuid_string(bytes).ok_or_else(|| decode_error(name, "malformed UUID value"))?
            }
            "DATE" | "TIMESTAMP" | "TIMESTAMPTZ" if raw.format() == PgValueFormat::Binary => {
                let bytes = raw.as_bytes().map_err(|e| decode_error(name, e))?;
                Value::String(
                    pg_datetime(&type_name, bytes)
                        .ok_or_else(|| decode_error(name, "malformed date/time value"))?,
                )
            }
            "DATE" | "TIMESTAMP" | "TIMESTAMPTZ" => {
                Value::String(raw.as_str().map_err(|e| decode_error(name, e))?.to_string())
            }
            "VOID" => Value::Null,
            other => {
                return Err(PluginError::execution(format!(
                    "column `{name}` has PostgreSQL type {other}, which the database plugin does \
                     not convert to JSON; cast it in the query, e.g. `{name}::text`"
                )))
            }
        };
        object.insert(name.to_string(), value);
    }
    Ok(object)
}

/// A decimal as a JSON number when an `f64` represents it as written, else as a string.
fn numeric_to_json(text: String) -> Value {
    let significant = text
        .chars()
        .filter(char::is_ascii_digit)
        .skip_while(|c| *c == '0')
        .count();
    if significant <= EXACT_F64_DIGITS {
        if let Some(number) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(number);
        }
    }
    Value::String(text)
}

/// PostgreSQL's binary `NUMERIC`: digit count, weight, sign, display scale, then base-10000
/// digits, all big-endian 16-bit.
fn numeric_to_string(bytes: &[u8]) -> Option<String> {
    let word = |at: usize| -> Option<i16> {
        Some(i16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
    };
    let ndigits = usize::try_from(word(0)?).ok()?;
    let weight = i64::from(word(2)?);
    let sign = word(4)? as u16;
    let dscale = usize::try_from(word(6)?).ok()?;
    match sign {
        0xC000 => return Some("NaN".to_string()),
        0xD000 => return Some("Infinity".to_string()),
        0xF000 => return Some("-Infinity".to_string()),
        _ => {}
    }
    let digits: Vec<i16> = (0..ndigits)
        .map(|i| word(8 + 2 * i))
        .collect::<Option<_>>()?;
    let digit = |index: i64| -> i16 {
        usize::try_from(index)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    if weight < 0 {
        text.push('0');
    } else {
        for position in 0..=weight {
            let group = digit(position);
            if position == 0 {
                text.push_str(&group.to_string());
            } else {
                text.push_str(&format!("{group:04}"));
            }
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let groups = dscale.div_ceil(4);
        for k in 1..=groups as i64 {
            fraction.push_str(&format!("{:04}", digit(weight + k)));
        }
        fraction.truncate(dscale);
        text.push('.');
        text.push_str(&fraction);
    }
    Some(text)
}

/// PostgreSQL's binary `DATE` (days since 2000-01-01, `i32`) and `TIMESTAMP[TZ]` (microseconds
/// since 2000-01-01 00:00, `i64`; UTC for `TIMESTAMPTZ`) as ISO 8601 text.
fn pg_datetime(type_name: &str, bytes: &[u8]) -> Option<String> {
    const DAYS_1970_TO_2000: i64 = 10_957;
    if type_name == "DATE" {
        let days = i32::from_be_bytes(bytes.try_into().ok()?);
        if days == i32::MAX || days == i32::MIN {
            return Some(if days > 0 { "infinity" } else { "-infinity" }.to_string());
        }
        return Some(civil_date(i64::from(days) + DAYS_1970_TO_2000));
    }
    let micros = i64::from_be_bytes(bytes.try_into().ok()?);
    if micros == i64::MAX || micros == i64::MIN {
        return Some(if micros > 0 { "infinity" } else { "-infinity" }.to_string());
    }
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (secs, micro) = (rest / 1_000_000, rest % 1_000_000);
    let mut text = format!(
        "{}T{:02}:{:02}:{:02}",
        civil_date(days + DAYS_1970_TO_2000),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if micro != 0 {
        text.push_str(&format!(".{micro:06}"));
    }
    if type_name == "TIMESTAMPTZ" {
        text.push('Z');
    }
    Some(text)
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn uuid_string(bytes: &[u8]) -> Option<Value> {
    if bytes.len() != 16 {
        return None;
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(Value::String(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(ndigits: i16, weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for w in [ndigits, weight, sign as i16, dscale as i16] {
            bytes.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn numeric_binary_decodes_to_its_text() {
        // 12345.6789 = [1, 2345, 6789], weight 1
        assert_eq!(
            numeric_to_string(&encode(3, 1, 0, 4, &[1, 2345, 6789])).unwrap(),
            "12345.6789"
        );
        // -0.05 = [500], weight -1, dscale 2
        assert_eq!(
            numeric_to_string(&encode(1, -1, 0x4000, 2, &[500])).unwrap(),
            "-0.05"
        );
        // 10000 = [1], weight 1, dscale 0
        assert_eq!(
            numeric_to_string(&encode(1, 1, 0, 0, &[1])).unwrap(),
            "10000"
        );
        assert_eq!(numeric_to_string(&encode(0, 0, 0, 2, &[])).unwrap(), "0.00");
    }

    #[test]
    fn dates_and_timestamps_decode_to_iso_8601() {
        assert_eq!(
            pg_datetime("DATE", &0i32.to_be_bytes()).unwrap(),
            "2000-01-01"
        );
        assert_eq!(
            pg_datetime("DATE", &8826i32.to_be_bytes()).unwrap(),
            "2024-03-01"
        );
        let micros: i64 = (8826 * 86_400 + 3_723) * 1_000_000 + 500_000;
        assert_eq!(
            pg_datetime("TIMESTAMPTZ", &micros.to_be_bytes()).unwrap(),
            "2024-03-01T01:02:03.500000Z"
        );
        assert_eq!(
            pg_datetime("DATE", &(-1i32).to_be_bytes()).unwrap(),
            "1999-12-31"
        );
    }

    #[test]
    fn long_decimals_stay_strings() {
        assert_eq!(numeric_to_json("149.50".into()), serde_json::json!(149.5));
        assert_eq!(
            numeric_to_json("12345678901234567.89".into()),
            serde_json::json!("12345678901234567.89")
        );
    }
}
