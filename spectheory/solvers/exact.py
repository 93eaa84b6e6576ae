r"""Exact rational arithmetic for :math:`\alpha^*`: the oracle of tests and of user scripts.

``optimal_acceptance(p, scheme, method="exact")`` takes distributions whose entries are exact
rationals (``int``, :class:`fractions.Fraction`, sympy ``Rational``) and returns :math:`\alpha^*` as
a :class:`fractions.Fraction` in ``Result.value`` (an object array of Fractions for a batch) with
the exact witness :math:`H^*`. Nothing is rounded: no tolerance enters the answer.

Strategies
----------
``"subsets"``
    The subset (min-cut) form, the dual of the transport LP (SpecTr, arXiv 2310.15141; Hu et al.,
    arXiv 2502.18779):

    .. math:: \alpha^* = \min_{H \subseteq \Omega} \bigl[1 + p(H) - Q(H^n)\bigr],

    evaluated for all :math:`2^V` sets (``V <= MAX_EXACT_V``). :math:`Q(H^n)` is exact: a power of
    :math:`q(H)` (i.i.d.), a product :math:`\prod_j q_j(H)` (independent drafts), the greedy/SpecHub
    indicator formula, or -- without replacement and for explicit joint laws -- the exact masses of
    the draft tuples grouped by token set :math:`S` and summed over :math:`S \subseteq H` (a zeta
    transform on integers over a common denominator).
``"prefix"``
    i.i.d. drafts: sort by the exact ratio :math:`p/q` ascending and take
    :math:`\min_k [1 + P_k - S_k^n]` over the :math:`V+1` prefixes (the sorted-prefix theorem, Hu et
    al., arXiv 2502.18779). Greedy drafts and SpecHub: the closed form
    :math:`p(D) + \sum_{y \notin D} \min\bigl(p(y), q(y)/q(\Omega\setminus D)\bigr)`
    (``docs/symbolic.md`` derives it from the subset form). Any ``V``.
``"auto"``
    ``"prefix"`` where it applies, else ``"subsets"``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from .._validate import (
    SpecTheoryInputError,
    as_distribution,
    broadcast_pair,
    exact_distribution,
)
from ..result import Result, Status
from ..schemes import IID, Greedy, Hub, Independent, Joint, Scheme, WithoutReplacement
from .registry import SolverEntry, register

__all__ = [
    "MAX_EXACT_TUPLES",
    "MAX_EXACT_V",
    "exact_prob_all_in",
    "exact_subset_value",
    "solve_exact",
]

#: Largest vocabulary for the exact enumeration of all 2^V subsets.
MAX_EXACT_V: int = 16
#: Largest number of draft tuples enumerated exactly (without replacement, joint laws).
MAX_EXACT_TUPLES: int = 200_000
#: Largest V for which ``Result.info["subset_values"]`` (all 2^V exact subset values) is filled.
EXACT_INFO_MAX_V: int = 10

_STRATEGIES = ("auto", "prefix", "subsets")


# ---------------------------------------------------------------------- exact scheme data
def _exact_data(scheme: Scheme) -> Any:
    if isinstance(scheme, (IID, WithoutReplacement, Greedy, Hub)):
        return scheme.exact_q
    if isinstance(scheme, Independent):
        return scheme.exact_qs
    if isinstance(scheme, Joint):
        return scheme.exact_probs
    return None


def _fixed_tokens(scheme: Scheme, q: Sequence[Fraction]) -> list[int]:
    """Greedy's top-(n-1) tokens / SpecHub's hub, ranked by the exact q (ties: smaller index)."""
    ranked = sorted(range(len(q)), key=lambda i: (-q[i], i))
    return ranked[:1] if isinstance(scheme, Hub) else ranked[: scheme.n - 1]


def _mask_of(H: Any, V: int) -> np.ndarray:
    H = np.asarray(H)
    if H.dtype != np.bool_ or H.shape != (V,):
        raise SpecTheoryInputError(f"argument 'H': expected a boolean mask of shape ({V},)")
    return H


def _tuple_set_masses(scheme: Scheme) -> dict[int, Fraction]:
    """Exact mass of the draft tuples grouped by token set (bitmask; bit j = token j)."""
    out: dict[int, Fraction] = {}
    if isinstance(scheme, Joint):
        probs = scheme.exact_probs
        for t, pr in zip(scheme.tuples.tolist(), probs, strict=True):
            if pr:
                key = sum(1 << j for j in set(t))
                out[key] = out.get(key, Fraction(0)) + pr
        return out
    assert isinstance(scheme, WithoutReplacement)
    q = scheme.exact_q
    support = [i for i, v in enumerate(q) if v > 0]
    count = math.perm(len(support), scheme.n)
    if count > MAX_EXACT_TUPLES:
        raise SpecTheoryInputError(
            f"{scheme!r}: {count} ordered draft tuples, more than MAX_EXACT_TUPLES = "
            f"{MAX_EXACT_TUPLES} for exact enumeration"
        )
    for t in itertools.permutations(support, scheme.n):
        mass = Fraction(1)
        used = Fraction(0)
        for x in t:
            mass *= q[x] / (1 - used)
            used += q[x]
        key = sum(1 << j for j in t)
        out[key] = out.get(key, Fraction(0)) + mass
    return out


def exact_prob_all_in(scheme: Scheme, H: Any) -> Fraction:
    r"""Exact :math:`Q(H^n)` of an unbatched scheme built from exact rationals.

    Parameters
    ----------
    scheme
        An unbatched scheme whose exact data is present (``exact_q``, ``exact_qs`` or
        ``exact_probs``).
    H
        Boolean mask of shape ``(V,)``.

    Returns
    -------
    fractions.Fraction
    """
    why = _supports(scheme)
    if why is not None:
        raise SpecTheoryInputError(f"argument 'scheme': {why}")
    scheme._check_unbatched("exact_prob_all_in")
    Hm = _mask_of(H, scheme.V)
    inside = [i for i in range(scheme.V) if Hm[i]]
    if isinstance(scheme, IID):
        return sum((scheme.exact_q[i] for i in inside), Fraction(0)) ** scheme.n
    if isinstance(scheme, Independent):
        out = Fraction(1)
        for q in scheme.exact_qs:
            out *= sum((q[i] for i in inside), Fraction(0))
        return out
    if isinstance(scheme, (Greedy, Hub)):
        q = scheme.exact_q
        D = _fixed_tokens(scheme, q)
        if not all(Hm[d] for d in D):
            return Fraction(0)
        rest = sum((q[i] for i in range(scheme.V) if i not in D), Fraction(0))
        return sum((q[i] for i in inside if i not in D), Fraction(0)) / rest
    key = sum(1 << i for i in inside)
    return sum(
        (m for s, m in _tuple_set_masses(scheme).items() if s & key == s), Fraction(0)
    )


def exact_subset_value(p: Any, scheme: Scheme, H: Any) -> Fraction:
    r"""Exact :math:`1 + p(H) - Q(H^n)`, an upper bound on :math:`\alpha^*` for every :math:`H`.

    ``p`` must have exact rational entries summing to exactly 1 (one row).
    """
    pe = _exact_p(p, scheme, normalize=False)
    if isinstance(pe[0], tuple):
        raise SpecTheoryInputError("argument 'p': exact_subset_value needs one row")
    Hm = _mask_of(H, scheme.V)
    pH = sum((pe[i] for i in range(scheme.V) if Hm[i]), Fraction(0))
    return 1 + pH - exact_prob_all_in(scheme, Hm)


# ---------------------------------------------------------------------- helpers on 2^V sets
def _lcm_den(xs: Sequence[Fraction]) -> int:
    return math.lcm(*(x.denominator for x in xs)) if xs else 1


def _additive_all(a: Sequence[int], V: int) -> list[int]:
    """``s[mask] = sum_{j in mask} a[j]`` for every mask, by the low-bit recursion (ints)."""
    s = [0] * (1 << V)
    for mask in range(1, 1 << V):
        low = mask & -mask
        s[mask] = s[mask ^ low] + a[low.bit_length() - 1]
    return s


def _zeta(g: list[int], V: int) -> list[int]:
    """Subset-sum (zeta) transform: ``f[mask] = sum_{s subset of mask} g[s]`` (ints)."""
    f = np.array(g, dtype=object).reshape((2,) * V) if V else np.array(g, dtype=object)
    for axis in range(V):
        hi = [slice(None)] * V
        lo = [slice(None)] * V
        hi[axis], lo[axis] = 1, 0
        f[tuple(hi)] = f[tuple(hi)] + f[tuple(lo)]
    return list(f.reshape(-1))


def _all_Q(scheme: Scheme) -> tuple[list[int], int]:
    """Exact :math:`Q(H^n)` for every mask as ``(numerators, common denominator)``."""
    V = scheme.V
    if isinstance(scheme, IID):
        q = scheme.exact_q
        d = _lcm_den(q)
        s = _additive_all([int(x * d) for x in q], V)
        return [x**scheme.n for x in s], d**scheme.n
    if isinstance(scheme, Independent):
        num = [1] * (1 << V)
        den = 1
        for q in scheme.exact_qs:
            d = _lcm_den(q)
            s = _additive_all([int(x * d) for x in q], V)
            num = [a * b for a, b in zip(num, s, strict=True)]
            den *= d
        return num, den
    if isinstance(scheme, (Greedy, Hub)):
        q = scheme.exact_q
        D = _fixed_tokens(scheme, q)
        dmask = sum(1 << j for j in D)
        d = _lcm_den(q)
        rest_ints = [0 if i in D else int(x * d) for i, x in enumerate(q)]
        s = _additive_all(rest_ints, V)
        rest = sum(rest_ints)
        return [s[m] if m & dmask == dmask else 0 for m in range(1 << V)], rest
    masses = _tuple_set_masses(scheme)
    d = _lcm_den(list(masses.values()))
    g = [0] * (1 << V)
    for key, m in masses.items():
        g[key] += int(m * d)
    return _zeta(g, V), d


def _row_subsets(
    p: Sequence[Fraction], scheme: Scheme
) -> tuple[Fraction, int, list[Fraction] | None]:
    V = scheme.V
    dp = _lcm_den(p)
    pn = _additive_all([int(x * dp) for x in p], V)
    qn, dq = _all_Q(scheme)
    L = math.lcm(dp, dq)
    fp, fq = L // dp, L // dq
    vals = [L + a * fp - b * fq for a, b in zip(pn, qn, strict=True)]
    k = min(range(len(vals)), key=vals.__getitem__)
    full = [Fraction(v, L) for v in vals] if V <= EXACT_INFO_MAX_V else None
    return Fraction(vals[k], L), k, full


def _row_prefix(
    p: Sequence[Fraction], scheme: Scheme
) -> tuple[Fraction, np.ndarray, dict[str, Any]]:
    V = scheme.V
    q = scheme.exact_q
    if isinstance(scheme, (Greedy, Hub)):
        D = set(_fixed_tokens(scheme, q))
        rest = sum((q[i] for i in range(V) if i not in D), Fraction(0))
        qp = [Fraction(0) if i in D else q[i] / rest for i in range(V)]
        value = sum((p[i] if i in D else min(p[i], qp[i]) for i in range(V)), Fraction(0))
        mask = np.array([i in D or p[i] < qp[i] for i in range(V)], dtype=bool)
        return value, mask, {"fixed": sorted(D)}
    order = sorted(range(V), key=lambda i: (0, p[i] / q[i], i) if q[i] > 0 else (1, 0, i))
    chain = [Fraction(1)]
    P = S = Fraction(0)
    for i in order:
        P += p[i]
        S += q[i]
        chain.append(1 + P - S**scheme.n)
    k = min(range(V + 1), key=chain.__getitem__)
    mask = np.zeros(V, dtype=bool)
    mask[order[:k]] = True
    return chain[k], mask, {"order": order, "prefix_values": tuple(chain)}


# ---------------------------------------------------------------------- the solver
def _exact_p(p: Any, scheme: Scheme, *, normalize: bool) -> Any:
    pv = as_distribution(p, "p", normalize=normalize)
    broadcast_pair(pv, scheme.batch_shape, scheme.V)
    pe = exact_distribution(p, "p", normalize=normalize)
    if pe is None:
        raise SpecTheoryInputError(
            "argument 'p': method='exact' needs exact rational entries (int, fractions.Fraction, "
            "sympy Rational), got floating-point entries; convert them, e.g. "
            "Fraction('0.3') or sympy.Rational('0.3')"
        )
    return pe


def solve_exact(
    p: Any, scheme: Scheme, *, normalize: bool = False, strategy: str = "auto"
) -> Result:
    r"""Exact :math:`\alpha^*` and witness with rational arithmetic.

    Parameters
    ----------
    p
        Target distribution ``(V,)`` or ``(B, V)`` with exact rational entries summing to exactly 1
        (``int``, :class:`fractions.Fraction`, sympy ``Rational``).
    scheme
        A scheme built from exact rationals (IID, WithoutReplacement, Greedy, Hub, Independent,
        Joint).
    normalize
        Rescale each row of ``p`` exactly (division by its exact sum).
    strategy
        ``"auto"``, ``"prefix"`` (IID, Greedy, Hub only) or ``"subsets"`` (all :math:`2^V` sets,
        ``V <= MAX_EXACT_V``); see the module docstring.

    Returns
    -------
    Result
        ``value`` is a :class:`fractions.Fraction` (one row) or an object array of Fractions
        (batch); ``witness`` the boolean mask of a minimising :math:`H^*`; status ``OPTIMAL``;
        method ``"exact"``. ``info`` holds ``strategy``, ``time_s``, ``error_bound`` (0) and, for
        one row, ``subset_values`` (all :math:`2^V` exact subset values, indexed by the bitmask
        with bit ``j`` = token ``j``; ``V <= EXACT_INFO_MAX_V``) or ``order``/``prefix_values``.

    Raises
    ------
    ValueError
        Floating-point ``p`` or scheme data, exact rows not summing to exactly 1, an unknown
        strategy, or a vocabulary too large for the strategy.
    """
    t0 = time.perf_counter()
    if strategy not in _STRATEGIES:
        raise SpecTheoryInputError(
            f"argument 'strategy': {strategy!r} is not one of {', '.join(_STRATEGIES)}"
        )
    why = _supports(scheme)
    if why is not None:
        raise SpecTheoryInputError(f"argument 'scheme': method 'exact' does not apply: {why}")
    pe = _exact_p(p, scheme, normalize=normalize)
    batched_p = isinstance(pe[0], tuple)
    single = not batched_p and not scheme.is_batched
    B = len(pe) if batched_p else (scheme.batch_shape[0] if scheme.is_batched else 1)
    prefix_ok = isinstance(scheme, (IID, Greedy, Hub))
    use = strategy if strategy != "auto" else ("prefix" if prefix_ok else "subsets")
    if use == "prefix" and not prefix_ok:
        raise SpecTheoryInputError(
            f"argument 'strategy': 'prefix' applies to IID, Greedy and Hub schemes, not {scheme!r}"
        )
    if use == "subsets" and scheme.V > MAX_EXACT_V:
        raise SpecTheoryInputError(
            f"argument 'strategy': 'subsets' enumerates 2^V sets; V = {scheme.V} > MAX_EXACT_V = "
            f"{MAX_EXACT_V}"
        )
    values: list[Fraction] = []
    witness = np.zeros((B, scheme.V), dtype=bool)
    info: dict[str, Any] = {"strategy": use, "error_bound": 0}
    for b in range(B):
        prow = pe[b] if batched_p else pe
        srow = scheme.row(b)
        if use == "prefix":
            val, mask, extra = _row_prefix(prow, srow)
            witness[b] = mask
        else:
            val, k, full = _row_subsets(prow, srow)
            witness[b] = [(k >> j) & 1 == 1 for j in range(scheme.V)]
            extra = {} if full is None else {"subset_values": tuple(full)}
        values.append(val)
        if single:
            info.update(extra)
    info["time_s"] = time.perf_counter() - t0
    if single:
        value: Any = values[0]
    else:
        value = np.empty(B, dtype=object)
        value[:] = values
    return Result(
        value=value,
        witness=witness[0] if single else witness,
        status=Status.OPTIMAL,
        method="exact",
        scheme=scheme.name,
        info=info,
    )


def _supports(scheme: Scheme) -> str | None:
    if not isinstance(scheme, (IID, WithoutReplacement, Greedy, Hub, Independent, Joint)):
        return f"no exact evaluation for {type(scheme).__name__} schemes"
    if _exact_data(scheme) is None:
        return (
            "the scheme was built from floating-point entries; build it from exact rationals "
            "(int, fractions.Fraction, sympy Rational) for exact arithmetic"
        )
    if not isinstance(scheme, (IID, Greedy, Hub)) and scheme.V > MAX_EXACT_V:
        return f"exact subset enumeration needs V <= MAX_EXACT_V = {MAX_EXACT_V}, got {scheme.V}"
    return None


# Exact but never preferred by "auto" over the float methods (priority after "subsets" = 90);
# ``supports`` refuses schemes built from floats anyway.
register(SolverEntry("exact", "numpy", _supports, solve_exact, priority=95, exact=True))
