"""Shared by the measurement harnesses of benches/ (imported, not run): the error type and the
log line, the child subreaper and its reaping, the machine's and a process's CPU from /proc,
and small report helpers."""

import ctypes
import math
import os
import resource
import signal
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36


class BenchError(Exception):
    """A failed benchmark: the harness logs it as an error and exits 1."""


def logger(name):
    """A log(msg) function that writes `NAME: msg` to stderr."""

    def log(msg):
        print(f"{name}: {msg}", file=sys.stderr, flush=True)

    return log


# ---- processes ---------------------------------------------------------------------------------


def become_subreaper():
    """Makes this process a child subreaper: orphans of its children (a container init left by
    `create`, podman's conmon) are reparented to it, and their CPU lands in RUSAGE_CHILDREN
    when it reaps them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def unwind_on_signals():
    """SIGTERM and SIGHUP unwind like Ctrl-C (SystemExit), so that the clean-up code runs."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))


def reap_children(timeout, message):
    """Reaps every child that has exited or exits within timeout seconds, until none is left;
    raises BenchError(message) if one is still running then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() > deadline:
                raise BenchError(message)
            time.sleep(0.001)


# ---- CPU and load --------------------------------------------------------------------------------


def host_busy():
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is part of user)
    idle = v[3] + v[4]  # idle + iowait
    total = sum(v[:8])
    return total - idle, total


def machine_busy():
    """CPU seconds the whole machine spent (all cores), from /proc/stat."""
    return host_busy()[0] / CLK_TCK


def idle_load_sample(seconds=1.0):
    """% of all CPUs busy during the next seconds (meant for while nothing of ours runs)."""
    b0, t0 = host_busy()
    time.sleep(seconds)
    b1, t1 = host_busy()
    return 100.0 * (b1 - b0) / max(1, t1 - t0)


def not_ours(fn):
    """Runs fn(); returns its result and the % of the machine that was busy meanwhile with CPU
    not accounted to our children (other users, asynchronous kernel work)."""
    b0, _ = host_busy()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    result = fn()
    w1 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b1, _ = host_busy()
    ours = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    busy_s = (b1 - b0) / CLK_TCK
    return result, max(0.0, 100.0 * (busy_s - ours) / (w1 - w0) / os.cpu_count())


def proc_cpu(pid):
    """utime+stime of a process (all its threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loadavg():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg has them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


# ---- report helpers ------------------------------------------------------------------------------


def ratio(a, b):
    """a's mean / b's mean of two hyperfine results, and its standard deviation (propagated)."""
    q = a["mean"] / b["mean"]
    ea = (a["stddev"] or 0) / a["mean"]
    eb = (b["stddev"] or 0) / b["mean"]
    return q, q * math.sqrt(ea * ea + eb * eb)


def tail(path, n=20):
    """The last n lines of a log file, for an error message."""
    try:
        with open(path, "rb") as f:
            return b"".join(f.readlines()[-n:]).decode("utf-8", "replace")
    except OSError as e:
        return f"(cannot read: {e})"
