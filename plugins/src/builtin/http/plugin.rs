//! `HttpPlugin`: a reqwest client behind the [`AgentPlugin`] interface, with the allow-list,
//! timeout and size cap of its [`HttpConfig`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use serde_json::{json, Value};

use super::{HttpConfig, HttpRequest};
use crate::builtin::{merge_config, ConfigOrigin};
use crate::{AgentPlugin, PluginContext, PluginError, PluginMetadata, PluginResult, PluginType};

/// Outbound HTTP to allowed hosts only (id `http` unless changed).
#[derive(Debug)]
pub struct HttpPlugin {
    metadata: PluginMetadata,
    config: HttpConfig,
    client: Option<reqwest::Client>,
}

impl Default for HttpPlugin {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpPlugin {
    /// A plugin that allows no host yet; add some with [`allow_host`](Self::allow_host).
    pub fn new() -> Self {
        Self::with_config(HttpConfig::default())
    }

    /// A plugin with these settings, registered as `http`.
    pub fn with_config(config: HttpConfig) -> Self {
        let metadata = PluginMetadata::new("http", "HTTP client", PluginType::Tool)
            .with_description("HTTP requests to an allow-list of hosts")
            .with_capability("http");
        Self {
            metadata,
            config,
            client: None,
        }
    }

    /// Registers the plugin under `id` instead of `http`.
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.metadata.id = id.into();
        self
    }

    /// Allows a host (see [`HttpConfig::allowed_hosts`] for the forms).
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.config.allowed_hosts.push(host.into());
        self
    }

    /// Per-request timeout (see [`HttpConfig::timeout_ms`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout_ms = timeout.as_millis().try_into().unwrap_or(u64::MAX);
        self
    }

    /// Largest response body accepted (see [`HttpConfig::max_response_bytes`]).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.config.max_response_bytes = max;
        self
    }

    /// A header sent with every request unless the request sets it.
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config
            .default_headers
            .insert(name.into(), value.into());
        self
    }

    /// The configuration in effect (after `load`, including the host's config).
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Sends one request; answers `{"status", "headers", "body"}`.
    pub async fn send(&self, request: &HttpRequest) -> PluginResult<Value> {
        let client = self.client.as_ref().ok_or_else(|| {
            PluginError::execution(format!(
                "HTTP plugin `{}` has no client; load it before executing",
                self.metadata.id
            ))
        })?;
        let url = reqwest::Url::parse(&request.url).map_err(|e| {
            PluginError::InvalidInput(format!("`{}` is not a URL: {e}", request.url))
        })?;
        check_allowed(&self.config, &url).map_err(PluginError::InvalidInput)?;
        let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| {
                PluginError::InvalidInput(format!("`{}` is not an HTTP method", request.method))
            })?;
        let mut builder = client
            .request(method, url.clone())
            .timeout(self.config.timeout())
            .headers(header_map(&request.headers)?);
        match &request.body {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => builder = builder.body(text.clone()),
            Some(json) => builder = builder.json(json),
        }
        let fail = |e: reqwest::Error| self.transport_error(&url, e);
        let mut response = builder.send().await.map_err(fail)?;
        let max = self.config.max_response_bytes;
        if let Some(length) = response.content_length() {
            if length > max as u64 {
                return Err(too_large(&url, max, &format!("Content-Length is {length}")));
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > max {
                return Err(too_large(&url, max, "the body kept coming"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(json!({
            "status": response.status().as_u16(),
            "headers": response_headers(response.headers()),
            "body": decode_body(response.headers(), &body),
        }))
    }

    fn transport_error(&self, url: &reqwest::Url, e: reqwest::Error) -> PluginError {
        if e.is_timeout() {
            return PluginError::execution(format!(
                "HTTP request to {url} timed out after {:?}; raise timeout_ms or check the server",
                self.config.timeout()
            ));
        }
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        PluginError::execution(format!("HTTP request to {url} failed: {message}"))
    }

    fn build_client(config: &HttpConfig) -> PluginResult<reqwest::Client> {
        let allow = Arc::new(config.clone());
        let max_redirects = config.max_redirects;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                attempt.error(format!("more than {max_redirects} redirects"))
            } else if let Err(refusal) = check_allowed(&allow, attempt.url()) {
                attempt.error(format!("redirect refused: {refusal}"))
            } else {
                attempt.follow()
            }
        });
        let mut defaults = BTreeMap::new();
        defaults.extend(config.default_headers.clone());
        reqwest::Client::builder()
            .redirect(redirect)
            .default_headers(header_map(&defaults)?)
            .build()
            .map_err(|e| PluginError::Config(format!("cannot build the HTTP client: {e}")))
    }
}

/// Refuses URLs that are not http(s) or whose host is not allowed.
fn check_allowed(config: &HttpConfig, url: &reqwest::Url) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "only http and https URLs are allowed, not `{}`",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{url}` has no host"))?;
    if config.allows(host, url.port_or_known_default()) {
        Ok(())
    } else {
        Err(format!(
            "host `{host}` is not in the HTTP plugin's allow-list; add it to `allowed_hosts` \
             (config) or call `allow_host(\"{host}\")`"
        ))
    }
}

fn too_large(url: &reqwest::Url, max: usize, why: &str) -> PluginError {
    PluginError::execution(format!(
        "response from {url} is larger than max_response_bytes ({max} bytes; {why}); raise \
         max_response_bytes or ask for less"
    ))
}

fn header_map(headers: &BTreeMap<String, String>) -> PluginResult<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PluginError::InvalidInput(format!("`{name}` is not a header name")))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            PluginError::InvalidInput(format!("the value of header `{name}` is not valid"))
        })?;
        map.insert(name, value);
    }
    Ok(map)
}

fn response_headers(headers: &HeaderMap) -> Value {
    let mut object = serde_json::Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        object.insert(name.as_str().to_string(), Value::String(value));
    }
    Value::Object(object)
}

/// JSON when the response declares JSON and parses as such; else text (invalid UTF-8 replaced).
fn decode_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        if let Ok(value) = serde_json::from_slice(body) {
            return value;
        }
    }
    Value::String(String::from_utf8_lossy(body).into_owned())
}

#[async_trait]
impl AgentPlugin for HttpPlugin {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }

    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()> {
        self.config = merge_config(ConfigOrigin::Host("HTTP"), &self.config, ctx.config())?;
        self.client = Some(Self::build_client(&self.config)?);
        Ok(())
    }

    async fn unload(&mut self) -> PluginResult<()> {
        self.client = None;
        Ok(())
    }

    /// Another handle on the same client (its connection pool): requests overlap up to the
    /// plugin's concurrency (`max_concurrency` in a definition).
    fn concurrent_instance(&self) -> Option<Box<dyn AgentPlugin>> {
        Some(Box::new(HttpPlugin {
            metadata: self.metadata.clone(),
            config: self.config.clone(),
            client: self.client.clone(),
        }))
    }

    async fn execute(&mut self, input: String) -> PluginResult<String> {
        // Plain text that is not JSON is a URL to GET.
        let input = serde_json::from_str(&input).unwrap_or(Value::String(input));
        Ok(self.execute_json(input).await?.to_string())
    }

    async fn execute_json(&mut self, input: Value) -> PluginResult<Value> {
        let request = HttpRequest::from_input(input).map_err(PluginError::InvalidInput)?;
        self.send(&request).await
    }
}
