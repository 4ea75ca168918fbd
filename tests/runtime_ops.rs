//! Operations on a running container: pause/resume, ps, update, events.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// A container that counts in a file every 20 ms.
fn counter() -> Bundle {
    let b = Bundle::new(&[
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.02; done",
    ]);
    b.run_detached();
    b
}

fn count(b: &Bundle) -> u64 {
    let pid = b.state()["pid"].as_i64().unwrap();
    std::fs::read_to_string(format!("/proc/{pid}/root/tmp/n"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn pause_stops_progress_and_resume_restarts_it() {
    let b = counter();
    std::thread::sleep(Duration::from_millis(200));
    stdout_ok(b.rt(&["pause", &b.id]));
    assert_eq!(b.state()["status"], "paused");
    let c1 = count(&b);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(&b), c1, "no progress while paused");
    let o = b.rt(&["pause", &b.id]);
    assert!(
        !o.status.success(),
        "pausing a paused container is an error"
    );
    stdout_ok(b.rt(&["resume", &b.id]));
    assert_eq!(b.state()["status"], "running");
    std::thread::sleep(Duration::from_millis(300));
    assert!(count(&b) > c1, "progress after resume");
    // A paused container can still be force-deleted.
    stdout_ok(b.rt(&["pause", &b.id]));
    stdout_ok(b.rt(&["delete", "--force", &b.id]));
}

#[test]
fn ps_lists_the_containers_processes() {
    let b = counter();
    let pid = b.state()["pid"].as_i64().unwrap();
    let pids: Vec<i64> =
        serde_json::from_str(&stdout_ok(b.rt(&["ps", "--format", "json", &b.id]))).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks init {pid}");
    let table = stdout_ok(b.rt(&["ps", &b.id, "--", "-o", "pid,comm"]));
    let mut lines = table.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows.iter()
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "{table}"
    );
    // The counter starts a new `sleep` every 20 ms: judge each row by its own cgroup (a
    // process that has exited since is fine), not by the earlier pid list.
    let own = format!("pids:{CGROUP_TEST_ROOT}/{}", b.id);
    for r in &rows {
        let p: i64 = r.split_whitespace().next().unwrap().parse().unwrap();
        if let Ok(cg) = std::fs::read_to_string(format!("/proc/{p}/cgroup")) {
            assert!(
                cg.lines().any(|l| l.contains(&own)),
                "ps shows a process outside the container: {r}"
            );
        }
    }
}

#[test]
fn update_changes_the_limits_visibly() {
    let b = counter();
    let dir = |ctrl: &str| {
        b.cgroup_dirs()
            .into_iter()
            .find(|p| p.starts_with(format!("/sys/fs/cgroup/{ctrl}")))
            .unwrap()
    };
    stdout_ok(b.rt(&[
        "update",
        "--memory",
        "48m",
        "--pids-limit",
        "9",
        "--cpu-shares",
        "256",
        &b.id,
    ]));
    let read = |ctrl: &str, f: &str| {
        std::fs::read_to_string(dir(ctrl).join(f))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (48u64 << 20).to_string()
    );
    assert_eq!(read("pids", "pids.max"), "9");
    assert_eq!(read("cpu", "cpu.shares"), "256");
    let res = b.dir.path().join("res.json");
    std::fs::write(
        &res,
        r#"{"pids": {"limit": 11}, "cpu": {"quota": 20000, "period": 100000}}"#,
    )
    .unwrap();
    stdout_ok(b.rt(&["update", "--resources", res.to_str().unwrap(), &b.id]));
    assert_eq!(read("pids", "pids.max"), "11");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "20000");
    // Seen from inside too.
    let pid = b.state()["pid"].as_i64().unwrap();
    let inside =
        std::fs::read_to_string(format!("/proc/{pid}/root/sys/fs/cgroup/pids/pids.max")).unwrap();
    assert_eq!(inside.trim(), "11");
    let o = b.rt(&["update", "--memory", "lots", &b.id]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("lots"));
}

#[test]
fn events_stats_report_cgroup_usage() {
    let b = counter();
    stdout_ok(b.rt(&["update", "--memory", "64m", "--pids-limit", "20", &b.id]));
    let ev: Value =
        serde_json::from_str(stdout_ok(b.rt(&["events", "--stats", &b.id])).trim()).unwrap();
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], b.id.as_str());
    assert!(ev["data"]["cpu"]["usage"]["total"].as_u64().unwrap() > 0);
    assert!(ev["data"]["memory"]["usage"]["usage"].as_u64().unwrap() > 0);
    assert_eq!(ev["data"]["memory"]["usage"]["limit"], 64u64 << 20);
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1);
    assert_eq!(ev["data"]["pids"]["limit"], 20);
    // Streaming stops by itself when the container stops.
    let child = b
        .cmd()
        .args(["events", "--interval", "100ms", &b.id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    stdout_ok(b.rt(&["kill", &b.id, "KILL"]));
    let out = child.wait_with_output().unwrap();
    let n = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(n >= 2, "streamed {n} events");
}

#[test]
fn exec_joins_the_containers_namespaces_cgroup_and_security() {
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.spec["hostname"] = serde_json::json!("exec-box");
    b.spec["linux"]["seccomp"] = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
    b.run_detached();
    let init = b.state()["pid"].as_i64().unwrap();
    let o = b.rt(&["exec", &b.id, "sh", "-c",
        "hostname; readlink /proc/1/exe; readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; \
         grep -E '^(CapBnd|CapEff|NoNewPrivs|Seccomp):' /proc/self/status; mkdir /tmp/x 2>&1; exit 7"]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "exec-box", "same hostname (uts namespace): {out}");
    assert!(
        lines[1].ends_with("busybox"),
        "pid 1 is the container's init: {out}"
    );
    assert_eq!(
        lines[2],
        std::fs::read_link(format!("/proc/{init}/ns/pid"))
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(
        lines[3],
        std::fs::read_link(format!("/proc/{init}/ns/mnt"))
            .unwrap()
            .to_str()
            .unwrap()
    );
    let init_status = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    for key in ["CapBnd", "CapEff", "NoNewPrivs", "Seccomp"] {
        let want = init_status
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap();
        assert!(
            lines.contains(&want),
            "exec'd process differs from the init on {key}: {out}"
        );
    }
    assert!(
        out.contains("Operation not permitted"),
        "the container's seccomp filter applies: {out}"
    );

    // User, cwd, env overrides; detached with a pid file in the container's cgroup.
    let o = b.rt(&[
        "exec",
        "--user",
        "1000:1000",
        "--cwd",
        "/tmp",
        "--env",
        "FOO=bar",
        &b.id,
        "sh",
        "-c",
        "id -u; pwd; echo $FOO",
    ]);
    assert_eq!(
        stdout_ok(o).lines().collect::<Vec<_>>(),
        ["1000", "/tmp", "bar"]
    );
    let pf = b.dir.path().join("exec.pid");
    stdout_ok(b.rt(&[
        "exec",
        "--detach",
        "--pid-file",
        pf.to_str().unwrap(),
        &b.id,
        "sleep",
        "100",
    ]));
    let epid: i64 = std::fs::read_to_string(&pf).unwrap().parse().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{epid}/cgroup")).unwrap();
    assert!(
        cg.contains(&format!("pids:{CGROUP_TEST_ROOT}/{}", b.id)),
        "{cg}"
    );
    let pids: Vec<i64> =
        serde_json::from_str(&stdout_ok(b.rt(&["ps", "--format", "json", &b.id]))).unwrap();
    assert!(pids.contains(&epid));

    // --process FILE.
    let pj = b.dir.path().join("process.json");
    std::fs::write(&pj, r#"{"args": ["sh", "-c", "echo from-process-json $X"], "env": ["X=1", "PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0}}"#).unwrap();
    let o = b.rt(&["exec", "--process", pj.to_str().unwrap(), &b.id]);
    assert_eq!(stdout_ok(o), "from-process-json 1\n");

    // Errors: a missing program, a stopped container.
    let o = b.rt(&["exec", &b.id, "no-such-program"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no-such-program"));
    stdout_ok(b.rt(&["kill", &b.id, "KILL"]));
    assert!(process_gone(init));
    let o = b.rt(&["exec", &b.id, "true"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("stopped"));
}

/// A container without a pid namespace whose `exec`ed process moved into a child cgroup of
/// the container's cgroup (as one with a writable cgroup mount can do): returns the bundle and
/// that process's pid.
fn with_process_in_child_cgroup() -> (Bundle, i64) {
    let mut b = Bundle::new(&["sleep", "1000"]);
    b.without_pid_namespace();
    b.run_detached();
    let pf = b.dir.path().join("exec.pid");
    stdout_ok(b.rt(&[
        "exec",
        "--detach",
        "--pid-file",
        pf.to_str().unwrap(),
        &b.id,
        "sleep",
        "1001",
    ]));
    let pid: i64 = std::fs::read_to_string(&pf).unwrap().parse().unwrap();
    let cg = b.pids_cgroup_dir();
    std::fs::create_dir(cg.join("sub")).unwrap();
    std::fs::write(cg.join("sub/cgroup.procs"), pid.to_string()).unwrap();
    let own = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert!(
        !own.lines().any(|l| l.trim() == pid.to_string()),
        "{pid} still in the container's own cgroup.procs"
    );
    (b, pid)
}

#[test]
fn processes_in_child_cgroups_are_listed_and_killed() {
    let (b, pid) = with_process_in_child_cgroup();
    let init = b.state()["pid"].as_i64().unwrap();
    let pids: Vec<i64> =
        serde_json::from_str(&stdout_ok(b.rt(&["ps", "--format", "json", &b.id]))).unwrap();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.contains(&init) && pids.contains(&pid), "{pids:?}");
    let table = stdout_ok(b.rt(&["ps", &b.id, "--", "-o", "pid,args"]));
    assert!(table.contains("sleep 1001"), "{table}");

    stdout_ok(b.rt(&["kill", "--all", &b.id, "KILL"]));
    assert!(process_gone(pid), "{pid} survived kill --all");
    assert!(process_gone(init), "init {init} survived kill --all");
    stdout_ok(b.rt(&["delete", &b.id]));
    for p in b.cgroup_dirs() {
        assert!(!p.exists(), "cgroup left: {}", p.display());
    }
}

#[test]
fn delete_force_kills_processes_in_child_cgroups() {
    let (b, pid) = with_process_in_child_cgroup();
    stdout_ok(b.rt(&["delete", "--force", &b.id]));
    assert!(process_gone(pid), "{pid} survived delete --force");
    assert!(!b.root.path().join(&b.id).exists(), "state dir left");
    for p in b.cgroup_dirs() {
        assert!(!p.exists(), "cgroup left: {}", p.display());
    }
}
