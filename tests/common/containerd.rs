//! A private containerd for the client tests, and the helpers those tests share.
//!
//! [`Containerd`] is Debian's containerd 1.6 started with `tests/support/containerd.sh` on a
//! config, root, state and socket in a short directory under /tmp that the test owns, driven
//! with `ctr` in one namespace. What differs between its users is in [`Options`]: which shims
//! containerd finds (`tests/shim.rs` puts ours first on its PATH; `tests/clients.rs` uses
//! Debian's runc shim, pointed at our runtime by `ctr run --runc-binary`), where our runtime
//! keeps its state, the namespace and the time a command may take. How a container is run
//! (`--runtime`, `--runc-binary`, ...) is the caller's: [`Containerd::ctr_run`] takes it as
//! options.
//!
//! When the test body is done, the guard (`Drop`) checks that nothing is left: no task or
//! container, no shim, no runtime state, no container cgroup, no mount; then `containerd.sh
//! stop` cleans up (also after a failure) and the guard checks again ([`final_checks`]).
//!
//! The other helpers (a command with a time limit, what a test left behind, how a guard
//! reports it) serve the podman guard of `tests/clients.rs` as well.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{cgroup_dirs_of, unique, CGROUP_TEST_ROOT};

/// How long processes that a client started (conmon, `podman container cleanup`, containerd,
/// shims) may take to go away after their container or daemon ended.
pub const PROCESS_GRACE: Duration = Duration::from_secs(15);

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A script of `tests/support/`.
pub fn support_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(name)
}

/// Fails (never skips) when a tool the test needs is not installed or we are not root.
pub fn require_tools(tools: &[&str]) {
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
        "these tests need root (podman and containerd run rootful here)"
    );
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr captured through files (daemons
/// the client leaves behind cannot hold them open). Fails the test after `timeout`, killing
/// the command (the child we started, by pid).
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
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
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: super::read_from_start(out),
        stderr: super::read_from_start(err),
    }
}

/// A temporary directory, canonical (the support scripts resolve symlinks).
pub fn temp_dir(parent: &Path, prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .unwrap();
    let path = dir.path().canonicalize().unwrap();
    (dir, path)
}

/// Mount points below `dir` in our mount namespace (the host's).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// Processes (other than this test) whose command line names `needle`: conmon and podman's
/// cleanup processes name the podman store, containerd and its shims the containerd state
/// (shims the socket). Each as (pid, command line).
pub fn processes_naming(needle: &str) -> Vec<(i32, String)> {
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
        if cmdline.contains(needle) {
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}

/// Waits up to `PROCESS_GRACE` for every process naming `dir` to end; returns the rest.
pub fn wait_processes_gone(dir: &Path) -> Vec<(i32, String)> {
    let needle = dir.to_string_lossy();
    let t = Instant::now();
    loop {
        let left = processes_naming(&needle);
        if left.is_empty() || t.elapsed() > PROCESS_GRACE {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Existing directories of cgroup `path` (at or below it) in any hierarchy.
pub fn cgroup_left(path: &str) -> Vec<PathBuf> {
    cgroup_dirs_of(path)
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

/// After cleanup: no cgroup, process or mount may remain. Processes still naming the test's
/// directory are ours (started for this test): they are killed by pid, and reported.
/// `timeout` bounds `cgroup-cleanup.sh`.
pub fn final_checks(dir: &Path, cgroups: &[String], timeout: Duration) -> Vec<String> {
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
        let o = run(
            Command::new("bash")
                .arg(support_script("cgroup-cleanup.sh"))
                .arg("--kill")
                .args(cgroups),
            timeout,
        );
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

/// Removes the test's directory `dir` (at `path`), unless mounts are left inside: never
/// recurse into a mount; keep it for a human to look at, and say so.
pub fn remove_unless_mounted(dir: Option<tempfile::TempDir>, path: &Path) -> Option<String> {
    let dir = dir?;
    if mounts_under(path).is_empty() {
        drop(dir);
        None
    } else {
        Some(format!("kept {} (mounts inside)", dir.keep().display()))
    }
}

/// After a test: what its guard found left behind fails the test, or, when the test failed
/// already, is printed next to that failure.
pub fn report_cleanup(kind: &str, problems: Vec<String>) {
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

/// What differs between the private containerds of the tests.
pub struct Options {
    /// Prefix of the test's directory, made in /tmp whatever TMPDIR says: short, as unix
    /// socket paths are limited to 107 bytes.
    pub dir_prefix: &'static str,
    /// The ctr namespace of every command.
    pub namespace: String,
    /// Prefix of the ids of [`Containerd::new_container`].
    pub id_prefix: &'static str,
    /// The directory whose entries are our runtime's state of this namespace (checked by the
    /// guard): relative to the test's directory, or absolute (removed after `stop`).
    pub runtime_state: PathBuf,
    /// Put first on containerd's PATH, where it looks for shims (`containerd-shim-*-v2`).
    pub shim_dir: Option<PathBuf>,
    /// Give containerd, and so its shims and runtimes, `POUCH_WASM_CACHE=<dir>/wasm-cache`.
    pub wasm_cache: bool,
    /// Longest any single command (ctr, the support scripts) may take before the test fails.
    pub command_timeout: Duration,
}

/// A private containerd (tests/support/containerd.sh). Dropping it checks and cleans up.
pub struct Containerd {
    dir: Option<tempfile::TempDir>,
    /// The test's directory: containerd's config, root, state, socket and log.
    pub path: PathBuf,
    /// containerd's grpc socket.
    pub address: String,
    pub namespace: String,
    /// Every container's cgroup, `/pouch-test/<id_prefix>-<pid>-<n>`.
    pub cgroups: Vec<String>,
    runtime_state: PathBuf,
    id_prefix: &'static str,
    timeout: Duration,
}

impl Containerd {
    /// Starts containerd; the caller checks the tools first (see [`require_tools`]).
    pub fn start(options: Options) -> Containerd {
        let (dir, path) = temp_dir(Path::new("/tmp"), options.dir_prefix);
        let mut c = Containerd {
            dir: Some(dir),
            path: path.clone(),
            address: String::new(),
            namespace: options.namespace,
            cgroups: Vec::new(),
            runtime_state: path.join(&options.runtime_state),
            id_prefix: options.id_prefix,
            timeout: options.command_timeout,
        };
        // From here on, a failure is cleaned up by Drop.
        let mut start = Command::new("bash");
        start
            .arg(support_script("containerd.sh"))
            .arg("start")
            .arg(&path);
        if let Some(shims) = &options.shim_dir {
            let search = format!(
                "{}:{}",
                shims.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            start.env("PATH", search);
        }
        if options.wasm_cache {
            start.env("POUCH_WASM_CACHE", path.join("wasm-cache"));
        }
        let o = run(&mut start, c.timeout);
        assert!(
            o.status.success(),
            "containerd.sh start failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            text(&o.stdout),
            text(&o.stderr)
        );
        c.address = text(&o.stdout).trim().to_owned();
        assert!(
            c.address.ends_with(".sock"),
            "containerd.sh printed {:?}",
            c.address
        );
        c
    }

    /// The command `ctr --address <ours> --namespace <ours> ARGS...`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args);
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        run(&mut self.command(args), self.timeout)
    }

    /// Stdout of a successful `ctr ARGS...`; otherwise fails with what it printed.
    pub fn ctr_ok(&self, args: &[&str]) -> String {
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

    /// A fresh container id and its cgroup (checked by the guard).
    pub fn new_container(&mut self) -> (String, String) {
        let id = unique(self.id_prefix);
        let cg = format!("{CGROUP_TEST_ROOT}/{id}");
        self.cgroups.push(cg.clone());
        (id, cg)
    }

    /// `ctr run OPTS... --cgroup CG IMAGE ID ARGS...` (OPTS choose the runtime).
    pub fn ctr_run(&self, opts: &[&str], image: &str, id: &str, cg: &str, args: &[&str]) -> Output {
        let mut argv = vec!["run"];
        argv.extend_from_slice(opts);
        argv.extend_from_slice(&["--cgroup", cg, image, id]);
        argv.extend_from_slice(args);
        self.ctr(&argv)
    }

    /// `ctr run -d OPTS... --cgroup CG IMAGE ID ARGS...`, which must succeed; waits until
    /// the task runs and returns the pid of its init.
    pub fn run_task(&self, opts: &[&str], image: &str, id: &str, cg: &str, args: &[&str]) -> i64 {
        let mut all = vec!["-d"];
        all.extend_from_slice(opts);
        let o = self.ctr_run(&all, image, id, cg, args);
        assert!(
            o.status.success(),
            "ctr run -d ({image}): {}",
            text(&o.stderr)
        );
        self.wait_task_status(id, "RUNNING");
        let (pid, _) = self.task(id).unwrap();
        pid
    }

    /// `ctr task kill [-s SIGNAL] ID` (without a signal: SIGTERM); waits until it stopped.
    pub fn kill_task(&self, id: &str, signal: Option<&str>) {
        match signal {
            Some(s) => self.ctr_ok(&["task", "kill", "-s", s, id]),
            None => self.ctr_ok(&["task", "kill", id]),
        };
        self.wait_task_status(id, "STOPPED");
    }

    /// `ctr task delete ID` of a stopped task, which must succeed and report the exit status
    /// `code` (ctr 1.6 reports a non-zero one as a warning); then `ctr containers rm ID`.
    pub fn delete_task(&self, id: &str, code: i32) {
        let o = self.ctr(&["task", "delete", id]);
        let err = text(&o.stderr);
        assert!(o.status.success(), "ctr task delete {id}: {err}");
        assert!(
            err.contains(&format!("exit code {code}")),
            "ctr task delete {id} should report exit code {code}: {err}"
        );
        self.ctr_ok(&["containers", "rm", id]);
    }

    /// The pid and status `ctr task ls` shows for `id` (the shim's view; no runtime call).
    pub fn task(&self, id: &str) -> Option<(i64, String)> {
        let out = self.ctr_ok(&["task", "ls"]);
        out.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| (f[1].parse().unwrap(), f[2].to_owned()))
        })
    }

    pub fn wait_task_status(&self, id: &str, want: &str) {
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

    /// What is left behind while containerd runs: shims (they name its socket in their argv;
    /// each may take 10 s to end), runtime state, container cgroups, mounts.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let t = Instant::now();
        let shims = loop {
            let shims: Vec<(i32, String)> = processes_naming(&self.address)
                .into_iter()
                .filter(|(_, cmdline)| cmdline.contains("containerd-shim"))
                .collect();
            if shims.is_empty() || t.elapsed() > Duration::from_secs(10) {
                break shims;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !shims.is_empty() {
            left.push(format!("shims still running: {shims:?}"));
        }
        let state: Vec<PathBuf> = fs::read_dir(&self.runtime_state)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if !state.is_empty() {
            left.push(format!("runtime state left: {state:?}"));
        }
        for cg in &self.cgroups {
            let dirs = cgroup_left(cg);
            if !dirs.is_empty() {
                left.push(format!("container cgroup left: {dirs:?}"));
            }
        }
        let mounts = mounts_under(&self.path);
        if !mounts.is_empty() {
            left.push(format!("mounts left: {mounts:?}"));
        }
        left
    }

    /// What the test left behind (checked before any cleanup, unless it failed already), then
    /// cleanup, then what even cleanup could not remove.
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
            problems.extend(self.leftovers());
        }
        // Drains tasks and containers, ends containerd by pid and its shims, unmounts.
        let o = run(
            Command::new("bash")
                .arg(support_script("containerd.sh"))
                .arg("stop")
                .arg(&self.path),
            self.timeout,
        );
        if !o.status.success() {
            problems.push(format!("containerd.sh stop: {}", text(&o.stderr).trim()));
        }
        problems.extend(final_checks(&self.path, &self.cgroups, self.timeout));
        if !self.runtime_state.starts_with(&self.path) {
            let _ = fs::remove_dir_all(&self.runtime_state);
        }
        problems.extend(remove_unless_mounted(self.dir.take(), &self.path));
        problems
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        report_cleanup("containerd", self.check_and_clean());
    }
}
