//! What the container commands of `pouch` do, shared by the CLI and the monitor.

use super::names;
use super::record::{monitor_alive, new_id, now, Container, ContainerStore};
use super::spec_gen::{self, RunFlags};
use crate::dispatch::{self, Executor, ImageFacts};
use crate::image::pull::PlatformSpec;
use crate::image::store::{ContentStore, ImageRecord, StoredImage};
use crate::image::{reference::ImageRef, snapshot};
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// An error of a container command, with the exit code `pouch` should return (Docker's: 125
/// for pouch's own errors, 126 when the program cannot be run, 127 when it is not there).
#[derive(Debug)]
pub struct OpsError {
    /// Exit code.
    pub code: i32,
    /// What went wrong, and the fix.
    pub message: String,
}

impl std::fmt::Display for OpsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OpsError {}

/// An error with exit code 125.
pub fn fail(m: impl std::fmt::Display) -> OpsError {
    OpsError {
        code: 125,
        message: m.to_string(),
    }
}

type Result<T> = std::result::Result<T, OpsError>;

/// `--pull`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum PullPolicy {
    /// Pull only when the image is not in the store.
    #[default]
    Missing,
    /// Pull every time.
    Always,
    /// Never pull.
    Never,
}

/// Finds an image in the store by name (normalised) or ID prefix.
pub fn find_image(images: &ContentStore, s: &str) -> Option<ImageRecord> {
    let recs = images.images().ok()?;
    if let Ok(r) = s.parse::<ImageRef>() {
        let full = r.to_string();
        if let Some(x) = recs.iter().find(|x| x.name == full || x.name == s) {
            return Some(x.clone());
        }
    }
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let found: Vec<_> = recs
            .iter()
            .filter(|x| {
                x.descriptor.digest.hex().starts_with(hex)
                    || images
                        .image(&x.descriptor)
                        .is_ok_and(|i| i.manifest.config.digest.hex().starts_with(hex))
            })
            .collect();
        if found.len() == 1 {
            return Some(found[0].clone());
        }
    }
    None
}

/// The image for `run`/`create`, pulled as the policy says.
pub fn image_for_run(
    images: &ContentStore,
    image: &str,
    policy: PullPolicy,
    platform: Option<&PlatformSpec>,
    opts: &crate::image::pull::PullOptions,
) -> Result<(ImageRecord, StoredImage)> {
    // The built-in examples need no registry.
    if let Some(name) = crate::image::examples::install(images, image).map_err(fail)? {
        let rec = find_image(images, &name).ok_or_else(|| fail("example image vanished"))?;
        let img = images.image(&rec.descriptor).map_err(fail)?;
        if let Some(cache) = &opts.wasm_cache {
            let _ = crate::image::pull::precompile_image(images, &img, cache);
        }
        return Ok((rec, img));
    }
    let present = find_image(images, image);
    let need = match policy {
        PullPolicy::Always => true,
        PullPolicy::Missing => present.is_none(),
        PullPolicy::Never => false,
    };
    let rec = if need {
        let r: ImageRef = image.parse().map_err(fail)?;
        let mut o = opts.clone();
        o.platform = platform.cloned();
        let res = crate::image::pull::block_on(crate::image::pull::pull(images, &r, &o))
            .map_err(|e| fail(format!("pull {r}: {e}")))?;
        find_image(images, &res.name).ok_or_else(|| fail("image vanished after the pull"))?
    } else {
        present.ok_or_else(|| {
            fail(format!(
                "image {image:?} is not in the store and --pull=never: pull it first (pouch pull {image})"
            ))
        })?
    };
    let img = images.image(&rec.descriptor).map_err(fail)?;
    if let Some(p) = platform {
        if !p.matches(
            &img.config.os,
            &img.config.architecture,
            img.config.variant.as_deref(),
        ) && !img.config.os.is_empty()
        {
            return Err(fail(format!(
                "image {image} is {}/{}, not {p}: pull the {p} entry (pouch pull --platform {p} {image})",
                img.config.os, img.config.architecture
            )));
        }
    }
    Ok((rec, img))
}

/// What `create` needs.
pub struct CreateRequest {
    /// The image as given.
    pub image: String,
    /// Arguments after the image.
    pub command: Vec<String>,
    /// The flags.
    pub flags: RunFlags,
    /// `--rm`.
    pub auto_remove: bool,
}

fn image_facts(img: &StoredImage) -> ImageFacts {
    ImageFacts {
        architecture: Some(img.config.architecture.clone()).filter(|s| !s.is_empty()),
        os: Some(img.config.os.clone()).filter(|s| !s.is_empty()),
        config_media_type: Some(img.manifest.config.media_type.clone()),
        layer_media_types: img
            .manifest
            .layers
            .iter()
            .map(|l| l.media_type.clone())
            .collect(),
    }
}

/// Creates a container (rootfs, spec, files, record) in state `created`. Nothing is left
/// behind on error.
pub fn create(
    store: &ContainerStore,
    images: &ContentStore,
    rec: &ImageRecord,
    img: &StoredImage,
    req: &CreateRequest,
) -> Result<Container> {
    let id = new_id();
    let name = match &req.flags.name {
        Some(n) => {
            names::reserve(store, n, &id).map_err(fail)?;
            n.clone()
        }
        None => {
            let mut n = names::generate(store, &id);
            if names::reserve(store, &n, &id).is_err() {
                n = format!("{n}_{}", &id[..8]);
                names::reserve(store, &n, &id).map_err(fail)?;
            }
            n
        }
    };
    let dir = store.dir(&id);
    let cleanup = |store: &ContainerStore| {
        let _ = snapshot::release_rootfs(&dir);
        let _ = images.release(&dir.display().to_string());
        names::release(store, &name, &id);
        let _ = std::fs::remove_dir_all(&dir);
    };
    let r = (|| -> Result<Container> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("create {}: {e}", dir.display())))?;
        let chains = if img.has_tar_layers() {
            crate::image::digest::chain_ids(&img.config.rootfs.diff_ids)
        } else {
            vec![]
        };
        images
            .hold(&dir.display().to_string(), &chains)
            .map_err(fail)?;
        let rootfs = snapshot::prepare_rootfs(images, img, &dir).map_err(fail)?;
        let facts = image_facts(img);
        let wasm_by_image = facts.wasm_reason().is_some();
        let artifact = !img.has_tar_layers();
        let gen = spec_gen::generate(
            &req.flags,
            &req.command,
            &rec.name,
            if artifact { None } else { Some(&img.config) },
            &rootfs,
            &id,
            store.data_root(),
            wasm_by_image,
        )
        .map_err(fail)?;
        for (fname, content) in &gen.files {
            std::fs::write(dir.join(fname), content)
                .map_err(|e| fail(format!("write {fname}: {e}")))?;
        }
        let decision =
            dispatch::decide(&gen.spec, &rootfs, Some(&facts)).map_err(|e| OpsError {
                code: 127,
                message: e.to_string(),
            })?;
        let mut spec = gen.spec;
        if matches!(decision.executor, Executor::Wasm { .. }) {
            let mut a = spec.annotations().clone().unwrap_or_default();
            a.entry(dispatch::HANDLER_ANNOTATION.to_string())
                .or_insert_with(|| "wasm".to_string());
            spec.set_annotations(Some(a));
        }
        let spec_json = serde_json::to_vec_pretty(&spec).expect("serialises");
        std::fs::write(dir.join("config.json"), spec_json)
            .map_err(|e| fail(format!("write config.json: {e}")))?;
        let args = spec
            .process()
            .as_ref()
            .map(|p| p.args().clone().unwrap_or_default())
            .unwrap_or_default();
        let mut host = gen.host;
        host.auto_remove = req.auto_remove;
        let c = Container {
            id: id.clone(),
            name: name.clone(),
            created: now(),
            path: args.first().cloned().unwrap_or_default(),
            args: args.iter().skip(1).cloned().collect(),
            image_name: rec.name.clone(),
            image: img.manifest.config.digest.to_string(),
            image_digest: rec.descriptor.digest.to_string(),
            platform: format!("{}/{}", img.config.os, img.config.architecture),
            executor: match decision.executor {
                Executor::Native => "native".into(),
                Executor::Wasm { .. } => "wasm".into(),
            },
            executor_reason: decision.why.clone(),
            config: gen.config,
            host_config: host,
            state: super::record::State {
                status: "created".into(),
                ..Default::default()
            },
            restart_count: 0,
            log_path: dir.join("ctr.log").display().to_string(),
            bundle: dir.display().to_string(),
        };
        store.save(&c).map_err(fail)?;
        Ok(c)
    })();
    if r.is_err() {
        cleanup(store);
    }
    r
}

/// How the CLI attaches to the monitor it starts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Attach {
    /// Give the container our stdin.
    pub stdin: bool,
    /// Have the container's output forwarded to our stdout/stderr.
    pub output: bool,
}

/// A started monitor: its status lines.
pub struct Monitor {
    child: std::process::Child,
    status: std::io::BufReader<std::fs::File>,
}

/// What the monitor said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The container runs, with this pid.
    Started(i32),
    /// It could not be started.
    Error(i32, String),
    /// It exited with this code (after `--rm` was applied).
    Exit(i32),
    /// The monitor is gone without a word.
    Lost,
}

impl Monitor {
    /// The monitor's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next event.
    pub fn next_event(&mut self) -> Event {
        let mut line = String::new();
        match self.status.read_line(&mut line) {
            Ok(0) | Err(_) => Event::Lost,
            Ok(_) => {
                let l = line.trim_end();
                let (w, rest) = l.split_once(' ').unwrap_or((l, ""));
                match w {
                    "started" => Event::Started(rest.parse().unwrap_or(0)),
                    "exit" => Event::Exit(rest.parse().unwrap_or(125)),
                    "error" => {
                        let (c, m) = rest.split_once(' ').unwrap_or((rest, ""));
                        Event::Error(c.parse().unwrap_or(125), m.to_string())
                    }
                    _ => Event::Lost,
                }
            }
        }
    }

    /// Waits for the monitor process (a foreground run reaps it).
    pub fn reap(mut self) {
        let _ = self.child.wait();
    }
}

/// Starts the monitor of container `c` (which creates and starts the container).
pub fn spawn_monitor(store: &ContainerStore, c: &Container, attach: Attach) -> Result<Monitor> {
    let exe = std::env::current_exe().map_err(|e| fail(format!("own executable: {e}")))?;
    let (r, w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| fail(format!("pipe: {e}")))?;
    let wfd = {
        use std::os::fd::AsRawFd;
        w.as_raw_fd()
    };
    let mut cmd = Command::new(exe);
    cmd.arg("--data-root")
        .arg(store.data_root())
        .arg("__monitor")
        .arg(&c.id)
        .env(super::monitor::STATUS_FD_ENV, wfd.to_string())
        .stdin(if attach.stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(if attach.output {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(if attach.output {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // A session of its own: it outlives us and our terminal's signals.
            libc::setsid();
            // The status pipe survives the exec.
            let flags = libc::fcntl(wfd, libc::F_GETFD);
            libc::fcntl(wfd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| fail(format!("start the monitor: {e}")))?;
    drop(w);
    Ok(Monitor {
        child,
        status: std::io::BufReader::new(std::fs::File::from(r)),
    })
}

/// Makes sure the container's rootfs is mounted (after a reboot it is not).
pub fn ensure_rootfs(store: &ContainerStore, images: &ContentStore, c: &Container) -> Result<()> {
    let dir = store.dir(&c.id);
    let rootfs = dir.join("rootfs");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            let p = rootfs.display().to_string();
            m.lines().any(|l| l.split(' ').nth(4) == Some(p.as_str()))
        })
        .unwrap_or(false);
    let artifact_ready = rootfs.join("module.wasm").exists();
    if mounted || artifact_ready {
        return Ok(());
    }
    let rec = find_image(images, &c.image_name)
        .ok_or_else(|| fail(format!("image {} of this container is gone", c.image_name)))?;
    let img = images.image(&rec.descriptor).map_err(fail)?;
    snapshot::prepare_rootfs(images, &img, &dir).map_err(fail)?;
    Ok(())
}

/// The status as `ps` and `inspect` should show it: the recorded one, corrected when the
/// monitor is gone (the container is then `dead` if it stopped, or running unwatched).
pub fn live_state(store: &ContainerStore, c: &Container) -> Container {
    let mut c = c.clone();
    if matches!(c.state.status.as_str(), "running" | "paused" | "restarting")
        && !monitor_alive(&c.state)
    {
        let rt = store.runtime();
        match rt.state(&c.id) {
            Ok(s) if s.status != crate::runtime::Status::Stopped => {
                c.state.dead = true;
                c.state.error = "the monitor is gone: the container runs, but its output is no longer logged and its exit will not be recorded".into();
                c.state.paused = s.status == crate::runtime::Status::Paused;
            }
            _ => {
                c.state.status = "dead".into();
                c.state.running = false;
                c.state.dead = true;
                c.state.error =
                    "the monitor died and the container stopped; its exit code is unknown".into();
            }
        }
    }
    c
}

/// Sends a signal (number) to the container's processes.
pub fn signal(store: &ContainerStore, c: &Container, sig: i32, all: bool) -> Result<()> {
    store.runtime().kill(&c.id, sig, all).map_err(fail)
}

/// Whether the container's process still runs.
pub fn is_running(store: &ContainerStore, c: &Container) -> bool {
    matches!(
        store.runtime().state(&c.id).map(|s| s.status),
        Ok(crate::runtime::Status::Running) | Ok(crate::runtime::Status::Paused)
    )
}

/// Waits until the container is no longer running (monitor done, or process gone) or the
/// timeout passes; whether it stopped.
pub fn wait_stopped(store: &ContainerStore, id: &str, timeout: Duration) -> bool {
    let t = Instant::now();
    loop {
        match store.load(id) {
            Err(_) => return true,
            Ok(c) => {
                let s = live_state(store, &c);
                let monitor = monitor_alive(&c.state);
                if !matches!(s.state.status.as_str(), "running" | "paused" | "restarting")
                    || (!monitor && !is_running(store, &c))
                {
                    // Give a live monitor the moment it needs to record the exit.
                    if !monitor || s.state.status == "exited" || s.state.status == "created" {
                        return true;
                    }
                }
            }
        }
        if t.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `stop`: the stop signal, then SIGKILL after `timeout`.
pub fn stop(store: &ContainerStore, c: &Container, timeout: Option<u64>) -> Result<()> {
    let c = store
        .update(&c.id, |c| c.state.stopped_by_user = true)
        .map_err(fail)?;
    if !is_running(store, &c) {
        settle_unmonitored(store, &c);
        return Ok(());
    }
    let sig = crate::runtime::signal::parse_signal(&c.config.stop_signal).unwrap_or(libc::SIGTERM);
    let _ = signal(store, &c, sig, false);
    let t = timeout.unwrap_or(c.config.stop_timeout);
    if !wait_stopped(store, &c.id, Duration::from_secs(t)) {
        let _ = signal(store, &c, libc::SIGKILL, true);
        if !wait_stopped(store, &c.id, Duration::from_secs(10)) {
            return Err(fail(format!(
                "container {} did not stop after SIGKILL",
                &c.id[..12]
            )));
        }
    }
    settle_unmonitored(store, &c);
    Ok(())
}

/// Without a monitor nobody records the exit: do it (exit code unknown) and remove the
/// runtime's container.
fn settle_unmonitored(store: &ContainerStore, c: &Container) {
    let Ok(c) = store.load(&c.id) else { return };
    if monitor_alive(&c.state) || is_running(store, &c) {
        return;
    }
    let _ = store.runtime().delete(&c.id, true);
    if matches!(c.state.status.as_str(), "running" | "paused" | "restarting") {
        let _ = store.update(&c.id, |c| {
            c.state.status = "exited".into();
            c.state.running = false;
            c.state.pid = 0;
            c.state.exit_code = 137;
            c.state.finished_at = now();
        });
    }
}

/// Removes a container's files: rootfs, names, hold on snapshots, directory.
pub fn remove_files(store: &ContainerStore, c: &Container) -> Result<()> {
    let dir = store.dir(&c.id);
    let _ = store.runtime().delete(&c.id, true);
    snapshot::release_rootfs(&dir).map_err(fail)?;
    if let Ok(images) = ContentStore::open(store.data_root()) {
        let _ = images.release(&dir.display().to_string());
    }
    names::release(store, &c.name, &c.id);
    std::fs::remove_dir_all(&dir).map_err(|e| fail(format!("remove {}: {e}", dir.display())))
}

/// `rm`: refuses a running container unless `force` (then kills it first).
pub fn remove(store: &ContainerStore, c: &Container, force: bool) -> Result<()> {
    let live = live_state(store, c);
    if is_running(store, c) {
        if !force {
            return Err(fail(format!(
                "container {} is {}: stop it first (pouch stop) or use rm -f",
                c.name, live.state.status
            )));
        }
        let _ = store.update(&c.id, |c| c.state.stopped_by_user = true);
        let _ = signal(store, c, libc::SIGKILL, true);
        if !wait_stopped(store, &c.id, Duration::from_secs(10)) {
            return Err(fail(format!("container {} did not stop", c.name)));
        }
    }
    // A monitor that is still finishing (or applying --rm) goes first.
    let t = Instant::now();
    while store.load(&c.id).is_ok_and(|c| monitor_alive(&c.state))
        && t.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    match store.load(&c.id) {
        Ok(c) => remove_files(store, &c),
        Err(_) => Ok(()), // --rm got there first
    }
}

/// Duration in Docker's words ("3 seconds", "About a minute", "2 hours").
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

fn since(t: &str) -> Duration {
    humantime::parse_rfc3339_weak(t.split('.').next().unwrap_or(t).trim_end_matches('Z'))
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// The STATUS column of `ps`.
pub fn status_text(c: &Container) -> String {
    let s = &c.state;
    match s.status.as_str() {
        "running" if s.dead => {
            format!("Up {} (monitor lost)", human_duration(since(&s.started_at)))
        }
        "running" => format!("Up {}", human_duration(since(&s.started_at))),
        "paused" => format!("Up {} (Paused)", human_duration(since(&s.started_at))),
        "restarting" => format!(
            "Restarting ({}) {} ago",
            s.exit_code,
            human_duration(since(&s.finished_at))
        ),
        "exited" => format!(
            "Exited ({}) {} ago",
            s.exit_code,
            human_duration(since(&s.finished_at))
        ),
        "dead" => "Dead (monitor lost)".into(),
        _ => "Created".into(),
    }
}

/// `inspect` of a container: Docker's shape plus Pouch's executor fields.
pub fn inspect_value(c: &Container) -> serde_json::Value {
    let mut v = serde_json::to_value(c).expect("serialises");
    if let Some(o) = v.as_object_mut() {
        o.insert("Id".into(), serde_json::Value::String(c.id.clone()));
        o.insert(
            "Name".into(),
            serde_json::Value::String(format!("/{}", c.name)),
        );
        o.insert(
            "SpecAnnotation".into(),
            serde_json::to_value(&c.host_config.annotations).unwrap_or_default(),
        );
        o.remove("id");
    }
    v
}

/// Reads a bundle's spec (for exec).
pub fn bundle_spec(c: &Container) -> Option<oci_spec::runtime::Spec> {
    oci_spec::runtime::Spec::load(Path::new(&c.bundle).join("config.json")).ok()
}
