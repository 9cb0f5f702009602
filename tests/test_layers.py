"""Imports point one way: cosma.graphs -> cosma (core) -> cosma.solvers -> cosma.app.

Checked on module-level imports (an import inside a function runs only when called: the
library API in cosma/api.py imports the solvers and the runner that way).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Layer of each folder, and the packages it must not import at module level.
FORBIDDEN = {
    "graphs": ("cosma.solvers", "cosma.app"),
    "cosma": ("cosma.solvers", "cosma.app"),
    "solvers": ("cosma.app",),
}
# cosma/__main__.py is the program `python -m cosma`: it starts the CLI and nothing imports it.
EXEMPT = {"cosma/__main__.py"}


def _top_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in tree.body:  # module level only
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_point_down(folder):
    bad = []
    for path in sorted((ROOT / folder).glob("*.py")):
        if str(path.relative_to(ROOT)) in EXEMPT:
            continue
        for name in _top_level_imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[folder]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad


def test_the_simulator_never_imports_a_solver():
    names = _top_level_imports(ROOT / "cosma" / "simulator.py")
    assert not [n for n in names if "solvers" in n or "app" in n.split(".")]
