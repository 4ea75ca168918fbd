//! Example images built into `pouch`, so that the first `pouch run` works on a fresh machine
//! without a network: wasm OCI artifacts made from the programs of `wasm-examples/`.
//!
//! | name | what |
//! |---|---|
//! | `localhost/pouch-examples/hello:latest` | a WASI preview 1 module: prints a greeting, its arguments and `POUCH_*` variables; `--exit N` exits with N |
//! | `localhost/pouch-examples/hello-component:latest` | the same as a WASI 0.2 component |
//!
//! They are written into the store the first time they are asked for (`pull` or `run`).

use super::digest::Digest;
use super::manifest::{self, Descriptor};
use super::reference::ImageRef;
use super::store::{ContentStore, StoreError};

struct Example {
    name: &'static str,
    os: &'static str,
    module: &'static [u8],
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "localhost/pouch-examples/hello:latest",
        os: "wasip1",
        module: include_bytes!("../../wasm-examples/bin/hello.wasm"),
    },
    Example {
        name: "localhost/pouch-examples/hello-component:latest",
        os: "wasip2",
        module: include_bytes!("../../wasm-examples/bin/hello.component.wasm"),
    },
];

/// The names of the built-in examples.
pub fn names() -> Vec<&'static str> {
    EXAMPLES.iter().map(|e| e.name).collect()
}

/// If `reference` names a built-in example, writes it into the store (if it is not there)
/// and returns its name.
pub fn install(store: &ContentStore, reference: &str) -> Result<Option<String>, StoreError> {
    let Ok(r) = reference.parse::<ImageRef>() else {
        return Ok(None);
    };
    let full = r.to_string();
    let Some(ex) = EXAMPLES.iter().find(|e| e.name == full) else {
        return Ok(None);
    };
    let _w = store.lock_writer()?;
    let layer = store.put_blob(ex.module, None)?;
    // Fixed contents (no time stamp): the same pouch always makes the same digests.
    let config = serde_json::json!({
        "created": "2026-01-01T00:00:00Z",
        "author": "pouch",
        "architecture": "wasm",
        "os": ex.os,
        "layerDigests": [layer.to_string()],
        "component": serde_json::Value::Null,
    });
    let config = serde_json::to_vec(&config).expect("json");
    let config_digest = store.put_blob(&config, None)?;
    let m = manifest::Manifest {
        schema_version: 2,
        media_type: Some(manifest::OCI_MANIFEST.into()),
        artifact_type: Some(manifest::WASM_CONFIG.into()),
        config: Descriptor::new(manifest::WASM_CONFIG, config_digest, config.len() as u64),
        layers: vec![Descriptor::new(
            "application/wasm",
            layer,
            ex.module.len() as u64,
        )],
        annotations: None,
    };
    let mbytes = serde_json::to_vec(&m).expect("json");
    let md: Digest = store.put_blob(&mbytes, None)?;
    let mut d = Descriptor::new(manifest::OCI_MANIFEST, md, mbytes.len() as u64);
    d.platform = Some(manifest::Platform {
        architecture: "wasm".into(),
        os: ex.os.into(),
        variant: None,
        other: Default::default(),
    });
    if !store
        .images()?
        .iter()
        .any(|i| i.name == ex.name && i.descriptor.digest == d.digest)
    {
        store.set_image(ex.name, &d)?;
    }
    Ok(Some(ex.name.to_string()))
}
