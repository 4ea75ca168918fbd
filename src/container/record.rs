//! `container.json`: one container's configuration and state, and the store that holds them.

use crate::runtime::Runtime;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What the user asked for, as Docker's `Config` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    /// Hostname.
    pub hostname: String,
    /// User (`uid[:gid]` or names), as given.
    pub user: String,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// Command.
    pub cmd: Vec<String>,
    /// Entrypoint.
    pub entrypoint: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Image as given on the command line.
    pub image: String,
    /// Stop signal (number or name).
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL.
    pub stop_timeout: u64,
    /// A terminal.
    pub tty: bool,
    /// Stdin kept open.
    pub open_stdin: bool,
}

/// Restart policy (`--restart`).
#[derive(Clone, Debug, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    /// `no`, `on-failure`, `always`, `unless-stopped`.
    pub name: String,
    /// For `on-failure:N`; 0 = no limit.
    pub maximum_retry_count: u32,
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<RestartPolicy, String> {
        let (name, n) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let max = match n {
            None => 0,
            Some(c) if name == "on-failure" => c
                .parse()
                .map_err(|_| format!("restart policy {s:?}: {c:?} is not a count"))?,
            Some(_) => {
                return Err(format!(
                    "restart policy {s:?}: only on-failure takes a count"
                ))
            }
        };
        match name {
            "no" | "on-failure" | "always" | "unless-stopped" => Ok(RestartPolicy {
                name: name.to_string(),
                maximum_retry_count: max,
            }),
            _ => Err(format!(
                "restart policy {s:?} is not one of no, on-failure[:N], always, unless-stopped"
            )),
        }
    }
}

/// How the container is run, as Docker's `HostConfig` shows it (the flags that shape the spec
/// are kept in the spec itself, `config.json`).
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `--rm`.
    pub auto_remove: bool,
    /// `--restart`.
    pub restart_policy: RestartPolicy,
    /// `--network`.
    pub network_mode: String,
    /// `-m`, bytes (0: none).
    pub memory: i64,
    /// `--memory-swap`, bytes (0: default, -1: unlimited).
    pub memory_swap: i64,
    /// `--cpus` × 1e9.
    pub nano_cpus: i64,
    /// `--cpu-shares`.
    pub cpu_shares: u64,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: String,
    /// `--pids-limit` (0: none).
    pub pids_limit: i64,
    /// `--read-only`.
    pub readonly_rootfs: bool,
    /// `--privileged`.
    pub privileged: bool,
    /// `-v`.
    pub binds: Vec<String>,
    /// `--tmpfs`.
    pub tmpfs: Vec<String>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--init`.
    pub init: bool,
    /// `--cgroup-parent`.
    pub cgroup_parent: String,
    /// `--annotation`.
    pub annotations: BTreeMap<String, String>,
}

/// The state the monitor keeps up to date.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    /// `created`, `running`, `paused`, `restarting`, `exited`, `dead`.
    pub status: String,
    /// Whether the container's process runs.
    pub running: bool,
    /// Frozen.
    pub paused: bool,
    /// Between two runs of a restart policy.
    pub restarting: bool,
    /// The OOM killer ended a process of it.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// Lost: the monitor died while the container ran.
    pub dead: bool,
    /// The init's pid (0 when not running).
    pub pid: i32,
    /// Exit code of the last run.
    pub exit_code: i32,
    /// Why it could not run, if so.
    pub error: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// The monitor's pid and start time (clock ticks since boot), to tell it from a recycled pid.
    pub monitor_pid: i32,
    /// See `monitor_pid`.
    pub monitor_start_time: u64,
    /// `stop`/`kill` by the user: the restart policy does not apply to this exit.
    pub stopped_by_user: bool,
}

/// One container.
#[derive(Clone, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Container {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// RFC 3339 (nanoseconds).
    pub created: String,
    /// Program.
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The image's name in the store.
    pub image_name: String,
    /// The image ID (config digest).
    pub image: String,
    /// The manifest digest.
    pub image_digest: String,
    /// `os/arch` of the image.
    pub platform: String,
    /// `native` or `wasm`.
    pub executor: String,
    /// Which dispatch rule decided, and why.
    pub executor_reason: String,
    /// Config.
    pub config: Config,
    /// Host config.
    pub host_config: HostConfig,
    /// State.
    pub state: State,
    /// How often the restart policy restarted it.
    pub restart_count: u32,
    /// The json-file log.
    pub log_path: String,
    /// The container's directory (the bundle).
    pub bundle: String,
}

/// Errors of the container store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such container.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An I/O error.
    #[error("{what} {path}: {source}")]
    Io {
        /// What.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// container.json is broken.
    #[error("{path}: {source}")]
    Json {
        /// Where.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The containers under one data root.
#[derive(Clone, Debug)]
pub struct ContainerStore {
    root: PathBuf,
    dir: PathBuf,
}

/// A held per-container lock.
pub struct Locked {
    _f: Flock<File>,
}

impl ContainerStore {
    /// Opens (creating) `<data_root>/containers`.
    pub fn open(data_root: &Path) -> Result<ContainerStore, StoreError> {
        let dir = data_root.join("containers");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok(ContainerStore {
            root: data_root.to_path_buf(),
            dir,
        })
    }

    /// The data root.
    pub fn data_root(&self) -> &Path {
        &self.root
    }

    /// The OCI runtime (state under `<data-root>/runtime`, wasm cache under
    /// `<data-root>/wasm-cache`).
    pub fn runtime(&self) -> Runtime {
        Runtime::new(self.root.join("runtime")).with_wasm_cache(self.root.join("wasm-cache"))
    }

    /// A container's directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Every container id (directories with a container.json).
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.dir)
            .map(|r| {
                r.flatten()
                    .filter(|e| e.path().join("container.json").exists())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Loads a container by full id.
    pub fn load(&self, id: &str) -> Result<Container, StoreError> {
        let p = self.dir(id).join("container.json");
        let b = fs::read(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::NotFound(id.to_string())
            } else {
                io_err("read", &p)(e)
            }
        })?;
        serde_json::from_slice(&b).map_err(|source| StoreError::Json { path: p, source })
    }

    /// Every container (unreadable ones skipped with a warning), newest first.
    pub fn list(&self) -> Vec<Container> {
        let mut v: Vec<Container> = self
            .ids()
            .iter()
            .filter_map(|id| match self.load(id) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("{e}");
                    None
                }
            })
            .collect();
        v.sort_by(|a, b| b.created.cmp(&a.created));
        v
    }

    /// Writes container.json atomically.
    pub fn save(&self, c: &Container) -> Result<(), StoreError> {
        let dir = self.dir(&c.id);
        let p = dir.join("container.json");
        let tmp = dir.join(format!(".container.json.{}", std::process::id()));
        let data = serde_json::to_vec_pretty(c).expect("serialises");
        let r = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&data)?;
            f.sync_data()?;
            fs::rename(&tmp, &p)
        })();
        r.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_err("write", &p)(e)
        })
    }

    /// Takes the container's lock (serialises read-modify-write of container.json between
    /// the CLI and the monitor).
    pub fn lock(&self, id: &str) -> Result<Locked, StoreError> {
        let p = self.dir(id).join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .mode(0o600)
            .open(&p)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::NotFound {
                    StoreError::NotFound(id.to_string())
                } else {
                    io_err("open", &p)(e)
                }
            })?;
        let l = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| io_err("lock", &p)(io::Error::from(e)))?;
        Ok(Locked { _f: l })
    }

    /// Load, change, save under the lock.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut Container),
    ) -> Result<Container, StoreError> {
        let _l = self.lock(id)?;
        let mut c = self.load(id)?;
        f(&mut c);
        self.save(&c)?;
        Ok(c)
    }

    /// Finds a container by full id, unique id prefix or name.
    pub fn find(&self, key: &str) -> Result<Container, StoreError> {
        if let Some(id) = super::names::lookup(self, key) {
            if let Ok(c) = self.load(&id) {
                return Ok(c);
            }
        }
        if key.len() >= 3 && key.bytes().all(|b| b.is_ascii_hexdigit()) {
            let m: Vec<String> = self
                .ids()
                .into_iter()
                .filter(|id| id.starts_with(key))
                .collect();
            if m.len() == 1 {
                return self.load(&m[0]);
            }
        }
        Err(StoreError::NotFound(key.to_string()))
    }
}

/// A process's start time (clock ticks since boot), to tell it from a recycled pid.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 22 of stat is starttime; `rest` starts at field 3 (state).
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the monitor recorded in `state` still runs.
pub fn monitor_alive(state: &State) -> bool {
    state.monitor_pid > 0 && process_start_time(state.monitor_pid) == Some(state.monitor_start_time)
}

/// A fresh 64-hex id.
pub fn new_id() -> String {
    let mut b = [0u8; 32];
    if let Ok(mut f) = File::open("/dev/urandom") {
        let _ = io::Read::read_exact(&mut f, &mut b);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Now, RFC 3339 with nanoseconds.
pub fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}
