"""cosma: operator scheduling, scratchpad allocation and tensor replacement for DNN
accelerators, with proofs of how close to optimal the answer is.

>>> import cosma
>>> g = cosma.GraphBuilder("toy").input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
>>> cosma.memory_figures(g).m_r
12
>>> p = cosma.plan(g, "M_R")
>>> p.status.value, p.objective, p.stats["auto"]["method"]
('optimal', 0, 'milp')

``cosma.plan``, ``cosma.budgets`` and ``cosma.sweep`` are the library's front door
(:mod:`cosma.api`). Note that ``cosma.plan`` is that function: the plan model is imported as
``from cosma.plan import Plan``.
"""

from cosma.api import budgets, load_model, pick_method, plan, sweep
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
from cosma.plan import Plan, Status
from cosma.problem import Budgets, Problem
from cosma.progress import Progress

__version__ = "0.1.0"

__all__ = [
    "Budgets",
    "CosmaError",
    "Graph",
    "GraphBuilder",
    "GraphError",
    "GraphValidationError",
    "MemoryFigures",
    "ModelImportError",
    "Operator",
    "Plan",
    "PlanError",
    "Problem",
    "Progress",
    "Setting",
    "SolverError",
    "Status",
    "Tensor",
    "TensorKind",
    "UnsupportedModelError",
    "UsageError",
    "budgets",
    "from_networkx",
    "load_model",
    "memory_figures",
    "min_required",
    "must_live_bound",
    "pick_method",
    "plan",
    "schedule_peak",
    "sweep",
]
