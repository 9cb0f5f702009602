"""Plan JSON: round trip, graph identity, versioning, bad input."""

from __future__ import annotations

import json

import pytest
from cases import chain, plan_for, skip, skip_spill_plan

from cosma import GraphBuilder, PlanError
from cosma.plan import SCHEMA_VERSION, Plan, Status
from cosma.simulator import verify


def test_round_trip():
    g = skip()
    p = verify(g, plan_for(g, skip_spill_plan(), 16))
    p.lower_bound = 20
    p.status = Status.OPTIMAL
    text = p.to_json()
    doc = json.loads(text)
    assert doc["schema_version"] == SCHEMA_VERSION
    assert doc["graph"]["identity"] == g.identity()
    assert doc["gap"] == 0.0 and doc["objective"] == 20
    back = Plan.from_json(text, g)
    assert back.to_dict() == p.to_dict()
    assert back.order == ["a", "b", "c", "d"]


def test_plan_for_another_graph_is_refused():
    g = skip()
    text = plan_for(g, skip_spill_plan(), 16).to_json()
    other = GraphBuilder("other").input("x", 1).op("a", ["x"], {"y": 2}).output("y").build()
    with pytest.raises(PlanError, match="made for graph 'skip'"):
        Plan.from_json(text, other)


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not an object"),
        ('{"schema_version": 99}', "version 99 is not supported"),
        ('{"schema_version": 1}', "not a valid cosma plan"),
    ],
)
def test_bad_plan_files(text, match):
    with pytest.raises(PlanError, match=match):
        Plan.from_json(text)


def test_gap():
    g = skip()
    p = plan_for(g, [], 16)
    assert p.gap is None
    p.objective, p.lower_bound = 20, 15
    assert p.gap == pytest.approx(0.25)
    p.objective, p.lower_bound = 0, 0
    assert p.gap == 0.0


# --- schema version 2 ------------------------------------------------------------------------

from schema import fast_validate, validate_plan  # noqa: E402

from cosma.plan import Step, create, drop, load, store  # noqa: E402


def test_v2_events_carry_bytes_addresses_reasons_and_host_offsets():
    g = skip()
    p = verify(g, plan_for(g, skip_spill_plan(), 16))
    doc = p.to_dict()
    validate_plan(doc)
    ev = [
        (i, ph, e) for i, s in enumerate(doc["steps"]) for ph in ("before", "after") for e in s[ph]
    ]
    loads = [(i, e["tensor"], e["reason"], e["address"]) for i, _, e in ev if e["kind"] == "load"]
    # x is a graph input; p was stored at c and comes back at d, at address 5.
    assert loads == [(0, "x", "input", 0), (3, "p", "reload", 5)]
    # Stores and drops name where the block was: p at 1 when stored, z at 15.
    stores = [(e["tensor"], e["address"], e["bytes"]) for _, _, e in ev if e["kind"] == "store"]
    assert stores == [("p", 1, 10), ("z", 15, 1)]
    # Host layout: x (1 byte) at 0, then p (10) at 1, then z at 11, in order of first use.
    assert doc["host_layout"]["offsets"] == {"x": 0, "p": 1, "z": 11}
    assert doc["host_layout"]["bytes"] == 12
    assert all(
        e["host_offset"] == doc["host_layout"]["offsets"][e["tensor"]]
        for _, _, e in ev
        if e["kind"] in ("load", "store")
    )
    assert doc["tensors"]["p"] == {"bytes": 10, "kind": "activation"}


def test_a_move_is_named_a_move():
    # chain: x(10) -a-> y1(40) -b-> y2(20) -c-> z(5). y1 is resident while a runs, dropped
    # after it (host has its copy: stored first) and loaded at another address for b.
    g = chain()
    steps = [
        Step("a", (load("x", 40), create("y1", 0)), (drop("x"), store("y1"), drop("y1"))),
        Step("b", (load("y1", 20), create("y2", 0)), (drop("y1"),)),
        Step("c", (create("z", 20),), (store("z"), drop("z"), drop("y2"))),
    ]
    p = verify(g, plan_for(g, steps, 60))
    reasons = [
        e["reason"] for s in p.to_dict()["steps"] for e in s["before"] if e["kind"] == "load"
    ]
    assert reasons == ["input", "move"]


def test_v2_round_trip_without_the_graph_keeps_what_a_compiler_needs():
    g = skip()
    p = verify(g, plan_for(g, skip_spill_plan(), 16))
    p.element_bytes = 1
    back = Plan.from_json(p.to_json())  # no graph: everything comes from the file
    assert back.to_dict() == p.to_dict()
    assert back.dma_commands() == p.dma_commands()


def test_version_1_files_are_still_read():
    g = skip()
    p = verify(g, plan_for(g, skip_spill_plan(), 16))
    v1 = {
        "schema_version": 1,
        "graph": {"name": g.name, "identity": g.identity()},
        "budget": 16,
        "setting": "activations",
        "alignment": 1,
        "method": "hand",
        "status": "feasible",
        "steps": [
            {
                "operator": s.operator,
                "before": [
                    {"kind": e.kind.value, "tensor": e.tensor}
                    | ({"address": e.address} if e.address is not None else {})
                    for e in s.before
                ],
                "after": [{"kind": e.kind.value, "tensor": e.tensor} for e in s.after],
            }
            for s in p.steps
        ],
    }
    back = Plan.from_dict(v1, g)
    assert back.steps == p.steps
    assert back.annotated_steps() == p.annotated_steps()


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["steps"][0]["before"][0].pop("bytes"),
        lambda d: d["steps"][0]["before"][0].pop("reason"),
        lambda d: d["steps"][2]["before"][0].pop("host_offset"),  # the store of p
        lambda d: d["steps"][0]["before"][0].__setitem__("reason", "because"),
        lambda d: d.__setitem__("schema_version", 1),
        lambda d: d.pop("host_layout"),
        lambda d: d.__setitem__("status", "done"),
    ],
)
def test_schema_rejects_broken_plans_in_both_validators(breakage):
    import fastjsonschema
    import jsonschema

    g = skip()
    doc = verify(g, plan_for(g, skip_spill_plan(), 16)).to_dict()
    validate_plan(doc)
    fast_validate(doc)
    breakage(doc)
    with pytest.raises(jsonschema.ValidationError):
        validate_plan(doc)
    with pytest.raises(fastjsonschema.JsonSchemaException):
        fast_validate(doc)


def test_schema_ships_in_the_package():
    from importlib import resources

    assert resources.files("cosma").joinpath("plan.schema.json").is_file()
    assert resources.files("cosma").joinpath("py.typed").is_file()
