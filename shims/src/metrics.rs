//! Task metrics from the cgroup of a container's init, in containerd's formats: the cgroups v1
//! `io.containerd.cgroups.v1.Metrics` when the memory, cpuacct and pids controllers are v1
//! hierarchies (v1 and hybrid hosts), else `io.containerd.cgroups.v2.Metrics` (pure v2); and
//! the cgroup's OOM-kill counter ([`OomCounter`]), behind the TaskOOM events.

use std::collections::HashMap;
use std::path::PathBuf;

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageDyn;

/// The cgroup mounts of this host: each v1 controller's mount point (from the super options of
/// the `cgroup` mounts, named hierarchies as `name=...`), and the cgroup2 mount, if any.
struct Mounts {
    v1: HashMap<String, PathBuf>,
    unified: Option<PathBuf>,
}

fn cgroup_mounts() -> std::io::Result<Mounts> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut mounts = Mounts {
        v1: HashMap::new(),
        unified: None,
    };
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        let fstype = post.next();
        let Some(mp) = pre.split(' ').nth(4) else {
            continue;
        };
        match fstype {
            Some("cgroup") => {
                let Some(opts) = post.nth(1) else { continue };
                for o in opts.split(',') {
                    mounts
                        .v1
                        .entry(o.to_owned())
                        .or_insert_with(|| PathBuf::from(mp));
                }
            }
            Some("cgroup2") if mounts.unified.is_none() => {
                mounts.unified = Some(PathBuf::from(mp));
            }
            _ => {}
        }
    }
    Ok(mounts)
}

/// The cgroup directories of `pid`: each v1 controller's (controller name → directory), and
/// its cgroup2 directory, if the host mounts cgroup2.
fn cgroup_dirs(pid: u32) -> std::io::Result<(HashMap<String, PathBuf>, Option<PathBuf>)> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let mounts = cgroup_mounts()?;
    let mut dirs = HashMap::new();
    let mut unified = None;
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(hier), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if hier == "0" && ctrls.is_empty() {
            unified = mounts.unified.as_ref().map(|mp| mp.join(path));
            continue;
        }
        for c in ctrls.split(',').filter(|c| !c.is_empty()) {
            if let Some(mp) = mounts.v1.get(c) {
                dirs.insert(c.to_owned(), mp.join(path));
            }
        }
    }
    Ok((dirs, unified))
}

/// The directory of each v1 controller of `pid`'s cgroup: controller name → directory.
fn v1_dirs(pid: u32) -> std::io::Result<HashMap<String, PathBuf>> {
    Ok(cgroup_dirs(pid)?.0)
}

/// The OOM-kill counter of a container's memory cgroup: `oom_kill` of v1's
/// `memory.oom_control` (v1 and hybrid hosts), else of v2's `memory.events`. The shim finds it
/// from the init's cgroup at Create; the cgroup outlives the init until `pouch-runtime delete`,
/// so the counter can still be read once the init has been reaped.
#[derive(Debug)]
pub struct OomCounter {
    file: PathBuf,
    /// The count the shim has reported (or found at Create).
    seen: std::sync::atomic::AtomicU64,
}

impl OomCounter {
    /// The counter of the memory cgroup `pid` is in; `None` when the host has no memory
    /// controller, or the process is gone.
    pub fn of_pid(pid: u32) -> Option<OomCounter> {
        let (v1, unified) = cgroup_dirs(pid).ok()?;
        let file = match v1.get("memory") {
            Some(dir) => dir.join("memory.oom_control"),
            None => unified?.join("memory.events"),
        };
        let seen = read_oom_kill(&file)?;
        Some(OomCounter {
            file,
            seen: seen.into(),
        })
    }

    /// The file read (`memory.oom_control` or `memory.events`).
    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// Whether the OOM killer ended a process of the cgroup since the last call (or since
    /// Create); an unreadable file (cgroup gone) counts as no.
    pub fn new_kills(&self) -> bool {
        let Some(now) = read_oom_kill(&self.file) else {
            return false;
        };
        let before = self
            .seen
            .fetch_max(now, std::sync::atomic::Ordering::SeqCst);
        now > before
    }
}

/// The `oom_kill N` line of `memory.oom_control` (v1) or `memory.events` (v2).
fn read_oom_kill(file: &std::path::Path) -> Option<u64> {
    parse_oom_kill(&std::fs::read_to_string(file).ok()?)
}

fn parse_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

fn read_u64(dir: &std::path::Path, file: &str) -> u64 {
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn flat_keyed(dir: &std::path::Path, file: &str) -> HashMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

fn entry(dir: &std::path::Path, prefix: &str) -> MemoryEntry {
    MemoryEntry {
        usage: read_u64(dir, &format!("{prefix}.usage_in_bytes")),
        limit: read_u64(dir, &format!("{prefix}.limit_in_bytes")),
        max: read_u64(dir, &format!("{prefix}.max_usage_in_bytes")),
        failcnt: read_u64(dir, &format!("{prefix}.failcnt")),
        ..Default::default()
    }
}

/// The v1 metrics of `pid`'s cgroup (memory, cpu, pids), or `None` on a pure cgroup v2 host.
pub fn v1_metrics(pid: u32) -> std::io::Result<Option<Metrics>> {
    let dirs = v1_dirs(pid)?;
    if !dirs.contains_key("memory") && !dirs.contains_key("cpuacct") && !dirs.contains_key("pids") {
        return Ok(None);
    }
    let mut m = Metrics::new();
    if let Some(d) = dirs.get("memory") {
        let s = flat_keyed(d, "memory.stat");
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        m.memory = Some(MemoryStat {
            cache: g("cache"),
            rss: g("rss"),
            rss_huge: g("rss_huge"),
            mapped_file: g("mapped_file"),
            dirty: g("dirty"),
            writeback: g("writeback"),
            pg_pg_in: g("pgpgin"),
            pg_pg_out: g("pgpgout"),
            pg_fault: g("pgfault"),
            pg_maj_fault: g("pgmajfault"),
            inactive_anon: g("inactive_anon"),
            active_anon: g("active_anon"),
            inactive_file: g("inactive_file"),
            active_file: g("active_file"),
            unevictable: g("unevictable"),
            hierarchical_memory_limit: g("hierarchical_memory_limit"),
            hierarchical_swap_limit: g("hierarchical_memsw_limit"),
            total_cache: g("total_cache"),
            total_rss: g("total_rss"),
            total_rss_huge: g("total_rss_huge"),
            total_mapped_file: g("total_mapped_file"),
            total_dirty: g("total_dirty"),
            total_writeback: g("total_writeback"),
            total_pg_pg_in: g("total_pgpgin"),
            total_pg_pg_out: g("total_pgpgout"),
            total_pg_fault: g("total_pgfault"),
            total_pg_maj_fault: g("total_pgmajfault"),
            total_inactive_anon: g("total_inactive_anon"),
            total_active_anon: g("total_active_anon"),
            total_inactive_file: g("total_inactive_file"),
            total_active_file: g("total_active_file"),
            total_unevictable: g("total_unevictable"),
            usage: Some(entry(d, "memory")).into(),
            swap: Some(entry(d, "memory.memsw")).into(),
            kernel: Some(entry(d, "memory.kmem")).into(),
            kernel_tcp: Some(entry(d, "memory.kmem.tcp")).into(),
            ..Default::default()
        })
        .into();
    }
    let mut cpu = CPUStat::new();
    if let Some(d) = dirs.get("cpuacct") {
        let per_cpu = std::fs::read_to_string(d.join("cpuacct.usage_percpu"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        cpu.usage = Some(CPUUsage {
            total: read_u64(d, "cpuacct.usage"),
            kernel: read_u64(d, "cpuacct.usage_sys"),
            user: read_u64(d, "cpuacct.usage_user"),
            per_cpu,
            ..Default::default()
        })
        .into();
    }
    if let Some(d) = dirs.get("cpu") {
        let s = flat_keyed(d, "cpu.stat");
        let g = |k: &str| s.get(k).copied().unwrap_or(0);
        cpu.throttling = Some(Throttle {
            periods: g("nr_periods"),
            throttled_periods: g("nr_throttled"),
            throttled_time: g("throttled_time"),
            ..Default::default()
        })
        .into();
    }
    m.cpu = Some(cpu).into();
    if let Some(d) = dirs.get("pids") {
        let limit = std::fs::read_to_string(d.join("pids.max"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        m.pids = Some(PidsStat {
            current: read_u64(d, "pids.current"),
            limit,
            ..Default::default()
        })
        .into();
    }
    Ok(Some(m))
}

/// The metrics of `pid`'s cgroup as the `Any` a StatsResponse carries.
pub fn task_metrics(pid: u32) -> Result<Any, String> {
    let msg: Box<dyn MessageDyn> = match v1_metrics(pid) {
        Ok(Some(m)) => Box::new(m),
        Ok(None) => {
            let cg = containerd_shim::cgroup::get_cgroup(pid)
                .map_err(|e| format!("cgroup of pid {pid}: {e}"))?;
            Box::new(
                containerd_shim::cgroup::collect_metrics_v2(&cg)
                    .map_err(|e| format!("cgroup metrics of pid {pid}: {e}"))?,
            )
        }
        Err(e) => return Err(format!("cgroup of pid {pid}: {e}")),
    };
    containerd_shim::util::convert_to_any(msg).map_err(|e| format!("encode metrics: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_is_read_from_v1_and_v2_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kill(v1), Some(3));
        assert_eq!(parse_oom_kill(v2), Some(1));
        assert_eq!(parse_oom_kill("under_oom 0\n"), None);
    }

    #[test]
    fn new_kills_reports_each_increase_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.events");
        std::fs::write(&file, "oom 0\noom_kill 0\n").unwrap();
        let c = OomCounter {
            file: file.clone(),
            seen: 0.into(),
        };
        assert!(!c.new_kills());
        std::fs::write(&file, "oom 1\noom_kill 1\n").unwrap();
        assert!(c.new_kills());
        assert!(!c.new_kills());
        std::fs::remove_file(&file).unwrap();
        assert!(!c.new_kills());
    }

    #[test]
    fn this_process_has_a_readable_oom_counter() {
        // Every Linux host with a memory controller (v1 or v2) has one.
        if let Some(c) = OomCounter::of_pid(std::process::id()) {
            assert!(c.file().is_file(), "{}", c.file().display());
        }
    }
}
