//! Shared helpers of the integration tests: the busybox rootfs fixture, bundles with a
//! private state root and an absolute, unique cgroup path, and the `pouch-runtime` binary.
#![allow(dead_code)]

pub mod containerd;
pub mod leaks;
pub mod registry;
pub mod store;
pub mod terminal;
pub mod wasm_bundle;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The `pouch-runtime` binary built for these tests.
pub fn runtime_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pouch-runtime")
}

/// The busybox rootfs, built once by the project's fixture script (from Debian's busybox-static).
pub fn busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-rootfs");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/make-busybox-rootfs.sh");
        let o = Command::new("bash")
            .arg(&script)
            .arg(&out)
            .output()
            .expect("run fixture script");
        assert!(
            o.status.success(),
            "fixture script failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    })
}

/// A unique id for this test process.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// The cgroup test root: every test container lives under it.
pub const CGROUP_TEST_ROOT: &str = "/pouch-test";

/// A bundle (config.json + the shared read-only busybox rootfs) with its own state root.
pub struct Bundle {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub root: tempfile::TempDir,
    pub spec: Value,
}

impl Bundle {
    /// A bundle running `args` with the default spec of `pouch-runtime spec` (terminal off),
    /// the shared rootfs (read-only) and cgroup `/pouch-test/<id>`.
    pub fn new(args: &[&str]) -> Bundle {
        let id = unique("t");
        let dir = tempfile::Builder::new()
            .prefix("pouch-bundle")
            .tempdir()
            .unwrap();
        let root = tempfile::Builder::new()
            .prefix("pouch-root")
            .tempdir()
            .unwrap();
        let mut spec = pouch::spec::default_spec_json();
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        spec["root"] = json!({"path": busybox_rootfs(), "readonly": true});
        spec["linux"]["cgroupsPath"] = json!(format!("{CGROUP_TEST_ROOT}/{id}"));
        // A writable scratch space for tests.
        spec["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev"]}));
        Bundle {
            id,
            dir,
            root,
            spec,
        }
    }

    /// Writes config.json (call after changing `spec`).
    pub fn write(&self) -> &Self {
        std::fs::write(self.dir.path().join("config.json"), self.spec.to_string()).unwrap();
        self
    }

    /// `pouch-runtime --root <root> ARGS...`
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(runtime_bin());
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Runs the runtime with `args`, capturing output through files: a container started by
    /// `create` or `run -d` inherits the runtime's stdio, so pipes would never see EOF.
    pub fn rt(&self, args: &[&str]) -> Output {
        run_captured(self.cmd().args(args))
    }

    /// `create --bundle <dir> <id>` (asserting success).
    pub fn create(&self) {
        self.write();
        let o = self.rt(&[
            "create",
            "--bundle",
            self.dir.path().to_str().unwrap(),
            &self.id,
        ]);
        assert!(
            o.status.success(),
            "create failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `run -d --bundle <dir> <id>` after writing config.json (asserting success).
    pub fn run_detached(&self) {
        self.write();
        stdout_ok(self.rt(&[
            "run",
            "-d",
            "--bundle",
            self.dir.path().to_str().unwrap(),
            &self.id,
        ]));
    }

    /// `run --bundle <dir> <id>`: (exit code, stdout, stderr).
    pub fn run(&self) -> (i32, String, String) {
        self.write();
        let o = self.rt(&[
            "run",
            "--bundle",
            self.dir.path().to_str().unwrap(),
            &self.id,
        ]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Runs and asserts exit 0; returns stdout.
    pub fn run_ok(&self) -> String {
        let (code, out, err) = self.run();
        assert_eq!(
            code, 0,
            "run failed ({code}): stdout {out:?} stderr {err:?}"
        );
        out
    }

    /// The parsed `state`.
    pub fn state(&self) -> Value {
        let o = self.rt(&["state", &self.id]);
        assert!(
            o.status.success(),
            "state failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice(&o.stdout).unwrap()
    }

    /// The container's cgroup directories on the host.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs_of(&format!("{CGROUP_TEST_ROOT}/{}", self.id))
    }

    /// The container's cgroup directory in the v1 `pids` hierarchy, else in cgroup2.
    pub fn pids_cgroup_dir(&self) -> PathBuf {
        let dirs = self.cgroup_dirs();
        dirs.iter()
            .find(|p| p.starts_with("/sys/fs/cgroup/pids"))
            .or(dirs.last())
            .expect("no cgroup hierarchy")
            .clone()
    }

    /// Drops the pid namespace from the spec (the init's children can then outlive it).
    pub fn without_pid_namespace(&mut self) -> &mut Self {
        self.spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "pid");
        self
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.rt(&["delete", "--force", &self.id]);
        let leftovers: Vec<_> = self
            .cgroup_dirs()
            .into_iter()
            .filter(|p| p.exists())
            .collect();
        for p in &leftovers {
            let _ = std::fs::remove_dir(p);
        }
        if !std::thread::panicking() {
            assert!(leftovers.is_empty(), "cgroup left behind: {leftovers:?}");
            let state_dir = self.root.path().join(&self.id);
            assert!(
                !state_dir.exists(),
                "state dir left behind: {}",
                state_dir.display()
            );
        }
    }
}

/// The directories of an absolute cgroup path in every hierarchy mounted here.
pub fn cgroup_dirs_of(path: &str) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mp = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| PathBuf::from(mp).join(path.trim_start_matches('/')))
        })
        .collect()
}

/// Runs a command with stdin from /dev/null and stdout/stderr captured through temporary
/// files (so that processes which outlive it cannot hold the capture open).
pub fn run_captured(cmd: &mut Command) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap();
    Output {
        status,
        stdout: read_from_start(out),
        stderr: read_from_start(err),
    }
}

/// Everything a capture file holds, read from its start.
pub fn read_from_start(mut f: std::fs::File) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut v = Vec::new();
    f.seek(std::io::SeekFrom::Start(0)).unwrap();
    f.read_to_end(&mut v).unwrap();
    v
}

/// Stdout of a command as a string, asserting success.
pub fn stdout_ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "command failed ({:?}): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Whether `pid` has exited (gone or a zombie) within 5 seconds.
pub fn process_gone(pid: i64) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(5) {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(s) if s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')) => return true,
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    false
}

/// A private, writable copy of the busybox rootfs in the bundle (the spec points at it, read-only
/// unless the test says otherwise).
pub fn private_rootfs(b: &mut Bundle) -> PathBuf {
    let copy = b.dir.path().join("rootfs");
    let st = Command::new("cp")
        .arg("-a")
        .arg(busybox_rootfs())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    b.spec["root"] = json!({"path": "rootfs", "readonly": true});
    copy
}
