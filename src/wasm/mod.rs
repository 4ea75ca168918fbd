//! The wasm executor: wasmtime 48 with WASI, run by the container's init in place of `execve`,
//! inside the namespaces, cgroup, capabilities and seccomp filter a native container gets.
//!
//! - `load` (in `create`, before the init drops privileges): read args[0] from the container's
//!   `/`, then load the precompiled artifact from the [`cache::CompileCache`] or compile
//!   (single-threaded: nothing may run beside the init while it sets up) and store it.
//! - `run` (after `start`): instantiate with WASI (preview 1 for modules, preview 2
//!   `wasi:cli/run` for components): argv = `process.args`, env = `process.env`, the
//!   container's `/` preopened as `/` (read-only with `root.readonly`), every writable mount
//!   of the spec (tmpfs, or bind without `ro`) preopened read-write at its destination, the
//!   cwd as `.`,
//!   stdio = the container's stdio; memory capped by `linux.resources.memory.limit`.
//!
//! Exit status: `proc_exit(n)` → n (for components, WASI 0.2's `wasi:cli/exit` carries only
//! success or failure: 0 or 1); a trap → 134 with the trap on stderr; an error before the
//! program ran (link error, missing export) → 127 with the reason reported by `start`;
//! SIGTERM, SIGINT, SIGHUP or SIGQUIT → 128 + signal, also when the init is pid 1 of its pid
//! namespace (where the kernel would otherwise ignore them); SIGKILL as for any process.

pub mod cache;

use std::ffi::CString;
use std::path::PathBuf;

use native_runner::process::{ExecContext, Workload};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::dispatch::WasmKind;
use cache::{sha256_hex, CompileCache};

/// Exit status of a guest that trapped.
pub const TRAP_EXIT: i32 = 134;

/// What was compiled in `load`.
enum Loaded {
    Module(Module),
    Component(Component),
}

/// A wasm program as the container's workload.
pub struct WasmWorkload {
    kind: WasmKind,
    path: PathBuf,
    readonly_root: bool,
    writable: Vec<PathBuf>,
    memory_limit: Option<usize>,
    timeout: Option<std::time::Duration>,
    cache: Option<CompileCache>,
    engine: Option<Engine>,
    loaded: Option<Loaded>,
}

impl WasmWorkload {
    /// A workload for the binary at `path` (as the container sees it).
    pub fn new(
        kind: WasmKind,
        path: PathBuf,
        readonly_root: bool,
        writable: Vec<PathBuf>,
        memory_limit: Option<i64>,
        cache: Option<CompileCache>,
    ) -> WasmWorkload {
        WasmWorkload {
            kind,
            path,
            readonly_root,
            writable,
            memory_limit: memory_limit.filter(|l| *l > 0).map(|l| l as usize),
            timeout: None,
            cache,
            engine: None,
            loaded: None,
        }
    }
}

/// The destinations of the spec's writable mounts (tmpfs, or binds without `ro`), which stay
/// writable for a guest under a read-only root.
pub fn writable_mounts(spec: &oci_spec::runtime::Spec) -> Vec<PathBuf> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| {
            let opts = m.options().clone().unwrap_or_default();
            let bind = m.typ().as_deref() == Some("bind")
                || opts.iter().any(|o| o == "bind" || o == "rbind");
            (bind || m.typ().as_deref() == Some("tmpfs")) && !opts.iter().any(|o| o == "ro")
        })
        .map(|m| m.destination().clone())
        .filter(|d| !d.starts_with("/dev") && !d.starts_with("/proc") && !d.starts_with("/sys"))
        .collect()
}

/// The annotation that bounds a guest's run time (a duration: `30s`, `1500ms`, `2m`).
pub const TIMEOUT_ANNOTATION: &str = "pouch.wasm/timeout";

/// Exit status of a guest stopped at its time limit (as `timeout(1)`).
pub const TIMEOUT_EXIT: i32 = 124;

impl WasmWorkload {
    /// Stops the guest with status 124 once it has run this long.
    pub fn with_timeout(mut self, timeout: Option<std::time::Duration>) -> WasmWorkload {
        self.timeout = timeout;
        self
    }
}

/// The wasm-only knobs of a spec's annotations; errors name the annotation.
pub fn timeout_from_annotations(
    spec: &oci_spec::runtime::Spec,
) -> Result<Option<std::time::Duration>, String> {
    let Some(v) = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(TIMEOUT_ANNOTATION))
    else {
        return Ok(None);
    };
    humantime::parse_duration(v).map(Some).map_err(|e| {
        format!("annotation {TIMEOUT_ANNOTATION}={v:?}: {e}; use a duration such as 30s or 500ms")
    })
}

/// The engine every front uses (the cache key depends on its settings).
pub fn engine() -> wasmtime::Result<Engine> {
    let mut c = Config::new();
    // The init compiles single-threaded: no thread may exist beside it while it sets up.
    c.wasm_component_model(true);
    Engine::new(&c)
}

/// The cache key of `bytes` for `engine`.
pub fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{}-{:016x}", sha256_hex(bytes), h.finish())
}

/// Compiles `bytes` (a core module or a component, told apart by the preamble) into `cache`
/// unless an entry is already there, with the same engine settings the executor uses: the
/// next container that runs this module loads the artifact instead of compiling. Returns
/// whether it compiled.
pub fn precompile(cache: &CompileCache, bytes: &[u8]) -> Result<bool, String> {
    let engine = engine().map_err(|e| format!("wasmtime engine: {e:#}"))?;
    let key = cache_key(&engine, bytes);
    if cache.get(&key).is_some() {
        return Ok(false);
    }
    let component = bytes.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00]);
    let art = if component {
        engine.precompile_component(bytes)
    } else {
        engine.precompile_module(bytes)
    }
    .map_err(|e| format!("precompile wasm module: {e:#}"))?;
    cache
        .put(&key, &art)
        .map_err(|e| format!("write wasm cache entry {key}: {e}"))?;
    Ok(true)
}

fn err(e: impl std::fmt::Display) -> native_runner::Error {
    native_runner::Error::invalid(e)
}

impl Workload for WasmWorkload {
    fn load(&mut self, _ctx: &ExecContext) -> native_runner::Result<()> {
        let bytes = std::fs::read(&self.path)
            .map_err(|e| err(format!("read wasm binary {}: {e}", self.path.display())))?;
        let engine = engine().map_err(|e| err(format!("wasmtime engine: {e:#}")))?;
        let key = cache_key(&engine, &bytes);
        let from_cache = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&key))
            .and_then(|art| {
                // SAFETY: the artifact was written by us (owner and mode checked) and is intact
                // (checksum), and was produced by an engine with the same compatibility hash.
                let r = unsafe {
                    match self.kind {
                        WasmKind::Component => {
                            Component::deserialize(&engine, &art).map(Loaded::Component)
                        }
                        _ => Module::deserialize(&engine, &art).map(Loaded::Module),
                    }
                };
                r.map_err(|e| {
                    tracing::warn!("wasm cache: entry {key} unusable, recompiling: {e:#}")
                })
                .ok()
            });
        let loaded = match from_cache {
            Some(l) => {
                tracing::debug!(key, "wasm cache hit");
                l
            }
            None => {
                let (l, art) = match self.kind {
                    WasmKind::Component => {
                        let c = Component::new(&engine, &bytes).map_err(|e| {
                            err(format!("compile component {}: {e:#}", self.path.display()))
                        })?;
                        let art = c.serialize().ok();
                        (Loaded::Component(c), art)
                    }
                    _ => {
                        let m = Module::new(&engine, &bytes).map_err(|e| {
                            err(format!("compile module {}: {e:#}", self.path.display()))
                        })?;
                        let art = m.serialize().ok();
                        (Loaded::Module(m), art)
                    }
                };
                if let (Some(c), Some(art)) = (&self.cache, art) {
                    match c.put(&key, &art) {
                        Ok(()) => tracing::debug!(key, "wasm cache: stored"),
                        Err(e) => tracing::warn!("wasm cache: cannot store {key}: {e}"),
                    }
                }
                l
            }
        };
        self.engine = Some(engine);
        self.loaded = Some(loaded);
        // Nothing of the host may reach the guest: drop the cache directory now.
        self.cache = None;
        Ok(())
    }

    fn keep_fds(&self) -> Vec<i32> {
        self.cache.iter().map(CompileCache::as_raw_fd).collect()
    }

    fn prepare(&mut self, _ctx: &mut ExecContext) -> native_runner::Result<()> {
        Ok(())
    }

    fn run(&mut self, ctx: &ExecContext, started: &mut dyn FnMut()) -> native_runner::Result<i32> {
        install_exit_on_signals();
        if let Some(t) = self.timeout {
            arm_timeout(t);
        }
        let engine = self
            .engine
            .take()
            .ok_or_else(|| err("wasm workload was not loaded"))?;
        let loaded = self
            .loaded
            .take()
            .ok_or_else(|| err("wasm workload was not loaded"))?;
        let mut wasi = self.wasi(ctx)?;
        tracing::debug!(limit = ?self.memory_limit, "wasm memory limit");
        let limits = match self.memory_limit.map(guest_memory_cap) {
            Some(l) => StoreLimitsBuilder::new().memory_size(l).build(),
            None => StoreLimits::default(),
        };
        let result = match loaded {
            Loaded::Module(module) => {
                let state = P1State {
                    wasi: wasi.build_p1(),
                    limits,
                };
                let mut store = Store::new(&engine, state);
                store.limiter(|s| &mut s.limits);
                let mut linker: Linker<P1State> = Linker::new(&engine);
                wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| &mut s.wasi)
                    .map_err(|e| err(format!("WASI: {e:#}")))?;
                let instance = linker
                    .instantiate(&mut store, &module)
                    .map_err(|e| err(format!("instantiate {}: {e:#}", self.path.display())))?;
                let start = instance
                    .get_typed_func::<(), ()>(&mut store, "_start")
                    .map_err(|e| {
                        err(format!(
                            "{}: no _start to run (a WASI command module exports it): {e:#}",
                            self.path.display()
                        ))
                    })?;
                started();
                start.call(&mut store, ())
            }
            Loaded::Component(component) => {
                let state = P2State {
                    ctx: wasi.build(),
                    table: ResourceTable::new(),
                    limits,
                };
                let mut store = Store::new(&engine, state);
                store.limiter(|s| &mut s.limits);
                let mut linker = wasmtime::component::Linker::<P2State>::new(&engine);
                wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
                    .map_err(|e| err(format!("WASI: {e:#}")))?;
                let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(
                    &mut store, &component, &linker,
                )
                .map_err(|e| {
                    err(format!(
                        "instantiate {} (it must export wasi:cli/run): {e:#}",
                        self.path.display()
                    ))
                })?;
                started();
                match command.wasi_cli_run().call_run(&mut store) {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(())) => return Ok(1),
                    Err(e) => Err(e),
                }
            }
        };
        Ok(match result {
            Ok(()) => 0,
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(I32Exit(code)) => *code,
                None => {
                    if let Some(code) = exit_status_of(&e) {
                        code
                    } else {
                        eprintln!("pouch: wasm trap in {}: {e:?}", self.path.display());
                        TRAP_EXIT
                    }
                }
            },
        })
    }
}

impl WasmWorkload {
    fn wasi(&self, ctx: &ExecContext) -> native_runner::Result<WasiCtxBuilder> {
        let to_str = |c: &CString| c.to_string_lossy().into_owned();
        let mut b = WasiCtxBuilder::new();
        let args: Vec<String> = ctx.args.iter().map(to_str).collect();
        let env: Vec<(String, String)> = ctx
            .env
            .iter()
            .map(to_str)
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let perms = if self.readonly_root {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.args(&args)
            .envs(&env)
            .inherit_stdio()
            .allow_blocking_current_thread(true)
            .preopened_dir("/", "/", perms)
            .map_err(|e| err(format!("preopen /: {e:#}")))?;
        if self.readonly_root {
            for w in &self.writable {
                let guest = w.to_string_lossy();
                b.preopened_dir(w, guest.as_ref(), FsPerms::ReadWrite)
                    .map_err(|e| err(format!("preopen {guest}: {e:#}")))?;
            }
        }
        if let Ok(cwd) = std::env::current_dir() {
            if cwd != std::path::Path::new("/") {
                b.preopened_dir(&cwd, ".", perms)
                    .map_err(|e| err(format!("preopen {}: {e:#}", cwd.display())))?;
            }
        }
        Ok(b)
    }
}

/// Headroom left between the guest's linear memory and the container's memory limit.
const MEMORY_HEADROOM: usize = 8 << 20;

/// The linear-memory cap for a container memory limit: the limit minus what this process
/// already uses (wasmtime, WASI, compiled code) and some headroom, so that the guest's
/// `memory.grow` fails (a clean error it can handle) before the cgroup's OOM killer acts.
fn guest_memory_cap(limit: usize) -> usize {
    limit.saturating_sub(own_memory_use()).max(64 << 10)
}

/// This process's resident memory plus the headroom.
fn own_memory_use() -> usize {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<usize>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0);
    rss + MEMORY_HEADROOM
}

/// `proc_exit` with a status wasmtime does not turn into `I32Exit` (≥ 126) arrives as an
/// error whose text carries it.
fn exit_status_of(e: &wasmtime::Error) -> Option<i32> {
    let text = format!("{e:#}");
    let rest = text.split("exit status ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

struct P1State {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

struct P2State {
    ctx: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for P2State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

extern "C" fn exit_on_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) }
}

extern "C" fn exit_on_timeout(_sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(TIMEOUT_EXIT) }
}

/// Ends the process with [`TIMEOUT_EXIT`] after `t`, whatever the guest is doing (in wasm
/// code or blocked in a host call).
fn arm_timeout(t: std::time::Duration) {
    // SAFETY: a handler that only calls _exit, and a timer for this process.
    unsafe {
        libc::signal(
            libc::SIGALRM,
            exit_on_timeout as *const () as libc::sighandler_t,
        );
        let it = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: t.as_secs() as libc::time_t,
                tv_usec: t.subsec_micros() as libc::suseconds_t,
            },
        };
        libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut());
    }
}

/// A guest cannot handle signals: terminate as a native program without handlers would,
/// including as pid 1 of a pid namespace (where unhandled signals are ignored).
fn install_exit_on_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: installing a handler that only calls _exit.
        unsafe { libc::signal(sig, exit_on_signal as *const () as libc::sighandler_t) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(args: &[&str]) -> ExecContext {
        ExecContext {
            args: args.iter().map(|a| CString::new(*a).unwrap()).collect(),
            env: vec![],
            program: None,
        }
    }

    fn example(name: &str) -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("wasm-examples/bin")
            .join(name)
    }

    #[test]
    fn store_limits_cap_linear_memory() {
        let mut w = WasmWorkload::new(
            WasmKind::Module,
            example("alloc.wasm"),
            false,
            vec![],
            None,
            None,
        );
        let c = ctx(&["alloc.wasm", "200"]);
        w.load(&c).unwrap();
        // The cap leaves room for this process's own memory: give the guest 32 MiB on top.
        w.memory_limit = Some(own_memory_use() + (32 << 20));
        assert_eq!(w.run(&c, &mut || {}).unwrap(), 12);
    }
}
