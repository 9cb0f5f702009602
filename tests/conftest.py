"""Shared fixtures, and the check that every plan a test makes matches the plan schema."""

from __future__ import annotations

import os

import pytest
from helpers import LIGHT_MODELS
from schema import fast_validate

from cosma.plan import Plan

#: Light models cheap enough for onnx's reference evaluator in the default run; the other
#: seven (10 s to 100 s each on a shared 2-core machine) run in the slow job.
FAST_LIGHT = {"squeezenet", "shufflenet"}


def _light_param(path: str):
    name = os.path.basename(path)[6:-5]
    return pytest.param(path, id=name, marks=() if name in FAST_LIGHT else (pytest.mark.slow,))


@pytest.fixture(params=[_light_param(p) for p in LIGHT_MODELS])
def light_model(request) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _plans_match_the_schema(monkeypatch):
    """Every plan described during a test (every plan a method returns is) is validated
    against cosma/plan.schema.json when the test ends, in its final state. Plans a test
    builds by hand to break a rule are left out: only replayed ones (traffic set) count."""
    made: list[Plan] = []
    original = Plan.describe

    def describe(self, graph):
        made.append(self)
        return original(self, graph)

    monkeypatch.setattr(Plan, "describe", describe)
    yield
    seen: set[int] = set()
    for p in made:
        if id(p) in seen or (p.status.has_plan and not p.traffic):
            continue
        seen.add(id(p))
        fast_validate(p.to_dict())
