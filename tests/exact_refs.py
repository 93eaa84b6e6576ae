"""Independent exact references (Python ``fractions.Fraction`` arithmetic, no package code).

Float inputs are converted exactly with ``Fraction(float)``; every reference below re-implements
its rule from the papers' definitions, so a test comparing against it cannot share a bug with the
package's closed forms.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any


def fractions(x: Any) -> list[Fraction]:
    """The exact values of the entries of ``x`` (floats converted without rounding)."""
    return [Fraction(v) for v in list(x)]


def rrs_wor_acceptance(p: Any, q: Any, n: int) -> Fraction:
    r"""Exact acceptance of recursive rejection sampling without replacement, by enumerating
    rejection histories: step :math:`i` drafts from :math:`q` renormalised on the tokens not yet
    drafted, accepts with :math:`\min(1, r_i/q_i)`, else moves to
    :math:`r_{i+1} = (r_i - q_i)_+ / \sum (r_i - q_i)_+`."""
    pf, qf = fractions(p), fractions(q)
    V = len(pf)
    zero = Fraction(0)

    def rec(r: list[Fraction], avail: list[Fraction], w: Fraction, depth: int) -> Fraction:
        tot = sum(avail, zero)
        qi = [a / tot for a in avail]
        acc = w * sum((min(r[y], qi[y]) for y in range(V)), zero)
        if depth == n - 1:
            return acc
        rest = [max(r[y] - qi[y], zero) for y in range(V)]
        norm = sum(rest, zero)
        if norm == 0:
            return acc
        r2 = [x / norm for x in rest]
        for x in range(V):
            over = qi[x] - r[x]
            if over > 0:
                av = list(avail)
                av[x] = zero
                acc += rec(r2, av, w * over, depth + 1)
        return acc

    return rec(pf, qf, Fraction(1), 0)


def iid_alpha_star(p: Any, q: Any, n: int) -> Fraction:
    r""":math:`\alpha^*` of ``n`` i.i.d. drafts by brute force over all subsets of the subset dual
    :math:`\min_S [1 + p(S) - q(S)^n]` (Hu et al., arXiv 2502.18779), in Fractions; ``V <= 16``."""
    pf, qf = fractions(p), fractions(q)
    V = len(pf)
    best = Fraction(1)
    for mask in range(1, 1 << V):
        pS = sum((pf[i] for i in range(V) if mask >> i & 1), Fraction(0))
        qS = sum((qf[i] for i in range(V) if mask >> i & 1), Fraction(0))
        best = min(best, 1 + pS - qS**n)
    return best


def exact_tuple_probs(scheme: Any, qf: list[Fraction]) -> tuple[list[tuple[int, ...]], list[Fraction]]:
    """The tuples of ``scheme`` (from its own enumeration) with probabilities recomputed in
    Fractions from the exact draft law ``qf``, by each scheme's definition:
    i.i.d. products; without replacement :math:`\\prod_j q(x_j) / q(\\text{not yet drawn})`;
    greedy :math:`q(y) / q(\\Omega \\setminus D)`; SpecHub (hub a):
    :math:`(a, y) \\mapsto q(a) q(y) / q(\\ne a)`, :math:`(y, a) \\mapsto q(y)`; any other scheme
    (``Joint``): its own table, converted exactly."""
    tuples, probs_f = scheme.enumerate()
    kind = type(scheme).__name__
    V = len(qf)
    total = sum(qf, Fraction(0))
    out = []
    for t in tuples.tolist():
        if kind == "IID":
            pr = Fraction(1)
            for x in t:
                pr *= qf[x]
        elif kind == "WithoutReplacement":
            pr, left = Fraction(1), set(range(V))
            for x in t:
                pr *= qf[x] / sum((qf[i] for i in left), Fraction(0))
                left.discard(x)
        elif kind == "Greedy":
            D = set(t[:-1])
            pr = qf[t[-1]] / sum((qf[i] for i in range(V) if i not in D), Fraction(0))
        elif kind == "Hub":
            a = max(range(V), key=lambda i: (qf[i], -i))
            rest = sum((qf[i] for i in range(V) if i != a), Fraction(0))
            pr = qf[a] * qf[t[1]] / rest / total if t[0] == a else qf[t[0]] / total
        else:  # Joint and any other explicit table: its own probabilities, exactly
            pr = Fraction(float(probs_f[len(out)]))
        out.append(pr)
    return [tuple(t) for t in tuples.tolist()], out
