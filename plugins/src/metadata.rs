//! What a plugin says about itself: id, name, kind, version, capabilities and dependencies.
//!
//! The builder methods are the seed's (`PluginMetadata::new(id, name, PluginType)` then
//! `with_description`, `with_capability`), plus `with_version` and `with_dependency`, which the
//! manager reads to order loading and starting.

use serde::{Deserialize, Serialize};

/// The kind of a plugin, used for listing and routing decisions; it does not change behaviour.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginType {
    /// A language model client.
    Llm,
    /// A tool an agent calls.
    Tool,
    /// Storage (a database, files).
    Storage,
    /// An agent's memory.
    Memory,
    /// A Rhai script.
    Script,
    /// A WebAssembly module.
    Wasm,
    /// Any other kind, named by the application.
    Custom(String),
}

impl std::fmt::Display for PluginType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginType::Llm => f.write_str("llm"),
            PluginType::Tool => f.write_str("tool"),
            PluginType::Storage => f.write_str("storage"),
            PluginType::Memory => f.write_str("memory"),
            PluginType::Script => f.write_str("script"),
            PluginType::Wasm => f.write_str("wasm"),
            PluginType::Custom(kind) => write!(f, "custom:{kind}"),
        }
    }
}

/// Static description of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginMetadata {
    /// Unique id within a manager; `manager.execute(id, ..)` addresses the plugin by it.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// The plugin's kind.
    pub plugin_type: PluginType,
    /// Version of the plugin's code or artifact (a script's content hash for Rhai).
    pub version: String,
    /// What the plugin does, in a sentence (empty when unset).
    pub description: String,
    /// What the plugin offers (free-form tags such as `data_analysis`).
    pub capabilities: Vec<String>,
    /// Ids of plugins that must be loaded and started before this one.
    pub dependencies: Vec<String>,
}

impl PluginMetadata {
    /// Metadata with the given id, name and type, version `0.1.0`, and nothing else.
    pub fn new(id: impl Into<String>, name: impl Into<String>, plugin_type: PluginType) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            plugin_type,
            version: "0.1.0".to_string(),
            description: String::new(),
            capabilities: Vec::new(),
            dependencies: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn with_description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a capability tag.
    pub fn with_capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// Sets the version (default `0.1.0`).
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Declares that `plugin_id` must be loaded and started before this plugin, and stopped after.
    pub fn with_dependency(mut self, plugin_id: impl Into<String>) -> Self {
        self.dependencies.push(plugin_id.into());
        self
    }

    /// Whether `capability` is one of the plugin's capability tags.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities.iter().any(|c| c == capability)
    }
}
