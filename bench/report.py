"""Results: medians with min-max over runs, ratios to raw websockets, JSON, markdown, PNG.

Every cell of the tables is ``median (min-max)`` over the runs of one (target, N);
a run that failed part-way still contributes the phases it finished, and its error is
listed under the tables, as are phases a target does not run (``skipped``). Ratios are
tidings' median over raw ``websockets``' median at the same N, both measured in the
same run of the harness (targets are interleaved, so both saw the same noise); a few
rows compare another tidings target the same way (:data:`TARGET_RATIOS`).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

Fmt = Callable[[float], str]


def _int(v: float) -> str:
    return f"{v:,.0f}"


def _ms(v: float) -> str:
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _one(v: float) -> str:
    return f"{v:,.1f}"


# (result key, column heading, format)
FANOUT: list[tuple[str, str, Fmt]] = [
    ("burst_deliveries_per_s", "deliveries/s (burst)", _int),
    ("burst_server_us_per_delivery", "server µs/delivery", _one),
    ("burst_server_cpu_pct", "server CPU %", _int),
    ("burst_client_cpu_pct", "client CPU %", _int),
    ("burst_other_cpu_pct", "other CPU %", _int),
    ("lone_p50_ms", "p50 ms (lone)", _ms),
    ("lone_p99_ms", "p99 ms (lone)", _ms),
    ("lone_reach_ms", "reaches all ms", _ms),
]
# the server-side publish patterns (bench.wire.PATTERNS)
PATTERN_ROWS: list[tuple[str, str, Fmt]] = [
    ("loop_deliveries_per_s", "deliveries/s (loop)", _int),
    ("loop_server_us_per_delivery", "server µs/delivery (loop)", _one),
    ("threads_deliveries_per_s", "deliveries/s (16 threads)", _int),
    ("threads_server_us_per_delivery", "server µs/delivery (16 threads)", _one),
]
TOPICS: list[tuple[str, str, Fmt]] = [
    ("topics_deliveries_per_s", "deliveries/s (burst)", _int),
    ("topics_server_us_per_delivery", "server µs/delivery", _one),
    ("topics_client_cpu_pct", "client CPU %", _int),
    ("topics_p50_ms", "p50 ms (lone)", _ms),
    ("publishers_deliveries_per_s", "deliveries/s (16 publishers)", _int),
    ("publishers_server_us_per_delivery", "server µs/delivery (16 publishers)", _one),
]
CONNECTIONS: list[tuple[str, str, Fmt]] = [
    ("accept_per_s", "accepts+subscribes/s", _int),
    ("accept_server_us", "server µs/accept", _int),
    ("accept_server_cpu_pct", "server CPU %", _int),
    ("accept_client_cpu_pct", "client CPU %", _int),
    ("idle_mib_per_1k", "RSS MiB / 1k idle", _one),
    ("rss_base_mib", "RSS before, MiB", _one),
]
# a skipped phase's name in the report
PHASES = {
    "topics": "many topics",
    "loop": "server loop",
    "threads": "16 threads",
    "publishers": "16 publishers",
}
# (result key, label, higher is better)
RATIOS: list[tuple[str, str, bool]] = [
    ("burst_deliveries_per_s", "fan-out deliveries/s", True),
    ("burst_server_us_per_delivery", "fan-out server µs/delivery", False),
    ("loop_deliveries_per_s", "fan-out deliveries/s, server apublish() loop", True),
    ("threads_deliveries_per_s", "fan-out deliveries/s, publish() from 16 threads", True),
    ("lone_p50_ms", "lone p50 latency", False),
    ("lone_p99_ms", "lone p99 latency", False),
    ("lone_reach_ms", "one broadcast reaches all", False),
    ("topics_deliveries_per_s", "many-topics deliveries/s", True),
    ("publishers_deliveries_per_s", "many-topics deliveries/s, 16 concurrent publishers", True),
    ("accept_per_s", "accepts/s", True),
    ("idle_mib_per_1k", "RSS per 1k idle connections", False),
]
# Rows for other targets over raw: (target, result key, label, higher is better); their
# key in ``ratios()`` is "<target>:<result key>".
TARGET_RATIOS: list[tuple[str, str, str, bool]] = [
    ("tidings-sse", "burst_deliveries_per_s", "fan-out deliveries/s, tidings-sse", True),
]


def _ratio_rows() -> list[tuple[str, str, str, bool]]:
    """(ratio key, result key, label, higher) for ``tidings``, then the other targets."""
    rows = [(key, key, label, higher) for key, label, higher in RATIOS]
    rows += [(f"{t}:{key}", key, label, higher) for t, key, label, higher in TARGET_RATIOS]
    return rows


def _ratio_target(ratio_key: str) -> str:
    return ratio_key.split(":", 1)[0] if ":" in ratio_key else "tidings"


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (target, N): every numeric key -> median, min, max, runs."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["target"], r["n"]), []).append(r)
    summary = []
    for (target, n), runs in groups.items():
        keys = {k for r in runs for k, v in r.items() if _number(v) and k not in ("n", "run")}
        stats = {}
        for key in sorted(keys):
            values = [float(r[key]) for r in runs if _number(r.get(key))]
            stats[key] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "runs": len(values),
            }
        errors = [f"run {r.get('run', '?')}: {r['error']}" for r in runs if r.get("error")]
        skipped = sorted(
            {
                f"{PHASES.get(p, p)} not run: {why}"
                for r in runs
                for p, why in r.get("skipped", {}).items()
            }
        )
        summary.append(
            {"target": target, "n": n, "stats": stats, "errors": errors, "skipped": skipped}
        )
    return summary


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def ratios(summary: list[dict[str, Any]], over: str = "raw") -> dict[str, dict[str, float]]:
    """tidings (and :data:`TARGET_RATIOS`' targets) / ``over`` per N and metric, from medians."""
    by = {(s["target"], s["n"]): s["stats"] for s in summary}
    out: dict[str, dict[str, float]] = {}
    for n in sorted({n for _t, n in by}):
        ref = by.get((over, n))
        if ref is None:
            continue
        cells = {}
        for ratio_key, key, _label, _higher in _ratio_rows():
            stats = by.get((_ratio_target(ratio_key), n))
            if stats is not None and key in stats and key in ref and ref[key]["median"]:
                cells[ratio_key] = stats[key]["median"] / ref[key]["median"]
        if cells:
            out[str(n)] = cells
    return out


def _cell(stats: dict[str, Any], key: str, fmt: Fmt) -> str:
    s = stats.get(key)
    if s is None:
        return "-"
    if s["runs"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"


def _table(
    summary: list[dict[str, Any]], columns: list[tuple[str, str, Fmt]], labels: dict[str, str]
) -> list[str]:
    head = "| server | N | " + " | ".join(c[1] for c in columns) + " |"
    lines = [head, "|---|---:|" + "---:|" * len(columns)]
    for s in sorted(summary, key=lambda s: (s["n"], list(labels).index(s["target"]))):
        cells = " | ".join(_cell(s["stats"], key, fmt) for key, _h, fmt in columns)
        lines.append(f"| {labels[s['target']]} | {s['n']:,} | {cells} |")
    return lines


def markdown(doc: dict[str, Any], labels: dict[str, str]) -> str:
    """The tables of one harness run."""
    summary = doc["summary"]
    meta = doc["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    load = ", ".join(f"{x:.2f}" for x in meta["loadavg_at_start"])
    lines = [
        f"Run {meta['date']} on {meta['cpus']} x {meta['cpu_model']}, "
        f"{meta.get('memory_gib', '?')} GiB, Linux {meta['kernel']}, load average at start {load}; "
        f"{doc['config']['runs']} run(s) per cell, cells are median (min-max). "
        f"Code: {meta.get('git', 'unknown')}.",
        "",
        f"Python {meta['python']}, {versions}.",
        "",
        f"Command: `{meta['command'].strip()}` (what `make bench` runs).",
        "",
        "### Fan-out: one topic, N subscribers",
        "",
        *_table(summary, FANOUT, labels),
        "",
        "### Fan-out published by the server: an `apublish()` loop, `publish()` from 16 threads",
        "",
        *_table(summary, PATTERN_ROWS, labels),
        "",
        "### Many topics: N subscribers, each on its own topic",
        "",
        *_table(summary, TOPICS, labels),
        "",
        "### Connections: accept rate and idle memory",
        "",
        *_table(summary, CONNECTIONS, labels),
        "",
    ]
    rat = doc["ratios"]
    if rat:
        sizes = list(rat)
        lines += [
            "### tidings / raw websockets (same run, ratio of medians)",
            "",
            "| metric | better when | " + " | ".join(f"N={int(n):,}" for n in sizes) + " |",
            "|---|---|" + "---:|" * len(sizes),
        ]
        for key, _k, label, higher in _ratio_rows():
            if not any(key in rat[n] for n in sizes):
                continue
            cells = " | ".join(f"{rat[n][key]:.2f}x" if key in rat[n] else "-" for n in sizes)
            lines.append(f"| {label} | {'higher' if higher else 'lower'} | {cells} |")
        lines.append("")
    errors = [f"- {labels[s['target']]}, N={s['n']:,}: {e}" for s in summary for e in s["errors"]]
    errors += [
        f"- {labels[s['target']]}, N={s['n']:,}: {e}" for s in summary for e in s.get("skipped", [])
    ]
    if errors:
        lines += ["### Errors and skipped cells", "", *errors, ""]
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], labels: dict[str, str], path: Path) -> None:
    """Deliveries/s and lone p99 vs N, one line per server, min-max as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    panels = (
        ("burst_deliveries_per_s", "fan-out deliveries/s (higher is better)"),
        ("lone_p99_ms", "lone broadcast p99 latency, ms (lower is better)"),
    )
    for ax, (key, title) in zip(axes, panels, strict=True):
        for target, label in labels.items():
            points = sorted(
                (s["n"], s["stats"][key])
                for s in summary
                if s["target"] == target and key in s["stats"]
            )
            if not points:
                continue
            ns = [n for n, _ in points]
            med = [st["median"] for _, st in points]
            err = [
                [st["median"] - st["min"] for _, st in points],
                [st["max"] - st["median"] for _, st in points],
            ]
            ax.errorbar(ns, med, yerr=err, marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("subscribers N")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(doc: dict[str, Any], labels: dict[str, str], out: Path, stem: str) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.md", out / f"{stem}.png"]
    paths[0].write_text(json.dumps(doc, indent=1) + "\n")
    paths[1].write_text(markdown(doc, labels))
    plot(doc["summary"], labels, paths[2])
    return paths


BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def update_doc(doc_path: Path, tables: str, png: str) -> bool:
    """Put ``tables`` and the plot between the markers of ``doc_path``, if it has them.

    So the published page always shows the last full run, untouched by hand.
    """
    return replace_between(doc_path, BEGIN, END, f"{tables}\n![deliveries/s and p99 vs N]({png})\n")


def replace_between(doc_path: Path, begin: str, end: str, body: str) -> bool:
    """Replace what lies between the markers ``begin`` and ``end`` of ``doc_path`` with
    ``body``; ``False`` (nothing written) when the file or a marker is missing."""
    if not doc_path.exists():
        return False
    text = doc_path.read_text()
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        return False
    doc_path.write_text(text[:start] + f"{begin}\n{body}\n{end}" + text[stop + len(end) :])
    return True
