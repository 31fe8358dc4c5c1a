//! `DbRequest`: what the database plugin is asked, and how its SQL is classified.
//!
//! Classification looks at the first keyword only (after comments and parentheses). It decides
//! the answer's shape (rows or `rows_affected`) and gives read-only mode an early, clear
//! refusal; the read-only connection setting is what actually guarantees no write happens.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One statement and its bound parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DbRequest {
    /// The SQL statement; `$1`/`?` placeholders take [`params`](Self::params).
    pub sql: String,
    /// Bound in order: JSON null, bool, integer, float, string; arrays and objects as JSON.
    #[serde(default)]
    pub params: Vec<Value>,
}

/// Statements that change data or schema.
const WRITE_KEYWORDS: &[&str] = &[
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "UPSERT",
    "MERGE",
    "CREATE",
    "DROP",
    "ALTER",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "ATTACH",
    "DETACH",
    "VACUUM",
    "REINDEX",
    "COPY",
    "CALL",
    "DO",
    "COMMENT",
    "LOCK",
    "CLUSTER",
    "REFRESH",
    "IMPORT",
    "ANALYZE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "RELEASE",
    "SET",
    "RESET",
    "PRAGMA",
    "LISTEN",
    "NOTIFY",
    "DISCARD",
];

impl DbRequest {
    /// `sql` without parameters.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            params: Vec::new(),
        }
    }

    /// Binds `params`, in order, to the statement's placeholders.
    pub fn with_params(mut self, params: Vec<Value>) -> Self {
        self.params = params;
        self
    }

    /// Reads the plugin's input: `{"sql", "params"}`, or a JSON string / plain text of SQL.
    pub fn from_input(input: Value) -> Result<Self, String> {
        let request: Self = match input {
            Value::String(sql) => Self::new(sql),
            Value::Object(_) => serde_json::from_value(input)
                .map_err(|e| format!("expected {{\"sql\": \"...\", \"params\": [...]}} ({e})"))?,
            other => {
                return Err(format!(
                    "expected {{\"sql\": \"...\", \"params\": [...]}} or a SQL string, got {other}"
                ))
            }
        };
        if request.sql.trim().is_empty() {
            return Err("the SQL statement is empty".to_string());
        }
        Ok(request)
    }

    /// The statement's first keyword, upper-cased (`SELECT`, `WITH`, `INSERT`, ...).
    pub fn first_keyword(&self) -> String {
        let mut rest = self.sql.as_str();
        loop {
            rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '(');
            if let Some(after) = rest.strip_prefix("--") {
                rest = after.split_once('\n').map_or("", |(_, r)| r);
            } else if let Some(after) = rest.strip_prefix("/*") {
                rest = after.split_once("*/").map_or("", |(_, r)| r);
            } else {
                break;
            }
        }
        rest.chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect::<String>()
            .to_ascii_uppercase()
    }

    /// Whether the statement changes data or schema (judged by its first keyword).
    pub fn is_write(&self) -> bool {
        WRITE_KEYWORDS.contains(&self.first_keyword().as_str())
    }

    /// Whether a write statement also returns rows (`... RETURNING ...`).
    pub fn returns_rows(&self) -> bool {
        !self.is_write()
            || self.first_keyword() == "PRAGMA"
            || self.sql.to_ascii_uppercase().contains("RETURNING")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_skips_comments_and_parentheses() {
        assert_eq!(
            DbRequest::new(" -- hi\n/* x */ (select 1)").first_keyword(),
            "SELECT"
        );
        assert!(DbRequest::new("delete from t").is_write());
        assert!(!DbRequest::new("WITH a AS (SELECT 1) SELECT * FROM a").is_write());
        assert!(DbRequest::new("INSERT INTO t VALUES (1) RETURNING id").returns_rows());
    }
}
