//! `list`: every container under the state root.

use super::state::{ContainerDir, ContainerState};
use super::{Error, Runtime};

impl Runtime {
    /// The states of all containers, sorted by id. Directories without a readable state
    /// (a `create` in progress or interrupted) are listed as `creating`/`stopped` by
    /// `state`, and skipped here when unreadable.
    pub fn list(&self) -> Result<Vec<ContainerState>, Error> {
        let entries = match std::fs::read_dir(self.root()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("read {}", self.root().display()), e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let Some(id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(dir) = ContainerDir::open(self, &id) else {
                continue;
            };
            if let Ok(rec) = dir.load() {
                out.push(dir.state(&rec));
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}
