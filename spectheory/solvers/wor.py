r"""Sampling without replacement: :math:`Q(H_k^n)` along a chain of sets, any :math:`n`.

Exponential race (``docs/without_replacement.md``): token :math:`i` rings at
:math:`E_i \sim \mathrm{Exp}(q_i)`; the ring order is sampling without replacement. For a set
:math:`H` with outside mass :math:`\lambda_H = q(\Omega\setminus H)`,

.. math::

    Q(H^n) = q(H) - \lambda_H \sum_{m=1}^{n-1} G_m(H), \qquad
    G_m(H) = \int_0^\infty e^{-t}\, e_m\bigl(c_i(t) : i \in H\bigr)\,dt, \qquad
    c_i(t) = e^{q_i t} - 1,

where :math:`e_m` is the elementary symmetric polynomial. :math:`G_1(H) = \sum_{i\in H}
q_i/(1-q_i)` in closed form; for :math:`m \ge 2` the integral is evaluated by the trapezoidal rule
in :math:`s = \log t` (exponentially convergent for sums of exponentials with rates in
:math:`[\rho, 1]`, unlike Gauss--Laguerre which fails for peaked ``q``). Along a chain
:math:`H_1 \subset H_2 \subset \dots` the polynomials satisfy
:math:`e_m^{(k)} = \sum_{i \le k} c_i\, e_{m-1}^{(i-1)}` -- a cumulative sum of positive terms, so
one pass per level gives every prefix with no cancellation (the inclusion--exclusion form cancels
catastrophically).

Peaked ``q`` (the top :math:`n-1` tokens hold all but ``WOR_RHO_MIN`` of the mass) would need
:math:`t \sim 1/\rho` with :math:`\rho` tiny; there the largest token :math:`0` is *deflated*
exactly (proof in the docs): for :math:`0 \in H`,

.. math:: Q_q(H^n) = Q_{q'}\bigl((H\setminus 0)^{n-1}\bigr) - \lambda_H\, G^{q}_{n-1}(H\setminus 0),

with :math:`q' = q_{-0}/(1-q_0)` (the rest, renormalised with :math:`1-q_0` summed directly).
Outside masses are suffix sums and :math:`1-q_i` is the sum of the other entries (never
``1 - x``). Sampling without replacement is treated by Khisti et al. (arXiv 2410.18234) and Hu et
al. (arXiv 2502.18779); this any-:math:`n` evaluator is ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..schemes import exclusive_sums

__all__ = [
    "WOR_QUAD_STEP",
    "WOR_RHO_MIN",
    "WOR_TAIL_TOL",
    "WorChain",
    "wor_chain",
    "wor_prob_all_in",
]

#: Trapezoid step in :math:`s = \log t` (halved automatically while the error estimate exceeds
#: ``WOR_TARGET``).
WOR_QUAD_STEP: float = 0.5
#: Target change between successive halvings of the step (an absolute error estimate for the
#: :math:`G_m` sums; :math:`Q` multiplies it by :math:`\lambda_H \le 1`).
WOR_TARGET: float = 1e-11
#: Smallest trapezoid step (refinement stops there; the estimate is still reported).
WOR_MIN_STEP: float = 0.02
#: Mass outside the top ``n - 1`` tokens below which the largest token is deflated.
WOR_RHO_MIN: float = 1e-2
#: Bound on each truncated tail of the :math:`t` integral.
WOR_TAIL_TOL: float = 1e-16
#: Left end of the :math:`t` range (the tail below it is at most
#: :math:`t_0^{m+1} e^{(m-1)t_0}/(m+1)!`, ~1e-16 for m = 2).
WOR_T_LO: float = 1e-5
#: Largest exponent taken by a plain multiplication before switching to logarithms.
_EXP_SAFE: float = 700.0
_EPS: float = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class WorChain:
    """:math:`Q(H_k^n)` for the prefixes of a chain and a bound on its absolute error.

    Attributes
    ----------
    Q
        ``(K,)``: ``Q[k - 1]`` is :math:`Q(H_k^n)` for the first ``k`` chain tokens.
    error
        ``(K,)`` bound on ``|Q - exact|`` (quadrature estimate + tails + rounding estimate).
    nodes
        Number of quadrature nodes used in total (0 when closed forms sufficed).
    """

    Q: np.ndarray
    error: np.ndarray
    nodes: int


def _cumsum(x: np.ndarray) -> np.ndarray:
    """Cumulative sums accumulated in extended precision (``np.longdouble``; 64-bit mantissa on
    x86), rounded once to float64. A float64 running sum over ``V = 49k`` terms drifted
    ``1.1e-12`` on a real SmolLM2 row (5 000 ulps, far above the ``8 eps`` the bound assumed); the
    reference is the oracle of the fast path's tests and benchmark, so it carries the sums more
    accurately instead. Where ``longdouble`` is plain float64 the bound adds ``K eps`` instead
    (``_SUM_EPS``)."""
    return np.cumsum(x, dtype=np.longdouble).astype(np.float64)


#: Relative error of :func:`_cumsum` per term beyond the final rounding: 0 with an extended
#: ``longdouble`` (its ``2^{-64}`` per addition stays below the final rounding for ``K < 2^{11}``
#: ... ``2^{20}`` terms: ``K 2^{-64} <= 2^{-44}`` is below the 8 eps margin), else eps per term.
_SUM_EPS: float = 0.0 if float(np.finfo(np.longdouble).eps) < _EPS else 1.0


def _suffix_after(x: np.ndarray) -> np.ndarray:
    """``out[k-1] = sum(x[k:])``: mass after a prefix of length ``k`` (suffix sums, no 1 - S)."""
    suf = np.flip(_cumsum(np.flip(x)))
    return np.concatenate([suf[1:], [0.0]])


def _outside_top(x: np.ndarray, m: int, extra: float) -> float:
    """Mass outside the ``m`` largest entries of ``x`` plus ``extra``: a sum of the remaining
    (non-negative) entries, never ``1 - top``; numpy's pairwise summation, O(V)."""
    if m <= 0:
        return float(np.sum(x)) + extra
    if m >= len(x):
        return float(extra)
    part = np.partition(x, len(x) - m)[: len(x) - m]
    return float(np.sum(part)) + extra


def _tail(m: int, rho: float, K: int, T: float) -> float:
    r"""Bound on :math:`\int_T^\infty e^{-\rho t} \min(t, K)^m / m!\,dt`."""
    from scipy.special import gammaincc

    # in logarithms: rho^(m+1) underflows for the tiny rho of peaked drafts
    g = float(gammaincc(m + 1, rho * T))
    lg = (math.log(g) if g > 0.0 else -math.inf) - (m + 1) * math.log(rho)
    lk = m * math.log(max(K, 1)) - math.lgamma(m + 1) - rho * T - math.log(rho)
    x = min(lg, lk)
    return math.exp(x) if x < 700 else math.inf


def _tail_from(m: int, rho: float) -> float:
    r"""A starting point for the search of the right end ``T`` (a point where the
    incomplete-gamma bound is still above ``WOR_TAIL_TOL`` or close to it): half the root of
    :math:`Q(m+1, \rho T) = \mathrm{tol}\,\rho^{m+1}`, at least 1. Starting there instead of at 1
    saves up to ~1 000 steps of 1.25x for tiny :math:`\rho`; the search then goes on as before."""
    from scipy.special import gammainccinv

    ly = math.log(WOR_TAIL_TOL) + (m + 1) * math.log(rho)
    if ly < -700.0:
        return max(1.0, 0.5 * (-ly) / rho)  # Q(m+1, x) ~ e^{-x} x^m / m!: x > -ly/2 at least
    x = float(gammainccinv(m + 1, math.exp(ly)))
    return max(1.0, 0.5 * x / rho) if math.isfinite(x) else 1.0


def _quad_levels(
    x: np.ndarray, levels: list[int], rho: np.ndarray, h: float
) -> tuple[np.ndarray, np.ndarray, float, int]:
    r"""Trapezoid rule in :math:`s = \log t` for :math:`\sum_{m \in levels} G_m(H_k)`, every
    prefix ``k`` of ``x``, refined by halving the step until the change is below ``WOR_TARGET``.

    ``rho[m]`` is the exact mass outside the ``m`` largest chain entries (the whole vocabulary
    counts, including tokens not on the chain). Returns ``(value, change, tails, nodes)``: the
    last change :math:`|T_{h} - T_{2h}|` bounds the error of :math:`T_{2h}`, and the trapezoid rule
    converges exponentially, so it also bounds the (much smaller) error of :math:`T_h`.
    """
    K = len(x)
    top = max(levels)
    xs = np.sort(x)[::-1]
    qm = np.zeros(top + 1)
    qm[1 : 1 + min(top, K)] = xs[:top]
    tail = 0.0
    T = 1.0
    for m in levels:
        r = float(rho[m])
        Tm = _tail_from(m, r)
        while _tail(m, r, K, Tm) > WOR_TAIL_TOL:
            Tm *= 1.25
        T = max(T, Tm)
        tail += _tail(m, r, K, Tm)
        tail += WOR_T_LO ** (m + 1) * math.exp((m - 1) * WOR_T_LO) / math.factorial(m + 1)
    s_lo = math.log(WOR_T_LO)
    J = max(2, math.ceil((math.log(T) - s_lo) / h))
    s_hi = s_lo + J * h
    acc = _nodes_sum(x, np.exp(s_lo + h * np.arange(J + 1)), levels, qm)
    nodes = J + 1
    value = acc * h
    change = np.full(K, np.inf)
    while True:
        mid = _nodes_sum(x, np.exp(s_lo + h * (np.arange(J) + 0.5)), levels, qm)
        nodes += J
        new = 0.5 * (value + mid * h)
        change = np.abs(new - value)
        value = new
        h /= 2
        J *= 2
        if float(np.max(change, initial=0.0)) <= WOR_TARGET or h < WOR_MIN_STEP:
            break
    assert abs(s_lo + J * h - s_hi) < 1e-9
    return value, change, tail, nodes


#: Largest number of (token, node) entries of one block of :func:`_nodes_sum`.
_BLOCK: int = 1 << 20


def _nodes_sum(x: np.ndarray, ts: np.ndarray, levels: list[int], qm: np.ndarray) -> np.ndarray:
    r""":math:`\sum_j` :func:`_node` ``(x, ts[j])``: the same recursion for blocks of nodes at once
    (arrays ``(K, nodes)``; the plain and the logarithmic branch chosen per node by the same test),
    so that short chains do not pay one round of numpy calls per node."""
    K = len(x)
    top = max(levels)
    smax = float(np.sum(qm[1 : top + 1]))
    logC = top * math.log(max(K, 2)) - math.lgamma(top + 1) if top <= K else 0.0
    out = np.zeros(K)
    plain = (ts < _EXP_SAFE) & (logC + smax * ts < _EXP_SAFE)
    width = max(1, _BLOCK // max(K, 1))
    for sel, is_plain in ((ts[plain], True), (ts[~plain], False)):
        for b0 in range(0, sel.size, width):
            t = sel[b0 : b0 + width]
            qt = x[:, None] * t[None, :]
            if is_plain:
                c = np.expm1(qt)
                w = t * np.exp(-t)
                Y = np.cumsum(c, axis=0)
                for m in range(1, top + 1):
                    if m > 1:
                        sh = np.empty_like(Y)
                        sh[0] = 0.0
                        sh[1:] = Y[:-1]
                        Y = np.cumsum(c * sh, axis=0)
                    if m in levels:
                        out += Y @ w
                continue
            with np.errstate(divide="ignore"):
                big = qt > 1.0
                logc = np.empty_like(qt)
                logc[big] = qt[big] + np.log(-np.expm1(-qt[big]))
                logc[~big] = np.log(np.expm1(qt[~big]))
                L = np.logaddexp.accumulate(logc, axis=0)
                lw = np.log(t) - t
                for m in range(1, top + 1):
                    if m > 1:
                        sh = np.empty_like(L)
                        sh[0] = -np.inf
                        sh[1:] = L[:-1]
                        L = np.logaddexp.accumulate(logc + sh, axis=0)
                    if m in levels:
                        out += np.exp(lw[None, :] + L).sum(axis=1)
    return out


def _node(
    x: np.ndarray, t: float, levels: list[int], rho: np.ndarray, qm: np.ndarray
) -> np.ndarray:
    r"""Integrand in :math:`s=\log t` at one node: :math:`t\,e^{-t}\sum_{m} e_m^{(k)}(c(t))` for
    every prefix ``k``, by the cumulative-sum recursion :math:`e_m^{(k)} = \sum_{i\le k} c_i
    e_{m-1}^{(i-1)}` (positive terms only).

    While :math:`\log\binom{K}{m} + s_m t` stays below the overflow limit (:math:`s_m` the sum of
    the ``m`` largest entries bounds the growth: :math:`e_m \le \binom{K}{m} e^{s_m t}`), the
    recursion runs in plain floating point; otherwise in logarithms (``logaddexp.accumulate``).
    """
    K = len(x)
    top = max(levels)
    qt = x * t
    smax = float(np.sum(qm[1 : top + 1]))
    logC = top * math.log(max(K, 2)) - math.lgamma(top + 1) if top <= K else 0.0
    out = np.zeros(K)
    if t < _EXP_SAFE and logC + smax * t < _EXP_SAFE:
        c = np.expm1(qt)
        et = math.exp(-t)
        Y: np.ndarray = c
        for m in range(1, top + 1):
            if m > 1:
                shifted = np.empty(K)
                shifted[0] = 0.0
                shifted[1:] = Y[:-1]
                Y = np.cumsum(c * shifted)
            else:
                Y = np.cumsum(c)
            if m in levels:
                out += (t * et) * Y
        return out
    with np.errstate(divide="ignore"):
        big = qt > 1.0
        logc = np.empty(K)
        logc[big] = qt[big] + np.log(-np.expm1(-qt[big]))
        logc[~big] = np.log(np.expm1(qt[~big]))
        L = np.logaddexp.accumulate(logc)
        for m in range(1, top + 1):
            if m > 1:
                shifted = np.empty(K)
                shifted[0] = -np.inf
                shifted[1:] = L[:-1]
                L = np.logaddexp.accumulate(logc + shifted)
            if m in levels:
                out += np.exp(math.log(t) - t + L)
    return out


def _g1(x: np.ndarray, rest: np.ndarray) -> np.ndarray:
    r""":math:`G_1` along the chain: cumulative :math:`\sum q_i/(1-q_i)`."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(x > 0, x / rest, 0.0)
    return _cumsum(a)


def _direct(
    x: np.ndarray, n: int, rest: np.ndarray, outside: float, levels: list[int], h: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Sum of ``G_m`` over ``levels`` along the chain ``x`` (full-vocabulary rates), with error.

    ``outside`` is the vocabulary mass that is not on the chain.
    """
    K = len(x)
    total = np.zeros(K)
    err = np.zeros(K)
    nodes = 0
    quad = [m for m in levels if m >= 2]
    if 1 in levels:
        total += _g1(x, rest)
    if quad:
        rho = np.array([_outside_top(x, m, outside) for m in range(max(quad) + 1)])
        Th, est, tail, used = _quad_levels(x, quad, rho, h)
        nodes += used
        total += Th
        # Rounding: relative error ~ eps * t of each node value (t <= ~150 / rho) plus the
        # cumulative sums (~ sqrt(K) eps, an estimate rather than a worst case).
        rel = 256 * _EPS * (1.0 + 1.0 / float(rho[max(quad)])) + 16 * _EPS * math.sqrt(K)
        err += est + tail + rel * np.abs(Th)
    return total, err, nodes


def _chain(x: np.ndarray, n: int, h: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``Q(H_k^n)`` for the prefixes of ``x`` (a distribution: positive entries summing to 1)."""
    K = len(x)
    S = _cumsum(x)
    if n == 1:
        return np.minimum(S, 1.0), np.zeros(K), 0
    lam = _suffix_after(x)
    rest = exclusive_sums(x)
    R = _outside_top(x, n - 1, 0.0)
    if R >= WOR_RHO_MIN or K <= n - 1:
        G, gerr, nodes = _direct(x, n, rest, 0.0, list(range(1, n)), h)
        Q = S - lam * G
        err = lam * gerr + (8 + _SUM_EPS * K) * _EPS * (S + lam * G)
        return np.clip(Q, 0.0, 1.0), err, nodes
    # Deflate the largest token (position j0 on the chain).
    j0 = int(np.argmax(x))
    Q = np.empty(K)
    err = np.empty(K)
    nodes = 0
    q0 = float(x[j0])
    if j0 > 0:
        # Prefixes before j0 do not contain the big token: well conditioned (rates >= q0).
        pre = x[:j0]
        G, gerr, used = _direct(pre, n, rest[:j0], q0 + float(np.sum(x[j0 + 1:])),
                                list(range(1, n)), h)
        nodes += used
        Q[:j0] = S[:j0] - lam[:j0] * G
        err[:j0] = lam[:j0] * gerr + (8 + _SUM_EPS * K) * _EPS * (S[:j0] + lam[:j0] * G)
    d = np.concatenate([x[:j0], x[j0 + 1:]])
    r0 = float(rest[j0])  # 1 - q0 as the sum of the other entries
    if len(d) == 0:
        Q[j0:] = S[j0:]
        err[j0:] = 0.0
        return np.clip(Q, 0.0, 1.0), err, nodes
    Qp, errp, used = _chain(d / r0, n - 1, h)
    nodes += used
    # G_{n-1} on the deleted chain with the original rates (token 0 outside, rest_i original).
    rest_d = np.concatenate([rest[:j0], rest[j0 + 1:]])
    Gd, gerr, used = _direct(d, n, rest_d, q0, [n - 1], h)
    nodes += used
    # prefix length k >= j0 + 1 contains token 0; H \ 0 is the deleted prefix of length k - 1.
    idx = np.arange(j0 + 1, K + 1) - 1  # deleted prefix length (k - 1), as a count
    Qp0 = np.concatenate([[0.0 if n - 1 >= 1 else 1.0], Qp])  # length-0 prefix: Q'(empty) = 0
    Gd0 = np.concatenate([[0.0], Gd])
    ep0 = np.concatenate([[0.0], errp])
    ge0 = np.concatenate([[0.0], gerr])
    lk = lam[j0:]
    Q[j0:] = Qp0[idx] - lk * Gd0[idx]
    err[j0:] = ep0[idx] + lk * ge0[idx] + (8 + _SUM_EPS * K) * _EPS * (1.0 + lk * Gd0[idx])
    return np.clip(Q, 0.0, 1.0), err, nodes


def wor_chain(q_chain: np.ndarray, n: int, *, h: float = WOR_QUAD_STEP) -> WorChain:
    r""":math:`Q(H_k^n)` for every prefix :math:`H_k` of a chain of tokens, sampling without
    replacement.

    Parameters
    ----------
    q_chain
        Draft probabilities in chain order, ``(V,)`` float64: a distribution (entries sum to 1
        within the input tolerance). Zero entries are allowed (they never ring).
    n
        Number of drafts, ``1 <= n <=`` number of positive entries.
    h
        Initial trapezoid step in :math:`\log t`.

    Returns
    -------
    WorChain
        ``Q`` and ``error`` of shape ``(V,)`` (prefix lengths ``1..V``) and the node count.
    """
    q_chain = np.asarray(q_chain, dtype=np.float64)
    pos = q_chain > 0
    V = len(q_chain)
    if int(pos.sum()) < n:
        raise ValueError(
            f"argument 'q': only {int(pos.sum())} tokens have positive probability, fewer than "
            f"n = {n}; sampling n distinct drafts without replacement is undefined"
        )
    x = q_chain[pos]
    Qx, ex, nodes = _chain(x, n, h)
    # Zero-mass tokens leave Q unchanged: spread the positive-chain values over the full chain.
    cnt = np.cumsum(pos)  # number of positive tokens in each prefix
    Q = np.zeros(V)
    E = np.zeros(V)
    has = cnt > 0
    Q[has] = Qx[cnt[has] - 1]
    E[has] = ex[cnt[has] - 1]
    return WorChain(Q=Q, error=E, nodes=nodes)


def wor_prob_all_in(q: np.ndarray, H: np.ndarray, n: int) -> tuple[float, float]:
    r""":math:`Q(H^n)` for one set ``H`` (boolean mask) and its error bound.

    Puts ``H`` first on a chain and reads the prefix of length :math:`|H|`.
    """
    q = np.asarray(q, dtype=np.float64)
    H = np.asarray(H, dtype=bool)
    k = int(H.sum())
    if k == 0:
        return 0.0, 0.0
    order = np.concatenate([np.flatnonzero(H), np.flatnonzero(~H)])
    # Only the prefix up to |H| is needed: compute on the full chain (outside masses matter).
    ch = wor_chain(q[order], n)
    return float(ch.Q[k - 1]), float(ch.error[k - 1])
