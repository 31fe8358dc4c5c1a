//! The wire types of the chat-completions protocol, as far as bilayer reads and writes them.
//!
//! Requests keep unknown fields (`extra`) so callers can pass provider options through;
//! responses are read leniently (missing `usage`, `null` content) because local servers differ.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text (absent on an assistant message that only calls tools).
    #[serde(default)]
    pub content: Option<String>,
    /// Tool calls asked for by an assistant message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For `tool` messages: the id of the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// An optional participant name, passed through to the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    fn text(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: Some(content.into()),
            ..Self::default()
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::text("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::text("user", content)
    }

    /// An `assistant` message (e.g. an earlier answer in a conversation).
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::text("assistant", content)
    }

    /// The answer to tool call `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            tool_call_id: Some(tool_call_id.into()),
            ..Self::text("tool", content)
        }
    }
}

/// A tool call the model asks for: `{"id", "type": "function", "function": {"name", "arguments"}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id; a `tool` message answering it carries it as `tool_call_id`.
    pub id: String,
    /// The call's type; always `function` today.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function to call and its arguments.
    pub function: FunctionCall,
}

/// The function part of a [`ToolCall`]; `arguments` is JSON text, as the protocol sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

fn function_type() -> String {
    "function".to_string()
}

impl ToolCall {
    /// The name of the function the model wants called.
    pub fn name(&self) -> &str {
        &self.function.name
    }

    /// The arguments as JSON (an empty object when the model sent none).
    pub fn arguments(&self) -> Result<Value, serde_json::Error> {
        if self.function.arguments.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        serde_json::from_str(&self.function.arguments)
    }
}

/// A chat-completions request. `model` defaults to the client's; `tools` are OpenAI function
/// definitions (see [`RhaiToolRegistry::to_openai`](crate::rhai_runtime::RhaiToolRegistry::to_openai)).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model; the client's configured model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The conversation so far, oldest first.
    pub messages: Vec<ChatMessage>,
    /// OpenAI function definitions the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    /// How the model may pick a tool (`"auto"`, `"none"`, or a named function).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// Sampling temperature; the client's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Most tokens to generate; the client's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Any other field, passed through as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A request for this conversation, with every other field unset.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }

    /// A one-message conversation.
    pub fn prompt(prompt: impl Into<String>) -> Self {
        Self::new(vec![ChatMessage::user(prompt)])
    }

    /// Offers these OpenAI function definitions to the model.
    pub fn with_tools(mut self, tools: Vec<Value>) -> Self {
        self.tools = tools;
        self
    }

    /// Asks for `model` instead of the client's default.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Reads the plugin's input: a bare JSON string is a prompt; an object needs `messages`
    /// (or `prompt`, plus an optional `system`).
    pub fn from_json(input: Value) -> Result<Self, String> {
        match input {
            Value::String(prompt) => Ok(Self::prompt(prompt)),
            Value::Object(mut map) if !map.contains_key("messages") => {
                let Some(Value::String(prompt)) = map.remove("prompt") else {
                    return Err(
                        "expected {\"messages\": [{\"role\": \"user\", \"content\": \"...\"}]}, \
                         {\"prompt\": \"...\"} or a bare prompt string"
                            .to_string(),
                    );
                };
                let system = match map.remove("system") {
                    Some(Value::String(system)) => Some(system),
                    _ => None,
                };
                map.insert("messages".to_string(), Value::Array(Vec::new()));
                let mut request: Self = serde_json::from_value(Value::Object(map))
                    .map_err(|e| format!("not a chat request: {e}"))?;
                if let Some(system) = system {
                    request.messages.push(ChatMessage::system(system));
                }
                request.messages.push(ChatMessage::user(prompt));
                Ok(request)
            }
            Value::Object(map) => serde_json::from_value(Value::Object(map))
                .map_err(|e| format!("not a chat request: {e}")),
            other => Err(format!(
                "expected a chat request object or a prompt string, got {other}"
            )),
        }
    }
}

/// Token counts, when the server reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    #[serde(default)]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default)]
    pub completion_tokens: u64,
    /// Both together, as the server counts them.
    #[serde(default)]
    pub total_tokens: u64,
}

/// The first choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    /// The server's id for this completion.
    pub id: Option<String>,
    /// The model that answered, as the server names it.
    pub model: Option<String>,
    /// The assistant's message (content and/or tool calls), ready to append to a conversation.
    pub message: ChatMessage,
    /// Why generation stopped (`stop`, `length`, `tool_calls`, ...).
    pub finish_reason: Option<String>,
    /// Token counts, when the server reports them.
    pub usage: Option<Usage>,
}

impl ChatCompletion {
    /// The text of the answer (empty when the model only asked for tools).
    pub fn content(&self) -> &str {
        self.message.content.as_deref().unwrap_or("")
    }

    /// The tool calls the model asked for (empty when it answered in text).
    pub fn tool_calls(&self) -> &[ToolCall] {
        &self.message.tool_calls
    }

    /// The plugin's output: `{"content", "tool_calls": [{"id", "name", "arguments"}],
    /// "finish_reason", "usage", "model", "message"}` (`message` in the wire format, to append
    /// to the next request).
    pub fn to_json(&self) -> Value {
        let tool_calls: Vec<Value> = self
            .tool_calls()
            .iter()
            .map(|call| {
                serde_json::json!({
                    "id": call.id,
                    "name": call.name(),
                    "arguments": call
                        .arguments()
                        .unwrap_or_else(|_| Value::String(call.function.arguments.clone())),
                })
            })
            .collect();
        serde_json::json!({
            "content": self.message.content,
            "tool_calls": tool_calls,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "model": self.model,
            "message": self.message,
        })
    }
}

/// One streamed piece of an answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatDelta {
    /// New text (may be empty, e.g. in the chunk that only sets the role).
    pub content: String,
    /// Raw tool-call fragments of this chunk (`{"index", "id", "function": {...}}`), as sent.
    pub tool_calls: Vec<Value>,
    /// Set on the last chunk of a choice (`stop`, `tool_calls`, `length`).
    pub finish_reason: Option<String>,
    /// Sent by some servers on the last chunk.
    pub usage: Option<Usage>,
}
