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

import itertools
import json
import logging
import math
import os
import random
from collections.abc import Sequence

import networkx as nx

from cosma.errors import ModelImportError, UsageError
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


# Output sizes (bytes) of the random layered graphs. Gagrani et al.'s generator, as far as it
# could be checked, says nothing about them; this mixture is fitted to the 1,350 sizes of
# MOCCASIN's three files (n = 100, 250, 1000; they agree with one another, pairwise KS
# p >= 0.46): with probability 0.225 uniform on [0, 1270], else triangular on [0, 7440]
# with its mode at 0 (density falling linearly), rounded to a multiple of 10, at least 10.
# Its KS distance to the pooled files is 0.034 (exponential 0.051, gamma 0.047, uniform
# [10, 6200] 0.30).
_SIZE_MIX = (0.225, 1270.0, 7440.0)
# A skip edge's target position: its source's position plus up to this share of the width.
_SKIP_SHIFT = 0.2


def _layered_size(rng: random.Random) -> int:
    w, flat, tri = _SIZE_MIX
    x = rng.uniform(0.0, flat) if rng.random() < w else rng.triangular(0.0, tri, 0.0)
    return 10 * max(1, round(x / 10))


def _layer_edges(
    upper: list[int], lower: list[int], density: float, rng: random.Random
) -> list[tuple[int, int]]:
    """Edges from ``upper`` to the next layer ``lower``: round(d·a·b + (1-d)·max(a, b)) of
    them, spread as evenly as possible over the wider layer's nodes (the lower one on a tie;
    which nodes get one more is random), each node joined to a run of consecutive nodes of
    the other layer centred at its proportional position (shifted, not cut, at the ends)."""
    a, b = len(upper), len(lower)
    total = round(density * a * b + (1 - density) * max(a, b))
    wide, narrow = (upper, lower) if a > b else (lower, upper)
    nw, nn = len(wide), len(narrow)
    base, extra = divmod(total, nw)
    more = set(rng.sample(range(nw), extra))
    edges = []
    for i, v in enumerate(wide):
        c = base + (i in more)
        centre = round(i * (nn - 1) / (nw - 1)) if nw > 1 else 0
        start = min(max(centre - (c - 1) // 2, 0), nn - c)
        for u in narrow[start : start + c]:
            edges.append((v, u) if wide is upper else (u, v))
    return edges


def _random_dfs_order(succ: dict[int, list[int]], source: int, rng: random.Random) -> list[int]:
    """Reverse postorder of a depth-first search from ``source`` that visits each node's
    successors in a random order: a topological order that runs down branches before
    finishing layers, like the ``order`` of MOCCASIN's files."""
    post: list[int] = []
    seen = {source}
    first = succ[source][:]
    rng.shuffle(first)
    stack = [(source, first)]
    while stack:
        v, todo = stack[-1]
        while todo and todo[-1] in seen:
            todo.pop()
        if todo:
            w = todo.pop()
            seen.add(w)
            nxt = succ[w][:]
            rng.shuffle(nxt)
            stack.append((w, nxt))
        else:
            post.append(v)
            stack.pop()
    return post[::-1]


def random_layered(
    n: int,
    *,
    width: float = 0.3,
    width_variance: float = 0.75,
    edge_density: float = 0.2,
    skip_density: float = 0.14,
    seed: int = 0,
    name: str | None = None,
    order: str = "dfs",
) -> Graph:
    """A random layered DAG of ``n`` nodes, the kind MOCCASIN benchmarks (its files are named
    ``random_layered_n{n}_w{width}_nlv{width_variance}_ed{edge_density}_scd{skip_density}``).

    The structure follows Gagrani et al. 2022 (Neural Topological Ordering, Appendix A), the
    generator MOCCASIN cites, as a reimplementation that quotes it states it and MOCCASIN's
    three files confirm it (every one of their 93 layer pairs):

    - ``L = ceil(sqrt(n·(1/width - 1)))`` layers on average (``width`` is the width's share
      of width + depth), each layer's width uniform in ``[ceil(m(1-v)), floor(m(1+v))]``,
      ``m = n/L``, ``v = width_variance``, until the ``n - 2`` inner nodes run out; a source
      node ``0`` above them and a target node ``1`` below them are layers of one node;
    - between consecutive layers of widths ``a``, ``b``: ``round(d·a·b + (1-d)·max(a, b))``
      edges, ``d = edge_density``, spread evenly over the wider layer's nodes, each joined to
      a run of neighbouring nodes of the other layer (at its proportional position), so every
      node reads the layer above and is read by the layer below;
    - ``ceil(E·s/(1-s))`` skip edges (``E`` the edges above, ``s = skip_density``; repeats
      merge): from a uniform inner layer to a uniform inner layer at least two below, from
      position ``x`` (uniform) to position ``x + 0.2·U``.

    Not in that description; taken from MOCCASIN's files: output sizes are multiples of 10
    drawn from a skewed distribution fitted to theirs (median ~1,500, mean ~2,000, up to
    7,440); run costs are integers uniform in [1, 1000] (source and target: 0); and the
    graph's order (``order="dfs"``) is a random depth-first topological order, as their
    ``order`` attribute is (``order="layer"``: layer by layer). Deterministic for a seed.

    >>> g = random_layered(100, seed=0)
    >>> g.num_operators, g.outputs, g.is_schedule(g.file_order)
    (100, ['1'], True)
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise UsageError(f"n (the number of nodes) should be an integer, not {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"seed should be an integer (the graph is a function of it), not {seed!r}")
    for label, value in (
        ("width", width),
        ("width_variance", width_variance),
        ("edge_density", edge_density),
        ("skip_density", skip_density),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{label} should be a number, not {value!r}")
    if n < 3:
        raise UsageError("a random layered graph needs at least 3 nodes (a source, a target)")
    if not 0 < width < 1:
        raise UsageError(f"width is the width's share of width + depth, in (0, 1), not {width}")
    if not 0 <= width_variance < 1:
        raise UsageError(f"width_variance should be in [0, 1), not {width_variance}")
    if not 0 <= edge_density <= 1:
        raise UsageError(f"edge_density should be in [0, 1], not {edge_density}")
    if not 0 <= skip_density < 1:
        raise UsageError(f"skip_density should be in [0, 1), not {skip_density}")
    if order not in ("dfs", "layer"):
        raise UsageError(f"order should be 'dfs' or 'layer', not {order!r}")
    rng = random.Random(seed)
    depth = math.ceil(math.sqrt(n * (1 / width - 1)))
    mean = n / depth
    lo = max(1, math.ceil(mean * (1 - width_variance)))
    hi = max(lo, math.floor(mean * (1 + width_variance)))
    inner: list[list[int]] = []
    nxt, left = 2, n - 2
    while left > 0:
        w = min(left, rng.randint(lo, hi))
        inner.append(list(range(nxt, nxt + w)))
        nxt += w
        left -= w
    layers = [[0], *inner, [1]]
    edges: list[tuple[int, int]] = []
    for up, low in itertools.pairwise(layers):
        edges += _layer_edges(up, low, edge_density, rng)
    k = len(inner)
    if k >= 3 and skip_density > 0:
        for _ in range(math.ceil(len(edges) * skip_density / (1 - skip_density))):
            ls = rng.randint(0, k - 3)
            lt = rng.randint(ls + 2, k - 1)
            xs = rng.random()
            xt = min(xs + _SKIP_SHIFT * rng.random(), 0.999)
            src, dst = inner[ls], inner[lt]
            edges.append((src[math.floor(xs * len(src))], dst[math.floor(xt * len(dst))]))
    succ: dict[int, list[int]] = {v: [] for layer in layers for v in layer}
    for u, v in dict.fromkeys(edges):  # repeated skip edges merge
        succ[u].append(v)
    size = {v: _layered_size(rng) for v in range(n)}
    cost = {v: (0 if v < 2 else rng.randint(1, 1000)) for v in range(n)}
    if order == "dfs":
        seq = _random_dfs_order(succ, 0, rng)
    else:
        seq = [v for layer in layers for v in layer]
    default = (width, width_variance, edge_density, skip_density) == (0.3, 0.75, 0.2, 0.14)
    params = "" if default else f"_w{width}_nlv{width_variance}_ed{edge_density}_scd{skip_density}"
    d = nx.DiGraph(name=name or f"random_layered_n{n}{params}_s{seed}")
    for v in seq:
        d.add_node(str(v), size=size[v], cost=cost[v])
    for u in seq:
        for v in succ[u]:
            d.add_edge(str(u), str(v))
    d.nodes["1"]["output"] = True
    return from_networkx(d)
