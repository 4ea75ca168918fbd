//! A wasm bundle: a rootfs holding the example programs of wasm-examples/ under /app (plus the
//! marker file /app/inside.txt), run by `pouch-runtime` with a private compile cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::json;

use super::{run_captured, Bundle};

/// The built example programs (wasm-examples/bin).
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("wasm-examples/bin")
}

pub struct WasmBundle {
    pub b: Bundle,
    pub rootfs: PathBuf,
    pub cache: tempfile::TempDir,
}

impl WasmBundle {
    /// Runs `args` (e.g. `/app/hello.wasm ...`) with `PATH=/app`.
    pub fn new(args: &[&str]) -> WasmBundle {
        let mut b = Bundle::new(args);
        let rootfs = b.dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("app")).unwrap();
        for e in std::fs::read_dir(examples()).unwrap().flatten() {
            std::fs::copy(e.path(), rootfs.join("app").join(e.file_name())).unwrap();
        }
        std::fs::write(rootfs.join("app/inside.txt"), "inside the container\n").unwrap();
        b.spec["root"] = json!({"path": "rootfs", "readonly": true});
        b.spec["process"]["env"] = json!(["PATH=/app"]);
        WasmBundle {
            b,
            rootfs,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    /// `pouch-runtime --root <root> --wasm-cache <cache>` (arguments to add).
    pub fn cmd(&self) -> Command {
        let mut c = self.b.cmd();
        c.arg("--wasm-cache").arg(self.cache.path());
        c
    }

    /// Runs the runtime with `args`, output captured.
    pub fn rt(&self, args: &[&str]) -> Output {
        run_captured(self.cmd().args(args))
    }

    /// `run --bundle <dir> <id>` in the background (stdout piped), returned once the guest has
    /// written its first 5 bytes: it runs.
    pub fn spawn_running(&self) -> std::process::Child {
        self.b.write();
        let mut child = self
            .cmd()
            .args([
                "run",
                "--bundle",
                self.b.dir.path().to_str().unwrap(),
                &self.b.id,
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut first = [0u8; 5];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        child
    }

    /// `run --bundle <dir> <id>` after writing config.json: (exit code, stdout, stderr).
    pub fn run(&self) -> (i32, String, String) {
        self.b.write();
        let o = self.rt(&[
            "run",
            "--bundle",
            self.b.dir.path().to_str().unwrap(),
            &self.b.id,
        ]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}
