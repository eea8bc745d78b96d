"""The scale run's report (:mod:`bench.scale`): its JSON, its markdown, and the section
of docs/performance.md between ``scale:begin`` and ``scale:end``, all from the run's
document so that nothing in them is typed by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import replace_between

BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
MIB = 1024 * 1024


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.1f}")


def markdown(doc: dict[str, Any]) -> str:
    meta, r = doc["meta"], doc["result"]
    v = meta["versions"]
    lines = [
        f"Run {meta['date']} on {meta['cpus']} x {meta['cpu_model']}, {meta['memory_gib']} GiB, "
        f"Linux {meta['kernel']}, load average at start "
        + ", ".join(f"{x:.2f}" for x in meta["loadavg_at_start"])
        + f". Code: {meta['git']}. The machine is shared: other jobs (e.g. another "
        "engineer's tests) may have run during it.",
        "",
        f"Python {meta['python']}, tidings {v.get('tidings')}, uvicorn {v.get('uvicorn')}, "
        f"websockets {v.get('websockets')}, uvloop {v.get('uvloop')}, Django {v.get('Django')}, "
        f"redis-server {v.get('redis-server')}.",
        "",
        f"Command: `{meta['command']}`. {r.get('n', 0):,} subscribers on one topic, "
        f"{r.get('workers')} uvicorn workers sharing Redis (database {r.get('redis_db')}), "
        f"{r.get('loadgens')} load-generator processes; whole run {r.get('seconds', 0):.0f} s.",
        "",
    ]
    if r.get("error"):
        lines += [f"**The run failed**: {r['error']}", ""]
    lines += ["| measure | value |", "|---|---:|"]
    acc = r.get("accept")
    if acc:
        lines.append(
            f"| accept: all {acc['connected']:,} connected and subscribed | "
            f"{acc['seconds']:.1f} s ({acc['connected'] / acc['seconds']:,.0f}/s) |"
        )
        if acc["errors"]:
            lines.append(f"| accept: failed attempts (retried) | {_counts(acc['errors'])} |")
    if "rss_idle" in r:
        before, idle = r["rss_before"]["total_bytes"], r["rss_idle"]["total_bytes"]
        lines += [
            f"| server RSS before the clients (master + workers) | {before / MIB:,.0f} MiB |",
            f"| server RSS with them idle | {idle / MIB:,.0f} MiB |",
            f"| RSS per connection (growth / N) | {r['rss_per_connection_bytes'] / 1024:.1f} KiB |",
            f"| RSS per connection (total / N) | "
            f"{r['rss_idle_per_connection_bytes'] / 1024:.1f} KiB |",
            "| sockets per worker | "
            + " / ".join(f"{x:,}" for x in r["sockets_by_worker"].values())
            + " |",
        ]
    for i, b in enumerate(r.get("broadcasts", []), start=1):
        lines.append(
            f"| broadcast {i}: reaches all {b['delivered']:,} | {_ms(b['reach_all_ms'])} ms "
            f"(p50 {_ms(b.get('p50_ms'))}, p99 {_ms(b.get('p99_ms'))} ms per client) |"
        )
    s = r.get("storm")
    if s:
        res = s["resumed"]
        lines += [
            f"| storm: workers back after SIGKILL | {s['workers_back_s']:.1f} s |",
            f"| storm: all {s['back']:,} resumed (last `subscribe` answered) | "
            f"{s['all_back_s']:.1f} s (per client p50 {res.get('p50_ms', 0) / 1e3:.1f} s, "
            f"p99 {res.get('p99_ms', 0) / 1e3:.1f} s) |",
            f"| storm: all {s['back']:,} hold every message exactly once | "
            f"{s['all_done_s']:.1f} s (to 50 ms) |",
            f"| storm: `recovered: true` / false | {s['recovered_true']:,} / "
            f"{s['recovered_false']:,} |",
            f"| storm: messages (published while down) | {s['messages']} "
            f"({s['published_while_down']}) |",
            f"| storm: duplicates / gaps / epoch changes | {s['duplicates']} / {s['gaps']} / "
            f"{s['epoch_changes']} |",
            f"| storm: workers killed | {s.get('killed_workers', '-')} |",
            f"| storm: workers started again during it (uvicorn's master) | "
            f"{s.get('extra_worker_starts', '-')} |",
            f"| storm: failed reconnect attempts (retried) | {s['failed_attempts']:,}"
            + (f": {_counts(s['errors'])}" if s["errors"] else "")
            + " |",
        ]
    for key, label in (("probe_before_storm", "before"), ("probe_during_storm", "during")):
        p = r.get(key)
        if p:
            lines.append(
                f"| lone broadcasts at clients never cut, {label} the storm | "
                f"p50 {_ms(p.get('p50_ms'))}, p99 {_ms(p.get('p99_ms'))} ms "
                f"({p['samples']:,} deliveries) |"
            )
    return "\n".join(lines) + "\n"


def _counts(errors: dict[str, int]) -> str:
    return ", ".join(f"{k} x{n:,}" for k, n in sorted(errors.items(), key=lambda kv: -kv[1]))


def write(doc: dict[str, Any], out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / f"{stem}.json", out / f"{stem}.md"
    js.write_text(json.dumps(doc, indent=1) + "\n")
    md.write_text(markdown(doc))
    return [js, md]


def update_doc(doc_path: Path, doc: dict[str, Any]) -> bool:
    """The section of ``doc_path`` between the scale markers, from this run."""
    return replace_between(doc_path, BEGIN, END, markdown(doc))
