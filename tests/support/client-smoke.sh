#!/usr/bin/env bash
# Smoke test of an OCI runtime under the real clients: a private podman and a private
# containerd (runc shim v2), each running `echo hi` in the local busybox image.
#
# Usage: tests/support/client-smoke.sh [--argv-log DIR] [RUNTIME]
#   RUNTIME         runtime binary (default /usr/sbin/runc; e.g. target/debug/pouch-runtime)
#   --argv-log DIR  run RUNTIME through tests/support/runtime-logger.sh and keep the argv log
#                   of every call in DIR/pouch-runtime.log
# Everything lives in a fresh temporary directory (override the parent with TMPDIR) and
# unique cgroups under /pouch-test/smoke-<pid>; all of it is removed at exit, success or not.
# Prints one line per check and "N passed, N failed" last; exit status 1 if any failed.
set -euo pipefail

die() { printf 'client-smoke.sh: error: %s\n' "$*" >&2; exit 2; }

argv_log=""
runtime=/usr/sbin/runc
while [ "$#" -gt 0 ]; do
    case "$1" in
        --argv-log) [ "$#" -ge 2 ] || die "--argv-log needs a directory"; argv_log=$2; shift 2 ;;
        -*) die "unknown option '$1'" ;;
        *) runtime=$1; shift ;;
    esac
done
runtime=$(command -v -- "$runtime") || die "runtime not found"
case "$runtime" in /*) ;; *) runtime="$PWD/$runtime" ;; esac

here=$(cd -- "$(dirname -- "$0")" && pwd -P)
root=$(cd -- "$here/../.." && pwd -P)
work=$(mktemp -d "${TMPDIR:-/tmp}/pouch-smoke.XXXXXX")
cg="/pouch-test/smoke-$$"
ctrd="$work/ctrd"
pm="$work/podman"

cleanup() {
    set +e
    "$here/podman-cleanup.sh" "$pm" >/dev/null 2>&1
    [ -f "$ctrd/config.toml" ] && "$here/containerd.sh" stop "$ctrd"
    "$here/cgroup-cleanup.sh" --kill "$cg" >/dev/null 2>&1
    rm -rf --one-file-system -- "$work"
}
trap cleanup EXIT

if [ -n "$argv_log" ]; then
    runtime=$("$here/runtime-logger.sh" "$argv_log" "$runtime" pouch-runtime)
fi

passed=0
failed=0
check() {  # check NAME EXPECTED COMMAND...
    local name=$1 want=$2 got
    shift 2
    if got=$("$@" 2>"$work/err") && [ "$got" = "$want" ]; then
        printf 'ok   %s\n' "$name"
        passed=$((passed + 1))
    else
        printf 'FAIL %s: wanted %q, got %q\n' "$name" "$want" "${got:-}"
        sed 's/^/     /' "$work/err"
        failed=$((failed + 1))
    fi
}

rootfs=$("$root/tests/fixtures/make-busybox-rootfs.sh" "$work/rootfs")
"$here/podman-image.sh" "$pm" "$rootfs" localhost/pouch-busybox:latest "$work/busybox-oci.tar" >/dev/null

# --- podman ------------------------------------------------------------------------------
eval "$("$here/podman-env.sh" "$pm")"
check "podman run --rm echo hi" hi \
    podman --runtime "$runtime" run --rm --cgroup-parent="$cg/podman" localhost/pouch-busybox echo hi
"$here/podman-cleanup.sh" "$pm" "$cg/podman" >/dev/null

# --- containerd + containerd-shim-runc-v2 ------------------------------------------------
addr=$("$here/containerd.sh" start "$ctrd")
ctr --address "$addr" -n pouch-test images import "$work/busybox-oci.tar" >/dev/null
check "ctr run --rm --runc-binary echo hi" hi \
    ctr --address "$addr" -n pouch-test run --rm --runc-binary "$runtime" --runc-root "$ctrd/runc" \
        --cgroup "$cg/ctr1" localhost/pouch-busybox:latest smoke-$$ echo hi

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
