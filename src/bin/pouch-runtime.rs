//! `pouch-runtime`: a runc-compatible OCI runtime CLI over the Pouch library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use pouch::logging::{self, LogFormat};
use pouch::runtime::{signal::parse_signal, CreateOptions, RunOptions, Runtime, DEFAULT_ROOT};

/// pouch-runtime: run OCI containers (runc-compatible command line).
///
/// Containers are created from OCI bundles (a directory with config.json and a rootfs) and
/// go through create → start → kill → delete, or `run` for all of it. State is kept under
/// --root. Errors are printed on stderr and, with --log, written to the log file.
#[derive(Parser, Debug)]
#[command(name = "pouch-runtime", version, propagate_version = true)]
struct Cli {
    /// Directory for the containers' state (must be on tmpfs or similar for reboots to clear it).
    #[arg(long, global = true, default_value = DEFAULT_ROOT, env = "POUCH_RUNTIME_ROOT")]
    root: PathBuf,
    /// Write the log (and errors) to this file instead of stderr.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text (logfmt) or json (one object a line, as containerd expects).
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    log_format: Format,
    /// Log debug messages too (which dispatch rule chose the executor, cache hits, ...).
    #[arg(long, global = true)]
    debug: bool,
    /// Directory of the compiled-wasm cache (shared by every front).
    #[arg(long, global = true, env = "POUCH_WASM_CACHE", default_value = pouch::wasm::cache::DEFAULT_CACHE_DIR)]
    wasm_cache: PathBuf,
    /// Manage cgroups through systemd (not supported: pouch-runtime manages cgroupfs directly).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for compatibility with runc callers; checkpointing is not supported.
    #[arg(long, global = true, hide = true)]
    criu: Option<String>,
    /// Accepted for compatibility with runc callers (auto|true|false); ignored.
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Format {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Write a default config.json into the bundle directory.
    Spec {
        /// The bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Create a container: set it up and leave it waiting for `start`.
    Create {
        /// Container id (letters, digits, _ + - .).
        id: String,
        #[command(flatten)]
        opts: CreateArgs,
    },
    /// Start a created container's program.
    Start {
        /// Container id.
        id: String,
    },
    /// Print a container's state as runtime-spec JSON.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal (default SIGTERM) to a container's init, or to all its processes.
    Kill {
        /// Container id.
        id: String,
        /// Signal, by number (9, 37) or name (KILL, SIGKILL, RTMIN+3, SIGRTMAX-1).
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Send the signal to every process in the container's cgroup (also once the init
        /// has exited, while the cgroup exists).
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a stopped container (and, with --force, a running one).
    Delete {
        /// Container id.
        id: String,
        /// Kill the container first if it still runs.
        #[arg(short, long)]
        force: bool,
    },
    /// Create and start a container; in the foreground, wait and exit with its status.
    Run {
        /// Container id.
        id: String,
        #[command(flatten)]
        opts: CreateArgs,
        /// Return once the container is started.
        #[arg(short, long)]
        detach: bool,
        /// Keep the stopped container after a foreground run (default: delete it).
        #[arg(long)]
        keep: bool,
    },
    /// List containers.
    List {
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
    /// Print the features this runtime implements (runtime-spec features JSON).
    Features,
    /// Show the compiled-wasm cache: location, entries and size.
    WasmCache {
        /// Print JSON ({"path", "entries", "bytes"}).
        #[arg(long)]
        json: bool,
    },
    /// Run a process in a running container (joins its namespaces and cgroup).
    Exec {
        /// Container id.
        id: String,
        /// The command and its arguments (unless --process is given).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        /// A process.json (runtime-spec `process`) describing the process instead of ARGS.
        #[arg(short, long)]
        process: Option<PathBuf>,
        /// Return once the process runs.
        #[arg(short, long)]
        detach: bool,
        /// Write the process's pid to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Allocate a terminal (sent to --console-socket, or relayed in the foreground).
        #[arg(short, long)]
        tty: bool,
        /// Unix socket to send the terminal master to (with --tty).
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Add or set an environment variable (KEY=VALUE), repeatable.
        #[arg(short, long)]
        env: Vec<String>,
        /// Working directory in the container.
        #[arg(long)]
        cwd: Option<PathBuf>,
        /// User as UID[:GID].
        #[arg(short, long)]
        user: Option<String>,
        /// Additional group ids, repeatable.
        #[arg(short = 'g', long)]
        additional_gids: Vec<u32>,
        /// Add a capability (e.g. CAP_NET_ADMIN) to the process's sets, repeatable.
        #[arg(short, long)]
        cap: Vec<String>,
        /// Set no_new_privs for the process.
        #[arg(long)]
        no_new_privs: bool,
        /// Pass this many extra descriptors (from fd 3) to the process.
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        /// Accepted for runc compatibility; AppArmor is not used.
        #[arg(long, hide = true)]
        apparmor: Option<String>,
        /// Accepted for runc compatibility; SELinux is not used.
        #[arg(long, hide = true)]
        process_label: Option<String>,
    },
    /// Freeze every process of a running container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// List the processes of a container (`ps -ef` filtered, or their pids as JSON).
    Ps {
        /// Container id.
        id: String,
        /// Output format: table (ps output) or json (an array of pids).
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Arguments for ps(1) (after `--`), default `-ef`.
        #[arg(last = true)]
        ps_args: Vec<String>,
    },
    /// Change the resource limits of a container (from a file and/or flags).
    Update {
        /// Container id.
        id: String,
        /// linux.resources JSON file ("-" for stdin); flags below override its values.
        #[arg(short, long)]
        resources: Option<PathBuf>,
        /// Memory limit (bytes, or with k/m/g suffix; -1 for unlimited).
        #[arg(long)]
        memory: Option<String>,
        /// Memory + swap limit (bytes or k/m/g; -1 for unlimited).
        #[arg(long)]
        memory_swap: Option<String>,
        /// Memory soft limit (bytes or k/m/g).
        #[arg(long)]
        memory_reservation: Option<String>,
        /// CPU shares (relative weight).
        #[arg(long)]
        cpu_shares: Option<u64>,
        /// CPU CFS quota in microseconds per period (-1 for none).
        #[arg(long)]
        cpu_quota: Option<i64>,
        /// CPU CFS period in microseconds.
        #[arg(long)]
        cpu_period: Option<u64>,
        /// CPUs the container may use (e.g. 0-1).
        #[arg(long)]
        cpuset_cpus: Option<String>,
        /// Memory nodes the container may use.
        #[arg(long)]
        cpuset_mems: Option<String>,
        /// Maximum number of tasks (-1 for unlimited).
        #[arg(long)]
        pids_limit: Option<i64>,
        /// Block IO weight (10-1000).
        #[arg(long)]
        blkio_weight: Option<u16>,
    },
    /// Show resource usage of a container (cpu, memory, pids), as runc's event JSON.
    Events {
        /// Container id.
        id: String,
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats events when streaming (e.g. 5s, 500ms).
        #[arg(long, default_value = "5s")]
        interval: String,
    },
}

#[derive(clap::Args, Debug)]
struct CreateArgs {
    /// The bundle directory (holds config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the pid of the container's init to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the terminal master to (for process.terminal).
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Pass this many extra descriptors (from fd 3) to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Use chroot instead of pivot_root (for a rootfs on a ramdisk).
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility: no session keyring is created anyway.
    #[arg(long)]
    no_new_keyring: bool,
}

impl From<CreateArgs> for CreateOptions {
    fn from(a: CreateArgs) -> Self {
        CreateOptions {
            bundle: a.bundle,
            pid_file: a.pid_file,
            console_socket: a.console_socket,
            preserve_fds: a.preserve_fds,
            no_pivot: a.no_pivot,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = match cli.log_format {
        Format::Text => LogFormat::Text,
        Format::Json => LogFormat::Json,
    };
    let logged_to_file = cli.log.is_some();
    if let Err(e) = logging::init(cli.log.as_deref(), format, cli.debug) {
        eprintln!(
            "pouch-runtime: cannot open --log {}: {e}",
            cli.log
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        );
        return ExitCode::from(1);
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // With its causes, each said once (many errors already include their cause).
            let msg = pouch::errors::chain(e.as_ref());
            tracing::error!("{msg}");
            if logged_to_file {
                eprintln!("pouch-runtime: {msg}");
            }
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<u8> {
    if cli.systemd_cgroup {
        bail!(
            "--systemd-cgroup: systemd cgroup management is not supported; pouch-runtime manages cgroupfs itself \
             (podman: cgroup_manager = \"cgroupfs\"; containerd: SystemdCgroup = false)"
        );
    }
    let rt = Runtime::new(&cli.root).with_wasm_cache(&cli.wasm_cache);
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} exists; remove it first", path.display());
            }
            let text = serde_json::to_string_pretty(&pouch::spec::default_spec_json())?;
            std::fs::write(&path, text + "\n")
                .with_context(|| format!("write {}", path.display()))?;
        }
        Cmd::Create { id, opts } => {
            rt.create(&id, &opts.into())?;
        }
        Cmd::Start { id } => rt.start(&id)?,
        Cmd::State { id } => {
            let s = rt.state(&id)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
        }
        Cmd::Kill { id, signal, all } => rt.kill(&id, parse_signal(&signal)?, all)?,
        Cmd::Delete { id, force } => rt.delete(&id, force)?,
        Cmd::Run {
            id,
            opts,
            detach,
            keep,
        } => {
            let code = rt.run(
                &id,
                &RunOptions {
                    create: opts.into(),
                    detach,
                    keep,
                },
            )?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Cmd::List { quiet, format } => {
            let all = rt.list()?;
            if quiet {
                for s in &all {
                    writeln!(out, "{}", s.id)?;
                }
            } else {
                match format {
                    ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&all)?)?,
                    ListFormat::Table => {
                        let rows: Vec<[String; 6]> = all
                            .iter()
                            .map(|s| {
                                [
                                    s.id.clone(),
                                    s.pid.to_string(),
                                    s.status.to_string(),
                                    s.bundle.display().to_string(),
                                    s.created.clone(),
                                    s.owner.clone(),
                                ]
                            })
                            .collect();
                        print_table(
                            &mut out,
                            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
                            &rows,
                        )?;
                    }
                }
            }
        }
        Cmd::Exec {
            id,
            args,
            process,
            detach,
            pid_file,
            tty,
            console_socket,
            env,
            cwd,
            user,
            additional_gids,
            cap,
            no_new_privs,
            preserve_fds,
            apparmor: _,
            process_label: _,
        } => {
            let process = exec_process(
                &rt,
                &id,
                process,
                args,
                tty,
                env,
                cwd,
                user,
                additional_gids,
                cap,
                no_new_privs,
            )?;
            let code = rt.exec(
                &id,
                &pouch::runtime::ExecOptions {
                    process,
                    detach,
                    pid_file,
                    preserve_fds,
                    console_socket,
                },
            )?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Cmd::Pause { id } => rt.pause(&id)?,
        Cmd::Resume { id } => rt.resume(&id)?,
        Cmd::Ps {
            id,
            format,
            ps_args,
        } => match format {
            ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&rt.pids(&id)?)?)?,
            ListFormat::Table => write!(out, "{}", rt.ps_table(&id, &ps_args)?)?,
        },
        Cmd::Update {
            id,
            resources,
            memory,
            memory_swap,
            memory_reservation,
            cpu_shares,
            cpu_quota,
            cpu_period,
            cpuset_cpus,
            cpuset_mems,
            pids_limit,
            blkio_weight,
        } => {
            use oci_spec::runtime::{LinuxPids, LinuxResources};
            use pouch::runtime::container_update::parse_size;
            let mut res: LinuxResources = match resources {
                Some(p) => {
                    let text = if p.as_os_str() == "-" {
                        std::io::read_to_string(std::io::stdin())?
                    } else {
                        std::fs::read_to_string(&p)
                            .with_context(|| format!("read --resources {}", p.display()))?
                    };
                    serde_json::from_str(&text).with_context(|| {
                        format!("--resources {}: not linux.resources JSON", p.display())
                    })?
                }
                None => LinuxResources::default(),
            };
            if memory.is_some() || memory_swap.is_some() || memory_reservation.is_some() {
                let mut m = res.memory().unwrap_or_default();
                if let Some(v) = memory {
                    m.set_limit(Some(parse_size(&v)?));
                }
                if let Some(v) = memory_swap {
                    m.set_swap(Some(parse_size(&v)?));
                }
                if let Some(v) = memory_reservation {
                    m.set_reservation(Some(parse_size(&v)?));
                }
                res.set_memory(Some(m));
            }
            if cpu_shares.is_some()
                || cpu_quota.is_some()
                || cpu_period.is_some()
                || cpuset_cpus.is_some()
                || cpuset_mems.is_some()
            {
                let mut c = res.cpu().clone().unwrap_or_default();
                if cpu_shares.is_some() {
                    c.set_shares(cpu_shares);
                }
                if cpu_quota.is_some() {
                    c.set_quota(cpu_quota);
                }
                if cpu_period.is_some() {
                    c.set_period(cpu_period);
                }
                if cpuset_cpus.is_some() {
                    c.set_cpus(cpuset_cpus);
                }
                if cpuset_mems.is_some() {
                    c.set_mems(cpuset_mems);
                }
                res.set_cpu(Some(c));
            }
            if let Some(limit) = pids_limit {
                let mut p = LinuxPids::default();
                p.set_limit(limit);
                res.set_pids(Some(p));
            }
            if let Some(w) = blkio_weight {
                let mut b = res.block_io().clone().unwrap_or_default();
                b.set_weight(Some(w));
                res.set_block_io(Some(b));
            }
            rt.update(&id, &res)?;
        }
        Cmd::Events {
            id,
            stats,
            interval,
        } => {
            let every = humantime::parse_duration(&interval)
                .with_context(|| format!("--interval {interval:?}: use e.g. 5s or 500ms"))?;
            loop {
                writeln!(out, "{}", rt.stats_event(&id)?)?;
                out.flush()?;
                if stats {
                    break;
                }
                std::thread::sleep(every);
                if !rt.is_live(&id) {
                    break;
                }
            }
        }
        Cmd::WasmCache { json } => {
            let (n, bytes) = pouch::wasm::cache::cache_size(rt.wasm_cache())
                .with_context(|| format!("read {}", rt.wasm_cache().display()))?;
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"path": rt.wasm_cache(), "entries": n, "bytes": bytes})
                )?;
            } else {
                writeln!(
                    out,
                    "{}: {n} entries, {bytes} bytes",
                    rt.wasm_cache().display()
                )?;
            }
        }
        Cmd::Features => {
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&pouch::runtime::features::features())?
            )?;
        }
    }
    Ok(0)
}

/// The process of `exec`: `--process FILE`, or the container's own process with ARGS and the
/// command line's overrides.
#[allow(clippy::too_many_arguments)]
fn exec_process(
    rt: &Runtime,
    id: &str,
    file: Option<PathBuf>,
    args: Vec<String>,
    tty: bool,
    env: Vec<String>,
    cwd: Option<PathBuf>,
    user: Option<String>,
    additional_gids: Vec<u32>,
    caps: Vec<String>,
    no_new_privs: bool,
) -> Result<oci_spec::runtime::Process> {
    use oci_spec::runtime::{Capability, Process};
    let mut p: Process = match file {
        Some(f) => {
            if !args.is_empty() {
                bail!("give either --process or a command, not both");
            }
            let text =
                std::fs::read(&f).with_context(|| format!("read --process {}", f.display()))?;
            let de = &mut serde_json::Deserializer::from_slice(&text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                anyhow::anyhow!("--process {}: {}: {}", f.display(), e.path(), e.inner())
            })?
        }
        None => {
            if args.is_empty() {
                bail!("exec needs a command (or --process FILE)");
            }
            let mut p = rt.container_process(id)?;
            p.set_args(Some(args));
            p.set_terminal(Some(tty));
            p
        }
    };
    if tty {
        p.set_terminal(Some(true));
    }
    if !env.is_empty() {
        let mut all = p.env().clone().unwrap_or_default();
        for kv in env {
            let key = kv.split('=').next().unwrap_or_default().to_string();
            all.retain(|e| e.split('=').next() != Some(key.as_str()));
            all.push(kv);
        }
        p.set_env(Some(all));
    }
    if let Some(c) = cwd {
        p.set_cwd(c);
    }
    if let Some(u) = user {
        let (uid, gid) = match u.split_once(':') {
            Some((a, b)) => (a.parse::<u32>(), b.parse::<u32>().map(Some)),
            None => (u.parse::<u32>(), Ok(None)),
        };
        let (Ok(uid), Ok(gid)) = (uid, gid) else {
            bail!("--user {u:?}: use numeric UID[:GID]");
        };
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut().set_gid(g);
        }
    }
    if !additional_gids.is_empty() {
        p.user_mut().set_additional_gids(Some(additional_gids));
    }
    if !caps.is_empty() {
        let mut sets = p.capabilities().clone().unwrap_or_default();
        for c in &caps {
            let name = c.to_ascii_uppercase();
            let name = if name.starts_with("CAP_") {
                name
            } else {
                format!("CAP_{name}")
            };
            let cap: Capability = name
                .parse()
                .map_err(|_| anyhow::anyhow!("--cap {c:?}: unknown capability"))?;
            let add = |s: Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.unwrap_or_default();
                s.insert(cap);
                Some(s)
            };
            let (b, e, pm) = (
                add(sets.bounding().clone()),
                add(sets.effective().clone()),
                add(sets.permitted().clone()),
            );
            sets.set_bounding(b);
            sets.set_effective(e);
            sets.set_permitted(pm);
        }
        p.set_capabilities(Some(sets));
    }
    if no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

fn print_table(out: &mut impl Write, head: [&str; 6], rows: &[[String; 6]]) -> std::io::Result<()> {
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == cells.len() {
                    c.to_string()
                } else {
                    format!("{c:<width$}", width = w[i] + 3)
                }
            })
            .collect::<String>()
    };
    writeln!(out, "{}", line(head.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}
