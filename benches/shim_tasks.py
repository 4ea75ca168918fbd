#!/usr/bin/env python3
"""Measurement harness of benches/shim-tasks.sh (run that script, not this file).

Runs containerd tasks through the shims it is given and prints a markdown report, in three
passes:

  1. smoke: one task per series, its exit status and output checked;
  2. series: BENCH_TASKS tasks per series, first one after the other (sequential), then with
     --parallel ctr clients at once; --rounds rounds, the order of the series rotated each
     round. Every task must exit 0. Measured: the wall time of the series (tasks/s), each
     task's wall time (latency), the CPU the whole machine spent meanwhile (/proc/stat) and the
     CPU containerd's daemon spent (/proc/PID/stat). After each series no task, container or
     shim of this containerd may be left;
  3. idle: per --idle spec, one detached task; after --idle-secs its shim's VmRSS, RssAnon,
     RssFile and threads (/proc/PID/status) and Pss (/proc/PID/smaps_rollup).

Commands come from the calling script as ctr arguments with {id}; nothing here deletes anything
but the tasks and containers it started.
"""

import argparse
import concurrent.futures
import math
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time

import benchlib
from benchlib import BenchError, machine_busy, proc_cpu

MIB = 1024 * 1024
log = benchlib.logger("shim-tasks")


class Series:
    """NAME=SHIM=EXPECT=CTR ARGS with {id}: a series of tasks."""

    def __init__(self, spec):
        try:
            self.name, self.shim, self.expect, args = spec.split("=", 3)
        except ValueError:
            raise BenchError(f"--series {spec!r}: expected NAME=SHIM=EXPECT=CTR_ARGS") from None
        self.args = shlex.split(args)

    def argv(self, ctr, task_id):
        return ctr + [a.replace("{id}", task_id) for a in self.args]


class Idle:
    """LABEL=SHIM=CTR ARGS with {id}: a detached task whose shim's memory is read."""

    def __init__(self, spec):
        try:
            self.label, self.shim, args = spec.split("=", 2)
        except ValueError:
            raise BenchError(f"--idle {spec!r}: expected LABEL=SHIM=CTR_ARGS") from None
        self.args = shlex.split(args)


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def shims_of(address, task_id=None):
    """pid -> argv of the shim servers of this containerd (and of this task id, if given)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        argv = cmdline(d)
        if not argv or not os.path.basename(argv[0]).startswith("containerd-shim"):
            continue
        pairs = dict(zip(argv[1::1], argv[2::1]))
        if pairs.get("-address") != address or "start" in argv or "delete" in argv:
            continue
        if task_id is not None and pairs.get("-id") != task_id:
            continue
        out[int(d)] = argv
    return out


# Programs that mean another benchmark or a build is competing for the machine: benchmarks
# (hyperfine, and the other runtimes' benchmarks: podman, conmon, crun, the pouch CLI), builds.
FOREIGN = {"hyperfine", "cargo", "rustc", "podman", "conmon", "crun", "pouch"}


def foreign_programs():
    """The names (comm) of running FOREIGN programs."""
    out = set()
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                continue
            if comm in FOREIGN:
                out.add(comm)
    return out


def status_kib(pid):
    """The kB fields of /proc/PID/status, plus Threads."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            v = v.split()
            if k == "Threads":
                out[k] = int(v[0])
            elif len(v) == 2 and v[1] == "kB":
                out[k] = int(v[0])
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Pss", "Pss_Anon", "Pss_File"):
                out[k] = int(v.split()[0])
    return out


def mean_sd(xs):
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class Harness:
    def __init__(self, a):
        self.a = a
        self.ctr = shlex.split(a.ctr)
        self.series = [Series(s) for s in a.series]
        self.idle_specs = [Idle(s) for s in a.idle]
        self.logdir = os.path.join(a.workdir, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.modes = ["sequential"] + ([f"parallel {a.parallel}"] if a.parallel > 0 else [])
        # (series, mode) -> list of per-round dicts
        self.results = {}
        # what was being measured -> the foreign programs seen running meanwhile
        self.current = None
        self.disturbed = {}
        self.done = threading.Event()
        # series measured again because they were disturbed; seconds spent waiting for quiet
        self.repeated = []
        self.waited = 0.0

    def watch_foreign(self):
        while not self.done.wait(0.5):
            current = self.current
            if current:
                seen = foreign_programs()
                if seen:
                    self.disturbed.setdefault(current, set()).update(seen)

    def capture(self, argv, check=True):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if check and r.returncode != 0:
            raise BenchError(f"`{shlex.join(argv)}` exited with {r.returncode}: {r.stderr.strip()}")
        return r

    def leftovers(self, timeout=10.0):
        """What this containerd still has: tasks, containers, shim processes (waited for)."""
        deadline = time.monotonic() + timeout
        while True:
            left = []
            for what in ("tasks", "containers"):
                ids = self.capture(self.ctr + [what, "ls", "-q"]).stdout.split()
                left += [f"{what[:-1]} {i}" for i in ids]
            left += [f"shim {pid}: {' '.join(argv)}" for pid, argv in shims_of(self.a.address).items()]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def check_clean(self, what):
        left = self.leftovers()
        if left:
            raise BenchError(f"after {what}, this containerd still has: " + "; ".join(left[:10]))

    def task(self, series, task_id):
        """Runs one task; (exit status, wall seconds, stderr)."""
        t0 = time.monotonic()
        r = subprocess.run(series.argv(self.ctr, task_id), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return r.returncode, time.monotonic() - t0, r.stderr.decode("utf-8", "replace")

    # ---- 1. smoke ----

    def smoke(self):
        for s in self.series:
            task_id = f"{s.name}-smoke"
            argv = s.argv(self.ctr, task_id)
            r = self.capture(argv, check=False)
            with open(os.path.join(self.logdir, f"{s.name}.smoke.log"), "w") as f:
                f.write(f"$ {shlex.join(argv)}\n{r.stdout}{r.stderr}")
            if r.returncode != 0:
                raise BenchError(f"smoke task of {s.name}: exit status {r.returncode}: {r.stderr.strip()}")
            if s.expect and s.expect not in r.stdout:
                raise BenchError(f"smoke task of {s.name}: {s.expect!r} not in its output {r.stdout!r}")
            self.check_clean(f"the smoke task of {s.name}")
            log(f"{s.name}: smoke task ok")

    # ---- 2. series ----

    def wait_quiet(self, what):
        """Waits until no FOREIGN program has run for --quiet-secs (at most --max-wait s)."""
        if self.a.quiet_secs <= 0:
            return
        t0 = time.monotonic()
        quiet_since, announced = time.monotonic(), False
        while time.monotonic() - quiet_since < self.a.quiet_secs:
            seen = foreign_programs()
            if seen:
                quiet_since = time.monotonic()
                if not announced:
                    log(f"waiting for {', '.join(sorted(seen))} to end before {what} ...")
                    announced = True
            if time.monotonic() - t0 > self.a.max_wait:
                log(f"still not quiet after {self.a.max_wait:.0f} s: measuring {what} anyway")
                return
            time.sleep(0.5)
        if announced:
            self.waited += time.monotonic() - t0

    def run_series(self, s, mode, rnd):
        n = self.a.tasks
        label = f"{s.name} ({mode}, round {rnd})"
        for attempt in range(1, self.a.retries + 2):
            self.wait_quiet(label)
            ids = [f"{s.name}-r{rnd}-{'s' if mode == 'sequential' else 'p'}{attempt}-{i}"
                   for i in range(n)]
            self.disturbed.pop(label, None)
            self.current = label
            busy0, ctrd0 = machine_busy(), proc_cpu(self.a.containerd_pid)
            t0 = time.monotonic()
            if mode == "sequential":
                results = [self.task(s, i) for i in ids]
            else:
                with concurrent.futures.ThreadPoolExecutor(self.a.parallel) as pool:
                    results = list(pool.map(lambda i: self.task(s, i), ids))
            wall = time.monotonic() - t0
            busy, ctrd = machine_busy() - busy0, proc_cpu(self.a.containerd_pid) - ctrd0
            self.current = None
            bad = [(i, rc, err) for i, (rc, _, err) in zip(ids, results) if rc != 0]
            if bad:
                i, rc, err = bad[0]
                raise BenchError(f"{label}: {len(bad)} of {n} tasks failed; {i}: exit "
                                 f"status {rc}: {err.strip()}")
            self.check_clean(label)
            r = {"wall": wall, "rate": n / wall, "lat": [w for _, w, _ in results],
                 "cpu": busy / n, "ctrd": ctrd / n}
            log(f"{label}: {n} tasks in {wall:.2f} s = {r['rate']:.1f} tasks/s, "
                f"{1000 * r['cpu']:.0f} ms CPU/task")
            if label not in self.disturbed:
                break
            seen = ", ".join(sorted(self.disturbed[label]))
            if attempt <= self.a.retries:
                log(f"{label}: disturbed ({seen} ran meanwhile); measuring it again")
                self.repeated.append(f"{label} ({seen})")
        self.results.setdefault((s.name, mode), []).append(r)

    def measure(self):
        for rnd in range(1, self.a.rounds + 1):
            k = (rnd - 1) % len(self.series)
            order = self.series[k:] + self.series[:k]
            for mode in self.modes:
                for s in order:
                    self.run_series(s, mode, rnd)

    # ---- 3. idle RSS ----

    def idle(self):
        out = []
        for n, spec in enumerate(self.idle_specs):
            task_id = f"idle-{n}"
            argv = self.ctr + [a.replace("{id}", task_id) for a in spec.args]
            self.capture(argv)
            try:
                self.wait_quiet(f"idle RSS: {spec.label}")
                self.current = f"idle RSS: {spec.label}"
                time.sleep(self.a.idle_secs)
                shims = shims_of(self.a.address, task_id)
                if len(shims) != 1:
                    raise BenchError(f"idle task {task_id}: expected one shim, found {shims}")
                pid, sargv = next(iter(shims.items()))
                if os.path.basename(sargv[0]) != spec.shim:
                    raise BenchError(f"idle task {task_id} runs under {sargv[0]}, not {spec.shim}")
                st = self.capture(self.ctr + ["task", "ls"]).stdout
                if not any(l.split()[:1] == [task_id] and "RUNNING" in l for l in st.splitlines()):
                    raise BenchError(f"idle task {task_id} is not running: {st}")
                mem = status_kib(pid)
                mem["pid"] = pid
                out.append((spec, mem))
                log(f"{spec.label}: {spec.shim} pid {pid}: VmRSS {mem['VmRSS']} kB, "
                    f"Pss {mem.get('Pss', 0)} kB, {mem['Threads']} threads")
            finally:
                self.capture(self.ctr + ["task", "kill", "-s", "SIGKILL", task_id], check=False)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    if self.capture(self.ctr + ["task", "delete", task_id], check=False).returncode == 0:
                        break
                    time.sleep(0.1)
                self.capture(self.ctr + ["containers", "rm", task_id], check=False)
                self.current = None
        self.check_clean("the idle tasks")
        return out

    # ---- report ----

    def report(self, idle):
        a, lines = self.a, []
        w = lines.append
        w("## Results")
        w("")
        w(f"{a.tasks} tasks per series and mode, {a.rounds} round(s); the order of the series "
          f"rotated each round. **tasks/s**: mean over the rounds ± standard deviation (min–max); "
          f"**latency**: one `ctr run --rm` from start to exit, over all rounds; **CPU/task**: "
          f"the whole machine's busy CPU (all cores, /proc/stat) per task, and containerd's "
          f"daemon's share of it.")
        w("")
        w("| series | shim | mode | tasks/s | min–max | latency p50 / p95 ms | CPU/task ms (containerd) |")
        w("|---|---|---|---:|---:|---:|---:|")
        for mode in self.modes:
            for s in self.series:
                rs = self.results[(s.name, mode)]
                m, sd = mean_sd([r["rate"] for r in rs])
                lat = [x for r in rs for x in r["lat"]]
                cpu = statistics.fmean(r["cpu"] for r in rs)
                ctrd = statistics.fmean(r["ctrd"] for r in rs)
                w(f"| {s.name} | {s.shim} | {mode} | {m:.1f} ± {sd:.1f} | "
                  f"{min(r['rate'] for r in rs):.1f}–{max(r['rate'] for r in rs):.1f} | "
                  f"{1000 * pct(lat, 0.5):.0f} / {1000 * pct(lat, 0.95):.0f} | "
                  f"{1000 * cpu:.0f} ({1000 * ctrd:.0f}) |")
        w("")
        if a.ratio:
            w("Ratios of the mean tasks/s (> 1: the first is faster), ± from the standard deviations:")
            w("")
            w("| ratio | " + " | ".join(self.modes) + " | target |")
            w("|---|" + "---:|" * len(self.modes) + "---|")
            for spec in a.ratio:
                x, y = spec.split("/", 1)
                cells, verdicts = [], []
                for mode in self.modes:
                    if (x, mode) not in self.results or (y, mode) not in self.results:
                        cells.append("–")
                        continue
                    mx, sx = mean_sd([r["rate"] for r in self.results[(x, mode)]])
                    my, sy = mean_sd([r["rate"] for r in self.results[(y, mode)]])
                    q = mx / my
                    e = q * math.hypot(sx / mx, sy / my)
                    cells.append(f"{q:.2f} ± {e:.2f}")
                    verdicts.append(q >= 1)
                target = ""
                if spec == a.target_ratio:
                    target = "≥ 1: **met**" if verdicts and all(verdicts) else "≥ 1: **missed**"
                w(f"| {x} / {y} | " + " | ".join(cells) + f" | {target} |")
            w("")
        if idle:
            w(f"Idle shim memory: one detached task per row, read {a.idle_secs} s after `ctr run -d` "
              f"returned (MiB; Pss shares the pages of the binary and libraries among the "
              f"processes that map them).")
            w("")
            w("| task | shim | VmRSS | RssAnon | RssFile | Pss | VmHWM | threads | target ≤ 10 MiB |")
            w("|---|---|---:|---:|---:|---:|---:|---:|---|")
            for spec, m in idle:
                ours = spec.shim == "containerd-shim-pouch-v2"
                verdict = ("**met**" if m["VmRSS"] <= 10 * 1024 else "**missed**") if ours else ""
                f = lambda k: f"{m.get(k, 0) / 1024:.1f}"  # noqa: E731
                w(f"| {spec.label} | {spec.shim} | {f('VmRSS')} | {f('RssAnon')} | {f('RssFile')} | "
                  f"{f('Pss')} | {f('VmHWM')} | {m['Threads']} | {verdict} |")
            w("")
        if self.repeated or self.waited:
            w(f"Quiet machine: the harness waited {self.waited:.0f} s in all for other programs "
              f"({', '.join(sorted(FOREIGN))}) to end before measuring, and measured "
              f"{len(self.repeated)} series again because one ran meanwhile"
              + (": " + "; ".join(self.repeated) if self.repeated else "") + ".")
            w("")
        if self.disturbed:
            w("**Disturbed:** other programs ran during: "
              + "; ".join(f"{k} ({', '.join(sorted(v))})" for k, v in sorted(self.disturbed.items()))
              + ". Those numbers are not clean.")
        else:
            w(f"No other benchmark or build ({', '.join(sorted(FOREIGN))}) was seen running during "
              f"the measurements (checked every 0.5 s).")
        w("")
        text = "\n".join(lines) + "\n"
        with open(a.output, "w") as f:
            f.write(text)
        sys.stdout.write(text)
        sys.stdout.flush()

    def run(self):
        self.check_clean("start-up")
        self.smoke()
        watcher = threading.Thread(target=self.watch_foreign, daemon=True)
        watcher.start()
        try:
            self.measure()
            idle = self.idle() if self.idle_specs else []
        finally:
            self.done.set()
            watcher.join()
        self.report(idle)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--ctr", required=True, help="ctr's argv prefix (shell words)")
    p.add_argument("--address", required=True, help="containerd's socket (shims name it)")
    p.add_argument("--containerd-pid", type=int, required=True)
    p.add_argument("--series", action="append", required=True, help="NAME=SHIM=EXPECT=CTR_ARGS")
    p.add_argument("--ratio", action="append", default=[], help="NAME/NAME")
    p.add_argument("--target-ratio", default="pouch-wasm/runc-busybox")
    p.add_argument("--idle", action="append", default=[], help="LABEL=SHIM=CTR_ARGS")
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--idle-secs", type=float, default=5)
    p.add_argument("--quiet-secs", type=float, default=5,
                   help="before each measurement, wait until no FOREIGN program ran for this long (0: never wait)")
    p.add_argument("--max-wait", type=float, default=1800, help="but at most this long, seconds")
    p.add_argument("--retries", type=int, default=3, help="measure a disturbed series again, this many times at most")
    p.add_argument("--output", required=True)
    a = p.parse_args()
    try:
        Harness(a).run()
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
