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

use common::containerd::{
    self, cgroup_left, final_checks, mounts_under, remove_unless_mounted, report_cleanup,
    require_tools, support_script, temp_dir, text, wait_processes_gone, Options,
};
use common::*;

/// The image `tests/support/podman-image.sh` builds from the busybox fixture.
const IMAGE: &str = "localhost/pouch-busybox:latest";
/// The containerd namespace of these tests (each test has its own containerd).
const CTR_NAMESPACE: &str = "pouch-test";
/// Longest any single client command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(40);
/// pouch-runtime's default `--root`: podman never passes `--root`.
const DEFAULT_RUNTIME_ROOT: &str = "/run/pouch-runtime";

// ----------------------------------------------------------------------------------------
// helpers
// ----------------------------------------------------------------------------------------

/// Runs `cmd` (stdin /dev/null, output through files), failing the test after
/// `COMMAND_TIMEOUT` (killing the command, the child we started, by pid).
fn run(cmd: &mut Command) -> Output {
    containerd::run(cmd, COMMAND_TIMEOUT)
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

/// Asserts that the calls the wrapper logged for `id` (see `logged_calls`) are a `create
/// --bundle ...`, then exactly `then`, in which `{id}` stands for the id; `what` names them in
/// the failure. Returns the calls.
fn assert_calls(log: &Path, id: &str, then: &[&str], what: &str) -> Vec<String> {
    let calls = logged_calls(log, id);
    let then: Vec<String> = then.iter().map(|c| c.replace("{id}", id)).collect();
    assert!(
        calls
            .first()
            .is_some_and(|c| c.starts_with("create --bundle "))
            && calls[1..] == then[..],
        "{what}: {calls:#?}"
    );
    calls
}

/// `assert_calls` of a container with a terminal: the `create` has a `--console-socket`.
fn assert_console_calls(log: &Path, id: &str, then: &[&str], what: &str) {
    let calls = assert_calls(log, id, then, what);
    assert!(
        calls[0].contains(" --console-socket "),
        "{what}: {calls:#?}"
    );
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

/// A shell session on a terminal (`on_terminal`): at the prompt, types `stty size; tty;
/// ALSO echo typed-$((6*7))`, then `exit CODE`. Asserts that `what` returned CODE and that the
/// container's terminal has the size of ours; returns what the terminal showed.
fn shell_on_terminal(cmd: &mut Command, also: &str, code: i32, what: &str) -> String {
    let typed = format!("stty size; tty; {also}echo typed-$((6*7))\n");
    let exit = format!("exit {code}\n");
    let (shown, status) = on_terminal(cmd, &[(PROMPT, &typed), ("typed-42", &exit)]);
    assert_eq!(
        status.code(),
        Some(code),
        "{what} returns the shell's exit code; the terminal showed:\n{shown}"
    );
    assert!(
        shown.contains(&format!("{TTY_ROWS} {TTY_COLS}")),
        "the container's terminal has the size of ours: {shown}"
    );
    shown
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

/// Asserts that an exec which ran `PRINT_NAMESPACES` and `cat /proc/self/cgroup` (its output
/// `out`) shares the namespaces of the init `pid` and is in the container's cgroup `cg`.
fn assert_joined(out: &str, pid: i64, cg: &str) {
    let lines: Vec<&str> = out.lines().collect();
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

    /// The pid of the init of container `id` (`podman inspect`).
    fn pid(&self, id: &str) -> i64 {
        self.inspect(id, "{{.State.Pid}}").parse().unwrap()
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
            COMMAND_TIMEOUT,
        ));
        problems.extend(remove_unless_mounted(self.dir.take(), &self.path));
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
    assert_calls(
        &p.argv_log,
        &id,
        &["start {id}", "delete --force {id}"],
        "podman's calls",
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
    let pid = p.pid(&id);
    assert!(pid > 0);
    assert_in_cgroup(pid, &p.container_cgroup(&id));
    wait_for_file(&Path::new(&format!("/proc/{pid}/root")).join("ready"));
    p.podman_ok(&p.logger, &["stop", "-t", "20", &id]);
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "42");
    assert_calls(
        &p.argv_log,
        &id,
        &["start {id}", "kill {id} 15", "delete --force {id}"],
        "podman's calls",
    );
    assert!(process_gone(pid));
    assert!(cgroup_left(&p.container_cgroup(&id)).is_empty());
    p.podman_ok(&p.logger, &["rm", &id]);

    // A pid 1 without a SIGTERM handler ignores it: stop sends 15, then 9 after the timeout.
    let id = p.run_detached(&["sleep", "1000"]);
    let pid = p.pid(&id);
    p.podman_ok(&p.logger, &["stop", "-t", "1", &id]);
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "137");
    assert_calls(
        &p.argv_log,
        &id,
        &[
            "start {id}",
            "kill {id} 15",
            "kill {id} 9",
            "delete --force {id}",
        ],
        "podman's calls",
    );
    assert!(process_gone(pid));
    p.podman_ok(&p.logger, &["rm", &id]);

    // rm -f of a running container.
    let id = p.run_detached(&["sleep", "1000"]);
    let pid = p.pid(&id);
    p.podman_ok(&p.logger, &["rm", "-f", "-t", "0", &id]);
    assert_calls(
        &p.argv_log,
        &id,
        &["start {id}", "kill {id} 9", "delete --force {id}"],
        "podman's calls",
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
    let command = &mut p.command(
        &p.logger,
        &["run", "-it", "--rm", &parent, &cidarg, IMAGE, "sh"],
    );
    let shown = shell_on_terminal(command, "", 5, "podman run -it");
    if let Ok(id) = fs::read_to_string(&cidfile) {
        p.ids.push(id.trim().to_owned());
    }
    assert!(shown.contains("/dev/pts/0"), "{shown}");
    assert_eq!(p.ids.len(), 1, "podman wrote no --cidfile");
    let id = p.ids[0].clone();
    assert_console_calls(
        &p.argv_log,
        &id,
        &["start {id}", "delete --force {id}"],
        "podman's calls",
    );
}

#[test]
fn podman_exec_joins_the_container() {
    let mut p = Podman::new();
    let id = p.run_detached_with(&["--hostname", "exec-box"], &["sleep", "1000"]);
    let pid = p.pid(&id);
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
    assert_joined(&out, pid, &cg);
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
    let command = &mut p.command(&p.logger, &["exec", "-it", &id, "sh"]);
    let shown = shell_on_terminal(command, "hostname; ", 6, "podman exec -it");
    assert!(
        shown.contains("/dev/pts/") && shown.contains("exec-box"),
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
    let pid = p.pid(&id);
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
    assert_calls(
        &p.argv_log,
        &id,
        &[
            "start {id}",
            "pause {id}",
            "resume {id}",
            "pause {id}",
            "resume {id}",
            "kill {id} 9",
            "delete --force {id}",
        ],
        "podman's calls",
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
    assert_calls(
        &p.argv_log,
        &id,
        &["start {id}", "delete --force {id}"],
        "podman's calls",
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
    assert_calls(&p.argv_log, &id, &["delete --force {id}"], "podman's calls");
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
    let pid = p.pid(&id);
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
    let expected: &[&str] = match code.as_str() {
        "143" => &["start {id}", "kill {id} 15", "delete --force {id}"],
        "137" => &[
            "start {id}",
            "kill {id} 15",
            "kill {id} 9",
            "delete --force {id}",
        ],
        other => panic!(
            "podman stop -t 1: exit code {other}, not 143 or 137; calls: {:#?}",
            logged_calls(&p.argv_log, &id)
        ),
    };
    assert_calls(
        &p.argv_log,
        &id,
        expected,
        &format!("podman's calls (exit code {code})"),
    );
    assert!(process_gone(pid), "the guest {pid} survived podman stop");
    assert!(cgroup_left(&p.container_cgroup(&id)).is_empty());
    p.podman_ok(&runtime, &["rm", &id]);
}

// ----------------------------------------------------------------------------------------
// containerd + containerd-shim-runc-v2
// ----------------------------------------------------------------------------------------

/// `--runc-root` of the containerd tests, in the test's directory: our runtime's state is
/// under `<runc_root>/<namespace>/<id>`.
const RUNC_ROOT: &str = "runc";

/// A private containerd (`common::containerd`) whose runc shim runs our runtime, with the
/// busybox image imported, an argv-logging `pouch-runtime` wrapper and a private runtime root.
/// Dropping it checks and cleans up.
struct Containerd {
    ctr: containerd::Containerd,
    /// `--runc-root`.
    runc_root: PathBuf,
    logger: PathBuf,
    argv_log: PathBuf,
}

impl std::ops::Deref for Containerd {
    type Target = containerd::Containerd;
    fn deref(&self) -> &containerd::Containerd {
        &self.ctr
    }
}

impl std::ops::DerefMut for Containerd {
    fn deref_mut(&mut self) -> &mut containerd::Containerd {
        &mut self.ctr
    }
}

impl Containerd {
    fn new() -> Containerd {
        require_tools(&["containerd", "ctr", "containerd-shim-runc-v2", "bash"]);
        let ctr = containerd::Containerd::start(Options {
            dir_prefix: "pouch-cd.",
            namespace: CTR_NAMESPACE.to_owned(),
            id_prefix: "ctr",
            runtime_state: Path::new(RUNC_ROOT).join(CTR_NAMESPACE),
            shim_dir: None,
            wasm_cache: false,
            command_timeout: COMMAND_TIMEOUT,
        });
        // The image, as an oci-archive saved by a private podman (cleaned up right away).
        let archive = ctr.path.join("busybox-oci.tar");
        drop(Podman::with_archive(Some(&archive)));
        ctr.ctr_ok(&["images", "import", archive.to_str().unwrap()]);
        let (logger, argv_log) = argv_logger(&ctr.path.join("bin"));
        Containerd {
            runc_root: ctr.path.join(RUNC_ROOT),
            ctr,
            logger,
            argv_log,
        }
    }

    /// `--runc-binary RUNTIME --runc-root <ours>`: what makes the runc shim run RUNTIME.
    fn runc<'a>(&'a self, runtime: &'a Path) -> [&'a str; 4] {
        [
            "--runc-binary",
            runtime.to_str().unwrap(),
            "--runc-root",
            self.runc_root.to_str().unwrap(),
        ]
    }

    /// `ctr run [--rm|-d] --runc-binary RUNTIME --runc-root <ours> --cgroup CG IMAGE ID ARGS...`
    fn run(&self, mode: &str, runtime: &Path, id: &str, cgroup: &str, args: &[&str]) -> Output {
        let mut options = vec![mode];
        options.extend(self.runc(runtime));
        self.ctr_run(&options, IMAGE, id, cgroup, args)
    }

    /// `ctr run -d` through the argv logger, which must succeed; waits until the task runs and
    /// returns the pid of its init.
    fn run_detached(&self, id: &str, cgroup: &str, args: &[&str]) -> i64 {
        self.run_task(&self.runc(&self.logger), IMAGE, id, cgroup, args)
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
    assert_calls(
        &c.argv_log,
        &id,
        &["start {id}", "delete {id}", "delete --force {id}"],
        "the shim's calls",
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
    let pid = c.run_detached(&id, &cg, &["sleep", "1000"]);
    assert_in_cgroup(pid, &cg);
    c.kill_task(&id, Some("KILL"));
    assert!(process_gone(pid));
    c.delete_task(&id, 137); // 128 + SIGKILL
    assert_calls(
        &c.argv_log,
        &id,
        &[
            "start {id}",
            "kill {id} 9",
            "delete {id}",
            "delete --force {id}",
        ],
        "the shim's calls",
    );
    assert!(cgroup_left(&cg).is_empty(), "cgroup {cg} left");

    // The default signal (SIGTERM) reaches a pid 1 that handles it.
    let (id, cg) = c.new_container();
    let pid = c.run_detached(
        &id,
        &cg,
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; touch /ready; while true; do sleep 0.1; done",
        ],
    );
    wait_for_file(&Path::new(&format!("/proc/{pid}/root")).join("ready"));
    c.kill_task(&id, None);
    c.delete_task(&id, 42);
}

#[test]
fn containerd_run_t_answers_typed_input() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let shown = shell_on_terminal(
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
        "",
        5,
        "ctr run -t",
    );
    assert!(shown.contains("/dev/pts/0"), "{shown}");
    assert_console_calls(
        &c.argv_log,
        &id,
        &["start {id}", "delete {id}", "delete --force {id}"],
        "the shim's calls",
    );
}

#[test]
fn containerd_task_exec_joins_the_container() {
    let mut c = Containerd::new();
    let (id, cg) = c.new_container();
    let pid = c.run_detached(&id, &cg, &["sleep", "1000"]);

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
    assert_joined(&out, pid, &cg);
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
    let command = &mut c.command(&["task", "exec", "-t", "--exec-id", "e2", &id, "sh"]);
    let shown = shell_on_terminal(command, "", 6, "ctr task exec -t");
    assert!(shown.contains("/dev/pts/"), "{shown}");

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

    c.kill_task(&id, Some("KILL"));
    for p in &listed {
        assert!(process_gone(*p), "pid {p} survived its container");
    }
    c.delete_task(&id, 137);
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
    let pid = c.run_detached(&id, &cg, &["sh", "-c", TICKER]);
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

    c.kill_task(&id, Some("KILL"));
    assert!(process_gone(pid));
    c.delete_task(&id, 137);
    assert_calls(
        &c.argv_log,
        &id,
        &[
            "start {id}",
            "pause {id}",
            "resume {id}",
            "kill {id} 9",
            "delete {id}",
            "delete --force {id}",
        ],
        "the shim's calls",
    );
}
