#!/usr/bin/env bash
# After the test suite: fail if anything the tests created is still there: cgroups under
# /pouch-test (in every hierarchy), processes in them, mounts of test directories, state
# directories of test runtimes.
#
# Usage: scripts/check-leaks.sh
set -euo pipefail
here=$(cd -- "$(dirname -- "$0")" && pwd)
fail=0
report() { printf 'check-leaks: LEAK: %s\n' "$*" >&2; fail=1; }

# Cgroups (and the processes in them): the test root may exist, empty; nothing below it.
# Remove the empty parents the tests leave (runc, like us, never removes a cgroup's parents).
while IFS= read -r mp; do
    d="$mp/pouch-test"
    [ -d "$d" ] || continue
    while IFS= read -r sub; do
        [ "$sub" = "$d" ] && continue
        report "cgroup $sub"
        [ -f "$sub/cgroup.procs" ] && while read -r pid; do
            report "process $pid ($(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null)) in $sub"
        done < "$sub/cgroup.procs"
    done < <(find "$d" -mindepth 1 -type d 2>/dev/null)
    [ "$fail" -eq 0 ] && rmdir "$d" 2>/dev/null || true
done < <(awk '{ split($0, a, " - "); split(a[2], t, " "); if (t[1] == "cgroup" || t[1] == "cgroup2") { split(a[1], f, " "); print f[5] } }' /proc/self/mountinfo)

# Mounts of test directories (bundles, state roots, podman/containerd state).
if grep -E ' /tmp/(pouch-|\.tmp)' /proc/self/mountinfo >/dev/null; then
    grep -E ' /tmp/(pouch-|\.tmp)' /proc/self/mountinfo | while read -r line; do report "mount: $line"; done
    fail=1
fi

# State directories of test runtimes (the tests' temporary roots are named pouch-root*).
for d in /tmp/pouch-root*; do
    [ -e "$d" ] && report "state root left: $d"
done

# Processes still running a test runtime binary.
for p in /proc/[0-9]*; do
    exe=$(readlink "$p/exe" 2>/dev/null || true)
    case "$exe" in
        */target/*/pouch-runtime) report "pouch-runtime process ${p#/proc/}: $(tr '\0' ' ' < "$p/cmdline")" ;;
    esac
done

if [ "$fail" -ne 0 ]; then
    echo "check-leaks: the test suite left things behind (see above)" >&2
    exit 1
fi
echo "check-leaks: nothing left behind (cgroups, processes, mounts, state directories)"
: "$here"
