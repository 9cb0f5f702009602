"""Moved: the cli module is now ``cosma.app.cli`` (app/cli.py). This alias forwards
attribute access lazily (PEP 562), so old imports such as ``from cosma.cli import ...``
keep working without the core importing the application layer at import time. New code
should import ``cosma.app.cli``; the alias goes away in a later release.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    try:
        target = importlib.import_module("cosma.app.cli")
    except ModuleNotFoundError as e:  # an editable install made before app/ existed
        raise ImportError(
            "cosma.cli moved to cosma.app.cli (app/cli.py), which this installation "
            "does not know yet: reinstall cosma (pip install -e .)"
        ) from e
    return getattr(target, name)
