"""Recompute versus reload (issue 13, deliverable 3): the frontier of traffic against
recomputed MACs as the rate varies. Writes benchmarks/results/recompute.md, .json and .png.

    python benchmarks/recompute.py                        # the committed table (about 30 min)
    python benchmarks/recompute.py --graphs zoo:transformer@M_R --rates 0.0064 --time-limit 20

For each graph (``MODEL@BUDGET``: a zoo name or file, and a budget name or bytes), each exact
engine in fixed-order mode (the minimum-peak order; on the small graphs also in joint mode
at a few rates) and each rate (bytes per MAC; ``off`` is
recompute disabled, today's model): the replayed non-compulsory traffic, the recomputed
MACs, the combined objective, the engine's bound on it and the status. Every plan is
replayed by the simulator (in the engines, and again here). Times are wall-clock on a shared
2-core machine (other jobs were running): read them as rough.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

import cosma
from cosma import api
from cosma.graphs import load_graph
from cosma.graphs.attention import transformer
from cosma.graphs.nodelink import random_layered
from cosma.problem import Problem
from cosma.simulator import replay
from cosma.solvers.cpsat import cpsat
from cosma.solvers.milp import milp

HERE = Path(__file__).resolve().parent
#: 0.0064 B/MAC: 25.6 GB/s of LPDDR4 against 4 TMAC/s; the others bracket it.
RATES = ["off", "0", "0.0001", "0.001", "0.0064", "0.1", "1", "10"]
GRAPHS = [
    "layered-30@M_H",
    "transformer-1layer@M_H",
    "zoo:transformer@M_R",
    "zoo:densenet121@M_R",
]
#: Small graphs built here (not zoo names), where both engines finish: a random layered
#: graph as MOCCASIN describes them (30 operators, cosma's generator, seed 0: sizes and
#: costs in its own units), and the base Transformer with one encoder and one decoder layer
#: (40 operators).
SMALL = {
    "layered-30": lambda: random_layered(30, seed=0),
    "transformer-1layer": lambda: transformer(layers=1),
}


def run(
    spec: str, engine: str, rate: str, *, time_limit: float, threads: int, mode: str = "fixed"
) -> dict:
    model, budget_name = spec.rsplit("@", 1)
    g = SMALL[model]() if model in SMALL else load_graph(model, element_bytes=1)
    b = api.budgets(g)
    names = {"M_R": b.m_r, "M_H": b.m_h, "M_P": b.m_p}
    budget = names[budget_name] if budget_name in names else int(budget_name)
    problem = Problem(g, budget)
    kw = {"order": "minpeak" if mode == "fixed" else None, "time_limit": time_limit}
    kw["threads"] = threads
    if rate != "off":
        kw["recompute_rate"] = rate
    t = time.perf_counter()
    plan = milp(problem, solver="cbc", **kw) if engine == "milp" else cpsat(problem, **kw)
    seconds = time.perf_counter() - t
    row = {
        "graph": model if model in SMALL else g.name,
        "operators": g.num_operators,
        "budget": f"{budget_name} = {budget:,}",
        "engine": engine if mode == "fixed" else f"{engine} (joint)",
        "rate": rate,
        "status": plan.status.value,
        "objective": plan.objective,
        "lower_bound": plan.lower_bound,
        "gap": plan.gap,
        "traffic": None,
        "recompute_macs": None,
        "seconds": round(seconds, 1),
    }
    if plan.status.has_plan:
        r = replay(g, plan)
        assert r.valid, (spec, engine, rate)
        want = r.non_compulsory + (0 if rate == "off" else Fraction(rate) * r.recompute)
        assert plan.objective == (int(want) if want == int(want) else float(want))
        row["traffic"], row["recompute_macs"] = r.non_compulsory, r.recompute
    print(
        f"{row['graph']} {engine} rate={rate}: {row['status']} traffic={row['traffic']} "
        f"macs={row['recompute_macs']} obj={row['objective']} bound={row['lower_bound']} "
        f"{seconds:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    return row


def fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.1f}"
    return f"{int(x):,}"


def table(rows: list[dict]) -> list[str]:
    out = [
        "| graph | ops | budget | engine | rate (B/MAC) | status | traffic (B) | recomputed "
        "MACs | objective | bound | gap | time (s) |",
        "|---|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        gap = "-" if r["gap"] is None else f"{100 * r['gap']:.1f} %"
        out.append(
            f"| {r['graph']} | {r['operators']} | {r['budget']} | {r['engine']} | {r['rate']} | "
            f"{r['status']} | {fmt(r['traffic'])} | {fmt(r['recompute_macs'])} | "
            f"{fmt(r['objective'])} | {fmt(r['lower_bound'])} | {gap} | {r['seconds']} |"
        )
    return out


def picture(rows: list[dict], path: Path) -> None:
    """One panel per graph: traffic and recomputed MACs against the rate (log scale; rate 0
    drawn at the left edge), per engine."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    graphs = list(dict.fromkeys(r["graph"] for r in rows))
    fig, axes = plt.subplots(1, len(graphs), figsize=(4.2 * len(graphs), 3.8), squeeze=False)
    for ax, name in zip(axes[0], graphs, strict=True):
        mine = [r for r in rows if r["graph"] == name and r["traffic"] is not None]
        rates = sorted({float(r["rate"]) for r in mine if r["rate"] != "off"} - {0.0})
        zero = rates[0] / 10 if rates else 1e-5
        twin = ax.twinx()
        for engine, style in (("milp", "-"), ("cpsat", "--")):
            pts = sorted(
                (float(r["rate"]) or zero, r["traffic"], r["recompute_macs"])
                for r in mine
                if r["engine"] == engine and r["rate"] != "off"
            )
            if not pts:
                continue
            xs, traffic, macs = zip(*pts, strict=True)
            ax.plot(xs, traffic, "o" + style, color="tab:blue", label=f"traffic ({engine})")
            twin.plot(xs, macs, "s" + style, color="tab:red", label=f"MACs ({engine})")
        ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("rate (bytes per MAC; leftmost point: 0)", fontsize=8)
        ax.set_ylabel("non-compulsory traffic (B)", color="tab:blue", fontsize=8)
        twin.set_ylabel("recomputed MACs", color="tab:red", fontsize=8)
        ax.set_ylim(bottom=0)
        twin.set_ylim(bottom=0)
        ax.tick_params(labelsize=7)
        twin.tick_params(labelsize=7)
    fig.suptitle("Recompute versus reload: traffic and recomputation as the rate varies")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", nargs="*", default=GRAPHS)
    ap.add_argument("--engines", nargs="*", default=["milp", "cpsat"])
    ap.add_argument(
        "--large-engines",
        nargs="*",
        default=["milp"],
        help="engines for graphs of more than 100 operators (CP-SAT rarely helps there)",
    )
    ap.add_argument("--rates", nargs="*", default=RATES)
    ap.add_argument("--time-limit", type=float, default=30.0, help="small graphs")
    ap.add_argument("--large-time-limit", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results" / "recompute"))
    ap.add_argument("--replot", action="store_true", help="redraw OUT.png from OUT.json")
    ap.add_argument(
        "--joint-rates",
        nargs="*",
        default=["off", "0.001", "0.1", "1"],
        help="rates also run in joint mode (schedule free) on the small graphs",
    )
    args = ap.parse_args(argv)
    if args.replot:
        picture(json.loads(Path(args.out + ".json").read_text()), Path(args.out + ".png"))
        return
    t0 = time.perf_counter()
    load_start = os.getloadavg()[0]
    rows = []
    for spec in args.graphs:
        large = not spec.startswith(tuple(SMALL))
        for engine in args.large_engines if large else args.engines:
            for rate in args.rates:
                limit = args.large_time_limit if large else args.time_limit
                rows.append(run(spec, engine, rate, time_limit=limit, threads=args.threads))
            for rate in [] if large else args.joint_rates:
                rows.append(
                    run(
                        spec,
                        engine,
                        rate,
                        time_limit=args.time_limit,
                        threads=args.threads,
                        mode="joint",
                    )
                )
    total = time.perf_counter() - t0
    load_end = os.getloadavg()[0]
    head = [
        "# Recompute versus reload: the frontier",
        "",
        "Objective: non-compulsory traffic + rate x recomputed MACs (docs/recompute.md). "
        "Fixed order (minimum peak) unless the engine says joint (schedule free), 1 byte per "
        "element, activations setting. `off` is "
        "recompute disabled (today's model). Each run has its own time limit "
        f"({args.time_limit:g} s on the small graphs, {args.large_time_limit:g} s on the zoo "
        "ones), shared by its phases (no-recompute start, restricted model, relaxed "
        "model). Traffic and MACs are the simulator's replay; the bound is the "
        "relaxation's, valid for every plan with recomputation. On layered-30 sizes are "
        "bytes and costs MACs of the generator's units.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs, "
        f"1-minute load average {load_start:.1f} at the start, {load_end:.1f} at the end), "
        f"Python {platform.python_version()}, cosma {cosma.__version__}; "
        f"{args.threads} solver thread(s). Total {total:.0f} s.",
        "",
    ]
    Path(args.out + ".md").write_text("\n".join([*head, *table(rows), ""]))
    Path(args.out + ".json").write_text(json.dumps(rows, indent=1))
    picture(rows, Path(args.out + ".png"))
    print(f"wrote {args.out}.md ({len(rows)} rows, {total:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
