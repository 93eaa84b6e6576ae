r"""The acceptance-bias frontier: the largest acceptance of any rule whose output is within total
variation :math:`\varepsilon` of the target.

.. math::

   \alpha^*_\varepsilon(p, Q) = \max_{o:\ \mathrm{TV}(o, p) \le \varepsilon} \alpha^*(o, Q),

where :math:`\alpha^*(o, Q)` is the optimal acceptance of a rule whose output law is :math:`o`
(the transport LP with :math:`o` in place of :math:`p`). With :math:`o` as a variable the problem
is still one LP (max-flow form of :mod:`spectheory.solvers.lp`, accepted flow into token :math:`y`
at most :math:`o(y)`, plus :math:`\sum_y |o(y) - p(y)| \le 2\varepsilon`): :func:`frontier`
solves it with HiGHS for small vocabularies. Rejected mass is free to go anywhere, so any
:math:`o` with accepted flow :math:`a \le o` is realised by a rule.

**Closed form, every scheme** (:func:`frontier_closed`):
:math:`\alpha^*_\varepsilon(p, Q) = \min\bigl(1, \alpha^*(p, Q) + \varepsilon\bigr)`; for one draft
(:func:`frontier_n1`) :math:`\min\bigl(1, \sum_y \min(p(y), q(y)) + \varepsilon\bigr)`.

*Proof.* Upper bound: in the subset form :math:`\alpha^*(o, Q) = \min_H [1 + o(H) - Q(H^n)]`
every term moves by at most :math:`\mathrm{TV}(o, p)` when :math:`p` is replaced by :math:`o`, so
:math:`\alpha^*(o, Q) \le \alpha^*(p, Q) + \varepsilon`, and acceptance is at most 1.
Attainment: take an optimal flow :math:`f` for :math:`p` (accepted mass :math:`a(y) \le p(y)`,
total :math:`\alpha^*`). It leaves source capacity :math:`r_t = Q(t) - \sum_y f(t, y) \ge 0` at the
draft tuples and slack :math:`s_y = p(y) - a(y) \ge 0` at the tokens, both of total
:math:`1 - \alpha^*`. Let :math:`\lambda = \min(1, \varepsilon / (1 - \alpha^*))`, pick any token
:math:`y(t) \in t` of every tuple and set

.. math:: o = p - \lambda s + \lambda \textstyle\sum_t r_t\, \delta_{y(t)} .

Then :math:`o \ge a \ge 0`, :math:`\sum o = 1`, :math:`\mathrm{TV}(o, p) \le \lambda (1 -
\alpha^*) \le \varepsilon`, and the flow :math:`f + \lambda r_t` on the edges :math:`(t, y(t))`
respects the capacities :math:`Q(t)` and :math:`o(y)` (token :math:`y` receives
:math:`a(y) + \lambda \sum_{t: y(t) = y} r_t \le o(y)`), with value :math:`\alpha^* + \lambda(1 -
\alpha^*) = \min(1, \alpha^* + \varepsilon)`. For one draft :math:`\alpha^* = \sum\min(p, q)`.
:math:`\square`

The LP (:func:`frontier` with ``method="lp"``) is kept as an independent check; the tests compare
it with the closed form on random instances of every scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Frontier", "frontier", "frontier_closed", "frontier_n1"]


@dataclass(frozen=True, eq=False)
class Frontier:
    """``acceptance[i]``: the largest acceptance within TV ``eps[i]`` of ``p``; ``laws[i]`` the
    output law that attains it (LP only); ``alpha_star`` the lossless value (``eps = 0``)."""

    eps: np.ndarray
    acceptance: np.ndarray
    alpha_star: float
    laws: np.ndarray | None = None


def frontier_n1(p: Any, q: Any, eps: Any) -> np.ndarray:
    r"""Closed form for one draft: :math:`\min(1, \sum\min(p, q) + \varepsilon)` (proof above)."""
    from ..verifiers.sd import validate_pair

    pv, qv = validate_pair(p, q, allow_batch=False)
    e = np.asarray(eps, dtype=np.float64)
    if np.any(e < 0):
        raise ValueError("argument 'eps': must be >= 0")
    return np.minimum(1.0, float(np.minimum(pv, qv).sum()) + e)


def frontier_closed(p: Any, scheme: Any, eps: Any) -> np.ndarray:
    r""":math:`\min(1, \alpha^*(p, Q) + \varepsilon)` for any scheme (proof above)."""
    from ..api import optimal_acceptance

    e = np.asarray(eps, dtype=np.float64)
    if np.any(e < 0):
        raise ValueError("argument 'eps': must be >= 0")
    return np.minimum(1.0, float(optimal_acceptance(p, scheme).value) + e)


def frontier(p: Any, scheme: Any, eps: Any, *, method: str = "closed") -> Frontier:
    r"""The frontier :math:`\alpha^*_\varepsilon(p, Q)` at the budgets ``eps``.

    ``method="closed"``: :func:`frontier_closed` (any vocabulary size where :math:`\alpha^*` is
    computable). ``method="lp"``: one LP per value of ``eps`` (HiGHS; small ``V``), which also
    returns an output law attaining each value.

    Parameters
    ----------
    p
        Target ``(V,)``.
    scheme
        A draft scheme whose tuples can be enumerated (small ``V``).
    eps
        Total variation budget(s) in ``[0, 1]``.
    """
    from .._validate import as_distribution

    pv = as_distribution(p, "p", allow_batch=False)
    es = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    if np.any(es < 0) or np.any(es > 1):
        raise ValueError("argument 'eps': must lie in [0, 1]")
    if method == "closed":
        from ..api import optimal_acceptance

        a0 = float(optimal_acceptance(pv, scheme).value)
        return Frontier(es, np.minimum(1.0, a0 + es), a0, None)
    if method != "lp":
        raise ValueError(f"argument 'method': expected 'closed' or 'lp', got {method!r}")
    from ..solvers.lp import build_lp

    lp = build_lp(pv, scheme)
    acc = np.empty(len(es))
    laws = np.empty((len(es), len(pv)))
    for i, e in enumerate(es):
        acc[i], laws[i] = _solve(lp, pv, float(e))
    a0 = float(_solve(lp, pv, 0.0)[0])
    return Frontier(es, acc, a0, laws)


def _solve(lp: Any, p: np.ndarray, eps: float) -> tuple[float, np.ndarray]:
    import highspy
    import scipy.sparse as sp

    from ..solvers.lp import _new_highs
    from ..tolerances import HIGHS_TOL

    E, T, V = lp.num_edges, lp.num_sets, len(p)
    nc = E + 2 * V  # flows, o, d
    rows, cols, vals = [], [], []
    lo, hi = [], []
    inf = highspy.kHighsInf
    r = 0
    # set capacities: sum of a set's edges <= its mass
    rows += lp.edge_set.tolist()
    cols += list(range(E))
    vals += [1.0] * E
    lo += [-inf] * T
    hi += lp.mass.tolist()
    r += T
    # token capacities: inflow - o_y <= 0
    rows += (r + lp.edge_token).tolist()
    cols += list(range(E))
    vals += [1.0] * E
    rows += [r + y for y in range(V)]
    cols += [E + y for y in range(V)]
    vals += [-1.0] * V
    lo += [-inf] * V
    hi += [0.0] * V
    r += V
    # sum o = 1
    rows += [r] * V
    cols += [E + y for y in range(V)]
    vals += [1.0] * V
    lo += [1.0]
    hi += [1.0]
    r += 1
    # |o - p| <= d:  o - d <= p ; o + d >= p
    for y in range(V):
        rows += [r, r, r + 1, r + 1]
        cols += [E + y, E + V + y, E + y, E + V + y]
        vals += [1.0, -1.0, 1.0, 1.0]
        lo += [-inf, float(p[y])]
        hi += [float(p[y]), inf]
        r += 2
    # sum d <= 2 eps
    rows += [r] * V
    cols += [E + V + y for y in range(V)]
    vals += [1.0] * V
    lo += [-inf]
    hi += [2.0 * eps]
    r += 1
    A = sp.csc_matrix((vals, (rows, cols)), shape=(r, nc))
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("primal_feasibility_tolerance", HIGHS_TOL)
    h.setOptionValue("dual_feasibility_tolerance", HIGHS_TOL)
    model = highspy.HighsLp()
    model.num_col_ = nc
    model.num_row_ = r
    model.sense_ = highspy.ObjSense.kMaximize
    model.col_cost_ = np.concatenate([np.ones(E), np.zeros(2 * V)])
    model.col_lower_ = np.zeros(nc)
    model.col_upper_ = np.full(nc, inf)
    model.row_lower_ = np.asarray(lo, dtype=np.float64)
    model.row_upper_ = np.asarray(hi, dtype=np.float64)
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = A.indptr.astype(np.int32)
    model.a_matrix_.index_ = A.indices.astype(np.int32)
    model.a_matrix_.value_ = A.data.astype(np.float64)
    h.passModel(model)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:  # pragma: no cover
        raise RuntimeError(f"frontier LP: {h.modelStatusToString(h.getModelStatus())}")
    sol = np.asarray(h.getSolution().col_value, dtype=np.float64)
    return float(sol[:E].sum()), np.maximum(sol[E : E + V], 0.0)
