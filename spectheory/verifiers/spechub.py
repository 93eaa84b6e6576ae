r"""The SpecHub verifier for two drafts (Sun et al., "SpecHub: Provable Acceptance Rate Analysis for
Multi-Draft Speculative Decoding", EMNLP 2024).

Draft law (:class:`~spectheory.schemes.Hub`): hub :math:`a = \arg\max q`; :math:`\bar x_1 \sim q`;
if :math:`\bar x_1 = a` then :math:`\bar x_2 \sim q(\cdot\mid\ne a)`, else :math:`\bar x_2 = a`.
Every tuple is a set :math:`\{a, y\}` with :math:`y \ne a`, and the set has probability
:math:`q(a) q(y)/(1 - q(a)) + q(y) = q(y)/(1 - q(a)) = m(y)`: exactly the law of greedy drafts with
:math:`D = \{a\}`. The verifier therefore is the greedy rule with :math:`D = \{a\}`
(:mod:`spectheory.verifiers.greedy`): accept :math:`y` with :math:`\min(1, p(y)/m(y))`, else output
:math:`a` with probability :math:`p(a)/\sum_{z\ne a}(m(z) - p(z))_+`, else resample from
:math:`(p - m)_+`. Its acceptance

.. math:: \alpha_{\mathrm{SpecHub}} = p(a) + \sum_{y \ne a} \min\bigl(p(y), q(y)/(1 - q(a))\bigr)

is :math:`\alpha^*` of the hub scheme (theory section 6), with :math:`1 - q(a)` summed over the
other tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validate import SpecTheoryInputError, check_n, check_rng, check_support_at_least
from ..schemes import Hub, Scheme
from .base import Verifier, law_pair, register
from .greedy import fixed_set_accepted_mass, fixed_set_sample, fixed_set_tuple_law
from .sd import check_drafts, validate_pair

__all__ = ["SpecHub"]


def _hub_mask(q: np.ndarray) -> np.ndarray:
    check_support_at_least(q, 2, "q", "SpecHub needs mass outside the hub token")
    D = np.zeros(q.shape, dtype=bool)
    np.put_along_axis(D, np.argmax(q, axis=-1)[..., None], True, axis=-1)
    return D


@register
class SpecHub(Verifier):
    r"""SpecHub (``n = 2`` only). Batched ``(B, V)``."""

    name: ClassVar[str] = "spechub"
    lossless: ClassVar[bool] = True

    @staticmethod
    def _n2(n: int) -> None:
        if check_n(n) != 2:
            raise SpecTheoryInputError(f"argument 'n': SpecHub verifies exactly 2 drafts, got {n}")

    def scheme(self, q: Any, n: int) -> Scheme:
        self._n2(n)
        return Hub(q)

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        self._n2(n)
        pv, qv = validate_pair(p, q)
        return fixed_set_accepted_mass(pv, qv, _hub_mask(qv))

    def sample(
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator
    ) -> tuple[int, bool]:
        check_rng(rng)
        pv, qv = validate_pair(p, q, allow_batch=False)
        d = check_drafts(drafts, 2, pv.shape[0])
        D = _hub_mask(qv)
        a = int(np.flatnonzero(D)[0])
        x1, x2 = int(d[0]), int(d[1])
        if a not in (x1, x2) or x1 == x2:
            raise SpecTheoryInputError(
                f"argument 'drafts': a SpecHub tuple holds the hub token {a} and one other token, "
                f"got {d.tolist()}"
            )
        y = x2 if x1 == a else x1
        return fixed_set_sample(pv, qv, D, y, rng)

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, qv, exact = law_pair(p, q)
        d = check_drafts(drafts, 2, pv.shape[0])
        D = _hub_mask(np.asarray(qv, dtype=np.float64))
        a = int(np.flatnonzero(D)[0])
        x1, x2 = int(d[0]), int(d[1])
        if a not in (x1, x2) or x1 == x2:
            raise SpecTheoryInputError(
                f"argument 'drafts': a SpecHub tuple holds the hub token {a} and one other token, "
                f"got {d.tolist()}"
            )
        return fixed_set_tuple_law(pv, qv, D, x2 if x1 == a else x1, exact)
