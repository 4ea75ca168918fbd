//! Task metrics from the cgroup of a container's init, in containerd's formats: the cgroups v1
//! `io.containerd.cgroups.v1.Metrics` when the memory, cpuacct and pids controllers are v1
//! hierarchies (v1 and hybrid hosts), else `io.containerd.cgroups.v2.Metrics` (pure v2).

use std::collections::HashMap;
use std::path::PathBuf;

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat, Throttle,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::MessageDyn;

/// The directory of each v1 controller of `pid`'s cgroup: controller name → directory.
fn v1_dirs(pid: u32) -> std::io::Result<HashMap<String, PathBuf>> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    // v1 mount point of each controller (from the super options of cgroup mounts).
    let mut mounts: HashMap<String, PathBuf> = HashMap::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let (Some(mp), Some(opts)) = (pre.split(' ').nth(4), post.nth(1)) else {
            continue;
        };
        for o in opts.split(',') {
            mounts.insert(o.to_owned(), PathBuf::from(mp));
        }
    }
    let mut dirs = HashMap::new();
    for line in cgroups.lines() {
        let mut f = line.splitn(3, ':');
        let (_, Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        for c in ctrls.split(',').filter(|c| !c.is_empty()) {
            if let Some(mp) = mounts.get(c) {
                dirs.insert(c.to_owned(), mp.join(path.trim_start_matches('/')));
            }
        }
    }
    Ok(dirs)
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
