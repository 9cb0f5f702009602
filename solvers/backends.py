"""MILP solver backends behind one interface (the cvxpy lesson: write the model once).

A backend has a name, a check for whether it is installed that does not import it, an
explicit map from its statuses to cosma's, and one ``solve`` entry point taking a PuLP
model with a time limit, threads and a seed. It reports the solver's own proven bound, so a
time-limited run is never mistaken for an optimal one (PuLP itself calls a CBC run stopped
by its time limit "Optimal").

- ``cbc``: the CBC binary bundled with PuLP, run as a subprocess with a wall-clock
  watchdog; a crash or an overrun becomes a status, never an exception.
- ``highs``: HiGHS through ``highspy`` (pin 1.12.x next to OR-Tools, which bundles HiGHS
  1.12 and clashes with other versions in one process).
- ``gurobi``: through ``gurobipy`` when installed and licensed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

import pulp

from cosma import interrupt
from cosma.errors import SolverError

log = logging.getLogger(__name__)

# Statuses of a raw solve (before placement), mapped onto cosma's by the caller.
OPTIMAL, FEASIBLE, INFEASIBLE, NO_SOLUTION = "optimal", "feasible", "infeasible", "no_solution"


@dataclass
class Outcome:
    """What a backend found: its status, variable values by name, the objective of the
    incumbent, the best proven bound, wall time, and a note (crash, overrun...)."""

    status: str
    values: dict[str, float] = field(default_factory=dict)
    objective: float | None = None
    bound: float | None = None
    seconds: float = 0.0
    note: str = ""


def _failure(solver: str, code: int, text: str) -> str:
    """A solver failure as one message: exit code or signal, and the solver's last words."""
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    tail = "\n".join(f"    {ln}" for ln in lines[-8:]) or "    (no output)"
    return (
        f"{solver} failed: it {how}. Its last output:\n{tail}\n"
        "Try fewer --threads, a smaller graph or budget, or another --solver"
    )


def _run_solver_process(args: list[str], out_path: str, watchdog: float) -> tuple[int, str, bool]:
    """Run a solver binary in its own process group (its own session) with its output in
    ``out_path``. A stop request (signal) sends SIGINT to the group, which CBC answers by
    stopping with its best solution; past ``watchdog`` seconds the group is killed. However
    this ends (normally, error, KeyboardInterrupt), no process of the group is left.
    Returns (exit code, output, overran)."""
    overran = False
    with open(out_path, "w") as out:
        proc = subprocess.Popen(
            _line_buffered(args),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session and process group: a terminal's Ctrl-C reaches cosma only, and
            # the whole group can be killed. (No preexec_fn: running Python between fork and
            # exec in a process with solver threads crashed CBC's child now and then.)
            start_new_session=True,
        )
        deadline = time.monotonic() + watchdog

        def finished(timeout: float) -> bool:
            nonlocal overran
            try:
                proc.wait(timeout)
                return True
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    overran = True
                    _kill_group(proc, signal.SIGKILL)
                    proc.wait()
                    return True
                return False

        asked: list[float] = []

        def stop() -> None:
            # SIGINT first (CBC then stops with its best solution); CBC busy in its
            # preprocessing or root LP can take many seconds to notice, so a stop asked
            # again 1.5 s later kills the group (the run then has no incumbent).
            if asked and time.monotonic() - asked[0] > 1.5:
                _kill_group(proc, signal.SIGKILL)
                return
            asked.append(time.monotonic())
            _kill_group(proc, signal.SIGINT)

        try:
            interrupt.wait_stoppable(finished, stop)
        finally:
            if proc.poll() is None:
                _kill_group(proc, signal.SIGKILL)
                proc.wait()
            # Children CBC may have started live in the same group: end them too.
            _kill_group(proc, signal.SIGKILL)
    with open(out_path, errors="replace") as f:
        text = f.read()
    return proc.returncode, text, overran


def _search_ended(text: str) -> bool:
    """Whether CBC's log says its branch-and-bound search ended (time limit or result)."""
    return any(m in text for m in ("Exiting on maximum time", "Partial search", "Result - "))


def _line_buffered(args: list[str]) -> list[str]:
    """``args`` run with line-buffered output where coreutils' stdbuf exists, so a solver
    that crashes still leaves its log up to the crash (a file is otherwise block-buffered)."""
    stdbuf = shutil.which("stdbuf")
    return [stdbuf, "-oL", *args] if stdbuf else args


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


class Backend:
    name = "?"

    def available(self) -> bool:
        raise NotImplementedError

    def why_unavailable(self) -> str:
        return f"{self.name} is not installed"

    def solve(
        self,
        prob: pulp.LpProblem,
        *,
        time_limit: float,
        threads: int = 1,
        seed: int = 0,
        log_path: str | None = None,
        integral_gap: float = 0.0,
        warm_start: bool = False,
    ) -> Outcome:
        """Solve ``prob`` (minimisation). ``integral_gap`` below 1 lets the solver stop when
        the incumbent is within it of the bound: exact when every objective value is an
        integer."""
        raise NotImplementedError


def _bounded(prob) -> bool:
    """Whether ``prob``'s objective is bounded in its direction by its variables' own
    bounds alone (so the model cannot be unbounded: it is infeasible or has an optimum)."""
    sign = 1 if prob.sense == pulp.LpMinimize else -1
    for var, coef in (prob.objective or {}).items():
        c = sign * coef
        if (c > 0 and var.lowBound is None) or (c < 0 and var.upBound is None):
            return False
    return True


class CBC(Backend):
    name = "cbc"

    def _path(self) -> str | None:
        from pulp.apis import coin_api

        bundled = getattr(coin_api, "pulp_cbc_path", None)
        if bundled and os.path.exists(bundled):
            return bundled
        return shutil.which("cbc")

    def _io(self, path: str) -> pulp.COIN_CMD:
        """PuLP's reader and writer of CBC solution files (no solve through it)."""
        return pulp.COIN_CMD(path=path, msg=False)

    def available(self) -> bool:
        return self._path() is not None

    def why_unavailable(self) -> str:
        return "no CBC binary: PuLP's bundled one is missing for this platform and none is on PATH"

    def solve(
        self,
        prob,
        *,
        time_limit,
        threads=1,
        seed=0,
        log_path=None,
        integral_gap=0.0,
        warm_start=False,
    ) -> Outcome:
        path = self._path()
        if path is None:
            raise SolverError(self.why_unavailable())
        t0 = time.perf_counter()
        # ignore_cleanup_errors: the folder goes even if CBC left a file open.
        with tempfile.TemporaryDirectory(prefix="cosma-cbc-", ignore_cleanup_errors=True) as tmp:
            mps, sol, mst, out_path = (
                os.path.join(tmp, f) for f in ("m.mps", "m.sol", "m.mst", "cbc.log")
            )
            vs, var_names, con_names, _ = prob.writeMPS(mps, rename=1)
            args = [
                path,
                mps,
                "-sec",
                # The limit covers this whole call: writing the model took some of it.
                f"{max(time_limit - (time.perf_counter() - t0), 0.01):g}",
                "-timeMode",
                "elapsed",
                "-threads",
                str(threads),
                "-randomCbcSeed",
                str(seed + 1),
                "-ratioGap",
                "0",
                "-allowableGap",
                f"{integral_gap:g}",
            ]
            if warm_start and any(v.varValue is not None for v in vs):
                self._io(path).writesol(mst, prob, vs, var_names, con_names)
                args += ["-mips", mst]
            args += ["-solve", "-solution", sol]
            # CBC honours -sec (elapsed) to within a second or so; the watchdog only stops
            # a run that ignores it, inside the caller's 10 % + 2 s allowance.
            watchdog = max(time_limit - (time.perf_counter() - t0), 0.01) * 1.05 + 1.5
            code, text, overran = _run_solver_process(args, out_path, watchdog)
            if log_path:
                with open(log_path, "w") as f:
                    f.write(text)
            seconds = time.perf_counter() - t0
            if overran:
                return Outcome(
                    NO_SOLUTION,
                    seconds=seconds,
                    note=f"CBC overran its time limit and was stopped after "
                    f"{watchdog:.0f} s\n{text[-2000:]}",
                )
            stopped = interrupt.requested() is not None
            if stopped and (code != 0 or not os.path.exists(sol)):
                # Stopped before CBC could catch the signal (it then dies of it) or write
                # a solution: no incumbent from this run, not a failure.
                return Outcome(NO_SOLUTION, seconds=seconds, note="interrupted")
            if code != 0 and _search_ended(text):
                # CBC 2.10 sometimes crashes (SIGSEGV) while cleaning up after a search that
                # its time limit ended: the search is over, only its incumbent is lost.
                log.warning("CBC crashed after its search ended (exit %s); no incumbent", code)
                return Outcome(
                    NO_SOLUTION,
                    seconds=seconds,
                    note=f"CBC crashed (exit {code}) after its search ended; its incumbent is lost",
                )
            if code != 0:
                raise SolverError(_failure("CBC", code, text))
            if not os.path.exists(sol):
                raise SolverError(_failure("CBC", code, text + "\n(no solution file written)"))
            values = {}
            _, raw, *_ = self._io(path).readsol_MPS(sol, prob, vs, var_names, con_names)
            values = {k: float(v) for k, v in raw.items()}
        return self._parse(text, values, seconds, bounded=_bounded(prob))

    @staticmethod
    def _parse(
        text: str, values: dict[str, float], seconds: float, *, bounded: bool = False
    ) -> Outcome:
        def number(label: str) -> float | None:
            m = re.search(rf"^{label}:\s*(-?[0-9.eE+-]+)", text, re.M)
            return float(m.group(1)) if m else None

        obj = number("Objective value")
        if "Result - Optimal solution found" in text:
            return Outcome(OPTIMAL, values, obj, obj, seconds)
        if (
            "Result - Problem proven infeasible" in text
            or "Result - Linear relaxation infeasible" in text
            # CBC's presolve cannot tell these apart; a model whose objective is bounded
            # in its direction (every cosma model: non-negative costs) cannot be unbounded
            or (bounded and "Pre-processing says infeasible or unbounded" in text)
        ):
            return Outcome(INFEASIBLE, seconds=seconds)
        bound = number("Lower bound")
        if "No feasible solution found" in text or obj is None or "objective 1e+50" in text:
            return Outcome(NO_SOLUTION, bound=bound, seconds=seconds, note="no incumbent")
        return Outcome(FEASIBLE, values, obj, bound, seconds)


class HiGHS(Backend):
    name = "highs"

    def available(self) -> bool:
        return importlib.util.find_spec("highspy") is not None

    def why_unavailable(self) -> str:
        return "highspy is not installed (pip install 'highspy>=1.12,<1.13')"

    def solve(
        self,
        prob,
        *,
        time_limit,
        threads=1,
        seed=0,
        log_path=None,
        integral_gap=0.0,
        warm_start=False,
        stop_when=None,
    ) -> Outcome:
        """As :meth:`Backend.solve`; ``stop_when()`` (checked every 0.1 s) returning True
        ends the solve as its time limit would."""
        if not self.available():
            raise SolverError(self.why_unavailable())
        import highspy

        params = {"random_seed": seed, "mip_rel_gap": 0.0, "mip_abs_gap": integral_gap}
        if log_path:
            params["log_file"] = log_path
        solver = pulp.HiGHS(msg=False, timeLimit=time_limit, threads=threads, **params)
        t0 = time.perf_counter()
        # PuLP builds and configures the model; the run is ours: in a thread HiGHS can be
        # interrupted from (its user-interrupt callback), and read back without PuLP, whose
        # reader fails on an empty solution.
        solver.createAndConfigureSolver(prob)
        solver.buildSolverModel(prob)
        h = prob.solverModel
        if log_path:  # msg=False turned all output off, the log file too: log to it only
            h.setOptionValue("output_flag", True)
            h.setOptionValue("log_to_console", False)
            h.setOptionValue("log_file", log_path)
        h.HandleUserInterrupt = True
        worker = h.startSolve()
        asked = False

        def finished(timeout: float) -> bool:
            nonlocal asked
            if stop_when is not None and not asked and stop_when():
                asked = True  # ended by the caller: HiGHS returns what it has, bound too
                h.cancelSolve()
            done, _ = h.wait(timeout)
            return bool(done)

        try:
            interrupt.wait_stoppable(finished, h.cancelSolve)
        finally:
            if worker.is_alive():  # an exception while waiting: stop HiGHS before leaving
                h.cancelSolve()
                worker.join()
        seconds = time.perf_counter() - t0
        info = h.getInfo()
        status = h.getModelStatus()
        ms = highspy.HighsModelStatus
        if status in (ms.kSolveError, ms.kModelError, ms.kPresolveError, ms.kPostsolveError):
            raise SolverError(
                f"HiGHS failed: {h.modelStatusToString(status)}. Try another --solver, or "
                "check the graph's sizes (sizes far apart make the model numerically hard)"
            )
        has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
        values: dict[str, float] = {}
        if has_sol:
            col = list(h.getSolution().col_value)
            values = {v.name: col[i] for i, v in enumerate(prob.variables()) if i < len(col)}
        obj = info.objective_function_value if has_sol else None
        bound = info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else None
        if status == ms.kOptimal:
            return Outcome(OPTIMAL, values, obj, obj, seconds)
        if status == ms.kInfeasible:
            return Outcome(INFEASIBLE, seconds=seconds)
        if has_sol:
            return Outcome(FEASIBLE, values, obj, bound, seconds, note=str(status))
        return Outcome(NO_SOLUTION, bound=bound, seconds=seconds, note=str(status))


class Gurobi(Backend):
    name = "gurobi"

    def available(self) -> bool:
        return importlib.util.find_spec("gurobipy") is not None

    def why_unavailable(self) -> str:
        return "gurobipy is not installed (and needs a licence)"

    def solve(
        self,
        prob,
        *,
        time_limit,
        threads=1,
        seed=0,
        log_path=None,
        integral_gap=0.0,
        warm_start=False,
    ) -> Outcome:
        if not self.available():
            raise SolverError(self.why_unavailable())
        solver = pulp.GUROBI(
            msg=False,
            timeLimit=time_limit,
            Threads=threads,
            Seed=seed,
            MIPGap=0.0,
            MIPGapAbs=integral_gap,
            warmStart=warm_start,
            **({"LogFile": log_path} if log_path else {}),
        )
        t0 = time.perf_counter()
        prob.solve(solver)
        seconds = time.perf_counter() - t0
        m = prob.solverModel
        # Gurobi status codes: 2 optimal, 3 infeasible, 9 time limit.
        has_sol = m.SolCount > 0
        values = {v.name: v.varValue for v in prob.variables()} if has_sol else {}
        obj = m.ObjVal if has_sol else None
        bound = m.ObjBound if m.Status in (2, 9) else None
        if m.Status == 2:
            return Outcome(OPTIMAL, values, obj, obj, seconds)
        if m.Status == 3:
            return Outcome(INFEASIBLE, seconds=seconds)
        return Outcome(
            FEASIBLE if has_sol else NO_SOLUTION,
            values,
            obj,
            bound,
            seconds,
            note=f"gurobi status {m.Status}",
        )


BACKENDS: dict[str, Backend] = {b.name: b for b in (CBC(), HiGHS(), Gurobi())}


def backend(name: str) -> Backend:
    """The backend called ``name``; a clear error if unknown or not installed."""
    try:
        b = BACKENDS[name]
    except KeyError:
        raise SolverError(
            f"unknown MILP solver {name!r}; choose from {', '.join(BACKENDS)}"
        ) from None
    if not b.available():
        raise SolverError(f"solver {name!r} is not available: {b.why_unavailable()}")
    return b
