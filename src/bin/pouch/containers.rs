//! The container commands of `pouch`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

use pouch::container::ops::{self, fail, Attach, CreateRequest, Event, OpsError, PullPolicy};
use pouch::container::record::{monitor_alive, Container, ContainerStore};
use pouch::container::spec_gen::RunFlags;
use pouch::container::template::Template;
use pouch::image::pull::{PlatformSpec, PullOptions};
use pouch::image::store::ContentStore;

type Result<T> = std::result::Result<T, OpsError>;

/// `run` and `create`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// When to pull the image: missing (default), always, never.
    #[arg(long, value_enum, default_value_t = PullPolicy::Missing)]
    pub pull: PullPolicy,
    /// Platform of the image: os/arch[/variant]; wasi/wasm picks a multi-platform image's
    /// WebAssembly entry.
    #[arg(long)]
    pub platform: Option<PlatformSpec>,
    #[command(flatten)]
    pub flags: RunFlags,
    /// The image (name or ID).
    pub image: String,
    /// The command and its arguments (default: the image's).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The container commands.
#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Create a container from an image and run it (pulls the image if needed).
    Run(RunArgs),
    /// Create a container without starting it.
    Create(RunArgs),
    /// Start created or stopped containers.
    Start {
        /// Attach to the container's output and wait for it (exit with its code).
        #[arg(short, long)]
        attach: bool,
        /// Give it our stdin (with --attach).
        #[arg(short, long)]
        interactive: bool,
        /// Containers (names or ID prefixes).
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop running containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before killing (default: the container's --stop-timeout, 10).
        #[arg(short = 't', long = "time", alias = "timeout")]
        time: Option<u64>,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop, then start containers.
    Restart {
        /// Seconds to wait before killing.
        #[arg(short = 't', long = "time", alias = "timeout")]
        time: Option<u64>,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers (default SIGKILL).
    Kill {
        /// Signal: name (TERM, SIGTERM) or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill and remove running containers.
        #[arg(short, long)]
        force: bool,
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        /// All containers (default: running ones).
        #[arg(short, long)]
        all: bool,
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate.
        #[arg(long)]
        no_trunc: bool,
        /// Filter: name=, id=, status=, label=K[=V], ancestor=, executor=.
        #[arg(short, long)]
        filter: Vec<String>,
        /// Go-template ({{.ID}} {{.Names}} {{.Image}} {{.Command}} {{.Status}} {{.State}}
        /// {{.Executor}}) or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Show a container's output (json-file log).
    Logs {
        /// Follow the output until the container stops.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, alias = "tail")]
        tail: Option<String>,
        /// Only output since: a time (RFC 3339), a duration ago (10m) or unix seconds.
        #[arg(long)]
        since: Option<String>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        /// Container.
        container: String,
    },
    /// Run a command in a running container.
    Exec {
        /// Run in the background.
        #[arg(short, long)]
        detach: bool,
        /// Keep stdin open.
        #[arg(short, long)]
        interactive: bool,
        /// Allocate a terminal.
        #[arg(short, long)]
        tty: bool,
        /// User: name|uid[:group|gid].
        #[arg(short, long)]
        user: Option<String>,
        /// Environment variables.
        #[arg(short, long = "env")]
        env: Vec<String>,
        /// Working directory.
        #[arg(short, long = "workdir")]
        workdir: Option<String>,
        /// Container.
        container: String,
        /// Command and arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Wait for containers to stop; print their exit codes.
    Wait {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Freeze every process of containers.
    Pause {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers.
    Unpause {
        /// Containers.
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show a container's processes.
    Top {
        /// Container.
        container: String,
        /// ps options (default -ef).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Show containers' resource use (CPU, memory, pids).
    Stats {
        /// One sample instead of a live view.
        #[arg(long)]
        no_stream: bool,
        /// Containers (default: all running).
        containers: Vec<String>,
    },
    /// Rename a container.
    Rename {
        /// Container.
        container: String,
        /// New name.
        new_name: String,
    },
}

/// Everything a command needs.
pub struct Ctx {
    /// Containers.
    pub store: ContainerStore,
    /// Images.
    pub images: ContentStore,
    /// Pull options (TLS, credentials, wasm cache).
    pub pull: PullOptions,
}

fn find(ctx: &Ctx, key: &str) -> Result<Container> {
    ctx.store.find(key).map_err(|e| OpsError {
        code: 1,
        message: e.to_string(),
    })
}

/// Runs one container command; returns the exit code.
pub fn run(ctx: &Ctx, cmd: ContainerCmd) -> Result<i32> {
    match cmd {
        ContainerCmd::Run(a) => cmd_run(ctx, a, true),
        ContainerCmd::Create(a) => cmd_run(ctx, a, false),
        ContainerCmd::Start {
            attach,
            interactive,
            containers,
        } => {
            let mut code = 0;
            for k in &containers {
                let c = find(ctx, k)?;
                if ops::is_running(&ctx.store, &c) {
                    println!("{k}");
                    continue;
                }
                ops::ensure_rootfs(&ctx.store, &ctx.images, &c)?;
                ctx.store
                    .update(&c.id, |c| c.state.stopped_by_user = false)
                    .map_err(fail)?;
                if attach {
                    code = foreground(ctx, &c, interactive)?;
                } else {
                    let mut m = ops::spawn_monitor(&ctx.store, &c, Attach::default())?;
                    match m.next_event() {
                        Event::Started(_) | Event::Exit(_) => println!("{k}"),
                        Event::Error(code, msg) => return Err(OpsError { code, message: msg }),
                        Event::Lost => return Err(fail("the monitor died while starting the container (see monitor.log in its directory)")),
                    }
                }
            }
            Ok(code)
        }
        ContainerCmd::Stop { time, containers } => {
            for k in &containers {
                let c = find(ctx, k)?;
                ops::stop(&ctx.store, &c, time)?;
                println!("{k}");
            }
            Ok(0)
        }
        ContainerCmd::Restart { time, containers } => {
            for k in &containers {
                let c = find(ctx, k)?;
                ops::stop(&ctx.store, &c, time)?;
                let c = find(ctx, k)?;
                ops::ensure_rootfs(&ctx.store, &ctx.images, &c)?;
                ctx.store
                    .update(&c.id, |c| c.state.stopped_by_user = false)
                    .map_err(fail)?;
                let mut m = ops::spawn_monitor(&ctx.store, &c, Attach::default())?;
                match m.next_event() {
                    Event::Started(_) | Event::Exit(_) => println!("{k}"),
                    Event::Error(code, msg) => return Err(OpsError { code, message: msg }),
                    Event::Lost => {
                        return Err(fail("the monitor died while starting the container"))
                    }
                }
            }
            Ok(0)
        }
        ContainerCmd::Kill { signal, containers } => {
            let sig = pouch::runtime::signal::parse_signal(&signal).map_err(fail)?;
            for k in &containers {
                let c = find(ctx, k)?;
                if !ops::is_running(&ctx.store, &c) {
                    return Err(fail(format!("container {k} is not running")));
                }
                ctx.store
                    .update(&c.id, |c| c.state.stopped_by_user = true)
                    .map_err(fail)?;
                ops::signal(&ctx.store, &c, sig, false)?;
                println!("{k}");
            }
            Ok(0)
        }
        ContainerCmd::Rm { force, containers } => {
            let mut code = 0;
            for k in &containers {
                match find(ctx, k).and_then(|c| ops::remove(&ctx.store, &c, force)) {
                    Ok(()) => println!("{k}"),
                    Err(e) => {
                        eprintln!("Error: {e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        ContainerCmd::Ps {
            all,
            quiet,
            no_trunc,
            filter,
            format,
        } => ps(ctx, all, quiet, no_trunc, &filter, format.as_deref()),
        ContainerCmd::Logs {
            follow,
            tail,
            since,
            timestamps,
            container,
        } => {
            let c = find(ctx, &container)?;
            let opts =
                pouch::container::logs::ReadOptions {
                    tail: match tail.as_deref() {
                        None | Some("all") => None,
                        Some(n) => Some(n.parse().map_err(|_| {
                            fail(format!("--tail {n:?}: a number of lines, or all"))
                        })?),
                    },
                    since: since
                        .as_deref()
                        .map(pouch::container::logs::parse_since)
                        .transpose()
                        .map_err(fail)?,
                    timestamps,
                };
            let path = PathBuf::from(&c.log_path);
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let mut off = pouch::container::logs::print(&path, 0, &opts, &mut out, &mut err)
                .map_err(|e| fail(format!("read {}: {e}", path.display())))?;
            if follow {
                loop {
                    let alive = ctx
                        .store
                        .load(&c.id)
                        .map(|c| {
                            matches!(c.state.status.as_str(), "running" | "restarting" | "paused")
                                && monitor_alive(&c.state)
                        })
                        .unwrap_or(false);
                    off = pouch::container::logs::print(&path, off, &opts, &mut out, &mut err)
                        .map_err(|e| fail(format!("read {}: {e}", path.display())))?;
                    if !alive {
                        // One more read: what the monitor wrote while it finished.
                        pouch::container::logs::print(&path, off, &opts, &mut out, &mut err)
                            .map_err(|e| fail(e.to_string()))?;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Ok(0)
        }
        ContainerCmd::Exec {
            detach,
            interactive,
            tty,
            user,
            env,
            workdir,
            container,
            command,
        } => {
            let c = find(ctx, &container)?;
            if !ops::is_running(&ctx.store, &c) {
                return Err(fail(format!(
                    "container {container} is not running: start it first (pouch start {container})"
                )));
            }
            let runtime = runtime_binary()?;
            let mut cmd = std::process::Command::new(runtime);
            cmd.arg("--root")
                .arg(ctx.store.data_root().join("runtime"))
                .arg("exec");
            if tty {
                cmd.arg("--tty");
            }
            if detach {
                cmd.arg("--detach");
            }
            for e in &env {
                cmd.arg("--env").arg(e);
            }
            if let Some(w) = &workdir {
                cmd.arg("--cwd").arg(w);
            }
            if let Some(u) = &user {
                let rootfs = Path::new(&c.bundle).join("rootfs");
                let (uid, gid, _) =
                    pouch::container::spec_gen::resolve_user(&rootfs, u, &[]).map_err(fail)?;
                cmd.arg("--user").arg(format!("{uid}:{gid}"));
            }
            cmd.arg(&c.id).args(&command);
            if !interactive && !tty {
                cmd.stdin(std::process::Stdio::null());
            }
            let st = cmd
                .status()
                .map_err(|e| fail(format!("run pouch-runtime exec: {e}")))?;
            Ok(st.code().unwrap_or(125))
        }
        ContainerCmd::Wait { containers } => {
            let mut last = 0;
            for k in &containers {
                let c = find(ctx, k)?;
                loop {
                    match ctx.store.load(&c.id) {
                        Err(_) => {
                            return Err(OpsError {
                                code: 1,
                                message: format!("container {k} was removed while waiting"),
                            })
                        }
                        Ok(x) => {
                            let x = ops::live_state(&ctx.store, &x);
                            if matches!(x.state.status.as_str(), "exited" | "dead" | "created") {
                                println!("{}", x.state.exit_code);
                                last = x.state.exit_code;
                                break;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = last;
            Ok(0)
        }
        ContainerCmd::Pause { containers } => {
            for k in &containers {
                let c = find(ctx, k)?;
                ctx.store.runtime().pause(&c.id).map_err(fail)?;
                ctx.store
                    .update(&c.id, |c| {
                        c.state.status = "paused".into();
                        c.state.paused = true;
                    })
                    .map_err(fail)?;
                println!("{k}");
            }
            Ok(0)
        }
        ContainerCmd::Unpause { containers } => {
            for k in &containers {
                let c = find(ctx, k)?;
                ctx.store.runtime().resume(&c.id).map_err(fail)?;
                ctx.store
                    .update(&c.id, |c| {
                        c.state.status = "running".into();
                        c.state.paused = false;
                    })
                    .map_err(fail)?;
                println!("{k}");
            }
            Ok(0)
        }
        ContainerCmd::Top { container, ps_args } => {
            let c = find(ctx, &container)?;
            let t = ctx
                .store
                .runtime()
                .ps_table(&c.id, &ps_args)
                .map_err(fail)?;
            print!("{t}");
            Ok(0)
        }
        ContainerCmd::Stats {
            no_stream,
            containers,
        } => stats(ctx, no_stream, &containers),
        ContainerCmd::Rename {
            container,
            new_name,
        } => {
            let c = find(ctx, &container)?;
            pouch::container::names::reserve(&ctx.store, &new_name, &c.id).map_err(fail)?;
            let old = c.name.clone();
            ctx.store
                .update(&c.id, |c| c.name = new_name.clone())
                .map_err(fail)?;
            pouch::container::names::release(&ctx.store, &old, &c.id);
            Ok(0)
        }
    }
}

/// The `pouch-runtime` binary: `$POUCH_RUNTIME`, else beside `pouch`, else on PATH.
fn runtime_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("POUCH_RUNTIME") {
        return Ok(PathBuf::from(p));
    }
    if let Ok(me) = std::env::current_exe() {
        let p = me.with_file_name("pouch-runtime");
        if p.exists() {
            return Ok(p);
        }
    }
    Ok(PathBuf::from("pouch-runtime"))
}

fn cmd_run(ctx: &Ctx, a: RunArgs, start: bool) -> Result<i32> {
    if a.detach && a.flags.tty && a.flags.interactive && start {
        // Docker allows -dit (attach later); without attach there is nobody to type.
        tracing::warn!("-d with -it: stdin is not attached (pouch has no attach)");
    }
    let (rec, img) = ops::image_for_run(
        &ctx.images,
        &a.image,
        a.pull,
        a.platform.as_ref(),
        &ctx.pull,
    )?;
    let c = ops::create(
        &ctx.store,
        &ctx.images,
        &rec,
        &img,
        &CreateRequest {
            image: a.image.clone(),
            command: a.command.clone(),
            flags: a.flags.clone(),
            auto_remove: a.rm,
        },
    )?;
    if !start {
        println!("{}", c.id);
        return Ok(0);
    }
    if a.detach {
        let mut m = ops::spawn_monitor(&ctx.store, &c, Attach::default())?;
        return match m.next_event() {
            Event::Started(_) | Event::Exit(_) => {
                println!("{}", c.id);
                Ok(0)
            }
            Event::Error(code, msg) => Err(OpsError { code, message: msg }),
            Event::Lost => Err(fail(
                "the monitor died while starting the container (see monitor.log in its directory)",
            )),
        };
    }
    foreground(ctx, &c, a.flags.interactive)
}

/// Restores the terminal when dropped.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enable() -> RawTerminal {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return RawTerminal(None);
        }
        let saved = nix::sys::termios::tcgetattr(&stdin).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            nix::sys::termios::cfmakeraw(&mut raw);
            let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &raw);
        }
        RawTerminal(saved)
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                t,
            );
        }
    }
}

/// A foreground run: the monitor forwards the output to us; we forward signals to the
/// container (window changes to the monitor) and exit with the container's code.
fn foreground(ctx: &Ctx, c: &Container, interactive: bool) -> Result<i32> {
    let forwarded = [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ];
    let mut set = SigSet::empty();
    for s in forwarded {
        set.add(s);
    }
    // Block them in every thread (the monitor resets its own mask).
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    let _raw = if c.config.tty {
        Some(RawTerminal::enable())
    } else {
        None
    };
    let mut m = ops::spawn_monitor(
        &ctx.store,
        c,
        Attach {
            stdin: interactive,
            output: true,
        },
    )?;
    let monitor_pid = m.pid() as i32;
    let (store, id) = (ctx.store.clone(), c.id.clone());
    std::thread::spawn(move || loop {
        let Ok(sig) = set.wait() else { return };
        if sig == Signal::SIGWINCH {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor_pid), sig);
        } else {
            let _ = store.runtime().kill(&id, sig as i32, false);
        }
    });
    loop {
        match m.next_event() {
            Event::Started(_) => continue,
            Event::Exit(code) => {
                m.reap();
                return Ok(code);
            }
            Event::Error(code, msg) => {
                // --rm: the monitor removed it; otherwise it stays, exited, with the error.
                let _ = m.next_event();
                m.reap();
                return Err(OpsError { code, message: msg });
            }
            Event::Lost => {
                return Err(fail(format!(
                    "the monitor of container {} died; the container may still run (pouch ps)",
                    &c.id[..12]
                )))
            }
        }
    }
}

fn ps_value(c: &Container, no_trunc: bool) -> serde_json::Value {
    let cmd = std::iter::once(c.path.clone())
        .chain(c.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let cmd = if no_trunc || cmd.len() <= 20 {
        cmd
    } else {
        format!(
            "{}…",
            &cmd[..cmd.char_indices().nth(19).map(|x| x.0).unwrap_or(19)]
        )
    };
    serde_json::json!({
        "ID": if no_trunc { c.id.clone() } else { c.id[..12].to_string() },
        "Names": c.name,
        "Image": c.config.image,
        "Command": cmd,
        "Created": c.created,
        "Status": ops::status_text(c),
        "State": c.state.status,
        "Executor": c.executor,
        "Labels": c.config.labels,
    })
}

fn matches_filter(c: &Container, f: &str) -> Result<bool> {
    let (k, v) = f
        .split_once('=')
        .ok_or_else(|| fail(format!("--filter {f:?}: use KEY=VALUE")))?;
    Ok(match k {
        "name" => c.name.contains(v),
        "id" => c.id.starts_with(v),
        "status" => c.state.status == v,
        "ancestor" => c.config.image == v || c.image_name.contains(v) || c.image.contains(v),
        "executor" => c.executor == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => c.config.labels.get(lk).is_some_and(|x| x == lv),
            None => c.config.labels.contains_key(v),
        },
        _ => {
            return Err(fail(format!(
                "--filter {k}: supported are name, id, status, ancestor, executor, label"
            )))
        }
    })
}

fn ps(
    ctx: &Ctx,
    all: bool,
    quiet: bool,
    no_trunc: bool,
    filters: &[String],
    format: Option<&str>,
) -> Result<i32> {
    let mut rows = Vec::new();
    for c in ctx.store.list() {
        let c = ops::live_state(&ctx.store, &c);
        if !all && !matches!(c.state.status.as_str(), "running" | "paused" | "restarting") {
            continue;
        }
        let mut ok = true;
        for f in filters {
            ok &= matches_filter(&c, f)?;
        }
        if ok {
            rows.push(c);
        }
    }
    if quiet {
        for c in &rows {
            println!("{}", if no_trunc { &c.id[..] } else { &c.id[..12] });
        }
        return Ok(0);
    }
    match format {
        Some("json") => {
            let v: Vec<_> = rows.iter().map(|c| ps_value(c, no_trunc)).collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
        Some(t) => {
            let tpl = Template::parse(t.strip_prefix("table ").unwrap_or(t)).map_err(fail)?;
            for c in &rows {
                println!("{}", tpl.render(&ps_value(c, no_trunc)));
            }
        }
        None => {
            let mut out = format!(
                "{:<12}   {:<28} {:<22} {:<16} {:<32} {:<8} NAMES\n",
                "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "EXECUTOR"
            );
            for c in &rows {
                let v = ps_value(c, no_trunc);
                let created = humantime::parse_rfc3339_weak(
                    c.created.split('.').next().unwrap_or(&c.created),
                )
                .ok()
                .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                .map(|d| format!("{} ago", ops::human_duration(d)))
                .unwrap_or_default();
                out.push_str(&format!(
                    "{:<12}   {:<28} {:<22} {:<16} {:<32} {:<8} {}\n",
                    v["ID"].as_str().unwrap_or(""),
                    c.config.image,
                    format!("\"{}\"", v["Command"].as_str().unwrap_or("")),
                    created,
                    v["Status"].as_str().unwrap_or(""),
                    c.executor,
                    c.name
                ));
            }
            print!("{out}");
        }
    }
    Ok(0)
}

fn stats(ctx: &Ctx, no_stream: bool, keys: &[String]) -> Result<i32> {
    let targets: Vec<Container> = if keys.is_empty() {
        ctx.store
            .list()
            .into_iter()
            .filter(|c| ops::is_running(&ctx.store, c))
            .collect()
    } else {
        keys.iter().map(|k| find(ctx, k)).collect::<Result<_>>()?
    };
    let rt = ctx.store.runtime();
    let sample = |c: &Container| -> Option<(u64, u64, u64, u64)> {
        let v = rt.stats_event(&c.id).ok()?;
        let d = &v["data"];
        Some((
            d["cpu"]["usage"]["total"].as_u64().unwrap_or(0),
            d["memory"]["usage"]["usage"].as_u64().unwrap_or(0),
            d["memory"]["usage"]["limit"].as_u64().unwrap_or(0),
            d["pids"]["current"].as_u64().unwrap_or(0),
        ))
    };
    loop {
        let t0 = std::time::Instant::now();
        let first: Vec<_> = targets.iter().map(&sample).collect();
        std::thread::sleep(Duration::from_millis(500));
        let dt = t0.elapsed().as_nanos() as f64;
        let mut out = format!(
            "{:<12}   {:<24} {:>8}   {:>22}   {:>6}\n",
            "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"
        );
        for (c, f) in targets.iter().zip(first) {
            let s = sample(c);
            let (cpu, mem, lim, pids) = match (f, s) {
                (Some(a), Some(b)) => {
                    ((b.0.saturating_sub(a.0)) as f64 / dt * 100.0, b.1, b.2, b.3)
                }
                _ => (0.0, 0, 0, 0),
            };
            let mib = |b: u64| format!("{:.2}MiB", b as f64 / 1048576.0);
            let limit = if lim == 0 || lim > 1 << 60 {
                "unlimited".to_string()
            } else {
                mib(lim)
            };
            out.push_str(&format!(
                "{:<12}   {:<24} {:>7.2}%   {:>22}   {:>6}\n",
                &c.id[..12],
                c.name,
                cpu,
                format!("{} / {}", mib(mem), limit),
                pids
            ));
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
        if no_stream {
            return Ok(0);
        }
    }
}

/// `inspect` of a container, if `key` names one.
pub fn inspect_container(ctx: &Ctx, key: &str) -> Option<serde_json::Value> {
    let c = ctx.store.find(key).ok()?;
    Some(ops::inspect_value(&ops::live_state(&ctx.store, &c)))
}

/// `system prune`: removes stopped containers; returns how many.
pub fn prune_containers(ctx: &Ctx) -> usize {
    let mut n = 0;
    for c in ctx.store.list() {
        let c = ops::live_state(&ctx.store, &c);
        if matches!(c.state.status.as_str(), "exited" | "created" | "dead")
            && !ops::is_running(&ctx.store, &c)
            && ops::remove(&ctx.store, &c, false).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// The monitor's entry point.
pub fn monitor(data_root: &Path, id: &str) -> i32 {
    let store = match ContainerStore::open(data_root) {
        Ok(s) => s,
        Err(_) => return 125,
    };
    pouch::container::monitor::run(&store, id)
}
