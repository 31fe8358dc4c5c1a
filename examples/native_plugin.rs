//! The seed's compile-time plugin, exactly as the design document writes it: only its `use`
//! lines differ (`bilayer::prelude` instead of `mofa_kernel`).
//!
//! Run it with `cargo run --example native_plugin`.

// An example is not API: its `pub` items show what a user writes (the seed's code as the
// design document has it), not the library's surface.
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
// The seed names `load`'s context without using it and clones a `Copy` state; keep its code as written.
#![allow(unused_variables, clippy::clone_on_copy)]

use bilayer::prelude::*;

pub struct MyCompileTimePlugin {
    metadata: PluginMetadata,
    state: PluginState,
    // Your plugin fields
}

impl Default for MyCompileTimePlugin {
    fn default() -> Self {
        Self::new()
    }
}

impl MyCompileTimePlugin {
    pub fn new() -> Self {
        let metadata = PluginMetadata::new(
            "my_plugin",
            "My Plugin",
            PluginType::Custom("analytics".to_string()),
        )
        .with_description("High-performance analytics plugin")
        .with_capability("data_analysis");
        Self {
            metadata,
            state: PluginState::Unloaded,
        }
    }
}

#[async_trait]
impl AgentPlugin for MyCompileTimePlugin {
    fn metadata(&self) -> &PluginMetadata {
        &self.metadata
    }
    fn state(&self) -> PluginState {
        self.state.clone()
    }
    async fn load(&mut self, ctx: &PluginContext) -> PluginResult<()> {
        self.state = PluginState::Loading;
        // Initialize resources (DB connections, etc.)
        self.state = PluginState::Loaded;
        Ok(())
    }
    async fn init_plugin(&mut self) -> PluginResult<()> {
        // Plugin initialization logic
        Ok(())
    }
    async fn start(&mut self) -> PluginResult<()> {
        self.state = PluginState::Running;
        Ok(())
    }
    async fn stop(&mut self) -> PluginResult<()> {
        self.state = PluginState::Loaded;
        Ok(())
    }
    async fn unload(&mut self) -> PluginResult<()> {
        // Clean up resources
        self.state = PluginState::Unloaded;
        Ok(())
    }
    async fn execute(&mut self, input: String) -> PluginResult<String> {
        // Zero-cost execution
        Ok(format!("Processed: {}", input))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The seed's registration and call, then a look at what the manager knows.
#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manager = PluginManager::new("my-agent");
    let plugin = MyCompileTimePlugin::new();
    manager.register(plugin).await?;
    manager.load_all().await?;
    manager.start_all().await?;

    let result = manager
        .execute("my_plugin", "input data".to_string())
        .await?;
    println!("Result: {}", result);

    for info in manager.list() {
        println!(
            "{} ({}): {:?}, {} call(s), mean {:?}",
            info.metadata.id,
            info.metadata.plugin_type,
            info.state,
            info.stats.calls,
            info.stats.mean_latency
        );
    }
    manager.shutdown().await?;
    Ok(())
}
