"""Signals during a solve: stop the solver, keep its best plan, mark it interrupted.

The command line installs :func:`handle_signals` for SIGINT and SIGTERM. A solver backend
waits for its solver with :func:`wait_stoppable`, which polls in short steps so the Python
signal handler runs in the main thread even while the solver works in another thread or
process. The first signal sets a flag; the waiting backend asks its solver to stop (CBC:
SIGINT to its process group; HiGHS: its user-interrupt callback; CP-SAT: ``StopSearch``)
and returns whatever the solver had, which the method turns into a plan as usual. Between
solver calls the flag makes every :class:`~cosma.deadline.Deadline` expire, so the method
winds down with the best plan it has. :func:`cosma.solvers.solve` then marks the plan
``stats["interrupted"]``. A second signal, or any signal outside ``plan`` (``graceful=False``),
raises :class:`KeyboardInterrupt` (the command exits 128 + signal with no plan).

Without :func:`handle_signals` (library use) nothing changes: Python's default handlers
stay in place.

>>> requested() is None
True
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict[str, object] = {"signal": None, "waiting": 0, "graceful": True, "installed": ()}


def requested() -> str | None:
    """The name of the signal that asked to stop (``"SIGINT"``...), or None."""
    sig = _state["signal"]
    return None if sig is None else signal.Signals(sig).name  # type: ignore[arg-type]


def requested_number() -> int | None:
    sig = _state["signal"]
    return None if sig is None else int(sig)  # type: ignore[call-overload]


def reset() -> None:
    """Forget a past request (each command starts clean)."""
    _state["signal"] = None


def _handler(signum: int, frame: object) -> None:
    first = _state["signal"] is None
    if first:
        _state["signal"] = signum
    if not first or not _state["graceful"]:
        # Nothing to stop gracefully (or asked twice): unwind now; finally blocks still run,
        # so solver processes are killed and temporary folders removed.
        raise KeyboardInterrupt(signal.Signals(signum).name)
    log.warning(
        "%s received: stopping the solver and keeping the best plan found so far "
        "(send it again to stop at once)",
        signal.Signals(signum).name,
    )


@contextlib.contextmanager
def handle_signals(
    signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM), *, graceful: bool = True
) -> Iterator[None]:
    """Install cosma's handler for ``signals`` (main thread only) while inside.

    ``graceful``: the first signal during a solve stops the solver and keeps its best plan.
    Otherwise every signal unwinds at once as :class:`KeyboardInterrupt` (``finally`` blocks
    still kill solver processes and remove temporary folders), as SIGINT does by default
    and SIGTERM does not.
    """
    reset()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _handler) for s in signals}
    _state["installed"] = signals
    was_graceful = _state["graceful"]
    _state["graceful"] = graceful
    try:
        yield
    finally:
        _state["graceful"] = was_graceful
        _state["installed"] = ()
        for s, h in old.items():
            signal.signal(s, h)
        reset()  # a request ends with the command: later library calls run normally


def _reinstall() -> None:
    """Put cosma's handler back. A library that installs its own handler in C and restores
    the default afterwards (CP-SAT does unless ``catch_sigint_signal`` is off) would
    otherwise leave the next signal to kill the process outright, solver and all."""
    if threading.current_thread() is threading.main_thread():
        for s in _state.get("installed", ()):  # type: ignore[union-attr]
            signal.signal(s, _handler)


def wait_stoppable(
    wait: Callable[[float], bool], stop: Callable[[], None], *, every: float = 0.1
) -> bool:
    """Wait until ``wait(timeout)`` returns True (the solve ended). If a signal asks to stop
    meanwhile, call ``stop()`` (again every second until the solve ends, in case the first
    call came before the solver was ready). Returns whether a stop was requested."""
    _reinstall()
    with _lock:
        _state["waiting"] = int(_state["waiting"]) + 1  # type: ignore[call-overload]
    last_stop = 0.0
    try:
        while True:
            if requested() is not None and time.monotonic() - last_stop > 1.0:
                last_stop = time.monotonic()
                stop()
            if wait(every):
                return requested() is not None
    finally:
        with _lock:
            _state["waiting"] = int(_state["waiting"]) - 1  # type: ignore[call-overload]
