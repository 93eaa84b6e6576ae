r"""SpecTr's K-SEQ verifier (Sun et al., SpecTr, arXiv 2310.15141).

Drafts are i.i.d. from :math:`q`. For a parameter :math:`\rho \ge 1`, draft :math:`i` is accepted
with probability :math:`\min(1, p(\bar x_i)/(\rho\, q(\bar x_i)))`, in order, the first acceptance
wins. With :math:`\beta(\rho) = \sum_y \min(q(y), p(y)/\rho)` the per-draft acceptance, the
accepted mass is

.. math:: a_\rho(y) = \min(q(y), p(y)/\rho)\,\frac{1 - (1 - \beta)^n}{\beta}.

Losslessness needs :math:`a_\rho \le p`, i.e. :math:`(1 - (1 - \beta)^n)/\beta \le \rho`; SpecTr
takes the root :math:`\rho^* \in [1, n]` of :math:`1 - (1 - \beta(\rho))^n = \rho\,\beta(\rho)`
(found by bisection: the left side minus the right is :math:`\ge 0` at :math:`\rho = 1` and
:math:`\le 0` at :math:`\rho = n`). Then :math:`a(y) = \min(p(y), \rho^* q(y))`,

.. math:: \alpha_{\mathrm{K\text{-}SEQ}} = \sum_y \min(p(y), \rho^* q(y)),

and after :math:`n` rejections the output is drawn from the residual :math:`(p - \rho^* q)_+`
normalised. SpecTr proves :math:`\alpha_{\mathrm{K\text{-}SEQ}} \ge (1 - (1 - 1/n)^n)\,\alpha^* \ge
(1 - 1/e)\,\alpha^*` for i.i.d. drafts.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validate import check_n, check_rng
from ..schemes import IID, Scheme
from .base import Verifier, register
from .sd import categorical, check_drafts, validate_pair

__all__ = ["KSEQ", "RHO_BISECT_ITERS", "rho_star"]

#: Bisection steps for :math:`\rho^*` (the bracket [1, n] shrinks to below float64 resolution).
RHO_BISECT_ITERS: int = 100


def _beta(p: np.ndarray, q: np.ndarray, rho: np.ndarray) -> np.ndarray:
    return np.minimum(q, p / rho[..., None]).sum(axis=-1)


def rho_star(p: Any, q: Any, n: int) -> float | np.ndarray:
    r""":math:`\rho^*`, the root in :math:`[1, n]` of
    :math:`1 - (1 - \beta(\rho))^n = \rho\beta(\rho)` (bisection; batched over rows).
    Where :math:`\beta \equiv 0` (disjoint supports) any :math:`\rho` works and 1 is returned."""
    n = check_n(n)
    pv, qv = validate_pair(p, q)
    P, Q = np.atleast_2d(pv), np.atleast_2d(qv)
    lo = np.ones(P.shape[0])
    hi = np.full(P.shape[0], float(n))
    for _ in range(RHO_BISECT_ITERS):
        mid = 0.5 * (lo + hi)
        b = _beta(P, Q, mid)
        # 1 - (1 - b)^n with 1 - b computed as a sum of non-negative terms.
        one_minus_b = np.maximum(Q - P / mid[:, None], 0.0).sum(axis=1)
        g = 1.0 - one_minus_b**n - mid * b
        pos = g > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
        if np.all(hi - lo <= 4 * np.finfo(float).eps * hi):
            break
    out = 0.5 * (lo + hi)
    return float(out[0]) if pv.ndim == 1 else out


@register
class KSEQ(Verifier):
    r"""SpecTr K-SEQ with :math:`\rho^*` by bisection. Batched ``(B, V)``."""

    name: ClassVar[str] = "kseq"
    lossless: ClassVar[bool] = True

    def __init__(self) -> None:
        self._last: tuple[bytes, bytes, int, float] | None = None

    def _rho_cached(self, p: np.ndarray, q: np.ndarray, n: int) -> float:
        """:func:`rho_star` of one position, remembered for repeated calls on the same position
        (a decoder verifying several draft tuples, or a Monte Carlo loop)."""
        key = (p.tobytes(), q.tobytes(), n)
        if self._last is not None and self._last[:3] == key:
            return self._last[3]
        rho = float(rho_star(p, q, n))
        self._last = (*key, rho)
        return rho

    def scheme(self, q: Any, n: int) -> Scheme:
        return IID(q, n)

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        pv, qv = validate_pair(p, q)
        rho = np.asarray(rho_star(pv, qv, n))
        return np.minimum(pv, rho[..., None] * qv) if pv.ndim == 2 else np.minimum(pv, rho * qv)

    def sample(
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator
    ) -> tuple[int, bool]:
        check_rng(rng)
        pv, qv = validate_pair(p, q, allow_batch=False)
        d = check_drafts(drafts, None, pv.shape[0])
        rho = self._rho_cached(pv, qv, int(d.size))
        for x in d.tolist():
            if qv[x] <= 0:
                raise ValueError("argument 'drafts': a drafted token has zero probability under q")
            if rng.random() < min(1.0, pv[x] / (rho * qv[x])):
                return int(x), True
        return categorical(rng, np.maximum(pv - rho * qv, 0.0)), False

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, qv = validate_pair(p, q, allow_batch=False)
        d = check_drafts(drafts, None, pv.shape[0])
        rho = self._rho_cached(pv, qv, int(d.size))
        acc, rej = np.zeros(len(pv)), np.zeros(len(pv))
        alive = 1.0
        for x in d.tolist():
            if qv[x] <= 0:
                raise ValueError("argument 'drafts': a drafted token has zero probability under q")
            a = min(1.0, pv[x] / (rho * qv[x]))
            acc[x] += alive * a
            alive *= 1.0 - a
        res = np.maximum(pv - rho * qv, 0.0)
        if alive > 0 and res.sum() > 0:
            rej = alive * (res / res.sum())
        return acc, rej
