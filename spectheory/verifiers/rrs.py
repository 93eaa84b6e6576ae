r"""Recursive rejection sampling with replacement (SpecInfer; Miao et al. 2024).

Drafts :math:`\bar x_1, \dots, \bar x_n` are i.i.d. from :math:`q` (or independent from per-draft
models :math:`q_1, \dots, q_n`). Starting from :math:`r_1 = p`, draft :math:`i` is accepted with
probability :math:`\min(1, r_i(\bar x_i)/q_i(\bar x_i))`; on rejection the target is replaced by the
residual

.. math:: r_{i+1} = \frac{(r_i - q_i)_+}{1 - \beta_i}, \qquad \beta_i = \sum_y \min(r_i(y), q_i(y)),

and after :math:`n` rejections the output is drawn from :math:`r_{n+1}`. Each step is single-draft
speculative sampling from :math:`q_i` to :math:`r_i`, whose output law is :math:`r_i` (given that
step is reached), so by induction the output law is :math:`p`. Exactly (theory section 6),

.. math:: a(y) = \sum_{i=1}^n \Bigl(\prod_{j<i} (1 - \beta_j)\Bigr) \min(r_i(y), q_i(y)),
   \qquad \alpha_{\mathrm{RRS}} = 1 - \prod_{i=1}^n (1 - \beta_i),

in :math:`O(nV)`. :math:`1 - \beta_i` is computed as :math:`\sum_y (r_i - q_i)_+` (no cancellation).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .._validate import SpecTheoryInputError, as_distribution, check_n, check_rng
from ..schemes import IID, Independent, Scheme
from .base import Verifier, is_exact_input, law_pair, law_vector, register
from .sd import accept_prob, categorical, check_drafts, recursive_rejection_law, validate_pair

__all__ = ["RRS"]


@register
class RRS(Verifier):
    r"""Recursive rejection sampling with replacement (SpecInfer).

    Parameters
    ----------
    per_draft
        If True, ``q`` holds one draft model per draft: shape ``(n, V)`` or ``(n, B, V)``, and the
        drafts are independent with :math:`\bar x_i \sim q_i` (scheme
        :class:`~spectheory.schemes.Independent`). Otherwise ``q`` is ``(V,)`` or ``(B, V)`` and the
        drafts are i.i.d. (scheme :class:`~spectheory.schemes.IID`).
    """

    name: ClassVar[str] = "rrs"
    lossless: ClassVar[bool] = True

    def __init__(self, per_draft: bool = False) -> None:
        self.per_draft = bool(per_draft)

    # ---------------------------------------------------------------- inputs
    def _qs(self, p: Any, q: Any, n: int, allow_batch: bool = True) -> tuple[np.ndarray, list]:
        n = check_n(n)
        if not self.per_draft:
            pv, qv = validate_pair(p, q, allow_batch=allow_batch)
            return pv, [qv] * n
        qa = q if isinstance(q, np.ndarray) else None
        seq = list(qa) if qa is not None else list(q)
        if len(seq) != n:
            raise SpecTheoryInputError(
                f"argument 'q': per_draft=True needs one draft distribution per draft "
                f"(n = {n}), got {len(seq)}"
            )
        pv = as_distribution(p, "p", allow_batch=allow_batch)
        qs = []
        for j, qj in enumerate(seq):
            qj = as_distribution(qj, f"q[{j}]", allow_batch=allow_batch)
            if qj.shape[-1] != pv.shape[-1]:
                raise SpecTheoryInputError(
                    f"argument 'q[{j}]': vocabulary size {qj.shape[-1]} does not match p's "
                    f"V = {pv.shape[-1]}"
                )
            qs.append(qj)
        shape = np.broadcast_shapes(pv.shape, *(x.shape for x in qs))
        return np.broadcast_to(pv, shape).copy(), [np.broadcast_to(x, shape) for x in qs]

    def scheme(self, q: Any, n: int) -> Scheme:
        if self.per_draft:
            return Independent(q)
        return IID(q, n)

    # ---------------------------------------------------------------- exact
    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        pv, qs = self._qs(p, q, n)
        r = pv
        alive = np.ones(pv.shape[:-1])  # Pr(all earlier drafts rejected)
        a = np.zeros_like(pv)
        for qi in qs:
            m = np.minimum(r, qi)
            a += alive[..., None] * m
            rest = np.maximum(r - qi, 0.0)
            reject = rest.sum(axis=-1)  # 1 - beta_i, as a sum of non-negative terms
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(reject[..., None] > 0, rest / reject[..., None], 0.0)
            alive = alive * reject
        return a

    # ---------------------------------------------------------------- sampler
    def sample(
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator
    ) -> tuple[int, bool]:
        check_rng(rng)
        d = np.asarray(drafts)
        n = int(d.size) if d.ndim == 1 else 0
        pv, qs = self._qs(p, q, max(n, 1), allow_batch=False)
        d = check_drafts(drafts, len(qs), pv.shape[0])
        r = pv
        for i, qi in enumerate(qs):
            x = int(d[i])
            if rng.random() < accept_prob(r[x], qi[x], "q" if not self.per_draft else f"q[{i}]"):
                return x, True
            rest = np.maximum(r - qi, 0.0)
            r = rest / rest.sum()  # positive: draft i was rejected, so r(x) < q_i(x)
        return categorical(rng, r), False

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(drafts)
        n = int(d.size) if d.ndim == 1 else 0
        if self.per_draft:
            seq = list(q)
            exact = is_exact_input(p, *seq)
            self._qs(p, [np.asarray(x, dtype=np.float64) for x in seq], max(n, 1),
                     allow_batch=False)  # validation (shapes, sums, n)
            pv = law_vector(p, "p", exact)
            qs = [law_vector(x, f"q[{j}]", exact) for j, x in enumerate(seq)]
        else:
            pv, qv, exact = law_pair(p, q)
            qs = [qv] * max(n, 1)
        d = check_drafts(drafts, len(qs), pv.shape[0])
        return recursive_rejection_law(
            pv, d.tolist(), lambda i: qs[i], exact,
            (lambda i: f"q[{i}]") if self.per_draft else (lambda i: "q"),
        )
