#!/usr/bin/env bash
# A private Docker registry (Debian's docker-registry = distribution 2.8) for image-pull tests.
# Everything (config, storage, htpasswd, log, pid) lives under STATE_DIR. Listens on
# 127.0.0.1:<free port> only, never on the system service's :5000, never via systemctl.
#
# Usage: tests/support/registry.sh start STATE_DIR [--auth USER:PASSWORD]
#            prints HOST:PORT (e.g. 127.0.0.1:24117) on stdout once /v2/ answers
#            (200 without auth, 401 with --auth: htpasswd, bcrypt)
#        tests/support/registry.sh stop STATE_DIR
#            ends the registry by the pid in STATE_DIR/pid (only if it is docker-registry)
#
# Files: STATE_DIR/config.yml, STATE_DIR/storage/, STATE_DIR/htpasswd (--auth),
#        STATE_DIR/registry.log (warn-level log + one access-log line per request),
#        STATE_DIR/pid, STATE_DIR/addr.
set -euo pipefail

REGISTRY_BIN=${REGISTRY_BIN:-/usr/bin/docker-registry}
START_TIMEOUT=${REGISTRY_START_TIMEOUT:-20}   # seconds to wait for /v2/

usage() {
    echo "usage: $0 start STATE_DIR [--auth USER:PASSWORD] | stop STATE_DIR" >&2
    exit 2
}
log() { printf 'registry.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# is_registry PID: true if PID is alive (not a zombie) and runs docker-registry.
is_registry() {
    local pid=$1 state cmd
    [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ "$state" != Z ] || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    case "$cmd" in *docker-registry*) return 0 ;; *) return 1 ;; esac
}

# gone PID: true once PID no longer exists or is a zombie.
gone() {
    local state
    [ -r "/proc/$1/stat" ] || return 0
    state=$(sed -e 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 0
    [ -z "$state" ] || [ "$state" = Z ]
}

# A port below the kernel's ephemeral range (so outgoing connections cannot hold it) that
# nothing listens on right now; the caller retries if the bind still races.
pick_port() {
    local lo hi port tries=0
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
    hi=$(( lo > 20000 ? lo - 1 : 32767 ))
    [ "$hi" -gt 20000 ] || hi=32767
    while :; do
        port=$(shuf -i "20000-$hi" -n 1)
        tries=$((tries + 1))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
        [ "$tries" -lt 50 ] || die "no free TCP port found on 127.0.0.1 in 20000-$hi after 50 tries"
    done
}

write_config() { # STATE PORT AUTH(0|1)
    local state=$1 port=$2 auth=$3 secret
    secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    {
        cat <<EOF
# written by tests/support/registry.sh: private test registry, do not edit
version: 0.1
log:
  level: warn
  formatter: text
  fields:
    service: pouch-test-registry
storage:
  filesystem:
    rootdirectory: $state/storage
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: $secret
  headers:
    X-Content-Type-Options: [nosniff]
EOF
        if [ "$auth" -eq 1 ]; then
            cat <<EOF
auth:
  htpasswd:
    realm: pouch-test-registry
    path: $state/htpasswd
EOF
        fi
    } >"$state/config.yml.tmp"
    chmod 600 "$state/config.yml.tmp"
    mv -f "$state/config.yml.tmp" "$state/config.yml"
}

cmd_start() {
    local state=$1 auth=0 user="" pass=""
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --auth)
                [ $# -ge 2 ] || die "--auth needs USER:PASSWORD"
                case "$2" in *:*) ;; *) die "--auth '$2': expected USER:PASSWORD" ;; esac
                user=${2%%:*}; pass=${2#*:}; auth=1
                if [ -z "$user" ] || [ -z "$pass" ]; then die "--auth '$2': empty user or password"; fi
                shift 2 ;;
            --auth=*)
                set -- --auth "${1#--auth=}" "${@:2}" ;;
            *) usage ;;
        esac
    done

    [ -x "$REGISTRY_BIN" ] || die "$REGISTRY_BIN not found: run scripts/install-deps.sh (package docker-registry)"
    command -v curl >/dev/null || die "curl not found: run scripts/install-deps.sh (package curl)"
    if [ "$auth" -eq 1 ]; then
        command -v htpasswd >/dev/null || die "htpasswd not found: run scripts/install-deps.sh (package apache2-utils)"
    fi

    mkdir -p "$state" || die "cannot create STATE_DIR '$state'"
    state=$(cd "$state" && pwd -P)
    if [ -f "$state/pid" ]; then
        local old
        old=$(cat "$state/pid")
        if is_registry "$old"; then
            die "a registry (pid $old, $(cat "$state/addr" 2>/dev/null || echo '?')) already runs for $state: run '$0 stop $state' first"
        fi
        rm -f "$state/pid" "$state/addr"
    fi
    mkdir -p "$state/storage"
    if [ "$auth" -eq 1 ]; then
        # -B bcrypt (the only hash distribution accepts), -b password from argv, -n to stdout
        htpasswd -Bbn "$user" "$pass" >"$state/htpasswd.tmp" 2>"$state/htpasswd.err" \
            || die "htpasswd -Bbn failed: $(cat "$state/htpasswd.err")"
        chmod 600 "$state/htpasswd.tmp"
        mv -f "$state/htpasswd.tmp" "$state/htpasswd"
        rm -f "$state/htpasswd.err"
    fi

    local want=200 attempt port pid code i
    [ "$auth" -eq 0 ] || want=401
    for attempt in 1 2 3 4 5; do
        port=$(pick_port)
        write_config "$state" "$port" "$auth"
        printf -- '--- %s start on 127.0.0.1:%s (attempt %s)\n' "$(date -u +%FT%TZ)" "$port" "$attempt" >>"$state/registry.log"
        # REGISTRY_* variables override the YAML in distribution: drop any from the caller.
        # setsid: own session, so a terminal ^C or the caller's process-group kill leaves it to `stop`.
        (
            for v in $(compgen -e); do case "$v" in REGISTRY_*) unset "$v" ;; esac; done
            cd "$state"
            exec setsid "$REGISTRY_BIN" serve "$state/config.yml" </dev/null >>"$state/registry.log" 2>&1
        ) &
        pid=$!
        echo "$pid" >"$state/pid"
        code=000
        for ((i = 0; i < START_TIMEOUT * 10; i++)); do
            if gone "$pid"; then break; fi
            code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$port/v2/" || true)
            [ "$code" = "$want" ] && break
            sleep 0.1
        done
        if [ "$code" = "$want" ] && is_registry "$pid"; then
            echo "127.0.0.1:$port" >"$state/addr"
            echo "127.0.0.1:$port"
            return 0
        fi
        if gone "$pid"; then
            wait "$pid" 2>/dev/null || true
            rm -f "$state/pid"
            if grep -q 'address already in use' "$state/registry.log"; then
                log "port $port taken meanwhile, retrying"
                continue
            fi
            tail -n 20 "$state/registry.log" >&2
            die "docker-registry exited at start (log above, full log $state/registry.log; config $state/config.yml)"
        fi
        kill -TERM "$pid" 2>/dev/null || true
        rm -f "$state/pid"
        tail -n 20 "$state/registry.log" >&2
        die "docker-registry (pid $pid) did not answer $want on http://127.0.0.1:$port/v2/ within ${START_TIMEOUT}s (last HTTP code $code); log $state/registry.log"
    done
    die "could not bind a free port after 5 attempts; see $state/registry.log"
}

cmd_stop() {
    local state=$1 pid i
    [ -d "$state" ] || die "STATE_DIR '$state' does not exist"
    if [ ! -f "$state/pid" ]; then
        log "no $state/pid: not running"
        return 0
    fi
    pid=$(cat "$state/pid")
    case "$pid" in ''|*[!0-9]*) die "$state/pid holds '$pid', not a pid; remove it by hand" ;; esac
    if ! is_registry "$pid"; then
        log "pid $pid is not a running docker-registry (already gone); removing $state/pid"
        rm -f "$state/pid" "$state/addr"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        gone "$pid" && break
        sleep 0.1
    done
    if ! gone "$pid"; then
        log "pid $pid ignored SIGTERM for 10s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            gone "$pid" && break
            sleep 0.1
        done
        gone "$pid" || die "docker-registry pid $pid still alive after SIGKILL"
    fi
    rm -f "$state/pid" "$state/addr"
}

[ $# -ge 2 ] || usage
case "$1" in
    start) shift; cmd_start "$@" ;;
    stop) [ $# -eq 2 ] || usage; cmd_stop "$2" ;;
    *) usage ;;
esac
