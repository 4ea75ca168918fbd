//! Home of `containerd-shim-pouch-v2`, the containerd task API v2 shim.
//!
//! The shim is not written yet: this crate only reserves its place in the workspace so that the
//! layout of `DESIGN.md` builds from the first commit. It exports nothing.
