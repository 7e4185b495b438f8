;; Traps at once (unreachable): the container's exit code must be 137.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    unreachable))
