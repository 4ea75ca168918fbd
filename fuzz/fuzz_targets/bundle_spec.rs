//! Feeds arbitrary bytes as a bundle's `config.json` to `pouch::spec::load_bundle_spec` (what
//! `pouch-runtime create` reads from the caller), and the same bytes as a `process.json` the way
//! `pouch-runtime exec --process` parses it (serde_path_to_error into an OCI `Process`). Must
//! never panic; every error must be printable.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::Process;
use std::sync::OnceLock;

fn bundle() -> &'static tempfile::TempDir {
    // One bundle dir per process; config.json is rewritten for every input.
    static B: OnceLock<tempfile::TempDir> = OnceLock::new();
    B.get_or_init(|| tempfile::tempdir().expect("temp bundle dir"))
}

fuzz_target!(|data: &[u8]| {
    let dir = bundle().path();
    std::fs::write(dir.join("config.json"), data).expect("write config.json");
    match pouch::spec::load_bundle_spec(dir) {
        Ok(spec) => {
            let _ = pouch::spec::rootfs_path(dir, &spec);
            let _ = serde_json::to_vec(&spec);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let de = &mut serde_json::Deserializer::from_slice(data);
    match serde_path_to_error::deserialize::<_, Process>(de) {
        Ok(p) => {
            let _ = serde_json::to_vec(&p);
        }
        Err(e) => {
            let _ = format!("{}: {}", e.path(), e.inner());
        }
    }
});
