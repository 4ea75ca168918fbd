//! The OCI spec of a `pouch run`/`create`: the image config plus the flags, with Docker's
//! defaults (capabilities, mounts, masked and read-only paths, a default seccomp profile,
//! /etc/hosts, /etc/hostname, /etc/resolv.conf).

use super::record::{Config, HostConfig, RestartPolicy};
use crate::image::manifest::ImageConfig;
use native_runner::rootfs::{resolve_in_root, Create, RootDir};
use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceBuilder,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The flags of `pouch run` and `pouch create` that shape the container.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RunFlags {
    /// Assign a name to the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (`K=V`; a bare `K` copies it from this environment).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Read environment variables from a file (one `K=V` a line, `#` comments).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Overwrite the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Working directory inside the container (created if missing).
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// User: name|uid[:group|gid].
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Additional groups (names or gids).
    #[arg(long = "group-add")]
    pub group_add: Vec<String>,
    /// Container hostname (default: the first 12 digits of the id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Set labels (`K=V`).
    #[arg(short = 'l', long = "label", value_name = "K=V")]
    pub label: Vec<String>,
    /// Set OCI annotations (`K=V`), e.g. `run.oci.handler=wasm`.
    #[arg(long = "annotation", value_name = "K=V")]
    pub annotation: Vec<String>,
    /// Bind mount a host path or a named volume: SRC:DST[:ro|rw][,shared|slave|private|rshared|rslave|rprivate].
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:OPTS]")]
    pub volume: Vec<String>,
    /// Mount a tmpfs: DST[:OPTIONS].
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Memory limit (e.g. 20m, 1g).
    #[arg(short = 'm', long, value_parser = parse_bytes)]
    pub memory: Option<i64>,
    /// Memory + swap limit (-1: unlimited swap; default: twice --memory).
    #[arg(long = "memory-swap", value_parser = parse_swap, allow_hyphen_values = true)]
    pub memory_swap: Option<i64>,
    /// Number of CPUs (e.g. 1.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (0-3, 0,1).
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    /// Tune the container's pids limit (-1: unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Ulimit options: name=soft[:hard], e.g. nofile=1024:2048.
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Add Linux capabilities (ALL for all).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities (ALL for all).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Give extended privileges: all capabilities, no seccomp, no masked paths, all devices.
    #[arg(long)]
    pub privileged: bool,
    /// Security options: seccomp=PATH|unconfined, no-new-privileges[=true|false].
    #[arg(long = "security-opt")]
    pub security_opt: Vec<String>,
    /// Namespaced kernel parameters (K=V).
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Add a host device: HOST[:CONTAINER][:rwm].
    #[arg(long)]
    pub device: Vec<String>,
    /// Network: none (own network namespace with loopback only) or host.
    #[arg(long = "network", alias = "net", default_value = "none")]
    pub network: String,
    /// Signal to stop the container (default: the image's, else SIGTERM).
    #[arg(long = "stop-signal")]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL (default 10).
    #[arg(long = "stop-timeout")]
    pub stop_timeout: Option<u64>,
    /// Run an init as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub init: bool,
    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no")]
    pub restart: RestartPolicy,
    /// Parent cgroup (absolute; default /pouch, or $POUCH_CGROUP_PARENT).
    #[arg(long = "cgroup-parent", env = "POUCH_CGROUP_PARENT")]
    pub cgroup_parent: Option<String>,
    /// Allocate a pseudo-TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep STDIN open.
    #[arg(short = 'i', long)]
    pub interactive: bool,
}

/// Errors of spec generation: bad flags or image contents, said with the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

fn err(s: impl Into<String>) -> SpecError {
    SpecError(s.into())
}

/// Parses sizes such as `20m`, `1g`, `512k`, `4096`.
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use e.g. 20m, 1g, 512k)"))?;
    if v < 0.0 {
        return Err(format!("{s:?}: a size cannot be negative"));
    }
    Ok((v * mult as f64) as i64)
}

fn parse_swap(s: &str) -> Result<i64, String> {
    if s.trim() == "-1" {
        Ok(-1)
    } else {
        parse_bytes(s)
    }
}

/// What spec generation produces.
pub struct Generated {
    /// The spec.
    pub spec: Spec,
    /// Docker-style config for container.json.
    pub config: Config,
    /// Docker-style host config for container.json.
    pub host: HostConfig,
    /// Files to write into the container dir and bind-mount: (name, content).
    pub files: Vec<(&'static str, String)>,
}

/// Docker's default capabilities.
pub const DEFAULT_CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability the kernel knows (cap_last_cap), by name without `CAP_`.
fn all_caps() -> Vec<String> {
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    let last: usize = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    // Only what we have ourselves can be given (a caller without CAP_SYS_RESOURCE, say).
    let bounding: u64 = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    NAMES
        .iter()
        .enumerate()
        .take(last + 1)
        .filter(|(i, _)| bounding & (1u64 << i) != 0)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn norm_cap(c: &str) -> String {
    let u = c.trim().to_ascii_uppercase();
    u.strip_prefix("CAP_").map(str::to_string).unwrap_or(u)
}

/// The capability set from the defaults (or all, privileged) and --cap-add/--cap-drop.
pub fn capabilities(flags: &RunFlags) -> Result<Vec<String>, SpecError> {
    let all = all_caps();
    let mut caps: Vec<String> = if flags.privileged {
        all.clone()
    } else {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    };
    for d in &flags.cap_drop {
        let d = norm_cap(d);
        if d == "ALL" {
            caps.clear();
        } else if !all.contains(&d) {
            return Err(err(format!(
                "--cap-drop {d}: unknown capability (see capabilities(7))"
            )));
        } else {
            caps.retain(|c| *c != d);
        }
    }
    for a in &flags.cap_add {
        let a = norm_cap(a);
        if a == "ALL" {
            caps = all.clone();
        } else if !all.contains(&a) {
            return Err(err(format!(
                "--cap-add {a}: unknown capability, or one pouch itself does not hold (see capabilities(7) and CapBnd in /proc/self/status)"
            )));
        } else if !caps.contains(&a) {
            caps.push(a);
        }
    }
    Ok(caps)
}

fn kv(s: &str, what: &str) -> Result<(String, String), SpecError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(err(format!("{what} {s:?} must be KEY=VALUE"))),
    }
}

/// Merges the environment: image env, then env files, then `-e` (later wins, order kept).
fn environment(image_env: &[String], flags: &RunFlags) -> Result<Vec<String>, SpecError> {
    // Ordered map: later settings win, first position kept.
    fn set(
        order: &mut Vec<String>,
        map: &mut HashMap<String, String>,
        k: String,
        v: Option<String>,
    ) {
        match v {
            Some(v) => {
                if !map.contains_key(&k) {
                    order.push(k.clone());
                }
                map.insert(k, v);
            }
            None => {
                map.remove(&k);
                order.retain(|x| *x != k);
            }
        }
    }
    let mut order: Vec<String> = Vec::new();
    let mut map: HashMap<String, String> = HashMap::new();
    for e in image_env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        set(&mut order, &mut map, k.to_string(), Some(v.to_string()));
    }
    let mut given: Vec<String> = Vec::new();
    for f in &flags.env_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| err(format!("--env-file {}: {e}", f.display())))?;
        given.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    given.extend(flags.env.iter().cloned());
    for e in given {
        match e.split_once('=') {
            Some(("", _)) => return Err(err(format!("--env {e:?}: empty variable name"))),
            Some((k, v)) => set(&mut order, &mut map, k.to_string(), Some(v.to_string())),
            // Docker: a bare name takes this environment's value, or is left out.
            None => {
                let v = std::env::var(&e).ok();
                set(&mut order, &mut map, e, v)
            }
        }
    }
    if !map.contains_key("PATH") {
        set(
            &mut order,
            &mut map,
            "PATH".into(),
            Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
        );
    }
    Ok(order
        .into_iter()
        .map(|k| format!("{k}={}", map[&k]))
        .collect())
}

/// Reads a file of the rootfs (resolved inside it, never outside).
fn read_in_root(root: &RootDir, path: &str) -> Option<String> {
    let p = resolve_in_root(root, Path::new(path), Create::Nothing).ok()?;
    std::fs::read_to_string(p).ok()
}

/// Resolves `user` (name|uid[:group|gid]) with the rootfs's /etc/passwd and /etc/group.
/// Returns uid, gid and the supplementary groups of the user plus `group_add`.
pub fn resolve_user(
    rootfs: &Path,
    user: &str,
    group_add: &[String],
) -> Result<(u32, u32, Vec<u32>), SpecError> {
    let root = RootDir::open(rootfs).map_err(|e| err(format!("rootfs: {e}")))?;
    let passwd = read_in_root(&root, "/etc/passwd").unwrap_or_default();
    let group = read_in_root(&root, "/etc/group").unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let pw = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4);
    let (uid, name, mut gid) = if let Ok(n) = u.parse::<u32>() {
        let entry = pw.clone().find(|f| f[2] == u);
        (
            n,
            entry.as_ref().map(|f| f[0].to_string()),
            entry.and_then(|f| f[3].parse().ok()).unwrap_or(0),
        )
    } else {
        let f = pw.clone().find(|f| f[0] == u).ok_or_else(|| {
            err(format!(
                "unable to find user {u}: no matching entries in the image's /etc/passwd (use a numeric uid)"
            ))
        })?;
        (
            f[2].parse()
                .map_err(|_| err(format!("bad uid for {u} in /etc/passwd")))?,
            Some(u.to_string()),
            f[3].parse().unwrap_or(0),
        )
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let lookup_group = |g: &str| -> Result<u32, SpecError> {
        if let Ok(n) = g.parse() {
            return Ok(n);
        }
        groups
            .iter()
            .find(|f| f[0] == g)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| {
                err(format!(
                    "unable to find group {g}: no matching entries in the image's /etc/group (use a numeric gid)"
                ))
            })
    };
    if let Some(g) = g {
        gid = lookup_group(g)?;
    }
    let mut extra: Vec<u32> = Vec::new();
    if let Some(n) = &name {
        for f in &groups {
            if f.len() >= 4 && f[3].split(',').any(|m| m == n) {
                if let Ok(x) = f[2].parse::<u32>() {
                    if x != gid && !extra.contains(&x) {
                        extra.push(x);
                    }
                }
            }
        }
    }
    for g in group_add {
        let x = lookup_group(g)?;
        if !extra.contains(&x) {
            extra.push(x);
        }
    }
    Ok((uid, gid, extra))
}

fn mount(dst: &str, typ: &str, src: &str, opts: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dst)
        .typ(typ)
        .source(src)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount")
}

/// Parses `-v SRC:DST[:OPTS]` into a bind mount; named volumes live under
/// `<data-root>/volumes/<name>/_data`.
fn volume(v: &str, data_root: &Path) -> Result<Mount, SpecError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => {
            return Err(err(format!(
                "--volume {v:?}: use SRC:DST[:OPTS] (SRC a host path or a volume name)"
            )))
        }
    };
    if !dst.starts_with('/') {
        return Err(err(format!(
            "--volume {v:?}: the destination {dst:?} must be an absolute path"
        )));
    }
    let source = if src.starts_with('/') {
        let p = PathBuf::from(src);
        if !p.exists() {
            return Err(err(format!(
                "--volume {v:?}: the host path {src} does not exist (create it first)"
            )));
        }
        p
    } else {
        if !super::names::valid(src) {
            return Err(err(format!(
                "--volume {v:?}: {src:?} is neither an absolute host path nor a volume name"
            )));
        }
        let p = data_root.join("volumes").join(src).join("_data");
        std::fs::create_dir_all(&p).map_err(|e| err(format!("create volume {src}: {e}")))?;
        p
    };
    let mut o = vec!["rbind".to_string()];
    let mut ro = false;
    let mut prop = "rprivate".to_string();
    for x in opts.split(',').filter(|x| !x.is_empty()) {
        match x {
            "ro" => ro = true,
            "rw" => ro = false,
            "z" | "Z" | "nocopy" => {}
            "shared" | "slave" | "private" | "rshared" | "rslave" | "rprivate" => {
                prop = x.to_string()
            }
            other => {
                return Err(err(format!(
                    "--volume {v:?}: unknown option {other:?} (ro, rw, shared, slave, private, rshared, rslave, rprivate)"
                )))
            }
        }
    }
    o.push(if ro { "ro" } else { "rw" }.to_string());
    o.push(prop);
    Ok(MountBuilder::default()
        .destination(dst)
        .typ("bind")
        .source(source)
        .options(o)
        .build()
        .expect("mount"))
}

fn tmpfs(t: &str) -> Result<Mount, SpecError> {
    let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
    if !dst.starts_with('/') {
        return Err(err(format!(
            "--tmpfs {t:?}: the destination must be an absolute path"
        )));
    }
    let mut o: Vec<&str> = vec!["nosuid", "nodev", "noexec"];
    for x in opts.split(',').filter(|x| !x.is_empty()) {
        match x {
            "exec" => o.retain(|y| *y != "noexec"),
            "dev" => o.retain(|y| *y != "nodev"),
            "suid" => o.retain(|y| *y != "nosuid"),
            x => o.push(x),
        }
    }
    Ok(mount(dst, "tmpfs", "tmpfs", &o))
}

fn rlimit(u: &str) -> Result<oci_spec::runtime::PosixRlimit, SpecError> {
    let (name, val) = u
        .split_once('=')
        .ok_or_else(|| err(format!("--ulimit {u:?}: use NAME=SOFT[:HARD]")))?;
    let (soft, hard) = match val.split_once(':') {
        Some((s, h)) => (s, h),
        None => (val, val),
    };
    let num = |x: &str| -> Result<u64, SpecError> {
        if x == "-1" || x == "unlimited" {
            Ok(u64::MAX)
        } else {
            x.parse()
                .map_err(|_| err(format!("--ulimit {u:?}: {x:?} is not a number")))
        }
    };
    let typ: PosixRlimitType = serde_json::from_value(serde_json::Value::String(format!(
        "RLIMIT_{}",
        name.to_ascii_uppercase()
    )))
    .map_err(|_| {
        err(format!(
            "--ulimit {u:?}: unknown limit {name:?} (nofile, nproc, core, stack, memlock, ...)"
        ))
    })?;
    let (s, h) = (num(soft)?, num(hard)?);
    if s > h {
        return Err(err(format!(
            "--ulimit {u:?}: the soft limit is above the hard one"
        )));
    }
    Ok(PosixRlimitBuilder::default()
        .typ(typ)
        .soft(s)
        .hard(h)
        .build()
        .expect("rlimit"))
}

fn device(d: &str) -> Result<(oci_spec::runtime::LinuxDevice, String), SpecError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let parts: Vec<&str> = d.split(':').collect();
    let (host, cont, perms) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, x] if x.chars().all(|c| "rwm".contains(c)) => (*h, *h, *x),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] => (*h, *c, *p),
        _ => return Err(err(format!("--device {d:?}: use HOST[:CONTAINER][:rwm]"))),
    };
    let m = std::fs::metadata(host).map_err(|e| err(format!("--device {d:?}: {host}: {e}")))?;
    let ft = m.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(err(format!("--device {d:?}: {host} is not a device node")));
    };
    let rdev = m.rdev();
    let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
    let dev = LinuxDeviceBuilder::default()
        .path(cont)
        .typ(typ)
        .major(major)
        .minor(minor)
        .file_mode(m.mode() & 0o777)
        .uid(m.uid())
        .gid(m.gid())
        .build()
        .expect("device");
    Ok((dev, perms.to_string()))
}

/// Builds the spec.
///
/// `rootfs` is the prepared root filesystem (users are resolved in it, the working directory is
/// created in it); `id` the container id; `image` the image config (`None` for a wasm artifact,
/// which runs `/module.wasm`); `wasm` whether dispatch chose the wasm executor.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    flags: &RunFlags,
    command: &[String],
    image_ref: &str,
    image: Option<&ImageConfig>,
    rootfs: &Path,
    id: &str,
    data_root: &Path,
    wasm: bool,
) -> Result<Generated, SpecError> {
    let exec = image.and_then(|i| i.config.clone()).unwrap_or_default();
    // Command line: Docker's rules for entrypoint and cmd.
    let (entrypoint, cmd): (Vec<String>, Vec<String>) = match &flags.entrypoint {
        Some(e) if e.is_empty() => (vec![], command.to_vec()),
        Some(e) => (vec![e.clone()], command.to_vec()),
        None => {
            let ep = match image {
                Some(_) => exec.entrypoint.clone().unwrap_or_default(),
                None => vec!["/module.wasm".to_string()],
            };
            let cmd = if command.is_empty() {
                exec.cmd.clone().unwrap_or_default()
            } else {
                command.to_vec()
            };
            (ep, cmd)
        }
    };
    let args: Vec<String> = entrypoint.iter().chain(cmd.iter()).cloned().collect();
    if args.is_empty() {
        return Err(err(format!(
            "no command specified: image {image_ref} has no Cmd or Entrypoint; give one after the image name"
        )));
    }
    let hostname = flags
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let mut env = environment(exec.env.as_deref().unwrap_or(&[]), flags)?;
    env.retain(|e| !e.starts_with("HOSTNAME="));
    env.push(format!("HOSTNAME={hostname}"));
    if flags.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let workdir = flags
        .workdir
        .clone()
        .or(exec.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !workdir.starts_with('/') {
        return Err(err(format!(
            "--workdir {workdir:?} must be an absolute path"
        )));
    }
    let user = flags
        .user
        .clone()
        .or(exec.user.clone().filter(|u| !u.is_empty()))
        .unwrap_or_default();

    // The rootfs: a wasm artifact's is just the module (no /etc); native ones get the user
    // resolved and the working directory made.
    let (uid, gid, extra) = if wasm && image.is_none() {
        (0, 0, vec![])
    } else {
        resolve_user(
            rootfs,
            if user.is_empty() { "0" } else { &user },
            &flags.group_add,
        )?
    };
    if !(wasm && image.is_none()) {
        let root = RootDir::open(rootfs).map_err(|e| err(format!("rootfs: {e}")))?;
        let p = resolve_in_root(&root, Path::new(&workdir), Create::Dir).map_err(|e| {
            err(format!(
                "working directory {workdir}: {e} (is a component of it a file?)"
            ))
        })?;
        if !p.is_dir() {
            return Err(err(format!(
                "working directory {workdir} is not a directory in the image"
            )));
        }
    }

    let caps = capabilities(flags)?;
    let cap_set: Vec<oci_spec::runtime::Capability> = caps
        .iter()
        .filter_map(|c| serde_json::from_value(serde_json::Value::String(format!("CAP_{c}"))).ok())
        .collect();
    let capset: oci_spec::runtime::Capabilities = cap_set.into_iter().collect();
    let mut no_new_privs = false;
    let mut seccomp = if flags.privileged {
        None
    } else {
        Some(super::seccomp_default::profile(&caps))
    };
    for o in &flags.security_opt {
        let (k, v) = o.split_once(['=', ':']).unwrap_or((o.as_str(), ""));
        match k {
            "no-new-privileges" => no_new_privs = v.is_empty() || v == "true",
            "seccomp" if v == "unconfined" => seccomp = None,
            "seccomp" if !v.is_empty() => {
                let text = std::fs::read_to_string(v)
                    .map_err(|e| err(format!("--security-opt seccomp={v}: {e}")))?;
                seccomp = Some(serde_json::from_str(&text).map_err(|e| {
                    err(format!(
                        "--security-opt seccomp={v}: not an OCI seccomp profile: {e}"
                    ))
                })?);
            }
            "apparmor" | "label" => {}
            _ => {
                return Err(err(format!(
                "--security-opt {o:?}: supported are seccomp=PATH|unconfined and no-new-privileges"
            )))
            }
        }
    }
    // Without --ulimit the container keeps the limits pouch runs with (as Docker's daemon's).
    let mut rlimits: Vec<oci_spec::runtime::PosixRlimit> = Vec::new();
    for u in &flags.ulimit {
        let r = rlimit(u)?;
        rlimits.retain(|x| x.typ() != r.typ());
        rlimits.push(r);
    }
    let process = ProcessBuilder::default()
        .terminal(flags.tty)
        .user(
            UserBuilder::default()
                .uid(uid)
                .gid(gid)
                .additional_gids(extra)
                .build()
                .expect("user"),
        )
        .args(args.clone())
        .env(env.clone())
        .cwd(workdir.clone())
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(capset.clone())
                .effective(capset.clone())
                .permitted(capset.clone())
                .inheritable(oci_spec::runtime::Capabilities::new())
                .ambient(oci_spec::runtime::Capabilities::new())
                .build()
                .expect("caps"),
        )
        .rlimits(rlimits)
        .no_new_privileges(no_new_privs)
        .build()
        .expect("process");

    // Mounts: Docker's defaults, then the generated files, then volumes and tmpfs.
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            if flags.privileged {
                &["nosuid", "noexec", "nodev"][..]
            } else {
                &["nosuid", "noexec", "nodev", "ro"][..]
            },
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ];
    let dir = data_root.join("containers").join(id);
    let mut files: Vec<(&'static str, String)> = Vec::new();
    if !(wasm && image.is_none()) {
        let host_net = flags.network == "host";
        let hosts = if host_net {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
            )
        };
        let resolv = std::fs::read_to_string("/etc/resolv.conf")
            .unwrap_or_default()
            .lines()
            // A loopback resolver of the host is unreachable from another network namespace.
            .filter(|l| host_net || !l.trim_start().starts_with("nameserver 127."))
            .map(|l| format!("{l}\n"))
            .collect::<String>();
        files.push(("hosts", hosts));
        files.push(("hostname", format!("{hostname}\n")));
        files.push(("resolv.conf", resolv));
        for (name, _) in &files {
            let src = dir.join(name);
            mounts.push(
                MountBuilder::default()
                    .destination(format!("/etc/{name}"))
                    .typ("bind")
                    .source(src)
                    .options(vec!["rbind".to_string(), "rprivate".to_string()])
                    .build()
                    .expect("mount"),
            );
        }
    }
    for v in &flags.volume {
        mounts.push(volume(v, data_root)?);
    }
    for t in &flags.tmpfs {
        mounts.push(tmpfs(t)?);
    }

    // Namespaces.
    let mut ns = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ];
    match flags.network.as_str() {
        "none" | "" => ns.push(LinuxNamespaceType::Network),
        "host" => {}
        other => {
            return Err(err(format!(
                "--network {other:?}: supported are none (loopback only) and host"
            )))
        }
    }
    let namespaces: Vec<_> = ns
        .into_iter()
        .map(|t| LinuxNamespaceBuilder::default().typ(t).build().expect("ns"))
        .collect();

    // Resources.
    let mut res = LinuxResourcesBuilder::default();
    let mut devices = Vec::new();
    let mut dev_rules = vec![LinuxDeviceCgroupBuilder::default()
        .allow(flags.privileged)
        .access("rwm")
        .build()
        .expect("rule")];
    for d in &flags.device {
        let (dev, perms) = device(d)?;
        dev_rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(dev.typ())
                .major(dev.major())
                .minor(dev.minor())
                .access(perms)
                .build()
                .expect("rule"),
        );
        devices.push(dev);
    }
    res = res.devices(dev_rules);
    if flags.memory.is_some() || flags.memory_swap.is_some() {
        let mut m = LinuxMemoryBuilder::default();
        if let Some(l) = flags.memory {
            if l > 0 && l < 6 << 20 {
                return Err(err(
                    "--memory: the minimum is 6m (a container needs a few MiB to start)",
                ));
            }
            m = m.limit(l);
            // Docker: swap defaults to the same again (memory+swap = 2 × memory).
            let swap = match flags.memory_swap {
                Some(-1) => -1,
                Some(s) if s > 0 && s < l => {
                    return Err(err(
                        "--memory-swap must be at least --memory (it is memory + swap)",
                    ))
                }
                Some(s) if s > 0 => s,
                _ => l * 2,
            };
            m = m.swap(swap);
        } else if flags.memory_swap.is_some() {
            return Err(err("--memory-swap needs --memory"));
        }
        res = res.memory(m.build().expect("memory"));
    }
    if flags.cpus.is_some() || flags.cpu_shares.is_some() || flags.cpuset_cpus.is_some() {
        let mut c = LinuxCpuBuilder::default();
        if let Some(n) = flags.cpus {
            if n <= 0.0 {
                return Err(err("--cpus must be positive, e.g. 0.5"));
            }
            c = c.period(100_000u64).quota((n * 100_000.0) as i64);
        }
        if let Some(s) = flags.cpu_shares {
            c = c.shares(s);
        }
        if let Some(s) = &flags.cpuset_cpus {
            c = c.cpus(s.clone());
        }
        res = res.cpu(c.build().expect("cpu"));
    }
    if let Some(p) = flags.pids_limit {
        if p != 0 {
            res = res.pids(LinuxPidsBuilder::default().limit(p).build().expect("pids"));
        }
    }
    let mut sysctl = HashMap::new();
    for s in &flags.sysctl {
        let (k, v) = kv(s, "--sysctl")?;
        sysctl.insert(k, v);
    }
    let cgroup_parent = flags
        .cgroup_parent
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/pouch".to_string());
    if !cgroup_parent.starts_with('/') {
        return Err(err(format!(
            "--cgroup-parent {cgroup_parent:?} must be absolute, e.g. /pouch"
        )));
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(res.build().expect("resources"))
        .cgroups_path(PathBuf::from(format!(
            "{}/{id}",
            cgroup_parent.trim_end_matches('/')
        )))
        .sysctl(sysctl)
        .devices(devices);
    if flags.privileged {
        linux = linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        linux = linux
            .masked_paths(
                [
                    "/proc/asound",
                    "/proc/acpi",
                    "/proc/kcore",
                    "/proc/keys",
                    "/proc/latency_stats",
                    "/proc/timer_list",
                    "/proc/timer_stats",
                    "/proc/sched_debug",
                    "/proc/scsi",
                    "/sys/firmware",
                    "/sys/devices/virtual/powercap",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            )
            .readonly_paths(
                [
                    "/proc/bus",
                    "/proc/fs",
                    "/proc/irq",
                    "/proc/sys",
                    "/proc/sysrq-trigger",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            );
    }
    if let Some(s) = seccomp {
        linux = linux.seccomp(s);
    }

    let mut annotations: HashMap<String, String> = HashMap::new();
    for a in &flags.annotation {
        let (k, v) = kv(a, "--annotation")?;
        annotations.insert(k, v);
    }
    if flags.init {
        annotations.insert(crate::runtime::INIT_ANNOTATION.to_string(), "true".into());
    }
    let spec = SpecBuilder::default()
        .version(crate::spec::OCI_VERSION)
        .process(process)
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(flags.read_only)
                .build()
                .expect("root"),
        )
        .hostname(hostname.clone())
        .mounts(mounts)
        .annotations(annotations.clone())
        .linux(linux.build().expect("linux"))
        .build()
        .map_err(|e| err(format!("spec: {e}")))?;

    let mut labels = BTreeMap::new();
    if let Some(l) = &exec.labels {
        labels.extend(l.clone());
    }
    for l in &flags.label {
        let (k, v) = kv(l, "--label")?;
        labels.insert(k, v);
    }
    let config = Config {
        hostname,
        user,
        env,
        cmd,
        entrypoint,
        working_dir: workdir,
        labels,
        image: image_ref.to_string(),
        stop_signal: flags
            .stop_signal
            .clone()
            .or(exec.stop_signal.clone())
            .unwrap_or_else(|| "SIGTERM".into()),
        stop_timeout: flags.stop_timeout.unwrap_or(10),
        tty: flags.tty,
        open_stdin: flags.interactive,
    };
    let host = HostConfig {
        auto_remove: false,
        restart_policy: flags.restart.clone(),
        network_mode: flags.network.clone(),
        memory: flags.memory.unwrap_or(0),
        memory_swap: flags.memory_swap.unwrap_or(0),
        nano_cpus: flags.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
        cpu_shares: flags.cpu_shares.unwrap_or(0),
        cpuset_cpus: flags.cpuset_cpus.clone().unwrap_or_default(),
        pids_limit: flags.pids_limit.unwrap_or(0),
        readonly_rootfs: flags.read_only,
        privileged: flags.privileged,
        binds: flags.volume.clone(),
        tmpfs: flags.tmpfs.clone(),
        cap_add: flags.cap_add.clone(),
        cap_drop: flags.cap_drop.clone(),
        security_opt: flags.security_opt.clone(),
        init: flags.init,
        cgroup_parent,
        annotations: annotations.into_iter().collect(),
    };
    Ok(Generated {
        spec,
        config,
        host,
        files,
    })
}
