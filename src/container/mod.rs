//! Containers of `pouch`: daemonless, like podman with conmon.
//!
//! Each container lives in `<data-root>/containers/<id>/`:
//!
//! ```text
//! container.json   what `inspect` shows: config, host config, state (written atomically)
//! config.json      the OCI spec generated from the image config and the flags (the bundle)
//! rootfs/ upper/ work/   the root filesystem (an overlay of the image's snapshots)
//! hosts hostname resolv.conf   bind-mounted into the container
//! ctr.log          json-file log: one {"log","stream","time"} object a line
//! monitor.log      what the monitor itself had to say
//! ```
//!
//! A small monitor process per container ([`monitor`]) creates and starts it through the
//! runtime library, owns its stdio (writing the log), reaps it, records the exit code, applies
//! `--rm` and the restart policy, and outlives the CLI. The OCI runtime's own state is under
//! `<data-root>/runtime`.

pub mod logs;
pub mod monitor;
pub mod names;
pub mod ops;
pub mod record;
pub mod seccomp_default;
pub mod spec_gen;
pub mod template;

pub use record::{Container, ContainerStore};
