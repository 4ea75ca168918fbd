#!/usr/bin/env python3
"""Measurement harness of benches/pouch-run.sh (run that script, not this file).

Runs `pouch run --rm` and `podman run --rm` side by side and prints a markdown report, in
three passes:

  1. smoke: each command once, its output kept in logs/ and checked (exit 0; the wasm
     programs print their greeting; nothing is left in `pouch ps -a` / `podman ps -a`);
  2. wall: one hyperfine invocation for all commands (-N: no shell), JSON kept;
  3. CPU: the same commands again, in a rotating order, with this process as a child
     subreaper: the getrusage(RUSAGE_CHILDREN) delta around one command, after every process
     it left behind (podman's conmon double-forks) has been reaped, is user+sys of every
     process of that run: the CLI, pouch's monitor or podman's conmon, the OCI runtime, the
     container's init and its program.

After the passes it checks that nothing is left: no pouch container, no podman container, no
mount under the work directory, no per-container cgroup under the cgroup parent (podman's
cgroupfs manager leaves `<parent>/conmon`, which the calling script removes). It expects to
run inside the private mount namespace the script prepared; the script removes everything.
"""

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from statistics import median

import benchlib
from benchlib import BenchError, idle_load_sample, loadavg, ratio, tail

ENV = dict(os.environ)
log = benchlib.logger("pouch-run")


class Tool:
    """One measured command: NAME=EXPECT=COMMAND (EXPECT: text its output must contain, or '')."""

    def __init__(self, spec):
        try:
            self.name, self.expect, cmd = spec.split("=", 2)
        except ValueError:
            raise BenchError(f"--tool {spec!r}: expected NAME=EXPECT=COMMAND") from None
        self.argv = shlex.split(cmd)


class Harness:
    def __init__(self, a):
        self.a = a
        self.tools = [Tool(s) for s in a.tool]
        self.logdir = os.path.join(a.workdir, "logs")
        os.makedirs(self.logdir, exist_ok=True)

    def capture(self, argv):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ENV)
        if r.returncode != 0:
            raise BenchError(f"`{shlex.join(argv)}` exited with {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def leftovers(self):
        """What a run left behind: pouch containers, podman containers."""
        left = []
        pouch = self.capture([self.a.pouch, "--data-root", self.a.data_root, "ps", "-a", "-q"]).split()
        if pouch:
            left.append(f"pouch containers {pouch}")
        podman = self.capture(self.a.podman + ["ps", "-a", "-q"]).split()
        if podman:
            left.append(f"podman containers {podman}")
        return left

    # ---- 1. smoke ----

    def smoke(self):
        for t in self.tools:
            path = os.path.join(self.logdir, f"{t.name}.smoke.log")
            r = subprocess.run(t.argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ENV)
            with open(path, "w") as f:
                f.write(f"$ {shlex.join(t.argv)}\n--- exit {r.returncode}; stdout:\n{r.stdout}--- stderr:\n{r.stderr}")
            if r.returncode != 0:
                raise BenchError(f"{t.name}: `{shlex.join(t.argv)}` exited with {r.returncode}: "
                                 f"{(r.stdout + r.stderr).strip()[-2000:]}")
            if t.expect and t.expect not in r.stdout:
                raise BenchError(f"{t.name}: expected {t.expect!r} in its output, got {r.stdout!r}")
            self.reap_stragglers()
            left = self.leftovers()
            if left:
                raise BenchError(f"{t.name}: `run --rm` left {'; '.join(left)}")
            log(f"smoke: {t.name} ok ({(r.stdout.strip().splitlines() or ['no output'])[0]!r})")

    # ---- 2. wall time: hyperfine ----

    def wall(self):
        path = os.path.join(self.a.workdir, "hyperfine.json")
        argv = ["hyperfine", "-N", "--style", "basic", "--warmup", str(self.a.warmup),
                "--runs", str(self.a.runs), "--export-json", path]
        for t in self.tools:
            argv += ["-n", t.name, shlex.join(t.argv)]
        log(f"hyperfine: {self.a.warmup} warm-up + {self.a.runs} runs per command ...")
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr, env=ENV)
        if r.returncode != 0:
            raise BenchError(f"hyperfine exited with {r.returncode} (it discards the commands' "
                             f"output: run the failing one by hand)")
        with open(path) as f:
            return {x["command"]: x for x in json.load(f)["results"]}

    # ---- 3. CPU ----

    def reap_stragglers(self, timeout=10.0):
        """Reaps every process reparented to us (podman's conmon), so that its CPU is counted."""
        benchlib.reap_children(
            timeout, f"a run left a process running for more than {timeout:.0f} s after it returned")

    def measure(self, t):
        path = os.path.join(self.logdir, f"{t.name}.cpu.log")
        self.reap_stragglers()
        time.sleep(self.a.settle_ms / 1000)
        with open(path, "ab") as out:
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            pid = os.posix_spawnp(t.argv[0], t.argv, ENV, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
            ])
            _, status = os.waitpid(pid, 0)
            t1 = time.perf_counter()
            self.reap_stragglers()
            t2 = time.perf_counter()
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if os.waitstatus_to_exitcode(status) != 0:
            raise BenchError(f"{t.name}: `{shlex.join(t.argv)}` exited with "
                             f"{os.waitstatus_to_exitcode(status)}; output in {path}:\n{tail(path)}")
        user, sys_ = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
        return {"wall": t1 - t0, "tail": t2 - t1, "user": user, "sys": sys_, "cpu": user + sys_}

    def cpu(self):
        rounds = self.a.cpu_runs
        out = {t.name: [] for t in self.tools}
        if rounds == 0:
            return out
        log(f"CPU pass: {rounds} round(s), order rotated each round ...")
        benchlib.become_subreaper()
        n = len(self.tools)
        for i in range(rounds):
            for t in self.tools[i % n:] + self.tools[:i % n]:
                out[t.name].append(self.measure(t))
        return out

    # ---- end checks ----

    def final_checks(self):
        self.reap_stragglers()
        problems = self.leftovers()
        w = self.a.workdir.rstrip("/") + "/"
        with open("/proc/self/mountinfo") as f:
            mounts = [l.split()[4] for l in f if l.split()[4].startswith(w)]
        # podman's overlay driver bind-mounts its own graph/overlay dir (private propagation)
        # for as long as the namespace lives; anything else is a leak.
        leaked = [m for m in mounts if not m.endswith("/graph/overlay")]
        if leaked:
            problems.append(f"mounts left: {leaked}")
        cg = []
        for mp in cgroup_mounts():
            top = mp + self.a.cgroup_parent
            for dirpath, dirnames, _ in os.walk(top):
                for d in dirnames:
                    rel = os.path.relpath(os.path.join(dirpath, d), top)
                    # the parents and podman's conmon cgroup are expected (the script removes them)
                    if rel not in ("pouch", "podman", "podman/conmon"):
                        cg.append(os.path.join(os.path.basename(mp), rel))
        if cg:
            problems.append(f"per-container cgroups left: {cg[:10]}")
        # With /sys/fs/cgroup/unified unmounted, what is left there is a plain directory of the
        # host's /sys/fs/cgroup tmpfs (hidden on the host under the cgroup2 mount). crun still
        # makes its "unified" cgroup directories there and never removes them.
        hidden = 0
        if os.path.isdir("/sys/fs/cgroup/unified") and "/sys/fs/cgroup/unified" not in cgroup_mounts():
            for _, dirnames, _ in os.walk("/sys/fs/cgroup/unified" + self.a.cgroup_parent):
                hidden += len(dirnames)
        return problems, hidden

    def run(self):
        meta = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "loadavg_before": loadavg(),
                "busy_before": idle_load_sample()}
        self.smoke()
        wall = self.wall()
        cpu = self.cpu()
        meta["busy_after"] = idle_load_sample()
        meta["loadavg_after"] = loadavg()
        problems, meta["hidden"] = self.final_checks()
        report = self.report(wall, cpu, meta, problems)
        with open(self.a.output, "w") as f:
            f.write(report)
        print(report, end="", flush=True)
        if problems:
            raise BenchError("left behind: " + "; ".join(problems))

    # ---- report ----

    def report(self, wall, cpu, meta, problems):
        a = self.a
        names = [t.name for t in self.tools]
        L = [f"## Results ({meta['date']})\n"]
        L.append(f"Wall time of one `run --rm` (hyperfine -N: mean ± standard deviation, min, max; "
                 f"{a.warmup} warm-up runs, then {a.runs} runs per command, one command after the "
                 f"other). Milliseconds.\n")
        L.append("| command | runs | mean ± σ | median | min | max |")
        L.append("|---|---:|---:|---:|---:|---:|")
        for n in names:
            x = wall[n]
            L.append(f"| {n} | {len(x['times'])} | {ms(x['mean'])} ± {ms(x['stddev'] or 0)} | "
                     f"{ms(x['median'])} | {ms(x['min'])} | {ms(x['max'])} |")
        L.append("")
        pairs = [p.split("/", 1) for p in a.ratio]
        L.append(f"Ratios of the means, ± from the standard deviations (target of issue 6: pouch ≤ "
                 f"{a.target} × podman):\n")
        L.append("| ratio | wall (hyperfine means) | CPU (medians of the CPU pass) | target |")
        L.append("|---|---:|---:|---|")
        for x, y in pairs:
            q, e = ratio(wall[x], wall[y])
            cq = "n/a"
            if cpu[x] and cpu[y]:
                cq = f"{median([m['cpu'] for m in cpu[x]]) / median([m['cpu'] for m in cpu[y]]):.2f}"
            tgt = "-"
            if y.startswith("podman"):
                tgt = "**met**" if q <= a.target else "**not met**"
            L.append(f"| {x} / {y} | {q:.2f} ± {e:.2f} | {cq} | {tgt} |")
        L.append("")
        if any(cpu.values()):
            L.append("CPU pass (rounds in rotating order, this harness a child subreaper): **CPU** is "
                     "user + sys of every process of the run (CLI, pouch's monitor or podman's conmon, "
                     "runtime, container init, the program), from getrusage(RUSAGE_CHILDREN) after "
                     "reaping everything the run left; **tail** is how long after the command returned "
                     "its last process (podman: conmon) was reaped. Medians, milliseconds; the "
                     "user/sys split is the kernel's tick-sampled estimate, only the sum is exact.\n")
            L.append("| command | n | wall | tail | CPU | user / sys |")
            L.append("|---|---:|---:|---:|---:|---:|")
            for n in names:
                xs = cpu[n]
                if not xs:
                    continue
                med = lambda k: median([m[k] for m in xs])  # noqa: E731
                L.append(f"| {n} | {len(xs)} | {ms(med('wall'))} | {ms(med('tail'))} | {ms(med('cpu'))} | "
                         f"{ms(med('user'))} / {ms(med('sys'))} |")
            L.append("")
        L.append(f"Host CPU busy with nothing of ours running: {meta['busy_before']:.0f} % before, "
                 f"{meta['busy_after']:.0f} % after (1 s samples, % of all {os.cpu_count()} CPUs); "
                 f"loadavg before `{meta['loadavg_before']}`, after `{meta['loadavg_after']}`.\n")
        if problems:
            L.append("**Left behind:** " + "; ".join(problems) + "\n")
        else:
            L.append("Checked after the passes: no pouch or podman container, mount or per-container "
                     "cgroup was left.\n")
        if meta["hidden"]:
            L.append(f"Note: {meta['hidden']} directories were left under the hidden "
                     f"`/sys/fs/cgroup/unified{a.cgroup_parent}`: plain tmpfs directories that "
                     f"{a.podman_runtime} made for the cgroup2 hierarchy, which is unmounted in the "
                     f"benchmark's namespace (pouch made none there). The script removes them.\n")
        return "\n".join(L) + "\n"


def cgroup_mounts():
    """Mount points of the cgroup and cgroup2 filesystems in this mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[0] in ("cgroup", "cgroup2"):
                out.append(pre.split()[4])
    return sorted(set(out))


def ms(s):
    return f"{s * 1000:.1f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--pouch", required=True)
    p.add_argument("--data-root", required=True)
    p.add_argument("--podman", required=True, help="podman's argv prefix (shell words)")
    p.add_argument("--cgroup-parent", required=True)
    p.add_argument("--podman-runtime", default="crun", help="its name, for the report")
    p.add_argument("--tool", action="append", required=True, help="NAME=EXPECT=COMMAND")
    p.add_argument("--ratio", action="append", default=[], help="NAME/NAME")
    p.add_argument("--target", type=float, default=0.25)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--cpu-runs", type=int, default=10)
    p.add_argument("--settle-ms", type=int, default=20)
    p.add_argument("--output", required=True)
    a = p.parse_args()
    a.podman = shlex.split(a.podman)
    try:
        Harness(a).run()
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
