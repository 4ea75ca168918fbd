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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
scripts/check-leaks.sh
# One closing line for the whole suite (every test binary's "test result" summed).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
