//! Server-sent events as chat-completions streams them: `data: {json}` events separated by a
//! blank line, ending with `data: [DONE]`.
//!
//! The parser takes bytes as they arrive (an event, or a UTF-8 character, may span two chunks)
//! and yields the `data` payload of each complete event. Comments (`: keep-alive`) and other
//! fields (`event:`, `id:`) are skipped.

use serde_json::Value;

use super::{ChatDelta, LlmError, LlmResult};

#[derive(Debug, Default)]
pub(crate) struct SseParser {
    buffer: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the payloads of the events they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            self.line(line.trim_end_matches(['\n', '\r']), &mut events);
        }
        events
    }

    /// The end of the body: an unterminated last event still counts.
    pub(crate) fn finish(&mut self) -> Vec<String> {
        let mut events = Vec::new();
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            let rest = String::from_utf8_lossy(&rest).into_owned();
            self.line(rest.trim_end_matches('\r'), &mut events);
        }
        events.extend(self.data.take());
        events
    }

    fn line(&mut self, line: &str, events: &mut Vec<String>) {
        if line.is_empty() {
            events.extend(self.data.take());
        } else if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            }
        }
    }
}

/// Reads one `chat.completion.chunk`.
pub(crate) fn delta_from_chunk(url: &str, data: &str) -> LlmResult<ChatDelta> {
    let malformed = |message: String| LlmError::Malformed {
        url: url.to_string(),
        message,
    };
    let chunk: Value = serde_json::from_str(data).map_err(|e| {
        malformed(format!(
            "stream event is not JSON ({e}): {}",
            data.chars().take(200).collect::<String>()
        ))
    })?;
    if let Some(error) = chunk.get("error") {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| error.to_string());
        return Err(LlmError::Rejected {
            url: url.to_string(),
            status: 200,
            message: format!("error event in the stream: {message}"),
        });
    }
    let usage = match chunk.get("usage") {
        None | Some(Value::Null) => None,
        Some(u) => serde_json::from_value(u.clone()).ok(),
    };
    let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
        // Usage-only chunks (`stream_options.include_usage`) have no choices.
        return Ok(ChatDelta {
            usage,
            ..ChatDelta::default()
        });
    };
    let delta = choice.get("delta").unwrap_or(&Value::Null);
    Ok(ChatDelta {
        content: delta
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        tool_calls: delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        finish_reason: choice
            .get("finish_reason")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_may_span_chunks_and_use_crlf() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"data: {\"a\"").is_empty());
        assert_eq!(
            parser.push(b":1}\r\n\r\n: ping\n\ndata: [DONE]\n\n"),
            vec!["{\"a\":1}", "[DONE]"]
        );
        assert!(parser.finish().is_empty());
    }

    #[test]
    fn an_unterminated_last_event_is_kept() {
        let mut parser = SseParser::default();
        assert!(parser.push(b"data: x\ndata: y").is_empty());
        assert_eq!(parser.finish(), vec!["x\ny"]);
    }
}
