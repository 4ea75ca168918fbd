//! Pouch: one container runtime for WebAssembly and native Linux workloads.
//!
//! This library holds everything the fronts share. Today that is the OCI runtime: the lifecycle
//! state machine ([`runtime`]) with one file per verb, the bundle/spec handling ([`spec`]) and
//! the runtime's logging ([`logging`]). The `pouch-runtime` binary is a thin CLI over it.

pub mod container;
pub mod dispatch;
pub mod errors;
pub mod image;
pub mod logging;
pub mod runtime;
pub mod spec;
pub mod wasm;
