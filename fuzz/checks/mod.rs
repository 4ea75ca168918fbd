//! The invariants of every fuzz target, one module per target, each exposing
//! `pub fn check(data: &[u8])` that panics when the input breaks one.
//!
//! Shared by the cargo-fuzz targets (`fuzz/fuzz_targets/<target>.rs`, a one-line
//! `fuzz_target!` each) and by the root crate's `tests/fuzz_regressions.rs`, which replays the
//! committed seeds and regression inputs on stable Rust in `cargo test`. Both include this file
//! with `#[path = "../fuzz/checks/mod.rs"]`-style module paths, so the checks may use only what
//! both crates depend on: `pouch`, `oci-spec`, `serde_json`, `serde_path_to_error`, `tempfile`
//! (a dev-dependency of the root crate). See docs/FUZZING.md.

pub mod bundle_spec;
pub mod dispatch_sniff;
pub mod image_reference;
pub mod layer_tar;
pub mod manifest_document;
pub mod template;

/// The input as text, the way libfuzzer-sys hands a `&str` to a `fuzz_target!(|s: &str| …)`
/// (`arbitrary`'s `<&str>::arbitrary_take_rest`): the longest valid UTF-8 prefix of the bytes,
/// not a rejection of the whole input. Keeps the text targets' behaviour, and the meaning of
/// their crash files, what it was when they took `&str`.
pub fn utf8_prefix(data: &[u8]) -> &str {
    match std::str::from_utf8(data) {
        Ok(s) => s,
        Err(e) => {
            std::str::from_utf8(&data[..e.valid_up_to()]).expect("valid_up_to is valid UTF-8")
        }
    }
}
