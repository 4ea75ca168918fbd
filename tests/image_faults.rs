//! Fault injection while pulling (issue #8, hardening): the registry resets the connection in
//! the middle of a blob, answers HTTP 500, sends a truncated blob (with its real Content-Length,
//! or with one rewritten to the short size), and the data root fills up while a layer is
//! unpacked. After every fault: no corrupt blob or snapshot is visible, no image is recorded,
//! the error names the blob/layer and the registry (or says the disk is full), and the next
//! command works — a clean pull of the same image succeeds, resuming what was kept.
//!
//! The faults come from an HTTP-aware proxy (tests/common/store.rs) in front of the shared
//! fixture registry; the disk is a small tmpfs mounted as the data root.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use common::registry::{fixture, sh, support};
use common::store::{Fault, Proxy, Store};

const BUSYBOX: &str = "test/busybox:latest";

/// Attempts per blob a pull makes before it gives up.
fn attempts() -> u32 {
    pouch::image::pull::PullOptions::default().attempts
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The layers (digest, size) of an image in the fixture's OCI layouts (what was pushed:
/// digests are preserved).
fn fixture_layers(image: &str) -> Vec<(String, u64)> {
    let layout = fixture().images.join(image);
    layout_layers(&layout)
}

fn layout_layers(layout: &Path) -> Vec<(String, u64)> {
    let blob = |d: &str| -> Value {
        let p = layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// A tree as lines (path, type, mode, owner; size and content hash of files; link targets),
/// sorted by path; directory sizes are left out (they depend on the filesystem).
fn describe_tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        use std::os::unix::fs::MetadataExt;
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let ft = m.file_type();
            let what = if ft.is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_file() {
                format!(
                    "file {} {}",
                    m.len(),
                    sha256_hex(&std::fs::read(&p).unwrap())
                )
            } else {
                format!("special {:#o} rdev {}", m.mode() & 0o170000, m.rdev())
            };
            out.push(format!(
                "{rel} {what} mode {:o} {}:{}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid()
            ));
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// Every snapshot of a store, by directory name.
fn describe_snapshots(s: &Store) -> BTreeMap<String, Vec<String>> {
    s.snapshots()
        .into_iter()
        .map(|n| {
            let t = describe_tree(&s.root.path().join("snapshots").join(&n));
            (n, t)
        })
        .collect()
}

/// The snapshots a clean pull of busybox makes, pulled once straight from the registry.
fn busybox_reference() -> &'static BTreeMap<String, Vec<String>> {
    static R: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    R.get_or_init(|| {
        let s = Store::new();
        s.ok(&["pull", "-q", &format!("{}/{BUSYBOX}", fixture().plain.addr)]);
        let r = describe_snapshots(&s);
        assert_eq!(r.len(), 1, "{:?}", r.keys());
        r
    })
}

/// The store is consistent: every blob matches its digest, no partial download sits beside
/// its finished blob, and every visible snapshot (name without the `.tmp` prefix) is exactly
/// what a clean pull makes (`reference`).
fn assert_consistent(s: &Store, reference: &BTreeMap<String, Vec<String>>) {
    s.assert_blobs_match_digests();
    let blobs = s.blobs();
    for p in s.partials() {
        let hex = p.trim_end_matches(".partial");
        assert!(
            !blobs.iter().any(|b| b == hex),
            "partial download {p} beside its finished blob"
        );
    }
    for (name, tree) in describe_snapshots(s) {
        if name.starts_with(".tmp") {
            continue;
        }
        let want = reference
            .get(&name)
            .unwrap_or_else(|| panic!("snapshot {name} is not one a clean pull makes"));
        assert!(
            &tree == want,
            "snapshot {name} differs from a clean pull's: {} entries instead of {}",
            tree.len(),
            want.len()
        );
    }
}

/// One store pulling busybox through a fault-injecting proxy in front of the fixture registry.
struct Faulty {
    proxy: Proxy,
    s: Store,
    /// The image as pulled through the proxy.
    name: String,
    /// Its (only) layer.
    layer: String,
    size: u64,
}

impl Faulty {
    fn new() -> Faulty {
        let f = fixture();
        busybox_reference();
        let layers = fixture_layers("busybox");
        assert_eq!(layers.len(), 1);
        let (layer, size) = layers[0].clone();
        let proxy = Proxy::with_faults(&f.plain.addr);
        let name = format!("{}/{BUSYBOX}", proxy.addr);
        Faulty {
            proxy,
            s: Store::new(),
            name,
            layer,
            size,
        }
    }

    /// The path of the layer's blob requests.
    fn blob_path(&self) -> String {
        format!("/blobs/{}", self.layer)
    }

    fn inject(&self, fault: Fault, times: Option<u32>) {
        self.proxy.inject(&self.blob_path(), fault, times);
    }

    /// The layer's requests the proxy saw so far.
    fn requests(&self) -> Vec<common::store::Seen> {
        self.proxy.requests(&self.blob_path())
    }

    fn hex(&self) -> &str {
        self.layer.trim_start_matches("sha256:")
    }

    /// Bytes of the layer kept for a resumed pull (0 if none).
    fn partial_len(&self) -> u64 {
        std::fs::metadata(
            self.s
                .root
                .path()
                .join("ingest")
                .join(format!("{}.partial", self.hex())),
        )
        .map(|m| m.len())
        .unwrap_or(0)
    }

    /// A pull that failed on the layer: the error names the layer and the registry, it was
    /// tried `attempts()` times, nothing of it is visible, the store is consistent.
    fn assert_failed_cleanly(&self, err: &str) {
        assert_eq!(self.proxy.hits(), attempts(), "{err}");
        assert!(
            err.contains(&self.layer) && err.contains(&self.proxy.addr),
            "the error should name the blob and the registry: {err}"
        );
        assert_eq!(
            err.matches("retrying").count(),
            attempts() as usize - 1,
            "{err}"
        );
        assert!(
            err.contains(&format!("gave up after {} attempts", attempts())),
            "{err}"
        );
        assert!(self.s.images().is_empty());
        assert!(
            !self.s.blobs().iter().any(|b| b == self.hex()),
            "{:?}",
            self.s.blobs()
        );
        // busybox has one layer: no snapshot at all, not even a temporary one (the pull
        // removed its own when it failed).
        assert!(self.s.snapshots().is_empty(), "{:?}", self.s.snapshots());
        assert!(self.partial_len() < self.size);
        assert_consistent(&self.s, busybox_reference());
    }

    /// Pulls again without faults; it must resume from what the failed pull kept.
    fn clean_pull_resumes(&self) {
        self.proxy.clear_faults();
        let kept = self.partial_len();
        let before = self.requests().len();
        self.s.ok(&["pull", "-q", &self.name]);
        let reqs = self.requests();
        assert_eq!(reqs.len(), before + 1, "{reqs:?}");
        assert_eq!(
            reqs[before].range_start(),
            kept,
            "the clean pull should resume from the {kept} bytes kept"
        );
        self.assert_pulled();
    }

    /// The image is there, complete and right.
    fn assert_pulled(&self) {
        let img = self.s.inspect(&self.name);
        assert_eq!(img["Digest"], fixture().pushed[BUSYBOX]);
        assert!(self.s.partials().is_empty(), "{:?}", self.s.partials());
        assert!(self.s.blobs().iter().any(|b| b == self.hex()));
        assert_eq!(self.s.snapshot_dirs(&self.name).len(), 1);
        assert_eq!(&describe_snapshots(&self.s), busybox_reference());
        assert_consistent(&self.s, busybox_reference());
        assert_eq!(self.s.images().len(), 1);
    }
}

#[test]
fn connection_reset_mid_blob_every_time_fails_clearly_then_a_clean_pull_resumes() {
    let t = Faulty::new();
    let after = 128 << 10;
    t.inject(Fault::Reset { after }, None);
    let err = t.s.fails(&["pull", &t.name]);
    t.assert_failed_cleanly(&err);
    // Each attempt resumed from what the previous ones kept, never starting over (whether
    // the kept bytes are right, the clean pull's digest check below tells).
    let reqs = t.requests();
    for w in reqs.windows(2) {
        assert!(w[1].range_start() >= w[0].range_start(), "{reqs:?}");
    }
    assert!(t.partial_len() <= attempts() as u64 * after);
    t.clean_pull_resumes();
}

#[test]
fn connection_reset_mid_blob_twice_then_the_retry_succeeds() {
    let t = Faulty::new();
    t.inject(Fault::Reset { after: 200 << 10 }, Some(2));
    let out = t.s.ok(&["pull", &t.name]);
    assert!(out.contains(&format!("Pulled {}", t.name)), "{out}");
    assert_eq!(t.proxy.hits(), 2);
    let reqs = t.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    for w in reqs.windows(2) {
        assert!(w[1].range_start() >= w[0].range_start(), "{reqs:?}");
    }
    t.assert_pulled();
}

#[test]
fn http_500_for_a_blob_always_then_once() {
    // Always: a clear error naming the blob, the registry and the status.
    let t = Faulty::new();
    t.inject(Fault::Status(500), None);
    let err = t.s.fails(&["pull", &t.name]);
    assert!(
        err.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "500"),
        "the error should give the status: {err}"
    );
    t.assert_failed_cleanly(&err);
    assert_eq!(t.partial_len(), 0);
    t.clean_pull_resumes();

    // Once: retried, and the pull succeeds.
    let t = Faulty::new();
    t.inject(Fault::Status(500), Some(1));
    t.s.ok(&["pull", &t.name]);
    assert_eq!(t.proxy.hits(), 1);
    let reqs = t.requests();
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[1].range_start(), 0);
    t.assert_pulled();
}

#[test]
fn truncated_blob_with_its_real_content_length() {
    // The registry announces the whole (remaining) blob, sends `after` bytes and closes:
    // HTTP sees the body end early. Every attempt keeps what it got, exactly.
    let after = 100_000;
    let t = Faulty::new();
    t.inject(Fault::Truncate { after }, None);
    let err = t.s.fails(&["pull", &t.name]);
    t.assert_failed_cleanly(&err);
    assert_eq!(t.partial_len(), attempts() as u64 * after);
    let starts: Vec<u64> = t.requests().iter().map(|r| r.range_start()).collect();
    let want: Vec<u64> = (0..attempts() as u64).map(|i| i * after).collect();
    assert_eq!(starts, want);
    t.clean_pull_resumes();

    // Once: the retry resumes where the short answer stopped and the pull succeeds.
    let t = Faulty::new();
    t.inject(Fault::Truncate { after }, Some(1));
    t.s.ok(&["pull", &t.name]);
    let starts: Vec<u64> = t.requests().iter().map(|r| r.range_start()).collect();
    assert_eq!(starts, [0, after]);
    t.assert_pulled();
}

#[test]
fn truncated_blob_with_a_rewritten_content_length() {
    // The registry says the answer is `after` bytes long and sends exactly those: complete to
    // HTTP, short of the blob's size. It must not pass as the blob.
    let after = 100_000;
    let t = Faulty::new();
    t.inject(Fault::ShortLength { after }, None);
    let err = t.s.fails(&["pull", &t.name]);
    t.assert_failed_cleanly(&err);
    let kept = attempts() as u64 * after;
    assert_eq!(t.partial_len(), kept);
    assert!(
        err.contains(&format!("{kept} of {}", t.size)),
        "the error should say how much of the blob arrived: {err}"
    );
    t.clean_pull_resumes();

    // Once: resumed, succeeds.
    let t = Faulty::new();
    t.inject(Fault::ShortLength { after }, Some(1));
    t.s.ok(&["pull", &t.name]);
    let starts: Vec<u64> = t.requests().iter().map(|r| r.range_start()).collect();
    assert_eq!(starts, [0, after]);
    t.assert_pulled();
}

/// The config digest of an image in the fixture's OCI layouts.
fn fixture_config(image: &str) -> String {
    let layout = fixture().images.join(image);
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(mdigest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    manifest["config"]["digest"].as_str().unwrap().to_string()
}

/// The config blob (fetched whole, not streamed) cut short with a rewritten Content-Length,
/// every time: the client's digest check rejects it, the short answer is retried like a
/// layer's, then the pull gives up; nothing stored.
#[test]
fn truncated_config_blob_is_rejected_by_its_digest() {
    let t = Faulty::new();
    let config = fixture_config("busybox");
    t.proxy.inject(
        &format!("/blobs/{config}"),
        Fault::ShortLength { after: 100 },
        None,
    );
    let err = t.s.fails(&["pull", &t.name]);
    assert_eq!(t.proxy.hits(), attempts(), "{err}");
    assert!(
        err.contains(&config) && err.contains(&t.proxy.addr),
        "the error should name the config blob and the registry: {err}"
    );
    assert!(
        err.contains(&format!("gave up after {} attempts", attempts())),
        "{err}"
    );
    assert!(t.s.images().is_empty());
    let chex = config.trim_start_matches("sha256:");
    assert!(!t.s.blobs().iter().any(|b| b == chex), "{:?}", t.s.blobs());
    assert!(t.s.snapshots().is_empty(), "{:?}", t.s.snapshots());
    assert_consistent(&t.s, busybox_reference());
    t.proxy.clear_faults();
    t.s.ok(&["pull", "-q", &t.name]);
    t.assert_pulled();
}

/// A tmpfs mounted on a directory for the length of a test (unmounted on drop, also when the
/// test panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u64) -> Tmpfs {
        sh(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0755"),
                "tmpfs",
            ])
            .arg(dir));
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, kib: u64) {
        sh(Command::new("mount")
            .args(["-o", &format!("remount,size={kib}k")])
            .arg(&self.0));
    }

    /// Bytes in use (statvfs).
    fn used(&self) -> u64 {
        let v = nix::sys::statvfs::statvfs(&self.0).unwrap();
        (v.blocks() - v.blocks_free()) * v.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn du(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| du(&e.path()))
            .sum(),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[test]
fn disk_full_while_pulling_then_prune_and_pull_again() {
    let f = fixture();
    // An image with one 4 MiB layer of random data on the busybox base, in the fixture
    // registry under a name of its own.
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("faults-big"));
    sh(Command::new("bash")
        .arg(support("make-big-image.sh"))
        .arg(&work)
        .args(["4", "1"]));
    let repo = common::unique("test/big");
    let name = format!("{}/{repo}:latest", f.plain.addr);
    sh(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", work.join("big").display()))
        .arg(format!("docker://{name}")));
    let layers = layout_layers(&work.join("big"));
    let _ = std::fs::remove_dir_all(&work);
    assert_eq!(layers.len(), 2);
    let big = layers[1].0.clone();

    // What a successful pull makes, on disk.
    let reference = Store::new();
    reference.ok(&["pull", "-q", &name]);
    let ref_snaps = describe_snapshots(&reference);
    assert_eq!(ref_snaps.len(), 2);
    let needed = du(reference.root.path());

    // A data root of half that: the whole image does not fit.
    let s = Store::with_root(tempfile::tempdir().unwrap());
    let disk = Tmpfs::mount(s.root.path(), needed / 2 / 1024);
    let err = s.fails(&["pull", &name]);
    assert!(
        err.contains("No space left on device"),
        "the error should say the disk is full: {err}"
    );
    // Once: the causes the error's message already includes are not said again.
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    // (Layers are fetched in parallel: whichever fills the disk first fails.)
    assert!(
        layers.iter().any(|(d, _)| err.contains(d.as_str())),
        "the error should name the layer: {err}"
    );
    // Nothing corrupt is visible, nothing recorded, and the store still answers.
    assert!(s.images().is_empty());
    assert_consistent(&s, &ref_snaps);
    assert!(
        !s.snapshots().iter().any(|n| n.starts_with(".tmp")),
        "the failed pull left a temporary snapshot: {:?}",
        s.snapshots()
    );
    assert!(
        s.partials().iter().all(|p| layers
            .iter()
            .any(|(d, _)| *p == format!("{}.partial", d.trim_start_matches("sha256:")))),
        "{:?}",
        s.partials()
    );

    // Prune frees the leftovers.
    let used = disk.used();
    s.ok(&["system", "prune"]);
    assert!(s.blobs().is_empty(), "{:?}", s.blobs());
    assert!(s.snapshots().is_empty(), "{:?}", s.snapshots());
    assert!(s.partials().is_empty(), "{:?}", s.partials());
    assert!(
        disk.used() < used && disk.used() < 256 << 10,
        "{} bytes still used (were {used})",
        disk.used()
    );

    // A small image fits in the same small root.
    let small = format!("{}/test/busybox-extra:latest", f.plain.addr);
    s.ok(&["pull", "-q", &small]);
    assert_eq!(s.snapshot_dirs(&small).len(), 2);
    s.assert_blobs_match_digests();
    s.ok(&["rmi", &small]);
    assert!(s.blobs().is_empty() && s.snapshots().is_empty());

    // With room, the same pull works, and makes what the reference pull made.
    disk.resize(needed * 2 / 1024);
    s.ok(&["pull", "-q", &name]);
    let img = s.inspect(&name);
    assert_eq!(img["Manifest"]["layers"][1]["digest"], big);
    assert_eq!(s.snapshot_dirs(&name).len(), 2);
    assert_eq!(describe_snapshots(&s), ref_snaps);
    assert_consistent(&s, &ref_snaps);
    assert!(s.partials().is_empty(), "{:?}", s.partials());
    assert_eq!(s.images().len(), 1);
    drop(disk);
}

/// Writes an OCI layout `dir` (tag `latest`) of a one-layer image holding `files` (under
/// `data/`), gzip; returns the layer's digest.
fn write_layout(dir: &Path, files: &[(&str, Vec<u8>)]) -> String {
    let mut tar = tar::Builder::new(Vec::new());
    let header = |size: u64, mode: u32, kind: tar::EntryType| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(kind);
        h
    };
    tar.append_data(
        &mut header(0, 0o755, tar::EntryType::Directory),
        "data/",
        std::io::empty(),
    )
    .unwrap();
    for (name, data) in files {
        tar.append_data(
            &mut header(data.len() as u64, 0o644, tar::EntryType::Regular),
            format!("data/{name}"),
            &data[..],
        )
        .unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let layer = gz.finish().unwrap();

    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let hex = sha256_hex(data);
        std::fs::write(blobs.join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let layer_digest = put(&layer);
    let host = pouch::image::pull::PlatformSpec::host();
    let config = serde_json::json!({
        "architecture": host.architecture,
        "os": host.os,
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&tar))]},
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }],
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    layer_digest
}

/// A layer that compresses well (8 MiB of text in a few KiB of gzip): the blob fits in the
/// small data root, its snapshot does not, so the disk fills up while unpacking, every time.
#[test]
fn disk_full_while_unpacking_a_layer_whose_blob_fits() {
    let f = fixture();
    let work = tempfile::tempdir().unwrap();
    let text: Vec<u8> = b"pouch fault injection: disk full while unpacking\n"
        .iter()
        .copied()
        .cycle()
        .take(8 << 20)
        .collect();
    let layer = write_layout(
        work.path(),
        &[("text.bin", text), ("small.txt", b"small\n".to_vec())],
    );
    let name = format!("{}/{}:latest", f.plain.addr, common::unique("test/text"));
    sh(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", work.path().display()))
        .arg(format!("docker://{name}")));

    let reference = Store::new();
    reference.ok(&["pull", "-q", &name]);
    let ref_snaps = describe_snapshots(&reference);
    assert_eq!(ref_snaps.len(), 1);

    let s = Store::with_root(tempfile::tempdir().unwrap());
    let disk = Tmpfs::mount(s.root.path(), 2048);
    // Twice: the first pull downloads and unpacks at once; the second finds whatever blob the
    // first stored and unpacks from it. Both fail on the disk, clearly, and leave nothing
    // half-made.
    for _ in 0..2 {
        let err = s.fails(&["pull", &name]);
        assert!(
            err.contains("No space left on device") && err.contains(&layer),
            "the error should name the layer and say the disk is full: {err}"
        );
        assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
        assert!(s.images().is_empty());
        assert!(s.snapshots().is_empty(), "{:?}", s.snapshots());
        assert_consistent(&s, &ref_snaps);
    }

    // With room, the same pull works and makes the same snapshot as the reference.
    disk.resize(16 << 10);
    s.ok(&["pull", "-q", &name]);
    assert_eq!(s.snapshot_dirs(&name).len(), 1);
    assert_eq!(describe_snapshots(&s), ref_snaps);
    assert_consistent(&s, &ref_snaps);
    assert!(s.partials().is_empty(), "{:?}", s.partials());
    drop(disk);
}

/// The requests for manifests (by tag or digest) the proxy saw.
const MANIFESTS: &str = "/manifests/";

/// The manifest GET answered 500 once: retried, the pull succeeds. Every time: the pull
/// gives up after the attempts, naming the image and the registry; then a clean pull works.
#[test]
fn http_500_for_the_manifest_once_then_always() {
    let t = Faulty::new();
    t.proxy.inject(MANIFESTS, Fault::Status(500), Some(1));
    let o = t.s.run(&["pull", &t.name]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(t.proxy.hits(), 1);
    assert_eq!(err.matches("retrying").count(), 1, "{err}");
    let reqs = t.proxy.requests(MANIFESTS);
    assert_eq!(reqs[0].path, reqs[1].path, "{reqs:?}");
    t.assert_pulled();

    let t = Faulty::new();
    t.proxy.inject(MANIFESTS, Fault::Status(500), None);
    let err = t.s.fails(&["pull", &t.name]);
    assert_eq!(t.proxy.hits(), attempts(), "{err}");
    assert_eq!(t.proxy.requests(MANIFESTS).len(), attempts() as usize);
    assert!(
        err.contains(&t.name) && err.contains(&t.proxy.addr),
        "the error should name the image and the registry: {err}"
    );
    assert!(
        err.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "500"),
        "the error should give the status: {err}"
    );
    assert!(
        err.contains(&format!("gave up after {} attempts", attempts())),
        "{err}"
    );
    assert!(t.s.images().is_empty() && t.s.blobs().is_empty());
    t.proxy.clear_faults();
    t.s.ok(&["pull", "-q", &t.name]);
    t.assert_pulled();
}

/// What the registry says for good is not retried: a 404 for the manifest is asked once.
#[test]
fn http_404_for_the_manifest_is_not_retried() {
    let t = Faulty::new();
    t.proxy.inject(MANIFESTS, Fault::Status(404), None);
    let err = t.s.fails(&["pull", &t.name]);
    assert_eq!(t.proxy.requests(MANIFESTS).len(), 1, "{err}");
    assert!(
        !err.contains("retrying") && !err.contains("gave up"),
        "{err}"
    );
    assert!(err.contains(&t.name), "{err}");
}

/// A connection reset in the answer to the manifest GET (on a loopback registry, spoken to in
/// plain HTTP) and one in the answer to the config blob: each retried on the same scheme, and
/// the pull succeeds.
#[test]
fn connection_reset_on_the_manifest_and_on_the_config_once() {
    let t = Faulty::new();
    t.proxy
        .inject(MANIFESTS, Fault::Reset { after: 0 }, Some(1));
    t.s.ok(&["pull", "-q", &t.name]);
    assert_eq!(t.proxy.hits(), 1);
    let reqs = t.proxy.requests(MANIFESTS);
    assert_eq!(reqs[0].path, reqs[1].path, "{reqs:?}");
    t.assert_pulled();

    let t = Faulty::new();
    let config = fixture_config("busybox");
    let path = format!("/blobs/{config}");
    t.proxy.inject(&path, Fault::Reset { after: 10 }, Some(1));
    t.s.ok(&["pull", "-q", &t.name]);
    assert_eq!(t.proxy.hits(), 1);
    assert_eq!(t.proxy.requests(&path).len(), 2);
    t.assert_pulled();
}
