;; Grows its memory twice and prints what memory.grow returned each time, as a word:
;; "small grow: ok" for 16 pages (1 MiB), then "big grow: -1" (or ": ok") for 1600 pages (100 MiB).
;; Under `ctr run --memory-limit 67108864` the big one must fail inside wasm (store limits).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "small grow: ok\n")   ;; 15 bytes
  (data (i32.const 120) "small grow: -1\n")
  (data (i32.const 140) "big grow: ok\n")     ;; 13 bytes
  (data (i32.const 160) "big grow: -1\n")
  (func $print (param $at i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $at))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1))
      (then (call $print (i32.const 120) (i32.const 15)))
      (else (call $print (i32.const 100) (i32.const 15))))
    (if (i32.eq (memory.grow (i32.const 1600)) (i32.const -1))
      (then (call $print (i32.const 160) (i32.const 13)))
      (else (call $print (i32.const 140) (i32.const 13))))))
