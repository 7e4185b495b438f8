;; Prints "hello from wasmvisor\n" on stdout and returns from _start (exit code 0).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec at 0: {buf=16, len=21}; text at 16; bytes written at 8.
  (data (i32.const 0) "\10\00\00\00\15\00\00\00")
  (data (i32.const 16) "hello from wasmvisor\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
