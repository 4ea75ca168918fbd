//! The task service (containerd's task API): one shim serves the containers of one pod (or a
//! single container) and drives each through `pouch-runtime`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use containerd_shim::api;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::event::Event;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::oci::Options;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::protos::types::task::{ProcessInfo, Status};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, Task, TtrpcContext, TtrpcResult};
use tokio::sync::watch;

use crate::metrics::OomCounter;
use crate::reaper::Reaper;
use crate::runtime::{ProcessStdio, RuntimeCli, DEFAULT_ROOT_BASE};
use crate::stdio::{open_fifos, ConsoleSocket, Terminal};

/// The file in a bundle where the shim records how it ran the container (runtime binary and
/// root), for `containerd-shim-pouch-v2 delete` after the serving shim is gone.
pub const BUNDLE_RECORD: &str = "pouch-shim.json";

/// How the containers of a bundle are run: written at Create, read by the `delete` action.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct BundleRecord {
    /// The `pouch-runtime` binary.
    pub runtime: PathBuf,
    /// Its `--root`.
    pub root: PathBuf,
    /// Whether the shim mounted `<bundle>/rootfs` itself.
    pub mounted_rootfs: bool,
}

fn err(code: Code, msg: impl ToString) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

fn not_found(what: &str) -> ttrpc::Error {
    err(Code::NOT_FOUND, format!("{what} not found in this shim"))
}

/// A process's exit: status and time.
#[derive(Clone, Debug)]
struct Exit {
    status: u32,
    at: Timestamp,
}

/// One process of a container: its init or an exec.
struct Proc {
    pid: u32,
    started: bool,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    console: Option<Terminal>,
    /// An exec's process.json (containerd's runtime-spec Process, JSON).
    spec: Vec<u8>,
    exit_tx: Arc<watch::Sender<Option<Exit>>>,
}

impl Proc {
    fn new(stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Proc {
        Proc {
            pid: 0,
            started: false,
            stdin: stdin.to_owned(),
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
            terminal,
            console: None,
            spec: Vec::new(),
            exit_tx: Arc::new(watch::channel(None).0),
        }
    }

    fn exit(&self) -> Option<Exit> {
        self.exit_tx.borrow().clone()
    }
}

struct Container {
    bundle: PathBuf,
    rootfs: Option<PathBuf>,
    cli: RuntimeCli,
    init: Proc,
    execs: HashMap<String, Proc>,
    paused: bool,
    /// The OOM-kill counter of the container's memory cgroup (`None`: no memory controller).
    oom: Option<Arc<OomCounter>>,
}

impl Container {
    fn proc(&self, exec_id: &str) -> TtrpcResult<&Proc> {
        if exec_id.is_empty() {
            Ok(&self.init)
        } else {
            self.execs
                .get(exec_id)
                .ok_or_else(|| not_found(&format!("exec {exec_id:?}")))
        }
    }

    fn proc_mut(&mut self, exec_id: &str) -> TtrpcResult<&mut Proc> {
        if exec_id.is_empty() {
            Ok(&mut self.init)
        } else {
            self.execs
                .get_mut(exec_id)
                .ok_or_else(|| not_found(&format!("exec {exec_id:?}")))
        }
    }
}

/// The task service of one shim.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    publisher: RemotePublisher,
    reaper: Reaper,
    runtime: Result<PathBuf, String>,
    exit: Arc<ExitSignal>,
    containers: Mutex<HashMap<String, Container>>,
}

impl Service {
    /// A service publishing to containerd through `publisher`; `exit` is signalled when
    /// containerd shuts the shim down with no container left.
    pub fn new(
        namespace: &str,
        publisher: RemotePublisher,
        reaper: Reaper,
        exit: Arc<ExitSignal>,
    ) -> Service {
        Service {
            inner: Arc::new(Inner {
                namespace: namespace.to_owned(),
                publisher,
                reaper,
                runtime: crate::runtime::find_runtime(),
                exit,
                containers: Mutex::new(HashMap::new()),
            }),
        }
    }

    async fn publish(&self, event: impl Event + 'static) {
        let topic = event.topic();
        if let Err(e) = self
            .inner
            .publisher
            .publish(
                Context::default(),
                &topic,
                &self.inner.namespace,
                Box::new(event),
            )
            .await
        {
            log::warn!("publish {topic}: {e}");
        }
    }

    fn with<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Container) -> TtrpcResult<T>,
    ) -> TtrpcResult<T> {
        let mut map = self.inner.containers.lock().unwrap();
        let c = map
            .get_mut(id)
            .ok_or_else(|| not_found(&format!("container {id:?}")))?;
        f(c)
    }

    fn cli(&self, id: &str) -> TtrpcResult<RuntimeCli> {
        self.with(id, |c| Ok(c.cli.clone()))
    }

    /// Waits for `pid`'s exit (reaped by us), records it and publishes TaskExit, preceded by
    /// TaskOOM when the OOM killer ended a process of the container's cgroup since the last
    /// exit (the cgroup lives on until `pouch-runtime delete`, so its counter is still there).
    fn watch_exit(&self, id: &str, exec_id: &str, pid: u32) {
        let rx = self.inner.reaper.watch(pid as i32);
        let me = self.clone();
        let (id, exec_id) = (id.to_owned(), exec_id.to_owned());
        tokio::spawn(async move {
            let status = rx.await.unwrap_or(255) as u32;
            let at = containerd_shim::util::timestamp().unwrap_or_default();
            let found = me.with(&id, |c| {
                let p = c.proc(&exec_id)?;
                Ok((p.exit_tx.clone(), p.console.clone(), c.oom.clone()))
            });
            let Ok((tx, console, oom)) = found else {
                return;
            };
            if let Some(t) = console {
                // Deliver what the terminal still holds before announcing the exit.
                t.io.shutdown().await;
            }
            if oom.is_some_and(|o| o.new_kills()) {
                log::info!("container {id}: the OOM killer ended a process of its cgroup");
                me.publish(TaskOOM {
                    container_id: id.clone(),
                    ..Default::default()
                })
                .await;
            }
            me.publish(TaskExit {
                container_id: id.clone(),
                id: if exec_id.is_empty() {
                    id.clone()
                } else {
                    exec_id.clone()
                },
                pid,
                exit_status: status,
                exited_at: Some(at.clone()).into(),
                ..Default::default()
            })
            .await;
            tx.send_replace(Some(Exit { status, at }));
        });
    }

    /// The runtime binary and root for a new container (runc options may name both).
    fn runtime_for(&self, options: Option<&Options>) -> TtrpcResult<(PathBuf, PathBuf)> {
        let mut binary = self
            .inner
            .runtime
            .clone()
            .map_err(|e| err(Code::FAILED_PRECONDITION, e))?;
        let mut root = Path::new(DEFAULT_ROOT_BASE).join(&self.inner.namespace);
        if let Some(o) = options {
            if !o.root.is_empty() {
                root = PathBuf::from(&o.root).join(&self.inner.namespace);
            }
            if !o.binary_name.is_empty() {
                binary = PathBuf::from(&o.binary_name);
            }
        }
        Ok((binary, root))
    }

    /// Runs the runtime with a process's stdio (fifos or a console socket); returns the
    /// console socket for a terminal.
    async fn run_with_stdio(
        &self,
        cli: &RuntimeCli,
        mut args: Vec<OsString>,
        p: (&str, &str, &str, bool),
        what: &str,
    ) -> TtrpcResult<Option<Terminal>> {
        let (stdin, stdout, stderr, terminal) = p;
        let (stdio, console) = if terminal {
            let s = ConsoleSocket::new()
                .map_err(|e| err(Code::INTERNAL, format!("console socket: {e}")))?;
            let id = args.pop().unwrap_or_default();
            args.push("--console-socket".into());
            args.push(s.path().into());
            args.push(id);
            (
                ProcessStdio {
                    stdin: None,
                    stdout: None,
                    stderr: None,
                },
                Some(s),
            )
        } else {
            let s = open_fifos(stdin, stdout, stderr)
                .map_err(|e| err(Code::INTERNAL, format!("{what}: {e}")))?;
            (s, None)
        };
        cli.run(&args, Some(stdio)).await.map_err(|e| {
            // E.g. exec into a wasm container: there is no Linux process to join.
            let code = if e.message.to_lowercase().contains("not implemented") {
                Code::UNIMPLEMENTED
            } else {
                Code::UNKNOWN
            };
            err(code, format!("OCI runtime {what} failed: {e}"))
        })?;
        match console {
            None => Ok(None),
            Some(s) => {
                let master = s
                    .receive()
                    .map_err(|e| err(Code::INTERNAL, format!("{what}: {e}")))?;
                Terminal::start(master, stdin, stdout)
                    .map(Some)
                    .map_err(|e| err(Code::INTERNAL, e))
            }
        }
    }

    async fn unmount(rootfs: &Path) {
        let r = rootfs.to_owned();
        let _ = tokio::task::spawn_blocking(move || unmount_rootfs(&r)).await;
    }
}

/// Unmounts everything at and below `rootfs` (deepest first), detaching what is busy.
pub fn unmount_rootfs(rootfs: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = rootfs.to_string_lossy().into_owned();
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| *mp == prefix || mp.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for mp in points {
        if let Err(e) = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH) {
            log::warn!("unmount {mp}: {e}");
        }
    }
}

fn read_pid(path: &Path) -> TtrpcResult<u32> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            err(
                Code::INTERNAL,
                format!("the runtime wrote no pid to {}", path.display()),
            )
        })
}

fn task_status(c: &Container, p: &Proc) -> Status {
    if p.exit().is_some() {
        Status::STOPPED
    } else if !p.started {
        Status::CREATED
    } else if c.paused {
        Status::PAUSED
    } else {
        Status::RUNNING
    }
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let id = req.id.clone();
        if self.inner.containers.lock().unwrap().contains_key(&id) {
            return Err(err(
                Code::ALREADY_EXISTS,
                format!("container {id:?} already exists in this shim"),
            ));
        }
        let bundle = PathBuf::from(&req.bundle);
        let options = req
            .options
            .as_ref()
            .filter(|a| containerd_shim::bootstrap::any_is::<Options>(a))
            .and_then(|a| Options::parse_from_bytes(&a.value).ok());
        let (binary, root) = self.runtime_for(options.as_ref())?;
        let cli = RuntimeCli {
            binary: binary.clone(),
            root: root.clone(),
            log: bundle.join("log.json"),
            reaper: self.inner.reaper.clone(),
        };

        // The rootfs containerd hands over (snapshot mounts) goes to <bundle>/rootfs.
        let mut rootfs = None;
        if !req.rootfs.is_empty() {
            let target = bundle.join("rootfs");
            std::fs::create_dir_all(&target)
                .map_err(|e| err(Code::INTERNAL, format!("mkdir {}: {e}", target.display())))?;
            rootfs = Some(target.clone());
            for m in &req.rootfs {
                if let Err(e) = containerd_shim::util::mount_rootfs(m, &target).await {
                    Self::unmount(&target).await;
                    return Err(err(
                        Code::INTERNAL,
                        format!(
                            "mount the rootfs ({} {} {:?}) on {}: {e}",
                            m.type_,
                            m.source,
                            m.options,
                            target.display()
                        ),
                    ));
                }
            }
        }
        let record = BundleRecord {
            runtime: binary,
            root,
            mounted_rootfs: rootfs.is_some(),
        };
        let _ = std::fs::write(
            bundle.join(BUNDLE_RECORD),
            serde_json::to_vec(&record).unwrap_or_default(),
        );

        let pid_file = bundle.join("init.pid");
        let args: Vec<OsString> = vec![
            "create".into(),
            "--bundle".into(),
            bundle.clone().into(),
            "--pid-file".into(),
            pid_file.clone().into(),
            id.clone().into(),
        ];
        let console = match self
            .run_with_stdio(
                &cli,
                args,
                (&req.stdin, &req.stdout, &req.stderr, req.terminal),
                "create",
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = cli
                    .run(
                        &["delete".into(), "--force".into(), id.clone().into()],
                        None,
                    )
                    .await;
                if let Some(r) = &rootfs {
                    Self::unmount(r).await;
                }
                return Err(e);
            }
        };
        let pid = read_pid(&pid_file)?;
        let mut init = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
        init.pid = pid;
        init.console = console;
        // The init is in its cgroup once create has returned.
        let oom = OomCounter::of_pid(pid).map(Arc::new);
        self.inner.containers.lock().unwrap().insert(
            id.clone(),
            Container {
                bundle: bundle.clone(),
                rootfs,
                cli,
                init,
                execs: HashMap::new(),
                paused: false,
                oom,
            },
        );
        self.publish(TaskCreate {
            container_id: id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: Some(TaskIO {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
                ..Default::default()
            })
            .into(),
            pid,
            ..Default::default()
        })
        .await;
        self.watch_exit(&id, "", pid);
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let id = req.id.clone();
        let cli = self.cli(&id)?;
        if req.exec_id.is_empty() {
            cli.run(&["start".into(), id.clone().into()], None)
                .await
                .map_err(|e| err(Code::UNKNOWN, format!("OCI runtime start failed: {e}")))?;
            let pid = self.with(&id, |c| {
                c.init.started = true;
                Ok(c.init.pid)
            })?;
            self.publish(TaskStart {
                container_id: id,
                pid,
                ..Default::default()
            })
            .await;
            return Ok(api::StartResponse {
                pid,
                ..Default::default()
            });
        }

        let exec_id = req.exec_id.clone();
        let (bundle, spec, stdio) = self.with(&id, |c| {
            let p = c.proc(&exec_id)?;
            if p.started {
                return Err(err(
                    Code::ALREADY_EXISTS,
                    format!("exec {exec_id:?} was started already"),
                ));
            }
            Ok((
                c.bundle.clone(),
                p.spec.clone(),
                (
                    p.stdin.clone(),
                    p.stdout.clone(),
                    p.stderr.clone(),
                    p.terminal,
                ),
            ))
        })?;
        let process = tempfile::Builder::new()
            .prefix(".exec-process-")
            .tempfile_in(&bundle)
            .and_then(|f| {
                std::fs::write(f.path(), &spec)?;
                Ok(f)
            })
            .map_err(|e| {
                err(
                    Code::INTERNAL,
                    format!("write the exec's process.json: {e}"),
                )
            })?;
        let pid_file = bundle.join(format!("{exec_id}.pid"));
        let _ = std::fs::remove_file(&pid_file);
        let args: Vec<OsString> = vec![
            "exec".into(),
            "--process".into(),
            process.path().into(),
            "--detach".into(),
            "--pid-file".into(),
            pid_file.clone().into(),
            id.clone().into(),
        ];
        let console = self
            .run_with_stdio(&cli, args, (&stdio.0, &stdio.1, &stdio.2, stdio.3), "exec")
            .await?;
        let pid = read_pid(&pid_file)?;
        let _ = std::fs::remove_file(&pid_file);
        self.with(&id, |c| {
            let p = c.proc_mut(&exec_id)?;
            p.pid = pid;
            p.started = true;
            p.console = console;
            Ok(())
        })?;
        self.publish(TaskExecStarted {
            container_id: id.clone(),
            exec_id: exec_id.clone(),
            pid,
            ..Default::default()
        })
        .await;
        self.watch_exit(&id, &exec_id, pid);
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let id = req.id.clone();
        if !req.exec_id.is_empty() {
            let p = self.with(&id, |c| {
                let p = c.proc(&req.exec_id)?;
                if p.started && p.exit().is_none() {
                    return Err(err(
                        Code::FAILED_PRECONDITION,
                        format!("exec {:?} is still running: kill it first", req.exec_id),
                    ));
                }
                Ok(c.execs.remove(&req.exec_id))
            })?;
            let p = p.ok_or_else(|| not_found("exec"))?;
            if let Some(t) = &p.console {
                t.io.abort().await;
            }
            let exit = p.exit().unwrap_or(Exit {
                status: 0,
                at: Timestamp::default(),
            });
            return Ok(api::DeleteResponse {
                pid: p.pid,
                exit_status: exit.status,
                exited_at: Some(exit.at).into(),
                ..Default::default()
            });
        }

        let (cli, pid, exit_tx) = self.with(&id, |c| {
            Ok((c.cli.clone(), c.init.pid, c.init.exit_tx.clone()))
        })?;
        if exit_tx.borrow().is_none() {
            // Created, never started (or still running): the runtime kills it.
            cli.run(
                &["delete".into(), "--force".into(), id.clone().into()],
                None,
            )
            .await
            .map_err(|e| err(Code::UNKNOWN, format!("OCI runtime delete failed: {e}")))?;
            let mut rx = exit_tx.subscribe();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                rx.wait_for(|e| e.is_some()),
            )
            .await;
        } else if let Err(e) = cli.run(&["delete".into(), id.clone().into()], None).await {
            if !e.message.contains("does not exist") && !e.message.contains("not found") {
                return Err(err(
                    Code::UNKNOWN,
                    format!("OCI runtime delete failed: {e}"),
                ));
            }
        }
        let c = self
            .inner
            .containers
            .lock()
            .unwrap()
            .remove(&id)
            .ok_or_else(|| not_found(&format!("container {id:?}")))?;
        if let Some(t) = &c.init.console {
            t.io.abort().await;
        }
        for p in c.execs.values() {
            if let Some(t) = &p.console {
                t.io.abort().await;
            }
        }
        if let Some(r) = &c.rootfs {
            Self::unmount(r).await;
        }
        let exit = c.init.exit().unwrap_or(Exit {
            status: 137,
            at: containerd_shim::util::timestamp().unwrap_or_default(),
        });
        self.publish(TaskDelete {
            container_id: id.clone(),
            pid,
            exit_status: exit.status,
            exited_at: Some(exit.at.clone()).into(),
            id: id.clone(),
            ..Default::default()
        })
        .await;
        Ok(api::DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: Some(exit.at).into(),
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        self.with(&req.id, |c| {
            let p = c.proc(&req.exec_id)?;
            let exit = p.exit();
            Ok(api::StateResponse {
                id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                bundle: c.bundle.to_string_lossy().into_owned(),
                pid: p.pid,
                status: task_status(c, p).into(),
                stdin: p.stdin.clone(),
                stdout: p.stdout.clone(),
                stderr: p.stderr.clone(),
                terminal: p.terminal,
                exit_status: exit.as_ref().map_or(0, |e| e.status),
                exited_at: exit.map(|e| e.at).into(),
                ..Default::default()
            })
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        if !req.exec_id.is_empty() {
            let pid = self.with(&id, |c| {
                let p = c.proc(&req.exec_id)?;
                if !p.started || p.exit().is_some() {
                    return Err(err(Code::NOT_FOUND, "process already finished"));
                }
                Ok(p.pid)
            })?;
            let sig = nix::sys::signal::Signal::try_from(req.signal as i32).map_err(|e| {
                err(
                    Code::INVALID_ARGUMENT,
                    format!("signal {}: {e}", req.signal),
                )
            })?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig)
                .map_err(|e| err(Code::NOT_FOUND, format!("process already finished: {e}")))?;
            return Ok(api::Empty::new());
        }
        let (cli, exited) = self.with(&id, |c| Ok((c.cli.clone(), c.init.exit().is_some())))?;
        if exited && !req.all {
            return Err(err(Code::NOT_FOUND, "process already finished"));
        }
        let mut args: Vec<OsString> = vec!["kill".into()];
        if req.all {
            args.push("--all".into());
        }
        args.push(id.clone().into());
        args.push(req.signal.to_string().into());
        if let Err(e) = cli.run(&args, None).await {
            let m = e.message.to_lowercase();
            if m.contains("not running")
                || m.contains("no such process")
                || m.contains("already finished")
                || m.contains("stopped")
            {
                return Err(err(
                    Code::NOT_FOUND,
                    format!("process already finished: {e}"),
                ));
            }
            return Err(err(Code::UNKNOWN, format!("OCI runtime kill failed: {e}")));
        }
        Ok(api::Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let mut rx = self.with(&req.id, |c| Ok(c.proc(&req.exec_id)?.exit_tx.subscribe()))?;
        let exit = rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| err(Code::INTERNAL, "the shim lost track of the process"))?
            .clone()
            .unwrap_or_else(|| unreachable!("wait_for returned an unset exit"));
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: Some(exit.at).into(),
            ..Default::default()
        })
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        let id = req.id.clone();
        self.with(&id, |c| {
            if c.init.exit().is_some() {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("container {id:?} is stopped: cannot exec in it"),
                ));
            }
            if req.exec_id.is_empty() || c.execs.contains_key(&req.exec_id) {
                return Err(err(
                    Code::ALREADY_EXISTS,
                    format!("exec id {:?} is empty or taken", req.exec_id),
                ));
            }
            let mut p = Proc::new(&req.stdin, &req.stdout, &req.stderr, req.terminal);
            p.spec = req
                .spec
                .as_ref()
                .map(|a| a.value.clone())
                .unwrap_or_default();
            c.execs.insert(req.exec_id.clone(), p);
            Ok(())
        })?;
        self.publish(TaskExecAdded {
            container_id: id,
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
        .await;
        Ok(api::Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let t = self.with(&req.id, |c| Ok(c.proc(&req.exec_id)?.console.clone()))?;
        let t = t.ok_or_else(|| {
            err(
                Code::FAILED_PRECONDITION,
                "the process has no terminal to resize",
            )
        })?;
        t.resize(req.width, req.height)
            .map_err(|e| err(Code::INTERNAL, format!("resize the terminal: {e}")))?;
        Ok(api::Empty::new())
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        let t = self.with(&req.id, |c| Ok(c.proc(&req.exec_id)?.console.clone()))?;
        if let Some(t) = t {
            if req.stdin {
                t.io.close_input();
            }
        }
        // Without a terminal the process holds containerd's stdin fifo itself: it sees EOF
        // when containerd's writer closes.
        Ok(api::Empty::new())
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let cli = self.cli(&req.id)?;
        let out = cli
            .run(
                &[
                    "ps".into(),
                    "--format".into(),
                    "json".into(),
                    req.id.clone().into(),
                ],
                None,
            )
            .await
            .map_err(|e| err(Code::UNKNOWN, format!("OCI runtime ps failed: {e}")))?;
        let pids: Vec<u32> = serde_json::from_slice(&out.stdout).map_err(|e| {
            err(
                Code::INTERNAL,
                format!("the runtime's ps --format json is not a list of pids: {e}"),
            )
        })?;
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: api::PauseRequest) -> TtrpcResult<api::Empty> {
        let cli = self.cli(&req.id)?;
        cli.run(&["pause".into(), req.id.clone().into()], None)
            .await
            .map_err(|e| err(Code::UNKNOWN, format!("OCI runtime pause failed: {e}")))?;
        self.with(&req.id, |c| {
            c.paused = true;
            Ok(())
        })?;
        self.publish(TaskPaused {
            container_id: req.id.clone(),
            ..Default::default()
        })
        .await;
        Ok(api::Empty::new())
    }

    async fn resume(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResumeRequest,
    ) -> TtrpcResult<api::Empty> {
        let cli = self.cli(&req.id)?;
        cli.run(&["resume".into(), req.id.clone().into()], None)
            .await
            .map_err(|e| err(Code::UNKNOWN, format!("OCI runtime resume failed: {e}")))?;
        self.with(&req.id, |c| {
            c.paused = false;
            Ok(())
        })?;
        self.publish(TaskResumed {
            container_id: req.id.clone(),
            ..Default::default()
        })
        .await;
        Ok(api::Empty::new())
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        let (cli, bundle) = self.with(&req.id, |c| Ok((c.cli.clone(), c.bundle.clone())))?;
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let file = tempfile::Builder::new()
            .prefix(".resources-")
            .tempfile_in(&bundle)
            .and_then(|f| {
                std::fs::write(f.path(), &resources)?;
                Ok(f)
            })
            .map_err(|e| err(Code::INTERNAL, format!("write the resources file: {e}")))?;
        cli.run(
            &[
                "update".into(),
                "--resources".into(),
                file.path().into(),
                req.id.clone().into(),
            ],
            None,
        )
        .await
        .map_err(|e| err(Code::UNKNOWN, format!("OCI runtime update failed: {e}")))?;
        Ok(api::Empty::new())
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let pid = self.with(&req.id, |c| {
            if c.init.exit().is_some() {
                return Err(err(
                    Code::FAILED_PRECONDITION,
                    format!("container {:?} is stopped: no metrics", req.id),
                ));
            }
            Ok(c.init.pid)
        })?;
        let any = tokio::task::spawn_blocking(move || crate::metrics::task_metrics(pid))
            .await
            .map_err(|e| err(Code::INTERNAL, e))?
            .map_err(|e| err(Code::INTERNAL, e))?;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.with(&req.id, |c| Ok(c.init.pid)).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: format!("pouch {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        if self.inner.containers.lock().unwrap().is_empty() {
            self.inner.exit.signal();
        }
        Ok(api::Empty::new())
    }
}
