;; Uses one SIMD instruction, then exits 0: it runs unless wasmtime's SIMD support is turned off
;; (the `wasmvisor.io/wasmtime.simd=false` annotation), which refuses it at Create.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (i32x4.extract_lane 0 (i32x4.splat (i32.const 7))))))
