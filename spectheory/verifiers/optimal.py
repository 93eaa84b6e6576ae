r"""An optimal, lossless verifier: it attains :math:`\alpha^*` exactly.

Construction ("max-position layout", i.i.d. drafts)
---------------------------------------------------
Let :math:`H^*` be the minimiser of the subset form
:math:`\alpha^* = \min_H [1 + p(H) - q(H)^n]` found by the sorted-prefix algorithm (Hu et al., arXiv
2502.18779). Complementary slackness in the transport LP (SpecTr, arXiv 2310.15141) says that an
optimal rule

* accepts every tuple that contains a token outside :math:`H^*`, with such a token;
* on tuples inside :math:`H^*` selects tokens whose accepted mass is exactly :math:`p` on
  :math:`H^*`;
* resamples the rejected mass :math:`1 - \alpha^*` on :math:`\Omega \setminus H^*`.

We realise it with a *layout*: every token :math:`y` with :math:`q(y) > 0` owns a set of pieces of
the interval :math:`[0, q(\Omega)]` of total length :math:`q(y)`; the tokens of :math:`H^*` own
:math:`[0, q(H^*)]`, the others the rest. Each draft :math:`\bar x_j = y` gets a position drawn
uniformly from the pieces of :math:`y`; positions of i.i.d. drafts are then i.i.d. uniform, so the
draft with the largest position is selected, and the selection marginal is

.. math::

    r(y) = \sum_{[s, t] \in \text{pieces}(y)} (t^n - s^n).

Accept the selected :math:`y` with probability :math:`\min(1, p(y)/r(y))`; otherwise draw from the
residual :math:`(p - \min(p, r))_+` normalised. This is lossless for *any* layout. It is optimal
when :math:`r \ge p` on :math:`H^*` and :math:`r \le p` off :math:`H^*`; the layout is built so
(``docs/optimal_verifier.md`` has the proof): targets are water-filled,
:math:`r = q\max(p/q, c)` on :math:`H^*` and :math:`r = q \min(p/q, c')` off it, and each target is
realised exactly by placing tokens in decreasing ratio order on an interval of the free space whose
value is exactly its target (a martingale "shadow" construction; cf. Khisti et al., arXiv
2410.18234, for the selection-then-speculative-sampling decomposition, and Thomas & Pal, arXiv
2511.15898, for the polymatroid view).

Small-V exact path
------------------
``Optimal(scheme, method="lp")`` derives the rule from the LP plan
(:func:`spectheory.optimal_acceptance` with ``method="lp"``): a tuple with token set :math:`t`
outputs :math:`y` with probability :math:`\pi(t, y)/Q(t)` and otherwise resamples. It works for
every scheme that can enumerate its tuples (i.i.d. and without replacement included) and is the
reference the layout rule is compared with.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .._validate import SpecTheoryInputError, as_distribution, check_n
from ..schemes import IID, Scheme, WithoutReplacement
from .base import Verifier, register

__all__ = ["LPRule", "LayoutRule", "Optimal", "accepted_mass_iid", "layout_rule", "lp_rule"]

#: Relative tolerance of the exact-match root finding in the layout construction (the value of each
#: placed interval matches its target to about this relative precision, far below 1e-9).
ROOT_RTOL: float = 1e-15


# ---------------------------------------------------------------------------------------- helpers
def _pow_diff(t: float, s: float, n: int) -> float:
    r""":math:`t^n - s^n` for :math:`t \ge s \ge 0`, as :math:`(t-s)\sum_i t^{n-1-i}s^i` (no
    cancellation for short pieces)."""
    if t <= s:
        return 0.0
    acc = 0.0
    tp = 1.0
    for i in range(n):
        acc += tp * s ** (n - 1 - i)
        tp *= t
    return (t - s) * acc


def _pow_diff_vec(t: np.ndarray, s: np.ndarray, n: int) -> np.ndarray:
    """Vectorised :func:`_pow_diff`."""
    t = np.asarray(t, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    acc = np.zeros(np.broadcast(t, s).shape)
    tp = np.ones_like(acc)
    for i in range(n):
        acc = acc + tp * s ** (n - 1 - i)
        tp = tp * t
    return np.maximum(t - s, 0.0) * acc


class _FreeSpace:
    """Disjoint free intervals ``[s_i, t_i]`` of the position axis, in increasing order, with their
    values ``v_i`` (kept up to date, never recomputed).

    The *free coordinate* of a point is the free length below it; the *value* of a free interval
    ``[s, t]`` is :math:`t^n - s^n`.
    """

    def __init__(self, lo: float, hi: float, n: int) -> None:
        self.n = n
        self.s = np.array([lo] if hi > lo else [], dtype=np.float64)
        self.t = np.array([hi] if hi > lo else [], dtype=np.float64)
        self.v = np.array([_pow_diff(hi, lo, n)] if hi > lo else [], dtype=np.float64)

    def take_all(self) -> list[tuple[float, float]]:
        out = [(float(a), float(b)) for a, b in zip(self.s, self.t, strict=True) if b > a]
        self.s = self.s[:0]
        self.t = self.t[:0]
        self.v = self.v[:0]
        return out

    def take_exact(self, length: float, value: float) -> list[tuple[float, float]]:
        r"""Remove the free-coordinate interval ``[a, a + length]`` whose value equals ``value``.

        The value of ``[a, a + length]`` is continuous and non-decreasing in ``a`` (the free density
        :math:`n x^{n-1}` increases along the free coordinate). ``a`` is bracketed by two binary
        searches over the breakpoints (``a`` on an interval start, ``a + length`` on an interval
        start), then found by Newton's method from the right end of the bracket (the value is
        convex there, so the iterates decrease monotonically to the root), safeguarded by
        bisection. Targets outside the attainable range are clamped (only by rounding).
        """
        n = self.n
        s, t = self.s, self.t
        F = len(s)
        if F == 0 or length <= 0.0:
            # Only for groups far below the resolution of their position (q ~ 1e-17 * position or
            # less): the free space was used up by rounding; such a group is never selected.
            return []
        cl = np.empty(F + 1)
        cl[0] = 0.0
        np.cumsum(t - s, out=cl[1:])
        cv = np.empty(F + 1)
        cv[0] = 0.0
        np.cumsum(self.v, out=cv[1:])
        total = float(cl[-1])
        length = min(length, total)
        amax = max(total - length, 0.0)

        def G(u: float) -> float:
            i = min(max(int(np.searchsorted(cl, u, side="right")) - 1, 0), F - 1)
            si = float(s[i])
            x = min(max(si + (u - float(cl[i])), si), float(t[i]))
            return float(cv[i]) + _pow_diff(x, si, n)

        # Candidates 1: a = cl_i for i < n1 (cl_i <= amax); value G(cl_i + length) - cv_i.
        n1 = int(np.searchsorted(cl, amax, side="right"))
        lo_i, hi_i = 0, n1  # first index with value >= target lies in [lo_i, hi_i]
        while lo_i < hi_i:
            mid = (lo_i + hi_i) // 2
            if G(float(cl[mid]) + length) - float(cv[mid]) < value:
                lo_i = mid + 1
            else:
                hi_i = mid
        k1 = lo_i
        # Candidates 2: a = cl_j - length for j >= j0 (cl_j >= length); value cv_j - G(cl_j - len).
        j0 = int(np.searchsorted(cl, length, side="left"))
        lo_j, hi_j = j0, F + 1
        while lo_j < hi_j:
            mid = (lo_j + hi_j) // 2
            if float(cv[mid]) - G(float(cl[mid]) - length) < value:
                lo_j = mid + 1
            else:
                hi_j = mid
        k2 = lo_j
        lo_a = max(float(cl[k1 - 1]) if k1 > 0 else 0.0,
                   float(cl[k2 - 1]) - length if k2 > j0 else 0.0)
        hi_a = min(float(cl[k1]) if k1 < n1 else amax,
                   float(cl[k2]) - length if k2 <= F else amax)
        lo_a, hi_a = max(lo_a, 0.0), min(hi_a, amax)
        if k1 == 0 and k2 == j0:
            a = 0.0
        elif lo_a >= hi_a:
            a = lo_a
        else:
            mid_a = 0.5 * (lo_a + hi_a)
            i = min(max(int(np.searchsorted(cl, mid_a, side="right")) - 1, 0), F - 1)
            j = min(max(int(np.searchsorted(cl, mid_a + length, side="right")) - 1, 0), F - 1)
            si, sj = float(s[i]), float(s[j])
            oi, oj = si - float(cl[i]), sj - float(cl[j]) + length
            base = float(cv[j]) - float(cv[i])

            def f(x: float) -> float:
                return base + _pow_diff(oj + x, sj, n) - _pow_diff(oi + x, si, n) - value

            a = hi_a
            for _ in range(100):
                fa = f(a)
                if fa <= 0.0:
                    lo_a = a
                else:
                    hi_a = a
                d = n * ((oj + a) ** (n - 1) - (oi + a) ** (n - 1)) if n > 1 else 0.0
                step = a - fa / d if d > 0 else 0.5 * (lo_a + hi_a)
                if not lo_a < step < hi_a:
                    step = 0.5 * (lo_a + hi_a)
                if abs(step - a) <= ROOT_RTOL * max(1.0, abs(a)) or hi_a - lo_a <= ROOT_RTOL:
                    a = step
                    break
                a = step
        return self._remove(cl, a, a + length)

    def _remove(self, cl: np.ndarray, u0: float, u1: float) -> list[tuple[float, float]]:
        s, t, v = self.s, self.t, self.v
        n = self.n
        F = len(s)
        i0 = int(np.clip(np.searchsorted(cl, u0, side="right") - 1, 0, F - 1))
        i1 = int(np.clip(np.searchsorted(cl, u1, side="left") - 1, 0, F - 1))
        i1 = max(i1, i0)
        x0 = min(max(float(s[i0]) + (u0 - float(cl[i0])), float(s[i0])), float(t[i0]))
        x1 = min(max(float(s[i1]) + (u1 - float(cl[i1])), float(s[i1])), float(t[i1]))
        if i0 == i1:
            pieces = [(x0, x1)] if x1 > x0 else []
        else:
            pieces = [(x0, float(t[i0]))] if t[i0] > x0 else []
            pieces += [(float(a), float(b)) for a, b in zip(s[i0 + 1 : i1], t[i0 + 1 : i1],
                                                            strict=True)]
            if x1 > s[i1]:
                pieces.append((float(s[i1]), x1))
        new_s: list[float] = []
        new_t: list[float] = []
        if x0 > s[i0]:
            new_s.append(float(s[i0]))
            new_t.append(x0)
        if t[i1] > x1:
            new_s.append(x1)
            new_t.append(float(t[i1]))
        new_v = [_pow_diff(b, a, n) for a, b in zip(new_s, new_t, strict=True)]
        self.s = np.concatenate([s[:i0], new_s, s[i1 + 1 :]])
        self.t = np.concatenate([t[:i0], new_t, t[i1 + 1 :]])
        self.v = np.concatenate([v[:i0], new_v, v[i1 + 1 :]])
        return pieces


def _realize(
    values: np.ndarray, lengths: np.ndarray, lo: float, hi: float, n: int
) -> list[list[tuple[float, float]]]:
    r"""Pieces of ``[lo, hi]`` for groups sorted by level ``values/lengths`` ascending, each group
    receiving exactly its value :math:`\sum (t^n - s^n)`.

    Requires the top condition (every top set of groups asks for at most the value of the top of
    ``[lo, hi]`` of the same length) and equal totals; then placing groups from the highest level
    down, each on the free-coordinate interval whose value equals its target, never gets stuck
    (proof in ``docs/optimal_verifier.md``). The lowest group takes what is left.
    """
    m = len(values)
    out: list[list[tuple[float, float]]] = [[] for _ in range(m)]
    if m == 0:
        return out
    free = _FreeSpace(lo, hi, n)
    for g in range(m - 1, 0, -1):
        out[g] = free.take_exact(float(lengths[g]), float(values[g]))
    out[0] = free.take_all()
    return out


def _water_level_up(p: np.ndarray, q: np.ndarray, total: float) -> tuple[int, float]:
    r"""For ratios ``p/q`` ascending, the number ``k`` of tokens raised to level ``c`` and ``c``,
    with     :math:`\sum \max(p, c q) = \text{total}` (``k = 0``: nothing raised)."""
    K = len(p)
    U = np.cumsum(q)
    P = np.cumsum(p)
    Ptot = P[-1]
    rho = p / q
    # F(rho_j) = rho_j U_j + (Ptot - P_j): sum with the first j+1 tokens at level rho_j.
    F = rho * U + (Ptot - P)
    j = int(np.searchsorted(F, total, side="left"))
    if j == 0:
        return 0, float(rho[0])
    k = min(j, K)
    c = (total - (Ptot - P[k - 1])) / U[k - 1]
    return k, float(c)


def _water_level_down(p: np.ndarray, q: np.ndarray, total: float) -> tuple[int, float]:
    r"""For ratios ``p/q`` ascending, the number ``k`` of tokens kept at ``p`` (the rest capped at
    level ``c'``) with :math:`\sum \min(p, c' q) = \text{total}`."""
    K = len(p)
    U = np.cumsum(q)
    P = np.cumsum(p)
    Qtot = U[-1]
    rho = p / q
    # G(rho_j) = P_j + rho_j (Qtot - U_j): tokens up to j keep p, the others are capped at rho_j.
    G = P + rho * (Qtot - U)
    j = int(np.searchsorted(G, total, side="left"))
    if j >= K:
        # Only by rounding: keep everything but the top token, which takes the rest.
        j = K - 1
    kept = P[j - 1] if j > 0 else 0.0
    rest = Qtot - (U[j - 1] if j > 0 else 0.0)
    return j, float((total - kept) / rest)


# ------------------------------------------------------------------------------------ rule types
@dataclass(frozen=True, eq=False)
class _RuleBase:
    """Common parts of a per-position optimal rule."""

    p: np.ndarray
    q: np.ndarray
    n: int
    alpha_star: float
    witness: np.ndarray
    accepted: np.ndarray = field(repr=False)  # a(y) = Pr(accept and Y = y)
    residual: np.ndarray = field(repr=False)  # normalised residual law (zeros when alpha = 1)
    info: dict[str, Any] = field(default_factory=dict, repr=False)  # construction statistics

    @property
    def acceptance(self) -> float:
        r"""Exact acceptance :math:`\sum_y a(y)` of the rule."""
        return float(math.fsum(self.accepted))

    def _finish(self, token: int, accepted: bool, rng: np.random.Generator) -> tuple[int, bool]:
        if accepted:
            return token, True
        return _draw(self.residual, rng), False


def _draw(w: np.ndarray, rng: np.random.Generator) -> int:
    cdf = np.cumsum(w)
    u = rng.random() * cdf[-1]
    return int(min(np.searchsorted(cdf, u, side="right"), len(w) - 1))


def _residual(p: np.ndarray, a: np.ndarray) -> np.ndarray:
    res = np.maximum(p - a, 0.0)
    tot = res.sum()
    return res / tot if tot > 0 else res


@dataclass(frozen=True, eq=False)
class LayoutRule(_RuleBase):
    r"""The max-position layout rule of one position (i.i.d. drafts).

    Attributes
    ----------
    group
        Group id per token (``-1`` for tokens with :math:`q = 0`); tokens of one group share the
        group's pieces (their positions are uniform over them).
    piece_start, piece_end, piece_ptr
        Pieces of every group, CSR layout: group ``g`` owns
        ``piece_*[piece_ptr[g]:piece_ptr[g+1]]``.
    selection
        Selection marginal :math:`r(y)`.
    accept_prob
        :math:`\min(1, p(y)/r(y))`.
    """

    group: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    piece_start: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    piece_end: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    piece_ptr: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    selection: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    accept_prob: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _cum: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    # -------------------------------------------------------------- sampling
    def positions(self, drafts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random positions of the drafted tokens (same shape as ``drafts``)."""
        d = np.asarray(drafts, dtype=np.int64)
        g = self.group[d]
        if np.any(g < 0):
            raise SpecTheoryInputError(
                "argument 'drafts': contains a token with q = 0, which the draft model never "
                "proposes"
            )
        lo = self._cum[self.piece_ptr[g]]
        hi = self._cum[self.piece_ptr[g + 1]]
        target = lo + rng.random(d.shape) * (hi - lo)
        k = np.searchsorted(self._cum, target, side="right") - 1
        k = np.clip(k, self.piece_ptr[g], np.maximum(self.piece_ptr[g + 1] - 1, self.piece_ptr[g]))
        k = np.minimum(k, max(len(self.piece_start) - 1, 0))
        pos = np.minimum(self.piece_start[k] + (target - self._cum[k]), self.piece_end[k])
        # A group whose pieces vanished in floating point (q far below the resolution of its
        # position) is never selected: its exact selection mass is below rounding anyway.
        return np.where(hi > lo, pos, -1.0)

    def select(self, drafts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Selected token for each tuple (``drafts`` of shape ``(..., n)``)."""
        d = np.asarray(drafts, dtype=np.int64)
        pos = self.positions(d, rng)
        j = np.argmax(pos, axis=-1)
        return np.take_along_axis(d, j[..., None], axis=-1)[..., 0]

    def sample(self, drafts: Any, rng: np.random.Generator) -> tuple[int, bool]:
        """Verify one draft tuple: ``(output token, accepted)``."""
        d = _check_drafts(drafts, self.n, len(self.p))
        y = int(self.select(d, rng))
        return self._finish(y, bool(rng.random() < self.accept_prob[y]), rng)

    def sample_many(
        self, drafts: Any, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Verify ``N`` tuples at once (``drafts`` of shape ``(N, n)``): ``(tokens, accepted)``."""
        d = np.asarray(drafts, dtype=np.int64)
        if d.ndim != 2 or d.shape[1] != self.n:
            raise SpecTheoryInputError(
                f"argument 'drafts': expected shape (N, {self.n}), got {d.shape}"
            )
        y = self.select(d, rng)
        acc = rng.random(len(y)) < self.accept_prob[y]
        out = y.copy()
        nrej = int((~acc).sum())
        if nrej:
            cdf = np.cumsum(self.residual)
            u = rng.random(nrej) * cdf[-1]
            out[~acc] = np.minimum(np.searchsorted(cdf, u, side="right"), len(self.p) - 1)
        return out, acc

    # -------------------------------------------------------------- exact per-tuple law
    def selection_probs(self, drafts: Any) -> np.ndarray:
        r"""Exact probability that each draft of the tuple has the largest position.

        Computed independently of :attr:`selection`: on every elementary segment between piece
        endpoints of the drafted tokens the position densities are constant and the CDFs linear, so
        :math:`\int f_j \prod_{i \ne j} F_i` is a polynomial integral, done exactly by
        Gauss-Legendre with ``n`` nodes.
        """
        d = _check_drafts(drafts, self.n, len(self.p))
        groups = self.group[d]
        if np.any(groups < 0):
            raise SpecTheoryInputError("argument 'drafts': contains a token with q = 0")
        segs = []
        for g in groups:
            a, b = self.piece_ptr[g], self.piece_ptr[g + 1]
            segs.append((self.piece_start[a:b], self.piece_end[a:b]))
        pts = np.unique(np.concatenate([np.concatenate(s) for s in segs]))
        a, b = pts[:-1], pts[1:]
        keep = b > a
        a, b = a[keep], b[keep]
        x, w = np.polynomial.legendre.leggauss(max(self.n, 1))
        half = 0.5 * (b - a)
        t = half[:, None] * x[None, :] + 0.5 * (a + b)[:, None]  # (M, nodes)
        mid = 0.5 * (a + b)
        dens = np.empty((self.n, len(a)))
        cdf = np.empty((self.n, *t.shape))
        for j, (s, e) in enumerate(segs):
            length = float(np.sum(e - s))
            dens[j] = np.any((s[None, :] <= mid[:, None]) & (e[None, :] >= mid[:, None]), axis=1)
            dens[j] /= length
            below = np.clip(np.minimum(e, t[..., None]) - s, 0.0, None)  # (M, nodes, pieces)
            cdf[j] = below.sum(axis=-1) / length
        out = np.zeros(self.n)
        for j in range(self.n):
            others = np.prod(np.delete(cdf, j, axis=0), axis=0)  # (M, nodes)
            out[j] = float(np.sum(dens[j] * half * (others @ w)))
        return out

    def output_law_given(self, drafts: Any) -> tuple[np.ndarray, float]:
        """Exact law of ``Y`` given one tuple, and the tuple's acceptance probability."""
        d = _check_drafts(drafts, self.n, len(self.p))
        sel = self.selection_probs(d)
        law = np.zeros(len(self.p))
        acc = 0.0
        for j, y in enumerate(d):
            a = sel[j] * self.accept_prob[y]
            law[y] += a
            acc += a
        law += (1.0 - acc) * self.residual
        return law, acc


@dataclass(frozen=True, eq=False)
class LPRule(_RuleBase):
    """The rule read off an optimal LP plan (any scheme that enumerates its tuples; small V)."""

    sets: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    out_prob: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]  # (T, V)
    _index: dict[tuple[int, ...], int] = field(default_factory=dict, repr=False)

    def _row(self, drafts: np.ndarray) -> np.ndarray:
        key = tuple(sorted(set(int(x) for x in drafts)))
        try:
            return self.out_prob[self._index[key]]
        except KeyError:
            raise SpecTheoryInputError(
                f"argument 'drafts': token set {key} has probability 0 under the draft scheme"
            ) from None

    def sample(self, drafts: Any, rng: np.random.Generator) -> tuple[int, bool]:
        d = _check_drafts(drafts, self.n, len(self.p))
        row = self._row(d)
        u = rng.random()
        cdf = np.cumsum(row)
        if u < cdf[-1]:
            return int(np.searchsorted(cdf, u, side="right")), True
        return _draw(self.residual, rng), False

    def output_law_given(self, drafts: Any) -> tuple[np.ndarray, float]:
        d = _check_drafts(drafts, self.n, len(self.p))
        row = self._row(d)
        acc = float(row.sum())
        return row + (1.0 - acc) * self.residual, acc


def _check_drafts(drafts: Any, n: int, V: int) -> np.ndarray:
    d = np.asarray(drafts)
    if d.shape != (n,) or not np.issubdtype(d.dtype, np.integer):
        raise SpecTheoryInputError(
            f"argument 'drafts': expected {n} integer token ids, got {d!r}"
        )
    if d.min() < 0 or d.max() >= V:
        raise SpecTheoryInputError(f"argument 'drafts': token ids must lie in [0, {V})")
    return d.astype(np.int64)


# ------------------------------------------------------------------------------ constructions
def layout_rule(p: Any, q: Any, n: int) -> LayoutRule:
    r"""Build the max-position layout rule for i.i.d. drafts at one position.

    Parameters
    ----------
    p, q
        Target and draft distributions, shape ``(V,)``.
    n
        Number of i.i.d. drafts.

    Returns
    -------
    LayoutRule
        Its :attr:`~LayoutRule.acceptance` equals :math:`\alpha^*` and its output law equals ``p``.
    """
    from ..solvers.prefix import prefix_iid, prefix_order

    pv = as_distribution(p, "p", allow_batch=False)
    qv = as_distribution(q, "q", allow_batch=False)
    n = check_n(n)
    if pv.shape != qv.shape:
        raise SpecTheoryInputError(
            f"argument 'q': vocabulary size {qv.shape[0]} does not match p's {pv.shape[0]}"
        )
    V = pv.shape[0]
    value, mask = prefix_iid(pv[None, :], qv[None, :], n)
    alpha = float(value[0])
    H = mask[0] & (qv > 0)
    order = prefix_order(pv[None, :], qv[None, :])[0]
    live = qv[order] > 0
    inner = order[H[order] & live]
    outer = order[~H[order] & live]

    group = np.full(V, -1, dtype=np.int64)
    # Pieces as flat arrays (start, end, group id); groups numbered in creation order.
    p_start: list[np.ndarray] = []
    p_end: list[np.ndarray] = []
    p_grp: list[np.ndarray] = []
    n_groups = 0
    n_sequential = 0

    def add_sequential(vals: list[float], lens: list[float], mem: list[np.ndarray],
                       lo: float, hi: float) -> None:
        nonlocal n_groups, n_sequential
        n_sequential += len(vals)
        pcs = _realize(np.array(vals), np.array(lens), lo, hi, n)
        for m, pc in zip(mem, pcs, strict=True):
            group[m] = n_groups
            if pc:
                arr = np.array(pc, dtype=np.float64)
                p_start.append(arr[:, 0])
                p_end.append(arr[:, 1])
                p_grp.append(np.full(len(pc), n_groups, dtype=np.int64))
            n_groups += 1

    S_H = math.fsum(qv[inner])
    S_out = math.fsum(qv[outer])
    # ---- inner tokens on [0, S_H]: split at the records of g_m = S_m^n - P_m (tight sets), then
    # water-fill each block (targets max(p, c q), pooled group first) and realise it. Singleton
    # blocks are greedy slots and are placed all at once.
    if len(inner):
        pi, qi = pv[inner], qv[inner]
        Sc = np.concatenate([[0.0], np.cumsum(qi)])
        Sc[-1] = S_H
        Pc = np.concatenate([[0.0], np.cumsum(pi)])
        g = Sc**n - Pc
        D = np.maximum.accumulate(g)
        rec = np.flatnonzero(g[1:] > D[:-1]) + 1
        bounds = np.unique(np.concatenate([[0], rec, [len(inner)]]))
        lo_all, hi_all = bounds[:-1], bounds[1:]
        single = hi_all - lo_all == 1
        idx = lo_all[single]
        if len(idx):
            ids = n_groups + np.arange(len(idx))
            group[inner[idx]] = ids
            p_start.append(Sc[idx])
            p_end.append(Sc[idx + 1])
            p_grp.append(ids)
            n_groups += len(idx)
        for lo_b, hi_b in zip(lo_all[~single], hi_all[~single], strict=True):
            lo_b, hi_b = int(lo_b), int(hi_b)
            s_lo, s_hi = float(Sc[lo_b]), float(Sc[hi_b])
            bp, bq = pi[lo_b:hi_b], qi[lo_b:hi_b]
            total = _pow_diff(s_hi, s_lo, n)
            k, _ = _water_level_up(bp, bq, total)
            vals: list[float] = []
            lens: list[float] = []
            mem: list[np.ndarray] = []
            if k > 0:
                vals.append(total - math.fsum(bp[k:]))
                lens.append(math.fsum(bq[:k]))
                mem.append(inner[lo_b : lo_b + k])
            vals += [float(x) for x in bp[k:]]
            lens += [float(x) for x in bq[k:]]
            mem += [inner[j : j + 1] for j in range(lo_b + k, hi_b)]
            add_sequential(vals, lens, mem, s_lo, s_hi)
    # ---- outer tokens on [S_H, S_H + S_out]: targets min(p, c' q), capped group last.
    if len(outer):
        po, qo = pv[outer], qv[outer]
        top = S_H + S_out
        total = _pow_diff(top, S_H, n)
        k, _ = _water_level_down(po, qo, total)
        vals = [float(x) for x in po[:k]]
        lens = [float(x) for x in qo[:k]]
        mem = [outer[j : j + 1] for j in range(k)]
        vals.append(total - math.fsum(po[:k]))
        lens.append(math.fsum(qo[k:]))
        mem.append(outer[k:])
        add_sequential(vals, lens, mem, S_H, top)

    ps = np.concatenate(p_start) if p_start else np.zeros(0)
    pe = np.concatenate(p_end) if p_end else np.zeros(0)
    pg = np.concatenate(p_grp) if p_grp else np.zeros(0, dtype=np.int64)
    srt = np.lexsort((ps, pg))
    ps, pe, pg = ps[srt], pe[srt], pg[srt]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(pg, minlength=n_groups))]).astype(np.int64)
    cum = np.concatenate([[0.0], np.cumsum(pe - ps)])
    gval = np.bincount(pg, weights=_pow_diff_vec(pe, ps, n), minlength=n_groups)
    glen = np.bincount(pg, weights=pe - ps, minlength=n_groups)
    r = np.zeros(V)
    livemask = group >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        gl = glen[group[livemask]]
        r[livemask] = np.where(gl > 0, qv[livemask] * gval[group[livemask]] / gl, 0.0)
        acc_prob = np.where(r > 0, np.minimum(1.0, pv / np.where(r > 0, r, 1.0)), 0.0)
    a = np.minimum(pv, r)
    info = {"groups": n_groups, "pieces": len(ps), "sequential_groups": n_sequential}
    return LayoutRule(
        p=pv,
        q=qv,
        n=n,
        alpha_star=alpha,
        witness=mask[0],
        accepted=a,
        residual=_residual(pv, a),
        group=group,
        piece_start=ps,
        piece_end=pe,
        piece_ptr=ptr,
        selection=r,
        accept_prob=acc_prob,
        _cum=cum,
        info=info,
    )


def accepted_mass_iid(p: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    r"""Per-token accepted mass of the layout rule in closed form (i.i.d. drafts, one position).

    The layout realises its targets exactly (``docs/optimal_verifier.md``), so
    :math:`a(y) = p(y)` on :math:`H^*` and :math:`a(y) = \min(p(y), c' q(y))` off it, with the cap
    :math:`c'` chosen so that :math:`\sum_{y \notin H^*} a(y) = 1 - q(H^*)^n`. Costs one sort;
    :math:`\sum_y a(y) = \alpha^*`.
    """
    from ..solvers.prefix import prefix_iid, prefix_order

    _, mask = prefix_iid(p[None, :], q[None, :], n)
    H = mask[0] & (q > 0)
    order = prefix_order(p[None, :], q[None, :])[0]
    inner = order[H[order] & (q[order] > 0)]
    outer = order[~H[order] & (q[order] > 0)]
    a = np.zeros_like(p)
    a[inner] = p[inner]
    if len(outer):
        S_H = math.fsum(q[inner])
        total = _pow_diff(S_H + math.fsum(q[outer]), S_H, n)
        po, qo = p[outer], q[outer]
        k, c = _water_level_down(po, qo, total)
        a[outer[:k]] = po[:k]
        if k == len(outer) - 1 and c * qo[-1] > po[-1]:  # rounding clamp of _water_level_down
            a[outer[k:]] = total - math.fsum(po[:k])
        else:
            a[outer[k:]] = np.minimum(c * qo[k:], po[k:])
    return a


def lp_rule(p: Any, scheme: Scheme) -> LPRule:
    r"""The rule read off an optimal LP plan (:func:`spectheory.optimal_acceptance`,
    ``method="lp"``). Small vocabularies only (the LP enumerates the tuples)."""
    from ..api import optimal_acceptance

    if scheme.is_batched:
        raise SpecTheoryInputError(
            "argument 'scheme': the LP rule needs one position (use .row(b))"
        )
    pv = as_distribution(p, "p", allow_batch=False)
    res = optimal_acceptance(pv, scheme, method="lp")
    plan = res.plan
    if plan is None or isinstance(plan, tuple):  # pragma: no cover - LP always returns one plan
        raise SpecTheoryInputError("the LP solver returned no plan")
    V = pv.shape[0]
    T = len(plan.mass)
    out = np.zeros((T, V))
    np.add.at(out, (plan.edge_set, plan.edge_token), plan.flow)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(plan.mass[:, None] > 0, out / plan.mass[:, None], 0.0)
    # Rows may exceed 1 by rounding; never accept with probability above 1.
    rs = out.sum(axis=1, keepdims=True)
    out = out / np.maximum(rs, 1.0)
    a = np.zeros(V)
    np.add.at(a, plan.edge_token, plan.flow)
    a = np.minimum(a, pv)
    index = {tuple(int(x) for x in row[row >= 0]): i for i, row in enumerate(plan.sets)}
    n = scheme.n
    q = np.asarray(getattr(scheme, "q", np.full(V, np.nan)))
    return LPRule(
        p=pv,
        q=q,
        n=n,
        alpha_star=float(res.value),
        witness=np.asarray(res.witness),
        accepted=a,
        residual=_residual(pv, a),
        sets=plan.sets,
        out_prob=out,
        _index=index,
    )


# ---------------------------------------------------------------------------------- verifier
@register
class Optimal(Verifier):
    r"""The optimal lossless verifier: acceptance :math:`\alpha^*` exactly.

    Parameters
    ----------
    scheme
        The draft scheme: ``None`` or ``"iid"`` (i.i.d. drafts, default), ``"wor"`` (sampling
        without replacement; LP path only, small V), the classes :class:`~spectheory.IID` /
        :class:`~spectheory.WithoutReplacement`, or an instance of one of them (its ``q`` and ``n``
        then become the defaults of every method).
    method
        ``"auto"`` (layout for i.i.d., LP otherwise), ``"layout"`` (i.i.d. only; any V) or ``"lp"``
        (small V; any scheme that enumerates its tuples).

    Examples
    --------
    >>> import spectheory as st
    >>> v = st.verifiers.Optimal()
    >>> round(v.acceptance([0.6, 0.3, 0.1], [0.2, 0.3, 0.5], 2), 12)
    0.76
    """

    name: ClassVar[str] = "optimal"
    lossless: ClassVar[bool] = True

    def __init__(self, scheme: Any = None, *, method: str = "auto") -> None:
        self._default_q: np.ndarray | None = None
        self._default_n: int | None = None
        if scheme is None or scheme is IID or scheme == "iid":
            kind = "iid"
        elif scheme is WithoutReplacement or scheme == "wor":
            kind = "wor"
        elif isinstance(scheme, (IID, WithoutReplacement)):
            kind = "iid" if isinstance(scheme, IID) else "wor"
            self._default_q = np.asarray(scheme.q)
            self._default_n = scheme.n
        else:
            raise SpecTheoryInputError(
                f"argument 'scheme': expected IID or WithoutReplacement (class, instance, 'iid' or "
                f"'wor'), got {scheme!r}"
            )
        if method not in ("auto", "layout", "lp"):
            raise SpecTheoryInputError(
                f"argument 'method': expected 'auto', 'layout' or 'lp', got {method!r}"
            )
        if method == "layout" and kind != "iid":
            raise SpecTheoryInputError(
                "argument 'method': the layout construction needs i.i.d. drafts; use method='lp' "
                "for sampling without replacement (small V)"
            )
        self.kind = kind
        self.method = ("layout" if kind == "iid" else "lp") if method == "auto" else method
        self._cache: tuple[bytes, _RuleBase] | None = None

    # -------------------------------------------------------------- plumbing
    def _qn(self, q: Any, n: int | None) -> tuple[Any, int]:
        if q is None:
            if self._default_q is None:
                raise SpecTheoryInputError("argument 'q': required (no scheme instance was given)")
            q = self._default_q
        if n is None:
            if self._default_n is None:
                raise SpecTheoryInputError("argument 'n': required (no scheme instance was given)")
            n = self._default_n
        return q, check_n(n)

    def scheme(self, q: Any, n: int) -> Scheme:  # type: ignore[override]
        """The draft scheme whose :math:`\\alpha^*` this rule attains."""
        return IID(q, n) if self.kind == "iid" else WithoutReplacement(q, n)

    def setup(self, p: Any, q: Any = None, n: int | None = None) -> LayoutRule | LPRule:
        """Build (or fetch from a one-entry cache) the rule of one position."""
        q, n = self._qn(q, n)
        pv = as_distribution(p, "p", allow_batch=False)
        qv = as_distribution(q, "q", allow_batch=False)
        if pv.shape != qv.shape:
            raise SpecTheoryInputError(
                f"argument 'q': vocabulary size {qv.shape[0]} does not match p's {pv.shape[0]}"
            )
        key = hashlib.blake2b(
            pv.tobytes() + qv.tobytes() + n.to_bytes(4, "little") + self.method.encode(),
            digest_size=16,
        ).digest()
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]  # type: ignore[return-value]
        rule: LayoutRule | LPRule
        if self.method == "layout":
            rule = layout_rule(pv, qv, n)
        else:
            rule = lp_rule(pv, self.scheme(qv, n))
        self._cache = (key, rule)
        return rule

    def _rows(self, p: Any, q: Any, n: int | None) -> tuple[np.ndarray, np.ndarray, int, bool]:
        q, n = self._qn(q, n)
        pv = as_distribution(p, "p")
        qv = as_distribution(q, "q")
        single = pv.ndim == 1 and qv.ndim == 1
        P2, Q2 = np.atleast_2d(pv), np.atleast_2d(qv)
        if P2.shape[1] != Q2.shape[1]:
            raise SpecTheoryInputError(
                f"argument 'q': vocabulary size {Q2.shape[1]} does not match p's {P2.shape[1]}"
            )
        B = max(P2.shape[0], Q2.shape[0])
        if P2.shape[0] not in (1, B) or Q2.shape[0] not in (1, B):
            raise SpecTheoryInputError(
                f"argument 'q': batch size {Q2.shape[0]} does not match p's {P2.shape[0]}"
            )
        Pb = np.broadcast_to(P2, (B, P2.shape[1]))
        return Pb, np.broadcast_to(Q2, (B, Q2.shape[1])), n, single

    # -------------------------------------------------------------- interface
    def acceptance(self, p: Any, q: Any = None, n: int | None = None) -> float | np.ndarray:
        r"""Exact acceptance :math:`\Pr(Y \in \bar x)` of the rule (equals :math:`\alpha^*`)."""
        m = self.accepted_mass(p, q, n)
        vals = np.sum(np.atleast_2d(m), axis=1)
        return float(vals[0]) if m.ndim == 1 else vals

    def accepted_mass(self, p: Any, q: Any = None, n: int | None = None) -> np.ndarray:
        r"""Per-token accepted mass :math:`a(y)`; equals :math:`p(y)` on :math:`H^*`."""
        P, Q, n, single = self._rows(p, q, n)
        if self.method == "layout":
            # Closed form of what the layout realises (no layout needed; one sort per row).
            out = np.stack([accepted_mass_iid(P[b], Q[b], n) for b in range(P.shape[0])])
        else:
            out = np.stack([self.setup(P[b], Q[b], n).accepted for b in range(P.shape[0])])
        return out[0] if single else out

    def sample(  # type: ignore[override]
        self, p: Any, q: Any, drafts: Any, rng: np.random.Generator, n: int | None = None
    ) -> tuple[int, bool]:
        """Verify one draft tuple: ``(output token, accepted)``; ``n`` defaults to the tuple
        length."""
        d = np.asarray(drafts)
        if n is None:
            n = int(d.shape[-1]) if d.ndim else 1
        return self.setup(p, q, n).sample(d, rng)
