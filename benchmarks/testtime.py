"""How long the default test run takes: the README's `pytest`, timed a few times.

    python benchmarks/testtime.py --label after              # 3 runs; writes results/testtime.*
    python benchmarks/testtime.py --label serial -- -n 0      # extra arguments go to pytest
    python benchmarks/testtime.py --label before --from-log run.log --wall 329 --cpu 145 \\
        --load 0.63 4.53                                      # a run timed elsewhere

Each run is `python -m pytest -q --durations=0` in the repository (pyproject's addopts apply:
the default selection, `-n auto`), so it is the README's command plus the per-test times.
Recorded per run: wall time, CPU time of pytest and everything it started (user + system,
from the children's resource usage), the sum of the per-test durations pytest reports
(setup + call + teardown), the 1-minute load average before and after, and the outcome.

The machine these numbers come from may be shared: other processes inflate wall time, and a
load average above the core count means the run got only part of the machine. CPU time and
the ratio sum-of-test-times / wall (how much the workers overlap) move much less with load,
so compare those across runs taken under different loads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
_DURATION = re.compile(r"^([\d.]+)s (?:setup|call|teardown)\s+\S")
_OUTCOME = re.compile(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed|xpassed)")


def _workers(log: str, args: list[str]) -> int:
    """How many worker processes ran the tests: -n N (or --numprocesses) if given, else
    xdist's -n auto from pyproject (one per core) when the log shows xdist starting."""
    for flag in ("-n", "--numprocesses"):
        if flag in args and args.index(flag) + 1 < len(args):
            n = args[args.index(flag) + 1]
            return max(1, int(n)) if n.isdigit() else os.cpu_count() or 1
    return (os.cpu_count() or 1) if "bringing up nodes" in log else 1


def parse(log: str, args: list[str] = ()) -> dict:
    """Sum of the per-test durations and the outcome counts of a pytest log."""
    total = sum(float(m.group(1)) for line in log.splitlines() if (m := _DURATION.match(line)))
    summary = [line for line in log.splitlines() if re.search(r" in [\d.]+s", line)]
    counts = {k: int(n) for n, k in _OUTCOME.findall(summary[-1])} if summary else {}
    return {
        "sum_of_test_seconds": round(total, 1),
        "outcome": counts,
        "workers": _workers(log, list(args)),
    }


def run_once(extra: list[str], log: Path | None = None) -> dict:
    load_before = os.getloadavg()[0]
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--durations=0", "-p", "no:cacheprovider", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if log is not None:
        log.write_text(r.stdout + r.stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)
    row = {
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "exit_code": r.returncode,
        **parse(r.stdout, extra),
    }
    if r.returncode != 0:
        tail = "\n".join(r.stdout.splitlines()[-15:])
        print(f"pytest exited {r.returncode}:\n{tail}", file=sys.stderr)
    return row


def _commit() -> str:
    r = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return r.stdout.strip() or "?"


def summarize(
    label: str,
    runs: list[dict],
    extra: list[str],
    note: str = "",
    commit: str | None = None,
    when: float | None = None,
) -> dict:
    med = statistics.median
    walls = [r["wall_seconds"] for r in runs]
    sums = [r["sum_of_test_seconds"] for r in runs]
    return {
        "label": label,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when)),
        "commit": commit or _commit(),
        "pytest_args": extra,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "runs": runs,
        "median_wall_seconds": med(walls),
        "median_cpu_seconds": med(r["cpu_seconds"] for r in runs),
        "median_sum_of_test_seconds": med(sums),
        "overlap": round(med(s / w for s, w in zip(sums, walls, strict=True)), 2),
        "median_load": med((r["load_before"] + r["load_after"]) / 2 for r in runs),
        "note": note,
    }


def write_table(entries: list[dict]) -> str:
    lines = [
        "# Default test run time",
        "",
        "`python benchmarks/testtime.py` (see its docstring): the README's `pytest` (default",
        "selection), timed; median of the runs. **The machine was shared** (other sessions'",
        "solvers and test suites on the same 2 cores): the load column is the 1-minute load",
        "average around each run, and a load above 2 means the run got only part of the",
        "machine, so wall times are inflated. CPU seconds (pytest and every process it",
        "started) and the overlap (sum of per-test times / wall: how much the workers run at",
        "once) depend much less on the load; on an idle machine the wall time is about CPU",
        "seconds / workers.",
        "",
        "| label | date | commit | pytest args | workers | runs | wall s (median) | CPU s |"
        " sum of test s | overlap | load | tests |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        out = e["runs"][-1]["outcome"]
        tests = ", ".join(f"{n} {k}" for k, n in out.items() if k != "deselected")
        walls = ", ".join(str(round(r["wall_seconds"])) for r in e["runs"])
        args = " ".join(e["pytest_args"]) or "-"
        lines.append(
            f"| {e['label']} | {e['date']} | {e['commit']} | {args}"
            f" | {e['runs'][-1]['workers']} | {len(e['runs'])}"
            f" | {e['median_wall_seconds']:.0f} ({walls})"
            f" | {e['median_cpu_seconds']:.0f} | {e['median_sum_of_test_seconds']:.0f}"
            f" | {e['overlap']:.2f} | {e['median_load']:.1f} | {tests} |"
        )
    notes = [f"- {e['label']}: {e['note']}" for e in entries if e.get("note")]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", required=True, help="name of this row (e.g. before, after)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--note", default="", help="a sentence shown under the table")
    ap.add_argument("--from-log", help="record a run timed elsewhere: its pytest output")
    ap.add_argument("--wall", type=float, help="with --from-log: its wall seconds")
    ap.add_argument("--cpu", type=float, help="with --from-log: its CPU seconds")
    ap.add_argument("--load", type=float, nargs=2, help="with --from-log: load before, after")
    ap.add_argument("--commit", help="with --from-log: the commit it ran (default: HEAD)")
    ap.add_argument("--out", default=str(RESULTS / "testtime"), help="results path stem")
    ap.add_argument("--log", help="keep each run's pytest output in LOG.1, LOG.2, ...")
    ap.add_argument("pytest_args", nargs="*", help="after --: extra arguments for pytest")
    a = ap.parse_args(argv)
    if a.from_log:
        if a.wall is None or a.cpu is None or a.load is None:
            ap.error("--from-log needs --wall, --cpu and --load")
        runs = [
            {
                "wall_seconds": a.wall,
                "cpu_seconds": a.cpu,
                "load_before": a.load[0],
                "load_after": a.load[1],
                "exit_code": None,
                **parse(Path(a.from_log).read_text()),
            }
        ]
    else:
        runs = []
        for i in range(a.repeats):
            log = Path(f"{a.log}.{i + 1}") if a.log else None
            runs.append(run_once(a.pytest_args, log))
            r = runs[-1]
            print(
                f"run {i + 1}/{a.repeats}: {r['wall_seconds']} s wall, {r['cpu_seconds']} s CPU,"
                f" load {r['load_before']}->{r['load_after']}, {r['outcome']}",
                file=sys.stderr,
            )
    when = Path(a.from_log).stat().st_mtime if a.from_log else None  # when the run ended
    entry = summarize(a.label, runs, a.pytest_args, a.note, a.commit, when)
    stem = Path(a.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    path = stem.with_suffix(".json")
    entries = json.loads(path.read_text()) if path.exists() else []
    entries = [e for e in entries if e["label"] != a.label] + [entry]
    path.write_text(json.dumps(entries, indent=1) + "\n")
    stem.with_suffix(".md").write_text(write_table(entries))
    print(write_table(entries))


if __name__ == "__main__":
    main()
