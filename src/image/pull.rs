//! Pulling images from a registry with `oci-client` (tokio).
//!
//! One pull: resolve the reference to a manifest (selecting a platform from an index), store
//! the manifest and config, then fetch every layer in parallel. Each layer is written to a
//! resumable, locked download file *and* unpacked into its snapshot at the same time, so the
//! pull is done when the last byte arrives; the blob becomes visible only once its digest is
//! verified, the snapshot only once the diff ID is. Wasm modules are precompiled into the wasm
//! executor's cache on the way, so the first run is warm.

use super::auth::{self, Credentials};
use super::digest::{chain_ids, Digest};
use super::manifest::{self, Descriptor, Document, ImageConfig, Platform};
use super::reference::ImageRef;
use super::snapshot::{self, PendingSnapshot};
use super::store::{ContentStore, StoreError, StoredImage, SOURCE_INDEX};
use super::unpack::{self, Compression};
use futures_util::StreamExt;
use oci_client::client::{BlobResponse, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Errors of a pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry said no, or could not be reached.
    #[error("{0}")]
    Registry(String),
    /// The credentials were refused.
    #[error(
        "registry {registry} refused the credentials for {repository} (401 Unauthorized): {hint}"
    )]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// What to do.
        hint: String,
    },
    /// The index has no manifest for the wanted platform.
    #[error("image {reference} has no {wanted} manifest (has: {has})")]
    NoPlatform {
        /// The image.
        reference: String,
        /// What was asked.
        wanted: String,
        /// What there is.
        has: String,
    },
    /// A document is unusable.
    #[error(transparent)]
    Document(#[from] manifest::ManifestError),
    /// Storing failed (including digest mismatches).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unpacking failed.
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    /// Anything else, said in words.
    #[error("{0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, PullError>;

/// A wanted platform: `os/arch[/variant]`; `wasi/wasm` matches `wasi`, `wasip1` and `wasip2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformSpec {
    /// OS.
    pub os: String,
    /// Architecture.
    pub architecture: String,
    /// Variant, if asked.
    pub variant: Option<String>,
}

impl std::str::FromStr for PlatformSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<PlatformSpec, String> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: parts.get(2).map(|v| v.to_string()).filter(|v| !v.is_empty()),
            }),
            _ => Err(format!(
                "platform {s:?} must be os/arch[/variant], e.g. linux/amd64, linux/arm64/v8 or wasi/wasm"
            )),
        }
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl PlatformSpec {
    /// This host's platform (`linux/amd64` here).
    pub fn host() -> PlatformSpec {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            a => a,
        };
        PlatformSpec {
            os: "linux".into(),
            architecture: arch.into(),
            variant: None,
        }
    }

    fn is_wasm(&self) -> bool {
        manifest::is_wasm_platform(&self.os, &self.architecture)
    }

    /// Whether `p` satisfies this spec.
    pub fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if self.is_wasm() {
            return manifest::is_wasm_platform(os, arch);
        }
        os == self.os
            && arch == self.architecture
            && match (&self.variant, variant) {
                (Some(w), Some(v)) => w == v,
                (Some(_), None) => false,
                (None, _) => true,
            }
    }
}

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The platform to select from an index (default: the host's).
    pub platform: Option<PlatformSpec>,
    /// `Some(false)`: plain HTTP and unverified TLS allowed for this registry (loopback
    /// registries always are, as in Docker).
    pub tls_verify: Option<bool>,
    /// Registries listed as insecure in the configuration.
    pub insecure_registries: Vec<String>,
    /// Credentials given on the command line (else the auth files are read).
    pub credentials: Option<Credentials>,
    /// Progress bars on stderr (when it is a terminal), else one line per blob.
    pub progress: bool,
    /// Layers fetched at once.
    pub parallel: usize,
    /// Attempts per request (manifest, config, layer) before giving up; the pause between
    /// two doubles each time (0.4 s, 0.8 s, 1.6 s, ...).
    pub attempts: u32,
    /// The wasm executor's compile cache to precompile into (None: do not precompile).
    pub wasm_cache: Option<PathBuf>,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            platform: None,
            tls_verify: None,
            insecure_registries: vec![],
            credentials: None,
            progress: false,
            parallel: 4,
            attempts: 4,
            wasm_cache: None,
        }
    }
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct PullResult {
    /// The name recorded in the store.
    pub name: String,
    /// The manifest that was selected.
    pub manifest: Descriptor,
    /// The index it was selected from, if any.
    pub index: Option<Digest>,
    /// Blobs downloaded (not already present).
    pub downloaded: usize,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Wasm modules precompiled.
    pub precompiled: usize,
}

/// A registry connection: client, auth, scheme.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    reference: ImageRef,
    insecure: bool,
    parallel: usize,
    attempts: u32,
    http: bool,
    /// A request succeeded on the current scheme: no more switching.
    settled: bool,
}

/// Installs rustls' crypto provider (ring) once per process; reqwest needs one before it
/// builds a client.
pub fn init_tls() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn client_for(insecure: bool, http: bool, parallel: usize) -> Client {
    init_tls();
    Client::new(ClientConfig {
        protocol: if http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        accept_invalid_certificates: insecure,
        platform_resolver: None,
        max_concurrent_download: parallel.max(1),
        max_concurrent_upload: parallel.max(1),
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(60)),
        user_agent: concat!("pouch/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    })
}

/// An error and its causes, `a: b: c` (the body errors of reqwest say why only in their causes),
/// each cause said once.
fn describe(e: &dyn std::error::Error) -> String {
    crate::errors::chain(e)
}

/// What a failed request is worth: whether, and how often, it is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// No answer, an answer cut short, 5xx, 408, 429: tried again, up to the attempts.
    Transient,
    /// A whole answer that does not match its digest: tried once more (a garbled answer does
    /// not repeat; a registry that stores a corrupt blob says the same every time).
    Corrupt,
    /// Refused (401, 403), missing (404) or otherwise said for good: not tried again.
    Permanent,
}

/// What a client error is worth retrying.
fn classify(e: &OciDistributionError) -> Failure {
    use oci_client::errors::OciErrorCode;
    use OciDistributionError as E;
    match e {
        E::RequestError(r) if r.is_builder() => Failure::Permanent,
        E::RequestError(_) | E::IoError(_) => Failure::Transient,
        E::ServerError { code, .. } if *code >= 500 || *code == 408 || *code == 429 => {
            Failure::Transient
        }
        E::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|x| x.code == OciErrorCode::Toomanyrequests) =>
        {
            Failure::Transient
        }
        E::DigestError(_) => Failure::Corrupt,
        _ => Failure::Permanent,
    }
}

/// The retry policy of every request of a pull (manifests, config, layers): `attempts` tries
/// of a [`Failure::Transient`] failure, two of a [`Failure::Corrupt`] one, one of a
/// [`Failure::Permanent`] one, with a pause that doubles between two.
struct Retries {
    attempt: u32,
    attempts: u32,
    corrupt: bool,
}

impl Retries {
    fn new(attempts: u32) -> Retries {
        Retries {
            attempt: 0,
            attempts: attempts.max(1),
            corrupt: false,
        }
    }

    /// Starts an attempt.
    fn start(&mut self) {
        self.attempt += 1;
    }

    /// After a failed attempt: pauses and returns `Ok` if another attempt is due, else the
    /// error to report (saying how many attempts were made, if more than one).
    async fn failed(&mut self, err: PullError, failure: Failure) -> Result<()> {
        let again = match failure {
            Failure::Transient => true,
            Failure::Corrupt => !std::mem::replace(&mut self.corrupt, true),
            Failure::Permanent => false,
        };
        if !again || self.attempt >= self.attempts {
            return Err(match err {
                PullError::Registry(m) if self.attempt > 1 => {
                    PullError::Registry(format!("{m} (gave up after {} attempts)", self.attempt))
                }
                e => e,
            });
        }
        tracing::warn!("{err}; retrying ({}/{})", self.attempt, self.attempts);
        tokio::time::sleep(Duration::from_millis(200 * (1 << self.attempt.min(5)))).await;
        Ok(())
    }
}

/// Whether a client error means no HTTP answer came at all (refused, TLS failed, garbage
/// instead of a status line), as when the scheme is the wrong one; not an answer cut short.
fn no_answer(e: &OciDistributionError) -> bool {
    matches!(e, OciDistributionError::RequestError(r) if !r.is_body() && !r.is_decode())
}

impl Registry {
    /// Connects (lazily) to the registry of `reference` with the options' credentials and
    /// TLS policy.
    pub fn new(reference: &ImageRef, opts: &PullOptions) -> Result<Registry> {
        let insecure = opts.tls_verify == Some(false)
            || reference.is_loopback_registry()
            || opts.insecure_registries.contains(&reference.registry);
        let creds = match &opts.credentials {
            Some(c) => Some(c.clone()),
            None => auth::lookup(&reference.registry).map_err(PullError::Other)?,
        };
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        // Plain HTTP on loopback is no exposure, and it is what local registries speak: try it
        // first there (saving a failed TLS handshake); other insecure registries get HTTPS
        // first, as in Docker.
        let http = reference.is_loopback_registry();
        Ok(Registry {
            client: client_for(insecure, http, opts.parallel),
            auth,
            reference: reference.clone(),
            insecure,
            parallel: opts.parallel,
            attempts: opts.attempts.max(1),
            http,
            settled: false,
        })
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The auth in use.
    pub fn auth(&self) -> &RegistryAuth {
        &self.auth
    }

    /// Settles plain HTTP vs HTTPS and authenticates for a push to `reference`.
    pub async fn probe_for_push(&mut self, reference: &ImageRef) -> Result<()> {
        let r = reference.to_client();
        let op = oci_client::RegistryOperation::Push;
        let auth = self.auth.clone();
        let res = self
            .on_either_scheme(async |c: &Client| c.auth(&r, &auth, op).await)
            .await;
        res.map(|_| ()).map_err(|e| self.map_err(e, "authenticate"))
    }

    /// Runs a request. For an insecure registry on which no request succeeded yet, a request
    /// that got no answer at all is tried once with the other scheme (HTTP after HTTPS, or
    /// HTTPS after HTTP): the scheme that answers is kept; if neither does, the first one is,
    /// and the first one's error returned (a retry tries both again). A request that got an
    /// answer cut short is not switched: that scheme works.
    async fn on_either_scheme<T>(
        &mut self,
        op: impl AsyncFn(&Client) -> std::result::Result<T, OciDistributionError>,
    ) -> std::result::Result<T, OciDistributionError> {
        let first = op(&self.client).await;
        let switch = match &first {
            Ok(_) => {
                self.settled = true;
                false
            }
            Err(e) => {
                // Any HTTP answer (a 404, a 401) shows the scheme works: keep it for good.
                if !matches!(
                    e,
                    OciDistributionError::RequestError(_) | OciDistributionError::IoError(_)
                ) {
                    self.settled = true;
                }
                self.insecure && !self.settled && no_answer(e)
            }
        };
        if !switch {
            return first;
        }
        self.use_scheme(!self.http);
        let other = op(&self.client).await;
        match &other {
            Ok(_) => self.settled = true,
            Err(e) if no_answer(e) => {
                self.use_scheme(!self.http);
                return first;
            }
            Err(_) => {}
        }
        other
    }

    /// Talks plain HTTP (`true`) or HTTPS from now on (an insecure registry: certificates are
    /// not verified).
    fn use_scheme(&mut self, http: bool) {
        self.http = http;
        tracing::debug!(
            registry = %self.reference.registry,
            "no answer; trying {} (insecure registry)",
            if self.http { "plain HTTP" } else { "HTTPS" }
        );
        self.client = client_for(true, self.http, self.parallel);
    }

    /// Turns a client error into ours (401 becomes a credentials hint).
    pub fn error(&self, e: oci_client::errors::OciDistributionError, what: &str) -> PullError {
        self.map_err(e, what)
    }

    fn map_err(&self, e: oci_client::errors::OciDistributionError, what: &str) -> PullError {
        use oci_client::errors::OciDistributionError as E;
        match &e {
            E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => PullError::Unauthorized {
                registry: self.reference.registry.clone(),
                repository: self.reference.repository.clone(),
                hint: if matches!(self.auth, RegistryAuth::Anonymous) {
                    format!(
                        "it needs credentials: run `pouch login {}` or pass --creds USER:PASSWORD",
                        self.reference.registry
                    )
                } else {
                    format!(
                        "check the user name and password (`pouch login {}` stores new ones)",
                        self.reference.registry
                    )
                },
            },
            _ => PullError::Registry(format!(
                "{what} from {}: {}",
                self.reference.registry,
                describe(&e)
            )),
        }
    }

    /// Fetches a manifest or index (raw bytes, verified against `expected` if given), retried
    /// as [`Retries`] says. For an insecure registry an attempt that gets no answer is tried
    /// with the other scheme too.
    pub async fn fetch_manifest(
        &mut self,
        reference: &ImageRef,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, Digest)> {
        let r = reference.to_client();
        let auth = self.auth.clone();
        let what = format!("manifest {reference}");
        let mut retries = Retries::new(self.attempts);
        loop {
            retries.start();
            let res = self
                .on_either_scheme(async |c: &Client| {
                    c.pull_manifest_raw(&r, &auth, manifest::MANIFEST_ACCEPT)
                        .await
                })
                .await;
            let (err, failure) = match res {
                Ok((bytes, _)) => {
                    let actual = Digest::of(&bytes);
                    match expected {
                        Some(e) if *e != actual => {
                            let mismatch = StoreError::DigestMismatch {
                                expected: e.clone(),
                                actual,
                                size: bytes.len() as u64,
                            };
                            (
                                PullError::Registry(format!(
                                    "{what} from {}: {mismatch}",
                                    self.reference.registry
                                )),
                                Failure::Corrupt,
                            )
                        }
                        _ => return Ok((bytes.to_vec(), actual)),
                    }
                }
                Err(e) => {
                    let failure = classify(&e);
                    (self.map_err(e, &what), failure)
                }
            };
            retries.failed(err, failure).await?;
        }
    }

    /// Fetches a small blob whole (the config), retried as [`Retries`] says; verified against
    /// its digest by the client.
    async fn fetch_small_blob(
        &self,
        reference: &ImageRef,
        what: &str,
        desc: &Descriptor,
    ) -> Result<Vec<u8>> {
        let r = reference.to_client();
        let cdesc = to_client_desc(desc);
        let what = format!("{what} {}", desc.digest);
        if desc.size > MAX_SMALL_BLOB {
            return Err(PullError::Registry(format!(
                "{what} of {reference}: the manifest says it is {} bytes, more than the {} MiB \
                 such a blob may have; refusing it (a broken or hostile image)",
                desc.size,
                MAX_SMALL_BLOB >> 20
            )));
        }
        let mut retries = Retries::new(self.attempts);
        loop {
            retries.start();
            let mut buf = Bounded {
                buf: Vec::with_capacity(desc.size as usize),
                limit: desc.size as usize,
            };
            let got = self.client.pull_blob(&r, &cdesc, &mut buf).await;
            let buf = buf.buf;
            let (err, failure) = match got {
                Ok(()) => return Ok(buf),
                // A digest that does not match an answer of the wrong size: cut short (as a
                // layer's short answer, tried again), not corrupt.
                Err(OciDistributionError::DigestError(_)) if buf.len() as u64 != desc.size => (
                    PullError::Registry(format!(
                        "{what} from {}: the answer had {} of {} bytes",
                        self.reference.registry,
                        buf.len(),
                        desc.size
                    )),
                    Failure::Transient,
                ),
                Err(e) => {
                    let failure = classify(&e);
                    (self.map_err(e, &what), failure)
                }
            };
            retries.failed(err, failure).await?;
        }
    }
}

/// The most a blob fetched whole into memory (an image config) may have.
const MAX_SMALL_BLOB: u64 = 32 << 20;

/// An in-memory sink that refuses to grow past `limit` bytes (a registry sending more than the
/// descriptor's size gets an error, not our memory).
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.buf.len() + data.len() > self.limit {
            return std::task::Poll::Ready(Err(std::io::Error::other(format!(
                "the registry sent more than the {} bytes the descriptor announced",
                self.limit
            ))));
        }
        self.buf.extend_from_slice(data);
        std::task::Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn to_client_desc(d: &Descriptor) -> oci_client::manifest::OciDescriptor {
    oci_client::manifest::OciDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.to_string(),
        size: d.size as i64,
        ..Default::default()
    }
}

fn platform_of(p: &Option<Platform>) -> String {
    p.as_ref()
        .map(|p| p.display())
        .unwrap_or_else(|| "unknown".into())
}

/// Picks the manifest of `want` from an index.
pub fn select_platform<'a>(
    reference: &str,
    index: &'a manifest::Index,
    want: &PlatformSpec,
) -> Result<&'a Descriptor> {
    index
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| want.matches(&p.os, &p.architecture, p.variant.as_deref()))
        })
        .ok_or_else(|| PullError::NoPlatform {
            reference: reference.to_string(),
            wanted: want.to_string(),
            has: index
                .manifests
                .iter()
                .map(|d| platform_of(&d.platform))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Progress reporting: bars on a terminal, lines otherwise, nothing when quiet.
#[derive(Clone)]
struct Progress {
    multi: Option<indicatif::MultiProgress>,
    lines: bool,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        use std::io::IsTerminal;
        let tty = std::io::stderr().is_terminal();
        Progress {
            multi: (enabled && tty).then(indicatif::MultiProgress::new),
            lines: enabled && !tty,
        }
    }

    fn bar(&self, what: &str, size: u64) -> Option<indicatif::ProgressBar> {
        let m = self.multi.as_ref()?;
        let pb = m.add(indicatif::ProgressBar::new(size));
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        pb.set_prefix(what.to_string());
        Some(pb)
    }

    fn line(&self, s: &str) {
        if self.lines {
            eprintln!("{s}");
        }
    }
}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

/// Blocks on a future in a fresh tokio runtime (the `pouch` CLI is synchronous elsewhere).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Pulls `reference` into `store`.
pub async fn pull(
    store: &ContentStore,
    reference: &ImageRef,
    opts: &PullOptions,
) -> Result<PullResult> {
    let _writer = store.lock_writer()?;
    let mut reg = Registry::new(reference, opts)?;
    let progress = Progress::new(opts.progress);
    let (bytes, digest) = reg
        .fetch_manifest(reference, reference.digest.as_ref())
        .await?;
    let what = format!("manifest of {reference}");
    let want = opts.platform.clone().unwrap_or_else(PlatformSpec::host);
    let (mdesc, mbytes, index) = match manifest::parse_document(&bytes, None, &what)? {
        Document::Index(ix) => {
            store.put_blob(&bytes, Some(&digest))?;
            let chosen = select_platform(&reference.to_string(), &ix, &want)?.clone();
            let (mb, md) = reg
                .fetch_manifest(&reference.with_digest(&chosen.digest), Some(&chosen.digest))
                .await?;
            let mut d = Descriptor::new(
                if chosen.media_type.is_empty() {
                    manifest::OCI_MANIFEST
                } else {
                    &chosen.media_type
                },
                md,
                mb.len() as u64,
            );
            d.platform = chosen.platform.clone();
            (d, mb, Some(digest))
        }
        Document::Manifest(m) => {
            let mt = m
                .media_type
                .clone()
                .unwrap_or_else(|| manifest::OCI_MANIFEST.into());
            (
                Descriptor::new(&mt, digest, bytes.len() as u64),
                bytes,
                None,
            )
        }
    };
    let m = match manifest::parse_document(&mbytes, Some(&mdesc.media_type), &what)? {
        Document::Manifest(m) => *m,
        Document::Index(_) => {
            return Err(PullError::Other(format!(
                "{reference}: an index lists another index as a platform manifest; nested indexes are not supported"
            )))
        }
    };
    // Config: small, fetched whole, verified before it is stored.
    let mut downloaded = 0;
    let mut total = 0u64;
    if !store.has_blob(&m.config.digest) {
        let buf = reg.fetch_small_blob(reference, "config", &m.config).await?;
        store.put_blob(&buf, Some(&m.config.digest))?;
        downloaded += 1;
        total += buf.len() as u64;
    }
    let config_bytes = store.read_blob(&m.config.digest)?;
    let config: ImageConfig = if m.config.media_type == manifest::WASM_CONFIG {
        serde_json::from_slice(&config_bytes).unwrap_or_default()
    } else {
        serde_json::from_slice(&config_bytes).map_err(|source| manifest::ManifestError::Json {
            what: format!("image config {}", m.config.digest),
            source,
        })?
    };
    if index.is_none() {
        if let Some(p) = &opts.platform {
            if !config.os.is_empty()
                && !p.matches(&config.os, &config.architecture, config.variant.as_deref())
            {
                return Err(PullError::NoPlatform {
                    reference: reference.to_string(),
                    wanted: p.to_string(),
                    has: format!(
                        "{}/{} (a single-platform image)",
                        config.os, config.architecture
                    ),
                });
            }
        }
    }
    let mut mdesc = mdesc;
    if mdesc.platform.is_none() && !config.os.is_empty() {
        mdesc.platform = Some(Platform {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            variant: config.variant.clone(),
            other: Default::default(),
        });
    }
    store.put_blob(&mbytes, Some(&mdesc.digest))?;

    let is_artifact = m
        .layers
        .iter()
        .any(|l| manifest::WASM_LAYERS.contains(&l.media_type.as_str()));
    // Tar layers are unpacked while they download; the config's diff IDs name the snapshots.
    let unpack_plan: Vec<Option<(Digest, Digest)>> = if is_artifact {
        vec![None; m.layers.len()]
    } else {
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(snapshot::SnapshotError::LayerCount(
                mdesc.digest.clone(),
                m.layers.len(),
                config.rootfs.diff_ids.len(),
            )
            .into());
        }
        let chains = chain_ids(&config.rootfs.diff_ids);
        config
            .rootfs
            .diff_ids
            .iter()
            .cloned()
            .zip(chains)
            .map(Some)
            .collect()
    };

    let reg = Arc::new(reg);
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for (layer, plan) in m.layers.iter().cloned().zip(unpack_plan) {
        let (reg, sem, store, progress) =
            (reg.clone(), sem.clone(), store.clone(), progress.clone());
        let attempts = opts.attempts.max(1);
        let reference = reference.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            fetch_layer(&reg, &store, &reference, &layer, plan, attempts, &progress).await
        });
    }
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(n)) => {
                if n > 0 {
                    downloaded += 1;
                    total += n;
                }
            }
            // The other layers go on: what arrives intact is kept for the next pull.
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                first_err.get_or_insert(PullError::Other(format!("layer task failed: {e}")));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }

    let image = StoredImage {
        manifest_descriptor: mdesc.clone(),
        manifest: m.clone(),
        config_bytes,
        config,
    };
    let precompiled = match &opts.wasm_cache {
        Some(cache) if image.is_wasm() => {
            let (store2, image2, cache2) = (store.clone(), image.clone(), cache.clone());
            tokio::task::spawn_blocking(move || precompile_image(&store2, &image2, &cache2))
                .await
                .map_err(|e| PullError::Other(format!("precompile task: {e}")))??
        }
        _ => 0,
    };

    let name = match (&reference.tag, &reference.digest) {
        (Some(_), _) => reference.to_string(),
        (None, Some(_)) => reference.to_string(),
        (None, None) => reference.to_string(),
    };
    let mut recorded = mdesc.clone();
    if let Some(ix) = &index {
        recorded
            .annotations
            .get_or_insert_with(Default::default)
            .insert(SOURCE_INDEX.to_string(), ix.to_string());
    }
    store.set_image(&name, &recorded)?;
    progress.line(&format!("Writing manifest to image destination: {name}"));
    Ok(PullResult {
        name,
        manifest: mdesc,
        index,
        downloaded,
        bytes: total,
        precompiled,
    })
}

/// Feeds the unpacking thread; its reader side blocks on the channel.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    cur: bytes::Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        bytes::Buf::advance(&mut self.cur, n);
        Ok(n)
    }
}

/// Downloads one layer (resuming, retrying) and unpacks it on the way when `plan` says so.
/// Returns the bytes downloaded (0 if it was present).
async fn fetch_layer(
    reg: &Registry,
    store: &ContentStore,
    reference: &ImageRef,
    layer: &Descriptor,
    plan: Option<(Digest, Digest)>,
    attempts: u32,
    progress: &Progress,
) -> Result<u64> {
    let need_snapshot = plan
        .as_ref()
        .filter(|(_, chain)| !snapshot::snapshot_path(store, chain).exists());
    let ingest = {
        let store = store.clone();
        let (d, s) = (layer.digest.clone(), layer.size);
        tokio::task::spawn_blocking(move || store.ingest(&d, Some(s)))
            .await
            .map_err(|e| PullError::Other(e.to_string()))??
    };
    let Some(mut ingest) = ingest else {
        progress.line(&format!(
            "Copying blob {} skipped: already exists",
            short(&layer.digest)
        ));
        if let Some((diff_id, chain)) = need_snapshot.cloned() {
            let (store, layer) = (store.clone(), layer.clone());
            tokio::task::spawn_blocking(move || {
                snapshot::unpack_blob(&store, &layer, &diff_id, &chain)
            })
            .await
            .map_err(|e| PullError::Other(e.to_string()))??;
        }
        return Ok(0);
    };

    // The unpacking thread reads what was already downloaded, then the network.
    let mut unpacker = None;
    if let Some((diff_id, chain)) = need_snapshot.cloned() {
        let compression = snapshot::layer_compression(&layer.digest, &layer.media_type)?;
        let pending = PendingSnapshot::new(store, &chain)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
        let existing = ingest.existing()?;
        let ldigest = layer.digest.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let reader = std::io::Read::chain(
                existing,
                ChannelReader {
                    rx,
                    cur: bytes::Bytes::new(),
                },
            );
            let mut reader = std::io::BufReader::with_capacity(256 << 10, reader);
            let compression = match compression {
                Some(c) => c,
                None => {
                    let head = std::io::BufRead::fill_buf(&mut reader).unwrap_or(&[]);
                    Compression::sniff(head)
                }
            };
            let r = unpack::unpack_layer(&mut reader, compression, pending.dir());
            // Drain, so the sender never blocks on a reader that stopped early.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
            match r {
                Ok(stats) if stats.diff_id == diff_id => Ok(pending),
                Ok(stats) => Err(PullError::Snapshot(snapshot::SnapshotError::DiffId {
                    layer: ldigest,
                    expected: diff_id,
                    actual: stats.diff_id,
                })),
                Err(source) => Err(PullError::Snapshot(snapshot::SnapshotError::Unpack {
                    layer: ldigest,
                    source,
                })),
            }
        });
        unpacker = Some((tx, handle));
    }

    let bar = progress.bar(short(&layer.digest), layer.size);
    if let Some(b) = &bar {
        b.set_position(ingest.offset());
    }
    let start_offset = ingest.offset();
    let r = download(
        reg,
        reference,
        layer,
        &mut ingest,
        unpacker.as_ref().map(|u| &u.0),
        attempts,
        bar.as_ref(),
    )
    .await;
    let result = match r {
        Ok(()) => {
            let commit = tokio::task::block_in_place(|| ingest.commit());
            commit.map_err(PullError::from)
        }
        Err(e) => Err(e),
    };
    // Close the channel, then hear what the unpacker says.
    let unpacked = match unpacker {
        Some((tx, handle)) => {
            drop(tx);
            Some(handle.await.map_err(|e| PullError::Other(e.to_string()))?)
        }
        None => None,
    };
    result?;
    if let Some(u) = unpacked {
        let pending = u?;
        tokio::task::block_in_place(|| pending.commit())?;
    }
    if let Some(b) = bar {
        b.finish_with_message("done");
    }
    progress.line(&format!("Copying blob {} done", short(&layer.digest)));
    Ok(layer.size - start_offset)
}

/// Streams the rest of a blob into `ingest` (and `tx`), retrying from where it stopped.
async fn download(
    reg: &Registry,
    reference: &ImageRef,
    layer: &Descriptor,
    ingest: &mut super::store::Ingest,
    tx: Option<&tokio::sync::mpsc::Sender<bytes::Bytes>>,
    attempts: u32,
    bar: Option<&indicatif::ProgressBar>,
) -> Result<()> {
    let r = reference.to_client();
    let desc = to_client_desc(layer);
    let mut retries = Retries::new(attempts);
    loop {
        retries.start();
        let offset = ingest.offset();
        if offset == layer.size {
            return Ok(());
        }
        let resp = reg
            .client
            .pull_blob_stream_partial(&r, &desc, offset, None)
            .await;
        let (err, failure) = match resp {
            Ok(resp) => {
                let (mut stream, mut skip) = match resp {
                    BlobResponse::Partial(s) => (s, 0u64),
                    // The server ignored the range: skip what we already have.
                    BlobResponse::Full(s) => (s, offset),
                };
                let mut failed = None;
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(mut b) => {
                            if skip > 0 {
                                let n = (skip as usize).min(b.len());
                                bytes::Buf::advance(&mut b, n);
                                skip -= n as u64;
                                if b.is_empty() {
                                    continue;
                                }
                            }
                            if ingest.offset() + b.len() as u64 > layer.size {
                                failed = Some(PullError::Store(StoreError::SizeMismatch {
                                    digest: layer.digest.clone(),
                                    expected: layer.size,
                                    actual: ingest.offset() + b.len() as u64,
                                }));
                                break;
                            }
                            // Say which blob of which image could not be stored (e.g. the
                            // disk is full): the partial file's name alone does not.
                            ingest.write(&b).map_err(|e| {
                                PullError::Other(format!(
                                    "blob {} of {reference}: {e}",
                                    layer.digest
                                ))
                            })?;
                            if let Some(bar) = bar {
                                bar.inc(b.len() as u64);
                            }
                            if let Some(tx) = tx {
                                // A closed channel means the unpacker failed; it reports why.
                                if tx.send(b).await.is_err() {
                                    return Ok(());
                                }
                            }
                        }
                        Err(e) => {
                            failed = Some(PullError::Registry(format!(
                                "blob {} from {}: {}",
                                layer.digest,
                                reference.registry,
                                describe(&e)
                            )));
                            break;
                        }
                    }
                }
                match failed {
                    None if ingest.offset() == layer.size => return Ok(()),
                    None => (
                        PullError::Registry(format!(
                            "blob {} from {}: the answer ended after {} of {} bytes",
                            layer.digest,
                            reference.registry,
                            ingest.offset(),
                            layer.size
                        )),
                        Failure::Transient,
                    ),
                    // More bytes than the blob has.
                    Some(e @ PullError::Store(_)) => (e, Failure::Permanent),
                    Some(e) => (e, Failure::Transient),
                }
            }
            Err(e) => {
                let failure = classify(&e);
                (reg.map_err(e, &format!("blob {}", layer.digest)), failure)
            }
        };
        retries.failed(err, failure).await?;
    }
}

/// Precompiles the wasm modules of a stored image into the wasm executor's cache: the raw
/// wasm layers of an artifact, or the entrypoint of a wasm image found in its snapshots.
pub fn precompile_image(
    store: &ContentStore,
    image: &StoredImage,
    cache_dir: &Path,
) -> Result<usize> {
    let mut modules: Vec<Vec<u8>> = Vec::new();
    for l in &image.manifest.layers {
        if manifest::WASM_LAYERS.contains(&l.media_type.as_str()) {
            modules.push(store.read_blob(&l.digest)?);
        }
    }
    if modules.is_empty() && image.has_tar_layers() {
        if let Some(entry) = entrypoint(&image.config) {
            let snaps = snapshot::ensure_snapshots(store, image)?;
            if let Some(bytes) = find_in_snapshots(&snaps, &entry) {
                if bytes.starts_with(b"\0asm") {
                    modules.push(bytes);
                }
            }
        }
    }
    let cache = crate::wasm::cache::CompileCache::open(cache_dir)
        .map_err(|e| PullError::Other(format!("wasm cache {}: {e}", cache_dir.display())))?;
    let mut n = 0;
    for m in modules {
        crate::wasm::precompile(&cache, &m).map_err(PullError::Other)?;
        n += 1;
    }
    Ok(n)
}

fn entrypoint(config: &ImageConfig) -> Option<String> {
    let c = config.config.as_ref()?;
    c.entrypoint
        .as_ref()
        .and_then(|e| e.first())
        .or_else(|| c.cmd.as_ref().and_then(|c| c.first()))
        .cloned()
}

/// Reads `path` (absolute in the image) from the topmost snapshot that has it, without
/// following symlinks out of the snapshot; a whiteout hides it.
fn find_in_snapshots(snaps: &[PathBuf], path: &str) -> Option<Vec<u8>> {
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    for s in snaps.iter().rev() {
        let p = s.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_file() => return std::fs::read(&p).ok(),
            Ok(_) => return None,
            Err(_) => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://r/v2/x/manifests/1".into(),
            message: String::new(),
        }
    }

    fn envelope(code: &str) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: serde_json::from_str(&format!(
                r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#
            ))
            .unwrap(),
            url: "http://r/v2/x/manifests/1".into(),
        }
    }

    #[test]
    fn image_pull_failures_are_classified() {
        for code in [500, 502, 503, 408, 429] {
            assert_eq!(classify(&server(code)), Failure::Transient, "{code}");
        }
        for code in [400, 403, 404, 405] {
            assert_eq!(classify(&server(code)), Failure::Permanent, "{code}");
        }
        assert_eq!(classify(&envelope("TOOMANYREQUESTS")), Failure::Transient);
        for code in ["MANIFEST_UNKNOWN", "DENIED", "NAME_UNKNOWN", "UNKNOWN"] {
            assert_eq!(classify(&envelope(code)), Failure::Permanent, "{code}");
        }
        let unauthorized = OciDistributionError::UnauthorizedError { url: "u".into() };
        assert_eq!(classify(&unauthorized), Failure::Permanent);
        let mismatch =
            OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
                expected: "sha256:a".into(),
                actual: "sha256:b".into(),
            });
        assert_eq!(classify(&mismatch), Failure::Corrupt);
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(classify(&io.into()), Failure::Transient);
    }

    #[test]
    fn a_small_blob_cannot_grow_past_its_descriptor() {
        use tokio::io::AsyncWriteExt;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut b = Bounded {
                buf: Vec::new(),
                limit: 5,
            };
            b.write_all(b"abc").await.unwrap();
            b.write_all(b"de").await.unwrap();
            let e = b.write_all(b"f").await.unwrap_err();
            assert!(e.to_string().contains("more than the 5 bytes"), "{e}");
            assert_eq!(b.buf, b"abcde");
        });
    }

    #[test]
    fn image_pull_retries_follow_the_policy() {
        block_on(async {
            let err = || PullError::Registry("manifest x from r: boom".into());
            // Permanent: given up at once, the message as it was.
            let mut r = Retries::new(4);
            r.start();
            let e = r.failed(err(), Failure::Permanent).await.unwrap_err();
            assert_eq!(e.to_string(), "manifest x from r: boom");

            // Corrupt: tried once more, then given up, saying so.
            let mut r = Retries::new(4);
            r.start();
            r.failed(err(), Failure::Corrupt).await.unwrap();
            r.start();
            let e = r.failed(err(), Failure::Corrupt).await.unwrap_err();
            assert_eq!(
                e.to_string(),
                "manifest x from r: boom (gave up after 2 attempts)"
            );

            // Transient: up to the attempts (one attempt: no pause, no retry).
            let mut r = Retries::new(1);
            r.start();
            let e = r.failed(err(), Failure::Transient).await.unwrap_err();
            assert_eq!(e.to_string(), "manifest x from r: boom");
            // Other errors keep their type.
            let mut r = Retries::new(1);
            r.start();
            let e = r
                .failed(PullError::Other("x".into()), Failure::Transient)
                .await
                .unwrap_err();
            assert!(matches!(e, PullError::Other(_)));
        });
    }
}
