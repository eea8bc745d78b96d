"""``python -m bench``: run the benchmark matrix and write the results (``make bench``).

    python -m bench                    # the full run: all targets, N=100/1k/5k, 3 runs
    python -m bench --quick            # N=100/1k, 1 run, shorter phases (~2 min)
    python -m bench --targets tidings,raw --sizes 100 --runs 1
    python -m bench --profile --sizes 1000     # tidings' hot path under cProfile

The full run writes ``bench/results/results.{json,md,png}`` and the tables of
docs/performance.md (between its ``bench:begin``/``bench:end`` markers); any other matrix writes
``partial.*`` there (ignored by git) unless ``--stem`` says otherwise, so a quick run
never overwrites the published numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import report, runner
from bench.loadgen import Plan
from bench.targets import DEFAULT_TARGETS, TARGETS

RESULTS = Path(__file__).resolve().parent / "results"
DOC = RESULTS.parent.parent / "docs" / "performance.md"  # its tables come from the full run
PLOT_FROM_DOC = "../bench/results/results.png"
DEFAULT_SIZES = (100, 1000, 5000)
DEFAULT_RUNS = 3
QUICK = {"lone": 10, "burst_deliveries": 50_000, "topic_messages": 5_000}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--targets",
        default=",".join(DEFAULT_TARGETS),
        help=f"comma-separated, from: {', '.join(TARGETS)}",
    )
    p.add_argument("--sizes", help="comma-separated subscriber counts (default 100,1000,5000)")
    p.add_argument("--runs", type=int, help=f"runs per cell (default {DEFAULT_RUNS})")
    p.add_argument("--quick", action="store_true", help="N=100,1000, 1 run, shorter phases")
    p.add_argument("--lone", type=int, help="lone broadcasts per cell (default 20)")
    p.add_argument("--burst-deliveries", type=int, help="deliveries per burst (default 200k)")
    p.add_argument("--topic-messages", type=int, help="messages in the many-topics burst")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the results")
    p.add_argument("--stem", help="file name stem (default: results for the full run)")
    p.add_argument("--from-json", type=Path, help="only rewrite the reports of a results JSON")
    p.add_argument(
        "--profile",
        action="store_true",
        help="profile one target (default tidings) at each size instead",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise SystemExit(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else None
    sizes = sizes or ([100, 1000] if args.quick else list(DEFAULT_SIZES))
    runs = args.runs or (1 if args.quick else DEFAULT_RUNS)
    plan = Plan(**QUICK) if args.quick else Plan()
    overrides = {
        "lone": args.lone,
        "burst_deliveries": args.burst_deliveries,
        "topic_messages": args.topic_messages,
    }
    plan = dataclasses.replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    command = ("python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)).strip()
    if args.from_json is not None:
        return rewrite(args.from_json)
    log_dir = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
    runner.log(f"server logs in {log_dir}")
    if args.profile:
        target = TARGETS[targets[0] if args.targets != ",".join(DEFAULT_TARGETS) else "tidings"]
        for n in sizes:
            path = runner.profile(target, n, plan, log_dir, args.out)
            runner.log(f"wrote {path}")
        return 0

    full = (
        targets == list(DEFAULT_TARGETS)
        and sizes == list(DEFAULT_SIZES)
        and runs == DEFAULT_RUNS
        and plan == Plan()
    )
    stem = args.stem or ("results" if full else "partial")
    meta = runner.machine(command)
    results = runner.run_matrix(targets, sizes, runs, plan, log_dir)
    summary = report.summarize(results)
    doc = {
        "meta": meta,
        "config": {
            "targets": targets,
            "sizes": sizes,
            "runs": runs,
            "plan": dataclasses.asdict(plan),
        },
        "summary": summary,
        "ratios": report.ratios(summary),
        "results": results,
    }
    paths = publish(doc, args.out, stem, update_doc=full and args.out == RESULTS)
    runner.log("wrote " + ", ".join(str(p) for p in paths))
    return 0


def publish(doc: dict[str, Any], out: Path, stem: str, update_doc: bool) -> list[Path]:
    """Write JSON, markdown and PNG; with ``update_doc`` also docs/performance.md."""
    labels = {name: TARGETS[name].label for name in doc["config"]["targets"]}
    paths = report.write(doc, labels, out, stem)
    tables = report.markdown(doc, labels)
    print(tables)
    if update_doc and report.update_doc(DOC, tables, PLOT_FROM_DOC):
        paths.append(DOC)
    return paths


def rewrite(path: Path) -> int:
    """Rebuild the reports of an earlier run from its JSON (after a format change)."""
    doc = json.loads(path.read_text())
    doc["summary"] = report.summarize(doc["results"])
    doc["ratios"] = report.ratios(doc["summary"])
    stem = path.stem
    paths = publish(
        doc, path.parent, stem, update_doc=stem == "results" and path.resolve().parent == RESULTS
    )
    runner.log("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
