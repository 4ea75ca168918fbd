//! The OCI runtime: the lifecycle state machine shared by every front, one file per verb.
//!
//! ```text
//!   create ──▶ creating ──▶ created ──start──▶ running ──(exit | kill)──▶ stopped ──delete──▶ gone
//!                              └───────────────kill / delete --force──────────▶┘
//! ```
//!
//! State lives in `<root>/<id>/state.json` (see [`state`]); the status is never stored but
//! derived each time from the init's pid and start time, so answers stay right after the
//! container's process died or the host rebooted.

mod container_create;
mod container_delete;
mod container_events;
mod container_exec;
mod container_kill;
mod container_list;
mod container_pause;
mod container_ps;
mod container_run;
mod container_start;
mod container_state;
pub mod container_update;
mod error;
pub mod features;
pub mod process_handle;
pub mod signal;
pub mod state;

pub use container_create::CreateOptions;
pub use container_exec::ExecOptions;
pub use container_run::{exit_code, RunOptions};
pub use error::Error;
pub use state::{ContainerRecord, ContainerState, Status};

use std::path::{Path, PathBuf};

/// Annotation `io.pouch.init=true`: the container's PID 1 is a minimal init (signals passed
/// on, orphans reaped) with the program as its child, as `docker run --init`.
pub const INIT_ANNOTATION: &str = "io.pouch.init";

/// The default `--root` of `pouch-runtime`.
pub const DEFAULT_ROOT: &str = "/run/pouch-runtime";

/// One runtime state root (`--root`): the containers created under it.
#[derive(Debug, Clone)]
pub struct Runtime {
    root: PathBuf,
    wasm_cache: PathBuf,
}

impl Runtime {
    /// A runtime over `root` (created on first use, mode 0700), with the default wasm
    /// compile cache.
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: root.into(),
            wasm_cache: PathBuf::from(crate::wasm::cache::DEFAULT_CACHE_DIR),
        }
    }

    /// Uses `dir` for the compiled wasm cache.
    pub fn with_wasm_cache(mut self, dir: impl Into<PathBuf>) -> Runtime {
        self.wasm_cache = dir.into();
        self
    }

    /// The wasm compile cache directory.
    pub fn wasm_cache(&self) -> &Path {
        &self.wasm_cache
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The state directory of a container id (the id is validated).
    pub fn container_dir(&self, id: &str) -> Result<PathBuf, Error> {
        validate_id(id)?;
        Ok(self.root.join(id))
    }
}

/// The environment variable that makes the runtime kill itself (SIGKILL) at a named step of
/// `create`, `start` or `delete`: the fault-injection tests (tests/faults.rs) use it to check
/// that whatever such a death leaves behind stays consistent and `delete --force` removes it.
/// The steps are listed in [`FAULT_STEPS`]. It only ever ends the runtime process itself.
pub const FAULT_ENV: &str = "POUCH_FAULT_KILL_AT";

/// Every step [`FAULT_ENV`] can name, in the order a create/start/delete passes them.
pub const FAULT_STEPS: &[&str] = &[
    "create:state-dir",
    "create:cgroup",
    "create:init-ready",
    "create:init-recorded",
    "create:done",
    "start:connected",
    "start:socket-removed",
    "delete:locked",
    "delete:killed",
    "delete:cgroup-removed",
];

/// Dies here (SIGKILL, as a crash or an OOM kill would) when [`FAULT_ENV`] names `step`.
pub(crate) fn fault_point(step: &'static str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    debug_assert!(FAULT_STEPS.contains(&step), "{step} missing in FAULT_STEPS");
    if AT.get_or_init(|| std::env::var(FAULT_ENV).ok()).as_deref() == Some(step) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// Checks a container id: letters, digits, `_ + - .`, not `.` or `..`, at most 1024 bytes.
pub fn validate_id(id: &str) -> Result<(), Error> {
    let bad = |reason: &str| Error::InvalidId {
        id: id.to_string(),
        reason: reason.to_string(),
    };
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id == "." || id == ".." {
        return Err(bad("it names a directory"));
    }
    if id.len() > 1024 {
        return Err(bad("it is longer than 1024 bytes"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
    {
        return Err(bad("use only letters, digits, '_', '+', '-' and '.'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1.2_3+x", &"f".repeat(64)] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0"] {
            let e = validate_id(bad).unwrap_err().to_string();
            assert!(e.contains("invalid container id"), "{e}");
        }
    }
}
