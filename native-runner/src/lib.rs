//! `native-runner`: the Linux executor of Pouch.
//!
//! It turns an OCI runtime spec (`config.json`) and a root filesystem into a running, isolated
//! process: namespaces, cgroups (v1, v2 and the hybrid layout), the rootfs and every mount of the
//! spec, `pivot_root`, devices, hostname, sysctls, rlimits, user/groups, capabilities,
//! `no_new_privs` and seccomp. It knows nothing of WebAssembly or images: at the point where the
//! container would `execve`, the caller may run something else instead (see [`process::Workload`]).
//!
//! Errors name the spec field and, where one exists, the fix.

pub mod capabilities;
pub mod cgroups;
pub mod console;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod namespaces;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod sync;
pub mod syscall;

pub use error::{Error, Result};
