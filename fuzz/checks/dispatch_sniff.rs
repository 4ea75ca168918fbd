//! Arbitrary bytes as the program of a container to `pouch::dispatch::decide(spec, rootfs,
//! None)`, which reads the head of args[0] inside the rootfs (wasm module/component `\0asm…`,
//! ELF, `#!`, `.wat` text) to pick the executor.
//!
//! Input: byte 0 picks the annotations (none, run.oci.handler=wasm|wasmtime|wasm-smart|runc,
//! module.wasm.image/variant=compat|compat-smart, CRI sandbox); byte 1 picks args[0] (absolute,
//! `.wasm`/`.wat` names, PATH lookup, relative to cwd, a symlink, `..` tricks, a directory, and
//! symlinks aiming outside the rootfs); the rest is the content of the program file.
//! Must never panic; a wasm decision must come from wasm content; symlinks that point outside the
//! rootfs (to a real wasm module on the host) must never be followed out of it.

use pouch::dispatch::{decide, Executor, WasmKind};
use std::path::{Path, PathBuf};

const MODULE: &[u8] = b"\0asm\x01\0\0\0";

struct Fixture {
    _outer: tempfile::TempDir,
    rootfs: PathBuf,
}

thread_local! {
    // Built once per thread (the fuzzer's one thread, or one test); removed when the thread ends.
    static FIXTURE: Fixture = fixture();
}

/// outer/outside.wasm: a real module on the "host"; outer/rootfs: the container's root.
fn fixture() -> Fixture {
    let outer = tempfile::tempdir().expect("tempdir");
    let outside = outer.path().join("outside.wasm");
    std::fs::write(&outside, MODULE).unwrap();
    let rootfs = outer.path().join("rootfs");
    for d in ["app", "bin", "usr/bin", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let ln =
        |target: &Path, link: &str| std::os::unix::fs::symlink(target, rootfs.join(link)).unwrap();
    ln(Path::new("prog.wasm"), "app/link.wasm");
    ln(&outside, "app/host-abs.wasm"); // absolute host path: must resolve inside rootfs
    ln(Path::new("../../outside.wasm"), "app/host-rel.wasm"); // climbs above the root
    ln(Path::new("/../../../outside.wasm"), "bin/host-root");
    Fixture {
        _outer: outer,
        rootfs,
    }
}

const ANNOTATIONS: &[Option<(&str, &str)>] = &[
    None,
    Some(("run.oci.handler", "wasm")),
    Some(("run.oci.handler", "wasmtime")),
    Some(("run.oci.handler", "wasm-smart")),
    Some(("run.oci.handler", "runc")),
    Some(("module.wasm.image/variant", "compat")),
    Some(("module.wasm.image/variant", "compat-smart")),
    Some(("io.kubernetes.cri.container-type", "sandbox")),
];

/// (args[0], cwd, whether it reaches the fuzzed file, whether it aims outside the rootfs)
const ARG0: &[(&str, &str, bool, bool)] = &[
    ("/app/prog.wasm", "/", true, false),
    ("/app/prog.wat", "/", true, false),
    ("/usr/bin/prog", "/", true, false),
    ("prog", "/", true, false), // PATH lookup: /usr/bin/prog
    ("app/prog.wasm", "/", true, false),
    ("./prog.wasm", "/app", true, false),
    ("/app/link.wasm", "/", true, false),
    ("/app/../../../../app/prog.wasm", "/", true, false),
    ("../../../app/prog.wasm", "/app", true, false),
    ("/app", "/", false, false),
    ("/app/host-abs.wasm", "/", false, true),
    ("/app/host-rel.wasm", "/", false, true),
    ("/bin/host-root", "/", false, true),
    ("../outside.wasm", "/", false, true),
    ("/../outside.wasm", "/", false, true),
    ("", "/", false, false),
];

pub fn check(data: &[u8]) {
    let [a, b, content @ ..] = data else {
        return;
    };
    FIXTURE.with(|f| check_in(f, *a, *b, content));
}

fn check_in(f: &Fixture, a: u8, b: u8, content: &[u8]) {
    let ann = ANNOTATIONS[a as usize % ANNOTATIONS.len()];
    let (arg0, cwd, reaches, outside) = ARG0[b as usize % ARG0.len()];
    for p in ["app/prog.wasm", "app/prog.wat", "usr/bin/prog"] {
        std::fs::write(f.rootfs.join(p), content).unwrap();
    }
    let mut v = pouch::spec::default_spec_json();
    v["process"]["args"] = serde_json::json!([arg0, "x"]);
    v["process"]["cwd"] = serde_json::json!(cwd);
    if let Some((k, val)) = ann {
        v["annotations"] = serde_json::json!({ k: val });
    }
    let spec: oci_spec::runtime::Spec = serde_json::from_value(v).expect("default spec parses");
    let decision = decide(&spec, &f.rootfs, None);
    match decision {
        Ok(d) => {
            let _ = format!("{:?} {}", d.rule, d.why);
            if let Executor::Wasm { kind, path } = &d.executor {
                assert!(
                    !outside,
                    "args[0] {arg0:?} reached the host's outside.wasm through a symlink: {d:?}"
                );
                assert!(reaches, "args[0] {arg0:?} cannot be wasm, yet: {d:?}");
                let head = &content[..content.len().min(8)];
                match kind {
                    WasmKind::Module | WasmKind::Component => assert!(
                        head.starts_with(b"\0asm"),
                        "{path:?} decided {kind:?} for content {head:?}"
                    ),
                    WasmKind::Text => assert!(
                        String::from_utf8_lossy(head).trim_start().starts_with('('),
                        "{path:?} decided text wasm for content {head:?}"
                    ),
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
