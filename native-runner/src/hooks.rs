//! Running runtime-spec hooks: the program at `path` with `args` and `env`, the container's
//! state JSON on stdin, stopped at its `timeout`. Stdout and stderr go to memory files (no
//! threads, no pipe that could fill up), and a failure says which hook, how it ended and the
//! end of what it printed.

use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

fn memfile(name: &str) -> Result<std::fs::File> {
    let c = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: valid name, flags.
    let fd = unsafe { libc::memfd_create(c.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io(
            "memfd_create for hook output",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: a fresh descriptor we own.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn tail(mut f: std::fs::File) -> String {
    let mut b = Vec::new();
    let _ = f.rewind();
    let _ = f.read_to_end(&mut b);
    let cut = b.len().saturating_sub(512);
    let s = String::from_utf8_lossy(&b[cut..]);
    let s = s.trim();
    if cut > 0 {
        format!("…{s}")
    } else {
        s.to_string()
    }
}

/// Runs one hook. `what` names it in errors (`hooks.createRuntime[0]`).
pub fn run_hook(hook: &Hook, what: &str, state_json: &[u8]) -> Result<()> {
    let path = hook.path();
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some((arg0, rest)) = args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.env_clear();
    for kv in hook.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let (out, err) = (memfile("hook-stdout")?, memfile("hook-stderr")?);
    let mut stdin_file = memfile("hook-stdin")?;
    stdin_file
        .write_all(state_json)
        .and_then(|_| stdin_file.rewind())
        .map_err(|e| Error::io(format!("{what}: prepare stdin"), e))?;
    cmd.stdin(Stdio::from(stdin_file))
        .stdout(Stdio::from(
            out.try_clone().map_err(|e| Error::io(what, e))?,
        ))
        .stderr(Stdio::from(
            err.try_clone().map_err(|e| Error::io(what, e))?,
        ));
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("{what}: run {}", path.display()), e))?;
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut pause = Duration::from_micros(200);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) => {}
            Err(e) => return Err(Error::io(format!("{what}: wait for {}", path.display()), e)),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::invalid(format!(
                "{what} ({}): timed out after {} s and was killed",
                path.display(),
                hook.timeout().unwrap_or(0)
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    };
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => "failed".to_string(),
    };
    let (o, e) = (tail(out), tail(err));
    let printed = [o, e]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" / ");
    Err(Error::invalid(format!(
        "{what} ({}) {how}{}",
        path.display(),
        if printed.is_empty() {
            String::new()
        } else {
            format!(": {printed}")
        }
    )))
}

/// Runs hooks in order; the first failure stops the rest. `kind` is the spec's name
/// (`createRuntime`).
pub fn run_hooks(hooks: &[Hook], kind: &str, state_json: &[u8]) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_hook(h, &format!("hooks.{kind}[{i}]"), state_json)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(args: &[&str], timeout: Option<i64>) -> Hook {
        let mut h = Hook::default();
        h.set_path("/bin/sh".into());
        h.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
        h.set_env(Some(vec!["HOOKVAR=v1".into()]));
        h.set_timeout(timeout);
        h
    }

    #[test]
    fn state_on_stdin_env_and_failures() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("seen");
        let script = format!(
            "cat > {}; echo \"$HOOKVAR\" >> {}",
            f.display(),
            f.display()
        );
        run_hook(
            &hook(&["sh", "-c", &script], None),
            "hooks.poststart[0]",
            b"{\"id\":\"x\"}",
        )
        .unwrap();
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "{\"id\":\"x\"}v1\n");

        let e = run_hook(
            &hook(&["sh", "-c", "echo boom >&2; exit 3"], None),
            "hooks.createRuntime[1]",
            b"",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("hooks.createRuntime[1]") && e.contains("status 3") && e.contains("boom"),
            "{e}"
        );

        let t = Instant::now();
        let e = run_hook(
            &hook(&["sh", "-c", "sleep 30"], Some(1)),
            "hooks.prestart[0]",
            b"",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
