#!/usr/bin/env bash
# A big image for pull/unpack benchmarks: OCI layout OUT_DIR/big (tag latest) = the busybox base
# layer of make-test-images.sh (same bytes, same digest) + LAYERS gzip layers of random data
# (incompressible, NOT deterministic), SIZE_MB MiB of data in total, split evenly; each layer is
# one file /big/layer-NNN.bin. gzip -1, and tar/gzip/sha256 run as one stream per layer.
#
# Usage: tests/support/make-big-image.sh OUT_DIR SIZE_MB LAYERS
# Prints `big sha256:<manifest digest> <total blob bytes>` on stdout.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/support/make-test-images.sh
. "$HERE/make-test-images.sh"        # functions and constants only (main is not run)

log() { printf 'make-big-image: %s\n' "$*" >&2; }

[ $# -eq 3 ] || { echo "usage: $0 OUT_DIR SIZE_MB LAYERS" >&2; exit 2; }
OUT=$1 SIZE_MB=$2 NLAYERS=$3
case "$SIZE_MB" in ''|*[!0-9]*) die "SIZE_MB '$SIZE_MB' is not a positive integer" ;; esac
case "$NLAYERS" in ''|*[!0-9]*) die "LAYERS '$NLAYERS' is not a positive integer" ;; esac
[ "$SIZE_MB" -ge 1 ] || die "SIZE_MB must be >= 1"
if [ "$NLAYERS" -lt 1 ] || [ "$NLAYERS" -gt 999 ]; then die "LAYERS must be 1..999"; fi
BUSYBOX=${BUSYBOX:-/bin/busybox}
[ -x "$BUSYBOX" ] || die "$BUSYBOX not found: run scripts/install-deps.sh (package busybox-static)"
command -v skopeo >/dev/null || die "skopeo not found: run scripts/install-deps.sh (package skopeo)"

mkdir -p "$OUT" || die "cannot create OUT_DIR '$OUT'"
OUT=$(cd "$OUT" && pwd -P)
need_kb=$(( SIZE_MB * 1024 * 2 / NLAYERS + SIZE_MB * 1024 + 4096 ))   # blobs + one layer's temp files
free_kb=$(df -Pk "$OUT" | awk 'NR==2 {print $4}')
[ "$free_kb" -ge "$need_kb" ] || die "not enough space in $OUT: need ~$((need_kb / 1024)) MiB, have $((free_kb / 1024)) MiB"

WORK=$(mktemp -d "$OUT/.big.XXXXXX")
sumpid=""
trap '[ -z "$sumpid" ] || kill "$sumpid" 2>/dev/null; rm -rf "$WORK"' EXIT
L="$WORK/big"
layout_init "$L"

build_busybox_base "$L" "$WORK"
layers=$(descriptor "$MT_LAYER_GZ" "$BASE_DIGEST" "$BASE_SIZE")
diffids="\"$BASE_DIFFID\""
history=$(history_entry "make-test-images.sh: busybox rootfs")

total=$(( SIZE_MB * 1024 * 1024 ))
per=$(( total / NLAYERS ))
mkfifo "$WORK/tarfifo"
start=$(date +%s.%N)
for ((i = 1; i <= NLAYERS; i++)); do
    n=$per
    [ "$i" -lt "$NLAYERS" ] || n=$(( total - per * (NLAYERS - 1) ))
    name=$(printf 'layer-%03d.bin' "$i")
    rm -rf "$WORK/src"
    mkdir -p "$WORK/src/big"
    chmod 0755 "$WORK/src" "$WORK/src/big"
    head -c "$n" /dev/urandom >"$WORK/src/big/$name" || die "reading $n bytes from /dev/urandom failed"
    # one pass: tar → (sha256 of the tar = diff_id) and → gzip -1 → blob
    sha256sum <"$WORK/tarfifo" >"$WORK/diffid" &
    sumpid=$!
    tar_dir "$WORK/src" | tee "$WORK/tarfifo" | gzip -n -1 >"$WORK/layer.gz" \
        || die "tar | gzip of layer $i failed"
    wait "$sumpid" || die "sha256sum of layer $i failed"
    sumpid=""
    blob_file "$L" "$WORK/layer.gz"
    layers+=",$(descriptor "$MT_LAYER_GZ" "$B_DIGEST" "$B_SIZE")"
    diffids+=",\"sha256:$(cut -d' ' -f1 "$WORK/diffid")\""
    history+=",$(history_entry "make-big-image.sh: add /big/$name")"
    log "layer $i/$NLAYERS: $n bytes → $B_SIZE gzip ($B_DIGEST)"
done
rm -rf "$WORK/src"

host_platform
cfg=$(image_config linux "$PLAT_ARCH" "$PLAT_VARIANT" \
    "\"Env\":[\"$IMAGE_PATH_ENV\"],\"Cmd\":[\"sh\"]" "$diffids" "$history")
blob_json "$L" "$cfg"
blob_json "$L" "$(image_manifest "$(descriptor "$MT_CONFIG" "$B_DIGEST" "$B_SIZE")" "$layers")"
layout_tag "$L" "$MT_MANIFEST" "$B_DIGEST" "$B_SIZE"
big_digest=$B_DIGEST
check_layout "$L" 1

rm -rf "${OUT:?}/big"
mv "$L" "$OUT/big"
bytes=$(du -sb "$OUT/big/blobs" | cut -f1)
log "done in $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
echo "big $big_digest $bytes"
