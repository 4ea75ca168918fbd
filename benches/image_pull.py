#!/usr/bin/env python3
"""Measurement harness of benches/image-pull.sh (run that script, not this file).

For every image it is given, pulls it cold from the local registry with every tool, in three
passes, and prints a markdown report:

  1. smoke: one unmeasured pull per tool, its output kept in logs/, its result checked (the
     manifest digest the tool stored, and the snapshots pouch and containerd unpacked);
  2. wall: hyperfine, all tools in one invocation, the tool's reset as its --prepare, exported
     as JSON;
  3. CPU: the same pulls again, rotating the order of the tools each round: wall, user and sys
     CPU and peak RSS of the tool's process from wait4() (the counters `/usr/bin/time -v`
     prints), the CPU containerd's daemon spent meanwhile (ctr's unpack runs there), and the
     CPU the registry spent serving.

Every pull of every pass is checked against the registry's access log: the blob bytes served to
the tool's User-Agent must be exactly the image's blob bytes (config + layers) once per pull,
so a pull that found something cached would fail the run.

Commands come from the calling script as templates with {ref} and {name}; the reset commands
(hyperfine's --prepare) too. Nothing here deletes anything by itself: resets are the script's.
"""

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from statistics import median

import benchlib
from benchlib import BenchError, proc_cpu, ratio, tail

ENV = dict(os.environ)
# The tools' User-Agents in the registry's access log.
AGENTS = {"pouch": "pouch/", "skopeo": "skopeo/", "ctr": "containerd/"}
ACCESS = re.compile(
    r'^\S+ \S+ \S+ \[[^\]]*\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) '
    r'(?P<bytes>\d+|-) "[^"]*" "(?P<agent>[^"]*)"'
)
BLOB_GET = re.compile(r"^/v2/.+/blobs/sha256:[0-9a-f]{64}$")
log = benchlib.logger("image-pull")


# ---- images and the registry ------------------------------------------------------------------


class Image:
    """One image: its name, its reference in the registry, and what a pull must fetch."""

    def __init__(self, spec):
        try:
            self.name, self.ref, self.layout = spec.split("=", 2)
        except ValueError:
            raise BenchError(f"--image {spec!r}: expected NAME=REF=LAYOUT_DIR") from None
        with open(os.path.join(self.layout, "index.json")) as f:
            index = json.load(f)
        self.digest = index["manifests"][0]["digest"]
        with open(self.blob(self.digest)) as f:
            manifest = json.load(f)
        self.config_size = manifest["config"]["size"]
        self.layers = [l["size"] for l in manifest["layers"]]
        self.blob_bytes = self.config_size + sum(self.layers)
        self.blob_count = 1 + len(self.layers)

    def blob(self, digest):
        algo, hexd = digest.split(":", 1)
        return os.path.join(self.layout, "blobs", algo, hexd)

    def fmt(self, template, **extra):
        return template.format(ref=self.ref, name=self.name, **extra)


class RegistryLog:
    """Reads the registry's access log from an offset: blob bytes served per tool."""

    def __init__(self, path):
        self.path = path

    def offset(self):
        return os.path.getsize(self.path)

    def served(self, start):
        with open(self.path, "rb") as f:
            f.seek(start)
            text = f.read().decode("utf-8", "replace")
        out = {t: [0, 0] for t in AGENTS}  # tool -> [bytes, blob GETs]
        for line in text.splitlines():
            m = ACCESS.match(line)
            if not m or m["method"] != "GET" or m["status"] not in ("200", "206"):
                continue
            if not BLOB_GET.match(m["path"].split("?", 1)[0]):
                continue
            for tool, prefix in AGENTS.items():
                if m["agent"].startswith(prefix):
                    out[tool][0] += 0 if m["bytes"] == "-" else int(m["bytes"])
                    out[tool][1] += 1
        return out

    def check(self, start, image, pulls, what):
        """Every tool in `pulls` (tool -> number of pulls) got the image's blobs that many times.
        The access-log line is written after the response; give it a moment."""
        deadline = time.monotonic() + 3
        while True:
            served = self.served(start)
            ok = all(served[t][0] == n * image.blob_bytes for t, n in pulls.items())
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        bad = [
            f"{t}: {served[t][0]} bytes in {served[t][1]} blob GETs, expected "
            f"{n * image.blob_bytes} ({n} × {image.blob_bytes}) in {n * image.blob_count}"
            for t, n in pulls.items()
            if served[t][0] != n * image.blob_bytes
        ]
        if bad:
            raise BenchError(
                f"{image.name}, {what}: the registry did not serve every pull in full "
                f"(a tool found content cached, or failed): " + "; ".join(bad)
            )
        return served


# ---- the harness ------------------------------------------------------------------------------


class Harness:
    def __init__(self, a):
        self.a = a
        self.tools = []  # (name, command template, reset template)
        cmds = dict(kv.split("=", 1) for kv in a.tool)
        resets = dict(kv.split("=", 1) for kv in a.reset)
        for name in cmds:
            if name not in AGENTS:
                raise BenchError(f"unknown tool {name!r} (known: {', '.join(AGENTS)})")
            if name not in resets:
                raise BenchError(f"no --reset for {name}")
            self.tools.append((name, cmds[name], resets[name]))
        self.images = [Image(s) for s in a.image]
        self.runs = dict(kv.split("=", 1) for kv in a.runs)
        self.reg = RegistryLog(a.registry_log)
        self.logdir = os.path.join(a.workdir, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.results = {}  # image name -> {"wall": {...}, "cpu": {...}, "served": ...}

    def sh(self, argv, logname, what):
        """Runs argv to completion with stdout+stderr appended to logs/logname."""
        path = os.path.join(self.logdir, logname)
        with open(path, "ab") as out:
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=ENV)
        if r.returncode != 0:
            raise BenchError(f"{what}: `{shlex.join(argv)}` exited with {r.returncode}; "
                             f"its output (tail of {path}):\n{tail(path)}")

    def reset(self, image, tool, reset):
        self.sh(shlex.split(image.fmt(reset)), f"{image.name}-{tool}.reset.log", f"reset of {tool}")

    # ---- 1. smoke ----

    def smoke(self, image):
        for tool, cmd, reset in self.tools:
            self.reset(image, tool, reset)
            start = self.reg.offset()
            self.sh(shlex.split(image.fmt(cmd)), f"{image.name}-{tool}.smoke.log",
                    f"{image.name}: smoke pull with {tool}")
            self.reg.check(start, image, {tool: 1}, f"smoke pull with {tool}")
            self.check_result(image, tool)
            log(f"{image.name}: {tool} pulled it ({image.blob_bytes} bytes served, result checked)")

    def capture(self, argv):
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=ENV)
        if r.returncode != 0:
            raise BenchError(f"`{shlex.join(argv)}` exited with {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def check_result(self, image, tool):
        """The tool stored the right manifest; pouch and ctr also unpacked every layer."""
        a, n = self.a, len(image.layers)
        if tool == "pouch":
            root = os.path.join(a.workdir, "pouch-root")
            imgs = json.loads(self.capture([a.pouch, "--data-root", root, "images", "--format", "json"]))
            got = [i["Digest"] for i in imgs if i["Name"] == image.ref]
            snaps = [s for s in os.listdir(os.path.join(root, "snapshots")) if not s.startswith(".")]
            unpacked = len(snaps)
        elif tool == "skopeo":
            with open(os.path.join(a.workdir, "skopeo-oci", "index.json")) as f:
                got = [m["digest"] for m in json.load(f)["manifests"]]
            unpacked = n  # skopeo does not unpack
        else:
            ctr = ["ctr", "--address", a.containerd_socket, "-n", a.containerd_namespace]
            got = [l.split()[2] for l in self.capture(ctr + ["images", "ls"]).splitlines()[1:]
                   if l.split()[0] == image.ref]
            unpacked = len(self.capture(ctr + ["snapshots", "ls"]).splitlines()[1:])
        if got != [image.digest]:
            raise BenchError(f"{image.name}: {tool} stored {got or 'nothing'}, expected {image.digest}")
        if unpacked != n:
            raise BenchError(f"{image.name}: {tool} left {unpacked} snapshots, expected {n} (one per layer)")

    # ---- 2. wall time: hyperfine ----

    def wall(self, image):
        runs = int(self.runs.get(image.name, self.runs.get("*", "3")))
        json_path = os.path.join(self.a.workdir, f"hyperfine-{image.name}.json")
        argv = ["hyperfine", "-N", "--style", "basic", "--warmup", str(self.a.warmup),
                "--runs", str(runs), "--export-json", json_path]
        for tool, cmd, reset in self.tools:
            argv += ["-n", tool, "--prepare", image.fmt(reset), image.fmt(cmd)]
        log(f"{image.name}: hyperfine, {self.a.warmup} warm-up + {runs} runs per tool ...")
        start = self.reg.offset()
        # hyperfine's own report goes to our stderr (the markdown report is our stdout)
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=sys.stderr, env=ENV)
        if r.returncode != 0:
            raise BenchError(f"{image.name}: hyperfine exited with {r.returncode} (the failing tool's "
                             f"output is not kept by hyperfine: run its command by hand; the smoke "
                             f"pull's output is in {self.logdir})")
        pulls = self.a.warmup + runs
        served = self.reg.check(start, image, {t: pulls for t, _, _ in self.tools}, "hyperfine")
        with open(json_path) as f:
            res = {r["command"]: r for r in json.load(f)["results"]}
        return {"runs": runs, "pulls": pulls, "results": res, "served": served, "json": json_path}

    # ---- 3. CPU and peak RSS ----

    def cpu(self, image):
        rounds = self.a.cpu_runs
        out = {t: [] for t, _, _ in self.tools}
        if rounds == 0:
            return out
        log(f"{image.name}: CPU/RSS pass, {rounds} round(s) ...")
        for i in range(rounds):
            order = self.tools[i % len(self.tools):] + self.tools[:i % len(self.tools)]
            for tool, cmd, reset in order:
                self.reset(image, tool, reset)
                out[tool].append(self.measure(image, tool, shlex.split(image.fmt(cmd))))
        return out

    def measure(self, image, tool, argv):
        path = os.path.join(self.logdir, f"{image.name}-{tool}.cpu.log")
        start = self.reg.offset()
        reg0, ctrd0 = proc_cpu(self.a.registry_pid), proc_cpu(self.a.containerd_pid)
        with open(path, "ab") as out:
            t0 = time.monotonic()
            pid = os.posix_spawnp(argv[0], argv, ENV, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out.fileno(), 1),
                (os.POSIX_SPAWN_DUP2, out.fileno(), 2),
            ])
            _, status, ru = os.wait4(pid, 0)
            wall = time.monotonic() - t0
        reg1, ctrd1 = proc_cpu(self.a.registry_pid), proc_cpu(self.a.containerd_pid)
        if os.waitstatus_to_exitcode(status) != 0:
            raise BenchError(f"{image.name}: `{shlex.join(argv)}` exited with "
                             f"{os.waitstatus_to_exitcode(status)}; output in {path}:\n{tail(path)}")
        self.reg.check(start, image, {tool: 1}, f"CPU pass, {tool}")
        return {
            "wall": wall,
            "user": ru.ru_utime,
            "sys": ru.ru_stime,
            "maxrss_kib": ru.ru_maxrss,
            "containerd": ctrd1 - ctrd0,
            "registry": reg1 - reg0,
        }

    def run(self):
        for image in self.images:
            log(f"{image.name}: {image.ref}, {len(image.layers)} layers, {image.blob_bytes} blob bytes")
            self.smoke(image)
            wall = self.wall(image)
            cpu = self.cpu(image)
            for tool, _, reset in self.tools:  # leave nothing of this image to the next one
                self.reset(image, tool, reset)
            self.results[image.name] = {"image": image, "wall": wall, "cpu": cpu}
        report = self.report()
        with open(self.a.output, "w") as f:
            f.write(report)
        print(report, end="", flush=True)

    # ---- report ----

    def report(self):
        tools = [t for t, _, _ in self.tools]
        L = []
        L.append("## Results\n")
        L.append("Wall time of one cold pull (hyperfine: mean ± standard deviation, min, max; "
                 f"{self.a.warmup} warm-up pull per tool first). Seconds.\n")
        L.append("| image | blobs (layers) | bytes | tool | runs | mean ± σ | min | max |")
        L.append("|---|---|---:|---|---:|---:|---:|---:|")
        for name, r in self.results.items():
            im, res = r["image"], r["wall"]["results"]
            for t in tools:
                x = res[t]
                L.append(f"| {name} | {im.blob_count} ({len(im.layers)}) | {mib(im.blob_bytes)} | {t} | "
                         f"{r['wall']['runs']} | {x['mean']:.3f} ± {x['stddev'] or 0:.3f} | "
                         f"{x['min']:.3f} | {x['max']:.3f} |")
        L.append("")
        L.append("Ratios of the means (< 1: pouch is faster), ± from the standard deviations. "
                 "Target of issue 5: pouch ≤ the faster of skopeo and ctr.\n")
        others = [t for t in tools if t != "pouch"]
        L.append("| image | " + " | ".join(f"pouch/{t}" for t in others) + " | target |")
        L.append("|---|" + "---:|" * len(others) + "---|")
        for name, r in self.results.items():
            res = r["wall"]["results"]
            p = res["pouch"]
            cells = []
            for t in others:
                q, e = ratio(p, res[t])
                cells.append(f"{q:.2f} ± {e:.2f}")
            best = min(res[t]["mean"] for t in others) if others else float("inf")
            met = "**met**" if p["mean"] <= best else "**not met**"
            fastest = min(others, key=lambda t: res[t]["mean"]) if others else "-"
            L.append(f"| {name} | " + " | ".join(cells) + f" | {met} (fastest other: {fastest}) |")
        L.append("")
        if any(r["cpu"][tools[0]] for r in self.results.values()):
            L.append("CPU time and peak RSS, medians of the CPU pass (rounds in rotating order). "
                     "`tool CPU` is user + sys of the tool's process (wait4, as `/usr/bin/time -v`); "
                     "`containerd` is the daemon's CPU during the pull (ctr fetches in the client "
                     "and unpacks in the daemon); `registry` is what serving cost. Seconds; RSS in MiB.\n")
            L.append("| image | tool | n | wall | tool CPU (user / sys) | containerd | tool + containerd | "
                     "registry | peak RSS (tool) |")
            L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
            for name, r in self.results.items():
                for t in tools:
                    xs = r["cpu"][t]
                    if not xs:
                        continue
                    med = lambda k: median([x[k] for x in xs])  # noqa: E731
                    tool_cpu = median([x["user"] + x["sys"] for x in xs])
                    total = median([x["user"] + x["sys"] + x["containerd"] for x in xs])
                    L.append(f"| {name} | {t} | {len(xs)} | {med('wall'):.3f} | {tool_cpu:.3f} "
                             f"({med('user'):.3f} / {med('sys'):.3f}) | {med('containerd'):.3f} | "
                             f"{total:.3f} | {med('registry'):.3f} | {med('maxrss_kib') / 1024:.1f} |")
            L.append("")
        L.append("Checked: every pull (smoke, warm-up, measured, CPU pass) got the image's blobs in "
                 "full from the registry (access log, by User-Agent):\n")
        for name, r in self.results.items():
            im, w = r["image"], r["wall"]
            parts = [f"{t} {w['served'][t][0]} bytes in {w['served'][t][1]} blob GETs" for t in tools]
            L.append(f"- {name}, hyperfine pass ({w['pulls']} pulls per tool × {im.blob_bytes} bytes): "
                     + ", ".join(parts) + ".")
        L.append("")
        return "\n".join(L) + "\n"


def mib(n):
    return f"{n / 1048576:.1f} MiB"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--image", action="append", required=True, help="NAME=REF=OCI_LAYOUT_DIR")
    p.add_argument("--tool", action="append", required=True, help="TOOL=COMMAND TEMPLATE")
    p.add_argument("--reset", action="append", required=True, help="TOOL=RESET COMMAND TEMPLATE")
    p.add_argument("--runs", action="append", default=[], help="IMAGE=N (or *=N)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--cpu-runs", type=int, default=3)
    p.add_argument("--pouch", required=True)
    p.add_argument("--registry-log", required=True)
    p.add_argument("--registry-pid", type=int, required=True)
    p.add_argument("--containerd-pid", type=int, required=True)
    p.add_argument("--containerd-socket", required=True)
    p.add_argument("--containerd-namespace", required=True)
    p.add_argument("--output", required=True)
    a = p.parse_args()
    try:
        Harness(a).run()
    except BenchError as e:
        log(f"error: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
