//! `HttpRequest`: what the HTTP plugin is asked to send.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One request. A JSON `body` (object, array, number, bool) is sent as `application/json`; a
/// string body is sent as is (set `content-type` in `headers` when it matters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// The HTTP method (`GET` when absent).
    #[serde(default = "get")]
    pub method: String,
    /// The absolute URL; its host must be on the plugin's allow-list.
    pub url: String,
    /// Headers added to the plugin's default headers (same name: this one wins).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body: JSON values are sent as `application/json`, a string as is.
    #[serde(default)]
    pub body: Option<Value>,
}

fn get() -> String {
    "GET".to_string()
}

impl HttpRequest {
    /// A GET of `url` with no headers and no body.
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: get(),
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
        }
    }

    /// A POST of `body` as JSON.
    pub fn post_json(url: impl Into<String>, body: Value) -> Self {
        Self {
            method: "POST".to_string(),
            body: Some(body),
            ..Self::get(url)
        }
    }

    /// Adds or replaces header `name`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Reads the plugin's input: `{"method", "url", "headers", "body"}` or a URL string.
    pub fn from_input(input: Value) -> Result<Self, String> {
        match input {
            Value::String(url) => Ok(Self::get(url)),
            Value::Object(_) => serde_json::from_value(input).map_err(|e| {
                format!("expected {{\"method\": \"GET\", \"url\": \"http://...\", \"headers\": {{...}}, \"body\": ...}} ({e})")
            }),
            other => Err(format!("expected a request object or a URL string, got {other}")),
        }
    }
}
