//! The image store: one content store for wasm and native images.
//!
//! Flow: a reference ([`reference`]) is resolved against a registry ([`pull`]) or an archive
//! ([`archive`]); every blob lands in the [`store::ContentStore`] (a valid OCI image layout,
//! verified against its digest before it becomes visible); layers are unpacked ([`unpack`]) into
//! snapshots keyed by chain ID ([`snapshot`]) that images share; a container's rootfs is an
//! overlay of those snapshots with a writable upper of its own.

pub mod archive;
pub mod auth;
pub mod digest;
pub mod examples;
pub mod login;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod reference;
pub mod snapshot;
pub mod store;
pub mod unpack;
