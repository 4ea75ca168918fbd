# shellcheck shell=bash
# Shared by the benchmark scripts (sourced, not run): the one bundle config every runtime gets,
# and the machine lines of the report.

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

# clean_hidden_unified: in a private mount namespace where /sys/fs/cgroup/unified was unmounted,
# crun still makes its cgroup2 directories there: plain directories of the host's
# /sys/fs/cgroup tmpfs, invisible on the host and never removed. Remove ours (/pouch-bench).
clean_hidden_unified() {
    local d=/sys/fs/cgroup/unified/pouch-bench
    if [ -d "$d" ] && [ "$(findmnt -n -o FSTYPE -T "$d")" = tmpfs ]; then
        rm -rf --one-file-system -- "$d"
    fi
}
