r"""Upper bounds on accepted draft tokens per target call: :func:`block_bound`.

Conventions as in :mod:`spectheory.blocks.acceptance` (theory section 10): values count **accepted
draft tokens** per call, :math:`\mathbb{E}[\tau_{\mathrm{acc}}]`; tokens per call add one.

Notation. The draft structure's realisations :math:`d` have probabilities :math:`P(d)` (the law of
the drafted tokens under :math:`q` and the tree's scheme). :math:`\mathcal{P}(d)` is the set of
distinct token paths of the nodes of :math:`d` (the root's path :math:`()` included; two nodes with
the same path count once). :math:`\mathcal{P} = \bigcup_d \mathcal{P}(d)`. A verifier accepts a path
:math:`a \in \mathcal{P}(d)` and outputs one more token :math:`y`; the block's output is
:math:`z = a\cdot y` and the accepted length is :math:`|a|`.

``kind="lossless"`` (the LP of theory section 10, in *flow form*). Variables
:math:`\pi(d, h) \ge 0` (mass of realisation :math:`d` whose accepted path is :math:`h`) and
:math:`H(h) \ge 0` for :math:`h \in \mathcal{P}\setminus\{()\}` (probability that the accepted path
extends :math:`h`), :math:`H(()) = 1`:

.. math::

    \max \sum_{d,h} |h|\,\pi(d,h) \quad\text{s.t.}\quad
    \sum_{h} \pi(d,h) = P(d),\qquad
    \sum_d \pi(d,h) = H(h) - \sum_{y:\,hy\in\mathcal{P}} H(hy),\qquad
    H(hy) \le p(y\mid h)\,H(h).

It equals the plain formulation (variables :math:`\pi(d, z)`, one equality per sequence
:math:`s` of length :math:`\gamma+1`: :math:`\sum_d\sum_{z\preceq s}\pi(d,z)\,p(s_{|z|+1:}\mid z)
= p(s)`): the law of the first :math:`\gamma+1` output tokens is the target's iff, for every
prefix :math:`h` and token :math:`y`, the output mass through :math:`hy` is
:math:`p(y\mid h)` times the mass that continues past :math:`h`; with :math:`a(h,y)\ge 0` the mass
that stops at :math:`h` and outputs :math:`y`, this reads :math:`H(hy) + a(h,y) = p(y\mid h)H(h)`,
and :math:`a` can be eliminated (``docs/block_bounds.md`` has the proof). Realisations with the
same path set are merged (the LP sees only :math:`\mathcal{P}(d)` and :math:`P(d)`).

``kind="coupling"``: the best expected common-prefix length of the draft structure and a target
block :math:`Y \sim p` of :math:`\gamma` tokens over all couplings (an optimal-transport LP in
:math:`(d, Y)`). By a Hall-type argument on the prefix tree its flow form is the LP above with the
last constraint replaced by :math:`H(h) \le p(h)` (``docs/block_bounds.md``). Every lossless plan
satisfies it (induction on :math:`|h|`), so lossless :math:`\le` coupling.

``formulation="plain"`` solves the naive LPs instead (one column per realisation and output
sequence, one row per target sequence; no certificate): for cross-checks and benchmarks.

Certificates and checking. The flow LP's primal plan and dual variables are returned in
:class:`BoundCertificate`, keyed by token paths; :func:`check_bound` recomputes from the models
alone (its own enumeration of realisations, its own target probabilities) the primal feasibility
and value, the dual feasibility and a rigorous dual bound (dual value plus every violated reduced
cost times the column's upper bound, 1), and their gap.

Fraction models are converted to float64 for the LP (realisation probabilities are summed exactly
first). Sizes: more than :data:`MAX_BOUND_COLUMNS` columns or :data:`MAX_BOUND_NONZEROS` matrix
entries raise :class:`~spectheory._validate.SpecTheoryInputError` before the LP is built.
"""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from .._validate import SpecTheoryInputError
from ..result import Status
from ..tolerances import CERT_GAP_TOL
from .problem import MAX_REALIZATIONS, BlockProblem, Model

__all__ = [
    "BOUND_FEAS_TOL",
    "MAX_BOUND_COLUMNS",
    "MAX_BOUND_NONZEROS",
    "BlockBound",
    "BoundCertificate",
    "BoundCheck",
    "BoundKind",
    "BoundStatus",
    "block_bound",
    "check_bound",
]

#: Largest number of LP columns :func:`block_bound` builds (checked before building).
MAX_BOUND_COLUMNS: int = 2_000_000
#: Largest number of constraint-matrix entries :func:`block_bound` builds.
MAX_BOUND_NONZEROS: int = 20_000_000
#: Largest violation of a plan's equalities/inequalities that :func:`check_bound` accepts.
BOUND_FEAS_TOL: float = 1e-9

Path = tuple[int, ...]


class BoundKind(enum.StrEnum):
    """Which bound :func:`block_bound` computes (module docstring)."""

    LOSSLESS = "lossless"
    COUPLING = "coupling"


#: Outcome of :func:`block_bound`: the package's one status enum (:class:`spectheory.result.Status`):
#: ``OPTIMAL`` when certified by :func:`check_bound` (gap within ``CERT_GAP_TOL``, violations within
#: ``BOUND_FEAS_TOL``), ``INACCURATE`` when the certificate does not close (``info`` and ``check``
#: say by how much), ``FAILED`` when no usable solution was found (``value`` is nan).
BoundStatus = Status


@dataclass(frozen=True, eq=False)
class BoundCertificate:
    r"""Primal plan and dual variables of the flow LP, keyed by token paths.

    Attributes
    ----------
    kind
        :class:`BoundKind` of the LP.
    groups
        Realisation classes: each the sorted tuple of distinct drafted paths
        :math:`\mathcal{P}(d)` (``()`` included) of the realisations merged into it.
    group_prob
        :math:`P(g)` per group as the solver used it (float64; :func:`check_bound` recomputes).
    plan
        :math:`\pi(g, h)`: ``{(group index, path): mass}`` (zero entries omitted).
    reach
        :math:`H(h)` for every path of :math:`\mathcal{P}` except ``()``.
    dual_group
        :math:`\lambda_g` per group (free; rows :math:`\sum_h \pi(g,h) = P(g)`).
    dual_path
        :math:`\mu_h` per path of :math:`\mathcal{P}` (free; the accepted-at-:math:`h` rows).
    dual_cap
        :math:`\nu_h \ge 0` per path except ``()`` (rows :math:`H(h) - p(y\mid h')H(h') \le 0`
        with :math:`h = h'y`, lossless; :math:`H(h) \le p(h)`, coupling).

    Dual feasibility (max problem): :math:`\lambda_g + \mu_h \ge |h|` for every :math:`h \in g`,
    and for every :math:`h \ne ()`: :math:`\mu_{\text{parent}(h)} - \mu_h + \nu_h -
    \sum_{y:\,hy\in\mathcal{P}} p(y\mid h)\,\nu_{hy} \ge 0` (lossless; coupling drops the sum).
    Dual value: :math:`\sum_g P(g)\lambda_g + \mu_{()} + \sum_{|h|=1} p(h)\nu_h` (lossless) or
    :math:`\sum_g P(g)\lambda_g + \mu_{()} + \sum_{h} p(h)\nu_h` (coupling).
    """

    kind: BoundKind
    groups: tuple[tuple[Path, ...], ...]
    group_prob: np.ndarray
    plan: dict[tuple[int, Path], float]
    reach: dict[Path, float]
    dual_group: np.ndarray
    dual_path: dict[Path, float]
    dual_cap: dict[Path, float]


@dataclass(frozen=True)
class BoundCheck:
    """What :func:`check_bound` recomputed from the models (never from solver numbers).

    Attributes
    ----------
    primal_value
        :math:`\\sum |h|\\,\\pi(g,h)` of the plan (a lower bound when the plan is feasible).
    primal_violation
        Largest violation of the plan's constraints (negativity, equalities, caps, unknown keys).
    dual_value
        The dual objective of the certificate's duals (with :math:`\\nu` clipped at 0).
    dual_violation
        Largest violated reduced cost of the duals.
    dual_bound
        ``dual_value`` plus every violated reduced cost times its column's upper bound: an upper
        bound on the LP optimum whatever the duals are.
    gap
        ``dual_bound - primal_value``.
    value_error
        ``|bound.value - primal_value|``.
    ok
        Violations within ``BOUND_FEAS_TOL`` and ``|gap|``, ``value_error`` within
        ``CERT_GAP_TOL``.
    """

    primal_value: float
    primal_violation: float
    dual_value: float
    dual_violation: float
    dual_bound: float
    gap: float
    value_error: float
    ok: bool


@dataclass(frozen=True, eq=False)
class BlockBound:
    r"""An upper bound on accepted draft tokens per call, with its certificate.

    Attributes
    ----------
    value
        The LP optimum: expected accepted draft tokens per call (no bonus token), the same
        convention as ``block_acceptance(...).mean``.
    tokens_per_call
        ``value + 1``.
    status
        :class:`BoundStatus`.
    method
        ``"highs"``.
    kind
        :class:`BoundKind`.
    formulation
        ``"flow"`` (certified) or ``"plain"`` (the naive LP; no certificate).
    structure
        Description of the draft structure.
    certificate
        :class:`BoundCertificate` (flow formulation) or ``None``.
    check
        :class:`BoundCheck` from :func:`check_bound` (``None`` when not checked).
    info
        Sizes (``realizations``, ``groups``, ``paths``, ``columns``, ``rows``, ``nonzeros``),
        times in seconds (``enumerate_s``, ``build_s``, ``solve_s``, ``check_s``, ``time_s``),
        solver version and attempts.
    """

    value: float
    tokens_per_call: float
    status: BoundStatus
    method: str
    kind: BoundKind
    formulation: str
    structure: str
    certificate: BoundCertificate | None = None
    check: BoundCheck | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        return self.status is BoundStatus.OPTIMAL

    def __repr__(self) -> str:
        return (
            f"BlockBound(value={self.value:.12g}, kind={self.kind.value!r}, "
            f"status={self.status.value}, formulation={self.formulation!r})"
        )


# ---------------------------------------------------------------------- input checks
def _check_kind(kind: Any) -> BoundKind:
    try:
        return BoundKind(kind)
    except ValueError:
        raise SpecTheoryInputError(
            f"argument 'kind': expected one of 'lossless', 'coupling', got {kind!r}"
        ) from None


def _check_formulation(formulation: Any) -> str:
    if formulation not in ("flow", "plain"):
        raise SpecTheoryInputError(
            f"argument 'formulation': expected 'flow' or 'plain', got {formulation!r}"
        )
    return str(formulation)


def _too_big(what: str, count: float, limit: int, problem: BlockProblem) -> SpecTheoryInputError:
    return SpecTheoryInputError(
        f"argument 'drafts': the {what} has {count:.4g} "
        f"{'columns' if 'column' in what else 'entries'}, more than "
        f"{'MAX_BOUND_COLUMNS' if 'column' in what else 'MAX_BOUND_NONZEROS'} = {limit} "
        f"({problem.tree.describe()}, V = {problem.V}); block_bound is exact and for small "
        "vocabularies and trees"
    )


# ---------------------------------------------------------------------- realisations
def _float(x: Any) -> float:
    return float(x)


def _realizations(problem: BlockProblem) -> list[tuple[tuple[Path, ...], Any]]:
    """Every realisation as (distinct drafted paths incl. (), sorted; probability)."""
    bound = problem.count_bound()
    if bound > MAX_REALIZATIONS:
        raise SpecTheoryInputError(
            f"argument 'drafts': up to {bound:.3g} draft realisations for "
            f"{problem.tree.describe()} at V = {problem.V}, more than MAX_REALIZATIONS = "
            f"{MAX_REALIZATIONS}; block_bound enumerates them (small vocabularies and trees only)"
        )
    parents = problem.tree.parents
    out = []
    for tokens, pr in problem.realizations():
        paths: list[Path] = [()]
        for u in range(1, len(parents)):
            paths.append((*paths[parents[u]], tokens[u]))
        out.append((tuple(sorted(set(paths), key=_path_key)), pr))
    return out


def _path_key(h: Path) -> tuple[int, Path]:
    return (len(h), h)


def _group(reals: list[tuple[tuple[Path, ...], Any]], exact: bool) -> tuple[list, np.ndarray]:
    acc: dict[tuple[Path, ...], list[Any]] = {}
    for key, pr in reals:
        acc.setdefault(key, []).append(pr)
    groups = sorted(acc, key=lambda g: (len(g), g))
    if exact:
        probs = np.array([float(sum(acc[g], start=Fraction(0))) for g in groups])
    else:
        probs = np.array([math.fsum(float(x) for x in acc[g]) for g in groups])
    return groups, probs


# ---------------------------------------------------------------------- HiGHS
def _solve_highs(
    c: np.ndarray, A: Any, row_lower: np.ndarray, row_upper: np.ndarray
) -> tuple[str, np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Maximise ``c x`` s.t. ``row_lower <= A x <= row_upper``, ``x >= 0`` (A: scipy CSC).

    Returns ``(status, x, lam, info)`` with ``lam`` the duals of the *maximisation* (``lam >= 0``
    on ``<=`` rows): ``A^T lam >= c`` at optimality. Retries as :mod:`spectheory.solvers.lp`
    does: simplex with presolve, without, then interior point with crossover."""
    import highspy

    from ..solvers.lp import HIGHS_ATTEMPTS, configured_highs

    n_rows, n_cols = A.shape
    info: dict[str, Any] = {"attempts": []}
    for solver, presolve in HIGHS_ATTEMPTS:
        h = configured_highs(solver, presolve)
        lp = highspy.HighsLp()
        lp.num_col_ = n_cols
        lp.num_row_ = n_rows
        lp.sense_ = highspy.ObjSense.kMinimize
        lp.col_cost_ = -np.asarray(c, dtype=np.float64)
        lp.col_lower_ = np.zeros(n_cols)
        lp.col_upper_ = np.full(n_cols, highspy.kHighsInf)
        lp.row_lower_ = np.where(np.isfinite(row_lower), row_lower, -highspy.kHighsInf)
        lp.row_upper_ = np.where(np.isfinite(row_upper), row_upper, highspy.kHighsInf)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(np.float64)
        h.passModel(lp)
        h.run()
        info["solver"] = f"HiGHS {h.version()} (highspy)"
        status = h.getModelStatus()
        info["attempts"].append(f"{solver}/presolve={presolve}: {h.modelStatusToString(status)}")
        if status == highspy.HighsModelStatus.kOptimal:
            sol = h.getSolution()
            x = np.asarray(sol.col_value, dtype=np.float64)
            lam = -np.asarray(sol.row_dual, dtype=np.float64)
            info["objective"] = -float(h.getInfo().objective_function_value)
            x, lam, info["refined"] = _refine(A, c, row_lower, row_upper, x, lam, h.getBasis())
            return "optimal", x, lam, info
    return "failed", None, None, info


def _violations(
    A: Any, c: np.ndarray, lower: np.ndarray, upper: np.ndarray, x: np.ndarray, lam: np.ndarray
) -> float:
    """Largest primal or dual infeasibility of ``(x, lam)`` (maximisation convention)."""
    act = A @ x
    pv = max(float(np.max(lower - act, initial=0.0)), float(np.max(act - upper, initial=0.0)),
             float(np.max(-x, initial=0.0)))
    ineq = lower != upper
    lam_up = np.where(np.isfinite(upper) & ineq & ~np.isfinite(lower), np.minimum(lam, 0.0), 0.0)
    dv = max(float(np.max(c - A.T @ lam, initial=0.0)), float(np.max(-lam_up, initial=0.0)))
    return max(pv, dv)


def _refine(
    A: Any, c: np.ndarray, lower: np.ndarray, upper: np.ndarray, x: np.ndarray, lam: np.ndarray,
    basis: Any,
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Recompute the vertex of HiGHS's optimal basis by one sparse LU solve (primal and dual), and
    keep it when its primal/dual infeasibility is smaller: HiGHS's 1e-10 feasibility tolerance
    otherwise shows in the value when the target has tiny probabilities."""
    import highspy
    from scipy.sparse.linalg import splu

    try:
        cs = list(basis.col_status)
        rs = list(basis.row_status)
        B = highspy.HighsBasisStatus.kBasic
        bc = np.array([j for j, s in enumerate(cs) if s == B], dtype=np.int64)
        nbr = np.array([i for i, s in enumerate(rs) if s != B], dtype=np.int64)
        if len(bc) != len(nbr) or len(bc) == 0:
            return x, lam, False
        at_up = np.array([rs[i] == highspy.HighsBasisStatus.kUpper for i in nbr])
        lo, up = lower[nbr], upper[nbr]
        rhs = np.where(at_up | ~np.isfinite(lo), up, lo)
        M = A[nbr][:, bc].tocsc()
        lu = splu(M)
        xb = lu.solve(rhs)
        lb = lu.solve(np.asarray(c[bc], dtype=np.float64), trans="T")
    except Exception:  # singular or odd basis: keep the solver's numbers
        return x, lam, False
    x2 = np.zeros_like(x)
    x2[bc] = xb
    lam2 = np.zeros_like(lam)
    lam2[nbr] = lb
    if not (np.all(np.isfinite(x2)) and np.all(np.isfinite(lam2))):
        return x, lam, False
    if _violations(A, c, lower, upper, x2, lam2) < _violations(A, c, lower, upper, x, lam):
        return x2, lam2, True
    return x, lam, False


# ---------------------------------------------------------------------- flow formulation
class _Flow:
    """The flow LP of one problem and kind (module docstring)."""

    def __init__(self, problem: BlockProblem, kind: BoundKind, groups: list, probs: np.ndarray):
        import scipy.sparse as sp

        self.kind = kind
        self.groups = groups
        self.probs = probs
        paths = sorted({h for g in groups for h in g}, key=_path_key)
        self.paths = paths
        pidx = {h: i for i, h in enumerate(paths)}
        self.pidx = pidx
        G, Pn = len(groups), len(paths)
        n_pi = sum(len(g) for g in groups)
        n_cols = n_pi + Pn - 1
        self.n_pi = n_pi
        n_rows = G + Pn + (Pn - 1)
        # every pi column has 2 entries; every H column at most 3 + (children)
        nnz = 2 * n_pi + 3 * (Pn - 1) + (Pn - 1)
        if n_cols > MAX_BOUND_COLUMNS:
            raise _too_big("flow LP's column count", n_cols, MAX_BOUND_COLUMNS, problem)
        if nnz > MAX_BOUND_NONZEROS:
            raise _too_big("flow LP's constraint matrix", nnz, MAX_BOUND_NONZEROS, problem)
        rows, cols, vals = [], [], []
        c = np.zeros(n_cols)
        col = 0
        self.col_of: list[tuple[int, Path]] = []
        for gi, g in enumerate(groups):
            for h in g:
                rows += [gi, G + pidx[h]]
                cols += [col, col]
                vals += [1.0, 1.0]
                c[col] = len(h)
                self.col_of.append((gi, h))
                col += 1
        # conditionals and sequence probabilities of the target along P
        self.cond = {h: problem.p(h).astype(np.float64) for h in paths}
        ph = {(): 1.0}
        for h in paths[1:]:
            ph[h] = ph[h[:-1]] * float(self.cond[h[:-1]][h[-1]])
        self.ph = ph
        cap0 = G + Pn - 1  # cap row of path index i (i >= 1) is cap0 + i
        for i, h in enumerate(paths[1:], start=1):
            j = n_pi + i - 1
            rows += [G + i, G + pidx[h[:-1]], cap0 + i]
            cols += [j, j, j]
            vals += [-1.0, 1.0, 1.0]
            if kind is BoundKind.LOSSLESS and len(h) >= 2:
                parent = pidx[h[:-1]]
                rows.append(cap0 + i)
                cols.append(n_pi + parent - 1)
                vals.append(-float(self.cond[h[:-1]][h[-1]]))
        A = sp.csc_matrix((vals, (rows, cols)), shape=(n_rows, n_cols))
        A.sum_duplicates()
        lower = np.concatenate([probs, np.zeros(Pn), np.full(Pn - 1, -np.inf)])
        upper = np.concatenate([probs, np.zeros(Pn), np.zeros(Pn - 1)])
        # The root's row, sum_g pi(g, ()) + sum_y H(y) = 1, is implied by the others (sum the group
        # rows and the other path rows); left free (dual 0) so the system is not redundant.
        lower[G], upper[G] = -np.inf, np.inf
        for i, h in enumerate(paths[1:], start=1):
            if kind is BoundKind.COUPLING or len(h) == 1:
                upper[cap0 + i] = ph[h]
        self.A, self.c, self.lower, self.upper = A, c, lower, upper

    def repair(self, x: np.ndarray) -> tuple[dict[tuple[int, Path], float], dict[Path, float]]:
        r"""A plan that satisfies every constraint up to rounding, from the solver's ``x``
        (HiGHS stops at a 1e-10 feasibility tolerance).

        Each group's masses are rescaled to sum to :math:`P(g)` and :math:`H` is recomputed from
        them; then, top-down, wherever :math:`H(h)` exceeds its cap the mass of every group in the
        subtree of :math:`h` is scaled by :math:`f(h) = \text{cap}/H(h)` and the rest is accepted
        at the parent of :math:`h` instead (the ratios inside the subtree, hence its caps, are
        unchanged; the parent's :math:`H` is unchanged). The value can only go down, so the
        repaired plan's value is a lower bound on the optimum."""
        pi = []
        j = 0
        for gi, g in enumerate(self.groups):
            v = x[j:j + len(g)].copy()
            j += len(g)
            s = math.fsum(v.tolist())
            if s > 0:
                v *= self.probs[gi] / s
            else:
                v[0] = self.probs[gi]
            pi.append(v)
        # M[g][k]: mass of group g in the subtree of its k-th path (paths sorted by length)
        M = []
        H0 = dict.fromkeys(self.paths, 0.0)
        for g, v in zip(self.groups, pi, strict=True):
            pos = {h: k for k, h in enumerate(g)}
            m = v.copy()
            for k in range(len(g) - 1, 0, -1):
                m[pos[g[k][:-1]]] += m[k]
            M.append(m)
            for h, mk in zip(g, m.tolist(), strict=True):
                H0[h] += mk
        f = dict.fromkeys(self.paths, 1.0)
        S = {(): 1.0}
        for h in self.paths[1:]:
            par = h[:-1]
            if self.kind is BoundKind.LOSSLESS:
                cap, cur = float(self.cond[par][h[-1]]) * H0[par], H0[h]
            else:
                cap, cur = self.ph[h], H0[h] * S[par]
            if cur > cap:
                f[h] = cap / cur if cur > 0 else 0.0
            S[h] = S[par] * f[h]
        plan: dict[tuple[int, Path], float] = {}
        for gi, (g, v, m) in enumerate(zip(self.groups, pi, M, strict=True)):
            out = v.copy()
            pos = {h: k for k, h in enumerate(g)}
            for k in range(1, len(g)):
                b = g[k]
                if f[b] < 1.0:
                    out[pos[b[:-1]]] += (1.0 - f[b]) * m[k]
            for k, h in enumerate(g):
                val = float(out[k] * S[h])
                if val != 0.0:
                    plan[(gi, h)] = val
        H = dict.fromkeys(self.paths, 0.0)
        for (_, h), val in plan.items():
            H[h] += val
        for h in reversed(self.paths[1:]):
            H[h[:-1]] += H[h]
        return plan, {h: H[h] for h in self.paths[1:]}

    def certificate(self, x: np.ndarray, lam: np.ndarray) -> BoundCertificate:
        G, Pn = len(self.groups), len(self.paths)
        plan, reach = self.repair(np.maximum(x, 0.0))
        dual_path = {h: float(lam[G + i]) for i, h in enumerate(self.paths)}
        cap0 = G + Pn - 1
        dual_cap = {
            h: float(max(lam[cap0 + i], 0.0)) for i, h in enumerate(self.paths[1:], start=1)
        }
        return BoundCertificate(
            kind=self.kind,
            groups=tuple(self.groups),
            group_prob=self.probs.copy(),
            plan=plan,
            reach=reach,
            dual_group=np.asarray(lam[:G], dtype=np.float64).copy(),
            dual_path=dual_path,
            dual_cap=dual_cap,
        )


# ---------------------------------------------------------------------- plain formulation
def _plain(problem: BlockProblem, kind: BoundKind, reals: list) -> tuple[Any, ...]:
    """The naive LP: columns (realisation, output sequence) or (realisation, target block), one
    row per target sequence of length gamma + 1 (lossless) or gamma (coupling); the caller solves
    the sequence rows as '<=' (equivalent, see block_bound)."""
    import scipy.sparse as sp

    V, gam = problem.V, problem.tree.max_depth
    probs = np.array([_float(pr) for _, pr in reals])
    D = len(reals)
    ext_cache: dict[tuple[Path, int], np.ndarray] = {}

    def ext(z: Path, m: int) -> np.ndarray:
        """Law of the next m tokens after z (flattened V**m, lexicographic)."""
        key = (z, m)
        out = ext_cache.get(key)
        if out is None:
            if m == 0:
                out = np.ones(1)
            else:
                pz = problem.p(z).astype(np.float64)
                out = np.concatenate([pz[y] * ext((*z, y), m - 1) for y in range(V)])
            ext_cache[key] = out
        return out

    def index(s: Path) -> int:
        i = 0
        for t in s:
            i = i * V + t
        return i

    if kind is BoundKind.LOSSLESS:
        n_cols = sum(len(g) for g, _ in reals) * V
        nnz = sum(V * (1 + V ** (gam - len(h))) for g, _ in reals for h in g)
        n_rows = D + V ** (gam + 1)
    else:
        n_cols = D * V**gam
        nnz = 2 * n_cols
        n_rows = D + V**gam
    if n_cols > MAX_BOUND_COLUMNS:
        raise _too_big("plain LP's column count", n_cols, MAX_BOUND_COLUMNS, problem)
    if nnz > MAX_BOUND_NONZEROS:
        raise _too_big("plain LP's constraint matrix", nnz, MAX_BOUND_NONZEROS, problem)
    indptr = [0]
    indices: list[np.ndarray] = []
    data: list[np.ndarray] = []
    c = np.empty(n_cols)
    j = 0
    if kind is BoundKind.LOSSLESS:
        for d, (g, _) in enumerate(reals):
            for h in g:
                m = gam - len(h)
                for y in range(V):
                    z = (*h, y)
                    coef = ext(z, m)
                    start = D + index(z) * V**m
                    indices += [np.array([d]), np.arange(start, start + V**m)]
                    data += [np.ones(1), coef]
                    indptr.append(indptr[-1] + 1 + V**m)
                    c[j] = len(h)
                    j += 1
        rhs = np.concatenate([probs, ext((), gam + 1)])
    else:
        blocks = list(np.ndindex(*([V] * gam)))
        for d, (g, _) in enumerate(reals):
            gs = set(g)
            for bi, Y in enumerate(blocks):
                ell = 0
                while ell < gam and tuple(int(t) for t in Y[: ell + 1]) in gs:
                    ell += 1
                indices.append(np.array([d, D + bi]))
                data.append(np.ones(2))
                indptr.append(indptr[-1] + 2)
                c[j] = ell
                j += 1
        rhs = np.concatenate([probs, ext((), gam)])
    A = sp.csc_matrix(
        (np.concatenate(data), np.concatenate(indices), np.array(indptr)), shape=(n_rows, n_cols)
    )
    return c, A, rhs, {"columns": n_cols, "rows": n_rows, "nonzeros": int(A.nnz)}


# ---------------------------------------------------------------------- public entry point
def block_bound(
    target: Model,
    draft: Model,
    drafts: Any,
    *,
    context: Any = (),
    kind: str = "lossless",
    formulation: str = "flow",
    check: bool = True,
) -> BlockBound:
    r"""The largest expected number of accepted draft tokens per target call.

    Parameters
    ----------
    target, draft
        Conditional models ``context -> (V,)`` (floats, or Fractions: converted to float64 for
        the LP after realisation probabilities are summed exactly).
    drafts
        :class:`~spectheory.blocks.Chain`, :class:`~spectheory.blocks.Chains` or
        :class:`~spectheory.blocks.Tree`.
    context
        Tokens before the block.
    kind
        ``"lossless"``: the best lossless one-call verifier of this draft structure, any of the
        target's conditionals allowed (theory section 10). ``"coupling"``: the best coupling of
        the draft structure and a target block (an upper bound on ``"lossless"``).
    formulation
        ``"flow"`` (default; reduced, certified) or ``"plain"`` (the naive LP, uncertified; for
        cross-checks and benchmarks).
    check
        Run :func:`check_bound` on the certificate (flow only) and set the status from it.

    Returns
    -------
    BlockBound
        ``value`` (accepted draft tokens per call, no bonus token), ``status``, ``certificate``,
        ``check``, ``info``.

    Raises
    ------
    SpecTheoryInputError
        Unknown ``kind`` or ``formulation``; more than ``MAX_REALIZATIONS`` realisations, more than
        :data:`MAX_BOUND_COLUMNS` columns or :data:`MAX_BOUND_NONZEROS` matrix entries (counted
        before the LP is built).

    Examples
    --------
    >>> from spectheory.blocks import Chain, Markov
    >>> p = Markov([1/3, 2/3], [[1/3, 2/3], [1/3, 2/3]])
    >>> q = Markov([2/3, 1/3], [[2/3, 1/3], [2/3, 1/3]])
    >>> round(block_bound(p, q, Chain(2)).value * 9, 9)          # Sun et al.: 11/9
    11.0
    >>> round(block_bound(p, q, Chain(2), kind="coupling").value * 9, 9)   # the ideal: 12/9
    12.0
    """
    t0 = time.perf_counter()
    k = _check_kind(kind)
    form = _check_formulation(formulation)
    problem = BlockProblem(target, draft, drafts, context)
    structure = problem.tree.describe()
    d = getattr(drafts, "describe", None)
    if callable(d):
        structure = d()
    reals = _realizations(problem)
    t1 = time.perf_counter()
    info: dict[str, Any] = {"V": problem.V, "depth": problem.tree.max_depth,
                            "realizations": len(reals), "enumerate_s": t1 - t0}
    if form == "plain":
        c, A, rhs, sizes = _plain(problem, k, reals)
        info.update(sizes)
        t2 = time.perf_counter()
        # Sequence rows as '<=': their left sides sum to sum_d P(d) = 1 = sum_s p(s), so they
        # hold with equality at every feasible point; as equalities they are redundant, and HiGHS
        # declares some float instances infeasible (a 1e-16 inconsistency of a redundant system).
        D = info["realizations"]
        lower = np.concatenate([rhs[:D], np.full(len(rhs) - D, -np.inf)])
        st, x, lam, sinfo = _solve_highs(c, A, lower, rhs)
        t3 = time.perf_counter()
        info.update(sinfo)
        info.update(build_s=t2 - t1, solve_s=t3 - t2, check_s=0.0, time_s=t3 - t0)
        if st != "optimal" or x is None or lam is None:
            return BlockBound(math.nan, math.nan, BoundStatus.FAILED, "highs", k, form, structure,
                              info=info)
        primal = float(c @ np.maximum(x, 0.0))
        dual = float(rhs @ lam)
        info["gap"] = dual - primal
        status = BoundStatus.OPTIMAL if abs(dual - primal) <= CERT_GAP_TOL else BoundStatus.INACCURATE
        return BlockBound(primal, primal + 1.0, status, "highs", k, form, structure, info=info)

    groups, probs = _group(reals, problem.exact)
    lp = _Flow(problem, k, groups, probs)
    t2 = time.perf_counter()
    info.update(groups=len(groups), paths=len(lp.paths), columns=lp.A.shape[1],
                rows=lp.A.shape[0], nonzeros=int(lp.A.nnz), build_s=t2 - t1)
    st, x, lam, sinfo = _solve_highs(lp.c, lp.A, lp.lower, lp.upper)
    t3 = time.perf_counter()
    info.update(sinfo)
    info["solve_s"] = t3 - t2
    if st != "optimal" or x is None or lam is None:
        info.update(check_s=0.0, time_s=t3 - t0)
        return BlockBound(math.nan, math.nan, BoundStatus.FAILED, "highs", k, form, structure,
                          info=info)
    cert = lp.certificate(x, lam)
    value = math.fsum(len(h) * m for (_, h), m in cert.plan.items())
    # the solver-side gap, from this module's own matrix
    xs = np.maximum(x, 0.0)
    lam2 = lam.copy()
    ncap = len(lp.paths) - 1
    lam2[len(lam2) - ncap:] = np.maximum(lam2[len(lam2) - ncap:], 0.0)
    rhs = np.where(np.isfinite(lp.upper), lp.upper, 0.0)
    red = lp.A.T @ lam2 - lp.c
    internal_gap = float(rhs @ lam2 + np.sum(np.maximum(-red, 0.0)) - lp.c @ xs)
    info["gap"] = internal_gap
    chk = None
    if check:
        chk = check_bound(
            BlockBound(value, value + 1.0, BoundStatus.OPTIMAL, "highs", k, form, structure, cert),
            target, draft, drafts, context,
        )
        status = BoundStatus.OPTIMAL if chk.ok else BoundStatus.INACCURATE
    else:
        status = BoundStatus.OPTIMAL if abs(internal_gap) <= CERT_GAP_TOL else BoundStatus.INACCURATE
    t4 = time.perf_counter()
    info.update(check_s=t4 - t3, time_s=t4 - t0)
    return BlockBound(value, value + 1.0, status, "highs", k, form, structure, cert, chk, info)


# ---------------------------------------------------------------------- independent checker
def check_bound(
    bound: BlockBound, target: Model, draft: Model, drafts: Any, context: Any = ()
) -> BoundCheck:
    r"""Recompute a :class:`BlockBound`'s certificate from the models alone.

    The realisations, their path sets and probabilities (exact Fraction sums when the models hold
    Fractions) and the target's conditionals are recomputed here; the certificate contributes only
    its plan and duals, matched to the recomputed groups by their paths. Computed:

    * primal: every :math:`\pi, H \ge 0`; every plan key a (group, path of that group);
      :math:`|\sum_h \pi(g,h) - P(g)|`; :math:`|\sum_g \pi(g,h) - H(h) + \sum_y H(hy)|` with
      :math:`H(()) = 1`; cap violations; value :math:`\sum |h|\pi(g,h)` (``math.fsum``);
    * dual: reduced costs of every column (:class:`BoundCertificate`), the dual value, and the
      rigorous bound = dual value + :math:`\sum` violated reduced cost :math:`\times` column upper
      bound (:math:`P(g)` for :math:`\pi(g,\cdot)`, 1 for :math:`H`) (weak duality for
      :math:`0 \le x \le u`).
    """
    cert = bound.certificate
    if cert is None:
        raise SpecTheoryInputError("argument 'bound': it has no certificate (formulation='plain')")
    problem = BlockProblem(target, draft, drafts, context)
    parents = problem.tree.parents
    acc: dict[tuple[Path, ...], list[Any]] = {}
    for tokens, pr in problem.realizations():
        paths: list[Path] = [()]
        for u in range(1, len(parents)):
            paths.append((*paths[parents[u]], tokens[u]))
        acc.setdefault(tuple(sorted(set(paths))), []).append(pr)
    prob = {
        g: float(sum(v, start=Fraction(0))) if problem.exact else math.fsum(float(x) for x in v)
        for g, v in acc.items()
    }
    cert_groups = [tuple(sorted(g)) for g in cert.groups]
    viol = 0.0
    if set(cert_groups) != set(prob) or len(cert_groups) != len(prob):
        viol = math.inf
    allP = sorted({h for g in prob for h in g}, key=_path_key)
    cond = {h: problem.p(h).astype(np.float64) for h in allP}
    ph: dict[Path, float] = {(): 1.0}
    for h in allP[1:]:
        ph[h] = ph[h[:-1]] * float(cond[h[:-1]][h[-1]])
    children: dict[Path, list[Path]] = {h: [] for h in allP}
    for h in allP[1:]:
        children[h[:-1]].append(h)
    lossless = cert.kind is BoundKind.LOSSLESS

    # ---- primal
    H = {h: float(cert.reach.get(h, 0.0)) for h in allP[1:]}
    if set(cert.reach) - set(H):
        viol = math.inf
    H[()] = 1.0
    out_g: dict[tuple[Path, ...], list[float]] = {g: [] for g in prob}
    at_h: dict[Path, list[float]] = {h: [] for h in allP}
    terms = []
    for (gi, h), m in cert.plan.items():
        m = float(m)
        if not 0 <= gi < len(cert_groups) or h not in set(cert_groups[gi]):
            viol = math.inf
            continue
        g = cert_groups[gi]
        if g not in out_g:
            viol = math.inf
            continue
        viol = max(viol, -m)
        out_g[g].append(m)
        at_h[h].append(m)
        terms.append(len(h) * m)
    for g, ms in out_g.items():
        viol = max(viol, abs(math.fsum(ms) - prob[g]))
    for h in allP:
        viol = max(viol, -H[h])
        rhs = H[h] - math.fsum(H[c] for c in children[h])
        viol = max(viol, abs(math.fsum(at_h[h]) - rhs))
    for h in allP[1:]:
        cap = float(cond[h[:-1]][h[-1]]) * H[h[:-1]] if lossless else ph[h]
        viol = max(viol, H[h] - cap)
    primal = math.fsum(terms)

    # ---- dual
    lam = {}
    for gi, g in enumerate(cert_groups):
        lam[g] = float(cert.dual_group[gi])
    mu = {h: float(cert.dual_path.get(h, 0.0)) for h in allP}
    nu = {h: max(float(cert.dual_cap.get(h, 0.0)), 0.0) for h in allP[1:]}
    dviol = 0.0
    penalty = []
    for g in prob:
        lg = lam.get(g, 0.0)
        for h in g:
            red = lg + mu[h] - len(h)
            if red < 0:
                dviol = max(dviol, -red)
                penalty.append(-red * prob[g])
    for h in allP[1:]:
        red = mu[h[:-1]] - mu[h] + nu[h]
        if lossless:
            red -= math.fsum(float(cond[h][c[-1]]) * nu[c] for c in children[h])
        if red < 0:
            dviol = max(dviol, -red)
            penalty.append(-red)
    dterms = [prob[g] * lam.get(g, 0.0) for g in prob] + [mu[()]]
    for h in allP[1:]:
        if not lossless or len(h) == 1:
            dterms.append(ph[h] * nu[h])
    dual = math.fsum(dterms)
    dual_bound = dual + math.fsum(penalty)
    gap = dual_bound - primal
    value_error = abs(float(bound.value) - primal)
    ok = bool(
        viol <= BOUND_FEAS_TOL
        and abs(gap) <= CERT_GAP_TOL
        and value_error <= CERT_GAP_TOL
    )
    return BoundCheck(primal, float(viol), dual, dviol, dual_bound, gap, value_error, ok)
