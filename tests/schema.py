"""Validation of plan documents against the JSON Schema that ships in the package.

``validate_plan`` uses jsonschema (the reference implementation). The check run on every plan
a test makes uses ``fast_validate``, the same schema compiled by fastjsonschema: jsonschema
takes ~0.4 s on a 668-operator plan, which the many plans of the suite cannot afford.
tests/test_plan.py checks that both reject the same broken documents.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import fastjsonschema
import jsonschema


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(resources.files("cosma").joinpath("plan.schema.json").read_text())


@functools.lru_cache(maxsize=1)
def validator() -> Any:
    cls = jsonschema.validators.validator_for(schema())
    cls.check_schema(schema())
    return cls(schema())


def validate_plan(doc: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``doc`` is not a valid schema-2 plan."""
    validator().validate(doc)


@functools.lru_cache(maxsize=1)
def _fast() -> Any:
    return fastjsonschema.compile(schema())


def fast_validate(doc: dict[str, Any]) -> None:
    """The same check, compiled: raises ``fastjsonschema.JsonSchemaException``."""
    _fast()(doc)
