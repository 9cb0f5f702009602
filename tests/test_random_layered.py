"""The random layered graphs against the rules of Gagrani et al.'s generator (the one MOCCASIN
cites; see graphs/nodelink.py): layer widths, edges between consecutive layers, skip edges,
and the size/cost distributions taken from MOCCASIN's files. Every expected value is derived
here from those rules, by hand or by a formula written out, never read off an output."""

from __future__ import annotations

import math
from collections import Counter

import networkx as nx
import pytest

from cosma.cost import operator_cost
from cosma.errors import UsageError
from cosma.graphs.nodelink import random_layered


def _layers(g) -> dict[str, int]:
    """Each operator's layer, as its longest path from the source: every node reads a node of
    the layer just above and skip edges go two layers down or more, so this is the
    generator's layer (the source is layer 0)."""
    depth: dict[str, int] = {}
    for v in nx.topological_sort(g.dag):
        depth[v] = max((depth[u] + 1 for u in g.dag.predecessors(v)), default=0)
    return depth


def _size(g, v: str) -> int:
    return sum(g.tensors[t].size for t in g.operators[v].outputs)


def test_a_small_case_by_hand():
    # n = 12, width 0.5, no width variance: L = ceil(sqrt(12 (1/0.5 - 1))) = ceil(3.46) = 4
    # layers of n/L = 3 nodes, so the 10 inner nodes make layers 3, 3, 3 and the 1 left:
    # [0] [2 3 4] [5 6 7] [8 9 10] [11] [1]. Edges (d = 0.2):
    #   1 -> 3: round(0.2*3 + 0.8*3) = 3: the source to each of 2, 3, 4;
    #   3 -> 3: round(0.2*9 + 0.8*3) = round(4.2) = 4: on a tie the lower layer spreads them,
    #     one each (each at its own position: 2->5, 3->6, 4->7) and one of them a second, the
    #     run of 2 centred at its position, shifted inside the layer: 5 takes 2,3 (3->5),
    #     6 takes 3,4 (4->6), 7 takes 3,4 (3->7);
    #   3 -> 1: round(0.6 + 2.4) = 3: 8, 9, 10 -> 11;  1 -> 1: 11 -> 1.  15 edges in all.
    g = random_layered(12, width=0.5, width_variance=0, skip_density=0, seed=4, order="layer")
    e = set(g.dag.edges)
    straight = {("0", "2"), ("0", "3"), ("0", "4"), ("2", "5"), ("3", "6"), ("4", "7")}
    straight |= {("5", "8"), ("6", "9"), ("7", "10"), ("8", "11"), ("9", "11"), ("10", "11")}
    straight |= {("11", "1")}
    assert straight <= e and len(e) == 15
    assert len(e & {("3", "5"), ("4", "6"), ("3", "7")}) == 1
    assert len(e & {("6", "8"), ("7", "9"), ("6", "10")}) == 1
    assert list(g.file_order) == ["0", *map(str, range(2, 12)), "1"]
    assert g.outputs == ["1"]
    assert operator_cost(g, "0") == operator_cost(g, "1") == 0


@pytest.mark.parametrize(
    ("n", "width", "seed"), [(100, 0.27, 0), (250, 0.43, 1), (1000, 0.31, 2), (60, 0.3, 3)]
)
def test_widths_edges_and_skips_follow_the_rules(n, width, seed):
    g = random_layered(n, width=width, seed=seed)
    assert g.num_operators == n and g.outputs == ["1"]
    assert g.is_schedule(g.file_order)
    layer = _layers(g)
    assert layer["0"] == 0 and layer["1"] == max(layer.values())
    members: dict[int, list[int]] = {}
    for v, k in layer.items():
        members.setdefault(k, []).append(int(v))
    for k in members:
        members[k].sort()  # ids run along each layer
    last = layer["1"]
    inner = [len(members[k]) for k in range(1, last)]
    # widths uniform in [ceil(m(1-v)), floor(m(1+v))], m = n / ceil(sqrt(n (1/W - 1)));
    # the last inner layer holds what is left
    m = n / math.ceil(math.sqrt(n * (1 / width - 1)))
    lo, hi = math.ceil(m * 0.25), math.floor(m * 1.75)
    assert all(lo <= w <= hi for w in inner[:-1]) and 1 <= inner[-1] <= hi
    assert members[0] == [0] and members[last] == [1]
    edges = set(g.dag.edges)
    consecutive = 0
    for k in range(last):
        up, low = members[k], members[k + 1]
        a, b = len(up), len(low)
        pair = [(u, v) for u in up for v in low if (str(u), str(v)) in edges]
        want = round(0.2 * a * b + 0.8 * max(a, b))
        assert len(pair) == want, (k, a, b)
        consecutive += want
        # spread evenly over the wider layer (the lower one on a tie), each node's partners
        # a run of neighbours in the other layer
        wide, side = (up, 0) if a > b else (low, 1)
        per = Counter(p[side] for p in pair)
        assert all(want // len(wide) <= per[v] <= -(-want // len(wide)) for v in wide)
        for v in wide:
            run = sorted(p[1 - side] for p in pair if p[side] == v)
            assert run == list(range(run[0], run[0] + len(run)))
    skips = [(u, v) for u, v in edges if layer[v] - layer[u] >= 2]
    assert len(edges) == consecutive + len(skips)
    drawn = math.ceil(consecutive * 0.14 / 0.86)
    # repeated draws merge: 2-4 % on average here (MOCCASIN's files lose 1-3 %), more when
    # the last inner layer, which takes many skips, is narrow
    assert 0.85 * drawn <= len(skips) <= drawn
    for u, v in skips:
        assert layer[u] >= 1 and layer[v] <= last - 1  # inner layers only
        # position x uniform in [0, 1): i = floor(x ws); the target's position is in
        # [x, x + 0.2], so j/wt <= x + 0.2 < (i + 1)/ws + 0.2 and (j + 1)/wt > x >= i/ws
        su, sv = members[layer[u]], members[layer[v]]
        i, j = su.index(int(u)), sv.index(int(v))
        assert i / len(su) < (j + 1) / len(sv) and j / len(sv) < (i + 1) / len(su) + 0.2


@pytest.mark.parametrize("density", [0.0, 1.0])
def test_edge_density_extremes(density):
    # d = 0: max(a, b) edges per layer pair (every node of the wider layer joined to one
    # node); d = 1: a*b (complete between consecutive layers).
    g = random_layered(80, edge_density=density, skip_density=0, seed=5)
    layer = _layers(g)
    width = Counter(layer.values())
    last = layer["1"]
    pairs = [(width[k], width[k + 1]) for k in range(last)]
    want = sum(a * b if density == 1 else max(a, b) for a, b in pairs)
    assert len(g.dag.edges) == want


def test_sizes_and_costs_follow_their_distributions():
    # Sizes: with probability 0.225 uniform on [0, 1270], else triangular on [0, 7440] with
    # its mode at 0, rounded to a multiple of 10 (at least 10). Mean 0.225*635 +
    # 0.775*7440/3 = 142.9 + 1922.0 = 2064.9; P(size <= 1270) = 0.225 + 0.775 (1 - (1 -
    # 1270/7440)^2) = 0.225 + 0.775 * 0.3123 = 0.467. Costs uniform integers in [1, 1000]:
    # mean 500.5. 6,000 nodes: the tolerances are over 4 standard errors.
    sizes, costs = [], []
    for seed in range(3):
        g = random_layered(2000, seed=seed)
        for v in g.file_order:
            sizes.append(_size(g, v))
            if v not in ("0", "1"):
                costs.append(operator_cost(g, v))
    assert all(s % 10 == 0 and 10 <= s <= 7440 for s in sizes)
    assert abs(sum(sizes) / len(sizes) - 2064.9) < 0.05 * 2064.9
    assert abs(sum(s <= 1270 for s in sizes) / len(sizes) - 0.467) < 0.03
    assert all(isinstance(c, int) and 1 <= c <= 1000 for c in costs)
    assert abs(sum(costs) / len(costs) - 500.5) < 15


def test_orders():
    dfs = random_layered(100, seed=0)
    layered = random_layered(100, seed=0, order="layer")
    assert set(dfs.dag.edges) == set(layered.dag.edges)  # the order does not change the graph
    layer = _layers(layered)
    assert [layer[v] for v in layered.file_order] == sorted(layer.values())
    assert dfs.is_schedule(dfs.file_order)
    assert [layer[v] for v in dfs.file_order] != sorted(layer.values())
    # a depth-first order: the first node after the source is one of its readers, and the
    # order goes down a branch before the layer above is done
    assert dfs.file_order[1] in dfs.dag.successors("0")
    assert random_layered(100, seed=0).identity() == dfs.identity()  # deterministic


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"width": 1},
        {"width_variance": 1},
        {"edge_density": 1.5},
        {"skip_density": 1},
        {"order": "random"},
    ],
)
def test_bad_parameters_say_which(kwargs):
    name = next(iter(kwargs))
    with pytest.raises(UsageError, match=name):
        random_layered(30, **kwargs)
    with pytest.raises(UsageError, match="at least 3"):
        random_layered(2)


@pytest.mark.parametrize(
    "kw",
    [
        {"n": 100.0},
        {"n": "100"},
        {"n": 100, "seed": None},
        {"n": 100, "seed": 1.5},
        {"n": 100, "width": "0.3"},
        {"n": 100, "edge_density": None},
    ],
)
def test_wrong_types_are_named(kw):
    """A wrong type is a UsageError naming the parameter (not a TypeError from inside, and
    seed=None would silently give a different graph on every call)."""
    with pytest.raises(UsageError) as e:
        random_layered(**kw)
    assert next(k for k in kw if k != "n" or len(kw) == 1) in str(e.value)


def test_the_name_is_the_default_or_given():
    assert random_layered(20, seed=3).name == "random_layered_n20_s3"
    assert random_layered(20, seed=3, name="mine").name == "mine"
