r"""Recursive rejection sampling without replacement (Jeon et al. 2024;
Hu et al., arXiv 2502.18779).

Drafts are sampled from :math:`q` without replacement: draft :math:`i` has law
:math:`q_i = q\,1[\cdot \notin \{\bar x_1..\bar x_{i-1}\}] / q(\Omega \setminus \{\bar x_{<i}\})`.
Starting from :math:`r_1 = p`, draft :math:`i` is accepted with probability
:math:`\min(1, r_i(\bar x_i)/q_i(\bar x_i))`, else
:math:`r_{i+1} = (r_i - q_i)_+ / \sum (r_i - q_i)_+`; after :math:`n` rejections the output is
drawn from :math:`r_{n+1}`. Given the history, step :math:`i` is single-draft speculative sampling
from :math:`q_i` (the conditional law of
:math:`\bar x_i`) to :math:`r_i`, so the output law is :math:`p`. A rejected token :math:`x` has
:math:`r_i(x) < q_i(x)`, hence :math:`r_{i+1}(x) = 0`: the residual never needs a token that can no
longer be drafted.

Unlike the with-replacement rule, :math:`q_i` and therefore :math:`r_{i+1}` depend on *which* tokens
were rejected. The exact acceptance enumerates rejection histories: a history
:math:`(x_1..x_k)` of rejected tokens has probability :math:`\prod_j (q_j(x_j) - r_j(x_j))_+`, and

.. math:: a(y) = \sum_{\text{histories } h,\ |h| < n} \Pr(h)\, \min(r_{|h|+1}(y), q_{|h|+1}(y)).

That costs :math:`O(V^{n})` (capped by :data:`MAX_HISTORY_CELLS`). For :math:`n = 2` the sum over
:math:`x_1` collapses to a sort: :math:`r_2 = (p - q)_+/(1 - \beta_1)` does not depend on
:math:`x_1`, and the second step accepts with :math:`f(c) = \sum_y \min(r_2(y), c\,q(y))` at
:math:`c = 1/(1 - q(x_1))`, a concave piecewise-linear function evaluated for all :math:`x_1` by
one sort of :math:`r_2/q` and a binary search: :math:`O(V \log V)`. At larger :math:`V` and
:math:`n` use :meth:`RRSWithoutReplacement.acceptance_mc`, an unbiased path estimator.
Its acceptance is at most :math:`\alpha^*` of sampling without replacement (theory section 6).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validate import SpecTheoryInputError, check_n, check_rng, check_support_at_least
from ..schemes import Scheme, WithoutReplacement, exclusive_sums
from .base import Estimate, Verifier, estimate_from, law_pair, register
from .sd import accept_prob, categorical, check_drafts, recursive_rejection_law, validate_pair

__all__ = ["MAX_HISTORY_CELLS", "RRSWithoutReplacement"]

#: Largest number of (history, token) cells the exact enumeration may touch per level.
MAX_HISTORY_CELLS: int = 20_000_000


def _cells(q: np.ndarray, n: int) -> float:
    """Upper bound on the (history, token) cells of the deepest enumeration level."""
    k = float(np.count_nonzero(q > 0))
    return k ** max(n - 1, 0) * q.shape[-1]


def _exact_row(p: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    """Accepted mass by level-wise enumeration of rejection histories (one position)."""
    V = p.shape[0]
    a = np.zeros(V)
    R = p[None, :]  # current target per history
    removed = np.zeros((1, V), dtype=bool)  # tokens already drafted (and rejected)
    W = np.ones(1)  # probability of the history
    for i in range(n):
        qm = np.where(removed, 0.0, q[None, :])
        qi = qm / qm.sum(axis=1, keepdims=True)  # mass of the remaining tokens, summed directly
        a += W @ np.minimum(R, qi)
        if i == n - 1:
            break
        over = np.maximum(qi - R, 0.0)  # rejection weight of each drafted token
        rest = np.maximum(R - qi, 0.0)
        norm = rest.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            Rn = np.where(norm > 0, rest / norm, 0.0)
        h, x = np.nonzero((over > 0) & (W[:, None] > 0))
        if h.size == 0:
            break
        W = W[h] * over[h, x]
        R = Rn[h]
        removed = removed[h].copy()
        removed[np.arange(h.size), x] = True
    return a


def _n2_row(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Accepted mass for n = 2 in O(V log V) (see the module docstring)."""
    m1 = np.minimum(p, q)
    over = np.maximum(q - p, 0.0)  # Pr(draft 1 = x and rejected)
    rest = np.maximum(p - q, 0.0)
    norm = rest.sum()
    a = m1.copy()
    if norm <= 0:
        return a
    r2 = rest / norm
    # c_x = 1/(1 - q_x) with 1 - q_x summed over the other tokens: exclusive prefix plus suffix
    # sums (never cumsum - q, which cancels to 0 or to 1 next to a dominant entry).
    others = exclusive_sums(q)
    xs = np.flatnonzero(over > 0)
    c = 1.0 / others[xs]
    w = over[xs]
    with np.errstate(divide="ignore"):
        ratio = np.where(q > 0, r2 / np.where(q > 0, q, 1.0), np.inf)
    # Token y != x_1 gets step-2 mass min(r2(y), c q(y)); summed over x_1 with weight w:
    #   sum_x w_x min(r2_y, c_x q_y) = r2_y * sum_{c_x >= t_y} w_x + q_y * sum_{c_x < t_y} w_x c_x,
    # with t_y = r2_y / q_y. The self-term y = x_1 is 0 either way because r2(x_1) = 0.
    order_x = np.argsort(c)
    cs, ws = c[order_x], w[order_x]
    cw = np.concatenate([[0.0], np.cumsum(ws * cs)])
    wtot = np.concatenate([np.cumsum(ws[::-1])[::-1], [0.0]])
    j = np.searchsorted(cs, ratio, side="left")  # number of x with c_x < t_y
    return a + r2 * wtot[j] + q * cw[j]


@register
class RRSWithoutReplacement(Verifier):
    r"""Recursive rejection sampling with drafts sampled without replacement.

    ``acceptance`` / ``accepted_mass`` are exact: :math:`O(V \log V)` for ``n <= 2``, enumeration of
    rejection histories otherwise (raises when that exceeds :data:`MAX_HISTORY_CELLS`; use
    :meth:`acceptance_mc`). Batched ``(B, V)`` inputs are handled row by row.
    """

    name: ClassVar[str] = "rrs_wor"
    lossless: ClassVar[bool] = True

    def scheme(self, q: Any, n: int) -> Scheme:
        return WithoutReplacement(q, n)

    def exact_feasible(self, p: Any, q: Any, n: int) -> bool:
        n = check_n(n)
        if n <= 2:
            return True
        qv = np.atleast_2d(np.asarray(q, dtype=np.float64))
        return max(_cells(row, n) for row in qv) <= MAX_HISTORY_CELLS

    def _check(self, p: Any, q: Any, n: int) -> tuple[np.ndarray, np.ndarray, int]:
        n = check_n(n)
        pv, qv = validate_pair(p, q)
        check_support_at_least(
            qv, n, "q", "sampling n distinct drafts without replacement is undefined"
        )
        return pv, qv, n

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        pv, qv, n = self._check(p, q, n)
        P, Q = np.atleast_2d(pv), np.atleast_2d(qv)
        out = np.empty_like(P)
        for b in range(P.shape[0]):
            if n == 1:
                out[b] = np.minimum(P[b], Q[b])
            elif n == 2:
                out[b] = _n2_row(P[b], Q[b])
            else:
                cells = _cells(Q[b], n)
                if cells > MAX_HISTORY_CELLS:
                    row = f", row {b}" if pv.ndim == 2 else ""
                    raise SpecTheoryInputError(
                        f"argument 'q'{row}: exact RRS without replacement enumerates about "
                        f"{cells:.3g} rejection-history cells (V = {Q.shape[1]}, n = {n}), more "
                        f"than MAX_HISTORY_CELLS = {MAX_HISTORY_CELLS}; use acceptance_mc"
                    )
                out[b] = _exact_row(P[b], Q[b], n)
        return out if pv.ndim == 2 else out[0]

    def acceptance_mc(
        self,
        p: Any,
        q: Any,
        n: int,
        rng: np.random.Generator,
        samples: int = 1000,
        level: float = 0.99,
    ) -> Estimate:
        r"""Unbiased path estimator of the acceptance (one position; cost ``O(samples n V)``).

        Draw a rejection path from its law *given rejection* at each step (draft token
        :math:`\propto (q_i - r_i)_+`) and return the mean of :math:`1 - \prod_i (1 - \beta_i)`,
        where :math:`1 - \beta_i = \sum_y (q_i - r_i)_+` is the rejection probability of step
        :math:`i` on that path. Since :math:`\Pr(\text{all rejected}) = \mathbb{E}_{\text{path}}
        [\prod_i (1 - \beta_i)]` under this sampling, the estimator is unbiased, and it has far
        less variance than counting accepts.
        """
        check_rng(rng)
        pv, qv, n = self._check(p, q, n)
        if pv.ndim != 1:
            raise SpecTheoryInputError("argument 'p': acceptance_mc takes one position (V,)")
        S = int(samples)
        V = pv.shape[0]
        R = np.broadcast_to(pv, (S, V)).copy()
        removed = np.zeros((S, V), dtype=bool)
        surv = np.ones(S)
        for i in range(n):
            qm = np.where(removed, 0.0, qv[None, :])
            qi = qm / qm.sum(axis=1, keepdims=True)
            over = np.maximum(qi - R, 0.0)
            rej = over.sum(axis=1)
            surv = surv * rej
            if i == n - 1:
                break
            rest = np.maximum(R - qi, 0.0)
            norm = rest.sum(axis=1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                R = np.where(norm > 0, rest / norm, 0.0)
            cdf = np.cumsum(over, axis=1)
            u = rng.random(S) * cdf[:, -1]
            x = np.minimum((cdf <= u[:, None]).sum(axis=1), V - 1)
            ok = rej > 0
            removed[np.flatnonzero(ok), x[ok]] = True
        return estimate_from(1.0 - surv, level)

    def sample(
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator
    ) -> tuple[int, bool]:
        check_rng(rng)
        pv, qv = validate_pair(p, q, allow_batch=False)
        d = check_drafts(drafts, None, pv.shape[0])
        if len(set(d.tolist())) != d.size:
            raise SpecTheoryInputError(
                f"argument 'drafts': drafts without replacement must be distinct, got {d.tolist()}"
            )
        r = pv
        avail = qv.copy()
        for x in d.tolist():
            qi = avail / avail.sum()
            if rng.random() < accept_prob(r[x], qi[x]):
                return int(x), True
            rest = np.maximum(r - qi, 0.0)
            r = rest / rest.sum()
            avail[x] = 0.0
        return categorical(rng, r), False

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, qv, exact = law_pair(p, q)
        d = check_drafts(drafts, None, pv.shape[0])
        if len(set(d.tolist())) != d.size:
            raise SpecTheoryInputError(
                f"argument 'drafts': drafts without replacement must be distinct, got {d.tolist()}"
            )
        drawn = d.tolist()

        def step_law(i: int) -> np.ndarray:
            avail = qv.copy()
            avail[drawn[:i]] = 0 * qv[0]
            return avail / avail.sum()  # the remaining tokens' mass, summed directly

        return recursive_rejection_law(pv, drawn, step_law, exact)
