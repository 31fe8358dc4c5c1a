//! Workload W1 "order routing", the one the Python peers in `../shared/peers` run, so bilayer's
//! figures can be compared with theirs on the same inputs.
//!
//! - order `i`: `order_id = "ORD-{i}"`, `quantity = 1 + (i*7919) % 20`,
//!   `price = 1.0 + ((i*104729) % 20000) / 100.0`;
//! - `intake`: `total = quantity * price`; over 1000 → `manager`, else → `fulfillment`;
//! - `manager`: up to 3000 approved → `fulfillment`, else rejected → `audit`;
//! - `fulfillment` and `audit` are terminal.
//!
//! The agents exist twice: as native plugins here ([`native_agents`]) and as Rhai scripts in
//! `examples/orders/`. [`expected`] recomputes the answer without any framework.
//!
//! Not part of the library's API: the library compiles this file privately for the native
//! plugins a system definition can name ([`builtin_native`]); the `bilayer` binary (`mod
//! orders;` in runtime/main.rs), the benches and the W1 example (`#[path =
//! "../runtime/orders.rs"] mod orders;`) and the integration tests (the same in tests/it/main.rs)
//! each compile it too, for the workload's orders and answer. Each uses part of it, hence the
//! `#[allow(dead_code)]` on those `mod` lines.

use bilayer_plugins::{AgentPlugin, FnPlugin, PluginError, PluginResult, PluginType};
use serde_json::{json, Map, Value};

/// intake: totals over this go to the manager.
pub(crate) const HIGH_VALUE: f64 = 1000.0;
/// manager: totals up to this are approved.
pub(crate) const MANAGER_LIMIT: f64 = 3000.0;

/// Order `i` of the workload, as JSON.
pub(crate) fn order(i: u64) -> Value {
    let quantity = 1 + (i * 7919) % 20;
    let price = 1.0 + ((i * 104_729) % 20_000) as f64 / 100.0;
    json!({ "order_id": format!("ORD-{i}"), "quantity": quantity, "price": price })
}

/// What `n` orders must produce: `(shipped, rejected, shipped_total)`.
pub(crate) fn expected(n: u64) -> (u64, u64, f64) {
    let (mut shipped, mut rejected, mut total) = (0, 0, 0.0);
    for i in 0..n {
        let quantity = (1 + (i * 7919) % 20) as f64;
        let price = 1.0 + ((i * 104_729) % 20_000) as f64 / 100.0;
        let order_total = quantity * price;
        // Over MANAGER_LIMIT implies over HIGH_VALUE: intake sent it to the manager, who rejected it.
        if order_total > MANAGER_LIMIT {
            rejected += 1;
        } else {
            shipped += 1;
            total += order_total;
        }
    }
    (shipped, rejected, total)
}

fn field<'a>(message: &'a Value, name: &str) -> PluginResult<&'a Value> {
    message
        .get(name)
        .ok_or_else(|| PluginError::InvalidInput(format!("the message has no `{name}` field")))
}

fn number(message: &Value, name: &str) -> PluginResult<f64> {
    field(message, name)?
        .as_f64()
        .ok_or_else(|| PluginError::InvalidInput(format!("`{name}` must be a number")))
}

/// The message as a JSON object, to be edited.
fn fields(message: &mut Value) -> PluginResult<&mut Map<String, Value>> {
    message
        .as_object_mut()
        .ok_or_else(|| PluginError::InvalidInput("the message must be a JSON object".into()))
}

/// Sets `key` to `value`, reusing the key already there (inserting allocates a new one).
fn set(fields: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    match fields.get_mut(key) {
        Some(slot) => *slot = value.into(),
        None => {
            fields.insert(key.to_string(), value.into());
        }
    }
}

/// The four W1 agents as native plugins: `(agent name, plugin)`.
///
/// Each turns the message it receives into its output by editing it (`FnPlugin::transforming`):
/// it checks every field it needs first, so a bad message is dead-lettered as it came, then
/// keeps the fields the output carries over and sets the rest. The outputs are those of the
/// Rhai agents in `examples/orders/`.
pub(crate) fn native_agents() -> Vec<(&'static str, Box<dyn AgentPlugin>)> {
    let intake = FnPlugin::transforming(
        "order_intake",
        PluginType::Custom("orders".into()),
        |order| {
            let total = number(order, "quantity")? * number(order, "price")?;
            field(order, "order_id")?;
            let fields = fields(order)?;
            fields.retain(|key, _| key == "order_id");
            // Only `order_id` is left: every other field is new.
            let mut add = |key: &str, value: Value| fields.insert(key.to_string(), value);
            add("total", total.into());
            if total > HIGH_VALUE {
                add("status", "pending_approval".into());
                add("reason", "High value order".into());
                add("next_agent", "manager".into());
            } else {
                add("status", "approved".into());
                add("next_agent", "fulfillment".into());
            }
            Ok(())
        },
    );
    let manager = FnPlugin::transforming(
        "order_manager",
        PluginType::Custom("orders".into()),
        |msg| {
            let total = number(msg, "total")?;
            field(msg, "order_id")?;
            let fields = fields(msg)?;
            fields.retain(|key, _| {
                matches!(key.as_str(), "order_id" | "total" | "status" | "next_agent")
            });
            if total <= MANAGER_LIMIT {
                set(fields, "status", "approved");
                set(fields, "approved_by", "manager");
                set(fields, "next_agent", "fulfillment");
            } else {
                set(fields, "status", "rejected");
                set(fields, "next_agent", "audit");
            }
            Ok(())
        },
    );
    let fulfillment = FnPlugin::transforming(
        "order_fulfillment",
        PluginType::Custom("orders".into()),
        |msg| {
            number(msg, "total")?;
            field(msg, "order_id")?;
            let fields = fields(msg)?;
            fields.retain(|key, _| matches!(key.as_str(), "order_id" | "total" | "status"));
            set(fields, "status", "shipped");
            Ok(())
        },
    );
    let audit = FnPlugin::transforming("order_audit", PluginType::Custom("orders".into()), |msg| {
        field(msg, "order_id")?;
        let fields = fields(msg)?;
        fields.retain(|key, _| matches!(key.as_str(), "order_id" | "total" | "status"));
        fields.entry("total").or_insert(Value::Null);
        set(fields, "status", "audited");
        Ok(())
    });
    vec![
        ("intake", Box::new(intake)),
        ("manager", Box::new(manager)),
        ("fulfillment", Box::new(fulfillment)),
        ("audit", Box::new(audit)),
    ]
}

/// The built-in native plugins a system definition can name (`native = "..."`).
pub(crate) fn builtin_native(name: &str) -> Option<Box<dyn AgentPlugin>> {
    let agent = match name {
        "order_intake" => "intake",
        "order_manager" => "manager",
        "order_fulfillment" => "fulfillment",
        "order_audit" => "audit",
        _ => return None,
    };
    native_agents()
        .into_iter()
        .find(|(n, _)| *n == agent)
        .map(|(_, plugin)| plugin)
}

/// Names accepted by [`builtin_native`].
pub(crate) const BUILTIN_NATIVE: &[&str] = &[
    "order_intake",
    "order_manager",
    "order_fulfillment",
    "order_audit",
];
