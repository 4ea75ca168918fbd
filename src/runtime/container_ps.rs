//! `ps`: the processes of a container.

use std::process::Command;

use super::state::{ContainerDir, Status};
use super::{Error, Runtime};

impl Runtime {
    /// The pids (in the runtime's pid namespace) of every process in the container's cgroup.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, Error> {
        let dir = ContainerDir::open(self, id)?;
        let rec = dir.load()?;
        if dir.status(&rec) == Status::Stopped {
            return Ok(Vec::new());
        }
        let mut pids: Vec<i32> = rec
            .cgroup()?
            .pids()?
            .into_iter()
            .map(|p| p.as_raw())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// `ps` (with `ps_args`, default `-ef`) filtered to the container's processes: the header
    /// line, then each line whose PID column is one of the container's.
    pub fn ps_table(&self, id: &str, ps_args: &[String]) -> Result<String, Error> {
        let pids = self.pids(id)?;
        let args: Vec<String> = if ps_args.is_empty() {
            vec!["-ef".into()]
        } else {
            ps_args.to_vec()
        };
        let out = Command::new("ps")
            .args(&args)
            .output()
            .map_err(|e| Error::io("run ps (install procps)", e))?;
        if !out.status.success() {
            return Err(Error::Other(format!(
                "ps {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let header = lines.next().unwrap_or_default();
        let col = header
            .split_whitespace()
            .position(|h| h == "PID")
            .ok_or_else(|| {
                Error::Other(format!(
                    "ps {}: no PID column in {header:?}",
                    args.join(" ")
                ))
            })?;
        let mut result = format!("{header}\n");
        for l in lines {
            let pid = l
                .split_whitespace()
                .nth(col)
                .and_then(|p| p.parse::<i32>().ok());
            if pid.is_some_and(|p| pids.contains(&p)) {
                result.push_str(l);
                result.push('\n');
            }
        }
        Ok(result)
    }
}
