"""Shared fixtures, and the check that every plan a test makes matches the plan schema."""

from __future__ import annotations

import os

import pytest
from helpers import LIGHT_MODELS
from hypothesis import settings
from schema import fast_validate

from cosma.plan import Plan


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Every core by default: ``-n auto --dist loadgroup`` when pytest-xdist is installed
    (the dev extras) and no ``-n`` was given; a checkout without xdist runs in one process
    instead of failing on an unknown option."""
    worker = getattr(config, "workerinput", None)
    if worker is not None:  # a worker re-reads the command line: take the controller's mode
        if worker.get("cosma_dist") == "loadgroup":
            config.option.loadgroup = True  # workers tag tests with their xdist_group
        return
    if getattr(config.option, "numprocesses", 0) is None:  # xdist loaded, -n not given
        config.option.numprocesses = "auto"
    if getattr(config.option, "numprocesses", 0) and config.option.dist == "no":
        config.option.dist = "loadgroup"  # also for -n N given without --dist


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """(pytest-xdist, in the controller) Tell each worker the distribution mode."""
    node.workerinput["cosma_dist"] = node.config.option.dist


# In CI (CI=true) every property test draws the same examples on every run: a red CI then
# means the change broke something, never that this run drew a rarer example. Elsewhere the
# examples differ from run to run, which keeps finding new cases (except where a test pins
# derandomize itself, as tests/test_fuzz.py's default-run copies do).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")

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
