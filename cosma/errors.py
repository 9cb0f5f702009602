"""The exception tree of cosma.

Every error cosma raises on purpose derives from :class:`CosmaError`. Messages say what
went wrong, where, and what to do. Infeasible or timed-out solves are *statuses* of a
result, not exceptions.
"""

from __future__ import annotations


class CosmaError(Exception):
    """Root of every error cosma raises on purpose; the CLI turns it into one message."""


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
    element types and tensors whose shapes cannot be inferred end up here.
    """


class UsageError(CosmaError):
    """Raised when the caller's options are wrong: a malformed budget or shape override,
    an unknown zoo name, a budget below what the graph needs."""


class PlanError(CosmaError):
    """Raised when a plan cannot be read or does not belong to the graph it is used with."""


class SolverError(CosmaError):
    """Raised when a solver backend is missing or fails in a way that is not a status."""
