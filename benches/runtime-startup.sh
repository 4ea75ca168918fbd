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
    # Hybrid layout: the cgroup2 mount is hidden in this namespace, so that crun 1.8 (and, for
    # fairness, everyone) sees pure cgroup v1.
    bench_in_namespace "all runtimes" python3 "$here/runtime_startup.py" "$@"
fi

# ---- on the host -------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (containers need it)"
bench_need_tools python3 unshare findmnt

iterations=${BENCH_ITERATIONS:-30}
warmup=${BENCH_WARMUP:-3}
batch=${BENCH_BATCH:-100}
batch_repeat=${BENCH_BATCH_REPEAT:-3}
settle_ms=${BENCH_SETTLE_MS:-20}
seed=${BENCH_SEED:-1}
bench_uints iterations warmup batch batch_repeat settle_ms seed
if [ "$iterations" -lt 1 ] || [ "$batch" -lt 1 ] || [ "$batch_repeat" -lt 1 ]; then
    die "BENCH_ITERATIONS, BENCH_BATCH and BENCH_BATCH_REPEAT must be at least 1"
fi

# pouch-runtime: release build, rebuilt by cargo when missing or outdated.
pouch=$(bench_binary POUCH_RUNTIME pouch-runtime "no-op when up to date" --bin pouch-runtime)

runtimes=("pouch=$pouch")
for name in ${BENCH_RUNTIMES:-crun runc}; do
    if bin=$(type -P "$name"); then
        runtimes+=("$name=$(realpath -- "$bin")")
    else
        log "warning: $name not installed, left out of the comparison (scripts/install-deps.sh installs it)"
    fi
done

work=$(mktemp -d "${TMPDIR:-/tmp}/pouch-bench.XXXXXX")
cgparent=$(bench_cgparent "$work")
cleanup() {
    local rc=$?
    # Containers of ours still in our cgroups are killed, then the cgroups are removed.
    bench_remove_cgroups "$cgparent" || rc=1
    bench_remove_work "$work" || rc=1
    exit "$rc"
}
bench_traps cleanup

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
    echo "- state roots and bundles: $(dirname -- "$work") ($(bench_fs_of "$work"))"
    for r in "${runtimes[@]}"; do
        name=${r%%=*}
        bin=${r#*=}
        case "$name" in
            pouch) echo "- pouch-runtime: $(version_of "$bin") ($bin, $(bench_source POUCH_RUNTIME))" ;;
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

bench_write_out "$work"
