//! The OCI lifecycle through the `pouch-runtime` CLI: create → start → kill → delete, `run`,
//! `list`, `spec`, `features`, logs, and every bad input named in the issue, each leaving
//! nothing behind.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn wait_status(b: &Bundle, want: &str) -> Value {
    let t = Instant::now();
    loop {
        let s = b.state();
        if s["status"] == want || t.elapsed() > Duration::from_secs(10) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn create_start_kill_delete_with_runc_state_fields() {
    let b = Bundle::new(&["sleep", "1000"]);
    let pid_file = b.dir.path().join("init.pid");
    b.write();
    let o = b.rt(&[
        "create",
        "--bundle",
        b.dir.path().to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &b.id,
    ]);
    stdout_ok(o);
    let s = b.state();
    let keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    let mut want = vec![
        "ociVersion",
        "id",
        "pid",
        "status",
        "bundle",
        "rootfs",
        "created",
        "owner",
    ];
    let mut got = keys.clone();
    want.sort();
    got.sort();
    assert_eq!(got, want, "runc's state fields: {s}");
    assert_eq!(s["status"], "created");
    assert_eq!(s["id"], json!(b.id));
    let pid = s["pid"].as_i64().unwrap();
    assert!(pid > 0);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    assert_eq!(s["bundle"], json!(b.dir.path().canonicalize().unwrap()));
    assert_eq!(s["rootfs"], json!(busybox_rootfs().canonicalize().unwrap()));
    assert!(s["created"].as_str().unwrap().ends_with('Z'));
    // The init waits in the container's cgroup before start.
    let procs = std::fs::read_to_string(
        cgroup_dirs_of(&format!("{CGROUP_TEST_ROOT}/{}", b.id))
            .into_iter()
            .find(|p| p.starts_with("/sys/fs/cgroup/pids"))
            .unwrap()
            .join("cgroup.procs"),
    )
    .unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");

    stdout_ok(b.rt(&["start", &b.id]));
    assert_eq!(b.state()["status"], "running");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, "sleep\u{0}1000\u{0}");
    // A second start is refused.
    let o = b.rt(&["start", &b.id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("running"));

    stdout_ok(b.rt(&["kill", &b.id, "KILL"]));
    let s = wait_status(&b, "stopped");
    assert_eq!(s["status"], "stopped");
    assert_eq!(s["pid"], 0);
    // kill of a stopped container is an error.
    let o = b.rt(&["kill", &b.id, "9"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not running"));

    stdout_ok(b.rt(&["delete", &b.id]));
    assert!(!b.root.path().join(&b.id).exists());
    assert!(b.cgroup_dirs().iter().all(|p| !p.exists()));
    let o = b.rt(&["state", &b.id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    // As runc: delete of a missing container fails, delete --force of one succeeds.
    let o = b.rt(&["delete", &b.id]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("does not exist"));
    stdout_ok(b.rt(&["delete", "--force", &b.id]));
}

#[test]
fn run_returns_the_exit_status() {
    let b = Bundle::new(&["sh", "-c", "echo out; echo err >&2; exit 42"]);
    let (code, out, err) = b.run();
    assert_eq!(code, 42);
    assert_eq!(out, "out\n");
    assert!(err.contains("err"));
    // Deleted after a foreground run.
    assert!(!b.root.path().join(&b.id).exists());

    // Without a pid namespace the shell is not an init, so it can be killed by itself.
    let mut b = Bundle::new(&["sh", "-c", "kill -9 $$"]);
    b.spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "pid");
    assert_eq!(b.run().0, 137, "killed by SIGKILL is 128+9");
}

#[test]
fn run_forwards_signals_to_the_container() {
    let b = Bundle::new(&[
        "sh",
        "-c",
        "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    b.write();
    let mut child = b
        .cmd()
        .args(["run", "--bundle", b.dir.path().to_str().unwrap(), &b.id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn detached_run_list_and_kill_all() {
    let b = Bundle::new(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    b.run_detached();
    assert_eq!(b.state()["status"], "running");
    let q = stdout_ok(b.rt(&["list", "-q"]));
    assert_eq!(q.trim(), b.id);
    let j: Value = serde_json::from_str(&stdout_ok(b.rt(&["list", "--format", "json"]))).unwrap();
    assert_eq!(j[0]["id"], json!(b.id));
    assert_eq!(j[0]["status"], "running");
    let table = stdout_ok(b.rt(&["list"]));
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&b.id) && table.contains("running"));
    // Three processes in the cgroup; kill --all reaches every one (options after the id too).
    let procs_file = b
        .cgroup_dirs()
        .into_iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/pids"))
        .unwrap()
        .join("cgroup.procs");
    let t = Instant::now();
    while std::fs::read_to_string(&procs_file)
        .unwrap()
        .lines()
        .count()
        < 3
        && t.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stdout_ok(b.rt(&["kill", &b.id, "KILL", "--all"]));
    assert_eq!(wait_status(&b, "stopped")["status"], "stopped");
    stdout_ok(b.rt(&["delete", &b.id]));
}

#[test]
fn delete_of_a_running_container_needs_force() {
    let b = Bundle::new(&["sleep", "1000"]);
    b.create();
    stdout_ok(b.rt(&["start", &b.id]));
    let o = b.rt(&["delete", &b.id]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("not stopped") && e.contains("--force"), "{e}");
    assert_eq!(b.state()["status"], "running");
    let pid = b.state()["pid"].as_i64().unwrap();
    stdout_ok(b.rt(&["delete", &b.id, "--force"]));
    assert!(
        process_gone(pid),
        "init {pid} still alive after delete --force"
    );
    assert!(!b.root.path().join(&b.id).exists());
}

#[test]
fn delete_of_a_created_container_kills_its_init() {
    let b = Bundle::new(&["true"]);
    b.create();
    let pid = b.state()["pid"].as_i64().unwrap();
    stdout_ok(b.rt(&["delete", &b.id]));
    assert!(process_gone(pid), "init {pid} still alive after delete");
}

#[test]
fn state_is_right_after_the_process_died_and_after_a_reboot() {
    let b = Bundle::new(&["sh", "-c", "exit 3"]);
    b.create();
    stdout_ok(b.rt(&["start", &b.id]));
    assert_eq!(wait_status(&b, "stopped")["status"], "stopped");
    stdout_ok(b.rt(&["delete", &b.id]));

    // A container recorded in another boot is stopped, whatever runs under its pid now.
    let b = Bundle::new(&["sleep", "1000"]);
    b.create();
    stdout_ok(b.rt(&["start", &b.id]));
    let f = b.root.path().join(&b.id).join("state.json");
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    let real_boot = rec["bootId"].clone();
    rec["bootId"] = json!("00000000-0000-0000-0000-000000000000");
    std::fs::write(&f, rec.to_string()).unwrap();
    assert_eq!(b.state()["status"], "stopped");
    // A recycled pid (other start time) is never signalled.
    rec["bootId"] = real_boot;
    rec["pidStartTime"] = json!(1);
    std::fs::write(&f, rec.to_string()).unwrap();
    assert_eq!(b.state()["status"], "stopped");
    assert!(!b.rt(&["kill", &b.id, "KILL"]).status.success());
    let pid = rec["pid"].as_i64().unwrap();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the process was not touched"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

fn assert_nothing_left(b: &Bundle) {
    assert!(!b.root.path().join(&b.id).exists(), "state dir left");
    for p in b.cgroup_dirs() {
        assert!(!p.exists(), "cgroup left: {}", p.display());
    }
}

fn create_err(b: &Bundle) -> String {
    b.write();
    let o = b.rt(&["create", "--bundle", b.dir.path().to_str().unwrap(), &b.id]);
    assert!(!o.status.success(), "create should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_nothing() {
    // Malformed config.json.
    let b = Bundle::new(&["true"]);
    std::fs::write(
        b.dir.path().join("config.json"),
        "{\"ociVersion\": \"1.0.2\", ",
    )
    .unwrap();
    let o = b.rt(&["create", "--bundle", b.dir.path().to_str().unwrap(), &b.id]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("config.json"), "{e}");
    assert_nothing_left(&b);

    // Unknown namespace: the error names the field.
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["namespaces"][2] = json!({"type": "bogus"});
    let e = create_err(&b);
    assert!(
        e.contains("linux.namespaces[2].type") && e.contains("bogus"),
        "{e}"
    );
    assert_nothing_left(&b);

    // Missing rootfs.
    let mut b = Bundle::new(&["true"]);
    b.spec["root"]["path"] = json!("/nonexistent/rootfs");
    let e = create_err(&b);
    assert!(
        e.contains("root.path") && e.contains("/nonexistent/rootfs"),
        "{e}"
    );
    assert_nothing_left(&b);

    // A program that does not exist: create fails, says so, leaves nothing.
    let b = Bundle::new(&["no-such-program"]);
    let e = create_err(&b);
    assert!(
        e.contains("no-such-program") && e.contains("not found"),
        "{e}"
    );
    assert_nothing_left(&b);

    // A namespace path that does not exist.
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["namespaces"][1] = json!({"type": "network", "path": "/proc/0/ns/net"});
    let e = create_err(&b);
    assert!(
        e.contains("linux.namespaces[1]") && e.contains("/proc/0/ns/net"),
        "{e}"
    );
    assert_nothing_left(&b);

    // A relative cgroup path would nest under the caller's cgroup: refused.
    let mut b = Bundle::new(&["true"]);
    b.spec["linux"]["cgroupsPath"] = json!("relative/path");
    let e = create_err(&b);
    assert!(e.contains("cgroupsPath") && e.contains("absolute"), "{e}");
    assert_nothing_left(&b);
}

#[test]
fn duplicate_and_bad_ids_are_refused() {
    let b = Bundle::new(&["sleep", "1000"]);
    b.create();
    let e = create_err(&b);
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(
        b.state()["status"],
        "created",
        "the first container is untouched"
    );
    for bad in ["a/b", "..", "../escape", "."] {
        let o = b.rt(&["create", "--bundle", b.dir.path().to_str().unwrap(), bad]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && e.contains("invalid container id"),
            "{bad}: {e}"
        );
    }
    let entries: Vec<_> = std::fs::read_dir(b.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from(&b.id)]);
    assert!(!b.root.path().parent().unwrap().join("escape").exists());
}

#[test]
fn errors_reach_the_json_log_as_containerd_reads_it() {
    let b = Bundle::new(&["true"]);
    let log = b.dir.path().join("log.json");
    let o = b
        .cmd()
        .args([
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "state",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    assert!(
        last["msg"]
            .as_str()
            .unwrap()
            .contains("\"nope\" does not exist"),
        "{last}"
    );
    assert!(last["time"].is_string());
}

#[test]
fn systemd_cgroup_flag_is_refused_clearly() {
    let b = Bundle::new(&["true"]);
    let o = b.rt(&["--systemd-cgroup", "list"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cgroupfs"));
}

#[test]
fn spec_and_features() {
    let d = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(runtime_bin())
        .args(["spec", "--bundle", d.path().to_str().unwrap()])
        .output()
        .unwrap();
    stdout_ok(o);
    let spec: Value =
        serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], json!(["sh"]));
    assert_eq!(spec["root"]["path"], "rootfs");
    let o = std::process::Command::new(runtime_bin())
        .args(["spec", "--bundle", d.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success(), "spec refuses to overwrite");

    let f: Value = serde_json::from_slice(
        &std::process::Command::new(runtime_bin())
            .arg("features")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(f["ociVersionMax"], "1.2.0");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!("user")));
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .contains(&json!("CAP_SYS_ADMIN")));
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert_eq!(f["linux"]["cgroup"]["systemd"], false);
}

#[test]
fn every_help_is_complete() {
    for cmd in [
        "create", "start", "state", "kill", "delete", "run", "list", "spec", "features",
    ] {
        let o = std::process::Command::new(runtime_bin())
            .args([cmd, "--help"])
            .output()
            .unwrap();
        let h = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && h.contains("Usage:"), "{cmd}: {h}");
    }
    let h = stdout_ok(
        std::process::Command::new(runtime_bin())
            .arg("--help")
            .output()
            .unwrap(),
    );
    for word in [
        "--root",
        "--log",
        "--log-format",
        "--debug",
        "--systemd-cgroup",
    ] {
        assert!(h.contains(word), "--help lacks {word}");
    }
}

/// The pids listed in a cgroup's own `cgroup.procs`.
fn procs_of(dir: &std::path::Path) -> Vec<i64> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn kill_all_reaches_what_outlives_a_stopped_init() {
    // Without a pid namespace the init's children outlive it; containerd's runc shim then
    // sends `kill --all <id> 9`, which runc allows as long as the cgroup exists.
    let mut b = Bundle::new(&["sh", "-c", "sleep 1000 & exit 0"]);
    b.without_pid_namespace();
    b.create();
    stdout_ok(b.rt(&["start", &b.id]));
    assert_eq!(wait_status(&b, "stopped")["status"], "stopped");
    let cg = b.pids_cgroup_dir();
    let t = Instant::now();
    while procs_of(&cg).is_empty() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = procs_of(&cg);
    assert_eq!(left.len(), 1, "the orphaned sleep: {left:?}");
    // Without --all, the init of a stopped container is not signalled.
    let o = b.rt(&["kill", &b.id, "9"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not running"),
        "{o:?}"
    );
    stdout_ok(b.rt(&["kill", "--all", &b.id, "9"]));
    assert!(process_gone(left[0]), "{} survived kill --all", left[0]);
    // An empty cgroup is no error either.
    stdout_ok(b.rt(&["kill", "--all", &b.id, "KILL"]));
    stdout_ok(b.rt(&["delete", &b.id]));
    let o = b.rt(&["kill", "--all", &b.id, "9"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("does not exist"),
        "{o:?}"
    );
}

#[test]
fn realtime_signals_by_number_and_name() {
    // An init with handlers for four realtime signals (ash's trap takes their numbers).
    let b = Bundle::new(&[
        "sh",
        "-c",
        "for s in 34 35 37 63; do trap \"echo $s >> /tmp/got\" $s; done; : > /tmp/ready; \
         while true; do sleep 0.02; done",
    ]);
    b.run_detached();
    let pid = b.state()["pid"].as_i64().unwrap();
    let file = |name: &str| format!("/proc/{pid}/root/tmp/{name}");
    let t = Instant::now();
    while !std::path::Path::new(&file("ready")).exists() && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut want = String::new();
    // What `podman stop` sends to a systemd container (SIGRTMIN+3), in every spelling.
    for (sig, n) in [
        ("34", 34),
        ("RTMIN+1", 35),
        ("SIGRTMIN+3", 37),
        ("rtmax-1", 63),
    ] {
        stdout_ok(b.rt(&["kill", &b.id, sig]));
        want.push_str(&format!("{n}\n"));
        let t = Instant::now();
        while std::fs::read_to_string(file("got")).unwrap_or_default() != want
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            std::fs::read_to_string(file("got")).unwrap_or_default(),
            want,
            "after kill {sig}"
        );
    }
    for bad in ["65", "RTMIN+31", "RTMAX+1", "0"] {
        let o = b.rt(&["kill", &b.id, bad]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && e.contains("unknown signal"),
            "{bad}: {e}"
        );
    }
    stdout_ok(b.rt(&["kill", &b.id, "KILL"]));
    assert_eq!(wait_status(&b, "stopped")["status"], "stopped");
    stdout_ok(b.rt(&["delete", &b.id]));

    // A foreground run forwards a realtime signal, and reports death by it as 128 + 37.
    let mut b = Bundle::new(&["sh", "-c", "echo ready; exec sleep 1000"]);
    b.without_pid_namespace();
    b.write();
    let mut child = b
        .cmd()
        .args(["run", "--bundle", b.dir.path().to_str().unwrap(), &b.id])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    // SAFETY: kill(2) of our own child with a realtime signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, 37) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 37));
}

#[test]
fn a_cgroup_with_processes_is_refused_and_left_alone() {
    // cgroupsPath naming a cgroup in use (say "/system.slice"), and a mount that fails: the
    // failed create used to SIGKILL everything in the cgroup and remove it.
    let mut b = Bundle::new(&["true"]);
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/mnt", "type": "no-such-fs", "source": "none"}));
    // Two processes, in one hierarchy only: one in the cgroup, one in a child cgroup of it.
    let cg = b.pids_cgroup_dir();
    let sub = cg.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let mut others: Vec<std::process::Child> = [&cg, &sub]
        .iter()
        .map(|dir| {
            let c = std::process::Command::new("sleep")
                .arg("1000")
                .spawn()
                .unwrap();
            std::fs::write(dir.join("cgroup.procs"), c.id().to_string()).unwrap();
            c
        })
        .collect();
    let e = create_err(&b);
    let alive = others.iter_mut().all(|c| c.try_wait().unwrap().is_none());
    let sub_kept = sub.is_dir();
    for c in &mut others {
        let _ = c.kill();
        let _ = c.wait();
    }
    let _ = std::fs::remove_dir(&sub);
    assert!(alive, "a process in the cgroup was killed");
    assert!(sub_kept, "the cgroup was removed");
    assert!(
        e.contains("linux.cgroupsPath")
            && e.contains(&b.id)
            && e.contains("not empty")
            && e.contains("2 process"),
        "{e}"
    );
    assert!(!b.root.path().join(&b.id).exists(), "state dir left");

    // An existing cgroup without processes is fine (and removed with the container).
    b.spec["mounts"].as_array_mut().unwrap().pop();
    assert!(cg.is_dir());
    b.create();
    stdout_ok(b.rt(&["delete", &b.id]));
    assert_nothing_left(&b);
}
