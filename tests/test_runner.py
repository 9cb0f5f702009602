"""The one runner behind cosma bench, cosma sweep, cosma.sweep and benchmarks/: executors,
rows streamed to disk, an interrupt that loses no finished case, Dask."""

from __future__ import annotations

import json

import pytest
from cases import skip

from cosma import UsageError
from cosma.app.bench import Case, comparable, read_rows, run_cases


def _cases():
    g = skip()
    # M_R 16 .. M_P 20 (helpers.skip): 20 bytes of spill below 20, none at 20.
    return [Case(g, b, m, time_limit=10) for b in (16, 20) for m in ("baseline", "milp:cbc")]


def test_serial_and_process_agree_and_stream(tmp_path):
    out = tmp_path / "rows.jsonl"
    serial = run_cases(_cases(), executor="serial", out=out)
    assert [r["non_compulsory"] for r in serial] == [20, 20, 0, 0]
    assert [r["method"] for r in serial] == ["baseline", "milp:cbc"] * 2
    assert read_rows(out) == serial  # one line per finished case
    procs = run_cases(_cases(), executor="process", workers=1)
    assert comparable(procs) == comparable(serial)


def test_an_interrupt_keeps_every_finished_case(tmp_path):
    out = tmp_path / "rows.jsonl"
    seen = []

    def stop_after_two(row):
        seen.append(row)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_cases(_cases(), executor="serial", out=out, on_row=stop_after_two)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == seen and len(rows) == 2


def test_dask_local_cluster_gives_the_same_rows(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    serial = run_cases(_cases(), executor="serial")
    # One worker thread in this process: spares the 2 cores of the CI machine.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        out = tmp_path / "dask.jsonl"
        rows = run_cases(_cases(), executor="dask", scheduler=cluster, out=out)
        assert comparable(rows) == comparable(serial)
        assert comparable(read_rows(out)) == comparable(rows) or sorted(
            json.dumps(r, sort_keys=True) for r in comparable(read_rows(out))
        ) == sorted(json.dumps(r, sort_keys=True) for r in comparable(rows))
        # A scheduler address works the same way (what a cluster user passes).
        rows2 = run_cases(_cases()[:1], executor="dask", scheduler=cluster.scheduler_address)
        assert comparable(rows2) == comparable(serial[:1])


def test_bad_executor_and_workers():
    with pytest.raises(UsageError, match="unknown executor"):
        run_cases(_cases(), executor="threads")
    with pytest.raises(UsageError, match="workers"):
        run_cases(_cases(), executor="process", workers=0)


def test_cli_sweep_csv_json_and_plot(tmp_path):
    import csv

    from click.testing import CliRunner

    from cosma.app.cli import cli

    runner = CliRunner()
    csv_path, png = tmp_path / "rows.csv", tmp_path / "sweep.png"
    r = runner.invoke(
        cli,
        [
            "sweep",
            "zoo:densenet121",
            "--from",
            "M_R",
            "--to",
            "M_P",
            "--steps",
            "3",
            "-m",
            "baseline",
            "--executor",
            "serial",
            "-o",
            str(csv_path),
            "--plot",
            str(png),
        ],
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(csv_path.open()))
    # Three steps from M_R to M_P: the middle one is M_H = (1,605,632 + 2,107,392) // 2.
    assert [row["budget_name"] for row in rows] == ["M_R", "M_H", "M_P"]
    assert rows[1]["budget"] == str((1605632 + 2107392) // 2)
    assert {"budget", "non_compulsory", "lower_bound", "status", "seconds"} <= set(rows[0])
    assert len(read_rows(str(csv_path) + ".jsonl")) == 3
    assert png.read_bytes()[:4] == b"\x89PNG"
    # Byte budgets, and JSON on standard output as one document.
    r = runner.invoke(
        cli,
        [
            "sweep",
            "zoo:densenet121",
            "-b",
            "1.6MiB",
            "-b",
            "2107392",
            "-m",
            "baseline",
            "--executor",
            "serial",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert [d["budget"] for d in doc] == [1677721, 2107392]
    r = runner.invoke(cli, ["sweep", "zoo:densenet121", "-b", "lots", "--executor", "serial"])
    assert r.exit_code != 0 and "cannot read 'lots' as a size" in r.output


def test_cli_bench_takes_byte_budgets(tmp_path):
    from click.testing import CliRunner

    from cosma.app.cli import cli

    out = tmp_path / "run"
    r = CliRunner().invoke(
        cli,
        [
            "bench",
            "--graphs",
            "zoo:densenet121",
            "--budgets",
            "M_R",
            "--budgets",
            "2MiB",
            "--methods",
            "file-arena-belady",
            "--executor",
            "serial",
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "run.json").read_text())
    assert [(x["budget_name"], x["budget"]) for x in rows] == [("M_R", 1605632), ("2MiB", 2097152)]
    assert read_rows(tmp_path / "run.jsonl") == rows
