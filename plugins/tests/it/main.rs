//! The integration tests of `bilayer-plugins`, as one test binary (`it`): a module per area,
//! named after the file it was before, so `cargo test -p bilayer-plugins --test it wasm_wasi`
//! still selects an area by its name. The WebAssembly fixtures stay in `plugins/tests/fixtures`;
//! the hand-written hosts that plugins call through `call_plugin` are in `test_hosts`.
//!
//! One binary instead of one per file: the crate and wasmtime are linked once, not ~20 times
//! (issue 22, "Lighter to build"). All tests share the process, so none may install
//! process-global state that another test reads: metrics recorders and tracing subscribers are
//! scoped to the thread of the test that reads them (`scoped_subscriber`), and the one global
//! tracing subscriber (`wasm_inline`) counts only the messages its own test logs. And any two
//! tests may now run side by side: the CPU-bound ones and the timing ones take one lock
//! (`cpu_bound`), so that no timing test runs beside a hog from another area.

// The test binary is not API: the `pub` items of the helper modules are for the areas, not for
// users to read.
#![allow(missing_docs, unreachable_pub)]

// Helpers shared by the areas.
mod cpu_bound;
mod scoped_subscriber;
mod test_hosts;

// One module per area.
mod call_timeout;
mod rhai_caching;
mod rhai_call_plugin;
mod rhai_entry_fields;
mod rhai_errors;
mod rhai_inline;
mod rhai_rule_metrics;
mod rhai_sandbox;
mod rhai_seed_scripts;
mod rhai_state;
mod rhai_tools;
mod wasm_c_plugins;
mod wasm_capabilities;
mod wasm_host_imports;
mod wasm_host_imports_fuzz;
mod wasm_inline;
mod wasm_limits;
mod wasm_plugin;
mod wasm_wasi;
