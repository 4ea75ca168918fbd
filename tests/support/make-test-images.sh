#!/usr/bin/env bash
# Builds small test images as OCI image layouts (no network, no podman/buildah), byte-for-byte
# deterministic for a given /bin/busybox, hello.wasm, tar and gzip: fixed mtimes, sorted tar
# entries, uid/gid 0, `gzip -n`, hand-written compact JSON. Each layout has tag `latest`.
#
# Usage: tests/support/make-test-images.sh OUT_DIR
#   OUT_DIR/busybox        linux/<host arch> image, 1 gzip layer: /bin/busybox + applet symlinks,
#                          /etc/passwd+group (root, nobody), /tmp 1777, /proc /sys /dev /root
#   OUT_DIR/busybox-extra  2 layers: the SAME base layer blob as busybox + /etc/extra.txt
#   OUT_DIR/wasm           wasm OCI artifact (CNCF TAG-Runtime layout): config
#                          application/vnd.wasm.config.v0+json, 1 layer application/wasm = hello.wasm
#   OUT_DIR/wasm-image     "compat" wasm image: normal OCI image, config os/arch = $WASM_IMAGE_OS/wasm,
#                          1 gzip tar layer with /hello.wasm, Entrypoint ["/hello.wasm"]
#   OUT_DIR/hybrid         OCI image index: busybox (linux/<arch>) + wasm-image ($WASM_IMAGE_OS/wasm)
# Prints one line per layout on stdout: `NAME sha256:<digest of the manifest or index>`
# (also written to OUT_DIR/digests.txt). Each layout is checked with `skopeo inspect`.
#
# Environment: WASM_IMAGE_OS (default `wasi`, see below), HELLO_WASM (default
# wasm-examples/bin/hello.wasm of this repo), BUSYBOX (default /bin/busybox).
#
# Can be sourced (functions only) by other scripts: tests/support/make-big-image.sh does.
set -euo pipefail

# --- constants ---------------------------------------------------------------------------------
EPOCH=1704067200                      # 2024-01-01T00:00:00Z: every mtime and "created"
CREATED=2024-01-01T00:00:00Z
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_INDEX=application/vnd.oci.image.index.v1+json
MT_CONFIG=application/vnd.oci.image.config.v1+json
MT_LAYER_GZ=application/vnd.oci.image.layer.v1.tar+gzip
MT_WASM_CONFIG=application/vnd.wasm.config.v0+json
MT_WASM_LAYER=application/wasm
IMAGE_PATH_ENV=PATH=/usr/sbin:/usr/bin:/sbin:/bin
APPLETS=(sh true false echo cat ls sleep id env mkdir touch wc head)

# os string of the compat wasm image (config "os" and its platform in the hybrid index).
# Peers disagree: the wasm OCI *artifact* config uses "wasip1"/"wasip2" (CNCF spec, oci-wasm crate,
# Go's GOOS), but images built with `docker/buildah --platform wasi/wasm` carry os "wasi", and
# that is what podman/docker/containerd platform matching (`--platform wasi/wasm`, podman's
# [engine.platform_to_oci_runtime] "wasi/wasm") select in an index. The compat image is that
# Docker/buildah style, so it uses "wasi"; the artifact keeps "wasip1". Override with
# WASM_IMAGE_OS=wasip1 if a test needs the other spelling.
WASM_IMAGE_OS=${WASM_IMAGE_OS:-wasi}

log() { printf 'make-test-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- helpers (also used by make-big-image.sh) --------------------------------------------------

# host_platform: sets PLAT_ARCH, PLAT_VARIANT (may be empty) in OCI/GOARCH terms.
host_platform() {
    local deb
    deb=$(dpkg --print-architecture 2>/dev/null || uname -m)
    PLAT_VARIANT=""
    case "$deb" in
        amd64|x86_64) PLAT_ARCH=amd64 ;;
        arm64|aarch64) PLAT_ARCH=arm64; PLAT_VARIANT=v8 ;;
        armhf|armv7l) PLAT_ARCH=arm; PLAT_VARIANT=v7 ;;
        i386|i686) PLAT_ARCH=386 ;;
        ppc64el|ppc64le) PLAT_ARCH=ppc64le ;;
        *) PLAT_ARCH=$deb ;;
    esac
}

# platform_json OS ARCH [VARIANT]
platform_json() {
    if [ -n "${3:-}" ]; then
        printf '{"architecture":"%s","os":"%s","variant":"%s"}' "$2" "$1" "$3"
    else
        printf '{"architecture":"%s","os":"%s"}' "$2" "$1"
    fi
}

# layout_init DIR: empty OCI layout skeleton.
layout_init() {
    rm -rf "$1"
    mkdir -p "$1/blobs/sha256"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
}

# blob_file LAYOUT FILE: moves FILE into the layout's blob store; sets B_DIGEST, B_SIZE.
blob_file() {
    local hex
    hex=$(sha256sum "$2" | cut -d' ' -f1)
    B_DIGEST=sha256:$hex
    B_SIZE=$(stat -c %s "$2")
    mv -f "$2" "$1/blobs/sha256/$hex"
    chmod 0644 "$1/blobs/sha256/$hex"
}

# blob_copy LAYOUT SRC_FILE: copies a file into the blob store (byte-identical); sets B_DIGEST, B_SIZE.
blob_copy() {
    cp "$2" "$1/blobs/sha256/.in"
    blob_file "$1" "$1/blobs/sha256/.in"
}

# blob_json LAYOUT JSON: stores the exact bytes of JSON (no newline); sets B_DIGEST, B_SIZE.
blob_json() {
    printf '%s' "$2" >"$1/blobs/sha256/.in"
    blob_file "$1" "$1/blobs/sha256/.in"
}

# tar_dir SRCDIR: deterministic tar of SRCDIR's contents on stdout (entries without "./").
tar_dir() {
    local names
    names=$(find "$1" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort)
    [ -n "$names" ] || die "tar_dir: '$1' is empty"
    # shellcheck disable=SC2086  # names are plain file names we created
    LC_ALL=C tar -C "$1" --sort=name --format=gnu --owner=0 --group=0 --numeric-owner \
        --mtime="@$EPOCH" --no-acls --no-xattrs --no-selinux -cf - $names
}

# layer_dir LAYOUT SRCDIR [GZIP_LEVEL]: gzip tar layer of SRCDIR into LAYOUT;
# sets L_DIGEST, L_SIZE (compressed blob) and L_DIFFID (sha256 of the uncompressed tar).
layer_dir() {
    local layout=$1 src=$2 level=${3:-6} tmp
    tmp="$layout/blobs/sha256/.layer"
    tar_dir "$src" >"$tmp.tar" || die "tar of $src failed"
    L_DIFFID=sha256:$(sha256sum "$tmp.tar" | cut -d' ' -f1)
    gzip -n -"$level" -c "$tmp.tar" >"$tmp.gz" || die "gzip of $src failed"
    rm -f "$tmp.tar"
    blob_file "$layout" "$tmp.gz"
    L_DIGEST=$B_DIGEST
    L_SIZE=$B_SIZE
}

# diffid_of_blob LAYOUT DIGEST: sha256 of the decompressed gzip blob.
diffid_of_blob() {
    echo "sha256:$(gzip -dc "$1/blobs/sha256/${2#sha256:}" | sha256sum | cut -d' ' -f1)"
}

# descriptor MEDIATYPE DIGEST SIZE [EXTRA_JSON_MEMBERS]
descriptor() {
    printf '{"mediaType":"%s","digest":"%s","size":%s%s}' "$1" "$2" "$3" "${4:+,$4}"
}

# layout_tag LAYOUT MEDIATYPE DIGEST SIZE: index.json naming that descriptor `latest`.
layout_tag() {
    printf '{"schemaVersion":2,"mediaType":"%s","manifests":[%s]}' "$MT_INDEX" \
        "$(descriptor "$2" "$3" "$4" '"annotations":{"org.opencontainers.image.ref.name":"latest"}')" \
        >"$1/index.json"
}

# image_config OS ARCH VARIANT CONFIG_MEMBERS DIFFIDS_JSON_LIST HISTORY_JSON_LIST
image_config() {
    local variant=""
    [ -z "$3" ] || variant=$(printf ',"variant":"%s"' "$3")
    printf '{"created":"%s","architecture":"%s","os":"%s"%s,"config":{%s},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
        "$CREATED" "$2" "$1" "$variant" "$4" "$5" "$6"
}

history_entry() { # CREATED_BY
    printf '{"created":"%s","created_by":"%s"}' "$CREATED" "$1"
}

# image_manifest CONFIG_DESC LAYER_DESCS_JSON_LIST
image_manifest() {
    printf '{"schemaVersion":2,"mediaType":"%s","config":%s,"layers":[%s]}' "$MT_MANIFEST" "$1" "$2"
}

# busybox_rootfs DIR: the busybox base rootfs (fixed modes; umask-independent).
busybox_rootfs() {
    local d=$1 a
    rm -rf "$d"
    mkdir -p "$d"/{bin,etc,tmp,proc,sys,dev,root}
    cp "$BUSYBOX" "$d/bin/busybox"
    chmod 0755 "$d/bin/busybox"
    for a in "${APPLETS[@]}"; do ln -s busybox "$d/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$d/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\n' >"$d/etc/group"
    chmod 0644 "$d/etc/passwd" "$d/etc/group"
    chmod 0755 "$d" "$d"/{bin,etc,proc,sys,dev}
    chmod 0700 "$d/root"
    chmod 1777 "$d/tmp"
}

# build_busybox_base LAYOUT WORKDIR: base layer into LAYOUT; sets BASE_DIGEST BASE_SIZE BASE_DIFFID.
build_busybox_base() {
    busybox_rootfs "$2/rootfs"
    layer_dir "$1" "$2/rootfs"
    BASE_DIGEST=$L_DIGEST BASE_SIZE=$L_SIZE BASE_DIFFID=$L_DIFFID
    rm -rf "$2/rootfs"
}

# busybox_image LAYOUT WORKDIR [EXTRA_LAYER_DIR...]: linux image = base layer + optional layers,
# with the base blob taken from $BASE_BLOB if set (byte-identical reuse). Tags it latest.
# Sets M_DIGEST, M_SIZE (manifest).
busybox_image() {
    local layout=$1 work=$2 layers diffids history cfg extra
    shift 2
    layout_init "$layout"
    if [ -n "${BASE_BLOB:-}" ]; then
        blob_copy "$layout" "$BASE_BLOB"
        BASE_DIGEST=$B_DIGEST BASE_SIZE=$B_SIZE
        BASE_DIFFID=$(diffid_of_blob "$layout" "$B_DIGEST")
    else
        build_busybox_base "$layout" "$work"
    fi
    layers=$(descriptor "$MT_LAYER_GZ" "$BASE_DIGEST" "$BASE_SIZE")
    diffids="\"$BASE_DIFFID\""
    history=$(history_entry "make-test-images.sh: busybox rootfs")
    for extra in "$@"; do
        layer_dir "$layout" "$extra"
        layers+=",$(descriptor "$MT_LAYER_GZ" "$L_DIGEST" "$L_SIZE")"
        diffids+=",\"$L_DIFFID\""
        history+=",$(history_entry "make-test-images.sh: add $(basename "$extra")")"
    done
    host_platform
    cfg=$(image_config linux "$PLAT_ARCH" "$PLAT_VARIANT" \
        "\"Env\":[\"$IMAGE_PATH_ENV\"],\"Cmd\":[\"sh\"]" "$diffids" "$history")
    blob_json "$layout" "$cfg"
    blob_json "$layout" "$(image_manifest "$(descriptor "$MT_CONFIG" "$B_DIGEST" "$B_SIZE")" "$layers")"
    M_DIGEST=$B_DIGEST M_SIZE=$B_SIZE
    layout_tag "$layout" "$MT_MANIFEST" "$M_DIGEST" "$M_SIZE"
}

# check_layout LAYOUT IS_IMAGE(0|1): skopeo must read it.
check_layout() {
    local out
    out=$(skopeo inspect --raw "oci:$1:latest" 2>&1) \
        || die "skopeo inspect --raw oci:$1:latest failed: $out"
    if [ "$2" -eq 1 ]; then
        out=$(skopeo inspect "oci:$1:latest" 2>&1) \
            || die "skopeo inspect oci:$1:latest failed: $out"
    fi
}

# --- main --------------------------------------------------------------------------------------
main() {
    [ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
    local here repo out work name
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    repo=$(cd "$here/../.." && pwd)
    BUSYBOX=${BUSYBOX:-/bin/busybox}
    HELLO_WASM=${HELLO_WASM:-$repo/wasm-examples/bin/hello.wasm}
    [ -x "$BUSYBOX" ] || die "$BUSYBOX not found: run scripts/install-deps.sh (package busybox-static)"
    [ -f "$HELLO_WASM" ] || die "$HELLO_WASM not found (set HELLO_WASM or restore wasm-examples/bin/hello.wasm)"
    command -v skopeo >/dev/null || die "skopeo not found: run scripts/install-deps.sh (package skopeo)"
    tar --sort=name --version >/dev/null 2>&1 || die "GNU tar with --sort=name (>= 1.28) needed"

    mkdir -p "$1" || die "cannot create OUT_DIR '$1'"
    out=$(cd "$1" && pwd -P)
    # parallel callers on the same OUT_DIR: one builds, the others wait and rebuild identically
    exec 9>"$out/.lock"
    flock 9 || die "flock $out/.lock failed"
    work=$(mktemp -d "$out/.work.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" EXIT
    local -A digest=()

    # busybox ------------------------------------------------------------------------------
    BASE_BLOB="" busybox_image "$work/busybox" "$work"
    digest[busybox]=$M_DIGEST
    local bb_digest=$M_DIGEST bb_size=$M_SIZE base_digest=$BASE_DIGEST

    # busybox-extra: same base blob (copied, so byte-identical) + /etc/extra.txt ------------
    mkdir -p "$work/extra/etc"
    printf 'pouch test extra layer\n' >"$work/extra/etc/extra.txt"
    chmod 0755 "$work/extra" "$work/extra/etc"
    chmod 0644 "$work/extra/etc/extra.txt"
    BASE_BLOB="$work/busybox/blobs/sha256/${base_digest#sha256:}" \
        busybox_image "$work/busybox-extra" "$work" "$work/extra"
    [ "$BASE_DIGEST" = "$base_digest" ] || die "busybox-extra base layer differs from busybox's"
    digest[busybox-extra]=$M_DIGEST

    # wasm: OCI artifact (CNCF TAG-Runtime wasm-oci-artifact, as the oci-wasm crate writes it) ---
    local L="$work/wasm" wasm_digest wasm_size cfg
    layout_init "$L"
    blob_copy "$L" "$HELLO_WASM"
    wasm_digest=$B_DIGEST wasm_size=$B_SIZE
    # field order and "component":null as serde serialises oci_wasm::WasmConfig for a module
    cfg=$(printf '{"created":"%s","author":"pouch-tests","architecture":"wasm","os":"wasip1","layerDigests":["%s"],"component":null}' \
        "$CREATED" "$wasm_digest")
    blob_json "$L" "$cfg"
    blob_json "$L" "$(image_manifest "$(descriptor "$MT_WASM_CONFIG" "$B_DIGEST" "$B_SIZE")" \
        "$(descriptor "$MT_WASM_LAYER" "$wasm_digest" "$wasm_size")")"
    layout_tag "$L" "$MT_MANIFEST" "$B_DIGEST" "$B_SIZE"
    digest[wasm]=$B_DIGEST

    # wasm-image: compat style (ordinary image, wasm platform, /hello.wasm in a tar layer) ------
    L="$work/wasm-image"
    layout_init "$L"
    mkdir -p "$work/wasmroot"
    cp "$HELLO_WASM" "$work/wasmroot/hello.wasm"
    chmod 0755 "$work/wasmroot" "$work/wasmroot/hello.wasm"
    layer_dir "$L" "$work/wasmroot"
    cfg=$(image_config "$WASM_IMAGE_OS" wasm "" '"Entrypoint":["/hello.wasm"]' "\"$L_DIFFID\"" \
        "$(history_entry "make-test-images.sh: add hello.wasm")")
    blob_json "$L" "$cfg"
    blob_json "$L" "$(image_manifest "$(descriptor "$MT_CONFIG" "$B_DIGEST" "$B_SIZE")" \
        "$(descriptor "$MT_LAYER_GZ" "$L_DIGEST" "$L_SIZE")")"
    layout_tag "$L" "$MT_MANIFEST" "$B_DIGEST" "$B_SIZE"
    digest[wasm-image]=$B_DIGEST
    local wi_digest=$B_DIGEST wi_size=$B_SIZE

    # hybrid: index of busybox (linux) + wasm-image (wasm) -----------------------------------
    L="$work/hybrid"
    layout_init "$L"
    cp "$work/busybox/blobs/sha256/"* "$work/wasm-image/blobs/sha256/"* "$L/blobs/sha256/"
    host_platform
    blob_json "$L" "$(printf '{"schemaVersion":2,"mediaType":"%s","manifests":[%s,%s]}' "$MT_INDEX" \
        "$(descriptor "$MT_MANIFEST" "$bb_digest" "$bb_size" "\"platform\":$(platform_json linux "$PLAT_ARCH" "$PLAT_VARIANT")")" \
        "$(descriptor "$MT_MANIFEST" "$wi_digest" "$wi_size" "\"platform\":$(platform_json "$WASM_IMAGE_OS" wasm)")")"
    layout_tag "$L" "$MT_INDEX" "$B_DIGEST" "$B_SIZE"
    digest[hybrid]=$B_DIGEST

    # validate, then move into place --------------------------------------------------------
    for name in busybox busybox-extra wasm wasm-image hybrid; do
        case "$name" in
            wasm) check_layout "$work/$name" 0 ;;   # artifact: not an image, raw manifest only
            *) check_layout "$work/$name" 1 ;;
        esac
    done
    : >"$work/digests.txt"
    for name in busybox busybox-extra wasm wasm-image hybrid; do
        rm -rf "${out:?}/$name"
        mv "$work/$name" "$out/$name"
        printf '%s %s\n' "$name" "${digest[$name]}" | tee -a "$work/digests.txt"
    done
    mv -f "$work/digests.txt" "$out/digests.txt"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
