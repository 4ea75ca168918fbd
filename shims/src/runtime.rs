//! `pouch-runtime`, run as a separate program for every container operation.
//!
//! The shim is multi-threaded (tokio); it never forks itself to create a container. Every
//! operation executes the runc-compatible runtime CLI with `--root <root> --log <bundle log>
//! --log-format json`, and an error is the last `"level":"error"` message of that log (or the
//! runtime's stderr).

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::reaper::Reaper;

/// The environment variable that names the runtime binary, overriding the search.
pub const RUNTIME_ENV: &str = "POUCH_RUNTIME";
/// The runtime's file name, looked up next to the shim binary, then on PATH.
pub const RUNTIME_NAME: &str = "pouch-runtime";
/// The default runtime root of the shim's containers: `<this>/<namespace>`.
pub const DEFAULT_ROOT_BASE: &str = "/run/containerd/pouch";

/// Where to find `pouch-runtime`: `$POUCH_RUNTIME`, else next to the shim binary, else on
/// PATH.
pub fn find_runtime() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(RUNTIME_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "{RUNTIME_ENV}={} is not a file: point it at the pouch-runtime binary",
                p.display()
            ))
        };
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        let p = dir.join(RUNTIME_NAME);
        if p.is_file() {
            return Ok(p);
        }
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(RUNTIME_NAME))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "{RUNTIME_NAME} not found next to the shim nor on PATH ({}): install it beside \
                 containerd-shim-pouch-v2 or set {RUNTIME_ENV}",
                path.to_string_lossy()
            )
        })
}

/// The stdio a runtime invocation gets: the container's (create, exec) or captured.
pub struct ProcessStdio {
    /// Standard input; `None` for /dev/null.
    pub stdin: Option<File>,
    /// Standard output; `None` for /dev/null.
    pub stdout: Option<File>,
    /// Standard error; `None` for /dev/null.
    pub stderr: Option<File>,
}

/// What a finished runtime invocation printed.
pub struct Outcome {
    /// Its stdout (empty when stdout was the container's).
    pub stdout: Vec<u8>,
}

/// A runtime error: the operation, and the runtime's own message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    /// The runtime's message (from its json log, else its stderr), or why it could not run.
    pub message: String,
}

/// One `pouch-runtime` with its root and log file.
#[derive(Clone)]
pub struct RuntimeCli {
    /// The binary.
    pub binary: PathBuf,
    /// `--root`.
    pub root: PathBuf,
    /// `--log` (json).
    pub log: PathBuf,
    /// Reaps the invocations.
    pub reaper: Reaper,
}

impl RuntimeCli {
    /// Runs `pouch-runtime --root R --log L --log-format json ARGS` with `stdio` (captured
    /// stdout and stderr when `None`) and waits for it.
    pub async fn run(
        &self,
        args: &[OsString],
        stdio: Option<ProcessStdio>,
    ) -> Result<Outcome, RuntimeError> {
        let log_start = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json")
            .args(args);
        let fail = |m: String| RuntimeError { message: m };
        let (out, err) = match stdio {
            Some(s) => {
                cmd.stdin(s.stdin.map_or_else(Stdio::null, Stdio::from))
                    .stdout(s.stdout.map_or_else(Stdio::null, Stdio::from))
                    .stderr(s.stderr.map_or_else(Stdio::null, Stdio::from));
                (None, None)
            }
            None => {
                let out = tempfile::tempfile().map_err(|e| fail(format!("temporary file: {e}")))?;
                let err = tempfile::tempfile().map_err(|e| fail(format!("temporary file: {e}")))?;
                cmd.stdin(Stdio::null())
                    .stdout(out.try_clone().map_err(|e| fail(e.to_string()))?)
                    .stderr(err.try_clone().map_err(|e| fail(e.to_string()))?);
                (Some(out), Some(err))
            }
        };
        let (_, exit) = self.reaper.spawn(&mut cmd).map_err(|e| {
            fail(format!(
                "cannot run {}: {e} (set {RUNTIME_ENV} to the pouch-runtime binary)",
                self.binary.display()
            ))
        })?;
        // The Command holds the container's stdio: let go of it now.
        drop(cmd);
        let code = exit
            .await
            .map_err(|_| fail(format!("{} was never reaped", self.binary.display())))?;
        let stdout = out.map(read_all).unwrap_or_default();
        if code == 0 {
            return Ok(Outcome { stdout });
        }
        let stderr = err.map(read_all).unwrap_or_default();
        let message = last_log_error(&self.log, log_start)
            .or_else(|| {
                let s = String::from_utf8_lossy(&stderr).trim().to_owned();
                (!s.is_empty()).then_some(s)
            })
            .unwrap_or_else(|| format!("{} exited with status {code}", self.binary.display()));
        Err(RuntimeError { message })
    }
}

fn read_all(mut f: File) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_end(&mut v);
    v
}

/// The message of the last `"level":"error"` line written to `log` after byte `from`.
fn last_log_error(log: &Path, from: u64) -> Option<String> {
    let mut f = File::open(log).ok()?;
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    text.lines().rev().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("level")?.as_str()? == "error").then(|| v.get("msg")?.as_str().map(str::to_owned))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_after_the_offset_is_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        std::fs::write(&log, "{\"level\":\"error\",\"msg\":\"old\"}\n").unwrap();
        let from = std::fs::metadata(&log).unwrap().len();
        assert_eq!(last_log_error(&log, from), None);
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str(
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"new\"}\n",
        );
        std::fs::write(&log, text).unwrap();
        assert_eq!(last_log_error(&log, from).as_deref(), Some("new"));
    }
}
