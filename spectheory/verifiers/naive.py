r"""A popular but **invalid** multi-draft rule, kept to show that the checks catch it.

Each i.i.d. draft :math:`\bar x_i \sim q` is accepted with probability
:math:`\min(1, p(\bar x_i)/q(\bar x_i))`, *without* updating the target to a residual between
drafts; after :math:`n` rejections the output comes from the single-draft residual
:math:`(p - q)_+`. With :math:`\beta = \sum \min(p, q)`,

.. math:: a(y) = \min(p(y), q(y))\,\frac{1 - (1 - \beta)^n}{\beta},\qquad
   \Pr(Y = y) = a(y) + (1 - \beta)^{n-1} (p(y) - q(y))_+ ,

which differs from :math:`p` whenever :math:`n \ge 2` and :math:`0 < \beta < 1`: the accepted part
over-weights tokens where :math:`q` is large (theory section 6). ``lossless = False``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validate import check_n, check_rng
from ..schemes import IID, Scheme
from .base import Verifier, finish_law, law_pair, law_zeros, register
from .sd import accept_prob, categorical, check_drafts, exact_accept_prob, validate_pair

__all__ = ["Naive"]


@register
class Naive(Verifier):
    r"""Accept each draft with :math:`\min(1, p/q)`, no residual update. NOT lossless."""

    name: ClassVar[str] = "naive"
    lossless: ClassVar[bool] = False

    def scheme(self, q: Any, n: int) -> Scheme:
        return IID(q, n)

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        n = check_n(n)
        pv, qv = validate_pair(p, q)
        m = np.minimum(pv, qv)
        reject = np.maximum(qv - pv, 0.0).sum(axis=-1, keepdims=True)  # 1 - beta
        # (1 - (1 - beta)^n) / beta = sum_{i<n} (1 - beta)^i, stable for small beta.
        factor = sum(reject**i for i in range(n))
        return m * factor

    def output_law(self, p: Any, q: Any, n: int) -> np.ndarray:
        r"""The exact output law :math:`a(y) + (1-\beta)^{n-1}(p - q)_+(y)` (not :math:`p`)."""
        pv, qv = validate_pair(p, q)
        reject = np.maximum(qv - pv, 0.0).sum(axis=-1, keepdims=True)
        return self.accepted_mass(pv, qv, n) + reject ** (check_n(n) - 1) * np.maximum(
            pv - qv, 0.0
        )

    def sample(
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator
    ) -> tuple[int, bool]:
        check_rng(rng)
        pv, qv = validate_pair(p, q, allow_batch=False)
        d = check_drafts(drafts, None, pv.shape[0])
        for x in d.tolist():
            if rng.random() < accept_prob(pv[x], qv[x]):
                return int(x), True
        return categorical(rng, np.maximum(pv - qv, 0.0)), False

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, qv, exact = law_pair(p, q)
        d = check_drafts(drafts, None, pv.shape[0])
        acc, rej = law_zeros(len(pv), exact), law_zeros(len(pv), exact)
        alive = 1 + 0 * pv[0]
        for x in d.tolist():
            a = exact_accept_prob(pv[x], qv[x])
            acc[x] += alive * a
            alive = alive * (1 - a)
        res = np.maximum(pv - qv, 0 * pv[0])
        tot = res.sum()
        if tot > 0:
            rej = alive * (res / tot)
        return finish_law(acc, rej, exact)
