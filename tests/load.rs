//! Load and leaks: 1000 create/start/kill/delete cycles through `pouch-runtime`, native and
//! wasm containers in turn, then 50 containers living at once (each of 50 workers running
//! several cycles). Afterwards nothing may be left: no process (orphans come to this process,
//! a child subreaper), no cgroup, no state directory, no mount under the bundles or rootfs, no
//! descriptor of the caller.

mod common;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use common::leaks::{become_subreaper, children, reap_orphans, Baseline};
use common::wasm_bundle::examples;
use common::*;
use serde_json::{json, Value};

const CYCLES: usize = 1000;
const PARALLEL: usize = 50;
const ROUNDS_PER_WORKER: usize = 4;

/// The shared parts: one state root, one wasm cache, the two root filesystems, and a cgroup
/// parent under which every container of the test gets its own cgroup.
struct Fleet {
    root: tempfile::TempDir,
    cache: tempfile::TempDir,
    wasm_rootfs: tempfile::TempDir,
    bundles: tempfile::TempDir,
    cgroup_parent: String,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Native,
    Wasm,
}

impl Fleet {
    fn new() -> Fleet {
        let wasm_rootfs = tempfile::tempdir().unwrap();
        std::fs::create_dir(wasm_rootfs.path().join("app")).unwrap();
        std::fs::copy(
            examples().join("sleep.wasm"),
            wasm_rootfs.path().join("app/sleep.wasm"),
        )
        .unwrap();
        Fleet {
            root: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
            wasm_rootfs,
            bundles: tempfile::tempdir().unwrap(),
            cgroup_parent: format!("{CGROUP_TEST_ROOT}/{}", unique("load")),
        }
    }

    fn rt(&self, args: &[&str]) -> Output {
        let mut c = std::process::Command::new(runtime_bin());
        c.arg("--root")
            .arg(self.root.path())
            .arg("--wasm-cache")
            .arg(self.cache.path())
            .args(args);
        run_captured(&mut c)
    }

    fn ok(&self, args: &[&str]) -> Result<String, String> {
        let o = self.rt(args);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(format!(
                "{args:?}: {:?}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    }

    /// Writes the bundle `slot` for container number `n` of `kind`; returns its directory.
    fn bundle(&self, slot: &str, n: usize, kind: Kind) -> PathBuf {
        let dir = self.bundles.path().join(slot);
        std::fs::create_dir_all(&dir).unwrap();
        let mut spec = pouch::spec::default_spec_json();
        spec["process"]["terminal"] = json!(false);
        match kind {
            Kind::Native => {
                spec["process"]["args"] = json!(["sleep", "600"]);
                spec["root"] = json!({"path": busybox_rootfs(), "readonly": true});
            }
            Kind::Wasm => {
                spec["process"]["args"] = json!(["/app/sleep.wasm", "600"]);
                spec["root"] = json!({"path": self.wasm_rootfs.path(), "readonly": true});
            }
        }
        spec["linux"]["cgroupsPath"] = json!(format!("{}/{n}", self.cgroup_parent));
        std::fs::write(dir.join("config.json"), spec.to_string()).unwrap();
        dir
    }

    fn status(&self, id: &str) -> Result<String, String> {
        let v: Value = serde_json::from_str(&self.ok(&["state", id])?)
            .map_err(|e| format!("state {id}: {e}"))?;
        Ok(v["status"].as_str().unwrap_or("").to_string())
    }

    /// Waits (10 s at most) for container `id` to reach `want`.
    fn wait_status(&self, id: &str, want: &str) -> Result<(), String> {
        let t = Instant::now();
        loop {
            let s = self.status(id)?;
            if s == want {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!("{id} is {s}, not {want}, after 10 s"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn create_start(&self, slot: &str, n: usize, kind: Kind) -> Result<String, String> {
        let id = format!("c{n}");
        let dir = self.bundle(slot, n, kind);
        self.ok(&["create", "--bundle", dir.to_str().unwrap(), &id])?;
        self.ok(&["start", &id])?;
        self.wait_status(&id, "running")?;
        Ok(id)
    }

    fn kill_delete(&self, id: &str) -> Result<(), String> {
        self.ok(&["kill", id, "KILL"])?;
        self.wait_status(id, "stopped")?;
        self.ok(&["delete", id])?;
        Ok(())
    }

    /// Asserts that nothing of any container is left.
    fn assert_clean(&self, what: &str, base: &Baseline) {
        base.assert_clean(
            what,
            self.root.path(),
            &format!("{}/0", self.cgroup_parent),
            &[
                self.bundles.path(),
                self.wasm_rootfs.path(),
                busybox_rootfs(),
            ],
        );
        // Not one container cgroup under the parent, in any hierarchy.
        for parent in cgroup_dirs_of(&self.cgroup_parent) {
            let left: Vec<_> = std::fs::read_dir(&parent)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.file_name())
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                left.is_empty(),
                "{what}: cgroups left in {}: {left:?}",
                parent.display()
            );
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Whatever a failed run left, then the (empty) parent cgroups.
        if let Ok(ids) = self.ok(&["list", "-q"]) {
            for id in ids.lines() {
                let _ = self.rt(&["delete", "--force", id]);
            }
        }
        for parent in cgroup_dirs_of(&self.cgroup_parent) {
            if let Ok(d) = std::fs::read_dir(&parent) {
                for e in d
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
    }
}

fn kind_of(n: usize) -> Kind {
    if n % 2 == 0 {
        Kind::Native
    } else {
        Kind::Wasm
    }
}

#[test]
fn a_thousand_cycles_then_fifty_at_once_leave_nothing_behind() {
    become_subreaper();
    let fleet = Fleet::new();
    let base = Baseline::take();

    // 1. One after the other.
    let t = Instant::now();
    for n in 0..CYCLES {
        let kind = kind_of(n);
        let slot = format!("{kind:?}");
        let id = fleet
            .create_start(&slot, n, kind)
            .unwrap_or_else(|e| panic!("cycle {n} ({kind:?}): {e}"));
        fleet
            .kill_delete(&id)
            .unwrap_or_else(|e| panic!("cycle {n} ({kind:?}): {e}"));
        // The killed inits are ours to reap (no command runs now).
        if n % 50 == 49 {
            let alive: Vec<_> = reap_orphans();
            assert!(alive.is_empty(), "after cycle {n}: {alive:?}");
        }
    }
    eprintln!("{CYCLES} sequential cycles: {:.1?}", t.elapsed());
    fleet.assert_clean(&format!("after {CYCLES} cycles"), &base);

    // 2. Fifty workers: in the first round all fifty containers run at the same moment.
    let t = Instant::now();
    let all_up = Barrier::new(PARALLEL + 1);
    let checked = Barrier::new(PARALLEL + 1);
    let errors: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..PARALLEL)
            .map(|w| {
                let (fleet, all_up, checked) = (&fleet, &all_up, &checked);
                s.spawn(move || -> Result<(), String> {
                    let slot = format!("w{w}");
                    for round in 0..ROUNDS_PER_WORKER {
                        let n = CYCLES + round * PARALLEL + w;
                        let up = fleet.create_start(&slot, n, kind_of(n));
                        if round == 0 {
                            all_up.wait();
                            checked.wait();
                        }
                        fleet.kill_delete(&up?)?;
                    }
                    Ok(())
                })
            })
            .collect();
        all_up.wait();
        let running = fleet
            .ok(&["list", "--format", "json"])
            .map(|l| {
                serde_json::from_str::<Vec<Value>>(&l)
                    .unwrap()
                    .iter()
                    .filter(|s| s["status"] == "running")
                    .count()
            })
            .unwrap_or(0);
        checked.wait();
        let mut errors: Vec<String> = workers
            .into_iter()
            .enumerate()
            .filter_map(|(w, h)| h.join().unwrap().err().map(|e| format!("worker {w}: {e}")))
            .collect();
        if running != PARALLEL {
            errors.push(format!("{running} of {PARALLEL} containers ran at once"));
        }
        errors
    });
    assert!(errors.is_empty(), "{errors:#?}");
    eprintln!(
        "{PARALLEL} workers x {ROUNDS_PER_WORKER} cycles: {:.1?}",
        t.elapsed()
    );
    fleet.assert_clean(
        &format!("after {PARALLEL} in parallel x {ROUNDS_PER_WORKER}"),
        &base,
    );
    assert!(children().is_empty());
}
