"""Pictures: check what is drawn (blocks, coordinates, markers, lines), not only files."""

from __future__ import annotations

import pytest
from cases import plan_for, skip, skip_spill_plan

from cosma.pictures import live_bytes, live_profile, memory_map, residencies, traffic_vs_budget
from cosma.simulator import verify


def _skip_plan():
    g = skip()
    return g, verify(g, plan_for(g, skip_spill_plan(), 16))


def test_memory_map_blocks_by_hand():
    _, p = _skip_plan()
    m = memory_map(p)
    # From skip_spill_plan (steps a, b, c, d = 0..3; a step spans [i, i+1)):
    # x loaded at 0 before a, dropped after a; p created at 1 before a, stored and dropped
    # before c; q created at 11 before b, dropped after c; r created at 0 before c, dropped
    # after d; p reloaded at 5 before d; z created at 15 before d; both dropped after d.
    got = sorted((b.tensor, b.x0, b.x1, b.y0, b.y1, b.how) for b in m.blocks)
    assert got == sorted(
        [
            ("x", 0, 1, 0, 1, "load (input)"),
            ("p", 0, 2, 1, 11, "create"),
            ("q", 1, 3, 11, 16, "create"),
            ("r", 2, 4, 0, 5, "create"),
            ("p", 3, 4, 5, 15, "load (reload)"),
            ("z", 3, 4, 15, 16, "create"),
        ]
    )
    assert m.loads == [(0, 0, "x"), (3, 5, "p")]
    assert m.stores == [(2, 1, "p"), (4, 15, "z")]
    assert m.moves == []
    # The matplotlib artists say the same: one rectangle per block, at its coordinates.
    rects = sorted(
        (r.get_label(), r.get_x(), r.get_x() + r.get_width(), r.get_y(), r.get_y() + r.get_height())
        for r in m.ax.patches
    )
    assert rects == sorted((b.tensor, b.x0, b.x1, b.y0, b.y1) for b in m.blocks)
    labels = sorted(t.get_text() for t in m.ax.texts)
    assert labels == sorted(["x", "p", "q", "r", "p", "z", " budget 16 B"])
    budget_lines = [ln for ln in m.ax.lines if ln.get_label() == "budget"]
    assert len(budget_lines) == 1 and list(budget_lines[0].get_ydata()) == [16, 16]


def test_memory_map_files(tmp_path):
    _, p = _skip_plan()
    m = memory_map(p)
    png, svg = m.save(tmp_path / "m.png"), m.save(tmp_path / "m.svg")
    from pathlib import Path

    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = Path(svg).read_text()
    assert "<svg" in text
    with pytest.raises(Exception, match=r"\.png or \.svg"):
        m.save(tmp_path / "m.jpg")


def test_blocks_never_overlap_in_a_real_plan():
    import cosma

    g = cosma.load_model("zoo:densenet121")
    p = cosma.plan(g, cosma.budgets(g).m_r, method="baseline")
    blocks = residencies(p)
    for i, a in enumerate(blocks):
        assert 0 <= a.y0 <= a.y1 <= p.budget
        for b in blocks[i + 1 :]:
            time = a.x0 < b.x1 and b.x0 < a.x1
            space = a.y0 < b.y1 and b.y0 < a.y1
            assert not (time and space and a.y1 > a.y0 and b.y1 > b.y0), (a, b)


def test_traffic_chart_lines_and_band():
    rows = [
        {
            "graph": "g",
            "budget": 16,
            "method": "milp",
            "non_compulsory": 20,
            "lower_bound": 20,
            "m_r": 16,
            "m_h": 18,
            "m_p": 20,
            "setting": "activations",
        },
        {"graph": "g", "budget": 16, "method": "baseline", "non_compulsory": 30, "lower_bound": 0},
        {"graph": "g", "budget": 20, "method": "milp", "non_compulsory": 0, "lower_bound": 0},
        {"graph": "g", "budget": 20, "method": "baseline", "non_compulsory": 0, "lower_bound": 0},
        {"graph": "g", "budget": 18, "method": "cpsat", "non_compulsory": 25, "lower_bound": 10},
    ]
    c = traffic_vs_budget(rows)
    assert c.lines == {
        "milp": [(16, 20), (20, 0)],
        "baseline": [(16, 30), (20, 0)],
        "cpsat": [(18, 25)],
    }
    # At each budget: from the best bound to the best traffic.
    assert c.band == [(16, 20, 20), (18, 10, 25), (20, 0, 0)]
    assert c.marks == {"M_R": 16, "M_H": 18, "M_P": 20}
    drawn = {ln.get_label(): list(ln.get_ydata()) for ln in c.ax.lines}
    assert drawn["milp"] == [20, 0] and drawn["baseline"] == [30, 0]


def test_live_bytes_chart():
    import cosma
    from cosma.memory import schedule_peak

    g = skip()
    # By hand: a: x, p (11); b: p, q (15); c: p, q, r (20); d: p, r, z (16).
    assert live_profile(g, ["a", "b", "c", "d"]) == [11, 15, 20, 16]
    g = cosma.load_model("zoo:densenet121")
    b = cosma.budgets(g)
    chart = live_bytes(g, {"file": g.file_order}, marks={"M_R": b.m_r, "M_P": b.m_p})
    prof = chart.profiles["file"]
    assert max(prof) == schedule_peak(g, g.file_order)[0]
    assert len(prof) == g.num_operators
    assert [t.get_text().split()[0] for t in chart.ax.texts] == ["M_R", "M_P"]


def test_cli_show_and_inspect_plot(tmp_path):
    import json

    from click.testing import CliRunner

    from cosma.app.cli import cli

    runner = CliRunner()
    plan_file = tmp_path / "p.json"
    r = runner.invoke(cli, ["plan", "zoo:densenet121", "-s", "M_R", "-o", str(plan_file)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["show", str(plan_file), "-o", str(tmp_path / "m.svg"), "--json"])
    assert r.exit_code == 0, r.output
    drawn = json.loads(r.stdout)
    plan = json.loads(plan_file.read_text())
    loads = sum(1 for s in plan["steps"] for e in s["before"] if e["kind"] == "load")
    assert len(drawn["loads"]) + len(drawn["moves"]) == loads
    assert drawn["budget"] == plan["budget"]
    assert "<svg" in (tmp_path / "m.svg").read_text()
    r = runner.invoke(cli, ["show", str(plan_file)])  # default: PLAN with .png
    assert r.exit_code == 0 and (tmp_path / "p.png").exists()
    r = runner.invoke(
        cli,
        [
            "inspect",
            "zoo:densenet121",
            "--setting",
            "activations",
            "--plot",
            str(tmp_path / "live.png"),
        ],
    )
    assert r.exit_code == 0 and (tmp_path / "live.png").read_bytes()[:4] == b"\x89PNG"
