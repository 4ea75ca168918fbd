#!/usr/bin/env bash
# Tasks through containerd: containerd-shim-pouch-v2 (wasm) vs containerd-shim-runc-v2 (native)
# (issue 7, item 5).
#
# Usage: benches/shim-tasks.sh            (as root; prints a markdown report on stdout)
#
# One private containerd (tests/support/containerd.sh: Debian's containerd 1.6, own root, state
# and socket; our shim first on its PATH) runs, in ONE run, side by side:
#   pouch-wasm     `ctr run --rm --runtime io.containerd.pouch.v2 localhost/pouch-wasm:latest ID`:
#                  hello.wasm as an ordinary image (tar layer with /hello.wasm, Entrypoint
#                  /hello.wasm, platform wasi/wasm; tests/support/make-test-images.sh), run by
#                  pouch-runtime's wasm executor (compiled once into the shared compile cache,
#                  POUCH_WASM_CACHE in the work directory, warmed by the smoke pass)
#   runc-busybox   `ctr run --rm --runtime io.containerd.runc.v2 localhost/pouch-busybox:latest
#                  ID /bin/true`: containerd's own shim and Debian's runc (runc 1.1 runs on the
#                  hybrid cgroup layout as it is; no private mount namespace needed)
#   pouch-busybox  the same busybox /bin/true through our shim (pouch-runtime's native
#                  executor): for context, the shims on the same workload
# Each series runs BENCH_TASKS tasks one after the other (sequential), then BENCH_TASKS tasks
# with BENCH_PARALLEL ctr clients at once; tasks/s = tasks / wall time of the series. ctr's
# default cgroup (/<namespace>/<id>) for every task, overlayfs snapshots for every rootfs.
# Then the idle RSS: one `ctr run -d` task per shim (busybox `sleep`, and sleep.wasm for ours),
# and after BENCH_IDLE_SECS the shim's VmRSS (/proc/PID/status) and Pss (smaps_rollup).
#
# Three passes (benches/shim_tasks.py): smoke (each series once, exit code and output checked),
# the series (BENCH_ROUNDS rounds, the order of the series rotated each round; every task's exit
# status checked; after each series no task, container or shim may be left), the idle RSS.
# Reports tasks/s, the ratio pouch-wasm/runc-busybox (target: >= 1) and the RSS (target: ours
# <= 10 MiB), with the CPU the whole machine and containerd's daemon spent per task.
# On a shared machine: before each series (and each idle reading) the harness waits until no
# other benchmark or build (hyperfine, podman, conmon, crun, the pouch CLI, cargo, rustc) has run
# for BENCH_QUIET_SECS, and a series during which one ran (checked every 0.5 s) is measured again
# (at most BENCH_RETRIES times); the report says what was waited for, repeated, or still
# disturbed.
#
# Environment:
#   BENCH_TASKS=200          tasks per series and mode
#   BENCH_PARALLEL=4         ctr clients at once in the parallel mode (0: sequential only)
#   BENCH_ROUNDS=3           rounds (each runs every series once per mode)
#   BENCH_IDLE_SECS=5        how long the idle task runs before its shim's RSS is read
#   BENCH_SERIES="pouch-wasm runc-busybox pouch-busybox"
#   BENCH_QUIET_SECS=5       quiet time needed before each measurement (0: do not wait)
#   BENCH_MAX_WAIT=1800      but wait at most this long, seconds
#   BENCH_RETRIES=3          measurements of a disturbed series again, at most
#   SHIM=PATH                use this containerd-shim-pouch-v2 (pouch-runtime is then taken
#                            from beside it, or from RUNTIME=PATH); default: cargo build
#                            --release -p pouch-shims --bin containerd-shim-pouch-v2 and
#                            cargo build --release --bin pouch-runtime (no-ops when up to date).
#                            Both are copied into the work directory, so a rebuild meanwhile
#                            cannot swap them mid-run
#   BENCH_OUT=FILE           also write the report to FILE
#   BENCH_KEEP=1             keep the work directory (logs, containerd's log)
#
# Everything lives in target/bench-shim.XXXXXX; on exit (also on error or a signal) containerd is
# stopped (its tasks killed and deleted, its shims ended, its mounts unmounted), the cgroups
# under /<namespace> are removed and the directory is deleted.
set -euo pipefail

die() { printf 'shim-tasks: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'shim-tasks: %s\n' "$*" >&2; }
usage() { echo "usage: $0     (as root; see the header of $0 for the environment it reads)" >&2; exit 2; }

case "${1:-}" in
    "") ;;
    *) usage ;;
esac

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname -- "$here")
NS="pouch-bench-shim"   # containerd namespace; also the parent cgroup of every task

# shellcheck source=benches/common.sh
. "$here/common.sh"

[ "$(id -u)" -eq 0 ] || die "run as root (containerd and its shims need it)"
bench_need_tools python3 skopeo ctr containerd containerd-shim-runc-v2 runc findmnt

tasks=${BENCH_TASKS:-200}
parallel=${BENCH_PARALLEL:-4}
rounds=${BENCH_ROUNDS:-3}
idle_secs=${BENCH_IDLE_SECS:-5}
quiet_secs=${BENCH_QUIET_SECS:-5}
max_wait=${BENCH_MAX_WAIT:-1800}
retries=${BENCH_RETRIES:-3}
bench_uints tasks:BENCH_TASKS parallel:BENCH_PARALLEL rounds:BENCH_ROUNDS idle_secs:BENCH_IDLE_SECS \
    quiet_secs:BENCH_QUIET_SECS max_wait:BENCH_MAX_WAIT retries:BENCH_RETRIES
[ "$tasks" -ge 1 ] || die "BENCH_TASKS must be at least 1"
[ "$rounds" -ge 1 ] || die "BENCH_ROUNDS must be at least 1"
series=${BENCH_SERIES:-pouch-wasm runc-busybox pouch-busybox}
for s in $series; do
    case "$s" in pouch-wasm|runc-busybox|pouch-busybox) ;;
        *) die "BENCH_SERIES: unknown series '$s' (pouch-wasm, runc-busybox, pouch-busybox)" ;; esac
done
[ -n "${series// /}" ] || die "BENCH_SERIES is empty"

# The shim and pouch-runtime: release builds, rebuilt by cargo when missing or outdated.
if [ -n "${SHIM:-}" ]; then
    shim_src=$(realpath -- "$SHIM")
    runtime_src=$(realpath -- "${RUNTIME:-$(dirname -- "$shim_src")/pouch-runtime}")
else
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup) or set SHIM"
    log "cargo build --release (the shim and pouch-runtime; no-ops when up to date) ..."
    (cd "$repo" && cargo build --release --quiet -p pouch-shims --bin containerd-shim-pouch-v2) \
        || die "release build of the shim failed"
    (cd "$repo" && cargo build --release --quiet --bin pouch-runtime) \
        || die "release build of pouch-runtime failed"
    shim_src="$repo/target/release/containerd-shim-pouch-v2"
    runtime_src="$repo/target/release/pouch-runtime"
fi
[ -x "$shim_src" ] || die "$shim_src is not an executable"
[ -x "$runtime_src" ] || die "$runtime_src is not an executable (set RUNTIME)"

mkdir -p "$repo/target"
work=$(mktemp -d "$repo/target/bench-shim.XXXXXX")
cleanup() {
    local rc=$?
    if [ -f "$work/ctrd/containerd.pid" ]; then
        "$repo/tests/support/containerd.sh" stop "$work/ctrd" || rc=1
    fi
    "$repo/tests/support/cgroup-cleanup.sh" --kill "/$NS" >/dev/null 2>&1 \
        || { log "warning: cgroups left under /$NS"; rc=1; }
    bench_unmount_under "$work"
    bench_remove_work "$work" || rc=1
    exit "$rc"
}
bench_traps cleanup

mkdir "$work/bin" "$work/logs"
cp -- "$shim_src" "$work/bin/containerd-shim-pouch-v2"
cp -- "$runtime_src" "$work/bin/pouch-runtime"

# ---- images ------------------------------------------------------------------------------------
log "images ..."
bench_logged "$work/logs/make-test-images.log" "$repo/tests/support/make-test-images.sh" "$work/img"
# sleep.wasm (sleeps 1000 s without arguments) as make-test-images.sh builds its wasm-image.
(
    # shellcheck source=tests/support/make-test-images.sh
    . "$repo/tests/support/make-test-images.sh"
    L="$work/img/wasm-sleep" root="$work/img/.sleep-root"
    layout_init "$L"
    mkdir -p "$root"
    cp "$repo/wasm-examples/bin/sleep.wasm" "$root/sleep.wasm"
    chmod 0755 "$root" "$root/sleep.wasm"
    layer_dir "$L" "$root"
    cfg=$(image_config "$WASM_IMAGE_OS" wasm "" '"Entrypoint":["/sleep.wasm"]' "\"$L_DIFFID\"" \
        "$(history_entry "shim-tasks.sh: add sleep.wasm")")
    blob_json "$L" "$cfg"
    blob_json "$L" "$(image_manifest "$(descriptor "$MT_CONFIG" "$B_DIGEST" "$B_SIZE")" \
        "$(descriptor "$MT_LAYER_GZ" "$L_DIGEST" "$L_SIZE")")"
    layout_tag "$L" "$MT_MANIFEST" "$B_DIGEST" "$B_SIZE"
    rm -rf "$root"
) >"$work/logs/wasm-sleep-image.log" 2>&1 || die "building the sleep.wasm image failed: $(cat "$work/logs/wasm-sleep-image.log")"

BUSYBOX_REF=localhost/pouch-busybox:latest
WASM_REF=localhost/pouch-wasm:latest
SLEEP_REF=localhost/pouch-wasm-sleep:latest
for pair in "busybox=$BUSYBOX_REF" "wasm-image=$WASM_REF" "wasm-sleep=$SLEEP_REF"; do
    layout=${pair%%=*} ref=${pair#*=}
    skopeo copy -q "oci:$work/img/$layout:latest" "oci-archive:$work/img/$layout.tar:$ref" \
        >>"$work/logs/skopeo.log" 2>&1 || die "skopeo copy $layout failed: $(cat "$work/logs/skopeo.log")"
done

log "containerd ..."
sock=$(PATH="$work/bin:$PATH" POUCH_WASM_CACHE="$work/wasm-cache" \
    "$repo/tests/support/containerd.sh" start "$work/ctrd")
ctr_=(ctr --address "$sock" --namespace "$NS")
for layout in busybox wasm-image wasm-sleep; do
    "${ctr_[@]}" images import "$work/img/$layout.tar" >>"$work/logs/import.log" 2>&1 \
        || die "ctr images import $layout failed: $(cat "$work/logs/import.log")"
done

{
    echo "## Machine"
    echo
    bench_machine_lines | sed '/^- cgroups:/d'
    echo "- cgroups: $(if [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup)" = cgroup2 ]; then echo v2; elif [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2 ]; then echo "hybrid (v1 controllers + cgroup2 at /sys/fs/cgroup/unified), cgroupfs driver for both runtimes"; else echo v1; fi)"
    bench_memory_line
    echo "- work directory (containerd root and state, overlayfs snapshots): $work ($(bench_fs_of "$work"))"
    echo "- containerd-shim-pouch-v2 ($(stat -c %s "$work/bin/containerd-shim-pouch-v2") bytes) and $(version_of "$work/bin/pouch-runtime") ($(stat -c %s "$work/bin/pouch-runtime") bytes), release profile ($shim_src, $(bench_source SHIM))"
    echo "- containerd: $(containerd --version | awk '{print $3}'); containerd-shim-runc-v2: $(containerd-shim-runc-v2 -v 2>/dev/null | awk '/Version:/ {print $2; exit}') ($(stat -c %s "$(command -v containerd-shim-runc-v2)") bytes); runc: $(runc --version | head -n 1 | awk '{print $3}')"
    echo "- load average before: $(bench_loadavg)"
    echo
} >"$work/header.md"
cat "$work/header.md"

args=()
for s in $series; do
    case "$s" in
        pouch-wasm)    args+=(--series "pouch-wasm=containerd-shim-pouch-v2=hello from wasm=run --rm --runtime io.containerd.pouch.v2 $WASM_REF {id}") ;;
        runc-busybox)  args+=(--series "runc-busybox=containerd-shim-runc-v2==run --rm --runtime io.containerd.runc.v2 $BUSYBOX_REF {id} /bin/true") ;;
        pouch-busybox) args+=(--series "pouch-busybox=containerd-shim-pouch-v2==run --rm --runtime io.containerd.pouch.v2 $BUSYBOX_REF {id} /bin/true") ;;
    esac
done

log "measuring (work dir $work) ..."
python3 "$here/shim_tasks.py" \
    --workdir "$work" \
    --ctr "ctr --address $sock --namespace $NS" \
    --address "$sock" \
    --containerd-pid "$(cat "$work/ctrd/containerd.pid")" \
    "${args[@]}" \
    --ratio "pouch-wasm/runc-busybox" --ratio "pouch-busybox/runc-busybox" \
    --idle "pouch (busybox sleep)=containerd-shim-pouch-v2=run -d --runtime io.containerd.pouch.v2 $BUSYBOX_REF {id} sleep 600" \
    --idle "pouch (sleep.wasm)=containerd-shim-pouch-v2=run -d --runtime io.containerd.pouch.v2 $SLEEP_REF {id}" \
    --idle "runc (busybox sleep)=containerd-shim-runc-v2=run -d --runtime io.containerd.runc.v2 $BUSYBOX_REF {id} sleep 600" \
    --tasks "$tasks" --parallel "$parallel" --rounds "$rounds" --idle-secs "$idle_secs" \
    --quiet-secs "$quiet_secs" --max-wait "$max_wait" --retries "$retries" \
    --output "$work/results.md"
after="Load average after: $(bench_loadavg)."
echo "$after"
bench_write_out "$work" "$after"
