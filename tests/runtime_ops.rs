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
    b.write();
    stdout_ok(b.rt(&[
        "run",
        "-d",
        "--bundle",
        b.dir.path().to_str().unwrap(),
        &b.id,
    ]));
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
    for r in &rows {
        let p: i64 = r.split_whitespace().next().unwrap().parse().unwrap();
        assert!(
            pids.contains(&p),
            "ps shows a process outside the container: {r}"
        );
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
    std::thread::sleep(Duration::from_millis(350));
    stdout_ok(b.rt(&["kill", &b.id, "KILL"]));
    let out = child.wait_with_output().unwrap();
    let n = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(n >= 2, "streamed {n} events");
}
