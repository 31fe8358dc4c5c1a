//! The tool-call loop: ask the model, run the Rhai tools it asks for, send their results back
//! as `tool` messages, and repeat until it answers in text.
//!
//! A tool that fails (bad arguments, script error, unknown name) does not end the
//! conversation: its error goes back to the model as the tool's result,
//! `{"error": "..."}`, which is how OpenAI-style models expect to learn about it.

use serde_json::json;

use super::{ChatCompletion, ChatMessage, ChatRequest, LlmClient, LlmError, LlmResult};
use crate::rhai_runtime::RhaiToolRegistry;

/// What [`LlmClient::chat_with_tools`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRun {
    /// The final answer (no tool calls).
    pub completion: ChatCompletion,
    /// The whole conversation: the request's messages, each assistant turn, each tool result.
    pub messages: Vec<ChatMessage>,
    /// How many tool calls were run.
    pub tool_calls_run: usize,
}

impl LlmClient {
    /// Chats with the registry's tools offered (unless `request.tools` is already set), running
    /// every tool the model asks for, for at most `max_rounds` model turns.
    pub async fn chat_with_tools(
        &self,
        request: &ChatRequest,
        registry: &RhaiToolRegistry,
        max_rounds: usize,
    ) -> LlmResult<ToolRun> {
        let mut request = request.clone();
        if request.tools.is_empty() {
            request.tools = registry.to_openai();
        }
        let mut tool_calls_run = 0;
        for _ in 0..max_rounds.max(1) {
            let completion = self.chat(&request).await?;
            if completion.tool_calls().is_empty() {
                return Ok(ToolRun {
                    completion,
                    messages: request.messages,
                    tool_calls_run,
                });
            }
            request.messages.push(completion.message.clone());
            for call in completion.tool_calls() {
                let result = match registry
                    .execute(call.name(), &call.function.arguments)
                    .await
                {
                    Ok(output) => output,
                    Err(e) => json!({ "error": e.to_string() }).to_string(),
                };
                tool_calls_run += 1;
                request
                    .messages
                    .push(ChatMessage::tool(call.id.clone(), result));
            }
        }
        let last = request
            .messages
            .iter()
            .rev()
            .find_map(|m| m.tool_calls.last())
            .map(|c| c.name().to_string())
            .unwrap_or_default();
        Err(LlmError::Tool {
            name: last,
            message: format!(
                "the model still asked for tools after {max_rounds} rounds; raise max_rounds or check the tool results"
            ),
        })
    }
}
