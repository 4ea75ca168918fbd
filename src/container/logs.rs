//! The json-file log, as Docker writes it: one JSON object a line,
//! `{"log":"hello\n","stream":"stdout","time":"2026-11-29T00:00:00.123456789Z"}`.
//! A line longer than 16 KiB, or output without a final newline, is cut into several entries.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// One log entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The text, newline included when there was one.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

const MAX_LINE: usize = 16 * 1024;

/// Appends entries to a container's log, splitting output into lines per stream.
pub struct LogWriter {
    file: Option<File>,
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (creating, mode 0640) the log for appending; on error logging is off (warned).
    pub fn open(path: &Path) -> LogWriter {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|e| tracing::warn!("log {}: {e}; output is not logged", path.display()))
            .ok();
        LogWriter {
            file,
            pending: [Vec::new(), Vec::new()],
        }
    }

    fn emit(&mut self, stream: &str, bytes: &[u8]) {
        let Some(f) = &mut self.file else { return };
        let e = Entry {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: stream.to_string(),
            time: super::record::now(),
        };
        let mut line = serde_json::to_vec(&e).expect("serialises");
        line.push(b'\n');
        let _ = f.write_all(&line);
    }

    /// Adds output of `stream` (`stdout`/`stderr`); complete lines are written at once.
    pub fn write(&mut self, stream: &str, data: &[u8]) {
        let i = usize::from(stream == "stderr");
        self.pending[i].extend_from_slice(data);
        loop {
            let buf = &self.pending[i];
            let cut = match buf.iter().position(|&b| b == b'\n') {
                Some(p) => p + 1,
                None if buf.len() >= MAX_LINE => MAX_LINE,
                None => break,
            };
            let chunk: Vec<u8> = self.pending[i].drain(..cut).collect();
            self.emit(stream, &chunk);
        }
    }

    /// Writes what is left of unfinished lines.
    pub fn flush(&mut self) {
        for (i, stream) in ["stdout", "stderr"].iter().enumerate() {
            if !self.pending[i].is_empty() {
                let chunk = std::mem::take(&mut self.pending[i]);
                self.emit(stream, &chunk);
            }
        }
    }
}

/// Options of `pouch logs`.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Only the last N entries.
    pub tail: Option<usize>,
    /// Only entries at or after this time (RFC 3339).
    pub since: Option<std::time::SystemTime>,
    /// Prefix each line with its time.
    pub timestamps: bool,
}

fn parse_time(s: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z').split('.').next()?)
        .ok()
        .map(|t| {
            // Keep the fraction: parse_rfc3339_weak drops nothing if given; we cut it above.
            let frac = s
                .split_once('.')
                .map(|(_, f)| f.trim_end_matches('Z'))
                .unwrap_or("");
            let nanos: u64 = format!("{frac:0<9}")[..9].parse().unwrap_or(0);
            t + std::time::Duration::from_nanos(nanos)
        })
}

/// Parses `--since`: RFC 3339, or a duration ago (`10m`, `1h30m`), or unix seconds.
pub fn parse_since(s: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(std::time::SystemTime::now() - d);
    }
    if let Ok(n) = s.parse::<f64>() {
        return Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(n));
    }
    parse_time(s).ok_or_else(|| {
        format!("--since {s:?}: use a time (2026-01-02T15:04:05Z), a duration ago (10m) or unix seconds")
    })
}

/// Writes the entries of the log at `path` to `out`/`err`, from `offset` on; returns the
/// offset after the last complete entry (to follow from).
pub fn print(
    path: &Path,
    offset: u64,
    opts: &ReadOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u64> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(offset),
        Err(e) => return Err(e),
    };
    f.seek(SeekFrom::Start(offset))?;
    let mut r = BufReader::new(f);
    let mut entries: Vec<Entry> = Vec::new();
    let mut pos = offset;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r.read_line(&mut line)?;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        pos += n as u64;
        if let Ok(e) = serde_json::from_str::<Entry>(&line) {
            if let Some(since) = opts.since {
                if parse_time(&e.time).is_some_and(|t| t < since) {
                    continue;
                }
            }
            entries.push(e);
        }
    }
    let skip = match opts.tail {
        Some(n) if offset == 0 => entries.len().saturating_sub(n),
        _ => 0,
    };
    for e in entries.into_iter().skip(skip) {
        let w: &mut dyn Write = if e.stream == "stderr" {
            &mut *err
        } else {
            &mut *out
        };
        if opts.timestamps {
            write!(w, "{} ", e.time)?;
        }
        w.write_all(e.log.as_bytes())?;
    }
    out.flush()?;
    err.flush()?;
    Ok(pos)
}
