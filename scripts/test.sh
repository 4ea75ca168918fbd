#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: installs what the build and the
# tests need (Debian packages; the Rust toolchain must already be there), checks formatting and
# lints, runs every test of the workspace, then checks that nothing was left behind.
#
# Usage: sudo scripts/test.sh        (CI runs exactly this through .ci/run)
set -euo pipefail
cd -- "$(dirname -- "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "scripts/test.sh: run as root (containers need it)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "scripts/test.sh: cargo not found; install Rust (rustup) first" >&2; exit 1; }

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
scripts/check-leaks.sh
