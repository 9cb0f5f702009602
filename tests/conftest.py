"""Shared fixtures."""

from __future__ import annotations

import os

import pytest
from helpers import LIGHT_MODELS


@pytest.fixture(params=LIGHT_MODELS, ids=lambda p: os.path.basename(p)[6:-5])
def light_model(request) -> str:
    return request.param
