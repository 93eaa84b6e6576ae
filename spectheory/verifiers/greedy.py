r"""The greedy-draft verifier (Hu et al., arXiv 2502.18779).

Greedy drafts: the top-:math:`(n-1)` tokens :math:`D` of :math:`q` are always drafted (ranked by
:math:`q` descending, ties by smaller index), and the last draft :math:`y` is sampled from
:math:`m = q\,1[\cdot \notin D] / q(\Omega \setminus D)`. The verifier:

1. accept :math:`y` with probability :math:`\min(1, p(y)/m(y))`;
2. otherwise, with probability :math:`\kappa = p(D) / \sum_{z \notin D} (m(z) - p(z))_+`, output a
   token of :math:`D` drawn with probabilities :math:`\propto p` on :math:`D` (also an acceptance);
3. otherwise output a token from the residual :math:`(p - m)_+` on :math:`\Omega \setminus D`.

:math:`\kappa \le 1` because :math:`\sum_{z \notin D}(m - p)_+ \ge \sum_{z\notin D}(m - p) = p(D)`.
Token :math:`d \in D` is output with probability
:math:`\kappa \sum_z (m(z) - p(z))_+ \cdot p(d)/p(D) = p(d)`; token :math:`z \notin D` with
:math:`\min(p, m)(z) + (p(z) - m(z))_+ = p(z)` (step 3 has total mass
:math:`1 - p(D) - \sum_{z\notin D}\min(p, m) = \sum_{z \notin D}(p - m)_+`). So the rule is lossless
and

.. math::

   \alpha_{\mathrm{greedy}} = p(D)
   + \sum_{y \notin D} \min\bigl(p(y), q(y)/q(\Omega\setminus D)\bigr),

which is :math:`\alpha^*` of the greedy scheme (theory section 3): the verifier is optimal.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validate import SpecTheoryInputError, check_n, check_rng, check_support_at_least
from ..schemes import Greedy, Scheme
from .base import Verifier, finish_law, law_pair, law_zeros, register
from .sd import categorical, check_drafts, validate_pair

__all__ = [
    "GreedyVerifier",
    "fixed_set_accepted_mass",
    "fixed_set_sample",
    "fixed_set_tuple_law",
]


def fixed_set_accepted_mass(p: np.ndarray, q: np.ndarray, D: np.ndarray) -> np.ndarray:
    r"""Accepted mass when the tokens of mask ``D`` are always drafted and one more draft comes
    from :math:`q` restricted to :math:`\Omega \setminus D`: :math:`p` on :math:`D`,
    :math:`\min(p, m)` elsewhere."""
    rest = np.sum(np.where(D, 0.0, q), axis=-1, keepdims=True)  # q(Omega \ D), summed directly
    m = np.where(D, 0.0, q / rest)
    return np.where(D, p, np.minimum(p, m))


def fixed_set_sample(
    p: np.ndarray, q: np.ndarray, D: np.ndarray, y: int, rng: np.random.Generator
) -> tuple[int, bool]:
    """The three-step rule of the module docstring for one position (``D`` a boolean mask)."""
    rest = float(np.sum(np.where(D, 0.0, q)))
    m = np.where(D, 0.0, q / rest)
    if m[y] <= 0:
        raise SpecTheoryInputError(
            "argument 'drafts': the sampled draft has zero probability under q outside the "
            "fixed drafts"
        )
    if rng.random() < min(1.0, p[y] / m[y]):
        return int(y), True
    pD = float(np.sum(np.where(D, p, 0.0)))
    over = float(np.sum(np.where(D, 0.0, np.maximum(m - p, 0.0))))
    kappa = min(1.0, pD / over) if over > 0 else 0.0
    if rng.random() < kappa:
        return categorical(rng, np.where(D, p, 0.0)), True
    return categorical(rng, np.where(D, 0.0, np.maximum(p - m, 0.0))), False


def fixed_set_tuple_law(
    p: np.ndarray, q: np.ndarray, D: np.ndarray, y: int, exact: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``(acc, rej)`` of :func:`fixed_set_sample` given the sampled draft ``y`` (floats, or
    object arrays of Fractions with ``exact``)."""
    zero = 0 * p[0]
    rest = np.where(D, zero, q).sum()
    m = np.where(D, zero, q / rest)
    if m[y] <= 0:
        raise SpecTheoryInputError(
            "argument 'drafts': the sampled draft has zero probability under q outside the "
            "fixed drafts"
        )
    acc, rej = law_zeros(len(p), exact), law_zeros(len(p), exact)
    r = p[y] / m[y]
    a = r if r < 1 else zero + 1
    acc[y] += a
    pD = np.where(D, p, zero).sum()
    over = np.where(D, zero, np.maximum(m - p, zero)).sum()
    kappa = zero
    if over > 0:
        kappa = pD / over if pD < over else zero + 1
    if pD > 0 and kappa > 0:
        acc = acc + np.where(D, ((1 - a) * kappa) * (p / pD), zero)
    res = np.where(D, zero, np.maximum(p - m, zero))
    tot = res.sum()
    if tot > 0:
        rej = ((1 - a) * (1 - kappa)) * (res / tot)
    return finish_law(acc, rej, exact)


@register
class GreedyVerifier(Verifier):
    r"""Optimal verifier for greedy drafts (``n >= 2``; ``n = 1`` is single-draft SD). Batched
    ``(B, V)``. Drafts are ``(d_1, ..., d_{n-1}, y)``: the fixed tokens (any order) then the
    sampled one."""

    name: ClassVar[str] = "greedy"
    lossless: ClassVar[bool] = True

    def scheme(self, q: Any, n: int) -> Scheme:
        return Greedy(q, n)

    def _D(self, q: np.ndarray, n: int) -> np.ndarray:
        check_support_at_least(
            q, n, "q", "the last greedy draft needs mass outside the top n - 1 tokens"
        )
        fixed = np.argsort(-q, axis=-1, kind="stable")[..., : n - 1]
        D = np.zeros(q.shape, dtype=bool)
        np.put_along_axis(D, fixed, True, axis=-1)
        return D

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        n = check_n(n)
        pv, qv = validate_pair(p, q)
        return fixed_set_accepted_mass(pv, qv, self._D(qv, n))

    def sample(
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator
    ) -> tuple[int, bool]:
        check_rng(rng)
        pv, qv = validate_pair(p, q, allow_batch=False)
        d = check_drafts(drafts, None, pv.shape[0])
        n = int(d.size)
        D = self._D(qv, n)
        if sorted(d[:-1].tolist()) != np.flatnonzero(D).tolist() or D[d[-1]]:
            raise SpecTheoryInputError(
                f"argument 'drafts': expected the top-{n - 1} tokens of q "
                f"{np.flatnonzero(D).tolist()} followed by one other token, got {d.tolist()}"
            )
        return fixed_set_sample(pv, qv, D, int(d[-1]), rng)

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, qv, exact = law_pair(p, q)
        d = check_drafts(drafts, None, pv.shape[0])
        n = int(d.size)
        D = self._D(np.asarray(qv, dtype=np.float64), n)
        if sorted(d[:-1].tolist()) != np.flatnonzero(D).tolist() or D[d[-1]]:
            raise SpecTheoryInputError(
                f"argument 'drafts': expected the top-{n - 1} tokens of q "
                f"{np.flatnonzero(D).tolist()} followed by one other token, got {d.tolist()}"
            )
        return fixed_set_tuple_law(pv, qv, D, int(d[-1]), exact)
