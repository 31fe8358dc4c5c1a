//! The seed's "Hot Reload Configuration" event loop, with a `PluginManager` serving the plugin.
//!
//! The example copies the seed's order processor into a temporary directory, registers it,
//! watches the directory, and then edits the script itself the way a person would: a new rule,
//! a broken save (the old version keeps serving), a fix that keeps a counter in the plugin's
//! state and migrates it, and a no-op save (no reload). It stops the manager at the end, which
//! ends the event loop.
//!
//! Run it with `cargo run --example hot_reload`.

// An example is not API: its `pub fn main` is shared with tests/hot_reload_example.rs.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bilayer::hot_reload::{HotReloadConfig, HotReloadManager, ReloadEvent, ReloadStrategy};
use bilayer::prelude::*;
use bilayer::rhai_runtime::RhaiPlugin;
use serde_json::json;

const SEED_VERSION: &str = r#"// Order processing logic
fn process_order(order) {
    let total = order.quantity * order.price;
    if total > 1000.0 {
        return #{ status: "pending_approval", reason: "High value order", next_agent: "manager" };
    }
    return #{ status: "approved", order_id: order.id, total: total };
}
process_order
"#;

/// Raises the approval threshold.
const HIGHER_THRESHOLD: &str = r#"fn process_order(order) {
    let total = order.quantity * order.price;
    if total > 2000.0 {
        return #{ status: "pending_approval", reason: "High value order", next_agent: "manager" };
    }
    return #{ status: "approved", order_id: order.id, total: total };
}
process_order
"#;

/// A save in the middle of an edit: does not compile.
const BROKEN: &str = r#"fn process_order(order) {
    let total = order.quantity * order.price
    if total > 2000.0 {
"#;

/// Counts orders in the plugin's state; `migrate` shapes the state the old version left.
const COUNTING: &str = r#"fn migrate(old_state) {
    #{ orders_seen: old_state.orders_seen ?? 0, schema: 2 }
}
fn process_order(order) {
    state.orders_seen += 1;
    let total = order.quantity * order.price;
    if total > 2000.0 {
        return #{ status: "pending_approval", reason: "High value order", next_agent: "manager", seen: state.orders_seen };
    }
    return #{ status: "approved", order_id: order.id, total: total, seen: state.orders_seen };
}
process_order
"#;

#[tokio::main]
pub async fn main() -> PluginResult<()> {
    let dir = scratch_dir()?;
    let script = dir.join("order_processor.rhai");
    std::fs::write(&script, SEED_VERSION)?;

    let plugins = PluginManager::new("orders");
    plugins.register(RhaiPlugin::from_file(&script)?).await?;
    plugins.load_all().await?;
    plugins.start_all().await?;

    // The seed's configuration; only the debounce window is shorter, so the example is quick.
    let config = HotReloadConfig::new()
        .with_strategy(ReloadStrategy::Debounced(Duration::from_millis(200)))
        .with_preserve_state(true) // Keep plugin state
        .with_auto_rollback(true) // Rollback on failure
        .with_max_attempts(3); // Retry limit

    let manager = Arc::new(HotReloadManager::new(&dir, config).with_target(plugins.clone()));
    manager.start().await?;

    let editor = tokio::spawn(edit_like_a_person(
        manager.clone(),
        plugins.clone(),
        script.clone(),
    ));

    // Listen for reload events (the seed's loop; it ends when the manager stops)
    let mut events = manager.events();
    while let Some(event) = events.recv().await {
        match event {
            ReloadEvent::ReloadCompleted { plugin_id, .. } => {
                println!("✅ Reloaded: {}", plugin_id);
            }
            ReloadEvent::ReloadFailed {
                plugin_id, error, ..
            } => {
                eprintln!("❌ Failed to reload {}: {}", plugin_id, error);
            }
            ReloadEvent::FileChanged { path } => println!("   changed: {}", path.display()),
            _ => {}
        }
    }

    editor
        .await
        .map_err(|e| PluginError::execution(format!("the editing task failed: {e}")))??;
    plugins.shutdown().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Edits the script, waiting for each change to land before the next, then stops the manager.
async fn edit_like_a_person(
    manager: Arc<HotReloadManager>,
    plugins: PluginManager,
    script: PathBuf,
) -> PluginResult<()> {
    let order = json!({ "id": "ORD-123", "quantity": 5, "price": 250.0 }).to_string();
    let mut events = manager.events();
    println!(
        "seed version:      {}",
        plugins.execute("order_processor", order.clone()).await?
    );

    save(&script, HIGHER_THRESHOLD, &mut events).await?;
    println!(
        "higher threshold:  {}",
        plugins.execute("order_processor", order.clone()).await?
    );

    save(&script, BROKEN, &mut events).await?;
    println!(
        "after broken save: {}",
        plugins.execute("order_processor", order.clone()).await?
    );

    save(&script, COUNTING, &mut events).await?;
    plugins.execute("order_processor", order.clone()).await?;
    println!(
        "counting version:  {}",
        plugins.execute("order_processor", order.clone()).await?
    );

    // Saving the same text again reloads nothing.
    std::fs::write(&script, COUNTING)?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    println!(
        "no-op save:        version {} still serving",
        plugins.version("order_processor").unwrap_or_default()
    );

    manager.stop().await;
    Ok(())
}

/// Writes `text` over the script and waits until hot reload has acted on it.
async fn save(
    script: &Path,
    text: &str,
    events: &mut bilayer::hot_reload::ReloadEvents,
) -> PluginResult<()> {
    std::fs::write(script, text)?;
    let wait = async {
        while let Some(event) = events.recv().await {
            if matches!(
                event,
                ReloadEvent::ReloadCompleted { .. } | ReloadEvent::ReloadFailed { .. }
            ) {
                return Ok(());
            }
        }
        Err(PluginError::execution("the hot reload manager stopped"))
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .map_err(|_| PluginError::execution("no reload within 30 s of a save"))?
}

fn scratch_dir() -> PluginResult<PathBuf> {
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!(
        "bilayer-hot-reload-{}-{unique}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
