//! An image store of one test (`Store`: private data root and auth files, `pouch` run against
//! them) and a TCP proxy in front of a registry (`Proxy`): plain and throttled, or HTTP-aware,
//! injecting faults into chosen requests (reset, error status, truncated body).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

pub fn pouch_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pouch")
}

/// A private data root plus private auth files for one test.
pub struct Store {
    pub root: tempfile::TempDir,
    pub home: tempfile::TempDir,
}

impl Store {
    pub fn new() -> Store {
        Store::with_root(tempfile::tempdir().unwrap())
    }

    /// A store whose data root is `root` (e.g. a directory a test mounts something on).
    pub fn with_root(root: tempfile::TempDir) -> Store {
        Store {
            root,
            home: tempfile::tempdir().unwrap(),
        }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(pouch_bin());
        c.arg("--data-root")
            .arg(self.root.path())
            .args(args)
            .env("POUCH_AUTH_FILE", self.home.path().join("auth.json"))
            .env("DOCKER_CONFIG", self.home.path().join("docker"))
            .env("POUCH_CONFIG", self.home.path().join("none.json"))
            .env_remove("POUCH_DATA_ROOT");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        super::run_captured(&mut self.cmd(args))
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "pouch {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Runs `pouch ARGS`, asserting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "pouch {args:?} should have failed: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    pub fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    pub fn images(&self) -> Vec<Value> {
        serde_json::from_str::<Vec<Value>>(&self.ok(&["images", "--format", "json"])).unwrap()
    }

    pub fn blobs(&self) -> Vec<String> {
        list(&self.root.path().join("oci/blobs/sha256"))
    }

    pub fn snapshots(&self) -> Vec<String> {
        list(&self.root.path().join("snapshots"))
    }

    pub fn partials(&self) -> Vec<String> {
        list(&self.root.path().join("ingest"))
    }

    /// The snapshot directories of an image, base first (all must exist).
    pub fn snapshot_dirs(&self, name: &str) -> Vec<PathBuf> {
        self.inspect(name)["Snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let s = s.as_str().unwrap();
                assert!(!s.ends_with("(missing)"), "{s}");
                PathBuf::from(s)
            })
            .collect()
    }

    /// Asserts that every blob file's content matches its name (its digest).
    pub fn assert_blobs_match_digests(&self) {
        use sha2::Digest as _;
        for b in self.blobs() {
            let data = std::fs::read(self.root.path().join("oci/blobs/sha256").join(&b)).unwrap();
            let hex: String = sha2::Sha256::digest(&data)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect();
            assert_eq!(hex, b, "blob {b} does not match its digest");
        }
    }
}

/// The names in `dir`, sorted (none if it does not exist).
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A fault the HTTP-aware proxy injects into the answer to a matching request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Relay the registry's response head and `after` bytes of its body, then reset the
    /// connection (RST: SO_LINGER 0).
    Reset { after: u64 },
    /// Answer with this HTTP status and a JSON error body, without asking the registry.
    Status(u16),
    /// Relay the head as it is (with the registry's Content-Length) and `after` bytes of the
    /// body, then close the connection normally (FIN): the body ends early.
    Truncate { after: u64 },
    /// Rewrite Content-Length (and Content-Range) to `after` bytes and send exactly those: to
    /// HTTP the body is complete, but it is shorter than the blob.
    ShortLength { after: u64 },
}

/// A request the HTTP-aware proxy saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Its Range header, if any.
    pub range: Option<String>,
    /// The fault injected into its answer, if any.
    pub fault: Option<Fault>,
}

impl Seen {
    /// The first byte a `Range: bytes=N-...` asks for (0 without a Range header).
    pub fn range_start(&self) -> u64 {
        self.range
            .as_deref()
            .and_then(|r| r.trim().strip_prefix("bytes="))
            .and_then(|r| r.split('-').next())
            .map(|n| n.trim().parse().unwrap())
            .unwrap_or(0)
    }
}

#[derive(Default)]
struct FaultState {
    /// (path substring, fault, how many times: None = always, hits so far)
    rule: Option<(String, Fault, Option<u32>, u32)>,
    seen: Vec<Seen>,
}

/// A TCP proxy in front of the registry on loopback. `start`: a plain byte relay that can slow
/// the registry's answers down. `with_faults`: HTTP-aware (one request per connection, the
/// answer carries `Connection: close`), injecting a [`Fault`] into the answers to requests
/// whose path contains a given string. Both count the bytes they relay from the registry.
/// The accepting thread ends when the proxy is dropped.
pub struct Proxy {
    pub addr: String,
    pub from_upstream: Arc<AtomicU64>,
    pub throttle: Arc<AtomicBool>,
    pub stop: Arc<AtomicBool>,
    faults: Arc<Mutex<FaultState>>,
}

impl Proxy {
    /// The plain relay, throttled (~1.6 MB/s) until `throttle` is cleared.
    pub fn start(upstream: &str) -> Proxy {
        Proxy::spawn(upstream, true, false)
    }

    /// The HTTP-aware relay with fault injection, not throttled.
    pub fn with_faults(upstream: &str) -> Proxy {
        Proxy::spawn(upstream, false, true)
    }

    /// From now on, answers to requests whose path contains `path_contains` get `fault`: the
    /// first `times` of them, or all (None). Replaces the previous rule.
    pub fn inject(&self, path_contains: &str, fault: Fault, times: Option<u32>) {
        self.faults.lock().unwrap().rule = Some((path_contains.to_string(), fault, times, 0));
    }

    /// No more faults.
    pub fn clear_faults(&self) {
        self.faults.lock().unwrap().rule = None;
    }

    /// How many answers got the current rule's fault.
    pub fn hits(&self) -> u32 {
        self.faults.lock().unwrap().rule.as_ref().map_or(0, |r| r.3)
    }

    /// The requests seen so far whose path contains `path_contains`, in order.
    pub fn requests(&self, path_contains: &str) -> Vec<Seen> {
        self.faults
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.path.contains(path_contains))
            .cloned()
            .collect()
    }

    fn spawn(upstream: &str, throttled: bool, http: bool) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let from_upstream = Arc::new(AtomicU64::new(0));
        let throttle = Arc::new(AtomicBool::new(throttled));
        let stop = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(Mutex::new(FaultState::default()));
        let (up, cnt, thr, st, fl) = (
            upstream.to_string(),
            from_upstream.clone(),
            throttle.clone(),
            stop.clone(),
            faults.clone(),
        );
        l.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let (client, _) = match l.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let server = TcpStream::connect(&up).unwrap();
                let (cnt, thr) = (cnt.clone(), thr.clone());
                if http {
                    let fl = fl.clone();
                    std::thread::spawn(move || {
                        let _ = serve_http(client, server, &cnt, &thr, &fl);
                    });
                } else {
                    relay_tcp(client, server, cnt, thr);
                }
            }
        });
        Proxy {
            addr,
            from_upstream,
            throttle,
            stop,
            faults,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The plain relay of one connection: both directions, the registry's side counted and
/// throttled.
fn relay_tcp(client: TcpStream, server: TcpStream, cnt: Arc<AtomicU64>, thr: Arc<AtomicBool>) {
    let (mut c1, mut s1) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut c1, &mut s1);
        let _ = s1.shutdown(std::net::Shutdown::Write);
    });
    let (mut c2, mut s2) = (client, server);
    std::thread::spawn(move || {
        let _ = pump(&mut s2, &mut c2, None, &cnt, &thr);
        let _ = c2.shutdown(std::net::Shutdown::Both);
    });
}

/// Copies from `from` to `to` until EOF or `limit` bytes, counting them in `cnt` and sleeping
/// between reads while `thr` is set (~1.6 MB/s). Returns the bytes copied.
fn pump(
    from: &mut dyn Read,
    to: &mut dyn Write,
    limit: Option<u64>,
    cnt: &AtomicU64,
    thr: &AtomicBool,
) -> std::io::Result<u64> {
    let mut buf = [0u8; 16384];
    let mut done = 0u64;
    loop {
        let want = match limit {
            Some(l) if l - done < buf.len() as u64 => (l - done) as usize,
            _ => buf.len(),
        };
        if want == 0 {
            return Ok(done);
        }
        let n = match from.read(&mut buf[..want]) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        cnt.fetch_add(n as u64, Ordering::SeqCst);
        to.write_all(&buf[..n])?;
        done += n as u64;
        if thr.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Reads an HTTP head (start line + headers, up to the empty line).
fn read_head(r: &mut dyn BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut start = String::new();
    if r.read_line(&mut start)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Ok((start.trim_end().to_string(), headers))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Writes a head, without hop-by-hop connection headers, plus `Connection: close`.
fn write_head(w: &mut dyn Write, start: &str, headers: &[(String, String)]) -> std::io::Result<()> {
    let mut s = format!("{start}\r\n");
    for (k, v) in headers {
        if !["connection", "keep-alive", "proxy-connection"]
            .contains(&k.to_ascii_lowercase().as_str())
        {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    s.push_str("Connection: close\r\n\r\n");
    w.write_all(s.as_bytes())
}

/// Resets a connection: SO_LINGER 0, then close (the kernel sends RST, not FIN).
fn reset(s: TcpStream) {
    use std::os::fd::AsRawFd;
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on an open socket with a pointer to a live `linger` of the right size.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &lg as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(s);
}

/// One request of one client connection (the answer says `Connection: close`, so the client
/// opens a new connection for its next request). Request bodies are forwarded by
/// Content-Length only (pulls send none).
fn serve_http(
    client: TcpStream,
    server: TcpStream,
    cnt: &AtomicU64,
    thr: &AtomicBool,
    faults: &Mutex<FaultState>,
) -> std::io::Result<()> {
    let mut creader = BufReader::new(&client);
    let (req_line, req_headers) = read_head(&mut creader)?;
    let mut parts = req_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let fault = {
        let mut st = faults.lock().unwrap();
        let fault = match &mut st.rule {
            Some((pat, f, times, hits))
                if path.contains(pat.as_str()) && times.is_none_or(|t| *hits < t) =>
            {
                *hits += 1;
                Some(*f)
            }
            _ => None,
        };
        st.seen.push(Seen {
            method: method.clone(),
            path: path.clone(),
            range: header(&req_headers, "range").map(str::to_string),
            fault,
        });
        fault
    };
    let mut client_w = &client;
    if let Some(Fault::Status(code)) = fault {
        let body = format!(
            r#"{{"errors":[{{"code":"UNKNOWN","message":"injected fault: HTTP {code}"}}]}}"#
        );
        write_head(
            &mut client_w,
            &format!("HTTP/1.1 {code} Injected Fault"),
            &[
                ("Content-Type".into(), "application/json".into()),
                ("Content-Length".into(), body.len().to_string()),
            ],
        )?;
        client_w.write_all(body.as_bytes())?;
        let _ = client.shutdown(std::net::Shutdown::Write);
        return Ok(());
    }

    // Forward the request.
    let mut server_w = &server;
    write_head(&mut server_w, &req_line, &req_headers)?;
    if let Some(n) = header(&req_headers, "content-length").and_then(|v| v.parse::<u64>().ok()) {
        std::io::copy(&mut (&mut creader).take(n), &mut server_w)?;
    }

    // Relay the answer, with the fault.
    let mut sreader = BufReader::new(&server);
    let (status_line, mut headers) = read_head(&mut sreader)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body_len = if method == "HEAD" || status == 204 || status == 304 || status < 200 {
        Some(0)
    } else {
        header(&headers, "content-length").and_then(|v| v.parse::<u64>().ok())
    };
    let fault = fault.filter(|_| (200..300).contains(&status));
    let limit = match fault {
        Some(Fault::Reset { after }) | Some(Fault::Truncate { after }) => {
            Some(body_len.map_or(after, |l| l.min(after)))
        }
        Some(Fault::ShortLength { after }) => {
            let n = body_len.map_or(after, |l| l.min(after));
            for (k, v) in headers.iter_mut() {
                if k.eq_ignore_ascii_case("content-length") {
                    *v = n.to_string();
                } else if k.eq_ignore_ascii_case("content-range") {
                    // bytes START-END/TOTAL → bytes START-(START+n-1)/TOTAL
                    if let Some((start, total)) = v
                        .strip_prefix("bytes ")
                        .and_then(|r| r.split_once('-'))
                        .and_then(|(s, rest)| {
                            Some((s.parse::<u64>().ok()?, rest.split_once('/')?.1))
                        })
                    {
                        *v = format!("bytes {start}-{}/{total}", start + n.max(1) - 1);
                    }
                }
            }
            Some(n)
        }
        _ => body_len,
    };
    write_head(&mut client_w, &status_line, &headers)?;
    pump(&mut sreader, &mut client_w, limit, cnt, thr)?;
    match fault {
        Some(Fault::Reset { .. }) => {
            drop(creader);
            reset(client);
        }
        _ => {
            let _ = client.shutdown(std::net::Shutdown::Both);
        }
    }
    Ok(())
}
