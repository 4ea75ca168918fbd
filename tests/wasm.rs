//! The wasm executor through `pouch-runtime`: dispatch, WASI (args, env, stdio, files, exit
//! codes), traps, kill, memory limits, components, the compile cache, and the sandbox around
//! the guest (cgroup, namespaces, seccomp, capabilities), with the programs of wasm-examples/.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

use common::wasm_bundle::WasmBundle;

/// With the greeting the hello example prints.
fn hello_bundle(args: &[&str]) -> WasmBundle {
    let mut w = WasmBundle::new(args);
    w.b.spec["process"]["env"] = json!(["PATH=/app", "POUCH_GREETING=hi there"]);
    w
}

#[test]
fn hello_gets_args_env_stdio_and_exit_code() {
    let w = hello_bundle(&["/app/hello.wasm", "one", "two words", "--exit", "7"]);
    let (code, out, err) = w.run();
    assert_eq!(code, 7, "{err}");
    assert_eq!(
        out,
        "hello from wasm\narg[0]=/app/hello.wasm\narg[1]=one\narg[2]=two words\narg[3]=--exit\narg[4]=7\nenv POUCH_GREETING=hi there\n"
    );
    assert!(err.contains("to stderr"), "{err}");
    // Found through PATH, by name; stdin reaches the guest.
    let w = WasmBundle::new(&["hello.wasm", "--stdin"]);
    w.b.write();
    let mut c = w.cmd();
    c.args(["run", "--bundle", w.b.dir.path().to_str().unwrap(), &w.b.id]);
    let input = w.b.dir.path().join("input");
    std::fs::write(&input, "line1\nline2\n").unwrap();
    c.stdin(std::fs::File::open(&input).unwrap())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("stdin: line1\nstdin: line2\n"), "{text}");
}

#[test]
fn exit_codes_and_traps() {
    assert_eq!(WasmBundle::new(&["/app/exit.wasm"]).run().0, 42);
    let (code, _, err) = WasmBundle::new(&["/app/trap.wasm"]).run();
    assert_eq!(code, 134);
    assert!(
        err.contains("wasm trap") && err.contains("unreachable"),
        "{err}"
    );
}

#[test]
fn files_are_the_containers_not_the_hosts() {
    let host_secret = tempfile::tempdir().unwrap();
    std::fs::write(host_secret.path().join("secret"), "host secret").unwrap();
    let secret = host_secret.path().join("secret");
    let w = WasmBundle::new(&["/app/fs.wasm", "read", "/app/inside.txt"]);
    let (code, out, _) = w.run();
    assert_eq!((code, out.as_str()), (0, "inside the container\n"));
    // The host's file at the same path is not there.
    let w = WasmBundle::new(&["/app/fs.wasm", "read", secret.to_str().unwrap()]);
    let (code, out, _) = w.run();
    assert_eq!(code, 2, "{out}");
    assert!(!out.contains("host secret"));
    // `..` cannot climb out of the preopen either.
    let w = WasmBundle::new(&["/app/fs.wasm", "read", "/../../../../etc/hostname"]);
    let (_, out, _) = w.run();
    assert!(!out.contains(&std::fs::read_to_string("/etc/hostname").unwrap()));
    // A read-only root refuses writes; a tmpfs mount takes them.
    let w = WasmBundle::new(&["/app/fs.wasm", "write", "/app/new.txt", "x"]);
    let (code, out, _) = w.run();
    assert_eq!(code, 3, "{out}");
    let w = WasmBundle::new(&["/app/fs.wasm", "write", "/tmp/new.txt", "x"]);
    let (code, out, _) = w.run();
    assert_eq!(code, 0, "{out}");
}

#[test]
fn kill_stops_a_guest_spinning_in_wasm_and_one_asleep_in_a_host_call() {
    for (prog, sig, want) in [
        ("/app/loop.wasm", "KILL", 137),
        ("/app/loop.wasm", "TERM", 143),
        ("/app/sleep.wasm", "TERM", 143),
    ] {
        let w = WasmBundle::new(&[prog]);
        let mut child = w.spawn_running();
        std::thread::sleep(Duration::from_millis(100));
        stdout_ok(w.rt(&["kill", &w.b.id, sig]));
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(want), "{prog} with SIG{sig}");
    }
}

#[test]
fn memory_limit_caps_the_guest() {
    let mut w = WasmBundle::new(&["/app/alloc.wasm", "400"]);
    w.b.spec["linux"]["resources"]["memory"] = json!({"limit": 128 * 1024 * 1024});
    let (code, out, _) = w.run();
    assert_eq!(code, 12, "{out}");
    let mib: u32 = out
        .lines()
        .last()
        .unwrap()
        .trim_start_matches("allocation failed at ")
        .trim_end_matches(" MiB")
        .parse()
        .unwrap();
    assert!(mib < 128, "grew to {mib} MiB past a 128 MiB limit");
    // Without a limit it gets what it asks for.
    let (code, out, _) = WasmBundle::new(&["/app/alloc.wasm", "64"]).run();
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_component_runs() {
    // WASI 0.2's wasi:cli/exit carries success or failure only: a failing status becomes 1.
    let (code, out, err) = hello_bundle(&["/app/hello.component.wasm", "c1", "--exit", "5"]).run();
    assert_eq!(code, 1, "{err}");
    assert_eq!(WasmBundle::new(&["/app/hello.component.wasm"]).run().0, 0);
    assert!(
        out.starts_with("hello from wasm\narg[0]=/app/hello.component.wasm\narg[1]=c1\n"),
        "{out}"
    );
    assert!(out.contains("env POUCH_GREETING=hi there"));
}

#[test]
fn the_second_create_is_a_cache_hit() {
    let w = WasmBundle::new(&["/app/hello.wasm"]);
    w.b.write();
    let run = |id: &str| {
        let o = w.rt(&[
            "--debug",
            "run",
            "--bundle",
            w.b.dir.path().to_str().unwrap(),
            id,
        ]);
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let first = run(&format!("{}-a", w.b.id));
    assert!(
        first.contains("wasm cache: stored") && !first.contains("cache hit"),
        "{first}"
    );
    let second = run(&format!("{}-b", w.b.id));
    assert!(second.contains("wasm cache hit"), "{second}");
    let o = w.rt(&["wasm-cache", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["entries"], 1);
    // A damaged entry is not trusted: recompiled and replaced.
    let entry = std::fs::read_dir(w.cache.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    let mut data = std::fs::read(&entry).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&entry, &data).unwrap();
    let third = run(&format!("{}-c", w.b.id));
    assert!(
        third.contains("damaged") && third.contains("wasm cache: stored"),
        "{third}"
    );
}

#[test]
fn dispatch_rules_through_the_runtime() {
    // Forced wasm on an ELF: a clear error, nothing left.
    let mut b = Bundle::new(&["/bin/busybox", "true"]);
    b.spec["annotations"] = json!({"run.oci.handler": "wasm"});
    let (code, _, err) = b.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("not a wasm binary") && err.contains("7f 45 4c 46"),
        "{err}"
    );
    // Any other handler keeps a native program native.
    let mut b = Bundle::new(&["true"]);
    b.spec["annotations"] = json!({"run.oci.handler": "krun"});
    assert_eq!(b.run().0, 0);
}

#[test]
fn the_guest_runs_inside_the_sandbox() {
    let mut w = WasmBundle::new(&["/app/sleep.wasm"]);
    w.b.spec["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
    w.b.write();
    let o = w.rt(&[
        "run",
        "-d",
        "--bundle",
        w.b.dir.path().to_str().unwrap(),
        &w.b.id,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let st: serde_json::Value = serde_json::from_slice(&w.rt(&["state", &w.b.id]).stdout).unwrap();
    let pid = st["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(
        field("Seccomp:"),
        "2",
        "the spec's seccomp filter is on the wasm process"
    );
    assert_eq!(field("NoNewPrivs:"), "1");
    let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    assert_eq!(
        eff,
        (1 << 5) | (1 << 10) | (1 << 29),
        "the spec's capabilities only"
    );
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        cg.contains(&format!("memory:{CGROUP_TEST_ROOT}/{}", w.b.id)),
        "{cg}"
    );
    for ns in ["pid", "net", "mnt", "uts", "ipc"] {
        assert_ne!(
            std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap(),
            std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap(),
            "{ns} namespace"
        );
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(
        exe.ends_with("pouch-runtime"),
        "wasmtime runs in the runtime's own init: {}",
        exe.display()
    );
}

#[test]
fn a_time_limit_annotation_stops_the_guest() {
    let mut w = WasmBundle::new(&["/app/loop.wasm"]);
    w.b.spec["annotations"] = json!({"pouch.wasm/timeout": "500ms"});
    let t = std::time::Instant::now();
    let (code, out, _) = w.run();
    assert_eq!(code, 124, "{out}");
    assert!(t.elapsed() < Duration::from_secs(20));
    let mut w = WasmBundle::new(&["/app/loop.wasm"]);
    w.b.spec["annotations"] = json!({"pouch.wasm/timeout": "soon"});
    let (code, _, err) = w.run();
    assert_ne!(code, 0);
    assert!(
        err.contains("pouch.wasm/timeout") && err.contains("soon"),
        "{err}"
    );
}

#[test]
fn exec_into_a_wasm_container_says_it_is_not_implemented() {
    let w = WasmBundle::new(&["/app/sleep.wasm"]);
    let mut child = w.spawn_running();
    let o = w.rt(&["exec", &w.b.id, "/bin/sh", "-c", "true"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("wasm") && err.contains("not implemented"),
        "{err}"
    );
    stdout_ok(w.rt(&["kill", &w.b.id, "KILL"]));
    child.wait().unwrap();
}
