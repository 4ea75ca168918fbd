//! `pouch` container commands, modelled on PouchContainer's and Docker's CLI suites, for a
//! busybox image and wasm images pulled from a real local registry (tests/common/registry.rs).
//! Every test has its own data root and its containers live under the cgroup
//! `/pouch-test/<unique>`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::registry::fixture;
use serde_json::Value;

fn pouch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pouch")
}

/// A private data root, cleaned up (containers removed, rootfs unmounted) on drop.
struct Pouch {
    root: tempfile::TempDir,
    cgroup: String,
}

impl Pouch {
    fn new() -> Pouch {
        Pouch {
            root: tempfile::tempdir().unwrap(),
            cgroup: format!("{}/{}", common::CGROUP_TEST_ROOT, common::unique("cli")),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(pouch_bin());
        c.arg("--data-root")
            .arg(self.root.path())
            .args(args)
            .env("POUCH_CGROUP_PARENT", &self.cgroup)
            .env("POUCH_AUTH_FILE", self.root.path().join("auth.json"))
            .env("POUCH_CONFIG", self.root.path().join("none.json"))
            .env_remove("POUCH_DATA_ROOT");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        common::run_captured(&mut self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "pouch {args:?} failed ({:?}): {}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn code(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.run(args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        common::cgroup_dirs_of(&self.cgroup)
            .into_iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .filter(|e| e.path().is_dir())
            .map(|e| e.path())
            .collect()
    }
}

impl Drop for Pouch {
    fn drop(&mut self) {
        let ids = self.run(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.run(&["rm", "-f", id]);
        }
        for d in common::cgroup_dirs_of(&self.cgroup) {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn busybox() -> String {
    format!("{}/test/busybox:latest", fixture().plain.addr)
}

fn wasm() -> String {
    format!("{}/test/wasm:latest", fixture().plain.addr)
}

fn wasm_image() -> String {
    format!("{}/test/wasm-image:latest", fixture().plain.addr)
}

#[test]
fn exit_codes_from_run_and_inspect() {
    let p = Pouch::new();
    // PouchContainer's TestRunWithExitCode: 101 from run and in inspect.
    let (code, _, _) = p.code(&["run", "--name", "n101", &busybox(), "sh", "-c", "exit 101"]);
    assert_eq!(code, 101);
    assert_eq!(p.inspect("n101")["State"]["ExitCode"], 101);
    assert_eq!(
        p.ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "n101"
        ]),
        "exited 101\n"
    );
    // The same for a wasm module (proc_exit 101).
    let (code, out, _) = p.code(&["run", "--name", "w101", &wasm(), "--exit", "101"]);
    assert_eq!(code, 101, "{out}");
    assert_eq!(p.inspect("w101")["State"]["ExitCode"], 101);
    assert_eq!(p.inspect("w101")["Executor"], "wasm");
    // Docker's conventions: 127 not found, 126 cannot be executed, 125 pouch's own error.
    let (code, _, err) = p.code(&["run", "--rm", &busybox(), "/no/such/program"]);
    assert_eq!(code, 127, "{err}");
    let (code, _, err) = p.code(&["run", "--rm", &busybox(), "/etc/passwd"]);
    assert_eq!(code, 126, "{err}");
    let (code, _, err) = p.code(&["run", "--rm", "--memory", "lots", &busybox(), "true"]);
    assert_eq!(code, 2, "{err}"); // a flag clap refuses: usage error
    let (code, _, err) = p.code(&["run", "--rm", "--cap-add", "NOPE", &busybox(), "true"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("NOPE"), "{err}");
    let (code, _, err) = p.code(&["run", "--rm", "--pull", "never", "localhost/none:1", "true"]);
    assert_eq!(code, 125, "{err}");
}

#[test]
fn rm_removes_and_inspect_says_not_found() {
    let p = Pouch::new();
    for image in [busybox(), wasm()] {
        let name = common::unique("rm");
        let out = p.ok(&["run", "--rm", "--name", &name, &image]);
        let _ = out;
        let (code, _, err) = p.code(&["inspect", &name]);
        assert_ne!(code, 0);
        assert!(err.contains("no such object"), "{err}");
        // The name is free again, the directory gone.
        assert_eq!(
            std::fs::read_dir(p.root.path().join("containers"))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name() != "names")
                .count(),
            0
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&p.root.path().display().to_string()));
}

#[test]
fn env_workdir_user_readonly() {
    let p = Pouch::new();
    let bb = busybox();
    // -e wins over the image's env; a bare name copies ours.
    let out = p.ok(&[
        "run",
        "--rm",
        "-e",
        "PATH=/bin",
        "-e",
        "HOME",
        &bb,
        "sh",
        "-c",
        "echo $PATH $HOME",
    ]);
    assert_eq!(
        out,
        format!("/bin {}\n", std::env::var("HOME").unwrap_or_default())
    );
    // --env-file, then -e.
    let envf = p.root.path().join("env");
    std::fs::write(&envf, "# comment\nA=file\nB=file\n").unwrap();
    let out = p.ok(&[
        "run",
        "--rm",
        "--env-file",
        envf.to_str().unwrap(),
        "-e",
        "B=flag",
        &bb,
        "sh",
        "-c",
        "echo $A $B",
    ]);
    assert_eq!(out, "file flag\n");
    // -w creates the directory.
    assert_eq!(
        p.ok(&["run", "--rm", "-w", "/new/dir", &bb, "sh", "-c", "pwd"]),
        "/new/dir\n"
    );
    // ... but not over a file.
    let (code, _, err) = p.code(&["run", "--rm", "-w", "/etc/passwd", &bb, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("/etc/passwd"), "{err}");
    // -u sets the uid (by number or name) and the groups.
    assert_eq!(
        p.ok(&["run", "--rm", "-u", "65534", &bb, "id", "-u"]),
        "65534\n"
    );
    assert_eq!(
        p.ok(&["run", "--rm", "-u", "nobody", &bb, "id"]),
        "uid=65534(nobody) gid=65534(nobody)\n"
    );
    let (code, _, err) = p.code(&["run", "--rm", "-u", "nosuchuser", &bb, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("nosuchuser"), "{err}");
    // --read-only: writes to / fail, a --tmpfs is writable.
    let (code, _, err) = p.code(&["run", "--rm", "--read-only", &bb, "touch", "/x"]);
    assert_eq!(code, 1);
    assert!(err.contains("Read-only file system"), "{err}");
    p.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        &bb,
        "touch",
        "/scratch/x",
    ]);
    // Wasm: -e reaches the module.
    let out = p.ok(&["run", "--rm", "-e", "POUCH_GREETING=hi there", &wasm()]);
    assert!(out.contains("env POUCH_GREETING=hi there"), "{out}");
}

#[test]
fn memory_hog_is_oom_killed() {
    let p = Pouch::new();
    let (code, _, err) = p.code(&[
        "run",
        "--name",
        "hog",
        "-m",
        "20m",
        &busybox(),
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(code, 137, "{err}");
    let st = &p.inspect("hog")["State"];
    assert_eq!(st["OOMKilled"], true, "{st}");
    assert_eq!(st["ExitCode"], 137);
    // The limit is what was asked (the hog's cgroup is gone; read a live one).
    let id = p.ok(&["run", "-d", "-m", "20m", &busybox(), "sleep", "30"]);
    let id = id.trim();
    let mem = common::cgroup_dirs_of(&format!("{}/{id}", p.cgroup))
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/memory"))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(mem.join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (20u64 << 20).to_string()
    );
    p.ok(&["rm", "-f", id]);
}

#[test]
fn detached_logs_follow_and_stop_timeout() {
    let p = Pouch::new();
    let id = p.ok(&[
        "run",
        "-d",
        "--name",
        "talk",
        &busybox(),
        "sh",
        "-c",
        "echo one; sleep 0.5; echo two >&2; sleep 0.5; echo three",
    ]);
    assert_eq!(id.trim().len(), 64);
    // logs -f returns once the container stops, with everything in order per stream.
    let t = Instant::now();
    let o = p.run(&["logs", "-f", "talk"]);
    assert!(t.elapsed() >= Duration::from_millis(500));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "one\nthree\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "two\n");
    // --tail and --timestamps.
    let out = p.ok(&["logs", "--tail", "1", "-t", "talk"]);
    assert!(out.ends_with(" three\n") && out.starts_with("20"), "{out}");
    // The json-file log itself.
    let log = std::fs::read_to_string(p.inspect("talk")["LogPath"].as_str().unwrap()).unwrap();
    let first: Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["log"], "one\n");
    assert_eq!(first["stream"], "stdout");

    // stop: a process that ignores SIGTERM gets SIGKILL after the timeout.
    p.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        &busybox(),
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.1; done",
    ]);
    let t = Instant::now();
    p.ok(&["stop", "-t", "2", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(p.inspect("stubborn")["State"]["ExitCode"], 137);
    // A process that handles SIGTERM stops at once.
    p.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        &busybox(),
        "sh",
        "-c",
        "trap 'exit 3' TERM; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    p.ok(&["stop", "polite"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(p.inspect("polite")["State"]["ExitCode"], 3);
    // wait prints the code; start runs it again.
    assert_eq!(p.ok(&["wait", "polite"]), "3\n");
    p.ok(&["start", "polite"]);
    assert_eq!(p.inspect("polite")["State"]["Status"], "running");
    p.ok(&["kill", "-s", "TERM", "polite"]);
    assert_eq!(p.ok(&["wait", "polite"]), "3\n");

    // A wasm module, detached, and its log.
    p.ok(&["run", "-d", "--name", "wlog", &wasm(), "x"]);
    p.ok(&["wait", "wlog"]);
    let out = p.ok(&["logs", "wlog"]);
    assert!(
        out.starts_with("hello from wasm\narg[0]=/module.wasm\narg[1]=x\n"),
        "{out}"
    );
}

#[test]
fn exec_top_pause_ps_and_hostname() {
    let p = Pouch::new();
    p.ok(&[
        "run",
        "-d",
        "--name",
        "host1",
        "--hostname",
        "myhost",
        "-l",
        "team=a",
        &busybox(),
        "sleep",
        "30",
    ]);
    assert_eq!(p.ok(&["exec", "host1", "cat", "/etc/hostname"]), "myhost\n");
    assert_eq!(p.ok(&["exec", "host1", "busybox", "hostname"]), "myhost\n");
    let (code, _, _) = p.code(&["exec", "host1", "sh", "-c", "exit 7"]);
    assert_eq!(code, 7);
    assert_eq!(
        p.ok(&["exec", "-u", "nobody", "host1", "id", "-u"]),
        "65534\n"
    );
    assert_eq!(
        p.ok(&[
            "exec",
            "-w",
            "/etc",
            "-e",
            "X=1",
            "host1",
            "sh",
            "-c",
            "echo $X; pwd"
        ]),
        "1\n/etc\n"
    );
    assert!(p.ok(&["top", "host1"]).contains("sleep 30"));
    p.ok(&["pause", "host1"]);
    assert!(p.ok(&["ps"]).contains("(Paused)"));
    p.ok(&["unpause", "host1"]);
    // ps: filters, quiet, format.
    assert_eq!(
        p.ok(&["ps", "-q", "--filter", "label=team=a"])
            .lines()
            .count(),
        1
    );
    assert_eq!(p.ok(&["ps", "-q", "--filter", "name=nomatch"]), "");
    assert_eq!(
        p.ok(&["ps", "--format", "{{.Names}} {{.State}} {{.Executor}}"]),
        "host1 running native\n"
    );
    let stats = p.ok(&["stats", "--no-stream", "host1"]);
    assert!(stats.contains("host1"), "{stats}");
    p.ok(&["rename", "host1", "host2"]);
    assert_eq!(p.inspect("host2")["Name"], "/host2");
    let (code, _, err) = p.code(&["rm", "host2"]);
    assert_ne!(code, 0);
    assert!(err.contains("rm -f"), "{err}");
    p.ok(&["rm", "-f", "host2"]);
    assert!(p.cgroup_dirs().is_empty(), "{:?}", p.cgroup_dirs());
}

#[test]
fn a_killed_monitor_is_detected_and_rm_cleans_up() {
    let p = Pouch::new();
    let id = p.ok(&["run", "-d", "--name", "orphan", &busybox(), "sleep", "60"]);
    let id = id.trim().to_string();
    let st = p.inspect("orphan")["State"].clone();
    let monitor = st["MonitorPid"].as_i64().unwrap();
    let init = st["Pid"].as_i64().unwrap();
    // SAFETY: a process this test started (through pouch), by pid.
    unsafe { libc::kill(monitor as i32, libc::SIGKILL) };
    assert!(common::process_gone(monitor));
    // The container goes on; ps says its monitor is gone.
    let ps = p.ok(&["ps"]);
    assert!(ps.contains("monitor lost"), "{ps}");
    assert_eq!(p.inspect("orphan")["State"]["Dead"], true);
    // rm -f still cleans everything: process, cgroup, mount, directory.
    p.ok(&["rm", "-f", "orphan"]);
    assert!(common::process_gone(init));
    assert!(p.cgroup_dirs().is_empty(), "{:?}", p.cgroup_dirs());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&id), "rootfs still mounted");
    assert!(!p.root.path().join("containers").join(&id).exists());
}

#[test]
fn restart_policy_on_failure() {
    let p = Pouch::new();
    p.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        &busybox(),
        "sh",
        "-c",
        "echo run; exit 3",
    ]);
    let t = Instant::now();
    loop {
        let c = p.inspect("flaky");
        if c["State"]["Status"] == "exited" && c["RestartCount"] == 2 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{c}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(p.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    let (code, _, err) = p.code(&["run", "--rm", "--restart", "sometimes", &busybox(), "true"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn wasm_images_need_no_flag() {
    let p = Pouch::new();
    let out = p.ok(&["run", "--rm", &wasm_image(), "a"]);
    assert!(
        out.starts_with("hello from wasm\narg[0]=/hello.wasm\narg[1]=a\n"),
        "{out}"
    );
    // The multi-platform index: its linux entry by default, its wasm entry on request.
    let hybrid = format!("{}/test/hybrid:latest", fixture().plain.addr);
    let out = p.ok(&["run", "--rm", "--platform", "wasi/wasm", &hybrid]);
    assert!(out.starts_with("hello from wasm\n"), "{out}");
    let out = p.ok(&["run", "--rm", "--pull", "always", &hybrid, "echo", "native"]);
    assert_eq!(out, "native\n");
    // The executor and why are in inspect and ps.
    p.ok(&["create", "--name", "wc", &wasm()]);
    let c = p.inspect("wc");
    assert_eq!(c["Executor"], "wasm");
    assert!(
        c["ExecutorReason"].as_str().unwrap().contains("wasm"),
        "{c}"
    );
    assert_eq!(c["State"]["Status"], "created");
    p.ok(&["start", "-a", "wc"]);
    assert_eq!(p.inspect("wc")["State"]["ExitCode"], 0);
}

#[test]
fn twenty_parallel_runs_on_one_image() {
    let p = Pouch::new();
    let bb = busybox();
    p.ok(&["pull", "-q", &bb]);
    let children: Vec<_> = (0..20)
        .map(|i| {
            p.cmd(&["run", "--rm", &bb, "sh", "-c", &format!("echo run-{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout), format!("run-{i}\n"));
    }
    assert_eq!(p.ok(&["ps", "-aq"]), "");
    assert!(p.cgroup_dirs().is_empty());
}

#[test]
fn names_are_unique_and_checked() {
    let p = Pouch::new();
    p.ok(&["create", "--name", "same", &busybox()]);
    let (code, _, err) = p.code(&["create", "--name", "same", &busybox()]);
    assert_eq!(code, 125);
    assert!(err.contains("already in use"), "{err}");
    let (code, _, err) = p.code(&["create", "--name", "bad/name", &busybox()]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid container name"), "{err}");
    // Nothing of the refused ones is left.
    assert_eq!(p.ok(&["ps", "-aq"]).lines().count(), 1);
    let _ = Path::new("/");
}

#[test]
fn interactive_and_terminal() {
    let p = Pouch::new();
    let bb = busybox();
    // -i: our stdin reaches the container.
    let mut c = p
        .cmd(&["run", "--rm", "-i", &bb, "sh", "-c", "read x; echo got-$x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin.take().unwrap().write_all(b"typed\n").unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "got-typed\n");
    // Without -i the container's stdin is empty.
    assert_eq!(
        p.ok(&["run", "--rm", &bb, "sh", "-c", "cat; echo end"]),
        "end\n"
    );
    // -it on a terminal: a shell answering typed input, our window size, its exit code.
    let (master, slave) = common::terminal::pty(33, 99);
    let mut child =
        common::terminal::spawn_on_pty(&mut p.cmd(&["run", "--rm", "-it", &bb, "sh"]), &slave);
    drop(slave);
    let out = common::terminal::converse(
        &master,
        &[
            "busybox stty size; busybox tty; echo hello-$((6*7))\n",
            "exit 3\n",
        ],
        Duration::from_secs(20),
    );
    let status = child.wait().unwrap();
    assert!(out.contains("33 99"), "window size: {out}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    assert!(out.contains("hello-42"), "typed input answered: {out}");
    assert_eq!(status.code(), Some(3), "{out}");
}

fn cgroup_file(p: &Pouch, id: &str, controller: &str, file: &str) -> String {
    let dir = common::cgroup_dirs_of(&format!("{}/{id}", p.cgroup))
        .into_iter()
        .find(|d| d.starts_with(format!("/sys/fs/cgroup/{controller}")))
        .unwrap_or_else(|| panic!("no {controller} cgroup for {id}"));
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn resource_flags_reach_the_cgroup() {
    let p = Pouch::new();
    let id = p.ok(&[
        "run",
        "-d",
        "-m",
        "64m",
        "--memory-swap",
        "128m",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "42",
        &busybox(),
        "sleep",
        "30",
    ]);
    let id = id.trim();
    assert_eq!(
        cgroup_file(&p, id, "memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        cgroup_file(&p, id, "memory", "memory.memsw.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(cgroup_file(&p, id, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file(&p, id, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup_file(&p, id, "cpu", "cpu.shares"), "512");
    assert_eq!(cgroup_file(&p, id, "cpuset", "cpuset.cpus"), "0");
    assert_eq!(cgroup_file(&p, id, "pids", "pids.max"), "42");
    let hc = &p.inspect(id)["HostConfig"];
    assert_eq!(hc["Memory"], 64 << 20);
    assert_eq!(hc["NanoCpus"], 500_000_000);
    p.ok(&["rm", "-f", id]);
    // Ulimits.
    assert_eq!(
        p.ok(&[
            "run",
            "--rm",
            "--ulimit",
            "nofile=100:200",
            &busybox(),
            "sh",
            "-c",
            "ulimit -n; ulimit -Hn"
        ]),
        "100\n200\n"
    );
}

#[test]
fn security_flags() {
    let p = Pouch::new();
    let bb = busybox();
    let capeff = |args: &[&str]| -> u64 {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&[&bb, "sh", "-c", "grep CapEff /proc/self/status"]);
        let out = p.ok(&a);
        u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    const CAP_CHOWN: u64 = 1 << 0;
    const CAP_NET_ADMIN: u64 = 1 << 12;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    let default = capeff(&[]);
    assert!(
        default & CAP_CHOWN != 0 && default & CAP_SYS_ADMIN == 0,
        "{default:x}"
    );
    assert_eq!(
        default.count_ones(),
        14,
        "Docker's 14 default capabilities: {default:x}"
    );
    assert!(capeff(&["--cap-add", "NET_ADMIN"]) & CAP_NET_ADMIN != 0);
    assert!(capeff(&["--cap-drop", "CHOWN"]) & CAP_CHOWN == 0);
    assert_eq!(capeff(&["--cap-drop", "ALL"]), 0);
    assert!(capeff(&["--privileged"]) & CAP_SYS_ADMIN != 0);
    // The default seccomp profile denies unshare and keyctl-like calls...
    let (code, _, err) = p.code(&["run", "--rm", &bb, "busybox", "unshare", "-n", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("Operation not permitted"), "{err}");
    // ... unless the capability is there and the profile is off.
    p.ok(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        &bb,
        "busybox",
        "unshare",
        "-n",
        "true",
    ]);
    // no-new-privileges.
    let out = p.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        &bb,
        "busybox",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert!(out.contains('1'), "{out}");
    // Masked paths: /proc/timer_list reads empty (bound to /dev/null) unless privileged.
    assert_eq!(
        p.ok(&[
            "run",
            "--rm",
            &bb,
            "sh",
            "-c",
            "cat /proc/timer_list | wc -c"
        ])
        .trim(),
        "0"
    );
    assert_ne!(
        p.ok(&[
            "run",
            "--rm",
            "--privileged",
            &bb,
            "sh",
            "-c",
            "cat /proc/timer_list | wc -c"
        ])
        .trim(),
        "0"
    );
    // --sysctl in the container's network namespace; --network host sees the host's.
    assert_eq!(
        p.ok(&[
            "run",
            "--rm",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            &bb,
            "cat",
            "/proc/sys/net/ipv4/ip_forward"
        ]),
        "1\n"
    );
    let host_ifs = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .count();
    let own = p
        .ok(&["run", "--rm", &bb, "cat", "/proc/net/dev"])
        .lines()
        .count();
    let host = p
        .ok(&[
            "run",
            "--rm",
            "--network",
            "host",
            &bb,
            "cat",
            "/proc/net/dev",
        ])
        .lines()
        .count();
    assert_eq!(own, 3, "only lo in a fresh network namespace");
    assert_eq!(host, host_ifs);
    // A device.
    assert_eq!(
        p.ok(&[
            "run",
            "--rm",
            "--device",
            "/dev/null:/dev/mynull",
            &bb,
            "sh",
            "-c",
            "echo x > /dev/mynull && echo ok"
        ]),
        "ok\n"
    );
}

#[test]
fn volumes_annotations_stop_signal() {
    let p = Pouch::new();
    let bb = busybox();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("in.txt"), "from host\n").unwrap();
    let hp = host.path().to_str().unwrap();
    // A bind mount, read-write then read-only.
    let out = p.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{hp}:/data"),
        &bb,
        "sh",
        "-c",
        "cat /data/in.txt; echo back > /data/out.txt",
    ]);
    assert_eq!(out, "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).unwrap(),
        "back\n"
    );
    let (code, _, err) = p.code(&[
        "run",
        "--rm",
        "-v",
        &format!("{hp}:/data:ro"),
        &bb,
        "touch",
        "/data/x",
    ]);
    assert_eq!(code, 1, "{err}");
    // A named volume keeps its contents across containers.
    p.ok(&[
        "run",
        "--rm",
        "-v",
        "vol1:/v",
        &bb,
        "sh",
        "-c",
        "echo kept > /v/f",
    ]);
    assert_eq!(
        p.ok(&["run", "--rm", "-v", "vol1:/v", &bb, "cat", "/v/f"]),
        "kept\n"
    );
    // A missing host path is refused with the fix.
    let (code, _, err) = p.code(&["run", "--rm", "-v", "/no/such/dir:/x", &bb, "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("does not exist"), "{err}");
    // Annotations reach the spec; group-add the process.
    p.ok(&[
        "create",
        "--name",
        "ann",
        "--annotation",
        "org.example/x=1",
        "--group-add",
        "1234",
        &bb,
        "id",
    ]);
    assert_eq!(p.inspect("ann")["SpecAnnotation"]["org.example/x"], "1");
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(p.inspect("ann")["Bundle"].as_str().unwrap()).join("config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(spec["annotations"]["org.example/x"], "1");
    p.ok(&["start", "ann"]);
    p.ok(&["wait", "ann"]);
    assert!(p.ok(&["logs", "ann"]).contains("1234"));
    // --stop-signal: stop sends it.
    p.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        &bb,
        "sh",
        "-c",
        "trap 'exit 9' USR1; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    p.ok(&["stop", "usr1"]);
    assert_eq!(p.inspect("usr1")["State"]["ExitCode"], 9);
    // system prune removes the stopped containers.
    let out = p.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Deleted"), "{out}");
    assert_eq!(p.ok(&["ps", "-aq"]), "");
}

#[test]
fn init_is_pid_one_and_passes_signals() {
    let p = Pouch::new();
    let bb = busybox();
    // The program is not PID 1 any more.
    assert_eq!(
        p.ok(&["run", "--rm", "--init", &bb, "sh", "-c", "echo $$"]),
        "2\n"
    );
    assert_eq!(p.ok(&["run", "--rm", &bb, "sh", "-c", "echo $$"]), "1\n");
    // An orphan is reaped; the exit code is the program's.
    let (code, _, _) = p.code(&[
        "run",
        "--rm",
        "--init",
        &bb,
        "sh",
        "-c",
        "sleep 0.1 & exit 5",
    ]);
    assert_eq!(code, 5);
    // SIGTERM reaches a program that, as PID 1, would have ignored it: stop is quick.
    p.ok(&["run", "-d", "--init", "--name", "initd", &bb, "sleep", "30"]);
    let t = Instant::now();
    p.ok(&["stop", "-t", "10", "initd"]);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(p.inspect("initd")["State"]["ExitCode"], 143);
    // A program that cannot be run is still reported.
    let (code, _, err) = p.code(&["run", "--rm", "--init", &bb, "/nope"]);
    assert_eq!(code, 127, "{err}");
}

#[test]
fn containers_outlive_the_cli() {
    let p = Pouch::new();
    // A foreground run whose CLI is killed: the container goes on, its monitor too.
    let mut cli = p
        .cmd(&[
            "run",
            "--name",
            "fg",
            &busybox(),
            "sh",
            "-c",
            "echo up; sleep 30",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !p
        .ok(&["ps", "-q", "--filter", "name=fg"])
        .contains(|c: char| c.is_ascii_hexdigit())
    {
        assert!(t.elapsed() < Duration::from_secs(10), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    cli.kill().unwrap();
    cli.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let c = p.inspect("fg");
    assert_eq!(c["State"]["Status"], "running", "{c}");
    assert_eq!(c["State"]["Dead"], false);
    assert_eq!(p.ok(&["logs", "fg"]), "up\n");
    // restart: a new process, the same container.
    let pid = c["State"]["Pid"].as_i64().unwrap();
    p.ok(&["restart", "-t", "1", "fg"]);
    let c = p.inspect("fg");
    assert_eq!(c["State"]["Status"], "running");
    assert_ne!(c["State"]["Pid"].as_i64().unwrap(), pid);
    assert!(common::process_gone(pid));
    p.ok(&["rm", "-f", "fg"]);
    assert!(p.cgroup_dirs().is_empty());
}
