"""Every docstring example in the library runs, and so does every README example."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import cosma

ROOT = Path(__file__).resolve().parent.parent


def _modules() -> list[str]:
    names = ["cosma"]
    for pkg in ("cosma", "cosma.graphs", "cosma.solvers", "cosma.app"):
        mod = importlib.import_module(pkg)
        names += [
            f"{pkg}.{m.name}" for m in pkgutil.iter_modules(mod.__path__) if m.name != "__main__"
        ]
    return sorted(set(names))


@pytest.mark.parametrize("name", _modules())
def test_doctests(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    cmds = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("cosma "):
                cmds.append(line)
    return cmds


def test_readme_has_commands():
    assert _readme_commands(), "README lists no cosma commands"


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory):
    """One scratch folder for all README commands, in order (one may read what an earlier
    one wrote), with the repository's folders the README names linked in."""
    d = tmp_path_factory.mktemp("readme")
    for name in ("graphs", "benchmarks", "notebooks"):
        if (ROOT / name).exists():
            (d / name).symlink_to(ROOT / name)
    return d


# README examples share one scratch folder per worker (readme_dir).
README_ORDER = pytest.mark.xdist_group("readme")


def test_readme_commands_run(readme_dir):
    """Every README command, in README order, in one folder: a command may read what an
    earlier one wrote (plan.json, densenet.json), so they run in one test rather than as
    parametrized tests that a parallel run could spread over workers. Every command runs;
    the failures are listed together."""
    beside = Path(sys.executable).parent / "cosma"  # the venv's script, even if not on PATH
    failures = []
    for command in _readme_commands():
        argv = shlex.split(command)
        if beside.exists():
            argv[0] = str(beside)
        r = subprocess.run(argv, cwd=readme_dir, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            failures.append(f"{command}\n  exit {r.returncode}: {r.stderr.strip()[-2000:]}")
    assert not failures, "README commands failed:\n" + "\n".join(failures)


def test_version():
    assert cosma.__version__


def _readme_python() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)


@README_ORDER
@pytest.mark.parametrize("block", _readme_python())
def test_readme_python_runs(block, capsys, readme_dir, monkeypatch):
    monkeypatch.chdir(readme_dir)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    if "must_live" in block:
        assert out.strip().startswith("60")  # the example prints 60
