//! `pouch`: the Docker-like command line of Pouch. Daemonless: every command opens the store
//! under --data-root itself and several can run at once.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

mod containers;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use pouch::image::archive::{self, ArchiveFormat};
use pouch::image::auth::{self, Credentials};
use pouch::image::pull::{self, PlatformSpec, PullOptions};
use pouch::image::reference::ImageRef;
use pouch::image::store::{ContentStore, ImageRecord, StoredImage, DEFAULT_DATA_ROOT};
use pouch::image::{digest::chain_ids, snapshot};

/// pouch: pull, store and run OCI images, Linux and WebAssembly alike, without a daemon.
///
/// `pouch run IMAGE` works like `docker run` whether IMAGE is a Linux or a wasm image (its
/// platform and media types pick the executor). Each container has a small monitor process, so
/// containers outlive the command that started them. Images live in a content store under
/// --data-root (an OCI image layout at <data-root>/oci that skopeo and umoci read as
/// oci:<data-root>/oci:<name>); containers under <data-root>/containers. Registries on loopback
/// may speak plain HTTP; others need --tls-verify=false or an entry in "insecure-registries" of
/// /etc/pouch/config.json ($POUCH_CONFIG). Built-in example: localhost/pouch-examples/hello.
#[derive(Parser, Debug)]
#[command(name = "pouch", version, propagate_version = true)]
struct Cli {
    /// Directory of the image store, snapshots and containers.
    #[arg(long, global = true, env = "POUCH_DATA_ROOT", default_value = DEFAULT_DATA_ROOT)]
    data_root: PathBuf,
    /// Log debug messages on stderr.
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// `--tls-verify[=true|false]`, as podman spells it.
#[derive(clap::Args, Debug, Clone)]
struct TlsArgs {
    /// Require HTTPS with a verified certificate (default: true, except for loopback
    /// registries and those listed as insecure in the config).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    tls_verify: Option<bool>,
    /// Credentials for this command only (else `pouch login`'s, then ~/.docker/config.json).
    #[arg(long, value_name = "USER:PASSWORD")]
    creds: Option<Credentials>,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    #[command(flatten)]
    Container(containers::ContainerCmd),
    /// Show the version of pouch and of its parts.
    Version,
    /// Show how this host runs containers (cgroups, runtime, store, wasm).
    Info,
    /// The per-container monitor (started by run/start; not for direct use).
    #[command(name = "__monitor", hide = true)]
    Monitor {
        /// Container id.
        id: String,
    },
    /// Download an image (and its layers, unpacked) from a registry.
    Pull {
        /// Image reference: [registry/]repository[:tag][@digest].
        image: String,
        /// Platform to select from a multi-platform image: os/arch[/variant]; wasi/wasm picks
        /// the WebAssembly entry.
        #[arg(long)]
        platform: Option<PlatformSpec>,
        /// Print only the image name.
        #[arg(short, long)]
        quiet: bool,
        /// Layers downloaded at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Upload an image from the store to a registry.
    Push {
        /// Image in the store.
        image: String,
        /// Destination reference (default: the image's own name).
        destination: Option<String>,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Give an image in the store another name.
    Tag {
        /// Existing image (name or ID prefix).
        source: String,
        /// New name.
        target: String,
    },
    /// Remove image names; content no image uses any more is removed too.
    Rmi {
        /// Images (names or ID prefixes).
        #[arg(required = true)]
        images: Vec<String>,
        /// Remove every name of an image given by ID.
        #[arg(short, long)]
        force: bool,
        /// Keep the unreferenced blobs and snapshots (remove them later with `pouch system prune`).
        #[arg(long)]
        no_prune: bool,
    },
    /// List images.
    Images {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Only image IDs.
        #[arg(short, long)]
        quiet: bool,
        /// Show full IDs.
        #[arg(long)]
        no_trunc: bool,
        /// Show manifest digests.
        #[arg(long)]
        digests: bool,
    },
    /// Show details of containers or images as JSON.
    Inspect {
        /// Containers or images (names or ID prefixes; containers first).
        #[arg(required = true)]
        objects: Vec<String>,
        /// Format each with a Go-template, e.g. '{{.State.ExitCode}}'.
        #[arg(short, long)]
        format: Option<String>,
        /// Only look at images, or only at containers.
        #[arg(long = "type", value_parser = ["container", "image"])]
        kind: Option<String>,
    },
    /// Load images from an OCI archive or a docker-archive (tar, optionally gzip/zstd).
    Load {
        /// Archive file (default: standard input).
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Print only the loaded names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write images to an archive.
    Save {
        /// Images (names or ID prefixes).
        #[arg(required = true)]
        images: Vec<String>,
        /// Output file (default: standard output, if it is not a terminal).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Archive format.
        #[arg(long, value_enum, default_value_t = ArchiveFormat::OciArchive)]
        format: ArchiveFormat,
    },
    /// Store credentials for a registry (checked against it first).
    Login {
        /// Registry host[:port].
        registry: String,
        /// User name.
        #[arg(short, long)]
        username: Option<String>,
        /// Password (visible in the process list: prefer --password-stdin).
        #[arg(short, long)]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// See `pull --tls-verify`.
        #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true, value_name = "BOOL")]
        tls_verify: Option<bool>,
    },
    /// Remove stored credentials for a registry.
    Logout {
        /// Registry host[:port].
        registry: String,
    },
    /// Prepare a container root filesystem from an image at DIR/rootfs (an overlay of the
    /// image's layers with a writable DIR/upper; a wasm artifact's module as
    /// DIR/rootfs/module.wasm), e.g. for a bundle run by pouch-runtime. Prints the path.
    Mount {
        /// Image (name or ID prefix).
        image: String,
        /// Directory to prepare (created if missing).
        dir: PathBuf,
    },
    /// Undo `pouch mount`: unmount and remove DIR/rootfs, DIR/upper and DIR/work.
    Umount {
        /// The directory given to `pouch mount`.
        dir: PathBuf,
    },
    /// Housekeeping of the store.
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
}

#[derive(Subcommand, Debug)]
enum SystemCmd {
    /// Remove stopped containers, then blobs, snapshots and partial downloads no image uses.
    Prune {
        /// Accepted for Docker compatibility (pouch does not ask).
        #[arg(short, long)]
        force: bool,
    },
    /// Show how much space the store uses.
    Df,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ListFormat {
    Table,
    Json,
}

#[derive(serde::Deserialize, Default)]
struct Config {
    #[serde(default, rename = "insecure-registries")]
    insecure_registries: Vec<String>,
}

fn load_config() -> Result<Config> {
    let path = std::env::var_os("POUCH_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/etc/pouch/config.json"));
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .with_context(|| format!("{}: not a valid pouch config", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(anyhow!("read {}: {e}", path.display())),
    }
}

/// An error as the user sees it: with its causes, each said once (many of our errors already
/// include their cause, which anyhow's `{:#}` would say again).
fn error_text(e: &anyhow::Error) -> String {
    pouch::errors::chain(e.as_ref())
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Monitor { id } = &cli.cmd {
        // The monitor's stderr is the container's forwarded stderr: its own messages go to
        // monitor.log in the container's directory.
        let log = std::fs::OpenOptions::new().create(true).append(true).open(
            cli.data_root
                .join("containers")
                .join(id)
                .join("monitor.log"),
        );
        if let Ok(f) = log {
            let _ = tracing_subscriber::fmt()
                .with_writer(std::sync::Mutex::new(f))
                .with_max_level(if cli.debug {
                    tracing::Level::DEBUG
                } else {
                    tracing::Level::INFO
                })
                .with_ansi(false)
                .try_init();
        }
        std::process::exit(containers::monitor(&cli.data_root, id));
    }
    if cli.debug {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::DEBUG)
            .try_init();
    } else {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_max_level(tracing::Level::WARN)
            .with_target(false)
            .without_time()
            .try_init();
    }
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<pouch::container::ops::OpsError>() {
            Some(o) => {
                eprintln!("Error: {}", o.message);
                o.code
            }
            None => {
                eprintln!("Error: {}", error_text(&e));
                1
            }
        },
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn pull_options(tls: &TlsArgs, config: &Config, data_root: &Path) -> PullOptions {
    PullOptions {
        tls_verify: tls.tls_verify,
        insecure_registries: config.insecure_registries.clone(),
        credentials: tls.creds.clone(),
        wasm_cache: Some(data_root.join("wasm-cache")),
        ..Default::default()
    }
}

fn ctx(cli: &Cli) -> Result<containers::Ctx> {
    Ok(containers::Ctx {
        store: pouch::container::ContainerStore::open(&cli.data_root)
            .context("open the container store")?,
        images: ContentStore::open(&cli.data_root).context("open the image store")?,
        pull: PullOptions {
            insecure_registries: load_config()?.insecure_registries,
            wasm_cache: Some(cli.data_root.join("wasm-cache")),
            progress: true,
            ..Default::default()
        },
    })
}

fn run(cli: Cli) -> Result<i32> {
    let store = || ContentStore::open(&cli.data_root).context("open the image store");
    if let Cmd::Container(_) = &cli.cmd {
        let ctx = ctx(&cli)?;
        let Cmd::Container(c) = cli.cmd else {
            unreachable!()
        };
        return Ok(containers::run(&ctx, c)?);
    }
    match cli.cmd {
        Cmd::Container(_) => unreachable!("handled above"),
        Cmd::Monitor { .. } => unreachable!("handled in main"),
        Cmd::Version => {
            println!("pouch {}", env!("CARGO_PKG_VERSION"));
            println!("OCI runtime spec {}", pouch::spec::OCI_VERSION);
            println!("wasmtime 48.0.8 (WASI p1 modules, p2 components)");
        }
        Cmd::Info => {
            let ctx = ctx(&cli)?;
            let all = ctx.store.list();
            let running = all
                .iter()
                .filter(|c| pouch::container::ops::is_running(&ctx.store, c))
                .count();
            let layout = native_runner::cgroups::Layout::detect()
                .map(|l| l.to_string())
                .unwrap_or_else(|e| format!("unknown ({e})"));
            println!("Containers: {} (running {running})", all.len());
            println!("Images: {}", ctx.images.images()?.len());
            println!("Data root: {}", cli.data_root.display());
            println!("Cgroups: {layout}");
            println!(
                "Executors: native (namespaces, cgroups, seccomp), wasm (wasmtime 48, WASI p1/p2)"
            );
            println!(
                "Kernel: {}",
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
            );
        }
        Cmd::Pull {
            ref image,
            ref platform,
            quiet,
            parallel,
            ref tls,
        } => {
            let store = store()?;
            if let Some(name) = pouch::image::examples::install(&store, image)? {
                // A built-in example: written into the store, no registry involved.
                let rec = find_one(&store, &name)?;
                let img = store.image(&rec.descriptor)?;
                pull::precompile_image(&store, &img, &cli.data_root.join("wasm-cache"))?;
                println!("{name}");
                return Ok(0);
            }
            let r: ImageRef = image.parse()?;
            let mut opts = pull_options(tls, &load_config()?, &cli.data_root);
            opts.platform = platform.clone();
            opts.progress = !quiet;
            opts.parallel = parallel.max(1);
            let res = pull::block_on(pull::pull(&store, &r, &opts))?;
            if quiet {
                println!("{}", res.name);
            } else {
                let plat = res
                    .manifest
                    .platform
                    .as_ref()
                    .map(|p| p.display())
                    .unwrap_or_default();
                println!(
                    "Pulled {} ({}, {plat}): {} blobs downloaded, {} bytes{}",
                    res.name,
                    res.manifest.digest,
                    res.downloaded,
                    res.bytes,
                    if res.precompiled > 0 {
                        format!(", {} wasm module(s) precompiled", res.precompiled)
                    } else {
                        String::new()
                    }
                );
            }
        }
        Cmd::Push {
            ref image,
            ref destination,
            ref tls,
        } => {
            let store = store()?;
            let rec = find_one(&store, image)?;
            let dest: ImageRef = destination.as_deref().unwrap_or(&rec.name).parse()?;
            let opts = pull_options(tls, &load_config()?, &cli.data_root);
            let res = pull::block_on(pouch::image::push::push(&store, &rec.name, &dest, &opts))?;
            println!(
                "Pushed {dest} ({}): {} blobs uploaded, {} already there",
                res.digest, res.uploaded, res.skipped
            );
        }
        Cmd::Tag {
            ref source,
            ref target,
        } => {
            let store = store()?;
            let rec = find_one(&store, source)?;
            let t: ImageRef = target.parse()?;
            let mut d = rec.descriptor.clone();
            if let Some(a) = d.annotations.as_mut() {
                a.retain(|k, _| k == pouch::image::store::SOURCE_INDEX);
            }
            store.set_image(&t.to_string(), &d)?;
        }
        Cmd::Rmi {
            ref images,
            force,
            no_prune,
        } => {
            let store = store()?;
            let mut failed = false;
            for i in images {
                match resolve(&store, i) {
                    Ok(recs) if recs.len() > 1 && !force && !is_name(i) => {
                        eprintln!(
                            "Error: image {i:?} has {} names ({}): remove them by name or use --force",
                            recs.len(),
                            recs.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
                        );
                        failed = true;
                    }
                    Ok(recs) => {
                        for r in recs {
                            store.remove_image(&r.name)?;
                            println!("Untagged: {}", r.name);
                        }
                    }
                    Err(e) => {
                        eprintln!("Error: {}", error_text(&e));
                        failed = true;
                    }
                }
            }
            if !no_prune {
                let rep = store.gc(&BTreeSet::new())?;
                if rep.blobs + rep.snapshots > 0 {
                    println!(
                        "Deleted: {} blobs, {} snapshots ({})",
                        rep.blobs,
                        rep.snapshots,
                        human_size(rep.bytes)
                    );
                }
            }
            if failed {
                bail!("not every image was removed");
            }
        }
        Cmd::Images {
            format,
            quiet,
            no_trunc,
            digests,
        } => images(&store()?, format, quiet, no_trunc, digests)?,
        Cmd::Inspect {
            ref objects,
            ref format,
            ref kind,
        } => {
            let ctx = ctx(&cli)?;
            let tpl = format
                .as_deref()
                .map(pouch::container::template::Template::parse)
                .transpose()
                .map_err(|e| anyhow!(e))?;
            let mut out = Vec::new();
            let mut missing = Vec::new();
            for o in objects {
                let v = if kind.as_deref() != Some("image") {
                    containers::inspect_container(&ctx, o)
                } else {
                    None
                };
                let v = match v {
                    Some(v) => Some(v),
                    None if kind.as_deref() != Some("container") => find_one(&ctx.images, o)
                        .ok()
                        .map(|rec| inspect_json(&ctx.images, &rec))
                        .transpose()?,
                    None => None,
                };
                match v {
                    Some(v) => out.push(v),
                    None => missing.push(o.clone()),
                }
            }
            match &tpl {
                Some(t) => {
                    for v in &out {
                        println!("{}", t.render(v));
                    }
                }
                None => println!("{}", serde_json::to_string_pretty(&out)?),
            }
            if !missing.is_empty() {
                bail!("no such object: {}", missing.join(", "));
            }
        }
        Cmd::Load { ref input, quiet } => {
            let store = store()?;
            let (path, _tmp);
            match input {
                Some(p) => path = p.clone(),
                None => {
                    // Archives need a file to read; spool stdin.
                    let t = tempfile_in(&cli.data_root.join("tmp"))?;
                    let mut f = std::fs::File::create(&t.0)?;
                    std::io::copy(&mut std::io::stdin().lock(), &mut f)?;
                    path = t.0.clone();
                    _tmp = t;
                }
            }
            let names = archive::load(&store, &path)?;
            let cache = cli.data_root.join("wasm-cache");
            for n in &names {
                let rec = find_one(&store, n)?;
                let img = store.image(&rec.descriptor)?;
                if img.is_wasm() {
                    pull::precompile_image(&store, &img, &cache)?;
                }
            }
            for n in names {
                if quiet {
                    println!("{n}");
                } else {
                    println!("Loaded image: {n}");
                }
            }
        }
        Cmd::Save {
            ref images,
            ref output,
            format,
        } => {
            let store = store()?;
            let mut recs = Vec::new();
            for i in images {
                let r = find_one(&store, i)?;
                recs.push((r.name, r.descriptor));
            }
            match output {
                Some(p) => {
                    let tmp = p.with_extension(format!("tmp-{}", std::process::id()));
                    let r = (|| -> Result<()> {
                        let mut f = std::io::BufWriter::new(
                            std::fs::File::create(&tmp)
                                .with_context(|| format!("create {}", tmp.display()))?,
                        );
                        archive::save(&store, &recs, format, &mut f)?;
                        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                        std::fs::rename(&tmp, p)?;
                        Ok(())
                    })();
                    if r.is_err() {
                        let _ = std::fs::remove_file(&tmp);
                    }
                    r?;
                }
                None => {
                    if std::io::stdout().is_terminal() {
                        bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
                    }
                    let mut out = std::io::stdout().lock();
                    archive::save(&store, &recs, format, &mut out)?;
                    out.flush()?;
                }
            }
        }
        Cmd::Login {
            ref registry,
            ref username,
            ref password,
            password_stdin,
            tls_verify,
        } => {
            let registry = registry
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let username = match username {
                Some(u) => u.clone(),
                None => bail!("give the user name with -u USER"),
            };
            let password = match (password, password_stdin) {
                (Some(_), true) => bail!("--password and --password-stdin exclude each other"),
                (Some(p), false) => p.clone(),
                (None, true) => {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s.trim_end_matches(['\n', '\r']).to_string()
                }
                (None, false) => bail!("give the password with --password-stdin (or -p)"),
            };
            let creds = Credentials { username, password };
            let probe: ImageRef = format!("{registry}/pouch/login").parse()?;
            let config = load_config()?;
            let insecure = tls_verify == Some(false)
                || probe.is_loopback_registry()
                || config.insecure_registries.contains(&registry);
            pull::block_on(pouch::image::login::check(&registry, &creds, insecure))?;
            let path = auth::store(&registry, &creds).map_err(|e| anyhow!(e))?;
            println!("Login Succeeded (credentials stored in {})", path.display());
        }
        Cmd::Logout { ref registry } => {
            if auth::remove(registry).map_err(|e| anyhow!(e))? {
                println!("Removed login credentials for {registry}");
            } else {
                bail!("not logged in to {registry}");
            }
        }
        Cmd::Mount { ref image, ref dir } => {
            let store = store()?;
            let rec = find_one(&store, image)?;
            let img = store.image(&rec.descriptor)?;
            let dir = std::path::absolute(dir)?;
            let holder = dir.display().to_string();
            let chains = if img.has_tar_layers() {
                chain_ids(&img.config.rootfs.diff_ids)
            } else {
                vec![]
            };
            store.hold(&holder, &chains)?;
            match snapshot::prepare_rootfs(&store, &img, &dir) {
                Ok(p) => println!("{}", p.display()),
                Err(e) => {
                    let _ = snapshot::release_rootfs(&dir);
                    let _ = store.release(&holder);
                    return Err(e.into());
                }
            }
        }
        Cmd::Umount { ref dir } => {
            let store = store()?;
            let dir = std::path::absolute(dir)?;
            snapshot::release_rootfs(&dir)?;
            store.release(&dir.display().to_string())?;
        }
        Cmd::System { ref cmd } => {
            let store = store()?;
            match cmd {
                SystemCmd::Prune { .. } => {
                    let n = containers::prune_containers(&ctx(&cli)?);
                    if n > 0 {
                        println!("Deleted {n} stopped containers");
                    }
                    let r = store.gc(&BTreeSet::new())?;
                    println!(
                        "Deleted {} blobs, {} snapshots, {} partial downloads; reclaimed {}",
                        r.blobs,
                        r.snapshots,
                        r.partials,
                        human_size(r.bytes)
                    );
                }
                SystemCmd::Df => {
                    let blobs = snapshot::du(&store.layout_dir().join("blobs"));
                    let snaps = snapshot::du(&store.snapshots_dir());
                    let n = store.images()?.len();
                    println!("TYPE        COUNT  SIZE");
                    println!("Images      {n:<6} {}", human_size(blobs));
                    println!(
                        "Snapshots   {:<6} {}",
                        count(&store.snapshots_dir()),
                        human_size(snaps)
                    );
                }
            }
        }
    }
    Ok(0)
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
        .unwrap_or(0)
}

struct TempFile(PathBuf);
impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
fn tempfile_in(dir: &Path) -> Result<TempFile> {
    std::fs::create_dir_all(dir)?;
    Ok(TempFile(
        dir.join(format!(".stdin-{}.tar", std::process::id())),
    ))
}

fn is_name(s: &str) -> bool {
    !s.chars().all(|c| c.is_ascii_hexdigit()) || s.len() < 4
}

/// Images matching `s`: a name (normalised like Docker), or a prefix of an image ID (config
/// digest) or manifest digest (`sha256:` optional, 4 hex digits at least).
fn resolve(store: &ContentStore, s: &str) -> Result<Vec<ImageRecord>> {
    let recs = store.images()?;
    if let Ok(r) = s.parse::<ImageRef>() {
        let full = r.to_string();
        let found: Vec<_> = recs
            .iter()
            .filter(|x| x.name == full || x.name == s)
            .cloned()
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
    }
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    if hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let mut found = Vec::new();
        for x in &recs {
            let id = store
                .image(&x.descriptor)
                .map(|i| i.manifest.config.digest.hex().to_string())
                .unwrap_or_default();
            if id.starts_with(hex) || x.descriptor.digest.hex().starts_with(hex) {
                found.push(x.clone());
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
    }
    Err(pouch::image::store::StoreError::NoSuchImage(s.to_string()).into())
}

fn find_one(store: &ContentStore, s: &str) -> Result<ImageRecord> {
    let mut v = resolve(store, s)?;
    let ids: BTreeSet<_> = v.iter().map(|r| r.descriptor.digest.clone()).collect();
    if ids.len() > 1 {
        bail!(
            "{s:?} matches several images ({}): give more of the ID or a name",
            v.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(v.swap_remove(0))
}

fn human_size(b: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

fn ago(created: Option<&str>) -> String {
    let Some(c) = created else {
        return "unknown".into();
    };
    let Ok(t) =
        humantime::parse_rfc3339_weak(c.trim_end_matches('Z').split('.').next().unwrap_or(c))
    else {
        return c.to_string();
    };
    let Ok(d) = std::time::SystemTime::now().duration_since(t) else {
        return "just now".into();
    };
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} seconds ago"),
        60..=3599 => format!("{} minutes ago", s / 60),
        3600..=86399 => format!("{} hours ago", s / 3600),
        86400..=2_591_999 => format!("{} days ago", s / 86400),
        _ => format!("{} months ago", s / 2_592_000),
    }
}

fn split_name(name: &str) -> (String, String) {
    match name.parse::<ImageRef>() {
        Ok(r) => (r.name(), r.tag.unwrap_or_else(|| "<none>".into())),
        Err(_) => (name.to_string(), "<none>".into()),
    }
}

fn images(
    store: &ContentStore,
    format: ListFormat,
    quiet: bool,
    no_trunc: bool,
    digests: bool,
) -> Result<()> {
    let recs = store.images()?;
    let mut rows = Vec::new();
    for r in &recs {
        let img = match store.image(&r.descriptor) {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("image {}: {e}", r.name);
                continue;
            }
        };
        rows.push((r.clone(), img));
    }
    if quiet {
        let mut seen = BTreeSet::new();
        for (_, img) in &rows {
            let id = img.manifest.config.digest.hex().to_string();
            if seen.insert(id.clone()) {
                println!(
                    "{}",
                    if no_trunc {
                        format!("sha256:{id}")
                    } else {
                        id[..12].to_string()
                    }
                );
            }
        }
        return Ok(());
    }
    if format == ListFormat::Json {
        let v: Vec<_> = rows
            .iter()
            .map(|(r, img)| {
                let (repo, tag) = split_name(&r.name);
                serde_json::json!({
                    "Name": r.name,
                    "Repository": repo,
                    "Tag": tag,
                    "Id": img.manifest.config.digest.to_string(),
                    "Digest": r.descriptor.digest.to_string(),
                    "Created": img.config.created,
                    "Size": img.size(),
                    "Platform": r.descriptor.platform.as_ref().map(|p| p.display()),
                    "Wasm": img.is_wasm(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = write!(out, "{:<40} {:<10} ", "REPOSITORY", "TAG");
    if digests {
        let _ = write!(out, "{:<71} ", "DIGEST");
    }
    let _ = writeln!(
        out,
        "{:<12} {:<16} {:<10} PLATFORM",
        "IMAGE ID", "CREATED", "SIZE"
    );
    for (r, img) in &rows {
        let (repo, tag) = split_name(&r.name);
        let id = img.manifest.config.digest.hex();
        let _ = write!(out, "{repo:<40} {tag:<10} ");
        if digests {
            let _ = write!(out, "{:<71} ", r.descriptor.digest.to_string());
        }
        let _ = writeln!(
            out,
            "{:<12} {:<16} {:<10} {}",
            if no_trunc {
                format!("sha256:{id}")
            } else {
                id[..12].to_string()
            },
            ago(img.config.created.as_deref()),
            human_size(img.size()),
            r.descriptor
                .platform
                .as_ref()
                .map(|p| p.display())
                .unwrap_or_else(|| format!("{}/{}", img.config.os, img.config.architecture))
        );
    }
    print!("{out}");
    Ok(())
}

fn inspect_json(store: &ContentStore, rec: &ImageRecord) -> Result<serde_json::Value> {
    let img: StoredImage = store.image(&rec.descriptor)?;
    let names: Vec<String> = store
        .images()?
        .into_iter()
        .filter(|r| r.descriptor.digest == rec.descriptor.digest)
        .map(|r| r.name)
        .collect();
    let config: serde_json::Value = serde_json::from_slice(&img.config_bytes).unwrap_or_default();
    let manifest = serde_json::to_value(&img.manifest)?;
    let snaps: Vec<String> = if img.has_tar_layers() {
        chain_ids(&img.config.rootfs.diff_ids)
            .iter()
            .map(|c| {
                let p = snapshot::snapshot_path(store, c);
                format!(
                    "{}{}",
                    p.display(),
                    if p.exists() { "" } else { " (missing)" }
                )
            })
            .collect()
    } else {
        vec![]
    };
    Ok(serde_json::json!({
        "Id": img.manifest.config.digest.to_string(),
        "Digest": rec.descriptor.digest.to_string(),
        "RepoTags": names,
        "MediaType": rec.descriptor.media_type,
        "Platform": rec.descriptor.platform.as_ref().map(|p| p.display()),
        "SourceIndex": rec.descriptor.annotation(pouch::image::store::SOURCE_INDEX),
        "Created": img.config.created,
        "Size": img.size(),
        "Wasm": img.is_wasm(),
        "Manifest": manifest,
        "Config": config,
        "Snapshots": snaps,
    }))
}
