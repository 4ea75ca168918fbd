#!/usr/bin/env bash
# Image pull: `pouch pull` side by side with `skopeo copy` and `ctr images pull` (issue 5).
#
# Usage: benches/image-pull.sh            (as root; prints a markdown report on stdout)
#
# Pulls the same images from a private local registry (tests/support/registry.sh, plain HTTP on
# 127.0.0.1) with three tools, in ONE run:
#   pouch    `pouch --data-root DIR pull -q REF`: download + verify + unpack into pouch's
#            snapshots (layers are unpacked while they download); loopback = plain HTTP
#   skopeo   `skopeo copy --src-tls-verify=false docker://REF oci:DIR:latest`: download +
#            verify only, no unpack
#   ctr      `ctr images pull --plain-http REF` against a private containerd
#            (tests/support/containerd.sh): download + unpack into the overlayfs snapshotter
#            (containerd 1.6's ctr has no top-level `pull`; `images pull` is it)
# Images: busybox (tests/support/make-test-images.sh, ~1 MB, 1 layer) and big
# (tests/support/make-big-image.sh: busybox + BENCH_BIG_LAYERS layers of random data,
# BENCH_BIG_MB MiB in all; gzip barely helps).
#
# Every pull is COLD: before each one (hyperfine's --prepare) the tool's state is reset: a fresh
# pouch data root, a fresh skopeo OCI directory, and for ctr `ctr images rm --sync` (containerd's
# GC then drops the image's content and snapshots; the reset fails if any is left); then `sync`,
# so that the previous pull's writeback is not billed to the next. The registry's blobs stay in
# the page cache (all tools read them from there alike). Each tool's pulls are checked against
# the registry's access log: exactly the image's blob bytes must be served once per pull.
#
# Three passes per image (benches/image_pull.py): a smoke pull per tool (output in logs/,
# result checked: manifest digest, one snapshot per layer for pouch and ctr); hyperfine (wall
# time, mean ± σ, JSON kept in the work directory); a CPU pass (user+sys and peak RSS of the
# tool's process from wait4, containerd's daemon CPU for ctr, the registry's CPU).
# Reports the wall times, the ratios pouch/skopeo and pouch/ctr (< 1: pouch is faster) and the
# CPU/RSS table.
#
# Environment:
#   BENCH_IMAGES="busybox big"   images to pull (in this order)
#   BENCH_RUNS=5                 measured hyperfine runs per tool, busybox
#   BENCH_BIG_RUNS=3             measured hyperfine runs per tool, big
#   BENCH_WARMUP=1               hyperfine warm-up runs per tool
#   BENCH_CPU_RUNS=3             rounds of the CPU/RSS pass per image (0: skip it)
#   BENCH_BIG_MB=400             size of the big image's random data, MiB
#   BENCH_BIG_LAYERS=4           its layers (plus the busybox base layer)
#   POUCH=PATH                   use this pouch binary (default: cargo build --release --bin
#                                pouch, a no-op when up to date); it is copied into the work
#                                directory, so a rebuild meanwhile cannot swap it mid-run
#   BENCH_OUT=FILE               also write the report to FILE
#   BENCH_KEEP=1                 keep the work directory (logs, hyperfine JSON, registry log)
#
# Everything lives in target/bench-pull.XXXXXX; on exit (also on error or a signal) the registry
# and containerd are stopped, containerd's mounts unmounted and the directory removed.
set -euo pipefail

die() { printf 'image-pull: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'image-pull: %s\n' "$*" >&2; }
usage() { echo "usage: $0     (as root; see the header of $0 for the environment it reads)" >&2; exit 2; }

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname -- "$here")
self="$here/image-pull.sh"
NS="pouch-bench"   # containerd namespace

# ---- resets (hyperfine's --prepare; internal) --------------------------------------------------
# --reset dir DIR                 remove DIR (must be inside a bench-pull work directory), sync
# --reset ctr SOCKET REF          remove REF from containerd and wait for its GC; fail if any
#                                 content, snapshot or ingest is left; sync
if [ "${1:-}" = "--reset" ]; then
    case "${2:-}" in
        dir)
            [ $# -eq 3 ] || die "usage: $0 --reset dir DIR"
            case "$3" in */target/bench-pull.*/*) ;; *) die "--reset dir: '$3' is not in a bench-pull work directory" ;; esac
            rm -rf --one-file-system -- "$3"
            ;;
        ctr)
            [ $# -eq 4 ] || die "usage: $0 --reset ctr SOCKET REF"
            sock=$3 ref=$4
            c() { ctr --address "$sock" -n "$NS" "$@"; }
            refs=$(c images ls -q) || die "ctr images ls failed"
            if grep -qxF -- "$ref" <<<"$refs"; then
                c images rm --sync "$ref" >/dev/null || die "ctr images rm --sync $ref failed"
            fi
            left=$(c content ls -q && c snapshots ls | tail -n +2 && c content active | tail -n +2) \
                || die "listing containerd's content/snapshots failed"
            [ -z "$left" ] || die "containerd still holds, after removing $ref: $left"
            ;;
        *) die "usage: $0 --reset dir DIR | ctr SOCKET REF" ;;
    esac
    sync
    exit 0
fi

case "${1:-}" in
    "") ;;
    -h|--help) usage ;;
    *) usage ;;
esac

# ---- on the host -------------------------------------------------------------------------------
# shellcheck source=benches/common.sh
. "$here/common.sh"

[ "$(id -u)" -eq 0 ] || die "run as root (containerd and its overlayfs snapshotter need it)"
bench_need_tools python3 hyperfine skopeo ctr containerd docker-registry curl jq findmnt

images=${BENCH_IMAGES:-busybox big}
runs=${BENCH_RUNS:-5}
big_runs=${BENCH_BIG_RUNS:-3}
warmup=${BENCH_WARMUP:-1}
cpu_runs=${BENCH_CPU_RUNS:-3}
big_mb=${BENCH_BIG_MB:-400}
big_layers=${BENCH_BIG_LAYERS:-4}
bench_uints runs:BENCH_RUNS big_runs:BENCH_BIG_RUNS warmup:BENCH_WARMUP cpu_runs:BENCH_CPU_RUNS \
    big_mb:BENCH_BIG_MB big_layers:BENCH_BIG_LAYERS
if [ "$runs" -lt 1 ] || [ "$big_runs" -lt 1 ] || [ "$big_mb" -lt 1 ] || [ "$big_layers" -lt 1 ]; then
    die "BENCH_RUNS, BENCH_BIG_RUNS, BENCH_BIG_MB and BENCH_BIG_LAYERS must be at least 1"
fi
for img in $images; do
    case "$img" in busybox|big) ;; *) die "BENCH_IMAGES: unknown image '$img' (busybox, big)" ;; esac
done
[ -n "${images// /}" ] || die "BENCH_IMAGES is empty"

# pouch: release build, rebuilt by cargo when missing or outdated.
pouch_src=$(bench_binary POUCH pouch "no-op when up to date; 10-15 min from scratch" --bin pouch)

mkdir -p "$repo/target"
work=$(mktemp -d "$repo/target/bench-pull.XXXXXX")
cleanup() {
    local rc=$?
    if [ -f "$work/reg/pid" ]; then
        "$repo/tests/support/registry.sh" stop "$work/reg" || rc=1
    fi
    if [ -f "$work/ctrd/containerd.pid" ]; then
        "$repo/tests/support/containerd.sh" stop "$work/ctrd" || rc=1
    fi
    # containerd.sh stop unmounts what is left under its state dir; anything else of ours too
    bench_unmount_under "$work"
    bench_remove_work "$work" || rc=1
    exit "$rc"
}
bench_traps cleanup

mkdir "$work/bin" "$work/logs"
cp -- "$pouch_src" "$work/bin/pouch"
pouch="$work/bin/pouch"

# Room: the layouts, the registry's copy, and at most one tool's result at a time (pouch and
# containerd keep the blobs and the unpacked layers).
need_mb=$(( big_mb * 6 + 200 ))
case " $images " in *" big "*) ;; *) need_mb=200 ;; esac
free_mb=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
[ "$free_mb" -ge "$need_mb" ] || die "not enough space in $work: need ~$need_mb MiB, have $free_mb MiB"

log "registry, containerd ..."
reg=$("$repo/tests/support/registry.sh" start "$work/reg")
sock=$("$repo/tests/support/containerd.sh" start "$work/ctrd")

log "images ..."
args=()
for img in $images; do
    case "$img" in
        busybox)
            if [ ! -d "$work/img/busybox" ]; then
                bench_logged "$work/logs/make-test-images.log" "$repo/tests/support/make-test-images.sh" "$work/img"
                bench_logged "$work/logs/push-test-images.log" "$repo/tests/support/push-test-images.sh" "$work/img" "$reg"
            fi
            args+=(--image "busybox=$reg/test/busybox:latest=$work/img/busybox" --runs "busybox=$runs") ;;
        big)
            log "big image: $big_mb MiB of random data in $big_layers layers (about 30 MB/s) ..."
            bench_logged "$work/logs/make-big-image.log" "$repo/tests/support/make-big-image.sh" "$work/img" "$big_mb" "$big_layers"
            skopeo copy -q --dest-tls-verify=false "oci:$work/img/big:latest" "docker://$reg/test/big:latest" \
                >"$work/logs/push-big.log" 2>&1 || die "pushing big failed: $(cat "$work/logs/push-big.log")"
            args+=(--image "big=$reg/test/big:latest=$work/img/big" --runs "big=$big_runs") ;;
    esac
done

{
    echo "## Machine"
    echo
    bench_machine_lines | sed '/^- cgroups:/d'
    bench_memory_line
    echo "- work directory (registry storage, pouch data root, skopeo OCI dir, containerd root): $work ($(bench_fs_of "$work"))"
    echo "- pouch: $("$pouch" --version) ($pouch_src, $(bench_source POUCH)); \`pull\` defaults: 4 layers at once"
    echo "- skopeo: $(skopeo --version) (containers/image: up to 6 blobs at once)"
    echo "- ctr / containerd: $(ctr --version | awk '{print $3}') (overlayfs snapshotter; ctr's default --max-concurrent-downloads 0 = unlimited)"
    echo "- registry: $(docker-registry --version | awk '{print $3}') (distribution, filesystem storage) on $reg"
    echo "- hyperfine: $(hyperfine --version | awk '{print $2}'); load average before: $(bench_loadavg)"
    echo
} >"$work/header.md"
cat "$work/header.md"

log "measuring (work dir $work) ..."
python3 "$here/image_pull.py" \
    --workdir "$work" "${args[@]}" \
    --tool "pouch=$pouch --data-root $work/pouch-root pull -q {ref}" \
    --reset "pouch=bash $self --reset dir $work/pouch-root" \
    --tool "skopeo=skopeo copy --src-tls-verify=false docker://{ref} oci:$work/skopeo-oci:latest" \
    --reset "skopeo=bash $self --reset dir $work/skopeo-oci" \
    --tool "ctr=ctr --address $sock -n $NS images pull --plain-http {ref}" \
    --reset "ctr=bash $self --reset ctr $sock {ref}" \
    --warmup "$warmup" --cpu-runs "$cpu_runs" \
    --pouch "$pouch" \
    --registry-log "$work/reg/registry.log" --registry-pid "$(cat "$work/reg/pid")" \
    --containerd-pid "$(cat "$work/ctrd/containerd.pid")" \
    --containerd-socket "$sock" --containerd-namespace "$NS" \
    --output "$work/results.md"
after="Load average after: $(bench_loadavg)."
echo "$after"
bench_write_out "$work" "$after"
