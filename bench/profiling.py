"""Profile a server's hot path: cProfile switched on and off by signals, per phase.

``python -m bench.profiling OUT MODULE ARGS...`` runs ``python -m MODULE ARGS...``
(uvicorn, the raw server) as usual, except that SIGUSR1 starts a fresh profiler and
SIGUSR2 stops it and writes ``OUT.<k>.pstats`` (k = 0, 1, ...). The harness sends them
around the accept phase and each burst, so each profile holds one phase, not start-up.
cProfile only sees the main thread: the event loop, which is where the hot path runs.

:func:`summarize` turns one such file into a table per delivery: how many calls and
how many µs of own time (``tottime``) and cumulative time each function costs for one
delivered message. cProfile roughly doubles the cost of call-heavy code, so read the
shares, not the absolute µs.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import runpy
import signal
import sys
from types import FrameType


def main() -> None:
    out, module = sys.argv[1], sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    state: dict[str, object] = {"profiler": None, "count": 0}

    def start(signum: int, frame: FrameType | None) -> None:
        profiler = cProfile.Profile()
        state["profiler"] = profiler
        profiler.enable()

    def stop(signum: int, frame: FrameType | None) -> None:
        profiler = state["profiler"]
        if isinstance(profiler, cProfile.Profile):
            profiler.disable()
            count = int(str(state["count"]))
            path = f"{out}.{count}.pstats"
            profiler.dump_stats(path + ".tmp")
            os.replace(path + ".tmp", path)  # the harness waits for the final name
            state["profiler"] = None
            state["count"] = count + 1

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def short(path: str) -> str:
    """A readable location: the part after site-packages/ or src/."""
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarize(path: str, count: int, unit: str = "delivery", top: int = 25) -> str:
    """Markdown tables of the top functions by own time and by cumulative time, per
    ``unit`` (``count`` of them happened while profiling)."""
    stats = pstats.Stats(path)
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in rows.values())
    lines = [
        f"Profiled {count:,} x {unit}; total own time {total * 1e6 / count:.2f} µs "
        f"per {unit} (under cProfile, which inflates it).",
        "",
    ]
    for title, index in (("own time (tottime)", 2), ("cumulative time", 3)):
        lines += [
            f"Top {top} by {title}:",
            "",
            f"| function | calls/{unit} | own µs/{unit} | cum µs/{unit} | own share |",
            "|---|---:|---:|---:|---:|",
        ]
        ranked = sorted(rows.items(), key=lambda kv: kv[1][index], reverse=True)[:top]
        for (file, line, name), (_cc, nc, tt, ct, _callers) in ranked:
            lines.append(
                f"| `{name}` {short(file)}:{line} | {nc / count:.3f} | "
                f"{tt * 1e6 / count:.3f} | {ct * 1e6 / count:.3f} | "
                f"{100 * tt / total:.1f} % |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
