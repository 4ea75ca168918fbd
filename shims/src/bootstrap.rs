//! The binary contract of `containerd-shim-pouch-v2`: `-v`, `-info`, `start`, `delete`, and
//! serving the task API.
//!
//! This follows the `containerd-shim` crate's `run`, with two differences that make the shim
//! work with every containerd from 1.6 on:
//! - `start` replies with the bare ttrpc address, which containerd 1.6 and 1.7 require (the
//!   crate's JSON reply is for containerd 2.x only); a containerd that sends the bootstrap
//!   protocol (2.3+) gets a `BootstrapResult`.
//! - the task service answers both as `containerd.task.v2.Task` (what containerd 1.6/1.7, and
//!   2.x for a bare address, call) and as `containerd.task.v3.Task`.
//!
//! The server also reaps its own children ([`crate::reaper`]) instead of the crate's
//! monitor, so that waiting for a `pouch-runtime` invocation never races the reaper.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::bootstrap_api::{BootstrapParams, BootstrapResult};
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim_async::create_task;
use containerd_shim::protos::ttrpc::r#async::transport::Listener;
use containerd_shim::protos::ttrpc::r#async::Server;
use containerd_shim::protos::types::introspection::RuntimeInfo;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api, Flags, StartOpts};

use crate::reaper::Reaper;
use crate::runtime::{find_runtime, DEFAULT_ROOT_BASE};
use crate::service::{unmount_rootfs, BundleRecord, Service, BUNDLE_RECORD};

/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.pouch.v2";
/// The annotation that groups the containers of one Kubernetes pod into one shim.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// The ttrpc service names the task service is registered under.
pub const TASK_SERVICES: [&str; 2] = ["containerd.task.v2.Task", "containerd.task.v3.Task"];

/// Runs the shim with the process's arguments; the exit code of the binary.
pub fn main() -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("containerd-shim-pouch-v2: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerd-shim-pouch-v2: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<_> = std::env::args_os().collect();
    let flags = containerd_shim::parse(&args[1..]).map_err(|e| e.to_string())?;
    if flags.version {
        println!("containerd-shim-pouch-v2:");
        println!("  Version:  {}", env!("CARGO_PKG_VERSION"));
        println!("  Runtime:  {RUNTIME_ID}");
        match find_runtime() {
            Ok(p) => println!("  pouch-runtime: {}", p.display()),
            Err(e) => println!("  pouch-runtime: {e}"),
        }
        return Ok(());
    }
    if flags.info {
        let info = RuntimeInfo {
            name: RUNTIME_ID.to_owned(),
            ..Default::default()
        };
        let bytes = info.write_to_bytes().map_err(|e| e.to_string())?;
        std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| format!("write the runtime info: {e}"))?;
        return Ok(());
    }
    match flags.action.as_str() {
        "start" => start(&flags).await,
        "delete" => delete(&flags),
        "" => serve(&flags).await,
        other => Err(format!(
            "unknown action {other:?}: containerd calls the shim with start or delete"
        )),
    }
}

fn read_stdin() -> Vec<u8> {
    let mut input = Vec::new();
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let _ = stdin.lock().take(10 << 20).read_to_end(&mut input);
    }
    input
}

/// The bundle of the shim's first container: `-bundle`, else the working directory.
fn bundle_dir(flags: &Flags) -> PathBuf {
    if flags.bundle.is_empty() {
        std::env::current_dir().unwrap_or_default()
    } else {
        PathBuf::from(&flags.bundle)
    }
}

/// The shim a container belongs to: its pod's sandbox id, else its own id.
fn grouping(bundle: &Path, id: &str) -> String {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.pointer(&format!(
                "/annotations/{}",
                SANDBOX_ID_ANNOTATION.replace('~', "~0").replace('/', "~1")
            ))?
            .as_str()
            .map(str::to_owned)
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| id.to_owned())
}

/// `start`: starts (or finds) the shim serving this container's group and prints its
/// address.
async fn start(flags: &Flags) -> Result<(), String> {
    let input = read_stdin();
    let bootstrap = BootstrapParams::parse_from_bytes(&input).ok().filter(|p| {
        !input.is_empty() && p.instance_id == flags.id && p.namespace == flags.namespace
    });
    let ttrpc_address = match &bootstrap {
        Some(p) => p.containerd_ttrpc_address.clone(),
        None => std::env::var("TTRPC_ADDRESS").unwrap_or_default(),
    };
    if ttrpc_address.is_empty() {
        return Err("containerd passed no TTRPC_ADDRESS: start the shim through containerd".into());
    }
    let bundle = bundle_dir(flags);
    let group = grouping(&bundle, &flags.id);
    let opts = StartOpts {
        id: flags.id.clone(),
        publish_binary: flags.publish_binary.clone(),
        address: flags.address.clone(),
        ttrpc_address,
        namespace: flags.namespace.clone(),
        debug: flags.debug,
        ..Default::default()
    };
    let address = opts.socket_address(&group);
    let path = address.trim_start_matches("unix://");
    let address = if std::os::unix::net::UnixStream::connect(path).is_ok() {
        // The pod's shim is up already: this container joins it.
        address
    } else {
        let _ = std::fs::remove_file(path);
        containerd_shim::spawn(opts, &group, Vec::new())
            .await
            .map_err(|e| format!("spawn the shim server: {e}"))?
    };
    let _ = std::fs::write(bundle.join("address"), &address);
    let reply = match bootstrap {
        Some(_) => BootstrapResult {
            version: 3,
            address,
            protocol: "ttrpc".to_owned(),
            ..Default::default()
        }
        .write_to_bytes()
        .map_err(|e| e.to_string())?,
        None => address.into_bytes(),
    };
    let mut out = std::io::stdout();
    out.write_all(&reply)
        .and_then(|_| out.flush())
        .map_err(|e| format!("write the address: {e}"))
}

/// `delete`: cleans up after a shim that is gone: deletes the container (forced) and
/// unmounts its rootfs; prints a DeleteResponse.
fn delete(flags: &Flags) -> Result<(), String> {
    let bundle = bundle_dir(flags);
    let record: Option<BundleRecord> = std::fs::read(bundle.join(BUNDLE_RECORD))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let (runtime, root, mounted) = match record {
        Some(r) => (Ok(r.runtime), r.root, r.mounted_rootfs),
        None => (
            find_runtime(),
            Path::new(DEFAULT_ROOT_BASE).join(&flags.namespace),
            true,
        ),
    };
    if let Ok(runtime) = runtime {
        let _ = std::process::Command::new(runtime)
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", &flags.id])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    if mounted {
        unmount_rootfs(&bundle.join("rootfs"));
    }
    let resp = api::DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: Some(containerd_shim::util::timestamp().unwrap_or_default()).into(),
        ..Default::default()
    };
    let bytes = resp.write_to_bytes().map_err(|e| e.to_string())?;
    std::io::stdout()
        .write_all(&bytes)
        .map_err(|e| format!("write the delete response: {e}"))
}

/// Serves the task API on `-socket` until containerd shuts the shim down.
async fn serve(flags: &Flags) -> Result<(), String> {
    if flags.socket.is_empty() {
        return Err("no -socket given: containerd starts the server through `start`".into());
    }
    // The log fifo containerd reads (`log` in the bundle); without it, no log.
    if let Ok(logger) = containerd_shim::logger::FifoLogger::new(&flags.namespace, &flags.id) {
        if log::set_boxed_logger(Box::new(logger)).is_ok() {
            log::set_max_level(if flags.debug {
                log::LevelFilter::Debug
            } else {
                log::LevelFilter::Info
            });
        }
    }
    let reaper = Reaper::start().map_err(|e| format!("become a child subreaper: {e}"))?;
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|_| "TTRPC_ADDRESS is not set: containerd sets it for its shims".to_owned())?;
    let publisher = RemotePublisher::new(&ttrpc_address)
        .await
        .map_err(|e| format!("connect to containerd's events at {ttrpc_address}: {e}"))?;
    let exit = Arc::new(ExitSignal::default());
    let task: Arc<dyn containerd_shim::Task + Send + Sync> = Arc::new(Service::new(
        &flags.namespace,
        publisher,
        reaper,
        exit.clone(),
    ));
    let mut services = std::collections::HashMap::new();
    for name in TASK_SERVICES {
        if let Some(s) = create_task(task.clone()).into_values().next() {
            services.insert(name.to_owned(), s);
        }
    }
    let path = flags.socket.trim_start_matches("unix://").to_owned();
    if let Some(dir) = Path::new(&path).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let listener = std::os::unix::net::UnixListener::bind(&path)
        .map_err(|e| format!("listen on {path}: {e}"))?;
    let listener = Listener::try_from(listener).map_err(|e| format!("listen on {path}: {e}"))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(services);
    server
        .start()
        .await
        .map_err(|e| format!("serve on {path}: {e}"))?;
    // Tell `start` we are up: it reads our stdout until EOF.
    // SAFETY: dup2 on the process's own standard descriptors.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
    log::info!("serving {} on {path}", TASK_SERVICES.join(" and "));
    exit.wait().await;
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(&path);
    Ok(())
}
