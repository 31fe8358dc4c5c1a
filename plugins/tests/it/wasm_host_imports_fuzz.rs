//! Property tests of the WASM host imports' pointer handling (issue 21 item 11): a guest may
//! hand each import any `(ptr, len)` it likes (out of bounds, overflowing `ptr + len`, lengths
//! near 4 GiB, negative as i32), have its `alloc` return any pointer for the host's result, and
//! return any region from `execute`. The host must answer each with an error or a result,
//! never a panic or a read outside guest memory; and a read argument outside the guest's
//! memory must fail the call with an error naming the import.
//!
//! Each case builds a module from WAT with the fuzzed constants. The case count is fixed (256
//! per property), so CI runs a bounded number; `BILAYER_FUZZ_CASES=N` runs N locally.

use bilayer_plugins::wasm_runtime::{WasmCapabilities, WasmPlugin};
use bilayer_plugins::PluginError;
use proptest::prelude::*;

use crate::cpu_bound;

const CASES: u32 = 256;

fn cases() -> u32 {
    std::env::var("BILAYER_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES)
}
const PAGE: u64 = 64 << 10;

/// The imports under test: module, name and signature. The `bilayer` ones read `(ptr, len)`
/// pairs (after `log`'s level); WASI's `fd_write` reads an iovec array at one pair, then the
/// pairs it points at, and answers a bad one with an errno.
const IMPORTS: &[(&str, &str, &str)] = &[
    ("bilayer", "log", "(param i32 i32 i32)"),
    ("bilayer", "config_get", "(param i32 i32) (result i64)"),
    ("bilayer", "state_get", "(param i32 i32) (result i64)"),
    (
        "bilayer",
        "state_set",
        "(param i32 i32 i32 i32) (result i64)",
    ),
    (
        "bilayer",
        "call_plugin",
        "(param i32 i32 i32 i32) (result i64)",
    ),
    (
        "wasi_snapshot_preview1",
        "fd_write",
        "(param i32 i32 i32 i32) (result i32)",
    ),
];

/// Guest addresses and lengths that probe the edges: zero, the memory's last bytes and one
/// past them, values whose sum overflows 32 bits, i32's sign boundary, and anything at all.
fn guest_word(memory_bytes: u64) -> impl Strategy<Value = u32> {
    let size = memory_bytes as u32;
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(size.wrapping_sub(1)),
        Just(size),
        Just(size.wrapping_add(1)),
        Just(i32::MAX as u32),
        Just(i32::MIN as u32),
        Just(u32::MAX),
        0u32..size.saturating_add(64),
        any::<u32>(),
    ]
}

fn plugin(id: &str, wat: &str) -> WasmPlugin {
    let grants: Vec<String> = ["log", "config", "state", "call_plugin", "wasi"]
        .iter()
        .map(|g| g.to_string())
        .collect();
    WasmPlugin::from_bytes(id, wat)
        .expect("the generated module compiles")
        .with_capabilities(WasmCapabilities::from_names(&grants).expect("known grants"))
}

/// A module whose `execute` calls `import` once with `args`, whose `alloc` returns `alloc_ptr`,
/// and which returns the region `returned`.
fn module(pages: u64, import: usize, args: &[u32], alloc_ptr: u32, returned: u64) -> String {
    let (module, name, signature) = IMPORTS[import];
    let call_args: String = args
        .iter()
        .map(|a| format!(" (i32.const {})", *a as i32))
        .collect();
    let call = if signature.contains("result") {
        format!("(drop (call $import{call_args}))")
    } else {
        format!("(call $import{call_args})")
    };
    format!(
        r#"(module
  (import "{module}" "{name}" (func $import {signature}))
  (memory (export "memory") {pages})
  (func (export "alloc") (param i32) (result i32) (i32.const {alloc}))
  (func (export "execute") (param i32 i32) (result i64)
    {call}
    (i64.const {returned})))"#,
        alloc = alloc_ptr as i32,
        returned = returned as i64,
    )
}

fn in_bounds(ptr: u32, len: u32, memory_bytes: u64) -> bool {
    u64::from(ptr) + u64::from(len) <= memory_bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Any arguments to any import: an answer, never a panic; a `bilayer` import handed a read
    /// region outside memory fails the call naming the import.
    #[test]
    fn any_pointer_to_any_import_is_an_error_or_a_result(
        pages in 1u64..=3,
        import in 0..IMPORTS.len(),
        words in proptest::collection::vec(any::<u32>(), 4),
        edges in proptest::collection::vec(guest_word(3 * PAGE), 4),
        use_edges in any::<bool>(),
        alloc_ptr in guest_word(3 * PAGE),
    ) {
        let _cpu = cpu_bound::one_at_a_time();
        let memory_bytes = pages * PAGE;
        let (module_name, name, signature) = IMPORTS[import];
        let params = signature.split("(result").next().unwrap_or("").matches("i32").count();
        let args: Vec<u32> = (0..params)
            .map(|i| if use_edges { edges[i] } else { words[i] })
            .collect();
        let wat = module(pages, import, &args, alloc_ptr, 0);
        let outcome = plugin("fuzz", &wat).execute_sync("");
        if module_name == "bilayer" {
            // log(level, ptr, len); the others read (ptr, len) pairs from their first argument.
            let pairs: Vec<(u32, u32)> = if name == "log" {
                vec![(args[1], args[2])]
            } else {
                args.chunks(2).map(|pair| (pair[0], pair[1])).collect()
            };
            // Every pair is read before anything else happens, so any one outside memory fails.
            let any_out = pairs.iter().any(|(p, l)| !in_bounds(*p, *l, memory_bytes));
            if any_out {
                match &outcome {
                    Err(PluginError::Runtime { location, message }) => {
                        let named = location.contains(name) || message.contains(name);
                        prop_assert!(named, "{name}: {location}: {message}");
                        prop_assert!(
                            message.contains("outside the guest's memory"),
                            "{name}: {message}"
                        );
                    }
                    other => prop_assert!(false, "{name} {args:?}: expected an error, got {other:?}"),
                }
            }
        }
    }

    /// Any region returned by `execute`: the bytes when they lie in memory, an error otherwise.
    #[test]
    fn any_returned_region_is_read_only_inside_memory(
        pages in 1u64..=3,
        ptr in guest_word(3 * PAGE),
        len in guest_word(3 * PAGE),
        is_error in any::<bool>(),
    ) {
        let memory_bytes = pages * PAGE;
        let packed = (u64::from(ptr) << 32)
            | if is_error { 0x8000_0000 } else { 0 }
            | (u64::from(len) & 0x7FFF_FFFF);
        let len = len & 0x7FFF_FFFF;
        // Call `log` with an empty message so the module has an import like the others.
        let wat = module(pages, 0, &[2, 0, 0], 1024, packed);
        let outcome = plugin("region", &wat).execute_bytes(b"");
        let fits = in_bounds(ptr, len, memory_bytes);
        match outcome {
            Ok(bytes) => {
                prop_assert!(fits && !is_error, "{ptr:#x}+{len}: {} bytes", bytes.len());
                prop_assert_eq!(bytes.len(), len as usize);
            }
            Err(PluginError::Execution(_)) => prop_assert!(fits && is_error),
            Err(PluginError::LimitExceeded { limit, .. }) => {
                prop_assert_eq!(limit, "max_output_bytes");
                prop_assert!(len as usize > 16 << 20);
            }
            Err(PluginError::Runtime { message, .. }) => {
                prop_assert!(!fits, "{ptr:#x}+{len} fits but failed: {message}");
                prop_assert!(message.contains("outside the guest's memory"), "{message}");
            }
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }
}
