"""Exports for compilers: the DMA command list and the C header, from the plan alone."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess

import pytest
from cases import plan_for, skip, skip_spill_plan
from helpers import light

import cosma
from cosma.export import c_header, dma_json
from cosma.plan import Plan
from cosma.simulator import verify


def _execute(commands, budget, host_bytes):
    """An independent little DMA machine: applies the commands to byte arrays and checks
    that every run finds its operands where the list says, and that data round-trips.
    Returns the bytes it moved each way."""
    spm = bytearray(budget)
    host = bytearray(host_bytes)
    moved = {"load": 0, "store": 0}
    for c in commands:
        if c["kind"] == "load":
            a, h, n = c["address"], c["host_offset"], c["bytes"]
            assert a + n <= budget and h + n <= host_bytes
            spm[a : a + n] = host[h : h + n]
            moved["load"] += n
        elif c["kind"] == "store":
            a, h, n = c["address"], c["host_offset"], c["bytes"]
            assert a + n <= budget and h + n <= host_bytes
            host[h : h + n] = spm[a : a + n]
            moved["store"] += n
    return moved


def _skip_plan():
    g = skip()
    return verify(g, plan_for(g, skip_spill_plan(), 16))


def test_dma_list_of_a_spill_plan():
    p = _skip_plan()
    cmds = json.loads(dma_json(p))["commands"]
    flat = [(c["kind"], c.get("tensor") or c.get("operator")) for c in cmds]
    # By hand from skip_spill_plan: load x, run a, run b, store p, run c, load p, run d,
    # store z.
    assert flat == [
        ("load", "x"),
        ("run", "a"),
        ("run", "b"),
        ("store", "p"),
        ("run", "c"),
        ("load", "p"),
        ("run", "d"),
        ("store", "z"),
    ]
    run_d = next(c for c in cmds if c.get("operator") == "d")
    assert run_d["resident"] == {"p": 5, "r": 0, "z": 15}
    assert [c["seq"] for c in cmds] == list(range(len(cmds)))


def test_dma_list_moves_what_the_simulator_counts():
    g = cosma.load_model(light("squeezenet"), element_bytes=1)
    b = cosma.budgets(g)
    for budget in (b.m_r, (b.m_r + b.m_p) // 2):
        p = cosma.plan(g, budget, method="baseline")
        doc = json.loads(dma_json(p))
        moved = _execute(doc["commands"], p.budget, doc["host_bytes"])
        assert moved == {"load": p.traffic["loaded"], "store": p.traffic["stored"]}
        # Host offsets never overlap: one slot per tensor.
        slots = sorted((off, off + p.tensors[t]["bytes"]) for t, off in p.host_layout.items())
        assert all(a[1] <= b_[0] for a, b_ in itertools.pairwise(slots))


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on this machine")
def test_c_header_compiles_and_says_what_the_plan_says(tmp_path):
    p = _skip_plan()
    (tmp_path / "plan.h").write_text(c_header(p))
    (tmp_path / "main.c").write_text(
        '#include <stdio.h>\n#include "plan.h"\n'
        "int main(void) {\n"
        "  unsigned long long in = 0, out = 0;\n"
        "  for (unsigned i = 0; i < COSMA_SKIP_NUM_COMMANDS; i++) {\n"
        "    if (cosma_skip_commands[i].kind == COSMA_LOAD) in += cosma_skip_commands[i].bytes;\n"
        "    if (cosma_skip_commands[i].kind == COSMA_STORE) out += cosma_skip_commands[i].bytes;\n"
        "  }\n"
        '  printf("%llu %llu %u %u\\n", in, out, COSMA_SKIP_HOST_OFFSET_P, '
        "COSMA_SKIP_SCRATCHPAD_BYTES);\n"
        "  return 0;\n}\n"
    )
    exe = tmp_path / "main"
    subprocess.run(
        [
            "cc",
            "-std=c99",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-o",
            str(exe),
            str(tmp_path / "main.c"),
        ],
        check=True,
    )
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    # Loads x 1 + p 10 = 11, stores p 10 + z 1 = 11; p's host slot follows x's byte.
    assert out.split() == ["11", "11", "1", "16"]


def test_export_refuses_a_plan_without_steps():
    g = skip()
    p = cosma.plan(g, 15, method="baseline")
    with pytest.raises(cosma.UsageError, match="no steps"):
        dma_json(Plan.from_json(p.to_json()))


def test_cli_plan_replay_export(tmp_path):
    from click.testing import CliRunner

    from cosma.app.cli import cli

    plan_file = tmp_path / "p.json"
    runner = CliRunner()
    model = light("squeezenet")
    r = runner.invoke(
        cli, ["plan", model, "-s", "M_R", "--element-bytes", "1", "-o", str(plan_file)]
    )
    assert r.exit_code == 0, r.output
    # No --element-bytes: replay reads it from the plan. (With the ONNX types, 4 bytes per
    # element, the graph would differ and the plan would be refused.)
    r = runner.invoke(cli, ["replay", model, str(plan_file)])
    assert r.exit_code == 0 and "valid on light_squeezenet" in r.output, r.output
    r = runner.invoke(cli, ["replay", model, str(plan_file), "--element-bytes", "4"])
    assert r.exit_code != 0 and "made for graph" in r.output
    r = runner.invoke(cli, ["export", str(plan_file), "--format", "dma-json"])
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert doc["commands"][0]["kind"] == "load" and doc["element_bytes"] == 1
    header = tmp_path / "p.h"
    r = runner.invoke(cli, ["export", str(plan_file), "-f", "c-header", "-o", str(header)])
    assert (
        r.exit_code == 0 and "#define COSMA_LIGHT_SQUEEZENET_SCRATCHPAD_BYTES" in header.read_text()
    )
