"""Memory figures on hand-built graphs (worked out in comments) and random DAGs."""

from __future__ import annotations

import random

import networkx as nx
import pytest
from cases import chain, skip
from helpers import random_dags, reference_peak
from hypothesis import given, settings
from hypothesis import strategies as st

from cosma import GraphBuilder, Setting, UsageError, memory_figures, must_live_bound
from cosma.memory import live_intervals, min_required, schedule_peak


def test_chain_figures():
    f = memory_figures(chain(w=100))
    # footprints: a = x+y1 = 50, b = y1+y2 = 60, c = y2+z = 25  ->  M_R = 60 at b.
    assert (f.m_r, f.m_r_operator) == (60, "b")
    # On a chain nothing outlives its consumer, so the bound is the largest footprint.
    assert (f.must_live, f.must_live_operator) == (60, "b")
    # file order = the only order: live sets {x,y1}, {y1,y2}, {y2,z}.
    assert (f.file_order_peak, f.file_order_peak_operator) == (60, "b")
    # compulsory: load x (10) + store z (5).
    assert f.compulsory_traffic == 15
    assert f.tracked_tensors == 4 and f.tracked_bytes == 75
    fp = memory_figures(chain(w=100), setting=Setting.ACTIVATIONS_PARAMETERS)
    # w joins b's footprint: 40 + 100 + 20 = 160; compulsory adds the first load of w.
    assert (fp.m_r, fp.must_live, fp.file_order_peak) == (160, 160, 160)
    assert fp.compulsory_traffic == 115


def test_skip_connection_must_live_exceeds_m_r():
    f = memory_figures(skip(p=50))
    # footprints: a 51, b 55, c 10, d 56  ->  M_R = 56 at d.
    assert (f.m_r, f.m_r_operator) == (56, "d")
    # at c: operands q, r (10) plus p, made by ancestor a and read by descendant d: 60.
    assert (f.must_live, f.must_live_operator) == (60, "c")
    # file order: a {x,p}=51, b {p,q}=55, c {p,q,r}=60, d {p,r,z}=56.
    assert (f.file_order_peak, f.file_order_peak_operator) == (60, "c")


def branches():
    # x(1) feeds two branches a: x->p(10)->c->p2(1) and b: x->q(20)->d->q2(1); e joins.
    return (
        GraphBuilder("branches")
        .input("x", 1)
        .op("a", ["x"], {"p": 10})
        .op("b", ["x"], {"q": 20})
        .op("c", ["p"], {"p2": 1})
        .op("d", ["q"], {"q2": 1})
        .op("e", ["p2", "q2"], {"z": 1})
        .output("z")
        .build()
    )


def test_branches_bound_below_file_order_peak():
    g = branches()
    f = memory_figures(g)
    # footprints: a 11, b 21, c 11, d 21, e 3.
    assert (f.m_r, f.m_r_operator) == (21, "b")
    # at b: x, q (21); p is not certainly live (a may run after b). Same total at d.
    assert (f.must_live, f.must_live_operator) == (21, "b")
    # file order a,b,c,d,e: at b x,p,q are live = 31 (p waits for c).
    assert (f.file_order_peak, f.file_order_peak_operator) == (31, "b")
    # order a,c,b,d,e finishes p's branch first: a 11, c {x,p,p2} 12, b {x,p2,q} 22,
    # d {p2,q,q2} 22, e 3 -> 22, between the bound and the file order.
    assert schedule_peak(g, ["a", "c", "b", "d", "e"]) == (22, "b")


def test_outputs_are_stored_when_created():
    g = (
        GraphBuilder()
        .input("x", 1)
        .op("a", ["x"], {"o1": 7})
        .op("b", ["x"], {"o2": 3})
        .output("o1", "o2")
        .build()
    )
    # SPEC §6: an output is stored right after it is created; nothing reads o1, so it is
    # live only while a runs. At a: x + o1 = 8; at b: x + o2 = 4.
    assert live_intervals(g, ["a", "b"])["o1"] == (0, 0)
    assert schedule_peak(g, ["a", "b"]) == (8, "a")
    assert schedule_peak(g, ["b", "a"]) == (8, "a")
    assert must_live_bound(g) == (8, "a")  # a's own operands


def test_an_output_that_is_read_lives_to_its_last_reader():
    # x(1) -a-> o(10, a graph output) -b-> y(2) -c-> z(1); c also reads o.
    g = (
        GraphBuilder()
        .input("x", 1)
        .op("a", ["x"], {"o": 10})
        .op("b", ["o"], {"y": 2})
        .op("c", ["o", "y"], {"z": 1})
        .op("d", ["z"], {"w": 5})
        .output("o", "w")
        .build()
    )
    # o lives from a to c (its last reader), not to the end: at d only z + w = 6.
    assert live_intervals(g, ["a", "b", "c", "d"])["o"] == (0, 2)
    # at a: x + o = 11; b: o + y = 12; c: o + y + z = 13; d: z + w = 6.
    assert schedule_peak(g, ["a", "b", "c", "d"]) == (13, "c")
    f = memory_figures(g)
    assert (f.must_live, f.file_order_peak) == (13, 13)


def test_alignment_rounds_sizes_up():
    # sizes 10, 40, 20, 5 at alignment 16 become 16, 48, 32, 16.
    assert min_required(chain(w=100), alignment=16) == (80, "b")
    with pytest.raises(UsageError):
        memory_figures(chain(w=100), alignment=0)


def test_bad_orders_are_refused():
    g = branches()
    with pytest.raises(UsageError, match="not topological"):
        schedule_peak(g, ["c", "a", "b", "d", "e"])
    with pytest.raises(UsageError, match="all 5 operators"):
        schedule_peak(g, ["a", "b"])
    with pytest.raises(UsageError, match="not in the graph"):
        schedule_peak(g, ["a", "b", "c", "d", "zz"])


def _random_topological_order(g, rng: random.Random) -> list[str]:
    indeg = {n: g.dag.in_degree(n) for n in g.dag}
    ready = [n for n, d in indeg.items() if d == 0]
    order = []
    while ready:
        n = ready.pop(rng.randrange(len(ready)))
        order.append(n)
        for s in g.dag.successors(n):
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    return order


@settings(max_examples=150, deadline=None)
@given(random_dags(max_ops=9), st.randoms(use_true_random=False), st.sampled_from(list(Setting)))
def test_must_live_never_above_any_schedule_peak(g, rng, setting):
    bound, _ = must_live_bound(g, setting=setting)
    m_r, _ = min_required(g, setting=setting)
    assert bound >= m_r
    for _ in range(10):
        order = _random_topological_order(g, rng)
        assert bound <= schedule_peak(g, order, setting=setting)[0]


@settings(max_examples=60, deadline=None)
@given(random_dags(max_ops=6))
def test_must_live_below_brute_force_minimum_peak(g):
    best = min(reference_peak(g, o) for o in nx.all_topological_sorts(g.dag))
    assert must_live_bound(g)[0] <= best


@settings(max_examples=100, deadline=None)
@given(random_dags(max_ops=8), st.randoms(use_true_random=False), st.sampled_from(list(Setting)))
def test_schedule_peak_matches_the_definition(g, rng, setting):
    for _ in range(5):
        order = _random_topological_order(g, rng)
        assert schedule_peak(g, order, setting=setting)[0] == reference_peak(g, order, setting)
