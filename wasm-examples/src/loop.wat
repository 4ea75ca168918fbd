;; loop: prints "looping" through WASI fd_write, then spins forever in wasm code.
;; For kill tests of a guest busy in wasm (no host call to interrupt).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "looping\n")
  (func (export "_start")
    ;; iovec at 0: base 16, len 8
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (loop $forever (br $forever))))
