#!/usr/bin/env bash
# Undo what a private podman (tests/support/podman-env.sh STATEDIR) left behind.
#
# Usage: tests/support/podman-cleanup.sh STATEDIR [CGROUP_PARENT...]
#   removes every container of that podman (podman rm --all --force --time 0, with
#   --runtime RUNTIME if POUCH_PODMAN_RUNTIME is set, else the configured runc),
#   unmounts whatever is still mounted under STATEDIR (deepest first), and removes the given
#   cgroup parents (e.g. /pouch-test/podman-123: podman leaves its "conmon" child cgroup and
#   the parent behind with cgroupfs) through tests/support/cgroup-cleanup.sh --kill.
# STATEDIR itself is left for the caller to delete. Exit 1 if something could not be removed.
set -euo pipefail

die() { printf 'podman-cleanup.sh: error: %s\n' "$*" >&2; exit 2; }
log() { printf 'podman-cleanup.sh: %s\n' "$*" >&2; }

[ "$#" -ge 1 ] || die "usage: $0 STATEDIR [CGROUP_PARENT...]"
[ -d "$1" ] || exit 0
statedir=$(cd -- "$1" && pwd -P)
shift
here=$(cd -- "$(dirname -- "$0")" && pwd -P)
status=0

if [ -f "$statedir/containers.conf" ] && command -v podman >/dev/null; then
    eval "$("$here/podman-env.sh" "$statedir")"
    rt=()
    [ -n "${POUCH_PODMAN_RUNTIME:-}" ] && rt=(--runtime "$POUCH_PODMAN_RUNTIME")
    podman "${rt[@]}" rm --all --force --time 0 >/dev/null 2>&1 || {
        log "podman rm --all failed; continuing"
        status=1
    }
    podman "${rt[@]}" unmount --all >/dev/null 2>&1 || true
fi

findmnt -rn -o TARGET | awk -v p="$statedir/" 'index($0, p) == 1' | sort -r |
    while IFS= read -r mp; do
        umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "could not unmount $mp"
    done

if [ "$#" -gt 0 ]; then
    "$here/cgroup-cleanup.sh" --kill "$@" || status=1
fi
exit "$status"
