//! Real clients driving `pouch-runtime`: Debian's podman (`podman --runtime <our binary>`) with
//! a private configuration and store, and a private containerd whose runc shim is pointed at
//! our binary (`ctr run --runc-binary <our binary>`). The image is built locally from the
//! busybox fixture rootfs (no network).
//!
//! WebAssembly: podman runs images whose only file is `/app/<program>.wasm` (a committed
//! program of `wasm-examples/bin`, `podman import`ed with that ENTRYPOINT) with no annotation
//! and no flag (our runtime sniffs `\0asm`; podman drops image annotations) and with
//! `--annotation run.oci.handler=wasm`. Our compile cache is pointed into the test's
//! directory by a wrapper that sets `POUCH_WASM_CACHE` (`Podman::wasm_runtime`).
//!
//! Every test owns a temporary directory (podman's storage and config, or containerd's root,
//! state and socket) and unique cgroups under `/pouch-test/`. A guard checks, when the test
//! body is done, that the clients and our runtime left nothing behind (containers, runtime
//! state, container cgroups, mounts, processes), then cleans up with the scripts of
//! `tests/support/` — also when an assertion failed — and checks again.
//!
//! Interactive clients (`podman run -it`, `podman exec -it`, `ctr run -t`, `ctr task exec -t`)
//! run on a pty the test allocates (`on_terminal`): the test types into the master, waits for
//! the answers and checks the window size and the exit code.
//!
//! These tests need root, podman, conmon, containerd, ctr and containerd-shim-runc-v2
//! (`scripts/install-deps.sh`). A missing tool is a failure, never a skip.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The image `tests/support/podman-image.sh` builds from the busybox fixture.
const IMAGE: &str = "localhost/pouch-busybox:latest";
/// The containerd namespace of these tests (each test has its own containerd).
const CTR_NAMESPACE: &str = "pouch-test";
/// Longest any single client command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(40);
/// How long processes that a client started (conmon, `podman container cleanup`, shims) may
/// take to go away after their container ended.
const PROCESS_GRACE: Duration = Duration::from_secs(15);
/// pouch-runtime's default `--root`: podman never passes `--root`.
const DEFAULT_RUNTIME_ROOT: &str = "/run/pouch-runtime";

// ----------------------------------------------------------------------------------------
// helpers
// ----------------------------------------------------------------------------------------

fn support_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// Fails (never skips) when a tool the test needs is not installed.
fn require_tools(tools: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} not found in PATH ({}): these tests drive the real clients; install them with \
         scripts/install-deps.sh",
        missing.join(", "),
        path.to_string_lossy()
    );
    assert!(
        nix::unistd::geteuid().is_root(),
        "the client tests need root (podman and containerd run rootful here)"
    );
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr captured through files (daemons
/// the client leaves behind cannot hold them open). Fails the test after `COMMAND_TIMEOUT`,
/// killing the command (the child we started, by pid).
fn run(cmd: &mut Command) -> Output {
    let out = tempfile::tempfile().unwrap();
    let err = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |mut f: fs::File| {
        use std::io::{Read, Seek};
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut v).unwrap();
        v
    };
    Output {
        status,
        stdout: read(out),
        stderr: read(err),
    }
}

/// Stdout of a successful command; otherwise fails with what it printed.
fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// A temporary directory, canonical (the support scripts resolve symlinks).
fn temp_dir(parent: &Path, prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .unwrap();
    let path = dir.path().canonicalize().unwrap();
    (dir, path)
}

/// Mount points at or below `dir` in our mount namespace (the host's).
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Processes (other than this test) whose command line names `dir`: conmon and podman's
/// cleanup processes name the podman store, containerd and its shims the containerd state.
fn processes_naming(dir: &Path) -> Vec<(i32, String)> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = text(&raw).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}

/// Waits up to `PROCESS_GRACE` for every process naming `dir` to end; returns the rest.
fn wait_processes_gone(dir: &Path) -> Vec<(i32, String)> {
    let t = Instant::now();
    loop {
        let left = processes_naming(dir);
        if left.is_empty() || t.elapsed() > PROCESS_GRACE {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Existing directories of cgroup `path` (at or below it) in any hierarchy.
fn cgroup_left(path: &str) -> Vec<PathBuf> {
    cgroup_dirs_of(path)
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

/// Asserts that `pid` is a member of cgroup `path` in every hierarchy mounted here.
fn assert_in_cgroup(pid: i64, path: &str) {
    for dir in cgroup_dirs_of(path) {
        let procs = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_else(|e| panic!("cgroup {} of pid {pid}: {e}", dir.display()));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "pid {pid} is not in {} (members: {procs:?})",
            dir.display()
        );
    }
}

/// Waits up to 10 s for `path` to exist (a file the container creates in its rootfs).
fn wait_for_file(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{} did not appear within 10 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A wrapper named `pouch-runtime` (so podman's `runtime_supports_json` applies) in `dir`
/// that logs every argv to `dir/pouch-runtime.log` and execs our binary.
fn argv_logger(dir: &Path) -> (PathBuf, PathBuf) {
    let out = ok(Command::new("bash")
        .arg(support_script("runtime-logger.sh"))
        .arg(dir)
        .arg(runtime_bin())
        .arg("pouch-runtime"));
    (PathBuf::from(out.trim()), dir.join("pouch-runtime.log"))
}

/// The calls the wrapper logged that name `id`, each as the runtime's arguments after the
/// global options (`--root X`, `--log X`, `--log-format X`/`--log-format=X`).
fn logged_calls(log: &Path, id: &str) -> Vec<String> {
    let log = fs::read_to_string(log).unwrap();
    log.lines()
        .filter_map(|line| {
            // "<caller> | <argv0> <args...> | stdin=<kind>"
            let argv = line.split(" | ").nth(1)?;
            let mut args = argv.split(' ').skip(1);
            let mut rest = Vec::new();
            while let Some(a) = args.next() {
                if rest.is_empty() && matches!(a, "--root" | "--log" | "--log-format") {
                    args.next();
                } else if rest.is_empty() && a.starts_with("--") {
                    // --log-format=json, --debug, --systemd-cgroup
                } else {
                    rest.push(a);
                }
            }
            rest.contains(&id).then(|| rest.join(" "))
        })
        .collect()
}

// ----------------------------------------------------------------------------------------
// terminals, namespaces, freezer
// ----------------------------------------------------------------------------------------

/// Window size of the terminals the tests give the clients (`stty size` prints "33 99").
const TTY_ROWS: u16 = 33;
const TTY_COLS: u16 = 99;
/// The busybox shell's prompt as root in `/`.
const PROMPT: &str = "/ # ";

/// One step of a terminal conversation: wait until the terminal shows `.0` (in what came
/// after the previous step), then type `.1`.
type Step<'a> = (&'a str, &'a str);

/// Runs `cmd` as a person would in a terminal: a session leader whose controlling terminal,
/// stdin, stdout and stderr are the slave of a fresh pty (TTY_ROWS x TTY_COLS) that the test
/// owns. Plays `steps` on the master, then reads until the command has exited and its
/// terminal is closed or quiet. Returns everything the terminal showed and the exit status.
/// Fails the test, killing the command (the child we started, by pid), when an expected
/// text does not show up or the command does not finish within COMMAND_TIMEOUT.
fn on_terminal(cmd: &mut Command, steps: &[Step]) -> (String, std::process::ExitStatus) {
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    let size = nix::pty::Winsize {
        ws_row: TTY_ROWS,
        ws_col: TTY_COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = fs::File::from(pty.slave);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    // SAFETY: between fork and exec, only async-signal-safe calls (setsid, ioctl).
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    // The Command holds its stdio until dropped: let go of the slave here, so that the
    // master reads EIO once the command and whatever it started have closed the terminal.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());

    let master = pty.master;
    let started = Instant::now();
    let mut shown: Vec<u8> = Vec::new();
    let mut step_from = 0; // where the output after the previous step starts
    let mut steps = steps.iter();
    let mut step = steps.next();
    let mut status = None;
    let mut last_output = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        if started.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} on a terminal: {} within {COMMAND_TIMEOUT:?}; the terminal showed:\n{}",
                match step {
                    Some((expect, _)) => format!("{expect:?} did not show up"),
                    None => "did not finish".to_owned(),
                },
                text(&shown)
            );
        }
        if let Some((expect, send)) = step {
            if text(&shown[step_from..]).contains(expect) {
                let mut rest = send.as_bytes();
                while !rest.is_empty() {
                    let n = nix::unistd::write(&master, rest).unwrap();
                    rest = &rest[n..];
                }
                step_from = shown.len();
                step = steps.next();
            }
        }
        if status.is_none() {
            status = child.try_wait().unwrap();
        }
        let mut fds = [nix::poll::PollFd::new(
            master.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16)).unwrap_or(0);
        if ready > 0 {
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) | Err(nix::errno::Errno::EIO) => break,
                Ok(n) => {
                    shown.extend_from_slice(&buf[..n]);
                    last_output = Instant::now();
                }
                Err(nix::errno::Errno::EINTR) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => panic!("reading the terminal of {cmd:?}: {e}"),
            }
        } else if status.is_some() && last_output.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let shown = text(&shown);
    if let Some((expect, _)) = step {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} on a terminal ended before showing {expect:?}; it showed:\n{shown}");
    }
    let status = match status {
        Some(s) => s,
        None => loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if started.elapsed() > COMMAND_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{cmd:?} closed its terminal but did not exit; it showed:\n{shown}");
            }
            std::thread::sleep(Duration::from_millis(10));
        },
    };
    (shown, status)
}

/// The namespaces an exec must share with the container's init.
const NAMESPACES: [&str; 5] = ["pid", "uts", "ipc", "mnt", "net"];
/// A shell command printing, inside the container, the same as `namespaces_of` on the host.
const PRINT_NAMESPACES: &str = "for n in pid uts ipc mnt net; do readlink /proc/self/ns/$n; done";

/// The namespaces of `pid` as `readlink /proc/PID/ns/KIND` shows them (`pid:[4026532…]`).
fn namespaces_of(pid: i64) -> Vec<String> {
    NAMESPACES
        .iter()
        .map(|kind| {
            fs::read_link(format!("/proc/{pid}/ns/{kind}"))
                .unwrap_or_else(|e| panic!("namespace {kind} of pid {pid}: {e}"))
                .display()
                .to_string()
        })
        .collect()
}

/// pid 1 of the pause tests: appends a line to `/ticks` every 50 ms.
const TICKER: &str = "while true; do echo tick >> /ticks; sleep 0.05; done";

/// Size of `/ticks` in the container whose init is `pid` (through /proc/PID/root).
fn ticks(pid: i64) -> u64 {
    fs::metadata(format!("/proc/{pid}/root/ticks"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Waits up to 10 s for the ticker of `pid` to get past `than`; returns the new size.
fn wait_ticks_above(pid: i64, than: u64) -> u64 {
    let t = Instant::now();
    loop {
        let now = ticks(pid);
        if now > than {
            return now;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the ticker of pid {pid} made no progress in 10 s (/ticks: {now} bytes)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pause, seen from the host: the ticker of `pid` makes no progress for 600 ms.
fn assert_no_progress(pid: i64) {
    let before = ticks(pid);
    std::thread::sleep(Duration::from_millis(600));
    let after = ticks(pid);
    assert_eq!(
        before, after,
        "the ticker of pid {pid} made progress while paused"
    );
}

/// Whether cgroup `path` is frozen: `freezer.state` of the v1 freezer hierarchy where one is
/// mounted (v1 and hybrid hosts, as here), else `frozen 1` in cgroup v2's `cgroup.events`.
fn frozen(path: &str) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v1_freezer = info.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mut post = post.split(' ');
        let (fstype, opts) = (post.next()?, post.nth(1)?);
        (fstype == "cgroup" && opts.split(',').any(|o| o == "freezer"))
            .then(|| PathBuf::from(pre.split(' ').nth(4).unwrap()))
    });
    let rel = path.trim_start_matches('/');
    match v1_freezer {
        Some(mp) => {
            let f = mp.join(rel).join("freezer.state");
            let state = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            state.trim() == "FROZEN"
        }
        None => {
            let f = Path::new("/sys/fs/cgroup").join(rel).join("cgroup.events");
            let events = fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            events.lines().any(|l| l == "frozen 1")
        }
    }
}

// ----------------------------------------------------------------------------------------
// podman
// ----------------------------------------------------------------------------------------

/// A private podman (tests/support/podman-env.sh) with the busybox image, a unique cgroup
/// parent and an argv-logging `pouch-runtime` wrapper. Dropping it checks and cleans up.
struct Podman {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    env: Vec<(String, String)>,
    /// `--cgroup-parent`, absolute: `/pouch-test/podman-<pid>-<n>`.
    cgroup_parent: String,
    /// The argv-logging wrapper and its log.
    logger: PathBuf,
    argv_log: PathBuf,
    /// Ids of the containers this test ran (for the leftover checks).
    ids: Vec<String>,
    cids: usize,
}

impl Podman {
    fn new() -> Podman {
        Podman::with_archive(None)
    }

    /// Also saves the image as an oci-archive at `archive` (for containerd).
    fn with_archive(archive: Option<&Path>) -> Podman {
        require_tools(&["podman", "conmon", "bash", "findmnt", "tar"]);
        let rootfs = busybox_rootfs();
        let (dir, path) = temp_dir(&std::env::temp_dir(), "pouch-pm.");
        let mut p = Podman {
            dir: Some(dir),
            path: path.clone(),
            env: Vec::new(),
            cgroup_parent: format!("{CGROUP_TEST_ROOT}/{}", unique("podman")),
            logger: PathBuf::new(),
            argv_log: PathBuf::new(),
            ids: Vec::new(),
            cids: 0,
        };
        // From here on, a failure is cleaned up by Drop.
        let exports = ok(Command::new("bash")
            .arg(support_script("podman-env.sh"))
            .arg(&path));
        p.env = exports
            .lines()
            .filter_map(|l| {
                let (k, v) = l.strip_prefix("export ")?.split_once('=')?;
                Some((k.to_owned(), v.trim_matches('\'').to_owned()))
            })
            .collect();
        assert!(
            p.env.iter().any(|(k, _)| k == "CONTAINERS_CONF"),
            "podman-env.sh printed no CONTAINERS_CONF: {exports}"
        );
        let mut image = Command::new("bash");
        image
            .arg(support_script("podman-image.sh"))
            .arg(&path)
            .arg(rootfs)
            .arg(IMAGE);
        if let Some(a) = archive {
            image.arg(a);
        }
        ok(&mut image);
        (p.logger, p.argv_log) = argv_logger(&path.join("bin"));
        p
    }

    /// The command `podman --runtime RUNTIME ARGS...` in the private environment.
    fn command(&self, runtime: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env_remove("POUCH_RUNTIME_ROOT")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--runtime")
            .arg(runtime)
            .args(args);
        c
    }

    /// `podman --runtime RUNTIME ARGS...` in the private environment.
    fn podman(&self, runtime: &Path, args: &[&str]) -> Output {
        run(&mut self.command(runtime, args))
    }

    fn podman_ok(&self, runtime: &Path, args: &[&str]) -> String {
        let o = self.podman(runtime, args);
        assert!(
            o.status.success(),
            "podman {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// `podman run --rm --cgroup-parent=<ours> --cidfile F IMAGE ARGS...`; records the id.
    fn run_rm(&mut self, runtime: &Path, args: &[&str]) -> Output {
        self.run_rm_image(runtime, &[], IMAGE, args)
    }

    /// `podman run --rm --cgroup-parent=<ours> --cidfile F OPTIONS... IMAGE ARGS...`;
    /// records the id.
    fn run_rm_image(
        &mut self,
        runtime: &Path,
        options: &[&str],
        image: &str,
        args: &[&str],
    ) -> Output {
        self.cids += 1;
        let cidfile = self.path.join(format!("cid-{}", self.cids));
        let parent = format!("--cgroup-parent={}", self.cgroup_parent);
        let cidarg = format!("--cidfile={}", cidfile.display());
        let mut argv = vec!["run", "--rm", &parent, &cidarg];
        argv.extend_from_slice(options);
        argv.push(image);
        argv.extend_from_slice(args);
        let o = self.podman(runtime, &argv);
        if let Ok(id) = fs::read_to_string(&cidfile) {
            self.ids.push(id.trim().to_owned());
        }
        o
    }

    /// `podman run -d --cgroup-parent=<ours> IMAGE ARGS...` through the argv logger; the id.
    fn run_detached(&mut self, args: &[&str]) -> String {
        self.run_detached_with(&[], args)
    }

    /// `podman run -d --cgroup-parent=<ours> OPTIONS... IMAGE ARGS...` through the argv
    /// logger; the id.
    fn run_detached_with(&mut self, options: &[&str], args: &[&str]) -> String {
        let logger = self.logger.clone();
        self.run_detached_image(&logger, options, IMAGE, args)
    }

    /// `podman --runtime RUNTIME run -d --cgroup-parent=<ours> OPTIONS... IMAGE ARGS...`; the id.
    fn run_detached_image(
        &mut self,
        runtime: &Path,
        options: &[&str],
        image: &str,
        args: &[&str],
    ) -> String {
        let parent = format!("--cgroup-parent={}", self.cgroup_parent);
        let mut argv = vec!["run", "-d", &parent];
        argv.extend_from_slice(options);
        argv.push(image);
        argv.extend_from_slice(args);
        let id = self.podman_ok(runtime, &argv).trim().to_owned();
        assert_eq!(id.len(), 64, "podman run -d printed {id:?}, not an id");
        self.ids.push(id.clone());
        id
    }

    fn inspect(&self, id: &str, format: &str) -> String {
        self.podman_ok(&self.logger, &["inspect", "--format", format, id])
            .trim()
            .to_owned()
    }

    /// The cgroup our runtime gives a podman container (cgroupfs manager).
    fn container_cgroup(&self, id: &str) -> String {
        format!("{}/libpod-{id}", self.cgroup_parent)
    }

    /// `podman import` (no network) of a rootfs that holds only `/app/PROGRAM`, a committed
    /// program of `wasm-examples/bin`, with `ENTRYPOINT ["/app/PROGRAM"]`, as
    /// `localhost/pouch-wasm-<stem>:latest`; returns that name. The file is mode 0644, as a
    /// `.wasm` in a layer often is: dispatch reads its first bytes, not its mode.
    fn import_wasm_image(&self, program: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let stem = program.strip_suffix(".wasm").unwrap_or(program);
        let name = format!("localhost/pouch-wasm-{stem}:latest");
        let rootfs = self.path.join(format!("wasm-rootfs-{stem}"));
        let app = rootfs.join("app");
        fs::create_dir_all(&app).unwrap();
        let file = app.join(program);
        fs::copy(wasm_example(program), &file).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let tar = self.path.join(format!("wasm-rootfs-{stem}.tar"));
        ok(Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
            .arg(&tar)
            .arg("."));
        let entrypoint = format!("ENTRYPOINT [\"/app/{program}\"]");
        self.podman_ok(
            &self.logger,
            &[
                "import",
                "--quiet",
                "--change",
                &entrypoint,
                "--message",
                "pouch test wasm image",
                tar.to_str().unwrap(),
                &name,
            ],
        );
        name
    }

    /// A runtime for the wasm tests: a wrapper named `pouch-runtime` (for
    /// `runtime_supports_json`) that sets `POUCH_WASM_CACHE=<statedir>/wasm-cache` and execs
    /// the argv logger. Neither conmon (`create`) nor podman (`start`, `kill`, `delete`)
    /// passes podman's environment through to the runtime, so the variable is baked in
    /// here; the cache goes away with the state directory. Returns (wrapper, cache dir).
    fn wasm_runtime(&self) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.path.join("wasm-bin");
        let cache = self.path.join("wasm-cache");
        let wrapper = dir.join("pouch-runtime");
        let (c, l) = (
            cache.display().to_string(),
            self.logger.display().to_string(),
        );
        assert!(
            !c.contains('\'') && !l.contains('\''),
            "paths with quotes: {c} {l}"
        );
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n# pouch-runtime with a private wasm compile cache (tests/clients.rs)\n\
                 POUCH_WASM_CACHE='{c}'\nexport POUCH_WASM_CACHE\nexec '{l}' \"$@\"\n"
            ),
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        (wrapper, cache)
    }

    /// What the test left behind (checked before any cleanup), then cleanup, then what even
    /// cleanup could not remove.
    fn check_and_clean(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if !std::thread::panicking() {
            let o = self.podman(&self.logger, &["ps", "-aq"]);
            let left = text(&o.stdout);
            if !o.status.success() || !left.trim().is_empty() {
                problems.push(format!(
                    "podman ps -aq: {left:?} {}",
                    text(&o.stderr).trim()
                ));
            }
            for id in &self.ids {
                let state = Path::new(DEFAULT_RUNTIME_ROOT).join(id);
                if state.exists() {
                    problems.push(format!("runtime state left: {}", state.display()));
                }
                let cg = cgroup_left(&self.container_cgroup(id));
                if !cg.is_empty() {
                    problems.push(format!("container cgroup left: {cg:?}"));
                }
            }
            let procs = wait_processes_gone(&self.path);
            if !procs.is_empty() {
                problems.push(format!("processes left: {procs:?}"));
            }
            // containers/storage's overlay driver bind-mounts its home (graph/overlay) onto
            // itself; concurrent podman processes (the command and conmon's `podman container
            // cleanup`) sometimes leave that one behind. Any other mount, e.g. a container's
            // rootfs (graph/overlay/<layer>/merged), is a leftover.
            let driver_home = self.path.join("graph/overlay");
            let mounts: Vec<String> = mounts_under(&self.path)
                .into_iter()
                .filter(|m| Path::new(m) != driver_home)
                .collect();
            if !mounts.is_empty() {
                problems.push(format!("mounts left: {mounts:?}"));
            }
        }
        // podman rm -af with our runtime, unmount, remove the cgroup parent (podman leaves
        // `<parent>/conmon` behind with cgroupfs, whatever the runtime).
        let o = run(Command::new("bash")
            .arg(support_script("podman-cleanup.sh"))
            .env("POUCH_PODMAN_RUNTIME", runtime_bin())
            .arg(&self.path)
            .arg(&self.cgroup_parent));
        if !o.status.success() {
            problems.push(format!("podman-cleanup.sh: {}", text(&o.stderr).trim()));
        }
        problems.extend(final_checks(
            &self.path,
            std::slice::from_ref(&self.cgroup_parent),
        ));
        if mounts_under(&self.path).is_empty() {
            drop(self.dir.take());
        } else if let Some(d) = self.dir.take() {
            // Never recurse into a mount: keep the directory for a human to look at.
            problems.push(format!("kept {} (mounts inside)", d.keep().display()));
        }
        problems
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        report_cleanup("podman", self.check_and_clean());
    }
}

/// A committed program of `wasm-examples/bin` (no wasm toolchain needed).
fn wasm_example(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("wasm-examples/bin")
        .join(name);
    assert!(
        p.is_file(),
        "{} is missing: the example programs are committed (see wasm-examples/README.md)",
        p.display()
    );
    p
}

/// The compiled entries (`*.cwasm`) in a wasm compile cache directory.
fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    fs::read_dir(cache)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
                .collect()
        })
        .unwrap_or_default()
}

/// After cleanup: no cgroup, process or mount may remain. Processes still naming the test's
/// directory are ours (started for this test): they are killed by pid, and reported.
fn final_checks(dir: &Path, cgroups: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let procs = wait_processes_gone(dir);
    if !procs.is_empty() {
        for (pid, _) in &procs {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        problems.push(format!("processes left after cleanup (killed): {procs:?}"));
    }
    if !cgroups.is_empty() {
        let o = run(Command::new("bash")
            .arg(support_script("cgroup-cleanup.sh"))
            .arg("--kill")
            .args(cgroups));
        if !o.status.success() {
            problems.push(format!("cgroup-cleanup.sh: {}", text(&o.stderr).trim()));
        }
    }
    for cg in cgroups {
        let left = cgroup_left(cg);
        if !left.is_empty() {
            problems.push(format!("cgroups left after cleanup: {left:?}"));
        }
    }
    let mounts = mounts_under(dir);
    if !mounts.is_empty() {
        problems.push(format!("mounts left after cleanup: {mounts:?}"));
    }
    problems
}

#[test]
fn podman_run_rm_echo_hi() {
    let mut p = Podman::new();
    // Our binary itself, as a user would give it.
    let o = p.run_rm(Path::new(runtime_bin()), &["echo", "hi"]);
    assert!(
        o.status.success(),
        "podman run failed ({}): {}",
        o.status,
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), "hi\n", "stderr: {}", text(&o.stderr));
    assert_eq!(p.ids.len(), 1, "podman wrote no --cidfile");
}

#[test]
fn podman_passes_exit_codes_and_runtime_errors_through() {
    let mut p = Podman::new();
    let logger = p.logger.clone();
    let o = p.run_rm(&logger, &["sh", "-c", "echo out; exit 3"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "exit status of the container; stderr: {}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), "out\n");
    let id = p.ids[0].clone();
    let calls = logged_calls(&p.argv_log, &id);
    assert!(
        calls.len() == 3
            && calls[0].starts_with("create --bundle ")
            && calls[1] == format!("start {id}")
            && calls[2] == format!("delete --force {id}"),
        "podman's calls: {calls:#?}"
    );
    // podman passes --log-format=json only to a runtime named in runtime_supports_json.
    let log = fs::read_to_string(&p.argv_log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(" --log-format=json --log ") && l.contains(" create ")),
        "{log}"
    );

    // A failing create: podman reads our error from --log (json) and maps "no such file or
    // directory" to 127, as for runc; the failed container is deleted (--force).
    let o = p.run_rm(&logger, &["/no/such/program"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(127), "stderr: {err}");
    assert!(
        err.contains("/no/such/program") && err.contains("no such file or directory"),
        "podman should show our error: {err}"
    );
}

#[test]
fn podman_stop_and_rm_force_of_detached_containers() {
    let mut p = Podman::new();

    // A pid 1 that handles SIGTERM: `podman stop` sends 15, the container exits with 42.
    let id = p.run_detached(&[
        "sh",
        "-c",
        "trap 'exit 42' TERM; touch /ready; while true; do sleep 0.1; done",
    ]);
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "running");
    let pid: i64 = p.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0);
    assert_in_cgroup(pid, &p.container_cgroup(&id));
    wait_for_file(&Path::new(&format!("/proc/{pid}/root")).join("ready"));
    p.podman_ok(&p.logger, &["stop", "-t", "20", &id]);
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "42");
    let calls = logged_calls(&p.argv_log, &id);
    assert_eq!(
        calls.get(1..).unwrap_or_default(),
        [
            format!("start {id}"),
            format!("kill {id} 15"),
            format!("delete --force {id}"),
        ],
        "podman's calls: {calls:#?}"
    );
    assert!(process_gone(pid));
    assert!(cgroup_left(&p.container_cgroup(&id)).is_empty());
    p.podman_ok(&p.logger, &["rm", &id]);

    // A pid 1 without a SIGTERM handler ignores it: stop sends 15, then 9 after the timeout.
    let id = p.run_detached(&["sleep", "1000"]);
    let pid: i64 = p.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    p.podman_ok(&p.logger, &["stop", "-t", "1", &id]);
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "137");
    let calls = logged_calls(&p.argv_log, &id);
    assert_eq!(
        calls.get(1..).unwrap_or_default(),
        [
            format!("start {id}"),
            format!("kill {id} 15"),
            format!("kill {id} 9"),
            format!("delete --force {id}"),
        ],
        "podman's calls: {calls:#?}"
    );
    assert!(process_gone(pid));
    p.podman_ok(&p.logger, &["rm", &id]);

    // rm -f of a running container.
    let id = p.run_detached(&["sleep", "1000"]);
    let pid: i64 = p.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    p.podman_ok(&p.logger, &["rm", "-f", "-t", "0", &id]);
    let calls = logged_calls(&p.argv_log, &id);
    assert_eq!(
        calls.get(1..).unwrap_or_default(),
        [
            format!("start {id}"),
            format!("kill {id} 9"),
            format!("delete --force {id}"),
        ],
        "podman's calls: {calls:#?}"
    );
    assert!(process_gone(pid));
    let o = p.podman(&p.logger, &["inspect", &id]);
    assert!(!o.status.success(), "{id} still exists after rm -f");
}

#[test]
fn podman_run_it_answers_typed_input() {
    let mut p = Podman::new();
    let parent = format!("--cgroup-parent={}", p.cgroup_parent);
    let cidfile = p.path.join("cid-it");
    let cidarg = format!("--cidfile={}", cidfile.display());
    let (shown, status) = on_terminal(
        &mut p.command(
            &p.logger,
            &["run", "-it", "--rm", &parent, &cidarg, IMAGE, "sh"],
        ),
        &[
            (PROMPT, "stty size; tty; echo typed-$((6*7))\n"),
            ("typed-42", "exit 5\n"),
        ],
    );
    if let Ok(id) = fs::read_to_string(&cidfile) {
        p.ids.push(id.trim().to_owned());
    }
    assert_eq!(
        status.code(),
        Some(5),
        "podman run -it returns the shell's exit code; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains(&format!("{TTY_ROWS} {TTY_COLS}")),
        "the container's terminal has the size of ours: {shown}"
    );
    assert!(shown.contains("/dev/pts/0"), "{shown}");
    assert_eq!(p.ids.len(), 1, "podman wrote no --cidfile");
    let id = p.ids[0].clone();
    let calls = logged_calls(&p.argv_log, &id);
    assert!(
        calls.len() == 3
            && calls[0].starts_with("create --bundle ")
            && calls[0].contains(" --console-socket ")
            && calls[1] == format!("start {id}")
            && calls[2] == format!("delete --force {id}"),
        "podman's calls: {calls:#?}"
    );
}

#[test]
fn podman_exec_joins_the_container() {
    let mut p = Podman::new();
    let id = p.run_detached_with(&["--hostname", "exec-box"], &["sleep", "1000"]);
    let pid: i64 = p.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    let cg = p.container_cgroup(&id);

    // Without a terminal: stdout and stderr apart, the exit code passes through.
    let script = format!(
        "hostname; cat /proc/1/comm; {PRINT_NAMESPACES}; cat /proc/self/cgroup; \
         echo to-stderr >&2; exit 7"
    );
    let o = p.podman(&p.logger, &["exec", &id, "sh", "-c", &script]);
    let out = text(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(7),
        "podman exec returns the exit code; stdout: {out}\nstderr: {}",
        text(&o.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"exec-box"),
        "the container's hostname: {out}"
    );
    assert_eq!(
        lines.get(1),
        Some(&"sleep"),
        "pid 1 is the container's init: {out}"
    );
    for ns in namespaces_of(pid) {
        assert!(
            lines.contains(&ns.as_str()),
            "exec is not in {ns} of the init: {out}"
        );
    }
    assert!(
        lines.iter().any(|l| l.ends_with(&format!(":{cg}"))),
        "exec is not in the container's cgroup {cg}: {out}"
    );
    assert!(text(&o.stderr).contains("to-stderr"), "{}", text(&o.stderr));

    // --user, --workdir and --env reach the process (podman writes them to --process).
    let o = p.podman(
        &p.logger,
        &[
            "exec",
            "-u",
            "1000:1000",
            "-w",
            "/tmp",
            "-e",
            "POUCH_VAR=seen",
            &id,
            "sh",
            "-c",
            "id -u; id -g; pwd; echo $POUCH_VAR",
        ],
    );
    assert_eq!(
        text(&o.stdout),
        "1000\n1000\n/tmp\nseen\n",
        "stderr: {}",
        text(&o.stderr)
    );

    // Our errors reach podman, which maps them to 127 and 126 as for runc.
    let o = p.podman(&p.logger, &["exec", &id, "/no/such/program"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(127), "stderr: {err}");
    assert!(
        err.contains("/no/such/program") && err.contains("no such file or directory"),
        "podman should show our error: {err}"
    );
    let o = p.podman(&p.logger, &["exec", &id, "/etc/passwd"]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(126), "stderr: {err}");
    assert!(err.contains("permission denied"), "{err}");

    // With a terminal.
    let (shown, status) = on_terminal(
        &mut p.command(&p.logger, &["exec", "-it", &id, "sh"]),
        &[
            (PROMPT, "stty size; tty; hostname; echo typed-$((6*7))\n"),
            ("typed-42", "exit 6\n"),
        ],
    );
    assert_eq!(
        status.code(),
        Some(6),
        "podman exec -it returns the shell's exit code; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains(&format!("{TTY_ROWS} {TTY_COLS}"))
            && shown.contains("/dev/pts/")
            && shown.contains("exec-box"),
        "{shown}"
    );

    let calls = logged_calls(&p.argv_log, &id);
    let execs: Vec<&String> = calls.iter().filter(|c| c.starts_with("exec ")).collect();
    // Four without a terminal, then one with.
    let with_tty: Vec<bool> = execs.iter().map(|c| c.contains("--tty")).collect();
    assert!(
        with_tty == [false, false, false, false, true]
            && execs.iter().all(|c| c.contains(" --process ")
                && c.contains(" --detach")
                && c.ends_with(&format!(" {id}")))
            && execs[4].contains(" --tty --console-socket "),
        "podman's calls: {calls:#?}"
    );
    p.podman_ok(&p.logger, &["rm", "-f", "-t", "0", &id]);
    assert!(process_gone(pid));
}

#[test]
fn podman_pause_and_unpause() {
    let mut p = Podman::new();
    let id = p.run_detached(&["sh", "-c", TICKER]);
    let pid: i64 = p.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    let cg = p.container_cgroup(&id);
    wait_ticks_above(pid, 0);

    p.podman_ok(&p.logger, &["pause", &id]);
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "paused");
    assert!(frozen(&cg), "cgroup {cg} is not frozen");
    assert_no_progress(pid);

    p.podman_ok(&p.logger, &["unpause", &id]);
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "running");
    assert!(!frozen(&cg), "cgroup {cg} is still frozen");
    wait_ticks_above(pid, ticks(pid));

    // A paused container can be removed: podman resumes it, then kills it.
    p.podman_ok(&p.logger, &["pause", &id]);
    p.podman_ok(&p.logger, &["rm", "-f", "-t", "0", &id]);
    assert!(process_gone(pid));
    let calls = logged_calls(&p.argv_log, &id);
    assert_eq!(
        calls.get(1..).unwrap_or_default(),
        [
            format!("start {id}"),
            format!("pause {id}"),
            format!("resume {id}"),
            format!("pause {id}"),
            format!("resume {id}"),
            format!("kill {id} 9"),
            format!("delete --force {id}"),
        ],
        "podman's calls: {calls:#?}"
    );
}

// ----------------------------------------------------------------------------------------
// podman with a WebAssembly image
// ----------------------------------------------------------------------------------------

/// What `hello.wasm a b --exit 3` prints on stdout with `POUCH_FROM=podman` in its env.
const HELLO_OUT: &str = "hello from wasm\narg[0]=/app/hello.wasm\narg[1]=a\narg[2]=b\n\
                         arg[3]=--exit\narg[4]=3\nenv POUCH_FROM=podman\n";

/// Runs the hello image with `OPTIONS` through `runtime` and checks what the guest printed,
/// its exit code and podman's calls. Returns the container's id.
fn run_wasm_hello(p: &mut Podman, runtime: &Path, image: &str, options: &[&str]) -> String {
    let mut opts = vec!["-e", "POUCH_FROM=podman"];
    opts.extend_from_slice(options);
    let o = p.run_rm_image(runtime, &opts, image, &["a", "b", "--exit", "3"]);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert_eq!(
        o.status.code(),
        Some(3),
        "podman run {options:?} {image} a b --exit 3 returns the guest's exit code\n\
         stdout: {out}\nstderr: {err}"
    );
    assert_eq!(out, HELLO_OUT, "the guest's stdout (stderr: {err})");
    assert_eq!(
        err, "to stderr\n",
        "the guest's stderr, apart from its stdout"
    );
    let id = p.ids.last().cloned().expect("podman wrote no --cidfile");
    let calls = logged_calls(&p.argv_log, &id);
    assert!(
        calls.len() == 3
            && calls[0].starts_with("create --bundle ")
            && calls[1] == format!("start {id}")
            && calls[2] == format!("delete --force {id}"),
        "podman's calls: {calls:#?}"
    );
    id
}

/// (inode, mtime) of the only entry of a compile cache.
fn only_cache_entry(cache: &Path) -> (u64, std::time::SystemTime) {
    use std::os::unix::fs::MetadataExt;
    let entries = cache_entries(cache);
    assert_eq!(
        entries.len(),
        1,
        "one compiled module in {} (POUCH_WASM_CACHE of the wrapper): {entries:?}",
        cache.display()
    );
    let m = fs::metadata(&entries[0]).unwrap();
    (m.ino(), m.modified().unwrap())
}

#[test]
fn podman_runs_a_wasm_image_with_no_flag() {
    let mut p = Podman::new();
    let image = p.import_wasm_image("hello.wasm");
    let (runtime, cache) = p.wasm_runtime();
    // No annotation and no flag: podman drops image annotations, so our runtime decides by
    // the first bytes of /app/hello.wasm (\0asm).
    run_wasm_hello(&mut p, &runtime, &image, &[]);
    // `create` compiled it into the cache the wrapper names.
    let entry = only_cache_entry(&cache);
    // A second container of the same image is a cache hit: the entry is not rewritten.
    run_wasm_hello(&mut p, &runtime, &image, &[]);
    assert_eq!(
        only_cache_entry(&cache),
        entry,
        "the second run rewrote the cache entry instead of loading it"
    );
}

#[test]
fn podman_runs_a_wasm_image_with_the_handler_annotation() {
    let mut p = Podman::new();
    let image = p.import_wasm_image("hello.wasm");
    let (runtime, cache) = p.wasm_runtime();
    run_wasm_hello(
        &mut p,
        &runtime,
        &image,
        &["--annotation", "run.oci.handler=wasm"],
    );
    only_cache_entry(&cache);
}

#[test]
fn podman_wasm_handler_on_a_native_image_fails_clearly() {
    let mut p = Podman::new();
    let (runtime, cache) = p.wasm_runtime();
    let o = p.run_rm_image(
        &runtime,
        &["--annotation", "run.oci.handler=wasm"],
        IMAGE,
        &["echo", "hi"],
    );
    let err = text(&o.stderr);
    // Podman's exit code for an OCI runtime error it has no special case for.
    assert_eq!(
        o.status.code(),
        Some(126),
        "stdout: {}\nstderr: {err}",
        text(&o.stdout)
    );
    assert_eq!(text(&o.stdout), "", "nothing may run");
    assert!(
        err.contains(
            "run.oci.handler=wasm: process.args[0] echo is not a wasm binary: \
             /bin/echo starts with 7f 45 4c 46 (an ELF executable)"
        ),
        "podman should show our error: {err}"
    );
    // The create failed (podman read our error from --log) and was cleaned up; nothing was
    // compiled.
    let id = p.ids.last().cloned().expect("podman wrote no --cidfile");
    let calls = logged_calls(&p.argv_log, &id);
    assert!(
        calls.len() == 2
            && calls[0].starts_with("create --bundle ")
            && calls[1] == format!("delete --force {id}"),
        "podman's calls: {calls:#?}"
    );
    assert!(cache_entries(&cache).is_empty(), "{}", cache.display());
}

#[test]
fn podman_stops_a_detached_wasm_container() {
    let mut p = Podman::new();
    let image = p.import_wasm_image("sleep.wasm");
    let (runtime, _cache) = p.wasm_runtime();
    // sleep.wasm prints "sleeping 1000", then waits in a WASI host call.
    let id = p.run_detached_image(&runtime, &[], &image, &[]);
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "running");
    let pid: i64 = p.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0);
    assert_in_cgroup(pid, &p.container_cgroup(&id));
    let t = Instant::now();
    loop {
        let logs = p.podman_ok(&p.logger, &["logs", &id]);
        if logs.contains("sleeping 1000") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the guest did not print \"sleeping 1000\" within 10 s: {logs:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p.podman_ok(&runtime, &["stop", "-t", "1", &id]);
    // SIGTERM ends the guest with 128+15; 137 if podman had to follow up with SIGKILL.
    let code = p.inspect(&id, "{{.State.ExitCode}}");
    eprintln!("podman stop -t 1 of the sleeping guest: exit code {code}");
    let calls = logged_calls(&p.argv_log, &id);
    let expected: Vec<String> = match code.as_str() {
        "143" => vec![
            format!("start {id}"),
            format!("kill {id} 15"),
            format!("delete --force {id}"),
        ],
        "137" => vec![
            format!("start {id}"),
            format!("kill {id} 15"),
            format!("kill {id} 9"),
            format!("delete --force {id}"),
        ],
        other => panic!("podman stop -t 1: exit code {other}, not 143 or 137; calls: {calls:#?}"),
    };
    assert_eq!(
        calls.get(1..).unwrap_or_default(),
        expected,
        "podman's calls (exit code {code}): {calls:#?}"
    );
    assert!(process_gone(pid), "the guest {pid} survived podman stop");
    assert!(cgroup_left(&p.container_cgroup(&id)).is_empty());
    p.podman_ok(&runtime, &["rm", &id]);
}

// ----------------------------------------------------------------------------------------
// containerd + containerd-shim-runc-v2
// ----------------------------------------------------------------------------------------

/// A private containerd (tests/support/containerd.sh) with the busybox image imported, an
/// argv-logging `pouch-runtime` wrapper and a private runtime root. Dropping it checks and
/// cleans up.
struct Containerd {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    address: String,
    /// `--runc-root`: our runtime's state is under `<runc_root>/<namespace>/<id>`.
    runc_root: PathBuf,
    logger: PathBuf,
    argv_log: PathBuf,
    /// Every container's cgroup, `/pouch-test/ctr-<pid>-<n>`.
    cgroups: Vec<String>,
}

impl Containerd {
    fn new() -> Containerd {
        require_tools(&["containerd", "ctr", "containerd-shim-runc-v2", "bash"]);
        // Short (unix socket paths are limited to 107 bytes), so /tmp whatever TMPDIR says.
        let (dir, path) = temp_dir(Path::new("/tmp"), "pouch-cd.");
        let mut c = Containerd {
            dir: Some(dir),
            path: path.clone(),
            address: String::new(),
            runc_root: path.join("runc"),
            logger: PathBuf::new(),
            argv_log: PathBuf::new(),
            cgroups: Vec::new(),
        };
        // The image, as an oci-archive saved by a private podman (cleaned up right away).
        let archive = path.join("busybox-oci.tar");
        drop(Podman::with_archive(Some(&archive)));
        c.address = ok(Command::new("bash")
            .arg(support_script("containerd.sh"))
            .arg("start")
            .arg(&path))
        .trim()
        .to_owned();
        assert!(
            c.address.ends_with(".sock"),
            "containerd.sh printed {:?}",
            c.address
        );
        c.ctr_ok(&["images", "import", archive.to_str().unwrap()]);
        (c.logger, c.argv_log) = argv_logger(&path.join("bin"));
        c
    }

    /// The command `ctr --address <ours> --namespace pouch-test ARGS...`.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(CTR_NAMESPACE)
            .args(args);
        c
    }

    fn ctr(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(
            o.status.success(),
            "ctr {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        text(&o.stdout)
    }

    /// A fresh container id and its cgroup.
    fn new_container(&mut self) -> (String, String) {
        let id = unique("ctr");
        let cg = format!("{CGROUP_TEST_ROOT}/{id}");
        self.cgroups.push(cg.clone());
        (id, cg)
    }

    /// `ctr run [--rm|-d] --runc-binary RUNTIME --runc-root <ours> --cgroup CG IMAGE ID ARGS...`
    fn run(&self, mode: &str, runtime: &Path, id: &str, cgroup: &str, args: &[&str]) -> Output {
        let mut argv = vec![
            "run",
            mode,
            "--runc-binary",
            runtime.to_str().unwrap(),
            "--runc-root",
            self.runc_root.to_str().unwrap(),
            "--cgroup",
            cgroup,
            IMAGE,
            id,
        ];
        argv.extend_from_slice(args);
        self.ctr(&argv)
    }

    /// The pid and status `ctr task ls` shows for `id` (the shim's view; no runtime call).
    fn task(&self, id: &str) -> Option<(i64, String)> {
        let out = self.ctr_ok(&["task", "ls"]);
        out.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| (f[1].parse().unwrap(), f[2].to_owned()))
        })
    }

    fn wait_task_status(&self, id: &str, want: &str) {
        let t = Instant::now();
        loop {
            let task = self.task(id);
            if task.as_ref().is_some_and(|(_, s)| s == want) {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "task {id} is not {want} after 10 s: {task:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Our runtime's state directories under --runc-root.
    fn runtime_state_left(&self) -> Vec<PathBuf> {
        fs::read_dir(self.runc_root.join(CTR_NAMESPACE))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    fn check_and_clean(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if !std::thread::panicking() && !self.address.is_empty() {
            for what in ["containers", "tasks"] {
                let o = self.ctr(&[what, "ls", "-q"]);
                let left = text(&o.stdout);
                if !o.status.success() || !left.trim().is_empty() {
                    problems.push(format!(
                        "ctr {what} ls: {left:?} {}",
                        text(&o.stderr).trim()
                    ));
                }
            }
            let state = self.runtime_state_left();
            if !state.is_empty() {
                problems.push(format!("runtime state left: {state:?}"));
            }
            for cg in &self.cgroups {
                let left = cgroup_left(cg);
                if !left.is_empty() {
                    problems.push(format!("container cgroup left: {left:?}"));
                }
            }
            let mounts = mounts_under(&self.path);
            if !mounts.is_empty() {
                problems.push(format!("mounts left: {mounts:?}"));
            }
        }
        // Drains tasks and containers, ends containerd by pid and its shims, unmounts.
        let o = run(Command::new("bash")
            .arg(support_script("containerd.sh"))
            .arg("stop")
            .arg(&self.path));
        if !o.status.success() {
            problems.push(format!("containerd.sh stop: {}", text(&o.stderr).trim()));
        }
        problems.extend(final_checks(&self.path, &self.cgroups));
        if mounts_under(&self.path).is_empty() {
            drop(self.dir.take());
        } else if let Some(d) = self.dir.take() {
            problems.push(format!("kept {} (mounts inside)", d.keep().display()));
        }
        problems
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        report_cleanup("containerd", self.check_and_clean());
    }
}

#[test]
fn containerd_run_rm_echo_hi() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    // Our binary itself, as a user would give it.
    let o = c.run("--rm", Path::new(runtime_bin()), &id, &cg, &["echo", "hi"]);
    assert!(
        o.status.success(),
        "ctr run failed ({}): {}",
        o.status,
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), "hi\n", "stderr: {}", text(&o.stderr));
}

#[test]
fn containerd_passes_exit_codes_and_runtime_errors_through() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let o = c.run(
        "--rm",
        &c.logger,
        &id,
        &cg,
        &["sh", "-c", "echo out; exit 3"],
    );
    assert_eq!(
        o.status.code(),
        Some(3),
        "ctr run returns the task's exit status; stderr: {}",
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), "out\n");
    let calls = logged_calls(&c.argv_log, &id);
    assert!(
        calls.len() == 4
            && calls[0].starts_with("create --bundle ")
            && calls[1] == format!("start {id}")
            && calls[2] == format!("delete {id}")
            && calls[3] == format!("delete --force {id}"),
        "the shim's calls: {calls:#?}"
    );

    // A failing create: the shim reads our error from --log (json) and ctr shows it.
    let (id, cg) = c.new_container();
    let o = c.run("--rm", &c.logger, &id, &cg, &["/no/such/program"]);
    let err = text(&o.stderr);
    assert!(
        !o.status.success(),
        "ctr run of a missing program succeeded"
    );
    assert!(
        err.contains("OCI runtime create failed")
            && err.contains("/no/such/program")
            && err.contains("no such file or directory"),
        "ctr should show our error: {err}"
    );
}

#[test]
fn containerd_task_kill_and_delete() {
    let mut c = Containerd::new();

    // SIGKILL to a running task.
    let (id, cg) = c.new_container();
    let o = c.run("-d", &c.logger, &id, &cg, &["sleep", "1000"]);
    assert!(o.status.success(), "ctr run -d: {}", text(&o.stderr));
    c.wait_task_status(&id, "RUNNING");
    let (pid, _) = c.task(&id).unwrap();
    assert_in_cgroup(pid, &cg);
    c.ctr_ok(&["task", "kill", "-s", "KILL", &id]);
    c.wait_task_status(&id, "STOPPED");
    assert!(process_gone(pid));
    let o = c.ctr(&["task", "delete", &id]);
    assert!(o.status.success(), "ctr task delete: {}", text(&o.stderr));
    // ctr 1.6 reports a non-zero exit status of the deleted task as a warning.
    assert!(
        text(&o.stderr).contains("exit code 137"),
        "128 + SIGKILL: {}",
        text(&o.stderr)
    );
    c.ctr_ok(&["containers", "rm", &id]);
    let calls = logged_calls(&c.argv_log, &id);
    assert_eq!(
        calls.get(1..).unwrap_or_default(),
        [
            format!("start {id}"),
            format!("kill {id} 9"),
            format!("delete {id}"),
            format!("delete --force {id}"),
        ],
        "the shim's calls: {calls:#?}"
    );
    assert!(cgroup_left(&cg).is_empty(), "cgroup {cg} left");

    // The default signal (SIGTERM) reaches a pid 1 that handles it.
    let (id, cg) = c.new_container();
    let o = c.run(
        "-d",
        &c.logger,
        &id,
        &cg,
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; touch /ready; while true; do sleep 0.1; done",
        ],
    );
    assert!(o.status.success(), "ctr run -d: {}", text(&o.stderr));
    c.wait_task_status(&id, "RUNNING");
    let (pid, _) = c.task(&id).unwrap();
    wait_for_file(&Path::new(&format!("/proc/{pid}/root")).join("ready"));
    c.ctr_ok(&["task", "kill", &id]);
    c.wait_task_status(&id, "STOPPED");
    let o = c.ctr(&["task", "delete", &id]);
    assert!(o.status.success(), "ctr task delete: {}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("exit code 42"),
        "{}",
        text(&o.stderr)
    );
    c.ctr_ok(&["containers", "rm", &id]);
}

#[test]
fn containerd_run_t_answers_typed_input() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let (shown, status) = on_terminal(
        &mut c.command(&[
            "run",
            "-t",
            "--rm",
            "--runc-binary",
            c.logger.to_str().unwrap(),
            "--runc-root",
            c.runc_root.to_str().unwrap(),
            "--cgroup",
            &cg,
            IMAGE,
            &id,
            "sh",
        ]),
        &[
            (PROMPT, "stty size; tty; echo typed-$((6*7))\n"),
            ("typed-42", "exit 5\n"),
        ],
    );
    assert_eq!(
        status.code(),
        Some(5),
        "ctr run -t returns the shell's exit code; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains(&format!("{TTY_ROWS} {TTY_COLS}")),
        "the container's terminal has the size of ours: {shown}"
    );
    assert!(shown.contains("/dev/pts/0"), "{shown}");
    let calls = logged_calls(&c.argv_log, &id);
    assert!(
        calls.len() == 4
            && calls[0].starts_with("create --bundle ")
            && calls[0].contains(" --console-socket ")
            && calls[1] == format!("start {id}")
            && calls[2] == format!("delete {id}")
            && calls[3] == format!("delete --force {id}"),
        "the shim's calls: {calls:#?}"
    );
}

#[test]
fn containerd_task_exec_joins_the_container() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let o = c.run("-d", &c.logger, &id, &cg, &["sleep", "1000"]);
    assert!(o.status.success(), "ctr run -d: {}", text(&o.stderr));
    c.wait_task_status(&id, "RUNNING");
    let (pid, _) = c.task(&id).unwrap();

    // Without a terminal: stdout and stderr apart, the exit code passes through; --user and
    // --cwd reach the process.
    let script = format!(
        "cat /proc/1/comm; {PRINT_NAMESPACES}; cat /proc/self/cgroup; id -u; pwd; \
         echo to-stderr >&2; exit 7"
    );
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "--user",
        "1000",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        &script,
    ]);
    let out = text(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(7),
        "ctr task exec returns the exit code; stdout: {out}\nstderr: {}",
        text(&o.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"sleep"),
        "pid 1 is the container's init: {out}"
    );
    for ns in namespaces_of(pid) {
        assert!(
            lines.contains(&ns.as_str()),
            "exec is not in {ns} of the init: {out}"
        );
    }
    assert!(
        lines.iter().any(|l| l.ends_with(&format!(":{cg}"))),
        "exec is not in the container's cgroup {cg}: {out}"
    );
    assert!(
        lines.ends_with(&["1000", "/tmp"]),
        "--user 1000 --cwd /tmp: {out}"
    );
    assert!(text(&o.stderr).contains("to-stderr"), "{}", text(&o.stderr));

    // Our error reaches ctr; the container keeps running.
    let o = c.ctr(&["task", "exec", "--exec-id", "e0", &id, "/no/such/program"]);
    let err = text(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("OCI runtime exec failed")
            && err.contains("/no/such/program")
            && err.contains("no such file or directory"),
        "ctr should show our error ({}): {err}",
        o.status
    );
    assert_eq!(c.task(&id), Some((pid, "RUNNING".to_owned())));

    // With a terminal.
    let (shown, status) = on_terminal(
        &mut c.command(&["task", "exec", "-t", "--exec-id", "e2", &id, "sh"]),
        &[
            (PROMPT, "stty size; tty; echo typed-$((6*7))\n"),
            ("typed-42", "exit 6\n"),
        ],
    );
    assert_eq!(
        status.code(),
        Some(6),
        "ctr task exec -t returns the shell's exit code; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains(&format!("{TTY_ROWS} {TTY_COLS}")) && shown.contains("/dev/pts/"),
        "{shown}"
    );

    // A detached exec; `ctr task ps` (our `ps --format json`) lists it with the init. A
    // detached ctr never removes its stdio fifos (default /run/containerd/fifo, whatever the
    // runtime): keep them in the test's directory.
    let fifo_dir = c.path.join("fifo");
    c.ctr_ok(&[
        "task",
        "exec",
        "-d",
        "--fifo-dir",
        fifo_dir.to_str().unwrap(),
        "--exec-id",
        "e3",
        &id,
        "sleep",
        "1001",
    ]);
    let t = Instant::now();
    let listed = loop {
        let ps = c.ctr_ok(&["task", "ps", &id]);
        let pids: Vec<i64> = ps
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        if pids.len() == 2 || t.elapsed() > Duration::from_secs(10) {
            break pids;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        listed.len() == 2 && listed.contains(&pid),
        "ctr task ps should list the init {pid} and the exec: {listed:?}"
    );
    for p in &listed {
        assert_in_cgroup(*p, &cg);
    }

    c.ctr_ok(&["task", "kill", "-s", "KILL", &id]);
    c.wait_task_status(&id, "STOPPED");
    for p in &listed {
        assert!(process_gone(*p), "pid {p} survived its container");
    }
    c.ctr_ok(&["task", "delete", &id]);
    c.ctr_ok(&["containers", "rm", &id]);
    let calls = logged_calls(&c.argv_log, &id);
    let execs: Vec<&String> = calls.iter().filter(|c| c.starts_with("exec ")).collect();
    // e1, e0 (failed), e2 (-t), e3 (-d).
    let with_tty: Vec<bool> = execs
        .iter()
        .map(|c| c.contains(" --console-socket "))
        .collect();
    assert!(
        with_tty == [false, false, true, false]
            && execs.iter().all(|c| c.starts_with("exec --process ")
                && c.contains(" --detach --pid-file ")
                && c.ends_with(&format!(" {id}")))
            && calls.contains(&format!("ps --format json {id}")),
        "the shim's calls: {calls:#?}"
    );
}

#[test]
fn containerd_task_pause_resume_and_metrics() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let o = c.run("-d", &c.logger, &id, &cg, &["sh", "-c", TICKER]);
    assert!(o.status.success(), "ctr run -d: {}", text(&o.stderr));
    c.wait_task_status(&id, "RUNNING");
    let (pid, _) = c.task(&id).unwrap();
    wait_ticks_above(pid, 0);

    c.ctr_ok(&["task", "pause", &id]);
    c.wait_task_status(&id, "PAUSED");
    assert!(frozen(&cg), "cgroup {cg} is not frozen");
    assert_no_progress(pid);

    c.ctr_ok(&["task", "resume", &id]);
    c.wait_task_status(&id, "RUNNING");
    assert!(!frozen(&cg), "cgroup {cg} is still frozen");
    wait_ticks_above(pid, ticks(pid));

    // The shim reads the metrics from the cgroup of the init itself.
    let json = c.ctr_ok(&["task", "metrics", "--format", "json", &id]);
    let m: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("ctr task metrics --format json: {e}: {json}"));
    let num = |path: &str| m.pointer(path).and_then(|v| v.as_u64()).unwrap_or(0);
    assert!(
        num("/memory/usage/usage") > 0 && num("/pids/current") >= 2 && num("/cpu/usage/total") > 0,
        "memory, pids (sh and sleep) and cpu of the task: {json}"
    );
    let table = c.ctr_ok(&["task", "metrics", &id]);
    for metric in ["memory.usage_in_bytes", "pids.current", "cpuacct.usage"] {
        let value = table
            .lines()
            .find_map(|l| l.strip_prefix(metric)?.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok());
        assert!(value.is_some_and(|v| v > 0), "{metric} in: {table}");
    }

    c.ctr_ok(&["task", "kill", "-s", "KILL", &id]);
    c.wait_task_status(&id, "STOPPED");
    assert!(process_gone(pid));
    c.ctr_ok(&["task", "delete", &id]);
    c.ctr_ok(&["containers", "rm", &id]);
    let calls = logged_calls(&c.argv_log, &id);
    assert_eq!(
        calls.get(1..).unwrap_or_default(),
        [
            format!("start {id}"),
            format!("pause {id}"),
            format!("resume {id}"),
            format!("kill {id} 9"),
            format!("delete {id}"),
            format!("delete --force {id}"),
        ],
        "the shim's calls: {calls:#?}"
    );
}

/// After a test: what its guard found left behind fails the test, or, when the test failed
/// already, is printed next to that failure.
fn report_cleanup(kind: &str, problems: Vec<String>) {
    if std::thread::panicking() {
        if !problems.is_empty() {
            eprintln!(
                "{kind} cleanup after the failure:\n  {}",
                problems.join("\n  ")
            );
        }
    } else {
        assert!(
            problems.is_empty(),
            "{kind} test left things behind:\n  {}",
            problems.join("\n  ")
        );
    }
}
