//! Arbitrary bytes as a layer blob to `pouch::image::unpack::unpack_layer`, the extractor every
//! pulled or loaded layer goes through, into a fresh empty directory per input.
//!
//! Input: the first byte picks the compression (0 → plain tar, 1 → gzip, 2 → zstd, anything else
//! → sniffed from the blob like `Compression::sniff`); the rest is the blob.
//!
//! Layout per input: OUTER/{sentinel, sibling/, dest/} with dest the snapshot. Checks:
//! - never panics;
//! - nothing outside dest changes: OUTER's listing (names, types, modes, sizes, symlink targets,
//!   the sentinel's content) is the same afterwards, and dest is still a plain directory;
//! - on error dest is empty again (the function's documented promise), unless the error is
//!   `UnpackError::Cleanup`, which itself is reported as a finding.
//!
//! Writes through absolute paths (`/etc/…`) would land on the host and are not detected here
//! beyond the above; the extractor resolves every path inside dest (see src/image/unpack.rs).

use pouch::image::unpack::{unpack_layer, Compression, UnpackError};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const SENTINEL: &[u8] = b"the host's file; an unpack must never touch it\n";

/// Every path under `root` except `skip`'s contents, with what identifies its state.
fn listing(root: &Path, skip: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, skip: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            out.insert(format!("{}: unreadable", dir.display()), String::new());
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                out.insert(rel, "vanished".into());
                continue;
            };
            let mut what = format!(
                "mode={:o} uid={} gid={} len={}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.len()
            );
            if m.file_type().is_symlink() {
                what += &format!(" -> {:?}", std::fs::read_link(&p).ok());
            } else if m.is_file() {
                what += &format!(" content={:?}", std::fs::read(&p).ok());
            }
            out.insert(rel, what);
            if m.is_dir() && p != skip {
                walk(&p, root, skip, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

pub fn check(data: &[u8]) {
    let Some((&sel, blob)) = data.split_first() else {
        return;
    };
    let compression = match sel {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Zstd,
        _ => Compression::sniff(blob),
    };
    let outer = tempfile::tempdir().expect("outer temp dir");
    std::fs::write(outer.path().join("sentinel"), SENTINEL).unwrap();
    std::fs::create_dir(outer.path().join("sibling")).unwrap();
    std::fs::write(outer.path().join("sibling/file"), SENTINEL).unwrap();
    let dest = outer.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    let before = listing(outer.path(), &dest);

    let result = unpack_layer(blob, compression, &dest);

    let dm = std::fs::symlink_metadata(&dest).expect("dest still exists");
    assert!(dm.is_dir(), "dest is no longer a plain directory: {dm:?}");
    let after = listing(outer.path(), &dest);
    // dest's own entry may change (its mode/owner/mtime come from the layer's "./" entry)
    let strip = |m: &BTreeMap<String, String>| {
        m.iter()
            .filter(|(k, _)| !k.starts_with("dest/"))
            .filter(|(k, _)| k.as_str() != "dest")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        strip(&before),
        strip(&after),
        "something outside dest changed; result: {result:?}"
    );
    match &result {
        Ok(_) => {}
        Err(UnpackError::Cleanup { .. }) => {
            panic!("unpack could not clean up after an error: {result:?}")
        }
        Err(e) => {
            let _ = e.to_string();
            let left: Vec<_> = std::fs::read_dir(&dest)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert!(
                left.is_empty(),
                "unpack failed ({e}) but left {left:?} in dest"
            );
        }
    }
    // dest may hold unwritable dirs, immutable-looking modes, etc.: root removes them anyway
    if let Err(e) = outer.close() {
        panic!("cannot remove the temp dirs after the unpack: {e}");
    }
}
