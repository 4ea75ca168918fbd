#!/usr/bin/env bash
# The main job on a fresh machine, no network needed:
#   1. `pouch run` of the wasm example image built into pouch, then a busybox image made from
#      Debian's busybox-static, loaded into the store and run like `docker run` would;
#   2. `pouch-runtime` driving an OCI bundle through create/start/kill/delete, as podman or
#      containerd would.
# Everything lives in a temporary data root and cgroup, removed at the end.
#
# Usage: sudo scripts/demo.sh
set -euo pipefail
cd -- "$(dirname -- "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/demo.sh: run as root" >&2; exit 1; }
scripts/install-deps.sh
cargo build --quiet --bin pouch --bin pouch-runtime
pouch_bin="$PWD/target/debug/pouch"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

pwork=$(mktemp -d /tmp/pouch-demo-data.XXXXXX)
export POUCH_DATA_ROOT="$pwork/data" POUCH_CGROUP_PARENT="/pouch-demo/cli-$$"
pouch_cleanup() {
    for c in $("$pouch_bin" ps -aq 2>/dev/null); do "$pouch_bin" rm -f "$c" >/dev/null 2>&1 || true; done
    rmdir /sys/fs/cgroup/*/pouch-demo/cli-$$ /sys/fs/cgroup/unified/pouch-demo/cli-$$ 2>/dev/null || true
    rmdir /sys/fs/cgroup/*/pouch-demo /sys/fs/cgroup/unified/pouch-demo 2>/dev/null || true
    rm -rf "$pwork"
}
trap pouch_cleanup EXIT
pouch() { "$pouch_bin" "$@"; }

printf '\n\033[1m== pouch: one CLI for wasm and Linux images ==\033[0m\n'
step pouch run --rm localhost/pouch-examples/hello "from the built-in wasm example"
step pouch run --rm localhost/pouch-examples/hello-component
# A Linux image without a registry: an OCI layout from busybox-static, saved as an archive.
tests/support/make-test-images.sh "$pwork/images" >/dev/null
skopeo copy --quiet "oci:$pwork/images/busybox:latest" "oci-archive:$pwork/busybox.tar:localhost/busybox:latest" >/dev/null
step pouch load -i "$pwork/busybox.tar"
step pouch images
step pouch run --rm --hostname demo localhost/busybox sh -c 'echo "hello from $(cat /etc/hostname), pid $$, uid $(id -u)"'
step pouch run -d --name ticker -m 64m localhost/busybox sh -c 'trap "echo stopping; exit 0" TERM; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done'
sleep 0.7
step pouch ps
step pouch logs --tail 2 ticker
step pouch exec ticker cat /etc/hostname
step pouch stop -t 1 ticker
step pouch inspect -f 'ticker: {{.State.Status}}, exit code {{.State.ExitCode}}, executor {{.Executor}}' ticker
step pouch rm ticker
set +e
step pouch run --rm localhost/busybox sh -c 'exit 42'
echo "exit status: $?"
set -e

printf '\n\033[1m== pouch-runtime: the OCI runtime under it ==\033[0m\n'
rt="$PWD/target/debug/pouch-runtime"

work=$(mktemp -d /tmp/pouch-demo.XXXXXX)
root="$work/state"
id="demo-$$"
trap '"$rt" --root "$root" delete --force "$id" >/dev/null 2>&1 || true; rm -rf "$work"; pouch_cleanup' EXIT
bundle="$work/bundle"
mkdir -p "$bundle"
tests/fixtures/make-busybox-rootfs.sh "$bundle/rootfs" >/dev/null
cd "$bundle"
step "$rt" spec
# Not a terminal, an absolute cgroup, and a program that shows where it runs.
python3 - "$id" <<'PY'
import json, sys
c = json.load(open("config.json"))
c["process"]["terminal"] = False
c["process"]["args"] = ["sh", "-c", "echo \"hello from $(hostname), pid $$, uid $(id -u)\"; sleep 1000"]
c["linux"]["cgroupsPath"] = "/pouch-demo/" + sys.argv[1]
c["linux"]["resources"]["memory"] = {"limit": 64 * 1024 * 1024}
json.dump(c, open("config.json", "w"), indent=2)
PY
step "$rt" --root "$root" create --bundle "$bundle" "$id"
step "$rt" --root "$root" state "$id"
step "$rt" --root "$root" start "$id"
sleep 0.2
step "$rt" --root "$root" list
echo; echo "memory limit seen from the host: $(cat /sys/fs/cgroup/memory/pouch-demo/$id/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/pouch-demo/$id/memory.max)"
step "$rt" --root "$root" kill "$id" KILL
sleep 0.2
step "$rt" --root "$root" state "$id"
step "$rt" --root "$root" delete "$id"
python3 - <<'PY'
import json
c = json.load(open("config.json"))
c["process"]["args"] = ["sh", "-c", "echo exiting with 42; exit 42"]
json.dump(c, open("config.json", "w"), indent=2)
PY
set +e
step "$rt" --root "$root" run --bundle "$bundle" "$id-run"
echo "exit status: $?"
rmdir /sys/fs/cgroup/*/pouch-demo 2>/dev/null || true
