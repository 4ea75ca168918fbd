#!/usr/bin/env bash
# Build the local busybox image in a private podman store, with no network.
#
# Usage: tests/support/podman-image.sh STATEDIR ROOTFS [NAME] [OCI_ARCHIVE]
#   STATEDIR     the private podman of tests/support/podman-env.sh (set up if needed)
#   ROOTFS       a tree from tests/fixtures/make-busybox-rootfs.sh
#   NAME         image name, default localhost/pouch-busybox:latest
#   OCI_ARCHIVE  optional: also write the image as an oci-archive there (for
#                `ctr images import`); rewritten only when the image changed
#
# `podman import` of a tar of ROOTFS (the fixture stamp left out) with CMD ["/bin/sh"].
# Idempotent: the image carries a label with the rootfs stamp; when an image of that name
# with that label exists nothing is imported again. Prints NAME.
set -euo pipefail

die() { printf 'podman-image.sh: error: %s\n' "$*" >&2; exit 1; }

if [ "$#" -lt 2 ] || [ "$#" -gt 4 ]; then die "usage: $0 STATEDIR ROOTFS [NAME] [OCI_ARCHIVE]"; fi
statedir=$1
rootfs=$2
name=${3:-localhost/pouch-busybox:latest}
archive=${4:-}

[ -x "$rootfs/bin/busybox" ] || die "'$rootfs' is not a busybox rootfs (build it with tests/fixtures/make-busybox-rootfs.sh)"
here=$(cd -- "$(dirname -- "$0")" && pwd -P)
eval "$("$here/podman-env.sh" "$statedir")"

stamp=$(cat "$rootfs/.pouch-fixture" 2>/dev/null || true)
[ -n "$stamp" ] || stamp="unstamped-$(date +%s%N)"
label="io.pouch.test.rootfs"

current=$(podman image inspect --format "{{ index .Labels \"$label\" }}" "$name" 2>/dev/null || true)
changed=0
if [ "$current" != "$stamp" ]; then
    changed=1
    podman image rm -f "$name" >/dev/null 2>&1 || true
    tar -C "$rootfs" --exclude=./.pouch-fixture --numeric-owner -cf - . |
        podman import --quiet \
            --change 'CMD ["/bin/sh"]' \
            --change 'ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin' \
            --change "LABEL $label=\"$stamp\"" \
            --message "pouch test busybox" \
            - "$name" >/dev/null ||
        die "podman import of $rootfs as $name failed"
fi

if [ -n "$archive" ] && { [ "$changed" -eq 1 ] || [ ! -s "$archive" ]; }; then
    mkdir -p -- "$(dirname -- "$archive")"
    rm -f -- "$archive.tmp"
    podman save --quiet --format oci-archive -o "$archive.tmp" "$name" >/dev/null ||
        die "podman save of $name to $archive failed"
    mv -f -- "$archive.tmp" "$archive"
fi
printf '%s\n' "$name"
