r"""The explicit optimal-transport LP in max-flow form, solved by HiGHS (highspy) or cvxpy.

Only accepted edges carry objective weight, so :math:`\alpha^*` is a bipartite max-flow: source
:math:`\to` token set :math:`t` (capacity :math:`Q(t)`) :math:`\to` token :math:`y \in t`
(capacity :math:`\infty`) :math:`\to` sink (capacity :math:`p(y)`); rejected mass is resampled freely
(SpecTr, arXiv 2310.15141; Thomas & Pal, arXiv 2511.15898). Draft tuples with the same token *set*
are merged (the edges depend only on the set), which is at least as strong as merging exchangeable
tuples into multisets. Dual sign convention: :mod:`spectheory.result`.

Exponential in ``n``: this is the ground truth for small vocabularies, not the production path.

HiGHS with presolve can report a feasible transport LP as infeasible when tuple masses are tiny
(``docs/theory.md``). In the max-flow form the zero flow is always feasible, so any status other than
optimal is a solver fault: we retry with presolve off, then with the interior-point solver, and
report :attr:`~spectheory.result.Status.FAILED` if none succeeds -- never a wrong status. Masses
below ``LP_MASS_FLOOR`` are dropped and their total is reported in ``info["dropped_mass"]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..result import Duals, Plan, Result, Status
from ..schemes import Scheme
from ..tolerances import CERT_GAP_TOL, HIGHS_TOL, LP_MASS_FLOOR, MAX_TUPLES
from .registry import SolverEntry, register

__all__ = ["MaxFlowLP", "build_lp", "solve_lp"]


@dataclass(frozen=True)
class MaxFlowLP:
    """The LP data: token sets (padded with -1), their masses, edges, and capacities."""

    sets: np.ndarray
    mass: np.ndarray
    edge_set: np.ndarray
    edge_token: np.ndarray
    p: np.ndarray
    dropped_mass: float

    @property
    def num_sets(self) -> int:
        return len(self.mass)

    @property
    def num_edges(self) -> int:
        return len(self.edge_set)


def merge_by_set(tuples: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge draft tuples with equal token sets: ``(sets (T', n) padded with -1, mass (T',))``."""
    srt = np.sort(tuples, axis=1)
    # Replace repeated entries by -1 and push them to the end.
    dup = np.zeros_like(srt, dtype=bool)
    dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
    keyed = np.where(dup, np.iinfo(np.int64).max, srt)
    keyed = np.sort(keyed, axis=1)
    keyed = np.where(keyed == np.iinfo(np.int64).max, -1, keyed)
    sets, inv = np.unique(keyed, axis=0, return_inverse=True)
    mass = np.zeros(len(sets))
    np.add.at(mass, inv.reshape(-1), probs)
    return sets, mass


def build_lp(p: np.ndarray, scheme: Scheme) -> MaxFlowLP:
    """Build the max-flow LP for one position."""
    tuples, probs = scheme.enumerate()
    keep = probs >= LP_MASS_FLOOR
    dropped = float(np.sum(probs[~keep]))
    sets, mass = merge_by_set(tuples[keep], probs[keep])
    ts, js = np.nonzero(sets >= 0)
    return MaxFlowLP(
        sets=sets,
        mass=mass,
        edge_set=ts.astype(np.int64),
        edge_token=sets[ts, js].astype(np.int64),
        p=p,
        dropped_mass=dropped,
    )


def clean_plan(lp: MaxFlowLP, flow: np.ndarray) -> np.ndarray:
    """Project a solver's flow onto the feasible set: clip at 0, then scale down any edge group
    whose set or token capacity is exceeded by rounding."""
    f = np.maximum(np.asarray(flow, dtype=np.float64), 0.0)
    for _ in range(2):
        out = np.bincount(lp.edge_set, weights=f, minlength=lp.num_sets)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(out > lp.mass, lp.mass / out, 1.0)
        f = f * s[lp.edge_set]
        inn = np.bincount(lp.edge_token, weights=f, minlength=len(lp.p))
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(inn > lp.p, lp.p / inn, 1.0)
        f = f * s[lp.edge_token]
    return f


def witness_from_duals(v: np.ndarray, p: np.ndarray, scheme: Scheme) -> tuple[np.ndarray, float]:
    r"""Best level set :math:`H_\theta = \{y : v_y \ge \theta\}` of the token duals.

    The dual objective equals :math:`\int_0^1 [1 + p(H_\theta) - Q(H_\theta^n)]\,d\theta` when
    :math:`u` is chosen optimally for :math:`v \in [0,1]^V`, so some level set is at least as good as
    the LP dual: rounding loses nothing.
    """
    vv = np.clip(v, 0.0, 1.0)
    thetas = np.unique(vv[vv > 0])
    masks = [np.zeros(len(p), dtype=bool)] + [vv >= t for t in thetas]
    M = np.array(masks)
    vals = 1.0 + M.astype(np.float64) @ p - scheme.prob_all_in(M)
    k = int(np.argmin(vals))
    return M[k], float(vals[k])


_BANNER_SHOWN = False


#: Solver attempts in order: simplex with presolve, without, then interior point with crossover.
HIGHS_ATTEMPTS: tuple[tuple[str, str], ...] = (("simplex", "on"), ("simplex", "off"), ("ipm", "off"))


def configured_highs(solver: str, presolve: str) -> Any:
    """A silent HiGHS instance with the package's tolerances (``HIGHS_TOL``) for one attempt of
    :data:`HIGHS_ATTEMPTS` (crossover on for the interior-point method)."""
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("presolve", presolve)
    h.setOptionValue("solver", solver)
    h.setOptionValue("primal_feasibility_tolerance", HIGHS_TOL)
    h.setOptionValue("dual_feasibility_tolerance", HIGHS_TOL)
    if solver == "ipm":
        h.setOptionValue("run_crossover", "on")
    return h


def _new_highs() -> Any:
    """A silent ``highspy.Highs``; the copyright banner HiGHS prints on first construction goes to
    /dev/null instead of the user's terminal."""
    import highspy

    global _BANNER_SHOWN
    if _BANNER_SHOWN:
        return highspy.Highs()
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _BANNER_SHOWN = True
    return h


def _solve_highs(lp: MaxFlowLP) -> tuple[str, np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    import highspy

    E, T, V = lp.num_edges, lp.num_sets, len(lp.p)
    attempts = HIGHS_ATTEMPTS
    info: dict[str, Any] = {"solver": "HiGHS (highspy)", "attempts": []}
    for solver, presolve in attempts:
        h = configured_highs(solver, presolve)
        model = highspy.HighsLp()
        model.num_col_ = E
        model.num_row_ = T + V
        model.sense_ = highspy.ObjSense.kMaximize
        model.col_cost_ = np.ones(E)
        model.col_lower_ = np.zeros(E)
        model.col_upper_ = np.full(E, highspy.kHighsInf)
        model.row_lower_ = np.full(T + V, -highspy.kHighsInf)
        model.row_upper_ = np.concatenate([lp.mass, lp.p])
        model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        model.a_matrix_.start_ = np.arange(0, 2 * E + 1, 2, dtype=np.int32)
        idx = np.empty(2 * E, dtype=np.int32)
        idx[0::2] = lp.edge_set
        idx[1::2] = T + lp.edge_token
        model.a_matrix_.index_ = idx
        model.a_matrix_.value_ = np.ones(2 * E)
        h.passModel(model)
        h.run()
        info["solver"] = f"HiGHS {h.version()} (highspy)"
        status = h.getModelStatus()
        name = h.modelStatusToString(status)
        info["attempts"].append(f"{solver}/presolve={presolve}: {name}")
        if status == highspy.HighsModelStatus.kOptimal:
            sol = h.getSolution()
            flow = np.asarray(sol.col_value, dtype=np.float64)
            duals = np.abs(np.asarray(sol.row_dual, dtype=np.float64))
            info["objective"] = float(h.getInfo().objective_function_value)
            return "optimal", flow, duals, info
    return "failed", None, None, info


def _solve_cvxpy(lp: MaxFlowLP) -> tuple[str, np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    import cvxpy as cp
    import scipy.sparse as sp

    E, T, V = lp.num_edges, lp.num_sets, len(lp.p)
    A_set = sp.csr_matrix((np.ones(E), (lp.edge_set, np.arange(E))), shape=(T, E))
    A_tok = sp.csr_matrix((np.ones(E), (lp.edge_token, np.arange(E))), shape=(V, E))
    x = cp.Variable(E, nonneg=True)
    cons = [A_set @ x <= lp.mass, A_tok @ x <= lp.p]
    prob = cp.Problem(cp.Maximize(cp.sum(x)), cons)
    info: dict[str, Any] = {"solver": f"cvxpy {cp.__version__} / CLARABEL"}
    try:
        prob.solve(
            solver=cp.CLARABEL,
            tol_gap_abs=1e-12,
            tol_gap_rel=1e-12,
            tol_feas=1e-12,
            max_iter=500,
        )
    except cp.error.SolverError as exc:  # pragma: no cover - solver fault
        info["error"] = str(exc)
        return "failed", None, None, info
    info["attempts"] = [str(prob.status)]
    if prob.status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE) or x.value is None:
        return "failed", None, None, info
    duals = np.concatenate([np.asarray(cons[0].dual_value), np.asarray(cons[1].dual_value)])
    info["objective"] = float(prob.value)
    return "optimal", np.asarray(x.value, dtype=np.float64), np.abs(duals), info


def _solve_one(p: np.ndarray, scheme: Scheme, backend: str) -> tuple[Any, ...]:
    lp = build_lp(p, scheme)
    T = lp.num_sets
    if lp.num_edges == 0:  # every tuple mass dropped (cannot happen for valid schemes)
        status, flow, duals, info = "optimal", np.zeros(0), np.zeros(T + len(p)), {}
    else:
        status, flow, duals, info = (_solve_highs if backend == "lp" else _solve_cvxpy)(lp)
    info["dropped_mass"] = lp.dropped_mass
    info["num_sets"] = T
    info["num_edges"] = lp.num_edges
    if status != "optimal":
        nanmask = np.zeros(len(p), dtype=bool)
        return float("nan"), nanmask, None, None, Status.FAILED, info
    flow = clean_plan(lp, flow)
    plan = Plan(lp.sets, lp.mass, lp.edge_set, lp.edge_token, flow)
    u, v = duals[:T], duals[T:]
    witness, dual_value = witness_from_duals(v, p, scheme)
    primal = float(np.sum(flow))
    gap = dual_value - primal
    info["primal_value"] = primal
    info["gap"] = gap
    info["error_bound"] = max(abs(gap), 0.0) + lp.dropped_mass
    st = Status.OPTIMAL if abs(gap) <= CERT_GAP_TOL + lp.dropped_mass else Status.INACCURATE
    return dual_value, witness, plan, Duals(u=u, v=v), st, info


def solve_lp(p: np.ndarray, scheme: Scheme, *, backend: str = "lp") -> Result:
    """Solve the explicit LP row by row. ``backend`` is ``"lp"`` (HiGHS) or ``"cvxpy"``."""
    t0 = time.perf_counter()
    single = p.ndim == 1 and not scheme.is_batched
    B = p.shape[0] if p.ndim == 2 else (scheme.batch_shape[0] if scheme.is_batched else 1)
    p2 = np.broadcast_to(p, (B, p.shape[-1]))
    rows = [_solve_one(np.ascontiguousarray(p2[b]), scheme.row(b), backend) for b in range(B)]
    statuses = [r[4] for r in rows]
    worst = (
        Status.FAILED
        if Status.FAILED in statuses
        else Status.INACCURATE
        if Status.INACCURATE in statuses
        else Status.OPTIMAL
    )
    info: dict[str, Any]
    if single:
        value, witness, plan, duals, _, info = rows[0]
    else:
        value = np.array([r[0] for r in rows])
        witness = np.stack([r[1] for r in rows])
        plan = tuple(r[2] for r in rows)
        duals = tuple(r[3] for r in rows)
        info = {"rows": [r[5] for r in rows]}
    info = dict(info)
    info["time_s"] = time.perf_counter() - t0
    return Result(
        value=value,
        witness=witness,
        status=worst,
        method=backend,
        scheme=scheme.name,
        plan=plan,
        duals=duals,
        info=info,
    )


def _supports(scheme: Scheme) -> str | None:
    if scheme.is_batched and scheme.batch_shape[0] > 4096:
        return "the explicit LP loops over rows; batch too large"
    try:
        row = scheme.row(0)
        count = _tuple_count(row)
    except ValueError as exc:
        return str(exc)
    if count > MAX_TUPLES:
        return f"about {count:.3g} draft tuples, more than MAX_TUPLES = {MAX_TUPLES}"
    return None


def _tuple_count(scheme: Scheme) -> float:
    import math

    from ..schemes import IID, Greedy, Hub, Independent, Joint, WithoutReplacement

    if isinstance(scheme, IID):
        return float(np.count_nonzero(scheme.q > 0)) ** scheme.n
    if isinstance(scheme, WithoutReplacement):
        return float(math.perm(int(np.count_nonzero(scheme.q > 0)), scheme.n))
    if isinstance(scheme, (Greedy, Hub)):
        return 2.0 * scheme.V
    if isinstance(scheme, Independent):
        return float(np.prod([np.count_nonzero(q > 0) for q in scheme.qs]))
    if isinstance(scheme, Joint):
        return float(len(scheme.probs))
    return float(scheme.V) ** scheme.n


register(SolverEntry("lp", "numpy", _supports, lambda p, s, **kw: solve_lp(p, s, backend="lp"),
                     priority=50))
register(SolverEntry("cvxpy", "numpy", _supports,
                     lambda p, s, **kw: solve_lp(p, s, backend="cvxpy"), priority=60))
