"""Lower bounds on the NAS networks and on graphs with proven optima: the cut bound alone
versus the window bound (spill sets with one order per window, cuts added to the cut
bound's program); writes benchmarks/results/spillsets.md and spillsets.json.

    python benchmarks/spillsets.py                  # every case of results/dnc.json
    python benchmarks/spillsets.py --graphs pnasnet5 --work 1500000

Budgets and the plans to compare with come from benchmarks/results/dnc.json (dnc's
replayed plans, and whether they were proven optimal; whole-graph MILP optima for the
``exact`` group). A valid bound is never above a replayed plan's traffic: the script
checks that on every case and marks a violation. Windows are taken from the graph's file
order (no plan), so the bound depends only on the graph, the budget and ``--work``
(search nodes): the same under any load; seconds are wall clock on a shared 2-core
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cosma
from cosma.graphs import nas, zoo
from cosma.problem import Problem
from cosma.solvers.dnc import cut_bound
from cosma.solvers.spillsets import window_bound

HERE = Path(__file__).resolve().parent


def load(name: str):
    if name.startswith("randwire_ws_k6_s"):
        _, _, _, s, n = name.split("_")
        seed, nodes = int(s[1:]), int(n[1:])
        kw = {"c": 32} if nodes == 16 else {}
        return nas.randwire_ws(seed=seed, nodes=nodes, k=6, **kw)
    return zoo.load(name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", nargs="*", help="only these graphs")
    ap.add_argument("--work", type=int, default=1_500_000, help="search nodes per case")
    ap.add_argument("--max-ops", type=int, default=120, help="operators per window")
    ap.add_argument("--time-limit", type=float, default=120.0, help="guard per case (s)")
    ap.add_argument("--out", default=str(HERE / "results" / "spillsets"))
    args = ap.parse_args()
    known = json.loads((HERE / "results" / "dnc.json").read_text())
    rows = []
    t_all = time.perf_counter()
    for r in known:
        if args.graphs and r["graph"] not in args.graphs:
            continue
        if not r["non_compulsory"]:
            continue  # nothing to bound
        g = load(r["graph"])
        problem = Problem(g, r["budget"])
        t0 = time.perf_counter()
        cut, _ = cut_bound(problem, time_limit=30)
        t1 = time.perf_counter()
        win, st = window_bound(
            problem,
            list(g.file_order),
            max_ops=args.max_ops,
            work=args.work,
            time_limit=args.time_limit,
        )
        t2 = time.perf_counter()
        plan = r["non_compulsory"]
        if r.get("group") == "exact" and r.get("exact_status") == "optimal":
            plan = min(plan, r["exact"])
        row = {
            "graph": r["graph"],
            "budget_name": r["budget_name"],
            "budget": r["budget"],
            "plan": plan,
            "plan_proven": r["status"] == "optimal" or r.get("exact_status") == "optimal",
            "previous_bound": r["lower_bound"],
            "cut": cut,
            "window": win,
            "cut_seconds": round(t1 - t0, 2),
            "window_seconds": round(t2 - t1, 2),
            "windows": st["window_windows"],
            "work": st["window_work"],
            "stopped": st["window_stopped"],
            "valid": win <= plan,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    total = time.perf_counter() - t_all
    Path(args.out + ".json").write_text(json.dumps(rows, indent=1) + "\n")
    Path(args.out + ".md").write_text(report(rows, total, args))
    return 0 if all(r["valid"] for r in rows) else 1


def pct(plan: int, bound: int) -> str:
    return f"{100 * (plan - bound) / plan:.1f} %" if plan else "0.0 %"


def report(rows, total, args) -> str:
    lines = [
        "# Lower bounds: cut bound vs spill sets with one order per window",
        "",
        "Non-compulsory traffic in bytes; 1 byte per element; activations setting. `plan`:",
        "the best replayed plan known (benchmarks/results/dnc.json: dnc's, or the whole-graph",
        "MILP's proven optimum), `proven` if it is optimal. `cut`: the cut bound alone.",
        "`window`: `window_bound` (windows of the file order, each solved as a spill-set",
        "relaxation with one order, its cuts added to the cut bound's program). `gap`:",
        "(plan - bound) / plan. `work`: search nodes used (deterministic budget",
        f"{args.work:,}; `stopped`: budget or guard reached). `valid`: bound <= plan.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs), "
        f"Python {sys.version.split()[0]}, cosma {cosma.__version__}; windows of at most "
        f"{args.max_ops} operators. Total {total:.0f} s.",
        "",
        "| graph | budget | plan | proven | previous bound | cut | gap | window | gap | "
        "cut s | window s | windows | work | stopped | valid |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['graph']} | {r['budget_name']} ({r['budget']:,}) | {r['plan']:,} | "
            f"{'yes' if r['plan_proven'] else ''} | {r['previous_bound']:,} | {r['cut']:,} | "
            f"{pct(r['plan'], r['cut'])} | {r['window']:,} | {pct(r['plan'], r['window'])} | "
            f"{r['cut_seconds']} | {r['window_seconds']} | {r['windows']} | {r['work']:,} | "
            f"{'yes' if r['stopped'] else ''} | {'yes' if r['valid'] else '**NO**'} |"
        )
    met = sum(1 for r in rows if r["plan"] and (r["plan"] - r["window"]) / r["plan"] <= 0.10)
    closed = sum(1 for r in rows if r["window"] == r["plan"])
    lines += [
        "",
        f"- cases: {len(rows)}; gap <= 10 % with the window bound: {met} (cut bound alone: "
        f"{sum(1 for r in rows if (r['plan'] - r['cut']) / r['plan'] <= 0.10)}); "
        f"bound = plan (plan proven optimal): {closed}",
        f"- every bound <= the replayed plan: {'yes' if all(r['valid'] for r in rows) else 'NO'}",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
