//! What a container may leave behind: mounts in the caller's mount namespace under the
//! container's paths, descriptors of the caller (counted before and after), processes (orphans
//! come to the test process, made a child subreaper), cgroup directories, state directories.

use std::path::Path;
use std::time::{Duration, Instant};

/// Makes this process the reaper of its orphaned descendants: a container process that outlived
/// the runtime then shows up as our child instead of vanishing into the host's init.
pub fn become_subreaper() {
    // SAFETY: a prctl without pointers.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Our children now: (pid, state letter, command name). Zombies included.
pub fn children() -> Vec<(i32, char, String)> {
    let me = std::process::id() as i32;
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let name = head.split_once(" (").map(|x| x.1).unwrap_or("").to_string();
        let mut f = rest.split(' ');
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if f.next().and_then(|p| p.parse::<i32>().ok()) == Some(me) {
            v.push((pid, state, name));
        }
    }
    v
}

/// Waits (5 s at most) until we have no children left, reaping the zombies (orphans handed to
/// us): call it only when no command of this process runs. Returns those still alive.
pub fn reap_orphans() -> Vec<(i32, char, String)> {
    let t = Instant::now();
    loop {
        let kids = children();
        for (pid, st, _) in &kids {
            if *st == 'Z' {
                // SAFETY: reaping a zombie child of ours.
                unsafe { libc::waitpid(*pid, std::ptr::null_mut(), libc::WNOHANG) };
            }
        }
        let alive: Vec<_> = children().into_iter().filter(|c| c.1 != 'Z').collect();
        if alive.is_empty() || t.elapsed() > Duration::from_secs(5) {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The mount points (of this process's mount namespace) at or under any of `paths`.
pub fn mounts_under(paths: &[&Path]) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| paths.iter().any(|p| Path::new(mp).starts_with(p)))
        .map(str::to_string)
        .collect()
}

/// The descriptors of this process at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    pub fds: usize,
}

impl Baseline {
    pub fn take() -> Baseline {
        Baseline {
            fds: std::fs::read_dir("/proc/self/fd").unwrap().count(),
        }
    }

    /// Asserts nothing was left behind since the baseline: no descriptor, no child process,
    /// no mount under `paths` (the bundles, rootfs, state root), nothing under `cgroup` (an
    /// absolute cgroup path, in any hierarchy) and nothing in the state root `state_root`.
    /// `what` names the situation in the failure message.
    pub fn assert_clean(&self, what: &str, state_root: &Path, cgroup: &str, paths: &[&Path]) {
        let alive = reap_orphans();
        assert!(alive.is_empty(), "{what}: processes left: {alive:?}");
        let now = Baseline::take();
        assert_eq!(now, *self, "{what}: the caller's descriptors changed");
        let mut all = paths.to_vec();
        all.push(state_root);
        let mounts = mounts_under(&all);
        assert!(mounts.is_empty(), "{what}: mounts left: {mounts:?}");
        let cgroups: Vec<_> = super::cgroup_dirs_of(cgroup)
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        assert!(cgroups.is_empty(), "{what}: cgroups left: {cgroups:?}");
        let states: Vec<_> = std::fs::read_dir(state_root)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            states.is_empty(),
            "{what}: state left in {}: {states:?}",
            state_root.display()
        );
    }
}
