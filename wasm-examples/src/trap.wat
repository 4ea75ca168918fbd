;; trap: executes `unreachable`. The runtime must report the trap and exit non-zero.
(module
  (memory (export "memory") 1)
  (func (export "_start") unreachable))
