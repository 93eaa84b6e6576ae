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
breakpoints, whose runs give every pair, see :func:`_exchange_pairs`). The rule keeps the layout
as its list of exchanges and samples from it directly; the per-piece arrays of
:class:`LayoutRule` are built only if they are read (e.g. for the exact per-tuple law).

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

from .._validate import SpecTheoryInputError, as_distribution, check_n, check_rng
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


def _pow_diff_vec(t: np.ndarray, s: np.ndarray, n: int, d: np.ndarray | None = None
                  ) -> np.ndarray:
    r"""Vectorised :func:`_pow_diff`: :math:`(t - s) h_{n-1}` with
    :math:`h_m = \sum_{i=0}^{m} t^i s^{m-i}` by the recurrence :math:`h_m = t\,h_{m-1} + s^m`
    (no ``pow`` calls; in place, two temporaries). ``d``, if given, is :math:`t - s \ge 0`,
    already computed by the caller (it is not modified)."""
    t = np.asarray(t, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    if d is None:
        d = t - s
        np.maximum(d, 0.0, out=d)
    elif n == 1:
        return d.copy()
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
    h *= d
    return h


def _block_sums(x: np.ndarray, block: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of ``x`` over contiguous blocks (``block``: non-decreasing ids ``0..nb-1`` without
    gaps, ``starts``: where each block begins). ``reduceat`` for a few long blocks, ``bincount``
    for many short ones (each is several times faster than the other at its end)."""
    nb = len(starts)
    if 4 * nb < len(x):
        return np.add.reduceat(x, starts)
    return np.bincount(block, weights=x, minlength=nb)


def _ipow_inplace(x: np.ndarray, n: int) -> np.ndarray:
    r""":math:`x \leftarrow x^n` in place (repeated squaring for a power of two; otherwise through
    :func:`_ipow`). Returns ``x``."""
    if n & (n - 1) == 0:
        while n > 1:
            np.multiply(x, x, out=x)
            n >>= 1
    else:
        x[...] = _ipow(x, n)
    return x


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
    mass ``mass`` of slot ``slot`` spread uniformly over it. ``pairs`` counts the exchanges
    (the pair pieces of positive mass; ``(len(slot) - K) / 2`` pairs are stored, zero-mass
    rounding leftovers included)."""

    slot: np.ndarray
    mass: np.ndarray
    ptr: np.ndarray
    pairs: int

    @property
    def owner(self) -> np.ndarray:
        """Owner (local token index) of every piece."""
        return np.repeat(np.arange(len(self.ptr) - 1), np.diff(self.ptr))


@dataclass(frozen=True)
class _Pairs:
    """The layout as its exchanges (what :func:`_exchange_pairs` produces; no per-piece arrays).

    Token ``t`` (local index, prefix order) owns the mass :meth:`own` ``[t]`` of its slot
    ``[S[t], S[t+1]]`` (of length ``L[t]``) and, for each exchange ``i`` it takes part in, mass
    ``y[i]`` of the other slot of the pair (``j[i]`` for the receiver ``k[i]``, ``k[i]`` for the
    donor ``j[i]``). Pairs are sorted by receiver *and* by donor, so the exchanges of ``t`` are the
    consecutive range ``[lo[t], hi[t])`` of the pair list (empty for a token that exchanges
    nothing); ``is_recv[t]`` says on which side. ``ycum`` holds the cumulative sums of ``y``
    (leading 0). ``pairs`` counts the exchanges of positive mass.
    """

    S: np.ndarray
    L: np.ndarray
    k: np.ndarray
    j: np.ndarray
    y: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    is_recv: np.ndarray
    ycum: np.ndarray
    pairs: int

    def own(self) -> np.ndarray:
        """Mass every token keeps of its own slot: :math:`L_t` minus its exchanged mass (summed
        per token; :math:`> 0` in exact arithmetic, clipped at 0 against rounding)."""
        K = len(self.L)
        used = np.bincount(self.k, weights=self.y, minlength=K)
        used += np.bincount(self.j, weights=self.y, minlength=K)
        own = self.L - used
        np.maximum(own, 0.0, out=own)
        return own


def _exchange_pairs(S: np.ndarray, target: np.ndarray, block: np.ndarray, n: int,
                    starts: np.ndarray | None = None) -> tuple[_Pairs, np.ndarray]:
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
    starts
        Where each block starts, if the caller knows it (found from ``block`` otherwise).

    Returns
    -------
    pairs, s
        The layout as its exchanges (:class:`_Pairs`; :func:`_pairs_to_pieces` turns it into
        pieces grouped by owner) and the slots' mean densities
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
    receivers' and donors' cumulative sums and the block starts). The receiver (donor) of the
    elementary interval after breakpoint :math:`z_i` is the first whose cumulative sum exceeds
    :math:`z_i`, i.e. receiver number :math:`r` when :math:`r` receiver breakpoints sit among
    :math:`z_0, \dots, z_i`: each receiver owns the run of intervals between its predecessor's
    breakpoint and its own, so the receivers of all intervals are one ``repeat`` (likewise the
    donors), and those runs are the tokens' ranges of the pair list. Every interval is a pair
    (no compression): the empty ones, the ones past the last breakpoint and rounding leftovers
    get mass 0. Pairs come out sorted by receiver *and* by donor.
    """
    K = len(target)
    S0, S1 = S[:-1], S[1:]
    L = S1 - S0
    gam = _pow_diff_vec(S1, S0, n, L)
    # Mean density n x^{n-1} over each slot; a slot lost to rounding gets the point density.
    s = np.empty(K)
    flat = np.flatnonzero(L <= 0)
    np.divide(gam, L, out=s, where=L > 0) if len(flat) else np.divide(gam, L, out=s)
    if len(flat):
        s[flat] = n * _ipow(S1[flat], n - 1) if n > 1 else 1.0
    delta = target - gam
    if K:
        # A block of one token has delta = 0 exactly (its total is 0); drop the rounding residue,
        # which would only create exchanges of rounding-level value. (On LM-like rows up to half
        # of H* sits in such blocks.)
        if starts is None:
            starts = np.flatnonzero(np.concatenate([[True], block[1:] != block[:-1]]))
        singles = starts[np.diff(starts, append=K) == 1]
        delta[singles] = 0.0
    is_recv = delta > 0
    recv, don = np.flatnonzero(is_recv), np.flatnonzero(delta < 0)
    nr, nd = len(recv), len(don)
    if not (K and nr and nd):
        none = np.zeros(0, dtype=np.int64)
        zero = np.zeros(K, dtype=np.int64)
        return _Pairs(S, L, none, none, np.zeros(0), zero, zero, np.zeros(K, dtype=bool),
                      np.zeros(1), 0), s
    nb = int(block[-1]) + 1
    up, dn = delta.take(recv), delta.take(don)  # delta+ of the receivers, delta- of the donors
    np.negative(dn, out=dn)
    brecv, bdon = block.take(recv), block.take(don)
    # Block totals summed in token order, like the cumulative sums below (``bincount``; a
    # pairwise ``reduceat`` would round differently from them).
    A = np.bincount(brecv, weights=up, minlength=nb)
    B = np.bincount(bdon, weights=dn, minlength=nb)
    AB = np.maximum(A, B)
    off = np.zeros(nb)
    # Widened by a few ulps: a block's cumulative sums (summed in another order) must stay below
    # the next block's start, so that the merge keeps every kind of breakpoint in token order.
    np.cumsum(AB[:-1] * (1.0 + 8.0 * np.finfo(np.float64).eps), out=off[1:])
    # Block-local inclusive cumulative sums of delta+ (delta-), shifted by the block's offset.
    shiftA = off - (np.cumsum(A) - A)
    shiftB = off - (np.cumsum(B) - B)
    U = np.cumsum(up)
    U += shiftA.take(brecv)
    D = np.cumsum(dn)
    D += shiftB.take(bdon)
    # Block starts are breakpoints too (only those of blocks with exchanges: an idle block
    # starts where the next one does).
    z = np.concatenate([U, D, off.take(np.flatnonzero(AB > 0))])
    o = np.argsort(z, kind="stable")
    z = z.take(o)
    npairs = len(z) - 1
    m = z[1:] - z[:-1]
    zlo = z[:-1]
    # Every elementary interval (z_i, z_{i+1}) becomes a pair, without compression: the ones of no
    # length or past the last receiver (donor) are only a handful per block (almost every
    # interval is a real exchange on LM-like rows), so they are kept as zero-mass pieces, given
    # to a valid token; so are rounding-level leftovers (a sliver across a block start, a pair
    # turned backwards in the last digits). Consecutive intervals of the same pair (only across
    # such a leftover) are not merged either: two pieces of one slot are as good as one.
    #
    # The receiver of interval i is the first one whose breakpoint lies above z_i: receiver r if
    # r receiver breakpoints sit among z_0..z_i. With posU the positions of the receivers'
    # breakpoints in the merged list (in receiver order: the sort is stable and U increases),
    # receiver r owns the intervals [posU[r-1], posU[r]) (posU[-1] = 0), a run: the receiver of
    # every interval is one ``repeat``, and so is the donor.
    isU = o < nr
    posU = np.flatnonzero(isU)
    isU ^= o < nr + nd  # now marks the donors' breakpoints
    posD = np.flatnonzero(isU)
    ok = m > 0
    ok[posU[-1]:] = False  # past the last receiver breakpoint
    ok[posD[-1]:] = False
    posU[-1] = posD[-1] = npairs  # the invalid tail goes to the last receiver (donor)
    startU = np.empty(nr, dtype=np.int64)
    startU[0] = 0
    startU[1:] = posU[:-1]
    startD = np.empty(nd, dtype=np.int64)
    startD[0] = 0
    startD[1:] = posD[:-1]
    runU, runD = posU - startU, posD - startD
    k, bk = np.repeat(recv, runU), np.repeat(brecv, runU)
    j, bj = np.repeat(don, runD), np.repeat(bdon, runD)
    sk, sj = s.take(k), s.take(j)
    ok &= zlo >= off.take(bk)
    ok &= bk == bj
    ok &= j > k
    ok &= sj > sk
    y = np.zeros(npairs)
    np.subtract(sj, sk, out=sj)
    np.divide(m, sj, out=y, where=ok)  # a valid interval has s_j > s_k
    # A token is a receiver or a donor, never both, and its pairs are the run found above.
    # (What a token keeps of its own slot, L minus its exchanged mass, is left to the users of
    # the pair form: the sampler needs it for the drafted tokens only.)
    lo = np.zeros(K, dtype=np.int64)
    hi = np.zeros(K, dtype=np.int64)
    lo[recv] = startU
    hi[recv] = posU
    lo[don] = startD
    hi[don] = posD
    ycum = np.empty(npairs + 1)
    ycum[0] = 0.0
    np.cumsum(y, out=ycum[1:])
    return _Pairs(S, L, k, j, y, lo, hi, is_recv, ycum, int(np.count_nonzero(ok))), s


def _pairs_to_pieces(pr: _Pairs) -> _Pieces:
    """The pieces of a pair form, grouped by owner (CSR): token ``t`` owns its slot (mass
    ``own[t]``), then one piece per exchange of ``t``, in the pair order."""
    K, npairs = len(pr.L), len(pr.y)
    k, j, y = pr.k, pr.j, pr.y
    cR = np.bincount(k, minlength=K)
    cD = np.bincount(j, minlength=K)
    cRx = np.cumsum(cR)
    cDx = np.cumsum(cD)
    ptr = np.empty(K + 1, dtype=np.int64)
    ptr[0] = 0
    np.add(cRx, cDx, out=ptr[1:])
    ptr[1:] += np.arange(1, K + 1)  # ptr[t] = t + (pairs of tokens < t)
    first = ptr[:-1]
    # The i-th pair (1-based) sits at ptr[k] + 1 + (its rank among k's) = ptr[k] - cRx[k] + i,
    # cRx being the exclusive count of pairs of receivers before k (likewise for donors).
    cRx -= cR
    cDx -= cD
    i = np.arange(1, npairs + 1)
    cRx -= first
    cDx -= first
    dR = i - cRx.take(k)
    dD = i - cDx.take(j)
    P = K + 2 * npairs
    slot_out = np.empty(P, dtype=np.int64)
    mass_out = np.empty(P)
    slot_out[first] = np.arange(K)
    slot_out[dR] = j
    slot_out[dD] = k
    mass_out[first] = pr.own()
    mass_out[dR] = y
    mass_out[dD] = y
    return _Pieces(slot_out, mass_out, ptr, pr.pairs)


def _exchange(S: np.ndarray, target: np.ndarray, block: np.ndarray, n: int,
              starts: np.ndarray | None = None) -> tuple[_Pieces, np.ndarray]:
    """:func:`_exchange_pairs`, with the pairs turned into pieces grouped by owner
    (:func:`_pairs_to_pieces`)."""
    pr, s = _exchange_pairs(S, target, block, n, starts)
    return _pairs_to_pieces(pr), s


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


class _LazyPieces:
    """Descriptor of a piece array of :class:`LayoutRule`: given at construction (the JAX port's
    ``to_layout_rule``), or built on first access from the rule's pair form (the numpy setup,
    whose sampler needs no per-piece arrays)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = "_lazy_" + name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return None  # the dataclass default
        v = obj.__dict__.get(self.key)
        if v is None and obj.__dict__.get("_pairs") is not None:
            obj._build_pieces()
            v = obj.__dict__[self.key]
        return v

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.key] = value


@dataclass(frozen=True, eq=False)
class LayoutRule(_RuleBase):
    r"""The max-position layout rule of one position (i.i.d. drafts).

    Token :math:`y` owns *pieces*: intervals ``[piece_start, piece_end]`` of the position axis, each
    with a mass ``piece_mass`` spread uniformly over it (a share of the interval; several tokens
    may share one interval, their densities adding up to 1). A draft of :math:`y` takes a position
    from the normalised piece law; the largest position is selected.

    A rule built by :func:`layout_rule` holds its layout as the list of exchanges (the pair form)
    and samples from it; the piece arrays below are then built on first access (sampling never
    reads them). A rule built with explicit pieces (the JAX port's ``to_layout_rule``) samples from
    the pieces.

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
    piece_start: np.ndarray = _LazyPieces()  # type: ignore[assignment]
    piece_end: np.ndarray = _LazyPieces()  # type: ignore[assignment]
    piece_ptr: np.ndarray = _LazyPieces()  # type: ignore[assignment]
    selection: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    accept_prob: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _cum: np.ndarray = _LazyPieces()  # type: ignore[assignment]
    piece_mass: np.ndarray = _LazyPieces()  # type: ignore[assignment]
    group_token: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    _pairs: _Pairs | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (f"LayoutRule(V={len(self.p)}, n={self.n}, alpha_star={self.alpha_star!r}, "
                f"pieces={self.info.get('pieces')})")

    def _build_pieces(self) -> None:
        """Materialise the CSR pieces from the pair form (on first access to a piece array)."""
        pr = self._pairs
        assert pr is not None
        pcs = _pairs_to_pieces(pr)
        cum = np.empty(len(pcs.mass) + 1)
        cum[0] = 0.0
        np.cumsum(pcs.mass, out=cum[1:])
        # object.__setattr__ goes through the descriptors (the dataclass is frozen).
        object.__setattr__(self, "piece_start", pr.S.take(pcs.slot))
        object.__setattr__(self, "piece_end", pr.S[1:].take(pcs.slot))
        object.__setattr__(self, "piece_ptr", pcs.ptr)
        object.__setattr__(self, "piece_mass", pcs.mass)
        object.__setattr__(self, "_cum", cum)

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
        if self._pairs is not None:
            return self._positions_pairs(g, rng)
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

    def _positions_pairs(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """:meth:`positions` from the pair form: the same piece law in the same piece order
        (own slot first, then the exchanges), read off the token's range of the pair list."""
        pr = self._pairs
        assert pr is not None
        lo, hi, is_r = pr.lo.take(g), pr.hi.take(g), pr.is_recv.take(g)
        ylo = pr.ycum.take(lo)
        tot = pr.L.take(g)  # the token's mass: its own share of its slot plus its exchanges
        own = tot - (pr.ycum.take(hi) - ylo)
        np.maximum(own, 0.0, out=own)
        u = rng.random(g.shape) * tot
        slot = g
        if len(pr.y):
            i = np.searchsorted(pr.ycum, ylo + (u - own), side="right") - 1
            i = np.clip(i, lo, np.maximum(hi - 1, lo))
            np.minimum(i, len(pr.y) - 1, out=i)
            slot = np.where(u < own, g, np.where(is_r, pr.j.take(i), pr.k.take(i)))
        s0, s1 = pr.S.take(slot), pr.S.take(slot + 1)
        # Uniform inside the chosen piece, with fresh randomness (no loss of resolution).
        pos = s0 + rng.random(g.shape) * (s1 - s0)
        return np.where(tot > 0, pos, -1.0)

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
        # A token whose pieces vanished in floating point (q far below the resolution of its
        # position) sits below every other draft in the sampler (:meth:`positions` gives it -1):
        # it is selected with probability 0, or, when every draft is such a token, the first
        # draft is (``argmax`` of equal positions).
        live = np.array([float(np.sum(h * (e - s))) > 0 for s, e, h in segs])
        if not live.all():
            out = np.zeros(self.n)
            if not live.any():
                out[0] = 1.0
                return out
            idx = np.flatnonzero(live)
            sub = self._selection_live([segs[i] for i in idx])
            out[idx] = sub
            return out
        return self._selection_live(segs)

    def _selection_live(self, segs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
        """:meth:`selection_probs` for drafts whose position laws all have positive mass."""
        n = len(segs)
        pts = np.unique(np.concatenate([np.concatenate(s[:2]) for s in segs]))
        a, b = pts[:-1], pts[1:]
        keep = b > a
        a, b = a[keep], b[keep]
        x, w = np.polynomial.legendre.leggauss(max(n, 1))
        half = 0.5 * (b - a)
        t = half[:, None] * x[None, :] + 0.5 * (a + b)[:, None]  # (M, nodes)
        mid = 0.5 * (a + b)
        dens = np.empty((n, len(a)))
        cdf = np.empty((n, *t.shape))
        for j, (s, e, h) in enumerate(segs):
            total = float(np.sum(h * (e - s)))
            inside = (s[None, :] <= mid[:, None]) & (e[None, :] >= mid[:, None])  # (M, pieces)
            dens[j] = (inside * h[None, :]).sum(axis=1) / total
            below = np.clip(np.minimum(e, t[..., None]) - s, 0.0, None)  # (M, nodes, pieces)
            cdf[j] = (below * h).sum(axis=-1) / total
        out = np.zeros(n)
        for j in range(n):
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
    P0: np.ndarray  # [0, P]
    Q0: np.ndarray  # [0, Q]
    Sn0: np.ndarray  # [0, min(Q, 1)^n]


def _sorted_prefix(p: np.ndarray, q: np.ndarray, n: int) -> _Prefix:
    r"""The plain sorted prefix (Hu et al., arXiv 2502.18779) on one row.

    :math:`H^*` is the first minimiser of :math:`1 + P_k - S_k^n` over prefixes of an ascending
    order of :math:`p/q` (the empty set included). The layout and the closed-form accepted mass
    both read :math:`H^*` off this one order, so they always agree on it.
    """
    # Tokens with q = 0 get NaN, which argsort puts after every number (+inf included: a live
    # token whose ratio overflows still sorts before the dead ones).
    live = q > 0
    nlive = int(np.count_nonzero(live))
    with np.errstate(divide="ignore", over="ignore"):
        if nlive == len(q):  # the usual case for softmax drafts: no mask needed
            ratio = np.divide(p, q)
        else:
            ratio = np.full(p.shape, np.nan)
            np.divide(p, q, out=ratio, where=live)
    # Ties in p/q may come in any order (the chain is concave inside a tie group, theory notes);
    # the unstable SIMD sort is several times faster than a stable one.
    order = np.argsort(ratio)
    ps, qs = p.take(order[:nlive]), q.take(order[:nlive])
    # Prefix sums with a leading 0 (the empty prefix), so that callers slice instead of copying.
    P0, Q0, Sn0 = np.empty(nlive + 1), np.empty(nlive + 1), np.empty(nlive + 1)
    P0[0] = Q0[0] = Sn0[0] = 0.0
    np.cumsum(ps, out=P0[1:])
    np.cumsum(qs, out=Q0[1:])
    np.minimum(Q0[1:], 1.0, out=Sn0[1:])
    _ipow_inplace(Sn0[1:], n)
    full = P0 + 1.0  # full[0] = 1: the empty set
    full -= Sn0
    kstar = int(np.argmin(full))
    return _Prefix(order, nlive, ps, qs, P0[1:], Q0[1:], kstar, float(full[kstar]), P0, Q0, Sn0)


def _inner_targets(pi: np.ndarray, qi: np.ndarray, Sc: np.ndarray, Pc: np.ndarray, n: int,
                   Scn: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Targets :math:`r \ge p` on :math:`H^*` (ascending :math:`p/q`), their record blocks and
    where each block starts.

    With :math:`g_m = S_m^n - P_m` (prefix sums of :math:`q` and :math:`p`), the chain is cut at
    the strict records of :math:`g` (:math:`g_0 = 0`). Block :math:`(a, b]` gets
    :math:`r = \max(p, c_b\, q)` with :math:`\sum_{(a, b]} r = S_b^n - S_a^n`. Token :math:`j` is
    raised (:math:`c_b > p_j/q_j`) iff the sum with level :math:`p_j/q_j` falls short of the block
    total, so all blocks are solved at once, without a search. ``Scn`` is :math:`S^n` when the
    caller already has it (the prefix solve computes it).
    """
    K = len(pi)
    g = (_ipow(Sc, n) if Scn is None else Scn) - Pc
    D = np.maximum.accumulate(g)
    rec = np.flatnonzero(g[1:] > D[:-1]) + 1
    bounds = np.concatenate([[0], rec, [] if len(rec) and rec[-1] == K else [K]]).astype(np.int64)
    lo, hi = bounds[:-1], bounds[1:]
    nb = len(lo)
    size = hi - lo
    blk = np.repeat(np.arange(nb), size)
    total = _pow_diff_vec(Sc[hi], Sc[lo], n)
    # Per-token copies of block quantities by ``repeat`` (blocks are contiguous; about twice as
    # fast as a gather by ``blk``).
    F = pi / qi
    F *= Sc[1:] - np.repeat(Sc[lo], size)
    F += np.repeat(Pc[hi], size)
    F -= Pc[1:]
    raised = F < np.repeat(total, size)
    unr_p = _block_sums(pi * ~raised, blk, lo)
    ra_q = _block_sums(qi * raised, blk, lo)
    c = np.zeros(nb)
    np.divide(total - unr_p, ra_q, out=c, where=ra_q > 0)
    # max(p, c q) on raised tokens, p on the others (c q * 0 = 0 <= p there).
    cq = np.repeat(c, size)
    cq *= qi
    cq *= raised
    np.maximum(pi, cq, out=cq)
    return cq, blk, lo


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
    S = pre.Q0  # read-only from here on
    target = np.empty(K)
    block = np.empty(K, dtype=np.int64)
    blocks = 0
    starts = np.zeros(0, dtype=np.int64)
    if kstar:
        # S^n comes from the prefix solve.
        target[:kstar], block[:kstar], starts = _inner_targets(
            pre.ps[:kstar], pre.qs[:kstar], S[: kstar + 1], pre.P0[: kstar + 1], n,
            pre.Sn0[: kstar + 1],
        )
        blocks = int(block[kstar - 1]) + 1
    if K > kstar:
        target[kstar:] = _outer_targets(
            pre.ps[kstar:], pre.qs[kstar:], _pow_diff(float(S[K]), float(S[kstar]), n)
        )
        block[kstar:] = blocks
        blocks += 1
        starts = np.append(starts, kstar)
    L = S[1:] - S[:-1]
    # Targets are selection masses r; the layout value of a slot of length L is r * L / q.
    # The rule keeps the pair form: its sampler reads a token's pieces off its range of the pair
    # list, and the per-piece (CSR) arrays are only built if inspected (LayoutRule._build_pieces).
    pairs, _ = _exchange_pairs(S, target * (L / pre.qs), block, n, starts)
    # Selection marginal of every live token, in the prefix order: the exchange realises its
    # targets exactly (docs, Theorem of section 4), so r is the target itself; a token whose slot
    # vanished in floating point is never selected (r = 0; its exact r is below rounding).
    r_loc = target
    dead = np.flatnonzero(L <= 0)
    if len(dead):
        r_loc[dead] = 0.0
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
    info = {"pieces": K + 2 * len(pairs.y), "exchanges": pairs.pairs, "blocks": blocks}
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
        selection=r,
        accept_prob=acc_prob,
        info=info,
        _pairs=pairs,
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
        check_rng(rng)
        d = np.asarray(drafts)
        if n is None:
            n = int(d.shape[-1]) if d.ndim else 1
        return self.setup(p, q, n).sample(d, rng)

    def tuple_law(self, p: Any, q: Any, drafts: Any) -> tuple[np.ndarray, np.ndarray]:
        d = np.asarray(drafts)
        rule = self.setup(p, q, int(d.shape[-1]) if d.ndim else 1)
        d = _check_drafts(d, rule.n, len(rule.p))
        V = len(rule.p)
        acc = np.zeros(V)
        if isinstance(rule, LPRule):
            acc += rule._row(d)
        else:
            sel = rule.selection_probs(d)
            np.add.at(acc, d, sel * rule.accept_prob[d])
        return acc, max(0.0, 1.0 - float(acc.sum())) * rule.residual
