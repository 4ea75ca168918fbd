//! `containerd-shim-pouch-v2`: see the `pouch_shims` library.

fn main() -> std::process::ExitCode {
    pouch_shims::bootstrap::main()
}
