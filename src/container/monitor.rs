//! The per-container monitor (`pouch` re-executed as `pouch __monitor ID`), our conmon.
//!
//! It is started by `pouch run`/`start` in a new session, so it outlives the CLI and no
//! terminal signal reaches it. It:
//! - creates and starts the container through the runtime library (it is single-threaded, as
//!   the runtime requires), with the container's stdout and stderr on pipes it reads (or a
//!   pty whose master it holds, with `-t`);
//! - writes every line to the json-file log, and also to its own stdout/stderr when the CLI
//!   that started it is attached (the CLI passes its descriptors);
//! - reaps the container (it is a child subreaper), records exit code, times and OOM kills;
//! - applies the restart policy and `--rm`;
//! - reports to an attached CLI over a status pipe: `started PID`, `error CODE MESSAGE`,
//!   `exit CODE`, one a line.
//!
//! Descriptors on entry: 0 = the container's stdin (the CLI's with `-i`, else /dev/null);
//! 1/2 = where to forward the output (the CLI's, or /dev/null); `$POUCH_MONITOR_STATUS_FD` =
//! the status pipe, if any.

use super::logs::LogWriter;
use super::record::{now, process_start_time, Container, ContainerStore};
use crate::runtime::{CreateOptions, Runtime};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The environment variable naming the status pipe's descriptor.
pub const STATUS_FD_ENV: &str = "POUCH_MONITOR_STATUS_FD";

struct Status {
    fd: Option<std::fs::File>,
}

impl Status {
    fn say(&mut self, line: &str) {
        // The CLI may be gone: a write must fail with EPIPE, not kill us. (The default is
        // restored before the next container is created.)
        // SAFETY: ignoring a signal.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        if let Some(f) = &mut self.fd {
            if f.write_all(format!("{line}\n").as_bytes()).is_err() {
                self.fd = None;
            }
        }
    }
}

/// Exit code for a container that could not be started (Docker's conventions): 127 when the
/// program is not there, 126 when it cannot be executed, 125 for anything else.
pub fn start_error_code(msg: &str) -> i32 {
    let m = msg.to_ascii_lowercase();
    if m.contains("no such file") || m.contains("not found") || m.contains("does not exist") {
        127
    } else if m.contains("permission denied")
        || m.contains("exec format")
        || m.contains("is a directory")
    {
        126
    } else {
        125
    }
}

fn dup_cloexec(fd: RawFd) -> Option<OwnedFd> {
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
    // SAFETY: a fresh descriptor we own.
    (n >= 0).then(|| unsafe { OwnedFd::from_raw_fd(n) })
}

fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => return false,
        }
    }
    true
}

fn devnull() -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .expect("/dev/null")
}

/// Runs the monitor for container `id` until it is done; returns the process exit code.
pub fn run(store: &ContainerStore, id: &str) -> i32 {
    let mut status = Status {
        fd: std::env::var(STATUS_FD_ENV)
            .ok()
            .and_then(|s| s.parse::<RawFd>().ok())
            // SAFETY: the descriptor was passed to us for this purpose.
            .map(|fd| unsafe { std::fs::File::from_raw_fd(fd) }),
    };
    // Keep the forward targets and the container's stdin away from 0/1/2, which the
    // container inherits from us at create.
    let fwd_out = dup_cloexec(1);
    let fwd_err = dup_cloexec(2);
    let stdin = dup_cloexec(0);
    // SAFETY: prctl with constant arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let rt = store.runtime();
    let mut first = true;
    loop {
        let c = match store.load(id) {
            Ok(c) => c,
            Err(e) => {
                status.say(&format!("error 125 {e}"));
                return 125;
            }
        };
        let outcome = run_once(
            store,
            &rt,
            &c,
            if first { stdin.as_ref() } else { None },
            fwd_out.as_ref(),
            fwd_err.as_ref(),
            &mut status,
        );
        first = false;
        let (code, started) = match outcome {
            Ok(code) => (code, true),
            Err((code, msg)) => {
                let _ = store.update(id, |c| {
                    c.state.status = "exited".into();
                    c.state.running = false;
                    c.state.pid = 0;
                    c.state.exit_code = code;
                    c.state.error = msg.clone();
                    c.state.finished_at = now();
                });
                status.say(&format!("error {code} {msg}"));
                (code, false)
            }
        };
        let c = match store.load(id) {
            Ok(c) => c,
            Err(_) => return code,
        };
        if started && should_restart(&c, code) {
            let n = c.restart_count + 1;
            let _ = store.update(id, |c| {
                c.restart_count = n;
                c.state.restarting = true;
                c.state.status = "restarting".into();
            });
            // Docker's back-off: 100 ms doubling, at most a minute.
            let delay = Duration::from_millis(100u64 << n.min(10)).min(Duration::from_secs(60));
            std::thread::sleep(delay);
            if store
                .load(id)
                .map(|c| c.state.stopped_by_user)
                .unwrap_or(true)
            {
                let _ = store.update(id, |c| {
                    c.state.restarting = false;
                    c.state.status = "exited".into();
                });
                status.say(&format!("exit {code}"));
                return code;
            }
            continue;
        }
        if c.host_config.auto_remove {
            if let Err(e) = super::ops::remove_files(store, &c) {
                tracing::warn!("--rm: {e}");
            }
        }
        status.say(&format!("exit {code}"));
        return code;
    }
}

fn should_restart(c: &Container, code: i32) -> bool {
    if c.state.stopped_by_user || c.host_config.auto_remove {
        return false;
    }
    let p = &c.host_config.restart_policy;
    match p.name.as_str() {
        "always" | "unless-stopped" => true,
        "on-failure" => {
            code != 0 && (p.maximum_retry_count == 0 || c.restart_count < p.maximum_retry_count)
        }
        _ => false,
    }
}

/// One create → start → wait → delete. `Ok(exit code)` once it ran, `Err((code, message))`
/// when it could not be started.
fn run_once(
    store: &ContainerStore,
    rt: &Runtime,
    c: &Container,
    stdin: Option<&OwnedFd>,
    fwd_out: Option<&OwnedFd>,
    fwd_err: Option<&OwnedFd>,
    status: &mut Status,
) -> Result<i32, (i32, String)> {
    let id = &c.id;
    // The container must not inherit our signal mask or ignored SIGPIPE.
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: restoring a default disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // A leftover runtime container of an earlier run (a killed monitor): remove it.
    let _ = rt.delete(id, true);
    let null = devnull();
    // The container's stdio: stdin, and pipes for stdout/stderr (or a terminal).
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| (125, format!("pipe: {e}")))?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| (125, format!("pipe: {e}")))?;
    let in_fd = stdin.map(|f| f.as_raw_fd()).unwrap_or(null.as_raw_fd());
    let set_stdio = |i: RawFd, o: RawFd, e: RawFd| {
        // SAFETY: dup2 onto our own standard descriptors.
        unsafe {
            libc::dup2(i, 0);
            libc::dup2(o, 1);
            libc::dup2(e, 2);
        }
    };
    set_stdio(in_fd, out_w.as_raw_fd(), err_w.as_raw_fd());
    let created = rt.create_with_console(
        id,
        &CreateOptions {
            bundle: store.dir(id),
            ..Default::default()
        },
        None,
        true,
    );
    // Our own copies of the write ends must go, or the pipes never reach EOF.
    set_stdio(null.as_raw_fd(), null.as_raw_fd(), null.as_raw_fd());
    drop(out_w);
    drop(err_w);
    let (state, master) = created.map_err(|e| {
        let m = e.to_string();
        (start_error_code(&m), m)
    })?;
    // Block the signals we handle (the init was forked before: it keeps the old mask).
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGWINCH,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    // A CLI that went away must not kill us through a write to its terminal or pipe.
    // SAFETY: ignoring a signal.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if let Err(e) = rt.start(id) {
        let m = e.to_string();
        let _ = rt.delete(id, true);
        return Err((start_error_code(&m), m));
    }
    let init = state.pid;
    let _ = store.update(id, |c| {
        c.state.status = "running".into();
        c.state.running = true;
        c.state.restarting = false;
        c.state.paused = false;
        c.state.pid = init;
        c.state.exit_code = 0;
        c.state.error.clear();
        c.state.oom_killed = false;
        c.state.started_at = now();
        c.state.finished_at.clear();
        c.state.monitor_pid = std::process::id() as i32;
        c.state.monitor_start_time = process_start_time(std::process::id() as i32).unwrap_or(0);
    });
    status.say(&format!("started {init}"));

    let mut log = LogWriter::open(std::path::Path::new(&c.log_path));
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| (125, format!("signalfd: {e}")))?;
    let resize = |m: &OwnedFd| {
        let src = stdin
            .map(|f| f.as_raw_fd())
            .into_iter()
            .chain(fwd_out.map(|f| f.as_raw_fd()));
        for fd in src {
            if let Some(ws) = native_runner::console::get_winsize(fd) {
                let _ = native_runner::console::set_winsize(m.as_raw_fd(), ws);
                return;
            }
        }
    };
    if let Some(m) = &master {
        resize(m);
    }
    // Sources of output: the pipes, or the terminal's master.
    let (mut out_r, mut err_r) = if master.is_some() {
        (None, None)
    } else {
        (Some(out_r), Some(err_r))
    };
    let mut master = master;
    // With a terminal and -i, our stdin goes to the master.
    let mut stdin_relay = if master.is_some() && c.config.open_stdin {
        stdin
    } else {
        None
    };
    let mut code: Option<i32> = None;
    let mut exited_at: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Reap: the init, and any orphan reparented to us.
        loop {
            let mut st = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == init {
                code = crate::runtime::exit_code(st);
                exited_at = Some(Instant::now());
            }
        }
        let sources_done = out_r.is_none() && err_r.is_none() && master.is_none();
        if code.is_some()
            && (sources_done || exited_at.is_some_and(|t| t.elapsed() > Duration::from_secs(2)))
        {
            break;
        }
        // Which descriptor each poll entry is: 0 signals, 1 stdout, 2 stderr, 3 master, 4 stdin.
        let mut which = vec![0u8];
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(f) = &out_r {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            which.push(1);
        }
        if let Some(f) = &err_r {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            which.push(2);
        }
        if let Some(f) = &master {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            which.push(3);
        }
        if let Some(f) = stdin_relay {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            which.push(4);
        }
        let timeout = if code.is_some() {
            PollTimeout::from(100u16)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!("poll: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let ready: Vec<(u8, bool)> = fds
            .iter()
            .zip(&which)
            .map(|(p, w)| (*w, p.revents().is_some_and(|r| !r.is_empty())))
            .filter(|(_, r)| *r)
            .collect();
        drop(fds);
        for (w, _) in ready {
            match w {
                0 => {
                    while let Ok(Some(info)) = sfd.read_signal() {
                        if info.ssi_signo as i32 == libc::SIGWINCH {
                            if let Some(m) = &master {
                                resize(m);
                            }
                        }
                    }
                }
                1..=3 => {
                    let src = match w {
                        1 => &mut out_r,
                        2 => &mut err_r,
                        _ => &mut master,
                    };
                    let n = match src.as_ref().map(|f| nix::unistd::read(f, &mut buf)) {
                        Some(Ok(n)) => n,
                        Some(Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN)) => continue,
                        // EIO: the terminal's last holder went away.
                        _ => 0,
                    };
                    if n == 0 {
                        *src = None;
                        continue;
                    }
                    let (stream, fwd) = if w == 2 {
                        ("stderr", fwd_err)
                    } else {
                        ("stdout", fwd_out)
                    };
                    log.write(stream, &buf[..n]);
                    if let Some(f) = fwd {
                        write_all(f.as_fd(), &buf[..n]);
                    }
                }
                _ => {
                    let n = match stdin_relay.map(|f| nix::unistd::read(f, &mut buf)) {
                        Some(Ok(n)) => n,
                        Some(Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN)) => continue,
                        _ => 0,
                    };
                    match &master {
                        Some(m) if n > 0 => {
                            write_all(m.as_fd(), &buf[..n]);
                        }
                        Some(m) => {
                            // End of input: the terminal's end-of-file character.
                            write_all(m.as_fd(), &[4]);
                            stdin_relay = None;
                        }
                        None => stdin_relay = None,
                    }
                }
            }
        }
    }
    log.flush();
    let code = code.unwrap_or(137);
    finish(store, rt, c, code);
    Ok(code)
}

fn finish(store: &ContainerStore, rt: &Runtime, c: &Container, code: i32) {
    let oom = crate::runtime::state::ContainerDir::open(rt, &c.id)
        .and_then(|d| d.load())
        .and_then(|r| r.cgroup())
        .map(|cg| cg.oom_kills() > 0)
        .unwrap_or(false);
    let _ = rt.delete(&c.id, true);
    let _ = store.update(&c.id, |c| {
        c.state.status = "exited".into();
        c.state.running = false;
        c.state.paused = false;
        c.state.pid = 0;
        c.state.exit_code = code;
        c.state.oom_killed = oom;
        c.state.finished_at = now();
    });
}
