//! Reading a bundle's `config.json`, and the default spec written by `pouch-runtime spec`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::runtime::Error;

/// The runtime-spec version this runtime implements.
pub const OCI_VERSION: &str = "1.2.0";

/// Reads and checks `<bundle>/config.json`. Errors name the file, the JSON path of the bad
/// field and what was wrong, e.g. `config.json: linux.namespaces[1].type: unknown variant "foo"`.
pub fn load_bundle_spec(bundle: &Path) -> Result<Spec, Error> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(|e| {
        Error::Spec(format!(
            "cannot read {}: {e}; is --bundle the directory that holds config.json?",
            path.display()
        ))
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    let spec: Spec = serde_path_to_error::deserialize(de).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        if at == "." || at.is_empty() {
            Error::Spec(format!("{}: {inner}", path.display()))
        } else {
            Error::Spec(format!("{}: {at}: {inner}", path.display()))
        }
    })?;
    check_spec(&spec).map_err(|m| Error::Spec(format!("{}: {m}", path.display())))?;
    Ok(spec)
}

/// Checks that the spec version is one this runtime understands and that the required fields
/// are there.
pub fn check_spec(spec: &Spec) -> Result<(), String> {
    let v = spec.version();
    if !v.starts_with("1.") {
        return Err(format!(
            "ociVersion: {v:?} is not a runtime-spec 1.x version (pouch implements {OCI_VERSION})"
        ));
    }
    match spec.root() {
        Some(r) if !r.path().as_os_str().is_empty() => {}
        _ => {
            return Err(
                "root.path: missing; set it to the rootfs directory (e.g. \"rootfs\")".into(),
            )
        }
    }
    match spec.process() {
        Some(p) if p.args().as_ref().is_some_and(|a| !a.is_empty()) => {}
        Some(_) => return Err("process.args: must have at least one element".into()),
        None => return Err("process: missing; a container needs a process to run".into()),
    }
    if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd()) {
        if !cwd.is_absolute() {
            return Err(format!(
                "process.cwd: {:?} must be an absolute path",
                cwd.display()
            ));
        }
    }
    if spec.linux().is_none() {
        return Err("linux: missing; pouch-runtime runs Linux containers".into());
    }
    Ok(())
}

/// The rootfs of a spec: `root.path`, relative to the bundle unless absolute.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> PathBuf {
    let p = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    if p.is_absolute() {
        p
    } else {
        bundle.join(p)
    }
}

/// The default `config.json` of `pouch-runtime spec`: a `sh` in a busybox-like rootfs with
/// the namespaces, mounts, masked paths and capabilities runc's default spec has.
pub fn default_spec_json() -> serde_json::Value {
    let caps = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    serde_json::json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "pouch",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join("config.json"), text).unwrap();
    }

    #[test]
    fn default_spec_parses_and_checks() {
        let spec: Spec = serde_json::from_value(default_spec_json()).unwrap();
        check_spec(&spec).unwrap();
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let d = tempfile::tempdir().unwrap();
        let e = load_bundle_spec(d.path()).unwrap_err().to_string();
        assert!(e.contains("config.json") && e.contains("--bundle"), "{e}");
        write(d.path(), "{ not json");
        let e = load_bundle_spec(d.path()).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
        let mut v = default_spec_json();
        v["linux"]["namespaces"][1]["type"] = "bogus".into();
        write(d.path(), &v.to_string());
        let e = load_bundle_spec(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("linux.namespaces[1].type") && e.contains("bogus"),
            "{e}"
        );
        let mut v = default_spec_json();
        v["process"]["args"] = serde_json::json!([]);
        write(d.path(), &v.to_string());
        let e = load_bundle_spec(d.path()).unwrap_err().to_string();
        assert!(e.contains("process.args"), "{e}");
    }
}
