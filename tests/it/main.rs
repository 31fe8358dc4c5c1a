//! The integration tests of the `bilayer` package, as one test binary (`it`): a module per area,
//! named after the file it was before, so `cargo test --test it hot_reload_load` still selects an
//! area by its name, and the helpers as sibling modules.
//!
//! One binary instead of one per file: the library and its dependencies are linked once, not
//! ~30 times (issue 22, "Lighter to build"). All tests share the process, so none may install
//! process-global state for the others: metrics recorders and tracing subscribers are scoped to
//! the runtime of the test that reads them (`common::scoped`), scratch files and NATS streams are
//! named per test, and environment variables are set only in a child process of their own
//! (`nats_auth`).

// The test binary is not API: the `pub` items of the helper modules (and of the examples some
// areas include) are for the areas, not for users to read.
#![allow(missing_docs, unreachable_pub)]

// Workload W1 (not library API: runtime/orders.rs says why); the areas use part of it.
#[allow(dead_code)]
#[path = "../../runtime/orders.rs"]
mod orders;

// Helpers shared by the areas.
mod builtin_server;
mod common;
mod hot_reload_support;
mod nats_support;
mod test_plugins;

// One module per area.
mod agent_inbox;
mod agent_observability;
mod agent_system;
mod builtin_database;
mod builtin_http;
mod builtin_llm;
mod builtin_system;
mod cli;
mod concurrency;
mod definition_fuzz;
mod durable_runs;
mod durable_steps;
mod foundation_calls;
mod foundation_lifecycle;
mod foundation_supervision;
mod hot_reload;
mod hot_reload_example;
mod hot_reload_load;
mod hot_reload_metrics;
mod hot_reload_rollback;
mod journal_cli;
mod native_plugin_example;
mod nats_auth;
mod nats_scale_out;
mod nats_transport;
mod pipelines;
mod routing_reload;
mod triage;
mod w2_example;
mod worker_watch;
