//! Arbitrary bytes as a bundle's `config.json` to `pouch::spec::load_bundle_spec` (what
//! `pouch-runtime create` reads from the caller), and the same bytes as a `process.json` the way
//! `pouch-runtime exec --process` parses it (serde_path_to_error into an OCI `Process`). Must
//! never panic; every error must be printable.

use oci_spec::runtime::Process;

thread_local! {
    // One bundle dir per thread (the fuzzer's one thread, or one test), config.json rewritten for
    // every input; removed when the thread ends.
    static BUNDLE: tempfile::TempDir = tempfile::tempdir().expect("temp bundle dir");
}

pub fn check(data: &[u8]) {
    BUNDLE.with(|bundle| check_in(bundle.path(), data));
}

fn check_in(dir: &std::path::Path, data: &[u8]) {
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
}
