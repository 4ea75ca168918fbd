//! Fault injection into the runtime: `pouch-runtime` killed with SIGKILL at each step of
//! `create`, `start` and `delete` (the steps of `pouch::runtime::FAULT_STEPS`, reached through
//! the `POUCH_FAULT_KILL_AT` hook), for a native and a wasm container. After each death the
//! state must read consistently (`state` and `list` answer, and agree with whether the id is
//! taken), `delete --force` must remove everything (processes, cgroups, state directory; no
//! mount or descriptor of the caller changes), and the same id must work again.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::sync::Mutex;

use common::leaks::{become_subreaper, Baseline};
use common::wasm_bundle::WasmBundle;
use common::*;
use serde_json::{json, Value};

/// One test at a time: orphans are reaped by this process, which must not reap the commands
/// of another test.
static SERIAL: Mutex<()> = Mutex::new(());

#[derive(Clone, Copy, Debug)]
enum Kind {
    Native,
    Wasm,
}

/// A bundle of either kind, run by the runtime with a private state root (and wasm cache).
struct Case {
    b: Bundle,
    cache: Option<tempfile::TempDir>,
}

impl Case {
    fn new(kind: Kind) -> Case {
        match kind {
            Kind::Native => Case {
                b: Bundle::new(&["sleep", "60"]),
                cache: None,
            },
            Kind::Wasm => {
                let WasmBundle { b, cache, .. } = WasmBundle::new(&["/app/sleep.wasm", "60"]);
                Case {
                    b,
                    cache: Some(cache),
                }
            }
        }
    }

    /// The runtime with `args`; with `fault`, told to kill itself at that step.
    fn rt(&self, args: &[&str], fault: Option<&str>) -> Output {
        let mut c = self.b.cmd();
        if let Some(cache) = &self.cache {
            c.arg("--wasm-cache").arg(cache.path());
        }
        c.args(args);
        if let Some(step) = fault {
            c.env(pouch::runtime::FAULT_ENV, step);
        }
        run_captured(&mut c)
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.rt(args, None);
        assert!(
            o.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn create_args(&self) -> Vec<String> {
        vec![
            "create".into(),
            "--bundle".into(),
            self.b.dir.path().display().to_string(),
            self.b.id.clone(),
        ]
    }

    /// Where a mount of this container could show on the host.
    fn paths(&self) -> Vec<&std::path::Path> {
        vec![self.b.dir.path(), busybox_rootfs()]
    }

    fn cgroup(&self) -> String {
        format!("{CGROUP_TEST_ROOT}/{}", self.b.id)
    }
}

fn killed_at(step: &str, o: &Output) {
    assert_eq!(
        o.status.signal(),
        Some(libc::SIGKILL),
        "the runtime was to die at {step}, yet it ended with {:?} (step never reached?): {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// What `state`, `list` and `create` say after the death must agree.
fn assert_consistent(c: &Case, step: &str) {
    let id = &c.b.id;
    let st = c.rt(&["state", id], None);
    let listed: Vec<Value> = serde_json::from_str(&c.ok(&["list", "--format", "json"]))
        .unwrap_or_else(|e| panic!("{step}: list --format json: {e}"));
    let in_list = listed.iter().any(|s| s["id"] == json!(id));
    if st.status.success() {
        let v: Value = serde_json::from_slice(&st.stdout)
            .unwrap_or_else(|e| panic!("{step}: state is not JSON ({e})"));
        assert_eq!(v["id"], json!(id), "{step}: {v}");
        let status = v["status"].as_str().unwrap_or("");
        assert!(
            ["created", "running", "stopped"].contains(&status),
            "{step}: status {status:?} after the runtime died (nobody is creating it now)"
        );
        assert!(in_list, "{step}: state knows {id} but list does not");
        // The id is taken: a second create says so.
        let again = c.rt(
            &c.create_args()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
            None,
        );
        assert!(!again.status.success(), "{step}: created {id} twice");
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(err.contains("already exists"), "{step}: {err}");
    } else {
        let err = String::from_utf8_lossy(&st.stderr);
        assert!(
            err.contains("does not exist"),
            "{step}: state failed: {err}"
        );
        assert!(!in_list, "{step}: list shows {id}, state does not know it");
        assert!(
            !c.b.root.path().join(id).exists(),
            "{step}: {id} is unknown to state, yet its directory is there"
        );
    }
}

fn kill_at_each_step(kind: Kind) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    become_subreaper();
    for &step in pouch::runtime::FAULT_STEPS {
        let what = format!("{kind:?} container, runtime killed at {step}");
        let base = Baseline::take();
        let mut c = Case::new(kind);
        c.b.write();
        let create = c.create_args();
        let create: Vec<&str> = create.iter().map(|s| s.as_str()).collect();
        let id = c.b.id.clone();
        match step.split(':').next().unwrap() {
            "create" => killed_at(step, &c.rt(&create, Some(step))),
            "start" => {
                c.ok(&create);
                killed_at(step, &c.rt(&["start", &id], Some(step)));
            }
            "delete" => {
                c.ok(&create);
                c.ok(&["start", &id]);
                killed_at(step, &c.rt(&["delete", "--force", &id], Some(step)));
            }
            other => panic!("unknown verb in fault step {other}"),
        }
        assert_consistent(&c, &what);
        if step == "start:connected" {
            // The init took the connection and runs the program; the state says created until
            // the next `start`, which finds nobody listening, says so and sets it right.
            let again = c.rt(&["start", &id], None);
            let err = String::from_utf8_lossy(&again.stderr);
            assert!(
                !again.status.success() && err.contains("started already"),
                "{what}: second start: {err}"
            );
            assert_eq!(c.b.state()["status"], "running", "{what}");
        }
        c.ok(&["delete", "--force", &id]);
        base.assert_clean(&what, c.b.root.path(), &c.cgroup(), &c.paths());

        // The same id works again, to the end.
        c.b.spec["process"]["args"] = match kind {
            Kind::Native => json!(["sh", "-c", "echo again"]),
            Kind::Wasm => json!(["/app/hello.wasm"]),
        };
        c.b.write();
        let mut run = create.clone();
        run[0] = "run";
        let out = c.ok(&run);
        let expected = match kind {
            Kind::Native => "again",
            Kind::Wasm => "hello from wasm",
        };
        assert!(out.contains(expected), "{what}: the next run said {out:?}");
        c.ok(&["delete", "--force", &id]);
        base.assert_clean(
            &format!("{what}, then run again"),
            c.b.root.path(),
            &c.cgroup(),
            &c.paths(),
        );
    }
}

#[test]
fn native_runtime_killed_at_each_step_leaves_a_consistent_state() {
    kill_at_each_step(Kind::Native);
}

#[test]
fn wasm_runtime_killed_at_each_step_leaves_a_consistent_state() {
    kill_at_each_step(Kind::Wasm);
}

/// A create that died between making its temporary directory and renaming it into place: the
/// id stays free, and the leftover is not listed (the next creates sweep it once it is old).
#[test]
fn a_half_made_reservation_does_not_take_the_id() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = Case::new(Kind::Native);
    let stale = c.b.root.path().join("~new-1-0");
    std::fs::create_dir_all(&stale).unwrap();
    assert_eq!(c.ok(&["list", "--format", "json"]).trim(), "[]");
    c.b.write();
    let create = c.create_args();
    c.ok(&create.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_eq!(c.b.state()["status"], "created");
    c.ok(&["delete", "--force", &c.b.id]);
    // Young leftovers are kept (they may be a create in progress), old ones go.
    assert!(stale.exists());
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    c.ok(&create.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert!(!stale.exists(), "a stale reservation survived a create");
    c.ok(&["delete", "--force", &c.b.id]);
}
