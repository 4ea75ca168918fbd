#!/usr/bin/env bash
# Pushes the layouts made by tests/support/make-test-images.sh to a (test) registry over plain
# HTTP, then checks every tag through the registry API.
#
# Usage: tests/support/push-test-images.sh OUT_DIR REGISTRY [--creds USER:PASS]
#   REGISTRY is HOST:PORT as printed by tests/support/registry.sh start.
# Pushes (repository:tag ← source):
#   test/busybox:latest        ← OUT_DIR/busybox        OCI manifest, digests preserved
#   test/busybox:v2s2          ← OUT_DIR/busybox        converted to Docker schema 2 (skopeo --format v2s2)
#   test/busybox-extra:latest  ← OUT_DIR/busybox-extra  (its base layer blob is mounted/deduplicated)
#   test/wasm:latest           ← OUT_DIR/wasm           wasm OCI artifact (see PUSH_WASM_WITH)
#   test/wasm-image:latest     ← OUT_DIR/wasm-image
#   test/hybrid:latest         ← OUT_DIR/hybrid         index + both manifests (skopeo copy --all)
# Prints `REPO:TAG sha256:<manifest digest>` per tag on stdout (as the registry reports it) and
# writes the same lines to OUT_DIR/pushed.txt.
#
# PUSH_WASM_WITH=skopeo (default; falls back to curl if skopeo fails) | curl (registry HTTP API
# only: monolithic blob uploads + manifest PUT, see push_layout_curl).
set -euo pipefail

log() { printf 'push-test-images: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { echo "usage: $0 OUT_DIR REGISTRY [--creds USER:PASS]" >&2; exit 2; }

ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'

[ $# -ge 2 ] || usage
OUT=$1 REG=$2
shift 2
CREDS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --creds) [ $# -ge 2 ] || usage; CREDS=$2; shift 2 ;;
        --creds=*) CREDS=${1#--creds=}; shift ;;
        *) usage ;;
    esac
done
if [ -n "$CREDS" ]; then
    case "$CREDS" in *?:?*) ;; *) die "--creds '$CREDS': expected USER:PASS" ;; esac
fi
case "$REG" in
    */*|http:*|https:*) die "REGISTRY '$REG': give HOST:PORT only (e.g. 127.0.0.1:24117), no scheme or path" ;;
esac
PUSH_WASM_WITH=${PUSH_WASM_WITH:-skopeo}
case "$PUSH_WASM_WITH" in skopeo|curl) ;; *) die "PUSH_WASM_WITH='$PUSH_WASM_WITH': use skopeo or curl" ;; esac

for c in skopeo curl jq; do
    command -v "$c" >/dev/null || die "$c not found: run scripts/install-deps.sh"
done
[ -d "$OUT" ] || die "OUT_DIR '$OUT' does not exist: run tests/support/make-test-images.sh $OUT first"
OUT=$(cd "$OUT" && pwd -P)
for n in busybox busybox-extra wasm wasm-image hybrid; do
    [ -f "$OUT/$n/index.json" ] || die "$OUT/$n is not an OCI layout: run tests/support/make-test-images.sh $OUT first"
done

WORK=$(mktemp -d /tmp/pouch-push.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# Own permissive policy: do not depend on /etc/containers/policy.json being present.
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$WORK/policy.json"

CURL_AUTH=()
[ -z "$CREDS" ] || CURL_AUTH=(-u "$CREDS")

# skopeo_copy SRC DST_REF DIGESTFILE [EXTRA_FLAGS...]
skopeo_copy() {
    local src=$1 dst=$2 df=$3
    shift 3
    local args=(--policy "$WORK/policy.json" copy -q --dest-tls-verify=false --digestfile "$df" "$@")
    [ -z "$CREDS" ] || args+=(--dest-creds "$CREDS")
    if ! skopeo "${args[@]}" "$src" "docker://$REG/$dst" >"$WORK/skopeo.log" 2>&1; then
        cat "$WORK/skopeo.log" >&2
        log "skopeo copy $src → docker://$REG/$dst failed (output above)"
        return 1
    fi
}

# http METHOD URL OUTFILE [CURL_ARGS...]: prints the HTTP status; headers in OUTFILE.h.
http() {
    local m=$1 url=$2 o=$3
    shift 3
    local code
    rm -f "$o"; : >"$o.h"
    code=$(curl -s -X "$m" "${CURL_AUTH[@]}" -D "$o.h" -o "$o" -w '%{http_code}' "$@" "$url") || true
    echo "${code:-000}"
}
header() { # FILE NAME: value of the last NAME header (case-insensitive), CR stripped
    grep -i "^$2:" "$1" | tail -n 1 | cut -d: -f2- | sed -e 's/^ *//' | tr -d '\r'
}

# push_layout_curl LAYOUT REPO TAG: push the `latest` manifest of an OCI layout with plain
# registry API calls (for content skopeo refuses; single manifest only, not an index):
#   HEAD /v2/REPO/blobs/DIGEST (skip if present), else POST /v2/REPO/blobs/uploads/ → 202 +
#   Location, then PUT <Location>&digest=DIGEST with the whole blob (monolithic upload) → 201;
#   finally PUT /v2/REPO/manifests/TAG with Content-Type = the manifest's mediaType → 201.
# Prints the Docker-Content-Digest the registry answered.
push_layout_curl() {
    local layout=$1 repo=$2 tag=$3 mdesc mdigest mtype mfile d code loc sep base="http://$REG"
    mdesc=$(jq -c '[.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "latest")][0]' "$layout/index.json")
    [ "$mdesc" != null ] || die "$layout/index.json has no manifest tagged latest"
    mdigest=$(jq -r .digest <<<"$mdesc")
    mtype=$(jq -r .mediaType <<<"$mdesc")
    mfile="$layout/blobs/sha256/${mdigest#sha256:}"
    [ -f "$mfile" ] || die "manifest blob $mfile missing"
    [ "$mtype" != application/vnd.oci.image.index.v1+json ] || die "push_layout_curl: $layout is an index; only single manifests are supported"
    for d in $(jq -r '.config.digest, .layers[].digest' "$mfile"); do
        local f="$layout/blobs/sha256/${d#sha256:}"
        [ -f "$f" ] || die "blob $f (from manifest $mdigest) missing"
        code=$(http HEAD "$base/v2/$repo/blobs/$d" "$WORK/r" -I)
        [ "$code" != 200 ] || continue
        code=$(http POST "$base/v2/$repo/blobs/uploads/" "$WORK/r" -H 'Content-Length: 0')
        [ "$code" = 202 ] || die "POST /v2/$repo/blobs/uploads/ answered $code (want 202; 401 = wrong or missing --creds): $(cat "$WORK/r" 2>/dev/null)"
        loc=$(header "$WORK/r.h" Location)
        [ -n "$loc" ] || die "POST /v2/$repo/blobs/uploads/ gave no Location header"
        case "$loc" in /*) loc="$base$loc" ;; esac
        case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
        code=$(http PUT "$loc${sep}digest=$d" "$WORK/r" -H 'Content-Type: application/octet-stream' --data-binary "@$f")
        [ "$code" = 201 ] || die "blob upload PUT of $d to $repo answered $code (want 201): $(cat "$WORK/r" 2>/dev/null)"
    done
    code=$(http PUT "$base/v2/$repo/manifests/$tag" "$WORK/r" -H "Content-Type: $mtype" --data-binary "@$mfile")
    [ "$code" = 201 ] || die "manifest PUT $repo:$tag answered $code (want 201): $(cat "$WORK/r" 2>/dev/null)"
    header "$WORK/r.h" Docker-Content-Digest
}

# verify REPO TAG WANT_DIGEST: GET the manifest with OCI+Docker Accept types; digest must match.
verify() {
    local repo=$1 tag=$2 want=$3 code got
    code=$(http GET "http://$REG/v2/$repo/manifests/$tag" "$WORK/v" -H "$ACCEPT")
    [ "$code" = 200 ] || die "GET /v2/$repo/manifests/$tag answered $code after push: $(cat "$WORK/v" 2>/dev/null)"
    got=$(header "$WORK/v.h" Docker-Content-Digest)
    [ "$got" = "$want" ] || die "$repo:$tag: registry digest $got != pushed $want"
    [ "$(sha256sum <"$WORK/v" | cut -d' ' -f1)" = "${want#sha256:}" ] \
        || die "$repo:$tag: manifest bytes do not hash to $want"
}

# Registry reachable and creds accepted? (clear message instead of a skopeo stack of errors)
code=$(http GET "http://$REG/v2/" "$WORK/r")
case "$code" in
    200) ;;
    401) if [ -n "$CREDS" ]; then die "registry $REG rejected --creds (401 on /v2/)"; else die "registry $REG needs auth (401 on /v2/): pass --creds USER:PASS"; fi ;;
    000) die "registry $REG not reachable: start one with tests/support/registry.sh start STATE_DIR" ;;
    *) die "GET http://$REG/v2/ answered $code (want 200)" ;;
esac

PUSHED=()
record() { # REPO:TAG DIGEST
    verify "${1%:*}" "${1##*:}" "$2"
    PUSHED+=("$1 $2")
}
digestfile() { tr -d '\n' <"$1"; }

skopeo_copy "oci:$OUT/busybox:latest" test/busybox:latest "$WORK/d1" --preserve-digests \
    || die "push of test/busybox:latest failed"
record test/busybox:latest "$(digestfile "$WORK/d1")"

skopeo_copy "oci:$OUT/busybox:latest" test/busybox:v2s2 "$WORK/d2" --format v2s2 \
    || die "push of test/busybox:v2s2 failed"
record test/busybox:v2s2 "$(digestfile "$WORK/d2")"

skopeo_copy "oci:$OUT/busybox-extra:latest" test/busybox-extra:latest "$WORK/d3" --preserve-digests \
    || die "push of test/busybox-extra:latest failed"
record test/busybox-extra:latest "$(digestfile "$WORK/d3")"

# skopeo 1.9.3 copies the wasm artifact unchanged (it only refuses to *inspect* or *convert*
# a non-image config: "unsupported image-specific operation on artifact with type ...").
wasm_digest=""
if [ "$PUSH_WASM_WITH" = skopeo ]; then
    if skopeo_copy "oci:$OUT/wasm:latest" test/wasm:latest "$WORK/d4" --preserve-digests; then
        wasm_digest=$(digestfile "$WORK/d4")
    else
        log "skopeo could not push the wasm artifact; falling back to the registry API (curl)"
    fi
fi
[ -n "$wasm_digest" ] || wasm_digest=$(push_layout_curl "$OUT/wasm" test/wasm latest)
record test/wasm:latest "$wasm_digest"

skopeo_copy "oci:$OUT/wasm-image:latest" test/wasm-image:latest "$WORK/d5" --preserve-digests \
    || die "push of test/wasm-image:latest failed"
record test/wasm-image:latest "$(digestfile "$WORK/d5")"

skopeo_copy "oci:$OUT/hybrid:latest" test/hybrid:latest "$WORK/d6" --all --preserve-digests \
    || die "push of test/hybrid:latest failed"
record test/hybrid:latest "$(digestfile "$WORK/d6")"
# the index's manifests must be there too (by digest)
for d in $(jq -r '.manifests[].digest' "$OUT/hybrid/blobs/sha256/$(digestfile "$WORK/d6" | cut -d: -f2)"); do
    verify test/hybrid "$d" "$d"
done

printf '%s\n' "${PUSHED[@]}" >"$OUT/pushed.txt.tmp"
mv -f "$OUT/pushed.txt.tmp" "$OUT/pushed.txt"
cat "$OUT/pushed.txt"
