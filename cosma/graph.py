"""The graph model: operators in a networkx DAG plus a table of tensors.

A :class:`Graph` is immutable once built. It is made by :class:`GraphBuilder` (hand-built
graphs), :func:`from_networkx` (what a compiler pass has) or ``cosma.graphs.load_onnx``.
Every way in ends in the same validation step, which collects *every* problem and raises one
:class:`~cosma.errors.GraphValidationError` listing them all.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

import networkx as nx

from cosma.errors import GraphValidationError, UsageError
from cosma.options import MAX_BYTES


class TensorKind(str, Enum):
    """What a tensor is (SPEC §1)."""

    ACTIVATION = "activation"  #: produced by an operator, not returned
    INPUT = "input"  #: fed from outside; host holds it from the start
    PARAMETER = "parameter"  #: a weight or a constant folded from weights
    OUTPUT = "output"  #: produced by an operator and returned by the model

    def __str__(self) -> str:
        return self.value


class Setting(str, Enum):
    """Which tensors occupy the scratchpad (SPEC §5)."""

    ACTIVATIONS = "activations"  #: parameters are streamed, not tracked
    ACTIVATIONS_PARAMETERS = "activations+parameters"  #: parameters are tracked too

    def __str__(self) -> str:
        return self.value

    def tracks(self, tensor: Tensor) -> bool:
        """Whether ``tensor`` occupies the scratchpad under this setting."""
        return tensor.kind is not TensorKind.PARAMETER or self is Setting.ACTIVATIONS_PARAMETERS

    @classmethod
    def parse(cls, text: str | Setting) -> Setting:
        """Read a setting name; ``params``/``p`` are accepted for the second one."""
        if isinstance(text, Setting):
            return text
        aliases = {
            "activations": cls.ACTIVATIONS,
            "a": cls.ACTIVATIONS,
            "activations+parameters": cls.ACTIVATIONS_PARAMETERS,
            "parameters": cls.ACTIVATIONS_PARAMETERS,
            "params": cls.ACTIVATIONS_PARAMETERS,
            "p": cls.ACTIVATIONS_PARAMETERS,
        }
        try:
            return aliases[str(text).strip().lower()]
        except KeyError:
            raise UsageError(
                f"unknown setting {text!r}: use 'activations' or 'activations+parameters'"
            ) from None


@dataclass(frozen=True)
class Tensor:
    """A tensor: its size in bytes, its kind, who produces and who consumes it."""

    name: str
    size: int
    kind: TensorKind
    producer: str | None
    consumers: tuple[str, ...]
    shape: tuple[int, ...] | None = None
    dtype: str | None = None


@dataclass(frozen=True)
class Operator:
    """An operator: the distinct tensors it reads and the tensors it writes."""

    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)


class Graph:
    """A DNN as a DAG of operators plus a table of tensors.

    Build one with :class:`GraphBuilder`, :func:`from_networkx` or
    ``cosma.graphs.load_onnx``; the constructor is the low-level way in and validates.

    The order operators are given in is kept as the *file order* (the ONNX node order, or
    insertion order for hand-built graphs), a valid schedule used by baselines.

    >>> g = GraphBuilder("toy").input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> g.num_operators, g.tensors["y"].kind.value
    (1, 'output')
    """

    def __init__(
        self,
        name: str,
        operators: Sequence[Operator],
        sizes: Mapping[str, int],
        *,
        inputs: Iterable[str] = (),
        parameters: Iterable[str] = (),
        outputs: Iterable[str] = (),
        shapes: Mapping[str, tuple[int, ...]] | None = None,
        dtypes: Mapping[str, str] | None = None,
    ):
        self.name = str(name)
        problems: list[str] = []
        shapes = shapes or {}
        dtypes = dtypes or {}
        inputs = list(dict.fromkeys(inputs))
        parameters = list(dict.fromkeys(parameters))
        outputs = list(dict.fromkeys(outputs))

        ops: dict[str, Operator] = {}
        for op in operators:
            if op.name in ops:
                problems.append(
                    f"two operators are named {op.name!r}: operator names must be unique"
                )
                continue
            if len(set(op.outputs)) != len(op.outputs):
                problems.append(f"operator {op.name!r} lists an output twice: {list(op.outputs)}")
            ops[op.name] = Operator(
                op.name,
                op.op_type,
                tuple(dict.fromkeys(op.inputs)),
                tuple(dict.fromkeys(op.outputs)),
                op.attributes,
            )

        producer: dict[str, str] = {}
        for op in ops.values():
            for t in op.outputs:
                if t in producer:
                    problems.append(
                        f"tensor {t!r} has two producers, {producer[t]!r} and {op.name!r}: "
                        "a tensor is written by one operator only (rename one of them)"
                    )
                else:
                    producer[t] = op.name
        declared = {t: TensorKind.INPUT for t in inputs}
        for t in parameters:
            if t in declared:
                problems.append(f"tensor {t!r} is declared both a graph input and a parameter")
            declared[t] = TensorKind.PARAMETER
        for t, kind in declared.items():
            if t in producer:
                problems.append(
                    f"tensor {t!r} is declared a graph {kind.value} but operator "
                    f"{producer[t]!r} produces it: a graph {kind.value} has no producer"
                )

        consumers: dict[str, list[str]] = {}
        for op in ops.values():
            for t in op.inputs:
                if t not in producer and t not in declared:
                    problems.append(
                        f"operator {op.name!r} reads tensor {t!r}, which no operator produces "
                        "and which is not a graph input or parameter: declare it "
                        "(builder.input / builder.parameter) or fix the name"
                    )
                consumers.setdefault(t, []).append(op.name)

        for t in outputs:
            if t not in producer:
                if t in declared:
                    problems.append(
                        f"graph output {t!r} is a graph {declared[t].value}: an output must "
                        "be produced by an operator"
                    )
                else:
                    problems.append(f"graph output {t!r} is not produced by any operator")

        # Tensors that nothing consumes and that are not outputs are dropped (SPEC §1);
        # unused graph inputs and parameters likewise.
        output_set = set(outputs)
        used = set(consumers) | output_set
        tensors: dict[str, Tensor] = {}
        for t in list(producer) + [t for t in declared if t in consumers]:
            if t not in used or t in tensors:
                continue
            size = sizes.get(t)
            if size is None:
                problems.append(f"tensor {t!r} has no size: give its size in bytes")
                continue
            if isinstance(size, bool) or not isinstance(size, numbers.Integral):
                if isinstance(size, float) and size.is_integer():
                    size = int(size)
                else:
                    problems.append(f"tensor {t!r} has size {size!r}: sizes are whole bytes")
                    continue
            size = int(size)  # numpy integers become Python ints
            if size < 0:
                problems.append(f"tensor {t!r} has negative size {size}")
                continue
            if size > MAX_BYTES:
                problems.append(
                    f"tensor {t!r} has size {size:,} B, above cosma's limit of 2^53 B: "
                    "check the units (bytes, not bits or elements)"
                )
                continue
            if t in producer:
                kind = TensorKind.OUTPUT if t in output_set else TensorKind.ACTIVATION
            else:
                kind = declared[t]
            tensors[t] = Tensor(
                name=t,
                size=size,
                kind=kind,
                producer=producer.get(t),
                consumers=tuple(consumers.get(t, ())),
                shape=tuple(shapes[t]) if t in shapes else None,
                dtype=dtypes.get(t),
            )

        dag = nx.DiGraph(name=self.name)
        for op in ops.values():
            dag.add_node(op.name, op_type=op.op_type)
        for t, tensor in tensors.items():
            if tensor.producer is None:
                continue
            for c in tensor.consumers:
                if dag.has_edge(tensor.producer, c):
                    dag.edges[tensor.producer, c]["tensors"].append(t)
                else:
                    dag.add_edge(tensor.producer, c, tensors=[t])
        if not nx.is_directed_acyclic_graph(dag):
            cycle = nx.find_cycle(dag)
            path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
            problems.append(f"the operators form a cycle: {path}")
        if not ops:
            problems.append("the graph has no operators")

        if problems:
            raise GraphValidationError(self.name, problems)

        # Operators keep only the tensors that survived (dropped unconsumed outputs).
        self._operators = {
            n: Operator(
                n,
                op.op_type,
                op.inputs,
                tuple(t for t in op.outputs if t in tensors),
                op.attributes,
            )
            for n, op in ops.items()
        }
        self._tensors = tensors
        self._dag = nx.freeze(dag)
        self._file_order = tuple(self._operators)
        self._index = {n: i for i, n in enumerate(self._file_order)}

    # --- read access -------------------------------------------------------------------

    @property
    def operators(self) -> Mapping[str, Operator]:
        """Operators by name, in file order."""
        return MappingProxyType(self._operators)

    @property
    def tensors(self) -> Mapping[str, Tensor]:
        """Tensors by name (every tensor some operator reads or writes)."""
        return MappingProxyType(self._tensors)

    @property
    def dag(self) -> nx.DiGraph:
        """The operator DAG (frozen). Edge ``u -> v`` carries ``tensors``: what v reads of u."""
        return self._dag

    @property
    def file_order(self) -> tuple[str, ...]:
        """The operators in the order they were given (a topological order is not implied)."""
        return self._file_order

    @property
    def num_operators(self) -> int:
        return len(self._operators)

    def tensors_of_kind(self, kind: TensorKind) -> list[str]:
        """Names of the tensors of one kind, in a stable order."""
        return [t for t, tensor in self._tensors.items() if tensor.kind is kind]

    @property
    def inputs(self) -> list[str]:
        return self.tensors_of_kind(TensorKind.INPUT)

    @property
    def parameters(self) -> list[str]:
        return self.tensors_of_kind(TensorKind.PARAMETER)

    @property
    def outputs(self) -> list[str]:
        return self.tensors_of_kind(TensorKind.OUTPUT)

    def position(self, operator: str) -> int:
        """Index of ``operator`` in the file order."""
        return self._index[operator]

    def tracked(self, setting: Setting | str = Setting.ACTIVATIONS) -> list[str]:
        """Names of the tensors that occupy the scratchpad under ``setting``."""
        setting = Setting.parse(setting)
        return [t for t, tensor in self._tensors.items() if setting.tracks(tensor)]

    def operands(self, operator: str, setting: Setting | str = Setting.ACTIVATIONS) -> list[str]:
        """Distinct tracked inputs and outputs of ``operator`` (what must be resident)."""
        setting = Setting.parse(setting)
        op = self._operators[operator]
        return [
            t for t in dict.fromkeys(op.inputs + op.outputs) if setting.tracks(self._tensors[t])
        ]

    def topological_order(self) -> list[str]:
        """A topological order, the file order wherever it is one, ties broken by file order."""
        return list(nx.lexicographical_topological_sort(self._dag, key=self._index.__getitem__))

    def is_schedule(self, order: Sequence[str]) -> bool:
        """Whether ``order`` lists every operator once, in an order the edges allow."""
        if len(order) != len(self._operators) or set(order) != set(self._operators):
            return False
        pos = {n: i for i, n in enumerate(order)}
        return all(pos[u] < pos[v] for u, v in self._dag.edges)

    def identity(self) -> str:
        """A hash of the graph's structure and sizes (not of names' order or shapes).

        Two graphs with the same operators, tensors, kinds, sizes and edges have the same
        identity; plans carry it so a plan is only replayed on its own graph.
        """
        canon = {
            "operators": sorted(
                [n, op.op_type, sorted(op.inputs), sorted(op.outputs)]
                for n, op in self._operators.items()
            ),
            "tensors": sorted([n, t.size, t.kind.value] for n, t in self._tensors.items()),
        }
        blob = json.dumps(canon, separators=(",", ":"), sort_keys=True).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()[:32]

    def to_networkx(self) -> nx.DiGraph:
        """A mutable networkx copy in the format :func:`from_networkx` reads."""
        g = nx.DiGraph(name=self.name)
        for n, op in self._operators.items():
            g.add_node(
                n,
                op_type=op.op_type,
                outputs={t: self._tensors[t].size for t in op.outputs},
                inputs={
                    t: self._tensors[t].size
                    for t in op.inputs
                    if self._tensors[t].kind is TensorKind.INPUT
                },
                parameters={
                    t: self._tensors[t].size
                    for t in op.inputs
                    if self._tensors[t].kind is TensorKind.PARAMETER
                },
                **{k: op.attributes[k] for k in ("cost", "phase") if k in op.attributes},
            )
        for u, v, data in self._dag.edges(data=True):
            g.add_edge(u, v, tensors=list(data["tensors"]))
        g.graph["outputs"] = self.outputs
        return g

    def __repr__(self) -> str:
        return (
            f"Graph({self.name!r}, operators={len(self._operators)}, tensors={len(self._tensors)})"
        )


class GraphBuilder:
    """Build a :class:`Graph` by hand, one call per tensor or operator; calls chain.

    >>> b = GraphBuilder("diamond").input("x", 10)
    >>> b = b.op("a", ["x"], {"ya": 20}).op("b", ["x"], {"yb": 30})
    >>> g = b.op("c", ["ya", "yb"], {"z": 5}).output("z").build()
    >>> [g.tensors[t].size for t in ("x", "ya", "yb", "z")]
    [10, 20, 30, 5]
    """

    def __init__(self, name: str = "graph"):
        self.name = name
        self._ops: list[Operator] = []
        self._sizes: dict[str, int] = {}
        self._inputs: list[str] = []
        self._params: list[str] = []
        self._outputs: list[str] = []
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._problems: list[str] = []

    def _size(self, tensor: str, size: int) -> None:
        if tensor in self._sizes and self._sizes[tensor] != size:
            self._problems.append(
                f"tensor {tensor!r} is given two sizes, {self._sizes[tensor]} and {size}"
            )
        self._sizes[tensor] = size

    def input(self, name: str, size: int, shape: Sequence[int] | None = None) -> GraphBuilder:
        """Declare a graph input of ``size`` bytes."""
        self._size(name, size)
        self._inputs.append(name)
        if shape is not None:
            self._shapes[name] = tuple(shape)
        return self

    def parameter(self, name: str, size: int, shape: Sequence[int] | None = None) -> GraphBuilder:
        """Declare a parameter (weight) of ``size`` bytes."""
        self._size(name, size)
        self._params.append(name)
        if shape is not None:
            self._shapes[name] = tuple(shape)
        return self

    def op(
        self,
        name: str,
        inputs: Sequence[str],
        outputs: Mapping[str, int] | Sequence[str],
        op_type: str = "Op",
        shapes: Mapping[str, Sequence[int]] | None = None,
    ) -> GraphBuilder:
        """Add operator ``name`` reading ``inputs`` and writing ``outputs``.

        ``outputs`` maps each new tensor to its size in bytes (a plain list of names is
        allowed when the sizes are given elsewhere, e.g. by :meth:`size`).
        """
        if isinstance(outputs, Mapping):
            for t, s in outputs.items():
                self._size(t, s)
            names = tuple(outputs)
        else:
            names = tuple(outputs)
        for t, shp in (shapes or {}).items():
            self._shapes[t] = tuple(shp)
        self._ops.append(Operator(name, op_type, tuple(inputs), names))
        return self

    def size(self, tensor: str, size: int) -> GraphBuilder:
        """Set the size of ``tensor`` in bytes."""
        self._size(tensor, size)
        return self

    def output(self, *names: str) -> GraphBuilder:
        """Mark tensors as graph outputs."""
        self._outputs.extend(names)
        return self

    def build(self) -> Graph:
        """Validate and return the graph (raises GraphValidationError listing every problem)."""
        return _validated(
            self.name,
            self._problems,
            lambda: Graph(
                self.name,
                self._ops,
                self._sizes,
                inputs=self._inputs,
                parameters=self._params,
                outputs=self._outputs,
                shapes=self._shapes,
            ),
        )

    def __repr__(self) -> str:
        return f"GraphBuilder({self.name!r}, operators={len(self._ops)})"


def from_networkx(dag: nx.DiGraph, *, name: str | None = None) -> Graph:
    """Convert a plain networkx DiGraph whose nodes are operators (what a compiler pass has).

    Node attributes (all optional but a size):

    - ``size``: bytes of the node's single output, a tensor named after the node; or
      ``outputs``: ``{tensor: bytes}`` for several outputs;
    - ``op_type``: the operator type (default ``"Op"``);
    - ``inputs``: ``{tensor: bytes}`` graph inputs the node reads;
    - ``parameters``: ``{tensor: bytes}`` parameters the node reads (shared by name);
    - ``output``: ``True`` to mark every output of the node a graph output;
    - ``cost``: the node's compute cost (e.g. MACs), overriding :mod:`cosma.cost`'s estimate;
      ``phase``: ``forward`` or ``backward`` in a training graph (kept as attributes).

    Edge ``u -> v`` means v reads u's outputs; an edge attribute ``tensors`` (a list) names
    which ones when u has several. Graph attribute ``outputs`` lists graph outputs by tensor
    name. If no output is marked anywhere, the outputs of the sink nodes are graph outputs.
    Node order (``dag.nodes``) becomes the file order. The input is not modified.

    >>> d = nx.DiGraph()
    >>> d.add_node("a", size=100, inputs={"x": 50}); d.add_node("b", size=10)
    >>> d.add_edge("a", "b")
    >>> g = from_networkx(d)
    >>> g.tensors["b"].kind.value, g.tensors["a"].consumers
    ('output', ('b',))
    """
    if not isinstance(dag, nx.DiGraph) or isinstance(dag, nx.MultiDiGraph):
        kind = type(dag).__name__ if dag is not None else "None"
        hint = {
            "Graph": "an undirected graph has no dataflow direction: build an nx.DiGraph "
            "(or call .to_directed() only if every edge should go both ways, which is a cycle)",
            "MultiGraph": "build an nx.DiGraph with one edge per operator pair",
            "MultiDiGraph": "build an nx.DiGraph with one edge per operator pair and list "
            "the tensors it carries in the edge attribute 'tensors' "
            "(nx.DiGraph(multi) merges parallel edges)",
        }.get(kind, "pass an nx.DiGraph whose nodes are operators")
        raise GraphValidationError(
            str(name or "graph"), [f"expected an nx.DiGraph, got {kind}: {hint}"]
        )
    problems: list[str] = []
    gname = name or dag.graph.get("name") or "graph"
    sizes: dict[str, int] = {}
    inputs: list[str] = []
    params: list[str] = []
    node_outputs: dict[object, dict[str, int]] = {}
    node_reads: dict[object, list[str]] = {}

    def table(n: object, data: Mapping, key: str) -> dict[str, object]:
        """A node's ``{tensor: bytes}`` attribute, names as strings; a problem if malformed."""
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            problems.append(
                f"node {n!r}: attribute {key!r} should be a dict {{tensor: bytes}}, "
                f"not {type(value).__name__}"
            )
            return {}
        return {str(t): s for t, s in value.items()}

    raw_outputs = dag.graph.get("outputs", [])
    if isinstance(raw_outputs, (str, bytes)) or not isinstance(raw_outputs, Iterable):
        problems.append("graph attribute 'outputs' should be a list of tensor names")
        raw_outputs = []
    outputs: list[str] = [str(t) for t in raw_outputs]

    def put(t: str, s: object) -> None:
        if t in sizes and sizes[t] != s:
            problems.append(f"tensor {t!r} is given two sizes, {sizes[t]} and {s}")
        sizes[t] = s  # type: ignore[assignment]

    for n, data in dag.nodes(data=True):
        if "outputs" in data:
            outs = table(n, data, "outputs")
        elif "size" in data:
            outs = {str(n): data["size"]}
        else:
            problems.append(
                f"node {n!r} has neither 'size' nor 'outputs': give the bytes it writes"
            )
            outs = {}
        node_outputs[n] = outs
        for t, s in outs.items():
            put(t, s)
        node_reads[n] = []
        for t, s in table(n, data, "inputs").items():
            put(t, s)
            inputs.append(t)
            node_reads[n].append(t)
        for t, s in table(n, data, "parameters").items():
            put(t, s)
            params.append(t)
            node_reads[n].append(t)
        if data.get("output"):
            outputs.extend(outs)

    ops = []
    for n, data in dag.nodes(data=True):
        reads: list[str] = []
        for u in dag.predecessors(n):
            listed = dag.edges[u, n].get("tensors")
            if listed is not None and (
                isinstance(listed, (str, bytes)) or not isinstance(listed, Iterable)
            ):
                problems.append(
                    f"edge {u!r} -> {n!r}: attribute 'tensors' should be a list of tensor names"
                )
                listed = None
            if listed is None:
                reads.extend(node_outputs.get(u, {}))
            else:
                listed = [str(t) for t in listed]
                for t in listed:
                    if t not in node_outputs.get(u, {}):
                        problems.append(
                            f"edge {u!r} -> {n!r} names tensor {t!r}, which {u!r} does not write"
                        )
                reads.extend(listed)
        reads.extend(node_reads[n])
        # ``cost`` (compute cost, e.g. MACs) overrides cosma.cost's estimate; ``phase``
        # (forward/backward) guides the rematerialization baselines.
        attrs = {k: data[k] for k in ("cost", "phase") if data.get(k) is not None}
        if "cost" in attrs and not _is_cost(attrs["cost"]):
            problems.append(
                f"node {n!r}: attribute 'cost' should be a number of at least 0 (its compute "
                f"cost, e.g. MACs), not {attrs['cost']!r}; leave it out to estimate it from shapes"
            )
        ops.append(
            Operator(
                str(n),
                str(data.get("op_type", "Op")),
                tuple(reads),
                tuple(node_outputs[n]),
                attrs,
            )
        )

    if not outputs:
        for n in dag.nodes:
            if dag.out_degree(n) == 0:
                outputs.extend(node_outputs[n])
    return _validated(
        gname,
        problems,
        lambda: Graph(gname, ops, sizes, inputs=inputs, parameters=params, outputs=outputs),
    )


def _is_cost(value: object) -> bool:
    """A usable compute cost: a finite real number >= 0 (not a bool, not a string)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return math.isfinite(float(value)) and value >= 0


def _validated(name: str, problems: list[str], make: Callable[[], Graph]) -> Graph:
    """Build with ``make``; raise one error listing ``problems`` and the graph's own."""
    try:
        graph = make()
    except GraphValidationError as e:
        raise GraphValidationError(name, problems + e.problems) from None
    if problems:
        raise GraphValidationError(name, problems)
    return graph
