"""Run the matrix: for each run, each size, each target, a fresh server and one measurement.

Targets are interleaved inside a run (rather than all runs of one target in a row)
so that the machine's noise, which drifts over minutes, hits every target alike and
the ratios between targets of one run are fair. Each measurement gets a fresh server
process, so nothing one left behind (memory, queues, GC state) weighs on the next.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import uvloop

from bench.loadgen import Measurement, Plan
from bench.profiling import summarize
from bench.server import running
from bench.targets import TARGETS, Target

PACKAGES = (
    "tidings",
    "uvicorn",
    "websockets",
    "uvloop",
    "Django",
    "channels",
    "daphne",
    "channels-redis",
)


def raise_fd_limit(n: int) -> None:
    """N sockets here, N in the server: lift the soft open-files limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if n + 200 > hard:
        raise SystemExit(f"N={n} needs more than the {hard} open files this shell allows")


def git_state() -> str:
    """The commit measured, and whether src/ had uncommitted changes then."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + (" (src/ modified)" if dirty else "")


def machine(command: str) -> dict[str, Any]:
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2)
        versions["redis-server"] = str(client.info("server")["redis_version"])
        client.close()
    except Exception:
        versions["redis-server"] = None
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "loadavg_at_start": os.getloadavg(),
        "command": command,
        "git": git_state(),
    }


def measure(target: Target, n: int, plan: Plan, log_dir: Path) -> dict[str, Any]:
    with running(target, log_dir) as server:
        return uvloop.run(Measurement(server, n, plan).run())


def run_matrix(
    targets: list[str], sizes: list[int], runs: int, plan: Plan, log_dir: Path
) -> list[dict[str, Any]]:
    raise_fd_limit(max(sizes))
    results: list[dict[str, Any]] = []
    for run in range(runs):
        for n in sizes:
            for name in targets:
                target = TARGETS[name]
                skip = _skip_reason(target, n)
                if skip is not None:
                    if run == 0:
                        results.append({"target": name, "n": n, "run": run, "error": skip})
                        log(f"[run {run + 1}/{runs}] {name} N={n}: {skip}")
                    continue
                started = time.monotonic()
                r = measure(target, n, plan, log_dir)
                r["run"] = run
                results.append(r)
                log(
                    f"[run {run + 1}/{runs}] {name} N={n}: {_line(r)} "
                    f"({time.monotonic() - started:.0f} s)"
                )
    return results


def _skip_reason(target: Target, n: int) -> str | None:
    if target.max_n is not None and n > target.max_n:
        return f"skipped: N above {target.max_n:,} ({target.max_n_reason})"
    if target.missing is not None:
        reason = target.missing()
        if reason is not None:
            return f"not run: {reason}"
    return None


def _line(r: dict[str, Any]) -> str:
    parts = []
    if "burst_deliveries_per_s" in r:
        parts.append(f"{r['burst_deliveries_per_s']:,.0f} deliveries/s")
    if "lone_p99_ms" in r:
        parts.append(f"p99 {r['lone_p99_ms']:.1f} ms")
    if "accept_per_s" in r:
        parts.append(f"{r['accept_per_s']:,.0f} accepts/s")
    if "idle_mib_per_1k" in r:
        parts.append(f"{r['idle_mib_per_1k']:.1f} MiB/1k")
    if r.get("error"):
        parts.append(f"ERROR {r['error']}")
    return ", ".join(parts)


# the phases profiled after the accept, in the order the load generator runs them
PROFILED = (
    ("burst", "Fan-out burst (the client's frames in one write)"),
    ("loop", "Fan-out from the server's apublish() loop"),
    ("threads", "Fan-out from publish() in 16 threads"),
    ("topics", "Many-topics burst"),
    ("publishers", "Many topics from 16 concurrent publishers"),
)


def profile(target: Target, n: int, plan: Plan, log_dir: Path, out: Path) -> Path:
    """One measurement with the server under cProfile during the accept phase and each
    fan-out: the client burst, the server's apublish() loop, the 16 threads' publishes
    (only the loop's thread is profiled) and the many-topics burst."""
    raise_fd_limit(n)
    prefix = log_dir / f"profile-{target.name}-{n}"
    with running(target, log_dir, profile_to=prefix) as server:
        r = uvloop.run(Measurement(server, n, plan, profile_out=str(prefix)).run())
        for k in range(len(PROFILED) + 1):
            _wait_for(Path(f"{prefix}.{k}.pstats"))
    if r.get("error"):
        raise SystemExit(f"profiled run failed: {r['error']}")
    sections = [
        f"# Profile: {target.label}, N={n:,}",
        "",
        "Server under cProfile (main thread = event loop) during the accept phase and "
        "each fan-out only. "
        f"Command: `python -m bench {shlex.join(sys.argv[1:])}`; code: {git_state()}.",
        "",
    ]
    sections += [
        f"## Accept: {n:,} connections, each subscribed, {r['accept_per_s']:,.0f}/s "
        "under the profiler",
        "",
        summarize(f"{prefix}.0.pstats", n, unit="connection"),
    ]
    for k, (key, title) in enumerate(PROFILED, start=1):
        sections += [
            f"## {title}: {r[f'{key}_messages']:,} messages, "
            f"{r[f'{key}_deliveries_per_s']:,.0f} deliveries/s under the profiler",
            "",
            summarize(f"{prefix}.{k}.pstats", r[f"{key}_delivered"]),
        ]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"profile-{target.name}-{n}.md"
    path.write_text("\n".join(sections))
    return path


def _wait_for(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the profiler wrote no {path}")
        time.sleep(0.1)


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
