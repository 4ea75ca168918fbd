//! Link-time settings of the binaries. `pouch-runtime` is started for every container
//! operation, so its start-up is on the hot path: pack the relative relocations (DT_RELR) the
//! dynamic loader applies at each start, keeping the binary position-independent (ASLR).
//! Needs binutils ≥ 2.38 and glibc ≥ 2.36 (Debian 12 has both).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
