#!/usr/bin/env python3
"""Measurement harness of benches/wasm-startup.sh (run that script, not this file).

Side by side, in one process and one private mount namespace, interleaved in a random (seeded)
order per iteration:

  small group, create + start + wait + delete (four commands, as containerd's shim drives them):
    pouch-wasm-cold   pouch-runtime, /app/hello.wasm, a fresh empty --wasm-cache per iteration
    pouch-wasm-warm   pouch-runtime, /app/hello.wasm, a --wasm-cache that already holds it
    pouch-native      pouch-runtime, busybox /bin/true
    crun-native       crun, busybox /bin/true
  and the bare wasmtime CLI as a reference (no container, one process):
    cli-cold          wasmtime run -C cache=n hello.wasm
    cli-warm          wasmtime run -C cache-config=<private cache> hello.wasm

  large group, a real program (CPython 3.12 for WASI, `python.wasm -c "print(1)"`):
    pouch-python-cold / pouch-python-warm   create + start + wait + delete, cache as above
    cli-python-cold / cli-python-warm       the wasmtime CLI, cache as above

Wall time is taken around the commands with a monotonic clock; CPU is user+sys of every
process started, from getrusage(RUSAGE_CHILDREN) deltas (this process is a child subreaper, so
the container init, which compiles or loads the module in `create` and runs it after `start`,
is reaped and counted here). The process handling, the statistics, the noise estimate and the
frame of the run are benches/runtime_startup.py's (on top of benches/benchlib.py), imported from
there.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import time

import benchlib
import runtime_startup as rs

log = benchlib.logger("wasm-startup")


class Harness(rs.Harness):
    def __init__(self, args):
        ns = argparse.Namespace(
            workdir=args.workdir,
            base_config=args.base_config,
            runtime=[],
            seed=args.seed,
            settle_ms=args.settle_ms,
            cgroup_parent=args.cgroup_parent,
        )
        super().__init__(ns)
        self.a = args
        self.stdout_fd = self.devnull
        self.cache_root = os.path.join(self.workdir, "wasm-cache")
        os.makedirs(self.cache_root, mode=0o700)
        self.warm_cache = os.path.join(self.cache_root, "warm")
        self.cold_serial = 0
        self.cold_sizes = {}

        def rt(name, binary):
            r = rs.Runtime(name, binary, self.workdir)
            self.runtimes.append(r)
            return r

        base = self.base_config
        self.cfg_true = base
        self.cfg_hello = self.with_args(base, ["/app/hello.wasm"])
        self.cfg_python = self.with_args(base, ["/app/python.wasm", "-c", "print(1)"])
        self.host_hello = os.path.join(args.rootfs, "app/hello.wasm")
        self.host_python = os.path.join(args.rootfs, "app/python.wasm")

        p = args.pouch
        self.contenders = {}
        # key: (group, label, function)
        self.add("pouch-wasm-cold", "small", "pouch wasm hello, cold cache",
                 self.lifecycle_fn(rt("pouch-wasm-cold", p), "wc", self.cfg_hello, cold=True))
        self.add("pouch-wasm-warm", "small", "pouch wasm hello, warm cache",
                 self.lifecycle_fn(rt("pouch-wasm-warm", p), "ww", self.cfg_hello, cold=False))
        self.add("pouch-native", "small", "pouch native `/bin/true`",
                 self.lifecycle_fn(rt("pouch-native", p), "n", self.cfg_true))
        if args.crun:
            self.add("crun-native", "small", "crun native `/bin/true`",
                     self.lifecycle_fn(rt("crun-native", args.crun), "n", self.cfg_true))
        if args.wasmtime:
            cli = rt("wasmtime-cli", args.wasmtime)
            self.add("cli-cold", "small", "wasmtime CLI hello, no cache",
                     self.cli_fn(cli, [self.host_hello], cold=True))
            self.add("cli-warm", "small", "wasmtime CLI hello, warm cache",
                     self.cli_fn(cli, [self.host_hello], cold=False))
        if args.large:
            self.add("pouch-python-cold", "large", "pouch wasm CPython, cold cache",
                     self.lifecycle_fn(rt("pouch-python-cold", p), "pc", self.cfg_python, cold=True))
            self.add("pouch-python-warm", "large", "pouch wasm CPython, warm cache",
                     self.lifecycle_fn(rt("pouch-python-warm", p), "pw", self.cfg_python, cold=False))
            if args.wasmtime:
                self.add("cli-python-cold", "large", "wasmtime CLI CPython, no cache",
                         self.cli_fn(cli, [self.host_python, "-c", "print(1)"], cold=True))
                self.add("cli-python-warm", "large", "wasmtime CLI CPython, warm cache",
                         self.cli_fn(cli, [self.host_python, "-c", "print(1)"], cold=False))

    # ---- building blocks -------------------------------------------------------------------

    @staticmethod
    def with_args(cfg, argv):
        c = json.loads(json.dumps(cfg))
        c["process"]["args"] = argv
        return c

    def add(self, key, group, label, fn):
        self.contenders[key] = {"group": group, "label": label, "fn": fn}

    def spawn(self, rt, argv):
        try:
            return os.posix_spawn(
                argv[0],
                argv,
                rs.ENV,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                    (os.POSIX_SPAWN_DUP2, self.stdout_fd, 1),
                    (os.POSIX_SPAWN_DUP2, rt.log_fd, 2),
                ],
            )
        except OSError as e:
            raise rs.BenchError(f"{rt.name}: cannot execute {argv[0]}: {e}") from None

    def bundle_of(self, rt, scenario, cfg):
        self.serial += 1
        cid = f"{rt.name}-{scenario}{self.serial}"
        path = os.path.join(self.workdir, "bundles", cid)
        os.mkdir(path)
        c = json.loads(json.dumps(cfg))
        c["linux"]["cgroupsPath"] = f"{self.a.cgroup_parent}/{cid}"
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(c, f)
        return cid, path

    def lifecycle_fn(self, rt, scenario, cfg, cold=None):
        """create + start + wait + delete of one container; `cold` None: not wasm (no cache
        flag), True: a fresh cache directory, False: the shared, pre-filled one."""

        def one():
            cid, b = self.bundle_of(rt, scenario, cfg)
            pid_file = os.path.join(b, "init.pid")
            pre = []
            cache = None
            if cold is True:
                self.cold_serial += 1
                cache = os.path.join(self.cache_root, f"cold-{self.cold_serial}")
                pre = ["--wasm-cache", cache]
            elif cold is False:
                pre = ["--wasm-cache", self.warm_cache]
            phases = {}

            def lifecycle():
                rt.live.add(cid)
                t0 = time.perf_counter()
                self.call(rt, *pre, "create", "--bundle", b, "--pid-file", pid_file, cid)
                t1 = time.perf_counter()
                with open(pid_file) as f:
                    pid = int(f.read().strip())
                self.call(rt, *pre, "start", cid)
                t2 = time.perf_counter()
                status = self.wait_exit(rt, pid)
                t3 = time.perf_counter()
                if status is not None and os.waitstatus_to_exitcode(status) != 0:
                    raise rs.BenchError(
                        f"{rt.name}: the container exited with {os.waitstatus_to_exitcode(status)}; "
                        f"tail of {rt.log_path}:\n{rs.tail(rt.log_path)}")
                self.call(rt, *pre, "delete", cid)
                t4 = time.perf_counter()
                rt.live.discard(cid)
                phases.update(create=t1 - t0, start=t2 - t1, wait=t3 - t2, delete=t4 - t3)

            m = self.measure(lifecycle)
            m.update(phases)
            os.unlink(pid_file)
            self.drop_bundle(b)
            if cache is not None:
                if rt.name not in self.cold_sizes:
                    self.cold_sizes[rt.name] = dir_bytes(cache)
                shutil.rmtree(cache)
            return m

        return one

    def cli_fn(self, rt, argv, cold):
        """One `wasmtime run` of the module (host path), with no cache or the warm one."""
        if cold:
            opts = ["-C", "cache=n"]
        else:
            conf = os.path.join(self.cache_root, "wasmtime-cli.toml")
            if not os.path.exists(conf):
                with open(conf, "w") as f:
                    d = os.path.join(self.cache_root, "wasmtime-cli")
                    f.write(f'[cache]\ndirectory = "{d}"\n')
            opts = ["-C", f"cache-config={conf}"]
        full = [rt.binary, "run", *opts, *argv]

        def one():
            def run():
                pid = self.spawn(rt, full)
                _, status = os.waitpid(pid, 0)
                if os.waitstatus_to_exitcode(status) != 0:
                    raise rs.BenchError(
                        f"`{' '.join(full)}` exited with {os.waitstatus_to_exitcode(status)}; "
                        f"tail of {rt.log_path}:\n{rs.tail(rt.log_path)}")

            return self.measure(run)

        return one

    # ---- smoke test (also fills the warm caches) -----------------------------------------------

    def smoke(self):
        expect = {
            "pouch-wasm-cold": "hello from wasm\narg[0]=/app/hello.wasm\n",
            "pouch-wasm-warm": "hello from wasm\narg[0]=/app/hello.wasm\n",
            "pouch-native": "",
            "crun-native": "",
            "cli-cold": "hello from wasm\n",
            "cli-warm": "hello from wasm\n",
            "pouch-python-cold": "1\n",
            "pouch-python-warm": "1\n",
            "cli-python-cold": "1\n",
            "cli-python-warm": "1\n",
        }
        out_path = os.path.join(self.workdir, "smoke.out")
        for key, c in self.contenders.items():
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            self.stdout_fd = fd
            try:
                t0 = time.perf_counter()
                c["fn"]()
                dt = time.perf_counter() - t0
            except rs.BenchError as e:
                raise rs.BenchError(f"{key} cannot run the benchmark: {e}") from None
            finally:
                self.stdout_fd = self.devnull
                os.close(fd)
            with open(out_path) as f:
                got = f.read()
            if not got.startswith(expect[key]) or (expect[key] == "" and got != ""):
                raise rs.BenchError(f"{key}: unexpected output {got[:200]!r} (expected {expect[key]!r}...)")
            log(f"smoke {key}: ok ({dt * 1000:.0f} ms)")

    def interleaved_keys(self, label, keys, iterations, warmup):
        results = {k: [] for k in keys}
        for i in range(warmup + iterations):
            order = list(keys)
            self.rng.shuffle(order)
            for k in order:
                m = self.contenders[k]["fn"]()
                if i >= warmup:
                    results[k].append(m)
        log(f"{label}: done")
        return results


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


# ---- report ----------------------------------------------------------------------------------


def ratio(a, b):
    return a / b if b > 0 else float("nan")


def report(h, results, meta):
    a = h.a
    fm = rs.fmt_ms
    out = [f"### Results ({meta['date']})\n"]
    out.append(
        f"Small group: {a.iterations} measured iterations after {a.warmup} warm-up; large group: "
        f"{a.large_iterations} measured iterations (after the smoke run that fills the warm "
        f"caches). Contenders interleaved in a random order per iteration (seed {a.seed}), "
        f"{a.settle_ms} ms pause before each measurement. Times in milliseconds; CPU = user+sys "
        f"of every process started (container init, compile/load and the guest included); the "
        f"user/sys split is the kernel's tick-sampled estimate, only the sum is exact.\n"
    )
    out.append("| group | contender | n | wall median | wall p90 | wall min | CPU median | CPU p90 | user / sys median |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    s = {}
    for key, c in h.contenders.items():
        if key not in results:
            continue
        sm = rs.summarize(results[key])
        s[key] = sm
        grp = "hello / true" if c["group"] == "small" else "CPython"
        out.append(
            f"| {grp} | {c['label']} | {sm['n']} | {fm(sm['wall_med'])} | {fm(sm['wall_p90'])} | "
            f"{fm(sm['wall_min'])} | {fm(sm['cpu_med'])} | {fm(sm['cpu_p90'])} | "
            f"{fm(sm['user_med'])} / {fm(sm['sys_med'])} |"
        )
    out.append("")

    # Where the wall time of the container lifecycles goes.
    out.append("Wall time per command of the lifecycles (medians, ms; `wait` = from `start` returning "
               "to the init's exit, i.e. the guest's run):\n")
    out.append("| contender | create | start | wait | delete |")
    out.append("|---|---:|---:|---:|---:|")
    for key, c in h.contenders.items():
        ms = results.get(key)
        if not ms or "create" not in ms[0]:
            continue
        med = {p: statistics.median(m[p] for m in ms) for p in ("create", "start", "wait", "delete")}
        out.append(f"| {c['label']} | {fm(med['create'])} | {fm(med['start'])} | {fm(med['wait'])} | {fm(med['delete'])} |")
    out.append("")

    def row(label, num, den, target=None, times=False):
        if num not in s or den not in s:
            return
        w = ratio(s[num]["wall_med"], s[den]["wall_med"])
        c = ratio(s[num]["cpu_med"], s[den]["cpu_med"])
        verdict = ""
        if target is not None:
            op, val = target
            ok_w = w <= val if op == "<=" else w >= val
            ok_c = c <= val if op == "<=" else c >= val
            verdict = f"{op} {val:g}: wall {'met' if ok_w else 'NOT met'}, CPU {'met' if ok_c else 'NOT met'}"
        fmt = (lambda x: f"{x:.1f}×") if times else (lambda x: f"{x:.2f}")
        out.append(f"| {label} | {fmt(w)} | {fmt(c)} | {verdict} |")

    out.append("Ratios of the medians:\n")
    out.append("| ratio | wall | CPU | target |")
    out.append("|---|---:|---:|---|")
    row("warm wasm hello / crun native `/bin/true`", "pouch-wasm-warm", "crun-native", ("<=", 1.0))
    row("warm wasm hello / pouch native `/bin/true`", "pouch-wasm-warm", "pouch-native")
    row("pouch native / crun native", "pouch-native", "crun-native", ("<=", 1.0))
    row("hello speed-up, warm vs cold (cold / warm)", "pouch-wasm-cold", "pouch-wasm-warm", times=True)
    row("CPython speed-up, warm vs cold (cold / warm)", "pouch-python-cold", "pouch-python-warm", (">=", 10.0), times=True)
    row("pouch warm hello / wasmtime CLI warm hello", "pouch-wasm-warm", "cli-warm")
    row("pouch warm CPython / wasmtime CLI warm CPython", "pouch-python-warm", "cli-python-warm")
    row("pouch cold CPython / wasmtime CLI cold CPython", "pouch-python-cold", "cli-python-cold")
    out.append("")
    if h.cold_sizes:
        out.append("Compile-cache entry written by a cold `create`: " + ", ".join(
            f"{k} {v / 1024:.0f} KiB" for k, v in h.cold_sizes.items()) + ".\n")
    out.append(
        f"Noise: host CPU busy before {meta['load_before']:.0f} %, after {meta['load_after']:.0f} % "
        f"(1 s samples, % of all {os.cpu_count()} CPUs, nothing of ours running); loadavg before "
        f"`{meta['loadavg_before']}`, after `{meta['loadavg_after']}`. CPU not accounted to our "
        f"processes while measuring (other users plus asynchronous kernel work): "
        + ", ".join(f"{k} group {v:.0f} %" for k, v in meta["background"].items())
        + " of the machine.\n"
    )
    odd = [f"{rt.name} {rt.not_reparented}" for rt in h.runtimes if rt.not_reparented]
    if odd:
        out.append("Warning: some container inits were not reparented to the harness, so their CPU "
                   "is missing from the CPU columns: " + ", ".join(odd) + ".\n")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--base-config", required=True)
    p.add_argument("--rootfs", required=True, help="the shared rootfs (holds /app/hello.wasm, /app/python.wasm)")
    p.add_argument("--cgroup-parent", required=True)
    p.add_argument("--pouch", required=True)
    p.add_argument("--crun", help="crun binary (omitted: no crun contender)")
    p.add_argument("--wasmtime", help="wasmtime CLI binary (omitted: no CLI reference)")
    p.add_argument("--no-large", dest="large", action="store_false", help="skip the CPython group")
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--large-iterations", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--settle-ms", type=int, default=20)
    p.add_argument("--output")
    a = p.parse_args()
    if not a.cgroup_parent.startswith("/"):
        p.error("--cgroup-parent must be absolute")

    def measure(h, results, background):
        groups = [("small", "hello / true", a.iterations, a.warmup)]
        if a.large:
            groups.append(("large", "CPython", a.large_iterations, 0))
        for grp, label, iters, warm in groups:
            keys = [k for k, c in h.contenders.items() if c["group"] == grp]
            log(f"{label}: {iters} x {len(keys)} contenders ...")
            res, background[label] = benchlib.not_ours(lambda: h.interleaved_keys(label, keys, iters, warm))
            results.update(res)

    rs.run(Harness, a, measure, report)


if __name__ == "__main__":
    try:
        main()
    except rs.BenchError as e:
        log(f"error: {e}")
        sys.exit(1)
