r"""Exact audits of rules that expose their law (every spectheory verifier).

* :func:`exact_audit` -- token level: the output law :math:`\sum_{\bar x} Q(\bar x)
  (\mathrm{acc} + \mathrm{rej})(\cdot \mid \bar x)` by enumerating the scheme's draft tuples
  through :meth:`~spectheory.verifiers.base.Verifier.tuple_law`, its total variation from
  :math:`p`, the acceptance :math:`\sum_{\bar x} Q(\bar x)\,\mathrm{acc}(\cdot\mid\bar x)` and
  :math:`\alpha^*`. Fractions in, Fractions out (exact zero for the rational lossless rules).
* :func:`sequence_law` -- the target's exact law of its first ``L`` tokens (chain rule).
* :func:`decoder_law` -- the exact law of the first ``L`` tokens that speculative decoding with a
  spectheory rule produces, block after block (each block's output law from
  :func:`spectheory.blocks.block_output_law`, then a new block at the extended context).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["ExactAudit", "decoder_law", "exact_audit", "law_tv", "sequence_law"]


@dataclass(frozen=True, eq=False)
class ExactAudit:
    r"""Outcome of :func:`exact_audit`.

    Attributes
    ----------
    output_law
        The rule's exact output law ``(V,)`` (float64, or Fractions for Fraction inputs).
    tv
        :math:`\mathrm{TV}(\text{output law}, p)` (0 for a lossless rule).
    acceptance
        :math:`\Pr(Y \in \bar x)` by enumeration.
    alpha_star
        :math:`\alpha^*` of the rule's scheme.
    lossless
        The rule's own flag; ``consistent``: the flag agrees with ``tv`` (to ``tol``).
    tuples
        Draft tuples enumerated.
    """

    name: str
    output_law: np.ndarray
    tv: Any
    acceptance: Any
    alpha_star: float
    lossless: bool
    consistent: bool
    tuples: int


def law_tv(a: Any, b: Any) -> Any:
    """Total variation of two laws given as arrays or as dicts of outcomes."""
    if isinstance(a, dict) or isinstance(b, dict):
        keys = set(a) | set(b)
        zero = 0 * next(iter(a.values())) if a else 0.0
        return sum((abs(a.get(k, zero) - b.get(k, zero)) for k in keys), start=zero) / 2
    d = np.asarray(a) - np.asarray(b)
    tot = sum(abs(x) for x in d.tolist())
    return tot / 2


def exact_audit(rule: Any, p: Any, q: Any, n: int, *, tol: float = 1e-12) -> ExactAudit:
    r"""Exact output law, total variation from ``p``, and acceptance of a rule with
    :meth:`tuple_law`, by enumerating the draft tuples of ``rule.scheme(q, n)``.

    Parameters
    ----------
    rule
        A registered verifier name or a :class:`~spectheory.verifiers.base.Verifier`.
    p, q
        One position ``(V,)``; lists of :class:`fractions.Fraction` keep the computation exact
        for the rational rules.
    n
        Number of drafts.
    tol
        Tolerance of ``consistent`` for float computations.
    """
    from .. import verifiers
    from ..api import optimal_acceptance
    from ..verifiers.base import is_exact_input

    v = verifiers.get(rule)() if isinstance(rule, str) else rule
    exact = is_exact_input(p, q)
    pf = np.asarray([float(x) for x in np.ravel(np.asarray(p, dtype=object))])
    qf = np.asarray([float(x) for x in np.ravel(np.asarray(q, dtype=object))])
    scheme = v.scheme(qf, n)
    tuples, probs = scheme.enumerate()
    if exact:
        ps = _exact_probs(scheme, tuples, q, n, probs)
    else:
        ps = probs
    V = len(pf)
    zero: Any = Fraction(0) if exact else 0.0
    out = np.array([zero] * V, dtype=object) if exact else np.zeros(V)
    acc_total: Any = zero
    pin = p if exact else pf
    qin = q if exact else qf
    for t, w in zip(tuples, ps, strict=True):
        a, r = v.tuple_law(pin, qin, t)
        out = out + w * (a + r)
        acc_total = acc_total + w * sum(a.tolist(), start=zero)
    ptarget = np.array([Fraction(x) for x in np.ravel(np.asarray(p, dtype=object))],
                       dtype=object) if exact else pf
    tv = law_tv(out, ptarget)
    a_star = float(optimal_acceptance(pf, scheme).value)
    lossless = bool(v.lossless)
    if exact:
        consistent = (tv == 0) == lossless
    else:
        consistent = (float(tv) <= tol) == lossless
    return ExactAudit(
        name=getattr(v, "name", type(v).__name__), output_law=out, tv=tv, acceptance=acc_total,
        alpha_star=a_star, lossless=lossless, consistent=bool(consistent), tuples=len(tuples),
    )


def _exact_probs(scheme: Any, tuples: np.ndarray, q: Any, n: int, probs: np.ndarray) -> list[Any]:
    """Exact tuple probabilities for the i.i.d., without-replacement, greedy and hub schemes
    (other schemes: their float probabilities, converted exactly)."""
    from ..schemes import IID, Greedy, Hub, WithoutReplacement

    qx = [Fraction(x) for x in np.ravel(np.asarray(q, dtype=object))]
    out: list[Any] = []
    for t, pr in zip(tuples, probs, strict=True):
        if isinstance(scheme, IID):
            w = Fraction(1)
            for x in t:
                w *= qx[int(x)]
        elif isinstance(scheme, WithoutReplacement):
            w, used = Fraction(1), Fraction(0)
            for x in t:
                w *= qx[int(x)] / (1 - used)
                used += qx[int(x)]
        elif isinstance(scheme, Greedy | Hub):
            fixed = {int(x) for x in t[:-1]} if isinstance(scheme, Greedy) else {int(scheme.hub)}
            rest = sum((qx[i] for i in range(len(qx)) if i not in fixed), start=Fraction(0))
            if isinstance(scheme, Greedy):
                w = qx[int(t[-1])] / rest
            elif int(t[0]) == int(scheme.hub):  # hub first, then q off the hub
                w = qx[int(t[0])] * qx[int(t[1])] / rest
            else:
                w = qx[int(t[0])]
        else:
            w = Fraction(float(pr))
        out.append(w)
    return out


def sequence_law(target: Any, length: int, *, context: Any = ()) -> dict[tuple[int, ...], Any]:
    r"""The target's exact law of its next ``length`` tokens after ``context`` (chain rule)."""
    ctx = tuple(int(t) for t in context)
    out: dict[tuple[int, ...], Any] = {}
    stack: list[tuple[tuple[int, ...], Any]] = [((), 1)]
    while stack:
        z, w = stack.pop()
        if len(z) == length:
            out[z] = out.get(z, 0 * w) + w
            continue
        p = np.asarray(target(ctx + z))
        for y in range(p.shape[0]):
            if p[y] != 0:
                stack.append(((*z, y), w * p[y]))
    return out


def decoder_law(
    target: Any, draft: Any, drafts: Any, verifier: Any, num_tokens: int, *, context: Any = ()
) -> dict[tuple[int, ...], Any]:
    r"""Exact law of the first ``num_tokens`` tokens of speculative decoding with ``verifier`` on
    the draft structure ``drafts`` (block after block, as :func:`spectheory.blocks.decode`)."""
    from ..blocks import block_output_law

    ctx0 = tuple(int(t) for t in context)
    memo: dict[tuple[tuple[int, ...], int], dict[tuple[int, ...], Any]] = {}

    def rec(ctx: tuple[int, ...], L: int) -> dict[tuple[int, ...], Any]:
        key = (ctx, L)
        if key in memo:
            return memo[key]
        out: dict[tuple[int, ...], Any] = {}
        for z, w in block_output_law(target, draft, drafts, verifier, context=ctx).items():
            if w == 0:
                continue
            if len(z) >= L:
                s = z[:L]
                out[s] = out.get(s, 0 * w) + w
                continue
            for s, w2 in rec(ctx + z, L - len(z)).items():
                k = z + s
                out[k] = out.get(k, 0 * w) + w * w2
        memo[key] = out
        return out

    return rec(ctx0, int(num_tokens))
