"""Shared fixtures, and the check that every plan a test makes matches the plan schema."""

from __future__ import annotations

import os

import pytest
from helpers import LIGHT_MODELS
from schema import fast_validate

from cosma.plan import Plan


@pytest.fixture(params=LIGHT_MODELS, ids=lambda p: os.path.basename(p)[6:-5])
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
