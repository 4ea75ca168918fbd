//! Dispatch: which executor runs a container, decided by one function with one precedence
//! order, used by every front (`pouch-runtime`, `pouch`, the shim).
//!
//! ```text
//!  0. io.kubernetes.cri.container-type = sandbox        → native (a pod's pause container)
//!  1. annotation run.oci.handler = wasm | wasmtime      → wasm (args[0] must be wasm)
//!                                = wasm-smart           → wasm if args[0] ends .wasm/.wat
//!                                = anything else        → native
//!  2. annotation module.wasm.image/variant = compat     → wasm (args[0] must be wasm)
//!                                          = compat-smart → as wasm-smart
//!  3. image facts (when the caller has the image): config architecture "wasm", os wasi /
//!     wasip1 / wasip2, a wasm layer or config media type → wasm (args[0] must be wasm)
//!  4. sniff process.args[0], resolved in the rootfs with the container's PATH:
//!     \0asm → wasm (module or component by the preamble), ELF or #! → native,
//!     anything else (or missing) → native, and execve will say what is wrong
//! ```
//!
//! Rule 4 is what lets `podman --runtime pouch-runtime` run a wasm image with no flag: podman
//! and CRI-O drop image annotations. Each [`Decision`] carries the rule that decided and why,
//! for `--debug` logs.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use native_runner::rootfs::{resolve_in_root, Create, RootDir};
use oci_spec::runtime::Spec;

/// The CRI annotation naming a pod's sandbox container.
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// crun's and youki's handler annotation.
pub const HANDLER_ANNOTATION: &str = "run.oci.handler";
/// The "compat" wasm image variant annotation.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// Layer media types that hold wasm.
pub const WASM_LAYER_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];
/// The config media type of the wasm OCI artifact format.
pub const WASM_CONFIG_TYPE: &str = "application/vnd.wasm.config.v0+json";

/// What kind of WebAssembly binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasmKind {
    /// A core module (WASI preview 1).
    Module,
    /// A component (WASI preview 2, `wasi:cli/run`).
    Component,
    /// The text format (`.wat`), compiled as a core module.
    Text,
}

/// Which executor runs the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    /// execve of a Linux program.
    Native,
    /// wasmtime, inside the native sandbox; the binary is at `path` (inside the rootfs).
    Wasm {
        /// Module, component or text.
        kind: WasmKind,
        /// args[0] resolved in the container (absolute, as the container sees it).
        path: PathBuf,
    },
}

/// The rule that decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A CRI sandbox container.
    Sandbox,
    /// `run.oci.handler`.
    Handler,
    /// `module.wasm.image/variant`.
    Variant,
    /// The image's platform or media types.
    Image,
    /// The first bytes of `process.args[0]`.
    Sniff,
}

/// A dispatch decision and its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The executor.
    pub executor: Executor,
    /// The rule that decided.
    pub rule: Rule,
    /// Why, in words (logged with `--debug`).
    pub why: String,
}

/// What the caller knows of the container's image (the `pouch` CLI and the shim do;
/// `pouch-runtime` alone does not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// Config `architecture`.
    pub architecture: Option<String>,
    /// Config `os`.
    pub os: Option<String>,
    /// Config media type.
    pub config_media_type: Option<String>,
    /// Media types of the layers.
    pub layer_media_types: Vec<String>,
}

impl ImageFacts {
    /// Why these facts say "wasm", if they do.
    pub fn wasm_reason(&self) -> Option<String> {
        if self.architecture.as_deref() == Some("wasm") {
            return Some("image architecture is wasm".into());
        }
        if let Some(os) = self
            .os
            .as_deref()
            .filter(|o| ["wasi", "wasip1", "wasip2"].contains(o))
        {
            return Some(format!("image os is {os}"));
        }
        if self.config_media_type.as_deref() == Some(WASM_CONFIG_TYPE) {
            return Some(format!("image config media type is {WASM_CONFIG_TYPE}"));
        }
        self.layer_media_types
            .iter()
            .find(|t| WASM_LAYER_TYPES.contains(&t.as_str()))
            .map(|t| format!("image has a {t} layer"))
    }
}

/// Why a container that must be wasm is not.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Wasm was asked for but args[0] is not a wasm binary.
    #[error("{rule}: process.args[0] {arg0} is not a wasm binary: {found}")]
    NotWasm {
        /// The rule that asked for wasm (`run.oci.handler=wasm`).
        rule: String,
        /// args[0] as given.
        arg0: String,
        /// What was found instead.
        found: String,
    },
    /// The spec has no process.args.
    #[error("process.args: must have at least one element")]
    NoArgs,
}

/// What `args[0]` is, read from its first bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sniffed {
    Wasm(WasmKind, PathBuf),
    Elf(PathBuf),
    Script(PathBuf),
    Other(PathBuf, Vec<u8>),
    Missing,
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Sniffed {
    fn describe(&self) -> String {
        match self {
            Sniffed::Wasm(k, p) => format!("{} is a wasm {k:?}", p.display()),
            Sniffed::Elf(p) => format!(
                "{} starts with 7f 45 4c 46 (an ELF executable)",
                p.display()
            ),
            Sniffed::Script(p) => format!("{} starts with #! (a script)", p.display()),
            Sniffed::Other(p, b) => format!("{} starts with {}", p.display(), hex(b)),
            Sniffed::Missing => "it was not found in the rootfs".into(),
        }
    }
}

/// Classifies the first bytes of a file.
fn classify(path: PathBuf, head: &[u8]) -> Sniffed {
    if head.starts_with(b"\0asm") {
        return match head.get(4..8) {
            Some([0x0d, 0x00, 0x01, 0x00]) => Sniffed::Wasm(WasmKind::Component, path),
            _ => Sniffed::Wasm(WasmKind::Module, path),
        };
    }
    if head.starts_with(b"\x7fELF") {
        return Sniffed::Elf(path);
    }
    if head.starts_with(b"#!") {
        return Sniffed::Script(path);
    }
    let text = String::from_utf8_lossy(head);
    if path.extension().is_some_and(|e| e == "wat") && text.trim_start().starts_with('(') {
        return Sniffed::Wasm(WasmKind::Text, path);
    }
    Sniffed::Other(path, head.to_vec())
}

/// Finds args[0] in the rootfs as execvp would (the container's PATH) and reads its first
/// 8 bytes. Symlinks are followed inside the rootfs only.
fn sniff(spec: &Spec, rootfs: &Path) -> Result<Sniffed, DispatchError> {
    let process = spec.process().as_ref();
    let arg0 = process
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first())
        .ok_or(DispatchError::NoArgs)?;
    let candidates: Vec<PathBuf> = if arg0.contains('/') {
        let p = Path::new(arg0);
        vec![if p.is_absolute() {
            p.to_path_buf()
        } else {
            process
                .map(|p| p.cwd().join(arg0))
                .unwrap_or_else(|| Path::new("/").join(arg0))
        }]
    } else {
        let path = process
            .and_then(|p| p.env().as_ref())
            .and_then(|env| env.iter().find_map(|e| e.strip_prefix("PATH=")))
            .unwrap_or(native_runner::process::DEFAULT_PATH);
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(arg0))
            .collect()
    };
    let Ok(root) = RootDir::open(rootfs) else {
        return Ok(Sniffed::Missing);
    };
    for c in candidates {
        let Ok(host) = resolve_in_root(&root, &c, Create::Nothing) else {
            continue;
        };
        let Ok(mut f) = File::open(&host) else {
            continue;
        };
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        let mut head = [0u8; 8];
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        return Ok(classify(c, &head[..n]));
    }
    Ok(Sniffed::Missing)
}

fn must_be_wasm(
    rule: Rule,
    label: String,
    spec: &Spec,
    rootfs: &Path,
) -> Result<Decision, DispatchError> {
    match sniff(spec, rootfs)? {
        Sniffed::Wasm(kind, path) => Ok(Decision {
            why: format!("{label}; {} is a wasm {kind:?}", path.display()),
            executor: Executor::Wasm { kind, path },
            rule,
        }),
        other => Err(DispatchError::NotWasm {
            rule: label,
            arg0: spec
                .process()
                .as_ref()
                .and_then(|p| p.args().as_ref())
                .and_then(|a| a.first())
                .cloned()
                .unwrap_or_default(),
            found: other.describe(),
        }),
    }
}

fn smart(rule: Rule, label: String, spec: &Spec, rootfs: &Path) -> Result<Decision, DispatchError> {
    let arg0 = spec
        .process()
        .as_ref()
        .and_then(|p| p.args().as_ref())
        .and_then(|a| a.first())
        .ok_or(DispatchError::NoArgs)?;
    if arg0.ends_with(".wasm") || arg0.ends_with(".wat") {
        must_be_wasm(
            rule,
            format!("{label} and args[0] ends in .wasm/.wat"),
            spec,
            rootfs,
        )
    } else {
        Ok(Decision {
            executor: Executor::Native,
            rule,
            why: format!("{label} and args[0] {arg0:?} does not end in .wasm/.wat"),
        })
    }
}

/// Decides the executor of a container (see the module docs for the order).
pub fn decide(
    spec: &Spec,
    rootfs: &Path,
    image: Option<&ImageFacts>,
) -> Result<Decision, DispatchError> {
    let ann = spec.annotations().as_ref();
    let get = |k: &str| ann.and_then(|a| a.get(k)).map(String::as_str);
    if get(CRI_CONTAINER_TYPE) == Some("sandbox") {
        return Ok(Decision {
            executor: Executor::Native,
            rule: Rule::Sandbox,
            why: format!("{CRI_CONTAINER_TYPE}=sandbox: a pod sandbox is always native"),
        });
    }
    if let Some(h) = get(HANDLER_ANNOTATION) {
        let label = format!("{HANDLER_ANNOTATION}={h}");
        return match h {
            "wasm" | "wasmtime" => must_be_wasm(Rule::Handler, label, spec, rootfs),
            "wasm-smart" => smart(Rule::Handler, label, spec, rootfs),
            _ => Ok(Decision {
                executor: Executor::Native,
                rule: Rule::Handler,
                why: format!("{label} is not a wasm handler"),
            }),
        };
    }
    match get(VARIANT_ANNOTATION) {
        Some("compat") => {
            return must_be_wasm(
                Rule::Variant,
                format!("{VARIANT_ANNOTATION}=compat"),
                spec,
                rootfs,
            )
        }
        Some("compat-smart") => {
            return smart(
                Rule::Variant,
                format!("{VARIANT_ANNOTATION}=compat-smart"),
                spec,
                rootfs,
            )
        }
        _ => {}
    }
    if let Some(reason) = image.and_then(ImageFacts::wasm_reason) {
        return must_be_wasm(Rule::Image, reason, spec, rootfs);
    }
    let s = sniff(spec, rootfs)?;
    let why = s.describe();
    Ok(match s {
        Sniffed::Wasm(kind, path) => Decision {
            executor: Executor::Wasm { kind, path },
            rule: Rule::Sniff,
            why,
        },
        _ => Decision {
            executor: Executor::Native,
            rule: Rule::Sniff,
            why: format!("args[0]: {why}"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";
    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("bin")).unwrap();
        std::fs::create_dir_all(d.path().join("app")).unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("app/hello.wasm"), MODULE).unwrap();
        std::fs::write(d.path().join("app/comp.wasm"), COMPONENT).unwrap();
        std::fs::write(d.path().join("app/hello.wat"), "(module)").unwrap();
        std::fs::write(d.path().join("bin/tool"), b"\x7fELF\x02\x01\x01\0").unwrap();
        std::fs::write(d.path().join("bin/script"), "#!/bin/sh\n").unwrap();
        std::fs::write(d.path().join("bin/wasmtool"), MODULE).unwrap();
        std::fs::write(d.path().join("app/data.txt"), "hello").unwrap();
        // A symlink leading outside must resolve inside the rootfs.
        std::os::unix::fs::symlink(
            "/etc/../../../app/hello.wasm",
            d.path().join("app/link.wasm"),
        )
        .unwrap();
        d
    }

    fn spec(args: &[&str], ann: serde_json::Value) -> Spec {
        serde_json::from_value(json!({
            "ociVersion": "1.2.0",
            "process": {"args": args, "cwd": "/app", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}},
            "annotations": ann
        }))
        .unwrap()
    }

    fn d(
        args: &[&str],
        ann: serde_json::Value,
        img: Option<&ImageFacts>,
    ) -> Result<Decision, DispatchError> {
        let r = rootfs();
        decide(&spec(args, ann), r.path(), img)
    }

    #[test]
    fn sniffing_decides_without_annotations() {
        let x = d(&["/app/hello.wasm"], json!({}), None).unwrap();
        assert_eq!(x.rule, Rule::Sniff);
        assert_eq!(
            x.executor,
            Executor::Wasm {
                kind: WasmKind::Module,
                path: "/app/hello.wasm".into()
            }
        );
        let x = d(&["/app/comp.wasm"], json!({}), None).unwrap();
        assert!(matches!(
            x.executor,
            Executor::Wasm {
                kind: WasmKind::Component,
                ..
            }
        ));
        // Found through PATH, whatever its name.
        let x = d(&["wasmtool"], json!({}), None).unwrap();
        assert_eq!(
            x.executor,
            Executor::Wasm {
                kind: WasmKind::Module,
                path: "/bin/wasmtool".into()
            }
        );
        // Relative to the cwd; symlinks stay in the rootfs.
        let x = d(&["./link.wasm"], json!({}), None).unwrap();
        assert!(
            matches!(
                x.executor,
                Executor::Wasm {
                    kind: WasmKind::Module,
                    ..
                }
            ),
            "{x:?}"
        );
        let x = d(&["/app/hello.wat"], json!({}), None).unwrap();
        assert!(matches!(
            x.executor,
            Executor::Wasm {
                kind: WasmKind::Text,
                ..
            }
        ));
        for native in ["tool", "/bin/script", "/app/data.txt", "missing"] {
            let x = d(&[native], json!({}), None).unwrap();
            assert_eq!(x.executor, Executor::Native, "{native}: {x:?}");
            assert_eq!(x.rule, Rule::Sniff);
        }
        assert!(d(&["tool"], json!({}), None)
            .unwrap()
            .why
            .contains("7f 45 4c 46"));
    }

    #[test]
    fn annotations_come_first() {
        let x = d(
            &["/app/hello.wasm"],
            json!({"run.oci.handler": "wasm"}),
            None,
        )
        .unwrap();
        assert_eq!(x.rule, Rule::Handler);
        let e = d(&["tool"], json!({"run.oci.handler": "wasmtime"}), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("run.oci.handler=wasmtime")
                && e.contains("not a wasm binary")
                && e.contains("7f 45 4c 46"),
            "{e}"
        );
        // Any other handler is native, even for a wasm file.
        let x = d(
            &["/app/hello.wasm"],
            json!({"run.oci.handler": "krun"}),
            None,
        )
        .unwrap();
        assert_eq!((x.executor, x.rule), (Executor::Native, Rule::Handler));
        // Smart: by the name of args[0].
        let x = d(&["tool"], json!({"run.oci.handler": "wasm-smart"}), None).unwrap();
        assert_eq!((x.executor, x.rule), (Executor::Native, Rule::Handler));
        let x = d(
            &["/app/hello.wasm"],
            json!({"run.oci.handler": "wasm-smart"}),
            None,
        )
        .unwrap();
        assert!(matches!(x.executor, Executor::Wasm { .. }));
        let x = d(
            &["/app/hello.wasm"],
            json!({"module.wasm.image/variant": "compat"}),
            None,
        )
        .unwrap();
        assert_eq!(x.rule, Rule::Variant);
        let x = d(
            &["tool"],
            json!({"module.wasm.image/variant": "compat-smart"}),
            None,
        )
        .unwrap();
        assert_eq!((x.executor, x.rule), (Executor::Native, Rule::Variant));
        let e = d(
            &["tool"],
            json!({"module.wasm.image/variant": "compat"}),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("module.wasm.image/variant=compat"));
        // The handler wins over the variant.
        let x = d(
            &["/app/hello.wasm"],
            json!({"run.oci.handler": "runc", "module.wasm.image/variant": "compat"}),
            None,
        )
        .unwrap();
        assert_eq!(x.executor, Executor::Native);
    }

    #[test]
    fn a_cri_sandbox_is_always_native() {
        let x = d(
            &["/app/hello.wasm"],
            json!({"io.kubernetes.cri.container-type": "sandbox", "run.oci.handler": "wasm"}),
            None,
        )
        .unwrap();
        assert_eq!((x.executor, x.rule), (Executor::Native, Rule::Sandbox));
    }

    #[test]
    fn image_facts_decide_before_sniffing() {
        let wasi = ImageFacts {
            os: Some("wasip1".into()),
            architecture: Some("wasm".into()),
            ..Default::default()
        };
        let x = d(&["/app/hello.wasm"], json!({}), Some(&wasi)).unwrap();
        assert_eq!(x.rule, Rule::Image);
        let e = d(&["tool"], json!({}), Some(&wasi))
            .unwrap_err()
            .to_string();
        assert!(e.contains("image architecture is wasm"), "{e}");
        let layer = ImageFacts {
            layer_media_types: vec!["application/wasm".into()],
            ..Default::default()
        };
        assert_eq!(
            d(&["/app/hello.wasm"], json!({}), Some(&layer))
                .unwrap()
                .rule,
            Rule::Image
        );
        let linux = ImageFacts {
            os: Some("linux".into()),
            architecture: Some("amd64".into()),
            ..Default::default()
        };
        assert_eq!(
            d(&["tool"], json!({}), Some(&linux)).unwrap().rule,
            Rule::Sniff
        );
    }
}
