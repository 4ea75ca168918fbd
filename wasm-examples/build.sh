#!/usr/bin/env bash
# Rebuilds the example/test wasm programs in bin/ from src/, with Debian's toolchain only:
# clang-14 --target=wasm32-wasi (wasi-libc) for C, wabt's wat2wasm for WAT, and
# componentize/ (wit-component + wasmtime 48's preview1 adapter, from crates.io) for the
# WASIp2 component. Core modules are checked with wasm-validate; the component is validated
# by the encoder.
#
# Usage: wasm-examples/build.sh [--check]
#   --check   build into a temporary directory and fail if anything differs from bin/
# Installs the Debian packages it needs (as root) when they are missing.
set -euo pipefail
here=$(cd -- "$(dirname -- "$0")" && pwd)
cd "$here"

need=(clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 wabt)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "build.sh: missing ${missing[*]}; install them (as root)" >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

out=bin
if [ "${1:-}" = "--check" ]; then
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

for c in src/*.c; do
    name=$(basename "$c" .c)
    clang-14 --target=wasm32-wasi -O2 -Wl,--strip-all -o "$out/$name.wasm" "$c"
done
for w in src/*.wat; do
    name=$(basename "$w" .wat)
    wat2wasm "$w" -o "$out/$name.wasm"
done
for m in "$out"/*.wasm; do
    case "$m" in *.component.wasm) continue ;; esac
    wasm-validate "$m"
done

# The component: hello as a WASIp2 command component.
CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/../target}/componentize" \
    cargo build --quiet --release --manifest-path componentize/Cargo.toml
"${CARGO_TARGET_DIR:-$here/../target}/componentize/release/pouch-componentize" \
    "$out/hello.wasm" "$out/hello.component.wasm"

if [ "$out" != bin ]; then
    diff -r "$out" bin && echo "build.sh: bin/ matches its sources"
else
    ls -l bin
fi
