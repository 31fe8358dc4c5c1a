;; The seed table's "llm" row for WASM (benches/seed_table.rs): forwards its whole input to
;; `call_plugin("llm", input)` (the built-in plugin, through its actor) and returns the answer as it
;; comes (an error from the host stays an error). A copy of
;; plugins/tests/fixtures/wasm/forward_to_database.wat with another target. Needs the `call_plugin` (or
;; `call_plugin:llm`) capability; without it the module does not link.
(module
  (import "bilayer" "call_plugin" (func $call_plugin (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 16) "llm")

  ;; Bump allocator: 8-byte aligned, grows memory as needed, returns 0 when it cannot.
  (global $heap (mut i32) (i32.const 4096))
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.div_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                  (i32.const 65536)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (call $call_plugin (i32.const 16) (i32.const 3) (local.get $ptr) (local.get $len))))
