r"""Independent checking of a :class:`~spectheory.result.Result`.

:func:`certify` never trusts solver numbers. It recomputes

* the **dual value** of the witness :math:`H`: :math:`1 + p(H) - Q(H^n)` (an upper bound on
  :math:`\alpha^*` for any :math:`H`), with ``p(H)`` summed by :func:`math.fsum` and :math:`Q(H^n)`
  from the scheme;
* with a plan: the **plan's feasibility** (non-negative flows on accepted edges only; each token
  set's outflow at most its mass :math:`Q(t)`, re-derived from the scheme's own enumeration; each
  token's inflow at most :math:`p(y)`) and its **primal value** (a lower bound);
* the **gap** between the two. A zero gap proves optimality (LP duality).
* with a quadtree certificate (``info["box_certificate"]``, two independent drafts): every leaf's
  lower bound, from the inputs alone (:func:`check_box_certificate`); the smallest plays the role
  of the primal value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._validate import SpecTheoryInputError, as_distribution, broadcast_pair
from .result import Certificate, Plan, Result
from .schemes import Scheme
from .tolerances import CERT_GAP_TOL, LP_MASS_FLOOR, PLAN_FEAS_TOL

__all__ = ["certify", "check_box_certificate", "check_plan"]

#: Smallest cell widening a quadtree certificate may use: below it a token's in/out test could be
#: decided by float64 rounding (its error is under 4 eps (p_i + q_1i + q_2i)).
BOX_CERT_MIN_PAD: float = 1e-12
#: Smallest slack a quadtree certificate may add to the mass sums when it shrinks a box.
BOX_CERT_MIN_MARGIN: float = 1e-13
#: Cells on the upper/right border of a quadtree certificate extend to this mass (every
#: :math:`q_j(H) \le q_j(\Omega)`, checked to be at most this).
BOX_CERT_TOP: float = 2.0
#: (cell, token) pairs evaluated at once by :func:`check_box_certificate` (memory bound).
_BOX_CHECK_CHUNK: int = 1 << 22


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


def _quadtree_tiles_square(leaves: np.ndarray) -> bool:
    """Whether dyadic cells ``(level, i, j)`` tile :math:`[0,1]^2`: all valid, none inside another
    (dyadic squares are nested or have disjoint interiors), total area exactly 1 (integer sum)."""
    if leaves.ndim != 2 or leaves.shape[1] != 3 or len(leaves) == 0:
        return False
    lev = leaves[:, 0]
    if lev.min() < 0 or lev.max() > 60:
        return False
    side = np.left_shift(np.int64(1), lev)
    if np.any(leaves[:, 1:] < 0) or np.any(leaves[:, 1] >= side) or np.any(leaves[:, 2] >= side):
        return False
    cells = {tuple(r) for r in leaves.tolist()}
    if len(cells) != len(leaves):
        return False
    for lv, i, j in cells:
        for up in range(1, lv + 1):
            if (lv - up, i >> up, j >> up) in cells:
                return False
    top = int(lev.max())
    return sum(4 ** (top - lv) for lv, _, _ in cells) == 4**top


def _box_node_bounds(
    p: np.ndarray, q1: np.ndarray, q2: np.ndarray, cell: np.ndarray, parent: np.ndarray,
    rounds: int, pad: float, margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Shrunk boxes ``(m, 4)`` and lower bounds ``(m,)`` of dyadic cells ``(m, 3)`` (see
    :func:`check_box_certificate`); ``inf`` bound for a cell that provably holds no minimiser."""
    lev, i, j = cell[:, 0], cell[:, 1].astype(np.float64), cell[:, 2].astype(np.float64)
    h = np.ldexp(1.0, -lev)
    last = cell[:, 1:] == np.left_shift(np.int64(1), lev)[:, None] - 1
    xl = np.maximum(i * h - pad, parent[:, 0])
    xh = np.minimum(np.where(last[:, 0], BOX_CERT_TOP, (i + 1) * h) + pad, parent[:, 1])
    yl = np.maximum(j * h - pad, parent[:, 2])
    yh = np.minimum(np.where(last[:, 1], BOX_CERT_TOP, (j + 1) * h) + pad, parent[:, 3])
    w = q1 * q2
    low_key, high_key = p - w, p + w
    empty = np.zeros(len(cell), dtype=bool)
    for r in range(rounds + 1):
        sure_in = low_key[None, :] < np.outer(yl, q1) + np.outer(xl, q2)
        maybe_in = high_key[None, :] <= np.outer(yh, q1) + np.outer(xh, q2)
        empty |= np.any(sure_in & ~maybe_in, axis=1)
        if r == rounds:
            break
        xl = np.maximum(xl, sure_in @ q1 - margin)
        xh = np.minimum(xh, maybe_in @ q1 + margin)
        yl = np.maximum(yl, sure_in @ q2 - margin)
        yh = np.minimum(yh, maybe_in @ q2 + margin)
        empty |= (xl > xh) | (yl > yh)
    bound = np.full(len(cell), -np.inf)
    for a, b in ((yl, xh), (yh, xl)):
        # x y <= b y + a x - a b on the box (McCormick), so F >= a b + sum over H of c.
        c = p[None, :] - np.outer(a, q1) - np.outer(b, q2)
        fixed = np.sum(np.where(sure_in, c, 0.0), axis=1)
        optional = np.sum(np.where(maybe_in & ~sure_in, np.minimum(c, 0.0), 0.0), axis=1)
        bound = np.maximum(bound, a * b + fixed + optional)
    bound[empty] = np.inf
    bound[np.isnan(bound)] = -np.inf  # never let a NaN pass as a bound
    return np.stack([xl, xh, yl, yh], axis=1), bound


def check_box_certificate(p: np.ndarray, q1: np.ndarray, q2: np.ndarray, cert: Any) -> float:
    r"""Recompute a quadtree certificate of :math:`\min_H [p(H) - q_1(H) q_2(H)]`; return the bound.

    ``cert`` carries ``leaves`` (``(K, 3)`` dyadic cells ``(level, i, j)`` of the
    :math:`(x, y) = (q_1(H), q_2(H))` plane; a cell on the upper edge extends to ``BOX_CERT_TOP``),
    and ``rounds``, ``pad``, ``margin``. The check uses nothing else from the solver:

    1. the leaves tile :math:`[0,1]^2` (:func:`_quadtree_tiles_square`);
    2. for every node of the tree, top-down: box = (cell widened by ``pad``) :math:`\cap` parent box,
       shrunk ``rounds`` times by :math:`x \in [q_1(L), q_1(U)]`, :math:`y \in [q_2(L), q_2(U)]`
       with :math:`L = \{p_i - q_{1i}q_{2i} < y_l q_{1i} + x_l q_{2i}\}` (tokens in every minimiser
       with :math:`(x,y)` in the box) and :math:`U = \{p_i + q_{1i}q_{2i} \le y_h q_{1i} + x_h
       q_{2i}\}` (tokens possibly in one); empty box or :math:`L \not\subseteq U`: no minimiser;
    3. at each leaf, the McCormick bound :math:`ab + \sum_{L} c_i + \sum_{U \setminus L}
       \min(0, c_i)`, :math:`c_i = p_i - a q_{1i} - b q_{2i}`, :math:`(a,b) \in \{(y_l, x_h),
       (y_h, x_l)\}` (``docs/independent.md`` §5 proves each step).

    Returns
    -------
    float
        The smallest leaf bound (a lower bound on :math:`\min_H F(H)`), or ``-inf`` when the
        certificate is malformed or uses a ``pad`` / ``margin`` below ``BOX_CERT_MIN_PAD`` /
        ``BOX_CERT_MIN_MARGIN``.
    """
    leaves = np.asarray(cert.leaves, dtype=np.int64)
    rounds, pad, margin = int(cert.rounds), float(cert.pad), float(cert.margin)
    if rounds < 0 or not pad >= BOX_CERT_MIN_PAD or not margin >= BOX_CERT_MIN_MARGIN:
        return -math.inf
    if not _quadtree_tiles_square(leaves):
        return -math.inf
    p, q1, q2 = (np.asarray(a, dtype=np.float64) for a in (p, q1, q2))
    finite = all(bool(np.all(np.isfinite(a))) for a in (p, q1, q2))
    if not (finite and np.sum(q1) <= BOX_CERT_TOP and np.sum(q2) <= BOX_CERT_TOP):
        return -math.inf
    leaf_set = {tuple(r) for r in leaves.tolist()}
    nodes: set[tuple[int, int, int]] = set()
    for lv, i, j in leaf_set:
        for up in range(lv + 1):
            nodes.add((lv - up, i >> up, j >> up))
    boxes: dict[tuple[int, int, int], np.ndarray] = {}
    lowest = math.inf
    chunk = max(1, _BOX_CHECK_CHUNK // max(len(p), 1))
    for lv in range(int(leaves[:, 0].max()) + 1):
        here = sorted(n for n in nodes if n[0] == lv)
        for s in range(0, len(here), chunk):
            part = here[s : s + chunk]
            cell = np.array(part, dtype=np.int64)
            parent = np.array(
                [
                    boxes[(a - 1, i >> 1, j >> 1)] if a > 0
                    else np.array([-pad, BOX_CERT_TOP + pad, -pad, BOX_CERT_TOP + pad])
                    for a, i, j in part
                ]
            )
            box, bound = _box_node_bounds(p, q1, q2, cell, parent, rounds, pad, margin)
            for k, node in enumerate(part):
                boxes[node] = box[k]
                if node in leaf_set:
                    lowest = min(lowest, float(bound[k]))
    return lowest


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
    if not isinstance(result, Result):
        raise SpecTheoryInputError(
            f"argument 'result': expected a Result of spectheory.optimal_acceptance, got "
            f"{type(result).__name__} {result!r:.60}"
        )
    if not isinstance(scheme, Scheme):
        raise SpecTheoryInputError(
            f"argument 'scheme': expected a spectheory scheme, got {type(scheme).__name__}"
        )
    p = as_distribution(p, "p", normalize=normalize)
    broadcast_pair(p, scheme.batch_shape, scheme.V)
    V_res = np.shape(result.witness)[-1] if np.ndim(result.witness) else None
    if V_res != scheme.V:
        raise SpecTheoryInputError(
            f"argument 'result': its witness has vocabulary size {V_res}, but the scheme has "
            f"V = {scheme.V} (was the result computed for these inputs?)"
        )
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
    box_certs = result.info.get("box_certificate")
    if box_certs is not None and plans is None:
        # Quadtree certificate (two independent drafts): recompute every leaf bound.
        certs = (box_certs,) if single else tuple(box_certs)
        lower = np.full(B, np.nan)
        for b in range(B):
            row = scheme.row(b)
            qs = getattr(row, "qs", None)
            if certs[b] is None:
                continue
            if qs is None or len(qs) != 2:
                lower[b] = -math.inf
                continue
            lower[b] = 1.0 + check_box_certificate(p2[b], qs[0], qs[1], certs[b])
        gaps = dual - lower
        checked = ~np.isnan(lower)
        ok = ok and bool(np.all(np.abs(gaps[checked]) <= CERT_GAP_TOL))
        gap = float(gaps[0]) if single else gaps
        primal_out = float(lower[0]) if single else lower
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
