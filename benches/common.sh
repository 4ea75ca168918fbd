# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run): the one bundle config every runtime gets,
# the machine lines of the report, and the set-up and clean-up steps the scripts have in common.
# The functions below use the sourcing script's `die` and `log` and its `$repo` (the repository).
# shellcheck disable=SC2154  # repo: set by the sourcing script

# bench_base_config CONFIG ROOTFS: rewrites a `pouch-runtime spec` config.json for a benchmark:
# ociVersion 1.0.2-dev (the version runc 1.1's `runc spec` writes; crun 1.8 refuses newer ones
# with "unknown version specified"), no terminal, args ["/bin/true"], the absolute ROOTFS, and
# rlimits clamped to this process's hard limits (root may lack CAP_SYS_RESOURCE).
bench_base_config() {
    python3 - "$1" "$2" <<'PY'
import json, resource, sys
path, rootfs = sys.argv[1], sys.argv[2]
with open(path) as f:
    c = json.load(f)
c["ociVersion"] = "1.0.2-dev"
c["process"]["terminal"] = False
c["process"]["args"] = ["/bin/true"]
c["root"]["path"] = rootfs
for r in c["process"].get("rlimits", []):
    hard = resource.getrlimit(getattr(resource, r["type"]))[1]
    if hard != resource.RLIM_INFINITY:
        r["hard"] = min(r["hard"], hard)
        r["soft"] = min(r["soft"], r["hard"])
with open(path, "w") as f:
    json.dump(c, f, indent=2)
PY
}

# version_of BINARY: the first line of BINARY --version.
version_of() { "$1" --version 2>/dev/null | head -n 1; }

# bench_machine_lines: the CPU, kernel and cgroup lines of the report's "Machine" section.
bench_machine_lines() {
    echo "- CPU: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1))"
    echo "- kernel: $(uname -r); $(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release)"
    echo "- cgroups: $(if [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup)" = cgroup2 ]; then echo "v2"; elif [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2 ]; then echo "hybrid on the host; the benchmark's private mount namespace hides /sys/fs/cgroup/unified (v1 view for all)"; else echo "v1"; fi)"
}

# bench_memory_line: the memory line of the report's "Machine" section.
bench_memory_line() {
    echo "- memory: $(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
}

# bench_fs_of PATH: "FSTYPE, OPTIONS" of the file system PATH is on.
bench_fs_of() { findmnt -n -o FSTYPE,OPTIONS -T "$1" | awk '{print $1 ", " $2}'; }

# bench_loadavg: the 1, 5 and 15 minute load averages.
bench_loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# bench_source VAR [--no-changes]: where the binary under test comes from, for the report:
# "git REV; uncommitted changes in: FILES" (without the file list with --no-changes), or, when
# the environment variable VAR names the binary, "given by VAR; the repository is at git ...".
bench_source() {
    local rev changed="" src
    rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo '?')
    if [ "${2:-}" != --no-changes ]; then
        changed=$(git -C "$repo" status --porcelain --untracked-files=no 2>/dev/null | awk '{print $2}' | paste -sd' ' -)
    fi
    src="git $rev${changed:+; uncommitted changes in: $changed}"
    [ -z "${!1:-}" ] || src="given by $1; the repository is at $src"
    printf '%s\n' "$src"
}

# bench_need_tools TOOL...: dies unless every TOOL is on PATH.
bench_need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (scripts/install-deps.sh installs it)"
    done
}

# bench_uints NAME[:LABEL]...: dies unless every shell variable NAME holds a non-negative
# integer; the message names it as LABEL (default: NAME).
bench_uints() {
    local v name
    for v in "$@"; do
        name=${v%%:*}
        case "${!name}" in ''|*[!0-9]*) die "${v#*:} must be a non-negative integer (got '${!name}')" ;; esac
    done
}

# bench_binary VAR BIN NOTE CARGO_ARGS...: prints the absolute path of the binary under test: the
# one the environment variable VAR names, or else target/release/BIN, after
# `cargo build --release CARGO_ARGS` (a no-op when up to date; NOTE says how long it takes
# otherwise). Dies if there is no cargo to build with, or if the path is not an executable.
bench_binary() {
    local var=$1 bin=$2 note=$3 path
    shift 3
    if [ -n "${!var:-}" ]; then
        path=$(realpath -- "${!var}") || exit 1
    else
        command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup) or set $var"
        log "cargo build --release $* ($note) ..."
        (cd "$repo" && cargo build --release "$@" --quiet) >&2 || die "release build failed"
        path="$repo/target/release/$bin"
    fi
    [ -x "$path" ] || die "$path is not an executable"
    printf '%s\n' "$path"
}

# bench_logged LOG COMMAND...: runs COMMAND with its output in the file LOG; if it fails, dies
# with the tail of LOG.
bench_logged() {
    local out=$1
    shift
    "$@" >"$out" 2>&1 \
        || die "$(basename -- "$1") failed (tail of $out):$(printf '\n'; tail -n 20 "$out")"
}

# ---- cgroups and the private mount namespace ---------------------------------------------------

# bench_cgparent WORK: the cgroup parent of the run whose work directory is WORK,
# /pouch-bench/<WORK's name>.
bench_cgparent() { echo "/pouch-bench/$(basename -- "$1" | tr -c 'A-Za-z0-9\n' '-')"; }

# bench_hide_unified: in a private mount namespace on the hybrid layout (v1 controllers + cgroup2
# at /sys/fs/cgroup/unified), unmounts the cgroup2 mount so that crun 1.8, which refuses the
# hybrid layout, and for fairness everyone else, sees pure cgroup v1. Fails if there was nothing
# to unmount.
bench_hide_unified() {
    if [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup 2>/dev/null || true)" != "cgroup2" ] &&
       [ "$(findmnt -n -o FSTYPE /sys/fs/cgroup/unified 2>/dev/null || true)" = "cgroup2" ]; then
        umount /sys/fs/cgroup/unified
        return 0
    fi
    return 1
}

# bench_in_namespace VIEW COMMAND...: the benchmark's part inside its private mount namespace:
# hides the cgroup2 mount (bench_hide_unified; the log line says who gets the v1 VIEW), runs
# COMMAND, removes what crun left in the hidden mount (clean_hidden_unified), and exits with
# COMMAND's status.
bench_in_namespace() {
    local view=$1 rc=0
    shift
    if bench_hide_unified; then
        log "private mount namespace: /sys/fs/cgroup/unified unmounted (hybrid -> v1 view for $view)"
    fi
    "$@" || rc=$?
    clean_hidden_unified
    exit "$rc"
}

# clean_hidden_unified: in a private mount namespace where /sys/fs/cgroup/unified was unmounted,
# crun still makes its cgroup2 directories there: plain directories of the host's
# /sys/fs/cgroup tmpfs, invisible on the host and never removed. Remove ours (/pouch-bench).
clean_hidden_unified() {
    local d=/sys/fs/cgroup/unified/pouch-bench
    if [ -d "$d" ] && [ "$(findmnt -n -o FSTYPE -T "$d")" = tmpfs ]; then
        rm -rf --one-file-system -- "$d"
    fi
}

# ---- clean-up ----------------------------------------------------------------------------------

# bench_traps CLEANUP: runs the function CLEANUP on exit, also after SIGINT or SIGTERM.
bench_traps() {
    # shellcheck disable=SC2064  # the function's name, expanded now
    trap "$1" EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# bench_remove_cgroups CGPARENT: anything still in the cgroups under CGPARENT is a container of
# the run: kills it and removes the cgroups (host view: every v1 hierarchy and the cgroup2
# mount), then the shared /pouch-bench parent if no other run uses it. Fails if any is left.
bench_remove_cgroups() {
    local cg=$1 d rc=0
    "$repo/tests/support/cgroup-cleanup.sh" --kill "$cg" >/dev/null 2>&1 || true
    if ! "$repo/tests/support/cgroup-cleanup.sh" --check "$cg" >/dev/null 2>&1; then
        log "warning: cgroups left under $cg:"
        "$repo/tests/support/cgroup-cleanup.sh" --check "$cg" >&2 || true
        rc=1
    fi
    for d in /sys/fs/cgroup/*/pouch-bench /sys/fs/cgroup/pouch-bench; do
        if [ -d "$d" ]; then rmdir "$d" 2>/dev/null || true; fi
    done
    return "$rc"
}

# bench_unmount_under WORK [--warn]: unmounts whatever is mounted under WORK, deepest first
# (--warn: with a warning for each).
bench_unmount_under() {
    local mp
    findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1' | sort -r | while IFS= read -r mp; do
        [ "${2:-}" != --warn ] || log "warning: unmounting $mp"
        umount "$mp" 2>/dev/null || umount -l "$mp" || log "warning: could not unmount $mp"
    done
}

# bench_remove_work WORK: removes the work directory WORK, or keeps it with BENCH_KEEP=1. Fails,
# and keeps it, while anything is mounted under it.
bench_remove_work() {
    if findmnt -rn -o TARGET | awk -v p="$1/" 'index($0, p) == 1 { found = 1 } END { exit !found }'; then
        log "warning: mounts left under $1; not removing it"
        return 1
    elif [ "${BENCH_KEEP:-0}" = 1 ]; then
        log "kept $1"
    else
        rm -rf --one-file-system -- "$1"
    fi
}

# bench_write_out WORK [FOOTER]: with BENCH_OUT set, writes the report there: WORK/header.md,
# WORK/results.md and the line FOOTER, if given.
bench_write_out() {
    [ -n "${BENCH_OUT:-}" ] || return 0
    { cat "$1/header.md" "$1/results.md"; [ $# -lt 2 ] || printf '%s\n' "$2"; } >"$BENCH_OUT"
    log "report written to $BENCH_OUT"
}
