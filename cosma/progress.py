"""Progress of long searches: one small hook every engine reports through.

An engine calls :func:`report` whenever it learns something (a new incumbent, a better
bound, a finished phase). The report goes to the ``logging`` logger ``cosma.progress`` and
to the callback installed with :func:`reporting` (the library API and the CLI install one),
so engines need no extra parameter and nothing changes for callers that do not listen.

A report is a dict with ``engine``, ``seconds`` (since the engine started), ``objective``
(the incumbent's non-compulsory bytes, or None), ``bound`` (the best proven lower bound,
or None), ``gap`` (relative, or None) and ``phase`` (a word: ``start``, ``incumbent``,
``bound``, ``done``...).

>>> seen = []
>>> with reporting(seen.append):
...     report("demo", seconds=0.5, objective=20, bound=10)
>>> seen[0]["engine"], seen[0]["gap"]
('demo', 0.5)
>>> report("demo", objective=1)  # no callback installed: only logged
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("cosma.progress")

#: A progress callback: receives one report dict per event.
Progress = Callable[[dict[str, Any]], None]

_CALLBACK: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "cosma_progress", default=None
)


@contextlib.contextmanager
def reporting(callback: Progress | None) -> Iterator[None]:
    """Send every :func:`report` made inside the block (in this thread or context) to
    ``callback``; ``None`` leaves the current one in place."""
    if callback is None:
        yield
        return
    token = _CALLBACK.set(callback)
    try:
        yield
    finally:
        _CALLBACK.reset(token)


def current() -> Progress | None:
    """The installed callback. Engines whose solver calls back from another thread (CP-SAT)
    take it once at the start and hand it to :func:`report` as ``callback``."""
    return _CALLBACK.get()


def gap(objective: int | None, bound: int | None) -> float | None:
    """``(objective - bound) / objective``; 0 when both are 0; None if either is unknown."""
    if objective is None or bound is None:
        return None
    if objective == 0:
        return 0.0
    return (objective - bound) / objective


def report(
    engine: str,
    *,
    seconds: float = 0.0,
    objective: int | None = None,
    bound: int | None = None,
    phase: str = "incumbent",
    callback: Progress | None = None,
    **extra: Any,
) -> None:
    """Report progress of ``engine``: logged at INFO, and passed to the callback."""
    info: dict[str, Any] = {
        "engine": engine,
        "phase": phase,
        "seconds": round(float(seconds), 3),
        "objective": objective,
        "bound": bound,
        "gap": gap(objective, bound),
        **extra,
    }
    log.info("%s", format_report(info))
    cb = callback if callback is not None else _CALLBACK.get()
    if cb is not None:
        cb(info)


def format_report(info: dict[str, Any]) -> str:
    """One line for people: ``[  1.20 s] milp incumbent 1,024 B, bound 512 B, gap 50.0 %``.

    >>> format_report({"engine": "milp", "phase": "incumbent", "seconds": 1.2,
    ...                "objective": 1024, "bound": 512, "gap": 0.5})
    '[   1.20 s] milp incumbent: incumbent 1,024 B, bound 512 B, gap 50.0 %'
    >>> format_report({"engine": "dnc", "phase": "pieces", "objective": 8, "piece": 2,
    ...                "pieces": 5})   # "piece k of n"; left out where pieces is 0
    '[   0.00 s] dnc pieces: incumbent 8 B, bound -, piece 2 of 5'
    """

    def b(v: Any) -> str:
        return "-" if v is None else f"{v:,} B"

    parts = [f"incumbent {b(info.get('objective'))}", f"bound {b(info.get('bound'))}"]
    if info.get("gap") is not None:
        parts.append(f"gap {100 * info['gap']:.1f} %")
    if info.get("pieces"):
        parts.append(f"piece {info.get('piece', 0):,} of {info['pieces']:,}")
    for k, v in info.items():
        if k not in ("engine", "phase", "seconds", "objective", "bound", "gap", "piece", "pieces"):
            parts.append(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}")
    return (
        f"[{info.get('seconds', 0.0):7.2f} s] {info.get('engine')} {info.get('phase')}: "
        + ", ".join(parts)
    )
