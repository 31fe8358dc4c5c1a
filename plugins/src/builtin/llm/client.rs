//! `LlmClient`: one chat-completions endpoint, with timeouts and retries.
//!
//! Retries cover what a later attempt can fix: HTTP 429, 5xx and refused connections. The wait
//! is the server's `Retry-After` (seconds, capped at 60 s) when it sends one, else an exponential
//! backoff. Auth failures (401/403) and other 4xx are reported at once, since repeating the same
//! request cannot succeed. Timeouts apply per attempt to the whole answer, and, when streaming,
//! to the wait for each next chunk, so a long stream that keeps producing tokens is never cut.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use serde_json::Value;

use super::sse::{delta_from_chunk, SseParser};
use super::{ChatCompletion, ChatDelta, ChatMessage, ChatRequest, LlmConfig, LlmError, LlmResult};

/// A stream of token deltas; ends after the server's `[DONE]` (or the end of the body).
pub type ChatStream = BoxStream<'static, LlmResult<ChatDelta>>;

/// The longest `Retry-After` honoured; a server asking for more gets this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A client for one OpenAI-compatible endpoint. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct LlmClient {
    http: reqwest::Client,
    config: Arc<LlmConfig>,
    api_key: Option<String>,
}

impl std::fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LlmClient {
    /// A client for `config`; the API key is resolved now (config, then environment).
    pub fn new(config: LlmConfig) -> LlmResult<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout().min(Duration::from_secs(10)))
            .build()
            .map_err(|e| LlmError::InvalidRequest(format!("cannot build the HTTP client: {e}")))?;
        let api_key = config.resolve_api_key();
        Ok(Self {
            http,
            config: Arc::new(config),
            api_key,
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// One completion.
    pub async fn chat(&self, request: &ChatRequest) -> LlmResult<ChatCompletion> {
        let body = self.body(request, false)?;
        let url = self.config.chat_url();
        let response = self.send(&body).await?;
        let bytes = tokio::time::timeout(self.config.timeout(), response.bytes())
            .await
            .map_err(|_| self.timeout_error())?
            .map_err(|e| LlmError::Connect {
                url: url.clone(),
                message: format!("reading the answer failed: {e}"),
            })?;
        parse_completion(&url, &bytes)
    }

    /// A completion as it is generated (`stream: true`): text and tool-call deltas.
    pub async fn chat_stream(&self, request: &ChatRequest) -> LlmResult<ChatStream> {
        let body = self.body(request, true)?;
        let response = self.send(&body).await?;
        let state = StreamState {
            response,
            parser: SseParser::default(),
            pending: std::collections::VecDeque::new(),
            done: false,
            url: self.config.chat_url(),
            timeout: self.config.timeout(),
        };
        Ok(Box::pin(futures::stream::unfold(state, next_delta)))
    }

    /// The JSON body: the request with the client's defaults filled in.
    fn body(&self, request: &ChatRequest, stream: bool) -> LlmResult<Value> {
        if self.config.requires_api_key() && self.api_key.is_none() {
            return Err(LlmError::MissingApiKey {
                provider: self.config.provider.clone(),
                key_env: self.config.api_key_env.clone(),
            });
        }
        if request.messages.is_empty() {
            return Err(LlmError::InvalidRequest(
                "a chat request needs at least one message".to_string(),
            ));
        }
        let mut body = serde_json::to_value(request)
            .map_err(|e| LlmError::InvalidRequest(format!("cannot encode the request: {e}")))?;
        let fields = body.as_object_mut().ok_or_else(|| {
            LlmError::InvalidRequest("a chat request must encode as an object".to_string())
        })?;
        fields
            .entry("model")
            .or_insert_with(|| Value::from(self.config.model.clone()));
        if let Some(t) = self.config.temperature {
            fields
                .entry("temperature")
                .or_insert_with(|| Value::from(t));
        }
        if let Some(m) = self.config.max_tokens {
            fields.entry("max_tokens").or_insert_with(|| Value::from(m));
        }
        fields.insert("stream".to_string(), Value::Bool(stream));
        Ok(body)
    }

    /// Posts `body`, retrying on 429, 5xx and refused connections; returns a 2xx response.
    async fn send(&self, body: &Value) -> LlmResult<reqwest::Response> {
        let url = self.config.chat_url();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let retries_left = attempt <= self.config.max_retries;
            let mut request = self.http.post(&url).json(body);
            if let Some(key) = &self.api_key {
                request = request.bearer_auth(key);
            }
            let response = match tokio::time::timeout(self.config.timeout(), request.send()).await {
                Err(_) => return Err(self.timeout_error()),
                Ok(Err(e)) if e.is_connect() && retries_left => {
                    tracing::debug!(%url, attempt, error = %e, "LLM endpoint unreachable; retrying");
                    tokio::time::sleep(self.config.backoff(attempt - 1)).await;
                    continue;
                }
                Ok(Err(e)) if e.is_timeout() => return Err(self.timeout_error()),
                Ok(Err(e)) => {
                    return Err(LlmError::Connect {
                        url,
                        message: error_chain(&e),
                    })
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retryable = status.as_u16() == 429 || status.is_server_error();
            if retryable && retries_left {
                let wait =
                    retry_after(&response).unwrap_or_else(|| self.config.backoff(attempt - 1));
                tracing::debug!(%url, attempt, status = status.as_u16(), ?wait, "LLM endpoint busy; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            let message = self.error_message(response).await;
            let status = status.as_u16();
            return Err(match status {
                401 | 403 => LlmError::Auth {
                    url,
                    status,
                    message,
                    key_env: self.config.api_key_env.clone(),
                },
                _ if retryable => LlmError::Unavailable {
                    url,
                    status,
                    attempts: attempt,
                    message,
                },
                _ => LlmError::Rejected {
                    url,
                    status,
                    message,
                },
            });
        }
    }

    /// The server's explanation of an error status: `error.message` of an OpenAI-style body,
    /// else the start of the body.
    async fn error_message(&self, response: reqwest::Response) -> String {
        let text = match tokio::time::timeout(self.config.timeout(), response.text()).await {
            Ok(Ok(text)) => text,
            _ => return "(no readable body)".to_string(),
        };
        let from_json = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
            let error = v.get("error")?;
            error
                .get("message")
                .and_then(Value::as_str)
                .or_else(|| error.as_str())
                .map(str::to_string)
        });
        from_json.unwrap_or_else(|| text.chars().take(300).collect())
    }

    fn timeout_error(&self) -> LlmError {
        LlmError::Timeout {
            url: self.config.chat_url(),
            after: self.config.timeout(),
        }
    }
}

/// `Retry-After` in seconds (integer or decimal), capped; HTTP dates fall back to the backoff.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: f64 = value.to_str().ok()?.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds).min(MAX_RETRY_AFTER))
}

/// An error with its sources, which reqwest keeps the useful part in.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// Reads `choices[0]` of a non-streamed completion.
fn parse_completion(url: &str, bytes: &[u8]) -> LlmResult<ChatCompletion> {
    let malformed = |message: String| LlmError::Malformed {
        url: url.to_string(),
        message,
    };
    let body: Value = serde_json::from_slice(bytes).map_err(|e| {
        malformed(format!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    })?;
    let choice = body
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or_else(|| malformed(format!("no `choices[0]` in {}", truncate(&body))))?;
    let message = choice
        .get("message")
        .ok_or_else(|| malformed(format!("no `choices[0].message` in {}", truncate(&body))))?;
    let message: ChatMessage = serde_json::from_value(message.clone())
        .map_err(|e| malformed(format!("`choices[0].message` is not a chat message: {e}")))?;
    let usage = match body.get("usage") {
        None | Some(Value::Null) => None,
        Some(u) => Some(
            serde_json::from_value(u.clone())
                .map_err(|e| malformed(format!("`usage` is not token counts: {e}")))?,
        ),
    };
    Ok(ChatCompletion {
        id: body.get("id").and_then(Value::as_str).map(str::to_string),
        model: body
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_string),
        message,
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage,
    })
}

fn truncate(value: &Value) -> String {
    value.to_string().chars().take(200).collect()
}

/// Where a [`ChatStream`] is between two deltas.
struct StreamState {
    response: reqwest::Response,
    parser: SseParser,
    pending: std::collections::VecDeque<LlmResult<ChatDelta>>,
    done: bool,
    url: String,
    timeout: Duration,
}

async fn next_delta(mut st: StreamState) -> Option<(LlmResult<ChatDelta>, StreamState)> {
    loop {
        if let Some(item) = st.pending.pop_front() {
            if item.is_err() {
                st.done = true;
                st.pending.clear();
            }
            return Some((item, st));
        }
        if st.done {
            return None;
        }
        let chunk = match tokio::time::timeout(st.timeout, st.response.chunk()).await {
            Err(_) => {
                st.done = true;
                let error = LlmError::Timeout {
                    url: st.url.clone(),
                    after: st.timeout,
                };
                return Some((Err(error), st));
            }
            Ok(Err(e)) => {
                st.done = true;
                let error = LlmError::Connect {
                    url: st.url.clone(),
                    message: format!("the stream broke off: {}", error_chain(&e)),
                };
                return Some((Err(error), st));
            }
            Ok(Ok(None)) => {
                st.done = true;
                st.parser.finish()
            }
            Ok(Ok(Some(bytes))) => st.parser.push(&bytes),
        };
        for data in chunk {
            if data.trim() == "[DONE]" {
                st.done = true;
                break;
            }
            st.pending.push_back(delta_from_chunk(&st.url, &data));
        }
    }
}
