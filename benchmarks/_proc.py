"""Run a command and watch its process tree through /proc (Linux; no psutil): wall time, each
process's peak resident memory (VmHWM) and the peak of the tree's summed resident memory (VmRSS)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path


def read_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process in kB ({} when it is gone)."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    except (OSError, ValueError):
        return {}
    return out


def _parents() -> dict[int, int]:
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
        out[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return out


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    parents = _parents()
    tree, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier and p not in tree]
        tree += frontier
    return tree


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


class TreeMonitor:
    """Polls a process tree every `interval` seconds from a thread. `procs`: pid -> {"cmd", "hwm_kb"}
    (the last VmHWM seen: a process's peak up to the last poll before it exited); `peak_sum_kb`: the
    largest sum of the tree's VmRSS at one poll."""

    def __init__(self, root: int, interval: float = 0.2):
        self.root, self.interval = root, interval
        self.procs: dict[int, dict] = {}
        self.peak_sum_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def poll(self) -> None:
        total = 0
        for pid in descendants(self.root):
            st = read_status(pid)
            if not st:
                continue
            info = self.procs.setdefault(pid, {"cmd": cmdline(pid), "hwm_kb": 0})
            info["hwm_kb"] = max(info["hwm_kb"], st.get("VmHWM", 0))
            total += st.get("VmRSS", 0)
        self.peak_sum_kb = max(self.peak_sum_kb, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def __enter__(self) -> TreeMonitor:
        self.poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_monitored(cmd: list[str], interval: float = 0.2, **popen) -> dict:
    """Run cmd to the end. Returns rc, wall_s, start (epoch seconds), procs (pid -> cmd, hwm_kb) and
    peak_sum_kb."""
    start = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, **popen)
    with TreeMonitor(proc.pid, interval) as mon:
        rc = proc.wait()
    wall = time.perf_counter() - t0
    return {"rc": rc, "wall_s": wall, "start": start, "procs": mon.procs, "peak_sum_kb": mon.peak_sum_kb}
