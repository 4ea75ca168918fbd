//! `pause` and `resume`: freeze and thaw every process of a container (v1 freezer, v2
//! `cgroup.freeze`).

use super::state::{ContainerDir, Status};
use super::{Error, Runtime};

impl Runtime {
    /// Freezes a running container.
    pub fn pause(&self, id: &str) -> Result<(), Error> {
        let dir = ContainerDir::open(self, id)?;
        let _lock = dir.lock()?;
        let rec = dir.load()?;
        let status = dir.status(&rec);
        if status != Status::Running {
            return Err(Error::WrongStatus(format!(
                "cannot pause container {id:?}: it is {status}, not running"
            )));
        }
        rec.cgroup()?.freeze()?;
        Ok(())
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<(), Error> {
        let dir = ContainerDir::open(self, id)?;
        let _lock = dir.lock()?;
        let rec = dir.load()?;
        let status = dir.status(&rec);
        if status != Status::Paused {
            return Err(Error::WrongStatus(format!(
                "cannot resume container {id:?}: it is {status}, not paused"
            )));
        }
        rec.cgroup()?.thaw()?;
        Ok(())
    }
}
