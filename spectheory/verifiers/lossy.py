r"""Lossy verification rules, deployed on purpose for their extra acceptance (``lossless = False``).

Each rule has the interface of :class:`~spectheory.verifiers.base.Verifier` plus two exact
quantities of what it costs:

* :meth:`LossyVerifier.output_law` -- the exact law of the output token (not :math:`p`);
* :meth:`LossyVerifier.bias` -- its total variation :math:`\mathrm{TV}(\text{output}, p)`.

Rules (``x`` the drafts, :math:`\beta = \sum_y \min(p, q)`, :math:`y^* = \arg\max p`, ties to the
smaller index):

``"exact_match"``
    Greedy verification against the target's argmax: output :math:`y^*`, accepted when
    :math:`y^* \in \bar x`. Output law :math:`\delta_{y^*}`, bias :math:`1 - p(y^*)`, acceptance
    :math:`1 - (1 - q(y^*))^n` (i.i.d. drafts).
``"onehot_draft"``
    The draft is replaced by its argmax: the drafter proposes :math:`\hat x = \arg\max q`
    deterministically (the top-:math:`n` tokens of :math:`q` for ``n`` drafts), but the verifier
    still runs single-draft speculative sampling with the soft :math:`q` on the first draft: accept
    with :math:`r = \min(1, p(\hat x)/q(\hat x))`, else sample :math:`(p - q)_+` normalised.
    Output :math:`r\,\delta_{\hat x} + (1 - r)(p - q)_+/(1 - \beta)`. (Verifying a deterministic
    draft against the one-hot law :math:`\delta_{\hat x}` instead -- accept with :math:`p(\hat x)`,
    else sample :math:`p` without :math:`\hat x` -- is lossless for *any* drafted token; it is
    :class:`OneHotVerify`, not registered: the exact audit shows its bias is 0.)
``"typical"``
    Medusa's typical acceptance (Cai et al., arXiv 2401.10774, section 2.3.1): a draft :math:`x`
    passes when :math:`p(x) > \min(\epsilon, \delta\,e^{-H(p)})`, :math:`H(p) = -\sum p\log p`
    (defaults :math:`\epsilon = 0.09`, :math:`\delta = 0.3`, the paper's
    ``posterior_threshold`` and ``posterior_alpha``). Among the passing drafts the one of largest
    :math:`p` is output (Medusa keeps the most likely accepted candidate); when none passes the
    output is :math:`y^*` (Medusa's first token of a step is the target's greedy choice). The
    reference implementation computes :math:`H` with ``log(p + 1e-5)``; here it is the exact
    entropy (``entropy_offset`` reproduces the code).
``"ensemble"``
    Hugging Face transformers' static ensemble verification (``assistant_ensemble_weight`` =
    :math:`w`, in ``transformers.generation.utils._speculative_sampling``, transformers 5.25):
    accept the draft with :math:`\min(1, v(x)/q(x))`, :math:`v = w p + (1 - w) q`, else sample
    :math:`(p - q)_+` normalised. Accepted mass :math:`\min(q, v) = \min(p,q) + (1-w)(q-p)_+`,
    output law :math:`\min(p,q) + (1-w)(q - p)_+ + w (p - q)_+`, bias :math:`(1 - w)(1 - \beta)`,
    acceptance :math:`\beta + (1 - w)(1 - \beta)`. ``w = 1`` is speculative sampling.

Every rule also takes Fraction inputs in :meth:`tuple_law` (exact arithmetic; the typical rule's
threshold is computed in floats from the entries, the comparison is exact).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .._validate import SpecTheoryInputError, check_n, check_rng
from ..schemes import IID, Joint, Scheme
from .base import Verifier, finish_law, law_pair, law_zeros, register
from .sd import categorical, check_drafts, exact_accept_prob, validate_pair

__all__ = ["Ensemble", "ExactMatch", "LossyVerifier", "OneHotDraft", "OneHotVerify", "Typical"]


def _argmax(x: np.ndarray) -> int:
    """Index of the largest entry, ties to the smaller index (floats or Fractions)."""
    best = 0
    for i in range(1, len(x)):
        if x[i] > x[best]:
            best = i
    return best


def _rows(pv: np.ndarray, qv: np.ndarray, fn: Any) -> np.ndarray:
    if pv.ndim == 1:
        return fn(pv, qv)
    return np.stack([fn(pv[b], qv[b]) for b in range(pv.shape[0])])


def _residual(pv: np.ndarray, qv: np.ndarray) -> np.ndarray:
    """Normalised :math:`(p - q)_+` (``p`` itself when it vanishes, as transformers does)."""
    res = np.maximum(pv - qv, 0 * pv[0])
    tot = res.sum()
    return res / tot if tot > 0 else pv


class LossyVerifier(Verifier):
    """A rule whose output law is not ``p``: exact output law and bias from :meth:`tuple_law`."""

    lossless: ClassVar[bool] = False

    def output_law(self, p: Any, q: Any, n: int) -> np.ndarray:
        r"""Exact law of the output token, ``(V,)`` (or ``(B, V)``): enumeration of the scheme's
        draft tuples through :meth:`tuple_law` (closed forms override it)."""
        pv, qv = validate_pair(p, q)
        n = check_n(n)

        def one(pr: np.ndarray, qr: np.ndarray) -> np.ndarray:
            tuples, probs = self.scheme(qr, n).enumerate()
            out = np.zeros(len(pr))
            for t, w in zip(tuples, probs, strict=True):
                a, r = self.tuple_law(pr, qr, t)
                out += w * (a + r)
            return out

        return _rows(pv, qv, one)

    def bias(self, p: Any, q: Any, n: int) -> float | np.ndarray:
        r"""Exact :math:`\mathrm{TV}(\text{output law}, p) = \tfrac12 \sum_y |o(y) - p(y)|`."""
        pv, qv = validate_pair(p, q)
        tv = 0.5 * np.abs(self.output_law(pv, qv, n) - pv).sum(axis=-1)
        return float(tv) if np.ndim(tv) == 0 else tv

    def sample(self, p: Any, q: Any, drafts: Any, rng: np.random.Generator) -> tuple[int, bool]:
        """One draw from :meth:`tuple_law` (the rules here are simple enough to sample from their
        exact conditional law)."""
        check_rng(rng)
        pv, qv = validate_pair(p, q, allow_batch=False)
        d = check_drafts(drafts, None, pv.shape[0])
        acc, rej = self.tuple_law(pv, qv, d)
        a = float(acc.sum())
        if rng.random() < a:
            return categorical(rng, acc), True
        return categorical(rng, rej), False


@register
class ExactMatch(LossyVerifier):
    r"""Output the target's argmax :math:`y^*`; accepted when it was drafted. NOT lossless."""

    name: ClassVar[str] = "exact_match"

    def scheme(self, q: Any, n: int) -> Scheme:
        return IID(q, n)

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        n = check_n(n)
        pv, qv = validate_pair(p, q)

        def one(pr: np.ndarray, qr: np.ndarray) -> np.ndarray:
            y = _argmax(pr)
            out = np.zeros(len(pr))
            miss = float(np.sum(np.delete(qr, y)))  # 1 - q(y*) without cancellation
            out[y] = -math.expm1(n * math.log(miss)) if miss > 0 else 1.0
            return out

        return _rows(pv, qv, one)

    def output_law(self, p: Any, q: Any, n: int) -> np.ndarray:
        check_n(n)
        pv, qv = validate_pair(p, q)

        def one(pr: np.ndarray, qr: np.ndarray) -> np.ndarray:
            out = np.zeros(len(pr))
            out[_argmax(pr)] = 1.0
            return out

        return _rows(pv, qv, one)

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, _qv, exact = law_pair(p, q)
        d = check_drafts(drafts, None, pv.shape[0])
        acc, rej = law_zeros(len(pv), exact), law_zeros(len(pv), exact)
        y = _argmax(pv)
        if y in d.tolist():
            acc[y] = 1 + 0 * pv[0]
        else:
            rej[y] = 1 + 0 * pv[0]
        return finish_law(acc, rej, exact)


def _top(q: np.ndarray, n: int) -> list[int]:
    return [int(i) for i in np.argsort(-np.asarray(q, dtype=np.float64), kind="stable")[:n]]


@register
class OneHotDraft(LossyVerifier):
    r"""Deterministic argmax drafts verified by speculative sampling against the soft :math:`q`
    (first draft). NOT lossless (module docstring)."""

    name: ClassVar[str] = "onehot_draft"

    def scheme(self, q: Any, n: int) -> Scheme:
        n = check_n(n)
        qv = validate_pair(q, q, allow_batch=False)[1]
        if np.count_nonzero(qv > 0) < n:
            raise SpecTheoryInputError(f"argument 'q': fewer than n = {n} tokens with q > 0")
        return Joint([_top(qv, n)], [1.0], V=len(qv))

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        check_n(n)
        pv, qv = validate_pair(p, q)

        def one(pr: np.ndarray, qr: np.ndarray) -> np.ndarray:
            x = _top(qr, 1)[0]
            out = np.zeros(len(pr))
            out[x] = min(1.0, pr[x] / qr[x])
            return out

        return _rows(pv, qv, one)

    def output_law(self, p: Any, q: Any, n: int) -> np.ndarray:
        check_n(n)
        pv, qv = validate_pair(p, q)

        def one(pr: np.ndarray, qr: np.ndarray) -> np.ndarray:
            a, r = self.tuple_law(pr, qr, [_top(qr, 1)[0]])
            return a + r

        return _rows(pv, qv, one)

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, qv, exact = law_pair(p, q)
        d = check_drafts(drafts, None, pv.shape[0])
        x = int(d[0])
        acc, rej = law_zeros(len(pv), exact), law_zeros(len(pv), exact)
        a = exact_accept_prob(pv[x], qv[x])
        acc[x] = a
        rej = (1 - a) * _residual(pv, qv)
        return finish_law(acc, rej, exact)


class OneHotVerify(LossyVerifier):
    r"""Single-draft speculative sampling against the one-hot law of the drafted token: accept
    :math:`x` with :math:`p(x)`, else sample :math:`p` restricted to :math:`y \ne x`. Lossless for
    any drafted token (the output law given :math:`x` is :math:`p(x)\delta_x + p\,1[\cdot\ne x]
    = p`); not registered, kept for the audit examples. Drafts: i.i.d. from ``q``."""

    name: ClassVar[str] = "onehot_verify"
    lossless: ClassVar[bool] = True

    def scheme(self, q: Any, n: int) -> Scheme:
        return IID(q, n)

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        check_n(n)
        pv, qv = validate_pair(p, q)
        return pv * qv

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, _qv, exact = law_pair(p, q)
        x = int(check_drafts(drafts, None, pv.shape[0])[0])
        acc, rej = law_zeros(len(pv), exact), law_zeros(len(pv), exact)
        acc[x] = pv[x]
        rej = pv.copy()
        rej[x] = 0 * pv[0]
        return finish_law(acc, rej, exact)


@register
class Typical(LossyVerifier):
    r"""Medusa's typical acceptance (module docstring). NOT lossless.

    Parameters
    ----------
    epsilon, delta
        Hard threshold and entropy factor: a draft passes when
        :math:`p(x) > \min(\epsilon, \delta e^{-H(p)})`.
    entropy_offset
        ``H = -sum p log(p + entropy_offset)`` (0: the exact entropy; Medusa's code uses 1e-5).
    """

    name: ClassVar[str] = "typical"

    def __init__(
        self, epsilon: float = 0.09, delta: float = 0.3, entropy_offset: float = 0.0
    ) -> None:
        for nm, v in (("epsilon", epsilon), ("delta", delta)):
            if not (isinstance(v, int | float) and 0 < v <= 1):
                raise SpecTheoryInputError(f"argument {nm!r}: must lie in (0, 1], got {v!r}")
        if not (isinstance(entropy_offset, int | float) and entropy_offset >= 0):
            raise SpecTheoryInputError(
                f"argument 'entropy_offset': must be >= 0, got {entropy_offset!r}"
            )
        self.epsilon, self.delta, self.entropy_offset = float(epsilon), float(delta), float(
            entropy_offset
        )

    def scheme(self, q: Any, n: int) -> Scheme:
        return IID(q, n)

    def threshold(self, p: Any) -> float:
        r""":math:`\min(\epsilon, \delta e^{-H(p)})` in floats."""
        pf = np.asarray(p, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(pf > 0, pf * np.log(pf + self.entropy_offset), 0.0)
        H = float(-terms.sum())
        return min(self.epsilon, self.delta * math.exp(-H))

    def passing(self, p: Any) -> list[int]:
        """Tokens that pass the threshold, most likely first (ties to the smaller index)."""
        pf = np.asarray(p, dtype=np.float64)
        t = self.threshold(pf)
        ok = [i for i in range(len(pf)) if pf[i] > t]
        return sorted(ok, key=lambda i: (-pf[i], i))

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        n = check_n(n)
        pv, qv = validate_pair(p, q)

        def one(pr: np.ndarray, qr: np.ndarray) -> np.ndarray:
            out = np.zeros(len(pr))
            inside = np.zeros(len(pr), dtype=bool)
            miss_before = 1.0
            for y in self.passing(pr):
                inside[y] = True
                miss_after = float(np.sum(np.where(inside, 0.0, qr)))  # q outside, summed
                # Pr(no better passing token drafted, y drafted)
                out[y] = miss_before**n - miss_after**n
                miss_before = miss_after
            return out

        return _rows(pv, qv, one)

    def output_law(self, p: Any, q: Any, n: int) -> np.ndarray:
        r"""Closed form: the accepted mass plus the rejected mass on :math:`y^*`."""
        n = check_n(n)
        pv, qv = validate_pair(p, q)

        def one(pr: np.ndarray, qr: np.ndarray) -> np.ndarray:
            a = self.accepted_mass(pr, qr, n)
            a[_argmax(pr)] += max(0.0, 1.0 - float(a.sum()))
            return a

        return _rows(pv, qv, one)

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        pv, _qv, exact = law_pair(p, q)
        d = set(check_drafts(drafts, None, pv.shape[0]).tolist())
        acc, rej = law_zeros(len(pv), exact), law_zeros(len(pv), exact)
        one = 1 + 0 * pv[0]
        for y in self.passing(pv):
            if y in d:
                acc[y] = one
                return finish_law(acc, rej, exact)
        rej[_argmax(pv)] = one
        return finish_law(acc, rej, exact)


@register
class Ensemble(LossyVerifier):
    r"""transformers' ensemble verification with weight :math:`w` (module docstring). NOT
    lossless for :math:`w < 1`.

    Parameters
    ----------
    weight
        ``assistant_ensemble_weight`` :math:`w \in (0, 1]` (default 0.5).
    """

    name: ClassVar[str] = "ensemble"

    def __init__(self, weight: float = 0.5) -> None:
        if isinstance(weight, bool) or not (isinstance(weight, int | float) and 0 < weight <= 1):
            raise SpecTheoryInputError(f"argument 'weight': must lie in (0, 1], got {weight!r}")
        self.weight = float(weight)

    def scheme(self, q: Any, n: int) -> Scheme:
        return IID(q, n)

    def accepted_mass(self, p: Any, q: Any, n: int) -> np.ndarray:
        check_n(n)
        pv, qv = validate_pair(p, q)
        return np.minimum(pv, qv) + (1.0 - self.weight) * np.maximum(qv - pv, 0.0)

    def output_law(self, p: Any, q: Any, n: int) -> np.ndarray:
        check_n(n)
        pv, qv = validate_pair(p, q)
        w = self.weight
        return self.accepted_mass(pv, qv, n) + w * np.maximum(pv - qv, 0.0)

    def bias(self, p: Any, q: Any, n: int) -> float | np.ndarray:
        check_n(n)
        pv, qv = validate_pair(p, q)
        tv = (1.0 - self.weight) * np.maximum(qv - pv, 0.0).sum(axis=-1)
        return float(tv) if np.ndim(tv) == 0 else tv

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        from fractions import Fraction

        pv, qv, exact = law_pair(p, q)
        d = check_drafts(drafts, None, pv.shape[0])
        x = int(d[0])
        if qv[x] <= 0:
            raise SpecTheoryInputError(
                "argument 'drafts': a drafted token has zero probability under q"
            )
        w: Any = Fraction(self.weight) if exact else self.weight
        ratio = 1 - w + w * (pv[x] / qv[x])
        a = ratio if ratio < 1 else 0 * ratio + 1
        acc, rej = law_zeros(len(pv), exact), law_zeros(len(pv), exact)
        acc[x] = a
        rej = (1 - a) * _residual(pv, qv)
        return finish_law(acc, rej, exact)
