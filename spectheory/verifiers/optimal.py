r"""An optimal, lossless verifier: it attains :math:`\alpha^*` exactly.

Construction ("slot exchange" layout, i.i.d. drafts)
----------------------------------------------------
Let :math:`H^*` be the minimiser of the subset form
:math:`\alpha^* = \min_H [1 + p(H) - q(H)^n]` found by the sorted-prefix algorithm (Hu et al., arXiv
2502.18779). Complementary slackness in the transport LP (SpecTr, arXiv 2310.15141) says that an
optimal rule

* accepts every tuple that contains a token outside :math:`H^*`, with such a token;
* on tuples inside :math:`H^*` selects tokens whose accepted mass is exactly :math:`p` on
  :math:`H^*`;
* resamples the rejected mass :math:`1 - \alpha^*` on :math:`\Omega \setminus H^*`.

We realise it with a *layout*: every token :math:`y` with :math:`q(y) > 0` owns a sub-probability
density :math:`w_y \ge 0` on :math:`[0, 1]` of total mass :math:`q(y)`, with
:math:`\sum_y w_y = 1`; the tokens of :math:`H^*` live on :math:`[0, q(H^*)]`, the others on the
rest. Each draft :math:`\bar x_j = y` gets a position drawn from :math:`w_y / q(y)`; positions of
i.i.d. drafts are then i.i.d. uniform, the draft with the largest position is selected, and the
selection marginal is

.. math::

    r(y) = \int_0^1 w_y(x)\, n x^{n-1}\, dx .

Accept the selected :math:`y` with probability :math:`\min(1, p(y)/r(y))`; otherwise draw from the
residual :math:`(p - \min(p, r))_+` normalised. This is lossless for *any* layout, and optimal when
:math:`r \ge p` on :math:`H^*` and :math:`r \le p` off it (Khisti et al., arXiv 2410.18234, for the
selection-then-speculative-sampling decomposition; Thomas & Pal, arXiv 2511.15898, for the
polymatroid view).

The layout is built in closed form with a few vectorised passes (``docs/optimal_verifier.md`` has
the proofs): tokens of each side are placed in ascending :math:`p/q` order on *slots* of length
:math:`q(y)` (the greedy vertex :math:`\gamma`); targets are water-filled,
:math:`r = \max(p, c\,q)` per record block of :math:`H^*` and :math:`r = \min(p, c' q)` off it; then
tokens whose slot is worth less than their target ("receivers") *exchange* uniform shares of their
slot with later tokens worth more ("donors"), matched first-in-first-out by cumulative sums. An
exchange of mass :math:`y` between slots :math:`k < j` moves :math:`y (s_j - s_k)` of selection
value, :math:`s` being the slots' mean density :math:`\gamma/q`, so every token hits its target
exactly. Cost: one sort plus :math:`O(V)` array passes (the matching is one stable merge of the
breakpoints and two running counts, see :func:`_exchange`).

A batched, jit-compiled JAX port of the same construction (float32 and float64, CPU or GPU) is
:mod:`spectheory.verifiers.optimal_jax`.

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
    r"""Vectorised :func:`_pow_diff`: :math:`(t - s) h_{n-1}` with
    :math:`h_m = \sum_{i=0}^{m} t^i s^{m-i}` by the recurrence :math:`h_m = t\,h_{m-1} + s^m`
    (no ``pow`` calls; in place, two temporaries)."""
    t = np.asarray(t, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    d = t - s
    np.maximum(d, 0.0, out=d)
    if n == 1:
        return d
    h = t + s  # h_1
    if n > 2:
        sp = s * s
        for m in range(2, n):
            h *= t
            h += sp
            if m < n - 1:
                sp *= s
    d *= h
    return d


def _ipow(x: np.ndarray, n: int) -> np.ndarray:
    r""":math:`x^n` for an integer :math:`n \ge 1` by repeated squaring (faster than ``**``),
    in place on one fresh array (and a second one for odd factors)."""
    base = np.array(x, dtype=np.float64)
    out: np.ndarray | None = None
    while True:
        if n & 1:
            if out is None:
                out = base.copy() if n > 1 else base
            else:
                out *= base
        n >>= 1
        if not n:
            return out  # type: ignore[return-value]
        np.multiply(base, base, out=base)


@dataclass(frozen=True)
class _Pieces:
    """Pieces of the layout, grouped by owner (CSR): token ``k`` (local index, prefix order) owns
    ``slot[ptr[k]:ptr[k+1]]`` / ``mass[ptr[k]:ptr[k+1]]``, its own slot first; each piece is the
    mass ``mass`` of slot ``slot`` spread uniformly over it. ``pairs`` counts the exchanges;
    ``value`` (:math:`\\sum` mass :math:`\\times s_{\\rm slot}`) and ``total`` (:math:`\\sum` mass)
    are the per-token sums over the pieces."""

    slot: np.ndarray
    mass: np.ndarray
    ptr: np.ndarray
    pairs: int
    value: np.ndarray
    total: np.ndarray

    @property
    def owner(self) -> np.ndarray:
        """Owner (local token index) of every piece."""
        return np.repeat(np.arange(len(self.ptr) - 1), np.diff(self.ptr))


def _exchange(S: np.ndarray, target: np.ndarray, block: np.ndarray, n: int) -> tuple[_Pieces,
                                                                                        np.ndarray]:
    r"""Realise layout values ``target`` on slots ``[S_k, S_{k+1}]`` by exchanging uniform shares.

    Parameters
    ----------
    S
        Slot boundaries, shape ``(K + 1,)``, non-decreasing; token ``k`` owns slot ``k`` at first.
    target
        Wanted value :math:`t_k` of token ``k`` (its integral of :math:`n x^{n-1}`).
    block
        Non-decreasing block id per token (``0, 1, ...`` without gaps); exchanges never cross
        blocks.
    n
        Number of drafts.

    Returns
    -------
    pieces, s
        The pieces, grouped by owner, and the slots' mean densities
        :math:`s_k = \gamma_k / |{\rm slot}_k|`, with :math:`\gamma_k = S_{k+1}^n - S_k^n`.

    Notes
    -----
    Write :math:`\delta_k = t_k - \gamma_k`. Requirements (proved for the targets built by
    :func:`layout_rule` in ``docs/optimal_verifier.md``): in every block the partial sums
    :math:`\sum_{k \le m} \delta_k` are :math:`\ge 0` and the block total is 0, and the levels
    :math:`\ell_k = t_k / |{\rm slot}_k|` are non-decreasing. Receivers (:math:`\delta > 0`) and
    donors (:math:`\delta < 0`) are matched first-in-first-out along the cumulative sums of
    :math:`\delta^+` and :math:`\delta^-`, so every receiver :math:`k` meets donors :math:`j > k`
    only, with :math:`s_k < \ell_k \le \ell_j < s_j`. A matched amount :math:`m` becomes an exchange
    of mass :math:`m / (s_j - s_k)` (token :math:`k` takes that much of slot :math:`j` uniformly and
    gives the same mass of slot :math:`k` to :math:`j`), which moves exactly :math:`m` of value from
    :math:`j` to :math:`k`. The exchanged masses of a token add up to less than its slot (strictly).

    The matching is one stable merge (``argsort(kind="stable")`` of three sorted runs: the
    receivers' and donors' cumulative sums and the block starts) and two running counts: the
    receiver (donor) of the elementary interval after breakpoint :math:`z_i` is the first whose
    cumulative sum exceeds :math:`z_i`, i.e. the number of receiver (donor) breakpoints among
    :math:`z_0, \dots, z_i`. Pairs come out sorted by receiver *and* by donor, so the pieces are
    grouped by owner with monotone (cache-friendly) writes and no sort.
    """
    K = len(target)
    S0, S1 = S[:-1], S[1:]
    L = S1 - S0
    gam = _pow_diff_vec(S1, S0, n)
    # Mean density n x^{n-1} over each slot; a slot lost to rounding gets the point density.
    s = np.empty(K)
    flat = np.flatnonzero(L <= 0)
    np.divide(gam, L, out=s, where=L > 0) if len(flat) else np.divide(gam, L, out=s)
    if len(flat):
        s[flat] = n * _ipow(S1[flat], n - 1) if n > 1 else 1.0
    delta = target - gam
    if K:
        # A block of one token has delta = 0 exactly (its total is 0); drop the rounding residue,
        # which would only create exchanges of rounding-level value. (On LM-like rows about half
        # of H* sits in such blocks.)
        first = np.flatnonzero(np.concatenate([[True], block[1:] != block[:-1]]))
        size = np.diff(first, append=K)
        delta[first[size == 1]] = 0.0
    up = np.maximum(delta, 0.0)
    dn = up - delta  # = max(-delta, 0), exactly
    recv, don = np.flatnonzero(delta > 0), np.flatnonzero(delta < 0)
    nr, nd = len(recv), len(don)
    if not (K and nr and nd):
        ptr = np.arange(K + 1, dtype=np.int64)
        return _Pieces(np.arange(K, dtype=np.int64), L, ptr, 0, L * s, L.copy()), s
    nb = int(block[-1]) + 1
    A = np.bincount(block, weights=up, minlength=nb)
    B = np.bincount(block, weights=dn, minlength=nb)
    AB = np.maximum(A, B)
    off = np.zeros(nb)
    # Widened by a few ulps: a block's cumulative sums (summed in another order) must stay below
    # the next block's start, so that the merge keeps every kind of breakpoint in token order.
    np.cumsum(AB[:-1] * (1.0 + 8.0 * np.finfo(np.float64).eps), out=off[1:])
    # Block-local inclusive cumulative sums of delta+ (delta-), shifted by the block's offset.
    shiftA = off - (np.cumsum(A) - A)
    shiftB = off - (np.cumsum(B) - B)
    U = np.cumsum(up.take(recv))
    U += shiftA.take(block.take(recv))
    D = np.cumsum(dn.take(don))
    D += shiftB.take(block.take(don))
    # Block starts are breakpoints too (only those of blocks with exchanges: an idle block
    # starts where the next one does).
    z = np.concatenate([U, D, off.take(np.flatnonzero(AB > 0))])
    o = np.argsort(z, kind="stable")
    z = z.take(o)
    cntU = np.cumsum(o < nr, dtype=np.int32)
    cntD = np.cumsum(o < nr + nd, dtype=np.int32)
    cntD -= cntU
    m = z[1:] - z[:-1]
    kk, jj = cntU[:-1], cntD[:-1]
    idx = np.flatnonzero((m > 0) & (kk < nr) & (jj < nd))
    k, j, m, zlo = recv.take(kk.take(idx)), don.take(jj.take(idx)), m.take(idx), z.take(idx)
    bk = block.take(k)
    sk, sj = s.take(k), s.take(j)
    ok = (zlo >= off.take(bk)) & (bk == block.take(j)) & (j > k) & (sj > sk)
    allok = bool(ok.all())
    if not allok:
        # Rounding-level leftovers (a block end, a pair turned backwards in the last digits):
        # keep them as zero-mass pieces rather than compressing every array.
        m[np.flatnonzero(~ok)] = 0.0
    npairs = len(k)
    if npairs > 1:
        # k and j are non-decreasing along z: equal pairs are consecutive, merge them.
        head = np.empty(npairs, dtype=bool)
        head[0] = True
        np.not_equal(k[1:], k[:-1], out=head[1:])
        head[1:] |= j[1:] != j[:-1]
        if not head.all():
            start = np.flatnonzero(head)
            m = np.add.reduceat(m, start)
            k, j, sk, sj = k.take(start), j.take(start), sk.take(start), sj.take(start)
            npairs = len(k)
    if allok:
        y = m / (sj - sk)
    else:  # a (merged) pair with m > 0 has a valid entry, hence s_j > s_k
        y = np.zeros(npairs)
        np.divide(m, sj - sk, out=y, where=m > 0)
    cR = np.bincount(k, minlength=K)
    cD = np.bincount(j, minlength=K)
    # Exclusive cumulative counts; a token is a receiver or a donor, never both.
    cRx = np.cumsum(cR)
    cRx -= cR
    cDx = np.cumsum(cD)
    cDx -= cD
    ptr = np.empty(K + 1, dtype=np.int64)
    ptr[0] = 0
    ptr[1:] = cRx + cDx
    ptr[1:] += cR + cD
    ptr[1:] += np.arange(1, K + 1)
    i = np.arange(1, npairs + 1)
    dR = cDx.take(k)  # ptr[k] + 1 + (rank of the pair among k's) = k + cDx[k] + 1 + i
    dR += k
    dR += i
    dD = cRx.take(j)
    dD += j
    dD += i
    used = np.bincount(k, weights=y, minlength=K)
    used += np.bincount(j, weights=y, minlength=K)
    # In exact arithmetic used < L strictly; rounding can only touch the last digits.
    own = L - used
    np.maximum(own, 0.0, out=own)
    value = own * s
    value += np.bincount(k, weights=y * sj, minlength=K)
    value += np.bincount(j, weights=y * sk, minlength=K)
    P = K + 2 * npairs
    slot_out = np.empty(P, dtype=np.int64)
    mass_out = np.empty(P)
    first = ptr[:-1]
    slot_out[first] = np.arange(K)
    slot_out[dR] = j
    slot_out[dD] = k
    mass_out[first] = own
    mass_out[dR] = y
    mass_out[dD] = y
    return _Pieces(slot_out, mass_out, ptr, npairs, value, own + used), s


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

    Token :math:`y` owns *pieces*: intervals ``[piece_start, piece_end]`` of the position axis, each
    with a mass ``piece_mass`` spread uniformly over it (a share of the interval; several tokens
    may share one interval, their densities adding up to 1). A draft of :math:`y` takes a position
    from the normalised piece law; the largest position is selected.

    Attributes
    ----------
    group
        Group id per token (``-1`` for tokens with :math:`q = 0`): every live token is its own
        group, numbered by its rank in the prefix order (ascending :math:`p/q`), so that the pieces
        are laid out in the order the construction produces them.
    group_token
        The token of every group (``group_token[group[y]] == y`` for live ``y``).
    piece_start, piece_end, piece_mass, piece_ptr
        Pieces of every group, CSR layout: group ``g`` owns ``piece_*[piece_ptr[g]:piece_ptr[g+1]]``
        (its own slot first).
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
    piece_mass: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    group_token: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

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
        a, b = self.piece_ptr[g], self.piece_ptr[g + 1]
        lo = self._cum[a]
        hi = self._cum[b]
        target = lo + rng.random(d.shape) * (hi - lo)
        k = np.searchsorted(self._cum, target, side="right") - 1
        k = np.clip(k, a, np.maximum(b - 1, a))
        k = np.minimum(k, max(len(self.piece_start) - 1, 0))
        # Uniform inside the chosen piece, with fresh randomness (no loss of resolution).
        pos = self.piece_start[k] + rng.random(d.shape) * (self.piece_end[k] - self.piece_start[k])
        # A token whose pieces vanished in floating point (q far below the resolution of its
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
            s, e, m = self.piece_start[a:b], self.piece_end[a:b], self.piece_mass[a:b]
            keep = (e > s) & (m > 0)
            segs.append((s[keep], e[keep], m[keep] / (e[keep] - s[keep])))
        pts = np.unique(np.concatenate([np.concatenate(s[:2]) for s in segs]))
        a, b = pts[:-1], pts[1:]
        keep = b > a
        a, b = a[keep], b[keep]
        x, w = np.polynomial.legendre.leggauss(max(self.n, 1))
        half = 0.5 * (b - a)
        t = half[:, None] * x[None, :] + 0.5 * (a + b)[:, None]  # (M, nodes)
        mid = 0.5 * (a + b)
        dens = np.empty((self.n, len(a)))
        cdf = np.empty((self.n, *t.shape))
        for j, (s, e, h) in enumerate(segs):
            total = float(np.sum(h * (e - s)))
            inside = (s[None, :] <= mid[:, None]) & (e[None, :] >= mid[:, None])  # (M, pieces)
            dens[j] = (inside * h[None, :]).sum(axis=1) / total
            below = np.clip(np.minimum(e, t[..., None]) - s, 0.0, None)  # (M, nodes, pieces)
            cdf[j] = (below * h).sum(axis=-1) / total
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
@dataclass(frozen=True)
class _Prefix:
    """The sorted prefix of one row: ``order`` (ascending :math:`p/q`, :math:`q = 0` last), the
    number ``nlive`` of tokens with :math:`q > 0`, their sorted masses ``ps``, ``qs`` and prefix
    sums ``P``, ``Q``, the witness size ``kstar`` and ``alpha``."""

    order: np.ndarray
    nlive: int
    ps: np.ndarray
    qs: np.ndarray
    P: np.ndarray
    Q: np.ndarray
    kstar: int
    alpha: float


def _sorted_prefix(p: np.ndarray, q: np.ndarray, n: int) -> _Prefix:
    r"""The plain sorted prefix (Hu et al., arXiv 2502.18779) on one row.

    :math:`H^*` is the first minimiser of :math:`1 + P_k - S_k^n` over prefixes of an ascending
    order of :math:`p/q` (the empty set included). The layout and the closed-form accepted mass
    both read :math:`H^*` off this one order, so they always agree on it.
    """
    # Tokens with q = 0 get NaN, which argsort puts after every number (+inf included: a live
    # token whose ratio overflows still sorts before the dead ones).
    live = q > 0
    ratio = np.full(p.shape, np.nan)
    with np.errstate(divide="ignore", over="ignore"):
        np.divide(p, q, out=ratio, where=live)
    # Ties in p/q may come in any order (the chain is concave inside a tie group, theory notes);
    # the unstable SIMD sort is several times faster than a stable one.
    order = np.argsort(ratio)
    nlive = int(np.count_nonzero(live))
    ps, qs = p[order[:nlive]], q[order[:nlive]]
    P, Q = np.cumsum(ps), np.cumsum(qs)
    full = np.empty(nlive + 1)
    full[0] = 1.0
    Sn = _ipow(np.minimum(Q, 1.0), n)
    np.add(P, 1.0, out=full[1:])
    full[1:] -= Sn
    kstar = int(np.argmin(full))
    return _Prefix(order, nlive, ps, qs, P, Q, kstar, float(full[kstar]))


def _inner_targets(pi: np.ndarray, qi: np.ndarray, Sc: np.ndarray, Pc: np.ndarray, n: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    r"""Targets :math:`r \ge p` on :math:`H^*` (ascending :math:`p/q`) and their record blocks.

    With :math:`g_m = S_m^n - P_m` (prefix sums of :math:`q` and :math:`p`), the chain is cut at
    the strict records of :math:`g` (:math:`g_0 = 0`). Block :math:`(a, b]` gets
    :math:`r = \max(p, c_b\, q)` with :math:`\sum_{(a, b]} r = S_b^n - S_a^n`. Token :math:`j` is
    raised (:math:`c_b > p_j/q_j`) iff the sum with level :math:`p_j/q_j` falls short of the block
    total, so all blocks are solved at once, without a search.
    """
    K = len(pi)
    g = _ipow(Sc, n) - Pc
    D = np.maximum.accumulate(g)
    rec = np.flatnonzero(g[1:] > D[:-1]) + 1
    bounds = np.concatenate([[0], rec, [] if len(rec) and rec[-1] == K else [K]]).astype(np.int64)
    lo, hi = bounds[:-1], bounds[1:]
    nb = len(lo)
    blk = np.repeat(np.arange(nb), hi - lo)
    total = _pow_diff_vec(Sc[hi], Sc[lo], n)
    rho = pi / qi
    F = rho * (Sc[1:] - Sc[lo][blk]) + (Pc[hi][blk] - Pc[1:])
    raised = F < total[blk]
    unr_p = np.bincount(blk, weights=pi * ~raised, minlength=nb)
    ra_q = np.bincount(blk, weights=qi * raised, minlength=nb)
    c = np.zeros(nb)
    np.divide(total - unr_p, ra_q, out=c, where=ra_q > 0)
    # max(p, c q) on raised tokens, p on the others (c q * 0 = 0 <= p there).
    r = np.maximum(pi, (c[blk] * qi) * raised)
    return r, blk


def _outer_targets(po: np.ndarray, qo: np.ndarray, total: float) -> np.ndarray:
    r"""Targets :math:`r = \min(p, c' q) \le p` off :math:`H^*` (ascending :math:`p/q`) with
    :math:`\sum r = \text{total} = 1 - q(H^*)^n`; token :math:`j` is capped iff the sum with cap
    :math:`p_j/q_j` exceeds the total."""
    U = np.cumsum(qo)
    P = np.cumsum(po)
    G = P + (po / qo) * (U[-1] - U)
    capped = G > total
    if not capped.any():
        return po.copy()
    c = (total - float(np.sum(po[~capped]))) / float(np.sum(qo[capped]))
    return np.where(capped, np.minimum(c * qo, po), po)


def layout_rule(p: Any, q: Any, n: int) -> LayoutRule:
    r"""Build the optimal max-position layout rule for i.i.d. drafts at one position.

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

    Notes
    -----
    One sort (the prefix order) and :math:`O(V)` vectorised passes: slots in ascending :math:`p/q`
    order, water-filled targets (:func:`_inner_targets`, :func:`_outer_targets`) and the
    first-in-first-out slot exchange (:func:`_exchange`), run once over both sides (the outer side
    is one more block). Proofs in ``docs/optimal_verifier.md``.
    """
    pv = as_distribution(p, "p", allow_batch=False)
    qv = as_distribution(q, "q", allow_batch=False)
    n = check_n(n)
    if pv.shape != qv.shape:
        raise SpecTheoryInputError(
            f"argument 'q': vocabulary size {qv.shape[0]} does not match p's {pv.shape[0]}"
        )
    return _layout_rule_checked(pv, qv, n)


def _layout_rule_checked(pv: np.ndarray, qv: np.ndarray, n: int) -> LayoutRule:
    """:func:`layout_rule` on validated float64 rows of equal length."""
    V = pv.shape[0]
    pre = _sorted_prefix(pv, qv, n)
    order, kstar, alpha, K = pre.order, pre.kstar, pre.alpha, pre.nlive
    live = order[:K]
    # Slot boundaries: the prefix sums of q in the prefix order, H* first.
    S = np.empty(K + 1)
    S[0] = 0.0
    S[1:] = pre.Q
    target = np.empty(K)
    block = np.empty(K, dtype=np.int64)
    blocks = 0
    if kstar:
        Pc = np.empty(kstar + 1)
        Pc[0] = 0.0
        Pc[1:] = pre.P[:kstar]
        target[:kstar], block[:kstar] = _inner_targets(
            pre.ps[:kstar], pre.qs[:kstar], S[: kstar + 1], Pc, n
        )
        blocks = int(block[kstar - 1]) + 1
    if K > kstar:
        target[kstar:] = _outer_targets(
            pre.ps[kstar:], pre.qs[kstar:], _pow_diff(float(S[K]), float(S[kstar]), n)
        )
        block[kstar:] = blocks
        blocks += 1
    L = S[1:] - S[:-1]
    # Targets are selection masses r; the layout value of a slot of length L is r * L / q.
    pcs, _ = _exchange(S, target * (L / pre.qs), block, n)
    slot, mass, ptr = pcs.slot, pcs.mass, pcs.ptr
    ps, pe = S.take(slot), S[1:].take(slot)
    cum = np.empty(len(mass) + 1)
    cum[0] = 0.0
    np.cumsum(mass, out=cum[1:])
    # Selection marginal of every live token from its pieces (Lemma 1), in the prefix order.
    r_loc = np.zeros(K)
    np.divide(pre.qs * pcs.value, pcs.total, out=r_loc, where=pcs.total > 0)
    group = np.full(V, -1, dtype=np.int64)
    group[live] = np.arange(K)
    r = np.zeros(V)
    r[live] = r_loc
    acc_prob = np.zeros(V)
    np.divide(pv, r, out=acc_prob, where=r > 0)
    np.minimum(acc_prob, 1.0, out=acc_prob)
    a = np.minimum(pv, r)
    witness = np.zeros(V, dtype=bool)
    witness[order[:kstar]] = True
    info = {"pieces": len(mass), "exchanges": pcs.pairs, "blocks": blocks}
    return LayoutRule(
        p=pv,
        q=qv,
        n=n,
        alpha_star=alpha,
        witness=witness,
        accepted=a,
        residual=_residual(pv, a),
        group=group,
        group_token=live,
        piece_start=ps,
        piece_end=pe,
        piece_ptr=ptr,
        selection=r,
        accept_prob=acc_prob,
        _cum=cum,
        piece_mass=mass,
        info=info,
    )


def accepted_mass_iid(p: np.ndarray, q: np.ndarray, n: int) -> np.ndarray:
    r"""Per-token accepted mass of the layout rule in closed form (i.i.d. drafts, one position).

    The layout realises its targets exactly (``docs/optimal_verifier.md``), so
    :math:`a(y) = p(y)` on :math:`H^*` and :math:`a(y) = \min(p(y), c' q(y))` off it, with the cap
    :math:`c'` chosen so that :math:`\sum_{y \notin H^*} a(y) = 1 - q(H^*)^n`. Costs one sort;
    :math:`\sum_y a(y) = \alpha^*`.
    """
    pre = _sorted_prefix(p, q, n)
    inner, outer = pre.order[: pre.kstar], pre.order[pre.kstar : pre.nlive]
    a = np.zeros_like(p)
    a[inner] = p[inner]
    if len(outer):
        S_H = float(pre.Q[pre.kstar - 1]) if pre.kstar else 0.0
        top = float(pre.Q[pre.nlive - 1])
        a[outer] = _outer_targets(p[outer], q[outer], _pow_diff(top, S_H, n))
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
            rule = _layout_rule_checked(pv, qv, n)
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
