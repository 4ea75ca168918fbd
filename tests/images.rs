//! The image store and registry client against a real registry: Debian's docker-registry
//! (distribution 2.8) started on 127.0.0.1 by tests/support/registry.sh, one instance without
//! auth and one with htpasswd (bcrypt) basic auth, filled with skopeo from images the tests
//! build (tests/support/make-test-images.sh).

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::registry::{fixture, sh, support, Registry, PASS, USER};
use common::store::{list, Proxy, Store};

fn du(p: &Path) -> u64 {
    let m = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(_) => return 0,
    };
    if m.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| du(&e.path()))
            .sum()
    } else {
        m.len()
    }
}

fn wasm_cache_entries(s: &Store) -> usize {
    list(&s.root.path().join("wasm-cache"))
        .iter()
        .filter(|n| n.ends_with(".cwasm"))
        .count()
}

#[test]
fn pull_by_tag_and_by_digest_and_skopeo_reads_the_store() {
    let f = fixture();
    let s = Store::new();
    let name = format!("{}/test/busybox:latest", f.plain.addr);
    let out = s.ok(&["pull", &name]);
    assert!(out.contains(&format!("Pulled {name}")), "{out}");
    let img = s.inspect(&name);
    assert_eq!(img["Digest"], f.pushed["test/busybox:latest"]);
    assert_eq!(img["Platform"], "linux/amd64");
    assert_eq!(img["Wasm"], false);
    // The layer is unpacked: busybox is there, with its mode.
    let snaps = s.snapshot_dirs(&name);
    assert_eq!(snaps.len(), 1);
    let bb = std::fs::metadata(snaps[0].join("bin/busybox")).unwrap();
    assert!(std::os::unix::fs::PermissionsExt::mode(&bb.permissions()) & 0o111 != 0);
    assert!(std::fs::symlink_metadata(snaps[0].join("bin/sh"))
        .unwrap()
        .file_type()
        .is_symlink());

    // skopeo reads the store as an OCI layout, by the recorded name.
    let layout = s.root.path().join("oci");
    let insp = sh(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:{name}", layout.display())));
    let insp: Value = serde_json::from_str(&insp).unwrap();
    assert_eq!(insp["Digest"], f.pushed["test/busybox:latest"]);

    // By digest: recorded under name@digest; nothing is downloaded twice.
    let digest = &f.pushed["test/busybox:latest"];
    let by_digest = format!("{}/test/busybox@{digest}", f.plain.addr);
    let out = s.ok(&["pull", &by_digest]);
    assert!(out.contains("0 blobs downloaded"), "{out}");
    assert_eq!(s.inspect(&by_digest)["Digest"], *digest);

    // A digest the registry does not have: a clear error, nothing recorded.
    let missing = format!("{}/test/busybox@sha256:{}", f.plain.addr, "0".repeat(64));
    let err = s.fails(&["pull", &missing]);
    assert!(err.contains("test/busybox"), "{err}");
    assert_eq!(s.images().len(), 2);
}

#[test]
fn hybrid_index_each_platform() {
    let f = fixture();
    let s = Store::new();
    let name = format!("{}/test/hybrid:latest", f.plain.addr);
    s.ok(&["pull", &name]);
    let img = s.inspect(&name);
    assert_eq!(img["Platform"], "linux/amd64");
    assert_eq!(img["SourceIndex"], f.pushed["test/hybrid:latest"]);
    assert!(s.snapshot_dirs(&name)[0].join("bin/busybox").exists());
    assert_eq!(wasm_cache_entries(&s), 0);

    // The wasm entry: same name, now the wasm manifest, precompiled at pull.
    let out = s.ok(&["pull", "--platform", "wasi/wasm", &name]);
    assert!(out.contains("1 wasm module(s) precompiled"), "{out}");
    let img = s.inspect(&name);
    assert_eq!(img["Wasm"], true);
    assert!(
        img["Platform"].as_str().unwrap().ends_with("/wasm"),
        "{img}"
    );
    assert_eq!(img["Digest"], f.pushed["test/wasm-image:latest"]);
    assert_eq!(wasm_cache_entries(&s), 1);
    assert!(s.snapshot_dirs(&name)[0].join("hello.wasm").exists());

    // A platform the index lacks: the error lists what it has.
    let err = s.fails(&["pull", "--platform", "linux/arm64", &name]);
    assert!(
        err.contains("no linux/arm64 manifest") && err.contains("linux/amd64"),
        "{err}"
    );
    let err = s.fails(&["pull", "--platform", "linux", &name]);
    assert!(err.contains("os/arch"), "{err}");
}

#[test]
fn wasm_artifact_is_stored_and_precompiled() {
    let f = fixture();
    let s = Store::new();
    let name = format!("{}/test/wasm:latest", f.plain.addr);
    s.ok(&["pull", &name]);
    let img = s.inspect(&name);
    assert_eq!(img["Wasm"], true);
    assert_eq!(
        img["Manifest"]["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(
        img["Manifest"]["layers"][0]["mediaType"],
        "application/wasm"
    );
    // The module is a blob; no snapshot is needed; the compile cache holds it.
    let layer = img["Manifest"]["layers"][0]["digest"].as_str().unwrap();
    let blob = s
        .root
        .path()
        .join("oci/blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    assert_eq!(
        std::fs::read(&blob).unwrap(),
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("wasm-examples/bin/hello.wasm"))
            .unwrap()
    );
    assert!(s.snapshots().is_empty(), "{:?}", s.snapshots());
    assert_eq!(wasm_cache_entries(&s), 1);
    let imgs = s.images();
    assert_eq!(imgs[0]["Wasm"], true);
}

#[test]
fn docker_schema2_manifest() {
    let f = fixture();
    let s = Store::new();
    let name = format!("{}/test/busybox:v2s2", f.plain.addr);
    s.ok(&["pull", &name]);
    let img = s.inspect(&name);
    assert_eq!(
        img["MediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        img["Manifest"]["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert!(s.snapshot_dirs(&name)[0].join("bin/busybox").exists());
}

#[test]
fn basic_auth_right_and_wrong() {
    let f = fixture();
    let s = Store::new();
    let name = format!("{}/test/busybox:latest", f.auth.addr);
    // No credentials: refused, with what to do.
    let err = s.fails(&["pull", &name]);
    assert!(
        err.contains("refused") && err.contains("pouch login"),
        "{err}"
    );
    // Wrong ones: refused, names the registry.
    let err = s.fails(&["pull", "--creds", &format!("{USER}:wrong"), &name]);
    assert!(
        err.contains(&f.auth.addr) && err.contains("check the user name and password"),
        "{err}"
    );
    let err = s.fails(&["login", "-u", USER, "-p", "wrong", &f.auth.addr]);
    assert!(err.contains("refused"), "{err}");
    assert!(!s.home.path().join("auth.json").exists());
    assert!(s.images().is_empty() && s.blobs().is_empty());

    // Right ones on the command line.
    s.ok(&["pull", "--creds", &format!("{USER}:{PASS}"), &name]);

    // pouch login stores them (0600); pull uses them; logout removes them.
    let s2 = Store::new();
    let mut c = s2.cmd(&["login", "-u", USER, "--password-stdin", &f.auth.addr]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASS}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let auth_file = s2.home.path().join("auth.json");
    let mode = std::fs::metadata(&auth_file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    s2.ok(&["pull", &name]);
    s2.ok(&["logout", &f.auth.addr]);
    s2.ok(&["rmi", &name]);
    s2.fails(&["pull", &name]);

    // Docker's config.json works too.
    let s3 = Store::new();
    let docker = s3.home.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASS}"));
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths":{{"http://{}":{{"auth":"{token}"}}}}}}"#,
            f.auth.addr
        ),
    )
    .unwrap();
    s3.ok(&["pull", &name]);
}

#[test]
fn wrong_digest_from_the_registry_is_rejected_and_nothing_stored() {
    let f = fixture();
    // A registry of its own: its storage is corrupted on purpose.
    let reg = Registry::start(None);
    let pushed = reg.push(&f.images, None);
    let s = Store::new();
    let name = format!("{}/test/busybox-extra:latest", reg.addr);
    // Flip bytes in the top layer (same length, so only the digest tells).
    let manifest: Value = {
        let raw = sh(Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{name}")));
        serde_json::from_str(&raw).unwrap()
    };
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
    let top = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let base = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let file = reg.blob_file(&top);
    let mut data = std::fs::read(&file).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    data[n - 20] ^= 0xff;
    std::fs::write(&file, &data).unwrap();

    let err = s.fails(&["pull", &name]);
    assert!(err.contains(&top) || err.contains("digest"), "{err}");
    // The corrupt blob is not in the store, the image is not recorded, no partial download
    // or snapshot of it is left behind.
    let top_hex = top.trim_start_matches("sha256:").to_string();
    assert!(!s.blobs().contains(&top_hex), "{:?}", s.blobs());
    assert!(s.images().is_empty());
    assert!(
        s.partials().iter().all(|p| !p.starts_with(&top_hex)),
        "{:?}",
        s.partials()
    );
    assert!(
        s.snapshots().iter().all(|n| !n.starts_with(".tmp")),
        "{:?}",
        s.snapshots()
    );
    // What was right is kept (the base layer), and the store still works.
    assert!(s
        .blobs()
        .contains(&base.trim_start_matches("sha256:").to_string()));
    s.ok(&["pull", &format!("{}/test/busybox:latest", reg.addr)]);
    let _ = pushed;
}

#[test]
fn killed_mid_pull_then_pulled_again_resumes() {
    // An image with one big layer (16 MB of random data) on the busybox base.
    let big = Path::new(env!("CARGO_TARGET_TMPDIR")).join(common::unique("big"));
    sh(Command::new("bash")
        .arg(support("make-big-image.sh"))
        .arg(&big)
        .args(["16", "1"]));
    let reg = Registry::start(None);
    sh(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", big.join("big").display()))
        .arg(format!("docker://{}/test/big:latest", reg.addr)));
    let proxy = Proxy::start(&reg.addr);
    let s = Store::new();
    let name = format!("{}/test/big:latest", proxy.addr);

    let mut child = s
        .cmd(&["pull", "-q", "--parallel", "1", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the big layer is partly downloaded, then kill the pull.
    let ingest = s.root.path().join("ingest");
    let t = Instant::now();
    let partial_len = loop {
        let biggest = std::fs::read_dir(&ingest)
            .map(|r| {
                r.flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                    .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if biggest > 2 << 20 {
            break biggest;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the pull never got 2 MiB into the big layer"
        );
        assert!(child.try_wait().unwrap().is_none(), "pull ended early");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(partial_len < 16 << 20);
    // Consistent: nothing recorded, no half snapshot visible, the partial file kept.
    assert!(s.images().is_empty());
    assert!(!s.partials().is_empty());
    for n in s.snapshots() {
        // Only complete snapshots (the base) and temporary dirs the next pull/gc removes.
        assert!(n.len() == 64 || n.starts_with(".tmp"), "{n}");
    }

    // Pull again, at full speed: only the rest is fetched.
    proxy.throttle.store(false, Ordering::SeqCst);
    let before = proxy.from_upstream.load(Ordering::SeqCst);
    s.ok(&["pull", "-q", &name]);
    let second = proxy.from_upstream.load(Ordering::SeqCst) - before;
    let layer_size: u64 = {
        let img = s.inspect(&name);
        img["Manifest"]["layers"][1]["size"].as_u64().unwrap()
    };
    assert!(
        second + partial_len / 2 < layer_size + (1 << 20),
        "second pull relayed {second} bytes; {partial_len} of {layer_size} were already there"
    );
    assert!(s.partials().is_empty(), "{:?}", s.partials());
    // The store is consistent: every blob matches its name, the snapshots are there.
    s.assert_blobs_match_digests();
    assert_eq!(s.snapshot_dirs(&name).len(), 2);
    s.ok(&["system", "prune"]);
    assert!(s.snapshots().iter().all(|n| !n.starts_with(".tmp")));
    let _ = std::fs::remove_dir_all(&big);
}

#[test]
fn layers_are_shared_and_rmi_frees_the_space() {
    let f = fixture();
    let s = Store::new();
    let a = format!("{}/test/busybox:latest", f.plain.addr);
    let b = format!("{}/test/busybox-extra:latest", f.plain.addr);
    s.ok(&["pull", &a]);
    let blobs_a = s.blobs().len();
    let out = s.ok(&["pull", &b]);
    // manifest + config + the top layer; the base layer is not downloaded again.
    assert!(out.contains("2 blobs downloaded"), "{out}");
    assert_eq!(s.blobs().len(), blobs_a + 3, "{:?}", s.blobs());
    let (sa, sb) = (s.snapshot_dirs(&a), s.snapshot_dirs(&b));
    assert_eq!(sa[0], sb[0], "the base snapshot is shared");
    assert_eq!(s.snapshots().len(), 2);
    assert!(sb[1].join("etc/extra.txt").exists());

    let used = du(s.root.path());
    s.ok(&["rmi", &b]);
    assert_eq!(s.blobs().len(), blobs_a);
    assert_eq!(s.snapshots().len(), 1);
    assert!(sa[0].join("bin/busybox").exists());
    let after_one = du(s.root.path());
    assert!(after_one < used);
    s.ok(&["rmi", &a]);
    assert!(s.blobs().is_empty() && s.snapshots().is_empty());
    assert!(du(s.root.path()) < 4096, "{}", du(s.root.path()));
    let err = s.fails(&["rmi", &a]);
    assert!(err.contains("no image"), "{err}");
}

#[test]
fn tag_push_save_load() {
    let f = fixture();
    let s = Store::new();
    let a = format!("{}/test/busybox:latest", f.plain.addr);
    s.ok(&["pull", &a]);
    let copy = format!("{}/pushed/busybox:copy", f.plain.addr);
    s.ok(&["tag", &a, &copy]);
    let out = s.ok(&["push", &copy]);
    assert!(
        out.contains("already there") || out.contains("uploaded"),
        "{out}"
    );
    let raw = sh(Command::new("skopeo")
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{copy}")));
    let v: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(v["Digest"], f.pushed["test/busybox:latest"]);

    // Save in both formats; skopeo reads them; load into a fresh store.
    let dir = tempfile::tempdir().unwrap();
    for (fmt, transport) in [
        ("oci-archive", "oci-archive"),
        ("docker-archive", "docker-archive"),
    ] {
        let file = dir.path().join(format!("{fmt}.tar"));
        s.ok(&["save", "--format", fmt, "-o", file.to_str().unwrap(), &a]);
        sh(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("{transport}:{}", file.display())));
        let s2 = Store::new();
        let out = s2.ok(&["load", "-i", file.to_str().unwrap()]);
        assert!(out.contains("Loaded image"), "{out}");
        let imgs = s2.images();
        assert_eq!(imgs.len(), 1, "{imgs:?}");
        let n = imgs[0]["Name"].as_str().unwrap().to_string();
        assert!(s2.snapshot_dirs(&n)[0].join("bin/busybox").exists());
    }
    // A wasm artifact has no docker-archive form.
    s.ok(&["pull", &format!("{}/test/wasm:latest", f.plain.addr)]);
    let err = s.fails(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        dir.path().join("w.tar").to_str().unwrap(),
        &format!("{}/test/wasm:latest", f.plain.addr),
    ]);
    assert!(err.contains("oci-archive"), "{err}");
    assert!(!dir.path().join("w.tar").exists());
}

#[test]
fn concurrent_pulls_into_one_store() {
    let f = fixture();
    let s = Store::new();
    let names = [
        format!("{}/test/busybox:latest", f.plain.addr),
        format!("{}/test/busybox-extra:latest", f.plain.addr),
        format!("{}/test/busybox:latest", f.plain.addr),
        format!("{}/test/hybrid:latest", f.plain.addr),
    ];
    let children: Vec<_> = names
        .iter()
        .map(|n| {
            s.cmd(&["pull", "-q", n])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(s.images().len(), 3);
    assert!(s.snapshots().iter().all(|n| !n.starts_with(".tmp")));
    assert!(s.partials().is_empty());
}

/// A hostile image (a layer that writes outside its snapshot) is refused at load; nothing is
/// written outside and no snapshot or name is left.
#[test]
fn hostile_layer_in_an_archive_is_rejected() {
    let s = Store::new();
    let work = tempfile::tempdir().unwrap();
    // Layer: a normal file, then "../../escaped" (raw header; tar::Builder refuses "..").
    let mut layer = Vec::new();
    {
        let mut b = tar::Builder::new(&mut layer);
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(2);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "ok.txt", &b"ok"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(4);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        let name = b"../../escaped";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, &b"evil"[..]).unwrap();
        b.finish().unwrap();
    }
    use sha2::Digest as _;
    let hex = |d: &[u8]| -> String {
        sha2::Sha256::digest(d)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect()
    };
    let lh = hex(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{lh}"]}}}}"#
    );
    let ch = hex(config.as_bytes());
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{ch}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{lh}","size":{}}}]}}"#,
        config.len(),
        layer.len()
    );
    let mh = hex(manifest.as_bytes());
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{mh}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"localhost/evil:latest"}}}}]}}"#,
        manifest.len()
    );
    let archive = work.path().join("evil.tar");
    {
        let f = std::fs::File::create(&archive).unwrap();
        let mut b = tar::Builder::new(f);
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json", index.as_bytes());
        add(&format!("blobs/sha256/{mh}"), manifest.as_bytes());
        add(&format!("blobs/sha256/{ch}"), config.as_bytes());
        add(&format!("blobs/sha256/{lh}"), &layer);
        b.finish().unwrap();
    }
    // (The data root's parent is the shared temp dir, where other tests come and go: check
    // the places "../../escaped" could have reached by name.)
    let err = s.fails(&["load", "-i", archive.to_str().unwrap()]);
    assert!(err.contains("../../escaped"), "{err}");
    assert!(s.images().is_empty());
    assert!(s.snapshots().is_empty(), "{:?}", s.snapshots());
    assert!(!s.root.path().parent().unwrap().join("escaped").exists());
    assert!(!s.root.path().join("escaped").exists());
    assert!(!s.root.path().join("oci/escaped").exists());
    assert!(!s.root.path().join("snapshots/escaped").exists());
}

#[test]
fn bad_references_and_unreachable_registries() {
    let s = Store::new();
    let err = s.fails(&["pull", "Not/Valid"]);
    assert!(err.contains("invalid image reference"), "{err}");
    // A loopback port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = s.fails(&["pull", &format!("127.0.0.1:{port}/x/y:1")]);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(s.images().is_empty());
}

/// Native images run on an overlay of their snapshots with a writable upper of their own;
/// a wasm artifact needs no overlay and its first run is warm (precompiled at pull).
#[test]
fn containers_run_from_the_store() {
    let f = fixture();
    let s = Store::new();
    let name = format!("{}/test/busybox-extra:latest", f.plain.addr);
    s.ok(&["pull", &name]);
    let m = tempfile::tempdir().unwrap();
    let rootfs = s.ok(&["mount", &name, m.path().to_str().unwrap()]);
    let rootfs = rootfs.trim();
    let mut b = common::Bundle::new(&[
        "sh",
        "-c",
        "cat /etc/extra.txt; echo written > /new.txt; rm /bin/cat; test -e /bin/cat || echo gone",
    ]);
    b.spec["root"] = serde_json::json!({"path": rootfs, "readonly": false});
    b.write();
    let out = b.run_ok();
    assert_eq!(out, "pouch test extra layer\ngone\n");
    // The changes are the container's own; the shared snapshots are untouched.
    assert_eq!(
        std::fs::read_to_string(m.path().join("upper/new.txt")).unwrap(),
        "written\n"
    );
    let snaps = s.snapshot_dirs(&name);
    assert!(std::fs::symlink_metadata(snaps[0].join("bin/cat")).is_ok());
    // While mounted, garbage collection keeps the snapshots even without the image.
    s.ok(&["rmi", &name]);
    assert_eq!(s.snapshots().len(), 2);
    s.ok(&["umount", m.path().to_str().unwrap()]);
    assert!(!m.path().join("rootfs").exists() && !m.path().join("upper").exists());
    s.ok(&["system", "prune"]);
    assert!(s.snapshots().is_empty());

    // The wasm artifact: the module alone, loaded from the cache the pull filled.
    let wasm = format!("{}/test/wasm:latest", f.plain.addr);
    s.ok(&["pull", &wasm]);
    let w = tempfile::tempdir().unwrap();
    let rootfs = s.ok(&["mount", &wasm, w.path().to_str().unwrap()]);
    let rootfs = rootfs.trim();
    assert!(Path::new(rootfs).join("module.wasm").exists());
    let mut b = common::Bundle::new(&["/module.wasm"]);
    b.spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    b.spec["mounts"].as_array_mut().unwrap().pop(); // no /tmp mount point in this rootfs
    b.write();
    let o = common::run_captured(
        b.cmd()
            .arg("--wasm-cache")
            .arg(s.root.path().join("wasm-cache"))
            .arg("--debug")
            .args(["run", "--bundle"])
            .arg(b.dir.path())
            .arg(&b.id),
    );
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("hello from wasm\n"), "{out}");
    assert!(err.contains("wasm cache hit"), "{err}");
    s.ok(&["umount", w.path().to_str().unwrap()]);
}

/// Copies the OCI layout `src` to `dst` with its (single) image config edited by `edit`; the
/// config, manifest and index digests are recomputed, so only the diff IDs can tell.
fn layout_with_config(src: &Path, dst: &Path, edit: impl FnOnce(&mut Value)) {
    use sha2::Digest as _;
    sh(Command::new("cp").arg("-a").arg(src).arg(dst));
    let blob = |d: &str| {
        dst.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let put = |data: &[u8]| -> String {
        let hex: String = sha2::Sha256::digest(data)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        std::fs::write(dst.join("blobs/sha256").join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(dst.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(&mdigest)).unwrap()).unwrap();
    let cdigest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(blob(&cdigest)).unwrap()).unwrap();
    edit(&mut config);
    let config = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = Value::from(put(&config));
    manifest["config"]["size"] = Value::from(config.len());
    let manifest = serde_json::to_vec(&manifest).unwrap();
    index["manifests"][0]["digest"] = Value::from(put(&manifest));
    index["manifests"][0]["size"] = Value::from(manifest.len());
    std::fs::write(dst.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn an_image_whose_config_lies_about_its_layers_is_rejected() {
    let f = fixture();
    let work = tempfile::tempdir().unwrap();
    let base_diff = {
        let mut seen = String::new();
        layout_with_config(&f.images.join("busybox"), &work.path().join("probe"), |c| {
            seen = c["rootfs"]["diff_ids"][0].as_str().unwrap().to_string();
        });
        seen
    };
    let forged = format!("sha256:{}", "ab".repeat(32));
    type Edit<'a> = Box<dyn FnOnce(&mut Value) + 'a>;
    let cases: [(&str, Edit, &str); 2] = [
        (
            "diff-id",
            Box::new(|c: &mut Value| c["rootfs"]["diff_ids"][0] = Value::from(forged.clone())),
            "the image config says",
        ),
        (
            "diff-count",
            Box::new(|c: &mut Value| {
                c["rootfs"]["diff_ids"]
                    .as_array_mut()
                    .unwrap()
                    .push(Value::from(base_diff.clone()))
            }),
            "diff IDs",
        ),
    ];
    for (name, edit, says) in cases {
        let layout = work.path().join(name);
        layout_with_config(&f.images.join("busybox"), &layout, edit);
        let image = format!("{}/test/liar-{name}:latest", f.plain.addr);
        sh(Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{image}")));
        // Pulled from a registry, and loaded from an archive of the same layout.
        let archive = work.path().join(format!("{name}.tar"));
        sh(Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&archive)
            .arg("."));
        for how in ["pull", "load"] {
            let s = Store::new();
            let err = match how {
                "pull" => s.fails(&["pull", "-q", &image]),
                _ => s.fails(&["load", "-i", archive.to_str().unwrap()]),
            };
            assert!(err.contains(says), "{name} by {how}: {err}");
            if name == "diff-id" {
                assert!(err.contains(&forged), "{name} by {how}: {err}");
            }
            assert!(s.images().is_empty(), "{name} by {how}: recorded");
            assert!(
                s.snapshots().iter().all(|n| n.starts_with(".tmp")),
                "{name} by {how}: a snapshot became visible: {:?}",
                s.snapshots()
            );
            // The store works afterwards.
            s.ok(&[
                "pull",
                "-q",
                &format!("{}/test/busybox:latest", f.plain.addr),
            ]);
        }
    }
}
