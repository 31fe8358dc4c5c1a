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

use bilayer_plugins::{AgentPlugin, FnPlugin, PluginError, PluginResult, PluginType};
use serde_json::{json, Value};

/// intake: totals over this go to the manager.
pub const HIGH_VALUE: f64 = 1000.0;
/// manager: totals up to this are approved.
pub const MANAGER_LIMIT: f64 = 3000.0;

/// Order `i` of the workload, as JSON.
pub fn order(i: u64) -> Value {
    let quantity = 1 + (i * 7919) % 20;
    let price = 1.0 + ((i * 104_729) % 20_000) as f64 / 100.0;
    json!({ "order_id": format!("ORD-{i}"), "quantity": quantity, "price": price })
}

/// What `n` orders must produce: `(shipped, rejected, shipped_total)`.
pub fn expected(n: u64) -> (u64, u64, f64) {
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

/// The four W1 agents as native plugins: `(agent name, plugin)`.
pub fn native_agents() -> Vec<(&'static str, Box<dyn AgentPlugin>)> {
    let intake = FnPlugin::reading(
        "order_intake",
        PluginType::Custom("orders".into()),
        |order| {
            let total = number(order, "quantity")? * number(order, "price")?;
            let order_id = field(order, "order_id")?.clone();
            Ok(if total > HIGH_VALUE {
                json!({ "status": "pending_approval", "reason": "High value order",
                    "order_id": order_id, "total": total, "next_agent": "manager" })
            } else {
                json!({ "status": "approved", "order_id": order_id, "total": total,
                    "next_agent": "fulfillment" })
            })
        },
    );
    let manager = FnPlugin::reading(
        "order_manager",
        PluginType::Custom("orders".into()),
        |msg| {
            let total = number(msg, "total")?;
            let order_id = field(msg, "order_id")?.clone();
            Ok(if total <= MANAGER_LIMIT {
                json!({ "status": "approved", "approved_by": "manager", "order_id": order_id,
                    "total": total, "next_agent": "fulfillment" })
            } else {
                json!({ "status": "rejected", "order_id": order_id, "total": total,
                    "next_agent": "audit" })
            })
        },
    );
    let fulfillment = FnPlugin::reading(
        "order_fulfillment",
        PluginType::Custom("orders".into()),
        |msg| {
            let total = number(msg, "total")?;
            let order_id = field(msg, "order_id")?.clone();
            Ok(json!({ "status": "shipped", "order_id": order_id, "total": total }))
        },
    );
    let audit = FnPlugin::reading("order_audit", PluginType::Custom("orders".into()), |msg| {
        let order_id = field(msg, "order_id")?.clone();
        Ok(json!({ "status": "audited", "order_id": order_id, "total": msg["total"].clone() }))
    });
    vec![
        ("intake", Box::new(intake)),
        ("manager", Box::new(manager)),
        ("fulfillment", Box::new(fulfillment)),
        ("audit", Box::new(audit)),
    ]
}

/// The built-in native plugins a system definition can name (`native = "..."`).
pub fn builtin_native(name: &str) -> Option<Box<dyn AgentPlugin>> {
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
pub const BUILTIN_NATIVE: &[&str] = &[
    "order_intake",
    "order_manager",
    "order_fulfillment",
    "order_audit",
];
