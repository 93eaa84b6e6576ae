r"""Independent checking of a :class:`~spectheory.result.Result`.

:func:`certify` never trusts solver numbers. It recomputes

* the **dual value** of the witness :math:`H`: :math:`1 + p(H) - Q(H^n)` (an upper bound on
  :math:`\alpha^*` for any :math:`H`), with ``p(H)`` summed by :func:`math.fsum` and :math:`Q(H^n)`
  from the scheme;
* with a plan: the **plan's feasibility** (non-negative flows on accepted edges only; each token
  set's outflow at most its mass :math:`Q(t)`, re-derived from the scheme's own enumeration; each
  token's inflow at most :math:`p(y)`) and its **primal value** (a lower bound);
* the **gap** between the two. A zero gap proves optimality (LP duality).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._validate import as_distribution
from .result import Certificate, Plan, Result
from .schemes import Scheme
from .tolerances import CERT_GAP_TOL, LP_MASS_FLOOR, PLAN_FEAS_TOL

__all__ = ["certify", "check_plan"]


def _set_masses(scheme: Scheme) -> dict[frozenset[int], float]:
    tuples, probs = scheme.enumerate()
    out: dict[frozenset[int], float] = {}
    for t, pr in zip(tuples.tolist(), probs.tolist(), strict=True):
        k = frozenset(t)
        out[k] = out.get(k, 0.0) + pr
    return out


def check_plan(plan: Plan, p: np.ndarray, scheme: Scheme) -> tuple[float, float]:
    """Return ``(primal_value, worst_violation)`` of ``plan`` for one position, recomputed."""
    masses = _set_masses(scheme)
    viol = 0.0
    viol = max(viol, float(-np.min(plan.flow, initial=0.0)))
    sets = [frozenset(int(x) for x in row if x >= 0) for row in plan.sets]
    for e_set, e_tok in zip(plan.edge_set.tolist(), plan.edge_token.tolist(), strict=True):
        if e_tok not in sets[e_set]:
            viol = max(viol, math.inf)
    out = np.bincount(plan.edge_set, weights=plan.flow, minlength=len(sets))
    for i, s in enumerate(sets):
        true_mass = masses.get(s, 0.0)
        # masses below the LP floor may have been dropped by the solver: only an excess counts.
        viol = max(viol, float(out[i] - true_mass))
    inn = np.bincount(plan.edge_token, weights=plan.flow, minlength=len(p))
    viol = max(viol, float(np.max(inn - p, initial=0.0)))
    primal = math.fsum(plan.flow.tolist())
    return primal, max(viol, 0.0)


def _dual_value(p: np.ndarray, H: np.ndarray, scheme: Scheme) -> float:
    pH = math.fsum(p[H].tolist())
    return 1.0 + pH - float(scheme.prob_all_in(H))


def certify(result: Result, p: Any, scheme: Scheme, *, normalize: bool = False) -> Certificate:
    """Recompute the witness's dual value and, when present, the plan's feasibility and value.

    Parameters
    ----------
    result
        A result of :func:`spectheory.optimal_acceptance` (any method).
    p, scheme
        The inputs it was computed for.

    Returns
    -------
    Certificate
        ``ok`` is True when the witness reproduces ``result.value`` within ``CERT_GAP_TOL`` and,
        with a plan, the plan is feasible within ``PLAN_FEAS_TOL`` and closes the gap within
        ``CERT_GAP_TOL`` (plus any mass the LP dropped below ``LP_MASS_FLOOR``).
    """
    p = as_distribution(p, "p", normalize=normalize)
    single = not result.batched
    B = 1 if single else len(np.asarray(result.value))
    p2 = np.broadcast_to(p, (B, p.shape[-1]))
    W = np.atleast_2d(result.witness)
    values = np.atleast_1d(np.asarray(result.value, dtype=np.float64))
    plans = None
    if result.plan is not None:
        plans = (result.plan,) if single else result.plan
    dual = np.empty(B)
    primal = np.full(B, np.nan)
    worst_viol = 0.0
    slack = float(result.info.get("dropped_mass", 0.0)) if single else 0.0
    for b in range(B):
        row = scheme.row(b)
        dual[b] = _dual_value(p2[b], W[b], row)
        if plans is not None and plans[b] is not None:
            primal[b], v = check_plan(plans[b], p2[b], row)
            worst_viol = max(worst_viol, v)
            _, probs = row.enumerate()
            slack = max(slack, float(np.sum(probs[probs < LP_MASS_FLOOR])))
    value_error = float(np.max(np.abs(values - dual)))
    ok = bool(np.isfinite(value_error) and value_error <= CERT_GAP_TOL)
    gap: float | np.ndarray | None = None
    primal_out: float | np.ndarray | None = None
    if plans is not None:
        gaps = dual - primal
        ok = ok and worst_viol <= PLAN_FEAS_TOL and bool(np.all(np.abs(gaps) <= CERT_GAP_TOL + slack))
        gap = float(gaps[0]) if single else gaps
        primal_out = float(primal[0]) if single else primal
    return Certificate(
        dual_value=float(dual[0]) if single else dual,
        primal_value=primal_out,
        gap=gap,
        plan_violation=worst_viol,
        value_error=value_error,
        ok=ok,
    )
