"""Plan JSON: round trip, graph identity, versioning, bad input."""

from __future__ import annotations

import json

import pytest
from test_simulator import plan_for, skip, skip_spill_plan

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
