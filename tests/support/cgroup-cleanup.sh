#!/usr/bin/env bash
# Remove (or just look for) test cgroups, in every mounted hierarchy: cgroup v1 controllers,
# named v1 hierarchies (name=systemd) and cgroup2 (e.g. /sys/fs/cgroup/unified on the hybrid
# layout, /sys/fs/cgroup on pure v2).
#
# Usage: tests/support/cgroup-cleanup.sh [--check] [--kill] CGPATH...
#   CGPATH   an absolute cgroup path, e.g. /pouch-test/podman (never "/")
#   --check  only list the cgroup directories that exist at or below CGPATH; exit 1 if any do
#   --kill   SIGKILL processes still in those cgroups (thawing v1 freezer / v2 cgroup.freeze
#            first); without it a populated cgroup is reported and left alone
# Directories are removed deepest first with rmdir (cgroupfs does not allow rm -r).
# Exit status: 0 when nothing is left, 1 otherwise.
set -euo pipefail

die() { printf 'cgroup-cleanup.sh: error: %s\n' "$*" >&2; exit 2; }
log() { printf 'cgroup-cleanup.sh: %s\n' "$*" >&2; }

check=0
kill_procs=0
paths=()
for arg in "$@"; do
    case "$arg" in
        --check) check=1 ;;
        --kill) kill_procs=1 ;;
        -*) die "unknown option '$arg'" ;;
        *) paths+=("$arg") ;;
    esac
done
[ "${#paths[@]}" -gt 0 ] || die "usage: $0 [--check] [--kill] CGPATH..."
for p in "${paths[@]}"; do
    case "$p" in
        /) die "refusing to clean the root cgroup" ;;
        /*) ;;
        *) die "cgroup path '$p' must be absolute" ;;
    esac
    case "/$p/" in */../*|*/./*) die "cgroup path '$p' must not contain . or .. components" ;; esac
done

# Mount points of every cgroup/cgroup2 filesystem in this mount namespace
# (mountinfo field 5 is the mount point; the fstype follows the " - " separator).
mounts=()
while IFS= read -r mp; do
    mounts+=("$mp")
done < <(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup" || $(i+1) == "cgroup2") print $5; break } }' /proc/self/mountinfo | sort -u)
[ "${#mounts[@]}" -gt 0 ] || die "no cgroup filesystem is mounted"

left=0
for p in "${paths[@]}"; do
    p=${p%/}
    for m in "${mounts[@]}"; do
        top="$m$p"
        [ -d "$top" ] || continue
        # deepest first
        while IFS= read -r dir; do
            if [ "$check" -eq 1 ]; then
                printf '%s\n' "$dir"
                left=1
                continue
            fi
            procs=$(cat "$dir/cgroup.procs" 2>/dev/null || true)
            if [ -n "$procs" ]; then
                if [ "$kill_procs" -eq 1 ]; then
                    if [ -w "$dir/freezer.state" ]; then echo THAWED >"$dir/freezer.state" 2>/dev/null || true; fi
                    if [ -w "$dir/cgroup.freeze" ]; then echo 0 >"$dir/cgroup.freeze" 2>/dev/null || true; fi
                    for pid in $procs; do kill -KILL "$pid" 2>/dev/null || true; done
                    for _ in $(seq 1 50); do
                        [ -z "$(cat "$dir/cgroup.procs" 2>/dev/null || true)" ] && break
                        sleep 0.1
                    done
                else
                    log "$dir still has processes: $(echo "$procs" | tr '\n' ' ')"
                fi
            fi
            # an exiting process can keep a v1 cgroup busy for a moment
            for _ in $(seq 1 20); do
                rmdir "$dir" 2>/dev/null && break
                [ -d "$dir" ] || break
                sleep 0.05
            done
            if [ -d "$dir" ]; then
                log "could not remove $dir"
                left=1
            fi
        done < <(find "$top" -depth -type d 2>/dev/null)
    done
done
exit "$left"
