#!/usr/bin/env python3
"""Measurement harness of benches/runtime-startup.sh (run that script, not this file).

Runs, side by side and interleaved, the same busybox `/bin/true` container through several
OCI runtimes and prints a markdown report:

  (a) `run`                       foreground run, including its own delete
  (b) create + start + wait + delete   four separate commands, as containerd's shim drives them
  (c) BATCH sequential `run`s     total wall and CPU of the batch

Wall time is measured around the commands with a monotonic clock. CPU time is user+sys of every
process the runtime starts, taken from getrusage(RUSAGE_CHILDREN) deltas: this process is a
child subreaper, so a container init orphaned by `create` is reparented to it and its CPU (the
in-container setup before execve, plus /bin/true itself) is counted when it is reaped, exactly
as for `run`, where the runtime reaps it. Intermediate processes are reaped by their parents and
their CPU flows up the same way.

Everything it creates lives under the work directory and the cgroup parent it is given; the
calling script removes both. It expects to run inside the mount namespace the script prepared.
"""

import argparse
import json
import math
import os
import random
import resource
import select
import statistics
import sys
import time

import benchlib
from benchlib import BenchError, idle_load_sample

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
log = benchlib.logger("runtime-startup")


class Runtime:
    """One runtime under test: its binary, its private state root, its stderr log."""

    def __init__(self, name, binary, workdir):
        self.name = name
        self.binary = binary
        self.root = os.path.join(workdir, "state", name)
        os.makedirs(self.root, mode=0o700)
        self.log_path = os.path.join(workdir, "logs", f"{name}.stderr")
        self.log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self.live = set()  # ids that may still exist (for the emergency cleanup)
        self.not_reparented = 0  # inits of (b) that did not become our children (CPU not counted)

    def argv(self, *args):
        return [self.binary, "--root", self.root, *args]


class Harness:
    def __init__(self, args):
        self.args = args
        self.workdir = args.workdir
        self.devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        with open(args.base_config) as f:
            self.base_config = json.load(f)
        os.makedirs(os.path.join(self.workdir, "logs"), exist_ok=True)
        os.makedirs(os.path.join(self.workdir, "bundles"), exist_ok=True)
        self.runtimes = []
        for spec in args.runtime:
            name, _, binary = spec.partition("=")
            self.runtimes.append(Runtime(name, binary, self.workdir))
        self.serial = 0
        self.rng = random.Random(args.seed)

    # ---- processes -------------------------------------------------------------------------

    def spawn(self, rt, argv):
        try:
            return os.posix_spawn(
                argv[0],
                argv,
                ENV,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                    (os.POSIX_SPAWN_DUP2, self.devnull, 1),
                    (os.POSIX_SPAWN_DUP2, rt.log_fd, 2),
                ],
            )
        except OSError as e:
            raise BenchError(f"{rt.name}: cannot execute {argv[0]}: {e}") from None

    def call(self, rt, *args):
        """Runs one runtime command to completion; raises with its stderr if it fails."""
        argv = rt.argv(*args)
        pid = self.spawn(rt, argv)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise BenchError(
                f"{rt.name}: `{' '.join(argv)}` exited with {os.waitstatus_to_exitcode(status)}; "
                f"its stderr (tail of {rt.log_path}):\n{tail(rt.log_path)}"
            )

    def wait_exit(self, rt, pid):
        """Waits for a container init. It is normally our child (we are its subreaper)."""
        try:
            _, status = os.waitpid(pid, 0)
            return status
        except ChildProcessError:
            rt.not_reparented += 1
        # Not ours (a runtime kept it elsewhere): wait on a pidfd instead.
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        try:
            select.select([fd], [], [], 30)
        finally:
            os.close(fd)
        return None

    def reap_stragglers(self, timeout=2.0):
        """Reaps every process reparented to us, so that its CPU is in RUSAGE_CHILDREN."""
        benchlib.reap_children(timeout, "a runtime left a process running after its container was deleted")

    # ---- bundles ---------------------------------------------------------------------------

    def bundle(self, rt, scenario):
        """A fresh bundle (config.json only; the rootfs is shared) with a unique cgroup path."""
        self.serial += 1
        cid = f"{rt.name}-{scenario}{self.serial}"
        path = os.path.join(self.workdir, "bundles", cid)
        os.mkdir(path)
        cfg = json.loads(json.dumps(self.base_config))
        cfg["linux"]["cgroupsPath"] = f"{self.args.cgroup_parent}/{cid}"
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f)
        return cid, path

    def drop_bundle(self, path):
        os.unlink(os.path.join(path, "config.json"))
        os.rmdir(path)

    # ---- one measured unit -----------------------------------------------------------------

    def measure(self, fn):
        self.reap_stragglers()
        # Let the previous container's asynchronous teardown (network namespace cleanup,
        # RCU callbacks in kworkers) finish, so that it is not billed to the next runtime.
        time.sleep(self.args.settle_ms / 1000)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        self.reap_stragglers()
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        user = r1.ru_utime - r0.ru_utime
        sys_ = r1.ru_stime - r0.ru_stime
        return {"wall": t1 - t0, "user": user, "sys": sys_, "cpu": user + sys_}

    def scenario_run(self, rt):
        cid, b = self.bundle(rt, "a")
        rt.live.add(cid)
        m = self.measure(lambda: self.call(rt, "run", "--bundle", b, cid))
        rt.live.discard(cid)
        self.drop_bundle(b)
        return m

    def scenario_lifecycle(self, rt):
        cid, b = self.bundle(rt, "b")
        pid_file = os.path.join(b, "init.pid")

        def lifecycle():
            rt.live.add(cid)
            self.call(rt, "create", "--bundle", b, "--pid-file", pid_file, cid)
            with open(pid_file) as f:
                pid = int(f.read().strip())
            self.call(rt, "start", cid)
            status = self.wait_exit(rt, pid)
            if status is not None and os.waitstatus_to_exitcode(status) != 0:
                raise BenchError(f"{rt.name}: /bin/true exited with {os.waitstatus_to_exitcode(status)}")
            self.call(rt, "delete", cid)
            rt.live.discard(cid)

        m = self.measure(lifecycle)
        os.unlink(pid_file)
        self.drop_bundle(b)
        return m

    def scenario_batch(self, rt, n):
        bundles = [self.bundle(rt, "c") for _ in range(n)]

        def batch():
            for cid, b in bundles:
                rt.live.add(cid)
                self.call(rt, "run", "--bundle", b, cid)
                rt.live.discard(cid)

        m = self.measure(batch)
        for _, b in bundles:
            self.drop_bundle(b)
        return m

    # ---- the whole run ---------------------------------------------------------------------

    def interleaved(self, label, iterations, warmup, fn):
        """Runs fn(rt) for every runtime in every iteration, in a fresh random order each time
        (seeded): a burst of load from elsewhere hits every runtime alike, and no runtime
        systematically follows the same neighbour (a rotating order would make one runtime
        pay for another's asynchronous teardown most of the time)."""
        results = {rt.name: [] for rt in self.runtimes}
        for i in range(warmup + iterations):
            order = list(self.runtimes)
            self.rng.shuffle(order)
            for rt in order:
                m = fn(rt)
                if i >= warmup:
                    results[rt.name].append(m)
        log(f"{label}: done")
        return results

    def emergency_cleanup(self):
        for rt in self.runtimes:
            for cid in sorted(rt.live):
                try:
                    pid = self.spawn(rt, rt.argv("delete", "--force", cid))
                    os.waitpid(pid, 0)
                except OSError:
                    pass
        try:
            self.reap_stragglers(timeout=5)
        except BenchError:
            pass

    def smoke(self):
        for rt in self.runtimes:
            try:
                self.scenario_run(rt)
            except BenchError as e:
                raise BenchError(f"{rt.name} cannot run the benchmark container: {e}") from None


def tail(path, lines=15):
    return benchlib.tail(path, lines) or "(empty)"


# ---- statistics and report ---------------------------------------------------------------------


def p90(xs):
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def summarize(ms):
    return {
        "n": len(ms),
        "wall_med": statistics.median(m["wall"] for m in ms),
        "wall_p90": p90([m["wall"] for m in ms]),
        "wall_min": min(m["wall"] for m in ms),
        "cpu_med": statistics.median(m["cpu"] for m in ms),
        "cpu_p90": p90([m["cpu"] for m in ms]),
        "user_med": statistics.median(m["user"] for m in ms),
        "sys_med": statistics.median(m["sys"] for m in ms),
    }


def fmt_ms(s):
    return f"{s * 1000:.1f}"


def fmt_ratio(a, b):
    return f"{a / b:.2f}" if b > 0 else "n/a"


def report(h, results, meta):
    a = h.args
    out = []
    out.append(f"### Results ({meta['date']})\n")
    out.append(
        f"Iterations: (a) and (b) {a.iterations} measured per runtime after {a.warmup} warm-up; "
        f"(c) {a.batch_repeat} batch(es) of {a.batch} runs per runtime. Runtimes interleaved in a "
        f"random order per iteration (seed {a.seed}), {a.settle_ms} ms pause before each "
        f"measurement. Times in milliseconds; CPU = user+sys of every process the runtime "
        f"started (container init and /bin/true included); the user/sys split is the kernel's "
        f"tick-sampled estimate, only the sum is exact.\n"
    )
    out.append(
        "| scenario | runtime | n | wall median | wall p90 | wall min | CPU median | CPU p90 | user / sys median |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    names = [rt.name for rt in h.runtimes]
    labels = {
        "a": "(a) `run /bin/true`",
        "b": "(b) create+start+wait+delete",
        "c": f"(c) {a.batch} sequential `run`s (total)",
    }
    sums = {}
    for key in ("a", "b", "c"):
        sums[key] = {}
        for name in names:
            s = summarize(results[key][name])
            sums[key][name] = s
            out.append(
                f"| {labels[key]} | {name} | {s['n']} | {fmt_ms(s['wall_med'])} | {fmt_ms(s['wall_p90'])} | "
                f"{fmt_ms(s['wall_min'])} | {fmt_ms(s['cpu_med'])} | {fmt_ms(s['cpu_p90'])} | "
                f"{fmt_ms(s['user_med'])} / {fmt_ms(s['sys_med'])} |"
            )
    out.append("")
    c = sums["c"]
    out.append(f"Per run in (c) (batch total / {a.batch}): " + ", ".join(
        f"{n} wall {fmt_ms(c[n]['wall_med'] / a.batch)} ms, CPU {fmt_ms(c[n]['cpu_med'] / a.batch)} ms"
        for n in names
    ) + ".\n")

    base = names[0]
    others = names[1:]
    if others:
        out.append("Ratios of the medians (< 1.00: " + base + " is faster / cheaper):\n")
        head = "| scenario | " + " | ".join(
            f"wall {base}/{o}" for o in others) + " | " + " | ".join(f"CPU {base}/{o}" for o in others) + " |"
        out.append(head)
        out.append("|---|" + "---:|" * (2 * len(others)))
        for key in ("a", "b", "c"):
            row = [labels[key]]
            row += [fmt_ratio(sums[key][base]["wall_med"], sums[key][o]["wall_med"]) for o in others]
            row += [fmt_ratio(sums[key][base]["cpu_med"], sums[key][o]["cpu_med"]) for o in others]
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    out.append(
        f"Noise: host CPU busy before {meta['load_before']:.0f} %, after {meta['load_after']:.0f} % "
        f"(1 s samples, % of all {os.cpu_count()} CPUs, with nothing of ours running); "
        f"loadavg before `{meta['loadavg_before']}`, after `{meta['loadavg_after']}`. "
        f"CPU not accounted to our processes while measuring (other users plus asynchronous kernel "
        f"work such as network-namespace teardown): "
        + ", ".join(f"({k}) {v:.0f} %" for k, v in meta["background"].items())
        + " of the machine.\n"
    )
    odd = [f"{rt.name} {rt.not_reparented}" for rt in h.runtimes if rt.not_reparented]
    if odd:
        out.append(
            "Warning: in (b) some container inits were not reparented to the harness, so their "
            "CPU is missing from the CPU columns: " + ", ".join(odd) + ".\n"
        )
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--base-config", required=True)
    p.add_argument("--cgroup-parent", required=True)
    p.add_argument("--runtime", action="append", required=True, help="NAME=/abs/path (first is the one compared)")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--batch-repeat", type=int, default=3)
    p.add_argument("--seed", type=int, default=1, help="seed of the interleaving order")
    p.add_argument("--settle-ms", type=int, default=20, help="pause before each measurement")
    p.add_argument("--output", help="also write the markdown here")
    a = p.parse_args()
    if not a.cgroup_parent.startswith("/"):
        p.error("--cgroup-parent must be absolute")

    def measure(h, results, background):
        for key, label, fn, iters, warm in (
            ("a", "(a) run", h.scenario_run, a.iterations, a.warmup),
            ("b", "(b) create+start+wait+delete", h.scenario_lifecycle, a.iterations, a.warmup),
            ("c", f"(c) {a.batch} sequential runs", lambda rt: h.scenario_batch(rt, a.batch), a.batch_repeat, 0),
        ):
            log(f"{label}: {iters} x {len(h.runtimes)} runtimes ...")
            results[key], background[key] = benchlib.not_ours(lambda: h.interleaved(label, iters, warm, fn))

    run(Harness, a, measure, report)


def run(harness, a, measure, report):
    """The frame of a run, also wasm_startup's: becomes the subreaper, makes harness(a), runs its
    smoke pass and measure(h, results, background), deletes the containers still alive if that
    fails or is interrupted, and prints report(h, results, meta) (also to a.output)."""
    benchlib.become_subreaper()
    # SIGTERM/SIGHUP unwind like Ctrl-C, so that the containers of this run are deleted.
    benchlib.unwind_on_signals()
    h = harness(a)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg_before": benchlib.loadavg(),
            "load_before": idle_load_sample()}
    results = {}
    background = {}
    try:
        h.smoke()
        measure(h, results, background)
    except BaseException:
        h.emergency_cleanup()
        raise
    meta["background"] = background
    meta["load_after"] = idle_load_sample()
    meta["loadavg_after"] = benchlib.loadavg()
    text = report(h, results, meta)
    print(text)
    if a.output:
        with open(a.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
