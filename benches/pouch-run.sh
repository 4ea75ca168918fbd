#!/usr/bin/env bash
# `pouch run --rm` side by side with `podman run --rm` (crun) (issue 6).
#
# Usage: benches/pouch-run.sh            (as root; prints a markdown report on stdout)
#
# Measures, in ONE run, on images built without network (tests/support/make-test-images.sh):
#   pouch-busybox     `pouch --data-root D run --rm IMG true`: the CLI prepares the container
#                     (overlay rootfs, spec, files), re-executes itself as the monitor
#                     (`pouch __monitor ID`), which creates, starts, reaps and deletes it through
#                     the runtime library in-process, then removes it (--rm)
#   pouch-wasm        `pouch --data-root D run --rm WASM`: the wasm OCI artifact (hello.wasm,
#                     prints "hello from wasm..."), run by the wasm executor in the same sandbox
#   pouch-wasm-image  the same program as an ordinary image (tar layer with /hello.wasm,
#                     Entrypoint /hello.wasm): an overlay rootfs like busybox's
#   podman-busybox    `podman --runtime crun --cgroup-manager cgroupfs run --rm IMG true` with a
#                     private podman (tests/support/podman-env.sh: own storage, runroot, tmp,
#                     locks, events; network none, as pouch's default) on the same busybox image
# podman+crun cannot run wasm here (Debian's crun 1.8 has no wasm handler), so the wasm runs
# are compared with podman's busybox `true`, and with pouch's own native run.
#
# The images go in through archives, no registry: `skopeo copy oci:... oci-archive:...` +
# `pouch load`, and `skopeo copy oci:... containers-storage:[...]` into podman's store.
#
# Everything that runs containers runs in ONE private mount namespace (unshare -m). On the
# hybrid cgroup layout (v1 controllers + cgroup2 at /sys/fs/cgroup/unified) that namespace has
# /sys/fs/cgroup/unified unmounted, because crun 1.8 refuses the hybrid layout ("cgroups in
# hybrid mode not supported"); pouch sees the same pure-v1 view. Cgroups: pouch's under
# /pouch-bench/<run>/pouch (POUCH_CGROUP_PARENT), podman's under /pouch-bench/<run>/podman
# (--cgroup-parent; podman also puts conmon in <parent>/conmon).
#
# Three passes (benches/pouch_run.py): smoke (each command once, output checked, nothing may be
# left in `pouch ps -a` / `podman ps -a`); hyperfine -N (wall time, mean ± σ); a CPU pass (user+sys
# of every process of a run: the harness is a child subreaper and reaps what a run leaves, e.g.
# podman's conmon). Reports the ratios pouch/podman (target of issue 6: ≤ 0.25).
#
# Environment:
#   BENCH_RUNS=20            measured hyperfine runs per command
#   BENCH_WARMUP=3           hyperfine warm-up runs per command
#   BENCH_CPU_RUNS=10        rounds of the CPU pass (0: skip it)
#   BENCH_SETTLE_MS=20       pause before each measurement of the CPU pass
#   BENCH_PODMAN_RUNTIME=crun   podman's OCI runtime (crun or runc)
#   BENCH_COMMANDS="pouch-busybox pouch-wasm pouch-wasm-image podman-busybox"
#   POUCH=PATH               use this pouch binary (pouch-runtime is taken from beside it);
#                            default: cargo build --release --bin pouch --bin pouch-runtime (a
#                            no-op when up to date). Both are copied into the work directory, so
#                            a rebuild meanwhile cannot swap them mid-run
#   BENCH_OUT=FILE           also write the report to FILE
#   BENCH_KEEP=1             keep the work directory (logs, hyperfine JSON)
#   TMPDIR=DIR               where the work directory goes (default /tmp)
#
# Everything lives in $TMPDIR/pouch-bench-run.XXXXXX (pouch's data root, podman's state and
# storage, images, logs); on exit (also on error or a signal) leftover containers are removed,
# every cgroup under /pouch-bench/<run> is removed, mounts under the work directory are
# unmounted and the directory is deleted.
set -euo pipefail

die() { printf 'pouch-run: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'pouch-run: %s\n' "$*" >&2; }
usage() { echo "usage: $0     (as root; see the header of $0 for the environment it reads)" >&2; exit 2; }

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname -- "$here")
self="$here/pouch-run.sh"
# shellcheck source=benches/common.sh
. "$here/common.sh"

# ---- inside the private mount namespace (internal) ---------------------------------------------
case "${1:-}" in
    --in-namespace)
        shift
        if bench_hide_unified; then
            log "private mount namespace: /sys/fs/cgroup/unified unmounted (hybrid -> v1 view for pouch and podman)"
        fi
        exec python3 "$here/pouch_run.py" "$@" ;;
    --cleanup-namespace)
        # --cleanup-namespace STATEDIR DATA_ROOT POUCH CGPARENT: leftover containers of an
        # interrupted run, in the same view as the run (crun refuses the hybrid layout also for
        # delete), and what crun left in the hidden /sys/fs/cgroup/unified.
        shift
        hidden=0
        if bench_hide_unified; then hidden=1; fi
        if [ -f "$1/containers.conf" ]; then
            POUCH_PODMAN_RUNTIME=${BENCH_PODMAN_RUNTIME:-crun} "$repo/tests/support/podman-cleanup.sh" "$1" || true
        fi
        if [ -x "$3" ] && [ -d "$2" ]; then
            for id in $("$3" --data-root "$2" ps -a -q 2>/dev/null || true); do
                "$3" --data-root "$2" rm -f "$id" >/dev/null 2>&1 || log "warning: pouch rm -f $id failed"
            done
        fi
        # crun's directories for the cgroup2 hierarchy, made in the hidden (unmounted)
        # /sys/fs/cgroup/unified: plain directories of the host's /sys/fs/cgroup tmpfs.
        if [ "$hidden" = 1 ] && [ -n "${4:-}" ] && [ -d "/sys/fs/cgroup/unified$4" ] &&
           [ "$(findmnt -n -o FSTYPE -T "/sys/fs/cgroup/unified$4")" = tmpfs ]; then
            rm -rf --one-file-system -- "/sys/fs/cgroup/unified$4"
            rmdir /sys/fs/cgroup/unified/pouch-bench 2>/dev/null || true
        fi
        exit 0 ;;
    "") ;;
    *) usage ;;
esac

# ---- on the host -------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "run as root (containers need it)"
bench_need_tools python3 hyperfine skopeo podman conmon unshare findmnt

runs=${BENCH_RUNS:-20}
warmup=${BENCH_WARMUP:-3}
cpu_runs=${BENCH_CPU_RUNS:-10}
settle_ms=${BENCH_SETTLE_MS:-20}
bench_uints runs:BENCH_RUNS warmup:BENCH_WARMUP cpu_runs:BENCH_CPU_RUNS settle_ms:BENCH_SETTLE_MS
[ "$runs" -ge 2 ] || die "BENCH_RUNS must be at least 2"
podman_rt=${BENCH_PODMAN_RUNTIME:-crun}
case "$podman_rt" in crun|runc) ;; *) die "BENCH_PODMAN_RUNTIME must be crun or runc (got '$podman_rt')" ;; esac
podman_rt_bin=$(type -P "$podman_rt") || die "'$podman_rt' not found (scripts/install-deps.sh installs it)"
commands=${BENCH_COMMANDS:-pouch-busybox pouch-wasm pouch-wasm-image podman-busybox}
for c in $commands; do
    case "$c" in pouch-busybox|pouch-wasm|pouch-wasm-image|podman-busybox) ;;
        *) die "BENCH_COMMANDS: unknown command '$c'" ;; esac
done

# pouch and pouch-runtime: release build, rebuilt by cargo when missing or outdated.
pouch_src=$(bench_binary POUCH pouch "no-op when up to date; minutes otherwise" --bin pouch --bin pouch-runtime)
[ -x "$(dirname -- "$pouch_src")/pouch-runtime" ] || die "no pouch-runtime beside $pouch_src"

work=$(mktemp -d "${TMPDIR:-/tmp}/pouch-bench-run.XXXXXX")
cgparent=$(bench_cgparent "$work")
pm="$work/podman"       # private podman: config, storage, runroot, tmp
root="$work/pouch"      # pouch's data root
cleanup() {
    local rc=$?
    # Leftover containers (an interrupted run), in the same cgroup view as the run.
    unshare -m --propagation private -- bash "$self" --cleanup-namespace "$pm" "$root" "$work/bin/pouch" "$cgparent" || true
    # Containers of ours still in our cgroups are killed, then the cgroups are removed.
    bench_remove_cgroups "$cgparent" || rc=1
    # Mounts live in the benchmark's mount namespace and go with it; anything on the host
    # under the work directory is unexpected.
    bench_unmount_under "$work" --warn
    bench_remove_work "$work" || rc=1
    exit "$rc"
}
bench_traps cleanup

mkdir "$work/bin" "$work/logs"
cp -- "$pouch_src" "$work/bin/pouch"
cp -- "$(dirname -- "$pouch_src")/pouch-runtime" "$work/bin/pouch-runtime"
pouch="$work/bin/pouch"

log "images (make-test-images.sh, no network) ..."
bench_logged "$work/logs/make-test-images.log" "$repo/tests/support/make-test-images.sh" "$work/img"

# pouch: oci-archive (named localhost/bench/NAME:latest, as podman's copy) + pouch load, which
# prints the names it recorded.
declare -A pouch_ref
for img in busybox wasm wasm-image; do
    skopeo copy -q "oci:$work/img/$img:latest" "oci-archive:$work/img/$img.tar:localhost/bench/$img:latest" >>"$work/logs/load.log" 2>&1 \
        || die "skopeo copy of $img to an oci-archive failed: $(tail -n 5 "$work/logs/load.log")"
    names=$("$pouch" --data-root "$root" load -q -i "$work/img/$img.tar" 2>>"$work/logs/load.log") \
        || die "pouch load of $img failed: $(tail -n 5 "$work/logs/load.log")"
    pouch_ref[$img]=$(printf '%s\n' "$names" | head -n 1)
    [ -n "${pouch_ref[$img]}" ] || die "pouch load of $img printed no name"
done
"$pouch" --data-root "$root" images >"$work/logs/pouch-images.txt"

# podman: private environment, the same busybox layout copied into its storage.
eval "$("$repo/tests/support/podman-env.sh" "$pm")"
driver=$(cat "$pm/storage-driver")
podman_img=localhost/bench/busybox:latest
# (in a mount namespace of its own: the overlay driver bind-mounts graph/overlay onto itself)
unshare -m --propagation private -- \
    skopeo copy -q "oci:$work/img/busybox:latest" "containers-storage:[$driver@$pm/graph+$pm/runroot]$podman_img" \
    >>"$work/logs/load.log" 2>&1 || die "skopeo copy of busybox into podman's storage failed: $(tail -n 5 "$work/logs/load.log")"
podman=(podman --runtime "$podman_rt_bin" --cgroup-manager cgroupfs)

export POUCH_CGROUP_PARENT="$cgparent/pouch"
tools=()
for c in $commands; do
    case "$c" in
        pouch-busybox) tools+=(--tool "pouch-busybox==$pouch --data-root $root run --rm ${pouch_ref[busybox]} true") ;;
        pouch-wasm) tools+=(--tool "pouch-wasm=hello from wasm=$pouch --data-root $root run --rm ${pouch_ref[wasm]}") ;;
        pouch-wasm-image) tools+=(--tool "pouch-wasm-image=hello from wasm=$pouch --data-root $root run --rm ${pouch_ref[wasm-image]}") ;;
        podman-busybox) tools+=(--tool "podman-busybox==${podman[*]} run --rm --cgroup-parent=$cgparent/podman $podman_img true") ;;
    esac
done
ratios=()
for r in pouch-busybox/podman-busybox pouch-wasm/podman-busybox pouch-wasm-image/podman-busybox \
         pouch-wasm/pouch-busybox pouch-wasm-image/pouch-busybox; do
    case " $commands " in *" ${r%/*} "*) ;; *) continue ;; esac
    case " $commands " in *" ${r#*/} "*) ratios+=(--ratio "$r") ;; esac
done

{
    echo "## Machine"
    echo
    bench_machine_lines
    bench_memory_line
    echo "- work directory (pouch data root, podman storage and runroot): $work ($(bench_fs_of "$work")); podman storage driver: $driver"
    echo "- pouch: $("$pouch" --version) ($pouch_src, $(stat -c %s "$pouch") bytes, $(bench_source POUCH))"
    echo "- pouch images (\`pouch load\` of oci-archives): busybox \`${pouch_ref[busybox]}\`, wasm artifact \`${pouch_ref[wasm]}\`, wasm image \`${pouch_ref[wasm-image]}\`"
    echo "- podman: $(podman --version | awk '{print $3}'), conmon $(conmon --version | awk 'NR == 1 {print $3}'), runtime $podman_rt $(version_of "$podman_rt_bin" | awk '{print $3}') ($podman_rt_bin); image \`$podman_img\`"
    echo "- hyperfine: $(hyperfine --version | awk '{print $2}')"
    echo
} >"$work/header.md"
cat "$work/header.md"

log "measuring (cgroups under $cgparent; work dir $work) ..."
unshare -m --propagation private -- bash "$self" --in-namespace \
    --workdir "$work" --pouch "$pouch" --data-root "$root" --podman "${podman[*]}" \
    --cgroup-parent "$cgparent" --podman-runtime "$podman_rt" "${tools[@]}" "${ratios[@]}" \
    --runs "$runs" --warmup "$warmup" --cpu-runs "$cpu_runs" --settle-ms "$settle_ms" \
    --output "$work/results.md"

bench_write_out "$work"
