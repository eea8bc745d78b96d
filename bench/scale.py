"""``python -m bench.scale``: the scale run (``make bench-scale``, issue #14 item 4).

    python -m bench.scale                      # 50,000 subscribers, 3 workers (~5-10 min)
    python -m bench.scale --n 5000             # a quick run
    python -m bench.scale --n 300 --workers 2 --loadgens 2 --out /tmp/x   # the smoke test

N idle WebSocket subscribers on one topic, served by ``uvicorn --workers W`` (tidings
as the README says: ``tidings.serve``'s protocols, the Redis broker on database
:data:`REDIS_DB`, emptied first) and driven by L load-generator processes
(:mod:`bench.scalegen`), each from its own loopback source address (127.0.0.2, .3, …).
Why so many processes: one may hold fewer than ~19,000 sockets here (hard
``nofile`` limit 20,000) and one source address has ~28,000 ephemeral ports.

Phases, each with its own deadline, under a global ``--timeout``:

1. **accept**: every subscriber connects and subscribes -> time until all N are;
   the server's RSS (master + workers) before and after, per connection;
2. **broadcast**: one ``tidings.publish()`` from this process (as a management command
   would: Redis carries it to every worker) -> time until all N have it, p50/p99 of
   each client's publish-to-receive latency; ``--broadcasts`` times;
3. **reconnect storm**: every worker is SIGKILLed at once (a crash, or a deploy that
   does not drain: every connection is cut in the same instant); uvicorn's master
   starts new ones. Half the ``--storm-messages`` are published while no worker
   runs, the rest once the new workers are up, while clients reconnect. Each client
   resumes with ``since`` = the last position it saw -> time until every client is
   back, answered ``recovered: true``, and holds every message exactly once (its
   positions consecutive: no duplicate, no gap).

Every process it starts is in a process group of its own and is killed by that
group's id when the run ends, however it ends (a failure, the timeout, Ctrl-C).
The default run writes ``bench/results/scale.{json,md}`` and the section of
docs/performance.md between its ``scale:begin``/``scale:end`` markers; any other
size writes ``scale-partial.*`` unless ``--stem`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import scalereport
from bench.procstat import rss_bytes
from bench.runner import log, machine
from bench.scaleproc import Cluster, LoadGen
from bench.wire import PAD

DEFAULT_N = 50_000
REDIS_DB = 12  # the bench's other targets use 9 and 10
TOPIC = "bench.scale"
PER_LOADGEN = 12_500  # subscribers per load generator by default: well under 19,000 fds
RESULTS = Path(__file__).resolve().parent / "results"
DOC = RESULTS.parent.parent / "docs" / "performance.md"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=DEFAULT_N, help="subscribers (default 50,000)")
    p.add_argument("--workers", type=int, default=3, help="uvicorn workers (default 3)")
    p.add_argument("--loadgens", type=int, help="load-generator processes (default N/12,500)")
    p.add_argument("--concurrency", type=int, default=400, help="handshakes in flight (all)")
    p.add_argument("--broadcasts", type=int, default=3, help="single broadcasts to all N")
    p.add_argument("--storm-messages", type=int, default=6, help="published during the storm")
    p.add_argument(
        "--kill",
        type=int,
        help="workers the storm kills (default: all); fewer: the others' clients stay "
        "connected, get lone broadcasts every --probe-interval during the storm, and "
        "their latency is compared with the same before it",
    )
    p.add_argument("--probe-interval", type=float, default=0.25, help="seconds (--kill)")
    p.add_argument("--timeout", type=float, default=1500.0, help="global deadline, seconds")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    p.add_argument("--stem", help="file name stem (default: scale for N=50,000)")
    return p.parse_args(argv)


class Timeout(Exception):
    """The global deadline passed (SIGALRM) or the run was told to stop (SIGTERM)."""


def _raise(signum: int, frame: object) -> None:
    raise Timeout(f"stopped by {signal.Signals(signum).name}")


def publisher() -> Any:
    """``tidings.publish`` in this process, on the workers' Redis database."""
    import django

    django.setup()
    import tidings

    return tidings.publish


def stamped(seq: int) -> dict[str, Any]:
    """A message's data: send time first (the load generators read it), as bench.wire's."""
    return {"t": time.time_ns(), "seq": seq, "text": PAD}


def percentiles(values: list[int], scale: float = 1e6) -> dict[str, float]:
    """p50, p99 and max of ``values`` (ns), in ms."""
    if not values:
        return {}
    v = sorted(values)
    pick = lambda q: v[min(len(v) - 1, int(q * len(v)))] / scale  # noqa: E731
    return {"p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": v[-1] / scale}


class Run:
    """One scale run: the cluster, the load generators, the phases, the result."""

    def __init__(self, args: argparse.Namespace, log_dir: Path) -> None:
        self.args = args
        self.n = args.n
        self.loadgens = args.loadgens or max(2, math.ceil(args.n / PER_LOADGEN))
        self.cluster = Cluster(args.workers, f"redis://127.0.0.1:6379/{REDIS_DB}", log_dir)
        self.gens: list[LoadGen] = []
        self.log_dir = log_dir
        self.r: dict[str, Any] = {"error": None}

    def deadline(self, per_k: float, floor: float) -> float:
        """A phase's deadline: ``per_k`` seconds per 1,000 subscribers, at least ``floor``."""
        return max(floor, per_k * self.n / 1000)

    def ask(self, cmd: dict[str, Any]) -> list[dict[str, Any]]:
        """Send ``cmd`` to every load generator; their answers, in order."""
        for gen in self.gens:
            gen.send(cmd)
        limit = time.monotonic() + float(cmd.get("timeout", 60)) + 30
        return [gen.recv(limit) for gen in self.gens]

    def rss(self) -> dict[str, Any]:
        pids = self.cluster.server_pids()
        sizes = {str(pid): rss_bytes(pid) for pid in pids}
        return {"total_bytes": sum(sizes.values()), "by_pid": sizes}

    def run(self) -> dict[str, Any]:
        a, r = self.args, self.r
        r.update(n=self.n, workers=a.workers, loadgens=self.loadgens, topic=TOPIC)
        r["redis_db"] = REDIS_DB
        self.cluster.flush()
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.servers.scale_settings"
        os.environ["BENCH_TIDINGS_BROKER"] = self.cluster.broker
        publish = publisher()
        started = time.monotonic()
        self.cluster.start()
        r["workers_ready_s"] = self.cluster.ready(time.monotonic() + 120)
        log(f"{a.workers} workers up in {time.monotonic() - started:.1f} s")
        time.sleep(1.0)
        r["rss_before"] = self.rss()
        k = self.loadgens
        shares = [self.n // k + (i < self.n % k) for i in range(k)]
        for i, share in enumerate(shares):
            source = f"127.0.0.{2 + i}"
            self.gens.append(LoadGen(self.cluster, share, source, TOPIC, self.log_dir))
        for gen in self.gens:
            gen.ready(time.monotonic() + 60)
        self.accept(max(1, a.concurrency // self.loadgens))
        for i in range(a.broadcasts):
            self.broadcast(publish, i)
        self.storm(publish, a.broadcasts)
        return r

    def accept(self, concurrency: int) -> None:
        r = self.r
        timeout = self.deadline(per_k=8, floor=60)
        t0 = time.time_ns()
        replies = self.ask({"cmd": "connect", "concurrency": concurrency, "timeout": timeout})
        connected = sum(x["connected"] for x in replies)
        r["accept"] = {
            "connected": connected,
            "seconds": (max(x["done_ns"] for x in replies) - t0) / 1e9,
            "attempts": sum(x["attempts"] for x in replies),
            "errors": _merge(x["errors"] for x in replies),
            "deadline_s": timeout,
        }
        log(f"accept: {connected:,} of {self.n:,} in {r['accept']['seconds']:.1f} s")
        if connected < self.n:
            raise RuntimeError(f"accept: only {connected} of {self.n} subscribed in {timeout} s")
        time.sleep(2.0)
        r["rss_idle"] = self.rss()
        r["sockets_by_worker"] = self.cluster.sockets_by_worker()
        grown = r["rss_idle"]["total_bytes"] - r["rss_before"]["total_bytes"]
        r["rss_per_connection_bytes"] = grown / self.n
        r["rss_idle_per_connection_bytes"] = r["rss_idle"]["total_bytes"] / self.n

    def broadcast(self, publish: Any, seq: int) -> None:
        timeout = self.deadline(per_k=1, floor=30)
        self.ask({"cmd": "arm"})
        data = stamped(seq)
        publish(TOPIC, data)
        replies = self.ask({"cmd": "collect", "timeout": timeout})
        delivered = sum(x["delivered"] for x in replies)
        latencies = [v for x in replies for v in x["latencies_ns"]]
        one = {
            "delivered": delivered,
            "reach_all_ms": (max(x["last_ns"] for x in replies) - data["t"]) / 1e6,
            **percentiles(latencies),
        }
        self.r.setdefault("broadcasts", []).append(one)
        log(f"broadcast {seq + 1}: {delivered:,} in {one['reach_all_ms']:.0f} ms")
        if delivered < self.n:
            raise RuntimeError(f"broadcast {seq + 1}: {delivered} of {self.n} got it")

    def probe(self, publish: Any, seq: int) -> tuple[Any, dict[str, float]]:
        """``--storm-messages`` lone broadcasts, ``--probe-interval`` apart: the last
        one's position, and their latency at the clients never cut meanwhile."""
        a = self.args
        self.ask({"cmd": "probe"})
        last = None
        for k in range(a.storm_messages):
            last = publish(TOPIC, stamped(seq + k))
            time.sleep(a.probe_interval)
        time.sleep(1.0)
        got = [v for x in self.ask({"cmd": "probes"}) for v in x["probes_ns"]]
        return last, {"samples": len(got), **percentiles(got)}

    def storm(self, publish: Any, seq: int) -> None:
        a, r = self.args, self.r
        timeout = self.deadline(per_k=4, floor=90)
        old = self.cluster.worker_pids()
        kill = len(old) if a.kill is None else min(a.kill, len(old))
        probing = kill < len(old)
        if probing:  # the same lone broadcasts before the storm, to compare
            _, r["probe_before_storm"] = self.probe(publish, seq)
            seq += a.storm_messages
        t_kill = time.time_ns()
        for pid in old[:kill]:
            os.kill(pid, signal.SIGKILL)
        early = 0 if probing else (a.storm_messages + 1) // 2
        last = None
        for k in range(early):  # while no worker runs
            last = publish(TOPIC, stamped(seq + k))
        if probing:  # while the cut clients come back to the workers still up
            last, r["probe_during_storm"] = self.probe(publish, seq)
            self.cluster.ready(time.monotonic() + 120, since_kill=old[:kill])
            restarted_s = (time.time_ns() - t_kill) / 1e9  # (at most: probed meanwhile)
        else:
            restarted_s = self.cluster.ready(time.monotonic() + 120, since_kill=old)
        log(f"storm: {kill} worker(s) killed, new ones up {restarted_s:.1f} s later")
        for k in range(early, 0 if probing else a.storm_messages):  # as clients come back
            last = publish(TOPIC, stamped(seq + k))
        final = int(str(last).rpartition(":")[2]) if last is not None else seq
        command = {"cmd": "recover", "final": final, "timeout": timeout, "kept": probing}
        replies = self.ask(command)
        resumed = [v - t_kill for x in replies for v in x["resumed_ns"]]
        s = {
            key: sum(x[key] for x in replies)
            for key in (
                "back", "connected", "cut", "cuts", "recovered_true", "recovered_false",
                "at_final", "duplicates", "gaps", "epoch_changes", "failed_attempts",
            )
        }  # fmt: skip
        s.update(
            messages=a.storm_messages,
            published_while_down=early,
            final_offset=final,
            workers_back_s=restarted_s,
            all_back_s=max(resumed) / 1e9 if resumed else None,
            all_done_s=(max(x["done_ns"] for x in replies) - t_kill) / 1e9,
            resumed=percentiles(resumed, 1e9 / 1e3),
            errors=_merge(x["errors"] for x in replies),
            deadline_s=timeout,
        )
        s["killed_workers"] = kill
        s["ok"] = (
            s["back"] == s["cut"]
            and s["at_final"] == self.n
            and (probing or s["cut"] == self.n)
            and s["recovered_false"] == s["duplicates"] == s["gaps"] == s["epoch_changes"] == 0
        )
        # workers that started again after the storm's new ones (uvicorn's master replaces
        # a worker that dies or misses its 5 s health check): each such start cut clients
        s["extra_worker_starts"] = len(self.cluster.ready_pids()) - a.workers - kill
        r["storm"] = s
        r["rss_after_storm"] = self.rss()
        log(f"storm: {s['back']:,} of {self.n:,} back, ok={s['ok']}, in {s['all_done_s']:.1f} s")
        if not s["ok"]:
            raise RuntimeError(f"storm: not every client recovered: {json.dumps(s)[:600]}")

    def close(self) -> None:
        for gen in self.gens:
            gen.stop()
        self.cluster.stop()


def _merge(dicts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    given = sys.argv[1:] if argv is None else argv
    command = ("python -m bench.scale " + shlex.join(given)).strip()
    log_dir = Path(tempfile.mkdtemp(prefix="tidings-scale-"))
    log(f"logs in {log_dir}")
    meta = machine(command)
    signal.signal(signal.SIGALRM, _raise)
    signal.signal(signal.SIGTERM, _raise)
    signal.alarm(max(1, int(args.timeout)))
    run = Run(args, log_dir)
    started = time.monotonic()
    try:
        run.run()
    except (Exception, Timeout, KeyboardInterrupt) as e:
        run.r["error"] = f"{type(e).__name__}: {e}"
        log(f"ERROR {run.r['error']}")
    finally:
        signal.alarm(0)
        run.close()
    run.r["seconds"] = time.monotonic() - started
    run.r["server_log_tail"] = run.cluster.log_tail() if run.r["error"] else ""
    stem = args.stem or ("scale" if args.n == DEFAULT_N else "scale-partial")
    doc = {"meta": meta, "config": vars(args) | {"out": str(args.out)}, "result": run.r}
    paths = scalereport.write(doc, args.out, stem)
    if stem == "scale" and args.out == RESULTS and scalereport.update_doc(DOC, doc):
        paths.append(DOC)
    log("wrote " + ", ".join(str(p) for p in paths))
    return 0 if run.r["error"] is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
