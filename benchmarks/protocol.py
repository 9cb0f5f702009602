"""The reference evaluation's protocol: one entry point, the same as ``cosma bench``.

    python benchmarks/protocol.py --force                       # the full protocol
    python benchmarks/protocol.py --graphs zoo:densenet121 --budgets M_R --out /tmp/x
    python benchmarks/protocol.py --check --time-limit 60       # rerun, compare to committed

Results: benchmarks/results/protocol.json (rows) and protocol.md (report with the machine
and versions). ``--check`` reruns the cases recorded in the JSON and reports every row
whose numbers differ (timings aside; a time-limited run may legitimately differ).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cosma.app import bench
from cosma.app.cli import main

RESULTS = Path(__file__).resolve().parent / "results" / "protocol.json"


def check(time_limit: float) -> int:
    old = json.loads(RESULTS.read_text())
    new = []
    # Per graph and budget, the methods it was run with (the NAS rows use fewer methods, and
    # dnc only at some budgets).
    for graph in dict.fromkeys(r["graph"] for r in old):
        mine = [r for r in old if r["graph"] == graph]
        for budget in dict.fromkeys(r["budget_name"] for r in mine):
            methods = list(dict.fromkeys(r["method"] for r in mine if r["budget_name"] == budget))
            new += bench.run(
                [f"zoo:{graph}"], budgets=[budget], methods=methods, time_limit=time_limit
            )

    def key(r: dict) -> tuple:
        return (r["graph"], r["budget_name"], r["method"])

    keys = set().union(*(r.keys() for r in old)) if old else set()
    a = bench.comparable(sorted(old, key=key), keys)
    b = bench.comparable(sorted(new, key=key), keys)
    diff = [(x, y) for x, y in zip(a, b, strict=False) if x != y]
    for x, y in diff:
        print(f"differs: {x['graph']} {x['budget_name']} {x['method']}: {x} -> {y}")
    print(f"{len(a) - len(diff)} of {len(a)} rows match")
    return 1 if diff or len(a) != len(b) else 0


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        args = sys.argv[1:]
        # Use the committed run's per-case limit (see protocol.md), 60 s unless given.
        limit = float(args[args.index("--time-limit") + 1]) if "--time-limit" in args else 60.0
        sys.exit(check(limit))
    main(["bench", "--out", str(RESULTS.with_suffix("")), *sys.argv[1:]])
