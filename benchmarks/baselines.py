"""Every baseline on every graph at M_R, M_H and M_P; writes benchmarks/results/baselines.md
and baselines.json.

    python benchmarks/baselines.py                 # light models + zoo, activations
    python benchmarks/baselines.py --setting activations+parameters --graphs zoo:resnet50

Each plan is replayed by the simulator (cosma.solvers does so before returning; the traffic
in the table is the replay's). Cases run through the shared runner (cosma.app.bench.run_cases);
rows are appended to results/baselines.jsonl as they finish. Times are wall-clock on a
shared machine: read ratios and
medians, not single values.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time
from pathlib import Path

import onnx

from cosma.app import bench
from cosma.graphs import zoo
from cosma.solvers import METHODS

HERE = Path(__file__).resolve().parent
LIGHT = sorted(
    glob.glob(
        os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light", "*.onnx")
    )
)


def default_graphs() -> list[str]:
    return LIGHT + [f"zoo:{n}" for n in zoo.names()]


def cases(graphs: list[str], setting: str, methods: list[str], time_limit: float):
    return [
        bench.Case(source, bname, m, time_limit=time_limit, setting=setting, element_bytes=1)
        for source in graphs
        for bname in ("M_R", "M_H", "M_P")
        for m in methods
    ]


def table(rows: list[dict], methods: list[str]) -> str:
    out = [
        "| graph | ops | budget | bytes | " + " | ".join(methods) + " |",
        "|---|---:|---|---:|" + "---:|" * len(methods),
    ]
    keyed: dict[tuple, dict] = {}
    for r in rows:
        keyed.setdefault((r["graph"], r["budget_name"]), {})[r["method"]] = r
    for (graph, bname), by in keyed.items():
        first = next(iter(by.values()))
        out.append(
            f"| {graph} | {first['operators']} | {bname} | {first['budget']:,} | "
            + " | ".join(f"{by[m]['non_compulsory']:,}" for m in methods)
            + " |"
        )
    return "\n".join(out)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", nargs="*", default=None)
    ap.add_argument("--setting", default="activations")
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--out", default=str(HERE / "results" / "baselines"))
    ap.add_argument("--executor", default="process", choices=bench.EXECUTORS)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--scheduler", default=None, help="Dask scheduler address")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    stream = Path(args.out + ".jsonl")
    stream.unlink(missing_ok=True)
    rows = bench.run_cases(
        cases(args.graphs or default_graphs(), args.setting, args.methods, args.time_limit),
        executor=args.executor,
        workers=args.workers,
        scheduler=args.scheduler,
        out=stream,
        progress_bar=True,
    )
    total = time.perf_counter() - t0
    times = {m: [r["seconds"] for r in rows if r["method"] == m] for m in args.methods}
    summary = "\n".join(
        f"| {m} | {statistics.median(ts):.3f} | {max(ts):.3f} |" for m, ts in times.items()
    )
    md = f"""# Baselines: non-compulsory traffic (bytes) at M_R, M_H, M_P

Setting: {args.setting}; 1 byte per element. Every plan replayed by the simulator.
Machine: {bench.machine()}. Total wall time {total:.0f} s.
`baseline` is the best of the protocol's four combinations.

{table(rows, args.methods)}

## Solve time per method (seconds; shared machine: medians and worst)

| method | median | worst |
|---|---:|---:|
{summary}
"""
    Path(args.out + ".md").write_text(md)
    Path(args.out + ".json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}.md and .json ({len(rows)} rows, {total:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
