"""The simulator: hand-written plans with hand-computed traffic, and one broken plan per
violation kind."""

from __future__ import annotations

import dataclasses

import pytest
from cases import chain, chain_plan, plan_for, skip, skip_spill_plan

from cosma import PlanError, Setting
from cosma.plan import Event, EventKind, Step, create, drop, load, store
from cosma.simulator import replay, verify


def test_valid_plan_traffic_by_hand():
    g = chain()
    r = replay(g, plan_for(g, chain_plan(), 60))
    assert r.valid, r.violations
    # load x (10) + store z (5), both compulsory.
    assert (r.loaded, r.stored, r.compulsory, r.non_compulsory) == (10, 5, 15, 0)
    assert r.peak == 60  # y1 + y2 at b


def test_spill_plan_traffic_by_hand():
    g = skip()
    r = replay(g, plan_for(g, skip_spill_plan(), 16))
    assert r.valid, r.violations
    # loads: x 1 + p 10; stores: p 10 + z 1. Compulsory: x and z.
    assert (r.loaded, r.stored, r.compulsory, r.non_compulsory) == (11, 11, 2, 20)


def test_verify_fills_in_and_checks_the_claim():
    g = skip()
    p = verify(g, plan_for(g, skip_spill_plan(), 16))
    assert p.objective == 20 and p.traffic["total"] == 22 and p.peak == 16
    wrong = dataclasses.replace(plan_for(g, skip_spill_plan(), 16), objective=10)
    with pytest.raises(PlanError, match=r"claims 10 bytes.*measures 20"):
        verify(g, wrong)
    with pytest.raises(PlanError, match="not valid"):
        verify(g, plan_for(g, skip_spill_plan(), 15))


def kinds(g, steps, budget=60, **kw):
    return {v.kind for v in replay(g, plan_for(g, steps, budget, **kw)).violations}


def edit(steps, i, before=None, after=None):
    s = list(steps)
    s[i] = Step(
        s[i].operator,
        tuple(before if before is not None else s[i].before),
        tuple(after if after is not None else s[i].after),
    )
    return s


def test_operand_not_resident():
    s = edit(chain_plan(), 0, before=[create("y1", 0)], after=[])
    assert "operand not resident" in kinds(chain(), s)


def test_overlap():
    s = edit(chain_plan(), 0, before=[load("x", 35), create("y1", 0)])
    assert kinds(chain(), s) == {"overlap"}


def test_out_of_bounds():
    s = edit(chain_plan(), 2, before=[create("z", 60)])  # [60, 65) past the end
    assert kinds(chain(), s) == {"out of bounds"}


def test_misaligned():
    s = edit(chain_plan(), 0, before=[load("x", 41), create("y1", 0)])
    assert kinds(chain(), s, budget=64, alignment=4) >= {"misaligned"}


def test_load_without_host_copy():
    g = skip()
    s = edit(skip_spill_plan(), 2, before=[drop("p"), create("r", 0)])  # no store of p
    assert kinds(g, s, 16) == {"needed tensor lost", "load without host copy"}


def test_needed_tensor_dropped():
    s = edit(chain_plan(), 0, before=[load("x", 40), create("y1", 0)], after=[drop("y1")])
    found = kinds(chain(), s)
    assert "needed tensor lost" in found and "operand not resident" in found


def test_output_never_stored():
    s = edit(chain_plan(), 2, after=[drop("z"), drop("y2")])
    assert kinds(chain(), s) == {"needed tensor lost", "output not stored"}


def test_order_not_topological():
    s = chain_plan()
    s[0], s[1] = s[1], s[0]
    assert "order" in kinds(chain(), s)


def test_operator_missing_or_twice():
    s = chain_plan()
    assert kinds(chain(), s[:2]) >= {"order"}
    assert kinds(chain(), [*s, Step("c")]) >= {"order"}
    assert kinds(chain(), [*s, Step("zz")]) >= {"unknown operator"}


def test_store_rules():
    g = skip()
    twice = edit(skip_spill_plan(), 2, before=[store("p"), store("p"), drop("p"), create("r", 0)])
    assert kinds(g, twice, 16) == {"stored twice"}
    early = edit(skip_spill_plan(), 0, before=[load("x", 0), create("p", 1), store("p")])
    assert "store before compute" in kinds(g, early, 16)
    host = edit(skip_spill_plan(), 0, after=[store("x"), drop("x")])
    assert kinds(g, host, 16) == {"store of host tensor"}


def test_untracked_and_unknown_tensors():
    s = edit(chain_plan(), 1, before=[load("w", 50), create("y2", 40)])
    assert "untracked tensor" in kinds(chain(), s)
    # With parameters tracked, w must be loaded: the original plan is then invalid...
    assert "operand not resident" in kinds(
        chain(), chain_plan(), 70, setting=Setting.ACTIVATIONS_PARAMETERS
    )
    s = edit(chain_plan(), 1, before=[create("y2", 40), Event(EventKind.DROP, "ghost")])
    assert "unknown tensor" in kinds(chain(), s)


def test_create_rules():
    s = edit(chain_plan(), 1, before=[create("y2", 40), create("z", 0)])
    assert "create" in kinds(chain(), s)


def test_recompute_rules():
    # recompute events are replayed now (cosma.remat): recomputing y1 needs a's input x,
    # which is gone, and an address (this plan is not pooled); x has no producer at all
    s = edit(chain_plan(), 1, before=[create("y2", 40), Event(EventKind.RECOMPUTE, "y1")])
    assert {"operand not resident", "no address"} <= kinds(chain(), s)
    s = edit(chain_plan(), 1, before=[create("y2", 40), Event(EventKind.RECOMPUTE, "x")])
    assert "recompute" in kinds(chain(), s)
