#!/usr/bin/env bash
# The main job on a fresh machine, no registry needed: build pouch-runtime, make a busybox
# bundle from Debian's busybox-static and drive it through the OCI lifecycle, as podman or
# containerd would.
#
# Usage: sudo scripts/demo.sh
set -euo pipefail
cd -- "$(dirname -- "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "scripts/demo.sh: run as root" >&2; exit 1; }
scripts/install-deps.sh
cargo build --quiet --bin pouch-runtime
rt="$PWD/target/debug/pouch-runtime"

work=$(mktemp -d /tmp/pouch-demo.XXXXXX)
root="$work/state"
id="demo-$$"
trap '"$rt" --root "$root" delete --force "$id" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bundle="$work/bundle"
mkdir -p "$bundle"
tests/fixtures/make-busybox-rootfs.sh "$bundle/rootfs" >/dev/null
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

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
