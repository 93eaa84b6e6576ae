r"""JAX port of the optimal verifier's layout (:mod:`spectheory.verifiers.optimal`), batched.

The construction is the slot-exchange layout of ``docs/optimal_verifier.md`` (sections 3 and 4),
rewritten with fixed shapes so that it runs under :func:`jax.jit` on a batch of positions
``(B, V)`` (one row = one decoding position), on CPU or GPU, in float32 or float64:

1. **Prefix order.** Sort by :math:`p/q` (``q = 0`` last), prefix sums :math:`P, S` (compensated
   in float32, :func:`spectheory.solvers.jax_backend.cumsum_compensated`),
   :math:`H^* = ` the first ``kstar`` tokens, :math:`k^* = \arg\min_k [1 + P_k - S_k^n]` (Hu et
   al., arXiv 2502.18779).
2. **Slot coordinates.** Slot :math:`t` has length exactly :math:`q_t`, mean density
   :math:`s_t = h(S_{t+1}, S_t) = (S_{t+1}^n - S_t^n)/(S_{t+1} - S_t)` and value
   :math:`\gamma_t = q_t s_t` (no differences of rounded boundaries).
3. **Targets.** Inside :math:`H^*` the record blocks of :math:`g_m = S_m^n - P_m` (bounds found
   with running maxima/minima, no data-dependent shapes) and the water level
   :math:`r = \max(p, c_b q)` per block, with block totals :math:`\sum \gamma`; outside,
   :math:`r = \min(p, c' q)`. Block sums are differences of compensated prefix sums.
4. **Exchange.** Per token the excess :math:`\delta = r - \gamma`; receivers' and donors'
   cumulative sums (offset per block) are carried as double-floats and merged by a lexicographic
   stable sort of ``2V`` keys; the receiver (donor) of the elementary interval after a breakpoint
   is the running count of receiver (donor) breakpoints. Every interval of length :math:`m`
   between receiver :math:`k` and donor :math:`j` (same block, :math:`j > k`) becomes an exchange
   of mass :math:`m/(s_j - s_k)`. Intervals are clipped at their block's start instead of adding
   the block starts as breakpoints.

The output :class:`LayoutJax` stores, per row, the pair list in merged order (sorted by receiver
*and* by donor), so token :math:`t`'s pieces are its own slot plus one contiguous range of pairs;
:func:`layout_sample` draws a position as (slot, uniform offset), compared lexicographically
(fixed shapes: a fixed-length bisection per draft).

Everything is the numpy construction up to floating-point summation order: in float64 the
accepted mass per token agrees with :func:`spectheory.verifiers.optimal.layout_rule` to
:data:`FLOAT64_AGREEMENT` and the acceptance equals :math:`\alpha^*`; in float32 the deviation is
bounded by :data:`FLOAT32_ACCEPTANCE_BOUND` (measured, ``docs/optimal_verifier.md``).

JAX is imported inside the functions (``import spectheory`` stays fast). Optimality and
losslessness proofs: ``docs/optimal_verifier.md``; Khisti et al. (arXiv 2410.18234) for the
selection-then-speculative-sampling decomposition, SpecTr (arXiv 2310.15141) for the transport LP.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "FLOAT32_ACCEPTANCE_BOUND",
    "FLOAT64_AGREEMENT",
    "LayoutJax",
    "layout_sample",
    "layout_setup",
    "to_layout_rule",
]

#: Float64 contract: per-token accepted mass of the JAX layout vs the numpy layout, and its
#: acceptance vs :math:`\alpha^*` (summation-order noise only).
FLOAT64_AGREEMENT: float = 1e-12

#: Float32 contract: ``|acceptance_float32 - alpha*_float64|`` (the acceptance of the layout built
#: from float32 rows, against the float64 :math:`\alpha^*` of the same rows). Measured at most
#: 4.2e-7 over 225 LM-like rows (V in {1k, 32k, 128k}, n in {1, 2, 4, 8, 16}, temperatures 0.5 to
#: 8, draft noise 0.3 to 3); the float32 :math:`\alpha^*` of the prefix core itself is off by up to
#: 7.4e-7 on the same rows. The bound leaves a factor of about 5.
FLOAT32_ACCEPTANCE_BOUND: float = 2e-6

Array = Any


class LayoutJax(NamedTuple):
    """The optimal layout rule of a batch of positions (arrays of shape ``batch + (...)``).

    Local index ``t`` = rank of a token in the prefix order (ascending :math:`p/q`).

    Attributes
    ----------
    alpha
        :math:`\\alpha^*` per row.
    acceptance
        :math:`\\sum_y a(y)` of the built layout (equals :math:`\\alpha^*` up to rounding).
    kstar
        :math:`|H^*|` per row (int32).
    order, inv
        Prefix order (``order[t]`` = token of local index ``t``) and its inverse, ``(V,)``.
    S
        Slot boundaries, ``(V + 1,)``: local token ``t`` owns ``[S[t], S[t+1]]`` at first.
    own, total
        Mass each local token keeps of its own slot, and its total piece mass, ``(V,)``.
    lo, hi
        Range ``[lo, hi)`` of the token's pairs in the pair list, ``(V,)`` (int32).
    recv
        Whether the local token is a receiver (its pairs' slots are ``pair_j``) or not
        (``pair_k``), ``(V,)``.
    pair_k, pair_j, pair_mass
        The pair list in merged order, ``(2V - 1,)``: receiver, donor and exchanged mass (0 for
        invalid intervals).
    pair_cum_recv, pair_cum_don
        Inclusive cumulative pair masses restarted at the start of every receiver's (donor's)
        range (compensated in float32, so that small tokens keep their resolution).
    selection
        Selection marginal :math:`r(y)` in token order, ``(V,)``.
    accepted
        Accepted mass :math:`a(y) = \\min(p(y), r(y))`, token order.
    accept_prob
        :math:`\\min(1, p(y)/r(y))`, token order.
    residual_cdf
        Unnormalised cumulative residual :math:`(p - a)_+`, token order.
    witness
        Boolean mask of :math:`H^*`, token order.
    """

    alpha: Array
    acceptance: Array
    kstar: Array
    order: Array
    inv: Array
    S: Array
    own: Array
    total: Array
    lo: Array
    hi: Array
    recv: Array
    pair_k: Array
    pair_j: Array
    pair_mass: Array
    pair_cum_recv: Array
    pair_cum_don: Array
    selection: Array
    accepted: Array
    accept_prob: Array
    residual_cdf: Array
    witness: Array


# ------------------------------------------------------------------------------ building blocks
def _ipow(x: Array, n: int) -> Array:
    """``x ** n`` for a static integer ``n >= 0`` by repeated squaring."""
    import jax.numpy as jnp

    out = jnp.ones_like(x)
    base = x
    while n:
        if n & 1:
            out = out * base
        n >>= 1
        if n:
            base = base * base
    return out


def _cumsum(x: Array, comp: bool) -> Array:
    import jax.numpy as jnp

    if comp:
        from ..solvers.jax_backend.core import cumsum_compensated

        hi, lo = cumsum_compensated(x)
        return hi + lo
    return jnp.cumsum(x, axis=-1)


def _two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """Knuth's error-free transformation: ``a + b = s + e`` exactly."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _df_cumsum(x: Array, comp: bool) -> tuple[Array, Array]:
    """Inclusive prefix sums as a double-float pair ``(hi, lo)`` (``lo = 0`` unless ``comp``)."""
    import jax.numpy as jnp

    if comp:
        from ..solvers.jax_backend.core import cumsum_compensated

        return cumsum_compensated(x)
    c = jnp.cumsum(x, axis=-1)
    return c, jnp.zeros_like(c)


def _df_norm(h: Array, lo: Array) -> tuple[Array, Array]:
    """Renormalise a double-float so that ``|lo| <= ulp(hi) / 2`` (lexicographic order of
    ``(hi, lo)`` is then the order of ``hi + lo``)."""
    s = h + lo
    return s, lo - (s - h)


def _df_prefix(x: Array, comp: bool) -> tuple[Array, Array]:
    """Exclusive-and-inclusive prefix sums with a 0 in front, ``(V + 1,)``, as ``(hi, lo)``."""
    import jax.numpy as jnp

    h, lo = _df_cumsum(x, comp)
    z = jnp.zeros((1,), x.dtype)
    return jnp.concatenate([z, h]), jnp.concatenate([z, lo])


def _df_range(pre: tuple[Array, Array], b: Array, a: Array) -> Array:
    r""":math:`\sum_{a \le i < b} x_i` from :func:`_df_prefix` sums, without cancellation."""
    h, lo = pre
    return (h[b] - h[a]) + (lo[b] - lo[a])


def _breakpoints(
    up: Array, dn: Array, ba: Array, bb: Array, bx: Array, nseg: int, comp: bool
) -> tuple[tuple[Array, Array], tuple[Array, Array], tuple[Array, Array]]:
    r"""Receivers' and donors' block-local cumulative sums plus the block offsets
    :math:`\mathrm{off}_b = \sum_{b' < b} \max(A_{b'}, B_{b'})` (:math:`A_b, B_b` the block
    totals of :math:`\delta^+, \delta^-`), as double-floats ``(hi, lo)``. Token ``t`` lies in
    block ``bx[t]`` = local tokens ``ba[t] <= i < bb[t]``.

    In float32 a plain cumulative sum would round every breakpoint to :math:`\sim 6\cdot
    10^{-8}` of the running total, and every receiver would miss that much of its target;
    compensated sums and error-free differences keep each breakpoint to :math:`O(\varepsilon^2)`
    so that the matched lengths are accurate *relative to themselves*.
    """
    import jax
    import jax.numpy as jnp

    pu, pd = _df_prefix(up, comp), _df_prefix(dn, comp)
    ab_tok = jnp.maximum(_df_range(pu, bb, ba), _df_range(pd, bb, ba))
    AB = jnp.maximum(jax.ops.segment_max(ab_tok, bx, num_segments=nseg, indices_are_sorted=True), 0)
    # Rounded block totals may fall short of the exact local sums by an ulp: widen them by a few
    # ulps, so that every block's breakpoints stay below the next block's start and the merged
    # order keeps each kind's breakpoints in token order (the running counts rely on it).
    AB = AB * (1 + 8 * jnp.finfo(AB.dtype).eps)
    oh, ol = _df_cumsum(AB, comp)
    # Exclusive: subtract AB (error-free), then renormalise.
    oh, e = _two_sum(oh, -AB)
    off = _df_norm(oh, ol + e)
    t1 = jnp.arange(1, up.shape[-1] + 1)

    def local(pre: tuple[Array, Array]) -> tuple[Array, Array]:
        h, lo = pre
        dh, de = _two_sum(h[t1], -h[ba])  # inclusive block-local sum, error-free head
        lh, le = _two_sum(off[0][bx], dh)
        return _df_norm(lh, le + (de + (lo[t1] - lo[ba])) + off[1][bx])

    return local(pu), local(pd), off


def _h(t: Array, s: Array, n: int) -> Array:
    r""":math:`h_{n-1}(t, s) = \sum_{i<n} t^{n-1-i} s^i = (t^n - s^n)/(t - s)`: the mean density
    of :math:`n x^{n-1}` over :math:`[s, t]` (the point density :math:`n t^{n-1}` when
    :math:`s = t`), without cancellation."""
    import jax.numpy as jnp

    if n == 1:
        return jnp.ones_like(t)
    h = t + s
    sp = s * s
    for _ in range(2, n):
        h = h * t + sp
        sp = sp * s
    return h


def _setup_row(p: Array, q: Array, n: int, comp: bool) -> LayoutJax:
    """One row (``(V,)`` arrays) of :func:`layout_setup`; fixed shapes throughout."""
    import jax.numpy as jnp
    from jax import lax

    V = p.shape[-1]
    dt = p.dtype
    i32 = jnp.int32
    idx = jnp.arange(V, dtype=i32)
    m_idx = jnp.arange(V + 1, dtype=i32)
    zero = jnp.zeros((1,), dt)

    # 1. Prefix order (q = 0 -> NaN, sorted last; a live ratio that overflows stays before them).
    live_tok = q > 0
    ratio = jnp.where(live_tok, p / jnp.where(live_tok, q, 1), jnp.nan)
    order = jnp.argsort(ratio, stable=True).astype(i32)
    ps, qs = p[order], q[order]
    K = jnp.sum(live_tok).astype(i32)
    live = idx < K
    # Prefix sums as double-floats (lo = 0 unless compensated); S, Pc: rounded, with 0 in front.
    Qh, Ql = _df_cumsum(qs, comp)
    Ph, Pl = _df_cumsum(ps, comp)
    Q = Qh + Ql
    P = Ph + Pl
    chain = jnp.concatenate([jnp.ones((1,), dt), 1 + P - _ipow(jnp.minimum(Q, 1), n)])
    kstar = jnp.argmin(chain).astype(i32)
    alpha = chain[kstar]
    S = jnp.concatenate([zero, Q])
    Sh, Sl = jnp.concatenate([zero, Qh]), jnp.concatenate([zero, Ql])
    Pch, Pcl = jnp.concatenate([zero, Ph]), jnp.concatenate([zero, Pl])

    def dS(b: Array, a: Array) -> Array:  # S_b - S_a without cancellation
        return (Sh[b] - Sh[a]) + (Sl[b] - Sl[a])

    def dP(b: Array, a: Array) -> Array:
        return (Pch[b] - Pch[a]) + (Pcl[b] - Pcl[a])

    S0, S1 = S[:-1], S[1:]
    # Slot coordinates: slot t has length q_t exactly (not a difference of rounded boundaries),
    # value gamma_t = q_t h(S_{t+1}, S_t) and mean density s_t = h(S_{t+1}, S_t).
    s = _h(S1, S0, n)
    L = jnp.where(live, qs, 0)
    gam = L * s
    rho = jnp.where(live, ps / jnp.where(live, qs, 1), 0)
    inner = idx < kstar
    outer = live & ~inner
    nseg = V + 2

    # 2a. Inner targets: record blocks of g (bounds: 0, strict records, kstar).
    g = jnp.where(m_idx <= kstar, _ipow(S, n) - jnp.concatenate([zero, P]), -jnp.inf)
    prev = jnp.concatenate([jnp.full((1,), -jnp.inf, dt), lax.cummax(g)[:-1]])
    isb = (m_idx == 0) | (m_idx == kstar) | ((g > prev) & (m_idx <= kstar))
    a_of = lax.cummax(jnp.where(isb, m_idx, 0))[:-1]  # largest bound <= t
    b_of = lax.cummin(jnp.where(isb, m_idx, V), reverse=True)[1:]  # smallest bound >= t + 1
    b_of = jnp.minimum(b_of, V)
    blk = (jnp.cumsum(isb.astype(i32)) - 1)[:-1]  # inner block id of local token t
    # Block sums from compensated prefix sums (plain float32 sums over blocks of thousands of
    # tokens would be off by ~1e-5). Block totals are sums of the slot values, so that every
    # block's excesses add up to 0.
    def bsum(x: Array) -> Array:
        return _df_range(_df_prefix(x, comp), b_of, a_of)

    total_b = bsum(gam)
    F = rho * dS(idx + 1, a_of) + dP(b_of, idx + 1)
    raised = inner & (F < total_b)
    rq = bsum(jnp.where(raised, qs, 0))
    unr = bsum(jnp.where(raised, 0, ps))
    c_in = jnp.where(rq > 0, (total_b - unr) / jnp.where(rq > 0, rq, 1), 0)
    r_in = jnp.where(raised, jnp.maximum(c_in * qs, ps), ps)
    nbi = jnp.sum(isb[1:] & (m_idx[1:] <= kstar)).astype(i32)  # number of inner blocks

    # 2b. Outer targets: r = min(p, c' q) with sum = 1 - q(H*)^n (= the outer slot values).
    def osum(x: Array) -> Array:
        return _df_range(_df_prefix(x, comp), K, kstar)

    total_o = osum(gam)
    G = dP(idx + 1, kstar) + rho * dS(K, idx + 1)
    capped = outer & (G > total_o)
    cq = osum(jnp.where(capped, qs, 0))
    c_out = jnp.where(cq > 0, (total_o - osum(jnp.where(capped, 0, ps))) / jnp.where(cq > 0, cq, 1), 0)
    r_out = jnp.where(capped, jnp.minimum(c_out * qs, ps), ps)
    r_tgt = jnp.where(inner, r_in, jnp.where(outer, r_out, 0))

    # 3. Exchange: one block id per token (inner blocks, then the outer block, then the dead).
    bx = jnp.where(inner, blk, jnp.where(outer, nbi, nbi + 1)).astype(i32)
    single = jnp.where(inner, b_of - a_of == 1, (K - kstar) == 1)
    delta = jnp.where(live & ~single, r_tgt - gam, 0)
    up = jnp.maximum(delta, 0)
    dn = up - delta
    ba = jnp.where(inner, a_of, jnp.where(outer, kstar, K))
    bb = jnp.where(inner, b_of, jnp.where(outer, K, V))
    U, D, off = _breakpoints(up, dn, ba, bb, bx, nseg, comp)
    # Merge the 2V breakpoints (double-float keys when compensated: lexicographic (hi, lo)).
    zh = jnp.concatenate([U[0], D[0]])
    zl = jnp.concatenate([U[1], D[1]])
    if comp:
        # Lexicographic (hi, lo) order by two stable key/index sorts (the fast path of
        # argsort; a multi-operand lax.sort is several times slower on GPUs, see
        # spectheory.solvers.jax_backend.core.sort_by_ratio).
        o1 = jnp.argsort(zl, stable=True)
        o = o1[jnp.argsort(zh[o1], stable=True)].astype(i32)
        zh, zl = zh[o], zl[o]
    else:
        o = jnp.argsort(zh, stable=True).astype(i32)
        zh = zh[o]
        zl = jnp.zeros_like(zh)
    cntU = jnp.cumsum((o < V).astype(i32))
    cntD = jnp.arange(1, 2 * V + 1, dtype=i32) - cntU
    kk, jj = cntU[:-1], cntD[:-1]
    kc, jc = jnp.minimum(kk, V - 1), jnp.minimum(jj, V - 1)
    bk = bx[kc]
    # Interval (z_i, z_{i+1}] clipped at the start of its block (the block starts are not
    # breakpoints here).
    oh, ol = off[0][bk], off[1][bk]
    below = (zh[:-1] < oh) | ((zh[:-1] == oh) & (zl[:-1] < ol))
    sh = jnp.where(below, oh, zh[:-1])
    sl = jnp.where(below, ol, zl[:-1])
    dh, de = _two_sum(zh[1:], -sh)
    mlen = dh + (de + (zl[1:] - sl))
    sk, sj = s[kc], s[jc]
    valid = (
        (kk < V) & (jj < V) & (mlen > 0) & (up[kc] > 0) & (dn[jc] > 0)
        & (bk == bx[jc]) & (jc > kc) & (sj > sk)
    )
    mv = jnp.where(valid, mlen, 0)
    y = mv / jnp.where(valid, sj - sk, 1)

    # Pair ranges per local token (pairs sorted by receiver and by donor).
    is_recv = up > 0
    lo = jnp.where(
        is_recv, jnp.searchsorted(kk, idx, side="left"), jnp.searchsorted(jj, idx, side="left")
    ).astype(i32)
    hi = jnp.where(
        is_recv, jnp.searchsorted(kk, idx, side="right"), jnp.searchsorted(jj, idx, side="right")
    ).astype(i32)
    hi = jnp.where(live, hi, lo)
    # Per-token sums over the pair range from compensated prefix sums (a receiver may trade with
    # thousands of donors): exchanged mass, and moved value sum m = y (s_j - s_k).
    py = _df_prefix(y, comp)
    used = _df_range(py, hi, lo)
    moved = _df_range(_df_prefix(mv, comp), hi, lo)
    own = jnp.maximum(L - used, 0)
    value = gam + jnp.where(is_recv, moved, -moved)
    tot = own + used
    r_loc = jnp.where(tot > 0, qs * value / jnp.where(tot > 0, tot, 1), 0)
    # Cumulative pair masses restarted at every receiver's (donor's) range, for sampling.
    npair = 2 * V - 1
    ip = jnp.arange(npair, dtype=i32)
    head_k = jnp.concatenate([jnp.ones((1,), bool), kk[1:] != kk[:-1]])
    head_j = jnp.concatenate([jnp.ones((1,), bool), jj[1:] != jj[:-1]])
    run_k = lax.cummax(jnp.where(head_k, ip, 0))
    run_j = lax.cummax(jnp.where(head_j, ip, 0))
    cum_recv = _df_range(py, ip + 1, run_k)
    cum_don = _df_range(py, ip + 1, run_j)

    # Token order.
    inv = jnp.zeros((V,), i32).at[order].set(idx)
    r = r_loc[inv]
    accept_prob = jnp.where(r > 0, jnp.minimum(1, p / jnp.where(r > 0, r, 1)), 0)
    a = jnp.minimum(p, r)
    res = jnp.maximum(p - a, 0)
    return LayoutJax(
        alpha=alpha,
        acceptance=jnp.sum(a),
        kstar=kstar,
        order=order,
        inv=inv,
        S=S,
        own=own,
        total=tot,
        lo=lo,
        hi=hi,
        recv=is_recv,
        pair_k=kc,
        pair_j=jc,
        pair_mass=y,
        pair_cum_recv=cum_recv,
        pair_cum_don=cum_don,
        selection=r,
        accepted=a,
        accept_prob=accept_prob,
        residual_cdf=_cumsum(res, comp),
        witness=inv < kstar,
    )


def _sample_row(lay: LayoutJax, drafts: Array, key: Array) -> tuple[Array, Array]:
    """Verify one tuple ``drafts`` ``(n,)`` against one row's layout."""
    import jax
    import jax.numpy as jnp

    V = lay.inv.shape[-1]
    dt = lay.S.dtype
    k1, k2, k3, k4 = jax.random.split(key, 4)
    n = drafts.shape[-1]
    t = lay.inv[drafts]
    tot = lay.total[t]
    own = lay.own[t]
    u = jax.random.uniform(k1, (n,), dt) * tot
    lo, hi = lay.lo[t], lay.hi[t]
    rec = lay.recv[t]
    target = u - own
    # Bisection for the first pair of the range whose (range-local) cumulative mass exceeds
    # target: fixed trip count, per-range restarted sums (no global float cumsum to resolve).
    a, b = lo, hi
    for _ in range(int(2 * V).bit_length() + 1):
        mid = (a + b) // 2
        midc = jnp.minimum(mid, lay.pair_k.shape[-1] - 1)
        c = jnp.where(rec, lay.pair_cum_recv[midc], lay.pair_cum_don[midc])
        active = a < b
        right = c <= target
        a, b = jnp.where(active & right, mid + 1, a), jnp.where(active & ~right, mid, b)
    pick = jnp.minimum(jnp.clip(a, lo, jnp.maximum(hi - 1, lo)), lay.pair_k.shape[-1] - 1)
    other = jnp.where(rec, lay.pair_j[pick], lay.pair_k[pick])
    slot = jnp.where((u < own) | (hi <= lo), t, other)
    # Position = (slot, uniform offset in the slot), compared lexicographically: slots are
    # ordered, so this is the largest position without rounding positions to floats.
    slot = jnp.where(tot > 0, slot, -1)
    frac = jnp.where(slot == jnp.max(slot), jax.random.uniform(k2, (n,), dt), -1)
    y = drafts[jnp.argmax(frac)]
    acc = jax.random.uniform(k3, (), dt) < lay.accept_prob[y]
    cdf = lay.residual_cdf
    res = jnp.searchsorted(cdf, jax.random.uniform(k4, (), dt) * cdf[-1], side="right")
    res = jnp.minimum(res, V - 1).astype(drafts.dtype)
    return jnp.where(acc, y, res), acc


@functools.cache
def _jitted() -> tuple[Any, Any]:
    import jax

    @functools.partial(jax.jit, static_argnames=("n", "comp"))
    def setup(p: Array, q: Array, n: int, comp: bool) -> LayoutJax:
        f = functools.partial(_setup_row, n=n, comp=comp)
        for _ in range(p.ndim - 1):
            f = jax.vmap(f)
        return f(p, q)

    @jax.jit
    def sample(lay: LayoutJax, drafts: Array, key: Array) -> tuple[Array, Array]:
        batch = drafts.shape[:-1]
        nl = lay.alpha.ndim  # batch axes of the layout (the leading axes of drafts)
        f = _sample_row
        for _ in range(nl):
            f = jax.vmap(f)
        for _ in range(len(batch) - nl):  # extra leading axes: several tuples per position
            f = jax.vmap(f, in_axes=(None, 0, 0))
        if not batch:
            return f(lay, drafts, key)
        keys = jax.random.split(key, int(np.prod(batch)))
        keys = keys.reshape(batch + keys.shape[1:])
        return f(lay, drafts, keys)

    return setup, sample


# ------------------------------------------------------------------------------------- public
def layout_setup(p: Array, q: Array, n: int, *, compensated: bool | None = None) -> LayoutJax:
    r"""Build the optimal layout rule of every row (jit-compiled; fixed shapes).

    Parameters
    ----------
    p, q
        Target and draft distributions, shape ``(V,)`` or ``(B, V)`` (any leading batch axes),
        float32 or float64 JAX/numpy arrays of the same dtype. They are not validated here (use
        :func:`spectheory._validate.as_distribution` first, or :class:`Optimal` on numpy).
        Float64 needs 64-bit JAX types enabled (``jax.config`` or
        :func:`spectheory.solvers.jax_backend.solve.x64`).
    n
        Number of i.i.d. drafts (static: one compilation per value).
    compensated
        Compensated prefix sums (default: on for float32, off for float64).

    Returns
    -------
    LayoutJax
        Arrays with the batch shape of ``p`` in front.
    """
    import jax.numpy as jnp

    if int(n) != n or n < 1:
        raise ValueError(f"argument 'n': expected an integer >= 1, got {n!r}")
    p = jnp.asarray(p)
    q = jnp.asarray(q, dtype=p.dtype)
    if p.shape != q.shape or p.ndim < 1:
        raise ValueError(f"argument 'q': shape {q.shape} does not match p's {p.shape}")
    comp = (p.dtype != jnp.float64) if compensated is None else bool(compensated)
    setup, _ = _jitted()
    return setup(p, q, n=int(n), comp=comp)


def layout_sample(layout: LayoutJax, drafts: Array, key: Array) -> tuple[Array, Array]:
    """Verify draft tuples (jit-compiled, fixed shapes).

    ``drafts`` has shape ``extra + batch + (n,)``: token ids with :math:`q > 0`, one tuple per row
    of the layout (``batch`` = the layout's batch shape), optionally several per row (``extra``
    leading axes). ``key`` is a :func:`jax.random.key` (or ``PRNGKey``). Returns
    ``(tokens, accepted)`` of shape ``extra + batch``: each output has law :math:`p` of its row and
    is accepted with probability :math:`\\alpha^*`.
    """
    import jax.numpy as jnp

    _, sample = _jitted()
    return sample(layout, jnp.asarray(drafts), key)


def to_layout_rule(layout: LayoutJax, p: Any, q: Any, n: int, row: int | None = None) -> Any:
    """One row of a :class:`LayoutJax` as a numpy :class:`~spectheory.verifiers.optimal.LayoutRule`
    (same pieces), e.g. to compute its exact output law per tuple. ``p``, ``q`` are that row."""
    from .optimal import LayoutRule, _residual

    lay = {k: np.asarray(v if row is None else v[row]) for k, v in layout._asdict().items()}
    pv = np.asarray(p, dtype=np.float64)
    qv = np.asarray(q, dtype=np.float64)
    V = len(pv)
    K = int(np.count_nonzero(qv > 0))
    S = lay["S"].astype(np.float64)
    slots, masses, ptr = [], [], [0]
    for t in range(K):
        lo, hi = int(lay["lo"][t]), int(lay["hi"][t])
        other = lay["pair_j"][lo:hi] if lay["recv"][t] else lay["pair_k"][lo:hi]
        slots.append(np.concatenate([[t], other]).astype(np.int64))
        masses.append(np.concatenate([[lay["own"][t]], lay["pair_mass"][lo:hi]]))
        ptr.append(ptr[-1] + 1 + hi - lo)
    slot = np.concatenate(slots) if slots else np.zeros(0, dtype=np.int64)
    mass = np.concatenate(masses).astype(np.float64) if masses else np.zeros(0)
    order = lay["order"].astype(np.int64)
    group = np.full(V, -1, dtype=np.int64)
    group[order[:K]] = np.arange(K)
    r = lay["selection"].astype(np.float64)
    a = np.minimum(pv, r)
    with np.errstate(divide="ignore", invalid="ignore"):
        acc_prob = np.where(r > 0, np.minimum(1.0, pv / np.where(r > 0, r, 1.0)), 0.0)
    return LayoutRule(
        p=pv,
        q=qv,
        n=int(n),
        alpha_star=float(lay["alpha"]),
        witness=lay["witness"].astype(bool),
        accepted=a,
        residual=_residual(pv, a),
        group=group,
        group_token=order[:K],
        piece_start=S[slot],
        piece_end=S[slot + 1],
        piece_ptr=np.asarray(ptr, dtype=np.int64),
        selection=r,
        accept_prob=acc_prob,
        _cum=np.concatenate([[0.0], np.cumsum(mass)]),
        piece_mass=mass,
        info={"pieces": len(mass), "source": "jax"},
    )
