//! `containerd-shim-pouch-v2`: the containerd shim (task API v2/v3) of Pouch.
//!
//! containerd starts it for tasks of the runtime `io.containerd.pouch.v2`. One shim serves one
//! container, or all the containers of one Kubernetes pod (annotation
//! `io.kubernetes.cri.sandbox-id`). It never creates a container itself: every operation
//! executes `pouch-runtime` (the runc-compatible CLI, which decides wasm vs native), the shim
//! only owns what outlives those calls: the rootfs mounts containerd hands over, the stdio
//! (containerd's fifos, or a terminal received on a console socket), the container processes
//! (it is their child subreaper and reaps them), and the events it publishes to containerd.
//!
//! Modules follow that split: [`bootstrap`] (the binary contract), [`service`] (the task API),
//! [`runtime`] (running `pouch-runtime`), [`reaper`], [`stdio`] and [`metrics`].

pub mod bootstrap;
pub mod metrics;
pub mod reaper;
pub mod runtime;
pub mod service;
pub mod stdio;
