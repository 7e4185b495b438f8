;; Two exports: `_start` prints "start called\n", `greet` prints "greet called\n".
;; An image entrypoint "/custom.wasm#greet" must run `greet`, not `_start`.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\20\00\00\00\0d\00\00\00")  ;; iovec {32, 13}
  (data (i32.const 16) "\30\00\00\00\0d\00\00\00") ;; iovec {48, 13}
  (data (i32.const 32) "start called\n")
  (data (i32.const 48) "greet called\n")
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "greet")
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 8)))))
