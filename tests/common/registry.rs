//! A real registry for the tests: Debian's docker-registry started by
//! tests/support/registry.sh on 127.0.0.1 (one without auth, one with htpasswd basic auth),
//! filled with skopeo from images tests/support/make-test-images.sh builds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn support(script: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script)
}

pub fn sh(cmd: &mut Command) -> String {
    let o = super::run_captured(cmd);
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A registry started by registry.sh; stopped (and its state removed) on drop.
pub struct Registry {
    pub state: PathBuf,
    pub addr: String,
}

impl Registry {
    pub fn start(auth: Option<&str>) -> Registry {
        let state = Path::new(env!("CARGO_TARGET_TMPDIR")).join(super::unique("registry"));
        let mut c = Command::new("bash");
        c.arg(support("registry.sh")).arg("start").arg(&state);
        if let Some(a) = auth {
            c.args(["--auth", a]);
        }
        let addr = sh(&mut c).trim().to_string();
        Registry { state, addr }
    }

    pub fn stop(&self) {
        let _ = super::run_captured(
            Command::new("bash")
                .arg(support("registry.sh"))
                .arg("stop")
                .arg(&self.state),
        );
        let _ = std::fs::remove_dir_all(&self.state);
    }

    pub fn push(&self, images: &Path, creds: Option<&str>) -> HashMap<String, String> {
        let mut c = Command::new("bash");
        c.arg(support("push-test-images.sh"))
            .arg(images)
            .arg(&self.addr);
        if let Some(cr) = creds {
            c.args(["--creds", cr]);
        }
        sh(&mut c)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.trim().to_string()))
            .collect()
    }

    /// The blob's data file in the registry's own storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.state.join(format!(
            "storage/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Fixture {
    pub images: PathBuf,
    pub plain: Registry,
    pub auth: Registry,
    pub pushed: HashMap<String, String>,
}

pub const USER: &str = "pouchtest";
pub const PASS: &str = "s3cret-pw";

/// The registries every test shares, started once; stopped when the test process exits.
pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let images = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-images");
        sh(Command::new("bash")
            .arg(support("make-test-images.sh"))
            .arg(&images));
        let plain = Registry::start(None);
        let auth = Registry::start(Some(&format!("{USER}:{PASS}")));
        extern "C" fn stop_all() {
            if let Some(f) = F.get() {
                f.plain.stop();
                f.auth.stop();
            }
        }
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { libc::atexit(stop_all) };
        let pushed = plain.push(&images, None);
        auth.push(&images, Some(&format!("{USER}:{PASS}")));
        Fixture {
            images,
            plain,
            auth,
            pushed,
        }
    })
}
