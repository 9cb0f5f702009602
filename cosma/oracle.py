"""An independent exact search for tiny problems: the judge the exact engines are checked
against (SPEC §3, addresses and moves included).

:func:`exact_search` explores plans event by event over a grid of addresses and returns the
least non-compulsory traffic with a plan that the simulator replays, or proves that no plan
exists. It shares nothing with the formulations in ``cosma.solvers`` (it imports only the
graph, the plan model and the simulator), so a disagreement between an engine and this
search is a bug in one of them, not a shared mistake. It is exponential: meant for graphs of
a handful of operators and budgets of about a dozen address units.

The search
----------
A state is taken between two operators: which operators have run, for every tracked tensor
its address or "not resident", and which tensors host holds a valid copy of. A transition
runs one ready operator ``v`` together with the events around it: loads of its missing
inputs and creates of its outputs (each at every free address), stores of its new outputs,
and drops of its operands. Costs are non-compulsory bytes: every load of an activation, every
load of a graph input or parameter after its first, every store of a tensor that is not a
graph output. Dijkstra on these costs (all >= 0) returns the optimum first.

Reductions, each of which keeps at least one optimal plan (so the optimum is exact):

1. **Address grid.** Addresses and sizes are counted in units of ``g``, the gcd of the
   aligned tracked sizes (a multiple of the alignment). Any valid plan stays valid when every
   address ``a`` is rounded down to ``g * (a // g)``: if ``a + s <= b`` with ``s`` a multiple
   of ``g`` then ``g*(a//g) + s <= g*(b//g)``, so no two blocks start to overlap, none leaves
   ``[0, budget)``, and alignment is kept. The events, hence the traffic, are unchanged.
2. **Events in canonical order inside a gap between two operators:** stores, then drops,
   then loads and creates. Moving a store earlier only makes host valid sooner; after the
   drops the resident set is a subset of the final one (with the same addresses), so every
   later intermediate set is a subset of a non-overlapping set. A drop and a reload of one
   tensor inside one gap is kept (that is a *move*).
3. **Loads as late as possible:** a tensor is loaded only in the gap right before an
   operator that reads it. A load made earlier at address ``a`` can be delayed to that gap
   at the same address: the block is free in between (a subset of the original state), host
   validity only grows, the bytes are the same. A load never followed by a use is dropped
   from the plan (it only costs). Hence also: an input or parameter has been loaded before
   exactly when one of its consumers has run, which decides whether its load is compulsory.
4. **Drops as early as possible:** a tensor leaves right after an operator that used or
   created it, never in a gap where it was not an operand (the drop moves back to just after
   its last use; intermediate states are subsets). A tensor that no later operator reads is
   dropped at once (keeping it only occupies space; a graph output is stored first).
5. **Stores right after creation:** a tensor that is ever stored was resident from its
   creation to its store (it cannot leave before without a host copy while still needed), so
   storing it in the gap right after its producer costs the same and leaves more freedom.
   Graph outputs are always stored there (compulsory, not counted).

With ``moves=False`` the search solves the restricted problem the exact engines solved before
issue 10: a tensor resident at two consecutive steps keeps its address, i.e. a tensor
dropped right after step ``i`` may not be loaded again before step ``i + 1``. Reductions 3 and
4 only widen the gap between a drop and the next load of the same tensor, so they stay sound
there. With ``order`` given, only that schedule is searched (the fixed-order modes).

>>> from cosma.graph import GraphBuilder
>>> g = (GraphBuilder("skip").input("x", 1).op("a", ["x"], {"p": 10}).op("b", ["p"], {"q": 5})
...      .op("c", ["q"], {"r": 5}).op("d", ["p", "r"], {"z": 1}).output("z").build())
>>> r = exact_search(g, 16)
>>> r.status.value, r.objective
('optimal', 20)
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from cosma.errors import CosmaError, UsageError
from cosma.graph import Graph, Setting, TensorKind
from cosma.memory import aligned
from cosma.plan import Event, Plan, Status, Step, create, drop, load, store
from cosma.simulator import verify

__all__ = ["OracleLimitError", "OracleResult", "exact_search"]

_NOT_RESIDENT = -1


class OracleLimitError(CosmaError):
    """Raised when :func:`exact_search` would explore more states than ``max_states``: the
    problem is too large for an exhaustive search (use fewer operators or a smaller budget)."""


@dataclass
class OracleResult:
    """What the exhaustive search proved: ``optimal`` with the least non-compulsory traffic
    and a replayed plan, or ``infeasible`` (no plan exists at all)."""

    status: Status
    objective: int | None
    plan: Plan | None
    states: int
    moves: bool
    order: tuple[str, ...] | None = None
    reason: str | None = None
    stats: dict[str, int] = field(default_factory=dict)


class _Search:
    def __init__(
        self,
        graph: Graph,
        budget: int,
        setting: Setting,
        alignment: int,
        moves: bool,
        order: Sequence[str] | None,
        max_states: int,
    ):
        self.graph = graph
        self.budget = budget
        self.setting = setting
        self.alignment = alignment
        self.moves = moves
        self.max_states = max_states
        g = graph
        self.names = list(g.tracked(setting))
        tix = {t: i for i, t in enumerate(self.names)}
        self.tix = tix
        asize = [aligned(g.tensors[t].size, alignment) for t in self.names]
        nonzero = [s for s in asize if s > 0]
        self.unit = math.gcd(*nonzero) if nonzero else max(alignment, 1)
        self.cells = budget // self.unit
        self.units = [s // self.unit for s in asize]
        self.bytes = [g.tensors[t].size for t in self.names]
        kinds = [g.tensors[t].kind for t in self.names]
        self.from_host = [k in (TensorKind.INPUT, TensorKind.PARAMETER) for k in kinds]
        self.is_output = [k is TensorKind.OUTPUT for k in kinds]
        self.ops = list(g.file_order)
        oix = {v: i for i, v in enumerate(self.ops)}
        self.oix = oix
        self.preds = [sum(1 << oix[p] for p in g.dag.predecessors(v)) for v in self.ops]
        self.operands = [tuple(tix[t] for t in g.operands(v, setting)) for v in self.ops]
        self.outputs = [tuple(tix[t] for t in g.operators[v].outputs if t in tix) for v in self.ops]
        self.consumers = [sum(1 << oix[c] for c in g.tensors[t].consumers) for t in self.names]
        self.all_done = (1 << len(self.ops)) - 1
        self.order = None if order is None else [oix[v] for v in order]
        self._after_cache: dict[tuple[int, int, int], list[tuple]] = {}

    # --- transitions ---------------------------------------------------------------------

    def ready(self, done: int) -> Iterator[int]:
        if self.order is not None:
            k = done.bit_count()
            if k < len(self.order):
                yield self.order[k]
            return
        for v in range(len(self.ops)):
            if not done >> v & 1 and self.preds[v] & done == self.preds[v]:
                yield v

    def placements(
        self, tensors: Sequence[int], busy: int
    ) -> Iterator[tuple[tuple[int, int], ...]]:
        """Every way to give ``tensors`` free, pairwise disjoint blocks (addresses in units)."""
        if not tensors:
            yield ()
            return
        t, rest = tensors[0], tensors[1:]
        u = self.units[t]
        if u == 0:
            for tail in self.placements(rest, busy):
                yield ((t, 0), *tail)
            return
        block = (1 << u) - 1
        for a in range(self.cells - u + 1):
            if busy >> a & block == 0:
                for tail in self.placements(rest, busy | block << a):
                    yield ((t, a), *tail)

    def successors(
        self, state: tuple[int, tuple[int, ...], int, int]
    ) -> Iterator[tuple[int, tuple[int, tuple[int, ...], int, int], tuple]]:
        """Every (cost, next state, step record) one operator run away from ``state``."""
        done, addr, host, just_dropped = state
        busy = 0
        for t, a in enumerate(addr):
            if a != _NOT_RESIDENT and self.units[t]:
                busy |= ((1 << self.units[t]) - 1) << a
        for v in self.ready(done):
            outs = self.outputs[v]
            missing_in = [t for t in self.operands[v] if addr[t] == _NOT_RESIDENT and t not in outs]
            # Invariant: a needed tensor that is not resident has a host copy. Without moves,
            # a tensor dropped right after the previous step may not come back for this one.
            if any(just_dropped >> t & 1 for t in missing_in):
                continue
            load_cost = 0
            for t in missing_in:
                if not self.from_host[t] or self.consumers[t] & done:
                    load_cost += self.bytes[t]
            done2 = done | 1 << v
            options = self._after(v, done2, host)
            placing = [*missing_in, *(t for t in outs if addr[t] == _NOT_RESIDENT)]
            n_loads = len(missing_in)
            for placed in self.placements(placing, busy):
                addr1 = list(addr)
                for t, a in placed:
                    addr1[t] = a
                for extra, host2, stores, drops, just in options:
                    addr2 = list(addr1)
                    for t in drops:
                        addr2[t] = _NOT_RESIDENT
                    yield (
                        load_cost + extra,
                        (done2, tuple(addr2), host2, just),
                        (v, placed, n_loads, stores, drops),
                    )

    def _after(self, v: int, done2: int, host: int) -> list[tuple]:
        """Stores of the new outputs and drops of the operands after ``v`` runs, every allowed
        combination: (cost, host set, stores, drops, needed tensors dropped). They do not
        depend on addresses, so they are computed once per (operator, done, host)."""
        key = (v, done2, host)
        cached = self._after_cache.get(key)
        if cached is not None:
            return cached
        forced_stores: list[int] = []
        forced_drops: list[int] = []
        choices: list[tuple[tuple[int, int], ...]] = []  # per tensor: options (store?, drop?)
        choice_tensors: list[int] = []
        outs = self.outputs[v]
        for t in self.operands[v]:
            needed = bool(self.consumers[t] & ~done2)
            new_output = t in outs
            if new_output and self.is_output[t]:
                forced_stores.append(t)  # compulsory, right after creation
                on_host = True
            else:
                on_host = bool(host >> t & 1) or self.from_host[t]
            if not needed:
                forced_drops.append(t)
            elif on_host:
                choice_tensors.append(t)
                choices.append(((0, 0), (0, 1)))  # keep / drop
            elif new_output:
                choice_tensors.append(t)
                choices.append(((0, 0), (1, 0), (1, 1)))  # keep / store+keep / store+drop
            # else: needed, no host copy: it stays
        result = []
        for combo in itertools.product(*choices):
            stores = list(forced_stores)
            drops = list(forced_drops)
            c = 0
            for t, (st, dr) in zip(choice_tensors, combo, strict=True):
                if st:
                    stores.append(t)
                    c += self.bytes[t]
                if dr:
                    drops.append(t)
            host2 = host
            for t in stores:
                host2 |= 1 << t
            just = 0
            if not self.moves:
                for t in drops:
                    if self.consumers[t] & ~done2:
                        just |= 1 << t
            result.append((c, host2, tuple(stores), tuple(drops), just))
        self._after_cache[key] = result
        return result

    # --- search ------------------------------------------------------------------------

    def run(self) -> OracleResult:
        n = len(self.names)
        host0 = sum(1 << t for t in range(n) if self.from_host[t])
        start = (0, (_NOT_RESIDENT,) * n, host0, 0)
        dist = {start: 0}
        parent: dict[tuple, tuple[tuple, tuple] | None] = {start: None}
        heap = [(0, 0, start)]
        counter = 0
        expanded = 0
        while heap:
            cost, _, state = heapq.heappop(heap)
            if cost > dist[state]:
                continue
            if state[0] == self.all_done:
                return self._result(cost, state, parent, expanded, len(dist))
            expanded += 1
            for step_cost, nxt, rec in self.successors(state):
                c = cost + step_cost
                if c < dist.get(nxt, math.inf):
                    if nxt not in dist and len(dist) >= self.max_states:
                        raise OracleLimitError(
                            f"the exact search on {self.graph.name!r} passed {self.max_states:,} "
                            "states: the problem is too large for it (fewer operators, a "
                            "smaller budget, or raise max_states)"
                        )
                    dist[nxt] = c
                    parent[nxt] = (state, rec)
                    counter += 1
                    heapq.heappush(heap, (c, counter, nxt))
        what = "in the given order" if self.order is not None else "in any order"
        return OracleResult(
            Status.INFEASIBLE,
            None,
            None,
            len(dist),
            self.moves,
            self._order_names(),
            reason=(
                f"exhaustive search over {len(dist):,} states found no plan {what} within "
                f"{self.budget} bytes" + ("" if self.moves else " without moves")
            ),
            stats={"expanded": expanded, "states": len(dist), "unit": self.unit},
        )

    def _order_names(self) -> tuple[str, ...] | None:
        return None if self.order is None else tuple(self.ops[v] for v in self.order)

    def _result(self, cost, state, parent, expanded, states) -> OracleResult:
        records: list[tuple] = []
        node = parent[state]
        while node is not None:
            prev, rec = node
            records.append(rec)
            node = parent[prev]
        records.reverse()
        name, g = self.names, self.unit
        steps: list[Step] = []
        for v, placed, n_loads, stores, drops in records:
            before: list[Event] = [load(name[t], a * g) for t, a in placed[:n_loads]]
            before += [create(name[t], a * g) for t, a in placed[n_loads:]]
            after: list[Event] = [store(name[t]) for t in sorted(stores)]
            after += [drop(name[t]) for t in sorted(drops)]
            steps.append(Step(self.ops[v], tuple(before), tuple(after)))
        graph = self.graph
        plan = Plan(
            graph.name,
            graph.identity(),
            self.budget,
            self.setting,
            self.alignment,
            "oracle" if self.moves else "oracle-no-moves",
            Status.OPTIMAL,
            steps=steps,
            options={
                "moves": self.moves,
                **({"order": list(self._order_names())} if self.order is not None else {}),
            },
            objective=cost,
            lower_bound=cost,
            stats={"states": states, "expanded": expanded, "unit": g},
        )
        # The judge of the judge: the simulator replays the plan and must measure `cost`.
        verify(graph, plan)
        return OracleResult(
            Status.OPTIMAL,
            cost,
            plan,
            states,
            self.moves,
            self._order_names(),
            stats={"expanded": expanded, "states": states, "unit": g},
        )


def exact_search(
    graph: Graph,
    budget: int,
    *,
    setting: Setting | str = Setting.ACTIVATIONS,
    alignment: int = 1,
    moves: bool = True,
    order: Sequence[str] | None = None,
    max_states: int = 2_000_000,
) -> OracleResult:
    """The least non-compulsory traffic of ``graph`` in ``budget`` bytes, by exhaustive search
    over states with addresses (see the module docstring for the reductions and why each
    keeps an optimum).

    ``moves=False`` forbids a tensor to leave and come back between two consecutive
    operators (the restricted problem); ``order`` fixes the schedule. Raises
    :class:`OracleLimitError` past ``max_states`` states rather than return an unproven
    answer. The plan in an optimal result has been replayed by the simulator.

    >>> from cosma.graph import GraphBuilder
    >>> g = GraphBuilder().input("x", 4).op("f", ["x"], {"y": 8}).output("y").build()
    >>> exact_search(g, 12).objective, exact_search(g, 11).status.value
    (0, 'infeasible')
    """
    setting = Setting.parse(setting)
    if budget < 0:
        raise UsageError(f"the budget must not be negative ({budget})")
    if alignment < 1:
        raise UsageError(f"alignment must be a positive number of bytes ({alignment})")
    if order is not None:
        order = list(order)
        if not graph.is_schedule(order):
            raise UsageError(
                f"the order given is not a schedule of {graph.name!r}: list every operator "
                "once, each after the operators whose outputs it reads"
            )
    return _Search(graph, budget, setting, alignment, moves, order, max_states).run()
