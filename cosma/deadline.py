"""One wall-clock limit shared by every phase of a call (SPEC: ``--time-limit`` bounds the
whole command, not only the solver).

A :class:`Deadline` is created once, at the top (the CLI command or the library call), and
passed down; each phase asks it how much time is left (or a share of it) and records how
long it took, so a plan can report ``stats["phases"]``.

>>> d = Deadline(10.0)
>>> with d.phase("model"):
...     pass
>>> 0 < d.remaining() <= 10.0, "model" in d.phases
(True, True)
>>> Deadline(None).left() is None   # no limit
True
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from cosma import interrupt


class Deadline:
    """A point in time after which work should stop; ``None`` seconds means no limit."""

    def __init__(self, seconds: float | None = None, *, reserve: float = 0.0) -> None:
        self.seconds = None if seconds is None else max(0.0, float(seconds))
        #: seconds kept back at the end for what follows the work (writing the answer,
        #: leaving the interpreter): phases see a limit this much shorter
        self.reserve = max(0.0, reserve)
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}
        self.cancelled = False

    @classmethod
    def of(cls, limit: float | Deadline | None) -> Deadline:
        """``limit`` itself if it is a Deadline (shared), else a new one starting now."""
        return limit if isinstance(limit, Deadline) else cls(limit)

    @classmethod
    def since_process_start(
        cls, seconds: float | None, *, fresh: float = 60.0, reserve: float = 0.0
    ) -> Deadline:
        """A deadline counted from when this process started, so a command-line limit
        covers interpreter start-up and imports too. A process older than ``fresh``
        seconds is not a fresh command (a test runner, a notebook): count from now, as
        also where the start is unknown. ``reserve``: see :attr:`reserve`."""
        d = cls(seconds, reserve=reserve)
        age = _process_age()
        if age <= fresh:
            d.started -= age
        return d

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def remaining(self) -> float:
        """Seconds left (``inf`` without a limit, never negative; 0 once a signal asked
        to stop, so every phase winds down with what it has: :mod:`cosma.interrupt`)."""
        if interrupt.requested() is not None or self.cancelled:
            return 0.0
        if self.seconds is None:
            return math.inf
        return max(0.0, self.seconds - self.reserve - self.elapsed())

    def cancel(self) -> None:
        """End this deadline now (from any thread): work watching it winds down as at its
        limit. Sub-deadlines made from it before are not affected."""
        self.cancelled = True

    def expired(self, margin: float = 0.0) -> bool:
        return self.remaining() <= margin

    def left(self, share: float = 1.0, *, at_most: float | None = None) -> float | None:
        """Seconds a phase may use: ``share`` of what is left, capped by ``at_most``; None
        when there is no limit and no cap (for functions whose ``time_limit`` takes None)."""
        rem = self.remaining()
        if math.isinf(rem):
            return at_most
        out = rem * share
        return out if at_most is None else min(out, at_most)

    def sub(self, share: float = 1.0, *, at_most: float | None = None) -> Deadline:
        """A nested deadline for a sub-call, ending no later than this one."""
        return Deadline(self.left(share, at_most=at_most))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block and add it to ``phases[name]``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.perf_counter() - t0, 4)


def tail_reserve(seconds: float | None) -> float:
    """What a command keeps back from its limit for writing the answer and exiting: half
    a second and 5 % of the limit, at most 3 s (the allowance over a limit is 10 % + 2 s).

    >>> tail_reserve(10), tail_reserve(60), tail_reserve(None)
    (1.0, 3.0, 0.0)
    """
    if seconds is None:
        return 0.0
    return round(min(3.0, 0.5 + 0.05 * seconds), 3)


def _process_age() -> float:
    """Seconds since this process started (Linux: /proc), else 0."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        ticks = os.sysconf("SC_CLK_TCK")
        return max(0.0, uptime - int(fields[19]) / ticks)
    except (OSError, ValueError, IndexError):
        return 0.0
