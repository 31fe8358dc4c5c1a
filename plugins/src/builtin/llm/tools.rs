//! The tool-call loop: ask the model, run the Rhai tools it asks for, send their results back
//! as `tool` messages, and repeat until it answers in text; and [`LLMPlugin`]'s tool settings.
//! Built with the `rhai` feature (the tools are Rhai scripts of a [`RhaiToolRegistry`]).
//!
//! A tool that fails (bad arguments, script error, unknown name) does not end the
//! conversation: its error goes back to the model as the tool's result,
//! `{"error": "..."}`, which is how OpenAI-style models expect to learn about it.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{ChatCompletion, ChatMessage, ChatRequest, LLMPlugin, LlmClient, LlmError, LlmResult};
use crate::rhai_runtime::RhaiToolRegistry;
use crate::PluginResult;

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

impl LLMPlugin {
    /// Offers the registry's tools to the model on every request that names none itself.
    pub fn with_tools(mut self, registry: Arc<RhaiToolRegistry>) -> Self {
        self.tools = Some(registry);
        self
    }

    /// Runs the tools the model asks for (needs [`with_tools`](Self::with_tools)), for at most
    /// `max_rounds` model turns, and returns the final answer.
    pub fn run_tools(mut self, max_rounds: usize) -> Self {
        self.tool_rounds = Some(max_rounds);
        self
    }

    /// Answers `request` with the registry's tools offered, and run when `run_tools` was set.
    pub(super) async fn complete_with_tools(
        &self,
        client: &LlmClient,
        mut request: ChatRequest,
        registry: &RhaiToolRegistry,
    ) -> PluginResult<Value> {
        match self.tool_rounds {
            Some(rounds) => {
                let run = client.chat_with_tools(&request, registry, rounds).await?;
                let mut output = run.completion.to_json();
                output["tool_calls_run"] = Value::from(run.tool_calls_run);
                Ok(output)
            }
            None => {
                if request.tools.is_empty() {
                    request.tools = registry.to_openai();
                }
                Ok(client.chat(&request).await?.to_json())
            }
        }
    }
}
