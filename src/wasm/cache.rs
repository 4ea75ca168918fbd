//! The compile cache: precompiled modules and components, keyed by the sha256 of the wasm
//! bytes and wasmtime's `precompile_compatibility_hash`, shared by every front.
//!
//! An entry is `<key>.cwasm`: wasmtime's serialized artifact followed by a trailer (the sha256
//! of the artifact and a magic). An entry is used only if it is a regular file owned by us and
//! writable by nobody else, and its hash matches: a corrupted, truncated or foreign entry is
//! ignored and replaced, never loaded. Entries are written to a temporary name and renamed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"POUCHCW1";
const TRAILER: usize = 32 + 8;

/// The default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/pouch/wasm-cache";

/// An open cache directory (a descriptor, usable after `pivot_root`).
#[derive(Debug)]
pub struct CompileCache {
    dir: OwnedFd,
}

/// The sha256 of some bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl CompileCache {
    /// Opens (creating, mode 0700) the cache directory.
    pub fn open(path: &Path) -> std::io::Result<CompileCache> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)?;
        let dir = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)?;
        Ok(CompileCache { dir })
    }

    /// The directory's descriptor (kept open by the init until the workload is loaded).
    pub fn as_raw_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.dir.as_raw_fd()
    }

    /// The entry for `key`, verified; `None` if absent, foreign or damaged.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let fd = openat(
            self.dir.as_fd(),
            format!("{key}.cwasm").as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .ok()?;
        let mut f = File::from(fd);
        let meta = f.metadata().ok()?;
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_file() || meta.uid() != me || meta.mode() & 0o022 != 0 {
            tracing::warn!("wasm cache: ignoring {key}.cwasm (not a private file of ours)");
            return None;
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        f.read_to_end(&mut data).ok()?;
        if data.len() < TRAILER || &data[data.len() - 8..] != MAGIC {
            tracing::warn!("wasm cache: ignoring {key}.cwasm (no trailer)");
            return None;
        }
        let body = data.len() - TRAILER;
        let want = &data[body..body + 32];
        if Sha256::digest(&data[..body]).as_slice() != want {
            tracing::warn!("wasm cache: ignoring {key}.cwasm (damaged: checksum mismatch)");
            return None;
        }
        data.truncate(body);
        Some(data)
    }

    /// Stores an entry atomically.
    pub fn put(&self, key: &str, artifact: &[u8]) -> std::io::Result<()> {
        let tmp = format!(".{key}.{}.tmp", std::process::id());
        let fd = openat(
            self.dir.as_fd(),
            tmp.as_str(),
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_TRUNC
                | OFlag::O_CLOEXEC
                | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(std::io::Error::from)?;
        let mut f = File::from(fd);
        let write = (|| {
            f.write_all(artifact)?;
            f.write_all(&Sha256::digest(artifact))?;
            f.write_all(MAGIC)?;
            f.sync_data()
        })();
        if let Err(e) = write.and_then(|_| {
            renameat(
                self.dir.as_fd(),
                tmp.as_str(),
                self.dir.as_fd(),
                format!("{key}.cwasm").as_str(),
            )
            .map_err(std::io::Error::from)
        }) {
            let _ = nix::unistd::unlinkat(
                self.dir.as_fd(),
                tmp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
            return Err(e);
        }
        Ok(())
    }
}

/// The number of entries and their total size in bytes.
pub fn cache_size(path: &Path) -> std::io::Result<(u64, u64)> {
    let mut n = 0;
    let mut bytes = 0;
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(".cwasm") {
                    n += 1;
                    bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                }
            }
            Ok((n, bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let c = CompileCache::open(&d.path().join("cache")).unwrap();
        assert!(c.get("k").is_none());
        c.put("k", b"artifact bytes").unwrap();
        assert_eq!(c.get("k").unwrap(), b"artifact bytes");
        // A flipped byte: ignored.
        let p = d.path().join("cache/k.cwasm");
        let mut data = std::fs::read(&p).unwrap();
        data[0] ^= 1;
        std::fs::write(&p, &data).unwrap();
        assert!(c.get("k").is_none());
        // Truncated: ignored.
        std::fs::write(&p, b"short").unwrap();
        assert!(c.get("k").is_none());
        // World-writable: not ours to trust.
        c.put("k", b"again").unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        assert!(c.get("k").is_none());
        assert_eq!(cache_size(&d.path().join("cache")).unwrap().0, 1);
    }
}
