"""cosma: operator scheduling, scratchpad allocation and tensor replacement for DNN
accelerators, with proofs of how close to optimal the answer is.

>>> from cosma import GraphBuilder, memory_figures
>>> g = GraphBuilder("toy").input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
>>> memory_figures(g).m_r
12
"""

from cosma.errors import (
    CosmaError,
    GraphError,
    GraphValidationError,
    ModelImportError,
    PlanError,
    SolverError,
    UnsupportedModelError,
    UsageError,
)
from cosma.graph import Graph, GraphBuilder, Operator, Setting, Tensor, TensorKind, from_networkx
from cosma.memory import (
    MemoryFigures,
    memory_figures,
    min_required,
    must_live_bound,
    schedule_peak,
)

__version__ = "0.1.0"

__all__ = [
    "CosmaError",
    "Graph",
    "GraphBuilder",
    "GraphError",
    "GraphValidationError",
    "MemoryFigures",
    "ModelImportError",
    "Operator",
    "PlanError",
    "Setting",
    "SolverError",
    "Tensor",
    "TensorKind",
    "UnsupportedModelError",
    "UsageError",
    "from_networkx",
    "memory_figures",
    "min_required",
    "must_live_bound",
    "schedule_peak",
]
