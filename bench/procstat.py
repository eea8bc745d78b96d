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


class CpuMeter:
    """CPU used by some processes and by this one over a span of wall time."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self._start = self._read()

    def _read(self) -> tuple[float, float, list[float]]:
        return time.perf_counter(), time.process_time(), [cpu_seconds(p) for p in self.pids]

    def stop(self) -> dict[str, float]:
        """``wall`` seconds, ``client`` CPU seconds (this process), ``server`` CPU seconds
        (the first pid), ``aux`` (the others, e.g. Redis)."""
        wall0, own0, others0 = self._start
        wall1, own1, others1 = self._read()
        deltas = [b - a for a, b in zip(others0, others1, strict=True)]
        return {
            "wall": wall1 - wall0,
            "client": own1 - own0,
            "server": deltas[0],
            "aux": sum(deltas[1:]),
        }
