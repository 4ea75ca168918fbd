//! `update`: change the resource limits of a running (or created, or paused) container.

use oci_spec::runtime::LinuxResources;

use super::state::{ContainerDir, Status};
use super::{Error, Runtime};

impl Runtime {
    /// Applies `resources` to the container's cgroup.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), Error> {
        let dir = ContainerDir::open(self, id)?;
        let _lock = dir.lock()?;
        let rec = dir.load()?;
        let status = dir.status(&rec);
        if status == Status::Stopped {
            return Err(Error::WrongStatus(format!(
                "cannot update container {id:?}: it is stopped"
            )));
        }
        rec.cgroup()?.apply(resources)?;
        Ok(())
    }
}

/// Parses a size as runc does: bytes, or with a suffix k, m, g, t (powers of 1024, any case,
/// optional trailing `b`); `-1` means unlimited.
pub fn parse_size(s: &str) -> Result<i64, Error> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .filter(|n| *n >= 0.0)
        .map(|n| (n * mult as f64) as i64)
        .ok_or_else(|| {
            Error::Other(format!(
                "invalid size {s:?}: use bytes or a number with k, m, g or t"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("10kb").unwrap(), 10240);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("lots").is_err());
    }
}
