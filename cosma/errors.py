"""The exception tree of cosma, and the exit codes of the ``cosma`` command.

Every error cosma raises on purpose derives from :class:`CosmaError`. Messages say what
went wrong, where, and what to do. Infeasible or timed-out solves are *statuses* of a
result, not exceptions.

Each class carries the exit code the command line uses for it (:func:`exit_code`), so the
mapping from errors to exit codes lives in one place:

>>> exit_code(UsageError("bad option")), exit_code(ModelImportError("bad file"))
(2, 3)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of the ``cosma`` command (documented in the README and ``cosma --help``)."""

    OK = 0
    #: an unexpected internal error (a bug in cosma: please report it)
    INTERNAL = 1
    #: wrong options or arguments (also click's own usage errors); nothing was computed
    USAGE = 2
    #: an input file or graph cannot be used: model, plan file, graph
    BAD_INPUT = 3
    #: no plan: the budget is infeasible, a limit was reached before any plan, or a
    #: replayed plan is invalid
    NO_PLAN = 4
    #: a solver failed (crashed, rejected the model, ran out of memory)
    SOLVER_FAILURE = 5
    #: stopped by a signal: 128 + its number (130 for Ctrl-C/SIGINT, 143 for SIGTERM)
    INTERRUPTED = 130


class CosmaError(Exception):
    """Root of every error cosma raises on purpose; the CLI turns it into one message."""

    exit_code: ExitCode = ExitCode.BAD_INPUT


class GraphError(CosmaError):
    """Raised when a graph cannot be built or is not a valid dataflow DAG."""


class GraphValidationError(GraphError):
    """Raised by graph validation; lists every problem found, not only the first.

    ``problems`` holds one human-readable line per problem.
    """

    def __init__(self, graph_name: str, problems: list[str]):
        self.graph_name = graph_name
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(
            f"graph {graph_name!r} is not valid ({n} problem{'s' if n != 1 else ''}):\n{lines}"
        )


class ModelImportError(GraphError):
    """Raised when a model file cannot be read: missing, not ONNX, truncated or corrupt."""


class UnsupportedModelError(GraphError):
    """Raised when a model is readable but cannot be made a static graph.

    Control flow (``If``/``Loop``/``Scan``), dynamic dimensions with no override, unknown
    element types, shapes whose sizes overflow and tensors whose shapes cannot be inferred
    end up here.
    """


class UsageError(CosmaError):
    """Raised when the caller's options are wrong: a malformed budget, shape override,
    thread count, time limit, seed or output path, an unknown zoo name."""

    exit_code = ExitCode.USAGE


class PlanError(CosmaError):
    """Raised when a plan cannot be read or does not belong to the graph it is used with."""


class NoPlanError(CosmaError):
    """Raised by the command line when no plan can exist (the budget is below ``M_R``)
    before any work is done. The library reports this as the status ``infeasible``."""

    exit_code = ExitCode.NO_PLAN


class SolverError(CosmaError):
    """Raised when a solver backend is missing or fails in a way that is not a status:
    it crashed, rejected the model (e.g. CP-SAT ``MODEL_INVALID``), or the model would
    need more memory than allowed. The message carries the solver's own reason."""

    exit_code = ExitCode.SOLVER_FAILURE


class ModelTooLargeError(SolverError):
    """Raised before a model is built when its estimated size exceeds the memory limit
    (see ``cosma.solvers.limits``). The message gives the estimate and the way out."""


def exit_code(error: BaseException) -> int:
    """The ``cosma`` exit code for ``error`` (an unexpected exception is an internal error)."""
    if isinstance(error, CosmaError):
        return int(error.exit_code)
    return int(ExitCode.INTERNAL)
