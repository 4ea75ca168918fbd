//! The `manifest_document` fuzz target: what it feeds and the invariants it checks are in
//! `fuzz/checks/manifest_document.rs`, shared with `tests/fuzz_regressions.rs` (see docs/FUZZING.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/mod.rs"]
#[allow(dead_code)] // every target compiles all the checks and calls one
mod checks;

fuzz_target!(|data: &[u8]| checks::manifest_document::check(data));
