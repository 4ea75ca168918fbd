#!/usr/bin/env bash
# A private containerd (Debian's containerd 1.6) for integration tests.
#
# Usage:
#   tests/support/containerd.sh start STATEDIR   # prints the grpc address (STATEDIR/containerd.sock)
#   tests/support/containerd.sh stop  STATEDIR
#
# start: writes STATEDIR/config.toml (root, state, grpc + ttrpc sockets, opt dir all under
#   STATEDIR; CRI and other heavy/unusable plugins disabled (not io.containerd.runtime.v1.linux:
#   containerd 1.6's tasks service fails to load without it); overlayfs snapshotter), starts
#   containerd in its own session with its log in STATEDIR/containerd.log, waits until
#   `ctr --address STATEDIR/containerd.sock version` answers and writes STATEDIR/containerd.pid.
#   Starting an already running instance just prints the address again.
# stop: kills and deletes every task and container this containerd still has (all namespaces),
#   ends containerd by the pid in STATEDIR/containerd.pid (TERM, then KILL after 10 s), ends any
#   shim still serving this address, and unmounts everything left under STATEDIR. STATEDIR
#   itself is left for the caller to remove.
#
# Notes: STATEDIR should be short; unix socket paths are limited to 107 bytes. containerd 1.6
# always puts shim sockets under /run/containerd/s/ and ctr's stdio fifos under
# /run/containerd/fifo/, whatever the config says; both are removed when tasks end.
set -euo pipefail

die() { printf 'containerd.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'containerd.sh: %s\n' "$*" >&2; }

[ "$#" -eq 2 ] || die "usage: $0 start|stop STATEDIR"
action=$1
mkdir -p -- "$2"
statedir=$(cd -- "$2" && pwd -P)
here=$(cd -- "$(dirname -- "$0")" && pwd -P)
sock="$statedir/containerd.sock"
pidfile="$statedir/containerd.pid"
config="$statedir/config.toml"
logfile="$statedir/containerd.log"

[ "${#sock}" -le 100 ] || die "STATEDIR '$statedir' is too long for a unix socket path; use a shorter one"

# Is PID a live containerd started with our config? (guards against a recycled pid)
is_ours() {
    local pid=$1 cmdline
    [ -r "/proc/$pid/cmdline" ] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case "$cmdline" in
        *containerd*"--config $config"*) return 0 ;;
        *) return 1 ;;
    esac
}

# Has PID exited? Gone, or a zombie (a dead child stays one until reaped, so kill -0 would
# still succeed). Not the same as `! is_ours`: right after `&` the child may not have exec'd
# containerd yet, and its cmdline is still this script's.
has_exited() {
    local stat state
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    state=${stat##*) }
    state=${state%% *}
    [ -z "$state" ] || [ "$state" = Z ]
}

running_pid() {
    local pid
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile")
    [ -n "$pid" ] && is_ours "$pid" && printf '%s\n' "$pid"
}

ctr_() { ctr --address "$sock" "$@"; }

write_config() {
    mkdir -p "$statedir/root" "$statedir/state" "$statedir/opt"
    cat >"$config.tmp" <<EOF
version = 2
root = "$statedir/root"
state = "$statedir/state"
oom_score = 0
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$statedir/opt"
  [plugins."io.containerd.snapshotter.v1.overlayfs"]
    root_path = ""
  [plugins."io.containerd.runtime.v2.task"]
    platforms = ["linux/amd64"]
EOF
    mv -f "$config.tmp" "$config"
}

start() {
    local pid _
    command -v containerd >/dev/null || die "containerd not found: run scripts/install-deps.sh"
    command -v ctr >/dev/null || die "ctr not found: run scripts/install-deps.sh"
    if pid=$(running_pid); then
        printf '%s\n' "$sock"
        return 0
    fi
    write_config
    rm -f "$sock" "$sock.ttrpc" "$pidfile"
    # setsid: its own session and process group, so a test harness's signals to our group
    # do not reach it and `stop` is the one way it ends.
    setsid containerd --config "$config" </dev/null >"$logfile" 2>&1 &
    pid=$!
    printf '%s\n' "$pid" >"$pidfile"
    for _ in $(seq 1 200); do
        if has_exited "$pid"; then
            tail -n 30 "$logfile" >&2 || true
            rm -f "$pidfile"
            die "containerd exited during start-up (log: $logfile)"
        fi
        if [ -S "$sock" ] && ctr_ version >/dev/null 2>&1; then
            printf '%s\n' "$sock"
            return 0
        fi
        sleep 0.05
    done
    tail -n 30 "$logfile" >&2 || true
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    die "containerd did not answer on $sock within 10 s (log: $logfile)"
}

# Kill and delete every task and container, in every namespace, through the API.
drain() {
    local ns id
    for ns in $(ctr_ namespaces list -q 2>/dev/null); do
        for id in $(ctr_ -n "$ns" tasks list -q 2>/dev/null); do
            ctr_ -n "$ns" tasks kill -a -s SIGKILL "$id" >/dev/null 2>&1 || true
        done
        for id in $(ctr_ -n "$ns" tasks list -q 2>/dev/null); do
            # -f is needed for a task that did not stop yet; wait briefly first
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                ctr_ -n "$ns" tasks delete "$id" >/dev/null 2>&1 && break
                sleep 0.2
            done
            ctr_ -n "$ns" tasks delete -f "$id" >/dev/null 2>&1 || true
        done
        for id in $(ctr_ -n "$ns" containers list -q 2>/dev/null); do
            ctr_ -n "$ns" containers delete "$id" >/dev/null 2>&1 || true
        done
    done
}

# Shims started for this containerd carry "-address STATEDIR/containerd.sock" in argv.
shim_pids() {
    local d pid cmdline
    for d in /proc/[0-9]*; do
        pid=${d#/proc/}
        cmdline=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
        case "$cmdline" in
            *containerd-shim*"-address $sock "*) printf '%s\n' "$pid" ;;
        esac
    done
}

# When containerd could not drain (it had died), container inits may still run. Kill each
# task's init (from the shim's init.pid) if it still is in the cgroup the bundle names (so a
# recycled pid is never hit), then remove that cgroup.
in_cgroup() {  # in_cgroup PID CGPATH: is PID in CGPATH in some hierarchy?
    local line
    [ -r "/proc/$1/cgroup" ] || return 1
    while IFS= read -r line; do
        case "$line" in *":$2") return 0 ;; esac
    done <"/proc/$1/cgroup"
    return 1
}

kill_orphan_tasks() {
    local pidf bundle pid cg _
    for pidf in "$statedir"/state/io.containerd.runtime.v2.task/*/*/init.pid; do
        [ -f "$pidf" ] || continue
        bundle=$(dirname -- "$pidf")
        pid=$(cat "$pidf" 2>/dev/null || true)
        cg=$(grep -o '"cgroupsPath":"[^"]*"' "$bundle/config.json" 2>/dev/null | head -n 1 | cut -d'"' -f4 || true)
        case "$pid" in ''|*[!0-9]*) continue ;; esac
        case "$cg" in /?*) ;; *) continue ;; esac
        if in_cgroup "$pid" "$cg"; then
            log "killing orphaned container init $pid (cgroup $cg)"
            kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
        fi
        "$here/cgroup-cleanup.sh" --kill "$cg" >/dev/null 2>&1 || log "cgroup $cg left behind"
    done
}

# After an unclean end (containerd or a shim killed) containerd 1.6 leaves, per task, the shim
# socket /run/containerd/s/<sha256 of "ADDRESS/NS/ID"> and ctr's fifo directory
# /run/containerd/fifo/<n>/ holding ID-stdin, ID-stdout, ID-stderr. Remove the ones that belong
# to this instance's tasks and that no process holds open.
remove_task_leftovers() {
    local bundle ns id hash f dir
    for bundle in "$statedir"/state/io.containerd.runtime.v2.task/*/*/; do
        [ -d "$bundle" ] || continue
        bundle=${bundle%/}
        id=$(basename -- "$bundle")
        ns=$(basename -- "$(dirname -- "$bundle")")
        hash=$(printf '%s' "$sock/$ns/$id" | sha256sum | cut -d' ' -f1)
        f="/run/containerd/s/$hash"
        if [ -S "$f" ] && ! fuser -s "$f" 2>/dev/null; then rm -f -- "$f"; fi
        for dir in /run/containerd/fifo/*/; do
            [ -p "$dir$id-stdout" ] || continue
            # only a directory with nothing but this id's fifos, none of them open
            [ -z "$(find "$dir" -mindepth 1 ! -name "$id-stdin" ! -name "$id-stdout" ! -name "$id-stderr" -print -quit)" ] || continue
            fuser -s "$dir"* 2>/dev/null && continue
            rm -rf -- "$dir"
        done
    done
}

unmount_all() {
    local mp
    # deepest first
    findmnt -rn -o TARGET | awk -v p="$statedir/" 'index($0, p) == 1' | sort -r | while IFS= read -r mp; do
        umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "could not unmount $mp"
    done
}

stop() {
    local pid _ shim
    if pid=$(running_pid); then
        drain
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "containerd $pid ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
    kill_orphan_tasks
    for shim in $(shim_pids); do
        log "ending leftover shim $shim"
        kill -KILL "$shim" 2>/dev/null || true
    done
    remove_task_leftovers
    unmount_all
    rm -f "$sock" "$sock.ttrpc"
}

case "$action" in
    start) start ;;
    stop) stop ;;
    *) die "unknown action '$action' (usage: $0 start|stop STATEDIR)" ;;
esac
