//! runtime-spec hooks: each at its moment, in its namespace, with the state on stdin; a hook
//! that hangs is stopped at its timeout, and a failing createRuntime hook leaves nothing.

mod common;

use common::*;
use serde_json::json;

/// A hook that appends `<kind> <status> <mount ns>` to `log`.
fn hook(kind: &str, log: &str) -> serde_json::Value {
    let script = format!(
        "s=$(cat); st=$(echo \"$s\" | sed -n 's/.*\"status\":\"\\([a-z]*\\)\".*/\\1/p'); \
         echo \"{kind} $st $(readlink /proc/self/ns/mnt)\" >> {log}"
    );
    json!({"path": "/bin/sh", "args": ["sh", "-c", script], "env": ["PATH=/bin:/usr/bin"]})
}

#[test]
fn hooks_run_in_order_in_their_namespaces_with_the_state() {
    let logdir = tempfile::tempdir().unwrap();
    let host_log = logdir.path().join("log");
    let host_log = host_log.to_str().unwrap();
    let mut b = Bundle::new(&["sh", "-c", "echo program-ran >> /hooklog/log"]);
    b.spec["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/hooklog", "type": "bind", "source": logdir.path(), "options": ["rbind", "rw"]}));
    b.spec["hooks"] = json!({
        "prestart": [hook("prestart", host_log)],
        "createRuntime": [hook("createRuntime", host_log)],
        "createContainer": [hook("createContainer", host_log)],
        // Resolved and run inside the container, after pivot_root.
        "startContainer": [hook("startContainer", "/hooklog/log")],
        "poststart": [hook("poststart", host_log)],
        "poststop": [hook("poststop", host_log)]
    });
    b.run_ok();
    let text = std::fs::read_to_string(host_log).unwrap();
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    // poststart runs after start returns; the program may print before or after it.
    let mut without_program = kinds.clone();
    without_program.retain(|k| *k != "program-ran");
    assert_eq!(
        without_program,
        [
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{text}"
    );
    assert!(kinds.contains(&"program-ran"));
    let host_mnt = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let host_mnt = host_mnt.to_str().unwrap();
    let by_kind = |k: &str| lines.iter().find(|l| l[0] == k).unwrap().clone();
    for k in ["prestart", "createRuntime", "poststart", "poststop"] {
        assert_eq!(
            by_kind(k)[2],
            host_mnt,
            "{k} runs in the runtime's namespace"
        );
    }
    for k in ["createContainer", "startContainer"] {
        assert_ne!(
            by_kind(k)[2],
            host_mnt,
            "{k} runs in the container's namespace"
        );
    }
    assert_eq!(by_kind("createContainer")[2], by_kind("startContainer")[2]);
    assert_eq!(by_kind("createRuntime")[1], "creating");
    assert_eq!(by_kind("poststart")[1], "running");
    assert_eq!(by_kind("poststop")[1], "stopped");
}

fn assert_nothing_left(b: &Bundle) {
    assert!(!b.root.path().join(&b.id).exists(), "state dir left");
    for p in b.cgroup_dirs() {
        assert!(!p.exists(), "cgroup left: {}", p.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(b.dir.path().to_str().unwrap()),
        "mount left"
    );
}

#[test]
fn a_failing_create_runtime_hook_leaves_nothing() {
    let mut b = Bundle::new(&["true"]);
    b.spec["hooks"] = json!({"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", "echo hook-says-no >&2; exit 4"]}]});
    b.write();
    let o = b.rt(&["create", "--bundle", b.dir.path().to_str().unwrap(), &b.id]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("hooks.createRuntime[0]")
            && e.contains("status 4")
            && e.contains("hook-says-no"),
        "{e}"
    );
    assert_nothing_left(&b);
}

#[test]
fn a_hanging_hook_is_stopped_at_its_timeout() {
    let mut b = Bundle::new(&["true"]);
    b.spec["hooks"] = json!({"createContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", "sleep 60"], "timeout": 1}]});
    b.write();
    let t = std::time::Instant::now();
    let o = b.rt(&["create", "--bundle", b.dir.path().to_str().unwrap(), &b.id]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("timed out"), "{e}");
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
    assert_nothing_left(&b);
}

#[test]
fn a_failing_start_container_hook_fails_start() {
    let mut b = Bundle::new(&["sh", "-c", "echo should-not-run"]);
    b.spec["hooks"] = json!({"startContainer": [
        {"path": "/bin/sh", "args": ["sh", "-c", "exit 9"]}]});
    let (code, out, err) = b.run();
    assert_ne!(code, 0);
    assert!(!out.contains("should-not-run"), "{out}");
    assert!(
        err.contains("hooks.startContainer[0]") && err.contains("status 9"),
        "{err}"
    );
    assert_nothing_left(&b);
}
