;; A WASM agent for the mixed pipeline: wraps its input message as
;;   {"next_agent":"decide","checked_by":"wasm","order":<input>}
;; Pure byte copying, no host imports (it needs no capability). Follows docs/wasm-abi.md:
;; exports memory, alloc and execute; a fresh instance per call, so a bump allocator is enough.
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "{\"next_agent\":\"decide\",\"checked_by\":\"wasm\",\"order\":")
  (data (i32.const 128) "{\"id\":\"wrap_for_review\",\"name\":\"Wrap for review\",\"version\":\"1.0.0\",\"capabilities\":[]}")
  (global $prefix_len i32 (i32.const 51))
  (global $heap (mut i32) (i32.const 4096))

  (func $alloc (export "alloc") (param $len i32) (result i32)
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

  (func $region (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))

  (func (export "bilayer_metadata") (result i64)
    (call $region (i32.const 128) (i32.const 85)))

  (func (export "execute") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32) (local $total i32)
    (local.set $total (i32.add (i32.add (global.get $prefix_len) (local.get $len)) (i32.const 1)))
    (local.set $out (call $alloc (local.get $total)))
    (if (i32.eqz (local.get $out)) (then (unreachable)))
    (memory.copy (local.get $out) (i32.const 16) (global.get $prefix_len))
    (memory.copy (i32.add (local.get $out) (global.get $prefix_len)) (local.get $ptr) (local.get $len))
    (i32.store8 (i32.sub (i32.add (local.get $out) (local.get $total)) (i32.const 1)) (i32.const 125))
    (call $region (local.get $out) (local.get $total))))
