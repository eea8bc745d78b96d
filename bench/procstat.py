"""CPU time and memory of a process, read from /proc (Linux only, no dependency).

``utime + stime`` of ``/proc/<pid>/stat`` counts every thread of the process, so a
server's thread pool (Django's ``sync_to_async``, Twisted) is included. The unit is a
clock tick (10 ms on usual kernels): phases are sized to last long enough for that.
"""

from __future__ import annotations

import os
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()  # the name may contain spaces
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS)."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent not idle (``/proc/stat``)."""
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK  # user nice system idle iowait irq softirq steal


class CpuMeter:
    """CPU used by some processes and by this one over a span of wall time."""

    def __init__(self, pids: list[int], servers: int = 1) -> None:
        self.pids = pids
        self.servers = servers  # the first ``servers`` pids are the server's processes
        self._start = self._read()

    def _read(self) -> tuple[float, float, float, list[float]]:
        pids = [cpu_seconds(p) for p in self.pids]
        return time.perf_counter(), time.process_time(), machine_busy_seconds(), pids

    def stop(self) -> dict[str, float]:
        """``wall`` seconds; CPU seconds of ``client`` (this process), ``server`` (the
        first ``servers`` pids, summed; each apart as ``server0``, ``server1``...), ``aux``
        (the other pids, e.g. Redis) and ``other`` (everything else on the machine: the
        noise of a shared host)."""
        wall0, own0, busy0, pids0 = self._start
        wall1, own1, busy1, pids1 = self._read()
        deltas = [b - a for a, b in zip(pids0, pids1, strict=True)]
        client = own1 - own0
        k = self.servers
        return {
            "wall": wall1 - wall0,
            "client": client,
            "server": sum(deltas[:k]),
            **{f"server{i}": d for i, d in enumerate(deltas[:k])},
            "aux": sum(deltas[k:]),
            "other": max(0.0, busy1 - busy0 - client - sum(deltas)),
        }
