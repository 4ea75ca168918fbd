#!/usr/bin/env bash
# Container start-up cost of pouch-runtime side by side with crun and runc.
#
# Usage: benches/runtime-startup.sh            (as root; prints a markdown report on stdout)
#
# Measures, for every runtime on the same busybox bundle (config from `pouch-runtime spec`,
# terminal false, args ["/bin/true"], the same namespaces/mounts/caps for all):
#   (a) `run /bin/true` in the foreground (including the delete `run` does itself);
#   (b) create + start + wait for exit + delete, four commands as containerd's shim drives them
#       (the harness is a child subreaper, gets the init's pid from --pid-file and waits for it);
#   (c) BENCH_BATCH sequential `run`s, total wall and CPU per batch.
# Reported per runtime: wall median / p90 / min and CPU (user+sys of every process the runtime
# starts, from getrusage(RUSAGE_CHILDREN) deltas) median / p90, and the ratios pouch/crun and
# pouch/runc. The statistics and process handling are in benches/runtime_startup.py.
#
# Fairness: all runtimes run from one process, interleaved in a random (seeded) order per
# iteration with a short pause before each measurement, in ONE private mount namespace. On the
# hybrid cgroup layout (v1 controllers + cgroup2 at /sys/fs/cgroup/unified) that namespace has
# /sys/fs/cgroup/unified unmounted, because crun 1.8 refuses the hybrid layout; every runtime
# sees the same pure-v1 view. Every container gets its
# own absolute cgroup path under /pouch-bench/<run>/, and its own state root under a temp dir.
#
# Environment (defaults keep the whole script well under 3 minutes on 2 busy cores):
#   BENCH_ITERATIONS=30     measured iterations of (a) and (b) per runtime
#   BENCH_WARMUP=3          unmeasured warm-up iterations of (a) and (b) per runtime
#   BENCH_BATCH=100         runs per batch in (c)
#   BENCH_BATCH_REPEAT=3    batches per runtime in (c)
#   BENCH_SETTLE_MS=20      pause before each measurement (lets the previous container's
#                           asynchronous kernel teardown finish)
#   BENCH_SEED=1            seed of the random interleaving order
#   BENCH_RUNTIMES="crun runc"   the runtimes pouch is compared with (missing ones are skipped)
#   POUCH_RUNTIME=PATH      use this pouch-runtime binary (default: cargo build --release, which
#                           rebuilds target/release/pouch-runtime only if it is missing/outdated)
#   BENCH_OUT=FILE          also write the report to FILE
#   BENCH_KEEP=1            keep the work directory (logs, state roots) for inspection
#   TMPDIR=DIR              where the work directory (rootfs, bundles, state roots) is made
#                           (default /tmp; e.g. /dev/shm to keep the runtimes' state on tmpfs,
#                           as /run usually is)
#
# Cleans up after itself: the work directory (rootfs, bundles, state roots, logs) and every
# cgroup under its cgroup parent, in every hierarchy; containers it started are deleted.
set -euo pipefail

die() { printf 'runtime-startup: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'runtime-startup: %s\n' "$*" >&2; }

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname -- "$here")
# shellcheck source=benches/common.sh
. "$here/common.sh"

# ---- inside the private mount namespace --------------------------------------------------------
if [ "${1:-}" = "--in-namespace" ]; then
    shift
    # Hybrid layout: hide the cgroup2 mount so that crun 1.8 (and, for fairness, everyone)
    # sees pure cgroup v1. This unmount is private to this namespace.
    if [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup 2>/dev/null || true)" != "cgroup2" ] &&
       [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup/unified 2>/dev/null || true)" = "cgroup2" ]; then
        umount /sys/fs/cgroup/unified
        log "private mount namespace: /sys/fs/cgroup/unified unmounted (hybrid -> v1 view for all runtimes)"
    fi
    rc=0
    python3 "$here/runtime_startup.py" "$@" || rc=$?
    clean_hidden_unified
    exit "$rc"
fi

# ---- on the host -------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (containers need it)"
for tool in python3 unshare findmnt; do
    command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (scripts/install-deps.sh installs it)"
done

iterations=${BENCH_ITERATIONS:-30}
warmup=${BENCH_WARMUP:-3}
batch=${BENCH_BATCH:-100}
batch_repeat=${BENCH_BATCH_REPEAT:-3}
settle_ms=${BENCH_SETTLE_MS:-20}
seed=${BENCH_SEED:-1}
for v in iterations warmup batch batch_repeat settle_ms seed; do
    case "${!v}" in ''|*[!0-9]*) die "$v must be a non-negative integer (got '${!v}')" ;; esac
done
if [ "$iterations" -lt 1 ] || [ "$batch" -lt 1 ] || [ "$batch_repeat" -lt 1 ]; then
    die "BENCH_ITERATIONS, BENCH_BATCH and BENCH_BATCH_REPEAT must be at least 1"
fi

# pouch-runtime: release build, rebuilt by cargo when missing or outdated.
if [ -n "${POUCH_RUNTIME:-}" ]; then
    pouch=$(realpath -- "$POUCH_RUNTIME")
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup) or set POUCH_RUNTIME"
    log "cargo build --release --bin pouch-runtime (no-op when up to date) ..."
    (cd "$repo" && cargo build --release --bin pouch-runtime --quiet) || die "release build failed"
    pouch="$repo/target/release/pouch-runtime"
fi
[ -x "$pouch" ] || die "$pouch is not an executable"

runtimes=("pouch=$pouch")
for name in ${BENCH_RUNTIMES:-crun runc}; do
    if bin=$(type -P "$name"); then
        runtimes+=("$name=$(realpath -- "$bin")")
    else
        log "warning: $name not installed, left out of the comparison (scripts/install-deps.sh installs it)"
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/pouch-bench.XXXXXX")
cgparent="/pouch-bench/$(basename -- "$work" | tr -c 'A-Za-z0-9\n' '-')"
cleanup() {
    local rc=$?
    # Anything still in our cgroups is a container of ours: kill it, then remove the cgroups
    # (host view: every v1 hierarchy and the cgroup2 mount).
    "$repo/tests/support/cgroup-cleanup.sh" --kill "$cgparent" >/dev/null 2>&1 || true
    if ! "$repo/tests/support/cgroup-cleanup.sh" --check "$cgparent" >/dev/null 2>&1; then
        log "warning: cgroups left under $cgparent:"
        "$repo/tests/support/cgroup-cleanup.sh" --check "$cgparent" >&2 || true
        rc=1
    fi
    # The shared parent, if no other run uses it.
    for d in /sys/fs/cgroup/*/pouch-bench /sys/fs/cgroup/pouch-bench; do
        if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept $work"
    else
        rm -rf --one-file-system -- "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "busybox rootfs ..."
rootfs=$("$repo/tests/fixtures/make-busybox-rootfs.sh" "$work/rootfs")
mkdir "$work/base"
"$pouch" spec --bundle "$work/base"
# One config for every runtime (see benches/common.sh).
bench_base_config "$work/base/config.json" "$rootfs"

{
    echo "## Machine"
    echo
    bench_machine_lines
    echo "- state roots and bundles: $(dirname -- "$work") ($(findmnt -n -o FSTYPE,OPTIONS -T "$work" | awk '{print $1 ", " $2}'))"
    for r in "${runtimes[@]}"; do
        name=${r%%=*}
        bin=${r#*=}
        case "$name" in
            pouch)
                rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')
                changed=$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | awk '{print $2}' | paste -sd' ' -)
                src="git $rev${changed:+; uncommitted changes in: $changed}"
                [ -z "${POUCH_RUNTIME:-}" ] || src="given by POUCH_RUNTIME; the repository is at $src"
                echo "- pouch-runtime: $(version_of "$bin") ($bin, $src)" ;;
            *) echo "- $name: $(version_of "$bin") ($bin)" ;;
        esac
    done
    echo
} >"$work/header.md"
cat "$work/header.md"

args=(--workdir "$work" --base-config "$work/base/config.json" --cgroup-parent "$cgparent"
      --iterations "$iterations" --warmup "$warmup" --batch "$batch" --batch-repeat "$batch_repeat"
      --settle-ms "$settle_ms" --seed "$seed"
      --output "$work/results.md")
for r in "${runtimes[@]}"; do args+=(--runtime "$r"); done

log "measuring (${#runtimes[@]} runtimes; cgroups under $cgparent; work dir $work) ..."
unshare -m --propagation private -- bash "$here/runtime-startup.sh" --in-namespace "${args[@]}"

if [ -n "${BENCH_OUT:-}" ]; then
    cat "$work/header.md" "$work/results.md" >"$BENCH_OUT"
    log "report written to $BENCH_OUT"
fi
