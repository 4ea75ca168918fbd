#!/usr/bin/env bash
# Install every Debian package that building Pouch and running its tests and
# benchmarks need. Idempotent: runs `apt-get update` (once) and `apt-get install`
# only when something is missing, so a second run costs a few dpkg queries.
#
# Usage: scripts/install-deps.sh [--check]
#   --check   only report what is missing; exit 1 if anything is.
set -euo pipefail

# One package a line, with why we need it.
PACKAGES=(
    build-essential        # cc as the Rust linker, libc headers
    pkg-config             # finds libseccomp for the build
    libseccomp-dev         # seccomp (libseccomp) for native-runner
    busybox-static         # /bin/busybox: the test rootfs (tests/fixtures/make-busybox-rootfs.sh)
    runc                   # reference runtime: tests, benchmarks
    crun                   # reference runtime: benchmarks
    podman                 # real client test (pulls conmon)
    conmon                 # podman's container monitor
    containerd             # real client test: ctr + containerd-shim-runc-v2
    skopeo                 # image copies (oci-archive for containerd)
    uidmap                 # newuidmap/newgidmap: user-namespace tests, rootless podman
    fuse-overlayfs         # podman storage fallback
    iproute2               # ip: network namespace checks
    util-linux             # unshare, nsenter, mount, umount, findmnt, mountpoint
    bsdutils               # script(1): run things under a pty
    procps                 # ps, pgrep -P, pkill by pid list helpers
    coreutils              # sha256sum, timeout, mktemp, realpath
    tar                    # podman import of the busybox rootfs
    findutils
    psmisc                 # fuser: find processes holding a mount
    hyperfine              # benchmarks
    time                   # /usr/bin/time -v for CPU/RSS in benchmarks
    ca-certificates
    docker-registry        # distribution 2.8 registry: local pull tests (tests/support/registry.sh)
    apache2-utils          # htpasswd -B: bcrypt credentials for the auth registry
    curl                   # registry HTTP API: readiness, manifest checks, artifact push
    jq                     # reads OCI layout JSON in tests/support/push-test-images.sh
)

log() { printf 'install-deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_only=0
case "${1:-}" in
    --check) check_only=1 ;;
    "") ;;
    *) die "unknown argument '$1' (usage: $0 [--check])" ;;
esac

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian/Ubuntu only"

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    log "all ${#PACKAGES[@]} packages present"
    exit 0
fi

if [ "$check_only" -eq 1 ]; then
    log "missing: ${missing[*]}"
    exit 1
fi

[ "$(id -u)" -eq 0 ] || die "missing packages (${missing[*]}); run as root to install them"

export DEBIAN_FRONTEND=noninteractive
aptlog=$(mktemp /tmp/pouch-install-deps.XXXXXX)
trap 'rm -f "$aptlog"' EXIT

log "installing: ${missing[*]}"
if ! apt-get update -qq >"$aptlog" 2>&1; then
    cat "$aptlog" >&2
    die "apt-get update failed (see above)"
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$aptlog" 2>&1; then
    tail -n 40 "$aptlog" >&2
    die "apt-get install failed for: ${missing[*]} (see above)"
fi

# Verify the binaries the scripts rely on really exist now.
for bin in /bin/busybox runc crun podman conmon containerd ctr containerd-shim-runc-v2 \
           skopeo unshare nsenter script findmnt mountpoint ip hyperfine /usr/bin/time pkg-config cc \
           docker-registry htpasswd curl jq; do
    command -v "$bin" >/dev/null 2>&1 || [ -x "$bin" ] || die "'$bin' still missing after install"
done
pkg-config --exists libseccomp || die "pkg-config cannot find libseccomp after install"
log "done"
