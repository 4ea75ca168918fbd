//! `state`: the runtime-spec state of one container.

use super::state::{ContainerDir, ContainerState};
use super::{Error, Runtime};

impl Runtime {
    /// The state of container `id` now.
    pub fn state(&self, id: &str) -> Result<ContainerState, Error> {
        let dir = ContainerDir::open(self, id)?;
        let rec = dir.load()?;
        Ok(dir.state(&rec))
    }
}
