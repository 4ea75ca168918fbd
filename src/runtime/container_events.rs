//! `events`: resource usage of a container from its cgroup, in runc's event JSON shape.

use serde_json::{json, Value};

use super::state::{ContainerDir, Status};
use super::{Error, Runtime};

impl Runtime {
    /// One `stats` event: `{"type":"stats","id":…,"data":{"cpu":…,"memory":…,"pids":…}}`.
    pub fn stats_event(&self, id: &str) -> Result<Value, Error> {
        let dir = ContainerDir::open(self, id)?;
        let rec = dir.load()?;
        if dir.status(&rec) == Status::Stopped {
            return Err(Error::WrongStatus(format!(
                "container {id:?} is stopped: no statistics"
            )));
        }
        let s = rec.cgroup()?.stats()?;
        Ok(json!({
            "type": "stats",
            "id": id,
            "data": {
                "cpu": {"usage": {"total": s.cpu_usage_ns.unwrap_or(0)}},
                "memory": {"usage": {
                    "usage": s.memory_usage.unwrap_or(0),
                    "limit": s.memory_limit.unwrap_or(u64::MAX)
                }},
                "pids": {"current": s.pids_current.unwrap_or(0), "limit": s.pids_limit.unwrap_or(0)}
            }
        }))
    }

    /// Whether the container still exists and is not stopped (for streaming `events`).
    pub fn is_live(&self, id: &str) -> bool {
        ContainerDir::open(self, id)
            .and_then(|d| d.load().map(|r| d.status(&r)))
            .is_ok_and(|s| s != Status::Stopped)
    }
}
