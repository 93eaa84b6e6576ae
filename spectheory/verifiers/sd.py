r"""Single-draft speculative sampling (Leviathan et al. 2023; Chen et al. 2023).

Accept the draft :math:`x \sim q` with probability :math:`\min(1, p(x)/q(x))`; otherwise output a
token from the residual :math:`(p - q)_+ / \sum (p - q)_+`. The output law is exactly :math:`p` and
the acceptance is

.. math:: \alpha_{\mathrm{SD}} = \sum_y \min(p(y), q(y)) = 1 - \mathrm{TV}(p, q),

which equals :math:`\alpha^*` of one draft (theory: the subset form with :math:`n = 1`). With
``n > 1`` drafts the rule verifies the first draft only (a baseline for the multi-draft rules).

This module also holds the small input helpers shared by the verifier modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from .._validate import SpecTheoryInputError, as_distribution, check_n, check_rng
from ..schemes import IID, Scheme
from .base import Verifier, finish_law, law_pair, law_zeros, register

__all__ = ["SD", "categorical", "check_drafts", "validate_pair"]


def validate_pair(p: Any, q: Any, *, allow_batch: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``p`` and ``q`` (``(V,)`` or ``(B, V)``) and broadcast them to one shape.

    Raises
    ------
    ValueError
        A row that is not a distribution (naming the argument and the row), or mismatched
        vocabularies / batch sizes.
    """
    pv = as_distribution(p, "p", allow_batch=allow_batch)
    qv = as_distribution(q, "q", allow_batch=allow_batch)
    if pv.shape[-1] != qv.shape[-1]:
        raise SpecTheoryInputError(
            f"argument 'q': vocabulary size {qv.shape[-1]} does not match p's V = {pv.shape[-1]}"
        )
    if pv.ndim == 2 and qv.ndim == 2 and pv.shape[0] != qv.shape[0]:
        raise SpecTheoryInputError(
            f"argument 'q': batch size {qv.shape[0]} does not match p's batch size {pv.shape[0]}"
        )
    pb, qb = np.broadcast_arrays(pv, qv)
    return np.ascontiguousarray(pb), np.ascontiguousarray(qb)


def check_drafts(drafts: Any, n: int | None, V: int) -> np.ndarray:
    """Validate one draft tuple: a 1-D integer array of token ids in ``[0, V)``."""
    d = np.asarray(drafts)
    if d.ndim != 1 or d.size == 0:
        raise SpecTheoryInputError(
            f"argument 'drafts': expected a non-empty 1-D tuple of token ids, got shape {d.shape}"
        )
    if not np.issubdtype(d.dtype, np.integer):
        raise SpecTheoryInputError("argument 'drafts': token ids must be integers")
    if d.min() < 0 or d.max() >= V:
        raise SpecTheoryInputError(
            f"argument 'drafts': token ids must lie in [0, {V}), got {d.tolist()}"
        )
    if n is not None and d.size != n:
        raise SpecTheoryInputError(f"argument 'drafts': expected {n} drafts, got {d.size}")
    return d.astype(np.int64)


def categorical(rng: np.random.Generator, probs: np.ndarray) -> int:
    """One draw from the (non-negative, positive-sum) vector ``probs``, normalised by its sum."""
    cdf = np.cumsum(probs)
    u = rng.random() * cdf[-1]
    idx = int(np.searchsorted(cdf, u, side="right"))
    idx = min(idx, len(probs) - 1)
    # Rounding could land on a zero-mass entry at the end; step back to a positive one.
    while probs[idx] <= 0 and idx > 0:
        idx -= 1
    return idx


def residual(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    r"""Unnormalised residual :math:`(p - q)_+` (last axis)."""
    return np.maximum(p - q, 0.0)


def exact_accept_prob(p_x: Any, q_x: Any, what: str = "q") -> Any:
    r""":func:`accept_prob` in the arithmetic of its arguments (floats or Fractions)."""
    if q_x <= 0:
        raise SpecTheoryInputError(
            f"argument 'drafts': a drafted token has zero probability under {what}"
        )
    r = p_x / q_x
    return r if r < 1 else r * 0 + 1


def accept_prob(p_x: float, q_x: float, what: str = "q") -> float:
    r""":math:`\min(1, p(x)/q(x))` for a drafted token; a draft with :math:`q(x) = 0` is invalid."""
    if q_x <= 0:
        raise SpecTheoryInputError(
            f"argument 'drafts': a drafted token has zero probability under {what}"
        )
    return min(1.0, p_x / q_x)


@register
class SD(Verifier):
    r"""Single-draft speculative sampling.

    :math:`a(y) = \min(p(y), q(y))`, acceptance :math:`\sum_y \min(p, q)`. Batched ``(B, V)``.
    """

    name: ClassVar[str] = "sd"
    lossless: ClassVar[bool] = True

    def scheme(self, q: Any, n: int) -> Scheme:
        return IID(q, n)

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        check_n(n)
        pv, qv = validate_pair(p, q)
        return np.minimum(pv, qv)

    def sample(
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator
    ) -> tuple[int, bool]:
        check_rng(rng)
        pv, qv = validate_pair(p, q, allow_batch=False)
        d = check_drafts(drafts, None, pv.shape[0])
        x = int(d[0])
        if rng.random() < accept_prob(pv[x], qv[x]):
            return x, True
        return categorical(rng, residual(pv, qv)), False

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, qv, exact = law_pair(p, q)
        d = check_drafts(drafts, None, pv.shape[0])
        x = int(d[0])
        acc, rej = law_zeros(len(pv), exact), law_zeros(len(pv), exact)
        a = exact_accept_prob(pv[x], qv[x])
        acc[x] = a
        res = np.maximum(pv - qv, 0 * pv[0])
        tot = res.sum()
        if tot > 0:
            rej = (1 - a) * (res / tot)
        return finish_law(acc, rej, exact)


def recursive_rejection_law(
    pv: np.ndarray,
    drafts: Sequence[int],
    step_law: Callable[[int], np.ndarray],
    exact: bool,
    what: Callable[[int], str] = lambda i: "q",
) -> tuple[np.ndarray, np.ndarray]:
    r"""Exact ``(acc, rej)`` of recursive rejection sampling on one draft tuple: step :math:`i`
    accepts draft :math:`x_i` with :math:`\min(1, r_i(x_i)/q_i(x_i))`, else
    :math:`r_{i+1} = (r_i - q_i)_+ / \sum (r_i - q_i)_+`; after the last rejection the output is
    drawn from the current target. ``step_law(i)`` is :math:`q_i` (the law draft :math:`i` was
    drawn from: ``q`` for i.i.d. drafts, ``q`` without the earlier drafts for sampling without
    replacement). Works in floats and in Fractions (``exact``)."""
    acc, rej = law_zeros(len(pv), exact), law_zeros(len(pv), exact)
    zero = 0 * pv[0]
    alive = 1 + zero
    r = pv
    for i, x in enumerate(int(t) for t in drafts):
        qi = step_law(i)
        a = exact_accept_prob(r[x], qi[x], what(i))
        acc[x] += alive * a
        alive = alive * (1 - a)
        if alive == 0:
            return finish_law(acc, rej, exact)
        rest = np.maximum(r - qi, zero)
        if rest.sum() == 0:  # only when q sums to more than p by rounding: the
            break  # leftover (~1e-16) mass keeps the current target
        r = rest / rest.sum()
    return finish_law(acc, alive * r, exact)
