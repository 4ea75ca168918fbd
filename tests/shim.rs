//! `containerd-shim-pouch-v2` under a real containerd: Debian's containerd 1.6 with a private
//! config, root, state and socket (`tests/support/containerd.sh`), driven with `ctr run
//! --runtime io.containerd.pouch.v2`.
//!
//! How the binaries are found: the shim is a binary of another workspace package
//! (`pouch-shims`), which `CARGO_BIN_EXE_*` cannot name, and `cargo test --workspace` builds
//! it only as a unit-test harness. So the first test that needs it runs `cargo build -p
//! pouch-shims --bin containerd-shim-pouch-v2` (same profile and target dir as this test; a
//! no-op when it is up to date). The shim lands next to `pouch-runtime`
//! (`CARGO_BIN_EXE_pouch-runtime`), where it looks first for the runtime; containerd finds the
//! shim on its PATH, which the test prefixes with that directory.
//!
//! Images (no network): `tests/support/make-test-images.sh` builds OCI layouts, skopeo turns
//! `busybox` and `wasm-image` into oci-archives, `ctr images import` loads them. A long-running
//! wasm image (`wasm-examples/bin/sleep.wasm` as the entrypoint) is built here with that
//! script's functions, for the tests that need it.
//!
//! Every test has its own containerd (`common::containerd`), namespace (hence its own runtime
//! root `/run/containerd/pouch/<namespace>`), wasm compile cache and cgroups under
//! `/pouch-test/`. When the test body is done a guard checks that nothing is left: no task or
//! container, no shim process, no mount, no cgroup, no runtime state; then `containerd.sh stop`
//! cleans up (also after a failure) and the guard checks again.
//!
//! Needs root, containerd, ctr and skopeo (`scripts/install-deps.sh`); a missing tool fails.

mod common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::containerd::{require_tools, text, Containerd, Options};
use common::*;

const RUNTIME: &str = "io.containerd.pouch.v2";
const BUSYBOX: &str = "localhost/pouch-busybox:latest";
const WASM: &str = "localhost/pouch-wasm:latest";
/// A wasm image whose module sleeps (wasm-examples/bin/sleep.wasm, 1000 s without arguments).
const WASM_SLEEP: &str = "localhost/pouch-wasm-sleep:latest";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The directory holding `pouch-runtime` and, once built, the shim.
fn bin_dir() -> &'static Path {
    Path::new(runtime_bin()).parent().unwrap()
}

/// Builds the shim once per test process (see the module docs); returns its directory.
fn shim_dir() -> &'static Path {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = bin_dir();
        let profile = dir.file_name().unwrap().to_str().unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "-p",
                "pouch-shims",
                "--bin",
                "containerd-shim-pouch-v2",
            ])
            .arg("--target-dir")
            .arg(dir.parent().unwrap());
        if profile != "debug" {
            cmd.args([
                "--profile",
                if profile == "release" {
                    "release"
                } else {
                    profile
                },
            ]);
        }
        let o = cmd.output().expect("run cargo to build the shim");
        assert!(
            o.status.success(),
            "cargo build -p pouch-shims failed:\n{}",
            text(&o.stderr)
        );
    });
    let shim = bin_dir().join("containerd-shim-pouch-v2");
    assert!(shim.is_file(), "{} was not built", shim.display());
    bin_dir()
}

/// The test images as oci-archives (built once per test process).
fn archives() -> &'static (PathBuf, PathBuf) {
    static A: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    A.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shim-images");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/make-test-images.sh");
        let o = run(Command::new("bash").arg(script).arg(out.join("oci")));
        assert!(
            o.status.success(),
            "make-test-images.sh: {}",
            text(&o.stderr)
        );
        let archive = |layout: &str, name: &str| {
            let file = out.join(format!("{layout}.tar"));
            let _ = fs::remove_file(&file);
            let o = run(Command::new("skopeo").args([
                "copy",
                "-q",
                &format!("oci:{}:latest", out.join("oci").join(layout).display()),
                &format!("oci-archive:{}:{name}", file.display()),
            ]));
            assert!(
                o.status.success(),
                "skopeo copy {layout}: {}",
                text(&o.stderr)
            );
            file
        };
        (archive("busybox", BUSYBOX), archive("wasm-image", WASM))
    })
}

/// The script that builds the sleep.wasm image's OCI layout $2 from $3, with the functions of
/// make-test-images.sh ($1) and as that script builds its `wasm-image` (compat style:
/// platform wasi/wasm, one gzip layer, the module as the entrypoint).
const SLEEP_IMAGE_SCRIPT: &str = r#"
set -euo pipefail
. "$1"
layout=$2 module=$3
work=$(mktemp -d "$layout.XXXXXX")
trap 'rm -rf "$work"' EXIT
L="$work/layout"
layout_init "$L"
mkdir -p "$work/root"
cp "$module" "$work/root/sleep.wasm"
chmod 0755 "$work/root" "$work/root/sleep.wasm"
layer_dir "$L" "$work/root"
cfg=$(image_config "$WASM_IMAGE_OS" wasm "" '"Entrypoint":["/sleep.wasm"]' "\"$L_DIFFID\"" \
    "$(history_entry "shim test: add sleep.wasm")")
blob_json "$L" "$cfg"
blob_json "$L" "$(image_manifest "$(descriptor "$MT_CONFIG" "$B_DIGEST" "$B_SIZE")" \
    "$(descriptor "$MT_LAYER_GZ" "$L_DIGEST" "$L_SIZE")")"
layout_tag "$L" "$MT_MANIFEST" "$B_DIGEST" "$B_SIZE"
check_layout "$L" 1
rm -rf "$layout"
mv "$L" "$layout"
"#;

/// The sleep.wasm image as an oci-archive (built once per test process).
fn sleep_archive() -> &'static Path {
    static A: OnceLock<PathBuf> = OnceLock::new();
    A.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("shim-images");
        fs::create_dir_all(&out).unwrap();
        let layout = out.join("wasm-sleep");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let o = run(Command::new("bash")
            .args(["-c", SLEEP_IMAGE_SCRIPT, "make-sleep-image"])
            .arg(repo.join("tests/support/make-test-images.sh"))
            .arg(&layout)
            .arg(repo.join("wasm-examples/bin/sleep.wasm")));
        assert!(
            o.status.success(),
            "building the sleep.wasm image: {}",
            text(&o.stderr)
        );
        let file = out.join("wasm-sleep.tar");
        let _ = fs::remove_file(&file);
        let o = run(Command::new("skopeo").args([
            "copy",
            "-q",
            &format!("oci:{}:latest", layout.display()),
            &format!("oci-archive:{}:{WASM_SLEEP}", file.display()),
        ]));
        assert!(
            o.status.success(),
            "skopeo copy wasm-sleep: {}",
            text(&o.stderr)
        );
        file
    })
}

/// Runs `cmd` (stdin /dev/null, output through files), failing the test after
/// COMMAND_TIMEOUT (killing the child we started, by pid).
fn run(cmd: &mut Command) -> Output {
    common::containerd::run(cmd, COMMAND_TIMEOUT)
}

impl Containerd {
    /// A private containerd whose PATH holds our shim, with both images imported; its own
    /// namespace, hence its own runtime root, and its own wasm compile cache.
    fn new() -> Containerd {
        require_tools(&["containerd", "ctr", "skopeo", "bash"]);
        let shims = shim_dir();
        let (busybox, wasm) = archives();
        let namespace = unique("pouch-shim");
        let c = Containerd::start(Options {
            dir_prefix: "pouch-sh.",
            // The shim's default runtime root: /run/containerd/pouch/<namespace>.
            runtime_state: Path::new("/run/containerd/pouch").join(&namespace),
            namespace,
            id_prefix: "sh",
            shim_dir: Some(shims.to_owned()),
            wasm_cache: true,
            command_timeout: COMMAND_TIMEOUT,
        });
        c.ctr_ok(&["images", "import", busybox.to_str().unwrap()]);
        c.ctr_ok(&["images", "import", wasm.to_str().unwrap()]);
        c
    }

    /// Imports the sleep.wasm image ([`WASM_SLEEP`]).
    fn import_sleep_wasm(&self) {
        self.ctr_ok(&["images", "import", sleep_archive().to_str().unwrap()]);
    }

    /// `ctr run MODE --runtime io.containerd.pouch.v2 --cgroup CG IMAGE ID ARGS...`
    fn run(&self, mode: &str, image: &str, id: &str, cg: &str, args: &[&str]) -> Output {
        self.ctr_run(&[mode, "--runtime", RUNTIME], image, id, cg, args)
    }

    /// `ctr run -d --runtime io.containerd.pouch.v2 ...`, which must succeed; waits until the
    /// task runs and returns the pid of its init.
    fn run_detached(&self, image: &str, id: &str, cg: &str, args: &[&str]) -> i64 {
        self.run_task(&["--runtime", RUNTIME], image, id, cg, args)
    }
}

#[test]
fn shim_runs_busybox_and_passes_exit_codes_through() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let o = c.run("--rm", BUSYBOX, &id, &cg, &["echo", "hi"]);
    assert!(o.status.success(), "ctr run: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "hi\n", "stderr: {}", text(&o.stderr));

    let (id, cg) = c.new_container();
    let o = c.run(
        "--rm",
        BUSYBOX,
        &id,
        &cg,
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
    );
    assert_eq!(o.status.code(), Some(7), "stderr: {}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "out\n");
    assert!(text(&o.stderr).contains("err"), "{}", text(&o.stderr));

    // A runtime error reaches ctr, and nothing is left.
    let (id, cg) = c.new_container();
    let o = c.run("--rm", BUSYBOX, &id, &cg, &["/no/such/program"]);
    let err = text(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("OCI runtime create failed")
            && err.contains("/no/such/program"),
        "ctr should show the runtime's error ({}): {err}",
        o.status
    );
    let _ = c.ctr(&["containers", "rm", &id]);
}

#[test]
fn shim_runs_a_wasm_image_with_its_output_reaching_ctr() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let o = c.run("--rm", WASM, &id, &cg, &[]);
    assert!(o.status.success(), "ctr run (wasm): {}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("hello from wasm"),
        "stdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let cached = fs::read_dir(c.path.join("wasm-cache"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(
        cached, 1,
        "the module is compiled once into the shared cache"
    );
}

#[test]
fn shim_task_kill_exec_ps_pause_resume_and_metrics() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let pid = c.run_detached(BUSYBOX, &id, &cg, &["sleep", "1000"]);
    let procs = fs::read_to_string(cgroup_dirs_of(&cg)[0].join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "init {pid} is not in {cg}: {procs}"
    );

    // exec joins the container; its exit code passes through.
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        &id,
        "sh",
        "-c",
        "cat /proc/1/comm; echo e >&2; exit 5",
    ]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "ctr task exec: {}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), "sleep\n");
    assert!(text(&o.stderr).contains('e'));
    let o = c.ctr(&["task", "exec", "--exec-id", "e2", &id, "/no/such/program"]);
    assert!(
        !o.status.success() && text(&o.stderr).contains("OCI runtime exec failed"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(c.task(&id), Some((pid, "RUNNING".to_owned())));

    // ps lists the init.
    let ps = c.ctr_ok(&["task", "ps", &id]);
    assert!(
        ps.lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "{ps}"
    );

    // metrics: cgroups v1 format (memory, cpu, pids) from the init's cgroup.
    let json = c.ctr_ok(&["task", "metrics", "--format", "json", &id]);
    let m: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let num = |p: &str| m.pointer(p).and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(
        num("/memory/usage/usage") > 0 && num("/pids/current") >= 1 && num("/cpu/usage/total") > 0,
        "memory, pids and cpu of the task: {json}"
    );
    let table = c.ctr_ok(&["task", "metrics", &id]);
    assert!(
        table.contains("memory.usage_in_bytes") && table.contains("pids.current"),
        "{table}"
    );

    c.ctr_ok(&["task", "pause", &id]);
    c.wait_task_status(&id, "PAUSED");
    c.ctr_ok(&["task", "resume", &id]);
    c.wait_task_status(&id, "RUNNING");

    c.kill_task(&id, Some("KILL"));
    assert!(process_gone(pid), "the init {pid} survived");
    c.delete_task(&id, 137);

    // The default signal (SIGTERM) reaches an init that handles it; kill --all.
    let (id, cg) = c.new_container();
    c.run_detached(
        BUSYBOX,
        &id,
        &cg,
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.1; done",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    c.kill_task(&id, None);
    c.delete_task(&id, 42);
}

#[test]
fn shim_run_t_gives_the_container_a_terminal() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let (master, slave) = common::terminal::pty(33, 99);
    let mut child = common::terminal::spawn_on_pty(
        &mut c.command(&[
            "run",
            "-t",
            "--rm",
            "--runtime",
            RUNTIME,
            "--cgroup",
            &cg,
            BUSYBOX,
            &id,
            "sh",
        ]),
        &slave,
    );
    drop(slave);
    let shown = common::terminal::converse(
        &master,
        &["stty size; tty; echo typed-$((6*7))\n", "exit 5\n"],
        Duration::from_secs(20),
    );
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ctr run -t did not exit; the terminal showed:\n{shown}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(5),
        "{status:?} ({:?}); terminal:\n{shown}",
        status.signal()
    );
    assert!(
        shown.contains("33 99") && shown.contains("/dev/pts/0") && shown.contains("typed-42"),
        "{shown}"
    );
}

#[test]
fn shim_exec_into_a_wasm_task_is_unimplemented() {
    let mut c = Containerd::new();
    c.import_sleep_wasm();
    let (id, cg) = c.new_container();
    let pid = c.run_detached(WASM_SLEEP, &id, &cg, &[]);

    // pouch-runtime refuses it; the shim answers UNIMPLEMENTED, which containerd turns into
    // its ErrNotImplemented (the message gains a trailing ": not implemented").
    let o = c.ctr(&["task", "exec", "--exec-id", "e1", &id, "/sleep.wasm", "1"]);
    let err = text(&o.stderr);
    assert!(
        !o.status.success(),
        "exec into a wasm task succeeded: {err}"
    );
    assert!(
        err.contains("OCI runtime exec failed")
            && err.contains("wasm")
            && err.contains("not implemented"),
        "{err}"
    );
    assert!(
        err.trim_end().ends_with(": not implemented"),
        "containerd did not see UNIMPLEMENTED (ErrNotImplemented): {err}"
    );
    // The task is untouched, and the failed exec is gone: the same exec id can be used again.
    assert_eq!(c.task(&id), Some((pid, "RUNNING".to_owned())));
    let o = c.ctr(&["task", "exec", "--exec-id", "e1", &id, "/sleep.wasm", "1"]);
    assert!(
        text(&o.stderr).contains("not implemented"),
        "{}",
        text(&o.stderr)
    );

    c.kill_task(&id, Some("KILL"));
    assert!(process_gone(pid), "the wasm init {pid} survived");
    c.delete_task(&id, 137);
}

/// `ctr events`, running in the background until dropped (ended by its pid).
struct Events {
    child: std::process::Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Events {
    /// Starts `ctr events` and waits until it sees events (a probe container is created and
    /// removed).
    fn start(c: &Containerd) -> Events {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("events");
        let child = c
            .command(&["events"])
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events");
        let ev = Events {
            child,
            out,
            _dir: dir,
        };
        let probe = unique("probe");
        let t = Instant::now();
        loop {
            c.ctr_ok(&["containers", "create", BUSYBOX, &probe]);
            c.ctr_ok(&["containers", "rm", &probe]);
            if ev.text().contains(&probe) {
                return ev;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "ctr events showed nothing"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self) -> String {
        fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The topics of the events about container `id`, in order, once `last` is among them.
    fn topics_until(&self, id: &str, last: &str) -> Vec<String> {
        let t = Instant::now();
        loop {
            let topics: Vec<String> = self
                .text()
                .lines()
                .filter(|l| l.contains(&format!("\"{id}\"")))
                .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
                .map(str::to_owned)
                .collect();
            if topics.iter().any(|t| t == last) || t.elapsed() > Duration::from_secs(10) {
                return topics;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn shim_publishes_task_oom_before_the_exit() {
    let mut c = Containerd::new();
    let events = Events::start(&c);

    // A shell doubling a string hits the 20 MiB limit within a second; the OOM killer ends it.
    let (id, cg) = c.new_container();
    let o = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--cgroup",
        &cg,
        "--memory-limit",
        &(20u64 << 20).to_string(),
        BUSYBOX,
        &id,
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "the memory hog should be OOM-killed: {}",
        text(&o.stderr)
    );
    let topics = events.topics_until(&id, "/tasks/delete");
    let pos = |t: &str| topics.iter().position(|x| x == t);
    assert!(
        pos("/tasks/oom").is_some() && pos("/tasks/oom") < pos("/tasks/exit"),
        "TaskOOM before TaskExit for {id}: {topics:?}\n{}",
        events.text()
    );

    // An ordinary exit has no OOM event.
    let (id, cg) = c.new_container();
    let o = c.run("--rm", BUSYBOX, &id, &cg, &["true"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let topics = events.topics_until(&id, "/tasks/delete");
    assert!(
        topics.contains(&"/tasks/exit".to_owned()) && !topics.contains(&"/tasks/oom".to_owned()),
        "{topics:?}"
    );
}

#[test]
fn shim_runs_50_tasks_at_once() {
    const TASKS: usize = 50;
    const WASM_EVERY: usize = 5; // 10 of the 50
    let mut c = Containerd::new();
    let tasks: Vec<(usize, String, String)> = (0..TASKS)
        .map(|i| {
            let (id, cg) = c.new_container();
            (i, id, cg)
        })
        .collect();
    let t = Instant::now();
    let results: Vec<(usize, String, Output)> = std::thread::scope(|s| {
        let handles: Vec<_> = tasks
            .iter()
            .map(|(i, id, cg)| {
                let c = &c;
                s.spawn(move || {
                    let o = if i % WASM_EVERY == 0 {
                        c.run("--rm", WASM, id, cg, &[])
                    } else {
                        let script = format!("echo task-{i}; exit {}", i % 7);
                        c.run("--rm", BUSYBOX, id, cg, &["sh", "-c", &script])
                    };
                    (*i, id.clone(), o)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let took = t.elapsed();
    let mut wrong = Vec::new();
    for (i, id, o) in &results {
        let (code, out) = if i % WASM_EVERY == 0 {
            (0, "hello from wasm".to_owned())
        } else {
            ((i % 7) as i32, format!("task-{i}\n"))
        };
        if o.status.code() != Some(code) || !text(&o.stdout).contains(&out) {
            wrong.push(format!(
                "{id} (#{i}): {} (want {code}), stdout {:?}, stderr {:?}",
                o.status,
                text(&o.stdout),
                text(&o.stderr)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {TASKS} tasks went wrong:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
    eprintln!("{TASKS} tasks through the pouch shim at once: {took:?}");
    // The guard then checks that no task, container, shim, mount, cgroup or state is left.
    let left = c.leftovers();
    assert!(left.is_empty(), "left behind:\n  {}", left.join("\n  "));
}
