//! The hand-written hosts of the plugin tests, gathered in one place: each is a
//! `PluginCaller` a plugin reaches through `call_plugin`, standing in for the actor layer.
//!
//! - [`FakeDatabase`]: a "database" answering every query with fixed sales rows, and "echo";
//!   records the queries.
//! - [`MiniHost`]: real Rhai plugins by id, each behind a lock that plays its actor's mailbox,
//!   with the call-chain check the actor layer performs.
//! - [`FakeHost`]: "echo" answers `echo:<input>`, "broken" always fails; records the chains.
//! - [`CountingHost`]: every target answers `<target>:<input>`; counts the calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bilayer_plugins::rhai_runtime::RhaiPlugin;
use bilayer_plugins::{
    AgentPlugin, CallChain, PluginCaller, PluginContext, PluginError, PluginResult,
};
use futures::future::BoxFuture;
use serde_json::json;

/// A fake "database" plugin: answers every query with fixed sales rows and records the query.
#[derive(Default)]
pub struct FakeDatabase {
    pub queries: Mutex<Vec<String>>,
}

impl PluginCaller for FakeDatabase {
    fn call(
        &self,
        _chain: CallChain,
        target: String,
        input: String,
    ) -> BoxFuture<'static, PluginResult<String>> {
        self.queries.lock().unwrap().push(input.clone());
        Box::pin(async move {
            match target.as_str() {
                "database" => Ok(json!([
                    {"id": 1, "amount": 100.5, "date": "2024-02-01"},
                    {"id": 2, "amount": 200, "date": "2024-03-01"},
                    {"id": 3, "amount": 49.25, "date": "2024-04-01"}
                ])
                .to_string()),
                "echo" => Ok(input),
                other => Err(PluginError::NotFound(other.to_string())),
            }
        })
    }
}

/// A minimal host: plugins by id, each behind a lock that plays its actor's mailbox, with the
/// call-chain check the actor layer performs.
#[derive(Default)]
pub struct MiniHost {
    pub plugins: Mutex<HashMap<String, Arc<tokio::sync::Mutex<RhaiPlugin>>>>,
}

impl MiniHost {
    pub async fn add(self: &Arc<Self>, mut plugin: RhaiPlugin) {
        let id = plugin.metadata().id.clone();
        let ctx =
            PluginContext::new(id.clone()).with_caller(Arc::clone(self) as Arc<dyn PluginCaller>);
        plugin.load(&ctx).await.unwrap();
        plugin.start().await.unwrap();
        self.plugins
            .lock()
            .unwrap()
            .insert(id, Arc::new(tokio::sync::Mutex::new(plugin)));
    }

    /// What a manager's `execute(id, input)` does for an outside caller.
    pub async fn execute(self: &Arc<Self>, id: &str, input: &str) -> PluginResult<String> {
        self.call(CallChain::default(), id.to_string(), input.to_string())
            .await
    }
}

impl PluginCaller for MiniHost {
    fn call(
        &self,
        chain: CallChain,
        target: String,
        input: String,
    ) -> BoxFuture<'static, PluginResult<String>> {
        let plugin = self.plugins.lock().unwrap().get(&target).cloned();
        Box::pin(async move {
            chain.check_call(&target)?;
            let plugin = plugin.ok_or_else(|| PluginError::NotFound(target.clone()))?;
            let mut plugin = plugin.lock().await;
            chain
                .scope(Arc::from(target.as_str()), plugin.execute(input))
                .await
        })
    }
}

/// A host with two plugins: "echo" answers with its input, "broken" always fails; it records
/// the chains it was called with.
#[derive(Default)]
pub struct FakeHost {
    pub chains: Mutex<Vec<Vec<String>>>,
}

impl PluginCaller for FakeHost {
    fn call(
        &self,
        chain: CallChain,
        target: String,
        input: String,
    ) -> BoxFuture<'static, PluginResult<String>> {
        self.chains.lock().unwrap().push(chain.ids());
        Box::pin(async move {
            match target.as_str() {
                "echo" => Ok(format!("echo:{input}")),
                "broken" => Err(PluginError::execution("the database is down")),
                other => Err(PluginError::NotFound(other.to_string())),
            }
        })
    }
}

/// A host whose `echo` plugin counts its calls.
#[derive(Default)]
pub struct CountingHost {
    pub calls: AtomicUsize,
}

impl PluginCaller for CountingHost {
    fn call(
        &self,
        _chain: CallChain,
        target: String,
        input: String,
    ) -> BoxFuture<'static, PluginResult<String>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(format!("{target}:{input}")) })
    }
}
