;; Imports env.nope, which no engine provides: loading it must fail with a message naming the import.
(module
  (import "env" "nope" (func $nope))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $nope)))
