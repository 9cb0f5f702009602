"""Rematerialization graphs in the anchors' format, and random layered graphs.

Checkmate (Jain et al. 2020) and MOCCASIN (Bartan et al. 2023) ship their benchmark graphs
as networkx node-link JSON: one node per operator, whose single output has ``cost_ram``
bytes and whose run costs ``cost_cpu`` (the random layered graphs say ``out_cost`` and
``duration``), edges from producer to consumer (keys ``source``/``target``, or ``"0"``/``"1"``),
and optionally the graph attribute ``order`` (the schedule the benchmark uses; without it,
the nodes in id order). :func:`load_nodelink` reads such a file from a path the user gives
(MOCCASIN's graphs are GPL-licensed: cosma ships none of them); :func:`save_nodelink` writes
one; :func:`random_layered` makes graphs of the kind MOCCASIN benchmarks, so large cases
need none of their data.

Memory accounting: the anchors count, while node ``v`` runs, ``v``'s output plus every
earlier output still to be read at or after ``v`` — exactly SPEC §3's "inputs, outputs and
what is kept" once every node's output is a tensor and nodes that nobody reads are graph
outputs (resident only while they run). So their optima are comparable like for like; no
separate accounting option is needed.

>>> g = random_layered(30, seed=1)
>>> g.num_operators, g.outputs
(30, ['1'])
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections.abc import Sequence

import networkx as nx

from cosma.errors import ModelImportError
from cosma.graph import Graph, _is_cost, from_networkx

log = logging.getLogger(__name__)

_SIZE_KEYS = ("cost_ram", "out_cost", "size")
_COST_KEYS = ("cost_cpu", "duration", "cost")


def _first(d: dict, keys: Sequence[str]) -> object:
    for k in keys:
        if k in d:
            return d[k]
    return None


def graph_from_nodelink(doc: dict, *, name: str | None = None) -> Graph:
    """A :class:`~cosma.graph.Graph` from a node-link document (see the module doc); the
    operators come in the document's order (``graph.order``, else node ids in order)."""
    if isinstance(doc, dict) and "schema_version" in doc and "steps" in doc:
        raise ModelImportError(
            "this JSON is a cosma plan, not a graph: give the model it was made for (the "
            "plan's 'source'), e.g. cosma replay MODEL PLAN.json"
        )
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise ModelImportError(
            "not a node-link graph: the JSON has no 'nodes' list (a .json model is read as "
            "a Checkmate/MOCCASIN node-link graph: nodes with cost_ram or out_cost, links)"
        )
    meta = _graph_attributes(doc.get("graph"))
    gname = name or str(meta.get("name") or "graph")
    nodes = doc["nodes"]
    links = doc.get("links", doc.get("edges", []))
    if not isinstance(links, list) or not all(isinstance(x, dict) for x in links):
        raise ModelImportError(
            f"{gname}: 'links' should be a list of objects such as "
            '{"source": 0, "target": 1} (or MOCCASIN\'s {"0": 0, "1": 1})'
        )
    problems: list[str] = []
    ids: list[object] = []
    d = nx.DiGraph(name=gname)
    data: dict[object, dict] = {}
    seen: set[str] = set()
    for k, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise ModelImportError(f"node #{k} of the node-link graph is not an object")
        nid = node.get("id", node.get("name", k))
        if isinstance(nid, bool) or not isinstance(nid, (int, str)):
            raise ModelImportError(
                f"{gname}: node #{k} has id {nid!r}: node ids are whole numbers or strings"
            )
        if str(nid) in seen:
            raise ModelImportError(f"{gname}: two nodes have the id {nid!r}: ids must be unique")
        seen.add(str(nid))
        size, cost = _first(node, _SIZE_KEYS), _first(node, _COST_KEYS)
        if size is None:
            problems.append(f"node {nid!r} has no output size ({' or '.join(_SIZE_KEYS)})")
            continue
        if cost is not None and not _is_cost(cost):
            key = next(k for k in _COST_KEYS if k in node)
            problems.append(f"node {nid!r}: {key!r} should be a number of at least 0, not {cost!r}")
            continue
        ids.append(nid)
        data[nid] = {"size": size, "cost": cost if cost is not None else 1}
        label = node.get("name", nid)
        data[nid]["label"] = str(label)
        back = node.get("backward", node.get("is_backward"))
        if back is not None:
            data[nid]["phase"] = "backward" if back else "forward"
    if problems:
        raise ModelImportError(f"{gname}: " + "; ".join(problems[:5]))
    if "order" in meta:
        if not isinstance(meta["order"], list):
            raise ModelImportError(f"{gname}: graph attribute 'order' should be a list of node ids")
        order = list(meta["order"])
        if sorted(map(str, order)) != sorted(map(str, ids)):
            raise ModelImportError(
                f"{gname}: graph attribute 'order' does not list every node exactly once"
            )
        by_str = {str(i): i for i in ids}
        order = [by_str[str(v)] for v in order]
    elif all(isinstance(i, int) for i in ids):
        order = sorted(ids)  # type: ignore[type-var]
    else:
        order = ids
    # Operator names: the node's name when unique, else its id.
    labels = [data[i]["label"] for i in ids]
    unique = len(set(labels)) == len(labels)
    opname = {i: (data[i]["label"] if unique else str(i)) for i in ids}
    for i in order:
        attrs = {"size": data[i]["size"], "cost": data[i]["cost"]}
        if "phase" in data[i]:
            attrs["phase"] = data[i]["phase"]
        d.add_node(opname[i], **attrs)
    known = set(ids)
    for k, link in enumerate(links):
        s = link.get("source", link.get("0"))
        t = link.get("target", link.get("1"))
        if not all(
            isinstance(x, (int, str)) and not isinstance(x, bool) and x in known for x in (s, t)
        ):
            raise ModelImportError(f"{gname}: edge #{k} joins unknown nodes {s!r} -> {t!r}")
        d.add_edge(opname[s], opname[t])
    if not nx.is_directed_acyclic_graph(d):
        raise ModelImportError(f"{gname}: the graph has a cycle")
    pos = {opname[i]: k for k, i in enumerate(order)}
    if any(pos[u] > pos[v] for u, v in d.edges):
        # not a schedule: keep the document's order where the edges allow
        order_names = list(nx.lexicographical_topological_sort(d, key=pos.__getitem__))
        d = _reordered(d, order_names)
    for v in d.nodes:
        if d.out_degree(v) == 0:
            d.nodes[v]["output"] = True
    return from_networkx(d, name=gname)


def _graph_attributes(meta: object) -> dict:
    """The ``graph`` object of a node-link document (old networkx wrote a list of
    ``[key, value]`` pairs)."""
    if meta is None:
        return {}
    if isinstance(meta, dict):
        return meta
    if isinstance(meta, list) and all(isinstance(p, list) and len(p) == 2 for p in meta):
        return {str(k): v for k, v in meta}
    raise ModelImportError(
        f"not a node-link graph: 'graph' should be an object of graph attributes, not {meta!r}"
    )


def _reordered(d: nx.DiGraph, order: list[str]) -> nx.DiGraph:
    e = nx.DiGraph(**d.graph)
    for v in order:
        e.add_node(v, **d.nodes[v])
    e.add_edges_from(d.edges(data=True))
    return e


def load_nodelink(path: str | os.PathLike, *, name: str | None = None) -> Graph:
    """Read a Checkmate/MOCCASIN node-link JSON file (see the module doc)."""
    try:
        with open(path) as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise ModelImportError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ModelImportError(f"{path}: not a readable JSON file ({e})") from None
    return graph_from_nodelink(doc, name=name)


def to_nodelink(graph: Graph) -> dict:
    """A node-link document of a graph whose operators each write one tensor someone reads
    or a graph output (what the anchors' format can say): ``cost_ram``, ``cost_cpu``,
    ``graph.order`` = the file order. Anything else (an operator with several outputs,
    graph inputs and parameters, which the format has no place for) is merged or left out,
    with a warning: the file then describes a different problem."""
    from cosma.cost import operator_cost

    multi = [v for v in graph.file_order if len(graph.operators[v].outputs) > 1]
    outside = [*graph.inputs, *graph.parameters]
    if multi or outside:
        log.warning(
            "%s: the node-link format has one output per node and no graph inputs: %d "
            "operators' outputs are merged (e.g. %s) and %d inputs/parameters left out; "
            "the file describes a different problem than the graph",
            graph.name,
            len(multi),
            multi[0] if multi else "-",
            len(outside),
        )
    ids = {v: k for k, v in enumerate(graph.file_order)}
    nodes = []
    for v in graph.file_order:
        op = graph.operators[v]
        size = sum(graph.tensors[t].size for t in op.outputs)
        nodes.append(
            {"id": ids[v], "name": v, "cost_ram": size, "cost_cpu": operator_cost(graph, v)}
        )
    links = [{"source": ids[u], "target": ids[w]} for u, w in graph.dag.edges]
    return {
        "directed": True,
        "multigraph": False,
        "graph": {"name": graph.name, "order": list(range(len(ids)))},
        "nodes": nodes,
        "links": links,
    }


def save_nodelink(graph: Graph, path: str | os.PathLike) -> None:
    """Write :func:`to_nodelink` of ``graph`` to ``path``."""
    with open(path, "w") as f:
        json.dump(to_nodelink(graph), f)


def random_layered(
    n: int,
    *,
    width: float = 0.3,
    width_variance: float = 0.75,
    edge_density: float = 0.2,
    skip_density: float = 0.14,
    seed: int = 0,
    name: str | None = None,
) -> Graph:
    """A random layered DAG of ``n`` nodes like MOCCASIN's benchmark graphs.

    A source node ``0`` feeds the first layer and every node nobody reads feeds a target node
    ``1`` (both cost 0). Between them, layers of on average ``2·width·√n`` nodes (each layer's
    width drawn uniformly within ``±width_variance`` of that); a node reads each node of the
    layer above with probability ``edge_density`` (at least one), and with probability
    ``skip_density`` also one random node of an earlier layer (a skip connection); a node
    nobody in the next layer reads gets one reader there. Output
    sizes are multiples of 10 in [10, 6200] and run costs integers in [1, 1000], uniform.
    The order is the layer order. Deterministic for a seed.

    >>> g = random_layered(100, seed=0)
    >>> g.num_operators, len(g.dag.edges) > 99
    (100, True)
    """
    if n < 3:
        raise ValueError("a random layered graph needs at least 3 nodes")
    rng = random.Random(seed)
    mean = max(1.0, 2 * width * math.sqrt(n))
    layers: list[list[int]] = []
    nxt, inner = 2, n - 2
    while inner > 0:
        lo = max(1, round(mean * (1 - width_variance)))
        hi = max(lo, round(mean * (1 + width_variance)))
        w = min(inner, rng.randint(lo, hi))
        layers.append(list(range(nxt, nxt + w)))
        nxt += w
        inner -= w
    d = nx.DiGraph(name=name or f"random_layered_n{n}_s{seed}")
    d.add_node("0", size=10 * rng.randint(1, 620), cost=0)
    for layer in layers:
        for v in layer:
            d.add_node(str(v), size=10 * rng.randint(1, 620), cost=rng.randint(1, 1000))
    for k, layer in enumerate(layers):
        for v in layer:
            if k == 0:
                d.add_edge("0", str(v))
                continue
            above = layers[k - 1]
            parents = [u for u in above if rng.random() < edge_density] or [rng.choice(above)]
            for u in parents:
                d.add_edge(str(u), str(v))
            if k >= 2 and rng.random() < skip_density:
                u = rng.choice(layers[rng.randrange(0, k - 1)])
                d.add_edge(str(u), str(v))
        # every node above the last layer is read by someone in the next layer
        if k > 0:
            for u in layers[k - 1]:
                if d.out_degree(str(u)) == 0:
                    d.add_edge(str(u), str(rng.choice(layer)))
    d.add_node("1", size=10 * rng.randint(1, 620), cost=0)
    for v in list(d.nodes):
        if v != "1" and d.out_degree(v) == 0:
            d.add_edge(v, "1")
    d.nodes["1"]["output"] = True
    return from_networkx(d)
