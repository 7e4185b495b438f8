;; Grows its memory to 64 MiB (1023 more pages), writes a byte in every 4 KiB page so the kernel
;; must back them all, then prints "touched" and exits 0. Under a 64 MiB limit the store limits
;; allow the grow (to the limit itself), but the process running it needs memory of its own too,
;; which pushes the cgroup over: the OOM killer ends it. (At 62 MiB, the compiled runner's ~1 MB
;; left room to spare, where a Python worker's ~20 MB did not.)
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "touched\n")
  (func (export "_start")
    (local $at i32)
    (if (i32.eq (memory.grow (i32.const 1023)) (i32.const -1))
      (then unreachable))
    (local.set $at (i32.const 65536))
    (loop $touch
      (i32.store8 (local.get $at) (i32.const 1))
      (local.set $at (i32.add (local.get $at) (i32.const 4096)))
      (br_if $touch (i32.lt_u (local.get $at) (i32.const 67108864))))
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
